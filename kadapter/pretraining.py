"""Adapter pre-training: the factual and linguistic tasks, on a frozen backbone whose features are computed once.

* **factual** — relation classification over aligned text–triples (``data_prep.factual``, LAMA probe facts held
  out): the paper's head reads the fused features at the ``@`` and ``#`` markers; dev metrics micro/macro-F1.
* **linguistic** — dependency-head prediction (``data_prep.dependency``, UD EWT): for every word, which position
  is its head; dev metric unlabelled attachment score (UAS) over words.

:func:`pretrain_adapters` trains one or several adapters on one task — each with its own head and optimizer, from
one backbone pass per batch (feature cache on: one pass for the whole run) — and optionally the *no-adapter
baseline*: the same head on the backbone's features alone (``KAdapterModel`` without adapters passes the backbone
through). It writes each adapter directory (``adapter.save_pretrained``), each model's trainable weights (adapter, fusion,
head) and ``results.json``.
"""
from __future__ import annotations

import json
import shutil
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from torch import nn

from . import metrics as M
from .backbone import BackboneFeatures, extract_features
from .baselines import majority, majority_label
from .cache import CachedCollator, CachedDataset, FeatureCache
from .config import AdapterConfig
from .encoding import PadCollator, encode_dependency_dataset, encode_relation_dataset
from .heads import IGNORE_INDEX, DependencyHeadPredictor, RelationClassificationHead, TaskModel
from .model import KAdapterModel
from .model_card import pretraining_card_metadata
from .safe_files import save_safetensors
from .training import TrainConfig, Trainer, trainable_state

BASELINE = "no_adapter"  # the name under which the head-on-backbone-alone baseline is reported


def random_twin_name(adapter: str) -> str:
    """The name of an adapter's "w/o knowledge" control in pre-training (see ``pretrain_adapters``)."""
    return f"{adapter}_random_frozen"


# -------------------------------------------------------------------------------------------------------- tasks
class FactualTask:
    """Relation classification from the fused features at the subject/object markers."""

    name = "factual"
    metric = "micro_f1"

    def __init__(self, relations: Sequence[str]):
        if len(relations) < 2:
            raise ValueError(f"relation classification needs at least 2 relations, got {list(relations)}")
        self.labels = sorted(relations)
        self.label2id = {r: i for i, r in enumerate(self.labels)}

    @classmethod
    def from_data(cls, data: DatasetDict) -> "FactualTask":
        """Labels: every relation in train or dev (a dev relation missing from a subsampled train set stays a
        class: it can only be missed, and macro-F1 says so)."""
        return cls(sorted(set(data["train"]["relation"]) | set(data["dev"]["relation"])))

    def encode(self, dataset: Dataset, tokenizer, max_length: int, kind=None):
        """The head reads the markers the backbone kind says (closing ones on a causal LM: they saw the entity)."""
        markers = kind.relation_markers if kind is not None else "open"
        return encode_relation_dataset(dataset, tokenizer, max_length, self.label2id, markers=markers)

    def make_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return RelationClassificationHead(hidden_size, len(self.labels), dropout)

    @staticmethod
    def predictions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
        return logits.argmax(-1).tolist(), labels.tolist()

    def score(self, pred: list, gold: list) -> dict:
        out = M.classification_metrics(gold, pred, labels=range(len(self.labels)))
        return {k: out[k] for k in ("accuracy", "micro_f1", "macro_f1", "macro_precision", "macro_recall")}

    def majority_baseline(self, train: Dataset, dev: Dataset) -> dict:
        """Dev metrics of always answering the training set's most frequent relation."""
        label = majority_label(train["labels"])
        return {"prediction": self.labels[label], **self.score([label] * len(dev), list(dev["labels"]))}

    def describe(self) -> dict:
        return {"task": self.name, "num_labels": len(self.labels), "labels": self.labels}


