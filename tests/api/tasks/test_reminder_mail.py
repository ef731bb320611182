"""Reminder e-mail through a real SMTP server (aiosmtpd on 127.0.0.1), sent by the server's own
reminder loop; a mail server that is down delays the e-mail, never the in-app notification."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from tests.api.conftest import Api, ApiFactory

from ichigen.core.clock import utcnow
from ichigen.crm.tasks import reminders


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Inbox:
    """An aiosmtpd handler that keeps each message and signals its arrival."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        self.arrived.set()
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _poll(check: Any, seconds: float = 10) -> Any:
    """Ask again until ``check()`` gives something, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("gave up waiting")


def _smtp(port: int, **more: Any) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": False,
        "smtp_from": "crm@example.co.jp",
        "public_url": "https://crm.example.co.jp",
        **more,
    }


def test_the_reminder_loop_mails_the_assignee(
    api_factory: ApiFactory, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    api: Api = api_factory(reminder_interval_seconds=0.05, **_smtp(port))
    rep = api.caller("sales", email="aiko@example.co.jp")
    task = api.post(
        "/api/v1/tasks",
        as_=rep,
        json={
            "title": "Send the quote",
            "due_at": "2030-01-01T09:00:00Z",
            "remind_at": "2020-01-01T00:00:00Z",
        },
    ).json()
    assert inbox.arrived.wait(10), "no e-mail arrived"
    ((sender, recipients, message),) = inbox.messages
    assert sender == "crm@example.co.jp" and recipients == ["aiko@example.co.jp"]
    assert message["Subject"] == "Reminder: Send the quote"
    assert "aiko@example.co.jp" in message["To"]
    text = message.get_payload(decode=True).decode()
    assert f"https://crm.example.co.jp/tasks/{task['id']}" in text
    assert "Due 2030-01-01 09:00 UTC" in text

    def emailed() -> list[dict[str, Any]]:
        items = api.get("/api/v1/notifications", as_=rep).json()["items"]
        return [n for n in items if n["emailed_at"]]

    (note,) = _poll(emailed)
    assert note["title"] == "Send the quote" and note["read_at"] is None
    assert len(inbox.messages) == 1


def test_a_mail_server_that_is_down_delays_only_the_e_mail(
    api_factory: ApiFactory, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    closed = free_port()  # nothing listens there
    api: Api = api_factory(reminders_enabled=False, **_smtp(closed, smtp_timeout_seconds=2))
    rep = api.caller("sales")
    api.post(
        "/api/v1/tasks",
        as_=rep,
        json={"title": "Call Sato", "remind_at": "2020-01-01T00:00:00Z"},
    )
    down = reminders.mailer_for(api.db.settings)
    run = reminders.run_reminders(api.db, down)
    assert (run.reminded, run.emailed, run.email_failed) == (1, 0, 1)
    (note,) = api.get("/api/v1/notifications", as_=rep).json()["items"]
    assert note["title"] == "Call Sato" and note["emailed_at"] is None
    # Later, with the server back: the retry is due after its delay, and goes out once.
    up = reminders.mailer_for(api.db.settings.model_copy(update={"smtp_port": port}))
    assert up is not None
    with api.db.sessionmaker() as session:
        later = utcnow() + reminders.RETRY_DELAYS[0]
        assert reminders.send_due_email(session, later, up) == (1, 0)
        assert reminders.send_due_email(session, later, up) == (0, 0)
    assert inbox.arrived.is_set() and len(inbox.messages) == 1
    (note,) = api.get("/api/v1/notifications", as_=rep).json()["items"]
    assert note["emailed_at"] is not None
