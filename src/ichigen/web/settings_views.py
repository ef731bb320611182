"""Settings pages: users, teams, the signed-in user's API tokens, and custom fields.

Each section is shown to the roles that may read what it manages (the permission matrix in
``ichigen.auth.permissions``); its forms to the roles that may change it. Every change goes
through the same service functions as the JSON API, so the same rules and audit apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from fastapi import Response
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import FormData

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import MATRIX, Role, require
from ichigen.auth.schemas import (
    TeamCreate,
    TeamRead,
    TeamUpdate,
    TokenCreate,
    TokenCreated,
    UserCreate,
    UserRead,
    UserUpdate,
)
from ichigen.core import custom_fields
from ichigen.core.audit import record_history
from ichigen.core.custom_fields import (
    CUSTOM_FIELD_ENTITIES,
    CustomFieldCreate,
    CustomFieldRead,
    CustomFieldUpdate,
    FieldType,
)
from ichigen.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.templating import (
    ChangeFormatter,
    Form,
    NavItem,
    SignedIn,
    Ui,
    field_errors,
    form_text,
    history_rows,
    register_flash_messages,
    ui_router_for,
)

router = ui_router_for("/settings")

#: The sections of the settings area, each shown to the roles that may read its entity
#: (``None``: every signed-in user).
SECTIONS: list[NavItem] = [
    NavItem("users", N_("Users"), "/settings/users", "users"),
    NavItem("teams", N_("Teams"), "/settings/teams", "teams"),
    NavItem("fields", N_("Custom fields"), "/settings/fields", "custom_fields"),
    NavItem("tokens", N_("My API tokens"), "/settings/tokens", None),
]
ROLE_LABELS: dict[str, str] = {
    Role.admin: N_("Administrator"),
    Role.manager: N_("Manager"),
    Role.sales: N_("Sales"),
    Role.support: N_("Support"),
    Role.marketing: N_("Marketing"),
    Role.analyst: N_("Analyst"),
    Role.viewer: N_("Viewer"),
}
USER_LABELS: dict[str, str] = {
    "email": N_("Email"),
    "name": N_("Name"),
    "role": N_("Role"),
    "team_id": N_("Team"),
    "locale": N_("Language"),
    "is_active": N_("Active"),
    "password": N_("Password"),
}
#: The entities of the permission matrix as the users page shows it.
MATRIX_ENTITIES: dict[str, str] = {
    "contacts": N_("Contacts"),
    "companies": N_("Companies"),
    "users": N_("Users"),
    "teams": N_("Teams"),
    "custom_fields": N_("Custom fields"),
    "audit": N_("Change history"),
    "sources": N_("Event sources"),
    "events": N_("Events"),
}
TOKEN_SCOPES: dict[str, str] = {
    "read": N_("Read only"),
    "read-write": N_("Read and write"),
}
FIELD_TYPES: dict[str, str] = {
    FieldType.text: N_("Text"),
    FieldType.number: N_("Whole number"),
    FieldType.decimal: N_("Decimal number"),
    FieldType.date: N_("Date"),
    FieldType.datetime: N_("Date and time"),
    FieldType.boolean: N_("Yes or no"),
    FieldType.select: N_("Choice of one option"),
    FieldType.multi_select: N_("Choice of several options"),
    FieldType.url: N_("Web address (URL)"),
    FieldType.email: N_("Email address"),
    FieldType.phone: N_("Phone number"),
}
CHOICE_TYPES = frozenset({FieldType.select, FieldType.multi_select})
FIELD_LABELS: dict[str, str] = {
    "label": N_("Label"),
    "help_text": N_("Help text"),
    "required": N_("Required"),
    "indexed": N_("Indexed"),
    "options": N_("Options"),
    "position": N_("Position"),
}
FIELD_ENTITIES: dict[str, str] = {
    "contacts": N_("Contacts"),
    "companies": N_("Companies"),
    "deals": N_("Deals"),
}

register_flash_messages(
    {
        "user_created": N_("User created."),
        "user_saved": N_("Changes saved."),
        "user_deactivated": N_("User deactivated; their API tokens were revoked."),
        "team_created": N_("Team created."),
        "team_saved": N_("Changes saved."),
        "team_deleted": N_("Team deleted."),
        "token_revoked": N_("API token revoked."),
        "field_created": N_("Custom field created."),
        "field_saved": N_("Changes saved."),
        "field_deleted": N_("Custom field deleted."),
    }
)


@dataclass
class SettingsForm:
    """A settings form as shown: the values as typed and the errors next to each field."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    version: int | None = None
    stale: bool = False


