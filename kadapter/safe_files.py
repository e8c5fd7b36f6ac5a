"""Reading the files kadapter writes — JSON configs, safetensors weights, torch checkpoints, numpy arrays — so that a
truncated or damaged file is an error naming that file (and the line or field), never a bare ``SafetensorError``,
``EOFError``, ``JSONDecodeError`` or ``KeyError`` from the library underneath.

Also the two rules for what the kit writes: names read from its files (adapters, probes) are plain names, never
paths (:func:`check_name`); and files get the ordinary permissions of the user's umask, as ``open()`` gives them
(:func:`save_safetensors`, :func:`ordinary_permissions`), not the private 0600 that safetensors leaves.
"""
from __future__ import annotations

import json
import os
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


# --------------------------------------------------------------------------------------------------------- names
def check_name(name: Any, *, what: str, source: str | Path | None = None, field: str | None = None) -> str:
    """``name`` if it is a plain name (one folder or file name, e.g. an adapter's); else an error.

    Names become folders inside a folder the kit owns (``<model>/adapters/<name>``, ``<probe set>/probes/<folder>``),
    so an absolute path, ``..``, ``.``, a path separator or a NUL byte would read or write outside it. ``source`` and
    ``field``: the file the name was read from and where in it (the error is then a :class:`DamagedFileError`).
    """
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "an empty or non-text name"
    elif name in (".", "..") or "/" in name or "\\" in name or "\0" in name or (os.altsep and os.altsep in name) \
            or Path(name).is_absolute():
        problem = "a path, not a name (no '/', '\\', '.', '..' or absolute paths)"
    if problem is None:
        return name
    message = f"{what} name {name!r} is {problem}"
    if source is None:
        raise ValueError(message)
    raise DamagedFileError(source, (f"field '{field}': " if field else "") + message)


# ------------------------------------------------------------------------------------------ killed writers' leftovers
def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a temporary folder named by the pid of a gone process is a killed build's
    leftover and may be removed; a live one's is work in progress."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


# ---------------------------------------------------------------------------------------------------- file modes
def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # elsewhere: set and restore at once (not thread-safe, but only a mode is at stake)
    os.umask(current)
    return current


def ordinary_permissions(path: str | Path) -> Path:
    """Give ``path`` (a file, or a folder and everything in it) the mode ``open()``/``mkdir`` would have given it
    under the current umask: 0666 / 0777 minus the umask (0644 / 0755 under the usual 022).

    safetensors writes a private temporary file and renames it, so its files (and every Hugging Face
    ``save_pretrained`` weights file) come out 0600: another user of a shared cache or run folder then sees a
    complete folder and gets ``Permission denied``."""
    path = Path(path)
    mask = umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        if item.is_symlink():
            continue
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)
    return path


def save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` with the ordinary permissions (:func:`ordinary_permissions`)."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    return ordinary_permissions(path)
