"""Event files in: CSV, NDJSON and Parquet rows become Segment messages, stored like tracked ones.

A mapping (``EventMapping``) says which column fills which message field; without one, an
NDJSON or Parquet row that is already a Segment message is taken as it is. Each row then goes
through ``messages.normalise``, the tracking API's own validation, so an imported event is
indistinguishable from one sent by an SDK.

The file is read twice and never held whole. The first pass checks it as a whole (encoding,
CSV and JSON syntax, every Parquet page, the mapped columns) and counts its rows, so a broken
file stores nothing at all; the second maps, validates and writes the rows in chunks through
the collector. A row without a mapped ``messageId`` gets one derived from the source and the
row's content, so importing the same file again stores nothing new: the collector's
de-duplication drops every row as already stored. Rows that fail are reported by number,
field and column, and the others are stored regardless.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from pathlib import PurePath
from typing import IO, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from ichigen.auth.permissions import require
from ichigen.collect.ingest import Collector
from ichigen.collect.messages import Envelope, EventRow, Limits, normalise
from ichigen.collect.schemas import (
    EventImportResult,
    EventImportRowError,
    EventMapping,
    ImportFormat,
    SourceRead,
)
from ichigen.collect.store import FailedRow
from ichigen.core.audit import Actor
from ichigen.core.clock import utcnow
from ichigen.core.errors import BadRequest, FieldError, ValidationFailed
from ichigen.core.tabular import (
    BOMS,
    cell_text,
    clean_headers,
    header_key,
    money_amount,
    parse_bool,
    sniff_delimiter,
)

#: Rows mapped, validated and written together (one collector write each).
CHUNK_ROWS = 5000
#: Row errors a result lists; ``error_count`` counts them all.
MAX_REPORTED_ERRORS = 1000
#: A message id derived from a row starts with this, so imported ids are recognisable.
DERIVED_ID_PREFIX = "import-"

ValueKind = Literal["auto", "string", "number", "integer", "boolean", "json", "time"]
VALUE_KINDS: tuple[str, ...] = get_args(ValueKind)
FORMATS: tuple[str, ...] = get_args(ImportFormat)

#: Message fields a column can fill that hold one value.
SCALAR_TARGETS = (
    "type",
    "event",
    "name",
    "category",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "groupId",
    "previousId",
)
#: Message fields that are objects: a column fills the whole object, or one key in it.
OBJECT_TARGETS = ("properties", "traits", "context", "integrations")
_TARGETS = frozenset(SCALAR_TARGETS + OBJECT_TARGETS)
_ID_TARGETS = frozenset(("userId", "anonymousId", "messageId", "groupId", "previousId"))
_TIME_TARGETS = frozenset(("timestamp", "originalTimestamp"))
#: Properties of Segment's e-commerce spec that are numbers (strings in a CSV file).
NUMERIC_PROPERTIES = frozenset(
    ("revenue", "total", "subtotal", "value", "price", "quantity", "discount", "tax", "shipping")
)
_MAX_DEPTH = 10

_EXTENSIONS: dict[str, ImportFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SAMPLE_BYTES = 65536
_SLASH_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y%m%d")

Progress = Callable[[int, int], None]
ErrorSink = Callable[[EventImportRowError], None]


# ----------------------------------------------------------------------------- mappings


def detect_format(filename: str | None, requested: str | None = None) -> ImportFormat:
    """The file's format: the one asked for, else from its name (``.csv``, ``.ndjson.gz``…)."""
    if requested:
        wanted = requested.strip().lower()
        for known in FORMATS:
            if wanted == known:
                return known  # type: ignore[return-value]
        raise BadRequest(
            f"Unknown format '{requested[:40]}'; use csv, ndjson or parquet.",
            [FieldError(("format",), "must be csv, ndjson or parquet")],
        )
    suffixes = [s.lower() for s in PurePath(filename or "").suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    found = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise BadRequest(
            f"Cannot tell the format of '{(filename or '')[:100]}' from its name; "
            "name it .csv, .ndjson or .parquet, or give the format.",
            [FieldError(("format",), "unknown file format")],
        )
    return found


def parse_mapping(text: str | None) -> EventMapping:
    """A mapping sent as JSON text; an empty one when there is none."""
    if text is None or not text.strip():
        return EventMapping()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"The mapping is not valid JSON ({exc}); send an object like "
            '{"type": "track", "event": "Order Completed", "fields": {"userId": "customer_id"}}.',
            [FieldError(("mapping",), "invalid JSON")],
        ) from None
    return validate_mapping(value)


