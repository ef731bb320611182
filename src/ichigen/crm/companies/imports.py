"""CSV import and export of companies, through ``create_company`` and ``update_company``.

Each row is created or updated by the same service functions the API uses, so every rule
applies. A batch of rows runs in one transaction with a savepoint per row: a bad row rolls
back alone, and a dry run rolls the whole import back at the end, so it reports exactly what
the import would do. Rows are matched on ``external_id`` or on ``domain`` (taken from the
website when no domain is given); a ``parent`` column links a parent company by name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TextIO

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require
from ichigen.core.audit import Actor, diff
from ichigen.core.custom_fields import CustomFieldRead, fields_by_key
from ichigen.core.errors import BadRequest, FieldError, IchigenError
from ichigen.core.normalise import normalise_domain
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
    money_amount,
    preview_import,
    read_table,
    resolve_mapping,
    row_savepoints,
    split_list,
    whole_number,
)
from ichigen.core.text import fold
from ichigen.crm.companies import service
from ichigen.crm.companies.models import Company
from ichigen.crm.companies.schemas import CompanyCreate, CompanyRead, CompanyUpdate

ENTITY = "companies"
ImportMode = Literal["create", "update", "upsert"]
CompanyMatch = Literal["external_id", "domain"]
Progress = Callable[[int, int], None]

#: Columns an export writes before the custom fields, in this order.
EXPORT_COLUMNS = (
    "id",
    "external_id",
    "name",
    "domain",
    "website",
    "industry",
    "employees",
    "annual_revenue",
    "revenue_currency",
    "phone",
    "street",
    "city",
    "region",
    "postal_code",
    "country",
    "description",
    "owner",
    "parent",
    "tags",
    "created_at",
    "updated_at",
)
_CONVERT: dict[str, Callable[[str], Any]] = {
    "employees": whole_number,
    "annual_revenue": money_amount,
    "country": country_code,
    "tags": split_list,
    "revenue_currency": str.upper,
    "postal_code": lambda v: v.lstrip("〒 "),
}
_READ_ONLY = {"id", "version", "created_at", "updated_at"}


class _Row:
    """One file row as a record, with the column each field came from."""

    def __init__(self, number: int, cells: list[str]) -> None:
        self.number = number
        self.cells = cells
        self.record: dict[str, Any] = {}
        self.sources: dict[str, int] = {}
        self.problems: list[tuple[int | None, str]] = []
        self.owner: tuple[str, int] | None = None
        self.parent: tuple[str, int] | None = None


def _read_row(
    number: int,
    cells: list[str],
    columns: list[tuple[int, str]],
    width: int,
    custom: dict[str, CustomFieldRead],
) -> _Row:
    row = _Row(number, cells)
    if len(cells) > width:
        row.problems.append(
            (None, f"the row has {len(cells)} cells but the header names {width} columns")
        )
        return row
    for index, target in columns:
        value = cell_text(cells[index]) if index < len(cells) else ""
        if not value:
            continue
        if target == "owner":
            row.owner = (value, index)
        elif target == "parent":
            row.parent = (value, index)
        elif target.startswith("cf."):
            key = target[3:]
            row.record.setdefault("custom", {})[key] = custom_cell(custom[key], value)
            row.sources[f"custom.{key}"] = index
        else:
            try:
                row.record[target] = _CONVERT[target](value) if target in _CONVERT else value
                row.sources[target] = index
            except ValueError as exc:
                row.problems.append((index, str(exc)))
    return row


def _owner_lookup(session: Session) -> dict[str, list[int]]:
    lookup: dict[str, list[int]] = {}
    for user in auth_service.list_users(session):
        lookup.setdefault(user.email, []).append(user.id)
        lookup.setdefault(fold(user.name), []).append(user.id)
    return lookup


def _match_key(record: dict[str, Any], match_on: CompanyMatch) -> str | None:
    if match_on == "external_id":
        return str(record["external_id"]) if record.get("external_id") else None
    raw = record.get("domain") or record.get("website")
    if not raw:
        return None
    try:
        return normalise_domain(str(raw))
    except ValueError:
        return None


def _find(session: Session, match_on: CompanyMatch, key: str) -> list[int]:
    column = Company.external_id if match_on == "external_id" else Company.domain
    return list(session.scalars(select(Company.id).where(column == key).limit(2)))


def _parent_id(session: Session, name: str) -> int | str:
    """The id of the one company with this name, or why there is none."""
    ids = list(
        session.scalars(select(Company.id).where(Company.name_folded == fold(name)).limit(2))
    )
    if not ids:
        return f"no company is named '{name}'"
    if len(ids) > 1:
        return f"several companies are named '{name}'"
    return ids[0]


def _shown(company: CompanyRead) -> dict[str, Any]:
    return company.model_dump(mode="json", exclude=_READ_ONLY)


def _locate(row: _Row, headers: list[str], loc: Sequence[Any]) -> tuple[str, str | None]:
    parts = [str(p) for p in loc]
    for end in range(len(parts), 0, -1):
        index = row.sources.get(".".join(parts[:end]))
        if index is not None:
            return headers[index], row.cells[index] if index < len(row.cells) else None
    return "", None


def import_companies(
    session: Session,
    data: bytes,
    actor: Actor,
    *,
    mapping: dict[str, str | None] | None = None,
    mode: ImportMode = "upsert",
    match_on: CompanyMatch = "external_id",
    dry_run: bool = False,
    encoding: str | None = None,
    progress: Progress | None = None,
    max_errors: int | None = MAX_REPORTED_ERRORS,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import companies from CSV bytes; bad rows are reported by row and column, not fatal.

    Rows are matched on ``external_id`` or ``domain``. A file that cannot be read or mapped is
    a ``BadRequest`` raised before anything is written; ``dry_run`` writes nothing.
    """
    require(actor, ENTITY, "write")
    if match_on not in ("external_id", "domain"):
        raise BadRequest(
            "Companies are matched on external_id or domain.",
            [FieldError(("match_on",), "must be external_id or domain")],
        )
    table = read_table(data, encoding)
    custom = fields_by_key(session, ENTITY)
    resolved = resolve_mapping(table.headers, ENTITY, custom.values(), mapping)
    check_header(table, resolved)
    targets = {t for t in resolved.values() if t}
    keys_from = {match_on} | ({"website"} if match_on == "domain" else set())
    if mode != "create" and not targets & keys_from:
        raise BadRequest(
            f"To {mode} companies matched on {match_on}, map a column to {match_on}.",
            [FieldError(("mapping",), f"no column is mapped to {match_on}")],
        )
    if mode != "update" and "name" not in targets:
        raise BadRequest(
            "To create companies, map a column to name.",
            [FieldError(("mapping",), "no column is mapped to name")],
        )
    columns = [(i, t) for i, h in enumerate(table.headers) if (t := resolved.get(h)) is not None]
    owners = _owner_lookup(session) if "owner" in targets else {}
    report = ReportBuilder(ENTITY, table, resolved, dry_run=dry_run, max_errors=max_errors)
    done = 0
    try:
        for batch in table.batches(batch_size):
            _connection, rows_session = row_savepoints(session)
            try:
                for number, cells in batch:
                    row = _read_row(number, cells, columns, len(table.headers), custom)
                    _import_row(
                        rows_session, row, actor, table.headers, mode, match_on, owners, report
                    )
            finally:
                rows_session.close()
            if not dry_run:
                session.commit()
            done += len(batch)
            if progress is not None:
                progress(done, table.row_count)
    finally:
        if dry_run:
            session.rollback()
    return report.report


