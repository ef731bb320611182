"""Forecasting: exchange rates, quotas, the forecast per period, win rate and other sales figures.

Reports never walk deals one by one in Python: the database sums and counts them grouped by
owner, currency and day (and forecast category, stage or status), and only those group sums are
converted, at the rate of their day, into the report's currency. A quarter holds a few thousand
groups however many deals it has.

Money is added up unrounded in the report's currency and rounded once, to that currency's
minor unit (``babel.numbers.get_currency_precision``: JPY 0, USD 2), half up.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from babel.numbers import get_currency_precision, list_currencies
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session, aliased

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import can, require
from ichigen.auth.schemas import TeamRead, UserRead
from ichigen.core.audit import Actor, diff, record_change
from ichigen.core.clock import utcnow
from ichigen.core.db import DecimalType, session_settings, utc_day
from ichigen.core.errors import (
    Conflict,
    FieldError,
    IchigenError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.query import ListField, Sort, apply_sort_and_cursor, decode_cursor, encode_cursor
from ichigen.core.schemas import Page, RecordId
from ichigen.crm.activities import service as activities_service
from ichigen.crm.deals.models import (
    Deal,
    DealStageChange,
    DealStageTotal,
    ExchangeRate,
    Pipeline,
    Quota,
    Stage,
)

#: Audit entities of the records kept here.
RATES_ENTITY = "exchange_rates"
QUOTAS_ENTITY = "quotas"
#: Exchange rates are sales configuration, like pipelines: everyone who sees deals may read
#: them, those who may edit pipelines (admins and managers) may change them.
RATES_PERMISSION = "pipelines"

PeriodKind = Literal["month", "quarter", "year", "range"]
QuotaPeriod = Literal["month", "quarter"]
Grouping = Literal["rep", "team"]
ForecastCategory = Literal["commit", "best_case", "pipeline", "omitted"]
RowKind = Literal["user", "team", "no_team", "unassigned", "total"]

#: A deal without a category of its own is "commit" from this probability (percent) up,
#: "best case" from ``BEST_CASE_FROM`` up, and "pipeline" below.
COMMIT_FROM = 90
BEST_CASE_FROM = 50
#: The kinds of activity the dashboard counts, in the order its chart stacks them.
ACTIVITY_KINDS = ("call", "email", "meeting", "note", "task")
#: Months shown by the win-rate trend.
TREND_MONTHS = 12

ZERO = Decimal(0)
HUNDRED = Decimal(100)
ONE_DECIMAL = Decimal("0.1")
#: Largest amount a rate may have: the column keeps 14 digits before the point.
_MAX_RATE = Decimal(10) ** 14
_MAX_AMOUNT = Decimal(10) ** 16
_PERIOD = re.compile(r"(\d{4})(?:-Q([1-4])|-(\d{2}))?")
_CURRENCIES = frozenset(c for c in list_currencies() if re.fullmatch("[A-Z]{3}", c))

Loc = tuple[str | int, ...]
#: A grouped query of a report (its rows are unpacked by position).
Rows = Select[*tuple[Any, ...]]


# ----------------------------------------------------------------------------- periods


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after the month of ``day``."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """A stretch of days a report covers: ``start`` included, ``end`` (the day after) not."""

    kind: PeriodKind
    start: date
    end: date

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def start_at(self) -> datetime:
        """The first moment of the period, in UTC."""
        return datetime.combine(self.start, time(), UTC)

    @property
    def end_at(self) -> datetime:
        """The first moment after the period, in UTC."""
        return datetime.combine(self.end, time(), UTC)

    @property
    def label(self) -> str:
        """``2026``, ``2026-Q4``, ``2026-11``, or ``2026-10-01..2026-12-31`` for a range."""
        year = f"{self.start.year:04d}"
        if self.kind == "year":
            return year
        if self.kind == "quarter":
            return f"{year}-Q{(self.start.month - 1) // 3 + 1}"
        if self.kind == "month":
            return f"{year}-{self.start.month:02d}"
        return f"{self.start.isoformat()}..{self.last_day.isoformat()}"

    def months(self) -> list[Period]:
        """The calendar months that start within the period."""
        found: list[Period] = []
        month = self.start if self.start.day == 1 else add_months(self.start, 1)
        while month < self.end:
            found.append(month_of(month))
            month = add_months(month, 1)
        return found


def month_of(day: date) -> Period:
    """The month that holds ``day``."""
    start = day.replace(day=1)
    return Period("month", start, add_months(start, 1))


def quarter_of(day: date) -> Period:
    """The calendar quarter that holds ``day``."""
    start = date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    return Period("quarter", start, add_months(start, 3))


def year_of(day: date) -> Period:
    return Period("year", date(day.year, 1, 1), date(day.year + 1, 1, 1))


def parse_period(text: str, loc: Loc = ("period",)) -> Period:
    """A year (``2026``), a quarter (``2026-Q4``) or a month (``2026-11``); else a 422."""
    found = _PERIOD.fullmatch(text.strip().upper())
    year = int(found.group(1)) if found else 0
    month = int(found.group(3)) if found and found.group(3) else 1
    if found is None or not 1 <= year <= 9998 or not 1 <= month <= 12:
        raise ValidationFailed(
            f"'{text}' is not a period: write a year (2026), a quarter (2026-Q4) or a month "
            "(2026-11).",
            [FieldError(loc, "not a period like 2026, 2026-Q4 or 2026-11")],
        )
    if found.group(2):
        return quarter_of(date(year, int(found.group(2)) * 3, 1))
    if found.group(3):
        return month_of(date(year, month, 1))
    return year_of(date(year, 1, 1))


def date_range(first: date, last: date, where: Loc = ()) -> Period:
    """The days from ``first`` to ``last``, both included."""
    if last < first:
        raise ValidationFailed(
            f"The range ends ({last.isoformat()}) before it starts ({first.isoformat()}).",
            [FieldError((*where, "to"), "is before the start of the range")],
        )
    if last >= date(9999, 12, 31):
        raise ValidationFailed(
            "The range ends too late.", [FieldError((*where, "to"), "must be before 9999-12-31")]
        )
    return Period("range", first, last + timedelta(days=1))


def quota_period(kind: QuotaPeriod, start: date, loc: Loc = ("period_start",)) -> Period:
    """The month or quarter a quota covers; it must start on the period's first day."""
    period = month_of(start) if kind == "month" else quarter_of(start)
    if period.start != start:
        raise ValidationFailed(
            f"A {kind}'s quota starts on the first day of the {kind}: {period.start.isoformat()}"
            f", not {start.isoformat()}.",
            [FieldError(loc, f"is not the first day of a {kind}")],
        )
    return period


# ----------------------------------------------------------------------------- currencies


def currency_code(value: str, loc: Loc = ("currency",)) -> str:
    """An ISO 4217 currency code (upper-cased), or a 422 naming the field."""
    code = value.strip().upper()
    if code not in _CURRENCIES:
        raise ValidationFailed(
            f"'{value}' is not an ISO 4217 currency code.", [FieldError(loc, "unknown currency")]
        )
    return code


def currency_scale(currency: str) -> int:
    """Digits after the point in the currency's minor unit (JPY 0, USD 2, BHD 3)."""
    return int(get_currency_precision(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half up to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-currency_scale(currency)), ROUND_HALF_UP)