def validate_mapping(value: Any) -> EventMapping:
    """``EventMapping`` from decoded JSON, with problems as a 422 naming each field."""
    try:
        return EventMapping.model_validate(value)
    except ValidationError as exc:
        errors = [
            FieldError(("mapping", *(p for p in e["loc"] if isinstance(p, str | int))), e["msg"])
            for e in exc.errors()
        ]
        raise ValidationFailed(
            f"The mapping is not valid: {_where(errors[0].loc)}: {errors[0].msg}.", errors
        ) from None


def mapping_with(
    base: EventMapping | None,
    *,
    type: str | None = None,
    event: str | None = None,
    pairs: Sequence[str] = (),
    timezone: str | None = None,
) -> EventMapping:
    """A mapping with command-line options laid over it: ``--map field[:kind]=column``."""
    data = (base or EventMapping()).model_dump()
    fields: dict[str, str] = data["fields"]
    for index, pair in enumerate(pairs):
        target, sep, column = pair.partition("=")
        if not sep or not target.strip() or not column.strip():
            raise BadRequest(
                f"--map {pair!r} is not field=column (e.g. properties.revenue=total).",
                [FieldError(("map", index), "expected field=column")],
            )
        target = target.strip()
        plain = target.partition(":")[0]
        for existing in [k for k in fields if k.partition(":")[0] == plain]:
            del fields[existing]
        fields[target] = column.strip()
    if type is not None:
        data["type"] = type
    if event is not None:
        data["event"] = event
    if timezone is not None:
        data["timezone"] = timezone
    return validate_mapping(data)


@dataclass(frozen=True, slots=True)
class _Rule:
    """One mapped field: where it goes, which column fills it, and how its value converts."""

    key: str  # as the mapping names it, ``properties.revenue:number``
    target: str  # ``properties.revenue``
    path: tuple[str, ...]
    column: str
    kind: str
    keys: tuple[str, ...] = ()  # how to reach the column in a row, once the file is known


def _default_kind(path: tuple[str, ...]) -> str:
    root = path[0]
    if root in _TIME_TARGETS:
        return "time"
    if root in _ID_TARGETS or root in ("type", "event", "name", "category"):
        return "string"
    if len(path) == 1:
        return "json"  # a whole properties/traits/context object
    if root == "properties" and len(path) == 2:
        if path[1] in NUMERIC_PROPERTIES:
            return "number"
        if path[1] == "products":
            return "json"
    return "auto"


def _parse_target(key: str) -> tuple[str, tuple[str, ...], str]:
    """``properties.revenue:number`` as (target, path, kind); ``ValueError`` says what is wrong."""
    target, sep, kind = key.strip().partition(":")
    path = tuple(target.split("."))
    if path[0] not in _TARGETS:
        raise ValueError(
            f"'{path[0]}' is not a message field; use one of {', '.join(SCALAR_TARGETS)}, "
            "or properties.<key>, traits.<key>, context.<key>"
        )
    if len(path) > 1 and path[0] not in OBJECT_TARGETS:
        raise ValueError(f"{path[0]} holds one value and has no keys")
    if any(not part.strip() for part in path):
        raise ValueError("a field path has no empty parts (properties.revenue)")
    if len(path) > _MAX_DEPTH:
        raise ValueError(f"a field path is at most {_MAX_DEPTH} levels deep")
    if sep:
        if kind not in VALUE_KINDS:
            raise ValueError(f"unknown conversion '{kind}'; use one of {', '.join(VALUE_KINDS)}")
    else:
        kind = _default_kind(path)
    return target, path, kind


@dataclass(frozen=True)
class _Plan:
    """A checked mapping, before it meets a file."""

    rules: tuple[_Rule, ...]
    fixed_type: str | None
    fixed_event: str | None
    zone: tzinfo


