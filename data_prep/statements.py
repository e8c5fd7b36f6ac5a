"""Statement-ranking probe data in lm-pub-quiz's (BEAR's) layout: read it, and build it from LAMA.

The layout (lm-pub-quiz 0.3.3, ``Dataset.from_path``) is a folder with

- ``metadata_relations.json``: ``{relation: {"templates": ["[X] was born in [Y].", ...],
  "answer_space_labels": [...], "answer_space_ids": [...], ...}}`` (other keys are relation information);
- one ``<relation>.jsonl`` per relation: ``{"sub_label", "obj_label", "obj_id"}`` per instance.

An instance is asked by filling the template with its subject and, in turn, with *every* answer of the relation's
answer space; the instance is right when the gold statement scores highest (:mod:`kadapter.probing.statements`).

Reading (:func:`read_statement_dataset`) checks what lm-pub-quiz leaves to chance: a relation file without a
metadata entry, a template without ``[X]`` or ``[Y]``, an empty answer space, labels and ids of different lengths
are errors naming the file and the relation; an instance whose gold is not in the answer space is skipped and
counted (lm-pub-quiz keeps it and can never score it right). As lm-pub-quiz, a relation whose metadata has no
answer space takes the distinct objects of its instances (by ``obj_id`` when the instances have one).

Building from LAMA (:func:`build_from_lama`): every T-REx relation of ``lama/TREx_lms_vocab`` (all 41), LAMA's
template with the space before the final punctuation removed ("[X] was born in [Y] ." -> "[X] was born in [Y].",
natural text as BEAR's templates), and as answer space the relation's distinct objects. With ``max_answers`` a
relation with more distinct objects keeps ``max_answers`` of them drawn uniformly (``random.Random`` seeded with
``"{seed}:{relation}"`` over the sorted labels), and its facts whose object was not drawn are skipped and counted;
with ``max_instances`` that many of the remaining facts are drawn the same way (seed ``"{seed}:{relation}:instances"``)
and kept in file order. ``obj_id`` is ``"<relation>:<label>"`` (the LAMA probe files carry no Wikidata ids).
Google-RE (LAMA's format, not in the shared data) is added the same way when its folder is given.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .lama import GOOGLE_RE_RELATIONS, OBJECT_SLOT, SUBJECT_SLOT, load_google_re, load_relations, load_trex_facts
from .lama import read_jsonl
from .report import DataFormatError, SkipReport, read_text

METADATA_NAME = "metadata_relations.json"
BUILD_REPORT_NAME = "build_report.json"
BUILD_RULE = ("LAMA template without the space before its final punctuation; answer space = the relation's distinct "
              "objects, capped at max_answers drawn uniformly (random.Random('{seed}:{relation}') over the sorted "
              "labels), facts with an undrawn object skipped; max_instances facts drawn (seed "
              "'{seed}:{relation}:instances'), kept in file order")


@dataclass
class StatementRelation:
    """One relation of a statement-ranking dataset: templates, answer space and the instances that can be asked."""

    relation: str
    templates: list[str]
    answers: list[str]  # answer-space labels, in the metadata's order (the order scores are reported in)
    answer_ids: list[str]
    instances: list[dict]  # {sub_label, obj_label, obj_id, answer_index, line}, in file order
    path: str  # the instance file
    info: dict = field(default_factory=dict)  # other metadata keys (label, type, ...)

    @property
    def chance(self) -> float:
        """Accuracy of a uniform random choice among the answers."""
        return 1.0 / len(self.answers)

    def template(self, index: int = 0) -> str:
        if not 0 <= index < len(self.templates):
            raise IndexError(f"{self.path}: relation {self.relation} has {len(self.templates)} template(s), "
                             f"no index {index}")
        return self.templates[index]

    def gold(self) -> list[int]:
        return [inst["answer_index"] for inst in self.instances]


# =====================================================================================================================
# Reading
# =====================================================================================================================
def check_template(template: object, path: Path | str, relation: str, where: str) -> str:
    """A template must be text with ``[X]`` and ``[Y]``; otherwise an error naming the file and relation."""
    if not isinstance(template, str) or not template.strip():
        raise DataFormatError(path, None, where, f"relation {relation}: a template must be non-empty text, "
                                                  f"got {template!r:.60}")
    for slot in (SUBJECT_SLOT, OBJECT_SLOT):
        if slot not in template:
            raise DataFormatError(path, None, where, f"relation {relation}: template {template!r} has no {slot}")
    return template


def _answer_space(entry: dict, relation: str, metadata_path: Path, rows: list[tuple[int, dict]]
                  ) -> tuple[list[str], list[str]]:
    labels, ids = entry.get("answer_space_labels"), entry.get("answer_space_ids")
    if labels is None and ids is None:  # lm-pub-quiz: the distinct objects of the instances
        by_id: dict[str, str] = {}
        for _, record in rows:
            key = str(record.get("obj_id", record["obj_label"]))
            by_id.setdefault(key, record["obj_label"])
        labels, ids = list(by_id.values()), list(by_id)
    where = f"{relation}.answer_space_labels"
    if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
        raise DataFormatError(metadata_path, None, where, f"relation {relation}: expected a list of non-empty labels")
    if ids is None:
        ids = [f"{relation}-{i}" for i in range(len(labels))]  # lm-pub-quiz's generated ids
    if not isinstance(ids, list) or len(ids) != len(labels):
        raise DataFormatError(metadata_path, None, f"{relation}.answer_space_ids",
                              f"relation {relation}: {len(labels)} labels but "
                              f"{len(ids) if isinstance(ids, list) else type(ids).__name__} ids")
    if not labels:
        raise DataFormatError(metadata_path, None, where, f"relation {relation}: empty answer space")
    return labels, [str(i) for i in ids]


def read_relation(directory: Path, relation: str, metadata: dict, report: SkipReport,
                  max_instances: int | None = None) -> StatementRelation:
    """One relation's instances and metadata; gold answers outside the answer space are skipped into ``report``."""
    metadata_path = directory / METADATA_NAME
    path = directory / f"{relation}.jsonl"
    if relation not in metadata:
        raise DataFormatError(metadata_path, None, relation,
                              f"relation {relation} (file {path.name}) has no entry in {METADATA_NAME}")
    entry = dict(metadata[relation])
    templates = entry.pop("templates", None)
    if not isinstance(templates, list) or not templates:
        raise DataFormatError(metadata_path, None, f"{relation}.templates",
                              f"relation {relation}: expected a non-empty list of templates")
    templates = [check_template(t, metadata_path, relation, f"{relation}.templates[{i}]")
                 for i, t in enumerate(templates)]
    rows = list(read_jsonl(path, {"sub_label": str, "obj_label": str}))
    labels, ids = _answer_space(entry, relation, metadata_path, rows)
    for key in ("answer_space_labels", "answer_space_ids"):
        entry.pop(key, None)
    index_of_id = {answer_id: i for i, answer_id in enumerate(ids)}
    index_of_label = {label: i for i, label in reversed(list(enumerate(labels)))}
    instances = []
    for line, record in rows:
        obj_id = record.get("obj_id")
        index = index_of_id.get(str(obj_id)) if obj_id is not None else index_of_label.get(record["obj_label"])
        if index is None:
            report.skip(f"{relation}: gold answer not in the answer space", f"{path.name}:{line}")
            continue
        if max_instances is not None and len(instances) >= max_instances:
            report.skip(f"{relation}: beyond max_instances={max_instances}")
            continue
        instances.append({"sub_label": record["sub_label"], "obj_label": record["obj_label"],
                          "obj_id": ids[index], "answer_index": index, "line": line})
        report.keep()
    return StatementRelation(relation, templates, labels, ids, instances, str(path), entry)


