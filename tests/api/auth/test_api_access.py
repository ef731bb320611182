"""Authentication and authorisation over HTTP: tokens, scopes, roles, users, teams."""

from __future__ import annotations

import pytest
from tests.api.conftest import Api, assert_problem

from ichigen.auth.permissions import MATRIX

CONTACT = {"last_name": "Tanaka", "email": "tanaka@example.com"}


BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer ich_not-a-real-token"},
    {"Authorization": "Bearer not-even-our-prefix"},
    {"Authorization": "Bearer " + "x" * 5000},
]


def test_missing_or_bad_credentials_are_401_with_a_challenge(api: Api) -> None:
    for headers in BAD_CREDENTIALS:
        for method, path in [("GET", "/api/v1/contacts"), ("POST", "/api/v1/contacts")]:
            response = api.request(method, path, headers=headers, json=CONTACT)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert api.get("/api/v1/contacts", as_=api.admin).json()["items"] == []


def test_revoked_token_is_401(api: Api) -> None:
    caller = api.caller("sales")
    [token] = api.get(f"/api/v1/users/{caller.user.id}/tokens", as_=caller).json()
    assert "token" not in token and caller.token.startswith(token["prefix"])
    revoked = api.delete(f"/api/v1/tokens/{token['id']}", as_=caller)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert_problem(api.get("/api/v1/contacts", as_=caller), 401)


def test_read_only_token_reads_but_cannot_write(api: Api) -> None:
    reader = api.caller("admin", scope="read")
    assert api.get("/api/v1/contacts", as_=reader).status_code == 200
    for method, path, body in [
        ("POST", "/api/v1/contacts", CONTACT),
        ("POST", "/api/v1/companies", {"name": "Nope"}),
        ("POST", "/api/v1/contacts/bulk", {"records": [CONTACT]}),
        ("POST", "/api/v1/teams", {"name": "Nope"}),
        (
            "POST",
            "/api/v1/custom-fields",
            {"entity": "contacts", "key": "k", "label": "K", "field_type": "text"},
        ),
    ]:
        body_out = assert_problem(api.request(method, path, as_=reader, json=body), 403)
        assert "read-only" in body_out["detail"], path
    assert api.get("/api/v1/contacts", as_=api.admin).json()["items"] == []


# (method, path, body) -> entity written or read, per the matrix
WRITES = [
    ("POST", "/api/v1/contacts", CONTACT, "contacts"),
    ("POST", "/api/v1/companies", {"name": "Acme"}, "companies"),
    ("POST", "/api/v1/teams", {"name": "Team"}, "teams"),
    ("POST", "/api/v1/users", {"email": "n@example.com", "name": "N"}, "users"),
    (
        "POST",
        "/api/v1/custom-fields",
        {"entity": "contacts", "key": "tier", "label": "Tier", "field_type": "text"},
        "custom_fields",
    ),
]
READS = [
    ("/api/v1/contacts", "contacts"),
    ("/api/v1/companies", "companies"),
    ("/api/v1/users", "users"),
    ("/api/v1/teams", "teams"),
    ("/api/v1/custom-fields", "custom_fields"),
    ("/api/v1/audit?entity=contacts&record_id=1", "audit"),
]


@pytest.mark.parametrize("role", [r.value for r in MATRIX])
def test_each_role_gets_exactly_its_matrix_over_http(api: Api, role: str) -> None:
    caller = api.caller(role)
    grants = MATRIX[role]  # type: ignore[index]
    for path, entity in READS:
        response = api.get(path, as_=caller)
        expected = 200 if "read" in grants[entity] else 403
        assert response.status_code == expected, (role, path, response.text)
    for method, path, body, entity in WRITES:
        response = api.request(method, path, as_=caller, json=body)
        expected = 201 if "write" in grants[entity] else 403
        assert response.status_code == expected, (role, path, response.text)
        if expected == 403:
            assert_problem(response, 403)


def test_viewer_reads_contacts_and_itself_but_not_users_or_history(api: Api) -> None:
    viewer = api.caller("viewer")
    created = api.post("/api/v1/contacts", as_=api.admin, json=CONTACT).json()
    assert api.get(f"/api/v1/contacts/{created['id']}", as_=viewer).status_code == 200
    assert api.get("/api/v1/users/me", as_=viewer).json()["id"] == viewer.user.id
    assert api.get(f"/api/v1/users/{viewer.user.id}", as_=viewer).status_code == 200
    assert_problem(api.get(f"/api/v1/users/{api.admin.user.id}", as_=viewer), 403)
    assert_problem(api.get(f"/api/v1/contacts/{created['id']}/history", as_=viewer), 403)
    assert_problem(
        api.patch(f"/api/v1/contacts/{created['id']}", as_=viewer, json={"city": "X"}), 403
    )
    assert_problem(api.delete(f"/api/v1/contacts/{created['id']}", as_=viewer), 403)
    assert api.get(f"/api/v1/contacts/{created['id']}", as_=viewer).json()["city"] is None


def test_sales_cannot_edit_another_teams_contact_over_http(api: Api) -> None:
    east, west = api.team("East"), api.team("West")
    owner = api.caller("sales", team_id=east)
    mate = api.caller("sales", team_id=east)
    stranger = api.caller("sales", team_id=west)
    created = api.post(
        "/api/v1/contacts", as_=owner, json={**CONTACT, "owner_id": owner.user.id}
    ).json()
    path = f"/api/v1/contacts/{created['id']}"
    assert_problem(api.patch(path, as_=stranger, json={"city": "Kobe"}), 403)
    assert api.patch(path, as_=mate, json={"city": "Kobe"}).status_code == 200


