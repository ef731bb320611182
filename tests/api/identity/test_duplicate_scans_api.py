"""The duplicate scan history over HTTP: the scan answers with its id, the history lists scans
newest first, and a scan asked for while another runs is a 409 problem that changes nothing."""

from __future__ import annotations

from tests.api.conftest import Api, assert_problem

from ichigen.core.audit import Actor
from ichigen.identity import duplicates
from ichigen.identity.matching import MatchSettings

SCAN = "/api/v1/identity/duplicates/scan"
SCANS = "/api/v1/identity/duplicates/scans"


def _contacts(api: Api) -> None:
    for fields in (
        {"last_name": "山田", "first_name": "太郎", "email": "a@x.jp"},
        {"last_name": "鈴木", "first_name": "花子", "email": "b@y.jp"},
        {"last_name": "佐藤", "email": "c@z.jp", "phone": "090-1111-2222"},
        {"last_name": "佐藤", "email": "d@z.jp", "phone": "090-1111-2222"},
    ):
        response = api.post("/api/v1/contacts", as_=api.admin, json=fields)
        assert response.status_code == 201, response.text


def test_scans_are_listed_newest_first_with_their_outcome(api_on: Api) -> None:
    api = api_on
    _contacts(api)
    first = api.post(SCAN, as_=api.admin)
    assert first.status_code == 200, first.text
    second = api.post(SCAN, as_=api.admin)
    assert second.status_code == 200, second.text
    first_id, second_id = first.json()["scan_id"], second.json()["scan_id"]
    assert second_id > first_id

    listed = api.get(SCANS, as_=api.admin)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [s["id"] for s in items] == [second_id, first_id]
    assert listed.json()["next_offset"] is None
    newest = items[0]
    assert newest["status"] == "finished" and newest["trigger"] == "manual"
    assert newest["started_by"] == api.admin.user.email
    assert newest["contacts"] == 4 and newest["queued"] == second.json()["queued"]
    assert newest["updated"] == first.json()["queued"] and newest["error"] is None

    page = api.get(SCANS, as_=api.admin, params={"limit": 1}).json()
    assert [s["id"] for s in page["items"]] == [second_id] and page["next_offset"] == 1
    rest = api.get(SCANS, as_=api.admin, params={"limit": 1, "offset": 1}).json()
    assert [s["id"] for s in rest["items"]] == [first_id] and rest["next_offset"] is None

    one = api.get(f"{SCANS}/{first_id}", as_=api.admin)
    assert one.status_code == 200 and one.json()["contacts"] == 4
    assert one.json()["candidates"] == first.json()["candidates"]
    assert_problem(api.get(f"{SCANS}/987654", as_=api.admin), 404)
    assert_problem(api.get(SCANS, as_=api.admin, params={"limit": 0}), 422)


def test_a_scan_while_another_runs_is_a_conflict(api_on: Api) -> None:
    api = api_on
    _contacts(api)
    answers = []

    def ask_the_api(step: str, done: int, total: int) -> None:
        if step == "load" and not answers:
            answers.append(api.post(SCAN, as_=api.admin))

    with api.db.sessionmaker() as session:
        running = duplicates.scan_contacts(
            session, Actor.system("cli"), settings=MatchSettings(threads=2), progress=ask_the_api
        )
    body = assert_problem(answers[0], 409)
    assert f"scan {running.scan_id} is running" in body["detail"] and "cli" in body["detail"]
    items = api.get(SCANS, as_=api.admin).json()["items"]
    assert [(s["id"], s["status"]) for s in items] == [(running.scan_id, "finished")]
    assert api.post(SCAN, as_=api.admin).status_code == 200
