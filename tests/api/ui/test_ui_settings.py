"""Settings pages: users, teams, API tokens and custom fields, each for the roles allowed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.api.ui.conftest import csrf_token, form_values, sign_in
from tests.conftest import make_user

from ichigen.auth import service as auth_service
from ichigen.auth.models import ApiToken
from ichigen.auth.schemas import TeamCreate, TokenCreate, UserRead, UserUpdate
from ichigen.core import custom_fields
from ichigen.core.audit import Actor
from ichigen.core.custom_fields import CustomFieldCreate, FieldOption
from ichigen.core.db import Database
from ichigen.crm.companies import service as companies
from ichigen.web.app import create_app

NOT_ALLOWED = "You are not allowed to do this."


class RoleBrowsers:
    """Signed-in browsers, one per role, each made (with its user) when first asked for."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.clients: dict[str, TestClient] = {}

    def __getitem__(self, role: str) -> TestClient:
        if role not in self.clients:
            with self.database.sessionmaker() as session:
                make_user(session, f"{role}@example.com", role)
            client = TestClient(create_app(self.database.settings, self.database))
            client.__enter__()
            self.clients[role] = client
            sign_in(client, f"{role}@example.com")
        return self.clients[role]

    def close(self) -> None:
        for client in self.clients.values():
            client.__exit__(None, None, None)


@pytest.fixture
def as_role(app_db: Database) -> Iterator[RoleBrowsers]:
    """A signed-in browser for any role: ``as_role["viewer"]``."""
    browsers = RoleBrowsers(app_db)
    yield browsers
    browsers.close()