def _plan(mapping: EventMapping) -> _Plan:
    errors: list[FieldError] = []
    rules: list[_Rule] = []
    for key, column in mapping.fields.items():
        try:
            target, path, kind = _parse_target(key)
        except ValueError as exc:
            errors.append(FieldError(("mapping", "fields", key), str(exc)))
            continue
        rules.append(_Rule(key, target, path, column, kind))
    by_target: dict[tuple[str, ...], _Rule] = {}
    for rule in rules:
        twin = by_target.get(rule.path)
        if twin is not None:
            errors.append(
                FieldError(("mapping", "fields", rule.key), f"{rule.target} is mapped twice")
            )
        by_target[rule.path] = rule
    for rule in rules:
        for depth in range(2, len(rule.path)):
            parent = by_target.get(rule.path[:depth])
            if parent is not None:
                errors.append(
                    FieldError(
                        ("mapping", "fields", rule.key),
                        f"{parent.target} is already mapped to a value; it cannot also hold "
                        f"{rule.target}",
                    )
                )
    zone: tzinfo = UTC
    if mapping.timezone:
        try:
            zone = ZoneInfo(mapping.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(
                FieldError(("mapping", "timezone"), "not an IANA time zone such as Asia/Tokyo")
            )
    if errors:
        raise ValidationFailed(
            f"The mapping is not valid: {_where(errors[0].loc)}: {errors[0].msg}.", errors
        )
    # Whole objects first, so that a mapped key lands inside the object a column gave.
    rules.sort(key=lambda r: len(r.path))
    return _Plan(tuple(rules), mapping.type, mapping.event, zone)


def _where(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc)


# ----------------------------------------------------------------------------- values


class _Missing:
    """A cell with nothing in it: the field is left out of the message."""


_NOTHING = _Missing()


def _plain(value: Any, zone: tzinfo = UTC) -> Any:
    """A value from a Parquet file as JSON can hold it."""
    if value is None or isinstance(value, bool | int | str | float):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=zone)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v, zone) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, zone) for v in value]
    return str(value)


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} is not a number")
        return value
    if isinstance(value, Decimal):
        plain: int | float = _plain(value)
        return plain
    if isinstance(value, str):
        try:
            amount = Decimal(money_amount(value))
        except ValueError:
            raise ValueError(f"'{value[:60]}' is not a number") from None
        if amount == amount.to_integral_value() and "." not in value:
            return int(amount)
        return float(amount)
    raise ValueError("is not a number")


