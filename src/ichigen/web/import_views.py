"""The CSV import pages every importing feature shares: upload, column mapping, report.

A feature describes its import once, as an ``ImportFlow`` (where its pages live, the words
that name its records, its modes and match keys, and the service functions that preview and
import a file), and adds the three steps to its router with ``add_import_routes``. The pages
are the same templates (``imports/*.html``) for every entity:

1. ``GET <base>/import``: choose a file;
2. ``POST <base>/import``: the file is read, kept for a day under the data dir (per user), and
   its columns are mapped to fields;
3. ``POST <base>/import/<token>``: a dry run (nothing is written) or the import itself, and
   its report, row by row.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from ichigen.auth.permissions import require
from ichigen.core.audit import Actor
from ichigen.core.errors import BadRequest, NotFound
from ichigen.core.tabular import ImportPreview, ImportReport
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.templating import ChangeFormatter, Form, SignedIn, Ui, form_text

#: The encodings a user may name instead of letting the file be detected.
IMPORT_ENCODINGS: dict[str, str] = {
    "": N_("Detect automatically"),
    "utf-8": "UTF-8",
    "shift_jis": "Shift_JIS (CP932)",
}
#: What a report says was (or would be) done to a row.
IMPORT_ACTIONS: dict[str, str] = {
    "create": N_("Create"),
    "update": N_("Update"),
    "unchanged": N_("Unchanged"),
    "error": N_("Error"),
}
_UPLOAD_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
UPLOAD_MAX_AGE = timedelta(days=1)
_SKIPPED_WARNING = "These columns will be skipped"


class PreviewImport(Protocol):
    """A feature's ``preview_*_import``: how a file reads and how its columns would map."""

    def __call__(
        self, session: Session, data: bytes, actor: Actor, *, encoding: str | None = ...
    ) -> ImportPreview: ...


class RunImport(Protocol):
    """A feature's ``import_*``: a dry run or the import, with a per-row report."""

    def __call__(
        self,
        session: Session,
        data: bytes,
        actor: Actor,
        *,
        mapping: dict[str, str | None] | None = ...,
        mode: Any = ...,
        match_on: Any = ...,
        dry_run: bool = ...,
        encoding: str | None = ...,
    ) -> ImportReport: ...


@dataclass(frozen=True)
class ImportFlow:
    """One entity's import pages: where they live, their words, and the services they call.

    The texts are ``N_``-marked English, translated when shown. ``modes`` and
    ``match_options`` map the values the service takes to their labels; the first of each is
    the default. ``changes`` builds the formatter that shows a dry run's changes per row.
    A ``zoned`` import reads times without an offset in the visitor's time zone (its ``run``
    takes ``time_zone``).
    """

    entity: str
    base: str
    title: str
    list_label: str
    match_label: str
    back_label: str
    modes: Mapping[str, str]
    match_options: Mapping[str, str]
    preview: PreviewImport
    run: RunImport
    changes: Callable[[Ui, Session, ImportReport], ChangeFormatter]
    zoned: bool = False

    @property
    def default_mode(self) -> str:
        return next(iter(self.modes))

    @property
    def default_match(self) -> str:
        return next(iter(self.match_options))


# ----------------------------------------------------------------------------- uploads


def _upload_dir(ui: Ui) -> Path:
    return ui.settings.data_dir / "imports"


def _upload_path(ui: Ui, token: str) -> Path:
    """Where an uploaded file waits between the mapping step and the import (per user)."""
    if not _UPLOAD_TOKEN.match(token):
        raise NotFound("This upload does not exist; upload the file again.")
    return _upload_dir(ui) / f"{ui.user.id}-{token}.csv"


def stored_upload(ui: Ui, token: str) -> bytes:
    """The file the signed-in user uploaded under ``token`` (a 404 for anyone else's)."""
    path = _upload_path(ui, token)
    if not path.is_file():
        raise NotFound("This upload has expired; upload the file again.")
    return path.read_bytes()


def store_upload(ui: Ui, data: bytes) -> str:
    """Keep an uploaded file for the next steps; files older than a day are removed."""
    folder = _upload_dir(ui)
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = datetime.now(UTC) - UPLOAD_MAX_AGE
    for old in folder.glob("*.csv"):
        if datetime.fromtimestamp(old.stat().st_mtime, UTC) < cutoff:
            old.unlink(missing_ok=True)
    token = secrets.token_urlsafe(24)
    _upload_path(ui, token).write_bytes(data)
    return token


# ----------------------------------------------------------------------------- pages


def preview_warnings(ui: Ui, preview: ImportPreview) -> list[str]:
    """The preview's warnings, with the skipped columns named in the visitor's language."""
    warnings = [ui.gettext(w) for w in preview.warnings if not w.startswith(_SKIPPED_WARNING)]
    skipped = [header for header, target in preview.mapping.items() if target is None]
    if skipped and len(skipped) < len(preview.mapping):
        warnings.append(
            ui.gettext("These columns will be skipped: %(columns)s.", columns=", ".join(skipped))
        )
    return warnings


