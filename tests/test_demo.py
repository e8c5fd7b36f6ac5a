"""The widget demo, driven headless: its handler gives exactly the library's top-k, bad input replaces the result
with a message, examples and text stay in sync, a busy state while predicting; the figure's grid and the full
tables; the newest probe set under runs/ is found; notebook 05 runs under papermill and saves no widget-only
output. (tests/test_browser.py drives the same widget in JupyterLab in a real browser.)"""
import json
import os
import time

import pytest
import torch

import kadapter.demo as demo_module
from kadapter import AdapterConfig, KAdapterModel
from kadapter.notebook_run import execute_notebook
from notebook_fixtures import NOTEBOOK_CELL_TIMEOUT
from kadapter.demo import CUSTOM, EXAMPLE_PROMPTS, ClozeError, ProbingDemo, check_cloze, result_html
from kadapter.demo_setup import describe, load_demo_models, newest_probe_set
from kadapter.plotting import topk_figure
from kadapter.saved_outputs import notebook_problems
from kadapter.probing import (
    add_control_adapter, build_probe, candidate_vocabulary, compare_topk, predict_topk, save_probe_set,
)

SMALL_ADAPTER = AdapterConfig(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_transformer_layers=1)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = KAdapterModel.from_backbone(adapters={"factual": SMALL_ADAPTER})
    add_control_adapter(model, "factual")
    probes = {"backbone": build_probe(model, [], seed=0), "+factual": build_probe(model, ["factual"], seed=1),
              "+factual (w/o knowledge)": build_probe(model, ["factual_wo_knowledge"], seed=2)}
    with torch.no_grad():  # distinct, non-trivial heads so the three models rank differently
        for probe in probes.values():
            probe.head.bias.normal_()
    return model, probes


def test_paper_prompts_are_offered():
    assert "The official language of Mauritius is [MASK]." in EXAMPLE_PROMPTS
    assert "Ravens can [MASK]." in EXAMPLE_PROMPTS


def test_button_gives_the_library_topk(setup):
    model, probes = setup
    demo = ProbingDemo(model, probes, k=4)
    demo.text.value = "Ravens can [MASK]."  # Enter in the box: submits through the observer
    demo.models.value = ("backbone", "+factual")
    demo.k.value = 6
    demo.button.click()
    expected = {name: predict_topk(model, probes[name], "Ravens can [MASK].", 6) for name in ("backbone", "+factual")}
    assert demo.last_results == expected
    assert demo.last_results["backbone"] != demo.last_results["+factual"]
    # The figure shows exactly those tokens and probabilities, one panel per model, best on top.
    bars = demo.last_figure.data
    assert [b.type for b in bars] == ["bar", "bar"]
    for bar, name in zip(bars, ("backbone", "+factual")):
        ranked = [f"{rank}. {t}" for rank, (t, _) in enumerate(expected[name], start=1)]
        assert [t.strip() for t in bar.y] == ranked[::-1]
        assert list(bar.x) == pytest.approx([p for _, p in expected[name]][::-1])


def test_enter_and_examples_submit(setup):
    model, probes = setup
    vocab = candidate_vocabulary(model.tokenizer)
    demo = ProbingDemo(model, probes, k=3, vocabulary=vocab)
    demo.examples.value = EXAMPLE_PROMPTS[2]  # choosing an example fills the box, which submits
    assert demo.text.value == EXAMPLE_PROMPTS[2]
    assert demo.last_results == compare_topk(model, probes, EXAMPLE_PROMPTS[2], k=3, vocabulary=vocab)
    assert set(demo.last_results) == set(probes)


def test_bad_input_replaces_the_result_with_a_message(setup):
    model, probes = setup
    demo = ProbingDemo(model, probes)
    assert demo.submit() and demo.last_figure is not None and "<table" in demo.table.value
    for text, says in [("a sentence without a blank", "No blank"), ("[MASK] and [MASK]", "2 blanks"),
                       ("   ", "Type a sentence")]:
        demo.text.value = text
        assert says in demo.message.value and "kadapter-demo-error" in demo.message.value, text
        # nothing stale: no chart, no table, no results of the previous sentence
        assert demo.last_results == {} and demo.last_figure is None and demo.table.value == ""
    demo.text.value = "Ravens can [MASK]."
    assert demo.last_results and demo.message.value == ""
    demo.models.value = ()
    assert demo.submit() == {} and "at least one model" in demo.message.value and demo.last_figure is None


