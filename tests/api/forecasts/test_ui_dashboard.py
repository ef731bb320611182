"""The dashboard, quota and exchange-rate pages, and the charts' JSON, through HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from html import unescape

import pytest
from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, sign_in
from tests.conftest import SETUP, make_user
from tests.integration.forecasts.dataset import SalesData, build

from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.core.db import Database
from ichigen.crm.deals import forecasts
from ichigen.web.app import create_app


@pytest.fixture
def data(app_db: Database) -> SalesData:
    with app_db.sessionmaker() as session:
        return build(session, SETUP)


@pytest.fixture
def today() -> object:
    set_clock(FixedClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC)))
    yield None
    set_clock(SystemClock())


def test_the_dashboard_shows_the_figures_and_frames_the_charts(
    browser: TestClient, data: SalesData, today: object
) -> None:
    page = browser.get("/dashboard", params={"period": "2026-Q4"})
    assert page.status_code == 200, page.text
    html = unescape(page.text)
    assert 'href="/dashboard" aria-current="page"' in page.text
    assert "Content-Security-Policy" in page.headers and "<script>" not in page.text
    assert '<script src="/static/vendor/chart.umd.min.js' in page.text
    assert "¥2,110,000" in html  # won in the quarter
    assert "¥4,626,000" in html and "42.2 %" in html  # weighted forecast, attainment
    assert "60 %" in html  # win rate
    assert 'data-src="/dashboard/charts.json?period=2026-Q4&group=rep&currency=JPY"' in html
    charts = browser.get("/dashboard/charts.json", params={"period": "2026-Q4"})
    assert charts.status_code == 200 and charts.headers["content-type"] == "application/json"
    body = charts.json()
    assert [b["name"] for b in body["forecast_vs_quota"]] == ["Aiko", "Ben", "Chie"]
    assert len(body["win_rate_trend"]) == 12
    assert browser.get("/static/vendor/chart.umd.min.js").status_code == 200
    assert browser.get("/static/dashboard.js").status_code == 200


def test_the_dashboard_in_japanese_and_per_team(
    app_db: Database, data: SalesData, today: object
) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "manager@example.com", "manager")
    with TestClient(create_app(app_db.settings, app_db)) as client:
        sign_in(client, "manager@example.com")
        page = client.get(
            "/dashboard",
            params={"period": "2026-Q4", "group": "team"},
            headers={"Accept-Language": "ja"},
        )
        html = unescape(page.text)
        assert "営業ダッシュボード" in html and "加重予測" in html
        assert ">East<" in html and ">Aiko<" not in html


def test_bad_parameters_and_missing_rates_are_explained(
    browser: TestClient, data: SalesData, today: object
) -> None:
    bad = browser.get("/dashboard", params={"period": "2026-Q9"})
    assert bad.status_code == 422 and "is not a period" in unescape(bad.text)
    missing = browser.get("/dashboard", params={"period": "2026-Q4", "currency": "GBP"})
    assert missing.status_code == 422
    assert "no exchange rate for GBP" in unescape(missing.text)
    assert 'href="/exchange-rates"' in missing.text
    problem = browser.get("/dashboard/charts.json", params={"period": "2026-Q4", "currency": "GBP"})
    assert problem.status_code == 422
    assert problem.headers["content-type"].startswith("application/problem+json")


def test_a_viewer_sees_no_quotas(app_db: Database, data: SalesData, today: object) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "viewer@example.com", "viewer")
    with TestClient(create_app(app_db.settings, app_db)) as client:
        sign_in(client, "viewer@example.com")
        page = client.get("/dashboard", params={"period": "2026-Q4"})
        assert page.status_code == 200 and 'href="/quotas' not in page.text
        assert client.get("/quotas").status_code == 403


def test_quotas_are_set_and_deleted_on_their_page(browser: TestClient, data: SalesData) -> None:
    page = browser.get("/quotas", params={"period": "2026-Q4"})
    assert page.status_code == 200
    assert page.text.count("data-quota=") == 4
    token = csrf_token(page.text)
    saved = browser.post(
        "/quotas",
        data={
            "csrf_token": token,
            "holder": f"user:{data.chie.id}",
            "period_kind": "quarter",
            "period": "2026-q4",
            "amount": "1,500,000",
            "currency": "JPY",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/quotas?period=2026-Q4"
    shown = browser.get("/quotas?period=2026-Q4")
    assert shown.text.count("data-quota=") == 5 and "Quota saved." in shown.text
    wrong = browser.post(
        "/quotas",
        data={
            "csrf_token": token,
            "holder": "",
            "period_kind": "month",
            "period": "2026-Q4",
            "amount": "12.5",
            "currency": "JPY",
        },
    )
    assert wrong.status_code == 422
    assert "Choose a rep or a team." in wrong.text and "Enter a period of that kind." in wrong.text
    with browser.app.state.db.sessionmaker() as session:  # type: ignore[attr-defined]
        chie_quota = forecasts.list_quotas(session, SETUP, user_id=data.chie.id).items[0]
    assert chie_quota.amount == Decimal(1500000)
    gone = browser.post(
        f"/quotas/{chie_quota.id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.status_code == 303
    assert browser.get("/quotas?period=2026-Q4").text.count("data-quota=") == 4


def test_rates_are_set_and_deleted_on_their_page(browser: TestClient, data: SalesData) -> None:
    page = browser.get("/exchange-rates")
    assert page.text.count("data-rate=") == 3
    token = csrf_token(page.text)
    saved = browser.post(
        "/exchange-rates",
        data={"csrf_token": token, "currency": "gbp", "rate_date": "2026-11-01", "rate": "190.5"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    listed = browser.get("/exchange-rates", params={"currency": "GBP"})
    assert listed.text.count("data-rate=") == 1 and "190.5" in listed.text
    bad = browser.post(
        "/exchange-rates",
        data={"csrf_token": token, "currency": "JPY", "rate_date": "2026-11-31", "rate": "x"},
    )
    assert bad.status_code == 422
    assert "Enter a date like 2026-11-01." in bad.text and "not a number" in bad.text
    rate_id = listed.text.split('data-rate="')[1].split('"')[0]
    gone = browser.post(
        f"/exchange-rates/{rate_id}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.status_code == 303
    assert browser.get("/exchange-rates").text.count("data-rate=") == 3
