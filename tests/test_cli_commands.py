"""The resource commands (projects, jobs, executions, credentials) against one real node.

Each check runs the installed ``scheduler0`` executable, as a user or a script
would, and looks at stdout (data), stderr (messages), ``--json`` shapes and exit
codes: 0 ok, 1 the API refused, 2 bad usage, 3 node unreachable. Fixtures are
set up through the HTTP API directly, and independent runs go in parallel, to
keep the module short.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from scheduler0.cli.main import app
from tests.support.nodes import (
    Client,
    NodeProcess,
    free_port,
    operator_headers,
    scheduler0_command,
    wait_until,
)

CALLBACK = "http://127.0.0.1:9/callback"  # never called: the specs here are far off
FAR_SPEC = "0 0 1 1 *"
PAGE_KEYS = {"total", "offset", "limit"}
JOB_KEYS = {"id", "project_id", "spec", "timezone", "data", "callback_url", "paused"}

Run = subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def api(node: NodeProcess) -> Iterator[Client]:
    client = Client(node.api, operator_headers())
    yield client
    client.close()


class Cli:
    """Runs ``scheduler0 ... --node URL`` in an empty directory, stdin closed."""

    def __init__(self, node: NodeProcess, cwd: Path) -> None:
        self.node = node
        self.cwd = cwd

    def env(self, **extra: str) -> dict[str, str]:
        env = self.node.env()  # the operator secrets, no config file needed
        env["COLUMNS"] = "200"  # tables wide enough to show whole values
        env.update(extra)
        return env

    def command(self, args: Sequence[str], node_url: str | None = None) -> list[str]:
        return [*scheduler0_command(), *args, "--node", node_url or self.node.url]

    def __call__(
        self,
        *args: str,
        node_url: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> Run:
        return subprocess.run(
            self.command(args, node_url),
            cwd=self.cwd,
            env=env or self.env(),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, **kwargs: Any) -> Run:
        out = self(*args, **kwargs)
        assert out.returncode == 0, (args, out.returncode, out.stdout[-2000:], out.stderr[-2000:])
        return out

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kwargs).stdout)

    def many(self, *calls: Sequence[str], **kwargs: Any) -> list[Run]:
        """Independent runs (same keyword arguments), in parallel; results in order."""
        return parallel(*(partial(self, *args, **kwargs) for args in calls))


def parallel(*calls: Callable[[], Run]) -> list[Run]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: call(), calls))


@pytest.fixture(scope="module")
def cli(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    # An empty directory: no config.yml, no .scheduler0; the secrets come from env.
    return Cli(node, tmp_path_factory.mktemp("cli-cwd"))


@pytest.fixture(scope="module")
def project(api: Client) -> dict[str, Any]:
    data: dict[str, Any] = api.data("POST", "/projects", 201, json={"name": "jobs-home"})
    return data


def new_job(api: Client, project_id: int) -> dict[str, Any]:
    body = {"project_id": project_id, "spec": FAR_SPEC, "callback_url": CALLBACK}
    data: dict[str, Any] = api.data("POST", "/jobs", 201, json=body)
    return data


def refused(out: Run, code: int, text: str) -> None:
    """Exit ``code``, nothing on stdout, the reason on stderr."""
    assert out.returncode == code, (out.args, out.returncode, out.stdout, out.stderr)
    assert out.stdout == "", out.stdout
    assert text in out.stderr, (out.args, out.stderr)


# --- projects --------------------------------------------------------------------------


def test_projects_create_list_get_update(cli: Cli, api: Client) -> None:
    created = cli.json("projects", "create", "--name", "calendar", "--description", "demo")
    assert {"id", "name", "description", "signing_secret"} <= set(created)
    pid = str(created["id"])
    for i in range(3):
        api.data("POST", "/projects", 201, json={"name": f"paged-{i}"})

    human, page, got, got_human, updated, first, everything = cli.many(
        ("projects", "list"),
        ("projects", "list", "--json"),
        ("projects", "get", pid, "--json"),
        ("projects", "get", pid),
        ("projects", "update", pid, "--description", "changed", "--json"),
        ("projects", "list", "--limit", "2", "--offset", "1", "--json"),
        ("projects", "list", "--all", "--json"),
    )
    assert human.returncode == 0
    assert "calendar" in human.stdout and "paged-2" in human.stdout
    assert "projects" in human.stderr  # "N of N projects": a message, not data
    data = json.loads(page.stdout)
    assert set(data) >= PAGE_KEYS | {"projects"}
    assert created["id"] in [p["id"] for p in data["projects"]]
    assert json.loads(got.stdout)["signing_secret"] == created["signing_secret"]
    assert created["signing_secret"] in got_human.stdout
    assert json.loads(updated.stdout)["description"] == "changed"
    one_page = json.loads(first.stdout)
    assert (one_page["limit"], one_page["offset"], len(one_page["projects"])) == (2, 1, 2)
    whole = json.loads(everything.stdout)
    assert len(whole["projects"]) == whole["total"] >= 4
    assert whole["projects"][1] == one_page["projects"][0]


def test_projects_and_jobs_refusals(cli: Cli, project: dict[str, Any]) -> None:
    pid = str(project["id"])
    outs = cli.many(
        ("projects", "get", "999999"),
        ("projects", "update", pid),
        ("projects", "get", "not-a-number"),
        ("jobs", "get", "999999"),
        ("jobs", "create", "--project", pid, "--spec", "nope", "--callback-url", CALLBACK),  # 422
        ("jobs", "create", "--project", "999999", "--spec", FAR_SPEC, "--callback-url", CALLBACK),
        ("jobs", "create", "--project", pid),
        ("jobs", "frobnicate"),
        ("executions", "list", "--state", "bogus"),
        ("executions", "list", "--since", "yesterday"),
    )
    expected = [
        (1, "no project with id 999999"),  # 404
        (2, "nothing to change"),
        (2, "integer"),  # typer's own usage error
        (1, "no job with id 999999"),
        (1, "spec"),
        (1, "no project with id 999999"),
        (2, "--spec"),
        (2, "frobnicate"),
        (2, "--state"),
        (1, "since"),
    ]
    for out, (code, text) in zip(outs, expected, strict=True):
        refused(out, code, text)


def test_projects_delete_needs_yes(cli: Cli, api: Client) -> None:
    pid = str(api.data("POST", "/projects", 201, json={"name": "doomed"})["id"])

    closed = cli("projects", "delete", pid)  # stdin closed: no one to say yes
    refused(closed, 1, "--yes")
    declined = cli("projects", "delete", pid, stdin="n\n")
    assert declined.returncode == 1
    api.data("GET", f"/projects/{pid}")  # still there

    deleted = cli("projects", "delete", pid, stdin="y\n")
    assert deleted.returncode == 0 and "deleted" in deleted.stderr
    assert api.call("GET", f"/projects/{pid}").status_code == 404


# --- jobs ---------------------------------------------------------------------------------


def test_jobs_create_get_update_list(cli: Cli, project: dict[str, Any]) -> None:
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
    assert set(job) >= JOB_KEYS
    assert (job["spec"], job["timezone"]) == ("*/5 * * * *", "Europe/Paris")
    assert job["data"] == '{"user": 7}'
    jid = str(job["id"])

    got, human, updated = cli.many(
        ("jobs", "get", jid, "--json"),
        ("jobs", "get", jid),
        ("jobs", "update", jid, "--spec", "@every 2h", "--json"),
    )
    assert json.loads(got.stdout)["id"] == job["id"]
    assert "Europe/Paris" in human.stdout
    changed = json.loads(updated.stdout)
    assert (changed["spec"], changed["timezone"]) == ("@every 2h", "Europe/Paris")

    page, listed = cli.many(
        ("jobs", "list", "--project", str(project["id"]), "--json"),
        ("jobs", "list", "--project", str(project["id"])),
    )
    data = json.loads(page.stdout)
    assert set(data) >= PAGE_KEYS | {"jobs"}
    assert job["id"] in [j["id"] for j in data["jobs"]]
    assert "@every 2h" in listed.stdout


def test_jobs_pause_resume_run_delete(cli: Cli, api: Client, project: dict[str, Any]) -> None:
    jid = str(new_job(api, project["id"])["id"])

    assert cli.json("jobs", "pause", jid)["paused"] is True
    resumed = cli.ok("jobs", "resume", jid)
    assert "resumed" in resumed.stderr
    assert api.data("GET", f"/jobs/{jid}")["paused"] is False

    run = cli.ok("jobs", "run", jid)
    execution_id = run.stdout.strip()
    assert execution_id.startswith(f"{jid}-"), run.stdout
    rows = api.data("GET", "/executions", params={"jobId": jid})["executions"]
    assert execution_id in [r["execution_id"] for r in rows]

    refused(cli("jobs", "delete", jid), 1, "--yes")
    api.data("GET", f"/jobs/{jid}")  # still there

    deleted = cli.ok("jobs", "delete", jid, "--yes")
    assert "deleted" in deleted.stderr
    refused(cli("jobs", "pause", jid), 1, "no job")


def test_jobs_backfill(cli: Cli, api: Client, project: dict[str, Any]) -> None:
    jid = str(new_job(api, project["id"])["id"])  # once a year, on 1 January
    api.data("POST", f"/jobs/{jid}/pause")  # its backfilled runs stay queued
    span = ("--from", "2020-01-01T00:00:00Z", "--to", "2025-06-01T00:00:00Z")
    first = cli.ok("jobs", "backfill", jid, *span)
    summary = (
        f"job {jid}: 6 slot(s) in range (2020-01-01T00:00:00Z .. 2025-01-01T00:00:00Z):"
        " 6 queued, 0 already run"
    )
    assert first.stderr.split() == summary.split()
    again = cli.json("jobs", "backfill", jid, *span)
    assert (again["requested"], again["queued"], again["already_done"]) == (6, 0, 6)
    rows = api.data("GET", f"/jobs/{jid}/executions", params={"trigger": "backfill"})
    assert rows["total"] == 6
    refused(cli("jobs", "backfill", jid, "--from", "2020-01-01"), 1, "from")


def test_jobs_names_labels_and_search(cli: Cli, api: Client) -> None:
    home = api.data("POST", "/projects", 201, json={"name": "named-jobs"})
    pid = str(home["id"])
    make = ("jobs", "create", "--project", pid, "--spec", FAR_SPEC, "--callback-url")
    billing = cli.json(*make, CALLBACK, "--name", "billing", "--label", "team=ops")
    report = cli.json(*make, f"{CALLBACK}/reports", "--label", "team=ops", "--label", "env=prod")
    assert (billing["name"], billing["labels"]) == ("billing", {"team": "ops"})
    assert (report["name"], report["labels"]) == (None, {"team": "ops", "env": "prod"})

    listed, by_label, by_both, by_name, by_text, human, taken, bad_label, no_pair = cli.many(
        ("jobs", "list", "--project", pid, "--json"),
        ("jobs", "list", "--label", "team=ops", "--project", pid, "--json"),
        ("jobs", "list", "--label", "team=ops", "--label", "env=prod", "--json"),
        ("jobs", "list", "--name", "billing", "--project", pid, "--json"),
        ("jobs", "list", "--q", "REPORTS", "--project", pid, "--json"),
        ("jobs", "list", "--label", "team=ops", "--project", pid),
        (*make, CALLBACK, "--name", "billing"),  # 409
        ("jobs", "list", "--label", "Team=ops"),  # 422 from the node
        ("jobs", "list", "--label", "team"),  # usage
    )
    ids = [j["id"] for j in json.loads(listed.stdout)["jobs"]]
    assert ids == [billing["id"], report["id"]]
    assert [j["id"] for j in json.loads(by_label.stdout)["jobs"]] == ids
    assert [j["id"] for j in json.loads(by_both.stdout)["jobs"]] == [report["id"]]
    assert [j["id"] for j in json.loads(by_name.stdout)["jobs"]] == [billing["id"]]
    assert [j["id"] for j in json.loads(by_text.stdout)["jobs"]] == [report["id"]]
    assert "billing" in human.stdout and "env=prod team=ops" in human.stdout
    refused(taken, 1, "a job named 'billing' already exists")
    refused(bad_label, 1, "label: key 'Team'")
    refused(no_pair, 2, "key=value")

    renamed = cli.json("jobs", "update", str(report["id"]), "--name", "report", "--label", "a=b")
    assert (renamed["name"], renamed["labels"]) == ("report", {"a": "b"})
    cleared = cli.json("jobs", "update", str(report["id"]), "--clear-name", "--clear-labels")
    assert (cleared["name"], cleared["labels"]) == (None, {})
    refused(cli("jobs", "update", str(report["id"]), "--name", "billing"), 1, "already exists")


def test_jobs_policies_and_pause_notes(cli: Cli, api: Client, project: dict[str, Any]) -> None:
    job = cli.json(
        "jobs",
        "create",
        "--project",
        str(project["id"]),
        "--spec",
        FAR_SPEC,
        "--callback-url",
        CALLBACK,
        "-p",
        "max_runs=3",
        "--policy",
        "catchup=all",
        "-p",
        "endAt=2040-01-01T00:00:00Z",
        "-p",
        'retry={"attempts": 2}',
    )
    assert (job["max_runs"], job["catchup"], job["end_at"]) == (3, "all", "2040-01-01T00:00:00Z")
    assert job["retry"]["attempts"] == 2
    jid = str(job["id"])
    changed = cli.json("jobs", "update", jid, "-p", "max_runs=null", "-p", "jitter_seconds=60")
    assert (changed["max_runs"], changed["jitter_seconds"], changed["catchup"]) == (None, 60, "all")
    shown = cli.ok("jobs", "get", jid).stdout
    assert "jitter_seconds" in shown and "status" in shown

    assert (
        cli.json("jobs", "pause", jid, "--note", "receiver down")["status_note"] == "receiver down"
    )
    assert api.data("GET", f"/jobs/{jid}")["status"] == "paused"
    resumed = cli.json("jobs", "resume", jid)
    assert (resumed["status"], resumed["status_note"]) == ("active", None)

    bad_name, bad_value = cli.many(
        ("jobs", "update", jid, "-p", "tries=3"),
        ("jobs", "update", jid, "-p", "overlap=queue"),
    )
    refused(bad_name, 2, "expected NAME=VALUE")
    refused(bad_value, 1, "overlap")


def test_jobs_bulk_create_from_yaml(cli: Cli, api: Client) -> None:
    bulk = api.data("POST", "/projects", 201, json={"name": "bulk"})
    jobs = [
        {"spec": FAR_SPEC, "callback_url": f"{CALLBACK}/{i}", "data": {"i": i}} for i in range(2500)
    ]
    path = cli.cwd / "jobs.yaml"
    path.write_text(yaml.safe_dump(jobs))

    created = cli.json("jobs", "create", "--file", str(path), "--project", str(bulk["id"]))
    assert isinstance(created, list) and len(created) == 2500
    ids = [j["id"] for j in created]
    assert len(set(ids)) == 2500
    assert [j["data"] for j in created] == [{"i": i} for i in range(2500)]
    assert {j["project_id"] for j in created} == {bulk["id"]}

    everything, page = cli.many(
        ("jobs", "list", "--project", str(bulk["id"]), "--all", "--json"),
        ("jobs", "list", "--project", str(bulk["id"]), "--limit", "10", "--offset", "5", "--json"),
    )
    whole = json.loads(everything.stdout)
    assert whole["total"] == 2500
    assert [j["id"] for j in whole["jobs"]] == sorted(ids)
    assert [j["id"] for j in json.loads(page.stdout)["jobs"]] == sorted(ids)[5:15]


def test_jobs_create_from_files(cli: Cli, project: dict[str, Any]) -> None:
    cwd, pid = cli.cwd, project["id"]
    (cwd / "one.json").write_text(
        json.dumps({"spec": FAR_SPEC, "projectId": pid, "callbackUrl": CALLBACK})
    )
    (cwd / "some.yaml").write_text(
        yaml.safe_dump([{"spec": FAR_SPEC, "callback_url": CALLBACK}] * 25)
    )
    bad = [{"spec": FAR_SPEC, "callback_url": CALLBACK}] * 3 + [{"spec": "x"}]
    (cwd / "bad.yaml").write_text(yaml.safe_dump(bad))
    (cwd / "broken.yaml").write_text("[unclosed")

    one, some, invalid, broken, missing = cli.many(
        ("jobs", "create", "--file", str(cwd / "one.json"), "--json"),
        ("jobs", "create", "--file", str(cwd / "some.yaml"), "--project", str(pid)),
        ("jobs", "create", "--file", str(cwd / "bad.yaml"), "--project", str(pid)),
        ("jobs", "create", "--file", str(cwd / "broken.yaml")),
        ("jobs", "create", "--file", str(cwd / "missing.yaml")),
    )
    single = json.loads(one.stdout)
    assert isinstance(single, dict) and single["project_id"] == pid  # one in, one out
    assert some.returncode == 0 and "created 25 jobs" in some.stderr
    assert "-" in some.stdout  # the new ids, as ranges
    refused(invalid, 1, "item 3")
    assert "no job was created" in invalid.stderr
    refused(broken, 2, "not valid YAML")
    refused(missing, 2, "missing.yaml")


# --- executions ---------------------------------------------------------------------------


def test_executions_list_and_tail(cli: Cli, api: Client, project: dict[str, Any]) -> None:
    jid = str(new_job(api, project["id"])["id"])
    execution_id = api.data("POST", f"/jobs/{jid}/run", 202)["execution_id"]

    page, human, tail, lines, tail_human, stream_as_json = cli.many(
        ("executions", "list", "--job", jid, "--json"),
        ("executions", "list", "--job", jid),
        ("executions", "tail", "--job", jid, "-n", "5", "--json"),
        ("executions", "tail", "--job", jid, "-n", "5", "--json-lines"),
        ("executions", "tail", "--job", jid),
        ("executions", "tail", "--job", jid, "--follow", "--json"),
    )
    data = json.loads(page.stdout)
    assert set(data) >= PAGE_KEYS | {"executions"}
    assert [r["execution_id"] for r in data["executions"]] == [execution_id]
    assert execution_id in human.stdout
    document = json.loads(tail.stdout)  # --json: one document (a list, oldest first)
    assert [r["execution_id"] for r in document] == [execution_id]
    rows = [json.loads(line) for line in lines.stdout.splitlines()]  # JSON Lines
    assert [r["execution_id"] for r in rows] == [execution_id]
    assert execution_id in tail_human.stdout
    refused(stream_as_json, 2, "--json-lines")


def test_executions_list_by_trigger(cli: Cli, api: Client, project: dict[str, Any]) -> None:
    jid = str(new_job(api, project["id"])["id"])
    manual = api.data("POST", f"/jobs/{jid}/run", 202)
    assert manual["trigger"] == "manual"
    only_manual, only_schedule, human = cli.many(
        ("executions", "list", "--job", jid, "--trigger", "manual", "--json"),
        ("executions", "list", "--job", jid, "--trigger", "schedule", "--json"),
        ("executions", "list", "--job", jid, "--trigger", "manual"),
    )
    rows = json.loads(only_manual.stdout)["executions"]
    assert [(r["execution_id"], r["trigger"]) for r in rows] == [(manual["execution_id"], "manual")]
    assert json.loads(only_schedule.stdout)["executions"] == []
    assert manual["execution_id"] in human.stdout and "manual" in human.stdout
    refused(cli("executions", "list", "--trigger", "cron"), 2, "--trigger")


def test_executions_tail_follow_prints_new_rows_until_ctrl_c(cli: Cli, api: Client) -> None:
    followed = api.data("POST", "/projects", 201, json={"name": "followed"})
    first_job, second_job = new_job(api, followed["id"]), new_job(api, followed["id"])
    first = api.data("POST", f"/jobs/{first_job['id']}/run", 202)["execution_id"]
    args = ("executions", "tail", "--follow", "--json-lines", "--interval", "0.2")
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        cli.command([*args, "--project", str(followed["id"])]),
        cwd=cli.cwd,
        env=cli.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            seen = [json.loads(lines.get(timeout=20))["execution_id"]]
            assert seen == [first]
            second = api.data("POST", f"/jobs/{second_job['id']}/run", 202)["execution_id"]

            def second_seen() -> bool:
                with contextlib.suppress(queue.Empty):  # no new line yet
                    seen.append(json.loads(lines.get(timeout=0.2))["execution_id"])
                return second in seen

            wait_until(second_seen, timeout=20, interval=0, what="the second run in the tail")
            assert seen.index(first) < seen.index(second)  # newest last
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0  # Ctrl-C ends following cleanly
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            reader.join(timeout=10)


# --- credentials and auth -------------------------------------------------------------


def test_credentials_create_list_archive(cli: Cli, api: Client) -> None:
    cred = cli.json("credentials", "create", "--description", "ci")
    assert {"id", "api_key", "api_secret", "archived"} <= set(cred)
    cid = str(cred["id"])
    as_client = cli.env(
        SCHEDULER0_API_KEY=cred["api_key"], SCHEDULER0_API_SECRET=cred["api_secret"]
    )
    del as_client["SCHEDULER0_AUTH_PASSWORD"]  # the client key alone must do
    flags = ("--api-key", cred["api_key"], "--api-secret", cred["api_secret"])

    human, page, not_confirmed, by_env, by_flags = parallel(
        partial(cli, "credentials", "create"),
        partial(cli, "credentials", "list", "--all", "--json"),
        partial(cli, "credentials", "archive", cid),
        partial(cli, "projects", "list", env=as_client),
        partial(cli, "jobs", "list", *flags),
    )
    assert "api secret" in human.stdout and "cannot be shown again" in human.stderr
    data = json.loads(page.stdout)
    assert set(data) >= PAGE_KEYS | {"credentials"}
    assert {c["id"]: c["archived"] for c in data["credentials"]}[cred["id"]] is False
    assert all("api_secret" not in c for c in data["credentials"])
    refused(not_confirmed, 1, "--yes")
    assert api.data("GET", f"/credentials/{cid}")["archived"] is False
    assert by_env.returncode == 0 and by_flags.returncode == 0

    assert cli.json("credentials", "archive", cid, "--yes")["archived"] is True
    both = {**as_client, **{k: v for k, v in cli.env().items() if k.startswith("SCHEDULER0_AUTH")}}
    archived_key, unknown = parallel(
        partial(cli, "projects", "list", env=as_client),
        partial(cli, "credentials", "archive", "999999", "--yes", env=both),
    )
    assert archived_key.returncode == 1 and archived_key.stderr.strip()  # 401 now
    refused(unknown, 1, "no credential")  # operator auth despite the client key in env


def test_credentials_create_with_scopes_projects_and_expiry(cli: Cli, api: Client) -> None:
    project = api.data("POST", "/projects", 201, json={"name": "cli-scoped"})["id"]
    cred = cli.json(
        "credentials", "create", "--scope", "read", "--scope", "execute",
        "--project", str(project), "--expires-at", "2100-01-01T00:00:00Z",
    )  # fmt: skip
    assert cred["scopes"] == ["read", "execute"] and cred["projects"] == [project]
    assert cred["expires_at"].startswith("2100-01-01T00:00:00")
    human = cli("credentials", "list", "--all")
    assert human.returncode == 0 and '["read", "execute"]' in human.stdout
    refused(cli("credentials", "create", "--scope", "root"), 2, "root")
    refused(cli("credentials", "create", "--project", "999999"), 1, "no project with id 999999")


def test_audit_list_shows_who_deleted_what(cli: Cli, api: Client) -> None:
    project = api.data("POST", "/projects", 201, json={"name": "cli-audit"})["id"]
    job = new_job(api, project)
    api.data("DELETE", f"/jobs/{job['id']}", json={"deletedBy": "cli-eve"})
    page = cli.json("audit", "list", "--kind", "job", "--project", str(project))
    human, bad_kind = parallel(
        partial(cli, "audit", "list", "--project", str(project)),
        partial(cli, "audit", "list", "--kind", "widget"),
    )
    assert set(page) >= PAGE_KEYS | {"records"} and page["total"] == 1
    record = page["records"][0]
    assert (record["kind"], record["object_id"], record["by"]) == ("job", job["id"], "cli-eve")
    assert human.returncode == 0 and "cli-eve" in human.stdout
    refused(bad_kind, 2, "widget")


def test_executors_are_made_used_by_jobs_changed_and_deleted(cli: Cli, api: Client) -> None:
    made = cli.json(
        "executors", "create", "--name", "cli-hook", "--url", CALLBACK, "--method", "PUT",
        "--secret", "cli-executor-secret",
    )  # fmt: skip
    executor = str(made["id"])
    assert (made["webhook_method"], made["has_webhook_secret"]) == ("PUT", True)
    assert "cli-executor-secret" not in str(made)
    project = api.data("POST", "/projects", 201, json={"name": "cli-executors"})["id"]
    job = cli.json(
        "jobs", "create", "--project", str(project), "--spec", FAR_SPEC, "--executor", executor
    )
    assert (job["executor_id"], job["callback_url"]) == (made["id"], "")
    other = new_job(api, project)
    moved = cli.json("jobs", "update", str(other["id"]), "--executor", executor)
    assert moved["executor_id"] == made["id"]
    both, neither, in_use = parallel(
        partial(
            cli, "jobs", "create", "--project", str(project), "--spec", FAR_SPEC,
            "--executor", executor, "--callback-url", CALLBACK,
        ),
        partial(cli, "executors", "update", executor),
        partial(cli, "executors", "delete", executor, "--yes"),
    )  # fmt: skip
    refused(both, 2, "--executor")
    refused(neither, 2, "nothing to change")
    refused(in_use, 1, "used by 2 job(s)")
    changed = cli.json("executors", "update", executor, "--url", CALLBACK + "/v2", "--no-secret")
    assert (changed["webhook_url"], changed["has_webhook_secret"]) == (CALLBACK + "/v2", False)
    page = cli.json("executors", "list", "--all")
    assert made["id"] in [row["id"] for row in page["executors"]]
    shown = cli.json("executors", "get", executor)
    assert shown["jobs"] == 2
    human = cli("executors", "list")
    assert human.returncode == 0 and "cli-hook" in human.stdout
    for job_id in (job["id"], other["id"]):
        api.data("DELETE", f"/jobs/{job_id}")
    deleted = cli("executors", "delete", executor, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert api.call("GET", f"/executors/{executor}").status_code == 404


def test_auth_and_configuration_errors(cli: Cli, api: Client) -> None:
    no_secrets = {k: v for k, v in cli.env().items() if not k.startswith("SCHEDULER0_AUTH")}
    cred = api.data("POST", "/credentials", 201, json={})
    client_key = cli.env(
        SCHEDULER0_API_KEY=cred["api_key"], SCHEDULER0_API_SECRET=cred["api_secret"]
    )
    no_auth, half_key, wrong_password, with_key = parallel(
        partial(cli, "projects", "list", env=no_secrets),
        partial(cli, "jobs", "list", "--api-key", "only-a-key"),
        partial(cli, "projects", "list", env=cli.env(SCHEDULER0_AUTH_PASSWORD="wrong")),
        partial(cli, "jobs", "list", "--json", env=client_key),
    )
    refused(no_auth, 2, "no credentials")
    refused(half_key, 2, "--api-secret")
    assert wrong_password.returncode == 1 and wrong_password.stderr.strip()
    assert set(json.loads(with_key.stdout)) >= PAGE_KEYS | {"jobs"}


def test_an_unreachable_node_exits_3(cli: Cli) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for out in cli.many(
        ("projects", "get", "1"),
        ("jobs", "create", "--project", "1", "--spec", FAR_SPEC, "--callback-url", CALLBACK),
        ("executions", "tail", "--follow"),
        ("credentials", "archive", "1", "--yes"),
        node_url=nowhere,
    ):
        refused(out, 3, "cannot reach")


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


# --- output, version, completion, environment, exit codes ----------------------------


LONG_URL = "http://127.0.0.1:9/" + "a-very-long-callback-path/" * 6 + "end"


def test_tables_written_to_a_pipe_are_never_wrapped(cli: Cli, api: Client) -> None:
    wide = api.data("POST", "/projects", 201, json={"name": "piped"})
    body = {"project_id": wide["id"], "spec": FAR_SPEC, "callback_url": LONG_URL}
    job = api.data("POST", "/jobs", 201, json=body)
    narrow_terminal = {k: v for k, v in cli.env().items() if k != "COLUMNS"}
    narrow_terminal["COLUMNS"] = "80"  # what a pipe used to get: ignored off a terminal
    table, tsv, as_json, status = cli.many(
        ("jobs", "list", "--project", str(wide["id"])),
        ("--output", "tsv", "jobs", "list", "--project", str(wide["id"])),
        ("-o", "json", "jobs", "list", "--project", str(wide["id"])),
        ("cluster", "status"),
        env=narrow_terminal,
    )
    [row] = [line for line in table.stdout.splitlines() if LONG_URL in line]
    assert len(row) > 80  # one whole line: neither folded nor cut at 80 columns
    assert table.stdout.count(LONG_URL) == 1
    header, first, *more = tsv.stdout.splitlines()
    columns = dict(zip(header.split("\t"), first.split("\t"), strict=True))
    assert header.split("\t")[0] == "id"
    assert (columns["id"], columns["project"], columns["spec"]) == (
        str(job["id"]),
        str(wide["id"]),
        FAR_SPEC,
    )
    assert LONG_URL in first.split("\t") and more == []
    assert [j["id"] for j in json.loads(as_json.stdout)["jobs"]] == [job["id"]]
    heading = next(line for line in status.stdout.splitlines() if "address" in line)
    for title in ("node", "health", "last contact", "delivery p99", "digest"):
        assert title in heading, heading


def test_version_and_shell_completion_installed_into_home(tmp_path: Path) -> None:
    from scheduler0 import __version__

    version = subprocess.run(
        [*scheduler0_command(), "--version"], capture_output=True, text=True, timeout=60
    )
    assert (version.returncode, version.stdout) == (0, f"scheduler0 {__version__}\n")

    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "SHELL": "/bin/bash"}
    install = subprocess.run(
        [*scheduler0_command(), "--install-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert install.returncode == 0, install.stderr
    script = home / ".bash_completions" / "scheduler0.sh"
    assert "_SCHEDULER0_COMPLETE" in script.read_text()
    assert f"source '{script}'" in (home / ".bashrc").read_text()
    # The installed script asks the program itself; ask it as bash would.
    asked = subprocess.run(
        scheduler0_command(),
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **env,
            "_SCHEDULER0_COMPLETE": "complete_bash",
            "COMP_WORDS": "scheduler0 execu",
            "COMP_CWORD": "1",
        },
    )
    assert asked.stdout.split() == ["executions", "executors"], (asked.stdout, asked.stderr)


def test_the_node_from_the_environment_and_errors_naming_it(cli: Cli) -> None:
    env = cli.env(SCHEDULER0_NODE=cli.node.url)
    listed, missing = (
        subprocess.run(
            [*scheduler0_command(), *args],
            cwd=cli.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for args in (("projects", "list", "--json"), ("projects", "get", "999999"))
    )
    assert listed.returncode == 0, listed.stderr
    assert set(json.loads(listed.stdout)) >= PAGE_KEYS | {"projects"}
    refused(missing, 1, f"(from {cli.node.url})")


def test_a_taken_port_is_a_configuration_error_before_serving(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = NodeProcess(tmp_path, port=port)
        started = subprocess.run(
            [*scheduler0_command(), "start"],
            cwd=tmp_path,
            env=node.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert started.returncode == 2, started.stderr  # configuration, not "unreachable" (3)
    assert f"cannot listen on 127.0.0.1:{port}" in started.stderr
    assert "serving" not in started.stderr


class InDoubt(BaseHTTPRequestHandler):
    """A node whose every write times out uncommitted: 503 no_quorum, in doubt."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        message = "the write was not committed (timeout); it may still be applied"
        body = {"success": False, "data": None, "error": {"code": "no_quorum", "message": message}}
        data = json.dumps(body).encode()
        self.send_response(503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_write_in_doubt_is_said_once_and_clearly(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), InDoubt)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {**NodeProcess(tmp_path).env(), "SCHEDULER0_NODE": url}
    try:
        created = subprocess.run(
            [*scheduler0_command(), "jobs", "create", "--project", "1", "--spec", FAR_SPEC,
             "--callback-url", CALLBACK],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    refused(created, 1, f"the write is in doubt: {url} could not confirm it was committed")
    assert "may or may not have been created" in created.stderr
    assert "no job was created" not in created.stderr
    assert "it may still be applied" not in created.stderr  # said once, in our words
