"""The gwq record: detect an input row's format, turn it into the canonical form, check it.

Accepted input, detected per line:
- ms-swift ``{"messages": [{"role", "content"}...]}`` (the canonical form itself);
- ShareGPT ``{"conversations": [{"from", "value"}...]}`` with from in
  human/gpt/user/assistant/system, an optional top-level ``system``;
- ``{"query", "response", "history": [[q, r], ...], "system"?}``.

The canonical record is an ms-swift messages row whose assistant messages may
carry ``original`` (the plain reply the styled ``content`` was rewritten from),
plus optional ``id`` and ``meta``. Its JSON Schema ships in ``schema/``.

`check` returns the problems of one record as (reason, detail) pairs; reasons are
short snake_case codes that summaries count and rejects files carry.

What it leaves out: tool calls, multimodal content parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

import jsonschema

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class RecordError(ValueError):
    """A row that cannot be a gwq record. `reason` is a short code, `detail` says where and why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(resources.files("gwq_data").joinpath("schema/record.schema.json").read_text("utf-8"))


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


# jsonschema keyword -> our reason code, so counts stay meaningful to users.
_KEYWORD_REASON = {"type": "bad_type", "required": "missing_key", "enum": "unknown_role",
                   "additionalProperties": "unknown_key", "minItems": "too_few_messages"}


def schema_problem(record: Any) -> RecordError | None:
    """The first JSON Schema violation of a canonical record, as a RecordError."""
    errors = list(_validator().iter_errors(record))
    if not errors:
        return None
    # The deepest error is the most specific ("messages/0/role: 'robot' is not one of...").
    err = max(errors, key=lambda e: len(e.absolute_path))
    where = "/".join(str(p) for p in err.absolute_path) or "<root>"
    return RecordError(_KEYWORD_REASON.get(err.validator, "schema"), f"{where}: {err.message[:200]}")


def detect_format(data: Any) -> str:
    """'messages', 'sharegpt' or 'query_response'; raises RecordError otherwise."""
    if not isinstance(data, dict):
        raise RecordError("not_object", f"expected a JSON object, got {type(data).__name__}")
    if "messages" in data:
        return "messages"
    if "conversations" in data:
        return "sharegpt"
    if "query" in data and "response" in data:
        return "query_response"
    keys = ", ".join(sorted(data)[:6]) or "none"
    raise RecordError("unknown_format", f"no 'messages', 'conversations' or 'query'/'response' key (keys: {keys})")


def _str_field(obj: dict, key: str, where: str) -> str:
    path = key if where == "<root>" else f"{where}.{key}"
    if key not in obj:
        raise RecordError("missing_key", f"{path}: missing")
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError("bad_type", f"{path}: expected a string, got {type(value).__name__}")
    return value


def _from_sharegpt(data: dict) -> list[dict]:
    turns = data["conversations"]
    if not isinstance(turns, list):
        raise RecordError("bad_type", f"conversations: expected a list, got {type(turns).__name__}")
    messages = []
    if data.get("system") is not None:
        messages.append({"role": "system", "content": _str_field(data, "system", "<root>")})
    for i, turn in enumerate(turns):
        where = f"conversations/{i}"
        if not isinstance(turn, dict):
            raise RecordError("bad_type", f"{where}: expected an object, got {type(turn).__name__}")
        speaker = _str_field(turn, "from", where)
        if speaker not in SHAREGPT_ROLES:
            raise RecordError("unknown_role", f"{where}.from: '{speaker[:40]}' is not one of {sorted(SHAREGPT_ROLES)}")
        message = {"role": SHAREGPT_ROLES[speaker], "content": _str_field(turn, "value", where)}
        if "original" in turn:
            message["original"] = _str_field(turn, "original", where)
        messages.append(message)
    return messages


