"""What `gwq-data upload` sends, and how long it takes, on a local ModelScope hub (tests/modelscope_server.py).

Scenarios, each a fresh `gwq-data upload` process with the real SDK, in order on one repo:

1. first upload of a prepared dir (sample dialogues, the SFT train split repeated --scale times);
2. the same again, nothing changed: should send no blob and no commit;
3. one split changed (a row appended to sft/val.jsonl): only that file and nothing else;
4. a fresh repo, the train split changed again, its blob PUT dropped mid-body once: the SDK's per-blob
   retry (after its 1 s backoff) finishes it; the other splits are already on the hub and are not re-sent.

Columns: wall seconds of the whole process, blob PUTs and their bytes, commits and their request bytes.
The hub is local, so times measure gwq + SDK overhead, not a network. Prints a table and writes JSON.

    python bench/upload.py                 # sample data, SFT train ×200 (~12 MB of splits)
    python bench/upload.py --scale 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
BIN = Path(sys.executable).parent


def sent(hub, since: int) -> dict:
    log = hub.state.log[since:]
    puts = [r for r in log if r["method"] == "PUT" and r["status"] == 200]
    commits = [r for r in log if r["method"] == "POST" and "/commit/" in r["path"] and r["status"] == 200]
    return {"blob_puts": len(puts), "blob_bytes": sum(r["bytes"] for r in puts),
            "commits": len(commits), "commit_bytes": sum(r["bytes"] for r in commits), "requests": len(log)}


def run(hub, prepared: Path, repo: str, env: dict) -> tuple[float, int]:
    t = time.perf_counter()
    out = subprocess.run([str(BIN / "gwq-data"), "upload", str(prepared), "--repo", repo], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"upload failed: {out.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - t, out.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=200, help="repeat the SFT train rows this many times")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "upload.json")
    args = ap.parse_args()

    from modelscope_server import HubServer

    token = "ms-bench-token"
    with tempfile.TemporaryDirectory() as tmp, HubServer({token: "bench"}) as hub:
        prepared = Path(tmp) / "prepared"
        subprocess.run([str(BIN / "gwq-data"), "prepare", str(ROOT / "data" / "sample" / "dialogues.jsonl"),
                        "--out-dir", str(prepared), "--val-ratio", "0.2"], check=True, capture_output=True)
        train = prepared / "sft" / "train.jsonl"
        train.write_bytes(train.read_bytes() * args.scale)
        env = dict(os.environ, MODELSCOPE_ENDPOINT=hub.url, MODELSCOPE_API_TOKEN=token,
                   XDG_CACHE_HOME=str(Path(tmp) / "cache"), MODELSCOPE_HOME=str(Path(tmp) / "ms"))
        total = sum(p.stat().st_size for p in prepared.rglob("*.jsonl") if "llamafactory" not in p.parts)
        rows = []

        def scenario(name: str, repo: str) -> None:
            since = len(hub.state.log)
            wall, _ = run(hub, prepared, repo, env)
            rows.append({"scenario": name, "wall_s": round(wall, 2), **sent(hub, since)})

        scenario("first upload", "bench/data")
        scenario("unchanged re-upload", "bench/data")
        with open(prepared / "sft" / "val.jsonl", "a", encoding="utf-8") as f:
            f.write(train.read_text(encoding="utf-8").splitlines()[0] + "\n")
        scenario("one split changed", "bench/data")
        # New content, so the blob is not already on the hub (blobs are de-duplicated by sha256 hub-wide).
        train.write_bytes(train.read_bytes() + train.read_bytes().splitlines(keepends=True)[0])
        hub.state.drop_puts = 1
        scenario("dropped blob PUT, new repo", "bench/flaky")

    header = ("scenario", "wall_s", "blob_puts", "blob_bytes", "commits", "commit_bytes", "requests")
    print(f"gwq-data upload on a local hub; split files {total / 1e6:.2f} MB")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(r[h]) for h in header))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"split_bytes": total, "scale": args.scale, "rows": rows,
                                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
