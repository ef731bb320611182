"""Demo web behaviour: visitors of the demo shop browse anonymously, some sign up as
customers whose e-mail addresses are CRM contacts, and buy; the events go through the
collector as tracked ones do, so the identity graph and profile traits fill as they would."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ichigen.collect.ingest import Collector
from ichigen.collect.messages import Envelope, EventRow, Limits, normalise
from ichigen.collect.store_process import open_event_store
from ichigen.core.clock import utcnow
from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.profiles import service as profiles
from ichigen.profiles.ingest import EventAttribution

PRODUCTS = [
    ("sku-101", "Green tea set", 4800),
    ("sku-205", "Cast-iron kettle", 12800),
    ("sku-310", "Hinoki cutting board", 6200),
    ("sku-412", "Indigo noren curtain", 9800),
    ("sku-518", "Arita porcelain cups", 7600),
]
PAGES = [("/", "Home"), ("/products", "Products"), ("/pricing", "Pricing"), ("/blog", "Blog")]
#: Customers (contacts who visit the shop) and anonymous visitors per demo size.
VISITORS = {"small": (300, 200), "medium": (3_000, 2_000), "large": (10_000, 5_000)}


def _visit(
    rng: random.Random, anonymous_id: str, start: datetime, user_id: str | None
) -> list[dict[str, Any]]:
    at = start
    ids: dict[str, Any] = {"anonymousId": anonymous_id}
    if user_id is not None:
        ids["userId"] = user_id
    messages: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 4)):
        path, name = rng.choice(PAGES)
        at += timedelta(seconds=rng.randint(5, 120))
        messages.append(
            {"type": "page", "name": name, "properties": {"path": path}, "timestamp": at, **ids}
        )
    sku, product, price = rng.choice(PRODUCTS)
    at += timedelta(seconds=rng.randint(5, 60))
    messages.append(
        {
            "type": "track",
            "event": "Product Viewed",
            "properties": {"product_id": sku, "name": product, "price": price},
            "timestamp": at,
            **ids,
        }
    )
    if user_id is not None and rng.random() < 0.4:
        at += timedelta(seconds=rng.randint(30, 300))
        messages.append(
            {
                "type": "track",
                "event": "Order Completed",
                "properties": {"order_id": f"o-{rng.randrange(10**8)}", "revenue": price},
                "timestamp": at,
                **ids,
            }
        )
    return messages


def demo_messages(
    customers: list[tuple[int, str]], anonymous: int, seed: int, now: datetime
) -> list[dict[str, Any]]:
    """The shop's messages over the last 60 days: each customer browses anonymously, signs
    up (identify with e-mail and traits) and comes back a few times; other visitors only
    browse."""
    rng = random.Random(seed)
    messages: list[dict[str, Any]] = []
    for contact_id, email in customers:
        anonymous_id = f"demo-anon-{contact_id}"
        user_id = f"demo-customer-{contact_id}"
        start = now - timedelta(days=rng.uniform(10, 60))
        messages += _visit(rng, anonymous_id, start, None)
        signed_up = start + timedelta(minutes=rng.randint(5, 30))
        messages.append(
            {
                "type": "identify",
                "anonymousId": anonymous_id,
                "userId": user_id,
                "traits": {
                    "email": email,
                    "plan": rng.choice(["free", "standard", "premium"]),
                    "newsletter": rng.random() < 0.5,
                },
                "timestamp": signed_up,
            }
        )
        for _ in range(rng.randint(1, 4)):
            back = signed_up + timedelta(days=rng.uniform(0.5, 9))
            messages += _visit(rng, anonymous_id, back, user_id)
    for n in range(anonymous):
        start = now - timedelta(days=rng.uniform(0, 60))
        messages += _visit(rng, f"demo-visitor-{seed}-{n}", start, None)
    for message in messages:
        message["timestamp"] = message["timestamp"].astimezone(UTC).isoformat()
    return messages


def load_web_behaviour(
    db: Database,
    source_id: int,
    size: str,
    seed: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> int:
    """Send the demo shop's events through a collector on the embedded event store (with
    identity resolution) and link the CRM contacts into the graph; returns events stored."""
    customers_wanted, anonymous = VISITORS[size]
    with db.sessionmaker() as session:
        changed = contacts.contacts_changed_since(session, None, limit=customers_wanted * 3)
    customers = [(c.id, c.emails[0]) for c in changed if c.emails][:customers_wanted]
    messages = demo_messages(customers, anonymous, seed, utcnow())
    collector = Collector(
        open_event_store(db.settings, own_process=False),
        attribution=EventAttribution(db.sessionmaker),
    )
    stored = 0
    try:
        envelope = Envelope(source_id=source_id, received_at=utcnow())
        rows: list[EventRow] = []
        for done, message in enumerate(messages, start=1):
            row, _ = normalise(message, envelope, Limits())
            if row is not None:
                rows.append(row)
            if len(rows) >= 2000 or done == len(messages):
                stored += collector.write_sync(rows, []).stored
                rows = []
                if progress is not None:
                    progress("web", done, len(messages))
    finally:
        collector.close()
    with db.sessionmaker() as session:
        while profiles.link_changed_contacts(session, limit=5000):
            session.commit()
        session.commit()
    return stored
