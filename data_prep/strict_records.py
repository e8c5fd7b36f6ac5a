"""Strict reading of the evaluation sets' records: what an unusable record becomes (:class:`Rejecter`: a counted skip
in a :class:`~data_prep.report.SkipReport`, or with ``strict`` an error), and JSON read record by record
(:func:`json_records`, :class:`JsonScanner`) so that every record knows the line it starts on, with typed field
access (:class:`JsonRecord`) whose every complaint names the file, the line, the record and the field.

Used by the loaders of :mod:`data_prep.eval_sets` (OpenEntity, TACRED, SemEval-2010, FewRel, CosmosQA).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .report import DataFormatError, SkipReport, read_text, surrogate_problem


class Rejecter:
    """One place that decides what an unusable record becomes: a counted skip, or (strict) an error."""

    def __init__(self, path: Path, report: SkipReport, strict: bool):
        self.path, self.report, self.strict = path, report, strict

    def __call__(self, line: int, field: str | None, reason: str, detail: str = "", record: str = "") -> None:
        if self.strict:
            raise DataFormatError(self.path, line, field, (f"{record}: " if record else "") + reason
                                  + (f": {detail}" if detail else ""))
        self.report.skip(reason, f"{self.path.name}:{line}" + (f" {record}" if record else "")
                         + (f" ({field})" if field else ""))


class JsonRecord:
    """A decoded JSON record with where it came from, so every complaint names file, line, record and field.

    The real files are often one-line JSON arrays, where the line alone does not find a record: the message also
    says which record (``record 17``)."""

    def __init__(self, raw: Any, path: Path, line: int, label: str):
        self.raw, self.path, self.line, self.label = raw, path, line, label
        if not isinstance(raw, dict):
            self.fail(None, f"expected a JSON object, found {type(raw).__name__}")

    def fail(self, field: str | None, message: str):
        raise DataFormatError(self.path, self.line, field, f"{self.label}: {message}")

    def get(self, name: str, kind: type, item_kind: type | None = None) -> Any:
        """``raw[name]``, checked to exist and to be a ``kind`` (for a list: of ``item_kind`` items)."""
        if name not in self.raw:
            self.fail(name, "missing")
        value = self.raw[name]
        # bool is an int to Python, never to a data format.
        if isinstance(value, bool) or not isinstance(value, kind):
            self.fail(name, f"expected {kind.__name__}, found {type(value).__name__} {value!r:.60}")
        for i, item in enumerate(value if item_kind is not None else ()):
            if isinstance(item, bool) or not isinstance(item, item_kind):
                self.fail(name, f"item {i} should be {item_kind.__name__}, found {type(item).__name__} {item!r:.60}")
            if isinstance(item, str) and surrogate_problem(item):
                self.fail(name, f"item {i} holds {surrogate_problem(item)}")
        if isinstance(value, str) and surrogate_problem(value):
            self.fail(name, surrogate_problem(value))
        return value


class JsonScanner:
    """Walks a JSON document record by record, so every record knows the line it starts on."""

    _SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, path: Path):
        self.path = path
        self.text = read_text(path)
        self.pos = 0
        self._line_pos, self._line = 0, 1
        self._decoder = json.JSONDecoder()

    def line(self, pos: int | None = None) -> int:
        pos = self.pos if pos is None else pos
        if pos < self._line_pos:  # never happens in a forward walk; stay correct anyway
            return self.text.count("\n", 0, pos) + 1
        self._line += self.text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def skip_space(self) -> str:
        self.pos = self._SPACE.match(self.text, self.pos).end()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, chars: str) -> str:
        found = self.skip_space()
        if not found or found not in chars:
            what = repr(found) if found else "end of file"
            raise DataFormatError(self.path, self.line(), None,
                                  f"malformed JSON: expected one of {chars!r}, found {what}")
        self.pos += 1
        return found

    def value(self) -> tuple[int, Any]:
        self.skip_space()
        line = self.line()
        try:
            value, self.pos = self._decoder.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as error:
            # name the line the broken record starts on; the decoder's position goes in the message
            raise DataFormatError(self.path, line, None, f"malformed JSON: {error.msg} (at line {error.lineno}, "
                                                         f"column {error.colno})") from error
        return line, value

    def array_items(self) -> Iterator[tuple[int, Any]]:
        """Items of the array starting at the current position, with their lines."""
        self.expect("[")
        if self.skip_space() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.expect(",]") == "]":
                return

    def end(self) -> None:
        if self.skip_space():
            raise DataFormatError(self.path, self.line(), None, "malformed JSON: extra data after the document")


def json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, record) from a JSON array file, or from a JSON-lines file (one object per line)."""
    scanner = JsonScanner(path)
    if scanner.skip_space() == "[":
        yield from scanner.array_items()
        scanner.end()
        return
    for number, line in enumerate(scanner.text.split("\n"), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(path, number, None,
                                      f"malformed JSON: {error.msg} (column {error.colno})") from error
