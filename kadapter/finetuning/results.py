"""Fine-tuning results: per-setting summaries over seeds, the results table, the paper's reference numbers and
the knowledge-vs-capacity verdicts against the w/o-knowledge controls.

The verdicts are paired statistics (:mod:`kadapter.statistics`, the kit's one method for every comparison): each
adapter setting against the backbone alone and against its "w/o knowledge" twin, on the same test items and seeds —
the difference in per-item exact match (the relation with its direction, the whole type set, the answer) with a
95% bootstrap interval over items and seeds, and an exact McNemar p. The headline metric (micro-F1, macro-F1) is
not a mean over items, so the statistics use exact match, its per-item counterpart; the table shows both."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import statistics
from ..metrics import mean_std
from .settings import ADAPTER_LETTERS, Setting, setting_name

#: What the paired statistics compare, per test item (see the module docstring).
ITEM_METRIC = "exact match"


# ====================================================================================================== results
def summarize(runs: Sequence[Mapping], metric: str, order: Sequence[str] | None = None) -> list[dict]:
    """Per setting: mean ± std (sample std over seeds) of the headline metric on dev and test."""
    by_setting: dict[str, list] = {}
    for run in runs:
        by_setting.setdefault(run["setting"], []).append(run)
    rows = []
    for name in order or list(by_setting):
        group = by_setting.get(name, [])
        if not group:
            continue
        row = {"setting": name, "n_seeds": len(group), "seeds": [r["seed"] for r in group],
               "trainable_parameters": group[0].get("trainable_parameters", 0)}
        for split in ("dev", "test"):
            row[f"{split}_mean"], row[f"{split}_std"] = mean_std([r[split][metric] for r in group])
            row[f"{split}_values"] = [r[split][metric] for r in group]
        rows.append(row)
    return rows


def results_table(results: Mapping, percent: bool = True):
    """A pandas table: one row per setting, dev and test as ``mean ± std`` (percent), seeds, trainable params."""
    import pandas as pd

    settings = {s["name"]: Setting.from_dict(s) for s in results["settings"]}
    scale = 100.0 if percent else 1.0
    rows = []
    for row in results["summary"]:
        s = settings[row["setting"]]
        rows.append({
            "setting": row["setting"],
            "knowledge": "—" if s.baseline or not s.adapters else ("pre-trained" if s.knowledge else "none (random)"),
            "adapters": "—" if not s.adapters else ("trained" if s.adapters_trainable else "frozen"),
            "backbone": "—" if s.baseline else ("trained" if s.backbone_trainable else "frozen"),
            f"dev {results['metric']}": f"{scale * row['dev_mean']:.2f} ± {scale * row['dev_std']:.2f}",
            f"test {results['metric']}": f"{scale * row['test_mean']:.2f} ± {scale * row['test_std']:.2f}",
            "seeds": row["n_seeds"],
            "trainable params": row["trainable_parameters"],
            **paired_columns(results.get("comparisons", []), row["setting"], scale),
        })
    return pd.DataFrame(rows).set_index("setting")


def paired_columns(comparisons: Sequence[Mapping], setting: str, scale: float = 100.0) -> dict:
    """The table cells of one setting's paired comparisons: Δ exact match [95% CI] and McNemar p, against the
    backbone and against its w/o-knowledge twin (frozen); empty for the rows without one."""
    cells = {}
    for role, column in (("backbone", "vs backbone"), ("twin", "vs twin")):
        match = [c for c in comparisons if c["variant"] == setting and c.get("role") == role]
        if not match:
            cells[f"Δ {ITEM_METRIC} {column} [95% CI]"] = cells[f"McNemar p {column}"] = "—"
            continue
        c = match[0]
        cells[f"Δ {ITEM_METRIC} {column} [95% CI]"] = \
            f"{scale * c['delta']:+.2f} [{scale * c['ci_low']:+.2f}, {scale * c['ci_high']:+.2f}]"
        cells[f"McNemar p {column}"] = "—" if c["p_mcnemar"] is None else f"{c['p_mcnemar']:.3g}"
    return cells


# ============================================================================================ paper reference
#: Published numbers, RoBERTa-large fine-tuned with the adapters frozen (paper App. C), placed on the kit's rows
#: that follow that recipe: the backbone-trained rows (``--profile paper``). Our backbone, data and splits differ.
TRAINED = " | backbone trained"
_LABELS = {"backbone": "RoBERTa", "+F": "K-Adapter (F)", "+L": "K-Adapter (L)", "+F+L": "K-Adapter (F+L)"}
PAPER_REFERENCE = {
    "source": "Wang et al., K-Adapter (Findings of ACL 2021), Tables 2-4; F+L from the ACL version",
    "backbone": "RoBERTa-large (355M parameters), fine-tuned, adapters frozen",
    "note": "On the rows trained the same way (backbone fine-tuned, adapters frozen) but a different backbone, data "
            "and splits: shown for orientation only, not as a target.",
    "tasks": {
        "openentity": {"metric": "micro_f1", "split": "test",
                       "values": {f"{k}{TRAINED}": v for k, v in
                                  {"backbone": 76.23, "+F": 77.53, "+L": 76.89, "+F+L": 77.61}.items()},
                       "paper_labels": {f"{k}{TRAINED}": v for k, v in _LABELS.items()},
                       # on no kit row: the paper does not say which adapters its random ones are
                       "unplaced": {"K-Adapter (w/o knowledge)": {
                           "value": 76.17, "precision": 74.47, "recall": 74.91,
                           "note": "as printed (ACL version); inconsistent with its own P/R, whose F1 is 74.69"}}},
        "tacred": {"metric": "f1", "split": "test",
                   "values": {f"{k}{TRAINED}": v for k, v in
                              {"backbone": 71.25, "+F": 71.89, "+L": 71.96, "+F+L": 72.04}.items()},
                   "paper_labels": {f"{k}{TRAINED}": v for k, v in _LABELS.items()}},
        "cosmosqa": {"metric": "accuracy",
                     "split": "leaderboard test (official README: F+L dev 80.9, test 81.8); all our splits are cut "
                              "from the official dev set",
                     "values": {f"{k}{TRAINED}": v for k, v in
                                {"backbone": 80.59, "+F": 80.93, "+L": 80.76, "+F+L": 81.83}.items()},
                     "paper_labels": {f"{k}{TRAINED}": v for k, v in _LABELS.items()}},
    },
}


def paper_reference(task: str) -> dict | None:
    """The paper's numbers for `task` with their caveats, or None when the paper reports none (SemEval, FewRel)."""
    entry = PAPER_REFERENCE["tasks"].get(task)
    if entry is None:
        return None
    return {k: PAPER_REFERENCE[k] for k in ("source", "backbone", "note")} | entry


