"""Companies: create, read, update, delete, list and bulk upsert, with audit and permissions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import BigInteger, ColumnElement, Select, Table, any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require, require_owner_access
from ichigen.core.audit import Actor, AuditEntry, audit_row, diff, record_change
from ichigen.core.bulk import insert_returning_ids
from ichigen.core.clock import utcnow
from ichigen.core.custom_fields import fields_by_key, present_custom_values, validate_custom_values
from ichigen.core.db import session_settings
from ichigen.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.normalise import normalise_domain, normalise_phone
from ichigen.core.query import (
    apply_sort_and_cursor,
    custom_condition,
    decode_cursor,
    encode_cursor,
    field_condition,
    parse_filters,
    parse_sort,
)
from ichigen.core.schemas import BulkResult, Page
from ichigen.core.text import company_key, fold, prefix_upper_bound
from ichigen.crm.companies.models import Company
from ichigen.crm.companies.queries import list_fields
from ichigen.crm.companies.schemas import CompanyCreate, CompanyRead, CompanyRef, CompanyUpdate

ENTITY = "companies"
_AUDITED = (
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
    "owner_id",
    "parent_id",
    "tags",
    "custom",
)


def _snapshot(row: Company) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _AUDITED}


def _read(row: Company, custom_fields: dict[str, Any]) -> CompanyRead:
    values = _snapshot(row)
    values["custom"] = present_custom_values(custom_fields, row.custom or {})
    values["tags"] = list(row.tags or [])
    return CompanyRead(
        id=row.id,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        **values,
    )


def _owner_team(session: Session, owner_id: int | None) -> int | None:
    if owner_id is None:
        return None
    return auth_service.get_user(session, owner_id).team_id


def _normalise(session: Session, fields: dict[str, Any], errors: list[FieldError]) -> None:
    """Normalise the set fields in place, appending a FieldError for each bad value."""
    region = session_settings(session).default_phone_region
    if fields.get("domain"):
        try:
            fields["domain"] = normalise_domain(fields["domain"])
        except ValueError as exc:
            errors.append(FieldError(("domain",), str(exc)))
    if fields.get("website"):
        website = fields["website"].strip()
        if "://" not in website:
            website = "https://" + website
        fields["website"] = website
        if not fields.get("domain") and "domain" not in fields:
            try:
                fields["domain"] = normalise_domain(website)
            except ValueError as exc:
                errors.append(FieldError(("website",), str(exc)))
    if fields.get("phone"):
        try:
            fields["phone"] = normalise_phone(fields["phone"], region)
        except ValueError as exc:
            errors.append(FieldError(("phone",), str(exc)))
    if fields.get("country"):
        fields["country"] = fields["country"].upper()
    if "tags" in fields and fields["tags"] is not None:
        fields["tags"] = sorted(set(fields["tags"]), key=fields["tags"].index)
    if fields.get("owner_id") is not None:
        try:
            owner = auth_service.get_user(session, fields["owner_id"])
            if not owner.is_active:
                errors.append(FieldError(("owner_id",), "the owner is an inactive user"))
        except NotFound:
            errors.append(FieldError(("owner_id",), "no such user"))


def _check_parent(session: Session, company_id: int | None, parent_id: int | None) -> None:
    if parent_id is None:
        return
    seen = {company_id}
    current: int | None = parent_id
    while current is not None:
        if current in seen:
            raise ValidationFailed(
                "A company cannot be its own ancestor.",
                [FieldError(("parent_id",), "would make a cycle")],
            )
        seen.add(current)
        parent = session.get(Company, current)
        if parent is None:
            raise ValidationFailed(
                f"Parent company {current} does not exist.",
                [FieldError(("parent_id",), "no such company")],
            )
        current = parent.parent_id


def _check_external_id(session: Session, external_id: str | None, own_id: int | None) -> None:
    if external_id is None:
        return
    other = session.scalar(select(Company.id).where(Company.external_id == external_id))
    if other is not None and other != own_id:
        raise Conflict(
            f"Company {other} already has external id {external_id!r}.",
            [FieldError(("external_id",), "already in use")],
        )


def create_company(session: Session, data: CompanyCreate, actor: Actor) -> CompanyRead:
    """Create a company; the domain is derived from the website when not given."""
    require(actor, ENTITY, "write")
    fields = data.model_dump(exclude_unset=True)
    errors: list[FieldError] = []
    _normalise(session, fields, errors)
    custom_defs = fields_by_key(session, ENTITY)
    custom, custom_errors = validate_custom_values(
        custom_defs,
        fields.pop("custom", None),
        None,
        session_settings(session).default_phone_region,
        creating=True,
    )
    errors += custom_errors
    if errors:
        raise ValidationFailed("The company has invalid fields.", errors)
    _check_parent(session, None, fields.get("parent_id"))
    _check_external_id(session, fields.get("external_id"), None)
    now = utcnow()
    row = Company(
        **{k: v for k, v in fields.items() if k != "name"},
        name=data.name,
        name_folded=fold(data.name),
        name_key=company_key(data.name),
        custom=custom,
        version=1,
        created_at=now,
        updated_at=now,
    )
    row.tags = fields.get("tags") or []
    row.description = fields.get("description") or ""
    session.add(row)
    session.flush()
    record_change(session, actor, ENTITY, row.id, "create", diff({}, _snapshot(row)))
    session.commit()
    return _read(row, custom_defs)


def _get_row(session: Session, company_id: int) -> Company:
    row = session.get(Company, company_id)
    if row is None:
        raise NotFound(f"Company {company_id} does not exist.")
    return row


def get_company(session: Session, company_id: int, actor: Actor) -> CompanyRead:
    require(actor, ENTITY, "read")
    return _read(_get_row(session, company_id), fields_by_key(session, ENTITY))


def update_company(
    session: Session,
    company_id: int,
    data: CompanyUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> CompanyRead:
    """Change the fields that are set; ``If-Match`` versions guard against lost updates."""
    row = _get_row(session, company_id)
    require_owner_access(actor, ENTITY, row.owner_id, _owner_team(session, row.owner_id))
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"Company {company_id} was changed by someone else (now version {row.version}); "
            "reload it and try again."
        )
    fields = data.model_dump(exclude_unset=True)
    errors: list[FieldError] = []
    if "name" in fields and fields["name"] is None:
        errors.append(FieldError(("name",), "cannot be empty"))
    _normalise(session, fields, errors)
    custom_defs = fields_by_key(session, ENTITY)
    incoming_custom = fields.pop("custom", None)
    custom, custom_errors = validate_custom_values(
        custom_defs,
        incoming_custom,
        row.custom,
        session_settings(session).default_phone_region,
        creating=False,
    )
    errors += custom_errors
    if errors:
        raise ValidationFailed("The company has invalid fields.", errors)
    if "parent_id" in fields:
        _check_parent(session, row.id, fields["parent_id"])
    if "external_id" in fields:
        _check_external_id(session, fields["external_id"], row.id)
    before = _snapshot(row)
    for name, value in fields.items():
        if name == "tags":
            value = value or []
        if name == "description":
            value = value or ""
        setattr(row, name, value)
    if "name" in fields:
        row.name_folded = fold(row.name)
        row.name_key = company_key(row.name)
    if incoming_custom is not None:
        row.custom = custom
    delta = diff(before, _snapshot(row))
    if delta:
        row.version += 1
        row.updated_at = utcnow()
        record_change(session, actor, ENTITY, row.id, "update", delta)
    session.commit()
    return _read(row, custom_defs)


def delete_company(
    session: Session, company_id: int, actor: Actor, *, if_version: int | None = None
) -> None:
    """Delete a company; its contacts stay, no longer linked to it."""
    row = _get_row(session, company_id)
    require_owner_access(actor, ENTITY, row.owner_id, _owner_team(session, row.owner_id))
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(f"Company {company_id} was changed by someone else; reload it.")
    record_change(session, actor, ENTITY, row.id, "delete", diff(_snapshot(row), {}))
    session.delete(row)
    session.commit()


def list_companies(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    q: str | None = None,
) -> Page[CompanyRead]:
    """A page of companies, filtered, searched by name or domain prefix, sorted, cursor-paged."""
    require(actor, ENTITY, "read")
    settings = session_settings(session)
    dialect = session.get_bind().dialect.name
    custom_defs = fields_by_key(session, ENTITY)
    fields = list_fields(custom_defs, dialect)
    stmt: Select[Any] = select(Company)
    for index, flt in enumerate(parse_filters(filters)):
        loc: tuple[str | int, ...] = ("query", "filter", index)
        if flt.field.startswith("cf.") and flt.field[3:] in custom_defs:
            stmt = stmt.where(
                custom_condition(
                    ENTITY,
                    custom_defs[flt.field[3:]],
                    dialect,
                    flt.op,
                    flt.value,
                    loc,
                    settings.default_phone_region,
                )
            )
        elif flt.field in fields:
            stmt = stmt.where(field_condition(flt.field, fields[flt.field], flt.op, flt.value, loc))
        else:
            raise BadRequest(
                f"Cannot filter on unknown field '{flt.field}'.", [FieldError(loc, "unknown field")]
            )
    if q and q.strip():
        stmt = stmt.where(_search_condition(q))
    order = parse_sort(sort, fields, "-id")
    after = decode_cursor(settings.secret_key, order, cursor) if cursor else None
    stmt = apply_sort_and_cursor(stmt, order, Company.id, after).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value = session.scalar(select(order.spec.expr).where(Company.id == last.id))
        next_cursor = encode_cursor(settings.secret_key, order, value, last.id)
    return Page[CompanyRead](items=[_read(r, custom_defs) for r in rows], next_cursor=next_cursor)


def _search_condition(q: str) -> ColumnElement[bool]:
    folded, key = fold(q), company_key(q)
    by_name = (Company.name_folded >= folded) & (Company.name_folded < prefix_upper_bound(folded))
    by_key = (Company.name_key >= key) & (Company.name_key < prefix_upper_bound(key))
    domain = folded.removeprefix("www.")
    by_domain = (Company.domain >= domain) & (Company.domain < prefix_upper_bound(domain))
    return by_name | by_key | by_domain


def company_ids_matching(session: Session, q: str, limit: int = 200) -> list[int]:
    """Ids of companies whose name or domain starts with ``q`` (for contact quick search)."""
    return list(session.scalars(select(Company.id).where(_search_condition(q)).limit(limit)))


def company_refs(session: Session, ids: Iterable[int]) -> dict[int, CompanyRef]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(_REFS, {"ids": list(wanted)})
    return {r.id: CompanyRef(id=r.id, name=r.name, domain=r.domain) for r in rows}


#: Built once: contact lists ask for their companies' names on every page.
_REFS = select(Company.id, Company.name, Company.domain).where(
    Company.id.in_(bindparam("ids", expanding=True))
)


def company_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Company names by id, for pages that show many records at once (a deal board)."""
    wanted = list({i for i in ids if i is not None})
    if not wanted:
        return {}
    # PostgreSQL gets one array parameter: a long IN list is new text for the driver to parse
    # on every call (hundreds of ids cost milliseconds).
    stmt = _NAMES_ANY if session.get_bind().dialect.name == "postgresql" else _NAMES_IN
    return {company_id: name for company_id, name in session.execute(stmt, {"ids": wanted})}


