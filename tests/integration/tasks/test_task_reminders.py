"""Reminders: each fires once (also with two processes at it), notifies the assignee in the app,
and sends an e-mail copy that a failing mail server delays but never loses the notification;
on SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
import threading
from email.message import EmailMessage

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor
from tests.integration.tasks.task_factories import at, notifications_of, task

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserUpdate
from ichigen.core.audit import Actor, record_history
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.crm.tasks import reminders, service
from ichigen.crm.tasks.models import Notification
from ichigen.crm.tasks.schemas import TaskUpdate


class Outbox:
    """A mailer that keeps what it is given, or fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.failing = False

    def send(self, message: EmailMessage) -> None:
        if self.failing:
            raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")
        self.sent.append(message)


def test_a_due_reminder_notifies_the_assignee_once(session: Session, admin: Actor) -> None:
    rep = actor(session, "rep@example.com", "sales")
    due = task(session, rep, "Send the quote", due_at=at(2), remind_at=at(1), description="v2")
    task(session, rep, "Later", due_at=at(5), remind_at=at(4))
    run = reminders.fire_due_reminders(session, at(1), None)
    assert run.reminded == 1 and run.emailed == 0
    (note,) = notifications_of(session, rep.user_id or 0)
    assert (note.kind, note.title) == ("task_reminder", "Send the quote")
    assert note.link == f"/tasks/{due.id}"
    assert "2026-03-10 11:00 UTC" in note.body and "v2" in note.body
    assert note.read_at is None and note.email_next_at is None  # no mailer: no e-mail due
    assert service.get_task(session, due.id, rep).reminded_at == at(1)
    assert reminders.fire_due_reminders(session, at(1.5), None).reminded == 0
    assert len(notifications_of(session, rep.user_id or 0)) == 1
    assert [h.action for h in record_history(session, "tasks", due.id)] == ["remind", "create"]


def test_only_open_tasks_remind_and_an_unassigned_one_reminds_its_creator(
    session: Session, admin: Actor
) -> None:
    done = task(session, admin, "Done", remind_at=at(0))
    service.complete_task(session, done.id, admin)
    cancelled = task(session, admin, "Cancelled", remind_at=at(0))
    service.cancel_task(session, cancelled.id, admin)
    task(session, admin, "Nobody's", assignee_id=None, remind_at=at(0))
    assert reminders.fire_due_reminders(session, at(1), None).reminded == 1
    assert [n.title for n in notifications_of(session, admin.user_id or 0)] == ["Nobody's"]


def test_a_new_reminder_time_fires_again(session: Session, admin: Actor) -> None:
    made = task(session, admin, remind_at=at(0))
    reminders.fire_due_reminders(session, at(0), None)
    service.update_task(session, made.id, TaskUpdate(remind_at=at(3)), admin)
    assert reminders.fire_due_reminders(session, at(2), None).reminded == 0
    assert reminders.fire_due_reminders(session, at(3), None).reminded == 1
    assert len(notifications_of(session, admin.user_id or 0)) == 2


def test_two_processes_fire_each_reminder_at_most_once(admin: Actor, db: Database) -> None:
    with db.sessionmaker() as session:
        for number in range(40):
            task(session, admin, f"Task {number}", remind_at=at(0, days=-1))
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            with db.sessionmaker() as own:
                barrier.wait()
                counts.append(reminders.fire_due_reminders(own, at(0), None).reminded)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(counts) == 40
    with db.sessionmaker() as session:
        titles = [n.title for n in notifications_of(session, admin.user_id or 0)]
        assert sorted(titles) == sorted(f"Task {n}" for n in range(40))


def test_a_failing_mail_server_delays_the_copy_but_not_the_notification(
    session: Session, admin: Actor
) -> None:
    outbox = Outbox()
    outbox.failing = True
    task(session, admin, "Call Sato", remind_at=at(0))
    run = reminders.fire_due_reminders(session, at(0), outbox)
    assert (run.reminded, run.emailed, run.email_failed) == (1, 0, 1)
    (note,) = notifications_of(session, admin.user_id or 0)
    assert note.emailed_at is None and note.email_attempts == 1
    assert note.email_next_at == at(0) + reminders.RETRY_DELAYS[0]
    # Not yet time to try again.
    assert reminders.fire_due_reminders(session, at(0.01), outbox).email_failed == 0
    outbox.failing = False
    run = reminders.fire_due_reminders(session, at(0.05), outbox)
    assert (run.reminded, run.emailed) == (0, 1)
    (note,) = notifications_of(session, admin.user_id or 0)
    assert note.emailed_at == at(0.05) and note.email_next_at is None and note.email_attempts == 2
    (message,) = outbox.sent
    assert message["Subject"] == "Reminder: Call Sato"
    assert "admin@example.com" in message["To"]
    assert "http://127.0.0.1:8000/tasks/" in message.get_content()
    assert reminders.fire_due_reminders(session, at(5), outbox).emailed == 0


def test_a_copy_is_given_up_after_a_few_attempts(session: Session, admin: Actor) -> None:
    outbox = Outbox()
    outbox.failing = True
    task(session, admin, remind_at=at(0))
    moment = at(0)
    for _ in range(len(reminders.RETRY_DELAYS) + 1):
        assert reminders.fire_due_reminders(session, moment, outbox).email_failed == 1
        moment += reminders.RETRY_DELAYS[-1]
    (note,) = notifications_of(session, admin.user_id or 0)
    assert note.email_attempts == len(reminders.RETRY_DELAYS) + 1
    assert note.email_next_at is None and note.emailed_at is None
    assert reminders.fire_due_reminders(session, at(days=1), outbox).email_failed == 0


def test_the_mail_is_in_the_assignees_language(session: Session, admin: Actor) -> None:
    rep = actor(session, "aiko@example.com", "sales")
    auth_service.update_user(session, rep.user_id or 0, UserUpdate(locale="ja"), admin)
    outbox = Outbox()
    task(session, rep, "見積書を送る", due_at=at(0), all_day=True, remind_at=at(0))
    reminders.fire_due_reminders(session, at(0), outbox)
    (message,) = outbox.sent
    assert message["Subject"] == "リマインダー: 見積書を送る"
    assert "期限: 2026-03-10(終日)" in message.get_content()


def test_two_processes_send_each_copy_once(admin: Actor, db: Database) -> None:
    with db.sessionmaker() as session:
        for number in range(10):
            task(session, admin, f"Task {number}", remind_at=at(0))
        reminders.fire_due_reminders(session, at(0), None)
        session.execute(update(Notification).values(email_next_at=at(0)))
        session.commit()
    outbox = Outbox()
    barrier = threading.Barrier(2)

    def send() -> None:
        with db.sessionmaker() as own:
            barrier.wait()
            reminders.send_due_email(own, at(0), outbox)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(m["Subject"] for m in outbox.sent) == sorted(
        f"Reminder: Task {n}" for n in range(10)
    )


@pytest.mark.parametrize("configured", [True, False])
def test_a_mailer_exists_only_when_smtp_is_set(configured: bool) -> None:
    settings = Settings(smtp_host="127.0.0.1" if configured else None)
    assert (reminders.mailer_for(settings) is not None) is configured
