"""Checks on what a run leaves on disk, as a person opening it later meets it.

* An executed notebook holds no widget-only output (a live widget, e.g. a tqdm bar, saves as a reference to a widget
  state that is gone: JupyterLab shows the frozen text ``0%| | 0/4`` or nothing): a cell that displays a widget
  must also show a static rendering (HTML or an image) of what the widget showed.
* A saved HTML figure works offline: plotly.js embedded, or a local ``plotly.min.js`` beside it; never only a CDN.

``run_problems(run_dir)`` lists every problem in a folder (e.g. ``runs/smoke-...``), one line each naming the file
(and cell); an empty list means the run reads well offline.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATIC_MIMES = ("text/html", "image/png", "image/svg+xml", "image/jpeg")
# src="…", src='…' or an unquoted src=… (HTML allows all three)
_SCRIPT_SRC = re.compile(r"""<script[^>]*?\bsrc\s*=\s*(?:"([^"]+)"|'([^']+)'|([^\s"'=<>`]+))""", re.IGNORECASE)
_REMOTE = re.compile(r"(https?:)?//", re.IGNORECASE)
_PROGRESS_TEXT = re.compile(r"\d+%\|")


def notebook_problems(path: str | Path) -> list[str]:
    """Widget-only outputs of an executed notebook, one line per cell: "file: cell N: ..."."""
    path = Path(path)
    notebook, problem = _read_notebook(path)
    if problem:
        return [f"{path}: not a notebook ({problem})"]
    problems = []
    code_cells = [c for c in notebook["cells"] if isinstance(c, dict) and c.get("cell_type") == "code"]
    for number, cell in enumerate(code_cells, start=1):
        outputs = [o for o in cell.get("outputs") or [] if isinstance(o, dict)
                   and o.get("output_type") in ("display_data", "execute_result") and isinstance(o.get("data"), dict)]
        widgets = [o for o in outputs if WIDGET_MIME in o.get("data", {})]
        if not widgets:
            continue
        bars = [o for o in widgets if _PROGRESS_TEXT.search(_text(o["data"].get("text/plain", "")))]
        if bars:
            problems.append(f"{path.name}: code cell {number}: {len(bars)} progress bar(s) saved as widgets "
                            f"(first reads {_text(bars[0]['data']['text/plain']).strip()!r}); run it with "
                            "KADAPTER_PROGRESS=plain")
        others = len(widgets) - len(bars)
        static = any(any(m in o.get("data", {}) for m in STATIC_MIMES) for o in outputs)
        if others and not static:
            problems.append(f"{path.name}: code cell {number}: {others} widget(s) with no static HTML or image "
                            "beside them (the saved notebook shows only their text repr)")
    return problems


def _read_notebook(path: Path) -> tuple[dict, str]:
    """(the notebook's JSON, "") or ({}, why it is not a notebook): never an exception for a damaged file."""
    try:
        notebook = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        return {}, f"not UTF-8 text at byte {err.start}"
    except json.JSONDecodeError as err:
        return {}, f"JSON error at line {err.lineno}: {err.msg}"
    if not isinstance(notebook, dict):
        return {}, f"a JSON {type(notebook).__name__.replace('dict', 'object')}, not an object"
    if not isinstance(notebook.get("cells", []), list):
        return {}, "'cells' is not a list"
    notebook.setdefault("cells", [])
    return notebook, ""


def html_problems(path: str | Path) -> list[str]:
    """Why an HTML page would not show its figure offline (empty list: it would)."""
    path = Path(path)
    text = path.read_text(errors="replace")
    if "plotly" not in text.lower():
        return []
    sources = ["".join(groups) for groups in _SCRIPT_SRC.findall(text)]
    remote = [s for s in sources if _REMOTE.match(s)]
    local = [s for s in sources if s not in remote]
    missing = [s for s in local if s.endswith(".js") and not (path.parent / s).is_file()]
    embedded = "Plotly.newPlot" in text and _embeds_plotly_js(text)
    problems = []
    if missing:
        problems.append(f"{path}: loads {', '.join(missing)}, which is not beside it")
    if remote and not embedded and not any(s.endswith("plotly.min.js") for s in local):
        problems.append(f"{path}: loads plotly.js only from {remote[0]} (blank offline)")
    return problems


def _embeds_plotly_js(text: str) -> bool:
    # the inline bundle starts with its licence header ("plotly.js v4.1.1"); a page that only calls it does not
    return re.search(r"\*\s*plotly\.js v\d", text) is not None


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def run_problems(run_dir: str | Path) -> list[str]:
    """Every executed notebook (``*.ipynb``) and HTML page (``*.html``) under `run_dir`, checked."""
    run_dir = Path(run_dir)
    problems = []
    for path in sorted(run_dir.rglob("*.ipynb")):
        if ".ipynb_checkpoints" not in path.parts:
            problems += notebook_problems(path)
    for path in sorted(run_dir.rglob("*.html")):
        problems += html_problems(path)
    return problems