def _percent(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole == 0:
        return None
    return (part * HUNDRED / whole).quantize(ONE_DECIMAL, ROUND_HALF_UP)


def _plain(value: Decimal) -> Decimal:
    """A decimal without trailing zeros and without an exponent (``151.25``, ``150``)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _amount_problem(amount: Decimal, currency: str | None) -> str | None:
    """What is wrong with a money amount, if anything."""
    if not amount.is_finite() or amount < 0:
        return "must be 0 or more"
    if amount >= _MAX_AMOUNT:
        return "is too large"
    exponent = amount.normalize().as_tuple().exponent
    scale = currency_scale(currency) if currency else 4
    if isinstance(exponent, int) and -exponent > scale:
        if scale == 0:
            return f"{currency} amounts have no decimal places"
        return f"has more than {scale} decimal places"
    return None


# ----------------------------------------------------------------------------- exchange rates


class ExchangeRateSet(BaseModel):
    """A rate to set: how many units of the base currency one unit of ``currency`` was worth
    from ``rate_date`` on (until a later rate)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"currency": "USD", "rate_date": "2026-11-01", "rate": "151.25"}]
        },
    )

    currency: Annotated[str, Field(min_length=3, max_length=3)]
    rate_date: date
    rate: Annotated[Decimal, Field(gt=0, lt=_MAX_RATE, decimal_places=10, allow_inf_nan=False)]


class ExchangeRateRead(BaseModel):
    """One stored rate: units of ``base_currency`` per unit of ``currency`` from ``rate_date``."""

    id: int
    base_currency: str
    currency: str
    rate_date: date
    rate: Decimal
    created_at: datetime


class Conversion(BaseModel):
    """An amount converted at the latest rates on or before a day."""

    amount: Decimal
    currency: str
    to_currency: str
    on: date
    converted: Decimal


class MissingRate(IchigenError):
    """No exchange rate on or before a day: a 422 that names the currency and the day."""

    def __init__(self, currency: str, on: date, loc: Loc = ("currency",)) -> None:
        super().__init__(
            f"There is no exchange rate for {currency} on or before {on.isoformat()}; set one "
            f"(for example: ichigen rates set {currency} {on.isoformat()} RATE).",
            [FieldError(loc, f"no {currency} rate on or before {on.isoformat()}")],
            422,
            "Missing exchange rate",
            "missing-exchange-rate",
        )
        self.currency = currency
        self.on = on


def _rate_read(row: ExchangeRate) -> ExchangeRateRead:
    return ExchangeRateRead(
        id=row.id,
        base_currency=row.base_currency,
        currency=row.currency,
        rate_date=row.rate_date,
        rate=_plain(row.rate),
        created_at=row.created_at,
    )


def _rate_snapshot(row: ExchangeRate) -> dict[str, Any]:
    return {
        "base_currency": row.base_currency,
        "currency": row.currency,
        "rate_date": row.rate_date,
        "rate": _plain(row.rate),
    }


def set_rate(
    session: Session, currency: str, rate_date: date, rate: Decimal, actor: Actor
) -> ExchangeRateRead:
    """Set what one unit of ``currency`` is worth in the base currency from ``rate_date`` on
    (``settings.base_currency``); a rate set before for that day is replaced."""
    require(actor, RATES_PERMISSION, "write")
    base = session_settings(session).base_currency
    code = currency_code(currency)
    errors: list[FieldError] = []
    if code == base:
        errors.append(FieldError(("currency",), f"{base} is the base currency; its rate is 1"))
    if not rate.is_finite() or rate <= 0:
        errors.append(FieldError(("rate",), "must be more than 0"))
    elif rate >= _MAX_RATE:
        errors.append(FieldError(("rate",), "is too large"))
    else:
        exponent = rate.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -10:
            errors.append(FieldError(("rate",), "has more than 10 decimal places"))
    if errors:
        raise ValidationFailed("The exchange rate is not valid.", errors)
    row = session.scalar(
        select(ExchangeRate).where(
            ExchangeRate.base_currency == base,
            ExchangeRate.currency == code,
            ExchangeRate.rate_date == rate_date,
        )
    )
    if row is None:
        row = ExchangeRate(
            base_currency=base, currency=code, rate_date=rate_date, rate=rate, created_at=utcnow()
        )
        session.add(row)
        session.flush()
        record_change(session, actor, RATES_ENTITY, row.id, "create", diff({}, _rate_snapshot(row)))
    else:
        before = _rate_snapshot(row)
        row.rate = rate
        changes = diff(before, _rate_snapshot(row))
        if changes:
            record_change(session, actor, RATES_ENTITY, row.id, "update", changes)
    session.commit()
    return _rate_read(row)


def delete_rate(session: Session, rate_id: int, actor: Actor) -> None:
    """Remove a stored rate; amounts of its days convert at the rate before it again."""
    require(actor, RATES_PERMISSION, "write")
    row = session.get(ExchangeRate, rate_id)
    if row is None:
        raise NotFound(f"Exchange rate {rate_id} does not exist.")
    record_change(session, actor, RATES_ENTITY, row.id, "delete", diff(_rate_snapshot(row), {}))
    session.delete(row)
    session.commit()


def get_rate(session: Session, rate_id: int, actor: Actor) -> ExchangeRateRead:
    require(actor, RATES_PERMISSION, "read")
    row = session.get(ExchangeRate, rate_id)
    if row is None:
        raise NotFound(f"Exchange rate {rate_id} does not exist.")
    return _rate_read(row)


_RATE_SORT = Sort("rate_date", ListField(ExchangeRate.rate_date, "date", nullable=False), True)


