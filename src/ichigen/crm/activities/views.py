"""The activity timeline partial: a record's activities with filter chips by kind, "load
more" paging, and a form to log a note, call, email or meeting against the record.

Record pages embed it with ``<div hx-get="/timeline/contact/{{ contact.id }}"
hx-trigger="load"></div>``; everything after that happens inside the partial through HTMX.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Query, Response
from pydantic import ValidationError

from ichigen.auth import service as auth_service
from ichigen.core.clock import utcnow
from ichigen.core.errors import FieldError, PreconditionFailed, ValidationFailed
from ichigen.core.schemas import RecordId
from ichigen.crm.activities import service
from ichigen.crm.activities.schemas import (
    LOGGED_KINDS,
    ActivityCreate,
    ActivityKind,
    ActivityRead,
    ActivityUpdate,
)
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.templating import Form, SignedIn, Ui, field_errors, form_text, ui_router_for

router = ui_router_for("/timeline")
#: Changing and deleting one activity, wherever its entry is shown.
entries = ui_router_for("/activities")
PAGE_SIZE = 20

TimelineType = Literal["contact", "company", "deal"]
KindFilter = Annotated[list[ActivityKind], Query()]

KIND_LABELS: dict[str, str] = {
    "note": N_("Note"),
    "call": N_("Call"),
    "email": N_("E-mail"),
    "meeting": N_("Meeting"),
    "task": N_("Task"),
}
#: The filter chips, by kind (plural, as the chips read).
KIND_CHIPS: dict[str, str] = {
    "note": N_("Notes"),
    "call": N_("Calls"),
    "email": N_("E-mails"),
    "meeting": N_("Meetings"),
    "task": N_("Tasks"),
}
#: A symbol per kind, shown before each entry (decorative; the kind is also written out).
KIND_ICONS: dict[str, str] = {
    "note": "✎",
    "call": "☎",
    "email": "✉",
    "meeting": "◷",
    "task": "✓",
}
DIRECTIONS: dict[str, str] = {"outbound": N_("Outbound"), "inbound": N_("Inbound")}
OUTCOMES: dict[str, str] = {
    "connected": N_("Connected"),
    "left_voicemail": N_("Left voicemail"),
    "no_answer": N_("No answer"),
    "busy": N_("Busy"),
    "wrong_number": N_("Wrong number"),
}
RECORD_LABELS: dict[str, str] = {
    "contact": N_("Contact"),
    "company": N_("Company"),
    "deal": N_("Deal"),
    "ticket": N_("Ticket"),
}
RECORD_PATHS: dict[str, str] = {"contact": "/contacts", "company": "/companies", "deal": "/deals"}
#: Form fields by service field (error paths like ``("email_to", 1)`` go to ``email_to``).
ERROR_FIELDS = {
    "occurred_at": "occurred_at",
    "ends_at": "ends_at",
    "duration_seconds": "duration_minutes",
    "links": "",
}
_SPLIT = re.compile(r"[,;、\s]+")


def _item_context(ui: Ui, session: DbSession, items: list[ActivityRead]) -> dict[str, Any]:
    owners = auth_service.users_by_id(session, {a.owner_id for a in items if a.owner_id})
    return {
        "can_edit": ui.can("activities", "write"),
        "logged_kind_set": set(LOGGED_KINDS),
        "owners": {i: u.name for i, u in owners.items()},
        "kind_labels": KIND_LABELS,
        "kind_icons": KIND_ICONS,
        "directions": DIRECTIONS,
        "outcomes": OUTCOMES,
        "record_labels": RECORD_LABELS,
        "record_paths": RECORD_PATHS,
    }


@dataclass
class LogForm:
    """The log form as shown: the kind, the values as typed, and errors by field."""

    kind: str = "note"
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


def _local_input(ui: Ui, moment: datetime) -> str:
    """A time as a ``datetime-local`` input shows it, in the reader's time zone."""
    return moment.astimezone(ui.timezone).strftime("%Y-%m-%dT%H:%M")


