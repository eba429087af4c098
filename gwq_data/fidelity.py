"""Does a styled reply still say what the plain one said? Facts kept and char-level overlap.

Used by `generate`'s quality gate and by `gwq-align compare`:

>>> f = fidelity("130+3445等于3575。", "我听说130加上3445，难道不是等于3575吗？嗟乎！")
>>> f.missing_numbers, round(f.recall, 2)
([], 0.87)
>>> fidelity("130+3445等于3575。", "呜呼！此数甚大，方圆十里无人不知。").missing_numbers
['130', '3445', '3575']

- numbers: every Arabic number of the original (``3,575`` counts as ``3575``; list
  markers like ``1.`` at a line start are ignored) must appear in the reply, as
  digits or as a Chinese numeral (三千五百七十五).
- entities: Latin-script words (Python, GPT-4, iPhone), and text in 《》“”「」 or
  backticks, must appear in the reply (Latin words case-insensitively).
- overlap: ROUGE-L on characters (longest common subsequence), precision against
  the reply, recall against the original, and their F1. A styled reply adds many
  characters, so recall says most about whether the content survived.

What it leaves out: Chinese named entities without quotes (no NER model), Chinese
numerals in the original, paraphrase (synonyms score as drift).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９．，", "0123456789.,")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LIST_MARKER = re.compile(r"^\s*\d+[.、)）](?!\d)\s*", re.M)
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9+#_.\-]*[A-Za-z0-9+#]|[A-Za-z]{2,}")
_QUOTED = re.compile(r"《([^》]{1,40})》|“([^”]{1,40})”|「([^」]{1,40})」|`([^`]{1,60})`")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_CN_NUMERAL = re.compile(f"[{''.join(_CN_DIGITS)}{''.join(_CN_UNITS)}]+")


def _norm_number(s: str) -> str:
    # "3,575" -> "3575"; "3.50" stays "3.50" (a decimal is a fact as written).
    return re.sub(r",(?=\d{3}\b)", "", s)


def numbers(text: str) -> list[str]:
    """Arabic numbers of `text` in order, thousands separators removed, list markers skipped."""
    text = text.translate(_FULLWIDTH_DIGITS)
    return [_norm_number(m) for m in _NUMBER.findall(_LIST_MARKER.sub(" ", text))]


def chinese_numeral(s: str) -> int | None:
    """三千五百七十五 -> 3575, 十二 -> 12, 二〇二四 -> 2024; None if it is not a plain numeral."""
    if not s:
        return None
    if all(ch in _CN_DIGITS for ch in s):
        return int("".join(str(_CN_DIGITS[ch]) for ch in s)) if len(s) > 1 else _CN_DIGITS[s]
    total, section, digit = 0, 0, None
    for ch in s:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch == "亿":
            total = (total + section + (digit or 0)) * _CN_UNITS[ch]
            section, digit = 0, None
        elif ch == "万":
            section = (section + (digit or 0)) * _CN_UNITS[ch]
            digit = None
        else:  # 十百千; a bare 十 means 一十
            section += (1 if digit is None else digit) * _CN_UNITS[ch]
            digit = None
    return total + section + (digit or 0)


def _numbers_in_reply(text: str) -> set[str]:
    found = set(numbers(text))
    found |= {str(n) for n in map(chinese_numeral, _CN_NUMERAL.findall(text)) if n is not None}
    return found


def entities(text: str) -> list[str]:
    """Names a rewrite must keep: Latin-script words and quoted or bracketed terms."""
    out = [w for w in _LATIN.findall(text) if not w.isdigit()]
    out += [next(g for g in m.groups() if g) for m in _QUOTED.finditer(text)]
    return list(dict.fromkeys(out))


def lcs_len(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings.

    Bit-parallel (Hyyrö 2004): one big-int operation per char of the shorter
    string, so two 2,000-char replies take about a millisecond, not seconds.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for ch in b:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l(reference: str, candidate: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of char-level ROUGE-L; whitespace is ignored."""
    ref, cand = re.sub(r"\s+", "", reference), re.sub(r"\s+", "", candidate)
    if not ref or not cand:
        return 0.0, 0.0, 0.0
    n = lcs_len(ref, cand)
    p, r = n / len(cand), n / len(ref)
    return p, r, (2 * p * r / (p + r) if n else 0.0)


@dataclass
class Fidelity:
    missing_numbers: list[str] = field(default_factory=list)
    missing_entities: list[str] = field(default_factory=list)
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("precision", "recall", "f1"):
            d[k] = round(d[k], 4)
        return d


def fidelity(original: str, styled: str) -> Fidelity:
    """Compare a styled reply with the plain original it was rewritten from."""
    have = _numbers_in_reply(styled)
    missing_numbers = [n for n in dict.fromkeys(numbers(original)) if n not in have]
    lower = styled.lower()
    missing_entities = [e for e in entities(original) if e.lower() not in lower]
    p, r, f = rouge_l(original, styled)
    return Fidelity(missing_numbers, missing_entities, p, r, f)
