"""Feature cache: run the frozen backbone once over a dataset and keep its hidden states on disk.

The backbone is frozen and adapters never write into it, so its hidden states at the tap layers are the same in
every epoch and for every adapter. ``FeatureCache.build`` computes them once (inference mode, batches sorted by
length so little is spent on padding) and stores, per example, the tap-layer and last-layer states of the real
tokens only, as flat memory-mapped ``.npy`` arrays ``(total_tokens, hidden)`` plus per-example lengths and offsets.
Storage is fp32, fp16 or bf16 (bf16 kept as its raw 16 bits, since numpy has no bfloat16); the default is the
backbone kind's safe one (``kadapter.backbone_kind``: fp16 on encoders, bf16 on causal LMs, where fp16 is refused
because their residual stream overflows it).

A cache lives in ``<root>/<key>/`` where the key hashes everything the states depend on: the backbone's weights
and config fingerprints, the tokenizer, the encoded data (token ids, masks, type ids), ``max_length``, the taps and
the storage dtype. Any change gives a new folder, so a stale cache is never read. Identity, layout and the build
protocol (temporary folder renamed when complete, killed builds' folders removed, a damaged cache named and rebuilt)
are :mod:`kadapter.state_store`'s, shared with the causal-LM states of :mod:`kadapter.probing.states`.

Reading pads each batch to its longest example with zero vectors; padded positions are masked everywhere
(adapters' attention, heads), so results equal a live backbone pass up to float rounding. The one exception is an
adapter with ``faithful_padding=True``, which attends to padding: its padding states differ from a live pass.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset

from .backbone import BackboneFeatures
from .backbone_kind import kind_of
from .encoding import PadCollator, tokenizer_fingerprint
from .progress import progress_bar
from .state_store import META_NAME, StoredStates, backbone_fingerprints, remove_stale_builds, write_meta  # noqa: F401
from .state_store import key_digest as _digest

CACHE_FORMAT = 1
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
INPUT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def default_cache_root() -> Path:
    """``$KADAPTER_CACHE`` or ``~/.cache/kadapter/features``."""
    return Path(os.environ.get("KADAPTER_CACHE", Path.home() / ".cache" / "kadapter" / "features"))


def _backbone_of(model) -> torch.nn.Module:
    """A ``KAdapterModel`` or a bare Hugging Face encoder."""
    return getattr(model, "backbone", model)


def _kind_of(model):
    """The backbone kind of a ``KAdapterModel`` (its ``kind``) or of a bare Hugging Face model (detected)."""
    return getattr(model, "kind", None) or kind_of(model)


def data_fingerprint(dataset: Dataset) -> str:
    """A hash of the encoded inputs themselves (token ids, masks, type ids), whatever the dataset's history."""
    table = dataset.with_format("arrow")[:]
    digest = hashlib.sha256(str(len(dataset)).encode())
    for name in INPUT_COLUMNS:
        if name not in table.column_names:
            continue
        column = table.column(name).combine_chunks()
        offsets = column.offsets.to_numpy()
        digest.update(name.encode())
        digest.update((offsets - offsets[0]).astype(np.int64).tobytes())
        digest.update(column.flatten().to_numpy().astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def cache_key(backbone, tokenizer, dataset: Dataset, max_length: int, taps: Sequence[int],
              storage_dtype: str) -> dict:
    """Everything the cached states depend on; its hash names the cache folder."""
    backbone = _backbone_of(backbone)
    return {
        "format": CACHE_FORMAT,
        **backbone_fingerprints(backbone),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": data_fingerprint(dataset),
        "examples": len(dataset),
        "max_length": int(max_length),
        "taps": [int(t) for t in sorted(set(taps))],
        "storage_dtype": storage_dtype,
    }


def _lengths(dataset: Dataset) -> np.ndarray:
    """Real tokens per example; the attention mask must be a run of ones (right padding or none)."""
    masks = dataset["attention_mask"][:]
    lengths = np.array([sum(m) for m in masks], dtype=np.int64)
    for i, (mask, n) in enumerate(zip(masks, lengths)):
        if n == 0 or not all(mask[:n]):
            raise ValueError(f"example {i}: the attention mask must start with its real tokens (right padding)")
    return lengths


class FeatureCache(StoredStates):
    """Backbone hidden states of one encoded dataset, memory-mapped from disk. Build with :meth:`build`."""

    FORMAT = CACHE_FORMAT
    WHAT = "feature cache"

    def array_names(self) -> list[str]:
        return [f"hidden_{t}" for t in self.taps] + ["last"]

    # -------------------------------------------------------------------------------------------------- build
    @classmethod
    def build(cls, backbone, dataset: Dataset, *, tokenizer, max_length: int, taps: Sequence[int],
              root: str | Path | None = None, storage_dtype: str | None = None, batch_size: int = 64,
              device: str | torch.device | None = None, progress: bool = True) -> "FeatureCache":
        """The cache of `dataset` under `backbone`: read from disk if this exact key exists, else computed once.

        `backbone`: a ``KAdapterModel`` or a Hugging Face encoder or causal LM; `dataset`: encoded examples with
        ``input_ids`` and ``attention_mask`` (unpadded or right-padded), optionally ``token_type_ids``.
        `storage_dtype`: None picks the backbone kind's safe default; float16 on a causal LM is an error.
        """
        kind = _kind_of(backbone)
        storage_dtype = kind.check_storage_dtype(storage_dtype)
        if len(dataset) == 0:
            raise ValueError("cannot cache features of an empty dataset")
        model = _backbone_of(backbone)
        depth = model.config.num_hidden_layers
        bad = [t for t in taps if not 0 <= t <= depth]
        if bad:
            raise ValueError(f"tap layer(s) {bad} out of range: the backbone has {depth} blocks, "
                             f"so hidden-state indices run from 0 (embeddings) to {depth}")
        widths = pc.list_value_length(dataset.with_format("arrow")[:].column("input_ids")).to_numpy()
        too_long = np.flatnonzero(widths > max_length)
        if len(too_long):
            raise ValueError(f"{len(too_long)} example(s) longer than max_length={max_length} (first: {too_long[0]})")
        key = cache_key(model, tokenizer, dataset, max_length, taps, storage_dtype)
        root = Path(root) if root is not None else default_cache_root()
        return cls.open_or_build(root, key, lambda directory: cls._compute(
            model, dataset, key, directory, batch_size, device, progress, kind))

    @staticmethod
    @torch.inference_mode()
    def _compute(model, dataset: Dataset, key: dict, directory: Path, batch_size: int, device, progress: bool,
                 kind=None):
        started = time.perf_counter()
        device = torch.device(device) if device is not None else next(model.parameters()).device
        model_device = next(model.parameters()).device
        model.to(device).eval()
        lengths = _lengths(dataset)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        np.save(directory / "lengths.npy", lengths)
        storage = STORAGE_DTYPES[key["storage_dtype"]]
        hidden = model.config.hidden_size
        names = {t: f"hidden_{t}" for t in key["taps"]}
        arrays = {name: np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=storage,
                                                  shape=(int(offsets[-1]), hidden))
                  for name in [*names.values(), "last"]}
        columns = [c for c in INPUT_COLUMNS if c in dataset.column_names]
        inputs = dataset.select_columns(columns)
        collate = PadCollator(pad_token_id=0)  # pad ids are masked out; their value does not matter
        order = np.argsort(-lengths, kind="stable")  # longest first: similar lengths share a batch
        for start in progress_bar(range(0, len(order), batch_size), disable=not progress,
                                  desc=f"backbone features: {len(order)} sequences, taps {list(key['taps'])}"):
            index = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([inputs[int(i)] for i in index]).items()}
            hidden_states, last = (kind or kind_of(model)).run(model, **batch)
            states = {**{names[t]: hidden_states[t] for t in names}, "last": last}
            for name, tensor in states.items():
                # numpy has no bfloat16: bf16 storage keeps the raw bits; otherwise go through float32, which
                # holds any backbone dtype exactly (a bf16 backbone's states cannot call .numpy() themselves)
                tensor = tensor.to(torch.bfloat16).view(torch.int16) if storage is np.uint16 else tensor.float()
                values = tensor.cpu().numpy()
                if storage is not np.uint16:
                    values = values.astype(storage, copy=False)
                for row, i in enumerate(index):
                    arrays[name][offsets[i]:offsets[i + 1]] = values[row, :lengths[i]]
        for array in arrays.values():
            array.flush()
        del arrays
        model.to(model_device)
        write_meta(directory, key, int(offsets[-1]), hidden, seconds=round(time.perf_counter() - started, 3))

    # --------------------------------------------------------------------------------------------------- read
    def _read(self, name: str, indices: Sequence[int], width: int, dtype: torch.dtype) -> torch.Tensor:
        array = self._arrays[name]
        out = np.zeros((len(indices), width, array.shape[1]), dtype=array.dtype)
        for row, i in enumerate(indices):
            out[row, :self.lengths[i]] = array[self.offsets[i]:self.offsets[i + 1]]
        tensor = torch.from_numpy(out)
        if array.dtype == np.uint16:  # bf16 stored as raw bits
            tensor = tensor.view(torch.int16).view(torch.bfloat16)
        return tensor.to(dtype)

    def features(self, indices: Sequence[int], dtype: torch.dtype = torch.float32,
                 pad_to: int | None = None) -> BackboneFeatures:
        """The backbone features of examples `indices`, padded to the longest (or to `pad_to`)."""
        indices = [int(i) for i in indices]
        width = max(int(self.lengths[i]) for i in indices) if pad_to is None else pad_to
        mask = torch.zeros(len(indices), width, dtype=torch.long)
        for row, i in enumerate(indices):
            mask[row, :self.lengths[i]] = 1
        return BackboneFeatures(
            hidden_states={t: self._read(f"hidden_{t}", indices, width, dtype) for t in self.taps},
            last_hidden_state=self._read("last", indices, width, dtype),
            attention_mask=mask,
        )


