"""``ichigen tasks …``."""

from __future__ import annotations

import typer

tasks = typer.Typer(help="Tasks and reminders.", no_args_is_help=True)
