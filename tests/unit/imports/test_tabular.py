"""CSV decoding, delimiter sniffing, header mapping and value conversion (no database)."""

from __future__ import annotations

import io

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ichigen.core.errors import BadRequest
from ichigen.core.normalise import national_digits, normalise_phone
from ichigen.core.tabular import (
    ImportReport,
    ImportRowError,
    cell_text,
    country_code,
    csv_row,
    csv_safe,
    decode_text,
    lead_status,
    lifecycle_stage,
    parse_bool,
    parse_mapping,
    read_table,
    resolve_mapping,
    sniff_delimiter,
    split_name,
    suggest_mapping,
    write_error_report,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("姓,名\n山田,太郎\n".encode(), "utf-8"),
        ("\ufeff姓,名\n山田,太郎\n".encode(), "utf-8-sig"),
        ("姓,名\n山田,太郎\n".encode("cp932"), "cp932"),
        ("姓,名\n髙橋,①\n".encode("cp932"), "cp932"),
        ("姓,名\n山田,太郎\n".encode("utf-16"), "utf-16"),
        (b"email\na@example.com\n", "utf-8"),
    ],
)
def test_encodings_are_detected(data: bytes, expected: str) -> None:
    text, used = decode_text(data)
    assert used == expected and text.startswith("姓,名" if "姓" in text else "email")
    assert not text.startswith("\ufeff")


def test_named_encodings_and_their_failures() -> None:
    assert decode_text("名\n".encode("cp932"), "Shift_JIS") == ("名\n", "cp932")
    assert decode_text("é\n".encode("latin-1"), "latin-1")[0] == "é\n"
    assert decode_text("\ufeffx\n".encode(), "UTF-8") == ("x\n", "utf-8-sig")
    for name, message in (("klingon", "Unknown text encoding"), ("base64", "Unknown text")):
        with pytest.raises(BadRequest, match=message) as caught:
            decode_text(b"x\n", name)
        assert caught.value.errors[0].loc == ("encoding",)
    with pytest.raises(BadRequest, match="not valid utf-8: the byte 0xe9 at position 0"):
        decode_text("é\n".encode("latin-1"), "utf-8")
    with pytest.raises(BadRequest, match="cannot be read as idna"):
        decode_text(b"xn--zz\n", "idna")


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("a,b,c\n1,2,3\n", ","),
        ("a;b;c\n1;2,5;3\n", ";"),
        ("a\tb\tc\n1\t2\t3\n", "\t"),
        ('name,notes\n"Sato; Inc","a;b;c;d"\n', ","),
        ("email\nx@example.com\n", ","),
    ],
)
def test_delimiters_are_sniffed(text: str, delimiter: str) -> None:
    assert sniff_delimiter(text) == delimiter


def test_tables_skip_blank_rows_and_keep_spreadsheet_row_numbers() -> None:
    table = read_table(b'Name,Name,,Note\r\nA,B,,"two\nlines"\r\n,,,\r\n\r\nC,D,,\r\n')
    assert table.headers == ["Name", "Name (2)", "column 3", "Note"]
    assert table.row_count == 2
    assert list(table.rows()) == [(2, ["A", "B", "", "two\nlines"]), (5, ["C", "D", "", ""])]
    with pytest.raises(BadRequest, match="first line of the file is empty"):
        read_table(b"\n\nemail\n")
    with pytest.raises(BadRequest, match="not valid CSV near line 2"):
        read_table(b"a,b\n" + b'"' + b"x" * 200_000 + b'"\n')


def test_hubspot_and_salesforce_headers_map_automatically() -> None:
    hubspot = [
        "Record ID",
        "First Name",
        "Last Name",
        "Email",
        "Phone Number",
        "Mobile Phone Number",
        "Company Name",
        "Job Title",
        "Lifecycle Stage",
        "Lead Status",
        "Contact owner",
        "Street Address",
        "City",
        "State/Region",
        "Postal Code",
        "Country/Region",
        "Create Date",
    ]
    assert list(suggest_mapping(hubspot, "contacts", []).values()) == [
        "external_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "mobile_phone",
        "company_name",
        "job_title",
        "lifecycle_stage",
        "lead_status",
        "owner",
        "street",
        "city",
        "region",
        "postal_code",
        "country",
        None,
    ]
    salesforce = ["Contact ID", "Title", "Account Name", "Phone", "Mobile", "Lead Source"]
    salesforce += ["Mailing Zip/Postal Code", "Mailing State/Province", "Contact Owner"]
    assert list(suggest_mapping(salesforce, "contacts", []).values()) == [
        "external_id",
        "job_title",
        "company_name",
        "phone",
        "mobile_phone",
        "source",
        "postal_code",
        "region",
        "owner",
    ]
    companies = ["Company name", "Company Domain Name", "Number of Employees", "Annual Revenue"]
    companies += ["Account Name", "Website", "Employees", "Billing City", "親会社"]
    assert list(suggest_mapping(companies, "companies", []).values()) == [
        "name",
        "domain",
        "employees",
        "annual_revenue",
        None,  # name is taken by the first column
        "website",
        None,
        "city",
        "parent",
    ]


