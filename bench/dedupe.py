"""Benchmark gwq's dedupe against a plain per-document datasketch loop.

Generates N synthetic ~400-character Chinese dialogues (gwq_data.synthetic:
2% exact variants, 10% near variants with a uniform share of characters edited),
then times, end to end from raw texts to clusters:

- gwq: `dedupe_texts` (numpy-vectorised normalisation and MinHash, worker
  processes, band pre-filter, datasketch MinHashLSH);
- datasketch loop: per document `normalize`, `MinHash()` + `update` per n-gram
  (datasketch's default SHA-1 hash), `MinHashLSH.query`, estimated-Jaccard check,
  `insert` when kept; and the same loop with one `update_batch` per document.
  They are slow, so they run on the first --baseline-n documents and their rate
  is reported for that subset.

Recall and precision are against exact Jaccard of n-gram sets (see
`gwq_data.synthetic.evaluate`). Prints a table and writes JSON.

    python bench/dedupe.py                      # 100k dialogues
    python bench/dedupe.py --n 20000 --edits 0 0.05
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_datasketch(texts: list[str], cfg, batch: bool = False) -> "DedupeResult":  # noqa: F821
    from datasketch import MinHash, MinHashLSH

    from gwq_data.dedupe import Cluster, DedupeResult, normalize, shingles

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm,
                     weights=(1.0 - cfg.miss_weight, cfg.miss_weight))
    sketches, keep, clusters = {}, [], {}
    for i, text in enumerate(texts):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        grams = [s.encode("utf-8") for s in shingles(normalize(text), cfg.ngram)]
        if batch:
            m.update_batch(grams)
        else:
            for g in grams:
                m.update(g)
        best, best_j = None, -1.0
        for key in lsh.query(m):
            j = m.jaccard(sketches[key])
            if j > best_j or (j == best_j and key < best):
                best, best_j = key, j
        if best is not None and best_j >= cfg.threshold:
            c = clusters.setdefault(best, Cluster(best, [], "near", []))
            c.dropped.append(i)
            c.jaccard.append(best_j)
            continue
        keep.append(i)
        sketches[i] = m
        lsh.insert(i, m)
    return DedupeResult(keep, sorted(clusters.values(), key=lambda c: c.kept))


def run(label: str, fn, texts, planted, cfg, note: str) -> dict:
    from gwq_data.synthetic import evaluate

    start = time.perf_counter()
    result = fn(texts, cfg)
    seconds = time.perf_counter() - start
    scores = evaluate(texts, planted, result, cfg.threshold, cfg.ngram)
    return {"method": label, "docs": len(texts), "seconds": round(seconds, 3),
            "docs_per_s": round(len(texts) / seconds), "recall": round(scores["recall"], 4),
            "precision": round(scores["precision"], 4), "note": note, "scores": scores}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="synthetic dialogues")
    parser.add_argument("--baseline-n", type=int, default=5_000, help="dialogues for the plain datasketch loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edits", type=float, nargs=2, default=(0.0, 0.10), metavar=("LO", "HI"),
                        help="share of characters edited in near variants, uniform in [LO, HI]")
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="time gwq this many times, keep the fastest")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dedupe.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import datasketch
    import numpy

    from gwq_data.dedupe import DedupeConfig, dedupe_texts
    from gwq_data.jsonl import write_json
    from gwq_data.synthetic import corpus

    t0 = time.perf_counter()
    data = corpus(args.n, seed=args.seed, edits=tuple(args.edits))
    texts = data.texts
    print(f"generated {len(texts):,} dialogues (mean {sum(map(len, texts)) / len(texts):.0f} chars, "
          f"{len(data.planted):,} planted copies) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    cfg = DedupeConfig(threshold=args.threshold, num_perm=args.num_perm, workers=args.workers)
    workers = cfg.workers or os.cpu_count()
    load_before = os.getloadavg()[0]

    note = f"workers={workers}: this process + {workers - 1} pool process(es)"
    rows = [min((run("gwq dedupe_texts", dedupe_texts, texts, data.planted, cfg, note) for _ in range(args.repeat)),
                key=lambda r: r["seconds"])]
    one = DedupeConfig(threshold=args.threshold, num_perm=args.num_perm, workers=1)
    rows.append(run("gwq dedupe_texts", dedupe_texts, texts, data.planted, one, "workers=1 (one process)"))
    m = min(args.baseline_n, args.n)
    sub = [p for p in data.planted if p[1] < m]
    rows.append(run("datasketch per-doc loop", plain_datasketch, texts[:m], sub, cfg,
                    f"first {m:,} docs only; {args.n:,} would take ~{args.n / m:.0f}x longer"))
    rows.append(run("gwq dedupe_texts", dedupe_texts, texts[:m], sub, one, f"same first {m:,} docs, workers=1"))
    rows.append(run("datasketch update_batch", lambda t, c: plain_datasketch(t, c, batch=True), texts[:m], sub, cfg,
                    f"same loop, update_batch per doc; first {m:,} docs"))

    header = f"{'method':<26}{'docs':>9}{'seconds':>10}{'docs/s':>10}{'recall':>8}{'precision':>11}  note"
    print(header)
    for r in rows:
        print(f"{r['method']:<26}{r['docs']:>9,}{r['seconds']:>10.2f}{r['docs_per_s']:>10,}"
              f"{r['recall']:>8.3f}{r['precision']:>11.3f}  {r['note']}")
    out = {"bench": "dedupe", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "config": {"n": args.n, "seed": args.seed, "edits": list(args.edits), "dedupe": str(cfg),
                      "miss_weight": cfg.miss_weight, "exact_rate": 0.02, "near_rate": 0.10},
           "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                       "python": platform.python_version(), "numpy": numpy.__version__,
                       "datasketch": datasketch.__version__, "loadavg_1m_before": round(load_before, 2),
                       "loadavg_1m_after": round(os.getloadavg()[0], 2)},
           "rows": rows}
    write_json(args.out, out)
    print(f"wrote {args.out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
