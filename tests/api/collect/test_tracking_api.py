"""The Segment-compatible tracking API (``/v1/*``) over HTTP: what is stored, and what is not.

Every check reads back through the JSON API (``/api/v1/events`` and ``/failed-events``) as an
admin, so a test sees what a user of ichigen would see. Building the app takes about a second,
so most tests share one app per module and work in a source of their own (events and failed
events are read per source); tests about settings, restarts and metrics build their own.
"""

from __future__ import annotations

import base64
import gzip
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient
from tests.api.conftest import Api, ApiFactory, Caller, assert_problem

from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.web.app import create_app

# ----------------------------------------------------------------------------- helpers


def basic(key: str) -> dict[str, str]:
    """HTTP Basic with the write key as user name and an empty password (Segment's way)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post_to(
    api: Api,
    path: str,
    body: Any,
    key: str | None,
    *,
    headers: dict[str, str] | None = None,
    compress: bool = False,
) -> httpx.Response:
    """POST ``body`` (JSON-encoded unless it is bytes) to ``/v1/<path>`` with Basic auth."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"Content-Type": "application/json", **(basic(key) if key else {})}
    if compress:
        raw = gzip.compress(raw)
        sent["Content-Encoding"] = "gzip"
    sent.update(headers or {})
    return api.post(f"/v1/{path}", content=raw, headers=sent)


