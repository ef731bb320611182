"""The batch rebuild: on a graph kept by ``resolve`` and ``unmerge`` it changes nothing; on a
corrupted one it puts each connected component of the active edges back on one person; on
random message sequences it finds the same partition as incremental resolution."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.identity import service
from ichigen.identity.models import IdentityEdge, IdentityIdentifier, MergeLogEntry, Person
from ichigen.identity.normalise import IdentityRules
from ichigen.identity.rebuild import SOURCE_KIND, plan_graph, rebuild_graph
from ichigen.identity.schemas import IdentitySource

RULES = IdentityRules(max_per_type={"user_id": 1, "anonymous_id": 3})
REP = Actor.system("support-lead")
Partition = set[frozenset[int]]


def event(ref: str) -> IdentitySource:
    return IdentitySource(kind="event", ref=ref)


def stored_partition(session: Session) -> Partition:
    """The identifier ids each person holds, as stored."""
    groups: dict[int, set[int]] = defaultdict(set)
    for ident_id, person_id in session.execute(
        select(IdentityIdentifier.id, IdentityIdentifier.person_id)
    ):
        groups[person_id].add(ident_id)
    return {frozenset(g) for g in groups.values()}


def edge_components(session: Session) -> Partition:
    """The connected components of the active edges, by a plain union-find (the reference)."""
    parent = {i: i for i in session.scalars(select(IdentityIdentifier.id))}

    def root(n: int) -> int:
        while parent[n] != n:
            n = parent[n]
        return n

    for left, right in session.execute(
        select(IdentityEdge.left_id, IdentityEdge.right_id).where(IdentityEdge.removed_at.is_(None))
    ):
        parent[root(left)] = root(right)
    groups: dict[int, set[int]] = defaultdict(set)
    for n in parent:
        groups[root(n)].add(n)
    return {frozenset(g) for g in groups.values()}


def check_invariants(session: Session) -> None:
    """Identifiers point to survivors, merged persons straight to survivors."""
    pointers = merge_pointers(session)
    holders = set(session.scalars(select(IdentityIdentifier.person_id)))
    assert all(pointers[p] is None for p in holders)
    assert all(t is None or pointers[t] is None for t in pointers.values())


def assignments(session: Session) -> dict[int, int]:
    """identifier id -> person id."""
    rows = session.execute(select(IdentityIdentifier.id, IdentityIdentifier.person_id))
    return {i: p for i, p in rows}


def merge_pointers(session: Session) -> dict[int, int | None]:
    """person id -> the person it was merged into."""
    return {p: m for p, m in session.execute(select(Person.id, Person.merged_into))}


def holder(session: Session, type_: str, value: str) -> int:
    found = service.person_of(session, type_, value, RULES)
    assert found is not None
    return found


def ident_id(session: Session, type_: str, value: str) -> int:
    return session.scalars(
        select(IdentityIdentifier.id).where(
            IdentityIdentifier.type == type_, IdentityIdentifier.value == value
        )
    ).one()


def rebuild_log(session: Session) -> list[tuple[str, int, int | None]]:
    rows = session.execute(
        select(MergeLogEntry.action, MergeLogEntry.person_id, MergeLogEntry.other_person_id)
        .where(MergeLogEntry.source_kind == SOURCE_KIND)
        .order_by(MergeLogEntry.id)
    )
    return [(a, p, o) for a, p, o in rows]


def identity_schema(session: Session) -> list[tuple[str, str | None, tuple[str | None, ...]]]:
    """The indexes and foreign keys of the persons and identifiers tables: name and columns."""
    inspector = inspect(session.connection())
    found: list[tuple[str, str | None, tuple[str | None, ...]]] = []
    for table in ("identity_persons", "identity_identifiers"):
        found += [
            (table, i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)
        ]
        found += [
            (table, k["name"], (*k["constrained_columns"], k["referred_table"]))
            for k in inspector.get_foreign_keys(table)
        ]
    return sorted(found)


def memory_settings(session: Session) -> list[str]:
    """PostgreSQL's work_mem and maintenance_work_mem (nothing on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    return [
        session.execute(text(f"SELECT current_setting('{name}')")).scalar_one()
        for name in ("work_mem", "maintenance_work_mem")
    ]


