"""The scheduling-side policies through the real scheduling parts (owned set,
firing, dispatch, state machine) with a controlled clock: what fires, when,
and what a restart (a fresh owned set over the same state) does."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.api import views
from scheduler0.daemon.scheduling.cron import NEVER
from scheduler0.daemon.scheduling.policy import jitter_offset
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.timefmt import iso
from tests.unit.harness import T0, World, fire_item, run_async
from tests.unit.test_firing import Parts

pytestmark = pytest.mark.unit


async def one_job(world: World, spec: str, **policy: Any) -> tuple[Parts, int]:
    await world.project()
    (job_id,) = await world.jobs(spec, policy=policy or None)
    await world.assign_all()
    return Parts(world), job_id


async def ticks(parts: Parts, start: float, stop: float, step: float = 0.5) -> None:
    at = start
    while at <= stop:
        await parts.tick(at)
        at += step


def shown(world: World, job_id: int) -> dict[str, Any]:
    return views.job_out(world.queries.job(job_id))


def fired_slots(world: World) -> list[int]:
    return [slot for _, slot in world.executor.sent_pairs()]


@run_async
async def test_no_slot_outside_start_at_and_end_at_then_completed_across_a_restart(
    world: World,
) -> None:
    parts, job_id = await one_job(world, "@every 10s", start_at=T0 + 25.0, end_at=T0 + 60.0)
    assert shown(world, job_id)["next_run_at"] == iso(T0 + 30)
    await ticks(parts, T0 + 1, T0 + 100)
    assert fired_slots(world) == [T0 + 30, T0 + 40, T0 + 50, T0 + 60]
    job = shown(world, job_id)
    assert (job["status"], job["next_run_at"]) == ("completed", None)
    assert (job["start_at"], job["end_at"]) == (iso(T0 + 25), iso(T0 + 60))
    restarted = Parts(world)
    await ticks(restarted, T0 + 100, T0 + 130)
    assert fired_slots(world) == [T0 + 30, T0 + 40, T0 + 50, T0 + 60]
    assert world.queries.job(job_id)["next_run"] == NEVER


@run_async
async def test_an_at_job_fires_once_and_never_again_after_a_restart(world: World) -> None:
    at = T0 + 25
    parts, job_id = await one_job(world, f"@at {iso(at)}")
    assert shown(world, job_id)["status"] == "active"
    await ticks(parts, T0 + 1, T0 + 40)
    assert world.executor.sent_pairs() == [(job_id, at)]
    assert shown(world, job_id)["status"] == "completed"
    restarted = Parts(world)
    await ticks(restarted, T0 + 40, T0 + 60)
    assert world.executor.sent_pairs() == [(job_id, at)]
    assert world.executions() == [(job_id, at, "dispatched")]


@run_async
async def test_a_manual_job_never_fires_by_schedule(world: World) -> None:
    parts, job_id = await one_job(world, "@manually")
    await ticks(parts, T0 + 1, T0 + 120, step=1.0)
    assert world.commands(c.SlotsFired) == []
    job = shown(world, job_id)
    assert (job["status"], job["next_run_at"]) == ("active", None)


@run_async
async def test_max_runs_completes_the_job_after_that_many_runs(world: World) -> None:
    parts, job_id = await one_job(world, "@every 10s", max_runs=3)
    await ticks(parts, T0 + 1, T0 + 80)
    assert fired_slots(world) == [T0 + 10, T0 + 20, T0 + 30]
    job = shown(world, job_id)
    assert (job["status"], job["fired_count"], job["max_runs"]) == ("completed", 3, 3)
    # A stale proposer's fire past the limit is refused by the state machine.
    refused = await world.propose(
        c.SlotsFired(now=T0 + 90, node_id=1, epoch=1, fires=[[job_id, T0 + 90]])
    )
    assert refused == {"accepted": []}
    await ticks(Parts(world), T0 + 90, T0 + 120)
    assert fired_slots(world) == [T0 + 10, T0 + 20, T0 + 30]


async def kill_then_restart(world: World, job_policy: dict[str, Any]) -> tuple[int, Parts]:
    """Fire slot +10, then no tick until +80.5 (the node was down), then a
    fresh owned set (the restarted node) ticks once."""
    parts, job_id = await one_job(world, "@every 10s", **job_policy)
    await parts.tick(T0 + 10.2)
    restarted = Parts(world)
    await restarted.tick(T0 + 80.5)
    return job_id, restarted


@run_async
async def test_catchup_all_fires_each_missed_slot_within_the_window_once_in_order(
    world: World,
) -> None:
    job_id, restarted = await kill_then_restart(
        world, {"catchup": "all", "catchup_window_seconds": 35.0}
    )
    assert fired_slots(world) == [T0 + 10, T0 + 50, T0 + 60, T0 + 70, T0 + 80]
    missed = [slot for _, slot, _ in world.executions("missed")]
    assert missed == [T0 + 20, T0 + 30, T0 + 40]
    await ticks(restarted, T0 + 81, T0 + 92)
    assert fired_slots(world) == [T0 + 10, T0 + 50, T0 + 60, T0 + 70, T0 + 80, T0 + 90]
    rows = world.queries.db.execute(
        "SELECT slot, COUNT(*) FROM executions WHERE job_id = ? GROUP BY slot", (job_id,)
    ).fetchall()
    assert all(count == 1 for _, count in rows)
    # Each caught-up run names the run before it as its last execution.
    previous = [fire_item(f)["last_execution_date"] for f in world.executor.submitted]
    assert previous == [None, *(iso(slot) for slot in fired_slots(world)[:-1])]


def triggers(world: World, job_id: int) -> list[tuple[int, str | None]]:
    """(slot, stored trigger) of the job's fired executions, by slot."""
    rows = world.queries.db.execute(
        "SELECT slot, trigger FROM executions WHERE job_id = ? AND state != 'missed' ORDER BY slot",
        (job_id,),
    ).fetchall()
    return [(slot, trigger) for slot, trigger in rows]


