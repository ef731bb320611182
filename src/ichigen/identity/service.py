"""The identity graph's rules: resolve a message's identifiers to one person, explain a link,
and undo a wrong merge.

Invariants the functions keep:

- every identifier points to a survivor (a person with no ``merged_into``), and a merged
  person points straight to its survivor (chains are one step long);
- the identifiers of one survivor are exactly one connected component of the active edges;
  a link the rules refuse gets no edge and a ``rejected`` row in the merge log instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, bindparam, case, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from ichigen.collect.store import EventStore
from ichigen.core.audit import Actor, record_change
from ichigen.core.clock import utcnow
from ichigen.core.db import UTCDateTime, session_settings
from ichigen.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from ichigen.core.query import ListField, Sort, decode_cursor, encode_cursor
from ichigen.core.schemas import MAX_RECORD_ID, Page
from ichigen.identity.models import IdentityEdge, IdentityIdentifier, MergeLogEntry, Person
from ichigen.identity.normalise import (
    DEFAULT_RULES,
    Identifier,
    IdentityRules,
    normalise_identifier,
    normalise_identifiers,
)
from ichigen.identity.schemas import (
    EdgeRead,
    IdentifierRead,
    IdentitySource,
    MergedPerson,
    MergeLogRead,
    MergeRejection,
    PersonRead,
    ResolveResult,
    UnmergeResult,
    storable_text,
)

logger = logging.getLogger(__name__)


class _Holdings:
    """The identifier values per type that one person (or a group being merged) holds."""

    def __init__(self) -> None:
        self.values: dict[str, set[str]] = defaultdict(set)

    def add(self, identifier: Identifier) -> None:
        self.values[identifier.type].add(identifier.value)

    def refusal(self, other: _Holdings, rules: IdentityRules) -> str | None:
        """Why the two may not become one person, or None when they may."""
        mine, theirs = self.values.get("user_id", set()), other.values.get("user_id", set())
        if mine and theirs and mine != theirs:
            return "different user_id: profiles with different user_ids never merge automatically"
        for type_, values in other.values.items():
            cap = rules.max_count(type_)
            if len(self.values.get(type_, set()) | values) > cap:
                return f"max count: a profile holds at most {cap} {type_} identifier(s)"
        return None

    def size(self) -> int:
        return sum(len(values) for values in self.values.values())

    def absorb(self, other: _Holdings) -> None:
        for type_, values in other.values.items():
            self.values[type_] |= values


def _lookup(
    session: Session, identifiers: Sequence[Identifier]
) -> dict[Identifier, tuple[int, int]]:
    """The stored identifiers among these: identifier -> (identifier id, survivor person id)."""
    return _lookup_values(session, identifiers)


def _merge_counts(session: Session, person_ids: Sequence[int]) -> dict[int, int]:
    """How many persons each of these survivors has absorbed."""
    rows = session.execute(
        select(Person.merged_into, func.count())
        .where(Person.merged_into.in_(person_ids))
        .group_by(Person.merged_into)
    )
    return {int(p): int(n) for p, n in rows if p is not None}


def _separated(session: Session, person_ids: Sequence[int]) -> set[frozenset[int]]:
    """The pairs of these persons that an unmerge split apart (a removed edge joins them)."""
    left, right = aliased(IdentityIdentifier), aliased(IdentityIdentifier)
    rows = session.execute(
        select(left.person_id, right.person_id)
        .select_from(IdentityEdge)
        .join(left, left.id == IdentityEdge.left_id)
        .join(right, right.id == IdentityEdge.right_id)
        .where(
            IdentityEdge.removed_at.is_not(None),
            left.person_id.in_(person_ids),
            right.person_id.in_(person_ids),
            left.person_id != right.person_id,
        )
    )
    return {frozenset((int(a), int(b))) for a, b in rows}


def _new_person(session: Session, now: datetime, seen: datetime | None = None) -> int:
    seen = seen or now
    return int(
        session.execute(
            insert(Person)
            .values(created_at=now, first_seen=seen, last_seen=seen)
            .returning(Person.id)
        ).scalar_one()
    )


def _seen_values(first: datetime, last: datetime) -> dict[str, Any]:
    """``first_seen`` and ``last_seen`` moved outwards to include ``first`` and ``last``
    (never inwards: a late event from an import does not make a person seen earlier)."""
    lo, hi = literal(first, UTCDateTime()), literal(last, UTCDateTime())
    return {
        "first_seen": case((Person.first_seen > lo, lo), else_=Person.first_seen),
        "last_seen": case((Person.last_seen < hi, hi), else_=Person.last_seen),
    }


def _log(
    session: Session,
    rows: list[dict[str, Any]],
) -> None:
    if rows:
        session.execute(insert(MergeLogEntry), rows)


def resolve(
    session: Session,
    identifiers: Sequence[tuple[str, str]],
    source: IdentitySource,
    rules: IdentityRules = DEFAULT_RULES,
    seen: datetime | None = None,
) -> ResolveResult:
    """Link the identifiers of one message or record and return the person they belong to.

    Unknown identifiers join the known person (or a new anonymous person when none is
    known). Identifiers of different persons merge them into the oldest one, whose id
    survives, unless a guardrail refuses: two different ``user_id`` values, or more
    identifiers of one type than ``rules`` allow. A refused merge or link is written to the
    merge log with its reason; a refused new identifier becomes a person of its own. Blocked
    values are dropped and listed. Malformed identifiers raise ``ValidationFailed`` and
    change nothing. ``seen`` is when the message happened (default now): a new person's
    first and last seen, and the person's last seen unless it was seen later already.
    """
    wanted, blocked = normalise_identifiers(identifiers, rules)
    if not wanted:
        raise ValidationFailed(
            "No identifier that can link: every value given is blocked or missing.",
            [FieldError(("identifiers",), "no identifier with a usable value")],
        )
    now = utcnow()
    seen = seen or now
    known = _lookup(session, wanted)
    involved = sorted({person for _, person in known.values()})
    if len(known) == len(wanted) and len(involved) == 1:
        # Everything is known and already one person (most events): nothing to link.
        session.execute(
            update(Person).where(Person.id == involved[0]).values(**_seen_values(seen, seen))
        )
        return ResolveResult(
            person_id=involved[0], created=False, merged_person_ids=[], rejected=[], blocked=blocked
        )
    persons = {
        row.id: row
        for row in session.execute(
            select(Person.id, Person.created_at, Person.first_seen).where(Person.id.in_(involved))
        )
    }
    # The persons named by stronger identifiers are considered first, the oldest first
    # among equals; the oldest person accepted survives.
    strength = {
        p: max(rules.priority_of(i.type) for i in wanted if i in known and known[i][1] == p)
        for p in involved
    }
    order = sorted(involved, key=lambda p: (-strength[p], persons[p].created_at, p))
    holdings: dict[int, _Holdings] = {p: _Holdings() for p in order}
    if order:
        for type_, value, person_id in session.execute(
            select(
                IdentityIdentifier.type, IdentityIdentifier.value, IdentityIdentifier.person_id
            ).where(IdentityIdentifier.person_id.in_(order))
        ):
            holdings[person_id].add(Identifier(type_, value))
    merges: dict[int, int] = {}
    separated: set[frozenset[int]] = set()
    if len(order) > 1:
        merges = _merge_counts(session, order)
        if source.kind != "manual":  # a person's own decision overrides an earlier unmerge
            separated = _separated(session, order)

    # Which persons merge, and which the rules keep apart.
    group = _Holdings()
    accepted: list[int] = []
    refused: dict[int, str] = {}
    merged_count = 0
    for person_id in order:
        reason = group.refusal(holdings[person_id], rules) if accepted else None
        if reason is None and accepted:
            if any(frozenset((person_id, a)) in separated for a in accepted):
                reason = "kept apart: an unmerge separated these profiles"
            elif merged_count + merges.get(person_id, 0) + 1 > rules.max_merges:
                reason = f"max merges: a profile absorbs at most {rules.max_merges} others"
        if reason is None:
            merged_count += merges.get(person_id, 0) + (1 if accepted else 0)
            group.absorb(holdings[person_id])
            accepted.append(person_id)
        else:
            refused[person_id] = reason
    new_ok: list[Identifier] = []
    new_refused: list[tuple[Identifier, str]] = []
    fresh = [i for i in wanted if i not in known]
    for identifier in sorted(fresh, key=lambda i: -rules.priority_of(i.type)):
        single = _Holdings()
        single.add(identifier)
        reason = group.refusal(single, rules)
        if reason is None:
            group.absorb(single)
            new_ok.append(identifier)
        else:
            new_refused.append((identifier, reason))
    new_ok.sort(key=wanted.index)
    before = max((holdings[p].size() for p in accepted), default=0)
    alarm = before < rules.alarm_identifiers <= group.size()

    created = not accepted
    accepted.sort(key=lambda p: (persons[p].created_at, p))
    survivor = accepted[0] if accepted else _new_person(session, now, seen)
    merged = accepted[1:]
    if merged:
        session.execute(
            update(IdentityIdentifier)
            .where(IdentityIdentifier.person_id.in_(merged))
            .values(person_id=survivor)
        )
        session.execute(
            update(Person)
            .where(or_(Person.id.in_(merged), Person.merged_into.in_(merged)))
            .values(merged_into=survivor)
        )
    first_seen = min([persons[p].first_seen for p in accepted] + [seen])
    session.execute(
        update(Person).where(Person.id == survivor).values(**_seen_values(first_seen, seen))
    )

    # New identifiers: those accepted join the survivor, each refused one is a person alone.
    rows: list[dict[str, Any]] = [
        {"type": i.type, "value": i.value, "person_id": survivor, "created_at": now} for i in new_ok
    ]
    loners: dict[Identifier, int] = {}
    for identifier, _ in new_refused:
        loners[identifier] = _new_person(session, now, seen)
        rows.append(
            {
                "type": identifier.type,
                "value": identifier.value,
                "person_id": loners[identifier],
                "created_at": now,
            }
        )
    ids = {i: v[0] for i, v in known.items()}
    if rows:
        for ident_id, type_, value in session.execute(
            insert(IdentityIdentifier).returning(
                IdentityIdentifier.id, IdentityIdentifier.type, IdentityIdentifier.value
            ),
            rows,
        ):
            ids[Identifier(type_, value)] = ident_id

    # Edges: one from the message's first linked identifier to each part it joined (a
    # spanning tree); identifiers already of one person are not linked again.
    def part(identifier: Identifier) -> object:
        return known[identifier][1] if identifier in known else identifier

    linked = set(new_ok)
    joined = [i for i in wanted if (i in known and known[i][1] in accepted) or i in linked]
    edges: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []
    if joined:
        anchor = joined[0]
        seen_parts = {part(anchor)}
        for identifier in joined[1:]:
            if part(identifier) in seen_parts:
                continue
            seen_parts.add(part(identifier))
            edges.append(
                {
                    "left_id": ids[anchor],
                    "right_id": ids[identifier],
                    "source_kind": source.kind,
                    "source_ref": source.ref,
                    "created_at": now,
                }
            )
    if edges:
        session.execute(insert(IdentityEdge), edges)

    base = {"occurred_at": now, "source_kind": source.kind, "source_ref": source.ref}
    for person_id in merged:
        via = next(i for i in wanted if i in known and known[i][1] == person_id)
        log.append(
            {
                **base,
                "action": "merged",
                "person_id": survivor,
                "other_person_id": person_id,
                "reason": f"linked by {via.type} {via.value}",
                "details": {"identifier": {"type": via.type, "value": via.value}},
            }
        )
    rejected: list[MergeRejection] = []
    for person_id, reason in refused.items():
        via = next(i for i in wanted if i in known and known[i][1] == person_id)
        rejected.append(
            MergeRejection(
                person_id=survivor,
                other_person_id=person_id,
                identifier=IdentifierRead(type=via.type, value=via.value),
                reason=reason,
            )
        )
    for identifier, reason in new_refused:
        rejected.append(
            MergeRejection(
                person_id=survivor,
                other_person_id=loners[identifier],
                identifier=IdentifierRead(type=identifier.type, value=identifier.value),
                reason=reason,
            )
        )
    if alarm:
        log.append(
            {
                **base,
                "action": "alarm",
                "person_id": survivor,
                "other_person_id": None,
                "reason": f"suspicious growth: the profile now holds {group.size()} identifiers",
                "details": {"identifiers": group.size(), "threshold": rules.alarm_identifiers},
            }
        )
        logger.warning(
            "identity: person %s now holds %s identifiers (a shared device?)",
            survivor,
            group.size(),
        )
    for rejection in rejected:
        log.append(
            {
                **base,
                "action": "rejected",
                "person_id": rejection.person_id,
                "other_person_id": rejection.other_person_id,
                "reason": rejection.reason,
                "details": {"identifier": rejection.identifier.model_dump()},
            }
        )
    _log(session, log)
    session.flush()
    return ResolveResult(
        person_id=survivor,
        created=created,
        merged_person_ids=merged,
        rejected=rejected,
        blocked=blocked,
    )


def person_of(
    session: Session, type_: str, value: str, rules: IdentityRules = DEFAULT_RULES
) -> int | None:
    """The surviving person id holding this identifier (given raw; it is normalised), or None
    when it is unknown or blocked."""
    identifier = normalise_identifier(type_, value, rules)
    if identifier is None:
        return None
    found = _lookup(session, [identifier]).get(identifier)
    return None if found is None else found[1]


def identifiers_of(session: Session, person_id: int) -> list[IdentifierRead]:
    """The identifiers a surviving person holds, by type and value."""
    rows = session.execute(
        select(IdentityIdentifier.type, IdentityIdentifier.value)
        .where(IdentityIdentifier.person_id == person_id)
        .order_by(IdentityIdentifier.type, IdentityIdentifier.value)
    )
    return [IdentifierRead(type=t, value=v) for t, v in rows]


def merge_log(session: Session, person_id: int) -> list[MergeLogRead]:
    """The merge-log entries about a person (as survivor or as the other side), oldest first."""
    stmt = (
        select(MergeLogEntry)
        .where(
            or_(MergeLogEntry.person_id == person_id, MergeLogEntry.other_person_id == person_id)
        )
        .order_by(MergeLogEntry.id)
    )
    return [MergeLogRead.model_validate(row) for row in session.scalars(stmt)]


def _edge_reads(session: Session, edge_ids: Sequence[int]) -> dict[int, EdgeRead]:
    left, right = aliased(IdentityIdentifier), aliased(IdentityIdentifier)
    rows = session.execute(
        select(IdentityEdge, left.type, left.value, right.type, right.value)
        .join(left, left.id == IdentityEdge.left_id)
        .join(right, right.id == IdentityEdge.right_id)
        .where(IdentityEdge.id.in_(edge_ids))
    )
    return {
        edge.id: EdgeRead(
            id=edge.id,
            left=IdentifierRead(type=lt, value=lv),
            right=IdentifierRead(type=rt, value=rv),
            source_kind=edge.source_kind,
            source_ref=edge.source_ref,
            created_at=edge.created_at,
            removed_at=edge.removed_at,
        )
        for edge, lt, lv, rt, rv in rows
    }


def _active_edges(session: Session, person_id: int) -> list[tuple[int, int, int]]:
    """(edge id, left identifier id, right identifier id) of a person's active edges."""
    members = select(IdentityIdentifier.id).where(IdentityIdentifier.person_id == person_id)
    rows = session.execute(
        select(IdentityEdge.id, IdentityEdge.left_id, IdentityEdge.right_id).where(
            IdentityEdge.removed_at.is_(None), IdentityEdge.left_id.in_(members)
        )
    )
    return [(e, a, b) for e, a, b in rows]


