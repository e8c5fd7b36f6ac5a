"""LAMA probing for causal LMs: prefixes of the real templates, the skip report, batching, the probe recipe, the demo's
message for a blank that is not last. Model-level checks use a tiny random Gemma-architecture LM (no download) with
the test byte-level BPE tokenizer; the Gemma checks themselves live in tests/test_gemma_probing.py."""
from collections import Counter

import pytest
import torch

from data_prep.lama import load_relations, load_trex_facts
from kadapter import AdapterConfig, KAdapterModel
from kadapter.probing import (
    BACKBONE_SOURCE, CandidateVocabulary, CausalLMProbe, CausalStates, add_control_adapter, build_causal_probe,
    causal_corpus_features, causal_forward, causal_lama_probe, causal_predict_topk, cloze_prefix, compare_topk,
    load_probe_set, object_is_last, own_head_probe, prefix_facts, prefix_ids, save_probe_set, template_prefix,
    train_variants, training_vocabulary, word_token_id,
)
from kadapter.probing.recipes import CausalRecipe, MaskedRecipe, probe_recipe
from kadapter.training import TrainConfig
from tokenizer_fixtures import roberta_bpe_tokenizer, tiny_random_gemma

NOT_LAST = {"P106", "P136", "P140", "P190", "P27", "P413"}  # LAMA T-REx relations whose [Y] is not the last word
SMALL_ADAPTER = AdapterConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)


# --------------------------------------------------------------------------------------------- prefixes, no model
def test_prefix_builder_on_the_real_templates():
    templates = load_relations()
    trex = {f["relation"] for f in load_trex_facts(limit=1)[0]}
    assert len(trex) == 41
    assert {r for r in trex if not object_is_last(templates[r]["template"])} == NOT_LAST
    assert template_prefix(templates["P19"]["template"], "Dante") == "Dante was born in"
    assert template_prefix(templates["P37"]["template"], "Mauritius") == "The official language of Mauritius is"
    assert template_prefix(templates["P36"]["template"], "France") == "The capital of France is"
    for relation in sorted(trex - NOT_LAST):  # the prefix + the object gives back the filled template
        template = templates[relation]["template"]
        prefix = template_prefix(template, "Xavier")
        assert template.replace("[X]", "Xavier").replace("[Y]", "Yoko").startswith(prefix + " Yoko"), relation
        assert "[" not in prefix
    with pytest.raises(ValueError, match="not the last word"):
        template_prefix(templates["P27"]["template"], "Dante")


def test_skipped_relations_are_reported_with_counts():
    facts, _ = load_trex_facts(["P19", "P27", "P106"], limit=7)
    kept, report = prefix_facts(facts)
    assert [f["relation"] for f in kept] == ["P19"] * 7
    assert kept[0]["prefix"] == f"{kept[0]['sub_label']} was born in"
    assert report["kept"] == 7 and report["skipped_facts"] == 14
    assert report["skipped_relations"] == {"P106": {"facts": 7, "template": "[X] is a [Y] by profession ."},
                                           "P27": {"facts": 7, "template": "[X] is [Y] citizen ."}}


def test_all_trex_facts_split_as_measured():
    facts, _ = load_trex_facts()
    kept, report = prefix_facts(facts)
    assert report["kept"] + report["skipped_facts"] == len(facts) == 29411
    assert set(report["skipped_relations"]) == NOT_LAST
    assert len({f["relation"] for f in kept}) == 35
    assert report["skipped_facts"] == sum(Counter(f["relation"] for f in facts)[r] for r in NOT_LAST)


def test_cloze_prefix_asks_only_for_a_final_blank():
    assert cloze_prefix("The capital of France is [MASK].") == "The capital of France is"
    assert cloze_prefix("Ravens can [MASK] !") == "Ravens can"
    with pytest.raises(ValueError, match=r"causal .* only fill a blank at the end"):
        cloze_prefix("[MASK] is the capital of France.")
    with pytest.raises(ValueError, match="followed by 'was born in Florence.'"):
        cloze_prefix("Dante [MASK] was born in Florence.")
    with pytest.raises(ValueError, match="exactly one"):
        cloze_prefix("no blank here")