def _import_row(
    session: Session,
    row: _Row,
    actor: Actor,
    headers: list[str],
    mode: ImportMode,
    match_on: CompanyMatch,
    owners: dict[str, list[int]],
    report: ReportBuilder,
) -> None:
    def fail(problems: list[tuple[int | None, str]]) -> None:
        report.fail(
            row.number,
            [
                (headers[i] if i is not None else "", row.cells[i] if i is not None else None, r)
                for i, r in problems
            ],
        )
        report.preview_error(row.number)

    if row.problems:
        fail(row.problems)
        return
    record = row.record
    problems: list[tuple[int | None, str]] = []
    if row.owner is not None:
        value, index = row.owner
        matches = owners.get(value.lower()) or owners.get(fold(value)) or []
        if len(matches) == 1:
            record["owner_id"] = matches[0]
            row.sources["owner_id"] = index
        else:
            problems.append((index, "no single user has this email or name"))
    if row.parent is not None:
        value, index = row.parent
        parent = _parent_id(session, value)
        if isinstance(parent, str):
            problems.append((index, parent))
        else:
            record["parent_id"] = parent
            row.sources["parent_id"] = index
    key = _match_key(record, match_on)
    found = _find(session, match_on, key) if key else []
    key_column = row.sources.get(match_on, row.sources.get("website"))
    if len(found) > 1:
        problems.append((key_column, f"several companies have this {match_on}"))
    elif found and mode == "create":
        problems.append((key_column, f"company {found[0]} already has this {match_on}"))
    elif not found and mode == "update":
        problems.append((key_column, "no company matches this row"))
    if problems:
        fail(problems)
        return
    try:
        if not found:
            created = service.create_company(session, CompanyCreate.model_validate(record), actor)
            report.succeed(row.number, "created", created.id, diff({}, _shown(created)))
            return
        before = service.get_company(session, found[0], actor)
        after = service.update_company(
            session, found[0], CompanyUpdate.model_validate(record), actor
        )
        status = "updated" if after.version != before.version else "unchanged"
        report.succeed(row.number, status, after.id, diff(_shown(before), _shown(after)))
    except ValidationError as exc:
        session.rollback()
        report.fail(
            row.number,
            [
                (*_locate(row, headers, e["loc"]), _reason(e["loc"], e["msg"], row, headers))
                for e in exc.errors()
            ],
        )
        report.preview_error(row.number)
    except IchigenError as exc:
        session.rollback()
        errors = exc.errors or [FieldError((), exc.detail)]
        report.fail(
            row.number,
            [(*_locate(row, headers, e.loc), _reason(e.loc, e.msg, row, headers)) for e in errors],
        )
        report.preview_error(row.number)


