"""CSV files in and out: decoding, delimiter sniffing, header mapping, value conversion, reports.

Shared by the contact, company, deal and activity imports. A file is decoded whole (UTF-8
with or without a BOM, UTF-16 with a BOM, or Shift_JIS/CP932, detected automatically unless
the caller names an encoding), its delimiter sniffed (comma, semicolon or tab), and its header
row mapped to our fields: our own field names, the column names of HubSpot and Salesforce
exports, common Japanese headers, and custom fields as ``cf.<key>`` or by their label. Anything
wrong with the file as a whole is a ``BadRequest`` raised before a single record is written.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from babel import Locale
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from ichigen.core.custom_fields import CustomFieldRead, FieldType, fields_by_key
from ichigen.core.errors import BadRequest, FieldError, IchigenError
from ichigen.core.text import fold, has_cjk

Entity = Literal["contacts", "companies", "deals", "activities"]
ENTITIES: tuple[Entity, ...] = ("contacts", "companies", "deals", "activities")

#: Rows written per transaction by an import.
BATCH_SIZE = 1000
#: Rows of a file shown by a preview, and rows whose changes a dry run lists.
PREVIEW_ROWS = 5
DRY_RUN_PREVIEW_ROWS = 20
#: Error entries an import report keeps (the counts stay exact beyond it).
MAX_REPORTED_ERRORS = 10_000
DELIMITERS = (",", ";", "\t")

# ----------------------------------------------------------------------------- schemas


class ImportField(BaseModel):
    """A field a column can be mapped to."""

    key: str
    label: str


class ImportRowError(BaseModel):
    """One problem in one row: ``row`` counts as a spreadsheet does (the header is row 1)."""

    row: int
    column: str
    value: str | None = None
    reason: str


class ImportChange(BaseModel):
    """What a dry run would do to one row: ``changes`` is ``{field: [before, after]}``."""

    row: int
    action: Literal["create", "update", "unchanged", "error"]
    id: int | None = None
    changes: dict[str, list[Any]] = {}


class ImportReport(BaseModel):
    """The outcome of an import (or of a dry run, which writes nothing)."""

    entity: str
    dry_run: bool
    encoding: str
    delimiter: str
    mapping: dict[str, str | None]
    total_rows: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[ImportRowError] = []
    errors_omitted: int = 0
    preview: list[ImportChange] = []


class ImportPreview(BaseModel):
    """What a file looks like before importing it: for the mapping step of the UI."""

    entity: str
    encoding: str
    delimiter: str
    headers: list[str]
    mapping: dict[str, str | None]
    rows: list[list[str]]
    row_count: int
    fields: list[ImportField]
    warnings: list[str] = []


# ----------------------------------------------------------------------------- decoding

BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: Shift_JIS as Windows and Excel write it is CP932 (a superset with ①, ㈱, 髙 ...).
_CP932_NAMES = {"shift_jis", "shift-jis", "sjis", "s_jis", "s-jis", "x-sjis", "ms932", "cp932"}
_CP932_NAMES |= {"windows-31j", "ms_kanji", "csshiftjis", "shiftjis", "mskanji"}


def _codec(name: str) -> str:
    """The Python codec for an encoding a user named; ``BadRequest`` if there is none."""
    wanted = name.strip().lower()
    if wanted in _CP932_NAMES:
        return "cp932"
    try:
        info = codecs.lookup(wanted)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise BadRequest(
            f"Unknown text encoding '{name[:40]}'; use e.g. utf-8 or shift_jis.",
            [FieldError(("encoding",), "unknown encoding")],
        )
    return info.name


def decode_text(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The text of a file and the encoding it was read with.

    Without ``encoding``: a BOM decides, else UTF-8 if the bytes are valid UTF-8, else
    Shift_JIS (CP932). A file that fits none, or not the named one, is a ``BadRequest``.
    """
    if not data.strip():
        raise BadRequest("The file is empty.", [FieldError(("file",), "empty file")])
    if data.startswith(b"PK\x03\x04"):
        raise BadRequest(
            "This is an Excel workbook (or another zip archive), not a CSV file; "
            "save it as CSV first.",
            [FieldError(("file",), "not a CSV file")],
        )
    if encoding and encoding.strip():
        codec = _codec(encoding)
        if codec == "utf-8" and data.startswith(codecs.BOM_UTF8):
            codec = "utf-8-sig"
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"The file is not valid {encoding.strip()[:40]}: the byte "
                f"0x{exc.object[exc.start]:02x} at position {exc.start} cannot be decoded. "
                "Check the file's encoding.",
                [FieldError(("encoding",), "does not match the file")],
            ) from None
        except (UnicodeError, ValueError):
            raise BadRequest(
                f"The file cannot be read as {encoding.strip()[:40]}; check the file's encoding.",
                [FieldError(("encoding",), "does not match the file")],
            ) from None
    else:
        codec = next((name for bom, name in BOMS if data.startswith(bom)), "")
        candidates = (codec,) if codec else ("utf-8", "cp932")
        for codec in candidates:
            try:
                text = data.decode(codec)
                break
            except UnicodeDecodeError as exc:
                failure = exc
        else:
            raise BadRequest(
                "The file's encoding is not UTF-8 or Shift_JIS (the byte "
                f"0x{failure.object[failure.start]:02x} at position {failure.start} fits "
                "neither); save it as UTF-8 or name its encoding.",
                [FieldError(("file",), "unknown encoding")],
            )
    if "\x00" in text:
        raise BadRequest(
            "The file contains NUL characters, so it is not a CSV text file "
            "(a UTF-16 file needs its byte order mark, or name its encoding).",
            [FieldError(("file",), "not a text file")],
        )
    return text.removeprefix("\ufeff"), codec


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: whichever splits the first lines into the most, equal columns."""
    sample = text[:65536]
    if len(text) > len(sample):
        sample = sample.rsplit("\n", 1)[0]
    best, best_score = ",", (-1, -1)
    for delimiter in DELIMITERS:
        try:
            rows = [
                r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if r
            ][:50]
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        consistent = sum(1 for r in rows if len(r) == width)
        score = (1 if width > 1 and consistent == len(rows) else 0, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


# ----------------------------------------------------------------------------- tables


@dataclass
class Table:
    """A decoded CSV file: its header and a way to walk its rows."""

    encoding: str
    delimiter: str
    headers: list[str]
    row_count: int
    text: str = field(repr=False)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(row number, cells)`` of every non-blank data row; the header is row 1."""
        reader = csv.reader(io.StringIO(self.text, newline=""), delimiter=self.delimiter)
        next(reader, None)
        for number, cells in enumerate(reader, start=2):
            if any(cells) and any(c.strip() for c in cells):
                yield number, cells

    def batches(self, size: int = BATCH_SIZE) -> Iterator[list[tuple[int, list[str]]]]:
        batch: list[tuple[int, list[str]]] = []
        for item in self.rows():
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def first_rows(self, count: int) -> list[list[str]]:
        out = []
        for _, cells in self.rows():
            out.append(cells)
            if len(out) >= count:
                break
        return out


