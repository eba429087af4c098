"""The model card (README.md) and `configuration.json` for a gwq training run on ModelScope.

    record = read_run(Path("runs/sft"))
    text = model_card(record, repo="alice/qwen2.5-0.5b-guwen", merged=False, dataset="alice/gwq-zh")

Everything comes from the run's `gwq_run.json` (the shared run-record contract): base model, the exact gwq
command and the equivalent `swift` command, hyperparameters, final/best metrics, versions and hardware.
A `gwq-align compare` report, when one is given or found in the run dir, contributes its first table.

What it leaves out: sample generations (that is the compare report's job), evaluation beyond the run's
own logged metrics, a Chinese-language body.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import yaml

from gwq_data.card import markdown_table
from gwq_data.errors import UsageError

RUN_FILE = "gwq_run.json"
# The arguments a reader needs to reproduce or judge the run, in the order they read best.
HYPERPARAMETERS = ("tuner_type", "lora_rank", "lora_alpha", "lora_dropout", "target_modules", "learning_rate",
                   "lr_scheduler_type", "warmup_ratio", "weight_decay", "num_train_epochs", "max_steps",
                   "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "torch_dtype",
                   "rlhf_type", "beta", "loss_type", "rpo_alpha", "template", "seed")
# Logged numbers that describe the machine or the schedule, not the model.
NOT_RESULTS = re.compile(r"runtime|per_second|speed|learning_rate|grad_norm|num_input_tokens|memory|^epoch$")
# A secret passed on a training command line must not reach a public card.
SECRET_FLAG = re.compile(r"((?:--|\b)[\w-]*(?:token|key|secret|password)[\w-]*)(=|\s+(?=[^-\s]))(\S+)", re.I)
COMPARE_REPORTS = ("compare.md", "compare/report.md", "compare/compare.md")
# What ModelScope (and ms-swift's own push) expects at the repo root of a text-generation model.
CONFIGURATION = {"framework": "pytorch", "task": "text-generation", "allow_remote": True}


def read_run(run_dir: Path) -> dict:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir}: no {RUN_FILE}; pass a run directory made by `gwq-align sft` or `gwq-align dpo`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid JSON ({e})") from None
    if record.get("status") != "succeeded":
        raise UsageError(f"{path}: run status is {record.get('status')!r} ({record.get('error') or 'no error'}); "
                         f"only a succeeded run can be pushed")
    if not record.get("adapter"):
        raise UsageError(f"{path}: no `adapter` path recorded; re-run the training to finish it")
    return record


def configuration() -> str:
    return json.dumps(CONFIGURATION, indent=2) + "\n"


def find_compare_report(run_dir: Path) -> Optional[Path]:
    for rel in COMPARE_REPORTS:
        if (run_dir / rel).is_file():
            return run_dir / rel
    return None


def headline_table(report: Path) -> str:
    """The first markdown table of a report, or "" when it has none."""
    lines, table = report.read_text(encoding="utf-8").splitlines(), []
    for line in lines:
        if line.lstrip().startswith("|"):
            table.append(line.strip())
        elif table:
            break
    return "\n".join(table) + "\n" if len(table) >= 2 else ""


def model_card(record: dict, *, repo: str, merged: bool, base_model: str, dataset: Optional[str] = None,
               compare: Optional[Path] = None, license: str = "apache-2.0",
               site: str = "https://modelscope.cn") -> str:
    kind = record.get("kind", "sft")
    meta = {
        "license": license,
        "language": ["zh"],
        "base_model": base_model,
        "base_model_relation": "finetune" if merged else "adapter",
        "library_name": "transformers" if merged else "peft",
        "pipeline_tag": "text-generation",
        "tasks": ["text-generation"],  # ModelScope's own keys, beside the Hugging Face ones
        "frameworks": ["pytorch"],
        "tags": ["古文翻译腔", "style-transfer", "chinese", "lora", kind, "ms-swift", "gwq"],
    }
    if dataset:
        meta["datasets"] = [dataset]
    head = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    name = repo.split("/", 1)[1]
    what = ("the LoRA adapter merged into the base weights (safetensors, plus tokenizer)" if merged
            else "a LoRA adapter (PEFT format); load it on top of the base model")
    parts = [f"---\n{head}---\n", f"# {name}\n",
             f"{base_model} aligned by {kind.upper()} to answer in 古文翻译腔, the mock 'translated classical "
             f"Chinese' tone (我听说…；难道…不是…吗？；方圆十里的…没有不…；嗟乎！), keeping each reply's meaning. "
             f"This repo holds {what}. Trained with gwq `gwq-align {kind}` on ms-swift.\n",
             _usage(repo, base_model, merged), _training(record, dataset, base_model, site),
             _hyperparameters(record.get("args") or {}), _metrics(record), _compare(compare), _environment(record)]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)


# -- sections --------------------------------------------------------------

def _usage(repo: str, base_model: str, merged: bool) -> str:
    if merged:
        return ("## Use\n\n```bash\n"
                f"swift infer --model {repo} --stream true\n```\n")
    return ("## Use\n\n```bash\n"
            f"swift infer --model {base_model} --adapters {repo} --stream true\n```\n")


def _training(record: dict, dataset: Optional[str], base_model: str, site: str) -> str:
    lines = ["## Training\n"]
    trained_from = str(record.get("base_model") or "")
    if trained_from and trained_from != base_model:
        lines.append(f"Base model: {base_model} (the commands below name the local copy it was trained from).\n")
    if dataset:
        lines.append(f"Dataset: [{dataset}]({site}/datasets/{dataset}).\n")
    files = (record.get("dataset") or {}).get("files") or []
    if files:
        lines.append(markdown_table(("file", "split", "rows", "sha256"),
                            [(Path(f.get("path", "?")).name, f.get("split", ""), f.get("rows", ""),
                              f"`{str(f.get('sha256', ''))[:12]}`") for f in files]))
    if record.get("from_sft"):
        lines.append(f"DPO started from the SFT run `{Path(str(record['from_sft'])).name}`.\n")
    lines.append("The exact gwq command:\n\n```bash\n" + _redact(record.get("command", "")) + "\n```\n")
    if record.get("swift_command"):
        lines.append("The equivalent ms-swift command:\n\n```bash\n" + _redact(record["swift_command"]) + "\n```\n")
    return "\n".join(lines)


def _hyperparameters(args: dict) -> str:
    rows = [(k, _fmt(args[k])) for k in HYPERPARAMETERS if args.get(k) is not None]
    if not rows:
        return ""
    return "### Hyperparameters\n\n" + markdown_table(("argument", "value"), rows)


def _metrics(record: dict) -> str:
    metrics = record.get("metrics") or {}
    final, best = metrics.get("final") or {}, metrics.get("best") or {}
    keys = [k for k in dict.fromkeys([*final, *best]) if not NOT_RESULTS.search(k)]
    out = ["## Results\n"]
    if keys:
        out.append(markdown_table(("metric", "final", "best"), [(k, _fmt(final.get(k, "")), _fmt(best.get(k, ""))) for k in keys]))
    facts = [(label, _fmt(record[key])) for key, label in
             (("wall_s", "wall time (s)"), ("tokens_seen", "tokens seen"), ("tokens_per_s", "tokens/s"),
              ("peak_memory_gib", "peak memory (GiB)")) if record.get(key) is not None]
    if facts:
        out.append(markdown_table(("run", "value"), facts))
    return "\n".join(out) if len(out) > 1 else ""


def _compare(report: Optional[Path]) -> str:
    table = headline_table(report) if report else ""
    if not table:
        return ""
    return f"### Compared with the base model\n\nFrom `{report.name}`:\n\n{table}"


def _environment(record: dict) -> str:
    hw, versions = record.get("hardware") or {}, record.get("versions") or {}
    device = hw.get("gpu_name") or hw.get("device") or "?"
    if hw.get("gpu_count"):
        device = f"{hw['gpu_count']}× {device}"
    pkgs = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    commit = f", gwq commit `{str(record['git_commit'])[:12]}`" if record.get("git_commit") else ""
    return f"## Environment\n\nTrained on {device} ({hw.get('cpu_count', '?')} CPU cores) with {pkgs}{commit}.\n"


def _redact(command) -> str:
    """`--hub_token ms-abc` → `--hub_token ***`."""
    return SECRET_FLAG.sub(lambda m: f"{m.group(1)}{m.group(2)}***", str(command))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)
