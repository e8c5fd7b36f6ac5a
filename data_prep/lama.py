"""LAMA probe data: T-REx facts with templates, T-REx evidence sentences, Google-RE, LAMA-UHN, common vocabulary.

Files (under :func:`data_prep.paths.data_root`, folder ``lama/``):

- ``TREx_lms_vocab/P*.jsonl`` — all 41 T-REx relations, 29,411 facts ``{sub_label, obj_label, uuid}``; the probe.
- ``relations.jsonl`` — 46 relation templates such as ``[X] was born in [Y] .`` with label and type.
- ``TREx/P*.jsonl`` — 28 relations, 22,881 facts with Wikidata ids and Wikipedia evidence sentences.
- Google-RE (not in the shared data; the loader reads LAMA's format) and ``common_vocab_cased.txt``.

Every loader returns ``(records, SkipReport)`` and raises :class:`~data_prep.report.DataFormatError` (file, 1-based
line, field) on a malformed line, a missing or mistyped field, an empty label or an unknown relation.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .paths import data_path
from .report import DataFormatError, SkipReport, surrogate_problem, text_lines

SUBJECT_SLOT, OBJECT_SLOT = "[X]", "[Y]"
MASK = "[MASK]"
# Text that would put a second slot or blank into a filled template: the slots, BERT's and RoBERTa's mask tokens.
BLANK_MARKERS = (SUBJECT_SLOT, OBJECT_SLOT, MASK, "<mask>")

# Google-RE's three relations as LAMA probes them (pred -> template); they are not in relations.jsonl.
GOOGLE_RE_RELATIONS = {
    "place_of_birth": {"template": "[X] was born in [Y] .", "label": "place of birth", "type": "N-1"},
    "date_of_birth": {"template": "[X] (born [Y]).", "label": "date of birth", "type": "N-1"},
    "place_of_death": {"template": "[X] died in [Y] .", "label": "place of death", "type": "N-1"},
}


# ----------------------------------------------------------------------------------------------------------------
# Reading JSON lines with validation
# ----------------------------------------------------------------------------------------------------------------


def read_jsonl(path: str | Path, fields: dict[str, type | tuple[type, ...]],
               limit: int | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, record)`` for each non-blank line, checking that ``fields`` are present with the given
    types and that string fields are not empty. Raises :class:`DataFormatError` naming the line and field."""
    yielded = 0
    for number, line in enumerate(text_lines(path), start=1):
        if limit is not None and yielded >= limit:
            return
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, number, None, f"not valid JSON ({error.msg} at column {error.colno})")
        if not isinstance(record, dict):
            raise DataFormatError(path, number, None, f"expected a JSON object, got {type(record).__name__}")
        for name, kind in fields.items():
            check_field(record, name, kind, path, number)
        yielded += 1
        yield number, record


def check_field(record: dict, name: str, kind: type | tuple[type, ...], path: str | Path, line: int | None,
                where: str = "") -> object:
    """The value of ``record[name]``, which must exist, have type ``kind`` and, if a string, not be blank."""
    label = where + name
    if name not in record:
        raise DataFormatError(path, line, label, "missing")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataFormatError(path, line, label, f"expected {expected}, got {type(value).__name__} {value!r:.60}")
    if isinstance(value, str) and not value.strip():
        raise DataFormatError(path, line, label, "empty text")
    if isinstance(value, str) and surrogate_problem(value):
        raise DataFormatError(path, line, label, surrogate_problem(value))
    return value


def _relation_files(directory: Path, relations: Iterable[str] | None) -> list[Path]:
    files = sorted(directory.glob("*.jsonl"), key=lambda p: (len(p.stem), p.stem))
    if relations is None:
        return files
    wanted = list(relations)
    by_name = {p.stem: p for p in files}
    missing = [r for r in wanted if r not in by_name]
    if missing:
        raise FileNotFoundError(f"no file for relation(s) {missing} in {directory} (has {sorted(by_name)})")
    return [by_name[r] for r in wanted]


# ----------------------------------------------------------------------------------------------------------------
# Templates and the T-REx probe
# ----------------------------------------------------------------------------------------------------------------


def load_relations(path: str | Path | None = None) -> dict[str, dict]:
    """``relations.jsonl`` as ``{PID: {relation, template, label, description, type}}`` (46 relations)."""
    path = Path(path) if path else data_path("lama", "relations.jsonl")
    relations = {}
    for line, record in read_jsonl(path, {"relation": str, "template": str, "label": str, "type": str}):
        template = record["template"]
        if SUBJECT_SLOT not in template or OBJECT_SLOT not in template:
            raise DataFormatError(path, line, "template", f"needs both {SUBJECT_SLOT} and {OBJECT_SLOT}: {template!r}")
        relations[record["relation"]] = {"relation": record["relation"], "template": template,
                                         "label": record["label"], "description": record.get("description", ""),
                                         "type": record["type"]}
    return relations


