"""Contacts over HTTP: create, read, PATCH, delete, list, search, bulk; on both engines."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, assert_problem

YAMADA = {
    "last_name": "山田",
    "first_name": "太郎",
    "last_name_reading": "ヤマダ",
    "emails": [{"email": "Taro.Yamada@Sakura-Seiko.co.jp", "primary": True}],
    "phones": [{"number": "090-1234-5678", "label": "mobile"}],
    "job_title": "購買部長",
    "lifecycle_stage": "lead",
    "tags": ["展示会2026"],
}


def test_contact_lifecycle(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    created = api.post("/api/v1/contacts", as_=admin, json=YAMADA)
    assert created.status_code == 201, created.text
    contact = created.json()
    path = f"/api/v1/contacts/{contact['id']}"
    assert created.headers["location"] == path
    assert created.headers["etag"] == '"v1"'
    assert contact["full_name"] == "山田 太郎"
    assert contact["primary_email"] == "taro.yamada@sakura-seiko.co.jp"
    assert contact["primary_phone"] == "+819012345678"
    assert contact["version"] == 1

    fetched = api.get(path, as_=admin)
    assert fetched.json() == contact and fetched.headers["etag"] == '"v1"'

    # PATCH: unset fields stay, null clears, lists are replaced whole.
    patched = api.patch(
        path,
        as_=admin,
        json={"city": "大阪市", "job_title": None, "tags": ["vip"]},
        headers={"If-Match": '"v1"'},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["city"], body["job_title"], body["tags"]) == ("大阪市", None, ["vip"])
    assert body["last_name"] == "山田" and body["primary_phone"] == "+819012345678"
    assert body["version"] == 2 and patched.headers["etag"] == '"v2"'
    # An empty PATCH changes nothing and keeps the version.
    same = api.patch(path, as_=admin, json={})
    assert same.status_code == 200 and same.json()["version"] == 2

    found = api.get("/api/v1/contacts", as_=admin, params={"q": "やまだ"}).json()
    assert [c["id"] for c in found["items"]] == [contact["id"]]
    found = api.get("/api/v1/contacts", as_=admin, params={"filter": "tags:contains:vip"}).json()
    assert [c["id"] for c in found["items"]] == [contact["id"]]

    history = api.get(f"{path}/history", as_=admin).json()
    assert [e["action"] for e in history] == ["update", "create"]
    assert history[0]["changes"]["city"] == [None, "大阪市"]

    assert api.delete(path, as_=admin).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)
    assert_problem(api.patch(path, as_=admin, json={"city": "x"}), 404)
    assert_problem(api.delete(path, as_=admin), 404)
    assert_problem(api.get(f"{path}/history", as_=admin), 404)


def test_duplicate_email_is_409(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    assert api.post("/api/v1/contacts", as_=admin, json=YAMADA).status_code == 201
    again = {"last_name": "Other", "email": "TARO.YAMADA@sakura-seiko.co.jp"}
    assert_problem(api.post("/api/v1/contacts", as_=admin, json=again), 409)
    assert len(api.get("/api/v1/contacts", as_=admin).json()["items"]) == 1


def test_paging_through_every_contact(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    records = [{"last_name": f"P{n:02}", "city": ["a", None, "b"][n % 3]} for n in range(23)]
    bulk = api.post("/api/v1/contacts/bulk", as_=admin, json={"records": records})
    assert bulk.json()["created"] == 23
    for sort in ("id", "-id", "name", "-city", "city", "-updated_at"):
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 5, "sort": sort}
        while True:
            page = api.get("/api/v1/contacts", as_=admin, params=params).json()
            seen += [c["id"] for c in page["items"]]
            if not page["next_cursor"]:
                break
            params["cursor"] = page["next_cursor"]
        assert len(seen) == 23 and len(set(seen)) == 23, sort


def test_bulk_endpoint(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    api.post("/api/v1/contacts", as_=admin, json={"last_name": "Old", "email": "old@example.com"})
    payload = {
        "match_on": "email",
        "records": [
            {"email": "old@example.com", "city": "Kyoto"},
            {"email": "new@example.com", "last_name": "New"},
            {"email": "broken", "last_name": "Bad"},
            {"email": "x@example.com", "lifecycle_stage": "vip"},
        ],
    }
    dry = api.post("/api/v1/contacts/bulk", as_=admin, json={**payload, "dry_run": True}).json()
    assert (dry["created"], dry["updated"], dry["errors"], dry["dry_run"]) == (1, 1, 2, True)
    assert len(api.get("/api/v1/contacts", as_=admin).json()["items"]) == 1
    response = api.post("/api/v1/contacts/bulk", as_=admin, json=payload)
    assert response.status_code == 200
    outcome = response.json()
    assert (outcome["created"], outcome["updated"], outcome["unchanged"], outcome["errors"]) == (
        1,
        1,
        0,
        2,
    )
    errors = {r["index"]: r["errors"] for r in outcome["results"] if r["status"] == "error"}
    assert [e["loc"] for e in errors[2]] == [["email"]]
    assert [e["loc"] for e in errors[3]] == [["lifecycle_stage"]]
    assert len(api.get("/api/v1/contacts", as_=admin).json()["items"]) == 2
    by_ext = api.post(
        "/api/v1/contacts/bulk",
        as_=admin,
        json={"match_on": "external_id", "records": [{"external_id": "E-1", "last_name": "E"}]},
    ).json()
    assert by_ext["created"] == 1
    assert_problem(
        api.post("/api/v1/contacts/bulk", as_=admin, json={"records": [{}] * 1001}),
        422,
        ("body", "records"),
    )
    assert_problem(api.post("/api/v1/contacts/bulk", as_=admin, json={"records": []}), 422)
    assert_problem(
        api.post("/api/v1/contacts/bulk", as_=admin, json={"records": [{}], "mode": "merge"}),
        422,
        ("body", "mode"),
    )


def test_bulk_limit_follows_the_settings(api_factory: Any) -> None:
    api: Api = api_factory(max_bulk_records=3)
    records = [{"last_name": f"N{n}"} for n in range(4)]
    assert_problem(
        api.post("/api/v1/contacts/bulk", as_=api.admin, json={"records": records}),
        400,
        ("body", "records"),
    )
    assert api.get("/api/v1/contacts", as_=api.admin).json()["items"] == []
