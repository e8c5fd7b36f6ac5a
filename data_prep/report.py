"""Bad input is either an error naming file, line and field, or a counted skip report. Never a silent drop."""
from __future__ import annotations

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
