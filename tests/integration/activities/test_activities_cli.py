"""``ichigen activities …`` on a SQLite store: log, timeline, iCalendar export and import."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from tests.conftest import SETUP
from tests.integration.core.factories import company, contact
from typer.testing import CliRunner

from ichigen.cli.main import app
from ichigen.core.db import Database
from ichigen.core.settings import get_settings
from ichigen.crm.activities import service


@pytest.fixture
def store(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    """The SQLite store the commands open (through the environment)."""
    monkeypatch.setenv("ICHIGEN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ICHIGEN_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield sqlite_db
    get_settings.cache_clear()


def ichigen(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_log_show_export_and_import(store: Database, tmp_path: Path) -> None:
    with store.sessionmaker() as session:
        firm = company(session, "Firm")
        ann = contact(session, email="ann@firm.example", last_name="Ann", company_id=firm.id)
    logged = ichigen(
        "activities", "log", "--kind", "call", "--contact", str(ann.id),
        "--subject", "Follow-up", "--direction", "outbound", "--duration", "300",
        "--outcome", "connected", "--at", "2026-05-12T10:00+09:00",
    )  # fmt: skip
    assert logged.exit_code == 0, logged.output
    assert f"logged call 1 on contact {ann.id}" in logged.stdout
    meeting = ichigen(
        "activities", "log", "--kind", "meeting", "--company", str(firm.id),
        "--subject", "Demo", "--at", "2026-05-13T01:00Z", "--end", "2026-05-13T02:00Z",
        "--attendee", "ann@firm.example",
    )  # fmt: skip
    assert meeting.exit_code == 0, meeting.output

    shown = ichigen("activities", "timeline", f"company:{firm.id}")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.index("Demo") < shown.stdout.index("Follow-up")
    assert "2026-05-12 01:00" in shown.stdout

    bad = ichigen("activities", "log", "--kind", "note", "--contact", "999")
    assert bad.exit_code == 2 and "links.0: contact 999 does not exist" in bad.stderr
    nothing = ichigen("activities", "log", "--kind", "call", "--outcome", "maybe")
    assert nothing.exit_code == 2 and "outcome" in nothing.stderr

    ics = tmp_path / "meetings.ics"
    exported = ichigen(
        "activities", "export-ical", str(ics), "--from", "2026-05-01", "--to", "2026-06-01"
    )
    assert exported.exit_code == 0, exported.output
    assert "exported 1 meetings" in exported.stdout
    ics.write_bytes(ics.read_bytes().replace(b"SUMMARY:Demo", b"SUMMARY:Demo (moved)"))
    dry = ichigen("activities", "import-ical", str(ics), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "0 would be created, 1 updated" in dry.stdout and "nothing was written" in dry.stdout
    imported = ichigen("activities", "import-ical", str(ics))
    assert "1 updated" in imported.stdout
    with store.sessionmaker() as session:
        subjects = [a.subject for a in service.list_activities(session, SETUP).items]
    assert subjects == ["Demo (moved)", "Follow-up"]

    broken = tmp_path / "broken.ics"
    broken.write_text("BEGIN:VCALENDAR\nBEGIN:VEVENT\nEND:VCALENDAR\n")
    refused = ichigen("activities", "import-ical", str(broken))
    assert refused.exit_code == 2 and "line 3" in refused.stderr
