"""The collector: de-duplication, rate limits, the debugger's ring and the group-commit writer.

Requests validate their messages on the event loop, reserve their message ids in the
de-duplication set, and hand the rows to one writer thread. The writer takes everything
that is waiting, writes it in one transaction, and only then releases the requests: a 200 is
sent after the commit, so a crash after the answer loses nothing, and a crowd of concurrent
requests costs one commit, not one each (group commit).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ichigen.collect.messages import EventRow
from ichigen.collect.store import EventStore, FailedRow, rows_to_arrow
from ichigen.core.clock import utcnow

_HASH = 6  # index of message_hash in an EventRow
log = logging.getLogger(__name__)


class Attribution(Protocol):
    """Fills in the person each event is about, before the events are stored (identity
    resolution, which lives above this package, provides it)."""

    def attribute(self, table: pa.Table) -> pa.Table:
        """The same rows with ``person_id`` set where the identifiers resolve."""
        ...

    def forget(self) -> None:
        """Drop what it remembers of identifiers' persons (an unmerge moved some)."""
        ...


def resolve_persons(attribution: Attribution, table: pa.Table) -> tuple[pa.Table, float, int]:
    """The rows with their persons resolved, the seconds it took, and how many rows are left
    without a person: on a failure all of them, as they came. The events are stored all the
    same (a 200 must not wait on the record store) and counted."""
    started = time.perf_counter()
    try:
        resolved = attribution.attribute(table)
        if resolved.num_rows != table.num_rows:
            raise RuntimeError(
                f"identity resolution returned {resolved.num_rows} of {table.num_rows} rows"
            )
    except Exception:
        log.exception("identity resolution failed; events stored without a person")
        return table, time.perf_counter() - started, table.num_rows
    return resolved, time.perf_counter() - started, 0


