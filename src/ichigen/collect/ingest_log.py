"""The event store's ingest log: acknowledged writes, durable before they reach DuckDB.

A DuckDB commit costs about the same for one row as for a few hundred (each writes its
columns' segments and log records), so committing every group of requests as it comes made
the commit the limit of durable ingest. Instead the store's process appends each group to
this log (one ``write`` and one ``fdatasync``, a fraction of a millisecond), acknowledges
it, and loads what the log holds into DuckDB in large transactions, a few a second. Each of
those transactions records the number of the last log record it holds
(``ingest_log_state``), so a log segment can go once it is committed, and a store opened
after a crash loads the records it does not hold yet before anything else (``replay``).

The log is a directory beside the store file (``events.duckdb.ingest``) of segment files
named by the store's id and their first record's number (``<store id>.<number>.log``). The
id is kept in the store file, so a log left beside a different file (one restored from a
backup, or a new store in its place) is never loaded into it: such segments are moved to
``foreign/`` and reported. A record is a header (magic, number, lengths, CRC-32) followed by
the failed messages as JSON and the rows as an Arrow IPC stream. A record cut short at the
end of a segment by a crash was never acknowledged (the acknowledgement comes after the
``fdatasync``): reading stops there. A record that is complete but does not match its
checksum was acknowledged and then damaged on disk: the segment is moved to ``damaged/``
and reported as an error, not removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

log = logging.getLogger(__name__)

_MAGIC = b"ILG1"
#: magic, record number, length of the failed messages, length of the rows, CRC-32 of both
_HEADER = struct.Struct("<4sQIII")
_SUFFIX = ".log"
#: Where segments of another store file, and damaged ones, are moved (never loaded).
FOREIGN = "foreign"
DAMAGED = "damaged"


class DamagedSegment(Exception):
    """A segment holds a complete record that does not read back as written."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"ingest log {path} is damaged at byte {offset}: {reason}")
        self.path = path
        self.offset = offset


def log_directory(store_path: str | Path) -> Path:
    """Where the ingest log of the event store at ``store_path`` lives."""
    return Path(f"{store_path}.ingest")


def table_bytes(table: pa.Table | None) -> memoryview:
    """Rows as an Arrow IPC stream (empty: no rows)."""
    if table is None or not table.num_rows:
        return memoryview(b"")
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return memoryview(sink.getvalue())


def table_from_bytes(data: bytes | memoryview) -> pa.Table | None:
    return ipc.open_stream(pa.py_buffer(data)).read_all() if data else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Failed(Protocol):
    """A failed message as the store keeps it (``store.FailedRow``)."""

    @property
    def source_id(self) -> int: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def reason(self) -> str: ...
    @property
    def problems(self) -> list[dict[str, Any]]: ...
    @property
    def payload(self) -> Any: ...


#: A failed message read back: source id, received at, reason, problems, payload.
FailedFields = tuple[int, datetime, str, list[dict[str, Any]], Any]


def _failed_bytes(failed: Sequence[Failed]) -> bytes:
    return orjson.dumps(
        [
            [
                f.source_id,
                (f.received_at - _EPOCH) // timedelta(microseconds=1),
                f.reason,
                f.problems,
                f.payload,
            ]
            for f in failed
        ],
        default=str,
    )


def _failed_from_bytes(data: bytes) -> list[FailedFields]:
    return [
        (source_id, _EPOCH + timedelta(microseconds=micros), reason, problems, payload)
        for source_id, micros, reason, problems, payload in orjson.loads(data)
    ]