def _fresh_form(ui: Ui, kind: str) -> LogForm:
    now = utcnow()
    values = {"occurred_at": _local_input(ui, now), "direction": "outbound"}
    if kind == "meeting":
        values["ends_at"] = _local_input(ui, now + timedelta(hours=1))
    return LogForm(kind=kind, values=values)


def _timeline_context(
    ui: Ui,
    session: DbSession,
    record_type: str,
    record_id: int,
    kinds: list[str],
    cursor: str | None,
) -> dict[str, Any]:
    page = service.timeline(
        session, record_type, record_id, ui.actor, kinds=kinds, cursor=cursor, limit=PAGE_SIZE
    )
    return {
        "record_type": record_type,
        "record_id": record_id,
        "base": f"/timeline/{record_type}/{record_id}",
        "dom_id": f"timeline-{record_type}-{record_id}",
        "kinds": kinds,
        "page": page,
        "kind_chips": KIND_CHIPS,
        **_item_context(ui, session, page.items),
    }


def _form_context(record_type: str, record_id: int, form: LogForm) -> dict[str, Any]:
    return {
        "record_type": record_type,
        "record_id": record_id,
        "base": f"/timeline/{record_type}/{record_id}",
        "dom_id": f"timeline-{record_type}-{record_id}",
        "form": form,
        "logged_kinds": {k: KIND_LABELS[k] for k in LOGGED_KINDS},
        "kind_labels": KIND_LABELS,
        "directions": DIRECTIONS,
        "outcomes": OUTCOMES,
    }


@router.get("/{record_type}/{record_id}")
def timeline(
    ui: SignedIn,
    session: DbSession,
    record_type: TimelineType,
    record_id: RecordId,
    kind: KindFilter = [],  # noqa: B006
) -> Response:
    """A record's timeline with its filter chips, first page and log form."""
    context = _timeline_context(ui, session, record_type, record_id, list(kind), None)
    context.update(_form_context(record_type, record_id, _fresh_form(ui, "note")))
    context["can_log"] = ui.can("activities", "write")
    return ui.render("activities/_timeline.html", context)


@router.get("/{record_type}/{record_id}/items")
def more_items(
    ui: SignedIn,
    session: DbSession,
    record_type: TimelineType,
    record_id: RecordId,
    kind: KindFilter = [],  # noqa: B006
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """The next page of entries ("load more"), with the button for the page after it."""
    context = _timeline_context(ui, session, record_type, record_id, list(kind), cursor)
    return ui.render("activities/_items.html", context)


@router.get("/{record_type}/{record_id}/form")
def log_form(
    ui: SignedIn,
    session: DbSession,
    record_type: TimelineType,
    record_id: RecordId,
    kind: Annotated[str, Query(max_length=10)] = "note",
) -> Response:
    """The log form for another kind (the kind buttons swap it in)."""
    service.timeline_records(session, record_type, record_id, ui.actor)
    chosen = kind if kind in LOGGED_KINDS else "note"
    return ui.render(
        "activities/_form.html", _form_context(record_type, record_id, _fresh_form(ui, chosen))
    )


def _parse_local(ui: Ui, raw: str, name: str, errors: list[FieldError]) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(FieldError((name,), N_("Enter a date and time.")))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ui.timezone)
    return moment.astimezone(UTC)


def _addresses(raw: str) -> list[str]:
    return [part for part in _SPLIT.split(raw) if part]


