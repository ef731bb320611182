"""In Chromium: an admin creates a source, and its live debugger shows events as they arrive."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.conftest import LiveServer, sign_in

pytestmark = pytest.mark.e2e


def _shot(page: Page, server: LiveServer, name: str) -> None:
    page.screenshot(path=server.screenshots / f"{name}.png", full_page=True)


def _send_batch(server: LiveServer, key: str, *messages: dict[str, Any]) -> dict[str, Any]:
    """POST a batch as an SDK does: JSON body, the write key in the body."""
    body = json.dumps({"batch": list(messages), "writeKey": key}).encode()
    request = urllib.request.Request(  # noqa: S310 - a local test server
        f"{server.url}/v1/batch",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def test_the_live_debugger_shows_events_as_they_arrive(page: Page, live_server: LiveServer) -> None:
    name = f"Web shop {uuid.uuid4().hex[:6]}"
    sign_in(page, live_server, "/sources")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_label("Kind", exact=True).select_option(label="Website")
    page.get_by_label("Rate limit (messages/s)").fill("100")
    page.get_by_role("button", name="Create source").click()

    key_box = page.get_by_role("textbox", name="New write key")
    expect(key_box).to_have_value(re.compile(r"^wk_"))
    key = key_box.input_value()
    expect(page.locator("pre").first).to_contain_text(f'analytics.write_key = "{key}"')
    _shot(page, live_server, "debugger-01-new-source")

    page.get_by_role("link", name="Open the live debugger to see the events arrive").click()
    expect(page.get_by_role("heading", name="Live debugger", level=1)).to_be_visible()
    expect(page.get_by_text("No messages yet.")).to_be_visible()

    # Events sent while the page is open appear without a reload.
    answer = _send_batch(
        live_server,
        key,
        {
            "type": "track",
            "userId": "user-42",
            "event": "Order Completed",
            "messageId": "order-1001",
            "properties": {"revenue": 4980, "currency": "JPY"},
        },
        {"type": "track", "userId": "user-42", "messageId": "no-event-name"},
        {"type": "identify", "anonymousId": "anon-7", "traits": {"plan": "pro"}},
    )
    assert answer["success"] is True and len(answer["rejected"]) == 1
    rows = page.locator("#debug-rows tr[data-seq]")
    expect(rows).to_have_count(3)
    accepted = page.locator('tr[data-status="accepted"]', has_text="Order Completed")
    rejected = page.locator('tr[data-status="rejected"]')
    expect(accepted).to_be_visible()
    expect(accepted.get_by_text("Accepted")).to_be_visible()
    expect(rejected).to_be_visible()
    expect(rejected.get_by_text("Rejected")).to_be_visible()
    expect(rejected).to_contain_text("no-event-name")
    expect(page.get_by_text("No messages yet.")).to_have_count(0)

    # A row opens to its payload, and stays open while newer rows arrive on top.
    rejected.get_by_text("Show JSON").click()
    payload = rejected.locator("pre")
    expect(payload).to_be_visible()
    expect(payload).to_contain_text('"messageId": "no-event-name"')
    _send_batch(
        live_server,
        key,
        {"type": "page", "anonymousId": "anon-7", "name": "Pricing", "messageId": "page-1"},
    )
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("Pricing")
    expect(payload).to_be_visible()
    _shot(page, live_server, "debugger-02-live")

    # The rejected message waits among the failed events, ready to be fixed.
    page.get_by_role("link", name="Failed events").first.click()
    expect(page.get_by_role("heading", name="Failed events", level=1)).to_be_visible()
    expect(page.locator("#failed-events")).to_contain_text("no-event-name")
    _shot(page, live_server, "debugger-03-failed-events")