def test_mapping_choices_are_checked() -> None:
    headers = ["E-mail", "Notes", "Mail"]
    resolved = resolve_mapping(headers, "contacts", [], {"Notes": "job_title", "E-mail": ""})
    assert resolved == {"E-mail": None, "Notes": "job_title", "Mail": None}
    with pytest.raises(BadRequest) as caught:
        resolve_mapping(headers, "contacts", [], {"Nope": "email", "Notes": "cf.missing"})
    assert [e.loc for e in caught.value.errors] == [("mapping", "Nope"), ("mapping", "Notes")]
    assert parse_mapping('{"a": "email", "b": null}') == {"a": "email", "b": None}
    assert parse_mapping("  ") is None
    for bad in ("{", "[1]", '{"a": 1}'):
        with pytest.raises(BadRequest):
            parse_mapping(bad)


@pytest.mark.parametrize(
    ("value", "stage"),
    [
        ("marketingqualifiedlead", "mql"),
        ("Marketing Qualified Lead", "mql"),
        ("SALESQUALIFIEDLEAD", "sql"),
        ("Sales Qualified Lead", "sql"),
        ("Customer", "customer"),
        ("顧客", "customer"),
        ("リード", "lead"),
        ("evangelist", "evangelist"),
    ],
)
def test_lifecycle_stages_of_other_crms(value: str, stage: str) -> None:
    assert lifecycle_stage(value) == stage


def test_lead_statuses_countries_and_booleans() -> None:
    assert lead_status("IN_PROGRESS") == "in_progress"
    assert lead_status("Open - Not Contacted") == "new"
    assert lead_status("Closed - Not Converted") == "unqualified"
    assert [country_code(v) for v in ("Japan", "日本", "jp", "United States", "USA", "ドイツ")] == [
        "JP",
        "JP",
        "JP",
        "US",
        "US",
        "DE",
    ]
    assert [parse_bool(v) for v in ("1", "TRUE", "yes", "はい", "0", "false", "いいえ")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    for convert, bad in ((country_code, "Atlantis"), (lifecycle_stage, "hot"), (parse_bool, "?")):
        with pytest.raises(ValueError, match=bad.replace("?", r"\?")):
            convert(bad)


def test_names_split_by_script() -> None:
    assert split_name("山田 太郎") == ("太郎", "山田")
    assert split_name("山田\u3000太郎") == ("太郎", "山田")
    assert split_name("Mary Ann Smith") == ("Mary Ann", "Smith")
    assert split_name("Madonna") == ("Madonna", None)
    assert split_name("山田太郎") == (None, "山田太郎")


def test_formulas_are_quoted_on_export_and_unquoted_on_import() -> None:
    for value in ("=1+1", "@SUM(A1)", "-cmd", "+cmd"):
        assert csv_safe(value) == "'" + value and cell_text(csv_safe(value)) == value
    for value in ("+819012345678", "-12.5", "plain", "'quoted"):
        assert csv_safe(value) == value and cell_text(value) == value
    assert csv_row([None, True, ["a", "b"], 3]) == ["", "true", "a; b", "3"]


def test_error_reports_are_csv() -> None:
    report = ImportReport(
        entity="contacts",
        dry_run=False,
        encoding="utf-8",
        delimiter=",",
        mapping={},
        total_rows=1,
        errors=[ImportRowError(row=2, column="Email", value="=x", reason="bad")],
    )
    out = io.StringIO()
    write_error_report(report, out)
    assert out.getvalue() == "row,column,value,reason\r\n2,Email,'=x,bad\r\n"


def _by_phonenumbers(raw: str, region: str) -> str | None:
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _ours(raw: str, region: str) -> str | None:
    try:
        return normalise_phone(raw, region)
    except ValueError:
        return None


PHONE_LIKE = st.builds(
    lambda prefix, body, seps: prefix + "".join(d + s for d, s in zip(body, seps, strict=False)),
    st.sampled_from(["0", "0", "+81", "+81 ", "+810", "00", "010", "81", "+1", "(0"]),
    st.text("0123456789", min_size=5, max_size=19),
    st.lists(st.sampled_from(["", "", "", "-", " ", "(", ")", "."]), min_size=19, max_size=19),
)


@settings(max_examples=1000, deadline=None)
@given(raw=PHONE_LIKE, region=st.sampled_from(["JP", "US"]))
@example(raw="090-1234-5678", region="JP")
@example(raw="0120-123-456", region="JP")
@example(raw="+81 3 1234 5678", region="US")
def test_the_fast_path_for_japanese_numbers_agrees_with_phonenumbers(raw: str, region: str) -> None:
    normalise_phone.cache_clear()
    assert _ours(raw, region) == _by_phonenumbers(raw, region)


@pytest.mark.parametrize(
    ("e164", "digits"),
    [
        ("+819012345678", "09012345678"),
        ("+81312345678", "0312345678"),
        ("+14155550100", "4155550100"),
    ],
)
def test_national_digits(e164: str, digits: str) -> None:
    assert national_digits(e164) == digits
