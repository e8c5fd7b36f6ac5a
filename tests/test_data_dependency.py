"""Dependency heads: gold UD EWT, spaCy parses, UAS, and sub-word head labels on real tokenizers."""
import re

import pytest
from transformers import AutoTokenizer

from data_prep.dependency import (IGNORE_INDEX, agreement_by_relation, attachment_scores, encode_dependency_dataset,
                                  encode_heads, is_punctuation, load_spacy, load_ud_ewt, parse_texts, parse_words,
                                  read_conllu, spacy_uas, words_tokenizer)
from data_prep.report import DataFormatError
from tokenizer_fixtures import BPE_VOCAB_SIZE, roberta_bpe_tokenizer

# A sentence whose words split into several sub-tokens before their heads: word-level labels laid over sub-word
# positions (the official K-Adapter code) drift here.
WORDS = ["The", "tokenizers", "disagreed", "unbelievably", "."]
HEADS = [2, 3, 0, 3, 3]


@pytest.fixture(scope="module")
def dev():
    dataset, report = load_ud_ewt("dev")
    assert report.total_skipped == 0
    return dataset


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module", params=["wordpiece", "bpe"])
def tokenizer(request, minilm_tokenizer):
    return minilm_tokenizer if request.param == "wordpiece" else roberta_bpe_tokenizer()


# ------------------------------------------------------------------------------------------------ gold CoNLL-U

@pytest.mark.parametrize("split, sentences, words", [("train", 12544, 204577), ("dev", 2001, 25147),
                                                      ("test", 2077, 25094)])
def test_ud_ewt_real_counts(split, sentences, words, data_root):
    dataset, report = load_ud_ewt(split)
    assert len(dataset) == sentences and report.kept == sentences and report.total_skipped == 0
    assert sum(len(w) for w in dataset["words"]) == words
    # every word line of the file (integer ID, not a range "3-4" nor an empty node "8.1") is one word
    text = (data_root / "ud_english_ewt" / f"en_ewt-ud-{split}.conllu").read_text(encoding="utf-8")
    assert len(re.findall(r"^\d+\t", text, flags=re.M)) == words
    for record in dataset.select(range(0, sentences, 97)):
        assert len(record["heads"]) == len(record["words"])
        assert record["heads"].count(0) == 1  # UD basic trees have one root
        assert all(0 <= h <= len(record["words"]) for h in record["heads"])


def test_ud_multiword_tokens_and_empty_nodes_are_skipped(dev):
    by_id = {r["id"]: r for r in dev.select(range(120))}
    sentence = by_id["weblog-blogspot.com_alaindewitt_20060827093500_ENG_20060827_093500-0009"]
    # "didn't" is the range line 3-4; the words are "did" and "n't"
    assert sentence["words"] == ["Yet", "we", "did", "n't", "charge", "them", "for", "the", "evacuation", "."]
    assert sentence["heads"] == [5, 5, 5, 5, 0, 5, 9, 9, 5, 5]
    with_empty = [r for r in dev if "SX40" in r["words"] and "3200" in r["words"]]
    assert len(with_empty) == 1 and with_empty[0]["words"].count("has") == 0  # 10.1 / 21.1 "has" are empty nodes


GOOD = ("# sent_id = s1\n# text = Hi there\n"
        "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t0:root\t_\n"
        "2\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t1:advmod\t_\n\n")


@pytest.mark.parametrize("bad_line, field", [
    ("2\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t1:advmod", "columns"),   # 9 columns
    ("2\tthere\tthere\tADV\tRB\t_\tX\tadvmod\t1:advmod\t_", "HEAD"),   # head not a number
    ("2\tthere\tthere\tADV\tRB\t_\t7\tadvmod\t1:advmod\t_", "HEAD"),   # head outside the sentence
    ("3\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t1:advmod\t_", "ID"),     # ids out of sequence
])
def test_read_conllu_malformed_line_names_file_line_field(tmp_path, bad_line, field):
    path = tmp_path / "bad.conllu"
    path.write_text(GOOD + GOOD.replace("s1", "s2").replace(GOOD.splitlines()[3], bad_line), encoding="utf-8")
    with pytest.raises(DataFormatError) as error:
        read_conllu(path)
    assert (error.value.path, error.value.line, error.value.field) == (str(path), 9, field)
    assert "bad.conllu, line 9" in str(error.value)


