"""Loaders for the evaluation sets: OpenEntity (entity typing), TACRED-format JSON, SemEval-2010 Task 8 and FewRel
(relation classification), CosmosQA (multiple-choice QA).

Every loader returns ``(datasets.Dataset, SkipReport)``.

* A file that cannot be read as its format (malformed JSON or CSV, a missing field, a field of the wrong type, a
  broken SemEval block) raises :class:`DataFormatError` naming the file, the 1-based line and the field. In a JSON
  array the line is the one the record starts on.
* A well-formed record whose content is unusable (empty text, a span outside the sentence, reversed or empty, the
  subject overlapping the object, a label outside the label set) is skipped and counted in the report, with
  ``file:line`` examples; ``strict=True`` raises instead.

Both rules, and JSON read record by record with the line each record starts on, are :mod:`data_prep.strict_records`.

Relation-classification records follow the project's one schema, :data:`data_prep.records.RC_FIELDS`:
``{id, tokens, subj_start, subj_end, obj_start, obj_end, relation, subj_id, obj_id, source}`` with token spans END
EXCLUSIVE (TACRED's inclusive ends are converted); ``subj_id``/``obj_id`` are Wikidata QIDs for FewRel and empty
for TACRED and SemEval. Each set adds its own fields (TACRED ``subj_type``/``obj_type``, FewRel
``subj_name``/``obj_name``).
"""
from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Sequence as HFSequence, Value

from .paths import data_path
from .records import RC_FEATURES, rc_dataset, rc_problem, span_problem
from .report import DataFormatError, SkipReport, read_text, text_lines
from .strict_records import JsonRecord, JsonScanner, Rejecter, json_records
from .text import simple_tokenize, tokenize_tagged  # noqa: F401 (simple_tokenize re-exported)

_INT, _STR = Value("int64"), Value("string")
OPENENTITY_FEATURES = Features({"id": _STR, "text": _STR, "span_start": _INT, "span_end": _INT,
                                "labels": HFSequence(_STR)})
TACRED_FEATURES = Features({**RC_FEATURES, "subj_type": _STR, "obj_type": _STR})
SEMEVAL_FEATURES = Features(RC_FEATURES)
FEWREL_FEATURES = Features({**RC_FEATURES, "subj_name": _STR, "obj_name": _STR})
COSMOSQA_FEATURES = Features({"id": _STR, "context": _STR, "question": _STR, "choices": HFSequence(_STR),
                              "label": _INT})

SEMEVAL_RELATIONS = ("Cause-Effect", "Component-Whole", "Content-Container", "Entity-Destination", "Entity-Origin",
                     "Instrument-Agency", "Member-Collection", "Message-Topic", "Product-Producer")
#: The 19 SemEval-2010 Task 8 labels: 9 relations in both directions, and Other.
SEMEVAL_LABELS = tuple(f"{r}({d})" for r in SEMEVAL_RELATIONS for d in ("e1,e2", "e2,e1")) + ("Other",)
COSMOSQA_COLUMNS = ("id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label")
# TACRED keeps the Penn Treebank escapes; sub-word tokenizers should see the brackets themselves.
PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


# --------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------

def _dataset(records: list[dict], features: Features) -> Dataset:
    if not records:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return Dataset.from_list(records, features=features)


# --------------------------------------------------------------------------------------------------------------
# OpenEntity (ERNIE / K-Adapter format)
# --------------------------------------------------------------------------------------------------------------

def openentity_types(path: str | Path | None = None) -> list[str]:
    """OpenEntity's 9 general types, from ``tags.txt`` (default: the shared ``ernie_format/tags.txt``)."""
    path = Path(path) if path is not None else data_path("entity_typing_openentity", "ernie_format", "tags.txt")
    return [line.strip() for line in text_lines(path) if line.strip()]