def chosen_mapping(form: FormData, headers: list[str]) -> dict[str, str | None]:
    """The mapping page's choices: ``map-<n>`` names the field of the n-th column."""
    return {
        header: form_text(form, f"map-{index}", 100) or None
        for index, header in enumerate(headers)
        if f"map-{index}" in form
    }


def upload_page(ui: Ui, flow: ImportFlow, error: str = "", status_code: int = 200) -> Response:
    """Step 1: the file chooser."""
    return ui.render(
        "imports/upload.html",
        {"flow": flow, "error": error, "encodings": IMPORT_ENCODINGS},
        status_code=status_code,
    )


def mapping_page(
    ui: Ui,
    flow: ImportFlow,
    preview: ImportPreview,
    token: str,
    *,
    mode: str = "",
    match_on: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    """Step 2: each column of the file, its first values, and the field it goes into."""
    fields = {
        f.key: (f.label if f.key.startswith("cf.") else ui.gettext(f.label)) for f in preview.fields
    }
    return ui.render(
        "imports/mapping.html",
        {
            "flow": flow,
            "preview": preview,
            "token": token,
            "fields": fields,
            "warnings": preview_warnings(ui, preview),
            "modes": flow.modes,
            "match_options": flow.match_options,
            "mode": mode or flow.default_mode,
            "match_on": match_on or flow.default_match,
            "error": error,
            "samples": [
                [row[i] if i < len(row) else "" for row in preview.rows]
                for i in range(len(preview.headers))
            ],
        },
        status_code=status_code,
    )


def report_page(
    ui: Ui,
    session: Session,
    flow: ImportFlow,
    report: ImportReport,
    *,
    token: str,
    mode: str,
    match_on: str,
    headers: list[str],
) -> Response:
    """Step 3: what the import did (or, for a dry run, would do), with each row's errors."""
    formatter = flow.changes(ui, session, report)
    return ui.render(
        "imports/report.html",
        {
            "flow": flow,
            "report": report,
            "token": token,
            "mode": mode,
            "match_on": match_on,
            "headers": headers,
            "actions": IMPORT_ACTIONS,
            "reasons": {e.reason: ui.gettext(e.reason) for e in report.errors},
            "previews": {item.row: formatter.changes(item.changes) for item in report.preview},
        },
    )


def add_import_routes(router: APIRouter, flow: ImportFlow) -> None:
    """Add the three import steps under ``/import`` to a feature's router.

    Call it before the router's ``/{id}`` routes, which would otherwise take ``import``.
    """

    @router.get("/import")
    def import_start(ui: SignedIn) -> Response:
        """Step 1: choose a CSV file."""
        require(ui.actor, flow.entity, "write")
        return upload_page(ui, flow)

    @router.post("/import")
    def import_upload(ui: SignedIn, session: DbSession, form: Form) -> Response:
        """Step 2: read the file and propose how its columns map to fields."""
        require(ui.actor, flow.entity, "write")
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return upload_page(ui, flow, ui.gettext("Choose a CSV file to import."), 400)
        data = upload.file.read(ui.settings.max_body_bytes + 1)
        encoding = form_text(form, "encoding", 40) or None
        try:
            preview = flow.preview(session, data, ui.actor, encoding=encoding)
        except BadRequest as exc:
            return upload_page(ui, flow, ui.gettext(exc.detail), 400)
        return mapping_page(ui, flow, preview, store_upload(ui, data))

    @router.post("/import/{token}")
    def import_run(ui: SignedIn, session: DbSession, form: Form, token: str) -> Response:
        """Step 3: a dry run (nothing is written) or the import itself, and its report."""
        data = stored_upload(ui, token)
        encoding = form_text(form, "encoding", 40) or None
        mode = form_text(form, "mode", 10)
        match_on = form_text(form, "match_on", 20)
        mode = mode if mode in flow.modes else flow.default_mode
        match_on = match_on if match_on in flow.match_options else flow.default_match
        headers = flow.preview(session, data, ui.actor, encoding=encoding).headers
        mapping = chosen_mapping(form, headers)
        zone: dict[str, Any] = {"time_zone": str(ui.timezone)} if flow.zoned else {}
        try:
            report = flow.run(
                session,
                data,
                ui.actor,
                mapping=mapping,
                mode=mode,
                match_on=match_on,
                dry_run=form_text(form, "action", 20) != "import",
                encoding=encoding,
                **zone,
            )
        except BadRequest as exc:
            preview = flow.preview(session, data, ui.actor, encoding=encoding)
            preview.mapping = {h: mapping.get(h, preview.mapping.get(h)) for h in preview.headers}
            return mapping_page(
                ui,
                flow,
                preview,
                token,
                mode=mode,
                match_on=match_on,
                error=ui.gettext(exc.detail),
                status_code=400,
            )
        return report_page(
            ui, session, flow, report, token=token, mode=mode, match_on=match_on, headers=headers
        )
