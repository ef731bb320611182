"""``ichigen rates``, ``ichigen quotas`` and ``ichigen forecast`` on a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from tests.conftest import SETUP
from tests.integration.forecasts.dataset import build
from typer.testing import CliRunner

from ichigen.auth import service as auth_service
from ichigen.cli.context import console
from ichigen.cli.main import app
from ichigen.core.db import Database
from ichigen.core.settings import get_settings
from ichigen.crm.deals import forecasts


@pytest.fixture
def store(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    """The data set in the SQLite store the commands open (through the environment)."""
    with sqlite_db.sessionmaker() as session:
        build(session, SETUP)
    monkeypatch.setenv("ICHIGEN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ICHIGEN_DATABASE_URL", raising=False)
    monkeypatch.delenv("ICHIGEN_BASE_CURRENCY", raising=False)
    # Wide enough for the tables whatever terminal (or none) the tests run in.
    monkeypatch.setattr(console, "width", 200)
    get_settings.cache_clear()
    yield sqlite_db
    get_settings.cache_clear()


def ichigen(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_the_forecast_table(store: Database) -> None:
    shown = ichigen("forecast", "--period", "2026-Q4")
    assert shown.exit_code == 0, shown.output
    assert "Forecast 2026-Q4 (2026-10-01 – 2026-12-31), JPY" in shown.stdout
    forecast_part = shown.stdout.split("Deals closed")[0]
    lines = {row.split("│")[1].strip(): row for row in forecast_part.splitlines() if "│" in row}
    assert "2,610,000" in lines["Aiko"] and "25.0 %" in lines["Aiko"]
    assert "4,626,000" in lines["Total"] and "42.2 %" in lines["Total"]
    assert "60.0 %" in shown.stdout  # the total win rate, in the sales table
    by_team = ichigen("forecast", "--period", "2026-Q4", "--by", "team")
    assert "East" in by_team.stdout and "Aiko" not in by_team.stdout
    bad = ichigen("forecast", "--period", "2026-Q5")
    assert bad.exit_code == 2 and "not a period" in bad.stderr


def test_rates_and_quotas_from_the_command_line(store: Database) -> None:
    made = ichigen("rates", "set", "usd", "2026-12-01", "152.5")
    assert made.exit_code == 0, made.output
    assert "1 USD = 152.5 JPY from 2026-12-01" in made.stdout
    listed = ichigen("rates", "list", "--currency", "USD")
    assert listed.stdout.index("152.5") < listed.stdout.index("150")
    wrong = ichigen("rates", "set", "JPY", "2026-12-01", "1")
    assert wrong.exit_code == 2 and "currency" in wrong.stderr
    assert ichigen("rates", "set", "USD", "2026-13-01", "1").exit_code == 2

    quota = ichigen(
        "quotas", "set", "--user", "chie@example.com", "--quarter", "2026-Q4",
        "--amount", "1,000,000", "--currency", "JPY",
    )  # fmt: skip
    assert quota.exit_code == 0, quota.output
    assert "1,000,000 JPY for chie@example.com in 2026-Q4" in quota.stdout
    shown = ichigen("quotas", "list", "--period", "2026-Q4")
    assert "chie@example.com" in shown.stdout and "team East" in shown.stdout
    with store.sessionmaker() as session:
        chie = auth_service.find_user_by_email(session, "chie@example.com")
        assert chie is not None
        held = forecasts.list_quotas(session, SETUP, user_id=chie.id).items
    assert [(q.period, q.amount) for q in held] == [("2026-Q4", 1000000)]
    odd = ichigen(
        "quotas", "set", "--team", "East", "--quarter", "2026-11",
        "--amount", "5", "--currency", "JPY",
    )  # fmt: skip
    assert odd.exit_code == 2 and "not a quarter" in odd.output
    fraction = ichigen(
        "quotas", "set", "--team", "West", "--month", "2026-11",
        "--amount", "5.5", "--currency", "JPY",
    )  # fmt: skip
    assert fraction.exit_code == 2 and "amount" in fraction.stderr
