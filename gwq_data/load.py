"""Read input files into checked canonical records, routing every bad line to a reject.

This is the front door of every command: read_rows (bytes → JSON) →
to_canonical (any accepted format → messages row) → check (semantic rules).

>>> for item in load(["data/sample/plain.jsonl"]):
...     if isinstance(item, Loaded): use(item.record)
...     else: rejects.append(item)          # a dict: source, line, reason, detail, raw|data
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from gwq_data.jsonl import BadLine, read_rows, reject_record
from gwq_data.records import Limits, RecordError, check, to_canonical


@dataclass
class Loaded:
    source: str
    line: int
    record: dict
    label: str | None = None  # how reports name the file; load() sets it

    @property
    def ref(self) -> str:
        """A stable id for reports: the record's own id, else file:line (the file's name, or its path
        where two inputs share a name)."""
        return self.record.get("id") or f"{self.label or Path(self.source).name}:{self.line}"


def load(paths: Iterable[str | Path], limits: Limits | None = None, *, checks: bool = True,
         count_tokens: Callable[[str], int] | None = None) -> Iterator[Loaded | dict]:
    """Yield Loaded records or reject dicts, in file order. Missing files raise UsageError."""
    from gwq_data.errors import UsageError

    limits = limits or Limits()
    paths = [Path(p) for p in paths]
    names = Counter(p.name for p in paths)
    for path in paths:
        label = path.name if names[path.name] == 1 else str(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        for row in read_rows(path):
            if isinstance(row, BadLine):
                yield row.to_reject()
                continue
            try:
                record = to_canonical(row.data)
            except RecordError as e:
                yield reject_record(row.source, row.line, e.reason, e.detail, data=row.data)
                continue
            problems = check(record, limits, count_tokens) if checks else []
            if problems:
                first = problems[0]
                yield reject_record(row.source, row.line, first.reason, first.detail, data=row.data)
            else:
                yield Loaded(row.source, row.line, record, label)


def refuse_overwriting_inputs(inputs: Iterable[str | Path], *outputs: str | Path | None) -> None:
    """Outputs are written atomically over their targets, so an output that IS an input would replace it."""
    from gwq_data.errors import UsageError

    sources = {Path(p).resolve() for p in inputs}
    for out in outputs:
        if out is not None and Path(out).resolve() in sources:
            raise UsageError(f"{out} is also an input; write outputs to another path so no input is lost")


def split_loaded(items: Iterable[Loaded | dict]) -> tuple[list[Loaded], list[dict], Counter]:
    """Collect an iterator from `load` into (records, rejects, count per reason)."""
    good, bad = [], []
    for item in items:
        (good if isinstance(item, Loaded) else bad).append(item)
    return good, bad, Counter(r["reason"] for r in bad)