# -------------------------------------------------------------------------------------------- training data
class CachedDataset(torch.utils.data.Dataset):
    """The task columns of an encoded dataset (labels, marker positions...), each row tagged with its index in
    the cache; :class:`CachedCollator` turns a list of rows into ``{"features": BackboneFeatures, ...}``."""

    def __init__(self, cache: FeatureCache, dataset: Dataset, columns: Sequence[str] | None = None):
        if len(cache) != len(dataset):
            raise ValueError(f"the cache holds {len(cache)} examples, the dataset {len(dataset)}")
        skip = set(INPUT_COLUMNS) | {"truncated", "n_dropped_labels"}
        columns = [c for c in (columns or dataset.column_names) if c not in skip]
        self.cache = cache
        self.rows = dataset.select_columns(columns) if columns else None

    def __len__(self) -> int:
        return len(self.cache)

    def fingerprint(self) -> str:
        """What these rows hold: the cache's key (backbone, encoded inputs, ...) and the task columns' content."""
        from .checkpoints import data_fingerprint

        rows = data_fingerprint(self.rows) if self.rows is not None else ""
        return hashlib.sha256(f"{_digest(self.cache.key)}:{rows}".encode()).hexdigest()[:16]

    def __getitem__(self, index: int) -> dict:
        row = self.rows[int(index)] if self.rows is not None else {}
        return {"cache_index": int(index), **row}

    def __getitems__(self, indices: list[int]) -> list[dict]:
        rows = self.rows[[int(i) for i in indices]] if self.rows is not None else {}
        return [{"cache_index": int(i), **{k: v[j] for k, v in rows.items()}} for j, i in enumerate(indices)]


class CachedCollator:
    """Collate cached rows: features read from the memory map, other fields padded by :class:`PadCollator`."""

    def __init__(self, cache: FeatureCache, dtype: torch.dtype = torch.float32, pad_token_id: int = 0):
        self.cache, self.dtype = cache, dtype
        self.pad = PadCollator(pad_token_id)

    def __call__(self, rows: Sequence[Mapping]) -> dict:
        indices = [r["cache_index"] for r in rows]
        rest = [{k: v for k, v in r.items() if k != "cache_index"} for r in rows]
        batch = self.pad(rest) if rest and rest[0] else {}
        features = self.cache.features(indices, self.dtype)
        labels, width = batch.get("labels"), features.attention_mask.shape[1]
        if labels is not None and labels.dtype == torch.long and labels.dim() == 2 and labels.shape[1] > width:
            # per-token labels of a padded dataset: the cache keeps real tokens only
            if (labels[:, width:] != -100).any():
                raise ValueError("per-token labels beyond the real tokens")
            batch["labels"] = labels[:, :width]
        return {"features": features, **batch}
