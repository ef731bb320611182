"""Demo data: a believable Japanese-and-American B2B company's CRM, reproducible from a seed.

Everything is written through the product's own services (users and teams through
``auth.service``, companies through ``companies.service``, contacts through
``contacts.service.write_contacts`` in batches, custom fields through
``core.custom_fields``, deals, activities, tasks and quotas through the sales services, see
``demo.sales``), so the demo exercises the same rules, audit log and indexes as real use.
Timestamps are spread over the past two years through the clock seam, up to the clock's
"now" when the load starts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import Role
from ichigen.auth.schemas import TeamCreate, UserCreate, UserRead
from ichigen.core import migrate
from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock, set_clock, utcnow
from ichigen.core.custom_fields import (
    CustomFieldCreate,
    CustomFieldRead,
    CustomFieldUpdate,
    FieldOption,
    FieldType,
    create_field,
    update_field,
)
from ichigen.core.db import Database, refresh_statistics
from ichigen.core.errors import Conflict, FieldError, ValidationFailed
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyCreate, CompanyUpdate
from ichigen.crm.contacts import service as contacts
from ichigen.demo import sales
from ichigen.demo.names import (
    CONTACT_TAGS,
    EN_COMPANY_STEMS,
    EN_COMPANY_WORDS,
    EN_FAMILY_NAMES,
    EN_GIVEN_NAMES,
    EN_LEGAL_FORMS,
    EN_TITLES,
    FREE_MAIL_EN,
    FREE_MAIL_JP,
    JP_BUILDINGS,
    JP_COMPANY_STEMS,
    JP_COMPANY_WORDS,
    JP_FAMILY_NAMES,
    JP_GIVEN_NAMES,
    JP_PLACE_WEIGHTS,
    JP_PLACES,
    JP_TITLES,
    SOURCES,
    US_PLACES,
    JapaneseName,
    Place,
)

DEMO_DOMAIN = "demo.ichigen.dev"
DEMO_ADMIN_EMAIL = f"admin@{DEMO_DOMAIN}"
#: The one password of every demo user who can sign in. Demo data only: never production.
DEMO_PASSWORD = "ichigen-demo-2026"  # noqa: S105 (a published demo password)
DEFAULT_SEED = 42

#: Stage, done, total: called as the load advances (the CLI draws a progress bar from it).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoSize:
    """How much data a size loads, and how it is batched."""

    companies: int
    contacts: int
    #: Share of contacts edited after the load, so their audit history has several entries.
    edited_share: float
    batch: int
    #: Deals with their history, activities, tasks and quotas; 0 loads no sales data.
    deals: int = 0


#: Deals go through the deals service one write at a time (created, then moved stage by stage),
#: so they cost far more than contacts: ``large`` keeps to as many as ``medium``, which adds a
#: minute or two to its load (the sales benchmark adds its own deals in bulk).
SIZES: dict[str, DemoSize] = {
    "small": DemoSize(companies=200, contacts=2_000, edited_share=0.08, batch=500, deals=300),
    "medium": DemoSize(
        companies=10_000, contacts=100_000, edited_share=0.02, batch=2_000, deals=3_000
    ),
    "large": DemoSize(
        companies=100_000, contacts=1_000_000, edited_share=0.005, batch=5_000, deals=3_000
    ),
}


@dataclass(frozen=True)
class DemoSummary:
    """What ``load_demo`` did (or found already done), and how to sign in."""

    already_loaded: bool
    admin_email: str
    password: str
    #: (role, email) of one user per role who can sign in with ``password``.
    sign_ins: list[tuple[str, str]]
    teams: int = 0
    users: int = 0
    custom_fields: int = 0
    companies: int = 0
    contacts: int = 0
    edits: int = 0
    sales: sales.SalesSummary = field(default_factory=sales.SalesSummary)
    seconds: float = 0.0


# ----------------------------------------------------------------------------- people

#: (team key, team name, description)
TEAMS = (
    ("tokyo", "東京営業部 Tokyo Sales", "Enterprise and mid-market accounts in eastern Japan."),
    ("osaka", "大阪営業部 Osaka Sales", "Accounts in Kansai, Chubu and western Japan."),
    ("us", "US Sales", "North American accounts, from San Francisco."),
    ("success", "カスタマーサクセス Customer Success", "Onboarding, support and renewals."),
    ("marketing", "マーケティング Marketing", "Campaigns, events and the newsletter."),
)

#: (email local part, display name, role, team key, can sign in)
USERS = (
    ("yuichi.tanaka", "田中 雄一", Role.manager, "tokyo", True),
    ("shota.sato", "佐藤 翔太", Role.sales, "tokyo", True),
    ("misaki.suzuki", "鈴木 美咲", Role.sales, "tokyo", False),
    ("kenta.takahashi", "高橋 健太", Role.sales, "tokyo", False),
    ("aya.ito", "伊藤 彩", Role.sales, "tokyo", False),
    ("keiko.nishimura", "西村 恵子", Role.manager, "osaka", False),
    ("daisuke.yamamoto", "山本 大輔", Role.sales, "osaka", False),
    ("yumi.nakamura", "中村 由美", Role.sales, "osaka", False),
    ("sarah.mitchell", "Sarah Mitchell", Role.manager, "us", False),
    ("james.carter", "James Carter", Role.sales, "us", False),
    ("emily.parker", "Emily Parker", Role.sales, "us", False),
    ("naomi.kobayashi", "小林 直美", Role.support, "success", True),
    ("ryo.kato", "加藤 亮", Role.support, "success", False),
    ("rachel.kim", "Rachel Kim", Role.support, "success", False),
    ("sakura.yoshida", "吉田 さくら", Role.marketing, "marketing", True),
    ("daniel.brooks", "Daniel Brooks", Role.marketing, "marketing", False),
    ("satoshi.matsumoto", "松本 聡", Role.analyst, None, True),
    ("mai.inoue", "井上 麻衣", Role.viewer, None, True),
)

#: Japanese regions served by the Tokyo team; the rest of Japan is Osaka's.
_TOKYO_REGIONS = frozenset({"東京都", "神奈川県", "埼玉県", "宮城県", "北海道"})


@dataclass
class _Staff:
    """The demo's users, grouped the way the generators pick owners."""

    admin: UserRead
    by_email: dict[str, UserRead]
    sellers: dict[str, list[UserRead]]  # team key -> managers and sales reps
    marketing: list[UserRead]
    managers: dict[str, UserRead]

    def actor(self, user_id: int | None, via: str = "ui") -> Actor:
        for user in self.by_email.values():
            if user.id == user_id:
                return auth_service.actor_for(user, via)
        return auth_service.actor_for(self.managers["tokyo"], via)