def _error_for(html: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="{re.escape(name)}-error">([^<]*)</p>', html)
    assert found, f"no error shown for {name}"
    return found.group(1)


def _section_links(html: str) -> list[str]:
    nav = html[html.index('class="settings-nav"') : html.index('class="settings-main"')]
    return re.findall(r'<a href="(/settings/[a-z]+)"', nav)


# ----------------------------------------------------------------------------- navigation


def test_settings_are_in_the_navigation_with_the_sections_each_role_may_open(
    browser: TestClient, as_role: RoleBrowsers
) -> None:
    assert 'href="/settings"' in browser.get("/contacts").text
    admin_home = browser.get("/settings", follow_redirects=False)
    assert admin_home.headers["location"] == "/settings/users"
    admin_page = browser.get("/settings/users").text
    assert _section_links(admin_page) == [
        "/settings/users",
        "/settings/teams",
        "/settings/fields",
        "/settings/tokens",
    ]
    assert 'href="/settings" aria-current="page"' in admin_page

    viewer = as_role["viewer"]
    assert 'href="/settings"' in viewer.get("/contacts").text
    home = viewer.get("/settings", follow_redirects=False)
    assert home.headers["location"] == "/settings/fields"
    assert _section_links(viewer.get("/settings/tokens").text) == [
        "/settings/fields",
        "/settings/tokens",
    ]


def test_strangers_are_sent_to_sign_in(anonymous: TestClient) -> None:
    for path in ("/settings", "/settings/users", "/settings/tokens", "/settings/fields/contacts"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=%2Fsettings")


# ----------------------------------------------------------------------------- users


def test_only_roles_that_read_users_see_them_and_only_admins_change_them(
    app_db: Database, as_role: RoleBrowsers
) -> None:
    viewer = as_role["viewer"]
    denied = viewer.get("/settings/users")
    assert denied.status_code == 403 and NOT_ALLOWED in denied.text
    assert viewer.get("/settings/users/new").status_code == 403

    sales = as_role["sales"]
    listing = sales.get("/settings/users")
    assert listing.status_code == 200
    assert "viewer@example.com" in listing.text and "Viewer" in listing.text
    assert "/settings/users/new" not in listing.text and "/edit" not in listing.text
    assert sales.get("/settings/users/new").status_code == 403
    token = csrf_token(sales.get("/settings/tokens").text)
    refused = sales.post(
        "/settings/users/new",
        data={
            "csrf_token": token,
            "email": "sneaky@example.com",
            "name": "Sneaky",
            "role": "admin",
            "password": "long-enough-password",
        },
    )
    assert refused.status_code == 403
    with app_db.sessionmaker() as session:
        assert auth_service.find_user_by_email(session, "sneaky@example.com") is None
        viewer_user = auth_service.find_user_by_email(session, "viewer@example.com")
    assert viewer_user is not None
    promote = sales.post(
        f"/settings/users/{viewer_user.id}/edit",
        data={"csrf_token": token, "name": "Viewer", "role": "admin", "is_active": "1"},
    )
    assert promote.status_code == 403
    with app_db.sessionmaker() as session:
        assert auth_service.get_user(session, viewer_user.id).role == "viewer"


def test_admin_creates_a_user_with_errors_shown_next_to_fields(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        team = auth_service.create_team(session, TeamCreate(name="Tokyo sales"), admin_actor)
    page = browser.get("/settings/users/new")
    assert page.status_code == 200
    form = form_values(page.text)
    assert form["role"] == "viewer" and form["team_id"] == ""
    assert f'<option value="{team.id}">Tokyo sales</option>' in page.text

    bad = browser.post(
        "/settings/users/new",
        data={**form, "email": "not-an-email", "name": "  ", "password": "short"},
    )
    assert bad.status_code == 422
    assert "Please correct the fields marked below." in bad.text
    assert _error_for(bad.text, "name") == "This field is required."
    assert _error_for(bad.text, "password") == "Use at least 10 characters."
    assert 'value="not-an-email"' in bad.text and "short" not in bad.text

    invalid_email = browser.post(
        "/settings/users/new",
        data={**form, "email": "not-an-email", "name": "Ken", "password": "long-enough-pw"},
    )
    assert invalid_email.status_code == 422
    assert "@" in _error_for(invalid_email.text, "email")

    created = browser.post(
        "/settings/users/new",
        data={
            **form,
            "email": "Ken.Sato@Example.JP",
            "name": "佐藤 健",
            "role": "sales",
            "team_id": str(team.id),
            "password": "long-enough-pw",
        },
        follow_redirects=False,
    )
    assert created.status_code == 303 and created.headers["location"] == "/settings/users"
    listing = browser.get("/settings/users").text
    assert "User created." in listing
    row = re.search(r'<tr data-user="ken.sato@example.jp">(.*?)</tr>', listing, re.S)
    assert row and "佐藤 健" in row.group(1) and "Tokyo sales" in row.group(1)
    assert "Sales" in row.group(1) and "Active" in row.group(1)

    # The new user can sign in with the password they were given.
    with TestClient(create_app(app_db.settings, app_db)) as ken:
        sign_in(ken, "ken.sato@example.jp", "long-enough-pw")
        assert ken.get("/settings/users").status_code == 200

    again = browser.post(
        "/settings/users/new",
        data={**form, "email": "ken.sato@example.jp", "name": "Ken", "password": "long-enough-pw"},
    )
    assert again.status_code == 409
    assert _error_for(again.text, "email") == "already in use"


def test_admin_edits_and_deactivates_a_user(
    browser: TestClient, app_db: Database, admin_actor: Actor, admin_user: UserRead
) -> None:
    with app_db.sessionmaker() as session:
        team = auth_service.create_team(session, TeamCreate(name="Osaka"), admin_actor)
        rep = make_user(session, "rep@example.com", "sales")
        auth_service.create_token(session, rep.id, TokenCreate(), admin_actor)
    page = browser.get(f"/settings/users/{rep.id}/edit")
    form = form_values(page.text)
    assert form["name"] == "Rep" and form["role"] == "sales" and form["is_active"] == "1"
    assert form["version"] == "1" and form["password"] == ""

    # Someone else saves first: the form says so and keeps what was typed.
    with app_db.sessionmaker() as session:
        auth_service.update_user(session, rep.id, UserUpdate(name="Rep 2"), admin_actor)
    stale = browser.post(f"/settings/users/{rep.id}/edit", data={**form, "name": "Rep 3"})
    assert stale.status_code == 409
    assert "Someone else changed this record while you were editing it." in stale.text

    fresh = form_values(browser.get(f"/settings/users/{rep.id}/edit").text)
    saved = browser.post(
        f"/settings/users/{rep.id}/edit",
        data={**fresh, "name": "Rep Manager", "role": "manager", "team_id": str(team.id)},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with app_db.sessionmaker() as session:
        after = auth_service.get_user(session, rep.id)
    assert (after.name, after.role, after.team_id) == ("Rep Manager", "manager", team.id)
    history = browser.get(f"/settings/users/{rep.id}/edit").text
    assert re.search(r'<td class="before">Sales</td>\s*<td class="arrow"', history)

    # An admin cannot demote or deactivate themselves.
    own = form_values(browser.get(f"/settings/users/{admin_user.id}/edit").text)
    refused = browser.post(f"/settings/users/{admin_user.id}/edit", data={**own, "role": "viewer"})
    assert refused.status_code == 422
    assert _error_for(refused.text, "role") == "not allowed on yourself"
    own_deactivation = browser.post(
        f"/settings/users/{admin_user.id}/deactivate", data={"csrf_token": own["csrf_token"]}
    )
    assert own_deactivation.status_code == 422
    assert "You cannot deactivate yourself." in own_deactivation.text

    confirm = browser.get(f"/settings/users/{rep.id}/deactivate")
    assert "Deactivate Rep Manager?" in confirm.text
    gone = browser.post(
        f"/settings/users/{rep.id}/deactivate",
        data=form_values(confirm.text),
        follow_redirects=False,
    )
    assert gone.status_code == 303
    listing = browser.get("/settings/users").text
    assert "User deactivated; their API tokens were revoked." in listing
    row = re.search(r'<tr data-user="rep@example.com" class="inactive">(.*?)</tr>', listing, re.S)
    assert row and "Inactive" in row.group(1)
    with app_db.sessionmaker() as session:
        assert not auth_service.get_user(session, rep.id).is_active
        assert all(t.revoked_at for t in auth_service.list_tokens(session, rep.id))

    # Making them active again is an edit.
    back = form_values(browser.get(f"/settings/users/{rep.id}/edit").text)
    assert "is_active" not in back
    browser.post(f"/settings/users/{rep.id}/edit", data={**back, "is_active": "1"})
    with app_db.sessionmaker() as session:
        assert auth_service.get_user(session, rep.id).is_active


def test_a_new_password_is_set_only_when_typed(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        rep = make_user(session, "pw@example.com", "sales")
    form = form_values(browser.get(f"/settings/users/{rep.id}/edit").text)
    short = browser.post(f"/settings/users/{rep.id}/edit", data={**form, "password": "short"})
    assert short.status_code == 422
    assert _error_for(short.text, "password") == "Use at least 10 characters."
    browser.post(f"/settings/users/{rep.id}/edit", data={**form, "password": "a-new-password"})
    with TestClient(create_app(app_db.settings, app_db)) as rep_browser:
        sign_in(rep_browser, "pw@example.com", "a-new-password")


# ----------------------------------------------------------------------------- teams


def test_teams_are_read_by_many_and_changed_by_managers(
    app_db: Database, as_role: RoleBrowsers, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        team = auth_service.create_team(session, TeamCreate(name="Nagoya"), admin_actor)
        make_user(session, "member@example.com", "sales", team_id=team.id)
    assert as_role["viewer"].get("/settings/teams").status_code == 403

    sales = as_role["sales"]
    listing = sales.get("/settings/teams")
    assert listing.status_code == 200 and "Nagoya" in listing.text
    assert "New team" not in listing.text and "/edit" not in listing.text
    refused = sales.post(
        "/settings/teams", data={"csrf_token": csrf_token(listing.text), "name": "Mine"}
    )
    assert refused.status_code == 403

    manager = as_role["manager"]
    page = manager.get("/settings/teams")
    row = re.search(r'<tr data-team="Nagoya">(.*?)</tr>', page.text, re.S)
    assert row and re.search(r'<td class="num">1</td>', row.group(1))
    token = csrf_token(page.text)
    empty = manager.post("/settings/teams", data={"csrf_token": token, "name": ""})
    assert empty.status_code == 422
    assert _error_for(empty.text, "name") == "This field is required."
    taken = manager.post("/settings/teams", data={"csrf_token": token, "name": "Nagoya"})
    assert taken.status_code == 409 and _error_for(taken.text, "name") == "already in use"
    created = manager.post(
        "/settings/teams",
        data={"csrf_token": token, "name": "Fukuoka", "description": "Kyushu accounts"},
        follow_redirects=False,
    )
    assert created.status_code == 303
    assert "Team created." in manager.get("/settings/teams").text

    rename = form_values(manager.get(f"/settings/teams/{team.id}/edit").text)
    assert rename["name"] == "Nagoya" and rename["version"] == "1"
    clash = manager.post(f"/settings/teams/{team.id}/edit", data={**rename, "name": "Fukuoka"})
    assert clash.status_code == 409 and _error_for(clash.text, "name") == "already in use"
    manager.post(f"/settings/teams/{team.id}/edit", data={**rename, "name": "Chubu"})
    with app_db.sessionmaker() as session:
        assert auth_service.get_team(session, team.id).name == "Chubu"

    confirm = manager.get(f"/settings/teams/{team.id}/delete")
    assert "Delete the team Chubu?" in confirm.text and "Users in this team: 1." in confirm.text
    deleted = manager.post(
        f"/settings/teams/{team.id}/delete", data=form_values(confirm.text), follow_redirects=False
    )
    assert deleted.status_code == 303
    assert "Team deleted." in manager.get("/settings/teams").text
    with app_db.sessionmaker() as session:
        member = auth_service.find_user_by_email(session, "member@example.com")
        assert member is not None and member.team_id is None
        assert [t.name for t in auth_service.list_teams(session)] == ["Fukuoka"]


# ----------------------------------------------------------------------------- API tokens


def test_a_new_token_is_shown_once_and_works_until_revoked(
    app_db: Database, as_role: RoleBrowsers
) -> None:
    viewer = as_role["viewer"]
    page = viewer.get("/settings/tokens")
    assert page.status_code == 200 and "You have no API tokens." in page.text
    token = csrf_token(page.text)

    nameless = viewer.post(
        "/settings/tokens", data={"csrf_token": token, "name": "", "scope": "read"}
    )
    assert nameless.status_code == 422
    assert _error_for(nameless.text, "name") == "This field is required."
    bad_scope = viewer.post(
        "/settings/tokens", data={"csrf_token": token, "name": "x", "scope": "admin"}
    )
    assert bad_scope.status_code == 422
    assert _error_for(bad_scope.text, "scope") == "Choose one of the listed values."

    created = viewer.post(
        "/settings/tokens", data={"csrf_token": token, "name": "Nightly BI", "scope": "read"}
    )
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    shown = re.search(
        r'id="new-token" class="token-value" type="text" value="(ich_[^"]+)"', created.text
    )
    assert shown, created.text
    secret = shown.group(1)
    assert created.text.count(secret) == 1
    assert 'data-copy="#new-token"' in created.text and "it is shown only this once" in created.text

    # Only a hash is kept, and the page never shows the token again.
    with app_db.sessionmaker() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "Nightly BI")).one()
    assert secret not in (row.token_hash, row.prefix) and secret.startswith(row.prefix)
    later = viewer.get("/settings/tokens").text
    assert secret not in later and f"<code>{row.prefix}…</code>" in later
    listed = re.search(rf'<tr data-token="{row.id}">(.*?)</tr>', later, re.S)
    assert listed and "Read only" in listed.group(1) and "Never" in listed.group(1)

    with TestClient(create_app(app_db.settings, app_db)) as api:
        bearer = {"Authorization": f"Bearer {secret}"}
        assert api.get("/api/v1/users/me", headers=bearer).json()["email"] == "viewer@example.com"
        used = re.search(
            rf'<tr data-token="{row.id}">(.*?)</tr>', viewer.get("/settings/tokens").text, re.S
        )
        assert used and "Never" not in used.group(1)

        # Someone else's token is not theirs to revoke.
        sales = as_role["sales"]
        other = sales.post(
            f"/settings/tokens/{row.id}/revoke",
            data={"csrf_token": csrf_token(sales.get("/settings/tokens").text)},
        )
        assert other.status_code == 404
        assert api.get("/api/v1/users/me", headers=bearer).status_code == 200

        revoked = viewer.post(
            f"/settings/tokens/{row.id}/revoke", data={"csrf_token": token}, follow_redirects=False
        )
        assert revoked.status_code == 303
        after = viewer.get("/settings/tokens").text
        assert "API token revoked." in after and "Revoked " in after
        assert f"/settings/tokens/{row.id}/revoke" not in after
        assert api.get("/api/v1/users/me", headers=bearer).status_code == 401


# ----------------------------------------------------------------------------- custom fields


def test_admin_defines_a_custom_field_that_the_contact_form_then_shows(
    browser: TestClient, app_db: Database
) -> None:
    assert browser.get("/settings/fields", follow_redirects=False).headers["location"] == (
        "/settings/fields/contacts"
    )
    listing = browser.get("/settings/fields/contacts")
    assert "No custom fields yet." in listing.text
    page = browser.get("/settings/fields/contacts/new")
    form = form_values(page.text)
    assert form["field_type"] == "text" and form["position"] == "0"

    bad = browser.post(
        "/settings/fields/contacts/new",
        data={
            **form,
            "key": "Tier!",
            "label": "",
            "field_type": "select",
            "options": "gold|Gold member\n\n|Nameless",
            "position": "first",
        },
    )
    assert bad.status_code == 422
    assert "lower-case letters" in _error_for(bad.text, "key")
    assert _error_for(bad.text, "label") == "This field is required."
    assert _error_for(bad.text, "position") == "Enter a whole number."
    assert _error_for(bad.text, "options") == "Line 3: This field is required."
    assert "gold|Gold member\n\n|Nameless</textarea>" in bad.text

    no_options = browser.post(
        "/settings/fields/contacts/new",
        data={**form, "key": "tier", "label": "Tier", "field_type": "select", "options": ""},
    )
    assert no_options.status_code == 422
    assert _error_for(no_options.text, "options") == "at least one option is required"
    twice = browser.post(
        "/settings/fields/contacts/new",
        data={**form, "key": "tier", "label": "Tier", "field_type": "select", "options": "a\na"},
    )
    assert _error_for(twice.text, "options") == "duplicate option value"

    created = browser.post(
        "/settings/fields/contacts/new",
        data={
            **form,
            "key": "tier",
            "label": "Customer tier",
            "field_type": "select",
            "help_text": "From the contract.",
            "options": "gold|Gold member\r\nsilver\r\n",
            "required": "1",
            "indexed": "1",
        },
        follow_redirects=False,
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/settings/fields/contacts"
    with app_db.sessionmaker() as session:
        (tier,) = custom_fields.list_fields(session, "contacts")
    assert tier.key == "tier" and tier.required and tier.indexed
    assert [(o.value, o.label) for o in tier.options] == [("gold", "Gold member"), ("silver", "")]
    listing = browser.get("/settings/fields/contacts").text
    assert "Custom field created." in listing
    row = re.search(r'<tr data-field="tier">(.*?)</tr>', listing, re.S)
    assert row and "Customer tier" in row.group(1) and "Choice of one option" in row.group(1)

    contact_form = browser.get("/contacts/new").text
    assert '<option value="gold">Gold member</option>' in contact_form
    assert 'id="custom-tier-help">From the contract.' in contact_form

    taken = browser.post(
        "/settings/fields/contacts/new",
        data={**form, "key": "tier", "label": "Tier", "field_type": "text"},
    )
    assert taken.status_code == 409 and _error_for(taken.text, "key") == "already in use"
    # The same key is free on companies.
    assert (
        browser.post(
            "/settings/fields/companies/new",
            data={**form, "key": "tier", "label": "Tier", "field_type": "text"},
            follow_redirects=False,
        ).status_code
        == 303
    )


def test_admin_edits_and_deletes_a_custom_field(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        field = custom_fields.create_field(
            session,
            CustomFieldCreate(
                entity="companies",
                key="segment",
                label="Segment",
                field_type="multi_select",
                options=[FieldOption(value="smb", label="SMB"), FieldOption(value="ent")],
            ),
            admin_actor,
        )
    assert browser.get(f"/settings/fields/contacts/{field.id}/edit").status_code == 404
    page = browser.get(f"/settings/fields/companies/{field.id}/edit")
    form = form_values(page.text)
    assert form["options"] == "smb|SMB\nent" and form["version"] == "1"
    assert "key" not in form and "field_type" not in form

    with app_db.sessionmaker() as session:
        custom_fields.update_field(
            session, field.id, custom_fields.CustomFieldUpdate(label="Seg"), admin_actor
        )
    stale = browser.post(f"/settings/fields/companies/{field.id}/edit", data=form)
    assert stale.status_code == 409 and "Someone else changed this record" in stale.text

    form = form_values(browser.get(f"/settings/fields/companies/{field.id}/edit").text)
    saved = browser.post(
        f"/settings/fields/companies/{field.id}/edit",
        data={
            **form,
            "label": "Market segment",
            "options": "smb|Small\nent|Enterprise\nmid",
            "position": "5",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with app_db.sessionmaker() as session:
        after = custom_fields.get_field(session, field.id)
    assert after.label == "Market segment" and after.position == 5
    assert [o.value for o in after.options] == ["smb", "ent", "mid"]
    history = browser.get(f"/settings/fields/companies/{field.id}/edit").text
    assert re.search(r'<th scope="row">Label</th>\s*<td class="before">Seg</td>', history)

    confirm = browser.get(f"/settings/fields/companies/{field.id}/delete")
    assert "Delete the custom field “Market segment”?" in confirm.text
    deleted = browser.post(
        f"/settings/fields/companies/{field.id}/delete",
        data=form_values(confirm.text),
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    assert "Custom field deleted." in browser.get("/settings/fields/companies").text
    with app_db.sessionmaker() as session:
        assert custom_fields.list_fields(session, "companies") == []
    assert browser.get("/settings/fields/tickets").status_code == 404


def test_other_roles_read_custom_fields_but_cannot_change_them(
    app_db: Database, as_role: RoleBrowsers, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        field = custom_fields.create_field(
            session,
            CustomFieldCreate(entity="contacts", key="nps", label="NPS", field_type="number"),
            admin_actor,
        )
    for role in ("manager", "sales", "viewer"):
        client = as_role[role]
        listing = client.get("/settings/fields/contacts")
        assert listing.status_code == 200, role
        assert "Only administrators can change custom fields." in listing.text
        assert "NPS" in listing.text and "/settings/fields/contacts/new" not in listing.text
        assert client.get("/settings/fields/contacts/new").status_code == 403
        assert client.get(f"/settings/fields/contacts/{field.id}/edit").status_code == 403

    sales = as_role["sales"]
    token = csrf_token(sales.get("/settings/fields/contacts").text)
    refused = sales.post(
        "/settings/fields/contacts/new",
        data={"csrf_token": token, "key": "mine", "label": "Mine", "field_type": "text"},
    )
    assert refused.status_code == 403 and NOT_ALLOWED in refused.text
    assert (
        sales.post(
            f"/settings/fields/contacts/{field.id}/delete", data={"csrf_token": token}
        ).status_code
        == 403
    )
    with app_db.sessionmaker() as session:
        assert [f.key for f in custom_fields.list_fields(session, "contacts")] == ["nps"]


def test_an_indexed_field_is_created_from_the_page_on_each_engine(db: Database) -> None:
    """The page's write path, index included, on SQLite and PostgreSQL alike."""
    with db.sessionmaker() as session:
        make_user(session, "admin@example.com", "admin")
    with TestClient(create_app(db.settings, db)) as client:
        sign_in(client, "admin@example.com")
        form = form_values(client.get("/settings/fields/companies/new").text)
        created = client.post(
            "/settings/fields/companies/new",
            data={**form, "key": "region_code", "label": "Region code", "indexed": "1"},
            follow_redirects=False,
        )
        assert created.status_code == 303
        edit = client.get("/settings/fields/companies").text
        field_id = re.search(r"/settings/fields/companies/(\d+)/edit", edit)
        assert field_id
        form = form_values(client.get(f"/settings/fields/companies/{field_id.group(1)}/edit").text)
        unindexed = {k: v for k, v in form.items() if k != "indexed"}
        saved = client.post(
            f"/settings/fields/companies/{field_id.group(1)}/edit",
            data=unindexed,
            follow_redirects=False,
        )
        assert saved.status_code == 303
    with db.sessionmaker() as session:
        (field,) = custom_fields.list_fields(session, "companies")
    assert field.key == "region_code" and not field.indexed


# ----------------------------------------------------------------------------- CSRF, language


def test_settings_forms_need_the_csrf_token(browser: TestClient, app_db: Database) -> None:
    attempts = {
        "/settings/users/new": {
            "email": "x@example.com",
            "name": "X",
            "password": "long-enough-pw",
        },
        "/settings/teams": {"name": "Forged"},
        "/settings/tokens": {"name": "Forged", "scope": "read-write"},
        "/settings/fields/contacts/new": {"key": "forged", "label": "F", "field_type": "text"},
    }
    for path, data in attempts.items():
        missing = browser.post(path, data=data)
        assert missing.status_code == 403, path
        wrong = browser.post(path, data={**data, "csrf_token": "x" * 43})
        assert wrong.status_code == 403, path
    with app_db.sessionmaker() as session:
        assert auth_service.find_user_by_email(session, "x@example.com") is None
        assert auth_service.list_teams(session) == []
        assert session.scalars(select(ApiToken)).all() == []
        assert custom_fields.list_fields(session, "contacts") == []


def test_settings_speak_japanese(browser: TestClient) -> None:
    browser.cookies.set("ichigen_locale", "ja")
    try:
        users = browser.get("/settings/users").text
        assert '<html lang="ja">' in users
        assert ">設定</a>" in users and "<h1>ユーザー</h1>" in users and "ロールごとの権限" in users
        tokens = browser.get("/settings/tokens").text
        assert "<h1>API トークン</h1>" in tokens and "読み取りのみ" in tokens
        fields = browser.get("/settings/fields/contacts/new").text
        assert "新規カスタム項目" in fields and "選択肢（複数）" in fields
        bad = browser.post(
            "/settings/fields/contacts/new",
            data={**form_values(fields), "key": "", "label": "x"},
        )
        assert "半角英小文字で始め" in _error_for(bad.text, "key")
    finally:
        browser.cookies.delete("ichigen_locale")


# ----------------------------------------------------------------------------- company import

COMPANY_FILE = (
    "Company name,Company Domain Name,Industry,Number of Employees,Notes\r\n"
    "株式会社サクラ精工,sakura-seiko.example,製造,120,展示会\r\n"
    "Acme,acme.example,Software,many,\r\n"
    "Minato Trading,minato.example,Trading,40,\r\n"
).encode()


def test_companies_import_through_the_shared_pages(
    browser: TestClient, app_db: Database, admin_actor: Actor, as_role: RoleBrowsers
) -> None:
    assert 'href="/companies/import"' in browser.get("/companies").text
    start = browser.get("/companies/import")
    assert start.status_code == 200 and "<h1>Import companies</h1>" in start.text
    token = csrf_token(start.text)
    mapping_page = browser.post(
        "/companies/import",
        data={"csrf_token": token},
        files={"file": ("companies.csv", COMPANY_FILE, "text/csv")},
    )
    assert mapping_page.status_code == 200
    chosen = {
        f"map-{index}": selected.group(1)
        for index, body in re.findall(
            r'<select id="f-map-(\d+)" name="map-\d+">(.*?)</select>', mapping_page.text, re.S
        )
        if (selected := re.search(r'<option value="([^"]*)" selected', body))
    }
    assert chosen == {"map-0": "name", "map-1": "domain", "map-2": "industry", "map-3": "employees"}
    assert "Match existing companies on" in mapping_page.text
    assert '<option value="domain" selected>Domain (or website)</option>' in mapping_page.text
    upload = re.search(r'action="(/companies/import/[\w-]+)"', mapping_page.text)
    assert upload
    form = {**form_values(mapping_page.text), "map-4": ""}

    dry = browser.post(upload.group(1), data={**form, "action": "dry_run"})
    assert dry.status_code == 200 and "This was a dry run" in dry.text
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)', dry.text))
    assert counts == {"created": "2", "updated": "0", "unchanged": "0", "failed": "1"}
    assert re.search(r"<td class=\"num\">3</td><td>Number of Employees</td><td>many</td>", dry.text)
    with app_db.sessionmaker() as session:
        assert companies.list_companies(session, admin_actor).items == []

    done = browser.post(upload.group(1), data={**form, "action": "import"})
    assert done.status_code == 200 and "The import is done." in done.text
    assert 'href="/companies">Go to the companies</a>' in done.text
    with app_db.sessionmaker() as session:
        names = sorted(c.name for c in companies.list_companies(session, admin_actor).items)
    assert names == ["Minato Trading", "株式会社サクラ精工"]

    viewer = as_role["viewer"]
    assert viewer.get("/companies/import").status_code == 403
    assert 'href="/companies/import"' not in viewer.get("/companies").text
