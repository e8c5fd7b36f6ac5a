"""Issue 17 part B: every probe variant starts as the backbone, the probe budget is chosen on dev for the backbone
variant, paired statistics per fact and per dev example, and verdict sentences computed from them."""
import numpy as np
import pytest
import torch

from kadapter import AdapterConfig, KAdapterModel
from kadapter.probing import (BACKBONE_SOURCE, add_control_adapter, build_probe, general_corpus,
                              masked_corpus_features)

SMALL_ADAPTER = AdapterConfig(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_transformer_layers=1)


@pytest.fixture(scope="module")
def minilm():
    """The real MiniLM with a small adapter and its "w/o knowledge" twin."""
    torch.manual_seed(0)
    model = KAdapterModel.from_backbone(adapters={"factual": SMALL_ADAPTER})
    add_control_adapter(model, "factual", seed=1)
    return model


@pytest.fixture(scope="module")
def corpus(minilm):
    texts, _ = general_corpus(40, seed=3)
    return masked_corpus_features(minilm, texts)


# ------------------------------------------------------------------------------ the masked recipe at step 0
def test_masked_variants_give_identical_outputs_at_step_0(minilm, corpus):
    """Before training, the backbone's probe and every adapter variant's probe of one seed are the same function
    of the backbone's features, whatever the adapters output (their outputs are far from zero here)."""
    assert corpus.sources["factual"].abs().mean() > 0.1
    probes = {name: build_probe(minilm, adapters, seed=4) for name, adapters in
              {"backbone": [], "+F": ["factual"], "+F twin": ["factual_wo_knowledge"],
               "+F+twin": ["factual", "factual_wo_knowledge"]}.items()}
    with torch.no_grad():
        logits = {name: probe(probe.inputs(corpus.sources)).logits for name, probe in probes.items()}
    for name, value in logits.items():
        torch.testing.assert_close(value, logits["backbone"], rtol=0, atol=1e-5, msg=name)
    # ... and they can still move apart: the adapter's input gets a gradient at step 0.
    probe = probes["+F"]
    probe(probe.inputs(corpus.sources), labels=corpus.labels).loss.backward()
    grad = probe.fusion.per_adapter["factual"].weight.grad
    assert grad[:, minilm.hidden_size:].abs().sum() > 0
