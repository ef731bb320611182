"""The official Segment and RudderStack Python clients, unchanged, pointed at a live ichigen.

Each client sends identify, track, page, screen, group and alias to ``ichigen serve`` on
127.0.0.1 with a write key of a source made in the server's record store; the test then reads
the events back through the JSON API with an admin's API token and checks their fields.
The clients keep module-level defaults, so the tests build ``Client`` objects of their own.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
import rudderstack.analytics.request as rudder_request
import segment.analytics.request as segment_request
from rudderstack.analytics import Client as RudderClient
from rudderstack.analytics.version import VERSION as RUDDER_VERSION
from segment.analytics import Client as SegmentClient
from segment.analytics.request import APIError as SegmentAPIError
from segment.analytics.version import VERSION as SEGMENT_VERSION
from tests.e2e.conftest import ADMIN_EMAIL, LiveServer

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import TokenCreate
from ichigen.collect import service as collect_service
from ichigen.collect.schemas import SourceCreate
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.settings import Settings

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Ichigen:
    """The live server, and a way to read its events as the admin."""

    server: LiveServer
    database: Database
    token: str

    def new_source(self, name: str) -> tuple[int, str]:
        with self.database.sessionmaker() as session:
            created = collect_service.create_source(
                session, SourceCreate(name=f"{name} {uuid.uuid4().hex[:6]}"), Actor.system()
            )
        return created.id, created.write_key

    def events(self, source_id: int) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.server.url}/api/v1/events",
            params={"source_id": source_id, "limit": 1000},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wait_for_events(self, source_id: int, count: int, seconds: float = 10) -> list[Any]:
        """The source's events once ``count`` have arrived (polled, never slept on blindly)."""
        deadline = time.monotonic() + seconds
        while True:
            found = self.events(source_id)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(scope="module")
def ichigen(live_server: LiveServer) -> Iterator[Ichigen]:
    settings = Settings(data_dir=live_server.data_dir, secret_key="e2e-secret-key-0123456789abcdef")
    database = Database.from_settings(settings)
    with database.sessionmaker() as session:
        admin = auth_service.find_user_by_email(session, ADMIN_EMAIL)
        assert admin is not None
        token = auth_service.create_token(
            session, admin.id, TokenCreate(name="SDK e2e", scope="read"), Actor.system()
        )
    yield Ichigen(live_server, database, token.token)
    database.dispose()


@pytest.fixture
def captured_requests() -> Iterator[Callable[[Any], list[requests.PreparedRequest]]]:
    """The HTTP requests an SDK's own session sends (a response hook on it, removed after)."""
    hooked: list[tuple[requests.Session, Callable[..., None]]] = []

    def capture(module: Any) -> list[requests.PreparedRequest]:
        sent: list[requests.PreparedRequest] = []

        def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            assert response.status_code == 200, response.text
            sent.append(response.request)

        session: requests.Session = module._session
        session.hooks["response"].append(hook)
        hooked.append((session, hook))
        return sent

    yield capture
    for session, hook in hooked:
        session.hooks["response"].remove(hook)


def _body(request: requests.PreparedRequest) -> bytes:
    body = request.body or b""
    if isinstance(body, str):
        return body.encode()
    assert isinstance(body, bytes)  # both clients send a body they built in memory
    return body


def _send_every_call(client: Any, user_id: str, anonymous_id: str) -> dict[str, str]:
    """One call of each type; the message id each was sent with, by type."""
    sent: dict[str, Any] = {}
    _, sent["identify"] = client.identify(
        user_id, {"email": f"{user_id}@example.com", "plan": "pro", "seats": 3}
    )
    _, sent["track"] = client.track(
        user_id,
        "Order Completed",
        {"revenue": 42.5, "currency": "JPY", "products": [{"sku": "TEA-1", "quantity": 2}]},
    )
    _, sent["page"] = client.page(
        anonymous_id=anonymous_id,
        category="Docs",
        name="Pricing",
        properties={"url": "https://shop.example/pricing", "title": "料金"},
    )
    _, sent["screen"] = client.screen(
        user_id, category="Shop", name="Basket", properties={"items": 2}
    )
    _, sent["group"] = client.group(user_id, "acme-kk", {"name": "株式会社アクメ", "employees": 12})
    _, sent["alias"] = client.alias(anonymous_id, user_id)
    return {kind: message["messageId"] for kind, message in sent.items()}


