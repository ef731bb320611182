"""A 200 from ``/v1/batch`` means the events are durable: SIGKILL under load loses none of them.

The test runs its own ``ichigen serve`` on 127.0.0.1 with a data dir of its own, loads it from
several threads with batches of 100 uniquely identified messages, kills the process with
SIGKILL while requests are in flight, starts it again on the same data dir, and then finds
every message of every acknowledged batch in the event store.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from tests.e2e.conftest import _free_port, _wait_until_ready

from ichigen.collect import service as collect_service
from ichigen.collect.schemas import SourceCreate
from ichigen.core import migrate
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.settings import Settings

pytestmark = pytest.mark.e2e

SECRET = "sigkill-secret-key-0123456789abcdef"
SENDERS = 4
BATCH = 100
LOAD_SECONDS = 2.5


class Server:
    """One ``ichigen serve`` process on a data dir; started and stopped by the test."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICHIGEN_")}
        env.update(ICHIGEN_DATA_DIR=str(self.data_dir), ICHIGEN_SECRET_KEY=SECRET)
        with (self.data_dir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ichigen.cli.main",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        _wait_until_ready(self.url, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = Settings(data_dir=tmp_path, secret_key=SECRET)
    database = Database.from_settings(settings)
    migrate.upgrade(database.engine)
    database.dispose()
    running = Server(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _new_source(data_dir: Path) -> tuple[int, str]:
    database = Database.from_settings(Settings(data_dir=data_dir, secret_key=SECRET))
    try:
        with database.sessionmaker() as session:
            created = collect_service.create_source(
                session, SourceCreate(name="Load"), Actor.system()
            )
        return created.id, created.write_key
    finally:
        database.dispose()


def _batch(sender: int, number: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "userId": f"user-{sender}-{i % 7}",
            "event": "Order Completed",
            "messageId": f"s{sender}-b{number}-m{i}",
            "properties": {"revenue": i * 100, "currency": "JPY", "sku": f"SKU-{i}"},
            "context": {"library": {"name": "load", "version": "1"}},
        }
        for i in range(BATCH)
    ]


class Load:
    """Sender threads posting batches until stopped; the message ids of every 200."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        self.acknowledged: list[str] = []
        self.refused: list[str] = []
        self.cut_off = 0  # senders whose request failed because the server died under it
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._send, args=(n,), daemon=True) for n in range(SENDERS)
        ]

    def _send(self, sender: int) -> None:
        with httpx.Client(timeout=10, headers={"Authorization": self.auth}) as client:
            number = 0
            while not self.stop.is_set():
                batch = _batch(sender, number)
                number += 1
                try:
                    response = client.post(f"{self.url}/v1/batch", json={"batch": batch})
                except httpx.HTTPError:
                    with self._lock:  # the server is gone: this batch was never acknowledged
                        self.cut_off += 1
                    return
                with self._lock:
                    if response.status_code == 200:
                        self.acknowledged.extend(m["messageId"] for m in batch)
                    else:
                        self.refused.append(f"{response.status_code} {response.text[:200]}")

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)


def test_every_acknowledged_event_survives_a_sigkill(server: Server) -> None:
    source_id, key = _new_source(server.data_dir)
    server.start()
    load = Load(server.url, key)
    for thread in load.threads:
        thread.start()
    try:
        # The load runs for a fixed time; then the kill lands while every sender is busy.
        time.sleep(LOAD_SECONDS)
        assert load.count() >= BATCH, "no batch was acknowledged before the kill"
        server.kill()
    finally:
        load.stop.set()
        for thread in load.threads:
            thread.join(timeout=15)
    assert not any(t.is_alive() for t in load.threads)
    assert load.refused == []
    assert load.cut_off >= 1, "the kill did not interrupt the load"
    acknowledged = set(load.acknowledged)
    assert len(acknowledged) == len(load.acknowledged)

    # Back on the same data dir: the server recovers, and a client retrying an acknowledged
    # batch (it may not have seen the answer) does not store it twice.
    server.start()
    first = sorted(acknowledged)[:BATCH]
    retry = [
        {"type": "track", "userId": "retry", "event": "Retried", "messageId": message_id}
        for message_id in first
    ]
    response = httpx.post(
        f"{server.url}/v1/batch",
        json={"batch": retry},
        headers={"Authorization": load.auth},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    server.stop()

    connection = duckdb.connect(str(server.data_dir / "events.duckdb"), read_only=True)
    try:
        rows = connection.execute(
            "SELECT message_id, count(*) FROM events WHERE source_id = ? GROUP BY message_id",
            [source_id],
        ).fetchall()
        retried = connection.execute(
            "SELECT count(*) FROM events WHERE event = 'Retried'"
        ).fetchone()
    finally:
        connection.close()
    stored = {message_id for message_id, _ in rows}
    lost = acknowledged - stored
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged events were lost"
    assert all(count == 1 for _, count in rows)
    assert retried == (0,)
