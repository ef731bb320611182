"""Deal pages through HTTP: list, form with field errors and stale edits, detail with stage
history, board moves that ask for required fields, pipeline and lost-reason settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, form_values, sign_in
from tests.conftest import make_user

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyCreate
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import DealCreate, DealUpdate, LostReasonCreate, PipelineCreate

BOARD = {"X-Board": "1"}


@dataclass(frozen=True)
class Setup:
    pipeline_id: int
    stages: dict[str, int]
    deal_id: int
    company_id: int
    contact_id: int
    reason_id: int


@pytest.fixture
def sales(app_db: Database, admin_actor: Actor) -> Setup:
    with app_db.sessionmaker() as session:
        pipeline = service.create_pipeline(session, PipelineCreate(name="Sales"), admin_actor)
        reason = service.create_lost_reason(session, LostReasonCreate(name="Price"), admin_actor)
        company = companies.create_company(
            session, CompanyCreate(name="株式会社サクラ精工"), admin_actor
        )
        person = contacts.create_contact(
            session,
            ContactCreate(last_name="山田", first_name="太郎", email="taro@sakura.example"),
            admin_actor,
        )
        deal = service.create_deal(
            session,
            DealCreate(name="生産管理システム", company_id=company.id),
            admin_actor,
        )
    return Setup(
        pipeline.id,
        {s.name: s.id for s in pipeline.stages},
        deal.id,
        company.id,
        person.id,
        reason.id,
    )


def _names(html: str) -> list[str]:
    return re.findall(r'<td class="name-cell"><a href="/deals/\d+">([^<]+)</a>', html)


def test_navigation_list_and_panels(browser: TestClient, sales: Setup) -> None:
    page = browser.get("/deals")
    assert page.status_code == 200
    assert '<a href="/deals" aria-current="page">Deals</a>' in page.text
    assert _names(page.text) == ["生産管理システム"]
    assert _names(browser.get("/deals", params={"q": "生産"}).text) == ["生産管理システム"]
    assert _names(browser.get("/deals", params={"status": "won"}).text) == []
    only_stage = browser.get("/deals", params={"stage": sales.stages["Meeting"]})
    assert "No deals match." in only_stage.text
    results = browser.get(
        "/deals", params={"owner": "me"}, headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert "<html" not in results.text and _names(results.text) == ["生産管理システム"]
    panel = browser.get(f"/deals/_for-company/{sales.company_id}")
    assert "生産管理システム" in panel.text and f"company_id={sales.company_id}" in panel.text
    assert "No deals yet." in browser.get(f"/deals/_for-contact/{sales.contact_id}").text
    assert 'hx-get="/deals/_for-company/' in browser.get(f"/companies/{sales.company_id}").text
    assert 'hx-get="/deals/_for-contact/' in browser.get(f"/contacts/{sales.contact_id}").text


def test_create_with_field_errors_then_edit_and_a_stale_edit(
    browser: TestClient, sales: Setup
) -> None:
    form = browser.get("/deals/new", params={"contact_id": sales.contact_id})
    values = form_values(form.text)
    assert values["contacts-0-email"] == "taro@sakura.example"
    values.update(
        {
            "name": "保守契約",
            "amount": "100.5",
            "stage_id": str(sales.stages["Proposal"]),
            "contacts-0-role": "champion",
            "company": "No such company",
            "expected_close_date": "2001-01-01",
        }
    )
    refused = browser.post("/deals/new", data=values, follow_redirects=False)
    assert refused.status_code == 422
    assert "No single company has this name." in refused.text
    values["company"] = "株式会社サクラ精工"
    refused = browser.post("/deals/new", data=values, follow_redirects=False)
    assert refused.status_code == 422
    assert "Too many decimal places for this currency." in refused.text
    assert "is before the day the deal was created" in refused.text
    values.update(amount="1234500", expected_close_date="2099-03-31")
    created = browser.post("/deals/new", data=values, follow_redirects=False)
    assert created.status_code == 303, created.text
    detail = browser.get(created.headers["location"])
    assert "Deal created." in detail.text and "保守契約" in detail.text
    assert "Champion" in detail.text and "山田 太郎" in detail.text
    assert 'hx-get="/timeline/deal/' in detail.text and 'hx-get="/tasks/for/deal/' in detail.text
    # The change history names the contact and role, and groups the amount's digits.
    audit = detail.text.split('class="card history"')[1].split("</section>")[0]
    assert "山田 太郎 (Champion)" in audit and "1,234,500" in audit
    assert "contact_id" not in audit
    deal_id = int(created.headers["location"].rsplit("/", 1)[1])

    edit = form_values(browser.get(f"/deals/{deal_id}/edit").text)
    assert edit["amount"] == "1234500" and edit["version"] == "1"
    edit["next_step"] = "Send the quote"
    saved = browser.post(f"/deals/{deal_id}/edit", data=edit, follow_redirects=False)
    assert saved.status_code == 303
    edit["next_step"] = "Call again"
    stale = browser.post(f"/deals/{deal_id}/edit", data=edit, follow_redirects=False)
    assert stale.status_code == 409 and "Someone else changed this record" in stale.text


def test_board_moves_ask_for_required_fields(
    browser: TestClient, sales: Setup, app_db: Database, admin_actor: Actor
) -> None:
    board = browser.get(f"/pipelines/{sales.pipeline_id}/board")
    assert board.status_code == 200
    assert f'data-deal-id="{sales.deal_id}"' in board.text
    assert "Needs: Amount" in board.text
    token = csrf_token(board.text)
    asked = browser.post(
        f"/deals/{sales.deal_id}/move",
        data={"csrf_token": token, "stage_id": sales.stages["Proposal"], "board_position": "-5"},
        headers=BOARD,
    )
    assert asked.status_code == 422
    assert 'class="move-form' in asked.text and 'name="amount"' in asked.text
    assert 'name="expected_close_date"' not in asked.text
    moved = browser.post(
        f"/deals/{sales.deal_id}/move",
        data={
            "csrf_token": token,
            "stage_id": sales.stages["Proposal"],
            "board_position": "-5",
            "amount": "3000000",
            "currency": "JPY",
            "version": "1",
        },
        headers=BOARD,
    )
    assert moved.status_code == 200, moved.text
    assert moved.text.startswith('<div id="board"')
    proposal = moved.text.split(f'data-stage-id="{sales.stages["Proposal"]}"')[1].split(
        "</section>"
    )[0]
    assert "生産管理システム" in proposal and "¥3,000,000" in proposal
    lost = browser.post(
        f"/deals/{sales.deal_id}/move",
        data={"csrf_token": token, "stage_id": sales.stages["Lost"]},
        headers=BOARD,
    )
    assert lost.status_code == 422 and 'name="lost_reason_id"' in lost.text
    assert ">Price</option>" in lost.text
    stale = browser.post(
        f"/deals/{sales.deal_id}/move",
        data={"csrf_token": token, "stage_id": sales.stages["Meeting"], "version": "1"},
        headers=BOARD,
    )
    assert stale.status_code == 409 and "Someone else changed this deal" in stale.text
    with app_db.sessionmaker() as session:
        deal = service.get_deal(session, sales.deal_id, admin_actor)
        assert (deal.stage_name, deal.amount, deal.board_position) == (
            "Proposal",
            Decimal(3000000),
            -5.0,
        )
    # Without the board: the deal's page, and a page of its own for missing fields.
    page_move = browser.post(
        f"/deals/{sales.deal_id}/move",
        data={"csrf_token": token, "stage_id": sales.stages["Negotiation"]},
        follow_redirects=False,
    )
    assert page_move.status_code == 422 and "<html" in page_move.text
    assert 'name="expected_close_date"' in page_move.text
    done = browser.post(
        f"/deals/{sales.deal_id}/move",
        data={
            "csrf_token": token,
            "stage_id": sales.stages["Negotiation"],
            "expected_close_date": "2099-01-31",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    detail = browser.get(f"/deals/{sales.deal_id}").text
    history = detail.split('class="card stage-history"')[1].split("</section>")[0]
    assert history.index("Negotiation") < history.index("Proposal") < history.index("Qualified")
    assert "(so far)" in history
    assert "Place on the board" not in detail


def test_board_filters_by_owner(browser: TestClient, sales: Setup) -> None:
    mine = browser.get(
        f"/pipelines/{sales.pipeline_id}/board",
        params={"owner": "me"},
        headers={"HX-Request": "true", "HX-Target": "board"},
    )
    assert mine.text.startswith('<div id="board" class="board" data-owner="me"')
    assert "生産管理システム" in mine.text
    nobody = browser.get(f"/pipelines/{sales.pipeline_id}/board", params={"owner": "99999"})
    assert "生産管理システム" not in nobody.text
    assert browser.get("/deals/board", follow_redirects=False).headers["location"] == (
        f"/pipelines/{sales.pipeline_id}/board"
    )


def test_pipeline_settings(
    browser: TestClient, sales: Setup, app_db: Database, admin_actor: Actor
) -> None:
    page = browser.get("/pipelines")
    token = csrf_token(page.text)
    assert "Qualified → Meeting" in page.text
    created = browser.post(
        "/pipelines/new", data={"csrf_token": token, "name": "Partners"}, follow_redirects=False
    )
    assert created.status_code == 303
    edit_url = created.headers["location"]
    pipeline_id = int(edit_url.split("/")[2])
    edit = browser.get(edit_url).text
    assert "Fields needed to enter this stage" in edit
    with app_db.sessionmaker() as session:
        stages = service.get_pipeline(session, pipeline_id, admin_actor).stages
    meeting = stages[1]
    saved = browser.post(
        f"/pipelines/{pipeline_id}/stages/{meeting.id}",
        data={
            "csrf_token": token,
            "name": "Demo",
            "probability": "30",
            "kind": "open",
            "required_fields": ["company_id", "contacts"],
            "rotting_days": "10",
            "version": "1",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    bad = browser.post(
        f"/pipelines/{pipeline_id}/stages/{meeting.id}",
        data={"csrf_token": token, "name": "Qualified", "probability": "30", "kind": "open"},
    )
    assert bad.status_code == 422 and "another stage has this name" in bad.text
    added = browser.post(
        f"/pipelines/{pipeline_id}/stages",
        data={"csrf_token": token, "name": "Contract", "probability": "90", "kind": "open"},
        follow_redirects=False,
    )
    assert added.status_code == 303
    browser.post(f"/pipelines/{pipeline_id}/stages/{meeting.id}/down", data={"csrf_token": token})
    with app_db.sessionmaker() as session:
        names = [s.name for s in service.get_pipeline(session, pipeline_id, admin_actor).stages]
        demo = next(
            s
            for s in service.get_pipeline(session, pipeline_id, admin_actor).stages
            if s.name == "Demo"
        )
    assert names == ["Qualified", "Proposal", "Demo", "Negotiation", "Contract", "Won", "Lost"]
    assert (demo.required_fields, demo.rotting_days) == (["company_id", "contacts"], 10)
    removed = browser.post(
        f"/pipelines/{pipeline_id}/stages/{demo.id}/delete",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    kept = browser.post(
        f"/pipelines/{sales.pipeline_id}/stages/{sales.stages['Qualified']}/delete",
        data={"csrf_token": token},
    )
    assert kept.status_code == 409 and "the stage has deals" in kept.text

    reasons = browser.post(
        "/pipelines/lost-reasons",
        data={"csrf_token": token, "reason": "Timing"},
        follow_redirects=False,
    )
    assert reasons.status_code == 303
    twice = browser.post("/pipelines/lost-reasons", data={"csrf_token": token, "reason": "Timing"})
    assert twice.status_code == 409 and "already in use" in twice.text
    browser.post(
        f"/pipelines/lost-reasons/{sales.reason_id}", data={"csrf_token": token, "active": "0"}
    )
    assert "Not in use" in browser.get("/pipelines").text
    deleted = browser.post(
        f"/pipelines/{pipeline_id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert deleted.status_code == 303


def test_japanese_pages(
    browser: TestClient, sales: Setup, app_db: Database, admin_actor: Actor
) -> None:
    token = csrf_token(browser.get("/deals").text)
    browser.post("/locale", data={"csrf_token": token, "locale": "ja", "next": "/deals"})
    with app_db.sessionmaker() as session:
        service.update_deal(session, sales.deal_id, DealUpdate(amount=Decimal(5)), admin_actor)
    board = browser.get(f"/pipelines/{sales.pipeline_id}/board").text
    assert "商談を別のステージへドラッグすると移動します" in board
    detail = browser.get(f"/deals/{sales.deal_id}").text
    assert "ステージ履歴" in detail and "ステージ滞在時間" in detail


def test_read_only_roles_see_no_edit_controls(
    app_db: Database, sales: Setup, anonymous: TestClient
) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "viewer@example.com", "viewer")
    sign_in(anonymous, "viewer@example.com")
    board = anonymous.get(f"/pipelines/{sales.pipeline_id}/board").text
    assert 'draggable="true"' not in board and "New deal" not in board
    assert "Edit stages" not in board
    token = csrf_token(board)
    refused = anonymous.post(
        f"/deals/{sales.deal_id}/move",
        data={"csrf_token": token, "stage_id": sales.stages["Meeting"]},
        headers=BOARD,
    )
    assert refused.status_code == 403
    assert "Stop using" not in anonymous.get("/pipelines").text
