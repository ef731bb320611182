"""Importing and exporting companies as CSV, through the service, on both engines."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, audit_count, company, row_count
from tests.integration.imports.conftest import DATA, define_field

from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor, record_history
from ichigen.core.custom_fields import FieldType
from ichigen.core.errors import BadRequest, PermissionDenied
from ichigen.crm.companies import service
from ichigen.crm.companies.imports import export_companies_csv, import_companies
from ichigen.crm.companies.models import Company
from ichigen.crm.companies.schemas import CompanyRead


def by_name(session: Session, admin: Actor) -> dict[str, CompanyRead]:
    return {c.name: c for c in service.list_companies(session, admin, limit=500).items}


def tier_field(session: Session) -> None:
    define_field(
        session,
        "tier",
        "Tier",
        FieldType.select,
        entity="companies",
        options=("gold", "silver", "bronze"),
    )


def test_hubspot_companies_with_parents_owners_and_row_errors(
    session: Session, admin: Actor, rep: UserRead
) -> None:
    tier_field(session)
    report = import_companies(session, (DATA / "hubspot_companies.csv").read_bytes(), admin)
    assert (report.total_rows, report.created, report.failed) == (4, 2, 2)
    assert report.mapping["Company name"] == "name" and report.mapping["Tier"] == "cf.tier"
    assert report.mapping["Parent Company"] == "parent"
    errors = {(e.row, e.column): e.reason for e in report.errors}
    assert set(errors) == {
        (4, "Number of Employees"),
        (4, "Country/Region"),
        (5, "Parent Company"),
    }
    assert "whole number" in errors[(4, "Number of Employees")]
    assert errors[(5, "Parent Company")] == "no company is named 'No Such Parent'"
    found = by_name(session, admin)
    assert set(found) == {"Sakura Holdings", "Sakura Seiko"}
    holdings, seiko = found["Sakura Holdings"], found["Sakura Seiko"]
    assert holdings.employees == 12000 and holdings.annual_revenue == Decimal("98000000000")
    assert holdings.owner_id == rep.id and holdings.country == "JP"
    assert holdings.phone == "+81311112222" and holdings.custom == {"tier": "gold"}
    assert seiko.parent_id == holdings.id and seiko.external_id == "9002"
    assert seiko.domain == "sakura-seiko.co.jp"
    assert record_history(session, "companies", seiko.id)[0].action == "create"

    again = import_companies(session, (DATA / "hubspot_companies.csv").read_bytes(), admin)
    assert (again.created, again.updated, again.unchanged, again.failed) == (0, 0, 2, 2)


def test_salesforce_accounts_matched_on_domain(
    session: Session, admin: Actor, rep: UserRead
) -> None:
    data = (DATA / "salesforce_accounts.csv").read_bytes()
    report = import_companies(session, data, admin, match_on="domain")
    assert (report.created, report.failed) == (2, 0)
    acme = by_name(session, admin)["Acme Corp"]
    assert acme.domain == "acme.example" and acme.website == "https://www.acme.example/about"
    assert acme.annual_revenue == Decimal("12500000") and acme.country == "US"
    assert acme.description == "Rockets and anvils" and acme.owner_id == rep.id

    changed = data.replace(b"Technology,250", b"Technology,300")
    update = import_companies(session, changed, admin, match_on="domain", mode="update")
    assert (update.updated, update.unchanged) == (1, 1)
    assert by_name(session, admin)["Acme Corp"].employees == 300
    created = import_companies(session, changed, admin, match_on="domain", mode="create")
    assert created.failed == 2 and "already has this domain" in created.errors[0].reason
    assert created.errors[0].column == "Website"


def test_dry_run_writes_nothing_even_across_batches(
    session: Session, admin: Actor, rep: UserRead
) -> None:
    existing = company(session, "Acme Corp", by=admin, domain="acme.example", employees=1)
    audits = audit_count(session)
    report = import_companies(
        session,
        (DATA / "salesforce_accounts.csv").read_bytes(),
        admin,
        match_on="domain",
        dry_run=True,
        batch_size=1,
    )
    assert report.dry_run and (report.created, report.updated) == (1, 1)
    assert row_count(session, Company) == 1 and audit_count(session) == audits
    assert service.get_company(session, existing.id, admin).employees == 1
    preview = {p.row: p for p in report.preview}
    assert preview[2].action == "update" and preview[2].changes["employees"] == [1, 250]
    assert preview[3].action == "create" and preview[3].changes["name"] == [None, "Fuji Logistics"]


def test_bad_rows_roll_back_alone(session: Session, admin: Actor) -> None:
    data = (
        b"external_id,name,domain,revenue_currency\n"
        b"A,Alpha,alpha.example,JPY\n"
        b"B,Beta,not a domain,JPY\n"
        b"C,Gamma,gamma.example,JP\n"
        b"D,Delta,delta.example,USD\n"
    )
    report = import_companies(session, data, admin, batch_size=10)
    assert (report.created, report.failed) == (2, 2)
    assert {(e.row, e.column) for e in report.errors} == {(3, "domain"), (4, "revenue_currency")}
    assert set(by_name(session, admin)) == {"Alpha", "Delta"}


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (b"name\n", {"encoding": "nope"}, "Unknown text encoding"),
        (b"domain\nx.example\n", {"mode": "create"}, "map a column to name"),
        (b"name,domain\nX,x.example\n", {"mode": "update"}, "map a column to external_id"),
        (b"name\nX\n", {"mapping": {"name": "revenue"}}, "unknown field"),
    ],
)
def test_bad_files_are_refused(
    session: Session, admin: Actor, data: bytes, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        import_companies(session, data, admin, **options)  # type: ignore[arg-type]
    assert row_count(session, Company) == 0


def test_only_writers_may_import(session: Session) -> None:
    analyst = actor(session, "analyst@example.com", "analyst")
    with pytest.raises(PermissionDenied):
        import_companies(session, b"name\nX\n", analyst)


def test_export_then_import_round_trips(session: Session, admin: Actor, rep: UserRead) -> None:
    tier_field(session)
    import_companies(session, (DATA / "hubspot_companies.csv").read_bytes(), admin)
    import_companies(session, (DATA / "salesforce_accounts.csv").read_bytes(), admin)
    service.update_company(
        session,
        by_name(session, admin)["Acme Corp"].id,
        service.CompanyUpdate(tags=["key-account", "us"], revenue_currency="USD"),
        admin,
    )
    out = io.StringIO()
    assert export_companies_csv(session, admin, out=out) == 4
    text = out.getvalue()
    assert text.splitlines()[0].endswith(",parent,tags,created_at,updated_at,cf.tier")
    report = import_companies(session, text.encode(), admin)
    assert (report.unchanged, report.failed) == (4, 0)

    filtered = io.StringIO()
    count = export_companies_csv(
        session, admin, filters=["industry:eq:Manufacturing"], out=filtered
    )
    assert count == 2 and "Acme" not in filtered.getvalue()
