"""The widget demo, driven headless: its handler gives exactly the library's top-k; notebook 05 runs under papermill."""
import json

import pytest
import torch

from kadapter import AdapterConfig, KAdapterModel
from kadapter.demo import EXAMPLE_PROMPTS, ProbingDemo
from kadapter.notebook_run import execute_notebook
from kadapter.probing import (
    add_control_adapter, build_probe, candidate_vocabulary, compare_topk, predict_topk, save_probe_set,
)
from notebook_fixtures import NOTEBOOK_CELL_TIMEOUT

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
        assert [t.strip() for t in bar.y] == [t for t, _ in expected[name]][::-1]
        assert list(bar.x) == pytest.approx([p for _, p in expected[name]][::-1])


def test_enter_and_examples_submit(setup):
    model, probes = setup
    vocab = candidate_vocabulary(model.tokenizer)
    demo = ProbingDemo(model, probes, k=3, vocabulary=vocab)
    demo.examples.value = EXAMPLE_PROMPTS[2]  # choosing an example fills the box, which submits
    assert demo.text.value == EXAMPLE_PROMPTS[2]
    assert demo.last_results == compare_topk(model, probes, EXAMPLE_PROMPTS[2], k=3, vocabulary=vocab)
    assert set(demo.last_results) == set(probes)


def test_bad_input_is_reported_not_raised(setup):
    model, probes = setup
    demo = ProbingDemo(model, probes)
    before = demo.submit()
    demo.text.value = "a sentence without a blank"
    assert demo.last_results == before and "exactly one" in demo.message.value
    demo.text.value = "[MASK] and [MASK]"
    assert "exactly one" in demo.message.value
    demo.models.value = ()
    assert demo.submit() == {} and "at least one model" in demo.message.value


@pytest.mark.notebook
def test_notebook_05_on_a_saved_probe_set(setup, tmp_path):
    model, probes = setup
    save_probe_set(model, probes, tmp_path / "set")
    out = tmp_path / "out"
    execute_notebook("notebooks/05_probing_demo.ipynb", str(tmp_path / "05.ipynb"), cwd="notebooks",
                     parameters={"probe_set": str(tmp_path / "set"), "output_dir": str(out), "k": 5,
                                 "prompts": ["Ravens can [MASK].", "Dante was born in [MASK]."]},
                     execution_timeout=NOTEBOOK_CELL_TIMEOUT)
    results = json.loads((out / "results.json").read_text())
    assert results["widget_matches_library"] is True
    assert results["models"] == list(probes)
    got = results["predictions"]["Ravens can [MASK]."]["+factual"]
    want = predict_topk(model, probes["+factual"], "Ravens can [MASK].", 5)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)


@pytest.mark.notebook
def test_notebook_05_standalone_trains_its_probes(tmp_path):
    torch.manual_seed(0)
    KAdapterModel.from_backbone(adapters={"factual": SMALL_ADAPTER}).adapters["factual"].save_pretrained(
        tmp_path / "factual")
    out = tmp_path / "out"
    execute_notebook("notebooks/05_probing_demo.ipynb", str(tmp_path / "05.ipynb"), cwd="notebooks",
                     parameters={"factual_adapter": str(tmp_path / "factual"), "output_dir": str(out),
                                 "corpus_sentences": 40, "k": 3, "prompts": ["Ravens can [MASK]."]},
                     execution_timeout=NOTEBOOK_CELL_TIMEOUT)
    results = json.loads((out / "results.json").read_text())
    assert results["widget_matches_library"] is True
    assert results["models"] == ["backbone", "+factual", "+factual (w/o knowledge)"]
    assert all(len(top) == 3 for top in results["predictions"]["Ravens can [MASK]."].values())
