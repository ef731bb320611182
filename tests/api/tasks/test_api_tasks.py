"""Tasks over HTTP: create, read, PATCH with ETags, complete/reopen/cancel, lists with filters,
My day, a team's tasks and notifications; bad input answered with problem documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api.conftest import Api, Caller, assert_problem

from ichigen.crm.tasks import reminders

DUE = "2026-03-10T10:00:00+09:00"


def _task(api: Api, caller: Caller, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/v1/tasks", as_=caller, json={"title": "Call back", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_task_lifecycle(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    company = api.post("/api/v1/companies", as_=admin, json={"name": "Sakura Seiko"}).json()
    created = api.post(
        "/api/v1/tasks",
        as_=admin,
        json={
            "title": "見積書を送る",
            "due_at": DUE,
            "priority": "high",
            "record_type": "company",
            "record_id": company["id"],
            "remind_at": "2026-03-10T09:30:00+09:00",
        },
    )
    assert created.status_code == 201, created.text
    task = created.json()
    path = f"/api/v1/tasks/{task['id']}"
    assert created.headers["location"] == path and created.headers["etag"] == '"v1"'
    assert task["due_at"] == "2026-03-10T01:00:00Z" and task["assignee_id"] == admin.user.id
    assert api.get(path, as_=admin).headers["etag"] == '"v1"'
    patched = api.patch(path, as_=admin, json={"priority": "urgent"}, headers={"If-Match": '"v1"'})
    assert patched.status_code == 200 and patched.json()["priority"] == "urgent"
    assert patched.headers["etag"] == '"v2"'
    assert_problem(
        api.patch(path, as_=admin, json={"priority": "low"}, headers={"If-Match": '"v1"'}), 412
    )
    done = api.post(f"{path}/complete", as_=admin, headers={"If-Match": '"v2"'})
    assert done.status_code == 200, done.text
    assert done.json()["task"]["status"] == "done" and done.headers["etag"] == '"v3"'
    activity_id = done.json()["activity_id"]
    timeline = api.get(f"/api/v1/companies/{company['id']}", as_=admin)
    assert timeline.status_code == 200
    activity = api.get(f"/api/v1/activities/{activity_id}", as_=admin).json()
    assert (activity["kind"], activity["subject"]) == ("task", "見積書を送る")
    assert_problem(api.post(f"{path}/cancel", as_=admin), 409, ("status",))
    assert api.post(f"{path}/reopen", as_=admin).json()["status"] == "open"
    assert api.post(f"{path}/cancel", as_=admin).json()["status"] == "cancelled"
    actions = [e["action"] for e in api.get(f"{path}/history", as_=admin).json()]
    assert actions == ["cancel", "reopen", "complete", "update", "create"]
    assert api.delete(path, as_=admin).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)


def test_a_repeating_task_answers_with_its_next_occurrence(api: Api) -> None:
    admin = api.admin
    task = _task(api, admin, due_at="2026-01-31T09:00:00Z", recurrence="FREQ=MONTHLY;BYMONTHDAY=-1")
    done = api.post(f"/api/v1/tasks/{task['id']}/complete", as_=admin).json()
    assert done["next_task"]["due_at"] == "2026-02-28T09:00:00Z"
    assert done["next_task"]["series_id"] == task["id"]


def test_bad_input_is_a_problem_naming_the_field(api: Api) -> None:
    admin = api.admin
    gone = api.caller("sales")
    api.patch(f"/api/v1/users/{gone.user.id}", as_=admin, json={"is_active": False})
    cases: list[tuple[dict[str, Any], int, tuple[str | int, ...]]] = [
        ({"assignee_id": gone.user.id}, 422, ("assignee_id",)),
        ({"assignee_id": 10**6}, 422, ("assignee_id",)),
        ({"due_at": DUE, "recurrence": "FREQ=EVERY_NOW_AND_THEN"}, 422, ("recurrence",)),
        ({"recurrence": "FREQ=DAILY"}, 422, ("recurrence",)),
        ({"due_at": DUE, "remind_at": "2026-03-10T11:00:00+09:00"}, 422, ("remind_at",)),
        ({"record_type": "deal", "record_id": 10**6}, 422, ("record_id",)),
        ({"record_type": "ticket", "record_id": 1}, 422, ("body", "record_type")),
        ({"due_at": "2026-03-10T10:00:00"}, 422, ("body", "due_at")),
        ({"priority": "whenever"}, 422, ("body", "priority")),
        ({"status": "done"}, 422, ("body", "status")),
        ({"title": ""}, 422, ("body", "title")),
        ({"assignee_id": 0}, 422, ("body", "assignee_id")),
    ]
    for fields, status, loc in cases:
        body = {"title": "T", **fields}
        assert_problem(api.post("/api/v1/tasks", as_=admin, json=body), status, loc)
    assert api.get("/api/v1/tasks", as_=admin).json()["items"] == []
    task = _task(api, admin)
    path = f"/api/v1/tasks/{task['id']}"
    assert_problem(api.patch(path, as_=admin, json={"title": None}), 422, ("title",))
    assert_problem(api.patch(path, as_=admin, json={"x": 1}), 422, ("body", "x"))
    assert_problem(api.patch(path, as_=admin, json={}, headers={"If-Match": "v1"}), 400)
    assert_problem(api.get("/api/v1/tasks/0", as_=admin), 422)
    mars = api.get("/api/v1/my-day", as_=admin, params={"tz": "Mars/Olympus"})
    assert_problem(mars, 422, ("query", "tz"))
    assert_problem(api.get("/api/v1/tasks", as_=admin, params={"sort": "title"}), 400)
    assert_problem(api.get("/api/v1/tasks", as_=admin, params={"cursor": "garbage"}), 400)
    assert_problem(api.get("/api/v1/tasks", as_=admin, params={"record_id": 1}), 400)
    assert_problem(api.get("/api/v1/tasks", as_=admin, params={"due_from": "2026-03-10"}), 422)
    assert_problem(api.get("/api/v1/teams/999/tasks", as_=admin), 404)
    assert api.get(path, as_=admin).json()["version"] == 1


def test_lists_filter_sort_and_page(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    rep = api.caller("sales")
    start = datetime(2026, 3, 1, tzinfo=UTC)
    made = [
        _task(api, rep, title=f"T{n}", due_at=(start + timedelta(days=n)).isoformat())
        for n in range(5)
    ]
    _task(api, rep, title="No date", priority="urgent")
    _task(api, admin, title="Admin's", due_at=start.isoformat())
    api.post(f"/api/v1/tasks/{made[0]['id']}/complete", as_=rep)

    def titles(**params: Any) -> list[str]:
        response = api.get("/api/v1/tasks", as_=rep, params=params)
        assert response.status_code == 200, response.text
        return [t["title"] for t in response.json()["items"]]

    assert titles(mine=True) == ["T0", "T1", "T2", "T3", "T4", "No date"]
    assert titles(assignee_id=admin.user.id) == ["Admin's"]
    assert titles(mine=True, status="open", sort="-due_at") == ["T4", "T3", "T2", "T1", "No date"]
    assert titles(mine=True, status=["done", "cancelled"]) == ["T0"]
    assert titles(priority="urgent") == ["No date"]
    assert titles(mine=True, due="none") == ["No date"]
    overdue = titles(mine=True, due="overdue", tz="Asia/Tokyo", status="open")
    assert overdue == ["T1", "T2", "T3", "T4"]
    assert titles(mine=True, due="today") == []
    window = {"due_from": "2026-03-02T00:00:00Z", "due_to": "2026-03-04T00:00:00Z"}
    assert titles(**window) == ["T1", "T2"]
    first = api.get("/api/v1/tasks", as_=rep, params={"mine": True, "limit": 4}).json()
    rest = api.get(
        "/api/v1/tasks", as_=rep, params={"mine": True, "limit": 4, "cursor": first["next_cursor"]}
    ).json()
    assert [t["title"] for t in first["items"] + rest["items"]] == titles(mine=True)
    assert rest["next_cursor"] is None


def test_record_filter_lists_a_records_tasks(api: Api) -> None:
    admin = api.admin
    contact = api.post("/api/v1/contacts", as_=admin, json={"last_name": "Sato"}).json()
    _task(api, admin, title="About Sato", record_type="contact", record_id=contact["id"])
    _task(api, admin, title="Other")
    params = {"record_type": "contact", "record_id": contact["id"]}
    listed = api.get("/api/v1/tasks", as_=admin, params=params).json()["items"]
    assert [t["title"] for t in listed] == ["About Sato"]


def test_my_day_and_the_team_view(api: Api) -> None:
    admin = api.admin
    east = api.team("East")
    rep = api.caller("sales", team_id=east)
    now = datetime.now(UTC)
    _task(api, rep, title="Overdue", due_at=(now - timedelta(days=2)).isoformat())
    _task(api, rep, title="Next week", due_at=(now + timedelta(days=3)).isoformat())
    day = api.get("/api/v1/my-day", as_=rep, params={"tz": "Asia/Tokyo"})
    assert day.status_code == 200, day.text
    body = day.json()
    assert body["timezone"] == "Asia/Tokyo"
    assert [t["title"] for t in body["overdue"]] == ["Overdue"] and body["overdue_total"] == 1
    assert [t["title"] for t in body["upcoming"]] == ["Next week"]
    assert body["deals_needing_next_step"] == []
    theirs = api.get("/api/v1/my-day", as_=admin, params={"user_id": rep.user.id}).json()
    assert theirs["overdue_total"] == 1
    team = api.get(f"/api/v1/teams/{east}/tasks", as_=admin).json()
    assert [(m["user_id"], m["open_total"], m["overdue_total"]) for m in team["members"]] == [
        (rep.user.id, 2, 1)
    ]


def test_roles_and_ownership(api: Api) -> None:
    east, west = api.team("East"), api.team("West")
    rep = api.caller("sales", team_id=east)
    outsider = api.caller("sales", team_id=west)
    reader = api.caller("sales", team_id=east, scope="read")
    viewer = api.caller("viewer")
    task = _task(api, rep)
    path = f"/api/v1/tasks/{task['id']}"
    assert_problem(api.patch(path, as_=outsider, json={"title": "Mine now"}), 403)
    assert_problem(api.post(f"{path}/complete", as_=outsider), 403)
    assert_problem(api.patch(path, as_=reader, json={"title": "x"}), 403)
    assert_problem(api.get(path, as_=viewer), 403)
    assert api.get(path, as_=outsider).status_code == 200
    assert api.post(f"{path}/complete", as_=rep).status_code == 200


def test_notifications(api_factory: Any) -> None:
    api: Api = api_factory(reminders_enabled=False)
    rep, other = api.caller("sales"), api.caller("sales")
    for title in ("First", "Second", "Third"):
        _task(api, rep, title=title, remind_at="2026-01-01T00:00:00Z")
    reminders.run_reminders(api.db, None)
    listed = api.get("/api/v1/notifications", as_=rep, params={"limit": 2}).json()
    assert [n["title"] for n in listed["items"]] == ["Third", "Second"]
    more = api.get(
        "/api/v1/notifications", as_=rep, params={"limit": 2, "cursor": listed["next_cursor"]}
    ).json()
    assert [n["title"] for n in more["items"]] == ["First"] and more["next_cursor"] is None
    assert api.get("/api/v1/notifications/unread-count", as_=rep).json() == {"unread": 3}
    first = more["items"][0]
    assert first["link"].startswith("/tasks/") and first["kind"] == "task_reminder"
    assert_problem(api.post(f"/api/v1/notifications/{first['id']}/read", as_=other), 404)
    read = api.post(f"/api/v1/notifications/{first['id']}/read", as_=rep).json()
    assert read["read_at"] is not None
    unread = api.get("/api/v1/notifications", as_=rep, params={"unread": True}).json()
    assert [n["title"] for n in unread["items"]] == ["Third", "Second"]
    assert api.post("/api/v1/notifications/read-all", as_=rep).json() == {"unread": 0}
    assert api.get("/api/v1/notifications", as_=other).json()["items"] == []
    assert_problem(api.get("/api/v1/notifications", as_=rep, params={"cursor": "x"}), 400)
