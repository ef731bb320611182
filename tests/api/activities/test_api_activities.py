"""Activities over HTTP: log, read, PATCH with ETags, delete, lists, timelines, iCalendar
files, and bad input answered with problem documents that name the field."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, assert_problem
from tests.integration.activities.factories import deal


def _contact(api: Api, email: str, **fields: Any) -> int:
    made = api.post("/api/v1/contacts", as_=api.admin, json={"email": email, **fields})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def _company(api: Api, name: str) -> int:
    made = api.post("/api/v1/companies", as_=api.admin, json={"name": name})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


CALL = {
    "kind": "call",
    "subject": "見積もりのフォローアップ",
    "occurred_at": "2026-05-12T05:30:00Z",
    "direction": "outbound",
    "duration_seconds": 540,
    "outcome": "connected",
}


def test_activity_lifecycle(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    person = _contact(api, "ann@firm.example", last_name="Ann")
    created = api.post(
        "/api/v1/activities",
        as_=admin,
        json={**CALL, "links": [{"type": "contact", "id": person}]},
    )
    assert created.status_code == 201, created.text
    activity = created.json()
    path = f"/api/v1/activities/{activity['id']}"
    assert created.headers["location"] == path and created.headers["etag"] == '"v1"'
    assert activity["links"] == [{"type": "contact", "id": person, "name": "Ann"}]
    assert activity["owner_id"] == admin.user.id

    fetched = api.get(path, as_=admin)
    assert fetched.json() == activity and fetched.headers["etag"] == '"v1"'
    patched = api.patch(
        path, as_=admin, json={"outcome": "left_voicemail"}, headers={"If-Match": '"v1"'}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["outcome"] == "left_voicemail" and patched.headers["etag"] == '"v2"'
    assert_problem(
        api.patch(path, as_=admin, json={"body": "x"}, headers={"If-Match": '"v1"'}), 412
    )
    assert_problem(api.patch(path, as_=admin, json={"kind": "note"}), 422, ("body", "kind"))

    history = api.get(f"{path}/history", as_=admin).json()
    assert [e["action"] for e in history] == ["update", "create"]
    timeline = api.get(f"/api/v1/timeline/contact/{person}", as_=admin).json()
    assert [a["id"] for a in timeline["items"]] == [activity["id"]]

    assert api.delete(path, as_=admin, headers={"If-Match": '"v2"'}).status_code == 204
    assert_problem(api.get(path, as_=admin), 404)
    assert api.get(f"/api/v1/timeline/contact/{person}", as_=admin).json()["items"] == []


def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    person = _contact(api, "ann@firm.example")
    link = [{"type": "contact", "id": person}]
    cases: list[tuple[dict[str, Any], int, tuple[str | int, ...]]] = [
        ({**CALL, "links": []}, 422, ("links",)),
        ({**CALL}, 422, ("body", "links")),
        ({**CALL, "links": [*link, {"type": "deal", "id": 77}]}, 422, ("links", 1)),
        ({**CALL, "links": [{"type": "invoice", "id": 1}]}, 422, ("body", "links", 0, "type")),
        ({**CALL, "links": link, "outcome": "maybe"}, 422, ("body", "outcome")),
        ({**CALL, "links": link, "kind": "fax"}, 422, ("body", "kind")),
        (
            {**CALL, "links": link, "occurred_at": "2026-05-12T05:30:00"},
            422,
            ("body", "occurred_at"),
        ),
        ({**CALL, "links": link, "location": "Room 1"}, 422, ("location",)),
        ({"kind": "email", "links": link, "email_to": ["nope"]}, 422, ("email_to", 0)),
        (
            {
                "kind": "meeting",
                "links": link,
                "occurred_at": "2026-05-12T05:30:00Z",
                "ends_at": "2026-05-12T05:00:00Z",
            },
            422,
            ("ends_at",),
        ),
        ({**CALL, "links": link, "owner_id": 0}, 422, ("body", "owner_id")),
    ]
    for body, status, loc in cases:
        assert_problem(api.post("/api/v1/activities", as_=admin, json=body), status, loc)
    assert api.get("/api/v1/activities", as_=admin).json()["items"] == []


def test_lists_and_timelines_filter_and_page(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    firm = _company(api, "Firm")
    people = [_contact(api, f"p{i}@firm.example", company_id=firm) for i in range(3)]
    with api.db.sessionmaker() as session:
        sale = deal(session, "Deal", firm, [people[0]])
    for index in range(7):
        links = [{"type": "contact", "id": people[index % 3]}]
        if index == 6:
            links.append({"type": "deal", "id": sale})
        body = {
            "kind": ["note", "call"][index % 2],
            "occurred_at": f"2026-05-12T0{index}:00:00Z",
            "links": links,
            "subject": f"a{index}",
        }
        assert api.post("/api/v1/activities", as_=admin, json=body).status_code == 201

    def subjects(path: str, **params: Any) -> list[str]:
        response = api.get(path, as_=admin, params=params)
        assert response.status_code == 200, response.text
        return [a["subject"] for a in response.json()["items"]]

    assert subjects(f"/api/v1/timeline/company/{firm}") == [f"a{i}" for i in range(6, -1, -1)]
    assert subjects(f"/api/v1/timeline/company/{firm}", kind=["call"]) == ["a5", "a3", "a1"]
    assert subjects(f"/api/v1/timeline/deal/{sale}") == ["a6"]
    assert subjects(f"/api/v1/timeline/contact/{people[0]}") == ["a6", "a3", "a0"]
    assert subjects("/api/v1/activities", record=f"contact:{people[1]}") == ["a4", "a1"]
    assert subjects(
        "/api/v1/activities", **{"from": "2026-05-12T02:00:00Z", "to": "2026-05-12T04:00:00Z"}
    ) == ["a3", "a2"]
    assert subjects("/api/v1/activities", owner_id=admin.user.id, kind="call") == [
        "a5",
        "a3",
        "a1",
    ]
    first = api.get(f"/api/v1/timeline/company/{firm}", as_=admin, params={"limit": 4}).json()
    rest = api.get(
        f"/api/v1/timeline/company/{firm}",
        as_=admin,
        params={"limit": 4, "cursor": first["next_cursor"]},
    ).json()
    assert [a["subject"] for a in first["items"] + rest["items"]] == [
        f"a{i}" for i in range(6, -1, -1)
    ]
    assert rest["next_cursor"] is None

    assert_problem(
        api.get(f"/api/v1/timeline/company/{firm}", as_=admin, params={"cursor": "x"}),
        400,
        ("query", "cursor"),
    )
    assert_problem(
        api.get(f"/api/v1/timeline/company/{firm}", as_=admin, params={"kind": "fax"}),
        422,
        ("query", "kind", 0),
    )
    assert_problem(api.get("/api/v1/timeline/planet/1", as_=admin), 422, ("path", "record_type"))
    assert_problem(api.get("/api/v1/timeline/contact/999", as_=admin), 404)
    assert_problem(
        api.get("/api/v1/activities", as_=admin, params={"record": "contact"}),
        422,
        ("query", "record"),
    )


ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
    "BEGIN:VEVENT\r\nUID:demo-1@calendar.example\r\nSUMMARY:Demo\r\n"
    "DTSTART;TZID=Asia/Tokyo:20260512T100000\r\nDTEND;TZID=Asia/Tokyo:20260512T110000\r\n"
    "ATTENDEE;CN=Ann:mailto:ann@firm.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_ical_import_and_export(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    person = _contact(api, "ann@firm.example")
    files = {"file": ("demo.ics", ICS.encode(), "text/calendar")}
    dry = api.post("/api/v1/activities/ical", as_=admin, files=files, data={"dry_run": "true"})
    assert dry.status_code == 200, dry.text
    assert (dry.json()["created"], dry.json()["dry_run"]) == (1, True)
    imported = api.post("/api/v1/activities/ical", as_=admin, files=files).json()
    assert imported["created"] == 1
    assert imported["events"][0]["links"] == [{"type": "contact", "id": person}]
    again = api.post("/api/v1/activities/ical", as_=admin, files=files).json()
    assert (again["created"], again["unchanged"]) == (0, 1)

    exported = api.get("/api/v1/activities/ical", as_=admin, params={"record": f"contact:{person}"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/calendar")
    text = exported.text
    assert "UID:demo-1@calendar.example" in text
    assert "DTSTART:20260512T010000Z" in text and "DTEND:20260512T020000Z" in text
    assert "ATTENDEE;CN=Ann:mailto:ann@firm.example" in text
    in_range = api.get(
        "/api/v1/activities/ical",
        as_=admin,
        params={"from": "2026-06-01T00:00:00Z", "to": "2026-07-01T00:00:00Z"},
    )
    assert "BEGIN:VEVENT" not in in_range.text


MALFORMED = [
    (
        ICS.replace("END:VEVENT\r\n", ""),
        "line 10: END:VCALENDAR does not close BEGIN:VEVENT (line 4)",
    ),
    (ICS.replace("20260512T100000", "2026-05-12"), "line 4, VEVENT #1"),
    ("not a calendar", "line 1"),
]


def test_a_malformed_ical_file_is_a_422_that_names_the_line(api: Api) -> None:
    _contact(api, "ann@firm.example")
    for content, fragment in MALFORMED:
        files = {"file": ("bad.ics", content.encode(), "text/calendar")}
        body = assert_problem(
            api.post("/api/v1/activities/ical", as_=api.admin, files=files), 422, ("file",)
        )
        assert any(fragment in e["msg"] for e in body["errors"]), body
    assert api.get("/api/v1/activities", as_=api.admin).json()["items"] == []


def test_permissions(api: Api) -> None:
    person = _contact(api, "ann@firm.example")
    link = [{"type": "contact", "id": person}]
    viewer = api.caller("viewer")
    assert_problem(api.post("/api/v1/activities", as_=viewer, json={**CALL, "links": link}), 403)
    rep, other = api.caller("sales"), api.caller("sales")
    mine = api.post("/api/v1/activities", as_=rep, json={**CALL, "links": link}).json()
    path = f"/api/v1/activities/{mine['id']}"
    assert_problem(api.patch(path, as_=other, json={"body": "mine now"}), 403)
    assert_problem(api.delete(path, as_=other), 403)
    assert api.get(path, as_=viewer).status_code == 200
    read_only = api.caller("admin", scope="read")
    assert_problem(api.post("/api/v1/activities", as_=read_only, json={**CALL, "links": link}), 403)
    assert_problem(api.get("/api/v1/activities"), 401)
