"""Fine-tuning results: per-setting summaries over seeds, the results table, the paper's reference numbers and
the knowledge-vs-capacity verdicts against the w/o-knowledge controls."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..metrics import mean_std
from .settings import Setting


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
        })
    return pd.DataFrame(rows).set_index("setting")


# ============================================================================================ paper reference
#: Published numbers, RoBERTa-large with the backbone fine-tuned: a different backbone and setting from ours.
PAPER_REFERENCE = {
    "source": "Wang et al., K-Adapter (Findings of ACL 2021); 'w/o knowledge' row from the paper's ACL version",
    "backbone": "RoBERTa-large (355M parameters), fully fine-tuned",
    "note": "Different backbone and training setting from ours: shown for orientation only, not as a target.",
    "tasks": {
        "openentity": {"metric": "micro_f1", "split": "test",
                       "values": {"backbone": 76.23, "+F": 77.53, "+F+L": 77.61,
                                  "+F (w/o knowledge, frozen)": 76.17},
                       "paper_labels": {"backbone": "RoBERTa", "+F": "K-Adapter (F)", "+F+L": "K-Adapter (F+L)",
                                        "+F (w/o knowledge, frozen)": "K-Adapter (w/o knowledge)"}},
        "tacred": {"metric": "f1", "split": "test", "values": {"backbone": 71.25, "+F": 71.89, "+F+L": 72.04},
                   "paper_labels": {"backbone": "RoBERTa", "+F": "K-Adapter (F)", "+F+L": "K-Adapter (F+L)"}},
        "cosmosqa": {"metric": "accuracy", "split": "dev (official; our test is a part of it)",
                     "values": {"backbone": 80.59, "+F": 80.93, "+F+L": 81.83},
                     "paper_labels": {"backbone": "RoBERTa", "+F": "K-Adapter (F)", "+F+L": "K-Adapter (F+L)"}},
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
