"""A stand-in for the paper's backbone: a random-weight RoBERTa-large written to disk as the hub's ``roberta-large``.

No RoBERTa checkpoint can be downloaded here, so the paper path (``--profile paper``) is rehearsed on a checkpoint
that has RoBERTa-large's architecture and is laid out exactly like the hub's: a ``RobertaForMaskedLM``
``model.safetensors`` (embeddings, 24 blocks and the masked-LM head, **no pooler**, so ``AutoModel`` draws a
random pooler at every load), its ``config.json``, and a byte-level BPE tokenizer folder with RoBERTa's special
tokens (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` last) and no prefix space, as the hub's.

The tokenizer is trained offline with ``tokenizers`` on the real text in the shared data (UD English EWT and the
LAMA T-REx evidence sentences with their objects filled in) up to RoBERTa's 50,265 entries, so the tokenizer and
the embedding matrix have the same size, as on the hub. The weights are random: right for shapes, parameter
counts, memory, speed and every code path; never for knowledge.

    python -m kadapter.rehearsal runs/rehearsal-backbone                # RoBERTa-large: 355M parameters, 1.4 GB
    python -m kadapter.rehearsal runs/narrow --width narrow             # 24 layers, hidden 64: for CI

``--profile rehearsal`` / ``rehearsal-narrow`` of ``kadapter.pipeline`` write one into the run folder and load it
by path in every stage.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path

from .safe_files import ordinary_permissions

# RoBERTa-large as on the hub (config.json of `roberta-large`).
ROBERTA_LARGE = dict(
    vocab_size=50265, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=514,
    type_vocab_size=1, initializer_range=0.02, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
)
# The CI variant: same depth (taps 0/11/22 exist), same vocabulary and layout, small width.
NARROW = dict(ROBERTA_LARGE, hidden_size=64, num_attention_heads=4, intermediate_size=256)
WIDTHS = {"full": ROBERTA_LARGE, "narrow": NARROW}
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3 as RoBERTa's; <mask> is added last
MARKER = "rehearsal.json"


def training_text(max_sentences: int | None = None) -> list[str]:
    """Real English from the shared data: UD EWT train sentences, then LAMA T-REx evidence sentences with the
    object in place of [MASK] (so the probe's objects get their own tokens, as common words have in RoBERTa's)."""
    from data_prep.paths import data_path

    texts = []
    with open(data_path("ud_english_ewt", "en_ewt-ud-train.conllu"), encoding="utf-8") as handle:
        texts += [line[len("# text = "):].strip() for line in handle if line.startswith("# text = ")]
    for path in sorted(glob.glob(str(data_path("lama", "TREx") / "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                texts += [e["masked_sentence"].replace("[MASK]", row["obj_label"]) for e in row.get("evidences", ())]
    return texts[:max_sentences] if max_sentences else texts


def train_tokenizer(directory: str | Path, vocab_size: int = 50265, texts: list[str] | None = None):
    """A byte-level BPE tokenizer with RoBERTa's special tokens and size, saved as a hub-style tokenizer folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts if texts is not None else training_text(), vocab_size=vocab_size - 1,
                            min_frequency=1, special_tokens=SPECIAL_TOKENS, show_progress=False)
    vocab = bpe.get_vocab()
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe._tokenizer.to_str())["model"]["merges"]]
    tokenizer = RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=512)  # no prefix space: as the hub
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    if len(tokenizer) != vocab_size or tokenizer.mask_token_id != vocab_size - 1:
        raise RuntimeError(f"the BPE reached {len(tokenizer)} entries, not {vocab_size}: too little training text")
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def write_checkpoint(directory: str | Path, width: str = "full", seed: int = 0, texts: list[str] | None = None,
                     overwrite: bool = False, **config_overrides) -> Path:
    """Write the random-weight RoBERTa checkpoint (``RobertaForMaskedLM``, no pooler) and its tokenizer.

    ``config_overrides`` change the architecture (tests use a few layers and a small vocabulary, with ``texts``
    a small training text for the tokenizer). An existing complete folder of the same width, seed and overrides is
    kept as it is (``overwrite`` rewrites it).
    """
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    if width not in WIDTHS:
        raise ValueError(f"width must be one of {sorted(WIDTHS)}, got {width!r}")
    directory = Path(directory)
    marker = directory / MARKER
    settings = {**WIDTHS[width], **config_overrides}
    wanted = {"width": width, "seed": seed, "config": settings}
    if not overwrite and _marker(marker) == wanted:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    # The marker says "complete": it goes first, so a rewrite cut short (killed, disk full) is never trusted later
    marker.unlink(missing_ok=True)
    tokenizer = train_tokenizer(directory, settings["vocab_size"], texts)
    torch.manual_seed(seed)
    config = RobertaConfig(**settings, architectures=["RobertaForMaskedLM"])
    model = RobertaForMaskedLM(config)
    model.save_pretrained(str(directory), safe_serialization=True)
    assert len(tokenizer) == config.vocab_size
    ordinary_permissions(directory)  # save_pretrained writes the weights 0600
    tmp = marker.with_name(f".{MARKER}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(wanted, indent=2) + "\n")
    os.replace(tmp, marker)  # last, and whole: a half-written folder is rewritten
    return directory


def _marker(path: Path) -> dict | None:
    """The completion marker's content; None when it is missing or unreadable (the folder is then rewritten)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="where to write the checkpoint folder")
    parser.add_argument("--width", default="full", choices=sorted(WIDTHS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    path = write_checkpoint(args.directory, args.width, args.seed, overwrite=args.overwrite)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
