"""The anonymous → identified → merged → unmerged story through the HTTP API: tracking calls
land under one person, CRM edits link the contact, the profile shows traits with their
precedence and one timeline, and an unmerge splits events and identifiers again."""

from __future__ import annotations

from typing import Any

import httpx
from tests.api.collect.test_tracking_api import new_source, post_to, read_events
from tests.api.conftest import Api, assert_problem

PROFILES = "/api/v1/profiles"


def profile(api: Api, ref: str) -> dict[str, Any]:
    response = api.get(f"{PROFILES}/{ref}", as_=api.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def traits(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in body["traits"]}


def timeline(api: Api, ref: str) -> list[dict[str, Any]]:
    response = api.get(f"{PROFILES}/{ref}/timeline", as_=api.admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


def test_anonymous_identified_merged_unmerged(api_on: Api) -> None:
    api = api_on
    _, key = new_source(api)
    # 1. An anonymous visitor browses: a person of its own, never identified.
    ok(post_to(api, "page", {"anonymousId": "anon-1", "name": "Pricing"}, key))
    ok(post_to(api, "track", {"anonymousId": "anon-1", "event": "Trial Started"}, key))
    first = profile(api, "anonymous_id:anon-1")
    assert first["anonymous"] is True
    person = first["person_id"]
    stored = read_events(api, anonymous_id="anon-1")
    assert {e["person_id"] for e in stored} == {str(person)}

    # 2. They sign up: identify links the user id and e-mail, traits are kept with sources.
    ok(
        post_to(
            api,
            "identify",
            {
                "anonymousId": "anon-1",
                "userId": "u-1",
                "traits": {"email": "Aiko@Example.JP", "firstName": "Aiko", "plan": "trial"},
                "timestamp": "2026-11-01T10:00:00Z",
            },
            key,
        )
    )
    identified = profile(api, "email:aiko@example.jp")
    assert identified["person_id"] == person and identified["anonymous"] is False
    assert traits(identified)["plan"]["value"] == "trial"
    assert traits(identified)["plan"]["source_kind"] == "event"
    # A newer identify wins; an older one only goes to the history.
    for plan, at in (("pro", "2026-11-02T10:00:00Z"), ("free", "2026-10-01T10:00:00Z")):
        ok(
            post_to(
                api,
                "identify",
                {"userId": "u-1", "traits": {"plan": plan}, "timestamp": at},
                key,
            )
        )
    assert traits(profile(api, "user_id:u-1"))["plan"]["value"] == "pro"
    history = api.get(
        f"{PROFILES}/user_id:u-1/trait-history", params={"name": "plan"}, as_=api.admin
    ).json()
    assert [h["value"] for h in history] == ["pro", "trial", "free"]

    # 3. A second device, anonymous at first, then logged in: the two persons merge, the
    # older one survives, and the newer id answers with the survivor.
    ok(post_to(api, "track", {"anonymousId": "anon-2", "event": "App Opened"}, key))
    second = profile(api, "anonymous_id:anon-2")["person_id"]
    assert second != person
    ok(post_to(api, "identify", {"anonymousId": "anon-2", "userId": "u-1"}, key))
    merged = profile(api, str(second))
    assert merged["person_id"] == person
    assert merged["merged"]["merged_into"] == person
    assert second in profile(api, str(person))["merged_person_ids"]
    titles = [entry["title"] for entry in timeline(api, str(person))]
    assert {"App Opened", "Trial Started", "Pricing"} <= set(titles)

    # 4. A rep types the contact into the CRM: its e-mail links it to the same person, and
    # the typed first name beats the tracked one (which stays visible).
    contact = api.post(
        "/api/v1/contacts",
        as_=api.admin,
        json={"first_name": "愛子", "last_name": "佐藤", "email": "aiko@example.jp"},
    )
    assert contact.status_code == 201, contact.text
    contact_id = contact.json()["id"]
    linked = api.get(f"/api/v1/contacts/{contact_id}/profile", as_=api.admin)
    assert linked.status_code == 200, linked.text
    assert linked.json()["person_id"] == person
    shown = traits(profile(api, f"crm_contact:{contact_id}"))
    assert shown["firstName"]["value"] == "愛子"
    assert shown["firstName"]["source_kind"] == "crm"
    assert shown["firstName"]["tracked_value"] == "Aiko"
    assert profile(api, str(person))["contact"]["id"] == contact_id
    call = api.post(
        "/api/v1/activities",
        as_=api.admin,
        json={
            "kind": "call",
            "subject": "Onboarding call",
            "links": [{"type": "contact", "id": contact_id}],
        },
    )
    assert call.status_code == 201, call.text
    entries = timeline(api, str(person))
    assert {"event", "activity"} <= {e["kind"] for e in entries}
    assert "Onboarding call" in [e["title"] for e in entries]

    # 5. The second device was someone else's after all: unmerge it. Its identifier and
    # events go to a person of their own; the survivor keeps the rest.
    explain = api.get(
        "/api/v1/identity/explain",
        params={"a": "anonymous_id:anon-1", "b": "anonymous_id:anon-2"},
        as_=api.admin,
    )
    assert explain.status_code == 200, explain.text
    edge = next(
        e for e in explain.json()["edges"] if "anon-2" in (e["left"]["value"], e["right"]["value"])
    )
    split = api.post(
        f"/api/v1/identity/persons/{person}/unmerge",
        json={"edge_ids": [edge["id"]]},
        as_=api.admin,
    )
    assert split.status_code == 200, split.text
    (new_person,) = split.json()["new_person_ids"]
    assert profile(api, "anonymous_id:anon-2")["person_id"] == new_person
    # The stored events of the split-off device carry the new person's id.
    moved = read_events(api, anonymous_id="anon-2")
    assert moved and {e["person_id"] for e in moved} == {str(new_person)}
    kept = read_events(api, anonymous_id="anon-1")
    assert {e["person_id"] for e in kept} == {str(person)}
    assert "App Opened" not in [e["title"] for e in timeline(api, str(person))]
    assert "App Opened" in [e["title"] for e in timeline(api, str(new_person))]
    # New events of the split-off device now resolve to the new person.
    ok(post_to(api, "track", {"anonymousId": "anon-2", "event": "App Closed"}, key))
    latest = read_events(api, anonymous_id="anon-2", event="App Closed")
    assert [e["person_id"] for e in latest] == [str(new_person)]


def test_profile_references_that_are_wrong(api: Api) -> None:
    assert_problem(api.get(f"{PROFILES}/email:nobody@example.jp", as_=api.admin), 404)
    assert_problem(api.get(f"{PROFILES}/nonsense", as_=api.admin), 422, ("path", "ref"))
    assert_problem(api.get(f"{PROFILES}/email:not-an-address", as_=api.admin), 422)
    assert_problem(api.get(f"{PROFILES}/99999999999999999999", as_=api.admin), 422)
    assert_problem(api.get("/api/v1/contacts/424242/profile", as_=api.admin), 404)
    assert api.get(f"{PROFILES}/1").status_code == 401
