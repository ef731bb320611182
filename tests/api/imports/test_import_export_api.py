"""CSV import (multipart), import preview and CSV export over HTTP, for contacts and companies."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.api.conftest import Api, ApiFactory, assert_problem

DATA = Path(__file__).parents[2] / "data" / "imports"


def upload(name: str, data: bytes | None = None) -> dict[str, tuple[str, bytes, str]]:
    body = data if data is not None else (DATA / name).read_bytes()
    return {"file": (name, body, "text/csv")}


def test_contacts_import_reports_rows_and_writes_the_good_ones(api_on: Api) -> None:
    api_on.caller("sales", email="rep@example.com")
    response = api_on.post(
        "/api/v1/contacts/import",
        as_=api_on.admin,
        files=upload("hubspot_contacts.csv"),
        data={"mapping": json.dumps({"Net Promoter Score": None})},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["failed"], report["dry_run"]) == (2, 2, False)
    assert {(e["row"], e["column"]) for e in report["errors"]} == {
        (4, "Email"),
        (4, "Country/Region"),
        (5, "Contact owner"),
    }
    listed = api_on.get("/api/v1/contacts", as_=api_on.admin, params={"q": "yamada"}).json()
    assert [c["external_id"] for c in listed["items"]] == ["101"]


def test_dry_run_and_options_over_http(api: Api) -> None:
    response = api.post(
        "/api/v1/contacts/import",
        as_=api.admin,
        files=upload("salesforce_contacts.csv"),
        data={
            "dry_run": "true",
            "match_on": "external_id",
            "mode": "create",
            "encoding": "utf-8",
            "mapping": json.dumps({"Contact Owner": None, "Email Opt Out": None}),
        },
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] and report["created"] == 2 and report["encoding"] == "utf-8-sig"
    assert [p["action"] for p in report["preview"]] == ["create", "create", "error"]
    assert api.get("/api/v1/contacts", as_=api.admin).json()["items"] == []


def test_preview_shows_encoding_delimiter_mapping_and_first_rows(api: Api) -> None:
    api.post(
        "/api/v1/custom-fields",
        as_=api.admin,
        json={
            "entity": "contacts",
            "key": "nps",
            "label": "Net Promoter Score",
            "field_type": "number",
        },
    )
    response = api.post(
        "/api/v1/contacts/import/preview",
        as_=api.admin,
        files=upload("contacts_shift_jis.csv"),
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert (preview["encoding"], preview["delimiter"], preview["row_count"]) == ("cp932", ",", 2)
    assert preview["headers"][:3] == ["姓", "名", "セイ"]
    assert preview["mapping"]["メールアドレス"] == "email"
    assert preview["rows"][0][0] == "髙橋" and len(preview["rows"]) == 2
    assert {"key": "cf.nps", "label": "Net Promoter Score"} in preview["fields"]
    remapped = api.post(
        "/api/v1/contacts/import/preview",
        as_=api.admin,
        files=upload("contacts_shift_jis.csv"),
        data={"mapping": json.dumps({"役職": None, "国": "cf.nps"})},
    ).json()
    assert remapped["mapping"]["役職"] is None and remapped["mapping"]["国"] == "cf.nps"
    assert api.get("/api/v1/contacts", as_=api.admin).json()["items"] == []


def test_export_streams_csv_that_imports_back_unchanged(api: Api) -> None:
    lines = ["email,last_name,first_name,lifecycle_stage"]
    lines += [f"user{i:04d}@example.com,Sato,Kenji {i},lead" for i in range(2100)]
    lines += ["boss@example.com,Boss,,customer"]
    imported = api.post(
        "/api/v1/contacts/import",
        as_=api.admin,
        files=upload("many.csv", "\n".join(lines).encode()),
    )
    assert imported.json()["created"] == 2101

    response = api.get("/api/v1/contacts/export", as_=api.admin)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="contacts.csv"' in response.headers["content-disposition"]
    body = response.content
    assert body.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(rows) == 2101 and rows[0]["email"] == "user0000@example.com"
    assert rows[-1]["lifecycle_stage"] == "customer"

    again = api.post("/api/v1/contacts/import", as_=api.admin, files=upload("export.csv", body))
    assert (again.json()["unchanged"], again.json()["failed"]) == (2101, 0)

    only = api.get(
        "/api/v1/contacts/export",
        as_=api.admin,
        params={"filter": "lifecycle_stage:eq:customer", "bom": "false"},
    )
    assert only.content.startswith(b"id,") and only.text.count("\r\n") == 2


def test_bad_input_is_a_problem_and_changes_nothing(api_factory: ApiFactory) -> None:
    api = api_factory(max_body_bytes=4096)
    admin = api.admin
    cases = [
        (upload("x.csv", b"email\n\x81 \n"), {}, 400, ("file",)),
        (upload("x.csv", b"email\na@example.com\n"), {"encoding": "klingon"}, 400, ("encoding",)),
        (upload("x.csv", b"\xe4\n"), {"encoding": "utf-8"}, 400, ("encoding",)),
        (upload("x.csv", b""), {}, 400, ("file",)),
        (upload("x.csv", b"a@example.com,x\n"), {}, 400, ("file",)),
        (upload("x.csv", b"email\na@example.com\n"), {"mapping": "{not json"}, 400, ("mapping",)),
        (upload("x.csv", b"email\na@example.com\n"), {"mapping": '["email"]'}, 400, ("mapping",)),
        (
            upload("x.csv", b"email\na@example.com\n"),
            {"mapping": '{"email": "e-mail"}'},
            400,
            ("mapping", "email"),
        ),
        (upload("x.csv", b"email\na@example.com\n"), {"mode": "merge"}, 422, ()),
    ]
    for files, data, status, loc in cases:
        response = api.post("/api/v1/contacts/import", as_=admin, files=files, data=data)
        assert_problem(response, status, *((loc,) if loc else ()))
    big = upload("big.csv", b"email\n" + b"someone@example.com\n" * 400)
    assert_problem(api.post("/api/v1/contacts/import", as_=admin, files=big), 413)
    assert_problem(api.post("/api/v1/contacts/import", as_=admin, data={"mode": "create"}), 422)
    assert_problem(api.post("/api/v1/contacts/import", files=upload("hubspot_contacts.csv")), 401)
    viewer = api.caller("viewer")
    assert_problem(
        api.post("/api/v1/contacts/import", as_=viewer, files=upload("x.csv", b"email\na@b.jp\n")),
        403,
    )
    reader = api.caller("admin", scope="read")
    assert_problem(
        api.post("/api/v1/contacts/import", as_=reader, files=upload("x.csv", b"email\na@b.jp\n")),
        403,
    )
    assert_problem(
        api.get("/api/v1/contacts/export", as_=admin, params={"filter": "nope:eq:1"}),
        400,
        ("query", "filter", 0),
    )
    assert api.get("/api/v1/contacts", as_=admin).json()["items"] == []


def test_companies_import_preview_and_export(api_on: Api) -> None:
    api_on.caller("sales", email="rep@example.com")
    preview = api_on.post(
        "/api/v1/companies/import/preview",
        as_=api_on.admin,
        files=upload("salesforce_accounts.csv"),
    ).json()
    assert preview["mapping"]["Account Name"] == "name"
    assert preview["mapping"]["Website"] == "website"
    response = api_on.post(
        "/api/v1/companies/import",
        as_=api_on.admin,
        files=upload("salesforce_accounts.csv"),
        data={"match_on": "domain"},
    )
    assert response.status_code == 200, response.text
    assert (response.json()["created"], response.json()["failed"]) == (2, 0)
    exported = api_on.get("/api/v1/companies/export", as_=api_on.admin)
    assert (
        exported.status_code == 200
        and 'filename="companies.csv"' in (exported.headers["content-disposition"])
    )
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert {r["name"]: r["domain"] for r in rows} == {
        "Acme Corp": "acme.example",
        "Fuji Logistics": "fuji-logi.example",
    }
    again = api_on.post(
        "/api/v1/companies/import", as_=api_on.admin, files=upload("c.csv", exported.content)
    ).json()
    assert (again["unchanged"], again["failed"]) == (2, 0)
    bad = api_on.post(
        "/api/v1/companies/import",
        as_=api_on.admin,
        files=upload("c.csv", b"name\nX\n"),
        data={"match_on": "email"},
    )
    assert_problem(bad, 422)
