"""Task heads and input encoding, on real records (SemEval, OpenEntity, CosmosQA, UD EWT), the real MiniLM and a
real byte-level BPE tokenizer."""
import re

import pytest
import torch
import torch.nn.functional as F

from data_prep.dependency import encode_heads
from kadapter import AdapterConfig, KAdapterModel
from kadapter.encoding import (PadCollator, encode_dependency, encode_dependency_dataset, encode_entity_typing,
                               encode_multiple_choice, encode_relation, encode_relation_dataset, keep_window)
from kadapter.heads import (DependencyHeadPredictor, EntityTypingHead, MultipleChoiceHead,
                            RelationClassificationHead, TaskModel)
from tokenizer_fixtures import roberta_bpe_tokenizer

TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)


@pytest.fixture(scope="module")
def minilm(minilm_path):
    from kadapter import load_backbone

    return load_backbone(minilm_path)


@pytest.fixture(scope="module", params=["minilm", "roberta_bpe"])
def tokenizer(request, minilm):
    return minilm[1] if request.param == "minilm" else roberta_bpe_tokenizer()


@pytest.fixture(scope="module")
def semeval():
    from data_prep.eval_sets import load_semeval2010

    dataset, _ = load_semeval2010("train")
    return dataset.select(range(200))


# ------------------------------------------------------------------------------------------------------ windows
def test_keep_window_by_hand():
    assert keep_window(5, 10, [(1, 2)]) == [0, 1, 2, 3, 4]  # fits: nothing cut
    assert keep_window(10, 4, [(4, 5)]) == [3, 4, 5, 6]  # centred on the span
    assert keep_window(10, 4, [(0, 1)]) == [0, 1, 2, 3]  # clamped at the start
    assert keep_window(10, 4, [(8, 9)]) == [6, 7, 8, 9]  # and at the end
    assert keep_window(20, 4, [(0, 2), (15, 17)]) == [0, 1, 15, 16]  # too far apart: one window each
    with pytest.raises(ValueError, match="fewer than the 2 markers"):
        keep_window(20, 1, [(0, 2), (15, 17)])


# ---------------------------------------------------------------------------------------------------- relations
def test_relation_markers_survive_truncation_on_real_records(tokenizer, semeval):
    labels = {r: i for i, r in enumerate(sorted(set(semeval["relation"])))}
    truncated = 0
    for record in semeval:
        for max_length in (128, 12):
            enc = encode_relation(record, tokenizer, max_length, labels)
            tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
            assert len(enc["input_ids"]) <= max_length
            assert tokens[enc["subj_pos"]].lstrip("Ġ") == "@" and tokens[enc["obj_pos"]].lstrip("Ġ") == "#"
            assert enc["labels"] == labels[record["relation"]]
            assert tokens[0] == tokenizer.cls_token and tokens[-1] == tokenizer.sep_token
            truncated += enc["truncated"]
            if not enc["truncated"]:  # nothing cut: the whole marked sentence is there
                assert tokenizer.decode(enc["input_ids"], skip_special_tokens=True).count("@") == 2
    assert truncated > 100  # max_length 12 cuts most SemEval sentences


def test_relation_dataset_counts_truncations_and_rejects_unknown_labels(minilm, semeval):
    tokenizer = minilm[1]
    labels = {r: i for i, r in enumerate(sorted(set(semeval["relation"])))}
    encoded, stats = encode_relation_dataset(semeval, tokenizer, 16, labels)
    assert stats.examples == len(semeval) == len(encoded)
    assert stats.truncated == sum(encoded["truncated"]) and 0 < stats.truncated < len(semeval)
    assert sum(stats.label_counts.values()) == len(semeval)
    missing = sorted(labels)[0]
    with pytest.raises(ValueError, match=re.escape(f"relation '{missing}' is not among the head's")):
        encode_relation_dataset(semeval, tokenizer, 16, {k: v for k, v in labels.items() if k != missing})
    with pytest.raises(ValueError, match="empty"):
        encode_relation_dataset(semeval.select([]), tokenizer, 16, labels)


