"""The app over real HTTP semantics (Starlette's TestClient), on a real record store, with
helpers that make users of each role and their API tokens through the services."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from tests.conftest import SETUP

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import TeamCreate, TokenCreate, UserCreate, UserRead
from ichigen.core.db import Database
from ichigen.web.app import create_app

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Caller:
    """A user and one of their API tokens."""

    user: UserRead
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """A TestClient plus ways to make callers; requests take ``as_=caller``."""

    def __init__(self, client: TestClient, database: Database) -> None:
        self.client = client
        self.db = database
        self._serial = itertools.count(1)
        self._admin: Caller | None = None

    def caller(
        self,
        role: str = "admin",
        *,
        scope: str = "read-write",
        team_id: int | None = None,
        email: str | None = None,
    ) -> Caller:
        """A new user of ``role`` (no password) with a fresh token of ``scope``."""
        email = email or f"{role}{next(self._serial)}@example.com"
        with self.db.sessionmaker() as session:
            made = auth_service.create_user(
                session,
                UserCreate.model_validate(
                    {"email": email, "name": email.split("@")[0], "role": role, "team_id": team_id}
                ),
                SETUP,
            )
            token = auth_service.create_token(
                session,
                made.id,
                TokenCreate.model_validate({"scope": scope}),
                SETUP,
            )
        return Caller(made, token.token)

    def team(self, name: str) -> int:
        with self.db.sessionmaker() as session:
            return auth_service.create_team(session, TeamCreate(name=name), SETUP).id

    @property
    def admin(self) -> Caller:
        if self._admin is None:
            self._admin = self.caller("admin", email="admin@example.com")
        return self._admin

    def request(
        self, method: str, path: str, *, as_: Caller | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if as_ is not None:
            headers.update(as_.headers)
        response: httpx.Response = self.client.request(method, path, headers=headers, **kwargs)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


def assert_problem(
    response: httpx.Response, status: int, *locs: tuple[str | int, ...]
) -> dict[str, Any]:
    """An RFC 9457 problem document with this status (and these error locations, if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["detail"]
    if locs:
        found = [tuple(e["loc"]) for e in body.get("errors", [])]
        for loc in locs:
            assert loc in found, (loc, found)
        for error in body["errors"]:
            assert error["msg"]
    return body


ApiFactory = Callable[..., Api]


@pytest.fixture
def api_factory(sqlite_db: Database) -> Iterator[ApiFactory]:
    """Build an app on the SQLite store with some settings changed (e.g. a small body limit)."""
    clients: list[TestClient] = []

    def build(**settings: Any) -> Api:
        database = Database(sqlite_db.engine, sqlite_db.settings.model_copy(update=settings))
        client = TestClient(create_app(database.settings, database))
        client.__enter__()
        clients.append(client)
        return Api(client, database)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(api_factory: ApiFactory) -> Api:
    """The app on a fresh SQLite record store."""
    return api_factory()


@pytest.fixture
def api_on(db: Database) -> Iterator[Api]:
    """The app on each engine (SQLite and PostgreSQL)."""
    with TestClient(create_app(db.settings, db)) as client:
        yield Api(client, db)
