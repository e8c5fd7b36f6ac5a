"""What a statement-ranking run has finished so far, on disk: a killed run resumes where it stopped.

:func:`kadapter.probing.statements.statement_probe` with an output folder writes every finished relation to
``<output>/partial/<relation>.json`` (atomically: a temporary file renamed into place, so a killed run never leaves
half a file), beside ``<output>/partial/identity.json``, the run's identity:

- the backbone's fingerprints (:func:`kadapter.state_store.backbone_fingerprints`, the key of every cache);
- the dataset's content (:func:`kadapter.checkpoints.data_fingerprint` over every relation's templates, answer space
  and instances, in order);
- each head's identity: its name, class, recipe, weights fingerprint and those of the adapters it reads;
- the template index and whether the statement scores are kept.

A rerun with the same identity skips the relations already on disk and says how many it resumed; another identity (a
changed dataset, head, adapter or backbone) starts over, saying what changed. The batch size is not part of it: it
changes no prediction (only float rounding in the last digits of a score).

A relation file holds its chance level and, per head, what the results keep of it (:data:`KEPT`): accuracy, 0/1
per instance, the predicted labels, a scores summary (per instance the gold statement's score, the top score and the
gold's rank) and, when kept, every statement's score. Files are read back with :func:`kadapter.safe_files.read_json`; a damaged or
foreign relation file is scored again, and said so.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Mapping

import torch

from ..backbone import weights_fingerprint
from ..checkpoints import data_fingerprint
from ..progress import progress_log
from ..run_folder import write_json
from ..safe_files import DamagedFileError, check_name, read_json
from ..state_store import backbone_fingerprints, key_digest

PARTIAL_DIR = "partial"
IDENTITY_NAME = "identity.json"
FORMAT = 1
KEPT = ("accuracy", "correct", "predictions", "score_summary")  # per head and relation, plus "scores" when kept


def head_identity(model, head: torch.nn.Module) -> dict:
    """What a head's scores depend on besides the backbone: its kind, recipe, weights and the adapters it reads."""
    adapters = list(getattr(head, "adapter_names", ()))
    return {"class": type(head).__name__, "recipe": getattr(head, "recipe", None),
            "weights": weights_fingerprint(head),
            "adapters": {name: weights_fingerprint(model.adapters[name]) for name in adapters}}


def dataset_fingerprint(dataset: Mapping) -> str:
    """The content of every relation asked: templates, answer space (labels and ids) and instances, in order."""
    return data_fingerprint([{"relation": r.relation, "templates": r.templates, "answers": r.answers,
                              "answer_ids": r.answer_ids, "instances": r.instances} for r in dataset.values()])


def run_identity(model, heads: Mapping[str, torch.nn.Module], dataset: Mapping, *, template_index: int,
                 keep_scores: bool) -> dict:
    identity = {"format": FORMAT, **backbone_fingerprints(model.backbone), "dataset": dataset_fingerprint(dataset),
                "heads": {name: head_identity(model, head) for name, head in heads.items()},
                "template_index": template_index, "keep_scores": keep_scores}
    # as it reads back from identity.json (a recipe's tuples become lists), so that equal identities compare equal
    return json.loads(json.dumps(identity, default=str))


def score_summary(table: torch.Tensor, gold: torch.Tensor) -> dict:
    """Per instance: the gold statement's score, the top score, and the gold's rank (1 = top; ties count for it)."""
    gold_scores = table.gather(1, gold[:, None])[:, 0]
    return {"gold": gold_scores.tolist(), "top": table.max(dim=1).values.tolist(),
            "gold_rank": (1 + (table > gold_scores[:, None]).sum(dim=1)).tolist()}


def _what_changed(saved: Mapping, now: Mapping) -> str:
    changed = [key for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key)]
    if "heads" in changed and isinstance(saved.get("heads"), dict):
        heads = sorted(set(saved["heads"]) | set(now["heads"]))
        differing = [h for h in heads if saved["heads"].get(h) != now["heads"].get(h)]
        changed[changed.index("heads")] = f"heads ({', '.join(differing)})"
    return ", ".join(changed)


class PartialResults:
    """The finished relations of one run identity under ``<output_dir>/partial``."""

    def __init__(self, output_dir: str | Path, identity: dict):
        self.folder = Path(output_dir) / PARTIAL_DIR
        self.identity = identity
        self.digest = key_digest(identity)
        self.heads = list(identity["heads"])
        self._start_over_if_changed()

    def _start_over_if_changed(self) -> None:
        path = self.folder / IDENTITY_NAME
        if path.is_file():
            try:
                saved = read_json(path, required=("identity",))["identity"]
            except DamagedFileError as err:
                saved, why = None, f"its identity cannot be read ({err})"
            else:
                why = f"{_what_changed(saved, self.identity) if isinstance(saved, dict) else 'identity'} changed"
            if saved != self.identity:
                progress_log(f"statement probe: starting over in {self.folder}: {why}")
                shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            write_json(path, {"identity": self.identity, "digest": self.digest})

    def _path(self, relation: str) -> Path:
        # relation names become file names here: plain names only, never a path out of the folder
        return self.folder / f"{check_name(relation, what='relation')}.json"

    def load(self, relation: str) -> dict | None:
        """The finished results of ``relation`` (head -> kept fields), or None when it is to be scored."""
        path = self._path(relation)
        if not path.is_file():
            return None
        try:
            record = read_json(path, required=("digest", "relation", "heads"))
        except DamagedFileError as err:
            warnings.warn(f"{err}; relation {relation} is scored again", stacklevel=2)
            return None
        heads = record["heads"]
        wanted = KEPT + (("scores",) if self.identity["keep_scores"] else ())
        if record["digest"] != self.digest or record["relation"] != relation or not isinstance(heads, dict) \
                or list(heads) != self.heads or not all(isinstance(h, dict) and set(wanted) <= set(h)
                                                        for h in heads.values()):
            warnings.warn(f"{path}: not a finished result of this run; relation {relation} is scored again",
                          stacklevel=2)
            return None
        return heads

    def save(self, relation: str, heads: Mapping[str, Mapping], *, statements: int, chance: float) -> None:
        write_json(self._path(relation), {"digest": self.digest, "relation": relation, "statements": statements,
                                          "chance": chance,
                                          "heads": {name: dict(entry) for name, entry in heads.items()}})
