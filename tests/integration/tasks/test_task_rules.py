"""Tasks through their service: defaults, checks that name the bad field, versions, ownership,
completion (with its timeline entry), reopening and cancelling; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.integration.activities.factories import deal
from tests.integration.core.factories import actor, audit_count, company, contact, team, user
from tests.integration.tasks.task_factories import at, task, tasks_in_db

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserUpdate
from ichigen.core.audit import Actor, AuditEntry, record_history
from ichigen.core.db import Database
from ichigen.core.errors import Conflict, PermissionDenied, PreconditionFailed, ValidationFailed
from ichigen.crm.activities import service as activities
from ichigen.crm.tasks import service
from ichigen.crm.tasks.models import Task
from ichigen.crm.tasks.schemas import TaskCreate, TaskUpdate


def _refused(session: Session, by: Actor, **fields: Any) -> set[tuple[str | int, ...]]:
    with pytest.raises(ValidationFailed) as info:
        service.create_task(session, TaskCreate.model_validate({"title": "T", **fields}), by)
    return {e.loc for e in info.value.errors}


def test_a_new_task_is_open_assigned_to_its_creator_and_audited(
    session: Session, admin: Actor
) -> None:
    created = task(session, admin, "  Send the quote  ", due_at=at(3))
    assert created.title == "Send the quote"
    assert (created.status, created.priority, created.version) == ("open", "normal", 1)
    assert created.assignee_id == admin.user_id == created.created_by
    assert created.due_at == at(3) and not created.all_day
    assert created.completed_at is None and created.series_id is None
    history = record_history(session, "tasks", created.id)
    assert [h.action for h in history] == ["create"]
    assert history[0].changes["title"] == [None, "Send the quote"]


def test_an_inactive_or_unknown_assignee_is_refused_and_nothing_is_written(
    session: Session, admin: Actor
) -> None:
    gone = user(session, "gone@example.com")
    auth_service.update_user(session, gone.id, UserUpdate(is_active=False), admin)
    before = audit_count(session, "tasks")
    assert _refused(session, admin, assignee_id=gone.id) == {("assignee_id",)}
    assert _refused(session, admin, assignee_id=999_999) == {("assignee_id",)}
    assert tasks_in_db(session) == 0 and audit_count(session, "tasks") == before


def test_the_record_must_exist_and_come_with_its_type(session: Session, admin: Actor) -> None:
    person = contact(session, first_name="Aiko", last_name="Sato")
    firm = company(session, "Sakura Seiko")
    sale = deal(session, "Press line", firm.id)
    for record_type, record_id in (("contact", person.id), ("company", firm.id), ("deal", sale)):
        made = task(session, admin, record_type=record_type, record_id=record_id)
        assert (made.record_type, made.record_id) == (record_type, record_id)
    assert _refused(session, admin, record_type="deal", record_id=sale + 100) == {("record_id",)}
    assert _refused(session, admin, record_type="contact") == {("record_id",)}
    assert _refused(session, admin, record_id=person.id) == {("record_type",)}
    assert tasks_in_db(session) == 3


def test_a_bad_recurrence_is_refused_naming_it(session: Session, admin: Actor) -> None:
    rules = ("FREQ=HOURLY", "FREQ=MONTHLY;BYMONTHDAY=1;BYSETPOS=2", "FREQ=DAILY;UNTIL=20260301")
    for rule in rules:
        assert _refused(session, admin, due_at=at(), recurrence=rule) == {("recurrence",)}
    assert tasks_in_db(session) == 0


def test_recurrence_needs_a_due_date_and_is_kept_in_canonical_form(
    session: Session, admin: Actor
) -> None:
    assert _refused(session, admin, recurrence="FREQ=DAILY") == {("recurrence",)}
    made = task(session, admin, due_at=at(), recurrence="rrule:freq=weekly;byday=mo,th")
    assert made.recurrence == "FREQ=WEEKLY;BYDAY=MO,TH"
    ends = task(session, admin, due_at=at(), recurrence="FREQ=DAILY;UNTIL=20260401")
    assert ends.recurrence == "FREQ=DAILY;UNTIL=20260401T235959Z"


def test_a_reminder_may_not_come_after_the_due_time(session: Session, admin: Actor) -> None:
    assert _refused(session, admin, due_at=at(2), remind_at=at(3)) == {("remind_at",)}
    assert task(session, admin, due_at=at(2), remind_at=at(2)).remind_at == at(2)
    assert task(session, admin, remind_at=at(-100)).remind_at == at(-100)  # fires at once
    # An all-day task may remind during its day.
    day = task(session, admin, due_at=at(), all_day=True, remind_at=at(10))
    assert day.remind_at == at(10)


def test_an_all_day_task_keeps_the_date_it_was_written_for(session: Session, admin: Actor) -> None:
    tokyo_morning = datetime.fromisoformat("2026-03-10T00:30:00+09:00")  # still 9 March in UTC
    made = task(session, admin, due_at=tokyo_morning, all_day=True)
    assert made.due_at == datetime(2026, 3, 10, tzinfo=UTC)
    timed = service.update_task(session, made.id, TaskUpdate(all_day=False), admin)
    assert timed.due_at == datetime(2026, 3, 10, tzinfo=UTC) and not timed.all_day


def test_updates_need_the_current_version_and_rearm_the_reminder(
    session: Session, admin: Actor, db: Database
) -> None:
    made = task(session, admin, due_at=at(5), remind_at=at(1))
    with db.sessionmaker() as other:
        from_other = service.update_task(other, made.id, TaskUpdate(priority="high"), admin)
    assert from_other.version == 2
    with pytest.raises(PreconditionFailed):
        service.update_task(session, made.id, TaskUpdate(title="Mine"), admin, if_version=1)
    session.expire_all()
    session.execute(update(Task).where(Task.id == made.id).values(reminded_at=at(1)))
    session.commit()
    moved = service.update_task(session, made.id, TaskUpdate(remind_at=at(2)), admin, if_version=2)
    assert moved.version == 3 and moved.remind_at == at(2) and moved.reminded_at is None
    same = service.update_task(session, made.id, TaskUpdate(priority="high"), admin)
    assert same.version == 3  # nothing changed, nothing written
    with pytest.raises(ValidationFailed) as info:
        service.update_task(session, made.id, TaskUpdate(title=None, remind_at=at(9)), admin)
    assert {e.loc for e in info.value.errors} == {("title",), ("remind_at",)}
    assert [h.action for h in record_history(session, "tasks", made.id)] == [
        "update",
        "update",
        "create",
    ]


def test_sales_change_own_team_created_and_unassigned_tasks_only(
    session: Session, admin: Actor
) -> None:
    east, west = team(session, "East"), team(session, "West")
    rep = actor(session, "rep@example.com", "sales", east)
    mate = actor(session, "mate@example.com", "sales", east)
    other = actor(session, "other@example.com", "sales", west)
    boss = actor(session, "boss@example.com", "manager", west)
    mine = task(session, rep, "Mine")
    nobody = task(session, admin, "Nobody's", assignee_id=None)
    handed = task(session, rep, "Handed over", assignee_id=other.user_id)
    assert nobody.assignee_id is None
    for who in (rep, mate, boss):
        service.update_task(session, mine.id, TaskUpdate(description=who.label), who)
    service.update_task(session, nobody.id, TaskUpdate(description="x"), other)
    service.update_task(session, handed.id, TaskUpdate(description="still mine"), rep)
    with pytest.raises(PermissionDenied):
        service.update_task(session, mine.id, TaskUpdate(description="no"), other)
    with pytest.raises(PermissionDenied):
        service.complete_task(session, mine.id, other)
    viewer = actor(session, "viewer@example.com", "viewer")
    with pytest.raises(PermissionDenied):
        service.get_task(session, mine.id, viewer)


def test_completing_marks_done_and_logs_the_task_on_its_record(
    session: Session, admin: Actor
) -> None:
    firm = company(session, "Sakura Seiko")
    made = task(
        session,
        admin,
        "Send the quote",
        description="With discount",
        record_type="company",
        record_id=firm.id,
    )
    done = service.complete_task(session, made.id, admin, if_version=1)
    assert done.task.status == "done" and done.task.completed_at is not None
    assert done.task.version == 2 and done.next_task is None
    assert done.activity_id is not None
    logged = activities.get_activity(session, done.activity_id, admin)
    assert (logged.kind, logged.subject, logged.body) == ("task", "Send the quote", "With discount")
    assert logged.task_id == made.id and logged.owner_id == admin.user_id
    timeline = activities.timeline(session, "company", firm.id, admin)
    assert [a.id for a in timeline.items] == [done.activity_id]
    again = service.complete_task(session, made.id, admin)
    assert again.task.version == 2 and again.activity_id is None
    assert [h.action for h in record_history(session, "tasks", made.id)] == ["complete", "create"]


def test_a_task_without_a_record_completes_without_a_timeline_entry(
    session: Session, admin: Actor
) -> None:
    done = service.complete_task(session, task(session, admin).id, admin)
    assert done.task.status == "done" and done.activity_id is None


def test_reopen_and_cancel(session: Session, admin: Actor) -> None:
    made = task(session, admin)
    cancelled = service.cancel_task(session, made.id, admin)
    assert cancelled.status == "cancelled" and cancelled.completed_at is None
    with pytest.raises(Conflict) as info:
        service.complete_task(session, made.id, admin)
    assert info.value.errors[0].loc == ("status",)
    reopened = service.reopen_task(session, made.id, admin)
    assert reopened.status == "open" and reopened.version == 3
    service.complete_task(session, made.id, admin)
    with pytest.raises(Conflict):
        service.cancel_task(session, made.id, admin)
    reopened = service.reopen_task(session, made.id, admin)
    assert reopened.status == "open" and reopened.completed_at is None
    actions = [h.action for h in record_history(session, "tasks", made.id)]
    assert actions == ["reopen", "complete", "reopen", "cancel", "create"]


def test_a_completion_racing_another_completes_once(
    session: Session, admin: Actor, db: Database
) -> None:
    made = task(session, admin, due_at=at(), recurrence="FREQ=DAILY")
    held = session.get(Task, made.id)  # this session now holds version 1
    assert held is not None and held.version == 1
    with db.sessionmaker() as other:
        service.complete_task(other, made.id, admin)
    with pytest.raises(PreconditionFailed):
        service.complete_task(session, made.id, admin)
    session.expire_all()
    page = service.list_tasks(session, admin)
    assert sorted(t.status for t in page.items) == ["done", "open"]


def test_concurrent_completions_create_one_next_occurrence(admin: Actor, db: Database) -> None:
    with db.sessionmaker() as session:
        made = task(session, admin, due_at=at(), recurrence="FREQ=WEEKLY")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def complete() -> None:
        with db.sessionmaker() as own:
            held = own.get(Task, made.id)  # both hold version 1 when they start
            assert held is not None
            barrier.wait()
            try:
                service.complete_task(own, made.id, admin)
                outcomes.append("done")
            except PreconditionFailed:
                outcomes.append("stale")

    threads = [threading.Thread(target=complete) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["done", "stale"]
    with db.sessionmaker() as session:
        items = service.list_tasks(session, admin).items
        assert [(t.status, t.due_at) for t in items] == [("done", at()), ("open", at(days=7))]
        creates = session.scalars(
            select(AuditEntry.record_id).where(
                AuditEntry.entity == "tasks", AuditEntry.action == "create"
            )
        ).all()
        assert len(creates) == 2


def test_delete_is_audited(session: Session, admin: Actor) -> None:
    made = task(session, admin)
    service.delete_task(session, made.id, admin, if_version=1)
    assert tasks_in_db(session) == 0
    assert [h.action for h in record_history(session, "tasks", made.id)] == ["delete", "create"]


def test_a_task_keeps_an_assignee_who_left_until_someone_changes_it(
    session: Session, admin: Actor
) -> None:
    leaver = user(session, "leaver@example.com")
    other = task(session, admin, "Other")
    made = task(session, admin, "Handed to a leaver", assignee_id=leaver.id)
    auth_service.update_user(session, leaver.id, UserUpdate(is_active=False), admin)
    kept = service.update_task(
        session, made.id, TaskUpdate(title="Still theirs", assignee_id=leaver.id), admin
    )
    assert kept.assignee_id == leaver.id and kept.title == "Still theirs"
    with pytest.raises(ValidationFailed) as info:
        service.update_task(session, other.id, TaskUpdate(assignee_id=leaver.id), admin)
    assert {e.loc for e in info.value.errors} == {("assignee_id",)}
