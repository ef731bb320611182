"""Factories for task tests: tasks made through the service, at fixed moments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.crm.tasks import service
from ichigen.crm.tasks.models import Notification, Task
from ichigen.crm.tasks.schemas import TaskCreate, TaskRead

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def at(hours: float = 0, days: int = 0) -> datetime:
    """A fixed moment ``days`` and ``hours`` after 2026-03-10 09:00 UTC."""
    return T0 + timedelta(days=days, hours=hours)


def task(session: Session, actor: Actor, title: str = "Call back", **fields: Any) -> TaskRead:
    return service.create_task(
        session, TaskCreate.model_validate({"title": title, **fields}), actor
    )


def tasks_in_db(session: Session) -> int:
    return int(session.scalar(select(func.count(Task.id))) or 0)


def notifications_of(session: Session, user_id: int) -> list[Notification]:
    session.expire_all()
    return list(
        session.scalars(
            select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)
        )
    )


class Frozen:
    """Freeze the product's clock at a moment (``with Frozen(at(1)):``)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __enter__(self) -> FixedClock:
        clock = FixedClock(self.moment)
        set_clock(clock)
        return clock

    def __exit__(self, *_: object) -> None:
        set_clock(SystemClock())
