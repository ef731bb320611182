"""``ichigen profiles``: upkeep of unified customer profiles."""

from __future__ import annotations

from typing import Annotated

import typer

from ichigen.cli.context import console, db_session
from ichigen.collect.cli import event_store
from ichigen.core.settings import get_settings
from ichigen.profiles import service

profiles = typer.Typer(help="Unified customer profiles.", no_args_is_help=True)


@profiles.command("purge-anonymous")
def purge_anonymous(
    days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Remove anonymous profiles not seen for this many days "
            "(default: ICHIGEN_ANONYMOUS_PROFILE_RETENTION_DAYS).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
) -> None:
    """Remove anonymous profiles (visitors never identified) past their retention, with
    their identifiers, merges, traits and events. Identified profiles are never removed.
    Needs the event store free (a running server's hourly upkeep does the same)."""
    keep = days if days is not None else get_settings().anonymous_profile_retention_days
    if keep < 1:
        console.print("Anonymous profiles are kept (retention 0); pass --days to purge.")
        raise typer.Exit(1)
    if dry_run:
        with db_session() as session:
            result = service.purge_anonymous_profiles(session, keep, dry_run=True)
    else:
        # Their events go too: the event store must be free (a running server holds it,
        # and its hourly upkeep does the same purge).
        with event_store() as events, db_session() as session:
            result = service.purge_anonymous_profiles(session, keep, events=events)
    verb = "would be removed" if dry_run else "removed"
    removed_events = "" if dry_run else f", {result.events:,} events"
    console.print(
        f"Anonymous profiles not seen since {result.seen_before:%Y-%m-%d}: "
        f"{result.profiles:,} {verb} ({result.persons:,} persons with those merged into them, "
        f"{result.identifiers:,} identifiers{removed_events})."
    )
