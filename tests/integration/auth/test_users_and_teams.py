"""Users and teams through the auth service, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import make_user
from tests.integration.core.factories import actor, audit_count, team, user

from ichigen.auth import service
from ichigen.auth.models import ApiToken, Team, User, UserSession
from ichigen.auth.permissions import Role
from ichigen.auth.schemas import TeamCreate, TeamUpdate, TokenCreate, UserCreate, UserUpdate
from ichigen.core.audit import Actor, record_history
from ichigen.core.db import Database
from ichigen.core.errors import (
    Conflict,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)

PASSWORD = "correct-horse-battery"


def test_password_is_stored_as_an_argon2id_hash(session: Session, db: Database) -> None:
    created = make_user(session, "aiko@example.co.jp", "sales", password=PASSWORD)
    stored = session.scalar(select(User.password_hash).where(User.id == created.id))
    assert stored is not None and stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    signed_in = service.authenticate(session, db.settings, "AIKO@example.co.jp ", PASSWORD, "ip1")
    assert signed_in.id == created.id and signed_in.last_login_at is not None
    with pytest.raises(NotAuthenticated):
        service.authenticate(session, db.settings, "aiko@example.co.jp", "wrong-password!", "ip1")


def test_email_is_normalised_and_unique_case_insensitively(session: Session, admin: Actor) -> None:
    first = service.create_user(
        session, UserCreate(email=" Aiko@Example.CO.JP ", name="Aiko"), admin
    )
    assert first.email == "aiko@example.co.jp"
    before = audit_count(session, "users")
    with pytest.raises(Conflict) as info:
        service.create_user(session, UserCreate(email="AIKO@example.co.jp", name="Other"), admin)
    assert info.value.status == 409
    assert [e.loc for e in info.value.errors] == [("email",)]
    assert audit_count(session, "users") == before


def test_invalid_email_and_unknown_team_are_422_with_field_paths(
    session: Session, admin: Actor
) -> None:
    with pytest.raises(ValidationFailed) as info:
        service.create_user(session, UserCreate(email="not-an-email", name="X"), admin)
    assert info.value.errors[0].loc == ("email",)
    with pytest.raises(ValidationFailed) as info:
        service.create_user(
            session, UserCreate(email="x@example.com", name="X", team_id=999), admin
        )
    assert info.value.errors[0].loc == ("team_id",)
    assert service.find_user_by_email(session, "x@example.com") is None


def test_only_admins_create_users(session: Session) -> None:
    manager = actor(session, "boss@example.com", "manager")
    with pytest.raises(PermissionDenied):
        service.create_user(session, UserCreate(email="new@example.com", name="New"), manager)
    assert service.find_user_by_email(session, "new@example.com") is None


def test_deactivated_user_cannot_sign_in_and_loses_sessions_and_tokens(
    session: Session, db: Database, admin: Actor
) -> None:
    target = make_user(session, "leaver@example.com", "sales", password=PASSWORD)
    cookie, _ = service.start_session(session, db.settings, target)
    token = service.create_token(session, target.id, TokenCreate(), admin).token
    assert service.session_user(session, cookie) is not None
    service.delete_user(session, target.id, admin)
    assert service.get_user(session, target.id).is_active is False
    with pytest.raises(NotAuthenticated):
        service.authenticate(session, db.settings, "leaver@example.com", PASSWORD, "ip")
    assert service.session_user(session, cookie) is None
    assert session.scalar(select(UserSession).where(UserSession.user_id == target.id)) is None
    with pytest.raises(NotAuthenticated):
        service.token_actor(session, token)
    assert all(
        t.revoked_at is not None
        for t in session.scalars(select(ApiToken).where(ApiToken.user_id == target.id))
    )
    [entry, *_] = record_history(session, "users", target.id)
    assert entry.changes["is_active"] == [True, False]


def test_reactivated_user_can_sign_in_again(session: Session, db: Database, admin: Actor) -> None:
    target = make_user(session, "back@example.com", "sales", password=PASSWORD)
    service.update_user(session, target.id, UserUpdate(is_active=False), admin)
    service.update_user(session, target.id, UserUpdate(is_active=True), admin)
    assert service.authenticate(session, db.settings, "back@example.com", PASSWORD, "ip").id == (
        target.id
    )


def test_nobody_deactivates_themselves_or_changes_their_own_role(
    session: Session, admin: Actor
) -> None:
    assert admin.user_id is not None
    before = audit_count(session)
    with pytest.raises(ValidationFailed) as info:
        service.update_user(session, admin.user_id, UserUpdate(is_active=False), admin)
    assert info.value.errors[0].loc == ("is_active",)
    with pytest.raises(ValidationFailed) as info:
        service.delete_user(session, admin.user_id, admin)
    with pytest.raises(ValidationFailed) as info:
        service.update_user(session, admin.user_id, UserUpdate(role=Role.viewer), admin)
    assert info.value.errors[0].loc == ("role",)
    me = service.get_user(session, admin.user_id)
    assert me.is_active and me.role == "admin"
    assert audit_count(session) == before
    # Changing one's own name is fine.
    assert service.update_user(session, admin.user_id, UserUpdate(name="Root"), admin).name == (
        "Root"
    )


def test_role_changes_need_an_admin(session: Session) -> None:
    manager = actor(session, "m@example.com", "manager")
    with pytest.raises(PermissionDenied, match="Only an admin"):
        service.ensure_not_self_escalation(manager, UserUpdate(role=Role.admin))
    with pytest.raises(PermissionDenied):
        service.update_user(session, manager.user_id or 0, UserUpdate(name="x"), manager)


def test_password_change_is_audited_without_the_hash(
    session: Session, db: Database, admin: Actor
) -> None:
    target = make_user(session, "pw@example.com", "sales", password=PASSWORD)
    updated = service.update_user(
        session, target.id, UserUpdate(password="a-brand-new-password"), admin
    )
    assert updated.version == target.version + 1
    [entry, *_] = record_history(session, "users", target.id)
    assert entry.changes == {"password": ["***", "***"]}
    assert service.authenticate(session, db.settings, "pw@example.com", "a-brand-new-password", "i")
    with pytest.raises(NotAuthenticated):
        service.authenticate(session, db.settings, "pw@example.com", PASSWORD, "ip")


def test_update_user_versions_and_no_op(session: Session, admin: Actor) -> None:
    target = user(session, "v@example.com")
    with pytest.raises(PreconditionFailed):
        service.update_user(
            session, target.id, UserUpdate(name="X"), admin, if_version=target.version + 1
        )
    unchanged = service.update_user(
        session, target.id, UserUpdate(name=target.name), admin, if_version=target.version
    )
    assert unchanged.version == target.version
    assert len(record_history(session, "users", target.id)) == 1
    with pytest.raises(NotFound):
        service.update_user(session, 999_999, UserUpdate(name="X"), admin)


def test_teams_unique_names_membership_and_delete(session: Session, admin: Actor) -> None:
    tokyo = service.create_team(session, TeamCreate(name="Tokyo sales"), admin)
    osaka = service.create_team(session, TeamCreate(name="Osaka sales"), admin)
    with pytest.raises(Conflict) as info:
        service.create_team(session, TeamCreate(name="Tokyo sales"), admin)
    assert info.value.errors[0].loc == ("name",)
    with pytest.raises(Conflict):
        service.update_team(session, osaka.id, TeamUpdate(name="Tokyo sales"), admin)
    member = user(session, "member@example.com", team_id=tokyo.id)
    renamed = service.update_team(
        session, tokyo.id, TeamUpdate(description="East"), admin, if_version=tokyo.version
    )
    assert renamed.version == tokyo.version + 1
    with pytest.raises(PreconditionFailed):
        service.update_team(session, tokyo.id, TeamUpdate(name="T"), admin, if_version=1)
    service.delete_team(session, tokyo.id, admin)
    session.expire_all()
    assert session.get(Team, tokyo.id) is None
    assert service.get_user(session, member.id).team_id is None
    assert [e.action for e in record_history(session, "teams", tokyo.id)] == [
        "delete",
        "update",
        "create",
    ]


def test_team_writes_follow_the_matrix(session: Session) -> None:
    manager = actor(session, "mgr@example.com", "manager")
    sales = actor(session, "rep@example.com", "sales")
    created = service.create_team(session, TeamCreate(name="Made by manager"), manager)
    with pytest.raises(PermissionDenied):
        service.create_team(session, TeamCreate(name="Made by sales"), sales)
    with pytest.raises(PermissionDenied):
        service.delete_team(session, created.id, sales)
    assert [t.name for t in service.list_teams(session)] == ["Made by manager"]


def test_user_can_join_existing_team_only(session: Session, admin: Actor) -> None:
    team_id = team(session, "Support")
    target = user(session, "s@example.com", "support")
    moved = service.update_user(session, target.id, UserUpdate(team_id=team_id), admin)
    assert moved.team_id == team_id
    with pytest.raises(ValidationFailed):
        service.update_user(session, target.id, UserUpdate(team_id=team_id + 100), admin)
    cleared = service.update_user(session, target.id, UserUpdate(team_id=None), admin)
    assert cleared.team_id is None
