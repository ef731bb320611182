"""How deal and activity cells read: amounts with signs, percentages, durations, dates and
times in the formats HubSpot, Salesforce and Japanese spreadsheets write."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from ichigen.core.errors import BadRequest
from ichigen.core.tabular import (
    money_with_currency,
    parse_date,
    parse_datetime,
    parse_duration,
    parse_percent,
    suggest_mapping,
    time_zone_named,
)
from ichigen.crm.activities.imports import activity_kind, attendee, call_outcome, direction
from ichigen.crm.deals.imports import forecast_category

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("￥12,800", ("12800", "JPY")),
        ("¥12,800", ("12800", "JPY")),
        ("\\12,800", ("12800", "JPY")),
        ("12,800円", ("12800", "JPY")),
        ("$1,200.50", ("1200.50", "USD")),
        ("USD 25,000.00", ("25000.00", "USD")),
        ("99 eur", ("99", "EUR")),
        ("€5", ("5", "EUR")),
        ("12800", ("12800", None)),
    ],
)
def test_amounts_with_signs_and_codes(cell: str, expected: tuple[str, str | None]) -> None:
    assert money_with_currency(cell) == expected


@pytest.mark.parametrize("cell", ["lots", "$5 JPY", "1.2.3", "NaN"])
def test_what_is_not_an_amount(cell: str) -> None:
    with pytest.raises(ValueError, match=cell.replace("$", r"\$")):
        money_with_currency(cell)


@pytest.mark.parametrize(
    ("cell", "percent"), [("35", 35), ("35%", 35), ("３５％", 35), ("0.35", 35), ("1.0", 100)]
)
def test_percentages_and_hubspot_fractions(cell: str, percent: int) -> None:
    assert parse_percent(cell) == percent


@pytest.mark.parametrize("cell", ["150", "-5", "often"])
def test_what_is_not_a_percentage(cell: str) -> None:
    with pytest.raises(ValueError):
        parse_percent(cell)


@pytest.mark.parametrize(
    ("cell", "seconds"),
    [("540", 540), ("9:00", 540), ("0:09:00", 540), ("1h 5m", 3900), ("9分", 540), ("90 sec", 90)],
)
def test_durations(cell: str, seconds: int) -> None:
    assert parse_duration(cell) == seconds


@pytest.mark.parametrize("cell", ["1:75:00", "a while", "5 parsecs"])
def test_what_is_not_a_duration(cell: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(cell)


@pytest.mark.parametrize(
    "cell",
    ["2026-03-15", "2026/3/15", "2026.03.15", "2026年3月15日", "3/15/2026", "2026-03-15 10:23"],
)
def test_dates(cell: str) -> None:
    assert parse_date(cell) == date(2026, 3, 15)


@pytest.mark.parametrize(
    ("cell", "moment"),
    [
        ("2026-03-15 14:30", datetime(2026, 3, 15, 5, 30, tzinfo=UTC)),
        ("3/15/2026 2:30 PM", datetime(2026, 3, 15, 5, 30, tzinfo=UTC)),
        ("2026/03/15", datetime(2026, 3, 14, 15, 0, tzinfo=UTC)),
        ("2026-03-15T05:30:00Z", datetime(2026, 3, 15, 5, 30, tzinfo=UTC)),
        ("2026-03-15T14:30:00+09:00", datetime(2026, 3, 15, 5, 30, tzinfo=UTC)),
        ("2026-03-15 05:30:00.250 UTC", datetime(2026, 3, 15, 5, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_times_without_an_offset_are_read_in_the_time_zone(cell: str, moment: datetime) -> None:
    assert parse_datetime(cell, TOKYO) == moment


@pytest.mark.parametrize("cell", ["15/3/2026", "2026-02-30", "2026-03-15 25:00", "13:00 PM"])
def test_what_is_not_a_date(cell: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(cell)


def test_time_zones_by_name() -> None:
    assert time_zone_named(None) == UTC and time_zone_named("Asia/Tokyo") == TOKYO
    for bad in ("Mars/Olympus", "../etc/passwd", "Asia/Tokyo\x00"):
        with pytest.raises(BadRequest) as caught:
            time_zone_named(bad)
        assert caught.value.errors[0].loc == ("time_zone",)


def test_values_of_other_systems() -> None:
    assert [activity_kind(v) for v in ("CALL", "INCOMING_EMAIL", "Event", "Other", "会議")] == [
        "call",
        "email",
        "meeting",
        "note",
        "meeting",
    ]
    assert [call_outcome(v) for v in ("Left live message", "留守電", "No answer")] == [
        "connected",
        "left_voicemail",
        "no_answer",
    ]
    assert [direction(v) for v in ("OUTBOUND", "着信")] == ["outbound", "inbound"]
    assert [forecast_category(v) for v in ("Best Case", "コミット", "Closed won")] == [
        "best_case",
        "commit",
        None,
    ]
    assert attendee("山田 太郎 <taro@example.jp>") == {
        "email": "taro@example.jp",
        "name": "山田 太郎",
    }
    with pytest.raises(ValueError):
        activity_kind("Fax")


def test_export_headers_of_hubspot_salesforce_and_japanese_files() -> None:
    deals = suggest_mapping(
        ["Opportunity ID", "Opportunity Name", "Account Name", "Stage", "Probability (%)",
         "Opportunity Owner", "Loss Reason", "Lead Source", "確度", "完了予定日"],
        "deals",
        [],
    )  # fmt: skip
    assert list(deals.values()) == [
        "external_id",
        "name",
        "company",
        "stage",
        "probability",
        "owner",
        "lost_reason",
        "source",
        None,  # probability is taken already
        "expected_close_date",
    ]
    activities = suggest_mapping(
        ["Engagement type", "Meeting start time", "Meeting end time", "件名", "内容",
         "Associated deal", "Related To", "Call Duration (seconds)"],
        "activities",
        [],
    )  # fmt: skip
    assert list(activities.values()) == [
        "kind",
        "occurred_at",
        "ends_at",
        "subject",
        "body",
        "deals",
        "related_to",
        "duration_seconds",
    ]