def test_roles_endpoint_shows_the_matrix(api: Api) -> None:
    body = api.get("/api/v1/roles", as_=api.caller("viewer")).json()
    assert body["viewer"]["users"] == []
    assert body["admin"]["contacts"] == ["read", "write"]
    assert set(body) == {r.value for r in MATRIX}


def test_user_lifecycle_over_http(api: Api) -> None:
    admin = api.admin
    created = api.post(
        "/api/v1/users",
        as_=admin,
        json={"email": "Aiko@Example.CO.JP", "name": "佐藤 愛子", "role": "sales"},
    )
    assert created.status_code == 201
    user = created.json()
    assert user["email"] == "aiko@example.co.jp"
    assert created.headers["location"] == f"/api/v1/users/{user['id']}"
    assert created.headers["etag"] == '"v1"'
    assert "password" not in user and "password_hash" not in user
    assert_problem(
        api.post("/api/v1/users", as_=admin, json={"email": "AIKO@example.co.jp", "name": "X"}),
        409,
        ("email",),
    )
    assert_problem(
        api.post(
            "/api/v1/users", as_=admin, json={"email": "x@example.com", "name": "X", "role": "root"}
        ),
        422,
        ("body", "role"),
    )
    assert_problem(
        api.post(
            "/api/v1/users",
            as_=admin,
            json={"email": "y@example.com", "name": "Y", "password": "short"},
        ),
        422,
        ("body", "password"),
    )
    path = f"/api/v1/users/{user['id']}"
    changed = api.patch(path, as_=admin, json={"role": "manager"}, headers={"If-Match": '"v1"'})
    assert changed.status_code == 200 and changed.json()["role"] == "manager"
    assert changed.headers["etag"] == '"v2"'
    assert_problem(
        api.patch(path, as_=admin, json={"name": "Z"}, headers={"If-Match": '"v1"'}), 412
    )
    # A non-admin cannot change roles, not even their own.
    manager = api.caller("manager")
    assert_problem(
        api.patch(f"/api/v1/users/{manager.user.id}", as_=manager, json={"role": "admin"}), 403
    )
    # Nobody deactivates themselves.
    assert_problem(api.delete(f"/api/v1/users/{admin.user.id}", as_=admin), 422, ("is_active",))
    history = api.get(f"{path}/history", as_=admin).json()
    assert [e["action"] for e in history] == ["update", "create"]
    assert api.delete(path, as_=admin).status_code == 204
    assert api.get(path, as_=admin).json()["is_active"] is False
    assert_problem(api.get("/api/v1/users/999999", as_=admin), 404)


def test_deactivated_users_tokens_stop_working(api: Api) -> None:
    leaver = api.caller("sales")
    assert api.get("/api/v1/contacts", as_=leaver).status_code == 200
    assert api.delete(f"/api/v1/users/{leaver.user.id}", as_=api.admin).status_code == 204
    assert_problem(api.get("/api/v1/contacts", as_=leaver), 401)


def test_tokens_over_http(api: Api) -> None:
    sales = api.caller("sales")
    other = api.caller("sales")
    made = api.post(
        f"/api/v1/users/{sales.user.id}/tokens", as_=sales, json={"name": "CI", "scope": "read"}
    )
    assert made.status_code == 201
    token = made.json()["token"]
    assert token.startswith("ich_")
    listed = api.get(f"/api/v1/users/{sales.user.id}/tokens", as_=sales).json()
    assert all("token" not in t for t in listed) and len(listed) == 2
    new_caller_headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/contacts", headers=new_caller_headers).status_code == 200
    assert_problem(api.post("/api/v1/contacts", headers=new_caller_headers, json=CONTACT), 403)
    # Not for someone else, and not someone else's list.
    assert_problem(api.post(f"/api/v1/users/{other.user.id}/tokens", as_=sales, json={}), 403)
    assert_problem(api.get(f"/api/v1/users/{other.user.id}/tokens", as_=sales), 403)
    assert_problem(api.delete(f"/api/v1/tokens/{listed[0]['id']}", as_=other), 403)
    assert_problem(api.delete("/api/v1/tokens/999999", as_=sales), 404)


def test_teams_over_http(api: Api) -> None:
    manager = api.caller("manager")
    created = api.post("/api/v1/teams", as_=manager, json={"name": "Osaka"})
    assert created.status_code == 201
    team = created.json()
    assert created.headers["location"] == f"/api/v1/teams/{team['id']}"
    assert_problem(api.post("/api/v1/teams", as_=manager, json={"name": "Osaka"}), 409, ("name",))
    path = f"/api/v1/teams/{team['id']}"
    assert api.get(path, as_=manager).headers["etag"] == '"v1"'
    renamed = api.patch(
        path, as_=manager, json={"name": "Osaka East"}, headers={"If-Match": '"v1"'}
    )
    assert renamed.json()["name"] == "Osaka East"
    assert_problem(
        api.patch(path, as_=manager, json={"name": "X"}, headers={"If-Match": '"v1"'}), 412
    )
    assert api.delete(path, as_=manager).status_code == 204
    assert_problem(api.get(path, as_=manager), 404)
    assert_problem(api.delete(path, as_=manager), 404)