def read_events(api: Api, reader: Caller | None = None, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/events", as_=reader or api.admin, params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def read_failed(api: Api, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/failed-events", as_=api.admin, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


def new_source(api: Api, name: str | None = None, **fields: Any) -> tuple[int, str]:
    """A source made through the API: its id and its write key."""
    name = name or f"Source {uuid.uuid4().hex[:8]}"
    response = api.post("/api/v1/sources", as_=api.admin, json={"name": name, **fields})
    assert response.status_code == 201, response.text
    body = response.json()
    return int(body["id"]), str(body["write_key"])


@dataclass
class Source:
    """One test's source in the shared app: its key, and its events read back."""

    api: Api
    id: int
    key: str

    def send(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return post_to(self.api, path, body, self.key, **kwargs)

    def send_without_key(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return post_to(self.api, path, body, None, **kwargs)

    def events(self, **params: Any) -> list[dict[str, Any]]:
        return read_events(self.api, source_id=self.id, **params)

    def failed(self) -> list[dict[str, Any]]:
        return read_failed(self.api, source_id=self.id)

    def assert_nothing_stored(self, *, failed: int = 0) -> None:
        """No event, and exactly ``failed`` failed events (0 for request-level refusals)."""
        assert self.events() == []
        assert len(self.failed()) == failed

    def patch(self, **fields: Any) -> None:
        response = self.api.patch(f"/api/v1/sources/{self.id}", as_=self.api.admin, json=fields)
        assert response.status_code == 200, response.text

    def rotate(self, **fields: Any) -> str:
        response = self.api.post(
            f"/api/v1/sources/{self.id}/rotate-key", as_=self.api.admin, json=fields
        )
        assert response.status_code == 200, response.text
        return str(response.json()["write_key"])


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Api]:
    """One app on its own SQLite record store and event store, for this module's tests."""
    data_dir = tmp_path_factory.mktemp("tracking")
    shutil.copy(sqlite_template, data_dir / "ichigen.db")
    settings = Settings(data_dir=data_dir, secret_key="test-secret-key-0123456789")
    database = Database(create_db_engine(f"sqlite:///{data_dir / 'ichigen.db'}"), settings)
    with TestClient(create_app(settings, database)) as client:
        yield Api(client, database)
    database.dispose()


@pytest.fixture
def source(shared_api: Api) -> Source:
    """A new source of this test's own in the shared app."""
    source_id, key = new_source(shared_api)
    return Source(shared_api, source_id, key)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def counter(api: Api, name: str, labels: str = "") -> float:
    """The value of one Prometheus counter at ``/metrics`` (0 when not yet exported)."""
    text = api.get("/metrics").text
    found = re.search(rf"^{re.escape(name + labels)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# ----------------------------------------------------------------------------- each call

CALLS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "identify",
        {"userId": "u-1", "traits": {"email": "mei@example.com", "plan": "pro"}},
        {
            "type": "identify",
            "user_id": "u-1",
            "traits": {"email": "mei@example.com", "plan": "pro"},
        },
    ),
    (
        "track",
        {
            "anonymousId": "anon-1",
            "event": "Order Completed",
            "properties": {"revenue": 12.5, "currency": "JPY", "products": [{"sku": "A-1"}]},
        },
        {
            "type": "track",
            "anonymous_id": "anon-1",
            "user_id": None,
            "event": "Order Completed",
            "properties": {"revenue": 12.5, "currency": "JPY", "products": [{"sku": "A-1"}]},
        },
    ),
    (
        "page",
        {
            "userId": "u-1",
            "name": "Pricing",
            "category": "Docs",
            "properties": {"url": "https://example.com/pricing"},
        },
        {
            "type": "page",
            "name": "Pricing",
            "category": "Docs",
            "properties": {"url": "https://example.com/pricing"},
        },
    ),
    (
        "screen",
        {"userId": "u-1", "name": "Basket", "category": "Shop", "properties": {"items": 3}},
        {"type": "screen", "name": "Basket", "category": "Shop", "properties": {"items": 3}},
    ),
    (
        "group",
        {"userId": "u-1", "groupId": "acme", "traits": {"industry": "retail"}},
        {"type": "group", "group_id": "acme", "traits": {"industry": "retail"}},
    ),
    (
        "alias",
        {"userId": "u-1", "previousId": "anon-1"},
        {"type": "alias", "user_id": "u-1", "previous_id": "anon-1"},
    ),
]


@pytest.mark.parametrize(("path", "message", "expected"), CALLS, ids=[c[0] for c in CALLS])
def test_each_call_stores_its_fields(
    source: Source, path: str, message: dict[str, Any], expected: dict[str, Any]
) -> None:
    happened = datetime(2025, 3, 1, 9, 30, 15, 250000, tzinfo=UTC)
    body = {
        **message,
        "messageId": f"m-{path}",
        "timestamp": iso(happened),
        "context": {"ip": "203.0.113.7", "library": {"name": "curl", "version": "8"}},
        "integrations": {"All": False, "Mixpanel": True},
    }
    before = datetime.now(UTC)
    response = source.send(path, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}

    [stored] = source.events()
    for field, value in expected.items():
        assert stored[field] == value, field
    assert stored["source_id"] == source.id
    assert stored["message_id"] == f"m-{path}"
    assert when(stored["timestamp"]) == happened
    assert when(stored["original_timestamp"]) == happened
    assert stored["sent_at"] is None
    assert before - timedelta(seconds=1) <= when(stored["received_at"]) <= datetime.now(UTC)
    assert stored["context"] == {
        "ip": "203.0.113.7",
        "library": {"name": "curl", "version": "8"},
    }
    assert stored["integrations"] == {"All": False, "Mixpanel": True}
    # Identity resolution gave the event its person as it was stored.
    assert str(stored["person_id"]).isdigit()
    assert stored["consent"] is None


@pytest.mark.parametrize("path", ["batch", "import"])
def test_batch_and_import_store_every_type(source: Source, path: str) -> None:
    batch = [{**message, "type": call, "messageId": f"{path}-{call}"} for call, message, _ in CALLS]
    response = source.send(path, {"batch": batch})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    stored = {e["message_id"]: e for e in source.events()}
    assert set(stored) == {f"{path}-{call}" for call, _, _ in CALLS}
    for call, _, expected in CALLS:
        event = stored[f"{path}-{call}"]
        for field, value in expected.items():
            assert event[field] == value, (call, field)


def test_the_single_call_endpoint_decides_the_type(source: Source) -> None:
    """A message sent to /v1/track is a track call whatever its own `type` says."""
    response = source.send("track", {"type": "identify", "userId": "u", "event": "Signed Up"})
    assert response.status_code == 200, response.text
    [stored] = source.events()
    assert stored["type"] == "track" and stored["event"] == "Signed Up"


def test_numeric_ids_are_kept_as_text(source: Source) -> None:
    response = source.send("group", {"userId": 42, "groupId": 7, "anonymousId": 1.5})
    assert response.status_code == 200, response.text
    [stored] = source.events()
    assert (stored["user_id"], stored["group_id"], stored["anonymous_id"]) == ("42", "7", "1.5")


def test_unusual_text_is_stored_as_sent(source: Source) -> None:
    text = "芽衣 \u0000 \U0001f600 \\ \" '; DROP TABLE events; --"
    message = {"userId": text, "event": text, "properties": {text: text}}
    response = source.send("track", message)
    assert response.status_code == 200, response.text
    [stored] = source.events()
    assert stored["user_id"] == text and stored["event"] == text
    assert stored["properties"] == {text: text}
    assert [e["event"] for e in read_events(source.api, user_id=text)] == [text]


# ----------------------------------------------------------------------------- write keys


def _key_in(where: str, key: str) -> tuple[dict[str, Any], dict[str, str], str]:
    """The body fields, headers and query string that carry ``key`` in one place."""
    message = {"userId": "u-1", "event": f"Via {where}"}
    if where == "basic":
        return message, basic(key), ""
    if where == "header":
        return message, {"X-Write-Key": key}, ""
    if where == "body":
        return {**message, "writeKey": key}, {}, ""
    return message, {}, f"?writeKey={key}"


@pytest.mark.parametrize("where", ["basic", "header", "body", "query"])
def test_the_write_key_is_read_from_each_place(source: Source, where: str) -> None:
    message, headers, query = _key_in(where, source.key)
    response = source.send_without_key(f"track{query}", message, headers=headers)
    assert response.status_code == 200, response.text
    [stored] = source.events()
    assert stored["event"] == f"Via {where}"
    # The key is no part of what is stored.
    assert source.key not in orjson.dumps(stored).decode()


@pytest.mark.parametrize("where", ["basic", "header", "body", "query"])
def test_the_write_key_of_a_batch_is_read_from_each_place(source: Source, where: str) -> None:
    message, headers, query = _key_in(where, source.key)
    item = {k: v for k, v in message.items() if k != "writeKey"} | {"type": "track"}
    body = {"batch": [item]} | ({"writeKey": source.key} if where == "body" else {})
    response = source.send_without_key(f"batch{query}", body, headers=headers)
    assert response.status_code == 200, response.text
    [stored] = source.events()
    assert stored["event"] == f"Via {where}"
    assert source.key not in orjson.dumps(stored).decode()


# ----------------------------------------------------------------------------- gzip


def test_gzip_bodies_are_accepted(source: Source) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(50)]}
    response = source.send("batch", batch, compress=True)
    assert response.status_code == 200, response.text
    single = source.send("identify", {"userId": "u", "traits": {"name": "Mei"}}, compress=True)
    assert single.status_code == 200, single.text
    assert len(source.events(type="track")) == 50
    assert source.events(type="identify")[0]["traits"] == {"name": "Mei"}