def _moment(value: Any, zone: tzinfo) -> str:
    """A date-time in ISO 8601 (UTC), from what files hold: ISO text, 2024/05/01 10:00,
    epoch seconds or milliseconds, or a Parquet timestamp or date."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = _epoch(float(value))
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) >= 9:
            moment = _epoch(float(text))
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                for pattern in _SLASH_FORMATS:
                    try:
                        moment = datetime.strptime(text, pattern)
                        break
                    except ValueError:
                        continue
    if moment is None:
        shown = str(value)[:60]
        raise ValueError(
            f"'{shown}' is not a date-time (use ISO 8601, e.g. 2024-05-01T09:30:00+09:00)"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC).isoformat()


def _epoch(seconds: float) -> datetime:
    if abs(seconds) > 1e11:  # milliseconds, as JavaScript and many exports write them
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{seconds} is not a time in epoch seconds") from None


def _convert(value: Any, kind: str, zone: tzinfo, from_text: bool) -> Any:
    """A cell as the message field wants it; ``ValueError`` says why it cannot be."""
    if value is None:
        return _NOTHING
    if from_text:
        value = cell_text(value)
        if value == "":
            return _NOTHING
    if kind == "auto":
        return value if from_text else _plain(value, zone)
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, dict | list):
            return orjson.dumps(_plain(value, zone)).decode()
        return str(_plain(value, zone))
    if kind == "number":
        return _number(value)
    if kind == "integer":
        number = _number(value)
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError(f"'{value}' is not a whole number")
            return int(number)
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        return parse_bool(str(value))
    if kind == "json":
        if not isinstance(value, str):
            return _plain(value, zone)
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"'{value[:60]}' is not valid JSON ({exc})") from None
    return _moment(value, zone)


def _place(message: dict[str, Any], path: tuple[str, ...], value: Any) -> bool:
    """Set ``message[a][b]…`` to value, creating objects; False when a parent is not one."""
    here = message
    for part in path[:-1]:
        child = here.get(part)
        if child is None:
            child = here[part] = {}
        elif not isinstance(child, dict):
            return False
        here = child
    here[path[-1]] = value
    return True


def derived_message_id(source_id: int, message: dict[str, Any]) -> str:
    """A message id from the source and the message's content (without its own id): the same
    row imported again gets the same id, so the collector stores it only once."""
    content = {k: v for k, v in message.items() if k != "messageId"}
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(
        str(source_id).encode() + b"\x00" + canonical, digest_size=16
    ).hexdigest()
    return DERIVED_ID_PREFIX + digest


# ----------------------------------------------------------------------------- files


def _file_error(detail: str, msg: str, *loc: str | int) -> BadRequest:
    return BadRequest(detail, [FieldError(("file", *loc), msg)])


def _uncompressed(stream: IO[bytes], file_format: ImportFormat) -> IO[bytes]:
    """The stream itself, or a reader that un-gzips it (CSV and NDJSON only)."""
    stream.seek(0)
    magic = stream.read(2)
    stream.seek(0)
    if magic != _GZIP_MAGIC:
        return stream
    if file_format == "parquet":
        raise _file_error(
            "This is a gzip file; a Parquet file is compressed inside, send it as it is.",
            "gzip is not Parquet",
        )
    return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]


@contextmanager
def _text(stream: IO[bytes], codec: str) -> Iterator[io.TextIOWrapper]:
    """The stream from its start as text, without closing it afterwards."""
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding=codec, newline="")
    try:
        yield text
    finally:
        text.detach()


@dataclass
class _CsvFile:
    stream: IO[bytes]
    codec: str
    delimiter: str
    headers: list[str]
    total: int

    def rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(row number, {header: cell})``; the header is row 1, blank rows are skipped."""
        with _text(self.stream, self.codec) as text:
            reader = csv.reader(text, delimiter=self.delimiter, strict=True)
            next(reader, None)
            for number, cells in enumerate(reader, start=2):
                if any(c.strip() for c in cells):
                    yield number, dict(zip(self.headers, cells, strict=False))


def _scan_csv(stream: IO[bytes]) -> _CsvFile:
    head = stream.read(_SAMPLE_BYTES)
    if not head.strip():
        raise _file_error("The file is empty.", "empty file")
    if head.startswith(b"PK\x03\x04"):
        raise _file_error(
            "This is an Excel workbook (or another zip archive), not a CSV file; "
            "save it as CSV first.",
            "not a CSV file",
        )
    if head.startswith(_PARQUET_MAGIC):
        raise _file_error(
            "This is a Parquet file, not CSV; import it with the format parquet.",
            "not a CSV file",
        )
    bom = next((name for mark, name in BOMS if head.startswith(mark)), None)
    failure: UnicodeDecodeError | None = None
    for codec in (bom,) if bom else ("utf-8", "cp932"):
        try:
            return _scan_csv_as(stream, codec, head)
        except UnicodeDecodeError as exc:
            failure = exc
    assert failure is not None
    raise _file_error(
        "The file's encoding is not UTF-8 or Shift_JIS (the byte "
        f"0x{failure.object[failure.start]:02x} fits neither); save it as UTF-8.",
        "unknown encoding",
    )


def _scan_csv_as(stream: IO[bytes], codec: str, head: bytes) -> _CsvFile:
    sample = head.decode(codec, errors="ignore").removeprefix("\ufeff")
    delimiter = sniff_delimiter(sample)
    total = 0
    with _text(stream, codec) as text:
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
            if not header or not any(c.strip() for c in header):
                raise _file_error(
                    "The first line of the file is empty; it must name the columns.",
                    "no header row",
                )
            if any("\x00" in c for c in header):
                raise _file_error(
                    "The file contains NUL characters, so it is not a CSV text file "
                    "(a UTF-16 file needs its byte order mark).",
                    "not a text file",
                )
            for cells in reader:
                if any(c.strip() for c in cells):
                    total += 1
        except csv.Error as exc:
            raise _file_error(
                f"The file is not valid CSV near line {reader.line_num}: {exc}.",
                "malformed CSV",
                reader.line_num,
            ) from None
    return _CsvFile(stream, codec, delimiter, clean_headers(header), total)


