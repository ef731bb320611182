"""``ichigen demo``: load the demo CRM into the record store."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ichigen.cli.context import console, database, err_console
from ichigen.collect import service as collect_service
from ichigen.collect.schemas import SourceCreate
from ichigen.collect.store import EventStoreBusy
from ichigen.core.audit import Actor
from ichigen.core.errors import IchigenError
from ichigen.demo.service import DEFAULT_SEED, DemoSummary, load_demo
from ichigen.demo.web import load_web_behaviour


class Size(StrEnum):
    small = "small"
    medium = "medium"
    large = "large"


_STAGES = {
    "users": "Users and teams",
    "companies": "Companies",
    "contacts": "Contacts",
    "edits": "Later edits",
    "rates": "Pipelines, rates",
    "sales": "Deals, activities",
    "quotas": "Quotas",
    "indexes": "Indexes, statistics",
    "web": "Web behaviour",
}


def demo(
    size: Annotated[
        Size,
        typer.Option(
            help="small: 200 companies, 2,000 contacts, 300 deals; medium: 10k/100k/3k; "
            "large: 100k/1M/3k."
        ),
    ] = Size.small,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = DEFAULT_SEED,
    port: Annotated[
        int, typer.Option(help="The port the server will listen on, for the example printed.")
    ] = 8000,
) -> None:
    """Load a believable company's CRM (migrating the record store first); safe to re-run."""
    with (
        database() as db,
        Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar,
    ):
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            summary = load_demo(db, size=size.value, seed=seed, progress=progress)
            write_key = None
            web_events = 0
            if not summary.already_loaded:
                with db.sessionmaker() as session:
                    source = collect_service.create_source(
                        session,
                        SourceCreate(name="Demo web shop", kind="website"),
                        Actor.system("demo"),
                    )
                write_key = source.write_key
                try:
                    web_events = load_web_behaviour(db, source.id, size.value, seed, progress)
                except EventStoreBusy as exc:
                    err_console.print(f"[yellow]no demo web behaviour:[/yellow] {exc}")
        except IchigenError as exc:
            err_console.print(f"[red]error:[/red] {exc.detail}")
            raise SystemExit(2) from None
    _print_summary(summary)
    if web_events:
        console.print(
            f"web behaviour: {web_events:,} tracked events of the demo shop's visitors, "
            "resolved to profiles (Profiles in the UI, or a contact's web activity)."
        )
    if write_key:
        console.print(
            "Event source [bold]Demo web shop[/bold] (shown once; Sources in the UI makes "
            f"more): write key [bold]{write_key}[/bold]\n"
            f"  curl -u '{write_key}:' -H 'Content-Type: application/json' "
            f"http://127.0.0.1:{port}/v1/track "
            '-d \'{"userId": "demo-1", '
            '"event": "Product Viewed"}\'',
            soft_wrap=True,
        )


def _print_summary(summary: DemoSummary) -> None:
    if summary.already_loaded:
        console.print("demo data already loaded; nothing changed.")
    else:
        console.print(
            f"loaded {summary.companies:,} companies, {summary.contacts:,} contacts, "
            f"{summary.users} users in {summary.teams} teams, {summary.custom_fields} custom "
            f"fields and {summary.edits:,} later edits in {summary.seconds:.1f} s."
        )
        sold = summary.sales
        if sold.deals:
            console.print(
                f"sales: {sold.pipelines} pipelines, {sold.deals:,} deals ({sold.open:,} open, "
                f"{sold.won:,} won, {sold.lost:,} lost), {sold.activities:,} activities, "
                f"{sold.tasks:,} tasks, {sold.quotas} quotas and {sold.rates} exchange rates."
            )
    table = Table(title="Demo sign-ins (demo data only: never use these passwords elsewhere)")
    table.add_column("role")
    table.add_column("email")
    table.add_column("password")
    for role, email in summary.sign_ins:
        table.add_row(role, email, summary.password)
    console.print(table)
    console.print(
        f"Sign in as [bold]{summary.admin_email}[/bold] / [bold]{summary.password}[/bold]"
    )
