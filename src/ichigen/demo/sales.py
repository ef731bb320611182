"""Demo sales data: pipelines, deals with fifteen months of history, activities, tasks,
exchange rates and quotas, so the sales dashboard tells a story on the day the demo loads.

Everything goes through the sales services (``deals.service``, ``deals.forecasts``,
``activities.service``, ``tasks.service``) with the clock seam moved to the moment each thing
happened: a deal is created, then moved stage by stage with ``move_deal`` (so its stage history,
time in stage and stage conversion are real), calls and meetings land on its timeline, tasks
are created and completed (which logs them on the timeline too). Events of all deals run in
time order. Quotas are set last, from each rep's forecast, so that one rep is ahead of quota,
one behind and one on track. The data is reproducible from the seed and the load's "now".
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import Role
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock
from ichigen.crm.activities import service as activities
from ichigen.crm.activities.schemas import ActivityCreate, RecordRef
from ichigen.crm.deals import forecasts
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.schemas import (
    DealCreate,
    DealFields,
    LostReasonCreate,
    PipelineCreate,
    StageIn,
)
from ichigen.crm.tasks import reminders
from ichigen.crm.tasks import service as tasks
from ichigen.crm.tasks.schemas import TaskCreate
from ichigen.demo.names import EN_LEGAL_FORMS

#: Stage, done, total (as in ``demo.service``).
Progress = Callable[[str, int, int], None]

TOKYO = ZoneInfo("Asia/Tokyo")
PACIFIC = ZoneInfo("America/Los_Angeles")
#: How far back the sales history goes.
HISTORY_DAYS = 456
#: Rates start a little before the oldest quota and deal.
RATE_DAYS = 490

NEW_BUSINESS = "New business"
RENEWALS = "Renewals"

#: name, probability, kind, required fields, rotting days, median days spent in it.
_Stage = tuple[str, int, str, list[str], int | None, float]
PIPELINES: dict[str, list[_Stage]] = {
    NEW_BUSINESS: [
        ("Lead in", 10, "open", [], 14, 5.0),
        ("Qualified", 20, "open", [], 21, 9.0),
        ("Meeting booked", 40, "open", [], 21, 11.0),
        ("Proposal", 60, "open", ["amount"], 21, 14.0),
        ("Negotiation", 80, "open", ["amount", "expected_close_date"], 14, 10.0),
        ("Won", 100, "won", ["amount"], None, 0.0),
        ("Lost", 0, "lost", ["lost_reason_id"], None, 0.0),
    ],
    RENEWALS: [
        ("Up for renewal", 50, "open", [], 30, 18.0),
        ("Quote sent", 75, "open", ["amount"], 21, 12.0),
        ("Renewed", 100, "won", ["amount"], None, 0.0),
        ("Churned", 0, "lost", ["lost_reason_id"], None, 0.0),
    ],
}
#: Where open deals stand, and the open stage lost deals were lost from.
_OPEN_WEIGHTS = {NEW_BUSINESS: (22, 20, 20, 20, 18), RENEWALS: (55, 45)}
_LOST_WEIGHTS = {NEW_BUSINESS: (30, 28, 20, 12, 10), RENEWALS: (50, 50)}

LOST_REASONS = (
    "Price",
    "Chose a competitor",
    "No budget",
    "No decision",
    "Timing",
    "Missing features",
)
_EARLY_LOSS: tuple[tuple[str, int], ...] = (
    ("No budget", 30),
    ("Timing", 25),
    ("No decision", 25),
    ("Chose a competitor", 10),
)
_LATE_LOSS: tuple[tuple[str, int], ...] = (
    ("Price", 30),
    ("Chose a competitor", 30),
    ("No decision", 15),
    ("Missing features", 15),
    ("Timing", 10),
)
_CHURN: tuple[tuple[str, int], ...] = (
    ("Price", 35),
    ("Missing features", 30),
    ("Chose a competitor", 25),
    ("No budget", 10),
)

#: Units of JPY per unit of the currency where the rates start.
_RATE_START = {"USD": 148.0, "EUR": 161.0}

#: Rep stories (by email local part): forecast against quota, and how well they win.
STANDINGS = {
    "misaki.suzuki": ("ahead", 1.3),
    "shota.sato": ("on_track", 1.0),
    "kenta.takahashi": ("behind", 0.65),
}
#: Forecast / quota of the current quarter, per standing.
_QUOTA_RATIO = {"ahead": 1.3, "on_track": 1.0, "behind": 0.6}


# ----------------------------------------------------------------------------- words

_JP_PRODUCTS = (
    "CRM導入",
    "営業支援システム導入",
    "マーケティング連携",
    "顧客データ統合",
    "全社展開",
    "追加ライセンス",
    "サポート窓口刷新",
    "データ基盤構築",
)
_EN_PRODUCTS = (
    "Platform rollout",
    "Sales team licences",
    "Marketing integration",
    "Customer data hub",
    "Company-wide expansion",
    "Additional seats",
    "Support desk migration",
    "Data warehouse sync",
)
_DEAL_SOURCES = ("Inbound", "Outbound", "Referral", "Event", "Partner", "Website")

#: Per stage (by position in New business; renewals use 0 and 3): subjects of the work done.
_JP_SUBJECTS: tuple[tuple[str, ...], ...] = (
    ("ご挨拶とサービスのご紹介", "資料送付のご案内", "初回ヒアリングの日程調整"),
    ("課題のヒアリング", "現状の運用について確認", "導入目的の整理"),
    ("製品デモ", "活用事例のご紹介", "技術担当者との打ち合わせ"),
    ("お見積りの送付", "提案書のご説明", "導入スケジュールのご提案"),
    ("契約条件のご相談", "価格の最終調整", "稟議状況の確認"),
)
_EN_SUBJECTS: tuple[tuple[str, ...], ...] = (
    ("Introduction", "Intro deck and case studies", "Discovery call scheduling"),
    ("Discovery call", "Current process review", "Goals and success criteria"),
    ("Product demo", "Customer story walkthrough", "Technical deep dive"),
    ("Quote sent", "Proposal walkthrough", "Rollout plan"),
    ("Contract terms", "Final pricing", "Procurement check-in"),
)
_JP_RENEWAL_SUBJECTS: tuple[tuple[str, ...], ...] = (
    ("契約更新のご案内", "利用状況のレビュー", "更新条件の確認"),
    ("更新見積りの送付", "契約更新の最終確認", "価格改定のご説明"),
)
_EN_RENEWAL_SUBJECTS: tuple[tuple[str, ...], ...] = (
    ("Renewal reminder", "Usage review", "Renewal terms check"),
    ("Renewal quote", "Renewal sign-off", "Price change walkthrough"),
)
_JP_CALL_NOTES = (
    "次回打ち合わせの日程を確定。",
    "決裁者の同席を依頼。前向きな反応。",
    "他社比較中とのこと。差別化ポイントを再度説明。",
    "予算は来期確保の見込み。",
    "導入時期について社内で調整中。",
)
_EN_CALL_NOTES = (
    "Booked the next meeting.",
    "Asked for the decision maker to join; positive.",
    "Comparing vendors; went over what sets us apart again.",
    "Budget expected next fiscal year.",
    "Timing still being discussed internally.",
)
_JP_NOTES = (
    "キーマンは情報システム部長。現場の負担軽減が最優先。",
    "競合製品を試用中。移行コストを気にしている。",
    "上期中の稼働を希望。データ移行の支援が必要。",
    "価格よりもサポート体制を重視している。",
)
_EN_NOTES = (
    "Head of IT is the key person; reducing manual work matters most.",
    "Trialling a competitor; worried about switching costs.",
    "Wants to go live this half; will need help migrating data.",
    "Cares more about support than price.",
)
_JP_LOCATIONS = ("先方オフィス", "オンライン (Zoom)", "オンライン (Teams)", "弊社 会議室A")
_EN_LOCATIONS = ("Customer office", "Zoom", "Google Meet", "Our office, room 2")
_JP_NEXT_STEPS: tuple[tuple[str, ...], ...] = (
    ("資料を送付する", "初回ヒアリングの日程を決める"),
    ("課題の整理を共有する", "デモの日程を調整する"),
    ("デモの振り返りを送る", "技術検証の範囲を決める"),
    ("見積書の回答を確認する", "決裁者との面談を設定する"),
    ("契約書のレビューを依頼する", "稟議の進捗を確認する"),
)
_EN_NEXT_STEPS: tuple[tuple[str, ...], ...] = (
    ("Send the intro deck", "Book the discovery call"),
    ("Share the summary of needs", "Schedule the demo"),
    ("Send the demo recap", "Agree the trial scope"),
    ("Follow up on the quote", "Meet the decision maker"),
    ("Send the contract for review", "Check on procurement"),
)
_JP_RENEWAL_STEPS: tuple[tuple[str, ...], ...] = (
    ("利用状況レポートを送る", "更新の意向を確認する"),
    ("更新見積りの回答を確認する", "更新契約書を送付する"),
)
_EN_RENEWAL_STEPS: tuple[tuple[str, ...], ...] = (
    ("Send the usage report", "Confirm they intend to renew"),
    ("Follow up on the renewal quote", "Send the renewal contract"),
)
_JP_LOSS_NOTES = (
    "他社製品に決定。",
    "予算が確保できなかった。",
    "導入は見送り。再提案は来年度。",
    "",
)
_EN_LOSS_NOTES = (
    "Went with another vendor.",
    "Budget did not come through.",
    "Shelved for now.",
    "",
)
_JP_TASKS = (
    "見積書を送付する",
    "折り返し電話する",
    "提案書のドラフトを作る",
    "契約書のレビューを依頼する",
    "デモ環境を準備する",
    "稟議の進捗を確認する",
    "導入スケジュールを共有する",
)
_EN_TASKS = (
    "Send the quote",
    "Call back",
    "Draft the proposal",
    "Send the contract for review",
    "Prepare the demo environment",
    "Check on the purchase approval",
    "Share the rollout plan",
)
_CALL_OUTCOMES = (
    ("connected", 55),
    ("left_voicemail", 20),
    ("no_answer", 18),
    ("busy", 5),
    ("wrong_number", 2),
)


def _weighted(rnd: random.Random, table: Sequence[tuple[Any, float]]) -> Any:
    return rnd.choices([v for v, _ in table], weights=[w for _, w in table])[0]


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class SalesContact:
    """A contact deals and meetings can name."""

    id: int
    name: str
    email: str | None


@dataclass(slots=True)
class SalesCompany:
    """A demo company, the team that sells to it, and since when its people are in the CRM."""

    id: int
    name: str
    team: str
    japanese: bool
    is_customer: bool
    employees: int
    since: datetime
    contacts: list[SalesContact] = field(default_factory=list)


@dataclass(frozen=True)
class SalesSummary:
    pipelines: int = 0
    deals: int = 0
    won: int = 0
    lost: int = 0
    open: int = 0
    activities: int = 0
    tasks: int = 0
    quotas: int = 0
    rates: int = 0


@dataclass
class _Seller:
    user: UserRead
    team: str
    zone: ZoneInfo
    japanese: bool
    weight: float
    skill: float
    standing: str | None
    actor: Actor


# ----------------------------------------------------------------------------- plans


@dataclass
class _Deal:
    """A deal being written: its id once created."""

    owner: _Seller
    company: SalesCompany
    contacts: list[SalesContact]
    pipeline: str
    #: (moment, stage position) of each stage entered, the first one at creation.
    path: list[tuple[datetime, int]]
    status: str
    id: int = 0


@dataclass
class _Holder:
    """A task's assignee, and its id once created (for a repeating series, the id of its
    open task)."""

    actor: Actor
    id: int = 0


@dataclass(order=True)
class _Event:
    moment: datetime
    seq: int
    kind: str = field(compare=False)
    deal: _Deal | None = field(default=None, compare=False)
    data: Any = field(default=None, compare=False)
    owner: _Seller | None = field(default=None, compare=False)


class _Planner:
    """Draws the sales history and turns it into time-ordered service calls."""

    def __init__(
        self,
        rnd: random.Random,
        now: datetime,
        sellers: list[_Seller],
        companies: list[SalesCompany],
        pipeline_ids: dict[str, int],
        stage_ids: dict[str, list[int]],
        reasons: dict[str, int],
    ) -> None:
        self.rnd = rnd
        self.pipeline_ids = pipeline_ids
        self.now = now
        self.sellers = sellers
        self.stage_ids = stage_ids
        self.reasons = reasons
        self.events: list[_Event] = []
        self.seq = 0
        self.quarter = forecasts.quarter_of(now.date())
        self.pools: dict[tuple[str, bool], tuple[list[datetime], list[SalesCompany]]] = {}
        for team in sorted({c.team for c in companies}):
            for customers in (False, True):
                pool = sorted(
                    (c for c in companies if c.team == team and (c.is_customer or not customers)),
                    key=lambda c: (c.since, c.id),
                )
                self.pools[(team, customers)] = ([c.since for c in pool], pool)

    # -- helpers

    def add(self, moment: datetime, kind: str, **values: Any) -> None:
        self.seq += 1
        self.events.append(_Event(moment, self.seq, kind, **values))

    def working_time(self, moment: datetime, zone: ZoneInfo, *, ahead: bool = False) -> datetime:
        """A time in working hours on the working day of ``moment`` (or the one before it,
        or after it when ``ahead``)."""
        day = moment.astimezone(zone).date()
        while day.weekday() >= 5:
            day += timedelta(days=1 if ahead else -1)
        minutes = self.rnd.randint(9 * 60 + 10, 18 * 60 + 30)
        return datetime.combine(day, time(minutes // 60, minutes % 60), zone).astimezone(UTC)

    def company_for(self, seller: _Seller, when: datetime, customers: bool) -> SalesCompany:
        team = seller.team or "tokyo"
        key = (team, customers) if (team, customers) in self.pools else (team, False)
        sinces, pool = self.pools.get(key, ([], []))
        if not pool:
            sinces, pool = next(p for p in self.pools.values() if p[1])
        count = bisect.bisect_right(sinces, when - timedelta(days=1))
        return pool[self.rnd.randrange(count)] if count else pool[0]

    def days(self, median: float) -> timedelta:
        return timedelta(days=max(0.2, median * self.rnd.lognormvariate(0, 0.55)))

    # -- deals

    def plan_deals(self, total: int) -> list[_Deal]:
        rnd = self.rnd
        weight = sum(s.weight for s in self.sellers)
        made: list[_Deal] = []
        for seller in self.sellers:
            count = max(7, round(total * seller.weight / weight))
            opened = max(3, round(count * 0.3))
            won = max(2, round(count * 0.2 * seller.skill))
            lost = max(2, count - opened - won)
            fates = ["open"] * opened + ["won"] * won + ["lost"] * lost
            rnd.shuffle(fates)
            first = {"won": True, "lost": True, "open": True}
            for fate in fates:
                made.append(self.plan_deal(seller, fate, first[fate]))
                first[fate] = False
        return made

    def plan_deal(self, seller: _Seller, fate: str, first_of_fate: bool) -> _Deal:
        rnd = self.rnd
        renewal = rnd.random() < 0.2
        pipeline = RENEWALS if renewal else NEW_BUSINESS
        stages = PIPELINES[pipeline]
        open_count = sum(1 for s in stages if s[2] == "open")
        if fate == "open":
            last = _weighted(rnd, list(enumerate(_OPEN_WEIGHTS[pipeline])))
            reached = last
        elif fate == "won":
            reached = open_count - 1
            last = open_count  # the won stage
        else:
            reached = _weighted(rnd, list(enumerate(_LOST_WEIGHTS[pipeline])))
            last = open_count + 1  # the lost stage
        first = 1 if pipeline == NEW_BUSINESS and reached >= 1 and rnd.random() < 0.35 else 0
        positions = [*range(first, reached + 1)] + ([last] if fate != "open" else [])
        # Moments, from the last stage entered back to the first.
        in_quarter = first_of_fate and self.now - self.quarter.start_at > timedelta(hours=2)
        if fate == "open":
            rot = stages[reached][4] or 30
            stalled = rnd.random() < 0.12
            since = rot + rnd.uniform(2, 45) if stalled else rot * rnd.uniform(0.02, 0.7)
            end = self.now - timedelta(days=since)
        elif in_quarter:
            # Each rep closes one deal of each kind in this quarter, so this quarter's
            # forecast and win rate have something to show from its first days.
            span = min(self.now - self.quarter.start_at, timedelta(days=40))
            end = self.now - span * rnd.uniform(0.02, 0.98)
        else:
            cycle = sum((stages[p][5] for p in positions[:-1]), 0.0)
            room = max(1.0, HISTORY_DAYS - cycle * 1.3)
            end = self.now - timedelta(days=room * rnd.random() ** 1.25)
        moments = [end]
        for position in reversed(positions[:-1]):
            moments.append(moments[-1] - self.days(stages[position][5]))
        moments.reverse()
        company = self.company_for(seller, moments[0], renewal)
        # Working hours, strictly in order, never in the future.
        latest = self.now - timedelta(minutes=5)
        fixed: list[datetime] = []
        for moment in reversed(moments):
            snapped = min(self.working_time(moment, seller.zone), latest)
            if not fixed and fate != "open" and in_quarter and snapped < self.quarter.start_at:
                snapped = min(moment, latest)
            if fixed and snapped > fixed[-1] - timedelta(minutes=10):
                snapped = fixed[-1] - timedelta(minutes=rnd.randint(10, 90))
            fixed.append(snapped)
        fixed.reverse()
        wanted = rnd.choices((1, 2, 3), (45, 35, 20))[0]
        people = rnd.sample(company.contacts, min(wanted, len(company.contacts)))
        return _Deal(
            owner=seller,
            company=company,
            contacts=people,
            pipeline=pipeline,
            path=list(zip(fixed, positions, strict=True)),
            status=fate,
        )

    def deal_events(self, deal: _Deal, first_open_of_owner: bool) -> None:
        """Create, moves, and the fields each write sets."""
        rnd = self.rnd
        seller, company = deal.owner, deal.company
        stages = PIPELINES[deal.pipeline]
        ids = self.stage_ids[deal.pipeline]
        currency = "JPY"
        if company.japanese:
            currency = _weighted(rnd, (("JPY", 94), ("USD", 3), ("EUR", 3)))
        else:
            currency = _weighted(rnd, (("USD", 88), ("EUR", 12)))
        amount = _amount(rnd, currency, company, deal.pipeline == RENEWALS)
        created = deal.path[0][0]
        closing = deal.path[-1][0]
        if deal.pipeline == RENEWALS:
            product = (
                f"年間契約更新 {closing.year}" if seller.japanese else f"Renewal {closing.year}"
            )
        else:
            product = rnd.choice(_JP_PRODUCTS if seller.japanese else _EN_PRODUCTS)
        roles = ["decision_maker" if rnd.random() < 0.5 else "champion"]
        roles += rnd.sample(["champion", "influencer", "economic_buyer", "user", "other"], 2)
        create: dict[str, Any] = {
            "name": f"{_short_name(company.name)} {product}",
            "currency": currency,
            "pipeline_id": self.pipeline_ids[deal.pipeline],
            "stage_id": ids[deal.path[0][1]],
            "owner_id": seller.user.id,
            "company_id": company.id,
            "contacts": [
                {"contact_id": c.id, "role": roles[i]} for i, c in enumerate(deal.contacts)
            ],
            "source": rnd.choice(_DEAL_SOURCES) if deal.pipeline == NEW_BUSINESS else "Renewal",
        }
        if deal.pipeline == RENEWALS or rnd.random() < 0.6:
            create["amount"] = amount
        # The close date people expect: around the real close for closed deals, this or next
        # quarter for open ones.
        if deal.status == "open":
            expected = self.open_close_date(created)
        else:
            expected = max(created.date(), (closing + timedelta(days=rnd.uniform(-6, 12))).date())
        if deal.status != "won" and deal.status != "open" and rnd.random() < 0.45:
            create["expected_close_date"] = expected
        if deal.status == "lost" and deal.path[-1][0] >= self.quarter.start_at:
            create["expected_close_date"] = max(created.date(), closing.date())
        writes: list[tuple[datetime, int, dict[str, Any]]] = [(created, deal.path[0][1], create)]
        for moment, position in deal.path[1:]:
            writes.append((moment, position, {}))
        known = set(create)
        for moment, position, values in writes:
            _name, _probability, kind, required, _rot, _median = stages[position]
            for name, value in (("amount", amount), ("expected_close_date", expected)):
                if name in required and name not in known:
                    values[name] = value
                    known.add(name)
            if kind == "lost":
                table = _CHURN if deal.pipeline == RENEWALS else _EARLY_LOSS
                if deal.pipeline == NEW_BUSINESS and deal.path[-2][1] >= 3:
                    table = _LATE_LOSS
                values["lost_reason_id"] = self.reasons[_weighted(rnd, table)]
                values["close_note"] = rnd.choice(
                    _JP_LOSS_NOTES if seller.japanese else _EN_LOSS_NOTES
                )
            if kind == "won":
                values["next_step"] = ""
                values["next_step_due"] = None
            if kind == "open" and rnd.random() < 0.6:
                values["next_step"] = self.next_step(seller, deal.pipeline, position)
                values["next_step_due"] = (moment + timedelta(days=rnd.randint(2, 10))).date()
        if deal.status == "open":
            values = writes[-1][2]
            last_moment, position = deal.path[-1]
            if rnd.random() < 0.88 or "expected_close_date" in known:
                values["expected_close_date"] = expected
            if first_open_of_owner or rnd.random() < 0.12:
                values["next_step"] = ""
                values["next_step_due"] = None
            else:
                values["next_step"] = self.next_step(seller, deal.pipeline, position)
                days_left = rnd.randint(-6, 14)
                values["next_step_due"] = max(
                    (last_moment + timedelta(days=2)).date(),
                    self.now.astimezone(seller.zone).date() + timedelta(days=days_left),
                )
            probability = stages[position][1]
            if position >= 2 and deal.pipeline == NEW_BUSINESS and rnd.random() < 0.1:
                change = rnd.choice((-20, -10, 10, 15))
                values["probability"] = min(95, max(5, probability + change))
            roll = rnd.random()
            if roll < 0.03:
                values["forecast_category"] = "omitted"
            elif stages[position][0] == "Negotiation" and roll < 0.6:
                values["forecast_category"] = "commit"
            elif stages[position][0] == "Proposal" and roll < 0.18:
                values["forecast_category"] = "best_case"
        for index, (moment, position, values) in enumerate(writes):
            if index == 0:
                self.add(moment, "create", deal=deal, data=values)
            else:
                self.add(moment, "move", deal=deal, data=(ids[position], values))

    def open_close_date(self, created: datetime) -> date:
        rnd = self.rnd
        today = self.now.date()
        floor = created.date()
        roll = rnd.random()
        if roll < 0.06:
            day = today - timedelta(days=rnd.randint(1, 20))
        elif roll < 0.58 and self.quarter.last_day > today:
            day = today + timedelta(days=rnd.randint(1, (self.quarter.last_day - today).days))
        else:
            after = forecasts.quarter_of(self.quarter.end)
            day = after.start + timedelta(days=rnd.randint(0, (after.last_day - after.start).days))
        return max(day, floor)

    def next_step(self, seller: _Seller, pipeline: str, position: int) -> str:
        if pipeline == RENEWALS:
            steps = _JP_RENEWAL_STEPS if seller.japanese else _EN_RENEWAL_STEPS
        else:
            steps = _JP_NEXT_STEPS if seller.japanese else _EN_NEXT_STEPS
        return self.rnd.choice(steps[min(position, len(steps) - 1)])

    # -- activities

    def deal_activities(self, deal: _Deal) -> None:
        rnd = self.rnd
        begin, end = deal.path[0][0], deal.path[-1][0] if deal.status != "open" else self.now
        stalled_since = deal.path[-1][0] if deal.status == "open" else None
        days = max(0.5, (end - begin).total_seconds() / 86400)
        intensity = {"open": 1.25, "won": 1.2, "lost": 0.75}[deal.status]
        count = max(1, min(40, round(rnd.gauss(2 + days / 6 * intensity, 1.2))))
        moments = sorted(begin + (end - begin) * rnd.random() for _ in range(count))
        if deal.status == "open":
            stages = PIPELINES[deal.pipeline]
            rot = stages[deal.path[-1][1]][4] or 30
            stalled = self.now - deal.path[-1][0] > timedelta(days=rot)
            if not stalled:
                moments += [
                    self.now - timedelta(days=rnd.uniform(0.1, 9)) for _ in range(rnd.randint(1, 3))
                ]
            elif stalled_since is not None:
                moments = [m for m in moments if m <= stalled_since + timedelta(days=3)] or [
                    stalled_since
                ]
        for moment in moments:
            when = max(begin + timedelta(minutes=5), self.working_time(moment, deal.owner.zone))
            when = min(when, self.now - timedelta(minutes=10))
            position = deal.path[0][1]
            for entered, stage_position in deal.path:
                if entered <= when:
                    position = stage_position
            self.activity(deal.owner, deal.company, deal.contacts, deal, position, when)
        if (
            deal.status == "open"
            and PIPELINES[deal.pipeline][deal.path[-1][1]][0] == "Meeting booked"
            and self.now - deal.path[-1][0] < timedelta(days=10)
        ):
            # The meeting that was booked: on the calendar, a few days ahead.
            ahead = self.now + timedelta(days=rnd.uniform(1, 9))
            when = self.working_time(ahead, deal.owner.zone, ahead=True)
            when = max(when, self.now + timedelta(hours=2))
            logged = deal.path[-1][0] + timedelta(minutes=3)
            self.meeting(deal.owner, deal.company, deal.contacts, deal, 2, when, logged)

    def loose_activities(self, count: int) -> None:
        """Calls, emails and notes about contacts and companies outside any deal."""
        rnd = self.rnd
        weights = [s.weight for s in self.sellers]
        for _ in range(count):
            seller = rnd.choices(self.sellers, weights)[0]
            moment = self.now - timedelta(days=HISTORY_DAYS * rnd.random() ** 1.3)
            when = min(self.working_time(moment, seller.zone), self.now - timedelta(minutes=10))
            company = self.company_for(seller, when, False)
            people = [rnd.choice(company.contacts)] if company.contacts else []
            self.activity(seller, company, people, None, 0, when)

    def activity(
        self,
        seller: _Seller,
        company: SalesCompany,
        people: list[SalesContact],
        deal: _Deal | None,
        position: int,
        when: datetime,
    ) -> None:
        rnd = self.rnd
        subjects = _subjects(seller.japanese, deal, position)
        person = rnd.choice(people) if people else None
        kind = _weighted(rnd, (("call", 35), ("email", 30), ("meeting", 15), ("note", 20)))
        if deal is None and kind == "meeting":
            kind = "call"
        if kind == "email" and (person is None or person.email is None):
            kind = "note"
        if kind == "call" and person is None:
            kind = "note"
        if kind == "meeting":
            self.meeting(seller, company, people, deal, position, when, None)
            return
        links = _links(company, person if kind != "note" else None, deal)
        values: dict[str, Any] = {
            "kind": kind,
            "subject": rnd.choice(subjects),
            "occurred_at": when,
        }
        logged = when + timedelta(minutes=rnd.randint(1, 40))
        if kind == "call":
            outcome = _weighted(rnd, _CALL_OUTCOMES)
            values["direction"] = "outbound" if rnd.random() < 0.8 else "inbound"
            values["outcome"] = outcome
            if outcome == "connected":
                values["duration_seconds"] = min(5400, int(rnd.lognormvariate(6.0, 0.7)))
                values["body"] = rnd.choice(_JP_CALL_NOTES if seller.japanese else _EN_CALL_NOTES)
            elif outcome == "left_voicemail":
                values["duration_seconds"] = rnd.randint(20, 70)
            else:
                values["duration_seconds"] = rnd.randint(0, 25)
        elif kind == "email":
            assert person is not None and person.email is not None
            outbound = rnd.random() < 0.65
            values["direction"] = "outbound" if outbound else "inbound"
            values["email_from"] = seller.user.email if outbound else person.email
            values["email_to"] = [person.email if outbound else seller.user.email]
            if not outbound:
                values["subject"] = "Re: " + values["subject"]
        else:
            values["body"] = rnd.choice(_JP_NOTES if seller.japanese else _EN_NOTES)
        values["links"] = links
        values["owner_id"] = seller.user.id
        self.add(min(logged, self.now), "activity", deal=deal, data=values, owner=seller)

    def meeting(
        self,
        seller: _Seller,
        company: SalesCompany,
        people: list[SalesContact],
        deal: _Deal | None,
        position: int,
        when: datetime,
        logged: datetime | None,
    ) -> None:
        """A meeting with the deal's people; ``logged`` when it was put in the calendar ahead
        of time (else it is logged once it is over)."""
        rnd = self.rnd
        start = when.replace(minute=when.minute // 30 * 30, second=0, microsecond=0)
        length = timedelta(minutes=rnd.choice((30, 45, 60, 60, 90)))
        attendees = [{"email": p.email, "name": p.name} for p in people if p.email]
        attendees.append({"email": seller.user.email, "name": seller.user.name})
        subjects = _subjects(seller.japanese, deal, position)
        values = {
            "kind": "meeting",
            "subject": subjects[0] if logged is not None else rnd.choice(subjects),
            "occurred_at": start,
            "ends_at": start + length,
            "attendees": attendees,
            "location": rnd.choice(_JP_LOCATIONS if seller.japanese else _EN_LOCATIONS),
            "links": _links(company, people[0] if people else None, deal),
            "owner_id": seller.user.id,
        }
        moment = logged if logged is not None else min(start + length, self.now)
        self.add(moment, "activity", deal=deal, data=values, owner=seller)

    # -- tasks

    def seller_tasks(self, seller: _Seller, owned: list[_Deal]) -> None:
        """A rep's tasks: done ones behind them, a few overdue, some due today (in their time
        zone) and in the coming days, some with reminders, and a weekly series."""
        rnd = self.rnd
        now, zone = self.now, seller.zone
        open_deals = [d for d in owned if d.status == "open"] or owned
        extra: dict[str, Any] = {}
        # Done: over the last two months, completed around their due time.
        for _ in range(3 + min(40, len(owned) // 6)):
            due = self.working_time(now - timedelta(days=rnd.uniform(1, 60)), zone)
            due = min(due, now - timedelta(hours=2))
            created = due - timedelta(days=rnd.uniform(1, 8))
            finished = min(due + timedelta(hours=rnd.uniform(-30, 20)), now - timedelta(hours=1))
            holder = self.task(seller, owned, due, created)
            self.add(max(finished, created + timedelta(minutes=30)), "complete", data=holder)
        for index in range(rnd.randint(2, 3)):
            due = self.working_time(now - timedelta(days=rnd.uniform(0.8, 9)), zone)
            due = min(due, now - timedelta(minutes=30))
            extra = {}
            if index == 0 or rnd.random() < 0.5:
                # Reminded before it was due (so the rep has notifications to read).
                extra["remind_at"] = due - timedelta(minutes=30)
                self.add(due - timedelta(minutes=29), "remind")
            self.task(seller, open_deals, due, due - timedelta(days=rnd.uniform(1, 6)), **extra)
        today = now.astimezone(zone).date()
        self.task(
            seller,
            open_deals,
            datetime.combine(today, time(), UTC),
            now - timedelta(days=rnd.uniform(1, 4)),
            all_day=True,
        )
        for index in range(2):
            due = _later_today(rnd, now, zone, also_utc=index == 1)
            extra = {}
            if index == 0 and seller.user.role in (Role.admin, Role.sales):
                # A reminder that comes due as the day goes on (or at once, late in the day).
                extra["remind_at"] = max(due - timedelta(minutes=30), now - timedelta(minutes=5))
            self.task(seller, open_deals, due, now - timedelta(days=rnd.uniform(0.2, 3)), **extra)
        ahead = [rnd.uniform(1.2, 6.5) for _ in range(rnd.randint(3, 4))]
        for days in ahead + [rnd.uniform(8, 21) for _ in range(2)]:
            due = self.working_time(now + timedelta(days=days), zone, ahead=True)
            due = max(due, now + timedelta(days=1))
            extra = {}
            if rnd.random() < 0.5:
                extra["remind_at"] = due - timedelta(minutes=rnd.choice((15, 30, 60, 24 * 60)))
            self.task(seller, open_deals, due, now - timedelta(days=rnd.uniform(0.1, 5)), **extra)
        self.weekly_series(seller, today)

    def weekly_series(self, seller: _Seller, today: date) -> None:
        """Managers review the pipeline on Mondays, reps send a report on Fridays: a series
        started three weeks ago, its past occurrences done."""
        rnd = self.rnd
        review = seller.user.role in (Role.admin, Role.manager)
        weekday = 0 if review else 4
        if seller.japanese:
            title = "週次パイプラインレビュー" if review else "週報を提出する"
        else:
            title = "Weekly pipeline review" if review else "Send the weekly report"
        local = datetime.combine(today, time(10 if review else 17), seller.zone)
        first_due = (local - timedelta(days=(today.weekday() - weekday) % 7 + 21)).astimezone(UTC)
        holder = self.task(
            seller,
            [],
            first_due,
            first_due - timedelta(days=3),
            title=title,
            priority="normal",
            recurrence=f"FREQ=WEEKLY;BYDAY={_WEEKDAYS[first_due.weekday()]}",
        )
        due = first_due
        while due + timedelta(hours=2) < self.now:
            self.add(due + timedelta(hours=rnd.uniform(0.2, 1.8)), "complete", data=holder)
            due += timedelta(days=7)

    def task(
        self,
        seller: _Seller,
        deals_of: list[_Deal],
        due: datetime,
        created: datetime,
        **extra: Any,
    ) -> _Holder:
        """A task of ``seller`` created at ``created``: about one of ``deals_of`` that exists
        by then, or one of their contacts or companies (none for a series)."""
        rnd = self.rnd
        created = min(created, self.now - timedelta(minutes=1))
        values: dict[str, Any] = {
            "title": rnd.choice(_JP_TASKS if seller.japanese else _EN_TASKS),
            "due_at": due,
            "priority": _weighted(rnd, (("normal", 55), ("high", 25), ("low", 12), ("urgent", 8))),
            "assignee_id": seller.user.id,
            **extra,
        }
        if "recurrence" not in extra:
            known = [d for d in deals_of if d.path[0][0] < created]
            roll = rnd.random()
            if known and roll < 0.75:
                values["record"] = ("deal", rnd.choice(known))
            else:
                company = self.company_for(seller, created, False)
                if company.contacts and roll < 0.92:
                    values["record"] = ("contact", rnd.choice(company.contacts).id)
                else:
                    values["record"] = ("company", company.id)
        holder = _Holder(seller.actor)
        self.add(created, "task", data=(holder, values))
        return holder


_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def _subjects(japanese: bool, deal: _Deal | None, position: int) -> tuple[str, ...]:
    """What work on a deal in this stage is about (introductions for records without one)."""
    if deal is not None and deal.pipeline == RENEWALS:
        table = _JP_RENEWAL_SUBJECTS if japanese else _EN_RENEWAL_SUBJECTS
    else:
        table = _JP_SUBJECTS if japanese else _EN_SUBJECTS
    return table[min(position, len(table) - 1)]


def _later_today(rnd: random.Random, now: datetime, zone: ZoneInfo, *, also_utc: bool) -> datetime:
    """A time later today in ``zone``, in working hours while the day has some left; with
    ``also_utc``, one that is today in UTC as well when the two days overlap long enough (the
    API's My day counts days in UTC unless told a time zone)."""
    day = now.astimezone(zone).date()
    start = now + timedelta(minutes=10)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    if also_utc:
        utc_end = datetime.combine(now.date() + timedelta(days=1), time(), UTC)
        if min(end, utc_end) - start >= timedelta(minutes=40):
            end = min(end, utc_end)
    low = max(start, datetime.combine(day, time(9), zone))
    high = min(end, datetime.combine(day, time(19), zone))
    if high - low < timedelta(minutes=20):
        low, high = start, end
    if high - low < timedelta(minutes=10):
        # The last minutes of the day: due before midnight all the same.
        return now + (end - now) / 2
    due = low + (high - low - timedelta(minutes=5)) * rnd.random()
    return due.replace(second=0, microsecond=0)


def _links(
    company: SalesCompany, person: SalesContact | None, deal: _Deal | None
) -> list[tuple[str, Any]]:
    links: list[tuple[str, Any]] = [("company", company.id)]
    if person is not None:
        links.append(("contact", person.id))
    if deal is not None:
        links.append(("deal", deal))
    return links


def _short_name(name: str) -> str:
    for form in ("株式会社", "合同会社", "有限会社"):
        name = name.replace(form, "")
    for form in EN_LEGAL_FORMS:
        if name.endswith(" " + form):
            name = name[: -len(form) - 1]
    return name.strip()


def _amount(rnd: random.Random, currency: str, company: SalesCompany, renewal: bool) -> Decimal:
    size = (max(company.employees, 5) / 100) ** 0.3
    base = {"JPY": 2_400_000.0, "USD": 18_000.0, "EUR": 16_000.0}[currency]
    value = base * size * rnd.lognormvariate(0, 0.55) * (0.55 if renewal else 1.0)
    if currency == "JPY":
        step = 10_000 if value < 1_000_000 else 100_000
        value = min(value, 300_000_000)
    else:
        step = 100 if value < 10_000 else 500
        value = min(value, 2_000_000)
    return Decimal(max(step, round(value / step) * step))


# ----------------------------------------------------------------------------- loading


def _sellers(rnd: random.Random, users: Sequence[tuple[UserRead, str]]) -> list[_Seller]:
    """Who sells: the sales teams' reps and managers, and the demo admin (a little)."""
    sellers = []
    for user, team in users:
        local = user.email.split("@", 1)[0]
        standing, skill = STANDINGS.get(local, (None, rnd.uniform(0.85, 1.15)))
        weight = {Role.sales: 1.0, Role.manager: 0.35}.get(user.role, 0.45)
        sellers.append(
            _Seller(
                user=user,
                team=team,
                zone=PACIFIC if team == "us" else TOKYO,
                japanese=team != "us",
                weight=weight,
                skill=skill,
                standing=standing,
                actor=auth_service.actor_for(user),
            )
        )
    return sellers


def _setup(
    session: Session, admin: Actor, clock: FixedClock, now: datetime
) -> tuple[dict[str, int], dict[str, list[int]], dict[str, int]]:
    clock.at = now - timedelta(days=RATE_DAYS + 10)
    pipeline_ids: dict[str, int] = {}
    stage_ids: dict[str, list[int]] = {}
    for position, (name, stages) in enumerate(PIPELINES.items()):
        created = deals.create_pipeline(
            session,
            PipelineCreate(
                name=name,
                is_default=position == 0,
                position=position,
                stages=[
                    StageIn(
                        name=s[0],
                        probability=s[1],
                        kind=s[2],
                        required_fields=s[3],
                        rotting_days=s[4],
                    )
                    for s in stages
                ],
            ),
            admin,
        )
        pipeline_ids[name] = created.id
        stage_ids[name] = [s.id for s in created.stages]
    reasons = {
        name: deals.create_lost_reason(
            session, LostReasonCreate(name=name, position=position), admin
        ).id
        for position, name in enumerate(LOST_REASONS)
    }
    return pipeline_ids, stage_ids, reasons


def _rates(
    session: Session, rnd: random.Random, admin: Actor, clock: FixedClock, now: datetime
) -> int:
    """Weekly rates of USD and EUR in yen, drifting a little around where they started."""
    first = (now - timedelta(days=RATE_DAYS)).date()
    first -= timedelta(days=first.weekday())
    written = 0
    for currency, start in _RATE_START.items():
        value = start
        day = first
        while day <= now.date():
            value *= 1 + rnd.gauss(0, 0.009) + (start - value) / start * 0.05
            clock.at = min(datetime.combine(day, time(9), TOKYO).astimezone(UTC), now)
            forecasts.set_rate(session, currency, day, Decimal(f"{value:.2f}"), admin)
            written += 1
            day += timedelta(days=7)
    return written


def _run(
    session: Session,
    planner: _Planner,
    clock: FixedClock,
    progress: Progress | None,
) -> tuple[int, int]:
    """Play the events in time order; activities go in by fortnight and owner, in bulk."""
    events = sorted(planner.events)
    pending: list[_Event] = []
    logged = 0
    tasks_made = 0

    def flush() -> None:
        nonlocal logged
        by_owner: dict[int, list[_Event]] = {}
        for event in pending:
            assert event.owner is not None
            by_owner.setdefault(event.owner.user.id, []).append(event)
        for group in by_owner.values():
            clock.at = max(e.moment for e in group)
            items = [_activity(e.data) for e in group]
            owner = group[0].owner
            assert owner is not None
            logged += len(activities.log_activities(session, items, owner.actor, commit=False))
        session.commit()
        pending.clear()

    for done, event in enumerate(events, start=1):
        if event.kind == "activity":
            if pending and (
                event.moment - pending[0].moment > timedelta(days=14) or len(pending) >= 2000
            ):
                flush()
            pending.append(event)
        else:
            clock.at = event.moment
            tasks_made += _play(session, event)
        if progress is not None and (done % 250 == 0 or done == len(events)):
            progress("sales", done, len(events))
    if pending:
        flush()
    return logged, tasks_made


def _activity(values: dict[str, Any]) -> ActivityCreate:
    links = [
        RecordRef(type=kind, id=target.id if isinstance(target, _Deal) else target)
        for kind, target in values["links"]
    ]
    return ActivityCreate.model_validate({**values, "links": links})


def _play(session: Session, event: _Event) -> int:
    """One deal or task event; returns the tasks it created."""
    deal = event.deal
    if event.kind == "create":
        assert deal is not None
        deal.id = deals.create_deal(
            session, DealCreate.model_validate(event.data), deal.owner.actor
        ).id
    elif event.kind == "move":
        assert deal is not None
        stage_id, values = event.data
        deals.move_deal(
            session, deal.id, stage_id, deal.owner.actor, fields=DealFields.model_validate(values)
        )
    elif event.kind == "task":
        holder, values = event.data
        values = dict(values)
        record = values.pop("record", None)
        if record is not None:
            record_type, target = record
            values["record_type"] = record_type
            values["record_id"] = target.id if isinstance(target, _Deal) else target
        holder.id = tasks.create_task(session, TaskCreate.model_validate(values), holder.actor).id
        return 1
    elif event.kind == "remind":
        reminders.fire_due_reminders(session, event.moment, None)
    elif event.kind == "complete":
        holder = event.data
        done = tasks.complete_task(session, holder.id, holder.actor)
        if done.next_task is not None:
            holder.id = done.next_task.id
            return 1
    return 0


def _quotas(
    session: Session,
    sellers: list[_Seller],
    managers: dict[str, _Seller],
    admin: Actor,
    clock: FixedClock,
    now: datetime,
    rnd: random.Random,
) -> int:
    """Quotas per rep and team for this quarter and the four before it, and for the months
    of this quarter and the last one. This quarter's are set from each rep's forecast so that
    the standings differ as planned (ahead, on track, behind); earlier ones from what each rep
    won then, so that past attainment varies around the target."""
    current = forecasts.quarter_of(now.date())
    quarters = [current]
    for _ in range(4):
        quarters.append(forecasts.quarter_of(quarters[-1].start - timedelta(days=1)))
    currency_of = {s.user.id: "USD" if s.team == "us" else "JPY" for s in sellers}
    figures: dict[tuple[int, int], Decimal] = {}
    for back, quarter in enumerate(quarters):
        for currency in ("JPY", "USD"):
            scope = forecasts.report_scope(session, quarter, currency=currency)
            for row in forecasts.forecast(session, admin, scope).rows:
                if row.user_id is not None and currency_of.get(row.user_id) == currency:
                    figures[(back, row.user_id)] = row.weighted if back == 0 else row.won
    written = 0
    team_totals: dict[tuple[str, str, date], Decimal] = {}
    for seller in sellers:
        currency = currency_of[seller.user.id]
        ratio = _QUOTA_RATIO.get(seller.standing or "", rnd.uniform(0.8, 1.15))
        base = figures.get((0, seller.user.id), Decimal(0)) / Decimal(ratio)
        setter = managers.get(seller.team)
        actor = setter.actor if setter and setter is not seller else admin
        for back in reversed(range(len(quarters))):
            quarter = quarters[back]
            amount = base
            if back:
                made = figures.get((back, seller.user.id), Decimal(0))
                floor = base * Decimal(0.6 * 0.92**back)
                amount = max(made / Decimal(rnd.uniform(0.75, 1.2)), floor)
            amount = _round_quota(amount, currency)
            clock.at = min(quarter.start_at - timedelta(days=10), now)
            periods = [("quarter", quarter.start, amount)]
            if back < 2:
                monthly = _round_quota(amount / 3, currency)
                periods += [("month", m.start, monthly) for m in quarter.months()]
            for kind, start, value in periods:
                forecasts.set_quota(
                    session,
                    forecasts.QuotaCreate(
                        user_id=seller.user.id,
                        period_kind=kind,
                        period_start=start,
                        amount=value,
                        currency=currency,
                    ),
                    actor,
                )
                written += 1
                if seller.team:
                    key = (seller.team, kind, start)
                    team_totals[key] = team_totals.get(key, Decimal(0)) + value
    for (team, kind, start), total in sorted(team_totals.items()):
        currency = "USD" if team == "us" else "JPY"
        clock.at = min(datetime.combine(start, time(), UTC) - timedelta(days=10), now)
        forecasts.set_quota(
            session,
            forecasts.QuotaCreate(
                team_id=managers[team].user.team_id,
                period_kind=kind,
                period_start=start,
                amount=_round_quota(total * Decimal("1.05"), currency),
                currency=currency,
            ),
            admin,
        )
        written += 1
    return written


def _round_quota(amount: Decimal, currency: str) -> Decimal:
    step = Decimal(100_000 if currency == "JPY" else 1_000)
    floor = Decimal(1_000_000 if currency == "JPY" else 10_000)
    return max(floor, (amount / step).quantize(Decimal(1)) * step)


def load_sales(
    session: Session,
    *,
    seed: int,
    now: datetime,
    clock: FixedClock,
    admin: UserRead,
    sellers: Sequence[tuple[UserRead, str]],
    companies: list[SalesCompany],
    deal_count: int,
    progress: Progress | None = None,
) -> SalesSummary:
    """Write the sales demo: ``sellers`` are (user, team key) of who owns deals; ``now`` is
    the moment the history leads up to; ``clock`` is moved to each event's moment."""
    rnd = random.Random(f"sales-{seed}")
    admin_actor = auth_service.actor_for(admin)
    if progress is not None:
        progress("rates", 0, 1)
    pipeline_ids, stage_ids, reasons = _setup(session, admin_actor, clock, now)
    rates = _rates(session, rnd, admin_actor, clock, now)
    if progress is not None:
        progress("rates", 1, 1)
    people = _sellers(rnd, [*sellers, (admin, "")])
    planner = _Planner(rnd, now, people, companies, pipeline_ids, stage_ids, reasons)
    planned = planner.plan_deals(deal_count)
    seen: set[int] = set()
    for deal in planned:
        first_open = deal.status == "open" and deal.owner.user.id not in seen
        if first_open:
            seen.add(deal.owner.user.id)
        planner.deal_events(deal, first_open)
        planner.deal_activities(deal)
    planner.loose_activities(len(planned) * 5 // 2)
    for seller in people:
        planner.seller_tasks(seller, [d for d in planned if d.owner is seller])
    logged, tasks_made = _run(session, planner, clock, progress)
    clock.at = now
    if progress is not None:
        progress("quotas", 0, 1)
    managers = {s.team: s for s in people if s.user.role == Role.manager}
    quotas = _quotas(session, people, managers, admin_actor, clock, now, rnd)
    if progress is not None:
        progress("quotas", 1, 1)
    statuses = [d.status for d in planned]
    return SalesSummary(
        pipelines=len(pipeline_ids),
        deals=len(planned),
        won=statuses.count("won"),
        lost=statuses.count("lost"),
        open=statuses.count("open"),
        activities=logged,
        tasks=tasks_made,
        quotas=quotas,
        rates=rates,
    )
