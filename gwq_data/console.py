"""Shared terminal output: one rich console, summary tables, progress bars, error exits."""

from __future__ import annotations

import functools
import sys
from typing import Callable, Iterable

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from gwq_data.errors import GwqError

console = Console(stderr=True)


def progress(**kwargs) -> Progress:
    """A progress bar on stderr; silent when stderr is not a terminal (CI, pipes)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    disable=not console.is_terminal, **kwargs)


def summary_table(title: str, rows: Iterable[tuple], columns: tuple[str, ...] = ("what", "count")) -> Table:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(x) for x in row))
    return table


def print_table(table: Table) -> None:
    # Summaries go to stdout so they can be captured; progress stays on stderr.
    Console(file=sys.stdout, width=max(Console().width, 100)).print(table)


def fail(message: str, code: int = 1) -> typer.Exit:
    # soft_wrap: one error stays one line (greppable, copy-pastable) whatever the terminal width;
    # escape: paths and messages may hold [brackets] that rich would read as markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def cli_errors(fn: Callable) -> Callable:
    """Turn GwqError (and Ctrl-C) into one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GwqError as e:
            raise fail(str(e), e.exit_code) from None
        except OSError as e:  # an output path that is a directory, a full disk, no permission...
            where = f"{e.filename}: " if e.filename else ""
            raise fail(f"{where}{e.strerror or e}", 1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: outputs are written atomically; run the same command again to resume.")
            raise typer.Exit(130) from None

    return wrapper
