"""A small, readable training loop on `accelerate`: CPU, one GPU or several processes with the same code.

What it does, in order, for every global batch:

1. every process takes its share of the batch (``batch_size`` is the *global* batch, split across processes);
2. an optional ``batch_transform`` runs once (e.g. one frozen-backbone pass shared by several adapters);
3. each model being trained (one, or several with their own optimizer) runs forward under autocast (bf16 on GPU,
   full precision on CPU), backward, clips its own gradients, steps its own AdamW and linear warm-up/decay schedule.

After every epoch each model is evaluated on dev (``evaluate(model) -> metrics``); the best weights by
``TrainConfig.metric`` are kept and restored at the end, and a model whose metric has not improved for ``patience``
epochs stops training. Metrics go to ``metrics.jsonl``. Checkpoints (trainable weights, optimizer, scheduler, every
process's RNG state and the position in the epoch's data order) are written atomically (temp file + rename); a
run killed at any point resumes from its last checkpoint and ends with the same weights as an uninterrupted run.
The data order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so resuming needs no replay.
Checkpoints hold tensors and plain values only and are read weights-only; a resume first checks the config, the data
and every model's architecture (:mod:`kadapter.checkpoints`). A NaN or infinite loss or gradient norm stops training
with :class:`NonFiniteTrainingError` naming the step.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, send_to_device, set_seed
from torch import nn
from torch.utils.data import DataLoader

from .checkpoints import (  # noqa: F401 - atomic_save, trainable_state, data_fingerprint: importable from here
    NOT_COMPARED_ON_RESUME, architecture, atomic_save, data_fingerprint, load_trainable_state, resume_differences,
    resume_fields, rng_state, set_rng_state, trainable_state,
)
from .progress import progress_bar
from .safe_files import DamagedFileError, load_torch

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "train_summary.json"


def _run_only(default):
    """A TrainConfig field that does not change what training computes: a checkpoint resumes under another value
    (every field not marked so is compared on resume, :func:`kadapter.checkpoints.resume_fields`)."""
    return field(default=default, metadata=NOT_COMPARED_ON_RESUME)


class NonFiniteTrainingError(FloatingPointError):
    """The loss or the gradient norm of a training step is NaN or infinite: training stops there."""


@dataclass
class TrainConfig:
    output_dir: str = field(metadata=NOT_COMPARED_ON_RESUME)
    epochs: int = 3
    batch_size: int = 32  # global batch: split evenly across processes
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 42
    metric: str | None = None  # dev metric for early stopping and best weights; None: keep the last weights
    greater_is_better: bool = True
    patience: int | None = None  # epochs without improvement before a model stops; None: never
    checkpoint_every: int = _run_only(0)  # also checkpoint every N optimizer steps (0: at epoch ends only)
    # A finished run deletes its checkpoint (weights + optimizer state) and best-weights copy: they serve resuming
    # mid-run only, and for a fine-tuned RoBERTa-large they are ~5.7 GB. True keeps them.
    keep_checkpoints: bool = _run_only(False)
    mixed_precision: str = "auto"  # "auto" = bf16 on GPU, none on CPU; or "no" / "bf16" / "fp16"
    cpu: bool = _run_only(False)  # force CPU even when a GPU is visible
    log_every: int = _run_only(10)  # log the batch loss every N steps, and at the last step of every epoch
    progress: bool = _run_only(True)
    desc: str = _run_only("train")  # names the run in progress lines and metric lines (e.g. task, setting, seed)
    resume: bool = _run_only(True)  # continue from output_dir's checkpoint when there is one

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.patience is not None and self.metric is None:
            raise ValueError("early stopping (patience) needs a dev metric to watch (metric=...)")


@dataclass
class RunState:
    """Per-model bookkeeping that survives a restart."""

    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped: bool = False
    history: list = field(default_factory=list)


@dataclass
class LoopState:
    epoch: int = 0  # the epoch in progress
    step_in_epoch: int = 0  # global batches of this epoch already trained
    global_step: int = 0


# ------------------------------------------------------------------------------------------------------ helpers
def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a permutation drawn from (seed, epoch) only, cut into batches."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def shard(batch: list[int], rank: int, world: int) -> list[int]:
    """This process's contiguous share of a global batch (sizes differ by at most one)."""
    bounds = np.linspace(0, len(batch), world + 1).round().astype(int)
    return batch[bounds[rank]:bounds[rank + 1]]


