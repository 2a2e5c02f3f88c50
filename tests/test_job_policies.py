"""Job policies on real node processes with a real receiver: the API (both
spellings, 422s naming the field, patches, notes), and the scheduling-side
policies across kill -9 and restarts, and on two nodes."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.scheduling.policy import jitter_offset
from tests.support.audit import all_executions
from tests.support.nodes import Client, NodeProcess, create_credential, wait_until
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:9/callback"  # never called: the API tests' jobs are far off


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def refusal(client: Client, method: str, path: str, **kwargs: Any) -> list[tuple[str, str]]:
    response = client.call(method, path, **kwargs)
    assert response.status_code == 422, response.text
    return [(d["field"], d["message"]) for d in response.json()["error"]["details"]]


# -- the API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(client: Client) -> int:
    return int(client.data("POST", "/projects", 201, json={"name": "policies"})["id"])


def test_policies_in_camel_case_are_stored_and_shown_in_snake_case(
    client: Client, project: int
) -> None:
    job = client.data(
        "POST",
        "/jobs",
        201,
        json={
            "projectId": project,
            "spec": "0 9 * * 1-5",
            "timezone": "Europe/Paris",
            "callbackUrl": CALLBACK,
            "overlap": "skip",
            "retry": {"attempts": 5, "initialSeconds": 2, "multiplier": 2, "capSeconds": 60},
            "timeoutSeconds": 10,
            "catchup": "all",
            "catchupWindowSeconds": 3600,
            "startAt": "2031-01-06T00:00:00+01:00",
            "endAt": "2031-02-01T00:00:00Z",
            "jitterSeconds": 30,
            "maxRuns": 10,
            "pauseAfterFailures": 3,
        },
    )
    expected = {
        "overlap": "skip",
        "retry": {
            "attempts": 5,
            "initial_seconds": 2.0,
            "multiplier": 2.0,
            "cap_seconds": 60.0,
            "jitter": None,
        },
        "timeout_seconds": 10.0,
        "catchup": "all",
        "catchup_window_seconds": 3600.0,
        "start_at": "2031-01-05T23:00:00Z",
        "end_at": "2031-02-01T00:00:00Z",
        "jitter_seconds": 30,
        "max_runs": 10,
        "pause_after_failures": 3,
        "status": "active",
        "status_note": None,
        "next_run_at": "2031-01-06T08:00:00Z",  # the first weekday 09:00 Paris after start_at
    }
    assert {k: job[k] for k in expected} == expected
    read = client.data("GET", f"/jobs/{job['id']}", params={"consistency": "strong"})
    assert {k: read[k] for k in expected} == expected


def test_a_job_without_policies_shows_the_defaults(client: Client, project: int) -> None:
    job = client.data(
        "POST",
        "/jobs",
        201,
        json={"project_id": project, "spec": "0 0 1 1 *", "callback_url": CALLBACK},
    )
    assert {
        k: job[k]
        for k in (
            "overlap",
            "retry",
            "timeout_seconds",
            "catchup",
            "catchup_window_seconds",
            "start_at",
            "end_at",
            "jitter_seconds",
            "max_runs",
            "pause_after_failures",
            "status",
        )
    } == {
        "overlap": "allow",
        "retry": None,
        "timeout_seconds": None,
        "catchup": "latest",
        "catchup_window_seconds": None,
        "start_at": None,
        "end_at": None,
        "jitter_seconds": 0,
        "max_runs": None,
        "pause_after_failures": None,
        "status": "active",
    }


def test_bad_policies_are_refused_naming_each_field_and_item(client: Client, project: int) -> None:
    base = {"project_id": project, "spec": "*/5 * * * *", "callback_url": CALLBACK}
    response = client.call(
        "POST",
        "/jobs",
        json=[
            {**base, "start_at": "2031-01-02T00:00:00Z", "end_at": "2031-01-01T00:00:00Z"},
            {**base, "retry": {"attempts": -1}},
            {**base, "overlap": "queue"},
            {**base, "spec": "@every 10s", "jitter_seconds": 10},
            {**base, "spec": "@at 2020-01-01T00:00:00Z"},
            {**base, "spec": "@at next tuesday"},
            {**base, "catchup": "some", "maxRuns": 0},
        ],
    )
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert [(d["index"], d["field"]) for d in details] == [
        (0, "end_at"),
        (1, "retry.attempts"),
        (2, "overlap"),
        (3, "jitter_seconds"),
        (4, "spec"),
        (5, "spec"),
        (6, "catchup"),
        (6, "max_runs"),
    ]


def test_a_patch_sets_resets_and_checks_policies_against_the_stored_ones(
    client: Client, project: int
) -> None:
    job = client.data(
        "POST",
        "/jobs",
        201,
        json={
            "project_id": project,
            "spec": "0 0 1 1 *",
            "callback_url": CALLBACK,
            "start_at": "2031-01-01T00:00:00Z",
            "overlap": "skip",
            "max_runs": 2,
        },
    )
    assert job["next_run_at"] == "2031-01-01T00:00:00Z"  # a slot at start_at is in
    path = f"/jobs/{job['id']}"
    assert refusal(client, "PATCH", path, json={"end_at": "2030-12-31T00:00:00Z"}) == [
        ("end_at", "must be later than start_at")
    ]
    changed = client.data(
        "PATCH",
        path,
        json={"overlap": None, "catchup": "none", "startAt": "2031-01-01T00:00:01Z"},
    )
    assert (changed["overlap"], changed["catchup"], changed["max_runs"]) == ("allow", "none", 2)
    assert changed["next_run_at"] == "2032-01-01T00:00:00Z"
    bounded = client.data("PATCH", path, json={"end_at": "2031-06-01T00:00:00Z"})
    assert (bounded["status"], bounded["next_run_at"]) == ("completed", None)
    reopened = client.data("PATCH", path, json={"end_at": None})
    assert (reopened["status"], reopened["next_run_at"]) == ("active", "2032-01-01T00:00:00Z")


def test_pause_and_resume_take_a_note_shown_on_the_job(client: Client, project: int) -> None:
    job = client.data(
        "POST",
        "/jobs",
        201,
        json={"project_id": project, "spec": "0 0 1 1 *", "callback_url": CALLBACK},
    )
    path = f"/jobs/{job['id']}"
    paused = client.data("POST", f"{path}/pause", json={"note": "receiver maintenance"})
    assert (paused["status"], paused["status_note"]) == ("paused", "receiver maintenance")
    assert refusal(client, "POST", f"{path}/resume", json={"note": 3}) == [
        ("note", "Input should be a valid string")
    ]
    resumed = client.data("POST", f"{path}/resume")  # no body: no note
    assert (resumed["status"], resumed["status_note"]) == ("active", None)


def test_the_preview_accepts_the_one_shot_and_manual_specs(client: Client) -> None:
    at = client.data(
        "GET",
        "/schedules/preview",
        params={"spec": "@at 2031-01-01T09:00:00+01:00", "after": "2030-01-01T00:00:00Z"},
    )
    assert [run["at"] for run in at["runs"]] == ["2031-01-01T08:00:00Z"]
    manual = client.data("GET", "/schedules/preview", params={"spec": "@manually"})
    assert manual["runs"] == []
    assert refusal(client, "GET", "/schedules/preview", params={"spec": "@manually now"}) == [
        ("spec", "@manually takes nothing after it")
    ]


# -- scheduling on real nodes -------------------------------------------------------------------


def make_jobs(client: Client, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    project = client.data("POST", "/projects", 201, json={"name": f"p{time.time_ns()}"})
    made: list[dict[str, Any]] = client.data(
        "POST", "/jobs", 201, json=[{"project_id": project["id"], **job} for job in jobs]
    )
    return made


def received(receiver: RunningReceiver, job_id: int) -> list[tuple[int, float]]:
    """(slot, arrival) of the job's callbacks answered 200, in arrival order."""
    out = []
    for record in receiver.records():
        owner, slot = record["execution_id"].split("-")
        if int(owner) == job_id and record["status"] == 200:
            out.append((int(slot), record["t"]))
    return out