def clean_headers(raw: list[str]) -> list[str]:
    """Headers stripped; blank ones named by position; repeats made unique with a suffix."""
    headers: list[str] = []
    seen: set[str] = set()
    for position, name in enumerate(raw, start=1):
        name = name.strip().strip("\ufeff").strip() or f"column {position}"
        unique, k = name, 2
        while unique in seen:
            unique, k = f"{name} ({k})", k + 1
        seen.add(unique)
        headers.append(unique)
    return headers


def _count_rows(text: str, delimiter: str, *, strict: bool) -> tuple[list[str], int]:
    """The header and the number of non-blank rows after it.

    Strictly read, a quote out of place is a ``csv.Error`` (the caller reads the file again
    leniently, as spreadsheets do), but a file that ends inside a quoted cell, which would
    swallow the rows after it, is a ``BadRequest``.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=strict)
    began = 1
    try:
        header = next(reader, None)
        if not header or not any(c.strip() for c in header):
            raise BadRequest(
                "The first line of the file is empty; it must name the columns.",
                [FieldError(("file",), "no header row")],
            )
        count = 0
        began = reader.line_num + 1
        for cells in reader:
            if any(cells) and any(c.strip() for c in cells):
                count += 1
            began = reader.line_num + 1
    except csv.Error as exc:
        if strict and "unexpected end of data" in str(exc):
            raise BadRequest(
                f"The file ends inside the quoted cell that begins on line {began}: "
                'a closing " is missing.',
                [FieldError(("file",), "a quoted cell is not closed")],
            ) from None
        if strict:
            raise
        raise BadRequest(
            f"The file is not valid CSV near line {reader.line_num}: {exc}.",
            [FieldError(("file",), "malformed CSV")],
        ) from None
    return header, count


def read_table(data: bytes, encoding: str | None = None) -> Table:
    """Decode and check a CSV file; ``BadRequest`` for an empty, undecodable or garbled one
    (one that ends inside a quoted cell, too)."""
    text, used = decode_text(data, encoding)
    delimiter = sniff_delimiter(text)
    try:
        header, count = _count_rows(text, delimiter, strict=True)
    except csv.Error:
        header, count = _count_rows(text, delimiter, strict=False)
    return Table(used, delimiter, clean_headers(header), count, text)


# ----------------------------------------------------------------------------- mapping


def header_key(name: str) -> str:
    """A header as compared for mapping: folded, without spaces and punctuation."""
    return re.sub(r"[\W_]+", "", fold(name))


_CONTACT_HEADERS: dict[str, str] = {
    "external_id": "external_id|Record ID|Contact ID|Lead ID|ID (external)|外部ID|レコードID",
    "first_name": "first_name|First Name|Given Name|Firstname|名|名(漢字)",
    "last_name": "last_name|Last Name|Surname|Family Name|Lastname|姓|姓(漢字)|苗字|名字",
    "first_name_reading": (
        "first_name_reading|First Name Reading|First Name (Kana)|メイ|"
        "名(カナ)|名(かな)|名(フリガナ)|名(ふりがな)|名(よみ)|フリガナ(名)|ふりがな(名)"
    ),
    "last_name_reading": (
        "last_name_reading|Last Name Reading|Last Name (Kana)|セイ|"
        "姓(カナ)|姓(かな)|姓(フリガナ)|姓(ふりがな)|姓(よみ)|フリガナ(姓)|ふりがな(姓)"
    ),
    "full_name": "full_name|Full Name|Name|Contact Name|氏名|名前|お名前",
    "full_name_reading": (
        "full_name_reading|Name Reading|フリガナ|ふりがな|よみがな|"
        "氏名(カナ)|氏名(フリガナ)|氏名(ふりがな)"
    ),
    "email": (
        "email|Email|E-mail|Email Address|E-mail Address|Primary Email|Mail|"
        "メールアドレス|メール|Eメール|電子メール"
    ),
    "other_emails": (
        "other_emails|Additional email addresses|Additional Emails|Other Emails|"
        "Secondary Email|その他のメールアドレス"
    ),
    "phone": (
        "phone|Phone Number|Phone|Business Phone|Work Phone|Tel|Telephone|"
        "電話番号|電話|会社電話番号|TEL"
    ),
    "mobile_phone": (
        "mobile_phone|Mobile Phone Number|Mobile Phone|Mobile|Cell Phone|携帯電話番号|携帯電話|"
        "携帯番号|携帯"
    ),
    "home_phone": "home_phone|Home Phone|自宅電話番号|自宅電話",
    "fax": "fax|Fax|Fax Number|FAX番号|ファックス",
    "other_phones": "other_phones|Other Phone|Other Phones|その他の電話番号",
    "company_name": (
        "company_name|Company Name|Company|Associated Company|Account Name|Organization|"
        "会社名|企業名|社名|所属会社|勤務先"
    ),
    "job_title": "job_title|Job Title|Title|Position|役職|肩書き|肩書",
    "street": "street|Street Address|Street|Mailing Street|Address|住所|番地|町名・番地",
    "city": "city|City|Mailing City|市区町村|市町村",
    "region": "region|State/Region|State|Province|Mailing State/Province|Prefecture|都道府県",
    "postal_code": "postal_code|Postal Code|Zip|Zip Code|Mailing Zip/Postal Code|郵便番号",
    "country": "country|Country/Region|Country|Mailing Country|国|国名",
    "lifecycle_stage": "lifecycle_stage|Lifecycle Stage|ライフサイクルステージ",
    "lead_status": "lead_status|Lead Status|リードステータス",
    "source": "source|Lead Source|Original Source|Source|リードソース|流入元|獲得経路",
    "owner": "owner|Contact owner|Contact Owner|Lead Owner|HubSpot Owner|Owner|担当者|所有者",
    "tags": "tags|Tags|Tag|タグ",
    "do_not_email": (
        "do_not_email|Email Opt Out|Unsubscribed from all email|Do Not Email|メール配信停止"
    ),
    "do_not_call": "do_not_call|Do Not Call|電話不可",
    "do_not_sms": "do_not_sms|Do Not SMS|SMS配信停止",
}

_COMPANY_HEADERS: dict[str, str] = {
    "external_id": "external_id|Record ID|Account ID|Company ID|外部ID",
    "name": "name|Company name|Name|Account Name|Company|会社名|企業名|社名|法人名|取引先名",
    "domain": "domain|Company Domain Name|Domain|Domain Name|ドメイン",
    "website": "website|Website URL|Website|URL|Web Site|ウェブサイト|ホームページ|Webサイト",
    "industry": "industry|Industry|業種|業界",
    "employees": "employees|Number of Employees|Employees|Employee Count|従業員数|社員数",
    "annual_revenue": "annual_revenue|Annual Revenue|Revenue|売上高|年商|年間売上",
    "revenue_currency": "revenue_currency|Currency|Account Currency|Currency ISO Code|通貨",
    "phone": "phone|Phone Number|Phone|電話番号|代表電話番号|電話|TEL",
    "street": "street|Street Address|Billing Street|Street|Address|住所|番地",
    "city": "city|City|Billing City|市区町村",
    "region": "region|State/Region|Billing State/Province|State|Prefecture|都道府県",
    "postal_code": "postal_code|Postal Code|Billing Zip/Postal Code|Zip|Zip Code|郵便番号",
    "country": "country|Country/Region|Billing Country|Country|国|国名",
    "description": "description|Description|About|説明|備考|概要",
    "owner": "owner|Company owner|Account Owner|HubSpot Owner|Owner|担当者|所有者",
    "parent": "parent|Parent Company|Parent Account|Parent|親会社",
    "tags": "tags|Tags|タグ",
}

_DEAL_HEADERS: dict[str, str] = {
    "id": "id",
    "external_id": (
        "external_id|Record ID|Deal ID|Opportunity ID|商談ID|商談 ID|外部ID|レコードID"
    ),
    "name": "name|Deal Name|Opportunity Name|Name|Deal|商談名|案件名",
    "amount": "amount|Amount|Deal amount|Opportunity Amount|金額|商談金額|受注金額",
    "currency": (
        "currency|Currency|Deal currency code|Deal Currency|Opportunity Currency|"
        "Currency ISO Code|Opportunity Currency ISO Code|通貨|通貨コード"
    ),
    "pipeline": "pipeline|Pipeline|Deal pipeline|Sales Process|パイプライン|営業プロセス",
    "stage": "stage|Deal Stage|Stage|Stage Name|Opportunity Stage|フェーズ|ステージ|商談フェーズ",
    "owner": (
        "owner|Deal owner|Opportunity Owner|Owner|Owner Name|HubSpot Owner|担当者|所有者|"
        "商談 所有者|商談所有者"
    ),
    "company": (
        "company|Associated Company|Associated Companies|Account Name|Account|Company|"
        "Company name|取引先名|取引先|会社名"
    ),
    "contacts": (
        "contacts|Associated Contact|Associated Contacts|Associated Contact(s)|Contacts|"
        "Contact|Contact Email|Contact Emails|Primary Contact|取引先責任者|取引先責任者メール"
    ),
    "contact_roles": "contact_roles|Contact Roles|Contact Role|取引先責任者の役割",
    "expected_close_date": (
        "expected_close_date|Close Date|Expected Close Date|完了予定日|クローズ予定日|"
        "受注予定日|成約予定日"
    ),
    "closed_at": "closed_at|Closed At|Closed Date|Date Closed|完了日|クローズ日",
    "created_at": "created_at|Create Date|Created Date|Date Created|作成日|作成日時",
    "probability": "probability|Deal probability|Probability (%)|Probability|確度|受注確度",
    "forecast_category": (
        "forecast_category|Forecast category|Forecast Category Name|予測カテゴリ|売上予測分類"
    ),
    "next_step": "next_step|Next step|次のステップ|ネクストステップ|次回アクション",
    "next_step_due": "next_step_due|Next step due|Next Step Date|次のステップ期日",
    "lost_reason": "lost_reason|Closed lost reason|Loss Reason|Lost Reason|Reason Lost|失注理由",
    "close_note": "close_note|Closed won reason|Close Note|Won Reason|受注理由|クローズメモ",
    "deal_type": "deal_type|Deal Type|Type|Opportunity Type|商談種別|種別|タイプ",
    "source": "source|Lead Source|Source|Original Source|Deal source|リードソース|流入元",
    "tags": "tags|Tags|タグ",
}

_ACTIVITY_HEADERS: dict[str, str] = {
    "id": "id",
    "external_id": (
        "external_id|Activity ID|Record ID|Engagement ID|Task ID|Event ID|活動ID|外部ID"
    ),
    "kind": (
        "kind|Activity type|Engagement type|Type|Task Subtype|Event Subtype|Activity|"
        "種別|活動種別|種類|活動の種類"
    ),
    "subject": "subject|Subject|Email subject|Call title|Meeting name|Title|件名|タイトル|題名",
    "body": (
        "body|Body|Notes|Note body|Call notes|Email body|Meeting description|Description|"
        "Comments|Full Comments|内容|本文|メモ|詳細|コメント"
    ),
    "occurred_at": (
        "occurred_at|Activity date|Due Date|Due Date Only|Start|Start Date Time|"
        "Meeting start time|Date|日時|活動日|活動日時|日付|開始日時|期日"
    ),
    "ends_at": "ends_at|End|End Date Time|Meeting end time|終了日時|終了",
    "all_day": "all_day|All day|All-Day Event|Is All-Day Event|終日",
    "direction": (
        "direction|Call direction|Call Type|Email direction|Direction|発着信|通話種別|方向"
    ),
    "duration_seconds": (
        "duration_seconds|Call duration|Call Duration (seconds)|Call Duration In Seconds|"
        "Duration|Duration (seconds)|通話時間|通話時間(秒)|所要時間"
    ),
    "duration_ms": "duration_ms|Call duration (ms)|Duration (ms)|通話時間(ミリ秒)",
    "outcome": "outcome|Call outcome|Call Result|Call Disposition|Outcome|通話結果|結果",
    "email_from": "email_from|From|Email from|Sender|送信者|差出人",
    "email_to": "email_to|To|Email to|Recipients|宛先|受信者",
    "attendees": "attendees|Attendees|Meeting attendees|Invitees|参加者|出席者",
    "location": "location|Location|Meeting location|場所|会場",
    "owner": (
        "owner|Activity assigned to|Assigned|Assigned To|Activity owner|Owner|HubSpot Owner|"
        "担当者|所有者|任命先"
    ),
    "contacts": (
        "contacts|Associated contact email|Associated Contact|Associated Contacts|"
        "Contact email|Contact|Name|取引先責任者|コンタクト|連絡先"
    ),
    "companies": (
        "companies|Associated company|Associated Companies|Company|Account Name|Account|"
        "取引先名|取引先|会社名"
    ),
    "deals": "deals|Associated deal|Associated Deals|Deal|Opportunity|商談|商談名",
    "related_to": "related_to|Related To|関連先",
}

_LABELS: dict[str, str] = {
    "external_id": "External ID",
    "first_name": "First name",
    "last_name": "Last name",
    "first_name_reading": "First name (reading)",
    "last_name_reading": "Last name (reading)",
    "full_name": "Full name (split into last and first)",
    "full_name_reading": "Full name reading (split)",
    "email": "Email (primary)",
    "other_emails": "Other emails (replace the rest)",
    "phone": "Phone (work)",
    "mobile_phone": "Mobile phone",
    "home_phone": "Home phone",
    "fax": "Fax",
    "other_phones": "Other phones (replace the rest)",
    "company_name": "Company name",
    "job_title": "Job title",
    "street": "Street",
    "city": "City",
    "region": "State / prefecture",
    "postal_code": "Postal code",
    "country": "Country",
    "lifecycle_stage": "Lifecycle stage",
    "lead_status": "Lead status",
    "source": "Source",
    "owner": "Owner (email or name)",
    "tags": "Tags (separated by ;)",
    "do_not_email": "Do not email",
    "do_not_call": "Do not call",
    "do_not_sms": "Do not SMS",
    "name": "Name",
    "domain": "Domain",
    "website": "Website",
    "industry": "Industry",
    "employees": "Employees",
    "annual_revenue": "Annual revenue",
    "revenue_currency": "Revenue currency",
    "description": "Description",
    "parent": "Parent company (name)",
    "id": "ID (to match existing records)",
    "amount": "Amount",
    "currency": "Currency",
    "pipeline": "Pipeline (name)",
    "stage": "Stage (name)",
    "company": "Company (name or domain)",
    "contacts": "Contacts (emails or names)",
    "expected_close_date": "Expected close date",
    "closed_at": "Closed at",
    "created_at": "Created at",
    "probability": "Probability (%)",
    "forecast_category": "Forecast category",
    "next_step": "Next step",
    "next_step_due": "Next step due",
    "lost_reason": "Lost reason (name)",
    "close_note": "Close note",
    "deal_type": "Deal type (added as a tag)",
    "kind": "Type (note, call, email, meeting)",
    "subject": "Subject",
    "body": "Body",
    "occurred_at": "Date and time",
    "ends_at": "End (meetings)",
    "all_day": "All day (meetings)",
    "direction": "Direction (inbound or outbound)",
    "duration_seconds": "Duration (seconds or h:mm:ss)",
    "duration_ms": "Duration (milliseconds)",
    "outcome": "Call outcome",
    "email_from": "From (emails)",
    "email_to": "To (emails)",
    "attendees": "Attendees (emails)",
    "location": "Where (meetings)",
    "companies": "Companies (names or domains)",
    "deals": "Deals (names or external IDs)",
    "related_to": "Related to (a deal or company name)",
}

#: For each entity, each field's header names, separated by "|".
_HEADERS: dict[str, dict[str, str]] = {
    "contacts": _CONTACT_HEADERS,
    "companies": _COMPANY_HEADERS,
    "deals": _DEAL_HEADERS,
    "activities": _ACTIVITY_HEADERS,
}


@lru_cache(maxsize=4)
def _synonyms(entity: str) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for target, names in _HEADERS[entity].items():
        for name in names.split("|"):
            lookup.setdefault(header_key(name), target)
    return lookup


def _check_entity(entity: str) -> None:
    if entity not in _HEADERS:
        raise BadRequest(
            f"Cannot import '{entity}'; use {', '.join(ENTITIES)}.",
            [FieldError(("entity",), "unknown entity")],
        )


def import_fields(entity: str, custom_fields: Iterable[CustomFieldRead]) -> list[ImportField]:
    """Every field a column of this entity's files can be mapped to."""
    _check_entity(entity)
    fields = [ImportField(key=k, label=_LABELS.get(k, k)) for k in _HEADERS[entity]]
    fields += [ImportField(key=f"cf.{f.key}", label=f.label) for f in custom_fields]
    return fields