# ------------------------------------------------------------------------------------------------ entity typing
def test_entity_typing_marks_the_mention_on_real_records(tokenizer):
    from data_prep.eval_sets import load_openentity, openentity_types

    dataset, _ = load_openentity("dev")
    types = {t: i for i, t in enumerate(openentity_types())}
    for record in dataset.select(range(100)):
        mention = record["text"][record["span_start"]:record["span_end"]]
        for max_length in (128, 10):
            enc = encode_entity_typing(record, tokenizer, max_length, types)
            tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
            assert len(tokens) <= max_length and tokens[enc["entity_pos"]].lstrip("Ġ") == "@"
            assert [t for t, v in types.items() if enc["labels"][v] == 1.0] == sorted(
                record["labels"], key=types.get)
        # Untruncated: exactly the mention's tokens sit between the two markers.
        enc = encode_entity_typing(record, tokenizer, 512)
        start = enc["entity_pos"] + 1
        mention_ids = tokenizer(" " + mention, add_special_tokens=False)["input_ids"]
        assert enc["input_ids"][start:start + len(mention_ids)] == mention_ids
        assert tokenizer.convert_ids_to_tokens(enc["input_ids"][start + len(mention_ids)]).lstrip("Ġ") == "@"


# ---------------------------------------------------------------------------------------------- multiple choice
def test_multiple_choice_truncates_the_context_first(minilm):
    from data_prep.eval_sets import load_cosmosqa

    tokenizer = minilm[1]
    dataset, _ = load_cosmosqa()
    record = dataset[0]
    enc = encode_multiple_choice(record["context"], record["question"], record["choices"], tokenizer, 48,
                                 record["label"])
    assert enc["truncated"] and enc["labels"] == record["label"]
    assert len(enc["input_ids"]) == 4 and all(len(ids) <= 48 for ids in enc["input_ids"])
    context_ids = tokenizer(record["context"], add_special_tokens=False)["input_ids"]
    for ids, types, choice in zip(enc["input_ids"], enc["token_type_ids"], record["choices"]):
        first = [i for i, t in zip(ids, types) if t == 0][1:-1]  # [CLS] context [SEP]
        second = [i for i, t in zip(ids, types) if t == 1][:-1]  # question + answer [SEP]
        assert second == tokenizer(f"{record['question']} {choice}", add_special_tokens=False)["input_ids"]
        assert first == context_ids[:len(first)] and len(first) < len(context_ids)
    with pytest.raises(ValueError, match="outside the 4 choices"):
        encode_multiple_choice("c", "q", ["a", "b", "c", "d"], tokenizer, 32, 4)


# ------------------------------------------------------------------------------------------------- dependencies
def test_dependency_encoding_wraps_encode_heads(tokenizer):
    from data_prep.dependency import load_ud_ewt

    dataset, _ = load_ud_ewt("dev")
    sample = dataset.select(range(50))
    encoded, stats = encode_dependency_dataset(sample, tokenizer, 24)
    for record, enc in zip(sample, encoded):
        reference = encode_heads(record["words"], record["heads"], tokenizer, 24, padding=False)
        assert enc["input_ids"] == reference["input_ids"] and enc["labels"] == reference["head_labels"]
        assert encode_dependency(record, tokenizer, 24)["labels"] == enc["labels"]
    assert stats.dropped_labels == sum(encoded["n_dropped_labels"]) > 0  # 24 sub-tokens cut long sentences
    assert stats.truncated > 0


def test_pad_collator_pads_each_field_with_its_own_value(minilm, semeval):
    tokenizer = minilm[1]
    encs = [encode_relation(r, tokenizer, 64, None) for r in semeval.select(range(4))]
    deps = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 0, 1]},
            {"input_ids": [5], "attention_mask": [1], "labels": [-100]}]
    batch = PadCollator(tokenizer.pad_token_id)(encs)
    lengths = [len(e["input_ids"]) for e in encs]
    assert batch["input_ids"].shape == (4, max(lengths)) and "truncated" not in batch
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()
    dep = PadCollator(0, pad_to_multiple_of=4)(deps)
    assert dep["labels"].tolist() == [[-100, 0, 1, -100], [-100, -100, -100, -100]]
    mc = PadCollator(0)([{"input_ids": [[1, 2], [1, 2, 3]], "labels": 1}, {"input_ids": [[1], [1]], "labels": 0}])
    assert mc["input_ids"].shape == (2, 2, 3)
    hot = PadCollator(0)([{"labels": [1.0, 0.0]}, {"labels": [0.0, 0.0]}])["labels"]
    assert hot.dtype == torch.float32 and hot.shape == (2, 2)


