"""Turn canonical records into the row formats trainers read. Pure functions, no I/O.

Formats (one canonical record → zero or more rows):

- ``swift-sft``: ms-swift ``{"messages": [{"role", "content"}...]}``; ``original``, ``id`` and ``meta`` stripped.
- ``swift-dpo``: ms-swift RLHF rows: ``messages`` ending at a styled assistant turn plus
  ``"rejected_response": <original>``.
- ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt", "value"}...], "system"?}``.
- ``trl-dpo``: TRL's conversational preference rows: ``prompt`` (messages up to the user turn),
  ``chosen`` / ``rejected`` (one assistant message each).
- ``llamafactory-dpo``: LLaMA-Factory's sharegpt ranking rows: ``messages`` ending at the user turn,
  ``chosen`` / ``rejected`` as single message objects (what its converter requires for ``ranking: true``).

A DPO pair is (the messages before an assistant turn, styled reply, original reply). ``pairs="last"``
takes the last assistant turn only; ``pairs="all"`` takes every assistant turn that has an
``original``. History always keeps the *styled* replies, since that is what the tuned model will
have said in earlier turns. A turn without ``original`` gives no pair (callers count that).

>>> rec = {"messages": [{"role": "user", "content": "1+1?"},
...                     {"role": "assistant", "content": "我听说一加一得二。", "original": "2"}]}
>>> to_rows(rec, "swift-dpo")
[{'messages': [{'role': 'user', 'content': '1+1?'}, {'role': 'assistant', 'content': '我听说一加一得二。'}], 'rejected_response': '2'}]

What it leaves out: tool calls, images, KTO/reward-model formats.
"""

from __future__ import annotations

from dataclasses import dataclass

SFT_FORMATS = ("swift-sft", "sharegpt")
DPO_FORMATS = ("swift-dpo", "trl-dpo", "llamafactory-dpo")
FORMATS = SFT_FORMATS + DPO_FORMATS
PAIRS = ("last", "all")

_SHAREGPT_FROM = {"user": "human", "assistant": "gpt"}


@dataclass
class DpoPair:
    """One preference pair cut from a dialogue."""

    history: list[dict]  # plain {"role", "content"} messages, ending with the user turn
    chosen: str  # the styled reply
    rejected: str  # the original plain reply


def plain_messages(messages: list[dict]) -> list[dict]:
    """Messages with only role and content (what every trainer expects)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def dpo_pairs(record: dict, pairs: str = "last") -> list[DpoPair]:
    """The preference pairs of one record; [] when the chosen turn(s) carry no ``original``."""
    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    messages = record["messages"]
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if pairs == "last":
        turns = turns[-1:]
    return [DpoPair(plain_messages(messages[:i]), messages[i]["content"], messages[i]["original"])
            for i in turns if messages[i].get("original")]


def swift_sft(record: dict) -> dict:
    return {"messages": plain_messages(record["messages"])}


def sharegpt(record: dict) -> dict:
    messages = record["messages"]
    row: dict = {}
    if messages and messages[0]["role"] == "system":
        row["system"] = messages[0]["content"]
        messages = messages[1:]
    # Keys in this order so `system` sits before the dialogue when a person reads the file.
    return {**row, "conversations": [{"from": _SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in messages]}


def swift_dpo(pair: DpoPair) -> dict:
    return {"messages": pair.history + [{"role": "assistant", "content": pair.chosen}],
            "rejected_response": pair.rejected}


def trl_dpo(pair: DpoPair) -> dict:
    return {"prompt": pair.history,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}]}


def llamafactory_dpo(pair: DpoPair) -> dict:
    return {"messages": pair.history,
            "chosen": {"role": "assistant", "content": pair.chosen},
            "rejected": {"role": "assistant", "content": pair.rejected}}


_SFT = {"swift-sft": swift_sft, "sharegpt": sharegpt}
_DPO = {"swift-dpo": swift_dpo, "trl-dpo": trl_dpo, "llamafactory-dpo": llamafactory_dpo}


def to_rows(record: dict, fmt: str, pairs: str = "last") -> list[dict]:
    """All output rows of one canonical record in format ``fmt``."""
    if fmt in _SFT:
        return [_SFT[fmt](record)]
    if fmt in _DPO:
        return [_DPO[fmt](p) for p in dpo_pairs(record, pairs)]
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
         "assistant_tag": "assistant", "system_tag": "system"}


def dataset_info_entry(fmt: str, file_name: str) -> dict:
    """The LLaMA-Factory ``dataset_info.json`` entry that reads a file of format ``fmt``.

    swift-dpo and trl-dpo have no LLaMA-Factory reading (its ranking converter wants the
    dialogue to end at the user turn and chosen/rejected as single messages): use llamafactory-dpo.
    """
    if fmt == "swift-sft":
        return {"file_name": file_name, "formatting": "sharegpt",
                "columns": {"messages": "messages"}, "tags": dict(_TAGS)}
    if fmt == "sharegpt":
        return {"file_name": file_name, "formatting": "sharegpt",
                "columns": {"messages": "conversations", "system": "system"}}
    if fmt == "llamafactory-dpo":
        return {"file_name": file_name, "formatting": "sharegpt", "ranking": True,
                "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
                "tags": dict(_TAGS)}
    raise ValueError(f"LLaMA-Factory cannot read {fmt!r} rows; use --to llamafactory-dpo for preference data")
