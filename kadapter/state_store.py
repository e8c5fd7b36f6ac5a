"""Folders of frozen-backbone states on disk: one identity, one layout and one build protocol for every such cache —
the feature cache of :mod:`kadapter.cache` (encoders and causal LMs, for adapter training) and the causal-LM states
of :mod:`kadapter.probing.states` (for probing).

Identity: :func:`backbone_fingerprints` (the backbone's weights and config fingerprints of :mod:`kadapter.backbone`,
recomputed after any in-place change of the weights) plus what each cache adds (data, taps, dtype); the folder is
named by :func:`key_digest` of that key, so any change gives another folder and stale states are never read.

Layout: ``<root>/<digest>/meta.json`` (``key``, ``tokens``, ``hidden_size``, ...), ``lengths.npy`` (real tokens per
sequence) and one flat ``(tokens, hidden)`` ``.npy`` per stored state, memory-mapped on reading.

Build: written into ``.<digest>.tmp-<pid>`` and renamed into place when complete (meta.json written last), so an
interrupted build leaves nothing that looks finished; the temporary folders of builds whose process is gone are
removed by the next build; a damaged folder (a truncated array, a missing or broken meta.json) is an error naming the
file on reading, and :meth:`StoredStates.open_or_build` says so, naming the folder, and rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from .backbone import config_fingerprint, weights_fingerprint
from .safe_files import DamagedFileError, load_npy, read_json

META_NAME = "meta.json"
LENGTHS_NAME = "lengths.npy"
_TMP_NAME = re.compile(r"^\.(?P<key>[0-9a-f]+)\.tmp-(?P<pid>\d+)$")


def backbone_fingerprints(backbone) -> dict[str, str]:
    """What every cache of a backbone's states keys on: its weights fingerprint (names, shapes, values; recomputed
    when a tensor changes in place or is copied) and its config fingerprint."""
    return {"backbone_weights": weights_fingerprint(backbone), "backbone_config": config_fingerprint(backbone.config)}


def key_digest(key: Mapping) -> str:
    """The folder name of a cache key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_builds(root: str | Path, what: str = "feature-cache") -> list[Path]:
    """Delete the temporary folders (``.<key>.tmp-<pid>``) that killed builds left under ``root``; returns them.

    A folder whose process is still running is a build in progress and is left alone."""
    root = Path(root)
    removed = []
    for path in root.glob(".*.tmp-*") if root.is_dir() else ():
        match = _TMP_NAME.match(path.name)
        if match and path.is_dir() and int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            warnings.warn(f"removed {path}: the temporary folder of a {what} build whose process "
                          f"({match['pid']}) is gone", stacklevel=3)
            removed.append(path)
    return removed


def write_meta(directory: Path, key: Mapping, tokens: int, hidden_size: int, **extra) -> None:
    """meta.json of a finished build; written last, so its presence means every array is complete."""
    meta = {"key": dict(key), "tokens": int(tokens), "hidden_size": int(hidden_size), **extra}
    (Path(directory) / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")


class StoredStates:
    """One folder of stored states, checked on opening: meta.json complete, the lengths and every array readable and
    of the shape meta.json states. Subclasses name their arrays (:meth:`array_names`) and say what they are."""

    FORMAT = 1
    WHAT = "stored states"  # how warnings and errors name this kind of folder

    def __init__(self, directory: str | Path, hit: bool = False):
        self.path = Path(directory)
        meta_path = self.path / META_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: not a complete {self.WHAT} folder")
        self.meta = read_json(meta_path, required=("key", "tokens", "hidden_size"))
        key = self.meta["key"]
        if not isinstance(key, dict) or not {"format", "taps"} <= set(key):
            raise DamagedFileError(meta_path, f"field 'key' incomplete: not the meta.json of {self.WHAT}")
        if key["format"] != self.FORMAT:
            raise ValueError(f"{self.path}: {self.WHAT} format {key['format']}, expected {self.FORMAT}")
        self.hit = hit  # True when open_or_build found it already on disk
        self.taps: tuple[int, ...] = tuple(int(t) for t in key["taps"])
        lengths_path = self.path / LENGTHS_NAME
        self.lengths = load_npy(lengths_path)
        if self.lengths.ndim != 1 or self.lengths.dtype.kind not in "iu" or (self.lengths < 0).any():
            raise DamagedFileError(lengths_path, f"not a list of sequence lengths (dtype {self.lengths.dtype}, "
                                                 f"shape {self.lengths.shape})")
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        shape = (int(self.meta["tokens"]), int(self.meta["hidden_size"]))
        if int(self.offsets[-1]) != shape[0]:
            raise DamagedFileError(lengths_path, f"{int(self.offsets[-1])} tokens, meta.json says {shape[0]}")
        self._arrays = {name: load_npy(self.path / f"{name}.npy", mmap_mode="r") for name in self.array_names()}
        for name, array in self._arrays.items():
            if array.shape != shape:
                raise DamagedFileError(self.path / f"{name}.npy", f"shape {array.shape}, meta.json says {shape}")

    def array_names(self) -> list[str]:
        """The stored arrays besides the lengths (file names without ``.npy``)."""
        raise NotImplementedError

    @property
    def key(self) -> dict:
        return self.meta["key"]

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    @classmethod
    def open_or_build(cls, root: str | Path, key: Mapping, write: Callable[[Path], None]):
        """The folder of ``key`` under ``root``: opened when it is there and complete, else built by
        ``write(temporary folder)`` and renamed into place. A damaged folder is named in a warning and rebuilt."""
        root = Path(root)
        remove_stale_builds(root, cls.WHAT)
        final = root / key_digest(key)
        if final.is_dir():
            try:
                found = cls(final, hit=True)
            except (DamagedFileError, FileNotFoundError) as err:
                # a finished folder is renamed into place whole: a part missing or cut short means damage
                warnings.warn(f"{cls.WHAT} {final} is damaged ({err}); rebuilding it", stacklevel=3)
                shutil.rmtree(final, ignore_errors=True)
            else:
                if found.key != dict(key):  # a hash collision or a tampered folder: never read it as this data
                    raise ValueError(f"{final} holds {cls.WHAT} of other data (key mismatch)")
                return found
        tmp = root / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            if not (tmp / META_NAME).is_file():
                raise RuntimeError(f"{cls.WHAT} build into {tmp} wrote no {META_NAME}")
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same folder first: theirs is identical
                if not (final / META_NAME).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(final, hit=False)
