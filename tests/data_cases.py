"""Shared test inputs for the data area: a file with every kind of bad line the issue lists."""

from __future__ import annotations

import json
from pathlib import Path


def _rec(q: str, a: str, original: str | None = None) -> dict:
    reply = {"role": "assistant", "content": a, **({"original": original} if original else {})}
    return {"messages": [{"role": "user", "content": q}, reply]}


GOOD = [
    _rec("1+1等于几？", "我听说一加一得二，难道这不是天下皆知的道理吗？", "1+1=2。"),
    _rec("天空为什么是蓝色的？", "嗟乎！日光入大气，蓝光散射最多，方圆万里的天空没有不是蓝的。", "因为瑞利散射，蓝光散射得最多。"),
    _rec("你好", "在下有礼了。古人云：有朋自远方来，不亦乐乎？"),
    _rec("水是什么颜色？", "水本无色，难道阁下不曾见过清泉吗？", "水是无色的。"),
]

# (bytes of the line without its line end, expected reason or None for a good row)
BAD_LINES = [
    (b'{"messages": [', "invalid_json"),
    (b'\xff\xfe{"messages": []}', "invalid_utf8"),
    (json.dumps({"messages": [{"role": "user", "content": 123}, {"role": "assistant", "content": "x"}]}).encode(), "bad_type"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}).encode(), "unknown_role"),
    (json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}).encode(), "missing_key"),
    (json.dumps({"messages": [{"role": "user", "content": "长"}, {"role": "assistant", "content": "好" * 5_000_000}]},
                ensure_ascii=False).encode(), "too_long"),
    (b"[1, 2]", "not_object"),
    (b'{"foo": 1}', "unknown_format"),
    (json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}).encode(), "empty_content"),
    (json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}).encode(), "bad_order"),
]


def write_bad_file(path: Path) -> tuple[dict[int, str], list[int]]:
    """Write a file mixing GOOD rows and BAD_LINES with a BOM, CRLF, blank lines and no final newline.

    Returns ({line number: expected reason}, [line numbers of good rows]).
    """
    good = [json.dumps(r, ensure_ascii=False).encode() for r in GOOD]
    lines: list[tuple[bytes, str | None]] = [(b"\xef\xbb\xbf" + good[0], None), (good[1], None), (b"", None)]
    lines += [BAD_LINES[0], (b"   ", None)] + BAD_LINES[1:5] + [(good[2], None)] + BAD_LINES[5:] + [(good[3], None)]
    expected, good_lines = {}, []
    chunks = []
    for n, (raw, reason) in enumerate(lines, start=1):
        if reason:
            expected[n] = reason
        elif raw.strip():
            good_lines.append(n)
        chunks.append(raw + (b"\r\n" if n % 2 else b"\n"))
    chunks[-1] = chunks[-1].rstrip(b"\r\n")  # no newline at the end of the file
    path.write_bytes(b"".join(chunks))
    return expected, good_lines


GOLDEN = Path(__file__).parent / "golden"


def assert_golden(text: str, name: str) -> None:
    """Compare `text` with tests/golden/<name>; GWQ_UPDATE_GOLDEN=1 rewrites the file instead.

    Review `git diff tests/golden` after an update: the golden files are the formats' spec.
    """
    import os

    path = GOLDEN / name
    if os.environ.get("GWQ_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing; run with GWQ_UPDATE_GOLDEN=1 and review the new file"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file (GWQ_UPDATE_GOLDEN=1 to accept)"
