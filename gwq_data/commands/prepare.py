"""gwq-data prepare: validate → dedupe → split → SFT/DPO files, stats and report in one command."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from gwq_data.console import cli_errors, console, print_table, progress, summary_table


@cli_errors
def main(
    files: List[Path] = typer.Argument(..., help="JSONL files: ms-swift messages, ShareGPT or query/response rows."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Directory for sft/, dpo/, rejects.jsonl, stats.json, report.md."),
    val_ratio: float = typer.Option(0.05, help="Share of dialogues held out for validation (by content hash)."),
    seed: int = typer.Option(42, help="Split seed; same inputs and seed give the same split anywhere."),
    pairs: str = typer.Option("last", help="DPO pairs per dialogue: 'last' assistant turn, or 'all' turns with an original."),
    max_tokens: int = typer.Option(1024, help="Longest dialogue kept, in Qwen2 tokens (the tutorial's max_length)."),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="Drop exact and near duplicates."),
    threshold: float = typer.Option(0.85, help="Near-duplicate threshold (estimated Jaccard of char n-grams)."),
    num_perm: int = typer.Option(128, help="MinHash permutations."),
    ngram: int = typer.Option(5, help="Character n-gram size for MinHash."),
):
    """Turn raw dialogue files into train/val files for ms-swift SFT and DPO, with a report.

    Every dropped row (invalid, duplicate) lands in DIR/rejects.jsonl with its file, line and reason.

    Example: gwq-data prepare data/sample/dialogues.jsonl --out-dir out/prepared --val-ratio 0.05 --seed 42
    """
    from gwq_data.prepare import PrepareConfig, prepare, write

    cfg = PrepareConfig(val_ratio=val_ratio, seed=seed, pairs=pairs, max_tokens=max_tokens, dedupe=dedupe,
                        threshold=threshold, num_perm=num_perm, ngram=ngram)
    with progress() as bar:
        task = bar.add_task("loading", total=None)
        prepared = prepare(files, cfg, on_row=lambda: bar.advance(task))
    write(prepared, out_dir)

    c = prepared.stats["counts"]
    rows = [(k, v) for k, v in c.items()] + [(f"  {k}", v) for k, v in prepared.stats["rejects_by_reason"].items()]
    print_table(summary_table("gwq-data prepare", rows))
    console.print(f"wrote {out_dir}/: sft/, dpo/, llamafactory/, rejects.jsonl, stats.json, report.md, dataset_info.json",
                  highlight=False)
    if c["rejected"]:
        console.print(f"[yellow]{c['rejected']} invalid rows skipped[/]; see {out_dir / 'rejects.jsonl'}")
    if not c["kept"]:
        console.print("[red]no dialogue survived[/]; the train files are empty. Check rejects.jsonl.")
        raise typer.Exit(1)
