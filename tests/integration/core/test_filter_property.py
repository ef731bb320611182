"""Compiled filters select exactly what a plain-Python evaluation of them selects, on random
contacts and random filters (SQLite; a bounded number of examples)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, field, user

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.core.text import fold
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.models import Contact
from ichigen.crm.contacts.schemas import ContactRead

CITIES = ["Tokyo", "tokyo", "Osaka", "osaka-shi", "Nara", "Kyo_to", "100%", "a\\b"]
LAST_NAMES = ["Abe", "abe", "Baba", "Chiba", "山田", "ヤマダ"]
TAGS = ["vip", "VIP", "expo", "new", "展示会"]

Row = dict[str, Any]
Check = Callable[[ContactRead], bool]


def _records(owner_ids: list[int]) -> st.SearchStrategy[list[Row]]:
    record = st.fixed_dictionaries(
        {
            "last_name": st.sampled_from(LAST_NAMES),
            "first_name": st.one_of(st.none(), st.sampled_from(["Taro", "hanako", "太郎"])),
            "city": st.one_of(st.none(), st.sampled_from(CITIES)),
            "do_not_email": st.booleans(),
            "owner_id": st.one_of(st.none(), st.sampled_from(owner_ids)),
            "tags": st.lists(st.sampled_from(TAGS), max_size=3),
            "custom": st.one_of(st.just({}), st.builds(lambda n: {"score": n}, st.integers(-3, 3))),
        }
    )
    return st.lists(record, max_size=8)


def _text(value: str | None, op: str, arg: str) -> bool:
    """SQL semantics for a text column: nulls match only ``ne`` and ``is_null``."""
    if op == "is_null":
        return (value is None) == (arg == "true")
    if op == "ne":
        return value is None or value != arg
    if value is None:
        return False
    if op == "in":
        return value in arg.split(",")
    if op == "contains":
        return arg.lower() in value.lower()
    if op == "startswith":
        return value.lower().startswith(arg.lower())
    return bool(
        {
            "eq": value == arg,
            "lt": value < arg,
            "lte": value <= arg,
            "gt": value > arg,
            "gte": value >= arg,
        }[op]
    )


def _number(value: int | None, op: str, arg: int) -> bool:
    if op == "ne":
        return value is None or value != arg
    if value is None:
        return False
    return bool(
        {
            "eq": value == arg,
            "lt": value < arg,
            "lte": value <= arg,
            "gt": value > arg,
            "gte": value >= arg,
        }[op]
    )


COMPARE = ["eq", "ne", "lt", "lte", "gt", "gte"]


def _filters(owner_ids: list[int]) -> st.SearchStrategy[tuple[str, Check]]:
    city = st.builds(
        lambda op, arg: (f"city:{op}:{arg}", lambda c: _text(c.city, op, arg)),
        st.sampled_from([*COMPARE, "contains", "startswith"]),
        st.sampled_from([*CITIES, "tok", "O", "%", "_", "\\", "shi"]),
    )
    city_in = st.builds(
        lambda args: (f"city:in:{','.join(args)}", lambda c: _text(c.city, "in", ",".join(args))),
        st.lists(st.sampled_from(CITIES[:5]), min_size=1, max_size=3),
    )
    city_null = st.builds(
        lambda arg: (f"city:is_null:{arg}", lambda c: _text(c.city, "is_null", arg)),
        st.sampled_from(["true", "false"]),
    )
    last_name = st.builds(
        lambda op, arg: (f"last_name:{op}:{arg}", lambda c: _text(c.last_name, op, arg)),
        st.sampled_from(COMPARE),
        st.sampled_from(LAST_NAMES),
    )
    name = st.builds(
        lambda arg: (
            f"name:startswith:{arg}",
            lambda c: fold(c.full_name).startswith(fold(arg)),
        ),
        st.sampled_from(["abe", "ABE", "やまだ", "ﾔﾏﾀﾞ", "taro", "baba h"]),
    )
    owner = st.builds(
        lambda op, arg: (f"owner_id:{op}:{arg}", lambda c: _number(c.owner_id, op, arg)),
        st.sampled_from(COMPARE),
        st.sampled_from(owner_ids),
    )
    owner_null = st.builds(
        lambda arg: (
            f"owner_id:is_null:{arg}",
            lambda c: (c.owner_id is None) == (arg == "true"),
        ),
        st.sampled_from(["true", "false"]),
    )
    flag = st.builds(
        lambda op, arg: (
            f"do_not_email:{op}:{arg}",
            lambda c: (c.do_not_email == (arg in ("true", "1"))) == (op == "eq"),
        ),
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(["true", "false", "1", "0"]),
    )
    tags = st.builds(
        lambda arg: (
            f"tags:contains:{arg}",
            lambda c: any(t.lower() == arg.lower() for t in c.tags),
        ),
        st.sampled_from([*TAGS, "ex"]),
    )
    score = st.builds(
        lambda op, arg: (
            f"cf.score:{op}:{arg}",
            lambda c: _number(c.custom.get("score"), op, arg),
        ),
        st.sampled_from(COMPARE),
        st.integers(-3, 3),
    )
    return st.one_of(
        city, city_in, city_null, last_name, name, owner, owner_null, flag, tags, score
    )


def test_compiled_filters_select_what_python_selects(sqlite_db: Database) -> None:
    """Random contacts and random filters."""
    with sqlite_db.sessionmaker() as session:
        admin = actor(session, "admin@example.com", "admin")
        owner_ids = [user(session, f"owner{n}@example.com").id for n in range(2)]
        field(session, "score", "number", indexed=True)
        _check(session, admin, owner_ids)


def test_random_filters_on_a_dense_data_set(sqlite_db: Database) -> None:
    """Many random filter combinations over contacts covering every value of every field."""
    with sqlite_db.sessionmaker() as session:
        admin = actor(session, "admin@example.com", "admin")
        owner_ids = [user(session, f"owner{n}@example.com").id for n in range(2)]
        field(session, "score", "number")
        records: list[Row] = [
            {
                "last_name": LAST_NAMES[n % len(LAST_NAMES)],
                "first_name": [None, "Taro", "hanako", "太郎"][n % 4],
                "city": [*CITIES, None][n % (len(CITIES) + 1)],
                "do_not_email": n % 2 == 0,
                "owner_id": [None, *owner_ids][n % 3],
                "tags": [TAGS[n % len(TAGS)], TAGS[(n * 3) % len(TAGS)]][: n % 3],
                "custom": {"score": n % 7 - 3} if n % 5 else {},
            }
            for n in range(63)
        ]
        assert all(
            r.status == "created"
            for r in contacts.write_contacts(session, records, admin, mode="create")
        )
        everyone = contacts.list_contacts(session, admin, sort="id", limit=500).items

        @settings(max_examples=300, deadline=None, derandomize=True, database=None)
        @given(chosen=st.lists(_filters(owner_ids), min_size=1, max_size=3))
        def run(chosen: list[tuple[str, Check]]) -> None:
            page = contacts.list_contacts(
                session, admin, filters=[f for f, _ in chosen], sort="id", limit=500
            )
            expected = [c.id for c in everyone if all(keep(c) for _, keep in chosen)]
            assert [c.id for c in page.items] == expected, [f for f, _ in chosen]

        run()


def _check(session: Session, admin: Actor, owner_ids: list[int]) -> None:
    @settings(
        max_examples=50,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        records=_records(owner_ids), chosen=st.lists(_filters(owner_ids), min_size=1, max_size=2)
    )
    def run(records: list[Row], chosen: list[tuple[str, Check]]) -> None:
        try:
            results = contacts.write_contacts(session, records, admin, mode="create")
            assert all(r.status == "created" for r in results), results
            everyone = contacts.list_contacts(session, admin, sort="id", limit=500).items
            assert len(everyone) == len(records)
            page = contacts.list_contacts(
                session, admin, filters=[f for f, _ in chosen], sort="id", limit=500
            )
            expected = [c.id for c in everyone if all(keep(c) for _, keep in chosen)]
            assert [c.id for c in page.items] == expected, [f for f, _ in chosen]
        finally:
            session.rollback()
            session.execute(delete(Contact))
            session.commit()

    run()
