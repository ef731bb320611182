"""Users, teams, API tokens, browser sessions and sign-in, with audit and permissions."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from ichigen.auth.models import ApiToken, LoginAttempt, Team, User, UserSession
from ichigen.auth.permissions import Role, require
from ichigen.auth.schemas import (
    SessionInfo,
    TeamCreate,
    TeamRead,
    TeamUpdate,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from ichigen.core.audit import Actor, diff, record_change
from ichigen.core.clock import utcnow
from ichigen.core.errors import (
    Conflict,
    FieldError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    TooManyRequests,
    ValidationFailed,
)
from ichigen.core.settings import Settings

_hasher = PasswordHasher()
#: A hash to verify against when the user does not exist, so timing reveals nothing.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")
TOKEN_PREFIX = "ich_"  # noqa: S105 (a public prefix, not a secret)


def normalise_email(raw: str, loc: tuple[str | int, ...] = ("email",)) -> str:
    """A validated, lower-cased email address, or a 422 naming the field."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed(
            f"Invalid email address: {exc}", [FieldError(loc, str(exc))]
        ) from None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def actor_for(user: UserRead, via: str = "ui") -> Actor:
    return Actor(
        user_id=user.id, label=user.email, role=user.role.value, team_id=user.team_id, via=via
    )


def _user_snapshot(row: User) -> dict[str, Any]:
    return {
        "email": row.email,
        "name": row.name,
        "role": row.role,
        "team_id": row.team_id,
        "locale": row.locale,
        "is_active": row.is_active,
    }


def _check_team(session: Session, team_id: int | None) -> None:
    if team_id is not None and session.get(Team, team_id) is None:
        raise ValidationFailed(
            f"Team {team_id} does not exist.", [FieldError(("team_id",), "no such team")]
        )


# ----------------------------------------------------------------------------- users


def create_user(session: Session, data: UserCreate, actor: Actor) -> UserRead:
    require(actor, "users", "write")
    email = normalise_email(data.email)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(
            f"A user with email {email} already exists.", [FieldError(("email",), "already in use")]
        )
    _check_team(session, data.team_id)
    now = utcnow()
    row = User(
        email=email,
        name=data.name,
        role=data.role.value,
        team_id=data.team_id,
        locale=data.locale,
        is_active=True,
        password_hash=_hasher.hash(data.password) if data.password else None,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    record_change(session, actor, "users", row.id, "create", diff({}, _user_snapshot(row)))
    session.commit()
    return UserRead.model_validate(row)


def get_user(session: Session, user_id: int) -> UserRead:
    row = session.get(User, user_id)
    if row is None:
        raise NotFound(f"User {user_id} does not exist.")
    return UserRead.model_validate(row)


def find_user_by_email(session: Session, email: str) -> UserRead | None:
    row = session.scalar(select(User).where(User.email == email.strip().lower()))
    return UserRead.model_validate(row) if row else None


def list_users(session: Session, *, include_inactive: bool = True) -> list[UserRead]:
    stmt = select(User).order_by(User.name, User.id)
    if not include_inactive:
        stmt = stmt.where(User.is_active.is_(True))
    return [UserRead.model_validate(r) for r in session.scalars(stmt)]


def users_by_id(session: Session, ids: set[int]) -> dict[int, UserRead]:
    if not ids:
        return {}
    rows = session.scalars(select(User).where(User.id.in_(ids)))
    return {r.id: UserRead.model_validate(r) for r in rows}


def update_user(
    session: Session, user_id: int, data: UserUpdate, actor: Actor, *, if_version: int | None = None
) -> UserRead:
    require(actor, "users", "write")
    row = session.get(User, user_id)
    if row is None:
        raise NotFound(f"User {user_id} does not exist.")
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"User {user_id} was changed by someone else; reload it and try again."
        )
    changes = data.model_dump(exclude_unset=True)
    if "team_id" in changes:
        _check_team(session, data.team_id)
    if row.id == actor.user_id and (
        changes.get("is_active") is False or ("role" in changes and data.role != row.role)
    ):
        raise ValidationFailed(
            "You cannot deactivate yourself or change your own role.",
            [
                FieldError(
                    ("role",) if "role" in changes else ("is_active",), "not allowed on yourself"
                )
            ],
        )
    before = _user_snapshot(row)
    for name in ("name", "team_id", "locale", "is_active"):
        if name in changes and (changes[name] is not None or name in ("team_id", "locale")):
            setattr(row, name, changes[name])
    if data.role is not None:
        row.role = data.role.value
    delta = diff(before, _user_snapshot(row))
    if data.password:
        row.password_hash = _hasher.hash(data.password)
        delta["password"] = ["***", "***"]
    if data.is_active is False:
        session.execute(delete(UserSession).where(UserSession.user_id == row.id))
    if delta:
        row.version += 1
        row.updated_at = utcnow()
        record_change(session, actor, "users", row.id, "update", delta)
    session.commit()
    return UserRead.model_validate(row)


