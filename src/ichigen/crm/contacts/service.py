"""Contacts: the rules for every read and write, with audit, permissions and quick search.

All writes — one contact from the UI, a bulk API call, a CSV import — go through
``write_contacts``, which validates a batch, resolves references with a few set-based
queries, and writes rows, child rows, search terms and audit entries in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import Row, Select, Table, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import OWNERSHIP_BOUND, Role, require
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor, AuditEntry, audit_row, diff
from ichigen.core.bulk import insert_plain_rows, insert_returning_ids
from ichigen.core.clock import utcnow
from ichigen.core.custom_fields import (
    CustomFieldRead,
    fields_by_key,
    present_custom_values,
    validate_custom_values,
)
from ichigen.core.db import session_settings
from ichigen.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    IchigenError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.normalise import email_domain, national_digits, normalise_email, normalise_phone
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
from ichigen.core.text import fold, fold_compact, has_cjk
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts.models import Contact, ContactEmail, ContactPhone, ContactSearchTerm
from ichigen.crm.contacts.queries import list_fields, quick_search
from ichigen.crm.contacts.schemas import (
    ContactCreate,
    ContactFields,
    ContactRead,
    ContactUpdate,
    EmailOut,
    PhoneOut,
)

ENTITY = "contacts"
Mode = Literal["create", "update", "upsert"]
MatchOn = Literal["email", "external_id", "id"]

#: Plain columns a caller sets directly.
COLUMNS = (
    "external_id",
    "first_name",
    "last_name",
    "first_name_reading",
    "last_name_reading",
    "company_id",
    "job_title",
    "street",
    "city",
    "region",
    "postal_code",
    "country",
    "lifecycle_stage",
    "lead_status",
    "source",
    "owner_id",
    "tags",
    "do_not_email",
    "do_not_call",
    "do_not_sms",
)
_DEFAULTS: dict[str, Any] = {
    "tags": [],
    "do_not_email": False,
    "do_not_call": False,
    "do_not_sms": False,
}
_NAME_COLUMNS = ("first_name", "last_name", "first_name_reading", "last_name_reading")


def full_name(first: str | None, last: str | None) -> str:
    """Japanese names read family name first; others given name first."""
    first, last = first or "", last or ""
    if has_cjk(first + last):
        return f"{last} {first}".strip()
    return f"{first} {last}".strip()


def search_terms(
    values: dict[str, Any], emails: list[EmailOut], phones: list[PhoneOut]
) -> set[str]:
    """The folded tokens quick search finds a contact by."""
    terms: set[str] = set()
    first, last = values.get("first_name") or "", values.get("last_name") or ""
    first_r, last_r = values.get("first_name_reading") or "", values.get("last_name_reading") or ""
    # Search matches terms by prefix, so "last" alone would add nothing to "last+first": the
    # longer terms alone keep the index smaller and find a family name once per contact.
    for text in (last + first, first + last, first_r, last_r + first_r):
        if text:
            terms.add(fold_compact(text))
    if values.get("external_id"):
        terms.add(fold_compact(values["external_id"]))
    for item in emails:
        terms.add(item.email)
        terms.add(item.email.rpartition("@")[2])
    for phone in phones:
        terms.add(phone.number.lstrip("+"))
        terms.add(national_digits(phone.number))
    terms.discard("")
    return {t[:320] for t in terms}


@dataclass
class _Prepared:
    """One record of a batch on its way through validation and resolution."""

    index: int
    fields: dict[str, Any] = field(default_factory=dict)
    emails: list[EmailOut] | None = None
    phones: list[PhoneOut] | None = None
    custom_in: dict[str, Any] | None = None
    company_name: str | None = None
    owner_ref: str | None = None
    errors: list[FieldError] = field(default_factory=list)
    target_id: int | None = None
    status: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)

    @property
    def match_email(self) -> str | None:
        if self.emails:
            return next((e.email for e in self.emails if e.primary), self.emails[0].email)
        return None


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    return [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]


def _merge_primary(items: list[Any], shorthand: Any | None, key: str) -> list[Any]:
    """Put the shorthand value first as primary; keep the others, without repeats."""
    if shorthand is None:
        return items
    rest = [i for i in items if getattr(i, key) != getattr(shorthand, key)]
    for item in rest:
        item.primary = False
    return [shorthand, *rest]


def _prepare(
    index: int, record: dict[str, Any], model: type[ContactFields], region: str
) -> _Prepared:
    prepared = _Prepared(index=index)
    try:
        data = model.model_validate(record)
    except ValidationError as exc:
        prepared.errors = _pydantic_errors(exc)
        return prepared
    values = data.model_dump(exclude_unset=True)
    for name in COLUMNS:
        if name in values:
            value = values[name]
            if isinstance(value, str):
                value = value.strip() or None
            prepared.fields[name] = value if value is not None else _DEFAULTS.get(name)
    if prepared.fields.get("country"):
        prepared.fields["country"] = prepared.fields["country"].upper()
    if prepared.fields.get("tags"):
        tags = prepared.fields["tags"]
        prepared.fields["tags"] = sorted(set(tags), key=tags.index)
    prepared.custom_in = values.get("custom")
    prepared.company_name = (data.company_name or "").strip() or None
    prepared.owner_ref = (data.owner or "").strip() or None

    if data.emails is not None or data.email:
        emails: list[EmailOut] = []
        for j, item in enumerate(data.emails or []):
            try:
                emails.append(
                    EmailOut(
                        email=normalise_email(item.email), label=item.label, primary=item.primary
                    )
                )
            except ValueError as exc:
                prepared.errors.append(FieldError(("emails", j, "email"), str(exc)))
        shorthand = None
        if data.email and data.email.strip():
            try:
                shorthand = EmailOut(email=normalise_email(data.email), label="work", primary=True)
            except ValueError as exc:
                prepared.errors.append(FieldError(("email",), str(exc)))
        prepared.emails = _dedupe(_merge_primary(emails, shorthand, "email"), "email", prepared)
    if data.phones is not None or data.phone:
        phones: list[PhoneOut] = []
        for j, phone_in in enumerate(data.phones or []):
            try:
                phones.append(
                    PhoneOut(
                        number=normalise_phone(phone_in.number, region),
                        label=phone_in.label,
                        primary=phone_in.primary,
                    )
                )
            except ValueError as exc:
                prepared.errors.append(FieldError(("phones", j, "number"), str(exc)))
        short_phone = None
        if data.phone and data.phone.strip():
            try:
                short_phone = PhoneOut(
                    number=normalise_phone(data.phone, region), label="mobile", primary=True
                )
            except ValueError as exc:
                prepared.errors.append(FieldError(("phone",), str(exc)))
        prepared.phones = _dedupe(_merge_primary(phones, short_phone, "number"), "number", prepared)
    return prepared


def _dedupe(items: list[Any], key: str, prepared: _Prepared) -> list[Any]:
    seen: set[str] = set()
    unique = []
    for item in items:
        if getattr(item, key) not in seen:
            seen.add(getattr(item, key))
            unique.append(item)
    primaries = [i for i in unique if i.primary]
    if len(primaries) > 1:
        prepared.errors.append(
            FieldError((f"{key}s" if key == "email" else "phones",), "only one may be primary")
        )
    elif unique and not primaries:
        unique[0].primary = True
    unique.sort(key=lambda i: not i.primary)
    return unique


def _snapshot(
    row: Contact | dict[str, Any], emails: list[EmailOut], phones: list[PhoneOut]
) -> dict[str, Any]:
    get = (
        row.get
        if isinstance(row, dict)
        else (lambda name, default=None: getattr(row, name, default))
    )
    snap = {name: get(name, _DEFAULTS.get(name)) for name in COLUMNS}
    snap["custom"] = get("custom", {}) or {}
    snap["emails"] = [e.email for e in emails]
    snap["phones"] = [p.number for p in phones]
    return snap


def _owner_lookup(users: list[UserRead]) -> dict[str, list[int]]:
    lookup: dict[str, list[int]] = {}
    for user in users:
        lookup.setdefault(user.email, []).append(user.id)
        lookup.setdefault(fold(user.name), []).append(user.id)
    return lookup


def write_contacts(
    session: Session,
    records: Sequence[dict[str, Any]],
    actor: Actor,
    *,
    mode: Mode = "upsert",
    match_on: MatchOn = "email",
    dry_run: bool = False,
    target_id: int | None = None,
    if_version: int | None = None,
    commit: bool = True,
) -> list[BulkResult]:
    """Create or update contacts; each record succeeds or fails alone, with field paths.

    ``match_on`` finds the existing contact a record is about (by primary email or external
    id, or ``id`` with ``target_id`` for a single PATCH). ``dry_run`` reports what would
    change and writes nothing.
    """
    require(actor, ENTITY, "write")
    settings = session_settings(session)
    region = settings.default_phone_region
    model: type[ContactFields] = ContactUpdate if mode == "update" else ContactCreate
    batch = [_prepare(i, r, model, region) for i, r in enumerate(records)]
    custom_defs = fields_by_key(session, ENTITY)

    # Which existing contact each record is about.
    live = [p for p in batch if not p.errors]
    if match_on == "id":
        for p in live:
            p.target_id = target_id
    elif match_on == "email":
        keys = {p.match_email for p in live if p.match_email}
        found = (
            dict(
                session.execute(
                    select(ContactEmail.email, ContactEmail.contact_id).where(
                        ContactEmail.email.in_(keys)
                    )
                ).all()
            )
            if keys
            else {}
        )
        for p in live:
            p.target_id = found.get(p.match_email) if p.match_email else None
    else:
        keys = {str(p.fields["external_id"]) for p in live if p.fields.get("external_id")}
        found_ext: dict[str | None, int] = (
            dict(
                session.execute(
                    select(Contact.external_id, Contact.id).where(Contact.external_id.in_(keys))
                ).all()
            )
            if keys
            else {}
        )
        for p in live:
            key = p.fields.get("external_id")
            p.target_id = found_ext.get(key) if key else None
            if mode != "create" and key is None:
                p.errors.append(FieldError(("external_id",), "is needed to match records"))

    existing_rows: dict[int, Contact] = {}
    target_ids = {p.target_id for p in live if p.target_id is not None}
    if target_ids:
        existing_rows = {
            r.id: r for r in session.scalars(select(Contact).where(Contact.id.in_(target_ids)))
        }
    existing_emails, existing_phones = _children(session, set(existing_rows))

    # References checked once for the batch.
    company_ids = {p.fields["company_id"] for p in live if p.fields.get("company_id") is not None}
    known_companies = companies.existing_company_ids(session, company_ids)
    owner_ids = {p.fields["owner_id"] for p in live if p.fields.get("owner_id") is not None}
    owner_ids |= {r.owner_id for r in existing_rows.values() if r.owner_id is not None}
    owners = auth_service.users_by_id(session, owner_ids)
    lookup = (
        _owner_lookup(auth_service.list_users(session)) if any(p.owner_ref for p in live) else {}
    )

    # Email addresses must stay unique across contacts and within the batch.
    new_emails = {e.email for p in live if p.emails for e in p.emails}
    holders = (
        dict(
            session.execute(
                select(ContactEmail.email, ContactEmail.contact_id).where(
                    ContactEmail.email.in_(new_emails)
                )
            ).all()
        )
        if new_emails
        else {}
    )
    claimed: dict[str, int] = {}

    for p in batch:
        if p.errors:
            continue
        row = existing_rows.get(p.target_id) if p.target_id is not None else None
        if match_on == "id" and row is None:
            raise NotFound(f"Contact {target_id} does not exist.")
        if row is None and mode == "update":
            p.errors.append(FieldError((match_on,), "no contact matches this record"))
            continue
        if row is not None and mode == "create":
            p.errors.append(
                FieldError((match_on,), f"contact {row.id} already has this {match_on}")
            )
            continue
        if row is not None and if_version is not None and row.version != if_version:
            raise PreconditionFailed(
                f"Contact {row.id} was changed by someone else (now version {row.version}); "
                "reload it and try again."
            )
        if row is not None:
            try:
                _check_owner(actor, row.owner_id, owners)
            except PermissionDenied as exc:
                if match_on == "id":
                    raise
                # In a batch (bulk API, CSV import) such a record fails alone, like any other.
                p.errors.append(FieldError((match_on,), str(exc), "forbidden"))
                continue
        before_emails = existing_emails.get(row.id, []) if row else []
        before_phones = existing_phones.get(row.id, []) if row else []
        before = _snapshot(row, before_emails, before_phones) if row else {}
        after = dict(before) if row else _snapshot({}, [], [])
        after.update(p.fields)
        if p.emails is not None:
            after["emails"] = [e.email for e in p.emails]
        if p.phones is not None:
            after["phones"] = [ph.number for ph in p.phones]
        custom, custom_errors = validate_custom_values(
            custom_defs, p.custom_in, row.custom if row else None, region, creating=row is None
        )
        p.errors += custom_errors
        after["custom"] = custom
        if p.owner_ref:
            matches = lookup.get(p.owner_ref.lower()) or lookup.get(fold(p.owner_ref)) or []
            if len(matches) == 1:
                after["owner_id"] = matches[0]
                owners.update(
                    auth_service.users_by_id(session, {matches[0]})
                    if matches[0] not in owners
                    else {}
                )
            else:
                p.errors.append(FieldError(("owner",), "no single user has this email or name"))
        if after.get("owner_id") is not None and after["owner_id"] != (
            row.owner_id if row else None
        ):
            owner = owners.get(after["owner_id"])
            if owner is None:
                p.errors.append(FieldError(("owner_id",), "no such user"))
            elif not owner.is_active:
                p.errors.append(FieldError(("owner_id",), "the owner is an inactive user"))
        if p.fields.get("company_id") is not None and p.fields["company_id"] not in known_companies:
            p.errors.append(FieldError(("company_id",), "no such company"))
        if not (after.get("first_name") or after.get("last_name") or after["emails"]):
            p.errors.append(FieldError(("last_name",), "a contact needs a name or an email"))
        for j, email in enumerate(after["emails"] if p.emails is not None else []):
            holder = holders.get(email)
            if holder is not None and holder != (row.id if row else None):
                p.errors.append(FieldError(("emails", j), f"{email} belongs to contact {holder}"))
            elif claimed.get(email, p.index) != p.index:
                p.errors.append(FieldError(("emails", j), f"{email} appears earlier in this batch"))
            else:
                claimed[email] = p.index
        if p.errors:
            continue
        p.before, p.after = before, after
        p.changes = diff(before, after)
        p.status = "created" if row is None else ("updated" if p.changes else "unchanged")

    ok = [p for p in batch if not p.errors]
    if not dry_run and ok:
        _resolve_companies(session, ok, actor, settings.auto_associate_company)
        _write(session, ok, existing_rows, existing_emails, existing_phones, actor)
        if commit:
            session.commit()
    return [
        BulkResult(
            index=p.index,
            status=p.status,
            id=p.target_id,
            changes=p.changes if dry_run else None,
        )
        if not p.errors
        else BulkResult(index=p.index, status="error", errors=[e.as_dict() for e in p.errors])
        for p in batch
    ]


def _check_owner(actor: Actor, owner_id: int | None, owners: dict[int, UserRead]) -> None:
    if Role(actor.role) not in OWNERSHIP_BOUND or owner_id is None or owner_id == actor.user_id:
        return
    owner = owners.get(owner_id)
    if actor.team_id is not None and owner is not None and owner.team_id == actor.team_id:
        return
    raise PermissionDenied(
        f"This contact belongs to another owner; a {actor.role} user may change only "
        "their own or their team's contacts."
    )


def _children(
    session: Session, ids: set[int]
) -> tuple[dict[int, list[EmailOut]], dict[int, list[PhoneOut]]]:
    emails: dict[int, list[EmailOut]] = {}
    phones: dict[int, list[PhoneOut]] = {}
    if not ids:
        return emails, phones
    # Plain rows from prebuilt statements: every list page and every read comes through here.
    for contact_id, email, label, primary in session.execute(_EMAILS_OF, {"ids": list(ids)}).all():
        emails.setdefault(contact_id, []).append(
            EmailOut(email=email, label=label, primary=primary)
        )
    for contact_id, number, label, primary in session.execute(_PHONES_OF, {"ids": list(ids)}).all():
        phones.setdefault(contact_id, []).append(
            PhoneOut(number=number, label=label, primary=primary)
        )
    return emails, phones


def _resolve_companies(session: Session, batch: list[_Prepared], actor: Actor, auto: bool) -> None:
    """Link by company name (creating it), or by the primary email's domain when unlinked."""
    named = {p.company_name for p in batch if p.company_name}
    by_name = companies.ensure_companies_by_name(session, named, actor) if named else {}
    domains: dict[int, str] = {}
    for p in batch:
        if p.company_name:
            p.after["company_id"] = by_name[p.company_name]
        elif (
            auto
            and p.status == "created"
            and p.after.get("company_id") is None
            and p.after["emails"]
        ):
            domain = email_domain(p.after["emails"][0])
            if domain:
                domains[p.index] = domain
    by_domain = companies.company_ids_by_domain(session, set(domains.values()))
    for p in batch:
        if p.index in domains and domains[p.index] in by_domain:
            p.after["company_id"] = by_domain[domains[p.index]]
        if p.company_name or p.index in domains:
            # Only company_id can have changed since the full diff: re-diff just that field.
            p.changes.pop("company_id", None)
            p.changes.update(
                diff(
                    {"company_id": p.before.get("company_id")},
                    {"company_id": p.after.get("company_id")},
                )
            )
            if p.status == "unchanged" and p.changes:
                p.status = "updated"


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_CONTACTS = _table(Contact)
_EMAILS = _table(ContactEmail)
_PHONES = _table(ContactPhone)

