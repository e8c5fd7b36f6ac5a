"""Progress that reads well wherever the code runs.

``progress_bar`` is a tqdm-like object (iterate over it, ``.update()``, ``.set_postfix()``, ``.set_description()``,
``.write()``, ``.close()``, context manager). What it shows depends on where it runs:

* a live front end (JupyterLab, a terminal): a live ``tqdm.auto`` bar (a widget in JupyterLab);
* ``KADAPTER_PROGRESS=plain`` (set by the notebook runner for papermill and the pipeline), or no live front end
  (output going to a file or a pipe): plain text lines on stdout, at most one every
  ``KADAPTER_PROGRESS_INTERVAL`` seconds (default 10) per bar plus one closing line, e.g.
  ``[train openentity · F+L · seed 0] 12/40 (30%) 8.1 s, loss=0.4312``. A saved notebook keeps these lines, not a
  bar frozen at 0%.

``KADAPTER_PROGRESS`` values: ``plain``; ``bar`` (always a tqdm bar); ``off`` (nothing, not even closing lines);
unset or ``auto``: as above. ``progress_log(message)`` prints one plain line (any mode but ``off``).
Where progress is not a live bar, :func:`quiet_library_bars` (called when kadapter is imported) also turns off the
Hugging Face libraries' own bars (weights loading, ``datasets`` map...), which would be saved as frozen widgets.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping

ENV = "KADAPTER_PROGRESS"
INTERVAL_ENV = "KADAPTER_PROGRESS_INTERVAL"
MODES = ("auto", "plain", "bar", "off")
DEFAULT_INTERVAL = 10.0


def progress_mode() -> str:
    """``"plain"``, ``"bar"`` or ``"off"``: what :func:`progress_bar` shows here and now."""
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"environment variable {ENV}={os.environ[ENV]!r}: expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    return "bar" if _live_front_end() else "plain"


def _live_front_end() -> bool:
    """A Jupyter kernel (a front end may be watching: widgets render live) or a terminal on stderr."""
    shell = sys.modules.get("IPython") and _ipython_shell()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _ipython_shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {INTERVAL_ENV}={raw!r}: expected seconds (a number)") from None
    if value < 0:
        raise ValueError(f"environment variable {INTERVAL_ENV}={raw!r}: expected seconds >= 0")
    return value


def quiet_library_bars() -> None:
    """Turn off the progress bars of huggingface_hub, transformers and datasets unless progress is a live bar here
    (a bad ``KADAPTER_PROGRESS`` is left for :func:`progress_bar` to report)."""
    try:
        if progress_mode() == "bar":
            return
    except ValueError:
        return
    import importlib

    for module, call in (("huggingface_hub.utils", "disable_progress_bars"),
                         ("transformers.utils.logging", "disable_progress_bar"),
                         ("datasets", "disable_progress_bars")):
        try:
            getattr(importlib.import_module(module), call)()
        except (ImportError, AttributeError):
            pass


def progress_log(message: str) -> None:
    """One plain line saying what is happening (stdout, flushed); nothing when ``KADAPTER_PROGRESS=off``."""
    if os.environ.get(ENV, "").strip().lower() == "off":
        return
    print(message, flush=True)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class PlainProgress:
    """The plain-text progress object: same calls as tqdm, throttled lines on stdout."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 initial: int = 0, disable: bool = False, interval: float | None = None, unit: str = "it",
                 **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total, self.desc, self.n, self.unit = total, desc or "", int(initial), unit
        self.disable = disable or os.environ.get(ENV, "").strip().lower() == "off"
        self.interval = _interval() if interval is None else interval
        self.postfix: dict[str, str] = {}
        self.start = time.monotonic()
        self.last_print = self.start
        self.closed = False

    # --------------------------------------------------------------------------------------------- tqdm calls
    def __iter__(self):
        if self.iterable is None:
            raise TypeError("progress_bar(...) was given no iterable to iterate over")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress bar has no total")
        return self.total

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        finished = self.total is not None and self.n >= self.total  # the closing line says it
        if not self.disable and not finished and now - self.last_print >= self.interval:
            self.last_print = now
            print(self.line(now), flush=True)

    def set_postfix(self, ordered_dict: Mapping | None = None, refresh: bool = True, **kwargs) -> None:
        items = {**(dict(ordered_dict) if ordered_dict else {}), **kwargs}
        self.postfix = {str(k): _fmt(v) for k, v in items.items()}

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = {"": s} if s else {}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def write(self, message: str, file=None, end: str = "\n") -> None:
        if not self.disable:
            print(message, end=end, file=file or sys.stdout, flush=True)

    def refresh(self) -> None:
        pass

    def reset(self, total: int | None = None) -> None:
        self.n, self.start = 0, time.monotonic()
        if total is not None:
            self.total = total

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.disable:
            print(self.line(time.monotonic(), closing=True), flush=True)

    # ------------------------------------------------------------------------------------------------- text
    def line(self, now: float, closing: bool = False) -> str:
        parts = [f"[{self.desc}]" if self.desc else "[progress]"]
        if self.total:
            parts.append(f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)")
        else:
            parts.append(f"{self.n} {self.unit}")
        elapsed = now - self.start
        tail = f"{elapsed:.1f} s"
        if not closing and self.total and self.n:
            tail += f", ~{elapsed / self.n * (self.total - self.n):.0f} s left"
        if closing:
            tail = ("done in " if self.total is None or self.n >= self.total else "stopped after ") + tail
        parts.append(tail)
        line = " ".join(parts)
        if self.postfix:
            line += ", " + ", ".join(f"{k}={v}" if k else v for k, v in self.postfix.items())
        return line


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None, **kw):
    """A tqdm-like progress object: a live ``tqdm.auto`` bar where a front end shows it, plain throttled text
    lines otherwise (see the module docstring). Takes tqdm's keyword arguments (``disable``, ``initial``,
    ``leave``...); plain mode ignores the ones about drawing."""
    mode = progress_mode()
    if mode == "bar":
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, **kw)
    if mode == "off":
        kw["disable"] = True
    return PlainProgress(iterable, total=total, desc=desc, **kw)
