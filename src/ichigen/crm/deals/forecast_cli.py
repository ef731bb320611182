"""``ichigen rates …``, ``ichigen quotas …`` and ``ichigen forecast``."""

from __future__ import annotations

import typer

rates = typer.Typer(
    help="Exchange rates by date, for totals in one currency.", no_args_is_help=True
)
quotas = typer.Typer(help="Sales quotas per user or team and period.", no_args_is_help=True)
forecast = typer.Typer(help="Forecast and sales figures for a period.", no_args_is_help=True)
