"""Activities: the rules for every read and write that others may call.

An activity (note, call, email, meeting, or a completed task) is about one or more records
(contacts, companies, deals). Each tie is a row of ``activity_links`` that repeats the
activity's ``kind`` and ``occurred_at``, so that a record's timeline — its own activities and
those of the records under it — is one indexed query over that table.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require, require_owner_access
from ichigen.core.audit import Actor, AuditEntry, audit_row, diff, record_change
from ichigen.core.bulk import add_to_counters, insert_returning_ids
from ichigen.core.clock import utcnow
from ichigen.core.db import session_settings, utc_day
from ichigen.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.normalise import normalise_email
from ichigen.core.query import decode_cursor, encode_cursor
from ichigen.core.schemas import Page
from ichigen.crm.activities import ical, queries
from ichigen.crm.activities.models import Activity, ActivityDayCount, ActivityLink
from ichigen.crm.activities.schemas import (
    KINDS,
    ActivityCreate,
    ActivityRead,
    ActivityUpdate,
    Attendee,
    IcalEventResult,
    IcalImportReport,
    LinkedRecord,
    RecordRef,
)
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.deals import service as deals

ENTITY = "activities"
#: The entity each record type's permissions live under.
RECORD_ENTITIES = {"contact": "contacts", "company": "companies", "deal": "deals"}
#: Fields that only some kinds have.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "direction": ("call", "email"),
    "duration_seconds": ("call",),
    "outcome": ("call",),
    "email_from": ("email",),
    "email_to": ("email",),
    "attendees": ("meeting",),
    "location": ("meeting",),
    "ends_at": ("meeting",),
    "all_day": ("meeting",),
}
_KIND_NAMES = {
    ("call",): "calls",
    ("email",): "emails",
    ("meeting",): "meetings",
    ("call", "email"): "calls and emails",
}
#: Columns a caller sets (besides kind, links, occurred_at, task_id).
COLUMNS = (
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
)
_EMPTY: dict[str, Any] = {
    "subject": "",
    "body": "",
    "all_day": False,
    "email_to": [],
    "attendees": [],
}
_AUDITED = ("kind", *COLUMNS, "task_id", "ical_uid")
#: Most meetings one iCalendar file may hold, and its largest size.
MAX_ICAL_EVENTS = 5000
MAX_ICAL_BYTES = 10 * 1024 * 1024


# ----------------------------------------------------------------------------- validation


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value is False


def _link_key(ref: RecordRef | LinkedRecord) -> str:
    return f"{ref.type}:{ref.id}"


def _check_links(session: Session, links: Sequence[RecordRef], errors: list[FieldError]) -> None:
    """Every link names an existing contact, company or deal (one query per type)."""
    if not links:
        errors.append(
            FieldError(
                ("links",),
                "an activity must be linked to at least one contact, company or deal",
                "missing",
            )
        )
        return
    wanted: dict[str, set[int]] = {}
    for ref in links:
        wanted.setdefault(ref.type, set()).add(ref.id)
    found = {
        "contact": contacts.existing_contact_ids(session, wanted.get("contact", ())),
        "company": companies.existing_company_ids(session, wanted.get("company", ())),
        "deal": deals.existing_deal_ids(session, wanted.get("deal", ())),
    }
    for index, ref in enumerate(links):
        if ref.type == "ticket":
            errors.append(FieldError(("links", index), "tickets cannot be linked yet"))
        elif ref.id not in found[ref.type]:
            errors.append(FieldError(("links", index), f"{ref.type} {ref.id} does not exist"))


def _unique_links(links: Iterable[RecordRef]) -> list[RecordRef]:
    seen: dict[str, RecordRef] = {}
    for ref in links:
        seen.setdefault(_link_key(ref), ref)
    return list(seen.values())


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), UTC)


def _normalise(
    session: Session,
    kind: str,
    values: dict[str, Any],
    given: set[str],
    before: dict[str, Any] | None,
    errors: list[FieldError],
) -> None:
    """Check and normalise an activity's values in place (``given``: the fields the caller
    set, which are the ones errors can name)."""
    for name, kinds in KIND_FIELDS.items():
        if kind not in kinds and not _empty(values.get(name)):
            errors.append(
                FieldError((name,), f"applies to {_KIND_NAMES[kinds]} only, not to a {kind}")
            )
    if values.get("email_from"):
        try:
            values["email_from"] = normalise_email(values["email_from"])
        except ValueError as exc:
            errors.append(FieldError(("email_from",), str(exc)))
    recipients: list[str] = []
    for index, address in enumerate(values.get("email_to") or []):
        try:
            normalised = normalise_email(address)
        except ValueError as exc:
            errors.append(FieldError(("email_to", index), str(exc)))
            continue
        if normalised not in recipients:
            recipients.append(normalised)
    values["email_to"] = recipients
    attendees: list[dict[str, Any]] = []
    for index, attendee in enumerate(values.get("attendees") or []):
        item = attendee if isinstance(attendee, dict) else attendee.model_dump()
        try:
            email = normalise_email(item["email"])
        except ValueError as exc:
            errors.append(FieldError(("attendees", index, "email"), str(exc)))
            continue
        if all(a["email"] != email for a in attendees):
            attendees.append({"email": email, "name": item.get("name") or None})
    values["attendees"] = attendees
    for name in ("subject", "body"):
        values[name] = values.get(name) or ""
    if values.get("location") is not None:
        values["location"] = values["location"] or None
    start: datetime = values["occurred_at"]
    if values.get("all_day"):
        start = values["occurred_at"] = _midnight(start)
        end = values.get("ends_at")
        values["ends_at"] = start + timedelta(days=1) if end is None else _midnight(end)
    end = values.get("ends_at")
    if end is not None and end <= start:
        loc = "ends_at" if "ends_at" in given or "occurred_at" not in given else "occurred_at"
        errors.append(FieldError((loc,), "the end must be after the start"))
    owner_id = values.get("owner_id")
    if owner_id is not None and owner_id != (before or {}).get("owner_id"):
        owner = auth_service.users_by_id(session, {owner_id}).get(owner_id)
        if owner is None:
            errors.append(FieldError(("owner_id",), "no such user"))
        elif not owner.is_active:
            errors.append(FieldError(("owner_id",), "the owner is an inactive user"))


def _check_external_id(session: Session, external_id: str | None, own_id: int | None) -> None:
    if external_id is None:
        return
    holder = session.scalar(select(Activity.id).where(Activity.external_id == external_id))
    if holder is not None and holder != own_id:
        raise Conflict(
            f"Activity {holder} already has this external id.",
            [FieldError(("external_id",), f"activity {holder} already has this external id")],
        )


def _require_write(actor: Actor, kind: str) -> None:
    # A completed task is logged by whoever completed it: the tasks permission covers it.
    require(actor, "tasks" if kind == "task" else ENTITY, "write")


def _owner_team(session: Session, owner_id: int | None) -> int | None:
    if owner_id is None:
        return None
    owner = auth_service.users_by_id(session, {owner_id}).get(owner_id)
    return owner.team_id if owner else None


# ----------------------------------------------------------------------------- writes


def _snapshot(row: Activity, links: Iterable[str]) -> dict[str, Any]:
    snap = {name: getattr(row, name) for name in _AUDITED}
    snap["links"] = sorted(links)
    return snap


def _links_of(session: Session, activity_id: int) -> list[RecordRef]:
    return [
        RecordRef(type=t, id=i)
        for t, i in session.execute(
            select(ActivityLink.record_type, ActivityLink.record_id)
            .where(ActivityLink.activity_id == activity_id)
            .order_by(ActivityLink.id)
        )
    ]


def _add_links(session: Session, row: Activity, links: Iterable[RecordRef]) -> None:
    session.add_all(
        ActivityLink(
            activity_id=row.id,
            record_type=ref.type,
            record_id=ref.id,
            kind=row.kind,
            occurred_at=row.occurred_at,
        )
        for ref in links
    )


#: A day's count of one owner's activities of one kind: (UTC day, owner id, kind).
CountKey = tuple[date, int, str]


def _count_key(owner_id: int | None, kind: str, occurred_at: datetime) -> CountKey | None:
    if owner_id is None:
        return None
    return (occurred_at.astimezone(UTC).date(), owner_id, kind)


def _adjust_counts(session: Session, deltas: Counter[CountKey | None]) -> None:
    """Add to the owners' activity counts per day (``ActivityDayCount``)."""
    rows = [
        {"day": key[0], "owner_id": key[1], "kind": key[2], "count": n}
        for key, n in sorted((k, n) for k, n in deltas.items() if k is not None and n)
    ]
    add_to_counters(session, ActivityDayCount.__table__, ("day", "owner_id", "kind"), rows)  # type: ignore[arg-type]


