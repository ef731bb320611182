"""Health, readiness, metrics, the OpenAPI document, audit and custom fields over HTTP."""

from __future__ import annotations

import schemathesis
from sqlalchemy import text
from starlette.testclient import TestClient
from tests.api.conftest import Api, assert_problem

from ichigen.collect.ingest_log import log_directory
from ichigen.core.db import Database, create_db_engine
from ichigen.web.app import create_app


def test_health_and_readiness(api: Api) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_readiness_names_ingest_log_segments_set_aside(api: Api) -> None:
    app = api.client.app
    store_path = app.state.collect.collector.store.path  # type: ignore[attr-defined]
    damaged = log_directory(store_path) / "damaged"
    damaged.mkdir(parents=True)
    (damaged / "abc.00000000000000000007.log").write_bytes(b"ILG1")
    ready = api.get("/readyz")
    assert ready.status_code == 200  # the store works; a person should look
    [warning] = ready.json()["warnings"]
    assert warning.startswith("1 ingest log segment(s) damaged") and str(damaged) in warning


def test_readiness_reports_an_unreachable_store_as_503(sqlite_db: Database) -> None:
    # Nothing listens on port 1 of this machine: the connection is refused at once.
    engine = create_db_engine("postgresql://nobody@127.0.0.1:1/none", pool_size=1)
    unreachable = Database(engine, sqlite_db.settings)
    try:
        with TestClient(create_app(unreachable.settings, unreachable)) as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
    finally:
        engine.dispose()


def test_metrics_count_requests_by_route(api: Api) -> None:
    api.get("/healthz")
    api.get("/api/v1/contacts", as_=api.admin)
    api.get("/api/v1/contacts/123", as_=api.admin)
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert 'ichigen_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in body
    assert (
        'ichigen_http_requests_total{method="GET",route="/api/v1/contacts/{contact_id}",'
        'status="404"} 1.0' in body
    )
    assert "ichigen_http_request_seconds_bucket" in body


def test_openapi_document_is_valid_and_describes_the_api(api: Api) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    schemathesis.openapi.from_dict(document).validate()
    paths = document["paths"]
    for path in (
        "/api/v1/contacts",
        "/api/v1/contacts/{contact_id}",
        "/api/v1/contacts/bulk",
        "/api/v1/companies",
        "/api/v1/companies/{company_id}",
        "/api/v1/users",
        "/api/v1/teams",
        "/api/v1/custom-fields",
        "/api/v1/audit",
        "/healthz",
    ):
        assert path in paths, path
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/contacts/{contact_id}"])
    contact_id = paths["/api/v1/contacts/{contact_id}"]["get"]["parameters"][0]
    assert contact_id["schema"]["maximum"] == 2**63 - 1
    schemas = document["components"]["schemas"]
    assert schemas["ContactCreate"]["additionalProperties"] is False
    assert schemas["ContactCreate"]["examples"]


def test_audit_endpoint_pages_a_records_history(api: Api) -> None:
    admin = api.admin
    created = api.post("/api/v1/contacts", as_=admin, json={"last_name": "A"}).json()
    path = f"/api/v1/contacts/{created['id']}"
    for city in ("B", "C", "D"):
        api.patch(path, as_=admin, json={"city": city})
    entries = api.get(
        "/api/v1/audit", as_=admin, params={"entity": "contacts", "record_id": created["id"]}
    ).json()
    assert [e["action"] for e in entries] == ["update", "update", "update", "create"]
    assert entries[0]["changes"] == {"city": ["C", "D"]}
    assert entries[0]["actor_label"] == "admin@example.com" and entries[0]["via"] == "token"
    older = api.get(
        "/api/v1/audit",
        as_=admin,
        params={
            "entity": "contacts",
            "record_id": created["id"],
            "before_id": entries[1]["id"],
            "limit": 1,
        },
    ).json()
    assert [e["id"] for e in older] == [entries[2]["id"]]
    assert api.get(f"{path}/history", as_=admin).json() == entries


def test_custom_field_crud_over_http(api: Api) -> None:
    admin = api.admin
    created = api.post(
        "/api/v1/custom-fields",
        as_=admin,
        json={
            "entity": "contacts",
            "key": "tier",
            "label": "Tier",
            "field_type": "select",
            "options": [{"value": "gold"}, {"value": "silver"}],
            "indexed": True,
        },
    )
    assert created.status_code == 201, created.text
    defined = created.json()
    path = created.headers["location"]
    assert path == f"/api/v1/custom-fields/{defined['id']}"
    assert created.headers["etag"] == '"v1"'
    assert_problem(
        api.post(
            "/api/v1/custom-fields",
            as_=admin,
            json={"entity": "contacts", "key": "tier", "label": "X", "field_type": "text"},
        ),
        409,
        ("key",),
    )
    assert_problem(
        api.post(
            "/api/v1/custom-fields",
            as_=admin,
            json={"entity": "contacts", "key": "pick", "label": "X", "field_type": "select"},
        ),
        422,
        ("options",),
    )
    listed = api.get("/api/v1/custom-fields", as_=admin, params={"entity": "contacts"}).json()
    assert [f["key"] for f in listed] == ["tier"]
    assert api.get("/api/v1/custom-fields", as_=admin, params={"entity": "companies"}).json() == []

    # Values are validated on write, filterable and sortable.
    ok = api.post(
        "/api/v1/contacts", as_=admin, json={"last_name": "G", "custom": {"tier": "gold"}}
    )
    assert ok.status_code == 201 and ok.json()["custom"] == {"tier": "gold"}
    assert_problem(
        api.post("/api/v1/contacts", as_=admin, json={"last_name": "B", "custom": {"tier": "tin"}}),
        422,
        ("custom", "tier"),
    )
    found = api.get("/api/v1/contacts", as_=admin, params={"filter": "cf.tier:eq:gold"}).json()
    assert [c["last_name"] for c in found["items"]] == ["G"]
    assert api.get("/api/v1/contacts", as_=admin, params={"sort": "-cf.tier"}).status_code == 200

    changed = api.patch(
        path, as_=admin, json={"label": "Customer tier"}, headers={"If-Match": '"v1"'}
    )
    assert changed.status_code == 200 and changed.headers["etag"] == '"v2"'
    assert_problem(
        api.patch(path, as_=admin, json={"label": "X"}, headers={"If-Match": '"v1"'}), 412
    )
    assert_problem(
        api.patch(path, as_=admin, json={"field_type": "text"}), 422, ("body", "field_type")
    )
    assert api.delete(path, as_=admin).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)
    assert_problem(api.delete(path, as_=admin), 404)
    assert_problem(
        api.get("/api/v1/contacts", as_=admin, params={"filter": "cf.tier:eq:gold"}),
        400,
        ("query", "filter", 0),
    )
    with api.db.engine.connect() as conn:
        assert not conn.execute(
            text("SELECT name FROM sqlite_master WHERE name = 'ix_cf_contacts_tier'")
        ).all()
