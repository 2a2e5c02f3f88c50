"""Runs decided ahead of their slot (``fire_ahead``) and sent at it.

A job without policies is proposed up to ``fire_ahead`` seconds before its
slot; the dispatcher holds the accepted fire and hands it to the executor
when the slot comes. A job paused or deleted meanwhile is not called, and its
run is recorded ``skipped``; one edited meanwhile is called as it is now.
"""

from __future__ import annotations

import pytest

from scheduler0.daemon.api.jobs import first_run
from scheduler0.daemon.scheduling.scheduler import Scheduler
from scheduler0.daemon.state import commands as c
from tests.unit.harness import (
    T0,
    RecordingExecutor,
    World,
    fire_item,
    run_async,
    settle,
    tick,
)
from tests.unit.harness import scheduler as make_scheduler

pytestmark = pytest.mark.unit

AHEAD = 2.0


def scheduler(world: World, executor: RecordingExecutor | None = None) -> Scheduler:
    return make_scheduler(world, executor, fire_ahead=AHEAD)


def counters(world: World, job_id: int) -> tuple[int, int, int, str | None]:
    row = world.queries.db.execute(
        "SELECT fired_count, success_count, failed_count, last_state FROM jobs WHERE id = ?",
        (job_id,),
    ).fetchone()
    return (row[0], row[1], row[2], row[3])


@run_async
async def test_a_run_is_decided_ahead_and_sent_at_its_slot_not_before(world: World) -> None:
    await world.project()
    a, b = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 7.9)  # more than AHEAD before the slot: nothing
    assert world.commands(c.SlotsFired) == []
    await tick(s, world, T0 + 8.1)
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == [[a, T0 + 10], [b, T0 + 10]]
    assert world.executions() == [(a, T0 + 10, "dispatched"), (b, T0 + 10, "dispatched")]
    assert world.executor.sent_pairs() == []
    await tick(s, world, T0 + 9.95)
    assert world.executor.sent_pairs() == []
    assert len(world.commands(c.SlotsFired)) == 1  # held, not proposed again
    await tick(s, world, T0 + 10.02)
    assert world.executor.sent_pairs() == [(a, T0 + 10), (b, T0 + 10)]
    assert s.lag_p99() == pytest.approx(0.02)
    item = fire_item(world.executor.submitted[0])
    assert item["execution_id"] == f"{a}-{T0 + 10}" and item["data"] == {"n": 0}
    # the next slot is decided ahead again, the results of the first recorded
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 18.5)
    assert world.executions("success") == [(a, T0 + 10, "success"), (b, T0 + 10, "success")]
    assert world.commands(c.SlotsFired)[1].fires == [[a, T0 + 20], [b, T0 + 20]]
    assert world.executor.sent_pairs() == [(a, T0 + 10), (b, T0 + 10)]


@run_async
async def test_a_job_paused_while_its_run_is_held_is_not_called_and_the_run_is_skipped(
    world: World,
) -> None:
    await world.project()
    a, b = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 8.5)
    await world.propose(c.JobPaused(now=T0 + 9, job_id=b, paused=True))
    await tick(s, world, T0 + 10.05)
    assert world.executor.sent_pairs() == [(a, T0 + 10)]
    await tick(s, world, T0 + 10.15)
    (recorded,) = world.commands(c.ResultsRecorded)
    assert recorded.groups == [[T0 + 10, "skipped", None, 0, 0, "job paused before its slot", [b]]]
    assert world.executions() == [(a, T0 + 10, "dispatched"), (b, T0 + 10, "skipped")]
    assert counters(world, b) == (1, 0, 0, "skipped")  # neither a success nor a failure
    await tick(s, world, T0 + 30.05)
    assert (b, T0 + 20) not in world.executor.sent_pairs()
    assert (b, T0 + 30) not in world.executor.sent_pairs()


@run_async
async def test_a_job_deleted_while_its_run_is_held_is_not_called(world: World) -> None:
    await world.project()
    a, b = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 8.5)
    await world.propose(c.JobDeleted(now=T0 + 9, job_id=a))
    await tick(s, world, T0 + 10.05)
    assert world.executor.sent_pairs() == [(b, T0 + 10)]
    await tick(s, world, T0 + 10.15)
    (recorded,) = world.commands(c.ResultsRecorded)
    assert recorded.groups == [[T0 + 10, "skipped", None, 0, 0, "job deleted before its slot", [a]]]


