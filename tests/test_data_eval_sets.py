"""Evaluation-set loaders on the real shared files, and on broken copies written to tmp_path."""
import csv
import json
import re
from collections import Counter

import pytest

from data_prep.eval_sets import (SEMEVAL_LABELS, load_cosmosqa, load_fewrel, load_openentity, load_semeval2010,
                                 load_tacred_sample, openentity_types, read_cosmosqa, read_fewrel, read_openentity,
                                 read_semeval2010, read_tacred, simple_tokenize, split_by_context)
from data_prep.records import RC_FIELDS, validate_rc_record
from data_prep.report import DataFormatError

RC_COLUMNS = set(RC_FIELDS)


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _json_array(path, records, raw_lines=()):
    """A JSON array with one record per line (line k+2 holds record k), plus raw replacement lines."""
    lines = [json.dumps(r) + ("," if i < len(records) - 1 else "") for i, r in enumerate(records)]
    for index, raw in raw_lines:
        lines[index] = raw
    return _write_lines(path, ["["] + lines + ["]"])


def _raises(call, path, line, field):
    with pytest.raises(DataFormatError) as error:
        call()
    assert (error.value.path, error.value.line, error.value.field) == (str(path), line, field), str(error.value)
    assert f"{path}, line {line}" in str(error.value)
    return error.value


# ------------------------------------------------------------------------------------------------ OpenEntity

@pytest.mark.parametrize("split, unlabelled", [("train", 354), ("dev", 386), ("test", 400)])
def test_openentity_real(split, unlabelled):
    dataset, report = load_openentity(split)
    assert len(dataset) == report.kept == 1998 and report.total_skipped == 0
    assert sum(not labels for labels in dataset["labels"]) == unlabelled
    types = set(openentity_types())
    assert len(types) == 9 and all(set(labels) <= types for labels in dataset["labels"])
    for row in dataset:
        assert 0 <= row["span_start"] < row["span_end"] <= len(row["text"])
    if split == "train":
        first = dataset[0]
        assert first["text"][first["span_start"]:first["span_end"]] == "Web users" and first["labels"] == ["person"]
        counts = Counter(label for labels in dataset["labels"] for label in labels)
        assert counts == {"person": 824, "organization": 248, "event": 181, "object": 160, "place": 156,
                          "group": 152, "location": 131, "time": 62, "entity": 2}  # SOURCE.md


OE = {"sent": "Tushar Gandhi said the tycoon would be arrested .", "start": 0, "end": 13, "labels": ["person"],
      "ents": []}


def test_openentity_broken_records_are_counted(tmp_path):
    (tmp_path / "tags.txt").write_text("person\norganization\n")
    records = [OE, {**OE, "start": 13, "end": 0}, {**OE, "end": 99}, {**OE, "labels": ["wizard"]},
               {**OE, "sent": "  "}, {**OE, "start": 6, "end": 7}, OE]
    path = _json_array(tmp_path / "train.json", records)
    dataset, report = read_openentity(path)
    assert len(dataset) == report.kept == 2
    assert report.skipped == {"reversed span": 1, "span outside the sentence": 1, "label not in label set": 1,
                              "empty text": 1, "empty span": 1}
    assert report.examples["reversed span"] == ["train.json:3 record 1 (start)"]
    assert "record 1: reversed span" in str(_raises(lambda: read_openentity(path, strict=True), path, 3, "start"))


def test_openentity_malformed_files_raise(tmp_path):
    path = _json_array(tmp_path / "t.json", [OE, OE, OE], raw_lines=[(1, json.dumps(OE)[:40])])  # truncated line
    _raises(lambda: read_openentity(path), path, 3, None)
    path = _json_array(tmp_path / "t.json", [OE, {**OE, "start": "0"}])  # wrong type
    assert "expected int" in str(_raises(lambda: read_openentity(path), path, 3, "start"))
    path = _json_array(tmp_path / "t.json", [OE, {k: v for k, v in OE.items() if k != "labels"}, OE])
    _raises(lambda: read_openentity(path), path, 3, "labels")
    path = _json_array(tmp_path / "t.json", [OE, {**OE, "labels": ["person", 3]}])
    _raises(lambda: read_openentity(path), path, 3, "labels")
    path = _write_lines(tmp_path / "t.jsonl", [json.dumps(OE), json.dumps(OE)[:-5]])  # JSON lines, cut short
    _raises(lambda: read_openentity(path), path, 2, None)
    path = _write_lines(tmp_path / "t.json", ["[" + json.dumps(OE) + ","])  # array never closed
    _raises(lambda: read_openentity(path), path, 2, None)
    # the real files are one-line arrays: the message also names the record
    path = _write_lines(tmp_path / "t.json", [json.dumps([OE, OE, {**OE, "end": None}])])
    assert "record 2: expected int" in str(_raises(lambda: read_openentity(path), path, 1, "end"))


