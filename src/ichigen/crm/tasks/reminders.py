"""Task reminders: in-app notifications when a reminder is due, and their e-mail copies.

``fire_due_reminders`` is safe to run in several processes at once: each due task is
claimed with ``UPDATE … WHERE reminded_at IS NULL`` and only the process whose update
changed the row notifies, so a reminder fires at most once. E-mail copies are claimed the
same way (by their attempt count) and sent after the notification is committed; a failing
mail server never holds up in-app notifications, and a failed copy is tried again a few
times, later.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any, Protocol

from anyio import CapacityLimiter, to_thread
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor, AuditEntry, audit_row
from ichigen.core.clock import utcnow
from ichigen.core.db import Database, session_settings
from ichigen.core.settings import Settings
from ichigen.crm.tasks.models import Notification, Task
from ichigen.crm.tasks.schemas import ReminderRun

log = logging.getLogger(__name__)

KIND = "task_reminder"
#: Tasks claimed per transaction, and transactions per pass (the rest wait for the next).
BATCH = 500
MAX_BATCHES = 20
#: E-mail copies sent per pass.
MAIL_BATCH = 100
#: Waits before the 2nd, 3rd and 4th attempt at an e-mail copy; after the 4th it is given up.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
#: How long a claimed e-mail copy is held: if its sender dies mid-way, it is tried again then.
SEND_LEASE = timedelta(minutes=10)
SYSTEM = Actor.system("reminders")


class Mailer(Protocol):
    """Sends e-mail (the SMTP server in production, a fake in tests)."""

    def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    """Sends each message over SMTP with the ``smtp_*`` settings (TLS as configured)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("smtp_host is not set")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.starttls = settings.smtp_starttls
        self.use_ssl = settings.smtp_ssl
        self.timeout = settings.smtp_timeout_seconds

    def send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.use_ssl:
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if not self.use_ssl and self.starttls:
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(message)


def mailer_for(settings: Settings) -> Mailer | None:
    """The SMTP mailer the settings describe, or none when ``smtp_host`` is unset."""
    return SmtpMailer(settings) if settings.smtp_host else None


# ----------------------------------------------------------------------------- wording

#: The e-mail's words in each UI language (the catalogs belong to the web layer).
_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "subject": "Reminder: {title}",
        "due": "Due {when}",
        "due_day": "Due {day} (all day)",
        "no_due": "No due date",
        "open": "Open the task: {url}",
        "why": "You get this e-mail because a task assigned to you in ichigen has a reminder.",
    },
    "ja": {
        "subject": "リマインダー: {title}",
        "due": "期限: {when}",
        "due_day": "期限: {day}(終日)",
        "no_due": "期限なし",
        "open": "タスクを開く: {url}",
        "why": "ichigen であなたに割り当てられたタスクのリマインダーとしてお送りしています。",
    },
}


def _words(locale: str | None, fallback: str) -> dict[str, str]:
    return _WORDS.get(locale or fallback) or _WORDS["en"]


def _due_line(words: dict[str, str], due_at: datetime | None, all_day: bool) -> str:
    if due_at is None:
        return words["no_due"]
    if all_day:
        return words["due_day"].format(day=due_at.date().isoformat())
    return words["due"].format(when=due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))


# ----------------------------------------------------------------------------- firing


@dataclass(frozen=True)
class _Claimed:
    id: int
    title: str
    description: str
    due_at: datetime | None
    all_day: bool
    assignee_id: int | None
    created_by: int | None


def _claim(session: Session, now: datetime) -> list[_Claimed]:
    """Mark a batch of due reminders as fired; only rows this transaction changed return."""
    due_ids = list(
        session.scalars(
            select(Task.id)
            .where(Task.remind_at <= now, Task.reminded_at.is_(None), Task.status == "open")
            .order_by(Task.remind_at, Task.id)
            .limit(BATCH)
        )
    )
    if not due_ids:
        return []
    rows = session.execute(
        update(Task)
        .where(Task.id.in_(due_ids), Task.reminded_at.is_(None), Task.status == "open")
        .values(reminded_at=now)
        .returning(
            Task.id,
            Task.title,
            Task.description,
            Task.due_at,
            Task.all_day,
            Task.assignee_id,
            Task.created_by,
        )
        .execution_options(synchronize_session=False)
    ).all()
    return [_Claimed(*row) for row in rows]


def _notification(
    task: _Claimed, user: UserRead, now: datetime, fallback_locale: str, mail: bool
) -> dict[str, Any]:
    words = _words(user.locale, fallback_locale)
    body = _due_line(words, task.due_at, task.all_day)
    if task.description.strip():
        body += "\n\n" + task.description.strip()[:2000]
    return {
        "user_id": user.id,
        "kind": KIND,
        "title": task.title,
        "body": body,
        "link": f"/tasks/{task.id}",
        "created_at": now,
        "read_at": None,
        "emailed_at": None,
        "email_next_at": now if mail and user.is_active else None,
        "email_attempts": 0,
    }


