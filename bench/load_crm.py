"""Build the benchmark record stores: the demo CRM at ``large`` size (100,000 companies,
1,000,000 contacts, indexed custom fields), loaded through the product's services.

SQLite: ``bench/out/crm-<size>-<seed>.db``, kept between runs (a ``.json`` beside it says it is
complete and how long the load took). PostgreSQL: database ``ichigen_bench`` on 127.0.0.1
(``ichigen_bench_<size>`` for other sizes), created here and kept between runs.

    python -m bench.load_crm [--engine sqlite|postgresql|both] [--size large] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.demo.service import DEFAULT_SEED, SIZES, demo_status, load_demo

OUT = Path(__file__).resolve().parent / "out"
POSTGRES_ADMIN_URL = os.environ.get(
    "ICHIGEN_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SECRET = "bench-secret-key-0123456789abcdef"
#: Bump when what a load writes changes (search terms, indexes), so cached stores are rebuilt.
STORE_VERSION = 1


@dataclass(frozen=True)
class Store:
    """A built record store: where it is and what it holds."""

    engine: str
    url: str
    contacts: int
    companies: int
    load_seconds: float


def _settings(url: str) -> Settings:
    return Settings(data_dir=OUT, database_url=url, secret_key=SECRET)


def _counts(database: Database) -> tuple[int, int]:
    with database.engine.connect() as conn:
        contacts = conn.execute(text("SELECT count(*) FROM contacts")).scalar_one()
        companies = conn.execute(text("SELECT count(*) FROM companies")).scalar_one()
    return int(contacts), int(companies)


def _no_commit_wait(dbapi_connection: Any, _record: Any) -> None:
    # A benchmark store is rebuilt, not recovered: commits need not wait for the WAL flush.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")


def _load(engine: str, url: str, size: str, seed: int, meta: dict[str, Any]) -> Store:
    db_engine = create_db_engine(url)
    if engine == "postgresql":
        event.listen(db_engine, "connect", _no_commit_wait)
    database = Database(db_engine, _settings(url))
    try:
        started = time.perf_counter()
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 15 or done == total:
                last[0] = now
                print(f"  [{engine}] {stage}: {done:,}/{total:,} ({now - started:,.0f} s)")

        summary = load_demo(database, size=size, seed=seed, progress=progress)
        seconds = time.perf_counter() - started
        contacts, companies = _counts(database)
    finally:
        database.dispose()
    meta.update(
        store_version=STORE_VERSION,
        engine=engine,
        size=size,
        seed=seed,
        contacts=contacts,
        companies=companies,
        load_seconds=round(seconds, 1),
        contacts_per_second=round(summary.contacts / seconds, 1),
    )
    print(
        f"  [{engine}] loaded {contacts:,} contacts and {companies:,} companies in {seconds:,.0f} s"
    )
    return Store(engine, url, contacts, companies, seconds)


def sqlite_store(size: str = "large", seed: int = DEFAULT_SEED, rebuild: bool = False) -> Store:
    """The SQLite benchmark store, built once and reused."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"crm-{size}-{seed}.db"
    marker = path.with_suffix(".json")
    url = f"sqlite:///{path}"
    found = json.loads(marker.read_text()) if marker.exists() and path.exists() else None
    if found and found.get("store_version", 1) == STORE_VERSION and not rebuild:
        return Store("sqlite", url, found["contacts"], found["companies"], found["load_seconds"])
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), marker):
        leftover.unlink(missing_ok=True)
    meta: dict[str, Any] = {}
    store = _load("sqlite", url, size, seed, meta)
    marker.write_text(json.dumps(meta, indent=2))
    return store


def _postgres_database(size: str) -> str:
    return "ichigen_bench" if size == "large" else f"ichigen_bench_{size}"


def postgres_store(size: str = "large", seed: int = DEFAULT_SEED, rebuild: bool = False) -> Store:
    """The PostgreSQL benchmark store, created on 127.0.0.1 once and reused."""
    name = _postgres_database(size)
    admin_url = make_url(POSTGRES_ADMIN_URL)
    if admin_url.host not in ("127.0.0.1", "localhost"):
        raise SystemExit("benchmarks only use a PostgreSQL on this machine (127.0.0.1)")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    admin = create_db_engine(POSTGRES_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if exists and not rebuild:
                database = Database(create_db_engine(url), _settings(url))
                try:
                    complete = demo_status(database) == "loaded" and _counts(database)[0] >= int(
                        SIZES[size].contacts
                    )
                    found = _read_pg_meta(database) if complete else None
                finally:
                    database.dispose()
                if found is not None and found.get("store_version", 1) == STORE_VERSION:
                    return Store(
                        "postgresql",
                        url,
                        int(found["contacts"]),
                        int(found["companies"]),
                        float(found["load_seconds"]),
                    )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    meta: dict[str, Any] = {}
    store = _load("postgresql", url, size, seed, meta)
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS bench_meta (doc TEXT NOT NULL)"))
            conn.execute(text("DELETE FROM bench_meta"))
            conn.execute(
                text("INSERT INTO bench_meta (doc) VALUES (:doc)"), {"doc": json.dumps(meta)}
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    return store


def _read_pg_meta(database: Database) -> dict[str, Any] | None:
    with database.engine.connect() as conn:
        found = conn.execute(text("SELECT to_regclass('bench_meta')")).scalar()
        if found is None:
            return None
        doc = conn.execute(text("SELECT doc FROM bench_meta")).scalar()
    return json.loads(doc) if doc else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--size", choices=sorted(SIZES), default="large")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--rebuild", action="store_true", help="build again even if cached")
    args = parser.parse_args()
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    for engine in engines:
        build = sqlite_store if engine == "sqlite" else postgres_store
        store = build(args.size, args.seed, args.rebuild)
        print(
            f"{engine}: {store.contacts:,} contacts, {store.companies:,} companies "
            f"(loaded in {store.load_seconds:,.0f} s) at {store.url}"
        )


if __name__ == "__main__":
    main()
