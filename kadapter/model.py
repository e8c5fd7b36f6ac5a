"""KAdapterModel: a frozen backbone, any number of named knowledge adapters, and their fusion."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from .version import __version__
from .adapter import KnowledgeAdapter, load_state_strict
from .backbone import BackboneFeatures, backbone_identity, extract_features, freeze, load_backbone
from .backbone_kind import BackboneKind, kind_for_model_type, kind_of
from .config import AdapterConfig, BackboneIdentity, FusionConfig, write_json
from .fusion import Fusion
from .safe_files import DamagedFileError, check_name, load_safetensors, ordinary_permissions, read_json, save_safetensors

MODEL_CONFIG_NAME = "kadapter_config.json"
FUSION_WEIGHTS_NAME = "fusion.safetensors"


@dataclass
class KAdapterOutput:
    last_hidden_state: torch.Tensor  # fused features, (batch, seq, hidden): what task heads read
    backbone_last_hidden_state: torch.Tensor
    adapter_states: dict[str, torch.Tensor]  # each adapter's last layer output
    attention_mask: torch.Tensor


class KAdapterModel(nn.Module):
    """K-Adapter: the backbone stays frozen; adapters read its hidden states and never write back.

    Adapters are independent plug-ins: each one only sees the backbone, never another adapter, so an adapter
    trained alone can be loaded next to others. The fusion depends on the set of adapters and is rebuilt (freshly
    initialised) whenever that set changes.

    The paper's downstream recipe also fine-tunes the backbone: `set_backbone_trainable(True)` allows that. The
    model's `identity` stays the pre-trained backbone's, since that is what the adapters were trained against.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        adapters: dict[str, KnowledgeAdapter | AdapterConfig | str | Path] | None = None,
        fusion: str = "concat",
        tokenizer=None,
        identity: BackboneIdentity | None = None,
        kind: str | BackboneKind | None = None,
    ):
        super().__init__()
        self.backbone = freeze(backbone)
        self.backbone_trainable = False
        # encoder or causal LM (kadapter.backbone_kind): every difference between the two lives in this object
        self.kind: BackboneKind = kind_of(backbone, kind)
        self.tokenizer = self.kind.prepare_tokenizer(tokenizer)
        # `identity` is given when the backbone was fine-tuned after the adapters were trained (see from_pretrained).
        self.identity: BackboneIdentity = identity or backbone_identity(backbone)
        self.adapters = nn.ModuleDict()
        self.fusion = Fusion(FusionConfig(fusion, []), self.hidden_size)
        for name, adapter in (adapters or {}).items():
            self.add_adapter(name, adapter)

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str | None = None,
        adapters: dict[str, KnowledgeAdapter | AdapterConfig | str | Path] | None = None,
        fusion: str = "concat",
        kind: str | BackboneKind | None = None,
        **backbone_kwargs,
    ) -> "KAdapterModel":
        """Load a backbone by hub name, path or alias (default: the real MiniLM) and attach adapters.

        Encoders (BERT, RoBERTa, MiniLM) and causal LMs (``"gemma-3-270m"``, from the optional ``[gemma]``
        extra; any ``AutoModelForCausalLM`` folder) both work; ``kind`` overrides the detected kind."""
        backbone, tokenizer = load_backbone(name_or_path, kind=kind, **backbone_kwargs)
        return cls(backbone, adapters, fusion=fusion, tokenizer=tokenizer, kind=kind)

    # ------------------------------------------------------------------------------------------------ adapters
    @property
    def hidden_size(self) -> int:
        return self.identity.hidden_size

    @property
    def adapter_names(self) -> list[str]:
        return list(self.adapters.keys())

    @property
    def tap_layers(self) -> tuple[int, ...]:
        """Every hidden-state index some adapter reads."""
        return tuple(sorted({t for a in self.adapters.values() for t in a.tap_layers}))

    def add_adapter(self, name: str, adapter: KnowledgeAdapter | AdapterConfig | str | Path) -> KnowledgeAdapter:
        """Attach a new adapter (from a config), a trained one (a module or a saved directory). ``name`` is a plain
        name (it becomes the folder ``adapters/<name>`` when the model is saved), never a path."""
        check_name(name, what="adapter")
        if name in self.adapters:
            raise ValueError(f"an adapter named {name!r} is already attached")
        if isinstance(adapter, AdapterConfig):
            adapter = KnowledgeAdapter(adapter, self.identity, kind=self.kind)
        elif isinstance(adapter, (str, Path)):
            adapter = KnowledgeAdapter.from_pretrained(adapter, backbone=self.identity)
        else:
            diff = adapter.backbone.differences(self.identity)
            if diff:
                raise ValueError(f"adapter {name!r} belongs to a different backbone:\n  " + "\n  ".join(diff))
        device = next(self.backbone.parameters()).device
        self.adapters[name] = adapter.to(device)
        self._rebuild_fusion()
        return adapter

    def remove_adapter(self, name: str) -> KnowledgeAdapter:
        adapter = self.adapters.pop(name)
        self._rebuild_fusion()
        return adapter

    def set_fusion(self, mode: str) -> None:
        self._rebuild_fusion(mode)

    def _rebuild_fusion(self, mode: str | None = None) -> None:
        config = FusionConfig(mode or self.fusion.config.mode, self.adapter_names)
        device = next(self.backbone.parameters()).device
        self.fusion = Fusion(config, self.hidden_size).to(device)

    def set_backbone_trainable(self, trainable: bool = True) -> None:
        """Fine-tune the backbone too (the paper's downstream recipe), or freeze it again (the default)."""
        self.backbone_trainable = trainable
        self.backbone.requires_grad_(trainable)
        self.backbone.train(trainable and self.training)

    # ------------------------------------------------------------------------------------------------- forward
    def train(self, mode: bool = True) -> "KAdapterModel":
        super().train(mode)
        if not self.backbone_trainable:
            self.backbone.eval()  # the backbone is frozen: its dropout stays off
        for adapter in self.adapters.values():
            if not any(p.requires_grad for p in adapter.parameters()):
                adapter.eval()  # so does a frozen adapter's: it is a fixed feature extractor, as the backbone
        return self

    def backbone_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids=None
    ) -> BackboneFeatures:
        """The backbone's hidden states at every tap in use; without an autograd graph while it is frozen."""
        return extract_features(
            self.backbone, input_ids, attention_mask, token_type_ids, self.tap_layers, grad=self.backbone_trainable,
            kind=self.kind,
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        features: BackboneFeatures | None = None,
    ) -> KAdapterOutput:
        """Token ids, or backbone features computed earlier (e.g. from the feature cache)."""
        if features is None:
            if input_ids is None:
                raise ValueError("give input_ids or precomputed backbone features")
            features = self.backbone_features(input_ids, attention_mask, token_type_ids)
        missing = set(self.tap_layers) - set(features.hidden_states)
        if missing:
            raise ValueError(f"the features lack hidden states {sorted(missing)} that the adapters tap")
        states = {
            name: adapter(features.hidden_states, features.attention_mask) for name, adapter in self.adapters.items()
        }
        fused = self.fusion(features.last_hidden_state, states)
        return KAdapterOutput(fused, features.last_hidden_state, states, features.attention_mask)

    # ------------------------------------------------------------------------------------------- introspection
    def parameter_table(self) -> list[dict]:
        """One row per top-level module: parameter count and how many are trainable."""
        rows = [("backbone", self.backbone)] + [(f"adapter:{n}", a) for n, a in self.adapters.items()]
        rows.append((f"fusion ({self.fusion.config.mode})", self.fusion))
        return [
            {
                "module": name,
                "parameters": sum(p.numel() for p in module.parameters()),
                "trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
            }
            for name, module in rows
        ]

    # ---------------------------------------------------------------------------------------------- save/load
    def save_pretrained(self, directory: str | Path) -> Path:
        """kadapter_config.json, one self-describing directory per adapter, and the fusion weights."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, adapter in self.adapters.items():
            adapter.save_pretrained(directory / "adapters" / name)
        if self.backbone_trainable:  # a fine-tuned backbone is part of the model now
            self.backbone.save_pretrained(directory / "backbone")
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(directory / "backbone")
            ordinary_permissions(directory / "backbone")  # Hugging Face's weights file comes out 0600
        state = {k: v.detach().contiguous().cpu() for k, v in self.fusion.state_dict().items()}
        save_safetensors(state, directory / FUSION_WEIGHTS_NAME)
        write_json(directory / MODEL_CONFIG_NAME, {
            "kadapter_version": __version__,
            "backbone": self.identity.to_dict(),
            "fusion": self.fusion.config.mode,
            "adapters": self.adapter_names,
            "backbone_fine_tuned": self.backbone_trainable,
        })
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, backbone: PreTrainedModel | str | None = None, tokenizer=None
    ) -> "KAdapterModel":
        """Rebuild a saved model; the backbone defaults to the saved name/path and must match its fingerprint."""
        directory = Path(directory)
        config_path = directory / MODEL_CONFIG_NAME
        payload = read_json(config_path, required=("backbone", "fusion", "adapters"))
        if not isinstance(payload["adapters"], list):
            raise DamagedFileError(config_path, "field 'adapters': expected a list of adapter names")
        for i, name in enumerate(payload["adapters"]):  # names, never paths: adapters load from adapters/<name>
            check_name(name, what="adapter", source=config_path, field=f"adapters[{i}]")
        saved = BackboneIdentity.from_dict(payload["backbone"])
        if payload.get("backbone_fine_tuned"):
            backbone, tokenizer = load_backbone(str(directory / "backbone"))
            # The adapters belong to the pre-trained backbone this one was fine-tuned from: check shapes only.
            shape_diff = [d for d in saved.differences(backbone_identity(backbone)) if "fingerprint" not in d]
            if shape_diff:
                raise ValueError(f"{directory / 'backbone'} does not match:\n  " + "\n  ".join(shape_diff))
            model = cls(backbone, fusion=payload["fusion"], tokenizer=tokenizer, identity=saved)
            model.set_backbone_trainable(True)
        else:
            if backbone is None or isinstance(backbone, str):
                backbone, tokenizer = load_backbone(saved.name_or_path if backbone is None else backbone)
            model = cls(backbone, fusion=payload["fusion"], tokenizer=tokenizer)
            diff = saved.differences(model.identity)
            if diff:
                raise ValueError(f"{directory} was saved with a different backbone:\n  " + "\n  ".join(diff))
        for name in payload["adapters"]:
            model.add_adapter(name, directory / "adapters" / name)
        weights = directory / FUSION_WEIGHTS_NAME
        load_state_strict(model.fusion, load_safetensors(weights)[0], weights)
        return model


def random_backbone(model_type: str = "bert", **overrides) -> PreTrainedModel:
    """A randomly initialised backbone from a config (no download): for shapes, parameter counts and speed. An
    encoder type gives ``AutoModel``'s model, a decoder-only type (``"llama"``, ``"gemma3_text"``) a causal LM."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type, **overrides)
    return kind_for_model_type(model_type).auto_class().from_config(config)
