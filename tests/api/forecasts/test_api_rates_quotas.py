"""Exchange rates and quotas over HTTP: set, list, convert, CRUD, and bad input as problems."""

from __future__ import annotations

from tests.api.conftest import Api, assert_problem

RATES = "/api/v1/exchange-rates"
QUOTAS = "/api/v1/quotas"


def test_rates_are_set_listed_used_and_deleted(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    first = api.post(
        RATES, as_=admin, json={"currency": "USD", "rate_date": "2026-10-01", "rate": "150"}
    )
    assert first.status_code == 200, first.text
    assert first.json()["rate"] == "150" and first.json()["base_currency"] == "JPY"
    api.post(
        RATES, as_=admin, json={"currency": "USD", "rate_date": "2026-11-01", "rate": "151.25"}
    )
    listed = api.get(RATES, as_=admin, params={"currency": "usd"}).json()
    assert [r["rate"] for r in listed["items"]] == ["151.25", "150"]
    converted = api.get(
        f"{RATES}/convert",
        as_=admin,
        params={"amount": "1000.10", "currency": "USD", "to": "JPY", "on": "2026-11-15"},
    )
    assert converted.status_code == 200, converted.text
    assert converted.json()["converted"] == "151265"  # 1000.10 × 151.25 = 151265.125
    missing = assert_problem(
        api.get(
            f"{RATES}/convert",
            as_=admin,
            params={"amount": "1", "currency": "USD", "to": "JPY", "on": "2026-09-30"},
        ),
        422,
    )
    assert "USD" in missing["detail"] and "2026-09-30" in missing["detail"]
    rate_id = first.json()["id"]
    assert api.get(f"{RATES}/{rate_id}", as_=admin).json()["rate_date"] == "2026-10-01"
    assert api.delete(f"{RATES}/{rate_id}", as_=admin).status_code == 204
    assert_problem(api.delete(f"{RATES}/{rate_id}", as_=admin), 404)


BAD_RATES: list[tuple[dict[str, object], tuple[str, ...]]] = [
    ({"currency": "XYZ", "rate_date": "2026-11-01", "rate": "1"}, ("currency",)),
    ({"currency": "JPY", "rate_date": "2026-11-01", "rate": "1"}, ("currency",)),
    ({"currency": "USD", "rate_date": "2026-11-01", "rate": "0"}, ("body", "rate")),
    ({"currency": "USD", "rate_date": "2026-11-01", "rate": "abc"}, ("body", "rate")),
    ({"currency": "USD", "rate_date": "2026-13-01", "rate": "1"}, ("body", "rate_date")),
    ({"currency": "USD", "rate_date": "2026-11-01"}, ("body", "rate")),
    ({"currency": "USD", "rate_date": "2026-11-01", "rate": "1", "x": 1}, ("body", "x")),
]


def test_bad_rates_are_problems(api: Api) -> None:
    for body, loc in BAD_RATES:
        assert_problem(api.post(RATES, as_=api.admin, json=body), 422, loc)
    assert api.get(RATES, as_=api.admin).json()["items"] == []


def test_rates_need_the_right_role(api: Api) -> None:
    rep = api.caller("sales")
    body = {"currency": "USD", "rate_date": "2026-11-01", "rate": "150"}
    assert_problem(api.post(RATES, as_=rep, json=body), 403)
    assert api.get(RATES, as_=rep).status_code == 200
    assert_problem(api.get(RATES), 401)
    assert_problem(api.get(RATES, as_=rep, params={"currency": "ABCD"}), 422, ("query", "currency"))


def test_quota_lifecycle(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    rep = api.caller("sales")
    body = {
        "user_id": rep.user.id,
        "period_kind": "quarter",
        "period_start": "2026-10-01",
        "amount": "10000000",
        "currency": "JPY",
    }
    created = api.post(QUOTAS, as_=admin, json=body)
    assert created.status_code == 201, created.text
    quota = created.json()
    path = f"{QUOTAS}/{quota['id']}"
    assert created.headers["location"] == path and created.headers["etag"] == '"v1"'
    assert (quota["period"], quota["amount"]) == ("2026-Q4", "10000000")
    assert_problem(api.post(QUOTAS, as_=admin, json=body), 409, ("period_start",))
    patched = api.patch(path, as_=admin, json={"amount": "12000000"}, headers={"If-Match": '"v1"'})
    assert patched.status_code == 200 and patched.json()["amount"] == "12000000"
    assert patched.headers["etag"] == '"v2"'
    assert_problem(
        api.patch(path, as_=admin, json={"amount": "1"}, headers={"If-Match": '"v1"'}), 412
    )
    assert_problem(api.patch(path, as_=rep, json={"amount": "1"}), 403)
    listed = api.get(QUOTAS, as_=rep, params={"period": "2026-Q4"}).json()
    assert [q["id"] for q in listed["items"]] == [quota["id"]]
    assert api.get(QUOTAS, as_=rep, params={"period": "2026-Q3"}).json()["items"] == []
    assert_problem(api.get(QUOTAS, as_=rep, params={"period": "2026-Q5"}), 422, ("query", "period"))
    assert api.get(path, as_=rep).headers["etag"] == '"v2"'
    assert api.delete(path, as_=admin).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)


BAD_QUOTAS: list[tuple[dict[str, object], tuple[str, ...]]] = [
    ({"period_start": "2026-11-01"}, ("period_start",)),
    ({"period_kind": "week"}, ("body", "period_kind")),
    ({"amount": "-1"}, ("body", "amount")),
    ({"amount": "100.5"}, ("amount",)),
    ({"currency": "ZZZ"}, ("currency",)),
    ({"user_id": None}, ("user_id",)),
    ({"team_id": 1}, ("user_id",)),
    ({"user_id": 0}, ("body", "user_id")),
]


def test_bad_quotas_are_problems(api: Api) -> None:
    rep = api.caller("sales")
    for change, loc in BAD_QUOTAS:
        body: dict[str, object] = {
            "user_id": rep.user.id,
            "period_kind": "quarter",
            "period_start": "2026-10-01",
            "amount": "10000000",
            "currency": "JPY",
        }
        body.update(change)
        assert_problem(api.post(QUOTAS, as_=api.admin, json=body), 422, loc)
    assert api.get(QUOTAS, as_=api.admin).json()["items"] == []
