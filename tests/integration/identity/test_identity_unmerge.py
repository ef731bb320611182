"""Unmerge: removing chosen edges splits a profile; the oldest part keeps the id."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import Conflict, NotFound, ValidationFailed
from ichigen.identity import service
from ichigen.identity.models import IdentityEdge
from ichigen.identity.schemas import IdentitySource

REP = Actor.system("support-lead")


def event(ref: str) -> IdentitySource:
    return IdentitySource(kind="event", ref=ref)


def _wrong_merge(session: Session) -> tuple[int, int]:
    """Two real people merged through a shared e-mail address typed into the CRM."""
    alice = service.resolve(
        session, [("anonymous_id", "a-anon"), ("user_id", "alice")], event("m1")
    ).person_id
    bob = service.resolve(
        session, [("anonymous_id", "b-anon"), ("email", "bob@x.jp")], event("m2")
    ).person_id
    merged = service.resolve(
        session, [("user_id", "alice"), ("email", "bob@x.jp")], IdentitySource(kind="crm", ref="c9")
    )
    assert merged.person_id == alice and merged.merged_person_ids == [bob]
    return alice, bob


def test_unmerge_splits_the_profile(session: Session) -> None:
    alice, bob = _wrong_merge(session)
    chain = service.explain(session, ("user_id", "alice"), ("email", "bob@x.jp"))
    assert chain is not None and [e.source_ref for e in chain] == ["c9"]

    result = service.unmerge(session, alice, [chain[0].id], REP)
    assert result.person_id == alice and result.removed_edge_ids == [chain[0].id]
    assert len(result.new_person_ids) == 1
    split = result.new_person_ids[0]
    assert split not in (alice, bob)
    assert service.person_of(session, "user_id", "alice") == alice
    assert service.person_of(session, "anonymous_id", "a-anon") == alice
    assert service.person_of(session, "email", "bob@x.jp") == split
    assert service.person_of(session, "anonymous_id", "b-anon") == split
    assert service.explain(session, ("user_id", "alice"), ("email", "bob@x.jp")) is None
    assert service.explain(session, ("anonymous_id", "b-anon"), ("email", "bob@x.jp")) is not None
    edge = session.get(IdentityEdge, chain[0].id)
    assert edge is not None and edge.removed_at is not None and edge.removed_by == "support-lead"
    assert [e.action for e in service.merge_log(session, alice)] == ["merged", "unmerged"]
    history = record_history(session, "person", alice)
    assert [h.action for h in history] == ["unmerge"]
    assert history[0].changes["new_person_ids"] == [split]
    # New events for Bob's identifiers land on the split-off person.
    later = service.resolve(session, [("anonymous_id", "b-anon")], event("m7"))
    assert later.person_id == split


def test_unmerge_keeps_the_id_with_the_oldest_identifier(session: Session) -> None:
    alice, _ = _wrong_merge(session)
    # Cut the edge that holds Alice's anonymous id instead: the part with it keeps the id.
    chain = service.explain(session, ("anonymous_id", "a-anon"), ("user_id", "alice"))
    assert chain is not None and len(chain) == 1
    result = service.unmerge(session, alice, [chain[0].id], REP)
    assert service.person_of(session, "anonymous_id", "a-anon") == alice
    assert service.person_of(session, "user_id", "alice") == result.new_person_ids[0]
    assert service.person_of(session, "email", "bob@x.jp") == result.new_person_ids[0]


def test_removing_two_edges_splits_into_three(session: Session) -> None:
    alice, _ = _wrong_merge(session)
    service.resolve(session, [("email", "bob@x.jp"), ("phone", "090-1111-2222")], event("m8"))
    # Evidence for a link already known is not stored again: the edges form a spanning
    # forest, so each removed edge splits off one part.
    service.resolve(session, [("anonymous_id", "a-anon"), ("anonymous_id", "b-anon")], event("m9"))
    assert (
        session.scalars(select(IdentityEdge.id).where(IdentityEdge.source_ref == "m9")).all() == []
    )
    cut = [
        edges[0].id
        for edges in (
            service.explain(session, ("user_id", "alice"), ("email", "bob@x.jp")),
            service.explain(session, ("email", "bob@x.jp"), ("phone", "09011112222")),
        )
        if edges is not None
    ]
    assert len(cut) == 2
    result = service.unmerge(session, alice, cut, REP)
    assert len(result.new_person_ids) == 2
    owners = {
        service.person_of(session, t, v)
        for t, v in [("anonymous_id", "b-anon"), ("phone", "09011112222")]
    }
    assert owners == set(result.new_person_ids)
    assert service.person_of(session, "user_id", "alice") == alice
    assert service.person_of(session, "anonymous_id", "b-anon") == service.person_of(
        session, "email", "bob@x.jp"
    )
    assert [e.action for e in service.merge_log(session, alice)] == [
        "merged",
        "unmerged",
        "unmerged",
    ]


def test_unmerge_errors(session: Session) -> None:
    alice, bob = _wrong_merge(session)
    loner = service.resolve(
        session, [("anonymous_id", "c-anon"), ("user_id", "carol")], event("m3")
    ).person_id
    carol_edge = service.explain(session, ("anonymous_id", "c-anon"), ("user_id", "carol"))
    assert carol_edge is not None
    with pytest.raises(NotFound):
        service.unmerge(session, 10_000_000, [carol_edge[0].id], REP)
    with pytest.raises(Conflict, match="never merged") as never:
        service.unmerge(session, loner, [carol_edge[0].id], REP)
    assert never.value.status == 409
    with pytest.raises(Conflict, match="was merged into"):
        service.unmerge(session, bob, [carol_edge[0].id], REP)
    with pytest.raises(ValidationFailed) as foreign:
        service.unmerge(session, alice, [carol_edge[0].id, 999_999], REP)
    assert foreign.value.status == 422
    assert [e.loc for e in foreign.value.errors] == [("edge_ids", 0), ("edge_ids", 1)]
    with pytest.raises(ValidationFailed):
        service.unmerge(session, alice, [], REP)
    # Nothing changed: the profile is whole and no edge is removed.
    assert service.person_of(session, "email", "bob@x.jp") == alice
    assert (
        session.scalars(select(IdentityEdge).where(IdentityEdge.removed_at.is_not(None))).all()
        == []
    )
    # An edge already removed cannot be removed again.
    chain = service.explain(session, ("user_id", "alice"), ("email", "bob@x.jp"))
    assert chain is not None
    service.unmerge(session, alice, [chain[0].id], REP)
    with pytest.raises(ValidationFailed):
        service.unmerge(session, alice, [chain[0].id], REP)