# ----------------------------------------------------------------------------- batches


def test_batch_context_and_integrations_are_merged_into_each_item(source: Source) -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "Plain", "messageId": "plain"},
            {
                "type": "track",
                "userId": "u",
                "event": "Own",
                "messageId": "own",
                "context": {"library": {"name": "item-lib"}, "locale": "ja-JP"},
                "integrations": {"Mixpanel": False, "Amplitude": True},
            },
        ],
        "context": {"ip": "198.51.100.1", "library": {"name": "batch-lib"}},
        "integrations": {"All": False, "Mixpanel": True},
    }
    response = source.send("batch", body)
    assert response.status_code == 200, response.text
    stored = {e["message_id"]: e for e in source.events()}
    assert stored["plain"]["context"] == {"ip": "198.51.100.1", "library": {"name": "batch-lib"}}
    assert stored["plain"]["integrations"] == {"All": False, "Mixpanel": True}
    # The item's own values win over the batch's.
    assert stored["own"]["context"] == {
        "ip": "198.51.100.1",
        "library": {"name": "item-lib"},
        "locale": "ja-JP",
    }
    assert stored["own"]["integrations"] == {"All": False, "Mixpanel": False, "Amplitude": True}


def test_traits_come_from_traits_and_from_context_traits(source: Source) -> None:
    batch = [
        {"type": "identify", "userId": "top", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "ctx", "context": {"traits": {"plan": "free", "age": 3}}},
        {
            "type": "identify",
            "userId": "both",
            "traits": {"plan": "pro"},
            "context": {"traits": {"plan": "free", "email": "b@example.com"}},
        },
        {"type": "group", "userId": "g", "groupId": "acme", "context": {"traits": {"seats": 5}}},
    ]
    response = source.send("batch", {"batch": batch})
    assert response.status_code == 200, response.text
    traits = {e["user_id"]: e["traits"] for e in source.events()}
    assert traits["top"] == {"plan": "pro"}
    assert traits["ctx"] == {"plan": "free", "age": 3}
    # Top-level traits win over those in context.
    assert traits["both"] == {"plan": "pro", "email": "b@example.com"}
    assert traits["g"] == {"seats": 5}


# ----------------------------------------------------------------------------- time


def test_the_device_clock_is_corrected_with_sent_at(source: Source) -> None:
    """A device two days behind: the event is placed 10 s before it reached the server."""
    device_now = datetime.now(UTC) - timedelta(days=2)
    happened = device_now - timedelta(seconds=10)
    message = {
        "userId": "u",
        "event": "Skewed",
        "originalTimestamp": iso(happened),
        "sentAt": iso(device_now),
    }
    response = source.send("track", message)
    assert response.status_code == 200, response.text
    [stored] = source.events()
    received = when(stored["received_at"])
    timestamp = when(stored["timestamp"])
    assert timestamp == received - (when(stored["sent_at"]) - when(stored["original_timestamp"]))
    assert timestamp == received - timedelta(seconds=10)
    assert abs(datetime.now(UTC) - timestamp) < timedelta(minutes=1)
    assert when(stored["original_timestamp"]) == when(iso(happened))


def test_a_batch_sent_at_corrects_each_item(source: Source) -> None:
    """What the SDKs send: `timestamp` on each item and `sentAt` on the batch."""
    device_now = datetime.now(UTC) + timedelta(hours=5)  # a clock five hours ahead
    body = {
        "batch": [
            {
                "type": "track",
                "userId": "u",
                "event": f"E{seconds}",
                "timestamp": iso(device_now - timedelta(seconds=seconds)),
            }
            for seconds in (1, 30)
        ],
        "sentAt": iso(device_now),
    }
    response = source.send("batch", body)
    assert response.status_code == 200, response.text
    stored = source.events()
    assert len(stored) == 2
    for event in stored:
        seconds = int(event["event"][1:])
        received = when(event["received_at"])
        assert when(event["timestamp"]) == received - timedelta(seconds=seconds)
        assert when(event["sent_at"]) == when(iso(device_now))


