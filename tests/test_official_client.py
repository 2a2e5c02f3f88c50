"""The official Python client (PyPI ``scheduler0``, pinned), unchanged, against a real node.

The client's import package is also named ``scheduler0``, so it gets an
environment of its own: a venv made once per test session, installed from
``requirements/official-client.lock`` with ``--require-hashes`` (the exact
release, nothing else). A node cannot be tested without the client, so if the
package index cannot be reached this FAILS, it does not skip.

``tests/official_client/driver.py`` then runs in that venv (``python -I``: it
sees the client's ``scheduler0`` only) against a node and a callback receiver
started here, and reports every call as a JSON line. It makes the calls the
compatibility issue lists: health; credentials create with scopes; projects
create, get, list (ordered), update, delete; executors create, get, list,
update, delete; jobs batch create (``executorId``, ``startDate``,
``retryMax``, ``status``), get, list, update, delete; executions list.

Asserted here: every one of those calls succeeded (a failure names the call,
the status and the node's answer; a call whose input a failed call should have
made still runs on one the driver makes over plain HTTP, so each call is judged
on its own), and the job created through the client was called back at its
executor's URL, signed with the executor's secret (checked with the Standard
Webhooks library). And the README's worked example uses the client's real API
(``tests/official_client/check_example.py``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.support.nodes import SECRETS, running_node, wait_until
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "official-client.lock"
DRIVER = REPO / "tests" / "official_client" / "driver.py"
CLIENT_VERSION = "1.2.0"
EXECUTOR_PATH = "/executor-callback"
ACCOUNT_ID = "1"
"""The ``X-Account-ID`` the driver's key client sends (one account per cluster)."""

CREATE_JOBS_STEP = "jobs.batch_create (executorId, startDate, retryMax, status)"
FIRE_TIMEOUT = 20.0
DRIVER_TIMEOUT = 120.0

EXPECTED_STEPS = (
    "health",
    "credentials.create (scopes)",
    "projects.create",
    "projects.create (a second, for the order)",
    "projects.get",
    "projects.list (ordered)",
    "projects.update",
    "executors.create",
    "executors.get",
    "executors.list",
    "executors.update",
    CREATE_JOBS_STEP,
    "jobs.get",
    "jobs.list",
    "jobs.update",
    "jobs.delete",
    "executions.list",
    "jobs.delete (the firing job)",
    "executors.delete",
    "projects.delete",
    "projects.delete (the second)",
)


@pytest.fixture(scope="session")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv holding only the official client (made once per session)."""
    env = tmp_path_factory.mktemp("official-client-env")
    _run_or_fail([sys.executable, "-m", "venv", str(env)], "creating the client's venv")
    python = env / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run_or_fail(
        [*install, "--require-hashes", "--only-binary", ":all:", "-r", str(LOCK)],
        f"installing {LOCK.name} (the package index must be reachable)",
    )
    return python


def _run_or_fail(command: list[str], what: str) -> None:
    """Run a setup command; a failure fails the test (never a skip: CI must see it)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what}: timed out after {exc.timeout} s")
    if done.returncode != 0:
        pytest.fail(f"{what}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


@dataclass
class DriverRun:
    steps: dict[str, dict[str, Any]]
    done: dict[str, Any] | None
    receiver: RunningReceiver
    webhook_secret: str
    stderr: str

    def failures(self) -> list[str]:
        lines = []
        for name in EXPECTED_STEPS:
            step = self.steps.get(name)
            if step is None:
                lines.append(f"{name}: not run")
            elif not step["ok"]:
                lines.append(f"{name}: status {step['status']}: {step['error']}")
        return lines


@pytest.fixture(scope="module")
def driven(client_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriverRun]:
    """One node and one receiver; the driver run once against them (they stay up
    for the module's tests, which read what the receiver recorded)."""
    root = tmp_path_factory.mktemp("official-client")
    webhook_secret = "compat-executor-" + secrets.token_hex(16)
    with (
        running_node(root / "node") as node,
        run_receiver(root, keep_requests=True) as receiver,
    ):
        config = {
            "base_url": node.url,
            "username": SECRETS["SCHEDULER0_AUTH_USERNAME"],
            "password": SECRETS["SCHEDULER0_AUTH_PASSWORD"],
            "webhook_url": receiver.url + EXECUTOR_PATH,
            "webhook_secret": webhook_secret,
            "account_id": ACCOUNT_ID,
            "fire_timeout": FIRE_TIMEOUT,
        }
        try:
            done = subprocess.run(
                [str(client_python), "-I", str(DRIVER), json.dumps(config)],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=DRIVER_TIMEOUT,
            )
            stdout, stderr = done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            stdout = _text(exc.stdout)
            stderr = _text(exc.stderr) + f"\n(driver killed after {DRIVER_TIMEOUT} s)"
        records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        steps = {r["step"]: r for r in records if "step" in r}
        last = next((r for r in records if r.get("done")), None)
        yield DriverRun(steps, last, receiver, webhook_secret, stderr + node.log_tail(20))


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def test_the_driver_ran_the_official_client_from_its_own_environment(
    driven: DriverRun, client_python: Path
) -> None:
    assert driven.done is not None, f"the driver did not finish:\n{driven.stderr[-3000:]}"
    client = driven.done["client"]
    assert client["version"] == CLIENT_VERSION
    # The client's package, not this repository's scheduler0.
    assert Path(client["file"]).is_relative_to(client_python.parent.parent), client
    assert not Path(client["file"]).is_relative_to(REPO), client


def test_every_listed_call_of_the_official_client_succeeds(driven: DriverRun) -> None:
    failures = driven.failures()
    assert not failures, "calls of the official client that failed:\n" + "\n".join(failures)
    assert driven.done is not None and driven.done["authenticated_as"] == "api key"


def test_a_job_created_by_the_client_fires_to_its_executor_signed_with_its_secret(
    driven: DriverRun,
) -> None:
    assert driven.done is not None, f"the driver did not finish:\n{driven.stderr[-3000:]}"
    job_id = driven.done["ids"]["firing_job"]
    created = driven.steps.get(CREATE_JOBS_STEP)
    assert job_id is not None, f"the client created no job: {created}"

    def callbacks_of_the_job() -> list[tuple[dict[str, str], bytes, list[Any]]]:
        found = []
        for record, headers, body in driven.receiver.requests():
            parsed = json.loads(body)
            items = parsed if isinstance(parsed, list) else [parsed]
            if record["path"] == EXECUTOR_PATH and any(
                isinstance(i, dict) and i.get("id") == job_id for i in items
            ):
                found.append((headers, body, items))
        return found

    callbacks = wait_until(callbacks_of_the_job, FIRE_TIMEOUT, what=f"a callback of job {job_id}")
    webhook = Webhook(driven.webhook_secret.encode())
    for headers, body, items in callbacks:
        webhook.verify(body, headers)  # raises WebhookVerificationError when not signed so
        ours = [i for i in items if isinstance(i, dict) and i.get("id") == job_id]
        assert all(str(i["execution_id"]).startswith(f"{job_id}-") for i in ours), ours


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using the official clients\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_uses_the_official_clients_real_api(client_python: Path) -> None:
    """Its imports, client methods and request-body fields exist in the client
    (checked in the client's environment, statically: no node needed)."""
    checker = REPO / "tests" / "official_client" / "check_example.py"
    done = subprocess.run(
        [str(client_python), "-I", str(checker)],
        input=_readme_example(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
