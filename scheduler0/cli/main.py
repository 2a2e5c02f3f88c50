"""The ``scheduler0`` command: ``noun verb`` sub-commands built from small modules.

Exit codes: 0 ok, 1 refused or failed, 2 bad usage or configuration, 3 node unreachable.
The daemon is imported only by ``start``, so the other commands stay fast.
"""

from __future__ import annotations

import typer

from scheduler0.cli.backup_commands import backup, restore
from scheduler0.cli.cluster_commands import cluster_app
from scheduler0.cli.credentials_commands import credentials_app
from scheduler0.cli.executions_commands import executions_app
from scheduler0.cli.init_commands import config_app, credential_app
from scheduler0.cli.jobs_commands import jobs_app
from scheduler0.cli.node_commands import create_app, start
from scheduler0.cli.projects_commands import projects_app
from scheduler0.cli.schedule_commands import schedule_app
from scheduler0.console.command import console

app = typer.Typer(
    name="scheduler0",
    help=(
        "A distributed cron-job server on Raft and SQLite.\n\n"
        "First run: scheduler0 config init; scheduler0 credential init; scheduler0 start"
    ),
    epilog="Exit codes: 0 ok, 1 failed, 2 bad usage or configuration, 3 node unreachable.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(config_app, name="config")
app.add_typer(credential_app, name="credential")
app.add_typer(create_app, name="create")
app.command("start")(start)
app.add_typer(cluster_app, name="cluster")
app.command("backup")(backup)
app.command("restore")(restore)
app.add_typer(projects_app, name="projects")
app.add_typer(jobs_app, name="jobs")
app.add_typer(executions_app, name="executions")
app.add_typer(schedule_app, name="schedule")
app.add_typer(credentials_app, name="credentials")
app.command("console")(console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
