"""Normalisation of contact points: emails, phone numbers (E.164) and web domains."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_SIMPLE_EMAIL = re.compile(r"^[a-z0-9._%+\-]{1,64}@[a-z0-9\-]{1,63}(\.[a-z0-9\-]{1,63})+$")

#: Mailbox providers: their domains say nothing about a contact's employer.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.jp",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.jp",
        "outlook.com",
        "outlook.jp",
        "live.com",
        "live.jp",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "mail.com",
        "yandex.ru",
        "docomo.ne.jp",
        "ezweb.ne.jp",
        "au.com",
        "softbank.ne.jp",
        "i.softbank.jp",
        "nifty.com",
        "biglobe.ne.jp",
        "ocn.ne.jp",
        "qq.com",
        "163.com",
        "naver.com",
    }
)


def normalise_email(raw: str) -> str:
    """A validated, lower-cased address; ``ValueError`` says what is wrong.

    Plain ASCII addresses take a fast path with the same outcome as the full validator.
    """
    candidate = raw.strip().lower()
    if _SIMPLE_EMAIL.match(candidate) and ".." not in candidate and not candidate.startswith("."):
        local, _, domain = candidate.partition("@")
        if (
            not local.endswith(".")
            # The validator's length limits (RFC 5321) and its "ab--" label rule.
            and len(candidate) <= 254
            and len(domain) <= 253
            and "--" not in domain
            and all(
                label and not label.startswith("-") and not label.endswith("-")
                for label in domain.split(".")
            )
            and not _special_or_numeric(domain)
        ):
            return candidate
    try:
        return validate_email(candidate, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


@lru_cache(maxsize=4096)
def _special_or_numeric(domain: str) -> bool:
    # Every top-level domain ends with a letter; the validator refuses the others.
    if not domain[-1:].isalpha():
        return True
    return any(
        domain == special or domain.endswith("." + special) for special in SPECIAL_USE_DOMAIN_NAMES
    )


#: Separators people write in phone numbers; the fast path below drops them.
_PHONE_SEPARATORS = str.maketrans("", "", " -().")


def _possible_lengths(region: str) -> frozenset[int]:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    desc = metadata.general_desc if metadata is not None else None
    return frozenset(desc.possible_length if desc is not None else ())


_JP_LENGTHS = _possible_lengths("JP")


def _plain_japanese(text: str, region: str) -> str | None:
    """E.164 for plain Japanese numbers (``090-1234-5678``, ``+81 3 1234 5678``) without
    parsing, which imports need at tens of thousands of numbers a second. Anything less
    plain returns None and goes to ``phonenumbers``; tests check both agree."""
    digits = text.translate(_PHONE_SEPARATORS)
    if digits.startswith("+81"):
        national = digits[3:]
    elif region == "JP" and digits[:1] == "0" and not digits.startswith(("00", "010")):
        national = digits[1:]
    else:
        return None
    if (
        national.isascii()
        and national.isdigit()
        and national[0] != "0"
        and len(national) in _JP_LENGTHS
    ):
        return "+81" + national
    return None


@lru_cache(maxsize=65536)
def normalise_phone(raw: str, region: str) -> str:
    """A phone number in E.164 (``+81312345678``); national numbers use ``region``."""
    text = raw.strip()
    if not text:
        raise ValueError("is empty")
    plain = _plain_japanese(text, region)
    if plain is not None:
        return plain
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"'{raw}' is not a phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"'{raw}' is not a possible phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def national_digits(e164: str) -> str:
    """The national form's digits ('+81901234...' -> '0901234...'), for search."""
    # Japanese numbers are dialled at home with a leading 0; skip parsing for them.
    if e164.startswith("+81") and e164[3:].isdigit() and e164[3:4] != "0":
        return "0" + e164[3:]
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164.lstrip("+")
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())


def normalise_domain(raw: str) -> str:
    """A bare lower-case host name from a domain or URL (``https://www.X.jp/a`` -> ``x.jp``)."""
    text = raw.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].split(":", 1)[0]
    text = text.removeprefix("www.").rstrip(".")
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"'{raw}' is not a domain name") from None
    if not _DOMAIN_RE.match(text):
        raise ValueError(f"'{raw}' is not a domain name")
    return text


def email_domain(email: str) -> str | None:
    """The employer domain an email suggests, or None for free-mail providers."""
    domain = email.rpartition("@")[2]
    return None if not domain or domain in FREE_MAIL_DOMAINS else domain
