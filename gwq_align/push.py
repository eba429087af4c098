"""What `gwq-align push` uploads for a run: the final adapter (or the merged model) plus card and config.

    files = adapter_files(run_dir, record, base_model="Qwen/Qwen2.5-0.5B-Instruct")
    files = merged_files(run_dir, record, out=tmp_dir)          # --merge: base + LoRA → safetensors

The adapter is uploaded from an allowlist of files, never the whole checkpoint: optimizer and RNG state are
large and useless on the hub, and ms-swift's `args.json` can hold a hub token. `adapter_config.json` gets the
base model's hub id in `base_model_name_or_path`, because the local path it was trained from means nothing
to whoever downloads it.

What it leaves out: quantised exports, pushing intermediate checkpoints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from gwq_data.errors import GwqError, UsageError

ADAPTER_FILES = re.compile(r"^(adapter_config\.json|adapter_model\.(safetensors|bin)|additional_config\.json|"
                           r"tokenizer(_config)?\.json|vocab\.json|merges\.txt|special_tokens_map\.json|"
                           r"added_tokens\.json|chat_template\.(jinja|json)|generation_config\.json)$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def adapter_dir(run_dir: Path, record: dict) -> Path:
    path = (run_dir / record["adapter"]).resolve()
    if not (path / "adapter_config.json").is_file():
        raise UsageError(f"{path}: no adapter_config.json; gwq_run.json's `adapter` must point at the final "
                         f"LoRA checkpoint of {run_dir}")
    return path


def adapter_files(run_dir: Path, record: dict, *, base_model: str) -> dict[str, Path | str]:
    src = adapter_dir(run_dir, record)
    files: dict[str, Path | str] = {p.name: p for p in sorted(src.iterdir())
                                    if p.is_file() and ADAPTER_FILES.match(p.name)}
    config = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model
    files["adapter_config.json"] = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    return files


def merged_files(run_dir: Path, record: dict, *, out: Path, base_path: Optional[str] = None) -> dict[str, Path]:
    """Merge the LoRA adapter into the base model (peft `merge_and_unload`) and save safetensors + tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = adapter_dir(run_dir, record)
    base = base_path or record.get("base_model")
    if not base:
        raise UsageError(f"{run_dir}: gwq_run.json has no base_model; pass --base-path DIR for --merge")
    try:
        model = AutoModelForCausalLM.from_pretrained(base, torch_dtype="auto")
    except OSError as e:
        raise GwqError(f"cannot load the base model {base!r} for --merge ({str(e).splitlines()[0]}); "
                       f"pass --base-path with a local copy of it") from None
    with torch.no_grad():
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok_src = adapter if all((adapter / f).is_file() for f in TOKENIZER_FILES) else base
    AutoTokenizer.from_pretrained(tok_src).save_pretrained(out)
    return {p.name: p for p in sorted(out.iterdir()) if p.is_file()}
