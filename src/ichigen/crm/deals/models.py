"""Pipelines and their stages, deals, stage history, exchange rates and quotas."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ichigen.core.db import Base, DecimalType, IdType, JsonType, UTCDateTime, folded_text


class Pipeline(Base):
    """A sales process: an ordered list of stages that deals move through."""

    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Stage(Base):
    """One step of a pipeline, with its win probability (percent) and kind: open, won or lost."""

    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("pipeline_id", "name"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    probability: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    #: Deal fields that must be set before a deal may enter this stage (e.g. ``amount``).
    required_fields: Mapped[list[str]] = mapped_column(JsonType, default=list)
    #: Days in this stage after which a deal is shown as stalled; none means never.
    rotting_days: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LostReason(Base):
    """A reason a deal can be lost for, chosen from a list admins keep."""

    __tablename__ = "lost_reasons"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Deal(Base):
    """A possible sale: an amount in a currency, moving through a pipeline's stages."""

    __tablename__ = "deals"
    __table_args__ = (
        # Kanban: the first deals of each stage.
        Index("ix_deals_stage_id_position_id", "stage_id", "board_position", "id"),
        # Kanban of one owner: their first deals of each stage.
        Index(
            "ix_deals_owner_id_stage_id_position_id",
            "owner_id",
            "stage_id",
            "board_position",
            "id",
        ),
        Index("ix_deals_pipeline_id_id", "pipeline_id", "id"),
        # An owner's deals by status and close date; the columns after those let the forecast
        # read this index alone when SQLite's planner picks it (a skip scan over owners).
        Index(
            "ix_deals_owner_id_status_close",
            "owner_id",
            "status",
            "expected_close_date",
            "currency",
            "stage_id",
            "probability_override",
            "forecast_category",
            "amount",
            "pipeline_id",
        ),
        # Forecast and win-rate reports read only these indexes (no table rows): open deals by
        # expected close date, closed deals by close time, with what the reports add up.
        Index(
            "ix_deals_status_close",
            "status",
            "expected_close_date",
            "owner_id",
            "currency",
            "stage_id",
            "probability_override",
            "forecast_category",
            "amount",
            "pipeline_id",
        ),
        Index(
            "ix_deals_status_closed_at",
            "status",
            "closed_at",
            "owner_id",
            "currency",
            "amount",
            "pipeline_id",
            "created_at",
        ),
        Index("ix_deals_company_id_id", "company_id", "id"),
        Index("ix_deals_name_folded_id", "name_folded", "id"),
        Index("ix_deals_updated_at_id", "updated_at", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    name_folded: Mapped[str] = mapped_column(folded_text(300))
    amount: Mapped[Decimal | None] = mapped_column(DecimalType(20, 4))
    currency: Mapped[str] = mapped_column(String(3))
    pipeline_id: Mapped[int] = mapped_column(IdType, ForeignKey("pipelines.id"))
    stage_id: Mapped[int] = mapped_column(IdType, ForeignKey("stages.id"))
    #: open, won or lost: the kind of the current stage, kept here for fast reports.
    status: Mapped[str] = mapped_column(String(10))
    #: Order within the stage's kanban column (lower first).
    board_position: Mapped[float] = mapped_column(Float, default=0.0)
    owner_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    company_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("companies.id", ondelete="SET NULL")
    )
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lost_reason_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("lost_reasons.id", ondelete="SET NULL")
    )
    close_note: Mapped[str] = mapped_column(Text, default="")
    #: Percent set by a person; none means the stage's probability applies.
    probability_override: Mapped[int | None] = mapped_column(Integer)
    #: commit, best_case, pipeline or omitted; none means derived from the probability.
    forecast_category: Mapped[str | None] = mapped_column(String(20))
    next_step: Mapped[str] = mapped_column(String(500), default="")
    next_step_due: Mapped[date | None] = mapped_column(Date)
    stage_entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    custom: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DealContact(Base):
    """A contact's part in a deal: decision maker, champion, influencer, …"""

    __tablename__ = "deal_contacts"
    __table_args__ = (UniqueConstraint("deal_id", "contact_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    deal_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("deals.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str | None] = mapped_column(String(30))


class DealStageChange(Base):
    """One move of a deal into a stage, with who moved it and when (the stage history)."""

    __tablename__ = "deal_stage_changes"
    __table_args__ = (
        # Stage conversion reads only these indexes: a period's entries, then each deal's
        # later moves.
        Index(
            "ix_deal_stage_changes_deal_id_changed_at", "deal_id", "changed_at", "id", "to_stage_id"
        ),
        Index(
            "ix_deal_stage_changes_changed_at",
            "changed_at",
            "deal_id",
            "to_stage_id",
            "pipeline_id",
            "id",
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    deal_id: Mapped[int] = mapped_column(IdType, ForeignKey("deals.id", ondelete="CASCADE"))
    pipeline_id: Mapped[int] = mapped_column(IdType, ForeignKey("pipelines.id"))
    from_stage_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("stages.id", ondelete="SET NULL")
    )
    to_stage_id: Mapped[int] = mapped_column(IdType, ForeignKey("stages.id"))
    changed_by: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DealStageTotal(Base):
    """How many deals of one owner are in one stage, and their amount, per currency.

    The deals service keeps these with every write, so a board's counts and totals read a few
    rows however many deals there are; ``rebuild_stage_totals`` recomputes them after a bulk
    load that wrote deals without the service.
    """

    __tablename__ = "deal_stage_totals"

    stage_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("stages.id", ondelete="CASCADE"), primary_key=True
    )
    #: The owner's user id; 0 for deals without an owner (so no foreign key).
    owner_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    deal_count: Mapped[int] = mapped_column(Integer)
    #: The amounts' sum in the currency's minor units (yen, cents): exact on every engine.
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class ExchangeRate(Base):
    """How many units of the base currency one unit of ``currency`` was worth from a date."""

    __tablename__ = "exchange_rates"
    __table_args__ = (UniqueConstraint("base_currency", "currency", "rate_date"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    base_currency: Mapped[str] = mapped_column(String(3))
    currency: Mapped[str] = mapped_column(String(3))
    rate_date: Mapped[date] = mapped_column(Date)
    rate: Mapped[Decimal] = mapped_column(DecimalType(24, 10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Quota(Base):
    """A sales target for one user or one team over a month or a quarter."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("user_id", "team_id", "period_kind", "period_start"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    period_kind: Mapped[str] = mapped_column(String(10))
    period_start: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(DecimalType(20, 4))
    currency: Mapped[str] = mapped_column(String(3))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
