"""Reading and writing JSON Lines without ever losing a line.

`read_rows` never raises on bad content: every non-blank line comes back either
as a parsed object or as a `BadLine` with a machine-readable reason, so callers
can keep the good rows and send the rest to a rejects file. It copes with a
UTF-8 BOM, CRLF line ends, invalid UTF-8 bytes and very long lines.

`atomic_writer` writes to a temp file beside the target and renames it into
place, so an interrupted run leaves either the old file or the new one, never
half of one. `append_line` is for journals that grow during long jobs: one
`write` of a whole line followed by fsync, so kill -9 can at worst leave a
torn last line, which `read_rows` reports as invalid JSON (and resumers skip).

What it leaves out: streaming of lines larger than memory, compression.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass
class Row:
    """One parsed JSON object and where it came from."""

    source: str
    line: int
    data: Any


@dataclass
class BadLine:
    """A line that could not become a record, and why."""

    source: str
    line: int
    reason: str
    detail: str
    raw: str = field(repr=False, default="")

    def to_reject(self) -> dict:
        return reject_record(self.source, self.line, self.reason, self.detail, raw=self.raw)


def reject_record(source: str, line: int, reason: str, detail: str, *, raw: Any = None, data: Any = None) -> dict:
    """The one shape of a rejects-file row, shared by every command."""
    out = {"source": source, "line": line, "reason": reason, "detail": detail}
    if data is not None:
        out["data"] = data
    elif raw is not None:
        out["raw"] = raw
    return out


def read_rows(path: str | os.PathLike) -> Iterator[Row | BadLine]:
    """Yield a `Row` or a `BadLine` for every non-blank line of `path`.

    >>> # {"a": 1}\\r\\n  -> Row(line=1, data={"a": 1})
    >>> # \\xff{         -> BadLine(reason="invalid_utf8")
    """
    source = str(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield BadLine(source, lineno, "invalid_utf8", f"byte {e.start}: {e.reason}",
                              raw.decode("utf-8", errors="replace"))
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                yield BadLine(source, lineno, "invalid_json", f"column {e.colno}: {e.msg}", text)
                continue
            except RecursionError:
                yield BadLine(source, lineno, "invalid_json", "nested too deeply", text[:1000])
                continue
            # A "\ud800" escape parses to a lone surrogate that no UTF-8 writer can write back.
            if _SURROGATE_ESCAPE.search(text):
                try:
                    dumps(data).encode("utf-8")
                except UnicodeEncodeError as e:
                    yield BadLine(source, lineno, "invalid_unicode", f"lone surrogate {e.object[e.start]!r} (a broken \\u escape)", text)
                    continue
            yield Row(source, lineno, data)


def dumps(obj: Any) -> str:
    """One JSONL line, Chinese kept readable (no \\uXXXX escapes)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _remove_stale_temps(path: Path, min_age_s: float = 60.0) -> None:
    """A writer killed with SIGKILL leaves its hidden temp file behind; the next write to the same path
    removes it. Only temps whose writer pid is gone and that have not been touched for a minute (a pid
    from another host on a shared filesystem looks gone too; an active writer keeps its mtime fresh)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        with contextlib.suppress(FileNotFoundError):
            if time.time() - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write `path` through a temp file that is renamed into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes 0600 files; give the result the mode a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8", newline=None if "b" in mode else "\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterator[Any] | list) -> int:
    """Atomically write `rows` as JSON Lines; returns the number written."""
    n = 0
    with atomic_writer(path) as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_writer(path) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)


def append_line(f: IO[str], obj: Any) -> None:
    """Append one JSON line to an open journal and make it durable.

    A single write() of the whole line keeps lines whole under concurrent
    appenders in one process; fsync makes it survive kill -9 and power loss.
    """
    f.write(dumps(obj) + "\n")
    f.flush()
    os.fsync(f.fileno())


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (for run records, stats and upload change detection)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