# ------------------------------------------------------------------------------------------------------- heads
def test_relation_head_reads_the_marker_positions_and_checks_labels():
    torch.manual_seed(0)
    head = RelationClassificationHead(8, 3, dropout=0.0).eval()
    hidden = torch.randn(2, 5, 8)
    subj, obj = torch.tensor([1, 0]), torch.tensor([3, 4])
    out = head(hidden, None, subj_pos=subj, obj_pos=obj, labels=torch.tensor([2, 0]))
    pair = torch.cat([hidden[[0, 1], subj], hidden[[0, 1], obj]], -1)
    expected = head.classifier(head.dense(pair))  # the official dense -> dropout -> out_proj, no activation
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(out.loss, F.cross_entropy(expected, torch.tensor([2, 0])))
    hidden2 = hidden.clone()
    hidden2[:, 2] += 100  # a position no marker points at changes nothing
    torch.testing.assert_close(head(hidden2, None, subj_pos=subj, obj_pos=obj).logits, out.logits)
    with pytest.raises(ValueError, match=r"relation label\(s\) \[3\] outside the head's 3 classes"):
        head(hidden, None, subj_pos=subj, obj_pos=obj, labels=torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="marker position outside"):
        head(hidden, None, subj_pos=torch.tensor([5, 0]), obj_pos=obj)


def test_dependency_head_masks_padding_and_ignores_unlabelled_positions():
    torch.manual_seed(0)
    head = DependencyHeadPredictor(8, arc_size=16, dropout=0.0)
    hidden = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    labels = torch.tensor([[-100, 2, 0, -100, 2, -100], [-100, 0, 1, -100, -100, -100]])
    out = head(hidden, mask, labels=labels)
    assert out.logits.shape == (2, 6, 6)
    assert (out.logits.argmax(-1)[1] < 3).all(), "a padding position was predicted as a head"
    manual = F.cross_entropy(out.logits[labels != -100], labels[labels != -100])
    torch.testing.assert_close(out.loss, manual)
    out.loss.backward()
    with pytest.raises(ValueError, match="dependency-head position"):
        head(hidden, mask, labels=torch.tensor([[-100, 7, 0, -100, 2, -100], [-100] * 6]))


def test_entity_typing_and_multiple_choice_heads():
    torch.manual_seed(0)
    typing = EntityTypingHead(8, 4, dropout=0.0)
    hidden = torch.randn(3, 5, 8)
    labels = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]])
    out = typing(hidden, None, entity_pos=torch.tensor([0, 2, 4]), labels=labels)
    expected = typing.classifier(hidden[[0, 1, 2], [0, 2, 4]])
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(expected, labels))
    choice = MultipleChoiceHead(8, dropout=0.0)
    hidden = torch.randn(6, 5, 8)
    out = choice(hidden, None, num_choices=3, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss > 0
    # the official CosmosQA head: dropout -> Linear(H -> 1) on the first token, nothing in between
    torch.testing.assert_close(out.logits, choice.scorer(hidden[:, 0]).view(2, 3))
    assert [name for name, _ in choice.named_parameters()] == ["scorer.weight", "scorer.bias"]
    with pytest.raises(ValueError, match="answer"):
        choice(torch.randn(6, 5, 8), None, num_choices=3, labels=torch.tensor([0, 3]))


def test_task_model_on_minilm_token_and_feature_paths_agree(minilm, semeval):
    backbone, tokenizer = minilm
    torch.manual_seed(0)
    encoder = KAdapterModel(backbone, {"factual": AdapterConfig(**TINY, init_range=0.02)}, tokenizer=tokenizer)
    model = TaskModel(encoder, RelationClassificationHead(384, 19)).eval()
    labels = {r: i for i, r in enumerate(sorted(set(semeval["relation"])))}
    batch = PadCollator(tokenizer.pad_token_id)([encode_relation(r, tokenizer, 64, labels)
                                                 for r in semeval.select(range(4))])
    with torch.no_grad():
        direct = model(**batch)
        features = encoder.backbone_features(batch["input_ids"], batch["attention_mask"])
        heads = {k: batch[k] for k in ("subj_pos", "obj_pos", "labels")}
        cached = model(features=features, **heads)
    torch.testing.assert_close(direct.logits, cached.logits, rtol=0, atol=0)
    assert direct.loss.item() == pytest.approx(torch.log(torch.tensor(19.0)).item(), rel=0.2)
    assert not any(k.startswith("encoder.backbone.") for k in model.trainable_state_dict())
