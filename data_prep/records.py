"""The one relation-classification record schema of the project, its checks, and the paper's entity markers.

Every relation-classification record — knowledge records for the factual adapter (:mod:`data_prep.factual`,
:mod:`data_prep.alignment`) and the evaluation sets (:mod:`data_prep.eval_sets`: TACRED, SemEval-2010 Task 8,
FewRel) — carries :data:`RC_FIELDS`::

    {id: str, tokens: list[str], subj_start, subj_end, obj_start, obj_end: int (token indices, END EXCLUSIVE),
     relation: str, subj_id: str, obj_id: str, source: str}

``subj_id``/``obj_id`` are knowledge-base ids (Wikidata QIDs, or document-local ids such as
``redocred_dev:12:E3``), the empty string where a source has none (TACRED, SemEval). ``id`` is unique within a
source and stable: the same input gives the same ids. A source may add fields (TACRED's ``subj_type``, FewRel's
``subj_name``).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from datasets import Dataset, Features, Sequence as SequenceFeature, Value

RC_FIELDS = ("id", "tokens", "subj_start", "subj_end", "obj_start", "obj_end", "relation", "subj_id", "obj_id",
             "source")
_INT, _STR = Value("int64"), Value("string")
#: ``datasets`` features of :data:`RC_FIELDS`; loaders with extra fields extend it (``{**RC_FEATURES, ...}``).
RC_FEATURES = Features({"id": _STR, "tokens": SequenceFeature(_STR), "subj_start": _INT, "subj_end": _INT,
                        "obj_start": _INT, "obj_end": _INT, "relation": _STR, "subj_id": _STR, "obj_id": _STR,
                        "source": _STR})
_FIELD_TYPES = {name: (list if name == "tokens" else int if name.endswith(("_start", "_end")) else str)
                for name in RC_FIELDS}
SUBJ_MARKER, OBJ_MARKER = "@", "#"


# ----------------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------------


def span_problem(start: int, end: int, length: int) -> str | None:
    """Why an end-exclusive span cannot be used in a sequence of ``length``, or None."""
    if end < start:
        return "reversed span"
    if start < 0 or end > length:
        return "span outside the sentence"
    if end == start:
        return "empty span"
    return None


def rc_problem(record: dict) -> tuple[str, str] | None:
    """``(field, reason)`` that makes a relation-classification record unusable, or None.

    The reasons are the skip reasons the loaders count: empty text, a reversed / empty / outside span, subject
    and object overlapping, an empty label.
    """
    tokens = record["tokens"]
    if not tokens or not any(t.strip() for t in tokens):
        return "tokens", "empty text"
    for role in ("subj", "obj"):
        problem = span_problem(record[f"{role}_start"], record[f"{role}_end"], len(tokens))
        if problem:
            return f"{role}_start", problem
    if record["subj_start"] < record["obj_end"] and record["obj_start"] < record["subj_end"]:
        return "obj_start", "subject and object spans overlap"
    if not record["relation"]:
        return "relation", "empty label"
    return None


def check_spans(n_tokens: int, subj: tuple[int, int], obj: tuple[int, int]) -> None:
    """Spans must be non-empty, inside the sentence and disjoint (end exclusive); raises ``ValueError``."""
    for name, (start, end) in (("subject", subj), ("object", obj)):
        if span_problem(start, end, n_tokens):
            raise ValueError(f"{name} span [{start}, {end}) is empty or outside a sentence of {n_tokens} tokens")
    if subj[0] < obj[1] and obj[0] < subj[1]:
        raise ValueError(f"subject span {list(subj)} overlaps object span {list(obj)}")


def validate_rc_record(record: dict) -> dict:
    """The record itself if it has every :data:`RC_FIELDS` field with the right type and usable spans; else
    ``ValueError`` naming the record and the field. Extra fields are allowed."""
    where = f"record {record.get('id', '?')!r}" if isinstance(record, dict) else "record"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a dict, found {type(record).__name__}")
    for name, kind in _FIELD_TYPES.items():
        if name not in record:
            raise ValueError(f"{where}: field '{name}' missing")
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"{where}: field '{name}' should be {kind.__name__}, found {type(value).__name__}")
    if not all(isinstance(t, str) for t in record["tokens"]):
        raise ValueError(f"{where}: field 'tokens' holds a token that is not a string")
    problem = rc_problem(record)
    if problem:
        raise ValueError(f"{where}: field '{problem[0]}': {problem[1]}")
    return record


def rc_dataset(records: Iterable[dict], features: Features = RC_FEATURES) -> Dataset:
    """A ``datasets.Dataset`` of relation-classification records, each checked by :func:`validate_rc_record`.

    ``features`` must include :data:`RC_FEATURES` (extra columns are the source's own fields); fields of a record
    not in ``features`` are not carried.
    """
    missing = [name for name in RC_FIELDS if name not in features]
    if missing:
        raise ValueError(f"features lack the relation-classification fields {missing}")
    columns: dict[str, list] = {name: [] for name in features}
    for record in records:
        validate_rc_record(record)
        for name in features:
            columns[name].append(record[name])
    return Dataset.from_dict(columns, features=features)


def make_record(tokens: Sequence[str], subj: tuple[int, int], obj: tuple[int, int], relation: str, subj_id: str,
                obj_id: str, source: str, id: str = "") -> dict:
    """A record in the project's schema; raises ``ValueError`` on empty or overlapping spans.

    ``id`` defaults to the empty string only for callers that assign ids afterwards; records leaving a loader
    always have one.
    """
    check_spans(len(tokens), subj, obj)
    return {"id": id, "tokens": list(tokens), "subj_start": subj[0], "subj_end": subj[1], "obj_start": obj[0],
            "obj_end": obj[1], "relation": relation, "subj_id": subj_id, "obj_id": obj_id, "source": source}


# ----------------------------------------------------------------------------------------------------------------
# Entity markers
# ----------------------------------------------------------------------------------------------------------------


def insert_markers(tokens: Sequence[str], subj_start: int, subj_end: int, obj_start: int,
                   obj_end: int) -> tuple[list[str], int, int]:
    """The paper's marked sentence ``… @ subject @ … # object # …`` at word level.

    Works whichever entity comes first. Returns the marked tokens and the indices of the opening ``@`` and ``#``
    (the positions whose encodings a relation head reads).
    """
    check_spans(len(tokens), (subj_start, subj_end), (obj_start, obj_end))
    opening = {subj_start: SUBJ_MARKER, obj_start: OBJ_MARKER}
    closing = {subj_end: SUBJ_MARKER, obj_end: OBJ_MARKER}
    marked: list[str] = []
    where: dict[str, int] = {}
    for i in range(len(tokens) + 1):
        if i in closing:  # close before opening: "@ a @ # b #" when the spans touch
            marked.append(closing[i])
        if i in opening:
            where[opening[i]] = len(marked)
            marked.append(opening[i])
        if i < len(tokens):
            marked.append(tokens[i])
    return marked, where[SUBJ_MARKER], where[OBJ_MARKER]


def marked_text(record: dict) -> str:
    """The record's sentence with the paper's markers, as one string: ``"@ Dante @ was born in # Florence # ."``"""
    marked, _, _ = insert_markers(record["tokens"], record["subj_start"], record["subj_end"], record["obj_start"],
                                  record["obj_end"])
    return " ".join(marked)