def explain(
    session: Session,
    a: tuple[str, str],
    b: tuple[str, str],
    rules: IdentityRules = DEFAULT_RULES,
) -> list[EdgeRead] | None:
    """The chain of active edges, from ``a`` to ``b``, that makes them one person (each with
    its source and time): empty when they are the same identifier, None when they are not
    one person (or either is unknown or blocked)."""
    first = normalise_identifier(a[0], a[1], rules, ("a",))
    second = normalise_identifier(b[0], b[1], rules, ("b",))
    if first is None or second is None:
        return None
    found = _lookup(session, [first, second])
    if first not in found or second not in found or found[first][1] != found[second][1]:
        return None
    start, goal = found[first][0], found[second][0]
    neighbours: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for edge_id, left, right in _active_edges(session, found[first][1]):
        neighbours[left].append((right, edge_id))
        neighbours[right].append((left, edge_id))
    came_from: dict[int, tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue and goal not in came_from:
        node = queue.popleft()
        for other, edge_id in neighbours[node]:
            if other not in came_from:
                came_from[other] = (node, edge_id)
                queue.append(other)
    if goal not in came_from:
        return None
    path: list[int] = []
    step = came_from[goal]
    while step is not None:
        path.append(step[1])
        step = came_from[step[0]]
    path.reverse()
    reads = _edge_reads(session, path)
    return [reads[edge_id] for edge_id in path]


def _components(nodes: Sequence[int], links: Sequence[tuple[int, int]]) -> list[list[int]]:
    parent = {n: n for n in nodes}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for left, right in links:
        parent[root(left)] = root(right)
    groups: dict[int, list[int]] = defaultdict(list)
    for n in nodes:
        groups[root(n)].append(n)
    return list(groups.values())


def unmerge(
    session: Session, person_id: int, edge_ids: Sequence[int], actor: Actor
) -> UnmergeResult:
    """Split a profile by removing chosen edges (marked removed, never deleted).

    The person's identifiers are regrouped by the edges that remain: the group holding its
    oldest identifier keeps the person id, each other group becomes a new person. The merge
    log and the audit log record it. A person that does not exist, was merged into another,
    or never absorbed another person, and edges that are not this person's active edges, are
    refused (4xx) and nothing changes.
    """
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"Person {person_id} does not exist.")
    if person.merged_into is not None:
        raise Conflict(
            f"Person {person_id} was merged into person {person.merged_into}; unmerge that one."
        )
    absorbed = session.scalar(select(Person.id).where(Person.merged_into == person_id).limit(1))
    if absorbed is None:
        raise Conflict(f"Person {person_id} was never merged with another person.")
    if not edge_ids:
        raise ValidationFailed(
            "Choose at least one edge to remove.", [FieldError(("edge_ids",), "is empty")]
        )
    active = {edge_id: (left, right) for edge_id, left, right in _active_edges(session, person_id)}
    errors = [
        FieldError(("edge_ids", index), f"edge {edge_id} is not an active edge of this person")
        for index, edge_id in enumerate(edge_ids)
        if edge_id not in active
    ]
    if errors:
        raise ValidationFailed(
            f"Cannot unmerge person {person_id}: " + "; ".join(e.msg for e in errors) + ".",
            errors,
        )
    removing = sorted(set(edge_ids))
    now = utcnow()
    session.execute(
        update(IdentityEdge)
        .where(IdentityEdge.id.in_(removing))
        .values(removed_at=now, removed_by=actor.label)
    )
    members = session.execute(
        select(IdentityIdentifier.id, IdentityIdentifier.created_at).where(
            IdentityIdentifier.person_id == person_id
        )
    ).all()
    age = {ident_id: (created_at, ident_id) for ident_id, created_at in members}
    remaining = [pair for edge_id, pair in active.items() if edge_id not in set(removing)]
    groups = _components(list(age), remaining)
    groups.sort(key=lambda g: min(age[i] for i in g))
    new_person_ids: list[int] = []
    log: list[dict[str, Any]] = []
    for group in groups[1:]:
        first_seen = min(age[i][0] for i in group)
        new_id = int(
            session.execute(
                insert(Person)
                .values(created_at=now, first_seen=first_seen, last_seen=person.last_seen)
                .returning(Person.id)
            ).scalar_one()
        )
        session.execute(
            update(IdentityIdentifier)
            .where(IdentityIdentifier.id.in_(group))
            .values(person_id=new_id)
        )
        new_person_ids.append(new_id)
        log.append(
            {
                "occurred_at": now,
                "action": "unmerged",
                "person_id": person_id,
                "other_person_id": new_id,
                "reason": f"edges {removing} removed by {actor.label}",
                "source_kind": "manual",
                "source_ref": None,
                "details": {"edge_ids": removing, "identifier_ids": sorted(group)},
            }
        )
    if not new_person_ids:
        log.append(
            {
                "occurred_at": now,
                "action": "unmerged",
                "person_id": person_id,
                "other_person_id": None,
                "reason": f"edges {removing} removed by {actor.label}; the profile stays whole",
                "source_kind": "manual",
                "source_ref": None,
                "details": {"edge_ids": removing, "identifier_ids": []},
            }
        )
    _log(session, log)
    record_change(
        session,
        actor,
        "person",
        person_id,
        "unmerge",
        {"removed_edge_ids": removing, "new_person_ids": new_person_ids},
    )
    session.flush()
    return UnmergeResult(
        person_id=person_id, removed_edge_ids=removing, new_person_ids=new_person_ids
    )


