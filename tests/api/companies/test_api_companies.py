"""Companies over HTTP: create, read, PATCH, delete, list, bulk; on both engines."""

from __future__ import annotations

from tests.api.conftest import Api, assert_problem

SAKURA = {
    "name": "株式会社サクラ精工",
    "website": "https://www.sakura-seiko.co.jp/",
    "industry": "Manufacturing",
    "employees": 420,
    "annual_revenue": "1250000000.50",
    "revenue_currency": "JPY",
    "phone": "06-1234-5678",
    "country": "jp",
    "tags": ["key-account"],
}


def test_company_lifecycle(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    created = api.post("/api/v1/companies", as_=admin, json=SAKURA)
    assert created.status_code == 201, created.text
    company = created.json()
    path = f"/api/v1/companies/{company['id']}"
    assert created.headers["location"] == path and created.headers["etag"] == '"v1"'
    assert (company["domain"], company["phone"], company["country"]) == (
        "sakura-seiko.co.jp",
        "+81612345678",
        "JP",
    )
    assert company["annual_revenue"] == "1250000000.50"
    child = api.post(
        "/api/v1/companies", as_=admin, json={"name": "Sakura Sales", "parent_id": company["id"]}
    ).json()
    assert_problem(api.patch(path, as_=admin, json={"parent_id": child["id"]}), 422, ("parent_id",))
    patched = api.patch(path, as_=admin, json={"employees": 450}, headers={"If-Match": '"v1"'})
    assert patched.status_code == 200 and patched.json()["employees"] == 450
    assert patched.json()["industry"] == "Manufacturing"
    assert_problem(
        api.patch(path, as_=admin, json={"employees": 1}, headers={"If-Match": '"v1"'}), 412
    )
    found = api.get("/api/v1/companies", as_=admin, params={"q": "サクラ"}).json()
    assert [c["id"] for c in found["items"]] == [company["id"]]
    listed = api.get(
        "/api/v1/companies", as_=admin, params={"filter": "employees:gte:400", "sort": "-name"}
    ).json()
    assert [c["id"] for c in listed["items"]] == [company["id"]]
    assert [e["action"] for e in api.get(f"{path}/history", as_=admin).json()] == [
        "update",
        "create",
    ]
    contact = api.post(
        "/api/v1/contacts", as_=admin, json={"last_name": "X", "email": "x@sakura-seiko.co.jp"}
    ).json()
    assert contact["company_id"] == company["id"]
    assert api.delete(path, as_=admin).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)
    assert api.get(f"/api/v1/contacts/{contact['id']}", as_=admin).json()["company_id"] is None
    assert api.get(f"/api/v1/companies/{child['id']}", as_=admin).json()["parent_id"] is None


def test_external_id_conflict_is_409(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    api.post("/api/v1/companies", as_=admin, json={"name": "A", "external_id": "SF-1"})
    assert_problem(
        api.post("/api/v1/companies", as_=admin, json={"name": "B", "external_id": "SF-1"}),
        409,
        ("external_id",),
    )


def test_company_bulk_endpoint(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    response = api.post(
        "/api/v1/companies/bulk",
        as_=admin,
        json={
            "match_on": "external_id",
            "records": [
                {"external_id": "A-1", "name": "Alpha"},
                {"external_id": "A-1", "name": "Alpha", "city": "Tokyo"},
                {"external_id": 7, "name": "Typed wrong"},
                {"name": "No key"},
                {"external_id": "A-2"},
            ],
        },
    )
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()] == [
        "created",
        "updated",
        "error",
        "created",
        "error",
    ]
    by_domain = api.post(
        "/api/v1/companies/bulk",
        as_=admin,
        json={
            "match_on": "domain",
            "records": [
                {"domain": "beta.example", "name": "Beta"},
                {"domain": 12, "name": "Bad domain"},
                {"domain": "not a domain", "name": "Bad"},
            ],
        },
    )
    assert by_domain.status_code == 200, by_domain.text
    assert [r["status"] for r in by_domain.json()] == ["created", "error", "error"]
    assert_problem(
        api.post("/api/v1/companies/bulk", as_=admin, json={"records": [{"name": "x"}] * 1001}),
        422,
        ("body", "records"),
    )
    assert_problem(
        api.post("/api/v1/companies/bulk", as_=admin, json={"records": [{}], "match_on": "name"}),
        422,
        ("body", "match_on"),
    )


def test_money_reads_back_the_same_on_both_engines(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    for sent, shown in [("10", "10.00"), ("0", "0.00"), ("1234.5", "1234.50"), (None, None)]:
        created = api.post(
            "/api/v1/companies", as_=admin, json={"name": f"M{sent}", "annual_revenue": sent}
        )
        assert created.status_code == 201, created.text
        read = api.get(created.headers["location"], as_=admin).json()
        assert read["annual_revenue"] == shown, (sent, read["annual_revenue"])
        # Sending the same amount again is not a change.
        again = api.patch(created.headers["location"], as_=admin, json={"annual_revenue": sent})
        assert again.json()["version"] == 1
