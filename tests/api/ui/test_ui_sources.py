"""Source pages: sources and write keys, the live debugger, and failed events to replay."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, form_values, sign_in
from tests.conftest import make_user

from ichigen.collect import service
from ichigen.collect.schemas import SourceCreate, SourceCreated
from ichigen.collect.store import EventFilter
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.web.app import create_app

NOT_ALLOWED = "You are not allowed to do this."
_KEY = re.compile(r'<input id="new-write-key"[^>]* value="(wk_[^"]+)"')


def _error_for(page: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="{re.escape(name)}-error">([^<]*)</p>', page)
    assert found, f"no error shown for {name}"
    return html.unescape(found.group(1))


def _write_key(page: str) -> str:
    found = _KEY.search(page)
    assert found, "the page shows no new write key"
    return found.group(1)


def _switch_user(client: TestClient, email: str) -> None:
    """Sign out (forget the cookies) and sign in as someone else, on the same app."""
    client.cookies.clear()
    sign_in(client, email)


def _source(app_db: Database, actor: Actor, name: str = "Web shop") -> SourceCreated:
    with app_db.sessionmaker() as session:
        return service.create_source(session, SourceCreate(name=name, kind="website"), actor)


def _send(client: TestClient, key: str, *messages: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/batch", json={"batch": list(messages)}, auth=(key, ""))
    body: dict[str, Any] = response.json()
    return body


def _rows(page: str) -> list[tuple[int, str]]:
    """The debugger rows of a page or partial: (seq, status), top first."""
    return [
        (int(seq), status)
        for seq, status in re.findall(r'<tr data-seq="(\d+)" data-status="(\w+)">', page)
    ]


@pytest.fixture
def people(app_db: Database) -> None:
    """Users of the roles these pages treat differently."""
    with app_db.sessionmaker() as session:
        for role in ("analyst", "sales", "viewer"):
            make_user(session, f"{role}@example.com", role)


# ----------------------------------------------------------------------------- access


def test_strangers_are_sent_to_sign_in(anonymous: TestClient) -> None:
    for path in ("/sources", "/sources/1/debugger", "/failed-events", "/failed-events/1"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=%2F")


def test_each_role_sees_what_it_may_and_changes_only_what_it_may(
    browser: TestClient, app_db: Database, admin_actor: Actor, people: None
) -> None:
    source = _source(app_db, admin_actor)
    admin_page = browser.get("/sources")
    assert admin_page.status_code == 200
    assert 'href="/sources"' in browser.get("/contacts").text
    assert 'action="/sources"' in admin_page.text
    assert f'href="/sources/{source.id}/edit"' in admin_page.text
    assert f'href="/sources/{source.id}/rotate"' in admin_page.text

    # An analyst reads sources and the debugger, without the forms that change them.
    _switch_user(browser, "analyst@example.com")
    listing = browser.get("/sources")
    assert listing.status_code == 200 and "Web shop" in listing.text
    assert 'action="/sources"' not in listing.text and "/edit" not in listing.text
    assert browser.get(f"/sources/{source.id}/debugger").status_code == 200
    assert browser.get(f"/sources/{source.id}/edit").status_code == 403
    token = csrf_token(listing.text)
    refused = browser.post("/sources", data={"csrf_token": token, "name": "Sneaky"})
    assert refused.status_code == 403 and NOT_ALLOWED in refused.text
    refused = browser.post(
        f"/sources/{source.id}/rotate", data={"csrf_token": token, "grace_hours": "0"}
    )
    assert refused.status_code == 403
    with app_db.sessionmaker() as session:
        assert [s.name for s in service.list_sources(session)] == ["Web shop"]
        assert len(service.get_source(session, source.id).keys) == 1

    # Sales reads failed events but not sources; a viewer neither.
    _switch_user(browser, "sales@example.com")
    assert 'href="/sources"' not in browser.get("/contacts").text
    assert browser.get("/sources").status_code == 403
    assert browser.get(f"/sources/{source.id}/debugger").status_code == 403
    failed = browser.get("/failed-events")
    assert failed.status_code == 200 and "No failed events." in failed.text
    _switch_user(browser, "viewer@example.com")
    assert browser.get("/failed-events").status_code == 403
    assert browser.get("/sources").status_code == 403


def test_the_users_page_shows_who_may_use_sources_and_events(browser: TestClient) -> None:
    page = browser.get("/settings/users").text
    assert "Event sources" in page and "Events" in page


# ----------------------------------------------------------------------------- sources


def test_a_new_source_shows_its_write_key_once_and_the_key_works(
    browser: TestClient, app_db: Database
) -> None:
    page = browser.get("/sources").text
    assert "There are no sources yet." in page
    values = form_values(page)
    assert values["kind"] == "website"
    values.update(name="Web shop", rate_limit_per_second="50", retention_days="30")
    created = browser.post("/sources", data=values)
    assert created.status_code == 201
    key = _write_key(created.text)
    assert "shown only this once" in created.text
    # The snippets point the SDKs at this server, with the new key.
    assert f'analytics.write_key = "{key}"' in created.text
    assert 'analytics.host = "http://testserver"' in created.text
    assert 'apiHost: "testserver/v1"' in created.text
    row = re.search(r'<tr data-source="Web shop">.*?</tr>', created.text, re.S)
    assert row, "the new source is listed"
    assert "50" in row.group(0) and "30" in row.group(0) and f"{key[:10]}…" in row.group(0)

    # Only a fingerprint is kept: the list never shows the key again.
    again = browser.get("/sources").text
    assert key not in again and f"{key[:10]}…" in again
    with app_db.sessionmaker() as session:
        stored = service.find_source(session, "Web shop")
    assert (stored.kind, stored.rate_limit_per_second, stored.retention_days) == ("website", 50, 30)
    answer = _send(browser, key, {"type": "track", "userId": "u1", "event": "Signed Up"})
    assert answer == {"success": True}


def test_bad_input_is_shown_next_to_its_field_and_nothing_is_created(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    _source(app_db, admin_actor, "Web shop")
    values = form_values(browser.get("/sources").text)
    values.update(name="Web shop", rate_limit_per_second="-5", retention_days="")
    answer = browser.post("/sources", data=values)
    assert answer.status_code == 422
    assert "Please correct the fields marked below." in answer.text
    assert _error_for(answer.text, "rate_limit_per_second") == "Enter 1 or more."
    assert 'value="-5"' in answer.text and 'value="Web shop"' in answer.text

    values.update(rate_limit_per_second="many")
    answer = browser.post("/sources", data=values)
    assert answer.status_code == 422
    assert _error_for(answer.text, "rate_limit_per_second") == "Enter a whole number."

    values.update(rate_limit_per_second="10")
    duplicate = browser.post("/sources", data=values)
    assert duplicate.status_code == 409
    assert _error_for(duplicate.text, "name") == "already in use"
    assert "new-write-key" not in duplicate.text

    values.update(name="  ")
    blank = browser.post("/sources", data=values)
    assert blank.status_code == 422
    assert _error_for(blank.text, "name") == "This field is required."
    with app_db.sessionmaker() as session:
        assert [s.name for s in service.list_sources(session)] == ["Web shop"]


def test_source_forms_need_the_csrf_token(browser: TestClient, app_db: Database) -> None:
    refused = browser.post("/sources", data={"name": "No token", "kind": "server"})
    assert refused.status_code == 403
    assert "security token" in refused.text
    wrong = browser.post("/sources", data={"name": "No token", "csrf_token": "x" * 40})
    assert wrong.status_code == 403
    with app_db.sessionmaker() as session:
        assert service.list_sources(session) == []


def test_admin_renames_disables_and_enables_a_source(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    source = _source(app_db, admin_actor)
    event = {"type": "track", "userId": "u1", "event": "Viewed"}
    assert _send(browser, source.write_key, event)["success"] is True

    form = browser.get(f"/sources/{source.id}/edit").text
    values = form_values(form)
    assert values["name"] == "Web shop" and values["enabled"] == "1"
    values.pop("enabled")  # unticked
    values.update(name="Web shop (EU)", rate_limit_per_second="", retention_days="90")
    saved = browser.post(f"/sources/{source.id}/edit", data=values, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/sources"
    listing = browser.get("/sources").text
    assert "Changes saved." in listing
    row = re.search(r'<tr data-source="Web shop \(EU\)" class="inactive">.*?</tr>', listing, re.S)
    assert row and "Disabled" in row.group(0) and "No limit" in row.group(0)

    # The key stops at once in this process: the cached lookup was dropped.
    refused = browser.post("/v1/batch", json={"batch": [event]}, auth=(source.write_key, ""))
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]

    # Saving the form opened before that change is refused as stale.
    stale = browser.post(f"/sources/{source.id}/edit", data={**values, "name": "Old"})
    assert stale.status_code == 409 and "Someone else changed this record" in stale.text

    values = form_values(browser.get(f"/sources/{source.id}/edit").text)
    assert "enabled" not in values and values["retention_days"] == "90"
    values.update(enabled="1")
    browser.post(f"/sources/{source.id}/edit", data=values)
    assert _send(browser, source.write_key, event)["success"] is True
    with app_db.sessionmaker() as session:
        found = service.get_source(session, source.id)
    assert (found.name, found.enabled, found.retention_days) == ("Web shop (EU)", True, 90)


def test_a_rotated_key_is_shown_once_and_the_old_one_works_for_the_grace_period(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    source = _source(app_db, admin_actor)
    form = browser.get(f"/sources/{source.id}/rotate").text
    values = form_values(form)
    assert values["grace_hours"] == "24"

    refused = browser.post(f"/sources/{source.id}/rotate", data={**values, "grace_hours": "-1"})
    assert refused.status_code == 422
    assert _error_for(refused.text, "grace_hours") == "Enter 0 or more."

    rotated = browser.post(f"/sources/{source.id}/rotate", data={**values, "grace_hours": "2"})
    assert rotated.status_code == 200
    new_key = _write_key(rotated.text)
    assert new_key != source.write_key and "works until" in rotated.text
    event = {"type": "track", "userId": "u1", "event": "Viewed"}
    assert _send(browser, source.write_key, event)["success"] is True
    assert _send(browser, new_key, event)["success"] is True
    listing = browser.get("/sources").text
    assert new_key not in listing
    assert f"{new_key[:10]}…" in listing and f"{source.write_key[:10]}…" in listing

    # With no grace the old keys stop at once.
    values = form_values(browser.get(f"/sources/{source.id}/rotate").text)
    newest = _write_key(
        browser.post(f"/sources/{source.id}/rotate", data={**values, "grace_hours": "0"}).text
    )
    assert browser.post("/v1/batch", json={"batch": [event]}, auth=(new_key, "")).status_code == 401
    assert _send(browser, newest, event)["success"] is True


# ----------------------------------------------------------------------------- debugger


def test_the_debugger_shows_each_message_with_what_became_of_it(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    source = _source(app_db, admin_actor)
    page = browser.get(f"/sources/{source.id}/debugger").text
    assert "No messages yet." in page and _rows(page) == []
    assert f'hx-get="/sources/{source.id}/debugger/rows?after=0" hx-trigger="every 1s"' in page
    # Nothing new: the page is left as it is.
    assert browser.get(f"/sources/{source.id}/debugger/rows?after=0").status_code == 204

    answer = _send(
        browser,
        source.write_key,
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-1"},
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m-1"},
        {"type": "track", "userId": "u1", "messageId": "m-2", "properties": {"名前": "値"}},
    )
    assert answer["success"] is True and len(answer["rejected"]) == 1

    partial = browser.get(
        f"/sources/{source.id}/debugger/rows?after=0", headers={"HX-Request": "true"}
    )
    assert partial.status_code == 200
    rows = _rows(partial.text)
    assert [status for _, status in rows] == ["rejected", "duplicate", "accepted"]
    assert "<html" not in partial.text
    assert 'class="badge badge-delete">Rejected' in partial.text
    assert 'class="badge badge-warn">Duplicate' in partial.text
    assert 'class="badge badge-create">Accepted' in partial.text
    assert "Order Completed" in partial.text and "<code>m-2</code>" in partial.text
    assert "event: is required" in partial.text or "event:" in partial.text
    assert "&#34;名前&#34;: &#34;値&#34;" in partial.text  # the payload, pretty and readable
    # The next poll asks for what came after the newest row, and drops the empty notice.
    newest = rows[0][0]
    assert f"debugger/rows?after={newest}" in partial.text
    assert 'id="debug-empty" hx-swap-oob="delete"' in partial.text
    assert browser.get(f"/sources/{source.id}/debugger/rows?after={newest}").status_code == 204

    _send(browser, source.write_key, {"type": "page", "anonymousId": "a1", "name": "Home"})
    later = browser.get(f"/sources/{source.id}/debugger/rows?after={newest}").text
    assert [status for _, status in _rows(later)] == ["accepted"]
    assert "Home" in later and "debug-empty" not in later

    full = browser.get(f"/sources/{source.id}/debugger").text
    assert [s for _, s in _rows(full)] == ["accepted", "rejected", "duplicate", "accepted"]
    assert "No messages yet." not in full


def test_the_debugger_of_an_unknown_source_is_not_found(browser: TestClient) -> None:
    assert browser.get("/sources/999/debugger").status_code == 404
    assert browser.get("/sources/999/debugger/rows?after=0").status_code == 404
    assert browser.get("/sources/999/edit").status_code == 404
    assert browser.get("/sources/1/debugger/rows?after=-1").status_code in (400, 404)


@pytest.fixture
def not_collecting(app_db: Database, admin_user: Any) -> Iterator[TestClient]:
    """A signed-in browser on a process that does not run the collector."""
    settings = app_db.settings.model_copy(update={"collect_enabled": False})
    with TestClient(create_app(settings, app_db)) as client:
        sign_in(client, "admin@example.com")
        yield client


def test_pages_say_so_when_this_process_does_not_collect(
    not_collecting: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    source = _source(app_db, admin_actor)
    page = not_collecting.get(f"/sources/{source.id}/debugger")
    assert page.status_code == 200
    assert "Event collection is off in this server process." in page.text
    assert "debug-poll" not in page.text  # the debugger does not poll
    failed = not_collecting.get("/failed-events")
    assert failed.status_code == 200
    assert "Event collection is off in this server process." in failed.text
    assert not_collecting.get(f"/sources/{source.id}/debugger/rows").status_code == 503
    assert not_collecting.get("/failed-events/1").status_code == 503


# ----------------------------------------------------------------------------- failed events


def _failed_id(page: str) -> int:
    found = re.search(r'<tr data-failed="(\d+)"', page)
    assert found, "no failed event listed"
    return int(found.group(1))


def test_a_failed_event_is_listed_and_replayed_once_fixed(
    browser: TestClient, app_db: Database, admin_actor: Actor, people: None
) -> None:
    source = _source(app_db, admin_actor)
    other = _source(app_db, admin_actor, "Mobile")
    broken = {"type": "track", "userId": "u7", "messageId": "fix-me", "properties": {"a": 1}}
    _send(browser, source.write_key, broken)
    _send(browser, other.write_key, {"type": "identify", "messageId": "no-id"})

    listing = browser.get(f"/failed-events?source_id={source.id}")
    assert listing.status_code == 200
    assert "Web shop" in listing.text and "event" in listing.text
    assert "&#34;fix-me&#34;" in listing.text and "Not replayed" in listing.text
    assert "no-id" not in listing.text
    everything = browser.get("/failed-events").text
    assert "no-id" in everything and "fix-me" in everything
    assert 'href="/sources" aria-current="page"' in everything  # failed events sit in Sources
    failed_id = _failed_id(listing.text)

    detail = browser.get(f"/failed-events/{failed_id}")
    assert detail.status_code == 200
    values = form_values(detail.text)
    assert '"messageId": "fix-me"' in values["message"]

    # As stored it is still invalid; nothing is stored and the problems are shown.
    again = browser.post(f"/failed-events/{failed_id}/replay", data={**values, "mode": "stored"})
    assert again.status_code == 422
    assert "The message is still not valid; nothing was stored." in again.text
    not_json = browser.post(
        f"/failed-events/{failed_id}/replay",
        data={**values, "mode": "edited", "message": "{oops"},
    )
    assert not_json.status_code == 422
    assert _error_for(not_json.text, "message").startswith("This is not valid JSON")
    assert "{oops" in not_json.text
    a_list = browser.post(
        f"/failed-events/{failed_id}/replay", data={**values, "mode": "edited", "message": "[]"}
    )
    assert a_list.status_code == 422 and "JSON object" in a_list.text

    # Sales may read failed events but not replay them.
    _switch_user(browser, "sales@example.com")
    read_only = browser.get(f"/failed-events/{failed_id}")
    assert read_only.status_code == 200 and "/replay" not in read_only.text
    # Who may not see sources sees their numbers, not their names.
    assert f"#{source.id}" in read_only.text and "Web shop" not in read_only.text
    token = csrf_token(browser.get("/failed-events").text)
    refused = browser.post(
        f"/failed-events/{failed_id}/replay", data={"csrf_token": token, "mode": "stored"}
    )
    assert refused.status_code == 403
    _switch_user(browser, "admin@example.com")
    values = form_values(browser.get(f"/failed-events/{failed_id}").text)

    fixed = values["message"].replace('"type": "track",', '"type": "track", "event": "Fixed",')
    replayed = browser.post(
        f"/failed-events/{failed_id}/replay",
        data={**values, "mode": "edited", "message": fixed},
        follow_redirects=False,
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"] == f"/failed-events/{failed_id}"
    shown = browser.get(f"/failed-events/{failed_id}").text
    assert "The message was replayed and stored." in shown
    assert "as message fix-me" in shown and "/replay" not in shown
    state = browser.app.state.collect  # type: ignore[attr-defined]
    stored = state.collector.store.find(EventFilter(source_id=source.id, event="Fixed"), 10)
    assert [e["message_id"] for e in stored.events] == ["fix-me"]

    # A second replay of the same failed event is refused.
    twice = browser.post(f"/failed-events/{failed_id}/replay", data={**values, "mode": "stored"})
    assert twice.status_code == 409
    replayed_only = browser.get("/failed-events?status=replayed").text
    assert _failed_id(replayed_only) == failed_id and "no-id" not in replayed_only


def test_failed_event_pages_reject_what_they_cannot_read(browser: TestClient) -> None:
    assert browser.get("/failed-events/12345").status_code == 404
    assert browser.get("/failed-events?status=lost").status_code == 400
    assert browser.get("/failed-events?source_id=0").status_code == 400


def test_the_source_pages_speak_japanese(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    source = _source(app_db, admin_actor)
    token = csrf_token(browser.get("/sources").text)
    browser.post("/locale", data={"csrf_token": token, "locale": "ja", "next": "/sources"})
    page = browser.get("/sources").text
    assert "ソース" in page and "書き込みキー" in page and "新しいソース" in page
    debugger = browser.get(f"/sources/{source.id}/debugger").text
    assert "ライブデバッガー" in debugger
