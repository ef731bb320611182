"""JSON API for users, teams and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ichigen.auth import service
from ichigen.auth.permissions import MATRIX, require
from ichigen.auth.schemas import (
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
from ichigen.core.audit import AuditEntryRead, record_history
from ichigen.core.schemas import RecordId
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag

router = APIRouter(tags=["users and teams"])


@router.get("/users/me", response_model=UserRead)
def me(session: DbSession, actor: ApiActor) -> UserRead:
    assert actor.user_id is not None
    return service.get_user(session, actor.user_id)


@router.get("/roles")
def roles(actor: ApiActor) -> dict[str, dict[str, list[str]]]:
    """The permission matrix: for each role, the access it has to each entity."""
    return {
        role.value: {e: sorted(a) for e, a in grants.items()} for role, grants in MATRIX.items()
    }


@router.get("/users", response_model=list[UserRead])
def list_users(session: DbSession, actor: ApiActor) -> list[UserRead]:
    require(actor, "users", "read")
    return service.list_users(session)


@router.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED)
def create_user(
    data: UserCreate, session: DbSession, actor: ApiActor, response: Response
) -> UserRead:
    user = service.create_user(session, data, actor)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    response.headers["ETag"] = etag(user.version)
    return user


@router.get("/users/{user_id}", response_model=UserRead)
def get_user(
    user_id: RecordId, session: DbSession, actor: ApiActor, response: Response
) -> UserRead:
    if actor.user_id != user_id:
        require(actor, "users", "read")
    user = service.get_user(session, user_id)
    response.headers["ETag"] = etag(user.version)
    return user


@router.patch("/users/{user_id}", response_model=UserRead)
def update_user(
    user_id: RecordId,
    data: UserUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> UserRead:
    service.ensure_not_self_escalation(actor, data)
    user = service.update_user(session, user_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(user.version)
    return user


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def deactivate_user(user_id: RecordId, session: DbSession, actor: ApiActor) -> None:
    """Users are deactivated, not erased: their records and history keep their name."""
    service.delete_user(session, user_id, actor)


@router.get("/users/{user_id}/history", response_model=list[AuditEntryRead])
def user_history(user_id: RecordId, session: DbSession, actor: ApiActor) -> list[AuditEntryRead]:
    require(actor, "audit", "read")
    return record_history(session, "users", user_id)


@router.get("/users/{user_id}/tokens", response_model=list[TokenRead])
def list_tokens(user_id: RecordId, session: DbSession, actor: ApiActor) -> list[TokenRead]:
    if actor.user_id != user_id:
        require(actor, "users", "write")
    return service.list_tokens(session, user_id)


@router.post(
    "/users/{user_id}/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED
)
def create_token(
    user_id: RecordId, data: TokenCreate, session: DbSession, actor: ApiActor
) -> TokenCreated:
    """The response holds the token; it is never shown again."""
    return service.create_token(session, user_id, data, actor)


@router.delete("/tokens/{token_id}", response_model=TokenRead)
def revoke_token(token_id: RecordId, session: DbSession, actor: ApiActor) -> TokenRead:
    return service.revoke_token(session, token_id, actor)


@router.get("/teams", response_model=list[TeamRead])
def list_teams(session: DbSession, actor: ApiActor) -> list[TeamRead]:
    require(actor, "teams", "read")
    return service.list_teams(session)


@router.post("/teams", response_model=TeamRead, status_code=status.HTTP_201_CREATED)
def create_team(
    data: TeamCreate, session: DbSession, actor: ApiActor, response: Response
) -> TeamRead:
    team = service.create_team(session, data, actor)
    response.headers["Location"] = f"/api/v1/teams/{team.id}"
    response.headers["ETag"] = etag(team.version)
    return team


@router.get("/teams/{team_id}", response_model=TeamRead)
def get_team(
    team_id: RecordId, session: DbSession, actor: ApiActor, response: Response
) -> TeamRead:
    require(actor, "teams", "read")
    team = service.get_team(session, team_id)
    response.headers["ETag"] = etag(team.version)
    return team


@router.patch("/teams/{team_id}", response_model=TeamRead)
def update_team(
    team_id: RecordId,
    data: TeamUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> TeamRead:
    team = service.update_team(session, team_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(team.version)
    return team


@router.delete("/teams/{team_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_team(team_id: RecordId, session: DbSession, actor: ApiActor) -> None:
    service.delete_team(session, team_id, actor)
