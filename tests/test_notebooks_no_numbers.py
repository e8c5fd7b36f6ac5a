"""No notebook markdown cell carries a measured result: measured numbers belong in the outputs of the run that
measured them (and in README.md / benchmarks/README.md), never in prose that every later run shows unchanged.

What counts as a measured result in markdown (code spans in backticks are parameter names and values, not results):
a decimal number (0.293), a percentage (31%), a spread ("± 0.006"), a count with thousands separators (6,832 facts)
or a duration (639 s, 25 min). A decimal that is a fixed default of the method, not a measurement, is allowed only
where it is listed below with the reason.
"""
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

# value -> why it may appear in prose (every entry is a setting, never an outcome)
ALLOWED = {
    "0.0002": "the adapter projections' initialisation std (the official code's default)",
    "95%": "the confidence level of every interval the kit prints (a setting of kadapter.statistics)",
}

MEASURED = {
    "decimal number": re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])"),
    "percentage": re.compile(r"\d+(?:\.\d+)?\s?%"),
    "spread": re.compile(r"±\s*\d"),
    "count with thousands separators": re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\d])"),
    "duration": re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?\s?(?:s|sec|seconds|min|minutes|ms|h|hours)\b"),
}


def measured_results(markdown: str) -> list[tuple[str, str]]:
    """(kind, matched text) for every measured-looking number in a markdown cell, outside code spans."""
    prose = re.sub(r"`[^`]*`", "", markdown)
    found = []
    for kind, pattern in MEASURED.items():
        for match in pattern.finditer(prose):
            if match.group().strip() not in ALLOWED:
                found.append((kind, match.group()))
    return found


@pytest.mark.parametrize("text, kinds", [
    ("| +F | 3 | 0.277 ± 0.013 |", {"decimal number", "spread"}),
    ("**= 6,832 facts** took 3,056 s", {"count with thousands separators", "duration"}),
    ("accuracy rose by 31% in 25 min", {"percentage", "duration"}),
    ("mean ± std over probe-head seeds; taps 0/11/22, 41 relations, `lr=1e-3`, `mask_prob=0.15`", set()),
    ("projections initialised with std 0.0002", set()),
])
def test_the_rule_on_hand_written_cells(text, kinds):
    assert {kind for kind, _ in measured_results(text)} == kinds


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_markdown_cell_carries_a_measured_result(path):
    notebook = nbformat.read(path, as_version=4)
    offending = [(i, found) for i, cell in enumerate(notebook.cells) if cell.cell_type == "markdown"
                 for found in [measured_results(cell.source)] if found]
    assert not offending, (f"{path.name}: markdown cells carry measured results (print them from a code cell of "
                           f"the run instead): {offending}")
