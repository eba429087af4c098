"""Training recipes: YAML data shipped in gwq_align/recipes/, merged with user config and flags.

A recipe file `<kind>-<name>.yaml` holds `args` (ms-swift 4.6 argument names and values),
`why` (one line per choice, rendered in docs/align.md) and an optional `base` recipe it extends.
Precedence, lowest first: recipe (and its bases) < `--config FILE.yaml` < command-line flags.

    >>> args = resolve("sft", "seed", overrides={"learning_rate": 1e-4})
    >>> args["lora_rank"], args["learning_rate"]
    (8, 0.0001)

What it leaves out: validating values — ms-swift's own argument parser does that and its
message is passed through.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from pathlib import Path
from typing import Any, Optional

import yaml

from gwq_data.errors import UsageError

KINDS = ("sft", "dpo")
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


@dataclass
class Hyper:
    """The hyperparameters every command exposes as a flag (None = keep the recipe's value).

    Anything else ms-swift accepts goes through `--set key=value` or `--config`.
    """

    learning_rate: Optional[float] = field(default=None, metadata={"help": "Peak learning rate."})
    num_train_epochs: Optional[float] = field(default=None, metadata={"help": "Epochs over the training set."})
    max_steps: Optional[int] = field(default=None, metadata={"help": "Stop after this many optimizer steps (overrides epochs)."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Longest tokenized dialogue; longer ones are dropped by ms-swift."})
    per_device_train_batch_size: Optional[int] = field(default=None, metadata={"help": "Dialogues (or pairs) per forward pass per GPU."})
    gradient_accumulation_steps: Optional[int] = field(default=None, metadata={"help": "Forward passes per optimizer step."})
    lora_rank: Optional[int] = field(default=None, metadata={"help": "LoRA rank."})
    lora_alpha: Optional[int] = field(default=None, metadata={"help": "LoRA alpha (update scale = alpha / rank)."})
    save_steps: Optional[int] = field(default=None, metadata={"help": "Checkpoint (and evaluate) every N steps."})
    seed: Optional[int] = field(default=None, metadata={"help": "Random seed for data order and LoRA init."})

    def as_overrides(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        if "save_steps" in out:
            out["eval_steps"] = out["save_steps"]  # the tutorial evaluates where it saves; keep them together
        return out


def available(kind: str) -> list[str]:
    names = [p.name for p in RECIPES_DIR.iterdir() if p.name.endswith(".yaml")]
    return sorted(n[len(kind) + 1:-5] for n in names if n.startswith(kind + "-"))


def load(stem: str) -> dict:
    """One recipe file with its `base` chain merged in (base first)."""
    path = RECIPES_DIR / f"{stem}.yaml"
    if not path.is_file():
        kind = stem.split("-", 1)[0]
        raise UsageError(f"unknown recipe {stem.split('-', 1)[-1]!r} for {kind}; choose one of: {', '.join(available(kind))}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    merged = {"description": data.get("description", ""), "args": {}, "why": {}}
    if data.get("base"):
        base = load(data["base"])
        merged["args"].update(base["args"])
        merged["why"].update(base["why"])
    merged["args"].update(data.get("args") or {})
    merged["why"].update(data.get("why") or {})
    return merged


def read_config(path: Path) -> dict[str, Any]:
    """A user's YAML of ms-swift arguments (flat, or under an `args:` key)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UsageError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of ms-swift arguments, got {type(data).__name__}")
    args = data.get("args", data)
    if not isinstance(args, dict):
        raise UsageError(f"{path}: 'args' must be a mapping of ms-swift arguments, got {type(args).__name__}")
    return dict(args)


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values are parsed as YAML scalars (1e-4, true, [a, b])."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected key=value, e.g. --set weight_decay=0.0")
        try:
            out[key.strip().lstrip("-")] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as e:
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return out


def resolve(kind: str, recipe: str, *, config: Optional[Path] = None,
            overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Recipe < config file < overrides, as one dict of ms-swift arguments."""
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}")
    args = dict(load(f"{kind}-{recipe}")["args"])
    if config is not None:
        args.update(read_config(config))
    args.update(overrides or {})
    return args
