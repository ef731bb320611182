"""``ichigen users``, ``ichigen teams`` and ``ichigen tokens``."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer

from ichigen.auth import service
from ichigen.auth.permissions import Role
from ichigen.auth.schemas import TeamCreate, TokenCreate, UserCreate
from ichigen.cli.context import console, db_session
from ichigen.core.audit import Actor

users = typer.Typer(help="People who sign in to ichigen.", no_args_is_help=True)
teams = typer.Typer(help="Teams of users.", no_args_is_help=True)
tokens = typer.Typer(help="Personal API tokens.", no_args_is_help=True)
CLI_ACTOR = Actor.system("cli")


@users.command("create")
def create_user(
    email: str,
    role: Annotated[
        Role, typer.Option(help="Role that sets the user's permissions.")
    ] = Role.viewer,
    name: Annotated[str | None, typer.Option(help="Display name; defaults to the email.")] = None,
    password: Annotated[
        str | None,
        typer.Option(help="Password; prompted if omitted, or read from ICHIGEN_NEW_PASSWORD."),
    ] = None,
    team: Annotated[str | None, typer.Option(help="Team name (created if missing).")] = None,
) -> None:
    """Create a user who can sign in."""
    secret = password or os.environ.get("ICHIGEN_NEW_PASSWORD") or getpass.getpass("Password: ")
    with db_session() as session:
        team_id = None
        if team:
            existing = {t.name: t.id for t in service.list_teams(session)}
            team_id = (
                existing.get(team)
                or service.create_team(session, TeamCreate(name=team), CLI_ACTOR).id
            )
        user = service.create_user(
            session,
            UserCreate(
                email=email, name=name or email, role=role, team_id=team_id, password=secret
            ),
            CLI_ACTOR,
        )
        console.print(f"created user {user.id} {user.email} ({user.role.value})")


@users.command("list")
def list_users() -> None:
    """List users with their role and team."""
    with db_session() as session:
        for user in service.list_users(session):
            state = "" if user.is_active else " (inactive)"
            console.print(
                f"{user.id:>5}  {user.email:<40} {user.role.value:<10} {user.name}{state}"
            )


@teams.command("create")
def create_team(name: str) -> None:
    """Create a team."""
    with db_session() as session:
        team = service.create_team(session, TeamCreate(name=name), CLI_ACTOR)
        console.print(f"created team {team.id} {team.name}")


@tokens.command("create")
def create_token(
    user: Annotated[str, typer.Option("--user", help="Email of the token's user.")],
    scope: Annotated[str, typer.Option(help="read or read-write")] = "read-write",
    name: Annotated[str, typer.Option(help="What the token is for.")] = "API token",
) -> None:
    """Create an API token and print it once; only its hash is kept."""
    if scope not in ("read", "read-write"):
        raise typer.BadParameter("scope must be read or read-write", param_hint="--scope")
    with db_session() as session:
        found = service.find_user_by_email(session, user)
        if found is None:
            raise typer.BadParameter(f"no user with email {user}", param_hint="--user")
        created = service.create_token(
            session, found.id, TokenCreate(name=name, scope=scope), CLI_ACTOR
        )
        print(created.token)
