"""Duplicate contact pages: the review queue side by side (merge, not a duplicate), undo of a
merge, the last and next scan, and the warning partial the contact form asks for while a
contact is typed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Response
from starlette.datastructures import FormData

from ichigen.auth import service as auth_service
from ichigen.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from ichigen.crm.contacts.schemas import ContactRead
from ichigen.crm.contacts.views import FIELD_LABELS, LEAD_STATUS_LABELS, LIFECYCLE_LABELS
from ichigen.identity import duplicates as service
from ichigen.identity.duplicates import (
    DuplicateCheck,
    DuplicatePairDetail,
    PairMergeRequest,
    ScanResult,
    Side,
)
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.templating import (
    Form,
    SignedIn,
    Ui,
    form_text,
    register_flash_messages,
    ui_router_for,
)

router = ui_router_for("/duplicates")
PAGE_SIZE = 20

register_flash_messages(
    {
        "duplicates_merge_undone": N_("Merge undone: both contacts are back."),
        "duplicates_not_duplicate": N_("Marked as two different people."),
    }
)

#: The model's comparisons as people read them.
COMPARISON_LABELS: dict[str, str] = {
    "name": N_("Name"),
    "first_name": N_("First name"),
    "last_name": N_("Last name"),
    "name_kana": N_("Reading"),
    "email": N_("Email"),
    "phone": N_("Phone"),
    "company": N_("Company"),
    "street": N_("Street"),
    "city": N_("City"),
    "postcode": N_("Postal code"),
    "region": N_("Prefecture / region"),
}

#: How a scan was started.
TRIGGER_LABELS: dict[str, str] = {
    "manual": N_("started by hand"),
    "scheduled": N_("scheduled"),
}

#: Why the contact form's check found a contact.
REASON_LABELS: dict[str, str] = {
    "email": N_("same email"),
    "phone": N_("same phone number"),
    "name": N_("same name"),
}

#: Contact fields shown side by side; those both contacts fill differently can be chosen.
COMPARED_FIELDS = (
    "last_name",
    "first_name",
    "last_name_reading",
    "first_name_reading",
    "company_id",
    "job_title",
    "postal_code",
    "region",
    "city",
    "street",
    "country",
    "lifecycle_stage",
    "lead_status",
    "source",
    "owner_id",
    "external_id",
)


@dataclass
class FieldRow:
    """One line of the side-by-side comparison."""

    key: str
    label: str
    left: str
    right: str
    #: Both have a value and the values differ: the reviewer picks one.
    choosable: bool
    translate_label: bool = True


def _shown(ui: Ui, contact: ContactRead, key: str, owners: dict[int, str]) -> str:
    if key == "company_id":
        return contact.company.name if contact.company else ""
    if key == "owner_id":
        return owners.get(contact.owner_id, "") if contact.owner_id else ""
    if key == "lifecycle_stage" and contact.lifecycle_stage:
        return ui.gettext(LIFECYCLE_LABELS[contact.lifecycle_stage.value])
    if key == "lead_status" and contact.lead_status:
        return ui.gettext(LEAD_STATUS_LABELS[contact.lead_status.value])
    value = getattr(contact, key)
    return "" if value is None else str(value)


def _rows(ui: Ui, pair: DuplicatePairDetail, owners: dict[int, str]) -> list[FieldRow]:
    rows = []
    for key in COMPARED_FIELDS:
        left = _shown(ui, pair.left, key, owners)
        right = _shown(ui, pair.right, key, owners)
        if left or right:
            rows.append(
                FieldRow(
                    key, FIELD_LABELS[key], left, right, bool(left and right and left != right)
                )
            )
    for key in sorted(set(pair.left.custom) | set(pair.right.custom)):
        left = "" if pair.left.custom.get(key) is None else str(pair.left.custom[key])
        right = "" if pair.right.custom.get(key) is None else str(pair.right.custom[key])
        if left or right:
            rows.append(
                FieldRow(
                    f"custom.{key}", key, left, right, bool(left and right and left != right), False
                )
            )
    return rows


def _render_queue(
    ui: Ui,
    session: DbSession,
    offset: int,
    *,
    merged_id: int | None = None,
    problem: str | None = None,
    scan: ScanResult | None = None,
    status_code: int = 200,
) -> Response:
    page = service.list_pairs(session, ui.actor, offset=offset, limit=PAGE_SIZE)
    owner_ids = {
        c.owner_id for p in page.items for c in (p.left, p.right) if c.owner_id is not None
    }
    owners = {i: u.name for i, u in auth_service.users_by_id(session, owner_ids).items()}
    merge = None
    if merged_id is not None:
        try:
            merge = service.get_merge(session, merged_id, ui.actor)
        except NotFound:
            merge = None
    return ui.render(
        "identity/duplicates/queue.html",
        {
            "page": page,
            "pairs": [(pair, _rows(ui, pair, owners)) for pair in page.items],
            "offset": offset,
            "page_size": PAGE_SIZE,
            "pending": service.count_pending(session, ui.actor),
            "comparisons": COMPARISON_LABELS,
            "labels": FIELD_LABELS,
            "merge": merge if merge is not None and merge.status == "merged" else None,
            "problem": problem,
            "scan": scan,
            "schedule": service.scan_schedule(session, ui.actor, ui.settings.duplicates_scan_hours),
            "triggers": TRIGGER_LABELS,
        },
        status_code=status_code,
    )


@router.get("")
def duplicate_queue(
    ui: SignedIn,
    session: DbSession,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    merged: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    """The pairs waiting for review, best match first, each side by side."""
    return _render_queue(ui, session, offset, merged_id=merged)


@router.post("/scan")
def scan(ui: SignedIn, session: DbSession) -> Response:
    """Scan every contact now and show the queue with what the scan found."""
    try:
        result = service.scan_contacts(session, ui.actor)
    except Conflict:
        return _render_queue(
            ui,
            session,
            0,
            problem=N_(
                "Another scan is running. Its pairs appear here when it has finished; "
                "reload this page in a few minutes."
            ),
            status_code=409,
        )
    return _render_queue(ui, session, 0, scan=result)


def _choices(form: FormData, pair: DuplicatePairDetail, survivor_id: int) -> dict[str, Side]:
    """``choice-<field>`` radios say left or right; the service wants survivor or merged."""
    survivor_side = "left" if survivor_id == pair.left.id else "right"
    choices: dict[str, Side] = {}
    for name, value in form.multi_items():
        if name.startswith("choice-") and value in ("left", "right"):
            choices[name[7:][:120]] = "survivor" if value == survivor_side else "merged"
    return choices


def _version(form: FormData, name: str) -> int | None:
    text = form_text(form, name, 20)
    return int(text) if text.isdigit() and int(text) >= 1 else None


@router.post("/{pair_id}/merge")
def merge_pair(ui: SignedIn, session: DbSession, form: Form, pair_id: int) -> Response:
    """Merge the pair as chosen, then show the queue with a way to undo it."""
    pair = service.get_pair(session, pair_id, ui.actor)
    survivor_text = form_text(form, "survivor", 20)
    survivor_id = int(survivor_text) if survivor_text.isdigit() else pair.left.id
    versions = {
        pair.left.id: _version(form, "left_version"),
        pair.right.id: _version(form, "right_version"),
    }
    merged_id = pair.right.id if survivor_id == pair.left.id else pair.left.id
    try:
        merge = service.merge_pair(
            session,
            pair_id,
            PairMergeRequest(
                survivor_id=survivor_id,
                choices=_choices(form, pair, survivor_id),
                survivor_version=versions.get(survivor_id),
                merged_version=versions.get(merged_id),
            ),
            ui.actor,
        )
    except (PreconditionFailed, Conflict):
        return _render_queue(
            ui,
            session,
            0,
            problem=N_(
                "Someone changed one of these contacts or this pair a moment ago. "
                "Check the pair again."
            ),
            status_code=409,
        )
    except ValidationFailed:
        return _render_queue(
            ui, session, 0, problem=N_("That merge is not possible."), status_code=422
        )
    return ui.redirect(f"/duplicates?merged={merge.id}")


@router.post("/{pair_id}/not-duplicate")
def not_duplicate(ui: SignedIn, session: DbSession, pair_id: int) -> Response:
    """Two different people: the pair leaves the queue for good."""
    try:
        service.mark_not_duplicate(session, pair_id, ui.actor)
    except Conflict:
        return _render_queue(
            ui, session, 0, problem=N_("This pair has been merged already."), status_code=409
        )
    return ui.redirect("/duplicates", flash="duplicates_not_duplicate")


@router.post("/merges/{merge_id}/undo")
def undo_merge(ui: SignedIn, session: DbSession, merge_id: int) -> Response:
    """Undo a merge in one step."""
    try:
        service.undo_merge(session, merge_id, ui.actor)
    except Conflict:
        return _render_queue(
            ui,
            session,
            0,
            problem=N_("This merge has been undone already, or can no longer be undone."),
            status_code=409,
        )
    return ui.redirect("/duplicates", flash="duplicates_merge_undone")


@router.get("/_check")
def check_new_contact(ui: SignedIn, session: DbSession) -> Response:
    """The contact form's warning: existing contacts with the same email, phone or name
    (the form's fields come in the query string)."""
    params = ui.request.query_params

    def values(prefix: str, suffix: str) -> list[str]:
        return [
            v[:320]
            for k, v in params.multi_items()
            if k.startswith(prefix) and k.endswith(suffix) and v.strip()
        ][:20]

    def text(name: str) -> str | None:
        value = params.get(name, "").strip()
        return value[:200] or None

    contact_id = params.get("contact_id", "")
    matches = service.check_new_contact(
        session,
        DuplicateCheck(
            first_name=text("first_name"),
            last_name=text("last_name"),
            first_name_reading=text("first_name_reading"),
            last_name_reading=text("last_name_reading"),
            emails=values("emails-", "-email"),
            phones=[v[:40] for v in values("phones-", "-number")],
            exclude_id=int(contact_id) if contact_id.isdigit() and len(contact_id) < 19 else None,
        ),
        ui.actor,
    )
    return ui.render(
        "identity/duplicates/_check.html", {"matches": matches, "reasons": REASON_LABELS}
    )
