"""Numbers about a set of canonical records: turns, Qwen2 token lengths, tone scores, provenance.

`describe(records)` returns the plain dict that prepare writes into stats.json (the
``turns``/``tokens``/``tone``/``generators``/``prompts`` keys), that `gwq-data stats` prints
and that a dataset card can render. `markdown(stats)` renders any stats dict as report
sections with small tables.

>>> s = describe([{"messages": [{"role": "user", "content": "hi"},
...                             {"role": "assistant", "content": "嗟乎！"}]}])
>>> s["turns"]["histogram"], s["tone"]["histogram"]["0.6-0.7"]
({'1': 1}, 1)

Tokens are counted over all message contents joined (no chat-template overhead). Percentiles
use linear interpolation (numpy's default). What it leaves out: per-file breakdowns, plots.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

import numpy as np

from gwq_data.tone import record_score

TOKEN_EDGES = (0, 128, 256, 512, 1024, 2048)
TONE_BINS = 10


def _round(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def token_bin(n: int) -> str:
    for lo, hi in zip(TOKEN_EDGES, TOKEN_EDGES[1:]):
        if n < hi:
            return f"{lo}-{hi}"
    return f"{TOKEN_EDGES[-1]}+"


def tone_bin(score: float) -> str:
    i = min(int(score * TONE_BINS), TONE_BINS - 1)
    return f"{i / TONE_BINS:.1f}-{(i + 1) / TONE_BINS:.1f}"


def _summary(values: list[float], keys: Iterable[str]) -> dict:
    if not values:
        return {k: 0 for k in keys}
    arr = np.asarray(values, dtype=float)
    out = {}
    for k in keys:
        out[k] = _round(arr.mean()) if k == "mean" else _round(arr.max()) if k == "max" else _round(np.percentile(arr, int(k[1:])))
    return out


def provenance(records: list[dict]) -> tuple[Counter, Counter]:
    """(generator → n, "prompt@hash" → n); records without meta count as "(none)"."""
    generators, prompts = Counter(), Counter()
    for r in records:
        meta = r.get("meta") or {}
        generators[str(meta.get("generator") or "(none)")] += 1
        prompt = meta.get("prompt")
        prompts[f"{prompt}@{meta.get('prompt_hash') or '?'}" if prompt else "(none)"] += 1
    return generators, prompts


def dialogue_text(record: dict) -> str:
    """All message contents joined: the text whose tokens `describe` (and the length check) count."""
    return "".join(m["content"] for m in record["messages"])


def describe(records: list[dict], count_tokens: Callable[[str], int] | None = None,
             method: str | None = None) -> dict:
    """turns, tokens, tone, generators, prompts, with_original for canonical records.

    `count_tokens` defaults to Qwen2's BPE; pass the (cached) counter the length check used to
    tokenize each dialogue only once, with `method` naming it for the report.
    """
    from gwq_data import tokens

    count = count_tokens or tokens.count_tokens
    turns = [sum(m["role"] == "assistant" for m in r["messages"]) for r in records]
    lengths = [count(dialogue_text(r)) for r in records]
    tones = [record_score(r) for r in records]
    generators, prompts = provenance(records)

    token_hist = {token_bin(lo): 0 for lo in TOKEN_EDGES}  # every bin present, in order
    token_hist.update(Counter(token_bin(n) for n in lengths))
    tone_hist = {tone_bin(i / TONE_BINS): 0 for i in range(TONE_BINS)}
    tone_hist.update(Counter(tone_bin(s) for s in tones))
    return {
        "records": len(records),
        "with_original": sum(any(m.get("original") for m in r["messages"]) for r in records),
        "turns": {"mean": _round(np.mean(turns)) if turns else 0,
                  "histogram": {str(k): v for k, v in sorted(Counter(turns).items())}},
        "tokens": {"method": method or (tokens.method() if count_tokens is None else "custom"),
                   **_summary(lengths, ("mean", "p50", "p90", "max")), "histogram": token_hist},
        "tone": {**_summary(tones, ("mean", "p10", "p50", "p90")), "histogram": tone_hist},
        "generators": dict(generators.most_common()),
        "prompts": dict(prompts.most_common()),
    }


def _table(headers: tuple[str, ...], rows: Iterable[tuple]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _bar(n: int, total: int, width: int = 20) -> str:
    return "█" * round(width * n / total) if total else ""


def _hist_table(what: str, hist: dict) -> str:
    total = sum(hist.values())
    return _table((what, "records", ""), ((k, v, _bar(v, total)) for k, v in hist.items()))


def markdown(stats: dict) -> str:
    """Report sections for the describe() keys of `stats` (turns, tokens, tone, provenance)."""
    t, k = stats["turns"], stats["tokens"]
    parts = [
        f"## Turns per dialogue\n\nmean {t['mean']}\n\n" + _hist_table("assistant turns", t["histogram"]),
        f"## Length ({k['method']} tokens, all messages)\n\nmean {k['mean']}, p50 {k['p50']}, p90 {k['p90']}, "
        f"max {k['max']}\n\n" + _hist_table("tokens", k["histogram"]),
        "## Tone score (gwq_data.tone, mean over assistant replies)\n\n"
        f"mean {stats['tone']['mean']}, p10 {stats['tone']['p10']}, p50 {stats['tone']['p50']}, "
        f"p90 {stats['tone']['p90']}\n\n" + _hist_table("score", stats["tone"]["histogram"]),
        "## Provenance\n\n" + _table(("generator", "records"), stats["generators"].items()) + "\n\n"
        + _table(("prompt@hash", "records"), stats["prompts"].items()),
    ]
    return "\n\n".join(parts) + "\n"
