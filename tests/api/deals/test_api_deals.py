"""Pipelines, lost reasons and deals over HTTP: the lifecycle on both engines, the board, and
every kind of bad input answered with a problem document that names the field."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from tests.api.conftest import Api, Caller, assert_problem


def _pipeline(api: Api, caller: Caller | None = None) -> dict[str, Any]:
    created = api.post("/api/v1/pipelines", as_=caller or api.admin, json={"name": "Sales"})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _stage(pipeline: dict[str, Any], name: str) -> int:
    return int(next(s["id"] for s in pipeline["stages"] if s["name"] == name))


def _deal(api: Api, **fields: Any) -> dict[str, Any]:
    created = api.post("/api/v1/deals", as_=api.admin, json={"name": "Deal", **fields})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def test_pipeline_and_deal_lifecycle(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    pipeline = _pipeline(api)
    assert [s["name"] for s in pipeline["stages"]][:2] == ["Qualified", "Meeting"]
    reason = api.post("/api/v1/lost-reasons", as_=admin, json={"name": "Price"}).json()
    company = api.post("/api/v1/companies", as_=admin, json={"name": "サクラ精工"}).json()
    contact = api.post(
        "/api/v1/contacts", as_=admin, json={"last_name": "山田", "email": "t@sakura.example"}
    ).json()

    created = api.post(
        "/api/v1/deals",
        as_=admin,
        json={
            "name": "生産管理システム更新",
            "amount": "12500000",
            "company_id": company["id"],
            "contacts": [{"contact_id": contact["id"], "role": "decision_maker"}],
            "expected_close_date": (date.today() + timedelta(days=30)).isoformat(),
            "tags": ["manufacturing"],
        },
    )
    assert created.status_code == 201, created.text
    deal = created.json()
    path = f"/api/v1/deals/{deal['id']}"
    assert created.headers["location"] == path and created.headers["etag"] == '"v1"'
    assert (deal["amount"], deal["currency"], deal["stage_name"]) == (
        "12500000",
        "JPY",
        "Qualified",
    )
    assert deal["company"]["name"] == "サクラ精工"
    assert api.get(path, as_=admin).headers["etag"] == '"v1"'

    moved = api.post(
        f"{path}/move",
        as_=admin,
        json={"stage_id": _stage(pipeline, "Negotiation")},
        headers={"If-Match": '"v1"'},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["stage_name"] == "Negotiation" and moved.headers["etag"] == '"v2"'
    assert_problem(
        api.patch(path, as_=admin, json={"next_step": "x"}, headers={"If-Match": '"v1"'}), 412
    )
    lost = api.post(
        f"{path}/move",
        as_=admin,
        json={"stage_id": _stage(pipeline, "Lost"), "lost_reason_id": reason["id"]},
    ).json()
    assert (lost["status"], lost["lost_reason_id"]) == ("lost", reason["id"])
    history = api.get(f"{path}/history", as_=admin).json()
    assert [h["to_stage_name"] for h in history] == ["Qualified", "Negotiation", "Lost"]
    assert history[1]["from_stage_name"] == "Qualified" and history[-1]["left_at"] is None

    people = api.get(f"{path}/contacts", as_=admin).json()
    assert [(p["name"], p["role"]) for p in people] == [("山田", "decision_maker")]
    changed = api.post(
        f"{path}/contacts", as_=admin, json={"contact_id": contact["id"], "role": "champion"}
    ).json()
    assert [p["role"] for p in changed] == ["champion"]
    assert api.delete(f"{path}/contacts/{contact['id']}", as_=admin).json() == []
    assert_problem(api.delete(f"{path}/contacts/{contact['id']}", as_=admin), 404)

    listed = api.get(
        "/api/v1/deals", as_=admin, params={"filter": "status:eq:lost", "q": "生産"}
    ).json()
    assert [d["id"] for d in listed["items"]] == [deal["id"]]
    board = api.get(f"/api/v1/pipelines/{pipeline['id']}/board", as_=admin).json()
    lost_column = next(c for c in board["columns"] if c["stage"]["name"] == "Lost")
    assert lost_column["count"] == 1
    assert lost_column["totals"] == [{"currency": "JPY", "amount": "12500000"}]
    assert lost_column["deals"][0]["company_name"] == "サクラ精工"
    audit = api.get(f"{path}/audit", as_=admin).json()
    assert audit[0]["action"] == "update" and audit[-1]["action"] == "create"

    assert_problem(api.delete(f"/api/v1/pipelines/{pipeline['id']}", as_=admin), 409)
    assert api.delete(path, as_=admin).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)


def test_pipeline_administration(api: Api) -> None:
    admin = api.admin
    pipeline = _pipeline(api)
    pid = pipeline["id"]
    added = api.post(
        f"/api/v1/pipelines/{pid}/stages",
        as_=admin,
        json={"name": "Contract sent", "probability": 90, "required_fields": ["amount"]},
    )
    assert added.status_code == 201, added.text
    names = [s["name"] for s in added.json()["stages"]]
    assert names.index("Contract sent") == names.index("Won") - 1
    stage_id = _stage(added.json(), "Contract sent")
    patched = api.patch(
        f"/api/v1/pipelines/{pid}/stages/{stage_id}",
        as_=admin,
        json={"rotting_days": 7},
        headers={"If-Match": '"v1"'},
    )
    assert patched.status_code == 200, patched.text
    ids = [s["id"] for s in patched.json()["stages"]]
    reordered = api.request(
        "PUT", f"/api/v1/pipelines/{pid}/stages/order", as_=admin, json={"stage_ids": ids[::-1]}
    )
    assert [s["id"] for s in reordered.json()["stages"]] == ids[::-1]
    assert_problem(
        api.request(
            "PUT", f"/api/v1/pipelines/{pid}/stages/order", as_=admin, json={"stage_ids": ids[:2]}
        ),
        422,
        ("stage_ids",),
    )
    assert api.delete(f"/api/v1/pipelines/{pid}/stages/{stage_id}", as_=admin).status_code == 200
    renamed = api.patch(f"/api/v1/pipelines/{pid}", as_=admin, json={"name": "Direct"})
    assert renamed.json()["name"] == "Direct"
    second = api.post(
        "/api/v1/pipelines", as_=admin, json={"name": "Partners", "is_default": True}
    ).json()
    archived = api.patch(f"/api/v1/pipelines/{pid}", as_=admin, json={"archived": True})
    assert archived.json()["archived"] is True
    assert [p["name"] for p in api.get("/api/v1/pipelines", as_=admin).json()] == ["Partners"]
    assert len(api.get("/api/v1/pipelines?include_archived=true", as_=admin).json()) == 2
    assert api.delete(f"/api/v1/pipelines/{pid}", as_=admin).status_code == 204
    assert api.get(f"/api/v1/pipelines/{second['id']}", as_=admin).json()["is_default"]

    rep = api.caller("sales")
    assert_problem(api.post("/api/v1/pipelines", as_=rep, json={"name": "Mine"}), 403)
    assert_problem(api.post("/api/v1/lost-reasons", as_=rep, json={"name": "Timing"}), 403)
    assert api.get("/api/v1/pipelines", as_=rep).status_code == 200
    reason = api.post("/api/v1/lost-reasons", as_=admin, json={"name": "Timing"}).json()
    off = api.patch(f"/api/v1/lost-reasons/{reason['id']}", as_=admin, json={"active": False})
    assert off.json()["active"] is False
    assert api.get("/api/v1/lost-reasons", as_=admin).json() == []
    assert api.delete(f"/api/v1/lost-reasons/{reason['id']}", as_=admin).status_code == 204


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        ({"amount": "1000.5"}, 422, ("amount",)),
        ({"amount": "10.005", "currency": "USD"}, 422, ("amount",)),
        ({"amount": "10", "currency": "XYZ"}, 422, ("currency",)),
        ({"amount": "10", "currency": "yens"}, 422, ("body", "currency")),
        ({"amount": "-1"}, 422, ("body", "amount")),
        ({"amount": "1.23456"}, 422, ("body", "amount")),
        ({"expected_close_date": "2000-01-01"}, 422, ("expected_close_date",)),
        ({"pipeline_id": 999}, 422, ("pipeline_id",)),
        ({"stage_id": 999}, 422, ("stage_id",)),
        ({"owner_id": 999}, 422, ("owner_id",)),
        ({"company_id": 999}, 422, ("company_id",)),
        ({"contacts": [{"contact_id": 999}]}, 422, ("contacts", 0, "contact_id")),
        ({"contacts": [{"contact_id": 1, "role": "boss"}]}, 422, ("body", "contacts", 0, "role")),
        ({"probability": 101}, 422, ("body", "probability")),
        ({"forecast_category": "maybe"}, 422, ("body", "forecast_category")),
        ({"name": ""}, 422, ("body", "name")),
        ({"custom": {"nope": 1}}, 422, ("custom", "nope")),
    ],
)
def test_bad_deal_input_names_the_field(
    api: Api, body: dict[str, Any], status: int, loc: tuple[Any, ...]
) -> None:
    _pipeline(api)
    payload = {"name": "Deal", **body}
    assert_problem(api.post("/api/v1/deals", as_=api.admin, json=payload), status, loc)
    assert api.get("/api/v1/deals", as_=api.admin).json()["items"] == []


def test_bad_moves_change_nothing(api: Api) -> None:
    admin = api.admin
    pipeline = _pipeline(api)
    other = api.post(
        "/api/v1/pipelines",
        as_=admin,
        json={
            "name": "Other",
            "stages": [
                {"name": "Open", "probability": 50},
                {"name": "Yes", "probability": 100, "kind": "won"},
                {"name": "No", "probability": 0, "kind": "lost"},
            ],
        },
    ).json()
    deal = _deal(api)
    move = f"/api/v1/deals/{deal['id']}/move"
    problem = assert_problem(
        api.post(move, as_=admin, json={"stage_id": _stage(pipeline, "Negotiation")}),
        422,
        ("amount",),
        ("expected_close_date",),
    )
    assert "Negotiation" in problem["detail"]
    assert {e["type"] for e in problem["errors"]} == {"missing"}
    assert_problem(
        api.post(move, as_=admin, json={"stage_id": _stage(pipeline, "Lost")}),
        422,
        ("lost_reason_id",),
    )
    assert_problem(
        api.post(move, as_=admin, json={"stage_id": other["stages"][0]["id"]}), 422, ("stage_id",)
    )
    assert_problem(api.post(move, as_=admin, json={"stage_id": 99999}), 422, ("stage_id",))
    assert_problem(
        api.post(
            move,
            as_=admin,
            json={"stage_id": _stage(pipeline, "Proposal"), "amount": "1.5"},
        ),
        422,
        ("amount",),
    )
    assert_problem(api.post(move, as_=admin, json={}), 422, ("body", "stage_id"))
    assert_problem(api.post("/api/v1/deals/99999/move", as_=admin, json={"stage_id": 1}), 404)
    same = api.get(f"/api/v1/deals/{deal['id']}", as_=admin).json()
    assert (same["stage_name"], same["version"]) == ("Qualified", 1)
    assert len(api.get(f"/api/v1/deals/{deal['id']}/history", as_=admin).json()) == 1
    # Across pipelines, with the pipeline named.
    across = api.post(
        move, as_=admin, json={"stage_id": other["stages"][0]["id"], "pipeline_id": other["id"]}
    )
    assert across.status_code == 200 and across.json()["pipeline_name"] == "Other"


def test_inactive_owner_and_ownership(api: Api) -> None:
    _pipeline(api)
    rep = api.caller("sales")
    other = api.caller("sales")
    gone = api.caller("sales")
    assert (
        api.patch(
            f"/api/v1/users/{gone.user.id}", as_=api.admin, json={"is_active": False}
        ).status_code
        == 200
    )
    assert_problem(
        api.post("/api/v1/deals", as_=rep, json={"name": "X", "owner_id": gone.user.id}),
        422,
        ("owner_id",),
    )
    mine = api.post("/api/v1/deals", as_=rep, json={"name": "Mine"}).json()
    assert mine["owner_id"] == rep.user.id
    assert_problem(
        api.patch(f"/api/v1/deals/{mine['id']}", as_=other, json={"next_step": "Steal"}), 403
    )
    viewer = api.caller("viewer")
    assert api.get(f"/api/v1/deals/{mine['id']}", as_=viewer).status_code == 200
    assert_problem(api.post("/api/v1/deals", as_=viewer, json={"name": "No"}), 403)


def test_a_deal_without_any_pipeline_is_refused(api: Api) -> None:
    assert_problem(
        api.post("/api/v1/deals", as_=api.admin, json={"name": "Early"}), 422, ("pipeline_id",)
    )


def test_board_parameters(api: Api) -> None:
    pipeline = _pipeline(api)
    rep = api.caller("sales")
    for name in ("A", "B", "C"):
        _deal(api, name=name)
    api.post("/api/v1/deals", as_=rep, json={"name": "Rep's"})
    board = f"/api/v1/pipelines/{pipeline['id']}/board"
    first = api.get(board, as_=api.admin, params={"per_stage": 2}).json()["columns"][0]
    assert (first["count"], len(first["deals"]), first["has_more"]) == (4, 2, True)
    mine = api.get(board, as_=api.admin, params={"owner_id": rep.user.id}).json()["columns"][0]
    assert [d["name"] for d in mine["deals"]] == ["Rep's"] and mine["count"] == 1
    assert_problem(api.get(board, as_=api.admin, params={"per_stage": 0}), 422)
    assert_problem(api.get("/api/v1/pipelines/9999/board", as_=api.admin), 404)