class LinguisticTask:
    """Dependency-head prediction: a score for every (word, candidate head position) pair."""

    name = "linguistic"
    metric = "uas"

    def __init__(self, arc_size: int = 256):
        self.arc_size = arc_size

    @classmethod
    def from_data(cls, data: DatasetDict, **kwargs) -> "LinguisticTask":
        return cls(**kwargs)

    def encode(self, dataset: Dataset, tokenizer, max_length: int, kind=None):
        return encode_dependency_dataset(dataset, tokenizer, max_length)

    def make_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return DependencyHeadPredictor(hidden_size, self.arc_size, dropout)

    @staticmethod
    def predictions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
        scored = labels != IGNORE_INDEX
        return logits.argmax(-1)[scored].tolist(), labels[scored].tolist()

    def score(self, pred: list, gold: list) -> dict:
        out = M.attachment_accuracy(pred, gold)
        return {"uas": out["uas"], "words": out["n"]}

    def majority_baseline(self, train: Dataset, dev: Dataset) -> dict:
        """Dev UAS of attaching every word at the training set's most frequent head offset (head position minus
        word position, in sub-tokens; a head outside the sequence becomes the root position 0)."""
        offsets = [head - i for labels in train["labels"] for i, head in enumerate(labels) if head != IGNORE_INDEX]
        offset = majority(offsets)
        pred, gold = [], []
        for labels in dev["labels"]:
            for i, head in enumerate(labels):
                if head != IGNORE_INDEX:
                    pred.append(i + offset if 0 <= i + offset < len(labels) else 0)
                    gold.append(head)
        return {"prediction": f"head offset {offset:+d}", **self.score(pred, gold)}

    def describe(self) -> dict:
        return {"task": self.name, "arc_size": self.arc_size}


def make_task(kind: str, data: DatasetDict):
    if kind == "factual":
        return FactualTask.from_data(data)
    if kind == "linguistic":
        return LinguisticTask.from_data(data)
    raise ValueError(f"unknown adapter kind {kind!r}: 'factual' or 'linguistic'")


# --------------------------------------------------------------------------------------------------------- data
def subsample(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """`n` examples drawn with `seed` (all when n is None or larger than the dataset)."""
    if n is None or n >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(n))


def load_task_data(kind: str, *, train_examples: int | None = None, dev_examples: int | None = None,
                   seed: int = 0, factual_data_dir: str | Path | None = None,
                   factual_build: dict | None = None) -> tuple[DatasetDict, dict]:
    """The real pre-training data of an adapter kind, optionally subsampled.

    factual: ``data_prep.factual`` (LAMA T-REx evidence, FewRel, Re-DocRED; LAMA probe facts held out unless
    ``factual_build`` says ``hold_out_probe=False``: the paper's condition), built here with ``factual_build``'s
    options or loaded from ``factual_data_dir`` (``save_factual_dataset``); linguistic: UD English EWT train / dev.
    """
    if kind == "factual":
        if factual_data_dir is not None:
            from datasets import load_from_disk

            data = load_from_disk(str(factual_data_dir))
            stats = Path(factual_data_dir) / "factual_stats.json"
            report = json.loads(stats.read_text()) if stats.is_file() else {}
        else:
            from data_prep.factual import build_factual_pretraining_set

            data, report = build_factual_pretraining_set(**{"hold_out_probe": True, **(factual_build or {})})
        # the builder's own record of its option; a saved set without its report leaves it unknown (None)
        held_out = report.get("options", {}).get("hold_out_probe", "holdout" in report) if report else None
        condition = {True: "LAMA probe facts held out", False: "LAMA probe facts NOT held out: the paper's condition",
                     None: "no factual_stats.json: whether LAMA probe facts were held out is unknown"}[held_out]
        report = {"source": f"data_prep.factual ({condition})",
                  "hold_out_probe": held_out,
                  "relations_kept": report.get("relations_kept"), "holdout": report.get("holdout"),
                  "full_train": len(data["train"]), "full_dev": len(data["dev"])}
    elif kind == "linguistic":
        from data_prep.dependency import load_ud_ewt

        (train, train_skips), (dev, dev_skips) = load_ud_ewt("train"), load_ud_ewt("dev")
        data = DatasetDict({"train": train, "dev": dev})
        report = {"source": "UD English EWT v2.16", "full_train": len(train), "full_dev": len(dev),
                  "skipped": {"train": train_skips.to_dict(), "dev": dev_skips.to_dict()}}
    else:
        raise ValueError(f"unknown adapter kind {kind!r}: 'factual' or 'linguistic'")
    data = DatasetDict({"train": subsample(data["train"], train_examples, seed),
                        "dev": subsample(data["dev"], dev_examples, seed)})
    report.update(train=len(data["train"]), dev=len(data["dev"]), subsample_seed=seed)
    return data, report