def suggest_mapping(
    headers: Sequence[str], entity: str, custom_fields: Iterable[CustomFieldRead]
) -> dict[str, str | None]:
    """For each header, the field it most likely holds (or None); no field is used twice."""
    _check_entity(entity)
    synonyms = _synonyms(entity)
    custom = list(custom_fields)
    by_key = {f.key: f"cf.{f.key}" for f in custom}
    by_label = {header_key(f.label): f"cf.{f.key}" for f in custom}
    by_label.update({header_key(f.key): f"cf.{f.key}" for f in custom})
    mapping: dict[str, str | None] = {}
    used: set[str] = set()
    for header in headers:
        name = header.strip()
        key = header_key(name)
        target: str | None
        if name.lower().startswith("cf.") and name[3:] in by_key:
            target = by_key[name[3:]]
        else:
            target = synonyms.get(key) or by_label.get(key)
        if target in used:
            target = None
        if target is not None:
            used.add(target)
        mapping[header] = target
    return mapping


def resolve_mapping(
    headers: Sequence[str],
    entity: str,
    custom_fields: Iterable[CustomFieldRead],
    mapping: dict[str, str | None] | None,
) -> dict[str, str | None]:
    """The suggested mapping with the caller's choices laid over it, checked.

    A caller maps a header to a field name, or to ``None``/``""`` to skip the column.
    Unknown headers, unknown fields and a field mapped twice are a ``BadRequest``.
    """
    custom = list(custom_fields)
    resolved = suggest_mapping(headers, entity, custom)
    if not mapping:
        return resolved
    valid = {f.key for f in import_fields(entity, custom)}
    errors: list[FieldError] = []
    explicit: dict[str, str | None] = {}
    for column, target in mapping.items():
        if column not in resolved:
            errors.append(FieldError(("mapping", column), "the file has no such column"))
            continue
        target = (target or "").strip() or None
        if target is not None and target not in valid:
            errors.append(FieldError(("mapping", column), f"unknown field '{target}'"))
            continue
        explicit[column] = target
    taken = {t for t in explicit.values() if t}
    for column in resolved:
        if column in explicit:
            resolved[column] = explicit[column]
        elif resolved[column] in taken:
            resolved[column] = None
    counts: dict[str, list[str]] = {}
    for column, target in resolved.items():
        if target:
            counts.setdefault(target, []).append(column)
    for target, columns in counts.items():
        if len(columns) > 1:
            errors.append(
                FieldError(
                    ("mapping", columns[1]), f"'{target}' is already mapped from {columns[0]}"
                )
            )
    if errors:
        first = errors[0]
        raise BadRequest(f"The column mapping is not valid: {first.loc[-1]}: {first.msg}.", errors)
    return resolved


