"""Request handlers run in a few threads taking turns, as many as the settings say."""

from __future__ import annotations

from anyio import to_thread
from starlette.testclient import TestClient

from ichigen.core.db import Database
from ichigen.web.app import create_app


async def _handler_threads() -> float:
    return to_thread.current_default_thread_limiter().total_tokens


def test_handlers_get_the_configured_number_of_threads(sqlite_db: Database) -> None:
    settings = sqlite_db.settings.model_copy(update={"request_threads": 3})

    with TestClient(create_app(settings, sqlite_db)) as client:
        assert client.portal is not None
        assert client.portal.call(_handler_threads) == 3
        assert client.get("/healthz").json() == {"status": "ok"}


def test_a_few_threads_by_default(sqlite_db: Database) -> None:
    with TestClient(create_app(sqlite_db.settings, sqlite_db)) as client:
        assert client.portal is not None
        assert client.portal.call(_handler_threads) == sqlite_db.settings.request_threads == 4
