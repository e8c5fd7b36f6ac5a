"""Downstream fine-tuning: settings × seeds, model selection on dev, test evaluated once at the end.

A *setting* says what is trained on top of the backbone (:class:`Setting`): backbone only, ``+F``, ``+L``, ``+F+L``,
the "w/o knowledge" controls (same adapter architecture, fresh initialisation, frozen or trained) and the
trivial ``majority`` baseline. :func:`run_finetuning` runs every setting with every seed on one task and returns a
JSON-ready results dict; :func:`results_table` and :func:`kadapter.plotting.results_bar_chart` show it. The tasks
themselves (loading, encoding, scoring) are :mod:`kadapter.finetuning_tasks`; tables and verdicts are
:mod:`kadapter.finetuning_results` (both importable from here too).

Why it is cheap where it can be: with the backbone *and* the adapters frozen, their outputs are fixed, and the fusion
is position-wise, so the fused vector at a position depends only on the backbone's and the adapters' vectors at
that position. We therefore run the backbone and every frozen adapter once per example, keep their outputs at the
positions the head reads (the ``@``/``#`` markers, or the first token), and train only fusion + head on those
vectors (:class:`PooledTaskModel`): seeds and settings then cost seconds. Settings with a trained adapter keep the
backbone's hidden states at the adapters' tap layers and run only the adapters; a trainable backbone runs it all.

Model selection uses dev only: every epoch is scored on dev, the best epoch's weights are restored, and only then
is test evaluated, once per (setting, seed).
"""
from __future__ import annotations

import copy
import json
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn

from .adapter import CONFIG_NAME, KnowledgeAdapter
from .backbone import BackboneFeatures, backbone_identity, load_backbone
from .cache import FeatureCache
from .baselines import MajorityBaseline
from .config import AdapterConfig, FusionConfig
from .fusion import Fusion
from .heads import EntityTypingHead, MultipleChoiceHead, RelationClassificationHead
from .metrics import logits_to_label_sets
from .model import KAdapterModel
from .progress import progress_bar
from .training import TrainConfig, train
# Tasks and results live in their own modules; their names stay importable from here.
from .finetuning_tasks import (ENTITY_TYPING, MULTIPLE_CHOICE, RELATION, SPLITS, TASKS, TaskData,  # noqa: F401
                               TaskSpec, encode_task, load_task, score)
from .finetuning_results import (PAPER_REFERENCE, compare, knowledge_verdicts, paper_reference,  # noqa: F401
                                 results_table, summarize)

#: Short letters used in setting names, and the adapter names they stand for.
ADAPTER_LETTERS = {"F": "factual", "L": "linguistic"}
RESULTS_NAME = "results.json"




# ===================================================================================================== settings
RANDOM_INIT = "random"


