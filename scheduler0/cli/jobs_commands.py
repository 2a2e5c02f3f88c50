"""``scheduler0 jobs list|get|create|update|delete|pause|resume|run|backfill``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from scheduler0.cli.context import (
    EPILOG,
    AllOption,
    ApiKeyOption,
    ApiSecretOption,
    ConfigOption,
    JsonOption,
    LimitOption,
    NodeOption,
    OffsetOption,
    YesOption,
    ambiguous,
    call,
    cell,
    confirm,
    connect,
    explain,
    list_page,
    print_json,
    print_page,
    print_record,
    print_table,
    usage_error,
)
from scheduler0.cli.output import EXIT_CONFIG, EXIT_FAILED, EXIT_UNREACHABLE, fail, say, stderr
from scheduler0.client import ApiClient, Unreachable
from scheduler0.errors import FieldError, Scheduler0Error
from scheduler0.models import ALIAS_PAIRS, POLICY_FIELDS

jobs_app = typer.Typer(
    help=(
        "Jobs: a cron spec, a timezone, a payload and a callback URL.\n\n"
        "Example:\n\n\b\n  scheduler0 jobs create --project 1 --spec '@every 1m' "
        "--callback-url https://example.com/hook"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
)

# Jobs per POST /jobs when creating from a file: one raft command each.
CHUNK_SIZE = 1000
# Created jobs shown as a table; more are summarised by id range.
TABLE_ROWS = 20

COLUMNS = (
    ("id", "id"),
    ("name", "name"),
    ("project", "project_id"),
    ("spec", "spec"),
    ("timezone", "timezone"),
    ("callback", "callback_url"),
    ("paused", "paused"),
    ("status", "status"),
    ("next run", "next_run_at"),
    ("last state", "last_state"),
    ("fired", "fired_count"),
    ("labels", "labels"),
)
RECORD_KEYS = (
    "id",
    "name",
    "labels",
    "project_id",
    "spec",
    "timezone",
    "data",
    "callback_url",
    "execution_type",
    "paused",
    "status",
    "status_note",
    "next_run_at",
    "last_execution_date",
    "last_state",
    "last_status_code",
    "fired_count",
    "success_count",
    "failed_count",
    "missed_count",
    "created_at",
    "updated_at",
    *sorted(POLICY_FIELDS),
)

JobId = Annotated[int, typer.Argument(help="Id of the job.", min=1, metavar="JOB_ID")]
SpecOption = Annotated[
    str | None,
    typer.Option(
        "--spec",
        help="Cron spec: 5 or 6 fields (seconds first), @daily, @every 90s,"
        " @at <RFC 3339>, @manually.",
    ),
]
TimezoneOption = Annotated[
    str | None, typer.Option("--timezone", help="IANA timezone of the spec (default UTC).")
]
CallbackOption = Annotated[
    str | None, typer.Option("--callback-url", help="URL the node POSTs to when the job fires.")
]
ExecutorOption = Annotated[
    int | None,
    typer.Option(
        "--executor",
        min=1,
        help="Id of the executor its callbacks go through (instead of --callback-url).",
    ),
]
DataOption = Annotated[
    str | None, typer.Option("--data", help="Payload sent with each callback (a string).")
]
NameOption = Annotated[
    str | None, typer.Option("--name", help="The job's name, unique in its project.")
]
LabelOption = Annotated[
    list[str] | None,
    typer.Option("--label", help="A key=value label; repeat it for more (at most 32)."),
]
PolicyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--policy",
        "-p",
        metavar="NAME=VALUE",
        help="A job policy (repeatable): max_runs=3, catchup=all,"
        " end_at=2027-01-01T00:00:00Z, retry='{\"attempts\": 5}'. VALUE is read as"
        " JSON when it parses, else as text; in update, NAME=null returns the policy"
        " to its default. Names: " + ", ".join(sorted(POLICY_FIELDS)) + ".",
    ),
]
NoteOption = Annotated[
    str | None, typer.Option("--note", help="Why: shown on the job as its status_note.")
]


def _policies(pairs: list[str] | None) -> dict[str, Any]:
    """``--policy NAME=VALUE`` flags as API fields (a usage error names a bad one)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        name = _SNAKE.get(name.strip(), name.strip())
        if not sep or name not in POLICY_FIELDS:
            usage_error(
                f"--policy {pair!r}: expected NAME=VALUE with NAME one of",
                *sorted(POLICY_FIELDS),
            )
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