def delete_user(session: Session, user_id: int, actor: Actor) -> None:
    """Deactivate a user: their records keep their owner and history; sign-in stops."""
    update_user(session, user_id, UserUpdate(is_active=False), actor)
    session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    session.commit()


def set_locale(session: Session, user_id: int, locale: str) -> None:
    """A user picks their own UI language."""
    row = session.get(User, user_id)
    if row is not None and locale in ("en", "ja"):
        row.locale = locale
        session.commit()


# ----------------------------------------------------------------------------- teams


def create_team(session: Session, data: TeamCreate, actor: Actor) -> TeamRead:
    require(actor, "teams", "write")
    if session.scalar(select(Team.id).where(Team.name == data.name)) is not None:
        raise Conflict(
            f"A team named {data.name!r} already exists.", [FieldError(("name",), "already in use")]
        )
    now = utcnow()
    row = Team(
        name=data.name, description=data.description, version=1, created_at=now, updated_at=now
    )
    session.add(row)
    session.flush()
    record_change(session, actor, "teams", row.id, "create", {"name": [None, row.name]})
    session.commit()
    return TeamRead.model_validate(row)


def get_team(session: Session, team_id: int) -> TeamRead:
    row = session.get(Team, team_id)
    if row is None:
        raise NotFound(f"Team {team_id} does not exist.")
    return TeamRead.model_validate(row)


def list_teams(session: Session) -> list[TeamRead]:
    return [TeamRead.model_validate(r) for r in session.scalars(select(Team).order_by(Team.name))]


def update_team(
    session: Session, team_id: int, data: TeamUpdate, actor: Actor, *, if_version: int | None = None
) -> TeamRead:
    require(actor, "teams", "write")
    row = session.get(Team, team_id)
    if row is None:
        raise NotFound(f"Team {team_id} does not exist.")
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"Team {team_id} was changed by someone else; reload it and try again."
        )
    before = {"name": row.name, "description": row.description}
    if data.name is not None and data.name != row.name:
        if session.scalar(select(Team.id).where(Team.name == data.name)) is not None:
            raise Conflict(
                f"A team named {data.name!r} already exists.",
                [FieldError(("name",), "already in use")],
            )
        row.name = data.name
    if data.description is not None:
        row.description = data.description
    delta = diff(before, {"name": row.name, "description": row.description})
    if delta:
        row.version += 1
        row.updated_at = utcnow()
        record_change(session, actor, "teams", row.id, "update", delta)
    session.commit()
    return TeamRead.model_validate(row)


def delete_team(session: Session, team_id: int, actor: Actor) -> None:
    require(actor, "teams", "write")
    row = session.get(Team, team_id)
    if row is None:
        raise NotFound(f"Team {team_id} does not exist.")
    record_change(session, actor, "teams", row.id, "delete", {"name": [row.name, None]})
    session.delete(row)
    session.commit()


# ----------------------------------------------------------------------------- sign-in


def _check_login_rate(session: Session, settings: Settings, email: str, ip: str) -> None:
    since = utcnow() - timedelta(seconds=settings.login_window_seconds)
    failures_for_email = session.scalar(
        select(func.count()).where(
            LoginAttempt.email == email, LoginAttempt.at >= since, LoginAttempt.succeeded.is_(False)
        )
    )
    failures_from_ip = session.scalar(
        select(func.count()).where(
            LoginAttempt.ip == ip, LoginAttempt.at >= since, LoginAttempt.succeeded.is_(False)
        )
    )
    if (failures_for_email or 0) >= settings.login_max_failures or (failures_from_ip or 0) >= (
        settings.login_max_failures * 4
    ):
        raise TooManyRequests(
            "Too many failed sign-in attempts; wait a few minutes and try again.",
            retry_after=settings.login_window_seconds,
        )


