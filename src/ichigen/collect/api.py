"""The Segment-compatible tracking API (``/v1/*``) and the JSON API of sources and events."""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ichigen.auth.permissions import require
from ichigen.collect import imports, service
from ichigen.collect.ingest import Collector, StoreUnavailable
from ichigen.collect.messages import (
    MESSAGE_TYPES,
    Envelope,
    Limits,
    WireBatch,
    decode_batch,
    normalise,
    normalise_raw,
    summarise,
)
from ichigen.collect.schemas import (
    DailyCount,
    DebugEntryRead,
    EventImportResult,
    EventPageRead,
    FailedEventRead,
    ImportFormat,
    KeyRotation,
    ReplayRequest,
    ReplayResult,
    SourceCreate,
    SourceCreated,
    SourceRead,
    SourceUpdate,
)
from ichigen.collect.store import EventFilter, FailedRow
from ichigen.core.clock import utcnow
from ichigen.core.errors import BadRequest, FieldError, IchigenError
from ichigen.core.query import Sort, decode_cursor, encode_cursor
from ichigen.core.schemas import MAX_RECORD_ID, RecordId
from ichigen.core.settings import Settings
from ichigen.web.deps import ApiActor, AppSettings, DbSession, IfMatch, etag
from ichigen.web.problems import PROBLEM, PROBLEM_RESPONSES


@dataclass
class CollectState:
    """The collector of this process and what the tracking endpoints need around it."""

    collector: Collector
    keys: service.WriteKeyCache
    limits: Limits


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_message_bytes=settings.collect_max_message_bytes,
        max_batch_bytes=settings.collect_max_batch_bytes,
        max_batch_messages=settings.collect_max_batch_messages,
    )


# ----------------------------------------------------------------------------- /v1 tracking

tracking_router = APIRouter(prefix="/v1", tags=["tracking (Segment-compatible)"])

_TRACKING_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    "responses": {
        "200": {
            "description": "Stored (durable); invalid messages of a batch are listed in "
            "`rejected` and kept as failed events.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "400": {"description": "Malformed, oversized or invalid.", "content": {PROBLEM: {}}},
        "401": {
            "description": "Unknown, rotated-out or disabled write key.",
            "content": {PROBLEM: {}},
        },
        "429": {
            "description": "The source's rate limit; see Retry-After.",
            "content": {PROBLEM: {}},
        },
        "503": {"description": "The event store is unavailable; retry.", "content": {PROBLEM: {}}},
    },
}


def _problem(
    status_code: int,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"https://ichigen.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status_code,
        "detail": detail,
        "success": False,
    }
    if errors:
        body["errors"] = errors
    return Response(orjson.dumps(body), status_code, headers=headers, media_type=PROBLEM)


