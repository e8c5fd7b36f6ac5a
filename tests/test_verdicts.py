"""Issue 17 part B: every probe variant starts as the backbone, the probe budget is chosen on dev for the backbone
variant, paired statistics per fact and per dev example, and verdict sentences computed from them."""
import numpy as np
import pytest
import torch

from kadapter import AdapterConfig, KAdapterModel
from kadapter.probing import (BACKBONE_SOURCE, build_probe, general_corpus,
                              masked_corpus_features)

from probing_fixtures import minilm  # noqa: F401 (minilm is a pytest fixture)


@pytest.fixture(scope="module")
def corpus(minilm):
    texts, _ = general_corpus(40, seed=3)
    return masked_corpus_features(minilm, texts)


# ------------------------------------------------------------------------------ the masked recipe at step 0
def test_masked_variants_give_identical_outputs_at_step_0(minilm, corpus):
    """Before training, the backbone's probe and every adapter variant's probe of one seed are the same function
    of the backbone's features, whatever the adapters output (made far from zero here: the probe reads their
    learned parts, ~0 for a fresh draw). The concat fusion here (identity at start); the recipe's gated probes from
    the own head: the next test."""
    generator = torch.Generator().manual_seed(0)
    sources = {**corpus.sources, **{name: torch.randn(corpus.sources[name].shape, generator=generator)
                                    for name in ("factual", "factual_wo_knowledge")}}
    probes = {name: build_probe(minilm, adapters, seed=4, fusion="concat") for name, adapters in
              {"backbone": [], "+F": ["factual"], "+F twin": ["factual_wo_knowledge"],
               "+F+twin": ["factual", "factual_wo_knowledge"]}.items()}
    with torch.no_grad():
        logits = {name: probe(probe.inputs(sources)).logits for name, probe in probes.items()}
    for name, value in logits.items():
        torch.testing.assert_close(value, logits["backbone"], rtol=0, atol=1e-5, msg=name)
    # ... and they can still move apart: the adapter's input gets a gradient at step 0.
    probe = probes["+F"]
    probe(probe.inputs(sources), labels=corpus.labels).loss.backward()
    grad = probe.fusion.per_adapter["factual"].weight.grad
    assert grad[:, minilm.hidden_size:].abs().sum() > 0


def test_masked_recipe_starts_every_probe_from_the_encoders_own_head(minilm, corpus, tmp_path):
    """MiniLM ships no MLM head: the recipe trains one on the backbone alone, and every variant's probe starts from
    a copy of it, reading h + Σ g·ℓ (gates at zero, no weight matrix): equal at step 0, apart once trained, saved
    and loaded as such. Before this every probe was a fresh head draw and the positive control read as 0 (issue 17)."""
    from kadapter.probing import MaskedLMProbe
    from kadapter.probing.recipes import MaskedRecipe

    texts, _ = general_corpus(40, seed=3)
    recipe = MaskedRecipe()
    fresh = recipe.builder()(minilm, [], seed=4)  # not prepared: a fresh draw
    source = recipe.prepare(minilm, texts, epochs=1, learning_rate=3e-3, output_dir=tmp_path / "head")
    assert "no MLM head shipped" in source
    generator = torch.Generator().manual_seed(0)
    sources = {**corpus.sources, **{name: torch.randn(corpus.sources[name].shape, generator=generator)
                                    for name in ("factual", "factual_wo_knowledge")}}
    build = recipe.builder()
    probes = {name: build(minilm, adapters, seed=4) for name, adapters in
              {"backbone": [], "+F": ["factual"], "+F+twin": ["factual", "factual_wo_knowledge"]}.items()}
    with torch.no_grad():
        logits = {name: probe(probe.inputs(sources)).logits for name, probe in probes.items()}
        own = recipe.head(sources[BACKBONE_SOURCE])
        drawn = fresh(fresh.inputs(sources)).logits
    for name, value in logits.items():
        torch.testing.assert_close(value, own, rtol=0, atol=1e-5, msg=name)
    assert not torch.allclose(drawn, own, atol=1e-3)  # the own head is trained, not the seed's draw
    probe = probes["+F"]
    assert probe.fusion is None and probe.gate_values() == {"factual": 0.0}
    probe(probe.inputs(sources), labels=corpus.labels).loss.backward()
    assert float(probe.gates.raw.grad.abs().sum()) > 0  # the gate moves
    with torch.no_grad():
        probe.head.bias.add_(1.0)  # each probe trains its own copy; the recipe's head stays as it was
        probe.gates.raw.fill_(0.005)
    torch.testing.assert_close(recipe.head(sources[BACKBONE_SOURCE]), own)
    loaded = MaskedLMProbe.from_pretrained(probe.save_pretrained(tmp_path / "probe"), minilm)
    assert loaded.fusion_mode == "gates" and loaded.gate_values() == pytest.approx({"factual": 0.5})
    with torch.no_grad():
        torch.testing.assert_close(loaded(loaded.inputs(sources)).logits, probe(probe.inputs(sources)).logits)


