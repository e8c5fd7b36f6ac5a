"""Factual-knowledge records from the real LAMA T-REx evidences, FewRel and Re-DocRED, and the pre-training set
builder (P31 dropped, minimum count, seeded split, LAMA probe held out), plus broken inputs."""
import json
import re
from collections import Counter

import pytest
from datasets import load_from_disk

from data_prep.alignment import insert_markers, simple_tokenize, surface_key
from data_prep.factual import (DEFAULT_SOURCES, KNOWN_SOURCES, ProbeFacts, build_factual_dataset, collect_records,
                               build_steps, drop_eval_sentences, eval_sentences, fewrel_examples,
                               hold_out_probe_facts,
                               load_redocred, redocred_aligned_examples, redocred_examples, save_factual_dataset,
                               trex_evidence_examples)
from data_prep.lama import load_trex_evidence
from data_prep.paths import data_path
from data_prep.records import RC_FIELDS, validate_rc_record
from data_prep.report import DataFormatError, SkipReport


def marked_entities(record):
    marked, s, o = insert_markers(record["tokens"], record["subj_start"], record["subj_end"], record["obj_start"],
                                  record["obj_end"])
    subj = marked[s + 1:marked.index("@", s + 1)]
    obj = marked[o + 1:marked.index("#", o + 1)]
    return " ".join(subj), " ".join(obj)


# ---------------------------------------------------------------------------------------------------- LAMA T-REx


def test_trex_evidence_records_real():
    records, report = trex_evidence_examples(["P19", "P108"], limit=300)
    facts, _ = load_trex_evidence(["P19", "P108"], limit=300)
    assert report.kept + report.total_skipped == sum(len(f["evidences"]) for f in facts)
    assert report.kept == len(records) > 1500 and report.total_skipped < 0.01 * report.kept
    peiper = next(r for r in records if r["subj_id"] == "Q1886736")
    assert marked_entities(peiper) == ("Allan Peiper", "Alexandra , Victoria")
    assert (peiper["relation"], peiper["obj_id"], peiper["source"]) == ("P19", "Q2643563", "lama_trex_evidence")
    assert re.fullmatch(r"lama_trex_evidence:[\w-]+:\d+", peiper["id"]) and peiper["id"].split(":")[1] in \
        {f["uuid"] for f in facts if f["sub_uri"] == "Q1886736"}
    assert len({r["id"] for r in records}) == len(records) and all(validate_rc_record(r) for r in records)
    by_uri = {(f["sub_uri"], f["obj_uri"]): f for f in facts}
    for r in records:
        fact = by_uri[(r["subj_id"], r["obj_id"])]
        subj = surface_key(r["tokens"][r["subj_start"]:r["subj_end"]])
        assert subj in {surface_key(e["sub_surface"]) for e in fact["evidences"]} | {surface_key(fact["sub_label"])}
        assert r["tokens"][r["obj_start"]:r["obj_end"]] in [simple_tokenize(e["obj_surface"])
                                                            for e in fact["evidences"]]


def test_trex_evidence_counted_skips():
    fact = {"uuid": "u", "relation": "P19", "sub_uri": "Q1", "obj_uri": "Q2", "sub_label": "Dante Alighieri",
            "obj_label": "Florence", "evidences": [
                {"sub_surface": "Dante", "obj_surface": "Florence", "masked_sentence": "Dante was born in [MASK]."},
                {"sub_surface": "Dante", "obj_surface": "Florence", "masked_sentence": "He was born in [MASK]."},
                {"sub_surface": "Dante", "obj_surface": "Florence", "masked_sentence": "Dante left [MASK] for [MASK]."},
                {"sub_surface": "Durante", "obj_surface": "Florence",
                 "masked_sentence": "Dante Alighieri was born in [MASK]."},  # found by label
                {"sub_surface": "Florence", "obj_surface": "Florence", "masked_sentence": "Born in [MASK]."},
            ]}
    records, report = trex_evidence_examples(facts=[fact])
    assert [marked_entities(r) for r in records] == [("Dante", "Florence"), ("Dante Alighieri", "Florence")]
    assert report.skipped == {"subject not found in the sentence": 2,
                              "masked_sentence has 2 [MASK] (needs exactly 1)": 1}
    again = SkipReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.to_dict() == report.to_dict() and str(again) == str(report)