def read_statement_dataset(directory: str | Path, relations: Iterable[str] | None = None,
                           max_instances: int | None = None) -> tuple[dict[str, StatementRelation], SkipReport]:
    """Every ``<relation>.jsonl`` of an lm-pub-quiz dataset folder (or only ``relations``), in natural order
    (P17 before P101), and a report of the instances skipped. ``max_instances`` keeps the first ones per relation."""
    directory = Path(directory)
    metadata_path = directory / METADATA_NAME
    if not metadata_path.is_file():
        raise FileNotFoundError(f"{directory}: no {METADATA_NAME} (not an lm-pub-quiz dataset folder)")
    try:
        metadata = json.loads(read_text(metadata_path))
    except json.JSONDecodeError as error:
        raise DataFormatError(metadata_path, error.lineno, None, f"not valid JSON ({error.msg})") from None
    if not isinstance(metadata, dict):
        raise DataFormatError(metadata_path, None, None, "expected an object {relation: metadata}")
    available = sorted((p.stem for p in directory.glob("*.jsonl")), key=_natural_key)
    wanted = list(relations) if relations is not None else available
    missing = [r for r in wanted if r not in available]
    if missing:
        raise FileNotFoundError(f"{directory}: no instance file for relation(s) {missing}")
    if not wanted:
        raise FileNotFoundError(f"{directory}: no <relation>.jsonl files")
    report = SkipReport(f"statement instances in {directory}")
    return {r: read_relation(directory, r, metadata, report, max_instances) for r in wanted}, report


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# =====================================================================================================================
# Building from LAMA
# =====================================================================================================================
def natural_template(template: str) -> str:
    """LAMA's tokenised template as plain text: no space before the final punctuation."""
    return re.sub(r"\s+([.?!,;:])(\s*)$", r"\1\2", template).strip()


