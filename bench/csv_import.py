"""CSV import throughput: contacts per second through the product's import path, on SQLite.

Writes a contacts CSV of demo-like people (Japanese and English names with readings, emails
on their companies' domains or free mail, phones, companies by name, custom fields), then
imports it with ``ichigen.crm.contacts.imports.import_contacts`` (upsert matched on email,
the default) into a fresh, migrated SQLite store that has the demo's custom fields, two of
them indexed. Several runs on a smaller file give a median; one run imports the full file.
Budget: ≥ 20,000 rows/s.

    python -m bench.csv_import [--rows 1000000] [--small-rows 100000] [--runs 3] [--no-full]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.load_crm import OUT, SECRET
from ichigen.auth import service as auth_service
from ichigen.core import migrate
from ichigen.core.custom_fields import create_field
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.crm.contacts.imports import import_contacts
from ichigen.demo.service import (
    DEFAULT_SEED,
    DEMO_ADMIN_EMAIL,
    DEMO_PASSWORD,
    INDEXED_FIELDS,
    custom_field_definitions,
    standalone_contacts,
)

BUDGET_ROWS_PER_SECOND = 20_000
CUSTOM_KEYS = ("nps_score", "customer_tier", "contract_renewal", "newsletter_opt_in")
HEADER = (
    "external_id",
    "first_name",
    "last_name",
    "first_name_reading",
    "last_name_reading",
    "email",
    "other_emails",
    "mobile_phone",
    "phone",
    "company_name",
    "job_title",
    "street",
    "city",
    "region",
    "postal_code",
    "country",
    "lifecycle_stage",
    "lead_status",
    "source",
    "tags",
    "do_not_email",
    "do_not_call",
    *(f"cf.{key}" for key in CUSTOM_KEYS),
)


def _cells(record: dict[str, Any]) -> list[str]:
    emails = [e["email"] for e in record["emails"]]
    phones = record.get("phones", [])
    mobile = next((p["number"] for p in phones if p["label"] == "mobile"), "")
    work = next((p["number"] for p in phones if p["label"] == "work"), "")
    custom = record.get("custom", {})
    values: dict[str, Any] = {
        **record,
        "email": emails[0],
        "other_emails": ";".join(emails[1:]),
        "mobile_phone": mobile,
        "phone": work,
        "tags": ";".join(record.get("tags", [])),
        "do_not_email": "true" if record.get("do_not_email") else "false",
        "do_not_call": "true" if record.get("do_not_call") else "false",
        **{f"cf.{key}": custom.get(key, "") for key in CUSTOM_KEYS},
    }
    return ["" if values.get(name) is None else str(values.get(name, "")) for name in HEADER]


def contacts_csv(rows: int, seed: int = DEFAULT_SEED) -> Path:
    """A CSV file of ``rows`` contacts (one company per ten contacts), made once and kept."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"contacts-{rows}-{seed}.csv"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for batch in standalone_contacts(
            count=rows, companies_count=max(1, rows // 10), seed=seed, batch=10_000
        ):
            writer.writerows(_cells(record) for record in batch)
    partial.rename(path)
    return path


def _template() -> Path:
    """A migrated store with the demo admin and custom fields; each run copies it."""
    path = OUT / "csv-import-template.db"
    if path.exists():
        return path
    work = path.with_suffix(".partial.db")
    work.unlink(missing_ok=True)
    url = f"sqlite:///{work}"
    database = Database(create_db_engine(url), Settings(database_url=url, secret_key=SECRET))
    try:
        migrate.upgrade(database.engine)
        with database.sessionmaker() as session:
            admin = auth_service.bootstrap_admin(session, DEMO_ADMIN_EMAIL, DEMO_PASSWORD)
            actor = auth_service.actor_for(admin)
            for definition in custom_field_definitions():
                indexed = (definition.entity, definition.key) in INDEXED_FIELDS
                create_field(session, definition.model_copy(update={"indexed": indexed}), actor)
        with database.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        database.dispose()
    work.rename(path)
    return path


def import_once(csv_path: Path) -> dict[str, Any]:
    """Import the file into a fresh copy of the template; returns counts and rows/s."""
    store = OUT / "csv-import-run.db"
    for leftover in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copy(_template(), store)
    url = f"sqlite:///{store}"
    database = Database(create_db_engine(url), Settings(database_url=url, secret_key=SECRET))
    data = csv_path.read_bytes()
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 15:
            last[0] = now
            print(f"    {done:,}/{total:,} rows")

    try:
        with database.sessionmaker() as session:
            admin = auth_service.find_user_by_email(session, DEMO_ADMIN_EMAIL)
            assert admin is not None
            actor = auth_service.actor_for(admin, "import")
            started = time.perf_counter()
            report = import_contacts(session, data, actor, progress=progress)
            seconds = time.perf_counter() - started
    finally:
        database.dispose()
    if report.failed:
        print(f"    {report.failed} rows failed; first: {report.errors[:3]}")
    return {
        "rows": report.total_rows,
        "created": report.created,
        "failed": report.failed,
        "seconds": round(seconds, 2),
        "rows_per_second": round(report.total_rows / seconds, 1),
    }


def measure(rows: int, small_rows: int, runs: int, full: bool, seed: int) -> dict[str, Any]:
    small_path = contacts_csv(small_rows, seed)
    small = []
    for run in range(1, runs + 1):
        result = import_once(small_path)
        small.append(result)
        print(
            f"  run {run}: {result['rows']:,} rows in {result['seconds']:.1f} s = "
            f"{result['rows_per_second']:,.0f} rows/s ({result['failed']} failed)"
        )
    summary: dict[str, Any] = {
        "small_rows": small_rows,
        "small_runs": small,
        "small_median_rows_per_second": statistics.median(r["rows_per_second"] for r in small),
    }
    if full:
        full_path = contacts_csv(rows, seed)
        result = import_once(full_path)
        print(
            f"  full: {result['rows']:,} rows in {result['seconds']:.1f} s = "
            f"{result['rows_per_second']:,.0f} rows/s ({result['failed']} failed)"
        )
        summary["full"] = result
    return summary


def save(summary: dict[str, Any]) -> None:
    """Keep the figures in ``bench/out/csv_import.json``."""
    (OUT / "csv_import.json").write_text(json.dumps(summary, indent=2))


def print_summary(summary: dict[str, Any]) -> None:
    median = summary["small_median_rows_per_second"]
    verdict = "ok" if median >= BUDGET_ROWS_PER_SECOND else "UNDER BUDGET"
    print(
        f"\nCSV import, SQLite: median of {len(summary['small_runs'])} runs of "
        f"{summary['small_rows']:,} rows: {median:,.0f} rows/s  {verdict}"
    )
    if "full" in summary:
        full = summary["full"]
        verdict = "ok" if full["rows_per_second"] >= BUDGET_ROWS_PER_SECOND else "UNDER BUDGET"
        print(
            f"CSV import, SQLite: {full['rows']:,} rows in {full['seconds']:.1f} s: "
            f"{full['rows_per_second']:,.0f} rows/s  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the full run")
    parser.add_argument("--small-rows", type=int, default=100_000, help="rows of each short run")
    parser.add_argument("--runs", type=int, default=3, help="short runs (median reported)")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size run")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    summary = measure(args.rows, args.small_rows, args.runs, not args.no_full, args.seed)
    save(summary)
    print_summary(summary)


if __name__ == "__main__":
    main()