# ----------------------------------------------------------------------------- shared


def _sections(ui: Ui) -> list[NavItem]:
    return [s for s in SECTIONS if s.entity is None or ui.can(s.entity)]


def _render(
    ui: Ui,
    template: str,
    section: str,
    context: Mapping[str, Any],
    status_code: int = 200,
) -> Response:
    """A settings page, with the sections the visitor may open."""
    values = {"sections": _sections(ui), "section": section, **context}
    return ui.render(template, values, status_code=status_code)


def _input_message(ui: Ui, error: ErrorDetails) -> str:
    """A Pydantic error on a form field, said the way the form's reader understands it."""
    kind = error["type"]
    limits = error.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and limits.get("min_length") == 1):
        return ui.gettext("This field is required.")
    if kind == "string_too_short":
        return ui.gettext("Use at least %(count)s characters.", count=limits.get("min_length"))
    if kind == "string_too_long":
        return ui.gettext("Use at most %(count)s characters.", count=limits.get("max_length"))
    if kind == "too_long":
        return ui.gettext("Use at most %(count)s options.", count=limits.get("max_length"))
    if kind == "string_pattern_mismatch":
        return ui.gettext(
            "Use lower-case letters, digits and underscores, starting with a letter "
            "(at most 40 characters)."
        )
    if kind.startswith("int_"):
        return ui.gettext("Enter a whole number.")
    if kind == "greater_than_equal":
        return ui.gettext("Enter %(limit)s or more.", limit=limits.get("ge"))
    if kind == "less_than_equal":
        return ui.gettext("Enter %(limit)s or less.", limit=limits.get("le"))
    if kind in ("enum", "literal_error"):
        return ui.gettext("Choose one of the listed values.")
    message = error["msg"]
    return ui.gettext(message)


def input_errors(
    ui: Ui, exc: ValidationError, option_lines: Mapping[int, int] | None = None
) -> dict[str, list[str]]:
    """A form's Pydantic errors by field name; an option's error names its line."""
    found: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = error["loc"]
        name = str(loc[0]) if loc else ""
        message = _input_message(ui, error)
        if name == "options" and len(loc) > 1 and isinstance(loc[1], int) and option_lines:
            line = option_lines.get(loc[1], loc[1] + 1)
            message = ui.gettext("Line %(line)s: %(problem)s", line=line, problem=message)
        found.setdefault(name, []).append(message)
    return found


def service_errors(ui: Ui, errors: Iterable[FieldError]) -> dict[str, list[str]]:
    """A service's field errors by form field, in the visitor's language where known."""
    return {
        name: [ui.gettext(message) for message in messages]
        for name, messages in field_errors(errors).items()
    }


def _checked(form: FormData, name: str) -> bool:
    return form_text(form, name, 10) in ("1", "on", "true")


def _version(form: FormData) -> int | None:
    raw = form_text(form, "version", 20)
    return int(raw) if raw.isdigit() else None


@router.get("")
def settings_home(ui: SignedIn) -> Response:
    """The first settings section the visitor may open."""
    return ui.redirect(_sections(ui)[0].href)


# ----------------------------------------------------------------------------- users


def _teams_by_id(teams: Iterable[TeamRead]) -> dict[int, str]:
    return {t.id: t.name for t in teams}


def _user_history(ui: Ui, session: DbSession, user_id: int, teams: dict[int, str]) -> list[Any]:
    if not ui.can("audit"):
        return []
    formatter = ChangeFormatter(
        ui,
        USER_LABELS,
        names={"role": ROLE_LABELS, "team_id": teams},
        translated=("role",),
    )
    return history_rows(formatter, record_history(session, "users", user_id, limit=100))


def _render_user_form(
    ui: Ui,
    session: DbSession,
    user: UserRead | None,
    form: SettingsForm,
    status_code: int = 200,
) -> Response:
    teams = auth_service.list_teams(session)
    return _render(
        ui,
        "settings/user_form.html",
        "users",
        {
            "person": user,
            "form": form,
            "roles": ROLE_LABELS,
            "teams": _teams_by_id(teams),
            "labels": USER_LABELS,
            "history": (_user_history(ui, session, user.id, _teams_by_id(teams)) if user else []),
        },
        status_code,
    )


