"""Bad input is either an error naming file, line and field, or a counted skip report. Never a silent drop."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DataFormatError(ValueError):
    """A malformed record: says which file, which line (1-based) and which field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


def read_text(path: str | Path) -> str:
    """A data file's text, decoded as UTF-8 (a leading byte-order mark dropped) — the one way loaders read a file.

    A byte that is not UTF-8 raises :class:`DataFormatError` naming the file, the line and the column; so does a
    file with nothing but white space in it (every loader treats an empty file as an error, never as "no records").
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        raise DataFormatError(path, data.count(b"\n", 0, error.start) + 1, None,
                              f"not UTF-8 text: byte 0x{data[error.start]:02x} at byte column "
                              f"{error.start - line_start + 1} ({error.reason})") from None
    if not text.strip():
        raise DataFormatError(path, None, None, "empty file: no records in it")
    return text[1:] if text.startswith("\ufeff") else text


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_problem(value: str) -> str | None:
    """What is wrong with a decoded JSON string holding a lone surrogate escape (``"\\ud800"`` alone decodes, but
    is no Unicode text: it cannot be written out, tokenised or stored), or None. A valid pair decodes to one
    character and passes."""
    found = _LONE_SURROGATE.search(value)
    if found is None:
        return None
    return (f"a lone surrogate escape \\u{ord(found.group()):04x} at character {found.start()}: not Unicode text "
            "(the JSON is damaged)")


def text_lines(path: str | Path) -> list[str]:
    """:func:`read_text` cut at ``\\n`` only (``\\r`` dropped at line ends): ``lines[i]`` is line ``i + 1``.

    Unlike ``str.splitlines`` it does not cut at the Unicode line separators a JSON string may hold."""
    return [line[:-1] if line.endswith("\r") else line for line in read_text(path).split("\n")]


@dataclass
class SkipReport:
    """Counts of records kept and skipped, by reason, with a few examples of each reason."""

    source: str
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def keep(self, n: int = 1) -> None:
        self.kept += n

    def skip(self, reason: str, where: str | None = None) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if where is not None and len(shown) < self.max_examples:
            shown.append(where)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def merge(self, other: "SkipReport") -> "SkipReport":
        self.kept += other.kept
        self.skipped.update(other.skipped)
        for reason, shown in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(shown[: self.max_examples - len(mine)])
        return self

    def to_dict(self) -> dict:
        return {"source": self.source, "kept": self.kept, "skipped": dict(self.skipped),
                "examples": self.examples}

    @classmethod
    def from_dict(cls, data: dict) -> "SkipReport":
        """The report :meth:`to_dict` wrote (e.g. read back from a stats JSON)."""
        return cls(source=data["source"], kept=data["kept"], skipped=Counter(data["skipped"]),
                   examples={reason: list(shown) for reason, shown in data["examples"].items()})

    def __str__(self) -> str:
        lines = [f"{self.source}: kept {self.kept}, skipped {self.total_skipped}"]
        for reason, n in self.skipped.most_common():
            eg = "; ".join(self.examples.get(reason, []))
            lines.append(f"  {n} × {reason}" + (f" (e.g. {eg})" if eg else ""))
        return "\n".join(lines)
