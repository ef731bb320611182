"""Validation and normalisation of Segment-spec messages: the hot path of ingestion.

Plain Python over the decoded JSON, no per-message model objects: a batch of 100 messages
is checked in well under a millisecond. Each valid message becomes one ``EventRow`` tuple in
the event store's column order; each invalid one a list of problems with a field path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import orjson
import xxhash

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
    #: ``sent_at`` parsed, once per batch (the fast path's; unset until needed)
    parsed_sent_at: datetime | None = None


def message_hash(source_id: int, message_id: str) -> int:
    """A stable 64-bit key of (source, messageId) for de-duplication (XXH3, signed)."""
    key = xxhash.xxh3_64_intdigest(message_id.encode(), source_id)
    return key - (1 << 64) if key >= 1 << 63 else key


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


# ----------------------------------------------------------------------------- the fast path

_NULL = msgspec.Raw(b"null")


class _Wire(msgspec.Struct):
    """A message as sent, decoded without building its nested objects."""

    type: Any = None
    userId: Any = None
    anonymousId: Any = None
    messageId: Any = None
    event: Any = None
    name: Any = None
    category: Any = None
    groupId: Any = None
    previousId: Any = None
    timestamp: Any = None
    originalTimestamp: Any = None
    sentAt: Any = msgspec.UNSET
    properties: msgspec.Raw = _NULL
    traits: msgspec.Raw = _NULL
    context: msgspec.Raw = _NULL
    integrations: msgspec.Raw = _NULL


class WireBatch(msgspec.Struct):
    """A batch body as sent: its messages stay raw JSON until each is checked."""

    batch: list[msgspec.Raw]
    context: msgspec.Raw = _NULL
    integrations: msgspec.Raw = _NULL
    sentAt: Any = None
    writeKey: Any = None


_decode_message = msgspec.json.Decoder(_Wire).decode
decode_batch = msgspec.json.Decoder(WireBatch).decode


def _fast_id(value: Any, limit: int = MAX_ID_CHARS) -> str | Literal[False] | None:
    """An identifier as text (None when absent or empty), or False when it is not valid."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        if len(value) > limit:
            return False
        return value or None
    if kind is int and not -(1 << 63) <= value < 1 << 64:
        return False  # read as a float by the full check, as JSON readers commonly do
    if kind is int or kind is float:
        text = str(value)
        return text if len(text) <= limit else False
    return False


def _fast_object(raw: msgspec.Raw) -> bytes | Literal[False] | None:
    """An object's JSON text (None when null or empty), or False when it is not an object."""
    data = bytes(raw)
    if data == b"null":
        return None
    if data[:1] != b"{":
        return False
    if len(data) < 8 and data.replace(b" ", b"") == b"{}":
        return None
    return data


def normalise_raw(
    raw: bytes, envelope: Envelope, limits: Limits, forced_type: str | None = None
) -> tuple[EventRow | None, list[Problem], Any]:
    """``normalise`` for a message still in JSON: the row, the problems, and the decoded
    message when it had to be decoded (None otherwise).

    Well-formed messages — nearly all of them — are checked straight from the JSON, their
    objects kept as the client sent them; anything unusual (a problem, a merge of context or
    traits, consent, an escaped surrogate) goes through ``normalise``, which has the last
    word and the error messages.
    """
    row = _fast_row(raw, envelope, limits, forced_type)
    if row is not None:
        return row, [], None
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, [Problem((), f"the message is not valid JSON: {exc}")], None
    if forced_type is not None and isinstance(message, dict):
        message.pop("writeKey", None)
        # The endpoint names the type: keep it with the message, so that a failed message
        # replayed later (from the failed events) is read as the same call.
        message["type"] = forced_type
    made, problems = normalise(message, envelope, limits, forced_type)
    return made, problems, message


def _fast_row(
    raw: bytes, envelope: Envelope, limits: Limits, forced_type: str | None
) -> EventRow | None:
    if len(raw) > limits.max_message_bytes:
        return None
    # Escaped surrogates need the full check; most messages have no escape at all, and one
    # byte is found far faster than two three-byte strings.
    if b"\\" in raw and (b"\\ud" in raw or b"\\uD" in raw):
        return None
    if envelope.context or envelope.integrations:
        return None
    try:
        message = _decode_message(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    kind = forced_type or message.type
    if type(kind) is not str or kind not in _TYPES:
        return None
    user_id = _fast_id(message.userId)
    anonymous_id = _fast_id(message.anonymousId)
    if user_id is False or anonymous_id is False or (user_id is None and anonymous_id is None):
        return None
    message_id = _fast_id(message.messageId, MAX_MESSAGE_ID_CHARS)
    if message_id is False:
        return None
    event = name = category = group_id = previous_id = None
    if kind == "track":
        event = message.event
        if type(event) is not str or not event or len(event) > MAX_NAME_CHARS:
            return None
    elif kind == "page" or kind == "screen":
        name, category = message.name, message.category
        for text in (name, category):
            if text is not None and (type(text) is not str or len(text) > MAX_NAME_CHARS):
                return None
    elif kind == "group":
        group_id = _fast_id(message.groupId)
        if not group_id:
            return None
    elif kind == "alias":
        previous_id = _fast_id(message.previousId)
        if not previous_id:
            return None
    properties = _fast_object(message.properties)
    traits = _fast_object(message.traits)
    context = _fast_object(message.context)
    integrations = _fast_object(message.integrations)
    if properties is False or traits is False or context is False or integrations is False:
        return None
    if context is not None and (b'"traits"' in context or b'"consent' in context):
        return None
    try:
        client_time = None if message.timestamp is None else parse_time(message.timestamp)
        original = (
            None if message.originalTimestamp is None else parse_time(message.originalTimestamp)
        )
        sent = message.sentAt
        if sent is msgspec.UNSET:
            if envelope.sent_at is None:
                sent_at = None
            else:
                if envelope.parsed_sent_at is None:
                    envelope.parsed_sent_at = parse_time(envelope.sent_at)
                sent_at = envelope.parsed_sent_at
        else:
            sent_at = None if sent is None else parse_time(sent)
        received_at = envelope.received_at
        happened = original or client_time
        if happened is None:
            timestamp = received_at
        elif sent_at is not None:
            timestamp = received_at - (sent_at - happened)
        else:
            timestamp = happened
    except (ValueError, OverflowError):
        return None
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
        properties,
        traits,
        context,
        integrations,
        None,
    )