@dataclass
class Setting:
    """One row of a results table: what sits on the backbone and what is trained.

    ``adapters`` maps adapter names to saved adapter directories. With ``knowledge=False`` ("w/o knowledge")
    each adapter keeps the architecture read from its directory but starts from a fresh initialisation, exactly
    where knowledge pre-training starts, and no pre-trained weights are loaded. ``baseline="majority"`` trains
    nothing and predicts the training majority.
    """

    name: str
    adapters: dict[str, str] = field(default_factory=dict)
    knowledge: bool = True
    adapters_trainable: bool = False
    fusion: str = "concat"
    backbone_trainable: bool = False
    baseline: str | None = None

    def __post_init__(self) -> None:
        FusionConfig(self.fusion)  # validates the mode
        if self.baseline not in (None, "majority"):
            raise ValueError(f"unknown baseline {self.baseline!r}")
        if not self.knowledge and not self.adapters:
            raise ValueError(f"setting {self.name!r}: 'w/o knowledge' needs adapters whose architecture to copy")
        self.adapters = {name: str(path) for name, path in self.adapters.items()}

    @property
    def mode(self) -> str:
        """How its features are computed: ``baseline``, ``pooled`` (everything below the fusion frozen),
        ``taps`` (trained adapters over cached backbone states) or ``tokens`` (the backbone is trained)."""
        if self.baseline:
            return "baseline"
        if self.backbone_trainable:
            return "tokens"
        return "taps" if self.adapters and self.adapters_trainable else "pooled"

    def adapter_keys(self, random_seed: int | None) -> dict[str, str]:
        """Adapter name -> identity of its (frozen) weights, so identical adapters are computed once."""
        if self.knowledge:
            return {name: f"{name}@{path}" for name, path in self.adapters.items()}
        return {name: f"{name}@{path}#{RANDOM_INIT}{random_seed}" for name, path in self.adapters.items()}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Setting":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def setting_name(letters: Sequence[str], *, knowledge: bool = True, adapters_trainable: bool = False,
                 fusion: str = "concat", backbone_trainable: bool = False) -> str:
    """``backbone``, ``+F``, ``+F+L``, ``+F (w/o knowledge, frozen)`` ...; a trained backbone or ``add`` fusion
    is spelled out after a ``|`` so two regimes never share a name."""
    name = "".join(f"+{x}" for x in letters) if letters else "backbone"
    if not knowledge:
        name += f" (w/o knowledge, {'trained' if adapters_trainable else 'frozen'})"
    elif adapters_trainable and letters:
        name += " (adapters trained)"
    if fusion != "concat" and letters:
        name += f" | {fusion} fusion"
    if backbone_trainable:
        name += " | backbone trained"
    return name


def standard_settings(adapter_dirs: Mapping[str, str | Path], *, fusion: str = "concat",
                      backbone_trainable: bool = False, combinations: Sequence[str] = ("F", "L", "F+L"),
                      controls: Sequence[str] = ("F", "F+L"), trained_controls: Sequence[str] = ("F",),
                      trained_combinations: Sequence[str] = (), majority: bool = True) -> list[Setting]:
    """The comparison of issues 5 and 7 on one task.

    ``adapter_dirs`` maps letters (``F``, ``L``) to saved adapter directories. Rows: ``majority``, ``backbone``,
    each knowledge combination (adapters frozen, as in the paper), then the "w/o knowledge" controls: for each
    combination in ``controls`` the same adapters freshly initialised and frozen, and for each in
    ``trained_controls`` the same but trained on the task (capacity matched on both sides). Each combination in
    ``trained_combinations`` adds a row whose pre-trained adapters are trained on the task too: against the trained
    control, only the starting point differs (knowledge or a random draw).
    """
    def adapters(combo: str) -> dict[str, str]:
        letters = combo.split("+")
        missing = [x for x in letters if x not in adapter_dirs]
        if missing:
            raise ValueError(f"no adapter directory for {missing} (have {sorted(adapter_dirs)})")
        return {ADAPTER_LETTERS.get(x, x): str(adapter_dirs[x]) for x in letters}

    common = dict(fusion=fusion, backbone_trainable=backbone_trainable)
    settings = [Setting("majority", baseline="majority")] if majority else []
    settings.append(Setting(setting_name((), backbone_trainable=backbone_trainable),
                            backbone_trainable=backbone_trainable))
    for combo in combinations:
        settings.append(Setting(setting_name(combo.split("+"), **common), adapters(combo), **common))
    for combo in trained_combinations:
        settings.append(Setting(setting_name(combo.split("+"), adapters_trainable=True, **common), adapters(combo),
                                adapters_trainable=True, **common))
    for combo, trained in [(c, False) for c in controls] + [(c, True) for c in trained_controls]:
        settings.append(Setting(setting_name(combo.split("+"), knowledge=False, adapters_trainable=trained,
                                             **common),
                                adapters(combo), knowledge=False, adapters_trainable=trained, **common))
    return settings