def _record_from_form(
    ui: Ui, form: Form, record_type: str, record_id: int, kind: str | None = None
) -> tuple[dict[str, Any], LogForm, list[FieldError]]:
    """The service record the submitted form stands for, and the form to show it again. The
    kind is the form's, unless given (an edited activity keeps its own)."""
    if kind is None:
        kind = form_text(form, "kind", 10)
        kind = kind if kind in LOGGED_KINDS else "note"
    names = (
        "subject",
        "body",
        "occurred_at",
        "ends_at",
        "direction",
        "duration_minutes",
        "outcome",
        "email_from",
        "email_to",
        "attendees",
        "location",
    )
    values = {name: form_text(form, name, 100_000 if name == "body" else 2000) for name in names}
    shown = LogForm(kind=kind, values=values)
    errors: list[FieldError] = []
    record: dict[str, Any] = {
        "kind": kind,
        "subject": values["subject"],
        "body": values["body"],
        "links": [{"type": record_type, "id": record_id}],
        "occurred_at": _parse_local(ui, values["occurred_at"], "occurred_at", errors) or utcnow(),
    }
    if kind in ("call", "email"):
        record["direction"] = values["direction"] or None
    if kind == "call":
        record["outcome"] = values["outcome"] or None
        minutes = values["duration_minutes"]
        if minutes:
            try:
                record["duration_seconds"] = round(float(minutes) * 60)
            except ValueError:
                errors.append(FieldError(("duration_minutes",), N_("Enter a number of minutes.")))
    if kind == "email":
        record["email_from"] = values["email_from"] or None
        record["email_to"] = _addresses(values["email_to"])
    if kind == "meeting":
        record["ends_at"] = _parse_local(ui, values["ends_at"], "ends_at", errors)
        record["location"] = values["location"] or None
        record["attendees"] = [{"email": a} for a in _addresses(values["attendees"])]
    return record, shown, errors


