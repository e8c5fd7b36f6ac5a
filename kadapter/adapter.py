"""KnowledgeAdapter: the K-Adapter side network, and its self-describing save format.

At each tap layer the adapter reads the backbone's hidden state, adds the previous adapter layer's output, and runs
down-projection -> N transformer layers -> up-projection with a residual. It never writes back into the backbone.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .version import __version__
from .config import ADAPTER_ACTIVATIONS, AdapterConfig, BackboneIdentity, write_json
from .safe_files import DamagedFileError, load_safetensors, read_json, save_safetensors

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
CARD_NAME = "README.md"  # the Hub model card (kadapter.model_card)

# Config fields free to change after training (they act only while training from scratch); every other field changes
# what the saved weights compute and is checked against the copy stored in the weights file's metadata.
FREE_FIELDS = ("dropout", "attention_dropout", "init_range", "transformer_init_range")
CONFIG_METADATA_KEY = "kadapter_adapter_config"

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "gelu_new": lambda: nn.GELU(approximate="tanh")}
assert set(_ACTIVATIONS) == set(ADAPTER_ACTIVATIONS), "AdapterConfig checks hidden_act against ADAPTER_ACTIVATIONS"


class AdapterTransformerLayer(nn.Module):
    """A post-LayerNorm transformer layer with BERT's parameter layout (so counts match the official code)."""

    def __init__(self, cfg: AdapterConfig):
        super().__init__()
        h = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attention_output = nn.Linear(h, h)
        self.attention_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.intermediate = nn.Linear(h, cfg.intermediate_size)
        self.activation = _ACTIVATIONS[cfg.hidden_act]()
        self.output = nn.Linear(cfg.intermediate_size, h)
        self.output_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attention_dropout = cfg.attention_dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        return x.view(b, t, self.num_heads, h // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """`key_mask`: boolean (batch, 1, 1, seq) or (batch, 1, seq, seq), True where a key may be attended to;
        None attends everywhere."""
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        drop = self.attention_dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=drop)
        attn = attn.transpose(1, 2).reshape(x.shape)
        x = self.attention_norm(x + self.dropout(self.attention_output(attn)))
        ffn = self.output(self.activation(self.intermediate(x)))
        return self.output_norm(x + self.dropout(ffn))


class AdapterLayer(nn.Module):
    """down-projection -> N transformer layers -> up-projection, plus the residual."""

    def __init__(self, cfg: AdapterConfig, backbone_hidden_size: int):
        super().__init__()
        self.down_project = nn.Linear(backbone_hidden_size, cfg.hidden_size)
        self.layers = nn.ModuleList(AdapterTransformerLayer(cfg) for _ in range(cfg.num_transformer_layers))
        self.up_project = nn.Linear(cfg.hidden_size, backbone_hidden_size)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.down_project(x)
        for layer in self.layers:
            h = layer(h, key_mask)
        return x + self.up_project(h)


class KnowledgeAdapter(nn.Module):
    """One kind of knowledge, as a side network over a frozen backbone's hidden states."""

    def __init__(self, config: AdapterConfig, backbone: BackboneIdentity, kind=None):
        super().__init__()
        from .backbone_kind import kind_for_model_type

        kind = kind or kind_for_model_type(backbone.model_type)  # kadapter.backbone_kind
        self.config = config.resolved(backbone.num_hidden_layers, kind.adapter_defaults())
        self.backbone = backbone
        # Where the weights came from, when not trained here (e.g. the official release): saved with them.
        self.provenance: dict = {}
        self.adapter_layers = nn.ModuleList(
            AdapterLayer(self.config, backbone.hidden_size) for _ in self.config.tap_layers
        )
        self.reset_parameters()

    @property
    def tap_layers(self) -> tuple[int, ...]:
        return self.config.tap_layers

    def reset_parameters(self) -> None:
        """Projections with std `init_range` (near-identity start); the transformer layers keep PyTorch's default
        initialisation, as the official code (its inner encoder is a plain module), unless
        `transformer_init_range` asks for BERT's N(0, std)."""
        for layer in self.adapter_layers:
            for proj in (layer.down_project, layer.up_project):
                nn.init.normal_(proj.weight, std=self.config.init_range)
                nn.init.zeros_(proj.bias)
            if self.config.transformer_init_range is None:
                continue
            for module in layer.layers.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=self.config.transformer_init_range)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def forward(self, hidden_states: dict[int, torch.Tensor], attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Run every adapter layer bottom-up; returns the last adapter layer's output (batch, seq, backbone hidden)."""
        key_mask = self.attention_mask(attention_mask, next(iter(hidden_states.values())))
        dtype = self.adapter_layers[0].down_project.weight.dtype
        previous = None
        outputs: list[torch.Tensor] = []
        for count, (tap, layer) in enumerate(zip(self.tap_layers, self.adapter_layers), start=1):
            x = self.read_tap(hidden_states[tap]).to(dtype)
            # The official code sums the tapped hidden state with the previous adapter layer's output.
            x = x if previous is None else x + previous
            previous = layer(x, key_mask)
            outputs.append(previous)
            interval = self.config.skip_interval
            if interval and count % interval == 0 and count > interval:
                previous = previous + outputs[count - 1 - interval]
        return previous

    def forward_with_learned_part(self, hidden_states: dict[int, torch.Tensor],
                                  attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and its **learned part** ``Σ up_project(…)`` (the output minus the re-summed tapped states,
        exact whatever the taps add): what this adapter computes, apart from the backbone states it passes on.
        Collected with hooks on every ``up_project``."""
        parts: list[torch.Tensor] = []
        hooks = [layer.up_project.register_forward_hook(lambda m, i, o: parts.append(o))
                 for layer in self.adapter_layers]
        try:
            output = self(hidden_states, attention_mask)
        finally:
            for hook in hooks:
                hook.remove()
        return output, torch.stack(parts).sum(0)

    def learned_part(self, hidden_states: dict[int, torch.Tensor], attention_mask: torch.Tensor | None) -> torch.Tensor:
        """``Σ up_project(…)`` over the adapter layers (:meth:`forward_with_learned_part`)."""
        return self.forward_with_learned_part(hidden_states, attention_mask)[1]

    def read_tap(self, state: torch.Tensor) -> torch.Tensor:
        """A tapped hidden state as the adapter reads it: as is, or (``tap_norm="rms"``) divided by its root mean
        square over the hidden dimension, computed in float32 (no parameters; padding's zero vectors stay zero)."""
        if self.config.tap_norm != "rms":
            return state
        state = state.float()
        return state * torch.rsqrt(state.pow(2).mean(-1, keepdim=True) + 1e-6)

    def attention_mask(self, attention_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """Boolean (batch or 1, 1, seq, seq) or (batch, 1, 1, seq): True where a query may attend to a key.

        Keys at padding are hidden (unless ``faithful_padding``); with ``causal`` a query at t only sees keys
        <= t. Every query may always see itself, so a padded query (under left padding it has no real key at or
        before it) gets a finite, ignored output instead of NaN that would leak through the values.
        """
        key_mask = None
        if attention_mask is not None and not self.config.faithful_padding:
            key_mask = attention_mask.bool()[:, None, None, :]
        if not self.config.causal:
            return key_mask
        width = like.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=like.device).tril()[None, None]
        if key_mask is None:
            return causal
        return (causal & key_mask) | torch.eye(width, dtype=torch.bool, device=like.device)[None, None]

    # ----------------------------------------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | Path, **metadata) -> Path:
        """A standalone, self-describing adapter directory: adapter_config.json + adapter.safetensors + README.md,
        a model card from the config, the backbone and `metadata` (task, data, settings, steps, dev metrics and
        baselines, as the trainer passes them), so the folder is a Hub model repo as it is."""
        from .model_card import adapter_card

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_safetensors(state, directory / WEIGHTS_NAME, metadata={
            "format": "pt", "kadapter_version": __version__,
            CONFIG_METADATA_KEY: json.dumps(self.config.to_dict(), sort_keys=True)})
        write_json(directory / CONFIG_NAME, {
            "kadapter_version": __version__,
            "adapter": self.config.to_dict(),
            "backbone": self.backbone.to_dict(),
            **({"metadata": metadata} if metadata else {}),
            **({"provenance": self.provenance} if self.provenance else {}),
        })
        card = adapter_card(self.config.to_dict(), self.backbone.to_dict(),
                            {"kadapter_version": __version__, **metadata}, self.provenance)
        (directory / CARD_NAME).write_text(card, encoding="utf-8")
        return directory

    @classmethod
    def from_official(cls, path: str | Path, backbone="roberta-large",
                      tap_layers: tuple[int, ...] | None = None) -> "KnowledgeAdapter":
        """Load an adapter microsoft/K-Adapter released (``fac-adapter``/``lin-adapter`` ``pytorch_model.bin``).

        `backbone`: a hub name or local path (as ``KAdapterModel.from_backbone`` takes), a loaded model or a
        :class:`BackboneIdentity`; its identity is recorded. Taps default to the official launchers' (0, 11, 22);
        the adapter attends to padding and reads raw hidden states, as the official one. The pre-training head is
        dropped; any other key or shape that does not match is an error naming it (``kadapter.official``)."""
        from .official import (PAPER_TAP_LAYERS, convert_official_state, official_backbone_identity,
                               official_config, official_provenance, read_official_state)

        state = read_official_state(path)
        adapter = cls(official_config(tap_layers or PAPER_TAP_LAYERS), official_backbone_identity(backbone))
        adapter.load_state_dict(convert_official_state(state, adapter.state_dict(), path), strict=True)
        adapter.provenance = official_provenance(path, state)
        return adapter

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, backbone: BackboneIdentity | None = None, check_backbone: bool = True
    ) -> "KnowledgeAdapter":
        """Load an adapter directory strictly: every key must match, and the backbone must be the one it was trained on."""
        directory = Path(directory)
        if not (directory / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{directory / WEIGHTS_NAME} not found: not a kadapter adapter directory")
        config, saved_backbone = read_adapter_config(directory)
        config_path = directory / CONFIG_NAME
        if backbone is not None and check_backbone:
            diff = saved_backbone.differences(backbone)
            if diff:
                raise ValueError(
                    f"adapter {directory} was trained on a different backbone "
                    f"({saved_backbone.name_or_path}):\n  " + "\n  ".join(diff)
                )
        adapter = cls(config, backbone or saved_backbone)
        state, metadata = load_safetensors(directory / WEIGHTS_NAME)
        if CONFIG_METADATA_KEY in metadata:  # adapters saved before kadapter stored it cannot be checked
            trained = json.loads(metadata[CONFIG_METADATA_KEY])
            now = adapter.config.to_dict()
            changed = [name for name in sorted(set(trained) | set(now))
                       if name not in FREE_FIELDS and trained.get(name) != now.get(name)]
            if changed:
                raise ValueError(
                    f"{config_path}: " + "; ".join(f"field '{n}' is {now.get(n)!r} but the weights in {WEIGHTS_NAME} "
                                                   f"were trained with {trained.get(n)!r}" for n in changed)
                    + " — the config no longer describes the weights (edit it back, or train a new adapter)")
        load_state_strict(adapter, state, directory / WEIGHTS_NAME)
        # Where the weights came from (e.g. microsoft/K-Adapter's release), kept across save/load.
        adapter.provenance = dict(read_json(config_path).get("provenance") or {})
        return adapter


def read_adapter_config(directory: str | Path) -> tuple[AdapterConfig, BackboneIdentity]:
    """An adapter directory's config and the backbone it was trained on, from adapter_config.json; a missing,
    damaged or edited-into-nonsense file is an error naming it and the field. Every reader of an adapter's config
    (loading it, building its "w/o knowledge" twin) goes through here."""
    config_path = Path(directory) / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: not a kadapter adapter directory")
    payload = read_json(config_path, required=("adapter", "backbone"))
    try:
        saved_backbone = BackboneIdentity.from_dict(payload["backbone"])
    except (KeyError, TypeError) as err:
        raise DamagedFileError(config_path, f"field 'backbone': incomplete ({type(err).__name__}: {err})") from None
    try:
        config = AdapterConfig.from_dict(payload["adapter"])
    except (ValueError, TypeError, AttributeError) as err:
        raise DamagedFileError(config_path, f"field 'adapter': {err}") from None
    return config, saved_backbone


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load a state dict, naming every missing, unexpected or mis-shaped tensor (no silent key-dropping)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = [f"missing tensors: {missing}"] * bool(missing) + [f"unexpected tensors: {unexpected}"] * bool(
        unexpected
    ) + [f"shape mismatches: {shapes}"] * bool(shapes)
    if problems:
        raise ValueError(f"{source} does not match the model:\n  " + "\n  ".join(problems))
    module.load_state_dict(state, strict=True)