def build_adapter(setting: Setting, name: str, backbone_identity_, seed: int | None) -> KnowledgeAdapter:
    """The adapter `name` of a setting: its saved weights, or ("w/o knowledge") a fresh one of the same
    architecture initialised from `seed`."""
    path = Path(setting.adapters[name])
    if setting.knowledge:
        return KnowledgeAdapter.from_pretrained(path, backbone=backbone_identity_)
    payload = json.loads((path / CONFIG_NAME).read_text())
    with torch.random.fork_rng():
        torch.manual_seed(random_init_seed(seed, name))
        return KnowledgeAdapter(AdapterConfig.from_dict(payload["adapter"]), backbone_identity_)


def random_init_seed(seed: int | None, name: str) -> int:
    """The torch seed of a "w/o knowledge" adapter: its run seed and its name, so that two random adapters of
    one setting (``+F+L`` w/o knowledge) are two different draws."""
    return (seed or 0) * 1_000_003 + zlib.crc32(name.encode())


def save_untrained_adapter(directory: str | Path, backbone, config: AdapterConfig, seed: int = 0,
                           **metadata) -> Path:
    """A freshly initialised adapter saved as a directory: stands in for a trained adapter in smoke runs and
    tests (so they never depend on ``runs/``)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        adapter = KnowledgeAdapter(config, backbone_identity(backbone))
    return adapter.save_pretrained(directory, untrained=True, **metadata)


# ===================================================================================================== features
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


# ======================================================================================================= models
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
        from .training import data_fingerprint

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
        from .training import data_fingerprint

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


# =================================================================================================== evaluation
@torch.no_grad()
def predict(model: nn.Module, dataset: torch.utils.data.Dataset, collate_fn, batch_size: int = 256) -> torch.Tensor:
    """The model's logits over a dataset, in order (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    from accelerate.utils import send_to_device

    logits = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn)
    for batch in loader:
        batch = send_to_device({k: v for k, v in batch.items() if k != "labels"}, device)
        logits.append(model(**batch).logits.float().cpu())
    model.train(was_training)
    return torch.cat(logits)


def decode(task: TaskSpec, logits: torch.Tensor, labels: Sequence[str] | None) -> list:
    """Logits -> predictions in the gold labels' form."""
    if task.kind == ENTITY_TYPING:
        return [frozenset(s) for s in logits_to_label_sets(logits, labels)]
    best = logits.argmax(-1).tolist()
    return best if task.kind == MULTIPLE_CHOICE else [labels[i] for i in best]


def evaluate_split(model: nn.Module, dataset, collate_fn, data: TaskData, split: str,
                   batch_size: int = 256) -> tuple[dict[str, float], list]:
    """Score the model on one split: (metrics, predictions). The runner calls it on ``test`` exactly once per run."""
    pred = decode(data.task, predict(model, dataset, collate_fn, batch_size), data.labels)
    return score(data.task, data.gold(split), pred), pred


def majority_predictions(data: TaskData, split: str) -> tuple[list, MajorityBaseline]:
    """The training majority (label, label set or answer index) predicted for every example of `split`."""
    baseline = MajorityBaseline().fit(data.gold("train"))
    return baseline.predict(len(data.splits[split])), baseline


