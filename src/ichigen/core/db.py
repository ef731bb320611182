"""Record store: engines, sessions, the declarative base and portable column types."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Dialect,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    event,
    func,
    literal_column,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine, create_engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from ichigen.core.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every record-store table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: Primary keys: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
IdType = BigInteger().with_variant(Integer(), "sqlite")

#: Documents: JSONB on PostgreSQL (indexable), JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every engine (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_day(column: Any, dialect: str) -> ColumnElement[date]:
    """The UTC calendar day of a ``UTCDateTime`` column. No bound parameters: the expression
    also appears in GROUP BY, which PostgreSQL matches by its text."""
    if dialect == "postgresql":
        return type_coerce(func.date(func.timezone(literal_column("'UTC'"), column)), Date)
    return type_coerce(func.date(column), Date)


class DecimalType(TypeDecorator[Decimal]):
    """Exact NUMERIC on PostgreSQL; on SQLite a REAL rounded back to the column's scale."""

    impl = Numeric(20, 4)
    cache_ok = True

    def __init__(self, precision: int = 20, scale: int = 4) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float())
        return dialect.type_descriptor(Numeric(self.precision, self.scale))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return float(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        quantum = Decimal(1).scaleb(-self.scale)
        # Quantized, not normalised: PostgreSQL's NUMERIC(p, s) gives 10.00, and normalize()
        # would give 1E+1.
        return Decimal(str(value)).quantize(quantum)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA cache_size=-131072")
    cursor.execute("PRAGMA mmap_size=1073741824")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def _json_text(value: Any) -> str:
    # orjson keeps non-ASCII as is too, and is about ten times faster (imports write several
    # documents per row); json handles what it refuses, such as integers beyond 64 bits.
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


#: A run of digits long enough to be an integer that orjson would turn into a float.
_LONG_NUMBER = re.compile(rb"\d{19}")


def _json_value(text: str | bytes) -> Any:
    # orjson reads documents several times faster (every list page reads two per row); json
    # reads the rare ones with integers beyond 64 bits exactly, and what orjson refuses.
    raw = text.encode() if isinstance(text, str) else text
    if _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def create_db_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """An engine for the record store; SQLite gets WAL and foreign keys, PostgreSQL a pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=pool_size,
            # Keep non-ASCII text as is (not \u escapes), so LIKE on JSON documents (tags,
            # multi-select values) matches '展示会' on SQLite as it does on PostgreSQL.
            json_serializer=_json_text,
            json_deserializer=_json_value,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_deserializer=_json_value,
    )


class Database:
    """An engine and its session factory; one per process, built from settings."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.sessionmaker = sessionmaker(
            engine, expire_on_commit=False, info={"settings": settings}
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            create_db_engine(
                settings.resolved_database_url(),
                echo=settings.sql_echo,
                pool_size=settings.db_pool_size,
            ),
            settings,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends cleanly, rolls back otherwise."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def utc_from_iso(value: str) -> datetime:
    """An ISO 8601 time as aware UTC; ``ValueError`` if malformed or beyond the years 1-9999."""
    parsed = datetime.fromisoformat(value)
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"'{value}' is out of range in UTC") from None


def session_settings(session: Session) -> Settings:
    """The settings of the database a session belongs to (services read rules from here)."""
    settings = session.info.get("settings")
    if not isinstance(settings, Settings):
        raise RuntimeError("session was not made by ichigen.core.db.Database")
    return settings


def refresh_statistics(session: Session, table: str | None = None) -> None:
    """Let the query planner see the data as it now is: after a bulk load or a new index.

    SQLite never gathers statistics by itself, and without them it picks poor plans at a
    million rows (a custom-field index and a sort, where walking the sort's index would do);
    PostgreSQL's autovacuum gathers them in time, but not for a new expression index.
    """
    if table is not None and not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    session.execute(text(f"ANALYZE {table}" if table else "ANALYZE"))


def folded_text(length: int) -> Any:
    """A column of folded text compared byte-wise on every engine, so prefix ranges use indexes."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")
