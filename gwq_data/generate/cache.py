"""A SQLite journal of every finished API response, so a re-run never pays twice.

The key is sha256 of everything that shaped the response: base URL, model, the
full rendered messages (prompt text and few-shot examples included, so a changed
prompt file changes every key) and the sampling params. A response is written
and committed *before* the caller uses it; after a crash or Ctrl-C the same
command finds it here and sends nothing. Only successful responses are stored;
errors are retried next time.

WAL with synchronous=NORMAL: a committed response survives kill -9 of this
process (the WAL is in the OS page cache); only a power cut can lose the last
few commits, which would then simply be asked again.

>>> cache = Cache(":memory:")
>>> k = Cache.key("m", [{"role": "user", "content": "hi"}], {"temperature": 0.7})
>>> cache.get(k) is None
True

What it leaves out: expiry, sharing one cache between machines.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    content TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at TEXT NOT NULL
)"""


@dataclass
class Completion:
    content: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    created_at: str
    cached: bool = False


class Cache:
    def __init__(self, path: str | Path):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)  # autocommit: each put is its own transaction
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)

    @staticmethod
    def key(model: str, messages: list[dict], params: dict, base_url: str = "") -> str:
        blob = json.dumps({"base_url": base_url, "model": model, "messages": messages, "params": params},
                          ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Completion | None:
        row = self.db.execute("SELECT content, finish_reason, prompt_tokens, completion_tokens, created_at "
                              "FROM responses WHERE key = ?", (key,)).fetchone()
        return Completion(*row, cached=True) if row else None

    def put(self, key: str, model: str, prompt: str, c: Completion) -> None:
        self.db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, model, prompt, c.content, c.finish_reason, c.prompt_tokens, c.completion_tokens, c.created_at))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()
