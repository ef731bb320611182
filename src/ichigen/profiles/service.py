"""Unified profiles: tracked traits and their history, the precedence that picks each trait's
value, the CRM contact a person is, and the link from CRM contacts into the identity graph.

Precedence: a value typed into the CRM contact beats any tracked value; among tracked values
(events and imports) the one observed last wins. Every distinct value a tracked trait took is
kept with its source. Traits stay under the person they were resolved to on arrival; reads
gather those of every person merged into the survivor, so a merge needs no rewrite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ichigen.collect import service as collect
from ichigen.collect.schemas import EventRead
from ichigen.collect.store import EventFilter, EventStore
from ichigen.core.audit import Actor
from ichigen.core.clock import utcnow
from ichigen.core.errors import NotFound, PermissionDenied
from ichigen.crm.activities import service as activities
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactIdentifiers, ContactRead
from ichigen.identity import retention
from ichigen.identity import service as identity
from ichigen.identity.models import IdentityIdentifier
from ichigen.identity.normalise import DEFAULT_RULES, IdentityRules
from ichigen.identity.schemas import IdentitySource, PersonRead
from ichigen.profiles.models import ProfileSyncMark, ProfileTrait, ProfileTraitChange
from ichigen.profiles.schemas import (
    ConsentState,
    ContactSummary,
    ProfileRead,
    TimelineEntry,
    TraitChangeRead,
    TraitRead,
)

#: The longest trait name kept; longer ones are left out.
MAX_TRAIT_NAME = 200
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class TraitObservation:
    """The traits one message or import row carried for one person, and when."""

    person_id: int
    traits: dict[str, Any]
    source_kind: str
    source_ref: str | None
    observed_at: datetime


def record_traits(session: Session, observations: Sequence[TraitObservation]) -> None:
    """Keep the traits observed: each person's newest value per trait, and a history row for
    each value that differs from the one before. An observation older than the stored value
    goes to the history only. The caller commits."""
    if not observations:
        return
    person_ids = sorted({o.person_id for o in observations})
    current: dict[tuple[int, str], tuple[int | None, Any, datetime]] = {}
    for start in range(0, len(person_ids), _CHUNK):
        for stored in session.execute(
            select(
                ProfileTrait.id,
                ProfileTrait.person_id,
                ProfileTrait.name,
                ProfileTrait.value,
                ProfileTrait.observed_at,
            ).where(ProfileTrait.person_id.in_(person_ids[start : start + _CHUNK]))
        ):
            current[(stored.person_id, stored.name)] = (
                stored.id,
                stored.value,
                stored.observed_at,
            )
    inserts: dict[tuple[int, str], dict[str, Any]] = {}
    updates: dict[int, dict[str, Any]] = {}
    changes: list[dict[str, Any]] = []
    for seen in sorted(observations, key=lambda o: o.observed_at):
        for name, value in seen.traits.items():
            if not name or len(name) > MAX_TRAIT_NAME:
                continue
            key = (seen.person_id, name)
            have = current.get(key)
            if have is not None and have[1] == value:
                continue
            row = {
                "person_id": seen.person_id,
                "name": name,
                "value": value,
                "source_kind": seen.source_kind,
                "source_ref": seen.source_ref,
                "observed_at": seen.observed_at,
            }
            changes.append(row)
            if have is not None and seen.observed_at < have[2]:
                continue
            if have is None or have[0] is None:
                inserts[key] = row
                current[key] = (None, value, seen.observed_at)
            else:
                updates[have[0]] = {"id": have[0], **row}
                current[key] = (have[0], value, seen.observed_at)
    if inserts:
        session.execute(insert(ProfileTrait), list(inserts.values()))
    if updates:
        session.execute(update(ProfileTrait), list(updates.values()))
    if changes:
        session.execute(insert(ProfileTraitChange), changes)


def _tracked_traits(session: Session, person_ids: Sequence[int]) -> dict[str, ProfileTrait]:
    """The newest tracked value of each trait among these persons."""
    newest: dict[str, ProfileTrait] = {}
    for row in session.scalars(select(ProfileTrait).where(ProfileTrait.person_id.in_(person_ids))):
        have = newest.get(row.name)
        if have is None or (row.observed_at, row.id) > (have.observed_at, have.id):
            newest[row.name] = row
    return newest


def crm_traits(contact: ContactRead) -> dict[str, Any]:
    """A contact's fields under the Segment trait names they correspond to (only those set)."""
    address = {
        key: value
        for key, value in (
            ("street", contact.street),
            ("city", contact.city),
            ("state", contact.region),
            ("postalCode", contact.postal_code),
            ("country", contact.country),
        )
        if value
    }
    traits: dict[str, Any] = {
        "firstName": contact.first_name,
        "lastName": contact.last_name,
        "name": contact.full_name or None,
        "email": contact.primary_email,
        "phone": contact.primary_phone,
        "title": contact.job_title,
        "company": contact.company.name if contact.company is not None else None,
        "address": address or None,
    }
    return {name: value for name, value in traits.items() if value is not None}


