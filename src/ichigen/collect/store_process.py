"""The embedded event store served from a process of its own.

DuckDB runs its work without the GIL, but needs it back between steps; in the server's
process the event loop holds it nearly all the time, and commits there took five times
longer than alone (``bench/ingest.py``). Here the store lives in a child process with its own
interpreter: the server's writer thread only sends each request's rows, already an Arrow
table (Arrow IPC through a pipe), and the child's acknowledgement, which comes after the
commit, releases the waiting requests. Reads go through a second pipe.

Writes are pipelined: the server sends without waiting for the previous acknowledgement; the
child takes every write that has arrived, resolves their persons together (identity
resolution, when the server hands it a way to build one: that work then runs on the child's
interpreter, not on the server's, where it competed with the checking of requests), appends
them to the ingest log as one record and acknowledges each once the record is durable
(``ingest_log.py``), while the next writes arrive. Acknowledgements come back in the order
the writes were sent. A third stage loads the log into DuckDB in large transactions; a read
first has everything acknowledged loaded, so it sees every answered write.

The child stops when the server closes the store, and also when the server dies (its pipes
close), after finishing the commit in hand; so a restarted server finds every acknowledged
event, and the file free once the child has gone.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ichigen.collect.ingest import Attribution, resolve_persons
from ichigen.collect.ingest_log import (
    IngestLog,
    log_directory,
    remove_segments,
    table_bytes,
    table_from_bytes,
)
from ichigen.collect.messages import EventRow
from ichigen.collect.store import (
    DuckDBEventStore,
    EventFilter,
    EventPage,
    EventStore,
    EventStoreBusy,
    FailedRow,
    rows_problem,
    rows_to_arrow,
)
from ichigen.core.settings import Settings

#: How long the child keeps trying to open a store that another process is still closing.
OPEN_WAIT_SECONDS = 15.0
#: At most this many rows in one record of the ingest log (a burst is split into several).
MAX_COMMIT_ROWS = 50_000
#: How long a read waits for the acknowledged events to be loaded before it gives up.
LOAD_WAIT_SECONDS = 60.0
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadPolicy:
    """When the ingest log is loaded into DuckDB: once it holds ``rows`` rows, or once its
    oldest record has waited ``seconds`` (and at once when a read comes)."""

    rows: int = 25_000
    seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What the child says of one write: the error that stopped it (None: committed), and,
    when the child resolved persons, how long that took and how many rows it had to store
    without a person (resolution failed)."""

    error: str | None
    attribution_seconds: float = 0.0
    unattributed: int = 0


class EventStoreError(Exception):
    """The event store process failed to do what was asked (its message says why)."""


def _open(path: str, memory_limit: str, wait: float) -> DuckDBEventStore:
    deadline = time.monotonic() + wait
    while True:
        try:
            return DuckDBEventStore(path, memory_limit=memory_limit)
        except EventStoreBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


#: The outcome of a write the child did not acknowledge (it stopped first).
_STOPPED = WriteOutcome("the event store process stopped")

#: One write as the child holds it: the failed messages, the rows (None: none), and the
#: time spent resolving their persons and the rows left without one.
_Write = tuple[list[FailedRow], "pa.Table | None", float, int]


def _take_all(
    source: queue.SimpleQueue[Any], timeout: float | None = None
) -> tuple[list[Any], bool]:
    """The next item and every other one already waiting; and whether the stop came.
    Nothing, if ``timeout`` seconds pass first."""
    try:
        first = source.get(timeout=timeout)
    except queue.Empty:
        return [], False
    if first is None:
        return [], True
    items = [first]
    while True:
        try:
            more = source.get_nowait()
        except queue.Empty:
            return items, False
        if more is None:
            return items, True
        items.append(more)


def _receive_writes(conn: Connection, into: queue.SimpleQueue[Any]) -> None:
    """Read writes off the pipe as they come (the server does not wait between them)."""
    try:
        while True:
            failed = conn.recv()
            if failed is None:
                break
            data = conn.recv_bytes()
            into.put((failed, table_from_bytes(data), 0.0, 0))
    except (EOFError, OSError):
        pass  # the server has gone
    finally:
        into.put(None)


