"""Importing and exporting contacts as CSV, through the service, on both engines."""

from __future__ import annotations

import io

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, audit_count, contact, row_count
from tests.integration.imports.conftest import DATA, define_field

from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor, AuditEntry, record_history
from ichigen.core.custom_fields import FieldType
from ichigen.core.errors import BadRequest, PermissionDenied
from ichigen.core.tabular import ImportReport
from ichigen.crm.companies.models import Company
from ichigen.crm.contacts import service
from ichigen.crm.contacts.imports import export_contacts_csv, import_contacts
from ichigen.crm.contacts.models import Contact
from ichigen.crm.contacts.schemas import ContactRead


def errors_by_row(report: ImportReport) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for error in report.errors:
        found.setdefault(error.row, {})[error.column] = error.reason
    return found


def by_email(session: Session, admin: Actor, email: str) -> ContactRead:
    found = service.find_contact_by_email(session, email, admin)
    assert found is not None, email
    return found


def test_hubspot_export_imports_with_per_row_errors(
    session: Session, admin: Actor, rep: UserRead
) -> None:
    define_field(session, "nps", "Net Promoter Score", FieldType.number)
    report = import_contacts(session, (DATA / "hubspot_contacts.csv").read_bytes(), admin)

    assert (report.total_rows, report.created, report.failed) == (4, 2, 2)
    assert report.encoding == "utf-8" and report.delimiter == ","
    assert report.mapping["Create Date"] is None
    assert report.mapping["Net Promoter Score"] == "cf.nps"
    errors = errors_by_row(report)
    assert set(errors) == {4, 5}
    assert set(errors[4]) == {"Email", "Country/Region"}
    assert "@-sign" in errors[4]["Email"]
    assert "Atlantis" in errors[4]["Country/Region"]
    assert errors[5] == {
        "Contact owner": "no single user has this email or name",
        "Net Promoter Score": "must be a whole number",
    }
    assert [e.value for e in report.errors if e.column == "Email"] == ["not-an-email"]

    taro = by_email(session, admin, "taro.yamada@sakura-seiko.co.jp")
    assert (taro.first_name, taro.last_name, taro.external_id) == ("Taro", "Yamada", "101")
    assert [e.email for e in taro.emails] == [
        "taro.yamada@sakura-seiko.co.jp",
        "t.yamada@gmail.com",
        "taro@yamada.example",
    ]
    assert [(p.number, p.label, p.primary) for p in taro.phones] == [
        ("+81312345678", "work", True),
        ("+819012345678", "mobile", False),
    ]
    assert taro.lifecycle_stage == "mql" and taro.lead_status == "in_progress"
    assert taro.owner_id == rep.id and taro.country == "JP" and taro.region == "Tokyo"
    assert taro.company is not None and taro.company.name == "Sakura Seiko"
    assert taro.custom == {"nps": 9}
    emma = by_email(session, admin, "emma@northwind.example")
    assert emma.primary_phone == "+14155550100" and emma.country == "US"
    assert emma.lifecycle_stage == "customer" and emma.lead_status == "connected"
    # The bad rows left nothing behind: two contacts, and no company for Liam's row alone.
    assert row_count(session, Contact) == 2
    assert row_count(session, Company) == 2


def test_salesforce_export_with_bom_multiline_cells_and_flags(
    session: Session, admin: Actor, rep: UserRead
) -> None:
    report = import_contacts(
        session, (DATA / "salesforce_contacts.csv").read_bytes(), admin, match_on="external_id"
    )
    assert report.encoding == "utf-8-sig"
    assert (report.created, report.failed) == (2, 1)
    assert errors_by_row(report) == {
        4: {
            "Email Opt Out": "'maybe' is not yes or no",
            "Last Name": "a contact needs a name or an email",
        }
    }
    ichiro = by_email(session, admin, "ichiro.tanaka@fuji-logi.example")
    assert ichiro.external_id == "0035g00000AbCdE" and ichiro.job_title == "Director"
    assert ichiro.street == "2-1-1 Nihonbashi\nTower 5F" and ichiro.postal_code == "103-0027"
    assert ichiro.do_not_email and not ichiro.do_not_call and ichiro.source == "Web"
    assert [p.number for p in ichiro.phones] == ["+81355550101", "+818055550102"]
    assert ichiro.owner_id == rep.id
    grace = by_email(session, admin, "grace@acme.example")
    # A national number is read in the row's country (USA), not the default region.
    assert grace.primary_phone == "+14155550199" and grace.country == "US"
    assert grace.do_not_call and grace.company is not None and grace.company.name == "Acme Corp"


