"""Aligning knowledge-base triples with text, T-REx style, and the sentence-level record they produce.

The factual adapter learns from sentences in which a Wikidata fact is expressed. T-REx found them by linking entity
mentions in Wikipedia text to Wikidata and keeping every sentence that holds both entities of a triple. This module
does the same with plain string matching, so that every step can be read and measured:

1. :func:`~data_prep.text.simple_tokenize` splits raw text into word-level tokens (wherever text comes
   untokenised; re-exported here).
2. :class:`SurfaceMatcher` finds mentions of entities (by label and aliases) in tokenised sentences. It compares
   runs of whole tokens with whitespace removed (:func:`~data_prep.text.squash`), so ``"U.S."`` matches the token
   ``U.S.`` as well as the tokens ``U . S .``, ``"Convention People's Party"`` matches ``Convention People 's
   Party``, and a mention may end before a possessive inside a token (``Schneider's``). A case-insensitive match
   is taken only where case carries no signal (see :meth:`SurfaceMatcher.case_insensitive_ok`). Mentions never
   overlap: exact-case matches are placed first, longest first, then case-insensitive ones in the gaps.
3. :func:`align_document` emits one record for every triple whose subject and object are both mentioned in one
   sentence.
4. :func:`evaluate_alignment` runs this on Re-DocRED, whose gold mention positions the aligner never sees, and
   reports precision and recall.

Records follow the project's one relation-classification schema, :data:`data_prep.records.RC_FIELDS`
(``RECORD_FIELDS`` here): ``{id, tokens, subj_start, subj_end, obj_start, obj_end, relation, subj_id, obj_id,
source}`` with end-exclusive token spans. The schema, :func:`make_record` and :func:`insert_markers` live in
:mod:`data_prep.records` and are re-exported here.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .records import (OBJ_MARKER, RC_FIELDS, SUBJ_MARKER, check_spans, insert_markers,  # noqa: F401 (re-exported)
                      make_record)
from .text import simple_tokenize, squash, surface_key  # noqa: F401 (re-exported)

#: The record schema, kept under its first name; defined in :mod:`data_prep.records`.
RECORD_FIELDS = RC_FIELDS

# ----------------------------------------------------------------------------------------------------------------
# Mention matching
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """A knowledge-base entity: an id (a Wikidata QID or a document-local id), a label and aliases."""

    id: str
    label: str
    aliases: tuple[str, ...] = ()

    @property
    def surfaces(self) -> tuple[str, ...]:
        return (self.label, *self.aliases)


@dataclass(frozen=True)
class Triple:
    relation: str
    subj_id: str
    obj_id: str


@dataclass(frozen=True)
class Mention:
    """A found span ``[start, end)`` of sentence ``sent_id`` that names every entity in ``entity_ids``."""

    sent_id: int
    start: int
    end: int
    entity_ids: tuple[str, ...]
    exact_case: bool


def _possessive_base(token: str) -> str | None:
    """``Schneider's`` -> ``Schneider`` (a mention may end inside a token before a possessive), else None."""
    for tail in ("'s", "'S", "'"):
        if token.endswith(tail) and len(token) > len(tail):
            return token[: -len(tail)]
    return None


