"""Exchange rates by date and conversion between currencies, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, audit_count, row_count

from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import NotFound, PermissionDenied, ValidationFailed
from ichigen.crm.deals import forecasts
from ichigen.crm.deals.forecasts import MissingRate, RateBook
from ichigen.crm.deals.models import ExchangeRate


def test_a_rate_converts_from_its_day_until_the_next_one(session: Session, admin: Actor) -> None:
    forecasts.set_rate(session, "USD", date(2026, 10, 1), Decimal("150"), admin)
    forecasts.set_rate(session, "usd", date(2026, 11, 1), Decimal("151.25"), admin)

    def usd_in_yen(on: date) -> Decimal:
        return forecasts.convert(session, Decimal("100.50"), "USD", "JPY", on)

    assert usd_in_yen(date(2026, 10, 1)) == Decimal("15075")  # 100.50 × 150
    assert usd_in_yen(date(2026, 10, 31)) == Decimal("15075")
    assert usd_in_yen(date(2026, 11, 1)) == Decimal("15201")  # 100.50 × 151.25 = 15200.625
    assert usd_in_yen(date(2027, 5, 1)) == Decimal("15201")
    with pytest.raises(MissingRate) as missing:
        usd_in_yen(date(2026, 9, 30))
    assert "USD" in missing.value.detail and "2026-09-30" in missing.value.detail
    assert missing.value.status == 422


def test_cross_rates_go_through_the_base_and_round_to_the_target_scale(
    session: Session, admin: Actor
) -> None:
    forecasts.set_rate(session, "USD", date(2026, 1, 1), Decimal("150"), admin)
    forecasts.set_rate(session, "EUR", date(2026, 1, 1), Decimal("160"), admin)
    # 10 EUR = 1600 JPY = 10.666… USD
    assert forecasts.convert(session, Decimal(10), "EUR", "USD", date(2026, 6, 1)) == Decimal(
        "10.67"
    )
    # 1 JPY = 1/150 USD = 0.00666… → 0.01 (half up)
    assert forecasts.convert(session, Decimal(1), "JPY", "USD", date(2026, 6, 1)) == Decimal("0.01")
    assert forecasts.convert(session, Decimal("2.5"), "JPY", "JPY", date(2026, 6, 1)) == Decimal(
        "3"
    )
    with pytest.raises(MissingRate) as missing:
        forecasts.convert(session, Decimal(1), "GBP", "USD", date(2026, 6, 1))
    assert missing.value.currency == "GBP"


def test_setting_a_rate_again_replaces_it_with_audit(session: Session, admin: Actor) -> None:
    first = forecasts.set_rate(session, "USD", date(2026, 11, 1), Decimal("151.25"), admin)
    again = forecasts.set_rate(session, "USD", date(2026, 11, 1), Decimal("152"), admin)
    assert again.id == first.id and again.rate == Decimal("152")
    assert first.rate == Decimal("151.25") and first.base_currency == "JPY"
    assert row_count(session, ExchangeRate) == 1
    history = record_history(session, "exchange_rates", first.id)
    assert [h.action for h in history] == ["update", "create"]
    assert history[0].changes == {"rate": ["151.25", "152"]}
    forecasts.delete_rate(session, first.id, admin)
    assert row_count(session, ExchangeRate) == 0
    assert audit_count(session, "exchange_rates") == 3
    with pytest.raises(NotFound):
        forecasts.delete_rate(session, first.id, admin)


@pytest.mark.parametrize(
    ("currency", "rate", "loc"),
    [
        ("XYZ", "1", "currency"),
        ("JPY", "1", "currency"),
        ("USD", "0", "rate"),
        ("USD", "-3", "rate"),
        ("USD", "1.00000000001", "rate"),
        ("USD", "100000000000000", "rate"),
    ],
)
def test_bad_rates_are_422_and_change_nothing(
    session: Session, admin: Actor, currency: str, rate: str, loc: str
) -> None:
    with pytest.raises(ValidationFailed) as info:
        forecasts.set_rate(session, currency, date(2026, 11, 1), Decimal(rate), admin)
    assert [e.loc for e in info.value.errors] == [(loc,)]
    assert row_count(session, ExchangeRate) == 0
    assert audit_count(session, "exchange_rates") == 0


def test_only_admins_and_managers_set_rates(session: Session, admin: Actor) -> None:
    rep = actor(session, "rep@example.com", "sales")
    with pytest.raises(PermissionDenied):
        forecasts.set_rate(session, "USD", date(2026, 11, 1), Decimal("151"), rep)
    manager = actor(session, "boss@example.com", "manager")
    forecasts.set_rate(session, "USD", date(2026, 11, 1), Decimal("151"), manager)
    assert [r.currency for r in forecasts.list_rates(session, rep).items] == ["USD"]


def test_rates_list_newest_day_first_in_pages(session: Session, admin: Actor) -> None:
    for day in range(1, 6):
        forecasts.set_rate(session, "USD", date(2026, 11, day), Decimal(150 + day), admin)
    forecasts.set_rate(session, "EUR", date(2026, 11, 3), Decimal(160), admin)
    first = forecasts.list_rates(session, admin, currency="USD", limit=3)
    assert [r.rate_date.day for r in first.items] == [5, 4, 3]
    assert first.next_cursor
    rest = forecasts.list_rates(session, admin, currency="USD", cursor=first.next_cursor)
    assert [r.rate_date.day for r in rest.items] == [2, 1] and rest.next_cursor is None
    assert forecasts.rate_currencies(session) == ["JPY", "EUR", "USD"]


def test_the_rate_book_loads_once_and_finds_each_day(session: Session, admin: Actor) -> None:
    forecasts.set_rate(session, "USD", date(2026, 1, 1), Decimal("140"), admin)
    forecasts.set_rate(session, "USD", date(2026, 7, 1), Decimal("150"), admin)
    book = RateBook.load(session, {"USD", "JPY"}, date(2026, 12, 31))
    assert book.to_base("USD", date(2026, 6, 30)) == Decimal("140")
    assert book.to_base("USD", date(2026, 7, 1)) == Decimal("150")
    assert book.factor("JPY", "JPY", date(2020, 1, 1)) == 1
    assert book.convert(Decimal(3), "USD", "JPY", date(2026, 7, 2)) == Decimal(450)
    with pytest.raises(MissingRate):
        book.to_base("USD", date(2025, 12, 31))


def test_a_rate_book_from_a_day_reads_only_the_rates_that_apply(
    session: Session, admin: Actor
) -> None:
    for month, rate in ((1, "140"), (4, "145"), (7, "150"), (10, "155")):
        forecasts.set_rate(session, "USD", date(2026, month, 1), Decimal(rate), admin)
    forecasts.set_rate(session, "EUR", date(2026, 8, 1), Decimal("160"), admin)
    whole = RateBook.load(session, {"USD", "EUR"}, date(2026, 12, 31))
    book = RateBook.load(session, {"USD", "EUR", "GBP"}, date(2026, 12, 31), since=date(2026, 5, 1))
    # The rate in force on the first day (April's), and those after it; EUR starts later.
    assert book.days["USD"] == [date(2026, 4, 1), date(2026, 7, 1), date(2026, 10, 1)]
    assert book.days["EUR"] == [date(2026, 8, 1)] and book.days["GBP"] == []
    for day in (date(2026, 5, 1), date(2026, 7, 1), date(2026, 9, 30), date(2026, 12, 31)):
        assert book.to_base("USD", day) == whole.to_base("USD", day)
    with pytest.raises(MissingRate):
        book.to_base("EUR", date(2026, 7, 31))
    with pytest.raises(ValueError, match="from 2026-05-01"):
        book.to_base("USD", date(2026, 4, 30))