def test_shift_jis_file_with_japanese_headers(session: Session, admin: Actor) -> None:
    data = (DATA / "contacts_shift_jis.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    report = import_contacts(session, data, admin)
    assert report.encoding == "cp932" and (report.created, report.failed) == (2, 0)
    assert report.mapping == {
        "姓": "last_name",
        "名": "first_name",
        "セイ": "last_name_reading",
        "メイ": "first_name_reading",
        "メールアドレス": "email",
        "電話番号": "phone",
        "会社名": "company_name",
        "役職": "job_title",
        "郵便番号": "postal_code",
        "都道府県": "region",
        "市区町村": "city",
        "住所": "street",
        "ライフサイクルステージ": "lifecycle_stage",
        "国": "country",
    }
    ichiro = by_email(session, admin, "ichiro@sakura-seiko.co.jp")
    assert ichiro.full_name == "髙橋 一郎" and ichiro.last_name_reading == "タカハシ"
    assert ichiro.primary_phone == "+81312345678"  # written with full-width digits
    assert ichiro.postal_code == "100-0005" and ichiro.country == "JP"
    assert ichiro.lifecycle_stage == "customer"
    assert ichiro.company is not None and ichiro.company.name == "㈱サクラ精工"
    # Quick search finds an imported contact by its reading.
    assert [c.id for c in service.list_contacts(session, admin, q="たかはし").items] == [ichiro.id]
    # The same bytes, named explicitly as Shift_JIS, read the same.
    again = import_contacts(session, data, admin, encoding="Shift_JIS")
    assert (again.encoding, again.unchanged) == ("cp932", 2)


def test_semicolons_tabs_and_a_bom(session: Session, admin: Actor) -> None:
    semicolons = "\ufeffemail;last_name;tags\nsemi@example.com;Semi;a; b\n".encode()
    # "a; b" is unquoted, so it spills into a fourth cell: a row error, not a crash.
    report = import_contacts(session, semicolons, admin)
    assert report.delimiter == ";" and report.failed == 1
    assert "4 cells" in report.errors[0].reason
    ok = import_contacts(session, b'email;last_name;tags\nsemi@example.com;Semi;"a; b"\n', admin)
    assert ok.created == 1 and by_email(session, admin, "semi@example.com").tags == ["a", "b"]
    tabs = "メール\t姓\ttab@example.com\t田中\n".replace("tab@", "\ntab@", 1)
    report = import_contacts(session, tabs.encode("utf-16"), admin)
    assert (report.delimiter, report.encoding, report.created) == ("\t", "utf-16", 1)
    assert by_email(session, admin, "tab@example.com").last_name == "田中"


def test_dry_run_writes_nothing_and_previews_changes(session: Session, admin: Actor) -> None:
    existing = contact(session, email="emma@northwind.example", first_name="Em", by=admin)
    audits = audit_count(session)
    report = import_contacts(
        session,
        (DATA / "hubspot_contacts.csv").read_bytes(),
        admin,
        mapping={"Contact owner": None, "Net Promoter Score": None},
        dry_run=True,
    )
    assert report.dry_run and (report.created, report.updated, report.failed) == (2, 1, 1)
    assert row_count(session, Contact) == 1 and row_count(session, Company) == 0
    assert audit_count(session) == audits
    assert service.get_contact(session, existing.id, admin).first_name == "Em"
    preview = {p.row: p for p in report.preview}
    assert preview[2].action == "create" and preview[2].changes["last_name"] == [None, "Yamada"]
    assert preview[3].action == "update" and preview[3].id == existing.id
    assert preview[3].changes["first_name"] == ["Em", "Emma"]
    assert preview[4].action == "error"


def test_upsert_by_email_updates_and_reimport_is_unchanged(
    session: Session, admin: Actor, rep: UserRead
) -> None:
    data = (DATA / "hubspot_contacts.csv").read_bytes()
    first = import_contacts(session, data, admin, mapping={"Net Promoter Score": None})
    again = import_contacts(session, data, admin, mapping={"Net Promoter Score": None})
    assert (first.created, again.created, again.updated, again.unchanged) == (2, 0, 0, 2)
    audits = audit_count(session, "contacts")

    changed = data.replace(b"Purchasing Manager", b"Head of Purchasing")
    report = import_contacts(session, changed, admin, mapping={"Net Promoter Score": None})
    assert (report.updated, report.unchanged) == (1, 1)
    taro = by_email(session, admin, "taro.yamada@sakura-seiko.co.jp")
    assert taro.job_title == "Head of Purchasing" and taro.version == 2
    assert audit_count(session, "contacts") == audits + 1
    assert record_history(session, "contacts", taro.id)[0].changes == {
        "job_title": ["Purchasing Manager", "Head of Purchasing"]
    }


def test_upsert_by_external_id_keeps_other_contact_points(session: Session, admin: Actor) -> None:
    header = b"Contact ID,Last Name,Email,Mobile\n"
    import_contacts(
        session,
        header + b"X-1,Mori,mori@old.example,090-1111-2222\n",
        admin,
        match_on="external_id",
    )
    report = import_contacts(
        session,
        header + b"X-1,Mori,mori@new.example,\nX-2,Ueda,ueda@new.example,\n",
        admin,
        match_on="external_id",
    )
    assert (report.updated, report.created) == (1, 1)
    mori = by_email(session, admin, "mori@new.example")
    # The new address became primary; the old one and the phone stayed.
    assert [e.email for e in mori.emails] == ["mori@new.example", "mori@old.example"]
    assert mori.primary_phone == "+819011112222"
    # A file with other_emails lists them all: the rest are replaced.
    import_contacts(
        session,
        b"external_id,email,other_emails\nX-1,mori@new.example,\n",
        admin,
        match_on="external_id",
        mapping={"other_emails": "other_emails"},
    )
    assert [e.email for e in by_email(session, admin, "mori@new.example").emails] == [
        "mori@new.example"
    ]


def test_create_and_update_modes_report_mismatches(session: Session, admin: Actor) -> None:
    contact(session, email="known@example.com", last_name="Known", by=admin)
    data = b"Email,Last Name\nknown@example.com,Known\nnew@example.com,New\n"
    created = import_contacts(session, data, admin, mode="create")
    assert (created.created, created.failed) == (1, 1)
    assert created.errors[0].column == "Email" and "already has this email" in (
        created.errors[0].reason
    )
    updated = import_contacts(session, data.replace(b"new@", b"newer@"), admin, mode="update")
    assert (updated.unchanged, updated.failed) == (1, 1)
    assert updated.errors[0].row == 3 and "no contact matches" in updated.errors[0].reason
    with pytest.raises(BadRequest, match="map a column to external_id"):
        import_contacts(session, data, admin, mode="update", match_on="external_id")


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (b"", {}, "empty"),
        (b"PK\x03\x04rest-of-a-zip", {}, "Excel workbook"),
        (b"Email,Name\n\x82\xa0\x81 ,x\n", {}, "not UTF-8 or Shift_JIS"),
        ("Email,Name\nä@example.com,x\n".encode("latin-1"), {"encoding": "utf-8"}, "not valid"),
        (b"Email\na@example.com\n", {"encoding": "klingon"}, "Unknown text encoding"),
        (b"a@example.com,Yamada\nb@example.com,Ueda\n", {}, "looks like data"),
        (b"Foo,Bar\n1,2\n", {}, "None of the columns"),
        (b"Email\na@example.com\n", {"mapping": {"Email": "e_mail"}}, "unknown field"),
        (b"Email\na@example.com\n", {"mapping": {"Mail": "email"}}, "no such column"),
        (
            b"Email,Mail\na@example.com,b@example.com\n",
            {"mapping": {"Email": "email", "Mail": "email"}},
            "already mapped",
        ),
        (b"Email,Name\n\x00\x00,x\n", {}, "NUL"),
    ],
)
def test_bad_files_are_refused_before_anything_is_written(
    session: Session, admin: Actor, data: bytes, options: dict[str, object], message: str
) -> None:
    audits = row_count(session, AuditEntry)
    with pytest.raises(BadRequest, match=message):
        import_contacts(session, data, admin, **options)  # type: ignore[arg-type]
    assert row_count(session, Contact) == 0 and row_count(session, AuditEntry) == audits