# --------------------------------------------------------------------------------------------------- features
class SharedBackbonePass:
    """``Trainer.batch_transform`` without a cache: one frozen-backbone pass per batch, shared by every model."""

    def __init__(self, backbone: nn.Module, taps: Sequence[int]):
        self.backbone, self.taps = backbone, tuple(taps)

    def __call__(self, batch: dict) -> dict:
        rest = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
        features = extract_features(self.backbone, batch["input_ids"], batch["attention_mask"],
                                    batch.get("token_type_ids"), self.taps)
        return {"features": features, **rest}


@dataclass
class SplitData:
    """One encoded split and how batches of it are made (from the cache or from token ids)."""

    encoded: Dataset
    dataset: torch.utils.data.Dataset
    collate: object
    cache: FeatureCache | None = None


def prepare_split(encoded: Dataset, encoder: KAdapterModel, taps: Sequence[int], *, max_length: int,
                  use_cache: bool, cache_root, storage_dtype: str, device=None, progress: bool = True) -> SplitData:
    if not use_cache:
        return SplitData(encoded, encoded, PadCollator(encoder.tokenizer.pad_token_id))
    cache = FeatureCache.build(encoder, encoded, tokenizer=encoder.tokenizer, max_length=max_length, taps=taps,
                               root=cache_root, storage_dtype=storage_dtype, device=device, progress=progress)
    return SplitData(encoded, CachedDataset(cache, encoded), CachedCollator(cache), cache)


@torch.no_grad()
def _predict(task, split: SplitData, batch_size: int, model: nn.Module) -> tuple[list, list, float]:
    """Predictions and gold labels over a split, item by item (an example, or a word for dependency heads), and
    the mean loss per example."""
    device = next(p for p in model.parameters() if p.requires_grad).device
    pred, gold, loss, n = [], [], 0.0, 0
    for start in range(0, len(split.dataset), batch_size):
        rows = [split.dataset[i] for i in range(start, min(start + batch_size, len(split.dataset)))]
        batch = _to_device(split.collate(rows), device)
        out = model(**batch)
        p, g = task.predictions(out.logits.float(), batch["labels"])
        pred += p
        gold += g
        loss += out.loss.item() * len(rows)
        n += len(rows)
    return pred, gold, loss / n


def make_evaluator(task, split: SplitData, batch_size: int):
    """``evaluate(model) -> dev metrics`` over a split (cached features or token ids)."""
    def evaluate(model: nn.Module) -> dict:
        pred, gold, loss = _predict(task, split, batch_size, model)
        return {**task.score(pred, gold), "loss": loss}
    return evaluate


def dev_correct(task, split: SplitData, batch_size: int, model: nn.Module) -> list[int]:
    """1/0 per dev item (an example; a word for dependency heads), in the split's order: what paired statistics
    (:func:`kadapter.statistics.compare`) compare model against model on the same items."""
    was_training = model.training
    model.eval()
    pred, gold, _ = _predict(task, split, batch_size, model)
    model.train(was_training)
    return [int(p == g) for p, g in zip(pred, gold)]


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, (torch.Tensor, BackboneFeatures)) else v for k, v in batch.items()}


