"""Time the full duplicate scan of a contact base (``ichigen duplicates scan``).

Generates N synthetic Japanese contacts (names with readings, unique emails, phones,
addresses) of which a share were entered twice with realistic differences: another email
address, the phone written another way or with one wrong digit, a one-character typo or a
width/kana variant in the name, the address missing. They are loaded through the contacts
service into a fresh SQLite store, then :func:`ichigen.identity.duplicates.scan_contacts`
runs as the product runs it: read every contact, train and score with Splink on DuckDB,
write the review queue. Prints the time of each step, contacts per second, precision and
recall against the known twins, and the projection to 1,000,000 contacts (budget: 10
minutes). With several sizes the projection uses the growth measured between them.

    .venv/bin/python -m bench.dedupe_contacts [--sizes 50000,100000] [--threads N]
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ichigen.core import migrate
from ichigen.core.audit import Actor
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.crm.contacts import service as contacts
from ichigen.demo.names import JP_FAMILY_NAMES, JP_GIVEN_NAMES, JP_PLACES
from ichigen.identity import duplicates
from ichigen.identity.matching import MatchSettings
from ichigen.identity.models import DuplicatePair

BUDGET_SECONDS = 600
TARGET = 1_000_000
ACTOR = Actor.system("bench")
MAIL = ("gmail.com", "yahoo.co.jp", "icloud.com", "outlook.jp", "docomo.ne.jp", "example.co.jp")
_HALF = str.maketrans(
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン",
    "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜﾝ",
)


def _katakana(hiragana: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in hiragana)


#: Endings that make more given names from the demo's (翔 -> 翔太), with their readings, so
#: that full names are about as varied as in a real base (some 50,000 combinations).
_ENDINGS = (
    ("", ""),
    ("太", "た"),
    ("子", "こ"),
    ("美", "み"),
    ("一", "いち"),
    ("郎", "ろう"),
    ("介", "すけ"),
    ("也", "や"),
    ("奈", "な"),
    ("恵", "え"),
)
_ROMAJI_ENDINGS = ("", "ta", "ko", "mi", "ichi", "ro", "suke", "ya", "na", "e")


def _person(rng: random.Random, n: int) -> dict[str, Any]:
    family = rng.choice(JP_FAMILY_NAMES)
    given = rng.choice(JP_GIVEN_NAMES)
    ending = rng.randrange(len(_ENDINGS))
    place = rng.choice(JP_PLACES)
    given_romaji = given.romaji + _ROMAJI_ENDINGS[ending]
    # Addresses people choose: a name-based one, initials with digits, or a nickname.
    style = rng.random()
    if style < 0.4:
        user = f"{given_romaji}.{family.romaji}{n}"
    elif style < 0.7:
        user = f"{given_romaji[0]}{family.romaji}{n}"
    else:
        user = (
            f"{rng.choice(('sky', 'blue', 'neko', 'hana', 'kaze', 'umi'))}_{n}x{rng.randrange(100)}"
        )
    return {
        "last_name": family.written,
        "first_name": given.written + _ENDINGS[ending][0],
        "last_name_reading": _katakana(family.reading),
        "first_name_reading": _katakana(given.reading + _ENDINGS[ending][1]),
        "email": f"{user}@{rng.choice(MAIL)}",
        "phone": f"0{rng.choice('789')}0-{rng.randrange(1000, 10000)}-{rng.randrange(1000, 10000)}",
        "city": place.city,
        "region": place.region,
        "postal_code": f"{place.postal}-{rng.randrange(0, 10000):04d}",
        "street": (
            f"{rng.choice(place.streets)}{rng.randrange(1, 6)}-{rng.randrange(1, 30)}"
            f"-{rng.randrange(1, 20)}"
        ),
    }


def _typo(text: str, rng: random.Random) -> str:
    if len(text) < 2:
        return text
    i = rng.randrange(len(text))
    return text[:i] + text[i + 1 :] if rng.random() < 0.5 else text[:i] + text[i] + text[i:]


def _twin(person: dict[str, Any], rng: random.Random, n: int) -> dict[str, Any]:
    """The same person entered again, as people do it."""
    twin = dict(person)
    user, _, domain = person["email"].partition("@")
    if rng.random() < 0.5:
        # The same handle at another provider (addresses are unique in the CRM).
        twin["email"] = f"{user}@{rng.choice([d for d in MAIL if d != domain])}"
    else:
        # A work address instead of a private one.
        twin["email"] = f"t{n}.{rng.randrange(10**6)}@corp{rng.randrange(1000)}.co.jp"
    digits = person["phone"].replace("-", "")
    change = rng.random()
    if change < 0.4:
        twin["phone"] = digits
    elif change < 0.6:
        i = rng.randrange(4, len(digits))
        twin["phone"] = digits[:i] + str((int(digits[i]) + 1) % 10) + digits[i + 1 :]
    elif change < 0.75:
        twin["phone"] = None
    change = rng.random()
    if change < 0.25:
        twin["first_name"] = _typo(person["first_name"], rng)
    elif change < 0.45:
        twin["last_name_reading"] = person["last_name_reading"].translate(_HALF)
        twin["first_name_reading"] = person["first_name_reading"].translate(_HALF)
    elif change < 0.6:
        twin["first_name_reading"] = None
        twin["last_name_reading"] = None
    if rng.random() < 0.3:
        for key in ("street", "postal_code", "city", "region"):
            twin[key] = None
    return {k: v for k, v in twin.items() if v is not None}


def build(
    database: Database, size: int, twin_share: float, seed: int
) -> tuple[set[frozenset[int]], float]:
    """Load ``size`` contacts, ``twin_share`` of them twins; returns the true pairs by id
    (each original with its twins, and twins of one original with each other)."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    twins: list[tuple[int, int]] = []
    originals = int(size / (1 + twin_share))
    people = [_person(rng, n) for n in range(originals)]
    records.extend(people)
    for n in range(size - originals):
        index = rng.randrange(originals)
        twins.append((index, len(records)))
        records.append(_twin(people[index], rng, n))
    # Addresses are unique in the CRM: a twin that drew a taken address gets a variant.
    used: set[str] = set()
    for n, record in enumerate(records):
        if record["email"] in used:
            user, _, domain = record["email"].partition("@")
            record["email"] = f"{user}.{n}@{domain}"
        used.add(record["email"])
    started = time.perf_counter()
    ids: list[int] = []
    with database.sessionmaker() as session:
        for start in range(0, len(records), 1000):
            results = contacts.write_contacts(
                session, records[start : start + 1000], ACTOR, mode="create", match_on="email"
            )
            failed = [r for r in results if r.status == "error"]
            assert not failed, failed[:3]
            ids.extend(r.id for r in results if r.id is not None)
    # Two twins of one original are the same person too: every pair inside a group counts.
    groups: dict[int, set[int]] = {}
    for original, twin in twins:
        groups.setdefault(original, {ids[original]}).add(ids[twin])
    truth = {
        frozenset(pair) for group in groups.values() for pair in itertools.combinations(group, 2)
    }
    return truth, time.perf_counter() - started