@dataclass
class _NdjsonFile:
    stream: IO[bytes]
    total: int
    keys: set[str]

    def rows(self) -> Iterator[tuple[int, Any]]:
        """``(line number, decoded line)`` of every non-blank line."""
        self.stream.seek(0)
        for number, line in enumerate(self.stream, start=1):
            text = line.removeprefix(codecs.BOM_UTF8) if number == 1 else line
            if text.strip():
                yield number, orjson.loads(text)


def _scan_ndjson(stream: IO[bytes], sample_rows: int) -> _NdjsonFile:
    total = 0
    keys: set[str] = set()
    for number, line in enumerate(stream, start=1):
        text = line.removeprefix(codecs.BOM_UTF8) if number == 1 else line
        if not text.strip():
            continue
        if number == 1 and text.lstrip().startswith(_PARQUET_MAGIC):
            raise _file_error(
                "This is a Parquet file, not NDJSON; import it with the format parquet.",
                "not an NDJSON file",
            )
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _file_error(
                f"Line {number} is not valid JSON ({exc}); NDJSON holds one JSON object per line.",
                "not valid JSON",
                number,
            ) from None
        if not isinstance(value, dict):
            kind = "an array" if isinstance(value, list) else "not an object"
            raise _file_error(
                f"Line {number} is {kind}; NDJSON holds one JSON object (one message) per line.",
                "not a JSON object",
                number,
            )
        total += 1
        if total <= sample_rows:
            keys.update(value)
    if total == 0:
        raise _file_error("The file is empty.", "empty file")
    return _NdjsonFile(stream, total, keys)


@dataclass
class _ParquetFile:
    file: pq.ParquetFile
    total: int
    columns: list[str] | None = None
    chunk_rows: int = CHUNK_ROWS

    @property
    def names(self) -> list[str]:
        names: list[str] = self.file.schema_arrow.names
        return names

    def rows(self) -> Iterator[tuple[int, Any]]:
        number = 0
        for batch in self.file.iter_batches(batch_size=self.chunk_rows, columns=self.columns):
            for row in batch.to_pylist():
                number += 1
                yield number, row

    def check(self) -> None:
        """Decode every page of the columns to be read, so a damaged file stores nothing."""
        try:
            for batch in self.file.iter_batches(batch_size=self.chunk_rows, columns=self.columns):
                batch.validate(full=True)  # e.g. text that is not UTF-8
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise _file_error(
                f"The Parquet file is damaged: {str(exc)[:300]}", "corrupt Parquet"
            ) from None


def _open_parquet(stream: IO[bytes], chunk_rows: int) -> _ParquetFile:
    stream.seek(0)
    try:
        found = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _file_error(
            f"This is not a readable Parquet file: {str(exc)[:300]}", "not a Parquet file"
        ) from None
    return _ParquetFile(found, found.metadata.num_rows, None, chunk_rows)


def _resolve(
    rule: _Rule, known: Sequence[str], *, fuzzy: bool, nested: bool
) -> tuple[str, ...] | None:
    """How to reach a mapped column in a row: its name, a CSV header that matches it loosely
    (``Customer ID`` for ``customer_id``), or a path into nested objects (``customer.id``)."""
    column = rule.column
    if column in known:
        return (column,)
    if fuzzy:
        wanted = header_key(column)
        matches = [h for h in known if header_key(h) == wanted]
        if len(matches) == 1:
            return (matches[0],)
    if nested and "." in column:
        parts = tuple(column.split("."))
        if parts[0] in known:
            return parts
    return None