# ========================================================================================= reading the results
def compare(results: Mapping, a: str, b: str, split: str = "test") -> dict | None:
    """``a`` minus ``b`` on the headline metric (points), against the seed spread sqrt(std_a² + std_b²).

    A difference inside the spread is no evidence either way. None when a setting is missing.
    """
    rows = {row["setting"]: row for row in results["summary"]}
    if a not in rows or b not in rows:
        return None
    diff = 100 * (rows[a][f"{split}_mean"] - rows[b][f"{split}_mean"])
    spread = 100 * float(np.hypot(rows[a][f"{split}_std"], rows[b][f"{split}_std"]))
    return {"a": a, "b": b, "split": split, "difference": diff, "spread": spread,
            "beyond_spread": abs(diff) > spread, "n_seeds": (rows[a]["n_seeds"], rows[b]["n_seeds"])}


def knowledge_verdicts(results: Mapping, split: str = "test") -> list[str]:
    """One sentence per comparison: did an adapter beat the backbone, and did *knowledge* (not the added capacity)
    help, judged against the matching "w/o knowledge" control and the seed spread."""
    metric = results["metric"]
    names = {row["setting"] for row in results["summary"]}
    lines = []

    def sentence(c: dict, what: str) -> str:
        if c["beyond_spread"]:
            verdict = "helps" if c["difference"] > 0 else f"no — {c['b']} is better"
        else:
            verdict = "no evidence either way (within the seed spread)"
        return (f"{c['a']} vs {c['b']}: {c['difference']:+.2f} points {split} {metric} "
                f"(seed spread ±{c['spread']:.2f}) — {what}: {verdict}.")

    for combo in [n for n in ("+F", "+L", "+F+L") if n in names]:
        c = compare(results, combo, "backbone", split)
        if c:
            lines.append(sentence(c, "adapters over the backbone alone"))
        for control in (f"{combo} (w/o knowledge, frozen)", f"{combo} (w/o knowledge, trained)"):
            c = compare(results, combo, control, split)
            if c:
                lines.append(sentence(c, "knowledge rather than capacity"))
        # Both adapters trained on the task, same capacity: only the starting point (knowledge or a random draw)
        # differs — the cleanest test of what the pre-trained knowledge is worth.
        c = compare(results, f"{combo} (adapters trained)", f"{combo} (w/o knowledge, trained)", split)
        if c:
            lines.append(sentence(c, "knowledge as the starting point of a trained adapter"))
    return lines