class SurfaceMatcher:
    """Finds mentions of a fixed set of entities in tokenised sentences by their labels and aliases."""

    def __init__(self, entities: Iterable[Entity], *, case_insensitive: bool = True):
        self.case_insensitive = case_insensitive
        self.exact: dict[str, set[str]] = defaultdict(set)
        self.folded: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for entity in entities:
            for surface in entity.surfaces:
                key = squash(surface)
                if key:
                    self.exact[key].add(entity.id)
                    self.folded[key.casefold()][surface].add(entity.id)
        # Every case-folded prefix of a key: a run of tokens that is not one cannot grow into a match.
        self.prefixes = {key[:i] for key in self.folded for i in range(1, len(key) + 1)}

    @staticmethod
    def case_insensitive_ok(surface: str, text: str) -> bool:
        """May ``surface`` name ``text`` when they differ only in case?

        Yes when capitalisation carries no signal: "the Beatles" for "The Beatles", "PARIS" for "Paris". No for short
        all-capital acronyms ("US" is not "us", "WHO" not "who") and no when a capitalised name would match
        all-lower-case text ("apple" is not "Apple", "american" not "American").
        """
        letters = [c for c in surface if c.isalpha()]
        if letters and all(c.isupper() for c in letters) and len(letters) <= 5:
            return False
        surface_has_capitals = any(c.isupper() for c in surface)
        text_has_capitals = any(c.isupper() for c in text)
        return text_has_capitals or not surface_has_capitals

    def find(self, tokens: Sequence[str], sent_id: int = 0) -> list[Mention]:
        """Non-overlapping mentions in one sentence: exact-case matches first, then case-insensitive ones; within
        each, longer (in characters) before shorter, then left to right. Exact first because a case-insensitive
        hit is the weaker evidence: "lake Saimaa" should not hide an exact "Saimaa"."""
        squashed = [squash(t) for t in tokens]
        candidates = []  # (characters, exact, start token, end token, entity ids)
        for start, first in enumerate(squashed):
            if not first or first[0].casefold() not in self.prefixes:
                continue  # a whitespace token never starts a mention
            text = ""
            for last in range(start, len(tokens)):
                if not squashed[last]:
                    continue  # nor ends one
                key = text + squashed[last]
                found = self._lookup(key, tokens[start:last + 1])
                if not found and key[-1] in "'sS":
                    base = _possessive_base(squashed[last])
                    key = text + base if base else ""
                    found = self._lookup(key, tokens[start:last + 1]) if key else None
                if found:
                    exact, ids = found
                    candidates.append((len(key), exact, start, last + 1, ids))
                text += squashed[last]
                if text.casefold() not in self.prefixes:
                    break
        candidates.sort(key=lambda c: (not c[1], -c[0], c[2]))
        taken = [False] * len(tokens)
        mentions = []
        for _, exact, start, end, ids in candidates:
            if any(taken[start:end]):
                continue
            taken[start:end] = [True] * (end - start)
            mentions.append(Mention(sent_id, start, end, ids, exact))
        return sorted(mentions, key=lambda m: m.start)

    def _lookup(self, key: str, span: Sequence[str]) -> tuple[bool, tuple[str, ...]] | None:
        """(exact case?, entity ids) for a squashed span, or None."""
        if key.casefold() not in self.folded:
            return None
        if key in self.exact:
            return True, tuple(sorted(self.exact[key]))
        if self.case_insensitive:
            ids = self._case_insensitive_ids(key, " ".join(span))
            if ids:
                return False, ids
        return None

    def _case_insensitive_ids(self, key: str, text: str) -> tuple[str, ...]:
        by_surface = self.folded.get(key.casefold())
        if not by_surface:
            return ()
        ids = {i for surface, found in by_surface.items() if self.case_insensitive_ok(surface, text) for i in found}
        return tuple(sorted(ids))


# ----------------------------------------------------------------------------------------------------------------
# The aligner
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Alignment:
    """What the aligner found in one document: the records, the sentence each came from, and all mentions."""

    records: list[dict] = field(default_factory=list)
    record_sentences: list[int] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)


def align_document(sentences: Sequence[Sequence[str]], matcher: SurfaceMatcher, triples: Iterable[Triple],
                   source: str, doc_id: str = "") -> Alignment:
    """Sentence-level records for every triple whose subject and object are both mentioned in one sentence.

    When a sentence mentions an entity more than once, the closest subject–object pair is used. A span that names
    both the subject and the object (an ambiguous surface) is never used for both. Record ids are
    ``"{doc_id}:s{sentence}:t{triple}"`` (``doc_id`` defaults to ``source``; ``triple`` is the triple's index in
    ``triples``): the same input always gives the same ids.
    """
    by_subject: dict[str, list[tuple[int, Triple]]] = defaultdict(list)
    for k, triple in enumerate(triples):
        if triple.subj_id != triple.obj_id:
            by_subject[triple.subj_id].append((k, triple))
    found = Alignment()
    for sent_id, tokens in enumerate(sentences):
        mentions = matcher.find(tokens, sent_id)
        found.mentions.extend(mentions)
        spans_of: dict[str, list[Mention]] = defaultdict(list)
        for m in mentions:
            for entity_id in m.entity_ids:
                spans_of[entity_id].append(m)
        for subj_id in [e for e in spans_of if e in by_subject]:
            for k, triple in by_subject[subj_id]:
                pair = _closest_pair(spans_of[subj_id], spans_of.get(triple.obj_id, []))
                if pair is not None:
                    s, o = pair
                    found.records.append(make_record(tokens, (s.start, s.end), (o.start, o.end), triple.relation,
                                                     triple.subj_id, triple.obj_id, source,
                                                     id=f"{doc_id or source}:s{sent_id}:t{k}"))
                    found.record_sentences.append(sent_id)
    return found


def _closest_pair(subj: list[Mention], obj: list[Mention]) -> tuple[Mention, Mention] | None:
    pairs = [(max(s.start, o.start) - min(s.end, o.end), s.start, o.start, s, o)
             for s in subj for o in obj if s is not o]
    if not pairs:
        return None
    _, _, _, s, o = min(pairs, key=lambda p: p[:3])
    return s, o


