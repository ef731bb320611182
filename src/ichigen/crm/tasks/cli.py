"""``ichigen tasks …``: list, create and complete tasks; fire due reminders now."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from ichigen.auth import service as auth_service
from ichigen.cli.context import AsOption, acting_user, console, database, db_session
from ichigen.core.errors import FieldError, ValidationFailed
from ichigen.crm.tasks import reminders, service
from ichigen.crm.tasks.schemas import PRIORITIES, STATUSES, TaskCreate

tasks = typer.Typer(help="Tasks and reminders.", no_args_is_help=True)


def _due(value: str | None, option: str) -> tuple[datetime | None, bool]:
    """A time from the command line (UTC when it has no offset), or a date (all day)."""
    if value is None:
        return None, False
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC), True
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a date (2026-03-10) nor an ISO 8601 time "
            "(2026-03-10T10:00+09:00)",
            param_hint=option,
        ) from None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment), False


def _user_id(session: Any, email: str | None, option: str) -> int | None:
    if email is None:
        return None
    found = auth_service.find_user_by_email(session, email)
    if found is None:
        raise typer.BadParameter(f"no user with email {email}", param_hint=option)
    return found.id


@tasks.command("list")
def list_tasks(
    mine: Annotated[bool, typer.Option("--mine", help="Only tasks assigned to --as.")] = False,
    assignee: Annotated[
        str | None, typer.Option("--assignee", help="Only tasks of the user with this email.")
    ] = None,
    status: Annotated[str, typer.Option(help=f"{', '.join(STATUSES)} or all.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
    as_user: AsOption = None,
) -> None:
    """List tasks, soonest due first."""
    if status not in (*STATUSES, "all"):
        raise typer.BadParameter(f"choose one of {', '.join(STATUSES)}, all", param_hint="--status")
    with db_session() as session:
        actor = acting_user(session, as_user)
        if mine and actor.user_id is None:
            raise typer.BadParameter("--mine needs --as EMAIL", param_hint="--mine")
        assignee_id = actor.user_id if mine else _user_id(session, assignee, "--assignee")
        page = service.list_tasks(
            session,
            actor,
            assignee_id=assignee_id,
            status=() if status == "all" else (status,),
            limit=limit,
        )
        people = auth_service.users_by_id(
            session, {t.assignee_id for t in page.items if t.assignee_id}
        )
        labels = service.record_labels(session, ((t.record_type, t.record_id) for t in page.items))
    table = Table("id", "due", "priority", "status", "assignee", "title", "about")
    for item in page.items:
        due = ""
        if item.due_at is not None:
            due = f"{item.due_at:%Y-%m-%d}" if item.all_day else f"{item.due_at:%Y-%m-%d %H:%M}Z"
        about = ""
        if item.record_type and item.record_id:
            name = labels.get((item.record_type, item.record_id), "?")
            about = f"{item.record_type}:{item.record_id} {name}"
        person = people.get(item.assignee_id or 0)
        table.add_row(
            str(item.id),
            due,
            item.priority,
            item.status,
            person.email if person else "",
            item.title,
            about,
        )
    console.print(table)


@tasks.command("create")
def create_task(
    title: Annotated[str, typer.Argument(help="What is to be done.")],
    due: Annotated[
        str | None,
        typer.Option(help="A date (all day) or an ISO 8601 time; UTC without an offset."),
    ] = None,
    priority: Annotated[str, typer.Option(help=", ".join(PRIORITIES))] = "normal",
    assignee: Annotated[
        str | None, typer.Option(help="Email of the assignee (default: --as).")
    ] = None,
    record: Annotated[
        str | None, typer.Option(help="What it is about, as type:id (contact:12, deal:3).")
    ] = None,
    remind: Annotated[str | None, typer.Option(help="When to remind (ISO 8601 time).")] = None,
    repeat: Annotated[
        str | None, typer.Option(help="An iCalendar RRULE, e.g. FREQ=WEEKLY;BYDAY=MO.")
    ] = None,
    description: Annotated[str, typer.Option(help="Details.")] = "",
    as_user: AsOption = None,
) -> None:
    """Create a task and print its id."""
    due_at, all_day = _due(due, "--due")
    remind_at, _ = _due(remind, "--remind")
    fields: dict[str, Any] = {
        "title": title,
        "description": description,
        "priority": priority,
        "due_at": due_at,
        "all_day": all_day,
        "remind_at": remind_at,
        "recurrence": repeat,
    }
    if record is not None:
        record_type, _, record_id = record.partition(":")
        if not record_id.isdigit():
            raise typer.BadParameter(f"{record!r} is not type:id", param_hint="--record")
        fields.update(record_type=record_type, record_id=int(record_id))
    with db_session() as session:
        actor = acting_user(session, as_user)
        if assignee is not None:
            fields["assignee_id"] = _user_id(session, assignee, "--assignee")
        try:
            data = TaskCreate.model_validate(fields)
        except ValidationError as exc:
            raise ValidationFailed(
                "The task has invalid fields.",
                [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()],
            ) from None
        created = service.create_task(session, data, actor)
    console.print(f"created task {created.id}")


@tasks.command("complete")
def complete_task(
    task_id: Annotated[int, typer.Argument(help="The task's id.", min=1)],
    as_user: AsOption = None,
) -> None:
    """Mark a task done (logged on its record's timeline; a repeating task gets its next)."""
    with db_session() as session:
        done = service.complete_task(session, task_id, acting_user(session, as_user))
    console.print(f"completed task {done.task.id}")
    if done.next_task is not None:
        due = done.next_task.due_at.isoformat() if done.next_task.due_at else "-"
        console.print(f"next: task {done.next_task.id}, due {due}")


@tasks.command("remind-now")
def remind_now() -> None:
    """Fire the reminders that are due, once (as the server does every interval)."""
    with database() as db:
        run = reminders.run_reminders(db, reminders.mailer_for(db.settings))
    console.print(
        f"reminded {run.reminded}, e-mailed {run.emailed}, e-mail failures {run.email_failed}"
    )
