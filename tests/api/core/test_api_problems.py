"""Bad input over HTTP: each gets a clear 4xx as RFC 9457 problem+json and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.api.conftest import PROBLEM, Api, ApiFactory, assert_problem


def _count(api: Api, path: str = "/api/v1/contacts") -> int:
    return len(api.get(path, as_=api.admin, params={"limit": 500}).json()["items"])


def test_malformed_json_is_400(api: Api) -> None:
    for body in (b"{bad json", b'{"last_name": "x",}', b"\xff\xfe", b'{"last_name": "x"'):
        response = api.post(
            "/api/v1/contacts",
            as_=api.admin,
            content=body,
            headers={"Content-Type": "application/json"},
        )
        problem = assert_problem(response, 400)
        assert problem["title"] == "Malformed JSON"
        assert problem["type"].endswith("/malformed-json")
    # An empty body is a missing body, not malformed JSON.
    empty = api.post(
        "/api/v1/contacts", as_=api.admin, content=b"", headers={"Content-Type": "application/json"}
    )
    assert_problem(empty, 422, ("body",))
    assert _count(api) == 0


#: (path, body, where the problem is)
WRONG_INPUT: list[tuple[str, object, tuple[str | int, ...]]] = [
    ("/api/v1/contacts", {"last_name": 5}, ("body", "last_name")),
    ("/api/v1/contacts", {"last_name": "x", "tags": "vip"}, ("body", "tags")),
    ("/api/v1/contacts", {"last_name": "x", "do_not_email": "often"}, ("body", "do_not_email")),
    ("/api/v1/contacts", {"last_name": "x", "lifecycle_stage": "vip"}, ("body", "lifecycle_stage")),
    (
        "/api/v1/contacts",
        {"last_name": "x", "emails": [{"mail": "a@b.co"}]},
        ("body", "emails", 0, "email"),
    ),
    ("/api/v1/contacts", {"last_name": "x", "nickname": "Taro"}, ("body", "nickname")),
    ("/api/v1/contacts", [], ("body",)),
    ("/api/v1/contacts", {"last_name": "x", "owner_id": 2**64}, ("body", "owner_id")),
    ("/api/v1/companies", {}, ("body", "name")),
    ("/api/v1/companies", {"name": "x", "employees": "many"}, ("body", "employees")),
    ("/api/v1/companies", {"name": "x", "employees": -1}, ("body", "employees")),
    ("/api/v1/companies", {"name": "x", "revenue_currency": "yen"}, ("body", "revenue_currency")),
    ("/api/v1/companies", {"name": "x", "annual_revenue": "1.234"}, ("body", "annual_revenue")),
    ("/api/v1/companies", {"name": "", "city": "x"}, ("body", "name")),
    ("/api/v1/teams", {"name": "x", "members": []}, ("body", "members")),
    (
        "/api/v1/custom-fields",
        {"entity": "tickets", "key": "k", "label": "K", "field_type": "text"},
        ("body", "entity"),
    ),
    (
        "/api/v1/custom-fields",
        {"entity": "contacts", "key": "Bad Key", "label": "K", "field_type": "text"},
        ("body", "key"),
    ),
    (
        "/api/v1/custom-fields",
        {"entity": "contacts", "key": "k", "label": "K", "field_type": "json"},
        ("body", "field_type"),
    ),
]


def test_wrong_types_unknown_fields_and_missing_fields_are_422(api: Api) -> None:
    for path, body, loc in WRONG_INPUT:
        problem = assert_problem(api.post(path, as_=api.admin, json=body), 422, loc)
        assert problem["title"] == "Validation failed"
        assert problem["type"].endswith("/validation")
    assert _count(api, "/api/v1/contacts") == 0
    assert _count(api, "/api/v1/companies") == 0


#: (contact body, where the problem is)
INVALID_CONTACTS: list[tuple[dict[str, object], tuple[str | int, ...]]] = [
    ({"last_name": "x", "email": "not-an-email"}, ("email",)),
    (
        {"last_name": "x", "emails": [{"email": "a@b.co"}, {"email": "nope"}]},
        ("emails", 1, "email"),
    ),
    ({"last_name": "x", "phone": "12"}, ("phone",)),
    ({"last_name": "x", "phones": [{"number": "abcdef"}]}, ("phones", 0, "number")),
    ({"last_name": "x", "owner": "nobody"}, ("owner",)),
    ({"last_name": "x", "company_id": 424242}, ("company_id",)),
    ({"city": "Tokyo"}, ("last_name",)),
    ({"last_name": "x", "custom": {"nope": 1}}, ("custom", "nope")),
]


def test_invalid_email_phone_and_references_are_422_with_loc(api: Api) -> None:
    for body, loc in INVALID_CONTACTS:
        assert_problem(api.post("/api/v1/contacts", as_=api.admin, json=body), 422, loc)
    assert _count(api) == 0


@pytest.fixture
def small(api_factory: ApiFactory) -> Api:
    return api_factory(max_body_bytes=2000)


def test_oversized_body_is_413(small: Api) -> None:
    big = {"last_name": "x", "street": "y" * 5000}
    response = small.post("/api/v1/contacts", as_=small.admin, json=big)
    problem = assert_problem(response, 413)
    assert "2000" in problem["detail"]
    assert small.get("/api/v1/contacts", as_=small.admin).json()["items"] == []
    # Without a Content-Length (a streamed body), the limit still holds.

    def chunks() -> Iterator[bytes]:
        yield b'{"last_name": "x", "street": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    streamed = small.post(
        "/api/v1/contacts",
        as_=small.admin,
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(streamed, 413)
    assert small.get("/api/v1/contacts", as_=small.admin).json()["items"] == []
    # A body under the limit is fine.
    assert (
        small.post("/api/v1/contacts", as_=small.admin, json={"last_name": "x"}).status_code == 201
    )


def test_bad_cursor_sort_filter_and_limit(api: Api) -> None:
    admin = api.admin
    for n in range(3):
        api.post("/api/v1/contacts", as_=admin, json={"last_name": f"N{n}"})
    page = api.get("/api/v1/contacts", as_=admin, params={"limit": 1, "sort": "name"}).json()
    cursor = page["next_cursor"]
    assert cursor
    for params in [
        {"cursor": "garbage", "sort": "name"},
        {"cursor": cursor[:-2], "sort": "name"},
        {"cursor": cursor, "sort": "-name"},
        {"cursor": cursor},
    ]:
        assert_problem(
            api.get("/api/v1/contacts", as_=admin, params=params), 400, ("query", "cursor")
        )
    assert_problem(
        api.get("/api/v1/contacts", as_=admin, params={"sort": "nope"}), 400, ("query", "sort")
    )
    assert_problem(
        api.get("/api/v1/contacts", as_=admin, params={"filter": ["city:eq:x", "city:like:y"]}),
        400,
        ("query", "filter", 1),
    )
    assert_problem(
        api.get("/api/v1/companies", as_=admin, params={"filter": "employees:gt:lots"}),
        400,
        ("query", "filter", 0),
    )
    for limit in (0, 501, "ten"):
        assert_problem(
            api.get("/api/v1/contacts", as_=admin, params={"limit": limit}), 422, ("query", "limit")
        )
    assert_problem(
        api.get("/api/v1/contacts", as_=admin, params={"q": "x" * 201}), 422, ("query", "q")
    )


def test_if_match_stale_malformed_and_wildcard(api: Api) -> None:
    admin = api.admin
    created = api.post("/api/v1/contacts", as_=admin, json={"last_name": "V"})
    path = created.headers["location"]
    ok = api.patch(path, as_=admin, json={"city": "A"}, headers={"If-Match": '"v1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"v2"'
    assert_problem(
        api.patch(path, as_=admin, json={"city": "B"}, headers={"If-Match": '"v1"'}), 412
    )
    for malformed in ("v2", "2", '"2"', '"v-1"', '"v2", "v3"', "W/v2"):
        assert_problem(
            api.patch(path, as_=admin, json={"city": "B"}, headers={"If-Match": malformed}),
            400,
            ("header", "If-Match"),
        )
    assert api.get(path, as_=admin).json()["city"] == "A"
    weak = api.patch(path, as_=admin, json={"city": "C"}, headers={"If-Match": 'W/"v2"'})
    assert weak.status_code == 200
    star = api.patch(path, as_=admin, json={"city": "D"}, headers={"If-Match": "*"})
    assert star.status_code == 200 and star.headers["etag"] == '"v4"'
    assert_problem(api.delete(path, as_=admin, headers={"If-Match": '"v1"'}), 412)
    assert api.delete(path, as_=admin, headers={"If-Match": '"v4"'}).status_code == 204


#: (method, path, status)
ODD_REQUESTS: list[tuple[str, str, int]] = [
    ("GET", "/api/v1/nothing-here", 404),
    ("PUT", "/api/v1/contacts", 405),
    ("GET", "/api/v1/contacts/abc", 422),
    ("GET", "/api/v1/contacts/0", 422),
    ("GET", "/api/v1/contacts/99999999999999999999999", 422),
    ("GET", "/api/v1/companies/9223372036854775808", 422),
    ("GET", "/api/v1/contacts/9223372036854775807", 404),
    ("GET", "/api/v1/contacts?filter=id:eq:99999999999999999999999", 400),
    ("GET", "/api/v1/contacts?filter=created_at:gt:9999-12-31T23:00:00-05:00", 400),
    ("GET", "/api/v1/audit?entity=contacts&record_id=99999999999999999999", 422),
    ("GET", "/api/v1/audit?entity=Bad-Entity&record_id=1", 422),
]


def test_unknown_routes_methods_and_out_of_range_ids(api: Api) -> None:
    for method, path, status in ODD_REQUESTS:
        assert_problem(api.request(method, path, as_=api.admin), status)


def test_problem_bodies_never_leak_internals(api: Api) -> None:
    response = api.post("/api/v1/contacts", as_=api.admin, json={"last_name": 5})
    text = response.text
    assert "Traceback" not in text and "sqlalchemy" not in text.lower()
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["instance"] == "/api/v1/contacts"