# ------------------------------------------------------------------------------------------------ TACRED

@pytest.mark.parametrize("split, no_relation", [("train", 18), ("dev", 13), ("test", 16)])
def test_tacred_sample_real(split, no_relation, data_root):
    dataset, report = load_tacred_sample(split)
    assert len(dataset) == 20 and report.total_skipped == 0
    assert RC_COLUMNS | {"subj_type", "obj_type"} <= set(dataset.column_names)
    assert dataset["relation"].count("no_relation") == no_relation
    assert set(dataset["source"]) == {f"tacred_sample_{split}"} and set(dataset["subj_id"]) == {""}
    raw = json.loads((data_root / "tacred_sample" / f"{split}.json").read_text())
    for row, original in zip(dataset, raw):
        assert row["id"] == original["id"] and row["subj_type"] == original["subj_type"]
        # TACRED ends are inclusive; ours are exclusive
        assert (row["subj_start"], row["subj_end"]) == (original["subj_start"], original["subj_end"] + 1)
        assert (row["obj_start"], row["obj_end"]) == (original["obj_start"], original["obj_end"] + 1)
        assert row["tokens"].count("(") == original["token"].count("-LRB-") + original["token"].count("(")
        assert "-LRB-" not in row["tokens"] and "-RRB-" not in row["tokens"]


TAC = {"id": "x1", "relation": "per:title", "token": ["Bill", "Smith", "-LRB-", "CEO", "-RRB-", "left", "."],
       "subj_start": 0, "subj_end": 1, "obj_start": 3, "obj_end": 3, "subj_type": "PERSON", "obj_type": "TITLE"}


def test_tacred_broken_records(tmp_path):
    records = [TAC, {**TAC, "subj_start": 1, "subj_end": 0}, {**TAC, "obj_start": 7, "obj_end": 7},
               {**TAC, "obj_start": 1, "obj_end": 3}, {**TAC, "token": []}, {**TAC, "relation": "per:wizard"}]
    path = _json_array(tmp_path / "dev.json", records)
    dataset, report = read_tacred(path, relations=["per:title", "no_relation"])
    assert dataset.to_list() == [{"id": "x1", "tokens": ["Bill", "Smith", "(", "CEO", ")", "left", "."],
                                  "subj_start": 0, "subj_end": 2, "obj_start": 3, "obj_end": 4,
                                  "relation": "per:title", "subj_id": "", "obj_id": "", "source": "tacred_dev",
                                  "subj_type": "PERSON", "obj_type": "TITLE"}]
    assert report.skipped == {"reversed span": 1, "span outside the sentence": 1,
                              "subject and object spans overlap": 1, "empty text": 1, "label not in label set": 1}
    _raises(lambda: read_tacred(path, strict=True), path, 3, "subj_end")
    path = _json_array(tmp_path / "dev.json", [TAC, {k: v for k, v in TAC.items() if k != "obj_type"}])
    _raises(lambda: read_tacred(path), path, 3, "obj_type")
    path = _json_array(tmp_path / "dev.json", [TAC, {**TAC, "subj_end": 1.0}])
    _raises(lambda: read_tacred(path), path, 3, "subj_end")


# ------------------------------------------------------------------------------------------------ SemEval

def test_semeval_real_train(data_root):
    dataset, report = load_semeval2010("train")
    assert len(dataset) == 8000 and report.total_skipped == 0
    assert set(dataset["relation"]) == set(SEMEVAL_LABELS) and len(SEMEVAL_LABELS) == 19
    assert RC_COLUMNS == set(dataset.column_names) and set(dataset["source"]) == {"semeval2010_train"}
    assert len(set(dataset["id"])) == 8000 and all(validate_rc_record(r) for r in dataset.select(range(200)))
    first = dataset[0]
    assert first["id"] == "1" and first["relation"] == "Component-Whole(e2,e1)"
    assert first["tokens"][first["subj_start"]:first["subj_end"]] == ["configuration"]
    assert first["tokens"][first["obj_start"]:first["obj_end"]] == ["elements"]
    assert first["tokens"][-1] == "." and first["subj_end"] <= first["obj_start"]
    # undirected counts agree with the official distribution file
    distribution = (data_root / "semeval2010_task8" / "SemEval2010_task8_training" / "TRAIN_DISTRIB.TXT").read_text()
    block = distribution.split("<<<")[1]
    official = {name: int(n) for name, n in re.findall(r"^\s*([\w-]+) :\s+(\d+)", block, flags=re.M)}
    assert official.pop("TOTAL") == 8000
    ours = Counter(re.sub(r"\(e[12],e[12]\)$", "", label) for label in dataset["relation"])
    assert ours == official and len(official) == 10