def test_without_sent_at_the_client_time_is_kept_and_without_any_the_server_time(
    source: Source,
) -> None:
    dated = {"userId": "u", "event": "Dated", "timestamp": "2024-06-01T12:00:00+09:00"}
    assert source.send("track", dated).status_code == 200
    assert source.send("track", {"userId": "u", "event": "Undated"}).status_code == 200
    stored = {e["event"]: e for e in source.events()}
    assert when(stored["Dated"]["timestamp"]) == datetime(2024, 6, 1, 3, tzinfo=UTC)
    assert stored["Undated"]["timestamp"] == stored["Undated"]["received_at"]
    assert stored["Undated"]["original_timestamp"] is None


def test_a_far_past_or_future_time_that_fits_is_kept(source: Source) -> None:
    for stamp in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        response = source.send("track", {"userId": "u", "event": stamp, "timestamp": stamp})
        assert response.status_code == 200, response.text
    assert {when(e["timestamp"]).year for e in source.events()} == {1, 9999}


# ----------------------------------------------------------------------------- message ids


def test_a_message_without_message_id_gets_one(source: Source) -> None:
    for _ in range(2):
        assert source.send("track", {"userId": "u", "event": "No id"}).status_code == 200
    stored = source.events()
    assert len(stored) == 2
    ids = {e["message_id"] for e in stored}
    assert len(ids) == 2
    for message_id in ids:
        uuid.UUID(message_id)


def test_a_repeated_message_id_is_dropped(source: Source) -> None:
    first = {"userId": "u", "event": "First", "messageId": "same"}
    assert source.send("track", first).status_code == 200
    retry = source.send("track", {**first, "event": "Retry"})
    assert retry.status_code == 200 and retry.json() == {"success": True}
    batch = [
        {"type": "track", "userId": "u", "event": "In batch", "messageId": "twice"},
        {"type": "track", "userId": "u", "event": "In batch again", "messageId": "twice"},
        {"type": "track", "userId": "u", "event": "Old", "messageId": "same"},
    ]
    assert source.send("batch", {"batch": batch}).status_code == 200
    stored = sorted((e["message_id"], e["event"]) for e in source.events())
    assert stored == [("same", "First"), ("twice", "In batch")]
    # A numeric messageId is the same message as its text.
    assert source.send("track", {"userId": "u", "event": "N", "messageId": 7}).status_code == 200
    assert source.send("track", {"userId": "u", "event": "T", "messageId": "7"}).status_code == 200
    assert [e["event"] for e in source.events() if e["message_id"] == "7"] == ["N"]


def test_the_same_message_id_from_two_sources_is_kept_twice(source: Source) -> None:
    other_id, other_key = new_source(source.api)
    message = {"userId": "u", "event": "Shared", "messageId": "m-1"}
    assert source.send("track", message).status_code == 200
    assert post_to(source.api, "track", message, other_key).status_code == 200
    assert [e["message_id"] for e in source.events()] == ["m-1"]
    assert [e["message_id"] for e in read_events(source.api, source_id=other_id)] == ["m-1"]


def test_message_ids_stay_seen_after_a_restart(api_factory: ApiFactory) -> None:
    """De-duplication is not a memory of this process: the store's ids are loaded at start."""
    first = api_factory()
    _, key = new_source(first)
    message = {"userId": "u", "event": "Before", "messageId": "m"}
    assert post_to(first, "track", message, key).status_code == 200
    first.client.__exit__(None, None, None)
    again = api_factory()
    retried = post_to(again, "track", {**message, "event": "After"}, key)
    assert retried.status_code == 200
    assert [e["event"] for e in read_events(again, reader=first.admin)] == ["Before"]


# ----------------------------------------------------------------------------- consent


def test_consent_of_both_families_is_kept(source: Source) -> None:
    segment = {"categoryPreferences": {"Advertising": False, "Analytics": True}}
    rudder = {
        "provider": "oneTrust",
        "allowedConsentIds": ["C0001"],
        "deniedConsentIds": ["C0004"],
    }
    batch = [
        {"type": "track", "userId": "s", "event": "E", "context": {"consent": segment}},
        {"type": "track", "userId": "r", "event": "E", "context": {"consentManagement": rudder}},
        {"type": "page", "userId": "n", "name": "Home"},
    ]
    assert source.send("batch", {"batch": batch}).status_code == 200
    stored = {e["user_id"]: e for e in source.events()}
    assert stored["s"]["consent"] == {"consent": segment}
    assert stored["r"]["consent"] == {"consentManagement": rudder}
    assert stored["n"]["consent"] is None
    # The context keeps them too, as sent.
    assert stored["s"]["context"] == {"consent": segment}


# ----------------------------------------------------------------------------- partial batches


