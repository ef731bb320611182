"""Contacts: the rules for every read and write, with audit, permissions and quick search.

All writes — one contact from the UI, a bulk API call, a CSV import — go through
``write_contacts``, which validates a batch, resolves references with a few set-based
queries, and writes rows, child rows, search terms and audit entries in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import (
    Row,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import OWNERSHIP_BOUND, Role, require
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor, AuditEntry, audit_row, diff, jsonable
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
    ContactIdentifiers,
    ContactMatch,
    ContactMergeOutcome,
    ContactRead,
    ContactState,
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


# ----------------------------------------------------------------------------- merging

#: Consent flags: by default a merged contact keeps an opt-out that either side had.
_CONSENT_FLAGS = ("do_not_email", "do_not_call", "do_not_sms")
#: Fields whose surviving value a merge lets the user choose (tags are always united).
MERGE_CHOICE_FIELDS = tuple(name for name in COLUMNS if name != "tags")
_MERGE_SIDES = frozenset({"survivor", "merged"})


def contact_state(session: Session, contact_id: int) -> ContactState | None:
    """The contact whole, as stored (for merging and undoing a merge), or None."""
    row = session.execute(_CONTACT_BY_ID, {"contact_id": contact_id}).first()
    if row is None:
        return None
    stored = row._mapping
    emails, phones = _children(session, {contact_id})
    fields = {name: jsonable(stored[name]) for name in COLUMNS}
    fields["tags"] = list(stored["tags"] or [])
    fields["custom"] = jsonable(dict(stored["custom"] or {}))
    return ContactState(
        id=contact_id,
        fields=fields,
        emails=emails.get(contact_id, []),
        phones=phones.get(contact_id, []),
        version=stored["version"],
        created_at=stored["created_at"],
        updated_at=stored["updated_at"],
    )


def _claim_version(session: Session, state: ContactState, wanted: int | None) -> int:
    """Bump the contact's version if it is still ``wanted`` (or as read): a concurrent merge
    or edit of the same contact makes the second writer fail instead of mixing the two."""
    if wanted is not None and wanted != state.version:
        raise PreconditionFailed(
            f"Contact {state.id} was changed by someone else (now version {state.version}); "
            "reload it and try again."
        )
    result = session.execute(
        update(_CONTACTS)
        .where(_CONTACTS.c.id == state.id, _CONTACTS.c.version == state.version)
        .values(version=state.version + 1)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise Conflict(f"Contact {state.id} is being changed or merged by someone else right now.")
    return state.version + 1


def claim_contacts_for_merge(
    session: Session,
    survivor_id: int,
    merged_id: int,
    actor: Actor,
    *,
    survivor_version: int | None = None,
    merged_version: int | None = None,
) -> tuple[ContactState, ContactState]:
    """Check that ``merged_id`` may be merged into ``survivor_id`` and claim both contacts.

    Both must exist and be writable by ``actor``; a given version must be the current one
    (412). Both versions are bumped at once, so of two concurrent merges or edits of the same
    contacts only the first succeeds (409). Returns both contacts as they were.
    """
    require(actor, ENTITY, "write")
    if survivor_id == merged_id:
        raise ValidationFailed(
            "A contact cannot be merged with itself.",
            [FieldError(("merged_id",), "is the survivor itself")],
        )
    survivor = contact_state(session, survivor_id)
    merged = contact_state(session, merged_id)
    for state, contact_id in ((survivor, survivor_id), (merged, merged_id)):
        if state is None:
            raise NotFound(f"Contact {contact_id} does not exist.")
    assert survivor is not None and merged is not None
    owner_ids = {s.fields["owner_id"] for s in (survivor, merged) if s.fields["owner_id"]}
    owners = auth_service.users_by_id(session, owner_ids)
    for state in (survivor, merged):
        _check_owner(actor, state.fields["owner_id"], owners)
    _claim_version(session, survivor, survivor_version)
    _claim_version(session, merged, merged_version)
    return survivor, merged


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _check_choices(
    choices: Mapping[str, str], survivor: ContactState, merged: ContactState
) -> None:
    custom_keys = set(survivor.fields["custom"]) | set(merged.fields["custom"])
    allowed = set(MERGE_CHOICE_FIELDS) | {f"custom.{key}" for key in custom_keys}
    errors = [
        FieldError(("choices", name), "not a field the two contacts can differ in")
        for name in choices
        if name not in allowed
    ]
    errors += [
        FieldError(("choices", name), "must be 'survivor' or 'merged'")
        for name, side in choices.items()
        if name in allowed and side not in _MERGE_SIDES
    ]
    if errors:
        raise ValidationFailed("Some field choices are not valid.", errors)


def _pick(name: str, mine: Any, theirs: Any, choices: Mapping[str, str]) -> Any:
    side = choices.get(name)
    if side == "merged":
        return theirs
    if side == "survivor":
        return mine
    return theirs if _empty(mine) else mine


def merged_contact_fields(
    survivor: ContactState, merged: ContactState, choices: Mapping[str, str]
) -> tuple[dict[str, Any], list[EmailOut], list[PhoneOut]]:
    """The survivor's fields, emails and phones after taking in ``merged``.

    Per field the survivor's value wins unless it is empty or ``choices`` names ``merged``
    (custom fields as ``custom.<key>``); tags are united; an opt-out either side had is kept
    unless chosen otherwise; emails and phone numbers are united, the survivor's first.
    """
    _check_choices(choices, survivor, merged)
    mine, theirs = survivor.fields, merged.fields
    fields: dict[str, Any] = {}
    for name in COLUMNS:
        if name == "tags":
            tags = list(mine["tags"]) + [t for t in theirs["tags"] if t not in mine["tags"]]
            fields[name] = tags
        elif name in _CONSENT_FLAGS and name not in choices:
            fields[name] = bool(mine[name] or theirs[name])
        else:
            fields[name] = _pick(name, mine.get(name), theirs.get(name), choices)
    custom: dict[str, Any] = {}
    for key in list(mine["custom"]) + [k for k in theirs["custom"] if k not in mine["custom"]]:
        value = _pick(f"custom.{key}", mine["custom"].get(key), theirs["custom"].get(key), choices)
        if not _empty(value):
            custom[key] = value
    fields["custom"] = custom
    emails = [e.model_copy() for e in survivor.emails]
    known = {e.email for e in emails}
    emails += [
        EmailOut(email=e.email, label=e.label, primary=not emails and k == 0)
        for k, e in enumerate(merged.emails)
        if e.email not in known
    ]
    phones = [p.model_copy() for p in survivor.phones]
    numbers = {p.number for p in phones}
    phones += [
        PhoneOut(number=p.number, label=p.label, primary=not phones and k == 0)
        for k, p in enumerate(merged.phones)
        if p.number not in numbers
    ]
    return fields, _one_primary(emails), _one_primary(phones)


def _one_primary(items: list[Any]) -> list[Any]:
    if items and not any(i.primary for i in items):
        items[0].primary = True
    return items


def _state_snapshot(state: ContactState) -> dict[str, Any]:
    snap = dict(state.fields)
    snap["emails"] = [e.email for e in state.emails]
    snap["phones"] = [p.number for p in state.phones]
    return snap


def _store_state(session: Session, state: ContactState, *, new_row: bool) -> None:
    """Write the contact row, its emails, phones and search terms exactly as ``state``."""
    after = _state_snapshot(state)
    values = _row_values(after)
    values.update(version=state.version, updated_at=state.updated_at)
    if new_row:
        values.update(id=state.id, created_at=state.created_at)
        session.execute(insert(_CONTACTS).values(**values))
    else:
        session.execute(update(_CONTACTS).where(_CONTACTS.c.id == state.id).values(**values))
        for table in (_EMAILS, _PHONES, _table(ContactSearchTerm)):
            session.execute(delete(table).where(table.c.contact_id == state.id))
    insert_plain_rows(
        session,
        _EMAILS,
        _CHILD_COLUMNS["email"],
        [(state.id, e.email, e.label, e.primary, k) for k, e in enumerate(state.emails)],
    )
    insert_plain_rows(
        session,
        _PHONES,
        _CHILD_COLUMNS["number"],
        [(state.id, p.number, p.label, p.primary, k) for k, p in enumerate(state.phones)],
    )
    insert_plain_rows(
        session,
        _table(ContactSearchTerm),
        ("contact_id", "term"),
        [(state.id, t) for t in search_terms(after, state.emails, state.phones)],
    )


def merge_contact_into(
    session: Session,
    survivor: ContactState,
    merged: ContactState,
    choices: Mapping[str, str],
    actor: Actor,
) -> ContactMergeOutcome:
    """Fold ``merged`` into ``survivor`` (both claimed by :func:`claim_contacts_for_merge`):
    the survivor takes the chosen field values, all emails and phones; the merged contact is
    deleted. Audited on both contacts; the caller commits. Records that point to the merged
    contact must have been moved before (deleting it cascades to what still points at it)."""
    fields, emails, phones = merged_contact_fields(survivor, merged, choices)
    now = utcnow()
    after = ContactState(
        id=survivor.id,
        fields=fields,
        emails=emails,
        phones=phones,
        version=survivor.version + 1,
        created_at=survivor.created_at,
        updated_at=now,
    )
    changes = diff(_state_snapshot(survivor), _state_snapshot(after))
    for table in (_EMAILS, _PHONES, _table(ContactSearchTerm)):
        session.execute(delete(table).where(table.c.contact_id == merged.id))
    session.execute(delete(_CONTACTS).where(_CONTACTS.c.id == merged.id))
    _store_state(session, after, new_row=False)
    gone = diff(_state_snapshot(merged), {})
    gone["merged_into"] = [None, survivor.id]
    session.execute(
        insert(AuditEntry),
        [
            audit_row(actor, ENTITY, merged.id, "merge", gone),
            audit_row(
                actor, ENTITY, survivor.id, "merge", {**changes, "merged_from": [None, merged.id]}
            ),
        ],
    )
    return ContactMergeOutcome(
        survivor_before=survivor, survivor_after=after, merged=merged, changes=changes
    )


def _reverted(before: list[Any], after: list[Any], current: list[Any], key: str) -> list[Any]:
    """``current`` without the items the merge added (kept if someone added them since)."""
    had = {getattr(i, key) for i in before}
    added = {getattr(i, key) for i in after} - had
    kept = [i.model_copy() for i in current if getattr(i, key) not in added]
    if [getattr(i, key) for i in kept] == [getattr(i, key) for i in before]:
        return [i.model_copy() for i in before]
    for item in kept:
        item.primary = False
    return _one_primary(kept)


def undo_contact_merge(session: Session, outcome: ContactMergeOutcome, actor: Actor) -> None:
    """Undo :func:`merge_contact_into`: re-create the merged contact with its id, fields,
    emails and phones, and give the survivor back what the merge changed (a field someone
    changed since keeps its new value). The caller moves the other records back and commits.
    """
    require(actor, ENTITY, "write")
    merged = outcome.merged
    if session.execute(_CONTACT_BY_ID, {"contact_id": merged.id}).first() is not None:
        raise Conflict(f"Contact {merged.id} exists again; the merge cannot be undone.")
    current = contact_state(session, outcome.survivor_before.id)
    if current is None:
        raise Conflict(
            f"Contact {outcome.survivor_before.id}, which the merge kept, has been deleted; "
            "the merge cannot be undone."
        )
    owners = auth_service.users_by_id(
        session, {current.fields["owner_id"]} if current.fields["owner_id"] else set()
    )
    _check_owner(actor, current.fields["owner_id"], owners)
    _claim_version(session, current, None)
    before, after = outcome.survivor_before.fields, outcome.survivor_after.fields
    fields = dict(current.fields)
    for name in COLUMNS:
        if jsonable(current.fields.get(name)) == jsonable(after.get(name)):
            fields[name] = before.get(name)
    custom = dict(current.fields["custom"])
    for key in set(before["custom"]) | set(after["custom"]):
        if jsonable(custom.get(key)) == jsonable(after["custom"].get(key)):
            if key in before["custom"]:
                custom[key] = before["custom"][key]
            else:
                custom.pop(key, None)
    fields["custom"] = custom
    restored = ContactState(
        id=current.id,
        fields=fields,
        emails=_reverted(
            outcome.survivor_before.emails, outcome.survivor_after.emails, current.emails, "email"
        ),
        phones=_reverted(
            outcome.survivor_before.phones, outcome.survivor_after.phones, current.phones, "number"
        ),
        version=current.version + 1,
        created_at=current.created_at,
        updated_at=utcnow(),
    )
    _store_state(session, restored, new_row=False)
    session.flush()
    taken = contact_ids_by_email(session, [e.email for e in merged.emails])
    if taken:
        email, holder = next(iter(taken.items()))
        raise Conflict(f"{email} now belongs to contact {holder}; the merge cannot be undone.")
    external_id = merged.fields.get("external_id")
    if external_id and session.scalar(select(Contact.id).where(Contact.external_id == external_id)):
        raise Conflict(
            f"External id {external_id} is now taken by another contact; the merge cannot be "
            "undone."
        )
    back = merged.model_copy(update={"version": merged.version + 1, "updated_at": utcnow()})
    _store_state(session, back, new_row=True)
    session.execute(
        insert(AuditEntry),
        [
            audit_row(
                actor,
                ENTITY,
                current.id,
                "unmerge",
                {
                    **diff(_state_snapshot(current), _state_snapshot(restored)),
                    "merged_from": [merged.id, None],
                },
            ),
            audit_row(
                actor,
                ENTITY,
                merged.id,
                "unmerge",
                {**diff({}, _state_snapshot(back)), "merged_into": [current.id, None]},
            ),
        ],
    )


# ----------------------------------------------------------------------------- duplicates


def likely_duplicates(
    session: Session,
    actor: Actor,
    *,
    emails: Iterable[str] = (),
    phones: Iterable[str] = (),
    first_name: str | None = None,
    last_name: str | None = None,
    first_name_reading: str | None = None,
    last_name_reading: str | None = None,
    exclude_id: int | None = None,
    limit: int = 10,
) -> list[ContactMatch]:
    """Existing contacts that share a (normalised) email or phone number with the one being
    entered, or its name or reading (width, case, kana and spacing aside), best first.

    Only indexed look-ups, so it can run as the user types. Malformed input matches nothing.
    """
    require(actor, ENTITY, "read")
    region = session_settings(session).default_phone_region
    reasons: dict[int, list[str]] = {}

    def found(ids: Iterable[int], reason: str) -> None:
        for contact_id in ids:
            if contact_id != exclude_id and reason not in reasons.setdefault(contact_id, []):
                reasons[contact_id].append(reason)

    wanted_emails = set()
    for raw in emails:
        try:
            wanted_emails.add(normalise_email(raw))
        except ValueError:
            continue
    found(contact_ids_by_email(session, wanted_emails).values(), "email")
    numbers = set()
    for raw in phones:
        try:
            numbers.add(normalise_phone(raw, region))
        except ValueError:
            continue
    if numbers:
        found(
            session.scalars(
                select(ContactPhone.contact_id).where(ContactPhone.number.in_(numbers)).limit(50)
            ),
            "phone",
        )
    first, last = (first_name or "").strip(), (last_name or "").strip()
    terms = {fold_compact(last + first), fold_compact(first + last)} if first and last else set()
    reading = fold_compact((last_name_reading or "") + (first_name_reading or ""))
    if (first_name_reading or "").strip() and (last_name_reading or "").strip():
        terms.add(reading)
    terms.discard("")
    if terms:
        found(
            session.scalars(
                select(ContactSearchTerm.contact_id)
                .where(ContactSearchTerm.term.in_({t[:320] for t in terms}))
                .limit(50)
            ),
            "name",
        )
    if not reasons:
        return []
    names = session.execute(
        select(Contact.id, Contact.full_name, Contact.primary_email, Contact.primary_phone).where(
            Contact.id.in_(reasons)
        )
    ).all()
    matches = [
        ContactMatch(
            id=row.id,
            full_name=row.full_name,
            primary_email=row.primary_email,
            primary_phone=row.primary_phone,
            reasons=reasons[row.id],
        )
        for row in names
    ]
    matches.sort(key=lambda m: (-len(m.reasons), "name" in m.reasons, m.id))
    return matches[:limit]


def contact_count(session: Session) -> int:
    """How many contacts there are."""
    return int(session.scalar(select(func.count()).select_from(_CONTACTS)) or 0)


def contact_match_records(
    session: Session, *, after_id: int = 0, limit: int = 50_000
) -> list[dict[str, Any]]:
    """A page of contacts (id order, after ``after_id``) as records for duplicate detection:
    ``id``, ``first_name``, ``last_name``, ``name_kana``, ``email``, ``phone``, ``company``,
    ``street``, ``city``, ``postcode``, ``region`` (None where the contact has none)."""
    rows = session.execute(
        select(
            Contact.id,
            Contact.first_name,
            Contact.last_name,
            Contact.first_name_reading,
            Contact.last_name_reading,
            Contact.primary_email,
            Contact.primary_phone,
            Contact.company_id,
            Contact.street,
            Contact.city,
            Contact.postal_code,
            Contact.region,
        )
        .where(Contact.id > after_id)
        .order_by(Contact.id)
        .limit(limit)
    ).all()
    refs = companies.company_refs(session, {r.company_id for r in rows if r.company_id})
    records = []
    for r in rows:
        reading = " ".join(x for x in (r.last_name_reading, r.first_name_reading) if x)
        company = refs.get(r.company_id) if r.company_id else None
        records.append(
            {
                "id": r.id,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "name_kana": reading or None,
                "email": r.primary_email,
                "phone": r.primary_phone,
                "company": company.name if company else None,
                "street": r.street,
                "city": r.city,
                "postcode": r.postal_code,
                "region": r.region,
            }
        )
    return records


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


def contacts_changed_since(
    session: Session, after: tuple[datetime, int] | None, limit: int = 1000
) -> list[ContactIdentifiers]:
    """Contacts changed after ``(updated_at, id)``, oldest change first, with their e-mail
    addresses and phone numbers (for the identity graph, which links them)."""
    stmt = select(Contact.id, Contact.version, Contact.updated_at)
    if after is not None:
        stmt = stmt.where(
            or_(
                Contact.updated_at > after[0],
                and_(Contact.updated_at == after[0], Contact.id > after[1]),
            )
        )
    rows = session.execute(stmt.order_by(Contact.updated_at, Contact.id).limit(limit)).all()
    ids = [row.id for row in rows]
    emails: dict[int, list[str]] = {i: [] for i in ids}
    phones: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for contact_id, email in session.execute(
            select(ContactEmail.contact_id, ContactEmail.email)
            .where(ContactEmail.contact_id.in_(ids))
            .order_by(ContactEmail.contact_id, ContactEmail.position)
        ):
            emails[contact_id].append(email)
        for contact_id, number in session.execute(
            select(ContactPhone.contact_id, ContactPhone.number)
            .where(ContactPhone.contact_id.in_(ids))
            .order_by(ContactPhone.contact_id, ContactPhone.position)
        ):
            phones[contact_id].append(number)
    return [
        ContactIdentifiers(
            id=row.id,
            version=row.version,
            updated_at=row.updated_at,
            emails=emails[row.id],
            phones=phones[row.id],
        )
        for row in rows
    ]
