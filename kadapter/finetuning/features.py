"""Fixed features for fine-tuning: the frozen backbone's states over a split (the feature cache), every frozen
adapter run once over them and both read at the head's positions; and the datasets and collate functions that
feed the three task models (pooled vectors, cached tap states, token ids)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from ..adapter import KnowledgeAdapter
from ..backbone import backbone_identity
from ..cache import FeatureCache
from ..progress import progress_bar
from .settings import FineTuneConfig, Setting, build_adapter
from .tasks import MULTIPLE_CHOICE, TaskData, encode_task


@dataclass
class SplitFeatures:
    """One split's fixed features.

    ``backbone`` / ``adapters[key]``: vectors at the head's positions, (N, P, H), or (N, C, P, H) for C choices.
    ``cache``: the backbone's states at the adapters' tap layers and its last layer, one entry per sequence
    (choices flattened: example i, choice c is sequence ``i * C + c``), for settings that train adapters.
    ``positions``: (N, P) or (N, C, P).
    """

    backbone: torch.Tensor
    adapters: dict[str, torch.Tensor]
    labels: torch.Tensor
    positions: torch.Tensor
    cache: FeatureCache
    choices: int = 0

    def __len__(self) -> int:
        return self.backbone.shape[0]


def sequence_dataset(encoded: Dataset, kind: str) -> tuple[Dataset, list[list[int]], int]:
    """One row per sequence (a multiple-choice example gives one per choice): the model inputs, the positions
    the head reads in each, and the number of choices (0 when not multiple choice)."""
    if kind != MULTIPLE_CHOICE:
        columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in encoded.column_names]
        return encoded.select_columns(columns), list(encoded["positions"]), 0
    choices = len(encoded[0]["input_ids"])
    flat: dict[str, list] = {}
    for column in ("input_ids", "attention_mask", "token_type_ids"):
        if column in encoded.column_names:
            flat[column] = [seq for example in encoded[column] for seq in example]
    return Dataset.from_dict(flat), [[0]] * (len(encoded) * choices), choices


@torch.no_grad()
def split_features(backbone, tokenizer, encoded: Dataset, kind: str, adapters: Mapping[str, KnowledgeAdapter], *,
                   taps: Sequence[int], max_length: int, cache_root: str | Path | None = None,
                   storage_dtype: str = "float16", batch_size: int = 64, progress: bool = True) -> SplitFeatures:
    """The frozen backbone's states over a split (computed once, kept by :class:`kadapter.cache.FeatureCache`),
    then every frozen adapter in `adapters` (keyed by weight identity) run once over them, and the backbone's
    and adapters' vectors taken at the head's positions."""
    sequences, seq_positions, choices = sequence_dataset(encoded, kind)
    taps = sorted(set(taps) | {t for a in adapters.values() for t in a.tap_layers})
    cache = FeatureCache.build(backbone, sequences, tokenizer=tokenizer, max_length=max_length, taps=taps,
                               root=cache_root, storage_dtype=storage_dtype, batch_size=batch_size,
                               progress=progress)
    for adapter in adapters.values():
        adapter.eval()
    n, n_pos, hidden = len(sequences), len(seq_positions[0]), backbone.config.hidden_size
    pooled = torch.zeros(n, n_pos, hidden)
    pooled_adapters = {key: torch.zeros(n, n_pos, hidden) for key in adapters}
    device = next(backbone.parameters()).device
    order = np.argsort(cache.lengths, kind="stable")  # similar lengths share a batch: little padding
    for start in progress_bar(range(0, n, batch_size), desc=f"adapter features: {len(adapters)} frozen adapter(s)",
                              disable=not (progress and adapters), leave=False):
        rows = order[start:start + batch_size].tolist()
        feats = cache.features(rows).to(device)
        positions = torch.tensor([seq_positions[i] for i in rows], device=device)
        batch_index = torch.arange(len(rows), device=device)[:, None]
        pooled[rows] = feats.last_hidden_state[batch_index, positions].float().cpu()
        for key, adapter in adapters.items():
            out = adapter(feats.hidden_states, feats.attention_mask)
            pooled_adapters[key][rows] = out[batch_index, positions].float().cpu()
    positions = torch.tensor(seq_positions)
    if choices:  # back to (examples, choices, ...)
        pooled = pooled.view(-1, choices, n_pos, hidden)
        pooled_adapters = {k: v.view(-1, choices, n_pos, hidden) for k, v in pooled_adapters.items()}
        positions = positions.view(-1, choices, n_pos)
    return SplitFeatures(pooled, pooled_adapters, torch.tensor(encoded["labels"]), positions, cache, choices)


def prepare_features(data: TaskData, settings: Sequence[Setting], seeds: Sequence[int], config: FineTuneConfig,
                     backbone, tokenizer) -> tuple[DatasetDict, dict, dict[str, SplitFeatures]]:
    """Encode every split and compute what stays fixed: the backbone's vectors and every frozen adapter's vectors
    at the head's positions; the backbone states at the taps stay in the feature cache for settings that train
    adapters. Returns (encoded splits, encoding stats per split, {split: SplitFeatures} or {} when no setting
    needs them)."""
    encoded, stats = encode_task(data, tokenizer, config.max_length)
    identity = backbone_identity(backbone)
    frozen: dict[str, KnowledgeAdapter] = {}
    taps: set[int] = set()
    for setting in settings:
        if setting.mode == "pooled" and setting.adapters:
            for seed in _adapter_seeds(setting, seeds, config):
                for name, key in setting.adapter_keys(seed).items():
                    if key not in frozen:
                        frozen[key] = build_adapter(setting, name, identity, seed)
        if setting.mode == "taps":
            for name in setting.adapters:
                taps.update(build_adapter(setting, name, identity, 0).tap_layers)
    if not any(s.mode in ("pooled", "taps") for s in settings):
        return encoded, stats, {}
    features = {
        split: split_features(backbone, tokenizer, enc, data.task.kind, frozen, taps=sorted(taps),
                              max_length=config.max_length, cache_root=config.cache_root,
                              storage_dtype=config.cache_dtype, batch_size=config.feature_batch_size,
                              progress=config.progress)
        for split, enc in encoded.items()
    }
    return encoded, stats, features


def _adapter_seeds(setting: Setting, seeds, config: FineTuneConfig) -> list:
    if setting.knowledge:
        return [None]
    return [config.random_adapter_seed] if config.random_adapter_seed is not None else list(seeds)


# ================================================================================================ data loaders
class PooledDataset(torch.utils.data.Dataset):
    """Items ``{backbone, adapters: {name: tensor}, labels}`` for :class:`PooledTaskModel`."""

    def __init__(self, feats: SplitFeatures, adapter_keys: Mapping[str, str]):
        self.feats, self.adapter_keys = feats, dict(adapter_keys)

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict:
        return {"backbone": self.feats.backbone[i],
                "adapters": {n: self.feats.adapters[k][i] for n, k in self.adapter_keys.items()},
                "labels": self.feats.labels[i]}


class TapsDataset(torch.utils.data.Dataset):
    """Items naming an example's sequences in the feature cache, for settings that train adapters."""

    def __init__(self, feats: SplitFeatures):
        self.feats = feats

    def __len__(self) -> int:
        return len(self.feats)

    def fingerprint(self) -> str:
        """The examples these items point at: the cache folder (named by its key) and the task columns."""
        from ..training import data_fingerprint

        return data_fingerprint([self.feats.cache.path.name, self.feats.choices, self.feats.positions,
                                 self.feats.labels])

    def __getitem__(self, i: int) -> dict:
        c = self.feats.choices
        sequences = list(range(i * c, (i + 1) * c)) if c else [i]
        return {"sequences": sequences, "positions": self.feats.positions[i], "labels": self.feats.labels[i]}


