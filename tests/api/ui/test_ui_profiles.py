"""Profile pages: the look-up, the 360° page and the web-activity card on a contact's page."""

from __future__ import annotations

import base64
import html

from fastapi.testclient import TestClient

from ichigen.collect import service as collect
from ichigen.collect.schemas import SourceCreate
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate


def _send(client: TestClient, key: str, path: str, body: dict[str, object]) -> None:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    response = client.post(f"/v1/{path}", json=body, headers={"Authorization": auth})
    assert response.status_code == 200, response.text


def test_the_360_page_shows_identity_traits_crm_and_one_timeline(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        key = collect.create_source(session, SourceCreate(name="Web"), admin_actor).write_key
        contact = contacts.create_contact(
            session,
            ContactCreate.model_validate(
                {"first_name": "花子", "last_name": "山田", "email": "hanako@example.jp"}
            ),
            admin_actor,
        )
    _send(browser, key, "page", {"anonymousId": "v-1", "name": "Pricing"})
    _send(
        browser,
        key,
        "identify",
        {"anonymousId": "v-1", "userId": "h-1", "traits": {"email": "hanako@example.jp"}},
    )
    _send(
        browser,
        key,
        "identify",
        {"userId": "h-1", "traits": {"firstName": "Hanako", "plan": "gold"}},
    )
    _send(browser, key, "track", {"userId": "h-1", "event": "Order Completed"})

    card = browser.get(f"/profiles/_web-activity/contact/{contact.id}")
    assert card.status_code == 200
    assert "Order Completed" in card.text and "Pricing" in card.text
    found = browser.get("/profiles", params={"ref": "HANAKO@example.jp"}, follow_redirects=False)
    assert found.status_code == 303
    page = browser.get(found.headers["location"])
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "<h1>山田 花子</h1>" in text
    # The CRM's first name wins and the tracked one is shown under it; other traits are
    # tracked.
    assert 'data-trait="firstName"' in text and "Tracked: Hanako" in text
    assert 'data-trait="plan"' in text and "gold" in text
    assert text.count('data-kind="event"') == 4
    assert f'href="/contacts/{contact.id}"' in text
    assert "h-1" in text and "v-1" in text


def test_the_look_up_says_what_is_wrong(browser: TestClient) -> None:
    unknown = browser.get("/profiles", params={"ref": "email:nobody@example.jp"})
    assert unknown.status_code == 422
    assert "No profile holds email:nobody@example.jp." in html.unescape(unknown.text)
    malformed = browser.get("/profiles", params={"ref": "phone:not a number"})
    assert malformed.status_code == 422
    assert "is not a phone number" in html.unescape(malformed.text)
    assert browser.get("/profiles/123456").status_code == 404
    assert browser.get("/profiles").status_code == 200