def new_person(session: Session, created_at: datetime | None = None) -> int:
    when = created_at or datetime.now(UTC)
    return session.execute(
        insert(Person).values(created_at=when, first_seen=when, last_seen=when).returning(Person.id)
    ).scalar_one()


def _scripted_history(session: Session) -> None:
    """Merges, guardrail refusals, a split: everything resolve and unmerge do."""
    alice = service.resolve(
        session, [("anonymous_id", "a1"), ("user_id", "alice")], event("m1"), RULES
    ).person_id
    service.resolve(session, [("anonymous_id", "b1"), ("email", "bob@x.jp")], event("m2"), RULES)
    service.resolve(session, [("anonymous_id", "a2")], event("m3"), RULES)
    service.resolve(session, [("anonymous_id", "a2"), ("email", "alice@x.jp")], event("m4"), RULES)
    # Two persons merge (a2's into alice's).
    service.resolve(session, [("user_id", "alice"), ("anonymous_id", "a2")], event("m5"), RULES)
    # Refused: a second user_id.
    refused = service.resolve(
        session, [("user_id", "alice"), ("user_id", "al")], event("m6"), RULES
    )
    assert refused.rejected
    # A wrong merge through a shared e-mail, then undone.
    merged = service.resolve(
        session, [("user_id", "alice"), ("email", "bob@x.jp")], event("m7"), RULES
    )
    assert merged.merged_person_ids
    chain = service.explain(session, ("user_id", "alice"), ("email", "bob@x.jp"), RULES)
    assert chain is not None
    service.unmerge(session, alice, [chain[-1].id], REP)
    assert holder(session, "email", "bob@x.jp") != alice


def test_a_graph_kept_by_the_service_is_left_as_it_is(session: Session) -> None:
    _scripted_history(session)
    before = assignments(session)
    pointers = merge_pointers(session)
    log_count = session.scalar(select(func.count()).select_from(MergeLogEntry))

    result = rebuild_graph(session)

    assert result.identifiers == len(before)
    assert result.edges == session.scalar(
        select(func.count()).select_from(IdentityEdge).where(IdentityEdge.removed_at.is_(None))
    )
    assert result.components == len(stored_partition(session))
    assert result.persons_unchanged == result.components
    assert (result.identifiers_moved, result.persons_merged, result.persons_created) == (0, 0, 0)
    assert result.rows_written == 0
    assert set(result.seconds) == {"read", "components", "ages", "plan", "write"}
    assert assignments(session) == before
    assert merge_pointers(session) == pointers
    assert session.scalar(select(func.count()).select_from(MergeLogEntry)) == log_count


def test_two_components_on_one_person_are_split(session: Session) -> None:
    alice = service.resolve(
        session, [("anonymous_id", "a1"), ("email", "alice@x.jp")], event("m1"), RULES
    ).person_id
    bob = service.resolve(
        session, [("anonymous_id", "b1"), ("email", "bob@x.jp")], event("m2"), RULES
    ).person_id
    # Corrupt: Bob's identifiers written onto Alice.
    session.execute(
        update(IdentityIdentifier)
        .where(IdentityIdentifier.person_id == bob)
        .values(person_id=alice)
    )

    dry = rebuild_graph(session, dry_run=True)
    assert (dry.persons_split, dry.persons_created, dry.identifiers_moved) == (1, 1, 2)
    assert holder(session, "email", "bob@x.jp") == alice  # nothing written

    result = rebuild_graph(session)
    assert (result.persons_split, result.persons_created, result.identifiers_moved) == (1, 1, 2)
    assert result.persons_merged == 0
    # Alice's oldest identifier is in her own component: she keeps her id.
    assert holder(session, "email", "alice@x.jp") == alice
    split = holder(session, "email", "bob@x.jp")
    assert split not in (alice, bob)
    assert holder(session, "anonymous_id", "b1") == split
    assert rebuild_log(session) == [("unmerged", alice, split)]
    created = session.get(Person, split)
    assert created is not None and created.merged_into is None
    first = session.scalar(
        select(func.min(IdentityIdentifier.created_at)).where(IdentityIdentifier.person_id == split)
    )
    assert created.first_seen == first
    assert stored_partition(session) == edge_components(session)
    check_invariants(session)
    assert rebuild_graph(session).rows_written == 0