# -- Many messages at once: the ingest path -------------------------------------------------


class KnownIdentifiers:
    """A per-process memory of raw identifiers already resolved: ``(type, raw value)`` ->
    the person id they were last resolved to.

    Most events repeat identifiers seen moments before, so this answers them without the
    record store. An entry may name a person that was merged since (events keep the id they
    were resolved to; reads follow ``merged_into``); a message that joins two remembered
    persons goes to the record store. An unmerge or a rebuild can move identifiers to other
    persons, so ``resolve_many`` forgets everything when the merge log shows one.
    """

    def __init__(self, capacity: int = 1_000_000, split_check_seconds: float = 1.0) -> None:
        self.capacity = capacity
        #: How often the merge log is asked for a newer unmerge or rebuild (an unmerge
        #: reaches the ingest path within this long; asking every group cost a query each).
        self.split_check_seconds = split_check_seconds
        self._split_checked = -float("inf")
        self._persons: dict[tuple[str, str], int] = {}
        #: The id of the newest unmerge or rebuild entry of the merge log this memory saw.
        self.split_mark: int | None = None
        #: The first and last seen (microseconds) this process last wrote for each person.
        self._spans: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._persons)

    def get(self, key: tuple[str, str]) -> int | None:
        return self._persons.get(key)

    def remember(self, keys: Sequence[tuple[str, str]], person_id: int) -> None:
        if len(self._persons) + len(keys) > self.capacity:
            self._persons.clear()  # rare; the record store answers until it fills again
        for key in keys:
            self._persons[key] = person_id

    def forget(self) -> None:
        self._persons.clear()

    def split_check_due(self) -> bool:
        """Whether to look for a newer unmerge or rebuild now (always without a memory)."""
        now = time.monotonic()
        if not self.capacity or now - self._split_checked >= self.split_check_seconds:
            self._split_checked = now
            return True
        return False

    def due_for_touch(
        self, person_ids: Sequence[int], firsts: Sequence[int], lasts: Sequence[int]
    ) -> list[tuple[int, int, int]]:
        """``(person, first, last)`` for those of these persons (with the first and last
        time, in microseconds, their messages here happened) whose first or last seen this
        memory has not set that far: a message earlier than the first seen it wrote, or
        ``TOUCH_EVERY`` later than the last seen. They are taken as written."""
        if not self.capacity:
            return list(zip(person_ids, firsts, lasts, strict=True))
        spans = self._spans
        if len(spans) + len(person_ids) > self.capacity:
            spans.clear()
        due = []
        for person_id, first, last in zip(person_ids, firsts, lasts, strict=True):
            span = spans.get(person_id)
            if span is None:
                spans[person_id] = (first, last)
            elif first < span[0] or last >= span[1] + _TOUCH_US:
                spans[person_id] = (min(first, span[0]), max(last, span[1]))
            else:
                continue
            due.append((person_id, first, last))
        return due

    def written(self, person_id: int, first: int, last: int) -> None:
        """Note the first and last seen just written for a new person."""
        if self.capacity:
            self._spans[person_id] = (first, last)