def parse_mapping(raw: str | None) -> dict[str, str | None] | None:
    """A mapping given as JSON text (``{"column": "field" | null}``); ``BadRequest`` if not."""
    if raw is None or not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "The mapping is not valid JSON; send an object like "
            '{"E-mail": "email", "Notes": null}.',
            [FieldError(("mapping",), "invalid JSON")],
        ) from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()
    ):
        raise BadRequest(
            "The mapping must be a JSON object from column names to field names (or null).",
            [FieldError(("mapping",), "must be an object of strings")],
        )
    return value


def check_header(table: Table, mapping: dict[str, str | None]) -> None:
    """Refuse a file whose first row does not name columns we can map."""
    if any(mapping.values()):
        return
    if any("@" in h or h.strip().isdigit() for h in table.headers):
        detail = "The first row looks like data, not a header naming the columns."
    else:
        shown = ", ".join(table.headers[:8])
        detail = (
            f"None of the columns ({shown}) is a field we know; the first row must name "
            "the columns, or send a mapping."
        )
    raise BadRequest(detail, [FieldError(("file",), "no usable header row")])


def preview_import(
    data: bytes,
    entity: str,
    session: Session,
    *,
    encoding: str | None = None,
    mapping: dict[str, str | None] | None = None,
) -> ImportPreview:
    """Decode a file and suggest how its columns map, without writing anything."""
    _check_entity(entity)
    table = read_table(data, encoding)
    custom = list(fields_by_key(session, entity).values())
    resolved = resolve_mapping(table.headers, entity, custom, mapping)
    warnings = []
    if not any(resolved.values()):
        try:
            check_header(table, resolved)
        except BadRequest as exc:
            warnings.append(exc.detail)
    unmapped = [h for h, t in resolved.items() if t is None]
    if unmapped and any(resolved.values()):
        warnings.append("These columns will be skipped: " + ", ".join(unmapped[:20]) + ".")
    return ImportPreview(
        entity=entity,
        encoding=table.encoding,
        delimiter=table.delimiter,
        headers=table.headers,
        mapping=resolved,
        rows=table.first_rows(PREVIEW_ROWS),
        row_count=table.row_count,
        fields=import_fields(entity, custom),
        warnings=warnings,
    )