# ----------------------------------------------------------------------------- companies


@dataclass
class _Company:
    """What contact generation needs to know about a company it created."""

    id: int
    name: str
    domain: str
    country: str
    place: Place
    street: str | None
    postal_code: str
    phone: str
    team: str
    owner_id: int | None
    is_customer: bool
    tier: str | None
    employees: int
    japanese: bool


_JP_SECOND_WORDS = (
    ("工業", "kogyo"),
    ("産業", "sangyo"),
    ("販売", "hanbai"),
    ("サービス", "service"),
    ("技研", "giken"),
    ("開発", "kaihatsu"),
    ("総研", "soken"),
)
_JP_VARIANTS = (
    ("東京", "tokyo"),
    ("大阪", "osaka"),
    ("名古屋", "nagoya"),
    ("横浜", "yokohama"),
    ("京都", "kyoto"),
    ("神戸", "kobe"),
    ("北海道", "hokkaido"),
    ("東北", "tohoku"),
    ("関東", "kanto"),
    ("中部", "chubu"),
    ("関西", "kansai"),
    ("九州", "kyushu"),
    ("日本", "nihon"),
    ("東日本", "higashi"),
    ("西日本", "nishi"),
    ("新", "shin"),
    ("第一", "daiichi"),
)
_EN_VARIANTS = (
    "Group",
    "Global",
    "West",
    "East",
    "International",
    "Works",
    "Collective",
    "North America",
    "Holdings",
    "Company",
)
_TIERS = ("strategic", "key", "growth", "standard")


def _pick_place(rnd: random.Random, japanese: bool) -> Place:
    if japanese:
        return rnd.choices(JP_PLACES, weights=JP_PLACE_WEIGHTS)[0]
    return rnd.choice(US_PLACES)


def _digits(rnd: random.Random, count: int) -> str:
    return "".join(rnd.choice("0123456789") for _ in range(count))


def _landline(rnd: random.Random, place: Place) -> str:
    if place.country == "US":
        return f"+1 ({place.area_code}) 555-01{_digits(rnd, 2)}"
    if len(place.area_code) == 2:
        return f"{place.area_code}-{rnd.randint(3000, 6999)}-{_digits(rnd, 4)}"
    return f"{place.area_code}-{rnd.randint(200, 899)}-{_digits(rnd, 4)}"


def _postal_code(rnd: random.Random, place: Place) -> str:
    if place.country == "US":
        return f"{place.postal}{_digits(rnd, 2)}"
    return f"{place.postal}-{_digits(rnd, 4)}"


def _street(rnd: random.Random, place: Place) -> str:
    street = rnd.choice(place.streets)
    if place.country == "US":
        return f"{rnd.randint(1, 2999)} {street}, Suite {rnd.randint(100, 2400)}"
    address = f"{street}{rnd.randint(1, 9)}-{rnd.randint(1, 20)}-{rnd.randint(1, 30)}"
    if rnd.random() < 0.6:
        address += f" {street}{rnd.choice(JP_BUILDINGS)}{rnd.randint(2, 30)}F"
    return address