def read_openentity(path: str | Path, *, label_set: Sequence[str] | None = None,
                    strict: bool = False) -> tuple[Dataset, SkipReport]:
    """OpenEntity mentions ``{id, text, span_start, span_end, labels}`` (character span, end exclusive).

    ``label_set`` defaults to ``tags.txt`` beside the file (no label check if there is none). A mention with no
    label is kept: 354 / 386 / 400 of the real train / dev / test mentions have none of the 9 types.
    """
    path = Path(path)
    if label_set is None and (path.parent / "tags.txt").exists():
        label_set = openentity_types(path.parent / "tags.txt")
    allowed = set(label_set) if label_set is not None else None
    report = SkipReport(source=str(path))
    reject = Rejecter(path, report, strict)
    records = []
    for index, (line, raw) in enumerate(json_records(path)):
        rec = JsonRecord(raw, path, line, f"record {index}")
        text, start, end = rec.get("sent", str), rec.get("start", int), rec.get("end", int)
        labels = rec.get("labels", list, item_kind=str)
        if not text.strip():
            reject(line, "sent", "empty text", record=rec.label)
            continue
        problem = span_problem(start, end, len(text)) or ("empty span" if not text[start:end].strip() else None)
        if problem:
            reject(line, "start", problem, f"[{start}, {end}) in a text of {len(text)} characters", rec.label)
            continue
        unknown = [label for label in labels if allowed is not None and label not in allowed]
        if unknown:
            reject(line, "labels", "label not in label set", ", ".join(unknown), rec.label)
            continue
        records.append({"id": f"{path.stem}-{index}", "text": text, "span_start": start, "span_end": end,
                        "labels": labels})
        report.keep()
    return _dataset(records, OPENENTITY_FEATURES), report


def load_openentity(split: str = "train", **kwargs) -> tuple[Dataset, SkipReport]:
    """The shared OpenEntity split (``train`` / ``dev`` / ``test``, 1,998 mentions each), ERNIE format."""
    return read_openentity(data_path("entity_typing_openentity", "ernie_format", f"{split}.json"), **kwargs)


# --------------------------------------------------------------------------------------------------------------
# TACRED JSON
# --------------------------------------------------------------------------------------------------------------

def read_tacred(path: str | Path, *, relations: Sequence[str] | None = None, strict: bool = False,
                source: str | None = None) -> tuple[Dataset, SkipReport]:
    """TACRED-format JSON as relation-classification records (ends made exclusive, PTB brackets unescaped).

    Keeps ``id``, ``subj_type`` and ``obj_type``; the optional ``stanford_*`` annotations are not carried.
    TACRED has no knowledge-base ids (``subj_id``/``obj_id`` are empty). ``relations``, if given, is the label
    set; ``source`` defaults to ``tacred_{file stem}``.
    """
    path = Path(path)
    source = source or f"tacred_{path.stem}"
    allowed = set(relations) if relations is not None else None
    report = SkipReport(source=str(path))
    reject = Rejecter(path, report, strict)
    records = []
    for index, (line, raw) in enumerate(json_records(path)):
        rec = JsonRecord(raw, path, line, f"record {index}")
        tokens = rec.get("token", list, item_kind=str)
        record = {"id": rec.get("id", str), "tokens": [PTB_ESCAPES.get(t, t) for t in tokens],
                  "relation": rec.get("relation", str), "subj_id": "", "obj_id": "", "source": source,
                  "subj_type": rec.get("subj_type", str), "obj_type": rec.get("obj_type", str)}
        spans = {name: rec.get(name, int) for name in ("subj_start", "subj_end", "obj_start", "obj_end")}
        reversed_role = next((role for role in ("subj", "obj") if spans[f"{role}_end"] < spans[f"{role}_start"]),
                             None)
        if reversed_role:  # checked on TACRED's inclusive ends, before they become exclusive
            reject(line, f"{reversed_role}_end", "reversed span", record=rec.label)
            continue
        record.update(subj_start=spans["subj_start"], subj_end=spans["subj_end"] + 1,
                      obj_start=spans["obj_start"], obj_end=spans["obj_end"] + 1)
        problem = rc_problem(record)
        if problem:
            reject(line, *problem, record=rec.label)
            continue
        if allowed is not None and record["relation"] not in allowed:
            reject(line, "relation", "label not in label set", record["relation"], rec.label)
            continue
        records.append(record)
        report.keep()
    return rc_dataset(records, TACRED_FEATURES), report