def _attributed(attribution: Attribution, writes: list[Any]) -> list[Any]:
    """The writes with their persons resolved together (one record-store transaction), each
    with its share of the time and of the rows left without a person."""
    tables = [w[1] for w in writes if w[1] is not None]
    if not tables:
        return writes
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except Exception:  # stored all the same, each write as it came
        log.exception("identity resolution failed; events stored without a person")
        return [(f, t, 0.0, 0 if t is None else t.num_rows) for f, t, _, _ in writes]
    table, seconds, unattributed = resolve_persons(attribution, table)
    # Back into the writes they came from (the rows keep their order), so that each is
    # acknowledged on its own.
    attributed = []
    offset = 0
    for failed, part, _, _ in writes:
        if part is None:
            attributed.append((failed, None, 0.0, 0))
            continue
        rows = part.num_rows
        attributed.append(
            (
                failed,
                table.slice(offset, rows),
                seconds if offset == 0 else 0.0,
                min(rows, max(0, unattributed - offset)),
            )
        )
        offset += rows
    return attributed


class _LoadRequest:
    """A read's request that everything acknowledged so far be in DuckDB before it runs."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: str | None = None


class _Health:
    """What the loading of the ingest log into DuckDB says to the other stages, and what
    the server is shown of it: how many acknowledged messages wait to be loaded and since
    when (``lag``: shared with the server, messages and the oldest's wall-clock time)."""

    def __init__(self, lag: Any = None) -> None:
        #: why the last load failed (new writes are refused until one succeeds)
        self.error: str | None = None
        #: the process is stopping: a failing load is not retried for long
        self.stopping = False
        self._lag = lag
        self._lock = threading.Lock()
        #: (messages, wall-clock time of the first) of the batches the loader holds
        self._loading: deque[tuple[int, float]] = deque()
        self._gathering: tuple[int, float] = (0, 0.0)

    def gathering(self, batch: _Batch) -> None:
        """The log stage's batch, not yet handed over, is now this."""
        with self._lock:
            self._gathering = (batch.messages, batch.since_wall)
            self._publish()

    def handed_over(self, batch: _Batch) -> None:
        with self._lock:
            self._loading.append((batch.messages, batch.since_wall))
            self._gathering = (0, 0.0)
            self._publish()

    def loaded(self) -> None:
        """The loader is done with its oldest batch (loaded, or left in the log)."""
        with self._lock:
            if self._loading:
                self._loading.popleft()
            self._publish()

    def _publish(self) -> None:
        if self._lag is None:
            return
        parts = [*self._loading, self._gathering]
        waiting = [since for messages, since in parts if messages]
        self._lag[0] = float(sum(messages for messages, _ in parts))
        self._lag[1] = min(waiting) if waiting else 0.0


class _Batch:
    """Log records waiting to be loaded into DuckDB together."""

    def __init__(self) -> None:
        #: (number, rows, failed messages) of each record, in order
        self.records: list[tuple[int, pa.Table | None, list[FailedRow]]] = []
        self.rows = 0
        self.since = 0.0
        #: the messages it holds: rows and failed messages
        self.messages = 0
        self.since_wall = 0.0
        self.segments: list[Path] = []
        self.requests: list[_LoadRequest] = []
        #: it took one of the loader's places (see ``_hand_over``)
        self.holds_room = False

    def add(self, number: int, table: pa.Table | None, failed: list[FailedRow]) -> None:
        if not self.records:
            self.since = time.monotonic()
            self.since_wall = time.time()
        self.records.append((number, table, failed))
        self.rows += 0 if table is None else table.num_rows
        self.messages += (0 if table is None else table.num_rows) + len(failed)


def _hand_over(
    batch: _Batch,
    ingest: IngestLog,
    loads: queue.Queue[_Batch | None],
    health: _Health,
    room: threading.Semaphore,
    *,
    wait: bool,
) -> bool:
    """Give the batch to the loader. At most two wait for it (the log stage waits for a
    place, so a slow loader slows the acknowledgements); while loading fails, the log stage
    does not wait (it must go on answering writes, with the error) unless ``wait``: the
    batch stays with it, to be handed over later. Whether it was handed over."""
    batch.segments.extend(ingest.cut())
    while not room.acquire(timeout=0.2):
        if health.error is not None:
            if not wait:
                return False
            break  # stopping: handed over without a place
    else:
        batch.holds_room = True
    health.handed_over(batch)
    loads.put(batch)
    return True


def _log_writes(
    ingest: IngestLog,
    source: queue.SimpleQueue[Any],
    conn: Connection,
    loads: queue.Queue[_Batch | None],
    health: _Health,
    policy: LoadPolicy,
    room: threading.Semaphore,
    attribution: Attribution | None = None,
) -> None:
    """Resolve the persons of every write waiting, append them to the ingest log as one
    record, acknowledge each (in order) once the record is durable, and hand the records
    over to be loaded into DuckDB when enough have gathered, when the oldest has waited long
    enough, or when a read asks."""
    batch = _Batch()
    try:
        while True:
            wait = (
                max(0.1 if batch.segments else 0.0, batch.since + policy.seconds - time.monotonic())
                if batch.records
                else None
            )
            items, stop = _take_all(source, wait)
            writes = [item for item in items if not isinstance(item, _LoadRequest)]
            if attribution is not None and writes:
                # In this thread, not a stage of its own: handing each write from one thread
                # to the next cost more time than overlapping the two saved (bench/ingest.py).
                writes = _attributed(attribution, writes)
            batch.requests.extend(item for item in items if isinstance(item, _LoadRequest))
            while writes:
                group: list[_Write] = []
                rows = 0
                while writes and (not group or rows < MAX_COMMIT_ROWS):
                    group.append(writes.pop(0))
                    rows += group[-1][1].num_rows if group[-1][1] is not None else 0
                # Rows DuckDB would refuse are refused now, each write on its own: once
                # acknowledged, they could only stall the loading of the log.
                problems = [rows_problem(w[1]) for w in group]
                taken = [w for w, problem in zip(group, problems, strict=True) if problem is None]
                tables = [w[1] for w in taken if w[1] is not None]
                failed = [row for w in taken for row in w[0]]
                # While loading into DuckDB fails, nothing new is taken: the log would only
                # grow with writes that cannot reach the store.
                error = health.error
                if error is None and taken:
                    try:
                        table = pa.concat_tables(tables) if tables else None
                        batch.add(ingest.append(failed, table), table, failed)
                        health.gathering(batch)
                    except Exception as exc:  # the server answers the waiting requests
                        error = f"the ingest log could not be written: {type(exc).__name__}: {exc}"
                outcomes = [
                    WriteOutcome(problem or error, seconds, unattributed)
                    for (_, _, seconds, unattributed), problem in zip(group, problems, strict=True)
                ]
                # One message for the group's writes, in the order they came. If the server
                # has gone, what was logged stays.
                with contextlib.suppress(EOFError, OSError):
                    conn.send(outcomes)
            if batch.requests and health.error is not None:
                # Loading fails: a read hears why at once instead of queueing behind it.
                for request in batch.requests:
                    request.error = health.error
                    request.done.set()
                batch.requests = []
            due = bool(batch.records) and (
                batch.rows >= policy.rows or time.monotonic() - batch.since >= policy.seconds
            )
            if stop:
                health.stopping = True
            if (due or batch.requests or stop) and _hand_over(
                batch, ingest, loads, health, room, wait=stop
            ):
                batch = _Batch()
            if stop:
                return
    finally:
        health.stopping = True
        ingest.close()
        loads.put(None)


def _load_batches(
    store: DuckDBEventStore,
    loads: queue.Queue[_Batch | None],
    health: _Health,
    room: threading.Semaphore,
) -> None:
    """Load the log's records into DuckDB, a batch a transaction, and drop their segments."""
    gave_up = False
    while True:
        batch = loads.get()
        if batch is None:
            return
        if batch.holds_room:
            room.release()
        loaded = not batch.records
        attempt = 0
        # Once a batch is given up (stopping), none after it is loaded: the next start loads
        # them all, in order, from the log (a later one loaded now would mark the earlier
        # ones as done).
        while not loaded and not gave_up:
            try:
                store.load_log_records(batch.records)
                loaded = True
                health.error = None
            except Exception as exc:
                attempt += 1
                health.error = (
                    f"the event store could not load its ingest log: {type(exc).__name__}: {exc}"
                )
                log.exception("loading the ingest log into the event store failed")
                if health.stopping and attempt >= 3:
                    gave_up = True  # the log keeps them; the next start loads them
                else:
                    time.sleep(min(5.0, 0.1 * 2**attempt))
        health.loaded()
        if loaded:
            remove_segments(batch.segments)
        for request in batch.requests:
            request.error = None if loaded else health.error
            request.done.set()


def _load_now(into: queue.SimpleQueue[Any], writes_done: threading.Event) -> None:
    """Have everything acknowledged loaded into DuckDB before a read (reads see every write
    that was answered)."""
    request = _LoadRequest()
    into.put(request)
    deadline = time.monotonic() + LOAD_WAIT_SECONDS
    while not request.done.wait(0.2):
        if writes_done.is_set():
            return  # the writes have stopped: what could be loaded is
        if time.monotonic() > deadline:
            raise EventStoreError(
                "the event store is behind with loading acknowledged events; try again"
            )
    if request.error is not None:
        raise EventStoreError(request.error)


def _serve_writes(
    store: DuckDBEventStore,
    conn: Connection,
    received: queue.SimpleQueue[Any],
    attribution: Attribution | None,
    done: threading.Event,
    policy: LoadPolicy,
    lag: Any = None,
) -> None:
    health = _Health(lag)
    loads: queue.Queue[_Batch | None] = queue.Queue()
    room = threading.Semaphore(2)
    ingest = IngestLog(log_directory(store.path), store.ingest_log_number() + 1, store.store_id)
    stages = [
        # Daemons: if a stage fails, the process must still exit (then the server hears at
        # once that its writes were not acknowledged), not wait on a thread reading the pipe.
        threading.Thread(
            target=_receive_writes, args=(conn, received), name="event-store-receive", daemon=True
        ),
        threading.Thread(
            target=_log_writes,
            args=(ingest, received, conn, loads, health, policy, room, attribution),
            name="event-store-log",
            daemon=True,
        ),
    ]
    for stage in stages:
        stage.start()
    try:
        _load_batches(store, loads, health, room)
    except BaseException:
        log.exception("the event store stopped loading its ingest log")
        health.error = "the event store stopped loading its ingest log"
        # Release the log stage and the reads waiting on it; the log keeps what it holds.
        while (batch := loads.get()) is not None:
            for request in batch.requests:
                request.error = health.error
                request.done.set()
    finally:
        health.stopping = True
        done.set()


def _serve(
    path: str,
    memory_limit: str,
    wait: float,
    writes: Connection,
    reads: Connection,
    attribution_factory: Callable[[], Attribution] | None,
    policy: LoadPolicy,
    lag: Any = None,
) -> None:
    """The child process: open the store, then answer writes and reads until told to stop."""
    # DuckDB gives the GIL back between steps and needs it again at once; with the default
    # 5 ms switch interval the other stages of this process kept it waiting.
    sys.setswitchinterval(0.0005)
    try:
        store = _open(path, memory_limit, wait)
    except Exception as exc:  # reported to the parent, which raises it there
        reads.send(("busy" if isinstance(exc, EventStoreBusy) else "error", str(exc)))
        return
    try:
        attribution = attribution_factory() if attribution_factory is not None else None
    except Exception as exc:
        store.close()
        reads.send(("error", f"identity resolution could not start: {exc}"))
        return
    reads.send(("ready", None))
    writes_done = threading.Event()
    # What the log stage takes: the received writes, and the reads' requests to load what
    # is logged.
    received: queue.SimpleQueue[Any] = queue.SimpleQueue()
    writer = threading.Thread(
        target=_serve_writes,
        args=(store, writes, received, attribution, writes_done, policy, lag),
        name="event-store-writes",
    )
    writer.start()
    try:
        while not writes_done.is_set():
            if not reads.poll(0.5):
                continue
            request = reads.recv()
            if request is None:
                break
            method, args = request
            try:
                if method == "forget_identities":
                    if attribution is not None:
                        attribution.forget()
                    result = None
                else:
                    _load_now(received, writes_done)
                    result = getattr(store, method)(*args)
                reads.send(("ok", result))
            except Exception as exc:  # sent back and raised in the server
                reads.send(("error", f"{type(exc).__name__}: {exc}"))
    except (EOFError, OSError):
        pass
    writer.join(timeout=60)
    store.close()


class _Waiting:
    """A write sent to the child, until its acknowledgement comes."""

    __slots__ = ("done", "outcome", "then")

    def __init__(self, then: Callable[[WriteOutcome], None] | None) -> None:
        self.then = then
        self.done = threading.Event()
        self.outcome = _STOPPED


class ProcessEventStore:
    """An ``EventStore`` whose DuckDB file is held by a child process."""

    def __init__(
        self,
        path: Path | str,
        *,
        memory_limit: str = "50%",
        open_wait: float = OPEN_WAIT_SECONDS,
        attribution: Callable[[], Attribution] | None = None,
        load_policy: LoadPolicy = LoadPolicy(),
    ) -> None:
        """``attribution`` (picklable: a module-level function or a partial of one) builds,
        in the child, what resolves each event's person before it is stored;
        ``load_policy`` says when the ingest log is loaded into DuckDB."""
        self.path = str(path)
        #: whether the child resolves persons (then the server's collector does not)
        self.attributes = attribution is not None
        context = multiprocessing.get_context("spawn")
        self._writes, child_writes = context.Pipe()
        self._reads, child_reads = context.Pipe()
        #: acknowledged messages not yet loaded into DuckDB, and the oldest's time (the
        #: child writes it, ``unloaded`` reads it; a torn read is off by one update at most)
        self._lag = context.Array("d", 2, lock=False)
        self._process = context.Process(
            target=_serve,
            args=(
                self.path,
                memory_limit,
                open_wait,
                child_writes,
                child_reads,
                attribution,
                load_policy,
                self._lag,
            ),
            name="ichigen-event-store",
            daemon=True,
        )
        self._process.start()
        child_writes.close()
        child_reads.close()
        self._send_lock = threading.Lock()
        #: guards ``_waiting`` and ``_closed`` (an acknowledgement need not wait for a send)
        self._pending_lock = threading.Lock()
        self._read_lock = threading.Lock()
        #: writes sent and not yet acknowledged, oldest first (acknowledged in this order)
        self._waiting: deque[_Waiting] = deque()
        self._closed = False
        status, detail = self._reads.recv()
        if status != "ready":
            self._process.join(timeout=10)
            if status == "busy":
                raise EventStoreBusy(detail)
            raise EventStoreError(detail)
        self._acks = threading.Thread(
            target=self._receive_acks, name="event-store-acks", daemon=True
        )
        self._acks.start()

    def unloaded(self) -> tuple[int, float]:
        """Acknowledged messages in the ingest log not yet loaded into DuckDB, and how many
        seconds the oldest of them has waited."""
        messages, since = self._lag[0], self._lag[1]
        return int(messages), max(0.0, time.time() - since) if messages and since else 0.0

    def _receive_acks(self) -> None:
        try:
            while True:
                outcomes = self._writes.recv()  # of the next writes, in the order sent
                for outcome in outcomes:
                    with self._pending_lock:
                        waiting = self._waiting.popleft()
                    self._settle(waiting, outcome)
        except (EOFError, OSError, IndexError):
            pass
        # The child has gone: whatever was not acknowledged may not be stored.
        with self._pending_lock:
            self._closed = True
            left, self._waiting = list(self._waiting), deque()
        for waiting in left:
            self._settle(waiting, _STOPPED)

    @staticmethod
    def _settle(waiting: _Waiting, outcome: WriteOutcome) -> None:
        waiting.outcome = outcome
        waiting.done.set()
        if waiting.then is not None:
            try:
                waiting.then(outcome)
            except Exception:
                log.exception("a write's acknowledgement could not be handled")

    def submit(
        self,
        table: pa.Table | None,
        failed: Sequence[FailedRow],
        then: Callable[[WriteOutcome], None] | None = None,
    ) -> _Waiting:
        """Send a write without waiting for it; ``then(outcome)`` is called (on the
        acknowledging thread) once the child has committed it or failed to."""
        # Both made before anything is sent or awaited: if either fails, it raises here and
        # no acknowledgement is expected for this write.
        data = table_bytes(table)
        failures = ForkingPickler.dumps(list(failed))
        waiting = _Waiting(then)
        stopped = False
        with self._send_lock:
            with self._pending_lock:
                if self._closed:
                    stopped = True
                else:
                    # Queued in the order sent, which is the order of the acknowledgements.
                    self._waiting.append(waiting)
            if not stopped:
                try:
                    # The failed messages (small, pickled), then the table as Arrow IPC bytes.
                    self._writes.send_bytes(failures)
                    self._writes.send_bytes(data)
                except BaseException as exc:
                    with self._pending_lock:
                        # Not there if the child went meanwhile: then it is settled already.
                        ours = waiting in self._waiting
                        if ours:
                            self._waiting.remove(waiting)
                    if not isinstance(exc, OSError | ValueError):
                        raise
                    stopped = ours
        if stopped:
            self._settle(waiting, _STOPPED)
        return waiting

    def append(self, rows: Sequence[EventRow], failed: Sequence[FailedRow]) -> None:
        self.append_table(rows_to_arrow(rows) if rows else None, failed)

    def append_table(self, table: pa.Table | None, failed: Sequence[FailedRow]) -> None:
        waiting = self.submit(table, failed)
        waiting.done.wait()
        if waiting.outcome.error is not None:
            raise EventStoreError(waiting.outcome.error)

    def forget_identities(self) -> None:
        """Make the child drop what it remembers of identifiers' persons (an unmerge)."""
        self._call("forget_identities")

    def _call(self, method: str, *args: Any) -> Any:
        with self._read_lock:
            self._reads.send((method, args))
            status, result = self._reads.recv()
        if status != "ok":
            raise EventStoreError(result)
        return result

    def message_hashes(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        found: np.ndarray[Any, np.dtype[np.int64]] = self._call("message_hashes")
        return found

    def find(self, where: EventFilter, limit: int) -> EventPage:
        page: EventPage = self._call("find", where, limit)
        return page

    def daily_counts(
        self, since: datetime, until: datetime, source_id: int | None
    ) -> list[tuple[date, str, int]]:
        counts: list[tuple[date, str, int]] = self._call("daily_counts", since, until, source_id)
        return counts

    def count(self, source_id: int | None = None) -> int:
        return int(self._call("count", source_id))

    def delete_older_than(self, source_id: int, cutoff: datetime) -> int:
        return int(self._call("delete_older_than", source_id, cutoff))

    def failed(
        self, source_id: int | None, status: str | None, limit: int, before_id: int | None
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("failed", source_id, status, limit, before_id)
        return rows

    def failed_one(self, failed_id: int) -> dict[str, Any] | None:
        row: dict[str, Any] | None = self._call("failed_one", failed_id)
        return row

    def mark_replayed(self, failed_id: int, message_id: str, at: datetime) -> None:
        self._call("mark_replayed", failed_id, message_id, at)

    def export_parquet(
        self, directory: Path, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        return int(self._call("export_parquet", directory, since, until))

    def reassign_person(
        self, user_ids: Sequence[str], anonymous_ids: Sequence[str], person_id: str
    ) -> int:
        return int(self._call("reassign_person", list(user_ids), list(anonymous_ids), person_id))

    def delete_anonymous(self, anonymous_ids: Sequence[str], before: datetime) -> int:
        return int(self._call("delete_anonymous", list(anonymous_ids), before))

    def close(self) -> None:
        """Let the child finish what it holds, close the file and exit."""
        for conn, lock in ((self._writes, self._send_lock), (self._reads, self._read_lock)):
            with lock, contextlib.suppress(OSError, ValueError):
                conn.send(None)
        self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        self._acks.join(timeout=10)
        self._writes.close()
        self._reads.close()


def open_event_store(
    settings: Settings,
    *,
    own_process: bool | None = None,
    attribution: Callable[[], Attribution] | None = None,
) -> EventStore:
    """The configured embedded event store: in a process of its own (the server's default,
    ``ICHIGEN_EVENT_STORE_PROCESS``) or in this one (``own_process=False``, as commands use).
    ``attribution`` is for a store in a process of its own (see ``ProcessEventStore``)."""
    path = settings.resolved_event_store_path()
    limit = settings.event_store_memory_limit
    if settings.event_store_process if own_process is None else own_process:
        return ProcessEventStore(path, memory_limit=limit, attribution=attribution)
    return DuckDBEventStore(path, memory_limit=limit)
