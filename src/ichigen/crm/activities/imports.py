"""CSV import and export of activities, through ``log_activity`` and ``update_activity``.

Each row becomes a note, call, email or meeting written by the service, so its rules apply
(fields of other kinds refused, the end after the start, an active owner) and every write is
audited. Rows are written in batches, one transaction each, with a savepoint per row: a bad
row rolls back alone, and a dry run rolls the whole import back.

A row is linked to the records its cells name: contacts by email (or full name), companies by
name or domain, deals by external id or name, and Salesforce's "Related To" to a deal or a
company of that name. A name that finds nothing is an error for the row, and so is a row that
links to nothing. Links are added, never dropped: re-importing a row keeps the links an
activity got in ichigen. The kind comes from the type column (HubSpot's and Salesforce's
values, and Japanese ones); without one, from the row's fields (a call's direction, duration
or outcome make a call, and so on), else a note.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal, TextIO

from pydantic import ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require
from ichigen.core.audit import Actor, diff
from ichigen.core.errors import BadRequest, FieldError, IchigenError, ValidationFailed
from ichigen.core.tabular import (
    BATCH_SIZE,
    MAX_REPORTED_ERRORS,
    ImportPreview,
    ImportReport,
    ReportBuilder,
    RowBatch,
    cell_text,
    check_header,
    csv_row,
    error_fields,
    parse_bool,
    parse_datetime,
    parse_duration,
    preview_import,
    read_table,
    resolve_mapping,
    split_addresses,
    split_list,
    the_one,
    time_zone_named,
    value_key,
    whole_number,
    write_in_batches,
)
from ichigen.core.text import fold
from ichigen.crm.activities import service
from ichigen.crm.activities.models import Activity
from ichigen.crm.activities.schemas import (
    ActivityCreate,
    ActivityRead,
    ActivityUpdate,
    RecordRef,
)
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.deals import service as deals

ENTITY = "activities"
ImportMode = Literal["create", "update", "upsert"]
ActivityMatch = Literal["external_id", "id"]
Progress = Callable[[int, int], None]

#: Columns an export writes, in this order.
EXPORT_COLUMNS = (
    "id",
    "external_id",
    "kind",
    "subject",
    "body",
    "occurred_at",
    "ends_at",
    "all_day",
    "direction",
    "duration_seconds",
    "outcome",
    "email_from",
    "email_to",
    "attendees",
    "location",
    "owner",
    "contacts",
    "companies",
    "deals",
    "created_at",
    "updated_at",
)
#: The longest duration an activity may have (a week), as the schema allows.
MAX_DURATION_SECONDS = 86_400 * 7

_TEXT = {"external_id", "subject", "body", "location", "email_from"}
_LINKS = {"contacts": "contact", "companies": "company", "deals": "deal"}
_REFERENCES = {"owner", "kind", "related_to", *_LINKS}


def _table(names: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {value_key(name): value for value, aliases in names.items() for name in aliases}


_KINDS = _table(
    {
        "call": ("call", "calls", "phone call", "電話", "通話", "架電"),
        "email": (
            "email",
            "emails",
            "e-mail",
            "mail",
            "incoming email",
            "forwarded email",
            "list email",
            "メール",
            "Eメール",
            "電子メール",
        ),
        "meeting": ("meeting", "meetings", "event", "会議", "打ち合わせ", "打合せ", "ミーティング"),
        "note": ("note", "notes", "other", "メモ", "ノート", "その他"),
        "task": ("task", "todo", "to do", "タスク"),
    }
)
_OUTCOMES = _table(
    {
        "connected": ("connected", "answered", "left live message", "接続", "通話済み", "応答あり"),
        "left_voicemail": ("left voicemail", "voicemail", "留守電", "留守番電話"),
        "no_answer": ("no answer", "not answered", "不在", "応答なし"),
        "busy": ("busy", "話し中"),
        "wrong_number": ("wrong number", "番号違い", "番号間違い"),
    }
)
_DIRECTIONS = _table(
    {
        "inbound": ("inbound", "incoming", "in", "着信", "受信", "インバウンド"),
        "outbound": ("outbound", "outgoing", "out", "発信", "送信", "アウトバウンド"),
    }
)
#: Fields that tell a row's kind when no column names it.
_KIND_HINTS = (
    ("email", ("email_from", "email_to")),
    ("meeting", ("ends_at", "location", "attendees", "all_day")),
    ("call", ("direction", "duration_seconds", "outcome")),
)
_EMAIL = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
#: What a dry run shows of an activity.
_SHOWN = {
    "kind",
    "subject",
    "body",
    "occurred_at",
    "ends_at",
    "all_day",
    "direction",
    "duration_seconds",
    "outcome",
    "email_from",
    "email_to",
    "attendees",
    "location",
    "owner_id",
    "external_id",
}


def _from_table(table: dict[str, str], what: str, choices: str) -> Callable[[str], str]:
    def convert(value: str) -> str:
        found = table.get(value_key(value))
        if found is None:
            raise ValueError(f"'{value}' is not {what}; use {choices}")
        return found

    return convert


activity_kind = _from_table(_KINDS, "an activity type", "call, email, meeting or note")
call_outcome = _from_table(
    _OUTCOMES, "a call outcome", "connected, left_voicemail, no_answer, busy or wrong_number"
)
direction = _from_table(_DIRECTIONS, "a direction", "inbound or outbound")


def attendee(value: str) -> dict[str, Any]:
    """``山田 太郎 <taro@example.jp>`` or a bare address, as a meeting attendee."""
    found = _EMAIL.search(value)
    if found is None:
        raise ValueError(f"'{value}' has no email address")
    name = (value[: found.start()] + value[found.end() :]).strip(" <>\"'()")
    return {"email": found.group(0), "name": name or None}


def _duration(value: str) -> int:
    seconds = parse_duration(value)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(
            f"'{value}' seconds is more than a week; map a column of milliseconds "
            "(HubSpot's call duration) to duration_ms"
        )
    return seconds


def _duration_ms(value: str) -> int:
    return _duration(str(round(whole_number(value) / 1000)))


_CONVERT: dict[str, Callable[[str], Any]] = {
    "direction": direction,
    "outcome": call_outcome,
    "duration_seconds": _duration,
    "duration_ms": _duration_ms,
    "all_day": parse_bool,
    "email_to": split_addresses,
    "attendees": lambda v: [attendee(item) for item in split_list(v.replace(",", ";"))],
}


@dataclass
class _Row:
    """One file row on its way to an activity."""

    number: int
    cells: list[str]
    record: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    record_id: int | None = None

    def problem(self, name: str, reason: str) -> None:
        self.problems.append((self.sources.get(name), reason))


class _Reader:
    """Turns cells into activity records, per the resolved column mapping."""

    def __init__(self, headers: list[str], mapping: dict[str, str | None], zone: tzinfo) -> None:
        self.headers = headers
        self.columns = [(i, t) for i, h in enumerate(headers) if (t := mapping.get(h)) is not None]
        self.zone = zone
        self.width = len(headers)
        self.column_of = {target: i for i, target in reversed(self.columns)}

    def read(self, number: int, cells: list[str]) -> _Row:
        row = _Row(number, cells)
        if len(cells) > self.width:
            row.problems.append(
                (None, f"the row has {len(cells)} cells but the header names {self.width} columns")
            )
            return row
        for index, target in self.columns:
            value = cell_text(cells[index]) if index < len(cells) else ""
            if not value:
                continue
            name = "duration_seconds" if target == "duration_ms" else target
            row.sources[name] = index
            try:
                if target in _TEXT:
                    row.record[target] = value
                elif target in _REFERENCES:
                    row.names[target] = value
                elif target in ("occurred_at", "ends_at"):
                    row.record[target] = parse_datetime(value, self.zone)
                elif target == "id":
                    row.record_id = whole_number(value)
                else:
                    row.record[name] = _CONVERT[target](value)
            except ValueError as exc:
                row.problems.append((index, str(exc)))
        return row


class _Lookups:
    """Users, contacts, companies and deals by the names rows use, each looked up once."""

    def __init__(self, session: Session, actor: Actor) -> None:
        self.actor = actor
        self.owners: dict[str, list[int]] = {}
        for user in auth_service.list_users(session):
            self.owners.setdefault(user.email, []).append(user.id)
            self.owners.setdefault(fold(user.name), []).append(user.id)
        self.found: dict[tuple[str, str], int | str] = {}
        self.external_ids: dict[str, int] = {}

    def prefetch(self, session: Session, keys: set[str]) -> None:
        """The activities with these external ids (one query per batch)."""
        wanted = keys - self.external_ids.keys()
        if wanted:
            for external_id, activity_id in session.execute(
                select(Activity.external_id, Activity.id).where(Activity.external_id.in_(wanted))
            ):
                if external_id is not None:
                    self.external_ids[external_id] = activity_id

    def owner(self, value: str) -> int | str:
        matches = self.owners.get(value.lower()) or self.owners.get(fold(value)) or []
        return matches[0] if len(matches) == 1 else "no single user has this email or name"

    def record(self, session: Session, record_type: str, value: str) -> int | str:
        """The one contact, company or deal a cell's item names, or why there is none."""
        key = (record_type, value)
        if key not in self.found:
            finder = {"contact": _contact, "company": _company, "deal": self._deal}[record_type]
            self.found[key] = finder(session, value)
        return self.found[key]

    def _deal(self, session: Session, value: str) -> int | str:
        for name in ("external_id", "name"):
            found = deals.list_deals(session, self.actor, filters=[f"{name}:eq:{value}"], limit=2)
            if len(found.items) == 1:
                return found.items[0].id
            if found.items:
                return f"several deals are named '{value}'; give their external id"
        return f"no deal has the external id or name '{value}'"


