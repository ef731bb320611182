"""Validation and normalisation of Segment-spec messages: the hot path of ingestion.

Plain Python over the decoded JSON, no per-message model objects: a batch of 100 messages
is checked in well under a millisecond. Each valid message becomes one ``EventRow`` tuple in
the event store's column order; each invalid one a list of problems with a field path.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_TYPES = frozenset(MESSAGE_TYPES)
MAX_ID_CHARS = 512
MAX_MESSAGE_ID_CHARS = 100
MAX_NAME_CHARS = 1000

#: The event store's columns that ingestion fills, in order (see ``store.EVENT_SCHEMA``).
EVENT_COLUMNS = (
    "source_id",
    "type",
    "event",
    "name",
    "category",
    "message_id",
    "message_hash",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
    "person_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "properties",
    "traits",
    "context",
    "integrations",
    "consent",
)

EventRow = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one message; ``loc`` is the path to the field."""

    loc: tuple[str | int, ...]
    msg: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg}


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_messages: int = 2500


@dataclass(slots=True)
class Envelope:
    """What a batch applies to every message in it."""

    source_id: int
    received_at: datetime
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: Any = None


def message_hash(source_id: int, message_id: str) -> int:
    """A stable 64-bit key of (source, messageId) for de-duplication."""
    digest = hashlib.blake2b(f"{source_id}\x00{message_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime; a naive one is taken as UTC.

    Raises ``ValueError`` for anything else (numbers, unparseable strings).
    """
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be an ISO 8601 date-time string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+09:00 is before the first UTC instant
        raise ValueError("is outside the range of dates") from None


def _identifier(
    message: dict[str, Any], key: str, problems: list[Problem], limit: int = MAX_ID_CHARS
) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append(Problem((key,), "must be a string or a number"))
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        problems.append(Problem((key,), f"must be at most {limit} characters"))
        return None
    return text or None


def _object(message: dict[str, Any], key: str, problems: list[Problem]) -> dict[str, Any] | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(Problem((key,), "must be a JSON object"))
        return None
    return value


def _text(message: dict[str, Any], key: str, problems: list[Problem]) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(Problem((key,), "must be a string"))
        return None
    if len(value) > MAX_NAME_CHARS:
        problems.append(Problem((key,), f"must be at most {MAX_NAME_CHARS} characters"))
        return None
    return value


def _time(message: dict[str, Any], key: str, problems: list[Problem]) -> datetime | None:
    value = message.get(key)
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        problems.append(Problem((key,), f"is not an ISO 8601 date-time: {str(value)[:40]!r}"))
        return None


def _json(value: dict[str, Any] | None) -> str | None:
    return orjson.dumps(value).decode() if value else None


def normalise(
    message: Any, envelope: Envelope, limits: Limits, forced_type: str | None = None
) -> tuple[EventRow | None, list[Problem]]:
    """One message as an event row, or the list of what is wrong with it.

    ``forced_type`` is the type of a single-message endpoint (``/v1/track``); in a batch the
    message's own ``type`` decides.
    """
    if not isinstance(message, dict):
        return None, [Problem((), "a message must be a JSON object")]
    problems: list[Problem] = []
    size = len(orjson.dumps(message))
    if size > limits.max_message_bytes:
        return None, [
            Problem((), f"the message is {size} bytes; at most {limits.max_message_bytes} allowed")
        ]
    kind = forced_type or message.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:  # a list or object is not hashable
        if kind is None:
            problems.append(Problem(("type",), "is required"))
        else:
            problems.append(
                Problem(("type",), f"must be one of {', '.join(MESSAGE_TYPES)}, not {kind!r:.60}")
            )
    user_id = _identifier(message, "userId", problems)
    anonymous_id = _identifier(message, "anonymousId", problems)
    if (
        user_id is None
        and anonymous_id is None
        and not any(p.loc and p.loc[0] in ("userId", "anonymousId") for p in problems)
    ):
        problems.append(Problem(("userId",), "userId or anonymousId is required"))
    message_id = _identifier(message, "messageId", problems, MAX_MESSAGE_ID_CHARS)
    event = name = category = group_id = previous_id = None
    if kind == "track":
        event = _text(message, "event", problems)
        if not event and not any(p.loc == ("event",) for p in problems):
            problems.append(Problem(("event",), "is required for a track call"))
    elif kind in ("page", "screen"):
        name = _text(message, "name", problems)
        category = _text(message, "category", problems)
    elif kind == "group":
        group_id = _identifier(message, "groupId", problems)
        if group_id is None and not any(p.loc == ("groupId",) for p in problems):
            problems.append(Problem(("groupId",), "is required for a group call"))
    elif kind == "alias":
        previous_id = _identifier(message, "previousId", problems)
        if previous_id is None and not any(p.loc == ("previousId",) for p in problems):
            problems.append(Problem(("previousId",), "is required for an alias call"))
    properties = _object(message, "properties", problems)
    traits = _object(message, "traits", problems)
    context = _object(message, "context", problems)
    integrations = _object(message, "integrations", problems)
    client_time = _time(message, "timestamp", problems)
    original = _time(message, "originalTimestamp", problems)
    sent_at = _time(message, "sentAt", problems)
    if sent_at is None and envelope.sent_at is not None and "sentAt" not in message:
        try:
            sent_at = parse_time(envelope.sent_at)
        except ValueError:
            problems.append(Problem(("sentAt",), "the batch's sentAt is not an ISO 8601 time"))
    if context is not None:
        context_traits = context.get("traits")
        if context_traits is not None and not isinstance(context_traits, dict):
            problems.append(Problem(("context", "traits"), "must be a JSON object"))
        elif context_traits:
            traits = {**context_traits, **traits} if traits else dict(context_traits)
    if problems:
        return None, problems

    if envelope.context:
        context = {**envelope.context, **context} if context else envelope.context
    if envelope.integrations:
        integrations = (
            {**envelope.integrations, **integrations} if integrations else envelope.integrations
        )
    received_at = envelope.received_at
    happened = original or client_time
    if happened is None:
        timestamp = received_at
    elif sent_at is not None:
        # The device's clock may be wrong; the gap between the event and its sending is not.
        try:
            timestamp = received_at - (sent_at - happened)
        except OverflowError:
            return None, [
                Problem(("sentAt",), "is too far from the message's time to correct its clock")
            ]
    else:
        timestamp = happened
    consent = None
    if context:
        segment_consent = context.get("consent")
        rudder_consent = context.get("consentManagement")
        if segment_consent or rudder_consent:
            consent = {}
            if segment_consent:
                consent["consent"] = segment_consent
            if rudder_consent:
                consent["consentManagement"] = rudder_consent
    if message_id is None:
        message_id = str(uuid.uuid4())
    return (
        envelope.source_id,
        kind,
        event,
        name,
        category,
        message_id,
        message_hash(envelope.source_id, message_id),
        user_id,
        anonymous_id,
        group_id,
        previous_id,
        None,
        timestamp,
        happened,
        sent_at,
        received_at,
        _json(properties),
        _json(traits),
        _json(context),
        _json(integrations),
        _json(consent),
    ), []


def summarise(problems: list[Problem]) -> str:
    """The problems as one line, for failed-event listings and the debugger."""
    parts = []
    for problem in problems:
        where = ".".join(str(p) for p in problem.loc)
        parts.append(f"{where}: {problem.msg}" if where else problem.msg)
    return "; ".join(parts)
