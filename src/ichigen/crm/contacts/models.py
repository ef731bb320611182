"""Contacts and their emails, phone numbers and search terms."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ichigen.core.db import Base, IdType, JsonType, UTCDateTime, folded_text


class Contact(Base):
    """A person the business knows: a lead, a customer, a partner's employee."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_name_folded_id", "name_folded", "id"),
        Index("ix_contacts_lifecycle_stage_id", "lifecycle_stage", "id"),
        Index("ix_contacts_owner_id_id", "owner_id", "id"),
        Index("ix_contacts_company_id_id", "company_id", "id"),
        Index("ix_contacts_updated_at_id", "updated_at", "id"),
        Index("ix_contacts_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    first_name_reading: Mapped[str | None] = mapped_column(String(200))
    last_name_reading: Mapped[str | None] = mapped_column(String(200))
    full_name: Mapped[str] = mapped_column(String(401))
    name_folded: Mapped[str] = mapped_column(folded_text(401))
    primary_email: Mapped[str | None] = mapped_column(String(320))
    primary_phone: Mapped[str | None] = mapped_column(String(32))
    company_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("companies.id", ondelete="SET NULL")
    )
    job_title: Mapped[str | None] = mapped_column(String(200))
    street: Mapped[str | None] = mapped_column(String(500))
    city: Mapped[str | None] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(2))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(20))
    lead_status: Mapped[str | None] = mapped_column(String(30))
    source: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    do_not_email: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    custom: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ContactEmail(Base):
    """One email address of a contact; an address belongs to one contact only."""

    __tablename__ = "contact_emails"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)
    label: Mapped[str] = mapped_column(String(20))
    is_primary: Mapped[bool] = mapped_column(Boolean)
    position: Mapped[int] = mapped_column(Integer)


class ContactPhone(Base):
    """One phone number of a contact, in E.164."""

    __tablename__ = "contact_phones"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(32), index=True)
    label: Mapped[str] = mapped_column(String(20))
    is_primary: Mapped[bool] = mapped_column(Boolean)
    position: Mapped[int] = mapped_column(Integer)


class ContactSearchTerm(Base):
    """A folded token (name, reading, email, phone digits) that quick search matches by prefix."""

    __tablename__ = "contact_search_terms"
    __table_args__ = (Index("ix_contact_search_terms_term_contact", "term", "contact_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    term: Mapped[str] = mapped_column(folded_text(320))