def authenticate(
    session: Session, settings: Settings, email: str, password: str, ip: str
) -> UserRead:
    """Check a password, throttling repeated failures per email and per address."""
    email = email.strip().lower()[:320]
    _check_login_rate(session, settings, email, ip)
    row = session.scalar(select(User).where(User.email == email))
    ok = False
    try:
        ok = _hasher.verify(
            row.password_hash if row and row.password_hash else _DUMMY_HASH, password
        )
    except (VerificationError, InvalidHashError):
        ok = False
    ok = ok and row is not None and row.is_active and row.password_hash is not None
    session.add(LoginAttempt(email=email, ip=ip[:64], at=utcnow(), succeeded=ok))
    if not ok or row is None:
        session.commit()
        raise NotAuthenticated("The email or password is not right.")
    if row.password_hash and _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    row.last_login_at = utcnow()
    session.commit()
    return UserRead.model_validate(row)


def start_session(session: Session, settings: Settings, user: UserRead) -> tuple[str, SessionInfo]:
    """A new browser session; returns the cookie value (shown only here) and its info."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        UserSession(
            id=_sha256(token),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=settings.session_hours),
        )
    )
    session.execute(delete(UserSession).where(UserSession.expires_at < now))
    session.commit()
    return token, SessionInfo(user=user, csrf_token=csrf, team_id=user.team_id)


def session_user(session: Session, cookie_value: str) -> SessionInfo | None:
    """The signed-in user behind a session cookie, if it is live and the user is active."""
    if not cookie_value or len(cookie_value) > 200:
        return None
    row = session.get(UserSession, _sha256(cookie_value))
    if row is None or row.expires_at < utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    read = UserRead.model_validate(user)
    return SessionInfo(user=read, csrf_token=row.csrf_token, team_id=read.team_id)


def end_session(session: Session, cookie_value: str) -> None:
    session.execute(delete(UserSession).where(UserSession.id == _sha256(cookie_value)))
    session.commit()


# ----------------------------------------------------------------------------- API tokens


def create_token(session: Session, user_id: int, data: TokenCreate, actor: Actor) -> TokenCreated:
    """A new personal API token; the returned ``token`` is the only copy anyone will see."""
    if actor.user_id != user_id:
        require(actor, "users", "write")
    user = get_user(session, user_id)
    if not user.is_active:
        raise ValidationFailed(
            "Inactive users cannot get tokens.", [FieldError(("user",), "inactive")]
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user_id,
        name=data.name,
        prefix=token[:12],
        token_hash=_sha256(token),
        scope=data.scope,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        actor,
        "api_tokens",
        row.id,
        "create",
        {"name": [None, row.name], "scope": [None, row.scope]},
    )
    session.commit()
    return TokenCreated(**TokenRead.model_validate(row).model_dump(), token=token)


def list_tokens(session: Session, user_id: int) -> list[TokenRead]:
    rows = session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())
    )
    return [TokenRead.model_validate(r) for r in rows]


def revoke_token(session: Session, token_id: int, actor: Actor) -> TokenRead:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"API token {token_id} does not exist.")
    if row.user_id != actor.user_id:
        require(actor, "users", "write")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record_change(session, actor, "api_tokens", row.id, "revoke", {"revoked": [False, True]})
        session.commit()
    return TokenRead.model_validate(row)


def token_actor(session: Session, token: str) -> Actor:
    """The actor behind a Bearer token, or a 401."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise NotAuthenticated("The API token is not valid.")
    row = session.execute(_TOKEN_LOOKUP, {"token_hash": _sha256(token)}).first()
    if row is None or row.revoked_at is not None:
        raise NotAuthenticated("The API token is not valid or was revoked.")
    if row.user_id is None or not row.is_active:
        raise NotAuthenticated("The API token's user is inactive.")
    now = utcnow()
    # Write the last-use time at most once a minute so reads stay reads.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        session.commit()
    return Actor(
        user_id=row.user_id,
        label=row.email,
        role=row.role,
        team_id=row.team_id,
        via="token-read" if row.scope == "read" else "token",
    )


#: Built once, one query: every API request looks its token and user up.
_TOKEN_LOOKUP = (
    select(
        ApiToken.id,
        ApiToken.revoked_at,
        ApiToken.last_used_at,
        ApiToken.scope,
        User.id.label("user_id"),
        User.email,
        User.role,
        User.team_id,
        User.is_active,
    )
    .outerjoin(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def bootstrap_admin(
    session: Session, email: str, password: str, name: str = "Administrator"
) -> UserRead:
    """Create the first admin (used by the CLI and the demo); no actor exists yet."""
    existing = find_user_by_email(session, email)
    if existing is not None:
        return existing
    return create_user(
        session,
        UserCreate(email=email, name=name, role=Role.admin, password=password),
        Actor.system("setup"),
    )


def ensure_not_self_escalation(actor: Actor, data: UserUpdate) -> None:
    if actor.role != "admin" and data.role is not None:
        raise PermissionDenied("Only an admin can change roles.")
