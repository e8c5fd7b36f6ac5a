"""The positive control: an adapter that certainly holds the probed facts, probed like every other variant.

Without it, "the factual adapter adds no knowledge the probe can read" cannot be told apart from "the probe cannot
read adapters". The control is an adapter of the factual adapter's architecture and size, trained on the frozen
backbone with the **backbone's own objective** through the **backbone's own head**, frozen, reading ``h + ℓ`` — the
next token for a causal LM (its tied LM head), the masked token for an encoder (its MLM head; for one that ships
none, MiniLM, the head the probe recipe trains on the backbone alone, which every probe then starts from) — on
**statements of the probed facts** (each LAMA template filled with its subject and object:
"Dante was born in Florence ."; the object token is exactly the one the probe asks for), mixed with the general
sentences the probe heads train on, so that its output means the same thing on any text. The adapter then goes
through exactly the probe recipe of every other variant (a probe started from that same head, trained on general text
only, never on the facts). Its row is named :data:`POSITIVE_CONTROL_ROW` everywhere.

The kind-specific parts (which sequences, which positions are labelled, where the backbone's states come from, which
head trains the adapter) come from the probe recipe (:mod:`kadapter.probing.recipes`); the loop here is shared.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..adapter import KnowledgeAdapter
from ..config import AdapterConfig, write_json
from ..model import KAdapterModel
from ..training import TrainConfig, Trainer
from .features import BACKBONE_SOURCE
from .positive_control_data import IGNORE, StatementSet, statement_text  # noqa: F401 (re-exported)

POSITIVE_CONTROL = "positive_control"  # the adapter's name on the model
POSITIVE_CONTROL_ROW = "positive control"  # its row in every table and in results.json
class StatementObjective(nn.Module):
    """The adapter being trained and the head of the backbone's own objective, read at the labelled positions."""

    def __init__(self, adapter: KnowledgeAdapter, head: nn.Module, name: str):
        super().__init__()
        self.adapter, self.head, self.name = adapter, head, name

    def adapter_output(self, features) -> torch.Tensor:
        """The adapter's learned part: what every probe reads of an adapter."""
        return self.adapter.learned_part(features.hidden_states, features.attention_mask)

    def forward(self, features, rows, cols, labels=None):
        out = self.adapter_output(features)[rows, cols]
        sources = {BACKBONE_SOURCE: features.last_hidden_state[rows, cols].float(), self.name: out.float()}
        return self.head(sources, labels=labels)


@torch.no_grad()
def statement_accuracy(objective: StatementObjective, data: StatementSet, candidates: Sequence[int],
                       batch_size: int = 64) -> dict[str, float]:
    """How many fact statements the adapter + its training head complete with the right object (top-1 among the
    ranking candidates): the memorisation the positive control is meant to have."""
    objective.eval()
    ids = torch.tensor(sorted(set(int(c) for c in candidates)))
    hits = 0
    for start in range(0, data.statements, batch_size):
        indices = list(range(start, min(start + batch_size, data.statements)))
        batch = data.collate(indices)
        fact_rows = _object_positions(data, indices, batch)
        features = batch["features"]
        out = objective.adapter_output(features)[batch["rows"], batch["cols"]]
        sources = {BACKBONE_SOURCE: features.last_hidden_state[batch["rows"], batch["cols"]].float(),
                   objective.name: out.float()}
        logits = objective.head(sources, token_ids=ids).logits[fact_rows]
        gold = torch.tensor([data.facts[i]["gold_id"] for i in indices])
        hits += int((ids[logits.argmax(-1)] == gold).sum())
    objective.train()
    return {"statement_p@1": hits / max(1, data.statements), "statements": float(data.statements)}


def _object_positions(data: StatementSet, indices: Sequence[int], batch: dict) -> torch.Tensor:
    """Which labelled rows of a batch of statements predict the object (the one whose label is the gold id)."""
    picks = []
    for row, i in enumerate(indices):
        gold = data.facts[i]["gold_id"]
        at = torch.nonzero((batch["rows"] == row) & (batch["labels"] == gold)).flatten()
        picks.append(int(at[-1]))  # the object is the last labelled occurrence of its token in its statement
    return torch.tensor(picks, dtype=torch.long)