# ------------------------------------------------------------------------------------------------- pre-training
@dataclass
class PretrainConfig:
    """How adapters are pre-trained (the adapters' own sizes are their ``AdapterConfig``s)."""

    output_dir: str
    max_length: int = 64
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    head_dropout: float = 0.1
    seed: int = 42
    patience: int | None = 2
    use_cache: bool = True  # compute the backbone features once (False: the official recipe, a pass per step)
    storage_dtype: str | None = None  # None: the backbone kind's safe default (float16 encoders, bfloat16 causal)
    cache_root: str | None = None  # default: $KADAPTER_CACHE or ~/.cache/kadapter/features
    device: str | None = None  # None: a GPU when visible; "cpu" forces the CPU
    checkpoint_every: int = 0
    keep_checkpoints: bool = False
    # False: delete this run's backbone feature caches when it has finished (the paper's factual cache is ~11 GB;
    # a rerun then recomputes them). True keeps them for reuse by later runs on the same data.
    keep_feature_cache: bool = True
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes kept in results.json

    def train_config(self, task_metric: str, desc: str = "pre-train") -> TrainConfig:
        return TrainConfig(
            output_dir=str(Path(self.output_dir) / "train"), epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=self.learning_rate, weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio,
            max_grad_norm=self.max_grad_norm, seed=self.seed, metric=task_metric, greater_is_better=True,
            patience=self.patience, checkpoint_every=self.checkpoint_every, cpu=self.device == "cpu",
            progress=self.progress, desc=desc, keep_checkpoints=self.keep_checkpoints)


def _seed_for(seed: int, name: str) -> int:
    """Initialisation seed of one adapter + head: independent of which other adapters train alongside."""
    return seed + zlib.crc32(name.encode()) % 100_000


def build_task_models(encoder: KAdapterModel, task, adapters: Mapping[str, AdapterConfig | None],
                      head_dropout: float, seed: int, twins: Mapping[str, str] | None = None) -> dict[str, TaskModel]:
    """One TaskModel per adapter (``None`` = the no-adapter baseline), all sharing the one frozen backbone.

    ``twins`` (``{twin name: adapter name}``) adds, per named adapter, a model that starts from exactly the same
    draw (adapter, fusion and head) but whose adapter is frozen there: the "w/o knowledge" control.
    """
    models = {}
    twins = dict(twins or {})
    for name, source in twins.items():
        if name in adapters:
            raise ValueError(f"random twin {name!r} has the name of an adapter being trained")
        if adapters.get(source) is None:
            raise ValueError(f"random twin {name!r} copies {source!r}, which is not an adapter being trained")
    for name, source in [(n, n) for n in adapters] + list(twins.items()):
        config = adapters[source]
        torch.manual_seed(_seed_for(seed, source))  # a twin starts from its adapter's draw
        own = KAdapterModel(encoder.backbone, {name: config} if config is not None else None,
                            tokenizer=encoder.tokenizer)
        models[name] = TaskModel(own, task.make_head(encoder.hidden_size, head_dropout))
        if name in twins:
            own.adapters[name].requires_grad_(False)
    return models


