"""On one real node: manual runs beside the schedule's runs of the same second,
the ``trigger`` filter, and job names, labels and search (``GET /jobs``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler0.console.http_source import JOBS_PAGE_LIMIT, Credentials, HttpSource
from tests.support.nodes import Client, NodeProcess, create_credential, wait_until
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:9/callback"  # never called: the specs here are far off
FAR_SPEC = "0 0 1 1 *"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningReceiver]:
    with run_receiver(tmp_path_factory.mktemp("receiver")) as receiver:
        yield receiver


def new_project(client: Client, name: str) -> int:
    return int(client.data("POST", "/projects", 201, json={"name": name})["id"])


def job(project: int, **fields: Any) -> dict[str, Any]:
    return {"project_id": project, "spec": FAR_SPEC, "callback_url": CALLBACK, **fields}


def ids(page: dict[str, Any]) -> list[int]:
    return [j["id"] for j in page["jobs"]]


# -- manual runs ---------------------------------------------------------------------------------


def test_run_now_in_a_second_the_schedule_fires_gives_two_runs(
    client: Client, receiver: RunningReceiver
) -> None:
    project = new_project(client, "manual")
    every_second = client.data(
        "POST",
        "/jobs",
        201,
        json=job(project, spec="* * * * * *", callback_url=f"{receiver.url}/every"),
    )
    jid = every_second["id"]
    # Delivered, not only fired: a run is decided up to FireAheadSeconds before its slot.
    wait_until(lambda: receiver.records(), 15, what="the first fire delivered")
    runs = [client.data("POST", f"/jobs/{jid}/run", 202) for _ in range(2)]
    for run in runs:
        assert run["trigger"] == "manual" and run["job_id"] == jid
        assert run["execution_id"].startswith(f"{jid}-{run['slot']}-m"), run
    assert runs[0]["execution_id"] != runs[1]["execution_id"]
    manual_ids = {run["execution_id"] for run in runs}
    # Every second fires on the schedule: the second of each run-now has its own
    # scheduled run too, under the schedule's id.
    scheduled_ids = {f"{jid}-{run['slot']}" for run in runs}

    def delivered() -> set[str]:
        return {r["execution_id"] for r in receiver.records()}

    wait_until(
        lambda: manual_ids | scheduled_ids <= delivered(), 20, what="both kinds of run delivered"
    )
    client.call("POST", f"/jobs/{jid}/pause")
    rows = client.data("GET", f"/jobs/{jid}/executions", params={"limit": 1000})["executions"]
    by_id = {r["execution_id"]: r for r in rows}
    for run in runs:
        manual_row, scheduled_row = by_id[run["execution_id"]], by_id[f"{jid}-{run['slot']}"]
        assert (manual_row["trigger"], scheduled_row["trigger"]) == ("manual", "schedule")
        assert manual_row["slot"] == scheduled_row["slot"] == run["slot"]
        assert manual_row["scheduled_at"] == scheduled_row["scheduled_at"]
        assert manual_row["id"] != scheduled_row["id"]
    # Each run was sent exactly once (no retries: the receiver answers 200).
    counts = [r["execution_id"] for r in receiver.records()]
    assert all(counts.count(e) == 1 for e in manual_ids | scheduled_ids), counts
    # The callback body of a manual run is the job object, with its own id.
    body = next(r for r in receiver.records() if r["execution_id"] == runs[0]["execution_id"])
    assert body["id"] == jid


def test_executions_are_filtered_by_trigger(client: Client) -> None:
    project = new_project(client, "triggers")
    far = client.data("POST", "/jobs", 201, json=job(project))
    run = client.data("POST", f"/jobs/{far['id']}/run", 202)
    manual = client.data("GET", "/executions", params={"trigger": "manual", "project_id": project})[
        "executions"
    ]
    assert [(e["execution_id"], e["trigger"]) for e in manual] == [(run["execution_id"], "manual")]
    scheduled = client.data(
        "GET", "/executions", params={"trigger": "schedule", "project_id": project}
    )
    assert scheduled["total"] == 0 and scheduled["executions"] == []
    per_job = client.data("GET", f"/jobs/{far['id']}/executions", params={"trigger": "manual"})
    assert [e["execution_id"] for e in per_job["executions"]] == [run["execution_id"]]
    refused = client.call("GET", "/executions", params={"trigger": "cron"})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "trigger"


# -- names and labels ----------------------------------------------------------------------------


def test_names_are_unique_per_project(client: Client) -> None:
    first, second = new_project(client, "names-a"), new_project(client, "names-b")
    made = client.data("POST", "/jobs", 201, json=job(first, name="nightly"))
    assert made["name"] == "nightly" and made["labels"] == {}
    other = client.data("POST", "/jobs", 201, json=job(second, name="nightly"))
    taken = client.call("POST", "/jobs", json=job(first, name="nightly"))
    assert taken.status_code == 409, taken.text
    assert taken.json()["error"]["message"] == (
        f"item 0: a job named 'nightly' already exists in project {first}"
    )
    twice = client.call("POST", "/jobs", json=[job(first, name="x"), job(first, name="x")])
    assert twice.status_code == 409
    assert twice.json()["error"]["details"] == [
        {"field": "name", "message": "already taken", "index": 1}
    ]
    assert client.data("GET", "/jobs", params={"name": "x"})["total"] == 0  # nothing created
    renamed = client.call("PATCH", f"/jobs/{other['id']}", json={"name": "nightly"})
    assert renamed.status_code == 200  # its own name in its own project
    clash = client.data("POST", "/jobs", 201, json=job(first, name="weekly"))
    moved = client.call("PATCH", f"/jobs/{clash['id']}", json={"name": "nightly"})
    assert moved.status_code == 409
    cleared = client.data("PATCH", f"/jobs/{made['id']}", json={"name": None})
    assert cleared["name"] is None
    assert client.data("PATCH", f"/jobs/{clash['id']}", json={"name": "nightly"})["name"] == (
        "nightly"
    )


@pytest.fixture(scope="module")
def bad_fields_project(client: Client) -> int:
    return new_project(client, "bad-fields")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"name": 7}, "name"),
        ({"labels": {"Team": "ops"}}, "labels"),
        ({"labels": {"-team": "ops"}}, "labels"),
        ({"labels": {"t" * 64: "ops"}}, "labels"),
        ({"labels": {"team": "x" * 201}}, "labels"),
        ({"labels": {"team": "a\nb"}}, "labels"),
        ({"labels": {"team": 1}}, "labels"),
        ({"labels": ["team=ops"]}, "labels"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
    ],
)
def test_a_bad_name_or_label_is_a_422_naming_the_field(
    client: Client, bad_fields_project: int, fields: dict[str, Any], field: str
) -> None:
    pid = bad_fields_project
    created = client.call("POST", "/jobs", json=job(pid, **fields))
    assert created.status_code == 422, created.text
    assert created.json()["error"]["details"][0]["field"] == field
    some = client.data("POST", "/jobs", 201, json=job(pid))
    changed = client.call("PATCH", f"/jobs/{some['id']}", json=fields)
    assert changed.status_code == 422, changed.text
    assert changed.json()["error"]["details"][0]["field"] == field


def test_labels_and_text_search_on_the_node_with_paging(client: Client) -> None:
    project = new_project(client, "search")
    made = client.data(
        "POST",
        "/jobs",
        201,
        json=[
            job(project, name=f"Billing-{n}", labels={"team": "ops", "shard": str(n % 2)})
            for n in range(5)
        ]
        + [
            job(project, callback_url="http://127.0.0.1:9/billing/hook", labels={"team": "web"}),
            job(project, spec="0 9 * * MON", labels={"app.kubernetes.io/name": "cron"}),
        ],
    )
    all_ids = [j["id"] for j in made]
    camel = client.data("POST", "/jobs", 201, json={**job(project), "labels": {"a": "b"}})
    assert camel["labels"] == {"a": "b"}

    def search(**params: Any) -> dict[str, Any]:
        page: dict[str, Any] = client.data("GET", "/jobs", params={"projectId": project, **params})
        return page

    assert ids(search(label="team=ops")) == all_ids[:5]
    assert ids(search(label=["team=ops", "shard=1"])) == [all_ids[1], all_ids[3]]
    assert ids(search(label="app.kubernetes.io/name=cron")) == [all_ids[6]]
    assert ids(search(name="Billing-3")) == [all_ids[3]]
    assert ids(search(name="billing-3")) == []  # names match exactly
    # q: any case, in the name, the callback URL or the spec.
    first = search(q="BILLING", limit=4)
    second = search(q="BILLING", limit=4, offset=4)
    assert (first["total"], second["total"]) == (6, 6)
    assert ids(first) + ids(second) == all_ids[:6]
    assert ids(search(q="mon")) == [all_ids[6]]
    assert ids(search(q="billing", label="team=web")) == [all_ids[5]]
    assert ids(search(q="%")) == []  # a plain character, not a wildcard
    # Labels are replaced as a whole, and searchable at once.
    client.data("PATCH", f"/jobs/{all_ids[0]}", json={"labels": {"team": "web"}})
    assert ids(search(label="team=web")) == [all_ids[0], all_ids[5]]
    for bad in ("team", "Team=ops", "=x"):
        refused = client.call("GET", "/jobs", params={"label": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["details"][0]["field"] == "label"
    too_long = client.call("GET", "/jobs", params={"q": "x" * 201})
    assert too_long.status_code == 422
    assert too_long.json()["error"]["details"][0]["field"] == "q"


def test_a_deep_page_is_its_slice_of_the_whole_list_in_every_order(client: Client) -> None:
    """Through the API: a page at any offset, in every order, is the same slice
    of the whole list (one page of it), with the exact total through creates,
    a batch and deletes (the kept per-project counts)."""
    project = new_project(client, "deep")
    other = new_project(client, "deep-other")
    made = client.data(
        "POST",
        "/jobs",
        201,
        json=[
            job(project, **({"name": f"n-{(n * 37) % 61:02d}"} if n % 4 else {})) for n in range(60)
        ],
    )
    client.data("POST", "/jobs", 201, json=[job(other) for _ in range(5)])
    for j in made[5:20:3]:
        client.data("PATCH", f"/jobs/{j['id']}", json={"data": "changed"})
    for j in made[::9]:
        client.data("DELETE", f"/jobs/{j['id']}")
    client.data("POST", "/jobs", 201, json=job(project, name="last"))
    total = 60 - len(made[::9]) + 1

    def page(**params: Any) -> dict[str, Any]:
        got: dict[str, Any] = client.data("GET", "/jobs", params={"projectId": project, **params})
        return got

    for column in ("id", "name", "project_id", "created_at", "updated_at"):
        for direction in ("asc", "desc"):
            order = {"orderBy": column, "orderByDirection": direction}
            whole = page(limit=1000, **order)
            assert whole["total"] == total and len(whole["jobs"]) == total
            for offset in (1, 17, total // 2, total - 7, total - 1):
                deep = page(limit=7, offset=offset, **order)
                assert deep["total"] == total
                assert ids(deep) == ids(whole)[offset : offset + 7], (column, direction, offset)
    assert client.data("GET", "/jobs", params={"projectId": other})["total"] == 5


def test_name_and_labels_survive_a_restart(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node").start()
    try:
        client = Client(node.api, create_credential(node))
        project = new_project(client, "kept")
        made = client.data(
            "POST", "/jobs", 201, json=job(project, name="kept", labels={"team": "ops"})
        )
        client.close()
        node.terminate()
        node.start()
        client = Client(node.api, create_credential(node))
        found = client.data("GET", "/jobs", params={"label": "team=ops"})
        assert [(j["id"], j["name"], j["labels"]) for j in found["jobs"]] == [
            (made["id"], "kept", {"team": "ops"})
        ]
        client.close()
    finally:
        node.kill()


def test_the_console_searches_on_the_node(client: Client, node: NodeProcess) -> None:
    """The console's ``/``: ``key=value`` words are labels, the rest text; jobs
    past the console's one page are found, and the total is of those found."""
    project = new_project(client, "console-search")
    filler = [job(project) for _ in range(JOBS_PAGE_LIMIT)]
    client.data("POST", "/jobs", 201, json=filler)
    wanted = client.data(
        "POST", "/jobs", 201, json=job(project, name="Needle Report", labels={"team": "ops"})
    )
    headers = client.http.headers
    source = HttpSource(
        node.url,
        Credentials(api_key=headers["x-api-key"], api_secret=headers["x-secret-key"]),
    )
    try:
        found = source.jobs(project, "team=ops needle")
        assert [(j.id, j.name, j.labels) for j in found.jobs] == [
            (wanted["id"], "Needle Report", (("team", "ops"),))
        ]
        assert found.total == 1
        assert source.jobs(project, "team=web needle").jobs == ()
        assert source.jobs(project, "").total == JOBS_PAGE_LIMIT + 1
    finally:
        source.close()
