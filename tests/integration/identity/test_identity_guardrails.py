"""The merge rules' guardrails: priorities, the merge cap, the growth alarm, and an unmerge
that is remembered."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ichigen.core.audit import Actor
from ichigen.identity import service
from ichigen.identity.normalise import IdentityRules
from ichigen.identity.schemas import IdentitySource


def event(ref: str) -> IdentitySource:
    return IdentitySource(kind="event", ref=ref)


def test_the_stronger_identifier_decides_whose_message_it_is(session: Session) -> None:
    rules = IdentityRules(priority={"email": 200, "user_id": 100, "anonymous_id": 10})
    one = service.resolve(session, [("user_id", "u-1"), ("email", "one@x.jp")], event("1"), rules)
    two = service.resolve(session, [("user_id", "u-2")], event("2"), rules)
    # The e-mail (priority 200 here) names one, the user id (100) names two: they cannot
    # merge (different user ids), and the message is the e-mail's person's.
    clash = service.resolve(session, [("user_id", "u-2"), ("email", "one@x.jp")], event("3"), rules)
    assert clash.person_id == one.person_id
    assert [r.other_person_id for r in clash.rejected] == [two.person_id]
    # With the default priorities the user id wins.
    again = service.resolve(session, [("user_id", "u-2"), ("email", "one@x.jp")], event("4"))
    assert again.person_id == two.person_id


def test_a_profile_absorbs_at_most_max_merges_others(session: Session) -> None:
    rules = IdentityRules(max_merges=2)
    anchor = service.resolve(session, [("anonymous_id", "a-0")], event("0"), rules)
    for n in (1, 2, 3):
        service.resolve(session, [("anonymous_id", f"a-{n}")], event(f"n{n}"), rules)
    for n in (1, 2):
        merged = service.resolve(
            session, [("anonymous_id", "a-0"), ("anonymous_id", f"a-{n}")], event(f"m{n}"), rules
        )
        assert merged.person_id == anchor.person_id and merged.merged_person_ids
    refused = service.resolve(
        session, [("anonymous_id", "a-0"), ("anonymous_id", "a-3")], event("m3"), rules
    )
    assert refused.merged_person_ids == []
    assert "max merges" in refused.rejected[0].reason
    assert service.person_of(session, "anonymous_id", "a-3", rules) != anchor.person_id
    actions = [e.action for e in service.merge_log(session, anchor.person_id)]
    assert actions == ["merged", "merged", "rejected"]


def test_a_profile_growing_past_the_alarm_line_is_logged_once(session: Session) -> None:
    rules = IdentityRules(alarm_identifiers=4)
    person = service.resolve(session, [("user_id", "kiosk")], event("0"), rules).person_id
    for n in range(1, 5):
        service.resolve(
            session, [("user_id", "kiosk"), ("anonymous_id", f"device-{n}")], event(f"{n}"), rules
        )
    alarms = [e for e in service.merge_log(session, person) if e.action == "alarm"]
    assert len(alarms) == 1
    assert alarms[0].source_ref == "3" and "4 identifiers" in alarms[0].reason


def test_an_unmerge_keeps_the_parts_apart_until_a_person_decides(session: Session) -> None:
    service.resolve(session, [("anonymous_id", "phone")], event("1"))
    service.resolve(session, [("anonymous_id", "laptop")], event("2"))
    joined = service.resolve(
        session, [("anonymous_id", "phone"), ("anonymous_id", "laptop")], event("3")
    ).person_id
    edges = service.explain(session, ("anonymous_id", "phone"), ("anonymous_id", "laptop"))
    assert edges
    split = service.unmerge(session, joined, [edges[0].id], Actor.system("test"))
    (other,) = split.new_person_ids
    # The same evidence again does not undo the unmerge.
    again = service.resolve(
        session, [("anonymous_id", "phone"), ("anonymous_id", "laptop")], event("4")
    )
    assert again.merged_person_ids == []
    assert "unmerge" in again.rejected[0].reason
    assert service.person_of(session, "anonymous_id", "laptop") == other
    # A manual link (a person's own decision) may join them again.
    manual = service.resolve(
        session,
        [("anonymous_id", "phone"), ("anonymous_id", "laptop")],
        IdentitySource(kind="manual", ref="reviewed"),
    )
    assert manual.merged_person_ids == [other]
