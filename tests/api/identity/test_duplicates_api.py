"""Duplicate contacts over HTTP: scan, the review queue, merge and undo, the check before
creating a contact; bad input answered by problem documents that change nothing."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, assert_problem

CONTACTS = "/api/v1/contacts"
QUEUE = "/api/v1/identity/duplicates"
MERGES = "/api/v1/identity/contact-merges"


def _contact(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post(CONTACTS, as_=api.admin, json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _task(api: Api, contact_id: int) -> int:
    response = api.post(
        "/api/v1/tasks",
        as_=api.admin,
        json={"title": "Call back", "record_type": "contact", "record_id": contact_id},
    )
    assert response.status_code == 201, response.text
    task_id: int = response.json()["id"]
    return task_id


def _base(api: Api) -> tuple[int, int]:
    family = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"]
    given = ["翔", "蓮", "陽菜", "結衣", "大輝", "美咲", "拓海", "葵"]
    for n in range(24):
        _contact(
            api,
            last_name=family[n % 8],
            first_name=given[(n * 3 + n // 8) % 8],
            email=f"p{n}@example{n % 5}.jp",
            phone=f"090-{3000 + n:04d}-{4000 + n * 3:04d}",
        )
    a = _contact(
        api,
        last_name="山田",
        first_name="太郎",
        email="taro@a.jp",
        phone="090-1234-5678",
        job_title="課長",
    )
    b = _contact(
        api,
        last_name="山田",
        first_name="太郎",
        email="taro@b.jp",
        phone="09012345678",
        job_title="部長",
    )
    return a["id"], b["id"]


def test_scan_queue_merge_and_undo(api: Api) -> None:
    a, b = _base(api)
    task = _task(api, b)
    scan = api.post(f"{QUEUE}/scan", as_=api.admin)
    assert scan.status_code == 200, scan.text
    assert scan.json()["contacts"] == 26 and scan.json()["queued"] >= 1

    queue = api.get(QUEUE, as_=api.admin, params={"limit": 100})
    assert queue.status_code == 200
    pair = next(p for p in queue.json()["items"] if {p["left"]["id"], p["right"]["id"]} == {a, b})
    assert pair["status"] == "pending" and pair["match_probability"] >= 0.9
    assert pair["contributions"]["phone"] > 0
    assert api.get(f"{QUEUE}/{pair['id']}", as_=api.admin).json()["left"]["id"] == a

    merged = api.post(
        f"{QUEUE}/{pair['id']}/merge",
        as_=api.admin,
        json={"survivor_id": a, "choices": {"job_title": "merged"}},
    )
    assert merged.status_code == 201, merged.text
    merge = merged.json()
    assert (merge["survivor_id"], merge["merged_id"], merge["moved"]["tasks"]) == (a, b, [task])
    assert merge["changes"]["job_title"] == ["課長", "部長"]
    assert api.get(f"{CONTACTS}/{b}", as_=api.admin).status_code == 404
    survivor = api.get(f"{CONTACTS}/{a}", as_=api.admin).json()
    assert [e["email"] for e in survivor["emails"]] == ["taro@a.jp", "taro@b.jp"]
    assert api.get(f"/api/v1/tasks/{task}", as_=api.admin).json()["record_id"] == a

    # The pair again: already merged.
    assert_problem(api.post(f"{QUEUE}/{pair['id']}/merge", as_=api.admin, json={}), 409)
    assert_problem(
        api.post(MERGES, as_=api.admin, json={"survivor_id": a, "merged_id": b}),
        409,
        ("merged_id",),
    )

    undone = api.post(f"{MERGES}/{merge['id']}/undo", as_=api.admin)
    assert undone.status_code == 200, undone.text
    assert undone.json()["status"] == "undone"
    back = api.get(f"{CONTACTS}/{b}", as_=api.admin).json()
    assert back["job_title"] == "部長" and [e["email"] for e in back["emails"]] == ["taro@b.jp"]
    assert api.get(f"/api/v1/tasks/{task}", as_=api.admin).json()["record_id"] == b
    assert api.get(f"{CONTACTS}/{a}", as_=api.admin).json()["job_title"] == "課長"
    assert_problem(api.post(f"{MERGES}/{merge['id']}/undo", as_=api.admin), 409)
    assert api.get(f"{MERGES}/{merge['id']}", as_=api.admin).json()["status"] == "undone"
    assert [m["id"] for m in api.get(MERGES, as_=api.admin, params={"contact_id": b}).json()] == [
        merge["id"]
    ]

    # Back in the queue; now decided as two people, and a re-scan does not queue it again.
    no = api.post(f"{QUEUE}/{pair['id']}/not-duplicate", as_=api.admin)
    assert no.status_code == 200 and no.json()["status"] == "not_duplicate"
    assert api.post(f"{QUEUE}/scan", as_=api.admin).json()["queued"] == 0
    pending = api.get(QUEUE, as_=api.admin, params={"limit": 100}).json()["items"]
    assert pair["id"] not in {p["id"] for p in pending}


def test_bad_merges_are_problems_and_change_nothing(api: Api) -> None:
    a = _contact(api, last_name="山田", first_name="太郎", email="taro@a.jp")
    b = _contact(api, last_name="山田", first_name="太朗", email="taro@b.jp")
    itself = api.post(MERGES, as_=api.admin, json={"survivor_id": a["id"], "merged_id": a["id"]})
    assert_problem(itself, 422, ("merged_id",))
    unknown = api.post(MERGES, as_=api.admin, json={"survivor_id": a["id"], "merged_id": 99999})
    assert_problem(unknown, 404)
    choice = api.post(
        MERGES,
        as_=api.admin,
        json={"survivor_id": a["id"], "merged_id": b["id"], "choices": {"secret": "merged"}},
    )
    assert_problem(choice, 422, ("choices", "secret"))
    wrong_side = api.post(
        MERGES,
        as_=api.admin,
        json={"survivor_id": a["id"], "merged_id": b["id"], "choices": {"city": "mine"}},
    )
    assert_problem(wrong_side, 422)
    stale = api.post(
        MERGES,
        as_=api.admin,
        json={"survivor_id": a["id"], "merged_id": b["id"], "survivor_version": 7},
    )
    assert_problem(stale, 412)
    assert_problem(api.post(f"{MERGES}/4242/undo", as_=api.admin), 404)
    assert_problem(api.post(f"{QUEUE}/4242/merge", as_=api.admin, json={}), 404)
    assert api.get(f"{CONTACTS}/{b['id']}", as_=api.admin).json()["version"] == b["version"]
    assert api.get(f"{CONTACTS}/{a['id']}", as_=api.admin).json()["version"] == a["version"]


def test_roles_and_scopes(api: Api) -> None:
    a = _contact(api, last_name="山田", first_name="太郎", email="taro@a.jp")
    b = _contact(api, last_name="山田", first_name="太朗", email="taro@b.jp")
    rep = api.caller("sales")
    assert_problem(api.post(f"{QUEUE}/scan", as_=rep), 403)
    assert_problem(
        api.post(MERGES, as_=rep, json={"survivor_id": a["id"], "merged_id": b["id"]}), 403
    )
    assert api.get(QUEUE, as_=rep).status_code == 200
    reader = api.caller("admin", scope="read")
    assert_problem(
        api.post(MERGES, as_=reader, json={"survivor_id": a["id"], "merged_id": b["id"]}), 403
    )
    assert api.get(f"{CONTACTS}/{b['id']}", as_=api.admin).status_code == 200
    assert_problem(api.get(QUEUE), 401)


def test_check_before_creating(api: Api) -> None:
    taro = _contact(
        api, last_name="山田", first_name="太郎", email="taro@example.jp", phone="090-1111-2222"
    )
    found = api.post(
        f"{QUEUE}/check", as_=api.admin, json={"email": "Taro@Example.jp", "phone": "09011112222"}
    )
    assert found.status_code == 200, found.text
    assert found.json() == [
        {
            "id": taro["id"],
            "full_name": "山田 太郎",
            "primary_email": "taro@example.jp",
            "primary_phone": "+819011112222",
            "reasons": ["email", "phone"],
        }
    ]
    by_name = api.post(
        f"{QUEUE}/check", as_=api.admin, json={"last_name": "山田", "first_name": "太郎"}
    )
    assert [m["reasons"] for m in by_name.json()] == [["name"]]
    assert api.post(f"{QUEUE}/check", as_=api.admin, json={"email": "x@y.jp"}).json() == []
    assert_problem(api.post(f"{QUEUE}/check", as_=api.admin, json={"nickname": "taro"}), 422)