def test_invalid_messages_of_a_batch_are_kept_apart_and_the_valid_ones_stored(
    source: Source,
) -> None:
    batch: list[Any] = [
        {"type": "track", "userId": "u", "event": "Good", "messageId": "good"},
        {"type": "track", "userId": "u", "messageId": "no-event"},
        {"type": "identify", "traits": {"plan": "pro"}, "messageId": "no-ids"},
        {"type": "track", "userId": "u", "event": "Too big", "properties": {"x": "y" * 40_000}},
        "not a message",
    ]
    response = source.send("batch", {"batch": batch})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4]
    assert rejected[1]["reason"] == "event: is required for a track call"
    assert rejected[1]["errors"] == [
        {"loc": ["batch", 1, "event"], "msg": "is required for a track call"}
    ]
    assert "userId or anonymousId is required" in rejected[2]["reason"]
    assert "at most 32768 allowed" in rejected[3]["reason"]
    assert "JSON object" in rejected[4]["reason"]

    assert [e["message_id"] for e in source.events()] == ["good"]
    failed = source.failed()
    assert len(failed) == 4
    assert all(f["status"] == "failed" for f in failed)
    by_reason = {f["reason"]: f for f in failed}
    missing_event = by_reason["event: is required for a track call"]
    assert missing_event["payload"] == batch[1]
    assert missing_event["problems"] == rejected[1]["errors"]
    assert by_reason[rejected[4]["reason"]]["payload"] == "not a message"


def test_a_failed_event_is_replayed_after_a_fix(source: Source) -> None:
    api = source.api
    response = source.send("track", {"userId": "u", "messageId": "fix-me"})
    body = assert_problem(response, 400, ("event",))
    assert body["detail"] == "event: is required for a track call"
    assert source.events() == []
    [failed] = source.failed()
    replay = f"/api/v1/failed-events/{failed['id']}/replay"

    still_bad = api.post(replay, as_=api.admin, json={})
    assert still_bad.status_code == 422, still_bad.text
    assert still_bad.json()["status"] == "rejected"
    assert still_bad.json()["problems"] == [
        {"loc": ["event"], "msg": "is required for a track call"}
    ]
    assert source.events() == []

    # The user corrects the message as they see it, and sends it again.
    fixed = {**failed["payload"], "event": "Order Completed"}
    replayed = api.post(replay, as_=api.admin, json={"message": fixed})
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "accepted"
    assert replayed.json()["message_id"] == "fix-me"
    [stored] = source.events()
    assert (stored["type"], stored["event"], stored["message_id"], stored["user_id"]) == (
        "track",
        "Order Completed",
        "fix-me",
        "u",
    )
    [after] = source.failed()
    assert after["status"] == "replayed" and after["replayed_message_id"] == "fix-me"
    assert_problem(api.post(replay, as_=api.admin, json={}), 409)
    assert len(source.events()) == 1


