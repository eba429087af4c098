"""Run one ms-swift training (SFT or DPO) into a run directory and keep its record.

    gwq-align sft --model M --dataset D --output-dir runs/sft
      = python -m gwq_align.swift_entry sft --model M --dataset D/sft/train.jsonl
            --val_dataset D/sft/val.jsonl --output_dir runs/sft --add_version false ... (recipe args)

The run directory IS ms-swift's output_dir (`--add_version false`): one run, one directory,
so the same command finds its own checkpoints and resumes from the latest one
(`--resume_from_checkpoint`). Logs stream to the terminal and to DIR/train.log; metrics are read
back from ms-swift's DIR/logging.jsonl into DIR/gwq_run.json.

What it leaves out: multi-node launches (NNODES/MASTER_ADDR pass through the environment to
torchrun untouched), hyperparameter search.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from gwq_align import data, models, recipes, runrecord
from gwq_data.errors import GwqError, UsageError

SWIFT_COMMAND = {"sft": "sft", "dpo": "rlhf"}
FILTERED_LINE = re.compile(r"Dataset filtered, origin length: (\d+), filtered dataset length: (\d+)")
SWIFT_USAGE_LINE = re.compile(r"^swift-\w+: error: (.+)$")  # argparse's own complaint about an argument
ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt)): (.+)$")


@dataclass
class Job:
    """What to run on (paths) apart from how (recipe args)."""

    kind: str                          # sft | dpo
    model: str
    dataset: Path
    output_dir: Path
    recipe: str = "seed"
    config: Optional[Path] = None
    overrides: dict[str, Any] = field(default_factory=dict)
    val_dataset: Optional[Path] = None
    from_sft: Optional[Path] = None    # dpo only
    nproc_per_node: int = 1
    deepspeed: Optional[str] = None
    resume: bool = True
    quiet: bool = False
    argv: list[str] = field(default_factory=lambda: ["gwq-align"] + sys.argv[1:])


def to_cli(args: dict[str, Any]) -> list[str]:
    """{"lora_rank": 8, "gradient_checkpointing": True} -> ["--lora_rank", "8", "--gradient_checkpointing", "true"]."""
    out = []
    for key, value in args.items():
        if value is None:
            continue
        out.append(f"--{key}")
        if isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, (list, tuple)):
            out.extend(str(v) for v in value)
        elif isinstance(value, dict):
            import json
            out.append(json.dumps(value))
        else:
            out.append(str(value))
    return out


def plan(job: Job) -> tuple[dict[str, Any], list[dict], models.ModelRef, Optional[Path]]:
    """Check every input and resolve the full ms-swift argument dict. No training, no network."""
    if job.kind not in SWIFT_COMMAND:
        raise UsageError(f"unknown kind {job.kind!r}")
    if job.nproc_per_node < 1:
        raise UsageError(f"--nproc-per-node must be >= 1, got {job.nproc_per_node}")
    model = models.resolve(job.model)
    files = data.resolve(job.kind, job.dataset, job.val_dataset)
    dataset_files = data.check(job.kind, files)
    args = recipes.resolve(job.kind, job.recipe, config=job.config, overrides=job.overrides)

    from_sft_adapter = None
    if job.from_sft is not None:
        if job.kind != "dpo":
            raise UsageError("--from-sft is for dpo only")
        from_sft_adapter = runrecord.adapter_path(job.from_sft)
        sft_base = runrecord.read(job.from_sft).get("base_model")
        here = str(model.path) if model.local else model.name
        if sft_base and sft_base != here:
            # An adapter only means something on the base it was trained on.
            raise UsageError(f"--from-sft {job.from_sft} was trained on {sft_base}, not {here}; "
                             f"pass --model {sft_base}")
        # Train the SFT adapter further; the frozen copy of it is the reference (an adapter on
        # the same base weights, so no second model in memory).
        args.setdefault("adapters", [str(from_sft_adapter)])
        args.setdefault("ref_adapters", [str(from_sft_adapter)])

    fixed = {
        "output_dir": str(job.output_dir.resolve()),
        "add_version": False,             # the run dir is the output dir: resume and records stay simple
        "check_model": False,             # ms-swift would ask the hub whether a local model is "latest"
        "dataset": [str(files.train)],
        "include_num_input_tokens_seen": True,  # made "non_padding" in swift_entry
    }
    if files.val:
        fixed.update(val_dataset=[str(files.val)], split_dataset_ratio=0.0)
    else:
        fixed.update(split_dataset_ratio=0.0)
    if job.deepspeed:
        fixed["deepspeed"] = job.deepspeed
    args = {**model.swift_args(), **args, **fixed}
    args.setdefault("report_to", "none")
    if args.get("use_liger_kernel") and importlib.util.find_spec("liger_kernel") is None:
        raise UsageError(f"recipe {job.recipe!r} uses liger-kernel (CUDA only): pip install liger-kernel (gwq's gpu extra), "
                         "or pass --set use_liger_kernel=false")
    layers = args.get("gwq_checkpoint_layers")
    if layers is not None:
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            raise UsageError(f"gwq_checkpoint_layers must be a whole number of decoder layers (>= 0), got {layers!r}")
        if not args.get("gradient_checkpointing"):
            raise UsageError("gwq_checkpoint_layers picks which layers gradient checkpointing recomputes; "
                             "it needs gradient_checkpointing true")

    if (job.output_dir / runrecord.FILE).is_file():
        previous = runrecord.read(job.output_dir)
        if previous.get("kind") != job.kind:
            raise UsageError(f"{job.output_dir} holds a {previous.get('kind')} run; choose another --output-dir")
    if job.output_dir.exists() and not job.output_dir.is_dir():
        raise UsageError(f"--output-dir {job.output_dir} is a file; pass a directory")
    if not job.resume and job.output_dir.exists() and runrecord.checkpoints(job.output_dir):
        # Training fresh beside old checkpoints would mix two runs (ms-swift's save limit deletes some of
        # each, and the record could name the old adapter). gwq never deletes a user's checkpoints.
        raise UsageError(f"{job.output_dir} holds checkpoints of an earlier run; with --no-resume pass a new "
                         "--output-dir (or delete the old checkpoints yourself)")
    found = runrecord.checkpoints(job.output_dir) if job.resume and job.output_dir.exists() else []
    latest = found[-1] if found else None
    if latest is not None:
        _check_same_run(job, args, dataset_files)
        args["resume_from_checkpoint"] = str(latest.resolve())
    return args, dataset_files, model, latest


# Arguments that may differ when a run is resumed: how long to train, how often to log/save/evaluate,
# and how the work is executed. Anything else (data, LoRA shape, learning rate, batch) would splice two
# different trainings into one adapter.
RESUMABLE_CHANGES = {
    "max_steps", "num_train_epochs", "save_steps", "eval_steps", "logging_steps", "save_total_limit", "eval_strategy",
    "save_strategy", "per_device_eval_batch_size", "dataloader_num_workers", "dataset_num_proc", "report_to",
    "attn_impl", "use_liger_kernel", "resume_from_checkpoint", "logging_dir", "ddp_timeout",
    "dataloader_pin_memory", "logging_nan_inf_filter", "gwq_checkpoint_layers",
    "dataset", "val_dataset",  # paths; their content is compared by hash
    "hub_token", "push_to_hub", "hub_model_id", "hub_private_repo", "hub_strategy",
}


def _check_same_run(job: Job, args: dict[str, Any], dataset_files: list[dict]) -> None:
    """Resuming continues the checkpoints' training: refuse when the data or the training itself changed."""
    if not (job.output_dir / runrecord.FILE).is_file():
        return
    previous = runrecord.read(job.output_dir)
    where = f"{job.output_dir} holds checkpoints of a run"
    old = {(f.get("split"), f.get("sha256")) for f in (previous.get("dataset") or {}).get("files") or []}
    new = {(f.get("split"), f.get("sha256")) for f in dataset_files}
    if old and old != new:
        names = ", ".join(f"{f.get('split')}={f.get('path')}" for f in (previous.get("dataset") or {}).get("files") or [])
        raise UsageError(f"{where} on other data ({names}, by content hash); resuming would mix two trainings. "
                         "Pass a new --output-dir for this dataset")
    before, now = previous.get("args"), runrecord.redact(args)
    if not before:
        return
    changed = sorted(k for k in set(before) | set(now) if k not in RESUMABLE_CHANGES and before.get(k) != now.get(k))
    if changed:
        detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
        raise UsageError(f"{where} with other settings ({detail}); resuming would mix two trainings. "
                         "Pass a new --output-dir, or the same settings to continue")


