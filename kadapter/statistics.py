"""Paired statistics for every comparison the kit prints: one place, one method.

Two systems evaluated on the *same* items (facts, test examples, dev sentences) are compared item by item:

- the difference of their scores (``variant − reference``) with a percentile **bootstrap confidence interval**
  over the items — and over the seeds when each system was trained with several seeds (seeds and items are
  resampled together, so the interval covers both sources of variation);
- for right/wrong outcomes, an **exact McNemar test**: a two-sided binomial test on the discordant items (right for
  one system, wrong for the other), the only items that carry evidence about a difference;
- a **verdict sentence** generated from these numbers, so a notebook never states a conclusion by hand.

Scores are arrays of shape ``(n_items,)`` or ``(n_seeds, n_items)``. ``groups`` (one label per item, e.g. the
relation of each LAMA fact) turns the statistic into the macro mean over groups, as LAMA reports P@1; the bootstrap
then resamples items within each group (a stratified bootstrap), so every resample keeps every relation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Comparison", "compare", "paired_bootstrap_ci", "mcnemar_exact", "verdict", "comparisons_frame"]

# Resamples are drawn in blocks so that memory stays at block × items whatever n_resamples is.
_BLOCK = 256


def _as_matrix(scores: Any, name: str) -> np.ndarray:
    m = np.asarray(scores, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] == 0:
        raise ValueError(f"{name}: expected scores of shape (n_items,) or (n_seeds, n_items), got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name}: scores contain NaN or infinity")
    return m


def _paired(reference: Any, variant: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both as (seeds, items) on the same items. Seed rows pair up when both have the same number of seeds
    (seed s of one with seed s of the other: same data order); a single-run reference (e.g. the backbone with its
    own head) is compared with every seed of the variant; otherwise each system is averaged over its seeds."""
    ref, var = _as_matrix(reference, "reference"), _as_matrix(variant, "variant")
    if ref.shape[1] != var.shape[1]:
        raise ValueError(f"reference and variant are scored on different numbers of items: "
                         f"{ref.shape[1]} vs {var.shape[1]}")
    if ref.shape[0] != var.shape[0]:
        if ref.shape[0] == 1 or var.shape[0] == 1:
            seeds = max(ref.shape[0], var.shape[0])
            ref, var = np.broadcast_to(ref, (seeds, ref.shape[1])), np.broadcast_to(var, (seeds, var.shape[1]))
        else:
            ref, var = ref.mean(0, keepdims=True), var.mean(0, keepdims=True)
    return ref, var


def _group_index(groups: Sequence | None, n_items: int) -> list[np.ndarray]:
    if groups is None:
        return [np.arange(n_items)]
    labels = np.asarray(list(groups), dtype=object)
    if labels.shape != (n_items,):
        raise ValueError(f"groups: one label per item expected ({n_items}), got {labels.shape[0]}")
    _, inverse = np.unique(labels.astype(str), return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]


def _statistic(matrix: np.ndarray, index: list[np.ndarray]) -> float:
    """Mean over seeds and items; with groups, the mean over groups of each group's mean."""
    return float(np.mean([matrix[:, idx].mean() for idx in index]))


def paired_bootstrap_ci(reference: Any, variant: Any, *, groups: Sequence | None = None, n_resamples: int = 10_000,
                        confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(delta, low, high)``: the observed ``variant − reference`` and its percentile bootstrap interval."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be at least 100 for a percentile interval, got {n_resamples}")
    ref, var = _paired(reference, variant)
    diff = var - ref                                         # (seeds, items): per-run, per-item difference
    index = _group_index(groups, diff.shape[1])
    delta = _statistic(diff, index)
    rng = np.random.default_rng(seed)
    n_seeds = diff.shape[0]
    draws = np.empty(n_resamples)
    for start in range(0, n_resamples, _BLOCK):
        size = min(_BLOCK, n_resamples - start)
        # Seed weights: how often each seed is drawn in this resample (all ones without several seeds).
        if n_seeds > 1:
            weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=size) / n_seeds
        else:
            weights = np.ones((size, 1))
        per_item = weights @ diff                            # (size, items): each resample's seed-mixed diff
        total = np.zeros(size)
        for idx in index:
            picks = idx[rng.integers(0, idx.size, size=(size, idx.size))]
            total += np.take_along_axis(per_item, picks, axis=1).mean(axis=1)
        draws[start:start + size] = total / len(index)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return delta, float(low), float(high)


