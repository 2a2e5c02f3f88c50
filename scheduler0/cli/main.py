"""The ``scheduler0`` command: ``noun verb`` sub-commands built from small modules.

Exit codes: 0 ok, 1 refused or failed, 2 bad usage or configuration, 3 node unreachable.
The daemon is imported only by ``start``, so the other commands stay fast.

Names: ``secrets init`` writes this machine's operator secrets (.scheduler0);
``credentials create|list|archive`` manage client api keys on a node. The
seed's names for the same two things, ``credential init`` and ``create
credential``, still work (hidden from the help, so the list has one name each).
"""

from __future__ import annotations

from typing import Annotated

import typer

from scheduler0 import __version__
from scheduler0.cli.audit_commands import audit_app
from scheduler0.cli.backup_commands import backup, restore
from scheduler0.cli.cluster_commands import cluster_app
from scheduler0.cli.credentials_commands import credentials_app
from scheduler0.cli.executions_commands import executions_app
from scheduler0.cli.executors_commands import executors_app
from scheduler0.cli.init_commands import config_app, credential_app, secrets_app
from scheduler0.cli.jobs_commands import jobs_app
from scheduler0.cli.node_commands import create_app, start
from scheduler0.cli.output import OUTPUT_ENV, OutputFormat, set_output
from scheduler0.cli.projects_commands import projects_app
from scheduler0.cli.schedule_commands import schedule_app
from scheduler0.console.command import console

EXIT_CODES = (
    "Exit codes: 0 ok, 1 refused or failed, 2 bad usage or configuration"
    " (a port already taken, too), 3 node unreachable."
)

app = typer.Typer(
    name="scheduler0",
    help=(
        "A distributed cron-job server on Raft and SQLite.\n\n"
        "First run: scheduler0 config init; scheduler0 secrets init; scheduler0 start;"
        " then scheduler0 credentials create for a client api key."
    ),
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"scheduler0 {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--output",
            "-o",
            envvar=OUTPUT_ENV,
            show_envvar=True,
            case_sensitive=False,
            help=(
                "How commands print data: table (piped: never wrapped), wide (never"
                " folded), tsv (header, then tab-separated rows) or json."
            ),
        ),
    ] = OutputFormat.table,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Options for every command: give them before it, e.g. scheduler0 -o tsv jobs list."""
    set_output(output)


app.add_typer(config_app, name="config")
app.add_typer(secrets_app, name="secrets")
app.add_typer(credential_app, name="credential", hidden=True)
app.add_typer(create_app, name="create", hidden=True)
app.command("start")(start)
app.add_typer(cluster_app, name="cluster")
app.command("backup")(backup)
app.command("restore")(restore)
app.add_typer(projects_app, name="projects")
app.add_typer(jobs_app, name="jobs")
app.add_typer(executions_app, name="executions")
app.add_typer(schedule_app, name="schedule")
app.add_typer(credentials_app, name="credentials")
app.add_typer(executors_app, name="executors")
app.add_typer(audit_app, name="audit")
app.command("console")(console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