def _from_query_response(data: dict) -> list[dict]:
    messages = []
    if data.get("system") is not None:
        messages.append({"role": "system", "content": _str_field(data, "system", "<root>")})
    history = data.get("history") or []
    if not isinstance(history, list):
        raise RecordError("bad_type", f"history: expected a list of [query, response] pairs, got {type(history).__name__}")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RecordError("bad_type", f"history/{i}: expected [query, response] strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages.append({"role": "user", "content": _str_field(data, "query", "<root>")})
    messages.append({"role": "assistant", "content": _str_field(data, "response", "<root>")})
    return messages


def to_canonical(data: Any) -> dict:
    """Turn any accepted row into a canonical record (raises RecordError).

    >>> to_canonical({"query": "你是谁？", "response": "我是助手。"})["messages"][1]
    {'role': 'assistant', 'content': '我是助手。'}
    """
    fmt = detect_format(data)
    if fmt == "messages":
        record = {k: v for k, v in data.items() if k in ("id", "messages", "meta")}
        record = _take_rejected_response(data, record)
    else:
        record = {"messages": _from_sharegpt(data) if fmt == "sharegpt" else _from_query_response(data)}
        for key in ("id", "meta"):
            if key in data:
                record[key] = data[key]
    # Many datasets number their rows; an integer id is still an id, not a reason to drop the dialogue.
    if isinstance(record.get("id"), int) and not isinstance(record["id"], bool):
        record["id"] = str(record["id"])
    problem = schema_problem(record)
    if problem:
        raise problem
    messages = record["messages"]
    if messages and messages[0]["role"] == "system" and not messages[0]["content"].strip():
        # `"system": ""` is how many exports say "no system prompt": drop it rather than reject the dialogue.
        record = {**record, "messages": messages[1:]}
    return record


def _take_rejected_response(data: dict, record: dict) -> dict:
    """An ms-swift DPO row (`rejected_response`) is a canonical row whose last reply has that `original`,
    so `swift-dpo` files fed back into gwq keep their pairs instead of silently losing them."""
    rejected = data.get("rejected_response")
    messages = record.get("messages")
    if rejected is None or not isinstance(messages, list) or not messages:
        return record
    if not isinstance(rejected, str):
        raise RecordError("bad_type", f"rejected_response: expected a string, got {type(rejected).__name__}")
    last = messages[-1]
    if not (isinstance(last, dict) and last.get("role") == "assistant"):
        raise RecordError("bad_order", "rejected_response needs the dialogue to end with an assistant reply")
    if "original" in last and last["original"] != rejected:
        raise RecordError("bad_original", "the last reply has both 'original' and a different 'rejected_response'")
    return {**record, "messages": messages[:-1] + [{**last, "original": rejected}]}


@dataclass
class Limits:
    """Length limits. Defaults follow the tutorial's `max_length 1024` (Qwen tokens)."""

    max_tokens: int = 1024
    min_reply_chars: int = 1


def check(record: dict, limits: Limits = Limits(), count_tokens: Callable[[str], int] | None = None) -> list[RecordError]:
    """Semantic checks on a canonical record; an empty list means valid."""
    problems: list[RecordError] = []
    messages = record["messages"]
    roles = [m["role"] for m in messages]
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        problems.append(RecordError("bad_order", f"messages/{roles.index('system', 1)}: system message after the first turn"))
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    for i, role in enumerate(body):
        if role != "system" and role != expected[i]:
            offset = len(roles) - len(body)
            problems.append(RecordError("bad_order", f"messages/{i + offset}: expected {expected[i]}, got {role} (turns must alternate user/assistant)"))
            break
    if "assistant" not in roles:
        problems.append(RecordError("no_assistant", "no assistant turn"))
    elif roles[-1] != "assistant":
        problems.append(RecordError("last_not_assistant", f"last message is {roles[-1]}, expected assistant"))
    for i, m in enumerate(messages):
        if not m["content"].strip():
            problems.append(RecordError("empty_content", f"messages/{i}: {m['role']} content is empty"))
        if "original" in m:
            if m["role"] != "assistant":
                problems.append(RecordError("bad_original", f"messages/{i}: 'original' only belongs on assistant messages"))
            elif not m["original"].strip():
                problems.append(RecordError("original_empty", f"messages/{i}: 'original' is empty"))
            elif m["original"].strip() == m["content"].strip():
                problems.append(RecordError("original_same", f"messages/{i}: 'original' equals the styled content"))
    problems += _length_problems(messages, limits, count_tokens)
    return problems


def _length_problems(messages: list[dict], limits: Limits, count_tokens: Callable[[str], int] | None) -> list[RecordError]:
    text = "".join(m["content"] for m in messages)
    # A cheap bound first: no tokenizer yields fewer tokens than chars/8, so a
    # 5 MB line is rejected without being tokenized.
    if len(text) > limits.max_tokens * 8:
        return [RecordError("too_long", f"{len(text)} chars, far over max_tokens={limits.max_tokens}")]
    if count_tokens is None:
        from gwq_data.tokens import count_tokens
    n = count_tokens(text) + 4 * len(messages)  # chat-template overhead per message
    if n > limits.max_tokens:
        return [RecordError("too_long", f"about {n} tokens > max_tokens={limits.max_tokens}")]
    return []


def assistant_pairs(record: dict) -> list[tuple[int, str, str | None]]:
    """(index, styled content, original or None) for every assistant message."""
    return [(i, m["content"], m.get("original")) for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]
