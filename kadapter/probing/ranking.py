"""Ranking answers and scoring LAMA: ranks of the gold object, the majority-object baseline, metrics per relation and
macro over relations, the same for every kind of probe.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np
import torch

from ..metrics import macro_average, metrics_from_ranks, rank_of_gold
from .features import MaskedFeatures
from .vocabulary import CandidateVocabulary


@torch.no_grad()
def rank_answers(probe, features: MaskedFeatures, vocabulary: CandidateVocabulary,
                 top: int = 10, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each gold token among the candidates (1 = best; ties count in the gold's favour, as
    :func:`kadapter.metrics.rank_of_gold`), and the ``top`` best candidate token ids per row."""
    probe.eval()
    candidates = torch.tensor(vocabulary.token_ids)
    decoder = probe.head.decoder(candidates.to(probe.device))  # gathered once, not per batch
    ranks, tops = [], []
    for start in range(0, len(features), batch_size):
        batch = features.subset(range(start, min(start + batch_size, len(features))))
        scores = probe(probe.inputs(batch.sources), decoder=decoder).logits.float().cpu()
        gold = [vocabulary.index(int(t)) for t in batch.labels]
        ranks.append(rank_of_gold(scores, gold))
        tops.append(candidates[scores.topk(min(top, len(candidates)), dim=-1).indices].numpy())
    return np.concatenate(ranks), np.concatenate(tops)


def typed_ranks(probe, features: MaskedFeatures, facts: Sequence[dict],
                batch_size: int = 512) -> np.ndarray:
    """Rank of each gold object among *its relation's* objects only (the distinct gold tokens of that relation's
    facts), a much easier "typed" probe: the candidates the majority-object baseline also ranks over."""
    ranks = np.zeros(len(facts), dtype=int)
    rows_of: dict[str, list[int]] = {}
    for i, fact in enumerate(facts):
        rows_of.setdefault(fact["relation"], []).append(i)
    for relation, rows in rows_of.items():
        ids = sorted({facts[i]["gold_id"] for i in rows})
        vocabulary = CandidateVocabulary(ids, f"gold objects of {relation}", len(ids), {})
        ranks[rows], _ = rank_answers(probe, features.subset(rows), vocabulary, top=1, batch_size=batch_size)
    return ranks


def majority_ranks(facts: Sequence[dict]) -> np.ndarray:
    """The majority-object baseline as a ranking: per relation, objects ordered by how often they are the answer
    among ``facts`` (ties: alphabetically); each fact's rank is its object's place. Its P@1 is "always answer the
    relation's most frequent object"."""
    by_relation: dict[str, Counter] = {}
    for fact in facts:
        by_relation.setdefault(fact["relation"], Counter())[fact["obj_label"]] += 1
    place = {rel: {obj: i + 1 for i, (obj, _) in enumerate(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))}
             for rel, c in by_relation.items()}
    return np.array([place[f["relation"]][f["obj_label"]] for f in facts], dtype=int)


def metrics_by_relation(facts: Sequence[dict], ranks: np.ndarray) -> dict:
    """Per-relation P@1/P@10/MRR/n and their macro average (unweighted over relations, as LAMA reports)."""
    rows: dict[str, list[int]] = {}
    for fact, rank in zip(facts, ranks):
        rows.setdefault(fact["relation"], []).append(int(rank))
    per_relation = {rel: metrics_from_ranks(r) for rel, r in sorted(rows.items())}
    return {"per_relation": per_relation, "macro": macro_average(per_relation)}



def _fact_counts(facts: Sequence[dict]) -> dict:
    per_relation = Counter(f["relation"] for f in facts)
    return {"total": len(facts), "per_relation": dict(sorted(per_relation.items()))}


def score_lama(probes: Mapping, kept: Sequence[dict], features: MaskedFeatures, vocabulary: CandidateVocabulary,
               tokenizer, *, selection: Mapping | None = None, held_out: Mapping | None = None,
               subsets: Mapping[str, set[str]] | None = None, typed: bool = True) -> dict:
    """Rank every probe's answers for the kept facts (rows of ``features`` follow ``kept``) and score them: the
    JSON-ready result of :func:`kadapter.probing.lama_probe` (masked) and :func:`kadapter.probing.causal_lama_probe`.
    A probe is anything with ``adapter_names``, ``recipe``, ``inputs``, ``head.decoder`` and a forward taking
    ``decoder=`` (both probe kinds)."""
    ranks, top1, typed_rank = {}, {}, {}
    for name, probe in probes.items():
        ranks[name], tops = rank_answers(probe, features, vocabulary)
        top1[name] = tops[:, 0]
        if typed:
            typed_rank[name] = typed_ranks(probe, features, kept)
    majority = majority_ranks(kept)

    def score(rows: list[int]) -> dict:
        chosen = [kept[i] for i in rows]
        scored = {"facts": _fact_counts(chosen),
                  "models": {n: metrics_by_relation(chosen, r[rows]) for n, r in ranks.items()},
                  "majority": metrics_by_relation(chosen, majority[rows])}
        if typed:
            scored["typed"] = {"models": {n: metrics_by_relation(chosen, r[rows]) for n, r in typed_rank.items()}}
        return scored

    everything = score(list(range(len(kept))))
    result = {"vocabulary": vocabulary.to_dict(), "selection": dict(selection or {}), "facts": everything["facts"],
              "held_out": dict(held_out or {}), "models": everything["models"], "majority": everything["majority"],
              "probes": {n: {"adapter_names": p.adapter_names, "recipe": p.recipe} for n, p in probes.items()},
              "subsets": {}}
    if typed:
        result["typed"] = {**everything["typed"], "candidates": "per relation: the distinct gold objects of its "
                           "kept facts (the majority-object baseline ranks over the same set)"}
    for subset, uuids in (subsets or {}).items():
        rows = [i for i, f in enumerate(kept) if f["uuid"] in uuids]
        if rows:
            result["subsets"][subset] = score(rows)
    decode = tokenizer.convert_ids_to_tokens
    result["predictions"] = [
        {"uuid": f["uuid"], "relation": f["relation"], "sub_label": f["sub_label"], "obj_label": f["obj_label"],
         "gold_token": decode(f["gold_id"]), "majority_rank": int(majority[i]),
         "rank": {n: int(r[i]) for n, r in ranks.items()},
         **({"typed_rank": {n: int(r[i]) for n, r in typed_rank.items()}} if typed else {}),
         "top1": {n: decode(int(t[i])) for n, t in top1.items()}}
        for i, f in enumerate(kept)]
    return result
