"""CSV import throughput of deals and activities, through the product's import path.

Builds a fresh store (SQLite file, or a PostgreSQL database ``ichigen_bench_sales_import``)
with 10 reps, a HubSpot-like pipeline, lost reasons, companies and contacts; writes a HubSpot
deals export of ``--rows`` deals (open ones closing later, won and lost ones closed in the
past, so half the rows take the service's create-then-move path) and a HubSpot calls export of
as many activities, each linked to a contact, a company and a deal; then times
``import_deals`` (new deals), ``import_deals`` again (every row unchanged) and
``import_activities``. Every row goes through the services: stage rules, stage history, board
totals and the audit log.

    python -m bench.sales_import [--rows 10000] [--engine sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserCreate
from ichigen.core import migrate
from ichigen.core.audit import Actor
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.crm.activities.imports import import_activities
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.imports import import_deals
from ichigen.crm.deals.schemas import LostReasonCreate, PipelineCreate, StageIn

OUT = Path(__file__).resolve().parent / "out"
POSTGRES_ADMIN_URL = os.environ.get(
    "ICHIGEN_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SECRET = "bench-secret-key-0123456789abcdef"
STAGES: tuple[tuple[str, int, str, list[str]], ...] = (
    ("Appointment Scheduled", 20, "open", []),
    ("Qualified To Buy", 40, "open", []),
    ("Presentation Scheduled", 60, "open", []),
    ("Decision Maker Bought-In", 80, "open", ["amount"]),
    ("Contract Sent", 90, "open", ["amount", "expected_close_date"]),
    ("Closed Won", 100, "won", ["amount"]),
    ("Closed Lost", 0, "lost", []),
)
REASONS = ("Price", "Timing", "Competitor", "No budget")
DEAL_HEADER = (
    "Record ID,Deal Name,Pipeline,Deal Stage,Amount,Deal currency code,Close Date,Create Date,"
    "Deal owner,Associated Company,Associated Contact,Deal Type,Closed lost reason"
)
CALL_HEADER = (
    "Record ID,Activity date,Call title,Call notes,Call direction,Call duration,Call outcome,"
    "Activity assigned to,Associated contact email,Associated company,Associated deal"
)


def _store(engine: str) -> Database:
    """A fresh, migrated store on one engine."""
    OUT.mkdir(parents=True, exist_ok=True)
    if engine == "sqlite":
        path = OUT / "sales-import.db"
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        admin = create_db_engine(POSTGRES_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "ichigen_bench_sales_import" WITH (FORCE)'))
            conn.execute(text('CREATE DATABASE "ichigen_bench_sales_import"'))
        admin.dispose()
        url = (
            make_url(POSTGRES_ADMIN_URL)
            .set(database="ichigen_bench_sales_import")
            .render_as_string(hide_password=False)
        )
    database = Database(
        create_db_engine(url), Settings(data_dir=OUT, database_url=url, secret_key=SECRET)
    )
    migrate.upgrade(database.engine)
    return database


def _set_up(database: Database, rows: int, rng: random.Random) -> tuple[Actor, dict[str, Any]]:
    """Reps, the pipeline, lost reasons, companies and contacts; what the files will name."""
    with database.sessionmaker() as session:
        admin = auth_service.actor_for(
            auth_service.create_user(
                session,
                UserCreate.model_validate(
                    {"email": "admin@example.com", "name": "Admin", "role": "admin"}
                ),
                Actor.system("bench"),
            )
        )
        reps = []
        for i in range(10):
            made = auth_service.create_user(
                session,
                UserCreate.model_validate(
                    {"email": f"rep{i}@example.com", "name": f"Rep {i}", "role": "sales"}
                ),
                admin,
            )
            reps.append(made.email)
        deals.create_pipeline(
            session,
            PipelineCreate(
                name="Sales Pipeline",
                is_default=True,
                stages=[
                    StageIn.model_validate(
                        {"name": n, "probability": p, "kind": k, "required_fields": r}
                    )
                    for n, p, k, r in STAGES
                ],
            ),
            admin,
        )
        for reason in REASONS:
            deals.create_lost_reason(session, LostReasonCreate(name=reason), admin)
        company_count = max(10, rows // 50)
        names = [f"Company {i:05d} KK" for i in range(company_count)]
        companies.ensure_companies_by_name(session, names, admin)
        session.commit()
        emails = [f"person{i:06d}@company{i % company_count:05d}.example" for i in range(rows // 5)]
        records = [
            {"first_name": f"Person {i}", "last_name": "Test", "email": email}
            for i, email in enumerate(emails)
        ]
        for start in range(0, len(records), 1000):
            contacts.write_contacts(session, records[start : start + 1000], admin, mode="create")
    return admin, {"reps": reps, "companies": names, "emails": emails, "rng": rng}


def _deals_csv(rows: int, world: dict[str, Any]) -> bytes:
    rng: random.Random = world["rng"]
    out = io.StringIO()
    out.write(DEAL_HEADER + "\n")
    writer = csv.writer(out, lineterminator="\n")
    today = date(2026, 11, 1)
    for i in range(rows):
        created = today - timedelta(days=rng.randint(30, 400))
        roll = rng.random()
        if roll < 0.25:
            stage, close = "Closed Won", created + timedelta(days=rng.randint(5, 25))
        elif roll < 0.4:
            stage, close = "Closed Lost", created + timedelta(days=rng.randint(5, 25))
        else:
            stage = STAGES[rng.randint(0, 4)][0]
            close = today + timedelta(days=rng.randint(30, 300))
        company = rng.randrange(len(world["companies"]))
        writer.writerow(
            [
                f"HS{i:07d}",
                f"Deal {i} for {world['companies'][company]}",
                "Sales Pipeline",
                stage,
                f"¥{rng.randint(1, 500) * 10_000:,}",
                "JPY",
                close.isoformat(),
                f"{created.isoformat()} 10:00",
                rng.choice(world["reps"]),
                world["companies"][company],
                rng.choice(world["emails"]),
                rng.choice(("newbusiness", "existingbusiness")),
                rng.choice(REASONS) if stage == "Closed Lost" else "",
            ]
        )
    return out.getvalue().encode()


def _calls_csv(rows: int, deal_rows: int, world: dict[str, Any]) -> bytes:
    rng: random.Random = world["rng"]
    out = io.StringIO()
    out.write(CALL_HEADER + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for i in range(rows):
        writer.writerow(
            [
                f"C{i:07d}",
                f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d} {rng.randint(9, 18)}:00",
                f"Call {i}",
                "Talked about the proposal.",
                rng.choice(("Outbound", "Inbound")),
                str(rng.randint(30, 1800)),
                rng.choice(("Connected", "No answer", "Left voicemail", "Busy")),
                rng.choice(world["reps"]),
                rng.choice(world["emails"]),
                rng.choice(world["companies"]),
                f"HS{rng.randrange(deal_rows):07d}",
            ]
        )
    return out.getvalue().encode()


def _timed(what: str, rows: int, run: Any) -> dict[str, Any]:
    """Run an import; its wall-clock rate, and its rate per second of this process's CPU
    time (the machines are shared: the second tells how fast the code is when the first is
    held back by other work)."""
    started, cpu = time.perf_counter(), time.process_time()
    report = run()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    if report.failed:
        print(f"    {report.failed} rows failed; first: {report.errors[:3]}")
    result = {
        "rows": rows,
        "created": report.created,
        "unchanged": report.unchanged,
        "failed": report.failed,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "rows_per_second": round(rows / seconds, 1),
        "rows_per_cpu_second": round(rows / cpu_seconds, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }
    print(
        f"  {what}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s "
        f"({rows / cpu_seconds:,.0f} rows per CPU second; load {result['load_average']})"
    )
    return result


def measure(engine: str, rows: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    database = _store(engine)
    try:
        admin, world = _set_up(database, rows, rng)
        deal_file = _deals_csv(rows, world)
        call_file = _calls_csv(rows, rows, world)
        results: dict[str, Any] = {}
        with database.sessionmaker() as session:
            results["deals_new"] = _timed(
                "deals, new", rows, lambda: import_deals(session, deal_file, admin)
            )
        with database.sessionmaker() as session:
            results["deals_unchanged"] = _timed(
                "deals, again", rows, lambda: import_deals(session, deal_file, admin)
            )
        with database.sessionmaker() as session:
            results["activities_new"] = _timed(
                "calls, new",
                rows,
                lambda: import_activities(session, call_file, admin, time_zone="Asia/Tokyo"),
            )
        return results
    finally:
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    summary = {}
    for engine in engines:
        print(f"{engine}:")
        summary[engine] = measure(engine, args.rows, args.seed)
    (OUT / "sales_import.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
