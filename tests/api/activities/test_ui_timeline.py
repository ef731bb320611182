"""The timeline partial through HTTP: entries with their details and records, filter chips,
"load more", and logging from its form (the new entry comes back for the top of the list)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token
from tests.integration.activities.factories import deal

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.activities import service
from ichigen.crm.activities.schemas import ActivityCreate
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyCreate
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate

HTMX = {"HX-Request": "true"}


@pytest.fixture
def records(app_db: Database, admin_actor: Actor) -> dict[str, int]:
    """A company with a contact and a deal, and activities on each of them."""
    with app_db.sessionmaker() as session:
        firm = companies.create_company(session, CompanyCreate(name="サクラ精工"), admin_actor)
        person = contacts.create_contact(
            session,
            ContactCreate(last_name="山田", first_name="太郎", company_id=firm.id),
            admin_actor,
        )
        sale = deal(session, "Line 3 retrofit", firm.id, [person.id])
        start = datetime(2026, 5, 1, tzinfo=UTC)
        for index in range(21):
            service.log_activity(
                session,
                ActivityCreate.model_validate(
                    {
                        "kind": "note",
                        "subject": f"Note {index:02}",
                        "occurred_at": start + timedelta(hours=index),
                        "links": [{"type": "company", "id": firm.id}],
                    }
                ),
                admin_actor,
            )
        service.log_activity(
            session,
            ActivityCreate.model_validate(
                {
                    "kind": "call",
                    "subject": "Pricing call",
                    "body": "Agreed to send a revised quote.",
                    "occurred_at": start + timedelta(days=3),
                    "direction": "outbound",
                    "duration_seconds": 540,
                    "outcome": "connected",
                    "links": [
                        {"type": "contact", "id": person.id},
                        {"type": "deal", "id": sale},
                    ],
                }
            ),
            admin_actor,
        )
    return {"company": firm.id, "contact": person.id, "deal": sale}


def _subjects(html: str) -> list[str]:
    return re.findall(r'<strong class="activity-subject">([^<]+)</strong>', html)


def test_the_company_timeline_rolls_up_pages_and_filters(
    browser: TestClient, records: dict[str, int]
) -> None:
    page = browser.get(f"/timeline/company/{records['company']}", headers=HTMX)
    assert page.status_code == 200, page.text
    html = page.text
    assert _subjects(html)[:3] == ["Pricing call", "Note 20", "Note 19"]
    assert len(_subjects(html)) == 20
    assert "Outbound · 9 min · Connected" in html
    assert f'<a href="/contacts/{records["contact"]}">山田 太郎</a>' in html
    assert f'<a href="/deals/{records["deal"]}">Line 3 retrofit</a>' in html
    assert "Agreed to send a revised quote." in html
    more = re.search(r'hx-get="(/timeline/company/\d+/items\?[^"]+)"', html)
    assert more, "a load-more button"
    rest = browser.get(more.group(1).replace("&amp;", "&"), headers=HTMX).text
    assert _subjects(rest) == ["Note 01", "Note 00"]
    assert "Load more" not in rest

    calls = browser.get(f"/timeline/company/{records['company']}?kind=call", headers=HTMX).text
    assert _subjects(calls) == ["Pricing call"]
    assert re.search(r'aria-pressed="true"[^>]*>\s*<span aria-hidden="true">☎</span> Calls', calls)

    contact = browser.get(f"/timeline/contact/{records['contact']}", headers=HTMX).text
    assert _subjects(contact) == ["Pricing call"]
    assert browser.get("/timeline/contact/999", headers=HTMX).status_code == 404
    assert browser.get("/timeline/planet/1", headers=HTMX).status_code == 404

    # The record pages embed it; and it speaks Japanese.
    page = browser.get(f"/companies/{records['company']}").text
    assert f'hx-get="/timeline/company/{records["company"]}" hx-trigger="load"' in page
    page = browser.get(f"/contacts/{records['contact']}").text
    assert f'hx-get="/timeline/contact/{records["contact"]}" hx-trigger="load"' in page
    browser.cookies.set("ichigen_locale", "ja")
    html = browser.get(f"/timeline/contact/{records['contact']}", headers=HTMX).text
    assert "活動" in html and "通話" in html


def test_logging_a_call_returns_the_entry_and_a_fresh_form(
    browser: TestClient, records: dict[str, int], app_db: Database, admin_actor: Actor
) -> None:
    base = f"/timeline/contact/{records['contact']}"
    page = browser.get(base, headers=HTMX).text
    token = csrf_token(page)
    form = browser.get(f"{base}/form?kind=call", headers=HTMX).text
    assert 'name="outcome"' in form and 'name="attendees"' not in form
    logged = browser.post(
        base,
        headers=HTMX,
        data={
            "csrf_token": token,
            "kind": "call",
            "subject": "Booked the demo",
            "occurred_at": "2026-06-01T10:00",
            "direction": "inbound",
            "duration_minutes": "4.5",
            "outcome": "connected",
            "body": "",
        },
    )
    assert logged.status_code == 200, logged.text
    assert logged.text.lstrip().startswith('<li class="timeline-entry activity activity-call"')
    assert "Booked the demo" in logged.text and 'hx-swap-oob="true"' in logged.text
    with app_db.sessionmaker() as session:
        timeline = service.timeline(session, "contact", records["contact"], admin_actor)
    newest = timeline.items[0]
    assert (newest.subject, newest.duration_seconds, newest.direction) == (
        "Booked the demo",
        270,
        "inbound",
    )
    # The browser's zone (UTC until ichigen.js reports it) reads the typed time.
    assert newest.occurred_at == datetime(2026, 6, 1, 10, tzinfo=UTC)


def test_a_form_with_problems_comes_back_in_place_and_logs_nothing(
    browser: TestClient, records: dict[str, int], app_db: Database, admin_actor: Actor
) -> None:
    base = f"/timeline/company/{records['company']}"
    token = csrf_token(browser.get(base, headers=HTMX).text)
    answer = browser.post(
        base,
        headers=HTMX,
        data={
            "csrf_token": token,
            "kind": "meeting",
            "subject": "Kick-off",
            "occurred_at": "2026-06-01T10:00",
            "ends_at": "2026-06-01T09:00",
            "attendees": "ok@example.jp, not-an-address",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["HX-Retarget"] == f"#timeline-company-{records['company']}-form"
    assert "the end must be after the start" in answer.text
    assert 'aria-invalid="true" aria-describedby="timeline-company-' in answer.text
    with app_db.sessionmaker() as session:
        assert len(service.list_activities(session, admin_actor, kinds=["meeting"]).items) == 0
    # Without htmx (no script), the form posts as a page: problems are a 422.
    plain = browser.post(base, data={"csrf_token": token, "kind": "call", "duration_minutes": "x"})
    assert plain.status_code == 422 and "Enter a number of minutes." in plain.text
    done = browser.post(base, data={"csrf_token": token, "kind": "note"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == base.replace(
        "/timeline/company", "/companies"
    )


def test_an_entry_is_edited_in_place_and_deleted(
    browser: TestClient, records: dict[str, int], app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        (call,) = service.list_activities(session, admin_actor, kinds=["call"]).items
    timeline = browser.get(f"/timeline/deal/{records['deal']}", headers=HTMX).text
    assert f'hx-get="/activities/{call.id}/edit"' in timeline
    token = csrf_token(timeline)

    form = browser.get(f"/activities/{call.id}/edit", headers=HTMX).text
    assert form.lstrip().startswith(
        f'<li class="timeline-entry activity activity-editing" id="activity-{call.id}"'
    )
    assert 'value="Pricing call"' in form and 'value="9"' in form
    assert 'name="version" value="1"' in form and "Kind of activity" not in form
    fields = {
        "csrf_token": token,
        "version": "1",
        "kind": "call",
        "subject": "Pricing call (rescheduled)",
        "occurred_at": "2026-05-04T09:30",
        "direction": "outbound",
        "duration_minutes": "",
        "outcome": "left_voicemail",
        "body": "Left a message.",
    }
    # A bad value comes back next to its field, and nothing changes.
    bad = browser.post(
        f"/activities/{call.id}/edit", headers=HTMX, data={**fields, "duration_minutes": "x"}
    )
    assert bad.status_code == 200 and "Enter a number of minutes." in bad.text
    saved = browser.post(f"/activities/{call.id}/edit", headers=HTMX, data=fields)
    assert saved.status_code == 200, saved.text
    assert saved.text.lstrip().startswith(
        f'<li class="timeline-entry activity activity-call" id="activity-{call.id}"'
    )
    assert "Pricing call (rescheduled)" in saved.text and "Left voicemail" in saved.text
    with app_db.sessionmaker() as session:
        after = service.get_activity(session, call.id, admin_actor)
    assert (after.subject, after.outcome, after.duration_seconds, after.version) == (
        "Pricing call (rescheduled)",
        "left_voicemail",
        None,
        2,
    )
    assert after.occurred_at == datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    assert {(link.type, link.id) for link in after.links} == {
        ("contact", records["contact"]),
        ("deal", records["deal"]),
    }
    # The form of version 1 is stale now: it does not overwrite the saved change.
    stale = browser.post(f"/activities/{call.id}/edit", headers=HTMX, data=fields)
    assert "Someone else changed this activity" in stale.text

    kept = browser.post(
        f"/activities/{call.id}/delete", headers=HTMX, data={"csrf_token": token, "version": "1"}
    )
    assert kept.status_code == 412
    gone = browser.post(
        f"/activities/{call.id}/delete", headers=HTMX, data={"csrf_token": token, "version": "2"}
    )
    assert gone.status_code == 200 and gone.text == ""
    assert "Pricing call" not in browser.get(f"/timeline/contact/{records['contact']}").text
    assert browser.get(f"/activities/{call.id}/edit", headers=HTMX).status_code == 404