def _user_values(form: FormData) -> dict[str, Any]:
    return {
        "email": form_text(form, "email", 320),
        "name": form_text(form, "name", 300),
        "role": form_text(form, "role", 20),
        "team_id": form_text(form, "team_id", 20),
        "is_active": _checked(form, "is_active"),
    }


def _password(form: FormData) -> str:
    raw = form.get("password")
    return raw[:1100] if isinstance(raw, str) else ""


def role_matrix() -> dict[str, dict[str, str]]:
    """For each role and entity: ``"write"``, ``"read"`` or ``""`` (no access)."""
    return {
        role.value: {
            entity: next((a for a in ("write", "read") if a in grants.get(entity, ())), "")
            for entity in MATRIX_ENTITIES
        }
        for role, grants in MATRIX.items()
    }


@router.get("/users")
def user_list(ui: SignedIn, session: DbSession) -> Response:
    """Every user, with their role, team and whether they may sign in."""
    require(ui.actor, "users", "read")
    users = sorted(auth_service.list_users(session), key=lambda u: (not u.is_active, u.name))
    return _render(
        ui,
        "settings/users.html",
        "users",
        {
            "users": users,
            "roles": ROLE_LABELS,
            "teams": _teams_by_id(auth_service.list_teams(session)),
            "matrix": role_matrix(),
            "matrix_entities": MATRIX_ENTITIES,
        },
    )


@router.get("/users/new")
def new_user(ui: SignedIn, session: DbSession) -> Response:
    """An empty form for a new user (admins only)."""
    require(ui.actor, "users", "write")
    form = SettingsForm(values={"role": Role.viewer.value, "is_active": True})
    return _render_user_form(ui, session, None, form)


