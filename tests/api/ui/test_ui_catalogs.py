"""Every UI message is in the catalogs, and the Japanese one translates each of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir

from ichigen.web import i18n, templating

SOURCES = Path(templating.PACKAGE_ROOT)
METHODS = [
    ("**/templates/**.html", "jinja2"),
    ("**/views.py", "python"),
    ("**/*_views.py", "python"),
]
WEB_METHODS = [*METHODS, ("templating.py", "python"), ("i18n.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.do,jinja2.ext.i18n"}}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def ui_messages() -> dict[str, str]:
    """Each message the UI's templates and views mark for translation, with where it is."""
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found: dict[str, str] = {}
    for folder in templating.TEMPLATE_PACKAGES:
        methods = WEB_METHODS if folder == "web" else METHODS
        for filename, line, message, _comments, _context in extract_from_dir(
            SOURCES / folder, methods, OPTIONS, keywords=keywords
        ):
            text = message[0] if isinstance(message, tuple) else message
            found.setdefault(text, f"{folder}/{filename}:{line}")
    return found


def catalog(locale: str):  # type: ignore[no-untyped-def]
    return i18n.load_catalog(locale)


def test_the_ui_has_messages_to_translate() -> None:
    messages = ui_messages()
    assert len(messages) > 150
    assert "Contacts" in messages and "Sign in to ichigen" in messages


@pytest.mark.parametrize("locale", sorted(i18n.LOCALES))
def test_each_catalog_lists_every_message(locale: str) -> None:
    listed = {m.id for m in catalog(locale) if m.id}
    missing = {m: where for m, where in ui_messages().items() if m not in listed}
    assert not missing, f"add these to a catalog in {i18n.po_path(locale).parent}: {missing}"


def test_japanese_translates_every_message_with_the_same_placeholders() -> None:
    japanese = catalog("ja")
    problems = []
    for message, where in ui_messages().items():
        entry = japanese.get(message)
        if entry is None or not entry.string or entry.fuzzy:
            problems.append(f"{where}: {message!r} has no translation")
        elif set(_PLACEHOLDER.findall(message)) != set(_PLACEHOLDER.findall(entry.string)):
            problems.append(f"{where}: {message!r} and {entry.string!r} differ in placeholders")
    assert not problems, "\n".join(problems)


def test_compiled_catalogs_translate() -> None:
    assert i18n.translations("ja").gettext("Contacts") == "コンタクト"
    assert i18n.translations("en").gettext("Contacts") == "Contacts"
    assert i18n.translations("xx").gettext("Contacts") == "Contacts"


@pytest.mark.parametrize(
    ("user", "cookie", "accept", "default", "chosen"),
    [
        ("ja", "en", "en", "en", "ja"),
        (None, "ja", "en-US,en;q=0.9", "en", "ja"),
        (None, None, "fr-CH, fr;q=0.9, ja;q=0.8, en;q=0.7", "en", "ja"),
        (None, None, "en;q=0.1, ja;q=0.5", "en", "ja"),
        (None, "xx", "de", "ja", "ja"),
        (None, None, None, "en", "en"),
        (None, None, "ja;q=0", "en", "en"),
    ],
)
def test_locale_choice(
    user: str | None, cookie: str | None, accept: str | None, default: str, chosen: str
) -> None:
    assert i18n.choose_locale(user, cookie, accept, default) == chosen
