"""Training steps of the pooled fine-tuning model (fusion + head on vectors taken at the head's positions) with one
and with two torch threads, side by side in one process, as JSON.

    python benchmarks/pooled_threads.py [--hidden 640] [--steps 20] [--batch 32]

On a small shared CPU, two threads on these small matrices can wait on each other far longer than they compute
(thread oversubscription when other jobs hold the cores); `--profile gemma` runs fine-tuning on one thread for this
reason. The machine's load average is recorded with the timings: the ratio depends on it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kadapter import finetuning as ft  # noqa: E402
from kadapter.config import FusionConfig  # noqa: E402
from kadapter.fusion import Fusion  # noqa: E402


def ms_per_step(adapters: list[str], hidden: int, steps: int, batch: int, threads: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ft.PooledTaskModel(ft.ENTITY_TYPING, Fusion(FusionConfig("concat", adapters), hidden),
                               ft.make_head(ft.ENTITY_TYPING, hidden, 9))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, hidden)
    states = {name: torch.randn(batch, 1, hidden) for name in adapters}
    labels = torch.randint(0, 2, (batch, 9)).float()

    def step():
        model(x, states, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=640, help="backbone width (Gemma 3 270M: 640)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rows = []
    for adapters in ([], ["factual"], ["factual", "linguistic"]):
        timings = {threads: ms_per_step(adapters, args.hidden, args.steps, args.batch, threads) for threads in (1, 2)}
        rows.append({"setting": "+".join(["backbone"] + adapters), "ms_per_step_1_thread": round(timings[1], 2),
                     "ms_per_step_2_threads": round(timings[2], 2), "ratio_2_over_1": round(timings[2] / timings[1], 2)})
    print(json.dumps({"hidden": args.hidden, "batch": args.batch, "steps": args.steps, "cpu_count": os.cpu_count(),
                      "load_average": os.getloadavg(), "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
