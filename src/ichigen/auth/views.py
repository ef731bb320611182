"""Sign-in, sign-out and the language switch."""

from __future__ import annotations

from fastapi import Response

from ichigen.auth import service
from ichigen.core.errors import NotAuthenticated, TooManyRequests
from ichigen.web.deps import SESSION_COOKIE, DbSession
from ichigen.web.i18n import LOCALE_COOKIE, LOCALES
from ichigen.web.templating import (
    NAVIGATION,
    AnyVisitor,
    Form,
    build_ui,
    form_text,
    local_path,
    session_cookie_kwargs,
    ui_router_for,
)

router = ui_router_for()


def _home() -> str:
    return NAVIGATION[0].href if NAVIGATION else "/"


@router.get("/login")
def login_page(ui: AnyVisitor, next: str | None = None) -> Response:
    """The sign-in form (a signed-in visitor goes straight on)."""
    if ui.info is not None:
        return ui.redirect(local_path(next) or _home())
    return ui.render("auth/login.html", {"next": local_path(next) or "", "email": "", "error": ""})


@router.post("/login")
def login(ui: AnyVisitor, session: DbSession, form: Form) -> Response:
    """Check the password, start a session and go where the visitor was heading."""
    email = form_text(form, "email", 320)
    raw_password = form.get("password")
    password = raw_password[:1000] if isinstance(raw_password, str) else ""
    target = local_path(form_text(form, "next")) or _home()
    settings = ui.settings
    ip = ui.request.client.host if ui.request.client else "unknown"
    try:
        user = service.authenticate(session, settings, email, password, ip)
    except TooManyRequests:
        return ui.render(
            "auth/login.html",
            {
                "next": target,
                "email": email,
                "error": ui.gettext(
                    "Too many failed sign-in attempts. Wait a few minutes and try again."
                ),
            },
            status_code=429,
        )
    except NotAuthenticated:
        return ui.render(
            "auth/login.html",
            {
                "next": target,
                "email": email,
                "error": ui.gettext("The email or password is not right."),
            },
            status_code=401,
        )
    chosen = ui.request.cookies.get(LOCALE_COOKIE)
    if user.locale is None and chosen in LOCALES:
        service.set_locale(session, user.id, chosen)
    token, info = service.start_session(session, settings, user)
    signed = build_ui(ui.request, info)
    response = signed.redirect(target)
    response.set_cookie(value=token, **session_cookie_kwargs(settings))
    return response


@router.post("/logout")
def logout(ui: AnyVisitor, session: DbSession) -> Response:
    """End the session on the server and forget the cookie."""
    cookie = ui.request.cookies.get(SESSION_COOKIE)
    if cookie:
        service.end_session(session, cookie)
    response = ui.redirect("/login", flash="signed_out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/locale")
def switch_locale(ui: AnyVisitor, session: DbSession, form: Form) -> Response:
    """Switch the UI language: kept on the user when signed in, and in a cookie."""
    locale = form_text(form, "locale")
    target = local_path(form_text(form, "next")) or _home()
    if locale not in LOCALES:
        return ui.redirect(target)
    if ui.info is not None:
        service.set_locale(session, ui.info.user.id, locale)
    response = ui.redirect(target)
    response.set_cookie(
        LOCALE_COOKIE,
        locale,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=ui.settings.cookie_secure,
        path="/",
    )
    return response
