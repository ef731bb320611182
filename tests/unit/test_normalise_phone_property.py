"""The fast path for plain Japanese phone numbers must agree with ``phonenumbers``."""

from __future__ import annotations

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ichigen.core import normalise
from ichigen.core.normalise import national_digits


def reference(raw: str, region: str) -> str | None:
    """E.164 as ``phonenumbers`` alone makes it, or None when it is not a possible number."""
    text = raw.strip()
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def ours(raw: str, region: str) -> str | None:
    normalise.normalise_phone.cache_clear()
    try:
        return normalise.normalise_phone(raw, region)
    except ValueError:
        return None


digits = st.text("0123456789", min_size=1, max_size=13)
separated = st.lists(st.tuples(digits, st.sampled_from(["", " ", "-", ".", "(", ")"])), max_size=4)
numbers = st.builds(
    lambda prefix, parts: prefix + "".join(d + s for d, s in parts),
    st.sampled_from(["", "0", "+81", "+81 ", "+810", "00", "010", "+1", "+", "0120", "090"]),
    separated,
)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(numbers, st.sampled_from(["JP", "US"]))
@example("090-1234-5678", "JP")
@example("03-1234-5678", "JP")
@example("+81 3 1234 5678", "US")
@example("0120-123-456", "JP")
@example("050-1234-5678", "JP")
@example("+81 (0)3 1234 5678", "JP")
@example("(03) 1234-5678", "JP")
@example("0312345", "JP")
@example("+8112345", "JP")
def test_japanese_fast_path_agrees_with_phonenumbers(raw: str, region: str) -> None:
    assert ours(raw, region) == reference(raw, region)


def national_reference(e164: str) -> str:
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(
    st.builds(
        lambda lead, rest: lead + rest,
        st.sampled_from(["90", "80", "70", "50", "3", "6", "120", "800", "11", "45", "1"]),
        st.text("0123456789", min_size=3, max_size=9),
    )
)
@example("9012345678")
@example("120123456")
@example("312345678")
def test_national_digits_fast_path_agrees_with_phonenumbers(national: str) -> None:
    """For every valid number (for merely possible ones, with no national format, the fast
    path's leading 0 is what a caller would type anyway)."""
    e164 = reference("+81" + national, "JP")
    if e164 is not None and phonenumbers.is_valid_number(phonenumbers.parse(e164, None)):
        assert national_digits(e164) == national_reference(e164)