def pretrain_adapters(kind: str, data: DatasetDict, adapters: Mapping[str, AdapterConfig | None],
                      config: PretrainConfig, *, encoder: KAdapterModel | None = None,
                      data_report: dict | None = None, random_twins: Sequence[str] = (), step_hook=None) -> dict:
    """Pre-train adapters of one kind (``"factual"`` / ``"linguistic"``) on ``data`` (train/dev records).

    ``adapters``: ``{name: AdapterConfig}``; a ``None`` config trains the same head on the backbone alone (the
    no-adapter baseline). ``random_twins``: adapter names that also get a "w/o knowledge" control, reported as
    ``random_twin_name(name)``: the same architecture and the same initial weights as the adapter (the draw its
    training starts from), kept frozen while its fusion and head train — what the adapter's extra features are
    worth before any knowledge is trained into them. All of them see the same batches, from one backbone pass.
    ``results["baselines"]["majority"]``: the trivial baseline's dev metrics (nothing trained).

    Writes, under ``config.output_dir``: ``adapters/<name>/`` (adapter directories; not for twins),
    ``task_models/<name>.safetensors`` (adapter, fusion and head weights), ``train/metrics.jsonl`` and
    ``results.json``; returns the results.
    """
    if not adapters:
        raise ValueError("name at least one adapter to train (or the no-adapter baseline: {name: None})")
    for split in ("train", "dev"):
        if split not in data or len(data[split]) == 0:
            raise ValueError(f"the {split} split is empty or missing")
    started = time.perf_counter()
    encoder = encoder or KAdapterModel.from_backbone()
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder.to(device)
    task = make_task(kind, data)
    for name in random_twins:
        if adapters.get(name) is None:
            raise ValueError(f"random_twins names {name!r}, which is not one of the adapters being trained "
                             f"({', '.join(n for n, c in adapters.items() if c is not None) or 'none'})")
    twins = {random_twin_name(n): n for n in random_twins}
    resolved = {n: (c.resolved(encoder.identity.num_hidden_layers, encoder.kind.adapter_defaults()) if c is not None else None)
                for n, c in adapters.items()}
    taps = sorted({t for c in resolved.values() if c is not None for t in c.tap_layers})

    timings = {}
    t = time.perf_counter()
    encoded = {s: task.encode(data[s], encoder.tokenizer, config.max_length, kind=encoder.kind)
               for s in ("train", "dev")}
    timings["encode_s"] = time.perf_counter() - t
    t = time.perf_counter()
    splits = {s: prepare_split(encoded[s][0], encoder, taps, max_length=config.max_length,
                               use_cache=config.use_cache, cache_root=config.cache_root,
                               storage_dtype=config.storage_dtype, device=device, progress=config.progress)
              for s in ("train", "dev")}
    timings["cache_s"] = time.perf_counter() - t

    models = build_task_models(encoder, task, resolved, config.head_dropout, config.seed, twins)
    resolved.update({twin: resolved[source] for twin, source in twins.items()})
    evaluators = {name: make_evaluator(task, splits["dev"], 2 * config.batch_size) for name in models}
    shared = None if config.use_cache or len(models) == 1 else SharedBackbonePass(encoder.backbone, taps)
    trainer = Trainer(models, splits["train"].dataset, config.train_config(task.metric, f"pre-train {task.name}"),
                      collate_fn=splits["train"].collate, evaluate=evaluators, batch_transform=shared,
                      step_hook=step_hook)
    t = time.perf_counter()
    summary = trainer.fit()
    timings["train_s"] = time.perf_counter() - t

    out = Path(config.output_dir)
    results = {
        "kind": kind, **task.describe(), "metric": task.metric,
        "backbone": encoder.identity.to_dict(),
        "data": {**(data_report or {}), "train": len(data["train"]), "dev": len(data["dev"]),
                 "encoding": {s: encoded[s][1].to_dict() for s in encoded}},
        "config": {k: v for k, v in asdict(config).items()},
        "backbone_kind": encoder.kind.name,
        "cache": {s: ({"path": str(sp.cache.path), "hit": sp.cache.hit, "bytes": sp.cache.nbytes,
                       "storage_dtype": sp.cache.key["storage_dtype"],
                       "build_s": sp.cache.meta.get("seconds")} if sp.cache else None) for s, sp in splits.items()},
        "steps": summary["steps"], "epochs_run": summary["epochs_run"], "models": {},
        "baselines": {"majority": task.majority_baseline(encoded["train"][0], encoded["dev"][0])},
    }
    for name, model in models.items():
        model = trainer.unwrapped(name)
        run = summary["runs"][name]
        best = next((h for h in run["history"] if h["epoch"] == run["best_epoch"]), None)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        entry = {"adapter": resolved[name].to_dict() if resolved[name] is not None else None,
                 "trainable_parameters": params, "seed": _seed_for(config.seed, twins.get(name, name)),
                 "knowledge": "none (random, frozen)" if name in twins else ("—" if resolved[name] is None
                                                                           else "trained here"),
                 "best_epoch": run["best_epoch"], "dev": best, "history": run["history"],
                 "stopped_early": run["stopped"],
                 # per dev item at the kept (best-epoch) weights: the paired comparisons' input
                 "dev_correct": dev_correct(task, splits["dev"], 2 * config.batch_size, model)}
        if resolved[name] is not None:  # steps, distance from the init draw, learned share on dev inputs
            entry["diagnostics"] = _diagnostics(model.encoder.adapters[name], name, entry["seed"], run, trainer,
                                                splits["dev"], frozen=name in twins)
        if trainer.is_main:
            if resolved[name] is not None and name not in twins:  # a twin is its adapter's initial draw
                adapter = model.encoder.adapters[name]
                diagnostics = entry["diagnostics"]
                entry["adapter_dir"] = str(adapter.save_pretrained(
                    out / "adapters" / name, **pretraining_card_metadata(results, config, summary, name, twins),
                    init_seed=entry["seed"], optimizer_steps=diagnostics["optimizer_steps"],
                    relative_distance_from_init=diagnostics["relative_distance_from_init"]))
            # adapter + fusion + head: everything needed to re-run this model's dev evaluation
            (out / "task_models").mkdir(parents=True, exist_ok=True)
            save_safetensors({k: v.contiguous() for k, v in trainable_state(model).items()},
                             out / "task_models" / f"{name}.safetensors")
        results["models"][name] = entry
    timings["total_s"] = time.perf_counter() - started
    results["timings"] = {k: round(v, 3) for k, v in timings.items()}
    if trainer.is_main:
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        if not config.keep_checkpoints:
            for path in (out / "train").glob("*.pt"):
                path.unlink()
        if not config.keep_feature_cache:
            for split in splits.values():
                if split.cache is not None:
                    shutil.rmtree(split.cache.path, ignore_errors=True)
    return results


