"""What every CLI command needs: settings, the database, and a console."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.errors import BadRequest, FieldError, IchigenError
from ichigen.core.settings import get_settings
from ichigen.core.tabular import ImportReport, parse_mapping, write_error_report

console = Console()
err_console = Console(stderr=True)


@contextmanager
def database() -> Iterator[Database]:
    db = Database.from_settings(get_settings())
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def db_session() -> Iterator[Session]:
    """A session for one command; service errors become a clear message and exit code 2."""
    with database() as db:
        session = db.sessionmaker()
        try:
            yield session
        except IchigenError as exc:
            session.rollback()
            err_console.print(f"[red]error:[/red] {exc.detail}")
            for item in exc.errors:
                err_console.print(f"  {'.'.join(str(p) for p in item.loc)}: {item.msg}")
            raise SystemExit(2) from None
        finally:
            session.close()


# ----------------------------------------------------------------------------- CSV imports


class ImportMode(StrEnum):
    create = "create"
    update = "update"
    upsert = "upsert"


FileArgument = Annotated[
    Path, typer.Argument(help="The CSV file.", exists=True, dir_okay=False, readable=True)
]
ModeOption = Annotated[
    ImportMode, typer.Option(help="Create new records, update existing ones, or both.")
]
MappingOption = Annotated[
    str | None,
    typer.Option(
        help='Column mapping over the automatic one: a JSON object like {"E-mail": "email", '
        '"Notes": null}, or a file holding one.'
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
]
EncodingOption = Annotated[
    str | None,
    typer.Option(help="The file's encoding (detected when omitted): utf-8, shift_jis, …"),
]
ErrorsOption = Annotated[
    Path | None, typer.Option("--errors", help="Write every row error to this CSV file.")
]
AsOption = Annotated[
    str | None,
    typer.Option("--as", help="Email of the user the changes are recorded as (default: system)."),
]
FilterOption = Annotated[
    list[str] | None,
    typer.Option("--filter", help="field:op:value, repeatable (e.g. city:eq:Tokyo)."),
]
QueryOption = Annotated[str | None, typer.Option("-q", "--query", help="Quick search.")]
OutputOption = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write to this file (default: stdout).")
]
BomOption = Annotated[
    bool | None,
    typer.Option("--bom/--no-bom", help="Start with a BOM for Excel (default: only in files)."),
]


def acting_user(session: Session, email: str | None) -> Actor:
    """The actor of a command: the system, or the user with this email (``--as``)."""
    if email is None:
        return Actor.system("cli")
    user = auth_service.find_user_by_email(session, email)
    if user is None:
        raise typer.BadParameter(f"no user with email {email}", param_hint="--as")
    return auth_service.actor_for(user, via="cli")


def read_mapping(value: str | None) -> dict[str, str | None] | None:
    """A ``--mapping`` option: a JSON object, or the path of a file that holds one."""
    if value is None or not value.strip():
        return None
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise BadRequest(
                f"--mapping is neither a JSON object nor a file: {value}",
                [FieldError(("mapping",), "not JSON and no such file")],
            )
        text = path.read_text(encoding="utf-8-sig")
    return parse_mapping(text)


@contextmanager
def import_progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, and the ``progress(done, total)`` callback that moves it."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(what, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


def print_import_report(report: ImportReport, errors_file: Path | None, shown: int = 20) -> None:
    """The import's counts, its first row errors, and all of them in ``errors_file``."""
    verb = "would be" if report.dry_run else "were"
    console.print(
        f"{report.total_rows} rows ({report.encoding}, "
        f"{'tab' if report.delimiter == chr(9) else repr(report.delimiter)}-separated): "
        f"{report.created} {verb} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, [red]{report.failed} failed[/red]"
        + (" — dry run, nothing was written" if report.dry_run else "")
    )
    skipped = [column for column, target in report.mapping.items() if target is None]
    if skipped:
        console.print("skipped columns: " + ", ".join(skipped))
    if report.errors:
        table = Table("row", "column", "value", "reason", title="Row errors")
        for error in report.errors[:shown]:
            table.add_row(str(error.row), error.column, error.value or "", error.reason)
        console.print(table)
        more = len(report.errors) - shown + report.errors_omitted
        if more > 0 and errors_file is None:
            console.print(f"… and {more} more; write them all with --errors FILE")
    if errors_file is not None:
        with errors_file.open("w", encoding="utf-8-sig", newline="") as out:
            write_error_report(report, out)
        console.print(f"row errors written to {errors_file}")
