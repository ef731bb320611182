"""``POST /api/v1/events/imports``: event files uploaded through the JSON API."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from tests.api.conftest import Api, Caller, assert_problem

DATA = Path(__file__).parents[2] / "data" / "events"
MAPPING = (DATA / "purchases_mapping.json").read_text(encoding="utf-8")
URL = "/api/v1/events/imports"


def make_source(api: Api, name: str = "Web shop") -> int:
    response = api.post("/api/v1/sources", as_=api.admin, json={"name": name, "kind": "file"})
    assert response.status_code == 201, response.text
    source_id: int = response.json()["id"]
    return source_id


def upload(
    api: Api,
    source_id: int | str,
    name: str,
    content: bytes,
    as_: Caller | None = None,
    **form: Any,
) -> httpx.Response:
    """Upload a file with form fields (objects are sent as JSON text)."""
    data = {"source_id": str(source_id)}
    data.update({k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in form.items()})
    return api.post(URL, as_=as_ or api.admin, files={"file": (name, content)}, data=data)


def events(api: Api, source_id: int) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/events?source_id={source_id}&limit=1000", as_=api.admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_purchases_csv_uploads_as_order_completed_events(api: Api) -> None:
    source_id = make_source(api)
    content = (DATA / "purchases.csv").read_bytes()

    first = upload(api, source_id, "purchases.csv", content, mapping=MAPPING)
    again = upload(api, source_id, "purchases.csv", content, mapping=MAPPING)

    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["format"], body["rows_read"], body["stored"], body["rejected"]) == (
        "csv",
        3,
        3,
        0,
    )
    assert body["fields"]["properties.revenue"] == "total"
    assert (again.json()["stored"], again.json()["duplicates"]) == (0, 3)
    found = events(api, source_id)
    assert len(found) == 3 and {e["event"] for e in found} == {"Order Completed"}
    revenues = sorted(e["properties"]["revenue"] for e in found)
    assert revenues == [980, 4500.5, 12800]
    assert all(isinstance(e["properties"]["products"], list) for e in found)


def test_bad_rows_are_listed_and_good_ones_stored(api: Api) -> None:
    source_id = make_source(api)
    mapping = orjson.loads(MAPPING)
    del mapping["fields"]["properties.coupon"]

    response = upload(
        api,
        source_id,
        "purchases_with_errors.csv",
        (DATA / "purchases_with_errors.csv").read_bytes(),
        mapping=mapping,
        keep_failed="true",
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stored"], body["rejected"], body["kept_as_failed"]) == (2, 4, 4)
    assert [(e["row"], e["field"], e["column"]) for e in body["errors"]] == [
        (3, "properties.revenue", "total"),
        (4, "userId", "customer_id"),
        (6, "timestamp", "ordered_at"),
        (7, "properties.products", "items"),
    ]
    failed = api.get(f"/api/v1/failed-events?source_id={source_id}", as_=api.admin).json()
    assert len(failed) == 4 and all("purchases_with_errors.csv" in f["reason"] for f in failed)
    assert len(events(api, source_id)) == 2


def test_ndjson_and_parquet_uploads_without_a_mapping(api: Api) -> None:
    source_id = make_source(api)
    out = io.BytesIO()
    pq.write_table(
        pa.table(
            {
                "type": ["track", "track"],
                "anonymousId": ["a-1", "a-2"],
                "event": ["Video Played", "Video Paused"],
            }
        ),
        out,
    )

    ndjson = upload(
        api, source_id, "messages.ndjson", (DATA / "segment_messages.ndjson").read_bytes()
    )
    parquet = upload(api, source_id, "videos.parquet", out.getvalue())

    assert ndjson.status_code == 200 and ndjson.json()["stored"] == 4, ndjson.text
    assert parquet.status_code == 200 and parquet.json()["stored"] == 2, parquet.text
    assert len(events(api, source_id)) == 6


def test_a_dry_run_stores_nothing(api: Api) -> None:
    source_id = make_source(api)
    response = upload(
        api,
        source_id,
        "purchases.csv",
        (DATA / "purchases.csv").read_bytes(),
        mapping=MAPPING,
        dry_run="true",
    )

    assert response.status_code == 200, response.text
    assert response.json()["dry_run"] is True
    assert (response.json()["accepted"], response.json()["stored"]) == (3, 0)
    assert events(api, source_id) == []


#: (file name, content, form fields, status, an error location the answer must name)
BAD_INPUT: list[tuple[str, bytes, dict[str, Any], int, tuple[str | int, ...]]] = [
    ("orders.xlsx", b"PK\x03\x04", {}, 400, ("format",)),
    ("orders.csv", b"a,b\n1,2\n", {"format": "excel"}, 422, ("body", "format")),
    (
        "messages.ndjson",
        b'{"type": "track", "userId": "u", "event": "A"}\n{"type": \n',
        {},
        400,
        ("file", 2),
    ),
    ("events.parquet", b"PAR1 not a Parquet file PAR1", {}, 400, ("file",)),
    ("orders.csv", b"", {}, 400, ("file",)),
    (
        "purchases.csv",
        (DATA / "purchases.csv").read_bytes(),
        {"mapping": {"fields": {"userId": "customer_number"}}},
        422,
        ("mapping", "fields", "userId"),
    ),
    (
        "purchases.csv",
        (DATA / "purchases.csv").read_bytes(),
        {"mapping": {"fields": {"revenue": "total"}}},
        422,
        ("mapping", "fields", "revenue"),
    ),
    (
        "purchases.csv",
        (DATA / "purchases.csv").read_bytes(),
        {"mapping": {"type": "purchase"}},
        422,
        ("mapping", "type"),
    ),
    ("purchases.csv", b"a\n1\n", {"mapping": "{not json"}, 400, ("mapping",)),
]


def test_bad_input_is_a_clear_4xx_and_stores_nothing(api: Api) -> None:
    source_id = make_source(api)
    for name, content, form, status, loc in BAD_INPUT:
        response = upload(api, source_id, name, content, **form)
        assert_problem(response, status, loc)
    # Not even the good first line of the broken NDJSON file was stored.
    assert events(api, source_id) == []


def test_the_source_must_exist_and_the_caller_may_write_events(api: Api) -> None:
    source_id = make_source(api)
    content = (DATA / "purchases.csv").read_bytes()

    missing = upload(api, 9999, "purchases.csv", content, mapping=MAPPING)
    no_file = api.post(URL, as_=api.admin, data={"source_id": str(source_id)})
    sales = upload(
        api, source_id, "purchases.csv", content, mapping=MAPPING, as_=api.caller("sales")
    )
    read_only = upload(
        api,
        source_id,
        "purchases.csv",
        content,
        mapping=MAPPING,
        as_=api.caller("admin", scope="read"),
    )
    anonymous = api.post(
        URL, files={"file": ("purchases.csv", content)}, data={"source_id": str(source_id)}
    )

    assert_problem(missing, 404)
    assert_problem(no_file, 422, ("body", "file"))
    assert_problem(sales, 403)
    assert_problem(read_only, 403)
    assert anonymous.status_code == 401
    assert events(api, source_id) == []
