"""The identity graph over HTTP: resolve, look a person up, explain a link, unmerge and the
merge log, with bad input answered by problem documents that name the field, and the role
matrix and token scopes enforced."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from tests.api.conftest import Api, Caller, assert_problem

from ichigen.auth.permissions import MATRIX
from ichigen.identity.models import IdentityEdge, IdentityIdentifier, MergeLogEntry, Person

RESOLVE = "/api/v1/identity/resolve"
PERSONS = "/api/v1/identity/persons"


def _ids(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"type": t, "value": v} for t, v in pairs]


def _resolve(
    api: Api,
    *pairs: tuple[str, str],
    kind: str = "event",
    ref: str = "m",
    as_: Caller | None = None,
) -> dict[str, Any]:
    response = api.post(
        RESOLVE,
        as_=as_ or api.admin,
        json={"identifiers": _ids(*pairs), "source": {"kind": kind, "reference": ref}},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _counts(api: Api) -> dict[str, int]:
    """Rows per identity table, to show that a refused request wrote nothing."""
    with api.db.sessionmaker() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Person, IdentityIdentifier, IdentityEdge, MergeLogEntry)
        }


def _wrong_merge(api: Api) -> tuple[int, int]:
    """Alice and Bob merged through Bob's e-mail address typed into Alice's CRM record."""
    alice = _resolve(api, ("anonymous_id", "a-anon"), ("user_id", "alice"), ref="m1")
    bob = _resolve(api, ("anonymous_id", "b-anon"), ("email", "Bob@X.jp"), ref="m2")
    assert alice["created"] and bob["created"] and alice["person_id"] != bob["person_id"]
    merged = _resolve(api, ("user_id", "alice"), ("email", "BOB@x.jp"), kind="crm", ref="c9")
    assert merged == {
        "person_id": alice["person_id"],
        "created": False,
        "merged_person_ids": [bob["person_id"]],
        "rejected": [],
        "blocked": [],
    }
    return alice["person_id"], bob["person_id"]


def test_resolve_look_up_explain_unmerge_and_log(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    alice, bob = _wrong_merge(api)

    by_email = api.get(f"{PERSONS}/email:BOB@X.JP", as_=admin)
    assert by_email.status_code == 200, by_email.text
    person = by_email.json()
    assert person["id"] == alice and person["merged"] is None
    assert person["identifiers"] == _ids(
        ("anonymous_id", "a-anon"),
        ("anonymous_id", "b-anon"),
        ("email", "bob@x.jp"),
        ("user_id", "alice"),
    )
    assert person["first_seen"] <= person["last_seen"]
    assert api.get(f"{PERSONS}/user_id:alice", as_=admin).json() == person
    assert api.get(f"{PERSONS}/{alice}", as_=admin).json() == person
    old = api.get(f"{PERSONS}/{bob}", as_=admin).json()
    assert old["id"] == alice and old["identifiers"] == person["identifiers"]
    assert old["merged"]["person_id"] == bob and old["merged"]["merged_into"] == alice
    assert old["merged"]["merged_at"] is not None

    explained = api.get(
        "/api/v1/identity/explain", params={"a": "user_id:alice", "b": "email:Bob@x.jp"}, as_=admin
    )
    assert explained.status_code == 200, explained.text
    chain = explained.json()
    assert chain["person_id"] == alice
    assert [(e["source_kind"], e["source_ref"]) for e in chain["edges"]] == [("crm", "c9")]
    edge = chain["edges"][0]
    assert {edge["left"]["value"], edge["right"]["value"]} == {"alice", "bob@x.jp"}
    assert edge["created_at"] and edge["removed_at"] is None
    same = api.get(
        "/api/v1/identity/explain", params={"a": "user_id:alice", "b": "user_id:alice"}, as_=admin
    )
    assert same.json() == {"person_id": alice, "edges": []}

    log = api.get("/api/v1/identity/merge-log", params={"person_id": alice}, as_=admin).json()
    assert [(e["action"], e["other_person_id"]) for e in log["items"]] == [("merged", bob)]
    assert log["next_cursor"] is None

    split = api.post(f"{PERSONS}/{alice}/unmerge", as_=admin, json={"edge_ids": [edge["id"]]})
    assert split.status_code == 200, split.text
    result = split.json()
    assert result["person_id"] == alice and result["removed_edge_ids"] == [edge["id"]]
    [new_id] = result["new_person_ids"]
    assert new_id not in (alice, bob)
    bobs = api.get(f"{PERSONS}/email:bob@x.jp", as_=admin).json()
    assert bobs["id"] == new_id
    assert bobs["identifiers"] == _ids(("anonymous_id", "b-anon"), ("email", "bob@x.jp"))
    assert api.get(f"{PERSONS}/{alice}", as_=admin).json()["identifiers"] == _ids(
        ("anonymous_id", "a-anon"), ("user_id", "alice")
    )
    assert_problem(
        api.get(
            "/api/v1/identity/explain",
            params={"a": "user_id:alice", "b": "email:bob@x.jp"},
            as_=admin,
        ),
        404,
    )
    log = api.get("/api/v1/identity/merge-log", params={"person_id": alice}, as_=admin).json()
    assert [e["action"] for e in log["items"]] == ["unmerged", "merged"]
    history = api.get(
        "/api/v1/audit", params={"entity": "person", "record_id": alice}, as_=admin
    ).json()
    assert [(h["action"], h["actor_user_id"]) for h in history] == [("unmerge", admin.user.id)]


def test_resolve_reports_rejections_and_blocked_values(api_on: Api) -> None:
    api = api_on
    one = _resolve(api, ("user_id", "u-1"))["person_id"]
    two = _resolve(api, ("user_id", "u-2"), ("anonymous_id", "x"))["person_id"]
    result = _resolve(
        api,
        ("user_id", "u-1"),
        ("anonymous_id", "x"),
        ("email", "NULL"),
        ("phone", "ｕｎｄｅｆｉｎｅｄ"),
    )
    assert result["person_id"] == one and result["merged_person_ids"] == []
    [rejection] = result["rejected"]
    assert rejection["person_id"] == one and rejection["other_person_id"] == two
    assert rejection["identifier"] == {"type": "anonymous_id", "value": "x"}
    assert rejection["reason"].startswith("different user_id")
    assert result["blocked"] == [["email", "NULL"], ["phone", "ｕｎｄｅｆｉｎｅｄ"]]
    log = api.get("/api/v1/identity/merge-log", params={"person_id": two}, as_=api.admin).json()
    assert [(e["action"], e["person_id"]) for e in log["items"]] == [("rejected", one)]
    # A Japanese national phone number is stored (and found) as E.164.
    phone = _resolve(api, ("phone", "090-1234-5678"))["person_id"]
    found = api.get(f"{PERSONS}/phone:%2B819012345678", as_=api.admin).json()
    assert found["id"] == phone and found["identifiers"] == _ids(("phone", "+819012345678"))
    assert api.get(f"{PERSONS}/phone:０９０１２３４５６７８", as_=api.admin).json()["id"] == phone
    # Other ids keep their case, and may hold a slash (sent as is or encoded).
    crm = _resolve(api, ("crm_contact", "Org/42"))["person_id"]
    for ref in ("crm_contact:Org/42", "crm_contact:Org%2F42"):
        assert api.get(f"{PERSONS}/{ref}", as_=api.admin).json()["id"] == crm
    assert_problem(api.get(f"{PERSONS}/crm_contact:org/42", as_=api.admin), 404)


GOOD = {"type": "email", "value": "taro@example.jp"}
SOURCE = {"kind": "event", "reference": "m1"}
BAD_RESOLVES: list[tuple[dict[str, Any], tuple[str | int, ...]]] = [
    ({"identifiers": [], "source": SOURCE}, ("body", "identifiers")),
    ({"identifiers": [GOOD] * 51, "source": SOURCE}, ("body", "identifiers")),
    (
        {"identifiers": [GOOD, {"type": "fax", "value": "1"}], "source": SOURCE},
        ("identifiers", 1, "type"),
    ),
    (
        {"identifiers": [GOOD, {"type": "email", "value": "taro@"}], "source": SOURCE},
        ("identifiers", 1, "value"),
    ),
    (
        {"identifiers": [{"type": "phone", "value": "call me"}, GOOD], "source": SOURCE},
        ("identifiers", 0, "value"),
    ),
    (
        {"identifiers": [GOOD, {"type": "user_id", "value": "u" * 321}], "source": SOURCE},
        ("identifiers", 1, "value"),
    ),
    ({"identifiers": [{"type": "email", "value": "null"}], "source": SOURCE}, ("identifiers",)),
    ({"identifiers": [{"type": "email"}], "source": SOURCE}, ("body", "identifiers", 0, "value")),
    # PostgreSQL cannot store a NUL character: refused up front on both engines.
    (
        {"identifiers": [{"type": "user_id", "value": "u\x00"}], "source": SOURCE},
        ("body", "identifiers", 0, "value"),
    ),
    ({"identifiers": [GOOD], "source": {"kind": "guess"}}, ("body", "source", "kind")),
    ({"identifiers": [GOOD]}, ("body", "source")),
    (
        {"identifiers": [{**GOOD, "colour": "red"}], "source": SOURCE},
        ("body", "identifiers", 0, "colour"),
    ),
]


def test_bad_resolve_input_is_a_problem_naming_the_field_and_changes_nothing(
    api_on: Api,
) -> None:
    api = api_on
    _resolve(api, ("email", "hanako@example.jp"))
    before = _counts(api)
    for body, loc in BAD_RESOLVES:
        assert_problem(api.post(RESOLVE, as_=api.admin, json=body), 422, loc)
    assert _counts(api) == before
    assert_problem(api.get(f"{PERSONS}/email:taro@example.jp", as_=api.admin), 404)


def test_look_up_answers_404_for_unknown_and_422_for_malformed_refs(api: Api) -> None:
    person = _resolve(api, ("email", "taro@example.jp"))["person_id"]
    admin = api.admin
    for ref in ("email:hanako@example.jp", "user_id:u-42", "email:null", str(person + 1000)):
        assert_problem(api.get(f"{PERSONS}/{ref}", as_=admin), 404)
    cases: list[tuple[str, tuple[str | int, ...]]] = [
        ("email:taro@", ("path", "ref", "value")),
        ("fax:0312345678", ("path", "ref", "type")),
        ("taro@example.jp", ("path", "ref")),
        (":taro", ("path", "ref")),
        ("0", ("path", "ref")),
        ("user_id:u%00", ("path", "ref")),
        ("9223372036854775808", ("path", "ref")),
    ]
    for ref, loc in cases:
        assert_problem(api.get(f"{PERSONS}/{ref}", as_=admin), 422, loc)
    explain = "/api/v1/identity/explain"
    assert_problem(
        api.get(explain, params={"a": "taro", "b": "email:taro@example.jp"}, as_=admin),
        422,
        ("query", "a"),
    )
    assert_problem(
        api.get(explain, params={"a": "email:taro@example.jp", "b": "fax:1"}, as_=admin),
        422,
        ("query", "b", "type"),
    )
    assert_problem(api.get(explain, params={"a": "email:taro@example.jp"}, as_=admin), 422)
    assert_problem(
        api.get(explain, params={"a": "user_id:u\x00", "b": "email:taro@example.jp"}, as_=admin),
        422,
        ("query", "a"),
    )
    _resolve(api, ("email", "hanako@example.jp"))
    for other in ("email:hanako@example.jp", "email:jiro@example.jp"):
        assert_problem(
            api.get(explain, params={"a": "email:taro@example.jp", "b": other}, as_=admin), 404
        )


def test_unmerge_refusals_are_problems_and_change_nothing(api_on: Api) -> None:
    api, admin = api_on, api_on.admin
    alice, bob = _wrong_merge(api)
    loner = _resolve(api, ("email", "solo@example.jp"))["person_id"]
    other = _resolve(api, ("anonymous_id", "c-anon"), ("email", "carol@example.jp"))
    assert other["created"]
    carol_chain = api.get(
        "/api/v1/identity/explain",
        params={"a": "anonymous_id:c-anon", "b": "email:carol@example.jp"},
        as_=admin,
    ).json()["edges"]
    before = _counts(api)
    cases: list[tuple[int, Any, int, tuple[tuple[str | int, ...], ...]]] = [
        (alice + loner + 1000, {"edge_ids": [1]}, 404, ()),
        (bob, {"edge_ids": [1]}, 409, ()),
        (loner, {"edge_ids": [1]}, 409, ()),
        (alice, {"edge_ids": []}, 422, (("edge_ids",),)),
        (alice, {"edge_ids": [carol_chain[0]["id"]]}, 422, (("edge_ids", 0),)),
        (alice, {}, 422, (("body", "edge_ids"),)),
        (alice, {"edge_ids": [0]}, 422, (("body", "edge_ids", 0),)),
        (alice, {"edge_ids": ["one"]}, 422, (("body", "edge_ids", 0),)),
    ]
    for person_id, body, status, locs in cases:
        response = api.post(f"{PERSONS}/{person_id}/unmerge", as_=admin, json=body)
        assert_problem(response, status, *locs)
    assert _counts(api) == before
    assert api.get(f"{PERSONS}/email:bob@x.jp", as_=admin).json()["id"] == alice


def test_merge_log_pages_newest_first(api: Api) -> None:
    admin = api.admin
    survivor = _resolve(api, ("user_id", "main"), ref="m0")["person_id"]
    for n in range(5):
        _resolve(api, ("anonymous_id", f"anon-{n}"), ref=f"a{n}")
        _resolve(api, ("user_id", "main"), ("anonymous_id", f"anon-{n}"), ref=f"l{n}")
    everything = api.get(
        "/api/v1/identity/merge-log", params={"person_id": survivor, "limit": 500}, as_=admin
    ).json()
    ids = [e["id"] for e in everything["items"]]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert [e["source_ref"] for e in everything["items"]] == ["l4", "l3", "l2", "l1", "l0"]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"person_id": survivor, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/identity/merge-log", params=params, as_=admin).json()
        pages += 1
        seen.extend(e["id"] for e in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3
    assert_problem(
        api.get(
            "/api/v1/identity/merge-log",
            params={"person_id": survivor, "cursor": "forged"},
            as_=admin,
        ),
        400,
        ("query", "cursor"),
    )
    assert_problem(
        api.get("/api/v1/identity/merge-log", params={"person_id": survivor + 99}, as_=admin), 404
    )
    assert_problem(api.get("/api/v1/identity/merge-log", as_=admin), 422, ("query", "person_id"))


@pytest.mark.parametrize("role", [r.value for r in MATRIX])
def test_each_role_gets_exactly_its_identity_grants(api: Api, role: str) -> None:
    alice, _ = _wrong_merge(api)
    caller = api.caller(role)
    grants = MATRIX[role]["identity"]  # type: ignore[index]
    reads = [
        f"{PERSONS}/{alice}",
        f"{PERSONS}/user_id:alice",
        "/api/v1/identity/explain?a=user_id:alice&b=email:bob@x.jp",
        f"/api/v1/identity/merge-log?person_id={alice}",
    ]
    for path in reads:
        response = api.get(path, as_=caller)
        assert response.status_code == (200 if "read" in grants else 403), (role, path)
    before = _counts(api)
    response = api.post(
        RESOLVE,
        as_=caller,
        json={"identifiers": [{"type": "email", "value": f"{role}@example.jp"}], "source": SOURCE},
    )
    if "write" in grants:
        assert response.status_code == 200, response.text
    else:
        assert_problem(response, 403)
        assert _counts(api) == before


def test_viewers_and_read_tokens_cannot_resolve_or_unmerge(api: Api) -> None:
    alice, _ = _wrong_merge(api)
    edge = api.get(
        "/api/v1/identity/explain",
        params={"a": "user_id:alice", "b": "email:bob@x.jp"},
        as_=api.admin,
    ).json()["edges"][0]["id"]
    before = _counts(api)
    reader = api.caller("admin", scope="read")
    for caller in (api.caller("viewer"), api.caller("marketing"), reader):
        assert api.get(f"{PERSONS}/{alice}", as_=caller).status_code == 200
        assert_problem(
            api.post(f"{PERSONS}/{alice}/unmerge", as_=caller, json={"edge_ids": [edge]}), 403
        )
        assert_problem(
            api.post(RESOLVE, as_=caller, json={"identifiers": [GOOD], "source": SOURCE}), 403
        )
    body = api.post(RESOLVE, as_=reader, json={"identifiers": [GOOD], "source": SOURCE}).json()
    assert body["detail"] == "This API token is read-only."
    assert_problem(api.get(f"{PERSONS}/{alice}"), 401)
    assert_problem(api.post(RESOLVE, json={"identifiers": [GOOD], "source": SOURCE}), 401)
    assert _counts(api) == before
    manager = api.caller("manager")
    done = api.post(f"{PERSONS}/{alice}/unmerge", as_=manager, json={"edge_ids": [edge]})
    assert done.status_code == 200, done.text


def test_openapi_document_lists_the_identity_paths(api: Api) -> None:
    document = api.get("/openapi.json").json()
    paths = document["paths"]
    expected = {
        "/api/v1/identity/resolve": "post",
        "/api/v1/identity/persons/{ref}": "get",
        "/api/v1/identity/explain": "get",
        "/api/v1/identity/persons/{person_id}/unmerge": "post",
        "/api/v1/identity/merge-log": "get",
    }
    for path, method in expected.items():
        assert method in paths.get(path, {}), (path, sorted(paths))
        operation = paths[path][method]
        assert operation["tags"] == ["identity"]
        assert "422" in operation["responses"] and "403" in operation["responses"]
    resolve_body = paths["/api/v1/identity/resolve"]["post"]["requestBody"]["content"]
    schema = document["components"]["schemas"]["ResolveRequest"]
    assert resolve_body["application/json"]["schema"]["$ref"].endswith("/ResolveRequest")
    assert schema["properties"]["identifiers"]["maxItems"] == 50
    assert schema["examples"]