# ------------------------------------------------------------------------------ which comparisons, on which items
def _hand_result():
    """Two relations; per fact the rank of the gold object for each probe (2 seeds of "backbone" and "+F", one
    "+F (w/o knowledge)") and the majority baseline's rank."""
    ranks = {  # fact -> (relation, backbone s0, backbone s1, +F s0, +F s1, twin, majority)
        0: ("P19", 1, 1, 1, 1, 2, 1), 1: ("P19", 2, 3, 1, 1, 1, 4), 2: ("P19", 5, 1, 1, 2, 3, 1),
        3: ("P36", 1, 2, 2, 1, 1, 2), 4: ("P36", 4, 4, 1, 1, 9, 1),
    }
    names = ["backbone | seed 0", "backbone | seed 1", "+F | seed 0", "+F | seed 1", "+F (w/o knowledge) | seed 0"]
    predictions = [{"relation": r[0], "rank": dict(zip(names, r[1:6])), "majority_rank": r[6]}
                   for r in ranks.values()]
    by_variant = {"backbone": names[:2], "+F": names[2:4], "+F (w/o knowledge)": names[4:]}
    return {"predictions": predictions}, by_variant


def test_lama_comparisons_hand_computed():
    from kadapter.comparisons import MAJORITY, lama_comparisons, lama_scores

    result, by_variant = _hand_result()
    scores = lama_scores(result, by_variant)
    np.testing.assert_array_equal(scores["backbone"], [[1, 0, 0, 1, 0], [1, 0, 1, 0, 0]])
    np.testing.assert_array_equal(scores[MAJORITY], [[1, 0, 1, 0, 1]])
    found = {(c.reference, c.variant): c for c in lama_comparisons(result, by_variant, n_resamples=2000)}
    c = found[("backbone", "+F")]
    # macro P@1 over relations, mean over the 2 seeds: backbone P19 (1/3 + 2/3)/2 = 0.5, P36 (1/2 + 0)/2 = 0.25
    # -> 0.375; +F P19 (1 + 2/3)/2 = 5/6, P36 (1/2 + 1)/2 = 0.75 -> 19/24
    assert c.reference_score == pytest.approx(0.375) and c.variant_score == pytest.approx(19 / 24)
    assert c.delta == pytest.approx(19 / 24 - 0.375)
    # discordant pairs pooled over seeds: seed 0 +F-only facts 1, 2, 4, backbone-only 3; seed 1 +F-only 1, 3, 4,
    # backbone-only 2
    assert (c.variant_only, c.reference_only, c.n_seeds, c.n_items) == (6, 2, 2, 5)
    assert c.p_mcnemar == pytest.approx(2 * (1 + 8 + 28) / 256)  # 2 · P(Binom(8, ½) ≤ 2)
    assert c.ci_low <= c.delta <= c.ci_high
    # a one-run row (the twin, the majority object) is compared with every seed of the other
    twin = found[("+F (w/o knowledge)", "+F")]
    assert twin.n_seeds == 2 and twin.reference_score == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert found[("backbone", MAJORITY)].variant_score == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_lama_plan_names_every_question():
    from kadapter.comparisons import lama_plan

    variants = ["backbone", "backbone (own LM head, untouched)", "+factual", "+factual (w/o knowledge)",
                "+factual (norm-matched)", "+factual_paper", "+factual_paper (w/o knowledge)", "positive control"]
    pairs = {(p.reference, p.variant) for p in lama_plan(variants)}
    assert {("backbone", v) for v in variants[1:]} <= pairs
    assert ("+factual (w/o knowledge)", "+factual") in pairs and ("+factual (norm-matched)", "+factual") in pairs
    assert ("+factual_paper (w/o knowledge)", "+factual_paper") in pairs
    assert ("+factual (w/o knowledge)", "+factual_paper") not in pairs  # a twin is its own adapter's control
    assert ("positive control", "+factual") in pairs and ("+factual", "+factual_paper") in pairs
    assert len(pairs) == 7 + 2 + 1 + 2 + 1  # vs backbone, +F's controls, paper's twin, vs positive control ×2, paper