def rebuild_activity_counts(session: Session) -> None:
    """Recompute the activity counts per owner and day from the activities (after a load that
    wrote activities without this service); commits."""
    session.execute(delete(ActivityDayCount))
    day = utc_day(Activity.occurred_at, session.get_bind().dialect.name)
    session.execute(
        insert(ActivityDayCount).from_select(
            ["day", "owner_id", "kind", "count"],
            select(day, Activity.owner_id, Activity.kind, func.count())
            .where(Activity.owner_id.is_not(None))
            .group_by(day, Activity.owner_id, Activity.kind),
        )
    )
    session.commit()


def _create(
    session: Session,
    kind: str,
    values: dict[str, Any],
    links: list[RecordRef],
    actor: Actor,
    *,
    task_id: int | None = None,
    ical_uid: str | None = None,
) -> Activity:
    """Insert an activity whose values are checked, with its links and audit row."""
    now = utcnow()
    row = Activity(
        kind=kind,
        task_id=task_id,
        ical_uid=ical_uid,
        custom={},
        version=1,
        created_at=now,
        updated_at=now,
        **{name: values.get(name, _EMPTY.get(name)) for name in COLUMNS},
    )
    session.add(row)
    session.flush()
    _add_links(session, row, links)
    _adjust_counts(session, Counter([_count_key(row.owner_id, kind, row.occurred_at)]))
    record_change(
        session, actor, ENTITY, row.id, "create", diff({}, _snapshot(row, map(_link_key, links)))
    )
    return row


