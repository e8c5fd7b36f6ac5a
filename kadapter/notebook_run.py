"""Run one notebook headless with papermill — never silently, never forever, never with a cut-off error.

:func:`execute_notebook` is the one way the pipeline and the tests execute a notebook. Around
``papermill.execute_notebook`` it:

- checks the parameters against the notebook's ``parameters`` cell first: a misspelt name or a value of the wrong
  kind (a string where the notebook expects a list, text for a number) is refused before any kernel starts;
- bounds the wait: ``start_timeout`` for the kernel to come up, ``execution_timeout`` seconds per cell; a kernel
  that dies or goes silent fails the call with :class:`NotebookTimeout` naming the notebook and the cell;
- on a failing cell raises :class:`NotebookError` with what actually went wrong in the notebook (the exception's
  type and message and the last lines of its traceback), not papermill's wrapper;
- says what is happening: one line per code cell (``[02_adapter_pretraining] cell 7/23: ...``) and the cells' own
  printed lines, through ``log``;
- gives the kernel ``KADAPTER_PROGRESS=plain`` (progress as plain lines, no widget bars frozen into the saved
  notebook) and keeps the kernel's own start-up warnings (``Kernel is running over TCP without encryption``) off
  the terminal.
"""
from __future__ import annotations

import ast
import asyncio
import difflib
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from typing import Callable

import papermill
from jupyter_core.utils import ensure_async
from nbclient.client import timestamp as _timestamp
from nbclient.exceptions import CellExecutionComplete, CellTimeoutError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.log import logger as papermill_logger
from papermill.utils import merge_kwargs, remove_args

ENGINE_NAME = "kadapter"
TRACEBACK_LINES = 12  # how much of a non-IPython traceback an error carries
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookError(RuntimeError):
    """A notebook failed: which notebook, which cell (``"7/23"``: the 7th of 23 code cells, as the progress
    lines count them), and the exception the cell raised."""

    def __init__(self, notebook: str | Path, cell: str | None, ename: str, evalue: str,
                 traceback: list[str] | None = None, source: str = ""):
        self.notebook, self.cell, self.ename, self.evalue = str(notebook), cell, ename, evalue
        self.traceback, self.source = list(traceback or []), source
        where = f"{Path(self.notebook).name}" + (f", cell {cell}" if cell is not None else "")
        first = source.strip().splitlines()[0][:80] if source.strip() else ""
        lines = [f"{where}{f' ({first})' if first else ''}: {ename}: {evalue}"]
        if self.traceback:
            lines += ["  where (the notebook's traceback, last frames):"] + [f"    {line}" for line in self.traceback]
        super().__init__("\n".join(lines))

    @property
    def summary(self) -> str:
        """``"<notebook>, cell N: Type: message"``: the first line of the error."""
        return str(self).splitlines()[0]


class NotebookTimeout(NotebookError):
    """The kernel did not start, a cell ran past its time, or the kernel died or stopped answering."""


class NotebookParameterError(ValueError):
    """A parameter the notebook does not declare, or of another kind than its default."""


# ----------------------------------------------------------------------------------------------- parameters
def declared_parameters(notebook: str | Path) -> dict[str, dict]:
    """The notebook's ``parameters`` cell as papermill reads it: ``{name: {"default": source text, ...}}``."""
    return papermill.inspect_notebook(str(notebook))