class SeenMessages:
    """Message keys already stored: a sorted array loaded at start plus sets of new ones.

    The keys are 64-bit hashes of (source, messageId); a set of a hundred million Python
    strings would not fit, a sorted array of their hashes takes 8 bytes each. New keys go to a
    set; when it is large, a background thread merges it into a new array (the merge of a
    large array takes seconds, which ingestion must not wait for) while lookups consult the
    set being merged as well.

    A lookup first finds the key's block of ``_BLOCK`` keys in a fence (the first key of
    each block, an array a sixteenth the size that stays in the processor's cache), then
    compares the block's keys: two cache lines read per key instead of a binary search's
    twenty-odd scattered reads over hundreds of megabytes. With millions of keys stored it
    is two to three times as fast, and the event loop does it for every batch.
    """

    _BLOCK = 16

    def __init__(self, stored: np.ndarray[Any, np.dtype[np.int64]], fold_at: int = 2_000_000):
        self._base = stored
        self._fence = self._fence_of(stored)
        self._recent: set[int] = set()
        self._folding: set[int] = set()
        self._fold_at = fold_at
        self._lock = threading.Lock()
        self._folder: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._base) + len(self._recent) + len(self._folding)

    @classmethod
    def _fence_of(cls, base: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, Any]:
        return np.ascontiguousarray(base[:: cls._BLOCK])

    def _set_base(self, base: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        """Under the lock: the array and its fence change together."""
        self._fence = self._fence_of(base)
        self._base = base

    def _in_base(self, keys: list[int]) -> list[bool]:
        base = self._base
        if len(base) == 0:
            return [False] * len(keys)
        probe = np.asarray(keys, dtype=np.int64)
        # The block whose first key is the last one not above the key (block 0 for a key
        # below them all: it is not found there either).
        block = np.searchsorted(self._fence, probe, side="right") - 1
        np.maximum(block, 0, out=block)
        at = block[:, None] * self._BLOCK + np.arange(self._BLOCK)
        np.minimum(at, len(base) - 1, out=at)  # the last block may be short
        hits: list[bool] = (base[at] == probe[:, None]).any(axis=1).tolist()
        return hits

    def reserve(self, keys: list[int]) -> list[bool]:
        """Mark ``keys`` as seen; for each, True when it is new (also within ``keys``)."""
        with self._lock:
            in_base = self._in_base(keys)
            fresh: list[bool] = []
            recent = self._recent
            folding = self._folding
            for key, stored in zip(keys, in_base, strict=True):
                if stored or key in recent or key in folding:
                    fresh.append(False)
                else:
                    recent.add(key)
                    fresh.append(True)
            if len(recent) >= self._fold_at and not self._folding:
                self._folding, self._recent = recent, set()
                self._folder = threading.Thread(
                    target=self._fold, name="message-keys-fold", daemon=True
                )
                self._folder.start()
            return fresh

    def release(self, keys: Sequence[int]) -> None:
        """Forget keys whose write failed, so a retry is not taken for a duplicate."""
        self.wait_for_fold()
        with self._lock:
            folded = []
            for key in keys:
                if key in self._recent:
                    self._recent.discard(key)
                else:
                    folded.append(key)
            if folded:  # rare: reserved, then folded into the array before the write failed
                self._set_base(np.setdiff1d(self._base, np.asarray(folded, dtype=np.int64)))

    def _fold(self) -> None:
        added = np.fromiter(self._folding, dtype=np.int64, count=len(self._folding))
        added.sort()
        base = self._base
        merged = np.insert(base, np.searchsorted(base, added), added)
        fence = self._fence_of(merged)
        with self._lock:
            if self._base is not base:  # a release changed the array meanwhile (rare)
                merged = np.union1d(self._base, added)
                fence = self._fence_of(merged)
            self._fence, self._base = fence, merged
            self._folding = set()

    def wait_for_fold(self) -> None:
        """Let a merge in progress finish (for a release, and for tests)."""
        folder = self._folder
        if folder is not None:
            folder.join()


class RateLimiter:
    """A token bucket per source: ``rate`` messages a second, bursts up to one second's worth."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[int, tuple[float, float]] = {}
        self._now = monotonic
        self._lock = threading.Lock()

    def admit(self, source_id: int, rate: int | None, count: int) -> float | None:
        """None when ``count`` messages may pass now; else seconds to wait before retrying."""
        if not rate:
            return None
        now = self._now()
        with self._lock:
            tokens, at = self._buckets.get(source_id, (float(rate), now))
            tokens = min(float(rate), tokens + (now - at) * rate)
            # A batch larger than a second's worth passes when the bucket is full (else an SDK
            # batching 100 messages could never send to a source limited to 10 a second); the
            # bucket goes into debt, so the source still averages its rate.
            if count <= tokens or tokens >= rate:
                self._buckets[source_id] = (tokens - count, now)
                return None
            self._buckets[source_id] = (tokens, now)
            return max(0.001, (min(count, rate) - tokens) / rate)


@dataclass(frozen=True, slots=True)
class DebugEntry:
    """One message as the debugger shows it."""

    seq: int
    received_at: datetime
    status: str  # accepted | duplicate | rejected
    type: str | None
    event: str | None
    message_id: str | None
    reason: str | None
    payload: Any


def _label(value: Any) -> str | None:
    """A field of a message as the debugger's columns show it: a rejected message may hold
    anything there, so numbers become text and lists or objects stay in the payload only."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


class Debugger:
    """The last messages of each source, in memory, for the live debugger.

    Recording is on the ingestion path, so it keeps only a small tuple per message (the
    message possibly still as raw JSON); entries are built when someone reads them.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._rings: dict[int, deque[tuple[Any, ...]]] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._size

    def record(
        self,
        source_id: int,
        received_at: datetime,
        status: str,
        message: Any,
        reason: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """One message (a decoded object, or its raw JSON bytes) and what became of it."""
        self.record_many(source_id, received_at, [(status, message, reason, message_id)])

    def record_many(
        self,
        source_id: int,
        received_at: datetime,
        outcomes: Sequence[tuple[str, Any, str | None, str | None]],
    ) -> None:
        """Several messages of one request: (status, message, reason, assigned message id)."""
        with self._lock:
            ring = self._rings.get(source_id)
            if ring is None:
                ring = self._rings[source_id] = deque(maxlen=self._size)
            seq = self._seq
            for outcome in outcomes[-self._size :]:
                ring.append((next(seq), received_at, *outcome))

    @staticmethod
    def _entry(item: tuple[Any, ...]) -> DebugEntry:
        seq, received_at, status, message, reason, message_id = item
        if isinstance(message, bytes):
            try:
                message = orjson.loads(message)
            except orjson.JSONDecodeError:
                message = message.decode("utf-8", "replace")
        is_dict = isinstance(message, dict)
        return DebugEntry(
            seq=seq,
            received_at=received_at,
            status=status,
            type=_label(message.get("type")) if is_dict else None,
            event=_label(message.get("event") or message.get("name")) if is_dict else None,
            message_id=message_id or (_label(message.get("messageId")) if is_dict else None),
            reason=reason,
            payload=message,
        )

    def since(self, source_id: int, after: int = 0, limit: int = 100) -> list[DebugEntry]:
        """Entries newer than sequence number ``after``, newest first."""
        with self._lock:
            ring = list(self._rings.get(source_id, ()))
        newer = [item for item in reversed(ring) if item[0] > after][:limit]
        return [self._entry(item) for item in newer]


class CollectMetrics:
    """Prometheus metrics of the collector, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "ichigen_collect_messages_received", "Messages received", registry=registry
        )
        self.accepted = Counter(
            "ichigen_collect_messages_accepted", "Messages stored", registry=registry
        )
        self.rejected = Counter(
            "ichigen_collect_messages_rejected",
            "Messages or requests rejected, by reason",
            ["reason"],
            registry=registry,
        )
        self.deduplicated = Counter(
            "ichigen_collect_messages_deduplicated",
            "Messages dropped as repeats of a stored messageId",
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "ichigen_collect_commit_seconds",
            "Time to write and commit one group of messages",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.commit_size = Histogram(
            "ichigen_collect_commit_messages",
            "Messages written per commit",
            registry=registry,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000),
        )
        self.unattributed = Counter(
            "ichigen_collect_messages_unattributed",
            "Messages stored without a person because identity resolution failed",
            registry=registry,
        )
        self.attribution_seconds = Histogram(
            "ichigen_collect_attribution_seconds",
            "Time to resolve the persons of one group of messages",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.unloaded = Gauge(
            "ichigen_collect_messages_unloaded",
            "Acknowledged messages in the event store's ingest log, not yet loaded into the "
            "event store (reads wait for them to load)",
            registry=registry,
        )
        self.unloaded_age = Gauge(
            "ichigen_collect_unloaded_age_seconds",
            "How long the oldest acknowledged message not yet loaded into the event store "
            "has waited",
            registry=registry,
        )
        self.batch_size = Histogram(
            "ichigen_collect_request_messages",
            "Messages per request",
            registry=registry,
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
        )


class _Ticket:
    """The outcome of one queued write, which any number of requests may wait for."""

    __slots__ = ("_callbacks", "_done", "_error", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[BaseException | None], None]] = []

    def finish(self, error: BaseException | None) -> None:
        with self._lock:
            self._error = error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(error)
            except Exception:  # e.g. the request's event loop has closed; the others go on
                log.exception("a write's waiting request could not be told")

    def then(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(error)`` when the write is done (at once if it already is)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self._error)

    def wait(self) -> BaseException | None:
        self._done.wait()
        return self._error


