"""Frozen features at the predicting positions (shared by the masked and the causal probe), the probe output, and the
general-English corpus probe heads are trained on.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .. import __version__
from ..config import write_json

BACKBONE_SOURCE = "backbone"  # key of the backbone's last hidden state among the feature sources


# =====================================================================================================================
# Features at masked positions
# =====================================================================================================================
@dataclass
class MaskedFeatures:
    """Frozen features at masked positions: what probe heads train and predict on.

    ``sources[BACKBONE_SOURCE]`` is the backbone's last hidden state, ``sources[name]`` adapter ``name``'s output,
    each (N, hidden); ``labels`` the gold token ids (N,); ``groups`` which sentence / fact each row comes from.
    """

    sources: dict[str, torch.Tensor]
    labels: torch.Tensor
    groups: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, rows: torch.Tensor | Sequence[int]) -> "MaskedFeatures":
        rows = torch.as_tensor(rows, dtype=torch.long)
        return MaskedFeatures({k: v[rows] for k, v in self.sources.items()}, self.labels[rows], self.groups[rows])

    def split_by_group(self, dev_fraction: float, seed: int = 0) -> tuple["MaskedFeatures", "MaskedFeatures"]:
        """Train/dev split by whole sentences (no sentence has masked tokens on both sides)."""
        groups = sorted(set(self.groups.tolist()))
        random.Random(seed).shuffle(groups)
        dev_groups = set(groups[:max(1, round(dev_fraction * len(groups)))])
        is_dev = torch.tensor([g in dev_groups for g in self.groups.tolist()])
        return self.subset(torch.nonzero(~is_dev).flatten()), self.subset(torch.nonzero(is_dev).flatten())



class LearnedPartGates(torch.nn.Module):
    """One gate per adapter that adds its **learned part** ``ℓ_i`` to the probe's input as it is:
    ``fused + Σ_i g_i·ℓ_i``, every ``g_i`` zero at start (every variant starts as the backbone).

    Why (issue 17): a probe head trained on general text moves its fusion's weight matrix too little to pass on an
    adapter's knowledge that only matters on the facts — a positive control that holds its facts read as the backbone
    — while one scalar per adapter is learned within the budget, so the head reads whatever an adapter wrote into
    the hidden space. The gate is reparametrised ``g = SCALE·γ``: under Adam (steps of ~lr whatever the gradient's
    scale) it then moves ``SCALE`` times faster than the fusion's weights and can reach 1 within tens of steps (Gemma,
    1,400 facts, 112 probe steps at lr 1e-3: the control's gate reached 0.68 with ``SCALE`` 30 and 0.89 with 100,
    ΔP@1 +0.071 and +0.101; ``benchmarks/README.md``).
    An adapter whose learned part does not help the probe's objective keeps its gate near 0; an untrained adapter's
    learned part is ~0 whatever its gate.
    """

    SCALE = 100.0

    def __init__(self, adapter_names: Sequence[str]):
        super().__init__()
        self.adapter_names = list(adapter_names)
        self.raw = torch.nn.Parameter(torch.zeros(len(self.adapter_names)))

    def values(self) -> dict[str, float]:
        return {n: float(g) * self.SCALE for n, g in zip(self.adapter_names, self.raw.detach())}

    def forward(self, fused: torch.Tensor, adapter_states) -> torch.Tensor:
        for gate, name in zip(self.raw, self.adapter_names):
            fused = fused + self.SCALE * gate * adapter_states[name].to(fused.dtype)
        return fused


@dataclass
class ProbeOutput:
    logits: torch.Tensor  # (positions, vocabulary)
    loss: torch.Tensor | None = None


PROBE_CONFIG_NAME = "probe_config.json"
PROBE_WEIGHTS_NAME = "probe.safetensors"


def adapter_identities(model, adapter_names: Sequence[str]) -> dict[str, dict]:
    """What each adapter a probe reads is: its config and its weights fingerprint. Recorded when the probe is built
    (the adapters stay frozen while probes train) and checked when it is loaded over a model."""
    from ..backbone import weights_fingerprint

    return {name: {"config": model.adapters[name].config.to_dict(),
                   "weights_fingerprint": weights_fingerprint(model.adapters[name])} for name in adapter_names}


def save_probe(probe: torch.nn.Module, directory, config: dict):
    """A probe directory, whatever its kind: probe_config.json (``config``, the identity of every adapter the probe
    reads and the library version) and probe.safetensors (its state dict)."""
    identities = getattr(probe, "adapter_identities", None)
    if identities is None and probe.adapter_names:
        raise ValueError("this probe records no identity of the adapters it reads: build it with build_probe / "
                         "build_causal_probe (which record them), so that loading can check them")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from ..safe_files import save_safetensors

    save_safetensors({k: v.detach().contiguous().cpu() for k, v in probe.state_dict().items()},
                     directory / PROBE_WEIGHTS_NAME)
    write_json(directory / PROBE_CONFIG_NAME, {"kadapter_version": __version__, **config,
                                               "adapters": identities or {}})
    return directory


def _adapter_differences(saved: dict, now: dict) -> list[str]:
    """How an adapter differs from the one a probe was trained over (fields free to change left out)."""
    from ..adapter import FREE_FIELDS

    saved_config, now_config = saved.get("config") or {}, now["config"]
    diff = [f"{field}: probe trained over {saved_config.get(field)!r}, model has {now_config.get(field)!r}"
            for field in sorted(set(saved_config) | set(now_config))
            if field not in FREE_FIELDS and saved_config.get(field) != now_config.get(field)]
    if saved.get("weights_fingerprint") != now["weights_fingerprint"]:
        diff.append(f"weights: fingerprint {saved.get('weights_fingerprint')!r} when the probe was trained, "
                    f"{now['weights_fingerprint']!r} now")
    return diff


def read_probe_config(directory, model, required: Sequence[str]) -> dict:
    """A saved probe's config, checked against ``model``: the same backbone and every adapter the probe reads, each
    the very adapter (config and weights) it was trained over."""
    from ..config import BackboneIdentity
    from ..safe_files import DamagedFileError, read_json

    directory = Path(directory)
    config_path = directory / PROBE_CONFIG_NAME
    payload = read_json(config_path, required=("backbone", "adapter_names", *required))
    diff = BackboneIdentity.from_dict(payload["backbone"]).differences(model.identity)
    if diff:
        raise ValueError(f"probe {directory} was trained on a different backbone:\n  " + "\n  ".join(diff))
    missing = [n for n in payload["adapter_names"] if n not in model.adapters]
    if missing:
        raise ValueError(f"probe {directory} reads adapters {missing} that the model does not have")
    recorded = payload.get("adapters")
    if recorded is None:
        if payload["adapter_names"]:
            warnings.warn(f"{config_path} records no adapter identities (saved by an older kadapter): that "
                          f"{payload['adapter_names']} are the adapters it was trained over cannot be checked",
                          stacklevel=3)
        return payload
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(n), dict)
                                                 for n in payload["adapter_names"]):
        raise DamagedFileError(config_path, "field 'adapters': an identity for every adapter in 'adapter_names' "
                                            "expected")
    now = adapter_identities(model, payload["adapter_names"])
    for name in payload["adapter_names"]:
        diff = _adapter_differences(recorded[name], now[name])
        if diff:
            raise ValueError(f"probe {directory} was trained over another adapter {name!r} than the model's:\n  "
                             + "\n  ".join(diff))
    return payload


def load_probe_weights(probe: torch.nn.Module, directory):
    """Load probe.safetensors into ``probe`` strictly (every difference named)."""
    from ..adapter import load_state_strict
    from ..safe_files import load_safetensors

    weights = Path(directory) / PROBE_WEIGHTS_NAME
    load_state_strict(probe, load_safetensors(weights)[0], weights)
    return probe



# =====================================================================================================================
# The probe-head training corpus
# =====================================================================================================================
CORPUS_SOURCES = {
    "ud_ewt_train": "Universal Dependencies English Web Treebank v2.16, train sentences (web text)",
    "semeval_train": "SemEval-2010 Task 8 training sentences (entity markers removed)",
}


def general_corpus(num_sentences: int | None = None, sources: Sequence[str] = ("ud_ewt_train", "semeval_train"),
                   seed: int = 0, min_words: int = 4) -> tuple[list[str], dict]:
    """General English sentences for probe-head training: not LAMA evidence, not Wikipedia fact sentences.

    Sentences of fewer than ``min_words`` words are left out (counted), the rest shuffled with ``seed`` and the first
    ``num_sentences`` (all if None) returned with a description of what was used.
    """
    texts, counts, short = [], {}, 0
    for source in sources:
        if source == "ud_ewt_train":
            from data_prep.dependency import load_ud_ewt

            word_lists = load_ud_ewt("train")[0]["words"]
        elif source == "semeval_train":
            from data_prep.eval_sets import load_semeval2010

            word_lists = load_semeval2010("train")[0]["tokens"]
        else:
            raise ValueError(f"unknown corpus source {source!r}; known: {sorted(CORPUS_SOURCES)}")
        sentences = [" ".join(words) for words in word_lists if len(words) >= min_words]
        short += len(word_lists) - len(sentences)
        counts[source] = len(sentences)
        texts.extend(sentences)
    random.Random(seed).shuffle(texts)
    chosen = texts if num_sentences is None else texts[:num_sentences]
    return chosen, {"sources": {s: CORPUS_SOURCES[s] for s in sources}, "available": counts,
                    "skipped_shorter_than_min_words": short, "min_words": min_words,
                    "used": len(chosen), "shuffle_seed": seed}
