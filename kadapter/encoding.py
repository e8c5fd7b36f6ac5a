"""Records -> model inputs: relation classification, entity typing, multiple choice and dependency heads.

Encoders return unpadded Python lists; :class:`PadCollator` pads a batch. When a sequence is longer than
``max_length`` it is truncated *around the entity markers* so that the positions the heads read always survive, and
the example is flagged ``truncated`` (dataset-level encoders count them in :class:`EncodingStats`).

RoBERTa-style byte-level BPE needs ``add_prefix_space`` for pre-split words; ``data_prep.dependency.words_tokenizer``
switches it on (a copy of the tokenizer), and every word-level encoder here goes through it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from datasets import Dataset

from data_prep.alignment import insert_markers
from data_prep.dependency import IGNORE_INDEX, encode_heads, encode_heads_batch, words_tokenizer

ENTITY_MARKER = "@"


@dataclass
class EncodingStats:
    """How a dataset was encoded: nothing is cut silently."""

    examples: int = 0
    truncated: int = 0  # sequences shortened to max_length (markers kept)
    dropped_labels: int = 0  # dependency words left unlabelled because they or their head were cut
    label_counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- truncation
def _special_layout(word_ids: list[int | None]) -> tuple[int, int]:
    """Number of special tokens before and after the content of a single encoded sequence."""
    content = [i for i, w in enumerate(word_ids) if w is not None]
    if not content:
        raise ValueError("the sequence has no content token")
    first, last = content[0], content[-1]
    if last - first + 1 != len(content):
        raise ValueError("special tokens inside a single sequence are not supported")
    return first, len(word_ids) - 1 - last


def keep_window(n: int, budget: int, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Which of `n` content positions to keep so that at most `budget` remain and every span survives.

    `spans` are inclusive (first, last) position ranges that must be kept (e.g. ``@ subject @`` and ``# object #``).
    One contiguous window centred on all spans when they fit together; otherwise one window per span (each span's
    start keeps priority), so the opening markers are never lost.
    """
    if n <= budget:
        return list(range(n))
    if budget < len(spans):
        raise ValueError(f"max_length leaves room for {budget} tokens, fewer than the {len(spans)} markers")
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    if hi - lo + 1 <= budget:
        start = lo - (budget - (hi - lo + 1)) // 2
        start = max(0, min(start, n - budget))
        return list(range(start, start + budget))
    keep: set[int] = set()
    shares = [budget // len(spans) + (i < budget % len(spans)) for i in range(len(spans))]
    for (s, e), share in zip(sorted(spans), shares):
        keep.update(range(s, min(s + share, n)))
    return sorted(keep)


def _truncate(ids: list[int], word_ids: list[int | None], max_length: int, spans: Sequence[tuple[int, int]]):
    """Cut the content of an encoded sequence to max_length keeping `spans` (content-relative, inclusive).

    Returns (new ids, map old content position -> new absolute position or -1, truncated?).
    """
    before, after = _special_layout(word_ids)
    content = ids[before:len(ids) - after]
    kept = keep_window(len(content), max_length - before - after, spans)
    where = [-1] * len(content)
    for new, old in enumerate(kept):
        where[old] = before + new
    new_ids = ids[:before] + [content[i] for i in kept] + ids[len(ids) - after:]
    return new_ids, where, len(kept) < len(content)


def _first_subtokens(word_ids: list[int | None]) -> dict[int, tuple[int, int]]:
    """word index -> (first, last) sub-token position."""
    spans: dict[int, tuple[int, int]] = {}
    for pos, w in enumerate(word_ids):
        if w is not None:
            spans[w] = (spans[w][0], pos) if w in spans else (pos, pos)
    return spans


def _label_id(label, label2id: Mapping | None, what: str) -> int | None:
    if label2id is None:
        return None
    if label not in label2id:
        raise ValueError(f"{what} {label!r} is not among the head's {len(label2id)} labels")
    return int(label2id[label])


# ------------------------------------------------------------------------------------- relation classification
def encode_relation(record: Mapping, tokenizer, max_length: int = 128, label2id: Mapping | None = None,
                    markers: str = "open") -> dict:
    """A relation record (word tokens + end-exclusive subject/object spans) as ``@ subj @ ... # obj #`` ids.

    Returns ``input_ids``, ``attention_mask``, ``subj_pos`` / ``obj_pos`` (sub-token positions of the opening
    ``@`` and ``#``, or with ``markers="close"`` of the closing ones: on a causal backbone only they have seen the
    entity), ``truncated`` and, when ``label2id`` is given, ``labels`` (a relation outside it is an error).
    """
    if markers not in ("open", "close"):
        raise ValueError(f"markers must be 'open' or 'close', got {markers!r}")
    marked, subj_word, obj_word = insert_markers(record["tokens"], record["subj_start"], record["subj_end"],
                                                 record["obj_start"], record["obj_end"])
    subj_close = subj_word + (record["subj_end"] - record["subj_start"]) + 1
    obj_close = obj_word + (record["obj_end"] - record["obj_start"]) + 1
    enc = words_tokenizer(tokenizer)(marked, is_split_into_words=True, truncation=False)
    ids, word_ids = enc["input_ids"], enc.word_ids()
    pos = _first_subtokens(word_ids)
    before, _ = _special_layout(word_ids)
    spans = [(pos[subj_word][0] - before, pos[subj_close][1] - before),
             (pos[obj_word][0] - before, pos[obj_close][1] - before)]
    ids, where, truncated = _truncate(ids, word_ids, max_length, spans)
    out = {"input_ids": ids, "attention_mask": [1] * len(ids), "subj_pos": _marker_position(where, spans[0], markers),
           "obj_pos": _marker_position(where, spans[1], markers), "truncated": truncated}
    if label2id is not None:
        out["labels"] = _label_id(record["relation"], label2id, "relation")
    return out


def _marker_position(where: list[int], span: tuple[int, int], markers: str) -> int:
    """The new position of a span's opening marker (always kept by :func:`keep_window`), or of its closing marker;
    when truncation cut the closing marker (a long span sharing a tight budget), the last token of the span that
    survived: the latest position that has seen the opening marker and what is left of the entity."""
    first, last = span
    if markers == "open":
        return where[first]
    return max(where[p] for p in range(first, last + 1))


def encode_relation_dataset(dataset: Dataset, tokenizer, max_length: int = 128,
                            label2id: Mapping | None = None, markers: str = "open") -> tuple[Dataset, EncodingStats]:
    """:func:`encode_relation` over a dataset (``Dataset.map``, so the result is fingerprinted and cached)."""
    if len(dataset) == 0:
        raise ValueError("cannot encode an empty relation dataset")
    tok = words_tokenizer(tokenizer)
    task = "relation" if markers == "open" else "relation-close-or-last-kept"
    encoded = dataset.map(lambda r: encode_relation(r, tok, max_length, label2id, markers),
                          remove_columns=dataset.column_names, desc="encode relations",
                          new_fingerprint=encoding_fingerprint(dataset, task, tok, max_length, label2id))
    stats = EncodingStats(examples=len(encoded), truncated=int(sum(encoded["truncated"])))
    if label2id is not None:
        stats.label_counts = dict(sorted(_count(dataset["relation"]).items()))
    return encoded, stats


# ----------------------------------------------------------------------------------------------- entity typing
def mark_entity(text: str, span_start: int, span_end: int) -> tuple[str, int]:
    """``text`` with ``@`` before and after the mention (character offsets, end exclusive), and the character
    offset of the first ``@``."""
    if not 0 <= span_start < span_end <= len(text):
        raise ValueError(f"mention span [{span_start}, {span_end}) outside a text of {len(text)} characters")
    left, mention, right = text[:span_start], text[span_start:span_end], text[span_end:]
    pad_left = "" if not left or left[-1].isspace() else " "
    pad_right = "" if not right or right[0].isspace() else " "
    marked = f"{left}{pad_left}{ENTITY_MARKER} {mention} {ENTITY_MARKER}{pad_right}{right}"
    return marked, len(left) + len(pad_left)


def encode_entity_typing(record: Mapping, tokenizer, max_length: int = 128,
                         label2id: Mapping | None = None, markers: str = "open") -> dict:
    """An entity-typing record ``{text, span_start, span_end, labels}`` with ``@`` around the mention.

    Returns ``input_ids``, ``attention_mask``, ``entity_pos`` (position of the first ``@``, or with
    ``markers="close"`` of the closing one: on a causal backbone only it has seen the mention), ``truncated`` and,
    with ``label2id``, multi-hot ``labels``.
    """
    if markers not in ("open", "close"):
        raise ValueError(f"markers must be 'open' or 'close', got {markers!r}")
    marked, at_char = mark_entity(record["text"], record["span_start"], record["span_end"])
    close_char = at_char + 2 + (record["span_end"] - record["span_start"]) + 1
    enc = tokenizer(marked, truncation=False, return_offsets_mapping=True)
    ids, offsets, word_ids = enc["input_ids"], enc["offset_mapping"], enc.word_ids()

    def token_at(char: int) -> int:
        for i, (s, e) in enumerate(offsets):
            if word_ids[i] is not None and s <= char < e:
                return i
        raise ValueError(f"no token covers the marker at character {char} of {marked!r}")

    before, _ = _special_layout(word_ids)
    span = (token_at(at_char) - before, token_at(close_char) - before)
    ids, where, truncated = _truncate(ids, word_ids, max_length, [span])
    out = {"input_ids": ids, "attention_mask": [1] * len(ids), "entity_pos": _marker_position(where, span, markers),
           "truncated": truncated}
    if label2id is not None:
        hot = [0.0] * len(label2id)
        for label in record["labels"]:
            hot[_label_id(label, label2id, "entity type")] = 1.0
        out["labels"] = hot
    return out


# --------------------------------------------------------------------------------------------- multiple choice
def encode_multiple_choice(context: str, question: str, choices: Sequence[str], tokenizer, max_length: int = 256,
                           label: int | None = None) -> dict:
    """One (context, question + answer) pair per choice; the context is truncated first.

    Returns per-choice lists ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the tokenizer has
    them), ``truncated`` (any choice cut) and ``labels`` when ``label`` is given.
    """
    if label is not None and not 0 <= label < len(choices):
        raise ValueError(f"answer {label} outside the {len(choices)} choices")
    seconds = [f"{question} {choice}".strip() for choice in choices]
    full = tokenizer([context] * len(choices), seconds, truncation=False)
    truncated = any(len(ids) > max_length for ids in full["input_ids"])
    try:
        enc = tokenizer([context] * len(choices), seconds, truncation="only_first", max_length=max_length)
    except Exception:  # the question + answer alone is too long: cut both, longest first
        enc = tokenizer([context] * len(choices), seconds, truncation="longest_first", max_length=max_length)
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    out["truncated"] = truncated
    if label is not None:
        out["labels"] = int(label)
    return out


# ----------------------------------------------------------------------------------------- dependency heads
def encode_dependency(record: Mapping, tokenizer, max_length: int = 128) -> dict:
    """A dependency record ``{words, heads}`` -> ``input_ids``, ``attention_mask``, ``labels`` (head position at
    each word's first sub-token, -100 elsewhere; ``data_prep.dependency.encode_heads``), ``n_dropped_labels``."""
    enc = encode_heads(record["words"], record["heads"], tokenizer, max_length, padding=False)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": enc["head_labels"],
            "n_dropped_labels": enc["n_dropped_labels"],
            "truncated": min(enc["word_starts"], default=0) < 0}