def _contact(session: Session, value: str) -> int | str:
    by = "email" if "@" in value else "name"
    return the_one(contacts.contact_ids_named(session, value), value, "contact", by)


def _company(session: Session, value: str) -> int | str:
    return the_one(companies.company_ids_named(session, value), value, "company", "name or domain")


def _resolve(
    session: Session,
    lookups: _Lookups,
    row: _Row,
    existing: ActivityRead | None,
    link_column: int | None,
) -> list[RecordRef]:
    """Owner, kind and links from the row's names; the links (existing ones first)."""
    names, record = row.names, row.record
    if "owner" in names:
        owner = lookups.owner(names["owner"])
        if isinstance(owner, str):
            row.problem("owner", owner)
        else:
            record["owner_id"] = owner
    kind: str | None = None
    if "kind" in names:
        try:
            kind = activity_kind(names["kind"])
        except ValueError as exc:
            row.problem("kind", str(exc))
    if existing is not None:
        if kind is not None and kind != existing.kind:
            row.problem("kind", f"the activity is a {existing.kind}; its kind cannot change")
        kind = existing.kind
    elif kind is None and "kind" not in names:
        kind = next((k for k, fields in _KIND_HINTS if any(f in record for f in fields)), "note")
    if kind is not None:
        record["kind"] = kind
    links = [RecordRef(type=link.type, id=link.id) for link in existing.links] if existing else []
    for column, record_type in _LINKS.items():
        for item in split_list(names.get(column, "")):
            values = (_EMAIL.findall(item) or [item]) if record_type == "contact" else [item]
            for value in values:
                found = lookups.record(session, record_type, value)
                if isinstance(found, str):
                    row.problem(column, found)
                else:
                    links.append(RecordRef.model_validate({"type": record_type, "id": found}))
    if "related_to" in names:
        value = names["related_to"]
        deal = lookups.record(session, "deal", value)
        company = lookups.record(session, "company", value)
        matched = [
            RecordRef.model_validate({"type": t, "id": i})
            for t, i in (("deal", deal), ("company", company))
            if isinstance(i, int)
        ]
        if not matched:
            row.problem("related_to", f"no deal or company is named '{value}'")
        links += matched
    unique = list({(link.type, link.id): link for link in links}.values())
    if not unique and not row.problems:
        row.problems.append((link_column, "the row links to no contact, company or deal"))
    return unique


