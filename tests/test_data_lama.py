"""LAMA loaders on the real shared files, Google-RE on a file written here, UHN, and broken inputs."""
import json
from collections import Counter

import pytest

from data_prep.lama import (GOOGLE_RE_RELATIONS, common_vocab, fill_template, load_google_re, load_relations,
                            load_trex_evidence, load_trex_facts, uhn_filter)
from data_prep.report import DataFormatError


@pytest.fixture(scope="module")
def trex_facts():
    facts, report = load_trex_facts()
    return facts, report


def test_relations_and_templates():
    relations = load_relations()
    assert len(relations) == 46
    assert relations["P19"]["template"] == "[X] was born in [Y] ." and relations["P19"]["type"] == "N-1"
    assert fill_template(relations["P19"]["template"], "Dante", "<mask>") == "Dante was born in <mask> ."
    assert fill_template("[Y] participated in the [X] .", "2006 World Cup", "[MASK]") == \
        "[MASK] participated in the 2006 World Cup ."
    with pytest.raises(ValueError):
        fill_template("no slots", "x", "[MASK]")


def test_trex_probe_facts_real_counts(trex_facts):
    facts, report = trex_facts
    assert len(facts) == 29411 and report.kept == 29411 and report.total_skipped == 0
    assert len({f["relation"] for f in facts}) == 41
    first = next(f for f in facts if f["uuid"] == "75e6e7c3-9697-4ad1-b805-5f79f52e8255")
    assert first == {"uuid": "75e6e7c3-9697-4ad1-b805-5f79f52e8255", "relation": "P17", "relation_label": "country",
                     "template": "[X] is located in [Y] .", "sub_label": "Eibenstock", "obj_label": "Germany",
                     "type": "N-1"}
    assert Counter(f["relation"] for f in facts)["P31"] > 0


def test_trex_facts_relation_subset_and_limit():
    facts, _ = load_trex_facts(["P19", "P1001"], limit=5)
    assert [f["relation"] for f in facts] == ["P19"] * 5 + ["P1001"] * 5
    with pytest.raises(FileNotFoundError):
        load_trex_facts(["P9999"])


def test_trex_evidence_real_counts():
    facts, report = load_trex_evidence()
    assert len(facts) == 22881 and report.kept == 22881
    assert len({f["relation"] for f in facts}) == 28
    assert sum(len(f["evidences"]) for f in facts) == 138678
    peiper = next(f for f in facts if f["uuid"] == "6a9d91c1-eb9b-4142-8371-3c063ec40700")
    assert (peiper["sub_uri"], peiper["obj_uri"], peiper["relation"]) == ("Q1886736", "Q2643563", "P19")
    assert peiper["evidences"][0]["obj_surface"] == "Alexandra, Victoria"


def test_common_vocab():
    vocab = common_vocab()
    assert len(vocab) == 21018 and vocab[0] == "#" and "Paris" in vocab and len(set(vocab)) == len(vocab)


# ---------------------------------------------------------------------------------------------------- UHN


def test_uhn_filter_by_hand():
    facts = [{"relation": "P176", "sub_label": "Apple Watch", "obj_label": "Apple"},
             {"relation": "P176", "sub_label": "iPhone", "obj_label": "Apple"},
             {"relation": "P19", "sub_label": "PARIS HILTON", "obj_label": "paris"}]
    kept, stats = uhn_filter(facts)
    assert kept == [facts[1]]
    assert stats == {"kept": 1, "dropped": 2, "per_relation": {"P176": {"total": 2, "dropped": 1},
                                                               "P19": {"total": 1, "dropped": 1}}}


def test_uhn_filter_on_real_probe(trex_facts):
    facts, _ = trex_facts
    kept, stats = uhn_filter(facts)
    assert stats["dropped"] == 4155 and len(kept) == 29411 - 4155  # measured
    assert sum(c["dropped"] for c in stats["per_relation"].values()) == 4155
    assert not any(f["obj_label"].lower() in f["sub_label"].lower() for f in kept)
    # manufacturer: "Nokia 3310" made by "Nokia" is the typical case (measured 744 of 925 dropped)
    assert stats["per_relation"]["P176"] == {"total": 925, "dropped": 744}


# ---------------------------------------------------------------------------------------------------- Google-RE


def google_re_line(pred="/people/person/place_of_birth", yes=3, no=1, **extra):
    judgments = [{"rater": f"r{i}", "judgment": "yes"} for i in range(yes)]
    judgments += [{"rater": f"n{i}", "judgment": "no"} for i in range(no)]
    record = {"pred": pred, "sub": "/m/x", "obj": "/m/y", "sub_label": "Khatchig Mouradian", "obj_label": "Lebanon",
              "masked_sentences": ["Khatchig Mouradian is a journalist born in [MASK] ."], "judgments": judgments,
              "uuid": "u-1"}
    record.update(extra)
    return json.dumps(record)


