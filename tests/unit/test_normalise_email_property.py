"""The fast path of ``normalise_email`` must decide exactly as the full validator does."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ichigen.core.normalise import normalise_email

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LOCAL_CHARS = ALNUM + "._%+-!#$&'*/=?^`{|}~\"(),:;<>@[\\] é"
LABEL_CHARS = ALNUM + "-_"
SPECIAL_TLDS = ["test", "local", "localhost", "invalid", "onion", "arpa", "example", "com", "jp"]


def reference(raw: str) -> str | None:
    """What the full validator says: the normalised lower-cased address, or None."""
    try:
        return validate_email(raw.strip().lower(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def ours(raw: str) -> str | None:
    try:
        return normalise_email(raw)
    except ValueError:
        return None


labels = st.text(LABEL_CHARS, min_size=0, max_size=70)
tlds = st.one_of(
    st.sampled_from(SPECIAL_TLDS), st.text(LABEL_CHARS, min_size=0, max_size=8), st.just("123")
)
domains = st.builds(
    lambda parts, tld: ".".join([*parts, tld]),
    st.lists(labels, min_size=0, max_size=5),
    tlds,
)
local_parts = st.one_of(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789._%+-", min_size=0, max_size=70),
    st.text(LOCAL_CHARS, min_size=0, max_size=20),
)
addresses = st.builds(
    lambda pad, local, domain, tail: f"{pad}{local}@{domain}{tail}",
    st.sampled_from(["", " ", "\t"]),
    local_parts,
    domains,
    st.sampled_from(["", " ", "\n"]),
)


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(addresses)
@example("Taro.Yamada@Example.CO.JP")
@example("a@b.c")
@example("a.@example.com")
@example(".a@example.com")
@example("a..b@example.com")
@example("a@-example.com")
@example("a@example-.com")
@example("a@example.123")
@example("a@localhost")
@example("a@foo.test")
@example("a@foo.example")
@example("a@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 60 + ".com")
@example("x" * 64 + "@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + ".jp")
@example("a%b@example.com")
@example("a_b@example_domain.com")
@example("a@ab--cd.com")
@example("a@xn--80ak6aa92e.com")
@example("a@i.ldg3")
def test_fast_path_agrees_with_email_validator(raw: str) -> None:
    assert ours(raw) == reference(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Taro@Example.CO.JP", "taro@example.co.jp"),
        ("  hanako.suzuki+crm@sakura-seiko.co.jp ", "hanako.suzuki+crm@sakura-seiko.co.jp"),
        ("ＴＡＲＯ@example.jp", None),
    ],
)
def test_normalise_email_examples(raw: str, expected: str | None) -> None:
    if expected is None:
        assert ours(raw) == reference(raw)
    else:
        assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "@example.com", "a@", "a b@example.com"])
def test_normalise_email_rejects_with_a_reason(raw: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        normalise_email(raw)
