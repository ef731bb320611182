"""Sign-in, sign-out, the session cookie, CSRF protection and the language switch."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.api.ui.conftest import PASSWORD, csrf_token, sign_in
from tests.conftest import make_user

from ichigen.auth import service as auth_service
from ichigen.auth.models import UserSession
from ichigen.auth.schemas import UserRead
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.web.app import create_app


def test_pages_send_strangers_to_sign_in_and_back(
    anonymous: TestClient, admin_user: UserRead
) -> None:
    response = anonymous.get("/contacts?q=yamada", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fcontacts%3Fq%3Dyamada"

    page = anonymous.get(response.headers["location"])
    assert 'name="next" value="/contacts?q=yamada"' in page.text
    signed = anonymous.post(
        "/login",
        data={
            "email": "ADMIN@example.com",
            "password": PASSWORD,
            "next": "/contacts?q=yamada",
            "csrf_token": csrf_token(page.text),
        },
        follow_redirects=False,
    )
    assert signed.status_code == 303
    assert signed.headers["location"] == "/contacts?q=yamada"
    cookie = next(
        h for h in signed.headers.get_list("set-cookie") if h.startswith("ichigen_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert anonymous.get("/contacts").status_code == 200


def test_htmx_requests_are_redirected_with_a_header(anonymous: TestClient) -> None:
    response = anonymous.get(
        "/contacts?q=a",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/contacts?q=a"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=%2Fcontacts%3Fq%3Da"


def test_only_local_paths_are_followed_after_sign_in(
    anonymous: TestClient, admin_user: UserRead
) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        token = csrf_token(anonymous.get("/login").text)
        response = anonymous.post(
            "/login",
            data={
                "email": admin_user.email,
                "password": PASSWORD,
                "next": target,
                "csrf_token": token,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == "/contacts", target
        anonymous.cookies.clear()


def test_a_wrong_password_is_refused_with_a_message(
    anonymous: TestClient, admin_user: UserRead
) -> None:
    token = csrf_token(anonymous.get("/login").text)
    response = anonymous.post(
        "/login",
        data={"email": admin_user.email, "password": "not-the-password", "csrf_token": token},
    )
    assert response.status_code == 401
    assert "The email or password is not right." in response.text
    assert "ichigen_session" not in anonymous.cookies
    assert anonymous.get("/contacts", follow_redirects=False).status_code == 303


def test_repeated_failures_are_throttled(anonymous: TestClient, admin_user: UserRead) -> None:
    token = csrf_token(anonymous.get("/login").text)
    statuses = []
    for _ in range(6):
        response = anonymous.post(
            "/login",
            data={"email": admin_user.email, "password": "wrong-password!", "csrf_token": token},
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert "Too many failed sign-in attempts" in response.text
    # Even the right password waits until the window has passed.
    response = anonymous.post(
        "/login", data={"email": admin_user.email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 429


def test_the_cookie_is_secure_when_configured(app_db: Database, admin_user: UserRead) -> None:
    settings = Settings(
        data_dir=app_db.settings.data_dir, secret_key=app_db.settings.secret_key, cookie_secure=True
    )
    with TestClient(create_app(settings, app_db), base_url="https://testserver") as client:
        token = csrf_token(client.get("/login").text)
        response = client.post(
            "/login",
            data={"email": admin_user.email, "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("ichigen_session=")
    )
    assert "Secure" in cookie


def test_sign_in_without_the_form_token_is_rejected(
    anonymous: TestClient, admin_user: UserRead
) -> None:
    anonymous.get("/login")
    response = anonymous.post("/login", data={"email": admin_user.email, "password": PASSWORD})
    assert response.status_code == 403
    assert "ichigen_session" not in anonymous.cookies


def test_unsafe_requests_need_the_session_token(browser: TestClient, app_db: Database) -> None:
    form = {"last_name": "Forged"}
    assert browser.post("/contacts/new", data=form).status_code == 403
    assert browser.post("/contacts/new", data={**form, "csrf_token": "x" * 43}).status_code == 403
    assert (
        browser.post("/contacts/new", data=form, headers={"X-CSRF-Token": "y" * 43}).status_code
        == 403
    )
    # The anonymous double-submit token is not the session's.
    assert (
        browser.post(
            "/contacts/new", data={**form, "csrf_token": browser.cookies.get("ichigen_csrf")}
        ).status_code
        == 403
    )
    token = csrf_token(browser.get("/contacts/new").text)
    created = browser.post(
        "/contacts/new", data={**form, "csrf_token": token}, follow_redirects=False
    )
    assert created.status_code == 303
    # HTMX sends the token as a header instead of a form field.
    page = browser.get(created.headers["location"])
    assert f'hx-headers=\'{{"X-CSRF-Token": "{token}"}}\'' in page.text
    assert "Forged" in page.text


def test_sign_out_ends_the_session(browser: TestClient, app_db: Database) -> None:
    token = csrf_token(browser.get("/contacts").text)
    assert browser.post("/logout").status_code == 403
    response = browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    with app_db.sessionmaker() as session:
        assert session.scalars(select(UserSession)).all() == []
    assert browser.get("/contacts", follow_redirects=False).status_code == 303
    assert "You have signed out." in browser.get("/login").text


def test_language_follows_user_then_cookie_then_browser(
    anonymous: TestClient, app_db: Database
) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "hanako@example.jp", "sales")
    page = anonymous.get("/login", headers={"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"})
    assert '<html lang="ja">' in page.text and "ichigen にサインイン" in page.text
    assert "Sign in to ichigen" in anonymous.get("/login", headers={"Accept-Language": "de"}).text

    # The switch before sign-in sets a cookie, which beats the browser's preference.
    switched = anonymous.post(
        "/locale",
        data={"locale": "ja", "next": "/login", "csrf_token": csrf_token(page.text)},
        follow_redirects=False,
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/login"
    assert "ichigen にサインイン" in anonymous.get("/login", headers={"Accept-Language": "en"}).text

    # Signing in keeps that choice on the user, who sees Japanese on any browser.
    sign_in(anonymous, "hanako@example.jp")
    with app_db.sessionmaker() as session:
        user = auth_service.find_user_by_email(session, "hanako@example.jp")
        assert user is not None and user.locale == "ja"
    anonymous.cookies.delete("ichigen_locale")
    listing = anonymous.get("/contacts", headers={"Accept-Language": "en"})
    assert "<h1>コンタクト</h1>" in listing.text and "新規コンタクト" in listing.text

    # Switching back to English is stored on the user.
    anonymous.post(
        "/locale",
        data={"locale": "en", "next": "/contacts", "csrf_token": csrf_token(listing.text)},
    )
    with app_db.sessionmaker() as session:
        user = auth_service.find_user_by_email(session, "hanako@example.jp")
        assert user is not None and user.locale == "en"
    anonymous.cookies.delete("ichigen_locale")
    assert "<h1>Contacts</h1>" in anonymous.get("/contacts", headers={"Accept-Language": "ja"}).text


def test_error_pages_are_pages_in_the_shell(browser: TestClient) -> None:
    missing = browser.get("/contacts/987654")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "This page does not exist." in missing.text and 'aria-label="Main"' in missing.text
    assert browser.get("/contacts/not-a-number").status_code == 404
    bad_cursor = browser.get("/contacts?cursor=forged")
    assert bad_cursor.status_code == 400
    assert "The cursor is not valid" in bad_cursor.text


def test_pages_carry_security_headers(browser: TestClient) -> None:
    response = browser.get("/contacts")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_follow_the_role(app_db: Database, admin_user: UserRead) -> None:
    with app_db.sessionmaker() as session:
        make_user(session, "viewer@example.com", "viewer")
    with TestClient(create_app(app_db.settings, app_db)) as client:
        sign_in(client, "viewer@example.com")
        page = client.get("/contacts")
        assert page.status_code == 200
        assert "New contact" not in page.text and "Import CSV" not in page.text
        token = csrf_token(page.text)
        refused = client.post("/contacts/new", data={"csrf_token": token, "last_name": "X"})
        assert refused.status_code == 403
        assert "You are not allowed to do this." in refused.text