def fill_template(template: str, subject: str, mask_token: str = MASK) -> str:
    """``fill_template("[X] was born in [Y] .", "Dante", "<mask>")`` -> ``"Dante was born in <mask> ."``"""
    if SUBJECT_SLOT not in template or OBJECT_SLOT not in template:
        raise ValueError(f"template needs {SUBJECT_SLOT} and {OBJECT_SLOT}: {template!r}")
    return template.replace(SUBJECT_SLOT, subject).replace(OBJECT_SLOT, mask_token)


def load_trex_facts(relations: Iterable[str] | None = None, limit: int | None = None,
                    directory: str | Path | None = None,
                    relations_path: str | Path | None = None) -> tuple[list[dict], SkipReport]:
    """The LAMA T-REx probe (``TREx_lms_vocab``): ``{uuid, relation, relation_label, template, sub_label, obj_label,
    type}`` per fact. ``relations`` picks relation files (PIDs); ``limit`` caps the facts read per relation.

    Counted skips (a fact the probe cannot ask must not stop the others): a relation whose template has not exactly
    one ``[X]`` and one ``[Y]`` (all its facts), a subject holding a slot or mask marker (:data:`BLANK_MARKERS`,
    which would add a second blank), and a line repeating an earlier uuid (the same fact is scored once). Nothing is
    skipped in the real files: the 41 files hold 29,411 facts (14 subject–object pairs appear twice under different
    uuids; LAMA scores them twice, and so do we)."""
    directory = Path(directory) if directory else data_path("lama", "TREx_lms_vocab")
    templates = load_relations(relations_path)
    facts, report, seen = [], SkipReport("LAMA T-REx facts"), set()
    for path in _relation_files(directory, relations):
        relation = _known_relation(path, templates)
        bad_template = template_problem(templates[relation]["template"])
        for line, record in read_jsonl(path, {"sub_label": str, "obj_label": str, "uuid": str}, limit):
            problem = bad_template or subject_problem(record["sub_label"]) or \
                ("a uuid seen before: the same fact is scored once" if record["uuid"] in seen else None)
            if problem:
                report.skip(problem, f"{path.name}:{line}")
                continue
            seen.add(record["uuid"])
            facts.append(_fact(record, relation, templates[relation]))
            report.keep()
    return facts, report


def template_problem(template: str) -> str | None:
    """Why a relation template cannot be filled into one cloze question, or None."""
    if template.count(SUBJECT_SLOT) != 1 or template.count(OBJECT_SLOT) != 1:
        return f"template without exactly one {SUBJECT_SLOT} and one {OBJECT_SLOT}"
    return None


def subject_problem(subject: str) -> str | None:
    """Why a subject cannot be put into a template (it would add a second slot or blank), or None."""
    found = [marker for marker in BLANK_MARKERS if marker.lower() in subject.lower()]
    return f"subject contains {found[0]}" if found else None


def _known_relation(path: Path, templates: dict[str, dict]) -> str:
    if path.stem not in templates:
        raise DataFormatError(path, None, "relation", f"unknown relation {path.stem!r}: not in relations.jsonl")
    return path.stem


def _fact(record: dict, relation: str, info: dict) -> dict:
    return {"uuid": record["uuid"], "relation": relation, "relation_label": info["label"],
            "template": info["template"], "sub_label": record["sub_label"], "obj_label": record["obj_label"],
            "type": info["type"]}


def load_trex_evidence(relations: Iterable[str] | None = None, limit: int | None = None,
                       directory: str | Path | None = None,
                       relations_path: str | Path | None = None) -> tuple[list[dict], SkipReport]:
    """LAMA T-REx with evidences (``lama/TREx``, 28 relations, 22,881 facts): ``{uuid, relation, sub_uri, obj_uri,
    sub_label, obj_label, evidences: [{sub_surface, obj_surface, masked_sentence}]}``. ``limit`` is per relation.

    A ``predicate_id`` that disagrees with its file's relation is an error; nothing is skipped here (evidence
    sentences are checked where they become training records, :func:`data_prep.factual.trex_evidence_examples`).
    """
    directory = Path(directory) if directory else data_path("lama", "TREx")
    templates = load_relations(relations_path)
    fields = {"uuid": str, "sub_uri": str, "obj_uri": str, "sub_label": str, "obj_label": str,
              "predicate_id": str, "evidences": list}
    facts, report = [], SkipReport("LAMA T-REx evidence facts")
    for path in _relation_files(directory, relations):
        relation = _known_relation(path, templates)
        for line, record in read_jsonl(path, fields, limit):
            if record["predicate_id"] != relation:
                raise DataFormatError(path, line, "predicate_id",
                                      f"{record['predicate_id']!r} in the file of relation {relation}")
            evidences = []
            for i, evidence in enumerate(record["evidences"]):
                if not isinstance(evidence, dict):
                    raise DataFormatError(path, line, f"evidences[{i}]", "expected an object")
                for name in ("sub_surface", "obj_surface", "masked_sentence"):
                    check_field(evidence, name, str, path, line, where=f"evidences[{i}].")
                evidences.append({k: evidence[k] for k in ("sub_surface", "obj_surface", "masked_sentence")})
            facts.append({"uuid": record["uuid"], "relation": relation, "sub_uri": record["sub_uri"],
                          "obj_uri": record["obj_uri"], "sub_label": record["sub_label"],
                          "obj_label": record["obj_label"], "evidences": evidences})
            report.keep()
    return facts, report


