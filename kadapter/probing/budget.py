"""The probe's training budget, chosen once on a dev split for the backbone variant and then applied identically to
every variant: the learning rate, and the number of epochs (steps) after which the dev loss stops improving.

Why the backbone variant: it is the reference every other row is compared with, it reads no adapter, so the budget
cannot favour one adapter over another; every variant then trains with exactly the same steps, batches and rate.
Why the dev *loss* (not accuracy): it is what the probe optimises and it moves smoothly at the sizes a CPU run
affords, where top-1 accuracy on a few hundred positions is mostly ties.

The search trains the backbone's probe for ``max_epochs`` at each rate with the same linear warm-up/decay schedule
the final run uses, evaluating the dev loss after every epoch; the chosen budget is the (rate, epochs) with the
lowest dev loss after at least one epoch (the earliest epoch on ties). The final probes then train for that many epochs, so their schedule
decays over the chosen epochs rather than over ``max_epochs``: the same for every variant.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..model import KAdapterModel
from ..training import TrainConfig
from .features import MaskedFeatures
from .variants import train_probes


@torch.no_grad()
def probe_dev_loss(probe, data: MaskedFeatures, batch_size: int = 1024) -> float:
    """The probe's own training loss (masked-LM or next-token cross-entropy) averaged over every dev position."""
    probe.eval()
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data.subset(range(start, min(start + batch_size, len(data))))
        loss = probe(probe.inputs(batch.sources), labels=batch.labels.to(probe.device)).loss
        total += float(loss) * len(batch)
        n += len(batch)
    return total / n


def choose_probe_budget(model: KAdapterModel, build: Callable, train_data: MaskedFeatures, dev_data: MaskedFeatures,
                        config: TrainConfig, *, learning_rates: Sequence[float], max_epochs: int,
                        fusion: str | None = None, recipe: dict | None = None,
                        evaluate: Callable | None = None) -> dict:
    """Train the backbone variant's probe (``build(model, [], seed=config.seed, ...)``) for ``max_epochs`` at each
    of ``learning_rates`` and pick the (rate, epochs) with the lowest dev loss.

    ``config`` gives everything else (batch size, warm-up, seed, output folder: one sub-folder per rate).
    ``evaluate(probe, dev)`` adds the recipe's dev accuracy to the curve. Returns ``{learning_rate, epochs, steps,
    steps_per_epoch, dev_loss, curve: [{learning_rate, epoch, steps, dev_loss, ...}], ...}``.
    """
    if not learning_rates or max_epochs < 1:
        raise ValueError(f"the budget search needs learning rates and max_epochs >= 1, got {learning_rates}, "
                         f"{max_epochs}")
    if len(dev_data) == 0:
        raise ValueError("the budget search needs a non-empty dev split (dev_fraction > 0)")

    def on_dev(probe, dev):
        return {"dev_loss": probe_dev_loss(probe, dev), **(evaluate(probe, dev) if evaluate else {})}

    curve, steps_per_epoch = [], None
    for rate in learning_rates:
        probe = build(model, [], seed=config.seed, fusion=fusion, recipe=recipe)
        curve.append({"learning_rate": rate, "epoch": 0, "steps": 0, **on_dev(probe, dev_data)})  # the start
        run_config = TrainConfig(**{**asdict(config), "learning_rate": rate, "epochs": max_epochs,
                                    "output_dir": str(Path(config.output_dir) / f"lr_{rate:g}")})
        summary = train_probes({"backbone": probe}, train_data, run_config, dev=dev_data, evaluate=on_dev)
        steps_per_epoch = summary["steps"] // max_epochs
        for entry in summary["runs"]["backbone"]["history"]:
            epoch = entry["epoch"] + 1
            curve.append({"learning_rate": rate, "epoch": epoch, "steps": epoch * steps_per_epoch,
                          **{k: v for k, v in entry.items() if k != "epoch"}})
    best = min((p for p in curve if p["epoch"] > 0), key=lambda point: (point["dev_loss"], point["epoch"]))
    return {"learning_rate": best["learning_rate"], "epochs": best["epoch"], "steps": best["steps"],
            "steps_per_epoch": steps_per_epoch, "dev_loss": best["dev_loss"], "max_epochs": max_epochs,
            "learning_rates": list(learning_rates), "chosen_on": "the backbone variant's probe, dev split",
            "curve": curve}


def apply_budget(config: TrainConfig, budget: dict) -> TrainConfig:
    """``config`` with the chosen learning rate and epochs: the one budget every variant and seed trains with."""
    return TrainConfig(**{**asdict(config), "learning_rate": budget["learning_rate"], "epochs": budget["epochs"]})
