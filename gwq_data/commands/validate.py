"""gwq-data validate: check files against the record schema and gwq's rules."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gwq_data.console import cli_errors, console, print_table, progress, summary_table


@cli_errors
def main(
    files: List[Path] = typer.Argument(..., help="JSONL files: ms-swift messages, ShareGPT or query/response rows."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Write each invalid row here with its reason."),
    max_tokens: int = typer.Option(1024, help="Longest dialogue allowed, in Qwen2 tokens (the tutorial's max_length)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary, not one line per invalid row."),
):
    """Check every row; report each invalid one as FILE:LINE reason: detail.

    Exit 0 when all rows are valid, 1 when some are not, 2 on usage errors.

    Example: gwq-data validate data/sample/dialogues.jsonl --rejects out/rejects.jsonl
    """
    from collections import Counter

    from gwq_data.jsonl import write_jsonl
    from gwq_data.load import Loaded, load, refuse_overwriting_inputs
    from gwq_data.records import Limits

    refuse_overwriting_inputs(files, rejects)

    valid, bad, per_file = 0, [], Counter()
    with progress() as bar:
        task = bar.add_task("validating", total=None)
        for item in load(files, Limits(max_tokens=max_tokens)):
            bar.advance(task)
            if isinstance(item, Loaded):
                valid += 1
                continue
            bad.append(item)
            per_file[item["source"]] += 1
            if not quiet:
                console.print(f"{item['source']}:{item['line']}: {item['reason']}: {item['detail']}",
                              highlight=False, markup=False, soft_wrap=True)
    if rejects is not None:
        write_jsonl(rejects, bad)
    reasons = Counter(r["reason"] for r in bad)
    rows = [("valid", valid), ("invalid", len(bad))] + [(f"  {k}", v) for k, v in reasons.most_common()]
    print_table(summary_table("gwq-data validate", rows))
    if bad:
        raise typer.Exit(1)
