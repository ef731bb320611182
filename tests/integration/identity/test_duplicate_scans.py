"""The duplicate scan's history: each scan recorded with its outcome, one scan at a time (a
dead scan's row does not block for ever), and the scheduled scan's decision of when it is due."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, contact

from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.core.db import Database
from ichigen.core.errors import Conflict, NotFound
from ichigen.identity import duplicates
from ichigen.identity.duplicates import SCAN_LEASE, SCAN_RETRY, ScanStopped
from ichigen.identity.matching import MatchSettings
from ichigen.identity.models import DuplicatePair, DuplicateScan
from ichigen.web import app as server

SETTINGS = MatchSettings(threads=2)
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def manager(session: Session) -> Actor:
    return actor(session, "manager@example.com", "manager")


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    fixed = FixedClock(T0)
    set_clock(fixed)
    yield fixed
    set_clock(SystemClock())


def _twins(session: Session, by: Actor) -> None:
    """Four contacts: two different people, and one person typed twice."""
    contact(session, by, last_name="山田", first_name="太郎", email="a@x.jp")
    contact(session, by, last_name="鈴木", first_name="花子", email="b@y.jp")
    contact(session, by, last_name="佐藤", email="c@z.jp", phone="090-1111-2222")
    contact(session, by, last_name="佐藤", email="d@z.jp", phone="090-1111-2222")


def _stop(step: str, done: int, total: int) -> None:
    raise ScanStopped("stopped on purpose")


def _scan_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(DuplicateScan)) or 0)


def test_each_scan_is_recorded_with_what_it_found(session: Session, manager: Actor) -> None:
    _twins(session, manager)
    first = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    row = duplicates.get_scan(session, first.scan_id, manager)
    assert (row.status, row.trigger, row.started_by, row.error) == (
        "finished",
        "manual",
        "manager@example.com",
        None,
    )
    assert (row.contacts, row.candidates, row.queued, row.updated, row.already_decided) == (
        first.contacts,
        first.candidates,
        first.queued,
        first.updated,
        first.already_decided,
    )
    assert row.contacts == 4 and row.queued == len(list(session.scalars(select(DuplicatePair))))
    assert row.threshold == SETTINGS.threshold and row.seconds == first.seconds
    assert row.finished_at is not None and row.finished_at >= row.started_at

    second = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert second.scan_id != first.scan_id and second.queued == 0
    assert duplicates.get_scan(session, second.scan_id, manager).updated == first.queued

    newest = duplicates.list_scans(session, manager, limit=1)
    assert [s.id for s in newest.items] == [second.scan_id] and newest.next_offset == 1
    older = duplicates.list_scans(session, manager, offset=1, limit=1)
    assert [s.id for s in older.items] == [first.scan_id] and older.next_offset is None
    with pytest.raises(NotFound):
        duplicates.get_scan(session, 987654, manager)


def test_a_scan_is_refused_while_another_runs(db: Database, manager: Actor) -> None:
    refused: list[Conflict] = []

    def try_a_second_scan(step: str, done: int, total: int) -> None:
        if step == "load" and not refused:
            with db.sessionmaker() as other, pytest.raises(Conflict) as caught:
                duplicates.scan_contacts(other, Actor.system("cli"), settings=SETTINGS)
            refused.append(caught.value)

    with db.sessionmaker() as session:
        _twins(session, manager)
        result = duplicates.scan_contacts(
            session, manager, settings=SETTINGS, progress=try_a_second_scan
        )
        assert len(refused) == 1
        assert refused[0].status == 409
        assert f"scan {result.scan_id} is running" in refused[0].detail
        assert "manager@example.com" in refused[0].detail
        # The refused attempt left no trace; the first one finished normally.
        assert [s.id for s in duplicates.list_scans(session, manager).items] == [result.scan_id]
        assert duplicates.get_scan(session, result.scan_id, manager).status == "finished"
        # Once it has finished, the next scan goes ahead.
        assert duplicates.scan_contacts(session, manager, settings=SETTINGS).scan_id > 0


def test_the_store_allows_one_running_scan_and_a_lost_race_is_a_conflict(
    session: Session, manager: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        session.add(
            DuplicateScan(
                started_at=T0, status="running", trigger="manual", started_by="x", threshold=0.9
            )
        )
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()

    # Another process records its running scan between this one's look and its write.
    other = DuplicateScan(
        started_at=datetime.now(UTC),
        status="running",
        trigger="scheduled",
        started_by="w2",
        threshold=0.9,
    )
    looked: list[int] = []
    real_running_scan = duplicates._running_scan

    def late_look(s: Session) -> DuplicateScan | None:
        if not looked:
            looked.append(1)
            with Session(bind=s.get_bind()) as elsewhere:
                elsewhere.add(other)
                elsewhere.commit()
            return None
        return real_running_scan(s)

    monkeypatch.setattr(duplicates, "_running_scan", late_look)
    with pytest.raises(Conflict, match="by w2"):
        duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert _scan_count(session) == 1


def test_a_scan_left_running_by_a_dead_process_does_not_block(
    session: Session, manager: Actor, clock: FixedClock
) -> None:
    # What a worker that died mid-scan leaves behind: a running row that never ends.
    dead = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    session.execute(
        update(DuplicateScan)
        .where(DuplicateScan.id == dead.scan_id)
        .values(status="running", finished_at=None)
    )
    session.commit()

    clock.at = T0 + SCAN_LEASE - timedelta(minutes=1)
    with pytest.raises(Conflict):
        duplicates.scan_contacts(session, manager, settings=SETTINGS)

    # Its last heartbeat keeps it alive a lease longer.
    last_beat = T0 + timedelta(minutes=10)
    session.execute(
        update(DuplicateScan).where(DuplicateScan.id == dead.scan_id).values(heartbeat_at=last_beat)
    )
    session.commit()
    clock.at = T0 + SCAN_LEASE + timedelta(minutes=1)
    with pytest.raises(Conflict):
        duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert not duplicates.scan_schedule(session, manager, 24).due

    clock.at = last_beat + SCAN_LEASE + timedelta(minutes=1)
    assert duplicates.scan_schedule(session, manager, 24).due
    fresh = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    old = duplicates.get_scan(session, dead.scan_id, manager)
    assert old.status == "failed" and old.error is not None and "abandoned" in old.error
    assert old.finished_at == clock.at
    assert duplicates.get_scan(session, fresh.scan_id, manager).status == "finished"


def test_a_failed_scan_is_recorded_as_failed_and_changes_no_pair(
    session: Session, manager: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _twins(session, manager)

    def out_of_memory(records: object, settings: object) -> list[object]:
        raise RuntimeError("DuckDB ran out of memory")

    monkeypatch.setattr(duplicates, "find_duplicates", out_of_memory)
    with pytest.raises(RuntimeError):
        duplicates.scan_contacts(session, manager, settings=SETTINGS)
    failed = duplicates.list_scans(session, manager).items[0]
    assert failed.status == "failed"
    assert failed.error == "RuntimeError: DuckDB ran out of memory"
    assert failed.finished_at is not None and failed.seconds is not None
    assert failed.contacts is None and failed.queued is None
    assert session.scalar(select(func.count()).select_from(DuplicatePair)) == 0

    # A scan asked to stop (the server shutting down) is recorded the same way.
    with pytest.raises(ScanStopped):
        duplicates.scan_contacts(session, manager, settings=SETTINGS, progress=_stop)
    stopped = duplicates.list_scans(session, manager).items[0]
    assert stopped.status == "failed" and stopped.error == "ScanStopped: stopped on purpose"

    # Neither blocks the next scan.
    monkeypatch.undo()
    done = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert done.contacts == 4 and done.queued == session.scalar(
        select(func.count()).select_from(DuplicatePair)
    )
    assert duplicates.get_scan(session, done.scan_id, manager).status == "finished"


def test_when_a_scheduled_scan_is_due(session: Session, manager: Actor, clock: FixedClock) -> None:
    never = duplicates.scan_schedule(session, manager, 24)
    assert never.due and never.next_at == T0 and never.last is None
    off = duplicates.scan_schedule(session, manager, 0)
    assert not off.due and off.next_at is None

    # A manual scan counts: the next scheduled one is due a day after it.
    scan = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    schedule = duplicates.scan_schedule(session, manager, 24)
    assert schedule.next_at == T0 + timedelta(hours=24) and not schedule.due
    assert schedule.last is not None and schedule.last.id == scan.scan_id
    later = T0 + timedelta(hours=23, minutes=59)
    assert not duplicates.scan_schedule(session, manager, 24, now=later).due
    assert duplicates.scan_schedule(session, manager, 24, now=T0 + timedelta(hours=24)).due
    assert duplicates.scan_schedule(session, manager, 1.5, now=T0 + timedelta(hours=2)).due

    # A failed scan: retried after SCAN_RETRY (or the interval, if shorter), not at once.
    clock.at = T0 + timedelta(hours=30)
    with pytest.raises(ScanStopped):
        duplicates.scan_contacts(session, manager, settings=SETTINGS, progress=_stop)
    failed = duplicates.scan_schedule(session, manager, 24)
    assert failed.last is not None and failed.last.status == "failed"
    assert failed.last_finished is not None and failed.last_finished.id == scan.scan_id
    assert failed.next_at == clock.at + SCAN_RETRY and not failed.due
    assert duplicates.scan_schedule(session, manager, 24, now=clock.at + SCAN_RETRY).due
    half = duplicates.scan_schedule(session, manager, 0.5)
    assert half.next_at == clock.at + timedelta(minutes=30)


def test_no_scheduled_scan_while_one_runs(db: Database, session: Session, manager: Actor) -> None:
    seen: list[bool] = []

    def another_worker_looks(step: str, done: int, total: int) -> None:
        if step == "load" and not seen:
            with db.sessionmaker() as worker:
                schedule = duplicates.scan_schedule(worker, manager, 0.0001)
                assert schedule.running is not None and schedule.running.trigger == "manual"
                seen.append(schedule.due)
                seen.append(duplicates.run_scheduled_scan(worker, 0.0001) is None)

    contact(session, manager, last_name="山田")
    duplicates.scan_contacts(session, manager, settings=SETTINGS, progress=another_worker_looks)
    assert seen == [False, True]
    assert _scan_count(session) == 1


def test_the_scheduler_scans_when_due_and_only_then(session: Session, manager: Actor) -> None:
    _twins(session, manager)
    result = duplicates.run_scheduled_scan(session, 24, settings=SETTINGS)
    assert result is not None and result.contacts == 4
    row = duplicates.get_scan(session, result.scan_id, manager)
    assert (row.trigger, row.started_by, row.status) == ("scheduled", "scheduler", "finished")
    assert duplicates.run_scheduled_scan(session, 24, settings=SETTINGS) is None
    assert duplicates.run_scheduled_scan(session, 0, settings=SETTINGS) is None
    assert _scan_count(session) == 1


def test_a_long_scan_marks_itself_alive(
    db: Database, session: Session, manager: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates, "SCAN_HEARTBEAT", timedelta(milliseconds=20))
    beats: list[datetime] = []

    def wait_for_a_beat(step: str, done: int, total: int) -> None:
        deadline = time.monotonic() + 20
        while not beats and time.monotonic() < deadline:
            with db.sessionmaker() as other:
                running = duplicates.scan_schedule(other, manager, 24).running
                if running is not None and running.heartbeat_at is not None:
                    beats.append(running.heartbeat_at)

    contact(session, manager, last_name="山田")
    scan = duplicates.scan_contacts(session, manager, settings=SETTINGS, progress=wait_for_a_beat)
    assert len(beats) == 1
    assert beats[0] >= duplicates.get_scan(session, scan.scan_id, manager).started_at


def test_the_server_loop_scans_when_due_and_outlives_a_failure(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks: list[str] = []
    scanned = threading.Event()
    real = duplicates.run_scheduled_scan

    def first_fails_then_scans(session: Session, every_hours: float, **kw: object) -> object:
        if scanned.is_set():
            looks.append("not due")
            return None
        if not looks:
            looks.append("failed")
            raise RuntimeError("the record store is unreachable")
        looks.append("scanned")
        result = real(session, every_hours, settings=SETTINGS, **kw)  # type: ignore[arg-type]
        scanned.set()
        return result

    monkeypatch.setattr(duplicates, "run_scheduled_scan", first_fails_then_scans)

    async def serve_until_a_scan() -> None:
        loop = asyncio.create_task(server._duplicate_scan_loop(db, 24, check_every=0.01))
        deadline = time.monotonic() + 60
        while not scanned.is_set() and time.monotonic() < deadline and not loop.done():
            await asyncio.sleep(0.01)
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop

    asyncio.run(serve_until_a_scan())
    assert looks[:2] == ["failed", "scanned"]
    with db.sessionmaker() as session:
        scans = duplicates.list_scans(session, Actor.system("test")).items
    assert [(s.trigger, s.started_by, s.status) for s in scans] == [
        ("scheduled", "scheduler", "finished")
    ]