class _CompanyNamer:
    """Unique-looking company names and unique domains, drawn from the word lists."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.names: set[str] = set()
        self.domains: set[str] = set()

    def _domain(self, base: str, tld: str) -> str:
        candidate, n = f"{base}{tld}", 1
        while candidate in self.domains:
            n += 1
            candidate = f"{base}{n}{tld}"
        self.domains.add(candidate)
        return candidate

    def japanese(self, stem: tuple[str, str] | None = None) -> tuple[str, str, str]:
        rnd = self.rnd
        stem = stem or rnd.choice(JP_COMPANY_STEMS)
        word = rnd.choice(JP_COMPANY_WORDS)
        written, romaji = stem[0] + word.written, f"{stem[1]}-{word.romaji}"
        if rnd.random() < 0.35 and word.romaji not in ("hd", "seisakusho"):
            second = rnd.choice(_JP_SECOND_WORDS)
            if not word.written.endswith(second[0]):
                written, romaji = written + second[0], f"{romaji}{second[1]}"
        if written in self.names:
            region = rnd.choice(_JP_VARIANTS)
            written, romaji = region[0] + written, f"{region[1]}-{romaji}"
        self.names.add(written)
        form = rnd.random()
        if form < 0.45:
            name = "株式会社" + written
        elif form < 0.9:
            name = written + "株式会社"
        elif form < 0.95:
            name = "合同会社" + written
        else:
            name = "有限会社" + written
        tld = rnd.choices((".co.jp", ".jp", ".com"), weights=(75, 10, 15))[0]
        return name, self._domain(romaji, tld), word.industry

    def english(self, stem: str | None = None) -> tuple[str, str, str]:
        rnd = self.rnd
        stem = stem or rnd.choice(EN_COMPANY_STEMS)
        word = rnd.choice(EN_COMPANY_WORDS)
        written = f"{stem} {word.written}"
        if written in self.names:
            written = f"{written} {rnd.choice(_EN_VARIANTS)}"
        self.names.add(written)
        name = f"{written} {rnd.choice(EN_LEGAL_FORMS)}"
        base = "".join(ch for ch in f"{stem}{word.romaji}".lower() if ch.isalnum())
        tld = rnd.choices((".com", ".io", ".co"), weights=(80, 12, 8))[0]
        return name, self._domain(base, tld), word.industry


def _employees(rnd: random.Random) -> int:
    return max(1, min(250_000, int(rnd.lognormvariate(3.6, 1.5))))


def _revenue(rnd: random.Random, employees: int, japanese: bool) -> tuple[Decimal, str]:
    if japanese:
        per_head = rnd.uniform(12e6, 45e6)
        return Decimal(round(employees * per_head, -6)).quantize(Decimal(1)), "JPY"
    per_head = rnd.uniform(110e3, 420e3)
    return Decimal(round(employees * per_head, -3)).quantize(Decimal(1)), "USD"


def _team_for(place: Place) -> str:
    if place.country == "US":
        return "us"
    return "tokyo" if place.region in _TOKYO_REGIONS else "osaka"


def _company_record(
    rnd: random.Random,
    namer: _CompanyNamer,
    staff: _Staff,
    parents: list[tuple[int, str, tuple[str, str] | str, bool]],
) -> tuple[dict[str, Any], bool, str, Place]:
    """The create payload of one company (with its parent when it is a subsidiary)."""
    parent_id: int | None = None
    parent_place: str | None = None
    japanese = rnd.random() < 0.8
    stem: Any = None
    if parents and rnd.random() < 0.04:
        parent_id, parent_place, stem, japanese = rnd.choice(parents)
    if japanese:
        name, domain, industry = namer.japanese(stem)
    else:
        name, domain, industry = namer.english(stem)
    place = _pick_place(rnd, japanese)
    if parent_place is not None and rnd.random() < 0.5:
        place = next((p for p in (*JP_PLACES, *US_PLACES) if p.city == parent_place), place)
    employees = _employees(rnd)
    revenue, currency = _revenue(rnd, employees, japanese)
    team = _team_for(place)
    owner = rnd.choice(staff.sellers[team]).id if rnd.random() < 0.93 else None
    is_customer = rnd.random() < 0.25
    tier = None
    if is_customer:
        tier = rnd.choices(_TIERS, weights=(5, 15, 30, 50))[0]
        if employees > 5000:
            tier = rnd.choice(_TIERS[:2])
    tags: list[str] = []
    if tier in ("strategic", "key"):
        tags.append("key-account")
    if rnd.random() < 0.04:
        tags.append("partner")
    if not is_customer and rnd.random() < 0.06:
        tags.append("競合利用中" if japanese else "uses-competitor")
    since = rnd.randint(2012, 2025)
    description = ""
    if is_customer:
        description = f"{since}年から取引。" if japanese else f"Customer since {since}."
    record: dict[str, Any] = {
        "name": name,
        "domain": domain,
        "website": f"https://www.{domain}/",
        "industry": industry,
        "employees": employees,
        "annual_revenue": str(revenue),
        "revenue_currency": currency,
        "phone": _landline(rnd, place),
        "street": _street(rnd, place) if rnd.random() < 0.85 else None,
        "city": place.city,
        "region": place.region,
        "postal_code": _postal_code(rnd, place),
        "country": place.country,
        "description": description,
        "owner_id": owner,
        "parent_id": parent_id,
        "tags": tags,
        "custom": {"fiscal_year_end_month": 3 if japanese and rnd.random() < 0.8 else 12},
    }
    if tier:
        record["custom"]["account_tier"] = tier
    return record, is_customer, team, place


# ----------------------------------------------------------------------------- contacts

_STAGES_PROSPECT: tuple[tuple[str, int], ...] = (
    ("subscriber", 14),
    ("lead", 40),
    ("mql", 18),
    ("sql", 10),
    ("opportunity", 9),
    ("other", 5),
    ("customer", 4),
)
_STAGES_CUSTOMER: tuple[tuple[str, int], ...] = (
    ("customer", 58),
    ("evangelist", 8),
    ("opportunity", 10),
    ("sql", 6),
    ("lead", 8),
    ("other", 10),
)
_STAGES_CONSUMER: tuple[tuple[str, int], ...] = (
    ("subscriber", 58),
    ("lead", 25),
    ("customer", 13),
    ("evangelist", 4),
)
_LEAD_STATUS: dict[str, tuple[tuple[str | None, int], ...]] = {
    "lead": (
        ("new", 38),
        ("attempted_to_contact", 24),
        ("connected", 14),
        ("open", 12),
        ("unqualified", 8),
        ("bad_timing", 4),
    ),
    "mql": (("open", 40), ("in_progress", 35), ("connected", 25)),
    "sql": (("in_progress", 50), ("connected", 35), ("open_deal", 15)),
    "opportunity": (("open_deal", 100),),
    "other": (("unqualified", 50), ("bad_timing", 30), (None, 20)),
}
_NPS_WEIGHTS = (1, 1, 1, 2, 2, 4, 6, 12, 22, 24, 25)
_RENEWAL_BASE = date(2026, 4, 1)
_KATAKANA = {code: code + 0x60 for code in range(0x3041, 0x3097)}


def _weighted(rnd: random.Random, table: tuple[tuple[Any, int], ...]) -> Any:
    return rnd.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _mobile(rnd: random.Random) -> str:
    prefix = rnd.choices(("090", "080", "070"), weights=(5, 4, 1))[0]
    a, b = _digits(rnd, 4), _digits(rnd, 4)
    style = rnd.random()
    if style < 0.55:
        return f"{prefix}-{a}-{b}"
    if style < 0.8:
        return f"{prefix}{a}{b}"
    if style < 0.9:
        return f"+81 {prefix[1:]}-{a}-{b}"
    return f"{prefix} {a} {b}"


def _us_phone(rnd: random.Random, place: Place) -> str:
    area = place.area_code if place.country == "US" else rnd.choice(US_PLACES).area_code
    last = _digits(rnd, 2)
    return f"+1 ({area}) 555-01{last}" if rnd.random() < 0.6 else f"+1 {area}-555-01{last}"


def _romaji(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


@dataclass
class _ContactPlan:
    """A contact chosen to be edited after the load, and the edits it will get."""

    emails: list[dict[str, Any]]
    owner_id: int | None
    rounds: list[dict[str, Any]] = field(default_factory=list)


class _ContactMaker:
    """Builds contact records (``ContactCreate`` shape) one at a time, reproducibly."""

    def __init__(self, rnd: random.Random, staff: _Staff | None, edited_share: float) -> None:
        self.rnd = rnd
        self.staff = staff
        self.edited_share = edited_share
        self.serial = 0
        self.plans: list[_ContactPlan] = []

    def _japanese_name(self, record: dict[str, Any]) -> tuple[str, str]:
        rnd = self.rnd
        family: JapaneseName = rnd.choice(JP_FAMILY_NAMES)
        given: JapaneseName = rnd.choice(JP_GIVEN_NAMES)
        katakana = rnd.random() < 0.2
        record["last_name"] = family.written
        record["first_name"] = given.written
        if rnd.random() < 0.93:
            record["last_name_reading"] = (
                family.reading.translate(_KATAKANA) if katakana else family.reading
            )
            record["first_name_reading"] = (
                given.reading.translate(_KATAKANA) if katakana else given.reading
            )
        return given.romaji, family.romaji

    def _english_name(self, record: dict[str, Any]) -> tuple[str, str]:
        first, last = self.rnd.choice(EN_GIVEN_NAMES), self.rnd.choice(EN_FAMILY_NAMES)
        record["first_name"], record["last_name"] = first, last
        return _romaji(first), _romaji(last)

    def _free_mail(self, given: str, family: str, japanese: bool) -> str:
        rnd = self.rnd
        domain = rnd.choice(FREE_MAIL_JP if japanese else FREE_MAIL_EN)
        local = rnd.choice((f"{given}.{family}", f"{family}_{given}", f"{given[0]}{family}"))
        return f"{local}{self.serial}@{domain}"

    def _company_local(self, given: str, family: str, used: set[str]) -> str:
        rnd = self.rnd
        style = rnd.random()
        if style < 0.5:
            local = f"{given}.{family}"
        elif style < 0.7:
            local = f"{family}.{given}"
        elif style < 0.85:
            local = f"{given[0]}-{family}"
        else:
            local = f"{family}{given[0]}"
        candidate, n = local, 1
        while candidate in used:
            n += 1
            candidate = f"{local}{n}"
        used.add(candidate)
        return candidate

    def _owner(self, company: _Company | None) -> int | None:
        rnd = self.rnd
        if self.staff is None:
            return None
        if company is None:
            return rnd.choice(self.staff.marketing).id if rnd.random() < 0.35 else None
        roll = rnd.random()
        if roll < 0.75 and company.owner_id is not None:
            return company.owner_id
        if roll < 0.92:
            return rnd.choice(self.staff.sellers[company.team]).id
        return None

    def make(self, company: _Company | None, used: set[str]) -> dict[str, Any]:
        """One contact: at ``company`` (email on its domain), or a consumer with free mail."""
        rnd = self.rnd
        self.serial += 1
        record: dict[str, Any] = {}
        if company is not None:
            japanese = rnd.random() < (0.95 if company.japanese else 0.12)
        else:
            japanese = rnd.random() < 0.8
        given, family = (self._japanese_name if japanese else self._english_name)(record)
        emails: list[dict[str, Any]] = []
        if company is not None and rnd.random() < 0.97:
            local = self._company_local(given, family, used)
            emails.append({"email": f"{local}@{company.domain}", "label": "work", "primary": True})
            if rnd.random() < 0.07:
                emails.append(
                    {"email": self._free_mail(given, family, japanese), "label": "personal"}
                )
        else:
            emails.append(
                {
                    "email": self._free_mail(given, family, japanese),
                    "label": "personal",
                    "primary": True,
                }
            )
        record["emails"] = emails
        place = company.place if company else _pick_place(rnd, japanese)
        phones: list[dict[str, Any]] = []
        if rnd.random() < 0.8:
            number = _mobile(rnd) if place.country == "JP" else _us_phone(rnd, place)
            phones.append({"number": number, "label": "mobile", "primary": True})
        if company is not None and rnd.random() < 0.3:
            phones.append({"number": company.phone, "label": "work"})
        if phones:
            record["phones"] = phones
        if company is not None:
            if company.id:
                record["company_id"] = company.id
            else:
                record["company_name"] = company.name
            if rnd.random() < 0.92:
                record["job_title"] = rnd.choice(JP_TITLES if company.japanese else EN_TITLES)
            if company.street and rnd.random() < 0.3:
                record["street"] = company.street
            record["postal_code"] = company.postal_code
            stages = _STAGES_CUSTOMER if company.is_customer else _STAGES_PROSPECT
        else:
            if rnd.random() < 0.5:
                record["postal_code"] = _postal_code(rnd, place)
            stages = _STAGES_CONSUMER
        record["city"], record["region"], record["country"] = (
            place.city,
            place.region,
            place.country,
        )
        stage = _weighted(rnd, stages)
        record["lifecycle_stage"] = stage
        if stage in _LEAD_STATUS:
            status = _weighted(rnd, _LEAD_STATUS[stage])
            if status:
                record["lead_status"] = status
        if stage not in ("customer", "evangelist") or rnd.random() < 0.3:
            record["source"] = rnd.choice(SOURCES)
        owner_id = self._owner(company)
        if owner_id is not None:
            record["owner_id"] = owner_id
        tags = [rnd.choice(CONTACT_TAGS) for _ in range(rnd.choices((0, 1, 2), (55, 35, 10))[0])]
        if tags:
            record["tags"] = tags
        record["do_not_email"] = rnd.random() < 0.03
        record["do_not_call"] = rnd.random() < 0.05
        if rnd.random() < 0.02:
            record["do_not_sms"] = True
        if rnd.random() < 0.4:
            record["external_id"] = f"003Dm{self.serial:010d}"
        custom: dict[str, Any] = {}
        if stage in ("customer", "evangelist"):
            if rnd.random() < 0.7:
                custom["nps_score"] = rnd.choices(range(11), weights=_NPS_WEIGHTS)[0]
            if company is not None and company.tier:
                custom["customer_tier"] = "platinum" if company.tier == "strategic" else "gold"
                if company.tier in ("growth", "standard"):
                    custom["customer_tier"] = "silver" if company.tier == "growth" else "bronze"
                renewal = _RENEWAL_BASE + timedelta(days=rnd.randint(0, 364))
                custom["contract_renewal"] = renewal.isoformat()
        opt_in = rnd.random()
        if opt_in < (0.7 if company is None else 0.4):
            custom["newsletter_opt_in"] = True
        elif opt_in < 0.6:
            custom["newsletter_opt_in"] = False
        if custom:
            record["custom"] = custom
        if rnd.random() < self.edited_share:
            self.plans.append(self._plan(record, owner_id, japanese))
        return record

    def _plan(self, record: dict[str, Any], owner_id: int | None, japanese: bool) -> _ContactPlan:
        """Later edits of this contact, the way a rep would move it along."""
        rnd = self.rnd
        plan = _ContactPlan(emails=record["emails"], owner_id=owner_id)
        stage = record["lifecycle_stage"]
        path = ("lead", "mql", "sql", "opportunity", "customer")
        if stage in path[:-1]:
            for next_stage in path[path.index(stage) + 1 :]:
                edit: dict[str, Any] = {"lifecycle_stage": next_stage}
                status = _LEAD_STATUS.get(next_stage)
                edit["lead_status"] = _weighted(rnd, status) if status else None
                if next_stage == "customer":
                    edit["custom"] = {"nps_score": rnd.randint(6, 10)}
                plan.rounds.append(edit)
                if rnd.random() < 0.45:
                    break
        elif stage in ("customer", "evangelist"):
            plan.rounds.append({"custom": {"nps_score": rnd.randint(0, 10)}})
            if rnd.random() < 0.5:
                plan.rounds.append({"tags": [*record.get("tags", []), "renewal-2026"]})
        else:
            plan.rounds.append({"job_title": rnd.choice(JP_TITLES if japanese else EN_TITLES)})
        if rnd.random() < 0.2:
            plan.rounds.append({"do_not_email": True})
        return plan


def _allocate(rnd: random.Random, companies_count: int, contacts_at_companies: int) -> list[int]:
    """Contacts per company: skewed (big accounts have many), at least one, summing exactly."""
    weights = [rnd.paretovariate(1.6) for _ in range(companies_count)]
    spare = max(0, contacts_at_companies - companies_count)
    scale = spare / sum(weights) if weights else 0.0
    shares = [w * scale for w in weights]
    counts = [1 + int(s) for s in shares]
    missing = contacts_at_companies - sum(counts)
    order = sorted(range(companies_count), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for i in order[: max(0, missing)]:
        counts[i] += 1
    return counts


# ----------------------------------------------------------------------------- loading


class _Timeline:
    """Moves the clock seam through the demo's two years, so records look lived-in."""

    def __init__(self) -> None:
        self.end = utcnow().replace(microsecond=0)
        self.start = self.end - timedelta(days=730)
        self.clock = FixedClock(self.start)

    def at(self, fraction: float) -> None:
        """Set the clock ``fraction`` of the way from two years ago to now."""
        self.clock.at = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)