def test_only_writers_may_import(session: Session) -> None:
    viewer = actor(session, "viewer@example.com", "viewer")
    with pytest.raises(PermissionDenied):
        import_contacts(session, b"Email\na@example.com\n", viewer)


def test_batches_commit_as_they_go_and_report_progress(session: Session, admin: Actor) -> None:
    lines = ["Email,Last Name"] + [f"user{i}@example.com,User {i}" for i in range(25)]
    lines[7] = "broken,"
    seen: list[tuple[int, int]] = []
    report = import_contacts(
        session,
        "\n".join(lines).encode(),
        admin,
        batch_size=10,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(10, 25), (20, 25), (25, 25)]
    assert (report.created, report.failed) == (24, 1) and report.errors[0].row == 8
    assert row_count(session, Contact) == 24


def test_export_then_import_round_trips_with_custom_fields(
    session: Session, admin: Actor, rep: UserRead
) -> None:
    define_field(session, "nps", "Net Promoter Score", FieldType.number)
    define_field(session, "interests", "Interests", FieldType.multi_select, options=("a", "b", "c"))
    define_field(session, "renewal", "Renewal", FieldType.date)
    define_field(session, "vip", "VIP", FieldType.boolean)
    define_field(session, "spend", "Spend", FieldType.decimal)
    define_field(session, "note", "Note", FieldType.text)
    import_contacts(session, (DATA / "hubspot_contacts.csv").read_bytes(), admin)
    import_contacts(session, (DATA / "contacts_shift_jis.csv").read_bytes(), admin)
    taro = by_email(session, admin, "taro.yamada@sakura-seiko.co.jp")
    custom = {
        "interests": ["b", "a"],
        "renewal": "2026-04-01",
        "vip": True,
        "spend": "1234.5",
        "note": '=HYPERLINK("x")',
    }
    service.update_contact(
        session,
        taro.id,
        service.ContactUpdate(tags=["展示会2026", "vip"], custom=custom),
        admin,
    )
    before = {c.id: c for c in service.iter_contacts(session, admin)}
    assert len(before) == 4

    out = io.StringIO()
    written = export_contacts_csv(session, admin, out=out, bom=True)
    text = out.getvalue()
    assert written == 4 and text.startswith("\ufeffid,external_id,first_name")
    header = text.splitlines()[0]
    assert header.endswith("cf.nps,cf.interests,cf.renewal,cf.vip,cf.spend,cf.note")
    assert "'=HYPERLINK" in text  # a formula is quoted so spreadsheets show it as text

    again = import_contacts(session, text.encode(), admin)
    assert (again.unchanged, again.created, again.updated, again.failed) == (4, 0, 0, 0)

    for contact_id in before:
        service.delete_contact(session, contact_id, admin)
    restored = import_contacts(session, text.encode(), admin)
    assert (restored.created, restored.failed) == (4, 0)
    after = {c.primary_email: c for c in service.iter_contacts(session, admin)}
    ignored = {"id", "version", "created_at", "updated_at", "emails", "phones"}
    for old in before.values():
        new = after[old.primary_email]
        assert new.model_dump(exclude=ignored) == old.model_dump(exclude=ignored)
        assert [e.email for e in new.emails] == [e.email for e in old.emails]
        assert [p.number for p in new.phones] == [p.number for p in old.phones]


def test_export_writes_what_the_filters_select(session: Session, admin: Actor) -> None:
    contact(session, email="lead@example.com", last_name="Lead", lifecycle_stage="lead", by=admin)
    contact(
        session, email="cust@example.com", last_name="Cust", lifecycle_stage="customer", by=admin
    )
    out = io.StringIO()
    assert export_contacts_csv(session, admin, filters=["lifecycle_stage:eq:lead"], out=out) == 1
    assert "lead@example.com" in out.getvalue() and "cust@" not in out.getvalue()
    out = io.StringIO()
    assert export_contacts_csv(session, admin, q="cust", out=out) == 1
    with pytest.raises(BadRequest, match="unknown field"):
        export_contacts_csv(session, admin, filters=["nope:eq:1"], out=io.StringIO())