def test_pretraining_keeps_per_item_dev_outcomes_and_compares_them(minilm_path, tmp_path):
    """Real FewRel sentences, the real MiniLM: each model's dev_correct agrees with its reported accuracy, and the
    adapter is compared with the head alone and with its twin on the same dev examples."""
    from datasets import DatasetDict

    from data_prep.eval_sets import load_fewrel
    from kadapter.comparisons import pretraining_comparisons, pretraining_plan
    from kadapter.pretraining import BASELINE, PretrainConfig, pretrain_adapters, random_twin_name

    dataset, _ = load_fewrel()
    dataset = dataset.filter(lambda r: r["relation"] in ("P26", "P40", "P25", "P361")).shuffle(seed=0)
    data = DatasetDict({"train": dataset.select(range(48)), "dev": dataset.select(range(48, 72))})
    config = PretrainConfig(output_dir=str(tmp_path), max_length=32, epochs=2, batch_size=16, learning_rate=1e-3,
                            cache_root=str(tmp_path / "cache"), progress=False, device="cpu")
    tiny = AdapterConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)
    results = pretrain_adapters("factual", data, {"factual": tiny, BASELINE: None}, config,
                                encoder=KAdapterModel.from_backbone(minilm_path), random_twins=["factual"])
    twin = random_twin_name("factual")
    for name, entry in results["models"].items():
        assert len(entry["dev_correct"]) == 24 and set(entry["dev_correct"]) <= {0, 1}
        assert np.mean(entry["dev_correct"]) == pytest.approx(entry["dev"]["accuracy"]), name
    pairs = [(p.reference, p.variant) for p in pretraining_plan(results)]
    assert pairs == [(BASELINE, "factual"), (twin, "factual"), (BASELINE, twin)]
    comparisons = pretraining_comparisons(results, n_resamples=500)
    first = comparisons[0]
    assert first.metric == "accuracy" and first.n_items == 24 and first.p_mcnemar is not None
    assert first.delta == pytest.approx(results["models"]["factual"]["dev"]["accuracy"]
                                        - results["models"][BASELINE]["dev"]["accuracy"])


# ------------------------------------------------------------------------------ the probe's training budget
def test_probe_budget_is_chosen_on_dev_for_the_backbone_and_applied_to_every_variant(minilm, corpus, tmp_path):
    from kadapter.probing import seed_name, train_variants
    from kadapter.probing.budget import apply_budget, choose_probe_budget, probe_dev_loss
    from kadapter.training import TrainConfig

    train_data, dev_data = corpus.split_by_group(0.25, seed=0)
    config = TrainConfig(output_dir=str(tmp_path / "budget"), epochs=1, batch_size=64, learning_rate=1.0,
                         warmup_ratio=0.0, seed=0, progress=False, resume=False)
    budget = choose_probe_budget(minilm, build_probe, train_data, dev_data, config, learning_rates=[1e-6, 3e-3],
                                 max_epochs=3)
    curve = budget["curve"]
    assert [(p["learning_rate"], p["epoch"]) for p in curve] == [(r, e) for r in (1e-6, 3e-3) for e in range(4)]
    trained = [p for p in curve if p["epoch"] > 0]
    assert budget["dev_loss"] == min(p["dev_loss"] for p in trained)
    # a rate too small to move the head loses to one that learns; the start is the same draw for both rates
    assert budget["learning_rate"] == 3e-3 and curve[0]["dev_loss"] == pytest.approx(curve[4]["dev_loss"])
    assert budget["steps"] == budget["epochs"] * budget["steps_per_epoch"]
    # the loss it reports is the probe's own loss on dev, recomputed here for a fresh probe
    assert curve[0]["dev_loss"] == pytest.approx(probe_dev_loss(build_probe(minilm, [], seed=0), dev_data))
    final = apply_budget(TrainConfig(output_dir=str(tmp_path / "final"), batch_size=64, seed=0, progress=False,
                                     resume=False), budget)
    probes, by_variant, summaries = train_variants(
        minilm, {"backbone": [], "+F": ["factual"]}, train_data, seeds=[0], config=final)
    assert summaries[0]["steps"] == budget["steps"]
    for name in (seed_name("backbone", 0), seed_name("+F", 0)):
        assert probes[name].recipe["training"]["learning_rate"] == 3e-3
        assert probes[name].recipe["training"]["epochs"] == budget["epochs"]


