"""LAMA-style knowledge probing with masked-LM probe heads, the same head for every model compared.

The paper probes K-Adapter with a newly trained MLM layer but RoBERTa with its own pre-trained LM head. Here every
model (backbone alone, backbone + adapters, backbone + random "w/o knowledge" adapters) gets the same kind of probe:
a fusion of the frozen features (none for the backbone alone) and a BERT-style masked-LM head whose decoder is tied
to the frozen backbone word embeddings, trained the same way (corpus, masking, steps, batch size, learning rate,
seed). Where a checkpoint ships its own MLM head (BERT, RoBERTa) it is probed too (:func:`pretrained_mlm_head`);
the default MiniLM has none.

What is cached, and why it is exact. For MLM the backbone has to see the [MASK] tokens, so features are computed on
the *masked* corpus. Masking is fixed by ``masking_seed`` (a property of the corpus, like LAMA's fixed templates),
so the frozen features of the masked corpus are computed once and shared by every probe-head seed and every
adapter combination. The fusion and the head act on each position on its own, so all they need are the frozen
features *at the masked positions*: the backbone's last hidden state and each frozen adapter's output there
(:class:`MaskedFeatures`). Training a probe then never runs the backbone or an adapter again. The probe-head seed
sets the head and fusion initialisation and the batch order. The LAMA probe works the same way: one backbone and
one adapter forward per fact, shared by every probe evaluated.

Vocabulary. A fact is kept when its object is one token of the model's vocabulary in the form it takes after a
space inside a sentence (uncased WordPiece: lower-cased by the tokenizer; byte-level BPE: the ``Ġ`` form), and that
token is among the candidates: LAMA's common vocabulary mapped the same way, intersected with the model's vocabulary.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm
from transformers.activations import ACT2FN

from . import __version__
from .adapter import load_state_strict
from .backbone import BackboneFeatures, extract_features
from .config import BackboneIdentity, FusionConfig, write_json
from .fusion import Fusion
from .safe_files import load_safetensors, read_json
from .metrics import macro_average, mean_std, metrics_from_ranks, rank_of_gold
from .model import KAdapterModel
from .training import TrainConfig, train

MASK_PLACEHOLDER = "[MASK]"  # the mask in templates and demo prompts; replaced by the tokenizer's own mask token
BACKBONE_SOURCE = "backbone"  # key of the backbone's last hidden state among the feature sources
PROBE_CONFIG_NAME = "probe_config.json"
PROBE_WEIGHTS_NAME = "probe.safetensors"


# =====================================================================================================================
# Vocabulary: single-token objects and the candidate set
# =====================================================================================================================
def word_token_id(tokenizer, word: str) -> int | None:
    """The id of ``word`` if the tokenizer makes exactly one ordinary token of it, else None.

    The word is tokenized as it appears inside a sentence, after a space: an uncased WordPiece tokenizer lower-cases
    it ("Paris" -> "paris"), a byte-level BPE gives the leading-space form ("Paris" -> "ĠParis"). Unknown and
    special tokens do not count.
    """
    ids = tokenizer(" " + word.strip(), add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id or ids[0] in tokenizer.all_special_ids:
        return None
    return int(ids[0])


@dataclass
class CandidateVocabulary:
    """The token ids answers are ranked over, and how they were chosen."""

    token_ids: list[int]  # sorted, unique
    source: str  # e.g. "LAMA common vocabulary ∩ model vocabulary"
    words_in: int  # words offered
    words_dropped: dict[str, int]  # reason -> count (multi-token, duplicates after lower-casing, ...)

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.token_ids)}

    def __len__(self) -> int:
        return len(self.token_ids)

    def __contains__(self, token_id: int) -> bool:
        return token_id in self._index

    def index(self, token_id: int) -> int:
        return self._index[token_id]

    def to_dict(self) -> dict:
        return {"size": len(self), "source": self.source, "words_in": self.words_in,
                "words_dropped": dict(self.words_dropped)}


def candidate_vocabulary(tokenizer, words: Sequence[str] | None = None, source: str | None = None) -> CandidateVocabulary:
    """Map ``words`` (default: LAMA's common vocabulary) to single tokens of this tokenizer: the ranking candidates.

    Words that are not one token are dropped, and words that fold onto a token already taken (e.g. "Paris" and
    "paris" in an uncased vocabulary) count once; both are counted. :func:`full_vocabulary` ranks over everything.
    """
    if words is None:
        from data_prep.lama import common_vocab

        words, source = common_vocab(), source or "LAMA common vocabulary (common_vocab_cased.txt) ∩ model vocabulary"
    ids, dropped = set(), Counter()
    for word in words:
        token_id = word_token_id(tokenizer, word)
        if token_id is None:
            dropped["not a single token of the model's vocabulary"] += 1
        elif token_id in ids:
            dropped["same token as another word (e.g. case folded)"] += 1
        else:
            ids.add(token_id)
    return CandidateVocabulary(sorted(ids), source or "given words ∩ model vocabulary", len(words), dict(dropped))


def full_vocabulary(tokenizer) -> CandidateVocabulary:
    """Every ordinary token of the tokenizer (no special tokens): ranking without a vocabulary restriction."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    return CandidateVocabulary(ids, "full model vocabulary (special tokens excluded)", len(ids), {})


def select_facts(facts: Iterable[dict], tokenizer, vocabulary: CandidateVocabulary) -> tuple[list[dict], dict]:
    """Keep the facts whose object is a single token among the candidates; each kept fact gets ``gold_id``.

    Returns the kept facts and ``{kept, dropped: {reason: n}, per_relation: {relation: {total, kept}}}``.
    """
    from data_prep.report import SkipReport

    report = SkipReport("LAMA facts with a single-token object among the candidates")
    kept, per_relation = [], {}
    for fact in facts:
        counts = per_relation.setdefault(fact["relation"], {"total": 0, "kept": 0})
        counts["total"] += 1
        gold = word_token_id(tokenizer, fact["obj_label"])
        where = f"{fact['relation']}:{fact['obj_label']}"
        if gold is None:
            report.skip("object is not a single token of the model's vocabulary", where)
        elif gold not in vocabulary:
            report.skip("object token is not in the candidate vocabulary", where)
        else:
            kept.append({**fact, "gold_id": gold})
            counts["kept"] += 1
            report.keep()
    return kept, {**report.to_dict(), "per_relation": per_relation}


# =====================================================================================================================
# Cloze encoding
# =====================================================================================================================
def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after one sequence ([CLS] .. [SEP], <s> .. </s>)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    raise ValueError(f"cannot find the special-token frame of {type(tokenizer).__name__}")


def encode_cloze(tokenizer, text: str) -> tuple[list[int], int]:
    """Token ids of a cloze statement with exactly one mask (``[MASK]`` or the tokenizer's mask token), and the
    mask's position.

    The text is tokenized on both sides of the mask separately, so the mask replaces the object word *with* its
    leading space: a byte-level BPE predicts the ``Ġ`` form there, as RoBERTa's ``<mask>`` (lstrip) does.
    """
    if tokenizer.mask_token and tokenizer.mask_token != MASK_PLACEHOLDER:
        text = text.replace(tokenizer.mask_token, MASK_PLACEHOLDER)
    if text.count(MASK_PLACEHOLDER) != 1:
        raise ValueError(f"a cloze statement needs exactly one {MASK_PLACEHOLDER}: {text!r}")
    left, right = text.split(MASK_PLACEHOLDER)

    def ids(part: str) -> list[int]:
        return tokenizer(part, add_special_tokens=False)["input_ids"] if part.strip() else []

    prefix, suffix = special_token_frame(tokenizer)
    left_ids = prefix + ids(left.rstrip())
    return left_ids + [tokenizer.mask_token_id] + ids(right) + suffix, len(left_ids)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


# =====================================================================================================================
# Features at masked positions
# =====================================================================================================================
@dataclass
class MaskedFeatures:
    """Frozen features at masked positions: what probe heads train and predict on.

    ``sources[BACKBONE_SOURCE]`` is the backbone's last hidden state, ``sources[name]`` adapter ``name``'s output,
    each (N, hidden); ``labels`` the gold token ids (N,); ``groups`` which sentence / fact each row comes from.
    """

    sources: dict[str, torch.Tensor]
    labels: torch.Tensor
    groups: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, rows: torch.Tensor | Sequence[int]) -> "MaskedFeatures":
        rows = torch.as_tensor(rows, dtype=torch.long)
        return MaskedFeatures({k: v[rows] for k, v in self.sources.items()}, self.labels[rows], self.groups[rows])

    def split_by_group(self, dev_fraction: float, seed: int = 0) -> tuple["MaskedFeatures", "MaskedFeatures"]:
        """Train/dev split by whole sentences (no sentence has masked tokens on both sides)."""
        groups = sorted(set(self.groups.tolist()))
        random.Random(seed).shuffle(groups)
        dev_groups = set(groups[:max(1, round(dev_fraction * len(groups)))])
        is_dev = torch.tensor([g in dev_groups for g in self.groups.tolist()])
        return self.subset(torch.nonzero(~is_dev).flatten()), self.subset(torch.nonzero(is_dev).flatten())