def collate_taps(cache: FeatureCache, choices: int = 0):
    """Read the items' backbone states from the cache into ``BackboneFeatures`` (choices flattened)."""
    def collate(items: list[dict]) -> dict:
        features = cache.features([s for item in items for s in item["sequences"]])
        positions = torch.stack([item["positions"] for item in items])
        batch = {"features": features, "positions": positions.flatten(0, 1) if choices else positions,
                 "labels": torch.stack([item["labels"] for item in items])}
        if choices:
            batch["num_choices"] = choices
        return batch

    return collate


class TokensDataset(torch.utils.data.Dataset):
    def __init__(self, encoded: Dataset, kind: str):
        self.encoded, self.kind = encoded, kind

    def __len__(self) -> int:
        return len(self.encoded)

    def fingerprint(self) -> str:
        from ..training import data_fingerprint

        return data_fingerprint(self.encoded)

    def __getitem__(self, i: int) -> dict:
        return self.encoded[i]


def collate_tokens(kind: str, pad_token_id: int):
    """Pad token ids for a trained backbone (choices flattened into the batch)."""
    def collate(items: list[dict]) -> dict:
        if kind == MULTIPLE_CHOICE:
            choices = len(items[0]["input_ids"])
            seqs = [{"input_ids": ex["input_ids"][c],
                     "token_type_ids": ex["token_type_ids"][c] if "token_type_ids" in ex else None}
                    for ex in items for c in range(choices)]
            positions = torch.zeros(len(seqs), 1, dtype=torch.long)
        else:
            choices = None
            seqs = [{"input_ids": ex["input_ids"], "token_type_ids": ex.get("token_type_ids")} for ex in items]
            positions = torch.tensor([ex["positions"] for ex in items])
        width = max(len(s["input_ids"]) for s in seqs)
        ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        types = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            n = len(s["input_ids"])
            ids[i, :n], mask[i, :n] = torch.tensor(s["input_ids"]), 1
            if s["token_type_ids"] is not None:
                types[i, :n] = torch.tensor(s["token_type_ids"])
        batch = {"input_ids": ids, "attention_mask": mask, "positions": positions,
                 "labels": torch.tensor([ex["labels"] for ex in items])}
        if seqs[0]["token_type_ids"] is not None:
            batch["token_type_ids"] = types
        if choices:
            batch["num_choices"] = choices
        return batch

    return collate