def _prepare_create(
    session: Session, data: ActivityCreate, actor: Actor
) -> tuple[dict[str, Any], list[RecordRef]]:
    _require_write(actor, data.kind)
    given = set(data.model_fields_set)
    values = data.model_dump(include=set(COLUMNS))
    values["occurred_at"] = data.occurred_at or utcnow()
    if values.get("owner_id") is None and "owner_id" not in given:
        values["owner_id"] = actor.user_id
    links = _unique_links(data.links)
    errors: list[FieldError] = []
    _check_links(session, data.links, errors)
    _normalise(session, data.kind, values, given, None, errors)
    if errors:
        raise ValidationFailed("The activity has invalid fields.", errors)
    _check_external_id(session, values.get("external_id"), None)
    return values, links


def log_activity(
    session: Session, data: ActivityCreate, actor: Actor, *, commit: bool = True
) -> ActivityRead:
    """Log a note, call, email, meeting or completed task against one or more records.

    Every link must name an existing contact, company or deal (a 422 naming ``links[i]``
    otherwise); fields of other kinds (a call's outcome on a note) are refused. The owner is
    the acting user unless given. ``commit=False`` leaves the unit of work to the caller (the
    tasks feature logs a completed task in the same transaction as the completion).
    """
    values, links = _prepare_create(session, data, actor)
    row = _create(session, data.kind, values, links, actor, task_id=data.task_id)
    if commit:
        session.commit()
    else:
        session.flush()
    return _read_many(session, [row])[0]


def _get_row(session: Session, activity_id: int) -> Activity:
    row = session.get(Activity, activity_id)
    if row is None:
        raise NotFound(f"Activity {activity_id} does not exist.")
    return row


def _check_version(row: Activity, if_version: int | None) -> None:
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"Activity {row.id} was changed by someone else (now version {row.version}); "
            "reload it and try again."
        )


def _apply(
    session: Session,
    row: Activity,
    values: dict[str, Any],
    links: list[RecordRef] | None,
    actor: Actor,
) -> bool:
    """Write checked values (and links, when given) to an activity; False if nothing changed."""
    current = _links_of(session, row.id)
    before = _snapshot(row, map(_link_key, current))
    counted = _count_key(row.owner_id, row.kind, row.occurred_at)
    for name in COLUMNS:
        if name in values and getattr(row, name) != values[name]:
            setattr(row, name, values[name])
    after = _snapshot(row, map(_link_key, links if links is not None else current))
    delta = diff(before, after)
    if not delta:
        return False
    row.version += 1
    row.updated_at = utcnow()
    now_counted = _count_key(row.owner_id, row.kind, row.occurred_at)
    if now_counted != counted:
        _adjust_counts(session, Counter({counted: -1, now_counted: 1}))
    if links is not None and "links" in delta:
        session.execute(delete(ActivityLink).where(ActivityLink.activity_id == row.id))
        session.flush()
        _add_links(session, row, links)
    elif "occurred_at" in delta:
        for link in session.scalars(select(ActivityLink).where(ActivityLink.activity_id == row.id)):
            link.occurred_at = row.occurred_at
    record_change(session, actor, ENTITY, row.id, "update", delta)
    return True


