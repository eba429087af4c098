"""Prompts are data: YAML files in the repo's prompts/ folder, rendered into chat messages.

A prompt file has ``name``, ``mode`` (rewrite | synthesize), ``system``,
``instructions``, ``output_contract``, ``task`` and ``repair`` templates
(``string.Template``: ``$n``, ``$dialogue``, ``$topic``...; JSON braces need no
escaping) and few-shot ``examples``. Rendering gives the messages of one chat
completion: system (system + instructions + contract), then each example as a
user task / assistant JSON answer pair, then the task for this row.

``--prompt`` is a path, else a name looked up in ``prompts/`` beside the package
(a source checkout or editable install), else in the copy shipped inside the
package as ``gwq_data/prompts/`` (a wheel install).

>>> p = load_prompt("translation_tone")
>>> p.ref            # "name@sha256[:12]" of the file, as written into meta
'translation_tone@...'

What it leaves out: Jinja, per-model prompt variants, prompts for other tones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import yaml

from gwq_data.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SEARCH_DIRS = (PACKAGE_DIR.parent / "prompts", PACKAGE_DIR / "prompts")
REQUIRED = ("name", "mode", "system", "instructions", "output_contract", "task", "repair", "examples")


@dataclass
class Prompt:
    name: str
    mode: str
    path: Path
    hash: str
    system: str
    task: str
    repair: str
    examples: list = field(default_factory=list)
    _rendered: list | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.hash}"

    # ----- rewrite mode
    def rewrite_messages(self, record: dict) -> list[dict]:
        """The chat for restyling every assistant reply of one canonical record."""
        return self._prefix() + [{"role": "user", "content": self.rewrite_task(record["messages"])}]

    def _prefix(self) -> list[dict]:
        """System and few-shot messages, rendered once: they are the same for every row (do not mutate)."""
        if self._rendered is None:
            msgs = [{"role": "system", "content": self.system}]
            for ex in self.examples:
                if self.mode == "rewrite":
                    plain = [{k: v for k, v in m.items() if k != "styled"} for m in ex["messages"]]
                    styled = [m["styled"] for m in ex["messages"] if m["role"] == "assistant"]
                    msgs.append({"role": "user", "content": self.rewrite_task(plain)})
                    msgs.append({"role": "assistant", "content": _answer({"replies": styled})})
                else:
                    msgs.append({"role": "user", "content": self.synthesize_task(ex["topic"], len(ex["turns"]), 1)})
                    msgs.append({"role": "assistant", "content": _answer({"turns": ex["turns"]})})
            self._rendered = msgs
        return self._rendered

    def rewrite_task(self, messages: list[dict]) -> str:
        shown, n = [], 0
        for m in messages:
            if m["role"] == "assistant":
                n += 1
                shown.append({"role": "assistant", "reply": n, "content": m.get("original") or m["content"]})
            else:
                shown.append({"role": m["role"], "content": m["content"]})
        dialogue = "\n".join(json.dumps(m, ensure_ascii=False) for m in shown)
        return Template(self.task).safe_substitute(n=n, dialogue=dialogue)

    # ----- synthesize mode
    def synthesize_messages(self, topic: str, turns: int, index: int) -> list[dict]:
        return self._prefix() + [{"role": "user", "content": self.synthesize_task(topic, turns, index)}]

    def synthesize_task(self, topic: str, turns: int, index: int) -> str:
        return Template(self.task).safe_substitute(topic=topic, turns=turns, index=index)

    def repair_message(self, problem: str, n: int) -> str:
        return Template(self.repair).safe_substitute(problem=problem, n=n)

    def example_texts(self) -> list[str]:
        """Text a reply must not copy: the instructions and every few-shot answer."""
        out = [self.system]
        for ex in self.examples:
            out += [m["styled"] for m in ex.get("messages", []) if m["role"] == "assistant"]
            out += [t["styled"] for t in ex.get("turns", [])]
        return out


def _answer(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)


def resolve(spec: str | Path) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    for folder in SEARCH_DIRS:
        if (folder / name).is_file():
            return folder / name
    known = sorted({p.stem for d in SEARCH_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise UsageError(f"--prompt {spec}: no such file, and no prompt of that name (known: {', '.join(known) or 'none'})")


def load_prompt(spec: str | Path) -> Prompt:
    """Load and check a prompt file; raises UsageError naming the file and the problem."""
    path = resolve(spec)
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with keys {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise UsageError(f"{path}: missing key(s) {', '.join(missing)}")
    if data["mode"] not in ("rewrite", "synthesize"):
        raise UsageError(f"{path}: mode must be rewrite or synthesize, not {data['mode']!r}")
    _check_examples(path, data["mode"], data["examples"])
    system = "\n\n".join(str(data[k]).strip() for k in ("system", "instructions", "output_contract"))
    return Prompt(name=str(data["name"]), mode=data["mode"], path=path, hash=hashlib.sha256(raw).hexdigest()[:12],
                  system=system, task=str(data["task"]), repair=str(data["repair"]), examples=data["examples"])


def _check_examples(path: Path, mode: str, examples) -> None:
    if not isinstance(examples, list):
        raise UsageError(f"{path}: examples must be a list")
    for i, ex in enumerate(examples):
        where = f"{path}: examples[{i}]"
        if mode == "rewrite":
            msgs = ex.get("messages") if isinstance(ex, dict) else None
            if not isinstance(msgs, list) or not any(m.get("role") == "assistant" for m in msgs):
                raise UsageError(f"{where}: needs messages with at least one assistant turn")
            for m in msgs:
                if m.get("role") == "assistant" and not (isinstance(m.get("styled"), str) and isinstance(m.get("content"), str)):
                    raise UsageError(f"{where}: every assistant message needs content (plain) and styled")
        else:
            turns = ex.get("turns") if isinstance(ex, dict) else None
            if not isinstance(ex.get("topic"), str) or not isinstance(turns, list) or not turns:
                raise UsageError(f"{where}: needs a topic and a list of turns")
            for t in turns:
                if not all(isinstance(t.get(k), str) for k in ("user", "plain", "styled")):
                    raise UsageError(f"{where}: every turn needs user, plain and styled strings")
