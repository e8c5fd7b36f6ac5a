"""The run loop: every setting × seed on one task, model selection on dev, test evaluated once at the end;
finished runs kept and reused while their identity holds."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from torch import nn

from ..backbone import backbone_identity, load_backbone
from ..baselines import MajorityBaseline
from ..metrics import logits_to_label_sets
from ..training import TrainConfig, train
from .features import prepare_features
from .models import build_model
from .results import paper_reference, summarize
from .settings import FineTuneConfig, Setting
from .tasks import ENTITY_TYPING, MULTIPLE_CHOICE, TaskData, TaskSpec, score

RESULTS_NAME = "results.json"


@torch.no_grad()
def predict(model: nn.Module, dataset: torch.utils.data.Dataset, collate_fn, batch_size: int = 256) -> torch.Tensor:
    """The model's logits over a dataset, in order (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    from accelerate.utils import send_to_device

    logits = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn)
    for batch in loader:
        batch = send_to_device({k: v for k, v in batch.items() if k != "labels"}, device)
        logits.append(model(**batch).logits.float().cpu())
    model.train(was_training)
    return torch.cat(logits)


def decode(task: TaskSpec, logits: torch.Tensor, labels: Sequence[str] | None) -> list:
    """Logits -> predictions in the gold labels' form."""
    if task.kind == ENTITY_TYPING:
        return [frozenset(s) for s in logits_to_label_sets(logits, labels)]
    best = logits.argmax(-1).tolist()
    return best if task.kind == MULTIPLE_CHOICE else [labels[i] for i in best]


def evaluate_split(model: nn.Module, dataset, collate_fn, data: TaskData, split: str,
                   batch_size: int = 256) -> tuple[dict[str, float], list]:
    """Score the model on one split: (metrics, predictions). The runner calls it on ``test`` exactly once per run."""
    pred = decode(data.task, predict(model, dataset, collate_fn, batch_size), data.labels)
    return score(data.task, data.gold(split), pred), pred


def majority_predictions(data: TaskData, split: str) -> tuple[list, MajorityBaseline]:
    """The training majority (label, label set or answer index) predicted for every example of `split`."""
    baseline = MajorityBaseline().fit(data.gold("train"))
    return baseline.predict(len(data.splits[split])), baseline


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "setting"


def run_finetuning(data: TaskData, settings: Sequence[Setting], seeds: Sequence[int], config: FineTuneConfig,
                   output_dir: str | Path, backbone=None, tokenizer=None, metadata: Mapping | None = None) -> dict:
    """Every setting × seed on one task. Returns (and writes to ``output_dir/results.json``) the results dict,
    with `metadata` (e.g. ``{"adapters_untrained": True}``) merged in.

    Finished runs are kept in ``output_dir/<setting>/seed<k>/run.json`` and reused when the same configuration is
    run again, so an interrupted table resumes where it stopped.
    """
    t0 = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if backbone is None:
        backbone, tokenizer = load_backbone()
    backbone.to(config.device).eval()
    identity = backbone_identity(backbone)
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError(f"setting names must be unique: {names}")

    def run_dir(setting, seed) -> Path:
        return output_dir / _slug(setting.name) / (f"seed{seed}" if seed is not None else "baseline")

    seeds_of = {s.name: [None] if s.baseline else list(seeds) for s in settings}
    finished = {(s.name, seed): _load_finished(run_dir(s, seed), s, seed, config, data)
                for s in settings for seed in seeds_of[s.name]}
    pending = [s for s in settings if any(finished[s.name, seed] is None for seed in seeds_of[s.name])]
    t_features = time.time()  # features only for settings with runs left to do
    encoded, encoding_stats, features = prepare_features(data, pending, seeds, config, backbone, tokenizer)
    feature_seconds = time.time() - t_features

    runs = []
    for setting in settings:
        for seed in seeds_of[setting.name]:
            record = finished[setting.name, seed]
            if record is None:
                directory = run_dir(setting, seed)
                _start_fresh_if_changed(directory, _run_identity(setting, seed, config, data))
                record = _run_one(setting, seed, data, encoded, features, backbone, tokenizer, config, directory)
                _write_json(directory / "run.json", record)
            runs.append(record)

    results = {
        "task": data.task.name, "metric": data.task.metric, "metric_label": data.task.metric_label,
        "backbone": identity.to_dict(), "seeds": list(seeds), "config": asdict(config),
        "data": {**data.provenance, "encoding": encoding_stats},
        "settings": [s.to_dict() for s in settings],
        "runs": [{k: v for k, v in r.items() if k != "test_predictions"} for r in runs],
        "summary": summarize(runs, data.task.metric, names),
        "paper_reference": paper_reference(data.task.name),
        "seconds": {"features": feature_seconds, "total": time.time() - t0},
        **dict(metadata or {}),
    }
    _write_json(output_dir / RESULTS_NAME, results)
    if not config.keep_feature_cache:
        import shutil

        for split in features.values():
            if split.cache is not None:
                shutil.rmtree(split.cache.path, ignore_errors=True)
    return results


