"""The demo data: a believable CRM, loaded through the services, reproducible, never clobbering."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from tests.conftest import make_user

from ichigen.auth import service as auth_service
from ichigen.core.audit import Actor, record_history
from ichigen.core.custom_fields import list_fields
from ichigen.core.db import Database, create_db_engine
from ichigen.core.errors import Conflict
from ichigen.core.settings import Settings
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.demo.service import (
    DEMO_ADMIN_EMAIL,
    DEMO_PASSWORD,
    DemoSize,
    demo_status,
    load_demo,
)

TINY = DemoSize(companies=30, contacts=300, edited_share=0.2, batch=100)
READER = Actor.system("test-reader")


def _all_contacts(session: Session) -> list[contacts.ContactRead]:
    return list(contacts.iter_contacts(session, READER))


def test_demo_loads_a_believable_crm(db: Database) -> None:
    summary = load_demo(db, size=TINY, seed=7)

    assert not summary.already_loaded
    assert (summary.companies, summary.contacts, summary.teams) == (30, 300, 5)
    assert summary.admin_email == DEMO_ADMIN_EMAIL
    assert ("sales", "shota.sato@demo.ichigen.dev") in summary.sign_ins
    with db.sessionmaker() as session:
        admin = auth_service.authenticate(
            session, db.settings, DEMO_ADMIN_EMAIL, DEMO_PASSWORD, "127.0.0.1"
        )
        assert admin.role == "admin"
        roles = Counter(u.role.value for u in auth_service.list_users(session))
        assert set(roles) == {
            "admin",
            "manager",
            "sales",
            "support",
            "marketing",
            "analyst",
            "viewer",
        }
        assert len(auth_service.list_teams(session)) == 5

        fields = {f.key: f for f in list_fields(session, "contacts")}
        assert fields["nps_score"].indexed and fields["customer_tier"].indexed
        assert {"contract_renewal", "newsletter_opt_in"} <= set(fields)

        people = _all_contacts(session)
        assert len(people) == 300
        japanese = [c for c in people if c.last_name_reading]
        assert len(japanese) > 150
        assert all(c.full_name.startswith(c.last_name or "") for c in japanese)
        at_company = [c for c in people if c.company is not None]
        assert len(at_company) > 200
        on_domain = [
            c for c in at_company if c.company and c.primary_email.endswith("@" + c.company.domain)
        ]
        assert len(on_domain) > 0.9 * len(at_company)
        phones = [c.primary_phone for c in people if c.primary_phone]
        assert all(p.startswith("+") and p[1:].isdigit() for p in phones)
        assert any(p.startswith(("+8190", "+8180", "+8170")) for p in phones)
        stages = Counter(c.lifecycle_stage for c in people)
        assert len(stages) >= 6 and stages.most_common(1)[0][1] < 150
        assert len({c.owner_id for c in people if c.owner_id}) >= 5
        assert any(c.custom.get("nps_score") is not None for c in people)
        assert any(c.tags for c in people)

        edited = [c for c in people if c.version > 1]
        assert edited
        history = record_history(session, "contacts", edited[0].id)
        assert len(history) >= 2
        assert {h.action for h in history} == {"create", "update"}
        assert len({c.updated_at for c in people}) > 1

        firms = companies.list_companies(session, READER, limit=500).items
        assert {f.revenue_currency for f in firms} <= {"JPY", "USD"}
        assert all(f.domain and f.industry and f.employees for f in firms)
        assert len({f.name for f in firms}) == len(firms)


def test_loading_again_changes_nothing(db: Database) -> None:
    load_demo(db, size=TINY, seed=7)

    again = load_demo(db, size=TINY, seed=8)

    assert again.already_loaded
    assert demo_status(db) == "loaded"
    with db.sessionmaker() as session:
        assert len(_all_contacts(session)) == 300


def test_the_demo_never_goes_into_a_store_with_other_data(db: Database) -> None:
    with db.sessionmaker() as session:
        make_user(session, "owner@example.com", "admin")

    with pytest.raises(Conflict):
        load_demo(db, size=TINY)

    assert demo_status(db) == "other"
    with db.sessionmaker() as session:
        assert auth_service.find_user_by_email(session, DEMO_ADMIN_EMAIL) is None
        assert not _all_contacts(session)


def _fingerprint(tmp_path: Path, name: str, seed: int) -> list[tuple[object, ...]]:
    path = tmp_path / f"{name}.db"
    database = Database(
        create_db_engine(f"sqlite:///{path}"), Settings(data_dir=tmp_path, secret_key="s" * 20)
    )
    try:
        load_demo(database, size=TINY, seed=seed)
        with database.sessionmaker() as session:
            return [
                (c.full_name, c.primary_email, c.primary_phone, c.lifecycle_stage, c.company_id)
                for c in _all_contacts(session)
            ]
    finally:
        database.dispose()


def test_the_same_seed_loads_the_same_people(tmp_path: Path) -> None:
    first = _fingerprint(tmp_path, "a", seed=11)
    second = _fingerprint(tmp_path, "b", seed=11)
    other = _fingerprint(tmp_path, "c", seed=12)

    assert first == second
    assert first != other


def test_the_demo_command_loads_once_and_prints_the_sign_in(tmp_path: Path) -> None:
    env = {**os.environ, "ICHIGEN_DATA_DIR": str(tmp_path), "ICHIGEN_SECRET_KEY": "k" * 32}
    env.pop("ICHIGEN_DATABASE_URL", None)
    command = [sys.executable, "-m", "ichigen.cli.main", "demo", "--seed", "3", "--port", "8798"]

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    assert first.returncode == 0, first.stderr
    printed = " ".join(first.stdout.split())
    assert "loaded 200 companies, 2,000 contacts" in printed
    assert "sales: 2 pipelines," in printed and " won, " in printed
    assert DEMO_ADMIN_EMAIL in first.stdout and DEMO_PASSWORD in first.stdout
    # The example call names the port the server is to listen on.
    assert 'http://127.0.0.1:8798/v1/track -d \'{"userId": "demo-1"' in printed
    assert second.returncode == 0, second.stderr
    assert "demo data already loaded" in second.stdout
    assert (tmp_path / "ichigen.db").exists()
