"""Vocabulary: which token ids answers are ranked over, and which LAMA facts have a single-token object among them.

A fact is kept when its object is one token of the model's vocabulary in the form it takes after a space inside a
sentence (uncased WordPiece: lower-cased by the tokenizer; byte-level BPE: the ``Ġ`` form; SentencePiece: the ``▁``
form), and that token is among the candidates: LAMA's common vocabulary mapped the same way, intersected with the
model's vocabulary. Shared by the masked and the causal probe.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence


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
