"""Importing and exporting activities as CSV, through the activities service, on both engines."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import audit_count, row_count, user
from tests.integration.transfers.conftest import DATA, Setting

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserRead, UserUpdate
from ichigen.core.audit import Actor
from ichigen.core.errors import BadRequest
from ichigen.crm.activities import service
from ichigen.crm.activities.imports import export_activities_csv, import_activities
from ichigen.crm.activities.models import Activity, ActivityLink
from ichigen.crm.activities.schemas import ActivityRead, RecordRef
from ichigen.crm.deals import service as deal_service
from ichigen.crm.deals.imports import import_deals

CALLS = (DATA / "hubspot_calls.csv").read_bytes()
TASKS = (DATA / "salesforce_tasks.csv").read_bytes()


@pytest.fixture
def deals(session: Session, admin: Actor, setting: Setting) -> dict[str, int]:
    """The HubSpot sample deals, by name."""
    import_deals(session, (DATA / "hubspot_deals.csv").read_bytes(), admin)
    found = deal_service.list_deals(session, admin, limit=50).items
    return {d.name: d.id for d in found}


def by_external_id(session: Session, admin: Actor) -> dict[str, ActivityRead]:
    page = service.list_activities(session, admin, limit=500)
    return {a.external_id: a for a in page.items if a.external_id}


def links(activity: ActivityRead) -> set[tuple[str, int]]:
    return {(link.type, link.id) for link in activity.links}


def test_hubspot_calls_in_the_portal_time_zone(
    session: Session, admin: Actor, rep: UserRead, setting: Setting, deals: dict[str, int]
) -> None:
    report = import_activities(session, CALLS, admin, time_zone="Asia/Tokyo")
    assert (report.total_rows, report.created, report.failed) == (6, 2, 4)
    assert report.mapping["Call duration"] == "duration_seconds"
    assert report.mapping["Associated contact email"] == "contacts"
    errors = {(e.row, e.column): e.reason for e in report.errors}
    assert errors == {
        (4, "Associated contact email"): "the row links to no contact, company or deal",
        (5, "Associated contact email"): "no contact has the email 'stranger@example.com'",
        (6, "Call outcome"): (
            "'Exploded' is not a call outcome; use connected, left_voicemail, no_answer, busy "
            "or wrong_number"
        ),
        (7, "Call duration"): (
            "'1800000' seconds is more than a week; map a column of milliseconds (HubSpot's "
            "call duration) to duration_ms"
        ),
    }
    found = by_external_id(session, admin)
    call = found["5001"]
    assert (call.kind, call.direction, call.duration_seconds, call.outcome) == (
        "call",
        "outbound",
        540,
        "connected",
    )
    assert call.occurred_at == datetime(2026, 5, 12, 5, 30, tzinfo=UTC)  # 14:30 in Tokyo
    assert call.subject == "見積もりのフォローアップ" and call.owner_id == rep.id
    assert links(call) == {
        ("contact", setting.contacts["taro"]),
        ("company", setting.companies["Sakura Seiko"]),
        ("deal", deals["サクラ精工 生産管理システム更新"]),
    }
    timeline = service.timeline(session, "deal", deals["サクラ精工 生産管理システム更新"], admin)
    assert [a.external_id for a in timeline.items] == ["5001"]
    assert found["5002"].outcome == "no_answer" and found["5002"].direction == "inbound"

    again = import_activities(session, CALLS, admin, time_zone="Asia/Tokyo")
    assert (again.created, again.updated, again.unchanged, again.failed) == (0, 0, 2, 4)
    assert row_count(session, Activity) == 2


def test_salesforce_tasks_by_type_name_and_related_record(
    session: Session, admin: Actor, rep: UserRead, setting: Setting, deals: dict[str, int]
) -> None:
    report = import_activities(session, TASKS, admin)
    assert (report.created, report.failed) == (4, 3)
    assert report.mapping["Type"] == "kind" and report.mapping["Related To"] == "related_to"
    assert report.mapping["Name"] == "contacts" and report.mapping["Task Subtype"] is None
    errors = {(e.row, e.column): e.reason for e in report.errors}
    assert errors == {
        (6, "Related To"): "no deal or company is named 'Nobody Corp'",
        (7, "Type"): "'Fax' is not an activity type; use call, email, meeting or note",
        (8, "Due Date"): "'31/12/2026' is not a date; write it as 2024-03-15",
    }
    found = by_external_id(session, admin)
    assert {k: a.kind for k, a in found.items()} == {
        "00T5g00000Aa1": "email",
        "00T5g00000Aa2": "call",
        "00T5g00000Aa3": "meeting",
        "00T5g00000Aa4": "note",
    }
    email = found["00T5g00000Aa1"]
    assert links(email) == {
        ("contact", setting.contacts["jane"]),  # by name
        ("deal", deals["Acme renewal 2026"]),  # "Related To" an opportunity
    }
    assert email.occurred_at == datetime(2026, 6, 2, tzinfo=UTC)  # 6/2/2026: month first
    call = found["00T5g00000Aa2"]
    assert links(call) == {
        ("contact", setting.contacts["taro"]),
        ("company", setting.companies["Sakura Seiko"]),
    }
    assert (call.outcome, call.duration_seconds) == ("left_voicemail", 300)
    assert email.owner_id == rep.id  # "Rep", by name


def test_kind_from_the_fields_and_links_added_never_dropped(
    session: Session, admin: Actor, setting: Setting
) -> None:
    rows = (
        b"external_id,companies,contacts,direction,email_to,subject\n"
        b"a,Acme Corp,,outbound,,Called\n"
        b"b,Acme Corp,,,jane@acme.example,Mailed\n"
        b"c,acme.example,,,,Noted\n"
    )
    report = import_activities(session, rows, admin)
    assert report.created == 3, report.errors
    found = by_external_id(session, admin)
    assert [found[k].kind for k in "abc"] == ["call", "email", "note"]
    assert found["b"].email_to == ["jane@acme.example"]

    again = import_activities(
        session, b"external_id,contacts,kind\na,jane@acme.example,call\nb,,meeting\n", admin
    )
    assert (again.updated, again.failed) == (1, 1)
    assert again.errors[0].reason == "the activity is a email; its kind cannot change"
    call = by_external_id(session, admin)["a"]
    assert links(call) == {
        ("company", setting.companies["Acme Corp"]),
        ("contact", setting.contacts["jane"]),
    }


def test_a_batch_is_written_together_and_bad_rows_fail_alone(
    session: Session, admin: Actor, setting: Setting
) -> None:
    rows = (
        b"external_id,contacts,kind,subject,owner\n"
        b"x1,jane@acme.example,call,First,\n"
        b"x2,nobody@nowhere.example,call,No contact,\n"
        b"x1,bob@acme.example,call,First again,\n"
        b"x3,jane@acme.example,note,Third,\n"
        b"x4,jane@acme.example,note,Inactive owner,gone@example.com\n"
    )
    gone = user(session, "gone@example.com")
    auth_service.update_user(session, gone.id, UserUpdate(is_active=False), admin)
    report = import_activities(session, rows, admin)
    # x1 is created with the batch, and its second row then updates it (links are added).
    assert (report.created, report.updated, report.failed) == (2, 1, 2), report.errors
    assert {e.row for e in report.errors} == {3, 6}
    found = by_external_id(session, admin)
    assert set(found) == {"x1", "x3"} and found["x1"].subject == "First again"
    assert links(found["x1"]) == {
        ("contact", setting.contacts["jane"]),
        ("contact", setting.contacts["bob"]),
    }
    assert service.activity_counts_by_owner(
        session, found["x3"].occurred_at.date(), found["x3"].occurred_at.date().replace(year=3000)
    ) == {admin.user_id: {"call": 1, "note": 1}}


def test_dry_run_writes_nothing(
    session: Session, admin: Actor, setting: Setting, deals: dict[str, int]
) -> None:
    audits = audit_count(session)
    report = import_activities(session, TASKS, admin, dry_run=True, batch_size=2)
    assert report.dry_run and (report.created, report.failed) == (4, 3)
    assert row_count(session, Activity) == 0 and row_count(session, ActivityLink) == 0
    assert audit_count(session) == audits
    first = report.preview[0]
    assert first.action == "create" and first.changes["kind"] == [None, "email"]
    assert first.changes["links"] == [None, ["contact: Jane Doe", "deal: Acme renewal 2026"]]


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (
            b"Subject\nHello\n",
            {"mode": "create"},
            "map a column to contacts, companies, deals or related_to",
        ),
        (b"Subject,Company\nHello,Acme\n", {"time_zone": "Nowhere/Land"}, "Unknown time zone"),
        (b"Subject,Company\nHello,Acme\n", {"mode": "update"}, "map a column to external_id"),
        (b"\xef\xbb\xbf\r\n", {}, "it must name the columns"),
    ],
)
def test_bad_files_are_refused(
    session: Session, admin: Actor, data: bytes, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        import_activities(session, data, admin, **options)  # type: ignore[arg-type]


def test_export_filters_and_imports_back(
    session: Session, admin: Actor, rep: UserRead, setting: Setting, deals: dict[str, int]
) -> None:
    import_activities(session, CALLS, admin, time_zone="Asia/Tokyo")
    import_activities(session, TASKS, admin)
    out = io.StringIO()
    assert export_activities_csv(session, admin, kinds=["call"], out=out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {r["external_id"] for r in rows} == {"5001", "5002", "00T5g00000Aa2"}
    first = next(r for r in rows if r["external_id"] == "5001")
    assert first["contacts"] == "taro.yamada@sakura-seiko.co.jp"
    assert first["deals"] == "10001" and first["companies"] == "Sakura Seiko"
    assert first["occurred_at"] == "2026-05-12T05:30:00+00:00" and first["owner"] == rep.email

    acme = RecordRef.model_validate({"type": "deal", "id": deals["Acme renewal 2026"]})
    by_record = io.StringIO()
    assert export_activities_csv(session, admin, record=acme, out=by_record) == 2
    june = io.StringIO()
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 10, tzinfo=UTC)
    assert export_activities_csv(session, admin, start=start, end=end, out=june) == 2
    with pytest.raises(BadRequest):
        export_activities_csv(session, admin, kinds=["fax"], out=io.StringIO())

    everything = io.StringIO()
    assert export_activities_csv(session, admin, out=everything) == 6
    again = import_activities(session, everything.getvalue().encode(), admin, match_on="id")
    assert (again.unchanged, again.failed) == (6, 0), again.errors
