"""Identity resolution speed: messages resolved per second, and a person read by identifier.

Generates a web audience like the collector sees it: anonymous visitors browsing (one
``anonymous_id`` per message), a share of them identifying (``anonymous_id`` with ``user_id``
and an e-mail, the merge of an anonymous profile into a known one), some on a second device
(anonymous first, then signed in: two persons merge), and phones added later. Each message goes
through ``identity.service.resolve``, committed every 100 messages as the collector's group
commit would, into a fresh store on SQLite (a file under ``bench/out/``) and PostgreSQL
(database ``ichigen_bench_identity``, created afresh). Then persons are added in bulk up to
``--persons`` (default 1,000,000), and a thousand reads of a person by a random identifier
(``person_of``; half among the resolved ones, half among the bulk ones), p50 / p95, and
the same thousand unified profiles (``profiles.read_profile``: identifiers, traits, contact).
The same messages also go through ``resolve_many`` in groups of 5,000 (the collector's path,
with its memory of known identifiers) into a second fresh store, and the two rates are
compared.

Budgets (issue 5): incremental resolution keeping up with 50,000 events/s; a person read by
any identifier p95 ≤ 20 ms with 1,000,000 profiles.

    python -m bench.identity_resolve [--engine sqlite|postgresql|both] [--visitors 20000]
                                     [--persons 1000000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.load_crm import OUT, POSTGRES_ADMIN_URL
from ichigen.core import migrate
from ichigen.core.audit import Actor
from ichigen.core.db import create_db_engine
from ichigen.core.models_registry import import_all_models
from ichigen.identity import service
from ichigen.identity.models import IdentityIdentifier, Person
from ichigen.identity.schemas import IdentitySource
from ichigen.profiles import service as profiles

BUDGET_EVENTS_PER_SECOND = 50_000
BUDGET_READ_P95_MS = 20.0
COMMIT_EVERY = 100
GROUP = 5_000
DATABASE = "ichigen_bench_identity"


def messages(visitors: int, seed: int) -> list[list[tuple[str, str]]]:
    """The identifiers of each message, in arrival order."""
    rnd = random.Random(seed)
    found: list[list[tuple[str, str]]] = []
    for n in range(visitors):
        anon = f"anon-{n:08d}"
        for _ in range(rnd.randint(1, 4)):
            found.append([("anonymous_id", anon)])
        if rnd.random() < 0.3:
            user = f"u-{n:08d}"
            found.append([("anonymous_id", anon), ("user_id", user), ("email", f"v{n}@example.jp")])
            if rnd.random() < 0.3:
                # A second device: anonymous first, then signed in (two persons merge).
                found.append([("anonymous_id", f"anon-{n:08d}-b")])
                found.append([("anonymous_id", f"anon-{n:08d}-b"), ("user_id", user)])
            if rnd.random() < 0.2:
                found.append([("user_id", user), ("phone", f"090{n % 100_000_000:08d}")])
    return found


def _stores(engine_name: str, suffix: str = "") -> list[tuple[str, str]]:
    stores = []
    if engine_name in ("sqlite", "both"):
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"identity-bench{suffix}.db"
        for ending in ("", "-wal", "-shm"):
            path.with_name(path.name + ending).unlink(missing_ok=True)
        stores.append(("sqlite", f"sqlite:///{path}"))
    if engine_name in ("postgresql", "both"):
        admin_url = make_url(POSTGRES_ADMIN_URL)
        if admin_url.host not in ("127.0.0.1", "localhost"):
            raise SystemExit("benchmarks only use a PostgreSQL on this machine (127.0.0.1)")
        database = DATABASE + suffix.replace("-", "_")
        admin = create_db_engine(POSTGRES_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        url = admin_url.set(database=database).render_as_string(hide_password=False)
        stores.append(("postgresql", url))
    return stores


def measure_batched(url: str, batch: list[list[tuple[str, str]]]) -> dict[str, Any]:
    """The same messages through ``resolve_many`` in groups of ``GROUP`` (as the collector
    hands them over), with the per-process memory of known identifiers."""
    import_all_models()
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    source = IdentitySource(kind="event")
    known = service.KnownIdentifiers()
    started = time.perf_counter()
    cpu = time.process_time()
    with Session(engine) as session:
        for start in range(0, len(batch), GROUP):
            service.resolve_many(
                session, batch[start : start + GROUP], lambda _: source, known=known
            )
            session.commit()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    engine.dispose()
    return {
        "messages_per_second": round(len(batch) / seconds, 1),
        "messages_per_cpu_second": round(len(batch) / cpu_seconds, 1),
    }


def _bulk_persons(engine: Any, count: int) -> None:
    """Add ``count`` persons, each with an ``anonymous_id`` and every third with a ``user_id``,
    written in bulk in the service's shape (to read among a million profiles without
    resolving a million messages first)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        first = int(
            conn.execute(text("SELECT coalesce(max(id), 0) FROM identity_persons")).scalar()
        )
        for start in range(0, count, 50_000):
            ids = range(first + 1 + start, first + 1 + min(start + 50_000, count))
            conn.execute(
                Person.__table__.insert(),
                [{"id": i, "created_at": now, "first_seen": now, "last_seen": now} for i in ids],
            )
            rows = [
                {"type": "anonymous_id", "value": f"bulk-{i}", "person_id": i, "created_at": now}
                for i in ids
            ]
            rows += [
                {"type": "user_id", "value": f"bulk-u-{i}", "person_id": i, "created_at": now}
                for i in ids
                if i % 3 == 0
            ]
            conn.execute(IdentityIdentifier.__table__.insert(), rows)
        if engine.dialect.name == "sqlite":
            conn.execute(text("ANALYZE"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE identity_persons"))
            conn.execute(text("VACUUM ANALYZE identity_identifiers"))


def measure(
    name: str,
    url: str,
    batch: list[list[tuple[str, str]]],
    seed: int,
    extra_persons: int = 0,
) -> dict[str, Any]:
    import_all_models()
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    source = IdentitySource(kind="event")
    started = time.perf_counter()
    cpu = time.process_time()
    merges = rejected = 0
    with Session(engine) as session:
        for index, identifiers in enumerate(batch, start=1):
            result = service.resolve(session, identifiers, source)
            merges += len(result.merged_person_ids)
            rejected += len(result.rejected)
            if index % COMMIT_EVERY == 0:
                session.commit()
        session.commit()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    first_bulk = 0
    if extra_persons:
        with engine.connect() as conn:
            first_bulk = (
                int(
                    conn.execute(text("SELECT coalesce(max(id), 0) FROM identity_persons")).scalar()
                )
                + 1
            )
        _bulk_persons(engine, extra_persons)
    rnd = random.Random(seed)
    wanted = [rnd.choice(batch)[-1] for _ in range(500)]
    if extra_persons:
        # Half the reads among the bulk persons, by either kind of identifier.
        for _ in range(500):
            n = int(first_bulk) + rnd.randrange(extra_persons)
            wanted.append(
                ("user_id", f"bulk-u-{n}") if n % 3 == 0 else ("anonymous_id", f"bulk-{n}")
            )
    else:
        wanted += [rnd.choice(batch)[-1] for _ in range(500)]
    samples = []
    profile_samples = []
    reader = Actor.system("bench")
    with Session(engine) as session:
        for type_, value in wanted:
            begun = time.perf_counter()
            person = service.person_of(session, type_, value)
            samples.append((time.perf_counter() - begun) * 1000)
            if person is None:
                raise SystemExit(f"{name}: {type_}:{value} was resolved but is not found")
        for type_, value in wanted:
            begun = time.perf_counter()
            profiles.read_profile(session, f"{type_}:{value}", reader)
            profile_samples.append((time.perf_counter() - begun) * 1000)
        persons = session.execute(
            text("SELECT count(*) FROM identity_persons WHERE merged_into IS NULL")
        ).scalar_one()
    engine.dispose()
    samples.sort()
    profile_samples.sort()
    return {
        "engine": name,
        "messages": len(batch),
        "seconds": round(seconds, 2),
        "messages_per_second": round(len(batch) / seconds, 1),
        "messages_per_cpu_second": round(len(batch) / cpu_seconds, 1),
        "merges": merges,
        "rejected": rejected,
        "persons": int(persons),
        "read_p50_ms": round(statistics.median(samples), 3),
        "read_p95_ms": round(samples[int(len(samples) * 0.95) - 1], 3),
        "profile_p50_ms": round(statistics.median(profile_samples), 3),
        "profile_p95_ms": round(profile_samples[int(len(profile_samples) * 0.95) - 1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--persons",
        type=int,
        default=1_000_000,
        help="persons in the store for the reads (bulk-added after the resolved messages)",
    )
    args = parser.parse_args()
    batch = messages(args.visitors, args.seed)
    batched_stores = dict(_stores(args.engine, "-batched"))
    for name, url in _stores(args.engine):
        extra = max(0, args.persons - args.visitors)
        figures = measure(name, url, batch, args.seed, extra)
        batched = measure_batched(batched_stores[name], batch)
        ratio = batched["messages_per_cpu_second"] / figures["messages_per_cpu_second"]
        print(
            f"{name}: {figures['messages']:,} messages one by one in {figures['seconds']} s = "
            f"{figures['messages_per_second']:,} messages/s "
            f"({figures['messages_per_cpu_second']:,} per CPU second); in groups of {GROUP:,} "
            f"(resolve_many): {batched['messages_per_second']:,} messages/s "
            f"({batched['messages_per_cpu_second']:,} per CPU second, {ratio:.1f}x; budget "
            f"{BUDGET_EVENTS_PER_SECOND:,} events/s); {figures['merges']:,} merges, "
            f"{figures['rejected']:,} refused; {figures['persons']:,} persons; person by "
            f"identifier p50 {figures['read_p50_ms']} ms, p95 {figures['read_p95_ms']} ms; "
            f"profile by identifier p50 {figures['profile_p50_ms']} ms, p95 "
            f"{figures['profile_p95_ms']} ms (budget p95 ≤ {BUDGET_READ_P95_MS} ms)"
        )


if __name__ == "__main__":
    main()