# ----------------------------------------------------------------------------- values

_FORMULA_START = ("=", "+", "-", "@")
_NUMBER_LIKE = re.compile(r"^[+-]?[\d\s.,()/-]*$")


def cell_text(raw: str) -> str:
    """A cell's value: stripped, and without the quote our exports put before formulas."""
    value = raw.strip()
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


def csv_safe(value: str) -> str:
    """A text cell that spreadsheets will not run as a formula (``'`` before ``=+-@``)."""
    if value and value[0] in _FORMULA_START and not _NUMBER_LIKE.match(value):
        return "'" + value
    return value


_LIST_SPLIT = re.compile(r"\s*[;\n]\s*")
_ADDRESS_SPLIT = re.compile(r"[\s;,]+")


def split_list(value: str) -> list[str]:
    """Items of a multi-value cell, separated by ``;`` (as HubSpot and our exports write)."""
    return [item for item in _LIST_SPLIT.split(value) if item]


def split_addresses(value: str) -> list[str]:
    """Email addresses or phone numbers in one cell, separated by ``;`` or ``,``."""
    if "@" in value:
        return [item for item in _ADDRESS_SPLIT.split(value) if item]
    return [item.strip() for item in re.split(r"[;,\n]", value) if item.strip()]


def split_name(value: str) -> tuple[str | None, str | None]:
    """(first, last) from a full name: Japanese names are written family name first."""
    parts = value.replace("\u3000", " ").split()
    if not parts:
        return None, None
    if len(parts) == 1:
        return (None, parts[0]) if has_cjk(parts[0]) else (parts[0], None)
    if has_cjk(value):
        return " ".join(parts[1:]), parts[0]
    return " ".join(parts[:-1]), parts[-1]


_TRUE = {"true", "yes", "y", "1", "t", "on", "x", "はい", "有", "あり", "済", "○", "◯", "✓"}
_FALSE = {"false", "no", "n", "0", "f", "off", "いいえ", "無", "なし", "×", "-"}


def parse_bool(value: str) -> bool:
    folded = fold(value)
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ValueError(f"'{value}' is not yes or no")


