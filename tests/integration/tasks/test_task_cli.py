"""``ichigen tasks`` as a user runs it: a real process on a real record store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.integration.core.factories import contact, user
from typer.testing import CliRunner

from ichigen.cli.main import app
from ichigen.core.db import Database


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(database: Database, _: Path, *args: str) -> Ran:
    result = CliRunner().invoke(app, ["tasks", *args])
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_create_list_complete_and_remind_from_the_command_line(
    cli: Database, tmp_path: Path
) -> None:
    sqlite_db = cli
    with sqlite_db.sessionmaker() as session:
        user(session, "rep@example.com", "sales")
        user(session, "other@example.com", "sales")
        person = contact(session, first_name="Aiko", last_name="Sato")
    made = run(
        sqlite_db,
        tmp_path,
        "create",
        "Call Aiko",
        "--due",
        "2026-03-10",
        "--record",
        f"contact:{person.id}",
        "--remind",
        "2020-01-01T09:00+09:00",
        "--repeat",
        "FREQ=WEEKLY",
        "--as",
        "rep@example.com",
    )
    assert made.returncode == 0, made.stderr
    task_id = re.search(r"created task (\d+)", made.stdout)
    assert task_id is not None
    run(sqlite_db, tmp_path, "create", "Theirs", "--as", "other@example.com")
    mine = run(sqlite_db, tmp_path, "list", "--mine", "--as", "rep@example.com")
    assert mine.returncode == 0, mine.stderr
    assert "Call Aiko" in mine.stdout and "Theirs" not in mine.stdout
    assert "2026-03-10" in mine.stdout and "Sato" in mine.stdout
    reminded = run(sqlite_db, tmp_path, "remind-now")
    assert reminded.returncode == 0 and "reminded 1," in reminded.stdout
    assert "reminded 0," in run(sqlite_db, tmp_path, "remind-now").stdout
    done = run(sqlite_db, tmp_path, "complete", task_id.group(1), "--as", "rep@example.com")
    assert done.returncode == 0, done.stderr
    assert "next: task" in done.stdout and "2026-03-17" in done.stdout
    everything = run(sqlite_db, tmp_path, "list", "--status", "all")
    assert everything.stdout.count("Call Aiko") == 2


def test_bad_input_exits_with_the_field_named(cli: Database, tmp_path: Path) -> None:
    sqlite_db = cli
    bad_rule = run(sqlite_db, tmp_path, "create", "X", "--due", "2026-03-10", "--repeat", "BAD")
    assert bad_rule.returncode == 2 and "recurrence" in bad_rule.stderr
    bad_record = run(sqlite_db, tmp_path, "create", "X", "--record", "ticket:1")
    assert bad_record.returncode == 2 and "record_type" in bad_record.stderr
    bad_due = run(sqlite_db, tmp_path, "create", "X", "--due", "soon")
    assert bad_due.returncode == 2 and "--due" in bad_due.stderr
    assert run(sqlite_db, tmp_path, "list", "--mine").returncode == 2
    assert run(sqlite_db, tmp_path, "complete", "999").returncode == 2
