"""Errors as RFC 9457 problem documents (``application/problem+json``); never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ichigen.core.errors import IchigenError, TooManyRequests

log = logging.getLogger("ichigen.web")
PROBLEM = "application/problem+json"


class ProblemError(BaseModel):
    """One problem with one input; ``loc`` is the path to it (``["body", "emails", 1]``)."""

    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error of the API is answered."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemError] | None = None


_PROBLEM_STATUSES = {
    400: "Malformed JSON, a bad filter, sort, cursor or If-Match header.",
    401: "No valid API token.",
    403: "The role or the token's scope does not allow this.",
    404: "No such record.",
    409: "Conflicts with an existing record (a unique email, name or external id).",
    412: "The If-Match version is stale: someone else changed the record.",
    413: "The request body is too large.",
    422: "The input is invalid; `errors` locate each problem.",
}

#: The error answers of the JSON API, for the OpenAPI document (replaces FastAPI's default
#: 422 ``HTTPValidationError``, which is not what the API sends).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "model": Problem,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, description in _PROBLEM_STATUSES.items()
}


def problem(
    status: int,
    title: str,
    detail: str,
    code: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://ichigen.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _clean(value: Any) -> Any:
    """Pydantic error contexts may hold exceptions or bytes; keep the JSON-safe part."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return str(value)


async def on_ichigen_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IchigenError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="ichigen"'}
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        exc.code,
        [e.as_dict() for e in exc.errors] or None,
        headers,
        str(request.url.path),
    )


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": _clean(list(e.get("loc", ()))),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(
            400,
            "Malformed JSON",
            "The request body is not valid JSON.",
            "malformed-json",
            errors,
            instance=str(request.url.path),
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"])
    return problem(
        422,
        "Validation failed",
        f"{where}: {first['msg']}" if where else str(first["msg"]),
        "validation",
        errors,
        instance=str(request.url.path),
    )


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        404: "Not found",
        405: "Method not allowed",
        413: "Payload too large",
        415: "Unsupported media type",
    }
    return problem(
        exc.status_code,
        titles.get(exc.status_code, "Error"),
        str(exc.detail),
        "http-" + str(exc.status_code),
        headers=getattr(exc, "headers", None),
        instance=str(request.url.path),
    )


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "Internal error",
        "Something went wrong on our side; it has been logged.",
        "internal",
        instance=str(request.url.path),
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(IchigenError, on_ichigen_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
