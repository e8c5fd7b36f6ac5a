"""The positive control, the norm-matched random twin and the adapter diagnostics.

- an adapter that memorises its facts (trained with the backbone's own objective on statements of real LAMA facts)
  is detected by the probe recipe on a tiny random model, causal (next token, own tied head) and masked (MLM head):
  its P@1 is far above the backbone's probe row, by a paired comparison (:mod:`kadapter.statistics`);
- norm matching gives the trained adapter's per-tensor norms, with none of its weights;
- the diagnostics on known displacements: relative distance from the init draw, the learned share of the output,
  the warning when an adapter has hardly moved.
"""
import warnings

import pytest
import torch

from data_prep.lama import load_trex_facts
from kadapter import AdapterConfig, KAdapterModel
from kadapter.backbone import BackboneFeatures
from kadapter.comparisons import lama_comparisons, lama_plan
from kadapter.diagnostics import (
    HARDLY_MOVED, AdapterHardlyMovedWarning, adapter_diagnostics, distance_from_init, init_draw, learned_share,
    norm_matched_twin,
)
from kadapter.model import random_backbone
from kadapter.probing import (
    POSITIVE_CONTROL, POSITIVE_CONTROL_ROW, CandidateVocabulary, adapter_init_seed, add_control_adapter,
    add_norm_matched_adapter, general_corpus, prefix_facts, probe_variants, train_positive_control, train_variants,
    word_token_id,
)
from kadapter.probing.recipes import probe_recipe
from kadapter.training import TrainConfig
from tokenizer_fixtures import roberta_bpe_tokenizer

SMALL_ADAPTER = AdapterConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)


def _tiny(kind: str) -> KAdapterModel:
    tokenizer = roberta_bpe_tokenizer()
    torch.manual_seed(0)
    if kind == "causal":
        backbone = random_backbone("gemma3_text", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                   pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                   tie_word_embeddings=True)
    else:
        backbone = random_backbone("bert", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=4, num_attention_heads=2, pad_token_id=tokenizer.pad_token_id)
    return KAdapterModel(backbone, tokenizer=tokenizer)


def _facts(model: KAdapterModel, n: int = 60) -> tuple[list[dict], CandidateVocabulary]:
    """Real LAMA T-REx facts whose object is one token of the tiny tokenizer (and askable as a next token), and
    their objects as the ranking candidates."""
    tokenizer = model.tokenizer
    facts = [f for f in prefix_facts(load_trex_facts(limit=40)[0])[0]
             if word_token_id(tokenizer, f["obj_label"]) is not None][:n]
    ids = sorted({word_token_id(tokenizer, f["obj_label"]) for f in facts})
    return facts, CandidateVocabulary(ids, "the facts' objects", len(ids), {})


@pytest.mark.parametrize("kind, probe_epochs", [
    ("causal", 3),
    # Failed (strict xfail) while the masked probe read each adapter's whole output and the control was trained
    # through an identity concat fusion thrown away with its head: ΔP@1 = 0, no discordant fact. Fixed by probing
    # the adapter's learned part and training the control to write it where the head reads h (add fusion).
    ("masked", 15),
])
def test_an_adapter_that_memorises_its_facts_is_detected_by_the_probe(kind, probe_epochs, tmp_path):
    model = _tiny(kind)
    facts, candidates = _facts(model)
    texts, _ = general_corpus(60)
    recipe = probe_recipe(model)  # an encoder without an MLM head gets one here, the head every probe starts from
    recipe.prepare(model, texts, max_length=32, output_dir=tmp_path / "head")
    report = train_positive_control(model, SMALL_ADAPTER, facts, texts, output_dir=tmp_path / "pc",
                                    candidates=candidates, epochs=30, learning_rate=1e-2, batch_size=16,
                                    max_length=32, cache_root=tmp_path / "states", seed=5, recipe=recipe)
    entry = report["models"][POSITIVE_CONTROL]
    assert report["data"]["statements"] == len(facts)
    assert report["data"]["general_sentences"] + sum(report["data"]["skipped"].values()) == 60  # counted, not lost
    assert entry["statement_p@1"] >= 0.3  # it holds its facts (through the head it was trained with)
    # its saved results say where it started and how far it went (as every adapter's must)
    assert adapter_init_seed(entry["adapter_dir"]) == 5
    assert entry["diagnostics"]["optimizer_steps"] == report["steps"] > 0
    assert entry["diagnostics"]["relative_distance_from_init"] > HARDLY_MOVED

    twin = add_control_adapter(model, POSITIVE_CONTROL, seed=5)
    variants = {"backbone": [], POSITIVE_CONTROL_ROW: [POSITIVE_CONTROL],
                f"{POSITIVE_CONTROL_ROW} (w/o knowledge)": [twin]}
    data = recipe.corpus_features(model, texts, max_length=32, cache_root=tmp_path / "states")
    config = TrainConfig(output_dir=str(tmp_path / "probe"), epochs=probe_epochs, batch_size=64, learning_rate=1e-2,
                         progress=False, resume=False)
    probes, by_variant, _ = train_variants(model, variants, data, seeds=[0], config=config,
                                           build=recipe.builder(data, candidates), evaluate=recipe.evaluate)
    result = recipe.lama_probe(model, probes, facts, vocabulary=candidates, cache_root=tmp_path / "states",
                               typed=False)
    comparisons = {c.variant: c for c in lama_comparisons(result, by_variant, plan=lama_plan(list(by_variant)),
                                                          n_resamples=2000)
                   if c.reference == "backbone"}
    detected = comparisons[POSITIVE_CONTROL_ROW]
    assert detected.delta >= 0.08 and detected.excludes_zero, detected
    # the init-draw twin of the same adapter holds no facts: it is not detected
    assert comparisons[f"{POSITIVE_CONTROL_ROW} (w/o knowledge)"].delta < detected.delta - 0.05


