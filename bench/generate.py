"""Benchmark gwq-data generate's client against a local OpenAI-compatible server with fixed latency.

    python bench/generate.py                       # latency 0.2 s, concurrency 1,16,64,256
    python bench/generate.py --concurrency 64 --waves 4

The server (tests/llm_server.py) runs in its own process, so the CPU time measured
here is the client's alone: the whole per-row pipeline of a real run (render the
prompt, cache lookup and commit, the openai SDK call, parse, quality gate, journal
append). Ideal throughput is concurrency / latency. A naive sequential loop (one
synchronous openai call after another) is the baseline.

Writes a table to stdout and JSON to bench/results/generate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "llm_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise SystemExit("the benchmark server did not start")
    return proc, line[1]


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process (Linux), to show what the server costs next to the client."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def write_input(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"query": f"第{i}个问题：早上起不来怎么办？",
                                "response": f"可以试着固定作息，晚上11点前睡觉，第{i}天起把闹钟放远一点。"},
                               ensure_ascii=False) + "\n")


def run_pipeline(url: str, concurrency: int, rows: int, work: Path) -> dict:
    from gwq_data.generate.client import ClientConfig
    from gwq_data.generate.prompt import load_prompt
    from gwq_data.generate.run import RunConfig, Runner, rewrite_jobs

    src, out = work / f"in-{concurrency}.jsonl", work / f"out-{concurrency}.jsonl"
    write_input(src, rows)
    jobs, bad = rewrite_jobs(src, None, 1024)
    cfg = RunConfig(out=out, rejects=out.with_suffix(".rejects.jsonl"), cache=out.with_suffix(".cache.sqlite"),
                    client=ClientConfig(base_url=url, model="fake-model", concurrency=concurrency,
                                        params={"temperature": 0.7, "seed": None, "max_tokens": None}))
    runner = Runner(cfg, load_prompt("translation_tone"))
    cpu0, t0 = time.process_time(), time.perf_counter()
    stats = asyncio.run(runner.run(jobs, bad))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert stats.styled == rows and stats.requests == rows, (stats.styled, stats.rejects, stats.fatal)
    return {"requests": stats.requests, "wall_s": wall, "cpu_s": cpu}


def run_naive(url: str, rows: int) -> dict:
    """The loop people write first: one synchronous request after another."""
    from openai import OpenAI

    from gwq_data.generate.prompt import load_prompt

    client, prompt = OpenAI(base_url=url, api_key="EMPTY"), load_prompt("translation_tone")
    record = {"messages": [{"role": "user", "content": "早上起不来怎么办？"},
                           {"role": "assistant", "content": "可以试着固定作息，晚上11点前睡觉。"}]}
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(rows):
        client.chat.completions.create(model="fake-model", messages=prompt.rewrite_messages(record))
    return {"requests": rows, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0}


def _delta(after, before):
    return None if after is None or before is None else after - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--waves", type=int, default=20, help="requests per run = concurrency × waves (at least 20)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "generate.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))

    proc, url = start_server(args.latency)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server0 = cpu_seconds(proc.pid)
            naive = run_naive(url, 20)
            results.append({"client": "naive sequential loop", "concurrency": 1, **naive,
                            "server_cpu_s": _delta(cpu_seconds(proc.pid), server0)})
            for c in [int(x) for x in args.concurrency.split(",")]:
                server0 = cpu_seconds(proc.pid)
                r = run_pipeline(url, c, max(20, c * args.waves), Path(tmp))
                results.append({"client": "gwq generate", "concurrency": c, **r,
                                "server_cpu_s": _delta(cpu_seconds(proc.pid), server0)})
    finally:
        proc.terminate()
        proc.wait()
    for r in results:
        r["req_per_s"] = r["requests"] / r["wall_s"]
        r["ideal_req_per_s"] = r["concurrency"] / args.latency
        r["pct_of_ideal"] = 100 * r["req_per_s"] / r["ideal_req_per_s"]
        r["client_cpu_ms_per_req"] = 1000 * r["cpu_s"] / r["requests"]
        r["server_cpu_ms_per_req"] = None if r["server_cpu_s"] is None else 1000 * r["server_cpu_s"] / r["requests"]

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gwq-data generate vs a local server with {args.latency * 1000:.0f} ms latency")
    for col in ("client", "concurrency", "requests", "req/s", "ideal req/s", "% of ideal", "client CPU ms/req",
                "server CPU ms/req"):
        table.add_column(col, justify="left" if col == "client" else "right")
    for r in results:
        table.add_row(r["client"], str(r["concurrency"]), str(r["requests"]), f"{r['req_per_s']:.1f}",
                      f"{r['ideal_req_per_s']:.0f}", f"{r['pct_of_ideal']:.0f}%", f"{r['client_cpu_ms_per_req']:.2f}",
                      "-" if r["server_cpu_ms_per_req"] is None else f"{r['server_cpu_ms_per_req']:.2f}")
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu_count": os.cpu_count(), "load_avg_1m_after": os.getloadavg()[0]}
    args.out.write_text(json.dumps({"latency_s": args.latency, "machine": machine, "results": results}, indent=2) + "\n",
                        encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
