"""The official Python client (PyPI ``scheduler0``), driven against a real node.

This script runs in the client's OWN environment (``requirements/official-client.lock``,
installed by ``tests/test_official_client.py``) with ``python -I``: the
``scheduler0`` it imports is the client's, never this repository's package of
the same name. It imports nothing from this repository.

It makes, through the client's public API only, every call the compatibility
issue lists, one step at a time, and prints one JSON line per step on stdout
(flushed, so a run cut short still shows how far it got)::

    {"step": "projects.create", "ok": false, "status": 422,
     "error": "<the answer's body>", "result": null}

then a last line ``{"done": true, "client": {...}, "ids": {...}}``. A step
that fails does not stop the run: the steps after it go on where they can (a
step whose input a failed step should have made is reported as skipped, with
``ok: false``). A step is ``ok`` when the call succeeded AND its answer says
what the call asked for (the check's message is the ``error`` otherwise).

Usage: ``python -I driver.py '<json config>'`` with the keys ``base_url``,
``username``, ``password`` (the node's operator credentials), ``webhook_url``
(where the executor sends callbacks), ``webhook_secret``, ``account_id`` and
``fire_timeout`` (seconds to wait for the first execution of the firing job).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from scheduler0.types import (
    CredentialCreateRequestBody,
    ExecutorDeleteRequestBody,
    ExecutorRequestBody,
    ExecutorUpdateRequestBody,
    JobDeleteRequestBody,
    JobRequestBody,
    JobUpdateRequestBody,
    ProjectDeleteRequestBody,
    ProjectRequestBody,
    ProjectUpdateRequestBody,
)

import scheduler0
from scheduler0 import NewBasicAuthClient, NewClient

WHO = "compat@example.com"
"""The ``createdBy`` / ``modifiedBy`` / ``deletedBy`` the client sends."""

SCOPES = ["read", "write", "execute"]
ORDER_BY = "date_created"
"""The column the client's own README orders every list by."""

Check = Callable[[Any], "str | None"]


class Skipped(Exception):
    """A step's input was to come from a step that failed."""


class Steps:
    """Runs steps, records and prints each outcome."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, Any]] = {}

    def run(self, name: str, call: Callable[[], Any], check: Check | None = None) -> Any:
        """Run ``call``; its answer if the step is ok, else None."""
        outcome: dict[str, Any] = {"step": name, "ok": False, "status": None, "error": None}
        result: Any = None
        try:
            result = call()
        except Skipped as exc:
            outcome["error"] = f"skipped: {exc}"
        except requests.HTTPError as exc:
            response = exc.response
            outcome["status"] = None if response is None else response.status_code
            outcome["error"] = str(exc) if response is None else response.text[:2000]
        except Exception as exc:  # any other failure of the client is this step's
            outcome["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        else:
            problem = self._check(check, result)
            outcome["ok"] = problem is None
            outcome["error"] = problem
        outcome["result"] = result
        self.outcomes[name] = outcome
        print(json.dumps(outcome, default=str), flush=True)
        return result if outcome["ok"] else None

    @staticmethod
    def _check(check: Check | None, result: Any) -> str | None:
        """The check's message; an answer of another shape is a failed check too."""
        if check is None:
            return None
        try:
            return check(result)
        except Exception as exc:  # a missing key, a failed GET after a delete, ...
            return f"checking the answer: {type(exc).__name__}: {exc}"[:2000]


def need(value: Any, what: str) -> Any:
    """``value``, or :class:`Skipped` if the step that makes it failed."""
    if value is None:
        raise Skipped(f"no {what} (an earlier step failed)")
    return value


def data_of(answer: Any) -> Any:
    """The ``data`` of an answer envelope (the client returns the parsed body)."""
    if not isinstance(answer, dict) or "data" not in answer:
        raise ValueError(f"not an answer envelope: {answer!r}")
    return answer["data"]


def field_problems(item: Any, expected: dict[str, Any]) -> str | None:
    if not isinstance(item, dict):
        return f"expected an object, got {item!r}"
    wrong = {k: item.get(k) for k, v in expected.items() if item.get(k) != v}
    if wrong:
        return f"expected {expected}, got {wrong}"
    return None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def same_instant(shown: Any, sent: str) -> bool:
    try:
        return datetime.fromisoformat(str(shown)) == datetime.fromisoformat(sent)
    except ValueError:
        return False