def test_read_conllu_good_file(tmp_path):
    path = tmp_path / "good.conllu"
    path.write_text(GOOD + "# sent_id = only-comments\n\n" + GOOD.replace("s1", "s2"), encoding="utf-8")
    dataset, report = read_conllu(path, source="toy")
    assert dataset.to_list() == [
        {"id": "s1", "words": ["Hi", "there"], "heads": [0, 1], "deprels": ["root", "advmod"], "source": "toy"},
        {"id": "s2", "words": ["Hi", "there"], "heads": [0, 1], "deprels": ["root", "advmod"], "source": "toy"}]
    assert report.kept == 2 and report.skipped == {"sentence without words": 1}


# ------------------------------------------------------------------------------------------------ spaCy

def test_spacy_parses_raw_text_into_sentence_records():
    texts = ["The cat sat on the mat.  It   was happy.", "   ", "Google Maps helps Web users locate addresses."]
    dataset, report = parse_texts(texts, ids=["a", "b", "c"])
    assert report.skipped == {"empty text": 1} and report.kept == len(dataset) == 3
    assert dataset["id"] == ["a-s0", "a-s1", "c-s0"]
    cat = dataset[0]
    assert cat["words"] == ["The", "cat", "sat", "on", "the", "mat", "."]
    assert cat["heads"][:3] == [2, 3, 0]  # the -> cat -> sat (root)
    assert cat["source"].startswith("spacy:")
    for record in dataset:
        assert record["heads"].count(0) == 1 and "" not in record["words"]


def test_spacy_keeps_gold_tokenisation(dev):
    gold = dev.select(range(5)).to_list()
    parsed, report = parse_words([r["words"] for r in gold] + [[]], ids=[r["id"] for r in gold] + ["empty"])
    assert report.skipped == {"empty word list": 1}
    assert parsed["words"] == [r["words"] for r in gold] and parsed["id"] == [r["id"] for r in gold]
    assert all(h.count(0) == 1 for h in parsed["heads"])  # one_sentence: one tree per gold sentence


def test_spacy_uas_on_dev_subset(dev):
    scores = spacy_uas(dev.select(range(150)))
    assert scores["n_sentences"] == 150
    assert scores["n_words"] == sum(len(w) for w in dev.select(range(150))["words"])
    assert scores["n_words_no_punct"] < scores["n_words"]
    # label schemes differ (UD content heads vs spaCy's ClearNLP function heads): far from 1, far above chance
    assert 0.45 < scores["uas"] < 0.9 and 0.45 < scores["uas_no_punct"] < 0.9
    assert "by_relation" not in scores
    rows = {row["relation"]: row for row in spacy_uas(dev.select(range(150)), by_relation=True)["by_relation"]}
    assert sum(row["words"] for row in rows.values()) == scores["n_words"]
    assert sum(row["agree"] for row in rows.values()) == round(scores["uas"] * scores["n_words"])
    # the schemes put prepositions and copulas the other way round: nearly always "wrong"; subjects mostly agree
    assert rows["case"]["agreement"] < 0.2 and rows["cop"]["agreement"] < 0.2 and rows["nsubj"]["agreement"] > 0.6


def test_attachment_scores_hand_computed():
    gold = [{"words": ["I", "ran", ",", "home", "."], "heads": [2, 0, 2, 2, 2]},
            {"words": ["Go", "!"], "heads": [0, 1]}]
    pred = [{"words": ["I", "ran", ",", "home", "."], "heads": [2, 0, 4, 3, 2]},
            {"words": ["Go", "!"], "heads": [0, 1]}]
    scores = attachment_scores(gold, pred)
    # all 7 words: wrong are "," and "home" -> 5/7; without punctuation (",", ".", "!"): I, ran, home, Go -> 3/4
    assert scores["uas"] == pytest.approx(5 / 7) and scores["uas_no_punct"] == pytest.approx(3 / 4)
    assert (scores["n_sentences"], scores["n_words"], scores["n_words_no_punct"]) == (2, 7, 4)
    with pytest.raises(ValueError):
        attachment_scores(gold, pred[:1])
    gold[0]["deprels"], gold[1]["deprels"] = ["nsubj", "root", "punct", "obl:npmod", "punct"], ["root", "punct"]
    rows = agreement_by_relation(gold, pred)
    # disagreements: "," (punct) and "home" (obl): one each of 2
    assert rows[:2] == [{"relation": "obl", "words": 1, "agree": 0, "agreement": 0.0, "share_of_disagreements": 0.5},
                        {"relation": "punct", "words": 3, "agree": 2, "agreement": 2 / 3,
                         "share_of_disagreements": 0.5}]
    assert {r["relation"]: r["words"] for r in rows[2:]} == {"nsubj": 1, "root": 2}


