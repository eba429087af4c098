"""gwq-align dpo: DPO with the styled reply chosen and the original reply rejected, with ms-swift."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from gwq_align.commands.sft import (CONFIG, DATASET, DEEPSPEED, EPOCHS, GRAD_ACCUM, LORA_ALPHA, LR, MAX_STEPS, MODEL,
                                    NO_RESUME, NPROC, OUTPUT, QUIET, RECIPE, SAVE_STEPS, SEED, SET, VAL, hyper_options,
                                    run_and_report)
from gwq_data.console import cli_errors


@cli_errors
def main(
    model: str = MODEL,
    dataset: Path = DATASET,
    output_dir: Path = OUTPUT,
    from_sft: Optional[Path] = typer.Option(None, "--from-sft", help="An SFT run dir: start from its adapter, and use it as the reference."),
    beta: Optional[float] = typer.Option(None, "--beta", help="DPO beta (recipe default 0.1): how far the policy may move from the reference."),
    loss: Optional[str] = typer.Option(None, "--loss", help="DPO loss_type: sigmoid (default), ipo, hinge, robust, ... (trl's names)."),
    rpo_alpha: Optional[float] = typer.Option(None, "--rpo-alpha", help="Weight of the chosen reply's NLL added to the DPO loss (recipe default 1.0)."),
    val_dataset: Optional[Path] = VAL,
    recipe: str = RECIPE,
    config: Optional[Path] = CONFIG,
    lr: Optional[float] = LR,
    epochs: Optional[float] = EPOCHS,
    max_steps: Optional[int] = MAX_STEPS,
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Longest tokenized prompt + reply."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pairs per forward pass per GPU."),
    grad_accum: Optional[int] = GRAD_ACCUM,
    lora_rank: Optional[int] = typer.Option(None, "--lora-rank", help="LoRA rank (ignored with --from-sft: the SFT adapter's)."),
    lora_alpha: Optional[int] = LORA_ALPHA,
    save_steps: Optional[int] = SAVE_STEPS,
    seed: Optional[int] = SEED,
    set_: Optional[List[str]] = SET,
    nproc_per_node: int = NPROC,
    deepspeed: Optional[str] = DEEPSPEED,
    no_resume: bool = NO_RESUME,
    quiet: bool = QUIET,
):
    """LoRA DPO with ms-swift: styled reply chosen, original reply rejected; no second model in memory.

    Without --from-sft it starts from the base and the reference is the base with the adapter
    switched off; with it, the SFT adapter is trained on and its frozen copy is the reference.
    Rerunning the same command resumes from the run dir's latest checkpoint.

    Example: gwq-align dpo --model Qwen/Qwen2.5-7B-Instruct --dataset out/prepared --from-sft runs/sft-seed --output-dir runs/dpo
    """
    from gwq_align.recipes import parse_set
    from gwq_align.train import Job

    dpo = {k: v for k, v in {"beta": beta, "loss_type": loss, "rpo_alpha": rpo_alpha}.items() if v is not None}
    overrides = {**hyper_options(lr, epochs, max_steps, max_length, batch_size, grad_accum, lora_rank, lora_alpha,
                                 save_steps, seed), **dpo, **parse_set(set_)}
    job = Job("dpo", model, dataset, output_dir, recipe=recipe, config=config, overrides=overrides,
              val_dataset=val_dataset, from_sft=from_sft, nproc_per_node=nproc_per_node, deepspeed=deepspeed,
              resume=not no_resume, quiet=quiet)
    run_and_report(job)
