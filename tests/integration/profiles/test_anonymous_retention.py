"""Anonymous profiles (never identified) are removed after their retention without a visit,
with their identifiers, edges, merges and traits; identified and recent ones are kept."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from ichigen.cli.main import app
from ichigen.collect.messages import Envelope, EventRow, Limits, normalise
from ichigen.collect.store import DuckDBEventStore, EventFilter
from ichigen.collect.store_process import ProcessEventStore
from ichigen.core.db import Database
from ichigen.core.settings import get_settings
from ichigen.identity import service as identity
from ichigen.identity.models import IdentityEdge, IdentityIdentifier, MergeLogEntry, Person
from ichigen.identity.schemas import IdentitySource
from ichigen.profiles import service as profiles
from ichigen.profiles.models import ProfileTrait, ProfileTraitChange
from ichigen.profiles.service import TraitObservation
from ichigen.web import app as server

NOW = datetime(2026, 11, 1, tzinfo=UTC)
SOURCE = IdentitySource(kind="event", ref="m")


def _seen(session: Session, person_id: int, days_ago: int) -> None:
    session.execute(
        update(Person)
        .where(or_person(person_id))
        .values(last_seen=NOW - timedelta(days=days_ago), first_seen=NOW - timedelta(days=900))
    )


def or_person(person_id: int) -> object:
    return (Person.id == person_id) | (Person.merged_into == person_id)


def _resolve(session: Session, *pairs: tuple[str, str]) -> int:
    return identity.resolve(session, list(pairs), SOURCE).person_id


def _traits(session: Session, person_id: int, **values: object) -> None:
    profiles.record_traits(
        session,
        [TraitObservation(person_id, dict(values), "event", "m", NOW - timedelta(days=500))],
    )


def _event(
    anonymous_id: str,
    person_id: int | None,
    user_id: str | None = None,
    n: int = 0,
    days_ago: int = 500,
) -> EventRow:
    made, problems = normalise(
        {
            "type": "track",
            "event": "Viewed",
            "anonymousId": anonymous_id,
            "userId": user_id,
            "messageId": f"{anonymous_id}-{user_id}-{n}",
        },
        Envelope(source_id=1, received_at=NOW - timedelta(days=days_ago)),
        Limits(),
    )
    assert made is not None, problems
    row = list(made)
    row[11] = None if person_id is None else str(person_id)  # the person, as resolved
    return tuple(row)


def _stored(events: DuckDBEventStore) -> list[str]:
    return sorted(e["message_id"] for e in events.find(EventFilter(), 100).events)


def _count(session: Session, model: type, *where: object) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_stale_anonymous_profiles_go_and_the_rest_stay(session: Session, tmp_path: Path) -> None:
    # An old visitor seen on two devices (two anonymous ids joined by an alias call).
    _resolve(session, ("anonymous_id", "old-phone"))
    _resolve(session, ("anonymous_id", "old-laptop"))
    old = _resolve(session, ("anonymous_id", "old-phone"), ("anonymous_id", "old-laptop"))
    _traits(session, old, plan="free", color="blue")
    _traits(session, old, plan="trial")
    lone = _resolve(session, ("anonymous_id", "lone"))
    recent = _resolve(session, ("anonymous_id", "recent"))
    # Identified long ago and not seen since: a customer, never removed by this.
    known = _resolve(session, ("anonymous_id", "known-device"), ("email", "k@example.jp"))
    _traits(session, known, plan="pro")
    for person_id, days in ((old, 500), (lone, 400), (recent, 30), (known, 800)):
        _seen(session, person_id, days)
    session.commit()
    assert _count(session, Person, Person.merged_into == old) == 1

    preview = profiles.purge_anonymous_profiles(session, 395, now=NOW, dry_run=True)
    assert (preview.profiles, preview.persons, preview.identifiers) == (2, 3, 3)
    assert _count(session, Person) == 5  # the dry run removed nothing

    events = DuckDBEventStore(tmp_path / "events.duckdb")
    absorbed = session.scalar(select(Person.id).where(Person.merged_into == old))
    events.append(
        [
            _event("old-phone", absorbed),  # stored under the person merged into ``old``
            _event("old-laptop", old),
            _event("old-laptop", None, n=1),  # stored without a person
            _event("lone", lone),
            _event("recent", recent),
            _event("known-device", known),
            # The same device later used by someone who signed in: not the visitor's alone,
            # whatever person it was stored under.
            _event("old-phone", None, user_id="u-7"),
            _event("old-laptop", old, user_id="u-9"),
        ],
        [],
    )

    result = profiles.purge_anonymous_profiles(session, 395, now=NOW, events=events)

    assert (result.profiles, result.persons, result.identifiers, result.edges) == (2, 3, 3, 1)
    assert result.events == 4
    assert _stored(events) == [
        "known-device-None-0",
        "old-laptop-u-9-0",
        "old-phone-u-7-0",
        "recent-None-0",
    ]
    events.close()
    remaining = {value for value in session.scalars(select(IdentityIdentifier.value))}
    assert remaining == {"recent", "known-device", "k@example.jp"}
    assert _count(session, Person) == 2
    assert _count(session, Person, Person.id.in_([old, lone])) == 0
    assert _count(session, ProfileTrait, ProfileTrait.person_id == old) == 0
    assert _count(session, ProfileTraitChange, ProfileTraitChange.person_id == old) == 0
    assert _count(session, ProfileTrait, ProfileTrait.person_id == known) == 1
    assert _count(session, IdentityEdge) == 1  # the known customer's own link
    # The merge log keeps one line about the purge and nothing about the removed persons.
    actions = list(session.scalars(select(MergeLogEntry.action)))
    assert "purged" in actions
    assert _count(session, MergeLogEntry, MergeLogEntry.other_person_id == old) == 0
    # A second run finds nothing more.
    again = profiles.purge_anonymous_profiles(session, 395, now=NOW)
    assert again.profiles == 0


class _VisitorComesBack:
    """The event store of a server where, just as the purge deletes a batch's events, a
    visitor of the batch comes back: the visit is resolved through another connection to
    the record store, which waits at most half a second for a lock (a purge that held the
    record store while the event store works would stall the server's ingest)."""

    def __init__(self, store: DuckDBEventStore, db: Database, person_id: int) -> None:
        self.store, self.db, self.person_id = store, db, person_id

    def delete_anonymous(self, anonymous_ids: list[str], before: datetime) -> int:
        sqlite = self.db.engine.dialect.name == "sqlite"
        with self.db.sessionmaker() as other:
            other.execute(
                text("PRAGMA busy_timeout=500" if sqlite else "SET LOCAL lock_timeout = '500ms'")
            )
            try:
                other.execute(
                    update(Person).where(Person.id == self.person_id).values(last_seen=NOW)
                )
                other.commit()
            finally:
                if sqlite:
                    other.execute(text("PRAGMA busy_timeout=10000"))
        self.store.append([_event("back", self.person_id, n=1, days_ago=0)], [])
        return self.store.delete_anonymous(anonymous_ids, before)


def test_a_visitor_coming_back_during_the_purge_keeps_the_profile_and_the_visit(
    db: Database, session: Session, tmp_path: Path
) -> None:
    back = _resolve(session, ("anonymous_id", "back"))
    gone = _resolve(session, ("anonymous_id", "gone"))
    for person_id in (back, gone):
        _seen(session, person_id, 400)
    session.commit()
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    store.append([_event("back", back), _event("gone", gone)], [])

    result = profiles.purge_anonymous_profiles(
        session, 395, now=NOW, events=_VisitorComesBack(store, db, back)
    )

    # Both visitors' events from before the cutoff went; the visit since stays.
    assert result.events == 2
    assert _stored(store) == ["back-None-1"]
    store.close()
    assert result.profiles == 1
    assert identity.person_of(session, "anonymous_id", "gone") is None
    assert identity.person_of(session, "anonymous_id", "back") == back


def test_a_returning_visitor_gets_a_new_profile_in_a_process_that_remembered_it(
    session: Session,
) -> None:
    known = identity.KnownIdentifiers(split_check_seconds=0)

    def source(_: int) -> IdentitySource:
        return SOURCE

    (first,) = identity.resolve_many(session, [[("anonymous_id", "back")]], source, known=known)
    assert first is not None
    _seen(session, first, 400)
    session.commit()
    profiles.purge_anonymous_profiles(session, 395, now=NOW)

    (second,) = identity.resolve_many(session, [[("anonymous_id", "back")]], source, known=known)
    session.commit()

    assert second is not None and second != first
    assert session.get(Person, second) is not None
    assert identity.person_by_reference(session, "anonymous_id:back").id == second


def test_the_command_counts_then_purges_with_the_configured_retention(
    cli: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ICHIGEN_ANONYMOUS_PROFILE_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    with cli.sessionmaker() as session:
        gone = _resolve(session, ("anonymous_id", "gone"))
        _resolve(session, ("anonymous_id", "stays"))
        # Seen 40 days before the real now: past the 30 days configured.
        session.execute(
            update(Person)
            .where(Person.id == gone)
            .values(last_seen=datetime.now(UTC) - timedelta(days=40))
        )
        session.commit()

    events = DuckDBEventStore(tmp_path / "events.duckdb")
    events.append([_event("gone", gone), _event("stays", None)], [])
    events.close()

    dry = CliRunner().invoke(app, ["profiles", "purge-anonymous", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "1 would be removed" in dry.stdout
    done = CliRunner().invoke(app, ["profiles", "purge-anonymous"])
    assert done.exit_code == 0, done.output
    assert "1 removed" in done.stdout and "1 events" in done.stdout
    events = DuckDBEventStore(tmp_path / "events.duckdb")
    assert _stored(events) == ["stays-None-0"]
    events.close()
    with cli.sessionmaker() as session:
        assert identity.person_of(session, "anonymous_id", "gone") is None
        assert identity.person_of(session, "anonymous_id", "stays") is not None
    bad = CliRunner().invoke(app, ["profiles", "purge-anonymous", "--days", "0"])
    assert bad.exit_code == 2


def test_the_server_sweeps_at_start(db: Database, tmp_path: Path) -> None:
    with db.sessionmaker() as session:
        gone = _resolve(session, ("anonymous_id", "swept"))
        session.execute(
            update(Person)
            .where(Person.id == gone)
            .values(last_seen=datetime.now(UTC) - timedelta(days=400))
        )
        session.commit()

    async def serve_one_sweep() -> None:
        loop = asyncio.create_task(server._profile_retention_loop(db, 395, events, every=60))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db.sessionmaker() as session:
                if identity.person_of(session, "anonymous_id", "swept") is None:
                    break
            await asyncio.sleep(0.05)
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop

    # The server's event store, in its own process.
    events = ProcessEventStore(tmp_path / "events.duckdb")
    try:
        events.append([_event("swept", gone), _event("other", None)], [])
        asyncio.run(serve_one_sweep())
        with db.sessionmaker() as session:
            assert identity.person_of(session, "anonymous_id", "swept") is None
        assert [e["message_id"] for e in events.find(EventFilter(), 10).events] == ["other-None-0"]
    finally:
        events.close()