# --------------------------------------------------------------------------------------- a tiny random causal LM
@pytest.fixture(scope="module")
def tiny():
    tokenizer = roberta_bpe_tokenizer()
    backbone = tiny_random_gemma(tokenizer)
    model = KAdapterModel(backbone, {"factual": SMALL_ADAPTER}, tokenizer=tokenizer)
    add_control_adapter(model, "factual", seed=3)
    return model


def test_recipe_follows_the_backbone_kind(tiny, minilm_path):
    assert isinstance(probe_recipe(tiny), CausalRecipe)
    assert isinstance(probe_recipe(KAdapterModel.from_backbone(minilm_path)), MaskedRecipe)


def test_left_padded_batch_equals_one_sequence_per_forward(tiny):
    tok = tiny.tokenizer
    sequences = [prefix_ids(tok, t) for t in ("Dante was born in", "The capital of France is", "Paris")]
    final, taps, mask = causal_forward(tiny.backbone, sequences, tok.pad_token_id, [0, 2])
    for row, seq in enumerate(sequences):
        alone, alone_taps, _ = causal_forward(tiny.backbone, [seq], tok.pad_token_id, [0, 2])
        real = mask[row].bool()
        assert torch.allclose(final[row, real], alone[0], atol=1e-5)
        assert torch.allclose(taps[2][row, real], alone_taps[2][0], atol=1e-4)


def test_states_are_computed_once_and_read_back(tiny, tmp_path):
    tok = tiny.tokenizer
    sequences = [prefix_ids(tok, t) for t in ("Dante was born in", "The capital of France is", "a b c d e f")]
    states = CausalStates.build(tiny.backbone, sequences, pad_id=tok.pad_token_id, taps=[0, 2], root=tmp_path,
                                batch_size=2)
    again = CausalStates.build(tiny.backbone, sequences, pad_id=tok.pad_token_id, taps=[0, 2], root=tmp_path)
    assert again.directory == states.directory and len(list(tmp_path.iterdir())) == 1
    live, _, _ = causal_forward(tiny.backbone, [sequences[1]], tok.pad_token_id)
    assert torch.allclose(states.last_final([1])[0], live[0, -1], atol=1e-5)
    other = CausalStates.build(tiny.backbone, sequences[:2], pad_id=tok.pad_token_id, taps=[0, 2], root=tmp_path)
    assert other.directory != states.directory  # other token ids: another folder, never a stale read


def test_own_head_probe_is_the_models_lm_head(tiny):
    tok = tiny.tokenizer
    ids = prefix_ids(tok, "The capital of France is")
    logits = tiny.backbone(input_ids=torch.tensor([ids])).logits[0, -1]
    final, _, _ = causal_forward(tiny.backbone, [ids], tok.pad_token_id)
    probe = own_head_probe(tiny)
    assert torch.allclose(probe({BACKBONE_SOURCE: final[:, -1]}).logits[0], logits, atol=1e-4)
    top = causal_predict_topk(tiny, probe, "The capital of France is [MASK].", k=3)
    assert [t for t, _ in top] == [tok.decode([int(i)]).strip() for i in logits.topk(3).indices]


