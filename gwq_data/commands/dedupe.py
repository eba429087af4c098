"""gwq-data dedupe: drop exact and near-duplicate dialogues, keeping the first of each cluster."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gwq_data.console import cli_errors, print_table, progress, summary_table


def _beside(out: Path, name: str) -> Path:
    # data/x.jsonl -> data/x.<name>.jsonl
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.{name}.jsonl")


@cli_errors
def main(
    files: List[Path] = typer.Argument(..., help="JSONL files: ms-swift messages, ShareGPT or query/response rows."),
    out: Path = typer.Option(..., "--out", help="Write the kept records here (canonical messages rows, input order)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Cluster report (JSONL); default OUT.clusters.jsonl beside OUT."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Invalid rows and dropped duplicates, each with its reason; default OUT.rejects.jsonl."),
    threshold: float = typer.Option(0.85, help="Estimated Jaccard of character n-grams at or above which two dialogues are near-duplicates."),
    num_perm: int = typer.Option(128, "--num-perm", help="MinHash permutations; more = a finer Jaccard estimate, slower."),
    ngram: int = typer.Option(5, help="Character n-gram length."),
    workers: int = typer.Option(0, help="Hashing processes; 0 = one per CPU."),
    max_tokens: int = typer.Option(1024, help="Longest dialogue allowed, in Qwen2 tokens (as in validate)."),
):
    """Remove exact duplicates (after whitespace/punctuation/繁→简 normalisation) and near
    duplicates (MinHash + LSH on character n-grams). Dialogues are compared on their user
    and assistant turns.

    The report has one JSON line per cluster: "kept" (a ref), "dropped" (list of refs),
    "kind" (exact or near) and "jaccard" (estimated Jaccard of each dropped one vs the kept
    one); a ref is the record's id, else FILE:LINE.

    Example: gwq-data dedupe data/styled.jsonl --out data/styled.dedup.jsonl --threshold 0.85
    """
    from gwq_data.dedupe import DedupeConfig, dedupe_records
    from gwq_data.jsonl import reject_record, write_jsonl
    from gwq_data.load import load, refuse_overwriting_inputs, split_loaded
    from gwq_data.records import Limits

    cfg = DedupeConfig(threshold=threshold, num_perm=num_perm, ngram=ngram, workers=workers)
    report = report or _beside(out, "clusters")
    rejects = rejects or _beside(out, "rejects")
    refuse_overwriting_inputs(files, out, report, rejects)
    with progress() as bar:
        task = bar.add_task("reading", total=None)
        items = []
        for item in load(files, Limits(max_tokens=max_tokens)):
            items.append(item)
            bar.advance(task)
        loaded, bad, reasons = split_loaded(items)
        task = bar.add_task("hashing", total=len(loaded))
        result = dedupe_records([x.record for x in loaded], cfg, progress=lambda n: bar.advance(task, n))

    refs = [x.ref for x in loaded]
    write_jsonl(out, (loaded[i].record for i in result.keep))
    write_jsonl(report, ({"kept": refs[c.kept], "dropped": [refs[d] for d in c.dropped], "kind": c.kind,
                          "jaccard": c.jaccard} for c in result.clusters))
    # Dropped duplicates go to the rejects file with their data and the ref they duplicate: nothing is lost.
    for c in result.clusters:
        for d, jac in zip(c.dropped, c.jaccard):
            x = loaded[d]
            bad.append({**reject_record(x.source, x.line, f"duplicate_{c.kind}",
                                        f"duplicate of {refs[c.kept]} (estimated Jaccard {jac:.3f})", data=x.record),
                        "kept": refs[c.kept]})
    bad.sort(key=lambda r: (r["source"], r["line"]))
    write_jsonl(rejects, bad)
    dropped = result.dropped
    rows = [("input rows", len(items)), ("invalid (→ rejects)", sum(reasons.values()))]
    rows += [(f"  {k}", v) for k, v in reasons.most_common()]
    rows += [("exact duplicates dropped", dropped["exact"]), ("near duplicates dropped", dropped["near"]),
             ("clusters", len(result.clusters)), ("kept", len(result.keep))]
    print_table(summary_table(f"gwq-data dedupe ({cfg})", rows))
    typer.echo(f"kept → {out}\nclusters → {report}\nrejects → {rejects}")
