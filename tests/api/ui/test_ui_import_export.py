"""The CSV import pages (upload, mapping, dry run, import, report) and the list's export."""

from __future__ import annotations

import csv
import io
import re

from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, sign_in
from tests.conftest import make_user

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.contacts import service
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.web.app import create_app

SHIFT_JIS_FILE = (
    "氏名,メールアドレス,会社名,ライフサイクルステージ,メモ\r\n"
    "鈴木 一郎,ichiro@example.jp,テスト株式会社,lead,初回\r\n"
    "田中 花子,not-an-email,テスト株式会社,customer,\r\n"
    "佐藤 次郎,jiro@example.jp,,customer,\r\n"
).encode("cp932")


def _selected_mapping(html: str) -> dict[str, str]:
    mapping = {}
    for index, body in re.findall(
        r'<select id="f-map-(\d+)" name="map-\d+">(.*?)</select>', html, re.S
    ):
        chosen = re.search(r'<option value="([^"]*)" selected', body)
        mapping[f"map-{index}"] = chosen.group(1) if chosen else ""
    return mapping


def _counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-count="(\w+)">(\d+)', html)}


def test_import_maps_dry_runs_and_imports(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    token = csrf_token(browser.get("/contacts/import").text)
    nothing = browser.post("/contacts/import", data={"csrf_token": token})
    assert nothing.status_code == 400 and "Choose a CSV file to import." in nothing.text

    mapping_page = browser.post(
        "/contacts/import",
        data={"csrf_token": token, "encoding": ""},
        files={"file": ("contacts.csv", SHIFT_JIS_FILE, "text/csv")},
    )
    assert mapping_page.status_code == 200
    assert '<strong id="detected-encoding">cp932</strong>' in mapping_page.text
    assert "ichiro@example.jp" in mapping_page.text  # the first rows are shown
    mapping = _selected_mapping(mapping_page.text)
    assert mapping == {
        "map-0": "full_name",
        "map-1": "email",
        "map-2": "company_name",
        "map-3": "lifecycle_stage",
        "map-4": "",
    }
    upload = re.search(r'action="/contacts/import/([\w-]+)"', mapping_page.text)
    assert upload
    run_url = f"/contacts/import/{upload.group(1)}"
    form = {"csrf_token": token, "encoding": "cp932", "mode": "upsert", "match_on": "email"}

    dry = browser.post(run_url, data={**form, **mapping, "action": "dry_run"})
    assert dry.status_code == 200 and "This was a dry run" in dry.text
    assert _counts(dry.text) == {"created": 2, "updated": 0, "unchanged": 0, "failed": 1}
    assert re.search(
        r"<td class=\"num\">3</td><td>メールアドレス</td><td>not-an-email</td>", dry.text
    )
    with app_db.sessionmaker() as session:
        assert service.list_contacts(session, admin_actor).items == []

    # The dry run's page carries the same choices to the real import.
    assert 'name="map-1" value="email"' in dry.text
    done = browser.post(run_url, data={**form, **mapping, "action": "import"})
    assert done.status_code == 200 and "The import is done." in done.text
    assert _counts(done.text) == {"created": 2, "updated": 0, "unchanged": 0, "failed": 1}
    with app_db.sessionmaker() as session:
        ichiro = service.find_contact_by_email(session, "ichiro@example.jp", admin_actor)
    assert ichiro is not None and ichiro.full_name == "鈴木 一郎"
    assert ichiro.company is not None and ichiro.company.name == "テスト株式会社"

    # Again: nothing changes now, and a column mapped twice is refused on the mapping page.
    again = browser.post(run_url, data={**form, **mapping, "action": "dry_run"})
    assert _counts(again.text)["unchanged"] == 2
    twice = browser.post(run_url, data={**form, **mapping, "map-4": "email", "action": "dry_run"})
    assert twice.status_code == 400 and "The column mapping is not valid" in twice.text
    assert 'id="f-map-4"' in twice.text


def test_unreadable_files_are_explained(browser: TestClient) -> None:
    token = csrf_token(browser.get("/contacts/import").text)
    empty = browser.post(
        "/contacts/import",
        data={"csrf_token": token},
        files={"file": ("empty.csv", b"   ", "text/csv")},
    )
    assert empty.status_code == 400 and "The file is empty." in empty.text
    wrong = browser.post(
        "/contacts/import",
        data={"csrf_token": token, "encoding": "utf-8"},
        files={"file": ("sjis.csv", SHIFT_JIS_FILE, "text/csv")},
    )
    assert wrong.status_code == 400 and "The file is not valid utf-8" in wrong.text


def test_uploads_belong_to_their_user(browser: TestClient, app_db: Database) -> None:
    token = csrf_token(browser.get("/contacts/import").text)
    page = browser.post(
        "/contacts/import",
        data={"csrf_token": token},
        files={"file": ("contacts.csv", SHIFT_JIS_FILE, "text/csv")},
    )
    upload = re.search(r'action="(/contacts/import/[\w-]+)"', page.text)
    assert upload
    with app_db.sessionmaker() as session:
        make_user(session, "ken@example.com", "sales")
    with TestClient(create_app(app_db.settings, app_db)) as other:
        sign_in(other, "ken@example.com")
        theirs = csrf_token(other.get("/contacts/import").text)
        refused = other.post(upload.group(1), data={"csrf_token": theirs, "action": "import"})
        assert refused.status_code == 404 and "upload the file again" in refused.text
        assert (
            other.post("/contacts/import/not*a*token", data={"csrf_token": theirs}).status_code
            == 404
        )


def test_export_writes_what_the_list_shows(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        for first, stage in (("Aiko", "lead"), ("Ben", "customer"), ("Chika", "lead")):
            service.create_contact(
                session,
                ContactCreate(
                    first_name=first,
                    last_name="Test",
                    email=f"{first.lower()}@example.jp",
                    lifecycle_stage=stage,
                ),
                admin_actor,
            )
    listing = browser.get("/contacts", params={"stage": "lead"}).text
    link = re.search(r'href="(/contacts/export\.csv[^"]*)"', listing)
    assert link and link.group(1) == "/contacts/export.csv?stage=lead"
    response = browser.get(link.group(1))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text.removeprefix("\ufeff"))))
    assert sorted(r["first_name"] for r in rows) == ["Aiko", "Chika"]
    everyone = browser.get("/contacts/export.csv").text
    assert len(list(csv.DictReader(io.StringIO(everyone.removeprefix("\ufeff"))))) == 3
