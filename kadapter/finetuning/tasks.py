"""Fine-tuning tasks: what each downstream task is (:class:`TaskSpec`), how it is scored, loaded and encoded.

The run loop over settings and seeds is :mod:`kadapter.finetuning.runner`; tables and verdicts are
:mod:`kadapter.finetuning.results`.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict

from ..baselines import as_label_set
from ..encoding import (EncodingStats, encode_entity_typing, encode_multiple_choice, encode_relation_dataset,
                       encoding_fingerprint)
from ..metrics import (accuracy, classification_metrics, entity_typing_metrics, semeval_official_score,
                      tacred_metrics)

ENTITY_TYPING, RELATION, MULTIPLE_CHOICE = "entity_typing", "relation_classification", "multiple_choice"
SPLITS = ("train", "dev", "test")


# ====================================================================================================== tasks
@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # ENTITY_TYPING | RELATION | MULTIPLE_CHOICE
    metric: str  # the headline metric: model selection on dev and the results table
    metric_label: str
    negative_label: str | None = None  # the relation that means "no relation" (not scored as a class)


TASKS = {
    "openentity": TaskSpec("openentity", ENTITY_TYPING, "micro_f1", "OpenEntity loose micro-F1"),
    "semeval": TaskSpec("semeval", RELATION, "macro_f1",
                        "SemEval-2010 Task 8 official macro-F1 (9 relations, direction counted, Other excluded)",
                        negative_label="Other"),
    "fewrel": TaskSpec("fewrel", RELATION, "accuracy", "FewRel (val_wiki, 16-way supervised) accuracy"),
    "tacred": TaskSpec("tacred", RELATION, "f1", "TACRED micro-F1 (no_relation excluded)",
                       negative_label="no_relation"),
    "cosmosqa": TaskSpec("cosmosqa", MULTIPLE_CHOICE, "accuracy", "CosmosQA accuracy (4-way)"),
}


def score(task: TaskSpec, gold: Sequence, pred: Sequence) -> dict[str, float]:
    """The task's metrics on aligned gold/predicted labels (names, label sets or answer indices)."""
    if task.kind == ENTITY_TYPING:
        return entity_typing_metrics(gold, pred)
    if task.kind == MULTIPLE_CHOICE:
        return {"accuracy": accuracy(gold, pred)}
    if task.name == "semeval":
        return {**semeval_official_score(gold, pred), "accuracy": accuracy(gold, pred)}
    if task.name == "tacred":
        return {**tacred_metrics(gold, pred, task.negative_label), "accuracy": accuracy(gold, pred)}
    return classification_metrics(gold, pred)


# ========================================================================================================= data
@dataclass
class TaskData:
    """Raw train/dev/test records of one task, its label names, and how every split was made."""

    task: TaskSpec
    splits: DatasetDict
    labels: list[str] | None  # entity types / relations in head order; None for multiple choice
    provenance: dict = field(default_factory=dict)

    def gold(self, split: str) -> list:
        """Gold labels as the metrics want them: label sets, relation names or answer indices."""
        column = self.splits[split]["labels" if self.task.kind == ENTITY_TYPING else
                                    "relation" if self.task.kind == RELATION else "label"]
        return [as_label_set(x) for x in column] if self.task.kind == ENTITY_TYPING else list(column)


def _random_split(dataset: Dataset, size: int | float, seed: int) -> tuple[Dataset, Dataset]:
    """(rest, held-out) with `size` examples (or that fraction) held out at random."""
    n = len(dataset)
    k = int(round(size * n)) if isinstance(size, float) else int(size)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return dataset.select(sorted(order[k:])), dataset.select(sorted(order[:k]))


