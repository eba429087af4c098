"""Find and load models: a local directory or a hub id, checked offline before anything runs.

    >>> ref = resolve("runs/tiny-qwen2")                    # doctest: +SKIP
    >>> ref.local, ref.model_type                            # doctest: +SKIP
    (True, 'qwen2')
    >>> model, tok = load("runs/tiny-qwen2", adapter="runs/sft/checkpoint-8")   # doctest: +SKIP

What it leaves out: downloading (ms-swift or modelscope does that where a hub is reachable),
quantized loading, multimodal processors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gwq_data.errors import UsageError

OFFLINE_VARS = ("HF_HUB_OFFLINE", "MODELSCOPE_OFFLINE", "TRANSFORMERS_OFFLINE")
# ms-swift's template for each local model_type we know; others are left to ms-swift's registry.
TEMPLATES = {"qwen2": "qwen2_5"}


@dataclass
class ModelRef:
    name: str                      # what the user passed
    local: bool
    path: Optional[Path] = None    # resolved dir when local
    model_type: Optional[str] = None

    def swift_args(self) -> dict:
        """--model, and --model_type/--template for local dirs (their names say nothing to ms-swift)."""
        args = {"model": str(self.path) if self.local else self.name}
        if self.local and self.model_type in TEMPLATES:
            args.update(model_type=self.model_type, template=TEMPLATES[self.model_type])
        return args


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in OFFLINE_VARS)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") != 1 or os.sep in name.replace("/", "", 1)


def resolve(name: str) -> ModelRef:
    """A local model dir (must hold config.json) or an `org/name` hub id."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{name}: not a model directory (it is a file)")
        config = path / "config.json"
        if not config.is_file():
            raise UsageError(f"{name}: no config.json; not a model directory (build one with `gwq-align tiny-model DIR`)")
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{config}: unreadable config.json: {e}") from None
        return ModelRef(name, True, path.resolve(), model_type)
    if _looks_like_path(name):
        raise UsageError(f"{name}: model directory not found")
    if offline():
        raise UsageError(f"{name}: looks like a hub id, but the hub is switched off here "
                         f"({'/'.join(OFFLINE_VARS)}); download it first and pass the local directory")
    return ModelRef(name, False)


def load(base: str, adapter: Optional[str] = None, *, dtype: str = "auto", device: Optional[str] = None):
    """(model, tokenizer): the base with an optional LoRA adapter on top, in eval mode.

    For compare/serve: a plain transformers + peft load, no ms-swift needed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve(base)
    where = str(ref.path) if ref.local else ref.name
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(where)
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise UsageError(f"{adapter}: no adapter_config.json; pass a checkpoint dir of a gwq-align run")
        model = PeftModel.from_pretrained(model, adapter)
    if device:
        model = model.to(device)
    return model.eval(), tokenizer