def _contact_of(session: Session, identifiers: Sequence[Any], actor: Actor) -> ContactRead | None:
    """The CRM contact a person is (its ``crm_contact`` identifier), when the actor may see
    it; the lowest contact id when several are linked."""
    ids = sorted(int(i.value) for i in identifiers if i.type == "crm_contact" and i.value.isdigit())
    for contact_id in ids:
        try:
            return contacts.get_contact(session, contact_id, actor)
        except (NotFound, PermissionDenied):
            continue
    return None


def _summary(contact: ContactRead) -> ContactSummary:
    return ContactSummary(
        id=contact.id,
        full_name=contact.full_name,
        primary_email=contact.primary_email,
        primary_phone=contact.primary_phone,
        job_title=contact.job_title,
        company_id=contact.company_id,
        company_name=contact.company.name if contact.company is not None else None,
        owner_id=contact.owner_id,
        lifecycle_stage=contact.lifecycle_stage,
    )


def _traits(contact: ContactRead | None, tracked: dict[str, ProfileTrait]) -> list[TraitRead]:
    typed = crm_traits(contact) if contact is not None else {}
    traits: list[TraitRead] = []
    for name in sorted(set(typed) | set(tracked)):
        seen = tracked.get(name)
        if name in typed and contact is not None:
            traits.append(
                TraitRead(
                    name=name,
                    value=typed[name],
                    source_kind="crm",
                    source_ref=f"contact:{contact.id}",
                    observed_at=contact.updated_at,
                    tracked_value=(
                        seen.value if seen is not None and seen.value != typed[name] else None
                    ),
                )
            )
        elif seen is not None:
            traits.append(
                TraitRead(
                    name=name,
                    value=seen.value,
                    source_kind="import" if seen.source_kind == "import" else "event",
                    source_ref=seen.source_ref,
                    observed_at=seen.observed_at,
                )
            )
    return traits


def profile_of(session: Session, person: PersonRead, actor: Actor) -> ProfileRead:
    """The unified profile of a surviving person."""
    merged_ids = identity.merged_person_ids(session, person.id)
    contact = _contact_of(session, person.identifiers, actor)
    tracked = _tracked_traits(session, [person.id, *merged_ids])
    consent = ConsentState()
    if contact is not None:
        consent = ConsentState(
            do_not_email=contact.do_not_email,
            do_not_call=contact.do_not_call,
            do_not_sms=contact.do_not_sms,
        )
    known_types = {i.type for i in person.identifiers}
    return ProfileRead(
        person_id=person.id,
        anonymous=not (known_types - {"anonymous_id"}),
        created_at=person.created_at,
        first_seen=person.first_seen,
        last_seen=person.last_seen,
        identifiers=person.identifiers,
        merged=person.merged,
        merged_person_ids=merged_ids,
        traits=_traits(contact, tracked),
        contact=_summary(contact) if contact is not None else None,
        consent=consent,
    )


def read_profile(
    session: Session, ref: str, actor: Actor, rules: IdentityRules = DEFAULT_RULES
) -> ProfileRead:
    """The profile a reference names: a person id, or any identifier as ``type:value``."""
    return profile_of(session, identity.person_by_reference(session, ref, rules), actor)


def profile_of_contact(session: Session, contact_id: int, actor: Actor) -> ProfileRead | None:
    """The profile of a CRM contact (linking it first if the graph has not yet), or None
    when the contact has nothing that can link."""
    contact = contacts.get_contact(session, contact_id, actor)
    person_id = identity.person_of(session, "crm_contact", str(contact.id))
    if person_id is None:
        link_contacts(session, [contact.id])
        person_id = identity.person_of(session, "crm_contact", str(contact.id))
    if person_id is None:
        return None
    return profile_of(session, identity.read_person(session, person_id), actor)


def trait_history(
    session: Session, person: PersonRead, name: str | None = None, limit: int = 200
) -> list[TraitChangeRead]:
    """The values tracked traits took (of one trait, or all), newest first."""
    ids = [person.id, *identity.merged_person_ids(session, person.id)]
    stmt = select(ProfileTraitChange).where(ProfileTraitChange.person_id.in_(ids))
    if name is not None:
        stmt = stmt.where(ProfileTraitChange.name == name)
    stmt = stmt.order_by(ProfileTraitChange.observed_at.desc(), ProfileTraitChange.id.desc())
    return [TraitChangeRead.model_validate(row) for row in session.scalars(stmt.limit(limit))]


# -- CRM contacts into the identity graph --------------------------------------------------

