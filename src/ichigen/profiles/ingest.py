"""Identity resolution on the ingest path: each group of events the collector is about to
store gets its persons resolved (one record-store transaction per group), and the traits of
``identify`` calls become profile traits."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ichigen.core.clock import utcnow
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.identity import service as identity
from ichigen.identity.normalise import DEFAULT_RULES, IdentityRules
from ichigen.identity.schemas import IdentitySource
from ichigen.profiles.service import TraitObservation, record_traits

#: Raw traits that may hold an identifier (checked before decoding them).
_MAY_IDENTIFY = re.compile(r'"(?:email|phone)"')

#: Traits that are identifiers as well: they link the event's ids to the address or number.
IDENTIFYING_TRAITS = (("email", "email"), ("phone", "phone"))


def _traits(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        traits = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return traits if isinstance(traits, dict) and traits else None


def message_identifiers(
    kind: str,
    user_id: str | None,
    anonymous_id: str | None,
    previous_id: str | None,
    traits: dict[str, Any] | None,
) -> list[tuple[str, str]]:
    """The identifiers one event carries, as (type, raw value): its user and anonymous ids,
    an alias's previous id (an anonymous id, as the SDKs send it), and the e-mail address
    and phone number among its traits."""
    pairs: list[tuple[str, str]] = []
    if user_id is not None:
        pairs.append(("user_id", user_id))
    if anonymous_id is not None:
        pairs.append(("anonymous_id", anonymous_id))
    if kind == "alias" and previous_id is not None:
        pairs.append(("anonymous_id", previous_id))
    if traits:
        for key, type_ in IDENTIFYING_TRAITS:
            value = traits.get(key)
            if isinstance(value, str) and value:
                pairs.append((type_, value))
    return pairs


def _micros(column: pa.ChunkedArray) -> identity.Times:
    """A timestamp column as microseconds since the epoch (a missing time counts as now)."""
    values = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    now = identity.micros(utcnow())
    return np.asarray(values.fill_null(now).to_numpy(), dtype=np.int64)


def attribution_for(database_url: str, settings: Settings) -> EventAttribution:
    """An ``EventAttribution`` on its own connection to the record store at
    ``database_url``, for the event store's process (see ``ProcessEventStore``)."""
    engine = create_db_engine(database_url, pool_size=2)
    return EventAttribution(Database(engine, settings).sessionmaker)


class EventAttribution:
    """The collector's ``Attribution``: resolves persons with a per-process memory of
    identifiers already seen, and records ``identify`` traits, in one transaction."""

    def __init__(
        self,
        sessionmaker: Callable[[], Session],
        rules: IdentityRules = DEFAULT_RULES,
        capacity: int = 1_000_000,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._rules = rules
        self.known = identity.KnownIdentifiers(capacity)
        #: The raw traits last recorded per person by this process, to skip exact repeats.
        self._recorded: dict[int, str] = {}

    def forget(self) -> None:
        """Drop the memory of identifiers (this process's unmerge; other processes notice
        theirs in the merge log within a second)."""
        self.known.forget()

    def _resolve(
        self,
        messages: list[list[tuple[str, str]]],
        source_of: Callable[[int], IdentitySource],
        traits_of: dict[int, dict[str, Any]],
        raw_traits: list[str | None],
        message_ids: list[str],
        times: dict[int, datetime],
        seen_at: identity.Times,
    ) -> list[int | None]:
        """One transaction: the persons, and the traits of the ``identify`` calls."""
        recorded: list[tuple[int, str]] = []
        with self._sessionmaker() as session:
            persons = identity.resolve_many(
                session, messages, source_of, self._rules, self.known, seen_at
            )
            observations: list[TraitObservation] = []
            for index, traits in traits_of.items():
                person, raw = persons[index], raw_traits[index]
                if person is None or raw is None or self._recorded.get(person) == raw:
                    continue  # the same traits again (SDKs repeat identify calls)
                recorded.append((person, raw))
                observations.append(
                    TraitObservation(
                        person_id=person,
                        traits=traits,
                        source_kind="event",
                        source_ref=message_ids[index],
                        observed_at=times[index],
                    )
                )
            record_traits(session, observations)
            session.commit()
        if len(self._recorded) + len(recorded) > self.known.capacity:
            self._recorded.clear()
        self._recorded.update(recorded)
        return persons

    def attribute(self, table: pa.Table) -> pa.Table:
        kinds = table.column("type").to_pylist()
        user_ids = table.column("user_id").to_pylist()
        anonymous_ids = table.column("anonymous_id").to_pylist()
        previous_ids = table.column("previous_id").to_pylist()
        raw_traits = table.column("traits").to_pylist()
        message_ids = table.column("message_id").to_pylist()
        messages: list[list[tuple[str, str]]] = []
        traits_of: dict[int, dict[str, Any]] = {}
        for index, kind in enumerate(kinds):
            raw = raw_traits[index]
            if raw is None and kind != "alias":  # most events: no traits, one or two ids
                user_id, anonymous_id = user_ids[index], anonymous_ids[index]
                if user_id is None:
                    messages.append([("anonymous_id", anonymous_id)])
                elif anonymous_id is None:
                    messages.append([("user_id", user_id)])
                else:
                    messages.append([("user_id", user_id), ("anonymous_id", anonymous_id)])
                continue
            traits = None
            if raw is not None and (kind == "identify" or _MAY_IDENTIFY.search(raw)):
                traits = _traits(raw)
                if traits is not None and kind == "identify":
                    traits_of[index] = traits
            messages.append(
                message_identifiers(
                    kind, user_ids[index], anonymous_ids[index], previous_ids[index], traits
                )
            )

        def source_of(index: int) -> IdentitySource:
            return IdentitySource(kind="event", ref=message_ids[index])

        # Only the identify calls' times: making a datetime of every row's costs more than
        # everything else here.
        wanted = list(traits_of)
        times: dict[int, datetime] = (
            dict(zip(wanted, table.column("timestamp").take(wanted).to_pylist(), strict=True))
            if wanted
            else {}
        )
        # Every row's time as microseconds, without a datetime each: first and last seen.
        seen_at = _micros(table.column("timestamp"))
        for attempt in (1, 2):
            try:
                persons = self._resolve(
                    messages, source_of, traits_of, raw_traits, message_ids, times, seen_at
                )
                break
            except Exception as exc:
                # What the memory learnt in the rolled-back transaction is not true.
                self.known.forget()
                self._recorded.clear()
                # Another process inserted one of the same new identifiers meanwhile: the
                # second try finds it.
                if attempt == 2 or not isinstance(exc, IntegrityError):
                    raise
        column = pa.array([None if p is None else str(p) for p in persons], type=pa.string())
        return table.set_column(table.schema.get_field_index("person_id"), "person_id", column)
