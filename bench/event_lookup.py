"""One person's latest events out of a hundred million, from the embedded event store.

Builds (once, then reuses) ``bench/out/events-<N>.duckdb`` with the event store's own schema:
``N`` events (default 100,000,000) of a million people, 80% tracks with properties and
context, pages of anonymous visitors, identifies; then times, for random people:

* ``person``: the store's ``find`` by ``user_id``, newest first, 100 events (what
  ``GET /api/v1/events?user_id=…`` runs);
* ``anonymous``: the same by ``anonymous_id``;
* ``floor``: ``SELECT 1`` on the same connection, the cost of any query at all (baseline);
* ``scan``: the plain top-N query without the index path (a few samples), what a naive
  store would do.

Budget: p95 ≤ 20 ms for ``person``. Figures are medians over rounds.

    python -m bench.event_lookup [--events 100000000] [--rounds 3] [--lookups 200]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import duckdb

from bench.loadgen import percentile
from ichigen.collect.store import _DDL, DuckDBEventStore, EventFilter

OUT = Path(__file__).resolve().parent / "out"
PEOPLE = 1_000_000
BUDGET_P95_MS = 20.0
CHUNK = 10_000_000

_FILL = """
INSERT INTO events
SELECT
    1 + (i % 3) AS source_id,
    CASE WHEN i % 10 < 8 THEN 'track' WHEN i % 10 = 8 THEN 'page' ELSE 'identify' END AS type,
    CASE WHEN i % 10 < 8 THEN ['Product Viewed', 'Product Added', 'Order Completed'][1 + i % 3]
    END AS event,
    CASE WHEN i % 10 = 8 THEN 'Product' END AS name,
    NULL AS category,
    'm-' || i AS message_id,
    (hash('m-' || i) // 2)::BIGINT AS message_hash,
    CASE WHEN i % 10 <> 8 THEN 'user-' || (hash(i) % $people) END AS user_id,
    CASE WHEN i % 10 = 8 THEN 'anon-' || (hash(i) % $people) END AS anonymous_id,
    NULL AS group_id,
    NULL AS previous_id,
    NULL AS person_id,
    TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_microseconds(i * 300) AS timestamp,
    TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_microseconds(i * 300) AS original_timestamp,
    NULL AS sent_at,
    TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_microseconds(i * 300 + 40000) AS received_at,
    CASE WHEN i % 10 < 8 THEN '{"product_id":"sku-' || (i % 100000)
        || '","category":"shoes","price":' || (i % 50000) || ',"currency":"JPY"}' END
        AS properties,
    CASE WHEN i % 10 = 9 THEN '{"plan":"pro","locale":"ja-JP"}' END AS traits,
    '{"ip":"203.0.113.7","library":{"name":"analytics-python","version":"2.3.4"},'
        || '"page":{"path":"/products"}}' AS context,
    NULL AS integrations,
    NULL AS consent,
    CASE WHEN i % 10 <> 8 THEN hash('user-' || (hash(i) % $people)) END AS user_key,
    CASE WHEN i % 10 = 8 THEN hash('anon-' || (hash(i) % $people)) END AS anonymous_key
FROM range($start, $stop) AS r(i)
"""


def build(path: Path, events: int) -> None:
    """The store file with ``events`` rows; indexes made after the load, as a rebuild would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = duckdb.connect(str(partial))
    con.execute("SET TimeZone = 'UTC'")
    for statement in _DDL:
        if "CREATE INDEX" not in statement:
            con.execute(statement)
    started = time.perf_counter()
    for start in range(0, events, CHUNK):
        stop = min(events, start + CHUNK)
        con.execute(_FILL, {"people": PEOPLE, "start": start, "stop": stop})
        print(f"  {stop:,} events ({time.perf_counter() - started:.0f} s)", flush=True)
    for statement in _DDL:
        if "CREATE INDEX" in statement:
            con.execute(statement)
    print(f"  indexed ({time.perf_counter() - started:.0f} s)", flush=True)
    con.close()
    partial.rename(path)


def timed(samples: int, run: Any) -> list[float]:
    out = []
    for index in range(samples):
        started = time.perf_counter()
        run(index)
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--json", type=Path, default=OUT / "event_lookup.json")
    args = parser.parse_args()
    path = OUT / f"events-{args.events}.duckdb"
    if not path.exists():
        print(f"building {path} …", flush=True)
        build(path, args.events)
    store = DuckDBEventStore(path)
    rng = random.Random(7)
    rounds: list[dict[str, Any]] = []
    try:
        con = store._cursor()
        for number in range(1, args.rounds + 1):
            people = [f"user-{rng.randrange(PEOPLE)}" for _ in range(args.lookups)]
            visitors = [f"anon-{rng.randrange(PEOPLE)}" for _ in range(args.lookups)]
            sizes: list[int] = []

            def person(i: int, people: list[str] = people, sizes: list[int] = sizes) -> None:
                sizes.append(len(store.find(EventFilter(user_id=people[i]), 100).events))

            def visitor(i: int, visitors: list[str] = visitors) -> None:
                store.find(EventFilter(anonymous_id=visitors[i]), 100)

            def scan(i: int, people: list[str] = people) -> None:
                con.execute(
                    "SELECT * EXCLUDE (timestamp, original_timestamp, sent_at, received_at) "
                    "FROM events WHERE user_id = ? ORDER BY timestamp DESC LIMIT 100",
                    [people[i]],
                ).fetchall()

            result = {}
            for name, run, samples in (
                ("floor", lambda i: con.execute("SELECT 1").fetchall(), args.lookups),
                ("person", person, args.lookups),
                ("anonymous", visitor, args.lookups),
                ("scan", scan, 5),
            ):
                got = timed(samples, run)
                result[name] = {
                    "p50_ms": round(percentile(got, 0.5), 2),
                    "p95_ms": round(percentile(got, 0.95), 2),
                    "p99_ms": round(percentile(got, 0.99), 2),
                }
            result["events_per_person_median"] = statistics.median(sizes)
            rounds.append(result)
            print(f"round {number}: {json.dumps(result)}", flush=True)
    finally:
        store.close()

    def median(name: str, key: str) -> float:
        return round(float(statistics.median(r[name][key] for r in rounds)), 2)

    summary = {
        "events": args.events,
        "person_p50_ms": median("person", "p50_ms"),
        "person_p95_ms": median("person", "p95_ms"),
        "anonymous_p95_ms": median("anonymous", "p95_ms"),
        "floor_p95_ms": median("floor", "p95_ms"),
        "scan_p50_ms": median("scan", "p50_ms"),
    }
    summary["person_p95_vs_scan_p50"] = round(summary["person_p95_ms"] / summary["scan_p50_ms"], 4)
    summary["within_budget"] = summary["person_p95_ms"] <= BUDGET_P95_MS
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
