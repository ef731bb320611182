"""Text folding for search, company keys, phone numbers and domains (no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ichigen.core.normalise import (
    email_domain,
    national_digits,
    normalise_domain,
    normalise_phone,
)
from ichigen.core.text import company_key, fold, fold_compact, has_cjk, prefix_upper_bound


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("ヤマダ", "やまだ"),  # katakana -> hiragana
        ("ﾔﾏﾀﾞ", "やまだ"),  # half-width katakana with a voiced mark
        ("ＡＢＣ１２３", "abc123"),  # full-width Latin and digits
        ("Straße", "strasse"),  # case folding, not just lower()
        ("  Taro ", "taro"),
        ("ヴァ", "ゔぁ"),
        ("ヶ月", "ゖ月"),
        ("山田", "山田"),
    ],
)
def test_fold(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_fold_compact_drops_every_kind_of_space() -> None:
    assert fold_compact(" 山田\u3000太郎 ") == "山田太郎"
    assert fold_compact("John  Smith") == "johnsmith"


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=30))
def test_fold_is_idempotent_and_kana_insensitive(text: str) -> None:
    once = fold(text)
    assert fold(once) == once
    katakana = "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in once)
    assert fold(katakana) == once


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("株式会社サクラ精工", "さくら精工"),
        ("サクラ精工株式会社", "さくら精工"),
        ("(株)サクラ精工", "さくら精工"),
        ("㈱サクラ精工", "さくら精工"),
        ("ｻｸﾗ精工 株式会社", "さくら精工"),
        ("一般社団法人 日本CRM協会", "日本crm協会"),
        ("Acme Inc.", "acme"),
        ("ACME, Inc.", "acme"),
        ("Acme Co., Ltd.", "acme"),
        ("The Acme Company", "acme"),
        ("Sony Group Corporation", "sonygroup"),
        ("Companyname", "companyname"),  # a legal form inside a word stays
        ("Thermo Fisher", "thermofisher"),
        ("株式会社", "株式会社"),  # nothing left: keep the whole name
        ("Inc", "inc"),
    ],
)
def test_company_key_drops_legal_forms(name: str, key: str) -> None:
    assert company_key(name) == key


def test_has_cjk_and_prefix_bound() -> None:
    assert has_cjk("山田") and has_cjk("やまだ") and has_cjk("ﾔﾏﾀﾞ")
    assert not has_cjk("Yamada") and not has_cjk("Müller")
    bound = prefix_upper_bound("やま")
    for inside in ("やま", "やまだ", "やま\uffff"):
        assert "やま" <= inside < bound
    assert not ("やま" <= "やみ" < bound)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("03-1234-5678", "JP", "+81312345678"),
        ("090-1234-5678", "JP", "+819012345678"),
        ("０９０－１２３４－５６７８", "JP", "+819012345678"),  # full-width digits
        ("+1 650-253-0000", "JP", "+16502530000"),  # explicit country code wins
        ("(650) 253-0000", "US", "+16502530000"),
        ("+81 3 1234 5678", "US", "+81312345678"),
    ],
)
def test_normalise_phone(raw: str, region: str, e164: str) -> None:
    assert normalise_phone(raw, region) == e164


@pytest.mark.parametrize("raw", ["", "   ", "abc", "12", "+999 1234"])
def test_normalise_phone_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        normalise_phone(raw, "JP")


def test_national_digits() -> None:
    assert national_digits("+819012345678") == "09012345678"
    assert national_digits("+16502530000") == "6502530000"


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("https://www.Sakura-Seiko.co.jp/about?x=1", "sakura-seiko.co.jp"),
        ("sakura-seiko.co.jp", "sakura-seiko.co.jp"),
        ("http://example.com:8080/", "example.com"),
        ("EXAMPLE.com.", "example.com"),
        ("https://例え.jp", "xn--r8jz45g.jp"),
    ],
)
def test_normalise_domain(raw: str, domain: str) -> None:
    assert normalise_domain(raw) == domain


@pytest.mark.parametrize("raw", ["", "localhost", "not a domain", "-bad.com", "https://"])
def test_normalise_domain_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="not a domain"):
        normalise_domain(raw)


def test_email_domain_ignores_free_mail() -> None:
    assert email_domain("taro@sakura-seiko.co.jp") == "sakura-seiko.co.jp"
    assert email_domain("taro@gmail.com") is None
    assert email_domain("taro@yahoo.co.jp") is None