@dataclass(slots=True)
class _Pending:
    #: the new rows, as the request made them (a group's are converted to Arrow together)
    rows: Sequence[EventRow]
    keys: list[int]
    failed: Sequence[FailedRow]
    #: the requests' writes this carries (one, or a group's after attribution)
    tickets: list[_Ticket]
    #: a group's rows already as one Arrow table (after attribution)
    table: pa.Table | None = None


def _group_table(group: Sequence[_Pending]) -> pa.Table | None:
    """A group's new rows as one Arrow table: one conversion for the whole group costs less
    than one per request (most of it is per column, not per row)."""
    tables = [pending.table for pending in group if pending.table is not None]
    rows = [row for pending in group for row in pending.rows]
    if rows:
        tables.append(rows_to_arrow(rows))
    if not tables:
        return None
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


@dataclass
class WriteResult:
    stored: int = 0
    duplicates: int = 0
    duplicate_flags: list[bool] = field(default_factory=list)


class StoreUnavailable(Exception):
    """The event store could not take the write; the client should retry."""


class Collector:
    """Owns the event store's writes for one process."""

    MAX_GROUP = 50_000
    IN_FLIGHT = 2

    def __init__(
        self,
        store: EventStore,
        *,
        metrics: CollectMetrics | None = None,
        debugger_size: int = 200,
        discard: bool = False,
        attribution: Attribution | None = None,
    ) -> None:
        self.store = store
        #: resolves each group's persons before it is written (none: person ids stay empty)
        self.attribution = attribution
        #: benchmarks only: drop accepted messages instead of writing them
        self.discard = discard
        self.metrics = metrics or CollectMetrics(CollectorRegistry())
        self.debugger = Debugger(debugger_size)
        self.rates = RateLimiter()
        self.seen = SeenMessages(store.message_hashes())
        unloaded: Callable[[], tuple[int, float]] | None = getattr(store, "unloaded", None)
        if unloaded is not None:  # a store that loads what it acknowledged later
            self.metrics.unloaded.set_function(lambda: unloaded()[0])
            self.metrics.unloaded_age.set_function(lambda: unloaded()[1])
        #: message keys being written, and the write that carries them
        self._inflight: dict[int, _Ticket] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        #: groups a pipelining store may hold at once: one being committed, one being
        #: received and resolved meanwhile
        self._slots = threading.BoundedSemaphore(self.IN_FLIGHT)
        self._threads: list[threading.Thread] = []
        writes = self._queue
        if attribution is not None:
            # Two stages: a group's persons are resolved while the group before it is being
            # written (the event store writes in its own process, so the two overlap).
            writes = queue.SimpleQueue()
            self._threads.append(
                threading.Thread(
                    target=self._attribute_groups,
                    args=(attribution, self._queue, writes),
                    name="event-attribution",
                    daemon=True,
                )
            )
        self._threads.append(
            threading.Thread(target=self._run, args=(writes,), name="event-writer", daemon=True)
        )
        for thread in self._threads:
            thread.start()
        self._closed = False

    # -------------------------------------------------------------- writing

    def _enqueue(
        self, rows: Sequence[EventRow], failed: Sequence[FailedRow]
    ) -> tuple[WriteResult, list[_Ticket]]:
        """Reserve the rows' message keys, queue the new ones, and say what to wait for.

        A repeat of a message that is still being written waits for that write: answering it
        at once would acknowledge an event that a crash could still lose.
        """
        keys = [row[_HASH] for row in rows]
        own: _Ticket | None = None
        fresh_keys: list[int] = []
        with self._lock:
            fresh_flags = self.seen.reserve(keys)
            fresh = [row for row, new in zip(rows, fresh_flags, strict=True) if new]
            waits: dict[int, _Ticket] = {}
            for key, new in zip(keys, fresh_flags, strict=True):
                ticket = None if new else self._inflight.get(key)
                if ticket is not None:
                    waits[id(ticket)] = ticket
            if not self.discard and (fresh or failed):
                own = _Ticket()
                fresh_keys = [row[_HASH] for row in fresh]
                for key in fresh_keys:
                    self._inflight[key] = own
                waits[id(own)] = own
        if own is not None:
            # Until the write is queued, repeats wait on its ticket.
            self._queue.put(_Pending(fresh, fresh_keys, failed, [own]))
        duplicates = len(rows) - len(fresh)
        if duplicates:
            self.metrics.deduplicated.inc(duplicates)
        result = WriteResult(len(fresh), duplicates, [not new for new in fresh_flags])
        return result, list(waits.values())

    async def write(self, rows: Sequence[EventRow], failed: Sequence[FailedRow]) -> WriteResult:
        """Store new rows and failed messages; returns once they (and any earlier copy of
        them still being written) are durable."""
        result, tickets = self._enqueue(rows, failed)
        if tickets:
            loop = asyncio.get_running_loop()
            if len(tickets) == 1:  # nearly always: the request's own write
                await _future_of(tickets[0], loop)
            else:
                await asyncio.gather(*(_future_of(ticket, loop) for ticket in tickets))
        return result

    def write_sync(self, rows: Sequence[EventRow], failed: Sequence[FailedRow]) -> WriteResult:
        """``write`` for callers outside the event loop (imports, the CLI, replays)."""
        result, tickets = self._enqueue(rows, failed)
        for ticket in tickets:
            error = ticket.wait()
            if error is not None:
                raise StoreUnavailable(str(error)) from error
        return result

    def _take_group(
        self, source: queue.SimpleQueue[_Pending | None]
    ) -> tuple[list[_Pending], bool]:
        """The first waiting write and every other one waiting behind it, up to
        ``MAX_GROUP`` messages; and whether the stop signal came after them."""
        first = source.get()
        if first is None:
            return [], True
        group = [first]
        size = len(first.keys)
        while size < self.MAX_GROUP:
            try:
                more = source.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return group, True
            group.append(more)
            size += len(more.keys)
        return group, False

    def _attribute_groups(
        self,
        attribution: Attribution,
        source: queue.SimpleQueue[_Pending | None],
        writes: queue.SimpleQueue[_Pending | None],
    ) -> None:
        while True:
            group, stop = self._take_group(source)
            if group:
                try:
                    writes.put(self._attributed(attribution, group))
                except Exception:
                    # Its rows could not be converted: each write on its own, so that only
                    # the faulty one goes to the writer as it is (which refuses it).
                    for pending in group:
                        try:
                            writes.put(self._attributed(attribution, [pending]))
                        except Exception:
                            writes.put(pending)
            if stop:
                writes.put(None)
                return

    def _attributed(self, attribution: Attribution, group: list[_Pending]) -> _Pending:
        """The group as one write, its rows converted and their persons resolved."""
        table = _group_table(group)
        if table is not None:
            table = self._attribute(attribution, table)
        return _Pending(
            (),
            [key for pending in group for key in pending.keys],
            [row for pending in group for row in pending.failed],
            [ticket for pending in group for ticket in pending.tickets],
            table,
        )

    def _run(self, source: queue.SimpleQueue[_Pending | None]) -> None:
        submit = getattr(self.store, "submit", None)
        while True:
            if submit is not None:
                # Wait for a free slot before taking the next group, so that the writes
                # arriving meanwhile go together (one commit in the store, not one each).
                self._slots.acquire()
            group, stop = self._take_group(source)
            if group:
                if submit is not None:
                    self._submit_group(submit, group)
                else:
                    self._write_group(group)
            if stop:
                return

    @staticmethod
    def _gather(group: list[_Pending]) -> tuple[pa.Table | None, list[FailedRow], list[int]]:
        failed: list[FailedRow] = []
        keys: list[int] = []
        for pending in group:
            failed.extend(pending.failed)
            keys.extend(pending.keys)
        return _group_table(group), failed, keys

    def _write_group(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            table, failed, keys = self._gather(group)
        except Exception as exc:  # its requests hear it; each write of a group on its own
            if len(group) > 1:
                for pending in group:
                    self._write_group([pending])
                return
            keys = [key for pending in group for key in pending.keys]
            self._finish_group(group, keys, started, StoreUnavailable(f"not written: {exc}"))
            return
        error: BaseException | None = None
        try:
            self.store.append_table(table, failed)
        except Exception as exc:  # every waiting request must hear about it
            error = StoreUnavailable(f"the event store could not write: {exc}")
        self._finish_group(group, keys, started, error)

    def _submit_group(self, submit: Callable[..., Any], group: list[_Pending]) -> None:
        """Send the group to a store that pipelines its writes (a store process) and go on
        with the next; the store's acknowledgement releases the group's requests."""
        started = time.perf_counter()
        try:
            table, failed, keys = self._gather(group)
        except Exception as exc:  # nothing was sent: the group's requests hear it at once
            self._slots.release()
            if len(group) > 1:  # each write on its own: only the one at fault fails
                for pending in group:
                    self._slots.acquire()
                    self._submit_group(submit, [pending])
                return
            keys = [key for pending in group for key in pending.keys]
            self._finish_group(group, keys, started, StoreUnavailable(f"not written: {exc}"))
            return

        def acknowledged(outcome: Any) -> None:
            self._slots.release()
            if outcome.unattributed:
                self.metrics.unattributed.inc(outcome.unattributed)
            if outcome.attribution_seconds:
                self.metrics.attribution_seconds.observe(outcome.attribution_seconds)
            error = outcome.error
            self._finish_group(
                group,
                keys,
                started,
                None
                if error is None
                else StoreUnavailable(f"the event store could not write: {error}"),
            )

        try:
            submit(table, failed, acknowledged)
        except Exception as exc:  # not sent (it could not be encoded): no acknowledgement
            self._slots.release()
            self._finish_group(
                group, keys, started, StoreUnavailable(f"the event store could not write: {exc}")
            )

    def _finish_group(
        self,
        group: list[_Pending],
        keys: list[int],
        started: float,
        error: BaseException | None,
    ) -> None:
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.commit_size.observe(len(keys))
        with self._lock:
            if error is not None:
                # Not stored: a retry must be taken as new, not as a repeat.
                self.seen.release(keys)
            for key in keys:
                self._inflight.pop(key, None)
        if error is None:
            self.metrics.accepted.inc(len(keys))
        for pending in group:
            for ticket in pending.tickets:
                ticket.finish(error)

    def _attribute(self, attribution: Attribution, table: pa.Table) -> pa.Table:
        table, seconds, unattributed = resolve_persons(attribution, table)
        if unattributed:
            self.metrics.unattributed.inc(unattributed)
        self.metrics.attribution_seconds.observe(seconds)
        return table

    def forget_identities(self) -> None:
        """Drop what is remembered of identifiers' persons, wherever persons are resolved
        (after an unmerge in this process)."""
        if self.attribution is not None:
            self.attribution.forget()
        forget = getattr(self.store, "forget_identities", None)
        if forget is not None:
            try:
                forget()
            except Exception:  # the store process notices the merge log within a second
                log.exception("the event store process could not be told to forget")

    # -------------------------------------------------------------- upkeep

    def apply_retention(self, retention: dict[int, int]) -> int:
        """Delete events older than each source's retention (days); returns how many."""
        removed = 0
        now = utcnow()
        for source_id, days in retention.items():
            removed += self.store.delete_older_than(source_id, now - timedelta(days=days))
        return removed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        self.store.close()


class _LoopWakeups:
    """Settles futures of one event loop from other threads, with one wake-up of the loop
    for all that are waiting (a group's acknowledgement releases several requests at once;
    a wake-up each cost the loop a system call and a turn each)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: deque[tuple[asyncio.Future[None], BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def settle(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        with self._lock:
            self._waiting.append((future, error))
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, deque()
            self._scheduled = False
        for future, error in waiting:
            _settle(future, error)


_wakeups: dict[asyncio.AbstractEventLoop, _LoopWakeups] = {}


def _future_of(ticket: _Ticket, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
    """A future of ``loop`` that settles when the ticket's write is done."""
    future: asyncio.Future[None] = loop.create_future()
    wakeups = _wakeups.get(loop)
    if wakeups is None:
        if len(_wakeups) > 16:  # loops of tests that have finished
            for old in [old for old in _wakeups if old.is_closed()]:
                _wakeups.pop(old, None)
        wakeups = _wakeups[loop] = _LoopWakeups(loop)
    ticket.then(lambda error: wakeups.settle(future, error))
    return future


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