# ======================================================================================================= runner
@dataclass
class FineTuneConfig:
    epochs: int = 10
    # Settings that train adapters or the backbone cost a full adapter/backbone pass per step: their own epoch
    # budget (None: `epochs`). Every setting still picks its best epoch on dev.
    trained_epochs: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3  # fusion + head on frozen features
    # Settings whose backbone and adapters are frozen are cheap: each run may try several learning rates and keep
    # the best on dev (a linear probe on frozen features is very sensitive to it). None/empty: `learning_rate`.
    learning_rates: tuple[float, ...] | None = None
    adapter_learning_rate: float = 5e-4  # settings whose adapters are trained (the adapter pre-training rate)
    backbone_learning_rate: float = 2e-5  # settings whose backbone is trained (the paper's recipe)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int | None = 3  # epochs without dev improvement before stopping
    dropout: float = 0.1
    max_length: int = 128
    feature_batch_size: int = 64
    eval_batch_size: int = 256
    # The "w/o knowledge" adapters are initialised from this seed, once, and shared by every run seed: the
    # knowledge adapters are also one fixed draw. None: a fresh random adapter per run seed (costs one more
    # adapter pass over the data per seed when frozen).
    random_adapter_seed: int | None = 0
    cache_root: str | None = None  # the backbone feature cache (None: $KADAPTER_CACHE or ~/.cache/kadapter)
    cache_dtype: str = "float16"
    # False: delete the task's backbone feature caches once its runs are finished (CosmosQA at length 256 on
    # RoBERTa-large: ~10 GB); True keeps them for later runs on the same data.
    keep_feature_cache: bool = True
    device: str = "cpu"
    progress: bool = True

    def epochs_for(self, setting: Setting) -> int:
        return self.epochs if setting.mode == "pooled" or self.trained_epochs is None else self.trained_epochs

    def learning_rates_for(self, setting: Setting) -> list[float]:
        """The learning rates tried (each run picks the best on dev): the grid for the cheap settings."""
        if setting.mode == "pooled" and self.learning_rates:
            return list(self.learning_rates)
        return [self.learning_rate_for(setting)]

    def learning_rate_for(self, setting: Setting) -> float:
        if setting.backbone_trainable:
            return self.backbone_learning_rate
        return self.adapter_learning_rate if setting.adapters_trainable and setting.adapters else self.learning_rate


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "setting"


def run_finetuning(data: TaskData, settings: Sequence[Setting], seeds: Sequence[int], config: FineTuneConfig,
                   output_dir: str | Path, backbone=None, tokenizer=None, metadata: Mapping | None = None) -> dict:
    """Every setting × seed on one task. Returns (and writes to ``output_dir/results.json``) the results dict,
    with `metadata` (e.g. ``{"adapters_untrained": True}``) merged in.

    Finished runs are kept in ``output_dir/<setting>/seed<k>/run.json`` and reused when the same configuration is
    run again, so an interrupted table resumes where it stopped.
    """
    t0 = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if backbone is None:
        backbone, tokenizer = load_backbone()
    backbone.to(config.device).eval()
    identity = backbone_identity(backbone)
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError(f"setting names must be unique: {names}")

    def run_dir(setting, seed) -> Path:
        return output_dir / _slug(setting.name) / (f"seed{seed}" if seed is not None else "baseline")

    seeds_of = {s.name: [None] if s.baseline else list(seeds) for s in settings}
    finished = {(s.name, seed): _load_finished(run_dir(s, seed), s, seed, config, data)
                for s in settings for seed in seeds_of[s.name]}
    pending = [s for s in settings if any(finished[s.name, seed] is None for seed in seeds_of[s.name])]
    t_features = time.time()  # features only for settings with runs left to do
    encoded, encoding_stats, features = prepare_features(data, pending, seeds, config, backbone, tokenizer)
    feature_seconds = time.time() - t_features

    runs = []
    for setting in settings:
        for seed in seeds_of[setting.name]:
            record = finished[setting.name, seed]
            if record is None:
                directory = run_dir(setting, seed)
                _start_fresh_if_changed(directory, _run_identity(setting, seed, config, data))
                record = _run_one(setting, seed, data, encoded, features, backbone, tokenizer, config, directory)
                _write_json(directory / "run.json", record)
            runs.append(record)

    results = {
        "task": data.task.name, "metric": data.task.metric, "metric_label": data.task.metric_label,
        "backbone": identity.to_dict(), "seeds": list(seeds), "config": asdict(config),
        "data": {**data.provenance, "encoding": encoding_stats},
        "settings": [s.to_dict() for s in settings],
        "runs": [{k: v for k, v in r.items() if k != "test_predictions"} for r in runs],
        "summary": summarize(runs, data.task.metric, names),
        "paper_reference": paper_reference(data.task.name),
        "seconds": {"features": feature_seconds, "total": time.time() - t0},
        **dict(metadata or {}),
    }
    _write_json(output_dir / RESULTS_NAME, results)
    if not config.keep_feature_cache:
        import shutil

        for split in features.values():
            if split.cache is not None:
                shutil.rmtree(split.cache.path, ignore_errors=True)
    return results


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