def test_one_component_on_two_persons_is_merged_into_the_oldest(session: Session) -> None:
    alice = service.resolve(
        session,
        [("anonymous_id", "a1"), ("email", "alice@x.jp"), ("user_id", "alice")],
        event("m1"),
        RULES,
    ).person_id
    older = new_person(session, datetime(2020, 1, 1, tzinfo=UTC))
    younger = new_person(session)
    # Corrupt: one of Alice's identifiers on a person older than hers, and a merged person
    # pointing to a person that pointed on (a chain).
    session.execute(
        update(IdentityIdentifier)
        .where(IdentityIdentifier.value == "alice@x.jp")
        .values(person_id=older)
    )
    session.execute(update(Person).where(Person.id == younger).values(merged_into=alice))
    stray = new_person(session)
    session.execute(update(Person).where(Person.id == stray).values(merged_into=younger))
    schema_before = identity_schema(session)
    memory_before = memory_settings(session)

    result = rebuild_graph(session)

    # Pointers of most persons changed: on PostgreSQL the index and the foreign key on
    # merged_into were dropped and built again, and the memory settings put back.
    assert result.pointers_changed == 3
    assert identity_schema(session) == schema_before
    assert any(name == "ix_identity_persons_merged_into" for _, name, _ in schema_before)
    assert memory_settings(session) == memory_before
    assert result.persons_merged == 1
    assert (result.persons_created, result.persons_split) == (0, 0)
    for type_, value in [("anonymous_id", "a1"), ("email", "alice@x.jp"), ("user_id", "alice")]:
        assert holder(session, type_, value) == older
    pointers = merge_pointers(session)
    assert pointers[alice] == older
    assert pointers[younger] == older and pointers[stray] == older
    assert pointers[older] is None
    survivor = session.get(Person, older)
    assert survivor is not None and survivor.first_seen.year == 2020
    assert ("merged", older, alice) in rebuild_log(session)
    check_invariants(session)
    assert rebuild_graph(session).rows_written == 0


def test_identifiers_on_a_merged_person_go_to_its_survivor(session: Session) -> None:
    alice = service.resolve(
        session, [("anonymous_id", "a1"), ("email", "alice@x.jp")], event("m1"), RULES
    ).person_id
    service.resolve(session, [("anonymous_id", "a2")], event("m2"), RULES)
    merged = service.resolve(
        session, [("anonymous_id", "a2"), ("email", "alice@x.jp")], event("m3"), RULES
    )
    (gone,) = merged.merged_person_ids
    anon = ident_id(session, "anonymous_id", "a2")
    session.execute(
        update(IdentityIdentifier).where(IdentityIdentifier.id == anon).values(person_id=gone)
    )

    result = rebuild_graph(session)

    assert (result.identifiers_moved, result.persons_merged, result.persons_created) == (1, 0, 0)
    assert session.get(IdentityIdentifier, anon).person_id == alice  # type: ignore[union-attr]
    assert rebuild_log(session) == [("split", alice, gone)]
    entry = session.scalars(
        select(MergeLogEntry).where(MergeLogEntry.source_kind == SOURCE_KIND)
    ).one()
    assert entry.details == {"identifiers": 1}


def test_a_person_split_across_components_and_a_merged_person_is_put_back(
    session: Session,
) -> None:
    alice = service.resolve(
        session, [("anonymous_id", "a1"), ("email", "alice@x.jp")], event("m1"), RULES
    ).person_id
    service.resolve(session, [("anonymous_id", "a2")], event("m2"), RULES)
    (gone,) = service.resolve(
        session, [("anonymous_id", "a2"), ("email", "alice@x.jp")], event("m3"), RULES
    ).merged_person_ids
    bob = service.resolve(
        session, [("anonymous_id", "b1"), ("email", "bob@x.jp")], event("m4"), RULES
    ).person_id
    # Corrupt: one of Alice's identifiers back on the person merged into her, and one of
    # Bob's on Alice (so Alice's identifiers span two components).
    session.execute(
        update(IdentityIdentifier)
        .where(IdentityIdentifier.id == ident_id(session, "anonymous_id", "a2"))
        .values(person_id=gone)
    )
    session.execute(
        update(IdentityIdentifier)
        .where(IdentityIdentifier.id == ident_id(session, "anonymous_id", "b1"))
        .values(person_id=alice)
    )

    result = rebuild_graph(session)

    assert (result.identifiers_moved, result.persons_merged, result.persons_created) == (2, 0, 0)
    for type_, value in [("anonymous_id", "a1"), ("anonymous_id", "a2"), ("email", "alice@x.jp")]:
        assert holder(session, type_, value) == alice
    assert holder(session, "anonymous_id", "b1") == bob
    assert assignments(session)[ident_id(session, "anonymous_id", "a2")] == alice
    assert sorted(rebuild_log(session)) == [("split", alice, gone), ("split", bob, alice)]
    check_invariants(session)
    assert rebuild_graph(session).rows_written == 0


