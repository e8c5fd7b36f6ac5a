"""Evaluation metrics for the K-Adapter tasks: pure functions, no sklearn.

Inputs may be Python lists, numpy arrays or torch tensors; every function returns plain Python floats (in a dict
where there is more than one number). Precision/recall/F1 are fractions in [0, 1], never percentages.

Conventions for empty denominators (a metric over nothing) are stated per function; functions whose result would be
meaningless on empty input (accuracies, means) raise ``ValueError`` instead of returning a silent 0.

References followed (checked against the public source):

* Entity typing: loose micro / strict / loose macro as in ERNIE ``code/eval_typing.py`` and K-Adapter
  ``examples/utils_glue.py::entity_typing_accuracy``; loose macro's denominators as in Ling & Weld (2012, FIGER)
  and Choi et al. (2018, ultra-fine typing ``eval_metric.macro``) by default, see :func:`entity_typing_metrics`.
* TACRED: ``score()`` of the official ``tacred/scorer.py`` (Zhang et al., 2017).
* SemEval-2010 Task 8: ``semeval2010_task8_scorer-v1.2.pl`` (Nakov), evaluation (iii).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "attachment_accuracy",
    "classification_metrics",
    "entity_typing_metrics",
    "logits_to_label_sets",
    "macro_average",
    "mean_std",
    "metrics_from_ranks",
    "rank_of_gold",
    "ranking_metrics",
    "semeval_official_score",
    "tacred_metrics",
]


# ----------------------------------------------------------------------------------------------------------- helpers
def _to_list(values: Any) -> list:
    """A torch tensor / numpy array / iterable as a flat Python list of Python scalars."""
    if hasattr(values, "detach"):  # torch.Tensor, without importing torch
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        return values.reshape(-1).tolist()
    return list(values)


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _check_same_length(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold and predictions differ in length: {len(gold)} vs {len(pred)}")


def _f1(precision: float, recall: float) -> float:
    """Harmonic mean; 0.0 when both are 0 (as every reference scorer here does)."""
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def _prf(correct: int, guessed: int, gold: int, empty_precision: float = 0.0) -> dict[str, float]:
    """P = correct/guessed, R = correct/gold (0.0 when gold is 0), F1 of the two."""
    precision = correct / guessed if guessed else empty_precision
    recall = correct / gold if gold else 0.0
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


# ----------------------------------------------------------------------------------------------------- entity typing
def logits_to_label_sets(logits: Any, label_names: Sequence[str], threshold: float = 0.0) -> list[set[str]]:
    """Multi-label decisions: type ``j`` is predicted for an example when ``logits[i, j] > threshold``.

    With the default threshold 0 this is "sigmoid probability > 0.5", the rule of ERNIE and K-Adapter (``x1[i] > 0``).
    An example may get the empty set.
    """
    scores = _to_numpy(logits)
    if scores.ndim != 2 or scores.shape[1] != len(label_names):
        raise ValueError(f"logits must be [n_examples, {len(label_names)}], got shape {scores.shape}")
    return [{label_names[j] for j in np.flatnonzero(row > threshold)} for row in scores]


def entity_typing_metrics(
    gold: Sequence[Iterable], pred: Sequence[Iterable], macro_over: str = "nonempty"
) -> dict[str, float]:
    """Multi-label entity typing: strict accuracy, loose micro and loose macro P/R/F1.

    ``gold`` and ``pred`` hold one collection of type labels per example (sets, lists, ...).

    * ``strict_accuracy``: share of examples whose predicted set equals the gold set (two empty sets agree).
    * ``micro_*`` (OpenEntity's headline): over all (example, type) pairs,
      P = sum|pred ∩ gold| / sum|pred|, R = sum|pred ∩ gold| / sum|gold|; P is 0.0 when nothing is predicted,
      R is 0.0 when there is no gold type.
    * ``macro_*`` (FIGER's headline): per-example P_i = |pred_i ∩ gold_i| / |pred_i| and R_i = ... / |gold_i|,
      averaged over examples. ``macro_over="nonempty"`` (default; Ling & Weld 2012, Choi et al. 2018) averages P_i
      over examples with a non-empty prediction and R_i over examples with a non-empty gold set, so an example with
      no prediction lowers recall but not precision. ``macro_over="all"`` divides both sums by the number of
      examples, which is what ERNIE's and K-Adapter's evaluation code does (an empty prediction counts as P_i = 0).
      An average over no examples is 0.0.
    * F1 is the harmonic mean of the averaged P and R (not the mean of per-example F1s), as in all references.
    """
    if macro_over not in ("nonempty", "all"):
        raise ValueError(f"macro_over must be 'nonempty' or 'all', got {macro_over!r}")
    _check_same_length(gold, pred)
    if not gold:
        raise ValueError("entity_typing_metrics needs at least one example")
    gold_sets, pred_sets = [set(g) for g in gold], [set(p) for p in pred]

    n_correct = sum(len(g & p) for g, p in zip(gold_sets, pred_sets))
    micro = _prf(n_correct, sum(map(len, pred_sets)), sum(map(len, gold_sets)))

    precisions = [len(g & p) / len(p) for g, p in zip(gold_sets, pred_sets) if p]
    recalls = [len(g & p) / len(g) for g, p in zip(gold_sets, pred_sets) if g]
    n_p = len(precisions) if macro_over == "nonempty" else len(gold_sets)
    n_r = len(recalls) if macro_over == "nonempty" else len(gold_sets)
    macro_p = sum(precisions) / n_p if n_p else 0.0
    macro_r = sum(recalls) / n_r if n_r else 0.0

    return {
        "strict_accuracy": sum(g == p for g, p in zip(gold_sets, pred_sets)) / len(gold_sets),
        "micro_precision": micro["precision"],
        "micro_recall": micro["recall"],
        "micro_f1": micro["f1"],
        "macro_precision": macro_p,
        "macro_recall": macro_r,
        "macro_f1": _f1(macro_p, macro_r),
    }


# ---------------------------------------------------------------------------------------------------- classification
def accuracy(gold: Any, pred: Any) -> float:
    """Share of positions where ``pred == gold``."""
    gold, pred = _to_list(gold), _to_list(pred)
    _check_same_length(gold, pred)
    if not gold:
        raise ValueError("accuracy of zero examples is undefined")
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def _micro_prf(gold: list, pred: list, exclude: set, empty_precision: float) -> dict[str, float]:
    """Micro P/R/F1 where labels in ``exclude`` count as "no answer" (TACRED's treatment of no_relation)."""
    guessed = sum(p not in exclude for p in pred)
    gold_count = sum(g not in exclude for g in gold)
    correct = sum(g == p and g not in exclude for g, p in zip(gold, pred))
    return _prf(correct, guessed, gold_count, empty_precision)


def classification_metrics(
    gold: Any, pred: Any, exclude: Iterable = (), labels: Iterable | None = None
) -> dict[str, float]:
    """Single-label classification: accuracy, micro and macro P/R/F1 (sklearn-free).

    ``exclude`` lists labels that are not scored as classes (e.g. ``no_relation`` or ``Other``): a prediction of an
    excluded label is no guess, a gold excluded label is nothing to find. Accuracy always uses every example.

    * micro: P = correct non-excluded predictions / non-excluded predictions, R = ... / non-excluded gold.
      Without exclusions micro P = R = F1 = accuracy.
    * macro: mean over classes of per-class P, R and F1 (each class's F1 from its own P and R, as sklearn's
      ``f1_score(average="macro")``). Classes are ``labels`` if given, else every label seen in gold or predictions,
      minus ``exclude``. A per-class P or R with a zero denominator is 0.0 (sklearn's ``zero_division=0``).
    """
    gold, pred = _to_list(gold), _to_list(pred)
    _check_same_length(gold, pred)
    excluded = {exclude} if isinstance(exclude, str) else set(_to_list(exclude))
    micro = _micro_prf(gold, pred, excluded, empty_precision=0.0)

    classes = [c for c in (_to_list(labels) if labels is not None else sorted(set(gold) | set(pred), key=str))
               if c not in excluded]
    n_gold, n_pred = Counter(gold), Counter(pred)
    n_correct = Counter(g for g, p in zip(gold, pred) if g == p)
    per_class = [_prf(n_correct[c], n_pred[c], n_gold[c]) for c in classes]
    macro = {k: sum(d[k] for d in per_class) / len(per_class) if per_class else 0.0
             for k in ("precision", "recall", "f1")}

    return {
        "accuracy": accuracy(gold, pred),
        **{f"micro_{k}": v for k, v in micro.items()},
        **{f"macro_{k}": v for k, v in macro.items()},
    }


def tacred_metrics(gold: Any, pred: Any, no_relation: Any = "no_relation") -> dict[str, float]:
    """TACRED's official micro P/R/F1 (``score()`` in tacred's ``scorer.py``).

    Precision is over predictions that are not ``no_relation``, recall over gold relations that are not
    ``no_relation``; a correct guess must match the gold relation. As in the official scorer, precision is 1.0 when
    the model predicts no positive relation at all, and recall is 0.0 when there is no positive gold relation.
    ``no_relation`` may be an id (e.g. 0) when labels are ids.
    """
    gold, pred = _to_list(gold), _to_list(pred)
    _check_same_length(gold, pred)
    return _micro_prf(gold, pred, {no_relation}, empty_precision=1.0)


# ------------------------------------------------------------------------------------------------- SemEval-2010 Task 8
SEMEVAL_RELATIONS = (
    "Cause-Effect", "Component-Whole", "Content-Container", "Entity-Destination", "Entity-Origin",
    "Instrument-Agency", "Member-Collection", "Message-Topic", "Product-Producer",
)
SEMEVAL_OTHER = "Other"


def _semeval_relation(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``Cause-Effect``; ``Other`` stays; anything else is an error (as in the scorer)."""
    if label == SEMEVAL_OTHER:
        return label
    relation, direction = label[:-7], label[-7:]
    if relation not in SEMEVAL_RELATIONS or direction not in ("(e1,e2)", "(e2,e1)"):
        raise ValueError(f"not a SemEval-2010 Task 8 label: {label!r}")
    return relation


def semeval_official_score(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """SemEval-2010 Task 8 official score: "(9+1)-way evaluation with directionality taken into account".

    Replicates ``semeval2010_task8_scorer-v1.2.pl`` evaluation (iii) on aligned label lists such as
    ``Component-Whole(e2,e1)`` / ``Other``. Per relation type R (directions merged):

    * correct(R) = predictions equal to the gold label, relation AND direction, with gold type R;
    * P(R) = correct(R) / number of predictions of type R in either direction. A prediction with the right type but
      the wrong direction is a wrong guess of R (the scorer's ``xDIRx`` column, added to P's denominator in v1.2);
    * R(R) = correct(R) / number of gold examples of type R;
    * F1(R) = 2PR / (P + R), 0 when P + R = 0.

    ``macro_f1`` (the official score) is the mean F1 over the relation types present in the gold labels, ``Other``
    excluded (all 9 on the real test set); ``macro_precision`` / ``macro_recall`` average P and R the same way.
    ``micro_*`` pools the counts over those types. Fractions in [0, 1]; the scorer prints percentages rounded to 2
    decimals. Unlike the scorer, no example can be "skipped": every gold label needs a prediction.
    """
    gold, pred = _to_list(gold), _to_list(pred)
    _check_same_length(gold, pred)
    gold_types, pred_types = [_semeval_relation(g) for g in gold], [_semeval_relation(p) for p in pred]

    relations = sorted(set(gold_types) - {SEMEVAL_OTHER})
    if not relations:
        raise ValueError("the SemEval macro-F1 needs at least one gold relation other than Other")
    n_gold, n_pred = Counter(gold_types), Counter(pred_types)
    n_correct = Counter(t for g, p, t in zip(gold, pred, gold_types) if g == p)

    per_relation = [_prf(n_correct[r], n_pred[r], n_gold[r]) for r in relations]
    micro = _prf(sum(n_correct[r] for r in relations), sum(n_pred[r] for r in relations),
                 sum(n_gold[r] for r in relations))
    return {
        **{f"macro_{k}": sum(d[k] for d in per_relation) / len(relations) for k in ("precision", "recall", "f1")},
        **{f"micro_{k}": v for k, v in micro.items()},
    }


# -------------------------------------------------------------------------------------------- ranking / LAMA probing
def rank_of_gold(scores: Any, gold_index: Any) -> np.ndarray:
    """1-based rank of the gold candidate in each row of ``scores`` ([n_examples, n_candidates]).

    rank = 1 + number of candidates scoring strictly higher than the gold one, so ties are resolved in the gold
    answer's favour (a gold answer tied for the top score has rank 1). Rows may also be a ragged list of 1-D score
    sequences. A NaN gold score is an error (it would otherwise rank first).
    """
    gold = _to_numpy(gold_index).reshape(-1).astype(int)
    if hasattr(scores, "detach") or isinstance(scores, np.ndarray):
        rows = _to_numpy(scores)
        if rows.ndim != 2:
            raise ValueError(f"scores must be [n_examples, n_candidates], got shape {rows.shape}")
    else:  # a list of rows, possibly ragged (candidate sets that differ per example)
        rows = [_to_numpy(r).reshape(-1) for r in scores]
    if len(rows) != len(gold):
        raise ValueError(f"{len(rows)} score rows but {len(gold)} gold indices")
    ranks = np.empty(len(gold), dtype=int)
    for i, (row, g) in enumerate(zip(rows, gold)):
        if not 0 <= g < len(row):
            raise ValueError(f"example {i}: gold index {g} outside {len(row)} candidates")
        if math.isnan(row[g]):
            raise ValueError(f"example {i}: the gold candidate's score is NaN")
        ranks[i] = 1 + int(np.count_nonzero(row > row[g]))
    return ranks


def metrics_from_ranks(ranks: Any, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """P@k (share of examples with gold rank <= k) for each k, MRR (mean of 1/rank) and the count ``n``."""
    r = _to_numpy(ranks).reshape(-1)
    if r.size == 0:
        raise ValueError("ranking metrics of zero examples are undefined")
    if (r < 1).any():
        raise ValueError("ranks are 1-based")
    return {**{f"p@{k}": float(np.mean(r <= k)) for k in ks}, "mrr": float(np.mean(1.0 / r)), "n": float(r.size)}


def ranking_metrics(scores: Any, gold_index: Any, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """P@k and MRR of the gold candidates in ``scores``: :func:`metrics_from_ranks` of :func:`rank_of_gold`."""
    return metrics_from_ranks(rank_of_gold(scores, gold_index), ks)


def macro_average(per_relation: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Macro average over relations (LAMA's headline): the unweighted mean of each metric over relations.

    Averages the keys shared by every relation except the count ``n``, which is summed (total examples); adds
    ``num_relations``.
    """
    if not per_relation:
        raise ValueError("macro average over zero relations is undefined")
    values = list(per_relation.values())
    keys = [k for k in values[0] if k != "n" and all(k in v for v in values)]
    out = {k: float(np.mean([v[k] for v in values])) for k in keys}
    if all("n" in v for v in values):
        out["n"] = float(sum(v["n"] for v in values))
    out["num_relations"] = float(len(values))
    return out


# ----------------------------------------------------------------------------------------------------------- others
def attachment_accuracy(pred_heads: Any, gold_heads: Any, ignore_index: int = -100) -> dict[str, float]:
    """Unlabelled attachment score: share of scored words whose predicted head position equals the gold one.

    Positions whose gold head is ``ignore_index`` (padding, special tokens, non-first sub-words) are not scored.
    Arrays of any matching shape (e.g. [batch, seq]). Returns ``{"uas": ..., "n": words scored}``.
    """
    pred, gold = _to_numpy(pred_heads).reshape(-1), _to_numpy(gold_heads).reshape(-1)
    if pred.shape != gold.shape:
        raise ValueError(f"predicted and gold heads differ in size: {pred.size} vs {gold.size}")
    scored = gold != ignore_index
    if not scored.any():
        raise ValueError("no word to score: every gold head is ignore_index")
    return {"uas": float(np.mean(pred[scored] == gold[scored])), "n": float(scored.sum())}


def mean_std(values: Any) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of e.g. per-seed scores; std is 0.0 for a single value."""
    v = _to_numpy(values).astype(float).reshape(-1)
    if v.size == 0:
        raise ValueError("mean of zero values is undefined")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)
