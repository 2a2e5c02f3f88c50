"""Backfill on real node processes with a real receiver: the API (422s naming
the field, the answer, a repeat queuing nothing), the slots a kill -9 left
missed fired once each with the schedule's execution ids, and live fires kept
on time while thousands of backfilled slots drain."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.scheduling.adoption import ADOPT_EVERY, BACKFILL_PER_ROUND
from scheduler0.models import MAX_BACKFILL_SLOTS, MAX_UNSENT_BACKFILL
from tests.support.audit import all_executions
from tests.support.nodes import Client, NodeProcess, create_credential, running_node, wait_until
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:9/callback"  # never called: the API tests' jobs stay paused
HOUR = 3600


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def refusal(client: Client, path: str, body: Any) -> list[tuple[str, str]]:
    response = client.call("POST", path, json=body)
    assert response.status_code == 422, response.text
    return [(d["field"], d["message"]) for d in response.json()["error"]["details"]]


def new_job(client: Client, project: int, spec: str, url: str = CALLBACK, **fields: Any) -> int:
    body = {"project_id": project, "spec": spec, "callback_url": url, **fields}
    return int(client.data("POST", "/jobs", 201, json=body)["id"])


def sent(receiver: RunningReceiver, job_id: int) -> Counter[int]:
    """How many times each slot of the job reached the receiver."""
    return Counter(
        int(r["execution_id"].split("-")[1])
        for r in receiver.records()
        if r["execution_id"].split("-")[0] == str(job_id) and "-m" not in r["execution_id"]
    )


# -- the API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with running_node(tmp_path_factory.mktemp("node")) as node:
        c = Client(node.api, create_credential(node))
        yield c
        c.close()


@pytest.fixture(scope="module")
def project(client: Client) -> int:
    return int(client.data("POST", "/projects", 201, json={"name": "backfill"})["id"])


def paused_job(client: Client, project: int, spec: str, **fields: Any) -> int:
    """A job whose backfilled runs stay pending (a paused job's are not sent)."""
    job_id = new_job(client, project, spec, **fields)
    client.data("POST", f"/jobs/{job_id}/pause")
    return job_id


def test_a_backfill_queues_each_slot_of_the_range_once(client: Client, project: int) -> None:
    job_id = paused_job(client, project, "0 * * * *")
    path = f"/jobs/{job_id}/backfill"
    body = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T05:30:00+00:00"}
    first = client.data("POST", path, 202, json=body)
    assert first == {
        "job_id": job_id,
        "requested": 6,
        "queued": 6,
        "already_done": 0,
        "left_to_schedule": 0,
        "first": "2026-01-01T00:00:00Z",
        "last": "2026-01-01T05:00:00Z",
    }
    again = client.data("POST", path, 202, json=body)
    assert (again["requested"], again["queued"], again["already_done"]) == (6, 0, 6)
    rows = client.data("GET", f"/jobs/{job_id}/executions", params={"trigger": "backfill"})
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    assert sorted((e["execution_id"], e["state"]) for e in rows["executions"]) == [
        (f"{job_id}-{start + h * HOUR}", "pending") for h in range(6)
    ]
    # An overlapping range queues only the slots it adds.
    wider = client.data(
        "POST", path, 202, json={"from": "2026-01-01T04:00:00Z", "to": "2026-01-01T07:00:00Z"}
    )
    assert (wider["requested"], wider["queued"], wider["already_done"]) == (4, 2, 2)


def test_a_backfill_range_ending_in_the_future_ends_now(client: Client, project: int) -> None:
    job_id = paused_job(client, project, "*/10 * * * * *")
    before = time.time()
    answer = client.data(
        "POST",
        f"/jobs/{job_id}/backfill",
        202,
        json={"from": rfc3339(before - 60), "to": rfc3339(before + 3 * HOUR)},
    )
    after = time.time()
    assert answer["requested"] in (6, 7)  # every 10 s from a minute ago to now
    last = datetime.fromisoformat(answer["last"]).timestamp()
    assert before - 10 <= last <= after


def test_a_backfill_respects_the_jobs_start_at_and_end_at(client: Client, project: int) -> None:
    job_id = paused_job(
        client,
        project,
        "0 * * * *",
        start_at="2026-01-01T02:00:00Z",
        end_at="2026-01-01T03:00:00Z",
    )
    answer = client.data(
        "POST",
        f"/jobs/{job_id}/backfill",
        202,
        json={"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T05:00:00Z"},
    )
    assert (answer["requested"], answer["first"], answer["last"]) == (
        2,
        "2026-01-01T02:00:00Z",
        "2026-01-01T03:00:00Z",
    )


def test_a_backfill_refuses_bad_ranges_naming_the_field(client: Client, project: int) -> None:
    job_id = paused_job(client, project, "0 * * * *")
    path = f"/jobs/{job_id}/backfill"
    to = "2026-01-01T05:00:00Z"
    assert refusal(client, path, {"to": to})[0][0] == "from"
    assert refusal(client, path, {"from": "2026-01-01T00:00:00", "to": to}) == [
        (
            "from",
            "must be an RFC 3339 time with its offset, e.g. '2026-03-01T09:00:00Z'"
            " or '2026-03-01T10:00:00+01:00'",
        )
    ]
    assert refusal(client, path, {"from": to, "to": to}) == [("to", "must be later than from")]
    assert refusal(client, path, {"from": to, "to": "2026-01-01T01:00:00Z"}) == [
        ("to", "must be later than from")
    ]
    future = rfc3339(time.time() + HOUR)
    assert refusal(client, path, {"from": future, "to": rfc3339(time.time() + 2 * HOUR)}) == [
        ("from", "must be in the past")
    ]
    assert refusal(client, path, {"from": to, "to": to, "at": 1}) == [("at", "unknown field")]
    assert refusal(client, path, [to])[0][0] == "body"
    every_second = paused_job(client, project, "* * * * * *")
    (too_many,) = refusal(
        client,
        f"/jobs/{every_second}/backfill",
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
    )
    assert too_many == (
        "to",
        f"the range holds more than {MAX_BACKFILL_SLOTS} slots (the first {MAX_BACKFILL_SLOTS}"
        " end at 2026-01-01T02:46:39Z); backfill it in parts",
    )
    manual = paused_job(client, project, "@manually")
    assert refusal(
        client, f"/jobs/{manual}/backfill", {"from": "2026-01-01T00:00:00Z", "to": to}
    ) == [("spec", "an @manually job has no schedule to backfill")]
    unknown = client.call("POST", "/jobs/999999/backfill", json={"from": to, "to": future})
    assert unknown.status_code == 404, unknown.text
    # Nothing was queued by any refusal.
    for refused in (job_id, every_second, manual):
        rows = client.data("GET", f"/jobs/{refused}/executions", params={"trigger": "backfill"})
        assert rows["total"] == 0


def test_a_project_may_queue_only_so_many_backfilled_runs_and_others_still_may(
    client: Client,
) -> None:
    """A project's queue of runs to send is bounded (``MAX_UNSENT_BACKFILL``):
    the backfill that would pass it is refused (409) and queues nothing, and
    another project's is accepted as before."""
    busy = int(client.data("POST", "/projects", 201, json={"name": "backfill-busy"})["id"])
    other = int(client.data("POST", "/projects", 201, json={"name": "backfill-other"})["id"])
    every_second = paused_job(client, busy, "* * * * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    parts = MAX_UNSENT_BACKFILL // MAX_BACKFILL_SLOTS
    for part in range(parts):
        first = start + part * MAX_BACKFILL_SLOTS
        body = {"from": rfc3339(first), "to": rfc3339(first + MAX_BACKFILL_SLOTS - 1)}
        queued = client.data("POST", f"/jobs/{every_second}/backfill", 202, json=body)
        assert queued["queued"] == MAX_BACKFILL_SLOTS
    past = start + parts * MAX_BACKFILL_SLOTS
    full = client.call(
        "POST",
        f"/jobs/{every_second}/backfill",
        json={"from": rfc3339(past), "to": rfc3339(past + 1)},
    )
    assert full.status_code == 409, full.text
    assert f"at most {MAX_UNSENT_BACKFILL:,} may wait" in full.text
    waiting = client.data(
        "GET", f"/jobs/{every_second}/executions", params={"trigger": "backfill", "limit": 1}
    )
    assert waiting["total"] == MAX_UNSENT_BACKFILL
    hourly = paused_job(client, other, "0 * * * *")
    body = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T05:00:00Z"}
    assert client.data("POST", f"/jobs/{hourly}/backfill", 202, json=body)["queued"] == 6


# -- after a gap -------------------------------------------------------------------------------


def test_backfill_after_a_kill_fires_each_missed_slot_once(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver:
        node = NodeProcess(tmp_path / "node").start()
        try:
            credential = create_credential(node)
            client = Client(node.api, credential)
            project = int(client.data("POST", "/projects", 201, json={"name": "gap"})["id"])
            job_id = new_job(client, project, "@every 1s", f"{receiver.url}/gap", catchup="none")
            client.close()
            wait_until(lambda: len(sent(receiver, job_id)) >= 3, timeout=30, what="3 runs")
            node.kill()
            killed_at = time.time()
            wait_until(lambda: time.time() > killed_at + 5, timeout=10, what="a 5 s gap")
            node.start()
            client = Client(node.api, credential)
            wait_until(
                lambda: any(s > killed_at + 8 for s in sent(receiver, job_id)),
                timeout=60,
                what="runs after the restart",
            )
            executions = [e for e in all_executions(client) if e["job_id"] == job_id]
            state_of = {e["slot"]: e["state"] for e in executions if e["slot"] > 0}
            missed = sorted(s for s, state in state_of.items() if state == "missed")
            assert len(missed) >= 3, executions
            fired_before = sorted(
                s for s, state in state_of.items() if s < missed[0] and state == "success"
            )
            assert fired_before, executions
            # From the first slot ever fired to the gap's last: the runs before
            # the gap are in the range too.
            first, last = fired_before[0], missed[-1]
            holes = [s for s in range(first, last + 1) if state_of.get(s, "missed") == "missed"]
            body = {"from": rfc3339(first), "to": rfc3339(last)}
            # The slot in flight at the kill may have reached the receiver twice
            # (its re-send after the restart: at-least-once); the backfill adds none.
            before = sent(receiver, job_id)
            answer = client.data("POST", f"/jobs/{job_id}/backfill", 202, json=body)
            assert answer["requested"] == last - first + 1
            assert answer["queued"] == len(holes)
            assert answer["already_done"] == answer["requested"] - len(holes)
            wait_until(
                lambda: all(sent(receiver, job_id)[s] == 1 for s in holes),
                timeout=60,
                what="every slot of the gap sent",
            )
            repeat = client.data("POST", f"/jobs/{job_id}/backfill", 202, json=body)
            assert (repeat["queued"], repeat["already_done"]) == (0, repeat["requested"])
            rows = client.data(
                "GET",
                f"/jobs/{job_id}/executions",
                params={"trigger": "backfill", "limit": 1000},
            )["executions"]
            client.data("POST", f"/jobs/{job_id}/pause")
            client.close()
        finally:
            node.kill()
    assert sorted(e["slot"] for e in rows) == holes
    assert {e["execution_id"] for e in rows} == {f"{job_id}-{s}" for s in holes}
    assert all(e["trigger"] == "backfill" for e in rows)
    after = sent(receiver, job_id)
    # Each slot of the gap once; the slots fired before it not again.
    assert all(after[s] == 1 for s in holes), after
    assert all(after[s] == before[s] >= 1 for s in fired_before), (before, after)


# -- pacing ------------------------------------------------------------------------------------

LIVE_JOBS = 10
BACKFILLED = 3000


def test_live_fires_stay_on_time_while_a_large_backfill_drains(tmp_path: Path) -> None:
    """Live lateness (arrival at the receiver less the slot) while 3000 past
    slots drain: p99 under a second, and the backfill sent at most at its pace."""
    with run_receiver(tmp_path) as receiver, running_node(tmp_path / "node") as node:
        client = Client(node.api, create_credential(node))
        project = int(client.data("POST", "/projects", 201, json={"name": "pace"})["id"])
        live = [
            new_job(client, project, "* * * * * *", f"{receiver.url}/live")
            for _ in range(LIVE_JOBS)
        ]
        # Its grid has a slot every second before it was created: all backfillable.
        backfilled = new_job(client, project, "* * * * * *", f"{receiver.url}/backfill")
        end = int(time.time()) - 2
        wait_until(lambda: len(receiver.records()) >= 3 * LIVE_JOBS, timeout=30, what="live fires")

        def drained_count() -> int:
            return sum(
                1
                for r in receiver.records()
                if r["path"] == "/backfill" and int(r["execution_id"].split("-")[1]) <= end
            )

        body = {"from": rfc3339(end - BACKFILLED + 1), "to": rfc3339(end)}
        started = time.time()
        answer = client.data("POST", f"/jobs/{backfilled}/backfill", 202, json=body)
        assert answer["queued"] == BACKFILLED
        wait_until(
            lambda: drained_count() >= BACKFILLED, timeout=120, interval=0.5, what="the drain"
        )
        drained = time.time()
        for job_id in [*live, backfilled]:
            client.data("POST", f"/jobs/{job_id}/pause")
        client.close()
    records = receiver.records()
    backfill_ids = Counter(
        r["execution_id"]
        for r in records
        if r["path"] == "/backfill" and int(r["execution_id"].split("-")[1]) <= end
    )
    assert len(backfill_ids) == BACKFILLED and set(backfill_ids.values()) == {1}
    lateness = sorted(
        r["t"] - int(r["execution_id"].split("-")[1])
        for r in records
        if r["path"] == "/live" and started <= r["t"] <= drained
    )
    assert len(lateness) >= LIVE_JOBS * 10, "live fires while the backfill drained"
    p99 = lateness[int(len(lateness) * 0.99)]
    assert p99 < 1.0, f"live lateness p99 {p99:.3f}s over {len(lateness)} fires"
    # The pace: at most BACKFILL_PER_ROUND a round, a round every ADOPT_EVERY.
    fastest = BACKFILL_PER_ROUND / ADOPT_EVERY
    assert drained - started >= 0.8 * BACKFILLED / fastest, (started, drained)
