"""CSV import and export of contacts, built on ``service.write_contacts``.

Import reads a file (see ``ichigen.core.tabular``), turns each row into a record in the
``ContactCreate`` shape and writes the rows in batches through ``write_contacts``, which checks
every record on its own; its field paths are translated back to the file's row and column.
Empty cells leave a field as it is. Contact points are added, never silently dropped: the
``email`` column sets the primary address and the phone columns put their numbers first, while
the contact's other addresses and numbers stay, unless the file carries an ``other_emails``
(or ``other_phones``) column, which then lists all the rest.

Export writes every contact a filter selects with our own column names, custom fields as
``cf.<key>``, so that an export imports again unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require
from ichigen.core.audit import Actor
from ichigen.core.custom_fields import CustomFieldRead, fields_by_key
from ichigen.core.db import session_settings
from ichigen.core.errors import BadRequest, FieldError
from ichigen.core.normalise import normalise_email, normalise_phone
from ichigen.core.tabular import (
    BATCH_SIZE,
    MAX_REPORTED_ERRORS,
    ImportPreview,
    ImportReport,
    ReportBuilder,
    cell_text,
    check_header,
    country_code,
    csv_row,
    custom_cell,
    lead_status,
    lifecycle_stage,
    parse_bool,
    preview_import,
    read_table,
    resolve_mapping,
    split_addresses,
    split_list,
    split_name,
)
from ichigen.crm.contacts import service
from ichigen.crm.contacts.models import Contact, ContactEmail, ContactPhone
from ichigen.crm.contacts.schemas import ContactRead

ENTITY = "contacts"
ImportMode = Literal["create", "update", "upsert"]
ContactMatch = Literal["email", "external_id"]
Progress = Callable[[int, int], None]

#: Columns an export writes before the custom fields, in this order.
EXPORT_COLUMNS = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "first_name_reading",
    "last_name_reading",
    "email",
    "other_emails",
    "phone",
    "other_phones",
    "company_name",
    "job_title",
    "street",
    "city",
    "region",
    "postal_code",
    "country",
    "lifecycle_stage",
    "lead_status",
    "source",
    "owner",
    "tags",
    "do_not_email",
    "do_not_call",
    "do_not_sms",
    "created_at",
    "updated_at",
)

_TEXT = {
    "external_id",
    "first_name",
    "last_name",
    "first_name_reading",
    "last_name_reading",
    "company_name",
    "job_title",
    "street",
    "city",
    "region",
    "source",
    "owner",
}
_PHONE_LABELS = {
    "phone": "work",
    "mobile_phone": "mobile",
    "home_phone": "home",
    "fax": "fax",
    "other_phones": "other",
}
_CONVERT: dict[str, Callable[[str], Any]] = {
    "lifecycle_stage": lifecycle_stage,
    "lead_status": lead_status,
    "country": country_code,
    "do_not_email": parse_bool,
    "do_not_call": parse_bool,
    "do_not_sms": parse_bool,
}


@dataclass
class _Row:
    """One file row on its way to a record."""

    number: int
    cells: list[str]
    record: dict[str, Any] = field(default_factory=dict)
    #: Field path ("emails.1", "custom.size", "city") -> the column it came from.
    sources: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    emails: list[tuple[str, int]] = field(default_factory=list)
    phones: list[tuple[str, str, int]] = field(default_factory=list)


class _RowReader:
    """Turns cells into records, per the resolved column mapping."""

    def __init__(
        self,
        headers: list[str],
        mapping: dict[str, str | None],
        custom: dict[str, CustomFieldRead],
        region: str,
    ) -> None:
        self.headers = headers
        self.columns = [
            (i, target) for i, h in enumerate(headers) if (target := mapping.get(h)) is not None
        ]
        self.custom = custom
        self.region = region
        self.width = len(headers)
        #: The column of each mapped field, for errors about a field whose cell was empty.
        self.column_of = {target: i for i, target in reversed(self.columns)}
        phone_columns = [i for i, t in self.columns if t in _PHONE_LABELS]
        for target, index in (
            ("emails", self.column_of.get("email", self.column_of.get("other_emails"))),
            ("phones", phone_columns[0] if phone_columns else None),
            ("owner_id", self.column_of.get("owner")),
            ("company_id", self.column_of.get("company_name")),
        ):
            if index is not None:
                self.column_of.setdefault(target, index)

    def read(self, number: int, cells: list[str]) -> _Row:
        row = _Row(number, cells)
        if len(cells) > self.width:
            row.problems.append(
                (None, f"the row has {len(cells)} cells but the header names {self.width} columns")
            )
            return row
        record = row.record
        full_name = reading = None
        primary_email: tuple[str, int] | None = None
        others: list[tuple[str, int]] = []
        for index, target in self.columns:
            if index >= len(cells):
                continue
            value = cell_text(cells[index])
            if not value:
                continue
            if target in _TEXT:
                record[target] = value
                row.sources[target] = index
            elif target == "email":
                primary_email = (value, index)
            elif target == "other_emails":
                others += [(item, index) for item in split_addresses(value)]
            elif target in _PHONE_LABELS:
                row.phones += [(n, _PHONE_LABELS[target], index) for n in split_addresses(value)]
            elif target == "full_name":
                full_name = (value, index)
            elif target == "full_name_reading":
                reading = (value, index)
            elif target == "postal_code":
                record[target] = value.lstrip("〒 ")
                row.sources[target] = index
            elif target == "tags":
                record["tags"] = split_list(value)
                row.sources["tags"] = index
            elif target.startswith("cf."):
                key = target[3:]
                record.setdefault("custom", {})[key] = custom_cell(self.custom[key], value)
                row.sources[f"custom.{key}"] = index
            else:
                try:
                    record[target] = _CONVERT[target](value)
                    row.sources[target] = index
                except ValueError as exc:
                    row.problems.append((index, str(exc)))
        for source, first_key, last_key in (
            (full_name, "first_name", "last_name"),
            (reading, "first_name_reading", "last_name_reading"),
        ):
            if source is not None and first_key not in record and last_key not in record:
                first, last = split_name(source[0])
                for key, part in ((first_key, first), (last_key, last)):
                    if part:
                        record[key] = part
                        row.sources[key] = source[1]
        if primary_email is not None:
            row.emails.append(primary_email)
        row.emails += others
        country = record.get("country")
        if row.phones and country and country != self.region:
            # A national number is read in the row's own country when it names one.
            row.phones = [(_in_region(n, country), label, i) for n, label, i in row.phones]
        return row


def _in_region(number: str, region: str) -> str:
    try:
        return normalise_phone(number, region)
    except ValueError:
        return number


def _norm_email(raw: str) -> str:
    try:
        return normalise_email(raw)
    except ValueError:
        return raw.strip().lower()


#: An existing contact's (emails, phones) as (address or number, label) pairs, primary first.
_Points = tuple[list[tuple[str, str]], list[tuple[str, str]]]


def _existing_points(
    session: Session, rows: Sequence[_Row], match_on: ContactMatch
) -> dict[int, _Points]:
    """For rows about an existing contact: that contact's emails and phones (set-based)."""
    keys: dict[int, str] = {}
    for i, row in enumerate(rows):
        if match_on == "email" and row.emails:
            keys[i] = _norm_email(row.emails[0][0])
        elif match_on == "external_id" and row.record.get("external_id"):
            keys[i] = str(row.record["external_id"])
    if not keys:
        return {}
    wanted = set(keys.values())
    found: dict[str, int] = {}
    if match_on == "email":
        for email, contact_id in session.execute(
            select(ContactEmail.email, ContactEmail.contact_id).where(
                ContactEmail.email.in_(wanted)
            )
        ):
            found[email] = contact_id
    else:
        for external_id, contact_id in session.execute(
            select(Contact.external_id, Contact.id).where(Contact.external_id.in_(wanted))
        ):
            if external_id is not None:
                found[external_id] = contact_id
    if not found:
        return {}
    ids = set(found.values())
    points: dict[int, _Points] = {i: ([], []) for i in ids}
    for contact_id, email, label in session.execute(
        select(ContactEmail.contact_id, ContactEmail.email, ContactEmail.label)
        .where(ContactEmail.contact_id.in_(ids))
        .order_by(ContactEmail.contact_id, ContactEmail.position)
    ):
        points[contact_id][0].append((email, label))
    for contact_id, number, label in session.execute(
        select(ContactPhone.contact_id, ContactPhone.number, ContactPhone.label)
        .where(ContactPhone.contact_id.in_(ids))
        .order_by(ContactPhone.contact_id, ContactPhone.position)
    ):
        points[contact_id][1].append((number, label))
    return {i: points[found[key]] for i, key in keys.items() if key in found}


