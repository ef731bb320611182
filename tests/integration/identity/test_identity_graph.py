"""Resolution: anonymous -> identified -> aliased chains merge into one stable person id, within
the guardrails, and every refusal is in the merge log; explain shows why."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ichigen.identity import service
from ichigen.identity.models import IdentityEdge, Person
from ichigen.identity.normalise import IdentityRules
from ichigen.identity.schemas import IdentitySource


def event(ref: str) -> IdentitySource:
    return IdentitySource(kind="event", ref=ref)


def test_anonymous_identify_alias_chain_keeps_the_oldest_id(session: Session) -> None:
    visit = service.resolve(session, [("anonymous_id", "anon-1")], event("m1"))
    assert visit.created
    assert service.resolve(session, [("anonymous_id", "anon-1")], event("m2")).person_id == (
        visit.person_id
    )
    # Another device, later, also anonymous.
    phone_visit = service.resolve(session, [("anonymous_id", "anon-2")], event("m3"))
    assert phone_visit.created and phone_visit.person_id != visit.person_id
    # Sign-up on the first device.
    signup = service.resolve(
        session, [("anonymous_id", "anon-1"), ("user_id", "u-1"), ("email", "A@x.jp")], event("m4")
    )
    assert signup.person_id == visit.person_id and not signup.created
    assert signup.merged_person_ids == [] and signup.rejected == []
    # Log-in on the second device merges the later profile into the first.
    login = service.resolve(session, [("anonymous_id", "anon-2"), ("user_id", "u-1")], event("m5"))
    assert login.person_id == visit.person_id
    assert login.merged_person_ids == [phone_visit.person_id]
    # A call from a number the CRM links to the e-mail.
    crm = service.resolve(
        session,
        [("crm_contact", "17"), ("email", "a@x.jp"), ("phone", "03-1234-5678")],
        IdentitySource(kind="crm", ref="contact 17 created"),
    )
    assert crm.person_id == visit.person_id

    for type_, value in [
        ("anonymous_id", "anon-1"),
        ("anonymous_id", "anon-2"),
        ("user_id", "u-1"),
        ("email", "a@x.jp"),
        ("phone", "+81312345678"),
        ("crm_contact", "17"),
    ]:
        assert service.person_of(session, type_, value) == visit.person_id
    merged = session.get(Person, phone_visit.person_id)
    assert merged is not None and merged.merged_into == visit.person_id
    log = service.merge_log(session, visit.person_id)
    assert [(e.action, e.other_person_id, e.source_ref) for e in log] == [
        ("merged", phone_visit.person_id, "m5")
    ]
    # Repeated links add no edge: 5 edges span the 6 identifiers.
    assert session.scalar(select(func.count()).select_from(IdentityEdge)) == 5
    service.resolve(session, [("anonymous_id", "anon-2"), ("user_id", "u-1")], event("m6"))
    assert session.scalar(select(func.count()).select_from(IdentityEdge)) == 5


def test_a_merged_person_merging_again_keeps_chains_flat(session: Session) -> None:
    a = service.resolve(session, [("anonymous_id", "a")], event("1")).person_id
    b = service.resolve(session, [("anonymous_id", "b")], event("2")).person_id
    c = service.resolve(session, [("anonymous_id", "c")], event("3")).person_id
    assert (
        service.resolve(
            session, [("anonymous_id", "b"), ("anonymous_id", "c")], event("4")
        ).person_id
        == b
    )
    assert (
        service.resolve(
            session, [("anonymous_id", "c"), ("anonymous_id", "a")], event("5")
        ).person_id
        == a
    )
    pointers = dict(session.execute(select(Person.id, Person.merged_into)).all())
    assert pointers == {a: None, b: a, c: a}
    assert {service.person_of(session, "anonymous_id", x) for x in "abc"} == {a}


def test_two_user_ids_never_merge_and_the_refusal_is_logged(session: Session) -> None:
    one = service.resolve(session, [("anonymous_id", "shared"), ("user_id", "u-1")], event("m1"))
    two = service.resolve(session, [("user_id", "u-2"), ("email", "two@x.jp")], event("m2"))
    # The shared device logs in as u-2: the two profiles must stay apart, and the message
    # is u-2's, since a user id outranks an anonymous id.
    clash = service.resolve(session, [("anonymous_id", "shared"), ("user_id", "u-2")], event("m3"))
    assert clash.person_id == two.person_id
    assert clash.merged_person_ids == []
    assert len(clash.rejected) == 1
    rejection = clash.rejected[0]
    assert rejection.other_person_id == one.person_id
    assert "different user_id" in rejection.reason
    assert service.person_of(session, "user_id", "u-1") == one.person_id
    assert service.person_of(session, "user_id", "u-2") == two.person_id
    assert service.person_of(session, "anonymous_id", "shared") == one.person_id
    entries = service.merge_log(session, one.person_id)
    assert [(e.action, e.person_id, e.source_ref) for e in entries] == [
        ("rejected", two.person_id, "m3")
    ]
    assert "different user_id" in entries[0].reason
    assert service.explain(session, ("user_id", "u-1"), ("user_id", "u-2")) is None


def test_a_new_second_user_id_becomes_its_own_person(session: Session) -> None:
    one = service.resolve(session, [("anonymous_id", "d"), ("user_id", "u-1")], event("m1"))
    result = service.resolve(
        session, [("anonymous_id", "d"), ("user_id", "u-9"), ("email", "n@x.jp")], event("m2")
    )
    assert result.person_id == one.person_id
    # The e-mail could be attached without breaking a rule, so it is.
    assert service.person_of(session, "email", "n@x.jp") == one.person_id
    loner = service.person_of(session, "user_id", "u-9")
    assert loner is not None and loner != one.person_id
    assert [(r.identifier.value, r.other_person_id) for r in result.rejected] == [("u-9", loner)]
    assert [e.action for e in service.merge_log(session, loner)] == ["rejected"]


def test_the_max_count_per_type_is_kept(session: Session) -> None:
    rules = IdentityRules(max_per_type={"user_id": 1, "anonymous_id": 3})
    device = [("anonymous_id", f"dev-{n}") for n in range(5)]
    first = service.resolve(session, [("user_id", "u-1"), *device[:2]], event("m1"), rules)
    assert first.rejected == []
    third = service.resolve(session, [("user_id", "u-1"), device[2]], event("m2"), rules)
    assert third.rejected == []
    fourth = service.resolve(session, [("user_id", "u-1"), device[3]], event("m3"), rules)
    assert [r.identifier.value for r in fourth.rejected] == ["dev-3"]
    assert "at most 3 anonymous_id" in fourth.rejected[0].reason
    assert service.person_of(session, "anonymous_id", "dev-3") != first.person_id
    # An existing profile whose identifiers would exceed the cap is not merged either.
    other = service.resolve(session, [device[4], ("email", "o@x.jp")], event("m4"), rules)
    refused = service.resolve(
        session, [("email", "o@x.jp"), ("user_id", "u-1")], event("m5"), rules
    )
    assert refused.person_id == first.person_id
    assert refused.merged_person_ids == []
    assert [r.other_person_id for r in refused.rejected] == [other.person_id]
    assert "at most 3 anonymous_id" in refused.rejected[0].reason
    ids = service.identifiers_of(session, first.person_id)
    assert sorted(i.value for i in ids if i.type == "anonymous_id") == ["dev-0", "dev-1", "dev-2"]
    # The default cap is 5 for other types.
    many = [("email", f"e{n}@x.jp") for n in range(6)]
    capped = service.resolve(session, [("user_id", "u-7"), *many], event("m6"))
    assert [r.identifier.value for r in capped.rejected] == ["e5@x.jp"]


def test_explain_returns_the_chain_with_sources(session: Session) -> None:
    service.resolve(session, [("anonymous_id", "anon-1"), ("user_id", "u-1")], event("m1"))
    service.resolve(session, [("user_id", "u-1"), ("email", "a@x.jp")], event("m2"))
    service.resolve(
        session,
        [("email", "A@X.JP"), ("phone", "03-1234-5678")],
        IdentitySource(kind="crm", ref="contact 5 updated"),
    )
    chain = service.explain(session, ("anonymous_id", "anon-1"), ("phone", "0312345678"))
    assert chain is not None
    assert [(e.source_kind, e.source_ref) for e in chain] == [
        ("event", "m1"),
        ("event", "m2"),
        ("crm", "contact 5 updated"),
    ]
    hops = [{(e.left.type, e.left.value), (e.right.type, e.right.value)} for e in chain]
    assert hops == [
        {("anonymous_id", "anon-1"), ("user_id", "u-1")},
        {("user_id", "u-1"), ("email", "a@x.jp")},
        {("email", "a@x.jp"), ("phone", "+81312345678")},
    ]
    assert all(e.created_at.tzinfo is not None and e.removed_at is None for e in chain)
    assert service.explain(session, ("email", "a@x.jp"), ("email", "A@x.jp")) == []
    assert service.explain(session, ("email", "a@x.jp"), ("email", "unknown@x.jp")) is None
    service.resolve(session, [("anonymous_id", "stranger")], event("m9"))
    assert service.explain(session, ("email", "a@x.jp"), ("anonymous_id", "stranger")) is None
