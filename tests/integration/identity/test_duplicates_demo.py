"""On a B2B base with no duplicates typed in (the demo's companies and their people), the
scan does not take colleagues for one person: an address, a company, a domain and a
switchboard number shared at work are one fact, not four pieces of evidence."""

from __future__ import annotations

from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.demo.service import DemoSize, load_demo
from ichigen.identity.matching import MatchSettings, find_duplicates

SMALL = DemoSize(companies=30, contacts=300, edited_share=0.0, batch=100)


def test_colleagues_are_not_queued_as_duplicates(sqlite_db: Database) -> None:
    load_demo(sqlite_db, size=SMALL, seed=7)
    with sqlite_db.sessionmaker() as session:
        records = contacts.contact_match_records(session, limit=1_000)
    by_id = {str(record["id"]): record for record in records}
    companies = {record["company"] for record in records if record["company"]}
    assert len(records) == 300 and len(companies) >= 25

    candidates = find_duplicates(records, MatchSettings(threads=1))

    def name(contact_id: str) -> tuple[str, str]:
        record = by_id[contact_id]
        return (record["last_name"], record["first_name"])

    # Measured: 5 pairs, all namesakes; the model of 2026-11-22's evening queued 5 pairs of
    # colleagues with different names on this base (234 of them with 1,000 contacts).
    assert all(name(c.left_id) == name(c.right_id) for c in candidates)
