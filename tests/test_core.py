"""The core library: frozen backbone, knowledge adapters, fusion, save/load — on the real MiniLM and tiny random
BERT/RoBERTa configs."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kadapter import AdapterConfig, BackboneIdentity, KAdapterModel, KnowledgeAdapter, default_tap_layers
from kadapter.model import random_backbone

SMALL = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128)
SENTENCES = [
    "Dante was born in Florence.",
    "The official language of Mauritius is English, and French is widely spoken too.",
]


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    return random_backbone("bert", vocab_size=200, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64)


def tiny_roberta(seed=0):
    torch.manual_seed(seed)
    return random_backbone("roberta", vocab_size=200, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=66, pad_token_id=1)


@pytest.fixture(scope="module")
def minilm(minilm_path):
    from kadapter import load_backbone

    return load_backbone(minilm_path)


def real_batch(tokenizer, pad_to=None):
    kwargs = {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": True}
    return tokenizer(SENTENCES, return_tensors="pt", **kwargs)


def two_adapter_model(backbone, tokenizer=None, fusion="concat", **cfg):
    torch.manual_seed(0)
    config = AdapterConfig(**{**SMALL, **cfg})
    return KAdapterModel(backbone, {"factual": config, "linguistic": config}, fusion=fusion, tokenizer=tokenizer)


def test_config_json_round_trip_and_default_taps():
    cfg = AdapterConfig(tap_layers=(0, 11, 22), skip_interval=2, faithful_padding=True)
    assert AdapterConfig.from_json(cfg.to_json()) == cfg
    assert default_tap_layers(24) == (0, 11, 22)  # the official launchers
    assert default_tap_layers(6) == (0, 2, 4)
    assert default_tap_layers(12) == (0, 5, 10)
    with pytest.raises(ValueError, match="strictly increasing"):
        AdapterConfig(tap_layers=(4, 2))
    with pytest.raises(ValueError, match="unknown AdapterConfig field"):
        AdapterConfig.from_dict({"tap_layers": [0], "adapter_size": 3})


def test_paper_adapter_on_roberta_large_shape_has_official_parameter_count():
    # Only shapes matter for the count, so the backbone's identity is built from a RoBERTa-large config.
    from transformers import RobertaConfig

    from kadapter.backbone import config_fingerprint

    config = RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    identity = BackboneIdentity("roberta-large", "roberta", 1024, 24, config_fingerprint(config), "random")
    adapter = KnowledgeAdapter(AdapterConfig(), identity)
    assert adapter.tap_layers == (0, 11, 22)
    assert sum(p.numel() for p in adapter.parameters()) == 47_251_200


def test_adapter_initialisation_is_the_official_codes():
    """Projections N(0, 0.0002) with zero bias (near-identity start); the inner transformer layers keep PyTorch's
    default init (Kaiming-uniform: |w| <= 1/sqrt(fan_in), non-zero biases), as the official plain-module encoder."""
    torch.manual_seed(0)
    identity = BackboneIdentity("x", "bert", 256, 4, "c", "w")
    adapter = KnowledgeAdapter(AdapterConfig(hidden_size=128, num_attention_heads=4, intermediate_size=512), identity)
    layer = adapter.adapter_layers[0]
    for proj in (layer.down_project, layer.up_project):
        assert proj.weight.std().item() == pytest.approx(0.0002, rel=0.05) and not proj.bias.any()
    for linear in (layer.layers[0].query, layer.layers[1].intermediate, layer.layers[1].output):
        bound = linear.in_features ** -0.5
        assert linear.weight.abs().max().item() <= bound and linear.bias.abs().max().item() <= bound
        assert linear.bias.abs().min().item() > 0 and linear.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    bert_like = KnowledgeAdapter(AdapterConfig(hidden_size=128, num_attention_heads=4, intermediate_size=512,
                                               transformer_init_range=0.02), identity)
    query = bert_like.adapter_layers[0].layers[0].query
    assert query.weight.std().item() == pytest.approx(0.02, rel=0.05) and not query.bias.any()


@pytest.mark.parametrize("make", [tiny_bert, tiny_roberta])
def test_tiny_random_backbones_run_and_reject_bad_taps(make):
    backbone = make()
    model = two_adapter_model(backbone)
    assert model.tap_layers == (0, 1, 2)  # default for 4 blocks
    ids = torch.randint(3, 200, (2, 10))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.last_hidden_state.shape == (2, 10, 32)
    assert set(out.adapter_states) == {"factual", "linguistic"}
    with pytest.raises(ValueError, match=r"tap layer\(s\) \[5\] out of range.*4 blocks"):
        model.add_adapter("deep", AdapterConfig(tap_layers=(0, 5), **SMALL))


def test_backbone_frozen_and_gradients_reach_every_adapter_parameter(minilm):
    backbone, tokenizer = minilm
    model = two_adapter_model(backbone, tokenizer)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    assert not model.backbone.training, "the frozen backbone keeps dropout off"
    assert not any(p.requires_grad for p in model.backbone.parameters())

    batch = real_batch(tokenizer)
    features = model.backbone_features(**batch)
    assert all(not h.requires_grad for h in features.hidden_states.values())
    assert features.hidden_states[0].grad_fn is None

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    out = model(features=features)
    out.last_hidden_state.pow(2).mean().backward()
    for name, p in list(model.adapters.named_parameters()) + list(model.fusion.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"
    optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a backbone tensor changed"
    adapter_weight = model.adapters["factual"].adapter_layers[0].down_project.weight
    assert adapter_weight.grad is not None


def test_features_path_equals_token_path(minilm):
    backbone, tokenizer = minilm
    model = two_adapter_model(backbone, tokenizer).eval()
    batch = real_batch(tokenizer)
    direct = model(**batch).last_hidden_state
    cached = model(features=model.backbone_features(**batch)).last_hidden_state
    torch.testing.assert_close(direct, cached, rtol=0, atol=0)


@pytest.mark.parametrize("faithful", [False, True])
def test_padding_invariance_unless_faithful(minilm, faithful):
    backbone, tokenizer = minilm
    # A larger projection init makes the adapter's contribution visible at float precision.
    model = two_adapter_model(backbone, tokenizer, init_range=0.05, faithful_padding=faithful).eval()
    short = real_batch(tokenizer)
    long = real_batch(tokenizer, pad_to=short["input_ids"].shape[1] + 17)
    with torch.no_grad():
        a = model(**short).last_hidden_state
        b = model(**long).last_hidden_state[:, : a.shape[1]]
    real = short["attention_mask"].bool()
    diff = (a - b)[real].abs().max().item()
    if faithful:
        assert diff > 1e-3, "the official behaviour attends to padding, so outputs must move"
    else:
        assert diff < 1e-4


@pytest.mark.parametrize("fusion", ["concat", "add"])
@pytest.mark.parametrize("names", [["factual"], ["factual", "linguistic"]])
def test_fusion_modes_for_one_and_several_adapters(minilm, fusion, names):
    backbone, tokenizer = minilm
    torch.manual_seed(0)
    model = KAdapterModel(backbone, {n: AdapterConfig(**SMALL) for n in names}, fusion=fusion).eval()
    batch = real_batch(tokenizer)
    with torch.no_grad():
        out = model(**batch)
    assert out.last_hidden_state.shape == out.backbone_last_hidden_state.shape
    if fusion == "add":
        expected = out.backbone_last_hidden_state + sum(out.adapter_states.values())
        torch.testing.assert_close(out.last_hidden_state, expected)
    else:
        assert len(model.fusion.per_adapter) == len(names)
        assert model.fusion.combine.in_features == len(names) * 384


def test_no_adapters_passes_backbone_through(minilm):
    backbone, tokenizer = minilm
    model = KAdapterModel(backbone)
    out = model(**real_batch(tokenizer))
    assert torch.equal(out.last_hidden_state, out.backbone_last_hidden_state)


def test_skip_interval_changes_the_adapter_path():
    backbone = tiny_bert()
    ids = torch.randint(3, 200, (2, 8))
    outs = []
    for interval in (0, 1):
        torch.manual_seed(0)
        adapter = KnowledgeAdapter(AdapterConfig(tap_layers=(0, 1, 2, 3), skip_interval=interval, init_range=0.05,
                                                 **SMALL), KAdapterModel(backbone).identity).eval()
        feats = KAdapterModel(backbone, {"a": adapter}).backbone_features(ids)
        outs.append(adapter(feats.hidden_states, feats.attention_mask))
    assert not torch.allclose(outs[0], outs[1])


def test_save_load_round_trip_is_exact(minilm, tmp_path):
    backbone, tokenizer = minilm
    model = two_adapter_model(backbone, tokenizer).eval()
    batch = real_batch(tokenizer)
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model/adapters/factual/adapter_config.json").read_text())
    assert saved["adapter"]["tap_layers"] == [0, 2, 4]
    assert saved["backbone"]["hidden_size"] == 384 and saved["backbone"]["num_hidden_layers"] == 6
    assert saved["backbone"]["weights_fingerprint"] == model.identity.weights_fingerprint
    assert "kadapter_version" in saved

    reloaded = KAdapterModel.from_pretrained(tmp_path / "model", backbone=backbone, tokenizer=tokenizer).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).last_hidden_state, expected)

    # An adapter trained once plugs into a new model next to a fresh one.
    fresh = KAdapterModel(backbone, {"factual": tmp_path / "model/adapters/factual"})
    fresh.add_adapter("other", AdapterConfig(**SMALL))
    torch.testing.assert_close(
        fresh.adapters["factual"].adapter_layers[2].up_project.weight,
        model.adapters["factual"].adapter_layers[2].up_project.weight, rtol=0, atol=0)


def test_loading_onto_another_backbone_names_the_difference(minilm, tmp_path):
    backbone, _ = minilm
    model = two_adapter_model(backbone)
    model.adapters["factual"].save_pretrained(tmp_path / "fac")
    with pytest.raises(ValueError, match="hidden_size: adapter expects 384, backbone has 32"):
        KAdapterModel(tiny_bert(), {"factual": tmp_path / "fac"})

    # Same shapes, other weights: only the fingerprint tells them apart.
    tiny_model = two_adapter_model(tiny_bert(seed=0))
    tiny_model.adapters["factual"].save_pretrained(tmp_path / "tiny")
    with pytest.raises(ValueError, match="weights_fingerprint"):
        KAdapterModel(tiny_bert(seed=1), {"factual": tmp_path / "tiny"})


def test_missing_or_extra_tensor_is_named(minilm, tmp_path):
    backbone, _ = minilm
    model = two_adapter_model(backbone)
    directory = model.adapters["factual"].save_pretrained(tmp_path / "fac")
    state = load_file(str(directory / "adapter.safetensors"))
    dropped = "adapter_layers.1.layers.0.query.weight"
    del state[dropped]
    state["adapter_layers.9.bonus"] = torch.zeros(2)
    save_file(state, str(directory / "adapter.safetensors"))
    with pytest.raises(ValueError) as err:
        KAdapterModel(backbone, {"factual": directory})
    assert dropped in str(err.value) and "adapter_layers.9.bonus" in str(err.value)
    assert "adapter.safetensors" in str(err.value)


def test_trainable_backbone_setting_fine_tunes_and_round_trips(minilm_path, tmp_path):
    from kadapter import load_backbone

    backbone, tokenizer = load_backbone(minilm_path)
    model = two_adapter_model(backbone, tokenizer)
    original = model.identity
    model.set_backbone_trainable(True)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())
    batch = real_batch(tokenizer)
    before = model.backbone.embeddings.word_embeddings.weight.clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model(**batch).last_hidden_state.pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(before, model.backbone.embeddings.word_embeddings.weight)

    model.eval()
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
    model.save_pretrained(tmp_path / "ft")
    reloaded = KAdapterModel.from_pretrained(tmp_path / "ft").eval()
    assert reloaded.identity == original, "adapters still belong to the pre-trained backbone"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).last_hidden_state, expected)