@pytest.mark.parametrize("other_reader", [False, True], ids=["alone", "other_reader"])
def test_a_scrambled_graph_is_repaired_to_its_components(
    session: Session, other_reader: bool
) -> None:
    postgres = session.get_bind().dialect.name == "postgresql"
    if other_reader and not postgres:
        pytest.skip("only PostgreSQL locks the tables against readers to drop an index")
    _scripted_history(session)
    for n in range(12):
        service.resolve(
            session,
            [("anonymous_id", f"x{n}"), ("email", f"x{n // 3}@x.jp")],
            event(f"x{n}"),
            RULES,
        )
    expected = stored_partition(session)
    assert expected == edge_components(session)
    survivors = sorted(set(session.scalars(select(IdentityIdentifier.person_id))))
    ids = sorted(session.scalars(select(IdentityIdentifier.id)))
    # Corrupt: every identifier on a survivor chosen by a fixed shuffle.
    session.execute(
        update(IdentityIdentifier),
        [{"id": i, "person_id": survivors[(i * 7) % len(survivors)]} for i in ids],
    )
    assert stored_partition(session) != expected
    first, _ = plan_graph(session)
    second, _ = plan_graph(session)
    assert first.same_as(second)
    schema_before = identity_schema(session)
    memory_before = memory_settings(session)
    with contextlib.ExitStack() as stack:
        if other_reader:
            # A session in the middle of a transaction that read the identifiers: the
            # rebuild cannot lock them to drop an index, and updates row by row instead (a
            # rebuild that waited for the lock would fail on the statement timeout).
            session.execute(text("SET LOCAL statement_timeout = '30s'"))
            reader = stack.enter_context(session.get_bind().connect())
            reader.execute(select(IdentityIdentifier.id).limit(1)).all()

        result = rebuild_graph(session)

        if other_reader:
            assert reader.execute(select(func.count()).select_from(Person)).scalar_one() == 0

    # Enough moves that the person_id index (and on PostgreSQL its foreign key) is dropped
    # and built again.
    assert result.identifiers_moved >= result.identifiers / 5
    assert identity_schema(session) == schema_before
    assert any(name == "ix_identity_identifiers_person_id" for _, name, _ in schema_before)
    assert memory_settings(session) == memory_before
    assert stored_partition(session) == expected
    check_invariants(session)
    again = rebuild_graph(session)
    assert again.rows_written == 0 and again.persons_unchanged == again.components


# -- Property: incremental resolution and the batch rebuild agree ---------------------------

ANONYMOUS = [("anonymous_id", f"a{n}") for n in range(6)]
USERS = [("user_id", f"u{n}") for n in range(3)]
EMAILS = [("email", f"e{n}@x.jp") for n in range(4)]
IDENTIFIER = st.sampled_from(ANONYMOUS + USERS + EMAILS)
STEP = st.one_of(
    st.lists(IDENTIFIER, min_size=1, max_size=3, unique=True),
    st.integers(min_value=0, max_value=1000),  # an unmerge, choosing by this number
)


