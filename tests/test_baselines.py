"""Trivial baselines: the majority rules by hand, then on the real training sets scored by the task metrics."""
import json
from collections import Counter

import pytest

from kadapter.baselines import (MajorityBaseline, majority, majority_answer_index, majority_label,
                                majority_label_set)
from kadapter.finetuning import TASKS, load_task, score


# ------------------------------------------------------------------------------------------------------ by hand
def test_majority_and_first_seen_tie_break():
    assert majority(["a", "b", "b", "c"]) == "b"
    assert majority(["b", "a", "a", "b"]) == "b"  # tie: the value seen first wins, whatever the hash order
    assert majority([3, 1, 1, 3, 2]) == 3
    with pytest.raises(ValueError, match="zero values"):
        majority([])


def test_label_set_majority_counts_sets_not_labels():
    sets = [["person"], ["person", "group"], ["group", "person"], [], ["group"], ["person", "group"]]
    # "person" is the most frequent single label (4), but {person, group} is the most frequent set (3)
    assert majority_label_set(sets) == frozenset({"person", "group"})
    assert majority_label_set([[], [], ["event"]]) == frozenset()  # the empty set is an answer too


def test_answer_index_and_label():
    assert majority_answer_index([2, "1", 1, 0]) == 1
    assert majority_label(["no_relation", "per:title", "no_relation"]) == "no_relation"


def test_grouped_majority_for_lama_style_objects():
    relations = ["P19", "P19", "P19", "P36", "P36"]
    objects = ["Paris", "Rome", "Paris", "London", "London"]
    baseline = MajorityBaseline().fit(objects, groups=relations)
    assert baseline.by_group == {"P19": "Paris", "P36": "London"}
    assert baseline.predict(["P36", "P19", "P999"]) == ["London", "Paris", "Paris"]  # unseen -> overall
    assert baseline.unseen_groups == Counter({"P999": 1})
    assert baseline.predict(2) == ["Paris", "Paris"]
    assert baseline.share() == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="5 labels but 4 groups"):
        MajorityBaseline().fit(objects, groups=relations[:4])
    with pytest.raises(RuntimeError):
        MajorityBaseline().predict(3)


# ---------------------------------------------------------------------------------------------------- real data
def test_openentity_majority_label_set_on_real_data(data_root):
    data = load_task("openentity")
    baseline = MajorityBaseline().fit(data.gold("train"))
    assert baseline.overall == frozenset({"person"}) and baseline.counts[baseline.overall] == 756
    # Expected scores computed from the raw dev file, independently of the loader and the metric code.
    dev = json.loads((data_root / "entity_typing_openentity" / "ernie_format" / "dev.json").read_text())
    with_person = sum("person" in r["labels"] for r in dev)
    exactly_person = sum(r["labels"] == ["person"] for r in dev)
    gold_labels = sum(len(r["labels"]) for r in dev)
    metrics = score(TASKS["openentity"], data.gold("dev"), baseline.predict(len(dev)))
    assert metrics["micro_precision"] == pytest.approx(with_person / len(dev))
    assert metrics["micro_recall"] == pytest.approx(with_person / gold_labels)
    assert metrics["strict_accuracy"] == pytest.approx(exactly_person / len(dev))
    assert 0.2 < metrics["micro_f1"] < 0.5


def test_relation_majorities_score_zero_on_the_relation_metrics(data_root):
    semeval = load_task("semeval")
    baseline = MajorityBaseline().fit(semeval.gold("train"))
    assert baseline.overall == "Other"
    metrics = score(TASKS["semeval"], semeval.gold("test"), baseline.predict(len(semeval.splits["test"])))
    assert metrics["macro_f1"] == 0.0  # Other is not a scored relation: the official score gives it nothing
    assert metrics["accuracy"] == pytest.approx(semeval.gold("test").count("Other") / 2717)

    tacred = load_task("tacred")
    baseline = MajorityBaseline().fit(tacred.gold("train"))
    assert baseline.overall == "no_relation" and baseline.counts["no_relation"] == 18
    metrics = score(TASKS["tacred"], tacred.gold("test"), baseline.predict(20))
    # no positive guess: TACRED's scorer sets precision to 1 and recall to 0
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (1.0, 0.0, 0.0)
    assert metrics["accuracy"] == pytest.approx(16 / 20)


def test_cosmosqa_majority_answer_index_on_real_data():
    data = load_task("cosmosqa")
    train = data.gold("train")
    counts = Counter(train)
    assert majority_answer_index(train) == max(counts, key=counts.get)
    index = majority_answer_index(train)
    test = data.gold("test")
    metrics = score(TASKS["cosmosqa"], test, [index] * len(test))
    assert metrics["accuracy"] == pytest.approx(test.count(index) / len(test))
    assert 0.2 < metrics["accuracy"] < 0.3  # labels are balanced (744/729/761/751 over the whole set)