def test_the_debugger_shows_every_outcome_even_of_odd_messages(source: Source) -> None:
    batch: list[Any] = [
        {"type": "track", "userId": "u", "event": "Good", "messageId": "d-1"},
        {"type": "track", "userId": "u", "event": "Good", "messageId": "d-1"},
        {"type": ["track"], "userId": "u", "event": {"x": 1}, "messageId": {"id": 1}},
        {"type": 5, "userId": "u", "name": 7, "messageId": 3.5},
        [1, 2],
    ]
    assert source.send("batch", {"batch": batch}).status_code == 200
    response = source.api.get(f"/api/v1/sources/{source.id}/debugger", as_=source.api.admin)
    assert response.status_code == 200, response.text
    entries = list(reversed(response.json()))
    assert [e["status"] for e in entries] == [
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert entries[0]["message_id"] == "d-1" and entries[0]["event"] == "Good"
    assert entries[2]["payload"] == batch[2]
    assert all(e["reason"] for e in entries[2:])


# ----------------------------------------------------------------------------- bad input

BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"batch": [{"type": "track", "userId": "u", "event": "E"', "not valid JSON"),
    ("not-json", b"type=track&userId=u", "not valid JSON"),
    ("empty", b"", "not valid JSON"),
    ("array", b'[{"type": "track", "userId": "u", "event": "E"}]', "JSON object"),
    ("string", b'"track"', "JSON object"),
    ("null", b"null", "JSON object"),
    ("number", b"42", "JSON object"),
    ("invalid-utf8", b'{"userId": "\xff\xfe", "event": "E"}', "not valid JSON"),
    ("infinite-number", b'{"userId": "u", "event": "E", "properties": {"x": 1e400}}', "infinity"),
    (
        "deep",
        b'{"userId": "u", "event": "E", "properties": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        "not valid",
    ),
]


@pytest.mark.parametrize("path", ["track", "batch"])
@pytest.mark.parametrize(
    ("raw", "detail"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bodies_that_are_not_a_json_object_are_refused(
    source: Source, path: str, raw: bytes, detail: str
) -> None:
    body = assert_problem(source.send(path, raw), 400)
    assert body["title"] == "Malformed JSON"
    assert detail in body["detail"]
    source.assert_nothing_stored()


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/csv"],
)
def test_a_wrong_content_type_is_refused(source: Source, content_type: str) -> None:
    message = {"userId": "u", "event": "E"}
    response = source.send("track", message, headers={"Content-Type": content_type})
    body = assert_problem(response, 400)
    assert body["title"] == "Unsupported content type"
    assert content_type.split(";")[0] in body["detail"]
    source.assert_nothing_stored()


def test_json_as_text_plain_is_accepted(source: Source) -> None:
    """Browsers' sendBeacon can only send text/plain; analytics.js falls back to it."""
    message = {"userId": "u", "event": "Beacon"}
    response = source.send("track", message, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert [e["event"] for e in source.events()] == ["Beacon"]


GZIPPED = gzip.compress(b'{"batch": [{"type": "track", "userId": "u", "event": "E"}]}', mtime=0)


@pytest.mark.parametrize(
    ("raw", "encoding", "title"),
    [
        (b"this is not gzip", "gzip", "Bad gzip"),
        (GZIPPED[:-12], "gzip", "Bad gzip"),
        (b"", "gzip", "Bad gzip"),
        (b'{"batch": []}', "br", "Unsupported encoding"),
    ],
    ids=["garbage", "truncated", "empty", "brotli"],
)
def test_a_bad_compressed_body_is_refused(
    source: Source, raw: bytes, encoding: str, title: str
) -> None:
    response = source.send("batch", raw, headers={"Content-Encoding": encoding})
    body = assert_problem(response, 400)
    assert body["title"] == title
    source.assert_nothing_stored()


def test_an_oversized_message_is_refused(source: Source) -> None:
    # Larger than 32 KB, well past the single-message body limit.
    big = {"userId": "u", "event": "Big", "properties": {"blob": "x" * 40_000}}
    body = assert_problem(source.send("track", big), 400, ("body",))
    assert body["title"] == "Payload too large"
    assert "larger than" in body["detail"]
    # Compressed, the limit applies to the inflated body.
    assert_problem(source.send("track", big, compress=True), 400, ("body",))
    source.assert_nothing_stored()
    # Just over 32 KB: read, then refused as a message (and kept as a failed event).
    edge = {"userId": "u", "event": "Edge", "properties": {"blob": "x" * (32 * 1024)}}
    body = assert_problem(source.send("track", edge), 400)
    assert "at most 32768 allowed" in body["detail"]
    source.assert_nothing_stored(failed=1)


def test_an_oversized_batch_is_refused(source: Source) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "x" * 10_000}}
        for _ in range(60)
    ]
    raw = orjson.dumps({"batch": batch})
    assert len(raw) > 500 * 1024
    body = assert_problem(source.send("batch", raw), 400, ("body",))
    assert body["title"] == "Payload too large"
    assert "larger than 512000 bytes" in body["detail"]
    # A gzip bomb is inflated only up to the limit.
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000
    response = source.send("batch", bomb, headers={"Content-Encoding": "gzip"})
    assert assert_problem(response, 400)["title"] == "Payload too large"
    source.assert_nothing_stored()


def test_a_batch_of_more_than_2500_messages_is_refused(source: Source) -> None:
    batch = [{"type": "track", "userId": "u", "event": "E"} for _ in range(2501)]
    body = assert_problem(source.send("batch", {"batch": batch}), 400, ("batch",))
    assert "2501 messages" in body["detail"] and "at most 2500" in body["detail"]
    source.assert_nothing_stored()


def test_the_batch_limits_are_settings(api_factory: ApiFactory) -> None:
    api = api_factory(collect_max_batch_messages=3, collect_max_message_bytes=512)
    _, key = new_source(api)
    four = [{"type": "track", "userId": "u", "event": "E"} for _ in range(4)]
    body = assert_problem(post_to(api, "batch", {"batch": four}, key), 400, ("batch",))
    assert "at most 3" in body["detail"]
    assert read_events(api) == []
    big = {"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 600}}
    response = post_to(api, "batch", {"batch": [four[0], big]}, key)
    assert response.status_code == 200
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert "at most 512 allowed" in response.json()["rejected"][0]["reason"]
    assert len(read_events(api)) == 1


WRONG_TYPES: list[tuple[str, dict[str, Any], tuple[str | int, ...], str]] = [
    ("track", {"userId": {"id": 1}, "event": "E"}, ("userId",), "string or a number"),
    ("track", {"userId": ["u"], "event": "E"}, ("userId",), "string or a number"),
    ("track", {"anonymousId": True, "event": "E"}, ("anonymousId",), "string or a number"),
    ("track", {"userId": "u", "event": "E", "properties": [1, 2]}, ("properties",), "object"),
    ("track", {"userId": "u", "event": 42}, ("event",), "must be a string"),
    ("track", {"userId": "u", "event": ""}, ("event",), "is required"),
    ("track", {"userId": "u", "event": "E", "context": "web"}, ("context",), "object"),
    ("track", {"userId": "u", "event": "E", "integrations": [1]}, ("integrations",), "object"),
    ("identify", {"userId": "u", "traits": ["a"]}, ("traits",), "object"),
    ("identify", {"userId": "u", "context": {"traits": 3}}, ("context", "traits"), "object"),
    ("page", {"userId": "u", "name": {"a": 1}}, ("name",), "must be a string"),
    ("screen", {"userId": "u", "category": 3}, ("category",), "must be a string"),
    ("group", {"userId": "u", "groupId": {"id": "acme"}}, ("groupId",), "string or a number"),
    ("group", {"userId": "u"}, ("groupId",), "required"),
    ("alias", {"userId": "u"}, ("previousId",), "required"),
    ("track", {"userId": "u", "event": "E", "messageId": "m" * 101}, ("messageId",), "100"),
    ("track", {"userId": "u" * 513, "event": "E"}, ("userId",), "512"),
    ("track", {"userId": "u", "event": "E" * 1001}, ("event",), "1000"),
]


@pytest.mark.parametrize(
    ("path", "message", "loc", "words"),
    WRONG_TYPES,
    ids=[f"{p}-{'.'.join(map(str, loc))}-{i}" for i, (p, _, loc, _) in enumerate(WRONG_TYPES)],
)
def test_wrong_field_types_are_refused(
    source: Source, path: str, message: dict[str, Any], loc: tuple[str | int, ...], words: str
) -> None:
    body = assert_problem(source.send(path, message), 400, loc)
    assert words in body["detail"]
    assert body["title"] == "Invalid message"
    # Not stored as an event; kept as a failed event with the same reason.
    [failed] = source.failed()
    assert failed["reason"] == body["detail"]
    assert source.events() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "yesterday"),
        ("timestamp", 1_700_000_000),
        ("timestamp", "2024-13-45T00:00:00Z"),
        ("originalTimestamp", "2024-02-30"),
        ("sentAt", {"at": "now"}),
        ("timestamp", "2024-01-01T00:00:00Z" * 10),
    ],
)
def test_timestamps_that_do_not_parse_are_refused(source: Source, field: str, value: Any) -> None:
    message = {"userId": "u", "event": "E", field: value}
    body = assert_problem(source.send("track", message), 400, (field,))
    assert "ISO 8601" in body["detail"]
    assert source.events() == []