@run_async
async def test_catchup_all_marks_the_backlog_catchup_and_the_newest_due_slot_schedule(
    world: World,
) -> None:
    job_id, restarted = await kill_then_restart(
        world, {"catchup": "all", "catchup_window_seconds": 35.0}
    )
    [first, backlog] = world.commands(c.SlotsFired)
    assert first.caught_up == []
    assert backlog.caught_up == [[job_id, T0 + 50], [job_id, T0 + 60], [job_id, T0 + 70]]
    await ticks(restarted, T0 + 81, T0 + 92)
    assert triggers(world, job_id) == [
        (T0 + 10, None),
        (T0 + 50, "catchup"),
        (T0 + 60, "catchup"),
        (T0 + 70, "catchup"),
        (T0 + 80, None),  # the slot the job was at: fired as its schedule would
        (T0 + 90, None),
    ]
    page = world.queries.executions(job_id=job_id, trigger="catchup")
    assert [views.execution_out(row)["execution_id"] for row in page.rows] == [
        f"{job_id}-{T0 + n}" for n in (70, 60, 50)
    ]


@run_async
async def test_a_backlog_split_over_ticks_marks_every_slot_before_the_newest_due(
    world: World,
) -> None:
    parts, job_id = await one_job(world, "@every 10s", catchup="all", catchup_window_seconds=600.0)
    world.executor.capacity = 3
    await parts.tick(T0 + 60.5)  # six slots due, three fire
    await parts.tick(T0 + 60.6)
    assert triggers(world, job_id) == [
        *((T0 + n, "catchup") for n in (10, 20, 30, 40, 50)),
        (T0 + 60, None),
    ]


@run_async
async def test_catchup_latest_fires_only_the_latest_missed_slot(world: World) -> None:
    job_id, _ = await kill_then_restart(world, {"catchup_window_seconds": 35.0})
    assert fired_slots(world) == [T0 + 10, T0 + 80]
    assert all(cmd.caught_up == [] for cmd in world.commands(c.SlotsFired))
    assert triggers(world, job_id) == [(T0 + 10, None), (T0 + 80, None)]
    missed = [slot for _, slot, _ in world.executions("missed")]
    assert missed == [T0 + 20, T0 + 30, T0 + 40, T0 + 50, T0 + 60, T0 + 70]


@run_async
async def test_catchup_none_records_every_missed_slot_and_fires_the_next_one(
    world: World,
) -> None:
    _, restarted = await kill_then_restart(world, {"catchup": "none"})
    assert fired_slots(world) == [T0 + 10]
    missed = [slot for _, slot, _ in world.executions("missed")]
    assert missed == [T0 + 20, T0 + 30, T0 + 40, T0 + 50, T0 + 60, T0 + 70, T0 + 80]
    await ticks(restarted, T0 + 81, T0 + 91)
    assert fired_slots(world) == [T0 + 10, T0 + 90]


async def jittered_sends(world: World) -> list[tuple[str, float]]:
    """(execution id, clock when submitted) of a jittered job over 60 s."""
    parts, _ = await one_job(world, "@every 10s", jitter_seconds=9)
    sends: list[tuple[str, float]] = []
    at = T0 + 0.25
    while at <= T0 + 60:
        before = len(world.executor.submitted)
        await parts.tick(at)
        sends += [(f.execution_id, at) for f in world.executor.submitted[before:]]
        at += 0.25
    return sends