# Config fields that change what a run computes, by setting mode; the others (progress, paths, batch sizes of
# feature extraction and evaluation, the other modes' rates) leave a finished run valid.
_COMMON_FIELDS = ("batch_size", "weight_decay", "warmup_ratio", "patience", "dropout", "max_length", "cache_dtype")
_MODE_FIELDS = {
    "baseline": (),
    "pooled": _COMMON_FIELDS + ("epochs", "learning_rate", "learning_rates", "random_adapter_seed"),
    "taps": _COMMON_FIELDS + ("epochs", "trained_epochs", "adapter_learning_rate", "random_adapter_seed"),
    "tokens": _COMMON_FIELDS + ("epochs", "trained_epochs", "backbone_learning_rate", "random_adapter_seed"),
}


def _run_identity(setting: Setting, seed, config: FineTuneConfig, data: TaskData) -> dict:
    """What a finished run depends on: a rerun with the same identity reuses it."""
    fields_ = _MODE_FIELDS[setting.mode] if setting.baseline is None else ("max_length",)
    config_dict = asdict(config)
    return {"setting": setting.to_dict(), "seed": seed,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config_dict.items() if k in fields_},
            "data": data.provenance.get("used_sizes")}


def _load_finished(run_dir: Path, setting, seed, config, data) -> dict | None:
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("identity") == _run_identity(setting, seed, config, data) else None


def _start_fresh_if_changed(run_dir: Path, identity: dict) -> None:
    """A trainer checkpoint is resumed only by the same run: another setting under this name starts afresh."""
    import shutil

    path = run_dir / "identity.json"
    if path.is_file() and json.loads(path.read_text()) != identity:
        for stale in run_dir.glob("trainer*"):
            shutil.rmtree(stale, ignore_errors=True)
    _write_json(path, identity)


def _run_one(setting: Setting, seed, data: TaskData, encoded: DatasetDict, features: dict, backbone, tokenizer,
             config: FineTuneConfig, run_dir: Path) -> dict:
    t0 = time.time()
    record = {"setting": setting.name, "seed": seed, "identity": _run_identity(setting, seed, config, data)}
    if setting.baseline:
        for split in ("dev", "test"):
            pred, baseline = majority_predictions(data, split)
            record[split] = score(data.task, data.gold(split), pred)
        record["majority"] = _jsonable(baseline.overall)
        record["majority_train_share"] = baseline.share()
        record.update(best_epoch=None, history=[], trainable_parameters=0, seconds=time.time() - t0)
        return record

    best = None
    search = []
    for lr in config.learning_rates_for(setting):
        model, splits = build_model(setting, seed, data, encoded, features, backbone, tokenizer, config)
        summary = _train(model, splits, setting, seed, lr, data, config, run_dir / f"trainer_lr{lr:g}")
        run = summary["runs"]["model"]
        search.append({"learning_rate": lr, "best_epoch": run["best_epoch"], "dev": run["best_metric"],
                       "epochs_run": summary["epochs_run"]})
        if best is None or run["best_metric"] > best[3]["runs"]["model"]["best_metric"]:
            best = (lr, model, splits, summary)
    lr, model, splits, summary = best
    run = summary["runs"]["model"]
    # The best (learning rate, epoch) by dev is loaded in `model`; test is looked at now, once.
    record["test"], test_pred = evaluate_split(model, *splits["test"], data, "test", config.eval_batch_size)
    record["dev"] = next({k: v for k, v in h.items() if k != "epoch"} for h in run["history"]
                         if h["epoch"] == run["best_epoch"])
    record.update(learning_rate=lr, learning_rate_search=search, best_epoch=run["best_epoch"],
                  epochs_run=summary["epochs_run"], stopped_early=run["stopped"], history=run["history"],
                  trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                  seconds=time.time() - t0, test_predictions=[_jsonable(p) for p in test_pred])
    return record


