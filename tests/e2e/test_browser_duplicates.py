"""In Chromium: scan the contacts for duplicates, review a pair side by side, merge it (the
merged contact's deal role and task move to the survivor), undo the merge (they move back),
and get warned of an existing contact while typing a new one into the contact form."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session
from tests.e2e.conftest import ADMIN_EMAIL, LiveServer, sign_in

from ichigen.auth import service as auth_service
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.crm.contacts import service as contacts_service
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.crm.deals import service as deals_service
from ichigen.crm.deals.schemas import DealContactIn, DealCreate, PipelineCreate
from ichigen.crm.tasks import service as tasks_service
from ichigen.crm.tasks.schemas import TaskCreate

pytestmark = pytest.mark.e2e

FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["翔", "蓮", "陽菜", "結衣", "大輝", "美咲", "拓海", "葵", "悠真", "凛"]


@dataclass(frozen=True)
class Twins:
    tag: str
    keep_id: int
    gone_id: int
    last_name: str
    deal_id: int
    task_id: int


def _database(server: LiveServer) -> Database:
    settings = Settings(data_dir=server.data_dir, secret_key="e2e-secret-key-0123456789abcdef")
    return Database.from_settings(settings)


@pytest.fixture
def twins(live_server: LiveServer) -> Iterator[Twins]:
    """Thirty different people and one entered twice (the second time with another address
    and the phone number written differently), with a deal role and a task on the second."""
    tag = uuid.uuid4().hex[:6]
    database = _database(live_server)
    with database.sessionmaker() as session:
        admin = auth_service.find_user_by_email(session, ADMIN_EMAIL)
        assert admin is not None
        by = auth_service.actor_for(admin)
        for n in range(30):
            contacts_service.create_contact(
                session,
                ContactCreate(
                    last_name=FAMILY[n % 10],
                    first_name=GIVEN[(n * 3 + n // 10) % 10],
                    email=f"p{n}-{tag}@example{n % 4}.jp",
                    phone=f"080-{5000 + n:04d}-{int(tag, 16) % 9000 + 1000:04d}",
                ),
                by,
            )
        last_name = f"Dupe{tag}"
        phone = f"070-{int(tag, 16) % 9000 + 1000:04d}-1234"
        keep = contacts_service.create_contact(
            session,
            ContactCreate(
                last_name=last_name,
                first_name="Hana",
                email=f"hana-{tag}@example.com",
                phone=phone,
                job_title="Buyer",
            ),
            by,
        )
        gone = contacts_service.create_contact(
            session,
            ContactCreate(
                last_name=last_name,
                first_name="Hana",
                email=f"hana.{tag}@home.example.jp",
                phone=phone.replace("-", ""),
                city="Kobe",
            ),
            by,
        )
        pipeline = deals_service.create_pipeline(session, PipelineCreate(name=f"Dupes {tag}"), by)
        deal = deals_service.create_deal(
            session,
            DealCreate(
                name=f"Renewal {tag}",
                pipeline_id=pipeline.id,
                contacts=[DealContactIn(contact_id=gone.id, role="decision_maker")],
            ),
            by,
        )
        task = tasks_service.create_task(
            session,
            TaskCreate(title=f"Call Hana {tag}", record_type="contact", record_id=gone.id),
            by,
        )
    database.dispose()
    yield Twins(tag, keep.id, gone.id, last_name, deal.id, task.id)


def _where(server: LiveServer, twins: Twins) -> tuple[set[int], set[int], int | None]:
    """Which contacts exist, who is on the deal, and whom the task is about (from the store)."""
    database = _database(server)
    try:
        with database.sessionmaker() as session:
            live = contacts_service.existing_contact_ids(session, [twins.keep_id, twins.gone_id])
            on_deal = {
                c.contact_id
                for c in deals_service.get_deal(
                    session, twins.deal_id, _system_admin(session)
                ).contacts
            }
            task = tasks_service.get_task(session, twins.task_id, _system_admin(session))
            return live, on_deal, task.record_id
    finally:
        database.dispose()


def _system_admin(session: Session) -> Actor:
    admin = auth_service.find_user_by_email(session, ADMIN_EMAIL)
    assert admin is not None
    return auth_service.actor_for(admin)


def test_review_merge_and_undo(page: Page, live_server: LiveServer, twins: Twins) -> None:
    sign_in(page, live_server, "/duplicates")
    expect(page.get_by_role("heading", name="Duplicate contacts", level=1)).to_be_visible()
    page.get_by_role("button", name="Scan all contacts now").click()
    expect(page.locator("#scan-result")).to_contain_text("contacts scanned")

    pair = page.locator("article.duplicate-pair").filter(has_text=twins.last_name)
    expect(pair).to_have_count(1)
    # Side by side: both addresses, and why they look alike.
    expect(pair).to_contain_text(f"hana-{twins.tag}@example.com")
    expect(pair).to_contain_text(f"hana.{twins.tag}@home.example.jp")
    pair.get_by_text("Why these look alike").click()
    weights = pair.locator("details.contributions")
    expect(weights.get_by_role("row", name=re.compile(r"^Phone \+\d"))).to_be_visible()
    pair.get_by_role("radio", name=f"Keep contact {twins.keep_id}").check()
    pair.get_by_role("button", name="Merge").click()

    done = page.locator("#merge-done")
    expect(done).to_contain_text(
        f"Contact {twins.gone_id} was merged into contact {twins.keep_id}."
    )
    assert _where(live_server, twins) == ({twins.keep_id}, {twins.keep_id}, twins.keep_id)
    # The survivor now carries both addresses and the merged contact's city.
    page.goto(f"{live_server.url}/contacts/{twins.keep_id}")
    expect(page.get_by_role("link", name=f"hana.{twins.tag}@home.example.jp")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Kobe")
    page.go_back()

    page.locator("#merge-done").get_by_role("button", name="Undo merge").click()
    expect(page.get_by_role("status").filter(has_text="Merge undone")).to_be_visible()
    assert _where(live_server, twins) == (
        {twins.keep_id, twins.gone_id},
        {twins.gone_id},
        twins.gone_id,
    )
    # The pair is back in the queue, and the merged contact is back with its id.
    expect(page.locator("article.duplicate-pair").filter(has_text=twins.last_name)).to_have_count(1)
    page.goto(f"{live_server.url}/contacts/{twins.gone_id}")
    expect(page.get_by_role("link", name=f"hana.{twins.tag}@home.example.jp")).to_be_visible()
    page.goto(f"{live_server.url}/contacts/{twins.keep_id}")
    expect(page.get_by_role("link", name=f"hana.{twins.tag}@home.example.jp")).to_have_count(0)


def test_the_contact_form_warns_of_an_existing_contact(
    page: Page, live_server: LiveServer, twins: Twins
) -> None:
    sign_in(page, live_server, "/contacts/new")
    page.locator("#f-emails-0-email").fill(f"HANA-{twins.tag}@example.com")
    page.locator("#f-emails-0-email").blur()
    warning = page.locator("#duplicate-warning")
    expect(warning).to_contain_text("This contact may already exist.")
    expect(warning.get_by_role("link", name=f"{twins.last_name}")).to_have_attribute(
        "href", f"/contacts/{twins.keep_id}"
    )