def item_ids(listing: Any, key: str) -> list[Any]:
    """The ids of a list answer's items (``{"total", ..., key: [...]}``)."""
    items = data_of(listing)[key]
    return [item["id"] for item in items]


def ordered_check(key: str, newer: Any, older: Any) -> Check:
    """Ordered newest first: ``newer`` (created later) before ``older``."""

    def check(answer: Any) -> str | None:
        ids = item_ids(answer, key)
        if newer not in ids or older not in ids:
            return f"{key} {newer} and {older} not both listed: {ids}"
        if ids.index(newer) > ids.index(older):
            return f"not ordered by {ORDER_BY} desc: {ids}"
        return None

    return check


def gone_check(get: Callable[[], Any]) -> Check:
    """After a delete: the thing answers 404."""

    def check(_: Any) -> str | None:
        try:
            answer = get()
        except requests.HTTPError as exc:
            status = None if exc.response is None else exc.response.status_code
            return None if status == 404 else f"GET after the delete answered {status}"
        return f"still there after the delete: {answer!r}"

    return check


class Fallback:
    """Plain HTTP to the node's own API (not the client), used only to make what a
    failed client step should have made, so the steps after it still test their
    own call. Every use is listed in the last line's ``fallbacks``; the failed
    step stays failed."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.api = config["base_url"].rstrip("/") + "/api/v1"
        self.callback_url = config["webhook_url"].rsplit("/", 1)[0] + "/fallback-callback"
        self.session = requests.Session()
        self.session.auth = (config["username"], config["password"])
        self.session.headers["x-peer"] = "cmd"
        self.used: list[str] = []

    def _post(self, path: str, body: Any) -> Any:
        try:
            response = self.session.post(self.api + path, json=body, timeout=30)
        except requests.RequestException:
            return None
        return response.json()["data"] if response.status_code == 201 else None

    def project(self, made: Any, name: str) -> Any:
        """The id of the project the client made, else of one made here."""
        if made is not None:
            return data_of(made)["id"]
        self.used.append(f"project {name}")
        created = self._post("/projects", {"name": name, "description": "fallback"})
        return None if created is None else created["id"]

    def jobs(self, made: Any, project: Any) -> list[Any]:
        """The ids of the two jobs the client made, else of two made here (to
        another path of the receiver, never firing in the test's time)."""
        if made is not None:
            return [job["id"] for job in data_of(made)]
        if project is None:
            return [None, None]
        self.used.append("jobs")
        job = {"project_id": project, "spec": "0 0 3 * * *", "callback_url": self.callback_url}
        created = self._post("/jobs", [job, job])
        return [None, None] if created is None else [job["id"] for job in created]


def main(config: dict[str, Any]) -> None:
    steps = Steps()
    base_url = config["base_url"]
    operator = NewBasicAuthClient(base_url, "v1", config["username"], config["password"])
    fallback = Fallback(config)

    steps.run("health", operator.healthcheck, lambda a: None if a.get("success") else repr(a))

    credential = steps.run(
        "credentials.create (scopes)",
        lambda: operator.create_credential(
            CredentialCreateRequestBody(created_by=WHO, scopes=SCOPES)
        ),
        lambda a: (
            field_problems(data_of(a), {"scopes": SCOPES})
            or (None if data_of(a).get("api_key") else "no api_key in the answer")
        ),
    )
    # The client authenticated with the new key (and the cluster's account id);
    # as the operator if the key could not be made, so the other steps still run.
    client = operator
    if credential is not None:
        made = data_of(credential)
        client = NewClient(
            base_url,
            api_key=made["api_key"],
            api_secret=made.get("api_secret") or made.get("plaintext_secret"),
            account_id=config["account_id"],
        )

    project_a = steps.run(
        "projects.create",
        lambda: client.create_project(
            ProjectRequestBody(name="compat-a", description="official client", created_by=WHO)
        ),
        lambda a: field_problems(data_of(a), {"name": "compat-a"}),
    )
    project_b = steps.run(
        "projects.create (a second, for the order)",
        lambda: client.create_project(
            ProjectRequestBody(name="compat-b", description="second", created_by=WHO)
        ),
        lambda a: field_problems(data_of(a), {"name": "compat-b"}),
    )
    pa = fallback.project(project_a, "compat-a")
    pb = fallback.project(project_b, "compat-b")

    steps.run(
        "projects.get",
        lambda: client.get_project(str(need(pa, "project"))),
        lambda a: field_problems(
            data_of(a),
            {"id": pa, "name": "compat-a", "description": "official client", "created_by": WHO},
        ),
    )

    def list_projects() -> Any:
        need(pa, "project")
        need(pb, "second project")
        return client.list_projects(limit=100, order_by=ORDER_BY, order_by_direction="desc")

    steps.run("projects.list (ordered)", list_projects, ordered_check("projects", pb, pa))
    steps.run(
        "projects.update",
        lambda: client.update_project(
            str(need(pa, "project")),
            ProjectUpdateRequestBody(description="updated by the client", modified_by=WHO),
        ),
        lambda a: field_problems(
            data_of(a), {"description": "updated by the client", "modified_by": WHO}
        ),
    )

    webhook = {
        "webhook_url": config["webhook_url"],
        "webhook_method": "POST",
        "webhook_secret": config["webhook_secret"],
    }
    executor = steps.run(
        "executors.create",
        lambda: client.create_executor(
            ExecutorRequestBody(
                name="compat-webhook", type="webhook_url", created_by=WHO, **webhook
            )
        ),
        lambda a: field_problems(
            data_of(a),
            {
                "name": "compat-webhook",
                "type": "webhook_url",
                "webhook_url": webhook["webhook_url"],
            },
        ),
    )
    ex = None if executor is None else data_of(executor)["id"]
    steps.run(
        "executors.get",
        lambda: client.get_executor(str(need(ex, "executor"))),
        lambda a: field_problems(
            data_of(a),
            {
                "id": ex,
                "name": "compat-webhook",
                "type": "webhook_url",
                "webhook_url": webhook["webhook_url"],
                "webhook_method": "POST",
                "created_by": WHO,
            },
        ),
    )

    def list_executors() -> Any:
        need(ex, "executor")
        return client.list_executors(limit=100, order_by=ORDER_BY, order_by_direction="desc")

    steps.run(
        "executors.list",
        list_executors,
        lambda a: (
            None
            if ex in item_ids(a, "executors")
            else f"executor {ex} not listed: {item_ids(a, 'executors')}"
        ),
    )
    steps.run(
        "executors.update",
        lambda: client.update_executor(
            str(need(ex, "executor")),
            ExecutorUpdateRequestBody(
                name="compat-webhook-renamed", type="webhook_url", modified_by=WHO, **webhook
            ),
        ),
        lambda a: field_problems(
            data_of(a), {"name": "compat-webhook-renamed", "modified_by": WHO}
        ),
    )

    now = datetime.now(UTC)
    start_date = rfc3339(now - timedelta(minutes=1))
    end_date = rfc3339(now + timedelta(days=1))

    def job_bodies() -> list[JobRequestBody]:
        # Sent without an executor too when none could be made: the answer then
        # still tells which of the other fields the node takes.
        common = {"project_id": need(pa, "project"), "timezone": "UTC", "executor_id": ex}
        return [
            JobRequestBody(
                **common,
                spec="* * * * * *",
                data='{"compat": "fires"}',
                start_date=start_date,
                end_date=end_date,
                retry_max=2,
                status="active",
                created_by=WHO,
            ),
            JobRequestBody(
                **common,
                spec="0 0 3 * * *",
                data='{"compat": "inactive"}',
                start_date=start_date,
                retry_max=0,
                status="inactive",
                created_by=WHO,
            ),
        ]

    def created_jobs_check(answer: Any) -> str | None:
        if ex is None:
            return "created without an executor (none could be made)"
        jobs = data_of(answer)
        if not isinstance(jobs, list) or len(jobs) != 2:
            return f"expected the 2 jobs created, got {jobs!r}"
        return field_problems(
            jobs[0], {"executor_id": ex, "retry_max": 2, "status": "active"}
        ) or field_problems(  # the node shows an inactive job as paused (see README)
            jobs[1], {"executor_id": ex, "retry_max": 0, "status": "paused"}
        )

    created = steps.run(
        "jobs.batch_create (executorId, startDate, retryMax, status)",
        lambda: client.batch_create_jobs(job_bodies()),
        created_jobs_check,
    )
    # Only a job the client created fires to the executor: the fire is checked
    # (here and by the test) for that job alone.
    firing_by_client = None if created is None else data_of(created)[0]["id"]
    firing, inactive = fallback.jobs(created, pa)

    def job_get_check(answer: Any) -> str | None:
        job = data_of(answer)
        problem = field_problems(
            job,
            {
                "id": firing,
                "project_id": pa,
                "executor_id": ex,
                "retry_max": 2,
                "status": "active",
                "created_by": WHO,
            },
        )
        if problem:
            return problem
        shown = job.get("start_date", job.get("start_at"))
        return None if same_instant(shown, start_date) else f"start {shown!r} != {start_date}"

    steps.run("jobs.get", lambda: client.get_job(str(need(firing, "job"))), job_get_check)

    def list_jobs() -> Any:
        need(firing, "firing job")
        need(inactive, "inactive job")
        return client.list_jobs(
            project_id=str(pa), limit=100, order_by=ORDER_BY, order_by_direction="desc"
        )

    def both_jobs_listed(answer: Any) -> str | None:
        # One batch is one write: its jobs share date_created, so their order is not checked.
        ids = item_ids(answer, "jobs")
        return None if {firing, inactive} <= set(ids) else f"jobs {firing}, {inactive} not in {ids}"

    steps.run("jobs.list", list_jobs, both_jobs_listed)
    steps.run(
        "jobs.update",
        lambda: client.update_job(
            str(need(inactive, "job")),
            JobUpdateRequestBody(modified_by=WHO, spec="0 0 4 * * *", retry_max=1),
        ),
        lambda a: field_problems(
            data_of(a), {"spec": "0 0 4 * * *", "retry_max": 1, "modified_by": WHO}
        ),
    )
    steps.run(
        "jobs.delete",
        lambda: client.delete_job(str(need(inactive, "job")), JobDeleteRequestBody(deleted_by=WHO)),
        gone_check(lambda: client.get_job(str(inactive))),
    )

    def executions_of_firing_job() -> Any:
        """The first answer listing an execution of the job the client created
        (bounded wait); without that job, one answer of the same query."""
        deadline = time.monotonic() + float(config["fire_timeout"])
        while True:
            answer = client.list_executions(
                limit=10,
                job_id=firing_by_client,
                start_date=start_date,
                end_date=end_date,
                order_by="dateCreated",
                order_direction="DESC",
            )
            executions = data_of(answer)["executions"]
            if firing_by_client is None or executions or time.monotonic() >= deadline:
                return answer
            time.sleep(0.2)

    def executions_check(answer: Any) -> str | None:
        executions = data_of(answer)["executions"]
        if firing_by_client is None:
            return None if isinstance(executions, list) else f"no list of executions: {answer}"
        if any(e.get("job_id") == firing_by_client for e in executions):
            return None
        waited = config["fire_timeout"]
        return f"no execution of job {firing_by_client} within {waited} s: {data_of(answer)}"

    steps.run("executions.list", executions_of_firing_job, executions_check)

    # Clean up through the client too: every delete is one of the listed calls.
    steps.run(
        "jobs.delete (the firing job)",
        lambda: client.delete_job(str(need(firing, "job")), JobDeleteRequestBody(deleted_by=WHO)),
        gone_check(lambda: client.get_job(str(firing))),
    )
    steps.run(
        "executors.delete",
        lambda: client.delete_executor(
            str(need(ex, "executor")), ExecutorDeleteRequestBody(deleted_by=WHO)
        ),
        gone_check(lambda: client.get_executor(str(ex))),
    )
    for name, project in (("projects.delete", pa), ("projects.delete (the second)", pb)):
        steps.run(
            name,
            lambda p=project: client.delete_project(
                str(need(p, "project")), ProjectDeleteRequestBody(deleted_by=WHO)
            ),
            gone_check(lambda p=project: client.get_project(str(p))),
        )

    done = {
        "done": True,
        "client": {"version": scheduler0.__version__, "file": str(Path(scheduler0.__file__))},
        "ids": {"project": pa, "executor": ex, "firing_job": firing_by_client},
        "fallbacks": fallback.used,
        "authenticated_as": "operator" if client is operator else "api key",
    }
    print(json.dumps(done), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
