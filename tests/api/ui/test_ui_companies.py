"""Company pages: list, detail with its contacts and history, forms, stale edits."""

from __future__ import annotations

import csv
import io
import re

import pytest
from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, form_values

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.companies import service
from ichigen.crm.companies.schemas import CompanyCreate, CompanyUpdate
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate


def _names(html: str) -> list[str]:
    return re.findall(r'<td class="name-cell"><a href="/companies/\d+">([^<]+)</a>', html)


@pytest.fixture
def sakura(app_db: Database, admin_actor: Actor) -> int:
    with app_db.sessionmaker() as session:
        company = service.create_company(
            session,
            CompanyCreate(
                name="株式会社サクラ精工",
                domain="sakura-seiko.co.jp",
                industry="Manufacturing",
                employees=420,
                country="JP",
            ),
            admin_actor,
        )
        service.create_company(
            session, CompanyCreate(name="Acme", industry="Software", country="US"), admin_actor
        )
        contacts.create_contact(
            session,
            ContactCreate(last_name="山田", first_name="太郎", email="taro@sakura-seiko.co.jp"),
            admin_actor,
        )
    return company.id


def test_list_searches_and_filters(browser: TestClient, sakura: int) -> None:
    assert _names(browser.get("/companies").text) == ["Acme", "株式会社サクラ精工"]
    assert _names(browser.get("/companies", params={"q": "サクラ"}).text) == ["株式会社サクラ精工"]
    assert _names(browser.get("/companies", params={"q": "sakura-seiko"}).text) == [
        "株式会社サクラ精工"
    ]
    assert _names(browser.get("/companies", params={"country": "US"}).text) == ["Acme"]
    assert _names(browser.get("/companies", params={"sort": "-name"}).text) == [
        "株式会社サクラ精工",
        "Acme",
    ]
    partial = browser.get(
        "/companies",
        params={"industry": "Software"},
        headers={"HX-Request": "true", "HX-Target": "results"},
    )
    assert "<html" not in partial.text and _names(partial.text) == ["Acme"]


def test_detail_lists_its_contacts_and_history(browser: TestClient, sakura: int) -> None:
    page = browser.get(f"/companies/{sakura}")
    assert page.status_code == 200
    assert f'hx-get="/contacts/_for-company/{sakura}"' in page.text
    assert "History" in page.text and "Manufacturing" in page.text
    panel = browser.get(f"/contacts/_for-company/{sakura}", headers={"HX-Request": "true"})
    assert "山田 太郎" in panel.text


def test_create_edit_and_stale_edit(
    browser: TestClient, app_db: Database, admin_actor: Actor, sakura: int
) -> None:
    token = csrf_token(browser.get("/companies/new").text)
    bad = browser.post(
        "/companies/new",
        data={"csrf_token": token, "name": "", "employees": "many", "parent": "No Such Parent"},
    )
    assert bad.status_code == 422
    assert re.search(r'id="parent-error">No single company has this name.', bad.text)
    fixed = browser.post(
        "/companies/new",
        data={"csrf_token": token, "name": "", "employees": "many", "parent": "Acme"},
    )
    assert fixed.status_code == 422
    assert re.search(r'id="name-error">', fixed.text)
    assert re.search(r'id="employees-error">', fixed.text)

    created = browser.post(
        "/companies/new",
        data={
            "csrf_token": token,
            "name": "サクラ精工 大阪支社",
            "website": "osaka.sakura-seiko.co.jp",
            "employees": "35",
            "parent": "株式会社サクラ精工",
            "tags": "branch",
        },
        follow_redirects=False,
    )
    assert created.status_code == 303
    branch_id = int(created.headers["location"].rsplit("/", 1)[1])
    with app_db.sessionmaker() as session:
        branch = service.get_company(session, branch_id, admin_actor)
    assert branch.parent_id == sakura and branch.domain == "osaka.sakura-seiko.co.jp"
    assert branch.employees == 35 and branch.tags == ["branch"]
    assert "サクラ精工 大阪支社" in browser.get(f"/companies/{sakura}").text  # a subsidiary

    edit = browser.get(f"/companies/{branch_id}/edit").text
    assert 'value="株式会社サクラ精工"' in edit and 'name="version" value="1"' in edit
    with app_db.sessionmaker() as session:
        service.update_company(session, branch_id, CompanyUpdate(employees=40), admin_actor)
    stale = browser.post(
        f"/companies/{branch_id}/edit",
        data={"csrf_token": token, "version": "1", "name": "Osaka", "employees": "50"},
    )
    assert stale.status_code == 409
    assert "Someone else changed this record" in stale.text
    saved = browser.post(
        f"/companies/{branch_id}/edit",
        data={
            "csrf_token": token,
            "version": "2",
            "name": "サクラ精工 大阪支社",
            "website": "https://osaka.sakura-seiko.co.jp",
            "domain": "osaka.sakura-seiko.co.jp",
            "employees": "50",
            "parent": "株式会社サクラ精工",
            "tags": "branch",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    history = browser.get(f"/companies/{branch_id}").text
    assert re.search(
        r'<th scope="row">Employees</th>\s*<td class="before">40</td>\s*'
        r'<td class="arrow" aria-hidden="true">→</td>\s*<td class="after">50</td>',
        history,
    )


def test_delete_asks_first(browser: TestClient, sakura: int) -> None:
    confirm = browser.get(f"/companies/{sakura}/delete").text
    gone = browser.post(
        f"/companies/{sakura}/delete",
        data={"csrf_token": csrf_token(confirm), "version": "1"},
        follow_redirects=False,
    )
    assert gone.status_code == 303 and gone.headers["location"] == "/companies"
    assert browser.get(f"/companies/{sakura}").status_code == 404


def test_suggestions_for_the_company_fields(browser: TestClient, sakura: int) -> None:
    options = browser.get("/companies/_suggest", params={"company": "株式会社サ"}).text
    assert '<option value="株式会社サクラ精工">' in options
    assert browser.get("/companies/_suggest", params={"parent": ""}).text.strip() == ""


def test_saving_an_untouched_form_changes_nothing(
    browser: TestClient, app_db: Database, admin_actor: Actor, sakura: int
) -> None:
    with app_db.sessionmaker() as session:
        child = service.create_company(
            session,
            CompanyCreate(
                name="Sakura Osaka",
                website="https://osaka.example.jp",
                annual_revenue="1250000.50",
                revenue_currency="JPY",
                phone="06-1234-5678",
                description="Branch office\nsecond line",
                owner_id=admin_actor.user_id,
                parent_id=sakura,
                tags=["branch", "west"],
            ),
            admin_actor,
        )
    edit = browser.get(f"/companies/{child.id}/edit").text
    fields = form_values(edit)
    assert fields["parent"] == "株式会社サクラ精工" and fields["revenue_currency"] == "JPY"
    saved = browser.post(f"/companies/{child.id}/edit", data=fields, follow_redirects=False)
    assert saved.status_code == 303
    with app_db.sessionmaker() as session:
        assert service.get_company(session, child.id, admin_actor).version == 1


def test_export_writes_what_the_list_shows(browser: TestClient, sakura: int) -> None:
    listing = browser.get("/companies", params={"country": "US"}).text
    link = re.search(r'href="(/companies/export\.csv[^"]*)"', listing)
    assert link and link.group(1) == "/companies/export.csv?country=US"
    response = browser.get(link.group(1))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text.removeprefix("\ufeff"))))
    assert [r["name"] for r in rows] == ["Acme"]
