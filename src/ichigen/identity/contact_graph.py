"""A contact merge in the identity graph: one customer, one profile; and its undo.

When a reviewer merges contact B into contact A, B's person joins A's: B's web and app
behaviour, traits and identifiers then show on A's profile. The link is an edge with the
merge as its source, so an undo removes exactly that, plus the links the background pass
made meanwhile from A to the addresses and numbers that go back to B.

A person normally holds at most one ``crm_contact`` (duplicates typed by reps are for the
review queue, not for the graph to join behind their backs). A merge is the review queue's
decision, so here the cap gives way: the merged contact's id stays on the person as a former
contact. The other guardrails hold: two profiles with different ``user_id`` values still do
not merge (the refusal is in the merge log, and the contacts merge all the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from ichigen.core.audit import Actor
from ichigen.core.errors import Conflict, ValidationFailed
from ichigen.identity import service
from ichigen.identity.models import IdentityEdge, IdentityIdentifier, Person
from ichigen.identity.normalise import DEFAULT_RULES, IdentityRules, normalise_identifiers
from ichigen.identity.schemas import IdentitySource, ResolveResult, UnmergeResult

#: How many former contacts one person may carry through merges.
_FORMER_CONTACTS = 1_000


def merge_reference(merge_id: int) -> str:
    """The ``source_ref`` of the edge a contact merge adds."""
    return f"contact-merge:{merge_id}"


def _contact(contact_id: int) -> tuple[str, str]:
    return ("crm_contact", str(contact_id))


def join_contacts(
    session: Session,
    survivor_id: int,
    merged_id: int,
    merge_id: int,
    rules: IdentityRules = DEFAULT_RULES,
) -> ResolveResult:
    """Join the merged contact's person into the survivor's, in the caller's transaction.

    Each contact gets its person first (a contact the background pass has not reached yet
    has none), so the join is a merge of two persons that an undo can split again.
    """
    source = IdentitySource(kind="manual", ref=merge_reference(merge_id))
    for contact_id in (survivor_id, merged_id):
        service.resolve(session, [_contact(contact_id)], source, rules)
    former = replace(
        rules,
        max_per_type={**dict(rules.max_per_type), "crm_contact": _FORMER_CONTACTS},
    )
    return service.resolve(session, [_contact(survivor_id), _contact(merged_id)], source, former)


def separate_contacts(
    session: Session,
    survivor_id: int,
    merged_id: int,
    merge_id: int,
    merged_at: datetime,
    returned: Sequence[tuple[str, str]],
    actor: Actor,
    rules: IdentityRules = DEFAULT_RULES,
) -> UnmergeResult | None:
    """Undo :func:`join_contacts`: remove the merge's edge and the survivor's links, made
    since the merge, to the identifiers in ``returned`` (the e-mail addresses and phone
    numbers that went back to the merged contact). None when there is nothing to remove
    (the join was refused, or the graph was rebuilt or unmerged since)."""
    wanted, _ = normalise_identifiers(returned, rules)
    left = aliased(IdentityIdentifier)
    right = aliased(IdentityIdentifier)
    since_merge = and_(
        IdentityEdge.source_kind == "crm",
        IdentityEdge.source_ref.like(f"contact:{survivor_id}:v%"),
        IdentityEdge.created_at >= merged_at,
    )
    conditions = [IdentityEdge.source_ref == merge_reference(merge_id)]
    if wanted:
        touches = or_(
            *(
                or_(
                    and_(left.type == i.type, left.value == i.value),
                    and_(right.type == i.type, right.value == i.value),
                )
                for i in wanted
            )
        )
        conditions.append(and_(since_merge, touches))
    rows = session.execute(
        select(IdentityEdge.id, left.person_id)
        .join(left, left.id == IdentityEdge.left_id)
        .join(right, right.id == IdentityEdge.right_id)
        .where(IdentityEdge.removed_at.is_(None), or_(*conditions))
        .order_by(IdentityEdge.id)
    ).all()
    if not rows:
        return None
    person_ids = {person_id for _, person_id in rows}
    if len(person_ids) != 1:
        # The edges' ends belong to different persons: the graph changed (an unmerge or a
        # rebuild) since the merge; there is no one profile to split.
        return None
    person_id = person_ids.pop()
    if session.scalar(select(Person.merged_into).where(Person.id == person_id)) is not None:
        return None
    try:
        return service.unmerge(session, person_id, [edge_id for edge_id, _ in rows], actor)
    except (Conflict, ValidationFailed):
        # Checked before anything is written: the profile no longer holds a merge to undo.
        return None
