"""In Chromium: an admin defines a custom field in Settings, and the contact form then has it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import LiveServer, sign_in

pytestmark = pytest.mark.e2e


def _shot(page: Page, server: LiveServer, name: str) -> None:
    page.screenshot(path=server.screenshots / f"{name}.png", full_page=True)


def test_a_custom_field_defined_in_settings_appears_on_the_contact_form(
    page: Page, live_server: LiveServer
) -> None:
    sign_in(page, live_server, "/contacts")
    page.get_by_role("link", name="Settings", exact=True).click()
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    page.get_by_role("navigation", name="Settings").get_by_role(
        "link", name="Custom fields"
    ).click()
    expect(page).to_have_url(re.compile(r"/settings/fields/contacts$"))
    page.get_by_role("link", name="New field").click()

    # A key that is not allowed is explained next to the field, and nothing is created.
    page.get_by_role("textbox", name="Label", exact=True).fill("Loyalty rank")
    page.get_by_role("textbox", name="Key", exact=True).fill("Loyalty Rank")
    page.get_by_role("combobox", name="Type", exact=True).select_option(
        label="Choice of one option"
    )
    page.get_by_label("Options", exact=True).fill("gold|Gold member\nsilver|Silver member")
    page.get_by_label("Help text", exact=True).fill("From the loyalty programme.")
    page.get_by_role("button", name="Create field").click()
    expect(page.get_by_role("alert")).to_contain_text("Please correct the fields marked below.")
    key = page.get_by_role("textbox", name="Key", exact=True)
    expect(key).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#key-error")).to_contain_text("lower-case letters")
    expect(page.get_by_label("Options", exact=True)).to_have_value(
        "gold|Gold member\nsilver|Silver member"
    )
    _shot(page, live_server, "settings-01-field-error")

    key.fill("loyalty_rank")
    page.get_by_role("button", name="Create field").click()
    expect(page.get_by_role("status").filter(has_text="Custom field created.")).to_be_visible()
    row = page.locator('tr[data-field="loyalty_rank"]')
    expect(row).to_contain_text("Loyalty rank")
    expect(row).to_contain_text("Gold member")
    _shot(page, live_server, "settings-02-fields")

    # The contact form now asks for it, with its help and options, and the contact keeps it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    page.get_by_role("link", name="New contact").click()
    rank = page.get_by_label("Loyalty rank")
    expect(rank).to_be_visible()
    expect(page.locator("#custom-loyalty_rank-help")).to_have_text("From the loyalty programme.")
    page.get_by_label("First name", exact=True).fill("Grace")
    page.get_by_label("Last name", exact=True).fill("Hopper")
    page.get_by_label("Email 1", exact=True).fill("grace.hopper@navy.example")
    rank.select_option(label="Gold member")
    _shot(page, live_server, "settings-03-contact-form")
    page.get_by_role("button", name="Create contact").click()
    expect(page.get_by_role("status").filter(has_text="Contact created.")).to_be_visible()
    custom = page.locator("section", has=page.get_by_role("heading", name="Custom fields"))
    expect(custom).to_contain_text("Loyalty rank")
    expect(custom).to_contain_text("Gold member")