# Config fields that change what a run computes, by setting mode; the others (progress, paths, batch sizes of
# feature extraction and evaluation, the other modes' rates) leave a finished run valid.
_COMMON_FIELDS = ("batch_size", "weight_decay", "warmup_ratio", "patience", "dropout", "max_length", "cache_dtype")
_MODE_FIELDS = {
    "baseline": (),
    "pooled": _COMMON_FIELDS + ("epochs", "learning_rate", "learning_rates", "random_adapter_seed"),
    "taps": _COMMON_FIELDS + ("epochs", "trained_epochs", "adapter_learning_rate", "random_adapter_seed"),
    "tokens": _COMMON_FIELDS + ("epochs", "trained_epochs", "backbone_learning_rate", "random_adapter_seed"),
}


def _run_identity(setting: Setting, seed, config: FineTuneConfig, data: TaskData) -> dict:
    """What a finished run depends on: a rerun with the same identity reuses it."""
    fields_ = _MODE_FIELDS[setting.mode] if setting.baseline is None else ("max_length",)
    config_dict = asdict(config)
    return {"setting": setting.to_dict(), "seed": seed,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config_dict.items() if k in fields_},
            "data": data.provenance.get("used_sizes")}


def _load_finished(run_dir: Path, setting, seed, config, data) -> dict | None:
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("identity") == _run_identity(setting, seed, config, data) else None


def _start_fresh_if_changed(run_dir: Path, identity: dict) -> None:
    """A trainer checkpoint is resumed only by the same run: another setting under this name starts afresh."""
    import shutil

    path = run_dir / "identity.json"
    if path.is_file() and json.loads(path.read_text()) != identity:
        for stale in run_dir.glob("trainer*"):
            shutil.rmtree(stale, ignore_errors=True)
    _write_json(path, identity)


def _run_one(setting: Setting, seed, data: TaskData, encoded: DatasetDict, features: dict, backbone, tokenizer,
             config: FineTuneConfig, run_dir: Path) -> dict:
    t0 = time.time()
    record = {"setting": setting.name, "seed": seed, "identity": _run_identity(setting, seed, config, data)}
    if setting.baseline:
        for split in ("dev", "test"):
            pred, baseline = majority_predictions(data, split)
            record[split] = score(data.task, data.gold(split), pred)
        record["majority"] = _jsonable(baseline.overall)
        record["majority_train_share"] = baseline.share()
        record.update(best_epoch=None, history=[], trainable_parameters=0, seconds=time.time() - t0)
        return record

    best = None
    search = []
    for lr in config.learning_rates_for(setting):
        model, splits = build_model(setting, seed, data, encoded, features, backbone, tokenizer, config)
        summary = _train(model, splits, setting, seed, lr, data, config, run_dir / f"trainer_lr{lr:g}")
        run = summary["runs"]["model"]
        search.append({"learning_rate": lr, "best_epoch": run["best_epoch"], "dev": run["best_metric"],
                       "epochs_run": summary["epochs_run"]})
        if best is None or run["best_metric"] > best[3]["runs"]["model"]["best_metric"]:
            best = (lr, model, splits, summary)
    lr, model, splits, summary = best
    run = summary["runs"]["model"]
    # The best (learning rate, epoch) by dev is loaded in `model`; test is looked at now, once.
    record["test"], test_pred = evaluate_split(model, *splits["test"], data, "test", config.eval_batch_size)
    record["dev"] = next({k: v for k, v in h.items() if k != "epoch"} for h in run["history"]
                         if h["epoch"] == run["best_epoch"])
    record.update(learning_rate=lr, learning_rate_search=search, best_epoch=run["best_epoch"],
                  epochs_run=summary["epochs_run"], stopped_early=run["stopped"], history=run["history"],
                  trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                  seconds=time.time() - t0, test_predictions=[_jsonable(p) for p in test_pred])
    return record


def _train(model, splits, setting: Setting, seed: int, lr: float, data: TaskData, config: FineTuneConfig,
           output_dir: Path) -> dict:
    """Train on train with the shared Trainer, score every epoch on dev, restore the best epoch's weights."""
    train_config = TrainConfig(
        output_dir=str(output_dir), epochs=config.epochs_for(setting), batch_size=config.batch_size,
        learning_rate=lr, weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio, seed=seed,
        metric=data.task.metric, patience=config.patience, cpu=config.device == "cpu", progress=config.progress,
        log_every=50, desc=f"{data.task.name} · {setting.name} · seed {seed} · lr {lr:g}")

    def on_dev(m):
        return evaluate_split(m, *splits["dev"], data, "dev", config.eval_batch_size)[0]

    return train(model, splits["train"][0], train_config, collate_fn=splits["train"][1], evaluate=on_dev)


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
