"""Deal and activity CSV import (multipart), preview and export over HTTP."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.api.conftest import Api, ApiFactory, assert_problem
from tests.conftest import SETUP
from tests.integration.transfers.conftest import pipelines

from ichigen.core.db import Database
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyCreate
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.crm.deals import service as deals

DATA = Path(__file__).parents[2] / "data" / "imports"


def upload(name: str, data: bytes | None = None) -> dict[str, tuple[str, bytes, str]]:
    body = data if data is not None else (DATA / name).read_bytes()
    return {"file": (name, body, "text/csv")}


def set_up(database: Database) -> None:
    """Pipelines, companies and contacts the sample files name (made by the setup actor)."""
    with database.sessionmaker() as session:
        pipelines(session, SETUP)
        for name, domain in (("Sakura Seiko", "sakura-seiko.co.jp"), ("Acme Corp", "acme.example")):
            companies.create_company(session, CompanyCreate(name=name, domain=domain), SETUP)
        for name in ("Fuji Logistics", "髙橋工業株式会社", "東海物流"):
            companies.create_company(session, CompanyCreate(name=name), SETUP)
        for first, last, email in (
            ("太郎", "山田", "taro.yamada@sakura-seiko.co.jp"),
            ("Jane", "Doe", "jane@acme.example"),
            ("Bob", "Smith", "bob@acme.example"),
        ):
            contacts.create_contact(
                session, ContactCreate(first_name=first, last_name=last, email=email), SETUP
            )


def test_deals_import_reports_rows_and_writes_the_good_ones(api_on: Api) -> None:
    api_on.caller("sales", email="rep@example.com")
    set_up(api_on.db)
    response = api_on.post(
        "/api/v1/deals/import", as_=api_on.admin, files=upload("hubspot_deals.csv")
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["entity"], report["created"], report["failed"]) == ("deals", 3, 5)
    assert {(e["row"], e["column"]) for e in report["errors"]} == {
        (5, "Amount"),
        (6, "Deal Stage"),
        (7, "Deal Stage"),
        (8, "Deal Stage"),
        (9, "Deal owner"),
    }
    listed = api_on.get(
        "/api/v1/deals", as_=api_on.admin, params={"filter": "status:eq:won"}
    ).json()
    assert [d["external_id"] for d in listed["items"]] == ["10002"]
    assert listed["items"][0]["closed_at"].startswith("2026-06-30T00:00:00")

    again = api_on.post(
        "/api/v1/deals/import", as_=api_on.admin, files=upload("hubspot_deals.csv")
    ).json()
    assert (again["unchanged"], again["created"]) == (3, 0)


def test_dry_run_preview_and_options_over_http(api: Api) -> None:
    set_up(api.db)
    api.caller("sales", email="rep@example.com")
    preview = api.post(
        "/api/v1/deals/import/preview",
        as_=api.admin,
        files=upload("salesforce_opportunities_shift_jis.csv"),
    )
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["encoding"], body["row_count"]) == ("cp932", 6)
    assert body["mapping"]["商談名"] == "name" and body["mapping"]["フェーズ"] == "stage"
    assert {"key": "expected_close_date", "label": "Expected close date"} in body["fields"]

    response = api.post(
        "/api/v1/deals/import",
        as_=api.admin,
        files=upload("salesforce_opportunities_shift_jis.csv"),
        data={
            "dry_run": "true",
            "mode": "create",
            "encoding": "shift_jis",
            "time_zone": "Asia/Tokyo",
            "mapping": json.dumps({"リードソース": None}),
        },
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] and (report["created"], report["failed"]) == (3, 3)
    assert report["encoding"] == "cp932" and report["mapping"]["リードソース"] is None
    assert {e["column"] for e in report["errors"]} == {"金額", "完了予定日", "取引先名"}
    assert api.get("/api/v1/deals", as_=api.admin).json()["items"] == []


def test_export_streams_csv_that_imports_back_unchanged(api: Api) -> None:
    set_up(api.db)
    api.caller("sales", email="rep@example.com")
    api.post("/api/v1/deals/import", as_=api.admin, files=upload("hubspot_deals.csv"))
    response = api.get("/api/v1/deals/export", as_=api.admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="deals.csv"' in response.headers["content-disposition"]
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {r["external_id"]: r["stage"] for r in rows} == {
        "10001": "Contract Sent",
        "10002": "Closed Won",
        "10003": "Closed Lost",
    }
    again = api.post(
        "/api/v1/deals/import", as_=api.admin, files=upload("deals.csv", response.content)
    ).json()
    assert (again["unchanged"], again["failed"]) == (3, 0)
    only = api.get(
        "/api/v1/deals/export",
        as_=api.admin,
        params={"filter": "status:eq:lost", "bom": "false"},
    )
    assert only.content.startswith(b"id,") and only.text.count("\r\n") == 2
    # The paths of earlier releases still answer the same.
    earlier = api.get("/api/v1/deals/export.csv", as_=api.admin, params={"bom": "false"})
    assert earlier.status_code == 200 and earlier.content.startswith(b"id,")
    dry = api.post(
        "/api/v1/deals/imports",
        as_=api.admin,
        files=upload("deals.csv", response.content),
        data={"dry_run": "true"},
    ).json()
    assert dry["unchanged"] == 3


def test_activities_import_and_export_over_http(api_on: Api) -> None:
    api_on.caller("sales", email="rep@example.com")
    set_up(api_on.db)
    api_on.post("/api/v1/deals/import", as_=api_on.admin, files=upload("hubspot_deals.csv"))
    response = api_on.post(
        "/api/v1/activities/import",
        as_=api_on.admin,
        files=upload("hubspot_calls.csv"),
        data={"time_zone": "Asia/Tokyo"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["entity"], report["created"], report["failed"]) == ("activities", 2, 4)
    preview = api_on.post(
        "/api/v1/activities/import/preview", as_=api_on.admin, files=upload("salesforce_tasks.csv")
    ).json()
    assert preview["mapping"]["Related To"] == "related_to"
    with_tasks = api_on.post(
        "/api/v1/activities/import", as_=api_on.admin, files=upload("salesforce_tasks.csv")
    ).json()
    assert (with_tasks["created"], with_tasks["failed"]) == (4, 3)

    calls = api_on.get(
        "/api/v1/activities/export",
        as_=api_on.admin,
        params={"kind": "call", "from": "2026-05-01T00:00:00Z", "to": "2026-06-01T00:00:00Z"},
    )
    assert calls.status_code == 200, calls.text
    assert 'filename="activities.csv"' in calls.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(calls.content.decode("utf-8-sig"))))
    assert [r["external_id"] for r in rows] == ["5002", "5001"]  # newest first
    deal_id = api_on.get(
        "/api/v1/deals", as_=api_on.admin, params={"filter": "external_id:eq:10002"}
    ).json()["items"][0]["id"]
    linked = api_on.get(
        "/api/v1/activities/export", as_=api_on.admin, params={"record": f"deal:{deal_id}"}
    )
    assert linked.text.count("\r\n") == 3  # the header and two activities
    again = api_on.post(
        "/api/v1/activities/import",
        as_=api_on.admin,
        files=upload("activities.csv", calls.content),
        data={"match_on": "id"},
    ).json()
    assert (again["unchanged"], again["failed"]) == (2, 0)


def test_bad_input_is_a_problem_and_changes_nothing(api_factory: ApiFactory) -> None:
    api = api_factory(max_body_bytes=4096)
    admin = api.admin
    set_up(api.db)
    good = b"Deal Name,Pipeline\nX,Sales Pipeline\n"
    cases = [
        (upload("x.csv", b'Deal Name,Amount\n"Unclosed,100\nOther,5\n'), {}, 400, ("file",)),
        (upload("x.xlsx", b"PK\x03\x04\x14\x00"), {}, 400, ("file",)),
        (upload("x.csv", b"Deal Name\nA\x00B\n"), {}, 400, ("file",)),
        (upload("x.csv", b""), {}, 400, ("file",)),
        (upload("x.csv", b"10001,Acme,100\n"), {}, 400, ("file",)),
        (upload("x.csv", good), {"time_zone": "Mars/Olympus"}, 400, ("time_zone",)),
        (upload("x.csv", good), {"encoding": "klingon"}, 400, ("encoding",)),
        (upload("x.csv", good), {"mapping": "{not json"}, 400, ("mapping",)),
        (
            upload("x.csv", good),
            {"mapping": '{"Deal Name": "title"}'},
            400,
            ("mapping", "Deal Name"),
        ),
        (upload("x.csv", good), {"mode": "update"}, 400, ("mapping",)),
        (upload("x.csv", good), {"mode": "merge"}, 422, ()),
        (upload("x.csv", good), {"match_on": "email"}, 422, ()),
    ]
    for files, data, status, loc in cases:
        response = api.post("/api/v1/deals/import", as_=admin, files=files, data=data)
        assert_problem(response, status, *((loc,) if loc else ()))
    unclosed = api.post("/api/v1/deals/import", as_=admin, files=cases[0][0]).json()
    assert "quoted cell that begins on line 2" in unclosed["detail"]
    big = upload("big.csv", b"Deal Name\n" + b"A deal with a long name\n" * 400)
    assert_problem(api.post("/api/v1/deals/import", as_=admin, files=big), 413)
    assert_problem(api.post("/api/v1/deals/import", files=upload("x.csv", good)), 401)
    viewer = api.caller("viewer")
    assert_problem(api.post("/api/v1/deals/import", as_=viewer, files=upload("x.csv", good)), 403)
    support = api.caller("support")  # reads deals, writes activities
    assert_problem(api.post("/api/v1/deals/import", as_=support, files=upload("x.csv", good)), 403)
    assert_problem(
        api.get("/api/v1/deals/export", as_=admin, params={"filter": "nope:eq:1"}),
        400,
        ("query", "filter", 0),
    )
    assert_problem(
        api.post(
            "/api/v1/activities/import",
            as_=admin,
            files=upload("x.csv", b"Subject\nHello\n"),
            data={"mode": "create"},
        ),
        400,
        ("mapping",),
    )
    assert_problem(
        api.post(
            "/api/v1/activities/import",
            as_=admin,
            files=upload("x.csv", b'Subject,Company\n"Hello,Acme Corp\n'),
        ),
        400,
        ("file",),
    )
    assert_problem(
        api.get("/api/v1/activities/export", as_=admin, params={"record": "deal:x"}), 422
    )
    assert_problem(api.get("/api/v1/activities/export", as_=admin, params={"kind": "fax"}), 422)
    assert api.get("/api/v1/deals", as_=admin).json()["items"] == []
    assert api.get("/api/v1/activities", as_=admin).json()["items"] == []
    with api.db.sessionmaker() as session:
        assert deals.list_deals(session, SETUP).items == []
