"""Task pages through HTTP: My day by the browser's time zone with one-click completion,
the list with filters, the form with field errors and stale edits, a task's page, the team
view, notifications and the partial that record pages embed; in English and Japanese."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from tests.api.ui.conftest import csrf_token, form_values, sign_in
from tests.conftest import make_user

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import TeamCreate
from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.schemas import DealCreate
from ichigen.crm.tasks import reminders, service
from ichigen.crm.tasks.schemas import TaskCreate, TaskRead

TZ_COOKIE = "ichigen_tz"


def _task(db: Database, actor: Actor, title: str, **fields: Any) -> TaskRead:
    with db.sessionmaker() as session:
        return service.create_task(
            session, TaskCreate.model_validate({"title": title, **fields}), actor
        )


def _get(db: Database, task_id: int, actor: Actor) -> TaskRead:
    with db.sessionmaker() as session:
        return service.get_task(session, task_id, actor)


def _htmx(browser: TestClient, html: str) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": csrf_token(html)}


def _field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="field-error" id="([\w-]+)-error">([^<]+)</p>', html))


def _section(html: str, key: str) -> str:
    found = re.search(rf'task-section-{key}".*?</section>', html, re.S)
    assert found, key
    return found.group(0)


def test_my_day_buckets_by_the_browsers_time_zone_and_completes_in_one_click(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    now = datetime.now(UTC)
    late = _task(app_db, admin_actor, "Send the quote", due_at=now - timedelta(hours=3))
    _task(app_db, admin_actor, "Prepare the demo", due_at=now + timedelta(days=2))
    _task(app_db, admin_actor, "Someday", priority="urgent")
    with app_db.sessionmaker() as session:
        deals.ensure_default_pipeline(session, admin_actor)
        deals.create_deal(session, DealCreate(name="Press line for Osaka"), admin_actor)
    browser.cookies.set(TZ_COOKIE, "Asia/Tokyo")
    page = browser.get("/my-day")
    assert page.status_code == 200, page.text
    assert "Send the quote" in _section(page.text, "overdue")
    assert "Prepare the demo" in _section(page.text, "upcoming")
    assert "Someday" not in page.text
    assert "Press line for Osaka" in page.text and "No next step" in page.text
    assert 'aria-current="page"' in page.text.split("My day</a>")[0].rsplit("<li>", 1)[1]
    done = browser.post(
        f"/tasks/{late.id}/complete",
        data={"version": str(late.version), "csrf_token": csrf_token(page.text)},
        headers=_htmx(browser, page.text),
    )
    assert done.status_code == 200, done.text
    assert 'id="toast"' in done.text and 'hx-swap-oob="true"' in done.text
    assert "Completed “Send the quote”." in done.text and f"/tasks/{late.id}/reopen" in done.text
    assert "<li" not in done.text  # the row is swapped for nothing
    assert _get(app_db, late.id, admin_actor).status == "done"
    assert "Send the quote" not in browser.get("/my-day").text
    undo = browser.post(f"/tasks/{late.id}/reopen", headers=_htmx(browser, page.text))
    assert undo.status_code == 204 and undo.headers["HX-Refresh"] == "true"
    assert _get(app_db, late.id, admin_actor).status == "open"


def test_a_stale_click_keeps_the_row_and_says_so(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    made = _task(app_db, admin_actor, "Call Sato", due_at=datetime.now(UTC))
    page = browser.get("/my-day").text
    with app_db.sessionmaker() as session:
        service.update_task(session, made.id, service.TaskUpdate(priority="high"), admin_actor)
    stale = browser.post(
        f"/tasks/{made.id}/complete", data={"version": "1"}, headers=_htmx(browser, page)
    )
    assert stale.headers["HX-Reswap"] == "none" and "reload the page" in stale.text
    assert _get(app_db, made.id, admin_actor).status == "open"


def test_completing_a_repeating_task_names_the_next_date(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    made = _task(
        app_db,
        admin_actor,
        "Weekly report",
        due_at=datetime(2026, 3, 10, tzinfo=UTC),
        all_day=True,
        recurrence="FREQ=WEEKLY",
    )
    page = browser.get("/tasks").text
    done = browser.post(f"/tasks/{made.id}/complete", headers=_htmx(browser, page))
    assert "The next one is due 2026-03-17." in done.text


def test_a_plain_form_post_completes_and_comes_back(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    made = _task(app_db, admin_actor, "Call back")
    page = browser.get(f"/tasks/{made.id}")
    assert page.status_code == 200 and "Call back" in page.text
    done = browser.post(
        f"/tasks/{made.id}/complete",
        data={"csrf_token": csrf_token(page.text), "version": "1", "next": "/my-day"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/my-day"
    shown = browser.get(f"/tasks/{made.id}").text
    assert "Reopen" in shown and "Completed" in shown
    evil = browser.post(
        f"/tasks/{made.id}/reopen",
        data={"csrf_token": csrf_token(shown), "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert evil.headers["location"] == f"/tasks/{made.id}"


def test_the_list_filters_and_pages(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        rep = make_user(session, "rep@example.com", "sales", password=None)
    now = datetime.now(UTC)
    for number in range(55):
        due = now + timedelta(days=number, hours=1)
        _task(app_db, admin_actor, f"Mine {number:02}", due_at=due)
    _task(app_db, admin_actor, "Rep & co", assignee_id=rep.id, priority="urgent")
    page = browser.get("/tasks")
    titles = re.findall(r'<a href="/tasks/\d+">([^<]+)</a>', page.text)
    assert titles[:2] == ["Mine 00", "Mine 01"] and len(titles) == 50
    assert "Rep &amp; co" not in titles
    assert 'id="load-more"' in page.text
    more_url = re.search(r'hx-get="(/tasks\?[^"]*cursor=[^"]+)"', page.text)
    assert more_url is not None
    more = browser.get(
        more_url.group(1).replace("&amp;", "&"),
        headers={"HX-Request": "true", "HX-Target": "load-more"},
    )
    assert re.findall(r'<a href="/tasks/\d+">([^<]+)</a>', more.text) == [
        f"Mine {n}" for n in range(50, 55)
    ]
    urgent = browser.get(
        "/tasks",
        params={"assignee": "any", "priority": "urgent"},
        headers={"HX-Request": "true", "HX-Target": "results"},
    )
    assert urgent.headers["HX-Push-Url"] == "/tasks?priority=urgent&assignee=any"
    assert re.findall(r'<a href="/tasks/\d+">([^<]+)</a>', urgent.text) == ["Rep &amp; co"]
    overdue = browser.get("/tasks", params={"due": "overdue"}).text
    assert "No tasks match." in overdue


def test_the_form_shows_errors_by_field_and_creates(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        person = contacts.create_contact(session, ContactCreate(last_name="Sato"), admin_actor)
    form = browser.get("/tasks/new", params={"record_type": "contact", "record_id": person.id})
    assert form.status_code == 200 and "Sato" in form.text
    values = form_values(form.text)
    assert values["record_type"] == "contact" and values["record_id"] == str(person.id)
    values.update(
        title="",
        due_date="2026-03-10",
        due_time="10:00",
        remind_at="2026-03-10T11:00",
        recurrence="custom",
        recurrence_custom="FREQ=SOMETIMES",
    )
    refused = browser.post("/tasks/new", data=values)
    assert refused.status_code == 422
    errors = dict(
        re.findall(r'<p class="field-error" id="([\w-]+)-error">([^<]+)</p>', refused.text)
    )
    assert set(errors) == {"title"}
    values["title"] = "Call Sato"
    refused = browser.post("/tasks/new", data=values)
    errors = dict(
        re.findall(r'<p class="field-error" id="([\w-]+)-error">([^<]+)</p>', refused.text)
    )
    assert set(errors) == {"recurrence", "remind_at"} and "FREQ" in errors["recurrence"]
    values.update(recurrence_custom="FREQ=WEEKLY;BYDAY=TU", remind_at="2026-03-10T09:30")
    browser.cookies.set(TZ_COOKIE, "Asia/Tokyo")
    created = browser.post("/tasks/new", data=values, follow_redirects=False)
    assert created.status_code == 303, created.text
    task_id = int(created.headers["location"].rsplit("/", 1)[1])
    made = _get(app_db, task_id, admin_actor)
    assert made.due_at == datetime(2026, 3, 10, 1, 0, tzinfo=UTC) and not made.all_day
    assert made.remind_at == datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    assert (made.record_type, made.record_id) == ("contact", person.id)
    assert made.recurrence == "FREQ=WEEKLY;BYDAY=TU"
    detail = browser.get(f"/tasks/{task_id}").text
    assert "Task created." in detail and "Sato" in detail


def test_editing_keeps_what_was_there_and_detects_stale_edits(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    made = _task(
        app_db,
        admin_actor,
        "Send the contract",
        due_at=datetime(2026, 3, 10, tzinfo=UTC),
        all_day=True,
        recurrence="FREQ=MONTHLY;BYMONTHDAY=-1",
    )
    form = browser.get(f"/tasks/{made.id}/edit").text
    values = form_values(form)
    assert values["due_date"] == "2026-03-10" and values["due_time"] == ""
    assert values["recurrence"] == "FREQ=MONTHLY;BYMONTHDAY=-1"
    unchanged = browser.post(f"/tasks/{made.id}/edit", data=values, follow_redirects=False)
    assert unchanged.status_code == 303
    assert _get(app_db, made.id, admin_actor).version == 1
    values["title"] = "Send the signed contract"
    saved = browser.post(f"/tasks/{made.id}/edit", data=values, follow_redirects=False)
    assert saved.status_code == 303 and _get(app_db, made.id, admin_actor).version == 2
    values["title"] = "An edit over an old version"
    stale = browser.post(f"/tasks/{made.id}/edit", data=values)
    assert stale.status_code == 409 and "Someone else changed this record" in stale.text
    assert _get(app_db, made.id, admin_actor).title == "Send the signed contract"
    history = browser.get(f"/tasks/{made.id}").text
    assert "Send the signed contract" in history and "Changed" in history


def test_a_records_partial_lists_its_tasks_and_adds_one(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    with app_db.sessionmaker() as session:
        person = contacts.create_contact(session, ContactCreate(last_name="Sato"), admin_actor)
    _task(app_db, admin_actor, "About Sato", record_type="contact", record_id=person.id)
    _task(app_db, admin_actor, "About nobody")
    path = f"/tasks/for/contact/{person.id}"
    partial = browser.get(path, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and "<html" not in partial.text
    assert "About Sato" in partial.text and "About nobody" not in partial.text
    headers = _htmx(browser, partial.text)
    refused = browser.post(path, data={"title": "", "due_date": "2026-03-10"}, headers=headers)
    assert refused.status_code == 422 and "title-error" in refused.text
    added = browser.post(
        path, data={"title": "Send a brochure", "due_date": "2026-03-11"}, headers=headers
    )
    assert added.status_code == 200 and "Added “Send a brochure”." in added.text
    assert "Send a brochure" in added.text and "About Sato" in added.text
    assert browser.get("/tasks/for/ticket/1").status_code == 404
    assert browser.get("/tasks/for/contact/0").status_code == 404


def test_the_team_view(browser: TestClient, app_db: Database, admin_actor: Actor) -> None:
    assert "There are no teams yet." in browser.get("/tasks/team").text
    with app_db.sessionmaker() as session:
        team = auth_service.create_team(session, TeamCreate(name="Kansai"), admin_actor)
        rep = make_user(session, "aiko@example.com", "sales", team_id=team.id, password=None)
    _task(
        app_db,
        admin_actor,
        "Visit Osaka",
        assignee_id=rep.id,
        due_at=datetime.now(UTC) - timedelta(days=1),
    )
    page = browser.get("/tasks/team", params={"team": team.id})
    assert page.status_code == 200
    assert "Kansai" in page.text and "Aiko" in page.text and "Visit Osaka" in page.text
    assert "1 overdue" in page.text


def test_notifications_and_the_badge(
    browser: TestClient, app_db: Database, admin_actor: Actor
) -> None:
    made = _task(app_db, admin_actor, "Call Sato", remind_at=datetime(2026, 1, 1, tzinfo=UTC))
    _task(app_db, admin_actor, "Call Tanaka", remind_at=datetime(2026, 1, 1, tzinfo=UTC))
    reminders.run_reminders(app_db, None)
    badge = browser.get("/notifications/badge", headers={"HX-Request": "true"})
    assert "notification-count" in badge.text and ">2<" in badge.text
    page = browser.get("/notifications")
    assert "Call Sato" in page.text and "Call Tanaka" in page.text and "2 unread" in page.text
    assert 'hx-get="/notifications/badge"' in page.text
    ids = re.findall(r'action="/notifications/(\d+)/open"', page.text)
    opened = browser.post(
        f"/notifications/{ids[-1]}/open",
        data={"csrf_token": csrf_token(page.text)},
        follow_redirects=False,
    )
    assert opened.headers["location"] == f"/tasks/{made.id}"
    assert ">1<" in browser.get("/notifications/badge").text
    cleared = browser.post(
        "/notifications/read-all",
        data={"csrf_token": csrf_token(page.text)},
        follow_redirects=False,
    )
    assert cleared.status_code == 303
    assert "notification-count" not in browser.get("/notifications/badge").text


def test_japanese_pages(browser: TestClient, app_db: Database, admin_actor: Actor) -> None:
    with app_db.sessionmaker() as session:
        auth_service.set_locale(session, admin_actor.user_id or 0, "ja")
    _task(app_db, admin_actor, "見積書を送る", due_at=datetime.now(UTC) - timedelta(days=1))
    page = browser.get("/my-day").text
    assert "<h1>マイデイ</h1>" in page and "期限切れ" in page
    assert "タスク" in browser.get("/tasks").text
    assert "新しいタスク" in browser.get("/tasks/new").text


def test_pages_need_the_right_role(app_db: Database, anonymous: TestClient) -> None:
    assert anonymous.get("/my-day", follow_redirects=False).status_code == 303
    with app_db.sessionmaker() as session:
        make_user(session, "viewer@example.com", "viewer")
    sign_in(anonymous, "viewer@example.com")
    assert anonymous.get("/my-day").status_code == 403
    assert anonymous.get("/notifications").status_code == 200
    assert "/my-day" not in anonymous.get("/contacts").text
