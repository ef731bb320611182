"""Importing and exporting deals as CSV, through the deals service, on both engines."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, audit_count, row_count
from tests.integration.transfers.conftest import DATA, Setting

from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import BadRequest, PermissionDenied
from ichigen.crm.deals import service
from ichigen.crm.deals.imports import export_deals_csv, import_deals
from ichigen.crm.deals.models import Deal, DealStageChange
from ichigen.crm.deals.schemas import DealCreate, DealRead, DealUpdate

HUBSPOT = (DATA / "hubspot_deals.csv").read_bytes()
SALESFORCE = (DATA / "salesforce_opportunities_shift_jis.csv").read_bytes()


def by_external_id(session: Session, admin: Actor) -> dict[str, DealRead]:
    return {
        d.external_id: d
        for d in service.list_deals(session, admin, limit=500).items
        if d.external_id is not None
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def history(session: Session, deal_id: int) -> list[tuple[int, datetime]]:
    return [
        (c.to_stage_id, c.changed_at)
        for c in session.scalars(
            select(DealStageChange)
            .where(DealStageChange.deal_id == deal_id)
            .order_by(DealStageChange.changed_at, DealStageChange.id)
        )
    ]


def test_hubspot_deals_with_names_dates_and_row_errors(
    session: Session, admin: Actor, rep: UserRead, setting: Setting
) -> None:
    report = import_deals(session, HUBSPOT, admin)
    assert (report.total_rows, report.created, report.failed) == (8, 3, 5)
    assert report.mapping["Deal Stage"] == "stage" and report.mapping["Record ID"] == "external_id"
    assert report.mapping["Deal currency code"] == "currency"
    errors = {(e.row, e.column): e.reason for e in report.errors}
    assert set(errors) == {
        (5, "Amount"),
        (6, "Deal Stage"),
        (7, "Deal Stage"),
        (8, "Deal Stage"),
        (9, "Deal owner"),
    }
    assert errors[(5, "Amount")] == "'lots' is not an amount"
    assert errors[(6, "Deal Stage")] == "amount is required to enter the stage 'Contract Sent'"
    assert "has no stage named 'Negotiating hard'" in errors[(7, "Deal Stage")]
    assert errors[(8, "Deal Stage")] == "lost reason is required to enter the stage 'Closed Lost'"

    deals = by_external_id(session, admin)
    assert set(deals) == {"10001", "10002", "10003"}
    open_deal, won, lost = deals["10001"], deals["10002"], deals["10003"]
    pipeline = setting.hubspot
    assert open_deal.stage_id == setting.stage(pipeline, "Contract Sent")
    assert (open_deal.amount, open_deal.currency) == (Decimal("12800000"), "JPY")
    assert open_deal.company_id == setting.companies["Sakura Seiko"]
    assert [c.contact_id for c in open_deal.contacts] == [setting.contacts["taro"]]
    assert open_deal.owner_id == rep.id and open_deal.tags == ["newbusiness"]
    assert open_deal.expected_close_date == date(2027, 3, 31)
    assert open_deal.next_step == "Send the revised quote"
    # 90 % and "Commit" are what the stage gives: not pinned as overrides.
    assert open_deal.probability_override is None and open_deal.forecast_category_override is None
    assert open_deal.created_at == at("2026-04-01T09:30:00")
    assert history(session, open_deal.id) == [(open_deal.stage_id, at("2026-04-01T09:30:00"))]

    assert (won.status, won.amount, won.currency) == ("won", Decimal("48000.00"), "USD")
    assert won.company_id == setting.companies["Acme Corp"]  # by its domain
    assert {c.contact_id for c in won.contacts} == {
        setting.contacts["jane"],
        setting.contacts["bob"],
    }
    assert won.close_note == "Strong champion in IT"
    assert won.created_at == at("2026-01-15T14:00:00")
    assert won.closed_at == at("2026-06-30T00:00:00")
    # Closed in the past: created in the first stage, then moved, each on its own date.
    assert history(session, won.id) == [
        (setting.stage(pipeline, "Appointment Scheduled"), at("2026-01-15T14:00:00")),
        (setting.stage(pipeline, "Closed Won"), at("2026-06-30T00:00:00")),
    ]
    assert lost.status == "lost" and lost.lost_reason_id is not None
    assert lost.closed_at == at("2026-05-20T00:00:00")
    actions = [e.action for e in record_history(session, "deals", won.id)]
    assert actions[-1] == "create" and "update" in actions

    changes = row_count(session, DealStageChange)
    again = import_deals(session, HUBSPOT, admin)
    assert (again.created, again.updated, again.unchanged, again.failed) == (0, 0, 3, 5)
    assert row_count(session, Deal) == 3 and row_count(session, DealStageChange) == changes


def test_salesforce_opportunities_in_shift_jis(
    session: Session, admin: Actor, rep: UserRead, setting: Setting
) -> None:
    report = import_deals(session, SALESFORCE, admin, time_zone="Asia/Tokyo")
    assert report.encoding == "cp932" and (report.created, report.failed) == (3, 3)
    assert report.mapping["フェーズ"] == "stage" and report.mapping["確度 (%)"] == "probability"
    assert report.mapping["商談 ID"] == "external_id" and report.mapping["種別"] == "deal_type"
    errors = {(e.row, e.column): e.reason for e in report.errors}
    assert errors == {
        (5, "金額"): "the amount is in USD but the currency is JPY",
        (6, "完了予定日"): "'2027/13/01' is not a date; write it as 2024-03-15",
        (7, "取引先名"): "no company has the name or domain '存在しない商事'",
    }
    deals = by_external_id(session, admin)
    proposal = deals["0065g00000AbCdE"]
    assert proposal.pipeline_id == setting.japanese.id  # the default pipeline
    assert proposal.stage_id == setting.stage(setting.japanese, "提案/見積")  # width-insensitive
    assert proposal.amount == Decimal("3200000") and proposal.probability_override == 60
    assert proposal.forecast_category_override is None  # best case is what 60 % gives
    assert proposal.source == "展示会" and proposal.tags == ["新規"]
    assert proposal.created_at == at("2026-08-31T15:00:00")  # midnight in Tokyo
    won = deals["0065g00000AbCdF"]
    assert (won.status, won.amount) == ("won", Decimal("7500000"))  # "\" is the yen sign
    assert won.closed_at == at("2026-08-31T00:00:00")
    rollout = deals["0065g00000AbCdG"]
    assert (rollout.amount, rollout.currency, rollout.owner_id) == (
        Decimal("25000.00"),
        "USD",
        rep.id,
    )
    # 80 % alone gives best case, so the file's "コミット" is kept as the rep's own category.
    assert rollout.forecast_category_override == "commit"
    assert rollout.next_step == "契約書ドラフト送付"


def test_dry_run_writes_nothing_and_shows_the_changes(
    session: Session, admin: Actor, setting: Setting
) -> None:
    import_deals(session, HUBSPOT, admin)
    changed = HUBSPOT.replace(b'"\xef\xbf\xa512,800,000"', b'"\xef\xbf\xa513,000,000"')
    audits, deals, stages = (
        audit_count(session),
        row_count(session, Deal),
        row_count(session, DealStageChange),
    )
    report = import_deals(session, changed, admin, dry_run=True, batch_size=1)
    assert report.dry_run and (report.created, report.updated, report.unchanged) == (0, 1, 2)
    assert (audit_count(session), row_count(session, Deal)) == (audits, deals)
    assert row_count(session, DealStageChange) == stages
    preview = {p.row: p for p in report.preview}
    assert preview[2].action == "update" and preview[2].changes == {
        "amount": ["12800000", "13000000"]
    }
    assert preview[5].action == "error" and preview[3].action == "unchanged"
    assert by_external_id(session, admin)["10001"].amount == Decimal("12800000")

    fresh = import_deals(session, SALESFORCE, admin, dry_run=True)
    assert fresh.created == 3 and row_count(session, Deal) == deals
    created = next(p for p in fresh.preview if p.row == 2)
    assert created.action == "create" and created.changes["name"] == [
        None,
        "髙橋工業 基幹システム刷新",
    ]


def test_modes_and_matching_on_id(session: Session, admin: Actor, setting: Setting) -> None:
    import_deals(session, HUBSPOT, admin)
    deal = by_external_id(session, admin)["10001"]
    update = f'id,amount,next_step\n{deal.id},"¥13,500,000",Sign\n999999,100,x\n'.encode()
    report = import_deals(session, update, admin, mode="update", match_on="id")
    assert (report.updated, report.failed) == (1, 1)
    assert (
        report.errors[0].column == "id" and "no deal has the id 999999" in report.errors[0].reason
    )
    after = service.get_deal(session, deal.id, admin)
    assert (after.amount, after.next_step, after.name) == (Decimal("13500000"), "Sign", deal.name)

    created = import_deals(session, HUBSPOT, admin, mode="create")
    assert created.created == 0 and "already has this external id" in created.errors[0].reason
    only_updates = b"Record ID,Deal Name\n10001,Renamed\n777,Unknown\n"
    updated = import_deals(session, only_updates, admin, mode="update")
    assert (updated.updated, updated.failed) == (1, 1)
    assert updated.errors[0].reason == "no deal matches this row"


def test_a_move_that_needs_fields_fails_alone(
    session: Session, admin: Actor, setting: Setting
) -> None:
    import_deals(session, HUBSPOT, admin)
    rows = (
        b"Record ID,Deal Stage,Closed lost reason\n"
        b"10001,Closed Lost,\n"
        b"10003,Closed Lost,Timing\n"
        b"10002,Closed Won,Price\n"
    )
    report = import_deals(session, rows, admin, mode="update")
    assert (report.updated, report.unchanged, report.failed) == (1, 1, 1), report.errors
    assert (report.errors[0].row, report.errors[0].column) == (2, "Deal Stage")
    deals = by_external_id(session, admin)
    assert deals["10001"].status == "open"
    assert service.lost_reason_names(session, [deals["10003"].lost_reason_id or 0]) == {
        deals["10003"].lost_reason_id: "Timing"
    }


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (b"Deal Name\nX\n", {"time_zone": "Mars/Olympus"}, "Unknown time zone"),
        (b"Record ID,Amount\n1,100\n", {"mode": "create"}, "map a column to name"),
        (b"Deal Name\nX\n", {"mode": "update"}, "map a column to external_id"),
        (b"Deal Name\nX\n", {"match_on": "email"}, "matched on external_id or id"),
        (b"Deal Name\nX\n", {"mapping": {"Deal Name": "title"}}, "unknown field"),
        (b"PK\x03\x04rest", {}, "Excel workbook"),
    ],
)
def test_bad_files_are_refused(
    session: Session, admin: Actor, data: bytes, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        import_deals(session, data, admin, **options)  # type: ignore[arg-type]
    assert row_count(session, Deal) == 0


def test_only_writers_may_import(session: Session) -> None:
    analyst = actor(session, "analyst@example.com", "analyst")
    with pytest.raises(PermissionDenied):
        import_deals(session, b"Deal Name\nX\n", analyst)


def test_export_selects_with_the_list_filters(
    session: Session, admin: Actor, setting: Setting
) -> None:
    import_deals(session, HUBSPOT, admin)
    out = io.StringIO()
    assert export_deals_csv(session, admin, filters=["status:eq:won"], out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("id,external_id,name,amount,currency,pipeline,stage,status,")
    assert ",Closed Won,won,rep@example.com,Acme Corp," in lines[1]
    assert "jane@acme.example; bob@acme.example" in lines[1]
    with pytest.raises(BadRequest):
        export_deals_csv(session, admin, filters=["nope:eq:1"], out=io.StringIO())


def test_export_imports_back_unchanged(session: Session, admin: Actor, setting: Setting) -> None:
    import_deals(session, HUBSPOT, admin)
    import_deals(session, SALESFORCE, admin)
    custom = service.create_deal(
        session,
        DealCreate(name="Hand-made", amount=Decimal("10"), currency="EUR"),
        admin,
    )
    service.update_deal(session, custom.id, DealUpdate(probability=33, tags=["a", "b"]), admin)
    out = io.StringIO()
    count = export_deals_csv(session, admin, out=out)
    assert count == 7
    again = import_deals(session, out.getvalue().encode(), admin, match_on="id")
    assert (again.unchanged, again.failed) == (7, 0), again.errors


def test_contact_roles_column(session: Session, admin: Actor, setting: Setting) -> None:
    rows = (
        b"Deal Name,Contacts,Contact Roles\n"
        b"Roles,jane@acme.example,jane@acme.example=champion; bob@acme.example=Economic buyer\n"
        b"Bad role,jane@acme.example,jane@acme.example=ceo\n"
        b"No pair,,champion\n"
        b"Nobody,,nobody@example.com=user\n"
    )
    report = import_deals(session, rows, admin, mode="create")
    assert report.mapping["Contact Roles"] == "contact_roles"
    assert (report.created, report.failed) == (1, 3)
    assert {(e.row, e.column): e.reason for e in report.errors} == {
        (3, "Contact Roles"): "'ceo' is not a contact role; use decision_maker, champion, "
        "influencer, economic_buyer, user, other",
        (4, "Contact Roles"): "'champion' is not contact=role (e.g. taro@example.jp=champion)",
        (5, "Contact Roles"): "no contact has the email 'nobody@example.com'",
    }
    (made,) = service.list_deals(session, admin).items
    roles = {c.contact_id: c.role for c in made.contacts}
    # A contact named only in the roles is added to the deal with its role.
    assert roles == {
        setting.contacts["jane"]: "champion",
        setting.contacts["bob"]: "economic_buyer",
    }
