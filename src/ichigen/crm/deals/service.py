"""Deals: the rules for every read and write that others may call."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ichigen.crm.deals.models import Deal, DealContact


def existing_deal_ids(session: Session, ids: Iterable[int]) -> set[int]:
    """Which of these deal ids exist."""
    wanted = set(ids)
    if not wanted:
        return set()
    return set(session.scalars(select(Deal.id).where(Deal.id.in_(wanted))))


def deal_ids_of_company(session: Session, company_id: int) -> list[int]:
    """The ids of a company's deals (for the company's timeline)."""
    return list(session.scalars(select(Deal.id).where(Deal.company_id == company_id)))


def deal_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Deal names by id, for showing links to deals."""
    wanted = set(ids)
    if not wanted:
        return {}
    return dict(session.execute(select(Deal.id, Deal.name).where(Deal.id.in_(wanted))).tuples())


def deal_ids_of_contact(session: Session, contact_id: int) -> list[int]:
    """The ids of the deals a contact takes part in (for the contact's timeline)."""
    return list(
        session.scalars(select(DealContact.deal_id).where(DealContact.contact_id == contact_id))
    )