@run_async
async def test_a_job_edited_while_its_run_is_held_is_called_as_it_is_now(world: World) -> None:
    await world.project()
    (a,) = await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 8.5)
    await world.propose(
        c.JobUpdated(
            now=T0 + 9,
            job_id=a,
            changes={"callback_url": "http://other.invalid/cb", "data": '{"n": 7}'},
        )
    )
    await tick(s, world, T0 + 10.05)
    (fire,) = world.executor.submitted
    assert (fire.job_id, fire.slot, fire.callback_url) == (a, T0 + 10, "http://other.invalid/cb")
    item = fire_item(fire)
    assert item["data"] == {"n": 7} and item["execution_id"] == f"{a}-{T0 + 10}"
    assert item["last_execution_date"] is None


@run_async
async def test_a_job_with_policies_is_decided_when_due_not_ahead(world: World) -> None:
    await world.project()
    (plain,) = await world.jobs("@every 10s")
    (bounded,) = await world.jobs("@every 10s", policy={"overlap": "skip"})
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 8.5)
    assert [cmd.fires for cmd in world.commands(c.SlotsFired)] == [[[plain, T0 + 10]]]
    await tick(s, world, T0 + 9.5)  # not yet due: not proposed
    assert len(world.commands(c.SlotsFired)) == 1
    await tick(s, world, T0 + 10.05)
    assert [cmd.fires for cmd in world.commands(c.SlotsFired)][1] == [[bounded, T0 + 10]]
    assert sorted(world.executor.sent_pairs()) == [(plain, T0 + 10), (bounded, T0 + 10)]


@run_async
async def test_held_runs_count_against_the_executors_room(world: World) -> None:
    await world.project()
    ids = await world.jobs(*["@every 10s"] * 5)
    await world.assign_all()
    executor = RecordingExecutor(capacity=3)
    s = scheduler(world, executor)
    await tick(s, world, T0 + 8.5)
    await tick(s, world, T0 + 8.6)  # the executor is empty, but 3 runs are held
    assert [len(cmd.fires) for cmd in world.commands(c.SlotsFired)] == [3]
    await tick(s, world, T0 + 10.05)  # the 3 held go; the other 2 are due now and go too
    assert executor.sent_pairs() == [(job_id, T0 + 10) for job_id in ids]
    assert [len(cmd.fires) for cmd in world.commands(c.SlotsFired)] == [3, 2]


@run_async
async def test_runs_held_at_a_crash_are_declared_lost_on_restart_and_sent_once_at_their_slot(
    world: World,
) -> None:
    """A node killed while holding runs: the restarted scheduler fires
    nothing until its ``NodeRunsLost`` is decided, then adopts them and
    sends each once, at its slot."""
    await world.project()
    a, b = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    before = scheduler(world)
    await tick(before, world, T0 + 8.5)  # decided ahead, held: then the process dies
    world.listeners.clear()
    assert world.executions() == [(a, T0 + 10, "dispatched"), (b, T0 + 10, "dispatched")]
    world.log.cut_off()  # the restart finds no quorum at first
    after = scheduler(world)
    world.clock.now = T0 + 9
    after.tick_once()  # the declaration is proposed, and nothing is fired meanwhile
    await tick(after, world, T0 + 9.1)
    assert len(world.commands(c.NodeRunsLost)) == 1  # the first scheduler's start only
    assert world.executions("lost") == []
    world.log.cut_off(False)
    await tick(after, world, T0 + 9.2)  # proposed again, decided
    lost = world.commands(c.NodeRunsLost)[-1]
    assert (lost.now, lost.keep) == (T0 + 9.2, [])
    assert world.executions("lost") == [(a, T0 + 10, "lost"), (b, T0 + 10, "lost")]
    await tick(after, world, T0 + 9.8)  # adopted: held until the slot
    assert world.executor.sent_pairs() == []
    await tick(after, world, T0 + 10.05)
    assert sorted(world.executor.sent_pairs()) == [(a, T0 + 10), (b, T0 + 10)]
    await tick(after, world, T0 + 18.5)
    assert sorted(world.executor.sent_pairs()) == [(a, T0 + 10), (b, T0 + 10)]
    assert world.commands(c.SlotsFired)[-1].fires == [[a, T0 + 20], [b, T0 + 20]]