def train_positive_control(model: KAdapterModel, adapter_config: AdapterConfig, facts: Sequence[dict],
                           texts: Sequence[str], *, output_dir: str | Path, candidates=None, epochs: int = 10,
                           learning_rate: float = 1e-3, batch_size: int = 32, seed: int = 0, max_length: int = 64,
                           cache_root: str | Path | None = None, name: str = POSITIVE_CONTROL,
                           statement_repeats: int = 1, head_training: dict | None = None, recipe=None,
                           progress: bool = False) -> dict:
    """Train the positive-control adapter on ``facts`` (LAMA facts) stated as sentences, mixed with ``texts``
    (general sentences, e.g. the probe corpus), attach it to ``model`` as ``name`` and save it under
    ``output_dir/adapters/<name>`` with a ``results.json`` in the layout of adapter pre-training (its init seed,
    optimizer steps, distance from the initialisation), which is also returned.

    ``adapter_config``: the factual adapter's (same architecture and size). ``candidates``: the probe's ranking
    vocabulary (default: LAMA's common vocabulary ∩ the model's). Only facts whose object is one candidate token are
    stated (the ones the probe can score); the count and what was skipped are reported.
    """
    from ..diagnostics import adapter_diagnostics, init_draw
    from .recipes import probe_recipe
    from .vocabulary import candidate_vocabulary

    started = time.perf_counter()
    recipe = recipe or probe_recipe(model)
    candidates = candidates or candidate_vocabulary(model.tokenizer)
    kept, selection = recipe.statement_facts(model, facts, candidates)
    if not kept:
        raise ValueError(f"no fact can be stated with a single-token object among the candidates: {selection}")
    # the factual adapter's architecture and size, trained without dropout: it is meant to memorise its facts
    resolved = replace(adapter_config, dropout=0.0, attention_dropout=0.0).resolved(
        model.identity.num_hidden_layers, model.kind.adapter_defaults())
    adapter = init_draw(resolved, model.identity, seed, kind=model.kind)
    model.add_adapter(name, adapter)
    data = recipe.statement_set(model, kept, texts, taps=adapter.tap_layers, max_length=max_length,
                                cache_root=cache_root)
    data.statement_repeats = statement_repeats
    labels = sorted({t for row in data.labels for t in row if t != IGNORE})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = recipe.objective_head(model, [name], labels, candidates, seed=seed, texts=texts,
                                     head_training=head_training, output_dir=Path(output_dir) / "head",
                                     cache_root=cache_root)
    objective = StatementObjective(adapter, head, name)
    out = Path(output_dir)
    config = TrainConfig(output_dir=str(out / "train"), epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, weight_decay=0.0, warmup_ratio=0.06, seed=seed, cpu=True,
                         progress=progress, resume=False, desc=f"positive control ({recipe.kind})")
    evaluate = lambda m: statement_accuracy(m, data, candidates.token_ids)  # noqa: E731
    trainer = Trainer({name: objective}, data, config, collate_fn=data.collate, evaluate=evaluate)
    summary = trainer.fit()
    adapter = trainer.unwrapped(name).adapter
    adapter.eval()
    adapter.requires_grad_(False)
    model.adapters[name] = adapter
    diagnostics = adapter_diagnostics(adapter, steps=summary["steps"], init_seed=seed)
    history = summary["runs"][name]["history"]
    adapter_dir = adapter.save_pretrained(out / "adapters" / name, task="positive control",
                                          optimizer_steps=summary["steps"], init_seed=seed)
    results = {
        "kind": "positive_control", "objective": recipe.objective_description,
        "backbone": model.identity.to_dict(), "adapter": resolved.to_dict(),
        "data": {"statements": data.statements, "general_sentences": len(data) - data.statements,
                 "skipped": data.skipped,
                 "selection": {k: v for k, v in selection.items() if k != "per_relation"},
                 "relations": sorted({f["relation"] for f in kept}),
                 "examples": [statement_text(f) for f in kept[:5]]},
        "head": head.recipe["head"],  # the head it was trained through (the probes' start)
        "training": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                     "statement_repeats": statement_repeats,
                     "positions_per_epoch": sum(len([t for t in r if t != IGNORE]) for r in data.labels)},
        "steps": summary["steps"],
        "models": {name: {"seed": seed, "adapter_dir": str(adapter_dir), "knowledge": "the probed facts, stated",
                          "history": history, "statement_p@1": history[-1]["statement_p@1"] if history else None,
                          "diagnostics": diagnostics}},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "results.json", json.loads(json.dumps(results, default=str)))
    return results


def add_positive_control(model: KAdapterModel, variants: dict[str, Sequence[str]], facts: Sequence[dict],
                         texts: Sequence[str], *, adapter_config: AdapterConfig, output_dir: str | Path,
                         controls: bool = True, seed: int = 0, **options) -> tuple[dict, dict, dict]:
    """Train the positive control (:func:`train_positive_control`, ``options`` passed on), attach it — and with
    ``controls`` its init-draw and norm-matched random twins — and add their rows to ``variants``. Returns
    (variants, the control's results, ``{adapter: {optimizer_steps, init_seed}}`` for the diagnostics)."""
    from .variants import NORM_MATCHED_ROW, add_control_adapter, add_norm_matched_adapter

    report = train_positive_control(model, adapter_config, facts, texts, output_dir=output_dir, seed=seed, **options)
    variants = {**variants, POSITIVE_CONTROL_ROW: [POSITIVE_CONTROL]}
    training = {POSITIVE_CONTROL: {"optimizer_steps": report["steps"], "init_seed": seed}}
    if controls:
        twin = add_control_adapter(model, POSITIVE_CONTROL, seed=seed)
        variants[f"{POSITIVE_CONTROL_ROW} (w/o knowledge)"] = [twin]
        training[twin] = {"optimizer_steps": 0, "init_seed": seed}
        variants[POSITIVE_CONTROL_ROW + NORM_MATCHED_ROW] = [add_norm_matched_adapter(model, POSITIVE_CONTROL,
                                                                                      seed=seed + 1)]
    return variants, report, training