# ---------------------------------------------------------------------------------------------------- FewRel


def test_fewrel_val_wiki_real():
    records, report = fewrel_examples()
    assert len(records) == 11200 and report.total_skipped == 0
    counts = Counter(r["relation"] for r in records)
    assert len(counts) == 16 and set(counts.values()) == {700}
    assert all(re.fullmatch(r"Q\d+", r["subj_id"]) and re.fullmatch(r"Q\d+", r["obj_id"]) for r in records)
    assert records[0]["id"] == "fewrel_val_wiki:P177-0" and len({r["id"] for r in records}) == 11200
    habsburg = next(r for r in records if r["relation"] == "P26" and r["subj_id"] == "Q1276954"
                    and r["tokens"][0] == "His")
    assert marked_entities(habsburg) == ("Francesca von Habsburg", "Karl von Habsburg")
    assert insert_markers(habsburg["tokens"], habsburg["subj_start"], habsburg["subj_end"], habsburg["obj_start"],
                          habsburg["obj_end"])[0] == \
        "His parents are # Karl von Habsburg # and @ Francesca von Habsburg @ .".split()
    assert len(fewrel_examples(relations=["P26", "P40"], limit=10)[0]) == 20


def fewrel_file(tmp_path, instance, relation="P26"):
    """A FewRel-format file whose second instance (line 3) is ``instance``."""
    path = tmp_path / "fewrel.json"
    good = {"tokens": ["A", "married", "B", "."], "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[2]]]}
    path.write_text(f'{{"{relation}": [\n{json.dumps(good)},\n{json.dumps(instance)}\n]}}\n')
    return path


@pytest.mark.parametrize("instance, reason", [
    ({"tokens": ["A", "B", "C"], "h": ["a", "Q1", [[2, 1]]], "t": ["b", "Q2", [[0]]]}, "non-contiguous span"),
    ({"tokens": ["A", "B", "C"], "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[3, 4]]]}, "span outside the sentence"),
    ({"tokens": [], "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[1]]]}, "empty text"),
    ({"tokens": ["A", "B", "C"], "h": ["a b", "Q1", [[0, 1]]], "t": ["b", "Q2", [[1]]]},
     "subject and object spans overlap"),
])
def test_fewrel_unusable_instances_are_counted_or_raise_when_strict(tmp_path, instance, reason):
    records, report = fewrel_examples(fewrel_file(tmp_path, instance))
    assert len(records) == 1 and report.skipped == {reason: 1} and report.source == "fewrel_val_wiki"
    with pytest.raises(DataFormatError, match=rf"fewrel\.json, line 3: .*{reason}"):
        fewrel_examples(fewrel_file(tmp_path, instance), strict=True)


@pytest.mark.parametrize("instance, field, message", [
    ({"tokens": "A B C", "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[1]]]}, "tokens", "expected list"),
    ({"tokens": ["A", "B"], "t": ["b", "Q2", [[1]]]}, "h", "missing"),
    ({"tokens": ["A", "B"], "h": ["a", 7, [[0]]], "t": ["b", "Q2", [[1]]]}, "h", r"expected \[name, id"),
])
def test_fewrel_malformed_instances_raise(tmp_path, instance, field, message):
    with pytest.raises(DataFormatError, match=rf"fewrel\.json, line 3: field '{field}': .*{message}"):
        fewrel_examples(fewrel_file(tmp_path, instance))


def test_fewrel_truncated_file_and_unknown_relation(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"P26": [{"tokens": ["A"\n, "B"], "h": ')
    with pytest.raises(DataFormatError, match=r"cut\.json, line 1: malformed JSON"):
        fewrel_examples(path)
    good = {"tokens": ["A", "B"], "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[1]]]}
    with pytest.raises(DataFormatError, match=r"field 'relation': unknown relation\(s\) \['Pxyz'\]"):
        fewrel_examples(fewrel_file(tmp_path, good, relation="Pxyz"))


# ---------------------------------------------------------------------------------------------------- Re-DocRED


@pytest.fixture(scope="module")
def redocred_dev():
    return load_redocred("dev")


def test_redocred_gold_records_real(redocred_dev):
    records, report = redocred_examples(redocred_dev)
    # 8,614 (fact, sentence) pairs with head and tail in one sentence; 6 have overlapping mentions only.
    assert len(records) == 8608 and report.skipped == {"head and tail mentions overlap": 6}
    assert len({r["relation"] for r in records}) > 80
    first = [r for r in records if r["subj_id"] == "redocred_dev:0:E0" and r["relation"] == "P19"]
    assert [marked_entities(r) for r in first] == [('Wilfried " Willi " Schneider', "Mediaș")]
    label = next(k for k, lab in enumerate(redocred_dev[0]["labels"]) if lab["r"] == "P19" and lab["h"] == 0)
    assert re.fullmatch(rf"redocred_dev:0:s\d+:t{label}", first[0]["id"])
    assert len({r["id"] for r in records}) == len(records) and all(validate_rc_record(r) for r in records)
    aligned, _ = redocred_aligned_examples(redocred_dev)
    assert len(aligned) == 8665  # measured; the aligner's example precision/recall is in test_data_alignment


def redocred_file(tmp_path, doc):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps([doc]))
    return path


@pytest.mark.parametrize("breakage, field, message", [
    (lambda d: d["vertexSet"][0][0].update(pos=[5, 0]), r"doc 0\.vertexSet\[0\]\[0\]\.pos", "reversed"),
    (lambda d: d["vertexSet"][1][0].update(pos=[0, 99]), r"doc 0\.vertexSet\[1\]\[0\]\.pos", "outside sentence"),
    (lambda d: d["vertexSet"][1][0].update(sent_id=42), r"doc 0\.vertexSet\[1\]\[0\]\.sent_id", "out of range"),
    (lambda d: d["vertexSet"][1][0].pop("name"), r"doc 0\.vertexSet\[1\]\[0\]\.name", "missing"),
    (lambda d: d["labels"][0].update(r="P99999"), r"doc 0\.labels\[0\]\.r", "unknown relation"),
    (lambda d: d["labels"][0].update(h=500), r"doc 0\.labels\[0\]\.h", "out of range"),
    (lambda d: d["sents"].__setitem__(3, []), r"doc 0\.sents\[3\]", "empty text"),
])
def test_redocred_broken_documents(tmp_path, redocred_dev, breakage, field, message):
    doc = json.loads(json.dumps(redocred_dev[0]))
    breakage(doc)
    with pytest.raises(DataFormatError, match=rf"doc\.json: field '{field}': .*{message}"):
        load_redocred(path=redocred_file(tmp_path, doc))


def test_redocred_truncated_file(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(data_path("redocred", "dev_revised.json").read_text()[:5000])
    with pytest.raises(DataFormatError, match=r"cut\.json, line 1: not valid JSON"):
        load_redocred(path=path)


# ---------------------------------------------------------------------------------------------------- builder


def test_default_sources_leave_out_the_fewrel_evaluation_set():
    # FewRel val_wiki is a relation-classification evaluation set: pre-training on it would leak
    assert DEFAULT_SOURCES == ("lama_trex_evidence", "redocred_dev", "redocred_test")
    assert "fewrel_val_wiki" in KNOWN_SOURCES and not any("fewrel" in s for s in DEFAULT_SOURCES)
    records, reports = collect_records(limit=2)
    assert set(reports) == set(DEFAULT_SOURCES) == {r["source"] for r in records}
    assert all(tuple(r)[:len(RC_FIELDS)] == RC_FIELDS for r in records)
    with pytest.raises(ValueError, match="fewrel_val_wiki"):
        collect_records(["fewrel"])


def squashed(text):
    return re.sub(r"\s+", "", text).lower()


@pytest.fixture(scope="module")
def independent_probe():
    """The LAMA probe read straight from the files: the entity pairs (unordered, any relation) of all 29,411 facts,
    by label and by Wikidata ids via uuid."""
    labels, uuids = set(), set()
    for path in data_path("lama", "TREx_lms_vocab").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            fact = json.loads(line)
            labels.add(frozenset((squashed(fact["sub_label"]), squashed(fact["obj_label"]))))
            uuids.add(fact["uuid"])
    ids = set()
    for path in data_path("lama", "TREx").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            fact = json.loads(line)
            if fact["uuid"] in uuids:
                ids.add(frozenset((fact["sub_uri"], fact["obj_uri"])))
    return labels, ids


def states_probe_fact(record, probe):
    """Whether the record's two entities are a probe fact's, whatever its relation and order."""
    labels, ids = probe
    tokens = record["tokens"]
    label = frozenset((squashed("".join(tokens[record["subj_start"]:record["subj_end"]])),
                       squashed("".join(tokens[record["obj_start"]:record["obj_end"]]))))
    return label in labels or frozenset((record["subj_id"], record["obj_id"])) in ids


@pytest.fixture(scope="module")
def probe():
    return ProbeFacts.from_lama()


@pytest.fixture(scope="module")
def subset_records():
    relations = ["P19", "P27", "P31", "P106", "P413", "P463", "P26"]
    records, reports = collect_records(("lama_trex_evidence", "fewrel_val_wiki", "redocred_dev"), limit=150,
                                       relations=relations)
    return records


def test_probe_facts_from_lama(probe, independent_probe):
    # 29,411 facts; 28,547 distinct entity pairs (either order) once labels are compared case- and space-insensitively
    assert probe.n_facts == 29411 and probe.n_pairs == len(independent_probe[0]) == 28547
    assert len({frozenset(pair) for pair in probe.by_id}) == len(independent_probe[1])  # lama/TREx, joined by uuid
    stated = {"tokens": "Eibenstock is a town in Germany .".split(), "subj_start": 0, "subj_end": 1,
              "obj_start": 5, "obj_end": 6, "relation": "P17", "subj_id": "redocred_dev:1:E0",
              "obj_id": "redocred_dev:1:E1", "source": "hand"}
    assert probe.match(stated) == ("label", ("P17", "eibenstock", "germany"))
    # the same entity pair under another relation, or in the other order, states the fact too
    assert probe.match({**stated, "relation": "P131"}) == ("label", ("P17", "eibenstock", "germany"))
    assert probe.match({**stated, "subj_start": 5, "subj_end": 6, "obj_start": 0, "obj_end": 1})[0] == "label"
    assert probe.match({**stated, "obj_start": 4, "obj_end": 5}) is None
    peiper = {**stated, "relation": "P19", "subj_id": "Q1886736", "obj_id": "Q2643563"}
    assert probe.match(peiper)[0] == "id"


def test_hold_out_removes_exactly_the_probe_facts(subset_records, probe, independent_probe):
    records = [r for r in subset_records if r["relation"] != "P31"]
    kept, report = hold_out_probe_facts(records, probe)
    kept_ids = {id(r) for r in kept}
    removed = [r for r in records if id(r) not in kept_ids]
    assert report["examples_removed"] == len(removed) > 500
    assert report["removed_by_id"] + report["removed_by_label"] == len(removed)
    assert {"lama_trex_evidence", "fewrel_val_wiki"} <= set(report["removed_per_source"])
    assert all(states_probe_fact(r, independent_probe) for r in removed)
    assert not any(states_probe_fact(r, independent_probe) for r in kept)


def test_builder_rules_split_and_save(subset_records, probe, independent_probe, tmp_path):
    dataset, report = build_factual_dataset(subset_records, probe=probe, min_examples=50, seed=13)
    train, dev = dataset["train"], dataset["dev"]
    rows = train.to_list() + dev.to_list()
    assert report["dropped_relation_examples"]["P31"] > 0 and "P31" not in set(train["relation"])
    counts = Counter(r["relation"] for r in rows)
    assert min(counts.values()) >= 50 and report["relations_below_min"]
    assert not set(report["relations_below_min"]) & set(counts)
    assert {rel: c["train"] + c["dev"] for rel, c in report["per_relation"].items()} == dict(counts)
    assert (report["train"], report["dev"]) == (len(train), len(dev)) and 0.07 < len(dev) / len(rows) < 0.13
    assert not any(states_probe_fact(r, independent_probe) for r in rows)
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == len(rows)  # de-duplicated
    # split by fact: a (relation, subject, object) fact is never on both sides
    def facts(split):
        def entity(r, side):
            return r[f"{side}_id"] if re.fullmatch(r"Q\d+", r[f"{side}_id"]) else \
                surface_key(r["tokens"][r[f"{side}_start"]:r[f"{side}_end"]])
        return {(r["relation"], entity(r, "subj"), entity(r, "obj")) for r in split.to_list()}
    assert facts(dev) and not facts(train) & facts(dev)
    again, _ = build_factual_dataset(subset_records, probe=probe, min_examples=50, seed=13)
    assert again["dev"].to_list() == dev.to_list() and again["train"].to_list() == train.to_list()
    other, _ = build_factual_dataset(subset_records, probe=probe, min_examples=50, seed=14)
    assert other["dev"].to_list() != dev.to_list()
    steps = build_steps(report)
    assert [s["step"] for s in steps] == ["collected from the sources", "dropped relations P31",
                                          "LAMA probe facts held out", "duplicates removed",
                                          "relations under 50 examples dropped"]
    assert steps[0]["left"] == len(subset_records) and steps[-1]["left"] == len(rows)
    assert steps[2]["removed"] == report["holdout"]["examples_removed"] > 0
    stats = save_factual_dataset(dataset, report, tmp_path / "factual")
    assert load_from_disk(str(tmp_path / "factual"))["dev"].to_list() == dev.to_list()
    assert json.loads(stats.read_text())["per_relation"] == report["per_relation"]


def test_builder_options_without_holdout(subset_records):
    dataset, report = build_factual_dataset(subset_records, drop_relations=(), min_examples=1, dedupe=False,
                                            dev_fraction=0.0)
    assert "holdout" not in report and len(dataset["dev"]) == 0
    assert [s["removed"] for s in build_steps(report)] == [0, 0, 0]  # collected, no relation dropped, none < 1
    assert len(dataset["train"]) == len(subset_records) and "P31" in set(dataset["train"]["relation"])


def test_fewrel_sentences_in_lama_evidence_are_kept_out(data_root):
    # Wikipedia sentences recur: some LAMA T-REx evidences (P413: 10 records) are FewRel val_wiki test sentences.
    raw = json.loads((data_root / "fewrel" / "val_wiki.json").read_text())
    fewrel = {"".join(i["tokens"]).lower() for instances in raw.values() for i in instances}
    records, _ = trex_evidence_examples(["P413"])
    in_fewrel = [r for r in records if "".join(r["tokens"]).lower() in fewrel]
    assert len(in_fewrel) == 10
    kept, report = drop_eval_sentences(records, eval_sentences(("fewrel_val_wiki",)))
    assert len(kept) == len(records) - 10 and not any("".join(r["tokens"]).lower() in fewrel for r in kept)
    assert report["removed_per_source"] == {"lama_trex_evidence": 10} == {
        "lama_trex_evidence": report["removed_per_eval_set"]["fewrel_val_wiki"]}
    _, built = build_factual_dataset(records, min_examples=1, exclude_sentences=eval_sentences(("fewrel_val_wiki",)))
    assert built["eval_overlap"]["examples_removed"] == 10 and built["train"] + built["dev"] < len(records)
    with pytest.raises(ValueError, match="unknown evaluation set"):
        eval_sentences(("tacred",))