@run_async
async def test_a_job_rescheduled_while_its_run_is_held_keeps_that_run_then_follows_its_new_grid(
    world: World,
) -> None:
    """The run's slot was decided before the update: it is sent at it, and the
    job's next run is the first of the new grid after it (the update takes
    effect from the next slot not yet decided), as the API computes it."""
    await world.project()
    (job,) = await world.jobs("*/10 * * * * *")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 8.5)
    last_fired, fired = world.queries.db.execute(
        "SELECT last_fired_slot, fired_count FROM jobs WHERE id = ?", (job,)
    ).fetchone()
    assert last_fired == T0 + 10
    start, spec = T0 + 8, "1-59/2 * * * * *"  # odd seconds
    next_run = first_run(spec, "UTC", start, start, last_fired, None, fired)
    assert next_run == T0 + 11
    await world.propose(
        c.JobUpdated(
            now=T0 + 8.5,
            job_id=job,
            changes={"spec": spec, "anchor": start, "not_before": start, "next_run": next_run},
        )
    )
    for at in (T0 + 9.05, T0 + 10.05, T0 + 11.05, T0 + 13.05):
        await tick(s, world, at)
    assert world.executor.sent_pairs() == [(job, T0 + 10), (job, T0 + 11), (job, T0 + 13)]
    assert world.commands(c.ResultsRecorded) == []  # nothing skipped


@run_async
async def test_a_held_run_of_a_parked_job_is_sent_if_its_destination_has_room_by_its_slot(
    world: World,
) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    url = "http://receiver.invalid/cb"
    world.executor.full.add(url)
    await tick(s, world, T0 + 8.5)
    await tick(s, world, T0 + 10.05)  # submitted at its slot, refused: parked
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 18.5)  # decided while its destination is full
    world.executor.full.clear()
    await tick(s, world, T0 + 20.05)
    assert world.executor.refused == []
    assert world.executor.sent_pairs() == [(job, T0 + 10), (job, T0 + 20)]


@run_async
async def test_a_held_run_of_a_job_given_an_overlap_policy_is_sent_at_its_slot_once(
    world: World,
) -> None:
    """An overlap policy added while the run's proposal is in flight: the run
    is held to its slot, and does not wait there for itself."""
    await world.project()
    (a,) = await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    world.clock.now = T0 + 8.5
    s.tick_once()  # proposed ahead; its outcome comes after the update
    await world.propose(
        c.JobUpdated(now=T0 + 8.5, job_id=a, changes={"policy": {"overlap": "skip"}})
    )
    await settle()  # dispatched (and held) before the next refresh sees the update
    await tick(s, world, T0 + 9.5)
    assert world.executor.sent_pairs() == []  # not before its slot
    await tick(s, world, T0 + 10.05)
    assert world.executor.sent_pairs() == [(a, T0 + 10)]
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 15)
    await tick(s, world, T0 + 20.05)
    assert world.executor.sent_pairs() == [(a, T0 + 10), (a, T0 + 20)]
    assert world.executions("skipped") == []


@run_async
async def test_a_held_run_of_a_parked_job_is_recorded_refused_at_its_slot_not_before(
    world: World,
) -> None:
    """A job whose destination's backlog is full is parked; its next run,
    decided ahead, is refused when its slot comes, as it would be if decided
    then."""
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    world.executor.full.add("http://receiver.invalid/cb")
    await tick(s, world, T0 + 8.5)
    await tick(s, world, T0 + 10.05)  # submitted at its slot, refused: parked
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 18.5)
    assert world.commands(c.SlotsFired)[-1].fires == [[job, T0 + 20]]
    assert world.executor.refused == []
    await tick(s, world, T0 + 20.05)
    assert [(f.job_id, f.slot) for f in world.executor.refused] == [(job, T0 + 20)]


@run_async
async def test_a_due_job_with_policies_goes_before_runs_decided_ahead_when_room_is_short(
    world: World,
) -> None:
    """Jobs are popped earliest due first: runs that could be decided ahead
    do not take the executor's last room from a job due now."""
    await world.project()
    early, _ = await world.jobs("@every 10s", "@every 10s", anchor=T0 + 2)  # due T0 + 12
    (bounded,) = await world.jobs("@every 10s", policy={"catchup": "all"})  # due T0 + 10
    await world.assign_all()
    executor = RecordingExecutor(capacity=2)
    s = scheduler(world, executor)
    await tick(s, world, T0 + 10.05)
    assert world.commands(c.SlotsFired)[0].fires == [[bounded, T0 + 10], [early, T0 + 12]]
    assert executor.sent_pairs() == [(bounded, T0 + 10)]
    await tick(s, world, T0 + 12.05)
    assert (early, T0 + 12) in executor.sent_pairs()
