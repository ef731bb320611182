"""The duplicate scan fills the review queue; decisions stick across re-scans; the check at
contact creation finds look-alikes by email, phone and name."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, contact

from ichigen.core.audit import Actor
from ichigen.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactUpdate, EmailIn, PhoneIn
from ichigen.identity import duplicates
from ichigen.identity.duplicates import DuplicateCheck, PairMergeRequest
from ichigen.identity.matching import MatchSettings
from ichigen.identity.models import DuplicatePair

FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["翔", "蓮", "陽菜", "結衣", "大輝", "美咲", "拓海", "葵", "悠真", "凛"]
CITIES = ["札幌", "仙台", "横浜", "名古屋", "京都", "大阪", "神戸", "広島", "福岡", "那覇"]


@pytest.fixture
def manager(session: Session) -> Actor:
    return actor(session, "manager@example.com", "manager")


def _base(session: Session, by: Actor) -> tuple[list[int], list[tuple[int, int]]]:
    """Forty different people and three typed twice (a typo, another address or number)."""
    ids = []
    for n in range(40):
        family, given = FAMILY[n % 10], GIVEN[(n * 3 + n // 10) % 10]
        ids.append(
            contact(
                session,
                by,
                last_name=family,
                first_name=given,
                email=f"person{n}@example{n % 7}.jp",
                phone=f"090-{1000 + n:04d}-{2000 + n * 7:04d}",
                city=CITIES[(n * 7) % 10],
            ).id
        )
    twins = [
        contact(
            session,
            by,
            last_name=FAMILY[0],
            first_name=GIVEN[0],
            email="person0.home@example.com",
            phone="090-1000-2000",
            city=CITIES[0],
        ).id,
        contact(
            session,
            by,
            last_name=FAMILY[1],
            first_name=GIVEN[3],
            email="person1@example1.co.jp",
            phone="09010012007",
            city=CITIES[7],
        ).id,
        contact(
            session,
            by,
            last_name=FAMILY[2],
            first_name=GIVEN[6],
            email="p2@other.jp",
            phone="090-1002-2014",
            city=CITIES[4],
        ).id,
    ]
    return ids, [(ids[0], twins[0]), (ids[1], twins[1]), (ids[2], twins[2])]


def _pairs(session: Session) -> dict[tuple[int, int], str]:
    return {
        (p.left_contact_id, p.right_contact_id): p.status
        for p in session.scalars(select(DuplicatePair))
    }


SETTINGS = MatchSettings(threads=2)


def test_scan_queues_the_twins_once_and_remembers_decisions(
    session: Session, manager: Actor
) -> None:
    _, twins = _base(session, manager)
    first = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert first.contacts == 43
    queued = _pairs(session)
    for pair in twins:
        assert queued.get(pair) == "pending", (pair, queued)
    assert first.queued == len(queued) and first.candidates == len(queued)

    page = duplicates.list_pairs(session, manager, limit=50)
    item = next(p for p in page.items if (p.left_contact_id, p.right_contact_id) == twins[1])
    assert item.match_probability >= 0.9
    assert item.contributions["phone"] > 0 and item.contributions["email"] > 0
    assert item.left.id == twins[1][0] and item.right.id == twins[1][1]

    # A re-scan adds nothing and keeps each pair once.
    again = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert again.queued == 0 and again.updated == len(queued)
    assert session.scalar(select(func.count()).select_from(DuplicatePair)) == len(queued)

    # Not a duplicate: out of the queue, and never queued again.
    pair_id = item.id
    duplicates.mark_not_duplicate(session, pair_id, manager)
    third = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert third.already_decided >= 1 and third.queued == 0
    assert _pairs(session)[twins[1]] == "not_duplicate"
    assert pair_id not in {p.id for p in duplicates.list_pairs(session, manager, limit=50).items}
    with pytest.raises(Conflict):
        duplicates.merge_pair(session, pair_id, PairMergeRequest(), manager)


def test_merging_a_queued_pair_decides_it_and_undo_requeues_it(
    session: Session, manager: Actor
) -> None:
    _, twins = _base(session, manager)
    duplicates.scan_contacts(session, manager, settings=SETTINGS)
    pair = next(
        p
        for p in duplicates.list_pairs(session, manager, limit=50).items
        if (p.left_contact_id, p.right_contact_id) == twins[0]
    )
    with pytest.raises(ValidationFailed):
        duplicates.merge_pair(session, pair.id, PairMergeRequest(survivor_id=999), manager)
    merge = duplicates.merge_pair(
        session, pair.id, PairMergeRequest(survivor_id=twins[0][1]), manager
    )
    assert (merge.survivor_id, merge.merged_id, merge.pair_id) == (
        twins[0][1],
        twins[0][0],
        pair.id,
    )
    assert _pairs(session)[twins[0]] == "merged"
    assert pair.id not in {p.id for p in duplicates.list_pairs(session, manager, limit=50).items}
    with pytest.raises(Conflict):
        duplicates.merge_pair(session, pair.id, PairMergeRequest(), manager)
    # A re-scan while merged does not queue the pair again.
    assert duplicates.scan_contacts(session, manager, settings=SETTINGS).queued == 0

    duplicates.undo_merge(session, merge.id, manager)
    assert _pairs(session)[twins[0]] == "pending"
    assert pair.id in {p.id for p in duplicates.list_pairs(session, manager, limit=50).items}
    with pytest.raises(NotFound):
        duplicates.get_pair(session, 987654, manager)


def test_only_identity_writers_scan(session: Session, manager: Actor) -> None:
    rep = actor(session, "rep@example.com", "sales")
    with pytest.raises(PermissionDenied):
        duplicates.scan_contacts(session, rep)
    assert duplicates.scan_contacts(session, manager, settings=SETTINGS).contacts == 0


def test_check_finds_look_alikes_by_email_phone_and_name(session: Session, manager: Actor) -> None:
    taro = contact(
        session,
        manager,
        last_name="山田",
        first_name="太郎",
        last_name_reading="ヤマダ",
        first_name_reading="タロウ",
        email="taro@example.jp",
        phone="090-1111-2222",
    ).id
    other = contact(session, manager, last_name="Suzuki", first_name="Hanako").id

    def check(**fields: object) -> dict[int, list[str]]:
        data = DuplicateCheck.model_validate(fields)
        return {m.id: m.reasons for m in duplicates.check_new_contact(session, data, manager)}

    assert check(email="TARO@Example.JP") == {taro: ["email"]}
    assert check(phone="+81 90 1111 2222") == {taro: ["phone"]}
    assert check(last_name="山田", first_name="太郎") == {taro: ["name"]}
    assert check(last_name_reading="ﾔﾏﾀﾞ", first_name_reading="ﾀﾛｳ") == {taro: ["name"]}
    assert check(first_name="hanako", last_name="SUZUKI") == {other: ["name"]}
    both = check(last_name="山田", first_name="太郎", email="taro@example.jp", phone="09011112222")
    assert both == {taro: ["email", "phone", "name"]}
    assert check(last_name="山田", first_name="太郎", exclude_id=taro) == {}
    assert check(email="not an address", phone="12") == {}
    assert check(last_name="山田") == {}
    assert contacts.existing_contact_ids(session, [taro, other]) == {taro, other}


def test_a_tiny_base_scans_without_error(session: Session, manager: Actor) -> None:
    """Two or three contacts with no exact match (prior 0), or with every pair an exact
    match (more than the assumed recall allows): the scan answers, it does not crash."""
    contact(session, manager, last_name="山田", first_name="太郎", email="a@x.jp")
    contact(session, manager, last_name="鈴木", first_name="花子", email="b@y.jp")
    assert duplicates.scan_contacts(session, manager, settings=SETTINGS).contacts == 2
    contact(session, manager, last_name="佐藤", email="c@z.jp", phone="090-1111-2222")
    contact(session, manager, last_name="佐藤", email="d@z.jp", phone="090-1111-2222")
    result = duplicates.scan_contacts(session, manager, settings=SETTINGS)
    assert result.contacts == 4 and result.queued == len(_pairs(session))


def test_a_rescan_takes_pairs_it_no_longer_finds_out_of_the_queue(
    session: Session, manager: Actor
) -> None:
    _, twins = _base(session, manager)
    duplicates.scan_contacts(session, manager, settings=SETTINGS)
    right = twins[0][1]
    assert _pairs(session).get(twins[0]) == "pending"
    # The rep corrects the second record: another person altogether.
    contacts.update_contact(
        session,
        right,
        ContactUpdate(
            last_name="Okafor",
            first_name="Ngozi",
            emails=[EmailIn(email="ngozi@example.ng")],
            phones=[PhoneIn(number="+234 803 555 0100")],
            city="Lagos",
        ),
        manager,
    )
    session.commit()

    again = duplicates.scan_contacts(session, manager, settings=SETTINGS)

    assert again.withdrawn == 1
    assert twins[0] not in _pairs(session)
    assert _pairs(session).get(twins[1]) == "pending"  # still found: kept
    history = duplicates.get_scan(session, again.scan_id, manager)
    assert history.withdrawn == 1