def _contact_points(
    row: _Row,
    existing: _Points | None,
    replace_emails: bool,
    replace_phones: bool,
) -> None:
    """Fill the record's ``emails`` and ``phones`` lists (primary first) and their sources."""
    record = row.record
    if row.emails:
        items: list[dict[str, Any]] = []
        for j, (email, index) in enumerate(row.emails):
            items.append({"email": email, "label": "work" if j == 0 else "other"})
            row.sources[f"emails.{j}"] = index
        if existing and not replace_emails:
            named = {_norm_email(e) for e, _ in row.emails}
            items += [
                {"email": email, "label": label}
                for email, label in existing[0]
                if email not in named
            ]
        items[0]["primary"] = True
        record["emails"] = items
        row.sources["emails"] = row.emails[0][1]
    if row.phones:
        phone_items: list[dict[str, Any]] = []
        for j, (number, label, index) in enumerate(row.phones):
            phone_items.append({"number": number, "label": label})
            row.sources[f"phones.{j}"] = index
        if existing and not replace_phones:
            named = {n for n, _, _ in row.phones}
            phone_items += [
                {"number": number, "label": label}
                for number, label in existing[1]
                if number not in named
            ]
        phone_items[0]["primary"] = True
        record["phones"] = phone_items
        row.sources["phones"] = row.phones[0][2]


