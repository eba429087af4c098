"""Benchmark `gwq-data prepare` on synthetic dialogues: wall time per stage and rows per second.

    python bench/prepare.py --rows 2000 20000 [--out bench/results/prepare.json]

Dialogues come from `gwq_data.synthetic.corpus` (~400 chars each, ~2% exact and ~10% near duplicates
planted), each with an `original`. Timings are wall seconds on whatever machine runs it; the table
says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def make_input(path: Path, n: int, seed: int = 0) -> None:
    from gwq_data.jsonl import write_jsonl
    from gwq_data.synthetic import corpus

    rows = ({"messages": [{"role": "user", "content": u},
                          {"role": "assistant", "content": a, "original": "平实的回答：" + a[: len(a) // 3]}]}
            for u, a in corpus(n, seed=seed).dialogues)
    write_jsonl(path, rows)


def run(n: int, workdir: Path) -> dict:
    from gwq_data.prepare import PrepareConfig, prepare, write

    src = workdir / f"in-{n}.jsonl"
    make_input(src, n)
    t0 = time.perf_counter()
    prepared = prepare([src], PrepareConfig())
    t1 = time.perf_counter()
    write(prepared, workdir / f"out-{n}")
    total = time.perf_counter() - t0
    c = prepared.stats["counts"]
    return {"rows": n, **{f"{k}_s": round(v, 2) for k, v in prepared.seconds.items()},
            "write_s": round(time.perf_counter() - t1, 2), "total_s": round(total, 2),
            "rows_per_s": round(n / total), "kept": c["kept"], "dup_exact": c["duplicates_exact"],
            "dup_near": c["duplicates_near"], "sft_val": c["sft_val"], "dpo_train": c["dpo_train"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "prepare.json")
    args = parser.parse_args()

    from gwq_data.console import print_table, summary_table
    from gwq_data.tokens import method

    with tempfile.TemporaryDirectory() as tmp:
        results = [run(n, Path(tmp)) for n in args.rows]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    # One column per input size: metrics read down, sizes across.
    print_table(summary_table(f"gwq-data prepare ({machine}; tokens: {method()})",
                              [(k, *(r[k] for r in results)) for k in results[0] if k != "rows"],
                              ("rows", *(str(r["rows"]) for r in results))))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "token_method": method(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
