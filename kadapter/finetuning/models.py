"""Task models and how heads are wired to them: fusion + head on pooled vectors, trained adapters over cached
states, or a whole ``KAdapterModel`` over token ids; and :func:`build_model`, the model a setting trains."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from datasets import DatasetDict
from torch import nn

from ..adapter import KnowledgeAdapter
from ..backbone import BackboneFeatures, backbone_identity
from ..config import FusionConfig
from ..fusion import Fusion
from ..heads import EntityTypingHead, MultipleChoiceHead, RelationClassificationHead
from ..model import KAdapterModel
from .features import (PooledDataset, SplitFeatures, TapsDataset, TokensDataset, collate_taps,
                       collate_tokens)
from .settings import FineTuneConfig, Setting, build_adapter
from .tasks import ENTITY_TYPING, RELATION, SPLITS, TaskData


def make_head(kind: str, hidden_size: int, num_labels: int | None, dropout: float = 0.1) -> nn.Module:
    if kind == ENTITY_TYPING:
        return EntityTypingHead(hidden_size, num_labels, dropout)
    if kind == RELATION:
        return RelationClassificationHead(hidden_size, num_labels, dropout)
    return MultipleChoiceHead(hidden_size, dropout)


def head_inputs(kind: str, positions: torch.Tensor, num_choices: int | None = None) -> dict:
    """The head's keyword inputs from the (sequences, P) positions it reads."""
    if kind == ENTITY_TYPING:
        return {"entity_pos": positions[:, 0]}
    if kind == RELATION:
        return {"subj_pos": positions[:, 0], "obj_pos": positions[:, 1]}
    return {"num_choices": num_choices}


class PooledTaskModel(nn.Module):
    """Fusion + head on vectors already taken at the head's positions (backbone and adapters frozen).

    Exact, not an approximation: both fusions act on each position separately, so fusing first and then reading
    the marker position gives the same vector as reading it first.
    """

    def __init__(self, kind: str, fusion: Fusion, head: nn.Module):
        super().__init__()
        self.kind, self.fusion, self.head = kind, fusion, head

    def forward(self, backbone: torch.Tensor, adapters: Mapping[str, torch.Tensor], labels=None):
        num_choices = None
        if backbone.dim() == 4:  # (batch, choices, P, H)
            num_choices = backbone.shape[1]
            backbone = backbone.flatten(0, 1)
            adapters = {n: a.flatten(0, 1) for n, a in adapters.items()}
        fused = self.fusion(backbone, dict(adapters))
        positions = torch.arange(fused.shape[1], device=fused.device).expand(fused.shape[0], -1)
        return self.head(fused, None, labels=labels, **head_inputs(self.kind, positions, num_choices))


class AdapterTaskModel(nn.Module):
    """Trained adapters over cached backbone states, then fusion + head at the head's positions only.

    The same function as a ``KAdapterModel`` + head (the fusion is position-wise), without fusing the positions
    no head reads: the fusion costs as much per token as an adapter layer.
    """

    def __init__(self, kind: str, adapters: Mapping[str, KnowledgeAdapter], fusion: Fusion, head: nn.Module):
        super().__init__()
        self.adapters = nn.ModuleDict(dict(adapters))
        self.pooled = PooledTaskModel(kind, fusion, head)

    def forward(self, features: BackboneFeatures, positions, labels=None, num_choices: int | None = None):
        rows = torch.arange(positions.shape[0], device=positions.device)[:, None]
        backbone = features.last_hidden_state[rows, positions]
        adapters = {n: a(features.hidden_states, features.attention_mask)[rows, positions]
                    for n, a in self.adapters.items()}
        if num_choices:  # (batch * choices, P, H) -> (batch, choices, P, H)
            backbone = backbone.unflatten(0, (-1, num_choices))
            adapters = {n: a.unflatten(0, (-1, num_choices)) for n, a in adapters.items()}
        return self.pooled(backbone, adapters, labels)


class SequenceTaskModel(nn.Module):
    """A ``KAdapterModel`` + head over token ids (or backbone features): the model for a trained backbone
    (``set_backbone_trainable``), and the reference the shortcuts are tested against."""

    def __init__(self, kind: str, encoder: KAdapterModel, head: nn.Module):
        super().__init__()
        self.kind, self.encoder, self.head = kind, encoder, head

    def forward(self, positions, labels=None, features: BackboneFeatures | None = None, input_ids=None,
                attention_mask=None, token_type_ids=None, num_choices: int | None = None):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           features=features)
        return self.head(out.last_hidden_state, out.attention_mask, labels=labels,
                         **head_inputs(self.kind, positions, num_choices))


def build_model(setting: Setting, seed: int, data: TaskData, encoded: DatasetDict,
                features: Mapping[str, SplitFeatures], backbone, tokenizer, config: FineTuneConfig):
    """The model a setting trains, initialised from `seed`, and ``{split: (dataset, collate function)}``.

    Trainable: fusion + head; the adapters too when ``adapters_trainable``; the backbone too (a private copy, so
    the shared one stays untouched) when ``backbone_trainable``.
    """
    if setting.baseline:
        raise ValueError(f"{setting.name!r} is a baseline: nothing to train")
    identity = backbone_identity(backbone)
    kind, hidden = data.task.kind, identity.hidden_size
    num_labels = len(data.labels) if data.labels else None
    torch.manual_seed(seed)  # head and fusion initialisation
    adapter_seed = config.random_adapter_seed if config.random_adapter_seed is not None else seed
    if setting.mode == "pooled":
        keys = setting.adapter_keys(adapter_seed)
        fusion = Fusion(FusionConfig(setting.fusion, list(setting.adapters)), hidden)
        model = PooledTaskModel(kind, fusion, make_head(kind, hidden, num_labels, config.dropout))
        return model, {s: (PooledDataset(features[s], keys), torch.utils.data.default_collate) for s in SPLITS}

    adapters = {name: build_adapter(setting, name, identity, adapter_seed) for name in setting.adapters}
    for adapter in adapters.values():
        adapter.requires_grad_(setting.adapters_trainable)
    torch.manual_seed(seed)
    if setting.mode == "taps":
        fusion = Fusion(FusionConfig(setting.fusion, list(setting.adapters)), hidden)
        model = AdapterTaskModel(kind, adapters, fusion, make_head(kind, hidden, num_labels, config.dropout))
        return model, {s: (TapsDataset(features[s]), collate_taps(features[s].cache, features[s].choices))
                       for s in SPLITS}
    base = copy.deepcopy(backbone) if setting.backbone_trainable else backbone
    encoder = KAdapterModel(base, adapters, fusion=setting.fusion, tokenizer=tokenizer)
    encoder.set_backbone_trainable(setting.backbone_trainable)
    model = SequenceTaskModel(kind, encoder, make_head(kind, hidden, num_labels, config.dropout))
    collate = collate_tokens(kind, tokenizer.pad_token_id)
    return model, {s: (TokensDataset(encoded[s], kind), collate) for s in SPLITS}

