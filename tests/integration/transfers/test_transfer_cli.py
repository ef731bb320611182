"""``ichigen import deals|activities`` and ``ichigen export deals|activities`` as a user runs
them: a real process, real files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SETUP
from tests.integration.core.factories import company, contact, row_count, user
from tests.integration.transfers.conftest import DATA, pipelines

from ichigen.core.db import Database
from ichigen.crm.activities.models import Activity
from ichigen.crm.deals.models import Deal

ICHIGEN = Path(sys.executable).parent / "ichigen"


def run(database: Database, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ICHIGEN_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
        "ICHIGEN_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(ICHIGEN), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_deals_and_activities_from_the_command_line(sqlite_db: Database, tmp_path: Path) -> None:
    with sqlite_db.sessionmaker() as session:
        user(session, "rep@example.com", "sales")
        pipelines(session, SETUP)
        company(session, "Sakura Seiko", domain="sakura-seiko.co.jp")
        company(session, "Acme Corp", domain="acme.example")
        company(session, "Fuji Logistics")
        contact(session, last_name="山田", email="taro.yamada@sakura-seiko.co.jp")
        contact(session, first_name="Jane", last_name="Doe", email="jane@acme.example")
        contact(session, first_name="Bob", last_name="Smith", email="bob@acme.example")
    deals_file = str(DATA / "hubspot_deals.csv")
    dry = run(sqlite_db, tmp_path, "import", "deals", deals_file, "--dry-run")
    assert dry.returncode == 1, dry.stderr
    assert "3 would be created" in dry.stdout and "nothing was written" in dry.stdout
    assert "importing hubspot_deals.csv" in dry.stderr and "8/8" in dry.stderr

    errors = tmp_path / "errors.csv"
    done = run(
        sqlite_db, tmp_path, "import", "deals", deals_file, "--time-zone", "Asia/Tokyo",
        "--errors", str(errors),
    )  # fmt: skip
    assert done.returncode == 1 and "3 were created" in done.stdout, done.stderr
    with errors.open(encoding="utf-8-sig") as f:
        assert [r["column"] for r in csv.DictReader(f)][:2] == ["Amount", "Deal Stage"]

    calls = run(
        sqlite_db, tmp_path, "import", "activities", str(DATA / "hubspot_calls.csv"),
        "--time-zone", "Asia/Tokyo", "--as", "rep@example.com",
    )  # fmt: skip
    assert calls.returncode == 1 and "2 were created" in calls.stdout, calls.stderr
    with sqlite_db.sessionmaker() as session:
        assert (row_count(session, Deal), row_count(session, Activity)) == (3, 2)

    won = tmp_path / "won.csv"
    exported = run(
        sqlite_db, tmp_path, "export", "deals", "--filter", "status:eq:won", "-o", str(won)
    )
    assert exported.returncode == 0 and "exported 1 deals" in exported.stderr
    assert won.read_bytes().startswith("\ufeff".encode())
    shown = run(
        sqlite_db, tmp_path, "export", "activities", "--kind", "call", "--from", "2026-05-13"
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("id,external_id,kind,") and len(lines) == 2 and ",5002," in lines[1]
    bad = run(sqlite_db, tmp_path, "export", "activities", "--record", "deal")
    assert bad.returncode == 2 and "type:id" in bad.stderr
    refused = run(sqlite_db, tmp_path, "import", "deals", deals_file, "--time-zone", "Mars/Olympus")
    assert refused.returncode == 2 and "Unknown time zone" in refused.stderr
