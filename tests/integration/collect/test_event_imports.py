"""Event file imports at the service level: real files into a real DuckDB event store, for a
source kept in the record store (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from sqlalchemy.orm import Session
from tests.conftest import SETUP
from typer.testing import CliRunner

from ichigen.cli.main import app
from ichigen.collect import imports, service
from ichigen.collect.ingest import Collector
from ichigen.collect.schemas import (
    EventImportResult,
    EventImportRowError,
    EventMapping,
    ImportFormat,
    SourceCreate,
    SourceRead,
    SourceUpdate,
)
from ichigen.collect.store import DuckDBEventStore, EventFilter
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.errors import BadRequest, PermissionDenied, ValidationFailed
from ichigen.core.settings import get_settings

DATA = Path(__file__).parents[2] / "data" / "events"
PURCHASES = imports.parse_mapping((DATA / "purchases_mapping.json").read_text(encoding="utf-8"))


@pytest.fixture
def source(session: Session) -> SourceRead:
    return service.create_source(session, SourceCreate(name="Web shop", kind="file"), SETUP)


@pytest.fixture
def any_source() -> SourceRead:
    """A source as the service reads it, for tests about files that never reach the store."""
    return _any_source()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    own = Collector(DuckDBEventStore(tmp_path / "events.duckdb", memory_limit="256MB"))
    yield own
    own.close()


def run(
    data: bytes | Path,
    source: SourceRead,
    collector: Collector | None,
    file_format: ImportFormat | None = None,
    mapping: EventMapping | None = None,
    actor: Actor = SETUP,
    **options: Any,
) -> EventImportResult:
    """Import a file (a path, or bytes of a file called ``upload.<format>``)."""
    name = data.name if isinstance(data, Path) else f"upload.{file_format}"
    raw = data.read_bytes() if isinstance(data, Path) else data
    return imports.import_events(
        io.BytesIO(raw),
        source=source,
        actor=actor,
        collector=collector,
        file_format=imports.detect_format(name, file_format),
        mapping=mapping,
        file_name=name,
        **options,
    )


def stored(collector: Collector, source: SourceRead, **where: Any) -> list[dict[str, Any]]:
    page = collector.store.find(EventFilter(source_id=source.id, **where), 1000)
    return sorted(page.events, key=lambda e: e["timestamp"])


def test_a_purchases_csv_becomes_order_completed_events(
    source: SourceRead, collector: Collector
) -> None:
    seen: list[tuple[int, int]] = []
    result = run(
        DATA / "purchases.csv",
        source,
        collector,
        mapping=PURCHASES,
        progress=lambda done, total: seen.append((done, total)),
    )

    assert (result.rows_read, result.stored, result.rejected) == (3, 3, 0)
    assert result.encoding == "utf-8" and result.errors == []
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    events = stored(collector, source)
    assert [e["event"] for e in events] == ["Order Completed"] * 3
    assert [e["type"] for e in events] == ["track"] * 3
    assert [e["user_id"] for e in events] == ["cust-1", "cust-2", "cust-1"]
    # "12,800" is a number; a JSON cell is an array of products; times are in Tokyo time.
    first, second, third = events
    assert first["properties"]["revenue"] == 12800
    assert second["properties"]["revenue"] == 4500.5
    assert first["properties"]["products"] == [
        {"sku": "TEA-01", "name": "Sencha", "price": 3200, "quantity": 4}
    ]
    assert third["properties"]["products"] == []
    assert first["timestamp"] == datetime(2024, 5, 1, 1, 15, tzinfo=UTC)
    assert second["timestamp"] == datetime(2024, 5, 1, 23, 0, tzinfo=UTC)
    assert third["timestamp"] == datetime(2024, 5, 3, 10, 30, tzinfo=UTC)
    assert second["properties"]["coupon"] == "SPRING" and "coupon" not in first["properties"]
    assert all(e["message_id"].startswith(imports.DERIVED_ID_PREFIX) for e in events)


def test_importing_the_same_file_again_stores_nothing_new(
    source: SourceRead, collector: Collector
) -> None:
    first = run(DATA / "purchases.csv", source, collector, mapping=PURCHASES)
    again = run(DATA / "purchases.csv", source, collector, mapping=PURCHASES)

    assert (first.stored, first.duplicates) == (3, 0)
    assert (again.stored, again.duplicates, again.accepted) == (0, 3, 3)
    assert collector.store.count(source.id) == 3


def test_the_same_file_after_a_restart_is_still_recognised(
    source: SourceRead, tmp_path: Path
) -> None:
    """Derived ids depend on the row only, so a new process (a new collector) skips them too."""
    for expected in (3, 0):
        own = Collector(DuckDBEventStore(tmp_path / "events.duckdb", memory_limit="256MB"))
        try:
            assert run(DATA / "purchases.csv", source, own, mapping=PURCHASES).stored == expected
        finally:
            own.close()


def test_ndjson_of_segment_messages_is_taken_as_it_is(
    source: SourceRead, collector: Collector
) -> None:
    result = run(DATA / "segment_messages.ndjson", source, collector)

    assert (result.rows_read, result.stored, result.rejected) == (4, 4, 0)
    events = stored(collector, source)
    assert [e["type"] for e in events] == ["identify", "track", "page", "alias"]
    identify, track, page, alias = events
    assert identify["message_id"] == "m-identify-1"
    assert identify["traits"] == {"email": "hanako@example.com", "plan": "pro"}
    assert track["message_id"] == "m-track-1" and track["properties"]["revenue"] == 12800
    assert page["name"] == "Pricing" and page["anonymous_id"] == "anon-7"
    assert page["message_id"].startswith(imports.DERIVED_ID_PREFIX)
    assert alias["previous_id"] == "anon-7"
    assert run(DATA / "segment_messages.ndjson", source, collector).duplicates == 4


def test_gzipped_ndjson_is_read(source: SourceRead, collector: Collector) -> None:
    data = gzip.compress((DATA / "segment_messages.ndjson").read_bytes())
    result = run(data, source, collector, "ndjson")
    assert result.stored == 4


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=2)
    return out.getvalue()


def test_a_parquet_file_is_mapped_in_record_batches(
    source: SourceRead, collector: Collector
) -> None:
    items = pa.list_(pa.struct([("sku", pa.string()), ("quantity", pa.int32())]))
    table = pa.table(
        {
            "customer": pa.array(["c-1", "c-2", "c-3", "c-4", "c-5"]),
            "amount": pa.array(
                [Decimal("1200.00"), Decimal("99.50"), None, Decimal("5"), Decimal("7")],
                pa.decimal128(10, 2),
            ),
            "at": pa.array(
                [datetime(2024, 7, d, 9, tzinfo=UTC) for d in range(1, 6)],
                pa.timestamp("us", tz="UTC"),
            ),
            "items": pa.array(
                [[{"sku": "A", "quantity": 2}], [], [{"sku": "B", "quantity": 1}], [], []],
                items,
            ),
            "note": pa.array(["x"] * 5),
        }
    )
    mapping = EventMapping(
        event="Order Completed",
        fields={
            "userId": "customer",
            "properties.revenue": "amount",
            "timestamp": "at",
            "properties.products": "items",
        },
    )
    seen: list[int] = []

    result = run(
        _parquet(table),
        source,
        collector,
        "parquet",
        mapping,
        chunk_rows=2,
        progress=lambda done, total: seen.append(done),
    )

    assert (result.rows_read, result.stored, result.rejected) == (5, 5, 0)
    assert seen == [0, 2, 4, 5] and result.unmapped_columns == ["note"]
    events = stored(collector, source)
    assert [e["user_id"] for e in events] == ["c-1", "c-2", "c-3", "c-4", "c-5"]
    assert events[0]["properties"] == {
        "revenue": 1200,
        "products": [{"sku": "A", "quantity": 2}],
    }
    assert events[1]["properties"]["revenue"] == 99.5
    assert "revenue" not in events[2]["properties"]  # a null cell leaves the field out
    assert events[4]["timestamp"] == datetime(2024, 7, 5, 9, tzinfo=UTC)


def test_a_parquet_file_of_segment_messages_is_taken_as_it_is(
    source: SourceRead, collector: Collector
) -> None:
    table = pa.table(
        {
            "type": ["track", "identify"],
            "userId": ["u-1", "u-2"],
            "event": ["Signed Up", None],
            "timestamp": pa.array(
                [datetime(2024, 1, 1, 12), datetime(2024, 1, 2, 12)], pa.timestamp("ms")
            ),
            "properties": ['{"plan": "pro"}', None],
            "traits": [None, '{"email": "u2@example.com"}'],
        }
    )
    result = run(_parquet(table), source, collector, "parquet")

    assert (result.stored, result.rejected) == (2, 0)
    track, identify = stored(collector, source)
    assert track["event"] == "Signed Up" and track["properties"] == {"plan": "pro"}
    assert identify["traits"] == {"email": "u2@example.com"}
    assert track["timestamp"] == datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_a_shift_jis_csv_with_japanese_headers(source: SourceRead, collector: Collector) -> None:
    mapping = imports.mapping_with(
        None,
        event="Order Completed",
        pairs=[
            "userId=顧客ID",
            "timestamp=注文日時",
            "properties.order_id=注文番号",
            "properties.revenue=合計金額",
            "properties.currency=通貨",
            "properties.store=店舗",
        ],
        timezone="Asia/Tokyo",
    )
    result = run(DATA / "purchases_shift_jis.csv", source, collector, mapping=mapping)

    assert result.encoding == "shift_jis" and (result.stored, result.rejected) == (2, 0)
    first, second = stored(collector, source)
    assert first["user_id"] == "kokyaku-1" and first["properties"]["revenue"] == 12800
    assert second["properties"] == {
        "order_id": "J-2",
        "revenue": 3300,
        "currency": "JPY",
        "store": "髙島屋店",
    }
    assert first["timestamp"] == datetime(2024, 5, 1, 1, 0, tzinfo=UTC)


def test_bad_rows_are_reported_with_their_numbers_and_good_rows_are_stored(
    source: SourceRead, collector: Collector
) -> None:
    mapping = imports.mapping_with(PURCHASES, pairs=["properties.coupon=order_id"])
    seen: list[EventImportRowError] = []
    result = run(
        DATA / "purchases_with_errors.csv",
        source,
        collector,
        mapping=mapping,
        keep_failed=True,
        on_error=seen.append,
    )

    assert (result.rows_read, result.stored, result.rejected) == (6, 2, 4)
    # Row numbers count as a spreadsheet does: the header is row 1, the blank line row 5.
    assert [(e.row, e.field, e.column) for e in result.errors] == [
        (3, "properties.revenue", "total"),
        (4, "userId", "customer_id"),
        (6, "timestamp", "ordered_at"),
        (7, "properties.products", "items"),
    ]
    assert result.errors[0].value == "twelve hundred"
    assert "not a number" in result.errors[0].reason
    assert seen == result.errors and result.error_count == 4
    assert [e["properties"]["order_id"] for e in stored(collector, source)] == [
        "B-2001",
        "B-2006",
    ]
    failed = collector.store.failed(source.id, None, 10, None)
    assert result.kept_as_failed == 4 and len(failed) == 4
    revenue = next(f for f in failed if "row 3 " in f["reason"])
    assert "purchases_with_errors.csv" in revenue["reason"]
    assert revenue["payload"]["properties"]["revenue"] == "twelve hundred"
    assert revenue["problems"] == [
        {"loc": ["properties", "revenue"], "msg": "'twelve hundred' is not a number"}
    ]


def test_rejected_rows_are_not_kept_unless_asked(source: SourceRead, collector: Collector) -> None:
    mapping = imports.mapping_with(PURCHASES, pairs=["properties.coupon=order_id"])
    result = run(
        DATA / "purchases_with_errors.csv", source, collector, mapping=mapping, max_errors=1
    )

    assert result.rejected == 4 and result.kept_as_failed == 0
    assert collector.store.failed(source.id, None, 10, None) == []
    assert len(result.errors) == 1 and result.errors_omitted == 3 and result.error_count == 4


def test_a_dry_run_checks_every_row_and_stores_nothing(
    source: SourceRead, collector: Collector
) -> None:
    mapping = imports.mapping_with(PURCHASES, pairs=["properties.coupon=order_id"])
    without_store = run(
        DATA / "purchases_with_errors.csv", source, None, mapping=mapping, dry_run=True
    )
    with_store = run(DATA / "purchases.csv", source, collector, mapping=PURCHASES, dry_run=True)

    assert without_store.dry_run and (without_store.accepted, without_store.rejected) == (2, 4)
    assert (with_store.accepted, with_store.stored) == (3, 0)
    assert collector.store.count(source.id) == 0
    assert collector.store.failed(source.id, None, 10, None) == []


def test_a_csv_named_for_message_fields_needs_no_mapping(
    source: SourceRead, collector: Collector
) -> None:
    data = (
        b"type,userId,event,properties.plan,properties.revenue,Notes\n"
        b"track,u-1,Plan Changed,pro,300,a\n"
        b"identify,u-2,,,,b\n"
    )
    result = run(data, source, collector, "csv")

    assert (result.stored, result.rejected) == (2, 0)
    assert result.unmapped_columns == ["Notes"]
    track, identify = (stored(collector, source, type=t)[0] for t in ("track", "identify"))
    assert track["properties"] == {"plan": "pro", "revenue": 300}
    assert identify["user_id"] == "u-2" and identify["properties"] is None


def test_a_malformed_line_refuses_the_whole_file(source: SourceRead, collector: Collector) -> None:
    good = (DATA / "segment_messages.ndjson").read_bytes()
    with pytest.raises(BadRequest) as caught:
        run(good + b'{"type": "track", "userId": \n', source, collector, "ndjson")

    assert caught.value.errors[0].loc == ("file", 6)
    assert "Line 6 is not valid JSON" in caught.value.detail
    assert collector.store.count(source.id) == 0


@pytest.mark.parametrize(
    ("data", "file_format", "loc", "words"),
    [
        (b"", "csv", ("file",), "empty"),
        (b'a,"b\n1,2\n', "csv", ("file", 2), "not valid CSV"),
        (b"PK\x03\x04 a workbook", "csv", ("file",), "Excel"),
        (b"[1, 2]\n", "ndjson", ("file", 1), "an array"),
        (b"PAR1 not really PAR1", "parquet", ("file",), "not a readable Parquet"),
        (gzip.compress(b"{}", mtime=0), "parquet", ("file",), "gzip"),
        (b"\x1f\x8b broken gzip", "ndjson", ("file",), "cannot be read"),
    ],
)
def test_a_broken_file_is_refused_as_a_whole(
    any_source: SourceRead,
    collector: Collector,
    data: bytes,
    file_format: ImportFormat,
    loc: tuple[str | int, ...],
    words: str,
) -> None:
    with pytest.raises(BadRequest) as caught:
        run(data, any_source, collector, file_format, PURCHASES)
    assert caught.value.errors[0].loc == loc and words in caught.value.detail


def test_a_damaged_parquet_page_refuses_the_whole_file(
    any_source: SourceRead, collector: Collector
) -> None:
    table = pa.table({"userId": [f"u-{i}" for i in range(400)], "type": ["identify"] * 400})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=100, compression="snappy")
    data = bytearray(out.getvalue())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64  # a page in the middle, past the first chunks

    with pytest.raises(BadRequest) as caught:
        run(bytes(data), any_source, collector, "parquet", chunk_rows=100)
    assert caught.value.errors[0].loc == ("file",)
    assert collector.store.count(any_source.id) == 0


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"userId": "customer_number"}, ("mapping", "fields", "userId")),
        ({"revenue": "total"}, ("mapping", "fields", "revenue")),
        ({"userId.id": "customer_id"}, ("mapping", "fields", "userId.id")),
        ({"properties.revenue:money": "total"}, ("mapping", "fields", "properties.revenue:money")),
        ({"properties..x": "total"}, ("mapping", "fields", "properties..x")),
        (
            {"properties.a": "total", "properties.a.b": "currency"},
            ("mapping", "fields", "properties.a.b"),
        ),
    ],
)
def test_a_bad_mapping_is_refused_before_anything_is_stored(
    any_source: SourceRead,
    collector: Collector,
    fields: dict[str, str],
    loc: tuple[str, ...],
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        run(DATA / "purchases.csv", any_source, collector, mapping=EventMapping(fields=fields))
    assert loc in [e.loc for e in caught.value.errors]
    assert collector.store.count(any_source.id) == 0


def test_mapping_text_and_time_zone_are_checked() -> None:
    with pytest.raises(BadRequest) as not_json:
        imports.parse_mapping("{fields")
    with pytest.raises(ValidationFailed) as unknown_key:
        imports.parse_mapping(orjson.dumps({"colums": {}}).decode())
    with pytest.raises(BadRequest) as pair:
        imports.mapping_with(None, pairs=["userId"])
    with pytest.raises(ValidationFailed) as zone:
        imports.import_events(
            io.BytesIO(b"a\n1\n"),
            source=_any_source(),
            actor=SETUP,
            collector=None,
            file_format="csv",
            mapping=EventMapping(fields={"userId": "a"}, timezone="Mars/Olympus"),
            dry_run=True,
        )

    assert not_json.value.errors[0].loc == ("mapping",)
    assert unknown_key.value.errors[0].loc == ("mapping", "colums")
    assert pair.value.errors[0].loc == ("map", 0)
    assert zone.value.errors[0].loc == ("mapping", "timezone")


def _any_source() -> SourceRead:
    now = datetime.now(UTC)
    return SourceRead(
        id=1,
        name="Any",
        kind="file",
        enabled=True,
        rate_limit_per_second=None,
        retention_days=None,
        version=1,
        created_at=now,
        updated_at=now,
    )


def test_formats_come_from_the_file_name() -> None:
    assert imports.detect_format("orders.CSV") == "csv"
    assert imports.detect_format("archive.jsonl.gz") == "ndjson"
    assert imports.detect_format("events.parquet") == "parquet"
    assert imports.detect_format("whatever.bin", "parquet") == "parquet"
    for name, asked in (("orders.xlsx", None), ("orders.csv", "excel")):
        with pytest.raises(BadRequest) as caught:
            imports.detect_format(name, asked)
        assert caught.value.errors[0].loc == ("format",)


def test_a_disabled_source_and_a_reader_cannot_import(
    session: Session, source: SourceRead, collector: Collector
) -> None:
    reader = Actor(user_id=7, label="viewer", role="viewer", via="api")
    with pytest.raises(PermissionDenied):
        run(DATA / "purchases.csv", source, collector, mapping=PURCHASES, actor=reader)
    disabled = service.update_source(session, source.id, SourceUpdate(enabled=False), SETUP)
    with pytest.raises(ValidationFailed) as caught:
        run(DATA / "purchases.csv", disabled, collector, mapping=PURCHASES)
    assert caught.value.errors[0].loc == ("source_id",)
    assert collector.store.count(source.id) == 0


def test_the_command_imports_a_file_with_a_progress_bar_and_an_error_report(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite_db.sessionmaker() as session:
        service.create_source(session, SourceCreate(name="Web shop", kind="file"), SETUP)
    monkeypatch.setenv("ICHIGEN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ICHIGEN_DATABASE_URL", raising=False)
    monkeypatch.delenv("ICHIGEN_EVENT_STORE_PATH", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()  # the command reads the settings of this test's environment
    report = tmp_path / "errors.csv"
    purchases = ["--mapping-file", str(DATA / "purchases_mapping.json")]

    def ichigen(*args: str) -> Result:
        return CliRunner().invoke(app, ["events", "import", *args, "--source", "Web shop"])

    try:
        first = ichigen(str(DATA / "purchases.csv"), *purchases)
        again = ichigen(str(DATA / "purchases.csv"), *purchases)
        bad = ichigen(
            str(DATA / "purchases_with_errors.csv"),
            *purchases,
            "--map",
            "properties.coupon=order_id",
            "--errors",
            str(report),
        )
        missing = ichigen(str(DATA / "purchases.csv"), "--map", "userId=customer_number")
    finally:
        get_settings.cache_clear()

    assert first.exit_code == 0, first.output
    assert "3 rows read (csv, utf-8): 3 stored, 0 already stored" in first.stdout
    assert "importing purchases.csv" in first.stderr and "3/3" in first.stderr
    assert "0 stored, 3 already stored" in again.stdout
    assert bad.exit_code == 1 and "2 stored" in bad.stdout and "4 rejected" in bad.stdout
    with report.open(encoding="utf-8-sig", newline="") as found:
        rows = list(csv.DictReader(found))
    assert [(r["row"], r["field"], r["column"]) for r in rows] == [
        ("3", "properties.revenue", "total"),
        ("4", "userId", "customer_id"),
        ("6", "timestamp", "ordered_at"),
        ("7", "properties.products", "items"),
    ]
    assert missing.exit_code == 2 and "customer_number" in missing.stderr
    own = DuckDBEventStore(tmp_path / "events.duckdb", memory_limit="256MB")
    try:
        assert own.count() == 5
    finally:
        own.close()
