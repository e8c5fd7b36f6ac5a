"""The LAMA probe hold-out: which factual pre-training records state a LAMA T-REx probe fact, so that a factual adapter
is never trained on what the probe later asks. The rule (:data:`HOLDOUT_RULE`) is by entity pair: a record is held
out when its subject and object are the two entities of a probe fact, in either order and under any relation.

Records follow :data:`data_prep.records.RC_FIELDS`; :func:`data_prep.factual.build_factual_dataset` applies this.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from .lama import load_trex_evidence, load_trex_facts
from .paths import data_path
from .text import surface_key

QID = re.compile(r"Q\d+")  # a Wikidata entity id


#: The hold-out rule, as the builder's report states it (``holdout["rule"]``).
HOLDOUT_RULE = ("a training example is removed when its subject and object are the two entities of a LAMA T-REx "
                "probe fact (41 relations, 29,411 facts), in either order and under any relation; entities are "
                "compared by Wikidata id where the example has ids, and by case- and tokenisation-insensitive name "
                "always")


@dataclass
class ProbeFacts:
    """The LAMA facts a factual adapter must not be trained on, as the entity pairs they relate.

    The hold-out is by entity pair, not by (relation, subject, object): a sentence that puts a probe fact's two
    entities side by side states that fact, whatever relation it is labelled with ("Phnom Penh, capital of
    Cambodia" labelled P131/P150/P17 while the probe asks P1376 and P36), and the order is free for the same
    reason (P36 asks "capital of Cambodia", P1376 "Phnom Penh is the capital of"). See :data:`HOLDOUT_RULE`.

    ``by_label``: ``(surface_key(entity), surface_key(entity))`` in both orders -> a probe fact's label key
    ``(relation, subject key, object key)``; ``by_id``: ``(QID, QID)`` in both orders, for the facts whose uuid is
    in ``lama/TREx`` (which has Wikidata ids; ``TREx_lms_vocab`` has labels only), -> the same label key.
    ``facts``: every probe fact as ``(relation, subject key, object key)`` and, where known, ``(relation, subject
    QID, object QID)``: what a hold-out by fact would match, kept to count what the pair rule adds.
    """

    by_label: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    by_id: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)
    facts: set[tuple[str, str, str]] = field(default_factory=set)
    n_facts: int = 0

    @classmethod
    def from_lama(cls, relations: Iterable[str] | None = None) -> "ProbeFacts":
        """The template probe (``TREx_lms_vocab``, 41 relations, 29,411 facts), with ids joined in by uuid."""
        facts, _ = load_trex_facts(relations)
        wanted = {f["relation"] for f in facts}
        available = {p.stem for p in data_path("lama", "TREx").glob("*.jsonl")}
        evidence, _ = load_trex_evidence(sorted(wanted & available))
        ids_of = {f["uuid"]: (f["sub_uri"], f["obj_uri"]) for f in evidence}
        probe = cls(n_facts=len(facts))
        for fact in facts:
            subject, obj = surface_key(fact["sub_label"]), surface_key(fact["obj_label"])
            label_key = (fact["relation"], subject, obj)
            _add_both_orders(probe.by_label, subject, obj, label_key)
            probe.facts.add(label_key)
            if fact["uuid"] in ids_of:
                _add_both_orders(probe.by_id, *ids_of[fact["uuid"]], label_key)
                probe.facts.add((fact["relation"], *ids_of[fact["uuid"]]))
        return probe

    @property
    def n_pairs(self) -> int:
        """Distinct entity pairs (either order) of the probe facts, compared by name."""
        return len({frozenset(pair) for pair in self.by_label})

    def match(self, record: dict) -> tuple[str, tuple[str, str, str]] | None:
        """``("id" | "label", a probe fact's label key)`` if the record's subject and object are the entities of a
        probe fact (either order, any relation), else None.

        Ids are compared when the record has Wikidata QIDs for both entities; names (the case-folded,
        tokenisation-independent text of the two spans) are compared always, so a record is held out if it
        matches either way: the probe itself only sees names.
        """
        if QID.fullmatch(record["subj_id"]) and QID.fullmatch(record["obj_id"]):
            key = self.by_id.get((record["subj_id"], record["obj_id"]))
            if key is not None:
                return "id", key
        _, subject, obj = record_label_key(record)
        key = self.by_label.get((subject, obj))
        return ("label", key) if key is not None else None

    def states_same_fact(self, record: dict) -> bool:
        """Whether the record states a probe fact under the probe fact's own relation, in its order."""
        return record_label_key(record) in self.facts or \
            (record["relation"], record["subj_id"], record["obj_id"]) in self.facts


def _add_both_orders(pairs: dict, a: str, b: str, label_key: tuple[str, str, str]) -> None:
    # setdefault: the first probe fact of a pair names it in the report; any of them would do
    pairs.setdefault((a, b), label_key)
    pairs.setdefault((b, a), label_key)


def record_label_key(record: dict) -> tuple[str, str, str]:
    tokens = record["tokens"]
    return (record["relation"], surface_key(tokens[record["subj_start"]:record["subj_end"]]),
            surface_key(tokens[record["obj_start"]:record["obj_end"]]))


def hold_out_probe_facts(records: Iterable[dict], probe: ProbeFacts) -> tuple[list[dict], dict]:
    """Remove every record whose entity pair is a probe fact's (:data:`HOLDOUT_RULE`); report how many, how they
    matched, from which sources, and how many a hold-out by (relation, subject, object) would have kept."""
    kept, by_how, by_source, facts_hit, other_relation = [], Counter(), Counter(), set(), 0
    for record in records:
        hit = probe.match(record)
        if hit is None:
            kept.append(record)
        else:
            by_how[hit[0]] += 1
            by_source[record["source"]] += 1
            facts_hit.add(frozenset(hit[1][1:]))
            other_relation += not probe.states_same_fact(record)
    return kept, {"rule": HOLDOUT_RULE, "probe_facts": probe.n_facts, "probe_entity_pairs": probe.n_pairs,
                  "examples_removed": sum(by_how.values()), "removed_by_id": by_how["id"],
                  "removed_by_label": by_how["label"], "removed_under_another_relation_or_order": other_relation,
                  "removed_per_source": dict(by_source), "probe_entity_pairs_found_in_data": len(facts_hit)}
