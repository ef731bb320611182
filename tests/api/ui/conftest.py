"""The web UI through HTTP: the real app on a real SQLite record store, signed in by its form."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import make_user

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.web.app import create_app

PASSWORD = "correct-horse-battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    """Sign in through the form, as a browser does."""
    token = csrf_token(client.get("/login").text)
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, "next": ""},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


class _FormReader(HTMLParser):
    """The fields a browser would submit from a page's forms (checked boxes only)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, Any] = {}
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        name = found.get("name")
        if tag == "input" and name:
            if found.get("type") in ("checkbox", "radio") and "checked" not in found:
                return
            if found.get("type") == "checkbox" and name in self.values:
                previous = self.values[name]
                listed = previous if isinstance(previous, list) else [previous]
                self.values[name] = [*listed, found.get("value", "")]
            elif found.get("type") != "file":
                self.values[name] = found.get("value", "")
        elif tag == "select" and name:
            self._select, self._first_option = name, None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = found.get("value", "")
                self.values[self._select] = self._first_option
            if "selected" in found:
                self.values[self._select] = found.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


def form_values(html: str) -> dict[str, Any]:
    """What a browser would submit from the page's form fields."""
    reader = _FormReader()
    reader.feed(html)
    return reader.values


@pytest.fixture
def app_db(sqlite_db: Database) -> Database:
    return sqlite_db


@pytest.fixture
def anonymous(app_db: Database) -> Iterator[TestClient]:
    """A browser that has not signed in."""
    with TestClient(create_app(app_db.settings, app_db)) as client:
        yield client


@pytest.fixture
def admin_user(app_db: Database) -> UserRead:
    with app_db.sessionmaker() as session:
        return make_user(session, "admin@example.com", "admin")


@pytest.fixture
def admin_actor(admin_user: UserRead) -> Actor:
    return auth_service.actor_for(admin_user)


@pytest.fixture
def browser(app_db: Database, admin_user: UserRead) -> Iterator[TestClient]:
    """A browser signed in as an admin."""
    with TestClient(create_app(app_db.settings, app_db)) as client:
        sign_in(client, admin_user.email)
        yield client
