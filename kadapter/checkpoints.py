"""What a training checkpoint holds and how it is written and checked — without unpickling anything on reading.

A checkpoint (``checkpoint.pt``) holds tensors and plain values only (dicts, lists, strings, numbers, None): the
trainable weights, optimizer and scheduler state, every process's RNG state (converted to tensors and lists by
:func:`rng_state`), the loop position, the run's config, the training data's fingerprint and each model's
:func:`architecture`. It is read with ``torch.load(weights_only=True)`` (:func:`kadapter.safe_files.load_torch`), so a
planted pickle in a run folder is refused before anything in it runs. Before resuming, :func:`resume_differences`
compares every config field that shapes the trajectory and every architecture field of every model with the run
being resumed: a checkpoint of another run is refused, never silently continued.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Metadata of a TrainConfig field that does not change what training computes (where it writes, how it reports):
# every other field is compared when a checkpoint is resumed.
NOT_COMPARED_ON_RESUME = {"compared_on_resume": False}


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file next to `path`, flushed to disk, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes: parameters that require grad (the frozen backbone is left out)."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    expected = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        raise ValueError(f"checkpoint does not match the model: missing {sorted(expected - set(state))}, "
                         f"unexpected {sorted(set(state) - expected)}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


# ------------------------------------------------------------------------------------------------- RNG states
def rng_state() -> dict:
    """This process's RNG states (python, numpy, torch, CUDA) as tensors, lists and numbers: a weights-only load
    reads them back, where numpy's own state (an ndarray inside a tuple) would need unpickling."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "internal": list(internal), "gauss": gauss},
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping) -> None:
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------- what must not change
def resume_fields(config_class) -> tuple[str, ...]:
    """The fields of a config dataclass compared on resume: all but those marked :data:`NOT_COMPARED_ON_RESUME`."""
    return tuple(f.name for f in fields(config_class) if f.metadata.get("compared_on_resume", True))


def _plain(value):
    """A config value as JSON would hold it (tuples become lists): what a weights-only load reads back."""
    return json.loads(json.dumps(value, default=str))


def architecture(model: nn.Module) -> dict[str, object]:
    """What a model computes besides its weights, as ``{where: value}``: every module's class and settings
    (``extra_repr``: sizes, dropout, eps...) and every config it carries — a dataclass config (an adapter's
    activation, ``causal``, ``tap_norm``, ``skip_interval``, heads...) field by field, a Hugging Face config by its
    fingerprint. Shape-neutral changes (another activation, other heads of the same width) show here."""
    from .backbone import config_fingerprint

    record: dict[str, object] = {}
    for path, module in model.named_modules():
        where = path or "model"
        record[f"{where} (module)"] = f"{type(module).__qualname__}({module.extra_repr()})"
        config = getattr(module, "config", None)
        if is_dataclass(config) and not isinstance(config, type):
            for name, value in asdict(config).items():
                record[f"{where}.config.{name}"] = _plain(value)
        elif config is not None and hasattr(config, "to_dict"):
            record[f"{where}.config"] = config_fingerprint(config)
    return record


def resume_differences(saved: Mapping, now: Mapping) -> dict[str, tuple]:
    """``{field: (saved, now)}`` for every entry that differs (or is present on one side only)."""
    missing = "(not recorded)"
    return {k: (saved.get(k, missing), now.get(k, missing)) for k in sorted(set(saved) | set(now), key=str)
            if saved.get(k, missing) != now.get(k, missing)}


# ------------------------------------------------------------------------------------------- data fingerprint
def _hash_item(digest, item) -> None:
    """Feed one training item (tensors, arrays, numbers, strings, nested lists and dicts) into ``digest``."""
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu()
        digest.update(f"T{item.dtype}{tuple(item.shape)}".encode())
        digest.update(item.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if item.numel() else b"")
    elif isinstance(item, np.ndarray):
        digest.update(f"A{item.dtype}{item.shape}".encode() + np.ascontiguousarray(item).tobytes())
    elif isinstance(item, Mapping):
        digest.update(b"{")
        for key in sorted(item, key=str):
            digest.update(repr(key).encode())
            _hash_item(digest, item[key])
        digest.update(b"}")
    elif isinstance(item, (list, tuple)):
        digest.update(b"[")
        for value in item:
            _hash_item(digest, value)
        digest.update(b"]")
    else:
        digest.update(repr(item).encode())


def data_fingerprint(data) -> str:
    """A hash of the training examples' content: what a checkpoint is resumed on must be what it was trained on.

    A dataset may say what it holds itself (a ``fingerprint()`` method or string attribute: the feature cache's
    rows do); a ``datasets.Dataset`` is hashed from its Arrow data; any other map-style dataset item by item.
    """
    own = getattr(data, "fingerprint", None)
    own = own() if callable(own) else own
    if isinstance(own, str):
        return own
    digest = hashlib.sha256(f"n={len(data)}".encode())
    try:
        import datasets
        import pyarrow as pa
    except ImportError:  # pragma: no cover - both are dependencies
        datasets = None
    if datasets is not None and isinstance(data, datasets.Dataset):
        table = data.with_format("arrow")[:]
        for batch in table.to_batches(max_chunksize=8192):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            digest.update(sink.getvalue().to_pybytes())
        return digest.hexdigest()[:16]
    for index in range(len(data)):
        _hash_item(digest, data[index])
    return digest.hexdigest()[:16]
