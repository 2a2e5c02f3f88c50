"""The seed's workflow on one real node process, with a real callback receiver."""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tests.support.audit import all_executions, audit, incarnation, summary
from tests.support.nodes import Client, NodeProcess, create_credential, wait_until
from tests.support.receiver import run_receiver

JOBS = 1000


def _make_jobs(client: Client, url: str, count: int, spec: str = "@every 1s") -> list[int]:
    project = client.data("POST", "/projects", 201, json={"name": "e2e", "description": "x"})
    jobs = client.data(
        "POST",
        "/jobs",
        201,
        json=[
            {
                "spec": spec,
                "project_id": project["id"],
                "execution_type": "http",
                "data": f'{{"n": {i}}}',
                "timezone": "America/New_York",
                "callback_url": f"{url}/callback",
            }
            for i in range(count)
        ],
    )
    return [job["id"] for job in jobs]


def _slots_by_job(records: list[dict[str, Any]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for record in records:
        job_id, slot = record["execution_id"].split("-")
        out[int(job_id)].append(int(slot))
    return out


def test_thousand_jobs_every_second_each_called_back_every_second(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver:
        node = NodeProcess(tmp_path / "node").start()
        try:
            client = Client(node.api, create_credential(node))
            ids = _make_jobs(client, receiver.url, JOBS)
            assert len(ids) == JOBS and len(set(ids)) == JOBS

            # Wait until every job has been called back in at least 5 distinct slots.
            def enough() -> bool:
                slots = _slots_by_job(receiver.records())
                return len(slots) == JOBS and min(len(set(s)) for s in slots.values()) >= 5

            wait_until(enough, timeout=60, interval=0.5, what="5 callbacks per job")
            records = receiver.records()
            client.close()
        finally:
            node.kill()

    delivered = [r for r in records if r["status"] == 200]
    # Each (job, slot) once: one execution id, never delivered twice.
    counts = Counter(r["execution_id"] for r in delivered)
    assert max(counts.values()) == 1, counts.most_common(3)
    slots = _slots_by_job(delivered)
    assert set(slots) == set(ids)
    for job_slots in slots.values():
        ordered = sorted(job_slots)
        # every second, no gap: consecutive slots of a 1 s grid.
        assert all(b - a == 1 for a, b in itertools.pairwise(ordered)), ordered
    # Batched: the receiver got arrays holding many jobs per POST.
    per_batch = Counter(r["batch"] for r in delivered)
    assert max(per_batch.values()) >= 500


def test_kill_and_restart_fires_no_slot_twice_and_keeps_the_grid(tmp_path: Path) -> None:
    kills = 3
    with run_receiver(tmp_path) as receiver:
        node = NodeProcess(tmp_path / "node").start()
        try:
            credential = create_credential(node)
            client = Client(node.api, credential)
            every_second = _make_jobs(client, receiver.url, 200)
            project_id = client.data("GET", "/projects")["projects"][0]["id"]
            even = client.data(
                "POST",
                "/jobs",
                201,
                json=[
                    {
                        "spec": "*/2 * * * * *",
                        "project_id": project_id,
                        "callback_url": f"{receiver.url}/even",
                    }
                ]
                * 50,
            )
            even_ids = {job["id"] for job in even}
            client.close()
            killed_at: list[float] = []  # once the process is gone
            back_at: list[float] = []  # once the restarted node is ready
            for _ in range(kills):
                before = len(receiver.records())
                wait_until(
                    lambda b=before: len(receiver.records()) > b + 500,
                    timeout=30,
                    what="callbacks before the kill",
                )
                node.kill()
                killed_at.append(time.time())
                node.start()
                back_at.append(time.time())
            before = len(receiver.records())
            wait_until(
                lambda: len(receiver.records()) > before + 1000,
                timeout=30,
                what="callbacks after the last restart",
            )
            client = Client(node.api, credential)
            jobs = client.data("GET", "/jobs", params={"limit": 1000})
            # Each fire is committed before it is sent, so every callback that
            # arrived before the listing starts has its row in it; one arriving
            # while the pages are read may be of a row committed after them.
            arrived_before_listing = len(receiver.records())
            executions = all_executions(client)
            client.close()
        finally:
            node.kill()
        arrived = receiver.records()
        records = [r for r in arrived if r["status"] == 200]
        listable = [r for r in arrived[:arrived_before_listing] if r["status"] == 200]

    # The data is all there after the kills.
    assert jobs["total"] == 250
    assert {j["id"] for j in jobs["jobs"]} == set(every_second) | even_ids

    # One fire record per (job, slot); a delivered slot is never also "missed".
    recorded = Counter((e["job_id"], e["slot"]) for e in executions)
    assert max(recorded.values()) == 1
    states = {(e["job_id"], e["slot"]): e["state"] for e in executions}
    delivered = _slots_by_job(listable)
    assert sum(len(slots) for slots in delivered.values()) > 1000
    for job_id, slots in delivered.items():
        for slot in slots:
            assert states.get((job_id, slot)) in ("success", "dispatched", "failed"), (
                job_id,
                slot,
                states.get((job_id, slot)),
            )

    # Deliveries are at-least-once: an id repeats only when a crash cut its
    # run short, i.e. it was sent, its result not yet committed, and the node
    # killed; after the restart it is re-sent with the same id. So each run of
    # the node sends an id at most once (at most once per kill), every send
    # but the last came from a run that was then killed, and the slot is from
    # the seconds just before that kill or an earlier one.
    crashes = {"1": killed_at}
    repeats = Counter(r["execution_id"] for r in records)
    for execution_id, count in repeats.items():
        if count == 1:
            continue
        slot = int(execution_id.rsplit("-", 1)[1])
        runs = sorted(
            incarnation(crashes, r["node"], r["t"])
            for r in records
            if r["execution_id"] == execution_id
        )
        assert count <= 1 + kills, execution_id
        assert len(set(runs)) == count, (execution_id, "sent twice by one run", runs)
        # A send cut short by one kill is re-sent by the next run, which a
        # later kill may cut short again: the slot is then from the seconds
        # before the first of those kills, and before the run's own kill.
        for run in runs[:-1]:
            assert slot <= killed_at[run], (execution_id, run, killed_at)
            assert any(at - 10 <= slot <= at for at in killed_at[: run + 1]), (
                execution_id,
                run,
                killed_at,
            )
    # Every kill was followed by a restart well within the misfire grace: the
    # runs it cut short were all re-sent, none is left lost (audit also checks
    # the invariants of lost rows and of repeated ids, over both kinds of job).
    every_second_audit = audit(records, executions, set(every_second), crashes=crashes)
    even_audit = audit(records, executions, even_ids, period=2, crashes=crashes)
    print(summary(every_second_audit), summary(even_audit))
    assert every_second_audit["lost"] == 0, every_second_audit
    assert even_audit["lost"] == 0, even_audit

    by_job: dict[int, list[int]] = defaultdict(list)
    for job_id, slot in recorded:
        by_job[job_id].append(slot)
    for job_id in every_second:
        slots = sorted(by_job[job_id])
        # Every second from the first slot to the last is accounted for:
        # fired, or recorded missed while the node was down. None silently lost.
        assert slots == list(range(slots[0], slots[-1] + 1)), job_id
        # A slot is recorded missed only when the node was down at its time:
        # between a kill and the restarted node being ready (a second's margin
        # for the slot boundary and the ready check).
        for slot in slots:
            if states[(job_id, slot)] == "missed":
                downs = list(zip(killed_at, back_at, strict=True))
                assert any(k - 1 <= slot <= b + 1 for k, b in downs), (job_id, slot, downs)
    for job_id in even_ids:
        slots = sorted(by_job[job_id])
        assert all(s % 2 == 0 for s in slots)  # on the job's own grid
        assert slots == list(range(slots[0], slots[-1] + 1, 2)), job_id


def test_run_now_calls_back_once_outside_the_schedule(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver:
        node = NodeProcess(tmp_path / "node").start()
        try:
            client = Client(node.api, create_credential(node))
            project = client.data("POST", "/projects", 201, json={"name": "manual"})
            job = client.data(
                "POST",
                "/jobs",
                201,
                json={
                    "spec": "0 0 1 1 *",
                    "project_id": project["id"],
                    "callback_url": f"{receiver.url}/run",
                },
            )
            run = client.data("POST", f"/jobs/{job['id']}/run", 202)
            wait_until(
                lambda: any(r["execution_id"] == run["execution_id"] for r in receiver.records()),
                timeout=15,
                what="the manual run's callback",
            )
            # Another run-now is another run, with its own id (even in the same second).
            again = client.data("POST", f"/jobs/{job['id']}/run", 202)
            wait_until(
                lambda: any(r["execution_id"] == again["execution_id"] for r in receiver.records()),
                timeout=15,
                what="the second manual run's callback",
            )
            history = client.data("GET", f"/jobs/{job['id']}/executions")
            client.close()
        finally:
            node.kill()
    assert again["execution_id"] != run["execution_id"]
    sent = [r["execution_id"] for r in receiver.records()]
    assert sent.count(run["execution_id"]) == sent.count(again["execution_id"]) == 1
    assert {(e["execution_id"], e["trigger"]) for e in history["executions"]} == {
        (run["execution_id"], "manual"),
        (again["execution_id"], "manual"),
    }
