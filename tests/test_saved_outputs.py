"""The checker of what a run leaves on disk (kadapter.saved_outputs): it flags progress bars saved as widgets, a
widget with no static copy beside it, and HTML that loads plotly.js only from a CDN or from a file that is not
there; and it passes what save_html and plain progress write. Real runs are checked in test_demo.py (notebook 05)
and test_finetuning.py (notebook 03)."""
import json

import plotly.graph_objects as go

from kadapter.plotting import PLOTLY_JS, save_html
from kadapter.saved_outputs import html_problems, notebook_problems, run_problems

WIDGET = "application/vnd.jupyter.widget-view+json"


def notebook(tmp_path, *cells):
    data = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": list(outputs)}
                      for outputs in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "run" / "n.ipynb"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def display(data):
    return {"output_type": "display_data", "data": data, "metadata": {}}


BAR = display({WIDGET: {"model_id": "x"}, "text/plain": "train:   0%|          | 0/4 [00:00<?, ?it/s]"})
DEMO = display({WIDGET: {"model_id": "y"}, "text/plain": "VBox(children=(HTML(value=''),))"})
SNAPSHOT = display({"text/html": "<div class='kadapter-demo-snapshot'><table></table></div>"})
PLAIN = {"output_type": "stream", "name": "stdout", "text": "[train] 4/4 (100%) done in 1.2 s, loss=0.5\n"}


def test_widget_outputs(tmp_path):
    problems = notebook_problems(notebook(tmp_path, [PLAIN], [BAR, BAR], [DEMO]))
    assert problems == [
        "n.ipynb: code cell 2: 2 progress bar(s) saved as widgets (first reads 'train:   0%|          | 0/4 "
        "[00:00<?, ?it/s]'); run it with KADAPTER_PROGRESS=plain",
        "n.ipynb: code cell 3: 1 widget(s) with no static HTML or image beside them (the saved notebook shows only "
        "their text repr)"]
    assert notebook_problems(notebook(tmp_path, [PLAIN], [DEMO, SNAPSHOT])) == []


def test_html_figures(tmp_path):
    fig = go.Figure(go.Bar(x=[1, 2], y=[3, 4]))
    cdn = tmp_path / "run" / "cdn.html"
    cdn.parent.mkdir()
    fig.write_html(cdn, include_plotlyjs="cdn")
    assert html_problems(cdn) == [f"{cdn}: loads plotly.js only from {html_problems(cdn)[0].split(' from ')[1]}"]
    assert "cdn.plot.ly" in html_problems(cdn)[0] and "blank offline" in html_problems(cdn)[0]
    first, second = save_html(fig, tmp_path / "figs" / "a.html"), save_html(fig, tmp_path / "figs" / "b.html")
    assert html_problems(first) == html_problems(second) == []
    assert sorted(p.name for p in first.parent.iterdir()) == ["a.html", "b.html", PLOTLY_JS]  # one copy per folder
    assert first.stat().st_size < 100_000 < (first.parent / PLOTLY_JS).stat().st_size
    (first.parent / PLOTLY_JS).unlink()
    assert html_problems(first) == [f"{first}: loads plotly.min.js, which is not beside it"]
    embedded = tmp_path / "run" / "embedded.html"
    fig.write_html(embedded)
    assert html_problems(embedded) == []
    assert run_problems(tmp_path / "run") == html_problems(cdn)