# ==================================================================================== paired statistics over items
def comparison_pairs(settings: Sequence[Setting]) -> list[tuple[str, str, str, str]]:
    """(reference, variant, role, reference in prose) for every comparison the verdicts make, among `settings`:
    the backbone over the majority baseline; each knowledge setting over the backbone alone (same regime) and
    over its w/o-knowledge twins (frozen, trained); pre-trained adapters trained on the task over the trained twin."""
    names = {s.name for s in settings}
    letters = {v: k for k, v in ADAPTER_LETTERS.items()}
    pairs = []
    for s in settings:
        if s.baseline or not s.knowledge:
            continue
        regime = dict(fusion=s.fusion, backbone_trainable=s.backbone_trainable)
        if not s.adapters:
            if "majority" in names:
                pairs.append(("majority", s.name, "majority", "the majority baseline"))
            continue
        combo = [letters.get(n, n) for n in s.adapters]
        backbone = setting_name((), backbone_trainable=s.backbone_trainable)
        if backbone in names:
            pairs.append((backbone, s.name, "backbone", "the backbone alone"))
        for trained in ((True,) if s.adapters_trainable else (False, True)):
            twin = setting_name(combo, knowledge=False, adapters_trainable=trained, **regime)
            if twin in names:
                role = "twin" if trained == s.adapters_trainable else "trained twin"
                pairs.append((twin, s.name, role, f"its w/o-knowledge twin ({'trained' if trained else 'frozen'})"))
    return pairs


def item_scores(runs: Sequence[Mapping], setting: str, seeds: Sequence) -> np.ndarray | None:
    """(seeds, test items) exact-match scores of a setting, rows in `seeds` order; a baseline's single run stands
    for every seed. None when a run lacks per-item scores (results written before they were kept)."""
    by_seed = {r["seed"]: r for r in runs if r["setting"] == setting}
    if set(by_seed) == {None}:
        by_seed = {seed: by_seed[None] for seed in seeds}
    rows = [by_seed.get(seed, {}).get("test_correct") for seed in seeds]
    return None if any(r is None for r in rows) else np.array(rows, dtype=float)


def paired_comparisons(runs: Sequence[Mapping], settings: Sequence[Setting], *,
                       n_resamples: int = 10_000) -> list[PairedComparison]:
    """Every pair of :func:`comparison_pairs` on the test items, over the seeds both settings ran."""
    out = []
    for reference, variant, role, phrase in comparison_pairs(settings):
        seeds = sorted({r["seed"] for r in runs if r["setting"] == variant}, key=lambda x: (x is None, x))
        ref, var = item_scores(runs, reference, seeds), item_scores(runs, variant, seeds)
        if ref is None or var is None:
            continue
        c = statistics.compare(ref, var, reference_name=reference, variant_name=variant, metric=ITEM_METRIC,
                               n_resamples=n_resamples)
        out.append(PairedComparison(c, role, phrase))
    return out


@dataclass(frozen=True)
class PairedComparison:
    """A :class:`kadapter.statistics.Comparison` with what the reference is to the variant (``backbone``,
    ``twin``, ``trained twin``, ``majority``) and how a sentence names the reference."""

    comparison: statistics.Comparison
    role: str
    reference_phrase: str

    def to_dict(self) -> dict:
        return self.comparison.to_dict() | {"role": self.role, "reference_phrase": self.reference_phrase}


def paired_verdicts(results: Mapping) -> list[str]:
    """One generated sentence per paired comparison stored in `results` (:func:`kadapter.statistics.verdict`)."""
    lines = []
    for d in results.get("comparisons", []):
        fields_ = {k: d[k] for k in statistics.Comparison.__dataclass_fields__}
        lines.append(statistics.verdict(statistics.Comparison(**fields_), reference_phrase=d["reference_phrase"]))
    return lines