def _value_key(value: str) -> str:
    return re.sub(r"[\W_]+", "", fold(value))


_LIFECYCLE: dict[str, str] = {}
for _stage, _names in {
    "subscriber": ("subscriber", "購読者", "サブスクライバー", "登録者"),
    "lead": ("lead", "リード", "見込み客"),
    "mql": ("mql", "marketingqualifiedlead", "marketing qualified lead", "マーケティングリード"),
    "sql": ("sql", "salesqualifiedlead", "sales qualified lead", "セールスリード"),
    "opportunity": ("opportunity", "商談", "商談中", "オポチュニティ"),
    "customer": ("customer", "顧客", "カスタマー", "既存顧客"),
    "evangelist": ("evangelist", "エバンジェリスト", "推奨者"),
    "other": ("other", "その他"),
}.items():
    for _name in _names:
        _LIFECYCLE[_value_key(_name)] = _stage

_LEAD_STATUS: dict[str, str] = {}
for _status, _names in {
    "new": ("new", "Open - Not Contacted", "新規", "未対応"),
    "open": ("open", "オープン"),
    "in_progress": ("in_progress", "In Progress", "Working - Contacted", "対応中"),
    "open_deal": ("open_deal", "Open Deal", "Closed - Converted", "商談化"),
    "unqualified": ("unqualified", "Closed - Not Converted", "見込みなし", "対象外"),
    "attempted_to_contact": ("attempted_to_contact", "Attempted to Contact", "連絡試行中"),
    "connected": ("connected", "接続済み", "連絡済み"),
    "bad_timing": ("bad_timing", "Bad Timing", "時期尚早"),
}.items():
    for _name in _names:
        _LEAD_STATUS[_value_key(_name)] = _status


def lifecycle_stage(value: str) -> str:
    """Our lifecycle stage for ours, HubSpot's ids and labels, and Japanese names."""
    found = _LIFECYCLE.get(_value_key(value))
    if found is None:
        raise ValueError(
            f"'{value}' is not a lifecycle stage; use subscriber, lead, mql, sql, "
            "opportunity, customer, evangelist or other"
        )
    return found


def lead_status(value: str) -> str:
    """Our lead status for ours, HubSpot's and Salesforce's values, and Japanese names."""
    found = _LEAD_STATUS.get(_value_key(value))
    if found is None:
        raise ValueError(
            f"'{value}' is not a lead status; use one of {sorted(set(_LEAD_STATUS.values()))}"
        )
    return found


_COUNTRY_ALIASES = {
    "usa": "US",
    "unitedstatesofamerica": "US",
    "america": "US",
    "米国": "US",
    "あめりか": "US",
    "uk": "GB",
    "greatbritain": "GB",
    "england": "GB",
    "英国": "GB",
    "korea": "KR",
    "republicofkorea": "KR",
    "大韓民国": "KR",
    "中華人民共和国": "CN",
    "prc": "CN",
    "日本国": "JP",
    "jpn": "JP",
    "gbr": "GB",
    "deu": "DE",
    "fra": "FR",
    "chn": "CN",
    "kor": "KR",
    "twn": "TW",
    "can": "CA",
    "aus": "AU",
    "ind": "IN",
    "sgp": "SG",
    "hkg": "HK",
    "tha": "TH",
    "vnm": "VN",
    "idn": "ID",
    "phl": "PH",
    "mys": "MY",
    "nld": "NL",
    "ita": "IT",
    "esp": "ES",
    "che": "CH",
    "swe": "SE",
    "bra": "BR",
    "mex": "MX",
}


@lru_cache(maxsize=1)
def _countries() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for locale in ("en", "ja"):
        for code, name in Locale(locale).territories.items():
            if len(code) == 2 and code.isalpha():
                lookup.setdefault(_value_key(name), code)
                lookup.setdefault(code.lower(), code)
    lookup.update(_COUNTRY_ALIASES)
    return lookup


def country_code(value: str) -> str:
    """The ISO 3166 alpha-2 code for a code or an English or Japanese country name."""
    found = _countries().get(_value_key(value))
    if found is None:
        raise ValueError(f"'{value}' is not a country we know; use its two-letter ISO code")
    return found


