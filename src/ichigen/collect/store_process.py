"""The embedded event store served from a process of its own.

DuckDB runs its work without the GIL, but needs it back between steps; in the server's
process the event loop holds it nearly all the time, and commits there took five times
longer than alone (``bench/ingest.py``). Here the store lives in a child process with its own
interpreter: the server's writer thread only turns rows into an Arrow table and sends it
(Arrow IPC through a pipe), then waits without the GIL for the child's acknowledgement, which
comes after the commit. Reads go through a second pipe.

The child stops when the server closes the store, and also when the server dies (its pipes
close), after finishing the commit in hand; so a restarted server finds every acknowledged
event, and the file free once the child has gone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections.abc import Sequence
from datetime import date, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ichigen.collect.messages import EventRow
from ichigen.collect.store import (
    DuckDBEventStore,
    EventFilter,
    EventPage,
    EventStore,
    EventStoreBusy,
    FailedRow,
    rows_to_arrow,
)
from ichigen.core.settings import Settings

#: How long the child keeps trying to open a store that another process is still closing.
OPEN_WAIT_SECONDS = 15.0


class EventStoreError(Exception):
    """The event store process failed to do what was asked (its message says why)."""


def _to_ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(data: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(data)).read_all()


def _open(path: str, memory_limit: str, wait: float) -> DuckDBEventStore:
    deadline = time.monotonic() + wait
    while True:
        try:
            return DuckDBEventStore(path, memory_limit=memory_limit)
        except EventStoreBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _serve_writes(store: DuckDBEventStore, conn: Connection, done: threading.Event) -> None:
    try:
        while True:
            failed = conn.recv()
            if failed is None:
                break
            data = conn.recv_bytes()
            try:
                store.append_table(_from_ipc(data) if data else None, failed)
                conn.send(None)
            except Exception as exc:  # the server answers the waiting requests with it
                conn.send(f"{type(exc).__name__}: {exc}")
    except (EOFError, OSError):
        pass  # the server has gone
    finally:
        done.set()


def _serve(
    path: str, memory_limit: str, wait: float, writes: Connection, reads: Connection
) -> None:
    """The child process: open the store, then answer writes and reads until told to stop."""
    try:
        store = _open(path, memory_limit, wait)
    except Exception as exc:  # reported to the parent, which raises it there
        reads.send(("busy" if isinstance(exc, EventStoreBusy) else "error", str(exc)))
        return
    reads.send(("ready", None))
    writes_done = threading.Event()
    writer = threading.Thread(
        target=_serve_writes, args=(store, writes, writes_done), name="event-store-writes"
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
                reads.send(("ok", getattr(store, method)(*args)))
            except Exception as exc:  # sent back and raised in the server
                reads.send(("error", f"{type(exc).__name__}: {exc}"))
    except (EOFError, OSError):
        pass
    writer.join(timeout=60)
    store.close()


class ProcessEventStore:
    """An ``EventStore`` whose DuckDB file is held by a child process."""

    def __init__(
        self,
        path: Path | str,
        *,
        memory_limit: str = "50%",
        open_wait: float = OPEN_WAIT_SECONDS,
    ) -> None:
        self.path = str(path)
        context = multiprocessing.get_context("spawn")
        self._writes, child_writes = context.Pipe()
        self._reads, child_reads = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(self.path, memory_limit, open_wait, child_writes, child_reads),
            name="ichigen-event-store",
            daemon=True,
        )
        self._process.start()
        child_writes.close()
        child_reads.close()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        status, detail = self._reads.recv()
        if status != "ready":
            self._process.join(timeout=10)
            if status == "busy":
                raise EventStoreBusy(detail)
            raise EventStoreError(detail)

    def append(self, rows: Sequence[EventRow], failed: Sequence[FailedRow]) -> None:
        self.append_table(rows_to_arrow(rows) if rows else None, failed)

    def append_table(self, table: pa.Table | None, failed: Sequence[FailedRow]) -> None:
        data = _to_ipc(table) if table is not None and table.num_rows else b""
        with self._write_lock:
            # The failed messages (small, pickled), then the table as raw Arrow IPC bytes.
            self._writes.send(list(failed))
            self._writes.send_bytes(memoryview(data))
            error = self._writes.recv()
        if error is not None:
            raise EventStoreError(error)

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

    def close(self) -> None:
        """Let the child finish what it holds, close the file and exit."""
        for conn, lock in ((self._writes, self._write_lock), (self._reads, self._read_lock)):
            with lock, contextlib.suppress(OSError, ValueError):
                conn.send(None)
        self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        self._writes.close()
        self._reads.close()


def open_event_store(settings: Settings, *, own_process: bool | None = None) -> EventStore:
    """The configured embedded event store: in a process of its own (the server's default,
    ``ICHIGEN_EVENT_STORE_PROCESS``) or in this one (``own_process=False``, as commands use)."""
    path = settings.resolved_event_store_path()
    limit = settings.event_store_memory_limit
    if settings.event_store_process if own_process is None else own_process:
        return ProcessEventStore(path, memory_limit=limit)
    return DuckDBEventStore(path, memory_limit=limit)
