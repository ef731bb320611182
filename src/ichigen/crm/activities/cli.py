"""``ichigen activities …``."""

from __future__ import annotations

import typer

activities = typer.Typer(
    help="Activities: log calls, notes, emails and meetings; iCalendar import and export.",
    no_args_is_help=True,
)
