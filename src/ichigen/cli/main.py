"""The ``ichigen`` command, assembled from each feature's sub-commands."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from ichigen.auth.cli import teams, tokens, users
from ichigen.cli.context import console, database
from ichigen.collect.cli import events, sources
from ichigen.core import migrate
from ichigen.core.settings import get_settings
from ichigen.crm.activities.cli import activities
from ichigen.crm.activities.transfer_cli import export_activities, import_activities
from ichigen.crm.companies.cli import export_companies, import_companies
from ichigen.crm.contacts.cli import export_contacts, import_contacts
from ichigen.crm.deals.cli import deals, pipelines
from ichigen.crm.deals.forecast_cli import forecast, quotas, rates
from ichigen.crm.deals.transfer_cli import export_deals, import_deals
from ichigen.crm.tasks.cli import tasks
from ichigen.demo.cli import demo
from ichigen.identity.cli import identity
from ichigen.identity.duplicates_cli import duplicates
from ichigen.profiles.cli import profiles

app = typer.Typer(help="ichigen: CRM and customer data platform in one.", no_args_is_help=True)
db_app = typer.Typer(help="The record store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users, name="users")
app.add_typer(teams, name="teams")
app.add_typer(tokens, name="tokens")
app.add_typer(sources, name="sources")
app.add_typer(events, name="events")
app.add_typer(duplicates, name="duplicates")
app.add_typer(identity, name="identity")
app.add_typer(profiles, name="profiles")
for sub, sub_name in (
    (pipelines, "pipelines"),
    (deals, "deals"),
    (activities, "activities"),
    (tasks, "tasks"),
    (rates, "rates"),
    (quotas, "quotas"),
    (forecast, "forecast"),
):
    app.add_typer(sub, name=sub_name)
app.command("demo")(demo)
import_app = typer.Typer(
    help="Load contacts, companies, deals or activities from CSV files.", no_args_is_help=True
)
import_app.command("contacts")(import_contacts)
import_app.command("companies")(import_companies)
import_app.command("deals")(import_deals)
import_app.command("activities")(import_activities)
app.add_typer(import_app, name="import")
export_app = typer.Typer(
    help="Write contacts, companies, deals or activities to CSV files.", no_args_is_help=True
)
export_app.command("contacts")(export_contacts)
export_app.command("companies")(export_companies)
export_app.command("deals")(export_deals)
export_app.command("activities")(export_activities)
app.add_typer(export_app, name="export")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the record store to the newest schema (safe to run again)."""
    with database() as db:
        migrate.upgrade(db.engine)
        console.print(f"record store is up to date ({db.dialect})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the API, the web UI and the event collector."""
    if workers > 1 and get_settings().collect_enabled:
        raise typer.BadParameter(
            "the embedded event store belongs to one process: run the collector with "
            "--workers 1, or set ICHIGEN_COLLECT_ENABLED=false for extra API-only workers",
            param_hint="--workers",
        )
    uvicorn.run(
        "ichigen.web.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    app()
