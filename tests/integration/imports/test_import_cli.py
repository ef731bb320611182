"""``ichigen import`` and ``ichigen export`` as a user runs them: a real process, a real file."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.core.factories import row_count, user
from tests.integration.imports.conftest import DATA

from ichigen.core.db import Database
from ichigen.crm.contacts.models import Contact

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


def test_import_and_export_contacts_from_the_command_line(
    sqlite_db: Database, tmp_path: Path
) -> None:
    with sqlite_db.sessionmaker() as session:
        user(session, "rep@example.com", "sales")
    errors = tmp_path / "errors.csv"
    dry = run(
        sqlite_db,
        tmp_path,
        "import",
        "contacts",
        str(DATA / "hubspot_contacts.csv"),
        "--dry-run",
        "--mapping",
        '{"Net Promoter Score": null}',
    )
    assert dry.returncode == 1, dry.stderr
    assert "2 would be created" in dry.stdout and "nothing was written" in dry.stdout
    assert "importing hubspot_contacts.csv" in dry.stderr and "4/4" in dry.stderr

    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"Net Promoter Score": null}', encoding="utf-8")
    done = run(
        sqlite_db,
        tmp_path,
        "import",
        "contacts",
        str(DATA / "hubspot_contacts.csv"),
        "--mapping",
        str(mapping),
        "--errors",
        str(errors),
        "--as",
        "rep@example.com",
    )
    assert done.returncode == 1 and "2 were created" in done.stdout, done.stdout + done.stderr
    assert "Country/Region" in done.stdout and "Atlantis" in done.stdout
    with errors.open(encoding="utf-8-sig", newline="") as found:
        rows = list(csv.DictReader(found))
    assert sorted((r["row"], r["column"]) for r in rows) == [
        ("4", "Country/Region"),
        ("4", "Email"),
        ("5", "Contact owner"),
    ]

    exported = tmp_path / "contacts.csv"
    out = run(
        sqlite_db,
        tmp_path,
        "export",
        "contacts",
        "-o",
        str(exported),
        "--filter",
        "lifecycle_stage:eq:mql",
    )
    assert out.returncode == 0 and "exported 1 contacts" in out.stderr, out.stderr
    assert exported.read_bytes().startswith("\ufeffid,".encode())
    again = run(sqlite_db, tmp_path, "import", "contacts", str(exported))
    assert again.returncode == 0 and "1 unchanged" in again.stdout, again.stdout

    stdout = run(sqlite_db, tmp_path, "export", "contacts", "-q", "emma")
    assert stdout.stdout.startswith("id,") and "emma@northwind.example" in stdout.stdout

    bad = run(
        sqlite_db,
        tmp_path,
        "import",
        "contacts",
        str(DATA / "hubspot_contacts.csv"),
        "--encoding",
        "klingon",
    )
    assert bad.returncode == 2 and "Unknown text encoding" in bad.stderr
    with sqlite_db.sessionmaker() as session:
        assert row_count(session, Contact) == 2


def test_import_companies_from_the_command_line(sqlite_db: Database, tmp_path: Path) -> None:
    result = run(
        sqlite_db,
        tmp_path,
        "import",
        "companies",
        str(DATA / "salesforce_accounts.csv"),
        "--match-on",
        "domain",
        "--mapping",
        '{"Account Owner": null}',
    )
    assert result.returncode == 0 and "2 were created" in result.stdout, (
        result.stdout + result.stderr
    )
    listed = run(sqlite_db, tmp_path, "export", "companies", "--no-bom")
    assert listed.stdout.startswith("id,external_id,name") and "Acme Corp" in listed.stdout