def test_semeval_real_test_checked_against_keys():
    dataset, report = load_semeval2010("test")
    assert len(dataset) == 2717 and report.total_skipped == 0
    assert dataset[0]["id"] == "8001" and dataset[0]["relation"] == "Message-Topic(e1,e2)"
    with pytest.raises(ValueError):
        load_semeval2010("dev")


def _semeval_block(number, sentence, label):
    return [f'{number}\t"{sentence}"', label, "Comment:", ""]


def test_semeval_tokenisation_and_broken_records(tmp_path):
    lines = (_semeval_block(1, "The <e1>air-conditioner</e1>'s <e2>fan</e2> broke.", "Component-Whole(e2,e1)")
             + _semeval_block(2, "A <e1>cup</e1> of tea.", "Other")                       # no e2
             + _semeval_block(3, "The <e1>cup</e1> of <e2>tea</e2>.", "Cup-Tea(e1,e2)")   # unknown label
             + _semeval_block(4, "The <e2>cup</e2> of <e1></e1>.", "Other")               # empty e1
             + _semeval_block(5, "The<e1>cup</e1>s of <e2>tea</e2>.", "Content-Container(e2,e1)"))
    path = _write_lines(tmp_path / "TRAIN_FILE.TXT", lines)
    dataset, report = read_semeval2010(path)
    assert report.skipped == {"entity markers malformed": 1, "label not in label set": 1, "empty span": 1}
    first, last = dataset[0], dataset[1]
    # the project's one tokenizer: inner hyphens kept, the possessive 's one token
    assert first["tokens"] == ["The", "air-conditioner", "'s", "fan", "broke", "."]
    assert (first["subj_start"], first["subj_end"], first["obj_start"], first["obj_end"]) == (1, 2, 3, 4)
    assert last["tokens"] == ["The", "cup", "s", "of", "tea", "."] and last["subj_start"] == 1  # tags split words
    assert simple_tokenize("don't stop -- now") == ["don't", "stop", "-", "-", "now"]
    _raises(lambda: read_semeval2010(path, strict=True), path, 5, "sentence")

    keys = _write_lines(tmp_path / "KEYS.TXT", ["1\tComponent-Whole", "5\tContent-Container"])
    good = _write_lines(tmp_path / "good.txt", lines[:4] + lines[16:])
    assert len(read_semeval2010(good, keys_path=keys)[0]) == 2
    keys = _write_lines(tmp_path / "KEYS.TXT", ["1\tComponent-Whole", "5\tMessage-Topic"])
    _raises(lambda: read_semeval2010(good, keys_path=keys), good, 6, "relation")

    broken = _write_lines(tmp_path / "broken.txt", lines[:4] + ["2\tA <e1>cup</e1> of <e2>tea</e2>.", "Other"])
    _raises(lambda: read_semeval2010(broken), broken, 5, "sentence")  # sentence not quoted
    truncated = _write_lines(tmp_path / "truncated.txt", lines[:4] + [lines[4]])
    _raises(lambda: read_semeval2010(truncated), truncated, 6, "relation")  # label line missing


# ------------------------------------------------------------------------------------------------ FewRel

def test_fewrel_val_wiki_real():
    dataset, report = load_fewrel("val_wiki")
    assert len(dataset) == 11200 and report.total_skipped == 0
    assert Counter(dataset["relation"]) == {pid: 700 for pid in set(dataset["relation"])}
    assert len(set(dataset["relation"])) == 16
    assert RC_COLUMNS | {"subj_name", "obj_name"} == set(dataset.column_names)
    assert set(dataset["source"]) == {"fewrel_val_wiki"} and len(set(dataset["id"])) == 11200
    first = dataset[0]
    assert first["relation"] == "P177" and first["id"] == "P177-0"
    assert " ".join(first["tokens"][first["subj_start"]:first["subj_end"]]).lower() == "cape girardeau bridge"
    assert " ".join(first["tokens"][first["obj_start"]:first["obj_end"]]).lower() == "mississippi river"
    assert (first["subj_id"], first["obj_id"]) == ("Q5034838", "Q1497")
    # the first mention's text is the entity name in nearly every instance
    sample = dataset.select(range(0, 11200, 50))
    matches = sum(" ".join(r["tokens"][r["subj_start"]:r["subj_end"]]).lower() == r["subj_name"] for r in sample)
    assert matches >= 0.9 * len(sample)


FEW = {"tokens": ["Ann", "married", "Bob", "Lee", "."], "h": ["ann", "Q1", [[0]]], "t": ["bob lee", "Q2", [[2, 3]]]}


