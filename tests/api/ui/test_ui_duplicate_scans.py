"""The duplicates page says how the last scan went and when the next scheduled one is due, and
refuses a second scan while one runs."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, sign_in

from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.identity import duplicates
from ichigen.identity.matching import MatchSettings
from ichigen.web.app import create_app

SETTINGS = MatchSettings(threads=2)


def _line(page: str, element_id: str) -> str:
    """The text of one element of the page, tags dropped and whitespace folded."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|div)>', page, re.S)
    assert found, f"no #{element_id} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def _contacts(db: Database, by: Actor) -> None:
    with db.sessionmaker() as session:
        for fields in (
            {"last_name": "山田", "first_name": "太郎", "email": "a@x.jp"},
            {"last_name": "鈴木", "first_name": "花子", "email": "b@y.jp"},
            {"last_name": "佐藤", "email": "c@z.jp", "phone": "090-1111-2222"},
            {"last_name": "佐藤", "email": "d@z.jp", "phone": "090-1111-2222"},
        ):
            contacts.create_contact(session, ContactCreate.model_validate(fields), by)


def test_the_page_shows_the_last_scan_and_the_next_one(
    scheduled: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    _contacts(app_db, admin_actor)
    page = scheduled.get("/duplicates")
    assert page.status_code == 200
    assert _line(page.text, "scan-last") == "No scan has run yet."
    assert _line(page.text, "scan-next") == "The next scheduled scan starts within a few minutes."

    scanned = scheduled.post("/duplicates/scan", data={"csrf_token": csrf_token(page.text)})
    assert scanned.status_code == 200, scanned.text
    with app_db.sessionmaker() as session:
        scan = duplicates.list_scans(session, admin_actor).items[0]
    assert scan.status == "finished" and scan.contacts == 4
    last = _line(scanned.text, "scan-last")
    assert last.startswith("Last scan ") and "(started by hand)" in last
    assert f"4 contacts, {scan.candidates} pairs found, {scan.queued} of them new" in last
    assert f"in {scan.seconds:.1f} s." in last
    assert _line(scanned.text, "scan-next").startswith("Next scheduled scan: ")
    assert "(every 24 hours)" in _line(scanned.text, "scan-next")


def test_a_failed_scheduled_scan_shows_why(
    scheduled: TestClient, app_db: Database, admin_actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _contacts(app_db, admin_actor)

    def out_of_memory(records: object, settings: object) -> list[object]:
        raise RuntimeError("DuckDB ran out of memory")

    monkeypatch.setattr(duplicates, "find_duplicates", out_of_memory)
    with app_db.sessionmaker() as session, pytest.raises(RuntimeError):
        duplicates.run_scheduled_scan(session, 24, settings=SETTINGS)
    page = scheduled.get("/duplicates")
    failed = _line(page.text, "scan-last")
    assert failed.startswith("The last scan (")
    assert failed.endswith(", scheduled) failed: RuntimeError: DuckDB ran out of memory")
    # Retried an hour later, not at once.
    assert _line(page.text, "scan-next").startswith("Next scheduled scan: ")
    assert 'id="scan-last-finished"' not in page.text

    # After a scan that finished, a failed one still lets the page say what that one found.
    monkeypatch.undo()
    with app_db.sessionmaker() as session:
        done = duplicates.scan_contacts(session, admin_actor, settings=SETTINGS)
    monkeypatch.setattr(duplicates, "find_duplicates", out_of_memory)
    with app_db.sessionmaker() as session, pytest.raises(RuntimeError):
        duplicates.scan_contacts(session, admin_actor, settings=SETTINGS)
    page = scheduled.get("/duplicates")
    assert _line(page.text, "scan-last").endswith(
        ", started by hand) failed: RuntimeError: DuckDB ran out of memory"
    )
    completed = _line(page.text, "scan-last-finished")
    assert completed.startswith("Last completed scan: ")
    assert completed.endswith(f", 4 contacts, {done.candidates} pairs found.")


def test_a_second_scan_from_the_page_is_refused_while_one_runs(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    _contacts(app_db, admin_actor)
    token = csrf_token(browser.get("/duplicates").text)
    seen: list[tuple[str, int, str]] = []

    def look_at_the_page(step: str, done: int, total: int) -> None:
        if step == "load" and not seen:
            shown = browser.get("/duplicates").text
            seen.append(("get", 200, _line(shown, "scan-running")))
            refused = browser.post("/duplicates/scan", data={"csrf_token": token})
            seen.append(("post", refused.status_code, refused.text))

    with app_db.sessionmaker() as session:
        duplicates.scan_contacts(
            session, Actor.system("cli"), settings=SETTINGS, progress=look_at_the_page
        )
    assert seen[0][2].startswith("A scan is running: started ") and seen[0][2].endswith(" by cli.")
    assert seen[1][1] == 409
    assert "Another scan is running." in html.unescape(seen[1][2])
    with app_db.sessionmaker() as session:
        assert len(duplicates.list_scans(session, admin_actor).items) == 1


def _browser(app_db: Database, admin_user: UserRead, hours: float) -> Iterator[TestClient]:
    settings = app_db.settings.model_copy(update={"duplicates_scan_hours": hours})
    with TestClient(create_app(settings, Database(app_db.engine, settings))) as client:
        sign_in(client, admin_user.email)
        yield client


@pytest.fixture
def scheduled(app_db: Database, admin_user: UserRead) -> Iterator[TestClient]:
    """A signed-in browser on a server that scans every 24 hours (the first look comes minutes
    after start, so no scheduled scan runs during a test)."""
    yield from _browser(app_db, admin_user, 24)


@pytest.fixture
def browser_without_schedule(app_db: Database, admin_user: UserRead) -> Iterator[TestClient]:
    yield from _browser(app_db, admin_user, 0)


def test_the_page_says_when_scheduled_scans_are_off(browser_without_schedule: TestClient) -> None:
    page = browser_without_schedule.get("/duplicates")
    assert page.status_code == 200
    assert _line(page.text, "scan-next") == "Scheduled scans are off."