def _shown(activity: ActivityRead) -> dict[str, Any]:
    shown = activity.model_dump(mode="json", include=_SHOWN)
    shown["attendees"] = [a["email"] for a in shown["attendees"]]
    shown["links"] = [f"{link.type}: {link.name or link.id}" for link in activity.links]
    return shown


def _locate(row: _Row, reader: _Reader, loc: Sequence[Any]) -> tuple[int | None, str]:
    parts = [str(p) for p in loc]
    if not parts:
        return None, ""
    name = {"owner_id": "owner", "links": "contacts"}.get(parts[0], parts[0])
    index = row.sources.get(name, reader.column_of.get(name))
    if index is None and parts[0] == "links":
        index = next((row.sources[c] for c in (*_LINKS, "related_to") if c in row.sources), None)
    return index, "" if index is not None else f"{parts[0].replace('_', ' ')}: "


@dataclass
class _New:
    """A row whose new activity is written with the rest of its batch."""

    row: _Row
    data: ActivityCreate


def _fail_service_errors(
    row: _Row, reader: _Reader, report: ReportBuilder, exc: ValidationError | IchigenError
) -> None:
    problems = []
    for error in error_fields(exc):
        index, prefix = _locate(row, reader, error.loc)
        problems.append((index, prefix + error.msg))
    report.fail_cells(row.number, reader.headers, row.cells, problems)