def _diagnostics(adapter, name: str, init_seed: int, run: dict, trainer: Trainer, dev: SplitData,
                 frozen: bool) -> dict:
    """:func:`kadapter.diagnostics.adapter_diagnostics` of a pre-trained adapter: the optimizer steps behind its
    kept (best-epoch) weights, its distance from the init draw, the learned share of its output on the first dev
    batch; a frozen twin took no step (and is not warned about: it is meant to be its init draw)."""
    from .diagnostics import adapter_diagnostics

    epochs = run["best_epoch"] + 1 if run["best_epoch"] is not None else len(run["history"])
    steps = 0 if frozen else trainer.steps_per_epoch * epochs
    rows = [dev.dataset[i] for i in range(min(32, len(dev.dataset)))]
    batch = dev.collate(rows)
    device = next(adapter.parameters()).device
    features = batch.get("features")
    if features is None:
        features = extract_features(trainer.unwrapped(name).encoder.backbone, batch["input_ids"].to(device),
                                    batch["attention_mask"].to(device), layers=adapter.tap_layers)
    out = adapter_diagnostics(adapter, steps=steps, init_seed=init_seed, features=features.to(device),
                              name=name, warn=not frozen)
    out["optimizer_steps_run"] = 0 if frozen else trainer.steps_per_epoch * len(run["history"])
    return out


def dev_table(results: dict) -> list[dict]:
    """One row per trained model (its dev metrics at the best epoch), then the trivial baselines."""
    rows = []
    for name, entry in results["models"].items():
        dev = entry["dev"] or {}
        diagnostics = entry.get("diagnostics") or {}
        rows.append({"model": name, "knowledge": entry.get("knowledge", "—"),
                     "trainable_parameters": entry["trainable_parameters"],
                     "best_epoch": entry["best_epoch"], **{k: v for k, v in dev.items() if k != "epoch"},
                     "optimizer steps": diagnostics.get("optimizer_steps"),
                     "‖θ−θ₀‖/‖θ₀‖": diagnostics.get("relative_distance_from_init"),
                     "learned share": diagnostics.get("learned_share")})
    for name, metrics in results.get("baselines", {}).items():  # trivial baselines: nothing trained
        rows.append({"model": name, "knowledge": "—", "trainable_parameters": 0, "best_epoch": None,
                     **{k: v for k, v in metrics.items() if k != "prediction"}})
    return rows