def _note(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def _is_empty(session: Session) -> bool:
    system = Actor.system("demo")
    return (
        not auth_service.list_users(session)
        and not companies.list_companies(session, system, limit=1).items
        and not contacts.list_contacts(session, system, limit=1).items
    )


def _sign_ins() -> list[tuple[str, str]]:
    rows = [("admin", DEMO_ADMIN_EMAIL)]
    rows += [(role.value, f"{local}@{DEMO_DOMAIN}") for local, _, role, _, ok in USERS if ok]
    return rows


def _create_staff(session: Session, admin: UserRead, progress: Progress | None) -> _Staff:
    actor = auth_service.actor_for(admin)
    teams = {
        key: auth_service.create_team(session, TeamCreate(name=name, description=about), actor).id
        for key, name, about in TEAMS
    }
    by_email = {admin.email: admin}
    for n, (local, name, role, team, can_sign_in) in enumerate(USERS, start=1):
        user = auth_service.create_user(
            session,
            UserCreate(
                email=f"{local}@{DEMO_DOMAIN}",
                name=name,
                role=role,
                team_id=teams[team] if team else None,
                locale="en" if name.isascii() else "ja",
                password=DEMO_PASSWORD if can_sign_in else None,
            ),
            actor,
        )
        by_email[user.email] = user
        _note(progress, "users", n, len(USERS))
    sellers: dict[str, list[UserRead]] = {}
    managers: dict[str, UserRead] = {}
    for local, _, role, team, _ in USERS:
        user = by_email[f"{local}@{DEMO_DOMAIN}"]
        if team in ("tokyo", "osaka", "us"):
            sellers.setdefault(team, []).append(user)
            if role == Role.manager:
                managers[team] = user
    marketing = [u for u in by_email.values() if u.role == Role.marketing]
    return _Staff(admin, by_email, sellers, marketing, managers)


def custom_field_definitions() -> list[CustomFieldCreate]:
    """The demo's custom fields (unindexed; ``INDEXED_FIELDS`` get indexes after the load)."""

    def options(*values: tuple[str, str]) -> list[FieldOption]:
        return [FieldOption(value=v, label=label) for v, label in values]

    return [
        CustomFieldCreate(
            entity="contacts",
            key="nps_score",
            label="NPS score",
            help_text="Answer to the last NPS survey, 0 to 10.",
            field_type=FieldType.number,
            position=1,
        ),
        CustomFieldCreate(
            entity="contacts",
            key="customer_tier",
            label="Customer tier",
            help_text="Support and pricing tier of the customer's contract.",
            field_type=FieldType.select,
            options=options(
                ("platinum", "Platinum"),
                ("gold", "Gold"),
                ("silver", "Silver"),
                ("bronze", "Bronze"),
            ),
            position=2,
        ),
        CustomFieldCreate(
            entity="contacts",
            key="contract_renewal",
            label="Contract renewal date",
            field_type=FieldType.date,
            position=3,
        ),
        CustomFieldCreate(
            entity="contacts",
            key="newsletter_opt_in",
            label="Newsletter opt-in",
            help_text="Agreed to receive the monthly newsletter.",
            field_type=FieldType.boolean,
            position=4,
        ),
        CustomFieldCreate(
            entity="companies",
            key="account_tier",
            label="Account tier",
            field_type=FieldType.select,
            options=options(
                ("strategic", "Strategic"),
                ("key", "Key"),
                ("growth", "Growth"),
                ("standard", "Standard"),
            ),
            position=1,
        ),
        CustomFieldCreate(
            entity="companies",
            key="fiscal_year_end_month",
            label="Fiscal year end (month)",
            field_type=FieldType.number,
            position=2,
        ),
    ]


#: Fields indexed once the data is in (building an index at the end is faster than keeping
#: it up to date through a million inserts).
INDEXED_FIELDS = (("contacts", "nps_score"), ("contacts", "customer_tier"))


def _load_companies(
    session: Session,
    rnd: random.Random,
    staff: _Staff,
    count: int,
    timeline: _Timeline,
    progress: Progress | None,
) -> list[_Company]:
    namer = _CompanyNamer(rnd)
    parents: list[tuple[int, str, Any, bool]] = []
    created: list[_Company] = []
    actor = auth_service.actor_for(staff.admin, "import")
    for n in range(count):
        timeline.at(0.05 + 0.5 * n / max(count, 1))
        if n % 100 == 0:
            _note(progress, "companies", n, count)
        record, is_customer, team, place = _company_record(rnd, namer, staff, parents)
        company = companies.create_company(session, CompanyCreate.model_validate(record), actor)
        japanese = record["revenue_currency"] == "JPY"
        created.append(
            _Company(
                id=company.id,
                name=company.name,
                domain=record["domain"],
                country=place.country,
                place=place,
                street=record["street"],
                postal_code=record["postal_code"],
                phone=record["phone"],
                team=team,
                owner_id=record["owner_id"],
                is_customer=is_customer,
                tier=record["custom"].get("account_tier"),
                employees=record["employees"],
                japanese=japanese,
            )
        )
        if record["employees"] > 1000 and record["parent_id"] is None and rnd.random() < 0.3:
            name = str(record["name"])
            stem: Any = next(
                (s for s in JP_COMPANY_STEMS if s[0] in name),
                next((s for s in EN_COMPANY_STEMS if name.startswith(s)), None),
            )
            if stem is not None:
                parents.append((company.id, place.city, stem, japanese))
    _note(progress, "companies", count, count)
    return created


def _check(results: list[Any], what: str) -> None:
    failed = [r for r in results if r.status == "error"]
    if failed:
        raise ValidationFailed(
            f"Demo {what} were rejected ({len(failed)}); first: {failed[0].errors}",
            [FieldError(("demo",), str(failed[0].errors))],
        )


def _contact_batches(
    maker: _ContactMaker, loaded: list[_Company], total: int, batch: int
) -> Iterator[list[dict[str, Any]]]:
    """Contact records in batches: each company's people together, consumers in between."""
    rnd = maker.rnd
    at_companies = min(total, int(total * 0.88)) if loaded else 0
    counts = _allocate(rnd, len(loaded), at_companies) if loaded else []
    consumer_ratio = (total - at_companies) / max(at_companies, 1)
    owed = 0.0
    pending: list[dict[str, Any]] = []
    made = 0
    for company, count in zip(loaded, counts, strict=True):
        used: set[str] = set()
        for _ in range(count):
            pending.append(maker.make(company, used))
        made += count
        owed += count * consumer_ratio
        while owed >= 1 and made < total:
            pending.append(maker.make(None, used))
            owed -= 1
            made += 1
        if len(pending) >= batch:
            yield pending
            pending = []
    while made < total:
        pending.append(maker.make(None, set()))
        made += 1
        if len(pending) >= batch:
            yield pending
            pending = []
    if pending:
        yield pending


def _apply_edits(
    session: Session,
    staff: _Staff,
    plans: list[_ContactPlan],
    timeline: _Timeline,
    progress: Progress | None,
) -> int:
    """Replay the planned edits round by round, each by the contact's owner (or a manager)."""
    edits = 0
    rounds = max((len(p.rounds) for p in plans), default=0)
    total = sum(len(p.rounds) for p in plans)
    for round_no in range(rounds):
        timeline.at(0.92 + 0.06 * round_no / max(rounds, 1))
        by_owner: dict[int | None, list[dict[str, Any]]] = {}
        for plan in plans:
            if round_no < len(plan.rounds):
                record = {"emails": plan.emails, **plan.rounds[round_no]}
                by_owner.setdefault(plan.owner_id, []).append(record)
        for owner_id, records in by_owner.items():
            actor = staff.actor(owner_id)
            for start in range(0, len(records), 2_000):
                chunk = records[start : start + 2_000]
                results = contacts.write_contacts(
                    session, chunk, actor, mode="update", match_on="email"
                )
                _check(results, "contact edits")
                edits += len(chunk)
                _note(progress, "edits", edits, total)
    return edits


def _edit_companies(
    session: Session, rnd: random.Random, staff: _Staff, loaded: list[_Company]
) -> int:
    """A few companies grow or get a new tier, edited by their owners."""
    picked = [c for c in loaded if rnd.random() < 0.03]
    for company in picked:
        actor = staff.actor(company.owner_id)
        grown = int(company.employees * rnd.uniform(1.02, 1.3)) + 1
        change: dict[str, Any] = {"employees": grown}
        if company.is_customer and company.tier == "growth" and rnd.random() < 0.5:
            change["custom"] = {"account_tier": "key"}
            change["tags"] = ["key-account"]
        companies.update_company(session, company.id, CompanyUpdate.model_validate(change), actor)
    return len(picked)


def _sales_companies(loaded: list[_Company], now: datetime) -> dict[int, sales.SalesCompany]:
    """The companies as the sales demo sees them (their people are added as they load)."""
    return {
        c.id: sales.SalesCompany(
            id=c.id,
            name=c.name,
            team=c.team,
            japanese=c.japanese,
            is_customer=c.is_customer,
            employees=c.employees,
            since=now,
        )
        for c in loaded
    }


def _note_people(
    sold_to: dict[int, sales.SalesCompany],
    records: list[dict[str, Any]],
    results: list[Any],
    moment: datetime,
) -> None:
    """Keep a few people of each company (for deals and meetings) and when they arrived."""
    for result in results:
        record = records[result.index]
        company = sold_to.get(record.get("company_id") or 0)
        if company is None or result.id is None:
            continue
        company.since = min(company.since, moment)
        if len(company.contacts) < 4:
            first, last = record.get("first_name") or "", record.get("last_name") or ""
            name = f"{first} {last}" if last.isascii() else f"{last} {first}"
            email = next((e["email"] for e in record["emails"] if e.get("primary")), None)
            company.contacts.append(sales.SalesContact(result.id, name.strip(), email))


def _index_fields(session: Session, staff: _Staff, fields: list[CustomFieldRead]) -> None:
    actor = auth_service.actor_for(staff.admin)
    for definition in fields:
        if (definition.entity, definition.key) in INDEXED_FIELDS:
            update_field(session, definition.id, CustomFieldUpdate(indexed=True), actor)


def demo_status(database: Database) -> str:
    """``loaded`` when the demo admin exists, ``empty`` for a blank store, else ``other``."""
    with database.sessionmaker() as session:
        if auth_service.find_user_by_email(session, DEMO_ADMIN_EMAIL) is not None:
            return "loaded"
        return "empty" if _is_empty(session) else "other"


def load_demo(
    database: Database,
    *,
    size: str | DemoSize = "small",
    seed: int = DEFAULT_SEED,
    progress: Progress | None = None,
) -> DemoSummary:
    """Migrate the record store and load the demo CRM into it.

    Loads only into an empty store; when the demo is already there it changes nothing and
    says so (``already_loaded``). The same ``seed`` and ``size`` load the same records.
    ``size`` names one of ``SIZES`` (or is a ``DemoSize`` of one's own, as tests use).
    """
    if isinstance(size, str) and size not in SIZES:
        raise ValidationFailed(
            f"Unknown demo size {size!r}.", [FieldError(("size",), f"one of {sorted(SIZES)}")]
        )
    spec = SIZES[size] if isinstance(size, str) else size
    started = time.perf_counter()
    migrate.upgrade(database.engine)
    state = demo_status(database)
    if state == "loaded":
        return DemoSummary(True, DEMO_ADMIN_EMAIL, DEMO_PASSWORD, _sign_ins())
    if state == "other":
        raise Conflict(
            "The record store already holds data that is not the demo; load the demo into an "
            "empty one (for example with ICHIGEN_DATA_DIR set to a new folder).",
            [FieldError(("database",), "not empty")],
        )
    rnd = random.Random(seed)
    timeline = _Timeline()
    set_clock(timeline.clock)
    try:
        with database.sessionmaker() as session:
            timeline.at(0.0)
            admin = auth_service.bootstrap_admin(
                session, DEMO_ADMIN_EMAIL, DEMO_PASSWORD, name="Demo Admin"
            )
            staff = _create_staff(session, admin, progress)
            admin_actor = auth_service.actor_for(admin)
            fields = [
                create_field(session, definition, admin_actor)
                for definition in custom_field_definitions()
            ]
            loaded = _load_companies(session, rnd, staff, spec.companies, timeline, progress)
            sold_to = _sales_companies(loaded, timeline.end) if spec.deals else {}
            maker = _ContactMaker(rnd, staff, spec.edited_share)
            import_actor = auth_service.actor_for(admin, "import")
            done = 0
            for records in _contact_batches(maker, loaded, spec.contacts, spec.batch):
                timeline.at(0.55 + 0.35 * done / max(spec.contacts, 1))
                results = contacts.write_contacts(session, records, import_actor, mode="create")
                _check(results, "contacts")
                _note_people(sold_to, records, results, timeline.clock.at)
                done += len(records)
                _note(progress, "contacts", done, spec.contacts)
            edits = _apply_edits(session, staff, maker.plans, timeline, progress)
            timeline.at(0.99)
            edits += _edit_companies(session, rnd, staff, loaded)
            sold = sales.SalesSummary()
            if spec.deals:
                sold = sales.load_sales(
                    session,
                    seed=seed,
                    now=timeline.end,
                    clock=timeline.clock,
                    admin=staff.admin,
                    sellers=[(u, team) for team, users in staff.sellers.items() for u in users],
                    companies=list(sold_to.values()),
                    deal_count=spec.deals,
                    progress=progress,
                )
            set_clock(SystemClock())
            _note(progress, "indexes", 0, 1)
            _index_fields(session, staff, fields)
            refresh_statistics(session)
            session.commit()
            _note(progress, "indexes", 1, 1)
    finally:
        set_clock(SystemClock())
    return DemoSummary(
        already_loaded=False,
        admin_email=DEMO_ADMIN_EMAIL,
        password=DEMO_PASSWORD,
        sign_ins=_sign_ins(),
        teams=len(TEAMS),
        users=len(USERS) + 1,
        custom_fields=len(fields),
        companies=len(loaded),
        contacts=done,
        edits=edits,
        sales=sold,
        seconds=time.perf_counter() - started,
    )


def standalone_contacts(
    *, count: int, companies_count: int, seed: int = DEFAULT_SEED, batch: int = 5_000
) -> Iterator[list[dict[str, Any]]]:
    """Demo-like contact records that name their company instead of pointing at a stored one.

    For files to import into any store (the CSV import benchmark): nothing is read or written.
    """
    rnd = random.Random(seed)
    namer = _CompanyNamer(rnd)
    loaded: list[_Company] = []
    for _ in range(companies_count):
        japanese = rnd.random() < 0.8
        name, domain, _industry = namer.japanese() if japanese else namer.english()
        place = _pick_place(rnd, japanese)
        loaded.append(
            _Company(
                id=0,
                name=name,
                domain=domain,
                country=place.country,
                place=place,
                street=_street(rnd, place),
                postal_code=_postal_code(rnd, place),
                phone=_landline(rnd, place),
                team=_team_for(place),
                owner_id=None,
                is_customer=rnd.random() < 0.25,
                tier=rnd.choice(_TIERS),
                employees=_employees(rnd),
                japanese=japanese,
            )
        )
    yield from _contact_batches(_ContactMaker(rnd, None, 0.0), loaded, count, batch)
