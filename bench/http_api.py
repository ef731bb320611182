"""HTTP API latency at a million contacts, on SQLite and PostgreSQL.

Serves the benchmark store (``bench.load_crm``) with ``uvicorn ichigen.web.asgi:app`` on
127.0.0.1, creates a read-only API token, and drives the server from a separate process
(``bench.loadgen``) with 8 concurrent keep-alive clients through four workloads:

* ``noop``: ``GET /healthz``, the machine's baseline for a request that does nothing;
* ``list``: contact lists with filters (lifecycle stage, owner, indexed custom fields);
* ``search``: quick search by realistic prefixes (surnames, kana, email, phone digits);
* ``get``: one contact by id.

Each round measures every workload once, in the same run, so they share the machine's mood;
the figures are the medians over the rounds. Budget: p95 ≤ 50 ms for list, search and get.

    python -m bench.http_api [--engine sqlite|postgresql|both] [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.load_crm import OUT, SECRET, Store, postgres_store, sqlite_store
from ichigen.auth import service as auth_service
from ichigen.auth.schemas import TokenCreate
from ichigen.core.audit import Actor
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.demo.names import EN_FAMILY_NAMES, JP_FAMILY_NAMES, JP_GIVEN_NAMES
from ichigen.demo.service import DEMO_ADMIN_EMAIL

ROOT = Path(__file__).resolve().parent.parent
BUDGET_P95_MS = 50.0
WORKLOADS = ("noop", "list", "search", "get")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bench_token(url: str) -> str:
    database = Database(create_db_engine(url), Settings(database_url=url, secret_key=SECRET))
    try:
        with database.sessionmaker() as session:
            admin = auth_service.find_user_by_email(session, DEMO_ADMIN_EMAIL)
            if admin is None:
                raise SystemExit("the benchmark store has no demo admin; rebuild it")
            created = auth_service.create_token(
                session,
                admin.id,
                TokenCreate(name="bench http_api", scope="read"),
                Actor.system("bench"),
            )
            return created.token
    finally:
        database.dispose()


def _paths(url: str, seed: int) -> dict[str, list[str]]:
    """Request paths for each workload, drawn from what the store really holds."""
    rnd = random.Random(seed)
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            max_id = int(conn.execute(text("SELECT max(id) FROM contacts")).scalar_one())
            owners = [
                int(r[0])
                for r in conn.execute(
                    text("SELECT id FROM users WHERE role IN ('sales', 'manager')")
                )
            ]
            sample_ids = [rnd.randint(1, max_id) for _ in range(400)]
            rows = conn.execute(
                text(
                    "SELECT primary_email, primary_phone FROM contacts WHERE id IN ("
                    + ",".join(str(i) for i in sample_ids)
                    + ")"
                )
            ).all()
    finally:
        engine.dispose()
    emails = [r[0] for r in rows if r[0]]
    phones = [r[1] for r in rows if r[1] and r[1].startswith("+81")]

    lists = [
        "filter=lifecycle_stage:eq:customer&filter=cf.nps_score:gte:9",
        "filter=lifecycle_stage:eq:customer&filter=cf.customer_tier:eq:gold",
        "filter=cf.nps_score:lte:3",
        "filter=cf.customer_tier:in:platinum,gold&sort=-updated_at",
        "filter=lifecycle_stage:eq:mql",
    ]
    list_paths = [f"/api/v1/contacts?{q}" for q in lists]
    list_paths += [
        f"/api/v1/contacts?filter=lifecycle_stage:eq:lead&filter=owner_id:eq:{o}" for o in owners
    ]

    prefixes: list[str] = []
    prefixes += [n.written for n in rnd.sample(JP_FAMILY_NAMES, 12)]  # 佐藤
    prefixes += [
        n.written + g.written[:1]
        for n, g in zip(rnd.sample(JP_FAMILY_NAMES, 6), rnd.sample(JP_GIVEN_NAMES, 6), strict=True)
    ]
    prefixes += [n.reading for n in rnd.sample(JP_FAMILY_NAMES, 8)]  # さとう
    prefixes += [n.reading[:2] + "" for n in rnd.sample(JP_FAMILY_NAMES, 4)]  # さと
    prefixes += [n.lower()[:5] for n in rnd.sample(EN_FAMILY_NAMES, 6)]  # smith
    prefixes += [e.split("@")[0][: rnd.randint(4, 9)] for e in rnd.sample(emails, 12)]
    prefixes += ["0" + p[3:][: rnd.randint(5, 8)] for p in rnd.sample(phones, 8)]  # 09012345
    prefixes += [f"{p[3:6]}-{p[6:10]}" for p in rnd.sample(phones, 4)]  # 90-1234 as typed
    rnd.shuffle(prefixes)
    search_paths = [f"/api/v1/contacts?q={quote(p)}" for p in prefixes]

    get_paths = [f"/api/v1/contacts/{rnd.randint(1, max_id)}" for _ in range(5000)]
    return {
        "noop": ["/healthz"],
        "list": list_paths,
        "search": search_paths,
        "get": get_paths,
    }


class Server:
    """``uvicorn ichigen.web.asgi:app`` on 127.0.0.1, started and stopped by this process."""

    def __init__(self, url: str, workers: int, request_threads: int | None = None) -> None:
        self.port = _free_port()
        env = dict(os.environ)
        env.update(
            ICHIGEN_DATABASE_URL=url,
            ICHIGEN_SECRET_KEY=SECRET,
            ICHIGEN_DATA_DIR=str(OUT),
            # The CRM benchmarks read the record store only; without the collector, every
            # worker process serves the API (the embedded event store has one owner).
            ICHIGEN_COLLECT_ENABLED="false",
        )
        if request_threads is not None:
            env["ICHIGEN_REQUEST_THREADS"] = str(request_threads)
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "ichigen.web.asgi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        self.process = subprocess.Popen(command, env=env, cwd=ROOT)
        self._wait_ready(timeout=60)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("the server exited during start-up")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the server did not become ready in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _drive(
    port: int, token: str, paths: list[str], seconds: float, concurrency: int
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(paths))
        paths_file = f.name
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(port),
                "--token",
                token,
                "--paths",
                paths_file,
                "--concurrency",
                str(concurrency),
                "--duration",
                str(seconds),
                "--max-requests",
                "200000",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        Path(paths_file).unlink(missing_ok=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(
    store: Store,
    *,
    rounds: int,
    seconds: float,
    concurrency: int,
    workers: int,
    seed: int,
    request_threads: int | None = None,
) -> dict[str, Any]:
    """Run the rounds against one store; returns medians per workload and the raw rounds."""
    token = _bench_token(store.url)
    paths = _paths(store.url, seed)
    server = Server(store.url, workers, request_threads)
    raw: dict[str, list[dict[str, Any]]] = {w: [] for w in WORKLOADS}
    try:
        for workload in WORKLOADS:  # warm caches and connection pools
            _drive(server.port, token, paths[workload], min(seconds, 3.0), concurrency)
        for round_no in range(1, rounds + 1):
            for workload in WORKLOADS:
                result = _drive(server.port, token, paths[workload], seconds, concurrency)
                bad = {k: v for k, v in result["statuses"].items() if k != "200"}
                if bad or result["failures"]:
                    raise SystemExit(f"{workload}: unexpected responses {bad} {result}")
                raw[workload].append(result)
                print(
                    f"  [{store.engine}] round {round_no} {workload:<6} "
                    f"p50 {result['p50_ms']:6.1f} ms  p95 {result['p95_ms']:6.1f} ms  "
                    f"p99 {result['p99_ms']:6.1f} ms  {result['rps']:8.1f} req/s"
                )
    finally:
        server.stop()
    summary: dict[str, Any] = {"engine": store.engine, "contacts": store.contacts, "workloads": {}}
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
    summary["rounds"] = raw
    summary["settings"] = {
        "rounds": rounds,
        "seconds": seconds,
        "concurrency": concurrency,
        "workers": workers,
        "request_threads": request_threads or Settings().request_threads,
    }
    return summary


def _adhoc_store(engine: str, url: str) -> Store:
    db = create_db_engine(url)
    try:
        with db.connect() as conn:
            contacts = int(conn.execute(text("SELECT count(*) FROM contacts")).scalar_one())
            companies = int(conn.execute(text("SELECT count(*) FROM companies")).scalar_one())
    finally:
        db.dispose()
    return Store(engine, url, contacts, companies, 0.0)


def save(summary: dict[str, Any]) -> None:
    """Keep the figures in ``bench/out/http_api-<engine>.json``."""
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"http_api-{summary['engine']}-w{summary['settings']['workers']}.json"
    (OUT / name).write_text(json.dumps(summary, indent=2))


def print_summary(summary: dict[str, Any]) -> None:
    settings = summary["settings"]
    print(
        f"\n{summary['engine']}: {summary['contacts']:,} contacts, {settings['concurrency']} "
        f"clients, {settings['workers']} server worker(s) of "
        f"{settings.get('request_threads', '?')} request threads, median of "
        f"{settings['rounds']} rounds of {settings['seconds']} s"
    )
    print(f"{'workload':<8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>9} {'vs noop':>8}")
    for workload, f in summary["workloads"].items():
        verdict = "" if workload == "noop" else ("  ok" if f["within_budget"] else "  OVER BUDGET")
        print(
            f"{workload:<8} {f['p50_ms']:8.1f} {f['p95_ms']:8.1f} {f['p99_ms']:8.1f} "
            f"{f['rps']:9.1f} {f['rps_vs_noop']:8.3f}{verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--size", default="large")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument(
        "--request-threads", type=int, help="ICHIGEN_REQUEST_THREADS for the server"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url", help="measure this demo store instead of the benchmark stores"
    )
    args = parser.parse_args()
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    if args.database_url:
        engines = (make_url(args.database_url).get_backend_name(),)
    for engine in engines:
        if args.database_url:
            store = _adhoc_store(engine, args.database_url)
        elif engine == "sqlite":
            store = sqlite_store(args.size)
        else:
            store = postgres_store(args.size)
        summary = measure(
            store,
            rounds=args.rounds,
            seconds=args.seconds,
            concurrency=args.concurrency,
            workers=args.workers,
            request_threads=args.request_threads,
            seed=args.seed,
        )
        save(summary)
        print_summary(summary)


if __name__ == "__main__":
    main()
