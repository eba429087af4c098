"""Drop exact and near-duplicate dialogues, keeping the first of each cluster.

Two passes over the texts, in input order:

1. **Exact**: every text is normalised (`normalize`: NFKC, casefold,
   traditional→simplified, whitespace/punctuation/control characters removed)
   and hashed (blake2b-128); later texts with the same digest join the first
   one's "exact" cluster.
2. **Near**: the first text of each exact group gets a MinHash signature of its
   character n-grams (Chinese has no spaces, so words are not an option).
   datasketch's `MinHashLSH` proposes candidates; a candidate counts only if the
   estimated Jaccard (share of equal signature slots) is ≥ the threshold. Texts
   are processed in input order and only kept texts enter the index, so each
   cluster is a star: one kept text, and dropped texts each similar to *it*.

Speed without leaving datasketch's maths: the signatures are computed with
numpy over whole batches, by exactly datasketch's "affine32" scheme (murmur3
fmix of the n-gram hash, then ``a*h + b mod 2^32`` with datasketch's own
permutation parameters for the seed). `shingle_hash` is the matching per-n-gram
hash function, so ``MinHash(hashfunc=shingle_hash).update_batch(ngrams)`` gives
the same signature (tests check this). Hashing runs in worker processes.
Before the (per-text, Python-speed) LSH loop, a vectorised look at the LSH bands
finds which texts share a band with an earlier text (only those need a query)
and with a later one (only those, if kept, need inserting); texts sharing no
band with any other are kept without touching the index. The clusters are the
same as querying and inserting everything (tested).

>>> result = dedupe_texts(["我听说方圆十里", "我聽說，方圓十里！", "别的"], DedupeConfig())
>>> result.keep, result.clusters[0].kind
([0, 2], 'exact')

What it leaves out: phrase-level traditional→simplified conversion (the table
is character-level), semantic (embedding) duplicates, and dedupe across runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator, Sequence

import numpy as np

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF
_EMPTY = np.uint32(_MASK32)  # datasketch's "no value yet" slot


@dataclass
class DedupeConfig:
    threshold: float = field(default=0.85, metadata={"help": "Estimated Jaccard at or above which two texts are near-duplicates."})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations (signature length)."})
    ngram: int = field(default=5, metadata={"help": "Character n-gram length of the shingles."})
    workers: int = field(default=0, metadata={"help": "Hashing processes; 0 = os.cpu_count(), 1 = in this process."})
    seed: int = field(default=1, metadata={"help": "MinHash seed (datasketch's default)."})
    miss_weight: float = field(default=0.9, metadata={"help": (
        "Weight datasketch's MinHashLSH puts on missed pairs vs extra candidates when it picks bands×rows. "
        "Candidates are checked against the threshold anyway, so misses cost more than extras.")})
    batch_size: int = field(default=2000, metadata={"help": "Texts per worker task."})

    def __post_init__(self):
        from gwq_data.errors import UsageError

        if not 0.0 < self.threshold <= 1.0:
            raise UsageError(f"--threshold {self.threshold}: must be in (0, 1], e.g. 0.85")
        if self.num_perm < 2:
            raise UsageError(f"--num-perm {self.num_perm}: must be at least 2, e.g. 128")
        if self.ngram < 1:
            raise UsageError(f"--ngram {self.ngram}: must be at least 1, e.g. 5")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers}: must be 0 (auto) or more")
        if not 0.0 <= self.miss_weight <= 1.0:
            raise UsageError(f"miss_weight {self.miss_weight}: must be in [0, 1]")
        if self.batch_size < 1:
            raise UsageError(f"batch_size {self.batch_size}: must be at least 1")

    def __str__(self) -> str:
        # Names outputs after what made them (datatrove's MinhashConfig habit).
        return f"dedupe_t{self.threshold:g}_p{self.num_perm}_n{self.ngram}_s{self.seed}"


@dataclass
class Cluster:
    kept: int
    dropped: list[int]
    kind: str  # "exact" | "near"
    jaccard: list[float]  # estimated, per dropped text vs the kept one (1.0 for exact)


@dataclass
class DedupeResult:
    keep: list[int]  # indices kept, in input order
    clusters: list[Cluster]

    @property
    def dropped(self) -> dict[str, int]:
        """Dropped texts per kind, e.g. {"exact": 3, "near": 5}."""
        out = {"exact": 0, "near": 0}
        for c in self.clusters:
            out[c.kind] += len(c.dropped)
        return out


# --- normalisation ---------------------------------------------------------

def _dropped(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "PZ" or cat in ("Cc", "Cf", "Cs")


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Per-character normalisation, built once (~0.4 s): a code point → code point
    lookup array (0 = delete), and, for the ~1,100 characters that become several
    (ß → ss, ﬁ → fi), a flag array and a str.translate table.

    Each character goes NFKC → casefold → traditional→simplified → deleted if it
    is whitespace, punctuation or a control/format character. The traditional→
    simplified step is opencc-python-reimplemented's TSCharacters dictionary (first
    candidate of one-to-many entries): calling OpenCC, or even str.translate with a
    dict, per text costs ~100 µs for 400 characters; a numpy lookup costs ~1 µs.
    """
    from importlib import resources

    t2s = {}
    text = resources.files("opencc").joinpath("dictionary/TSCharacters.txt").read_text("utf-8")
    for line in text.splitlines():
        src, _, dst = line.partition("\t")
        dst = dst.split(" ")[0]
        if len(src) == 1 and len(dst) == 1:
            t2s[src] = dst
    lut = np.arange(0x110000, dtype=np.uint32)
    expands = np.zeros(0x110000, dtype=bool)
    expansion: dict[int, str] = {}
    for cp in range(0x110000):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat in ("Cn", "Co"):  # unassigned / private use: left as is
            continue
        out = ch if cat == "Cs" else unicodedata.normalize("NFKC", ch).casefold()
        if out == ch and ch not in t2s and not _dropped(ch):
            continue
        out = "".join(t2s.get(c, c) for c in out if not _dropped(c))
        if len(out) == 1:
            lut[cp] = ord(out)
        elif not out:
            lut[cp] = 0
        else:
            expands[cp] = True
            expansion[cp] = out
    return lut, expands, expansion