_NAMES_IN = select(Company.id, Company.name).where(Company.id.in_(bindparam("ids", expanding=True)))
_NAMES_ANY = select(Company.id, Company.name).where(
    Company.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
)


def existing_company_ids(session: Session, ids: Iterable[int]) -> set[int]:
    wanted = set(ids)
    if not wanted:
        return set()
    return set(session.scalars(select(Company.id).where(Company.id.in_(wanted))))


def company_ids_by_domain(session: Session, domains: Iterable[str]) -> dict[str, int]:
    """For each domain owned by exactly one company, that company's id."""
    wanted = set(domains)
    if not wanted:
        return {}
    found: dict[str, list[int]] = {}
    for domain, company_id in session.execute(
        select(Company.domain, Company.id).where(Company.domain.in_(wanted))
    ):
        if domain is not None:
            found.setdefault(domain, []).append(company_id)
    return {d: ids[0] for d, ids in found.items() if len(ids) == 1}


def company_ids_named(session: Session, text: str) -> list[int]:
    """The companies a person means by a domain (``acme.example``, a web address) or else by
    a name (compared case- and width-insensitively), oldest first."""
    value = text.strip()
    if "." in value and " " not in value and "@" not in value:
        try:
            domain = normalise_domain(value)
        except ValueError:
            domain = ""
        if domain:
            by_domain = list(
                session.scalars(
                    select(Company.id).where(Company.domain == domain).order_by(Company.id).limit(5)
                )
            )
            if by_domain:
                return by_domain
    folded = fold(value[:300])
    if not folded:
        return []
    return list(
        session.scalars(
            select(Company.id).where(Company.name_folded == folded).order_by(Company.id).limit(5)
        )
    )