# ----------------------------------------------------------------------------------------------------------------
# Re-DocRED: alignment without gold positions, scored against them
# ----------------------------------------------------------------------------------------------------------------


def redocred_entity_id(prefix: str, doc_index: int, entity_index: int) -> str:
    """Re-DocRED has no Wikidata ids; entities get document-local ids like ``redocred_dev:12:E3``."""
    return f"{prefix}:{doc_index}:E{entity_index}"


def redocred_kb(doc: dict, doc_index: int, id_prefix: str,
                use_aliases: bool = True) -> tuple[list[Entity], list[Triple]]:
    """The knowledge-base side of a Re-DocRED document: entities named by the distinct surface names of their
    mentions (the first as label, the rest as aliases unless ``use_aliases=False``) and the document's labelled
    triples. No positions."""
    entities = []
    for e, mentions in enumerate(doc["vertexSet"]):
        names = list(dict.fromkeys(m["name"] for m in mentions))
        aliases = tuple(names[1:]) if use_aliases else ()
        entities.append(Entity(redocred_entity_id(id_prefix, doc_index, e), names[0], aliases))
    triples = [Triple(label["r"], entities[label["h"]].id, entities[label["t"]].id) for label in doc["labels"]]
    return entities, triples


def align_redocred(docs: Sequence[dict], source: str = "redocred_aligned", case_insensitive: bool = True,
                   use_aliases: bool = True, id_prefix: str | None = None) -> list[Alignment]:
    """Align every Re-DocRED document with its own triples (entity names only, never the gold positions).
    Entity ids are :func:`redocred_entity_id` with ``id_prefix`` (default: ``source``); record ids are
    ``"{source}:{document}:s{sentence}:t{label index}"``."""
    alignments = []
    for d, doc in enumerate(docs):
        entities, triples = redocred_kb(doc, d, id_prefix or source, use_aliases)
        matcher = SurfaceMatcher(entities, case_insensitive=case_insensitive)
        alignments.append(align_document(doc["sents"], matcher, triples, source, doc_id=f"{source}:{d}"))
    return alignments


def _prf(true_positives: int, n_predicted: int, n_gold: int) -> dict:
    precision = true_positives / n_predicted if n_predicted else 0.0
    recall = true_positives / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"true_positives": true_positives, "predicted": n_predicted, "gold": n_gold, "precision": precision,
            "recall": recall, "f1": f1}


def gold_intra_sentence_facts(doc: dict) -> set[tuple[int, str, int, int]]:
    """``(sent_id, relation, head, tail)`` for every labelled fact whose head and tail share a sentence."""
    sents_of = [{m["sent_id"] for m in mentions} for mentions in doc["vertexSet"]]
    return {(s, label["r"], label["h"], label["t"]) for label in doc["labels"]
            for s in sents_of[label["h"]] & sents_of[label["t"]]}


def evaluate_alignment(docs: Sequence[dict], source: str = "redocred_aligned", case_insensitive: bool = True,
                       use_aliases: bool = True) -> dict:
    """Align Re-DocRED documents from names and triples only, and score against the gold mention positions.

    - **mention level**: a found mention is a (document, entity, sentence, start, end) tuple; a span linked to
      several entities (an ambiguous name) counts once per entity. Precision = found tuples that are gold mentions
      / found tuples; recall = gold mentions found exactly (same span, same entity) / gold mentions.
    - **example level**: an emitted example is (document, sentence, relation, head, tail). Gold examples are the
      labelled facts whose head and tail have gold mentions in one sentence, once per such sentence (Re-DocRED
      dev: 7,982 facts in 8,614 sentence examples). Precision = emitted examples that are gold / emitted; recall =
      gold examples emitted / gold.

    Every gold surface name is among the entity's aliases, so misses come from the matching rules (nested gold
    mentions lose to the longest match, case rules) and false hits from names that recur unannotated.
    ``use_aliases=False`` (one name per entity) shows how much the aliases matter.
    """
    started = time.perf_counter()
    alignments = align_redocred(docs, source, case_insensitive, use_aliases)
    seconds = time.perf_counter() - started

    found_mentions, gold_mentions, found_examples, gold_examples = set(), set(), set(), set()
    for d, (doc, found) in enumerate(zip(docs, alignments)):
        entity_index = {redocred_entity_id(source, d, e): e for e in range(len(doc["vertexSet"]))}
        found_mentions.update((d, entity_index[i], m.sent_id, m.start, m.end)
                              for m in found.mentions for i in m.entity_ids)
        gold_mentions.update((d, e, m["sent_id"], m["pos"][0], m["pos"][1])
                             for e, ms in enumerate(doc["vertexSet"]) for m in ms)
        found_examples.update((d, s, r["relation"], entity_index[r["subj_id"]], entity_index[r["obj_id"]])
                              for r, s in zip(found.records, found.record_sentences))
        gold_examples.update((d, *fact) for fact in gold_intra_sentence_facts(doc))
    all_mentions = [m for found in alignments for m in found.mentions]
    return {
        "documents": len(docs),
        "sentences": sum(len(doc["sents"]) for doc in docs),
        "examples_emitted": sum(len(found.records) for found in alignments),
        "mention": _prf(len(found_mentions & gold_mentions), len(found_mentions), len(gold_mentions)),
        "example": _prf(len(found_examples & gold_examples), len(found_examples), len(gold_examples)),
        "exact_case_share": sum(m.exact_case for m in all_mentions) / max(1, len(all_mentions)),
        "alignment_seconds": seconds,
    }