def _codepoints(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts' code points in one uint32 array, and each text's start (len(texts) + 1 offsets)."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    # surrogatepass: JSON may carry lone surrogates ("\\ud800"); they are deleted below.
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return cps, np.concatenate([[0], np.cumsum(lengths)])


def _normalise(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`normalize` for a batch, as code points + offsets (see `_codepoints`)."""
    lut, expands, expansion = _tables()
    cps, offsets = _codepoints(texts)
    hits = np.flatnonzero(expands[cps])
    if len(hits):  # rare: expand those texts with str.translate first
        texts = list(texts)
        for i in np.unique(np.searchsorted(offsets, hits, side="right") - 1):
            texts[i] = texts[i].translate(expansion)
        cps, offsets = _codepoints(texts)
    cps = lut[cps]
    keep = cps != 0
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    return cps[keep], kept_before[offsets]


def normalize(text: str) -> str:
    """The form texts are compared in, character by character: NFKC (full-width →
    half-width), casefold, traditional → simplified, and no whitespace, punctuation
    or control characters. (Being per character, it does not compose combining
    accents; Chinese text has none.)

    >>> normalize("我聽說， Hello  World！")
    '我听说helloworld'
    """
    cps, _ = _normalise([text])
    return cps.tobytes().decode("utf-32-le")


def record_text(record: dict) -> str:
    """The text a canonical record is compared on: its user and assistant
    `content`, in order, one per line.

    System prompts are left out because many records share one, which would make
    short dialogues look alike; `original` (the plain reply) is left out because
    the styled content is what trains the model.
    """
    return "\n".join(m["content"] for m in record["messages"] if m["role"] in ("user", "assistant"))


# --- MinHash signatures (datasketch "affine32", vectorised) -----------------

def shingle_hash(shingle: str | bytes) -> int:
    """32-bit FNV-1a over the Unicode code points of one n-gram; pass as
    datasketch's `hashfunc` to reproduce gwq's signatures."""
    if isinstance(shingle, bytes):
        shingle = shingle.decode("utf-8")
    h = FNV_OFFSET
    for ch in shingle:
        h = ((h ^ ord(ch)) * FNV_PRIME) & _MASK32
    return h


def shingles(text: str, ngram: int) -> list[str]:
    """Character n-grams of an already normalised text; a text shorter than n is one shingle."""
    if len(text) <= ngram:
        return [text] if text else []
    return [text[i:i + ngram] for i in range(len(text) - ngram + 1)]


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32)[:, None], b.astype(np.uint32)[:, None]


def _fmix32(h: np.ndarray) -> np.ndarray:
    # MurmurHash3's finaliser, as datasketch applies it before the permutations.
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _ngram_hashes(cps: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """FNV-1a hashes of every n-gram of every text (code points + offsets as from
    `_codepoints`), concatenated, and each text's start offset into them."""
    total = len(cps)
    padded = np.concatenate([cps, np.zeros(ngram, dtype=np.uint32)])
    h = np.full(total, FNV_OFFSET, dtype=np.uint32)
    prime = np.uint32(FNV_PRIME)
    for k in range(ngram):
        h ^= padded[k:k + total]
        h *= prime
    # A window is valid when it ends inside its text: mark the last n-1 starts of
    # each text invalid (for texts shorter than n this reaches back only into
    # the previous text's invalid tail, never into its valid windows).
    lengths = np.diff(offsets)
    invalid = np.zeros(total + ngram, dtype=bool)
    ends = offsets[1:]
    for k in range(1, ngram):
        invalid[np.maximum(ends - k, 0)] = True
    invalid[total:] = False
    hashes = h[~invalid[:total]]
    counts = np.maximum(lengths - ngram + 1, 0)
    short = np.flatnonzero((lengths > 0) & (lengths < ngram))
    if len(short):  # a text shorter than n is one shingle: itself
        at = np.concatenate([[0], np.cumsum(counts)])[short]
        words = [cps[offsets[i]:offsets[i + 1]].tobytes().decode("utf-32-le") for i in short]
        hashes = np.insert(hashes, at, [shingle_hash(w) for w in words])
        counts[short] = 1
    return hashes, np.concatenate([[0], np.cumsum(counts)])


def _signatures(cps: np.ndarray, offsets: np.ndarray, num_perm: int, ngram: int, seed: int,
                block_cols: int = 8000) -> np.ndarray:
    a, b = _permutations(num_perm, seed)
    hashes, offsets = _ngram_hashes(cps, offsets, ngram)
    hashes = _fmix32(hashes)
    n = len(offsets) - 1
    out = np.full((n, num_perm), _EMPTY, dtype=np.uint32)
    # Whole texts at a time, about `block_cols` n-grams per block, through one
    # reused buffer: a fresh multi-MB array per block costs its page faults
    # every time, and tiny blocks cost numpy's per-call overhead.
    buf = np.empty(num_perm * block_cols, dtype=np.uint32)
    first = 0
    while first < n:
        lo = offsets[first]
        last = max(int(np.searchsorted(offsets, lo + block_cols, side="right")) - 1, first + 1)
        docs = np.arange(first, last)
        docs = docs[offsets[docs + 1] > offsets[docs]]  # empty texts keep the empty signature
        first = last
        if not len(docs):
            continue
        hi = offsets[last]
        width = hi - lo
        block = np.multiply(a, hashes[lo:hi]) if width > block_cols else \
            np.multiply(a, hashes[lo:hi], out=buf[:num_perm * width].reshape(num_perm, width))
        block += b
        out[docs] = np.minimum.reduceat(block, offsets[docs] - lo, axis=1).T
    return out


def signatures(normalised: Sequence[str], num_perm: int = 128, ngram: int = 5, seed: int = 1) -> np.ndarray:
    """MinHash signatures (len(texts) × num_perm, uint32) of normalised texts,
    equal to datasketch's ``MinHash(num_perm, seed, hashfunc=shingle_hash)``
    updated with `shingles(text, ngram)`. An empty text gets all-empty slots."""
    cps, offsets = _codepoints(normalised)
    return _signatures(cps, offsets, num_perm, ngram, seed)


def _hash_batch(args: tuple) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Worker task: normalise a batch, digest it for the exact pass, sign it for the near pass."""
    texts, num_perm, ngram, seed = args
    cps, offsets = _normalise(texts)
    raw = memoryview(cps.tobytes())
    bounds = (4 * offsets).tolist()
    digests = [hashlib.blake2b(raw[s:e], digest_size=16).digest() for s, e in zip(bounds[:-1], bounds[1:])]
    return digests, _signatures(cps, offsets, num_perm, ngram, seed), np.diff(offsets) == 0


def _hash_all(texts: Sequence[str], cfg: DedupeConfig,
              progress: Callable[[int], None] | None) -> Iterator[tuple[list[bytes], np.ndarray, np.ndarray]]:
    """`_hash_batch` over all texts, in order. With N workers, N-1 processes take
    batches from a pool while this process hashes every Nth batch itself, so it
    does not sit idle (and a busy machine costs little more than one process)."""
    tasks = [(texts[i:i + cfg.batch_size], cfg.num_perm, cfg.ngram, cfg.seed)
             for i in range(0, len(texts), cfg.batch_size)]
    workers = max(1, min(cfg.workers or os.cpu_count() or 1, len(tasks)))
    _tables(), _permutations(cfg.num_perm, cfg.seed)  # built once, inherited by forked workers
    with contextlib.ExitStack() as stack:
        remote: Iterator = iter(())
        if workers > 1:
            import multiprocessing

            pool = stack.enter_context(multiprocessing.Pool(workers - 1))
            remote = pool.imap(_hash_batch, [t for k, t in enumerate(tasks) if k % workers])
        for k, task in enumerate(tasks):
            out = next(remote) if k % workers else _hash_batch(task)
            if progress:
                progress(len(out[0]))
            yield out


# --- clustering -------------------------------------------------------------

def _band_neighbours(sigs: np.ndarray, bands: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: does it share an LSH band with an earlier row (so a query can find
    something) and with a later row (so a later query can find it)? A row with
    neither is nobody's candidate; one with only earlier neighbours never needs
    inserting. This is exact with respect to MinHashLSH, just cheaper."""
    n = len(sigs)
    earlier, later = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if n < 2:
        return earlier, later
    for start, end in bands:
        # Fold the band into one 64-bit key; a key collision only adds a
        # candidate, which MinHashLSH and the Jaccard check then weed out.
        key = np.zeros(n, dtype=np.uint64)
        for col in sigs[:, start:end].T:
            key = (key ^ col.astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
        order = np.argsort(key, kind="stable")  # rows of one key stay in input order
        k = key[order]
        same_as_prev = np.concatenate([[False], k[1:] == k[:-1]])
        same_as_next = np.concatenate([k[1:] == k[:-1], [False]])
        earlier[order[same_as_prev]] = True
        later[order[same_as_next]] = True
    return earlier, later


@lru_cache(maxsize=16)
def _lsh_params(threshold: float, num_perm: int, miss_weight: float) -> tuple[int, int]:
    """datasketch's own (bands, rows) choice, cached: it integrates with scipy (~0.1 s)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 1.0 - miss_weight, miss_weight)


def _near_pass(rows: np.ndarray, sigs: np.ndarray, cfg: DedupeConfig) -> dict[int, tuple[int, float]]:
    """For each row of `sigs` that is a near-duplicate of an earlier kept row:
    row → (that kept row, estimated Jaccard). `rows` maps sig rows to input indices."""
    from datasketch import LeanMinHash, MinHashLSH

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm,
                     params=_lsh_params(cfg.threshold, cfg.num_perm, cfg.miss_weight))
    near: dict[int, tuple[int, float]] = {}
    earlier, later = _band_neighbours(sigs, lsh.hashranges)
    for r in np.flatnonzero(earlier | later):
        sketch = LeanMinHash(seed=cfg.seed, hashvalues=sigs[r], scheme="affine32")
        found = lsh.query(sketch) if earlier[r] else None
        if found:
            found = np.sort(np.asarray(found))
            est = (sigs[found] == sigs[r]).mean(axis=1)
            best = int(np.argmax(est))  # first maximum = earliest kept row
            if est[best] >= cfg.threshold:
                near[int(rows[r])] = (int(rows[found[best]]), float(est[best]))
                continue
        if later[r]:
            lsh.insert(int(r), sketch, check_duplication=False)
    return near


def dedupe_texts(texts: Sequence[str], cfg: DedupeConfig | None = None, *,
                 progress: Callable[[int], None] | None = None) -> DedupeResult:
    """Cluster `texts` into exact and near duplicates; keep the first of each.

    `progress(n)` is called as each batch of n texts has been hashed.
    """
    cfg = cfg or DedupeConfig()
    first_of: dict[bytes, int] = {}
    rep = np.empty(len(texts), dtype=np.int64)  # index of the first text with the same normal form
    sig_parts, pos = [], 0
    for digests, sigs, empty in _hash_all(texts, cfg, progress):
        is_first = np.zeros(len(digests), dtype=bool)
        for k, d in enumerate(digests):
            rep[pos + k] = first_of.setdefault(d, pos + k)
            is_first[k] = rep[pos + k] == pos + k
        # Empty texts (all punctuation) are only ever exact duplicates of each other.
        take = is_first & ~empty
        sig_parts.append((np.flatnonzero(take) + pos, sigs[take]))
        pos += len(digests)
    rows = np.concatenate([p[0] for p in sig_parts]) if sig_parts else np.empty(0, np.int64)
    sigs = np.concatenate([p[1] for p in sig_parts]) if sig_parts else np.empty((0, cfg.num_perm), np.uint32)
    near = _near_pass(rows, sigs, cfg)

    keep: list[int] = []
    exact_clusters: dict[int, Cluster] = {}
    near_clusters: dict[int, Cluster] = {}
    for i in range(len(texts)):
        r = int(rep[i])
        if r == i and i not in near:
            keep.append(i)
        elif r in near:  # i itself, or an exact copy of a near-duplicate: joins the near cluster
            kept, jac = near[r]
            c = near_clusters.setdefault(kept, Cluster(kept, [], "near", []))
            c.dropped.append(i)
            c.jaccard.append(jac)
        else:
            c = exact_clusters.setdefault(r, Cluster(r, [], "exact", []))
            c.dropped.append(i)
            c.jaccard.append(1.0)
    clusters = sorted([*exact_clusters.values(), *near_clusters.values()], key=lambda c: (c.kept, c.kind))
    return DedupeResult(keep, clusters)


def dedupe_records(records: Sequence[dict], cfg: DedupeConfig | None = None, *,
                   progress: Callable[[int], None] | None = None) -> DedupeResult:
    """`dedupe_texts` on each canonical record's `record_text`."""
    return dedupe_texts([record_text(r) for r in records], cfg, progress=progress)
