"""``ichigen pipelines …`` and ``ichigen deals …``."""

from __future__ import annotations

import typer

pipelines = typer.Typer(help="Sales pipelines and their stages.", no_args_is_help=True)
deals = typer.Typer(help="Deals: list, create, move between stages.", no_args_is_help=True)
