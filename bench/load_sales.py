"""Add the sales benchmark's data to the 1M-contact stores of ``bench.load_crm``.

On top of 1,000,000 contacts and 100,000 companies: two pipelines, 300,000 deals spread over
their stages with a stage history, up to three contacts per deal, 5,000,000 activities (notes,
calls, e-mails, meetings) linked to a contact, its company and often a deal, 200,000 tasks and a
year of exchange rates and quotas. Rows are generated here and written in bulk (COPY on
PostgreSQL, prepared inserts on SQLite) in the shape the sales services write; loading five
million activities one service call at a time would take hours and measure nothing we serve.

A marker table ``bench_sales_meta`` says the sales data is complete; a store that has it is
reused as is.

    python -m bench.load_sales [--engine sqlite|postgresql|both] [--deals 300000]
        [--activities 5000000] [--tasks 200000]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Table, insert, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from bench.load_crm import Store, postgres_store, sqlite_store
from ichigen.core.db import Base, create_db_engine
from ichigen.core.models_registry import import_all_models
from ichigen.crm.activities import service as activities_service
from ichigen.crm.activities.models import Activity, ActivityLink
from ichigen.crm.deals import service as deals_service
from ichigen.crm.deals.models import (
    Deal,
    DealContact,
    DealStageChange,
    ExchangeRate,
    LostReason,
    Pipeline,
    Quota,
    Stage,
)
from ichigen.crm.tasks.models import Task

SEED = 11
SALES_VERSION = 1
#: "Now" of the generated data: fixed, so that runs on different days build the same store.
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CHUNK = 20_000

#: (name, probability, kind) per stage.
PIPELINES: dict[str, list[tuple[str, int, str]]] = {
    "New business": [
        ("Lead in", 10, "open"),
        ("Qualified", 20, "open"),
        ("Meeting booked", 40, "open"),
        ("Proposal", 60, "open"),
        ("Negotiation", 80, "open"),
        ("Won", 100, "won"),
        ("Lost", 0, "lost"),
    ],
    "Renewals": [
        ("Up for renewal", 50, "open"),
        ("Quote sent", 75, "open"),
        ("Renewed", 100, "won"),
        ("Churned", 0, "lost"),
    ],
}
LOST_REASONS = ["Price", "Chose a competitor", "No budget", "No decision", "Timing"]
CURRENCIES = [("JPY", 0.80), ("USD", 0.15), ("EUR", 0.05)]
#: Units of JPY per unit on the first day of the year; drifts a little each day.
RATES = {"USD": 150.0, "EUR": 162.0}
KINDS = [("call", 0.35), ("email", 0.30), ("note", 0.20), ("meeting", 0.15)]
OUTCOMES = ["connected", "left_voicemail", "no_answer", "busy"]


@dataclass
class Ids:
    """The records the sales data hangs on."""

    users: list[int]
    reps: list[int]
    teams: list[int]
    companies: list[int]
    contact_company: list[tuple[int, int | None]]
    next_id: dict[str, int]


def _weighted(rng: random.Random, options: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _existing(conn: Connection) -> Ids:
    users = [int(r[0]) for r in conn.execute(text("SELECT id FROM users ORDER BY id"))]
    reps = [
        int(r[0])
        for r in conn.execute(
            text("SELECT id FROM users WHERE role IN ('sales', 'manager') ORDER BY id")
        )
    ]
    teams = [int(r[0]) for r in conn.execute(text("SELECT id FROM teams ORDER BY id"))]
    companies = [int(r[0]) for r in conn.execute(text("SELECT id FROM companies ORDER BY id"))]
    contact_company = [
        (int(r[0]), None if r[1] is None else int(r[1]))
        for r in conn.execute(text("SELECT id, company_id FROM contacts ORDER BY id"))
    ]
    next_id: dict[str, int] = {}
    for table in ("pipelines", "stages", "deals", "activities", "tasks"):
        top = conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one()
        next_id[table] = int(top) + 1
    return Ids(users, reps, teams, companies, contact_company, next_id)


class Writer:
    """Bulk writes of generated rows, by engine: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def write(self, table: Table, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> int:
        # Columns this generator does not know (added since) get their model default.
        extra = {
            c.name: c.default.arg  # type: ignore[attr-defined]
            for c in table.columns
            if c.name not in columns
            and not c.nullable
            and not c.primary_key
            and c.default is not None
            and not callable(c.default.arg)  # type: ignore[attr-defined]
        }
        if extra:
            columns = (*columns, *extra)
            tail = tuple(extra.values())
            rows = (row + tail for row in rows)
        count = 0
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if self.dialect == "postgresql":
                cols = ", ".join(columns)
                with cursor.copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(tuple(self._pg(v) for v in row))
                        count += 1
            else:
                marks = ", ".join("?" for _ in columns)
                sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
                batch: list[tuple[Any, ...]] = []
                for row in rows:
                    batch.append(tuple(self._sqlite(v) for v in row))
                    if len(batch) >= CHUNK:
                        cursor.executemany(sql, batch)
                        count += len(batch)
                        batch.clear()
                if batch:
                    cursor.executemany(sql, batch)
                    count += len(batch)
            raw.commit()
        finally:
            raw.close()
        return count

    @staticmethod
    def _pg(value: Any) -> Any:
        if isinstance(value, (dict, list)):
            return orjson.dumps(value).decode()
        return value

    @staticmethod
    def _sqlite(value: Any) -> Any:
        # The formats SQLAlchemy's SQLite types store: naive UTC text, ISO dates, JSON text.
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return float(value)
        if isinstance(value, (dict, list)):
            return orjson.dumps(value).decode()
        return value


def _reference_data(conn: Connection, ids: Ids) -> dict[str, list[tuple[int, int, str, int]]]:
    """Pipelines, stages, lost reasons, rates and quotas; returns stages per pipeline."""
    stages_by_pipeline: dict[str, list[tuple[int, int, str, int]]] = {}
    pipeline_id, stage_id = ids.next_id["pipelines"], ids.next_id["stages"]
    for position, (name, stages) in enumerate(PIPELINES.items()):
        conn.execute(
            insert(Pipeline),
            {
                "id": pipeline_id,
                "name": name,
                "position": position,
                "is_default": position == 0,
                "archived": False,
                "version": 1,
                "created_at": NOW - timedelta(days=800),
                "updated_at": NOW - timedelta(days=800),
            },
        )
        listed = []
        for stage_position, (stage_name, probability, kind) in enumerate(stages):
            conn.execute(
                insert(Stage),
                {
                    "id": stage_id,
                    "pipeline_id": pipeline_id,
                    "name": stage_name,
                    "position": stage_position,
                    "probability": probability,
                    "kind": kind,
                    "required_fields": ["amount"] if probability >= 60 else [],
                    "rotting_days": 30 if kind == "open" else None,
                    "version": 1,
                    "created_at": NOW - timedelta(days=800),
                    "updated_at": NOW - timedelta(days=800),
                },
            )
            listed.append((stage_id, probability, kind, pipeline_id))
            stage_id += 1
        stages_by_pipeline[name] = listed
        pipeline_id += 1
    for position, reason in enumerate(LOST_REASONS):
        conn.execute(
            insert(LostReason),
            {"name": reason, "position": position, "active": True, "created_at": NOW},
        )
    rng = random.Random(SEED)
    rates = []
    for currency, start in RATES.items():
        value = start
        day = date(NOW.year - 2, 1, 1)
        while day <= NOW.date():
            value *= 1 + rng.uniform(-0.004, 0.004)
            rates.append(
                {
                    "base_currency": "JPY",
                    "currency": currency,
                    "rate_date": day,
                    "rate": Decimal(f"{value:.4f}"),
                    "created_at": NOW,
                }
            )
            day += timedelta(days=1)
    conn.execute(insert(ExchangeRate), rates)
    quotas = []
    for year in (NOW.year - 1, NOW.year):
        for quarter in range(4):
            quarter_start = date(year, quarter * 3 + 1, 1)
            for user in ids.reps:
                quotas.append(
                    {
                        "user_id": user,
                        "team_id": None,
                        "period_kind": "quarter",
                        "period_start": quarter_start,
                        "amount": Decimal(rng.randrange(30, 90) * 1_000_000),
                        "currency": "JPY",
                        "version": 1,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                )
    conn.execute(insert(Quota), quotas)
    return stages_by_pipeline


def _deals(
    ids: Ids, stages_by_pipeline: dict[str, list[tuple[int, int, str, int]]], count: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], list[int]]:
    """Deal rows, deal-contact rows, stage-change rows, and each deal's company."""
    rng = random.Random(SEED + 1)
    deal_rows: list[tuple[Any, ...]] = []
    contact_rows: list[tuple[Any, ...]] = []
    change_rows: list[tuple[Any, ...]] = []
    deal_company: list[int] = []
    deal_id = ids.next_id["deals"]
    contacts = ids.contact_company
    names = list(PIPELINES)
    for n in range(count):
        pipeline = names[0] if rng.random() < 0.8 else names[1]
        stages = stages_by_pipeline[pipeline]
        open_stages = [s for s in stages if s[2] == "open"]
        roll = rng.random()
        if roll < 0.6:
            target = rng.randrange(len(open_stages))
            stage = open_stages[target]
            path = open_stages[: target + 1]
        else:
            won = roll < 0.85
            stage = next(s for s in stages if s[2] == ("won" if won else "lost"))
            reached = rng.randrange(1, len(open_stages) + 1) if not won else len(open_stages)
            path = [*open_stages[:reached], stage]
        created = NOW - timedelta(days=rng.uniform(0, 720))
        contact_id, company_id = contacts[rng.randrange(len(contacts))]
        if company_id is None:
            company_id = ids.companies[rng.randrange(len(ids.companies))]
        owner = ids.reps[rng.randrange(len(ids.reps))]
        currency = _weighted(rng, CURRENCIES)
        amount = Decimal(rng.randrange(5, 500) * (10_000 if currency == "JPY" else 100))
        step = timedelta(days=rng.uniform(2, 25))
        moments = [created + step * i for i in range(len(path))]
        entered = moments[-1]
        status = stage[2]
        closed_at = entered if status != "open" else None
        expected = (
            closed_at.date() if closed_at else (NOW + timedelta(days=rng.uniform(-20, 200))).date()
        )
        lost_reason = None
        deal_rows.append(
            (
                deal_id,
                None,
                f"Deal {n + 1:06d}",
                f"deal {n + 1:06d}",
                amount,
                currency,
                stage[3],
                stage[0],
                status,
                float(n % 1000),
                owner,
                company_id,
                expected,
                closed_at,
                lost_reason,
                "",
                None,
                None,
                "Send the proposal" if rng.random() < 0.7 else "",
                (NOW + timedelta(days=rng.uniform(-10, 20))).date() if rng.random() < 0.7 else None,
                entered,
                None,
                [],
                {},
                1,
                created,
                entered,
            )
        )
        deal_company.append(company_id)
        contact_rows.append((deal_id, contact_id, "decision_maker"))
        for extra in range(rng.randrange(0, 3)):
            other = contacts[rng.randrange(len(contacts))][0]
            if other != contact_id:
                contact_rows.append((deal_id, other, "influencer" if extra else "champion"))
        previous = None
        for moment, (sid, _, _, pid) in zip(moments, path, strict=True):
            change_rows.append((deal_id, pid, previous, sid, owner, moment))
            previous = sid
        deal_id += 1
    # One deal may pick the same extra contact twice; keep the first (deal, contact) pair.
    seen: set[tuple[int, int]] = set()
    unique: list[tuple[Any, ...]] = []
    for row in contact_rows:
        if (row[0], row[1]) not in seen:
            seen.add((row[0], row[1]))
            unique.append(row)
    return deal_rows, unique, change_rows, deal_company


DEAL_COLUMNS = (
    "id",
    "external_id",
    "name",
    "name_folded",
    "amount",
    "currency",
    "pipeline_id",
    "stage_id",
    "status",
    "board_position",
    "owner_id",
    "company_id",
    "expected_close_date",
    "closed_at",
    "lost_reason_id",
    "close_note",
    "probability_override",
    "forecast_category",
    "next_step",
    "next_step_due",
    "stage_entered_at",
    "source",
    "tags",
    "custom",
    "version",
    "created_at",
    "updated_at",
)

ACTIVITY_COLUMNS = (
    "id",
    "kind",
    "subject",
    "body",
    "occurred_at",
    "direction",
    "duration_seconds",
    "outcome",
    "email_to",
    "attendees",
    "owner_id",
    "custom",
    "version",
    "created_at",
    "updated_at",
)
LINK_COLUMNS = ("activity_id", "record_type", "record_id", "kind", "occurred_at")


def _activities(
    ids: Ids, count: int, deal_ids: list[int], deal_company: list[int]
) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Each activity row with its link rows."""
    rng = random.Random(SEED + 2)
    contacts = ids.contact_company
    deal_by_company: dict[int, list[int]] = {}
    for deal_id, company in zip(deal_ids, deal_company, strict=True):
        deal_by_company.setdefault(company, []).append(deal_id)
    activity_id = ids.next_id["activities"]
    for _ in range(count):
        kind = _weighted(rng, KINDS)
        occurred = NOW - timedelta(seconds=rng.uniform(0, 720 * 86400))
        contact_id, company_id = contacts[rng.randrange(len(contacts))]
        direction = rng.choice(("inbound", "outbound")) if kind in ("call", "email") else None
        row: tuple[Any, ...] = (
            activity_id,
            kind,
            f"{kind.capitalize()} about the proposal",
            "Talked through the pricing and the next steps." if kind != "email" else "",
            occurred,
            direction,
            rng.randrange(30, 1800) if kind == "call" else None,
            rng.choice(OUTCOMES) if kind == "call" else None,
            [],
            [],
            ids.reps[rng.randrange(len(ids.reps))],
            {},
            1,
            occurred,
            occurred,
        )
        links = [(activity_id, "contact", contact_id, kind, occurred)]
        if company_id is not None:
            links.append((activity_id, "company", company_id, kind, occurred))
            company_deals = deal_by_company.get(company_id)
            if company_deals and rng.random() < 0.5:
                links.append((activity_id, "deal", rng.choice(company_deals), kind, occurred))
        yield row, links
        activity_id += 1


TASK_COLUMNS = (
    "id",
    "title",
    "description",
    "due_at",
    "all_day",
    "priority",
    "status",
    "assignee_id",
    "created_by",
    "record_type",
    "record_id",
    "remind_at",
    "reminded_at",
    "completed_at",
    "version",
    "created_at",
    "updated_at",
)


def _tasks(ids: Ids, count: int, deal_ids: list[int]) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(SEED + 3)
    task_id = ids.next_id["tasks"]
    for _ in range(count):
        due = NOW + timedelta(hours=rng.uniform(-24 * 60, 24 * 30))
        done = due < NOW and rng.random() < 0.85
        assignee = ids.reps[rng.randrange(len(ids.reps))]
        if rng.random() < 0.5:
            record_type, record_id = "deal", deal_ids[rng.randrange(len(deal_ids))]
        else:
            record_type = "contact"
            record_id = ids.contact_company[rng.randrange(len(ids.contact_company))][0]
        created = due - timedelta(days=rng.uniform(1, 20))
        yield (
            task_id,
            rng.choice(("Call back", "Send the quote", "Follow up", "Prepare the demo")),
            "",
            due,
            False,
            rng.choice(("low", "normal", "normal", "high", "urgent")),
            "done" if done else "open",
            assignee,
            assignee,
            record_type,
            record_id,
            None,
            None,
            due if done else None,
            1,
            created,
            due if done else created,
        )
        task_id += 1


def sales_tables() -> list[Table]:
    """The tables of the sales features (deals, forecasting, activities, tasks)."""
    import_all_models()
    modules = {Deal.__module__, Activity.__module__, Task.__module__}
    return [
        mapper.local_table  # type: ignore[misc]
        for mapper in Base.registry.mappers
        if mapper.class_.__module__ in modules
    ]


def _has_sales(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            exists = conn.execute(text("SELECT to_regclass('bench_sales_meta')")).scalar()
        else:
            exists = conn.execute(
                text("SELECT name FROM sqlite_master WHERE name = 'bench_sales_meta'")
            ).scalar()
        if not exists:
            return None
        doc = conn.execute(text("SELECT doc FROM bench_sales_meta")).scalar()
    found: dict[str, Any] | None = json.loads(doc) if doc else None
    return found


def load_sales(
    store: Store,
    *,
    deals: int = 300_000,
    activities: int = 5_000_000,
    tasks: int = 200_000,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Add the sales data to a built store once; returns what it holds."""
    import_all_models()
    engine = create_db_engine(store.url)
    try:
        found = _has_sales(engine)
        if found and found.get("sales_version") == SALES_VERSION and found["deals"] == deals:
            return found
        started = time.perf_counter()
        # The sales tables are made afresh from the current models (as the migrations make
        # them; `alembic check` keeps the two equal), so a store built by an older revision of
        # the sales schema is brought up to date too.
        tables = sales_tables()
        with engine.begin() as conn:
            Base.metadata.drop_all(conn, tables=tables)
            Base.metadata.create_all(conn, tables=tables)
            ids = _existing(conn)
            stages = _reference_data(conn, ids)
        writer = Writer(engine)
        deal_rows, contact_rows, change_rows, deal_company = _deals(ids, stages, deals)
        deal_ids = [r[0] for r in deal_rows]
        writer.write(Deal.__table__, DEAL_COLUMNS, deal_rows)  # type: ignore[arg-type]
        writer.write(
            DealContact.__table__,  # type: ignore[arg-type]
            ("deal_id", "contact_id", "role"),
            contact_rows,
        )
        writer.write(
            DealStageChange.__table__,  # type: ignore[arg-type]
            ("deal_id", "pipeline_id", "from_stage_id", "to_stage_id", "changed_by", "changed_at"),
            change_rows,
        )
        with Session(engine) as session:
            deals_service.rebuild_stage_totals(session)
        progress(f"  [{store.engine}] {deals:,} deals ({time.perf_counter() - started:,.0f} s)")
        written = 0
        batch_size = 250_000
        generator = _activities(ids, activities, deal_ids, deal_company)
        while written < activities:
            rows: list[tuple[Any, ...]] = []
            links: list[tuple[Any, ...]] = []
            for row, row_links in generator:
                rows.append(row)
                links.extend(row_links)
                if len(rows) >= batch_size:
                    break
            if not rows:
                break
            writer.write(Activity.__table__, ACTIVITY_COLUMNS, rows)  # type: ignore[arg-type]
            writer.write(ActivityLink.__table__, LINK_COLUMNS, links)  # type: ignore[arg-type]
            written += len(rows)
            progress(
                f"  [{store.engine}] activities {written:,}/{activities:,} "
                f"({time.perf_counter() - started:,.0f} s)"
            )
        with Session(engine) as session:
            activities_service.rebuild_activity_counts(session)
        writer.write(Task.__table__, TASK_COLUMNS, _tasks(ids, tasks, deal_ids))  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        meta = {
            "sales_version": SALES_VERSION,
            "deals": deals,
            "activities": activities,
            "tasks": tasks,
            "load_seconds": round(seconds, 1),
        }
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS bench_sales_meta (doc TEXT NOT NULL)"))
            conn.execute(text("DELETE FROM bench_sales_meta"))
            conn.execute(
                text("INSERT INTO bench_sales_meta (doc) VALUES (:doc)"), {"doc": json.dumps(meta)}
            )
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        else:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        progress(f"  [{store.engine}] sales data loaded in {seconds:,.0f} s")
        return meta
    finally:
        engine.dispose()


def finish_partial(store: Store, tasks: int = 200_000) -> dict[str, Any]:
    """Close a load that was stopped during the activities: add the tasks and the marker,
    with the counts the store really holds (the figures then say how many activities)."""
    engine = create_db_engine(store.url)
    try:
        with engine.begin() as conn:
            deal_ids = [int(r[0]) for r in conn.execute(text("SELECT id FROM deals ORDER BY id"))]
            activities = int(conn.execute(text("SELECT count(*) FROM activities")).scalar_one())
            conn.execute(text("DELETE FROM tasks"))
            ids = _existing(conn)
        with Session(engine) as session:
            activities_service.rebuild_activity_counts(session)
        Writer(engine).write(Task.__table__, TASK_COLUMNS, _tasks(ids, tasks, deal_ids))  # type: ignore[arg-type]
        meta = {
            "sales_version": SALES_VERSION,
            "deals": len(deal_ids),
            "activities": activities,
            "tasks": tasks,
            "partial": True,
        }
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS bench_sales_meta (doc TEXT NOT NULL)"))
            conn.execute(text("DELETE FROM bench_sales_meta"))
            conn.execute(
                text("INSERT INTO bench_sales_meta (doc) VALUES (:doc)"), {"doc": json.dumps(meta)}
            )
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        else:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        return meta
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--deals", type=int, default=300_000)
    parser.add_argument("--activities", type=int, default=5_000_000)
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument(
        "--finish-partial",
        action="store_true",
        help="add tasks and the marker to a load stopped during the activities",
    )
    args = parser.parse_args()
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    for engine in engines:
        store = sqlite_store() if engine == "sqlite" else postgres_store()
        if args.finish_partial:
            print(f"{engine}: {finish_partial(store, args.tasks)}")
            continue
        meta = load_sales(store, deals=args.deals, activities=args.activities, tasks=args.tasks)
        print(f"{engine}: {meta}")


if __name__ == "__main__":
    main()
