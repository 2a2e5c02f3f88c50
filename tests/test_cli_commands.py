"""The resource commands (projects, jobs, executions, credentials) against one real node.

Each test runs the installed ``scheduler0`` executable, as a user or a script
would, and checks stdout (data), stderr (messages), ``--json`` shapes and exit
codes: 0 ok, 1 the API refused, 2 bad usage, 3 node unreachable.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from scheduler0.cli.main import app
from tests.support.nodes import (
    NodeProcess,
    create_credential,
    free_port,
    running_node,
    scheduler0_command,
)

pytestmark = pytest.mark.slow

CALLBACK = "http://127.0.0.1:9/callback"  # never called: the specs here are far off
FAR_SPEC = "0 0 1 1 *"
PAGE_KEYS = {"total", "offset", "limit"}
JOB_KEYS = {"id", "project_id", "spec", "timezone", "data", "callback_url", "paused"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("cli-node")) as node:
        yield node


@pytest.fixture(scope="module")
def cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty directory: no config.yml, no .scheduler0; secrets come from env."""
    return tmp_path_factory.mktemp("cli-cwd")


class Cli:
    def __init__(self, node: NodeProcess, cwd: Path) -> None:
        self.node = node
        self.cwd = cwd

    def env(self, **extra: str) -> dict[str, str]:
        env = self.node.env()
        env.update(extra)
        env["COLUMNS"] = "200"  # rich tables wide enough to show whole values
        return env

    def __call__(
        self,
        *args: str,
        node_url: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        command = [*scheduler0_command(), *args, "--node", node_url or self.node.url]
        return subprocess.run(
            command,
            cwd=self.cwd,
            env=env or self.env(),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        out = self(*args, **kwargs)
        assert out.returncode == 0, (args, out.returncode, out.stdout[-2000:], out.stderr[-2000:])
        return out

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kwargs).stdout)


@pytest.fixture(scope="module")
def cli(node: NodeProcess, cwd: Path) -> Cli:
    return Cli(node, cwd)


@pytest.fixture(scope="module")
def project(cli: Cli) -> dict[str, Any]:
    data: dict[str, Any] = cli.json("projects", "create", "--name", "jobs-home")
    return data


def _job(cli: Cli, project_id: int, spec: str = FAR_SPEC) -> dict[str, Any]:
    data: dict[str, Any] = cli.json(
        "jobs",
        "create",
        "--project",
        str(project_id),
        "--spec",
        spec,
        "--callback-url",
        CALLBACK,
    )
    return data