@run_async
async def test_jitter_sends_each_slot_at_its_offset_the_same_on_two_nodes(
    tmp_path: Path,
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    worlds = [World(tmp_path / name) for name in ("a", "b")]
    try:
        first, second = [await jittered_sends(world) for world in worlds]
    finally:
        for world in worlds:
            world.close()
    job_id = 1
    expected = [
        (f"{job_id}-{slot}", math.ceil((slot + jitter_offset(job_id, slot, 9)) * 4) / 4)
        for slot in range(T0 + 10, T0 + 51, 10)
    ]
    offsets = {jitter_offset(job_id, slot, 9) for slot in range(T0 + 10, T0 + 51, 10)}
    assert len(offsets) > 1  # not one fixed delay
    assert first[: len(expected)] == expected
    assert second == first


@run_async
async def test_catchup_all_takes_no_more_than_the_executor_has_room_for(world: World) -> None:
    parts, _ = await one_job(world, "@every 10s", catchup="all", catchup_window_seconds=600.0)
    world.executor.capacity = 3
    await parts.tick(T0 + 60.5)  # six slots due
    assert fired_slots(world) == [T0 + 10, T0 + 20, T0 + 30]
    await parts.tick(T0 + 60.6)
    assert fired_slots(world) == [T0 + 10, T0 + 20, T0 + 30, T0 + 40, T0 + 50, T0 + 60]
    assert world.executions("missed") == []


async def sent_by_node_2(world: World, overlap: str) -> int:
    """A job with ``overlap`` whose slot +10 node 2 fired (no result yet)
    before its bucket moved to node 1 (this world's node)."""
    await world.project()
    (job_id,) = await world.jobs("@every 10s", policy={"overlap": overlap})
    await world.assign_all(2)
    accepted = await world.propose(
        c.SlotsFired(now=T0 + 10, node_id=2, epoch=1, fires=[[job_id, T0 + 10]])
    )
    assert accepted == {"accepted": [[job_id, T0 + 10]]}
    await world.assign_all(1)
    return job_id


@run_async
async def test_overlap_skip_waits_for_a_run_the_previous_owner_still_sends(world: World) -> None:
    job_id = await sent_by_node_2(world, "skip")
    parts = Parts(world)
    await parts.tick(T0 + 20.2)
    assert fired_slots(world) == []  # node 2's run of +10 is still in flight
    assert (job_id, T0 + 20, "skipped") in world.executions()
    (error,) = world.queries.db.execute(
        "SELECT error FROM executions WHERE job_id = ? AND slot = ?", (job_id, T0 + 20)
    ).fetchone()
    assert (
        error
        == f"overlap skip: {job_id}-{T0 + 10} is still in flight from the job's previous sender"
    )
    # node 2 records its result: the next slot fires, and the job is not read again
    await world.propose(
        c.ResultsRecorded(
            now=T0 + 25, node_id=2, groups=[[T0 + 10, "success", 200, 1, 5, None, [job_id]]]
        )
    )
    await parts.tick(T0 + 30.2)
    assert fired_slots(world) == [T0 + 30]
    assert not parts.owned.jobs[job_id].check_senders


@run_async
async def test_overlap_skip_waits_for_a_lost_run_adoption_will_send_again(world: World) -> None:
    job_id = await sent_by_node_2(world, "skip")
    await world.propose(c.ExecutionsLost(now=T0 + 12, executions=[[job_id, T0 + 10]]))
    parts = Parts(world)
    await parts.tick(T0 + 20.2)
    assert fired_slots(world) == []  # +10 is lost within the grace: it is sent again first
    assert (job_id, T0 + 20, "skipped") in world.executions()
    # past the grace no adoption sends it: the job fires again
    await parts.tick(T0 + 80.2)
    assert fired_slots(world) == [T0 + 80]


@run_async
async def test_overlap_buffer_one_skips_while_the_previous_owners_run_is_in_flight(
    world: World,
) -> None:
    job_id = await sent_by_node_2(world, "buffer_one")
    parts = Parts(world)
    await parts.tick(T0 + 20.2)
    # this node cannot hold +20 until node 2's run ends: it is skipped, not sent beside it
    assert fired_slots(world) == []
    assert (job_id, T0 + 20, "skipped") in world.executions()
    await world.propose(
        c.ResultsRecorded(
            now=T0 + 25, node_id=2, groups=[[T0 + 10, "failed", 500, 1, 5, "HTTP 500", [job_id]]]
        )
    )
    await parts.tick(T0 + 30.2)
    assert fired_slots(world) == [T0 + 30]
