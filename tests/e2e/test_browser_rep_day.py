"""In Chromium, a sales rep's day: sign in, see My day (an overdue task, one due today, a deal
without a next step), drag a deal on to the next stage on the board, log a call on the deal
and find it on the deal's and the contact's timeline, complete a task from My day and find
it on the deal's timeline, and see all of it on the sales dashboard's charts and figures."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import ADMIN_EMAIL, LiveServer, sign_in

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import Role
from ichigen.auth.schemas import UserCreate
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.crm.contacts import service as contacts_service
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.crm.deals import service as deals_service
from ichigen.crm.deals.schemas import DealContactIn, DealCreate, PipelineCreate
from ichigen.crm.tasks import service as tasks_service
from ichigen.crm.tasks.schemas import TaskCreate

pytestmark = pytest.mark.e2e

REP_PASSWORD = "rep-correct-horse-battery-staple"
#: The browser's zone (the ``page`` fixture's), told to the server up front by its cookie.
ZONE = ZoneInfo("Asia/Tokyo")


@dataclass(frozen=True)
class RepDay:
    tag: str
    rep_id: int
    rep_email: str
    rep_name: str
    pipeline_id: int
    stages: dict[str, int]
    deal_id: int
    deal_name: str
    settled_deal_name: str
    contact_id: int
    contact_name: str
    overdue_task_id: int
    overdue_title: str
    today_task_id: int
    today_title: str


@pytest.fixture
def rep_day(live_server: LiveServer) -> Iterator[RepDay]:
    """A sales rep of their own with a pipeline of their own (the server is shared): a deal in
    Meeting with a contact and no next step, a deal whose next step is planned, a task overdue
    on the deal and one due today on the contact."""
    settings = Settings(data_dir=live_server.data_dir, secret_key="e2e-secret-key-0123456789abcdef")
    database = Database.from_settings(settings)
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    today = now.astimezone(ZONE).date()
    with database.sessionmaker() as session:
        admin = auth_service.find_user_by_email(session, ADMIN_EMAIL)
        assert admin is not None
        as_admin = auth_service.actor_for(admin)
        rep = auth_service.create_user(
            session,
            UserCreate(
                email=f"rep-{tag}@example.com",
                name=f"Ren Rep {tag}",
                role=Role.sales,
                password=REP_PASSWORD,
            ),
            as_admin,
        )
        as_rep = auth_service.actor_for(rep)
        pipeline = deals_service.create_pipeline(
            session, PipelineCreate(name=f"Rep day {tag}"), as_admin
        )
        stages = {s.name: s.id for s in pipeline.stages}
        contact = contacts_service.create_contact(
            session,
            ContactCreate(
                first_name="Kenji",
                last_name=f"Mori {tag}",
                email=f"kenji-{tag}@example.com",
                owner=rep.email,
            ),
            as_rep,
        )
        deal_name = f"北星物流 renewal {tag}"
        deal = deals_service.create_deal(
            session,
            DealCreate(
                name=deal_name,
                stage_id=stages["Meeting"],
                amount=Decimal(3_000_000),
                owner_id=rep.id,
                # In the dashboard's period (this quarter, by the server's UTC date).
                expected_close_date=now.date(),
                contacts=[DealContactIn(contact_id=contact.id, role="decision_maker")],
            ),
            as_rep,
        )
        settled_name = f"Planned {tag}"
        deals_service.create_deal(
            session,
            DealCreate(
                name=settled_name,
                stage_id=stages["Qualified"],
                amount=Decimal(500_000),
                owner_id=rep.id,
                next_step="Send the quote",
                next_step_due=today + timedelta(days=3),
            ),
            as_rep,
        )
        overdue_title = f"Call back about the renewal {tag}"
        overdue = tasks_service.create_task(
            session,
            TaskCreate(
                title=overdue_title,
                due_at=now - timedelta(days=2),
                record_type="deal",
                record_id=deal.id,
            ),
            as_rep,
        )
        today_title = f"Send Kenji the brochure {tag}"
        due_today = tasks_service.create_task(
            session,
            TaskCreate(
                title=today_title,
                due_at=datetime.combine(today, time(12), ZONE),
                all_day=True,
                record_type="contact",
                record_id=contact.id,
            ),
            as_rep,
        )
    database.dispose()
    yield RepDay(
        tag=tag,
        rep_id=rep.id,
        rep_email=rep.email,
        rep_name=rep.name,
        pipeline_id=pipeline.id,
        stages=stages,
        deal_id=deal.id,
        deal_name=deal_name,
        settled_deal_name=settled_name,
        contact_id=contact.id,
        contact_name=contact.full_name,
        overdue_task_id=overdue.id,
        overdue_title=overdue_title,
        today_task_id=due_today.id,
        today_title=today_title,
    )


def sign_in_as(page: Page, server: LiveServer, email: str, password: str, path: str) -> None:
    """Sign in as someone, with the browser's time zone told to the server up front."""
    page.context.add_cookies([{"name": "ichigen_tz", "value": str(ZONE), "url": server.url}])
    sign_in(page, server, path, email, password)