def _write_key(request: Request, payload: dict[str, Any]) -> str | None:
    """The write key from Basic auth, ``X-Write-Key``, the body or the query string."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            return decoded.partition(":")[0] or None
    header = request.headers.get("x-write-key")
    if header:
        return header
    in_body = payload.get("writeKey")
    if isinstance(in_body, str) and in_body:
        return in_body
    return request.query_params.get("writeKey") or None


def _gunzip(body: bytes, limit: int) -> bytes | None:
    """The decompressed body, or None when it is not a valid gzip stream; stops past ``limit``."""
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = inflater.decompress(body, limit + 1)
        if not inflater.eof and len(out) <= limit:
            return None
        return out
    except zlib.error:
        return None


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, but no more than ``limit + 1`` bytes of it (enough to know it is too big)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


async def ingest(request: Request, forced_type: str | None) -> Response:
    """Validate, de-duplicate and store the messages of one tracking request."""
    state: CollectState | None = getattr(request.app.state, "collect", None)
    if state is None:
        return _problem(503, "Collector off", "Event collection is not enabled in this process.")
    metrics = state.collector.metrics
    limits = state.limits
    batch = forced_type is None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in ("application/json", "text/plain"):
        metrics.rejected.labels("content-type").inc()
        return _problem(
            400,
            "Unsupported content type",
            f"Send JSON with Content-Type application/json, not {content_type!r}.",
        )
    limit = limits.max_batch_bytes if batch else limits.max_message_bytes + 1024
    body = await _read_body(request, limit)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        inflated = _gunzip(body, limit)
        if inflated is None:
            metrics.rejected.labels("gzip").inc()
            return _problem(400, "Bad gzip", "The body is not a valid gzip stream.")
        body = inflated
    elif encoding not in ("", "identity"):
        metrics.rejected.labels("content-encoding").inc()
        return _problem(400, "Unsupported encoding", f"Content-Encoding {encoding!r} is not gzip.")
    if len(body) > limit:
        metrics.rejected.labels("too-large").inc()
        what = "batch" if batch else "message"
        return _problem(
            400,
            "Payload too large",
            f"The {what} is larger than {limit} bytes.",
            [{"loc": ["body"], "msg": f"at most {limit} bytes"}],
        )
    wire: WireBatch | None = None
    if batch:
        try:
            wire = decode_batch(body)
        except (msgspec.DecodeError, RecursionError):
            wire = None  # read again below, for a precise error or the slower checks
    if wire is not None:
        payload: dict[str, Any] = {"writeKey": wire.writeKey}
    else:
        try:
            loaded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            metrics.rejected.labels("malformed-json").inc()
            return _problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}.")
        if not isinstance(loaded, dict):
            metrics.rejected.labels("malformed-json").inc()
            return _problem(400, "Malformed JSON", "The body must be a JSON object.")
        payload = loaded
    key = _write_key(request, payload)
    if key is None:
        metrics.rejected.labels("no-key").inc()
        return _problem(
            401,
            "Unauthorized",
            "Send the source's write key as the HTTP Basic user name, in X-Write-Key, or as "
            "writeKey in the body or the query string.",
            headers={"WWW-Authenticate": 'Basic realm="ichigen"'},
        )
    auth = state.keys.lookup(key)
    received_at = utcnow()
    refusal = service.key_problem(auth, received_at)
    if refusal is not None or auth is None:
        metrics.rejected.labels("bad-key").inc()
        return _problem(
            401,
            "Unauthorized",
            refusal or "The write key is not valid.",
            headers={"WWW-Authenticate": 'Basic realm="ichigen"'},
        )
    envelope = Envelope(source_id=auth.source_id, received_at=received_at)
    messages: list[Any]
    if batch:
        if wire is not None:
            messages = [bytes(raw) for raw in wire.batch]
            parts: dict[str, Any] = {"sentAt": wire.sentAt}
            try:
                for part in ("context", "integrations"):
                    # Read as the messages' own objects are, so numbers mean the same.
                    parts[part] = orjson.loads(bytes(getattr(wire, part)))
            except orjson.JSONDecodeError as exc:
                metrics.rejected.labels("malformed-json").inc()
                return _problem(400, "Malformed JSON", f"The batch's {part} is not valid: {exc}.")
        else:
            found = payload.get("batch")
            if not isinstance(found, list):
                metrics.rejected.labels("invalid").inc()
                return _problem(
                    400,
                    "Invalid batch",
                    "A batch needs a `batch` array of messages.",
                    [{"loc": ["batch"], "msg": "must be an array"}],
                )
            messages = found
            parts = payload
        if not messages:
            metrics.rejected.labels("invalid").inc()
            return _problem(
                400, "Invalid batch", "The batch is empty.", [{"loc": ["batch"], "msg": "empty"}]
            )
        if len(messages) > limits.max_batch_messages:
            metrics.rejected.labels("too-large").inc()
            return _problem(
                400,
                "Payload too large",
                f"The batch has {len(messages)} messages; at most "
                f"{limits.max_batch_messages} are allowed.",
                [{"loc": ["batch"], "msg": f"at most {limits.max_batch_messages} messages"}],
            )
        for part in ("context", "integrations"):
            value = parts.get(part)
            if value is not None and not isinstance(value, dict):
                metrics.rejected.labels("invalid").inc()
                return _problem(
                    400,
                    "Invalid batch",
                    f"The batch's {part} must be a JSON object.",
                    [{"loc": [part], "msg": "must be a JSON object"}],
                )
        envelope.context = parts.get("context") or None
        envelope.integrations = parts.get("integrations") or None
        envelope.sent_at = parts.get("sentAt")
    else:
        payload.pop("writeKey", None)
        # The endpoint names the type: keep it with the message, so that a failed message
        # replayed later (from the failed events) is read as the same call.
        payload["type"] = forced_type
        messages = [payload]
    wait = state.collector.rates.admit(auth.source_id, auth.rate_limit_per_second, len(messages))
    if wait is not None:
        metrics.rejected.labels("rate-limited").inc()
        return _problem(
            429,
            "Too many requests",
            f"This source may send {auth.rate_limit_per_second} messages a second.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    metrics.received.inc(len(messages))
    metrics.batch_size.observe(len(messages))
    rows = []
    failed: list[FailedRow] = []
    rejected: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for index, message in enumerate(messages):
        if isinstance(message, bytes):
            row, problems, decoded = normalise_raw(message, envelope, limits, forced_type)
        else:
            row, problems = normalise(message, envelope, limits, forced_type)
            decoded = message
        if row is not None:
            rows.append(row)
            reasons.append(None)
            continue
        reason = summarise(problems)
        reasons.append(reason)
        prefix: list[str | int] = ["batch", index] if batch else []
        errors = [{"loc": [*prefix, *p.loc], "msg": p.msg} for p in problems]
        if decoded is None and isinstance(message, bytes):
            decoded = message.decode("utf-8", "replace")
        failed.append(FailedRow(auth.source_id, received_at, reason, errors, decoded))
        rejected.append({"index": index, "reason": reason, "errors": errors})
    if rejected:
        metrics.rejected.labels("invalid").inc(len(rejected))
    try:
        result = await state.collector.write(rows, failed)
    except StoreUnavailable as exc:
        metrics.rejected.labels("store-unavailable").inc(len(messages))
        return _problem(503, "Store unavailable", str(exc), headers={"Retry-After": "1"})
    _record_debug(
        state, auth.source_id, received_at, messages, reasons, rows, result.duplicate_flags
    )
    if not rows:
        errors = [e for r in rejected for e in r["errors"]]
        return _problem(
            400,
            "Invalid message",
            rejected[0]["reason"]
            if len(rejected) == 1
            else f"All {len(rejected)} messages are invalid; they are kept as failed events.",
            errors,
        )
    answer: dict[str, Any] = {"success": True}
    if rejected:
        answer["rejected"] = rejected
    return Response(orjson.dumps(answer), media_type="application/json")


def _record_debug(
    state: CollectState,
    source_id: int,
    received_at: datetime,
    messages: list[Any],
    reasons: list[str | None],
    rows: list[Any],
    duplicates: list[bool],
) -> None:
    """Show the request's messages in the live debugger (only as many as its ring holds)."""
    debugger = state.collector.debugger
    start = max(0, len(messages) - debugger.capacity)
    accepted = iter(zip(rows, duplicates, strict=True))
    outcomes: list[tuple[str, Any, str | None, str | None]] = []
    for offset, (message, reason) in enumerate(zip(messages, reasons, strict=True)):
        if reason is None:
            row, duplicate = next(accepted)
            if offset >= start:
                status = "duplicate" if duplicate else "accepted"
                outcomes.append((status, message, None, row[5]))
        elif offset >= start:
            outcomes.append(("rejected", message, reason, None))
    debugger.record_many(source_id, received_at, outcomes)