def update_activity(
    session: Session,
    activity_id: int,
    data: ActivityUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> ActivityRead:
    """Change the fields that are set; sales and support change only their own (or their
    team's) activities. The kind stays: log a new activity instead."""
    row = _get_row(session, activity_id)
    _require_write(actor, row.kind)
    require_owner_access(actor, ENTITY, row.owner_id, _owner_team(session, row.owner_id))
    _check_version(row, if_version)
    given = set(data.model_fields_set)
    current = {name: getattr(row, name) for name in COLUMNS}
    values = dict(current)
    values.update(data.model_dump(include=given - {"links"}))
    if "occurred_at" in given and values["occurred_at"] is None:
        values["occurred_at"] = current["occurred_at"]
    if values.get("all_day") is None:
        values["all_day"] = False
    errors: list[FieldError] = []
    links = None
    if data.links is not None:
        _check_links(session, data.links, errors)
        links = _unique_links(data.links)
    _normalise(session, row.kind, values, given, current, errors)
    if errors:
        raise ValidationFailed("The activity has invalid fields.", errors)
    if "external_id" in given:
        _check_external_id(session, values.get("external_id"), row.id)
    _apply(session, row, values, links, actor)
    session.commit()
    return _read_many(session, [row])[0]


def delete_activity(
    session: Session, activity_id: int, actor: Actor, *, if_version: int | None = None
) -> None:
    """Delete an activity and its links (it leaves every timeline it was on)."""
    row = _get_row(session, activity_id)
    _require_write(actor, row.kind)
    require_owner_access(actor, ENTITY, row.owner_id, _owner_team(session, row.owner_id))
    _check_version(row, if_version)
    links = _links_of(session, row.id)
    record_change(
        session, actor, ENTITY, row.id, "delete", diff(_snapshot(row, map(_link_key, links)), {})
    )
    session.execute(delete(ActivityLink).where(ActivityLink.activity_id == row.id))
    _adjust_counts(session, Counter({_count_key(row.owner_id, row.kind, row.occurred_at): -1}))
    session.delete(row)
    session.commit()


# ----------------------------------------------------------------------------- reads


def _read_many(session: Session, rows: Sequence[Activity]) -> list[ActivityRead]:
    """Activities as callers see them, with their links and the linked records' names."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    links: dict[int, list[tuple[str, int]]] = {}
    for activity_id, record_type, record_id in session.execute(
        select(ActivityLink.activity_id, ActivityLink.record_type, ActivityLink.record_id)
        .where(ActivityLink.activity_id.in_(ids))
        .order_by(ActivityLink.id)
    ):
        links.setdefault(activity_id, []).append((record_type, record_id))
    wanted: dict[str, set[int]] = {}
    for pairs in links.values():
        for record_type, record_id in pairs:
            wanted.setdefault(record_type, set()).add(record_id)
    names: dict[str, dict[int, str]] = {
        "contact": contacts.contact_names(session, wanted.get("contact", ())),
        "company": {
            i: ref.name
            for i, ref in companies.company_refs(session, wanted.get("company", ())).items()
        },
        "deal": deals.deal_names(session, wanted.get("deal", ())),
    }
    return [
        ActivityRead(
            id=row.id,
            kind=row.kind,
            subject=row.subject,
            body=row.body,
            occurred_at=row.occurred_at,
            ends_at=row.ends_at,
            all_day=row.all_day,
            direction=row.direction,
            duration_seconds=row.duration_seconds,
            outcome=row.outcome,
            email_from=row.email_from,
            email_to=list(row.email_to or []),
            attendees=[Attendee.model_validate(a) for a in row.attendees or []],
            location=row.location,
            owner_id=row.owner_id,
            task_id=row.task_id,
            external_id=row.external_id,
            ical_uid=row.ical_uid,
            links=[
                LinkedRecord(
                    type=t,
                    id=i,
                    name=names.get(t, {}).get(i),
                )
                for t, i in links.get(row.id, [])
            ],
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


def _rows_in_order(session: Session, ids: Sequence[int]) -> list[Activity]:
    if not ids:
        return []
    found = {r.id: r for r in session.scalars(select(Activity).where(Activity.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def get_activities(session: Session, ids: Sequence[int], actor: Actor) -> list[ActivityRead]:
    """These activities (those that exist), in the order of ``ids``."""
    require(actor, ENTITY, "read")
    return _read_many(session, _rows_in_order(session, list(ids)))


def get_activity(session: Session, activity_id: int, actor: Actor) -> ActivityRead:
    """One activity with its links."""
    require(actor, ENTITY, "read")
    return _read_many(session, [_get_row(session, activity_id)])[0]


def _check_kinds(kinds: Sequence[str] | None) -> list[str] | None:
    if not kinds:
        return None
    for index, kind in enumerate(kinds):
        if kind not in KINDS:
            raise BadRequest(
                f"Unknown activity kind '{kind}'; kinds are {', '.join(KINDS)}.",
                [FieldError(("query", "kind", index), "unknown kind")],
            )
    return sorted(set(kinds))


def _page(session: Session, found: list[tuple[int, datetime]], limit: int) -> Page[ActivityRead]:
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        moment, last_id = found[-1][1], found[-1][0]
        next_cursor = encode_cursor(
            session_settings(session).secret_key, queries.NEWEST_FIRST, moment, last_id
        )
    rows = _rows_in_order(session, [activity_id for activity_id, _ in found])
    return Page[ActivityRead](items=_read_many(session, rows), next_cursor=next_cursor)


def _after(session: Session, cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    moment, last_id = decode_cursor(
        session_settings(session).secret_key, queries.NEWEST_FIRST, cursor
    )
    if not isinstance(moment, datetime):
        raise BadRequest(
            "The cursor is not valid for this list; start again without it.",
            [FieldError(("query", "cursor"), "invalid cursor")],
        )
    return moment, last_id


def timeline_records(
    session: Session, record_type: str, record_id: int, actor: Actor
) -> dict[str, list[int]]:
    """The records whose activities a record's timeline shows: its own, and for a company
    those of its contacts and deals, for a contact those of the deals it takes part in."""
    entity = RECORD_ENTITIES.get(record_type)
    if entity is None:
        raise NotFound(f"There is no timeline for {record_type} records.")
    require(actor, entity, "read")
    exists = {
        "contact": contacts.existing_contact_ids,
        "company": companies.existing_company_ids,
        "deal": deals.existing_deal_ids,
    }[record_type]
    if not exists(session, [record_id]):
        raise NotFound(f"{record_type.title()} {record_id} does not exist.")
    records: dict[str, list[int]] = {record_type: [record_id]}
    if record_type == "company":
        records["contact"] = contacts.contact_ids_of_company(session, record_id)
        records["deal"] = deals.deal_ids_of_company(session, record_id)
    elif record_type == "contact":
        records["deal"] = deals.deal_ids_of_contact(session, record_id)
    return {t: ids for t, ids in records.items() if ids}


def _timeline_ids(
    session: Session,
    records: dict[str, list[int]],
    kinds: Sequence[str] | None,
    after: tuple[datetime, int] | None,
    limit: int,
    start: datetime | None,
    end: datetime | None,
) -> list[tuple[int, datetime]]:
    dialect = session.get_bind().dialect.name
    slices = queries.record_slices(records)
    if len(slices) == 1:
        return [
            (i, t)
            for i, t in session.execute(
                queries.timeline_page(slices[0], kinds, after, limit, start, end, dialect)
            )
        ]
    merged: set[tuple[datetime, int]] = set()
    for part in slices:
        merged.update(
            (t, i)
            for i, t in session.execute(
                queries.timeline_page(part, kinds, after, limit, start, end, dialect)
            )
        )
    return [(i, t) for t, i in heapq.nlargest(limit, merged)]


def timeline_ids(
    session: Session,
    records: dict[str, list[int]],
    kinds: Sequence[str] | None,
    after: tuple[datetime, int] | None,
    limit: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[tuple[int, datetime]]:
    """Up to ``limit`` (activity id, occurred_at) of these records, newest first, each once.

    One query in all but extreme cases; past ``IDS_PER_QUERY`` records, each slice's first
    ``limit`` are read and merged (the page is among them). Past ``WINDOWED_FROM`` records
    (a company with thousands of contacts), the page is first looked for among the weeks
    before the cursor, then months, then years: when a window holds a full page, no older
    activity can belong on it, and the index is read only that far back.
    """
    if sum(len(ids) for ids in records.values()) < queries.WINDOWED_FROM:
        return _timeline_ids(session, records, kinds, after, limit, start, end)
    now = utcnow()
    upper = after[0] if after else (end if end is not None and end < now else now)
    found: list[tuple[int, datetime]] = []
    for days in queries.WINDOW_DAYS:
        lower = upper - timedelta(days=days) if days is not None else None
        if lower is None or (start is not None and lower <= start):
            return _timeline_ids(session, records, kinds, after, limit, start, end)
        found = _timeline_ids(session, records, kinds, after, limit, lower, end)
        if len(found) >= limit:
            return found
    return found


def timeline(
    session: Session,
    record_type: str,
    record_id: int,
    actor: Actor,
    *,
    kinds: Sequence[str] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ActivityRead]:
    """A record's timeline, newest first: its own activities merged with those of the
    records under it (a company: its contacts' and deals'; a contact: its deals'), each
    activity once however many of them it is linked to."""
    require(actor, ENTITY, "read")
    wanted = _check_kinds(kinds)
    records = timeline_records(session, record_type, record_id, actor)
    found = timeline_ids(session, records, wanted, _after(session, cursor), limit + 1)
    return _page(session, found, limit)


def list_activities(
    session: Session,
    actor: Actor,
    *,
    kinds: Sequence[str] | None = None,
    owner_id: int | None = None,
    record: RecordRef | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ActivityRead]:
    """A page of activities, newest first, filtered by kind, owner, the record they are
    linked to (directly) and a date range ``[start, end)``."""
    require(actor, ENTITY, "read")
    stmt = queries.activity_page(
        kinds=_check_kinds(kinds),
        owner_id=owner_id,
        record=(record.type, record.id) if record else None,
        start=start,
        end=end,
        after=_after(session, cursor),
        limit=limit + 1,
    )
    return _page(session, [(i, t) for i, t in session.execute(stmt)], limit)


def activity_counts_by_owner(session: Session, first: date, end: date) -> dict[int, dict[str, int]]:
    """How many activities of each kind each owner has on the days from ``first`` up to, not
    including, ``end`` (UTC): ``{owner_id: {kind: count}}``, from the running counts per day
    (for the sales dashboard; the caller checks who may see it)."""
    counts: dict[int, dict[str, int]] = {}
    for owner_id, kind, count in session.execute(
        select(ActivityDayCount.owner_id, ActivityDayCount.kind, func.sum(ActivityDayCount.count))
        .where(ActivityDayCount.day >= first, ActivityDayCount.day < end)
        .group_by(ActivityDayCount.owner_id, ActivityDayCount.kind)
    ):
        if count:
            counts.setdefault(owner_id, {})[kind] = int(count)
    return counts


# ----------------------------------------------------------------------------- iCalendar


def _meetings(
    session: Session,
    actor: Actor,
    record: RecordRef | None,
    start: datetime | None,
    end: datetime | None,
    page_size: int = 500,
) -> Iterator[ActivityRead]:
    """Meetings of a record's timeline and/or a date range, newest first, page by page."""
    records = timeline_records(session, record.type, record.id, actor) if record else None
    after: tuple[datetime, int] | None = None
    while True:
        if records is not None:
            found = timeline_ids(
                session, records, ["meeting"], after, page_size + 1, start=start, end=end
            )
        else:
            stmt = queries.activity_page(
                kinds=["meeting"],
                owner_id=None,
                record=None,
                start=start,
                end=end,
                after=after,
                limit=page_size + 1,
            )
            found = [(i, t) for i, t in session.execute(stmt)]
        page = found[:page_size]
        yield from _read_many(session, _rows_in_order(session, [i for i, _ in page]))
        if len(found) <= page_size:
            return
        after = (page[-1][1], page[-1][0])


def export_meetings_ical(
    session: Session,
    actor: Actor,
    *,
    record: RecordRef | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> bytes:
    """Meetings as an iCalendar file: those on a record's timeline, those in ``[start, end)``,
    or both conditions at once. Each VEVENT keeps its UID (imported meetings their own, the
    others ``ichigen-activity-<id>@<host>``), so importing the file again updates them."""
    require(actor, ENTITY, "read")
    if start is not None and end is not None and end <= start:
        raise BadRequest(
            "The end of the range must be after its start.",
            [FieldError(("query", "to"), "before the start")],
        )
    meetings = list(_meetings(session, actor, record, start, end))
    owners = auth_service.users_by_id(session, {m.owner_id for m in meetings if m.owner_id})
    return ical.meetings_to_ical(
        meetings,
        host=ical.host_of(session_settings(session).public_url),
        organizers={i: (u.email, u.name) for i, u in owners.items()},
    )


@dataclass
class _Planned:
    event: ical.ParsedEvent
    result: IcalEventResult
    row: Activity | None = None
    values: dict[str, Any] | None = None
    links: list[RecordRef] | None = None


_OWN_UID = re.compile(r"^ichigen-activity-(\d{1,18})@")


def import_meetings_ical(
    session: Session,
    data: bytes,
    actor: Actor,
    *,
    record: RecordRef | None = None,
    dry_run: bool = False,
    timezone: str = "UTC",
) -> IcalImportReport:
    """Import an iCalendar file: each VEVENT becomes a meeting linked to the contacts whose
    addresses are among its attendees (and organizer), and to ``record`` when given.

    A meeting imported before (same UID) is updated, never duplicated. Times with a TZID
    are converted to UTC; floating times are read in ``timezone``; all-day events stay
    all-day. A malformed file is refused as a whole (422 naming the line and component) and
    nothing is written; events that cannot be linked to any record are skipped and
    reported.
    """
    require(actor, ENTITY, "write")
    if len(data) > MAX_ICAL_BYTES:
        raise BadRequest(
            f"The file is larger than {MAX_ICAL_BYTES // (1024 * 1024)} MB.",
            [FieldError(("file",), "too large")],
        )
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):
        raise ValidationFailed(
            f"Unknown time zone '{timezone}'.", [FieldError(("timezone",), "unknown time zone")]
        ) from None
    events = ical.parse_ical(data, zone)
    if len(events) > MAX_ICAL_EVENTS:
        raise ValidationFailed(
            f"The file holds {len(events)} events; at most {MAX_ICAL_EVENTS} are imported at once.",
            [FieldError(("file",), "too many events")],
        )
    errors: list[FieldError] = []
    if record is not None:
        _check_links(session, [record], errors)
        if errors:
            raise ValidationFailed(
                "The record to link the meetings to does not exist.",
                [FieldError(("record",), e.msg) for e in errors],
            )
    by_email = contacts.contact_ids_by_email(session, {a.email for e in events for a in e.people})
    uids = {e.uid for e in events}
    existing: dict[str, Activity] = {
        row.ical_uid: row
        for row in session.scalars(select(Activity).where(Activity.ical_uid.in_(uids)))
        if row.ical_uid
    }
    own_ids = {int(m.group(1)) for uid in uids if (m := _OWN_UID.match(uid))}
    own: dict[int, Activity] = (
        {
            r.id: r
            for r in session.scalars(
                select(Activity).where(Activity.id.in_(own_ids), Activity.kind == "meeting")
            )
        }
        if own_ids
        else {}
    )
    plans: list[_Planned] = []
    seen: set[str] = set()
    for event in events:
        result = IcalEventResult(
            uid=event.uid, line=event.line, status="skipped", subject=event.subject
        )
        plan = _Planned(event, result)
        plans.append(plan)
        if event.occurrence:
            result.reason = "a changed occurrence of a repeating event (its series is imported)"
            continue
        if event.uid in seen:
            result.reason = "the same UID appears earlier in the file"
            continue
        seen.add(event.uid)
        if event.cancelled:
            result.reason = "the event is cancelled"
            continue
        own_match = _OWN_UID.match(event.uid)
        row = existing.get(event.uid) or (own.get(int(own_match.group(1))) if own_match else None)
        matched = [
            RecordRef(type="contact", id=by_email[a.email])
            for a in event.people
            if a.email in by_email
        ]
        links = _unique_links(
            [*(_links_of(session, row.id) if row else []), *matched, *([record] if record else [])]
        )
        if not links:
            result.reason = "no attendee is a contact; choose a record to link it to"
            continue
        values: dict[str, Any] = {
            "subject": event.subject[:500],
            "body": event.description,
            "occurred_at": event.start,
            "ends_at": event.end,
            "all_day": event.all_day,
            "location": event.location,
            "attendees": [{"email": a.email, "name": a.name} for a in event.attendees],
        }
        problems: list[FieldError] = []
        if row is not None:
            try:
                team = _owner_team(session, row.owner_id)
                require_owner_access(actor, ENTITY, row.owner_id, team)
            except PermissionDenied as exc:
                result.reason = str(exc)
                continue
            merged = {name: getattr(row, name) for name in COLUMNS}
            merged.update(values)
            _normalise(session, "meeting", merged, set(values), merged, problems)
            values = merged
        else:
            values["owner_id"] = actor.user_id
            _normalise(session, "meeting", values, set(values), None, problems)
        for problem in problems:
            errors.append(
                FieldError(
                    ("file",),
                    f"line {event.line}, VEVENT {event.uid!r}: {problem.loc[0]}: {problem.msg}",
                )
            )
        plan.row, plan.values, plan.links = row, values, links
        result.links = links
        result.id = row.id if row else None
        result.reason = None
        result.status = "updated" if row else "created"
    if errors:
        raise ValidationFailed(
            "The calendar file has invalid events; nothing was imported.", errors
        )
    for plan in plans:
        if plan.values is None or plan.links is None:
            continue
        if plan.row is None:
            if not dry_run:
                created = _create(
                    session,
                    "meeting",
                    plan.values,
                    plan.links,
                    actor,
                    ical_uid=plan.event.uid[:300],
                )
                plan.result.id = created.id
        else:
            current = _snapshot(plan.row, map(_link_key, _links_of(session, plan.row.id)))
            wanted = {**current, **{k: plan.values[k] for k in COLUMNS}}
            wanted["links"] = sorted(map(_link_key, plan.links))
            if not diff(current, wanted):
                plan.result.status = "unchanged"
            elif not dry_run:
                _apply(session, plan.row, plan.values, plan.links, actor)
    if dry_run:
        session.rollback()
    else:
        session.commit()
    statuses = [p.result.status for p in plans]
    return IcalImportReport(
        created=statuses.count("created"),
        updated=statuses.count("updated"),
        unchanged=statuses.count("unchanged"),
        skipped=statuses.count("skipped"),
        dry_run=dry_run,
        events=[p.result for p in plans],
    )


# ----------------------------------------------------------------------------- many at once


def log_activities(
    session: Session, items: Sequence[ActivityCreate], actor: Actor, *, commit: bool = True
) -> list[int]:
    """Log many activities in one unit of work (demo data, imports): the checks of
    ``log_activity``, with one query per record type for all the links and one for the
    owners. Any invalid item refuses the whole batch (its errors under ``items[i]``) and
    nothing changes. Returns the new ids in the order of ``items``."""
    if not items:
        return []
    for kind in sorted({item.kind for item in items}):
        _require_write(actor, kind)
    now = utcnow()
    wanted: dict[str, set[int]] = {}
    for item in items:
        for ref in item.links:
            wanted.setdefault(ref.type, set()).add(ref.id)
    found = {
        "contact": contacts.existing_contact_ids(session, wanted.get("contact", ())),
        "company": companies.existing_company_ids(session, wanted.get("company", ())),
        "deal": deals.existing_deal_ids(session, wanted.get("deal", ())),
    }
    owner_ids = {item.owner_id for item in items if item.owner_id is not None}
    if actor.user_id is not None:
        owner_ids.add(actor.user_id)
    owners = auth_service.users_by_id(session, owner_ids)
    errors: list[FieldError] = []
    prepared: list[tuple[str, dict[str, Any], list[RecordRef], int | None]] = []
    for index, item in enumerate(items):
        own: list[FieldError] = []
        given = set(item.model_fields_set)
        values = item.model_dump(include=set(COLUMNS))
        values["occurred_at"] = item.occurred_at or now
        if values.get("owner_id") is None and "owner_id" not in given:
            values["owner_id"] = actor.user_id
        owner_id = values.get("owner_id")
        if owner_id is not None:
            owner = owners.get(owner_id)
            if owner is None:
                own.append(FieldError(("owner_id",), "no such user"))
            elif not owner.is_active:
                own.append(FieldError(("owner_id",), "the owner is an inactive user"))
        if not item.links:
            own.append(
                FieldError(
                    ("links",),
                    "an activity must be linked to at least one contact, company or deal",
                    "missing",
                )
            )
        for link_index, ref in enumerate(item.links):
            if ref.type == "ticket":
                own.append(FieldError(("links", link_index), "tickets cannot be linked yet"))
            elif ref.id not in found[ref.type]:
                own.append(FieldError(("links", link_index), f"{ref.type} {ref.id} does not exist"))
        # The owner is checked above, so the per-item check is told it is unchanged.
        _normalise(session, item.kind, values, given, {"owner_id": owner_id}, own)
        errors += [FieldError(("items", index, *e.loc), e.msg, e.type) for e in own]
        prepared.append((item.kind, values, _unique_links(item.links), item.task_id))
    seen_external: dict[str, int] = {}
    for index, (_kind, values, _links, _task) in enumerate(prepared):
        external_id = values.get("external_id")
        if external_id and seen_external.setdefault(external_id, index) != index:
            errors.append(FieldError(("items", index, "external_id"), "listed twice"))
    if errors:
        raise ValidationFailed("Some activities have invalid fields.", errors)
    for _kind, values, _links, _task in prepared:
        _check_external_id(session, values.get("external_id"), None)
    rows: list[dict[str, Any]] = [
        {
            "kind": kind,
            "task_id": task_id,
            "ical_uid": None,
            "custom": {},
            "version": 1,
            "created_at": now,
            "updated_at": now,
            **{name: values.get(name, _EMPTY.get(name)) for name in COLUMNS},
        }
        for kind, values, _links, task_id in prepared
    ]
    ids = insert_returning_ids(session, Activity.__table__, rows)  # type: ignore[arg-type]
    link_rows = [
        {
            "activity_id": activity_id,
            "record_type": ref.type,
            "record_id": ref.id,
            "kind": row["kind"],
            "occurred_at": row["occurred_at"],
        }
        for activity_id, row, (_kind, _values, links, _task) in zip(
            ids, rows, prepared, strict=True
        )
        for ref in links
    ]
    session.execute(insert(ActivityLink), link_rows)
    _adjust_counts(
        session, Counter(_count_key(r["owner_id"], r["kind"], r["occurred_at"]) for r in rows)
    )
    session.execute(
        insert(AuditEntry),
        [
            audit_row(
                actor,
                ENTITY,
                activity_id,
                "create",
                diff(
                    {},
                    {
                        **{name: row[name] for name in _AUDITED},
                        "links": sorted(map(_link_key, links)),
                    },
                ),
            )
            for activity_id, row, (_kind, _values, links, _task) in zip(
                ids, rows, prepared, strict=True
            )
        ],
    )
    if commit:
        session.commit()
    else:
        session.flush()
    return ids


def reassign_contact(session: Session, from_id: int, to_id: int) -> tuple[list[int], list[int]]:
    """Move contact ``from_id``'s timeline to contact ``to_id`` (merging contacts).

    Returns the ids of the activity links moved, and the ids of the activities whose link to
    ``from_id`` was dropped because they are linked to ``to_id`` already. Owners' activity
    counts do not change (the activities do not). The caller commits;
    :func:`undo_reassign_contact` puts them back.
    """
    rows = session.execute(
        select(ActivityLink.id, ActivityLink.activity_id).where(
            ActivityLink.record_type == "contact", ActivityLink.record_id == from_id
        )
    ).all()
    if not rows:
        return [], []
    already = set(
        session.scalars(
            select(ActivityLink.activity_id).where(
                ActivityLink.record_type == "contact",
                ActivityLink.record_id == to_id,
                ActivityLink.activity_id.in_({r.activity_id for r in rows}),
            )
        )
    )
    moved = sorted(r.id for r in rows if r.activity_id not in already)
    dropped = sorted(r.activity_id for r in rows if r.activity_id in already)
    if dropped:
        session.execute(
            delete(ActivityLink).where(
                ActivityLink.record_type == "contact",
                ActivityLink.record_id == from_id,
                ActivityLink.activity_id.in_(dropped),
            )
        )
    if moved:
        session.execute(
            update(ActivityLink).where(ActivityLink.id.in_(moved)).values(record_id=to_id)
        )
    return moved, dropped


def undo_reassign_contact(
    session: Session,
    moved: Sequence[int],
    dropped: Sequence[int],
    survivor_id: int,
    merged_id: int,
) -> list[int]:
    """Undo :func:`reassign_contact` from ``merged_id`` to ``survivor_id``: moved links still
    on the survivor go back, dropped links are added again for activities that still exist.
    Returns the ids of the links moved back."""
    back = list(
        session.scalars(
            select(ActivityLink.id).where(
                ActivityLink.id.in_(list(moved)),
                ActivityLink.record_type == "contact",
                ActivityLink.record_id == survivor_id,
            )
        )
    )
    if back:
        session.execute(
            update(ActivityLink).where(ActivityLink.id.in_(back)).values(record_id=merged_id)
        )
    if dropped:
        has = set(
            session.scalars(
                select(ActivityLink.activity_id).where(
                    ActivityLink.record_type == "contact",
                    ActivityLink.record_id == merged_id,
                    ActivityLink.activity_id.in_(list(dropped)),
                )
            )
        )
        rows = [
            {
                "activity_id": activity_id,
                "record_type": "contact",
                "record_id": merged_id,
                "kind": kind,
                "occurred_at": occurred_at,
            }
            for activity_id, kind, occurred_at in session.execute(
                select(Activity.id, Activity.kind, Activity.occurred_at).where(
                    Activity.id.in_(list(dropped))
                )
            )
            if activity_id not in has
        ]
        if rows:
            session.execute(insert(ActivityLink), rows)
    return sorted(back)