# Passed to ms-swift through the environment instead of its command line, so its own args.json and
# the process list never hold them (ms-swift reads MODELSCOPE_API_TOKEN; huggingface_hub reads HF_TOKEN).
SECRET_ARGS = {"hub_token": ("MODELSCOPE_API_TOKEN", "HF_TOKEN")}
# gwq's own settings, read by gwq's ms-swift entry (gwq_align/swift_entry.py) from the environment;
# ms-swift's parser would reject them.
GWQ_ARGS = {"gwq_checkpoint_layers": "GWQ_CHECKPOINT_LAYERS"}


def commands(job: Job, args: dict[str, Any]) -> tuple[list[str], str]:
    """(argv gwq runs, the equivalent plain `swift` command line for the record and the docs)."""
    args = {k: v for k, v in args.items() if k not in GWQ_ARGS}  # they reach the child through its environment
    cli = to_cli({k: v for k, v in args.items() if k not in SECRET_ARGS})
    sub = SWIFT_COMMAND[job.kind]
    if job.nproc_per_node > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={job.nproc_per_node}",
                  "-m", "gwq_align.swift_entry", sub]
        plain = f"NPROC_PER_NODE={job.nproc_per_node} "
    else:
        launch = [sys.executable, "-m", "gwq_align.swift_entry", sub]
        plain = ""
    redacted = to_cli(runrecord.redact(args))
    return launch + cli, plain + shlex.join(["swift", sub] + redacted)