@dataclass(frozen=True, slots=True)
class LogRecord:
    number: int
    failed: list[FailedFields]
    rows: pa.Table | None


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class IngestLog:
    """The writing end: one writer appends records and starts new segments."""

    def __init__(self, directory: Path, next_number: int, store_id: str) -> None:
        self.directory = directory
        #: the id of the store file the records are for (in every segment's name)
        self.store_id = store_id
        directory.mkdir(parents=True, exist_ok=True)
        #: the number the next record gets
        self.next_number = next_number
        self._file: int | None = None
        self._segment: Path | None = None
        self._size = 0
        #: segments closed since ``cut`` last took them
        self._closed: list[Path] = []

    def append(self, failed: Sequence[Failed], rows: pa.Table | None) -> int:
        """Write one record and make it durable; returns its number. On an error nothing of
        it stays in the log (the next record goes to a new segment)."""
        failed_data = _failed_bytes(failed)
        rows_data = table_bytes(rows)
        number = self.next_number
        checksum = zlib.crc32(rows_data, zlib.crc32(failed_data))
        header = _HEADER.pack(_MAGIC, number, len(failed_data), len(rows_data), checksum)
        if self._file is None:
            self._open_segment(number)
        assert self._file is not None
        start = self._size
        try:
            written = os.writev(self._file, [header, failed_data, rows_data])
            if written != len(header) + len(failed_data) + len(rows_data):
                raise OSError(f"the ingest log took {written} bytes of a record")
            os.fdatasync(self._file)
        except BaseException:
            # Cut the partial record off so that no later record sits behind it, and go on in
            # a new segment in case even that failed; and under a new number, so that a
            # record left behind all the same is never taken for the next one.
            with contextlib.suppress(OSError):
                os.ftruncate(self._file, start)
            self.rotate()
            self.next_number = number + 1
            raise
        self._size = start + written
        self.next_number = number + 1
        return number

    def _open_segment(self, first: int) -> None:
        path = self.directory / f"{self.store_id}.{first:020d}{_SUFFIX}"
        self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._segment = path
        self._size = 0
        _fsync_directory(self.directory)  # the new file itself survives a crash

    def rotate(self) -> None:
        """Close the current segment: the next record starts a new one."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.close(self._file)
        if self._segment is not None:
            self._closed.append(self._segment)
        self._file = None
        self._segment = None
        self._size = 0

    def cut(self) -> list[Path]:
        """Close the current segment and hand over every segment closed since the last cut:
        they hold only records written before this call."""
        self.rotate()
        closed, self._closed = self._closed, []
        return closed

    def close(self) -> None:
        self.rotate()


def segment_name_id(path: Path) -> str | None:
    """The store id in a segment's name (None: a name without one)."""
    stem = path.name.removesuffix(_SUFFIX)
    store_id, dot, number = stem.rpartition(".")
    return store_id if dot and number.isdigit() else None


def segments(directory: Path, store_id: str | None = None) -> list[Path]:
    """The log's segment files, oldest first: those of the store ``store_id``, or all."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.suffix == _SUFFIX and p.is_file()]
    if store_id is not None:
        found = [p for p in found if segment_name_id(p) == store_id]
    return sorted(found, key=lambda p: p.name.rsplit(".", 2)[-2])


def set_aside(path: Path, where: str) -> Path:
    """Move a segment out of the log into its ``where`` folder (kept for a person to look
    at); returns where it went."""
    folder = path.parent / where
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    copy = 1
    while target.exists():  # one set aside before under the same name is kept too
        copy += 1
        target = folder / f"{path.stem}-{copy}{_SUFFIX}"
    path.rename(target)
    _fsync_directory(folder)
    _fsync_directory(path.parent)
    return target


def set_aside_warnings(store_path: str | Path) -> list[str]:
    """What an operator should look at: segments moved out of the log of the store at
    ``store_path`` (written for another store file, or damaged), one line per folder."""
    directory = log_directory(store_path)
    found = []
    for where, why in ((DAMAGED, "damaged"), (FOREIGN, "written for another store file")):
        folder = directory / where
        count = sum(1 for _ in folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else 0
        if count:
            found.append(f"{count} ingest log segment(s) {why}, not loaded: see {folder}")
    return found


def _first_number(path: Path) -> int | None:
    number = path.name.removesuffix(_SUFFIX).rsplit(".", 1)[-1]
    return int(number) if number.isdigit() else None


def read_segment(path: Path, *, newest: bool = True) -> Iterator[LogRecord]:
    """The complete records of one segment, in order. In the log's ``newest`` segment,
    reading stops at a record cut short (a crash while it was written: never acknowledged);
    any other segment was complete when the next one began. After the good records, raises
    ``DamagedSegment`` if a record does not read back as written: a payload that does not
    match its checksum, a record out of sequence, or (not the newest) a record cut short."""
    data = path.read_bytes()
    offset = 0
    expected = _first_number(path)
    while offset + _HEADER.size <= len(data):
        magic, number, failed_size, rows_size, checksum = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + failed_size + rows_size
        if magic != _MAGIC:
            if newest and not data[offset:].strip(b"\0"):
                break  # space the file system gave a record that a crash cut short
            raise DamagedSegment(path, offset, "a record does not start with the log's mark")
        if expected is not None and number != expected:
            raise DamagedSegment(path, offset, f"record {number} where {expected} was due")
        if end > len(data):
            if newest:
                break
            raise DamagedSegment(path, offset, f"record {number} runs past the segment's end")
        failed_data = data[start : start + failed_size]
        rows_data = data[start + failed_size : end]
        if zlib.crc32(rows_data, zlib.crc32(failed_data)) != checksum:
            raise DamagedSegment(path, offset, f"record {number} does not match its checksum")
        yield LogRecord(number, _failed_from_bytes(failed_data), table_from_bytes(rows_data))
        offset = end
        expected = number + 1
    if offset != len(data):
        if not newest:
            raise DamagedSegment(path, offset, "it ends with part of a record")
        log.warning(
            "ingest log %s ends with %d bytes of an unfinished record (never acknowledged)",
            path,
            len(data) - offset,
        )


def remove_segments(paths: list[Path]) -> None:
    """Drop segments whose records are in the store (one left behind is skipped and removed
    at the next start)."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            log.exception("ingest log segment %s could not be removed", path)
