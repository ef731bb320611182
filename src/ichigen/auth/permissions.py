"""Roles and the permission matrix: which role may read or write which entity."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from ichigen.core.audit import Actor
from ichigen.core.errors import PermissionDenied


class Role(StrEnum):
    admin = "admin"
    manager = "manager"
    sales = "sales"
    support = "support"
    marketing = "marketing"
    analyst = "analyst"
    viewer = "viewer"


Access = Literal["read", "write"]
ENTITIES = (
    "users",
    "teams",
    "companies",
    "contacts",
    "custom_fields",
    "audit",
    "sources",
    "events",
    "pipelines",
    "deals",
    "activities",
    "tasks",
    "quotas",
    "identity",
)

_R, _RW, _NONE = frozenset({"read"}), frozenset({"read", "write"}), frozenset[str]()

#: role -> entity -> allowed access. Kept as data so docs and the UI can show it.
MATRIX: dict[Role, dict[str, frozenset[str]]] = {
    Role.admin: dict.fromkeys(ENTITIES, _RW),
    Role.manager: {
        "users": _R,
        "teams": _RW,
        "companies": _RW,
        "contacts": _RW,
        "custom_fields": _R,
        "audit": _R,
        "sources": _R,
        "events": _R,
        "pipelines": _RW,
        "deals": _RW,
        "activities": _RW,
        "tasks": _RW,
        "quotas": _RW,
        "identity": _RW,
    },
    Role.sales: {
        "users": _R,
        "teams": _R,
        "companies": _RW,
        "contacts": _RW,
        "custom_fields": _R,
        "audit": _R,
        "sources": _NONE,
        "events": _R,
        "pipelines": _R,
        "deals": _RW,
        "activities": _RW,
        "tasks": _RW,
        "quotas": _R,
        "identity": _R,
    },
    Role.support: {
        "users": _R,
        "teams": _R,
        "companies": _R,
        "contacts": _RW,
        "custom_fields": _R,
        "audit": _R,
        "sources": _NONE,
        "events": _R,
        "pipelines": _R,
        "deals": _R,
        "activities": _RW,
        "tasks": _RW,
        "quotas": _NONE,
        "identity": _R,
    },
    Role.marketing: {
        "users": _R,
        "teams": _R,
        "companies": _R,
        "contacts": _RW,
        "custom_fields": _R,
        "audit": _R,
        "sources": _R,
        "events": _R,
        "pipelines": _R,
        "deals": _R,
        "activities": _R,
        "tasks": _RW,
        "quotas": _NONE,
        "identity": _R,
    },
    Role.analyst: {
        "users": _R,
        "teams": _R,
        "companies": _R,
        "contacts": _R,
        "custom_fields": _R,
        "audit": _R,
        "sources": _R,
        "events": _R,
        "pipelines": _R,
        "deals": _R,
        "activities": _R,
        "tasks": _R,
        "quotas": _R,
        "identity": _R,
    },
    Role.viewer: {
        "users": _NONE,
        "teams": _NONE,
        "companies": _R,
        "contacts": _R,
        "custom_fields": _R,
        "audit": _NONE,
        "sources": _NONE,
        "events": _NONE,
        "pipelines": _R,
        "deals": _R,
        "activities": _R,
        "tasks": _NONE,
        "quotas": _NONE,
        "identity": _R,
    },
}

#: Roles that may change only records they own, that a teammate owns, or that nobody owns.
OWNERSHIP_BOUND = frozenset({Role.sales, Role.support})


def can(actor: Actor, entity: str, access: Access) -> bool:
    try:
        role = Role(actor.role)
    except ValueError:
        return False
    if access == "write" and actor.via == "token-read":
        return False
    return access in MATRIX[role].get(entity, _NONE)


def require(actor: Actor, entity: str, access: Access) -> None:
    """Raise 403 unless the actor's role grants this access."""
    if not can(actor, entity, access):
        if actor.via == "token-read" and access == "write":
            raise PermissionDenied("This API token is read-only.")
        raise PermissionDenied(f"The {actor.role} role may not {access} {entity}.")


def require_owner_access(
    actor: Actor, entity: str, owner_id: int | None, owner_team_id: int | None
) -> None:
    """Writes by ownership-bound roles are limited to own, teammates' and unowned records."""
    require(actor, entity, "write")
    if Role(actor.role) not in OWNERSHIP_BOUND or owner_id is None or owner_id == actor.user_id:
        return
    if actor.team_id is not None and owner_team_id == actor.team_id:
        return
    raise PermissionDenied(
        f"This {entity[:-1]} belongs to another owner; a {actor.role} user may change only "
        "their own or their team's records."
    )