def _reason(loc: Sequence[Any], msg: str, row: _Row, headers: list[str]) -> str:
    column, _ = _locate(row, headers, loc)
    if column or not loc:
        return msg
    return f"{'.'.join(str(p) for p in loc)}: {msg}"


def preview_companies_import(
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


def _all_companies(
    session: Session, actor: Actor, filters: Sequence[str], q: str | None, page_size: int = 1000
) -> Iterator[CompanyRead]:
    cursor: str | None = None
    while True:
        page = service.list_companies(
            session, actor, filters=filters, q=q, sort="id", cursor=cursor, limit=page_size
        )
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def companies_csv(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    q: str | None = None,
    bom: bool = True,
    chunk_rows: int = 500,
    counted: list[int] | None = None,
) -> Iterator[str]:
    """The CSV text of every company the filters select, in chunks (for streaming).

    Filters are checked before the first chunk, so a bad one raises here, not mid-stream.
    """
    require(actor, ENTITY, "read")
    custom = list(fields_by_key(session, ENTITY).values())
    companies = _all_companies(session, actor, filters, q)
    first = next(companies, None)
    return _chunks(session, first, companies, custom, bom, chunk_rows, counted)


def _chunks(
    session: Session,
    first: CompanyRead | None,
    rest: Iterator[CompanyRead],
    custom: list[CustomFieldRead],
    bom: bool,
    chunk_rows: int,
    counted: list[int] | None,
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if bom:
        buffer.write("\ufeff")
    writer.writerow([*EXPORT_COLUMNS, *(f"cf.{f.key}" for f in custom)])
    owners: dict[int, str] = {}
    parents: dict[int, str] = {}
    pending: list[CompanyRead] = [first] if first is not None else []
    total = 0

    def flush() -> str:
        wanted = {c.owner_id for c in pending if c.owner_id is not None} - owners.keys()
        owners.update({u.id: u.email for u in auth_service.users_by_id(session, wanted).values()})
        parent_ids = {c.parent_id for c in pending if c.parent_id is not None} - parents.keys()
        parents.update(
            {i: ref.name for i, ref in service.company_refs(session, parent_ids).items()}
        )
        for c in pending:
            values: list[Any] = [
                c.id,
                c.external_id,
                c.name,
                c.domain,
                c.website,
                c.industry,
                c.employees,
                c.annual_revenue,
                c.revenue_currency,
                c.phone,
                c.street,
                c.city,
                c.region,
                c.postal_code,
                c.country,
                c.description or None,
                owners.get(c.owner_id) if c.owner_id is not None else None,
                parents.get(c.parent_id) if c.parent_id is not None else None,
                c.tags,
                c.created_at.isoformat(),
                c.updated_at.isoformat(),
            ]
            values += [c.custom.get(f.key) for f in custom]
            writer.writerow(csv_row(values))
        pending.clear()
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    for company in rest:
        pending.append(company)
        if len(pending) >= chunk_rows:
            total += len(pending)
            yield flush()
    total += len(pending)
    yield flush()
    if counted is not None:
        counted.append(total)


def export_companies_csv(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    q: str | None = None,
    out: TextIO,
    bom: bool = False,
) -> int:
    """Write the companies the filters select to ``out`` as CSV; returns how many rows."""
    counted: list[int] = []
    for chunk in companies_csv(session, actor, filters=filters, q=q, bom=bom, counted=counted):
        out.write(chunk)
    return counted[0]


__all__ = [
    "EXPORT_COLUMNS",
    "companies_csv",
    "export_companies_csv",
    "import_companies",
    "preview_companies_import",
]
