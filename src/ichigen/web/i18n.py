"""UI languages: gettext catalogs compiled from the shipped ``.po`` files, and locale choice.

The catalogs live as ``locale/<lang>/LC_MESSAGES/*.po`` next to this module (``messages.po``
for the shell, one file per feature beside it), are merged, and are compiled in memory at first
use with Babel, so there is no build step and no ``.mo`` file to
keep in sync. Which language a request gets: the signed-in user's choice, then the
``ichigen_locale`` cookie (set by the language switch before sign-in), then the browser's
``Accept-Language``, then ``settings.default_locale``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
#: The languages the UI ships, with each one's name in itself (for the language switch).
LOCALES: dict[str, str] = {"en": "English", "ja": "日本語"}
LOCALE_COOKIE = "ichigen_locale"


def N_(message: str) -> str:
    """Mark a string for translation where it is defined; templates translate it with ``_()``."""
    return message


def po_path(locale: str) -> Path:
    """The shell's catalog of one language; features keep theirs beside it."""
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def po_paths(locale: str) -> list[Path]:
    """Every catalog file of one language: the shell's first, then each feature's by name."""
    main = po_path(locale)
    return [main, *sorted(p for p in main.parent.glob("*.po") if p != main)]


def load_catalog(locale: str) -> Catalog:
    """One language's catalogs merged into one (a later file's entry wins on a repeat)."""
    paths = po_paths(locale)
    with paths[0].open("rb") as po_file:
        catalog = read_po(po_file, locale=locale, domain=DOMAIN)
    for path in paths[1:]:
        with path.open("rb") as po_file:
            for message in read_po(po_file, locale=locale, domain=DOMAIN):
                if message.id:
                    catalog[message.id] = message
    return catalog


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> Translations:
    """The compiled catalog of one shipped language (English is the identity catalog)."""
    if locale not in LOCALES:
        locale = "en"
    catalog = load_catalog(locale)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags from an ``Accept-Language`` header, most preferred first."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            weighted.append((-quality, position, tag.strip().lower()))
    return [tag for _, _, tag in sorted(weighted)]


def supported(tag: str | None) -> str | None:
    """The shipped language a tag like ``ja-JP`` or ``en_US`` asks for, if any."""
    if not tag:
        return None
    primary = tag.replace("_", "-").split("-")[0].lower()
    return primary if primary in LOCALES else None


def choose_locale(
    user_locale: str | None, cookie: str | None, accept_language: str | None, default: str
) -> str:
    """The user's own choice, the cookie, the browser's preference, then the default."""
    for candidate in (user_locale, cookie):
        found = supported(candidate)
        if found:
            return found
    for tag in parse_accept_language(accept_language):
        found = supported(tag)
        if found:
            return found
    return supported(default) or "en"


def gettext_for(locale: str) -> Callable[[str], str]:
    """A ``gettext`` for one language, for messages composed in Python."""
    return translations(locale).gettext
