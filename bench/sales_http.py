"""Sales reads through the HTTP API at 1M contacts, 300,000 deals and 5,000,000 activities.

Serves the benchmark store (``bench.load_crm`` plus ``bench.load_sales``) with uvicorn on
127.0.0.1 and drives it from a separate process (``bench.loadgen``), 8 concurrent clients:

* ``noop``: ``GET /healthz``, the baseline of the same run;
* ``timeline``: the first page of a record's timeline, for contacts, companies (which merge
  their contacts' and deals' activities) and deals;
* ``kanban``: a pipeline's board, the first 50 deals of each stage;
* ``my_day``: a sales rep's day (overdue, today, upcoming, deals needing a next step).

Budget: p95 ≤ 50 ms for each. Then, one request at a time, the quarter's forecast and sales
figures (win rate, deal size, cycle length, stage conversion): budget ≤ 500 ms each.

    python -m bench.sales_http [--engine sqlite|postgresql|both] [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import time
from typing import Any

from sqlalchemy import text

from bench.http_api import Server, _drive
from bench.load_crm import OUT, SECRET, Store, postgres_store, sqlite_store
from bench.load_sales import NOW, load_sales
from ichigen.auth import service as auth_service
from ichigen.auth.schemas import TokenCreate
from ichigen.core.audit import Actor
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.demo.service import DEMO_ADMIN_EMAIL

BUDGET_P95_MS = 50.0
BUDGET_REPORT_MS = 500.0
WORKLOADS = ("noop", "timeline", "kanban", "my_day")
QUARTER = f"{NOW.year}-Q{(NOW.month - 1) // 3 + 1}"
QUARTER_FROM = f"{NOW.year}-{((NOW.month - 1) // 3) * 3 + 1:02d}-01"


def _tokens(url: str) -> tuple[str, str, int]:
    """A read token of the demo admin, and one of the sales rep with the most open tasks."""
    database = Database(create_db_engine(url), Settings(database_url=url, secret_key=SECRET))
    try:
        with database.sessionmaker() as session:
            admin = auth_service.find_user_by_email(session, DEMO_ADMIN_EMAIL)
            if admin is None:
                raise SystemExit("the benchmark store has no demo admin; rebuild it")
            rep_id = session.execute(
                text(
                    "SELECT t.assignee_id FROM tasks t JOIN users u ON u.id = t.assignee_id "
                    "WHERE t.status = 'open' AND u.role = 'sales' "
                    "GROUP BY t.assignee_id ORDER BY count(*) DESC LIMIT 1"
                )
            ).scalar_one()
            tokens = []
            for user_id in (admin.id, int(rep_id)):
                created = auth_service.create_token(
                    session,
                    user_id,
                    TokenCreate(name="bench sales_http", scope="read"),
                    Actor.system("bench"),
                )
                tokens.append(created.token)
            return tokens[0], tokens[1], int(rep_id)
    finally:
        database.dispose()


def _paths(url: str, seed: int) -> dict[str, list[str]]:
    rnd = random.Random(seed)
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            top = {
                table: int(conn.execute(text(f"SELECT max(id) FROM {table}")).scalar_one())
                for table in ("contacts", "companies", "deals")
            }
            low = {
                table: int(conn.execute(text(f"SELECT min(id) FROM {table}")).scalar_one())
                for table in ("contacts", "companies", "deals")
            }
            pipelines = [int(r[0]) for r in conn.execute(text("SELECT id FROM pipelines"))]
    finally:
        engine.dispose()
    timeline = []
    for _ in range(3000):
        kind = rnd.choice(("contact", "company", "deal"))
        table = {"contact": "contacts", "company": "companies", "deal": "deals"}[kind]
        timeline.append(f"/api/v1/timeline/{kind}/{rnd.randint(low[table], top[table])}")
    return {
        "noop": ["/healthz"],
        "timeline": timeline,
        "kanban": [f"/api/v1/pipelines/{p}/board" for p in pipelines],
        "my_day": ["/api/v1/my-day"],
    }


def _one_at_a_time(port: int, token: str, path: str, times: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples = []
    try:
        for _ in range(times):
            started = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            body = response.read()
            samples.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"{path}: {response.status} {body[:500]!r}")
    finally:
        conn.close()
    samples.sort()
    return {
        "path": path,
        "median_ms": round(statistics.median(samples), 1),
        "max_ms": round(samples[-1], 1),
        "within_budget": statistics.median(samples) <= BUDGET_REPORT_MS,
    }


def measure(
    store: Store, *, rounds: int, seconds: float, concurrency: int, workers: int = 1
) -> dict[str, Any]:
    """Rounds of every workload against one store; medians per workload, and the reports."""
    admin_token, rep_token, rep_id = _tokens(store.url)
    paths = _paths(store.url, seed=5)
    token_of = {w: (rep_token if w == "my_day" else admin_token) for w in WORKLOADS}
    server = Server(store.url, workers)
    raw: dict[str, list[dict[str, Any]]] = {w: [] for w in WORKLOADS}
    try:
        for workload in WORKLOADS:
            _drive(server.port, token_of[workload], paths[workload], 2.0, concurrency)
        for round_no in range(1, rounds + 1):
            for workload in WORKLOADS:
                result = _drive(
                    server.port, token_of[workload], paths[workload], seconds, concurrency
                )
                bad = {k: v for k, v in result["statuses"].items() if k != "200"}
                if bad or result["failures"]:
                    raise SystemExit(f"{workload}: unexpected responses {bad} {result}")
                raw[workload].append(result)
                print(
                    f"  [{store.engine}] round {round_no} {workload:<8} "
                    f"p50 {result['p50_ms']:6.1f} ms  p95 {result['p95_ms']:6.1f} ms  "
                    f"p99 {result['p99_ms']:6.1f} ms  {result['rps']:8.1f} req/s"
                )
        reports = [
            _one_at_a_time(server.port, admin_token, f"/api/v1/forecast?period={QUARTER}", 7),
            _one_at_a_time(
                server.port, admin_token, f"/api/v1/forecast?period={QUARTER}&group=team", 7
            ),
            _one_at_a_time(
                server.port,
                admin_token,
                f"/api/v1/sales-metrics?from={QUARTER_FROM}&to={NOW.date().isoformat()}",
                7,
            ),
            _one_at_a_time(
                server.port, admin_token, f"/api/v1/dashboard/charts?period={QUARTER}", 7
            ),
        ]
        for report in reports:
            print(
                f"  [{store.engine}] {report['path']}: median {report['median_ms']} ms, "
                f"max {report['max_ms']} ms"
            )
    finally:
        server.stop()
    summary: dict[str, Any] = {"engine": store.engine, "workloads": {}, "reports": reports}
    for workload in WORKLOADS:
        runs = raw[workload]
        summary["workloads"][workload] = {
            key: round(statistics.median(r[key] for r in runs), 2)
            for key in ("p50_ms", "p95_ms", "p99_ms", "rps")
        }
    base = summary["workloads"]["noop"]["rps"]
    for workload in WORKLOADS:
        figures = summary["workloads"][workload]
        figures["rps_vs_noop"] = round(figures["rps"] / base, 3) if base else None
        figures["within_budget"] = workload == "noop" or figures["p95_ms"] <= BUDGET_P95_MS
    summary["rep_id"] = rep_id
    summary["settings"] = {
        "rounds": rounds,
        "seconds": seconds,
        "concurrency": concurrency,
        "workers": workers,
    }
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    settings = summary["settings"]
    print(
        f"\n{summary['engine']}: {settings['concurrency']} clients, "
        f"{settings.get('workers', 1)} server worker(s), median of "
        f"{settings['rounds']} rounds of {settings['seconds']} s"
    )
    print(f"{'workload':<9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>9} {'vs noop':>8}")
    for workload, f in summary["workloads"].items():
        verdict = "" if workload == "noop" else ("  ok" if f["within_budget"] else "  OVER BUDGET")
        print(
            f"{workload:<9} {f['p50_ms']:8.1f} {f['p95_ms']:8.1f} {f['p99_ms']:8.1f} "
            f"{f['rps']:9.1f} {f['rps_vs_noop']:8.3f}{verdict}"
        )
    for report in summary["reports"]:
        verdict = "ok" if report["within_budget"] else "OVER BUDGET"
        print(
            f"{report['path']}: median {report['median_ms']} ms (max {report['max_ms']} ms) "
            f"{verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = parser.parse_args()
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    for engine in engines:
        store = sqlite_store() if engine == "sqlite" else postgres_store()
        load_sales(store)
        summary = measure(
            store,
            rounds=args.rounds,
            seconds=args.seconds,
            concurrency=args.concurrency,
            workers=args.workers,
        )
        OUT.mkdir(parents=True, exist_ok=True)
        name = f"sales_http-{engine}-c{args.concurrency}-w{args.workers}.json"
        (OUT / name).write_text(json.dumps(summary, indent=2))
        print_summary(summary)


if __name__ == "__main__":
    main()