# Reads built once: on these hot paths building a statement costs more than running it.
_CONTACT_BY_ID = select(*_CONTACTS.c).where(_CONTACTS.c.id == bindparam("contact_id"))
_EMAILS_OF = (
    select(_EMAILS.c.contact_id, _EMAILS.c.email, _EMAILS.c.label, _EMAILS.c.is_primary)
    .where(_EMAILS.c.contact_id.in_(bindparam("ids", expanding=True)))
    .order_by(_EMAILS.c.contact_id, _EMAILS.c.position)
)
_PHONES_OF = (
    select(_PHONES.c.contact_id, _PHONES.c.number, _PHONES.c.label, _PHONES.c.is_primary)
    .where(_PHONES.c.contact_id.in_(bindparam("ids", expanding=True)))
    .order_by(_PHONES.c.contact_id, _PHONES.c.position)
)


_CHILD_COLUMNS = {
    key: ("contact_id", key, "label", "is_primary", "position") for key in ("email", "number")
}


def _row_values(after: dict[str, Any]) -> dict[str, Any]:
    values = {name: after.get(name, _DEFAULTS.get(name)) for name in COLUMNS}
    values["custom"] = after.get("custom") or {}
    values["full_name"] = full_name(after.get("first_name"), after.get("last_name")) or (
        after["emails"][0] if after["emails"] else ""
    )
    values["name_folded"] = fold(str(values["full_name"]))[:401]
    values["primary_email"] = after["emails"][0] if after["emails"] else None
    values["primary_phone"] = after["phones"][0] if after["phones"] else None
    return values


