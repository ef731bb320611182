"""Shared fixtures: a migrated record store per engine, cleaned between tests, and actors.

Integration tests take ``db`` and run on SQLite and on PostgreSQL (the latter at
``ICHIGEN_TEST_POSTGRES_URL``; without it those cases are skipped locally, and CI sets it).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserCreate, UserRead
from ichigen.cli import context as cli_context
from ichigen.core import migrate
from ichigen.core.audit import Actor
from ichigen.core.db import Base, Database, create_db_engine
from ichigen.core.models_registry import import_all_models
from ichigen.core.settings import Settings, get_settings

import_all_models()
PG_URL = os.environ.get("ICHIGEN_TEST_POSTGRES_URL")
# In-process apps keep the event store in their own process: API tests build several apps on
# one data dir, which share one embedded store there, while a store process per app would
# find the file taken. Live servers (tests/e2e) run the store process as production does,
# and tests/integration/collect tests it directly.
os.environ.setdefault("ICHIGEN_EVENT_STORE_PROCESS", "false")
# A scheduled duplicate scan would start minutes into a long test (schemathesis keeps an app's
# background tasks running after its test) and compete with every later test for the CPU. The
# tests of the scan loop turn it on themselves.
os.environ.setdefault("ICHIGEN_DUPLICATES_SCAN_HOURS", "0")
ENGINES = ["sqlite", "postgresql"]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    """A migrated PostgreSQL database of this test run's own, dropped at the end."""
    if not PG_URL:
        pytest.skip("ICHIGEN_TEST_POSTGRES_URL is not set")
    name = f"ichigen_test_{_worker()}_{uuid.uuid4().hex[:8]}"
    admin = create_db_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(url, pool_size=4)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _clean_postgres(engine: Engine) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        for (index,) in conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_cf_%'")
        ):
            conn.execute(text(f'DROP INDEX IF EXISTS "{index}"'))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    """A clean, migrated record store on each engine."""
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789")
    if request.param == "sqlite":
        path = tmp_path / "ichigen.db"
        shutil.copy(sqlite_template, path)
        database = Database(create_db_engine(f"sqlite:///{path}"), settings)
        yield database
        database.dispose()
    else:
        engine = request.getfixturevalue("pg_engine")
        _clean_postgres(engine)
        yield Database(engine, settings)


@pytest.fixture
def cli(sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The ``ichigen`` command in this process, on the test's SQLite record store (settings
    come from the environment; a test may set more ``ICHIGEN_`` variables before invoking)."""
    url = sqlite_db.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("ICHIGEN_DATABASE_URL", url)
    monkeypatch.setenv("ICHIGEN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    # The command's consoles were made at import, as wide as the terminal was then.
    for console in (cli_context.console, cli_context.err_console):
        monkeypatch.setattr(console, "width", 200)
    get_settings.cache_clear()
    yield sqlite_db
    get_settings.cache_clear()


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    """A clean SQLite record store (for tests about one engine's behaviour, or the API)."""
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789")
    path = tmp_path / "ichigen.db"
    shutil.copy(sqlite_template, path)
    database = Database(create_db_engine(f"sqlite:///{path}"), settings)
    yield database
    database.dispose()


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    with db.sessionmaker() as s:
        yield s


SETUP = Actor.system("test-setup")


def make_user(
    session: Session,
    email: str,
    role: str = "sales",
    team_id: int | None = None,
    password: str | None = "correct-horse-battery",  # noqa: S107
) -> UserRead:
    """A user built through the service, as the product builds them."""
    return auth_service.create_user(
        session,
        UserCreate(
            email=email,
            name=email.split("@")[0].title(),
            role=role,
            team_id=team_id,
            password=password,
        ),  # type: ignore[arg-type]
        SETUP,
    )


@pytest.fixture
def admin(session: Session) -> Actor:
    return auth_service.actor_for(make_user(session, "admin@example.com", "admin"))