#: Tracking paths and the call each one makes (None: a batch).
TRACKING_PATHS: dict[str, str | None] = {
    **{f"/v1/{kind}": kind for kind in MESSAGE_TYPES},
    "/v1/batch": None,
    "/v1/import": None,
}


class TrackingFastLane:
    """Serve the tracking endpoints before the app's router and middleware.

    They are the one hot path (hundreds of requests a second, each a batch); matching them
    against every route and running the request through each middleware cost more than
    checking their messages. The routes stay registered for the API description and for
    the short analytics.js paths.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path in TRACKING_PATHS:
                response = await ingest(Request(scope, receive), TRACKING_PATHS[path])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _tracking_endpoint(kind: str | None, summary: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await ingest(request, kind)

    endpoint.__doc__ = summary
    return endpoint


for _kind in MESSAGE_TYPES:
    tracking_router.add_api_route(
        f"/{_kind}",
        _tracking_endpoint(_kind, f"Send one `{_kind}` message (Segment HTTP Tracking API)."),
        methods=["POST"],
        name=f"tracking_{_kind}",
        openapi_extra=_TRACKING_DOC,
        response_class=Response,
    )
# analytics.js (analytics-next) posts to one-letter paths under its API host.
_SHORT_PATHS: tuple[tuple[str, str | None], ...] = (
    ("i", "identify"),
    ("t", "track"),
    ("p", "page"),
    ("s", "screen"),
    ("g", "group"),
    ("a", "alias"),
    ("b", None),
)
for _short, _short_kind in _SHORT_PATHS:
    tracking_router.add_api_route(
        f"/{_short}",
        _tracking_endpoint(
            _short_kind, f"analytics.js's short path for `{_short_kind or 'batch'}`."
        ),
        methods=["POST"],
        name=f"tracking_short_{_short}",
        include_in_schema=False,
        response_class=Response,
    )
for _path in ("batch", "import"):
    tracking_router.add_api_route(
        f"/{_path}",
        _tracking_endpoint(
            None,
            "Send up to 2,500 messages of any type in `batch`; batch-level `context` and "
            "`integrations` apply to each.",
        ),
        methods=["POST"],
        name=f"tracking_{_path}",
        openapi_extra=_TRACKING_DOC,
        response_class=Response,
    )


# ----------------------------------------------------------------------------- /api/v1

router = APIRouter(tags=["sources and events"], responses=PROBLEM_RESPONSES)


def _state(request: Request) -> CollectState:
    state: CollectState | None = getattr(request.app.state, "collect", None)
    if state is None:
        raise IchigenError(
            "Event collection is not enabled in this process.",
            [],
            503,
            "Collector off",
            "collector-off",
        )
    return state


@router.get("/sources", response_model=list[SourceRead])
def list_sources(session: DbSession, actor: ApiActor) -> list[SourceRead]:
    require(actor, "sources", "read")
    return service.list_sources(session)


@router.post("/sources", response_model=SourceCreated, status_code=status.HTTP_201_CREATED)
def create_source(
    data: SourceCreate, session: DbSession, actor: ApiActor, response: Response
) -> SourceCreated:
    """A new source; `write_key` in the answer is shown only this once."""
    created = service.create_source(session, data, actor)
    response.headers["Location"] = f"/api/v1/sources/{created.id}"
    response.headers["ETag"] = etag(created.version)
    return created


@router.get("/sources/{source_id}", response_model=SourceRead)
def get_source(
    source_id: RecordId, session: DbSession, actor: ApiActor, response: Response
) -> SourceRead:
    require(actor, "sources", "read")
    found = service.get_source(session, source_id)
    response.headers["ETag"] = etag(found.version)
    return found


@router.patch("/sources/{source_id}", response_model=SourceRead)
def update_source(
    source_id: RecordId,
    data: SourceUpdate,
    request: Request,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> SourceRead:
    """Rename, disable or enable, or set the rate limit (messages/s) and retention (days)."""
    updated = service.update_source(session, source_id, data, actor, if_version=version)
    state = getattr(request.app.state, "collect", None)
    if state is not None:
        state.keys.clear()
    response.headers["ETag"] = etag(updated.version)
    return updated


@router.post("/sources/{source_id}/rotate-key", response_model=SourceCreated)
def rotate_key(
    source_id: RecordId,
    data: KeyRotation,
    request: Request,
    session: DbSession,
    actor: ApiActor,
    settings: AppSettings,
) -> SourceCreated:
    """A new write key; the current ones keep working for `grace_hours`, then stop."""
    rotated = service.rotate_key(
        session, source_id, data, actor, default_grace_hours=settings.collect_key_grace_hours
    )
    state = getattr(request.app.state, "collect", None)
    if state is not None:
        state.keys.clear()
    return rotated


@router.get("/sources/{source_id}/debugger", response_model=list[DebugEntryRead])
def debugger(
    source_id: RecordId,
    request: Request,
    session: DbSession,
    actor: ApiActor,
    after: Annotated[int, Query(ge=0, description="Only entries after this `seq`.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DebugEntryRead]:
    """The latest messages of a source as they arrived, newest first, with their outcome."""
    require(actor, "sources", "read")
    service.get_source(session, source_id)
    entries = _state(request).collector.debugger.since(source_id, after, limit)
    return [DebugEntryRead.model_validate(e, from_attributes=True) for e in entries]


# Cursors name their sort; events have one fixed order (newest first), no SQL column spec.
_EVENT_SORT = Sort("timestamp", None, True)  # type: ignore[arg-type]


def _property_filters(raw: list[str]) -> tuple[tuple[str, str], ...]:
    found = []
    for index, item in enumerate(raw):
        key, sep, value = item.partition(":")
        if not sep or not key or len(key) > 200:
            raise BadRequest(
                "A property filter looks like `property=plan:pro` (key, a colon, the value).",
                [FieldError(("query", "property", index), "expected key:value")],
            )
        found.append((key, value))
    return tuple(found)


@router.get("/events", response_model=EventPageRead)
def list_events(
    request: Request,
    actor: ApiActor,
    settings: AppSettings,
    source_id: Annotated[int | None, Query(ge=1, le=MAX_RECORD_ID)] = None,
    type: Annotated[Literal[MESSAGE_TYPES] | None, Query()] = None,  # type: ignore[valid-type]
    event: Annotated[str | None, Query(max_length=1000)] = None,
    user_id: Annotated[str | None, Query(max_length=512)] = None,
    anonymous_id: Annotated[str | None, Query(max_length=512)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    property: Annotated[
        list[str], Query(description="`key:value` on properties; repeat for several.")
    ] = [],  # noqa: B006 - FastAPI copies the default
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> EventPageRead:
    """Stored events newest first. With `user_id` or `anonymous_id`: one person's events."""
    before = None
    if cursor:
        before = decode_cursor(settings.secret_key, _EVENT_SORT, cursor)
    where = EventFilter(
        source_id=source_id,
        type=type,
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        since=since,
        until=until,
        properties=_property_filters(property),
        before=(int(before[0]), before[1]) if before else None,
    )
    items, next_before = service.find_events(_state(request).collector.store, actor, where, limit)
    next_cursor = (
        encode_cursor(settings.secret_key, _EVENT_SORT, next_before[0], next_before[1])
        if next_before
        else None
    )
    return EventPageRead(items=items, next_cursor=next_cursor)


