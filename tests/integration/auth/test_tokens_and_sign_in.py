"""API tokens, browser sessions and sign-in throttling, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import make_user
from tests.integration.core.factories import row_count, user

from ichigen.auth import service
from ichigen.auth.models import ApiToken, LoginAttempt, UserSession
from ichigen.auth.schemas import TokenCreate
from ichigen.core import clock
from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock
from ichigen.core.db import Database
from ichigen.core.errors import NotAuthenticated, NotFound, PermissionDenied, TooManyRequests
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate

PASSWORD = "correct-horse-battery"


@pytest.fixture
def frozen() -> Iterator[FixedClock]:
    """The clock seam held still (and put back afterwards)."""
    fixed = FixedClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(SystemClock())


def test_token_is_shown_once_and_stored_only_as_its_hash(session: Session, admin: Actor) -> None:
    owner = user(session, "dev@example.com")
    created = service.create_token(session, owner.id, TokenCreate(name="CI"), admin)
    assert created.token.startswith("ich_") and len(created.token) > 40
    row = session.get(ApiToken, created.id)
    assert row is not None
    assert row.token_hash == hashlib.sha256(created.token.encode()).hexdigest()
    stored = [getattr(row, c.key) for c in ApiToken.__table__.columns]
    assert created.token not in [str(v) for v in stored]
    assert created.token.startswith(row.prefix)
    listed = service.list_tokens(session, owner.id)
    assert [t.id for t in listed] == [created.id]
    assert "token" not in listed[0].model_dump()


def test_token_actor_resolves_user_and_scope(session: Session, admin: Actor) -> None:
    owner = user(session, "rw@example.com", "sales")
    rw = service.create_token(session, owner.id, TokenCreate(), admin).token
    ro = service.create_token(session, owner.id, TokenCreate(scope="read"), admin).token
    as_rw = service.token_actor(session, rw)
    assert (as_rw.user_id, as_rw.role, as_rw.via) == (owner.id, "sales", "token")
    as_ro = service.token_actor(session, ro)
    assert as_ro.via == "token-read"
    # A read-only token reads but cannot write.
    assert contacts.list_contacts(session, as_ro).items == []
    with pytest.raises(PermissionDenied, match="read-only"):
        contacts.create_contact(session, ContactCreate(last_name="Nope"), as_ro)
    assert contacts.list_contacts(session, as_rw).items == []
    contacts.create_contact(session, ContactCreate(last_name="Yes"), as_rw)
    assert len(contacts.list_contacts(session, as_ro).items) == 1


@pytest.mark.parametrize(
    "bad", ["", "ich_", "ich_not-a-real-token", "Bearer ich_x", "x" * 500, "ich_" + "a" * 300]
)
def test_unknown_tokens_are_refused(session: Session, bad: str) -> None:
    with pytest.raises(NotAuthenticated):
        service.token_actor(session, bad)


def test_revoked_token_is_refused(session: Session, admin: Actor) -> None:
    owner = user(session, "gone@example.com")
    created = service.create_token(session, owner.id, TokenCreate(), admin)
    service.token_actor(session, created.token)
    owner_actor = service.actor_for(owner)
    revoked = service.revoke_token(session, created.id, owner_actor)
    assert revoked.revoked_at is not None
    with pytest.raises(NotAuthenticated, match="revoked"):
        service.token_actor(session, created.token)
    # Revoking twice is harmless and keeps the first time.
    again = service.revoke_token(session, created.id, owner_actor)
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(NotFound):
        service.revoke_token(session, 999_999, owner_actor)


def test_users_manage_only_their_own_tokens_unless_admin(session: Session, admin: Actor) -> None:
    alice = service.actor_for(user(session, "alice@example.com", "sales"))
    bob = user(session, "bob@example.com", "sales")
    assert alice.user_id is not None
    own = service.create_token(session, alice.user_id, TokenCreate(), alice)
    with pytest.raises(PermissionDenied):
        service.create_token(session, bob.id, TokenCreate(), alice)
    bobs = service.create_token(session, bob.id, TokenCreate(), admin)
    with pytest.raises(PermissionDenied):
        service.revoke_token(session, bobs.id, alice)
    service.token_actor(session, bobs.token)
    service.revoke_token(session, own.id, alice)
    service.revoke_token(session, bobs.id, admin)
    with pytest.raises(NotAuthenticated):
        service.token_actor(session, bobs.token)


def test_inactive_users_get_no_tokens_and_their_tokens_stop(session: Session, admin: Actor) -> None:
    owner = user(session, "paused@example.com")
    token = service.create_token(session, owner.id, TokenCreate(), admin).token
    service.delete_user(session, owner.id, admin)
    with pytest.raises(NotAuthenticated):
        service.token_actor(session, token)
    with pytest.raises(Exception, match="Inactive users cannot get tokens"):
        service.create_token(session, owner.id, TokenCreate(), admin)


def test_sessions_are_stored_hashed_expire_and_end(
    session: Session, db: Database, frozen: FixedClock
) -> None:
    person = user(session, "browser@example.com")
    cookie, info = service.start_session(session, db.settings, person)
    assert session.get(UserSession, cookie) is None
    stored = session.get(UserSession, hashlib.sha256(cookie.encode()).hexdigest())
    assert stored is not None and stored.csrf_token == info.csrf_token
    found = service.session_user(session, cookie)
    assert found is not None and found.user.id == person.id
    assert service.session_user(session, cookie + "x") is None
    assert service.session_user(session, "x" * 500) is None
    frozen.at += timedelta(hours=db.settings.session_hours, seconds=1)
    assert service.session_user(session, cookie) is None
    frozen.at -= timedelta(hours=1)
    assert service.session_user(session, cookie) is not None
    service.end_session(session, cookie)
    assert service.session_user(session, cookie) is None


def test_failed_sign_ins_are_throttled_even_with_the_right_password(
    session: Session, db: Database, frozen: FixedClock
) -> None:
    settings = db.settings.model_copy(update={"login_max_failures": 3, "login_window_seconds": 60})
    make_user(session, "target@example.com", "sales", password=PASSWORD)
    for _ in range(3):
        with pytest.raises(NotAuthenticated):
            service.authenticate(session, settings, "target@example.com", "guess-guess", "1.2.3.4")
    with pytest.raises(TooManyRequests) as info:
        service.authenticate(session, settings, "Target@example.com", PASSWORD, "5.6.7.8")
    assert info.value.status == 429 and info.value.retry_after == 60
    # Refused attempts are not even recorded as tries.
    assert row_count(session, LoginAttempt) == 3
    # Once the failures age out of the window, the right password works again.
    frozen.at += timedelta(seconds=61)
    assert service.authenticate(session, settings, "target@example.com", PASSWORD, "1.2.3.4")


def test_failures_from_one_address_are_throttled_across_emails(
    session: Session, db: Database, frozen: FixedClock
) -> None:
    settings = db.settings.model_copy(update={"login_max_failures": 1, "login_window_seconds": 60})
    make_user(session, "victim@example.com", "sales", password=PASSWORD)
    for n in range(4):  # four times the per-email limit, each on another email
        with pytest.raises(NotAuthenticated):
            service.authenticate(session, settings, f"u{n}@example.com", "nope-nope", "9.9.9.9")
    with pytest.raises(TooManyRequests):
        service.authenticate(session, settings, "victim@example.com", PASSWORD, "9.9.9.9")
    # Another address is not affected.
    assert service.authenticate(session, settings, "victim@example.com", PASSWORD, "8.8.8.8")


def test_successes_do_not_count_towards_the_limit(
    session: Session, db: Database, frozen: FixedClock
) -> None:
    settings = db.settings.model_copy(update={"login_max_failures": 2})
    make_user(session, "regular@example.com", "sales", password=PASSWORD)
    for _ in range(3):
        service.authenticate(session, settings, "regular@example.com", PASSWORD, "1.1.1.1")
    attempts = list(session.scalars(select(LoginAttempt.succeeded)))
    assert attempts == [True, True, True]


def test_password_less_user_cannot_sign_in(session: Session, db: Database) -> None:
    user(session, "sso@example.com")
    with pytest.raises(NotAuthenticated):
        service.authenticate(session, db.settings, "sso@example.com", "", "ip")
    with pytest.raises(NotAuthenticated):
        service.authenticate(session, db.settings, "sso@example.com", "anything-at-all", "ip")
