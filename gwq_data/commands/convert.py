"""gwq-data convert: write checked records in a trainer's row format."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gwq_data.console import cli_errors, console, print_table, progress, summary_table


@cli_errors
def main(
    files: List[Path] = typer.Argument(..., help="JSONL files: ms-swift messages, ShareGPT or query/response rows."),
    to: str = typer.Option(..., "--to", help="swift-sft, swift-dpo, sharegpt, trl-dpo or llamafactory-dpo."),
    out: Path = typer.Option(..., "--out", help="Output JSONL file (written atomically)."),
    pairs: str = typer.Option("last", help="DPO pairs per dialogue: 'last' assistant turn, or 'all' turns with an original."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Write each invalid row here with its reason."),
    dataset_info: Optional[Path] = typer.Option(None, "--dataset-info",
                                                help="Add a LLaMA-Factory entry for OUT to this dataset_info.json."),
    name: Optional[str] = typer.Option(None, help="Entry name in --dataset-info (default: OUT's file stem)."),
    max_tokens: int = typer.Option(1024, help="Longest dialogue allowed, in Qwen2 tokens."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary, not one line per invalid row."),
):
    """Convert rows to a training format; invalid rows are reported (FILE:LINE reason) and skipped.

    DPO formats pair each styled reply (chosen) with its `original` (rejected); a dialogue whose
    chosen turn has no original gives no pair and is counted as dpo_skipped_no_original.

    Example: gwq-data convert data/sample/dialogues.jsonl --to swift-dpo --out out/dpo.jsonl --pairs all
    """
    import json
    import os

    from gwq_data.convert import FORMATS, PAIRS, dataset_info_entry, to_rows
    from gwq_data.errors import UsageError
    from gwq_data.jsonl import atomic_writer, dumps, write_json, write_jsonl
    from gwq_data.load import Loaded, load, refuse_overwriting_inputs
    from gwq_data.records import Limits

    if to not in FORMATS:
        raise UsageError(f"--to {to!r} is not a format; choose one of: {', '.join(FORMATS)}")
    if pairs not in PAIRS:
        raise UsageError(f"--pairs {pairs!r}: choose 'last' or 'all'")
    refuse_overwriting_inputs(files, out, rejects, dataset_info)
    info = {}
    if dataset_info is not None:
        # Everything about dataset_info.json is checked before OUT is written.
        try:
            dataset_info_entry(to, "")
        except ValueError as e:
            raise UsageError(str(e)) from None
        if dataset_info.is_file():
            try:
                info = json.loads(dataset_info.read_text("utf-8"))
            except ValueError as e:
                raise UsageError(f"{dataset_info}: not valid JSON ({e}); fix or remove it") from None
            if not isinstance(info, dict):
                raise UsageError(f"{dataset_info}: expected a JSON object of dataset entries, got {type(info).__name__}")

    # Rows stream into the temp file; it replaces OUT only when every input line has been read.
    written, bad, valid, skipped = 0, [], 0, 0
    with progress() as bar, atomic_writer(out) as f:
        task = bar.add_task("converting", total=None)
        for item in load(files, Limits(max_tokens=max_tokens)):
            bar.advance(task)
            if not isinstance(item, Loaded):
                bad.append(item)
                if not quiet:
                    console.print(f"{item['source']}:{item['line']}: {item['reason']}: {item['detail']}",
                                  highlight=False, markup=False, soft_wrap=True)
                continue
            valid += 1
            made = to_rows(item.record, to, pairs)
            skipped += not made
            written += len(made)
            f.writelines(dumps(row) + "\n" for row in made)
    if rejects is not None:
        write_jsonl(rejects, bad)
    if dataset_info is not None:
        file_name = os.path.relpath(out.resolve(), dataset_info.resolve().parent)
        info[name or out.stem] = dataset_info_entry(to, file_name)
        write_json(dataset_info, info)

    table = [("valid", valid), ("invalid", len(bad)), (f"{to} rows written", written)]
    if to not in ("swift-sft", "sharegpt"):
        table.append(("dpo_skipped_no_original", skipped))
    print_table(summary_table(f"gwq-data convert --to {to}", table))
    console.print(f"wrote {out}", highlight=False)