@router.get("/events/counts", response_model=list[DailyCount])
def event_counts(
    request: Request,
    actor: ApiActor,
    since: datetime,
    until: datetime,
    source_id: Annotated[int | None, Query(ge=1, le=MAX_RECORD_ID)] = None,
) -> list[DailyCount]:
    """Events per UTC day and event name (the call type for calls other than track)."""
    return service.daily_counts(_state(request).collector.store, actor, since, until, source_id)


@router.get("/failed-events", response_model=list[FailedEventRead])
def list_failed_events(
    request: Request,
    actor: ApiActor,
    source_id: Annotated[int | None, Query(ge=1, le=MAX_RECORD_ID)] = None,
    status: Literal["failed", "replayed"] | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_RECORD_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[FailedEventRead]:
    """Messages rejected at ingestion with why, newest first."""
    return service.list_failed(
        _state(request).collector.store, actor, source_id, status, limit, before_id
    )


@router.get("/failed-events/{failed_id}", response_model=FailedEventRead)
def get_failed_event(failed_id: RecordId, request: Request, actor: ApiActor) -> FailedEventRead:
    return service.get_failed(_state(request).collector.store, actor, failed_id)


@router.post("/failed-events/{failed_id}/replay", response_model=ReplayResult)
def replay_failed_event(
    failed_id: RecordId, data: ReplayRequest, request: Request, actor: ApiActor
) -> Response:
    """Validate the message again (as stored, or as corrected in `message`) and store it.

    Answers 422 with the problems when it is still invalid; nothing is stored then.
    """
    state = _state(request)
    _, outcome = service.replay_failed(
        state.collector, actor, failed_id, data.message, state.limits
    )
    return JSONResponse(
        outcome.model_dump(), status_code=422 if outcome.status == "rejected" else 200
    )


# ----------------------------------------------------------------------------- file imports


@router.post("/events/imports", response_model=EventImportResult)
def import_event_file(
    request: Request,
    session: DbSession,
    actor: ApiActor,
    file: Annotated[
        UploadFile,
        File(description="CSV, NDJSON or Parquet; CSV and NDJSON may be gzipped."),
    ],
    source_id: Annotated[
        int, Form(ge=1, le=MAX_RECORD_ID, description="The source the events come from.")
    ],
    mapping: Annotated[
        str | None,
        Form(
            max_length=50_000,
            description='An `EventMapping` as JSON, e.g. {"type": "track", "event": "Order '
            'Completed", "fields": {"userId": "customer_id", "properties.revenue": "total"}}; '
            "without one, NDJSON and Parquet rows are taken as Segment messages.",
        ),
    ] = None,
    format: Annotated[
        ImportFormat | None, Form(description="Taken from the file name when omitted.")
    ] = None,
    dry_run: Annotated[bool, Form(description="Check every row; store nothing.")] = False,
    keep_failed: Annotated[
        bool, Form(description="Also keep rejected rows as failed events, to replay.")
    ] = False,
) -> EventImportResult:
    """Import events from a file: each row becomes a Segment message of the source, validated
    as the tracking API validates. Rows that fail are listed by row number, field and column;
    the others are stored. A row without a mapped `messageId` gets one derived from its
    content, so importing the same file again stores nothing new. A file or mapping that is
    wrong as a whole is refused with nothing stored."""
    require(actor, "events", "write")
    source = service.get_source(session, source_id)
    chosen = imports.detect_format(file.filename, format)
    parsed = imports.parse_mapping(mapping)
    state = _state(request)
    try:
        return imports.import_events(
            file.file,
            source=source,
            actor=actor,
            collector=state.collector,
            file_format=chosen,
            mapping=parsed,
            limits=state.limits,
            dry_run=dry_run,
            keep_failed=keep_failed,
            file_name=file.filename,
        )
    except StoreUnavailable as exc:
        # Chunks written before the failure stay; importing the file again skips them.
        raise IchigenError(
            f"{exc}; import the file again once the store is back (rows already stored are "
            "skipped).",
            [],
            503,
            "Store unavailable",
            "store-unavailable",
        ) from None