def fire_due_reminders(session: Session, now: datetime, mailer: Mailer | None) -> ReminderRun:
    """Notify the assignee (or, for an unassigned task, its creator) of every open task whose
    reminder time has come, once; then send the e-mail copies due, when there is a mailer."""
    settings = session_settings(session)
    run = ReminderRun()
    for _ in range(MAX_BATCHES):
        claimed = _claim(session, now)
        if not claimed:
            session.commit()
            break
        people = {t.assignee_id or t.created_by for t in claimed} - {None}
        users = auth_service.users_by_id(session, {p for p in people if p is not None})
        rows = []
        for task in claimed:
            user = users.get(task.assignee_id or task.created_by or 0)
            if user is not None:
                rows.append(_notification(task, user, now, settings.default_locale, bool(mailer)))
        if rows:
            session.execute(insert(Notification), rows)
        session.execute(
            insert(AuditEntry),
            [
                audit_row(SYSTEM, "tasks", t.id, "remind", {"reminded_at": [None, now.isoformat()]})
                for t in claimed
            ],
        )
        session.commit()
        run = run.model_copy(update={"reminded": run.reminded + len(claimed)})
        if len(claimed) < BATCH:
            break
    if mailer is not None:
        emailed, failed = send_due_email(session, now, mailer)
        run = run.model_copy(update={"emailed": emailed, "email_failed": failed})
    return run


# ----------------------------------------------------------------------------- e-mail


def _message(settings: Settings, notification: Notification, user: UserRead) -> EmailMessage:
    words = _words(user.locale, settings.default_locale)
    url = settings.public_url.rstrip("/") + (notification.link or "/notifications")
    message = EmailMessage()
    message["Subject"] = words["subject"].format(title=notification.title)
    message["From"] = settings.smtp_from
    message["To"] = formataddr((user.name, user.email))
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    message.set_content(
        "\n\n".join(
            [notification.title, notification.body, words["open"].format(url=url), words["why"]]
        )
        + "\n"
    )
    return message


def send_due_email(session: Session, now: datetime, mailer: Mailer) -> tuple[int, int]:
    """Send the e-mail copies of notifications that are due; (sent, failed) this pass.

    Each copy is claimed first (its attempt count moves on, and it is held for a while), so
    two processes never send the same copy. A failure is logged and the copy is tried again
    after a delay, up to four attempts; its ``emailed_at`` stays empty.
    """
    settings = session_settings(session)
    due = [
        (row.id, row.email_attempts)
        for row in session.execute(
            select(Notification.id, Notification.email_attempts)
            .where(Notification.email_next_at <= now, Notification.emailed_at.is_(None))
            .order_by(Notification.email_next_at, Notification.id)
            .limit(MAIL_BATCH)
        )
    ]
    sent = failed = 0
    for notification_id, attempts in due:
        claimed = session.execute(
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.email_attempts == attempts,
                Notification.emailed_at.is_(None),
            )
            .values(email_attempts=attempts + 1, email_next_at=now + SEND_LEASE)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another process has it
        notification = session.get(Notification, notification_id)
        if notification is None:
            continue
        session.refresh(notification)
        user = auth_service.users_by_id(session, {notification.user_id}).get(notification.user_id)
        if user is None or not user.is_active:
            notification.email_next_at = None
            session.commit()
            continue
        try:
            mailer.send(_message(settings, notification, user))
        except (OSError, smtplib.SMTPException) as exc:
            failed += 1
            tries = attempts + 1
            retry = RETRY_DELAYS[tries - 1] if tries <= len(RETRY_DELAYS) else None
            log.warning(
                "reminder e-mail %s to %s failed (attempt %s%s): %s",
                notification_id,
                user.email,
                tries,
                "" if retry else ", giving up",
                exc,
            )
            notification.email_next_at = now + retry if retry else None
        else:
            sent += 1
            notification.emailed_at = now
            notification.email_next_at = None
        session.commit()
    return sent, failed


# ----------------------------------------------------------------------------- the loop


def run_reminders(database: Database, mailer: Mailer | None) -> ReminderRun:
    """One pass over due reminders with a session of its own (the CLI and the loop)."""
    with database.sessionmaker() as session:
        return fire_due_reminders(session, utcnow(), mailer)


async def reminder_loop(database: Database, settings: Settings) -> None:
    """Fire due reminders every ``reminder_interval_seconds``, in a thread of its own so
    that a slow mail server never takes a request thread."""
    mailer = mailer_for(settings)
    limiter = CapacityLimiter(1)
    while True:
        try:
            await to_thread.run_sync(run_reminders, database, mailer, limiter=limiter)
        except Exception:  # a failed pass is retried at the next interval
            log.exception("task reminder pass failed")
        await asyncio.sleep(settings.reminder_interval_seconds)
