"""Feature cache: same states as a live backbone pass, reused only under the same key, never left half-written.
Real MiniLM on real FewRel sentences; tiny random BERTs where two backbones of the same shape are needed."""
import json

import numpy as np
import pytest
import torch

from kadapter import KAdapterModel
from kadapter.backbone import extract_features
from kadapter.cache import CachedCollator, CachedDataset, FeatureCache, data_fingerprint
from kadapter.encoding import PadCollator, encode_relation_dataset
from kadapter.model import random_backbone

TAPS, MAX_LENGTH, N = (0, 2, 4), 40, 24


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return KAdapterModel.from_backbone(minilm_path)


@pytest.fixture(scope="module")
def encoded(minilm):
    from data_prep.eval_sets import load_fewrel

    dataset, _ = load_fewrel()
    sample = dataset.shuffle(seed=0).select(range(N))
    labels = {r: i for i, r in enumerate(sorted(set(dataset["relation"])))}
    return encode_relation_dataset(sample, minilm.tokenizer, MAX_LENGTH, labels)[0]


def build(model, data, root, **kwargs):
    options = dict(tokenizer=model.tokenizer, max_length=MAX_LENGTH, taps=TAPS, root=root, batch_size=16,
                   progress=False)
    return FeatureCache.build(model, data, **{**options, **kwargs})


def live_features(model, data, indices, taps=TAPS):
    batch = PadCollator(model.tokenizer.pad_token_id)([data[i] for i in indices])
    return extract_features(model.backbone, batch["input_ids"], batch["attention_mask"], layers=taps)


@pytest.mark.parametrize("dtype, atol", [("float32", 2e-5), ("float16", 1e-2), ("bfloat16", 6e-2)])
def test_cached_states_equal_a_live_pass(minilm, encoded, tmp_path, dtype, atol):
    cache = build(minilm, encoded, tmp_path, storage_dtype=dtype)
    indices = [3, 17, 0, 23, 8]
    cached, live = cache.features(indices), live_features(minilm, encoded, indices)
    assert torch.equal(cached.attention_mask, live.attention_mask)
    real = live.attention_mask.bool()
    for tap in TAPS:
        torch.testing.assert_close(cached.hidden_states[tap][real], live.hidden_states[tap][real], rtol=0, atol=atol)
    torch.testing.assert_close(cached.last_hidden_state[real], live.last_hidden_state[real], rtol=0, atol=atol)
    assert (cached.last_hidden_state[~real] == 0).all()
    # trimmed storage: one row per real token, 2 bytes per value in half precision
    tokens = sum(len(ids) for ids in encoded["input_ids"])
    assert cache.nbytes == tokens * 384 * (len(TAPS) + 1) * (4 if dtype == "float32" else 2)


def test_same_key_is_reused_and_any_change_recomputes(minilm, encoded, tmp_path):
    first = build(minilm, encoded, tmp_path)
    assert not first.hit
    again = build(minilm, encoded, tmp_path)
    assert again.hit and again.path == first.path
    assert json.loads((first.path / "meta.json").read_text())["key"] == again.key

    ids = encoded[N - 1]["input_ids"]
    changed_row = encoded.select(range(N - 1)).add_item({**encoded[N - 1], "input_ids": ids[:-2] + [ids[-2] + 1,
                                                                                                     ids[-1]]})
    variants = {
        "data": dict(data=changed_row),
        "taps": dict(taps=(0, 4)),
        "max_length": dict(max_length=MAX_LENGTH + 1),
        "dtype": dict(storage_dtype="bfloat16"),
    }
    paths = {first.path}
    for what, change in variants.items():
        data = change.pop("data", encoded)
        cache = build(minilm, data, tmp_path, **change)
        assert not cache.hit, f"changing the {what} reused a cache"
        paths.add(cache.path)
    assert len(paths) == 1 + len(variants)
    # the changed example really is read from its own cache
    cache = build(minilm, changed_row, tmp_path)
    assert cache.hit and data_fingerprint(changed_row) != data_fingerprint(encoded)
    assert not torch.equal(cache.features([N - 1]).last_hidden_state, first.features([N - 1]).last_hidden_state)


def test_other_backbone_weights_or_tokenizer_change_the_key(minilm, encoded, tmp_path):
    def tiny(seed):
        torch.manual_seed(seed)
        return random_backbone("bert", vocab_size=minilm.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4,
                               num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)

    a = FeatureCache.build(tiny(0), encoded, tokenizer=minilm.tokenizer, max_length=MAX_LENGTH, taps=(0, 2),
                           root=tmp_path, progress=False)
    b = FeatureCache.build(tiny(1), encoded, tokenizer=minilm.tokenizer, max_length=MAX_LENGTH, taps=(0, 2),
                           root=tmp_path, progress=False)
    assert not b.hit and a.path != b.path
    assert a.key["backbone_config"] == b.key["backbone_config"] and a.key["backbone_weights"] != b.key[
        "backbone_weights"]
    from tokenizer_fixtures import roberta_bpe_tokenizer

    c = FeatureCache.build(tiny(0), encoded, tokenizer=roberta_bpe_tokenizer(), max_length=MAX_LENGTH, taps=(0, 2),
                           root=tmp_path, progress=False)
    assert not c.hit and c.path not in (a.path, b.path)


def test_an_interrupted_build_leaves_nothing_that_looks_finished(minilm, encoded, tmp_path):
    calls = {"n": 0}

    def explode(module, args, output):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    handle = minilm.backbone.encoder.layer[0].register_forward_hook(explode)
    try:
        with pytest.raises(KeyboardInterrupt):
            build(minilm, encoded, tmp_path)
    finally:
        handle.remove()
    assert list(tmp_path.iterdir()) == [], "a partial cache was left on disk"
    cache = build(minilm, encoded, tmp_path)
    assert not cache.hit and len(cache) == len(encoded)


def test_bad_configurations_are_named(minilm, encoded, tmp_path):
    with pytest.raises(ValueError, match=r"tap layer\(s\) \[7\] out of range: the backbone has 6 blocks"):
        build(minilm, encoded, tmp_path, taps=(0, 7))
    with pytest.raises(ValueError, match="empty dataset"):
        build(minilm, encoded.select([]), tmp_path)
    with pytest.raises(ValueError, match="longer than max_length=12"):
        build(minilm, encoded, tmp_path, max_length=12)
    with pytest.raises(ValueError, match="storage_dtype"):
        build(minilm, encoded, tmp_path, storage_dtype="int8")


def test_cached_batches_carry_features_and_task_fields(minilm, encoded, tmp_path):
    cache = build(minilm, encoded, tmp_path, storage_dtype="float32")
    dataset = CachedDataset(cache, encoded)
    rows = dataset.__getitems__([5, 1, 20])
    assert rows[0]["cache_index"] == 5 and "input_ids" not in rows[0] and "labels" in rows[0]
    batch = CachedCollator(cache)(rows)
    assert set(batch) == {"features", "subj_pos", "obj_pos", "labels"}
    assert batch["labels"].tolist() == [encoded[i]["labels"] for i in (5, 1, 20)]
    width = max(len(encoded[i]["input_ids"]) for i in (5, 1, 20))
    assert batch["features"].hidden_states[2].shape == (3, width, 384)
    assert batch["features"].last_hidden_state.dtype == torch.float32
    np.testing.assert_array_equal(cache.lengths, [len(ids) for ids in encoded["input_ids"]])
    with pytest.raises(ValueError, match=f"the cache holds {N} examples, the dataset {N - 1}"):
        CachedDataset(cache, encoded.select(range(N - 1)))