def _cap(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    return _random_split(dataset, limit, seed)[1]


def load_task(name: str, *, limits: Mapping[str, int | None] | None = None, dev_fraction: float = 0.1,
              test_fraction: float = 0.2, data_seed: int = 0) -> TaskData:
    """Train/dev/test for a task, the same for every setting and seed (splits and subsamples use `data_seed`).

    * ``openentity``: the official ERNIE-format train/dev/test (1,998 each); 9 types from ``tags.txt``.
    * ``semeval``: official train (8,000) minus a random ``dev_fraction`` held out as dev; official test (2,717).
    * ``fewrel``: ``val_wiki`` (11,200, 16 relations) split at random into train / dev / test.
    * ``tacred``: the public 60-example TACRED sample (train/dev/test of 20): a format check, not an experiment.
    * ``cosmosqa``: the labelled dev set split *by context* into train / dev / test (no context in two splits).

    ``limits`` caps each split by random subsampling, e.g. ``{"train": 1000}``; what was done is recorded.
    """
    from data_prep import eval_sets as es

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    task, reports, how = TASKS[name], {}, ""
    if name == "openentity":
        parts = {}
        for split in ("train", "dev", "test"):
            parts[split], reports[split] = es.load_openentity(split)
        labels = es.openentity_types()
        how = "official ERNIE-format train/dev/test"
    elif name == "semeval":
        full, reports["train"] = es.load_semeval2010("train")
        train, dev = _random_split(full, dev_fraction, data_seed)
        test, reports["test"] = es.load_semeval2010("test")
        parts = {"train": train, "dev": dev, "test": test}
        labels = list(es.SEMEVAL_LABELS)
        how = f"official train minus a random {dev_fraction:.0%} dev (seed {data_seed}); official test"
    elif name == "fewrel":
        full, reports["all"] = es.load_fewrel("val_wiki")
        rest, test = _random_split(full, test_fraction, data_seed)
        train, dev = _random_split(rest, dev_fraction / (1 - test_fraction), data_seed + 1)
        parts = {"train": train, "dev": dev, "test": test}
        labels = sorted(set(full["relation"]))
        how = f"val_wiki split at random {1 - dev_fraction - test_fraction:.0%}/{dev_fraction:.0%}/" \
              f"{test_fraction:.0%} (seed {data_seed})"
    elif name == "tacred":
        parts = {}
        for split in ("train", "dev", "test"):
            parts[split], reports[split] = es.load_tacred_sample(split)
        labels = sorted({r for d in parts.values() for r in d["relation"]})
        how = "the public 60-example TACRED sample (format fixture; the full set is LDC-licensed)"
    else:  # cosmosqa
        full, reports["all"] = es.load_cosmosqa()
        outer = es.split_by_context(full, test_size=test_fraction, seed=data_seed)
        inner = es.split_by_context(outer["train"], test_size=dev_fraction / (1 - test_fraction), seed=data_seed + 1)
        parts = {"train": inner["train"], "dev": inner["test"], "test": outer["test"]}
        labels = None
        how = f"official dev set split by context into train/dev/test (~{1 - dev_fraction - test_fraction:.0%}/" \
              f"{dev_fraction:.0%}/{test_fraction:.0%}, seed {data_seed})"
    sizes = {split: len(d) for split, d in parts.items()}
    limits = dict(limits or {})
    parts = {split: _cap(d, limits.get(split), data_seed + 7) for split, d in parts.items()}
    provenance = {
        "task": name, "splits": how, "full_sizes": sizes, "used_sizes": {s: len(d) for s, d in parts.items()},
        "subsampled": {s: f"{len(d)} of {sizes[s]}, random (seed {data_seed + 7})"
                       for s, d in parts.items() if len(d) < sizes[s]},
        "skipped": {s: r.to_dict() for s, r in reports.items()},
    }
    return TaskData(task, DatasetDict(parts), labels, provenance)


# ===================================================================================================== encoding
def encode_task(data: TaskData, tokenizer, max_length: int = 128) -> tuple[DatasetDict, dict[str, dict]]:
    """Every split as model inputs with ``positions`` (the sequence positions the head reads) and ``labels``.

    Returns the encoded splits and, per split, :class:`EncodingStats` as a dict (how many inputs were truncated
    around their markers so that the markers survive).
    """
    kind, label2id = data.task.kind, {label: i for i, label in enumerate(data.labels or [])}
    encoded, stats = {}, {}
    for split, records in data.splits.items():
        if kind == RELATION:
            enc, st = encode_relation_dataset(records, tokenizer, max_length, label2id)
            enc = enc.map(lambda r: {"positions": [r["subj_pos"], r["obj_pos"]]},
                          remove_columns=["subj_pos", "obj_pos"], desc="positions",
                          new_fingerprint=f"{enc._fingerprint}-positions"[:64])
        elif kind == ENTITY_TYPING:
            enc = records.map(lambda r: _with_positions(encode_entity_typing(r, tokenizer, max_length, label2id),
                                                        "entity_pos"),
                              remove_columns=records.column_names, desc="encode entity typing",
                              new_fingerprint=encoding_fingerprint(records, "entity_typing", tokenizer, max_length,
                                                                   label2id))
            st = EncodingStats(examples=len(enc), truncated=int(sum(enc["truncated"])),
                               label_counts=dict(sorted(Counter(t for ls in records["labels"] for t in ls).items())))
        else:
            enc = records.map(lambda r: encode_multiple_choice(r["context"], r["question"], r["choices"], tokenizer,
                                                               max_length, r["label"]),
                              remove_columns=records.column_names, desc="encode multiple choice",
                              new_fingerprint=encoding_fingerprint(records, "multiple_choice", tokenizer, max_length,
                                                                   None))
            st = EncodingStats(examples=len(enc), truncated=int(sum(enc["truncated"])),
                               label_counts=dict(sorted(Counter(records["label"]).items())))
        encoded[split], stats[split] = enc, st.to_dict()
    return DatasetDict(encoded), stats


def _with_positions(encoded: dict, key: str) -> dict:
    encoded["positions"] = [encoded.pop(key)]
    return encoded
