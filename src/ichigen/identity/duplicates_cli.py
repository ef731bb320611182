"""``ichigen duplicates …``: scan the contacts for duplicates, list the scan history and the
review queue, merge a pair or two contacts, mark a pair as not a duplicate, and undo a merge."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ichigen.cli.context import AsOption, acting_user, console, db_session, err_console
from ichigen.identity import duplicates as service
from ichigen.identity.matching import MatchSettings

duplicates = typer.Typer(
    help="Duplicate contacts: scan, review, merge, undo.", no_args_is_help=True
)

_STEPS = {"load": "Reading contacts", "match": "Scoring pairs", "store": "Queueing pairs"}


@duplicates.command("scan")
def scan(
    threshold: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Queue pairs at or above this probability.")
    ] = MatchSettings.threshold,
    threads: Annotated[
        int | None, typer.Option(min=1, help="DuckDB threads (default: every core).")
    ] = None,
    as_user: AsOption = None,
) -> None:
    """Scan every contact for likely duplicates and queue them for review."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
    with (
        db_session() as session,
        Progress(*columns, TimeElapsedColumn(), console=err_console) as progress,
    ):
        tasks = {step: progress.add_task(label, total=None) for step, label in _STEPS.items()}

        def advance(step: str, done: int, total: int) -> None:
            progress.update(tasks[step], completed=done, total=total)

        result = service.scan_contacts(
            session,
            acting_user(session, as_user),
            settings=MatchSettings(threshold=threshold, threads=threads),
            progress=advance,
        )
    console.print(
        f"scan {result.scan_id}: {result.contacts} contacts scanned in {result.seconds:.1f} s: "
        f"{result.candidates} pairs ≥ {result.threshold}, {result.queued} newly queued, "
        f"{result.updated} re-scored, {result.already_decided} already decided, "
        f"{result.withdrawn} no longer found"
    )


@duplicates.command("scans")
def scans(
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many.")] = 20,
    as_user: AsOption = None,
) -> None:
    """The latest scans, newest first: when, how started, and what each found or why it
    failed."""
    with db_session() as session:
        page = service.list_scans(session, acting_user(session, as_user), limit=limit)
    table = Table(
        "scan", "started (UTC)", "trigger", "by", "status", "contacts", "pairs", "new", "seconds"
    )
    table.columns[1].no_wrap = True
    for scan in page.items:
        status = scan.status if scan.error is None else f"{scan.status}: {scan.error}"
        table.add_row(
            str(scan.id),
            f"{scan.started_at:%Y-%m-%d %H:%M:%S}",
            scan.trigger,
            scan.started_by,
            status,
            *("" if n is None else str(n) for n in (scan.contacts, scan.candidates, scan.queued)),
            "" if scan.seconds is None else f"{scan.seconds:.1f}",
        )
    console.print(table)


@duplicates.command("list")
def list_pairs(
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 20,
    as_user: AsOption = None,
) -> None:
    """The pairs waiting for review, best match first."""
    with db_session() as session:
        page = service.list_pairs(session, acting_user(session, as_user), limit=limit)
    table = Table("pair", "probability", "left", "right", "strongest fields")
    for pair in page.items:
        top = sorted(pair.contributions.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            str(pair.id),
            f"{pair.match_probability:.4f}",
            f"{pair.left.id} {pair.left.full_name}",
            f"{pair.right.id} {pair.right.full_name}",
            ", ".join(f"{name} {weight:+.1f}" for name, weight in top),
        )
    console.print(table)


@duplicates.command("merge")
def merge(
    pair_id: Annotated[int, typer.Argument(help="The queued pair to merge.")],
    survivor: Annotated[
        int | None, typer.Option(help="The contact that stays (default: the older one).")
    ] = None,
    as_user: AsOption = None,
) -> None:
    """Merge a queued pair: the other contact is folded into the survivor."""
    with db_session() as session:
        result = service.merge_pair(
            session,
            pair_id,
            service.PairMergeRequest(survivor_id=survivor),
            acting_user(session, as_user),
        )
    console.print(
        f"merge {result.id}: contact {result.merged_id} merged into {result.survivor_id} "
        f"(undo with: ichigen duplicates undo {result.id})"
    )


@duplicates.command("not-duplicate")
def not_duplicate(
    pair_id: Annotated[int, typer.Argument(help="The queued pair.")],
    as_user: AsOption = None,
) -> None:
    """Mark a pair as two different people; later scans never queue it again."""
    with db_session() as session:
        service.mark_not_duplicate(session, pair_id, acting_user(session, as_user))
    console.print(f"pair {pair_id} marked as not a duplicate")


@duplicates.command("undo")
def undo(
    merge_id: Annotated[int, typer.Argument(help="The merge to undo.")],
    as_user: AsOption = None,
) -> None:
    """Undo a merge: the merged contact and everything moved come back."""
    with db_session() as session:
        result = service.undo_merge(session, merge_id, acting_user(session, as_user))
    console.print(f"merge {result.id} undone: contact {result.merged_id} is back")
