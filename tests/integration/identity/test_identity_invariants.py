"""On random message sequences, the graph keeps its invariants: each person is exactly one
connected component of the active edges, merged persons point straight to a survivor, and
no survivor breaks a guardrail."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ichigen.core.audit import Actor
from ichigen.identity import service
from ichigen.identity.models import IdentityEdge, IdentityIdentifier, Person
from ichigen.identity.normalise import IdentityRules
from ichigen.identity.schemas import IdentitySource

RULES = IdentityRules(max_per_type={"user_id": 1, "anonymous_id": 3})
POOL = (
    [("anonymous_id", f"anon-{n}") for n in range(12)]
    + [("user_id", f"user-{n}") for n in range(4)]
    + [("email", f"p{n}@x.jp") for n in range(6)]
)


def _components(session: Session) -> dict[int, int]:
    """identifier id -> a component label, from the active edges alone."""
    parent: dict[int, int] = {i: i for i in session.scalars(select(IdentityIdentifier.id)).all()}

    def root(n: int) -> int:
        while parent[n] != n:
            n = parent[n]
        return n

    for left, right in session.execute(
        select(IdentityEdge.left_id, IdentityEdge.right_id).where(IdentityEdge.removed_at.is_(None))
    ):
        parent[root(left)] = root(right)
    return {n: root(n) for n in parent}


def _check(session: Session) -> None:
    rows = session.execute(
        select(IdentityIdentifier.id, IdentityIdentifier.type, IdentityIdentifier.person_id)
    ).all()
    component = _components(session)
    person_of_component: dict[int, set[int]] = defaultdict(set)
    component_of_person: dict[int, set[int]] = defaultdict(set)
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for ident_id, type_, person_id in rows:
        person_of_component[component[ident_id]].add(person_id)
        component_of_person[person_id].add(component[ident_id])
        counts[(person_id, type_)] += 1
    assert all(len(p) == 1 for p in person_of_component.values())
    assert all(len(c) == 1 for c in component_of_person.values())
    assert all(n <= RULES.max_count(type_) for (_, type_), n in counts.items())
    pointers = dict(session.execute(select(Person.id, Person.merged_into)).all())
    holders = set(component_of_person)
    assert all(pointers[p] is None for p in holders)
    assert all(target is None or pointers[target] is None for target in pointers.values())


@pytest.mark.parametrize("seed", [1, 2])
def test_random_sequences_keep_the_invariants(session: Session, seed: int) -> None:
    rng = random.Random(seed)
    unmerges = 0
    for step in range(60):
        message = rng.sample(POOL, rng.randint(1, 3))
        result = service.resolve(
            session, message, IdentitySource(kind="event", ref=str(step)), RULES
        )
        # Each identifier is with the person resolved, or with the person a logged rejection
        # kept apart.
        kept_apart = {r.other_person_id for r in result.rejected}
        for type_, value in message:
            owner = service.person_of(session, type_, value, RULES)
            assert owner == result.person_id or owner in kept_apart
        if step % 15 == 14:
            merged = session.scalars(
                select(Person.merged_into).where(Person.merged_into.is_not(None))
            ).first()
            if merged is not None:
                edges = session.scalars(
                    select(IdentityEdge.id)
                    .join(IdentityIdentifier, IdentityIdentifier.id == IdentityEdge.left_id)
                    .where(
                        IdentityIdentifier.person_id == merged,
                        IdentityEdge.removed_at.is_(None),
                    )
                ).all()
                if edges:
                    service.unmerge(session, merged, [rng.choice(edges)], Actor.system("test"))
                    unmerges += 1
        _check(session)
    assert unmerges > 0