def _check_events(
    events: list[dict[str, Any]],
    message_ids: dict[str, str],
    user_id: str,
    anonymous_id: str,
    version: str,
) -> dict[str, dict[str, Any]]:
    assert len(events) == 6, events
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == {"identify", "track", "page", "screen", "group", "alias"}
    for kind, event in by_type.items():
        assert event["message_id"] == message_ids[kind]
        assert event["context"]["library"] == {"name": "analytics-python", "version": version}
        # The SDK stamps its own time and sentAt; the clocks agree here, so little moves.
        stamped = datetime.fromisoformat(event["timestamp"])
        received = datetime.fromisoformat(event["received_at"])
        assert abs(received - stamped) < timedelta(seconds=30)
        assert event["sent_at"] is not None

    identify = by_type["identify"]
    assert identify["user_id"] == user_id
    assert identify["traits"] == {"email": f"{user_id}@example.com", "plan": "pro", "seats": 3}

    track = by_type["track"]
    assert (track["user_id"], track["event"]) == (user_id, "Order Completed")
    assert track["properties"] == {
        "revenue": 42.5,
        "currency": "JPY",
        "products": [{"sku": "TEA-1", "quantity": 2}],
    }

    page = by_type["page"]
    assert (page["user_id"], page["anonymous_id"]) == (None, anonymous_id)
    assert (page["name"], page["category"]) == ("Pricing", "Docs")
    assert page["properties"] == {"url": "https://shop.example/pricing", "title": "料金"}

    screen = by_type["screen"]
    assert (screen["user_id"], screen["name"], screen["category"]) == (user_id, "Basket", "Shop")
    assert screen["properties"] == {"items": 2}

    group = by_type["group"]
    assert (group["user_id"], group["group_id"]) == (user_id, "acme-kk")
    assert group["traits"] == {"name": "株式会社アクメ", "employees": 12}

    alias = by_type["alias"]
    assert (alias["user_id"], alias["previous_id"]) == (user_id, anonymous_id)
    return by_type


def test_the_segment_client_sends_every_call(
    ichigen: Ichigen, captured_requests: Callable[[Any], list[requests.PreparedRequest]]
) -> None:
    source_id, key = ichigen.new_source("Segment SDK")
    client = SegmentClient(key, host=ichigen.server.url, sync_mode=True, max_retries=0)
    sent = captured_requests(segment_request)
    user_id, anonymous_id = f"seg-{uuid.uuid4().hex[:8]}", f"anon-{uuid.uuid4().hex[:8]}"

    message_ids = _send_every_call(client, user_id, anonymous_id)

    # Segment's client puts the key in the JSON body (and, since 2.4, also in Basic auth).
    assert len(sent) == 6
    assert all(json.loads(_body(r))["writeKey"] == key for r in sent)
    events = ichigen.wait_for_events(source_id, 6)
    _check_events(events, message_ids, user_id, anonymous_id, SEGMENT_VERSION)


def test_the_rudderstack_client_sends_every_call_gzipped(
    ichigen: Ichigen, captured_requests: Callable[[Any], list[requests.PreparedRequest]]
) -> None:
    source_id, key = ichigen.new_source("RudderStack SDK")
    client = RudderClient(key, host=ichigen.server.url, sync_mode=True, max_retries=0)
    sent = captured_requests(rudder_request)
    user_id, anonymous_id = f"rud-{uuid.uuid4().hex[:8]}", f"anon-{uuid.uuid4().hex[:8]}"

    message_ids = _send_every_call(client, user_id, anonymous_id)

    # RudderStack's client gzips its bodies and sends the key only as HTTP Basic.
    assert len(sent) == 6
    for request in sent:
        assert request.headers["Content-Encoding"] == "gzip"
        payload = json.loads(gzip.decompress(_body(request)))
        assert "writeKey" not in payload
        assert payload["batch"][0]["messageId"] in message_ids.values()
        assert str(request.headers["Authorization"]).startswith("Basic ")
    events = ichigen.wait_for_events(source_id, 6)
    by_type = _check_events(events, message_ids, user_id, anonymous_id, RUDDER_VERSION)
    # Identify traits arrive in context.traits, and are stored as the event's traits.
    assert by_type["identify"]["context"]["traits"] == by_type["identify"]["traits"]
    assert by_type["track"]["integrations"] == {"All": True}


def test_a_wrong_key_is_refused_to_the_client(ichigen: Ichigen) -> None:
    source_id, _ = ichigen.new_source("Refused SDK")
    client = SegmentClient("wk_not-a-key", host=ichigen.server.url, sync_mode=True)
    with pytest.raises(SegmentAPIError) as refused:
        client.track("u-1", "Order Completed")
    assert refused.value.status == 401
    assert ichigen.events(source_id) == []