def scan(
    database: Database, threads: int | None
) -> tuple[dict[str, float], int, set[frozenset[int]]]:
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def progress(step: str, done: int, total: int) -> None:
        marks[step] = time.perf_counter() - started

    with database.sessionmaker() as session:
        result = duplicates.scan_contacts(
            session, ACTOR, settings=MatchSettings(threads=threads), progress=progress
        )
        found = {
            frozenset((left, right))
            for left, right in session.execute(
                select(DuplicatePair.left_contact_id, DuplicatePair.right_contact_id)
            )
        }
    total = time.perf_counter() - started
    steps = {
        "read": marks.get("load", 0.0),
        "match": marks.get("match", total) - marks.get("load", 0.0),
        "store": total - marks.get("match", total),
        "total": total,
    }
    return steps, result.contacts, found


def run(size: int, twin_share: float, seed: int, threads: int | None) -> float:
    with tempfile.TemporaryDirectory(prefix="ichigen-dedupe-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        settings = Settings(data_dir=Path(folder), database_url=url, secret_key="b" * 32)
        database = Database(create_db_engine(url), settings)
        migrate.upgrade(database.engine)
        truth, load_seconds = build(database, size, twin_share, seed)
        steps, scanned, found = scan(database, threads)
        database.dispose()
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    print(
        f"{scanned:>9,} contacts ({len(truth):,} true pairs), loaded in {load_seconds:.1f} s; "
        f"scan {steps['total']:.1f} s = read {steps['read']:.1f} + match {steps['match']:.1f} "
        f"+ store {steps['store']:.1f}; {scanned / steps['total']:,.0f} contacts/s; "
        f"{len(found):,} pairs queued, precision {precision:.4f}, recall {recall:.4f}"
    )
    return steps["total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated contact counts")
    parser.add_argument("--twins", type=float, default=0.05, help="share of contacts entered twice")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    times = [run(size, args.twins, args.seed, args.threads) for size in sizes]
    largest, seconds = sizes[-1], times[-1]
    linear = seconds * TARGET / largest
    print(f"projection to {TARGET:,} contacts, linear: {linear:,.0f} s (budget {BUDGET_SECONDS} s)")
    if len(sizes) >= 2 and sizes[0] != sizes[-1]:
        growth = math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0])
        fitted = seconds * (TARGET / largest) ** growth
        print(
            f"projection to {TARGET:,} contacts with the measured growth (time ~ n^{growth:.2f}): "
            f"{fitted:,.0f} s (budget {BUDGET_SECONDS} s)"
        )


if __name__ == "__main__":
    main()