# ----------------------------------------------------------------------------------------------------------------
# Google-RE
# ----------------------------------------------------------------------------------------------------------------


def load_google_re(paths: str | Path | Sequence[str | Path],
                   limit: int | None = None) -> tuple[list[dict], SkipReport]:
    """Google-RE in LAMA's format (``pred, sub_label, obj_label, masked_sentences, judgments`` per line; a folder
    means all its ``*.jsonl``). Returns facts shaped like :func:`load_trex_facts` plus ``masked_sentences``.

    As LAMA does, a fact is kept only where raters said "yes" more often than "no"; the rest are counted in the
    report. The relation is the last part of ``pred`` (``/people/person/place_of_birth`` -> ``place_of_birth``);
    any other than :data:`GOOGLE_RE_RELATIONS` is an error. ``limit`` caps the lines read per file.
    """
    files = _google_re_files(paths)
    fields = {"pred": str, "sub_label": str, "obj_label": str, "masked_sentences": list, "judgments": list}
    facts, report = [], SkipReport("Google-RE facts")
    for path in files:
        for line, record in read_jsonl(path, fields, limit):
            relation = record["pred"].rstrip("/").rsplit("/", 1)[-1]
            if relation not in GOOGLE_RE_RELATIONS:
                raise DataFormatError(path, line, "pred", f"unknown relation {record['pred']!r}; known: "
                                      f"{sorted(GOOGLE_RE_RELATIONS)}")
            votes = _judgment_votes(record["judgments"], path, line)
            for i, sentence in enumerate(record["masked_sentences"]):
                if not isinstance(sentence, str) or not sentence.strip():
                    raise DataFormatError(path, line, f"masked_sentences[{i}]", "expected non-empty text")
            if votes["yes"] <= votes["no"]:
                report.skip("not more 'yes' than 'no' judgments", f"{path.name}:{line}")
                continue
            if subject_problem(record["sub_label"]):
                report.skip(subject_problem(record["sub_label"]), f"{path.name}:{line}")
                continue
            uuid = record.get("uuid") or f"{path.stem}:{line}"
            fact = _fact({**record, "uuid": uuid}, relation, GOOGLE_RE_RELATIONS[relation])
            fact["masked_sentences"] = list(record["masked_sentences"])
            facts.append(fact)
            report.keep()
    return facts, report


def _google_re_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.jsonl")) if p.is_dir() else [p])
    if not files:
        raise FileNotFoundError(f"no Google-RE .jsonl files in {list(paths)}")
    return files


def _judgment_votes(judgments: list, path: Path, line: int) -> Counter:
    votes = Counter()
    for i, judgment in enumerate(judgments):
        if not isinstance(judgment, dict):
            raise DataFormatError(path, line, f"judgments[{i}]", "expected an object {rater, judgment}")
        votes[check_field(judgment, "judgment", str, path, line, where=f"judgments[{i}].").lower()] += 1
    return votes


# ----------------------------------------------------------------------------------------------------------------
# LAMA-UHN and the common vocabulary
# ----------------------------------------------------------------------------------------------------------------


def uhn_filter(facts: Iterable[dict]) -> tuple[list[dict], dict]:
    """LAMA-UHN's string-match filter: drop a fact when its lower-cased object label is a substring of its
    lower-cased subject label ("Apple Watch" — "Apple"), which a model can answer from the name alone.

    Returns the kept facts and ``{"kept", "dropped", "per_relation": {relation: {"total", "dropped"}}}``.
    UHN's second filter (drop person names whose language/nationality a cased BERT guesses from the name) needs a
    cased masked LM, which is not available offline here, so it is not applied.
    """
    kept, per_relation = [], {}
    for fact in facts:
        counts = per_relation.setdefault(fact["relation"], {"total": 0, "dropped": 0})
        counts["total"] += 1
        if fact["obj_label"].lower() in fact["sub_label"].lower():
            counts["dropped"] += 1
        else:
            kept.append(fact)
    dropped = sum(c["dropped"] for c in per_relation.values())
    return kept, {"kept": len(kept), "dropped": dropped, "per_relation": per_relation}


def common_vocab(path: str | Path | None = None) -> list[str]:
    """LAMA's common vocabulary (``common_vocab_cased.txt``, 21,018 tokens), in file order."""
    path = Path(path) if path else data_path("lama", "common_vocab_cased.txt")
    words = [line.strip() for line in text_lines(path) if line.strip()]
    if not words:
        raise DataFormatError(path, None, None, "empty vocabulary file")
    return words