def _created(
    session: Session,
    lookups: _Lookups,
    report: ReportBuilder,
    row: _Row,
    after: ActivityRead | None,
    activity_id: int,
    external_id: str | None,
) -> None:
    if external_id:
        lookups.external_ids[external_id] = activity_id
    shown = {}
    if after is not None:
        shown = {k: v for k, v in _shown(after).items() if v not in (None, "", [], {}, False)}
    report.succeed(row.number, "created", activity_id, diff({}, shown))


def _write_new(
    session: Session,
    lookups: _Lookups,
    reader: _Reader,
    new: list[_New],
    actor: Actor,
    report: ReportBuilder,
) -> None:
    """Log a batch's new activities in one unit of work (``log_activities``: one query per
    record type for the links, one insert per table). Rows the service refuses fail alone
    and the others are written; anything else the batch call refuses (a permission per kind,
    an external id taken meanwhile) is retried row by row, so each row gets its own answer."""
    pending = list(new)
    while pending:
        try:
            ids = service.log_activities(session, [n.data for n in pending], actor, commit=False)
        except ValidationFailed as exc:
            refused: dict[int, list[FieldError]] = {}
            for error in exc.errors:
                if (
                    len(error.loc) >= 2
                    and error.loc[0] == "items"
                    and isinstance(error.loc[1], int)
                ):
                    refused.setdefault(error.loc[1], []).append(
                        FieldError(error.loc[2:], error.msg, error.type)
                    )
            if not refused or len(refused) == len(pending):
                break
            for index, errors in refused.items():
                _fail_service_errors(
                    pending[index].row, reader, report, ValidationFailed(exc.detail, errors)
                )
            pending = [n for i, n in enumerate(pending) if i not in refused]
            continue
        except IchigenError:
            break
        session.commit()
        reads: dict[int, ActivityRead] = {}
        if report.report.dry_run:
            reads = {a.id: a for a in service.get_activities(session, ids, actor)}
        for item, activity_id in zip(pending, ids, strict=True):
            _created(
                session,
                lookups,
                report,
                item.row,
                reads.get(activity_id),
                activity_id,
                item.data.external_id,
            )
        return
    for item in pending:
        try:
            after = service.log_activity(session, item.data, actor)
        except IchigenError as exc:
            session.rollback()
            _fail_service_errors(item.row, reader, report, exc)
            continue
        _created(session, lookups, report, item.row, after, after.id, after.external_id)


def _import_row(
    session: Session,
    lookups: _Lookups,
    reader: _Reader,
    row: _Row,
    actor: Actor,
    how: tuple[ImportMode, ActivityMatch],
    report: ReportBuilder,
    new: list[_New],
) -> None:
    """Check one row and update its activity, or queue its new activity in ``new``."""
    mode, match_on = how

    def fail(problems: Sequence[tuple[int | None, str]]) -> None:
        report.fail_cells(row.number, reader.headers, row.cells, problems)

    if row.problems:
        fail(row.problems)
        return
    external_id = row.record.get("external_id")
    if external_id and any(n.data.external_id == external_id for n in new):
        # A later row for an activity this batch creates: write those first, so that this
        # row finds it, as it would in a later batch.
        _write_new(session, lookups, reader, new, actor, report)
        new.clear()
    found: int | None = None
    if match_on == "external_id" and row.record.get("external_id"):
        found = lookups.external_ids.get(row.record["external_id"])
    elif match_on == "id" and row.record_id is not None and mode != "create":
        found = session.scalar(select(Activity.id).where(Activity.id == row.record_id))
        if found is None:
            row.problem("id", f"no activity has the id {row.record_id}")
    if found is not None and mode == "create":
        row.problem(match_on, f"activity {found} already has this {match_on.replace('_', ' ')}")
    elif found is None and mode == "update" and not row.problems:
        row.problem(match_on, "no activity matches this row")
    if row.problems:
        fail(row.problems)
        return
    try:
        existing = service.get_activity(session, found, actor) if found is not None else None
    except IchigenError as exc:
        fail([(row.sources.get(match_on), exc.detail)])
        return
    link_column = next(
        (reader.column_of[c] for c in (*_LINKS, "related_to") if c in reader.column_of), None
    )
    links = _resolve(session, lookups, row, existing, link_column)
    if row.problems:
        fail(row.problems)
        return
    if existing is None:
        try:
            data = ActivityCreate.model_validate({**row.record, "links": links})
        except ValidationError as exc:
            _fail_service_errors(row, reader, report, exc)
            return
        new.append(_New(row, data))
        return
    _update_row(session, reader, row, report, links, existing, actor)


