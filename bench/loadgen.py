"""A small HTTP/1.1 load generator, run as its own process so it does not share the server's GIL.

``concurrency`` keep-alive connections each send one request, wait for the whole response,
then send the next, until ``max_requests`` are done or ``duration`` seconds pass. Paths are
taken in turn from a file (one per line). Prints one JSON object: counts, requests/s and
latency percentiles in milliseconds.

    python -m bench.loadgen --port 8000 --paths paths.txt --token ich_... --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvloop


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(share * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lowered = name.strip().lower()
        if lowered == "content-length":
            length = int(value.strip())
        elif lowered == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
        return status, length
    if chunked:
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            total += size
            if size == 0:
                return status, total
    raise RuntimeError("response without Content-Length or chunked encoding")


async def _client(
    host: str,
    port: int,
    token: str | None,
    paths: Iterator[str],
    deadline: float,
    budget: list[int],
    tally: Tally,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            path = next(paths)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
                "Accept: application/json\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(request)
            try:
                status, _ = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                tally.failures += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            tally.latencies.append((time.perf_counter() - started) * 1000)
            tally.statuses[status] += 1
    finally:
        writer.close()


async def run(
    host: str,
    port: int,
    token: str | None,
    paths: list[str],
    concurrency: int,
    duration: float,
    max_requests: int,
) -> dict[str, object]:
    """Drive the server and summarise what happened."""
    tally = Tally()
    cycle = itertools.cycle(paths)
    budget = [max_requests]
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(_client(host, port, token, cycle, deadline, budget, tally) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(tally.latencies)
    done = len(ordered)
    return {
        "requests": done,
        "seconds": round(elapsed, 3),
        "rps": round(done / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(ordered, 0.50), 2),
        "p95_ms": round(percentile(ordered, 0.95), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "max_ms": round(ordered[-1], 2) if ordered else None,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "failures": tally.failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default=None)
    parser.add_argument("--paths", type=Path, required=True, help="file with one path per line")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds, at most")
    parser.add_argument("--max-requests", type=int, default=100_000)
    args = parser.parse_args()
    if args.host != "127.0.0.1" and args.host != "localhost":
        raise SystemExit("load is only ever sent to this machine (127.0.0.1)")
    paths = [p for p in args.paths.read_text(encoding="utf-8").splitlines() if p]
    result = uvloop.run(
        run(
            args.host,
            args.port,
            args.token,
            paths,
            args.concurrency,
            args.duration,
            args.max_requests,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