def test_catchup_all_fires_each_slot_missed_during_a_kill_once_in_order(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver:
        node = NodeProcess(tmp_path / "node").start()
        try:
            credential = create_credential(node)
            client = Client(node.api, credential)
            (job,) = make_jobs(
                client,
                [
                    {
                        "spec": "@every 2s",
                        "callback_url": f"{receiver.url}/all",
                        "catchup": "all",
                        "catchup_window_seconds": 120,
                    }
                ],
            )
            job_id = job["id"]
            client.close()
            wait_until(lambda: len(received(receiver, job_id)) >= 2, timeout=30, what="2 runs")
            node.kill()
            killed_at = time.time()
            wait_until(lambda: time.time() > killed_at + 7, timeout=10, what="4 slots missed")
            restarted_at = time.time()
            node.start()
            client = Client(node.api, credential)
            wait_until(
                lambda: any(slot > killed_at + 12 for slot, _ in received(receiver, job_id)),
                timeout=60,
                what="runs after the restart",
            )
            executions = [e for e in all_executions(client) if e["job_id"] == job_id]
            client.close()
        finally:
            node.kill()
    by_slot = sorted(executions, key=lambda e: e["slot"])
    slots = [e["slot"] for e in by_slot]
    # Every slot from the first to the last, each once, none missed: the ones
    # that fell while the node was down were caught up ...
    assert slots == list(range(slots[0], slots[-1] + 1, 2))
    down = [s for s in slots if killed_at < s < killed_at + 7]
    assert len(down) >= 3
    assert all(e["state"] != "missed" for e in by_slot), by_slot
    # ... in order: their rows were written (fired) oldest slot first ...
    row_ids = [e["id"] for e in by_slot]
    assert row_ids == sorted(row_ids)
    # ... and each was sent exactly once.
    counts = Counter(slot for slot, _ in received(receiver, job_id))
    assert all(counts[s] == 1 for s in slots if s > killed_at), counts
    # The caught-up ones carry trigger catchup: every slot of the down time
    # older than the newest one due when the node came back (which fired as
    # the schedule's own); the runs before the kill and after the backlog are
    # the schedule's.
    caught_up = [e for e in by_slot if killed_at < e["slot"] < restarted_at - 2]
    assert len(caught_up) >= 2
    assert [e["trigger"] for e in caught_up] == ["catchup"] * len(caught_up), by_slot
    assert by_slot[0]["trigger"] == "schedule"
    assert by_slot[-1]["trigger"] == "schedule"
    assert {e["trigger"] for e in by_slot} == {"schedule", "catchup"}


def test_jitter_sends_each_slot_at_the_same_offset_on_two_nodes(tmp_path: Path) -> None:
    jitter = 8
    with run_receiver(tmp_path) as receiver:
        nodes = [NodeProcess(tmp_path / name) for name in ("a", "b")]
        try:
            for node in nodes:
                node.start()
            for node, name in zip(nodes, ("a", "b"), strict=True):
                client = Client(node.api, create_credential(node))
                made = make_jobs(
                    client,
                    [
                        {
                            "spec": "*/10 * * * * *",
                            "callback_url": f"{receiver.url}/{name}",
                            "jitter_seconds": jitter,
                        }
                    ]
                    * 4,
                )
                client.close()
                assert [job["id"] for job in made] == [1, 2, 3, 4]

            def both_sent_two_slots() -> bool:
                paths = Counter(r["path"] for r in receiver.records())
                return paths["/a"] >= 8 and paths["/b"] >= 8

            wait_until(both_sent_two_slots, timeout=60, what="two slots on each node")
        finally:
            for node in nodes:
                node.kill()
    arrivals: dict[str, dict[str, float]] = {"/a": {}, "/b": {}}
    for record in receiver.records():
        arrivals[record["path"]].setdefault(record["execution_id"], record["t"])
    both = sorted(set(arrivals["/a"]) & set(arrivals["/b"]))
    assert len(both) >= 4
    offsets = set()
    for execution_id in both:
        job_id, slot = (int(part) for part in execution_id.split("-"))
        offset = jitter_offset(job_id, slot, jitter)
        offsets.add(offset)
        for path in ("/a", "/b"):
            late = arrivals[path][execution_id] - (slot + offset)
            assert 0 <= late < 2.0, (path, execution_id, offset, late)
    assert len(offsets) > 1  # not one delay for every job


def test_an_at_job_fires_once_across_a_restart(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver:
        node = NodeProcess(tmp_path / "node").start()
        try:
            credential = create_credential(node)
            client = Client(node.api, credential)
            start = time.time()
            first, during = make_jobs(
                client,
                [
                    {"spec": f"@at {rfc3339(start + 4)}", "callback_url": f"{receiver.url}/at"},
                    {"spec": f"@at {rfc3339(start + 14)}", "callback_url": f"{receiver.url}/at"},
                ],
            )
            wait_until(
                lambda: client.data("GET", f"/jobs/{first['id']}")["last_state"] == "success",
                timeout=30,
                what="the first one-shot run recorded",
            )
            client.close()
            node.kill()  # the second one's instant passes while the node is down
            wait_until(lambda: time.time() > start + 16, timeout=20, what="the second instant")
            node.start()
            client = Client(node.api, credential)
            (canary,) = make_jobs(
                client, [{"spec": "@every 1s", "callback_url": f"{receiver.url}/canary"}]
            )
            wait_until(
                lambda: len(received(receiver, canary["id"])) >= 3,
                timeout=30,
                what="the restarted node firing",
            )
            wait_until(
                lambda: len(received(receiver, during["id"])) >= 1,
                timeout=30,
                what="the one-shot caught up",
            )
            shown = [
                client.data("GET", f"/jobs/{job['id']}", params={"consistency": "strong"})
                for job in (first, during)
            ]
            client.close()
        finally:
            node.kill()
    assert [slot for slot, _ in received(receiver, first["id"])] == [int(start + 4)]
    assert [slot for slot, _ in received(receiver, during["id"])] == [int(start + 14)]
    for job in shown:
        assert (job["status"], job["next_run_at"], job["fired_count"]) == ("completed", None, 1)