def _kind(default_source: str):
    """The Python type of a parameter's default (from its source text), or None when it says nothing (None,
    an expression)."""
    try:
        value = ast.literal_eval(default_source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return None if value is None else type(value)


def check_parameters(notebook: str | Path, parameters: dict | None) -> None:
    """Refuse names the notebook's parameters cell does not declare, values of another kind than the default, and
    values outside a parameter's type or range in :data:`kadapter.notebook_parameters.SCHEMA` (which also types the
    parameters whose default is None).

    ``None`` is accepted where the notebook reads it as "use the default / not set" (every parameter the schema does
    not mark otherwise); an int is accepted where a float is expected; a list where a tuple is, and the other way
    round.
    """
    if not parameters:
        return
    from .notebook_parameters import Spec, problem, spec_for

    declared = declared_parameters(notebook)
    name = Path(notebook).name
    problems = []
    for key, value in parameters.items():
        if key not in declared:
            close = difflib.get_close_matches(key, declared, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it declares {sorted(declared)}"
            problems.append(f"unknown parameter {key!r}{hint}")
            continue
        default = declared[key].get("default", "None")
        spec = spec_for(Path(notebook).stem, key) or Spec()
        said = problem(spec, value, _kind(default))
        if said:
            like = f" (its default is {default})" if spec.kind is None and said.startswith("expected") else ""
            problems.append(f"parameter {key!r}: {said}{like}")
    if problems:
        raise NotebookParameterError(f"{name}: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------- engine
class _Tracker:
    """Which cell runs now (for errors) and a line per code cell (for the user)."""

    def __init__(self, label: str, log: Callable[[str], None]):
        self.label, self.log = label, log
        self.index: int | None = None  # index in the notebook's cells of the code cell running now
        self.code: list[int] = []  # indices of the code cells
        self.source = ""
        self.started = time.perf_counter()

    def cell_start(self, nb, index: int) -> None:
        cell = nb.cells[index]
        if cell.cell_type != "code":
            return
        self.code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        self.index, self.source = index, cell.source
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        self.log(f"[{self.label}] cell {self.number(index)} "
                 f"({time.perf_counter() - self.started:.0f} s): {first[:90]}")


    def number(self, index: int | None) -> str | None:
        """``"7/23"``: the code cell at notebook index ``index`` as the progress lines count it."""
        if index is None:
            return None
        if index in self.code:
            return f"{self.code.index(index) + 1}/{len(self.code)}"
        return f"index {index}"


# How long one wait on a kernel socket may last before the socket is looked at directly (seconds). Why: nbclient
# waits for a cell's execute-reply with ONE read of the shell channel for the whole cell timeout, and that read
# only wakes when pyzmq's asyncio integration sees the socket's edge-triggered file descriptor fire. When that
# wake-up is lost (it happened under load on the notebook 05 widget cell, whose many widget messages keep the
# client busy: jupyter/nbclient #312, pyzmq #1558), the reply sits in the socket and the read returns only when its
# timeout ends, because a timed-out pyzmq poll ends with a direct, level-triggered zmq_poll that does see it.
# Waiting in short slices makes that direct look happen every second: a lost wake-up costs at most one slice.
SOCKET_POLL_INTERVAL = 1.0


class _Client(PapermillNotebookClient):
    """papermill's notebook client, whose waits for the kernel's messages never depend on one socket wake-up.

    The two waits nbclient makes per cell — the execute-reply on the shell channel and the cell's output on the
    iopub channel — read in slices of :data:`SOCKET_POLL_INTERVAL` seconds; the cell timeout and the dead-kernel
    check behave as in nbclient (jupyter/nbclient PR #311 proposes the same idea upstream). After the reply, the
    cell's queued output is awaited while it keeps coming: ``iopub_timeout`` bounds the silence, not the whole backlog
    (an Output widget's cell can leave seconds of messages to process under load, each answered on the shell
    channel by nbclient's widget mimic), and the cell timeout bounds the rest.
    """

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:  # the cell ran too long: nbclient's own handling
                task_poll_kernel_alive.cancel()
                await self._async_check_alive()
                msg = await self._async_handle_timeout(timeout, cell)  # raises unless interrupt_on_timeout
                msg["parent_header"] = {"msg_id": msg_id}
            else:
                try:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(
                        timeout=SOCKET_POLL_INTERVAL if remaining is None else min(SOCKET_POLL_INTERVAL, remaining)))
                except Empty:
                    continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue  # a reply to another request
            if self.record_timing:
                cell["metadata"]["execution"]["shell.execute_reply"] = _timestamp(msg)
            try:
                await self._await_outputs(task_poll_output_msg, cell, deadline)
            finally:
                task_poll_kernel_alive.cancel()
            return msg

    async def _await_outputs(self, task_poll_output_msg, cell, deadline: float | None) -> None:
        """The reply came: wait for the cell's last outputs while they keep arriving (see the class)."""
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(task_poll_output_msg), SOCKET_POLL_INTERVAL)
                return
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            if now - self._last_output < self.iopub_timeout and (deadline is None or now < deadline):
                continue
            task_poll_output_msg.cancel()
            if self.raise_on_iopub_timeout:
                raise CellTimeoutError.error_from_timeout_and_cell(
                    "Timeout waiting for IOPub output", self.iopub_timeout, cell) from None
            self.log.warning("Timeout waiting for IOPub output")
            return

    _last_output = 0.0  # when the running cell's last iopub message was handled (monotonic seconds)

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        self._last_output = time.monotonic()
        while True:
            try:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=SOCKET_POLL_INTERVAL))
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)  # raises CellExecutionComplete at the end
                except CellExecutionComplete:
                    return
                finally:
                    self._last_output = time.monotonic()