def test_mask_in_any_case_is_accepted_and_said(setup):
    model, probes = setup
    assert check_cloze("Ravens can [mask].") == ("Ravens can [MASK].", "Read “[mask]” as [MASK].")
    assert check_cloze("Ravens can [MASK].") == ("Ravens can [MASK].", "")
    assert check_cloze("Ravens can <mask>.", "<mask>")[0] == "Ravens can [MASK]."
    with pytest.raises(ClozeError, match="2 blanks"):
        check_cloze("[mask] can [Mask].")
    demo = ProbingDemo(model, probes, k=3)
    demo.text.value = "Ravens can [Mask]."
    assert demo.last_results == compare_topk(model, probes, "Ravens can [MASK].", k=3)
    assert "as [MASK]" in demo.message.value and "kadapter-demo-error" not in demo.message.value


def test_examples_and_text_stay_in_sync(setup):
    model, probes = setup
    demo = ProbingDemo(model, probes, k=2, examples=EXAMPLE_PROMPTS[:3])
    assert demo.examples.value == demo.text.value == EXAMPLE_PROMPTS[0]
    demo.text.value = "Paris is the capital of [MASK]."
    assert demo.examples.value == CUSTOM and demo.last_text == "Paris is the capital of [MASK]."
    demo.examples.value = EXAMPLE_PROMPTS[1]
    assert demo.text.value == EXAMPLE_PROMPTS[1] and demo.last_text == EXAMPLE_PROMPTS[1]
    demo.text.value = EXAMPLE_PROMPTS[2]  # typing an example's text selects it
    assert demo.examples.value == EXAMPLE_PROMPTS[2]


def test_busy_while_predicting_and_prediction_errors_shown(setup, monkeypatch):
    model, probes = setup
    demo = ProbingDemo(model, probes, k=2)
    seen = []

    def slow(*args, **kwargs):
        seen.append((demo.busy, demo.button.disabled, demo.button.description, demo.message.value))
        return compare_topk(*args, **kwargs)

    monkeypatch.setattr(demo_module, "compare_topk", slow)
    demo.button.click()
    busy, disabled, label, message = seen[0]
    assert busy and disabled and label.startswith("Predicting") and "kadapter-demo-busy" in message
    assert not demo.busy and not demo.button.disabled and demo.button.description == "Predict"

    def refuses(*args, **kwargs):
        raise ValueError("this model fills a blank only at the end of the sentence")

    monkeypatch.setattr(demo_module, "compare_topk", refuses)
    demo.button.click()
    assert "only at the end" in demo.message.value and demo.last_figure is None and not demo.button.disabled


@pytest.mark.parametrize("count", [1, 2, 4, 7, 8])
def test_topk_grid_stays_readable(count):
    names = ["backbone", "+factual", "+linguistic", "+factual+linguistic", "+factual (w/o knowledge)",
             "+linguistic (w/o knowledge)", "+factual+linguistic (w/o knowledge)", "+other"][:count]
    results = {n: [(f"w{i}{j}", 0.5 / (j + 1)) for j in range(10)] for i, n in enumerate(names)}
    fig = topk_figure(results, title="The official language of Mauritius is [MASK].")
    columns = {1: 1, 2: 2, 4: 2, 7: 3, 8: 3}[count]
    xs = sorted({tuple(fig.layout[f"xaxis{i or ''}"].domain) for i in range(count + 1) if i != 1})
    assert len(xs) == columns and all(b - a >= 0.2 for a, b in xs)  # at most 3 panels side by side
    assert all(x1[1] < x2[0] for x1, x2 in zip(xs, xs[1:]))  # no panel overlaps the next
    for title in fig.layout.annotations:
        assert all(len(line) <= 48 for line in title.text.split("<br>"))  # wrapped, not running into the next
    assert fig.layout.height >= 100 * -(-count // columns)


def test_result_table_is_full(setup):
    results = {"backbone": [(f"token{j}", 0.1) for j in range(12)], "+factual (w/o knowledge)": [("x", 0.9)]}
    table = result_html(results, "Ravens can [MASK].", {"backbone": "backbone: the frozen backbone alone"})
    assert all(f"token{j}" in table for j in range(12)) and "…" not in table and "..." not in table
    assert "+factual (w/o knowledge)" in table and "the frozen backbone alone" in table


def test_newest_probe_set_is_found_and_described(setup, tmp_path):
    model, probes = setup
    runs = tmp_path / "runs"
    older = save_probe_set(model, probes, runs / "smoke-1" / "04_lama_probing" / "probe_set")
    newer = save_probe_set(model, {"backbone": probes["backbone"]}, runs / "smoke-2" / "04_lama_probing" / "probe_set")
    (runs / "smoke-3" / "04_lama_probing" / "probe_set").mkdir(parents=True)  # unfinished: no probes.json
    os.utime(older / "probes.json", (time.time() - 60, time.time() - 60))
    assert newest_probe_set(runs) == newer
    os.utime(older / "probes.json", (time.time() + 60, time.time() + 60))
    assert newest_probe_set(runs) == older and newest_probe_set(tmp_path / "none") is None
    loaded = load_demo_models("newest", runs_dir=runs)
    assert loaded.source == f"loaded from {older}" and list(loaded.probes) == list(probes)
    assert loaded.descriptions["+factual (w/o knowledge)"].startswith(
        "+factual (w/o knowledge): backbone + a 'factual' adapter with random weights")
    assert describe("backbone", [], "MiniLM") == "backbone: the frozen backbone (MiniLM) alone, read by a probe head"
    with pytest.raises(FileNotFoundError, match="not a probe set"):
        load_demo_models(runs / "smoke-3" / "04_lama_probing" / "probe_set")


def run_05(tmp_path, monkeypatch, parameters):
    """Notebook 05 under papermill as the pipeline runs it (plain progress), with timeouts."""
    monkeypatch.setenv("KADAPTER_PROGRESS", "plain")
    executed = tmp_path / "05.ipynb"
    execute_notebook("notebooks/05_probing_demo.ipynb", str(executed), cwd="notebooks", parameters=parameters,
                     execution_timeout=NOTEBOOK_CELL_TIMEOUT)
    return executed, json.loads(executed.read_text())


def cell_outputs(notebook, index):
    return notebook["cells"][index]["outputs"]


def output_text(outputs):
    return "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")


