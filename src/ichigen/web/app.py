"""The application factory: JSON API, collector-ready health endpoints, and the web UI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ichigen import __version__
from ichigen.collect import ingest_log
from ichigen.collect import service as collect_service
from ichigen.collect.api import CollectState, TrackingFastLane, limits_from, tracking_router
from ichigen.collect.ingest import CollectMetrics, Collector
from ichigen.collect.store import EventStore
from ichigen.collect.store_process import open_event_store
from ichigen.core.db import Database
from ichigen.core.settings import Settings, get_settings
from ichigen.crm.tasks.reminders import reminder_loop
from ichigen.identity import duplicates
from ichigen.profiles import service as profiles
from ichigen.profiles.ingest import EventAttribution, attribution_for
from ichigen.web import problems
from ichigen.web.api import api_router
from ichigen.web.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from ichigen.web.views import ui_router

STATIC_DIR = Path(__file__).parent / "static"
#: How often the server asks whether a scheduled duplicate scan is due (first: after this long).
DUPLICATE_SCAN_CHECK_SECONDS = 300.0
log = logging.getLogger(__name__)


def open_collector(settings: Settings, db: Database, metrics: CollectMetrics) -> CollectState:
    """Open the event store and start its writer (loads the keys of stored messages)."""
    # The writer thread hands each commit to DuckDB, which runs without the GIL but needs it
    # back between steps. With Python's default 5 ms switch interval, a busy event loop kept
    # it waiting so long that commits took four times longer (measured in bench/ingest.py).
    sys.setswitchinterval(0.0005)
    resolve = settings.identity_on_ingest
    # A store in a process of its own resolves persons there, on its own interpreter; a store
    # in this process gets them resolved by a stage of the collector.
    store = open_event_store(
        settings,
        attribution=partial(
            attribution_for, db.engine.url.render_as_string(hide_password=False), settings
        )
        if resolve
        else None,
    )
    in_store = getattr(store, "attributes", False)
    collector = Collector(
        store,
        metrics=metrics,
        debugger_size=settings.collect_debugger_size,
        discard=settings.collect_benchmark_discard,
        attribution=EventAttribution(db.sessionmaker) if resolve and not in_store else None,
    )
    return CollectState(
        collector=collector,
        keys=collect_service.WriteKeyCache(db.sessionmaker),
        limits=limits_from(settings),
    )


async def _retention_loop(collector: Collector, db: Database, every: float = 3600) -> None:
    """Delete events past each source's retention, at start and then every hour."""
    while True:
        try:
            with db.sessionmaker() as session:
                retention = collect_service.retention_by_source(session)
            if retention:
                await to_thread.run_sync(collector.apply_retention, retention)
        except Exception:  # a failed sweep is retried next hour; ingestion goes on
            log.exception("event retention sweep failed")
        await asyncio.sleep(every)


async def _profile_retention_loop(
    db: Database, days: int, events: EventStore | None, every: float = 3600
) -> None:
    """Remove anonymous profiles past their retention, with their events when this process
    holds the event store, at start and then every hour."""
    while True:
        try:
            removed = await to_thread.run_sync(_purge_anonymous_once, db, days, events)
            if removed:
                log.info("removed %s anonymous profiles not seen for %s days", removed, days)
        except Exception:  # retried next hour; the product goes on
            log.exception("anonymous profile retention sweep failed")
        await asyncio.sleep(every)


def _purge_anonymous_once(db: Database, days: int, events: EventStore | None) -> int:
    with db.sessionmaker() as session:
        return profiles.purge_anonymous_profiles(session, days, events=events).profiles


async def _contact_link_loop(db: Database, every: float) -> None:
    """Link new and edited CRM contacts into the identity graph, a batch at a time."""
    while True:
        try:
            linked = await to_thread.run_sync(_link_contacts_once, db)
        except Exception:  # retried on the next pass; the CRM goes on
            log.exception("linking CRM contacts into the identity graph failed")
            linked = 0
        if not linked:
            await asyncio.sleep(every)


def _link_contacts_once(db: Database) -> int:
    with db.sessionmaker() as session:
        linked = profiles.link_changed_contacts(session)
        session.commit()
    return linked