def test_a_batch_sent_at_that_does_not_parse_is_refused(source: Source) -> None:
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}], "sentAt": "soon"}
    problem = assert_problem(source.send("batch", body), 400, ("batch", 0, "sentAt"))
    assert "sentAt" in problem["detail"]
    assert source.events() == []


@pytest.mark.parametrize(
    "times",
    [
        {"timestamp": "0001-01-01T00:00:00+09:00"},
        {"timestamp": "9999-12-31T23:59:59-09:00"},
        {"timestamp": "9999-12-31T00:00:00Z", "sentAt": "0001-01-01T00:00:00Z"},
        {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-01T00:00:00Z"},
    ],
    ids=["year-1-east", "year-9999-west", "sent-long-before", "sent-long-after"],
)
def test_times_past_the_edge_of_the_calendar_are_a_400_not_a_crash(
    source: Source, times: dict[str, str]
) -> None:
    response = source.send("track", {"userId": "u", "event": "E", **times})
    body = assert_problem(response, 400)
    assert body["errors"][0]["loc"][0] in times
    assert source.events() == []


@pytest.mark.parametrize("kind", ["purchase", 3, None, ["track"], {"t": 1}])
def test_an_unknown_type_in_a_batch_is_refused(source: Source, kind: Any) -> None:
    message = {"userId": "u", "event": "E"} | ({} if kind is None else {"type": kind})
    response = source.send("batch", {"batch": [message]})
    body = assert_problem(response, 400, ("batch", 0, "type"))
    assert body["detail"].startswith("type: ")
    assert source.events() == []
    # Next to a valid message, it is rejected alone.
    response = source.send("batch", {"batch": [message, {**message, "type": "track"}]})
    assert response.status_code == 200, response.text
    assert [r["index"] for r in response.json()["rejected"]] == [0]
    assert len(source.events()) == 1


@pytest.mark.parametrize(
    "ids",
    [{}, {"userId": None, "anonymousId": None}, {"userId": "", "anonymousId": ""}],
    ids=["absent", "null", "empty"],
)
def test_a_message_without_user_id_or_anonymous_id_is_refused(
    source: Source, ids: dict[str, Any]
) -> None:
    body = assert_problem(source.send("track", {"event": "E", **ids}), 400, ("userId",))
    assert "userId or anonymousId is required" in body["detail"]
    assert source.events() == []


ONE = [{"type": "track", "userId": "u", "event": "E"}]


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"batch": []}, ("batch",), "empty"),
        ({}, ("batch",), "`batch` array"),
        ({"batch": {"type": "track"}}, ("batch",), "`batch` array"),
        ({"batch": ONE, "context": []}, ("context",), "context"),
        ({"batch": ONE, "integrations": "all"}, ("integrations",), "integrations"),
    ],
    ids=["empty", "missing", "object", "context", "integrations"],
)
def test_a_malformed_batch_is_refused(
    source: Source, body: dict[str, Any], loc: tuple[str, ...], words: str
) -> None:
    problem = assert_problem(source.send("batch", body), 400, loc)
    assert problem["title"] == "Invalid batch"
    assert words in problem["detail"]
    source.assert_nothing_stored()


# ----------------------------------------------------------------------------- keys


def test_unknown_and_missing_keys_are_refused(source: Source) -> None:
    message = {"userId": "u", "event": "E"}
    before = read_events(source.api)
    for headers in (
        basic("wk_not-a-key"),
        {"X-Write-Key": "wk_not-a-key"},
        {"X-Write-Key": "x" * 5000},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b":no-user").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
        {},
    ):
        response = source.send_without_key("track", message, headers=headers)
        body = assert_problem(response, 401)
        assert "write key" in body["detail"]
        assert response.headers["www-authenticate"].startswith("Basic")
    # A Bearer token of a user is no write key either (and does not fall through to one).
    response = source.send_without_key("track", message, headers=source.api.admin.headers)
    assert_problem(response, 401)
    assert read_events(source.api) == before


