"""My day and the team view: tasks bucketed by the user's own day (their time zone), all-day
tasks by their date, bounded lists with totals; on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, team
from tests.integration.tasks.task_factories import task

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserUpdate
from ichigen.core.audit import Actor
from ichigen.crm.deals import service as deals_service
from ichigen.crm.deals.schemas import DealCreate
from ichigen.crm.tasks import service

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
#: 23:30 on Tuesday 10 March 2026 in Tokyo; 14:30 the same day in UTC.
NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def _utc(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _titles(items: list[service.TaskRead]) -> list[str]:
    return [t.title for t in items]


def _day(session: Session, rep: Actor, zone: ZoneInfo, now: datetime = NOW) -> service.MyDay:
    return service.my_day(session, rep, rep.user_id or 0, now=now, zone=zone)


def test_the_buckets_follow_the_users_time_zone(session: Session, admin: Actor) -> None:
    rep = actor(session, "rep@example.com", "sales")
    for title, fields in [
        ("past hour", {"due_at": _utc(10, 14)}),
        ("later tonight in Tokyo", {"due_at": _utc(10, 14, 45)}),
        ("just after midnight in Tokyo", {"due_at": _utc(10, 15, 30)}),
        ("all day on the 9th", {"due_at": _utc(9, 0), "all_day": True}),
        ("all day on the 10th", {"due_at": _utc(10, 0), "all_day": True}),
        ("all day on the 11th", {"due_at": _utc(11, 0), "all_day": True}),
        ("all day on the 17th", {"due_at": _utc(17, 0), "all_day": True}),
        ("all day on the 18th", {"due_at": _utc(18, 0), "all_day": True}),
        ("17th at 23:00 in Tokyo", {"due_at": _utc(17, 14)}),
        ("18th at 00:30 in Tokyo", {"due_at": _utc(17, 15, 30)}),
        ("no due date", {}),
    ]:
        task(session, rep, title, **fields)
    tokyo = _day(session, rep, TOKYO)
    assert tokyo.today == date(2026, 3, 10) and tokyo.timezone == "Asia/Tokyo"
    assert _titles(tokyo.overdue) == ["all day on the 9th", "past hour"]
    assert _titles(tokyo.due_today) == ["all day on the 10th", "later tonight in Tokyo"]
    # Each day's all-day tasks come before its timed ones.
    assert _titles(tokyo.upcoming) == [
        "all day on the 11th",
        "just after midnight in Tokyo",
        "all day on the 17th",
        "17th at 23:00 in Tokyo",
    ]
    assert (tokyo.overdue_total, tokyo.due_today_total, tokyo.upcoming_total) == (2, 2, 4)
    # In UTC it is still mid-afternoon on the 10th: the Tokyo-midnight task is due today, and
    # the 17th's late task is within the week, the 18th's early one too (17th, UTC).
    utc = _day(session, rep, ZoneInfo("UTC"))
    assert _titles(utc.due_today) == [
        "all day on the 10th",
        "later tonight in Tokyo",
        "just after midnight in Tokyo",
    ]
    assert "18th at 00:30 in Tokyo" in _titles(utc.upcoming)


def test_a_week_across_the_change_to_summer_time(session: Session, admin: Actor) -> None:
    rep = actor(session, "ny@example.com", "sales")
    # New York moves its clocks on Sunday 8 March 2026; a week from Thursday 5 March runs to
    # midnight on Thursday 12 March, New York time (04:00 UTC, not 05:00).
    task(session, rep, "Thursday 23:30", due_at=_utc(13, 3, 30))
    task(session, rep, "Friday 00:30", due_at=_utc(13, 4, 30))
    now = datetime(2026, 3, 5, 17, 0, tzinfo=UTC)
    assert _titles(_day(session, rep, NEW_YORK, now).upcoming) == ["Thursday 23:30"]


def test_only_the_users_open_tasks_count(session: Session, admin: Actor) -> None:
    rep = actor(session, "rep@example.com", "sales")
    other = actor(session, "other@example.com", "sales")
    mine = task(session, rep, "Mine", due_at=_utc(10, 20))
    task(session, other, "Theirs", due_at=_utc(10, 20))
    done = task(session, rep, "Done", due_at=_utc(10, 20))
    service.complete_task(session, done.id, rep)
    cancelled = task(session, rep, "Cancelled", due_at=_utc(10, 20))
    service.cancel_task(session, cancelled.id, rep)
    assert [t.id for t in _day(session, rep, ZoneInfo("UTC")).due_today] == [mine.id]


def test_lists_are_bounded_and_totals_say_how_many(session: Session, admin: Actor) -> None:
    rep = actor(session, "rep@example.com", "sales")
    for number in range(7):
        task(session, rep, f"Old {number}", due_at=NOW - timedelta(days=number + 1))
    day = service.my_day(session, rep, rep.user_id or 0, now=NOW, zone=TOKYO, limit=5)
    assert len(day.overdue) == 5 and day.overdue_total == 7
    assert day.overdue[0].title == "Old 6"  # the longest overdue first


def test_the_team_view_counts_open_and_overdue_tasks_per_member(
    session: Session, admin: Actor
) -> None:
    east = team(session, "East")
    aiko = actor(session, "aiko@example.com", "sales", east)
    ben = actor(session, "ben@example.com", "sales", east)
    gone = actor(session, "gone@example.com", "sales", east)
    outsider = actor(session, "out@example.com", "sales")
    for hours in (-30, -2, 5):
        task(session, aiko, f"Aiko {hours}", due_at=NOW + timedelta(hours=hours))
    task(session, aiko, "Aiko all day yesterday", due_at=_utc(9, 0), all_day=True)
    task(session, aiko, "Aiko whenever")
    task(session, ben, "Ben tomorrow", due_at=NOW + timedelta(days=1))
    task(session, outsider, "Not in the team", due_at=NOW - timedelta(days=3))
    auth_service.update_user(session, gone.user_id or 0, UserUpdate(is_active=False), admin)
    view = service.team_tasks(session, east, aiko, now=NOW, per_member=3)
    assert view.name == "East"
    assert [(m.name, m.open_total, m.overdue_total) for m in view.members] == [
        ("Aiko", 5, 3),
        ("Ben", 1, 0),
    ]
    assert _titles(view.members[0].tasks) == ["Aiko all day yesterday", "Aiko -30", "Aiko -2"]


def test_my_day_lists_own_open_deals_without_a_next_step_or_late_with_it(
    session: Session, admin: Actor
) -> None:
    rep = actor(session, "rep@example.com", "sales")
    deals_service.ensure_default_pipeline(session, admin)
    for name, fields in [
        ("No next step", {}),
        ("Late next step", {"next_step": "Call the CFO", "next_step_due": date(2026, 3, 9)}),
        ("Next step planned", {"next_step": "Demo", "next_step_due": date(2026, 3, 12)}),
    ]:
        deals_service.create_deal(session, DealCreate.model_validate({"name": name, **fields}), rep)
    deals_service.create_deal(session, DealCreate(name="Someone else's"), admin)
    names = {d.name for d in _day(session, rep, TOKYO).deals_needing_next_step}
    assert names == {"No next step", "Late next step"}


def _naive_bucket(item: service.TaskRead, now: datetime, zone: ZoneInfo) -> str | None:
    """Which list of My day a task belongs in, worked out one task at a time."""
    assert item.due_at is not None
    today = now.astimezone(zone).date()
    day = item.due_at.date() if item.all_day else item.due_at.astimezone(zone).date()
    if (item.due_at < now and not item.all_day) or (item.all_day and day < today):
        return "overdue"
    if day == today:
        return "due_today"
    if today < day <= today + timedelta(days=7):
        return "upcoming"
    return None


def test_lists_and_totals_match_a_task_by_task_reckoning(session: Session, admin: Actor) -> None:
    rep = actor(session, "rep@example.com", "sales")
    rng = random.Random(7)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    made = []
    for number in range(80):
        due = start + timedelta(minutes=rng.randrange(0, 20 * 24 * 60, 30))
        all_day = rng.random() < 0.3
        made.append(task(session, rep, f"T{number}", due_at=due, all_day=all_day))
    zones = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Tokyo", "America/New_York", "UTC"]
    # The 8th of March 2026 is the change to summer time in New York.
    moments = [datetime(2026, 3, 8, 6, 30, tzinfo=UTC), datetime(2026, 3, 9, 23, 59, tzinfo=UTC)]
    for name in zones:
        zone = ZoneInfo(name)
        for now in moments:
            expected: dict[str, set[int]] = {k: set() for k in ("overdue", "due_today", "upcoming")}
            for item in made:
                bucket = _naive_bucket(item, now, zone)
                if bucket:
                    expected[bucket].add(item.id)
            whole = service.my_day(session, rep, rep.user_id or 0, now=now, zone=zone, limit=200)
            assert {t.id for t in whole.overdue} == expected["overdue"], (name, now)
            assert {t.id for t in whole.due_today} == expected["due_today"], (name, now)
            assert {t.id for t in whole.upcoming} == expected["upcoming"], (name, now)
            counted = service.my_day(session, rep, rep.user_id or 0, now=now, zone=zone, limit=1)
            totals = (counted.overdue_total, counted.due_today_total, counted.upcoming_total)
            assert totals == tuple(len(expected[k]) for k in expected), (name, now)
