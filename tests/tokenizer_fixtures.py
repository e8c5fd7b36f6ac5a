"""A small but real RoBERTa-style byte-level BPE tokenizer for tests.

No pre-trained RoBERTa tokenizer exists offline, so this trains one: ``tokenizers.ByteLevelBPETokenizer`` on the
first few thousand sentences of UD English EWT train (real English text), vocabulary ~3,000, with RoBERTa's special
tokens, wrapped as ``transformers.RobertaTokenizerFast`` (``RobertaTokenizer`` in transformers 5, which is the
fast one) with ``add_prefix_space=True`` so that pre-split words work. It is saved once per test session in a
temporary folder (removed at exit) and loaded back from there, so it is also a real ``from_pretrained`` directory.

Import it from any test: ``from tokenizer_fixtures import roberta_bpe_tokenizer``.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from functools import lru_cache
from itertools import islice

BPE_VOCAB_SIZE = 3000
BPE_TRAIN_SENTENCES = 4000
ROBERTA_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..3 for the first four


def _ud_sentences(limit: int) -> list[str]:
    from data_prep.paths import data_path

    path = data_path("ud_english_ewt", "en_ewt-ud-train.conllu")
    with open(path, encoding="utf-8") as handle:
        texts = (line[len("# text = "):].rstrip("\n") for line in handle if line.startswith("# text = "))
        return list(islice(texts, limit))


@lru_cache(maxsize=1)
def roberta_bpe_tokenizer_dir() -> str:
    """Train the byte-level BPE once and save it as a RoBERTa tokenizer folder; returns the folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_ud_sentences(BPE_TRAIN_SENTENCES), vocab_size=BPE_VOCAB_SIZE, min_frequency=2,
                            special_tokens=ROBERTA_SPECIAL_TOKENS, show_progress=False)
    folder = tempfile.mkdtemp(prefix="kadapter-roberta-bpe-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    vocab_file, merges_file = bpe.save_model(folder)
    # transformers 5 builds RobertaTokenizer(Fast) from the vocab dict and merge pairs, not from file names.
    with open(merges_file, encoding="utf-8") as handle:
        merges = [tuple(line.split()) for line in handle if line.strip() and not line.startswith("#version")]

    with open(vocab_file, encoding="utf-8") as handle:
        vocab = json.load(handle)
    RobertaTokenizerFast(vocab=vocab, merges=merges, add_prefix_space=True,
                         model_max_length=512).save_pretrained(folder)
    return folder


@lru_cache(maxsize=1)
def roberta_bpe_tokenizer():
    """The test RoBERTa-style tokenizer (byte-level BPE, <s> ... </s>, add_prefix_space=True)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(roberta_bpe_tokenizer_dir())


def tiny_random_gemma(tokenizer):
    """A tiny random Gemma-3-architecture causal LM (built from its config, no download) over ``tokenizer``."""
    import torch

    from kadapter.model import random_backbone

    torch.manual_seed(0)
    return random_backbone("gemma3_text", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                           num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           tie_word_embeddings=True)