class _Engine(NBClientEngine):
    """papermill's nbclient engine running :class:`_Client`, telling a :class:`_Tracker` when each cell starts."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, tracker: _Tracker | None = None, log_output=False,
                                 stdout_file=None, stderr_file=None, start_timeout=60, execution_timeout=None,
                                 **kwargs):
        if tracker is not None:
            original = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                tracker.cell_start(nb_man.nb, cell_index)
                return original(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
        # as papermill's NBClientEngine.execute_managed_notebook, with our client
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=papermill_logger, log_output=log_output,
                             stdout_file=stdout_file, stderr_file=stderr_file)
        return _Client(nb_man, **final).execute()


papermill_engines.register(ENGINE_NAME, _Engine)


class _LineWriter:
    """A file-like sink for the cells' printed output: complete lines go to ``log`` with a prefix."""

    def __init__(self, label: str, log: Callable[[str], None]):
        self.label, self.log, self.pending = label, log, ""

    def write(self, text: str) -> None:
        self.pending += text.replace("\r", "\n")
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.log(f"[{self.label}]   {line}")

    def flush(self) -> None:
        if self.pending.strip():
            self.log(f"[{self.label}]   {self.pending}")
        self.pending = ""


@contextmanager
def _kernel_env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _clean(lines: list[str]) -> list[str]:
    return [line for text in lines for line in _ANSI.sub("", text).splitlines() if line.strip()]


_FRAME = re.compile(r"^(Cell In\[|Input In \[|File )")
_ARROW = re.compile(r"^\s*-*>\s*\d+\s?(.*)$")


def _traceback_tail(traceback: list[str], frames: int = 4) -> list[str]:
    """The last exception's frames, compactly: ``File …/backbone.py:34, in load_backbone(…): model = …``.

    Only the last chained exception counts (the one the cell raised); frames in the notebook's own cells are always
    kept, library frames only the last ``frames``."""
    lines = _clean(traceback)
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    section = lines[starts[-1] + 1:] if starts else lines
    found: list[list[str]] = []
    for line in section:
        if _FRAME.match(line):
            found.append([line.strip()[:160], ""])
        elif found and not found[-1][1] and _ARROW.match(line):
            found[-1][1] = _ARROW.match(line).group(1).strip()[:120]
    if not found:  # not an IPython traceback: its last lines
        return lines[-TRACEBACK_LINES:]
    keep = [i for i, (head, _) in enumerate(found) if head.startswith(("Cell In", "Input In"))]
    keep = sorted(set(keep) | set(range(max(0, len(found) - frames), len(found))))
    return [f"{found[i][0]}: {found[i][1]}" if found[i][1] else found[i][0] for i in keep]