CONTACTS_MARK = "identity.crm_contacts"


def _contact_messages(
    changed: Sequence[ContactIdentifiers],
) -> tuple[list[list[tuple[str, str]]], Callable[[int], IdentitySource]]:
    messages = [
        [
            ("crm_contact", str(contact.id)),
            *(("email", email) for email in contact.emails),
            *(("phone", phone) for phone in contact.phones),
        ]
        for contact in changed
    ]

    def source_of(index: int) -> IdentitySource:
        contact = changed[index]
        return IdentitySource(kind="crm", ref=f"contact:{contact.id}:v{contact.version}")

    return messages, source_of


def link_contacts(
    session: Session, contact_ids: Sequence[int], rules: IdentityRules = DEFAULT_RULES
) -> None:
    """Link these contacts' e-mail addresses and phone numbers to their persons now (a
    contact page opened before the background pass reached it). Unknown ids are skipped."""
    found: list[ContactIdentifiers] = []
    for contact_id in sorted(set(contact_ids)):
        try:
            contact = contacts.get_contact(session, contact_id, Actor.system("identity"))
        except NotFound:
            continue
        found.append(
            ContactIdentifiers(
                id=contact.id,
                version=contact.version,
                updated_at=contact.updated_at,
                emails=[e.email for e in contact.emails],
                phones=[p.number for p in contact.phones],
            )
        )
    identity.resolve_many(session, *_contact_messages(found), rules)


#: Where the contact-link mark starts (``last_id`` 0: nothing linked yet).
_MARK_START = datetime(1970, 1, 1, tzinfo=UTC)


def link_changed_contacts(
    session: Session, limit: int = 1000, rules: IdentityRules = DEFAULT_RULES
) -> int:
    """Link the e-mail addresses and phone numbers of contacts created or edited since the
    last pass into the identity graph (each contact is the identifier ``crm_contact``), and
    move the mark on. Returns how many contacts were read; the caller commits.

    Every worker of a server runs this pass; they take turns: the pass starts by writing its
    mark (the row's lock on PostgreSQL, the file's write lock on SQLite), so a second pass
    waits for the first to commit and then starts after what it linked."""
    session.execute(
        update(ProfileSyncMark)
        .where(ProfileSyncMark.name == CONTACTS_MARK)
        .values(last_id=ProfileSyncMark.last_id)
        .execution_options(synchronize_session=False)
    )
    mark = session.get(ProfileSyncMark, CONTACTS_MARK, populate_existing=True)
    if mark is None:
        # The first pass makes the mark (at the start), so that a concurrent first pass
        # waits on that row as well instead of linking the same contacts.
        insert_mark = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        session.execute(
            insert_mark(ProfileSyncMark)
            .values(name=CONTACTS_MARK, changed_at=_MARK_START, last_id=0)
            .on_conflict_do_nothing()
        )
        mark = session.get(
            ProfileSyncMark, CONTACTS_MARK, with_for_update=True, populate_existing=True
        )
    after = None if mark is None or mark.last_id == 0 else (mark.changed_at, mark.last_id)
    changed = contacts.contacts_changed_since(session, after, limit)
    if not changed:
        return 0
    identity.resolve_many(session, *_contact_messages(changed), rules)
    last = changed[-1]
    if mark is None:
        mark = ProfileSyncMark(name=CONTACTS_MARK, changed_at=last.updated_at, last_id=last.id)
        session.add(mark)
    else:
        mark.changed_at, mark.last_id = last.updated_at, last.id
    session.flush()
    return len(changed)


# -- The merged timeline --------------------------------------------------------------------


def _event_title(event: EventRead) -> str:
    if event.type == "track":
        return event.event or "track"
    if event.type in ("page", "screen"):
        return " / ".join(t for t in (event.category, event.name) if t) or event.type
    if event.type == "group":
        return event.group_id or "group"
    return event.type


def _event_detail(event: EventRead) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    if event.properties:
        detail["properties"] = event.properties
    if event.traits and event.type in ("identify", "group"):
        detail["traits"] = event.traits
    url = (event.context or {}).get("page", {}) if isinstance(event.context, dict) else {}
    if isinstance(url, dict) and url.get("url"):
        detail["url"] = url["url"]
    return detail


def person_events(
    store: EventStore | None, person: PersonRead, actor: Actor, limit: int = 50
) -> list[EventRead]:
    """A person's newest events, found by every user id and anonymous id it holds (so they
    follow merges and splits); empty without an event store or the right to read events."""
    user_ids = tuple(i.value for i in person.identifiers if i.type == "user_id")
    anonymous_ids = tuple(i.value for i in person.identifiers if i.type == "anonymous_id")
    if store is None or not (user_ids or anonymous_ids):
        return []
    try:
        found, _ = collect.find_events(
            store, actor, EventFilter(user_ids=user_ids, anonymous_ids=anonymous_ids), limit
        )
    except PermissionDenied:
        return []
    return found


