"""The fast check of raw messages agrees with the full one on every message (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ichigen.collect.messages import Envelope, Limits, normalise, normalise_raw

RECEIVED = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
JSON_COLUMNS = range(16, 21)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
times = st.one_of(
    st.none(),
    st.just("2026-11-22T09:59:58.123Z"),
    st.just("2026-11-22T18:59:58+09:00"),
    st.just("not a time"),
    st.just("2026-11-22T09:59:59"),
    st.integers(0, 10),
)
ids = st.one_of(st.none(), st.text(max_size=8), st.integers(-5, 2**66), st.just(""), values)
objects = st.one_of(st.none(), st.dictionaries(st.text(max_size=6), values, max_size=4), values)
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "x"]),
            values,
        ),
        "userId": ids,
        "anonymousId": ids,
        "messageId": ids,
        "event": st.one_of(st.text(max_size=8), values),
        "name": st.one_of(st.text(max_size=8), values),
        "category": st.one_of(st.text(max_size=8), values),
        "groupId": ids,
        "previousId": ids,
        "timestamp": times,
        "originalTimestamp": times,
        "sentAt": times,
        "properties": objects,
        "traits": objects,
        "context": st.one_of(
            objects,
            st.just({"traits": {"plan": "pro"}, "ip": "203.0.113.1"}),
            st.just({"consent": {"categoryPreferences": {"Ads": False}}}),
        ),
        "integrations": objects,
    },
)


def comparable(row: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """A row with JSON columns parsed, and generated message ids and keys left out."""
    if row is None:
        return None
    out = list(row)
    for index in JSON_COLUMNS:
        if out[index] is not None:
            out[index] = orjson.loads(out[index])
    out[5] = out[6] = None
    return tuple(out)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(message=messages, batch_sent_at=times, forced=st.sampled_from([None, "track"]))
def test_fast_and_full_checks_agree(
    message: dict[str, Any], batch_sent_at: Any, forced: str | None
) -> None:
    raw = json.dumps(message).encode()  # the standard library writes any integer
    limits = Limits()
    fast, fast_problems, _ = normalise_raw(
        raw, Envelope(1, RECEIVED, sent_at=batch_sent_at), limits, forced
    )
    full, full_problems = normalise(
        orjson.loads(raw), Envelope(1, RECEIVED, sent_at=batch_sent_at), limits, forced
    )
    assert (fast is None) == (full is None), (fast_problems, full_problems)
    assert comparable(fast) == comparable(full)
    given_id = message.get("messageId")
    if fast is not None and full is not None and isinstance(given_id, str) and given_id:
        assert fast[5] == full[5] == given_id and fast[6] == full[6]