def test_is_punctuation():
    assert all(map(is_punctuation, [".", ",", "--", "...", "«", "(", "'"]))
    assert not any(map(is_punctuation, ["'s", "$", "a.", "1", ""]))


# ------------------------------------------------------------------------------------------------ sub-word labels

def test_roberta_bpe_fixture_is_a_real_byte_level_bpe():
    tok = roberta_bpe_tokenizer()
    assert tok.is_fast and len(tok) == BPE_VOCAB_SIZE and tok.add_prefix_space
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = tok("The tokenizers disagreed.").tokens()
    assert pieces[0] == "<s>" and pieces[-1] == "</s>" and pieces[1] == "ĠThe" and len(pieces) > 6


def test_head_labels_hand_computed_wordpiece(minilm_tokenizer):
    out = encode_heads(WORDS, HEADS, minilm_tokenizer, max_length=16)
    assert minilm_tokenizer.convert_ids_to_tokens(out["input_ids"][:13]) == [
        "[CLS]", "the", "token", "##izer", "##s", "disagreed", "un", "##bel", "##ie", "##va", "##bly", ".", "[SEP]"]
    expected = [IGNORE_INDEX] * 16
    expected[1], expected[2], expected[5], expected[6], expected[11] = 2, 5, 0, 5, 5
    assert out["head_labels"] == expected
    assert out["word_starts"] == [1, 2, 5, 6, 11] and out["n_dropped_labels"] == 0
    assert out["attention_mask"] == [1] * 13 + [0] * 3
    # laying word indices over sub-word positions would have sent "The" to "##izer" (position 2 = head index)
    # and "tokenizers" to position 3: exactly the drift the first-sub-token mapping removes
    assert out["head_labels"][2] != HEADS[1]


def _first_piece(tokenizer, word: str) -> str:
    return tokenizer.convert_ids_to_tokens(
        tokenizer([word], is_split_into_words=True, add_special_tokens=False)["input_ids"][0])


def test_head_labels_land_on_the_head_words_first_piece(tokenizer, dev):
    tokenizer = words_tokenizer(tokenizer)
    sentences = [r for r in dev.select(range(400))
                 if sum(len(tokenizer.tokenize(w)) > 1 for w in r["words"]) >= 3][:20]
    assert len(sentences) == 20
    for record in sentences + [{"words": WORDS, "heads": HEADS}]:
        words, heads = record["words"], record["heads"]
        out = encode_heads(words, heads, tokenizer, max_length=256)
        tokens = tokenizer.convert_ids_to_tokens(out["input_ids"])
        labelled = [p for p, label in enumerate(out["head_labels"]) if label != IGNORE_INDEX]
        assert labelled == out["word_starts"] and out["n_dropped_labels"] == 0
        for word, (position, head) in enumerate(zip(out["word_starts"], heads)):
            assert tokens[position] == _first_piece(tokenizer, words[word])  # label sits on the word's start
            target = out["head_labels"][position]
            if head == 0:
                assert target == 0 and out["input_ids"][0] in (tokenizer.cls_token_id, tokenizer.bos_token_id)
            else:
                assert tokens[target] == _first_piece(tokenizer, words[head - 1])
                # the decoded piece is the beginning of the head word
                decoded = tokenizer.decode([out["input_ids"][target]]).strip()
                assert words[head - 1].lower().startswith(decoded.lower())


