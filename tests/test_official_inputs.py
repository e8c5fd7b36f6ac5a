"""``input_format="official"``: the token sequences microsoft/K-Adapter's featurisers build, on real examples.

The official code tokenizes each piece separately with pytorch_transformers' RoBERTa tokenizer, which prepends one
space to every piece (``_tokenize``: ``text = ' ' + text``). Byte-level BPE is lossless, so joining the tokens and
turning ``Ġ`` back into a space must give exactly the string the official code tokenized, piece by piece; each test
checks that, the head's positions, and prints the exact sequence for the real example (the test tokenizer is a
byte-level BPE trained on UD EWT, so its merges differ from roberta-large's, not its pre-tokenization).
"""
import pytest

from kadapter.official_inputs import (OFFICIAL_CLAMP, official_entity_typing, official_multiple_choice,
                                      official_relation)
from tokenizer_fixtures import roberta_bpe_tokenizer


@pytest.fixture(scope="module")
def tok():
    return roberta_bpe_tokenizer()


def as_text(tokens):
    return "".join(tokens).replace("Ġ", " ")


def test_entity_typing_as_the_official_featuriser(tok):
    from data_prep.eval_sets import load_openentity

    record = load_openentity("train")[0][0]  # "... invites Web users to locate ..." -> person
    text, s, e = record["text"], record["span_start"], record["span_end"]
    out = official_entity_typing(record, tok, 256, {"person": 0, "group": 1})
    tokens = tok.convert_ids_to_tokens(out["input_ids"])
    print(" ".join(tokens))
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    # <s> + tok(left) + tok('@') + tok(mention) + tok('@') + tok(right) + </s>, one space prepended to each piece
    assert as_text(tokens[1:-1]) == " " + text[:s] + " @" + " " + text[s:e] + " @" + " " + text[e:]
    assert text[s - 1] == " " and tokens[out["entity_pos"] - 1] == "Ġ"  # the left piece's trailing space: a lone Ġ
    assert tokens[out["entity_pos"]] == "Ġ@" and out["entity_pos"] == tokens.index("Ġ@")
    assert out["labels"] == [1.0, 0.0] and not out["truncated"]
    # the exact sequence around the mention: lone Ġ on both sides, "Ġ@" markers
    assert tokens[15:26] == ["Ġinv", "ites", "Ġ", "Ġ@", "ĠW", "eb", "Ġus", "ers", "Ġ@", "Ġ", "Ġto"]


def test_relation_as_the_official_featuriser(tok):
    from data_prep.eval_sets import load_semeval2010

    record = load_semeval2010("train")[0][0]  # "... in an arrayed @ configuration @ of antenna # elements # ."
    out = official_relation(record, tok, 184, {record["relation"]: 0})
    tokens = tok.convert_ids_to_tokens(out["input_ids"])
    print(" ".join(tokens))
    words, (ss, se, os_, oe) = record["tokens"], (record["subj_start"], record["subj_end"], record["obj_start"],
                                                  record["obj_end"])
    assert ss < os_  # subject first in this sentence
    # the word pieces joined with spaces and tokenized; the markers raw '@' and '#' (no Ġ), in sentence order
    expected = (" " + " ".join(words[:ss]) + "@ " + " ".join(words[ss:se]) + "@ " + " ".join(words[se:os_]) + "#"
                + " " + " ".join(words[os_:oe]) + "#" + " " + " ".join(words[oe:]))
    assert as_text(tokens[1:-1]) == expected
    assert tokens[out["subj_pos"]] == "@" and tokens[out["obj_pos"]] == "#"
    assert out["subj_pos"] == tokens.index("@") and out["obj_pos"] == tokens.index("#")
    assert tokens[13:] == ["Ġan", "Ġar", "r", "ay", "ed", "@", "Ġconf", "ig", "ur", "ation", "@", "Ġof", "Ġan", "t",
                           "en", "na", "#", "Ġele", "ments", "#", "Ġ.", "</s>"]
    assert out["labels"] == 0 and not out["truncated"]


def test_relation_marker_cut_off_takes_the_official_clamp(tok):
    record = {"tokens": "Dante Alighieri , the poet who wrote the Comedy , was born in Florence".split(),
              "subj_start": 0, "subj_end": 2, "obj_start": 13, "obj_end": 14, "relation": "P19"}
    out = official_relation(record, tok, 16)
    tokens = tok.convert_ids_to_tokens(out["input_ids"])
    assert len(tokens) == 16 and tokens[-1] == "</s>" and out["truncated"]
    assert "#" not in tokens and out["obj_pos"] == 16 - OFFICIAL_CLAMP  # cut from the end, then clamped
    assert tokens[out["subj_pos"]] == "@"


def test_cosmosqa_as_the_official_featuriser(tok):
    from data_prep.eval_sets import load_cosmosqa

    record = load_cosmosqa()[0][0]
    out = official_multiple_choice(record["context"], record["question"], record["choices"], tok, 256,
                                   record["label"])
    assert len(out["input_ids"]) == 4 and out["labels"] == record["label"]
    for ids, choice in zip(out["input_ids"], record["choices"]):
        tokens = tok.convert_ids_to_tokens(ids)
        # <s> context </s> question </s> answer </s>: question and answer separated, as read_examples_origin
        assert tokens[0] == "<s>" and tokens.count("</s>") == 3 and tokens[-1] == "</s>"
        first, second = tokens.index("</s>"), tokens.index("</s>", tokens.index("</s>") + 1)
        assert as_text(tokens[1:first]) == " " + record["context"]
        assert as_text(tokens[first + 1:second]) == " " + record["question"]
        assert as_text(tokens[second + 1:-1]) == " " + choice
    print(" ".join(tok.convert_ids_to_tokens(out["input_ids"][1])[-16:]))


def test_cosmosqa_truncation_pops_the_longer_side(tok):
    args = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen", "Why ?",
            ["Because ."])
    full = tok.convert_ids_to_tokens(official_multiple_choice(*args, tok, 256)["input_ids"][0])
    n_context = full.index("</s>") - 1
    n_ending = len(full) - n_context - 3
    assert n_context > n_ending + 2
    out = official_multiple_choice(*args, tok, 3 + n_ending + n_ending + 2)  # the context must lose tokens
    tokens = tok.convert_ids_to_tokens(out["input_ids"][0])
    assert out["truncated"] and tokens.index("</s>") - 1 == n_ending + 2  # popped from the end of the longer side
    assert tokens[tokens.index("</s>"):] == full[full.index("</s>"):]  # the shorter ending kept whole
    assert tokens[:tokens.index("</s>")] == full[:n_ending + 3]


def test_the_task_encoder_uses_the_official_format(tok):
    from kadapter import finetuning as ft

    data = ft.load_task("semeval", limits={"train": 4, "dev": 2, "test": 2})
    kit, _ = ft.encode_task(data, tok, 184)
    official, stats = ft.encode_task(data, tok, 184, input_format="official")
    assert stats["train"]["truncated"] == 0
    assert stats["train"]["examples"] == 4
    for k, o in zip(kit["train"], official["train"]):
        kt, ot = tok.convert_ids_to_tokens(k["input_ids"]), tok.convert_ids_to_tokens(o["input_ids"])
        assert [ot[p] for p in o["positions"]] == ["@", "#"]  # official: raw markers
        assert [kt[p] for p in k["positions"]] == ["Ġ@", "Ġ#"]  # kit: markers as words
    with pytest.raises(ValueError, match="input_format"):
        ft.encode_task(data, tok, 64, input_format="paper")
