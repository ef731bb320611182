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


def _special_or_numeric(domain: str) -> bool:
    labels = domain.split(".")
    if labels[-1].isdigit() or any(label.isdigit() for label in labels[-1:]):
        return True
    return any(
        domain == special or domain.endswith("." + special) for special in SPECIAL_USE_DOMAIN_NAMES
    )


@lru_cache(maxsize=65536)
def normalise_phone(raw: str, region: str) -> str:
    """A phone number in E.164 (``+81312345678``); national numbers use ``region``."""
    text = raw.strip()
    if not text:
        raise ValueError("is empty")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"'{raw}' is not a phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"'{raw}' is not a possible phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def national_digits(e164: str) -> str:
    """The national form's digits ('+81901234...' -> '0901234...'), for search."""
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