def ensure_companies_by_name(
    session: Session, names: Iterable[str], actor: Actor
) -> dict[str, int]:
    """Ids for company names (matched case- and width-insensitively), creating missing ones.

    Set-based (one lookup, one insert, one audit insert), as imports call it per batch.
    """
    stripped = {n.strip() for n in names if n and n.strip()}
    keys = {name: fold(name[:300]) for name in stripped}
    if not keys:
        return {}
    found: dict[str, int] = {}
    for folded, company_id in session.execute(
        select(Company.name_folded, Company.id)
        .where(Company.name_folded.in_(set(keys.values())))
        .order_by(Company.id)
    ):
        found.setdefault(folded, company_id)
    missing: dict[str, str] = {}
    for name, key in sorted(keys.items()):
        if key not in found:
            missing.setdefault(key, name[:300])
    if missing:
        require(actor, ENTITY, "write")
        now = utcnow()
        rows = [
            {
                "name": name,
                "name_folded": key,
                "name_key": company_key(name),
                "tags": [],
                "custom": {},
                "description": "",
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            for key, name in missing.items()
        ]
        table = Company.__table__
        assert isinstance(table, Table)
        ids = insert_returning_ids(session, table, rows)
        session.execute(
            insert(AuditEntry),
            [
                audit_row(actor, ENTITY, company_id, "create", {"name": [None, row["name"]]})
                for company_id, row in zip(ids, rows, strict=True)
            ],
        )
        found.update(zip(missing, ids, strict=True))
    return {name: found[key] for name, key in keys.items()}


def bulk_upsert_companies(
    session: Session, records: Sequence[dict[str, Any]], match_on: str, actor: Actor
) -> list[BulkResult]:
    """Create or update up to the configured number of companies, matched on ``external_id``
    or ``domain``; each record succeeds or fails on its own."""
    require(actor, ENTITY, "write")
    limit = session_settings(session).max_bulk_records
    if len(records) > limit:
        raise BadRequest(
            f"At most {limit} records per call.", [FieldError(("body", "records"), "too many")]
        )
    if match_on not in ("external_id", "domain"):
        raise BadRequest(
            "match_on must be external_id or domain.",
            [FieldError(("query", "match_on"), "invalid")],
        )
    results: list[BulkResult] = []
    for index, record in enumerate(records):
        try:
            key = record.get(match_on)
            if not isinstance(key, str):
                # Not a usable key (the schema check below reports a wrong type).
                key = None
            elif match_on == "domain" and key:
                key = normalise_domain(key)
            existing = (
                session.scalar(select(Company.id).where(getattr(Company, match_on) == key).limit(1))
                if key
                else None
            )
            if existing is None:
                created = create_company(session, CompanyCreate.model_validate(record), actor)
                results.append(BulkResult(index=index, status="created", id=created.id))
            else:
                before = _get_row(session, existing).version
                updated = update_company(
                    session, existing, CompanyUpdate.model_validate(record), actor
                )
                status = "updated" if updated.version != before else "unchanged"
                results.append(BulkResult(index=index, status=status, id=existing))
        except ValidationError as exc:
            session.rollback()
            results.append(
                BulkResult(
                    index=index,
                    status="error",
                    errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
                )
            )
        except (ValidationFailed, Conflict, NotFound, ValueError) as exc:
            session.rollback()
            errs = getattr(exc, "errors", None) or [FieldError((), str(exc))]
            results.append(
                BulkResult(index=index, status="error", errors=[e.as_dict() for e in errs])
            )
    return results


def company_for_display(session: Session, company_id: int) -> CompanyRef | None:
    return company_refs(session, [company_id]).get(company_id)
