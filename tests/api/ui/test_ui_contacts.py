"""Contact pages: list with search, filters, sort and paging; forms with field errors; history."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, form_values

from ichigen.core import custom_fields
from ichigen.core.audit import Actor, record_history
from ichigen.core.custom_fields import CustomFieldCreate, FieldOption
from ichigen.core.db import Database
from ichigen.crm.contacts import service
from ichigen.crm.contacts.schemas import ContactCreate, ContactUpdate

HX = {"HX-Request": "true"}


def _names(html: str) -> list[str]:
    return re.findall(r'<td class="name-cell">\s*<a href="/contacts/\d+">([^<]+)</a>', html)


@pytest.fixture
def people(app_db: Database, admin_actor: Actor) -> dict[str, int]:
    """A few contacts made through the service."""
    with app_db.sessionmaker() as session:
        yamada = service.create_contact(
            session,
            ContactCreate(
                last_name="山田",
                first_name="太郎",
                last_name_reading="やまだ",
                first_name_reading="たろう",
                email="taro@sakura-seiko.co.jp",
                phone="090-1234-5678",
                company_name="株式会社サクラ精工",
                lifecycle_stage="lead",
                tags=["展示会"],
            ),
            admin_actor,
        )
        clark = service.create_contact(
            session,
            ContactCreate(
                first_name="Emily",
                last_name="Clark",
                email="emily@acme.example",
                company_name="Acme",
                lifecycle_stage="customer",
                owner_id=admin_actor.user_id,
            ),
            admin_actor,
        )
        adams = service.create_contact(
            session,
            ContactCreate(first_name="Bob", last_name="Adams", email="bob@example.org"),
            admin_actor,
        )
    return {"yamada": yamada.id, "clark": clark.id, "adams": adams.id}


def test_list_searches_filters_and_sorts(browser: TestClient, people: dict[str, int]) -> None:
    page = browser.get("/contacts")
    assert page.status_code == 200
    assert set(_names(page.text)) == {"山田 太郎", "Emily Clark", "Bob Adams"}
    assert "やまだ たろう" in page.text and "090-1234-5678" in page.text
    assert 'href="/companies/' in page.text

    # Quick search from HTMX returns just the results, for reading, email and phone alike.
    for query in ("やまだ", "taro@", "0901234", "サクラ"):
        partial = browser.get(
            "/contacts", params={"q": query}, headers={**HX, "HX-Target": "results"}
        )
        assert "<html" not in partial.text
        assert _names(partial.text) == ["山田 太郎"], query
        assert 'hx-swap-oob="true"' in partial.text

    assert _names(browser.get("/contacts", params={"stage": "customer"}).text) == ["Emily Clark"]
    assert _names(browser.get("/contacts", params={"owner": "me"}).text) == ["Emily Clark"]
    assert _names(browser.get("/contacts", params={"tag": "展示会"}).text) == ["山田 太郎"]
    assert _names(browser.get("/contacts", params={"company": "acme"}).text) == ["Emily Clark"]
    assert _names(browser.get("/contacts", params={"company": "nothing-like-it"}).text) == []

    by_name = _names(browser.get("/contacts", params={"sort": "name"}).text)
    assert by_name == ["Bob Adams", "Emily Clark", "山田 太郎"]
    by_name_desc = browser.get("/contacts", params={"sort": "-name"}).text
    assert _names(by_name_desc) == list(reversed(by_name))
    assert 'aria-sort="descending"' in by_name_desc
    # Sort links keep the filters.
    filtered = browser.get("/contacts", params={"stage": "lead"}).text
    assert 'href="/contacts?stage=lead&amp;sort=name"' in filtered


def test_load_more_continues_the_list(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        service.bulk_upsert_contacts(
            session,
            [{"first_name": f"Person{i:02d}", "email": f"p{i}@bulk.example"} for i in range(55)],
            admin_actor,
        )
    first = browser.get("/contacts", params={"sort": "name"})
    names = _names(first.text)
    assert len(names) == 50 and "Showing the first 50 contacts." in first.text
    more = re.search(r'hx-get="(/contacts\?sort=name&amp;cursor=[^"]+)"', first.text)
    assert more
    rows = browser.get(
        more.group(1).replace("&amp;", "&"), headers={**HX, "HX-Target": "load-more"}
    )
    rest = _names(rows.text)
    assert len(rest) == 5 and not set(rest) & set(names)
    assert "<table" not in rows.text and 'id="load-more"' not in rows.text


def test_detail_shows_fields_and_history(
    browser: TestClient, app_db: Database, admin_actor: Actor, people: dict[str, int]
) -> None:
    with app_db.sessionmaker() as session:
        service.update_contact(
            session, people["yamada"], ContactUpdate(lifecycle_stage="customer"), admin_actor
        )
    page = browser.get(f"/contacts/{people['yamada']}")
    assert page.status_code == 200
    assert "taro@sakura-seiko.co.jp" in page.text and "株式会社サクラ精工" in page.text
    history = page.text[page.text.index('id="history-title"') :]
    assert history.count('class="timeline-entry"') == 2
    assert "admin@example.com" in history
    changed = re.search(
        r'<th scope="row">Lifecycle stage</th>\s*<td class="before">Lead</td>\s*'
        r'<td class="arrow" aria-hidden="true">→</td>\s*<td class="after">Customer</td>',
        history,
    )
    assert changed, history[:2000]


def test_create_shows_errors_next_to_their_fields(
    browser: TestClient, app_db: Database, admin_actor: Actor, people: dict[str, int]
) -> None:
    with app_db.sessionmaker() as session:
        custom_fields.create_field(
            session,
            CustomFieldCreate(
                entity="contacts", key="nps_score", label="NPS score", field_type="number"
            ),
            admin_actor,
        )
        custom_fields.create_field(
            session,
            CustomFieldCreate(
                entity="contacts",
                key="tier",
                label="Tier",
                field_type="select",
                options=[FieldOption(value="gold", label="Gold")],
                required=True,
            ),
            admin_actor,
        )
    page = browser.get("/contacts/new")
    assert 'name="custom-nps_score" type="number"' in page.text
    assert '<option value="gold">Gold</option>' in page.text
    response = browser.post(
        "/contacts/new",
        data={
            "csrf_token": csrf_token(page.text),
            "last_name": "Sato",
            "emails-0-email": "not-an-email",
            "emails-1-email": "emily@acme.example",
            "phones-0-number": "12345",
            "custom-nps_score": "nine",
        },
    )
    assert response.status_code == 422
    html = response.text
    assert "Please correct the fields marked below." in html
    assert re.search(r'id="f-emails-0-email"[^>]*aria-invalid="true"', html)
    assert re.search(r'<p class="field-error" id="emails-0-email-error">[^<]*@', html)
    assert re.search(r'<p class="field-error" id="phones-0-number-error">', html)
    # What was typed is kept.
    assert 'value="not-an-email"' in html and 'value="nine"' in html and 'value="Sato"' in html
    # Once the addresses are right, the custom fields are checked.
    response = browser.post(
        "/contacts/new",
        data={
            "csrf_token": csrf_token(page.text),
            "last_name": "Sato",
            "emails-0-email": "sato@example.jp",
            "custom-nps_score": "nine",
        },
    )
    assert response.status_code == 422
    html = response.text
    assert re.search(r'id="custom-nps_score-error">must be a whole number', html)
    assert re.search(r'id="custom-tier-error">is required', html)
    with app_db.sessionmaker() as session:
        assert service.find_contact_by_email(session, "emily@acme.example", admin_actor) is not None
        assert service.list_contacts(session, admin_actor, q="sato").items == []

    # An email that belongs to someone else is named as such, in Japanese too.
    browser.cookies.set("ichigen_locale", "ja")
    ja = browser.post(
        "/contacts/new",
        data={
            "csrf_token": csrf_token(page.text),
            "last_name": "Sato",
            "emails-0-email": "emily@acme.example",
            "custom-tier": "gold",
        },
    )
    browser.cookies.delete("ichigen_locale")
    assert ja.status_code == 409
    assert re.search(
        r'id="emails-0-email-error">このアドレスはすでに別のコンタクト（#\d+）に登録されています。',
        ja.text,
    )

    created = browser.post(
        "/contacts/new",
        data={
            "csrf_token": csrf_token(page.text),
            "last_name": "佐藤",
            "first_name": "花子",
            "emails-0-email": "Hanako@Example.JP",
            "phones-0-number": "03-1234-5678",
            "phones-0-label": "work",
            "company": "サクラ精工",
            "tags": "VIP, 展示会",
            "do_not_call": "1",
            "custom-nps_score": "10",
            "custom-tier": "gold",
        },
        follow_redirects=False,
    )
    assert created.status_code == 303
    detail = browser.get(created.headers["location"])
    assert "Contact created." in detail.text and "佐藤 花子" in detail.text
    assert "hanako@example.jp" in detail.text and "03-1234-5678" in detail.text
    with app_db.sessionmaker() as session:
        hanako = service.find_contact_by_email(session, "hanako@example.jp", admin_actor)
    assert hanako is not None
    assert hanako.tags == ["VIP", "展示会"] and hanako.do_not_call and not hanako.do_not_email
    assert hanako.custom == {"nps_score": 10, "tier": "gold"}
    assert hanako.company is not None and hanako.company.name == "サクラ精工"


def test_edit_saves_and_a_stale_form_says_so(
    browser: TestClient, app_db: Database, admin_actor: Actor, people: dict[str, int]
) -> None:
    contact_id = people["yamada"]
    page = browser.get(f"/contacts/{contact_id}/edit")
    form = form_values(page.text)
    assert form["version"] == "1" and form["emails-0-email"] == "taro@sakura-seiko.co.jp"
    assert form["lifecycle_stage"] == "lead" and form["company"] == "株式会社サクラ精工"

    # Someone else saves first.
    with app_db.sessionmaker() as session:
        service.update_contact(session, contact_id, ContactUpdate(job_title="部長"), admin_actor)
    stale = browser.post(f"/contacts/{contact_id}/edit", data={**form, "job_title": "課長"})
    assert stale.status_code == 409
    assert "Someone else changed this record while you were editing it." in stale.text
    assert 'value="課長"' in stale.text
    with app_db.sessionmaker() as session:
        assert service.get_contact(session, contact_id, admin_actor).job_title == "部長"

    fresh = form_values(browser.get(f"/contacts/{contact_id}/edit").text)
    assert fresh["version"] == "2" and fresh["job_title"] == "部長"
    saved = browser.post(
        f"/contacts/{contact_id}/edit",
        data={**fresh, "job_title": "課長", "lifecycle_stage": "customer"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with app_db.sessionmaker() as session:
        contact = service.get_contact(session, contact_id, admin_actor)
    assert contact.job_title == "課長" and contact.lifecycle_stage == "customer"
    # Fields the form showed but nobody touched stay as they were.
    assert contact.primary_phone == "+819012345678" and contact.tags == ["展示会"]
    assert not (contact.do_not_email or contact.do_not_call or contact.do_not_sms)
    assert contact.company is not None and contact.company.name == "株式会社サクラ精工"
    assert contact.version == 3


def test_delete_asks_first(browser: TestClient, app_db: Database, people: dict[str, int]) -> None:
    contact_id = people["adams"]
    confirm = browser.get(f"/contacts/{contact_id}/delete")
    assert "Delete Bob Adams?" in confirm.text
    form = form_values(confirm.text)
    gone = browser.post(f"/contacts/{contact_id}/delete", data=form, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/contacts"
    assert "Contact deleted." in browser.get("/contacts").text
    assert browser.get(f"/contacts/{contact_id}").status_code == 404


def test_add_row_partials(browser: TestClient) -> None:
    row = browser.get("/contacts/_email-row?index=2", headers=HX)
    assert (
        'name="emails-2-email"' in row.text and 'hx-get="/contacts/_email-row?index=3"' in row.text
    )
    assert 'name="phones-0-number"' in browser.get("/contacts/_phone-row", headers=HX).text


def test_saving_an_untouched_form_changes_nothing(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    kinds = {
        "note": "text",
        "score": "number",
        "ratio": "decimal",
        "met_on": "date",
        "called_at": "datetime",
        "vip": "boolean",
        "site": "url",
        "assistant": "email",
        "hotline": "phone",
    }
    with app_db.sessionmaker() as session:
        for key, kind in kinds.items():
            custom_fields.create_field(
                session,
                CustomFieldCreate(entity="contacts", key=key, label=key, field_type=kind),  # type: ignore[arg-type]
                admin_actor,
            )
        custom_fields.create_field(
            session,
            CustomFieldCreate(
                entity="contacts",
                key="interests",
                label="Interests",
                field_type="multi_select",
                options=[FieldOption(value="crm"), FieldOption(value="cdp")],
            ),
            admin_actor,
        )
        contact = service.create_contact(
            session,
            ContactCreate(
                last_name="Mori",
                emails=[
                    {"email": "mori@example.jp", "label": "work"},
                    {"email": "mori.home@example.jp", "label": "personal", "primary": True},
                ],
                phones=[{"number": "+81 3-1234-5678", "label": "work"}],
                country="JP",
                lead_status="open",
                do_not_sms=True,
                custom={
                    "note": "likes tea",
                    "score": 7,
                    "ratio": "0.25",
                    "met_on": "2026-04-01",
                    "called_at": "2026-04-01T09:30:15Z",
                    "vip": False,
                    "site": "https://example.jp/mori",
                    "assistant": "aide@example.jp",
                    "hotline": "+1 415 555 0100",
                    "interests": ["cdp", "crm"],
                },
            ),  # type: ignore[arg-type]
            admin_actor,
        )
    form = form_values(browser.get(f"/contacts/{contact.id}/edit").text)
    assert form["custom-vip"] == "false" and form["custom-called_at"] == "2026-04-01T09:30:15"
    assert form["emails-primary"] == "0" and form["emails-0-email"] == "mori.home@example.jp"
    saved = browser.post(f"/contacts/{contact.id}/edit", data=form, follow_redirects=False)
    assert saved.status_code == 303
    with app_db.sessionmaker() as session:
        after = service.get_contact(session, contact.id, admin_actor)
        history = record_history(session, "contacts", contact.id)
    assert after.version == 1, history[0].changes
    assert after.custom == contact.custom
