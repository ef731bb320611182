"""The deal and activity import pages (upload, mapping, dry run, import, report) and their
CSV exports, through the browser's forms."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from tests.api.transfers.test_transfers_api import DATA, set_up
from tests.api.ui.conftest import csrf_token, form_values, sign_in
from tests.conftest import make_user

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.activities import service as activities
from ichigen.crm.deals import service as deals
from ichigen.web.app import create_app


def _counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-count="(\w+)">(\d+)', html)}


def _run(browser: TestClient, base: str, name: str, data: bytes, action: str) -> str:
    """Upload a file, keep the proposed mapping, and run the dry run or the import."""
    token = csrf_token(browser.get(f"{base}/import").text)
    page = browser.post(
        f"{base}/import", data={"csrf_token": token}, files={"file": (name, data, "text/csv")}
    )
    assert page.status_code == 200, page.text
    found = re.search(rf'action="({base}/import/[\w-]+)"', page.text)
    assert found
    form = {**form_values(page.text), "action": action}
    done = browser.post(found.group(1), data=form)
    assert done.status_code == 200, done.text
    return done.text


def test_deal_import_maps_dry_runs_and_imports_in_the_visitors_time_zone(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "rep@example.com", "sales")
    set_up(app_db)
    browser.cookies.set("ichigen_tz", "Asia/Tokyo")
    data = (DATA / "hubspot_deals.csv").read_bytes()
    token = csrf_token(browser.get("/deals/import").text)
    mapping = browser.post(
        "/deals/import", data={"csrf_token": token}, files={"file": ("d.csv", data, "text/csv")}
    )
    assert mapping.status_code == 200
    assert '<option value="stage" selected>Stage (name)</option>' in mapping.text
    assert "Create new deals and update existing ones" in mapping.text

    dry = _run(browser, "/deals", "d.csv", data, "dry_run")
    assert "This was a dry run" in dry
    assert _counts(dry) == {"created": 3, "updated": 0, "unchanged": 0, "failed": 5}
    assert "Contract Sent" in dry and "Sakura Seiko" in dry  # stages and companies by name
    assert "amount is required to enter the stage" in dry
    with app_db.sessionmaker() as session:
        assert deals.list_deals(session, admin_actor).items == []

    done = _run(browser, "/deals", "d.csv", data, "import")
    assert "The import is done." in done and _counts(done)["created"] == 3
    with app_db.sessionmaker() as session:
        found = {d.external_id: d for d in deals.list_deals(session, admin_actor).items}
    assert found["10001"].created_at == datetime(2026, 4, 1, 0, 30, tzinfo=UTC)  # 09:30 Tokyo

    mine = browser.get("/deals/export.csv", params={"owner": "me"})
    assert mine.content.decode("utf-8-sig").count("\r\n") == 1  # the rep owns them all
    exported = browser.get("/deals/export.csv", params={"status": "won"})
    assert exported.status_code == 200
    assert exported.headers["content-disposition"].startswith('attachment; filename="deals-')
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [r["external_id"] for r in rows] == ["10002"]
    bad = browser.get("/deals/export.csv", params={"filter": "nope:eq:1"})
    assert bad.status_code == 400


def test_activity_import_and_export_pages(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "rep@example.com", "sales")
    set_up(app_db)
    browser.cookies.set("ichigen_tz", "Asia/Tokyo")
    _run(browser, "/deals", "d.csv", (DATA / "hubspot_deals.csv").read_bytes(), "import")
    calls = (DATA / "hubspot_calls.csv").read_bytes()
    dry = _run(browser, "/activities", "calls.csv", calls, "dry_run")
    assert _counts(dry) == {"created": 2, "updated": 0, "unchanged": 0, "failed": 4}
    assert "the row links to no contact, company or deal" in dry
    done = _run(browser, "/activities", "calls.csv", calls, "import")
    assert _counts(done)["created"] == 2
    with app_db.sessionmaker() as session:
        page = activities.list_activities(session, admin_actor)
    first = next(a for a in page.items if a.external_id == "5001")
    assert first.occurred_at == datetime(2026, 5, 12, 5, 30, tzinfo=UTC)
    # The report links each activity: it leads to the page of a record it is on.
    deal_id = next(link.id for link in first.links if link.type == "deal")
    shown = browser.get(f"/activities/{first.id}", follow_redirects=False)
    assert (shown.status_code, shown.headers["location"]) == (303, f"/deals/{deal_id}")
    home = browser.get("/activities", follow_redirects=False)
    assert home.headers["location"] == "/activities/import"
    assert browser.get("/activities/999999").status_code == 404

    # A date alone is a whole day in the visitor's time zone.
    day = browser.get("/activities/export.csv", params={"from": "2026-05-12", "to": "2026-05-12"})
    assert day.status_code == 200
    rows = list(csv.DictReader(io.StringIO(day.content.decode("utf-8-sig"))))
    assert [r["external_id"] for r in rows] == ["5001"]
    kinds = browser.get("/activities/export.csv", params={"kind": "note"})
    assert kinds.content.decode("utf-8-sig").count("\r\n") == 1  # the header alone
    assert browser.get("/activities/export.csv", params={"record": "deal:x"}).status_code == 400
    assert browser.get("/activities/export.csv", params={"from": "soon"}).status_code == 400


def test_readers_cannot_import(app_db: Database) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "viewer@example.com", "viewer")
    with TestClient(create_app(app_db.settings, app_db)) as viewer:
        sign_in(viewer, "viewer@example.com")
        assert viewer.get("/deals/import").status_code == 403
        assert viewer.get("/activities/import").status_code == 403
        assert viewer.get("/deals/export.csv").status_code == 200
