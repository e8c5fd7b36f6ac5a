"""Wall time, peak RAM and disk of every stage of a pipeline profile (default: the full-width rehearsal).

    python benchmarks/rehearsal.py --profile rehearsal --run-dir runs/rehearsal-full > benchmarks/results/rehearsal.json

Runs the stages one by one through ``kadapter.pipeline.run_pipeline`` (each notebook in its own kernel process),
samples the resident memory of this process and all its children (the kernels) every 0.5 s, and measures the run
folder after each stage. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import psutil

from kadapter.pipeline import STAGES, prepare_run, run_pipeline


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="rehearsal")
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()
    run_dir = Path(args.run_dir).resolve()  # the notebooks run in notebooks/: "{run}" paths must be absolute
    run_dir.mkdir(parents=True, exist_ok=True)
    me = psutil.Process(os.getpid())
    report = {"profile": args.profile, "run_dir": str(run_dir), "cpus": os.cpu_count(), "stages": {}}
    start = time.perf_counter()
    prepare_run(args.profile, run_dir)
    report["checkpoint"] = {"seconds": round(time.perf_counter() - start, 1),
                            "disk_bytes": folder_bytes(run_dir / "backbone") if (run_dir / "backbone").is_dir() else 0}
    for stage in STAGES:
        peak, done = [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss(me))
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        summary = run_pipeline(args.profile, run_dir, only=[stage.name], resume=True)
        done.set()
        sampler.join()
        record = summary["stages"][stage.name]
        report["stages"][stage.name] = {
            "status": record["status"], "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_gb": round(peak[0] / 2**30, 2),
            "stage_disk_mb": round(folder_bytes(run_dir / stage.name) / 2**20, 1),
            "run_disk_mb": round(folder_bytes(run_dir) / 2**20, 1),
            **({"error": record.get("error", "")[-1500:]} if record["status"] != "ok" else {})}
        print(json.dumps({stage.name: report["stages"][stage.name]}), flush=True)
        if record["status"] != "ok":
            break
    report["seconds_total"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