def load_tacred_sample(split: str = "train", **kwargs) -> tuple[Dataset, SkipReport]:
    """The 20-example public TACRED sample split (``train`` / ``dev`` / ``test``); a format fixture only."""
    kwargs.setdefault("source", f"tacred_sample_{split}")
    return read_tacred(data_path("tacred_sample", f"{split}.json"), **kwargs)


# --------------------------------------------------------------------------------------------------------------
# SemEval-2010 Task 8
# --------------------------------------------------------------------------------------------------------------

_SEMEVAL_SENTENCE = re.compile(r'^(\d+)\t"(.*)"$')
SEMEVAL_TAGS = ("e1", "e2")


def _semeval_tokens(sentence: str) -> tuple[list[str], dict[str, tuple[int, int]]] | None:
    """Tokens and end-exclusive spans of e1/e2; None when the markers are not exactly one pair each."""
    return tokenize_tagged(sentence, SEMEVAL_TAGS)


def _semeval_blocks(path: Path) -> Iterator[tuple[int, str, str, int, str]]:
    """(line, id, sentence, label line number, label) from the official 4-line-per-example text format."""
    lines = text_lines(path)
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        match = _SEMEVAL_SENTENCE.match(lines[i])
        if match is None:
            raise DataFormatError(path, i + 1, "sentence", f'expected \'<id>\\t"<sentence>"\', found {lines[i]!r:.80}')
        if i + 1 >= len(lines) or not lines[i + 1].strip():
            raise DataFormatError(path, i + 2, "relation", "missing relation line after the sentence")
        if i + 2 < len(lines) and lines[i + 2].strip() and not lines[i + 2].startswith("Comment"):
            raise DataFormatError(path, i + 3, "comment", f"expected 'Comment: ...', found {lines[i + 2]!r:.80}")
        yield i + 1, match.group(1), match.group(2), i + 2, lines[i + 1].strip()
        i += 3


def _semeval_keys(path: Path) -> dict[str, tuple[int, str]]:
    keys = {}
    for number, line in enumerate(text_lines(path), start=1):
        if line.strip():
            parts = line.split("\t")
            if len(parts) != 2:
                raise DataFormatError(path, number, "relation", f"expected '<id>\\t<label>', found {line!r:.80}")
            keys[parts[0].strip()] = (number, parts[1].strip())
    return keys


def read_semeval2010(path: str | Path, *, keys_path: str | Path | None = None, strict: bool = False,
                     source: str | None = None) -> tuple[Dataset, SkipReport]:
    """SemEval-2010 Task 8 in the official text format as relation-classification records.

    ``subj`` is ``<e1>``, ``obj`` is ``<e2>`` and ``relation`` is the full directed label, e.g.
    ``Cause-Effect(e2,e1)``. Sentences are split by :func:`~data_prep.text.tokenize_tagged` (the project's
    :func:`~data_prep.text.simple_tokenize`, with every tag ending a token). SemEval has no knowledge-base ids
    (``subj_id``/``obj_id`` are empty); ``source`` defaults to ``semeval2010_{file stem}``. With ``keys_path``
    (the official ``TEST_FILE_KEY.TXT``, undirected labels) every label is checked against the key; a
    disagreement raises.
    """
    path = Path(path)
    source = source or f"semeval2010_{path.stem.lower()}"
    keys = _semeval_keys(Path(keys_path)) if keys_path is not None else None
    report = SkipReport(source=str(path))
    reject = Rejecter(path, report, strict)
    records = []
    for line, sentence_id, sentence, label_line, label in _semeval_blocks(path):
        if keys is not None:
            key_line, key = keys.get(sentence_id, (None, None))
            if key is None:
                raise DataFormatError(keys_path, None, "relation", f"no key for sentence {sentence_id}")
            if re.sub(r"\((e[12]),(e[12])\)$", "", label) != key:
                raise DataFormatError(path, label_line, "relation",
                                      f"{label!r} disagrees with key {key!r} ({Path(keys_path).name}:{key_line})")
        parsed = _semeval_tokens(sentence)
        if parsed is None:
            reject(line, "sentence", "entity markers malformed", "need exactly one <e1>..</e1> and <e2>..</e2>")
            continue
        tokens, spans = parsed
        record = {"id": sentence_id, "tokens": tokens, "subj_start": spans["e1"][0], "subj_end": spans["e1"][1],
                  "obj_start": spans["e2"][0], "obj_end": spans["e2"][1], "relation": label, "subj_id": "",
                  "obj_id": "", "source": source}
        problem = rc_problem(record)
        if problem:
            reject(line, *problem)
            continue
        if label not in SEMEVAL_LABELS:
            reject(label_line, "relation", "label not in label set", label)
            continue
        records.append(record)
        report.keep()
    return rc_dataset(records, SEMEVAL_FEATURES), report