def timeline(
    session: Session,
    events: Sequence[EventRead],
    profile: ProfileRead,
    actor: Actor,
    limit: int = 50,
) -> list[TimelineEntry]:
    """One timeline of a person, newest first: its tracked events (``person_events``) and
    the CRM activities of the linked contact (and of its deals)."""
    entries = [
        TimelineEntry(
            kind="event",
            at=event.timestamp,
            type=event.type,
            title=_event_title(event),
            detail=_event_detail(event),
            ref=event.message_id,
        )
        for event in events[:limit]
    ]
    if profile.contact is not None:
        try:
            page = activities.timeline(session, "contact", profile.contact.id, actor, limit=limit)
        except PermissionDenied:
            page = None
        for activity in page.items if page is not None else []:
            entries.append(
                TimelineEntry(
                    kind="activity",
                    at=activity.occurred_at,
                    type=activity.kind,
                    title=activity.subject,
                    detail={"body": activity.body[:500]} if activity.body else {},
                    ref=str(activity.id),
                )
            )
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]


def tracked_consent(events: Sequence[EventRead]) -> tuple[dict[str, Any] | None, datetime | None]:
    """The consent the newest of these events carried, and when."""
    for event in sorted(events, key=lambda e: e.timestamp, reverse=True):
        if event.consent:
            return event.consent, event.timestamp
    return None, None


def purge_anonymous_profiles(
    session: Session,
    days: int,
    *,
    now: datetime | None = None,
    batch: int = 5_000,
    dry_run: bool = False,
    events: EventStore | None = None,
) -> retention.PurgeResult:
    """Remove anonymous profiles (never identified) not seen for ``days`` days, with their
    traits and trait history, a batch per transaction, and their events from ``events``.
    Each batch's events go first, outside the record store's transaction (if they cannot
    go, the batch's profiles stay, to be tried again); then the profiles still not seen
    since, in one transaction. With ``dry_run`` nothing is removed and the counts say what
    would be."""
    if days < 1:
        raise ValueError("days must be at least 1")
    seen_before = (now or utcnow()) - timedelta(days=days)
    if dry_run:
        survivors = retention.stale_anonymous(session, seen_before, limit=10**9)
        absorbed = retention.merged_into(session, survivors)
        count = (
            session.scalar(
                select(func.count())
                .select_from(IdentityIdentifier)
                .where(IdentityIdentifier.person_id.in_(survivors))
            )
            if survivors
            else 0
        )
        return retention.PurgeResult(
            profiles=len(survivors),
            persons=len(survivors) + len(absorbed),
            identifiers=int(count or 0),
            edges=0,
            seen_before=seen_before,
            dry_run=True,
        )
    total = retention.PurgeResult(
        profiles=0, persons=0, identifiers=0, edges=0, seen_before=seen_before
    )
    while True:
        candidates = retention.stale_anonymous(session, seen_before, batch)
        if not candidates:
            break
        removed_events = 0
        if events is not None:
            # Their events first, with nothing of the record store held: the event store
            # loads what it has acknowledged before it deletes, and resolving those events'
            # persons writes to the record store. Only events from before the cutoff go: a
            # visitor coming back meanwhile keeps the visit (and keeps the profile, below).
            anonymous_ids = _anonymous_ids(
                session, [*candidates, *retention.merged_into(session, candidates)]
            )
            session.rollback()
            removed_events = events.delete_anonymous(anonymous_ids, seen_before)
        survivors = retention.stale_anonymous(session, seen_before, batch, among=candidates)
        persons = [*survivors, *retention.merged_into(session, survivors)]
        for start in range(0, len(persons), _CHUNK):
            chunk = persons[start : start + _CHUNK]
            session.execute(
                delete(ProfileTraitChange).where(ProfileTraitChange.person_id.in_(chunk))
            )
            session.execute(delete(ProfileTrait).where(ProfileTrait.person_id.in_(chunk)))
        done = retention.purge_persons(session, survivors, seen_before)
        session.commit()
        total = total.model_copy(
            update={
                "profiles": total.profiles + done.profiles,
                "persons": total.persons + done.persons,
                "identifiers": total.identifiers + done.identifiers,
                "edges": total.edges + done.edges,
                "events": total.events + removed_events,
            }
        )
        if len(candidates) < batch:
            break
    return total


def _anonymous_ids(session: Session, persons: Sequence[int]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(persons), _CHUNK):
        found.extend(
            session.scalars(
                select(IdentityIdentifier.value).where(
                    IdentityIdentifier.person_id.in_(persons[start : start + _CHUNK]),
                    IdentityIdentifier.type == "anonymous_id",
                )
            )
        )
    return found