def test_probe_budget_on_the_causal_recipe(tmp_path):
    """The same search through the causal recipe (a tiny random Gemma-architecture LM): the dev loss is the
    next-token loss over the probe's softmax vocabulary, defined on every dev position."""
    from kadapter.probing import causal_corpus_features, general_corpus
    from kadapter.probing.budget import choose_probe_budget
    from kadapter.probing.recipes import CausalRecipe
    from kadapter.training import TrainConfig
    from tokenizer_fixtures import roberta_bpe_tokenizer, tiny_random_gemma

    tokenizer = roberta_bpe_tokenizer()
    backbone = tiny_random_gemma(tokenizer)
    model = KAdapterModel(backbone, tokenizer=tokenizer)
    texts, _ = general_corpus(30, seed=1)
    data = causal_corpus_features(model, texts, max_length=24, states_root=tmp_path / "states")
    train_data, dev_data = data.split_by_group(0.3, seed=0)
    recipe = CausalRecipe()
    config = TrainConfig(output_dir=str(tmp_path / "budget"), batch_size=32, seed=0, progress=False, resume=False)
    budget = choose_probe_budget(model, recipe.builder(data), train_data, dev_data, config,
                                 learning_rates=[1e-2], max_epochs=2, fusion=None, evaluate=recipe.evaluate)
    start, *trained = budget["curve"]
    assert start["steps"] == 0 and min(p["dev_loss"] for p in trained) < start["dev_loss"]
    assert budget["epochs"] in (1, 2) and "acc@1" in start


def test_comparison_figure_draws_each_interval():
    from kadapter.plotting import comparison_figure
    from kadapter.statistics import compare

    a = compare([0, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 0], reference_name="backbone", variant_name="+F",
                n_resamples=500)
    b = compare([0.5, 0.7, 0.2], [0.4, 0.9, 0.3], reference_name="twin", variant_name="+F", metric="UAS",
                n_resamples=500)
    trace = comparison_figure([a, b]).data[0]
    assert list(trace.y) == ["+F − backbone", "+F − twin"]
    assert trace.x[0] == pytest.approx(a.delta) and trace.error_x.array[0] == pytest.approx(a.ci_high - a.delta)
    assert trace.error_x.arrayminus[1] == pytest.approx(b.delta - b.ci_low)


# ------------------------------------------------------------------------------ the paper's condition
def test_paper_condition_keeps_the_probe_facts_the_held_out_set_removes():
    """Real LAMA T-REx evidence: with hold_out_probe=False (the paper's condition) the pre-training data keeps
    examples that state probe facts, and the data report says which condition it is."""
    from kadapter.pretraining import load_task_data

    options = {"sources": ["lama_trex_evidence"], "limit": 5, "min_examples": 2, "relations": ["P19", "P36"]}
    held, held_report = load_task_data("factual", factual_build=options)
    paper, paper_report = load_task_data("factual", factual_build={**options, "hold_out_probe": False})
    assert held_report["hold_out_probe"] is True and "held out" in held_report["source"]
    assert paper_report["hold_out_probe"] is False and "NOT held out" in paper_report["source"]
    assert paper_report["holdout"] is None and held_report["holdout"]["examples_removed"] > 0
    size = lambda data: len(data["train"]) + len(data["dev"])
    # every evidence sentence of these facts states a probe fact: held out, nothing of them is left
    assert size(held) < size(paper)
