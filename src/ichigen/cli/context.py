"""What every CLI command needs: settings, the database, and a console."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from sqlalchemy.orm import Session

from ichigen.core.db import Database
from ichigen.core.errors import IchigenError
from ichigen.core.settings import get_settings

console = Console()
err_console = Console(stderr=True)


@contextmanager
def database() -> Iterator[Database]:
    db = Database.from_settings(get_settings())
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def db_session() -> Iterator[Session]:
    """A session for one command; service errors become a clear message and exit code 2."""
    with database() as db:
        session = db.sessionmaker()
        try:
            yield session
        except IchigenError as exc:
            session.rollback()
            err_console.print(f"[red]error:[/red] {exc.detail}")
            for item in exc.errors:
                err_console.print(f"  {'.'.join(str(p) for p in item.loc)}: {item.msg}")
            raise SystemExit(2) from None
        finally:
            session.close()
