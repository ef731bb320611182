"""Profile pages: look a person up by any identifier, the 360° page, and the web-activity
card on a contact's page."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response
from fastapi.responses import RedirectResponse

from ichigen.auth.permissions import require
from ichigen.core.errors import NotFound, PermissionDenied, ValidationFailed
from ichigen.identity import service as identity
from ichigen.profiles import service
from ichigen.profiles.api import event_store
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.templating import SignedIn, ui_router_for

router = ui_router_for()

#: How each source of a trait is labelled on the page.
SOURCE_LABELS: dict[str, str] = {
    "crm": N_("CRM"),
    "event": N_("Tracked"),
    "import": N_("Imported"),
}
#: How each identifier type is labelled on the page.
TYPE_LABELS: dict[str, str] = {
    "anonymous_id": N_("Anonymous id"),
    "user_id": N_("User id"),
    "email": N_("Email"),
    "phone": N_("Phone"),
    "crm_contact": N_("CRM contact"),
}
TIMELINE_ROWS = 50
WEB_ACTIVITY_ROWS = 8


@router.get("/profiles")
def profile_lookup(
    ui: SignedIn,
    session: DbSession,
    ref: Annotated[str | None, Query(max_length=400)] = None,
) -> Response:
    """Find a profile by person id or ``type:value``; a hit goes straight to its page."""
    require(ui.actor, "identity", "read")
    error = None
    if ref:
        text = ref.strip()
        if ":" not in text and "@" in text:
            text = f"email:{text}"
        try:
            person = identity.person_by_reference(session, text, loc=("query", "ref"))
        except ValidationFailed as exc:
            error = exc.errors[0].msg if exc.errors else str(exc)
        except NotFound:
            error = ui.gettext("No profile holds %(ref)s.", ref=text)
        else:
            return RedirectResponse(f"/profiles/{person.id}", status_code=303)
    return ui.render(
        "profiles/lookup.html",
        {"ref": ref or "", "error": error, "types": TYPE_LABELS},
        status_code=422 if error else 200,
    )


@router.get("/profiles/_web-activity/contact/{contact_id}")
def contact_web_activity(
    ui: SignedIn, session: DbSession, request: Request, contact_id: int
) -> Response:
    """The card on a contact's page: its person's latest tracked events and a link to the
    360° page (or why there is none)."""
    require(ui.actor, "identity", "read")
    try:
        profile = service.profile_of_contact(session, contact_id, ui.actor)
    except (NotFound, PermissionDenied):
        profile = None
    events = []
    if profile is not None:
        session.commit()
        person = identity.read_person(session, profile.person_id)
        events = service.person_events(event_store(request), person, ui.actor, WEB_ACTIVITY_ROWS)
    return ui.render(
        "profiles/_web_activity.html",
        {"profile": profile, "events": events, "contact_id": contact_id},
    )


@router.get("/profiles/{ref:path}")
def profile_page(ui: SignedIn, session: DbSession, request: Request, ref: str) -> Response:
    """The 360° page: identity, traits with their sources, the CRM record with its deals and
    tasks, consent, and one timeline of tracked events and CRM activities."""
    require(ui.actor, "identity", "read")
    person = identity.person_by_reference(session, ref)
    if ref != str(person.id) and ref.isdigit():
        return RedirectResponse(f"/profiles/{person.id}", status_code=307)
    profile = service.profile_of(session, person, ui.actor)
    store = event_store(request)
    events = service.person_events(store, person, ui.actor, TIMELINE_ROWS)
    entries = service.timeline(session, events, profile, ui.actor, TIMELINE_ROWS)
    consent, consent_at = service.tracked_consent(events)
    names = {t.name: t.value for t in profile.traits}
    title = (
        profile.contact.full_name
        if profile.contact is not None
        else names.get("name")
        or " ".join(str(names[k]) for k in ("firstName", "lastName") if names.get(k))
        or names.get("email")
    )
    return ui.render(
        "profiles/detail.html",
        {
            "profile": profile,
            "title": title,
            "entries": entries,
            "tracked_consent": consent,
            "tracked_consent_at": consent_at,
            "source_labels": SOURCE_LABELS,
            "type_labels": TYPE_LABELS,
            "events_collected": store is not None,
        },
    )
