"""The dataset card (README.md) for a `gwq-data prepare` output directory.

    files = dataset_files(Path("out/prepared"))           # {"sft/train.jsonl": Path(...), ...}
    text = dataset_card(Path("out/prepared"), repo="alice/gwq-zh", license="apache-2.0")

The front matter is the Hugging Face dataset-card YAML that both ModelScope and `datasets` read: license,
language, tags, task categories, size category, pretty name and `configs` whose `data_files` point at the
SFT split (the `default` config, so `--dataset OWNER/NAME` trains SFT) and the DPO split (config `dpo`).
The body is built only from `stats.json` and the first SFT row, so the same prepared dir always gives the
same card. Input paths are shown by file name only: a public card has no business showing local paths.

What it leaves out: a Chinese-language body, citation blocks, images.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from gwq_data.errors import UsageError

SPLITS = {("default", "sft"), ("dpo", "dpo")}
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl"}


def dataset_files(prepared: Path) -> dict[str, Path]:
    """The prepared files that belong on the hub: the non-empty SFT/DPO splits and stats.json."""
    files = {}
    for sub in ("sft", "dpo"):
        for name in SPLIT_FILES.values():
            path = prepared / sub / name
            if path.is_file() and path.stat().st_size > 0:
                files[f"{sub}/{name}"] = path
    if not any(k.startswith("sft/") for k in files):
        raise UsageError(f"{prepared}: no sft/train.jsonl or sft/val.jsonl with rows; run `gwq-data prepare` "
                         f"first (or check its rejects.jsonl: every row may have been dropped)")
    # Published without local paths: inputs are named by file name (and sha256) only.
    stats = load_stats(prepared)
    for item in stats.get("inputs") or []:
        if isinstance(item, dict) and item.get("path"):
            item["path"] = Path(item["path"]).name
    files["stats.json"] = json.dumps(stats, ensure_ascii=False, indent=2) + "\n"
    return files


def load_stats(prepared: Path) -> dict:
    path = prepared / "stats.json"
    if not path.is_file():
        raise UsageError(f"{prepared}: no stats.json; pass a directory written by `gwq-data prepare --out-dir`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid JSON ({e}); re-run `gwq-data prepare`") from None


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "n>10M"


def front_matter(stats: dict, files: dict, *, repo: str, license: str) -> dict:
    counts = stats.get("counts", {})
    configs = []
    for config, sub in sorted(SPLITS, key=lambda c: c[0] != "default"):
        data_files = [{"split": split, "path": f"{sub}/{name}"}
                      for split, name in SPLIT_FILES.items() if f"{sub}/{name}" in files]
        if data_files:
            entry = {"config_name": config, "data_files": data_files}
            if config == "default":
                entry["default"] = True
            configs.append(entry)
    return {
        "license": license,
        "language": ["zh"],
        "pretty_name": f"{repo.split('/', 1)[1]}: 古文翻译腔 chat (SFT + DPO)",
        "tags": ["古文翻译腔", "style-transfer", "chinese", "conversational", "sft", "dpo", "ms-swift", "gwq"],
        "task_categories": ["text-generation"],
        "size_categories": [size_category(int(counts.get("kept") or 0))],
        "configs": configs,
    }


def dataset_card(prepared: Path, *, repo: str, license: str = "apache-2.0") -> str:
    stats = load_stats(prepared)
    files = dataset_files(prepared)
    meta = front_matter(stats, files, repo=repo, license=license)
    head = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    c = stats.get("counts", {})
    parts = [f"---\n{head}---\n", f"# {meta['pretty_name']}\n",
             "Chat dialogues whose assistant replies are rewritten in 古文翻译腔, the mock 'translated classical "
             "Chinese' tone (我听说…；难道…不是…吗？；方圆十里的…没有不…；嗟乎！), keeping each reply's meaning. "
             "Each styled reply keeps the plain reply it was rewritten from, which gives the DPO pairs "
             "(chosen = styled, rejected = plain). Made with gwq's "
             f"`gwq-data prepare` (gwq {stats.get('gwq_version', '?')}).\n",
             "## Files\n", markdown_table(("config", "split", "file", "rows"), _file_rows(files, c)),
             "## Statistics\n", markdown_table(("what", "count"), [(k, v) for k, v in c.items()]),
             _tokens(stats.get("tokens", {}), stats.get("max_tokens")), _turns(stats.get("turns", {})),
             _tone(stats.get("tone", {})), _provenance(stats), _format(files), _training(repo, files)]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)


# -- sections --------------------------------------------------------------

def _file_rows(files: dict, counts: dict) -> list[tuple]:
    rows = []
    for config, sub in sorted(SPLITS, key=lambda c: c[0] != "default"):
        for split, name in SPLIT_FILES.items():
            if f"{sub}/{name}" in files:
                key = f"{sub}_{'train' if split == 'train' else 'val'}"
                rows.append((config, split, f"`{sub}/{name}`", counts.get(key, "?")))
    return rows


def _tokens(t: dict, max_tokens) -> str:
    if not t:
        return ""
    limit = f" Dialogues longer than {max_tokens} tokens were dropped." if max_tokens else ""
    return ("### Dialogue length (tokens)\n\n"
            f"Counted with {t.get('method', '?')}: mean {t.get('mean')}, p50 {t.get('p50')}, "
            f"p90 {t.get('p90')}, max {t.get('max')}.{limit}\n\n"
            + markdown_table(("tokens", "dialogues"), list(t.get("histogram", {}).items())))


def _turns(t: dict) -> str:
    if not t:
        return ""
    return (f"### Turns per dialogue\n\nMean {t.get('mean')} turns per dialogue.\n\n"
            + markdown_table(("turns", "dialogues"), list(t.get("histogram", {}).items())))


def _tone(t: dict) -> str:
    if not t:
        return ""
    return ("### Tone score\n\n"
            "gwq's marker-based tone score of the styled replies (0 = plain, 1 = thick 古文翻译腔): "
            f"mean {t.get('mean')}, p10 {t.get('p10')}, p50 {t.get('p50')}, p90 {t.get('p90')}.\n\n"
            + markdown_table(("score", "dialogues"), list(t.get("histogram", {}).items())))


def _provenance(stats: dict) -> str:
    d, s = stats.get("dedupe", {}), stats.get("split", {})
    rejects = stats.get("rejects_by_reason") or {}
    lines = ["## How it was made\n",
             "- Generator models: " + _named(stats.get("generators")),
             "- Prompts (name@sha256[:12] of the prompt file): " + _named(stats.get("prompts")),
             f"- Dedupe: exact, then MinHash near-duplicates (threshold {d.get('threshold')}, "
             f"num_perm {d.get('num_perm')}, {d.get('ngram')}-char shingles)"
             + ("" if d.get("enabled", True) else " — disabled for this build"),
             f"- Split: {s.get('val_ratio')} of dialogues held out for validation by content hash, seed {s.get('seed')}"
             + (f"; DPO pairs from the {s['pairs']} assistant turn(s)" if s.get("pairs") else ""),
             "- Rejected rows per reason: " + (", ".join(f"`{k}` {v}" for k, v in rejects.items()) or "none"),
             "", "Inputs:", "",
             markdown_table(("file", "rows", "sha256"),
                    [(Path(i.get("path", "?")).name, i.get("rows"), f"`{str(i.get('sha256', ''))[:12]}`")
                     for i in stats.get("inputs", [])])]
    return "\n".join(lines)


def _format(files: dict) -> str:
    sample = _first_row(files.get("sft/train.jsonl") or files.get("sft/val.jsonl"))
    text = ("## Record format\n\n"
            "One JSON object per line, in ms-swift's `messages` format. SFT rows are "
            "`{\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": \"...\"}]}`; "
            "DPO rows add `\"rejected_response\"`, the plain reply the last assistant turn was rewritten from.\n\n"
            "An SFT row:\n\n```json\n" + json.dumps(sample, ensure_ascii=False, indent=2) + "\n```\n")
    return text


BASE_MODEL = "Qwen/Qwen2-7B-Instruct"  # the tutorial's base model


def _training(repo: str, files: dict) -> str:
    # The commands follow the tutorial (Qwen2-7B-Instruct, LoRA r8/alpha 32, lr 5e-5, 1 epoch, batch 1 x 16),
    # i.e. gwq-align's `seed` and `dpo-seed` recipes, so the card and `gwq-align` agree.
    dpo = any(k.startswith("dpo/") for k in files)
    lora = "--tuner_type lora --target_modules all-linear --lora_rank 8 --lora_alpha 32"
    text = ("## Train on it\n\nWith ms-swift (LoRA SFT, then DPO on the pairs):\n\n```bash\n"
            f"swift sft --model {BASE_MODEL} {lora} \\\n"
            f"    --dataset {repo} --learning_rate 5e-5 --num_train_epochs 1 --max_length 1024 \\\n"
            "    --per_device_train_batch_size 1 --gradient_accumulation_steps 16 --gradient_checkpointing true\n")
    if dpo:
        text += (f"swift rlhf --rlhf_type dpo --model {BASE_MODEL} {lora} \\\n"
                 f"    --dataset {repo}:dpo --beta 0.1 --rpo_alpha 1.0 --learning_rate 5e-5 --num_train_epochs 1\n")
    local = f"data/{repo.split('/', 1)[1]}"
    text += ("```\n\nWith gwq, which records each run (`gwq_run.json`) for its model card:\n\n```bash\n"
             f"modelscope download --dataset {repo} --local_dir {local}\n"
             f"gwq-align sft --model {BASE_MODEL} --dataset {local} --output-dir runs/sft --recipe seed\n")
    if dpo:
        text += (f"gwq-align dpo --model {BASE_MODEL} --dataset {local} --output-dir runs/dpo "
                 f"--from-sft runs/sft\n")
    return text + "```\n"


# -- helpers ---------------------------------------------------------------

def _named(counts: dict | None) -> str:
    return ", ".join(f"`{k}` ({v})" for k, v in (counts or {}).items()) or "not recorded"


def _first_row(path: Path | None) -> dict:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return json.loads(line)
    return {}


def markdown_table(columns: tuple, rows: list) -> str:
    """A markdown table for cards; a "|" inside a cell is escaped so it cannot split the row."""
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] * len(columns)) + "|"]
    out += ["| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |" for row in rows]
    return "\n".join(out) + "\n"