def _amount(value: Any) -> Decimal:
    return Decimal(str(value))


def test_a_sales_reps_day(page: Page, live_server: LiveServer, rep_day: RepDay) -> None:
    shots = live_server.screenshots
    day = rep_day

    # 1. The rep signs in and lands on My day, under their own name.
    sign_in_as(page, live_server, day.rep_email, REP_PASSWORD, "/my-day")
    expect(page.get_by_role("heading", name="My day", level=1)).to_be_visible()
    expect(page.locator(".user-name")).to_have_text(day.rep_name)

    # 2. My day: the overdue task, the task due today, the deal that needs a next step.
    overdue = page.locator("section.task-section-overdue")
    late = overdue.locator(f"#task-{day.overdue_task_id}")
    expect(late).to_contain_text(day.overdue_title)
    expect(late).to_have_class(re.compile(r"\boverdue\b"))
    expect(late.locator(".task-about")).to_have_text(f"Deal: {day.deal_name}")
    due_today = page.locator("section.task-section-today")
    expect(due_today.locator(f"#task-{day.today_task_id}")).to_contain_text(day.today_title)
    expect(due_today.locator(f"#task-{day.today_task_id} .task-about")).to_have_text(
        f"Contact: {day.contact_name}"
    )
    expect(overdue.locator(f"#task-{day.today_task_id}")).to_have_count(0)
    needs_step = page.locator("section[aria-labelledby='s-deals']")
    deal_item = needs_step.locator("li.task-item").filter(
        has=page.get_by_role("link", name=day.deal_name, exact=True)
    )
    expect(deal_item).to_have_count(1)
    expect(deal_item).to_contain_text("Meeting")
    expect(deal_item).to_contain_text("No next step")
    # The deal whose next step is planned is not nagged about.
    expect(needs_step.get_by_text(day.settled_deal_name)).to_have_count(0)
    page.screenshot(path=shots / "rep-day-01-my-day.png", full_page=True)

    # 3. The board: drag the deal from Meeting on to Proposal (it has the amount Proposal
    # needs, so no dialog asks for anything).
    page.goto(f"{live_server.url}/pipelines/{day.pipeline_id}/board")
    meeting = page.locator(f'.board-column[data-stage-id="{day.stages["Meeting"]}"]')
    proposal = page.locator(f'.board-column[data-stage-id="{day.stages["Proposal"]}"]')
    card = meeting.locator(f'.board-card[data-deal-id="{day.deal_id}"]')
    expect(card).to_be_visible()
    expect(card.locator(".board-card-meta")).to_contain_text(day.rep_name)
    expect(proposal.locator(".board-count")).to_have_text("0")
    card.drag_to(proposal.locator(".board-cards"))
    moved = proposal.locator(f'.board-card[data-deal-id="{day.deal_id}"]')
    expect(moved).to_be_visible()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(proposal.locator(".board-count")).to_have_text("1")
    expect(meeting.locator(".board-card")).to_have_count(0)
    expect(meeting.locator(".board-count")).to_have_text("0")
    expect(proposal.locator(".board-totals")).to_contain_text("3,000,000")
    page.screenshot(path=shots / "rep-day-02-board.png", full_page=True)
    # The move was saved, not only drawn: a fresh board has it in Proposal.
    page.reload()
    expect(proposal.locator(f'.board-card[data-deal-id="{day.deal_id}"]')).to_be_visible()

    # ... and the deal's page shows the move, by the rep, in its stage history.
    proposal.get_by_role("link", name=day.deal_name).click()
    expect(page.get_by_role("heading", name=day.deal_name, level=1)).to_be_visible()
    expect(page.locator(".deal-stage")).to_have_text("Proposal")
    history = page.locator("section.stage-history tbody tr")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("Proposal")
    expect(history.first).to_contain_text("from Meeting")
    expect(history.first).to_contain_text("(so far)")
    expect(history.first).to_contain_text(day.rep_name)
    expect(history.last).to_contain_text("Meeting")

    # 4. Log a call with its outcome on the deal's timeline.
    timeline = page.locator(f"#timeline-deal-{day.deal_id}")
    timeline.get_by_text("Log an activity", exact=True).click()
    form = page.locator(f"#timeline-deal-{day.deal_id}-form")
    form.get_by_role("button", name="Call", exact=True).click()
    expect(form.get_by_role("button", name="Call", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    subject = f"Renewal call with Kenji {day.tag}"
    form.get_by_label("Subject").fill(subject)
    form.get_by_label("Direction").select_option(label="Outbound")
    form.get_by_label("Duration (minutes)").fill("12")
    form.get_by_label("Outcome").select_option(label="Connected")
    form.get_by_label("Notes").fill("Agreed to review the proposal with their CFO.")
    form.get_by_role("button", name="Log", exact=True).click()
    call = page.locator(f"#timeline-deal-{day.deal_id}-items li.activity-call").filter(
        has_text=subject
    )
    expect(call).to_have_count(1)
    expect(call.locator(".activity-details")).to_have_text("Outbound · 12 min · Connected")
    expect(call.locator(".activity-body")).to_have_text(
        "Agreed to review the proposal with their CFO."
    )
    expect(call.locator(".activity-links")).to_contain_text(day.deal_name)
    # A fresh form replaces the filled one.
    expect(form.get_by_label("Subject")).to_have_value("")
    page.screenshot(path=shots / "rep-day-03-call-logged.png", full_page=True)
    # It stays there on a fresh page ...
    page.reload()
    expect(
        page.locator(f"#timeline-deal-{day.deal_id}-items li.activity-call").filter(
            has_text=subject
        )
    ).to_have_count(1)

    # ... and the contact on the deal sees it on their timeline too.
    page.locator(".deal-people").get_by_role("link", name=day.contact_name).click()
    expect(page.get_by_role("heading", name=day.contact_name, level=1)).to_be_visible()
    contact_call = page.locator(
        f"#timeline-contact-{day.contact_id}-items li.activity-call"
    ).filter(has_text=subject)
    expect(contact_call).to_have_count(1)
    expect(contact_call.locator(".activity-details")).to_contain_text("Connected")
    page.screenshot(path=shots / "rep-day-04-contact-timeline.png", full_page=True)

    # 5. Complete the overdue task from My day: its row leaves, a toast says so.
    page.goto(f"{live_server.url}/my-day")
    row = page.locator(f"#task-{day.overdue_task_id}")
    expect(row).to_be_visible()
    row.get_by_role("button", name=f"Complete “{day.overdue_title}”").click()
    expect(page.locator("#toast")).to_contain_text(f"Completed “{day.overdue_title}”.")
    expect(row).to_have_count(0)
    # The emptied Overdue section counts 0 and says so, without a reload.
    expect(overdue.locator("h2 .badge")).to_have_text("0")
    expect(overdue.locator(".task-empty")).to_have_text("Nothing overdue.")
    page.screenshot(path=shots / "rep-day-05-completed.png", full_page=True)
    page.reload()
    expect(page.locator(f"#task-{day.today_task_id}")).to_be_visible()
    expect(page.locator(f"#task-{day.overdue_task_id}")).to_have_count(0)
    # Not among the rep's open tasks either, but among the done ones.
    page.goto(f"{live_server.url}/tasks")
    expect(page.locator(f"#task-{day.today_task_id}")).to_be_visible()
    expect(page.locator(f"#task-{day.overdue_task_id}")).to_have_count(0)
    page.goto(f"{live_server.url}/tasks?status=done")
    expect(page.locator(f"#task-{day.overdue_task_id}")).to_contain_text(day.overdue_title)
    # The deal it was about has a "task done" entry on its timeline.
    page.goto(f"{live_server.url}/deals/{day.deal_id}")
    done = page.locator(f"#timeline-deal-{day.deal_id}-items li.activity-task").filter(
        has_text=day.overdue_title
    )
    expect(done).to_have_count(1)
    expect(done.locator(".badge")).to_have_text("Task")
    expect(done.locator(".who")).to_have_text(day.rep_name)

    # 6. The sales dashboard of this pipeline: the charts are drawn from the data.
    with page.expect_response(lambda r: "/dashboard/charts.json" in r.url) as answer:
        page.goto(f"{live_server.url}/dashboard?pipeline_id={day.pipeline_id}")
    expect(page.get_by_role("heading", name="Sales dashboard", level=1)).to_be_visible()
    charts_root = page.locator('#dashboard-charts[data-drawn="true"]')
    expect(charts_root).to_be_visible()
    canvases = charts_root.locator("canvas")
    expect(canvases).to_have_count(4)
    for chart_id in ("chart-pipeline", "chart-quota", "chart-trend", "chart-activity"):
        drawn = page.evaluate(
            "id => { const c = window.Chart.getChart(id); const el = document.getElementById(id);"
            " return !!c && el.width > 0 && el.height > 0; }",
            chart_id,
        )
        assert drawn, f"{chart_id} has no chart drawn on it"
    expect(page.locator("#chart-status")).to_have_text("")
    # The pipeline chart's bars stand at the heights of their amounts (which also waits for
    # Chart.js to finish growing them, for the screenshot).
    page.wait_for_function(
        "() => { const c = window.Chart.getChart('chart-pipeline');"
        " const bars = c.getDatasetMeta(0).data, scale = c.scales.y;"
        " return bars.length === 4 && c.data.datasets[0].data.every("
        "   (v, i) => Math.abs(bars[i].y - scale.getPixelForValue(v)) < 1); }"
    )
    page.screenshot(path=shots / "rep-day-06-dashboard.png", full_page=True)

    charts = answer.value.json()
    by_stage = {s["name"]: s for s in charts["pipeline_by_stage"]["stages"]}
    assert charts["pipeline_by_stage"]["pipeline_id"] == day.pipeline_id
    assert list(by_stage) == ["Qualified", "Meeting", "Proposal", "Negotiation"]
    assert (by_stage["Proposal"]["count"], _amount(by_stage["Proposal"]["amount"])) == (
        1,
        Decimal(3_000_000),
    )
    assert by_stage["Meeting"]["count"] == 0
    assert (by_stage["Qualified"]["count"], _amount(by_stage["Qualified"]["amount"])) == (
        1,
        Decimal(500_000),
    )
    # The pipeline chart draws those very amounts.
    drawn_bars = page.evaluate(
        "() => { const c = window.Chart.getChart('chart-pipeline');"
        " return [c.data.labels, c.data.datasets[0].data]; }"
    )
    assert drawn_bars == [
        ["Qualified", "Meeting", "Proposal", "Negotiation"],
        [500000, 0, 3000000, 0],
    ]
    # The rep's call and done task count in the activity chart.
    mine = [r for r in charts["activity_per_rep"] if r["user_id"] == day.rep_id]
    assert len(mine) == 1
    assert mine[0]["counts"].get("call") == 1
    assert mine[0]["counts"].get("task") == 1
    # The forecast: the deal closes this period at Proposal's 50 %.
    quota_bars = [r for r in charts["forecast_vs_quota"] if r["user_id"] == day.rep_id]
    assert len(quota_bars) == 1
    assert _amount(quota_bars[0]["weighted"]) == Decimal(1_500_000)
    rep_row = page.locator("#forecast-table tbody tr").filter(
        has=page.get_by_role("rowheader", name=day.rep_name, exact=True)
    )
    expect(rep_row).to_have_count(1)
    expect(rep_row.locator("td").nth(2)).to_contain_text("3,000,000")  # best case
    expect(rep_row.locator("td").nth(4)).to_contain_text("1,500,000")  # weighted
    # Stage conversion: the deal entered Meeting in this period and moved on from it.
    meeting_step = (
        page.locator("#conversion-table tbody tr")
        .filter(has_text=f"Rep day {day.tag}")
        .filter(has=page.get_by_role("cell", name="Meeting", exact=True))
    )
    expect(meeting_step.locator("td.num").nth(0)).to_have_text("1")  # entered
    expect(meeting_step.locator("td.num").nth(1)).to_have_text("1")  # moved on