def _write(
    session: Session,
    batch: list[_Prepared],
    existing_rows: dict[int, Contact],
    existing_emails: dict[int, list[EmailOut]],
    existing_phones: dict[int, list[PhoneOut]],
    actor: Actor,
) -> None:
    now = utcnow()
    creates = [p for p in batch if p.status == "created"]
    updates = [p for p in batch if p.status == "updated"]
    email_rows: list[tuple[int, str, str, bool, int]] = []
    phone_rows: list[tuple[int, str, str, bool, int]] = []
    term_rows: list[tuple[int, str]] = []
    audits: list[dict[str, Any]] = []
    if creates:
        rows = []
        for p in creates:
            values = _row_values(p.after)
            values.update(version=1, created_at=now, updated_at=now)
            rows.append(values)
        ids = insert_returning_ids(session, _CONTACTS, rows)
        for p, new_id in zip(creates, ids, strict=True):
            p.target_id = new_id
    rewritten: set[int] = set()
    for p in updates:
        row = existing_rows[p.target_id] if p.target_id is not None else None
        assert row is not None
        values = _row_values(p.after)
        for name, value in values.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
        row.version += 1
        row.updated_at = now
        if {"emails", "phones", "external_id", *_NAME_COLUMNS} & set(p.changes):
            rewritten.add(row.id)
    if rewritten:
        for table in (ContactEmail, ContactPhone, ContactSearchTerm):
            session.execute(delete(table).where(table.contact_id.in_(rewritten)))
        session.flush()
    for p in batch:
        if p.status not in ("created", "updated"):
            continue
        contact_id = p.target_id
        assert contact_id is not None
        if p.status == "created" or contact_id in rewritten:
            emails = p.emails if p.emails is not None else existing_emails.get(contact_id, [])
            phones = p.phones if p.phones is not None else existing_phones.get(contact_id, [])
            email_rows += [
                (contact_id, e.email, e.label, e.primary, k) for k, e in enumerate(emails)
            ]
            phone_rows += [
                (contact_id, ph.number, ph.label, ph.primary, k) for k, ph in enumerate(phones)
            ]
            term_rows += [(contact_id, t) for t in search_terms(p.after, emails, phones)]
        audits.append(
            audit_row(
                actor,
                ENTITY,
                contact_id,
                "create" if p.status == "created" else "update",
                p.changes,
            )
        )
    # Plain executemany for the child rows (about ten per contact), which need no conversion.
    insert_plain_rows(session, _EMAILS, _CHILD_COLUMNS["email"], email_rows)
    insert_plain_rows(session, _PHONES, _CHILD_COLUMNS["number"], phone_rows)
    insert_plain_rows(session, _table(ContactSearchTerm), ("contact_id", "term"), term_rows)
    if audits:
        session.execute(_table(AuditEntry).insert(), audits)