def test_norm_matched_twin_has_the_trained_norms_and_none_of_the_weights():
    model = _tiny("causal")
    model.add_adapter("factual", init_draw(SMALL_ADAPTER.resolved(4, model.kind.adapter_defaults()), model.identity, 3))
    trained = model.adapters["factual"]
    with torch.no_grad():  # a "trained" adapter: every tensor moved, norms far from the init's
        for i, param in enumerate(trained.parameters()):
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(i)) * 0.3)
    name = add_norm_matched_adapter(model, "factual", seed=1)
    twin = model.adapters[name]
    assert name == "factual_norm_matched"
    assert set(twin.state_dict()) == set(trained.state_dict())
    for key, value in trained.state_dict().items():
        other = twin.state_dict()[key]
        assert other.shape == value.shape
        assert torch.isclose(other.norm(), value.norm(), rtol=1e-5), key
        assert not torch.allclose(other, value), key
    again = norm_matched_twin(trained, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), twin.state_dict().values()))
    assert probe_variants(["factual"], norm_matched=True)["+factual (norm-matched random)"] == [name]


def test_distance_from_init_of_a_known_displacement():
    model = _tiny("causal")
    config = SMALL_ADAPTER.resolved(4, model.kind.adapter_defaults())
    adapter = init_draw(config, model.identity, seed=11)
    start = {k: v.clone() for k, v in adapter.state_dict().items()}
    assert distance_from_init(adapter, 11)["relative_distance"] == 0.0
    assert distance_from_init(adapter, 12)["relative_distance"] > 0.1  # another seed: another draw
    displacement = torch.full_like(start["adapter_layers.1.up_project.weight"], 0.01)
    with torch.no_grad():
        adapter.adapter_layers[1].up_project.weight.add_(displacement)
    theta0 = torch.cat([v.flatten() for v in start.values()]).norm()
    expected = float(displacement.norm() / theta0)
    found = distance_from_init(adapter, 11)
    assert found["relative_distance"] == pytest.approx(expected, rel=1e-4)
    assert found["per_tensor"]["adapter_layers.0.up_project.weight"] == 0.0


def test_learned_share_and_the_hardly_moved_warning():
    model = _tiny("masked")  # an encoder adapter reads its taps as they are: the arithmetic below is exact
    config = SMALL_ADAPTER.resolved(4, model.kind.adapter_defaults())
    adapter = init_draw(config, model.identity, seed=2)
    taps = adapter.tap_layers
    hidden = {t: torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(t)) for t in taps}
    features = BackboneFeatures(hidden, hidden[taps[-1]], torch.ones(2, 5, dtype=torch.long))
    with torch.no_grad():
        for layer in adapter.adapter_layers:  # the learned part is exactly the up-projection biases
            layer.up_project.weight.zero_()
            layer.up_project.bias.fill_(0.5)
    learned = torch.full((64,), 0.5 * len(taps))
    output = sum(hidden[t] for t in taps) + learned
    expected = learned.norm() / output.norm(dim=-1)
    share = learned_share(adapter, features)
    assert share["tokens"] == 10
    assert share["mean"] == pytest.approx(float(expected.mean()), rel=1e-4)
    assert share["max"] == pytest.approx(float(expected.max()), rel=1e-4)
    at_one = learned_share(adapter, features, torch.tensor([1]), torch.tensor([3]))
    assert at_one["mean"] == pytest.approx(float(expected[1, 3]), rel=1e-4)

    fresh = init_draw(config, model.identity, seed=2)
    with pytest.warns(AdapterHardlyMovedWarning, match="hardly moved"):
        diagnostics = adapter_diagnostics(fresh, steps=40, init_seed=2, features=features, name="factual")
    assert diagnostics["hardly_moved"] and diagnostics["relative_distance_from_init"] == 0.0
    assert diagnostics["learned_share"] < 0.01  # projections of std 0.0002: the output is the taps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not adapter_diagnostics(adapter, steps=40, init_seed=2, name="moved")["hardly_moved"]