def _bind(
    plan: _Plan, known: Sequence[str], *, fuzzy: bool, nested: bool, what: str
) -> tuple[_Rule, ...]:
    """The plan's rules with their columns found in the file; 422 naming any that is not."""
    bound: list[_Rule] = []
    errors: list[FieldError] = []
    missing: list[str] = []
    for rule in plan.rules:
        keys = _resolve(rule, known, fuzzy=fuzzy, nested=nested)
        if keys is None:
            missing.append(rule.column)
            errors.append(
                FieldError(
                    ("mapping", "fields", rule.key), f"the file has no column '{rule.column}'"
                )
            )
            continue
        bound.append(replace(rule, keys=keys))
    if errors:
        shown = ", ".join(list(known)[:30]) or "none"
        raise ValidationFailed(
            f"The mapping names a column the file does not have ({missing[0]!r}); "
            f"the {what}: {shown}.",
            errors,
        )
    return tuple(bound)


# ----------------------------------------------------------------------------- the import


@dataclass
class _Run:
    """One import as it goes: the mapping bound to the file, the counts, the errors."""

    source_id: int
    plan: _Plan
    rules: tuple[_Rule, ...]
    as_is: bool  # rows are Segment messages already
    from_text: bool  # cells are CSV text
    native: bool  # values are Parquet's (times, decimals), not JSON's
    limits: Limits
    result: EventImportResult
    max_errors: int
    on_error: ErrorSink | None
    file_name: str | None
    columns: dict[str, str] = field(default_factory=dict)  # target -> column

    def message(self, raw: Any) -> tuple[Any, list[tuple[str, Any, str]]]:
        """The Segment message of one row, and (field, raw value, reason) of what failed."""
        plan = self.plan
        problems: list[tuple[str, Any, str]] = []
        if self.as_is:
            if not isinstance(raw, dict):
                return raw, problems
            if self.native:
                message = {k: _plain(v, plan.zone) for k, v in raw.items() if v is not None}
            else:
                message = dict(raw)
            message.pop("writeKey", None)
            for part in OBJECT_TARGETS:
                value = message.get(part)
                if isinstance(value, str) and value.lstrip().startswith("{"):
                    # Parquet has no free-form objects: writers keep them as JSON text.
                    with suppress(orjson.JSONDecodeError):
                        message[part] = orjson.loads(value)
        else:
            message = {}
            for rule in self.rules:
                value = raw
                for key in rule.keys:
                    value = value.get(key) if isinstance(value, dict) else None
                try:
                    converted = _convert(value, rule.kind, plan.zone, self.from_text)
                except ValueError as exc:
                    problems.append((rule.target, value, str(exc)))
                    converted = value  # kept as it was, for a failed event to show
                if converted is _NOTHING:
                    continue
                if rule.target == "type" and isinstance(converted, str):
                    converted = converted.strip().lower()
                if not _place(message, rule.path, converted):
                    problems.append((rule.target, value, f"{rule.path[0]} is not an object"))
        if plan.fixed_type and not message.get("type"):
            message["type"] = plan.fixed_type
        elif not self.as_is and not message.get("type"):
            message["type"] = "track"
        if plan.fixed_event and not message.get("event"):
            message["event"] = plan.fixed_event
        return message, problems

    def report(self, number: int, target: str, value: Any, reason: str) -> None:
        result = self.result
        result.error_count += 1
        column = self.columns.get(target) or self.columns.get(target.split(".")[0])
        shown = None
        if value is not None:
            shown = value if isinstance(value, str) else orjson.dumps(_plain(value)).decode()
            shown = shown[:200]
        error = EventImportRowError(
            row=number, field=target or "message", column=column, value=shown, reason=reason
        )
        if self.on_error is not None:
            self.on_error(error)
        if len(result.errors) < self.max_errors:
            result.errors.append(error)
        else:
            result.errors_omitted += 1

    def chunk(
        self, items: list[tuple[int, Any]], received_at: datetime
    ) -> tuple[list[EventRow], list[FailedRow]]:
        """Map and validate a chunk of rows: the event rows, and the failed ones."""
        envelope = Envelope(source_id=self.source_id, received_at=received_at)
        rows: list[EventRow] = []
        failed: list[FailedRow] = []
        for number, raw in items:
            message, problems = self.message(raw)
            derived = isinstance(message, dict) and not message.get("messageId")
            if derived:
                try:
                    message["messageId"] = derived_message_id(self.source_id, message)
                except orjson.JSONEncodeError as exc:
                    problems.append(("", None, f"the row cannot be stored as JSON: {exc}"))
            row, found = normalise(message, envelope, self.limits)
            converted = {target for target, _, _ in problems}
            problems.extend(
                (_where(p.loc), None, p.msg) for p in found if _where(p.loc) not in converted
            )
            if row is not None and not problems:
                rows.append(row)
                continue
            self.result.rejected += 1
            for target, value, reason in problems:
                if value is None and target and isinstance(message, dict):
                    value = _lookup(message, target)
                self.report(number, target, value, reason)
            if derived:
                # A failed event shows the row as mapped; a replay of it gets a fresh id.
                message.pop("messageId", None)
            failed.append(self.failed_row(number, received_at, message, problems))
        return rows, failed

    def failed_row(
        self,
        number: int,
        received_at: datetime,
        message: Any,
        problems: list[tuple[str, Any, str]],
    ) -> FailedRow:
        where = f"row {number}" + (f" of {self.file_name}" if self.file_name else "")
        reason = "; ".join(f"{t}: {r}" if t else r for t, _, r in problems)
        return FailedRow(
            self.source_id,
            received_at,
            f"{where}: {reason}"[:2000],
            [
                {"loc": [p for p in target.split(".") if p], "msg": reason}
                for target, _, reason in problems
            ],
            message,
        )