def _form_errors(ui: Ui, errors: list[FieldError]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, messages in field_errors(errors, ERROR_FIELDS).items():
        name = re.sub(r"-\d+(-email)?$", "", name)
        found.setdefault(name, []).extend(ui.gettext(m) for m in messages)
    return found


@router.post("/{record_type}/{record_id}")
def log_activity(
    ui: SignedIn, session: DbSession, form: Form, record_type: TimelineType, record_id: RecordId
) -> Response:
    """Log an activity against the record: the new entry goes to the top of the timeline
    (with a fresh form); a form with problems comes back with each next to its field."""
    record, shown, errors = _record_from_form(ui, form, record_type, record_id)
    logged: ActivityRead | None = None
    if not errors:
        try:
            logged = service.log_activity(session, ActivityCreate.model_validate(record), ui.actor)
        except ValidationError as exc:
            errors = [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        except ValidationFailed as exc:
            errors = exc.errors
    context = _form_context(record_type, record_id, shown)
    if logged is None:
        shown.errors = _form_errors(ui, errors) or {"": [ui.gettext("Some fields are not valid.")]}
        if ui.is_htmx:
            # Shown in place of the form (htmx leaves 4xx answers unswapped).
            ui.extra_headers.update(
                {"HX-Retarget": f"#{context['dom_id']}-form", "HX-Reswap": "outerHTML"}
            )
            return ui.render("activities/_form.html", context)
        return ui.render("activities/_form.html", context, status_code=422)
    if not ui.is_htmx:
        return ui.redirect(f"{RECORD_PATHS[record_type]}/{record_id}")
    context["form"] = _fresh_form(ui, shown.kind)
    context.update(_item_context(ui, session, [logged]))
    context["activity"] = logged
    return ui.render("activities/_logged.html", context)


# ----------------------------------------------------------------------------- edit, delete


def _form_of(ui: Ui, activity: ActivityRead) -> LogForm:
    """The form of an activity as logged, for changing it."""
    seconds = activity.duration_seconds
    values = {
        "subject": activity.subject,
        "body": activity.body,
        "occurred_at": _local_input(ui, activity.occurred_at),
        "ends_at": _local_input(ui, activity.ends_at) if activity.ends_at else "",
        "direction": activity.direction or "",
        "duration_minutes": "" if seconds is None else f"{seconds / 60:g}",
        "outcome": activity.outcome or "",
        "email_from": activity.email_from or "",
        "email_to": ", ".join(activity.email_to),
        "attendees": ", ".join(a.email for a in activity.attendees if a.email),
        "location": activity.location or "",
        "version": str(activity.version),
    }
    return LogForm(kind=activity.kind, values=values)


def _edit_context(activity: ActivityRead, form: LogForm) -> dict[str, Any]:
    return {
        "dom_id": f"activity-{activity.id}-edit",
        "base": f"/activities/{activity.id}/edit",
        "edit_id": activity.id,
        "form": form,
        "logged_kinds": {k: KIND_LABELS[k] for k in LOGGED_KINDS},
        "kind_labels": KIND_LABELS,
        "directions": DIRECTIONS,
        "outcomes": OUTCOMES,
    }


def _changes_from_form(
    ui: Ui, form: Form, activity: ActivityRead
) -> tuple[dict[str, Any], LogForm, list[FieldError]]:
    """What the edit form changes: every field its kind shows (an emptied one is cleared)."""
    record, shown, errors = _record_from_form(ui, form, "note", 0, kind=activity.kind)
    shown.values["version"] = form_text(form, "version", 20)
    changes = {k: v for k, v in record.items() if k not in ("kind", "links")}
    if activity.kind == "call":
        # An emptied duration is cleared (logging leaves it out instead).
        changes.setdefault("duration_seconds", None)
    return changes, shown, errors


def _version(form: Form) -> int | None:
    raw = form_text(form, "version", 20)
    return int(raw) if raw.isdigit() else None


def _back_to(activity: ActivityRead) -> str:
    link = next((link for link in activity.links if link.type in RECORD_PATHS), None)
    return f"{RECORD_PATHS[link.type]}/{link.id}" if link else "/"


def _entry(ui: Ui, session: DbSession, activity: ActivityRead) -> Response:
    context = _item_context(ui, session, [activity])
    context["activity"] = activity
    return ui.render("activities/_item.html", context)


@entries.get("/{activity_id}/item")
def activity_entry(ui: SignedIn, session: DbSession, activity_id: RecordId) -> Response:
    """One timeline entry (the edit form's Cancel puts it back)."""
    return _entry(ui, session, service.get_activity(session, activity_id, ui.actor))


@entries.get("/{activity_id}/edit")
def edit_activity(ui: SignedIn, session: DbSession, activity_id: RecordId) -> Response:
    """The form of a note, call, email or meeting, in place of its timeline entry."""
    activity = service.get_activity(session, activity_id, ui.actor)
    context = _edit_context(activity, _form_of(ui, activity))
    return ui.render("activities/_edit.html", context)


@entries.post("/{activity_id}/edit")
def save_activity(ui: SignedIn, session: DbSession, form: Form, activity_id: RecordId) -> Response:
    """Save the changes: the entry comes back changed; problems come back next to their
    fields; a change someone else saved first is not overwritten."""
    activity = service.get_activity(session, activity_id, ui.actor)
    changes, shown, errors = _changes_from_form(ui, form, activity)
    saved: ActivityRead | None = None
    if not errors:
        try:
            saved = service.update_activity(
                session,
                activity_id,
                ActivityUpdate.model_validate(changes),
                ui.actor,
                if_version=_version(form),
            )
        except ValidationError as exc:
            errors = [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        except ValidationFailed as exc:
            errors = exc.errors
        except PreconditionFailed:
            errors = [FieldError((), N_("Someone else changed this activity; reload to see it."))]
    if saved is None:
        shown.errors = _form_errors(ui, errors) or {"": [ui.gettext("Some fields are not valid.")]}
        context = _edit_context(activity, shown)
        return ui.render("activities/_edit.html", context, status_code=200 if ui.is_htmx else 422)
    if not ui.is_htmx:
        return ui.redirect(_back_to(saved))
    return _entry(ui, session, saved)


@entries.post("/{activity_id}/delete")
def delete_activity(
    ui: SignedIn, session: DbSession, form: Form, activity_id: RecordId
) -> Response:
    """Delete an activity: its entry leaves every timeline it was on."""
    activity = service.get_activity(session, activity_id, ui.actor)
    service.delete_activity(session, activity_id, ui.actor, if_version=_version(form))
    if not ui.is_htmx:
        return ui.redirect(_back_to(activity))
    return Response(status_code=200)
