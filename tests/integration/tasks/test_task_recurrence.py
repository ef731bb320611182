"""Repeating tasks: rules checked and normalised, next dates across month ends and leap years
(in UTC, so no daylight-saving shifts), and series made by completing occurrences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session
from tests.integration.tasks.task_factories import at, task

from ichigen.core.audit import Actor
from ichigen.crm.tasks import service
from ichigen.crm.tasks.schemas import TaskUpdate


def _utc(year: int, month: int, day: int, hour: int = 9) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def _series(rule: str, start: datetime, count: int) -> list[datetime]:
    dates = [start]
    for _ in range(count - 1):
        found = service.next_occurrence(service.normalise_recurrence(rule), dates[-1])
        assert found is not None
        dates.append(found)
    return dates


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=FORTNIGHTLY",
        "FREQ=HOURLY",
        "FREQ=MINUTELY",
        "BYDAY=MO",
        "FREQ=WEEKLY;BYDAY=XX",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;INTERVAL=x",
        "FREQ=DAILY;COUNT=0",
        "FREQ=DAILY;COUNT=3;UNTIL=20270101",
        "FREQ=DAILY;BYHOUR=9",
        "FREQ=YEARLY;BYYEARDAY=100",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;BYMONTH=4,6;BYMONTHDAY=31,-31",
        "FREQ=DAILY;BYMONTH=13",
        "FREQ=MONTHLY;BYMONTHDAY=0",
        "FREQ=DAILY;BYSETPOS=1",
        "FREQ=WEEKLY;BYDAY=MO,TU;BYSETPOS=3",
        "FREQ=DAILY;FREQ=WEEKLY",
        "FREQ=DAILY\nFREQ=WEEKLY",
        "DTSTART:20260101T000000Z",
        "FREQ=DAILY;UNTIL=tomorrow",
        "FREQ=DAILY;UNTIL=20260101T000000",
        "not a rule",
        "",
    ],
)
def test_malformed_rules_are_refused_with_a_reason(rule: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        service.normalise_recurrence(rule)


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        ("FREQ=MONTHLY;BYMONTHDAY=1;BYSETPOS=2", False),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYSETPOS=-2", False),
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", True),  # 2044-02-29 is a Monday
        ("FREQ=YEARLY;BYMONTH=2;BYDAY=5MO", True),
        ("FREQ=DAILY;UNTIL=20200101", True),  # matches days, if not after the due date
    ],
)
def test_rules_that_match_no_day_at_all_are_told_apart(rule: str, matches: bool) -> None:
    canonical = service.normalise_recurrence(rule)
    assert service.rule_matches_some_day(canonical, _utc(2026, 3, 10)) is matches


def test_monthly_from_the_31st_skips_short_months_and_the_last_day_rule_does_not() -> None:
    assert _series("FREQ=MONTHLY", _utc(2026, 1, 31), 4) == [
        _utc(2026, 1, 31),
        _utc(2026, 3, 31),
        _utc(2026, 5, 31),
        _utc(2026, 7, 31),
    ]
    assert _series("FREQ=MONTHLY;BYMONTHDAY=-1", _utc(2028, 1, 31), 4) == [
        _utc(2028, 1, 31),
        _utc(2028, 2, 29),
        _utc(2028, 3, 31),
        _utc(2028, 4, 30),
    ]


def test_yearly_on_the_29th_of_february_waits_for_leap_years() -> None:
    assert _series("FREQ=YEARLY", _utc(2024, 2, 29), 3) == [
        _utc(2024, 2, 29),
        _utc(2028, 2, 29),
        _utc(2032, 2, 29),
    ]


def test_times_stay_the_same_in_utc_across_daylight_saving_changes() -> None:
    # 2026-03-08 is the US change to summer time; rules run in UTC, so 14:00 UTC stays.
    assert _series("FREQ=DAILY", _utc(2026, 3, 7, 14), 3) == [
        _utc(2026, 3, 7, 14),
        _utc(2026, 3, 8, 14),
        _utc(2026, 3, 9, 14),
    ]


def test_weekdays_and_intervals() -> None:
    # 2026-03-10 is a Tuesday.
    assert _series("FREQ=WEEKLY;BYDAY=MO,TH", _utc(2026, 3, 10), 4) == [
        _utc(2026, 3, 10),
        _utc(2026, 3, 12),
        _utc(2026, 3, 16),
        _utc(2026, 3, 19),
    ]
    assert _series("FREQ=WEEKLY;INTERVAL=2", _utc(2026, 3, 10), 2)[1] == _utc(2026, 3, 24)
    assert _series("FREQ=MONTHLY;BYDAY=1MO", _utc(2026, 3, 10), 2)[1] == _utc(2026, 4, 6)


def test_completing_a_weekly_task_creates_the_next_with_its_reminder_shifted(
    session: Session, admin: Actor
) -> None:
    first = task(
        session,
        admin,
        "Weekly report",
        due_at=at(),
        remind_at=at(-1),
        priority="high",
        recurrence="FREQ=WEEKLY",
    )
    done = service.complete_task(session, first.id, admin)
    follower = done.next_task
    assert follower is not None
    assert (follower.title, follower.priority, follower.status) == ("Weekly report", "high", "open")
    assert follower.due_at == at(days=7) and follower.remind_at == at(-1, days=7)
    assert follower.reminded_at is None and follower.recurrence == "FREQ=WEEKLY"
    assert follower.series_id == first.id == done.task.series_id
    after = service.complete_task(session, follower.id, admin).next_task
    assert after is not None and after.due_at == at(days=14) and after.series_id == first.id


def test_a_series_ends_at_its_count_or_until(session: Session, admin: Actor) -> None:
    counted = task(session, admin, due_at=at(), recurrence="FREQ=DAILY;COUNT=3")
    made = [counted.id]
    while (nxt := service.complete_task(session, made[-1], admin).next_task) is not None:
        made.append(nxt.id)
    assert len(made) == 3
    until = task(session, admin, due_at=at(), recurrence="FREQ=DAILY;UNTIL=20260311")
    second = service.complete_task(session, until.id, admin).next_task
    assert second is not None and second.due_at == at(days=1)
    assert service.complete_task(session, second.id, admin).next_task is None


def test_completing_again_after_reopening_makes_no_second_follower(
    session: Session, admin: Actor
) -> None:
    first = task(session, admin, due_at=at(), recurrence="FREQ=MONTHLY")
    assert service.complete_task(session, first.id, admin).next_task is not None
    service.reopen_task(session, first.id, admin)
    assert service.complete_task(session, first.id, admin).next_task is None
    assert [t.due_at for t in service.list_tasks(session, admin).items] == [
        at(),
        at() + timedelta(days=31),
    ]


def test_an_all_day_series_moves_by_dates(session: Session, admin: Actor) -> None:
    first = task(session, admin, due_at=at(), all_day=True, recurrence="FREQ=MONTHLY;BYMONTHDAY=-1")
    follower = service.complete_task(session, first.id, admin).next_task
    assert follower is not None and follower.all_day
    assert follower.due_at == datetime(2026, 3, 31, tzinfo=UTC)


def test_cancelling_ends_a_series_and_clearing_the_rule_stops_it(
    session: Session, admin: Actor
) -> None:
    first = task(session, admin, due_at=at(), recurrence="FREQ=DAILY")
    service.cancel_task(session, first.id, admin)
    assert len(service.list_tasks(session, admin).items) == 1
    second = task(session, admin, due_at=at(), recurrence="FREQ=DAILY")
    service.update_task(session, second.id, TaskUpdate(recurrence=None), admin)
    assert service.complete_task(session, second.id, admin).next_task is None