def test_probe_variants_train_from_the_identity_on_cached_states(tiny, tmp_path):
    texts = ["The cat sat on the mat .", "I went to the store yesterday .", "He was born in a small town ."] * 4
    data = causal_corpus_features(tiny, texts, adapter_names=["factual", "factual_wo_knowledge"],
                                  states_root=tmp_path / "states")
    assert len(data) == sum(len(prefix_ids(tiny.tokenizer, t)) - 1 for t in texts)
    assert set(data.sources) == {BACKBONE_SOURCE, "factual", "factual_wo_knowledge"}
    vocab = training_vocabulary(data)
    variants = {"backbone": [], "+factual": ["factual"], "+factual (w/o knowledge)": ["factual_wo_knowledge"]}
    before = {v: build_causal_probe(tiny, names, loss_token_ids=vocab)(
        {k: data.sources[k][:4] for k in [BACKBONE_SOURCE, *names]}).logits for v, names in variants.items()}
    assert all(torch.allclose(b, before["backbone"]) for b in before.values())  # identity at start, all variants
    config = TrainConfig(output_dir=str(tmp_path / "train"), epochs=2, batch_size=16, learning_rate=1e-2,
                         progress=False, resume=False)
    recipe = CausalRecipe()
    probes, by_variant, summaries = train_variants(tiny, variants, data, seeds=[0], config=config,
                                                   build=recipe.builder(data), evaluate=recipe.evaluate, dev=data)
    steps = {n: len(r["history"]) for n, r in summaries[0]["runs"].items()}
    assert len(set(steps.values())) == 1
    for name in probes:
        assert probes[name].fusion.proj.weight.abs().sum() > 0  # it trained
    first, last = summaries[0]["runs"]["+factual | seed 0"]["history"][0], \
        summaries[0]["runs"]["+factual | seed 0"]["history"][-1]
    assert last["acc@10"] >= first["acc@10"] - 1e-9


def test_causal_lama_probe_reports_skips_and_scores_every_variant(tiny, tmp_path):
    facts, _ = load_trex_facts(["P276", "P27"], limit=20)
    tok = tiny.tokenizer
    objects = sorted({f["obj_label"] for f in facts})
    ids = sorted({word_token_id(tok, w) for w in objects} - {None})
    vocabulary = CandidateVocabulary(ids, "test objects", len(objects), {})
    probes = {"own": own_head_probe(tiny), "+factual": build_causal_probe(tiny, ["factual"], seed=1),
              "twin": build_causal_probe(tiny, ["factual_wo_knowledge"], seed=1)}
    result = causal_lama_probe(tiny, probes, facts, vocabulary=vocabulary, states_root=tmp_path)
    assert result["prompt"]["skipped_relations"] == {"P27": {"facts": 20, "template": "[X] is [Y] citizen ."}}
    assert set(result["facts"]["per_relation"]) == {"P276"}
    kept = result["facts"]["total"]
    assert kept + sum(result["selection"]["skipped"].values()) == 20
    assert set(result["models"]) == {"own", "+factual", "twin"} and "majority" in result
    # untrained probes with zero fusion all equal the model's own head
    ranks = [[p["rank"][n] for p in result["predictions"]] for n in ("own", "+factual", "twin")]
    assert ranks[0] == ranks[1] == ranks[2]
    again = causal_lama_probe(tiny, {"own": probes["own"]}, facts, vocabulary=vocabulary, states_root=tmp_path)
    assert again["states"]["folder"] == result["states"]["folder"]


def test_causal_probe_set_roundtrip(tiny, tmp_path):
    probe = build_causal_probe(tiny, ["factual"], seed=0, loss_token_ids=[1, 2, 3])
    with torch.no_grad():
        probe.fusion.proj.weight.normal_()
    save_probe_set(tiny, {"+factual": probe, "own": own_head_probe(tiny)}, tmp_path / "set")
    model, probes = load_probe_set(tmp_path / "set", backbone=tiny.backbone)
    model.tokenizer = model.tokenizer or tiny.tokenizer  # the tiny random backbone has no folder to load one from
    assert isinstance(probes["+factual"], CausalLMProbe)
    text = "The capital of France is [MASK]."
    assert compare_topk(model, probes, text, k=5) == compare_topk(tiny, {"+factual": probe,
                                                                         "own": own_head_probe(tiny)}, text, k=5)


def test_demo_says_why_a_mid_sentence_blank_cannot_be_asked(tiny):
    from kadapter.demo import ProbingDemo

    demo = ProbingDemo(tiny, {"own": own_head_probe(tiny)}, k=3)
    demo.text.value = "[MASK] is the capital of France."
    assert demo.last_results == {} or demo.message.value
    assert "causal" in demo.message.value and "end of the sentence" in demo.message.value
    demo.text.value = "The capital of France is [MASK]."
    assert demo.message.value == "" and len(demo.last_results["own"]) == 3
