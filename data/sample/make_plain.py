"""Derive plain.jsonl from dialogues.jsonl, so the two never drift.

dialogues.jsonl holds the hand-written canonical records: every assistant turn's
`content` is the 古文翻译腔 reply and its `original` the plain reply. plain.jsonl
holds the same conversations, same ids, as plain ms-swift `messages` rows
(content = original, no `original` key): the input `gwq-data generate` rewrites.

    python data/sample/make_plain.py            # rewrite plain.jsonl
    python data/sample/make_plain.py --check    # exit 1 if plain.jsonl is stale

What it leaves out: it never edits dialogues.jsonl; fix texts there and rerun.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gwq_data.jsonl import dumps, write_jsonl
from gwq_data.load import load

HERE = Path(__file__).resolve().parent
DIALOGUES = HERE / "dialogues.jsonl"
PLAIN = HERE / "plain.jsonl"


def to_plain(record: dict) -> dict:
    """The plain row of one canonical record: each assistant reply becomes its original."""
    messages = []
    for m in record["messages"]:
        if m["role"] == "assistant" and "original" not in m:
            raise ValueError(f"{record.get('id')}: an assistant turn has no 'original'")
        messages.append({"role": m["role"], "content": m.get("original", m["content"])})
    row = {"id": record["id"], "messages": messages}
    if "meta" in record:
        row["meta"] = record["meta"]
    return row


def plain_rows(path: Path = DIALOGUES) -> list[dict]:
    rows = []
    for item in load([path]):
        if isinstance(item, dict):  # a reject: the hand-written file itself is broken
            raise SystemExit(f"{item['source']}:{item['line']}: {item['reason']}: {item['detail']}")
        rows.append(to_plain(item.record))
    return rows


def main(argv: list[str]) -> int:
    rows = plain_rows()
    if "--check" in argv:
        current = PLAIN.read_text(encoding="utf-8") if PLAIN.exists() else ""
        if current != "".join(dumps(r) + "\n" for r in rows):
            print(f"{PLAIN} is stale: run python data/sample/make_plain.py", file=sys.stderr)
            return 1
        print(f"{PLAIN.name} is up to date ({len(rows)} rows)")
        return 0
    n = write_jsonl(PLAIN, rows)
    print(f"wrote {n} rows to {PLAIN}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
