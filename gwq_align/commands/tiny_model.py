"""gwq-align tiny-model: build a tiny random-weight Qwen2 chat model for tests and demos."""

from __future__ import annotations

from pathlib import Path

import typer

from gwq_data.console import cli_errors, console


@cli_errors
def main(
    out_dir: Path = typer.Argument(..., help="Directory to write config, weights and tokenizer into."),
    seed: int = typer.Option(0, help="Seed for the random weights."),
):
    """Build a 2-layer Qwen2 with the real Qwen2 vocabulary and chat template, offline (~20 MB, a few seconds).

    The weights are random: it trains and generates, but says nothing useful until trained.

    Example: gwq-align tiny-model runs/tiny-qwen2 && gwq-align sft --model runs/tiny-qwen2 --dataset out/prepared --output-dir runs/sft --recipe cpu-tiny
    """
    from gwq_align.tiny import build_tiny_model

    path = build_tiny_model(out_dir, seed=seed)
    console.print(f"tiny Qwen2 model written to {path}", highlight=False)
