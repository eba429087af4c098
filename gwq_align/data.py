"""Training data for gwq-align: find the train/val files and check them before ms-swift runs.

`--dataset` is either a directory from `gwq-data prepare` (we take its `sft/` or `dpo/`
split) or one JSONL file of ms-swift rows. Every row is checked here, so a bad row fails
in a second with `file:line: reason` instead of minutes later inside ms-swift.

    >>> files = resolve("dpo", Path("out/prepared"))              # doctest: +SKIP
    >>> files.train, files.val                                     # doctest: +SKIP
    (PosixPath('out/prepared/dpo/train.jsonl'), PosixPath('out/prepared/dpo/val.jsonl'))

What it leaves out: token-length checks (ms-swift drops rows over max_length and says how
many), hub dataset ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gwq_data.errors import UsageError
from gwq_data.jsonl import BadLine, file_sha256, read_rows

ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class DatasetFiles:
    train: Path
    val: Optional[Path] = None

    def items(self) -> list[tuple[str, Path]]:
        return [("train", self.train)] + ([("val", self.val)] if self.val else [])


def resolve(kind: str, dataset: Path, val: Optional[Path] = None) -> DatasetFiles:
    """Map a prepared dir or a JSONL file to the train (and val) files for `kind` (sft|dpo)."""
    dataset = Path(dataset)
    if not dataset.exists():
        raise UsageError(f"{dataset}: dataset not found; pass a `gwq-data prepare` output dir or a JSONL file")
    if dataset.is_dir():
        split = dataset / kind
        train = split / "train.jsonl"
        if not train.is_file():
            raise UsageError(f"{dataset}: no {kind}/train.jsonl inside; is it a `gwq-data prepare --out-dir` directory?")
        found_val = split / "val.jsonl"
        if val is None and found_val.is_file() and found_val.stat().st_size > 0:
            val = found_val
        return DatasetFiles(train, val)
    if val is not None and not Path(val).is_file():
        raise UsageError(f"{val}: validation file not found")
    return DatasetFiles(dataset, Path(val) if val else None)


def _row_problem(kind: str, data) -> Optional[str]:
    if not isinstance(data, dict):
        return f"not_an_object: expected a JSON object, got {type(data).__name__}"
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no_messages: expected ms-swift rows {\"messages\": [...]}; run `gwq-data prepare` to convert"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return f"bad_message: messages[{i}] needs a role in {sorted(ROLES)} and a string content"
    if kind == "sft" and not any(m["role"] == "assistant" for m in messages):
        return "no_assistant: nothing to learn; the row has no assistant message"
    if kind == "dpo":
        if messages[-1]["role"] != "assistant":
            return "no_chosen: a DPO row's last message must be the chosen assistant reply"
        rejected = data.get("rejected_response")
        if not isinstance(rejected, str) or not rejected.strip():
            return "no_rejected_response: DPO rows need a non-empty \"rejected_response\" (use `gwq-data prepare`'s dpo/ split)"
    return None


def check_file(kind: str, path: Path) -> dict:
    """Check every row; return {path, sha256, rows}. Raises UsageError naming the first bad line."""
    if not path.is_file():
        raise UsageError(f"{path}: dataset file not found")
    rows, bad, first = 0, 0, None
    for item in read_rows(path):
        problem = f"{item.reason}: {item.detail}" if isinstance(item, BadLine) else _row_problem(kind, item.data)
        if problem:
            bad += 1
            first = first or f"{path}:{item.line}: {problem}"
        else:
            rows += 1
    if first:
        more = f" (and {bad - 1} more bad rows)" if bad > 1 else ""
        raise UsageError(first + more)
    if rows == 0:
        raise UsageError(f"{path}: no rows; nothing to train on")
    return {"path": str(path), "sha256": file_sha256(path), "rows": rows}


def check(kind: str, files: DatasetFiles) -> list[dict]:
    """Check all files; the run record's `dataset.files` entries."""
    return [dict(check_file(kind, path), split=split) for split, path in files.items()]