def whole_number(value: str) -> int:
    text = value.replace(",", "").replace(" ", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"'{value}' is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"'{value}' is not a whole number")
    return int(number)


def money_amount(value: str) -> str:
    """An amount as a decimal string, without currency signs or thousands separators."""
    text = re.sub(r"[\s,$¥￥€£円]", "", value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"'{value}' is not an amount") from None
    if not number.is_finite():
        raise ValueError(f"'{value}' is not an amount")
    return str(number)


#: Currency signs, and the currency each stands for when no currency column says otherwise.
CURRENCY_SIGNS: dict[str, str] = {
    "US$": "USD",
    "$": "USD",
    "¥": "JPY",
    "￥": "JPY",
    "円": "JPY",
    # Shift_JIS writes the yen sign as the byte of the backslash, and CP932 reads it so.
    "\\": "JPY",
    "€": "EUR",
    "£": "GBP",
}
_MONEY_CODE = re.compile(r"^(?:([A-Za-z]{3})\s*)?(.*?)(?:\s*([A-Za-z]{3}))?$")


def money_with_currency(value: str) -> tuple[str, str | None]:
    """An amount as a decimal string, and the currency its sign or ISO code names (if any).

    ``￥12,800`` is ``("12800", "JPY")``, ``$1,200.50`` is ``("1200.50", "USD")``,
    ``EUR 99`` is ``("99", "EUR")`` and ``12800`` is ``("12800", None)``.
    """
    text = value.strip()
    codes: set[str] = set()
    found = _MONEY_CODE.match(text)
    if found and (found.group(1) or found.group(3)) and re.search(r"\d", found.group(2)):
        codes = {c.upper() for c in (found.group(1), found.group(3)) if c}
        text = found.group(2)
    for sign, code in CURRENCY_SIGNS.items():
        if sign in text:
            codes.add(code)
            text = text.replace(sign, "")
    if len(codes) > 1:
        raise ValueError(f"'{value}' names several currencies ({', '.join(sorted(codes))})")
    try:
        amount = money_amount(text)
    except ValueError:
        raise ValueError(f"'{value}' is not an amount") from None
    return amount, next(iter(codes), None)


def value_key(value: str) -> str:
    """A value as compared with names people type: folded, without spaces and punctuation."""
    return _value_key(value)


_PERCENT_SIGNS = ("%", "％")


def parse_percent(value: str) -> int:
    """A whole percentage from ``35``, ``35%`` or a fraction such as ``0.35`` (HubSpot's)."""
    text = value.strip()
    has_sign = text.endswith(_PERCENT_SIGNS)
    text = text.rstrip("%％ ").replace(",", ".") if has_sign else text.replace(" ", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"'{value}' is not a percentage") from None
    if not number.is_finite():
        raise ValueError(f"'{value}' is not a percentage")
    if not has_sign and "." in text and 0 <= number <= 1:
        number *= 100
    if not 0 <= number <= 100:
        raise ValueError(f"'{value}' is not between 0 and 100 percent")
    return int(number.to_integral_value())


_DURATION_CLOCK = re.compile(r"^(?:(\d{1,3}):)?(\d{1,2}):(\d{2})$")
_DURATION_PART = re.compile(
    r"(\d+(?:\.\d+)?)\s*(hours?|hrs|hr|h|時間|minutes?|mins|min|m|分|seconds?|secs|sec|s|秒)",
    re.IGNORECASE,
)
_DURATION_UNITS = {"h": 3600, "時": 3600, "m": 60, "分": 60, "s": 1, "秒": 1}


def parse_duration(value: str) -> int:
    """Seconds from ``540``, ``9:00``, ``0:09:00``, ``9m``, ``1h 5m`` or ``9分``."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    clock = _DURATION_CLOCK.match(text)
    if clock:
        hours, minutes, seconds = (int(g) if g else 0 for g in clock.groups())
        if (minutes >= 60 and clock.group(1)) or seconds >= 60:
            raise ValueError(f"'{value}' is not a duration")
        return hours * 3600 + minutes * 60 + seconds
    parts = list(_DURATION_PART.finditer(text))
    if not parts or _DURATION_PART.sub("", text).strip():
        raise ValueError(f"'{value}' is not a duration; write seconds or h:mm:ss")
    total = Decimal(0)
    for part in parts:
        total += Decimal(part.group(1)) * _DURATION_UNITS[part.group(2)[0].lower()]
    return int(total.to_integral_value())


_DATE_TIME = re.compile(
    r"^(?:(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})"
    r"|(?P<jy>\d{4})年\s*(?P<jm>\d{1,2})月\s*(?P<jd>\d{1,2})日"
    r"|(?P<um>\d{1,2})/(?P<ud>\d{1,2})/(?P<uy>\d{4}))"
    r"(?:(?:T|\s+)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<frac>[.,]\d{1,6})?)?"
    r"\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2})?$"
)


def _read_date_time(value: str) -> tuple[date, time | None, tzinfo | None]:
    found = _DATE_TIME.match(value.strip())
    if found is None:
        raise ValueError(f"'{value}' is not a date; write it as 2024-03-15")
    g = found.groupdict()
    year, month, day = (
        (g["y"], g["m"], g["d"])
        if g["y"]
        else (g["jy"], g["jm"], g["jd"])
        if g["jy"]
        else (g["uy"], g["um"], g["ud"])
    )
    try:
        day_read = date(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(f"'{value}' is not a date; write it as 2024-03-15") from None
    moment: time | None = None
    if g["H"] is not None:
        hour = int(g["H"])
        if g["ampm"]:
            if not 1 <= hour <= 12:
                raise ValueError(f"'{value}' is not a time of day")
            hour = hour % 12 + (12 if g["ampm"][0] in "Pp" else 0)
        micro = int((g["frac"] or ".0")[1:].ljust(6, "0"))
        try:
            moment = time(hour, int(g["M"]), int(g["S"] or 0), micro)
        except ValueError:
            raise ValueError(f"'{value}' is not a time of day") from None
    zone: tzinfo | None = None
    if g["tz"]:
        if g["tz"] in ("Z", "UTC", "GMT"):
            zone = UTC
        else:
            sign = -1 if g["tz"][0] == "-" else 1
            digits = g["tz"][1:].replace(":", "")
            zone = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return day_read, moment, zone


def time_zone_named(name: str | None) -> tzinfo:
    """The IANA time zone (``Asia/Tokyo``) in which times without an offset are read; UTC when
    none is named. An unknown name is a ``BadRequest`` naming ``time_zone``."""
    if name is None or not name.strip() or name.strip().upper() == "UTC":
        return UTC
    try:
        if not re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", name.strip()):
            raise ValueError(name)
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"Unknown time zone '{name[:64]}'; use an IANA name such as Asia/Tokyo.",
            [FieldError(("time_zone",), "unknown time zone")],
        ) from None


def parse_date(value: str) -> date:
    """A date from ``2024-03-15``, ``2024/3/15``, ``2024年3月15日`` or ``3/15/2024`` (month
    first, as US exports write it); a time after the date is ignored."""
    return _read_date_time(value)[0]


def parse_datetime(value: str, zone: tzinfo = UTC) -> datetime:
    """A moment (UTC) from a date with an optional time (``2024-03-15 14:30``,
    ``3/15/2024 2:30 PM``, ``2024-03-15T05:30:00Z``); without an offset it is read in
    ``zone``, and a date alone is that day's midnight there."""
    day, moment, given = _read_date_time(value)
    local = datetime.combine(day, moment or time(), given or zone)
    return local.astimezone(UTC)


_SLASH_DATE = re.compile(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})$")


def custom_cell(field: CustomFieldRead, value: str) -> Any:
    """A custom field's cell as its validator expects it (``2024/1/5`` dates become ISO)."""
    if field.field_type == FieldType.date:
        found = _SLASH_DATE.match(value)
        if found:
            try:
                return date(*(int(g) for g in found.groups())).isoformat()
            except ValueError:
                return value
    return value


# ----------------------------------------------------------------------------- writing rows


