"""Notebook 05 as a researcher meets it: JupyterLab on 127.0.0.1 in headless Chromium (selenium), Run All Cells,
type a cloze into the widget, press Predict, see the chart and the top answer; then a bad input shows a styled
error and the old chart is gone. Screenshots go to tests/output/browser/ (kept for a person to look at) with
timings.json. Needs Debian's chromium and chromium-driver (.ci/run installs them)."""
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from jupyterlab_browser import LabSession, browser_binaries, set_parameters

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "tests" / "output" / "browser"
NOTEBOOK = REPO / "notebooks" / "05_probing_demo.ipynb"
CLOZE = "The capital of France is [MASK]."


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e \".[dev]\")")
    chromium, driver = browser_binaries()
    if not (chromium and driver):
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    return chromium, driver


def small_probe_set(directory: Path):
    """MiniLM + a small factual adapter and its w/o-knowledge twin, three probe heads with distinct biases."""
    from kadapter import AdapterConfig, KAdapterModel
    from kadapter.probing import add_control_adapter, build_probe, save_probe_set

    torch.manual_seed(0)
    config = AdapterConfig(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_transformer_layers=1)
    model = KAdapterModel.from_backbone(adapters={"factual": config})
    add_control_adapter(model, "factual")
    probes = {"backbone": build_probe(model, [], seed=0), "+factual": build_probe(model, ["factual"], seed=1),
              "+factual (w/o knowledge)": build_probe(model, ["factual_wo_knowledge"], seed=2)}
    with torch.no_grad():
        for probe in probes.values():
            probe.head.bias.normal_()
    save_probe_set(model, probes, directory)
    return model, probes


def widget_area(lab):
    boxes = lab.css(".jp-NotebookPanel .widget-vbox")
    assert boxes, "the demo widget did not render"
    return boxes[-1]


def in_widget(lab, selector):
    return widget_area(lab).find_elements("css selector", selector)


def submit(lab, text: str, press_button: bool = True):
    from selenium.webdriver.common.keys import Keys

    box = in_widget(lab, ".widget-text input")[0]
    lab.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    if press_button:
        button = next(b for b in in_widget(lab, "button") if "Predict" in b.text)
        button.click()  # the text syncs when the box loses focus, then Predict runs
    else:
        box.send_keys(Keys.ENTER)


def test_demo_in_jupyterlab(browser, tmp_path):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT.glob("demo_*.png"):
        old.unlink()
    root = tmp_path / "lab"
    root.mkdir()
    model, probes = small_probe_set(tmp_path / "probe_set")
    from kadapter.probing import predict_topk

    expected_top = {name: predict_topk(model, probe, CLOZE, 5)[0][0] for name, probe in probes.items()}
    notebook = root / NOTEBOOK.name
    shutil.copy(NOTEBOOK, notebook)
    set_parameters(notebook, {"probe_set": str(tmp_path / "probe_set"), "k": 5, "output_dir": str(root / "out"),
                              "prompts": ["Ravens can [MASK].", "Dante was born in [MASK]."]})
    timings = {}
    with LabSession(root, log_path=OUTPUT / "jupyterlab.log") as lab:
        t = time.monotonic()
        lab.open_notebook(notebook.name)
        timings["open_and_kernel_start_s"] = round(time.monotonic() - t, 1)
        timings["run_all_cells_s"] = round(lab.run_all(timeout=420), 1)
        lab.wait(lambda d: in_widget(lab, ".js-plotly-plot"), 60, "the widget's first chart")
        lab.screenshot(OUTPUT / "demo_1_after_run_all.png", widget_area(lab))
        # the static snapshot under the widget is for saved notebooks: hidden while the widget is live
        assert lab.wait(lambda d: [not e.is_displayed() for e in lab.css(".kadapter-demo-snapshot")], 30,
                        "the static snapshot")[0]
        # one line per model says what it is
        about = lab.wait(lambda d: widget_area(lab).text, 30, "the widget's text")
        assert "+factual (w/o knowledge): backbone + a 'factual' adapter with random weights" in about

        t = time.monotonic()
        submit(lab, CLOZE)

        def shows_prediction(_):
            charts = in_widget(lab, ".js-plotly-plot")
            tables = in_widget(lab, ".kadapter-demo-table tbody tr")
            buttons = in_widget(lab, "button")
            if not (charts and tables and CLOZE in charts[0].text):
                return False
            if any(b.get_attribute("disabled") for b in buttons):
                return False  # still busy
            return {"charts": len(charts), "chart": charts[0].text, "first row": tables[0].text,
                    "error": bool(in_widget(lab, ".kadapter-demo-error"))}

        shown = lab.wait(shows_prediction, 120, "the chart and table of the typed cloze")
        timings["predict_s"] = round(time.monotonic() - t, 1)
        assert shown["charts"] == 1 and not shown["error"]  # one chart, titled with the new sentence
        for name, token in expected_top.items():
            assert token in shown["first row"], (name, token, shown)  # each model's top answer, shown first
            assert f"1. {token}" in shown["chart"]
        lab.screenshot(OUTPUT / "demo_2_prediction.png", widget_area(lab))

        submit(lab, "Paris is the capital of France.", press_button=False)  # no [MASK], Enter
        error = lab.wait(lambda d: [(e.text, e.is_displayed(), e.value_of_css_property("background-color"))
                                    for e in in_widget(lab, ".kadapter-demo-error")], 60, "the error message")[0]
        assert "No blank" in error[0] and error[1]
        assert "253, 236, 234" in error[2]  # styled (red box), not plain black text
        lab.wait(lambda d: not in_widget(lab, ".js-plotly-plot") and not in_widget(lab, ".kadapter-demo-table"),
                 30, "the old chart and table to go")
        lab.screenshot(OUTPUT / "demo_3_bad_input.png", widget_area(lab))

        submit(lab, "Dante was born in [mask].")  # lower case: read as [MASK], said so
        lab.wait(lambda d: in_widget(lab, ".js-plotly-plot") and "as [MASK]" in widget_area(lab).text
                 and not in_widget(lab, ".kadapter-demo-error"), 120, "the chart after a lower-case [mask]")
        lab.screenshot(OUTPUT / "demo_4_lowercase_mask.png", widget_area(lab))
    (OUTPUT / "timings.json").write_text(json.dumps({"05_probing_demo (small probe set)": timings}, indent=2) + "\n")