def test_fewrel_broken(tmp_path):
    def write(records_by_relation, raw=None):
        lines = ["{"]
        for i, (relation, records) in enumerate(records_by_relation.items()):
            lines.append(json.dumps(relation) + ": [")
            lines += [json.dumps(r) + ("," if j < len(records) - 1 else "") for j, r in enumerate(records)]
            lines.append("]" + ("," if i < len(records_by_relation) - 1 else ""))
        lines.append("}")
        if raw:
            lines[raw[0]] = raw[1]
        return _write_lines(tmp_path / "val.json", lines)

    path = write({"P26": [FEW, {**FEW, "t": ["bob lee", "Q2", [[2, 4]]]}], "P40": [{**FEW, "t": ["x", "Q", [[0]]]},
                                                                                 {**FEW, "h": ["x", "Q", [[5]]]}]})
    dataset, report = read_fewrel(path)
    assert dataset["id"] == ["P26-0"] and (dataset[0]["obj_start"], dataset[0]["obj_end"]) == (2, 4)
    assert report.skipped == {"non-contiguous span": 1, "subject and object spans overlap": 1,
                              "span outside the sentence": 1}
    assert report.examples["non-contiguous span"] == ["val.json:4 P26 record 1 (t)"]
    path = write({"P26": [FEW, {**FEW, "h": ["ann", "Q1", [0]]}]})  # positions not a list of lists
    _raises(lambda: read_fewrel(path), path, 4, "h")
    path = write({"P26": [FEW, FEW]}, raw=(3, json.dumps(FEW)[:30]))  # truncated line
    _raises(lambda: read_fewrel(path), path, 4, None)


# ------------------------------------------------------------------------------------------------ CosmosQA

@pytest.fixture(scope="module")
def cosmos():
    dataset, report = load_cosmosqa()
    assert report.total_skipped == 0
    return dataset


def test_cosmosqa_real(cosmos):
    assert len(cosmos) == 2985
    assert Counter(cosmos["label"]) == {0: 744, 1: 729, 2: 761, 3: 751}  # SOURCE.md
    assert len(set(cosmos["context"])) == 2445
    first = cosmos[0]
    assert first["question"] == "Why is this person asking about divorce ?" and len(first["choices"]) == 4
    assert first["choices"][first["label"]] == "He wants to get married to a different person ."


def test_split_by_context(cosmos):
    split = split_by_context(cosmos, test_size=0.33, seed=0)
    train, test = split["train"], split["test"]
    assert len(train) + len(test) == len(cosmos)
    assert set(train["id"]).isdisjoint(test["id"]) and len(set(train["id"]) | set(test["id"])) == len(cosmos)
    assert set(train["context"]).isdisjoint(test["context"])  # no context crosses the split
    assert 0.33 <= len(test) / len(cosmos) < 0.34
    again = split_by_context(cosmos, test_size=0.33, seed=0)
    assert again["test"]["id"] == test["id"]
    assert split_by_context(cosmos, test_size=0.33, seed=1)["test"]["id"] != test["id"]
    with pytest.raises(ValueError):
        split_by_context(cosmos, test_size=1.5)


ROW = ["q1", "I went home .", "Why ?", "a", "b", "c", "d", "2"]


def _csv(path, rows, raw=None):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label"])
        writer.writerows(rows)
        if raw:
            handle.write(raw)
    return path


def test_cosmosqa_broken(tmp_path):
    rows = [ROW, ROW[:1] + [""] + ROW[2:], ROW[:-1] + ["7"], ROW[:4] + [" "] + ROW[5:],
            ["q5", "line one\nline two", *ROW[2:]], ROW]
    path = _csv(tmp_path / "valid.csv", rows)
    dataset, report = read_cosmosqa(path)
    assert len(dataset) == 3 and dataset[1]["context"] == "line one\nline two"
    assert report.skipped == {"empty text": 1, "label not in label set": 1, "empty choice": 1}
    assert report.examples["empty choice"] == ["valid.csv:5 (answer)"]
    _raises(lambda: read_cosmosqa(path, strict=True), path, 3, "context")

    path = _csv(tmp_path / "valid.csv", [ROW, ROW], raw="q3,Context,Question,a,b\n")  # truncated line
    _raises(lambda: read_cosmosqa(path), path, 4, "answer2")
    path = _csv(tmp_path / "valid.csv", [ROW, ROW[:-1] + ["two"]])  # wrong type
    _raises(lambda: read_cosmosqa(path), path, 3, "label")
    path = _csv(tmp_path / "valid.csv", [ROW, ROW + ["extra"]])
    _raises(lambda: read_cosmosqa(path), path, 3, None)
    path = _csv(tmp_path / "valid.csv", [ROW], raw='q2,"never closed,Why ?,a,b,c,d,1\n')  # cut inside quotes
    _raises(lambda: read_cosmosqa(path), path, 3, None)
    path = _write_lines(tmp_path / "valid.csv", ["id,context,question,answer0,answer1,answer2,label", "x"])
    _raises(lambda: read_cosmosqa(path), path, 1, "answer3")
