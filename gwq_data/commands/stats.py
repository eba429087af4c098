"""gwq-data stats: counts, turns, lengths and tone of a dialogue file."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gwq_data.console import cli_errors, print_table, progress, summary_table


@cli_errors
def main(
    files: List[Path] = typer.Argument(..., help="JSONL files: ms-swift messages, ShareGPT or query/response rows."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
    max_tokens: int = typer.Option(1024, help="Rows longer than this (Qwen2 tokens) count as invalid."),
):
    """Print counts, turns per dialogue, token lengths and tone scores (valid rows only).

    Example: gwq-data stats data/sample/dialogues.jsonl --json out/stats.json
    """
    from collections import Counter

    from gwq_data.jsonl import write_json
    from gwq_data.load import Loaded, load
    from gwq_data.records import Limits
    from gwq_data.stats import describe

    records, reasons = [], Counter()
    with progress() as bar:
        task = bar.add_task("reading", total=None)
        for item in load(files, Limits(max_tokens=max_tokens)):
            bar.advance(task)
            if isinstance(item, Loaded):
                records.append(item.record)
            else:
                reasons[item["reason"]] += 1
    stats = {"files": [str(f) for f in files], "rows": len(records) + sum(reasons.values()), "valid": len(records),
             "invalid": sum(reasons.values()), "invalid_by_reason": dict(reasons.most_common()), **describe(records)}
    if json_out is not None:
        write_json(json_out, stats)

    t, s = stats["tokens"], stats["tone"]
    counts = [("rows", stats["rows"]), ("valid", stats["valid"]), ("invalid", stats["invalid"])]
    counts += [(f"  {k}", v) for k, v in reasons.most_common()]
    counts += [("with an original (DPO-able)", stats["with_original"]), ("mean assistant turns", stats["turns"]["mean"])]
    counts += [("tokens counted by", t["method"])] + [(f"tokens {k}", round(t[k], 1)) for k in ("mean", "p50", "p90", "max")]
    counts += [(f"tone {k}", round(s[k], 3)) for k in ("mean", "p10", "p50", "p90")]
    print_table(summary_table("gwq-data stats", counts))
    print_table(summary_table("turns", stats["turns"]["histogram"].items(), ("assistant turns", "records")))
    print_table(summary_table("length", t["histogram"].items(), ("tokens", "records")))
    print_table(summary_table("tone score", s["histogram"].items(), ("score", "records")))
