"""Factual-adapter data: aligned text–triple records from LAMA T-REx evidences, FewRel and Re-DocRED, and the
pre-training set built from them with the paper's rules (drop P31, keep relations with at least 50 examples,
de-duplicate, seeded train/dev split) while holding out the LAMA probe facts.

Records follow the project's relation-classification schema, :data:`data_prep.records.RC_FIELDS` (``id``,
token spans end exclusive, ``subj_id``/``obj_id``, ``source``). Sources and their names:

============================  ===================================================================================
``lama_trex_evidence``         LAMA T-REx evidence sentences, ``[MASK]`` put back to the object surface form
``redocred_dev/test``          Re-DocRED facts whose head and tail share a sentence, at the gold mention positions
``redocred_dev/test_aligned``  the same documents aligned by :mod:`data_prep.alignment` from names only
``fewrel_val_wiki``            FewRel 1.0 val (11,200 human-verified sentences, 16 relations) — NOT a default
============================  ===================================================================================

The default sources (:data:`DEFAULT_SOURCES`) are LAMA T-REx evidences and Re-DocRED dev + test. FewRel
``val_wiki`` is available only when asked for by name: it is also a relation-classification *evaluation* set
(the ``fewrel`` task of :mod:`kadapter.finetuning`), so training the factual adapter on it would let test
sentences leak into pre-training. LAMA's own probe facts are held out separately (:mod:`data_prep.holdout`).
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from datasets import Dataset, DatasetDict

from .alignment import Entity, SurfaceMatcher, align_redocred, gold_intra_sentence_facts, redocred_entity_id
from .eval_sets import read_fewrel
from .holdout import QID, ProbeFacts, hold_out_probe_facts, record_label_key
from .lama import MASK, check_field, load_relations, load_trex_evidence
from .paths import data_path
from .records import RC_FEATURES, make_record, rc_dataset
from .report import DataFormatError, SkipReport, read_text
from .text import simple_tokenize, surface_key

#: Columns of the pre-training set: the project's relation-classification schema (:mod:`data_prep.records`).
FEATURES = RC_FEATURES
# FewRel is left out of the defaults on purpose: FewRel val_wiki is also a relation-classification evaluation set
# (kadapter.finetuning's "fewrel" task), and pre-training the factual adapter on it would leak test sentences.
DEFAULT_SOURCES = ("lama_trex_evidence", "redocred_dev", "redocred_test")
#: Every source :func:`collect_records` knows (``redocred_*_aligned`` are the aligner's output on the same text).
KNOWN_SOURCES = ("lama_trex_evidence", "fewrel_val_wiki", "redocred_dev", "redocred_test", "redocred_dev_aligned",
                 "redocred_test_aligned")


def relation_names() -> dict[str, str]:
    """Wikidata PID -> English name, from FewRel's ``pid2name.json``, DocRED's ``rel_info.json`` and LAMA."""
    names = {pid: value[0] for pid, value in _read_json(data_path("fewrel", "pid2name.json")).items()}
    names.update(_read_json(data_path("redocred", "rel_info.json")))
    names.update({pid: info["label"] for pid, info in load_relations().items()})
    return names


def _read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataFormatError(path, error.lineno, None, f"not valid JSON ({error.msg} at column {error.colno})")


# ----------------------------------------------------------------------------------------------------------------
# LAMA T-REx evidences
# ----------------------------------------------------------------------------------------------------------------


def trex_evidence_examples(relations: Iterable[str] | None = None, limit: int | None = None,
                           facts: Sequence[dict] | None = None,
                           source: str = "lama_trex_evidence") -> tuple[list[dict], SkipReport]:
    """One record per LAMA T-REx evidence sentence (``limit`` facts per relation, or the given ``facts``), with
    the id ``"{source}:{fact uuid}:{evidence index}"``.

    The object surface form goes back where ``[MASK]`` is; text is tokenised with
    :func:`~data_prep.alignment.simple_tokenize` (the object separately, so its span is exact). The subject is
    found by its surface form (else its label) with the aligner's matcher, outside the object, nearest to it.
    Counted skips: no or several ``[MASK]``, empty object surface, subject not found.
    """
    if facts is None:
        facts, _ = load_trex_evidence(relations, limit)
    records, report = [], SkipReport(source)
    for fact in facts:
        for e, evidence in enumerate(fact["evidences"]):
            where = f"{fact['relation']} {fact['uuid']}"
            record, reason = _evidence_record(fact, evidence, source, id=f"{source}:{fact['uuid']}:{e}")
            if record is None:
                report.skip(reason, where)
            else:
                records.append(record)
                report.keep()
    return records, report


def _evidence_record(fact: dict, evidence: dict, source: str, id: str) -> tuple[dict | None, str]:
    parts = evidence["masked_sentence"].split(MASK)
    if len(parts) != 2:
        return None, f"masked_sentence has {len(parts) - 1} [MASK] (needs exactly 1)"
    obj_tokens = simple_tokenize(evidence["obj_surface"])
    if not obj_tokens:
        return None, "empty object surface"
    left, right = simple_tokenize(parts[0]), simple_tokenize(parts[1])
    tokens = left + obj_tokens + right
    obj = (len(left), len(left) + len(obj_tokens))
    # The object's tokens are blanked so that the subject is never found inside the object.
    searchable = tokens[:obj[0]] + ["\x00"] * len(obj_tokens) + tokens[obj[1]:]
    for name in dict.fromkeys((evidence["sub_surface"], fact["sub_label"])):
        mentions = SurfaceMatcher([Entity(fact["sub_uri"], name)]).find(searchable)
        if mentions:
            nearest = min(mentions, key=lambda m: max(m.start, obj[0]) - min(m.end, obj[1]))
            return make_record(tokens, (nearest.start, nearest.end), obj, fact["relation"], fact["sub_uri"],
                               fact["obj_uri"], source, id=id), ""
    return None, "subject not found in the sentence"


# ----------------------------------------------------------------------------------------------------------------
# FewRel
# ----------------------------------------------------------------------------------------------------------------


def fewrel_examples(path: str | Path | None = None, relations: Iterable[str] | None = None,
                    limit: int | None = None, source: str = "fewrel_val_wiki",
                    strict: bool = False) -> tuple[list[dict], SkipReport]:
    """FewRel-format Wikidata relations (``{PID: [{tokens, h: [name, QID, [[positions]]], t: [...]}]}``) as records
    with the QIDs as ``subj_id``/``obj_id`` (``h`` is the subject, first mention of each entity) and the id
    ``"{source}:{FewRel id}"``. Not among :data:`DEFAULT_SOURCES`: FewRel is an evaluation set.

    Parsing and checking is :func:`data_prep.eval_sets.read_fewrel` (one FewRel reader in the project): malformed
    JSON, missing or mistyped fields raise :class:`DataFormatError` with the record's line; empty text, spans that
    are non-contiguous, reversed, outside the sentence or overlapping are counted skips (``strict=True`` raises).
    Here a relation that is not a known Wikidata PID is an error. ``limit`` caps the examples per relation.
    """
    path = Path(path) if path else data_path("fewrel", "val_wiki.json")
    parsed, parse_report = read_fewrel(path, strict=strict)
    unknown = sorted(set(parsed["relation"]) - set(relation_names()))
    if unknown:
        raise DataFormatError(path, None, "relation", f"unknown relation(s) {unknown}: not known Wikidata PIDs")
    wanted = None if relations is None else set(relations)
    taken: Counter = Counter()
    records = []
    for row in parsed:
        relation = row["relation"]
        if (wanted is not None and relation not in wanted) or (limit is not None and taken[relation] >= limit):
            continue
        taken[relation] += 1
        records.append(make_record(row["tokens"], (row["subj_start"], row["subj_end"]),
                                   (row["obj_start"], row["obj_end"]), relation, row["subj_id"], row["obj_id"],
                                   source, id=f"{source}:{row['id']}"))
    report = SkipReport(source).merge(parse_report)
    report.kept = len(records)
    return records, report


# ----------------------------------------------------------------------------------------------------------------
# Re-DocRED
# ----------------------------------------------------------------------------------------------------------------


def load_redocred(split: str = "dev", limit: int | None = None, path: str | Path | None = None,
                  rel_info_path: str | Path | None = None) -> list[dict]:
    """Re-DocRED documents (``redocred/{split}_revised.json``), checked: sentences non-empty, every mention span
    inside its sentence, every label's relation in ``rel_info.json`` and entities in range. The file is one JSON
    array, so errors name the document and field (``doc 12.vertexSet[3][0].pos``) rather than a line."""
    path = Path(path) if path else data_path("redocred", f"{split}_revised.json")
    known = _read_json(Path(rel_info_path) if rel_info_path else data_path("redocred", "rel_info.json"))
    docs = _read_json(path)
    if not isinstance(docs, list):
        raise DataFormatError(path, None, None, "expected a JSON array of documents")
    docs = docs[:limit]
    for d, doc in enumerate(docs):
        _check_redocred_doc(doc, f"doc {d}", known, path)
    return docs


def _check_redocred_doc(doc, where: str, known_relations: dict, path: Path) -> None:
    if not isinstance(doc, dict):
        raise DataFormatError(path, None, where, "expected a document object")
    for name, kind in (("title", str), ("sents", list), ("vertexSet", list), ("labels", list)):
        check_field(doc, name, kind, path, None, where=f"{where}.")
    for s, sentence in enumerate(doc["sents"]):
        if not isinstance(sentence, list) or not sentence or not all(isinstance(t, str) for t in sentence):
            raise DataFormatError(path, None, f"{where}.sents[{s}]", "empty text or a token that is not a string")
    for e, mentions in enumerate(doc["vertexSet"]):
        if not isinstance(mentions, list) or not mentions:
            raise DataFormatError(path, None, f"{where}.vertexSet[{e}]", "expected a non-empty list of mentions")
        for m, mention in enumerate(mentions):
            _check_mention(mention, f"{where}.vertexSet[{e}][{m}].", doc["sents"], path)
    for i, label in enumerate(doc["labels"]):
        at = f"{where}.labels[{i}]."
        if not isinstance(label, dict):
            raise DataFormatError(path, None, at[:-1], "expected an object {r, h, t}")
        if check_field(label, "r", str, path, None, where=at) not in known_relations:
            raise DataFormatError(path, None, at + "r", f"unknown relation {label['r']!r}: not in rel_info.json")
        for name in ("h", "t"):
            if not 0 <= check_field(label, name, int, path, None, where=at) < len(doc["vertexSet"]):
                raise DataFormatError(path, None, at + name, f"entity {label[name]} out of range")


def _check_mention(mention, at: str, sents: list, path: Path) -> None:
    if not isinstance(mention, dict):
        raise DataFormatError(path, None, at[:-1], "expected a mention object")
    check_field(mention, "name", str, path, None, where=at)
    sent_id = check_field(mention, "sent_id", int, path, None, where=at)
    if not 0 <= sent_id < len(sents):
        raise DataFormatError(path, None, at + "sent_id", f"sentence {sent_id} out of range")
    pos = check_field(mention, "pos", list, path, None, where=at)
    if len(pos) != 2 or not all(type(p) is int for p in pos) or not 0 <= pos[0] < pos[1] <= len(sents[sent_id]):
        raise DataFormatError(path, None, at + "pos", f"span {pos!r:.40} is reversed, empty or outside sentence "
                              f"{sent_id} of {len(sents[sent_id])} tokens")


def redocred_examples(docs: Sequence[dict], source: str = "redocred_dev") -> tuple[list[dict], SkipReport]:
    """Every labelled fact whose head and tail have gold mentions in one sentence, one record per such sentence,
    using the closest head–tail mention pair there. Entity ids are document-local (``redocred_dev:12:E3``),
    record ids ``"{source}:{document}:s{sentence}:t{label index}"`` (as the aligner's); overlapping head and tail
    mentions are a counted skip."""
    records, report = [], SkipReport(source)
    for d, doc in enumerate(docs):
        label_index = {(label["r"], label["h"], label["t"]): k for k, label in enumerate(doc["labels"])}
        for sent_id, relation, h, t in sorted(gold_intra_sentence_facts(doc)):
            spans = [[(m["pos"][0], m["pos"][1]) for m in doc["vertexSet"][e] if m["sent_id"] == sent_id]
                     for e in (h, t)]
            pairs = [(max(a[0], b[0]) - min(a[1], b[1]), a, b) for a in spans[0] for b in spans[1]
                     if a[1] <= b[0] or b[1] <= a[0]]
            if not pairs:
                report.skip("head and tail mentions overlap", f"doc {d} sentence {sent_id} {relation}")
                continue
            _, subj, obj = min(pairs)
            records.append(make_record(doc["sents"][sent_id], subj, obj, relation, redocred_entity_id(source, d, h),
                                       redocred_entity_id(source, d, t), source,
                                       id=f"{source}:{d}:s{sent_id}:t{label_index[relation, h, t]}"))
            report.keep()
    return records, report


def redocred_aligned_examples(docs: Sequence[dict], source: str = "redocred_dev_aligned",
                              id_prefix: str | None = None) -> tuple[list[dict], SkipReport]:
    """Re-DocRED aligned from entity names and triples only (see :func:`data_prep.alignment.evaluate_alignment`)."""
    alignments = align_redocred(docs, source, id_prefix=id_prefix)
    records = [r for found in alignments for r in found.records]
    report = SkipReport(source)
    report.keep(len(records))
    return records, report


def collect_records(sources: Iterable[str] = DEFAULT_SOURCES, limit: int | None = None,
                    relations: Iterable[str] | None = None) -> tuple[list[dict], dict[str, SkipReport]]:
    """Records from the named sources (see the module docstring; :data:`KNOWN_SOURCES`). ``limit``: facts per
    relation for LAMA, examples per relation for FewRel, documents for Re-DocRED; ``relations`` restricts LAMA and
    FewRel. The defaults leave FewRel out (it is an evaluation set); name ``"fewrel_val_wiki"`` to include it."""
    records, reports = [], {}
    relations = None if relations is None else list(relations)
    for source in sources:
        if source == "lama_trex_evidence":
            available = {p.stem for p in data_path("lama", "TREx").glob("*.jsonl")}
            wanted = None if relations is None else [r for r in relations if r in available]
            found, report = trex_evidence_examples(wanted, limit, source=source)
        elif source == "fewrel_val_wiki":
            found, report = fewrel_examples(relations=relations, limit=limit, source=source)
        elif m := re.fullmatch(r"redocred_(dev|test)(_aligned)?", source):
            docs = load_redocred(m.group(1), limit)
            if m.group(2):
                found, report = redocred_aligned_examples(docs, source, id_prefix=f"redocred_{m.group(1)}")
            else:
                found, report = redocred_examples(docs, source)
        else:
            raise ValueError(f"unknown source {source!r}; known: {KNOWN_SOURCES}")
        records.extend(found)
        reports[source] = report
    return records, reports


# ----------------------------------------------------------------------------------------------------------------
# Evaluation sentences kept out
# ----------------------------------------------------------------------------------------------------------------

#: Evaluation sets whose sentences :func:`build_factual_pretraining_set` keeps out of pre-training by default.
EVAL_SETS = ("fewrel_val_wiki", "semeval2010_train", "semeval2010_test")
EvalSentences = dict[str, set[str]]


def eval_sentences(names: Iterable[str] = EVAL_SETS) -> EvalSentences:
    """``{evaluation set: {sentence key}}`` for relation-classification evaluation sets (``fewrel_<file>``, e.g.
    ``fewrel_val_wiki``, or ``semeval2010_train`` / ``semeval2010_test``). A sentence key is
    :func:`~data_prep.text.surface_key` of its tokens, so tokenisation, spacing and case do not hide a match."""
    from .eval_sets import load_fewrel, load_semeval2010

    keys = {}
    for name in names:
        if name.startswith("fewrel_"):
            dataset, _ = load_fewrel(name[len("fewrel_"):])
        elif name.startswith("semeval2010_"):
            dataset, _ = load_semeval2010(name[len("semeval2010_"):])
        else:
            raise ValueError(f"unknown evaluation set {name!r}; known: fewrel_<file>, semeval2010_train/test")
        keys[name] = {surface_key(tokens) for tokens in dataset["tokens"]}
    return keys


def drop_eval_sentences(records: Iterable[dict], sentences: EvalSentences) -> tuple[list[dict], dict]:
    """Remove every record whose sentence occurs in an evaluation set; report how many, from which sources, and
    which evaluation sets they were in (a sentence may be in several)."""
    kept, by_source, by_set = [], Counter(), Counter()
    for record in records:
        key = surface_key(record["tokens"])
        hits = [name for name, keys in sentences.items() if key in keys]
        if hits:
            by_source[record["source"]] += 1
            by_set.update(hits)
        else:
            kept.append(record)
    return kept, {"eval_sets": sorted(sentences), "examples_removed": sum(by_source.values()),
                  "removed_per_source": dict(by_source), "removed_per_eval_set": dict(by_set)}


# ----------------------------------------------------------------------------------------------------------------
# The pre-training set
# ----------------------------------------------------------------------------------------------------------------


def build_factual_dataset(records: Iterable[dict], *, drop_relations: Iterable[str] = ("P31",),
                          min_examples: int = 50, dedupe: bool = True, dev_fraction: float = 0.1, seed: int = 0,
                          probe: ProbeFacts | None = None,
                          exclude_sentences: EvalSentences | None = None) -> tuple[DatasetDict, dict]:
    """The factual-adapter pre-training set, following the paper's rules, in this order:

    1. drop the relations in ``drop_relations`` (the paper drops P31 "instance of");
    2. hold out the LAMA probe facts when ``probe`` is given (:meth:`ProbeFacts.match`), and drop every record
       whose sentence is one of ``exclude_sentences`` (evaluation sentences, :func:`eval_sentences`);
    3. de-duplicate identical (relation, sentence, subject span, object span) records;
    4. keep relations with at least ``min_examples`` records (paper: 50);
    5. split train/dev per relation by fact (a subject–object pair never straddles the split), seeded.

    Returns a ``DatasetDict`` (train, dev) with :data:`FEATURES` and a report with counts per step and per relation.
    """
    records = list(records)
    report: dict = {"options": {"drop_relations": sorted(drop_relations), "min_examples": min_examples,
                                "dedupe": dedupe, "dev_fraction": dev_fraction, "seed": seed,
                                "hold_out_probe": probe is not None},
                    "input_examples": len(records), "input_per_source": dict(Counter(r["source"] for r in records))}
    dropped = set(drop_relations)
    report["dropped_relation_examples"] = dict(Counter(r["relation"] for r in records if r["relation"] in dropped))
    records = [r for r in records if r["relation"] not in dropped]
    if probe is not None:
        records, report["holdout"] = hold_out_probe_facts(records, probe)
    if exclude_sentences is not None:
        records, report["eval_overlap"] = drop_eval_sentences(records, exclude_sentences)
    if dedupe:
        before = len(records)
        records = list({_dedupe_key(r): r for r in records}.values())
        report["duplicates_removed"] = before - len(records)
    counts = Counter(r["relation"] for r in records)
    report["relations_below_min"] = {rel: n for rel, n in sorted(counts.items()) if n < min_examples}
    records = [r for r in records if counts[r["relation"]] >= min_examples]
    train, dev = _split_by_fact(records, dev_fraction, seed)
    names = relation_names()
    n_train, n_dev = Counter(r["relation"] for r in train), Counter(r["relation"] for r in dev)
    report["per_relation"] = {
        rel: {"name": names.get(rel, rel), "train": n_train[rel], "dev": n_dev[rel]}
        for rel in sorted({r["relation"] for r in records}, key=lambda p: int(p[1:]) if p[1:].isdigit() else 0)}
    report.update(relations_kept=len(report["per_relation"]), train=len(train), dev=len(dev),
                  train_per_source=dict(Counter(r["source"] for r in train)),
                  dev_per_source=dict(Counter(r["source"] for r in dev)))
    dataset = DatasetDict({"train": _to_dataset(train), "dev": _to_dataset(dev)})
    return dataset, report


def build_steps(report: dict) -> list[dict]:
    """The builder's report as a table of steps: ``{step, removed, left}`` from the collected records to the
    train/dev split, in the order :func:`build_factual_dataset` applies them."""
    left = report["input_examples"]
    rows = [{"step": "collected from the sources", "removed": 0, "left": left}]
    steps = [("dropped relations " + (", ".join(report["options"]["drop_relations"]) or "(none)"),
              sum(report["dropped_relation_examples"].values())),
             ("LAMA probe facts held out", report["holdout"]["examples_removed"] if "holdout" in report else None),
             ("evaluation-set sentences dropped",
              report["eval_overlap"]["examples_removed"] if "eval_overlap" in report else None),
             ("duplicates removed", report.get("duplicates_removed")),
             (f"relations under {report['options']['min_examples']} examples dropped",
              sum(report["relations_below_min"].values()))]
    for step, removed in steps:
        if removed is not None:  # a step that was switched off is not shown
            left -= removed
            rows.append({"step": step, "removed": removed, "left": left})
    if left != report["train"] + report["dev"]:
        raise ValueError(f"report does not add up: {left} left after the steps, {report['train']} + "
                         f"{report['dev']} in the splits")
    return rows


def _dedupe_key(record: dict) -> tuple:
    return (record["relation"], tuple(record["tokens"]), record["subj_start"], record["subj_end"],
            record["obj_start"], record["obj_end"])


def _fact_key(record: dict) -> tuple[str, str, str]:
    """Which fact a record states: QIDs where it has them, else the case-folded span texts."""
    label = record_label_key(record)
    subj = record["subj_id"] if QID.fullmatch(record["subj_id"]) else label[1]
    obj = record["obj_id"] if QID.fullmatch(record["obj_id"]) else label[2]
    return record["relation"], subj, obj


def _split_by_fact(records: list[dict], dev_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    by_relation: dict[str, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_relation[record["relation"]][_fact_key(record)].append(record)
    train, dev = [], []
    for relation in sorted(by_relation):
        groups = [by_relation[relation][key] for key in sorted(by_relation[relation])]
        random.Random(f"{seed}:{relation}").shuffle(groups)
        target = round(dev_fraction * sum(len(g) for g in groups))
        taken = 0
        for i, group in enumerate(groups):
            # Fill dev up to its share, but always leave at least one group for training.
            if taken < target and i < len(groups) - 1:
                dev.extend(group)
                taken += len(group)
            else:
                train.extend(group)
    return train, dev


def _to_dataset(records: list[dict]) -> Dataset:
    return rc_dataset(records, FEATURES)


def build_factual_pretraining_set(sources: Iterable[str] = DEFAULT_SOURCES, *, hold_out_probe: bool = True,
                                  limit: int | None = None, relations: Iterable[str] | None = None,
                                  exclude_eval_sets: Iterable[str] = EVAL_SETS,
                                  **options) -> tuple[DatasetDict, dict]:
    """:func:`collect_records` then :func:`build_factual_dataset` with the LAMA probe held out (by default).
    ``options`` go to :func:`build_factual_dataset` (``drop_relations``, ``min_examples``, ``seed``, ...).

    The default ``sources`` are LAMA T-REx evidences and Re-DocRED dev + test; FewRel ``val_wiki`` is left out
    because it is a relation-classification evaluation set (see the module docstring). Wikipedia sentences recur
    across data sets, so records whose sentence is in one of ``exclude_eval_sets`` (:func:`eval_sentences`;
    default FewRel val_wiki and SemEval-2010 train/test) are dropped too. Measured on the full defaults: 43
    collected records (27 distinct sentences) are FewRel val_wiki sentences, none are SemEval's; 12 of them
    survive the LAMA hold-out and are dropped here. ``()`` keeps them."""
    records, reports = collect_records(sources, limit, relations)
    probe = ProbeFacts.from_lama() if hold_out_probe else None
    exclude = tuple(exclude_eval_sets)
    excluded = eval_sentences(exclude) if exclude else None
    dataset, report = build_factual_dataset(records, probe=probe, exclude_sentences=excluded, **options)
    report["sources"] = {name: r.to_dict() for name, r in reports.items()}
    return dataset, report


def write_factual_stats(report: dict, path: str | Path) -> Path:
    """The builder's report (counts per step, per source and per relation) as indented JSON."""
    path = Path(path)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def save_factual_dataset(dataset: DatasetDict, report: dict, directory: str | Path) -> Path:
    """``dataset.save_to_disk(directory)`` plus the report as ``directory/factual_stats.json``; returns the latter."""
    directory = Path(directory)
    dataset.save_to_disk(str(directory))
    return write_factual_stats(report, directory / "factual_stats.json")
