"""A pipeline run folder: its lock, its JSON records written atomically and read back safely, its stages' output
folders emptied before they run, and the run's status from every recorded stage (see :mod:`kadapter.pipeline`)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


class PipelineUsageError(ValueError):
    """The command cannot run as asked (unknown stage or profile, a stage the profile does not list, a bad timeout,
    a damaged or busy run folder); nothing has run."""


def write_json(path: Path, payload: dict) -> None:
    # a temp name of its own (not one shared name per file) in the same folder, then an atomic rename: a killed run
    # never leaves a half-written file, and two writers never publish each other's half
    from .safe_files import ordinary_permissions

    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(payload, indent=2) + "\n")
    ordinary_permissions(tmp)  # mkstemp's file is private (0600): give it the mode open() would have
    os.replace(tmp, path)


LOCK_NAME = ".pipeline.lock"


@contextmanager
def run_lock(run_dir: Path):
    """Hold the run folder for this process: a second pipeline on the same folder fails at once, naming the holder.
    The lock is the kernel's (flock), so a killed pipeline never leaves a stale one behind."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_NAME, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise PipelineUsageError(f"{run_dir} is in use by another pipeline ({holder}); wait for it to finish "
                                     "or use another --run-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_record(path: Path) -> dict:
    from .safe_files import DamagedFileError, read_json

    try:
        payload = read_json(path)
    except DamagedFileError as err:
        raise PipelineUsageError(f"{err}; the run folder cannot be resumed or extended") from None
    if not isinstance(payload, dict):
        raise PipelineUsageError(f"{path}: not a JSON object; the run folder cannot be resumed or extended")
    return payload


def read_results(path: Path) -> tuple[dict | None, str]:
    """A stage's ``results.json``: (content, "") or (None, why it cannot be read)."""
    from .safe_files import DamagedFileError, read_json

    try:
        return read_json(path), ""
    except DamagedFileError as err:
        return None, str(err)


def prepare_output(output_dir: Path, *, keep: bool) -> None:
    """An empty output folder, so nothing an earlier run wrote passes for this one's; ``keep`` (finishing a stage
    with --resume): its partial work stays for the notebook to pick up, only its results.json goes."""
    if output_dir.is_dir() and not keep:
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").unlink(missing_ok=True)


def failed_stages(summary: dict) -> list[str]:
    """The stages recorded in the run folder whose last run did not finish."""
    return [name for name, record in summary.get("stages", {}).items() if record.get("status") != "ok"]


def finish_run(summary: dict, summary_path: Path) -> dict:
    failed = failed_stages(summary)
    summary["status"] = "failed" if failed else "ok"
    summary["failed"] = failed
    write_json(summary_path, summary)
    return summary
