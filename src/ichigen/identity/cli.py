"""``ichigen identity``: maintenance of the identity graph."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ichigen.cli.context import console, db_session, err_console
from ichigen.identity.rebuild import RebuildResult, rebuild_graph

identity = typer.Typer(
    help="The identity graph: persons, identifiers, merges.", no_args_is_help=True
)

#: What each phase of the rebuild is called on the progress bar.
PHASES = {
    "identifiers": "reading identifiers",
    "persons": "reading merged persons",
    "edges": "reading edges",
    "components": "connected components",
    "writing": "writing changes",
}


def print_rebuild(result: RebuildResult) -> None:
    """The rebuild's counts and timings as a table."""
    verb = "would be" if result.dry_run else "were"
    table = Table(title="Identity graph rebuild" + (" (dry run)" if result.dry_run else ""))
    table.add_column("")
    table.add_column("count", justify="right")
    for label, value in (
        ("identifiers", result.identifiers),
        ("active edges", result.edges),
        ("connected components", result.components),
        ("persons unchanged", result.persons_unchanged),
        (f"persons that {verb} merged", result.persons_merged),
        (f"persons that {verb} split", result.persons_split),
        (f"persons that {verb} created", result.persons_created),
        (f"identifiers that {verb} moved", result.identifiers_moved),
        (f"merge pointers that {verb} changed", result.pointers_changed),
        (f"merge-log rows that {verb} written", result.merge_log_rows),
        (f"rows that {verb} written", result.rows_written),
    ):
        table.add_row(label, f"{value:,}")
    console.print(table)
    console.print(
        "seconds: " + ", ".join(f"{phase} {secs:.2f}" for phase, secs in result.seconds.items())
    )
    if result.dry_run:
        console.print("dry run: nothing was written")


@identity.command("rebuild")
def rebuild(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
    ] = False,
) -> None:
    """Recompute every person's identifiers from the active edges, and repair what differs.

    Each connected component of the active edges becomes one person's identifiers; changes
    are written in one transaction and logged to the merge log (source kind ``rebuild``).
    Resolution waits while it runs.
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with (
        db_session() as session,
        Progress(*columns, console=err_console, transient=True) as progress,
    ):
        task = progress.add_task("starting", total=None)

        def advance(phase: str, done: int, total: int) -> None:
            progress.update(
                task,
                description=PHASES.get(phase, phase),
                completed=done,
                total=total or None,
            )

        result = rebuild_graph(session, progress=advance, dry_run=dry_run)
        if not dry_run:
            session.commit()
    print_rebuild(result)
