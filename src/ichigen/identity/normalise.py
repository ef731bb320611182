"""Identifier types and their normalisation before matching, and the values that never link."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ichigen.core.errors import FieldError, ValidationFailed
from ichigen.core.normalise import normalise_email, normalise_phone

#: The identifier types every installation knows.
BUILTIN_TYPES = frozenset({"anonymous_id", "user_id", "email", "phone", "crm_contact"})

#: What an external identifier type may be called (a loyalty-card number, a hashed device id).
EXTERNAL_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

#: The built-in types' priorities (external types get ``EXTERNAL_PRIORITY``).
DEFAULT_PRIORITY = {
    "user_id": 100,
    "crm_contact": 90,
    "email": 80,
    "phone": 70,
    "anonymous_id": 10,
}
EXTERNAL_PRIORITY = 60

#: Values that stand for "no value" in the data people send; they never link anything.
DEFAULT_BLOCKED_VALUES = frozenset({"", "null", "undefined", "anonymous", "0", "-1", "none", "n/a"})

#: The longest identifier value kept (the longest e-mail address allowed is 254).
MAX_VALUE_LENGTH = 320


@dataclass(frozen=True)
class IdentityRules:
    """The identity graph's configuration: types, caps per profile and blocked values.

    ``blocked_patterns`` are regular expressions matched (whole, case-insensitive) against
    the normalised value, e.g. ``r"test@example\\.com"``.
    """

    external_types: frozenset[str] = frozenset()
    #: A person is at most one CRM contact: duplicates typed by reps are for the review
    #: queue to merge, not for the graph to join behind their backs.
    max_per_type: Mapping[str, int] = field(
        default_factory=lambda: {"user_id": 1, "crm_contact": 1}
    )
    default_max_per_type: int = 5
    blocked_patterns: tuple[str, ...] = ()
    phone_region: str = "JP"
    #: Which links win a conflict (higher first): when not every person a message names can
    #: join, those it names by a higher-priority identifier are joined first, and new
    #: identifiers of higher priority take the places the caps leave.
    priority: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PRIORITY))
    #: Persons merged into one profile at most; a merge past it is refused and logged.
    max_merges: int = 50
    #: A profile reaching this many identifiers is logged as an alarm (a shared device or a
    #: test account often looks like this), once, when it crosses the line.
    alarm_identifiers: int = 15

    def __post_init__(self) -> None:
        for name in self.external_types:
            if not EXTERNAL_TYPE_NAME.fullmatch(name) or name in BUILTIN_TYPES:
                raise ValueError(f"'{name}' cannot name an external identifier type")
        for type_, cap in self.max_per_type.items():
            if cap < 1:
                raise ValueError(f"the maximum count of {type_} must be at least 1")
        if self.max_merges < 1 or self.alarm_identifiers < 2:
            raise ValueError("max_merges must be at least 1 and alarm_identifiers at least 2")
        object.__setattr__(
            self,
            "_blocked",
            tuple(re.compile(p, re.IGNORECASE) for p in self.blocked_patterns),
        )

    @property
    def types(self) -> frozenset[str]:
        return BUILTIN_TYPES | self.external_types

    def priority_of(self, type_: str) -> int:
        """How strongly an identifier of this type holds a person together."""
        return self.priority.get(type_, EXTERNAL_PRIORITY)

    def max_count(self, type_: str) -> int:
        """How many identifiers of this type one person may hold."""
        return self.max_per_type.get(type_, self.default_max_per_type)

    def is_blocked(self, value: str) -> bool:
        """Whether a (normalised or raw) value is one that never links."""
        folded = value.strip().lower()
        if folded in DEFAULT_BLOCKED_VALUES:
            return True
        patterns: tuple[re.Pattern[str], ...] = getattr(self, "_blocked")  # noqa: B009
        return any(p.fullmatch(folded) for p in patterns)


DEFAULT_RULES = IdentityRules()


@dataclass(frozen=True)
class Identifier:
    """One normalised identifier: its type and value as they are matched and stored."""

    type: str
    value: str


def _malformed(loc: tuple[str | int, ...], msg: str) -> ValidationFailed:
    return ValidationFailed(f"Malformed identifier: {msg}.", [FieldError(loc, msg)])


def normalise_identifier(
    type_: str,
    raw: str,
    rules: IdentityRules = DEFAULT_RULES,
    loc: tuple[str | int, ...] = ("identifier",),
) -> Identifier | None:
    """The identifier as matched, or None when the value is blocked (it never links).

    Every value gets Unicode NFKC (full-width and half-width forms are one) and loses
    surrounding space; e-mails are validated and lower-cased, phones become E.164. A type
    that is not configured, or a value that cannot be an e-mail or phone, raises
    ``ValidationFailed`` naming it.
    """
    if type_ not in rules.types:
        raise _malformed((*loc, "type"), f"'{type_}' is not an identifier type")
    if not isinstance(raw, str):
        raise _malformed((*loc, "value"), f"the {type_} must be text")
    text = unicodedata.normalize("NFKC", raw).strip()
    if any(ch == "\x00" or "\ud800" <= ch <= "\udfff" for ch in text):
        # Neither engine stores these (PostgreSQL refuses NUL in text).
        raise _malformed((*loc, "value"), f"the {type_} holds a NUL or an unpaired surrogate")
    if rules.is_blocked(text):
        return None
    if len(text) > MAX_VALUE_LENGTH:
        raise _malformed(
            (*loc, "value"), f"the {type_} is longer than {MAX_VALUE_LENGTH} characters"
        )
    if type_ == "email":
        try:
            text = normalise_email(text)
        except ValueError as exc:
            raise _malformed((*loc, "value"), f"'{raw}' is not an e-mail address ({exc})") from None
    elif type_ == "phone":
        try:
            text = normalise_phone(text, rules.phone_region)
        except ValueError:
            raise _malformed((*loc, "value"), f"'{raw}' is not a phone number") from None
    if rules.is_blocked(text):
        return None
    return Identifier(type_, text)


def normalise_identifiers(
    pairs: Iterable[tuple[str, str]], rules: IdentityRules = DEFAULT_RULES
) -> tuple[list[Identifier], list[tuple[str, str]]]:
    """The distinct normalised identifiers of one message, in order, and the blocked pairs.

    All malformed identifiers are reported together, in one ``ValidationFailed``.
    """
    kept: list[Identifier] = []
    seen: set[Identifier] = set()
    blocked: list[tuple[str, str]] = []
    errors: list[FieldError] = []
    for index, (type_, raw) in enumerate(pairs):
        try:
            identifier = normalise_identifier(type_, raw, rules, ("identifiers", index))
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            continue
        if identifier is None:
            blocked.append((type_, raw))
        elif identifier not in seen:
            seen.add(identifier)
            kept.append(identifier)
    if errors:
        detail = "; ".join(e.msg for e in errors)
        raise ValidationFailed(f"Malformed identifiers: {detail}.", errors)
    return kept, blocked