def _unmerge_some(session: Session, choice: int) -> None:
    survivors = sorted(
        set(session.scalars(select(Person.merged_into).where(Person.merged_into.is_not(None))))
    )
    if not survivors:
        return
    person = survivors[choice % len(survivors)]
    edges = sorted(
        session.scalars(
            select(IdentityEdge.id)
            .join(IdentityIdentifier, IdentityIdentifier.id == IdentityEdge.left_id)
            .where(IdentityIdentifier.person_id == person, IdentityEdge.removed_at.is_(None))
        )
    )
    if edges:
        service.unmerge(session, person, [edges[choice % len(edges)]], REP)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(STEP, min_size=1, max_size=14), scramble=st.sampled_from(["fresh", "shuffle"])
)
def test_rebuild_agrees_with_incremental_resolution(
    db: Database, steps: list[list[tuple[str, str]] | int], scramble: str
) -> None:
    session = db.sessionmaker()
    try:
        for index, step in enumerate(steps):
            if isinstance(step, int):
                _unmerge_some(session, step)
            else:
                service.resolve(session, step, event(f"s{index}"), RULES)
        incremental = stored_partition(session)
        assert incremental == edge_components(session)
        unchanged = rebuild_graph(session, dry_run=True)
        assert unchanged.rows_written == 0

        ids = sorted(session.scalars(select(IdentityIdentifier.id)))
        if scramble == "fresh":
            # Every identifier on a person of its own: the rebuild must merge them back.
            targets = [new_person(session) for _ in ids]
        else:
            holders = sorted(set(session.scalars(select(IdentityIdentifier.person_id))))
            targets = [holders[(i * 5 + 3) % len(holders)] for i in ids]
        session.execute(
            update(IdentityIdentifier),
            [{"id": i, "person_id": t} for i, t in zip(ids, targets, strict=True)],
        )
        first, _ = plan_graph(session)
        second, _ = plan_graph(session)
        assert first.same_as(second)

        result = rebuild_graph(session)

        assert stored_partition(session) == incremental
        assert result.components == len(incremental)
        check_invariants(session)
        assert rebuild_graph(session).rows_written == 0
        if scramble == "fresh" and result.persons_merged:
            assert {a for a, _, _ in rebuild_log(session)} >= {"merged"}
    finally:
        session.rollback()
        session.close()


@pytest.mark.parametrize("dry_run", [True, False])
def test_an_empty_graph(session: Session, dry_run: bool) -> None:
    result = rebuild_graph(session, dry_run=dry_run)
    assert (result.identifiers, result.edges, result.components, result.rows_written) == (
        0,
        0,
        0,
        0,
    )


def test_large_sparse_ids_take_the_general_paths(session: Session) -> None:
    """Ids past 31 bits and far apart: no packed reads, no tables indexed by id."""
    when = datetime(2024, 5, 1, tzinfo=UTC)
    base = 5_000_000_000
    persons = [base + 1_000_000 * n for n in range(3)]
    session.execute(
        insert(Person),
        [{"id": p, "created_at": when, "first_seen": when, "last_seen": when} for p in persons],
    )
    ids = [base * 2 + 7_000_000 * n for n in range(6)]
    # Two components, {0, 1, 2} and {3, 4, 5}, written onto three persons the wrong way.
    owners = [persons[0], persons[1], persons[0], persons[2], persons[2], persons[0]]
    session.execute(
        insert(IdentityIdentifier),
        [
            {
                "id": i,
                "type": "anonymous_id",
                "value": f"big-{n}",
                "person_id": o,
                "created_at": when,
            }
            for n, (i, o) in enumerate(zip(ids, owners, strict=True))
        ],
    )
    session.execute(
        insert(IdentityEdge),
        [
            {"left_id": ids[a], "right_id": ids[b], "source_kind": "event", "created_at": when}
            for a, b in [(0, 1), (1, 2), (3, 4), (4, 5)]
        ],
    )

    result = rebuild_graph(session)

    assert result.components == 2
    assert stored_partition(session) == {frozenset(ids[:3]), frozenset(ids[3:])}
    # persons[0] holds the oldest identifier of the first component and the oldest person
    # there; persons[2] is the only claimant of the second.
    assert {assignments(session)[i] for i in ids[:3]} == {persons[0]}
    assert {assignments(session)[i] for i in ids[3:]} == {persons[2]}
    assert merge_pointers(session)[persons[1]] == persons[0]
    check_invariants(session)
    assert rebuild_graph(session).rows_written == 0
