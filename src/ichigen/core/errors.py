"""The exceptions services raise; the web layer maps them to RFC 9457 problem documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    """One problem with one input field; ``loc`` is the path to it, e.g. ``("emails", 1)``."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


@dataclass
class IchigenError(Exception):
    """Base of every error a service raises on purpose."""

    detail: str
    errors: list[FieldError] = field(default_factory=list)
    status: int = 400
    title: str = "Bad request"
    code: str = "bad-request"

    def __str__(self) -> str:
        return self.detail


class ValidationFailed(IchigenError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors or [], 422, "Validation failed", "validation")


class NotFound(IchigenError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, [], 404, "Not found", "not-found")


class Conflict(IchigenError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors or [], 409, "Conflict", "conflict")


class PreconditionFailed(IchigenError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, [], 412, "Precondition failed", "precondition-failed")


class PermissionDenied(IchigenError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, [], 403, "Forbidden", "forbidden")


class NotAuthenticated(IchigenError):
    def __init__(self, detail: str = "Authentication required.") -> None:
        super().__init__(detail, [], 401, "Unauthorized", "unauthorized")


class TooManyRequests(IchigenError):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, [], 429, "Too many requests", "too-many-requests")
        self.retry_after = retry_after


class BadRequest(IchigenError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, errors or [], 400, "Bad request", "bad-request")
