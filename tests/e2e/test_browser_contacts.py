"""In Chromium: sign in, create a contact, edit it, find it, import a CSV, read the history."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import ADMIN_EMAIL, LiveServer, sign_in

pytestmark = pytest.mark.e2e

IMPORT_FILE = (
    "Last Name,First Name,Email,Company Name,Lifecycle Stage,Phone Number\n"
    "小林,芽衣,mei.kobayashi@minato-trading.example,港商事株式会社,lead,03-5555-0101\n"
    "小川,蓮,not-an-email,港商事株式会社,customer,\n"
    "藤田,空,sora.fujita@minato-trading.example,港商事株式会社,opportunity,\n"
).encode("cp932")


def _shot(page: Page, server: LiveServer, name: str) -> None:
    page.screenshot(path=server.screenshots / f"{name}.png", full_page=True)


def test_a_wrong_password_is_refused(page: Page, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The email or password is not right.")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_contact_lifecycle_in_the_browser(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server)
    expect(page.get_by_role("heading", name="Contacts", level=1)).to_be_visible()

    # Create.
    page.get_by_role("link", name="New contact").click()
    page.get_by_label("Last name", exact=True).fill("山田")
    page.get_by_label("First name", exact=True).fill("太郎")
    page.get_by_label("Last name (reading)").fill("やまだ")
    page.get_by_label("First name (reading)").fill("たろう")
    page.get_by_label("Email 1", exact=True).fill("Taro.Yamada@Sakura-Seiko.example")
    page.get_by_label("Phone 1", exact=True).fill("090-1234-5678")
    page.get_by_label("Company", exact=True).fill("株式会社サクラ精工")
    page.get_by_label("Lifecycle stage").select_option("lead")
    _shot(page, live_server, "01-new-contact")
    page.get_by_role("button", name="Create contact").click()
    expect(page.get_by_role("status").filter(has_text="Contact created.")).to_be_visible()
    expect(page.get_by_role("heading", name="山田 太郎", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="taro.yamada@sakura-seiko.example")).to_be_visible()
    detail_url = page.url

    # Edit: a new job title and stage.
    page.get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("Job title").fill("購買部長")
    page.get_by_label("Lifecycle stage").select_option("customer")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Changes saved.")).to_be_visible()
    assert page.url == detail_url

    # The history shows who changed what, from what to what.
    history = page.locator("section.history")
    latest = history.locator("li.timeline-entry").first
    expect(latest.locator(".who")).to_have_text(ADMIN_EMAIL)
    expect(latest.locator("tr", has_text="Job title")).to_contain_text("購買部長")
    stage = latest.locator("tr", has_text="Lifecycle stage")
    expect(stage.locator("td.before")).to_have_text("Lead")
    expect(stage.locator("td.after")).to_have_text("Customer")
    expect(history.locator("li.timeline-entry")).to_have_count(2)
    _shot(page, live_server, "02-contact-detail")

    # Find it by quick search (live, as one types its reading).
    page.get_by_role("link", name="Contacts", exact=True).first.click()
    page.get_by_role("link", name="New contact").wait_for()
    page.get_by_label("Quick search").press_sequentially("やまだ", delay=20)
    expect(page).to_have_url(re.compile(r"/contacts\?q=%E3%82%84"))
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("山田 太郎")
    expect(rows.first).to_contain_text("Customer")
    page.get_by_label("Quick search").fill("no-such-person")
    expect(page.locator("#results")).to_contain_text("No contacts match.")
    _shot(page, live_server, "03-search")


def test_csv_import_through_the_page(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server, "/contacts/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "minato.csv", "mimeType": "text/csv", "buffer": IMPORT_FILE}
    )
    page.get_by_role("button", name="Upload and map columns").click()
    expect(page.locator("#detected-encoding")).to_have_text("cp932")
    expect(page.get_by_label("Email", exact=True)).to_have_value("email")
    expect(page.get_by_label("Last Name", exact=True)).to_have_value("last_name")
    _shot(page, live_server, "04-import-mapping")

    page.get_by_role("button", name="Dry run (change nothing)").click()
    expect(page.get_by_role("heading", name="Dry run report")).to_be_visible()
    expect(page.locator('[data-count="created"]')).to_have_text("2")
    expect(page.locator('[data-count="failed"]')).to_have_text("1")
    errors = page.locator("#import-errors tbody tr")
    expect(errors).to_have_count(1)
    expect(errors.first).to_contain_text("not-an-email")

    page.get_by_role("button", name="Run the import").click()
    expect(page.get_by_text("The import is done.")).to_be_visible()
    expect(page.locator('[data-count="created"]')).to_have_text("2")
    _shot(page, live_server, "05-import-report")

    # The imported contacts are in the list, linked to their company, with their history.
    page.get_by_role("link", name="Go to the contacts").click()
    page.get_by_label("Quick search").fill("港商事")
    expect(page.locator("#results tbody tr")).to_have_count(2)
    page.get_by_role("link", name="小林 芽衣").click()
    expect(page.get_by_role("link", name="港商事株式会社").first).to_be_visible()
    created = page.locator("section.history li.timeline-entry")
    expect(created).to_have_count(1)
    expect(created.first).to_contain_text("Created")
    expect(created.first.locator("tr", has_text="Emails")).to_contain_text(
        "mei.kobayashi@minato-trading.example"
    )


def test_language_switch_to_japanese(page: Page, live_server: LiveServer) -> None:
    sign_in(page, live_server)
    page.locator("details.user-menu summary").click()
    page.get_by_role("button", name="日本語").click()
    expect(page.get_by_role("heading", name="コンタクト", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="新規コンタクト")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    _shot(page, live_server, "06-japanese")
    page.locator("details.user-menu summary").click()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Contacts", level=1)).to_be_visible()
