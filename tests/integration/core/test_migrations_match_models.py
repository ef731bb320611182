"""The migrations build the tables the models describe, on both engines (what ``alembic
check`` verifies): nothing the models declare is missing from a migrated store, and nothing
extra is there. Custom-field expression indexes are made at run time and are not compared."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ichigen.core.db import Base, Database


def _include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    return not (kind == "index" and name is not None and name.startswith("ix_cf_"))


def test_a_migrated_store_equals_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": _include, "compare_type": True}
        )
        differences = compare_metadata(context, Base.metadata)
        tables = set(inspect(conn).get_table_names())
    assert differences == []
    assert set(Base.metadata.tables) <= tables