def row_savepoints(session: Session) -> tuple[Connection, Session]:
    """The caller's transaction, and a session on it that turns each commit into a savepoint
    (so that a service function's commit ends one row's write, and a bad row rolls back alone).

    Python's sqlite3 module starts its transaction only at the first write, so a savepoint
    taken first would be the outermost transaction and its release would commit; on SQLite
    the transaction is therefore begun explicitly.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        driver = connection.connection.driver_connection
        if driver is not None and not getattr(driver, "in_transaction", True):
            connection.exec_driver_sql("BEGIN")
    rows = Session(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        info=dict(session.info),
    )
    return connection, rows


# ----------------------------------------------------------------------------- reports


class ReportBuilder:
    """Collects an import's counts, row errors and dry-run preview as the batches go by."""

    def __init__(
        self,
        entity: str,
        table: Table,
        mapping: dict[str, str | None],
        *,
        dry_run: bool,
        max_errors: int | None = MAX_REPORTED_ERRORS,
    ) -> None:
        self.report = ImportReport(
            entity=entity,
            dry_run=dry_run,
            encoding=table.encoding,
            delimiter=table.delimiter,
            mapping=mapping,
            total_rows=table.row_count,
        )
        self.max_errors = max_errors

    def fail(self, row: int, problems: Sequence[tuple[str, str | None, str]]) -> None:
        """Count a row as failed, with its (column, value, reason) problems."""
        report = self.report
        report.failed += 1
        for column, value, reason in problems:
            if self.max_errors is not None and len(report.errors) >= self.max_errors:
                report.errors_omitted += 1
                continue
            report.errors.append(
                ImportRowError(
                    row=row,
                    column=column,
                    value=None if value is None else value[:200],
                    reason=reason,
                )
            )

    def succeed(
        self, row: int, status: str, record_id: int | None, changes: dict[str, Any] | None
    ) -> None:
        report = self.report
        if status == "created":
            report.created += 1
        elif status == "updated":
            report.updated += 1
        else:
            report.unchanged += 1
        if report.dry_run and len(report.preview) < DRY_RUN_PREVIEW_ROWS:
            action: Literal["create", "update", "unchanged"] = (
                "create"
                if status == "created"
                else "update"
                if status == "updated"
                else "unchanged"
            )
            report.preview.append(
                ImportChange(
                    row=row,
                    action=action,
                    id=record_id,
                    changes={k: list(v) for k, v in (changes or {}).items()},
                )
            )

    def preview_error(self, row: int) -> None:
        report = self.report
        if report.dry_run and len(report.preview) < DRY_RUN_PREVIEW_ROWS:
            report.preview.append(ImportChange(row=row, action="error"))

    def fail_cells(
        self,
        row: int,
        headers: Sequence[str],
        cells: Sequence[str],
        problems: Sequence[tuple[int | None, str]],
    ) -> None:
        """Count a row as failed, with its problems as (column index or None, reason)."""
        self.fail(
            row,
            [
                (
                    headers[i] if i is not None else "",
                    cells[i] if i is not None and i < len(cells) else None,
                    reason,
                )
                for i, reason in problems
            ],
        )
        self.preview_error(row)


def the_one(ids: Sequence[int], value: str, what: str, by: str) -> int | str:
    """The one record a cell names, or why there is none (``what``: a contact; ``by``: the
    email or name it was looked up by)."""
    if len(ids) == 1:
        return ids[0]
    if ids:
        return f"several {what}s have the {by} '{value}'"
    return f"no {what} has the {by} '{value}'"


def error_fields(exc: ValidationError | IchigenError) -> list[FieldError]:
    """A write's errors as field errors: a schema's, or those a service raised (or its
    detail, when it names no field)."""
    if isinstance(exc, ValidationError):
        return [FieldError(tuple(e["loc"]), e["msg"]) for e in exc.errors()]
    return exc.errors or [FieldError((), exc.detail)]


RowBatch = list[tuple[int, list[str]]]


def write_in_batches(
    session: Session,
    table: Table,
    write_batch: Callable[[Session, Connection, RowBatch], None],
    *,
    dry_run: bool,
    progress: Callable[[int, int], None] | None,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Give each batch of the table's rows to ``write_batch`` with a session whose commits are
    savepoints (see ``row_savepoints``); commit after each batch, or, for a dry run, roll
    everything back at the end. ``progress(rows_done, total_rows)`` follows each batch."""
    done = 0
    try:
        for batch in table.batches(batch_size):
            connection, rows_session = row_savepoints(session)
            try:
                write_batch(rows_session, connection, batch)
            finally:
                rows_session.close()
            if not dry_run:
                session.commit()
            done += len(batch)
            if progress is not None:
                progress(done, table.row_count)
    finally:
        if dry_run:
            session.rollback()


def write_error_report(report: ImportReport, out: TextIO) -> None:
    """The report's row errors as CSV (row, column, value, reason), for a spreadsheet."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["row", "column", "value", "reason"])
    for error in report.errors:
        writer.writerow([error.row, error.column, csv_safe(error.value or ""), error.reason])


def csv_row(values: Iterable[Any]) -> list[str]:
    """Cells for an export row: booleans as true/false, lists joined by ``;``, formulas quoted."""
    cells = []
    for value in values:
        if value is None:
            cells.append("")
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        elif isinstance(value, list | tuple):
            cells.append(csv_safe("; ".join(str(v) for v in value)))
        elif isinstance(value, Decimal):
            cells.append(format(value, "f"))
        elif isinstance(value, str):
            cells.append(csv_safe(value))
        else:
            cells.append(str(value))
    return cells


__all__ = [
    "BATCH_SIZE",
    "CURRENCY_SIGNS",
    "ImportChange",
    "ImportField",
    "ImportPreview",
    "ImportReport",
    "ImportRowError",
    "ReportBuilder",
    "Table",
    "cell_text",
    "check_header",
    "country_code",
    "csv_row",
    "csv_safe",
    "decode_text",
    "error_fields",
    "import_fields",
    "lead_status",
    "lifecycle_stage",
    "money_with_currency",
    "parse_bool",
    "parse_date",
    "parse_datetime",
    "parse_duration",
    "parse_mapping",
    "parse_percent",
    "preview_import",
    "read_table",
    "resolve_mapping",
    "row_savepoints",
    "sniff_delimiter",
    "split_list",
    "split_name",
    "suggest_mapping",
    "the_one",
    "time_zone_named",
    "value_key",
    "write_error_report",
    "write_in_batches",
]
