"""Schemathesis against the app's own OpenAPI document: generated requests, valid and invalid,
to every operation, as an admin, on SQLite. No answer may be a 5xx, and answers must have the
documented content types and (for valid requests) match the documented schemas.

The tests are built the way ``schemathesis.pytest.from_fixture`` builds them (its examples,
coverage and fuzzing phases), but run here in a loop: its pytest glue relies on an attribute
pytest 9 removed. Every failing operation is reported at once.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from tests.api.conftest import Api

from ichigen.auth import service as auth_service
from ichigen.core.errors import NotAuthenticated

#: Generated cases per operation in the fuzzing phase (the coverage phase adds its own
#: boundary cases); bounded so that the whole file runs in well under two minutes.
EXAMPLES = 15
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _seed(api: Api) -> None:
    """A few records for generated requests to find (ids 1 and 2 exist)."""
    admin = api.admin
    company = api.post("/api/v1/companies", as_=admin, json={"name": "Acme", "domain": "acme.jp"})
    api.post(
        "/api/v1/contacts",
        as_=admin,
        json={"last_name": "山田", "email": "yamada@acme.jp", "company_id": company.json()["id"]},
    )
    api.post(
        "/api/v1/custom-fields",
        as_=admin,
        json={
            "entity": "contacts",
            "key": "tier",
            "label": "Tier",
            "field_type": "select",
            "options": [{"value": "gold"}],
        },
    )


def test_no_operation_answers_with_a_server_error(api: Api) -> None:
    _seed(api)
    serial = itertools.count(1)
    config = SchemathesisConfig.from_dict({"generation": {"mode": "all"}, "seed": 20260301})
    loaded = schemathesis.openapi.from_asgi("/openapi.json", api.client.app, config=config)
    caller = [api.admin]

    def admin_headers() -> dict[str, str]:
        """The admin's token, or a new admin's if generated requests revoked or deactivated it
        (``DELETE /api/v1/tokens/1`` is a perfectly valid request)."""
        with api.db.sessionmaker() as session:
            try:
                auth_service.token_actor(session, caller[0].token)
            except NotAuthenticated:
                caller[0] = api.caller("admin")
        return caller[0].headers

    def check(case: Case[Any]) -> None:
        headers = admin_headers()
        if case.path.startswith("/v1/"):
            # Generated requests may disable the source or rotate its key; use a fresh one.
            fresh = api.post(
                "/api/v1/sources", headers=headers, json={"name": f"Source {next(serial)}"}
            )
            headers = {**headers, "X-Write-Key": fresh.json()["write_key"]}
        # A duplicate scan runs Splink's training and scoring in the request, seconds even on
        # a few contacts, longer when the machine is busy. Every other answer comes at once
        # here; the bound is for a machine busy with the rest of the suite, and a request
        # that hangs still fails.
        slow = case.path.endswith("/duplicates/scan")
        response = case.call(headers=headers, timeout=120 if slow else 30)
        assert response.status_code != 401 or "Authorization" in (case.headers or {}), (
            "the admin's token was refused"
        )
        valid = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
        checks: list[Any] = [not_a_server_error, content_type_conformance]
        if valid:
            checks.append(response_schema_conformance)
        case.validate_response(response, checks=checks, headers=headers)

    failures: dict[str, str] = {}
    labels = []
    for result in get_all_tests(schema=loaded, test_func=check, settings=SETTINGS, given_kwargs={}):
        assert isinstance(result, Ok), result
        operation, run = result.ok()
        labels.append(operation.label)
        try:
            run()
        except Unsatisfiable:
            # An operation without parameters or a body has no invalid input to make.
            continue
        except (AssertionError, FailureGroup) as exc:
            failures[operation.label] = str(exc)[:3000]
        except Exception as exc:  # a timeout, or an exception out of the app: name the operation
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
    assert len(labels) >= 25 and "GET /api/v1/contacts" in labels
    assert failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
