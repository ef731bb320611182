"""``ichigen sources`` and ``ichigen events``: write keys, exports, retention."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from ichigen.cli.context import console, db_session, err_console, import_progress
from ichigen.collect import imports, service
from ichigen.collect.ingest import Collector
from ichigen.collect.messages import Limits
from ichigen.collect.schemas import (
    EventImportResult,
    EventImportRowError,
    KeyRotation,
    SourceCreate,
    SourceKind,
    SourceRead,
    SourceUpdate,
)
from ichigen.collect.store import EventStore, EventStoreBusy, read_parquet_export
from ichigen.collect.store_process import open_event_store
from ichigen.core.audit import Actor
from ichigen.core.errors import IchigenError, NotFound
from ichigen.core.settings import get_settings
from ichigen.core.tabular import csv_safe

sources = typer.Typer(help="Event sources and their write keys.", no_args_is_help=True)
events = typer.Typer(help="The event store: import, export, retention.", no_args_is_help=True)
CLI_ACTOR = Actor.system("cli")


@contextmanager
def event_store() -> Iterator[EventStore]:
    """The embedded event store, or a clear message when a running server holds it."""
    try:
        store = open_event_store(get_settings(), own_process=False)
    except EventStoreBusy as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None
    try:
        yield store
    finally:
        store.close()


@contextmanager
def collector() -> Iterator[Collector]:
    """A collector of this command's own over the embedded store (de-duplicating writes)."""
    with event_store() as store:
        own = Collector(store)
        try:
            yield own
        finally:
            own.close()


@sources.command("create")
def create_source(
    name: str,
    kind: Annotated[str, typer.Option(help="website, mobile, server, file or other.")] = "server",
    rate_limit: Annotated[
        int | None, typer.Option(help="Messages a second this source may send.")
    ] = None,
    retention_days: Annotated[
        int | None, typer.Option(help="Delete this source's events after so many days.")
    ] = None,
) -> None:
    """Create a source and print its write key (shown only this once)."""
    with db_session() as session:
        created = service.create_source(
            session,
            SourceCreate.model_validate(
                {
                    "name": name,
                    "kind": kind,
                    "rate_limit_per_second": rate_limit,
                    "retention_days": retention_days,
                }
            ),
            CLI_ACTOR,
        )
    err_console.print(f"created source {created.id} {created.name!r}; its write key:")
    console.print(created.write_key)


@sources.command("list")
def list_sources() -> None:
    """List sources with their state, limits and live keys."""
    with db_session() as session:
        found = service.list_sources(session)
    table = Table("id", "name", "kind", "enabled", "rate/s", "retention", "keys")
    for source in found:
        table.add_row(
            str(source.id),
            source.name,
            source.kind,
            "yes" if source.enabled else "no",
            str(source.rate_limit_per_second or "-"),
            f"{source.retention_days} days" if source.retention_days else "-",
            ", ".join(
                k.prefix
                + "…"
                + (f" (expires {k.expires_at:%Y-%m-%d %H:%M})" if k.expires_at else "")
                for k in source.keys
            ),
        )
    console.print(table)


@sources.command("update")
def update_source(
    name: str,
    rename: Annotated[str | None, typer.Option(help="A new name.")] = None,
    kind: Annotated[SourceKind | None, typer.Option(help="A new kind.")] = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Accept or refuse its events.")
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="Messages a second; 0 removes the limit.")
    ] = None,
    retention_days: Annotated[
        int | None, typer.Option(help="Days to keep events; 0 keeps them for ever.")
    ] = None,
) -> None:
    """Rename, enable or disable a source, or change its rate limit or retention."""
    changes: dict[str, object] = {}
    if rename is not None:
        changes["name"] = rename
    if kind is not None:
        changes["kind"] = kind
    if enable is not None:
        changes["enabled"] = enable
    if rate_limit is not None:
        changes["rate_limit_per_second"] = rate_limit or None
    if retention_days is not None:
        changes["retention_days"] = retention_days or None
    with db_session() as session:
        source = service.find_source(session, name)
        updated = service.update_source(
            session, source.id, SourceUpdate.model_validate(changes), CLI_ACTOR
        )
    console.print(
        f"source {updated.id} {updated.name!r}: "
        f"{'enabled' if updated.enabled else 'disabled'}, "
        f"rate limit {updated.rate_limit_per_second or 'none'}, "
        f"retention {updated.retention_days or 'none'}"
    )


@sources.command("rotate-key")
def rotate_key(
    name: str,
    grace_hours: Annotated[
        int | None, typer.Option(help="Hours the current keys keep working (default: setting).")
    ] = None,
) -> None:
    """Print a new write key; the current ones expire after the grace period."""
    with db_session() as session:
        source = service.find_source(session, name)
        rotated = service.rotate_key(
            session,
            source.id,
            KeyRotation(grace_hours=grace_hours),
            CLI_ACTOR,
            default_grace_hours=get_settings().collect_key_grace_hours,
        )
    err_console.print(f"new write key of {rotated.name!r}:")
    console.print(rotated.write_key)


@events.command("export")
def export_events(
    directory: Annotated[Path, typer.Argument(help="Folder to write day=YYYY-MM-DD/ files to.")],
    since: Annotated[datetime | None, typer.Option(help="Events at or after (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Events before (UTC).")] = None,
) -> None:
    """Write events as Parquet files partitioned by day."""
    with event_store() as store:
        written = store.export_parquet(directory, since, until)
    console.print(f"wrote {written} events to {directory}")


