"""Source pages: sources and their write keys, the live debugger, and failed events to replay.

Sources go through the same service functions as the JSON API, so the same rules and audit
apply. The debugger and failed events read this process's collector (``app.state.collect``);
a process that does not collect says so instead of showing an empty page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from ichigen.auth.permissions import require
from ichigen.collect import service
from ichigen.collect.api import CollectState
from ichigen.collect.schemas import (
    FailedEventRead,
    KeyRotation,
    SourceCreate,
    SourceCreated,
    SourceRead,
    SourceUpdate,
)
from ichigen.core.errors import (
    Conflict,
    IchigenError,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.settings_views import input_errors, service_errors
from ichigen.web.templating import (
    Form,
    SignedIn,
    Ui,
    form_text,
    register_flash_messages,
    ui_router_for,
)

router = ui_router_for()

#: Debugger rows shown when the page opens, and at most added by one refresh.
DEBUGGER_ROWS = 50
DEBUGGER_POLL_ROWS = 100
FAILED_PAGE = 50

KIND_LABELS: dict[str, str] = {
    "website": N_("Website"),
    "mobile": N_("Mobile app"),
    "server": N_("Server"),
    "file": N_("File import"),
    "other": N_("Other"),
}
STATUS_LABELS: dict[str, str] = {
    "accepted": N_("Accepted"),
    "duplicate": N_("Duplicate"),
    "rejected": N_("Rejected"),
}
#: The badge colour of each debugger outcome: green, amber, red.
STATUS_BADGES: dict[str, str] = {
    "accepted": "badge-create",
    "duplicate": "badge-warn",
    "rejected": "badge-delete",
}
FAILED_STATUS_LABELS: dict[str, str] = {
    "failed": N_("Not replayed"),
    "replayed": N_("Replayed"),
}

register_flash_messages(
    {
        "source_saved": N_("Changes saved."),
        "replay_accepted": N_("The message was replayed and stored."),
        "replay_duplicate": N_(
            "The message was replayed; an event with its message ID was already stored."
        ),
    }
)


@dataclass
class SourceForm:
    """A source form as shown: the values as typed and the errors next to each field."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    version: int | None = None
    stale: bool = False


@dataclass(frozen=True)
class DebugRow:
    """One message in the debugger, with its payload ready to read."""

    seq: int
    received_at: datetime
    status: str
    type: str | None
    event: str | None
    message_id: str | None
    reason: str | None
    payload: str


# ----------------------------------------------------------------------------- shared


def collect_state(request: Request) -> CollectState | None:
    """This process's collector, or None when it does not collect events."""
    state = getattr(request.app.state, "collect", None)
    return state if isinstance(state, CollectState) else None


def _collector_off() -> IchigenError:
    return IchigenError(
        "Event collection is not enabled in this process.",
        [],
        503,
        "Collector off",
        "collector-off",
    )