def _lookup(message: dict[str, Any], target: str) -> Any:
    value: Any = message
    for part in target.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return None if isinstance(value, dict) else value


def import_events(
    stream: IO[bytes],
    *,
    source: SourceRead,
    actor: Actor,
    collector: Collector | None,
    file_format: ImportFormat,
    mapping: EventMapping | None = None,
    limits: Limits | None = None,
    dry_run: bool = False,
    keep_failed: bool = False,
    file_name: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    max_errors: int = MAX_REPORTED_ERRORS,
    progress: Progress | None = None,
    on_error: ErrorSink | None = None,
) -> EventImportResult:
    """Import a file of events into ``source``; see the module docstring.

    ``stream`` is the file, seekable (an open file, an upload's spooled file). Nothing is
    stored on a dry run, nor when the file or the mapping is wrong as a whole (``BadRequest``
    or ``ValidationFailed``). With ``keep_failed``, rejected rows are also kept as failed
    events of the source, to be corrected and replayed there. ``progress(done, total)`` is
    called after each chunk; ``on_error`` sees every row error, the result lists the first
    ``max_errors``.
    """
    require(actor, "events", "write")
    if not source.enabled:
        raise ValidationFailed(
            f"The source {source.name!r} is disabled; enable it to import events into it.",
            [FieldError(("source_id",), "the source is disabled")],
        )
    if collector is None and not dry_run:
        raise ValueError("a collector is needed to store events")
    plan = _plan(mapping or EventMapping())
    data = _uncompressed(stream, file_format)
    try:
        return _import(
            data,
            plan,
            source.id,
            collector,
            file_format,
            limits or Limits(),
            dry_run=dry_run,
            keep_failed=keep_failed,
            file_name=file_name,
            chunk_rows=chunk_rows,
            max_errors=max_errors,
            progress=progress,
            on_error=on_error,
        )
    finally:
        if data is not stream:
            data.close()