def load_semeval2010(split: str = "train", **kwargs) -> tuple[Dataset, SkipReport]:
    """The official SemEval-2010 Task 8 split: ``train`` (8,000) or ``test`` (2,717, checked against the keys)."""
    kwargs.setdefault("source", f"semeval2010_{split}")
    if split == "train":
        return read_semeval2010(data_path("semeval2010_task8", "SemEval2010_task8_training", "TRAIN_FILE.TXT"),
                                **kwargs)
    if split == "test":
        folder = data_path("semeval2010_task8", "SemEval2010_task8_testing_keys")
        kwargs.setdefault("keys_path", folder / "TEST_FILE_KEY.TXT")
        return read_semeval2010(folder / "TEST_FILE_FULL.TXT", **kwargs)
    raise ValueError(f"SemEval-2010 Task 8 split must be 'train' or 'test', not {split!r}")


# --------------------------------------------------------------------------------------------------------------
# FewRel
# --------------------------------------------------------------------------------------------------------------

def _fewrel_entity(rec: JsonRecord, role: str) -> tuple[str, str, list[int]]:
    entity = rec.get(role, list)
    if (len(entity) != 3 or not isinstance(entity[0], str) or not isinstance(entity[1], str)
            or not isinstance(entity[2], list) or not entity[2]
            or not all(isinstance(m, list) and m and all(isinstance(p, int) and not isinstance(p, bool) for p in m)
                       for m in entity[2])):
        rec.fail(role, f"expected [name, id, [[token positions], ...]] with at least one mention, found {entity!r:.80}")
    # FewRel lists every mention of the entity; like FewRel's own code, the first one is the span.
    return entity[0], entity[1], entity[2][0]


def read_fewrel(path: str | Path, *, strict: bool = False,
                source: str | None = None) -> tuple[Dataset, SkipReport]:
    """FewRel-format JSON ``{relation: [{tokens, h, t}, ...]}`` as relation-classification records.

    ``relation`` is the key as given (a Wikidata PID in ``val_wiki``); the head ``h`` is the subject, the tail
    ``t`` the object, each spanning its first mention. Mentions whose positions are not consecutive are skipped.
    Ids are ``"{relation}-{k}"``; ``subj_id``/``obj_id`` are the entities' ids (Wikidata QIDs), ``subj_name``/
    ``obj_name`` their names. ``source`` defaults to ``fewrel_{file stem}`` (``fewrel_val_wiki``).
    """
    path = Path(path)
    source = source or f"fewrel_{path.stem}"
    report = SkipReport(source=str(path))
    reject = Rejecter(path, report, strict)
    records = []
    scanner = JsonScanner(path)
    scanner.expect("{")
    more = scanner.skip_space() != "}"
    while more:
        key_line, relation = scanner.value()
        if not isinstance(relation, str):
            raise DataFormatError(path, key_line, "relation", f"expected a relation name, found {relation!r:.60}")
        scanner.expect(":")
        for k, (line, raw) in enumerate(scanner.array_items()):
            rec = JsonRecord(raw, path, line, f"{relation} record {k}")
            tokens = rec.get("tokens", list, item_kind=str)
            (h_name, h_id, h_pos), (t_name, t_id, t_pos) = (_fewrel_entity(rec, role) for role in "ht")
            gap = next((role for role, pos in (("h", h_pos), ("t", t_pos))
                        if pos != list(range(pos[0], pos[0] + len(pos)))), None)
            if gap:
                reject(line, gap, "non-contiguous span", record=rec.label)
                continue
            record = {"id": f"{relation}-{k}", "tokens": tokens, "subj_start": h_pos[0], "subj_end": h_pos[-1] + 1,
                      "obj_start": t_pos[0], "obj_end": t_pos[-1] + 1, "relation": relation,
                      "subj_id": h_id, "obj_id": t_id, "source": source, "subj_name": h_name, "obj_name": t_name}
            problem = rc_problem(record)
            if problem:
                reject(line, *problem, record=rec.label)
                continue
            records.append(record)
            report.keep()
        more = scanner.expect(",}") == ","
    scanner.end()
    return rc_dataset(records, FEWREL_FEATURES), report