def _raise_first_error(result: BulkResult) -> None:
    if result.status == "error":
        errors = [
            FieldError(tuple(e["loc"]), str(e["msg"]), str(e.get("type", "value_error")))  # type: ignore[arg-type]
            for e in result.errors
        ]
        if any("belongs to contact" in e.msg or "already has" in e.msg for e in errors):
            raise Conflict("The contact conflicts with an existing one.", errors)
        raise ValidationFailed("The contact has invalid fields.", errors)


def _input(data: BaseModel) -> dict[str, Any]:
    return data.model_dump(exclude_unset=True, mode="json")


def create_contact(session: Session, data: ContactCreate, actor: Actor) -> ContactRead:
    """Create one contact; its email domain links it to a matching company."""
    [result] = write_contacts(session, [_input(data)], actor, mode="create", match_on="email")
    _raise_first_error(result)
    assert result.id is not None
    return get_contact(session, result.id, actor)


def update_contact(
    session: Session,
    contact_id: int,
    data: ContactUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> ContactRead:
    """Change the fields that are set; lists (emails, phones, tags) are replaced whole."""
    [result] = write_contacts(
        session,
        [_input(data)],
        actor,
        mode="update",
        match_on="id",
        target_id=contact_id,
        if_version=if_version,
    )
    _raise_first_error(result)
    return get_contact(session, contact_id, actor)


def bulk_upsert_contacts(
    session: Session,
    records: Sequence[dict[str, Any]],
    actor: Actor,
    *,
    match_on: Literal["email", "external_id"] = "email",
    mode: Mode = "upsert",
    dry_run: bool = False,
) -> list[BulkResult]:
    limit = session_settings(session).max_bulk_records
    if len(records) > limit:
        raise BadRequest(
            f"At most {limit} records per call.", [FieldError(("body", "records"), "too many")]
        )
    return write_contacts(session, records, actor, mode=mode, match_on=match_on, dry_run=dry_run)


def delete_contact(
    session: Session, contact_id: int, actor: Actor, *, if_version: int | None = None
) -> None:
    require(actor, ENTITY, "write")
    row = session.get(Contact, contact_id)
    if row is None:
        raise NotFound(f"Contact {contact_id} does not exist.")
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(f"Contact {contact_id} was changed by someone else; reload it.")
    _check_owner(
        actor,
        row.owner_id,
        auth_service.users_by_id(session, {row.owner_id} if row.owner_id else set()),
    )
    emails, phones = _children(session, {row.id})
    session.execute(
        insert(AuditEntry),
        [
            audit_row(
                actor,
                ENTITY,
                row.id,
                "delete",
                diff(_snapshot(row, emails.get(row.id, []), phones.get(row.id, [])), {}),
            )
        ],
    )
    session.delete(row)
    session.commit()


#: Fields a ``ContactRead`` takes as they are from its ``contacts`` row.
_READ_AS_STORED = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "first_name_reading",
    "last_name_reading",
    "full_name",
    "primary_email",
    "primary_phone",
    "company_id",
    "job_title",
    "street",
    "city",
    "region",
    "postal_code",
    "country",
    "lifecycle_stage",
    "lead_status",
    "source",
    "owner_id",
    "do_not_email",
    "do_not_call",
    "do_not_sms",
    "version",
    "created_at",
    "updated_at",
)


