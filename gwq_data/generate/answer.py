"""Read the model's JSON answer tolerantly: strip fences and chatter, repair, check the shape.

>>> parse_replies('好的！```json\\n{"replies": ["我听说……"]}\\n```', 1)
['我听说……']
>>> parse_replies('{"replies": ["a"]}', 2)
Traceback (most recent call last):
gwq_data.generate.answer.AnswerError: reply_count: got 1 replies, need 2

Repairs (quotes, trailing commas, a cut-off tail) come from the json_repair
library; a repaired answer still has to have exactly the right number of
non-empty strings. What it leaves out: streaming, tool-call answers.
"""

from __future__ import annotations

import json

import json_repair


class AnswerError(ValueError):
    """An answer that cannot be used; `reason` is a reject code, `detail` goes into the re-ask."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def extract_json(text: str):
    """The JSON value inside a model answer, repairing it if needed; raises AnswerError."""
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            return json.loads(text[start:end + 1])
        except json.JSONDecodeError:
            pass
    try:
        value = json_repair.loads(text[start:] if start != -1 else text)
    except Exception as e:  # json_repair raises on pathological input; the answer is unusable either way
        raise AnswerError("bad_json", f"could not repair the JSON ({type(e).__name__})") from None
    if value in ("", None, [], {}):
        raise AnswerError("bad_json", "the answer contains no JSON object")
    return value


def _strings(value, key: str, what: str) -> list:
    if isinstance(value, dict):
        value = value.get(key)
    if not isinstance(value, list):
        raise AnswerError("bad_json", f'expected {{"{key}": [...]}}, a list of {what}')
    return value


def parse_replies(text: str, n: int) -> list[str]:
    """Exactly `n` styled replies from a rewrite answer."""
    replies = _strings(extract_json(text), "replies", "strings")
    if not all(isinstance(r, str) for r in replies):
        raise AnswerError("bad_json", "every item of replies must be a string")
    if len(replies) != n:
        raise AnswerError("reply_count", f"got {len(replies)} replies, need {n}")
    return [r.strip() for r in replies]


def parse_turns(text: str, n: int) -> list[dict]:
    """Exactly `n` {user, plain, styled} turns from a synthesize answer."""
    turns = _strings(extract_json(text), "turns", "objects")
    ok = all(isinstance(t, dict) and all(isinstance(t.get(k), str) and t[k].strip() for k in ("user", "plain", "styled"))
             for t in turns)
    if not ok:
        raise AnswerError("bad_json", "every turn needs non-empty user, plain and styled strings")
    if len(turns) != n:
        raise AnswerError("reply_count", f"got {len(turns)} turns, need {n}")
    return [{k: t[k].strip() for k in ("user", "plain", "styled")} for t in turns]
