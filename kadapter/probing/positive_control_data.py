"""What the positive control trains on and what the diagnostics read, per kind of backbone (the probe recipes in
:mod:`kadapter.probing.recipes` call these; nothing else asks which kind a backbone is).

- causal LM: ``<bos>`` + each fact's prefix, every position labelled with the next token, the last one with the
  object (exactly what the probe asks); the general sentences as the probe corpus tokenizes them. States come from :class:`~kadapter.probing.states.CausalStates` (cached on disk: the
  general sentences' states are the probe corpus's, computed once for both).
- encoder: each filled template with its object replaced by the mask token, labelled there only; the general
  sentences masked BERT-style (15%, 80/10/10, fixed seed). States come from one live frozen pass per batch.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import torch

from ..backbone import BackboneFeatures, extract_features
from ..model import KAdapterModel
from .vocabulary import CandidateVocabulary

IGNORE = -100


def statement_text(fact: dict) -> str:
    """The fact as a sentence: its template filled with subject and object ("Dante was born in Florence .")."""
    return fact["template"].replace("[X]", fact["sub_label"]).replace("[Y]", fact["obj_label"])


class StatementSet(torch.utils.data.Dataset):
    """Token sequences with a label per position (``IGNORE`` where none) and how to get their backbone features.

    ``features(indices)`` returns right-padded :class:`~kadapter.backbone.BackboneFeatures` of those sequences (a
    causal LM: read from cached states; an encoder: one live frozen pass). ``statements`` counts the leading
    sequences that are fact statements (the rest is general text)."""

    def __init__(self, sequences: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], features,
                 statements: int, facts: Sequence[dict]):
        if len(sequences) != len(labels):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} label rows")
        self.sequences, self.labels, self.features = list(sequences), list(labels), features
        self.statements, self.facts = statements, list(facts)
        self.skipped: dict[str, int] = {}  # what was left out, and why (counted, never silent)
        self.statement_repeats = 1  # each statement this many times per epoch (the general sentences once)

    def __len__(self) -> int:
        return len(self.sequences) + self.statements * (self.statement_repeats - 1)

    def __getitem__(self, i: int) -> int:
        """The sequence behind the i-th item of an epoch: the statements' repeats first, then the general text."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        repeated = self.statements * self.statement_repeats
        return i % self.statements if i < repeated else i - repeated + self.statements

    def fingerprint(self) -> str:
        from ..training import data_fingerprint

        return data_fingerprint([self.sequences, self.labels])

    def collate(self, indices: Sequence[int]) -> dict:
        indices = [int(i) for i in indices]
        features = self.features(indices)
        width = features.attention_mask.shape[1]
        labels = torch.full((len(indices), width), IGNORE, dtype=torch.long)
        for row, i in enumerate(indices):
            labels[row, :len(self.labels[i])] = torch.tensor(self.labels[i], dtype=torch.long)
        rows, cols = torch.nonzero(labels != IGNORE, as_tuple=True)
        return {"features": features, "rows": rows, "cols": cols, "labels": labels[rows, cols]}


def _pad_to(features: BackboneFeatures, width: int) -> BackboneFeatures:
    """Right-pad features with zeros (padding) to ``width`` positions."""
    extra = width - features.attention_mask.shape[1]
    if extra <= 0:
        return features
    pad = lambda t: torch.nn.functional.pad(t, (0, 0, 0, extra))  # noqa: E731
    return BackboneFeatures({k: pad(v) for k, v in features.hidden_states.items()}, pad(features.last_hidden_state),
                            torch.nn.functional.pad(features.attention_mask, (0, extra)))


def _concat(parts: Sequence[BackboneFeatures]) -> BackboneFeatures:
    width = max(p.attention_mask.shape[1] for p in parts)
    parts = [_pad_to(p, width) for p in parts]
    return BackboneFeatures({k: torch.cat([p.hidden_states[k] for p in parts]) for k in parts[0].hidden_states},
                            torch.cat([p.last_hidden_state for p in parts]),
                            torch.cat([p.attention_mask for p in parts]))


def _select(features: BackboneFeatures, order: Sequence[int]) -> BackboneFeatures:
    order = torch.as_tensor(list(order), dtype=torch.long)
    return BackboneFeatures({k: v[order] for k, v in features.hidden_states.items()}, features.last_hidden_state[order],
                            features.attention_mask[order])


# =====================================================================================================================
# Causal LMs
# =====================================================================================================================
def causal_statement_set(model: KAdapterModel, facts: Sequence[dict], texts: Sequence[str], *, taps: Sequence[int],
                         max_length: int = 64, cache_root: str | Path | None = None) -> StatementSet:
    from .causal import prefix_ids
    from .states import CausalStates

    tokenizer = model.tokenizer
    # <bos> + prefix, its last position labelled with the object: the statement's next-token objective without the
    # position after the object, and the very sequences the LAMA probe asks (one cache of states for both)
    statements = [prefix_ids(tokenizer, f["prefix"]) for f in facts]
    general = [s for s in (prefix_ids(tokenizer, t)[:max_length] for t in texts) if len(s) >= 2]
    # the probe corpus's taps: every attached adapter's, so the general sentences' states are one cache for both
    all_taps = sorted(set(taps) | set(model.tap_layers))
    sources = [CausalStates.build(model.backbone, seqs, pad_id=tokenizer.pad_token_id, taps=all_taps,
                                  root=cache_root, desc=desc)
               for seqs, desc in ((statements, "LAMA prefix states"), (general, "training-text states"))
               if seqs]
    n_statements = len(statements)

    def features(indices: Sequence[int]) -> BackboneFeatures:
        first = [i for i in indices if i < n_statements]
        second = [i - n_statements for i in indices if i >= n_statements]
        parts, order = [], []
        if first:
            parts.append(sources[0].features(first))
        if second:
            parts.append(sources[-1].features(second))
        merged = _concat(parts)
        # back to the order asked for: statements came first in `merged`
        position = {i: k for k, i in enumerate([i for i in indices if i < n_statements]
                                               + [i for i in indices if i >= n_statements])}
        order = [position[i] for i in indices]
        return _select(merged, order)

    sequences = statements + general
    # a statement labels only its object (as the masked recipe's): the prompt's own next tokens are the backbone's
    # job, and labelling them left the objects 7% of the labelled positions (Gemma, 1,400 facts + 400 sentences: the
    # control held 40% of its facts, the backbone's own head 32%); a general sentence labels every next token
    labels = ([[IGNORE] * (len(s) - 1) + [f["gold_id"]] for s, f in zip(statements, facts)]
              + [list(s[1:]) + [IGNORE] for s in general])
    return StatementSet(sequences, labels, features, n_statements, facts)


