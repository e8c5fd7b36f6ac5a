"""What the kit compares, on which items, and the verdict sentences: the glue between a run's per-item results and
:mod:`kadapter.statistics` (which holds the one method: paired bootstrap CI + exact McNemar).

- LAMA probing (notebook 04): per fact and probe seed, right/wrong at P@1 (``rank == 1`` in
  ``result["predictions"]``), the macro mean over relations (the bootstrap resamples facts within each relation);
  every variant against the backbone's probe, each knowledge adapter against its controls (its "w/o knowledge"
  twins, the positive control), and the held-out factual adapter against the paper's condition.
- Adapter pre-training (notebook 02): per dev item (an example; a word for dependency heads), right/wrong at the
  kept weights (``dev_correct`` in the pre-training results): the adapter against the head on the backbone alone and
  against its frozen random twin, and the twin against the head alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .probing.positive_control import POSITIVE_CONTROL_ROW as POSITIVE_CONTROL  # the row's one name
from .statistics import Comparison, compare, verdict

BASELINE_VARIANT = "backbone"  # the backbone through the probe recipe: every LAMA row's reference
MAJORITY = "majority object (per relation)"
# A factual adapter pre-trained in the paper's condition (LAMA probe facts NOT held out) is attached under its
# held-out sibling's name + this suffix, so "+factual" and "+factual_paper" are compared with each other.
PAPER_CONDITION_SUFFIX = "_paper"


@dataclass(frozen=True)
class Planned:
    """One comparison to make: ``variant`` against ``reference``; ``phrase`` names the reference in the verdict."""
    reference: str
    variant: str
    phrase: str
    question: str


# ------------------------------------------------------------------------------------------------------- LAMA
def lama_correct(result: Mapping, probe_names: Sequence[str]) -> np.ndarray:
    """(len(probe_names), n_facts): 1 where the probe ranks the gold object first, fact order of the result."""
    return np.array([[int(p["rank"][name] == 1) for p in result["predictions"]] for name in probe_names],
                    dtype=float)


def lama_scores(result: Mapping, by_variant: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Per variant its P@1 outcomes (seeds × facts), plus the majority object (one row)."""
    scores = {variant: lama_correct(result, names) for variant, names in by_variant.items()}
    scores[MAJORITY] = np.array([[int(p["majority_rank"] == 1) for p in result["predictions"]]], dtype=float)
    return scores


def _knowledge_variants(variants: Sequence[str]) -> list[str]:
    """Adapter rows that carry trained knowledge: "+name" without a parenthesised control label."""
    return [v for v in variants if v.startswith("+") and " (" not in v]


def lama_plan(variants: Sequence[str], baseline: str = BASELINE_VARIANT) -> list[Planned]:
    """Every comparison notebook 04 prints, for the variants present (a missing one is simply not compared):
    each row vs the backbone's probe; each adapter vs each of its controls ("+X (…)") and vs the positive control;
    the held-out adapter "+X" vs its paper-condition sibling "+X_paper"."""
    plan = [Planned(baseline, v, "the backbone's probe", "above the backbone?") for v in variants if v != baseline]
    knowledge = _knowledge_variants(variants)
    for k in knowledge:
        for control in variants:
            if control.startswith(k + " ("):
                plan.append(Planned(control, k, control, "above its own control?"))
        if POSITIVE_CONTROL in variants:
            plan.append(Planned(POSITIVE_CONTROL, k, "the positive control", "as good as the positive control?"))
        paper = k + PAPER_CONDITION_SUFFIX
        if paper in variants:
            plan.append(Planned(k, paper, f"{k} (probe facts held out)", "does seeing the probe facts help?"))
    return plan


def lama_comparisons(result: Mapping, by_variant: Mapping[str, Sequence[str]], *,
                     plan: Sequence[Planned] | None = None, baseline: str = BASELINE_VARIANT,
                     n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> list[Comparison]:
    """Paired P@1 comparisons over the same facts (and seeds) for ``plan`` (default :func:`lama_plan` over
    ``by_variant`` + the majority object)."""
    scores = lama_scores(result, by_variant)
    plan = lama_plan(list(scores), baseline) if plan is None else plan
    relations = [p["relation"] for p in result["predictions"]]
    return [compare(scores[step.reference], scores[step.variant], reference_name=step.reference,
                    variant_name=step.variant, metric="P@1", groups=relations, n_resamples=n_resamples,
                    confidence=confidence, seed=seed)
            for step in plan]


# ------------------------------------------------------------------------------------------------ pre-training
def pretraining_plan(results: Mapping) -> list[Planned]:
    """For one pre-training job (:func:`kadapter.pretraining.pretrain_adapters`'s results): each trained adapter vs
    the head on the backbone alone and vs its frozen random twin, and the twin vs the head alone."""
    from .pretraining import BASELINE, random_twin_name

    models = results["models"]
    plan = []
    for name, entry in models.items():
        if entry.get("knowledge") != "trained here":
            continue
        twin = random_twin_name(name)
        if BASELINE in models:
            plan.append(Planned(BASELINE, name, "the head on the backbone alone", "more than the backbone?"))
        if twin in models:
            plan.append(Planned(twin, name, "its frozen random twin", "more than random features?"))
            if BASELINE in models:
                plan.append(Planned(BASELINE, twin, "the head on the backbone alone",
                                    "do random adapter features help?"))
    return plan


def pretraining_metric(results: Mapping) -> str:
    """The name of the per-item score: accuracy over dev examples (= micro-F1 of single-label relation
    classification) or UAS over dev words."""
    return "UAS" if results["kind"] == "linguistic" else "accuracy"


def pretraining_comparisons(results: Mapping, *, n_resamples: int = 10_000, confidence: float = 0.95,
                            seed: int = 0) -> list[Comparison]:
    """Paired comparisons per dev item for :func:`pretraining_plan`; needs each model's ``dev_correct``."""
    models = results["models"]
    missing = [n for n, e in models.items() if "dev_correct" not in e]
    if missing:
        raise ValueError(f"pre-training results without per-item dev outcomes ('dev_correct') for {missing}: "
                         "rerun the pre-training with this version of kadapter")
    metric = pretraining_metric(results)
    return [compare(models[step.reference]["dev_correct"], models[step.variant]["dev_correct"],
                    reference_name=step.reference, variant_name=step.variant, metric=metric,
                    n_resamples=n_resamples, confidence=confidence, seed=seed)
            for step in pretraining_plan(results)]


# ------------------------------------------------------------------------------------------------- verdicts
def verdicts(comparisons: Sequence[Comparison], plan: Sequence[Planned]) -> list[str]:
    """The verdict sentence of each comparison (:func:`kadapter.statistics.verdict`), naming references in prose."""
    phrases = {(p.reference, p.variant): p.phrase for p in plan}
    return [verdict(c, reference_phrase=phrases.get((c.reference, c.variant))) for c in comparisons]


def delta_columns(comparisons: Sequence[Comparison], reference: str, metric_label: str = "ΔP@1") -> dict[str, dict]:
    """Per variant compared with ``reference``: its Δ, CI and McNemar p as table columns."""
    low, high = f"{metric_label} CI low", f"{metric_label} CI high"
    return {c.variant: {metric_label: c.delta, low: c.ci_low, high: c.ci_high, "McNemar p": c.p_mcnemar}
            for c in comparisons if c.reference == reference}