def _read_many(
    session: Session, rows: Sequence[Row[Any]], custom_defs: dict[str, CustomFieldRead]
) -> list[ContactRead]:
    """Contacts as the API shows them, from ``contacts`` table rows (not ORM objects, which
    cost more to load on every page of every list)."""
    stored = [r._mapping for r in rows]
    emails, phones = _children(session, {m["id"] for m in stored})
    refs = companies.company_refs(
        session, {m["company_id"] for m in stored if m["company_id"] is not None}
    )
    out = []
    for m in stored:
        values = {name: m[name] for name in _READ_AS_STORED}
        out.append(
            ContactRead(
                **values,
                emails=emails.get(m["id"], []),
                phones=phones.get(m["id"], []),
                company=refs.get(m["company_id"]) if m["company_id"] else None,
                tags=list(m["tags"] or []),
                custom=present_custom_values(custom_defs, m["custom"] or {}),
            )
        )
    return out


def get_contact(session: Session, contact_id: int, actor: Actor) -> ContactRead:
    require(actor, ENTITY, "read")
    row = session.execute(_CONTACT_BY_ID, {"contact_id": contact_id}).first()
    if row is None:
        raise NotFound(f"Contact {contact_id} does not exist.")
    return _read_many(session, [row], fields_by_key(session, ENTITY))[0]