def causal_prompt_features(model: KAdapterModel, facts: Sequence[dict], candidates: CandidateVocabulary, *,
                           taps: Sequence[int], cache_root: str | Path | None = None
                           ) -> tuple[BackboneFeatures, torch.Tensor, torch.Tensor]:
    """Features of the LAMA prompts (``<bos>`` + prefix) of the askable facts, and the predicting positions."""
    from .causal import fact_states, prefix_facts
    from .vocabulary import select_facts

    prompts, _ = prefix_facts(facts)
    kept, _ = select_facts([{**p, "_row": i} for i, p in enumerate(prompts)], model.tokenizer, candidates)
    # the states of every askable prompt, as causal_lama_probe computes them: one cache for both
    states = fact_states(model, prompts, sorted(set(taps) | set(model.tap_layers)), states_root=cache_root)
    features = states.features([f["_row"] for f in kept])
    lengths = features.attention_mask.sum(-1)
    return features, torch.arange(len(kept)), lengths - 1


# =====================================================================================================================
# Encoders
# =====================================================================================================================
def _live_features(model: KAdapterModel, sequences: Sequence[Sequence[int]], taps: Sequence[int],
                   batch_size: int = 64):
    """One frozen pass over every sequence (batched), kept in memory per sequence: every epoch reads them back (the
    sets here are a few hundred sentences), right-padded per requested batch."""
    from .masked import pad_batch

    device = next(model.backbone.parameters()).device
    kept: list[BackboneFeatures] = []
    for start in range(0, len(sequences), batch_size):
        chunk = [sequences[i] for i in range(start, min(start + batch_size, len(sequences)))]
        ids, mask = pad_batch(chunk, model.tokenizer.pad_token_id)
        out = extract_features(model.backbone, ids.to(device), mask.to(device), layers=list(taps),
                               kind=model.kind).to("cpu")
        for row, seq in enumerate(chunk):
            n = len(seq)
            kept.append(BackboneFeatures({t: h[row:row + 1, :n] for t, h in out.hidden_states.items()},
                                         out.last_hidden_state[row:row + 1, :n], out.attention_mask[row:row + 1, :n]))

    def features(indices: Sequence[int]) -> BackboneFeatures:
        return _concat([kept[i] for i in indices])

    return features


def _masked_statements(model: KAdapterModel, facts: Sequence[dict]) -> tuple[list[list[int]], list[list[int]]]:
    from data_prep.lama import fill_template

    from .masked import encode_cloze

    sequences, labels = [], []
    for fact in facts:
        ids, position = encode_cloze(model.tokenizer, fill_template(fact["template"], fact["sub_label"]))
        row = [IGNORE] * len(ids)
        row[position] = fact["gold_id"]
        sequences.append(ids)
        labels.append(row)
    return sequences, labels


def masked_statement_set(model: KAdapterModel, facts: Sequence[dict], texts: Sequence[str], *, taps: Sequence[int],
                         max_length: int = 64, cache_root: str | Path | None = None, masking_seed: int = 0,
                         mask_prob: float = 0.15) -> StatementSet:
    from .masked import mask_tokens

    tokenizer = model.tokenizer
    sequences, labels = _masked_statements(model, facts)
    generator = random.Random(masking_seed)
    unmasked = 0
    for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"] if texts else []:
        inputs, row = mask_tokens(ids, tokenizer, generator, mask_prob)
        if any(t != IGNORE for t in row):
            sequences.append(inputs)
            labels.append(row)
        else:  # nothing to predict in it (as the probe corpus, which keeps no position of it either)
            unmasked += 1
    data = StatementSet(sequences, labels, _live_features(model, sequences, taps), len(facts), facts)
    data.skipped = {"general sentences in which no token was masked": unmasked} if unmasked else {}
    return data


def masked_prompt_features(model: KAdapterModel, facts: Sequence[dict], candidates: CandidateVocabulary, *,
                           taps: Sequence[int]) -> tuple[BackboneFeatures, torch.Tensor, torch.Tensor]:
    """Features of the LAMA cloze statements of the facts the probe keeps, and the mask positions."""
    from .vocabulary import select_facts

    kept, _ = select_facts(facts, model.tokenizer, candidates)
    sequences, labels = _masked_statements(model, kept)
    features = _live_features(model, sequences, taps)(range(len(sequences)))
    cols = torch.tensor([row.index(next(t for t in row if t != IGNORE)) for row in labels])
    return features, torch.arange(len(kept)), cols
