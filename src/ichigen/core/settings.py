"""Settings from ``ICHIGEN_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can configure; read from ``ICHIGEN_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ICHIGEN_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Embedded stores and files.")
    database_url: str | None = Field(
        default=None, description="Record store URL; SQLite under the data dir when unset."
    )
    secret_key: str = Field(
        default="change-me-in-production",
        description="Signs session cookies and CSRF tokens. Set a long random value.",
    )
    default_phone_region: str = Field(default="JP", description="Region for national numbers.")
    default_locale: str = Field(default="en", description="UI language when a user has none.")
    cookie_secure: bool = Field(
        default=False, description="Mark the session cookie Secure (set when served over HTTPS)."
    )
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, description="Largest request body.")
    max_bulk_records: int = Field(default=1000, ge=1, le=10_000)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    auto_associate_company: bool = Field(
        default=True, description="Link a new contact to the company that owns its email domain."
    )
    db_pool_size: int = Field(default=10, ge=1)
    request_threads: int = Field(
        default=4,
        ge=1,
        le=200,
        description="Threads that run request handlers at once, per process. Handlers are "
        "mostly Python under one GIL: a few threads serve requests in turn, many slow the "
        "slowest ones down. More processes (`ichigen serve --workers`) add real capacity.",
    )
    sql_echo: bool = False
    collect_enabled: bool = Field(
        default=True,
        description="Run the event collector (`/v1/*`) and open the embedded event store in "
        "this process. The embedded store belongs to one process at a time.",
    )
    event_store_path: Path | None = Field(
        default=None, description="DuckDB event store file; `events.duckdb` in the data dir."
    )
    event_store_process: bool = Field(
        default=True,
        description="Serve the embedded event store from a process of its own, so that its "
        "writes, and the resolution of ingested events' persons, do not wait for the server's "
        "interpreter lock (false: in the server's process).",
    )
    event_store_memory_limit: str = Field(
        default="50%",
        description="Memory the embedded event store may use for its cache and queries "
        "(DuckDB syntax: `8GB`, or a share of the machine's memory such as `50%`).",
    )
    collect_max_message_bytes: int = Field(default=32 * 1024, ge=256)
    collect_max_batch_bytes: int = Field(default=500 * 1024, ge=1024)
    collect_max_batch_messages: int = Field(default=2500, ge=1)
    collect_key_grace_hours: int = Field(
        default=24, ge=0, description="How long a rotated write key keeps working."
    )
    collect_benchmark_discard: bool = Field(
        default=False,
        description="Benchmarks only: check and de-duplicate messages, then drop them instead "
        "of storing them, to measure the tracking endpoint's ceiling without the store.",
    )
    collect_debugger_size: int = Field(
        default=200,
        ge=10,
        le=10_000,
        description="Recent messages kept per source for the debugger.",
    )
    identity_on_ingest: bool = Field(
        default=True,
        description="Resolve each tracked event's person as it is stored (identity graph and "
        "profile traits); false stores events with an empty person id.",
    )
    anonymous_profile_retention_days: int = Field(
        default=395,
        ge=0,
        description="Anonymous profiles (visitors never identified) not seen for this many "
        "days are removed with their identifiers and traits, once an hour; 0 keeps them. "
        "Identified profiles are never removed by this.",
    )
    identity_contact_link_seconds: float = Field(
        default=5,
        gt=0,
        description="How often the server links new and edited CRM contacts' e-mail "
        "addresses and phone numbers into the identity graph.",
    )
    duplicates_scan_hours: float = Field(
        default=24,
        ge=0,
        description="Hours between the server's scans of every contact for duplicates, counted "
        "from the last scan that finished (manual ones too); 0 turns scheduled scans off.",
    )
    base_currency: str = Field(
        default="JPY",
        pattern="^[A-Z]{3}$",
        description="Currency that forecasts, quotas and pipeline totals are shown in; deal "
        "amounts in other currencies convert at the exchange rate of their date.",
    )
    reminders_enabled: bool = Field(
        default=True, description="Fire task reminders (in-app, and e-mail when SMTP is set)."
    )
    reminder_interval_seconds: float = Field(
        default=30, gt=0, description="How often the server looks for reminders due."
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for e-mail; none: off.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")
    smtp_ssl: bool = Field(default=False, description="Connect with TLS from the start (465).")
    smtp_from: str = Field(default="ichigen@localhost", description="Sender of e-mail.")
    smtp_timeout_seconds: float = Field(default=10, gt=0)
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where users reach ichigen; links in e-mail point here.",
    )

    def resolved_database_url(self) -> str:
        """The record store URL, defaulting to SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ichigen.db').resolve()}"

    def resolved_event_store_path(self) -> Path:
        """The embedded event store file, defaulting to the data dir."""
        return (self.event_store_path or self.data_dir / "events.duckdb").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
