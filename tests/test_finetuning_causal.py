"""Fine-tuning on a causal backbone: each task head reads a position the causal model has run over the whole of what
it should see (relation: the closing ``@``/``#``; entity typing: the closing ``@``; multiple choice: the last real
token of each choice), under left padding as under none; the feature cache of a bfloat16 backbone; dependency
pre-training with a left-padding tokenizer. Tiny random causal LMs (Llama and Gemma 3 architectures, built from a
config with a small real tokenizer: no download) on real records of the shared data."""
from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from kadapter import AdapterConfig, KAdapterModel
from kadapter import finetuning as ft
from kadapter.backbone_kind import CAUSAL_LM_KIND, ENCODER_KIND, kind_of
from kadapter.cache import FeatureCache
from kadapter.model import random_backbone
from test_causal import SMALL, TINY, tiny_causal_lm

LIMITS = {"train": 4, "dev": 3, "test": 3}
HEAD_LAYER = {ft.RELATION: "dense", ft.ENTITY_TYPING: "classifier", ft.MULTIPLE_CHOICE: "scorer"}
TASK_OF = {ft.RELATION: "semeval", ft.ENTITY_TYPING: "openentity", ft.MULTIPLE_CHOICE: "cosmosqa"}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tokenizer_fixtures import roberta_bpe_tokenizer_dir

    # a copy of its own: padding on the left must not leak into the session's shared test tokenizer
    return CAUSAL_LM_KIND.prepare_tokenizer(AutoTokenizer.from_pretrained(roberta_bpe_tokenizer_dir()))


@pytest.fixture(scope="module", params=sorted(TINY))
def causal(request, tokenizer):
    model = tiny_causal_lm(request.param, len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                           max_position_embeddings=512).eval()
    assert kind_of(model) is CAUSAL_LM_KIND and tokenizer.padding_side == "left"
    return model


@pytest.fixture(scope="module")
def tasks():
    return {kind: ft.load_task(name, limits=LIMITS) for kind, name in TASK_OF.items()}


def head_input(model: ft.SequenceTaskModel, batch: dict) -> torch.Tensor:
    """What the head's first layer receives (dropout is 0): the vectors it read, one row per sequence or pair."""
    seen = []
    layer = getattr(model.head, HEAD_LAYER[model.kind])
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"})
    handle.remove()
    return seen[0]


def tokens_model(kind: str, backbone, tokenizer, num_labels: int | None) -> ft.SequenceTaskModel:
    encoder = KAdapterModel(backbone, {"f": SMALL}, tokenizer=tokenizer).eval()
    head = ft.make_head(kind, backbone.config.hidden_size, num_labels, 0.0, encoder.kind.sequence_pooling)
    return ft.SequenceTaskModel(kind, encoder, head).eval()


def with_ids(example: dict, ids: list[int]) -> dict:
    return {**example, "input_ids": ids, "attention_mask": [1] * len(ids)}


