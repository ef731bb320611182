"""A live ichigen (``ichigen serve``) on 127.0.0.1 and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from ichigen.auth import service as auth_service
from ichigen.core import migrate
from ichigen.core.db import Database
from ichigen.core.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-correct-horse-battery"


@dataclass(frozen=True)
class LiveServer:
    url: str
    data_dir: Path
    screenshots: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ichigen serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"ichigen serve did not answer on {url} within {seconds}s")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``ichigen serve`` on a free port with a fresh data dir, migrated, with an admin."""
    data_dir = tmp_path_factory.mktemp("e2e-data")
    settings = Settings(data_dir=data_dir, secret_key="e2e-secret-key-0123456789abcdef")
    database = Database.from_settings(settings)
    migrate.upgrade(database.engine)
    with database.sessionmaker() as session:
        auth_service.bootstrap_admin(session, ADMIN_EMAIL, ADMIN_PASSWORD, name="Aiko Admin")
    database.dispose()

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICHIGEN_")}
    env.update(
        ICHIGEN_DATA_DIR=str(data_dir),
        ICHIGEN_SECRET_KEY=settings.secret_key,
        # The browser tests start their own scans; a scheduled one would refuse them (409).
        ICHIGEN_DUPLICATES_SCAN_HOURS="0",
    )
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
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
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process)
        yield LiveServer(url, data_dir, tmp_path_factory.mktemp("screenshots"))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make browser installs it)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies) in English, on a desktop-sized window."""
    context = chromium.new_context(
        locale="en-US", timezone_id="Asia/Tokyo", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(
    page: Page,
    server: LiveServer,
    path: str = "/contacts",
    email: str = ADMIN_EMAIL,
    password: str = ADMIN_PASSWORD,
) -> None:
    """Open a page, get sent to the sign-in form, sign in (as the admin unless told), and land
    where we were going."""
    page.goto(server.url + path)
    page.wait_for_url("**/login?next=*")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + path)