@torch.no_grad()
def position_features(model: KAdapterModel, features: BackboneFeatures, rows: torch.Tensor, cols: torch.Tensor,
                      adapter_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The backbone's last hidden state and each adapter's output at (rows, cols), from backbone features
    (live or from the feature cache). Adapters run frozen (eval mode: no dropout)."""
    device = next(model.backbone.parameters()).device
    features = features.to(device)
    out = {BACKBONE_SOURCE: features.last_hidden_state[rows, cols].float().cpu()}
    for name in adapter_names:
        adapter = model.adapters[name]
        was_training = adapter.training
        adapter.eval()
        out[name] = adapter(features.hidden_states, features.attention_mask)[rows, cols].float().cpu()
        adapter.train(was_training)
    return out


def _taps(model: KAdapterModel, adapter_names: Sequence[str]) -> list[int]:
    return sorted({t for n in adapter_names for t in model.adapters[n].tap_layers})


@torch.no_grad()
def masked_position_features(model: KAdapterModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                             rows: torch.Tensor, cols: torch.Tensor,
                             adapter_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """One live frozen forward pass; the backbone's last hidden state and each adapter's output at (rows, cols)."""
    names = list(model.adapter_names if adapter_names is None else adapter_names)
    device = next(model.backbone.parameters()).device
    feats = extract_features(model.backbone, input_ids.to(device), attention_mask.to(device),
                             layers=_taps(model, names))
    return position_features(model, feats, rows, cols, names)


def _collect(model: KAdapterModel, sequences: Sequence[Sequence[int]], label_rows: Sequence[Sequence[int]],
             adapter_names: Sequence[str] | None, batch_size: int, desc: str,
             cache_root: str | Path | None = None, max_length: int = 512) -> MaskedFeatures:
    """Features at every labelled position (label != -100) of ``sequences``; row order follows the sequences.

    With ``cache_root`` the backbone states come from :class:`kadapter.cache.FeatureCache` (computed once for these
    exact token ids and kept on disk, float32), else from a live backbone pass.
    """
    names = list(model.adapter_names if adapter_names is None else adapter_names)
    cache = None
    if cache_root is not None:
        from datasets import Dataset

        from .cache import FeatureCache

        encoded = Dataset.from_dict({"input_ids": [list(s) for s in sequences],
                                     "attention_mask": [[1] * len(s) for s in sequences]})
        cache = FeatureCache.build(model, encoded, tokenizer=model.tokenizer, max_length=max_length,
                                   taps=_taps(model, names) or [0], root=cache_root, storage_dtype="float32",
                                   progress=False)
    pad_id = model.tokenizer.pad_token_id
    sources: dict[str, list[torch.Tensor]] = {}
    labels, groups = [], []
    for start in tqdm(range(0, len(sequences), batch_size), desc=desc, leave=False):
        index = list(range(start, min(start + batch_size, len(sequences))))
        ids, mask = pad_batch([sequences[i] for i in index], pad_id)
        lab, _ = pad_batch([label_rows[i] for i in index], -100)
        rows, cols = torch.nonzero(lab != -100, as_tuple=True)
        if rows.numel() == 0:
            continue
        if cache is not None:
            found = position_features(model, cache.features(index, pad_to=ids.shape[1]), rows, cols, names)
        else:
            found = masked_position_features(model, ids, mask, rows, cols, names)
        for key, value in found.items():
            sources.setdefault(key, []).append(value)
        labels.append(lab[rows, cols])
        groups.append(torch.tensor(index)[rows])
    if not labels:
        raise ValueError("no masked position to collect features from")
    return MaskedFeatures({k: torch.cat(v) for k, v in sources.items()}, torch.cat(labels), torch.cat(groups))


# =====================================================================================================================
# The probe-head training corpus
# =====================================================================================================================
CORPUS_SOURCES = {
    "ud_ewt_train": "Universal Dependencies English Web Treebank v2.16, train sentences (web text)",
    "semeval_train": "SemEval-2010 Task 8 training sentences (entity markers removed)",
}


def general_corpus(num_sentences: int | None = None, sources: Sequence[str] = ("ud_ewt_train", "semeval_train"),
                   seed: int = 0, min_words: int = 4) -> tuple[list[str], dict]:
    """General English sentences for probe-head training: not LAMA evidence, not Wikipedia fact sentences.

    Sentences of fewer than ``min_words`` words are left out (counted), the rest shuffled with ``seed`` and the first
    ``num_sentences`` (all if None) returned with a description of what was used.
    """
    texts, counts, short = [], {}, 0
    for source in sources:
        if source == "ud_ewt_train":
            from data_prep.dependency import load_ud_ewt

            word_lists = load_ud_ewt("train")[0]["words"]
        elif source == "semeval_train":
            from data_prep.eval_sets import load_semeval2010

            word_lists = load_semeval2010("train")[0]["tokens"]
        else:
            raise ValueError(f"unknown corpus source {source!r}; known: {sorted(CORPUS_SOURCES)}")
        sentences = [" ".join(words) for words in word_lists if len(words) >= min_words]
        short += len(word_lists) - len(sentences)
        counts[source] = len(sentences)
        texts.extend(sentences)
    random.Random(seed).shuffle(texts)
    chosen = texts if num_sentences is None else texts[:num_sentences]
    return chosen, {"sources": {s: CORPUS_SOURCES[s] for s in sources}, "available": counts,
                    "skipped_shorter_than_min_words": short, "min_words": min_words,
                    "used": len(chosen), "shuffle_seed": seed}


def mask_tokens(ids: Sequence[int], tokenizer, generator: random.Random, mask_prob: float = 0.15) -> tuple[list[int], list[int]]:
    """BERT masking of one tokenized sentence: each ordinary token is chosen with ``mask_prob``; a chosen token
    becomes the mask (80%), a random ordinary token (10%) or stays (10%). Returns (input ids, labels with -100 at
    positions not chosen)."""
    special = set(tokenizer.all_special_ids)
    inputs, labels = list(ids), [-100] * len(ids)
    for i, token in enumerate(ids):
        if token in special or generator.random() >= mask_prob:
            continue
        labels[i] = token
        roll = generator.random()
        if roll < 0.8:
            inputs[i] = tokenizer.mask_token_id
        elif roll < 0.9:
            replacement = generator.randrange(len(tokenizer))
            while replacement in special:
                replacement = generator.randrange(len(tokenizer))
            inputs[i] = replacement
    return inputs, labels


def masked_corpus_features(model: KAdapterModel, texts: Sequence[str], *, mask_prob: float = 0.15,
                           masking_seed: int = 0, max_length: int = 64, batch_size: int = 32,
                           adapter_names: Sequence[str] | None = None,
                           cache_root: str | Path | None = None) -> MaskedFeatures:
    """Mask ``texts`` once (BERT 80/10/10, fixed by ``masking_seed``) and keep the frozen features at the masked
    positions, for the backbone and each adapter in ``adapter_names`` (default: all of the model's). ``groups``
    are sentence indices. With ``cache_root`` the backbone pass goes through the feature cache."""
    tokenizer = model.tokenizer
    generator = random.Random(masking_seed)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    masked = [mask_tokens(ids, tokenizer, generator, mask_prob) for ids in encoded]
    return _collect(model, [m[0] for m in masked], [m[1] for m in masked], adapter_names, batch_size,
                    "masked corpus features", cache_root, max_length)


# =====================================================================================================================
# Probe heads
# =====================================================================================================================
class MaskedLMProbeHead(nn.Module):
    """BERT's masked-LM head: dense -> activation -> LayerNorm -> decoder tied to the frozen word embeddings + bias.

    The word embeddings are *borrowed* from the backbone (not a registered parameter or buffer): they stay frozen,
    are not saved with the head, and the head always decodes into the backbone's own token space.
    """

    def __init__(self, hidden_size: int, word_embeddings: nn.Embedding, hidden_act: str = "gelu",
                 layer_norm_eps: float = 1e-12):
        super().__init__()
        if word_embeddings.embedding_dim != hidden_size:
            raise ValueError(f"tied decoder needs embeddings of width {hidden_size}, got {word_embeddings.embedding_dim}")
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = ACT2FN[hidden_act]
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))
        object.__setattr__(self, "_word_embeddings", word_embeddings)  # borrowed, not registered
        self.reset_parameters()

    @property
    def vocab_size(self) -> int:
        return self.bias.shape[0]

    def reset_parameters(self, std: float = 0.02) -> None:
        """As BERT initialises its MLM head."""
        nn.init.normal_(self.dense.weight, std=std)
        nn.init.zeros_(self.dense.bias)
        nn.init.ones_(self.layer_norm.weight)
        nn.init.zeros_(self.layer_norm.bias)
        nn.init.zeros_(self.bias)

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.activation(self.dense(features)))

    def decoder(self, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The (frozen, tied) output embeddings and the bias, of every token or of ``token_ids`` only."""
        embeddings, bias = self._word_embeddings.weight.detach(), self.bias
        if token_ids is not None:
            embeddings, bias = embeddings[token_ids], bias[token_ids]
        return embeddings, bias

    def forward(self, features: torch.Tensor, token_ids: torch.Tensor | None = None,
                decoder: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits over the vocabulary, or over ``token_ids`` only (same values, less work when ranking a subset);
        ``decoder``: :meth:`decoder`'s output computed once for many calls."""
        h = self.transform(features)
        embeddings, bias = decoder if decoder is not None else self.decoder(token_ids)
        return h @ embeddings.to(h.dtype).T + bias

    def config(self) -> dict:
        return {"hidden_size": self.dense.in_features, "vocab_size": self.vocab_size,
                "hidden_act": self.hidden_act, "layer_norm_eps": self.layer_norm_eps}


# Where BERT-like and RoBERTa-like masked-LM checkpoints keep their head: our name -> their parameter name.
_PRETRAINED_HEAD_LAYOUTS = {
    "bert": {"dense.weight": "cls.predictions.transform.dense.weight",
             "dense.bias": "cls.predictions.transform.dense.bias",
             "layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
             "layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
             "bias": "cls.predictions.bias"},
    "roberta": {"dense.weight": "lm_head.dense.weight", "dense.bias": "lm_head.dense.bias",
                "layer_norm.weight": "lm_head.layer_norm.weight", "layer_norm.bias": "lm_head.layer_norm.bias",
                "bias": "lm_head.bias"},
}


def pretrained_mlm_head(model: KAdapterModel, name_or_path: str) -> MaskedLMProbeHead:
    """The checkpoint's own masked-LM head as a :class:`MaskedLMProbeHead` over ``model``'s backbone.

    Raises ``ValueError`` when the checkpoint has no trained MLM head (e.g. the default MiniLM, whose
    ``cls.predictions`` weights would be newly initialised) or when its decoder is not tied to this backbone's
    word embeddings.
    """
    from transformers import AutoModelForMaskedLM

    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report of a checkpoint without a head is what we check below
    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    layout = _PRETRAINED_HEAD_LAYOUTS.get("roberta" if hasattr(mlm, "lm_head") else "bert")
    state = mlm.state_dict()
    wanted = list(layout.values())
    missing = sorted(set(info.get("missing_keys", ())) & set(wanted) | {k for k in wanted if k not in state})
    if missing:
        raise ValueError(f"{name_or_path} has no pre-trained masked-LM head: {missing} would be newly initialised; "
                         "train a probe head instead (recipe 'trained')")
    decoder = mlm.get_output_embeddings().weight
    embeddings = model.backbone.get_input_embeddings().weight
    if decoder.shape != embeddings.shape or not torch.equal(decoder.detach().cpu(), embeddings.detach().cpu()):
        raise ValueError(f"the MLM decoder of {name_or_path} is not this backbone's word embeddings")
    config = mlm.config
    head = MaskedLMProbeHead(model.hidden_size, model.backbone.get_input_embeddings(), config.hidden_act,
                             config.layer_norm_eps)
    load_state_strict(head, {ours: state[theirs].detach().clone() for ours, theirs in layout.items()}, name_or_path)
    return head


@dataclass
class ProbeOutput:
    logits: torch.Tensor  # (positions, vocabulary)
    loss: torch.Tensor | None = None


class MaskedLMProbe(nn.Module):
    """Fusion of frozen features (identity for the backbone alone) + masked-LM head: the one kind of probe."""

    def __init__(self, adapter_names: Sequence[str], fusion: Fusion, head: MaskedLMProbeHead, identity: BackboneIdentity,
                 recipe: dict | None = None):
        super().__init__()
        if list(fusion.config.adapter_names) != list(adapter_names):
            raise ValueError(f"fusion is built for {fusion.config.adapter_names}, probe for {list(adapter_names)}")
        self.adapter_names = list(adapter_names)
        self.fusion, self.head, self.identity = fusion, head, identity
        self.recipe = dict(recipe or {})

    @property
    def device(self) -> torch.device:
        return self.head.bias.device

    def inputs(self, sources: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The feature sources this probe reads, on its device."""
        return {k: sources[k].to(self.device) for k in [BACKBONE_SOURCE, *self.adapter_names]}

    def forward(self, sources: Mapping[str, torch.Tensor], labels: torch.Tensor | None = None,
                token_ids: torch.Tensor | None = None,
                decoder: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeOutput:
        """Vocabulary logits from features at some positions (``sources[BACKBONE_SOURCE]`` and each adapter's
        output there), or logits of ``token_ids`` only (``decoder``: ``head.decoder(token_ids)``, precomputed);
        with ``labels`` (gold token ids, full vocabulary) also the masked-LM cross-entropy."""
        fused = self.fusion(sources[BACKBONE_SOURCE], {n: sources[n] for n in self.adapter_names})
        logits = self.head(fused, token_ids, decoder)
        loss = None
        if labels is not None:
            if token_ids is not None or decoder is not None:
                raise ValueError("the masked-LM loss is over the full vocabulary: give labels or token_ids, not both")
            loss = F.cross_entropy(logits, labels)
        return ProbeOutput(logits, loss)

    def save_pretrained(self, directory: str | Path) -> Path:
        """probe_config.json (adapters read, fusion mode, head shape, recipe, backbone) + probe.safetensors."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / PROBE_WEIGHTS_NAME))
        write_json(directory / PROBE_CONFIG_NAME, {
            "kadapter_version": __version__, "adapter_names": self.adapter_names, "fusion": self.fusion.config.mode,
            "head": self.head.config(), "recipe": self.recipe, "backbone": self.identity.to_dict()})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, model: KAdapterModel) -> "MaskedLMProbe":
        """Load a saved probe over ``model``, which must have the same backbone and the adapters the probe reads."""
        directory = Path(directory)
        payload = read_json(directory / PROBE_CONFIG_NAME, required=("backbone", "adapter_names", "fusion", "head"))
        diff = BackboneIdentity.from_dict(payload["backbone"]).differences(model.identity)
        if diff:
            raise ValueError(f"probe {directory} was trained on a different backbone:\n  " + "\n  ".join(diff))
        missing = [n for n in payload["adapter_names"] if n not in model.adapters]
        if missing:
            raise ValueError(f"probe {directory} reads adapters {missing} that the model does not have")
        probe = build_probe(model, payload["adapter_names"], fusion=payload["fusion"], recipe=payload["recipe"],
                            hidden_act=payload["head"]["hidden_act"], layer_norm_eps=payload["head"]["layer_norm_eps"])
        load_state_strict(probe, load_safetensors(directory / PROBE_WEIGHTS_NAME)[0], directory / PROBE_WEIGHTS_NAME)
        return probe


def build_probe(model: KAdapterModel, adapter_names: Sequence[str] = (), *, seed: int = 0, fusion: str = "concat",
                recipe: dict | None = None, hidden_act: str = "gelu", layer_norm_eps: float | None = None,
                head: MaskedLMProbeHead | None = None) -> MaskedLMProbe:
    """A fresh probe over ``adapter_names`` of ``model`` (empty: the backbone alone); ``seed`` fixes its init."""
    unknown = [n for n in adapter_names if n not in model.adapters]
    if unknown:
        raise ValueError(f"model has no adapter(s) {unknown}; it has {model.adapter_names}")
    if layer_norm_eps is None:
        layer_norm_eps = getattr(model.backbone.config, "layer_norm_eps", 1e-12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fusion_module = Fusion(FusionConfig(fusion, list(adapter_names)), model.hidden_size)
        if head is None:
            head = MaskedLMProbeHead(model.hidden_size, model.backbone.get_input_embeddings(), hidden_act,
                                     layer_norm_eps)
    probe = MaskedLMProbe(adapter_names, fusion_module, head, model.identity, {"seed": seed, **(recipe or {})})
    return probe.to(next(model.backbone.parameters()).device)


class _Rows(torch.utils.data.Dataset):
    """Row indices of a :class:`MaskedFeatures` as a map-style dataset (the trainer batches indices)."""

    def __init__(self, n: int, data: MaskedFeatures | None = None):
        self.n, self.data = n, data

    def __len__(self) -> int:
        return self.n

    def fingerprint(self) -> str:
        """What the rows point at (labels, groups, every source's features): a resume checks it."""
        from .training import data_fingerprint

        if self.data is None:
            return data_fingerprint(list(range(self.n)))
        return data_fingerprint([self.data.labels, self.data.groups, self.data.sources])

    def __getitem__(self, i: int) -> int:
        return i


def train_probes(probes: Mapping[str, MaskedLMProbe], data: MaskedFeatures, config: TrainConfig,
                 dev: MaskedFeatures | None = None) -> dict:
    """Train several probes side by side on the same cached masked-token features: the same batches in the same
    order (drawn from ``config.seed``), the same optimiser and schedule (:class:`kadapter.training.Trainer`).

    Only each probe's fusion and head train, with masked-LM cross-entropy over the full vocabulary; the backbone
    and adapters are not even run. With ``dev``, masked-token accuracy is logged after every epoch. The last
    weights are kept (no selection on dev), so every probe gets exactly the same number of steps.
    """
    if config.metric is not None:
        raise ValueError("probe heads are compared after the same number of steps: leave TrainConfig.metric None")

    def collate(rows: list[int]) -> dict:
        batch = data.subset(rows)
        return {"sources": batch.sources, "labels": batch.labels}

    evaluate = (lambda probe: masked_token_accuracy(probe, dev)) if dev is not None else None
    summary = train(dict(probes), _Rows(len(data), data), config, collate_fn=collate, evaluate=evaluate)
    for probe in probes.values():
        probe.eval()
        probe.recipe["training"] = {k: v for k, v in asdict(config).items()
                                    if k not in ("output_dir", "progress", "resume", "cpu", "log_every")}
    return summary


def seed_name(variant: str, seed: int) -> str:
    return f"{variant} | seed {seed}"


def train_variants(model: KAdapterModel, variants: Mapping[str, Sequence[str]], data: MaskedFeatures, *,
                   seeds: Sequence[int], config: TrainConfig, dev: MaskedFeatures | None = None,
                   fusion: str = "concat", recipe: dict | None = None
                   ) -> tuple[dict[str, MaskedLMProbe], dict[str, list[str]], dict[int, dict]]:
    """The probe-head recipe for every variant (name -> adapters read) and seed.

    Per seed, a fresh probe per variant (fusion and head initialised from the seed) and all of them trained side by
    side on the same batches (``config.seed`` = the seed; checkpoints in ``config.output_dir/seed_<seed>``).
    Returns the probes (named :func:`seed_name`), each variant's probe names, and the training summary per seed.
    """
    probes, by_variant, summaries = {}, {v: [] for v in variants}, {}
    for seed in seeds:
        batch = {seed_name(v, seed): build_probe(model, names, seed=seed, fusion=fusion, recipe=recipe)
                 for v, names in variants.items()}
        seed_config = TrainConfig(**{**asdict(config), "seed": seed,
                                     "output_dir": str(Path(config.output_dir) / f"seed_{seed}")})
        summaries[seed] = train_probes(batch, data, seed_config, dev=dev)
        probes.update(batch)
        for v in variants:
            by_variant[v].append(seed_name(v, seed))
    return probes, by_variant, summaries


@torch.no_grad()
def masked_token_accuracy(probe: MaskedLMProbe, data: MaskedFeatures, ks: Sequence[int] = (1, 10),
                          batch_size: int = 512) -> dict[str, float]:
    """Accuracy@k of the probe on held-out masked tokens, over the full vocabulary."""
    probe.eval()
    hits = {k: 0 for k in ks}
    for start in range(0, len(data), batch_size):
        batch = data.subset(range(start, min(start + batch_size, len(data))))
        top = probe(probe.inputs(batch.sources)).logits.topk(max(ks), dim=-1).indices.cpu()
        for k in ks:
            hits[k] += int((top[:, :k] == batch.labels[:, None]).any(-1).sum())
    return {f"acc@{k}": hits[k] / len(data) for k in ks} | {"n": float(len(data))}


# =====================================================================================================================
# The LAMA probe
# =====================================================================================================================
def lama_features(model: KAdapterModel, facts: Sequence[dict], adapter_names: Sequence[str] | None = None,
                  batch_size: int = 64, cache_root: str | Path | None = None) -> MaskedFeatures:
    """Frozen features at the mask of each fact's filled template; rows follow ``facts`` (labels = gold ids)."""
    from data_prep.lama import fill_template

    sequences, label_rows = [], []
    for fact in facts:
        ids, position = encode_cloze(model.tokenizer, fill_template(fact["template"], fact["sub_label"]))
        labels = [-100] * len(ids)
        labels[position] = fact["gold_id"]
        sequences.append(ids)
        label_rows.append(labels)
    features = _collect(model, sequences, label_rows, adapter_names, batch_size, "LAMA features", cache_root)
    if len(features) != len(facts):
        raise RuntimeError(f"{len(facts)} facts but {len(features)} masked positions")
    return features


@torch.no_grad()
def rank_answers(probe: MaskedLMProbe, features: MaskedFeatures, vocabulary: CandidateVocabulary,
                 top: int = 10, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each gold token among the candidates (1 = best; ties count in the gold's favour, as
    :func:`kadapter.metrics.rank_of_gold`), and the ``top`` best candidate token ids per row."""
    probe.eval()
    candidates = torch.tensor(vocabulary.token_ids)
    decoder = probe.head.decoder(candidates.to(probe.device))  # gathered once, not per batch
    ranks, tops = [], []
    for start in range(0, len(features), batch_size):
        batch = features.subset(range(start, min(start + batch_size, len(features))))
        scores = probe(probe.inputs(batch.sources), decoder=decoder).logits.float().cpu()
        gold = [vocabulary.index(int(t)) for t in batch.labels]
        ranks.append(rank_of_gold(scores, gold))
        tops.append(candidates[scores.topk(min(top, len(candidates)), dim=-1).indices].numpy())
    return np.concatenate(ranks), np.concatenate(tops)


def typed_ranks(probe: MaskedLMProbe, features: MaskedFeatures, facts: Sequence[dict],
                batch_size: int = 512) -> np.ndarray:
    """Rank of each gold object among *its relation's* objects only (the distinct gold tokens of that relation's
    facts), a much easier "typed" probe: the candidates the majority-object baseline also ranks over."""
    ranks = np.zeros(len(facts), dtype=int)
    rows_of: dict[str, list[int]] = {}
    for i, fact in enumerate(facts):
        rows_of.setdefault(fact["relation"], []).append(i)
    for relation, rows in rows_of.items():
        ids = sorted({facts[i]["gold_id"] for i in rows})
        vocabulary = CandidateVocabulary(ids, f"gold objects of {relation}", len(ids), {})
        ranks[rows], _ = rank_answers(probe, features.subset(rows), vocabulary, top=1, batch_size=batch_size)
    return ranks


def majority_ranks(facts: Sequence[dict]) -> np.ndarray:
    """The majority-object baseline as a ranking: per relation, objects ordered by how often they are the answer
    among ``facts`` (ties: alphabetically); each fact's rank is its object's place. Its P@1 is "always answer the
    relation's most frequent object"."""
    by_relation: dict[str, Counter] = {}
    for fact in facts:
        by_relation.setdefault(fact["relation"], Counter())[fact["obj_label"]] += 1
    place = {rel: {obj: i + 1 for i, (obj, _) in enumerate(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))}
             for rel, c in by_relation.items()}
    return np.array([place[f["relation"]][f["obj_label"]] for f in facts], dtype=int)


def metrics_by_relation(facts: Sequence[dict], ranks: np.ndarray) -> dict:
    """Per-relation P@1/P@10/MRR/n and their macro average (unweighted over relations, as LAMA reports)."""
    rows: dict[str, list[int]] = {}
    for fact, rank in zip(facts, ranks):
        rows.setdefault(fact["relation"], []).append(int(rank))
    per_relation = {rel: metrics_from_ranks(r) for rel, r in sorted(rows.items())}
    return {"per_relation": per_relation, "macro": macro_average(per_relation)}


def lama_probe(model: KAdapterModel, probes: Mapping[str, MaskedLMProbe], facts: Sequence[dict], *,
               vocabulary: CandidateVocabulary | None = None, batch_size: int = 64,
               held_out: Mapping | None = None, subsets: Mapping[str, set[str]] | None = None,
               cache_root: str | Path | None = None, typed: bool = True) -> dict:
    """Probe every model in ``probes`` on the same LAMA facts; returns a JSON-ready dict.

    ``facts`` are data_prep LAMA facts (template, sub_label, obj_label, relation, uuid). Facts whose object is not a
    single candidate token are dropped and counted. One frozen forward per fact is shared by all probes.
    ``vocabulary`` defaults to LAMA's common vocabulary ∩ the model's. ``held_out`` describes which facts were kept out
    of adapter training (copied into the result). ``subsets`` (name -> uuids, e.g. LAMA-UHN) are scored from the same
    predictions. Result: ``{vocabulary, facts, held_out, models: {name: {per_relation, macro}}, majority: {...},
    subsets: {name: {models, majority, facts}}, predictions: [per fact: uuid, relation, sub, obj, rank and top-1
    per model]}``.
    """
    tokenizer = model.tokenizer
    vocabulary = vocabulary or candidate_vocabulary(tokenizer)
    kept, selection = select_facts(facts, tokenizer, vocabulary)
    if not kept:
        raise ValueError(f"no fact has a single-token object among the candidates: {selection['skipped']}")
    needed = sorted({n for p in probes.values() for n in p.adapter_names})
    features = lama_features(model, kept, needed, batch_size, cache_root)
    ranks, top1, typed_rank = {}, {}, {}
    for name, probe in probes.items():
        ranks[name], tops = rank_answers(probe, features, vocabulary)
        top1[name] = tops[:, 0]
        if typed:
            typed_rank[name] = typed_ranks(probe, features, kept)
    majority = majority_ranks(kept)

    def score(rows: list[int]) -> dict:
        chosen = [kept[i] for i in rows]
        scored = {"facts": _fact_counts(chosen),
                  "models": {n: metrics_by_relation(chosen, r[rows]) for n, r in ranks.items()},
                  "majority": metrics_by_relation(chosen, majority[rows])}
        if typed:
            scored["typed"] = {"models": {n: metrics_by_relation(chosen, r[rows]) for n, r in typed_rank.items()}}
        return scored

    everything = score(list(range(len(kept))))
    result = {"vocabulary": vocabulary.to_dict(), "selection": selection, "facts": everything["facts"],
              "held_out": dict(held_out or {}), "models": everything["models"], "majority": everything["majority"],
              "probes": {n: {"adapter_names": p.adapter_names, "recipe": p.recipe} for n, p in probes.items()},
              "subsets": {}}
    if typed:
        result["typed"] = {**everything["typed"], "candidates": "per relation: the distinct gold objects of its "
                           "kept facts (the majority-object baseline ranks over the same set)"}
    for subset, uuids in (subsets or {}).items():
        rows = [i for i, f in enumerate(kept) if f["uuid"] in uuids]
        if rows:
            result["subsets"][subset] = score(rows)
    decode = tokenizer.convert_ids_to_tokens
    result["predictions"] = [
        {"uuid": f["uuid"], "relation": f["relation"], "sub_label": f["sub_label"], "obj_label": f["obj_label"],
         "gold_token": decode(f["gold_id"]), "majority_rank": int(majority[i]),
         "rank": {n: int(r[i]) for n, r in ranks.items()},
         **({"typed_rank": {n: int(r[i]) for n, r in typed_rank.items()}} if typed else {}),
         "top1": {n: decode(int(t[i])) for n, t in top1.items()}}
        for i, f in enumerate(kept)]
    return result


def _fact_counts(facts: Sequence[dict]) -> dict:
    per_relation = Counter(f["relation"] for f in facts)
    return {"total": len(facts), "per_relation": dict(sorted(per_relation.items()))}


def pretraining_results(adapter_dir: str | Path) -> dict | None:
    """The ``results.json`` that :func:`kadapter.pretraining.pretrain_adapters` wrote next to a saved adapter
    (``<run>/adapters/<name>/`` -> ``<run>/results.json``), or None when there is none."""
    path = Path(adapter_dir).resolve().parent.parent / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def adapter_init_seed(adapter_dir: str | Path) -> int | None:
    """The seed the adapter's knowledge pre-training initialised it with (from its pre-training results), so a
    "w/o knowledge" twin can start exactly where pre-training started; None when unknown."""
    results = pretraining_results(adapter_dir) or {}
    entry = results.get("models", {}).get(Path(adapter_dir).name, {})
    return entry.get("seed")


def holdout_info(report: dict | str | Path | None) -> dict:
    """Which LAMA facts the factual adapter never saw.

    ``report``: the pre-training set builder's report (``factual_stats.json`` of
    :func:`data_prep.factual.save_factual_dataset`) or the adapter's pre-training ``results.json`` (its ``data``
    entry carries the builder's hold-out report), as a dict or a path.
    """
    if report is None:
        return {"known": False, "note": "no pre-training report given: what the adapter was kept from is unknown"}
    if not isinstance(report, dict):
        report = json.loads(Path(report).read_text())
    if "data" in report:  # pre-training results.json
        holdout = report["data"].get("holdout")
        relations = report.get("labels", [])
    else:  # factual_stats.json
        holdout = report.get("holdout") if report.get("options", {}).get("hold_out_probe", "holdout" in report) else None
        relations = sorted(report.get("per_relation", {}))
    held = holdout is not None
    return {"known": True, "hold_out_probe": held,
            "rule": ("every LAMA T-REx probe fact (41 relations, 29,411 facts) was removed from the adapter's "
                     "training data, matched by relation + subject/object label and by Wikidata ids where known")
                    if held else "LAMA facts were NOT held out of adapter training",
            **(holdout or {}), "adapter_training_relations": sorted(relations)}


def write_results(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return path


# =====================================================================================================================
# Seeds, summaries, disagreements
# =====================================================================================================================
def summary_rows(result: dict, variants: Mapping[str, Sequence[str]], subset: str | None = None,
                 metrics: Sequence[str] = ("p@1", "p@10", "mrr"), typed: bool = False) -> list[dict]:
    """One row per variant: macro metrics as mean ± std over its probes (e.g. probe-head seeds), and a majority row.

    ``variants`` maps a display name to the probe names (keys of ``result["models"]``) that are its seeds.
    ``typed``: the scores with answers restricted to each relation's objects (:func:`typed_ranks`).
    """
    scored = result if subset is None else result["subsets"][subset]
    models = scored["typed"]["models"] if typed else scored["models"]
    rows = []
    for variant, names in variants.items():
        row = {"model": variant, "seeds": len(names)}
        for metric in metrics:
            mean, std = mean_std([models[n]["macro"][metric] for n in names])
            row[metric], row[f"{metric} std"] = mean, std
        rows.append(row)
    majority = {"model": "majority object (per relation)", "seeds": 0}
    for metric in metrics:
        majority[metric], majority[f"{metric} std"] = scored["majority"]["macro"][metric], 0.0
    rows.append(majority)
    for row in rows:
        row["facts"], row["relations"] = scored["facts"]["total"], len(scored["facts"]["per_relation"])
    return rows


def relation_p_at_1(result: dict, variants: Mapping[str, Sequence[str]], metric: str = "p@1",
                    typed: bool = False) -> dict[str, dict]:
    """Per relation, each variant's mean (over seeds) and std, and the majority baseline: for charts."""
    models = result["typed"]["models"] if typed else result["models"]
    out = {}
    for relation, counts in result["facts"]["per_relation"].items():
        row = {"facts": counts, "majority": result["majority"]["per_relation"][relation][metric]}
        for variant, names in variants.items():
            values = [models[n]["per_relation"][relation][metric] for n in names]
            row[variant] = mean_std(values)
        out[relation] = row
    return out


def disagreements(result: dict, first: str, second: str, limit: int = 20) -> list[dict]:
    """Facts where exactly one of two probes ranks the gold object first (first's wins, then second's)."""
    wins = {first: [], second: []}
    for p in result["predictions"]:
        a, b = p["rank"][first] == 1, p["rank"][second] == 1
        if a != b:
            winner = first if a else second
            wins[winner].append({"relation": p["relation"], "subject": p["sub_label"], "object": p["obj_label"],
                                 "winner": winner, f"top1 {first}": p["top1"][first],
                                 f"top1 {second}": p["top1"][second]})
    shown_first = wins[first][:max(1, limit // 2)]
    return shown_first + wins[second][:limit - len(shown_first)]


# =====================================================================================================================
# Interactive prediction (used by the widget demo and the notebooks alike)
# =====================================================================================================================
@torch.no_grad()
def predict_topk(model: KAdapterModel, probe: MaskedLMProbe, text: str, k: int = 10,
                 vocabulary: CandidateVocabulary | None = None) -> list[tuple[str, float]]:
    """The ``k`` most probable fillers of the one ``[MASK]`` in ``text``, as (token, probability).

    Probabilities are a softmax over ``vocabulary`` (default: the full vocabulary); tokens are shown decoded
    (a byte-level BPE's ``Ġ`` becomes the space it stands for, then stripped).
    """
    tokenizer = model.tokenizer
    ids, position = encode_cloze(tokenizer, text)
    input_ids, mask = pad_batch([ids], tokenizer.pad_token_id)
    sources = masked_position_features(model, input_ids, mask, torch.tensor([0]), torch.tensor([position]),
                                       probe.adapter_names)
    probe.eval()
    logits = probe(probe.inputs(sources)).logits[0].float().cpu()
    candidates = torch.tensor((vocabulary or full_vocabulary(tokenizer)).token_ids)
    probs = logits[candidates].softmax(-1)
    best = probs.topk(min(k, len(candidates)))
    return [(tokenizer.decode([int(candidates[i])]).strip(), float(p)) for p, i in zip(best.values, best.indices)]


def compare_topk(model: KAdapterModel, probes: Mapping[str, MaskedLMProbe], text: str,
                 names: Sequence[str] | None = None, k: int = 10,
                 vocabulary: CandidateVocabulary | None = None) -> dict[str, list[tuple[str, float]]]:
    """:func:`predict_topk` for several probes (default: all) on the same cloze statement."""
    return {name: predict_topk(model, probes[name], text, k, vocabulary) for name in (names or list(probes))}


# =====================================================================================================================
# Adapter combinations, "w/o knowledge" controls, and saving a set of probes
# =====================================================================================================================
CONTROL_SUFFIX = "_wo_knowledge"


def add_control_adapter(model: KAdapterModel, name: str, seed: int = 0) -> str:
    """Attach a "w/o knowledge" twin of adapter ``name``: the same config, freshly initialised
    (:meth:`KnowledgeAdapter.reset_parameters`, where knowledge pre-training starts) under ``seed``; pass the
    pre-training seed to get exactly its starting point. Returns the twin's name (``name + CONTROL_SUFFIX``)."""
    from .adapter import KnowledgeAdapter

    trained = model.adapters[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        control = KnowledgeAdapter(trained.config, model.identity)
    twin = name + CONTROL_SUFFIX
    model.add_adapter(twin, control)
    return twin


def probe_variants(adapter_names: Sequence[str], combinations: Sequence[Sequence[str]] | None = None,
                   controls: bool = True) -> dict[str, list[str]]:
    """Display name -> adapters read, for the backbone alone, each combination and (with ``controls``) each
    combination's "w/o knowledge" twin. Default combinations: every single adapter, then all together."""
    if combinations is None:
        combinations = [[n] for n in adapter_names] + ([list(adapter_names)] if len(adapter_names) > 1 else [])
    variants = {"backbone": []}
    for combo in combinations:
        variants["+" + "+".join(combo)] = list(combo)
    if controls:
        for combo in combinations:
            variants["+" + "+".join(combo) + " (w/o knowledge)"] = [n + CONTROL_SUFFIX for n in combo]
    return variants


def save_probe_set(model: KAdapterModel, probes: Mapping[str, MaskedLMProbe], directory: str | Path) -> Path:
    """The model with every adapter the probes read (controls included) and each probe in its own folder."""
    directory = Path(directory)
    model.save_pretrained(directory / "model")
    names = {}
    for i, (name, probe) in enumerate(probes.items()):
        probe.save_pretrained(directory / "probes" / f"{i:02d}")
        names[f"{i:02d}"] = name
    write_json(directory / "probes.json", {"probes": names})
    return directory


def load_probe_set(directory: str | Path, backbone=None) -> tuple[KAdapterModel, dict[str, MaskedLMProbe]]:
    """Inverse of :func:`save_probe_set` (the backbone is reloaded from its saved name/path unless given)."""
    directory = Path(directory)
    model = KAdapterModel.from_pretrained(directory / "model", backbone=backbone)
    names = read_json(directory / "probes.json", required=("probes",))["probes"]
    return model, {name: MaskedLMProbe.from_pretrained(directory / "probes" / folder, model)
                   for folder, name in names.items()}