_SNAKE = {camel: snake for snake, camel in ALIAS_PAIRS}
"""camelCase policy names as given on the command line -> snake_case."""

# libyaml's loader when installed: many times faster on files of thousands of jobs.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Field names a job file may use for each flag (the API takes both spellings).
_FLAG_FIELDS = {
    "project_id": ("project_id", "projectId"),
    "spec": ("spec",),
    "timezone": ("timezone",),
    "callback_url": ("callback_url", "callbackUrl"),
    "executor_id": ("executor_id", "executorId"),
    "data": ("data",),
    "name": ("name",),
    "labels": ("labels",),
    **{
        name: (name, *(camel for snake, camel in ALIAS_PAIRS if snake == name))
        for name in POLICY_FIELDS
    },
}


def _labels(given: list[str] | None, flag: str = "--label") -> dict[str, str] | None:
    """``--label k=v`` flags as a map (None when none was given); the node
    checks the keys and values."""
    if not given:
        return None
    out = {}
    for raw in given:
        key, sep, value = raw.partition("=")
        if not sep:
            usage_error(f"{flag} takes key=value, not {raw!r}", flag)
        out[key] = value
    return out


def _label_text(labels: Any) -> str | None:
    """Labels in a table cell: ``k=v k=v`` (values are escaped by ``cell``)."""
    if not isinstance(labels, dict) or not labels:
        return None
    return " ".join(f"{k}={v}" for k, v in labels.items())


def _shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "labels": _label_text(row.get("labels"))} for row in rows]


@jobs_app.command("list")
def list_jobs(
    project: Annotated[
        int | None, typer.Option("--project", min=1, help="Only this project's jobs.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Only the job(s) with this exact name.")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="key=value: only jobs with this label (repeat: all of them)."),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--q", "--search", help="Only jobs whose name, callback URL or spec contains this."
        ),
    ] = None,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    every: AllOption = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """List jobs by id, one page at a time, filtered on the node.

    --json prints the page as the API answers it: {"total", "offset", "limit", "jobs"}.

    Examples:

    \b
      scheduler0 jobs list --project 1 --limit 20
      scheduler0 jobs list --label team=ops --label env=prod --q billing
      scheduler0 jobs list --all --json | jq '.jobs[].id'
    """
    _labels(label)  # key=value each, before asking the node
    with connect(node, config, api_key, api_secret) as client:
        page = list_page(
            client,
            "/jobs",
            "jobs",
            limit=limit,
            offset=offset,
            every=every,
            projectId=project,
            name=name,
            label=label or None,
            q=query,
        )
    if as_json:
        print_json(page)
    else:
        print_page({**page, "jobs": _shown(page.get("jobs") or [])}, "jobs", COLUMNS)


@jobs_app.command("get")
def get_job(
    job_id: JobId,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Show one job: schedule, next run, last result and counters.

    Example:

    \b
      scheduler0 jobs get 42 --json
    """
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "GET", f"/jobs/{job_id}")
    if as_json:
        print_json(data)
    else:
        print_record(data, RECORD_KEYS)


def _read_jobs_file(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The jobs of a JSON or YAML file (``-`` is stdin) and whether it held just one."""
    name = "stdin" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {name}: {exc}", EXIT_CONFIG)
    try:
        content = (
            json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_YAML_LOADER)
        )
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        fail(f"{name} is not valid {kind}: {exc}", EXIT_CONFIG)
    single = isinstance(content, dict)
    items = [content] if single else content
    if not isinstance(items, list) or not items:
        fail(f"{name} must hold one job (a mapping) or a non-empty list of jobs", EXIT_CONFIG)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            fail(f"{name}: item {index} is not a mapping of job fields", EXIT_CONFIG)
    return items, single


