"""Sources and write keys, reading stored and failed events, and replaying failed ones."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ichigen.auth.permissions import require
from ichigen.collect.ingest import Collector, StoreUnavailable
from ichigen.collect.messages import Envelope, Limits, normalise
from ichigen.collect.models import Source, SourceWriteKey
from ichigen.collect.schemas import (
    DailyCount,
    EventRead,
    FailedEventRead,
    KeyRotation,
    ReplayResult,
    SourceAuth,
    SourceCreate,
    SourceCreated,
    SourceRead,
    SourceUpdate,
    WriteKeyRead,
)
from ichigen.collect.store import EventFilter, EventStore
from ichigen.core.audit import Actor, diff, record_change
from ichigen.core.clock import utcnow
from ichigen.core.errors import (
    Conflict,
    FieldError,
    IchigenError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)

WRITE_KEY_PREFIX = "wk_"
MAX_PAGE = 1000


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _new_key(session: Session, source_id: int) -> str:
    key = WRITE_KEY_PREFIX + secrets.token_urlsafe(24)
    session.add(
        SourceWriteKey(
            source_id=source_id,
            prefix=key[:10],
            key_hash=_sha256(key),
            created_at=utcnow(),
            expires_at=None,
        )
    )
    return key


def _read(session: Session, row: Source) -> SourceRead:
    keys = session.scalars(
        select(SourceWriteKey)
        .where(SourceWriteKey.source_id == row.id)
        .order_by(SourceWriteKey.id.desc())
    )
    now = utcnow()
    live = [
        WriteKeyRead.model_validate(k) for k in keys if k.expires_at is None or k.expires_at > now
    ]
    return SourceRead.model_validate(row).model_copy(update={"keys": live})


def _snapshot(row: Source) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "enabled": row.enabled,
        "rate_limit_per_second": row.rate_limit_per_second,
        "retention_days": row.retention_days,
    }


def _check_name(session: Session, name: str, source_id: int | None = None) -> None:
    found = session.scalar(select(Source.id).where(Source.name == name))
    if found is not None and found != source_id:
        raise Conflict(
            f"A source named {name!r} already exists.", [FieldError(("name",), "already in use")]
        )


def create_source(session: Session, data: SourceCreate, actor: Actor) -> SourceCreated:
    """A new source and its first write key (returned once, stored only as a hash)."""
    require(actor, "sources", "write")
    _check_name(session, data.name)
    now = utcnow()
    row = Source(
        name=data.name,
        kind=data.kind,
        enabled=True,
        rate_limit_per_second=data.rate_limit_per_second,
        retention_days=data.retention_days,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    key = _new_key(session, row.id)
    record_change(
        session,
        actor,
        "sources",
        row.id,
        "create",
        diff({}, _snapshot(row)) | {"key": [None, key[:10]]},
    )
    session.commit()
    return SourceCreated(**_read(session, row).model_dump(), write_key=key)


def get_source(session: Session, source_id: int) -> SourceRead:
    row = session.get(Source, source_id)
    if row is None:
        raise NotFound(f"Source {source_id} does not exist.")
    return _read(session, row)


def find_source(session: Session, name: str) -> SourceRead:
    row = session.scalar(select(Source).where(Source.name == name))
    if row is None:
        raise NotFound(f"There is no source named {name!r}.")
    return _read(session, row)


def list_sources(session: Session) -> list[SourceRead]:
    return [_read(session, r) for r in session.scalars(select(Source).order_by(Source.name))]


def update_source(
    session: Session,
    source_id: int,
    data: SourceUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> SourceRead:
    """Rename, disable or enable a source, or change its rate limit and retention."""
    require(actor, "sources", "write")
    row = session.get(Source, source_id)
    if row is None:
        raise NotFound(f"Source {source_id} does not exist.")
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"Source {source_id} was changed by someone else; reload it and try again."
        )
    before = _snapshot(row)
    fields = data.model_fields_set
    if data.name is not None and "name" in fields:
        _check_name(session, data.name, source_id)
        row.name = data.name
    if data.kind is not None:
        row.kind = data.kind
    if data.enabled is not None:
        row.enabled = data.enabled
    if "rate_limit_per_second" in fields:
        row.rate_limit_per_second = data.rate_limit_per_second
    if "retention_days" in fields:
        row.retention_days = data.retention_days
    delta = diff(before, _snapshot(row))
    if delta:
        row.version += 1
        row.updated_at = utcnow()
        record_change(session, actor, "sources", row.id, "update", delta)
    session.commit()
    return _read(session, row)


def rotate_key(
    session: Session,
    source_id: int,
    data: KeyRotation,
    actor: Actor,
    *,
    default_grace_hours: int,
) -> SourceCreated:
    """A new write key; the current ones keep working for the grace period, then expire."""
    require(actor, "sources", "write")
    row = session.get(Source, source_id)
    if row is None:
        raise NotFound(f"Source {source_id} does not exist.")
    grace = default_grace_hours if data.grace_hours is None else data.grace_hours
    now = utcnow()
    expires = now + timedelta(hours=grace)
    for key_row in session.scalars(
        select(SourceWriteKey).where(SourceWriteKey.source_id == source_id)
    ):
        if key_row.expires_at is None or key_row.expires_at > expires:
            key_row.expires_at = expires
    key = _new_key(session, source_id)
    row.version += 1
    row.updated_at = now
    record_change(
        session,
        actor,
        "sources",
        row.id,
        "rotate_key",
        {"key": [None, key[:10]], "old_keys_expire": [None, expires.isoformat()]},
    )
    session.commit()
    return SourceCreated(**_read(session, row).model_dump(), write_key=key)


def source_for_key(session: Session, key: str) -> SourceAuth | None:
    """The source a write key belongs to (even a disabled or expired one), or None."""
    if not key or len(key) > 200:
        return None
    found = session.execute(
        select(Source.id, Source.enabled, Source.rate_limit_per_second, SourceWriteKey.expires_at)
        .join(SourceWriteKey, SourceWriteKey.source_id == Source.id)
        .where(SourceWriteKey.key_hash == _sha256(key))
    ).first()
    if found is None:
        return None
    return SourceAuth(
        source_id=found[0],
        enabled=found[1],
        rate_limit_per_second=found[2],
        expires_at=found[3],
    )


def retention_by_source(session: Session) -> dict[int, int]:
    """Each source that keeps events for a limited number of days, and how many."""
    return {
        source_id: days
        for source_id, days in session.execute(
            select(Source.id, Source.retention_days).where(Source.retention_days.is_not(None))
        )
        if days
    }


class WriteKeyCache:
    """Write keys resolved recently, so a busy source costs no database query per request.

    Entries live ``ttl`` seconds, so a disabled source or an expired key stops working within
    that time in every process; a change made in this process drops the cache at once.
    """

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._entries: dict[str, tuple[float, SourceAuth | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, key: str) -> SourceAuth | None:
        now = time.monotonic()
        found = self._entries.get(key)
        if found is not None and found[0] > now:
            return found[1]
        with self._sessions() as session:
            auth = source_for_key(session, key)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (now + self._ttl, auth)
        return auth

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def key_problem(auth: SourceAuth | None, now: datetime) -> str | None:
    """Why a write key may not send events now, or None when it may."""
    if auth is None:
        return "The write key is not valid."
    if not auth.enabled:
        return "The source of this write key is disabled."
    if auth.expires_at is not None and auth.expires_at <= now:
        return "This write key was rotated and has expired; use the source's new key."
    return None


# ----------------------------------------------------------------------------- events


def find_events(
    store: EventStore, actor: Actor, where: EventFilter, limit: int
) -> tuple[list[EventRead], tuple[int, int] | None]:
    """Stored events newest first, and the keyset position of the next page (if any)."""
    require(actor, "events", "read")
    page = store.find(where, min(max(limit, 1), MAX_PAGE))
    return [EventRead.model_validate(e) for e in page.events], page.next_before


def daily_counts(
    store: EventStore, actor: Actor, since: datetime, until: datetime, source_id: int | None
) -> list[DailyCount]:
    require(actor, "events", "read")
    if until <= since:
        raise ValidationFailed(
            "The end of the period must be after its start.",
            [FieldError(("query", "until"), "must be after since")],
        )
    return [
        DailyCount(day=day, name=name, count=count)
        for day, name, count in store.daily_counts(since, until, source_id)
    ]


def list_failed(
    store: EventStore,
    actor: Actor,
    source_id: int | None,
    status: str | None,
    limit: int,
    before_id: int | None,
) -> list[FailedEventRead]:
    require(actor, "events", "read")
    rows = store.failed(source_id, status, min(max(limit, 1), MAX_PAGE), before_id)
    return [FailedEventRead.model_validate(r) for r in rows]


def get_failed(store: EventStore, actor: Actor, failed_id: int) -> FailedEventRead:
    require(actor, "events", "read")
    row = store.failed_one(failed_id)
    if row is None:
        raise NotFound(f"Failed event {failed_id} does not exist.")
    return FailedEventRead.model_validate(row)


def replay_failed(
    collector: Collector,
    actor: Actor,
    failed_id: int,
    corrected: dict[str, Any] | None,
    limits: Limits,
) -> tuple[FailedEventRead, ReplayResult]:
    """Check a failed message again (as stored, or as corrected) and store it when valid.

    Returns the failed event and what became of it; a still-invalid message is ``rejected``
    with its problems, and nothing is stored then.
    """
    require(actor, "events", "write")
    failed = get_failed(collector.store, actor, failed_id)
    if failed.status == "replayed":
        raise Conflict(
            f"Failed event {failed_id} was already replayed as message "
            f"{failed.replayed_message_id}."
        )
    message = corrected if corrected is not None else failed.payload
    envelope = Envelope(source_id=failed.source_id, received_at=utcnow())
    row, problems = normalise(message, envelope, limits)
    if row is None:
        return failed, ReplayResult(status="rejected", problems=[p.as_dict() for p in problems])
    try:
        written = collector.write_sync([row], [])
    except StoreUnavailable as exc:
        raise IchigenError(str(exc), [], 503, "Store unavailable", "store-unavailable") from exc
    message_id = str(row[5])
    collector.store.mark_replayed(failed.id, message_id, utcnow())
    outcome: Literal["accepted", "duplicate"] = "duplicate" if written.duplicates else "accepted"
    return failed, ReplayResult(status=outcome, message_id=message_id)
