"""In Chromium, a rep sees a customer's web behaviour: the contact's page shows the latest
tracked events of the person the contact is, and the 360° page shows identity, traits with
their sources, the CRM record and one timeline of tracked events and CRM activities."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import LiveServer, sign_in

from ichigen.collect import service as collect_service
from ichigen.collect.schemas import SourceCreate
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.crm.activities import service as activities_service
from ichigen.crm.activities.schemas import ActivityCreate
from ichigen.crm.contacts import service as contacts_service
from ichigen.crm.contacts.schemas import ContactCreate

pytestmark = pytest.mark.e2e


def test_a_contacts_web_behaviour_and_its_360_page(page: Page, live_server: LiveServer) -> None:
    tag = uuid.uuid4().hex[:6]
    email = f"sora.{tag}@example.jp"
    settings = Settings(data_dir=live_server.data_dir, secret_key="e2e-secret-key-0123456789abcdef")
    database = Database.from_settings(settings)
    with database.sessionmaker() as session:
        key = collect_service.create_source(
            session, SourceCreate(name=f"Web {tag}"), Actor.system()
        ).write_key
        contact = contacts_service.create_contact(
            session,
            ContactCreate.model_validate(
                {"first_name": "Sora", "last_name": f"Kimura {tag}", "email": email}
            ),
            Actor.system(),
        )
        activities_service.log_activity(
            session,
            ActivityCreate.model_validate(
                {
                    "kind": "call",
                    "subject": f"Renewal call {tag}",
                    "links": [{"type": "contact", "id": contact.id}],
                }
            ),
            Actor.system(),
        )
    database.dispose()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    batch = [
        {"type": "page", "anonymousId": f"v-{tag}", "name": "Pricing"},
        {
            "type": "identify",
            "anonymousId": f"v-{tag}",
            "userId": f"u-{tag}",
            "traits": {"email": email, "firstName": "Sola", "plan": "gold"},
        },
        {"type": "track", "userId": f"u-{tag}", "event": "Order Completed"},
    ]
    sent = httpx.post(f"{live_server.url}/v1/batch", json={"batch": batch}, headers=auth)
    assert sent.status_code == 200, sent.text

    sign_in(page, live_server, f"/contacts/{contact.id}")
    card = page.locator("#web-activity")
    expect(card).to_contain_text("Order Completed")
    expect(card).to_contain_text("Pricing")
    card.get_by_role("link", name="Open 360° profile").click()
    expect(page.locator("h1")).to_have_text(f"Sora Kimura {tag}")
    timeline = page.locator("#profile-timeline")
    expect(timeline).to_contain_text("Order Completed")
    expect(timeline).to_contain_text(f"Renewal call {tag}")
    expect(timeline.locator('[data-kind="event"]')).to_have_count(3)
    expect(timeline.locator('[data-kind="activity"]')).to_have_count(1)
    first_name = page.locator('#profile-traits [data-trait="firstName"]')
    expect(first_name).to_contain_text("Sora")
    expect(first_name).to_contain_text("Tracked: Sola")
    expect(page.locator('#profile-traits [data-trait="plan"]')).to_contain_text("gold")
    expect(page.locator("#profile-identity")).to_contain_text(f"u-{tag}")
    expect(page.locator("#profile-crm")).to_contain_text(f"Sora Kimura {tag}")
    page.screenshot(path=str(live_server.screenshots / "profile-360.png"), full_page=True)

    # The look-up finds the same page by the e-mail address, however it is written.
    page.goto(f"{live_server.url}/profiles")
    page.get_by_label("Person id, email address, or identifier as type:value").fill(email.upper())
    page.get_by_role("button", name="Open profile").click()
    expect(page.locator("h1")).to_have_text(f"Sora Kimura {tag}")
