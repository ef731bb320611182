"""Typed dependencies: the database session, the acting user, conditional requests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import SessionInfo
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.errors import BadRequest, FieldError, NotAuthenticated
from ichigen.core.settings import Settings

SESSION_COOKIE = "ichigen_session"
_ETAG = re.compile(r'^(?:W/)?"v(\d{1,18})"$')


def get_database(request: Request) -> Database:
    db = request.app.state.db
    assert isinstance(db, Database)
    return db


def get_settings_dep(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def get_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """A session for one request; services commit their own units of work."""
    session = db.sessionmaker()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


DbSession = Annotated[Session, Depends(get_session)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


def api_actor(session: DbSession, authorization: Annotated[str | None, Header()] = None) -> Actor:
    """The user behind ``Authorization: Bearer <token>``."""
    if not authorization:
        raise NotAuthenticated("Send an API token as 'Authorization: Bearer <token>'.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("Only Bearer tokens are accepted.")
    return auth_service.token_actor(session, token.strip())


ApiActor = Annotated[Actor, Depends(api_actor)]


def etag(version: int) -> str:
    return f'"v{version}"'


def if_match_version(if_match: Annotated[str | None, Header()] = None) -> int | None:
    """The version an ``If-Match`` header names (``*`` or absent: any)."""
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG.match(if_match.strip())
    if not found:
        raise BadRequest(
            'If-Match must be an ETag from a previous response, like "v3".',
            [FieldError(("header", "If-Match"), "malformed ETag")],
        )
    return int(found.group(1))


IfMatch = Annotated[int | None, Depends(if_match_version)]


def browser_session(request: Request, session: DbSession) -> SessionInfo | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    return auth_service.session_user(session, cookie) if cookie else None


def json_body(model: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """A model already serialised by Pydantic, for hot read endpoints.

    Returning a ``Response`` skips FastAPI's second validation of the return value against
    ``response_model`` (which still documents the shape in OpenAPI); the services already
    built the model, so checking it again costs time on every list and read.
    """
    return Response(model.model_dump_json(), media_type="application/json", headers=headers)