def test_truncated_words_and_heads_are_counted(minilm_tokenizer):
    out = encode_heads(WORDS, HEADS, minilm_tokenizer, max_length=5)  # [CLS] the token ##izer [SEP]
    assert out["head_labels"] == [IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    # "tokenizers" keeps its first piece but its head "disagreed" is cut; the last three words are cut themselves
    assert out["word_starts"] == [1, 2, -1, -1, -1] and out["n_dropped_labels"] == 4
    out = encode_heads(WORDS, HEADS, minilm_tokenizer, max_length=8)
    assert out["n_dropped_labels"] == 1  # only "." is cut


def test_byte_level_bpe_without_prefix_space_is_fixed():
    plain = AutoTokenizer.from_pretrained(roberta_bpe_tokenizer().name_or_path, add_prefix_space=False)
    # the pitfall: transformers 5 silently glues pre-split words together
    assert plain(WORDS, is_split_into_words=True).tokens()[1] == "The"
    fixed = words_tokenizer(plain)
    assert fixed is not plain and words_tokenizer(plain) is fixed
    assert fixed(WORDS, is_split_into_words=True).tokens()[1] == "ĠThe"
    assert encode_heads(WORDS, HEADS, plain, 32) == encode_heads(WORDS, HEADS, roberta_bpe_tokenizer(), 32)


def test_tokenizer_requirements(minilm_tokenizer):
    assert words_tokenizer(minilm_tokenizer) is minilm_tokenizer  # WordPiece needs no change
    with pytest.raises(ValueError, match="heads"):
        encode_heads(WORDS, HEADS[:-1], minilm_tokenizer)
    with pytest.raises(ValueError, match="outside"):
        encode_heads(WORDS, [2, 3, 0, 3, 9], minilm_tokenizer)


def test_head_labels_are_right_under_left_padding(minilm_tokenizer):
    """A causal LM's tokenizer pads on the left: ROOT is then the first real token, every label shifts with the
    padding, and an unpadded encoding is the same under either padding side."""
    left = AutoTokenizer.from_pretrained(minilm_tokenizer.name_or_path, padding_side="left")
    right = encode_heads(WORDS, HEADS, minilm_tokenizer, 32)
    assert encode_heads(WORDS, HEADS, left, 32, padding=False) == encode_heads(WORDS, HEADS, minilm_tokenizer, 32,
                                                                                padding=False)
    padded = encode_heads(WORDS, HEADS, left, 32)
    pads = padded["attention_mask"].index(1)
    assert pads == 32 - sum(right["attention_mask"]) > 0
    assert padded["input_ids"][pads:] == right["input_ids"][:32 - pads]
    shifted = [IGNORE_INDEX if x == IGNORE_INDEX else x + pads for x in right["head_labels"][:32 - pads]]
    assert padded["head_labels"] == [IGNORE_INDEX] * pads + shifted
    root_word = HEADS.index(0)
    assert padded["head_labels"][padded["word_starts"][root_word]] == pads  # ROOT: the [CLS] after the pads


def test_dataset_map_matches_single_encoding(tokenizer, dev):
    subset = dev.select(range(60))
    encoded = encode_dependency_dataset(subset, tokenizer, max_length=24)
    assert encoded.column_names == ["id", "input_ids", "attention_mask", "head_labels", "word_starts",
                                    "n_dropped_labels"]
    assert encoded["id"] == subset["id"]
    for record, row in zip(subset, encoded):
        single = encode_heads(record["words"], record["heads"], tokenizer, max_length=24)
        assert {k: row[k] for k in single} == single
        assert len(row["input_ids"]) == 24
        assert all(label == IGNORE_INDEX or 0 <= label < sum(row["attention_mask"]) for label in row["head_labels"])
    assert sum(encoded["n_dropped_labels"]) > 0  # max_length 24 cuts the long sentences, and that is counted
    dynamic = encode_dependency_dataset(subset.select(range(3)), tokenizer, max_length=24, padding=False)
    assert [len(ids) for ids in dynamic["input_ids"]] == [sum(m) for m in encoded.select(range(3))["attention_mask"]]


def test_load_spacy_is_cached():
    assert load_spacy() is load_spacy() and "parser" in load_spacy().pipe_names