def _locate(row: _Row, reader: _RowReader, loc: Sequence[Any]) -> tuple[str, str | None]:
    """The column (and its cell) a write error's field path points at."""
    parts = [str(p) for p in loc]
    for end in range(len(parts), 0, -1):
        index = row.sources.get(".".join(parts[:end]))
        if index is not None:
            return reader.headers[index], row.cells[index] if index < len(row.cells) else None
    if not parts:
        return "", None
    target = f"cf.{parts[1]}" if parts[0] == "custom" and len(parts) > 1 else parts[0]
    index = reader.column_of.get(target)
    if index is None:
        return "", None
    return reader.headers[index], row.cells[index] if index < len(row.cells) else None


def import_contacts(
    session: Session,
    data: bytes,
    actor: Actor,
    *,
    mapping: dict[str, str | None] | None = None,
    mode: ImportMode = "upsert",
    match_on: ContactMatch = "email",
    dry_run: bool = False,
    encoding: str | None = None,
    progress: Progress | None = None,
    max_errors: int | None = MAX_REPORTED_ERRORS,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import contacts from CSV bytes; bad rows are reported by row and column, not fatal.

    ``mapping`` maps file columns to fields (``None`` skips a column) over the automatic
    mapping; ``mode`` and ``match_on`` are those of ``write_contacts``. Each batch of rows is
    its own transaction. A file that cannot be read or mapped is a ``BadRequest`` raised
    before anything is written; ``dry_run`` writes nothing and previews the first rows.
    ``progress(rows_done, total_rows)`` is called after each batch.
    """
    require(actor, ENTITY, "write")
    if match_on not in ("email", "external_id"):
        raise BadRequest(
            "Contacts are matched on email or external_id.",
            [FieldError(("match_on",), "must be email or external_id")],
        )
    table = read_table(data, encoding)
    custom = fields_by_key(session, ENTITY)
    resolved = resolve_mapping(table.headers, ENTITY, custom.values(), mapping)
    check_header(table, resolved)
    targets = {t for t in resolved.values() if t}
    if mode != "create" and match_on not in targets:
        raise BadRequest(
            f"To {mode} contacts matched on {match_on}, map a column to {match_on}.",
            [FieldError(("mapping",), f"no column is mapped to {match_on}")],
        )
    reader = _RowReader(
        table.headers, resolved, custom, session_settings(session).default_phone_region
    )
    replace_emails = "other_emails" in targets
    replace_phones = "other_phones" in targets
    merge_points = mode != "create" and (
        ("email" in targets and not replace_emails)
        or (bool(targets & _PHONE_LABELS.keys()) and not replace_phones)
    )
    report = ReportBuilder(ENTITY, table, resolved, dry_run=dry_run, max_errors=max_errors)
    done = 0
    for batch in table.batches(batch_size):
        rows = [reader.read(number, cells) for number, cells in batch]
        good = [r for r in rows if not r.problems]
        existing = _existing_points(session, good, match_on) if merge_points else {}
        for i, row in enumerate(good):
            _contact_points(row, existing.get(i), replace_emails, replace_phones)
        results = (
            service.write_contacts(
                session,
                [r.record for r in good],
                actor,
                mode=mode,
                match_on=match_on,
                dry_run=dry_run,
            )
            if good
            else []
        )
        # Rows that failed to convert are checked too (writing nothing), so that their
        # report lists every problem of the row at once.
        bad = [r for r in rows if r.problems and r.record]
        for row in bad:
            _contact_points(row, None, replace_emails, replace_phones)
        checked = (
            service.write_contacts(
                session,
                [r.record for r in bad],
                actor,
                mode=mode,
                match_on=match_on,
                dry_run=True,
            )
            if bad
            else []
        )
        outcome, more = iter(results), dict(zip((id(r) for r in bad), checked, strict=True))
        for row in rows:
            problems = [
                (
                    table.headers[i] if i is not None else "",
                    row.cells[i] if i is not None else None,
                    reason,
                )
                for i, reason in row.problems
            ]
            result = more.get(id(row)) if row.problems else next(outcome)
            if result is not None and result.status == "error":
                for error in result.errors:
                    loc = [str(part) for part in error.get("loc") or []]  # type: ignore[attr-defined]
                    column, value = _locate(row, reader, loc)
                    reason = str(error.get("msg", "invalid"))
                    if not column and loc:
                        reason = f"{'.'.join(loc)}: {reason}"
                    problems.append((column, value, reason))
            if problems:
                report.fail(row.number, problems)
                report.preview_error(row.number)
            elif result is not None:
                report.succeed(row.number, result.status, result.id, result.changes)
        done += len(rows)
        if progress is not None:
            progress(done, table.row_count)
    return report.report


def preview_contacts_import(
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


def _export_header(custom: list[CustomFieldRead]) -> list[str]:
    return [*EXPORT_COLUMNS, *(f"cf.{f.key}" for f in custom)]


def _export_cells(
    contact: ContactRead, owners: dict[int, str], custom: list[CustomFieldRead]
) -> list[str]:
    values: list[Any] = [
        contact.id,
        contact.external_id,
        contact.first_name,
        contact.last_name,
        contact.first_name_reading,
        contact.last_name_reading,
        contact.emails[0].email if contact.emails else None,
        [e.email for e in contact.emails[1:]],
        contact.phones[0].number if contact.phones else None,
        [p.number for p in contact.phones[1:]],
        contact.company.name if contact.company else None,
        contact.job_title,
        contact.street,
        contact.city,
        contact.region,
        contact.postal_code,
        contact.country,
        contact.lifecycle_stage.value if contact.lifecycle_stage else None,
        contact.lead_status.value if contact.lead_status else None,
        contact.source,
        owners.get(contact.owner_id) if contact.owner_id is not None else None,
        contact.tags,
        contact.do_not_email,
        contact.do_not_call,
        contact.do_not_sms,
        contact.created_at.isoformat(),
        contact.updated_at.isoformat(),
    ]
    values += [contact.custom.get(f.key) for f in custom]
    return csv_row(values)


def contacts_csv(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    q: str | None = None,
    bom: bool = True,
    chunk_rows: int = 500,
    counted: list[int] | None = None,
) -> Iterator[str]:
    """The CSV text of every contact the filters select, in chunks (for streaming).

    Filters are checked before the first chunk, so a bad one raises here, not mid-stream.
    ``counted``, if given, gets the number of contacts written appended when done.
    """
    require(actor, ENTITY, "read")
    custom = list(fields_by_key(session, ENTITY).values())
    contacts = service.iter_contacts(session, actor, filters=filters, q=q)
    first = next(contacts, None)
    return _chunks(session, first, contacts, custom, bom, chunk_rows, counted)


def _chunks(
    session: Session,
    first: ContactRead | None,
    rest: Iterator[ContactRead],
    custom: list[CustomFieldRead],
    bom: bool,
    chunk_rows: int,
    counted: list[int] | None,
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if bom:
        buffer.write("\ufeff")
    writer.writerow(_export_header(custom))
    owners: dict[int, str] = {}
    pending: list[ContactRead] = [first] if first is not None else []
    total = 0

    def flush() -> str:
        wanted = {c.owner_id for c in pending if c.owner_id is not None} - owners.keys()
        owners.update({u.id: u.email for u in auth_service.users_by_id(session, wanted).values()})
        writer.writerows(_export_cells(c, owners, custom) for c in pending)
        pending.clear()
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    for contact in rest:
        pending.append(contact)
        if len(pending) >= chunk_rows:
            total += len(pending)
            yield flush()
    total += len(pending)
    yield flush()
    if counted is not None:
        counted.append(total)


def export_contacts_csv(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    q: str | None = None,
    out: TextIO,
    bom: bool = False,
) -> int:
    """Write the contacts the filters select to ``out`` as CSV; returns how many rows."""
    counted: list[int] = []
    for chunk in contacts_csv(session, actor, filters=filters, q=q, bom=bom, counted=counted):
        out.write(chunk)
    return counted[0]


__all__ = [
    "EXPORT_COLUMNS",
    "contacts_csv",
    "export_contacts_csv",
    "import_contacts",
    "preview_contacts_import",
]
