"""`gwq_run.json`: what a training run was, how it went and where its adapter is.

One file per run directory, rewritten atomically at start (status "running") and at the end
("succeeded" or "failed" with a one-line `error`). Readers (compare, push, serve) use `read`
and `adapter_path`.

    >>> rec = read(Path("runs/sft"))                      # doctest: +SKIP
    >>> adapter_path(Path("runs/sft"))                    # doctest: +SKIP
    PosixPath('runs/sft/checkpoint-8')

Metrics come from ms-swift's own `logging.jsonl` (one JSON row per log step, eval rows carry
`eval_*` keys, the last row is the trainer's summary); nothing is re-measured here.

What it leaves out: per-step history (that is logging.jsonl itself), tensorboard events.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from gwq_data.errors import UsageError
from gwq_data.jsonl import write_json

FILE = "gwq_run.json"
VERSION = 1
PACKAGES = {"torch": "torch", "transformers": "transformers", "peft": "peft", "trl": "trl",
            "ms-swift": "ms_swift", "gwq": "gwq"}
SECRET = re.compile(r"(^|_)(token|key|api_key|secret|password)$", re.I)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, Optional[str]]:
    out = {"python": platform.python_version()}
    for name, dist in PACKAGES.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> Optional[str]:
    """The gwq checkout's commit, if gwq runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def hardware() -> dict[str, Any]:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"device": "cuda" if gpus else "cpu", "gpu_name": torch.cuda.get_device_name(0) if gpus else None,
            "gpu_count": gpus, "cpu_count": os.cpu_count()}


def redact(args: dict[str, Any]) -> dict[str, Any]:
    """Hub tokens and keys never reach a record."""
    return {k: ("***" if SECRET.search(k) and v not in (None, "", False) else v) for k, v in args.items()}


def redact_argv(argv: list[str]) -> list[str]:
    """`--hub-token X`, `--hub_token=X` and `--set hub_token=X` all become *** before anything is written."""
    def secret(flag: str) -> bool:
        return bool(SECRET.search(flag.lstrip("-").replace("-", "_")))

    out, hide_next = [], False
    for word in argv:
        flag, eq, value = word.partition("=")
        if hide_next:
            out.append("***")
            hide_next = False
        elif word.startswith("--") and secret(flag):
            out.append(f"{flag}=***" if eq else word)
            hide_next = not eq
        elif eq and not word.startswith("-") and secret(flag):
            out.append(f"{flag}=***")
        else:
            out.append(word)
    return out


def read(run_dir: Path) -> dict:
    path = Path(run_dir) / FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: no {FILE}; not a gwq-align run directory") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: unreadable run record: {e}") from None


def write(run_dir: Path, record: dict) -> None:
    write_json(Path(run_dir) / FILE, record)


def adapter_path(run_dir: Path) -> Path:
    """The final adapter of a finished run, as an absolute path."""
    record = read(run_dir)
    if record.get("status") != "succeeded" or not record.get("adapter"):
        raise UsageError(f"{run_dir}: run status is {record.get('status')!r}, no final adapter; finish it first "
                         f"(rerun its command: {record.get('command', '?')})")
    return (Path(run_dir) / record["adapter"]).resolve()


def checkpoints(run_dir: Path) -> list[Path]:
    """checkpoint-N dirs that finished saving (have trainer_state.json), oldest first."""
    found = []
    for p in Path(run_dir).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def log_rows(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "logging.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by Ctrl-C
    return rows


def _step(row: dict) -> Optional[int]:
    m = re.match(r"(\d+)/", str(row.get("global_step/max_steps", "")))
    return int(m.group(1)) if m else None


def _numbers(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def metrics(rows: list[dict]) -> dict:
    """final: the last train and eval values; best: lowest eval_loss (else train loss) and its step."""
    train = [r for r in rows if "loss" in r and "train_loss" not in r]
    evals = [r for r in rows if "eval_loss" in r]
    final = {}
    if train:
        final.update(_numbers(train[-1]), step=_step(train[-1]))
    if evals:
        final.update(_numbers(evals[-1]))
    best = {}
    if evals:
        r = min(evals, key=lambda r: r["eval_loss"])
        best = {"eval_loss": r["eval_loss"], "step": _step(r)}
    elif train:
        r = min(train, key=lambda r: r["loss"])
        best = {"loss": r["loss"], "step": _step(r)}
    return {"final": final, "best": best}


def throughput(rows: list[dict], start_tokens: int = 0) -> dict:
    """tokens_seen (non-padding input tokens, cumulative over resumes), tokens/s of this session, peak memory."""
    # The trainer's last row ("train_loss", "train_runtime") sums up this session;
    # num_input_tokens_seen is cumulative over resumes, hence start_tokens.
    summary = next((r for r in reversed(rows) if "train_loss" in r), {})
    seen = [r["num_input_tokens_seen"] for r in rows if "num_input_tokens_seen" in r]
    mem = [r["memory(GiB)"] for r in rows if isinstance(r.get("memory(GiB)"), (int, float))]
    tokens_per_s = None
    if seen and summary.get("train_runtime"):
        tokens_per_s = (seen[-1] - start_tokens) / summary["train_runtime"]
    return {"tokens_seen": seen[-1] if seen else None,
            "tokens_per_s": round(tokens_per_s, 2) if tokens_per_s else None,
            "samples_per_s": summary.get("train_samples_per_second"),
            "peak_memory_gib": max(mem) if mem else None}