@pytest.mark.notebook
def test_notebook_05_with_default_parameters_uses_the_newest_run(setup, tmp_path, monkeypatch):
    """After a pipeline run, the defaults find its probe set: backbone and adapter models side by side."""
    model, probes = setup
    runs = tmp_path / "runs"
    probe_set = save_probe_set(model, probes, runs / "smoke-20260101-000000" / "04_lama_probing" / "probe_set")
    out = tmp_path / "out"
    executed, notebook = run_05(tmp_path, monkeypatch, {"runs_dir": str(runs), "output_dir": str(out), "k": 5,
                                                        "prompts": ["Ravens can [MASK].", "Dante was born in [MASK]."]})
    results = json.loads((out / "results.json").read_text())
    assert results["widget_matches_library"] is True
    assert results["source"] == f"loaded from {probe_set}"
    assert results["models"] == list(probes) and {"backbone", "+factual"} <= set(results["models"])
    got = results["predictions"]["Ravens can [MASK]."]["+factual"]
    want = predict_topk(model, probes["+factual"], "Ravens can [MASK].", 5)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)
    # the first cell says which probe set it took and what each model is
    said = output_text(cell_outputs(notebook, 3))  # cells: 0 md, 1 parameters, 2 injected parameters, 3 setup
    assert f"Using the newest probe set the pipeline wrote: {probe_set}" in said
    assert "  - +factual (w/o knowledge): backbone + a 'factual' adapter with random weights" in said
    # the saved notebook: no widget-only output; the widget's cell carries a static copy of its result
    assert notebook_problems(executed) == []
    widget_cell = next(c for c in notebook["cells"] if "ProbingDemo(" in "".join(c["source"]))
    static = [o for o in widget_cell["outputs"] if "text/html" in o.get("data", {})]
    html = "".join(static[0]["data"]["text/html"])
    assert "kadapter-demo-snapshot" in html and "<table" in html and want[0][0] in html


@pytest.mark.notebook
def test_notebook_05_standalone_trains_its_probes(tmp_path, monkeypatch):
    torch.manual_seed(0)
    KAdapterModel.from_backbone(adapters={"factual": SMALL_ADAPTER}).adapters["factual"].save_pretrained(
        tmp_path / "factual")
    out = tmp_path / "out"
    executed, notebook = run_05(tmp_path, monkeypatch, {
        "probe_set": None, "backbone": None, "factual_adapter": str(tmp_path / "factual"), "output_dir": str(out),
        "corpus_sentences": 40, "k": 3, "prompts": ["Ravens can [MASK]."]})
    results = json.loads((out / "results.json").read_text())
    assert results["widget_matches_library"] is True
    assert results["models"] == ["backbone", "+factual", "+factual (w/o knowledge)"]
    assert results["source"].startswith("built here: probe heads trained on 40 sentences")
    assert all(len(top) == 3 for top in results["predictions"]["Ravens can [MASK]."].values())
    said = output_text(cell_outputs(notebook, 3))
    assert "Training 3 probe heads" in said and "[probe heads (3 models)" in said  # says what it is doing
    assert notebook_problems(executed) == []