def list_rates(
    session: Session,
    actor: Actor,
    *,
    currency: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[ExchangeRateRead]:
    """The rates to the base currency, newest day first, optionally of one currency."""
    require(actor, RATES_PERMISSION, "read")
    settings = session_settings(session)
    stmt: Select[Any] = select(ExchangeRate).where(
        ExchangeRate.base_currency == settings.base_currency
    )
    if currency:
        stmt = stmt.where(ExchangeRate.currency == currency_code(currency, ("query", "currency")))
    after = decode_cursor(settings.secret_key, _RATE_SORT, cursor) if cursor else None
    stmt = apply_sort_and_cursor(stmt, _RATE_SORT, ExchangeRate.id, after).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(
            settings.secret_key, _RATE_SORT, rows[-1].rate_date, rows[-1].id
        )
    return Page[ExchangeRateRead](items=[_rate_read(r) for r in rows], next_cursor=next_cursor)


def rate_currencies(session: Session) -> list[str]:
    """The base currency and every currency that has a rate, for currency pickers."""
    base = session_settings(session).base_currency
    found = session.scalars(
        select(ExchangeRate.currency).where(ExchangeRate.base_currency == base).distinct()
    )
    return [base, *sorted(set(found) - {base})]


@dataclass
class RateBook:
    """Rates to the base currency by day, loaded once for a whole report.

    ``factor`` answers from memory (a binary search per currency and day, then a cache), so a
    report converts thousands of group sums without a query each.
    """

    base: str
    days: dict[str, list[date]]
    rates: dict[str, list[Decimal]]
    #: The first day the book answers for (``None``: any day).
    since: date | None = None
    _factors: dict[tuple[str, str, date], Decimal] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        session: Session,
        currencies: Iterable[str],
        until: date | None = None,
        *,
        since: date | None = None,
    ) -> RateBook:
        """The rates of ``currencies`` (up to ``until``) to the base currency of the settings.

        With ``since``, only the rates that can apply on that day or later are read: each
        currency's latest rate on or before ``since``, and those after it (a board converting
        at today's rates reads one rate per currency, not a year of them).
        """
        base = session_settings(session).base_currency
        wanted = sorted(set(currencies) - {base})
        days: dict[str, list[date]] = {c: [] for c in wanted}
        rates: dict[str, list[Decimal]] = {c: [] for c in wanted}
        if wanted:
            stmt = (
                select(ExchangeRate.currency, ExchangeRate.rate_date, ExchangeRate.rate)
                .where(ExchangeRate.base_currency == base, ExchangeRate.currency.in_(wanted))
                .order_by(ExchangeRate.currency, ExchangeRate.rate_date)
            )
            if until is not None:
                stmt = stmt.where(ExchangeRate.rate_date <= until)
            if since is not None:
                latest = session.execute(
                    select(ExchangeRate.currency, func.max(ExchangeRate.rate_date))
                    .where(
                        ExchangeRate.base_currency == base,
                        ExchangeRate.currency.in_(wanted),
                        ExchangeRate.rate_date <= since,
                    )
                    .group_by(ExchangeRate.currency)
                ).all()
                first = dict(latest)
                stmt = stmt.where(
                    or_(
                        *(
                            and_(ExchangeRate.currency == c, ExchangeRate.rate_date >= first[c])
                            if c in first
                            else ExchangeRate.currency == c
                            for c in wanted
                        )
                    )
                )
            for code, day, rate in session.execute(stmt):
                days[code].append(day)
                rates[code].append(rate)
        return cls(base, days, rates, since)

    def to_base(self, currency: str, on: date) -> Decimal:
        """Units of the base currency per unit of ``currency`` on a day (latest rate on or
        before it)."""
        if currency == self.base:
            return Decimal(1)
        if self.since is not None and on < self.since:
            raise ValueError(f"this rate book holds the rates from {self.since}, not {on}")
        days = self.days.get(currency, [])
        index = bisect_right(days, on)
        if index == 0:
            raise MissingRate(currency, on)
        return self.rates[currency][index - 1]

    def factor(self, currency: str, to_currency: str, on: date) -> Decimal:
        """What one unit of ``currency`` is worth in ``to_currency`` on a day (cross rates go
        through the base currency)."""
        if currency == to_currency:
            return Decimal(1)
        key = (currency, to_currency, on)
        found = self._factors.get(key)
        if found is None:
            found = self.to_base(currency, on) / self.to_base(to_currency, on)
            self._factors[key] = found
        return found

    def convert(self, amount: Decimal, currency: str, to_currency: str, on: date) -> Decimal:
        """``amount`` in ``to_currency``, unrounded (reports round their totals once)."""
        return amount * self.factor(currency, to_currency, on)


def convert(
    session: Session, amount: Decimal, currency: str, to_currency: str, on: date
) -> Decimal:
    """``amount`` of ``currency`` in ``to_currency`` at the latest rates on or before ``on``,
    rounded half up to ``to_currency``'s minor unit; a missing rate is a 422 naming it."""
    source = currency_code(currency, ("currency",))
    target = currency_code(to_currency, ("to_currency",))
    book = RateBook.load(session, {source, target}, on, since=on)
    return round_money(book.convert(amount, source, target, on), target)


# ----------------------------------------------------------------------------- quotas


class QuotaCreate(BaseModel):
    """A target for one user or one team (exactly one of them) over a month or a quarter."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_id": 12,
                    "period_kind": "quarter",
                    "period_start": "2026-10-01",
                    "amount": "10000000",
                    "currency": "JPY",
                }
            ]
        },
    )

    user_id: RecordId | None = None
    team_id: RecordId | None = None
    period_kind: QuotaPeriod
    #: The first day of the month or quarter.
    period_start: date
    amount: Annotated[Decimal, Field(ge=0, lt=_MAX_AMOUNT, allow_inf_nan=False)]
    currency: Annotated[str, Field(min_length=3, max_length=3)]


class QuotaUpdate(BaseModel):
    """The fields of a quota that may change (the holder and the period may not)."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[Decimal, Field(ge=0, lt=_MAX_AMOUNT, allow_inf_nan=False)] | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None


class QuotaRead(BaseModel):
    id: int
    user_id: int | None
    team_id: int | None
    period_kind: QuotaPeriod
    period_start: date
    #: ``2026-Q4`` or ``2026-11``.
    period: str
    amount: Decimal
    currency: str
    version: int
    created_at: datetime
    updated_at: datetime


_QUOTA_AUDITED = ("user_id", "team_id", "period_kind", "period_start", "amount", "currency")


def _quota_snapshot(row: Quota) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _QUOTA_AUDITED}
    values["amount"] = _plain(row.amount)
    return values


