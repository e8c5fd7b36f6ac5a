"""Trivial baselines: always answer what was most frequent in the training data.

Any learned result must beat these. They are generic over the label type:

* relation classification: the majority relation (``no_relation`` / ``Other`` on the real sets);
* entity typing: the most frequent label *set* (a set is one answer, compared as a whole);
* multiple choice: the most frequent gold answer index;
* LAMA probing: the most frequent object per relation (:meth:`MajorityBaseline.fit` with ``groups``).

Ties are broken by first occurrence in the training data, so a baseline never depends on hash order.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


def as_label_set(labels: Iterable) -> frozenset:
    """One example's labels as a hashable set: the unit a label-set majority counts."""
    return frozenset(labels)


def majority(values: Iterable[Hashable]) -> Hashable:
    """The most frequent value; on a tie, the one seen first."""
    counts = Counter(values)  # keeps insertion order, and most_common is stable: ties stay in first-seen order
    if not counts:
        raise ValueError("the majority of zero values is undefined")
    return counts.most_common(1)[0][0]


@dataclass
class MajorityBaseline:
    """Predicts the training majority, overall or per group (e.g. per LAMA relation).

    ``fit(labels)`` then ``predict(n)``; or ``fit(labels, groups)`` then ``predict(groups)``. A group unseen in
    training falls back to the overall majority (counted in ``unseen_groups``, never hidden).
    """

    overall: Any = None
    by_group: dict = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    unseen_groups: Counter = field(default_factory=Counter)
    fitted: bool = False

    def fit(self, labels: Sequence[Hashable], groups: Sequence[Hashable] | None = None) -> "MajorityBaseline":
        labels = list(labels)
        self.counts = Counter(labels)
        self.overall = majority(labels)
        self.by_group = {}
        if groups is not None:
            groups = list(groups)
            if len(groups) != len(labels):
                raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
            per_group: dict[Hashable, list] = {}
            for g, y in zip(groups, labels):
                per_group.setdefault(g, []).append(y)
            self.by_group = {g: majority(ys) for g, ys in per_group.items()}
        self.fitted = True
        return self

    def predict(self, n_or_groups: int | Sequence[Hashable]) -> list:
        if not self.fitted:
            raise RuntimeError("fit the baseline before predicting")
        if isinstance(n_or_groups, int):
            return [self.overall] * n_or_groups
        out = []
        for g in n_or_groups:
            if g in self.by_group:
                out.append(self.by_group[g])
            else:
                self.unseen_groups[g] += 1
                out.append(self.overall)
        return out

    def share(self) -> float:
        """How much of the training data the overall majority covers."""
        return self.counts[self.overall] / sum(self.counts.values())


def majority_label(train_labels: Sequence[Hashable]) -> Hashable:
    """Relation classification: the most frequent relation."""
    return majority(train_labels)


def majority_label_set(train_label_sets: Sequence[Iterable]) -> frozenset:
    """Entity typing: the most frequent gold label set (possibly the empty set)."""
    return majority(as_label_set(s) for s in train_label_sets)


def majority_answer_index(train_answers: Sequence[int]) -> int:
    """Multiple choice: the most frequent position of the correct answer."""
    return int(majority(int(a) for a in train_answers))
