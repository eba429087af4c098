"""The gwq-data command line. Each command lives in gwq_data/commands/<name>.py as one thin
`main` that parses options, calls library code and prints; heavy imports stay inside it so
`--help` is instant."""

import typer

from gwq_data.commands import validate
from gwq_data.commands import dedupe
from gwq_data.commands import convert, prepare, stats
from gwq_data.commands import upload
from gwq_data.commands import generate

app = typer.Typer(
    name="gwq-data",
    help="Make, check and package 古文翻译腔 (classical-Chinese translation tone) chat data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# One line per command; keep alphabetical within the pipeline order.
app.command("generate")(generate.main)
app.command("validate")(validate.main)
app.command("dedupe")(dedupe.main)
app.command("convert")(convert.main)
app.command("prepare")(prepare.main)
app.command("stats")(stats.main)
app.command("upload")(upload.main)


@app.callback()
def _root():
    """Make, check and package 古文翻译腔 chat data. Pipeline: generate → validate → dedupe → convert/prepare → upload."""