def test_learned_part_gates_start_shut_and_open_within_a_probe_budget():
    """The gate that lets a probe read an adapter's learned part as it is (issue 17): zero at start (every variant
    equals the backbone), and reparametrised so that Adam at a probe's learning rate opens it within tens of steps —
    without the scale, 50 steps at lr 1e-3 move a plain scalar by at most 0.05."""
    from kadapter.probing.features import LearnedPartGates

    gates = LearnedPartGates(["control", "twin"])
    fused = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    learned = {"control": torch.randn(64, 16, generator=torch.Generator().manual_seed(1)),
               "twin": torch.randn(64, 16, generator=torch.Generator().manual_seed(2))}
    assert torch.equal(gates(fused, learned), fused)
    target = fused + learned["control"]  # what the control's learned part is for; the twin's is noise
    optimizer = torch.optim.Adam(gates.parameters(), lr=1e-3)
    for _ in range(50):
        loss = (gates(fused, learned) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    values = gates.values()
    assert 0.8 < values["control"] < 1.2, values
    assert abs(values["twin"]) < 0.2, values


def test_on_minilm_the_masked_probe_detects_the_positive_control(tmp_path):
    """The encoder path on the real MiniLM (issue 17's smoke acceptance), at the smoke profile's size: 45 facts of
    P19, P36, P1412, 2,000 general sentences. MiniLM ships no MLM head, so the recipe trains one on the backbone alone;
    the control is trained through it and every probe starts from it. Failed before (every row at P@1 0.000: each
    probe a fresh head draw over a trained concat fusion, the control trained jointly with a head of its own); now
    the control is far above the backbone and its norm-matched twin is not. ~4 min on 2 cores."""
    from kadapter.probing import candidate_vocabulary

    torch.manual_seed(0)
    minilm = KAdapterModel.from_backbone()
    facts = load_trex_facts(["P19", "P36", "P1412"], limit=15)[0]
    texts, _ = general_corpus(2000)
    candidates = candidate_vocabulary(minilm.tokenizer)
    recipe = probe_recipe(minilm)
    source = recipe.prepare(minilm, texts, epochs=5, learning_rate=3e-3, max_length=40, output_dir=tmp_path / "head")
    assert "no MLM head shipped" in source
    config = AdapterConfig(hidden_size=128, num_attention_heads=4, intermediate_size=256, num_transformer_layers=1)
    report = train_positive_control(minilm, config, facts, texts, output_dir=tmp_path / "pc", candidates=candidates,
                                    epochs=15, learning_rate=1e-2, max_length=40, seed=0, statement_repeats=20,
                                    recipe=recipe)
    assert report["models"][POSITIVE_CONTROL]["statement_p@1"] >= 0.4  # holds its facts through the own head
    twin = add_norm_matched_adapter(minilm, POSITIVE_CONTROL, seed=1)
    variants = {"backbone": [], POSITIVE_CONTROL_ROW: [POSITIVE_CONTROL], "twin": [twin]}
    data = recipe.corpus_features(minilm, texts, max_length=40)
    train, dev = data.split_by_group(0.1, seed=0)
    probe_config = TrainConfig(output_dir=str(tmp_path / "probe"), epochs=5, batch_size=128,
                               learning_rate=3e-3, warmup_ratio=0.06, progress=False, resume=False)
    probes, by_variant, _ = train_variants(minilm, variants, train, seeds=[0], config=probe_config,
                                           build=recipe.builder(train, candidates), evaluate=recipe.evaluate)
    result = recipe.lama_probe(minilm, probes, facts, vocabulary=candidates, typed=False)
    comparisons = {c.variant: c for c in lama_comparisons(result, by_variant, plan=lama_plan(list(by_variant)),
                                                          n_resamples=2000) if c.reference == "backbone"}
    detected = comparisons[POSITIVE_CONTROL_ROW]
    assert detected.delta >= 0.1 and detected.excludes_zero, detected
    assert comparisons["twin"].delta < detected.delta - 0.1
    assert probes[f"{POSITIVE_CONTROL_ROW} | seed 0"].gate_values()[POSITIVE_CONTROL] > 0.3
