"""Where the real data lives. ``$KADAPTER_DATA`` overrides the default ``<repo>/../shared/data``."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "KADAPTER_DATA"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The folder holding the shared data sets (see its README.md)."""
    root = Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else _REPO_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        raise FileNotFoundError(
            f"data folder {root} not found; put the shared data beside the repository "
            f"or point ${ENV_VAR} at it"
        )
    return root


def data_path(*parts: str) -> Path:
    """A path inside :func:`data_root`, checked to exist."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist under the data root {data_root()}")
    return path
