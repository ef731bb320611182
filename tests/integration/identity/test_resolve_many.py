"""Resolving a batch of messages at once gives the same graph as resolving them one by one,
and a remembered identifier answers without the record store."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ichigen.core.audit import Actor
from ichigen.core.db import Database, create_db_engine
from ichigen.core.errors import ValidationFailed
from ichigen.core.settings import Settings
from ichigen.identity import service
from ichigen.identity.models import IdentityIdentifier, MergeLogEntry, Person
from ichigen.identity.normalise import IdentityRules, normalise_identifier
from ichigen.identity.schemas import IdentitySource

RULES = IdentityRules(max_per_type={"user_id": 1, "anonymous_id": 2})
POOL = (
    [("anonymous_id", f"anon-{n}") for n in range(40)]
    + [("user_id", f"user-{n}") for n in range(4)]
    + [("email", f"P{n}@X.jp") for n in range(5)]
    + [("user_id", "null"), ("email", "not an address"), ("anonymous_id", "ａｎｏｎ-1")]
)
Message = tuple[list[tuple[str, str]], IdentitySource]


def _messages(seed: int, count: int) -> list[Message]:
    rng = random.Random(seed)
    return [
        (rng.sample(POOL, rng.randint(1, 4)), IdentitySource(kind="event", ref=f"m{n}"))
        for n in range(count)
    ]


def _linkable(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    kept = []
    for type_, value in pairs:
        try:
            identifier = normalise_identifier(type_, value, RULES)
        except ValidationFailed:
            continue
        if identifier is not None:
            kept.append((type_, value))
    return kept


def _partition(session: Session) -> dict[tuple[str, str], frozenset[tuple[str, str]]]:
    members: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for type_, value, person_id in session.execute(
        select(IdentityIdentifier.type, IdentityIdentifier.value, IdentityIdentifier.person_id)
    ):
        members[person_id].add((type_, value))
    return {i: frozenset(group) for group in members.values() for i in group}


def _group_of(session: Session, person_id: int) -> frozenset[tuple[str, str]]:
    survivor = session.get(Person, person_id)
    assert survivor is not None
    target = survivor.merged_into or survivor.id
    return frozenset(
        (t, v)
        for t, v in session.execute(
            select(IdentityIdentifier.type, IdentityIdentifier.value).where(
                IdentityIdentifier.person_id == target
            )
        )
    )


@pytest.fixture
def reference(tmp_path: Path, sqlite_template: Path) -> Session:
    path = tmp_path / "reference.db"
    shutil.copy(sqlite_template, path)
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789")
    database = Database(create_db_engine(f"sqlite:///{path}"), settings)
    return database.sessionmaker()


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_batches_give_the_graph_of_one_by_one(
    session: Session, reference: Session, seed: int
) -> None:
    messages = _messages(seed, 90)
    rng = random.Random(seed)
    known = service.KnownIdentifiers()
    at = 0
    while at < len(messages):
        batch = messages[at : at + rng.randint(1, 25)]
        sources = [source for _, source in batch]
        persons = service.resolve_many(
            session, [m for m, _ in batch], sources.__getitem__, RULES, known
        )
        session.commit()
        expected: list[int | None] = []
        for pairs, source in batch:
            linkable = _linkable(pairs)
            expected.append(
                service.resolve(reference, linkable, source, RULES).person_id if linkable else None
            )
            reference.commit()
        # Each message's person, as the graph stands after the batch, is the one-by-one one.
        for person, wanted in zip(persons, expected, strict=True):
            if wanted is None:
                assert person is None
            else:
                assert person is not None
                assert _group_of(session, person) == _group_of(reference, wanted)
        at += len(batch)
        assert _partition(session) == _partition(reference)
    refused = select(MergeLogEntry.reason).where(MergeLogEntry.action == "rejected")
    assert sorted(session.scalars(refused)) == sorted(reference.scalars(refused))
    reference.close()


def test_remembered_identifiers_need_no_query(db: Database) -> None:
    known = service.KnownIdentifiers()
    first = [
        ([("anonymous_id", "a-1")], IdentitySource(kind="event", ref="1")),
        ([("anonymous_id", "a-2"), ("user_id", "u-2")], IdentitySource(kind="event", ref="2")),
        ([("anonymous_id", "a-1")], IdentitySource(kind="event", ref="3")),
    ]
    with db.sessionmaker() as session:
        persons = service.resolve_many(
            session, [m for m, _ in first], lambda i: first[i][1], RULES, known
        )
        session.commit()
    assert persons[0] == persons[2] and persons[0] != persons[1]
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    engine: Engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        with db.sessionmaker() as session:
            again = service.resolve_many(
                session, [m for m, _ in first[:2]], lambda i: first[i][1], RULES, known
            )
            session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert again == persons[:2]
    # The split check and the last-seen update only: no identifier look-up.
    assert not any("identity_identifiers" in s for s in statements)


def test_an_unmerge_makes_remembered_identifiers_forgotten(session: Session) -> None:
    known = service.KnownIdentifiers(split_check_seconds=0)
    source = IdentitySource(kind="event", ref="x")

    def same(_: int) -> IdentitySource:
        return source

    service.resolve_many(session, [[("anonymous_id", "a-1")]], same, RULES, known)
    service.resolve_many(session, [[("anonymous_id", "a-2")]], same, RULES, known)
    (joined,) = service.resolve_many(
        session, [[("anonymous_id", "a-1"), ("anonymous_id", "a-2")]], same, RULES, known
    )
    session.commit()
    assert joined is not None
    edges = service.explain(session, ("anonymous_id", "a-1"), ("anonymous_id", "a-2"), RULES)
    assert edges
    result = service.unmerge(session, joined, [edges[0].id], Actor.system("test"))
    session.commit()
    (split_off,) = result.new_person_ids
    (after,) = service.resolve_many(session, [[("anonymous_id", "a-2")]], same, RULES, known)
    assert after == split_off
