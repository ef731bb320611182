"""Load generator for the tracking API, run as its own process (it must not share the server's GIL).

``concurrency`` keep-alive connections each POST ``/v1/batch`` with ``batch`` messages of
300–500 bytes (track, page and identify calls with realistic properties and context), wait for
the answer, and send the next, for ``duration`` seconds. Every message has its own
``messageId``. Prints one JSON object: requests, events acknowledged, events/s, latency
percentiles (ms) and statuses.

    python -m bench.ingest_loadgen --port 8000 --write-key wk_... --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import time
from collections import Counter

import uvloop

from bench.loadgen import Tally, _read_response, percentile

PLACEHOLDER = b"@@@@@@@@@@"  # replaced by the request number in every messageId of a batch

PRODUCTS = ["shoes", "bags", "coats", "shirts", "hats", "watches", "books", "tea"]
PATHS = ["/", "/pricing", "/products", "/blog/why-one-source", "/cart", "/checkout"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 19_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]


def message(rng: random.Random, client: int, index: int, people: int) -> dict[str, object]:
    """One realistic message whose messageId carries the placeholder."""
    person = rng.randrange(people)
    roll = rng.random()
    base: dict[str, object] = {
        "messageId": f"c{client}-{PLACEHOLDER.decode()}-{index:04d}",
        "timestamp": "2026-11-22T10:00:00.123Z",
        "context": {
            "ip": f"203.0.113.{rng.randrange(255)}",
            "userAgent": rng.choice(AGENTS),
            "library": {"name": "analytics-python", "version": "2.3.4"},
            "page": {"path": rng.choice(PATHS)},
        },
    }
    if roll < 0.8:
        sku = rng.randrange(100_000)
        base |= {
            "type": "track",
            "event": rng.choice(["Product Viewed", "Product Added", "Order Completed"]),
            "userId": f"user-{person}",
            "properties": {
                "product_id": f"sku-{sku}",
                "category": rng.choice(PRODUCTS),
                "price": rng.randrange(500, 50_000),
                "currency": "JPY",
            },
        }
    elif roll < 0.9:
        base |= {
            "type": "page",
            "name": "Product",
            "anonymousId": f"anon-{person:08x}",
            "properties": {"path": rng.choice(PATHS), "referrer": "https://search.example/"},
        }
    else:
        base |= {
            "type": "identify",
            "userId": f"user-{person}",
            "traits": {"email": f"user{person}@example.co.jp", "plan": "pro", "locale": "ja-JP"},
        }
    return base


def batch_template(client: int, size: int, people: int, seed: int) -> bytes:
    rng = random.Random(seed * 1000 + client)
    body = {"batch": [message(rng, client, i, people) for i in range(size)]}
    return json.dumps(body, separators=(",", ":")).encode()


async def _client(
    port: int,
    key: str,
    client: int,
    template: bytes,
    run_id: int,
    deadline: float,
    tally: Tally,
    acknowledged: list[int],
    size: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = base64.b64encode(f"{key}:".encode()).decode()
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    number = 0
    try:
        while time.perf_counter() < deadline:
            number += 1
            body = template.replace(PLACEHOLDER, f"{run_id:03d}{number:07d}".encode())
            started = time.perf_counter()
            writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            try:
                status, _ = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                tally.failures += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            tally.latencies.append((time.perf_counter() - started) * 1000)
            tally.statuses[status] += 1
            if status == 200:
                acknowledged[0] += size
    finally:
        writer.close()


async def run(
    port: int, key: str, concurrency: int, duration: float, size: int, people: int, run_id: int
) -> dict[str, object]:
    templates = [batch_template(c, size, people, run_id) for c in range(concurrency)]
    tally = Tally(statuses=Counter())
    acknowledged = [0]
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(
            _client(port, key, c, templates[c], run_id, deadline, tally, acknowledged, size)
            for c in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(tally.latencies)
    return {
        "requests": len(ordered),
        "events": acknowledged[0],
        "seconds": round(elapsed, 3),
        "events_per_s": round(acknowledged[0] / elapsed, 1) if elapsed else 0.0,
        "bytes_per_batch": len(templates[0]),
        "p50_ms": round(percentile(ordered, 0.50), 2),
        "p95_ms": round(percentile(ordered, 0.95), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "max_ms": round(ordered[-1], 2) if ordered else None,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "failures": tally.failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--run-id", type=int, default=1, help="keeps messageIds unique per run")
    args = parser.parse_args()
    result = uvloop.run(
        run(
            args.port,
            args.write_key,
            args.concurrency,
            args.duration,
            args.batch,
            args.people,
            args.run_id,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
