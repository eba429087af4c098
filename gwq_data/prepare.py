"""The whole data chain in one call: load + validate → dedupe → split → SFT/DPO rows, stats, report.

`prepare(paths, cfg)` builds everything in memory and returns a `Prepared`; `write(prepared, out_dir)`
puts it on disk, each file atomically, stats.json last (so its presence means the set is complete):

    DIR/sft/{train,val}.jsonl           ms-swift messages rows
    DIR/dpo/{train,val}.jsonl           ms-swift DPO rows (messages + rejected_response)
    DIR/llamafactory/dpo_{train,val}.jsonl  the same pairs as LLaMA-Factory ranking rows
    DIR/rejects.jsonl                   invalid rows and dropped duplicates, each with a reason
    DIR/stats.json, DIR/report.md, DIR/dataset_info.json (LLaMA-Factory)

The split is a hash of the dialogue's messages and the seed, compared with val_ratio, so it is the
same on every machine and adding rows never moves existing ones. DPO pairs follow the split of their
dialogue, so no dialogue leaks between train and val.

What it leaves out: streaming (everything is held in memory; fine for ~10^5 dialogues), mixing
ratios between sources.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable

from gwq_data import __version__, tokens
from gwq_data.convert import dataset_info_entry, dpo_pairs, llamafactory_dpo, swift_dpo, swift_sft
from gwq_data.jsonl import dumps, file_sha256, reject_record, write_json, write_jsonl, write_text
from gwq_data.load import Loaded, load
from gwq_data.records import Limits
from gwq_data.stats import _table, describe, markdown


@dataclass
class PrepareConfig:
    """How to prepare. Defaults follow the seed recipe."""

    val_ratio: float = field(default=0.05, metadata={"help": "Share of dialogues held out for validation."})
    seed: int = field(default=42, metadata={"help": "Split seed; same seed, same split."})
    pairs: str = field(default="last", metadata={"help": "DPO pairs: 'last' assistant turn or 'all' with an original."})
    max_tokens: int = field(default=1024, metadata={"help": "Longest dialogue kept, in Qwen2 tokens."})
    dedupe: bool = field(default=True, metadata={"help": "Drop exact and near duplicates (MinHash)."})
    threshold: float = field(default=0.85, metadata={"help": "Near-duplicate Jaccard threshold."})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations."})
    ngram: int = field(default=5, metadata={"help": "Character n-gram size for MinHash shingles."})

    def __post_init__(self):
        from gwq_data.errors import UsageError

        if not 0 <= self.val_ratio < 1:
            raise UsageError(f"--val-ratio {self.val_ratio}: must be at least 0 and below 1 (e.g. 0.05)")
        if self.pairs not in ("last", "all"):
            raise UsageError(f"--pairs {self.pairs!r}: choose 'last' or 'all'")
        if not 0 < self.threshold <= 1:
            raise UsageError(f"--threshold {self.threshold}: must be in (0, 1], e.g. 0.85")


@dataclass
class Prepared:
    files: dict[str, list[dict]]  # relative path under DIR -> rows
    stats: dict
    dataset_info: dict
    report: str
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage, for benchmarks


def split_value(record: dict, seed: int) -> float:
    """A number in [0, 1) fixed by the dialogue's messages and the seed."""
    digest = hashlib.sha256(f"{seed}\n{dumps(record['messages'])}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_val(records: list[dict], val_ratio: float, seed: int, *, has_pair: list[bool] | None = None) -> list[bool]:
    """True for each record that goes to val.

    With val_ratio > 0 and at least two records, val is never empty: if no hash falls under the
    ratio, the record with the smallest one goes there. Likewise for the records `has_pair` marks
    (those that make DPO pairs), so dpo/val.jsonl is not empty either.
    """
    values = [split_value(r, seed) for r in records]
    is_val = [v < val_ratio for v in values]
    if val_ratio > 0:
        for eligible in ([True] * len(records), has_pair or []):
            candidates = [i for i, ok in enumerate(eligible) if ok]
            if len(candidates) >= 2 and not any(is_val[i] for i in candidates):
                is_val[min(candidates, key=values.__getitem__)] = True
    return is_val


def _dedupe(loaded: list[Loaded], cfg: PrepareConfig) -> tuple[list[Loaded], list[dict]]:
    """Kept records in input order, and a reject row for every dropped duplicate."""
    from gwq_data.dedupe import DedupeConfig, dedupe_records

    result = dedupe_records([x.record for x in loaded], DedupeConfig(threshold=cfg.threshold, num_perm=cfg.num_perm,
                                                                     ngram=cfg.ngram))
    rejects = []
    for cluster in result.clusters:
        kept = loaded[cluster.kept]
        jaccards = list(cluster.jaccard) or [1.0] * len(cluster.dropped)
        for i, jac in zip(cluster.dropped, jaccards):
            x = loaded[i]
            detail = (f"same normalised text as {kept.ref}" if cluster.kind == "exact"
                      else f"near duplicate of {kept.ref} (estimated Jaccard {jac:.2f})")
            row = reject_record(x.source, x.line, f"duplicate_{cluster.kind}", detail, data=x.record)
            rejects.append({**row, "kept": kept.ref})
    rejects.sort(key=lambda r: (r["source"], r["line"]))
    return [loaded[i] for i in sorted(result.keep)], rejects


def _file_info(path: Path, rows: int) -> dict:
    return {"path": str(path), "sha256": file_sha256(path), "rows": rows}


def prepare(paths: list[Path], cfg: PrepareConfig = PrepareConfig(),
            on_row: Callable[[], None] | None = None) -> Prepared:
    """Run the chain over `paths`; `on_row` is called once per input row (for progress bars)."""
    clock = [time.perf_counter()]
    seconds = {}

    def lap(stage: str) -> None:
        clock.append(time.perf_counter())
        seconds[stage] = clock[-1] - clock[-2]

    # The length check and the stats count the same joined text: tokenize each dialogue once.
    count = lru_cache(maxsize=None)(tokens.count_tokens)
    loaded, rejects = [], []
    for item in load(paths, Limits(max_tokens=cfg.max_tokens), count_tokens=count):
        (loaded if isinstance(item, Loaded) else rejects).append(item)
        if on_row:
            on_row()
    invalid = len(rejects)
    rows_per_file = Counter(x.source for x in loaded) + Counter(r["source"] for r in rejects)
    lap("load")

    kept, dup_rejects = _dedupe(loaded, cfg) if cfg.dedupe else (loaded, [])
    rejects += dup_rejects
    records = [x.record for x in kept]
    lap("dedupe")

    files = {name: [] for name in ("sft/train.jsonl", "sft/val.jsonl", "dpo/train.jsonl", "dpo/val.jsonl",
                                   "llamafactory/dpo_train.jsonl", "llamafactory/dpo_val.jsonl")}
    record_pairs = [dpo_pairs(r, cfg.pairs) for r in records]
    no_original = sum(not pairs for pairs in record_pairs)
    is_val = assign_val(records, cfg.val_ratio, cfg.seed, has_pair=[bool(p) for p in record_pairs])
    for record, pairs, to_val in zip(records, record_pairs, is_val):
        split = "val" if to_val else "train"
        files[f"sft/{split}.jsonl"].append(swift_sft(record))
        files[f"dpo/{split}.jsonl"] += [swift_dpo(p) for p in pairs]
        files[f"llamafactory/dpo_{split}.jsonl"] += [llamafactory_dpo(p) for p in pairs]
    files["rejects.jsonl"] = rejects
    lap("split")

    reasons = Counter(r["reason"] for r in rejects)
    stats = {
        "gwq_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [_file_info(Path(p), rows_per_file[str(Path(p))]) for p in paths],
        "counts": {
            "input_rows": len(loaded) + invalid,
            "valid": len(loaded),
            "rejected": invalid,
            "duplicates_exact": reasons["duplicate_exact"],
            "duplicates_near": reasons["duplicate_near"],
            "kept": len(records),
            "sft_train": len(files["sft/train.jsonl"]),
            "sft_val": len(files["sft/val.jsonl"]),
            "dpo_train": len(files["dpo/train.jsonl"]),
            "dpo_val": len(files["dpo/val.jsonl"]),
            "dpo_skipped_no_original": no_original,
        },
        "rejects_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "dedupe": {"enabled": cfg.dedupe, "threshold": cfg.threshold, "num_perm": cfg.num_perm, "ngram": cfg.ngram},
        "split": {"val_ratio": cfg.val_ratio, "seed": cfg.seed, "pairs": cfg.pairs},
        "max_tokens": cfg.max_tokens,
    }
    described = describe(records, count, tokens.method())
    stats.update({k: described[k] for k in ("turns", "tokens", "tone", "generators", "prompts")})
    lap("stats")
    return Prepared(files, stats, dataset_info(), report(stats), seconds)


def dataset_info() -> dict:
    """LLaMA-Factory entries for prepare's files, paths relative to DIR."""
    return {
        "gwq_sft_train": dataset_info_entry("swift-sft", "sft/train.jsonl"),
        "gwq_sft_val": dataset_info_entry("swift-sft", "sft/val.jsonl"),
        "gwq_dpo_train": dataset_info_entry("llamafactory-dpo", "llamafactory/dpo_train.jsonl"),
        "gwq_dpo_val": dataset_info_entry("llamafactory-dpo", "llamafactory/dpo_val.jsonl"),
    }


def report(stats: dict) -> str:
    c = stats["counts"]
    inputs = _table(("input", "rows", "sha256"), ((i["path"], i["rows"], i["sha256"][:12]) for i in stats["inputs"]))
    counts = _table(("what", "count"), c.items())
    drops = _table(("reason", "rows"), stats["rejects_by_reason"].items()) if stats["rejects_by_reason"] else "none"
    s, d = stats["split"], stats["dedupe"]
    return (f"# gwq-data prepare report\n\ngwq {stats['gwq_version']}, {stats['created_at']}. "
            f"Split: val_ratio {s['val_ratio']}, seed {s['seed']}, DPO pairs '{s['pairs']}'. "
            f"Dedupe: {'threshold ' + str(d['threshold']) + ', ' + str(d['num_perm']) + ' permutations, ' + str(d['ngram']) + '-grams' if d['enabled'] else 'off'}. "
            f"Max {stats['max_tokens']} tokens.\n\n## Inputs\n\n{inputs}\n\n## Counts\n\n{counts}\n\n"
            f"## Drops per reason (rows in rejects.jsonl)\n\n{drops}\n\n" + markdown(stats))


def write(prepared: Prepared, out_dir: Path) -> None:
    for name, rows in prepared.files.items():
        write_jsonl(out_dir / name, rows)
    write_json(out_dir / "dataset_info.json", prepared.dataset_info)
    write_text(out_dir / "report.md", prepared.report)
    write_json(out_dir / "stats.json", prepared.stats)