def _refused(out: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert out.stdout == ""
    assert text in out.stderr, out.stderr


# --- projects --------------------------------------------------------------------------


def test_projects_create_list_get_update(cli: Cli) -> None:
    created = cli.json("projects", "create", "--name", "calendar", "--description", "demo")
    assert {"id", "name", "description", "signing_secret"} <= set(created)
    assert created["name"] == "calendar"

    human = cli.ok("projects", "list")
    assert "calendar" in human.stdout
    assert "projects" in human.stderr  # "N of N projects" is a message, not data

    page = cli.json("projects", "list")
    assert PAGE_KEYS | {"projects"} <= set(page)
    assert created["id"] in [p["id"] for p in page["projects"]]

    got = cli.json("projects", "get", str(created["id"]))
    assert got["signing_secret"] == created["signing_secret"]
    assert "calendar" in cli.ok("projects", "get", str(created["id"])).stdout

    updated = cli.json("projects", "update", str(created["id"]), "--description", "changed")
    assert updated["description"] == "changed" and updated["name"] == "calendar"


def test_projects_errors_and_paging(cli: Cli) -> None:
    _refused(cli("projects", "get", "999999"), 1, "no project with id 999999")
    _refused(cli("projects", "update", "1"), 2, "nothing to change")
    _refused(cli("projects", "create"), 2, "--name")
    _refused(cli("projects", "get", "not-a-number"), 2, "not-a-number")
    _refused(cli("projects", "list", "--limit", "5000"), 1, "limit")  # the API's 422

    for i in range(3):
        cli.ok("projects", "create", "--name", f"paged-{i}")
    first = cli.json("projects", "list", "--limit", "2", "--offset", "1")
    assert (first["limit"], first["offset"], len(first["projects"])) == (2, 1, 2)
    everything = cli.json("projects", "list", "--all")
    assert len(everything["projects"]) == everything["total"] >= 4
    assert everything["projects"][1] == first["projects"][0]


def test_projects_delete_needs_yes(cli: Cli) -> None:
    doomed = cli.json("projects", "create", "--name", "doomed")
    pid = str(doomed["id"])

    refused = cli("projects", "delete", pid)  # stdin closed: no one to say yes
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    cli.ok("projects", "get", pid)  # still there

    declined = cli("projects", "delete", pid, stdin="n\n")
    assert declined.returncode == 1
    cli.ok("projects", "get", pid)

    cli.ok("projects", "delete", pid, stdin="y\n")
    _refused(cli("projects", "get", pid), 1, "no project")


# --- jobs ---------------------------------------------------------------------------------


def test_jobs_create_get_update_from_flags(cli: Cli, project: dict[str, Any]) -> None:
    job = cli.json(
        "jobs",
        "create",
        "--project",
        str(project["id"]),
        "--spec",
        "*/5 * * * *",
        "--timezone",
        "Europe/Paris",
        "--callback-url",
        CALLBACK,
        "--data",
        '{"user": 7}',
    )
    assert JOB_KEYS <= set(job)
    assert (job["spec"], job["timezone"], job["data"]) == (
        "*/5 * * * *",
        "Europe/Paris",
        '{"user": 7}',
    )

    assert cli.json("jobs", "get", str(job["id"]))["id"] == job["id"]
    human = cli.ok("jobs", "get", str(job["id"]))
    assert "Europe/Paris" in human.stdout

    updated = cli.json("jobs", "update", str(job["id"]), "--spec", "@every 2h")
    assert updated["spec"] == "@every 2h" and updated["timezone"] == "Europe/Paris"

    page = cli.json("jobs", "list", "--project", str(project["id"]))
    assert PAGE_KEYS | {"jobs"} <= set(page)
    assert job["id"] in [j["id"] for j in page["jobs"]]
    listed = cli.ok("jobs", "list", "--project", str(project["id"]))
    assert "@every 2h" in listed.stdout


def test_jobs_errors(cli: Cli, project: dict[str, Any]) -> None:
    pid = str(project["id"])
    _refused(cli("jobs", "get", "999999"), 1, "no job with id 999999")
    _refused(
        cli("jobs", "create", "--project", pid, "--spec", "not a spec", "--callback-url", CALLBACK),
        1,
        "spec",
    )
    _refused(
        cli(
            "jobs", "create", "--project", "999999", "--spec", FAR_SPEC, "--callback-url", CALLBACK
        ),
        1,
        "no project with id 999999",
    )
    _refused(cli("jobs", "create", "--project", pid), 2, "--spec")
    _refused(cli("jobs", "update", "1"), 2, "nothing to change")
    _refused(cli("jobs", "list", "--limit", "0"), 2, "--limit")
    _refused(cli("jobs", "frobnicate"), 2, "frobnicate")


def test_jobs_pause_resume_run_delete(cli: Cli, project: dict[str, Any]) -> None:
    job = _job(cli, project["id"])
    jid = str(job["id"])

    assert cli.json("jobs", "pause", jid)["paused"] is True
    paused = cli.ok("jobs", "resume", jid)
    assert "resumed" in paused.stderr
    assert cli.json("jobs", "get", jid)["paused"] is False

    run = cli.ok("jobs", "run", jid)
    execution_id = run.stdout.strip()
    assert execution_id.startswith(f"{jid}-"), run.stdout
    rows = cli.json("executions", "list", "--job", jid)["executions"]
    assert execution_id in [r["execution_id"] for r in rows]

    refused = cli("jobs", "delete", jid)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    cli.ok("jobs", "get", jid)

    deleted = cli.ok("jobs", "delete", jid, "--yes")
    assert "deleted" in deleted.stderr
    _refused(cli("jobs", "get", jid), 1, "no job")
    _refused(cli("jobs", "pause", jid), 1, "no job")


def test_jobs_bulk_create_from_yaml(cli: Cli, cwd: Path) -> None:
    bulk = cli.json("projects", "create", "--name", "bulk")
    jobs = [
        {"spec": FAR_SPEC, "callback_url": f"{CALLBACK}/{i}", "data": {"i": i}} for i in range(2500)
    ]
    path = cwd / "jobs.yaml"
    path.write_text(yaml.safe_dump(jobs))

    created = cli.json("jobs", "create", "--file", str(path), "--project", str(bulk["id"]))
    assert isinstance(created, list) and len(created) == 2500
    ids = [j["id"] for j in created]
    assert len(set(ids)) == 2500
    assert [j["data"] for j in created] == [{"i": i} for i in range(2500)]

    everything = cli.json("jobs", "list", "--project", str(bulk["id"]), "--all")
    assert everything["total"] == 2500
    assert [j["id"] for j in everything["jobs"]] == sorted(ids)
    page = cli.json("jobs", "list", "--project", str(bulk["id"]), "--limit", "10", "--offset", "5")
    assert [j["id"] for j in page["jobs"]] == sorted(ids)[5:15]

    human = cli.ok("jobs", "create", "--file", str(path), "--project", str(bulk["id"]))
    assert "created 2500 jobs" in human.stderr
    assert human.stdout.strip()  # the new ids, as ranges


def test_jobs_file_errors(cli: Cli, project: dict[str, Any], cwd: Path) -> None:
    one = cwd / "one.json"
    one.write_text(
        json.dumps({"spec": FAR_SPEC, "projectId": project["id"], "callbackUrl": CALLBACK})
    )
    single = cli.json("jobs", "create", "--file", str(one))
    assert isinstance(single, dict) and single["project_id"] == project["id"]

    bad = cwd / "bad.yaml"
    bad.write_text(
        yaml.safe_dump([{"spec": FAR_SPEC, "callback_url": CALLBACK}] * 3 + [{"spec": "x"}])
    )
    out = cli("jobs", "create", "--file", str(bad), "--project", str(project["id"]))
    _refused(out, 1, "item 3")
    assert "no job was created" in out.stderr

    (cwd / "broken.yaml").write_text("[unclosed")
    _refused(cli("jobs", "create", "--file", str(cwd / "broken.yaml")), 2, "not valid YAML")
    _refused(cli("jobs", "create", "--file", str(cwd / "missing.yaml")), 2, "missing.yaml")


# --- executions ---------------------------------------------------------------------------


def test_executions_list_and_tail(cli: Cli, project: dict[str, Any]) -> None:
    job = _job(cli, project["id"])
    jid = str(job["id"])
    execution_id = cli.ok("jobs", "run", jid).stdout.strip()

    page = cli.json("executions", "list", "--job", jid)
    assert PAGE_KEYS | {"executions"} <= set(page)
    assert [r["execution_id"] for r in page["executions"]] == [execution_id]
    assert execution_id in cli.ok("executions", "list", "--job", jid).stdout

    tail = cli.ok("executions", "tail", "--job", jid, "-n", "5", "--json")
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [r["execution_id"] for r in rows] == [execution_id]
    assert execution_id in cli.ok("executions", "tail", "--job", jid).stdout

    _refused(cli("executions", "list", "--state", "bogus"), 2, "--state")
    _refused(cli("executions", "list", "--since", "yesterday"), 1, "since")


def test_executions_tail_follow_prints_new_rows_until_ctrl_c(
    cli: Cli, project: dict[str, Any]
) -> None:
    job = _job(cli, project["id"])
    jid = str(job["id"])
    first = cli.ok("jobs", "run", jid).stdout.strip()
    command = [
        *scheduler0_command(),
        "executions",
        "tail",
        "--follow",
        "--json",
        "--interval",
        "0.2",
        "--job",
        jid,
        "--node",
        cli.node.url,
    ]
    proc = subprocess.Popen(
        command,
        cwd=cli.cwd,
        env=cli.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen = [json.loads(lines.get(timeout=20))["execution_id"]]
        assert seen == [first]
        time.sleep(1.1)  # a run is one per job per second
        second = cli.ok("jobs", "run", jid).stdout.strip()
        deadline = time.monotonic() + 20
        while second not in seen and time.monotonic() < deadline:
            seen.append(json.loads(lines.get(timeout=20))["execution_id"])
        assert second in seen
        assert seen.index(first) < seen.index(second)  # newest last
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# --- credentials and auth -------------------------------------------------------------


def test_credentials_create_list_archive(cli: Cli) -> None:
    cred = cli.json("credentials", "create", "--description", "ci")
    assert {"id", "api_key", "api_secret", "archived"} <= set(cred)
    human = cli.ok("credentials", "create")
    assert "api secret" in human.stdout and "cannot be shown again" in human.stderr

    page = cli.json("credentials", "list", "--all")
    assert PAGE_KEYS | {"credentials"} <= set(page)
    listed = {c["id"]: c for c in page["credentials"]}
    assert listed[cred["id"]]["archived"] is False
    assert all("api_secret" not in c for c in page["credentials"])

    as_client = cli.env(
        SCHEDULER0_API_KEY=cred["api_key"], SCHEDULER0_API_SECRET=cred["api_secret"]
    )
    as_client.pop("SCHEDULER0_AUTH_PASSWORD")  # the client key alone must do
    cli.ok("projects", "list", env=as_client)
    flags = ("--api-key", cred["api_key"], "--api-secret", cred["api_secret"])
    cli.ok("jobs", "list", *flags)

    refused = cli("credentials", "archive", str(cred["id"]))
    assert refused.returncode == 1 and "--yes" in refused.stderr
    still = {c["id"]: c for c in cli.json("credentials", "list", "--all")["credentials"]}
    assert still[cred["id"]]["archived"] is False
    cli.ok("projects", "list", env=as_client)

    archived = cli.json("credentials", "archive", str(cred["id"]), "--yes")
    assert archived["archived"] is True
    out = cli("projects", "list", env=as_client)
    assert out.returncode == 1 and out.stderr.strip()
    _refused(cli("credentials", "archive", "999999", "--yes"), 1, "no credential")


def test_auth_and_usage_errors(cli: Cli, node: NodeProcess) -> None:
    no_secrets = {k: v for k, v in cli.env().items() if not k.startswith("SCHEDULER0_AUTH")}
    _refused(cli("projects", "list", env=no_secrets), 2, "no credentials")
    _refused(cli("jobs", "list", "--api-key", "only-a-key"), 2, "--api-secret")
    wrong = cli.env(SCHEDULER0_AUTH_PASSWORD="wrong")
    _refused(cli("projects", "list", env=wrong), 1, "")
    headers = create_credential(node)
    client_key = cli.env(
        SCHEDULER0_API_KEY=headers["x-api-key"], SCHEDULER0_API_SECRET=headers["x-secret-key"]
    )
    cli.ok("jobs", "list", env=client_key)
    cli.ok("credentials", "list", env=client_key)  # credentials always use operator auth


@pytest.mark.parametrize(
    "args",
    [
        ("projects", "list"),
        ("projects", "get", "1"),
        ("jobs", "list", "--all"),
        ("jobs", "create", "--project", "1", "--spec", FAR_SPEC, "--callback-url", CALLBACK),
        ("executions", "tail"),
        ("credentials", "list"),
        ("credentials", "archive", "1", "--yes"),
    ],
)
def test_unreachable_node_exits_3(cli: Cli, args: tuple[str, ...]) -> None:
    _refused(cli(*args, node_url=f"http://127.0.0.1:{free_port()}"), 3, "cannot reach")


# --- help -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "noun,verbs",
    [
        ("projects", ["list", "get", "create", "update", "delete"]),
        ("jobs", ["list", "get", "create", "update", "delete", "pause", "resume", "run"]),
        ("executions", ["list", "tail"]),
        ("credentials", ["create", "list", "archive"]),
    ],
)
def test_every_command_has_an_example(noun: str, verbs: list[str]) -> None:
    runner = CliRunner()
    for verb in verbs:
        result = runner.invoke(app, [noun, verb, "--help"])
        assert result.exit_code == 0, result.output
        assert f"scheduler0 {noun} {verb}" in result.output, (noun, verb, result.output)
