"""Identifiers are normalised before matching; blocked values never link; malformed ones are
refused with the field named."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from ichigen.core.errors import ValidationFailed
from ichigen.identity import service
from ichigen.identity.normalise import IdentityRules, normalise_identifier
from ichigen.identity.schemas import IdentitySource

EVENT = IdentitySource(kind="event", ref="msg-1")


def test_width_case_and_phone_formats_are_one_identifier(session: Session) -> None:
    first = service.resolve(session, [("email", "Taro.Yamada@Example.JP")], EVENT)
    # Full-width letters and at-sign, upper case, surrounding space.
    again = service.resolve(
        session, [("email", " ＴＡＲＯ．ＹＡＭＡＤＡ＠ｅｘａｍｐｌｅ．ｊｐ ")], EVENT
    )
    assert again.person_id == first.person_id
    assert not again.created

    phone = service.resolve(session, [("phone", "090-1234-5678")], EVENT)
    for written in ("+81 90 1234 5678", "０９０（１２３４）５６７８", "+819012345678"):
        assert service.resolve(session, [("phone", written)], EVENT).person_id == phone.person_id
    assert service.person_of(session, "user_id", "ｕｓｅｒ－１") is None
    user = service.resolve(session, [("user_id", "ｕｓｅｒ-１")], EVENT)
    assert service.person_of(session, "user_id", "user-1") == user.person_id
    assert service.identifiers_of(session, phone.person_id)[0].value == "+819012345678"
    assert len({first.person_id, phone.person_id, user.person_id}) == 3


def test_ids_keep_their_case(session: Session) -> None:
    upper = service.resolve(session, [("user_id", "ABC")], EVENT)
    lower = service.resolve(session, [("user_id", "abc")], EVENT)
    assert upper.person_id != lower.person_id


@pytest.mark.parametrize(
    "value",
    ["", "  ", "null", "NULL", "undefined", "anonymous", "0", "-1", "None", "N/A", "ｎｕｌｌ"],
)
def test_blocked_values_never_link(session: Session, value: str) -> None:
    one = service.resolve(session, [("anonymous_id", "a-1"), ("user_id", value)], EVENT)
    two = service.resolve(session, [("anonymous_id", "a-2"), ("user_id", value)], EVENT)
    assert one.person_id != two.person_id
    assert one.blocked == [("user_id", value)]
    assert service.person_of(session, "user_id", value) is None


def test_configured_patterns_are_blocked(session: Session) -> None:
    rules = IdentityRules(blocked_patterns=(r"test@example\.com", r".*@mailinator\.com"))
    one = service.resolve(
        session, [("anonymous_id", "a-1"), ("email", "Test@Example.com")], EVENT, rules
    )
    two = service.resolve(
        session, [("anonymous_id", "a-2"), ("email", "test@example.com")], EVENT, rules
    )
    three = service.resolve(
        session, [("anonymous_id", "a-3"), ("email", "x@MAILINATOR.com")], EVENT, rules
    )
    assert len({one.person_id, two.person_id, three.person_id}) == 3
    # Without the pattern the same address links.
    four = service.resolve(session, [("anonymous_id", "a-4"), ("email", "test@example.com")], EVENT)
    five = service.resolve(session, [("anonymous_id", "a-5"), ("email", "test@example.com")], EVENT)
    assert four.person_id == five.person_id


def test_only_blocked_values_is_an_error(session: Session) -> None:
    with pytest.raises(ValidationFailed) as caught:
        service.resolve(session, [("anonymous_id", "null"), ("user_id", "")], EVENT)
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("type_", "value", "loc"),
    [
        ("email", "not-an-address", ("identifiers", 1, "value")),
        ("email", "a@@b.com", ("identifiers", 1, "value")),
        ("phone", "call me", ("identifiers", 1, "value")),
        ("phone", "12", ("identifiers", 1, "value")),
        ("fax", "03-1234-5678", ("identifiers", 1, "type")),
        ("user_id", "x" * 321, ("identifiers", 1, "value")),
        ("user_id", "u\x00-42", ("identifiers", 1, "value")),
        ("anonymous_id", "a\ud800b", ("identifiers", 1, "value")),
    ],
)
def test_malformed_identifiers_are_refused_and_change_nothing(
    session: Session, type_: str, value: str, loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        service.resolve(session, [("anonymous_id", "a-1"), (type_, value)], EVENT)
    assert caught.value.status == 422
    assert [e.loc for e in caught.value.errors] == [loc]
    assert (value[:20] in caught.value.detail) or (type_ in caught.value.detail)
    assert service.person_of(session, "anonymous_id", "a-1") is None


def test_external_types_are_configured() -> None:
    rules = IdentityRules(external_types=frozenset({"loyalty_card"}))
    found = normalise_identifier("loyalty_card", " ００１２３ ", rules)
    assert found is not None and found.value == "00123"
    with pytest.raises(ValidationFailed):
        normalise_identifier("loyalty_card", "00123")
    for bad in ("Loyalty", "1card", "x" * 41, "email"):
        with pytest.raises(ValueError, match="cannot name"):
            IdentityRules(external_types=frozenset({bad}))