def _import(
    data: IO[bytes],
    plan: _Plan,
    source_id: int,
    collector: Collector | None,
    file_format: ImportFormat,
    limits: Limits,
    *,
    dry_run: bool,
    keep_failed: bool,
    file_name: str | None,
    chunk_rows: int,
    max_errors: int,
    progress: Progress | None,
    on_error: ErrorSink | None,
) -> EventImportResult:
    result = EventImportResult(source_id=source_id, format=file_format, dry_run=dry_run)
    rows: Callable[[], Iterator[tuple[int, Any]]]
    as_is = False
    from_text = False
    try:
        if file_format == "csv":
            table = _scan_csv(data)
            result.encoding = {"cp932": "shift_jis", "utf-8-sig": "utf-8"}.get(
                table.codec, table.codec
            )
            if not plan.rules:
                plan = _auto_plan(plan, table.headers)
            rules = _bind(plan, table.headers, fuzzy=True, nested=False, what="columns are")
            used = {r.keys[0] for r in rules}
            result.unmapped_columns = [h for h in table.headers if h not in used]
            total, rows, from_text = table.total, table.rows, True
        elif file_format == "ndjson":
            lines = _scan_ndjson(data, chunk_rows)
            as_is = not plan.rules
            rules = (
                ()
                if as_is
                else _bind(
                    plan,
                    sorted(lines.keys),
                    fuzzy=False,
                    nested=True,
                    what=f"first {chunk_rows} lines have the keys",
                )
            )
            total, rows = lines.total, lines.rows
        else:
            parquet = _open_parquet(data, chunk_rows)
            as_is = not plan.rules
            rules = (
                ()
                if as_is
                else _bind(plan, parquet.names, fuzzy=False, nested=True, what="columns are")
            )
            if rules:
                parquet.columns = sorted({r.keys[0] for r in rules})
                result.unmapped_columns = [n for n in parquet.names if n not in parquet.columns]
            parquet.check()
            total, rows = parquet.total, parquet.rows
    except (OSError, EOFError, zlib.error) as exc:
        raise _file_error(f"The file cannot be read: {str(exc)[:300]}", "unreadable file") from None
    result.fields = {r.key: r.column for r in rules}
    run = _Run(
        source_id=source_id,
        plan=plan,
        rules=rules,
        as_is=as_is,
        from_text=from_text,
        native=file_format == "parquet",
        limits=limits,
        result=result,
        max_errors=max_errors,
        on_error=on_error,
        file_name=file_name,
        columns={r.target: r.column for r in rules},
    )
    if progress is not None:
        progress(0, total)
    pending: list[tuple[int, Any]] = []
    try:
        for item in rows():
            pending.append(item)
            if len(pending) >= chunk_rows:
                _write(run, pending, collector, dry_run, keep_failed)
                pending = []
                if progress is not None:
                    progress(result.rows_read, total)
    except (
        OSError,
        EOFError,
        zlib.error,
        csv.Error,
        orjson.JSONDecodeError,
        UnicodeDecodeError,
        pa.ArrowException,
    ) as exc:
        raise _file_error(
            f"The file could not be read to its end after {result.rows_read} rows: "
            f"{str(exc)[:300]}",
            "unreadable file",
        ) from None
    if pending:
        _write(run, pending, collector, dry_run, keep_failed)
    if progress is not None:
        progress(result.rows_read, total)
    return result


def _write(
    run: _Run,
    items: list[tuple[int, Any]],
    collector: Collector | None,
    dry_run: bool,
    keep_failed: bool,
) -> None:
    result = run.result
    result.rows_read += len(items)
    rows, failed = run.chunk(items, utcnow())
    result.accepted += len(rows)
    if dry_run or collector is None:
        return
    kept = failed if keep_failed else []
    written = collector.write_sync(rows, kept)
    result.stored += written.stored
    result.duplicates += written.duplicates
    result.kept_as_failed += len(kept)


def _auto_plan(plan: _Plan, headers: Sequence[str]) -> _Plan:
    """Without a mapping, a CSV column named for a message field fills it."""
    rules = []
    for header in headers:
        try:
            target, path, kind = _parse_target(header)
        except ValueError:
            continue
        rules.append(_Rule(header, target, path, header, kind))
    if not rules:
        shown = ", ".join(headers[:20])
        raise ValidationFailed(
            f"No column of the file ({shown}) is named for a message field; map them, e.g. "
            "userId=customer_id and properties.revenue=total.",
            [FieldError(("mapping", "fields"), "no column maps to a message field")],
        )
    rules.sort(key=lambda r: len(r.path))
    return replace(plan, rules=tuple(rules))


__all__ = [
    "CHUNK_ROWS",
    "DERIVED_ID_PREFIX",
    "MAX_REPORTED_ERRORS",
    "NUMERIC_PROPERTIES",
    "OBJECT_TARGETS",
    "SCALAR_TARGETS",
    "derived_message_id",
    "detect_format",
    "import_events",
    "mapping_with",
    "parse_mapping",
    "validate_mapping",
]