def _update_row(
    session: Session,
    reader: _Reader,
    row: _Row,
    report: ReportBuilder,
    links: list[RecordRef],
    existing: ActivityRead,
    actor: Actor,
) -> None:
    try:
        values = {k: v for k, v in row.record.items() if k != "kind"}
        after = service.update_activity(
            session,
            existing.id,
            ActivityUpdate.model_validate({**values, "links": links}),
            actor,
        )
    except (ValidationError, IchigenError) as exc:
        session.rollback()
        _fail_service_errors(row, reader, report, exc)
        return
    status = "updated" if after.version != existing.version else "unchanged"
    report.succeed(row.number, status, after.id, diff(_shown(existing), _shown(after)))


def import_activities(
    session: Session,
    data: bytes,
    actor: Actor,
    *,
    mapping: dict[str, str | None] | None = None,
    mode: ImportMode = "upsert",
    match_on: ActivityMatch = "external_id",
    dry_run: bool = False,
    encoding: str | None = None,
    time_zone: str | None = None,
    progress: Progress | None = None,
    max_errors: int | None = MAX_REPORTED_ERRORS,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import activities from CSV bytes; bad rows are reported by row and column, not fatal.

    Rows are matched on ``external_id`` or ``id``; times without an offset are read in
    ``time_zone`` (UTC unless named). A file that cannot be read or mapped is a ``BadRequest``
    raised before anything is written; ``dry_run`` writes nothing and previews the changes.
    """
    require(actor, ENTITY, "write")
    if match_on not in ("external_id", "id"):
        raise BadRequest(
            "Activities are matched on external_id or id.",
            [FieldError(("match_on",), "must be external_id or id")],
        )
    zone = time_zone_named(time_zone)
    table = read_table(data, encoding)
    resolved = resolve_mapping(table.headers, ENTITY, (), mapping)
    check_header(table, resolved)
    targets = {t for t in resolved.values() if t}
    if mode != "create" and match_on not in targets:
        raise BadRequest(
            f"To {mode} activities matched on {match_on}, map a column to {match_on}.",
            [FieldError(("mapping",), f"no column is mapped to {match_on}")],
        )
    if mode != "update" and not targets & {*_LINKS, "related_to"}:
        raise BadRequest(
            "Activities are linked to contacts, companies or deals: map a column to contacts, "
            "companies, deals or related_to.",
            [FieldError(("mapping",), "no column is mapped to a contact, company or deal")],
        )
    reader = _Reader(table.headers, resolved, zone)
    lookups = _Lookups(session, actor)
    report = ReportBuilder(ENTITY, table, resolved, dry_run=dry_run, max_errors=max_errors)

    def write_batch(rows_session: Session, _connection: Connection, batch: RowBatch) -> None:
        rows = [reader.read(number, cells) for number, cells in batch]
        keys = {str(r.record["external_id"]) for r in rows if r.record.get("external_id")}
        lookups.prefetch(rows_session, keys)
        new: list[_New] = []
        for row in rows:
            _import_row(rows_session, lookups, reader, row, actor, (mode, match_on), report, new)
        _write_new(rows_session, lookups, reader, new, actor, report)

    write_in_batches(
        session, table, write_batch, dry_run=dry_run, progress=progress, batch_size=batch_size
    )
    return report.report


def preview_activities_import(
    session: Session,
    data: bytes,
    actor: Actor,
    *,
    encoding: str | None = None,
    mapping: dict[str, str | None] | None = None,
) -> ImportPreview:
    """The file's encoding, delimiter, headers, suggested mapping and first rows."""
    require(actor, ENTITY, "write")
    return preview_import(data, ENTITY, session, encoding=encoding, mapping=mapping)


# ----------------------------------------------------------------------------- export


def _all_activities(
    session: Session,
    actor: Actor,
    filters: dict[str, Any],
    page_size: int = 500,
) -> Iterator[ActivityRead]:
    cursor: str | None = None
    while True:
        page = service.list_activities(session, actor, cursor=cursor, limit=page_size, **filters)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def activities_csv(
    session: Session,
    actor: Actor,
    *,
    kinds: Sequence[str] | None = None,
    owner_id: int | None = None,
    record: RecordRef | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    bom: bool = True,
    chunk_rows: int = 500,
    counted: list[int] | None = None,
) -> Iterator[str]:
    """The CSV text of the activities of these kinds, owner, record (linked directly) and
    time range ``[start, end)``, newest first, in chunks (for streaming).

    The filters are checked before the first chunk, so a bad one raises here.
    """
    require(actor, ENTITY, "read")
    filters = {"kinds": kinds, "owner_id": owner_id, "record": record, "start": start, "end": end}
    activities = _all_activities(session, actor, filters)
    first = next(activities, None)
    return _chunks(session, actor, first, activities, bom, chunk_rows, counted)


def _names_of(session: Session, actor: Actor, pending: list[ActivityRead]) -> dict[str, Any]:
    """How an export names linked records: contacts by primary email (else name), deals by
    external id (else name), companies by name; owners by email."""
    wanted: dict[str, set[int]] = {"contact": set(), "deal": set()}
    for activity in pending:
        for link in activity.links:
            if link.type in wanted:
                wanted[link.type].add(link.id)
    named: dict[str, Any] = {"contact": {}, "deal": {}}
    if wanted["contact"]:
        ids = ",".join(map(str, sorted(wanted["contact"])))
        for person in contacts.list_contacts(
            session, actor, filters=[f"id:in:{ids}"], limit=len(wanted["contact"])
        ).items:
            named["contact"][person.id] = person.primary_email or person.full_name
    if wanted["deal"]:
        ids = ",".join(map(str, sorted(wanted["deal"])))
        for deal in deals.list_deals(
            session, actor, filters=[f"id:in:{ids}"], limit=len(wanted["deal"])
        ).items:
            named["deal"][deal.id] = deal.external_id or deal.name
    owners = {a.owner_id for a in pending if a.owner_id is not None}
    named["owner"] = {u.id: u.email for u in auth_service.users_by_id(session, owners).values()}
    return named


def _chunks(
    session: Session,
    actor: Actor,
    first: ActivityRead | None,
    rest: Iterator[ActivityRead],
    bom: bool,
    chunk_rows: int,
    counted: list[int] | None,
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if bom:
        buffer.write("\ufeff")
    writer.writerow(EXPORT_COLUMNS)
    pending: list[ActivityRead] = [first] if first is not None else []
    total = 0

    def flush() -> str:
        named = _names_of(session, actor, pending)
        for a in pending:

            def linked(record_type: str, a: ActivityRead = a) -> list[str]:
                found = named.get(record_type, {})
                return [
                    found.get(link.id) or link.name or str(link.id)
                    for link in a.links
                    if link.type == record_type
                ]

            values: list[Any] = [
                a.id,
                a.external_id,
                a.kind,
                a.subject or None,
                a.body or None,
                a.occurred_at.isoformat(),
                a.ends_at.isoformat() if a.ends_at else None,
                a.all_day if a.kind == "meeting" else None,
                a.direction,
                a.duration_seconds,
                a.outcome,
                a.email_from,
                a.email_to,
                [f"{p.name} <{p.email}>" if p.name else p.email for p in a.attendees],
                a.location,
                named["owner"].get(a.owner_id) if a.owner_id is not None else None,
                linked("contact"),
                linked("company"),
                linked("deal"),
                a.created_at.isoformat(),
                a.updated_at.isoformat(),
            ]
            writer.writerow(csv_row(values))
        pending.clear()
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    for activity in rest:
        pending.append(activity)
        if len(pending) >= chunk_rows:
            total += len(pending)
            yield flush()
    total += len(pending)
    yield flush()
    if counted is not None:
        counted.append(total)


def export_activities_csv(
    session: Session,
    actor: Actor,
    *,
    kinds: Sequence[str] | None = None,
    owner_id: int | None = None,
    record: RecordRef | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    out: TextIO,
    bom: bool = False,
) -> int:
    """Write the activities the filters select to ``out`` as CSV; returns how many rows."""
    counted: list[int] = []
    for chunk in activities_csv(
        session,
        actor,
        kinds=kinds,
        owner_id=owner_id,
        record=record,
        start=start,
        end=end,
        bom=bom,
        counted=counted,
    ):
        out.write(chunk)
    return counted[0]


__all__ = [
    "EXPORT_COLUMNS",
    "activities_csv",
    "activity_kind",
    "attendee",
    "call_outcome",
    "direction",
    "export_activities_csv",
    "import_activities",
    "preview_activities_import",
]
