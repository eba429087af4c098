"""gwq-align sft: LoRA SFT of a Qwen2 model on 古文翻译腔 dialogues, with ms-swift."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gwq_data.console import cli_errors

# Options shared with dpo (typer needs them spelled out per command; keep the two in step).
MODEL = typer.Option(..., "--model", help="Local model directory (works offline) or hub id (needs a reachable hub).")
DATASET = typer.Option(..., "--dataset", help="`gwq-data prepare` output dir (its sft/ or dpo/ split) or one JSONL of ms-swift rows.")
OUTPUT = typer.Option(..., "--output-dir", help="Run directory: ms-swift's outputs, checkpoints, train.log and gwq_run.json.")
VAL = typer.Option(None, "--val-dataset", help="Validation JSONL (default: the prepared dir's val.jsonl; none for a plain JSONL).")
RECIPE = typer.Option("seed", "--recipe", help="seed (the tutorial), fast (big GPU throughput, <= 40 GiB on a 7B), fast-24gb (a 24 GB card) or cpu-tiny (tests/demo).")
CONFIG = typer.Option(None, "--config", help="YAML of ms-swift arguments; overrides the recipe, flags override it.")
SET = typer.Option(None, "--set", help="Any other ms-swift argument, key=value (repeatable), e.g. --set weight_decay=0.0.")
NPROC = typer.Option(1, "--nproc-per-node", help="GPUs for data-parallel training (torchrun).")
DEEPSPEED = typer.Option(None, "--deepspeed", help="DeepSpeed config: zero0..zero3 or a JSON file (passed to ms-swift).")
NO_RESUME = typer.Option(False, "--no-resume", help="Start over even if the run dir holds checkpoints.")
QUIET = typer.Option(False, "--quiet", "-q", help="Only the summary; ms-swift's log still goes to DIR/train.log.")
LR = typer.Option(None, "--lr", help="Peak learning rate.")
EPOCHS = typer.Option(None, "--epochs", help="Epochs over the training set.")
MAX_STEPS = typer.Option(None, "--max-steps", help="Stop after N optimizer steps (overrides epochs).")
GRAD_ACCUM = typer.Option(None, "--grad-accum", help="Forward passes per optimizer step.")
LORA_ALPHA = typer.Option(None, "--lora-alpha", help="LoRA alpha.")
SAVE_STEPS = typer.Option(None, "--save-steps", help="Checkpoint (and evaluate) every N steps.")
SEED = typer.Option(None, "--seed", help="Random seed.")


def hyper_options(lr, epochs, max_steps, max_length, batch_size, grad_accum, lora_rank, lora_alpha, save_steps, seed):
    from gwq_align.recipes import Hyper

    return Hyper(lr, epochs, max_steps, max_length, batch_size, grad_accum, lora_rank, lora_alpha, save_steps,
                 seed).as_overrides()


def run_and_report(job) -> None:
    from gwq_align.train import run
    from gwq_data.console import console, print_table, summary_table

    record = run(job, echo=lambda line: console.print(line, markup=False, highlight=False))
    final = record["metrics"]["final"]
    rows = [("run dir", str(job.output_dir)), ("adapter", record["adapter"]),
            ("resumed from", record["resumed_from"] or "-"), ("wall s", record["wall_s"]),
            ("tokens seen", record["tokens_seen"]), ("tokens/s", record["tokens_per_s"]),
            ("peak memory GiB", record["peak_memory_gib"])]
    rows += [(k, round(v, 4) if isinstance(v, float) else v) for k, v in final.items()
             if k in ("loss", "eval_loss", "rewards/margins", "rewards/accuracies", "step")]
    print_table(summary_table(f"gwq-align {job.kind} ({record['status']})", rows, ("what", "value")))


@cli_errors
def main(
    model: str = MODEL,
    dataset: Path = DATASET,
    output_dir: Path = OUTPUT,
    val_dataset: Optional[Path] = VAL,
    recipe: str = RECIPE,
    config: Optional[Path] = CONFIG,
    lr: Optional[float] = LR,
    epochs: Optional[float] = EPOCHS,
    max_steps: Optional[int] = MAX_STEPS,
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Longest tokenized dialogue."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Dialogues per forward pass per GPU."),
    grad_accum: Optional[int] = GRAD_ACCUM,
    lora_rank: Optional[int] = typer.Option(None, "--lora-rank", help="LoRA rank."),
    lora_alpha: Optional[int] = LORA_ALPHA,
    save_steps: Optional[int] = SAVE_STEPS,
    seed: Optional[int] = SEED,
    set_: Optional[List[str]] = SET,
    nproc_per_node: int = NPROC,
    deepspeed: Optional[str] = DEEPSPEED,
    no_resume: bool = NO_RESUME,
    quiet: bool = QUIET,
):
    """LoRA SFT with ms-swift; the run dir gets checkpoints and a gwq_run.json record.

    Rerunning the same command resumes from the run dir's latest checkpoint.

    Example: gwq-align sft --model Qwen/Qwen2.5-7B-Instruct --dataset out/prepared --output-dir runs/sft-seed --recipe seed
    """
    from gwq_align.recipes import parse_set
    from gwq_align.train import Job

    overrides = {**hyper_options(lr, epochs, max_steps, max_length, batch_size, grad_accum, lora_rank, lora_alpha,
                                 save_steps, seed), **parse_set(set_)}
    job = Job("sft", model, dataset, output_dir, recipe=recipe, config=config, overrides=overrides,
              val_dataset=val_dataset, nproc_per_node=nproc_per_node, deepspeed=deepspeed,
              resume=not no_resume, quiet=quiet)
    run_and_report(job)
