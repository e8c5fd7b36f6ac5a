"""Loading the adapters microsoft/K-Adapter released (`KnowledgeAdapter.from_official`).

The official file is written here the way the official code writes it — ``torch.save`` of the pre-training
``AdapterModel``'s state dict, with the key names and shapes of its classes (``fac-adapter.py``: three ``Adapter``s
of ``down_project`` -> ``pytorch_transformers`` ``BertEncoder`` (768 wide, 12 heads, FFN 3072, 2 layers) ->
``up_project``, plus the pre-training head ``com_dense``/``dense``/``out_proj``) — with random values, at the
official adapter width over a tiny random RoBERTa (24 layers so the taps 0/11/22 exist, hidden 32). The converted
adapter is compared with a re-implementation of the official forward in plain torch, written from that code.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kadapter import KAdapterModel, KnowledgeAdapter
from kadapter.backbone import backbone_identity, load_backbone
from kadapter.safe_files import DamagedFileError

BACKBONE_WIDTH = 32
ADAPTER_WIDTH, FFN, HEADS, LAYERS, TAPS = 768, 3072, 12, 2, (0, 11, 22)
FAC_RELATIONS = 410  # the official label list's length: out_proj's rows


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    from kadapter.rehearsal import training_text, write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("roberta") / "ckpt", "narrow", texts=training_text(3000),
                            vocab_size=2000, num_hidden_layers=24, hidden_size=BACKBONE_WIDTH,
                            num_attention_heads=2, intermediate_size=64)


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A fac-adapter ``AdapterModel.state_dict()``: key names and shapes of the official classes, random values
    large enough that every adapter changes its input."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def linear(prefix, out_features, in_features, std=0.05):
        state[f"{prefix}.weight"] = torch.randn(out_features, in_features, generator=g) * std
        state[f"{prefix}.bias"] = torch.randn(out_features, generator=g) * std

    def layer_norm(prefix, width):
        state[f"{prefix}.weight"] = 1 + torch.randn(width, generator=g) * 0.1
        state[f"{prefix}.bias"] = torch.randn(width, generator=g) * 0.1

    for i in range(len(TAPS)):
        linear(f"adapter.{i}.down_project", ADAPTER_WIDTH, BACKBONE_WIDTH, std=0.2)
        for j in range(LAYERS):
            layer = f"adapter.{i}.encoder.layer.{j}"
            for name in ("query", "key", "value"):
                linear(f"{layer}.attention.self.{name}", ADAPTER_WIDTH, ADAPTER_WIDTH)
            linear(f"{layer}.attention.output.dense", ADAPTER_WIDTH, ADAPTER_WIDTH)
            layer_norm(f"{layer}.attention.output.LayerNorm", ADAPTER_WIDTH)
            linear(f"{layer}.intermediate.dense", FFN, ADAPTER_WIDTH)
            linear(f"{layer}.output.dense", ADAPTER_WIDTH, FFN)
            layer_norm(f"{layer}.output.LayerNorm", ADAPTER_WIDTH)
        linear(f"adapter.{i}.up_project", BACKBONE_WIDTH, ADAPTER_WIDTH, std=0.2)
    # the pre-training head, which the official fine-tuning scripts drop
    linear("com_dense", BACKBONE_WIDTH, 2 * BACKBONE_WIDTH)
    linear("dense", BACKBONE_WIDTH, 2 * BACKBONE_WIDTH)
    linear("out_proj", FAC_RELATIONS, BACKBONE_WIDTH)
    return state


def official_adapter_forward(state, i, x):
    """``Adapter.forward`` of fac-adapter.py: down_project -> BertEncoder with an all-ones mask -> up_project,
    plus ``x``; BertSelfAttention / BertSelfOutput / BertIntermediate (erf GELU) / BertOutput of
    pytorch_transformers 1.x, post-LayerNorm with eps 1e-5; dropout off (eval)."""
    def lin(name, t):
        return t @ state[f"adapter.{i}.{name}.weight"].T + state[f"adapter.{i}.{name}.bias"]

    def norm(name, t):
        return F.layer_norm(t, (ADAPTER_WIDTH,), state[f"adapter.{i}.{name}.weight"],
                            state[f"adapter.{i}.{name}.bias"], eps=1e-5)

    h = lin("down_project", x)
    batch, length, _ = h.shape
    extended_mask = (1.0 - torch.ones(batch, 1, 1, length)) * -10000.0  # the official all-ones mask

    def heads(t):
        return t.view(batch, length, HEADS, ADAPTER_WIDTH // HEADS).permute(0, 2, 1, 3)

    for j in range(LAYERS):
        p = f"encoder.layer.{j}"
        scores = heads(lin(f"{p}.attention.self.query", h)) @ heads(lin(f"{p}.attention.self.key", h)).transpose(-1, -2)
        scores = scores / math.sqrt(ADAPTER_WIDTH // HEADS) + extended_mask
        context = (torch.softmax(scores, dim=-1) @ heads(lin(f"{p}.attention.self.value", h)))
        context = context.permute(0, 2, 1, 3).reshape(batch, length, ADAPTER_WIDTH)
        attention = norm(f"{p}.attention.output.LayerNorm", lin(f"{p}.attention.output.dense", context) + h)
        inner = lin(f"{p}.intermediate.dense", attention)
        inner = inner * 0.5 * (1.0 + torch.erf(inner / math.sqrt(2.0)))
        h = norm(f"{p}.output.LayerNorm", lin(f"{p}.output.dense", inner) + attention)
    return x + lin("up_project", h)


def official_adapter_model_forward(state, hidden_states):
    """``AdapterModel.forward`` up to the head: the next adapter reads hidden_states[tap] + the previous output."""
    last = torch.zeros_like(hidden_states[-1])
    for i, tap in enumerate(TAPS):
        last = official_adapter_forward(state, i, hidden_states[tap] + last)
    return last


def _double(state):
    return {k: v.double() for k, v in state.items()}


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fac-adapter") / "pytorch_model.bin"
    torch.save(official_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def backbone_batch(roberta_dir):
    backbone, tokenizer = load_backbone(str(roberta_dir))
    # two lengths, so the shorter one is padded: the official adapter attends to the padding too
    batch = tokenizer(["Dante was born in Florence .", "Paris is the capital of France and its largest city ."],
                      padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        out = backbone(**batch, output_hidden_states=True)
    return backbone, tokenizer, batch, out.hidden_states


def test_official_file_loads_and_computes_the_official_forward(official_file, roberta_dir, backbone_batch):
    backbone, _, batch, hidden_states = backbone_batch
    adapter = KnowledgeAdapter.from_official(official_file, backbone=str(roberta_dir)).eval()

    assert adapter.tap_layers == TAPS
    assert adapter.config.faithful_padding and adapter.config.tap_norm == "none" and not adapter.config.causal
    assert adapter.backbone == backbone_identity(backbone)  # the backbone named by path, loaded and fingerprinted
    assert sum(p.numel() for p in adapter.parameters()) == sum(
        v.numel() for k, v in official_state_dict().items() if k.startswith("adapter."))
    assert adapter.provenance["dropped_pretraining_head"] == [
        "com_dense.bias", "com_dense.weight", "dense.bias", "dense.weight", "out_proj.bias", "out_proj.weight"]

    # float64, so the comparison checks the arithmetic, not float32 rounding (outputs reach ~20 here)
    hidden_states = [h.double() for h in hidden_states]
    with torch.no_grad():
        ours = adapter.double()({t: hidden_states[t] for t in TAPS}, batch["attention_mask"])
        reference = official_adapter_model_forward(_double(official_state_dict()), hidden_states)
    assert (ours - hidden_states[22]).abs().max() > 1.0  # the adapters really change their input
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_official_adapter_plugs_into_the_model_and_round_trips(official_file, backbone_batch, tmp_path):
    backbone, tokenizer, batch, hidden_states = backbone_batch
    adapter = KnowledgeAdapter.from_official(official_file, backbone=backbone)
    model = KAdapterModel(copy.deepcopy(backbone), adapters={"factual": adapter}, tokenizer=tokenizer)
    model = model.double().eval()
    with torch.no_grad():
        state = model(**batch).adapter_states["factual"]
        reference = official_adapter_model_forward(_double(official_state_dict()),
                                                   [h.double() for h in hidden_states])
    assert state.dtype == torch.float64
    # the float32 backbone and its float64 copy differ by rounding; the adapters amplify it a little
    torch.testing.assert_close(state, reference, atol=1e-4, rtol=1e-5)

    folder = adapter.save_pretrained(tmp_path / "fac")
    reloaded = KnowledgeAdapter.from_pretrained(folder, backbone_identity(backbone))
    assert reloaded.config == adapter.config and reloaded.provenance == adapter.provenance
    card = (folder / "README.md").read_text()  # a Hub model card that says where the weights came from
    assert "microsoft/K-Adapter released adapter" in card and "attends to padding: True" in card
    assert "taps (hidden-state indices, 0 = embeddings): [0, 11, 22]" in card
    for (name, a), (_, b) in zip(adapter.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_wrong_key_or_shape_is_named(tmp_path, backbone_batch):
    backbone = backbone_batch[0]
    state = official_state_dict()
    state["adapter.1.encoder.layer.0.attention.self.keys.weight"] = state.pop(
        "adapter.1.encoder.layer.0.attention.self.key.weight")
    state["adapter.2.up_project.weight"] = torch.zeros(BACKBONE_WIDTH, 512)
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        KnowledgeAdapter.from_official(path, backbone=backbone)
    message = str(err.value)
    assert str(path) in message
    assert "missing tensors: ['adapter.1.encoder.layer.0.attention.self.key.weight']" in message
    assert "unexpected tensors: ['adapter.1.encoder.layer.0.attention.self.keys.weight']" in message
    assert "adapter.2.up_project.weight: file (32, 512) vs expected (32, 768)" in message


def test_a_backbone_of_another_width_is_refused(official_file):
    from kadapter import random_backbone

    wider = random_backbone("roberta", vocab_size=50, hidden_size=48, num_hidden_layers=24, num_attention_heads=2,
                            intermediate_size=64)
    with pytest.raises(ValueError, match=r"adapter\.0\.down_project\.weight: file \(768, 32\) vs expected \(768, 48\)"):
        KnowledgeAdapter.from_official(official_file, backbone=wider)


def test_a_file_that_is_not_a_state_dict_is_refused_without_running_it(tmp_path, backbone_batch):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"adapter": torch.nn.Linear(2, 2)}, path)  # a pickled module: weights_only refuses to build it
    with pytest.raises(DamagedFileError, match="pytorch_model.bin"):
        KnowledgeAdapter.from_official(path, backbone=backbone_batch[0])