def _train(model, splits, setting: Setting, seed: int, lr: float, data: TaskData, config: FineTuneConfig,
           output_dir: Path) -> dict:
    """Train on train with the shared Trainer, score every epoch on dev, restore the best epoch's weights."""
    train_config = TrainConfig(
        output_dir=str(output_dir), epochs=config.epochs_for(setting), batch_size=config.batch_size,
        learning_rate=lr, weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio, seed=seed,
        metric=data.task.metric, patience=config.patience, cpu=config.device == "cpu", progress=config.progress,
        log_every=50, desc=f"{data.task.name} · {setting.name} · seed {seed} · lr {lr:g}")

    def on_dev(m):
        return evaluate_split(m, *splits["dev"], data, "dev", config.eval_batch_size)[0]

    return train(model, splits["train"][0], train_config, collate_fn=splits["train"][1], evaluate=on_dev)


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


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def resolve_adapter_dirs(paths: Mapping[str, str | Path | None], backbone, stand_in: Mapping | None = None,
                         stand_in_root: str | Path | None = None) -> tuple[dict[str, str], bool]:
    """Adapter directories by letter. A missing directory is an error, unless `stand_in` (an AdapterConfig as a
    dict) is given: then a freshly initialised adapter is saved under `stand_in_root` in its place (smoke runs),
    and the second value says so — results from stand-ins must be labelled as untrained."""
    resolved, untrained = {}, False
    for letter, path in paths.items():
        if path is not None and (Path(path) / CONFIG_NAME).is_file():
            resolved[letter] = str(path)
            continue
        if stand_in is None:
            raise FileNotFoundError(f"adapter {letter}: {path} is not a saved adapter directory (pre-train it first, "
                                    "or pass a stand-in size for a smoke run)")
        seed = sorted(paths).index(letter) + 1
        resolved[letter] = str(save_untrained_adapter(Path(stand_in_root) / f"untrained_{letter}", backbone,
                                                      AdapterConfig.from_dict(dict(stand_in)), seed=seed,
                                                      stands_in_for=str(path)))
        untrained = True
    return resolved, untrained


#: The notebook's parameters for the pipeline's smoke profile (~1-2 min on 2 busy cores) and paper profile.
NOTEBOOK_SMOKE_PARAMETERS = {
    "tasks": ["openentity", "semeval", "cosmosqa"],
    "limits": {"openentity": {"train": 48, "dev": 24, "test": 24}, "semeval": {"train": 48, "dev": 24, "test": 24},
               "cosmosqa": {"train": 16, "dev": 8, "test": 8}},
    "factual_adapter": "{run}/02_adapter_pretraining/factual/adapters/factual",
    "linguistic_adapter": "{run}/02_adapter_pretraining/linguistic/adapters/linguistic",
    "stand_in_adapter": {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
                         "num_transformer_layers": 1},
    "seeds": [0, 1], "epochs": 2, "trained_epochs": 1, "learning_rates": None, "max_length": 64, "device": "cpu",
}
NOTEBOOK_PAPER_PARAMETERS = {
    "backbone": "roberta-large",
    "tasks": ["openentity", "fewrel", "cosmosqa"],
    "limits": {},
    "factual_adapter": "{run}/02_adapter_pretraining/factual/adapters/factual",
    "linguistic_adapter": "{run}/02_adapter_pretraining/linguistic/adapters/linguistic",
    "stand_in_adapter": None,
    "seeds": [0, 1, 2], "epochs": 10, "trained_epochs": 3, "max_length": 256, "device": "cuda",
    "trained_backbone_combinations": ["", "F", "F+L"], "backbone_learning_rate": 1e-5,
}