def _binary(m: np.ndarray) -> bool:
    return bool(np.isin(m, (0.0, 1.0)).all())


def mcnemar_exact(reference_correct: Any, variant_correct: Any) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes.

    Under the null hypothesis each discordant item is equally likely to favour either system, so the number won by
    the variant is Binomial(discordant, 1/2); the p-value doubles the smaller tail (capped at 1). With several seeds
    the discordant pairs of every seed are pooled (each seed a replicate of the same items). No discordant item:
    p = 1."""
    ref, var = _paired(reference_correct, variant_correct)
    if not (_binary(ref) and _binary(var)):
        raise ValueError("McNemar's test needs right/wrong (0/1) outcomes")
    variant_only = int(((var == 1) & (ref == 0)).sum())
    reference_only = int(((var == 0) & (ref == 1)).sum())
    return _binomial_two_sided(variant_only, variant_only + reference_only)


def _binomial_two_sided(k: int, n: int) -> float:
    if n == 0:
        return 1.0
    tail = min(k, n - k)
    # log-space sum of C(n, i) / 2^n for i <= tail: exact and stable for large n.
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
                 for i in range(tail + 1)]
    top = max(log_terms)
    p_tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2 * p_tail)


@dataclass(frozen=True)
class Comparison:
    """``variant`` against ``reference`` on the same items; ``delta = variant_score − reference_score``."""
    reference: str
    variant: str
    metric: str
    reference_score: float
    variant_score: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    n_items: int
    n_seeds: int
    p_mcnemar: float | None = None
    variant_only: int | None = None
    reference_only: int | None = None

    @property
    def excludes_zero(self) -> bool:
        """True when the whole confidence interval lies on one side of zero."""
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict:
        return asdict(self) | {"excludes_zero": self.excludes_zero}


def compare(reference: Any, variant: Any, *, reference_name: str, variant_name: str, metric: str = "P@1",
            groups: Sequence | None = None, n_resamples: int = 10_000, confidence: float = 0.95,
            seed: int = 0) -> Comparison:
    """Paired comparison of two systems' per-item scores (see the module docstring)."""
    ref, var = _paired(reference, variant)
    index = _group_index(groups, ref.shape[1])
    delta, low, high = paired_bootstrap_ci(ref, var, groups=groups, n_resamples=n_resamples,
                                           confidence=confidence, seed=seed)
    p = variant_only = reference_only = None
    if _binary(ref) and _binary(var):
        variant_only = int(((var == 1) & (ref == 0)).sum())
        reference_only = int(((var == 0) & (ref == 1)).sum())
        p = _binomial_two_sided(variant_only, variant_only + reference_only)
    return Comparison(reference=reference_name, variant=variant_name, metric=metric,
                      reference_score=_statistic(ref, index), variant_score=_statistic(var, index),
                      delta=delta, ci_low=low, ci_high=high, confidence=confidence,
                      n_items=int(ref.shape[1]), n_seeds=int(ref.shape[0]),
                      p_mcnemar=p, variant_only=variant_only, reference_only=reference_only)


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(c: Comparison, *, reference_phrase: str | None = None) -> str:
    """The sentence a notebook prints for one comparison, e.g.
    ``+F is indistinguishable from its random twin: ΔP@1 = −0.001 [−0.008, +0.006] (McNemar p = 0.71; 3,453
    items × 3 seeds).`` ``reference_phrase`` names the reference in prose (default: its name)."""
    ref = reference_phrase or c.reference
    if not c.excludes_zero:
        outcome = f"is indistinguishable from {ref}"
    elif c.delta > 0:
        outcome = f"is above {ref}"
    else:
        outcome = f"is below {ref}"
    level = f"{round(100 * c.confidence)}% CI"
    interval = f"{c.delta:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]".replace("-", "−")
    counts = f"{c.n_items:,} items" + (f" × {c.n_seeds} seeds" if c.n_seeds > 1 else "")
    test = f"McNemar {_p_text(c.p_mcnemar)}; " if c.p_mcnemar is not None else ""
    return f"{c.variant} {outcome}: Δ{c.metric} = {interval} ({level}; {test}{counts})."


def comparisons_frame(comparisons: Sequence[Comparison]):
    """One row per comparison, for display and for ``results.json`` (``frame.to_dict('records')``)."""
    import pandas as pd

    return pd.DataFrame([c.to_dict() for c in comparisons])