def test_google_re_keeps_majority_yes_facts(tmp_path):
    path = tmp_path / "place_of_birth_test.jsonl"
    path.write_text("\n".join([
        google_re_line(yes=4, no=1),
        google_re_line(yes=2, no=2, uuid="tie"),
        google_re_line(yes=1, no=3, uuid="no"),
        google_re_line("/people/deceased_person/place_of_death", yes=5, no=0, uuid="u-2", obj_label="Paris"),
        google_re_line("/people/person/date_of_birth", yes=3, no=0, uuid="u-3", obj_label="1960"),
    ]) + "\n")
    facts, report = load_google_re(path)
    assert [f["uuid"] for f in facts] == ["u-1", "u-2", "u-3"]
    assert report.kept == 3 and report.skipped == {"not more 'yes' than 'no' judgments": 2}
    assert facts[1]["relation"] == "place_of_death" and facts[1]["template"] == "[X] died in [Y] ."
    assert facts[2]["template"] == GOOGLE_RE_RELATIONS["date_of_birth"]["template"] == "[X] (born [Y])."
    assert facts[0]["masked_sentences"] == ["Khatchig Mouradian is a journalist born in [MASK] ."]
    # a folder means all its .jsonl files
    assert len(load_google_re(tmp_path)[0]) == 3


def test_google_re_rejects_unknown_relation_and_bad_judgments(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(google_re_line() + "\n" + google_re_line("/people/person/nationality") + "\n")
    with pytest.raises(DataFormatError, match=r"g\.jsonl, line 2: field 'pred': unknown relation"):
        load_google_re(path)
    path.write_text(json.dumps({**json.loads(google_re_line()), "judgments": [{"rater": "a"}]}) + "\n")
    with pytest.raises(DataFormatError, match=r"line 1: field 'judgments\[0\]\.judgment': missing"):
        load_google_re(path)


# ---------------------------------------------------------------------------------------------------- broken files


def write_relation_file(directory, name, lines):
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return directory


GOOD = json.dumps({"sub_label": "Dante", "obj_label": "Florence", "uuid": "u1"})


@pytest.mark.parametrize("bad_line, expected", [
    ('{"sub_label": "Dante", "obj_label": "Flor', r"line 2: not valid JSON"),
    (json.dumps({"sub_label": "Dante", "uuid": "u2"}), r"line 2: field 'obj_label': missing"),
    (json.dumps({"sub_label": "Dante", "obj_label": 5, "uuid": "u2"}), r"line 2: field 'obj_label': expected str"),
    (json.dumps({"sub_label": " ", "obj_label": "Rome", "uuid": "u2"}), r"line 2: field 'sub_label': empty text"),
    ("[1, 2]", r"line 2: expected a JSON object"),
])
def test_trex_facts_broken_lines(tmp_path, bad_line, expected):
    directory = write_relation_file(tmp_path / "trex", "P19", [GOOD, bad_line])
    with pytest.raises(DataFormatError, match=r"P19\.jsonl, " + expected):
        load_trex_facts(directory=directory)


def test_trex_facts_unknown_relation(tmp_path):
    directory = write_relation_file(tmp_path / "trex", "P9999", [GOOD])
    with pytest.raises(DataFormatError, match=r"P9999\.jsonl: field 'relation': unknown relation 'P9999'"):
        load_trex_facts(directory=directory)


def test_trex_evidence_broken_lines(tmp_path):
    fact = {"uuid": "u1", "sub_uri": "Q1", "obj_uri": "Q2", "sub_label": "Dante", "obj_label": "Florence",
            "predicate_id": "P19",
            "evidences": [{"sub_surface": "Dante", "obj_surface": "Florence", "masked_sentence": "Dante of [MASK]."}]}
    wrong_relation = {**fact, "predicate_id": "P20"}
    directory = write_relation_file(tmp_path / "ev", "P19", [json.dumps(fact), json.dumps(wrong_relation)])
    with pytest.raises(DataFormatError, match=r"P19\.jsonl, line 2: field 'predicate_id'"):
        load_trex_evidence(directory=directory)
    broken = {**fact, "evidences": [{"sub_surface": "Dante", "obj_surface": "Florence", "masked_sentence": ""}]}
    directory = write_relation_file(tmp_path / "ev2", "P19", [json.dumps(broken)])
    with pytest.raises(DataFormatError, match=r"line 1: field 'evidences\[0\]\.masked_sentence': empty text"):
        load_trex_evidence(directory=directory)
    directory = write_relation_file(tmp_path / "ev3", "P19", [json.dumps({**fact, "evidences": "none"})])
    with pytest.raises(DataFormatError, match=r"line 1: field 'evidences': expected list"):
        load_trex_evidence(directory=directory)