def pretty_json(value: Any) -> str:
    """A payload as people read it: indented, non-ASCII text as is."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _forget_cached_keys(ui: Ui) -> None:
    """A changed source or key applies to the next request, not after the cache expires."""
    state = collect_state(ui.request)
    if state is not None:
        state.keys.clear()


def _server_url(ui: Ui) -> str:
    return str(ui.request.base_url).rstrip("/")


def _number(form: FormData, name: str) -> str | None:
    """A whole-number field as typed (Pydantic parses and checks it); empty is None."""
    return form_text(form, name, 30) or None


def _source_values(form: FormData) -> dict[str, Any]:
    return {
        "name": form_text(form, "name", 300),
        "kind": form_text(form, "kind", 20),
        "rate_limit_per_second": form_text(form, "rate_limit_per_second", 30),
        "retention_days": form_text(form, "retention_days", 30),
        "enabled": form_text(form, "enabled", 10) in ("1", "on", "true"),
    }


def _version(form: FormData) -> int | None:
    raw = form_text(form, "version", 20)
    return int(raw) if raw.isdigit() else None


# ----------------------------------------------------------------------------- sources


def _render_sources(
    ui: Ui,
    session: DbSession,
    form: SourceForm,
    created: SourceCreated | None = None,
    status_code: int = 200,
) -> Response:
    return ui.render(
        "collect/sources.html",
        {
            "sources": service.list_sources(session),
            "kinds": KIND_LABELS,
            "form": form,
            "created": created,
            "server_url": _server_url(ui),
        },
        status_code=status_code,
    )


def _new_source_form() -> SourceForm:
    return SourceForm(values={"kind": "website"})


@router.get("/sources")
def source_list(ui: SignedIn, session: DbSession) -> Response:
    """Every source with its limits and live keys, and (for admins) a form for a new one."""
    require(ui.actor, "sources", "read")
    return _render_sources(ui, session, _new_source_form())


@router.post("/sources")
def create_source(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Create a source and show its write key, this once; only its hash is kept."""
    require(ui.actor, "sources", "write")
    values = _source_values(form)
    shown = SourceForm(values=values)
    try:
        data = SourceCreate.model_validate(
            {
                "name": values["name"],
                "kind": values["kind"],
                "rate_limit_per_second": _number(form, "rate_limit_per_second"),
                "retention_days": _number(form, "retention_days"),
            }
        )
        created = service.create_source(session, data, ui.actor)
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_sources(ui, session, shown, status_code=422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_sources(ui, session, shown, status_code=exc.status)
    return _render_sources(ui, session, _new_source_form(), created, status_code=201)


def _render_source_form(
    ui: Ui, source: SourceRead, form: SourceForm, status_code: int = 200
) -> Response:
    return ui.render(
        "collect/source_form.html",
        {"source": source, "form": form, "kinds": KIND_LABELS},
        status_code=status_code,
    )


@router.get("/sources/{source_id}/edit")
def edit_source(ui: SignedIn, session: DbSession, source_id: int) -> Response:
    """Rename, disable or enable a source, or change its rate limit and retention."""
    require(ui.actor, "sources", "write")
    source = service.get_source(session, source_id)
    form = SourceForm(
        values={
            "name": source.name,
            "kind": source.kind,
            "enabled": source.enabled,
            "rate_limit_per_second": source.rate_limit_per_second or "",
            "retention_days": source.retention_days or "",
        },
        version=source.version,
    )
    return _render_source_form(ui, source, form)


@router.post("/sources/{source_id}/edit")
def update_source(ui: SignedIn, session: DbSession, form: Form, source_id: int) -> Response:
    """Save the changes unless someone else saved theirs since the form was opened."""
    require(ui.actor, "sources", "write")
    source = service.get_source(session, source_id)
    values = _source_values(form)
    shown = SourceForm(values=values, version=_version(form))
    try:
        data = SourceUpdate.model_validate(
            {
                "name": values["name"],
                "kind": values["kind"],
                "enabled": values["enabled"],
                # An empty field removes the limit (or keeps events for good).
                "rate_limit_per_second": _number(form, "rate_limit_per_second"),
                "retention_days": _number(form, "retention_days"),
            }
        )
        service.update_source(session, source_id, data, ui.actor, if_version=shown.version)
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_source_form(ui, source, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_source_form(ui, source, shown, exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_source_form(ui, source, shown, 409)
    _forget_cached_keys(ui)
    return ui.redirect("/sources", flash="source_saved")


def _render_rotation(
    ui: Ui,
    source: SourceRead,
    form: SourceForm,
    created: SourceCreated | None = None,
    status_code: int = 200,
) -> Response:
    return ui.render(
        "collect/rotate.html",
        {
            "source": source,
            "form": form,
            "created": created,
            "server_url": _server_url(ui),
        },
        status_code=status_code,
    )


@router.get("/sources/{source_id}/rotate")
def confirm_rotation(ui: SignedIn, session: DbSession, source_id: int) -> Response:
    """Ask how long the current keys should keep working before making a new one."""
    require(ui.actor, "sources", "write")
    source = service.get_source(session, source_id)
    form = SourceForm(values={"grace_hours": ui.settings.collect_key_grace_hours})
    return _render_rotation(ui, source, form)


@router.post("/sources/{source_id}/rotate")
def rotate_key(ui: SignedIn, session: DbSession, form: Form, source_id: int) -> Response:
    """Make a new write key and show it, this once; the old ones expire after the grace."""
    require(ui.actor, "sources", "write")
    source = service.get_source(session, source_id)
    shown = SourceForm(values={"grace_hours": form_text(form, "grace_hours", 30)})
    try:
        data = KeyRotation.model_validate({"grace_hours": _number(form, "grace_hours")})
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_rotation(ui, source, shown, status_code=422)
    rotated = service.rotate_key(
        session,
        source_id,
        data,
        ui.actor,
        default_grace_hours=ui.settings.collect_key_grace_hours,
    )
    _forget_cached_keys(ui)
    return _render_rotation(ui, rotated, shown, rotated)


# ----------------------------------------------------------------------------- debugger


def debugger_rows(state: CollectState, source_id: int, after: int, limit: int) -> list[DebugRow]:
    """The source's messages received after sequence number ``after``, newest first."""
    return [
        DebugRow(
            seq=entry.seq,
            received_at=entry.received_at,
            status=entry.status,
            type=entry.type if isinstance(entry.type, str) else None,
            event=entry.event if isinstance(entry.event, str) else None,
            message_id=entry.message_id if isinstance(entry.message_id, str) else None,
            reason=entry.reason,
            payload=pretty_json(entry.payload),
        )
        for entry in state.collector.debugger.since(source_id, after, limit)
    ]


def _debug_context(
    rows: list[DebugRow], after: int, source: SourceRead, *, partial: bool
) -> dict[str, Any]:
    return {
        "rows": rows,
        "after": after,
        "partial": partial,
        "last_seq": max((r.seq for r in rows), default=after),
        "source": source,
        "status_labels": STATUS_LABELS,
        "status_badges": STATUS_BADGES,
    }


@router.get("/sources/{source_id}/debugger")
def debugger(ui: SignedIn, session: DbSession, source_id: int) -> Response:
    """The latest messages of a source as they arrive, with what became of each."""
    require(ui.actor, "sources", "read")
    source = service.get_source(session, source_id)
    state = collect_state(ui.request)
    rows = debugger_rows(state, source_id, 0, DEBUGGER_ROWS) if state else []
    context = _debug_context(rows, 0, source, partial=False)
    context.update(collecting=state is not None, kinds=KIND_LABELS)
    return ui.render("collect/debugger.html", context)


@router.get("/sources/{source_id}/debugger/rows")
def debugger_refresh(
    ui: SignedIn,
    session: DbSession,
    source_id: int,
    after: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The rows received since the page's newest one, for the page to put on top.

    Nothing new answers 204, which leaves the page (and any row opened to its payload) as is.
    """
    require(ui.actor, "sources", "read")
    source = service.get_source(session, source_id)
    state = collect_state(ui.request)
    if state is None:
        raise _collector_off()
    rows = debugger_rows(state, source_id, after, DEBUGGER_POLL_ROWS)
    if not rows:
        return Response(status_code=204, headers={"Cache-Control": "no-store"})
    return ui.render("collect/_debug_rows.html", _debug_context(rows, after, source, partial=True))


# ----------------------------------------------------------------------------- failed events


def _source_names(ui: Ui, session: DbSession) -> dict[int, str]:
    """Source names for those who may see sources; others see only the numbers."""
    if not ui.can("sources"):
        return {}
    return {s.id: s.name for s in service.list_sources(session)}


@router.get("/failed-events")
def failed_list(
    ui: SignedIn,
    session: DbSession,
    source_id: Annotated[int | None, Query(ge=1)] = None,
    status: Literal["failed", "replayed"] | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Messages rejected at ingestion, newest first, with why; each can be fixed and replayed."""
    require(ui.actor, "events", "read")
    state = collect_state(ui.request)
    failed: list[FailedEventRead] = []
    if state is not None:
        failed = service.list_failed(
            state.collector.store, ui.actor, source_id, status, FAILED_PAGE, before_id
        )
    params = {"source_id": source_id, "status": status}
    return ui.render(
        "collect/failed_events.html",
        {
            "collecting": state is not None,
            "failed": [(f, pretty_json(f.payload)) for f in failed],
            "params": params,
            "source_names": _source_names(ui, session),
            "status_labels": FAILED_STATUS_LABELS,
            "older": failed[-1].id if len(failed) == FAILED_PAGE else None,
        },
    )


def _render_failed(
    ui: Ui,
    session: DbSession,
    failed: FailedEventRead,
    message: str,
    errors: dict[str, list[str]] | None = None,
    problems: list[dict[str, Any]] | None = None,
    status_code: int = 200,
) -> Response:
    return ui.render(
        "collect/failed_event.html",
        {
            "failed": failed,
            "payload": pretty_json(failed.payload),
            "message": message,
            "errors": errors or {},
            "problems": problems,
            "source_names": _source_names(ui, session),
            "status_labels": FAILED_STATUS_LABELS,
        },
        status_code=status_code,
    )


def _store(ui: Ui) -> CollectState:
    state = collect_state(ui.request)
    if state is None:
        raise _collector_off()
    return state


@router.get("/failed-events/{failed_id}")
def failed_detail(ui: SignedIn, session: DbSession, failed_id: int) -> Response:
    """A failed message, why it failed, and a form to replay it as stored or corrected."""
    require(ui.actor, "events", "read")
    failed = service.get_failed(_store(ui).collector.store, ui.actor, failed_id)
    return _render_failed(ui, session, failed, pretty_json(failed.payload))


@router.post("/failed-events/{failed_id}/replay")
def replay_failed(ui: SignedIn, session: DbSession, form: Form, failed_id: int) -> Response:
    """Validate the message again (as stored, or as corrected) and store it when it is valid.

    A message that is still invalid is shown again with its problems; nothing is stored then.
    """
    require(ui.actor, "events", "write")
    state = _store(ui)
    store = state.collector.store
    failed = service.get_failed(store, ui.actor, failed_id)
    raw = form.get("message")
    text = raw[: state.limits.max_message_bytes * 2] if isinstance(raw, str) else ""
    corrected: dict[str, Any] | None = None
    if form_text(form, "mode", 20) == "edited":
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problem = ui.gettext("This is not valid JSON: %(problem)s", problem=str(exc))
            return _render_failed(ui, session, failed, text, {"message": [problem]}, None, 422)
        if not isinstance(parsed, dict):
            problem = ui.gettext("The message must be a JSON object ({…}).")
            return _render_failed(ui, session, failed, text, {"message": [problem]}, None, 422)
        corrected = parsed
    else:
        text = pretty_json(failed.payload)
    failed, outcome = service.replay_failed(
        state.collector, ui.actor, failed_id, corrected, state.limits
    )
    if outcome.status == "rejected":
        return _render_failed(ui, session, failed, text, None, outcome.problems, 422)
    flash = "replay_duplicate" if outcome.status == "duplicate" else "replay_accepted"
    return ui.redirect(f"/failed-events/{failed.id}", flash=flash)
