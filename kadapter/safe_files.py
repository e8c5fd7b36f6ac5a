"""Reading the files kadapter writes — JSON configs, safetensors weights, torch checkpoints, numpy arrays — so that a
truncated or damaged file is an error naming that file (and the line or field), never a bare ``SafetensorError``,
``EOFError``, ``JSONDecodeError`` or ``KeyError`` from the library underneath.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch


class DamagedFileError(ValueError):
    """A file kadapter wrote cannot be read back: truncated, damaged, or edited into something else."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


def read_json(path: str | Path, *, required: tuple[str, ...] = ()) -> Any:
    """A JSON file's content; ``required`` top-level fields must be present. Errors name file, line and field."""
    path = Path(path)
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DamagedFileError(path, f"not UTF-8 text (byte {err.start}): the file is damaged") from None
    except json.JSONDecodeError as err:
        problem = "the file is empty" if not err.doc.strip() else \
            f"not valid JSON at line {err.lineno}, column {err.colno} ({err.msg})"
        raise DamagedFileError(path, f"{problem}: truncated or damaged") from None
    missing = [name for name in required if not isinstance(payload, dict) or name not in payload]
    if missing:
        raise DamagedFileError(path, f"field '{missing[0]}' missing: not a complete kadapter file")
    return payload


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; a truncated or damaged file raises :class:`DamagedFileError`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - SafetensorError, OSError, struct errors: all mean "cannot read it"
        raise DamagedFileError(path, f"cannot read the safetensors weights ({type(err).__name__}: {err}); "
                                     "the file is truncated or damaged — save it again") from None
    return tensors, metadata


def load_torch(path: str | Path, *, weights_only: bool = True) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors and plain values only, so a file holding
    anything else (a planted pickle, which would run code on loading) is refused before any of it runs. A refused,
    truncated or damaged file raises :class:`DamagedFileError` naming it. ``weights_only=False`` is refused: there
    is no unpickling reader in the kit."""
    if weights_only is not True:
        raise ValueError("kadapter reads torch files weights-only: unpickling a file can run any code in it")
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - RuntimeError, EOFError, UnpicklingError, zip errors
        if "weights only load failed" in str(err).lower():
            raise DamagedFileError(path, "refused: it holds Python objects besides tensors and plain values, which "
                                         "only unpickling (running code from the file) could read — not a file "
                                         "kadapter wrote, or one from an older kadapter; it was not loaded") from None
        raise DamagedFileError(path, f"cannot read the torch file ({type(err).__name__}: {err}); "
                                     "it is truncated or damaged") from None


def load_npy(path: str | Path, *, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` of one ``.npy`` array; a truncated or damaged file raises :class:`DamagedFileError` naming it."""
    path = Path(path)
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - ValueError("mmap length ..."), EOFError, header errors
        raise DamagedFileError(path, f"cannot read the array ({type(err).__name__}: {err}); "
                                     "it is truncated or damaged") from None
