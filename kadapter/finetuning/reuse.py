"""Which finished runs may be reused: a run's identity is everything its numbers depend on.

The setting, the seed, the config fields that change what it computes, and the *content* of what it reads: the
backbone's weights and config (:func:`kadapter.backbone.weights_fingerprint`, the kit's one fingerprint of
weights), each adapter's weights by the same function (a pre-trained adapter re-trained at the same path is
another adapter; a "w/o knowledge" one is its seeded random draw), and a hash of every split's records and the
label list (other data of the same size is other data). A rerun whose identity matches reuses the run; any
difference trains again.
"""
from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..backbone import backbone_identity, weights_fingerprint
from ..safe_files import DamagedFileError, read_json
from ..training import data_fingerprint
from .settings import FineTuneConfig, Setting, build_adapter
from .tasks import TaskData

# Config fields that change what a run computes, by setting mode; the others (progress, paths, batch sizes of
# feature extraction and evaluation, the other modes' rates) leave a finished run valid.
_COMMON_FIELDS = ("batch_size", "weight_decay", "warmup_ratio", "warmup_steps", "adam_epsilon", "max_grad_norm",
                  "mixed_precision", "trained_backbone_overrides", "input_format", "frozen_adapter_dropout",
                  "patience", "dropout", "max_length", "cache_dtype")
_MODE_FIELDS = {
    "baseline": (),
    "pooled": _COMMON_FIELDS + ("epochs", "learning_rate", "learning_rates", "random_adapter_seed"),
    "taps": _COMMON_FIELDS + ("epochs", "trained_epochs", "adapter_learning_rate", "random_adapter_seed"),
    "tokens": _COMMON_FIELDS + ("epochs", "trained_epochs", "backbone_learning_rate", "random_adapter_seed"),
}


def adapter_seed(config: FineTuneConfig, seed: int | None) -> int | None:
    """The seed a run's "w/o knowledge" adapters are drawn from: the shared one, or the run's own."""
    return config.random_adapter_seed if config.random_adapter_seed is not None else seed


@dataclass(frozen=True)
class RunInputs:
    """What the runs of one table read, fingerprinted once per table."""

    backbone: dict  # {"weights": ..., "config": ...}
    data: dict  # split -> content hash of its records; "labels" -> hash of the label list
    adapters: dict  # adapter key (Setting.adapter_keys) -> weights fingerprint


def run_inputs(data: TaskData, settings: Sequence[Setting], seeds: Sequence[int], config: FineTuneConfig,
               backbone) -> RunInputs:
    identity = backbone_identity(backbone)
    adapters: dict[str, str] = {}
    for setting in settings:
        for seed in seeds if setting.adapters else ():
            for name, key in setting.adapter_keys(adapter_seed(config, seed)).items():
                if key not in adapters:
                    adapter = build_adapter(setting, name, identity, adapter_seed(config, seed))
                    adapters[key] = weights_fingerprint(adapter)
    splits = {split: data_fingerprint(records) for split, records in data.splits.items()}
    return RunInputs(backbone={"weights": identity.weights_fingerprint, "config": identity.config_fingerprint},
                     data={**splits, "labels": data_fingerprint([list(data.labels or [])])}, adapters=adapters)


def run_identity(setting: Setting, seed, config: FineTuneConfig, inputs: RunInputs) -> dict:
    """What a finished run depends on: a rerun with the same identity reuses it."""
    fields_ = _MODE_FIELDS[setting.mode] if setting.baseline is None else ("max_length",)
    config_dict = asdict(config)
    identity = {"setting": setting.to_dict(), "seed": seed,
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config_dict.items() if k in fields_},
                "data": inputs.data}
    if not setting.baseline:  # the majority baseline reads the training labels only
        identity["backbone"] = inputs.backbone
        identity["adapters"] = {name: inputs.adapters[key]
                                for name, key in setting.adapter_keys(adapter_seed(config, seed)).items()}
    return identity


def load_finished(run_dir: Path, identity: dict) -> dict | None:
    """The finished run in `run_dir` when it was made with this identity, else None."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    try:
        record = read_json(path, required=("identity",))
    except DamagedFileError as err:  # a run cut short while writing: train it again, and say so
        warnings.warn(f"{err}; the run is trained again", stacklevel=2)
        return None
    return record if record.get("identity") == identity else None


def start_fresh_if_changed(run_dir: Path, identity: dict) -> None:
    """A trainer checkpoint is resumed only by the same run: another setting under this name starts afresh."""
    path = run_dir / "identity.json"
    if path.is_file() and _read_or_none(path) != identity:
        for stale in run_dir.glob("trainer*"):
            shutil.rmtree(stale, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2) + "\n")


def _read_or_none(path: Path):
    try:
        return read_json(path)
    except DamagedFileError:
        return None