def _draw(items: Sequence, k: int | None, seed: str) -> list:
    """``k`` of ``items`` drawn reproducibly (all when ``k`` is None or not smaller), in their original order."""
    if k is None or len(items) <= k:
        return list(items)
    chosen = set(random.Random(seed).sample(range(len(items)), k))
    return [item for i, item in enumerate(items) if i in chosen]


def relation_entry(relation: str, template: str, facts: list[dict], info: dict, report: SkipReport, *,
                   max_answers: int | None, max_instances: int | None, seed: int) -> tuple[dict, list[dict]]:
    """(metadata entry, instances) of one relation built from its facts (see the module doc for the rule)."""
    objects = sorted({f["obj_label"] for f in facts})
    answers = _draw(objects, max_answers, f"{seed}:{relation}")
    kept_answers = set(answers)
    askable = []
    for fact in facts:
        if fact["obj_label"] in kept_answers:
            askable.append(fact)
        else:
            report.skip(f"object outside the capped answer space (max_answers={max_answers})",
                        f"{relation}:{fact['sub_label']}")
    instances = _draw(askable, max_instances, f"{seed}:{relation}:instances")
    if len(askable) > len(instances):  # counted, not listed: these are a sample's complement, not bad records
        report.skipped[f"not drawn (max_instances={max_instances})"] += len(askable) - len(instances)
    report.keep(len(instances))
    entry = {"templates": [natural_template(template)], "answer_space_labels": answers,
             "answer_space_ids": [f"{relation}:{a}" for a in answers], **info,
             "distinct_objects": len(objects), "facts": len(facts)}
    rows = [{"sub_label": f["sub_label"], "obj_label": f["obj_label"], "obj_id": f"{relation}:{f['obj_label']}"}
            for f in instances]
    return entry, rows


def build_from_lama(out_dir: str | Path, *, relations: Iterable[str] | None = None, max_answers: int | None = None,
                    max_instances: int | None = None, seed: int = 0, google_re: str | Path | None = None,
                    trex_dir: str | Path | None = None) -> dict:
    """Write an lm-pub-quiz dataset folder built from LAMA T-REx (and Google-RE when given) into ``out_dir``.

    Returns (and writes as ``build_report.json``) the rule, the sizes per relation and the counted skips."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    templates = load_relations()
    facts, _ = load_trex_facts(relations, directory=trex_dir)
    by_relation: dict[str, list[dict]] = {}
    for fact in facts:
        by_relation.setdefault(fact["relation"], []).append(fact)
    infos = {r: {"label": templates[r]["label"], "type": templates[r]["type"], "source": "LAMA T-REx"}
             for r in by_relation}
    if google_re is not None:
        google_facts, _ = load_google_re(google_re)
        for fact in google_facts:
            by_relation.setdefault(fact["relation"], []).append(fact)
            info = GOOGLE_RE_RELATIONS[fact["relation"]]
            infos[fact["relation"]] = {"label": info["label"], "type": info["type"], "source": "LAMA Google-RE"}
    report = SkipReport("LAMA facts -> statement instances")
    metadata, sizes = {}, {}
    for relation, rel_facts in sorted(by_relation.items(), key=lambda kv: _natural_key(kv[0])):
        entry, rows = relation_entry(relation, rel_facts[0]["template"], rel_facts, infos[relation], report,
                                     max_answers=max_answers, max_instances=max_instances, seed=seed)
        metadata[relation] = entry
        sizes[relation] = {"instances": len(rows), "answers": len(entry["answer_space_labels"]),
                           "facts": len(rel_facts), "distinct_objects": entry["distinct_objects"]}
        with open(out / f"{relation}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    (out / METADATA_NAME).write_text(json.dumps(metadata, indent=1, ensure_ascii=False), encoding="utf-8")
    summary = {"rule": BUILD_RULE,
               "max_answers": max_answers, "max_instances": max_instances, "seed": seed,
               "relations": sizes, "instances": sum(s["instances"] for s in sizes.values()),
               "skipped": report.to_dict()}
    (out / BUILD_REPORT_NAME).write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    return summary


def type_counts(dataset: dict[str, StatementRelation]) -> Counter:
    """Relations per LAMA type (1-1, N-1, N-M) where the metadata says it."""
    return Counter(rel.info.get("type", "unknown") for rel in dataset.values())