def load_fewrel(name: str = "val_wiki", **kwargs) -> tuple[Dataset, SkipReport]:
    """A shared FewRel file: ``val_wiki`` (11,200), ``val_semeval``, ``val_nyt`` or ``val_pubmed``."""
    return read_fewrel(data_path("fewrel", f"{name}.json"), **kwargs)


# --------------------------------------------------------------------------------------------------------------
# CosmosQA
# --------------------------------------------------------------------------------------------------------------

def read_cosmosqa(path: str | Path, *, strict: bool = False) -> tuple[Dataset, SkipReport]:
    """CosmosQA CSV (``id,context,question,answer0..answer3,label``) as ``{id, context, question, choices,
    label}``; ``label`` is the index (0-3) of the right choice."""
    path = Path(path)
    report = SkipReport(source=str(path))
    reject = Rejecter(path, report, strict)
    records = []
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.DictReader(handle, strict=True)
        line = 1  # the line the next row starts on
        try:
            header = reader.fieldnames or []
            missing = [c for c in COSMOSQA_COLUMNS if c not in header]
            if missing:
                raise DataFormatError(path, 1, missing[0], f"column missing from the header {header}")
            line = reader.line_num + 1
            for row in reader:
                row_line, line = line, reader.line_num + 1  # a quoted field may span lines: name the first
                if None in row:
                    raise DataFormatError(path, row_line, None,
                                          f"{len(header) + len(row[None])} fields, expected {len(header)}")
                absent = next((c for c in COSMOSQA_COLUMNS if row[c] is None), None)
                if absent:
                    raise DataFormatError(path, row_line, absent, "missing (the row has too few fields)")
                try:
                    label = int(row["label"])
                except ValueError:
                    raise DataFormatError(path, row_line, "label",
                                          f"expected an integer, found {row['label']!r:.40}") from None
                choices = [row[f"answer{i}"] for i in range(4)]
                empty = next((c for c in ("context", "question") if not row[c].strip()), None)
                if empty:
                    reject(row_line, empty, "empty text")
                elif any(not choice.strip() for choice in choices):
                    reject(row_line, "answer", "empty choice")
                elif not 0 <= label < len(choices):
                    reject(row_line, "label", "label not in label set", str(label))
                else:
                    records.append({"id": row["id"], "context": row["context"], "question": row["question"],
                                    "choices": choices, "label": label})
                    report.keep()
        except csv.Error as error:
            raise DataFormatError(path, line, None, f"malformed CSV: {error}") from error
    return _dataset(records, COSMOSQA_FEATURES), report


def load_cosmosqa(**kwargs) -> tuple[Dataset, SkipReport]:
    """The shared CosmosQA validation split (2,985 labelled questions over 2,445 contexts)."""
    return read_cosmosqa(data_path("qa_cosmosqa", "valid.csv"), **kwargs)


def split_by_context(dataset: Dataset, test_size: float = 0.33, seed: int = 0,
                     context_column: str = "context") -> DatasetDict:
    """Split into ``train`` / ``test`` so that all questions on one context land in the same split.

    Contexts are shuffled with ``seed`` and given to ``test`` until it holds at least ``test_size`` of the
    questions; the rest go to ``train``. Same seed, same split.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, not {test_size}")
    contexts = dataset[context_column]
    by_context: dict[str, list[int]] = {}
    for index, context in enumerate(contexts):
        by_context.setdefault(context, []).append(index)
    order = list(by_context)
    random.Random(seed).shuffle(order)
    test, target = [], test_size * len(contexts)
    for context in order:
        if len(test) >= target:
            break
        test.extend(by_context[context])
    test_set = set(test)
    train = [i for i in range(len(contexts)) if i not in test_set]
    return DatasetDict(train=dataset.select(train), test=dataset.select(sorted(test)))