@events.command("load")
def load_events(
    directory: Annotated[
        Path, typer.Argument(help="A Parquet export (day=…/ folders).", exists=True)
    ],
) -> None:
    """Read a Parquet export back into the event store (events already there are skipped)."""
    stored = repeated = 0
    with collector() as own:
        for rows in read_parquet_export(directory):
            result = own.write_sync(rows, [])
            stored += result.stored
            repeated += result.duplicates
    console.print(f"loaded {stored} events; {repeated} were already stored")


@events.command("retention")
def apply_retention() -> None:
    """Delete events older than each source's retention now (the server does it hourly)."""
    with db_session() as session:
        retention = service.retention_by_source(session)
    with collector() as own:
        removed = own.apply_retention(retention)
    console.print(f"deleted {removed} events past their source's retention")


# ----------------------------------------------------------------------------- file imports


def _fail(exc: IchigenError) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(exc.detail)}")
    for item in exc.errors:
        err_console.print(f"  {escape('.'.join(str(p) for p in item.loc))}: {escape(item.msg)}")
    raise SystemExit(2)


def _source_named(name: str) -> SourceRead:
    """A source by name, or by id when no source has that name."""
    with db_session() as session:
        try:
            return service.find_source(session, name)
        except NotFound:
            if name.isdigit():
                return service.get_source(session, int(name))
            raise


def _print_event_import(
    result: EventImportResult, errors_file: Path | None, shown: int = 20
) -> None:
    read = f"{result.rows_read} rows read ({result.format}"
    read += f", {result.encoding})" if result.encoding else ")"
    if result.dry_run:
        console.print(
            f"{read}: {result.accepted} valid, [red]{result.rejected} rejected[/red]"
            " — dry run, nothing was stored"
        )
    else:
        kept = " (kept as failed events)" if result.kept_as_failed else ""
        console.print(
            f"{read}: {result.stored} stored, {result.duplicates} already stored, "
            f"[red]{result.rejected} rejected[/red]{kept}"
        )
    if result.unmapped_columns:
        console.print("unmapped columns: " + escape(", ".join(result.unmapped_columns)))
    if result.errors:
        table = Table("row", "field", "column", "value", "reason", title="Row errors")
        for error in result.errors[:shown]:
            table.add_row(
                str(error.row),
                escape(error.field),
                escape(error.column or ""),
                escape(error.value or ""),
                escape(error.reason),
            )
        console.print(table)
        more = result.error_count - shown
        if more > 0 and errors_file is None:
            console.print(f"… and {more} more; write them all with --errors FILE")
    if errors_file is not None:
        console.print(f"row errors written to {errors_file}")


@events.command("import")
def import_event_file(
    file: Annotated[
        Path,
        typer.Argument(
            help="A CSV, NDJSON or Parquet file (CSV and NDJSON may be gzipped).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    source: Annotated[str, typer.Option(help="The source (name or id) the events come from.")],
    file_format: Annotated[
        str | None,
        typer.Option("--format", help="csv, ndjson or parquet (default: from the file name)."),
    ] = None,
    message_type: Annotated[
        str | None,
        typer.Option("--type", help="Message type of rows without their own (default: track)."),
    ] = None,
    event: Annotated[
        str | None,
        typer.Option(help='Event name of rows without their own, e.g. "Order Completed".'),
    ] = None,
    field_map: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="field[:kind]=column, repeatable: userId=customer_id, "
            "properties.revenue=total, properties.items:json=items.",
        ),
    ] = None,
    mapping_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A JSON mapping (docs/event-import.md); --type, --event and --map override it.",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="Time zone of times without an offset, e.g. Asia/Tokyo (default UTC)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; store nothing.")
    ] = False,
    keep_failed: Annotated[
        bool,
        typer.Option("--keep-failed", help="Also keep rejected rows as failed events to replay."),
    ] = False,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Write every row error to this CSV file.")
    ] = None,
) -> None:
    """Import events from a file: each row becomes a Segment message of the source.

    Rows without a mapped messageId get one derived from their content, so importing the
    same file again stores nothing new.
    """
    try:
        chosen = imports.detect_format(file.name, file_format)
        base = (
            imports.parse_mapping(mapping_file.read_text(encoding="utf-8-sig"))
            if mapping_file
            else None
        )
        mapping = imports.mapping_with(
            base, type=message_type, event=event, pairs=field_map or [], timezone=timezone
        )
    except IchigenError as exc:
        _fail(exc)
    found = _source_named(source)
    settings = get_settings()
    limits = Limits(max_message_bytes=settings.collect_max_message_bytes)
    with ExitStack() as stack:
        own = None
        if not dry_run:
            try:
                own = stack.enter_context(collector())
            except SystemExit:
                err_console.print(
                    "To import while the server runs, upload the file to it: "
                    "POST /api/v1/events/imports (see docs/event-import.md), or use --dry-run "
                    "to check the file."
                )
                raise
        sink: Callable[[EventImportRowError], None] | None = None
        if errors is not None:
            out = stack.enter_context(errors.open("w", encoding="utf-8-sig", newline=""))
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(["row", "field", "column", "value", "reason"])

            def sink(error: EventImportRowError) -> None:
                writer.writerow(
                    [
                        error.row,
                        error.field,
                        csv_safe(error.column or ""),
                        csv_safe(error.value or ""),
                        error.reason,
                    ]
                )

        stream = stack.enter_context(file.open("rb"))
        progress = stack.enter_context(import_progress(f"importing {file.name}"))
        try:
            result = imports.import_events(
                stream,
                source=found,
                actor=CLI_ACTOR,
                collector=own,
                file_format=chosen,
                mapping=mapping,
                limits=limits,
                dry_run=dry_run,
                keep_failed=keep_failed,
                file_name=file.name,
                progress=progress,
                on_error=sink,
            )
        except IchigenError as exc:
            _fail(exc)
    _print_event_import(result, errors)
    if result.rejected:
        raise typer.Exit(1)
