"""The adapters microsoft/K-Adapter released (``fac-adapter``, ``lin-adapter``), loaded as kadapter adapters.

Each release is ``torch.save(AdapterModel.state_dict())`` of the official pre-training model as ``pytorch_model.bin``:
three ``Adapter`` modules ``adapter.{i}`` — ``down_project`` (backbone width -> 768), a ``pytorch_transformers``
``BertEncoder`` (``encoder.layer.{j}``: 2 layers, 768 wide, 12 heads, FFN 3072, LayerNorm eps 1e-5, exact GELU) and
``up_project`` (768 -> backbone width) — plus the pre-training head (``com_dense``, ``dense``, ``out_proj``; the
linguistic adapter also a one-head ``self_attention``), which the official fine-tuning scripts drop and so do we.
The taps are not stored: every official launcher passes ``--adapter_list 0,11,22``.

``KnowledgeAdapter.from_official`` puts these pieces together. The official adapter attends to every position (its inner mask is all ones) and reads RoBERTa's hidden states
as they are; the converted adapter is configured to do the same (``faithful_padding=True``, ``tap_norm="none"``),
so it computes what the official code computes on the same inputs.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .config import PAPER_TAP_LAYERS, AdapterConfig, BackboneIdentity
from .safe_files import DamagedFileError, load_torch

# The official AdapterConfig is a hard-coded inner class (fac-adapter.py / lin-adapter.py, AdapterModel.__init__).
OFFICIAL_ADAPTER_SETTINGS = dict(
    hidden_size=768, num_transformer_layers=2, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    layer_norm_eps=1e-5, dropout=0.1, attention_dropout=0.1, skip_interval=0,
    faithful_padding=True, causal=False, tap_norm="none",
)
# The pre-training heads: com_dense/dense/out_proj (both adapters), self_attention (lin-adapter's one-head BertAttention).
PRETRAINING_HEAD_PREFIXES = ("com_dense.", "dense.", "out_proj.", "self_attention.")
# One official BertLayer's sub-module -> ours (kadapter.adapter.AdapterTransformerLayer).
_LAYER_PARTS = {
    "attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
    "attention.output.dense": "attention_output", "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate", "output.dense": "output", "output.LayerNorm": "output_norm",
}
_OURS_TO_OFFICIAL_PART = {ours: official for official, ours in _LAYER_PARTS.items()}
_OUR_KEY = re.compile(r"adapter_layers\.(\d+)\.(?:(down_project|up_project)|layers\.(\d+)\.(\w+))\.(weight|bias)$")


def official_config(tap_layers: tuple[int, ...] = PAPER_TAP_LAYERS) -> AdapterConfig:
    """The official adapter's architecture and behaviours as a kadapter config (taps: the launchers' 0, 11, 22)."""
    return AdapterConfig(tap_layers=tuple(tap_layers), **OFFICIAL_ADAPTER_SETTINGS)


def official_key(our_key: str) -> str:
    """The official state-dict key of one of our adapter's tensors, e.g.
    ``adapter_layers.1.layers.0.attention_norm.weight`` -> ``adapter.1.encoder.layer.0.attention.output.LayerNorm.weight``."""
    match = _OUR_KEY.match(our_key)
    if match is None:
        raise KeyError(f"{our_key!r} has no counterpart in the official AdapterModel")
    adapter, projection, layer, part, param = match.groups()
    if projection:
        return f"adapter.{adapter}.{projection}.{param}"
    return f"adapter.{adapter}.encoder.layer.{layer}.{_OURS_TO_OFFICIAL_PART[part]}.{param}"


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official ``pytorch_model.bin``, read with ``weights_only=True`` (nothing in it can run).
    A ``module.`` prefix (a model saved from inside ``DataParallel``) is removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected the official adapter's pytorch_model.bin")
    state = load_torch(path, weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DamagedFileError(path, f"not a state dict of tensors (found {type(state).__name__}): "
                                     "expected torch.save(AdapterModel.state_dict()) from microsoft/K-Adapter")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def convert_official_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                           source: str | Path) -> dict[str, torch.Tensor]:
    """Our adapter's state dict from an official one. ``expected``: the state dict of the adapter to load into.

    The pre-training head is dropped; every other difference — a missing adapter tensor, a key the official
    AdapterModel does not have, a shape that does not fit the backbone or the official 768-wide adapter — is an
    error naming the official keys."""
    wanted = {official_key(ours): ours for ours in expected}
    kept = {k: v for k, v in state.items() if not k.startswith(PRETRAINING_HEAD_PREFIXES)}
    missing = sorted(set(wanted) - set(kept))
    unexpected = sorted(set(kept) - set(wanted))
    shapes = [f"{k}: file {tuple(kept[k].shape)} vs expected {tuple(expected[wanted[k]].shape)}"
              for k in sorted(set(kept) & set(wanted)) if kept[k].shape != expected[wanted[k]].shape]
    problems = [f"missing tensors: {missing}"] * bool(missing) + [f"unexpected tensors: {unexpected}"] * bool(
        unexpected) + [f"shape mismatches: {shapes}"] * bool(shapes)
    if problems:
        raise ValueError(f"{source} is not an official K-Adapter adapter for this backbone "
                         f"(3 adapters x 2 BERT layers, 768 wide, over a {_backbone_width(expected)}-wide backbone):"
                         "\n  " + "\n  ".join(problems))
    return {ours: kept[official].to(expected[ours].dtype) for official, ours in wanted.items()}


def _backbone_width(expected: dict[str, torch.Tensor]) -> int:
    return int(expected["adapter_layers.0.down_project.weight"].shape[1])


def official_backbone_identity(backbone) -> BackboneIdentity:
    """The identity an official adapter is recorded against: of a :class:`BackboneIdentity` as given, of a loaded
    model, or of the backbone a hub name or local path loads (``"roberta-large"``: the hub checkpoint the official
    code loads with ``RobertaModel.from_pretrained("roberta-large")``)."""
    from .backbone import backbone_identity, load_backbone

    if isinstance(backbone, BackboneIdentity):
        return backbone
    if isinstance(backbone, (str, Path)):
        backbone, _ = load_backbone(str(backbone))
    return backbone_identity(backbone)


def official_provenance(path: str | Path, state: dict[str, torch.Tensor]) -> dict:
    """What a converted official adapter records about where its weights came from (saved with it, and in its card)."""
    return {
        "source": "microsoft/K-Adapter released adapter (README: Google Drive folder 12mfLpYq4BTwdbLZnQsdwDJKubM9aOr9f)",
        "file": str(path),
        "trained_on": "the official pre-training data (fac-adapter: T-REx-rc; lin-adapter: Stanford-parsed BookCorpus)",
        "licence": "the microsoft/K-Adapter repository is MIT; the release states no separate licence",
        "taps": "not stored in the file; set to the official launchers' --adapter_list",
        "dropped_pretraining_head": sorted(k for k in state if k.startswith(PRETRAINING_HEAD_PREFIXES)),
    }
