"""LAMA results: which facts the adapter never saw, summaries over seeds, per-relation tables, disagreements, saving.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..config import write_json
from ..metrics import mean_std
from ..safe_files import DamagedFileError, read_json


def pretraining_results(adapter_dir: str | Path) -> dict | None:
    """The ``results.json`` that :func:`kadapter.pretraining.pretrain_adapters` wrote next to a saved adapter
    (``<run>/adapters/<name>/`` -> ``<run>/results.json``), or None when there is none."""
    path = Path(adapter_dir).resolve().parent.parent / "results.json"
    if not path.is_file():
        return None
    results = read_json(path)  # a damaged file is an error naming it (and the line), not a bare JSONDecodeError
    if not isinstance(results, dict):
        raise DamagedFileError(path, f"a JSON object expected, found {type(results).__name__}")
    return results


def adapter_init_seed(adapter_dir: str | Path) -> int | None:
    """The seed the adapter's knowledge pre-training initialised it with (from its pre-training results), so a
    "w/o knowledge" twin can start exactly where pre-training started; None when unknown."""
    results = pretraining_results(adapter_dir) or {}
    models = results.get("models", {})
    entry = models.get(Path(adapter_dir).name, {}) if isinstance(models, dict) else None
    seed = entry.get("seed") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not (seed is None or isinstance(seed, int) and not isinstance(seed, bool)):
        path = Path(adapter_dir).resolve().parent.parent / "results.json"
        where, found = (("models", models) if not isinstance(models, dict) else
                        (f"models.{Path(adapter_dir).name}", entry) if not isinstance(entry, dict) else
                        (f"models.{Path(adapter_dir).name}.seed", seed))
        raise DamagedFileError(path, f"field '{where}': not what pre-training writes ({found!r})")
    return seed


def holdout_info(report: dict | str | Path | None) -> dict:
    """Which LAMA facts the factual adapter never saw.

    ``report``: the pre-training set builder's report (``factual_stats.json`` of
    :func:`data_prep.factual.save_factual_dataset`) or the adapter's pre-training ``results.json`` (its ``data``
    entry carries the builder's hold-out report), as a dict or a path.
    """
    if report is None:
        return {"known": False, "note": "no pre-training report given: what the adapter was kept from is unknown"}
    if not isinstance(report, dict):
        report = read_json(report)
    if "data" in report:  # pre-training results.json
        holdout = report["data"].get("holdout")
        relations = report.get("labels", [])
    else:  # factual_stats.json
        holdout = report.get("holdout") if report.get("options", {}).get("hold_out_probe", "holdout" in report) else None
        relations = sorted(report.get("per_relation", {}))
    held = holdout is not None
    # a report carries its builder's exact rule (data_prep.factual.HOLDOUT_RULE); one written before it did was
    # built with the hold-out by (relation, subject, object)
    return {"known": True, "hold_out_probe": held,
            "rule": _HOLDOUT_BY_FACT if held else "LAMA facts were NOT held out of adapter training",
            **(holdout or {}), "adapter_training_relations": sorted(relations)}


_HOLDOUT_BY_FACT = ("a training example was removed when it states a LAMA T-REx probe fact under the probe fact's own "
                    "relation (relation + subject/object label, or Wikidata ids where known); the same entity pair "
                    "under another relation or in the other order was NOT removed (a report written before the "
                    "hold-out by entity pair)")


def write_results(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return path



# =====================================================================================================================
# Seeds, summaries, disagreements
# =====================================================================================================================
def summary_rows(result: dict, variants: Mapping[str, Sequence[str]], subset: str | None = None,
                 metrics: Sequence[str] = ("p@1", "p@10", "mrr"), typed: bool = False) -> list[dict]:
    """One row per variant: macro metrics as mean ± std over its probes (e.g. probe-head seeds), and a majority row.

    ``variants`` maps a display name to the probe names (keys of ``result["models"]``) that are its seeds.
    ``typed``: the scores with answers restricted to each relation's objects (:func:`typed_ranks`).
    """
    scored = result if subset is None else result["subsets"][subset]
    models = scored["typed"]["models"] if typed else scored["models"]
    rows = []
    for variant, names in variants.items():
        row = {"model": variant, "seeds": len(names)}
        for metric in metrics:
            mean, std = mean_std([models[n]["macro"][metric] for n in names])
            row[metric], row[f"{metric} std"] = mean, std
        rows.append(row)
    majority = {"model": "majority object (per relation)", "seeds": 0}
    for metric in metrics:
        majority[metric], majority[f"{metric} std"] = scored["majority"]["macro"][metric], 0.0
    rows.append(majority)
    for row in rows:
        row["facts"], row["relations"] = scored["facts"]["total"], len(scored["facts"]["per_relation"])
    return rows


def relation_p_at_1(result: dict, variants: Mapping[str, Sequence[str]], metric: str = "p@1",
                    typed: bool = False) -> dict[str, dict]:
    """Per relation, each variant's mean (over seeds) and std, and the majority baseline: for charts."""
    models = result["typed"]["models"] if typed else result["models"]
    out = {}
    for relation, counts in result["facts"]["per_relation"].items():
        row = {"facts": counts, "majority": result["majority"]["per_relation"][relation][metric]}
        for variant, names in variants.items():
            values = [models[n]["per_relation"][relation][metric] for n in names]
            row[variant] = mean_std(values)
        out[relation] = row
    return out


def disagreements(result: dict, first: str, second: str, limit: int = 20) -> list[dict]:
    """Facts where exactly one of two probes ranks the gold object first (first's wins, then second's)."""
    wins = {first: [], second: []}
    for p in result["predictions"]:
        a, b = p["rank"][first] == 1, p["rank"][second] == 1
        if a != b:
            winner = first if a else second
            wins[winner].append({"relation": p["relation"], "subject": p["sub_label"], "object": p["obj_label"],
                                 "winner": winner, f"top1 {first}": p["top1"][first],
                                 f"top1 {second}": p["top1"][second]})
    shown_first = wins[first][:max(1, limit // 2)]
    return shown_first + wins[second][:limit - len(shown_first)]
