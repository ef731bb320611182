"""``ichigen identity rebuild`` as an operator runs it, on a real record store."""

from __future__ import annotations

import re

from sqlalchemy import update
from typer.testing import CliRunner

from ichigen.cli.main import app
from ichigen.core.db import Database
from ichigen.identity import service
from ichigen.identity.models import IdentityIdentifier
from ichigen.identity.schemas import IdentitySource


def test_dry_run_reports_and_rebuild_repairs(cli: Database) -> None:
    with cli.session() as session:
        alice = service.resolve(
            session, [("anonymous_id", "a1"), ("email", "alice@x.jp")], IdentitySource(kind="event")
        ).person_id
        service.resolve(
            session, [("anonymous_id", "b1"), ("email", "bob@x.jp")], IdentitySource(kind="event")
        )
        session.execute(update(IdentityIdentifier).values(person_id=alice))

    dry = CliRunner().invoke(app, ["identity", "rebuild", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "persons that would be created" in dry.stdout
    assert "dry run: nothing was written" in dry.stdout
    with cli.sessionmaker() as session:
        assert service.person_of(session, "email", "bob@x.jp") == alice

    done = CliRunner().invoke(app, ["identity", "rebuild"])
    assert done.exit_code == 0, done.output
    assert "identifiers that were moved" in done.stdout
    with cli.sessionmaker() as session:
        bob = service.person_of(session, "email", "bob@x.jp")
        assert bob is not None and bob != alice
        assert service.person_of(session, "anonymous_id", "b1") == bob
        assert service.person_of(session, "email", "alice@x.jp") == alice

    again = CliRunner().invoke(app, ["identity", "rebuild"])
    assert again.exit_code == 0, again.output
    assert re.search(r"│ rows that were written\s+│\s+0 │", again.stdout), again.stdout