@router.post("/users/new")
def create_user(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Create the user, or show the form again with each problem next to its field."""
    require(ui.actor, "users", "write")
    values = _user_values(form)
    shown = SettingsForm(values=values)
    password = _password(form)
    try:
        data = UserCreate.model_validate(
            {
                "email": values["email"],
                "name": values["name"],
                "role": values["role"],
                "team_id": values["team_id"] or None,
                "password": password,
            }
        )
        auth_service.create_user(session, data, ui.actor)
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_user_form(ui, session, None, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_user_form(ui, session, None, shown, exc.status)
    return ui.redirect("/settings/users", flash="user_created")


@router.get("/users/{user_id}/edit")
def edit_user(ui: SignedIn, session: DbSession, user_id: int) -> Response:
    """A user's name, role, team and whether they may sign in (admins only)."""
    require(ui.actor, "users", "write")
    user = auth_service.get_user(session, user_id)
    form = SettingsForm(
        values={
            "email": user.email,
            "name": user.name,
            "role": user.role.value,
            "team_id": str(user.team_id or ""),
            "is_active": user.is_active,
        },
        version=user.version,
    )
    return _render_user_form(ui, session, user, form)


@router.post("/users/{user_id}/edit")
def update_user(ui: SignedIn, session: DbSession, form: Form, user_id: int) -> Response:
    """Save the changes unless someone else saved theirs since the form was opened."""
    require(ui.actor, "users", "write")
    user = auth_service.get_user(session, user_id)
    values = {**_user_values(form), "email": user.email}
    shown = SettingsForm(values=values, version=_version(form))
    changes: dict[str, Any] = {
        "name": values["name"],
        "role": values["role"],
        "team_id": values["team_id"] or None,
        "is_active": values["is_active"],
    }
    if password := _password(form):
        changes["password"] = password
    try:
        data = UserUpdate.model_validate(changes)
        auth_service.ensure_not_self_escalation(ui.actor, data)
        auth_service.update_user(session, user_id, data, ui.actor, if_version=shown.version)
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_user_form(ui, session, user, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_user_form(ui, session, user, shown, exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_user_form(ui, session, user, shown, 409)
    return ui.redirect("/settings/users", flash="user_saved")


@router.get("/users/{user_id}/deactivate")
def confirm_deactivate_user(ui: SignedIn, session: DbSession, user_id: int) -> Response:
    """Ask before deactivating a user."""
    require(ui.actor, "users", "write")
    user = auth_service.get_user(session, user_id)
    return _render(ui, "settings/user_deactivate.html", "users", {"person": user, "error": ""})


@router.post("/users/{user_id}/deactivate")
def deactivate_user(ui: SignedIn, session: DbSession, user_id: int) -> Response:
    """Stop a user from signing in and revoke their API tokens; their records stay theirs."""
    require(ui.actor, "users", "write")
    user = auth_service.get_user(session, user_id)
    try:
        auth_service.delete_user(session, user_id, ui.actor)
    except ValidationFailed:
        return _render(
            ui,
            "settings/user_deactivate.html",
            "users",
            {"person": user, "error": ui.gettext("You cannot deactivate yourself.")},
            422,
        )
    return ui.redirect("/settings/users", flash="user_deactivated")


# ----------------------------------------------------------------------------- teams


def _render_teams(
    ui: Ui, session: DbSession, form: SettingsForm, status_code: int = 200
) -> Response:
    members: dict[int, int] = {}
    for user in auth_service.list_users(session, include_inactive=False):
        if user.team_id is not None:
            members[user.team_id] = members.get(user.team_id, 0) + 1
    return _render(
        ui,
        "settings/teams.html",
        "teams",
        {"teams": auth_service.list_teams(session), "members": members, "form": form},
        status_code,
    )


def _team_values(form: FormData) -> dict[str, str]:
    return {
        "name": form_text(form, "name", 300),
        "description": form_text(form, "description", 3000),
    }


@router.get("/teams")
def team_list(ui: SignedIn, session: DbSession) -> Response:
    """The teams, how many active users each has, and (for managers) a form for a new one."""
    require(ui.actor, "teams", "read")
    return _render_teams(ui, session, SettingsForm())


@router.post("/teams")
def create_team(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Create a team, or show the list again with the form's problems."""
    require(ui.actor, "teams", "write")
    shown = SettingsForm(values=_team_values(form))
    try:
        auth_service.create_team(session, TeamCreate.model_validate(shown.values), ui.actor)
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_teams(ui, session, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_teams(ui, session, shown, exc.status)
    return ui.redirect("/settings/teams", flash="team_created")


def _render_team_form(
    ui: Ui, team: TeamRead, form: SettingsForm, status_code: int = 200
) -> Response:
    return _render(
        ui, "settings/team_form.html", "teams", {"team": team, "form": form}, status_code
    )


@router.get("/teams/{team_id}/edit")
def edit_team(ui: SignedIn, session: DbSession, team_id: int) -> Response:
    """Rename a team or change its description."""
    require(ui.actor, "teams", "write")
    team = auth_service.get_team(session, team_id)
    form = SettingsForm(
        values={"name": team.name, "description": team.description}, version=team.version
    )
    return _render_team_form(ui, team, form)


@router.post("/teams/{team_id}/edit")
def update_team(ui: SignedIn, session: DbSession, form: Form, team_id: int) -> Response:
    """Save the new name unless someone else changed the team since the form was opened."""
    require(ui.actor, "teams", "write")
    team = auth_service.get_team(session, team_id)
    shown = SettingsForm(values=_team_values(form), version=_version(form))
    try:
        auth_service.update_team(
            session,
            team_id,
            TeamUpdate.model_validate(shown.values),
            ui.actor,
            if_version=shown.version,
        )
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_team_form(ui, team, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_team_form(ui, team, shown, exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_team_form(ui, team, shown, 409)
    return ui.redirect("/settings/teams", flash="team_saved")


@router.get("/teams/{team_id}/delete")
def confirm_delete_team(ui: SignedIn, session: DbSession, team_id: int) -> Response:
    """Ask before deleting a team, saying how many users it has."""
    require(ui.actor, "teams", "write")
    team = auth_service.get_team(session, team_id)
    members = sum(1 for u in auth_service.list_users(session) if u.team_id == team_id)
    return _render(
        ui, "settings/team_delete.html", "teams", {"team": team, "member_count": members}
    )


@router.post("/teams/{team_id}/delete")
def delete_team(ui: SignedIn, session: DbSession, team_id: int) -> Response:
    """Delete the team; its users stay, without a team."""
    require(ui.actor, "teams", "write")
    with suppress(NotFound):  # already gone: a second click of the same button
        auth_service.delete_team(session, team_id, ui.actor)
    return ui.redirect("/settings/teams", flash="team_deleted")


# ----------------------------------------------------------------------------- API tokens


def _render_tokens(
    ui: Ui,
    session: DbSession,
    form: SettingsForm,
    created: TokenCreated | None = None,
    status_code: int = 200,
) -> Response:
    return _render(
        ui,
        "settings/tokens.html",
        "tokens",
        {
            "tokens": auth_service.list_tokens(session, ui.user.id),
            "scopes": TOKEN_SCOPES,
            "form": form,
            "created": created,
            "api_url": str(ui.request.base_url).rstrip("/") + "/api/v1",
        },
        status_code,
    )


@router.get("/tokens")
def token_list(ui: SignedIn, session: DbSession) -> Response:
    """The signed-in user's API tokens, and a form for a new one."""
    return _render_tokens(ui, session, SettingsForm(values={"scope": "read"}))


@router.post("/tokens")
def create_token(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Make a token and show it, this once; only its hash is kept."""
    shown = SettingsForm(
        values={"name": form_text(form, "name", 300), "scope": form_text(form, "scope", 20)}
    )
    try:
        data = TokenCreate.model_validate(shown.values)
        created = auth_service.create_token(session, ui.user.id, data, ui.actor)
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc)
        return _render_tokens(ui, session, shown, status_code=422)
    except ValidationFailed as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_tokens(ui, session, shown, status_code=exc.status)
    return _render_tokens(
        ui, session, SettingsForm(values={"scope": "read"}), created, status_code=201
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(ui: SignedIn, session: DbSession, token_id: int) -> Response:
    """Revoke one of the signed-in user's own tokens (others' are not found here)."""
    if token_id not in {t.id for t in auth_service.list_tokens(session, ui.user.id)}:
        raise NotFound(f"API token {token_id} does not exist.")
    auth_service.revoke_token(session, token_id, ui.actor)
    return ui.redirect("/settings/tokens", flash="token_revoked")


# ----------------------------------------------------------------------------- custom fields


def _entity(entity: str) -> str:
    if entity not in CUSTOM_FIELD_ENTITIES:
        raise NotFound(f"No custom fields for '{entity}'.")
    return entity


def _field_of(session: DbSession, entity: str, field_id: int) -> CustomFieldRead:
    definition = custom_fields.get_field(session, field_id)
    if definition.entity != entity:
        raise NotFound(f"Custom field {field_id} does not exist.")
    return definition


def options_text(definition: CustomFieldRead) -> str:
    """The options as the form edits them: one a line, ``value`` or ``value|label``."""
    return "\n".join(
        f"{o.value}|{o.label}" if o.label and o.label != o.value else o.value
        for o in definition.options
    )


def parse_options(text: str) -> tuple[list[dict[str, str]], dict[int, int]]:
    """Options from the form's text, and for each option the line it was on (for errors)."""
    options: list[dict[str, str]] = []
    lines: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        value, _, label = line.partition("|")
        lines[len(options)] = number
        options.append({"value": value.strip(), "label": label.strip()})
    return options, lines


def _field_values(form: FormData) -> dict[str, Any]:
    return {
        "key": form_text(form, "key", 100),
        "label": form_text(form, "label", 300),
        "field_type": form_text(form, "field_type", 20),
        "help_text": form_text(form, "help_text", 3000),
        "options": form_text(form, "options", 60_000),
        "position": form_text(form, "position", 20),
        "required": _checked(form, "required"),
        "indexed": _checked(form, "indexed"),
    }


def _field_history(ui: Ui, session: DbSession, field_id: int) -> list[Any]:
    if not ui.can("audit"):
        return []
    entries = record_history(session, "custom_fields", field_id, limit=100)
    return history_rows(ChangeFormatter(ui, FIELD_LABELS), entries)


def _render_field_form(
    ui: Ui,
    session: DbSession,
    entity: str,
    definition: CustomFieldRead | None,
    form: SettingsForm,
    status_code: int = 200,
) -> Response:
    return _render(
        ui,
        "settings/field_form.html",
        "fields",
        {
            "entity": entity,
            "entities": FIELD_ENTITIES,
            "definition": definition,
            "form": form,
            "types": FIELD_TYPES,
            "labels": FIELD_LABELS,
            "history": _field_history(ui, session, definition.id) if definition else [],
        },
        status_code,
    )


@router.get("/fields")
def field_home(ui: SignedIn) -> Response:
    """The custom fields of contacts, the first entity that has them."""
    require(ui.actor, "custom_fields", "read")
    return ui.redirect(f"/settings/fields/{CUSTOM_FIELD_ENTITIES[0]}")


@router.get("/fields/{entity}")
def field_list(ui: SignedIn, session: DbSession, entity: str) -> Response:
    """An entity's custom fields in the order forms show them."""
    require(ui.actor, "custom_fields", "read")
    entity = _entity(entity)
    return _render(
        ui,
        "settings/fields.html",
        "fields",
        {
            "entity": entity,
            "entities": FIELD_ENTITIES,
            "fields": custom_fields.list_fields(session, entity),
            "types": FIELD_TYPES,
        },
    )


@router.get("/fields/{entity}/new")
def new_field(ui: SignedIn, session: DbSession, entity: str) -> Response:
    """An empty form for a new custom field (admins only), placed after the others."""
    require(ui.actor, "custom_fields", "write")
    entity = _entity(entity)
    existing = custom_fields.list_fields(session, entity)
    position = max((f.position for f in existing), default=-1) + 1
    form = SettingsForm(values={"field_type": FieldType.text.value, "position": str(position)})
    return _render_field_form(ui, session, entity, None, form)


@router.post("/fields/{entity}/new")
def create_field(ui: SignedIn, session: DbSession, form: Form, entity: str) -> Response:
    """Define the field, or show the form again with each problem next to its field."""
    require(ui.actor, "custom_fields", "write")
    entity = _entity(entity)
    values = _field_values(form)
    shown = SettingsForm(values=values)
    options, lines = parse_options(values["options"])
    record = {
        **{k: v for k, v in values.items() if k != "options"},
        "entity": entity,
        "options": options,
        "position": values["position"] or 0,
    }
    try:
        created = custom_fields.create_field(
            session, CustomFieldCreate.model_validate(record), ui.actor
        )
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc, lines)
        return _render_field_form(ui, session, entity, None, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_field_form(ui, session, entity, None, shown, exc.status)
    return ui.redirect(f"/settings/fields/{created.entity}", flash="field_created")


@router.get("/fields/{entity}/{field_id}/edit")
def edit_field(ui: SignedIn, session: DbSession, entity: str, field_id: int) -> Response:
    """A field's label, help, flags, options and position; its key and type stay."""
    require(ui.actor, "custom_fields", "write")
    definition = _field_of(session, _entity(entity), field_id)
    form = SettingsForm(
        values={
            "label": definition.label,
            "help_text": definition.help_text,
            "required": definition.required,
            "indexed": definition.indexed,
            "options": options_text(definition),
            "position": str(definition.position),
        },
        version=definition.version,
    )
    return _render_field_form(ui, session, definition.entity, definition, form)


@router.post("/fields/{entity}/{field_id}/edit")
def update_field(
    ui: SignedIn, session: DbSession, form: Form, entity: str, field_id: int
) -> Response:
    """Save the changes unless someone else saved theirs since the form was opened."""
    require(ui.actor, "custom_fields", "write")
    definition = _field_of(session, _entity(entity), field_id)
    values = _field_values(form)
    shown = SettingsForm(values=values, version=_version(form))
    options, lines = parse_options(values["options"])
    changes: dict[str, Any] = {
        "label": values["label"],
        "help_text": values["help_text"],
        "required": values["required"],
        "indexed": values["indexed"],
        "position": values["position"] or definition.position,
    }
    if definition.field_type in CHOICE_TYPES or options:
        changes["options"] = options
    try:
        custom_fields.update_field(
            session,
            field_id,
            CustomFieldUpdate.model_validate(changes),
            ui.actor,
            if_version=shown.version,
        )
    except ValidationError as exc:
        shown.errors = input_errors(ui, exc, lines)
        return _render_field_form(ui, session, definition.entity, definition, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = service_errors(ui, exc.errors)
        return _render_field_form(ui, session, definition.entity, definition, shown, exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_field_form(ui, session, definition.entity, definition, shown, 409)
    return ui.redirect(f"/settings/fields/{definition.entity}", flash="field_saved")


@router.get("/fields/{entity}/{field_id}/delete")
def confirm_delete_field(ui: SignedIn, session: DbSession, entity: str, field_id: int) -> Response:
    """Ask before deleting a custom field, saying what happens to its values."""
    require(ui.actor, "custom_fields", "write")
    definition = _field_of(session, _entity(entity), field_id)
    return _render(
        ui,
        "settings/field_delete.html",
        "fields",
        {"definition": definition, "entities": FIELD_ENTITIES},
    )


@router.post("/fields/{entity}/{field_id}/delete")
def delete_field(ui: SignedIn, session: DbSession, entity: str, field_id: int) -> Response:
    """Delete the definition; the values stay in the records but are no longer shown."""
    require(ui.actor, "custom_fields", "write")
    entity = _entity(entity)
    try:
        _field_of(session, entity, field_id)
        custom_fields.delete_field(session, field_id, ui.actor)
    except NotFound:
        pass  # already gone: a second click of the same button
    return ui.redirect(f"/settings/fields/{entity}", flash="field_deleted")