def test_a_disabled_source_is_refused_and_enabled_again(source: Source) -> None:
    message = {"userId": "u", "event": "E"}
    source.patch(enabled=False)
    body = assert_problem(source.send("track", message), 401)
    assert "disabled" in body["detail"]
    body = assert_problem(source.send("batch", {"batch": [message | {"type": "track"}]}), 401)
    assert "disabled" in body["detail"]
    source.assert_nothing_stored()
    source.patch(enabled=True)
    assert source.send("track", message).status_code == 200
    assert len(source.events()) == 1


def test_a_rotated_key_works_within_its_grace_period_and_not_after(source: Source) -> None:
    first = source.key
    message = {"userId": "u", "event": "E"}
    second = source.rotate()
    assert second != first
    assert post_to(source.api, "track", message, first).status_code == 200
    assert post_to(source.api, "track", message, second).status_code == 200
    # Rotating with no grace ends every older key at once.
    third = source.rotate(grace_hours=0)
    for old in (first, second):
        body = assert_problem(post_to(source.api, "track", message, old), 401)
        assert "rotated" in body["detail"]
    assert post_to(source.api, "track", message, third).status_code == 200
    assert len(source.events()) == 3


def test_the_rate_limit_answers_429_with_retry_after(shared_api: Api) -> None:
    source_id, key = new_source(shared_api, rate_limit_per_second=1)
    source = Source(shared_api, source_id, key)
    message = {"userId": "u", "event": "E"}
    answers = [source.send("track", message) for _ in range(20)]
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {200, 429}, statuses
    limited = next(a for a in answers if a.status_code == 429)
    body = assert_problem(limited, 429)
    assert "1 messages a second" in body["detail"]
    assert int(limited.headers["retry-after"]) >= 1
    # Only the admitted requests stored anything.
    assert len(source.events()) == statuses.count(200)
    assert source.failed() == []


def test_a_batch_larger_than_the_rate_passes_when_the_source_was_quiet(shared_api: Api) -> None:
    """A client that batches 100 messages must get through a limit of 10 a second."""
    source_id, key = new_source(shared_api, rate_limit_per_second=10)
    source = Source(shared_api, source_id, key)
    batch = [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(100)]
    response = source.send("batch", {"batch": batch})
    assert response.status_code == 200, response.text
    assert len(source.events()) == 100
    # It used up about ten seconds' worth: the next request waits.
    following = source.send("track", {"userId": "u", "event": "Next"})
    assert_problem(following, 429)
    assert int(following.headers["retry-after"]) >= 5
    assert len(source.events()) == 100


# ----------------------------------------------------------------------------- metrics


def test_metrics_count_received_accepted_rejected_and_deduplicated(api: Api) -> None:
    _, key = new_source(api)
    batch = [
        {"type": "track", "userId": "u", "event": "A", "messageId": "a"},
        {"type": "track", "userId": "u", "event": "B", "messageId": "b"},
        {"type": "track", "userId": "u", "messageId": "no-event"},
        {"type": "track", "userId": "u", "event": "A again", "messageId": "a"},
    ]
    assert post_to(api, "batch", {"batch": batch}, key).status_code == 200
    assert post_to(api, "batch", b"{", key).status_code == 400
    assert post_to(api, "track", {"userId": "u", "event": "E"}, "wk_unknown").status_code == 401
    assert counter(api, "ichigen_collect_messages_received_total") == 4
    assert counter(api, "ichigen_collect_messages_accepted_total") == 2
    assert counter(api, "ichigen_collect_messages_deduplicated_total") == 1
    rejected = "ichigen_collect_messages_rejected_total"
    assert counter(api, rejected, '{reason="invalid"}') == 1
    assert counter(api, rejected, '{reason="malformed-json"}') == 1
    assert counter(api, rejected, '{reason="bad-key"}') == 1
    text = api.get("/metrics").text
    assert "ichigen_collect_commit_seconds_bucket" in text
    assert 'ichigen_collect_request_messages_bucket{le="5.0"} 1.0' in text


def test_analytics_js_short_paths_are_served(api: Api) -> None:
    """analytics.js posts to /v1/t, /v1/p, … with the key in the body, as text/plain."""
    created = api.post("/api/v1/sources", as_=api.admin, json={"name": "Browser"}).json()
    key = created["write_key"]
    for path, body in (
        ("/v1/t", {"userId": "u", "event": "Clicked"}),
        ("/v1/p", {"anonymousId": "a", "name": "Home"}),
        ("/v1/b", {"batch": [{"type": "identify", "userId": "u", "traits": {"x": 1}}]}),
    ):
        response = api.post(
            path,
            content=orjson.dumps({**body, "writeKey": key}),
            headers={"Content-Type": "text/plain"},
        )
        assert response.status_code == 200, (path, response.text)
    stored = api.get("/api/v1/events", as_=api.admin, params={"source_id": created["id"]}).json()[
        "items"
    ]
    assert sorted(e["type"] for e in stored) == ["identify", "page", "track"]
