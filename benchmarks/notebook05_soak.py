"""Notebook 05 (the probing demo and its widget cell) run headless many times in a row on a busy machine: does any
run stall? (issue 21, item 0: under load the widget cell's execute-reply sat in the client until the cell timeout)

    nice -n 5 python benchmarks/notebook05_soak.py                        # 30 runs, the kit's client, 2 CPU burners
    nice -n 5 python benchmarks/notebook05_soak.py --client papermill --runs 10   # papermill's own client, to compare

Every run executes ``notebooks/05_probing_demo.ipynb`` through :func:`kadapter.notebook_run.execute_notebook` (a
fresh kernel, parameters as the pipeline gives them) on one probe set written once beforehand: the default MiniLM
with a small adapter and its "w/o knowledge" twin, untrained probe heads (their weights do not change what the
client has to wait for). ``--burners N`` keeps N extra processes spinning on the CPU for the whole soak, on top of
whatever else the machine runs. A run counts as a hang when it fails with a timeout or when any of its cells took
longer than ``--stall-seconds`` (the widget cell takes a second or two; a lost reply shows as a cell lasting the
whole cell timeout). Prints JSON (also written to ``benchmarks/results/notebook05_soak.json``, git-ignored): runs,
hangs, median and max seconds per run and for the widget cell, the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _burn(stop) -> None:  # a CPU burner: spins until told to stop
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def write_probe_set(folder: Path, seed: int = 0) -> Path:
    import torch

    from kadapter import AdapterConfig, KAdapterModel
    from kadapter.probing import add_control_adapter, build_probe, save_probe_set

    torch.manual_seed(seed)
    adapter = AdapterConfig(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_transformer_layers=1)
    model = KAdapterModel.from_backbone(adapters={"factual": adapter})
    add_control_adapter(model, "factual")
    probes = {"backbone": build_probe(model, [], seed=seed), "+factual": build_probe(model, ["factual"], seed=seed + 1),
              "+factual (w/o knowledge)": build_probe(model, ["factual_wo_knowledge"], seed=seed + 2)}
    return save_probe_set(model, probes, folder / "04_lama_probing" / "probe_set")


def use_papermill_client() -> None:
    """Run the soak on papermill's own notebook client (the kit's engine name, papermill's engine)."""
    from papermill.engines import NBClientEngine, papermill_engines

    from kadapter import notebook_run

    class Stock(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, tracker=None, **kwargs):
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(notebook_run.ENGINE_NAME, Stock)


def one_run(probe_set: Path, folder: Path, cell_timeout: float) -> dict:
    import nbformat

    from kadapter.notebook_run import NotebookError, execute_notebook

    started = time.perf_counter()
    try:
        execute_notebook(ROOT / "notebooks" / "05_probing_demo.ipynb", folder / "05.ipynb", cwd=ROOT / "notebooks",
                         parameters={"probe_set": str(probe_set), "output_dir": str(folder / "out"), "k": 5,
                                     "device": "cpu"},
                         execution_timeout=cell_timeout, log=None)
        error = ""
    except NotebookError as err:
        error = err.summary
    seconds = time.perf_counter() - started
    cells = nbformat.read(str(folder / "05.ipynb"), as_version=4).cells if (folder / "05.ipynb").exists() else []
    durations = [c.metadata.get("papermill", {}).get("duration") or 0.0 for c in cells if c.cell_type == "code"]
    widget = [c.metadata.get("papermill", {}).get("duration") or 0.0 for c in cells
              if c.cell_type == "code" and "ProbingDemo(" in c.source]
    return {"seconds": round(seconds, 2), "slowest_cell": round(max(durations, default=0.0), 2),
            "widget_cell": round(widget[0], 2) if widget else None, "error": error}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--burners", type=int, default=2, help="extra CPU-spinning processes during the soak")
    parser.add_argument("--client", choices=["kadapter", "papermill"], default="kadapter")
    parser.add_argument("--cell-timeout", type=float, default=300.0)
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "notebook05_soak.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # the kernels' kadapter
    if args.client == "papermill":
        use_papermill_client()

    out = Path(args.out)  # rewritten after every run: a soak cut short keeps its numbers
    out.parent.mkdir(parents=True, exist_ok=True)
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.burners)]
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="notebook05_soak_") as tmp:
        probe_set = write_probe_set(Path(tmp))
        for burner in burners:
            burner.start()
        try:
            for number in range(args.runs):
                folder = Path(tmp) / f"run{number}"
                folder.mkdir()
                run = one_run(probe_set, folder, args.cell_timeout)
                run["hang"] = bool(run["error"] and "timeout" in run["error"].lower()) \
                    or run["slowest_cell"] >= args.stall_seconds
                runs.append(run)
                print(f"run {number + 1}/{args.runs}: {run}", file=sys.stderr, flush=True)
                out.write_text(json.dumps({**summarise(runs, args, load_before), "per_run": runs}, indent=2) + "\n")
        finally:
            stop.set()
            for burner in burners:
                burner.join()
    result = summarise(runs, args, load_before)
    print(json.dumps(result, indent=2))
    return result


def summarise(runs: list[dict], args, load_before) -> dict:
    seconds = [r["seconds"] for r in runs]
    widget = [r["widget_cell"] for r in runs if r["widget_cell"] is not None]
    return {
        "client": args.client, "runs": len(runs), "hangs": sum(r["hang"] for r in runs),
        "failed": sum(bool(r["error"]) for r in runs),
        "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
        "max_seconds": round(max(seconds), 2) if seconds else None,
        "widget_cell_median_seconds": round(statistics.median(widget), 2) if widget else None,
        "widget_cell_max_seconds": round(max(widget), 2) if widget else None,
        "cell_timeout": args.cell_timeout, "stall_seconds": args.stall_seconds, "burners": args.burners,
        "cpu_count": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "errors": sorted({r["error"] for r in runs if r["error"]}),
    }


if __name__ == "__main__":
    main()
