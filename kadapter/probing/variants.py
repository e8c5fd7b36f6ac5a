"""Variants compared by a probe (adapter combinations and their "w/o knowledge" twins), training the probes of every
variant side by side, and saving / loading a set of probes.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from ..config import write_json
from ..model import KAdapterModel
from ..training import TrainConfig, train
from .features import MaskedFeatures


class _Rows(torch.utils.data.Dataset):
    """Row indices of a :class:`MaskedFeatures` as a map-style dataset (the trainer batches indices)."""

    def __init__(self, n: int, data: MaskedFeatures | None = None):
        self.n, self.data = n, data

    def __len__(self) -> int:
        return self.n

    def fingerprint(self) -> str:
        """What the rows point at (labels, groups, every source's features): a resume checks it."""
        from ..training import data_fingerprint

        if self.data is None:
            return data_fingerprint(list(range(self.n)))
        return data_fingerprint([self.data.labels, self.data.groups, self.data.sources])

    def __getitem__(self, i: int) -> int:
        return i


def train_probes(probes: Mapping[str, torch.nn.Module], data: MaskedFeatures, config: TrainConfig,
                 dev: MaskedFeatures | None = None, evaluate: Callable | None = None) -> dict:
    """Train several probes side by side on the same cached masked-token features: the same batches in the same
    order (drawn from ``config.seed``), the same optimiser and schedule (:class:`kadapter.training.Trainer`).

    Only each probe's fusion and head train, with the probe's own loss (masked-LM cross-entropy over the full
    vocabulary; next-token cross-entropy over the training vocabulary for a causal probe); the backbone and adapters
    are not even run. With ``dev``, ``evaluate(probe, dev)`` (default: masked-token accuracy) is logged after every
    epoch. The last
    weights are kept (no selection on dev), so every probe gets exactly the same number of steps.
    """
    if config.metric is not None:
        raise ValueError("probe heads are compared after the same number of steps: leave TrainConfig.metric None")

    def collate(rows: list[int]) -> dict:
        batch = data.subset(rows)
        return {"sources": batch.sources, "labels": batch.labels}

    if evaluate is None:
        from .masked import masked_token_accuracy as evaluate
    on_dev = (lambda probe: evaluate(probe, dev)) if dev is not None else None
    summary = train(dict(probes), _Rows(len(data), data), config, collate_fn=collate, evaluate=on_dev)
    for probe in probes.values():
        probe.eval()
        probe.recipe["training"] = {k: v for k, v in asdict(config).items()
                                    if k not in ("output_dir", "progress", "resume", "cpu", "log_every")}
    return summary


def seed_name(variant: str, seed: int) -> str:
    return f"{variant} | seed {seed}"


def train_variants(model: KAdapterModel, variants: Mapping[str, Sequence[str]], data: MaskedFeatures, *,
                   seeds: Sequence[int], config: TrainConfig, dev: MaskedFeatures | None = None,
                   fusion: str | None = None, recipe: dict | None = None, build: Callable | None = None,
                   evaluate: Callable | None = None
                   ) -> tuple[dict[str, torch.nn.Module], dict[str, list[str]], dict[int, dict]]:
    """The probe-head recipe for every variant (name -> adapters read) and seed.

    Per seed, a fresh probe per variant (fusion and head initialised from the seed) and all of them trained side by
    side on the same batches (``config.seed`` = the seed; checkpoints in ``config.output_dir/seed_<seed>``).
    Returns the probes (named :func:`seed_name`), each variant's probe names, and the training summary per seed.
    ``build(model, adapter_names, seed=, fusion=, recipe=)`` makes one probe (default: the masked-LM probe,
    :func:`kadapter.probing.masked.build_probe`; a causal LM: :func:`kadapter.probing.causal.build_causal_probe`).
    """
    if build is None:
        from .masked import build_probe as build
    probes, by_variant, summaries = {}, {v: [] for v in variants}, {}
    for seed in seeds:
        batch = {seed_name(v, seed): build(model, names, seed=seed, fusion=fusion, recipe=recipe)
                 for v, names in variants.items()}
        seed_config = TrainConfig(**{**asdict(config), "seed": seed,
                                     "output_dir": str(Path(config.output_dir) / f"seed_{seed}")})
        summaries[seed] = train_probes(batch, data, seed_config, dev=dev, evaluate=evaluate)
        probes.update(batch)
        for v in variants:
            by_variant[v].append(seed_name(v, seed))
    return probes, by_variant, summaries



# =====================================================================================================================
# Adapter combinations, "w/o knowledge" controls, and saving a set of probes
# =====================================================================================================================
CONTROL_SUFFIX = "_wo_knowledge"


def add_control_adapter(model: KAdapterModel, name: str, seed: int = 0) -> str:
    """Attach a "w/o knowledge" twin of adapter ``name``: the same config, freshly initialised
    (:meth:`KnowledgeAdapter.reset_parameters`, where knowledge pre-training starts) under ``seed``; pass the
    pre-training seed to get exactly its starting point. Returns the twin's name (``name + CONTROL_SUFFIX``)."""
    from ..adapter import KnowledgeAdapter

    trained = model.adapters[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        control = KnowledgeAdapter(trained.config, model.identity)
    twin = name + CONTROL_SUFFIX
    model.add_adapter(twin, control)
    return twin


def add_norm_matched_adapter(model: KAdapterModel, name: str, seed: int = 0) -> str:
    """Attach the capacity control that has capacity: a random adapter of ``name``'s architecture whose every tensor
    has the trained tensor's norm (:func:`kadapter.diagnostics.norm_matched_twin`). Returns its name
    (``name + NORM_MATCHED_SUFFIX``)."""
    from ..diagnostics import NORM_MATCHED_SUFFIX, norm_matched_twin

    twin = name + NORM_MATCHED_SUFFIX
    model.add_adapter(twin, norm_matched_twin(model.adapters[name], seed=seed))
    return twin


NORM_MATCHED_ROW = " (norm-matched random)"


def add_norm_matched_rows(model: KAdapterModel, variants: Mapping[str, Sequence[str]], seed: int = 0
                          ) -> dict[str, list[str]]:
    """``variants`` plus, for every knowledge row ("+X", not a control "+X (…)"), its norm-matched random twin row
    ("+X (norm-matched random)"), attaching the twin of every adapter those rows read (once each)."""
    from ..diagnostics import NORM_MATCHED_SUFFIX

    out = {k: list(v) for k, v in variants.items()}
    for variant, names in variants.items():
        if not variant.startswith("+") or " (" in variant or not names:
            continue
        for name in names:
            if name + NORM_MATCHED_SUFFIX not in model.adapters:
                add_norm_matched_adapter(model, name, seed=seed)
        out[variant + NORM_MATCHED_ROW] = [n + NORM_MATCHED_SUFFIX for n in names]
    return out


def probe_variants(adapter_names: Sequence[str], combinations: Sequence[Sequence[str]] | None = None,
                   controls: bool = True, norm_matched: bool = False) -> dict[str, list[str]]:
    """Display name -> adapters read, for the backbone alone, each combination and (with ``controls``) each
    combination's "w/o knowledge" twin (the init draw) and (with ``norm_matched``) its norm-matched random twin
    (:func:`add_norm_matched_adapter`). Default combinations: every single adapter, then all together."""
    from ..diagnostics import NORM_MATCHED_SUFFIX

    if combinations is None:
        combinations = [[n] for n in adapter_names] + ([list(adapter_names)] if len(adapter_names) > 1 else [])
    variants = {"backbone": []}
    for combo in combinations:
        variants["+" + "+".join(combo)] = list(combo)
    if controls:
        for combo in combinations:
            variants["+" + "+".join(combo) + " (w/o knowledge)"] = [n + CONTROL_SUFFIX for n in combo]
    if norm_matched:
        for combo in combinations:
            variants["+" + "+".join(combo) + NORM_MATCHED_ROW] = [n + NORM_MATCHED_SUFFIX for n in combo]
    return variants


def save_probe_set(model: KAdapterModel, probes: Mapping[str, torch.nn.Module], directory: str | Path) -> Path:
    """The model with every adapter the probes read (controls included) and each probe in its own folder; each
    probe's kind ("masked" or "causal") is recorded so :func:`load_probe_set` rebuilds the right class."""
    directory = Path(directory)
    model.save_pretrained(directory / "model")
    names, kinds = {}, {}
    for i, (name, probe) in enumerate(probes.items()):
        probe.save_pretrained(directory / "probes" / f"{i:02d}")
        names[f"{i:02d}"] = name
        kinds[f"{i:02d}"] = getattr(probe, "kind", "masked")
    write_json(directory / "probes.json", {"probes": names, "kinds": kinds})
    return directory


def load_probe_set(directory: str | Path, backbone=None) -> tuple[KAdapterModel, dict[str, torch.nn.Module]]:
    """Inverse of :func:`save_probe_set` (the backbone is reloaded from its saved name/path unless given)."""
    from .causal import CausalLMProbe
    from .masked import MaskedLMProbe

    from ..safe_files import DamagedFileError, check_name, read_json

    classes = {"masked": MaskedLMProbe, "causal": CausalLMProbe}
    directory = Path(directory)
    listing_path = directory / "probes.json"
    listing = read_json(listing_path, required=("probes",))
    kinds = listing.get("kinds", {})
    if not isinstance(listing["probes"], dict) or not isinstance(kinds, dict):
        raise DamagedFileError(listing_path, "fields 'probes' and 'kinds' must map probe folders to names and kinds")
    for folder in listing["probes"]:  # folder names, never paths: probes load from probes/<folder> only
        check_name(folder, what="probe folder", source=listing_path, field=f"probes.{folder}")
        if kinds.get(folder, "masked") not in classes:
            raise DamagedFileError(listing_path, f"field 'kinds.{folder}': {kinds[folder]!r} is not a probe kind "
                                                 f"({', '.join(classes)})")
    model = KAdapterModel.from_pretrained(directory / "model", backbone=backbone)
    return model, {name: classes[kinds.get(folder, "masked")].from_pretrained(directory / "probes" / folder, model)
                   for folder, name in listing["probes"].items()}
