"""Per-stage and per-task wall times of a pipeline run folder, as JSON.

    python benchmarks/stage_times.py runs/<run>          # e.g. a `--profile gemma` run

Reads the run's ``summary.json`` (status and seconds of every stage that ran) and, for the fine-tuning stage, each
task's ``results.json`` (seconds spent on backbone features and in total, sizes, the backbone, whether the adapters
were untrained stand-ins). Nothing is re-run: the numbers are those the run recorded.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kadapter.safe_files import read_json  # noqa: E402


def stage_times(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    if path.is_file():
        summary = read_json(path, required=("stages",))
        stages = {name: {"status": s.get("status"), "seconds": s.get("seconds")} for name, s in summary["stages"].items()}
        out = {"run": str(run_dir), "profile": summary.get("profile"), "stages": stages}
    else:  # a run still in its first stage: only what its tasks have written so far
        out = {"run": str(run_dir), "stages": None, "note": "no summary.json yet: no stage of this run has ended"}
    finetuning = run_dir / "03_finetuning"
    tasks = {}
    for path in sorted(finetuning.glob("*/results.json")) if finetuning.is_dir() else ():
        r = read_json(path, required=("task", "seconds"))
        tasks[r["task"]] = {"seconds": r["seconds"], "used_sizes": r["data"].get("used_sizes"),
                            "max_length": r["config"].get("max_length"), "cache_dtype": r["config"].get("cache_dtype"),
                            "backbone": r["backbone"].get("name_or_path"), "seeds": r["seeds"],
                            "settings": len(r["settings"]), "adapters_untrained": r.get("adapters_untrained")}
    if tasks:
        out["finetuning_tasks"] = tasks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    print(json.dumps(stage_times(parser.parse_args().run_dir), indent=2))


if __name__ == "__main__":
    main()
