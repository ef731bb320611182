"""Durable ingest through ``/v1/batch``, against the same endpoint with the store write skipped.

Starts two ``ichigen serve`` processes on 127.0.0.1, each with a fresh data dir (SQLite record
store, DuckDB event store) and one source:

* ``store``: the real thing; a 200 means the batch is committed to the event store;
* ``store`` resolves every event's person (identity graph in the record store) before the
  write, as a server does by default; ``--without-identity`` adds a ``plain`` server that
  stores events with an empty person, to show what resolution costs;
* ``discard``: the same parsing, validation and de-duplication, then the messages are dropped
  (``ICHIGEN_COLLECT_BENCHMARK_DISCARD``): the ceiling of the endpoint without the store.

Each round loads ``discard`` for ``--baseline-seconds`` and then ``store`` for ``--seconds``
(≥ 60 s for the budget) from a separate load-generator process (``bench.ingest_loadgen``,
8 keep-alive connections, batches of 100 messages of about 450 bytes). Figures are medians
over the rounds; afterwards the store is opened and every acknowledged event is counted, so
the rate is of events really stored. Each round also records the share of a core that the
server's process and its children (the event store's process) used. Budget: ≥ 50,000
events/s with p99 ≤ 200 ms.

    python -m bench.ingest [--rounds 3] [--seconds 60] [--baseline-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb

from ichigen.collect import service as collect_service
from ichigen.collect.schemas import SourceCreate
from ichigen.core import migrate
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BUDGET_EVENTS_PER_S = 50_000
BUDGET_P99_MS = 200.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``ichigen serve`` with its own data dir and source."""

    def __init__(self, name: str, discard: bool, identity: bool = True) -> None:
        self.name = name
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"ichigen-ingest-{name}-"))
        settings = Settings(data_dir=self.data_dir, secret_key="bench-secret-key-0123456789")
        database = Database.from_settings(settings)
        migrate.upgrade(database.engine)
        with database.sessionmaker() as session:
            created = collect_service.create_source(
                session, SourceCreate(name=f"bench {name}"), Actor.system("bench")
            )
        database.dispose()
        self.write_key = created.write_key
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICHIGEN_")}
        env.update(
            ICHIGEN_DATA_DIR=str(self.data_dir),
            ICHIGEN_SECRET_KEY="bench-secret-key-0123456789",
            ICHIGEN_COLLECT_BENCHMARK_DISCARD="true" if discard else "false",
            ICHIGEN_IDENTITY_ON_INGEST="true" if identity else "false",
        )
        self.log = (self.data_dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ichigen.cli.main", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/readyz", timeout=2
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} server did not start; see {self.data_dir / 'server.log'}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()

    def stored_events(self) -> tuple[int, int]:
        """Events stored, and how many of them carry a person id."""
        with duckdb.connect(str(self.data_dir / "events.duckdb"), read_only=True) as con:
            found = con.execute("SELECT count(*), count(person_id) FROM events").fetchone()
        return (int(found[0]), int(found[1])) if found else (0, 0)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processes(server: Server) -> dict[str, int]:
    """The server's process and its children (the event store's process among them)."""
    found = {"server": server.process.pid}
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    if children.exists():
        for number, pid in enumerate(children.read_text().split()):
            found[f"child{number}"] = int(pid)
    return found


def load(server: Server, seconds: float, concurrency: int, run_id: int) -> dict[str, Any]:
    processes = _processes(server)
    before = {name: _cpu_seconds(pid) for name, pid in processes.items()}
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ingest_loadgen",
            "--port",
            str(server.port),
            "--write-key",
            server.write_key,
            "--duration",
            str(seconds),
            "--concurrency",
            str(concurrency),
            "--run-id",
            str(run_id),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    elapsed = time.monotonic() - started
    # Share of one core each process used over the round (the load generator's own start and
    # stop are in the elapsed time, so these are slight underestimates).
    result["cpu_percent"] = {
        name: round((_cpu_seconds(pid) - before[name]) / elapsed * 100, 1)
        for name, pid in processes.items()
        if _cpu_seconds(pid) - before[name] > 0.05 * elapsed
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--without-identity",
        action="store_true",
        help="also load a server that stores events without resolving their persons",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "ingest.json")
    args = parser.parse_args()
    store = Server("store", discard=False)
    discard = Server("discard", discard=True)
    servers = [(discard, args.baseline_seconds), (store, args.seconds)]
    plain = None
    if args.without_identity:
        plain = Server("plain", discard=False, identity=False)
        servers.append((plain, args.seconds))
    runs: dict[str, list[dict[str, Any]]] = {server.name: [] for server, _ in servers}
    try:
        for round_number in range(1, args.rounds + 1):
            for server, seconds in servers:
                result = load(server, seconds, args.concurrency, round_number)
                runs[server.name].append(result)
                print(f"round {round_number} {server.name}: {json.dumps(result)}", flush=True)
    finally:
        for server, _ in servers:
            server.stop()
    acknowledged = sum(r["events"] for r in runs["store"])
    stored, attributed = store.stored_events()

    def median(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[name]))

    summary = {
        "store_events_per_s": median("store", "events_per_s"),
        "store_p50_ms": median("store", "p50_ms"),
        "store_p99_ms": median("store", "p99_ms"),
        "discard_events_per_s": median("discard", "events_per_s"),
        "discard_p99_ms": median("discard", "p99_ms"),
        "acknowledged": acknowledged,
        "stored": stored,
        "stored_with_person": attributed,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
    }
    summary["ratio_store_to_discard"] = round(
        summary["store_events_per_s"] / summary["discard_events_per_s"], 3
    )
    if plain is not None:
        summary["without_identity_events_per_s"] = median("plain", "events_per_s")
        summary["without_identity_p99_ms"] = median("plain", "p99_ms")
    summary["within_budget"] = (
        summary["store_events_per_s"] >= BUDGET_EVENTS_PER_S
        and summary["store_p99_ms"] <= BUDGET_P99_MS
        and stored >= acknowledged
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