async def _duplicate_scan_loop(
    db: Database, every_hours: float, check_every: float = DUPLICATE_SCAN_CHECK_SECONDS
) -> None:
    """Scan every contact for duplicates when the last scan is ``every_hours`` old.

    The first look comes ``check_every`` after start, not at start: a deploy or a restart
    does not begin with minutes of heavy work. Every worker of a server runs this loop; the
    scan history lets only one of them scan at a time.
    """
    # A thread of its own: a scan takes minutes, and must not hold a request thread that long.
    limiter = CapacityLimiter(1)
    stop = threading.Event()
    try:
        while True:
            await asyncio.sleep(check_every)
            try:
                await to_thread.run_sync(
                    _scan_duplicates_if_due,
                    db,
                    every_hours,
                    stop,
                    limiter=limiter,
                    abandon_on_cancel=True,
                )
            except Exception:  # recorded as failed in the scan history; retried when due again
                log.exception("the scheduled duplicate scan failed")
    finally:
        # On shutdown the scan stops at its next step and is recorded as failed, if the
        # process lives that long; otherwise its lease runs out (see duplicates.SCAN_LEASE).
        stop.set()


def _scan_duplicates_if_due(db: Database, every_hours: float, stop: threading.Event) -> None:
    def stop_when_asked(_step: str, _done: int, _total: int) -> None:
        if stop.is_set():
            raise duplicates.ScanStopped("the server stopped during the scan")

    with db.sessionmaker() as session:
        result = duplicates.run_scheduled_scan(session, every_hours, progress=stop_when_asked)
    if result is not None:
        log.info(
            "scheduled duplicate scan %s: %s contacts, %s pairs, %s newly queued, in %.1f s",
            result.scan_id,
            result.contacts,
            result.candidates,
            result.queued,
            result.seconds,
        )


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the app; nothing connects until the first request or startup."""
    settings = settings or get_settings()
    db = database or Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync routes and dependencies run in threads that share the GIL; with 40 (anyio's
        # default) eight clients' requests fight over it, and the 95th percentile of a
        # contact list doubled against a handful of threads taking requests in turn.
        to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        upkeep: asyncio.Task[None] | None = None
        if settings.collect_enabled:
            app.state.collect = await to_thread.run_sync(
                open_collector, settings, db, collect_metrics
            )
            upkeep = asyncio.create_task(_retention_loop(app.state.collect.collector, db))
        reminding = (
            asyncio.create_task(reminder_loop(db, settings)) if settings.reminders_enabled else None
        )
        linking = asyncio.create_task(
            _contact_link_loop(db, settings.identity_contact_link_seconds)
        )
        scanning = (
            asyncio.create_task(_duplicate_scan_loop(db, settings.duplicates_scan_hours))
            if settings.duplicates_scan_hours > 0
            else None
        )
        purging = (
            asyncio.create_task(
                _profile_retention_loop(
                    db,
                    settings.anonymous_profile_retention_days,
                    app.state.collect.collector.store if settings.collect_enabled else None,
                )
            )
            if settings.anonymous_profile_retention_days > 0
            else None
        )
        try:
            yield
        finally:
            linking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await linking
            if purging is not None:
                purging.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purging
            if scanning is not None:
                scanning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scanning
            if upkeep is not None:
                upkeep.cancel()
            if reminding is not None:
                reminding.cancel()
                # A pass in progress finishes before the database is closed.
                with contextlib.suppress(asyncio.CancelledError):
                    await reminding
            if app.state.collect is not None:
                await to_thread.run_sync(app.state.collect.collector.close)
                app.state.collect = None
            if database is None:
                db.dispose()

    app = FastAPI(
        title="ichigen",
        version=__version__,
        description="Customer data hub: CRM and CDP in one product. Authenticate with "
        "`Authorization: Bearer <token>` (create one with `ichigen tokens create`).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    metrics = Metrics()
    app.state.metrics = metrics
    # Created once per app: a lifespan may run more than once (tests), a registry only once.
    collect_metrics = CollectMetrics(metrics.registry)
    app.state.collect = None
    problems.install(app)
    app.include_router(api_router())
    app.include_router(tracking_router)
    app.include_router(ui_router())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["operations"], include_in_schema=True)
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(request: Request, response: Response) -> dict[str, Any]:
        """The record store answers, and the event store too where this process collects;
        ``warnings`` lists what needs a person's attention without stopping the service
        (ingest log segments set aside as damaged or foreign)."""
        warnings: list[str] = []
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            collect = app.state.collect
            if settings.collect_enabled:
                if collect is None:
                    raise RuntimeError("the event store is not open yet")
                store = collect.collector.store
                store.count()
                path = getattr(store, "path", ":memory:")
                if path != ":memory:":
                    warnings = ingest_log.set_aside_warnings(path)
        except Exception as exc:  # the check's whole point is to report any failure
            response.status_code = 503
            return {"status": "unavailable", "detail": type(exc).__name__}
        return {"status": "ready", "warnings": warnings} if warnings else {"status": "ready"}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(TrackingFastLane)
    return app