def _with_defaults(items: list[dict[str, Any]], defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """Flags fill each field an item of the file does not set."""
    given = {k: v for k, v in defaults.items() if v is not None}
    if not given:
        return items
    out = []
    for item in items:
        merged = dict(item)
        for field, value in given.items():
            if not any(alias in item for alias in _FLAG_FIELDS[field]):
                merged[field] = value
        out.append(merged)
    return out


def _shifted(exc: Scheduler0Error, start: int) -> Scheduler0Error:
    """The error of one chunk, with item indices counted from the start of the file."""
    if not start or not exc.details:
        return exc
    details = [
        FieldError(d.field, d.message, None if d.index is None else d.index + start)
        for d in exc.details
    ]
    first = details[0]
    where = f"item {first.index}: " if first.index is not None else ""
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return type(exc)(f"{where}{first.field}: {first.message}{more}", details)


def _id_ranges(ids: list[int]) -> str:
    ranges: list[str] = []
    for job_id in sorted(ids):
        if ranges and ranges[-1].split("-")[-1] == str(job_id - 1):
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{job_id}"
        else:
            ranges.append(str(job_id))
    return ", ".join(ranges)


def _create_in_chunks(client: ApiClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST the jobs CHUNK_SIZE at a time, with a progress bar on stderr."""
    created: list[dict[str, Any]] = []
    progress = Progress(
        TextColumn("creating jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        disable=len(items) <= CHUNK_SIZE,
    )
    with progress:
        task = progress.add_task("jobs", total=len(items))
        for start in range(0, len(items), CHUNK_SIZE):
            chunk = items[start : start + CHUNK_SIZE]
            try:
                answer = client.post("/jobs", chunk)
            except Scheduler0Error as exc:
                progress.stop()
                code = EXIT_UNREACHABLE if isinstance(exc, Unreachable) else EXIT_FAILED
                fail(_chunk_failure(exc, start, len(chunk), created), code)
            created.extend(answer)
            progress.advance(task, len(chunk))
    return created


def _sent_without_answer(exc: Scheduler0Error) -> bool:
    """The request went out and no answer came back (a read timeout, a dropped
    connection): the node may have committed it."""
    return isinstance(exc, Unreachable) and isinstance(exc.__cause__, _NO_ANSWER)


_NO_ANSWER = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def _chunk_failure(
    exc: Scheduler0Error, start: int, size: int, created: list[dict[str, Any]]
) -> str:
    """What went wrong with one request of a create, and what exists now: the
    jobs of earlier requests were created; this request's were not, unless the
    write is in doubt (then the message says so, once)."""
    before = (
        f"{len(created)} jobs (items 0-{start - 1}) were created by earlier requests:"
        f" ids {_id_ranges([j['id'] for j in created])}"
        if created
        else ""
    )
    if ambiguous(exc) or _sent_without_answer(exc):
        doubt = (
            f"items {start}-{start + size - 1} may or may not have been created;"
            " check with `scheduler0 jobs list` before sending them again"
        )
        return "\n".join(part for part in (explain(exc), doubt, before) if part)
    this = f"items {start} onwards were not created" if created else "no job was created"
    return "\n".join(part for part in (explain(_shifted(exc, start)), before, this) if part)


@jobs_app.command("create")
def create_jobs(
    project: Annotated[
        int | None, typer.Option("--project", min=1, help="Id of the job's project.")
    ] = None,
    spec: SpecOption = None,
    timezone: TimezoneOption = None,
    callback_url: CallbackOption = None,
    executor: ExecutorOption = None,
    data: DataOption = None,
    name: NameOption = None,
    label: LabelOption = None,
    policy: PolicyOption = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            dir_okay=False,
            allow_dash=True,
            help="JSON or YAML file of one job or a list of jobs (- reads stdin).",
        ),
    ] = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Create one job from flags, or many from a file.

    With --file, each item holds the API's job fields (project_id, spec,
    timezone, data, callback_url, name, labels; camelCase works too) and the
    flags fill in what an item leaves out. Jobs are sent 1,000 per request, each request
    all-or-nothing; a progress bar on stderr follows bigger files. If a request
    is refused, the jobs of the requests before it stay created (the message
    says which).

    --json prints the created job, or the list of them when the file holds a list.

    Examples:

    \b
      scheduler0 jobs create --project 1 --spec '*/5 * * * *' --timezone Europe/Paris \\
          --callback-url https://example.com/hook --data '{"user": 7}' \\
          --name nightly-report --label team=ops
      scheduler0 jobs create --project 1 --spec '@at 2027-03-01T09:00:00+01:00' \\
          --callback-url https://example.com/hook -p jitter_seconds=30 -p catchup=all
      scheduler0 jobs create --project 1 --spec '@daily' --executor 3
      scheduler0 jobs create --file jobs.yaml --project 1 --json > created.json
    """
    flags = {
        "project_id": project,
        "spec": spec,
        "timezone": timezone,
        "callback_url": callback_url,
        "executor_id": executor,
        "data": data,
        "name": name,
        "labels": _labels(label),
        **_policies(policy),
    }
    if callback_url is not None and executor is not None:
        usage_error("give one of", "--callback-url", "--executor")
    if file is None:
        missing = [
            f"--{name}"
            for name, value in (
                ("project", project),
                ("spec", spec),
                ("callback-url", callback_url if executor is None else executor),
            )
            if value is None
        ]
        if missing:
            usage_error("required unless --file gives the jobs (or --executor)", *missing)
        items, single = [{k: v for k, v in flags.items() if v is not None}], True
    else:
        items, single = _read_jobs_file(file)
        items = _with_defaults(items, flags)
    with connect(node, config, api_key, api_secret, timeout=120.0) as client:
        created = _create_in_chunks(client, items)
    if as_json:
        print_json(created[0] if single else created)
    elif len(created) <= TABLE_ROWS:
        print_table(_shown(created), COLUMNS)
    else:
        typer.echo(_id_ranges([job["id"] for job in created]))
    if not as_json:
        say(f"created {len(created)} job{'s' if len(created) != 1 else ''}")


@jobs_app.command("update")
def update_job(
    job_id: JobId,
    spec: SpecOption = None,
    timezone: TimezoneOption = None,
    callback_url: CallbackOption = None,
    executor: ExecutorOption = None,
    data: DataOption = None,
    name: NameOption = None,
    label: LabelOption = None,
    clear_name: Annotated[
        bool, typer.Option("--clear-name", help="Remove the job's name.")
    ] = False,
    clear_labels: Annotated[
        bool, typer.Option("--clear-labels", help="Remove every label of the job.")
    ] = False,
    policy: PolicyOption = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Change a job. A new spec or timezone applies from the next slot after now.

    --label replaces every label of the job with the ones given.

    Examples:

    \b
      scheduler0 jobs update 42 --spec '@every 10m' --data '{"v": 2}'
      scheduler0 jobs update 42 --name billing --label team=ops --label env=prod
      scheduler0 jobs update 42 -p max_runs=10 -p jitter_seconds=null
      scheduler0 jobs update 42 --executor 3      # its callbacks go through executor 3
    """
    if name is not None and clear_name:
        usage_error("give one of", "--name", "--clear-name")
    if callback_url is not None and executor is not None:
        usage_error("give one of", "--callback-url", "--executor")
    if label and clear_labels:
        usage_error("give one of", "--label", "--clear-labels")
    body: dict[str, Any] = {
        k: v
        for k, v in (
            ("spec", spec),
            ("timezone", timezone),
            ("callback_url", callback_url),
            ("executor_id", executor),
            ("data", data),
            ("name", name),
            ("labels", {} if clear_labels else _labels(label)),
        )
        if v is not None
    }
    if clear_name:
        body["name"] = None
    body.update(_policies(policy))
    if not body:
        usage_error(
            "nothing to change: give at least one",
            "--spec",
            "--timezone",
            "--callback-url",
            "--executor",
            "--data",
            "--name",
            "--label",
            "--policy",
        )
    with connect(node, config, api_key, api_secret) as client:
        job = call(client, "PUT", f"/jobs/{job_id}", body)
    if as_json:
        print_json(job)
    else:
        print_record(job, RECORD_KEYS)
        say(f"job {job_id} updated")


@jobs_app.command("delete")
def delete_job(
    job_id: JobId,
    yes: YesOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Delete a job; it never fires again. Its executions stay in the history.

    Asks first unless --yes; without a terminal to ask on, pass --yes.

    Example:

    \b
      scheduler0 jobs delete 42 --yes
    """
    with connect(node, config, api_key, api_secret) as client:
        if not yes:
            confirm(f"Delete job {job_id}?")
        call(client, "DELETE", f"/jobs/{job_id}")
    say(f"job {job_id} deleted")


def _set_paused(
    job_id: int,
    paused: bool,
    note: str | None,
    as_json: bool,
    node: str | None,
    config: Path | None,
    api_key: str | None,
    api_secret: str | None,
) -> None:
    verb = "pause" if paused else "resume"
    body = None if note is None else {"note": note}
    with connect(node, config, api_key, api_secret) as client:
        job = call(client, "POST", f"/jobs/{job_id}/{verb}", body)
    if as_json:
        print_json(job)
    else:
        next_run = job.get("next_run_at") if isinstance(job, dict) else None
        say(f"job {job_id} {verb}d" + (f"; next run {next_run}" if next_run else ""))


@jobs_app.command("pause")
def pause_job(
    job_id: JobId,
    note: NoteOption = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Stop a job firing until it is resumed.

    Example:

    \b
      scheduler0 jobs pause 42 --note 'receiver maintenance'
    """
    _set_paused(job_id, True, note, as_json, node, config, api_key, api_secret)


@jobs_app.command("resume")
def resume_job(
    job_id: JobId,
    note: NoteOption = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Let a paused job fire again; the slots missed while paused are skipped.

    Example:

    \b
      scheduler0 jobs resume 42 --json
    """
    _set_paused(job_id, False, note, as_json, node, config, api_key, api_secret)


@jobs_app.command("run")
def run_job(
    job_id: JobId,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Fire a job now, once, outside its schedule; prints the execution id.

    Follow it with: scheduler0 executions list --job ID

    Example:

    \b
      scheduler0 jobs run 42
    """
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "POST", f"/jobs/{job_id}/run")
    if as_json:
        print_json(data)
        return
    execution = data.get("execution_id") if isinstance(data, dict) else None
    if execution:
        typer.echo(cell(execution))
    say(f"job {job_id} triggered")


@jobs_app.command("backfill")
def backfill_job(
    job_id: JobId,
    since: Annotated[
        str,
        typer.Option(
            "--from",
            help="RFC 3339 with offset: the first instant of the range, e.g. 2026-03-01T00:00:00Z.",
        ),
    ],
    until: Annotated[
        str | None,
        typer.Option("--to", help="RFC 3339 with offset: the last instant (default: now)."),
    ] = None,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
    api_key: ApiKeyOption = None,
    api_secret: ApiSecretOption = None,
) -> None:
    """Fire every past slot of a job's schedule in a range once, with the
    execution ids its scheduled runs would have had. Slots already run are not
    run again, so repeating a backfill queues nothing new; the runs are sent
    at a bounded pace, after the live ones.

    Follow it with: scheduler0 executions list --job ID --trigger backfill

    Example:

    \b
      scheduler0 jobs backfill 42 --from 2026-03-01T00:00:00Z --to 2026-03-02T00:00:00Z
    """
    to = until if until is not None else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with connect(node, config, api_key, api_secret) as client:
        data = call(client, "POST", f"/jobs/{job_id}/backfill", {"from": since, "to": to})
    if as_json or not isinstance(data, dict):
        print_json(data)
        return
    say(backfill_summary(data))


def backfill_summary(data: dict[str, Any]) -> str:
    """One line of what a backfill queued."""
    span = f" ({data['first']} .. {data['last']})" if data.get("first") else ""
    line = (
        f"job {data['job_id']}: {data['requested']} slot(s) in range{span}:"
        f" {data['queued']} queued, {data['already_done']} already run"
    )
    if data.get("left_to_schedule"):
        line += f", {data['left_to_schedule']} left to the schedule"
    return line
