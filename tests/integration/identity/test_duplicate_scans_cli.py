"""``ichigen duplicates scan`` and ``ichigen duplicates scans`` as an operator runs them."""

from __future__ import annotations

from typer.testing import CliRunner

from ichigen.cli.main import app
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.identity import duplicates
from ichigen.identity.matching import MatchSettings

SETUP = Actor.system("test-setup")


def test_scans_are_listed_and_a_second_one_is_refused(cli: Database) -> None:
    with cli.sessionmaker() as session:
        for fields in (
            {"last_name": "山田", "first_name": "太郎", "email": "a@x.jp"},
            {"last_name": "佐藤", "email": "c@z.jp", "phone": "090-1111-2222"},
            {"last_name": "佐藤", "email": "d@z.jp", "phone": "090-1111-2222"},
        ):
            contacts.create_contact(session, ContactCreate.model_validate(fields), SETUP)

    scanned = CliRunner().invoke(app, ["duplicates", "scan", "--threads", "2"])
    assert scanned.exit_code == 0, scanned.output
    assert "scan 1: 3 contacts scanned" in scanned.stdout

    listed = CliRunner().invoke(app, ["duplicates", "scans"])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if line.strip("│ ").startswith("1 "))
    assert "manual" in row and "cli" in row and "finished" in row

    refused: list[tuple[int, str]] = []

    def scan_from_the_cli_too(step: str, done: int, total: int) -> None:
        if step == "load" and not refused:
            again = CliRunner().invoke(app, ["duplicates", "scan", "--threads", "2"])
            refused.append((again.exit_code, again.output))

    with cli.sessionmaker() as session:
        second = duplicates.scan_contacts(
            session, SETUP, settings=MatchSettings(threads=2), progress=scan_from_the_cli_too
        )
    assert refused[0][0] == 2
    assert f"Duplicate scan {second.scan_id} is running" in refused[0][1]
    listed = CliRunner().invoke(app, ["duplicates", "scans", "--limit", "1"])
    rows = [line.strip("│ ") for line in listed.stdout.splitlines()]
    # A narrow terminal may wrap a cell onto a second line: rows start with a scan id.
    ids = [r.split()[0] for r in rows if r.split() and r.split()[0].isdigit()]
    assert ids == [str(second.scan_id)]
    assert "test-setup" in listed.stdout
