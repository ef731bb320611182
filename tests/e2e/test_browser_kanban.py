"""In Chromium: sign in, open a pipeline's board, drag a deal to the next stage, fill in the
field that stage requires when asked, see the deal in its new column and in its stage history."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import ADMIN_EMAIL, LiveServer, sign_in

from ichigen.auth import service as auth_service
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import DealCreate, PipelineCreate

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Board:
    pipeline_id: int
    stages: dict[str, int]
    deal_id: int
    deal_name: str


@pytest.fixture
def board(live_server: LiveServer) -> Iterator[Board]:
    """A pipeline of its own (the server is shared) with a deal in Meeting and one in Proposal."""
    settings = Settings(data_dir=live_server.data_dir, secret_key="e2e-secret-key-0123456789abcdef")
    database = Database.from_settings(settings)
    tag = uuid.uuid4().hex[:6]
    with database.sessionmaker() as session:
        admin = auth_service.find_user_by_email(session, ADMIN_EMAIL)
        assert admin is not None
        actor = auth_service.actor_for(admin)
        pipeline = service.create_pipeline(session, PipelineCreate(name=f"Board {tag}"), actor)
        stages = {s.name: s.id for s in pipeline.stages}
        name = f"サクラ精工 更新 {tag}"
        deal = service.create_deal(
            session, DealCreate(name=name, stage_id=stages["Meeting"]), actor
        )
        service.create_deal(
            session,
            DealCreate(name=f"Other {tag}", stage_id=stages["Proposal"], amount=Decimal(1000000)),
            actor,
        )
    database.dispose()
    yield Board(pipeline.id, stages, deal.id, name)


def test_drag_a_deal_to_the_next_stage(page: Page, live_server: LiveServer, board: Board) -> None:
    sign_in(page, live_server, f"/pipelines/{board.pipeline_id}/board")
    meeting = page.locator(f'.board-column[data-stage-id="{board.stages["Meeting"]}"]')
    proposal = page.locator(f'.board-column[data-stage-id="{board.stages["Proposal"]}"]')
    card = page.locator(f'.board-card[data-deal-id="{board.deal_id}"]')
    expect(meeting.locator(".board-card")).to_have_count(1)
    expect(proposal.locator(".board-count")).to_have_text("1")

    # Proposal needs an amount, which the deal lacks: the board asks for it.
    card.drag_to(proposal.locator(".board-cards"))
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_have_text(f"Move “{board.deal_name}” to Proposal")
    expect(meeting.locator(f'[data-deal-id="{board.deal_id}"]')).to_have_count(1)
    page.screenshot(path=live_server.screenshots / "kanban-01-asks-for-amount.png")
    dialog.get_by_label("Amount").fill("12.5")
    dialog.get_by_role("button", name="Move the deal").click()
    expect(dialog.locator(".field-error")).to_have_text(
        "Too many decimal places for this currency."
    )
    dialog.get_by_label("Amount").fill("2500000")
    dialog.get_by_role("button", name="Move the deal").click()

    expect(page.get_by_role("dialog")).to_be_hidden()
    moved = proposal.locator(f'.board-card[data-deal-id="{board.deal_id}"]')
    expect(moved).to_be_visible()
    expect(moved.locator(".board-card-amount")).to_have_text(re.compile(r"2,500,000"))
    expect(proposal.locator(".board-count")).to_have_text("2")
    expect(meeting.locator(".board-card")).to_have_count(0)
    expect(proposal.locator(".board-totals")).to_contain_text("3,500,000")
    page.screenshot(path=live_server.screenshots / "kanban-02-moved.png", full_page=True)

    # The deal's page shows the move in its stage history.
    moved.get_by_role("link", name=board.deal_name).click()
    expect(page.get_by_role("heading", name=board.deal_name, level=1)).to_be_visible()
    history = page.locator("section.stage-history tbody tr")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("Proposal")
    expect(history.first).to_contain_text("from Meeting")
    expect(history.first).to_contain_text("(so far)")
    expect(history.last).to_contain_text("Meeting")
    page.screenshot(path=live_server.screenshots / "kanban-03-history.png", full_page=True)