def encode_dependency_dataset(dataset: Dataset, tokenizer, max_length: int = 128) -> tuple[Dataset, EncodingStats]:
    """Dependency records -> unpadded model inputs with head labels (``Dataset.map``, batched)."""
    if len(dataset) == 0:
        raise ValueError("cannot encode an empty dependency dataset")
    tok = words_tokenizer(tokenizer)

    def batch_fn(batch):
        enc = encode_heads_batch(batch, tok, max_length, padding=False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": enc["head_labels"], "n_dropped_labels": enc["n_dropped_labels"],
                "truncated": [min(s, default=0) < 0 for s in enc["word_starts"]]}

    encoded = dataset.map(batch_fn, batched=True, remove_columns=dataset.column_names, desc="encode heads",
                          new_fingerprint=encoding_fingerprint(dataset, "dependency", tok, max_length, None))
    stats = EncodingStats(examples=len(encoded), truncated=int(sum(encoded["truncated"])),
                          dropped_labels=int(sum(encoded["n_dropped_labels"])))
    return encoded, stats


# ----------------------------------------------------------------------------------------------------- padding
PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "labels": IGNORE_INDEX}


class PadCollator:
    """Pad a list of encoded examples into tensors.

    Sequence fields (lists, possibly nested for multiple choice) are right-padded to the longest in the batch:
    ``input_ids`` with the tokenizer's pad id, ``labels`` with -100, anything else with 0. Scalars become tensors;
    float lists stay float. Non-numeric fields (strings) and ``keep=False`` bookkeeping are dropped.
    """

    DROP = ("truncated", "n_dropped_labels")

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            raise ValueError("the tokenizer has no pad token")
        self.pad_values = {**PAD_VALUES, "input_ids": pad_token_id}
        self.multiple = pad_to_multiple_of

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        batch = {}
        for key in examples[0]:
            if key in self.DROP:
                continue
            values = [ex[key] for ex in examples]
            if isinstance(values[0], str):
                continue
            batch[key] = self._tensor(values, self.pad_values.get(key, 0))
        return batch

    def _tensor(self, values: list, pad) -> torch.Tensor:
        if not isinstance(values[0], (list, tuple)):
            return torch.tensor(values)
        if isinstance(values[0][0], (list, tuple)):  # (batch, choices, seq)
            width = self._width(max(len(s) for v in values for s in v))
            return torch.stack([torch.tensor([list(s) + [pad] * (width - len(s)) for s in v]) for v in values])
        lengths = {len(v) for v in values}
        if isinstance(values[0][0], float) and len(lengths) == 1:  # multi-hot labels: never padded
            return torch.tensor(values)
        width = self._width(max(lengths))
        return torch.tensor([list(v) + [pad] * (width - len(v)) for v in values])

    def _width(self, n: int) -> int:
        return n if not self.multiple else -(-n // self.multiple) * self.multiple


def collator_for(tokenizer, **kwargs) -> PadCollator:
    return PadCollator(tokenizer.pad_token_id, **kwargs)


# ----------------------------------------------------------------------------------------------------- helpers
def _count(values) -> dict:
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what the tokenizer does (its serialised fast-tokenizer state), not where it was loaded from."""
    import hashlib

    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def encoding_fingerprint(dataset: Dataset, task: str, tokenizer, max_length: int, label2id) -> str:
    """The `datasets` fingerprint of an encoded dataset: what it was encoded from (the source dataset's own
    fingerprint), for which task, with which tokenizer, length and labels — so a changed input is re-encoded."""
    import hashlib
    import json

    payload = json.dumps([dataset._fingerprint, task, tokenizer_fingerprint(tokenizer), max_length,
                          sorted((str(k), int(v)) for k, v in (label2id or {}).items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
