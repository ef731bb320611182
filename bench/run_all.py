"""Every benchmark of the issues' budgets, then one summary table (``make bench``).

1. ``bench.load_crm``: the 1M-contact stores on SQLite and PostgreSQL (built once, then reused);
2. ``bench.http_api``: list, quick search and get-by-id through the HTTP API, 8 clients,
   against the no-op baseline, on both engines;
3. ``bench.csv_import``: contacts CSV import throughput on SQLite;
4. ``bench.ingest`` and ``bench.event_lookup``: durable event ingest through ``/v1/batch``
   against the same endpoint with the store skipped, and one person's events out of 100M;
5. ``bench.sales_http`` (1 and 8 clients) and ``bench.sales_import``: timeline, kanban, My day,
   forecast and sales figures with 300,000 deals and 5,000,000 activities added to the stores
   by ``bench.load_sales``, and deal and activity import throughput;
6. ``bench.dedupe_febrl``: duplicate-detection precision, recall and F1 on FEBRL3 and FEBRL4;
   ``bench.identity_resolve``: identity resolution per message, and a person read by identifier.
   ``bench.identity_rebuild``: the identity graph rebuilt from 10M links over 3M profiles.

    python -m bench.run_all [--quick] [--skip-postgres] [--skip-crm | --skip-collect]
                            [--skip-sales] [--skip-identity]

``--quick`` shortens the runs (3 rounds of 3 s, import runs of 20,000 rows and no 1M run) for
a first look; the budgets are judged on the full runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bench import csv_import, http_api
from bench.load_crm import POSTGRES_ADMIN_URL, postgres_store, sqlite_store
from ichigen.core.db import create_db_engine

HTTP_BUDGET_MS = http_api.BUDGET_P95_MS
IMPORT_BUDGET = csv_import.BUDGET_ROWS_PER_SECOND


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def summary_table(http: list[dict[str, Any]], imports: dict[str, Any] | None) -> str:
    """The figures as a plain-text table (medians; ratios to the same run's no-op rate)."""
    header = ["measure", "p50 ms", "p95 ms", "p99 ms", "req/s", "vs no-op", "budget", "verdict"]
    rows: list[list[str]] = []
    for summary in http:
        workers = summary["settings"]["workers"]
        engine = f"{summary['engine']} w{workers}"
        for workload, f in summary["workloads"].items():
            budget = "-" if workload == "noop" else f"p95<={HTTP_BUDGET_MS:.0f}ms"
            verdict = "-" if workload == "noop" else ("ok" if f["within_budget"] else "OVER")
            rows.append(
                [
                    f"{engine} {workload}",
                    f"{f['p50_ms']:.1f}",
                    f"{f['p95_ms']:.1f}",
                    f"{f['p99_ms']:.1f}",
                    f"{f['rps']:.0f}",
                    f"{f['rps_vs_noop']:.3f}",
                    budget,
                    verdict,
                ]
            )
    if imports is not None:
        runs = [("median", imports["small_median_rows_per_second"], imports["small_rows"])]
        if "full" in imports:
            runs.append(("full", imports["full"]["rows_per_second"], imports["full"]["rows"]))
        for label, rate, count in runs:
            rows.append(
                [
                    f"sqlite csv import {label} ({count:,} rows)",
                    "-",
                    "-",
                    "-",
                    f"{rate:,.0f} rows/s",
                    "-",
                    f">={IMPORT_BUDGET:,} rows/s",
                    "ok" if rate >= IMPORT_BUDGET else "UNDER",
                ]
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in rows]
    return "\n".join(lines)


def _postgres_reachable() -> bool:
    engine = create_db_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError as exc:
        print(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable, skipped: {exc.orig}")
        return False
    finally:
        engine.dispose()


def run_module(module: str, *args: str, title: str | None = None) -> None:
    """Run one benchmark module in its own process (it prints its own figures)."""
    print(f"\n== {title or module}", flush=True)
    subprocess.run([sys.executable, "-m", module, *args], check=True)


def collect_benchmarks(quick: bool) -> None:
    """Durable ingest through /v1/batch, and one person's events out of 100M (issue budgets)."""
    ingest = ["--rounds", "1", "--seconds", "20", "--baseline-seconds", "10"] if quick else []
    lookup = ["--events", "10000000", "--rounds", "1"] if quick else []
    run_module("bench.ingest", *ingest)
    run_module("bench.event_lookup", *lookup)


def sales_benchmarks(quick: bool, engines: list[str]) -> None:
    """Timeline, kanban, My day, forecast and sales figures at 300,000 deals and 5,000,000
    activities (the sales issue's budgets), and deal and activity import throughput."""
    rounds = ["--rounds", "1", "--seconds", "3"] if quick else []
    for engine in engines:
        for clients in ("1", "8"):
            run_module(
                "bench.sales_http",
                *("--engine", engine, "--concurrency", clients, *rounds),
                title=f"bench.sales_http on {engine}, {clients} client(s)",
            )
    run_module("bench.sales_import", *(["--rows", "1000"] if quick else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a first look")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-crm", action="store_true", help="only the collect benchmarks")
    parser.add_argument("--skip-collect", action="store_true")
    parser.add_argument("--skip-sales", action="store_true")
    parser.add_argument("--skip-identity", action="store_true")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="server worker processes to measure with, comma-separated (default 1,2)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    rounds, seconds = (3, 3.0) if args.quick else (5, 5.0)

    if not args.skip_identity:
        run_module("bench.dedupe_febrl")
        run_module("bench.identity_resolve")
        run_module("bench.identity_rebuild", *(["--runs", "1"] if args.quick else []))
    if not args.skip_collect:
        collect_benchmarks(args.quick)
    if args.skip_crm:
        return
    print("== record stores (built once, then reused)")
    stores = [sqlite_store()]
    if not args.skip_postgres and _postgres_reachable():
        stores.append(postgres_store())
    for store in stores:
        print(f"{store.engine}: {store.contacts:,} contacts, {store.companies:,} companies")

    http: list[dict[str, Any]] = []
    for store in stores:
        for workers in (int(w) for w in args.workers.split(",")):
            print(f"\n== HTTP API on {store.engine}, {workers} server worker(s)")
            summary = http_api.measure(
                store, rounds=rounds, seconds=seconds, concurrency=8, workers=workers, seed=7
            )
            http_api.save(summary)
            http_api.print_summary(summary)
            http.append(summary)

    imports = None
    if not args.skip_import:
        print("\n== CSV import on SQLite")
        imports = (
            csv_import.measure(1_000_000, 20_000, 3, full=False, seed=42)
            if args.quick
            else csv_import.measure(1_000_000, 100_000, 3, full=True, seed=42)
        )
        csv_import.save(imports)
        csv_import.print_summary(imports)

    if not args.skip_sales:
        sales_benchmarks(args.quick, [store.engine for store in stores])

    print(f"\n== Summary (medians; total {time.perf_counter() - started:,.0f} s)")
    print(summary_table(http, imports))


if __name__ == "__main__":
    main()
