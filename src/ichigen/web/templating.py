"""The web UI's toolkit: templates, the signed-in page context, CSRF, and UI error pages.

Feature views (``<feature>/views.py``) build their routers with ``ui_router_for()`` and take a
``SignedIn`` (or ``AnyVisitor``) parameter: the ``Ui`` object gives them the user, the actor
for service calls, gettext in the user's language, and ``render``/``redirect``.

Every unsafe request (POST, PUT, PATCH, DELETE) must echo a CSRF token, either as the
``csrf_token`` form field or as the ``X-CSRF-Token`` header (HTMX sends it from the
``hx-headers`` on ``<body>``). Signed-in visitors echo their session's token; before sign-in
a random token lives in the ``ichigen_csrf`` cookie (double submit), which protects the
sign-in form and the language switch.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ichigen import __version__
from ichigen.auth import service as auth_service
from ichigen.auth.permissions import Access, can
from ichigen.auth.schemas import SessionInfo, UserRead
from ichigen.core.audit import Actor, AuditEntryRead
from ichigen.core.custom_fields import CustomFieldRead
from ichigen.core.db import Database
from ichigen.core.errors import FieldError, IchigenError
from ichigen.core.settings import Settings
from ichigen.web.deps import SESSION_COOKIE, browser_session
from ichigen.web.i18n import LOCALE_COOKIE, LOCALES, N_, choose_locale, translations

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: Folders (relative to the ``ichigen`` package) whose ``templates/`` the UI loads from; a new
#: feature with pages adds its folder here.
TEMPLATE_PACKAGES: list[str] = [
    "web",
    "auth",
    "crm/contacts",
    "crm/companies",
    "crm/deals",
    "crm/activities",
    "crm/tasks",
    "collect",
    "identity",
    "profiles",
]

CSRF_COOKIE = "ichigen_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
FLASH_COOKIE = "ichigen_flash"
TZ_COOKIE = "ichigen_tz"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_current_gettext: ContextVar[Any] = ContextVar("ichigen_translations")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class NavItem:
    """One entry of the main navigation; shown to users whose role may read ``entity``.

    An entry without an entity is shown to every signed-in user.
    """

    key: str
    label: str
    href: str
    entity: str | None
    #: other paths whose pages belong to this entry (highlighted there too)
    also: tuple[str, ...] = ()

    def covers(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in (self.href, *self.also))


#: The main navigation, in order. Later features (deals, tickets, segments) add an entry here.
NAVIGATION: list[NavItem] = [
    NavItem("contacts", N_("Contacts"), "/contacts", "contacts"),
    NavItem("companies", N_("Companies"), "/companies", "companies"),
    NavItem("deals", N_("Deals"), "/deals", "deals", ("/pipelines",)),
    NavItem("my-day", N_("My day"), "/my-day", "tasks"),
    NavItem("tasks", N_("Tasks"), "/tasks", "tasks"),
    NavItem("dashboard", N_("Dashboard"), "/dashboard", "deals", ("/quotas", "/exchange-rates")),
    NavItem("profiles", N_("Profiles"), "/profiles", "identity"),
    NavItem("sources", N_("Sources"), "/sources", "sources", ("/failed-events",)),
    NavItem("settings", N_("Settings"), "/settings", None),
]

#: One-shot messages shown after a redirect, by key (the cookie carries only the key).
FLASH_MESSAGES: dict[str, str] = {
    "signed_out": N_("You have signed out."),
}


def register_flash_messages(messages: Mapping[str, str]) -> None:
    """Let a feature add its own one-shot messages (``N_``-marked English text)."""
    FLASH_MESSAGES.update(messages)


# ----------------------------------------------------------------------------- errors


class LoginRequired(Exception):
    """The page needs a signed-in user; answered with a redirect to the sign-in page."""


class CsrfRejected(IchigenError):
    def __init__(self) -> None:
        super().__init__(
            "The form was missing its security token or it did not match; reload the page "
            "and try again.",
            [],
            403,
            "Forbidden",
            "csrf",
        )


# ----------------------------------------------------------------------------- Jinja


def _gettext(message: str) -> str:
    return str(_current_gettext.get().gettext(message))


def _ngettext(singular: str, plural: str, n: int) -> str:
    return str(_current_gettext.get().ngettext(singular, plural, n))


def _ui(context: Context) -> Ui | None:
    found = context.get("ui")
    return found if isinstance(found, Ui) else None


@pass_context
def _format_datetime(context: Context, value: datetime | str | None, style: str = "medium") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        moment = value
    ui = _ui(context)
    return str(
        format_datetime(
            moment,
            style,
            tzinfo=ui.timezone if ui else ZoneInfo("UTC"),
            locale=ui.locale if ui else "en",
        )
    )


@pass_context
def _format_date(context: Context, value: date | str | None, style: str = "medium") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return value
    else:
        day = value
    ui = _ui(context)
    return str(format_date(day, style, locale=ui.locale if ui else "en"))


@pass_context
def _format_phone(context: Context, value: str | None) -> str:
    """E.164 as the reader dials it: national form at home, international otherwise."""
    if not value:
        return ""
    ui = _ui(context)
    region = ui.settings.default_phone_region if ui else "JP"
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    home = phonenumbers.region_code_for_number(parsed) == region
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if home
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return str(phonenumbers.format_number(parsed, style))


@pass_context
def _format_number(context: Context, value: int | float | Decimal | str | None) -> str:
    if value is None or value == "":
        return ""
    ui = _ui(context)
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return str(format_decimal(number, locale=ui.locale if ui else "en"))


@pass_context
def _format_money(context: Context, value: Decimal | str | None, currency: str | None) -> str:
    if value is None or value == "":
        return ""
    ui = _ui(context)
    locale = ui.locale if ui else "en"
    if not currency:
        return _format_number(context, value)
    return str(format_currency(Decimal(str(value)), currency, locale=locale))


@pass_context
def _country_name(context: Context, code: str | None) -> str:
    if not code:
        return ""
    ui = _ui(context)
    names = country_names(ui.locale if ui else "en")
    return names.get(code.upper(), code)


@lru_cache(maxsize=8)
def country_names(locale: str) -> dict[str, str]:
    """Two-letter country codes and their names in a language, sorted by name."""
    territories = Locale.parse(locale).territories
    pairs = [(code, name) for code, name in territories.items() if re.fullmatch("[A-Z]{2}", code)]
    return dict(sorted(pairs, key=lambda pair: pair[1]))


def query_string(params: Mapping[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` from the current parameters with some changed (``None`` drops one).

    Empty values are left out, and no parameters at all give ``""``.
    """
    merged: dict[str, Any] = {k: v for k, v in params.items() if v not in (None, "", [])}
    for key, value in changes.items():
        if value in (None, "", []):
            merged.pop(key, None)
        else:
            merged[key] = value
    encoded = urlencode(merged, doseq=True)
    return f"?{encoded}" if encoded else ""


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one Jinja2 environment of the UI: autoescaped, strict, with gettext."""
    env = Environment(
        loader=FileSystemLoader([PACKAGE_ROOT / p / "templates" for p in TEMPLATE_PACKAGES]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n", "jinja2.ext.do"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_gettext, ngettext=_ngettext, newstyle=True
    )
    env.filters.update(
        datetime=_format_datetime,
        date=_format_date,
        phone=_format_phone,
        number=_format_number,
        money=_format_money,
        country=_country_name,
    )
    env.globals.update(qs=query_string, version=__version__)
    return env


# ----------------------------------------------------------------------------- the page context


def local_path(value: str | None) -> str | None:
    """``value`` if it is a path on this site (safe to redirect to after sign-in), else None."""
    if not value or len(value) > 2000 or any(ch in value for ch in "\\\r\n\t\x00"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return None
    return value


@dataclass
class Ui:
    """One request as the UI sees it: who is signed in, in which language, with which token."""

    request: Request
    settings: Settings
    info: SessionInfo | None
    locale: str
    anonymous_csrf: str | None = None
    set_csrf_cookie: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> UserRead:
        if self.info is None:
            raise LoginRequired
        return self.info.user

    @property
    def actor(self) -> Actor:
        """The signed-in user as the actor of service calls."""
        return auth_service.actor_for(self.user, via="ui")

    @property
    def csrf_token(self) -> str:
        if self.info is not None:
            return self.info.csrf_token
        assert self.anonymous_csrf is not None
        return self.anonymous_csrf

    @property
    def timezone(self) -> ZoneInfo:
        """The browser's time zone (reported by ichigen.js), UTC until known."""
        name = self.request.cookies.get(TZ_COOKIE, "UTC")
        try:
            return ZoneInfo(name) if re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", name) else UTC_ZONE
        except (ZoneInfoNotFoundError, ValueError):
            return UTC_ZONE

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true" and not self.request.headers.get(
            "hx-history-restore-request"
        )

    @property
    def htmx_target(self) -> str | None:
        return self.request.headers.get("hx-target") if self.is_htmx else None

    def can(self, entity: str, access: Access = "read") -> bool:
        return self.info is not None and can(self.actor, entity, access)

    def gettext(self, message: str, **values: Any) -> str:
        """``message`` in the visitor's language, with ``%(name)s`` placeholders filled."""
        text = str(translations(self.locale).gettext(message))
        return text % values if values else text

    def navigation(self) -> list[NavItem]:
        if self.info is None:
            return []
        return [item for item in NAVIGATION if item.entity is None or self.can(item.entity)]

    def render(
        self,
        template: str,
        context: Mapping[str, Any] | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        """A page (or an HTMX partial) in the visitor's language."""
        flash_key = self.request.cookies.get(FLASH_COOKIE)
        flash = FLASH_MESSAGES.get(flash_key or "")
        values: dict[str, Any] = {
            "ui": self,
            "request": self.request,
            "user": self.info.user if self.info else None,
            "csrf_token": self.csrf_token,
            "locale": self.locale,
            "locales": LOCALES,
            "navigation": self.navigation(),
            "current_path": self.request.url.path,
            "current_url": _path_and_query(self.request),
            "flash": flash,
        }
        values.update(context or {})
        token = _current_gettext.set(translations(self.locale))
        try:
            html = environment().get_template(template).render(values)
        finally:
            _current_gettext.reset(token)
        response = HTMLResponse(html, status_code=status_code)
        self._finish(response)
        if flash_key and not self.is_htmx:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def redirect(self, url: str, flash: str | None = None) -> Response:
        """303 to ``url`` (HTMX: ``HX-Redirect``), optionally with a one-shot message."""
        response: Response
        if self.is_htmx:
            response = Response(status_code=204, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        if flash:
            response.set_cookie(
                FLASH_COOKIE, flash, max_age=60, httponly=True, samesite="lax", path="/"
            )
        self._finish(response)
        return response

    def _finish(self, response: Response) -> None:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "HX-Request, Cookie, Accept-Language"
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.update(self.extra_headers)
        if self.set_csrf_cookie and self.anonymous_csrf:
            response.set_cookie(
                CSRF_COOKIE,
                self.anonymous_csrf,
                httponly=True,
                samesite="lax",
                secure=self.settings.cookie_secure,
                path="/",
            )


UTC_ZONE = ZoneInfo("UTC")


def _path_and_query(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def build_ui(request: Request, info: SessionInfo | None) -> Ui:
    """The page context of one request."""
    settings = _settings(request)
    locale = choose_locale(
        info.user.locale if info else None,
        request.cookies.get(LOCALE_COOKIE),
        request.headers.get("accept-language"),
        settings.default_locale,
    )
    ui = Ui(request=request, settings=settings, info=info, locale=locale)
    if info is None:
        existing = request.cookies.get(CSRF_COOKIE, "")
        if _TOKEN_RE.match(existing):
            ui.anonymous_csrf = existing
        else:
            ui.anonymous_csrf = secrets.token_urlsafe(32)
            ui.set_csrf_cookie = True
    return ui


def any_visitor(
    request: Request, info: Annotated[SessionInfo | None, Depends(browser_session)]
) -> Ui:
    return build_ui(request, info)


AnyVisitor = Annotated[Ui, Depends(any_visitor)]


def signed_in(ui: AnyVisitor) -> Ui:
    """The page needs a signed-in user; others go to the sign-in page and come back."""
    if ui.info is None:
        raise LoginRequired
    return ui


SignedIn = Annotated[Ui, Depends(signed_in)]


async def read_form(request: Request) -> AsyncIterator[FormData]:
    """The submitted form (urlencoded or multipart), closed after the request."""
    form = await request.form(max_files=5, max_fields=5000)
    try:
        yield form
    finally:
        await form.close()


Form = Annotated[FormData, Depends(read_form)]


async def csrf_guard(
    request: Request, info: Annotated[SessionInfo | None, Depends(browser_session)]
) -> None:
    """Reject an unsafe request whose token does not match the session's (or the cookie's)."""
    if request.method in SAFE_METHODS:
        return
    expected = info.csrf_token if info else request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form(max_files=5, max_fields=5000)).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRejected


def field_errors(
    errors: Iterable[FieldError], aliases: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Service field errors by form field name: ``("emails", 1, "email")`` is ``emails-1-email``.

    ``aliases`` maps a service path (joined with ``-``) to the form field that edits it; errors
    no field shows are kept under ``""`` for the form's summary.
    """
    found: dict[str, list[str]] = {}
    for error in errors:
        name = "-".join(str(p) for p in error.loc if p not in ("body",))
        if aliases:
            name = aliases.get(name, name)
        found.setdefault(name, []).append(error.msg)
    return found


def ui_router_for(prefix: str = "", dependencies: Sequence[Any] | None = None) -> APIRouter:
    """A router for HTML pages: hidden from OpenAPI, with UI error pages."""
    return APIRouter(
        prefix=prefix,
        route_class=UiRoute,
        include_in_schema=False,
        dependencies=dependencies,
    )


# ----------------------------------------------------------------------------- error pages


ERROR_TITLES: dict[int, str] = {
    400: N_("That request was not understood."),
    401: N_("Please sign in."),
    403: N_("You are not allowed to do this."),
    404: N_("This page does not exist."),
    409: N_("This conflicts with another record."),
    412: N_("Someone else changed this record."),
    413: N_("The upload is too large."),
    422: N_("Some fields are not valid."),
    429: N_("Too many attempts; please wait a few minutes."),
}


def login_redirect(request: Request) -> Response:
    """To the sign-in page, remembering where the visitor was going (local paths only)."""
    target = _path_and_query(request)
    if request.headers.get("hx-request") == "true":
        current = urlsplit(request.headers.get("hx-current-url", ""))
        target = local_path(current.path + (f"?{current.query}" if current.query else "")) or "/"
    url = "/login" + query_string({}, next=target if target not in ("/", "/login") else None)
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _session_info(request: Request) -> SessionInfo | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    db = getattr(request.app.state, "db", None)
    if not cookie or not isinstance(db, Database):
        return None
    with db.sessionmaker() as session:
        return auth_service.session_user(session, cookie)


async def error_page(request: Request, status_code: int, detail: str = "") -> HTMLResponse:
    """An error in the UI's look and the visitor's language, inside the application shell."""
    info = await run_in_threadpool(_session_info, request)
    ui = build_ui(request, info)
    return ui.render(
        "error.html",
        {
            "status_code": status_code,
            "title": ERROR_TITLES.get(status_code, N_("Something went wrong.")),
            "detail": detail,
        },
        status_code=status_code,
    )


class UiRoute(APIRoute):
    """A page route: sign-in redirects and service errors become pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except IchigenError as exc:
                return await error_page(request, exc.status, exc.detail)
            except RequestValidationError as exc:
                in_path = any(e.get("loc", ("",))[0] == "path" for e in exc.errors())
                return await error_page(request, 404 if in_path else 400)

        return page_handler


def session_cookie_kwargs(settings: Settings) -> dict[str, Any]:
    """How the session cookie is set: HttpOnly, SameSite=Lax, Secure over HTTPS."""
    return {
        "key": SESSION_COOKIE,
        "httponly": True,
        "samesite": "lax",
        "secure": settings.cookie_secure,
        "path": "/",
        "max_age": settings.session_hours * 3600,
    }


def csv_download(ui: Ui, name: str, write: Callable[[Session], Iterator[str]]) -> StreamingResponse:
    """Stream a CSV export as a file download.

    ``write`` gets a session of its own that stays open while the chunks stream and is closed
    after; it should check its input before yielding, so a bad filter is an error page.
    """
    database = ui.request.app.state.db
    assert isinstance(database, Database)
    session = database.sessionmaker()
    try:
        chunks = write(session)
    except BaseException:
        session.close()
        raise

    def stream() -> Iterator[str]:
        try:
            yield from chunks
        finally:
            session.close()

    filename = f"{name}-{datetime.now(UTC):%Y%m%d-%H%M}.csv"
    return StreamingResponse(
        stream(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def form_text(form: FormData, name: str, limit: int = 20_000) -> str:
    """A text field of a form, stripped ("" when missing or a file)."""
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def custom_values_from_form(
    form: FormData, fields: Iterable[CustomFieldRead], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Each custom field's submitted value, named ``custom-<key>`` (``None`` clears it).

    Multi-select choices keep the order they were stored in, so saving an untouched form
    changes nothing.
    """
    values: dict[str, Any] = {}
    for definition in fields:
        name = f"custom-{definition.key}"
        if definition.field_type == "multi_select":
            chosen = form_texts(form, name)
            before = [v for v in (existing or {}).get(definition.key) or [] if v in chosen]
            values[definition.key] = [*before, *(v for v in chosen if v not in before)] or None
        else:
            values[definition.key] = form_text(form, name) or None
    return values


def form_texts(form: FormData, name: str) -> list[str]:
    """Every non-empty value of a repeated field (checkbox groups, multi-selects)."""
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


# ----------------------------------------------------------------------------- audit history

HISTORY_ACTIONS: dict[str, str] = {
    "create": N_("Created"),
    "update": N_("Changed"),
    "delete": N_("Deleted"),
}


@dataclass(frozen=True)
class HistoryChange:
    """One field of one audit entry, ready to show: its label, and the values before and after."""

    label: str
    before: str
    after: str


@dataclass(frozen=True)
class HistoryRow:
    """One audit entry as the history panel shows it."""

    occurred_at: datetime
    who: str
    kind: str
    action: str
    via: str
    changes: list[HistoryChange]


def _shown_value(ui: Ui, value: Any, names: Mapping[Any, str] | None, translate: bool) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return ui.gettext("Yes") if value else ui.gettext("No")
    if isinstance(value, list):
        return ", ".join(_shown_value(ui, v, names, translate) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_shown_value(ui, v, None, False)}" for k, v in value.items())
    if names is not None and value in names:
        shown = names[value]
        return ui.gettext(shown) if translate else shown
    return str(value)


_EMPTY: tuple[Any, ...] = (None, "", [], {})


@dataclass
class ChangeFormatter:
    """Turns ``{field: [before, after]}`` (audit entries, dry-run previews) into readable rows.

    ``labels`` are the entity's field labels (``N_``-marked); the ``custom`` document is shown
    one custom field per line, with its definition's label and option labels. ``names`` turns
    stored values (an owner's id, a stage) into what people read; the fields in ``translated``
    hold catalog messages. A field going from nothing to an empty or false value is left out.
    """

    ui: Ui
    labels: Mapping[str, str]
    custom_fields: Sequence[CustomFieldRead] = ()
    names: Mapping[str, Mapping[Any, str]] = field(default_factory=dict)
    translated: Iterable[str] = ()
    #: How to show a field's values where a lookup is not enough (an amount, a list of links).
    formats: Mapping[str, Callable[[Any], str]] = field(default_factory=dict)

    def changes(self, delta: Mapping[str, Any]) -> list[HistoryChange]:
        order = {name: position for position, name in enumerate(self.labels)}
        custom_labels = {f.key: f.label for f in self.custom_fields}
        options = {
            f.key: {o.value: o.label or o.value for o in f.options} for f in self.custom_fields
        }
        translated = set(self.translated)
        rows: list[HistoryChange] = []
        for name in sorted(delta, key=lambda n: (order.get(n, len(order)), n)):
            pair = delta[name]
            before, after = [*pair, None, None][:2] if isinstance(pair, list) else (None, pair)
            if (
                name == "custom"
                and isinstance(before or {}, dict)
                and isinstance(after or {}, dict)
            ):
                old, new = before or {}, after or {}
                for key in sorted(set(old) | set(new)):
                    if old.get(key) != new.get(key) and not self._trivial(
                        old.get(key), new.get(key)
                    ):
                        rows.append(
                            HistoryChange(
                                custom_labels.get(key, key),
                                _shown_value(self.ui, old.get(key), options.get(key), False),
                                _shown_value(self.ui, new.get(key), options.get(key), False),
                            )
                        )
                continue
            if self._trivial(before, after):
                continue
            shown = self.formats.get(name)
            if shown is not None:
                rows.append(
                    HistoryChange(
                        self.ui.gettext(self.labels[name]) if name in self.labels else name,
                        "—" if before in _EMPTY else shown(before),
                        "—" if after in _EMPTY else shown(after),
                    )
                )
                continue
            lookup = self.names.get(name)
            translate = name in translated
            rows.append(
                HistoryChange(
                    self.ui.gettext(self.labels[name]) if name in self.labels else name,
                    _shown_value(self.ui, before, lookup, translate),
                    _shown_value(self.ui, after, lookup, translate),
                )
            )
        return rows

    @staticmethod
    def _trivial(before: Any, after: Any) -> bool:
        return any(before is e or before == e for e in _EMPTY) and (
            after is False or any(after is e or after == e for e in _EMPTY)
        )


def history_rows(formatter: ChangeFormatter, entries: Iterable[AuditEntryRead]) -> list[HistoryRow]:
    """Audit entries (newest first) as rows of "field: before → after"."""
    ui = formatter.ui
    return [
        HistoryRow(
            occurred_at=entry.occurred_at,
            who=entry.actor_label,
            kind=entry.action,
            action=ui.gettext(HISTORY_ACTIONS.get(entry.action, entry.action)),
            via=entry.via,
            changes=formatter.changes(entry.changes),
        )
        for entry in entries
    ]
