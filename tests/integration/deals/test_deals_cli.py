"""``ichigen pipelines`` and ``ichigen deals`` on a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from tests.conftest import SETUP, make_user
from typer.testing import CliRunner

from ichigen.cli import context
from ichigen.cli.main import app
from ichigen.core.db import Database
from ichigen.core.settings import get_settings
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import LostReasonCreate


@pytest.fixture
def store(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    """The SQLite store the commands open (through the environment), with a user."""
    with sqlite_db.sessionmaker() as session:
        make_user(session, "rep@example.com", "sales", password=None)
        service.create_lost_reason(session, LostReasonCreate(name="Price"), SETUP)
    monkeypatch.setenv("ICHIGEN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ICHIGEN_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    # The console was made at import, as wide as the terminal then was.
    monkeypatch.setattr(context.console, "width", 200)
    get_settings.cache_clear()
    yield sqlite_db
    get_settings.cache_clear()


def ichigen(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_pipelines_from_the_command_line(store: Database) -> None:
    empty = ichigen("pipelines", "list")
    assert empty.exit_code == 0 and "no pipelines yet" in empty.stderr
    made = ichigen(
        "pipelines",
        "create",
        "Renewals",
        "--stage",
        "Due:60",
        "--stage",
        "Quoted:80:open:amount,expected_close_date",
        "--stage",
        "Renewed:100:won",
        "--stage",
        "Churned:0:lost",
    )
    assert made.exit_code == 0, made.output
    assert "amount, expected_close_date" in made.stdout
    added = ichigen(
        "pipelines",
        "add-stage",
        "renewals",
        "Signed",
        "--probability",
        "90",
        "--requires",
        "amount",
    )
    assert added.exit_code == 0, added.output
    listed = ichigen("pipelines", "list")
    assert "Renewals" in listed.stdout and "default" in listed.stdout
    order = [n for n in ("Due", "Quoted", "Signed", "Renewed", "Churned") if n in listed.stdout]
    assert (
        listed.stdout.index("Quoted")
        < listed.stdout.index("Signed")
        < listed.stdout.index("Renewed")
    )
    assert len(order) == 5
    bad = ichigen(
        "pipelines", "create", "Broken", "--stage", "A:10", "--stage", "B:20", "--stage", "C:0:lost"
    )
    assert bad.exit_code == 2 and "needs at least one won stage" in bad.stderr
    short = ichigen("pipelines", "create", "Short", "--stage", "Only:10")
    assert short.exit_code == 2 and "stages: List should have at least 3 items" in short.stderr


def test_deals_from_the_command_line(store: Database) -> None:
    assert ichigen("pipelines", "create", "Sales").exit_code == 0
    made = ichigen(
        "deals",
        "create",
        "サクラ精工 更新",
        "--amount",
        "1,200,000",
        "--owner",
        "rep@example.com",
        "--as",
        "rep@example.com",
    )
    assert made.exit_code == 0, made.output
    assert "in Qualified" in made.stdout
    deal_id = made.stdout.split()[2]
    refused = ichigen("deals", "move", deal_id, "Negotiation")
    assert refused.exit_code == 2
    assert "expected_close_date: is required" in refused.stderr
    moved = ichigen("deals", "move", deal_id, "negotiation", "--close-date", "2099-12-24")
    assert moved.exit_code == 0, moved.output
    assert "now in Negotiation (open)" in moved.stdout
    lost = ichigen("deals", "move", deal_id, "Lost", "--lost-reason", "price", "--note", "Budget")
    assert "now in Lost (lost)" in lost.stdout
    listed = ichigen("deals", "list", "--status", "lost", "--owner", "rep@example.com")
    assert "サクラ精工 更新" in listed.stdout and "1,200,000 JPY" in listed.stdout
    assert "サクラ" not in ichigen("deals", "list", "--stage", "Meeting").stdout
    wrong = ichigen("deals", "create", "Yen cents", "--amount", "10.5")
    assert wrong.exit_code == 2 and "amount: JPY amounts have no decimal places" in wrong.stderr
    unknown = ichigen("deals", "move", deal_id, "Nowhere")
    assert unknown.exit_code == 2 and "has no stage 'Nowhere'" in unknown.stderr
