"""Shapes of users, teams and tokens in and out of the auth service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ichigen.auth.permissions import Role
from ichigen.core.schemas import RecordId

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Password = Annotated[str, Field(min_length=10, max_length=1000)]
Locale = Literal["en", "ja"]


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "aiko@example.co.jp", "name": "佐藤 愛子", "role": "sales"}]
        },
    )

    email: Annotated[str, Field(max_length=320)]
    name: Name
    role: Role = Role.viewer
    team_id: RecordId | None = None
    locale: Locale | None = None
    password: Password | None = None


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    role: Role | None = None
    team_id: RecordId | None = None
    locale: Locale | None = None
    is_active: bool | None = None
    password: Password | None = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    team_id: int | None
    locale: str | None
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class TeamCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Tokyo sales"}]}
    )

    name: Name
    description: Annotated[str, Field(max_length=2000)] = ""


class TeamUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None


class TeamRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    version: int
    created_at: datetime
    updated_at: datetime


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = "API token"
    scope: Literal["read", "read-write"] = "read-write"


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    prefix: str
    scope: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    """The only time the token itself is shown."""

    token: str


class SessionInfo(BaseModel):
    """A signed-in browser: the user, and the CSRF token its forms must echo."""

    user: UserRead
    csrf_token: str
    team_id: int | None
