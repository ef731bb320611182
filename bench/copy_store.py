"""Build the PostgreSQL benchmark store by copying the SQLite one, row for row.

Loading a million contacts through the services takes about 17 minutes on SQLite and far longer
on PostgreSQL on a busy 2-core machine; copying the SQLite store's rows (written by those same
services) into a freshly migrated PostgreSQL database with COPY takes a few minutes and gives
both engines the same records. The sales tables are left empty (``bench.load_sales`` fills
them), and so is the audit log, which no benchmark reads.

    python -m bench.copy_store
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.load_crm import POSTGRES_ADMIN_URL, STORE_VERSION, sqlite_store
from bench.load_sales import sales_tables
from ichigen.core import migrate
from ichigen.core.db import Base, create_db_engine
from ichigen.core.models_registry import import_all_models

#: Tables the copy skips besides the sales tables (filled by ``bench.load_sales``): read by
#: no benchmark.
SKIPPED = {"alembic_version", "audit_log", "user_sessions", "login_attempts", "api_tokens"}
DATABASE = "ichigen_bench"


def copy_sqlite_to_postgres(progress: Any = print) -> str:
    """Create ``ichigen_bench`` from the SQLite store; returns its URL."""
    import_all_models()
    source = sqlite_store()
    admin_url = make_url(POSTGRES_ADMIN_URL)
    if admin_url.host not in ("127.0.0.1", "localhost"):
        raise SystemExit("benchmarks only use a PostgreSQL on this machine (127.0.0.1)")
    url = admin_url.set(database=DATABASE).render_as_string(hide_password=False)
    admin = create_db_engine(POSTGRES_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    target = create_db_engine(url)
    migrate.upgrade(target)
    lite = create_db_engine(source.url)
    started = time.perf_counter()
    try:
        raw = target.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")
            skipped = SKIPPED | {t.name for t in sales_tables()}
            for table in Base.metadata.sorted_tables:
                if table.name in skipped:
                    continue
                columns = [c.name for c in table.columns]
                quoted = ", ".join(f'"{c}"' for c in columns)
                count = 0
                with lite.connect() as reader:
                    rows = reader.exec_driver_sql(f"SELECT {quoted} FROM {table.name}")
                    copy_sql = f"COPY {table.name} ({quoted}) FROM STDIN"
                    with cursor.copy(copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
                            count += 1
                if "id" in columns:
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"
                    )
                raw.commit()
                progress(
                    f"  [postgresql] {table.name}: {count:,} rows "
                    f"({time.perf_counter() - started:,.0f} s)"
                )
        finally:
            raw.close()
        seconds = time.perf_counter() - started
        meta = {
            "store_version": STORE_VERSION,
            "engine": "postgresql",
            "size": "large",
            "seed": 42,
            "contacts": source.contacts,
            "companies": source.companies,
            "load_seconds": round(seconds, 1),
            "copied_from": "sqlite",
        }
        with target.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS bench_meta (doc TEXT NOT NULL)"))
            conn.execute(text("DELETE FROM bench_meta"))
            conn.execute(
                text("INSERT INTO bench_meta (doc) VALUES (:doc)"), {"doc": json.dumps(meta)}
            )
        with target.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        progress(f"  [postgresql] copied in {time.perf_counter() - started:,.0f} s")
    finally:
        lite.dispose()
        target.dispose()
    return url


if __name__ == "__main__":
    copy_sqlite_to_postgres()
