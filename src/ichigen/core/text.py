"""Text normalisation for search and sorting: NFKC, case folding, kana folding."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Katakana (ァ..ヶ) map to hiragana by a fixed code point offset.
_KATA_TO_HIRA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """The form in which names are compared: width-normalised, case-folded, kana as hiragana."""
    return unicodedata.normalize("NFKC", text).casefold().translate(_KATA_TO_HIRA).strip()


def fold_compact(text: str) -> str:
    """``fold`` without spaces, so '山田 太郎' and '山田太郎' search alike."""
    return "".join(fold(text).split())


#: Legal-form words that lead or trail company names and say nothing about which company.
_LEGAL_FORMS = (
    "株式会社",
    "有限会社",
    "合同会社",
    "合資会社",
    "合名会社",
    "一般社団法人",
    "一般財団法人",
    "公益社団法人",
    "公益財団法人",
    "特定非営利活動法人",
    "医療法人",
    "学校法人",
    "社会福祉法人",
    "(株)",
    "(有)",
    "(同)",
    "㈱",
    "㈲",
    "inc.",
    "inc",
    "co.,ltd.",
    "co., ltd.",
    "co.,ltd",
    "co., ltd",
    "ltd.",
    "ltd",
    "llc",
    "l.l.c.",
    "gmbh",
    "corp.",
    "corp",
    "corporation",
    "company",
    "plc",
    "s.a.",
    "k.k.",
    "kk",
    "the",
)


def company_key(name: str) -> str:
    """A company name for prefix search, without legal forms.

    '株式会社サクラ精工' and 'サクラ精工株式会社' both become 'さくら精工'.
    """
    text = fold(name)
    changed = True
    while changed:
        changed = False
        for folded_form, cjk in _FOLDED_LEGAL_FORMS:
            if text.startswith(folded_form + " ") or (text.startswith(folded_form) and cjk):
                text, changed = text[len(folded_form) :].strip(" ,"), True
            if text.endswith(" " + folded_form) or (text.endswith(folded_form) and cjk):
                text, changed = text[: -len(folded_form)].strip(" ,"), True
    return "".join(text.split()) or "".join(fold(name).split())


def has_cjk(text: str) -> bool:
    """Whether the text holds kana or kanji."""
    return any(
        "\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" or "\uff66" <= ch <= "\uff9f"
        for ch in text
    )


#: The legal forms as ``company_key`` compares them, folded once.
_FOLDED_LEGAL_FORMS = tuple((fold(form), has_cjk(form)) for form in _LEGAL_FORMS)


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix + "\U0010ffff"
