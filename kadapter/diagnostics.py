"""Adapter diagnostics: how far training moved an adapter, how much of its output is its own, and capacity controls.

A K-Adapter layer returns ``x + up_project(...)``, and each layer's ``x`` is the tapped hidden state plus the
previous layer's output, so an adapter's output is **the sum of its tapped states** (RMS-normalised on a causal LM)
**plus its learned part** ``Σ up_project(...)``. At initialisation (projections of std 0.0002) the learned part is
almost nothing: a "w/o knowledge" twin drawn like that is in effect a taps-only control. Three numbers say what an
adapter is:

- **optimizer steps** it was trained for;
- **relative distance from its initialisation** ``‖θ − θ₀‖ / ‖θ₀‖`` over all its parameters, θ₀ being the init draw
  (reproducible from the recorded init seed: :func:`init_draw`);
- **learned share** of its output on given inputs: ``‖Σ up_project(…)‖ / ‖output‖`` per token (mean and max).

:func:`norm_matched_twin` draws the capacity control that has capacity: the same architecture, random weights, each
tensor scaled to the trained adapter's norm of that tensor (no knowledge, the trained adapter's magnitudes).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from .adapter import KnowledgeAdapter
from .config import AdapterConfig, BackboneIdentity

# Below this relative distance from its initialisation an adapter has "hardly moved": its training changed less than
# 1% of its weights' norm (the inner transformer layers dominate θ₀'s norm, so the projections can be near their
# std-0.0002 start while this number is small; the learned share says the rest).
HARDLY_MOVED = 0.01
NORM_MATCHED_SUFFIX = "_norm_matched"


class AdapterHardlyMovedWarning(UserWarning):
    """An adapter is almost where its initialisation put it: whatever it is compared with, it holds little."""


def init_draw(config: AdapterConfig, identity: BackboneIdentity, seed: int, kind=None) -> KnowledgeAdapter:
    """The adapter's initial weights as training drew them: a fresh :class:`KnowledgeAdapter` under ``seed`` (the
    seed pre-training records per adapter), without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return KnowledgeAdapter(config, identity, kind=kind)


@torch.no_grad()
def distance_from_init(adapter: KnowledgeAdapter, init_seed: int) -> dict:
    """``‖θ − θ₀‖ / ‖θ₀‖`` over every parameter (θ₀: :func:`init_draw` under ``init_seed``), and per tensor."""
    start = init_draw(adapter.config, adapter.backbone, init_seed).state_dict()
    moved, base, per_tensor = 0.0, 0.0, {}
    for name, value in adapter.state_dict().items():
        delta = (value.float().cpu() - start[name].float()).pow(2).sum().item()
        norm = start[name].float().pow(2).sum().item()
        moved, base = moved + delta, base + norm
        per_tensor[name] = (delta ** 0.5) / (norm ** 0.5) if norm > 0 else (float("inf") if delta > 0 else 0.0)
    return {"relative_distance": (moved ** 0.5) / (base ** 0.5), "init_seed": int(init_seed),
            "per_tensor": per_tensor}


@torch.no_grad()
def learned_share(adapter: KnowledgeAdapter, features, rows: torch.Tensor | None = None,
                  cols: torch.Tensor | None = None) -> dict:
    """``‖Σ up_project(…)‖ / ‖output‖`` per token on ``features`` (:class:`~kadapter.backbone.BackboneFeatures`),
    at (rows, cols) when given (e.g. the probe's predicting positions), else at every real token: mean and max.
    The learned part is collected with hooks on every ``up_project``, so it is exact whatever the taps add
    (:meth:`KnowledgeAdapter.forward_with_learned_part`)."""
    was_training = adapter.training
    adapter.eval()
    try:
        output, learned = adapter.forward_with_learned_part(features.hidden_states, features.attention_mask)
    finally:
        adapter.train(was_training)
    if rows is None:
        rows, cols = torch.nonzero(features.attention_mask.bool(), as_tuple=True)
    ratio = learned[rows, cols].float().norm(dim=-1) / output[rows, cols].float().norm(dim=-1).clamp_min(1e-12)
    return {"mean": float(ratio.mean()), "max": float(ratio.max()), "tokens": int(ratio.numel())}


def adapter_diagnostics(adapter: KnowledgeAdapter, *, steps: int | None, init_seed: int | None,
                        features=None, rows=None, cols=None, name: str = "adapter", warn: bool = True) -> dict:
    """Steps, relative distance from the init draw and (with ``features``) the learned share of the output; a
    :class:`AdapterHardlyMovedWarning` (and ``hardly_moved: True``) when the distance is below
    :data:`HARDLY_MOVED`. ``init_seed`` None: the distance is unknown (reported as None)."""
    out = {"optimizer_steps": steps, "init_seed": init_seed, "relative_distance_from_init": None,
           "learned_share": None, "learned_share_max": None, "hardly_moved": None}
    if init_seed is not None:
        out["relative_distance_from_init"] = distance_from_init(adapter, init_seed)["relative_distance"]
        out["hardly_moved"] = out["relative_distance_from_init"] < HARDLY_MOVED
    if features is not None:
        share = learned_share(adapter, features, rows, cols)
        out["learned_share"], out["learned_share_max"] = share["mean"], share["max"]
    if warn and out["hardly_moved"]:
        warnings.warn(hardly_moved_message(name, out), AdapterHardlyMovedWarning, stacklevel=2)
    return out