def child_env(model: models.ModelRef, args: Optional[dict[str, Any]] = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    for key, names in SECRET_ARGS.items():
        if (args or {}).get(key):
            env.update({name: str(args[key]) for name in names})
    for key, name in GWQ_ARGS.items():
        if (args or {}).get(key) is not None:
            env[name] = str(args[key])
        else:
            env.pop(name, None)  # only what this run's arguments say
    if model.local:
        # A local model must never wait on a hub; datasets are local files too.
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MODELSCOPE_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # Multi-GPU hosts here forbid NVLink multicast (it can take a shared host's GPUs down).
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    # Padding-free rows change length every step; without expandable segments the caching allocator
    # keeps blocks of every size seen: `fast` on a 7B reserved 63.5 GiB without, 35.1 GiB with (H100).
    # Users who would rather have the speed on an 80 GB card can set PYTORCH_CUDA_ALLOC_CONF themselves.
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return env


def run(job: Job, echo=None) -> dict:
    """Train; return the final run record. Raises GwqError (failed) or KeyboardInterrupt (Ctrl-C)."""
    args, dataset_files, model, resumed = plan(job)
    finished = _already_finished(job, args)
    if finished is not None:
        if echo:
            echo(f"{job.output_dir} already finished with these arguments; nothing to train "
                 "(change one, e.g. --max-steps, to train further, or pass a new --output-dir)")
        return finished
    argv, swift_command = commands(job, args)
    previous_session = _previous_session(job.output_dir, resumed)
    job.output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "gwq_run_version": runrecord.VERSION, "kind": job.kind, "status": "running", "error": None,
        "command": shlex.join(runrecord.redact_argv(job.argv)), "swift_command": swift_command, "recipe": job.recipe,
        "base_model": str(model.path) if model.local else model.name, "adapter": None,
        "from_sft": str(job.from_sft) if job.from_sft else None,
        "resumed_from": str(resumed) if resumed else None,
        "args": runrecord.redact(args), "dataset": {"files": dataset_files},
        "versions": runrecord.versions(), "git_commit": runrecord.git_commit(), "hardware": runrecord.hardware(),
        "started_at": runrecord.now(), "finished_at": None, "wall_s": None,
        "tokens_seen": None, "tokens_per_s": None, "samples_per_s": None, "peak_memory_gib": None,
        "metrics": {"final": {}, "best": {}},
        "pid": os.getpid(), "host": socket.gethostname(),
    }
    if previous_session:
        record["previous_session"] = previous_session
    runrecord.write(job.output_dir, record)
    start = time.monotonic()
    error = None
    # A scheduler's SIGTERM or a closed terminal's SIGHUP ends the run like Ctrl-C: child stopped, record failed.
    import threading
    previous_handlers = ({sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
                         if threading.current_thread() is threading.main_thread() else {})
    filtered: list[dict] = []
    try:
        code, tail = _stream(argv, child_env(model, args), job.output_dir / "train.log", echo, job.quiet, filtered)
        record["dataset"]["filtered"] = filtered
        dropped = sum(f["rows"] - f["kept"] for f in filtered)
        if dropped and echo:
            echo(f"warning: ms-swift dropped {dropped} dialogues longer than max_length={args.get('max_length')} "
                 "(see gwq_run.json dataset.filtered); raise --max-length to keep them")
        if code != 0:
            error = _error_line(tail, code, job.output_dir)
            if any(f["kept"] == 0 for f in filtered):
                error = (f"every dialogue of a split is longer than max_length={args.get('max_length')}; "
                         "raise --max-length")
    except KeyboardInterrupt:
        error = "interrupted (Ctrl-C or a stop signal); run the same command again to resume from the last checkpoint"
        raise
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        _finish(record, job, start, error)
    if error:
        kind = UsageError if error.startswith("ms-swift refused an argument") else GwqError
        raise kind(f"{job.kind} failed: {error} (record: {job.output_dir / runrecord.FILE})")
    return record


def _previous_session(run_dir: Path, resumed: Optional[Path]) -> Optional[str]:
    """A record still at "running": another gwq-align is training here (refuse) or one died without
    finishing it (SIGKILL, out-of-memory killer, power loss): say so in the new record."""
    if not (run_dir / runrecord.FILE).is_file():
        return None
    previous = runrecord.read(run_dir)
    if previous.get("status") != "running":
        return None
    pid, host = previous.get("pid"), previous.get("host")
    if pid and host == socket.gethostname() and pid != os.getpid() and _alive(pid):
        raise UsageError(f"another gwq-align (pid {pid}) is training into {run_dir}; wait for it or stop it first")
    then = (f"resumed from {resumed.name}, the last complete checkpoint" if resumed
            else "it left no complete checkpoint, so this one started over")
    return (f"the session started {previous.get('started_at')} ended without finishing its record "
            f"(killed, or its machine stopped); {then}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # The pid may have been recycled by another program since: only a gwq process counts.
    try:
        return b"gwq" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _already_finished(job: Job, args: dict[str, Any]) -> Optional[dict]:
    """The previous record, if this exact run already succeeded here (re-running it must not add steps)."""
    import json

    if not (job.resume and (job.output_dir / runrecord.FILE).is_file()):
        return None
    previous = runrecord.read(job.output_dir)
    if previous.get("status") != "succeeded":
        return None
    def same(a: dict) -> str:
        return json.dumps({k: v for k, v in a.items() if k != "resume_from_checkpoint"}, sort_keys=True, default=str)
    return previous if same(previous.get("args") or {}) == same(runrecord.redact(args)) else None


def _finish(record: dict, job: Job, start: float, error: Optional[str]) -> None:
    rows = runrecord.log_rows(job.output_dir)
    ckpts = runrecord.checkpoints(job.output_dir)
    record.update(runrecord.throughput(rows, start_tokens=_tokens_at(record.get("resumed_from"))))
    record.update(
        status="failed" if error else "succeeded", error=error, finished_at=runrecord.now(),
        wall_s=round(time.monotonic() - start, 2), metrics=runrecord.metrics(rows),
        adapter=str(ckpts[-1].relative_to(job.output_dir)) if ckpts and not error else None,
    )
    if record["hardware"]["device"] == "cpu" and record["peak_memory_gib"] is None:
        import resource
        # Linux reports the largest child's peak RSS in KiB.
        record["peak_memory_gib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)
    runrecord.write(job.output_dir, record)


def _tokens_at(checkpoint: Optional[str]) -> int:
    """Tokens already seen when this session resumed (so tokens/s counts this session only)."""
    if not checkpoint:
        return 0
    import json
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return 0
    return int(state.get("num_input_tokens_seen") or 0)


def _stream(argv: list[str], env: dict, log_path: Path, echo, quiet: bool,
            filtered: list[dict]) -> tuple[int, list[str]]:
    """Run argv, copy its output to log_path (and echo unless quiet); return (exit code, last lines).
    ms-swift's "Dataset filtered" lines (dialogues over max_length dropped) are collected into `filtered`."""
    tail: deque[str] = deque(maxlen=200)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {shlex.join(runrecord.redact_argv(argv))}\n")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True, errors="replace", bufsize=1, start_new_session=False)
        try:
            for line in proc.stdout:
                log.write(line)
                m = FILTERED_LINE.search(line)
                if m:
                    filtered.append({"rows": int(m.group(1)), "kept": int(m.group(2))})
                tail.append(line.rstrip("\n"))
                if echo and not quiet:
                    echo(line.rstrip("\n"))
            return proc.wait(), list(tail)
        except KeyboardInterrupt:
            _stop(proc)
            raise
        finally:
            if proc.poll() is None:
                _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C reaches the child too when typed at a terminal; make sure it stops either way."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _error_line(tail: list[str], code: int, run_dir: Path) -> str:
    for line in reversed(tail):
        m = SWIFT_USAGE_LINE.match(line.strip())
        if m:
            return f"ms-swift refused an argument: {m.group(1)}"[:500]
    for line in reversed(tail):
        m = ERROR_LINE.match(line.strip())
        if m:
            return f"{m.group(1)}: {m.group(2)}"[:500]
    return f"ms-swift exited with code {code}; see {run_dir / 'train.log'}"