def other_id(token_id: int, tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids("Ġthe") if token_id != tokenizer.convert_tokens_to_ids("Ġthe") else \
        tokenizer.convert_tokens_to_ids("Ġa")


@pytest.mark.parametrize("kind", [ft.RELATION, ft.ENTITY_TYPING])
def test_marker_heads_read_the_closing_marker_under_left_padding(kind, causal, tokenizer, tasks):
    data = tasks[kind]
    encoded, _ = ft.encode_task(data, tokenizer, 64, kind_of(causal))
    rows = [dict(r) for r in encoded["train"]]
    rows.sort(key=lambda r: len(r["input_ids"]))
    short, long_ = rows[0], rows[-1]
    assert len(short["input_ids"]) < len(long_["input_ids"]), "the batch must be padded"
    last = max(short["positions"])
    ids = short["input_ids"]
    # the positions hold the closing markers: what precedes them ends with "@ mention @" / "# object #"
    for p in short["positions"]:
        assert tokenizer.convert_ids_to_tokens(ids[p]).lstrip("Ġ") in ("@", "#")
        assert ids[:p].count(ids[p]) == 1, "the opening marker comes before the one read"
    model = tokens_model(kind, causal, tokenizer, len(data.labels))
    collate = ft.collate_tokens(kind, tokenizer.pad_token_id, "left")

    def read(example: dict) -> torch.Tensor:
        batch = collate([example, long_])
        assert batch["attention_mask"][0, 0] == 0, "left padding expected"
        return head_input(model, batch)[0]

    reference = read(short)
    alone = head_input(model, collate([short]))[0]
    torch.testing.assert_close(reference, alone, atol=1e-5, rtol=1e-5)  # padding changes nothing
    after = ids[:last + 1] + [other_id(t, tokenizer) for t in ids[last + 1:]]
    assert after != ids or last == len(ids) - 1
    torch.testing.assert_close(read(with_ids(short, after)), reference, atol=1e-5, rtol=1e-5)
    marker = list(ids)
    marker[last] = other_id(ids[last], tokenizer)
    assert not torch.allclose(read(with_ids(short, marker)), reference, atol=1e-4)
    # an encoder's positions stay the opening markers, as always
    opening, _ = ft.encode_task(data, tokenizer, 64, ENCODER_KIND)
    assert all(o < c for r_open, r_close in zip(opening["train"], encoded["train"])
               for o, c in zip(r_open["positions"], r_close["positions"]))


def test_multiple_choice_reads_the_last_token_and_the_four_choices_differ(causal, tokenizer, tasks, tmp_path):
    data = tasks[ft.MULTIPLE_CHOICE]
    encoded, _ = ft.encode_task(data, tokenizer, 96, kind_of(causal))
    example = dict(encoded["test"][0])
    assert [p for [p] in example["positions"]] == [len(ids) - 1 for ids in example["input_ids"]]
    # the tokens path, left-padded: the head reads each choice's last token; choices differ
    model = tokens_model(ft.MULTIPLE_CHOICE, causal, tokenizer, None)
    collate = ft.collate_tokens(ft.MULTIPLE_CHOICE, tokenizer.pad_token_id, "left")
    half = [ids[:len(ids) // 2] for ids in example["input_ids"]]  # a shorter partner: the example gets padded
    partner = {**example, "input_ids": half, "attention_mask": [[1] * len(h) for h in half],
               "positions": [[len(h) - 1] for h in half]}
    batch = collate([example, partner])
    assert (batch["attention_mask"][4:, 0] == 0).all() and (batch["attention_mask"][:4, 0] == 1).all()
    alone = head_input(model, collate([partner]))
    torch.testing.assert_close(head_input(model, batch)[4:], alone, atol=1e-5, rtol=1e-5)  # padding: no change
    pooled = head_input(model, batch)[:4]
    assert all(not torch.allclose(pooled[a], pooled[b], atol=1e-4) for a in range(4) for b in range(a + 1, 4))
    first = dict(example)
    first["input_ids"] = [ids[:-1] + [other_id(ids[-1], tokenizer)] for ids in example["input_ids"]]
    assert not torch.allclose(head_input(model, collate([first, partner]))[:4], pooled, atol=1e-4)
    # the cached path (frozen settings) reads the same vectors: the backbone's at each choice's last token
    feats = ft.split_features(causal, tokenizer, encoded["test"], ft.MULTIPLE_CHOICE, {}, taps=[], max_length=96,
                              cache_root=tmp_path, storage_dtype="float32", progress=False)
    vectors = feats.backbone[0, :, 0]  # (choices, hidden)
    assert all(not torch.allclose(vectors[a], vectors[b], atol=1e-4) for a in range(4) for b in range(a + 1, 4))
    with torch.no_grad():
        _, last = CAUSAL_LM_KIND.run(causal, batch["input_ids"][:4], batch["attention_mask"][:4])
    torch.testing.assert_close(vectors, last[:, -1], atol=1e-4, rtol=1e-4)  # the example's last token


def test_causal_finetuning_runs_every_task_with_a_bf16_cache_by_default(causal, tokenizer, tasks, tmp_path):
    adapter = ft.save_untrained_adapter(tmp_path / "f", causal, AdapterConfig(
        hidden_size=16, num_attention_heads=2, intermediate_size=32, num_transformer_layers=1))
    settings = ft.standard_settings({"F": str(adapter)}, combinations=["F"], controls=["F"], trained_controls=["F"])
    config = ft.FineTuneConfig(epochs=1, trained_epochs=1, batch_size=4, max_length=96, progress=False,
                               cache_root=str(tmp_path / "cache"))
    for kind in (ft.RELATION, ft.MULTIPLE_CHOICE):
        results = ft.run_finetuning(tasks[kind], settings, [0], config, tmp_path / kind, causal, tokenizer)
        assert results["config"]["cache_dtype"] == "bfloat16"
        assert {r["setting"] for r in results["runs"]} == {s.name for s in settings}
    with pytest.raises(ValueError, match="float16.*unsafe"):
        ft.run_finetuning(tasks[ft.RELATION], settings, [0], ft.FineTuneConfig(cache_dtype="float16"),
                          tmp_path / "fp16", causal, tokenizer)


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_a_bf16_backbone_builds_every_safe_cache_dtype(model_type, tokenizer, tmp_path):
    torch.manual_seed(0)
    extra = TINY["llama"] if model_type == "llama" else dict(hidden_size=32, intermediate_size=64,
                                                              num_hidden_layers=2, num_attention_heads=2)
    model = random_backbone(model_type, vocab_size=len(tokenizer), **extra).to(torch.bfloat16).eval()
    kind = kind_of(model)
    assert kind is (CAUSAL_LM_KIND if model_type == "llama" else ENCODER_KIND)
    texts = ["Dante was born in Florence .", "The cat sat ."]
    data = Dataset.from_dict({k: [tokenizer(t)[k] for t in texts] for k in ("input_ids", "attention_mask")})
    with torch.no_grad():
        live = [kind.run(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[1][0].float()
                for ids in data["input_ids"]]
    for dtype in kind.storage_dtypes:  # fp16, fp32 and bf16 on an encoder; fp32 and bf16 on a causal LM
        cache = FeatureCache.build(model, data, tokenizer=tokenizer, max_length=32, taps=[0, 1],
                                   root=tmp_path / dtype, storage_dtype=dtype, progress=False)
        assert cache.key["storage_dtype"] == dtype
        features = cache.features([0, 1])
        for i, states in enumerate(live):
            torch.testing.assert_close(features.last_hidden_state[i, :len(states)], states, atol=0.05, rtol=0.02)
    assert set(kind.storage_dtypes) >= {"float32", "bfloat16"}


def test_dependency_pretraining_runs_on_a_causal_backbone(causal, tokenizer, tmp_path):
    from data_prep.dependency import load_ud_ewt
    from kadapter.pretraining import BASELINE, PretrainConfig, pretrain_adapters

    records, _ = load_ud_ewt("dev")
    short = records.filter(lambda r: len(r["words"]) <= 12).select(range(24))
    data = {"train": short.select(range(16)), "dev": short.select(range(16, 24))}
    encoder = KAdapterModel(causal, tokenizer=tokenizer)
    assert encoder.tokenizer.padding_side == "left"
    config = PretrainConfig(output_dir=str(tmp_path / "out"), max_length=32, epochs=1, batch_size=8,
                            cache_root=str(tmp_path / "cache"), device="cpu", progress=False)
    results = pretrain_adapters("linguistic", data, {"linguistic": SMALL, BASELINE: None}, config, encoder=encoder,
                                random_twins=["linguistic"])
    assert results["backbone_kind"] == "causal_lm"
    assert set(results["models"]) == {"linguistic", BASELINE, "linguistic_random_frozen"}
    saved = json.loads((tmp_path / "out/adapters/linguistic/adapter_config.json").read_text())["adapter"]
    assert saved["causal"] is True