def _cell_error(output_path: Path, tracker: _Tracker) -> tuple[int | None, str, str, list[str]]:
    """(cell, type, message, traceback tail) of the first error output in the executed notebook, if any."""
    try:
        import nbformat

        nb = nbformat.read(str(output_path), as_version=4)
    except Exception:  # noqa: BLE001 - the notebook may not have been written at all
        return tracker.index, "", "", []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return (index, output.get("ename", ""), output.get("evalue", ""),
                        _traceback_tail(output.get("traceback", [])))
    return tracker.index, "", "", []


# -------------------------------------------------------------------------------------------------- entry
def execute_notebook(input_path: str | Path, output_path: str | Path, parameters: dict | None = None, *,
                     cwd: str | Path | None = None, kernel_name: str = "python3", start_timeout: float = 120,
                     execution_timeout: float | None = 1800, log: Callable[[str], None] | None = print,
                     label: str | None = None, check: bool = True):
    """Execute ``input_path`` with ``parameters`` into ``output_path``; returns the executed notebook.

    ``execution_timeout``: seconds any one cell may run (None: no limit — avoid). ``log``: where progress lines
    go (``None``: nowhere). ``label``: the name in progress lines and errors (default: the notebook's stem).
    ``check``: validate ``parameters`` against the notebook's parameters cell first
    (:class:`NotebookParameterError`). Raises :class:`NotebookError` when a cell fails and
    :class:`NotebookTimeout` when the kernel does not start, a cell runs too long or the kernel dies.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    label = label or input_path.stem
    parameters = dict(parameters or {})
    if check:
        check_parameters(input_path, parameters)
    say = log or (lambda line: None)
    tracker = _Tracker(label, say)
    writer = _LineWriter(label, say)
    try:
        with _kernel_env(KADAPTER_PROGRESS="plain", PYTHONUNBUFFERED="1"):
            return papermill.execute_notebook(
                str(input_path), str(output_path), parameters=parameters, engine_name=ENGINE_NAME,
                kernel_name=kernel_name, cwd=str(cwd) if cwd is not None else None, progress_bar=False,
                start_timeout=start_timeout, execution_timeout=execution_timeout, tracker=tracker,
                stdout_file=writer, stderr_file=writer,
                # the kernel's own log (e.g. "Kernel is running over TCP without encryption") stays quiet
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
    except PapermillExecutionError as error:
        tail = _traceback_tail(error.traceback)
        raise NotebookError(output_path, tracker.number(error.cell_index), error.ename, error.evalue, tail,
                            source=error.source) from None
    except NotebookError:
        raise
    except Exception as error:  # noqa: BLE001 - nbclient / jupyter_client failures: timeouts, dead kernels
        name = type(error).__name__
        text = str(error).strip().splitlines()[0] if str(error).strip() else name
        timeout = name in ("CellTimeoutError", "DeadKernelError", "TimeoutError") or "timeout" in name.lower() \
            or "didn't respond" in str(error) or "Kernel died" in str(error)
        if tracker.index is None and ("didn't respond" in str(error) or name == "TimeoutError"):
            raise NotebookTimeout(output_path, None, name,
                                  f"the kernel did not start within {start_timeout} s ({text})") from error
        cell, ename, evalue, tail = _cell_error(output_path, tracker)
        if name == "CellTimeoutError" and "IOPub" in str(error):
            ename, evalue = name, "the cell finished, but its output stopped arriving before the kernel said it was done"
        elif name == "CellTimeoutError":
            ename, evalue = name, f"the cell ran longer than the execution timeout of {execution_timeout} s"
        elif name == "DeadKernelError":
            ename, evalue = name, "the kernel died while the cell ran (killed, out of memory, or crashed)"
        else:
            evalue = evalue or text
        cls = NotebookTimeout if timeout else NotebookError
        raise cls(output_path, tracker.number(cell if cell is not None else tracker.index), ename or name, evalue,
                  tail[-TRACEBACK_LINES:], source=tracker.source) from error
    finally:
        writer.flush()