def _quota_read(row: Quota) -> QuotaRead:
    kind: QuotaPeriod = "month" if row.period_kind == "month" else "quarter"
    period = month_of(row.period_start) if kind == "month" else quarter_of(row.period_start)
    return QuotaRead(
        id=row.id,
        user_id=row.user_id,
        team_id=row.team_id,
        period_kind=kind,
        period_start=row.period_start,
        period=period.label,
        amount=round_money(row.amount, row.currency),
        currency=row.currency,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_quota(session: Session, data: QuotaCreate) -> tuple[str, list[FieldError]]:
    """The quota's currency code and the problems of its fields."""
    errors: list[FieldError] = []
    if (data.user_id is None) == (data.team_id is None):
        errors.append(FieldError(("user_id",), "give a user or a team, not both or neither"))
    if data.user_id is not None:
        try:
            holder = auth_service.get_user(session, data.user_id)
            if not holder.is_active:
                errors.append(FieldError(("user_id",), "the user is inactive"))
        except NotFound:
            errors.append(FieldError(("user_id",), "no such user"))
    if data.team_id is not None:
        try:
            auth_service.get_team(session, data.team_id)
        except NotFound:
            errors.append(FieldError(("team_id",), "no such team"))
    try:
        quota_period(data.period_kind, data.period_start)
    except ValidationFailed as exc:
        errors += exc.errors
    code = ""
    try:
        code = currency_code(data.currency)
    except ValidationFailed as exc:
        errors += exc.errors
    problem = _amount_problem(data.amount, code or None)
    if problem:
        errors.append(FieldError(("amount",), problem))
    return code, errors


def _existing_quota(session: Session, data: QuotaCreate) -> Quota | None:
    return session.scalar(
        select(Quota).where(
            Quota.user_id == data.user_id if data.user_id is not None else Quota.user_id.is_(None),
            Quota.team_id == data.team_id if data.team_id is not None else Quota.team_id.is_(None),
            Quota.period_kind == data.period_kind,
            Quota.period_start == data.period_start,
        )
    )


def _write_quota(session: Session, data: QuotaCreate, actor: Actor, *, replace: bool) -> QuotaRead:
    require(actor, QUOTAS_ENTITY, "write")
    code, errors = _check_quota(session, data)
    if errors:
        raise ValidationFailed("The quota has invalid fields.", errors)
    row = _existing_quota(session, data)
    now = utcnow()
    if row is not None and not replace:
        raise Conflict(
            f"Quota {row.id} already covers this {data.period_kind} for this "
            f"{'user' if data.user_id else 'team'}; change that one.",
            [FieldError(("period_start",), "already has a quota")],
        )
    if row is None:
        row = Quota(
            user_id=data.user_id,
            team_id=data.team_id,
            period_kind=data.period_kind,
            period_start=data.period_start,
            amount=data.amount,
            currency=code,
            version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        record_change(
            session, actor, QUOTAS_ENTITY, row.id, "create", diff({}, _quota_snapshot(row))
        )
    else:
        before = _quota_snapshot(row)
        row.amount, row.currency = data.amount, code
        changes = diff(before, _quota_snapshot(row))
        if changes:
            row.version += 1
            row.updated_at = now
            record_change(session, actor, QUOTAS_ENTITY, row.id, "update", changes)
    session.commit()
    return _quota_read(row)


def create_quota(session: Session, data: QuotaCreate, actor: Actor) -> QuotaRead:
    """Add a quota; one per user (or team) and period, a second one is a 409."""
    return _write_quota(session, data, actor, replace=False)


def set_quota(session: Session, data: QuotaCreate, actor: Actor) -> QuotaRead:
    """Add a quota, or change the amount of the one the user (or team) has for that period."""
    return _write_quota(session, data, actor, replace=True)


def _quota_row(session: Session, quota_id: int) -> Quota:
    row = session.get(Quota, quota_id)
    if row is None:
        raise NotFound(f"Quota {quota_id} does not exist.")
    return row


def get_quota(session: Session, quota_id: int, actor: Actor) -> QuotaRead:
    require(actor, QUOTAS_ENTITY, "read")
    return _quota_read(_quota_row(session, quota_id))


def _check_version(row: Quota, if_version: int | None) -> None:
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"Quota {row.id} was changed by someone else (now version {row.version}); "
            "reload it and try again."
        )


def update_quota(
    session: Session,
    quota_id: int,
    data: QuotaUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> QuotaRead:
    """Change a quota's amount or currency."""
    require(actor, QUOTAS_ENTITY, "write")
    row = _quota_row(session, quota_id)
    _check_version(row, if_version)
    fields = data.model_dump(exclude_unset=True)
    errors: list[FieldError] = []
    for name in ("amount", "currency"):
        if name in fields and fields[name] is None:
            errors.append(FieldError((name,), "cannot be empty"))
    code = row.currency
    if fields.get("currency"):
        try:
            code = currency_code(fields["currency"])
        except ValidationFailed as exc:
            errors += exc.errors
    amount = fields.get("amount") or row.amount
    problem = _amount_problem(amount, code)
    if problem:
        errors.append(FieldError(("amount",), problem))
    if errors:
        raise ValidationFailed("The quota has invalid fields.", errors)
    before = _quota_snapshot(row)
    row.amount, row.currency = amount, code
    changes = diff(before, _quota_snapshot(row))
    if changes:
        row.version += 1
        row.updated_at = utcnow()
        record_change(session, actor, QUOTAS_ENTITY, row.id, "update", changes)
    session.commit()
    return _quota_read(row)


def delete_quota(
    session: Session, quota_id: int, actor: Actor, *, if_version: int | None = None
) -> None:
    """Remove a quota."""
    require(actor, QUOTAS_ENTITY, "write")
    row = _quota_row(session, quota_id)
    _check_version(row, if_version)
    record_change(session, actor, QUOTAS_ENTITY, row.id, "delete", diff(_quota_snapshot(row), {}))
    session.delete(row)
    session.commit()


_QUOTA_SORT = Sort("period_start", ListField(Quota.period_start, "date", nullable=False), True)


def list_quotas(
    session: Session,
    actor: Actor,
    *,
    period: Period | None = None,
    user_id: int | None = None,
    team_id: int | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[QuotaRead]:
    """Quotas, latest period first; those starting within ``period``, of a user or a team."""
    require(actor, QUOTAS_ENTITY, "read")
    secret = session_settings(session).secret_key
    stmt: Select[Any] = select(Quota)
    if period is not None:
        stmt = stmt.where(Quota.period_start >= period.start, Quota.period_start < period.end)
    if user_id is not None:
        stmt = stmt.where(Quota.user_id == user_id)
    if team_id is not None:
        stmt = stmt.where(Quota.team_id == team_id)
    after = decode_cursor(secret, _QUOTA_SORT, cursor) if cursor else None
    stmt = apply_sort_and_cursor(stmt, _QUOTA_SORT, Quota.id, after).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(secret, _QUOTA_SORT, rows[-1].period_start, rows[-1].id)
    return Page[QuotaRead](items=[_quota_read(r) for r in rows], next_cursor=next_cursor)


def _period_quota(
    quotas: Sequence[Quota], period: Period, book: RateBook, currency: str
) -> Decimal | None:
    """One holder's quota for a period, from the quotas that start within it.

    A month has its month quota. A quarter has its quarter quota, or else the sum of its
    months' quotas; a year adds up its quarters that way. Each quota converts at the rate of
    its first day. None when no quota applies.
    """
    if period.kind == "month":
        chosen = [q for q in quotas if q.period_kind == "month" and q.period_start == period.start]
    else:
        quarters = {q.period_start for q in quotas if q.period_kind == "quarter"}
        chosen = [
            q
            for q in quotas
            if q.period_kind == "quarter" or quarter_of(q.period_start).start not in quarters
        ]
    if not chosen:
        return None
    return sum((book.convert(q.amount, q.currency, currency, q.period_start) for q in chosen), ZERO)


# ----------------------------------------------------------------------------- report scope


@dataclass(frozen=True)
class ReportScope:
    """What a report covers: the days, the currency it is shown in, how rows are grouped, and
    optionally one pipeline."""

    period: Period
    currency: str
    group: Grouping = "rep"
    pipeline_id: int | None = None


def report_scope(
    session: Session,
    period: Period | str,
    *,
    group: str = "rep",
    currency: str | None = None,
    pipeline_id: int | None = None,
    where: Loc = (),
) -> ReportScope:
    """Check a report's parameters; ``where`` prefixes the field paths of errors (``query``)."""
    if isinstance(period, str):
        period = parse_period(period, (*where, "period"))
    code = currency_code(currency or session_settings(session).base_currency, (*where, "currency"))
    if group not in ("rep", "team"):
        raise ValidationFailed(
            f"Cannot group by '{group}'; group by rep or team.",
            [FieldError((*where, "group"), "must be rep or team")],
        )
    if pipeline_id is not None and session.get(Pipeline, pipeline_id) is None:
        raise ValidationFailed(
            f"Pipeline {pipeline_id} does not exist.",
            [FieldError((*where, "pipeline_id"), "no such pipeline")],
        )
    return ReportScope(period, code, "team" if group == "team" else "rep", pipeline_id)


# ----------------------------------------------------------------------------- report rows


class ReportRowBase(BaseModel):
    """Who a row of a report is about: a rep, a team, reps without a team, or unowned deals."""

    key: str
    kind: RowKind
    user_id: int | None = None
    team_id: int | None = None
    name: str = ""


@dataclass(frozen=True)
class _Holder:
    key: str
    kind: RowKind
    user_id: int | None = None
    team_id: int | None = None
    name: str = ""

    def head(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "user_id": self.user_id,
            "team_id": self.team_id,
            "name": self.name,
        }


_TOTAL = _Holder("total", "total")
_UNASSIGNED = _Holder("unassigned", "unassigned")
_NO_TEAM = _Holder("no_team", "no_team")
_ORDER = {"user": 0, "team": 0, "no_team": 1, "unassigned": 2, "total": 3}


class _People:
    """Users and teams, to put deal owners into report rows (a rep's team is their team now)."""

    def __init__(self, session: Session) -> None:
        self.users: dict[int, UserRead] = {u.id: u for u in auth_service.list_users(session)}
        self.teams: dict[int, TeamRead] = {t.id: t for t in auth_service.list_teams(session)}
        self._rows: dict[tuple[int | None, str], _Holder] = {}

    def user_row(self, user_id: int) -> _Holder:
        user = self.users.get(user_id)
        return _Holder(
            f"user:{user_id}",
            "user",
            user_id,
            user.team_id if user else None,
            user.name if user else str(user_id),
        )

    def team_row(self, team_id: int | None) -> _Holder:
        if team_id is None or team_id not in self.teams:
            return _NO_TEAM
        return _Holder(f"team:{team_id}", "team", None, team_id, self.teams[team_id].name)

    def row(self, owner_id: int | None, group: Grouping) -> _Holder:
        """The row a deal owner's figures go to (reports ask once per group of deals)."""
        found = self._rows.get((owner_id, group))
        if found is None:
            if owner_id is None:
                found = _UNASSIGNED
            elif group == "rep":
                found = self.user_row(owner_id)
            else:
                user = self.users.get(owner_id)
                found = self.team_row(user.team_id if user else None)
            self._rows[(owner_id, group)] = found
        return found


def _sorted(holders: Iterable[_Holder]) -> list[_Holder]:
    return sorted(holders, key=lambda h: (_ORDER[h.kind], h.name.casefold(), h.key))


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _days_between(first: Any, last: Any, dialect: str) -> ColumnElement[int]:
    """Whole calendar days (UTC) from one timestamp column to another."""
    if dialect == "postgresql":
        return type_coerce(utc_day(last, dialect) - utc_day(first, dialect), Integer)
    return type_coerce(
        cast(func.julianday(func.date(last)) - func.julianday(func.date(first)), Integer), Integer
    )


#: Sums are read back as exact decimals on both engines (SQLite sums REAL columns).
_SUM = DecimalType(30, 4)


def _sum(expr: Any) -> ColumnElement[Decimal]:
    return type_coerce(func.sum(expr), _SUM)


def _in_pipeline(scope: ReportScope) -> list[ColumnElement[bool]]:
    """The condition that keeps a report to its pipeline, if it has one."""
    return [Deal.pipeline_id == scope.pipeline_id] if scope.pipeline_id is not None else []


def deal_probability() -> ColumnElement[int]:
    """A deal's probability: the one set on the deal, else its stage's (needs ``stages``)."""
    return func.coalesce(Deal.probability_override, Stage.probability)


def deal_category() -> ColumnElement[str]:
    """A deal's forecast category: its own, else derived from its probability.

    Written without bound parameters, since the expression is grouped on too.
    """
    probability = deal_probability()
    return case(
        (Deal.forecast_category.is_not(None), Deal.forecast_category),
        (probability >= literal_column(str(COMMIT_FROM)), literal_column("'commit'")),
        (probability >= literal_column(str(BEST_CASE_FROM)), literal_column("'best_case'")),
        else_=literal_column("'pipeline'"),
    )


# ----------------------------------------------------------------------------- forecast


class ForecastRow(ReportRowBase):
    """One rep's (or team's) forecast for the period, in the report's currency.

    ``commit``, ``best_case`` and ``pipeline`` add up the open deals of each category (they do
    not include each other or the won deals); ``weighted`` is ``won`` plus each open deal's
    amount times its probability. Deals a rep marked ``omitted`` count in ``omitted`` only.
    """

    won: Decimal = ZERO
    won_count: int = 0
    commit: Decimal = ZERO
    best_case: Decimal = ZERO
    pipeline: Decimal = ZERO
    omitted: Decimal = ZERO
    open_count: int = 0
    weighted: Decimal = ZERO
    quota: Decimal | None = None
    #: ``won`` as a percentage of ``quota`` (one decimal); none without a quota.
    attainment: Decimal | None = None


class ForecastRead(BaseModel):
    """The forecast of a period, per rep or team, with a total row."""

    period: str
    start: date
    #: The period's last day.
    end: date
    currency: str
    group: Grouping
    pipeline_id: int | None
    rows: list[ForecastRow]
    total: ForecastRow


@dataclass
class _ForecastSums:
    won: Decimal = ZERO
    won_count: int = 0
    categories: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    open_count: int = 0
    weighted_open: Decimal = ZERO
    quota: Decimal | None = None

    def add(self, other: _ForecastSums) -> None:
        self.won += other.won
        self.won_count += other.won_count
        for name, value in other.categories.items():
            self.categories[name] += value
        self.open_count += other.open_count
        self.weighted_open += other.weighted_open
        if other.quota is not None:
            self.quota = (self.quota or ZERO) + other.quota

    def row(self, holder: _Holder, currency: str) -> ForecastRow:
        def money(value: Decimal) -> Decimal:
            return round_money(value, currency)

        won = money(self.won)
        quota = money(self.quota) if self.quota is not None else None
        return ForecastRow(
            **holder.head(),
            won=won,
            won_count=self.won_count,
            commit=money(self.categories["commit"]),
            best_case=money(self.categories["best_case"]),
            pipeline=money(self.categories["pipeline"]),
            omitted=money(self.categories["omitted"]),
            open_count=self.open_count,
            weighted=money(self.won + self.weighted_open),
            quota=quota,
            attainment=_percent(won, quota) if quota is not None else None,
        )


def _foreign_day(day: Any, scope: ReportScope) -> ColumnElement[date | None]:
    """The day, for amounts in another currency than the report's (they convert at that day's
    rate); none for amounts already in it, so that those group without it."""
    return case((Deal.currency == scope.currency, None), else_=day)


def _open_in_period(scope: ReportScope) -> Rows:
    """Open deals expected to close in the period, by owner, currency, day and category: the
    count, the amount and the amount times the probability (percent)."""
    deals = (
        select(
            Deal.owner_id.label("owner_id"),
            Deal.currency.label("currency"),
            _foreign_day(Deal.expected_close_date, scope).label("day"),
            deal_category().label("category"),
            Deal.amount.label("amount"),
            (Deal.amount * deal_probability()).label("weighted"),
        )
        .join(Stage, Stage.id == Deal.stage_id)
        .where(
            Deal.status == "open",
            Deal.expected_close_date >= scope.period.start,
            Deal.expected_close_date < scope.period.end,
            *_in_pipeline(scope),
        )
        .subquery()
    )
    keys = (deals.c.owner_id, deals.c.currency, deals.c.day, deals.c.category)
    return select(*keys, func.count(), _sum(deals.c.amount), _sum(deals.c.weighted)).group_by(*keys)


def _closed_in_period(scope: ReportScope, dialect: str, statuses: Sequence[str]) -> Rows:
    """Deals closed in the period with these statuses, by owner, status, currency and day (of
    the close, in UTC): the count and the amount."""
    deals = (
        select(
            Deal.owner_id.label("owner_id"),
            Deal.status.label("status"),
            Deal.currency.label("currency"),
            _foreign_day(utc_day(Deal.closed_at, dialect), scope).label("day"),
            Deal.amount.label("amount"),
        )
        .where(
            Deal.status.in_(statuses),
            Deal.closed_at >= scope.period.start_at,
            Deal.closed_at < scope.period.end_at,
            *_in_pipeline(scope),
        )
        .subquery()
    )
    keys = (deals.c.owner_id, deals.c.status, deals.c.currency, deals.c.day)
    return select(*keys, func.count(), _sum(deals.c.amount)).group_by(*keys)


def _quotas_within(session: Session, period: Period) -> list[Quota]:
    return list(
        session.scalars(
            select(Quota).where(Quota.period_start >= period.start, Quota.period_start < period.end)
        )
    )


def _quota_by_holder(
    quotas: Sequence[Quota],
    scope: ReportScope,
    people: _People,
    book: RateBook,
) -> dict[_Holder, Decimal]:
    """Each row's quota: a rep's own; a team's own, or else its members' together."""
    by_user: dict[int, list[Quota]] = defaultdict(list)
    by_team: dict[int, list[Quota]] = defaultdict(list)
    for quota in quotas:
        if quota.user_id is not None:
            by_user[quota.user_id].append(quota)
        elif quota.team_id is not None:
            by_team[quota.team_id].append(quota)
    users: dict[int, Decimal] = {}
    for user_id, held in by_user.items():
        amount = _period_quota(held, scope.period, book, scope.currency)
        if amount is not None:
            users[user_id] = amount
    if scope.group == "rep":
        return {people.user_row(user_id): amount for user_id, amount in users.items()}
    found: dict[_Holder, Decimal] = {}
    for user_id, amount in users.items():
        holder = people.row(user_id, "team")
        found[holder] = found.get(holder, ZERO) + amount
    for team_id, held in by_team.items():
        amount = _period_quota(held, scope.period, book, scope.currency)
        if amount is not None:
            found[people.team_row(team_id)] = amount
    return found


def forecast(session: Session, actor: Actor, scope: ReportScope) -> ForecastRead:
    """The period's forecast per rep or team: won, open deals by category, the weighted
    forecast, and the quota with its attainment (quotas only for those who may read them).

    Open deals count in the period of their expected close date and convert at that day's
    rate; won deals count in the period they were closed in, at the rate of that day; lost
    deals never count.
    """
    require(actor, "deals", "read")
    dialect = _dialect(session)
    opened = session.execute(_open_in_period(scope)).all()
    won = session.execute(_closed_in_period(scope, dialect, ("won",))).all()
    quotas = _quotas_within(session, scope.period) if can(actor, "quotas", "read") else []
    currencies = {r[1] for r in opened} | {r[2] for r in won} | {q.currency for q in quotas}
    book = RateBook.load(
        session, currencies | {scope.currency}, scope.period.last_day, since=scope.period.start
    )
    people = _People(session)
    target = scope.currency
    sums: dict[_Holder, _ForecastSums] = defaultdict(_ForecastSums)
    start = scope.period.start
    for owner_id, _status, currency, day, count, amount in won:
        entry = sums[people.row(owner_id, scope.group)]
        entry.won_count += count
        if amount is not None:
            entry.won += amount * book.factor(currency, target, day or start)
    for owner_id, currency, day, category, count, amount, weighted in opened:
        entry = sums[people.row(owner_id, scope.group)]
        factor = book.factor(currency, target, day or start)
        if amount is not None:
            entry.categories[category] += amount * factor
        if category == "omitted":
            continue
        entry.open_count += count
        if weighted is not None:
            entry.weighted_open += weighted * factor / HUNDRED
    for holder, amount in _quota_by_holder(quotas, scope, people, book).items():
        sums[holder].quota = amount
    total = _ForecastSums()
    for entry in sums.values():
        total.add(entry)
    return ForecastRead(
        period=scope.period.label,
        start=scope.period.start,
        end=scope.period.last_day,
        currency=target,
        group=scope.group,
        pipeline_id=scope.pipeline_id,
        rows=[sums[h].row(h, target) for h in _sorted(sums)],
        total=total.row(_TOTAL, target),
    )


# ----------------------------------------------------------------------------- sales figures


class SalesFigures(ReportRowBase):
    """One rep's (or team's) sales over the period, in the report's currency.

    Win rate is won / (won + lost) among the deals closed in the period, by count and by
    amount (percent, one decimal); the sales cycle is the days from a won deal's creation to
    its close; activities are counted by kind.
    """

    won_count: int = 0
    lost_count: int = 0
    won_amount: Decimal = ZERO
    lost_amount: Decimal = ZERO
    win_rate: Decimal | None = None
    win_rate_by_amount: Decimal | None = None
    average_won: Decimal | None = None
    cycle_median_days: Decimal | None = None
    cycle_mean_days: Decimal | None = None
    activities: dict[str, int] = Field(default_factory=dict)


class StageConversion(BaseModel):
    """Of the deals that entered an open stage in the period, how many later moved on to a
    later stage that is not a lost one (``advanced``), and how many were later won."""

    pipeline_id: int
    pipeline_name: str
    stage_id: int
    stage_name: str
    position: int
    entered: int
    advanced: int
    won: int
    advance_rate: Decimal | None
    win_rate: Decimal | None


class SalesMetricsRead(BaseModel):
    """Win rate, deal size, sales cycle, activity and stage conversion over a period."""

    start: date
    end: date
    currency: str
    group: Grouping
    pipeline_id: int | None
    rows: list[SalesFigures]
    total: SalesFigures
    stage_conversion: list[StageConversion]


@dataclass
class _SalesSums:
    won_count: int = 0
    lost_count: int = 0
    won_amount: Decimal = ZERO
    lost_amount: Decimal = ZERO
    cycles: Counter[int] = field(default_factory=Counter)
    activities: Counter[str] = field(default_factory=Counter)

    def add(self, other: _SalesSums) -> None:
        self.won_count += other.won_count
        self.lost_count += other.lost_count
        self.won_amount += other.won_amount
        self.lost_amount += other.lost_amount
        self.cycles.update(other.cycles)
        self.activities.update(other.activities)

    def row(self, holder: _Holder, currency: str) -> SalesFigures:
        won_amount = round_money(self.won_amount, currency)
        lost_amount = round_money(self.lost_amount, currency)
        closed = self.won_count + self.lost_count
        return SalesFigures(
            **holder.head(),
            won_count=self.won_count,
            lost_count=self.lost_count,
            won_amount=won_amount,
            lost_amount=lost_amount,
            win_rate=_percent(Decimal(self.won_count), Decimal(closed)),
            win_rate_by_amount=_percent(won_amount, won_amount + lost_amount),
            average_won=(
                round_money(self.won_amount / self.won_count, currency) if self.won_count else None
            ),
            cycle_median_days=_median(self.cycles),
            cycle_mean_days=_mean(self.cycles),
            activities={kind: self.activities[kind] for kind in sorted(self.activities)},
        )


def _median(counts: Mapping[int, int]) -> Decimal | None:
    """The median of values given as value -> how many times it occurs."""
    size = sum(counts.values())
    if size == 0:
        return None
    wanted = [(size - 1) // 2, size // 2]
    found: list[int] = []
    seen = 0
    for value, times in sorted(counts.items()):
        while wanted and wanted[0] < seen + times:
            found.append(value)
            wanted.pop(0)
        seen += times
    return (Decimal(found[0] + found[1]) / 2).quantize(ONE_DECIMAL, ROUND_HALF_UP)


def _mean(counts: Mapping[int, int]) -> Decimal | None:
    size = sum(counts.values())
    if size == 0:
        return None
    total = sum(value * times for value, times in counts.items())
    return (Decimal(total) / size).quantize(ONE_DECIMAL, ROUND_HALF_UP)


def _cycle_histogram(scope: ReportScope, dialect: str) -> Rows:
    """Won deals closed in the period by owner and whole days from creation to close."""
    days = _days_between(Deal.created_at, Deal.closed_at, dialect)
    return (
        select(Deal.owner_id, days, func.count())
        .where(
            Deal.status == "won",
            Deal.closed_at >= scope.period.start_at,
            Deal.closed_at < scope.period.end_at,
            *_in_pipeline(scope),
        )
        .group_by(Deal.owner_id, days)
    )


def stage_conversion(session: Session, scope: ReportScope) -> list[StageConversion]:
    """Per pipeline and open stage: deals that entered it in the period, and of those how
    many later advanced (entered a later stage that is not lost) and how many were won.

    From the stage history, so a deal that skipped a stage never entered it; a deal that
    entered a stage twice in the period counts once.
    """
    # Stage positions and kinds by id (a few dozen), so that each deal's later moves are read
    # from the history's index alone, without a join per move.
    kinds = {
        row.id: (row.position, row.kind)
        for row in session.execute(select(Stage.id, Stage.position, Stage.kind))
    }
    entry = aliased(DealStageChange)
    later = aliased(DealStageChange)
    stage = aliased(Stage)
    position_reached = case(
        {sid: position for sid, (position, kind) in kinds.items() if kind != "lost"},
        value=later.to_stage_id,
        else_=None,
    )
    won_ids = [sid for sid, (_, kind) in kinds.items() if kind == "won"]
    in_period = [
        entry.changed_at >= scope.period.start_at,
        entry.changed_at < scope.period.end_at,
        stage.kind == "open",
        *([entry.pipeline_id == scope.pipeline_id] if scope.pipeline_id is not None else []),
    ]
    after_entry = and_(
        later.deal_id == entry.deal_id,
        later.changed_at >= scope.period.start_at,
        later.changed_at >= entry.changed_at,
        or_(later.changed_at > entry.changed_at, later.id > entry.id),
    )
    advanced_after = func.max(case((position_reached > stage.position, 1), else_=0))
    won_after = func.max(case((later.to_stage_id.in_(won_ids), 1), else_=0))
    # A deal's first entry into a stage sees every move its later entries see, so a stage
    # counts a deal once, with what happened after its first entry in the period.
    if _dialect(session) == "postgresql":
        # Each entry joined to the deal's later moves: one hash join over the period.
        entries = (
            select(
                entry.to_stage_id.label("stage_id"),
                advanced_after.label("advanced"),
                won_after.label("won"),
            )
            .select_from(entry)
            .join(stage, stage.id == entry.to_stage_id)
            .outerjoin(later, after_entry)
            .where(*in_period)
            .group_by(entry.to_stage_id, entry.deal_id)
            .subquery()
        )
    else:
        # SQLite reads each entry's later moves from the history's deal index, once per entry.
        outcome = select(won_after * 2 + advanced_after).where(after_entry).scalar_subquery()
        per_entry = (
            select(
                entry.to_stage_id.label("stage_id"),
                func.coalesce(func.max(outcome), 0).label("outcome"),
            )
            .join(stage, stage.id == entry.to_stage_id)
            .where(*in_period)
            .group_by(entry.to_stage_id, entry.deal_id)
            .subquery()
        )
        entries = select(
            per_entry.c.stage_id,
            case((per_entry.c.outcome.in_((1, 3)), 1), else_=0).label("advanced"),
            case((per_entry.c.outcome >= 2, 1), else_=0).label("won"),
        ).subquery()
    stmt = select(
        entries.c.stage_id,
        func.count(),
        func.sum(entries.c.advanced),
        func.sum(entries.c.won),
    ).group_by(entries.c.stage_id)
    counts = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in session.execute(stmt)}
    stages = select(Pipeline, Stage).join(Stage, Stage.pipeline_id == Pipeline.id)
    stages = stages.where(Stage.kind == "open")
    if scope.pipeline_id is not None:
        stages = stages.where(Pipeline.id == scope.pipeline_id)
    else:
        stages = stages.where(or_(Pipeline.archived.is_(False), Stage.id.in_(list(counts))))
    found: list[StageConversion] = []
    for pipeline, row in session.execute(
        stages.order_by(Pipeline.position, Pipeline.id, Stage.position, Stage.id)
    ):
        entered, moved_on, won_later = counts.get(row.id, (0, 0, 0))
        found.append(
            StageConversion(
                pipeline_id=pipeline.id,
                pipeline_name=pipeline.name,
                stage_id=row.id,
                stage_name=row.name,
                position=row.position,
                entered=entered,
                advanced=moved_on,
                won=won_later,
                advance_rate=_percent(Decimal(moved_on), Decimal(entered)),
                win_rate=_percent(Decimal(won_later), Decimal(entered)),
            )
        )
    return found


def _activity_counts(session: Session, actor: Actor, period: Period) -> dict[int, dict[str, int]]:
    if not can(actor, "activities", "read"):
        return {}
    return activities_service.activity_counts_by_owner(session, period.start, period.end)


def sales_metrics(session: Session, actor: Actor, scope: ReportScope) -> SalesMetricsRead:
    """Win rate (by count and amount), average won deal, sales-cycle length, activity per rep
    or team, and stage conversion, over the scope's days."""
    require(actor, "deals", "read")
    dialect = _dialect(session)
    closed = session.execute(_closed_in_period(scope, dialect, ("won", "lost"))).all()
    cycles = session.execute(_cycle_histogram(scope, dialect)).all()
    book = RateBook.load(
        session,
        {r[2] for r in closed} | {scope.currency},
        scope.period.last_day,
        since=scope.period.start,
    )
    people = _People(session)
    target = scope.currency
    sums: dict[_Holder, _SalesSums] = defaultdict(_SalesSums)
    for owner_id, status, currency, day, count, amount in closed:
        entry = sums[people.row(owner_id, scope.group)]
        converted = ZERO
        if amount is not None:
            converted = amount * book.factor(currency, target, day or scope.period.start)
        if status == "won":
            entry.won_count += count
            entry.won_amount += converted
        else:
            entry.lost_count += count
            entry.lost_amount += converted
    for owner_id, days, count in cycles:
        sums[people.row(owner_id, scope.group)].cycles[int(days)] += count
    for owner_id, kinds in _activity_counts(session, actor, scope.period).items():
        sums[people.row(owner_id, scope.group)].activities.update(kinds)
    total = _SalesSums()
    for entry in sums.values():
        total.add(entry)
    return SalesMetricsRead(
        start=scope.period.start,
        end=scope.period.last_day,
        currency=target,
        group=scope.group,
        pipeline_id=scope.pipeline_id,
        rows=[sums[h].row(h, target) for h in _sorted(sums)],
        total=total.row(_TOTAL, target),
        stage_conversion=stage_conversion(session, scope),
    )


# ----------------------------------------------------------------------------- dashboard


class StageBar(BaseModel):
    stage_id: int
    name: str
    count: int
    amount: Decimal


class PipelineByStage(BaseModel):
    """The open deals of one pipeline by stage, converted at the rates of ``on``."""

    pipeline_id: int | None
    pipeline_name: str
    on: date
    stages: list[StageBar]


class QuotaBar(ReportRowBase):
    won: Decimal
    weighted: Decimal
    quota: Decimal | None


class MonthWinRate(BaseModel):
    #: ``2026-11``
    month: str
    won_count: int
    lost_count: int
    win_rate: Decimal | None
    win_rate_by_amount: Decimal | None


class ActivityBar(ReportRowBase):
    counts: dict[str, int]


class DashboardCharts(BaseModel):
    """What the dashboard's four charts draw, for one period."""

    period: str
    currency: str
    group: Grouping
    pipeline_by_stage: PipelineByStage
    forecast_vs_quota: list[QuotaBar]
    win_rate_trend: list[MonthWinRate]
    activity_kinds: list[str]
    activity_per_rep: list[ActivityBar]


def report_pipelines(session: Session) -> list[tuple[int, str]]:
    """The pipelines a report may be narrowed to (id, name), in their order."""
    return [
        (row.id, row.name)
        for row in session.execute(
            select(Pipeline.id, Pipeline.name)
            .where(Pipeline.archived.is_(False))
            .order_by(Pipeline.position, Pipeline.id)
        )
    ]


def chart_pipeline(session: Session, pipeline_id: int | None) -> Pipeline | None:
    """The pipeline a chart shows: the one asked for, else the default, else the first."""
    if pipeline_id is not None:
        return session.get(Pipeline, pipeline_id)
    return session.scalar(
        select(Pipeline)
        .where(Pipeline.archived.is_(False))
        .order_by(Pipeline.is_default.desc(), Pipeline.position, Pipeline.id)
        .limit(1)
    )


def pipeline_by_stage(session: Session, scope: ReportScope, today: date) -> PipelineByStage:
    """The open deals of the scope's pipeline (or the default one) now, by stage: how many and
    their amount, converted at today's rates."""
    pipeline = chart_pipeline(session, scope.pipeline_id)
    if pipeline is None:
        return PipelineByStage(pipeline_id=None, pipeline_name="", on=today, stages=[])
    stages = list(
        session.scalars(
            select(Stage)
            .where(Stage.pipeline_id == pipeline.id, Stage.kind == "open")
            .order_by(Stage.position, Stage.id)
        )
    )
    # The board's running totals (kept by the deals service with every write): a few rows
    # per stage, owner and currency, however many deals there are.
    groups = session.execute(
        select(
            DealStageTotal.stage_id,
            DealStageTotal.currency,
            func.sum(DealStageTotal.deal_count),
            func.sum(DealStageTotal.amount_minor),
        )
        .join(Stage, Stage.id == DealStageTotal.stage_id)
        .where(Stage.pipeline_id == pipeline.id, Stage.kind == "open")
        .group_by(DealStageTotal.stage_id, DealStageTotal.currency)
    ).all()
    book = RateBook.load(session, {g[1] for g in groups} | {scope.currency}, today, since=today)
    counts: Counter[int] = Counter()
    amounts: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for stage_id, currency, count, minor in groups:
        counts[stage_id] += int(count or 0)
        amount = Decimal(int(minor or 0)).scaleb(-currency_scale(currency))
        amounts[stage_id] += book.convert(amount, currency, scope.currency, today)
    return PipelineByStage(
        pipeline_id=pipeline.id,
        pipeline_name=pipeline.name,
        on=today,
        stages=[
            StageBar(
                stage_id=s.id,
                name=s.name,
                count=counts[s.id],
                amount=round_money(amounts[s.id], scope.currency),
            )
            for s in stages
        ],
    )


def win_rate_trend(session: Session, scope: ReportScope) -> list[MonthWinRate]:
    """Win rate per month over the twelve months up to the end of the scope's period."""
    last = month_of(scope.period.last_day)
    months = Period("range", add_months(last.start, 1 - TREND_MONTHS), last.end)
    window = ReportScope(months, scope.currency, scope.group, scope.pipeline_id)
    day = utc_day(Deal.closed_at, _dialect(session))
    stmt = (
        select(Deal.status, Deal.currency, day, func.count(), _sum(Deal.amount))
        .where(
            Deal.status.in_(("won", "lost")),
            Deal.closed_at >= months.start_at,
            Deal.closed_at < months.end_at,
            *_in_pipeline(window),
        )
        .group_by(Deal.status, Deal.currency, day)
    )
    groups = session.execute(stmt).all()
    book = RateBook.load(
        session, {g[1] for g in groups} | {scope.currency}, months.last_day, since=months.start
    )
    by_month: dict[str, _SalesSums] = {m.label: _SalesSums() for m in months.months()}
    for status, currency, closed_on, count, amount in groups:
        entry = by_month[month_of(closed_on).label]
        converted = (
            book.convert(amount, currency, scope.currency, closed_on)
            if amount is not None
            else ZERO
        )
        if status == "won":
            entry.won_count += count
            entry.won_amount += converted
        else:
            entry.lost_count += count
            entry.lost_amount += converted
    trend: list[MonthWinRate] = []
    for label, entry in by_month.items():
        figures = entry.row(_TOTAL, scope.currency)
        trend.append(
            MonthWinRate(
                month=label,
                won_count=figures.won_count,
                lost_count=figures.lost_count,
                win_rate=figures.win_rate,
                win_rate_by_amount=figures.win_rate_by_amount,
            )
        )
    return trend


def activity_per_rep(
    session: Session, actor: Actor, scope: ReportScope
) -> tuple[list[str], list[ActivityBar]]:
    """The activity kinds and, per rep or team, how many of each they logged in the period."""
    people = _People(session)
    found: dict[_Holder, Counter[str]] = defaultdict(Counter)
    for owner_id, counts in _activity_counts(session, actor, scope.period).items():
        found[people.row(owner_id, scope.group)].update(counts)
    seen = {kind for counts in found.values() for kind in counts}
    kinds = [k for k in ACTIVITY_KINDS if k in seen] + sorted(seen - set(ACTIVITY_KINDS))
    return kinds, [
        ActivityBar(**h.head(), counts={k: found[h][k] for k in kinds}) for h in _sorted(found)
    ]


def dashboard_charts(session: Session, actor: Actor, scope: ReportScope) -> DashboardCharts:
    """The data of the dashboard's charts: pipeline by stage, forecast against quota per rep
    (or team), the win-rate trend of the last twelve months, and activity per rep by kind."""
    require(actor, "deals", "read")
    predicted = forecast(session, actor, scope)
    kinds, activity = activity_per_rep(session, actor, scope)
    return DashboardCharts(
        period=scope.period.label,
        currency=scope.currency,
        group=scope.group,
        pipeline_by_stage=pipeline_by_stage(session, scope, utcnow().date()),
        forecast_vs_quota=[
            QuotaBar(
                **row.model_dump(include={"key", "kind", "user_id", "team_id", "name"}),
                won=row.won,
                weighted=row.weighted,
                quota=row.quota,
            )
            for row in predicted.rows
        ],
        win_rate_trend=win_rate_trend(session, scope),
        activity_kinds=kinds,
        activity_per_rep=activity,
    )


def parse_amount(text: str, loc: Loc = ("amount",)) -> Decimal:
    """A decimal typed by a person (``10,000,000`` or ``151.25``), or a 422."""
    try:
        value = Decimal(text.strip().replace(",", "").replace("_", ""))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ValidationFailed(f"'{text}' is not a number.", [FieldError(loc, "not a number")])
    return value