def find_contact_by_email(session: Session, email: str, actor: Actor) -> ContactRead | None:
    require(actor, ENTITY, "read")
    try:
        normalised = normalise_email(email)
    except ValueError:
        return None
    contact_id = session.scalar(
        select(ContactEmail.contact_id).where(ContactEmail.email == normalised)
    )
    return get_contact(session, contact_id, actor) if contact_id is not None else None


def existing_contact_ids(session: Session, ids: Iterable[int]) -> set[int]:
    """Which of these contact ids exist."""
    wanted = set(ids)
    if not wanted:
        return set()
    return set(session.scalars(select(Contact.id).where(Contact.id.in_(wanted))))


def contact_ids_of_company(session: Session, company_id: int) -> list[int]:
    """The ids of a company's contacts (for the company's timeline)."""
    return list(session.scalars(select(Contact.id).where(Contact.company_id == company_id)))


def contact_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Contact names by id (the email when a contact has no name), for showing links."""
    wanted = set(ids)
    if not wanted:
        return {}
    return dict(
        session.execute(select(Contact.id, Contact.full_name).where(Contact.id.in_(wanted))).all()
    )


def contact_ids_by_email(session: Session, emails: Iterable[str]) -> dict[str, int]:
    """The contact holding each of these (normalised) addresses, for those that one holds."""
    wanted = set(emails)
    if not wanted:
        return {}
    return dict(
        session.execute(
            select(ContactEmail.email, ContactEmail.contact_id).where(
                ContactEmail.email.in_(wanted)
            )
        ).all()
    )


def contact_ids_named(session: Session, text: str) -> list[int]:
    """The contacts a person means by an email address (``Name <a@b.jp>`` too) or, without
    one, by a full name (compared case- and width-insensitively), oldest first."""
    found = re.search(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+", text)
    if found:
        try:
            email = normalise_email(found.group(0))
        except ValueError:
            return []
        contact_id = contact_ids_by_email(session, [email]).get(email)
        return [contact_id] if contact_id is not None else []
    folded = fold(text)[:401]
    if not folded:
        return []
    return list(
        session.scalars(
            select(Contact.id).where(Contact.name_folded == folded).order_by(Contact.id).limit(5)
        )
    )


def _list_statement(
    session: Session, filters: Sequence[str], q: str | None, custom_defs: dict[str, CustomFieldRead]
) -> tuple[Select[Any], dict[str, Any]]:
    settings = session_settings(session)
    dialect = session.get_bind().dialect.name
    fields = list_fields(custom_defs, dialect)
    stmt: Select[Any] = select(Contact)
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
        condition = quick_search(q[:200], companies.company_ids_matching(session, q[:200]), dialect)
        if condition is not None:
            stmt = stmt.where(condition)
    return stmt, fields


def list_contacts(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    q: str | None = None,
) -> Page[ContactRead]:
    """A page of contacts: filtered, quick-searched, sorted, continued by cursor."""
    require(actor, ENTITY, "read")
    settings = session_settings(session)
    custom_defs = fields_by_key(session, ENTITY)
    stmt, fields = _list_statement(session, filters, q, custom_defs)
    order = parse_sort(sort, fields, "-id")
    after = decode_cursor(settings.secret_key, order, cursor) if cursor else None
    stmt = apply_sort_and_cursor(stmt, order, Contact.id, after).limit(limit + 1)
    # Plain rows rather than ORM objects: cheaper to load, and a list never writes them.
    rows = list(session.execute(stmt.with_only_columns(*_CONTACTS.c)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value = (
            last.id
            if order.name == "id"
            else session.scalar(select(order.spec.expr).where(Contact.id == last.id))
        )
        next_cursor = encode_cursor(settings.secret_key, order, value, last.id)
    return Page[ContactRead](items=_read_many(session, rows, custom_defs), next_cursor=next_cursor)


def iter_contacts(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    q: str | None = None,
    page_size: int = 2000,
) -> Iterator[ContactRead]:
    """Every contact the filters select, in id order, fetched page by page (for export)."""
    cursor: str | None = None
    while True:
        page = list_contacts(
            session, actor, filters=filters, q=q, sort="id", cursor=cursor, limit=page_size
        )
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def contact_custom_fields(session: Session) -> list[CustomFieldRead]:
    return list(fields_by_key(session, ENTITY).values())


__all__ = [
    "IchigenError",
    "bulk_upsert_contacts",
    "create_contact",
    "delete_contact",
    "get_contact",
    "iter_contacts",
    "list_contacts",
    "update_contact",
    "write_contacts",
]
