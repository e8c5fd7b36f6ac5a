"""kadapter.metrics against values computed by hand (written out beside each test) and against the official
SemEval-2010 Task 8 scorer's output on the real test key."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kadapter.metrics import (
    SEMEVAL_RELATIONS,
    accuracy,
    attachment_accuracy,
    classification_metrics,
    entity_typing_metrics,
    logits_to_label_sets,
    macro_average,
    mean_std,
    metrics_from_ranks,
    rank_of_gold,
    ranking_metrics,
    semeval_official_score,
    tacred_metrics,
)

approx = pytest.approx


# ----------------------------------------------------------------------------------------------------- entity typing
# Six examples. Per example (∩ = |pred ∩ gold|):
#   0 gold {a,b} pred {a}    ∩=1  P0=1/1=1    R0=1/2=0.5
#   1 gold {a}   pred {a,c}  ∩=1  P1=1/2=0.5  R1=1/1=1
#   2 gold {c}   pred {}     ∩=0  (no P)      R2=0/1=0
#   3 gold {}    pred {b}    ∩=0  P3=0/1=0    (no R)
#   4 gold {b}   pred {b,c}  ∩=1  P4=1/2=0.5  R4=1/1=1
#   5 gold {}    pred {}     ∩=0  (no P)      (no R)     <- the only exact match
TYPING_GOLD = [{"a", "b"}, {"a"}, {"c"}, set(), {"b"}, set()]
TYPING_PRED = [{"a"}, {"a", "c"}, set(), {"b"}, {"b", "c"}, set()]


def test_entity_typing_strict_and_loose_micro():
    m = entity_typing_metrics(TYPING_GOLD, TYPING_PRED)
    # strict: only example 5 matches exactly -> 1/6
    assert m["strict_accuracy"] == approx(1 / 6)
    # micro: sum ∩ = 1+1+0+0+1+0 = 3; sum|pred| = 1+2+0+1+2+0 = 6; sum|gold| = 2+1+1+0+1+0 = 5
    # P = 3/6 = 0.5, R = 3/5 = 0.6, F1 = 2*0.5*0.6/1.1 = 6/11
    assert m["micro_precision"] == approx(0.5)
    assert m["micro_recall"] == approx(0.6)
    assert m["micro_f1"] == approx(6 / 11)


def test_entity_typing_loose_macro_figer_denominators():
    m = entity_typing_metrics(TYPING_GOLD, TYPING_PRED)  # macro_over="nonempty" (FIGER / Ling & Weld)
    # P over the 4 examples with a prediction (0,1,3,4): (1 + 0.5 + 0 + 0.5) / 4 = 0.5
    # R over the 4 examples with gold types (0,1,2,4): (0.5 + 1 + 0 + 1) / 4 = 0.625
    # F1 = 2*0.5*0.625 / 1.125 = 5/9
    assert m["macro_precision"] == approx(0.5)
    assert m["macro_recall"] == approx(0.625)
    assert m["macro_f1"] == approx(5 / 9)


def test_entity_typing_loose_macro_ernie_kadapter_denominators():
    m = entity_typing_metrics(TYPING_GOLD, TYPING_PRED, macro_over="all")
    # ERNIE / K-Adapter code divide both sums by all 6 examples: P = 2/6 = 1/3, R = 2.5/6 = 5/12
    # F1 = 2*(1/3)*(5/12) / (1/3 + 5/12) = (10/36) / (9/12) = 10/27
    assert m["macro_precision"] == approx(1 / 3)
    assert m["macro_recall"] == approx(5 / 12)
    assert m["macro_f1"] == approx(10 / 27)
    # the micro and strict numbers do not depend on the macro convention
    assert m["micro_f1"] == approx(6 / 11) and m["strict_accuracy"] == approx(1 / 6)


def test_entity_typing_nothing_predicted_and_bad_input():
    # no prediction at all: micro P has an empty denominator -> 0.0; recall 0; macro P averages nothing -> 0.0
    m = entity_typing_metrics([{"a"}, {"b"}], [set(), set()])
    assert (m["micro_precision"], m["micro_recall"], m["micro_f1"]) == (0.0, 0.0, 0.0)
    assert (m["macro_precision"], m["macro_recall"], m["strict_accuracy"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        entity_typing_metrics([{"a"}], [{"a"}, {"b"}])
    with pytest.raises(ValueError):
        entity_typing_metrics([{"a"}], [{"a"}], macro_over="some")


def test_logits_to_label_sets_threshold_is_strict():
    logits = torch.tensor([[1.0, -0.5, 0.0], [-1.0, -2.0, -3.0], [0.1, 2.0, -0.1]])
    names = ["a", "b", "c"]
    # logit 0.0 is sigmoid 0.5: not "> 0", so not predicted; row 1 predicts nothing
    assert logits_to_label_sets(logits, names) == [{"a"}, set(), {"a", "b"}]
    # threshold -0.6: -0.5, 0.0 and -0.1 now pass
    assert logits_to_label_sets(logits.numpy(), names, threshold=-0.6) == [{"a", "b", "c"}, set(), {"a", "b", "c"}]
    with pytest.raises(ValueError):
        logits_to_label_sets(logits, ["a", "b"])
    # feeds straight into the typing metrics
    m = entity_typing_metrics([{"a"}, {"c"}, {"b"}], logits_to_label_sets(logits, names))
    # ∩: 1, 0, 1 -> micro P = 2/3 (3 predicted), R = 2/3 (3 gold)
    assert m["micro_precision"] == approx(2 / 3) and m["micro_recall"] == approx(2 / 3)


# ------------------------------------------------------------------------------------------------------------ TACRED
def test_tacred_micro_excludes_no_relation():
    gold = ["no_relation", "A", "A", "B", "no_relation", "B", "C"]
    pred = ["no_relation", "A", "B", "no_relation", "A", "B", "no_relation"]
    # guesses (pred != no_relation): positions 1,2,4,5 -> 4
    # gold positives (gold != no_relation): positions 1,2,3,5,6 -> 5
    # correct positive guesses: 1 (A=A), 5 (B=B) -> 2;  position 0 (no=no) is not counted
    # P = 2/4 = 0.5, R = 2/5 = 0.4, F1 = 2*0.2/0.9 = 4/9
    m = tacred_metrics(gold, pred)
    assert m == approx({"precision": 0.5, "recall": 0.4, "f1": 4 / 9})
    # the same with integer ids in tensors (no_relation = 0, A=1, B=2, C=3)
    ids = {"no_relation": 0, "A": 1, "B": 2, "C": 3}
    m_ids = tacred_metrics(torch.tensor([ids[g] for g in gold]), torch.tensor([ids[p] for p in pred]), no_relation=0)
    assert m_ids == approx(m)


def test_tacred_no_positive_guess_follows_official_scorer():
    # official scorer: precision defaults to 1.0 when nothing positive is guessed, recall 0.0 -> F1 0.0
    m = tacred_metrics(["A", "no_relation"], ["no_relation", "no_relation"])
    assert m == {"precision": 1.0, "recall": 0.0, "f1": 0.0}


# ---------------------------------------------------------------------------------------------------- classification
def test_classification_metrics_by_hand():
    gold = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    # accuracy: positions 0,2,3,4 right -> 4/6
    # class 0: guessed 2 (pos 0,5), gold 2, correct 1 -> P 1/2, R 1/2, F1 1/2
    # class 1: guessed 3 (pos 1,2,3), gold 2, correct 2 -> P 2/3, R 1, F1 = 2*(2/3)/(5/3) = 4/5
    # class 2: guessed 1 (pos 4), gold 2, correct 1 -> P 1, R 1/2, F1 = 1/1.5 = 2/3
    # macro P = (1/2 + 2/3 + 1)/3 = 13/18; R = (1/2 + 1 + 1/2)/3 = 2/3; F1 = (1/2 + 4/5 + 2/3)/3 = 59/90
    m = classification_metrics(np.array(gold), torch.tensor(pred))
    assert m["accuracy"] == approx(2 / 3)
    assert (m["micro_precision"], m["micro_recall"], m["micro_f1"]) == approx((2 / 3, 2 / 3, 2 / 3))
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == approx((13 / 18, 2 / 3, 59 / 90))
    assert accuracy(gold, pred) == approx(2 / 3)


def test_classification_metrics_with_excluded_label_and_fixed_label_set():
    gold = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    # exclude 0: guesses of 1/2 at pos 1,2,3,4 -> 4; gold 1/2 at pos 2,3,4,5 -> 4; correct pos 2,3,4 -> 3
    # micro P = R = F1 = 3/4
    # macro over {1, 2}: P = (2/3 + 1)/2 = 5/6, R = (1 + 1/2)/2 = 3/4, F1 = (4/5 + 2/3)/2 = 11/15
    m = classification_metrics(gold, pred, exclude=[0])
    assert m["accuracy"] == approx(2 / 3)  # accuracy ignores exclusions
    assert (m["micro_precision"], m["micro_recall"], m["micro_f1"]) == approx((0.75, 0.75, 0.75))
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == approx((5 / 6, 0.75, 11 / 15))
    # a fixed label set with an unseen class 3 (P = R = F1 = 0): macro F1 = (1/2 + 4/5 + 2/3 + 0)/4 = 59/120
    assert classification_metrics(gold, pred, labels=[0, 1, 2, 3])["macro_f1"] == approx(59 / 120)
    # a single excluded string label is one label, not its characters
    m_str = classification_metrics(["x", "Other"], ["x", "x"], exclude="Other")
    # guesses not Other: 2, gold not Other: 1, correct 1 -> P 1/2, R 1
    assert (m_str["micro_precision"], m_str["micro_recall"]) == approx((0.5, 1.0))


def test_classification_agrees_with_sklearn_when_available():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    gold[:40] = pred[:40]
    m = classification_metrics(gold, pred, exclude=[4])
    labels = [0, 1, 2, 3]
    assert m["macro_f1"] == approx(sk.f1_score(gold, pred, labels=labels, average="macro", zero_division=0))
    assert m["micro_f1"] == approx(sk.f1_score(gold, pred, labels=labels, average="micro", zero_division=0))
    assert m["accuracy"] == approx(sk.accuracy_score(gold, pred))


def test_accuracy_rejects_empty_and_mismatched():
    with pytest.raises(ValueError):
        accuracy([], [])
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])


# ------------------------------------------------------------------------------------------------- SemEval-2010 Task 8
CE12, CE21 = "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"
CW12, CW21 = "Component-Whole(e1,e2)", "Component-Whole(e2,e1)"


def test_semeval_official_score_by_hand():
    gold = [CE12, CE12, CE21, CW12, "Other", "Other"]
    pred = [CE12, CE21, CE21, "Other", CE12, CW21]
    # Cause-Effect: gold 3 (pos 0,1,2); predicted as Cause-Effect in any direction: pos 0,1,2,4 -> 4;
    #   correct with direction: pos 0, 2 -> 2 (pos 1 has the wrong direction: a wrong guess, in P's denominator)
    #   P = 2/4 = 1/2, R = 2/3, F1 = 2*(1/2)*(2/3)/(1/2 + 2/3) = 4/7
    # Component-Whole: gold 1 (pos 3); predicted 1 (pos 5, gold Other); correct 0 -> P = R = F1 = 0
    # Other is excluded; only the 2 relation types in the gold labels are averaged:
    #   macro P = (1/2 + 0)/2 = 1/4, macro R = (2/3 + 0)/2 = 1/3, macro F1 (official) = (4/7 + 0)/2 = 2/7
    #   micro: correct 2, guessed 4 + 1 = 5, gold 3 + 1 = 4 -> P = 2/5, R = 1/2, F1 = 2*0.2/0.9 = 4/9
    m = semeval_official_score(gold, pred)
    assert m["macro_f1"] == approx(2 / 7)
    assert (m["macro_precision"], m["macro_recall"]) == approx((1 / 4, 1 / 3))
    assert (m["micro_precision"], m["micro_recall"], m["micro_f1"]) == approx((2 / 5, 1 / 2, 4 / 9))


def test_semeval_rejects_labels_the_scorer_rejects():
    with pytest.raises(ValueError):
        semeval_official_score([CE12], ["Cause-Effect"])  # no direction
    with pytest.raises(ValueError):
        semeval_official_score([CE12], ["Cause-Effect(e1,e1)"])
    with pytest.raises(ValueError):
        semeval_official_score(["Other"], ["Other"])  # no relation in the key: the scorer divides by zero


def _semeval_test_key(data_root: Path) -> tuple[list[str], list[str]]:
    """(ids, directed gold labels) of the official test set. TEST_FILE_KEY.TXT has no directions, so the labels are
    read from TEST_FILE_FULL.TXT (4 lines per example: id<TAB>sentence, label, Comment, blank)."""
    path = data_root / "semeval2010_task8" / "SemEval2010_task8_testing_keys" / "TEST_FILE_FULL.TXT"
    lines = path.read_text().splitlines()
    ids = [lines[i].split("\t", 1)[0] for i in range(0, len(lines), 4) if lines[i].strip()]
    labels = [lines[i + 1].strip() for i in range(0, len(lines), 4) if lines[i].strip()]
    return ids, labels


def _flip(label: str) -> str:
    if label == "Other":
        return label
    return label[:-7] + ("(e2,e1)" if label.endswith("(e1,e2)") else "(e1,e2)")


def _next_relation(label: str) -> str:
    if label == "Other":
        return CE12
    return SEMEVAL_RELATIONS[(SEMEVAL_RELATIONS.index(label[:-7]) + 1) % 9] + label[-7:]


def _perturb_a(gold: list[str]) -> list[str]:
    """Every 7th relation gets the wrong direction, every 11th example becomes Other, every 13th the next type."""
    out = []
    for i, label in enumerate(gold):
        if i % 7 == 0 and label != "Other":
            out.append(_flip(label))
        elif i % 11 == 0:
            out.append("Other")
        elif i % 13 == 0:
            out.append(_next_relation(label))
        else:
            out.append(label)
    return out


def _perturb_b(gold: list[str]) -> list[str]:
    """Member-Collection never predicted (its P has a zero denominator), every 3rd Other -> Message-Topic(e2,e1),
    every 5th remaining example flipped."""
    out = []
    for i, label in enumerate(gold):
        if label.startswith("Member-Collection"):
            out.append("Other")
        elif label == "Other" and i % 3 == 0:
            out.append("Message-Topic(e2,e1)")
        elif i % 5 == 0:
            out.append(_flip(label))
        else:
            out.append(label)
    return out


# Output of the official semeval2010_task8_scorer-v1.2.pl (evaluation (iii)) on these perturbations of the real
# test key, run once by hand (the scorer is not in the shared data): micro counts and the printed macro percentages.
OFFICIAL_SCORER_OUTPUT = {
    "a": {"micro": (1633, 2115, 2263), "macro_pct": (77.12, 71.78, 74.32)},
    "b": {"micro": (1630, 2171, 2263), "macro_pct": (68.18, 71.35, 69.43)},
}
PERTURBATIONS = {"a": _perturb_a, "b": _perturb_b}


def test_semeval_real_test_key_counts(data_root):
    ids, gold = _semeval_test_key(data_root)
    assert len(gold) == 2717 and ids[0] == "8001" and ids[-1] == "10717"
    assert sum(g != "Other" for g in gold) == 2263
    assert semeval_official_score(gold, gold)["macro_f1"] == 1.0
    assert semeval_official_score(gold, ["Other"] * len(gold))["macro_f1"] == 0.0


@pytest.mark.parametrize("name", sorted(OFFICIAL_SCORER_OUTPUT))
def test_semeval_matches_official_scorer_numbers(data_root, name):
    _, gold = _semeval_test_key(data_root)
    m = semeval_official_score(gold, PERTURBATIONS[name](gold))
    correct, guessed, n_gold = OFFICIAL_SCORER_OUTPUT[name]["micro"]
    assert m["micro_precision"] == approx(correct / guessed)
    assert m["micro_recall"] == approx(correct / n_gold)
    # the scorer prints percentages with 2 decimals: ours must round to the same value (half a unit of slack)
    for key, printed in zip(("macro_precision", "macro_recall", "macro_f1"), OFFICIAL_SCORER_OUTPUT[name]["macro_pct"]):
        assert abs(100 * m[key] - printed) <= 0.005 + 1e-9, key


SCORER_ENV = "SEMEVAL2010_SCORER"


@pytest.mark.skipif(not (os.environ.get(SCORER_ENV) and shutil.which("perl")),
                    reason=f"set ${SCORER_ENV} to semeval2010_task8_scorer-v1.2.pl (and have perl) for a live check")
@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_semeval_matches_official_scorer_live(data_root, tmp_path, name):
    ids, gold = _semeval_test_key(data_root)
    pred = PERTURBATIONS[name](gold)
    for file_name, labels in (("key.txt", gold), ("pred.txt", pred)):
        (tmp_path / file_name).write_text("".join(f"{i}\t{label}\n" for i, label in zip(ids, labels)))
    out = subprocess.run(["perl", os.environ[SCORER_ENV], str(tmp_path / "pred.txt"), str(tmp_path / "key.txt")],
                         capture_output=True, text=True, check=True).stdout
    official = float(re.search(r"macro-averaged F1 = ([\d.]+)%", out).group(1))
    assert abs(100 * semeval_official_score(gold, pred)["macro_f1"] - official) <= 0.005 + 1e-9


# -------------------------------------------------------------------------------------------- ranking / LAMA probing
def test_rank_of_gold_counts_strictly_greater_scores():
    scores = torch.tensor([[0.1, 0.5, 0.3],   # gold 2 (0.3): one higher (0.5) -> rank 2
                           [0.9, 0.2, 0.9],   # gold 0 (0.9): tied with index 2, none strictly higher -> rank 1
                           [0.0, 0.1, 0.2]])  # gold 0 (0.0): two higher -> rank 3
    assert rank_of_gold(scores, torch.tensor([2, 0, 0])).tolist() == [2, 1, 3]
    # ragged candidate lists: [1, 2] gold 0 -> rank 2; [3, 2, 1] gold 0 -> rank 1
    assert rank_of_gold([[1.0, 2.0], [3.0, 2.0, 1.0]], [0, 0]).tolist() == [2, 1]
    with pytest.raises(ValueError):
        rank_of_gold([[1.0, 2.0]], [2])  # gold index out of range
    with pytest.raises(ValueError):
        rank_of_gold([[float("nan"), 2.0]], [0])


def test_ranking_metrics_by_hand():
    scores = np.array([[0.1, 0.5, 0.3], [0.9, 0.2, 0.9], [0.0, 0.1, 0.2]])
    # ranks 2, 1, 3 (see above): P@1 = 1/3, P@2 = 2/3, P@10 = 3/3, MRR = (1/2 + 1 + 1/3)/3 = 11/18
    m = ranking_metrics(scores, [2, 0, 0], ks=(1, 2, 10))
    assert m == approx({"p@1": 1 / 3, "p@2": 2 / 3, "p@10": 1.0, "mrr": 11 / 18, "n": 3.0})
    assert metrics_from_ranks([2, 1, 3], ks=(1, 2, 10)) == m
    with pytest.raises(ValueError):
        metrics_from_ranks([0, 1])


def test_macro_average_over_relations_is_unweighted():
    per_relation = {"P19": {"p@1": 1.0, "mrr": 1.0, "n": 1.0},   # one fact, right
                    "P36": {"p@1": 0.0, "mrr": 0.25, "n": 3.0}}  # three facts, all at rank 4
    # macro: P@1 = (1 + 0)/2 = 0.5 (micro over the 4 facts would be 1/4); MRR = (1 + 0.25)/2 = 0.625; n summed = 4
    assert macro_average(per_relation) == approx({"p@1": 0.5, "mrr": 0.625, "n": 4.0, "num_relations": 2.0})
    with pytest.raises(ValueError):
        macro_average({})


# ----------------------------------------------------------------------------------------------------------- others
def test_attachment_accuracy_ignores_padding():
    pred = torch.tensor([[2, 0, 2, 5], [1, 1, 0, 0]])
    gold = torch.tensor([[2, 0, 1, -100], [0, 1, 0, -100]])
    # scored: row 0 -> 2=2 ok, 0=0 ok, 2≠1; row 1 -> 1≠0, 1=1 ok, 0=0 ok; the two -100 positions are skipped
    # UAS = 4/6
    assert attachment_accuracy(pred, gold) == approx({"uas": 4 / 6, "n": 6.0})
    with pytest.raises(ValueError):
        attachment_accuracy([1, 2], [-100, -100])


def test_mean_std_uses_sample_std():
    # mean 0.72; deviations -0.02, 0.02, 0 -> squares sum 0.0008; / (3 - 1) = 0.0004; sqrt = 0.02
    mean, std = mean_std([0.70, 0.74, 0.72])
    assert (mean, std) == approx((0.72, 0.02))
    assert mean_std(torch.tensor([0.5])) == (0.5, 0.0)
    with pytest.raises(ValueError):
        mean_std([])
