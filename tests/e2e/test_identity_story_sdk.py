"""The identity story with the real SDKs against a live server: an anonymous visitor (the
Segment client) signs up, a second device (the RudderStack client) logs in and merges, a rep
types the contact into the CRM, and an unmerge splits the device off again. After each step
the profile, its traits, its timeline and the stored events' person ids are checked through
the JSON API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient
from tests.e2e.conftest import ADMIN_EMAIL, LiveServer

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import TokenCreate
from ichigen.collect import service as collect_service
from ichigen.collect.schemas import SourceCreate
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.settings import Settings

pytestmark = pytest.mark.e2e


class Api:
    def __init__(self, server: LiveServer, token: str) -> None:
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        response = self.client.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture(scope="module")
def setup(live_server: LiveServer) -> Iterator[tuple[Api, str]]:
    settings = Settings(data_dir=live_server.data_dir, secret_key="e2e-secret-key-0123456789abcdef")
    database = Database.from_settings(settings)
    with database.sessionmaker() as session:
        admin = auth_service.find_user_by_email(session, ADMIN_EMAIL)
        assert admin is not None
        token = auth_service.create_token(
            session, admin.id, TokenCreate(name="story", scope="read-write"), Actor.system()
        )
        key = collect_service.create_source(
            session, SourceCreate(name=f"Shop {uuid.uuid4().hex[:6]}"), Actor.system()
        ).write_key
    api = Api(live_server, token.token)
    yield api, key
    api.client.close()
    database.dispose()


def _titles(api: Api, ref: str) -> list[str]:
    return [e["title"] for e in api.get(f"/api/v1/profiles/{ref}/timeline")["items"]]


def test_the_story_with_real_sdks(live_server: LiveServer, setup: tuple[Api, str]) -> None:
    api, key = setup
    tag = uuid.uuid4().hex[:6]
    laptop, phone, user, email = f"lap-{tag}", f"ph-{tag}", f"user-{tag}", f"mio.{tag}@example.jp"
    segment = SegmentClient(key, host=live_server.url, sync_mode=True, max_retries=0)
    rudder = RudderClient(key, host=live_server.url, sync_mode=True, max_retries=0)

    # Anonymous: one person, never identified, its events stored under it.
    segment.page(anonymous_id=laptop, name="Pricing", properties={"path": "/pricing"})
    segment.track(anonymous_id=laptop, event="Trial Started")
    anonymous = api.get(f"/api/v1/profiles/anonymous_id:{laptop}")
    person = anonymous["person_id"]
    assert anonymous["anonymous"] is True
    events = api.get("/api/v1/events", anonymous_id=laptop)["items"]
    assert len(events) == 2 and {e["person_id"] for e in events} == {str(person)}

    # Identified: the user id and the e-mail join the same person, with tracked traits.
    segment.identify(
        user, {"email": email, "firstName": "Mio", "plan": "trial"}, anonymous_id=laptop
    )
    identified = api.get(f"/api/v1/profiles/email:{email.upper()}")
    assert identified["person_id"] == person and identified["anonymous"] is False
    traits = {t["name"]: t for t in identified["traits"]}
    assert traits["plan"]["value"] == "trial" and traits["plan"]["source_kind"] == "event"

    # A second device (another SDK): anonymous, then logged in, so the two persons merge.
    rudder.track(anonymous_id=phone, event="App Opened")
    second = api.get(f"/api/v1/profiles/anonymous_id:{phone}")["person_id"]
    assert second != person
    rudder.identify(user, {"plan": "pro"}, anonymous_id=phone)
    merged = api.get(f"/api/v1/profiles/{second}")
    assert merged["person_id"] == person and merged["merged"]["merged_into"] == person
    assert {"App Opened", "Trial Started", "Pricing"} <= set(_titles(api, str(person)))
    assert {t["name"]: t["value"] for t in merged["traits"]}["plan"] == "pro"

    # The CRM: a rep creates the contact with the same address; the CRM value wins.
    contact = api.post(
        "/api/v1/contacts",
        {"first_name": "美緒", "last_name": "中村", "email": email},
        status=201,
    )
    linked = api.get(f"/api/v1/contacts/{contact['id']}/profile")
    assert linked["person_id"] == person
    first_name = {t["name"]: t for t in linked["traits"]}["firstName"]
    assert (first_name["value"], first_name["source_kind"], first_name["tracked_value"]) == (
        "美緒",
        "crm",
        "Mio",
    )
    api.post(
        "/api/v1/activities",
        {
            "kind": "call",
            "subject": f"Welcome call {tag}",
            "links": [{"type": "contact", "id": contact["id"]}],
        },
        status=201,
    )
    assert f"Welcome call {tag}" in _titles(api, f"crm_contact:{contact['id']}")

    # Unmerged: the phone was a colleague's. Its identifier and events leave the person.
    edges = api.get(
        "/api/v1/identity/explain", a=f"anonymous_id:{laptop}", b=f"anonymous_id:{phone}"
    )["edges"]
    phone_edge = next(e for e in edges if phone in (e["left"]["value"], e["right"]["value"]))
    split = api.post(f"/api/v1/identity/persons/{person}/unmerge", {"edge_ids": [phone_edge["id"]]})
    (colleague,) = split["new_person_ids"]
    assert api.get(f"/api/v1/profiles/anonymous_id:{phone}")["person_id"] == colleague
    assert "App Opened" not in _titles(api, str(person))
    assert "App Opened" in _titles(api, str(colleague))
    moved = api.get("/api/v1/events", anonymous_id=phone)["items"]
    assert moved and {e["person_id"] for e in moved} == {str(colleague)}
    # The same evidence again does not merge them back; the refusal is logged.
    rudder.identify(user, anonymous_id=phone)
    assert api.get(f"/api/v1/profiles/anonymous_id:{phone}")["person_id"] == colleague
    log = api.get("/api/v1/identity/merge-log", person_id=colleague)["items"]
    assert any(e["action"] == "rejected" and "unmerge" in e["reason"] for e in log)
    # The CRM link stayed with the person.
    assert api.get(f"/api/v1/profiles/crm_contact:{contact['id']}")["person_id"] == person
