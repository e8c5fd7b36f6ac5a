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
        snapshots = lab.css(".kadapter-demo-snapshot")
        assert snapshots and not snapshots[0].is_displayed()
        # one line per model says what it is
        about = widget_area(lab).text
        assert "+factual (w/o knowledge): backbone + a 'factual' adapter with random weights" in about

        t = time.monotonic()
        submit(lab, CLOZE)
        lab.wait(lambda d: CLOZE in " ".join(e.text for e in in_widget(lab, ".kadapter-demo-table")), 120,
                 "the prediction for the typed cloze")
        lab.wait(lambda d: not any(b.get_attribute("disabled") for b in in_widget(lab, "button")), 60,
                 "the Predict button to come back")
        timings["predict_s"] = round(time.monotonic() - t, 1)
        charts = in_widget(lab, ".js-plotly-plot")
        assert len(charts) == 1 and CLOZE in charts[0].text  # the chart is titled with the new sentence
        table = in_widget(lab, ".kadapter-demo-table")[0]
        first_row = table.find_elements("css selector", "tbody tr")[0].text
        for name, token in expected_top.items():
            assert token in first_row, (name, token, first_row)  # each model's top answer, shown first
            assert f"1. {token}" in charts[0].text
        assert not in_widget(lab, ".kadapter-demo-error")
        lab.screenshot(OUTPUT / "demo_2_prediction.png", widget_area(lab))

        submit(lab, "Paris is the capital of France.", press_button=False)  # no [MASK], Enter
        lab.wait(lambda d: in_widget(lab, ".kadapter-demo-error"), 60, "the error message")
        error = in_widget(lab, ".kadapter-demo-error")[0]
        assert "No blank" in error.text and error.is_displayed()
        assert "rgb(253, 236, 234)" in error.value_of_css_property("background-color")  # styled, not plain text
        lab.wait(lambda d: not in_widget(lab, ".js-plotly-plot") and not in_widget(lab, ".kadapter-demo-table"),
                 30, "the old chart and table to go")
        lab.screenshot(OUTPUT / "demo_3_bad_input.png", widget_area(lab))

        submit(lab, "Dante was born in [mask].")  # lower case: read as [MASK], said so
        lab.wait(lambda d: in_widget(lab, ".js-plotly-plot"), 120, "the chart after a lower-case [mask]")
        assert "as [MASK]" in widget_area(lab).text and not in_widget(lab, ".kadapter-demo-error")
        lab.screenshot(OUTPUT / "demo_4_lowercase_mask.png", widget_area(lab))
    (OUTPUT / "timings.json").write_text(json.dumps({"05_probing_demo (small probe set)": timings}, indent=2) + "\n")