# ----------------------------------------------------------------------------------------------------------------
# Showing what the aligner did on one document
# ----------------------------------------------------------------------------------------------------------------


def bracket_spans(tokens: Sequence[str], spans: Iterable[tuple[int, int, str]]) -> str:
    """Tokens joined by spaces, each ``(start, end, label)`` span shown as ``[ … ]label``; nested spans nest."""
    opens: dict[int, list[tuple[int, str]]] = defaultdict(list)
    closes: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for start, end, label in spans:
        opens[start].append((end, label))
        closes[end].append((start, label))
    out = []
    for i in range(len(tokens) + 1):
        # inner spans close first (the later start), outer spans open first (the later end)
        out.extend(f"]{label}" for _, label in sorted(closes[i], reverse=True))
        out.extend("[" for _ in opens[i])
        if i < len(tokens):
            out.append(tokens[i])
    return " ".join(out).replace("[ ", "[").replace(" ]", "]")


def alignment_walkthrough(doc: dict, use_aliases: bool = True, case_insensitive: bool = True) -> dict:
    """What the aligner does with one Re-DocRED document, against the gold annotation it never reads.

    Returns ``entities`` (``E{k}``: label and aliases, the knowledge-base side), ``sentences`` (each sentence with
    the mentions found and the gold mentions bracketed and labelled ``E{k}``, and counts of missed and extra
    mentions), ``records`` (each emitted record: sentence, relation, marked text, whether it is a gold
    intra-sentence fact) and ``missed_facts`` (gold intra-sentence facts the aligner did not emit).
    """
    from .records import marked_text

    source = "walkthrough"
    entities, triples = redocred_kb(doc, 0, source, use_aliases)
    found = align_document(doc["sents"], SurfaceMatcher(entities, case_insensitive=case_insensitive), triples,
                           source)
    index = {entity.id: k for k, entity in enumerate(entities)}
    found_spans = {(m.sent_id, m.start, m.end, index[i]) for m in found.mentions for i in m.entity_ids}
    gold_spans = {(m["sent_id"], m["pos"][0], m["pos"][1], e) for e, ms in enumerate(doc["vertexSet"]) for m in ms}
    sentences = []
    for s, tokens in enumerate(doc["sents"]):
        mine = sorted(x for x in found_spans if x[0] == s)
        gold = sorted(x for x in gold_spans if x[0] == s)
        sentences.append({
            "sentence": s, "found": bracket_spans(tokens, [(a, b, f"E{e}") for _, a, b, e in mine]),
            "gold": bracket_spans(tokens, [(a, b, f"E{e}") for _, a, b, e in gold]),
            "missed": len(set(gold) - set(mine)), "extra": len(set(mine) - set(gold))})
    gold_facts = gold_intra_sentence_facts(doc)
    emitted = set()
    records = []
    for record, s in zip(found.records, found.record_sentences):
        fact = (s, record["relation"], index[record["subj_id"]], index[record["obj_id"]])
        emitted.add(fact)
        records.append({"sentence": s, "relation": record["relation"], "subject": f"E{fact[2]}",
                        "object": f"E{fact[3]}", "marked": marked_text(record), "gold": fact in gold_facts})
    missed = [{"sentence": s, "relation": r, "subject": f"E{h}", "object": f"E{t}"}
              for s, r, h, t in sorted(gold_facts - emitted)]
    return {"entities": [{"entity": f"E{k}", "label": e.label, "aliases": list(e.aliases)}
                         for k, e in enumerate(entities)],
            "sentences": sentences, "records": records, "missed_facts": missed}