def hardly_moved_message(name: str, diagnostics: dict) -> str:
    return (f"adapter {name!r} has hardly moved from its initialisation: ‖θ − θ₀‖/‖θ₀‖ = "
            f"{diagnostics['relative_distance_from_init']:.4f} after {diagnostics['optimizer_steps']} optimizer "
            f"steps (below {HARDLY_MOVED}); compared with its random twin it can hold little — train it longer")


@torch.no_grad()
def norm_matched_twin(adapter: KnowledgeAdapter, seed: int = 0) -> KnowledgeAdapter:
    """A random adapter of ``adapter``'s architecture whose every tensor has the trained tensor's norm.

    Weight matrices and biases: a standard normal draw scaled to the trained tensor's Frobenius norm; LayerNorm
    gains: constant (a LayerNorm's gain is a scale, not a direction) at the trained gain's RMS, so the norm matches
    too. Nothing of the trained weights but their norms is kept: same capacity and magnitudes, no knowledge."""
    with torch.random.fork_rng(devices=[]):  # the draw below is the twin's; leave the global random state alone
        twin = KnowledgeAdapter(adapter.config, adapter.backbone)
    generator = torch.Generator().manual_seed(seed)
    trained = adapter.state_dict()
    for name, param in twin.named_parameters():
        target = trained[name].float().norm()
        if _is_layer_norm_gain(twin, name):
            param.fill_(float(target) / param.numel() ** 0.5)
            continue
        draw = torch.randn(param.shape, generator=generator)
        param.copy_(draw * (target / draw.norm().clamp_min(1e-12)))
    return twin.to(next(adapter.parameters()).device)


def _is_layer_norm_gain(module: torch.nn.Module, name: str) -> bool:
    owner, _, leaf = name.rpartition(".")
    return leaf == "weight" and isinstance(module.get_submodule(owner), torch.nn.LayerNorm)


def norms_by_tensor(adapter: KnowledgeAdapter) -> dict[str, float]:
    return {name: float(value.float().norm()) for name, value in adapter.state_dict().items()}


def diagnostics_rows(entries: dict[str, dict]) -> list[dict]:
    """Table rows (name -> :func:`adapter_diagnostics` output) for notebooks."""
    return [{"adapter": name, "optimizer steps": d.get("optimizer_steps"), "init seed": d.get("init_seed"),
             "‖θ−θ₀‖/‖θ₀‖": d.get("relative_distance_from_init"), "learned share (mean)": d.get("learned_share"),
             "learned share (max)": d.get("learned_share_max"),
             "warning": hardly_moved_message(name, d) if d.get("hardly_moved") else ""}
            for name, d in entries.items()]


def warn_hardly_moved(entries: dict[str, dict], names: Sequence[str] | None = None) -> list[str]:
    """The hardly-moved messages of ``entries`` (all, or ``names``), also raised as warnings."""
    messages = [hardly_moved_message(n, d) for n, d in entries.items()
                if (names is None or n in names) and d.get("hardly_moved")]
    for message in messages:
        warnings.warn(message, AdapterHardlyMovedWarning, stacklevel=2)
    return messages


def recorded_training(adapter_dir) -> dict:
    """``{optimizer_steps, init_seed}`` as a trained adapter's folder records them (its ``adapter_config.json``
    metadata, written by pre-training and by the positive control); None where an older adapter did not record it."""
    from pathlib import Path

    from .safe_files import read_json

    adapter_dir = Path(adapter_dir)
    metadata = read_json(adapter_dir / "adapter_config.json").get("metadata", {})
    # an adapter saved before it carried these: its pre-training results.json (<run>/adapters/<name>/ -> <run>/)
    results = adapter_dir.resolve().parent.parent / "results.json"
    entry = read_json(results).get("models", {}).get(adapter_dir.name, {}) if results.is_file() else {}
    steps = metadata.get("optimizer_steps", (entry.get("diagnostics") or {}).get("optimizer_steps"))
    seed = metadata.get("init_seed", entry.get("seed"))
    return {"optimizer_steps": steps, "init_seed": seed}


def adapters_report(model, training: dict[str, dict], features=None, rows=None, cols=None,
                    trained: Sequence[str] = ()) -> dict[str, dict]:
    """:func:`adapter_diagnostics` of every adapter attached to ``model`` (``training[name]``: its
    ``optimizer_steps`` and ``init_seed``, missing: unknown), the learned share measured on ``features`` at
    (rows, cols) — the probe's inputs; only the adapters named in ``trained`` warn when they have hardly moved (a
    twin is meant to sit at its draw)."""
    report = {}
    for name in model.adapter_names:
        record = training.get(name, {})
        report[name] = adapter_diagnostics(model.adapters[name], steps=record.get("optimizer_steps"),
                                           init_seed=record.get("init_seed"), features=features, rows=rows,
                                           cols=cols, name=name, warn=name in trained)
    return report


def variant_columns(variants: dict[str, Sequence[str]], report: dict[str, dict]) -> dict[str, dict]:
    """Per probe variant (name -> adapters read), the diagnostics of the adapters it reads, for a results table
    (several adapters: their values joined with " / ")."""
    def cell(names, key):
        values = [report[n].get(key) for n in names if n in report]
        if not values:
            return None
        return values[0] if len(values) == 1 else " / ".join("—" if v is None else f"{v:.3g}" for v in values)

    return {variant: {"optimizer steps": cell(names, "optimizer_steps"),
                      "‖θ−θ₀‖/‖θ₀‖": cell(names, "relative_distance_from_init"),
                      "learned share": cell(names, "learned_share")}
            for variant, names in variants.items()}