def linear_schedule(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the peak learning rate, then linear decay to 0 at `total_steps`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over trainable parameters only; no weight decay on biases and LayerNorm weights (1-D tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter")
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def _loss_of(output) -> torch.Tensor:
    loss = output["loss"] if isinstance(output, Mapping) else output.loss
    if loss is None:
        raise ValueError("the model returned no loss: does the batch carry labels?")
    return loss


# ------------------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Train one model, or several side by side, on one dataset.

    ``models``: an ``nn.Module`` or ``{name: module}``; each module's ``forward(**batch)`` returns an object (or
    dict) with ``loss``. ``train_data``: a map-style dataset; ``collate_fn`` turns a list of its items into the batch
    dict. ``evaluate``: ``fn(model) -> {metric: value}`` (or ``{name: fn}``), called on the unwrapped model in eval
    mode under ``torch.no_grad`` on every process (dev sets are small; every process reaches the same decision).
    ``batch_transform(batch) -> batch``: runs once per batch before the models (shared backbone pass).
    ``step_hook(trainer)``: called after every optimizer step (tests use it to kill a run mid-epoch).
    """

    def __init__(self, models, train_data, config: TrainConfig, *, collate_fn: Callable,
                 evaluate: Callable | Mapping[str, Callable] | None = None,
                 batch_transform: Callable | None = None, step_hook: Callable | None = None,
                 accelerator: Accelerator | None = None):
        if len(train_data) == 0:
            raise ValueError("the training set is empty")
        self.config = config
        self.models = dict(models) if isinstance(models, Mapping) else {"model": models}
        if not isinstance(evaluate, Mapping):
            evaluate = {name: evaluate for name in self.models} if evaluate is not None else {}
        self.evaluate_fns = dict(evaluate)
        if config.metric is not None and set(self.evaluate_fns) != set(self.models):
            raise ValueError(f"metric {config.metric!r} needs an evaluate function for every model")
        self.train_data, self.collate_fn = train_data, collate_fn
        self.batch_transform, self.step_hook = batch_transform, step_hook
        self.output_dir = Path(config.output_dir)

        mixed = config.mixed_precision
        if mixed == "auto":
            mixed = "bf16" if torch.cuda.is_available() and not config.cpu else "no"
        self.accelerator = accelerator or Accelerator(cpu=config.cpu, mixed_precision=mixed)
        self.steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.batch_size < self.accelerator.num_processes:
            raise ValueError(f"batch_size {config.batch_size} < {self.accelerator.num_processes} processes")

        set_seed(config.seed)  # python, numpy, torch: dropout masks and any fresh initialisation
        self.optimizers, self.schedulers = {}, {}
        for name, model in self.models.items():
            optimizer = adamw(model, config.learning_rate, config.weight_decay)
            self.models[name], self.optimizers[name] = self.accelerator.prepare(model, optimizer)
            # Not prepared: accelerate would step a prepared scheduler once per process.
            self.schedulers[name] = linear_schedule(
                self.optimizers[name], int(config.warmup_ratio * self.total_steps), self.total_steps)
        self.runs = {name: RunState() for name in self.models}
        self.state = LoopState()
        self._data_fingerprint: str | None = None  # computed when a checkpoint is written or resumed

    # ------------------------------------------------------------------------------------------------ main loop
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped(self, name: str) -> nn.Module:
        return self.accelerator.unwrap_model(self.models[name])

    def fit(self) -> dict:
        cfg, acc = self.config, self.accelerator
        if cfg.resume and (self.output_dir / CHECKPOINT_NAME).is_file():
            self.load_checkpoint()
        elif self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / METRICS_NAME).write_text("")
        bar = progress_bar(total=self.total_steps, initial=self.state.global_step, desc=cfg.desc, dynamic_ncols=True,
                           disable=not (cfg.progress and self.is_main))
        while self.state.epoch < cfg.epochs and not all(r.stopped for r in self.runs.values()):
            batches = epoch_batches(len(self.train_data), cfg.batch_size, cfg.seed, self.state.epoch)
            mine = [shard(b, acc.process_index, acc.num_processes) for b in batches[self.state.step_in_epoch:]]
            # Its own generator: a DataLoader otherwise draws its base seed from the global RNG, which would make
            # dropout masks depend on where the epoch's iterator was created (and break exact resume).
            loader = DataLoader(self.train_data, batch_sampler=mine, collate_fn=self.collate_fn,
                                generator=torch.Generator().manual_seed(cfg.seed))
            for batch in loader:
                losses = self.train_step(send_to_device(batch, acc.device))
                self.state.step_in_epoch += 1
                self.state.global_step += 1
                bar.update(1)
                bar.set_postfix({f"loss_{n}" if len(losses) > 1 else "loss": f"{v:.4f}" for n, v in losses.items()})
                end_of_epoch = self.state.step_in_epoch == self.steps_per_epoch
                if self.state.global_step % cfg.log_every == 0 or end_of_epoch:
                    self.log({"type": "train", "epoch": self.state.epoch, "step": self.state.global_step,
                              "loss": {n: float(acc.reduce(torch.tensor(v, device=acc.device), "mean"))
                                       for n, v in losses.items()},
                              "lr": {n: s.get_last_lr()[0] for n, s in self.schedulers.items()}})
                if cfg.checkpoint_every and self.state.global_step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.step_hook is not None:
                    self.step_hook(self)
            self.end_epoch(bar)
        bar.close()
        return self.finish()

    def train_step(self, batch: dict) -> dict[str, float]:
        if self.batch_transform is not None:
            batch = self.batch_transform(batch)
        losses = {}
        for name, model in self.models.items():
            if self.runs[name].stopped:
                continue
            model.train()
            with self.accelerator.autocast():
                loss = _loss_of(model(**batch))
            self._check_finite(name, "loss", loss)
            self.accelerator.backward(loss)
            # max_grad_norm 0: no clipping, but the norm is still measured (an infinite bound clips nothing)
            norm = self.accelerator.clip_grad_norm_(model.parameters(), self.config.max_grad_norm or math.inf)
            if self.accelerator.mixed_precision != "fp16":  # fp16's loss scaler skips overflowing steps itself
                self._check_finite(name, "gradient norm", norm)
            self.optimizers[name].step()
            self.schedulers[name].step()
            self.optimizers[name].zero_grad(set_to_none=True)
            losses[name] = loss.item()
        return losses

    def _check_finite(self, name: str, what: str, value) -> None:
        """Stop on a NaN or infinite loss or gradient norm, naming the step: nothing after it would mean anything
        (the weights turn NaN and every later score with them)."""
        value = float(value.detach() if isinstance(value, torch.Tensor) else value) if value is not None else 0.0
        if math.isfinite(value):
            return
        who = f"{self.config.desc}" + ("" if name == "model" else f" · {name}")
        lrs = ", ".join(f"{lr:g}" for lr in self.schedulers[name].get_last_lr())
        raise NonFiniteTrainingError(
            f"[{who}] the {what} is {value} at step {self.state.global_step + 1} (epoch {self.state.epoch + 1}, "
            f"batch {self.state.step_in_epoch + 1} of {self.steps_per_epoch}); training stopped there. A learning "
            f"rate too high (now {lrs}, peak {self.config.learning_rate:g}) or non-finite inputs are the usual causes")

    def end_epoch(self, bar) -> None:
        cfg = self.config
        for name, run in self.runs.items():
            if run.stopped or name not in self.evaluate_fns:
                continue
            metrics = self.evaluate(name)
            run.history.append({"epoch": self.state.epoch, **metrics})
            self.log({"type": "eval", "model": name, "epoch": self.state.epoch, "step": self.state.global_step,
                      **metrics})
            if cfg.progress and self.is_main:
                who = cfg.desc if name == "model" else f"{cfg.desc} · {name}"  # "model": the one unnamed model
                bar.write(f"[{who}] epoch {self.state.epoch + 1}/{cfg.epochs} dev: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, (int, float))))
            if cfg.metric is None:
                continue
            if cfg.metric not in metrics:
                raise KeyError(f"evaluate() returned no {cfg.metric!r}; it returned {sorted(metrics)}")
            value = float(metrics[cfg.metric])
            better = run.best_metric is None or (value > run.best_metric if cfg.greater_is_better
                                                 else value < run.best_metric)
            if better:
                run.best_metric, run.best_epoch, run.bad_epochs = value, self.state.epoch, 0
                if self.is_main:
                    atomic_save(trainable_state(self.unwrapped(name)), self.output_dir / f"best_{name}.pt")
            else:
                run.bad_epochs += 1
                if cfg.patience is not None and run.bad_epochs >= cfg.patience:
                    run.stopped = True
                    bar.write(f"[{cfg.desc} · {name}] no improvement of {cfg.metric} for {run.bad_epochs} "
                              "epoch(s); stopping")
        self.state.epoch += 1
        self.state.step_in_epoch = 0
        self.save_checkpoint()

    @torch.no_grad()
    def evaluate(self, name: str) -> dict:
        model = self.unwrapped(name)
        model.eval()
        with self.accelerator.autocast():
            metrics = self.evaluate_fns[name](model)
        model.train()
        return {k: float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v
                for k, v in metrics.items()}

    def finish(self) -> dict:
        """Restore each model's best weights (when a metric was watched) and write the summary."""
        self.accelerator.wait_for_everyone()
        summary = {"steps": self.state.global_step, "epochs_run": self.state.epoch, "runs": {}}
        for name, run in self.runs.items():
            best = self.output_dir / f"best_{name}.pt"
            if self.config.metric is not None and run.best_epoch is not None:
                load_trainable_state(self.unwrapped(name), load_torch(best))
            summary["runs"][name] = asdict(run)
        if self.is_main:
            (self.output_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
            if not self.config.keep_checkpoints:
                for path in [self.output_dir / CHECKPOINT_NAME, *self.output_dir.glob("best_*.pt")]:
                    path.unlink(missing_ok=True)
        return summary

    # --------------------------------------------------------------------------------------------- checkpoints
    def log(self, record: dict) -> None:
        if self.is_main:
            with open(self.output_dir / METRICS_NAME, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def save_checkpoint(self) -> None:
        rng = gather_object([rng_state()])  # one per process, in rank order
        if self.is_main:
            atomic_save({
                "config": asdict(self.config),
                "data_fingerprint": self.data_fingerprint,
                "architecture": self.architectures,
                "loop": asdict(self.state),
                "rng": rng,
                "runs": {name: {"state": asdict(run), "model": trainable_state(self.unwrapped(name)),
                                "optimizer": self.optimizers[name].state_dict(),
                                "scheduler": self.schedulers[name].state_dict()}
                         for name, run in self.runs.items()},
            }, self.output_dir / CHECKPOINT_NAME)
        self.accelerator.wait_for_everyone()

    @property
    def data_fingerprint(self) -> str:
        """:func:`data_fingerprint` of the training data (computed once)."""
        if self._data_fingerprint is None:
            self._data_fingerprint = data_fingerprint(self.train_data)
        return self._data_fingerprint

    @property
    def architectures(self) -> dict[str, dict]:
        """Each model's :func:`kadapter.checkpoints.architecture` (what it computes besides its weights)."""
        return {name: architecture(self.unwrapped(name)) for name in self.models}

    def load_checkpoint(self) -> None:
        path = self.output_dir / CHECKPOINT_NAME
        ckpt = load_torch(path)  # weights-only: a planted pickle is refused before anything in it runs
        if not isinstance(ckpt, dict) or not {"config", "loop", "rng", "runs"} <= set(ckpt):
            raise DamagedFileError(path, "not a kadapter training checkpoint (fields config, loop, rng, runs)")
        now = asdict(self.config)
        changed = resume_differences({k: ckpt["config"].get(k) for k in resume_fields(TrainConfig)},
                                     {k: now[k] for k in resume_fields(TrainConfig)})
        saved_data = ckpt.get("data_fingerprint")
        if saved_data != self.data_fingerprint:
            changed["training data"] = (saved_data or "not recorded", self.data_fingerprint)
        saved_architectures = ckpt.get("architecture") or {}
        for name, current in self.architectures.items():
            for where, values in resume_differences(saved_architectures.get(name, {}), current).items():
                changed[where if name == "model" else f"{name}: {where}"] = values
        if changed:
            listed = "; ".join(f"{k}: {saved!r} -> {current!r}" for k, (saved, current) in list(changed.items())[:12])
            more = f" (and {len(changed) - 12} more)" if len(changed) > 12 else ""
            raise ValueError(f"{path} is a checkpoint of another run (saved -> now: {listed}{more}); "
                             "use a new output_dir or resume=False")
        if set(ckpt["runs"]) != set(self.models):
            raise ValueError(f"checkpoint trains {sorted(ckpt['runs'])}, this run {sorted(self.models)}")
        if len(ckpt["rng"]) != self.accelerator.num_processes:
            raise ValueError(f"checkpoint from {len(ckpt['rng'])} processes, resumed on "
                             f"{self.accelerator.num_processes}: the data shards would differ")
        self.state = LoopState(**ckpt["loop"])
        for name, saved in ckpt["runs"].items():
            load_trainable_state(self.unwrapped(name), saved["model"])
            self.optimizers[name].load_state_dict(saved["optimizer"])
            self.schedulers[name].load_state_dict(saved["scheduler"])
            self.runs[name] = RunState(**saved["state"])
        set_rng_state(ckpt["rng"][self.accelerator.process_index])
        if self.is_main:  # forget what was logged after the checkpoint: those steps are trained again
            path = self.output_dir / METRICS_NAME
            kept = [line for line, record in read_metrics(path) if record["step"] <= self.state.global_step]
            path.write_text("".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[tuple[str, dict]]:
    """``(line, record)`` for every record of a ``metrics.jsonl``.

    A half-written last line (the process died mid-write) is dropped with a warning; a damaged line anywhere else
    raises :class:`DamagedFileError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    complete = text.endswith("\n")
    if complete:
        lines = lines[:-1]
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("no integer 'step'")
        except ValueError as err:
            if number == len(lines):
                warnings.warn(f"{path}, line {number}: dropped a half-written last record ({line[:60]!r}); "
                              "the run was killed while writing it", stacklevel=2)
                continue
            raise DamagedFileError(path, f"line {number}: not a metrics record ({err})") from None
        records.append((line, record))
    return records


def train(models, train_data, config: TrainConfig, **kwargs) -> dict:
    """``Trainer(models, train_data, config, **kwargs).fit()``: the training summary (per model: best metric,
    best epoch, dev history, whether it stopped early)."""
    return Trainer(models, train_data, config, **kwargs).fit()
