"""The gwq-align command line. One thin `main` per command in gwq_align/commands/<name>.py;
torch and swift are imported inside the commands so `--help` is instant."""

import typer

from gwq_align.commands import dpo, sft, tiny_model
from gwq_align.commands import push

app = typer.Typer(
    name="gwq-align",
    help="Train (LoRA SFT, DPO), compare and publish 古文翻译腔 models on ms-swift.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root():
    """Train (LoRA SFT, DPO), compare and publish 古文翻译腔 models on ms-swift."""


# Commands are registered below, one line each.
app.command("sft")(sft.main)
app.command("dpo")(dpo.main)
app.command("tiny-model")(tiny_model.main)
app.command("push")(push.main)
