"""Hypothesis throws generated bodies at ``/v1/batch`` and ``/v1/track``.

Whatever arrives, the answer is 200, 400, 401, 413 or 429 with a JSON body, never a 5xx; a
200 stores exactly the messages it did not reject (less repeats of a stored messageId), and
any other answer stores no event. The reference for "stored" is a plain count of the event
store against a set of the message ids this test has had accepted.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from tests.api.conftest import Api

from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.web.app import create_app

ANSWERS = {200, 400, 401, 413, 429}
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Target:
    """The app, one source's write key, and the message ids it has stored so far."""

    api: Api
    source_id: int
    key: str
    seen: set[str] = field(default_factory=set)

    def stored(self) -> int:
        app: Any = self.api.client.app
        return int(app.state.collect.collector.store.count(self.source_id))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Target]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    shutil.copy(sqlite_template, data_dir / "ichigen.db")
    settings_ = Settings(data_dir=data_dir, secret_key="test-secret-key-0123456789")
    database = Database(create_db_engine(f"sqlite:///{data_dir / 'ichigen.db'}"), settings_)
    with TestClient(create_app(settings_, database)) as client:
        api = Api(client, database)
        created = api.post("/api/v1/sources", as_=api.admin, json={"name": "Fuzzed"})
        assert created.status_code == 201, created.text
        yield Target(api, created.json()["id"], created.json()["write_key"])
    database.dispose()


# ----------------------------------------------------------------------------- strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
recent = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.timezones()
).map(lambda t: t.isoformat())
times = (
    recent
    | st.datetimes(timezones=st.timezones() | st.none()).map(lambda t: t.isoformat())
    | st.sampled_from(["yesterday", "2024-02-30T00:00:00Z", "0001-01-01T00:00:00+14:00", ""])
)
ids = st.text(min_size=1, max_size=24) | st.integers(min_value=0, max_value=10**6)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
TYPES = ("identify", "track", "page", "screen", "group", "alias")
#: Fields of a message with values of the right kind.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "messageId": ids,
    "name": st.text(max_size=20),
    "category": st.text(max_size=20),
    "properties": objects,
    "traits": objects,
    "context": st.fixed_dictionaries({}, optional={"traits": objects, "ip": scalars}),
    "integrations": objects,
    "timestamp": recent,
    "originalTimestamp": recent,
    "sentAt": recent,
}
TIME_FIELDS = {"timestamp", "originalTimestamp", "sentAt"}
FIELDS = sorted({"type", "userId", "anonymousId", "event", "groupId", "previousId", *PLAUSIBLE})


@st.composite
def messages(draw: st.DrawFn, kinds: tuple[str, ...] = TYPES) -> dict[str, Any]:
    """A valid message of some type, then (often) a few fields dropped or set to anything."""
    kind = draw(st.sampled_from(kinds))
    message: dict[str, Any] = {"type": kind}
    for identifier in draw(
        st.sampled_from([["userId"], ["anonymousId"], ["userId", "anonymousId"]])
    ):
        message[identifier] = draw(ids)
    if kind == "track":
        message["event"] = draw(st.text(min_size=1, max_size=20))
    elif kind == "group":
        message["groupId"] = draw(ids)
    elif kind == "alias":
        message["previousId"] = draw(ids)
    message.update(draw(st.fixed_dictionaries({}, optional=PLAUSIBLE)))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        if draw(st.booleans()):
            message.pop(name, None)
        else:
            junk = times | json_values if name in TIME_FIELDS else json_values
            message[name] = draw(junk)
    return message


batches = st.fixed_dictionaries(
    {"batch": st.lists(messages() | json_values, min_size=1, max_size=6) | json_values},
    optional={"context": objects | json_values, "integrations": objects, "sentAt": times},
)


@st.composite
def bodies(draw: st.DrawFn, shape: st.SearchStrategy[Any]) -> bytes:
    """A JSON body of ``shape``, any JSON value, or bytes that may not be JSON at all."""
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "json", "bytes"]))
    # json, not orjson: orjson refuses integers past 64 bits, and clients may send them.
    if kind == "shaped":
        return json.dumps(draw(shape), ensure_ascii=False).encode()
    if kind == "json":
        return json.dumps(draw(json_values), ensure_ascii=False).encode()
    return draw(st.binary(max_size=200))


@dataclass(frozen=True)
class Wire:
    """How a body travels: compressed or not (or broken), and with which key."""

    encoding: str  # plain | gzip | broken-gzip
    key: str  # right | wrong | none


wires = st.builds(
    Wire,
    st.sampled_from(["plain", "plain", "gzip", "broken-gzip"]),
    st.sampled_from(["right", "right", "right", "right", "wrong", "none"]),
)


# ----------------------------------------------------------------------------- the oracle


def _message_id(message: dict[str, Any]) -> str | None:
    """The id the store keeps for an accepted message; None when the server makes one."""
    value = message.get("messageId")
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _post(target: Target, path: str, raw: bytes, wire: Wire) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if wire.key != "none":
        key = target.key if wire.key == "right" else "wk_not-a-key"
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    if wire.encoding != "plain":
        headers["Content-Encoding"] = "gzip"
        raw = gzip.compress(raw)
        if wire.encoding == "broken-gzip":
            raw = raw[: len(raw) // 2]
    return target.api.post(f"/v1/{path}", content=raw, headers=headers)


def _check(target: Target, path: str, raw: bytes, wire: Wire) -> None:
    before = target.stored()
    response = _post(target, path, raw, wire)
    assert response.status_code in ANSWERS, (response.status_code, response.text)
    event(f"answer {response.status_code}")
    answer = response.json()
    assert isinstance(answer, dict)
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert answer["status"] == response.status_code and answer["detail"]
        assert target.stored() == before
        return
    assert answer["success"] is True
    payload = orjson.loads(raw)
    sent = payload["batch"] if path == "batch" else [payload]
    rejected = {r["index"] for r in answer.get("rejected", [])}
    assert rejected < set(range(len(sent))), "a 200 stores at least one message"
    new = 0
    for index, message in enumerate(sent):
        if index in rejected:
            continue
        message_id = _message_id(message)
        if message_id is None or message_id not in target.seen:
            new += 1
            if message_id is not None:
                target.seen.add(message_id)
    assert target.stored() == before + new


@FUZZ
@given(raw=bodies(batches), wire=wires)
def test_fuzzed_batches(target: Target, raw: bytes, wire: Wire) -> None:
    _check(target, "batch", raw, wire)


@FUZZ
@given(raw=bodies(messages(("track",))), wire=wires)
def test_fuzzed_track_calls(target: Target, raw: bytes, wire: Wire) -> None:
    _check(target, "track", raw, wire)


@settings(FUZZ, max_examples=30)
@given(message=messages())
def test_fuzzed_messages_of_a_valid_shape_are_all_answered(target: Target, message: Any) -> None:
    """Each message as sent and without its messageId, in one batch with the right key."""
    raw = json.dumps({"batch": [message, {**message, "messageId": None}]}).encode()
    _check(target, "batch", raw, Wire("plain", "right"))
