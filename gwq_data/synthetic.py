"""Deterministic synthetic 古文翻译腔 dialogues with planted duplicates, for
dedupe tests and benchmarks (bench/dedupe.py).

Each dialogue is a user question and an assistant reply built from tone phrases
(我听说…, 难道…不是…吗？) and random runs of common characters, ~400 characters
in all. A share of the dialogues are planted copies of an earlier one:

- exact variants: same text with spaces added, punctuation changed and some
  characters written in traditional form (equal after `dedupe.normalize`);
- near variants: a fraction of characters replaced by random ones.

`jaccard` gives the exact Jaccard similarity of two texts' n-gram sets (after
normalisation), the reference the MinHash estimate is judged against.

What it leaves out: realism beyond surface statistics (the text is nonsense).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

from gwq_data.dedupe import normalize, shingles

PHRASES = [
    "我听说", "难道这不是", "方圆十里的", "没有不", "嗟乎！", "呜呼哀哉！", "古人云：", "岂不闻", "吾尝终日而思矣",
    "此乃天下之大事也", "正所谓", "譬如", "犹如", "不亦乐乎", "夫", "然则", "是故", "由此观之", "诚哉斯言",
]
_PUNCT = "，。！？；："


@lru_cache(maxsize=1)
def _alphabets() -> tuple[str, dict[str, str]]:
    """Common simplified characters that survive simplified→traditional→simplified,
    and a char map to traditional for the exact variants."""
    from importlib import resources

    st: dict[str, str] = {}
    text = resources.files("opencc").joinpath("dictionary/STCharacters.txt").read_text("utf-8")
    for line in text.splitlines():
        src, _, dst = line.partition("\t")
        if len(src) == 1 and dst:
            st[src] = dst.split(" ")[0]
    chars = []
    for cp in range(0x4E00, 0x9FA6):
        c = chr(cp)
        if normalize(c) == c and normalize(st.get(c, c)) == c:
            chars.append(c)
    # A fixed, modest alphabet (like real text's common characters) keeps
    # chance n-gram overlap between unrelated dialogues realistic.
    return "".join(random.Random(7).sample(chars, 3000)), st


def _run(rng: random.Random, chars: str, n: int) -> str:
    return "".join(rng.choices(chars, k=n))


def dialogue(rng: random.Random, length: int = 400) -> tuple[str, str]:
    """One (user, assistant) pair, about `length` characters together."""
    chars, _ = _alphabets()

    def part(n: int) -> str:
        out = []
        while sum(map(len, out)) < n:
            out.append(rng.choice(PHRASES) if rng.random() < 0.3 else _run(rng, chars, rng.randint(4, 12)))
            if rng.random() < 0.35:
                out.append(rng.choice(_PUNCT))
        return "".join(out)

    user_len = length // 5
    return part(user_len), part(length - user_len)


def exact_variant(rng: random.Random, text: str) -> str:
    """Same normal form: spaces, other punctuation, some traditional characters."""
    _, st = _alphabets()
    out = []
    for c in text:
        if c in _PUNCT:
            c = rng.choice(_PUNCT + " ")
        elif c in st and rng.random() < 0.5:
            c = st[c]
        out.append(c)
        if rng.random() < 0.03:
            out.append(rng.choice(" \u3000,."))
    return "".join(out)


def near_variant(rng: random.Random, text: str, edit: float) -> str:
    """Replace about `edit` (a fraction) of the characters with random ones."""
    chars, _ = _alphabets()
    out = list(text)
    for i in rng.sample(range(len(out)), round(edit * len(out))):
        out[i] = rng.choice(chars)
    return "".join(out)


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    """Exact Jaccard similarity of the n-gram sets of two texts (normalised first)."""
    sa, sb = set(shingles(normalize(a), ngram)), set(shingles(normalize(b), ngram))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass
class Corpus:
    dialogues: list[tuple[str, str]]
    # (original index, copy index, kind, edit fraction) for every planted copy
    planted: list[tuple[int, int, str, float]] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [u + "\n" + a for u, a in self.dialogues]

    def records(self) -> list[dict]:
        return [{"id": f"d{i}", "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
                for i, (u, a) in enumerate(self.dialogues)]


def corpus(n: int, *, seed: int = 0, exact_rate: float = 0.02, near_rate: float = 0.10,
           edits: tuple[float, float] = (0.0, 0.03), length: int = 400) -> Corpus:
    """`n` dialogues; about `exact_rate` of them exact variants and `near_rate`
    near variants (edit fraction uniform in `edits`) of an earlier original."""
    rng = random.Random(seed)
    out = Corpus([])
    originals: list[int] = []
    for i in range(n):
        roll = rng.random()
        if originals and roll < exact_rate:
            src = rng.choice(originals)
            u, a = out.dialogues[src]
            out.dialogues.append((exact_variant(rng, u), exact_variant(rng, a)))
            out.planted.append((src, i, "exact", 0.0))
        elif originals and roll < exact_rate + near_rate:
            src = rng.choice(originals)
            edit = rng.uniform(*edits)
            u, a = out.dialogues[src]
            out.dialogues.append((near_variant(rng, u, edit), near_variant(rng, a, edit)))
            out.planted.append((src, i, "near", edit))
        else:
            out.dialogues.append(dialogue(rng, length))
            originals.append(i)
    return out


def evaluate(texts: list[str], planted: list[tuple[int, int, str, float]], result, threshold: float,
             ngram: int = 5) -> dict:
    """Recall and precision of a `DedupeResult` against exact Jaccard.

    A true duplicate is a planted copy whose exact Jaccard with its original is
    ≥ threshold; recall is the share of them dropped. Precision is the share of
    dropped texts whose exact Jaccard with the text they were dropped for is
    ≥ threshold (so a wrong match counts against it, planted or not).
    """
    sims = [(c, jaccard(texts[o], texts[c], ngram)) for o, c, _, _ in planted]
    truth = [(c, j) for c, j in sims if j >= threshold]
    kept = set(result.keep)
    pairs = [(c.kept, d) for c in result.clusters for d in c.dropped]
    right = sum(jaccard(texts[k], texts[d], ngram) >= threshold for k, d in pairs)
    found = sum(c not in kept for c, _ in truth)
    # Recall just above the threshold vs well above it: MinHash's estimate has a
    # spread of about sqrt(J(1-J)/num_perm) (0.03 at 0.85 with 128), so misses
    # cluster near the threshold.
    near = [c for c, j in truth if j < threshold + 0.05]
    return {"true_duplicates": len(truth), "dropped": len(pairs), "dropped_correctly": right,
            "recall": found / len(truth) if truth else 1.0, "precision": right / len(pairs) if pairs else 1.0,
            "recall_within_0.05_of_threshold": round(sum(c not in kept for c in near) / len(near), 4) if near else None,
            "recall_above_that": round(sum(c not in kept for c, j in truth if j >= threshold + 0.05)
                                       / max(1, len(truth) - len(near)), 4)}
