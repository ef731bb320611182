"""The demo's sales data: pipelines, deals with a history, activities, tasks and quotas that
make a sales dashboard worth opening, relative to the day it loads; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import Role
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.crm.activities import service as activities
from ichigen.crm.deals import forecasts
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.schemas import DealRead
from ichigen.crm.tasks import service as tasks
from ichigen.demo.service import DEMO_ADMIN_EMAIL, DemoSize, DemoSummary, load_demo

SALES = DemoSize(companies=30, contacts=300, edited_share=0.0, batch=150, deals=60)
#: A Wednesday, 11:30 in Tokyo, six weeks into the quarter.
NOW = datetime(2026, 11, 18, 2, 30, tzinfo=UTC)
TOKYO = ZoneInfo("Asia/Tokyo")
PACIFIC = ZoneInfo("America/Los_Angeles")


def _load(database: Database, now: datetime, seed: int = 5) -> DemoSummary:
    set_clock(FixedClock(now))
    try:
        return load_demo(database, size=SALES, seed=seed)
    finally:
        set_clock(SystemClock())


def _all_deals(session: Session, actor: Actor) -> list[DealRead]:
    found: list[DealRead] = []
    cursor = None
    while True:
        page = deals.list_deals(session, actor, cursor=cursor, limit=200, sort="id")
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _sellers(session: Session) -> list[UserRead]:
    """The sales reps, and the demo admin who sells a little too."""
    users = auth_service.list_users(session)
    return [u for u in users if u.role == Role.sales or u.email == DEMO_ADMIN_EMAIL]


def test_the_sales_demo_tells_a_story(db: Database) -> None:
    summary = _load(db, NOW)

    sold = summary.sales
    assert sold.pipelines == 2 and sold.deals >= 60 and sold.open and sold.won and sold.lost
    assert sold.activities > 10 * sold.deals // 2 and sold.tasks > 10 * 12 and sold.rates > 100
    with db.sessionmaker() as session:
        admin_user = auth_service.find_user_by_email(session, DEMO_ADMIN_EMAIL)
        assert admin_user is not None
        admin = auth_service.actor_for(admin_user)
        pipelines = deals.list_pipelines(session, admin)
        assert [p.name for p in pipelines] == ["New business", "Renewals"]
        stages = {s.name: s for s in pipelines[0].stages}
        assert list(stages) == [
            "Lead in",
            "Qualified",
            "Meeting booked",
            "Proposal",
            "Negotiation",
            "Won",
            "Lost",
        ]
        assert stages["Proposal"].required_fields == ["amount"]
        assert stages["Negotiation"].required_fields == ["amount", "expected_close_date"]
        assert len(deals.list_lost_reasons(session, admin)) >= 5

        every = _all_deals(session, admin)
        assert len(every) == sold.deals
        assert Counter(d.status for d in every) == {
            "open": sold.open,
            "won": sold.won,
            "lost": sold.lost,
        }
        assert {d.currency for d in every} >= {"JPY", "USD"}
        assert Counter(d.currency for d in every).most_common(1)[0][0] == "JPY"
        assert all(d.company_id and d.contacts for d in every)
        assert all(d.created_at >= NOW - timedelta(days=470) for d in every)
        assert all(d.created_at <= NOW and (d.closed_at or NOW) <= NOW for d in every)
        assert any(d.pipeline_name == "Renewals" for d in every)
        open_deals = [d for d in every if d.status == "open"]
        assert any(d.probability_override is not None for d in open_deals) or any(
            d.forecast_category_override is not None for d in open_deals
        )
        assert any(
            s.rotting_days and NOW - d.stage_entered_at > timedelta(days=s.rotting_days)
            for d in open_deals
            for s in pipelines[0].stages + pipelines[1].stages
            if s.id == d.stage_id
        ), "some open deals are stalled"

        won = next(d for d in every if d.status == "won" and d.pipeline_name == "New business")
        history = deals.stage_history(session, won.id, admin)
        assert history[0].from_stage_id is None and history[-1].to_stage_name == "Won"
        assert len(history) >= 5
        assert [h.changed_at for h in history] == sorted({h.changed_at for h in history})
        assert all(h.changed_by == won.owner_id for h in history)
        assert any(h.seconds_in_stage > 86_400 for h in history)
        lost = [d for d in every if d.status == "lost"]
        assert all(d.lost_reason_id is not None for d in lost)
        assert {deals.stage_history(session, d.id, admin)[-1].to_stage_name for d in lost} == {
            "Lost",
            "Churned",
        }

        _check_reps(session, admin, every)
        _check_forecast(session, admin, every)

    again = load_demo(db, size=SALES, seed=6)
    assert again.already_loaded
    with db.sessionmaker() as session:
        assert len(_all_deals(session, admin)) == sold.deals


def _check_reps(session: Session, admin: Actor, every: list[DealRead]) -> None:
    counts = activities.activity_counts_by_owner(
        session, (NOW - timedelta(days=460)).date(), NOW.date() + timedelta(days=1)
    )
    sellers = _sellers(session)
    assert len(sellers) == 9
    for user in sellers:
        mine = [d for d in every if d.owner_id == user.id]
        assert {"open", "won", "lost"} <= {d.status for d in mine}, user.email
        assert {"call", "email", "meeting", "task"} <= set(counts.get(user.id, {})), user.email
        zone = PACIFIC if user.email.split("@")[0] in ("james.carter", "emily.parker") else TOKYO
        day = tasks.my_day(session, auth_service.actor_for(user), user.id, now=NOW, zone=zone)
        assert day.overdue_total >= 2 and day.due_today_total >= 2, user.email
        assert day.upcoming_total >= 3, user.email
        assert day.deals_needing_next_step, user.email
        today = NOW.astimezone(zone).date()
        assert any(t.all_day and t.due_at and t.due_at.date() == today for t in day.due_today)
        utc_day = tasks.my_day(session, admin, user.id, now=NOW, zone=UTC)
        assert any(not t.all_day for t in utc_day.due_today), "timed tasks are today in UTC too"
        done = tasks.list_tasks(session, admin, assignee_id=user.id, status=["done"])
        assert done.items and all(t.completed_at and t.completed_at <= NOW for t in done.items)
        assert tasks.unread_count(session, auth_service.actor_for(user)) >= 1, user.email
        series = [t for t in day.upcoming + day.due_today if t.recurrence]
        assert series and series[0].series_id is not None, user.email
    assert any(t.remind_at for t in tasks.list_tasks(session, admin, status=["open"]).items)


def _check_forecast(session: Session, admin: Actor, every: list[DealRead]) -> None:
    quarter = forecasts.quarter_of(NOW.date())
    report = forecasts.forecast(session, admin, forecasts.report_scope(session, quarter))
    total = report.total
    assert total.weighted > 0 and total.won > 0 and total.quota and total.quota > 0

    def within(day: date | None) -> bool:
        return day is not None and quarter.start <= day <= quarter.last_day

    expected_open = [d for d in every if d.status == "open" and within(d.expected_close_date)]
    won = [d for d in every if d.status == "won" and within(d.closed_at and d.closed_at.date())]
    lost_here = [d for d in every if d.status == "lost" and within(d.expected_close_date)]
    omitted = [d for d in expected_open if d.forecast_category == "omitted"]
    assert total.open_count == len(expected_open) - len(omitted)
    assert total.won_count == len(won) and won
    assert lost_here, "lost deals expected to close this quarter, which the forecast leaves out"

    rows = {row.user_id: row for row in report.rows if row.user_id is not None}
    by_email = {u.email.split("@")[0]: u.id for u in auth_service.list_users(session)}

    def standing(local: str) -> float:
        row = rows[by_email[local]]
        assert row.quota
        return float(row.weighted / row.quota)

    assert standing("misaki.suzuki") > 1.15
    assert 0.85 < standing("shota.sato") < 1.15
    assert standing("kenta.takahashi") < 0.75
    teams = forecasts.forecast(
        session, admin, forecasts.report_scope(session, quarter, group="team")
    )
    assert all(row.quota for row in teams.rows if row.kind == "team")
    month = forecasts.forecast(
        session, admin, forecasts.report_scope(session, forecasts.month_of(NOW.date()))
    )
    assert month.total.quota and month.total.quota < total.quota
    previous = forecasts.quarter_of(quarter.start - timedelta(days=1))
    past = forecasts.forecast(session, admin, forecasts.report_scope(session, previous))
    assert past.total.won_count > 0 and past.total.quota
    metrics = forecasts.sales_metrics(
        session, admin, forecasts.report_scope(session, forecasts.year_of(NOW.date()))
    )
    assert metrics.total.win_rate and 5 < metrics.total.win_rate < 80
    assert any(c.entered and c.advanced and c.won for c in metrics.stage_conversion)


#: Twenty minutes into a new quarter (09:20 in Tokyo): nothing closed in it yet.
QUARTER_START = datetime(2027, 1, 1, 0, 20, tzinfo=UTC)


def _fingerprint(tmp_path: Path, name: str) -> list[tuple[object, ...]]:
    """What a load on the first morning of a quarter wrote, after checking that its
    forecast and the reps' days have something to show even then."""
    database = Database(
        create_db_engine(f"sqlite:///{tmp_path / name}.db"),
        Settings(data_dir=tmp_path, secret_key="s" * 20),
    )
    try:
        _load(database, QUARTER_START, seed=9)
        with database.sessionmaker() as session:
            reader = Actor.system("test-reader")
            quarter = forecasts.quarter_of(QUARTER_START.date())
            report = forecasts.forecast(session, reader, forecasts.report_scope(session, quarter))
            assert report.total.weighted > 0 and report.total.quota
            for user in _sellers(session):
                day = tasks.my_day(session, reader, user.id, now=QUARTER_START, zone=TOKYO)
                assert day.overdue_total and day.due_today_total, user.email
            every = _all_deals(session, reader)
            assert all(d.created_at <= QUARTER_START for d in every)
            rows: list[tuple[object, ...]] = [
                (
                    d.name,
                    d.amount,
                    d.currency,
                    d.stage_name,
                    d.owner_id,
                    d.expected_close_date,
                    d.closed_at,
                    d.created_at,
                    d.next_step,
                )
                for d in every
            ]
            page = activities.list_activities(session, reader, limit=500)
            rows += [(a.kind, a.subject, a.occurred_at, a.owner_id) for a in page.items]
            page_of_tasks = tasks.list_tasks(session, reader, limit=500)
            rows += [(t.title, t.due_at, t.status) for t in page_of_tasks.items]
            return rows
    finally:
        database.dispose()


def test_the_same_seed_and_day_load_the_same_sales(tmp_path: Path) -> None:
    first = _fingerprint(tmp_path, "a")
    second = _fingerprint(tmp_path, "b")

    assert len(first) > 500
    assert first == second