#: How stale a person's last seen may be while its events keep arriving.
TOUCH_EVERY = timedelta(seconds=60)
_TOUCH_US = int(TOUCH_EVERY.total_seconds() * 1_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: When each message happened: microseconds since the epoch, UTC.
Times = npt.NDArray[np.int64]


def micros(moment: datetime) -> int:
    """A time as microseconds since the epoch (the unit of :data:`Times`)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


#: Merge-log actions after which remembered identifiers may name the wrong person.
SPLIT_ACTIONS = ("unmerged", "split", "purged")


def _newest_split(session: Session) -> int | None:
    found = session.scalar(
        select(func.max(MergeLogEntry.id)).where(MergeLogEntry.action.in_(SPLIT_ACTIONS))
    )
    return None if found is None else int(found)


def _lookup_values(
    session: Session, identifiers: Sequence[Identifier]
) -> dict[Identifier, tuple[int, int]]:
    """``_lookup`` for many identifiers: one ``IN`` query per type and chunk of values."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for identifier in identifiers:
        by_type[identifier.type].append(identifier.value)
    survivor = func.coalesce(Person.merged_into, Person.id)
    found: dict[Identifier, tuple[int, int]] = {}
    for type_, values in by_type.items():
        for start in range(0, len(values), _CHUNK):
            rows = session.execute(
                select(IdentityIdentifier.value, IdentityIdentifier.id, survivor)
                .join(Person, Person.id == IdentityIdentifier.person_id)
                .where(
                    IdentityIdentifier.type == type_,
                    IdentityIdentifier.value.in_(values[start : start + _CHUNK]),
                )
            )
            for value, ident_id, person_id in rows:
                found[Identifier(type_, value)] = (ident_id, person_id)
    return found


_CHUNK = 500


def _lenient(
    pairs: Sequence[tuple[str, str]],
    rules: IdentityRules,
    memo: dict[tuple[str, str], Identifier | None],
) -> list[Identifier]:
    """The distinct identifiers of a tracked message that can link; blocked and malformed
    values are left out (the event is stored all the same, it just links less)."""
    kept: list[Identifier] = []
    for pair in pairs:
        if pair in memo:
            identifier = memo[pair]
        else:
            try:
                identifier = normalise_identifier(pair[0], pair[1], rules)
            except ValidationFailed:
                identifier = None
            memo[pair] = identifier
        if identifier is not None and identifier not in kept:
            kept.append(identifier)
    return kept


def _fits(identifiers: Sequence[Identifier], rules: IdentityRules) -> bool:
    """Whether these identifiers may be one new person under the per-type caps."""
    counts: dict[str, int] = defaultdict(int)
    for identifier in identifiers:
        counts[identifier.type] += 1
    return all(count <= rules.max_count(type_) for type_, count in counts.items())


def resolve_many(
    session: Session,
    messages: Sequence[Sequence[tuple[str, str]]],
    source_of: Callable[[int], IdentitySource],
    rules: IdentityRules = DEFAULT_RULES,
    known: KnownIdentifiers | None = None,
    seen_at: Times | None = None,
) -> list[int | None]:
    """The person of each message (its raw identifier pairs), in order; ``source_of(i)``
    is where message ``i``'s links come from (asked only for messages that link).

    The same rules as ``resolve`` message by message, in fewer statements: identifiers
    remembered in ``known`` need no query, the others are looked up together, messages of
    new visitors become new persons in one insert, and only messages that link known
    persons or add identifiers to one go through ``resolve``. Malformed and blocked values
    are left out; a message with nothing that can link gets None. ``seen_at`` is when each
    message happened (default: now); persons' first and last seen follow it. The caller
    commits.
    """
    known = known if known is not None else KnownIdentifiers(0)
    if seen_at is None:
        seen_at = np.full(len(messages), micros(utcnow()), dtype=np.int64)
    if known.split_check_due():
        mark = _newest_split(session)
        if mark != known.split_mark:
            known.forget()
            known.split_mark = mark
    persons: list[int | None] = [None] * len(messages)
    pending: list[int] = []
    for index, pairs in enumerate(messages):
        person: int | None = None
        for pair in pairs:
            remembered = known.get(pair)
            if remembered is None or (person is not None and remembered != person):
                person = None
                break
            person = remembered
        if person is None:
            if pairs:
                pending.append(index)
        else:
            persons[index] = person
    if not pending:
        _touch(session, persons, known, seen_at)
        return persons

    memo: dict[tuple[str, str], Identifier | None] = {}
    wanted = {index: _lenient(messages[index], rules, memo) for index in pending}
    stored = _lookup_values(session, list({i for ids in wanted.values() for i in ids}))
    where: dict[Identifier, int] = {i: person for i, (_, person) in stored.items()}
    # New visitors' persons, created together: (identifiers, source) per new person.
    fresh: list[tuple[list[Identifier], IdentitySource]] = []
    fresh_of: dict[Identifier, int] = {}
    waiting: list[tuple[int, int]] = []  # (message index, fresh group) until they exist

    def create_fresh() -> None:
        if not fresh:
            return
        spans: list[tuple[int, int]] = [(0, 0)] * len(fresh)
        for index, group in waiting:
            at = int(seen_at[index])
            first, last = spans[group]
            spans[group] = (at, at) if first == last == 0 else (min(first, at), max(last, at))
        # Created now, not at the batch's start: ``resolve`` ranks persons by creation
        # time, and one it created earlier in this batch must rank before these.
        created = _create_persons(
            session, fresh, utcnow(), [(_moment(a), _moment(b)) for a, b in spans]
        )
        for person_id, (first, last) in zip(created, spans, strict=True):
            known.written(person_id, first, last)
        for group, person_id in enumerate(created):
            for identifier in fresh[group][0]:
                where[identifier] = person_id
        for index, group in waiting:
            persons[index] = created[group]
        fresh.clear()
        fresh_of.clear()
        waiting.clear()

    for index in pending:
        identifiers = wanted[index]
        if not identifiers:
            continue
        source = source_of(index)
        owners = {where.get(i) for i in identifiers}
        groups = {fresh_of.get(i) for i in identifiers}
        one_group = next(iter(groups)) if len(groups) == 1 else None
        if len(owners) == 1 and None not in owners:
            persons[index] = owners.pop()
        elif owners == {None} and one_group is not None:
            waiting.append((index, one_group))
            continue
        elif owners == {None} and groups == {None} and _fits(identifiers, rules):
            fresh_of.update((i, len(fresh)) for i in identifiers)
            waiting.append((index, len(fresh)))
            fresh.append((identifiers, source))
            continue
        else:
            create_fresh()
            result = resolve(
                session,
                [(i.type, i.value) for i in identifiers],
                source,
                rules,
                _moment(int(seen_at[index])),
            )
            persons[index] = result.person_id
            for i, (_, person_id) in _lookup(session, identifiers).items():
                where[i] = person_id
            if result.merged_person_ids:
                merged = set(result.merged_person_ids)
                for i, person_id in where.items():
                    if person_id in merged:
                        where[i] = result.person_id
    create_fresh()
    if known.capacity:
        for index in pending:
            person = persons[index]
            if person is not None and all(where.get(i) == person for i in wanted[index]):
                # Only pairs that link: a blocked value must never answer for a person.
                known.remember([p for p in messages[index] if memo.get(p)], person)
    _touch(session, persons, known, seen_at)
    return persons


def _create_persons(
    session: Session,
    groups: Sequence[tuple[list[Identifier], IdentitySource]],
    now: datetime,
    seen: Sequence[tuple[datetime, datetime]],
) -> list[int]:
    """New persons, one per group of new identifiers (first and last seen from ``seen``),
    with their identifiers and the edges that join each group; their ids, in order."""
    person_ids = [
        int(p)
        for p in session.scalars(
            insert(Person).returning(Person.id, sort_by_parameter_order=True),
            [{"created_at": now, "first_seen": a, "last_seen": b} for a, b in seen],
        )
    ]
    rows = [
        {"type": i.type, "value": i.value, "person_id": person_id, "created_at": now}
        for (identifiers, _), person_id in zip(groups, person_ids, strict=True)
        for i in identifiers
    ]
    ident_ids = [
        int(i)
        for i in session.scalars(
            insert(IdentityIdentifier).returning(
                IdentityIdentifier.id, sort_by_parameter_order=True
            ),
            rows,
        )
    ]
    edges: list[dict[str, Any]] = []
    at = 0
    for identifiers, source in groups:
        first = ident_ids[at]
        for other in ident_ids[at + 1 : at + len(identifiers)]:
            edges.append(
                {
                    "left_id": first,
                    "right_id": other,
                    "source_kind": source.kind,
                    "source_ref": source.ref,
                    "created_at": now,
                }
            )
        at += len(identifiers)
    if edges:
        session.execute(insert(IdentityEdge), edges)
    return person_ids


def _touch_statement() -> Any:
    """One person's (or its survivor's) first and last seen moved out to ``lo`` and ``hi``."""
    persons = cast(Table, Person.__table__)
    other = persons.alias("merged")
    survivor = (
        select(func.coalesce(other.c.merged_into, other.c.id))
        .where(other.c.id == bindparam("pid"))
        .scalar_subquery()
    )
    lo, hi = bindparam("lo", type_=UTCDateTime()), bindparam("hi", type_=UTCDateTime())
    return (
        update(persons)
        .where(persons.c.id == survivor)
        .values(
            first_seen=case((persons.c.first_seen > lo, lo), else_=persons.c.first_seen),
            last_seen=case((persons.c.last_seen < hi, hi), else_=persons.c.last_seen),
        )
    )


_TOUCH = _touch_statement()


def _touch(
    session: Session,
    persons: Sequence[int | None],
    known: KnownIdentifiers | None,
    seen_at: Times,
) -> None:
    """Move the first and last seen of the surviving persons these messages resolved to
    out to the messages' times. Persons whose span ``known`` wrote already covers them (last
    seen within ``TOUCH_EVERY``) are left for a later batch: last seen is kept to that
    precision, not rewritten for every event."""
    ids = np.fromiter((-1 if p is None else p for p in persons), dtype=np.int64, count=len(persons))
    kept = ids >= 0
    if not kept.any():
        return
    order = np.argsort(ids[kept], kind="stable")
    by_person, times = ids[kept][order], seen_at[kept][order]
    starts = np.flatnonzero(np.r_[True, by_person[1:] != by_person[:-1]])
    person_ids = by_person[starts].tolist()
    firsts = np.minimum.reduceat(times, starts).tolist()
    lasts = np.maximum.reduceat(times, starts).tolist()
    if known is None:
        due = list(zip(person_ids, firsts, lasts, strict=True))
    else:
        due = known.due_for_touch(person_ids, firsts, lasts)
    if due:
        session.execute(
            _TOUCH,
            [{"pid": p, "lo": _moment(a), "hi": _moment(b)} for p, a, b in due],
        )


# -- Readers and committed units of work for the HTTP API ---------------------------------

#: Merge-log pages continue after the last entry's id (newest first).
MERGE_LOG_NEWEST_FIRST = Sort("id", ListField(MergeLogEntry.id, "int", nullable=False), True)


def resolve_and_commit(
    session: Session,
    identifiers: Sequence[tuple[str, str]],
    source: IdentitySource,
    rules: IdentityRules = DEFAULT_RULES,
) -> ResolveResult:
    """``resolve`` as a unit of work of its own: committed whole, or (on an error) nothing."""
    result = resolve(session, identifiers, source, rules)
    session.commit()
    return result


def unmerge_and_commit(
    session: Session, person_id: int, edge_ids: Sequence[int], actor: Actor
) -> UnmergeResult:
    """``unmerge`` as a unit of work of its own: committed whole, or (on an error) nothing."""
    result = unmerge(session, person_id, edge_ids, actor)
    session.commit()
    return result


def read_person(session: Session, person_id: int) -> PersonRead:
    """A person by id: a merged one is answered with its survivor, and ``merged`` says so."""
    person = session.get(Person, person_id)
    if person is None:
        raise NotFound(f"Person {person_id} does not exist.")
    merged: MergedPerson | None = None
    if person.merged_into is not None:
        merged_at = session.scalar(
            select(func.max(MergeLogEntry.occurred_at)).where(
                MergeLogEntry.action == "merged", MergeLogEntry.other_person_id == person_id
            )
        )
        merged = MergedPerson(
            person_id=person_id, merged_into=person.merged_into, merged_at=merged_at
        )
        survivor = session.get(Person, person.merged_into)
        if survivor is None:  # the foreign key makes this impossible
            raise NotFound(f"Person {person.merged_into} does not exist.")
        person = survivor
    return PersonRead(
        id=person.id,
        created_at=person.created_at,
        first_seen=person.first_seen,
        last_seen=person.last_seen,
        identifiers=identifiers_of(session, person.id),
        merged=merged,
    )


def find_person(
    session: Session,
    type_: str,
    value: str,
    rules: IdentityRules = DEFAULT_RULES,
    loc: tuple[str | int, ...] = ("identifier",),
) -> PersonRead:
    """The surviving person holding an identifier (given raw; it is normalised). A malformed
    identifier raises ``ValidationFailed`` at ``loc``; an unknown or blocked one ``NotFound``."""
    identifier = normalise_identifier(type_, value, rules, loc)
    found = None if identifier is None else _lookup(session, [identifier]).get(identifier)
    if found is None:
        raise NotFound(f"No person holds the {type_} '{value}'.")
    return read_person(session, found[1])


def merge_log_page(
    session: Session, person_id: int, *, cursor: str | None = None, limit: int = 50
) -> Page[MergeLogRead]:
    """The merge-log entries about a person (as survivor or other side), newest first; pass
    ``next_cursor`` back as ``cursor`` for the next page."""
    if session.get(Person, person_id) is None:
        raise NotFound(f"Person {person_id} does not exist.")
    secret = session_settings(session).secret_key
    stmt = select(MergeLogEntry).where(
        or_(MergeLogEntry.person_id == person_id, MergeLogEntry.other_person_id == person_id)
    )
    after = None if cursor is None else decode_cursor(secret, MERGE_LOG_NEWEST_FIRST, cursor)
    if after is not None:
        stmt = stmt.where(MergeLogEntry.id < after[1])
    rows = list(session.scalars(stmt.order_by(MergeLogEntry.id.desc()).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(secret, MERGE_LOG_NEWEST_FIRST, rows[-1].id, rows[-1].id)
    return Page[MergeLogRead](
        items=[MergeLogRead.model_validate(row) for row in rows], next_cursor=next_cursor
    )


def merged_person_ids(session: Session, person_id: int) -> list[int]:
    """The persons merged into this survivor (their events and traits are its own)."""
    return sorted(
        int(p) for p in session.scalars(select(Person.id).where(Person.merged_into == person_id))
    )


_PERSON_ID = re.compile(r"[0-9]{1,19}")


def person_by_reference(
    session: Session,
    ref: str,
    rules: IdentityRules = DEFAULT_RULES,
    loc: tuple[str | int, ...] = ("path", "ref"),
) -> PersonRead:
    """The person a reference names, as users write it: a person id (``1234``) or any
    identifier as ``type:value`` (normalised, so ``email:TARO@EXAMPLE.JP`` finds
    ``taro@example.jp``); a merged person is answered with its survivor. A malformed
    reference raises ``ValidationFailed`` at ``loc``, an unknown one ``NotFound``."""
    if _PERSON_ID.fullmatch(ref):
        person_id = int(ref)
        if not 1 <= person_id <= MAX_RECORD_ID:
            raise ValidationFailed(
                f"{ref} is not a person id.", [FieldError(loc, "id out of range")]
            )
        return read_person(session, person_id)
    type_, value = split_identifier(ref, loc)
    return find_person(session, type_, value, rules, loc)


def split_identifier(ref: str, loc: tuple[str | int, ...]) -> tuple[str, str]:
    """``type:value`` split at the first colon; ``ValidationFailed`` at ``loc`` when there is
    none (or the text could not be stored, so cannot be held by anyone)."""
    try:
        storable_text(ref)
    except ValueError as exc:
        raise ValidationFailed(
            f"Malformed identifier: {exc}.", [FieldError(loc, str(exc))]
        ) from None
    type_, colon, value = ref.partition(":")
    if not colon or not type_:
        raise ValidationFailed(
            f"'{ref}' is not an identifier: write it as type:value, e.g. email:taro@example.jp.",
            [FieldError(loc, "expected type:value")],
        )
    return type_, value


def reattribute_events(store: EventStore, session: Session, person_ids: Sequence[int]) -> int:
    """Write each of these persons' id on the stored events of its user and anonymous ids
    (after an unmerge moved identifiers to new persons). Reads find a person's events by
    its identifiers either way; this keeps the stored person id right for analysis."""
    changed = 0
    for person_id in person_ids:
        held = identifiers_of(session, person_id)
        changed += store.reassign_person(
            [i.value for i in held if i.type == "user_id"],
            [i.value for i in held if i.type == "anonymous_id"],
            str(person_id),
        )
    return changed
