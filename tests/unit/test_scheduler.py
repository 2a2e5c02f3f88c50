"""The composed scheduler: its tick order, restart and ambiguity end to end."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler0.daemon.memory_log import InMemoryLog
from scheduler0.daemon.replication import DEFAULT_TIMEOUT
from scheduler0.daemon.state import commands as c
from scheduler0.errors import NotCommitted
from tests.unit.harness import (
    T0,
    RecordingExecutor,
    World,
    owners_splitting,
    run_async,
    scheduler,
    tick,
)

pytestmark = pytest.mark.unit


class AmbiguousLog:
    """Commits the next ``ambiguous`` ``SlotsFired`` but answers ``NotCommitted``,
    as raft does when a command commits after the proposer stopped waiting."""

    def __init__(self, inner: InMemoryLog) -> None:
        self.inner = inner
        self.ambiguous = 0

    @property
    def ready(self) -> bool:
        return self.inner.ready

    async def propose(self, command: c.Command, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        result = await self.inner.propose(command, timeout)
        if isinstance(command, c.SlotsFired) and self.ambiguous:
            self.ambiguous -= 1
            raise NotCommitted("committed, but the proposer was not told")
        return result


def pairs_sent_twice(executor: RecordingExecutor) -> list[tuple[int, int]]:
    pairs = executor.sent_pairs()
    return sorted({p for p in pairs if pairs.count(p) > 1})


@run_async
async def test_a_tick_fires_records_results_and_keeps_stats(world: World) -> None:
    await world.project()
    a, b = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 1)
    assert (s.owned_jobs, s.owned_buckets, s.due_backlog) == (2, 1024, 0)
    world.clock.now = T0 + 10.5
    assert s.due_backlog == 2
    await tick(s, world, T0 + 10.5)
    assert world.executor.sent_pairs() == [(a, T0 + 10), (b, T0 + 10)]
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 11)
    (recorded,) = world.commands(c.ResultsRecorded)
    assert recorded.groups == [[T0 + 10, "success", 200, 1, 5, None, [a, b]]]
    assert world.executions() == [(a, T0 + 10, "success"), (b, T0 + 10, "success")]
    assert (s.stats.fired, s.stats.rejected, s.stats.last_tick_at) == (2, 0, T0 + 11)
    assert s.lag_p99() == pytest.approx(0.5)
    # a bucket move takes a job away
    await world.assign(owners_splitting({b: 2}))
    await tick(s, world, T0 + 20)
    assert (s.owned_jobs, s.owned_buckets) == (1, 1023)
    assert world.executor.sent_pairs()[2:] == [(a, T0 + 20)]


@run_async
async def test_nothing_happens_until_the_log_is_ready(world: World) -> None:
    await world.project()
    await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    world.log.stop()
    await tick(s, world, T0 + 10)
    assert (s.owned_jobs, s.stats.last_tick_at) == (0, 0.0)
    world.log.start()
    await tick(s, world, T0 + 10)
    assert s.owned_jobs == 1 and len(world.executor.submitted) == 1


@run_async
async def test_a_restarted_scheduler_resends_what_it_lost_once(world: World) -> None:
    await world.project()
    done, unsent = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    before = scheduler(world)
    await tick(before, world, T0 + 10)
    world.executor.finish([f for f in world.executor.submitted if f.job_id == done])
    await tick(before, world, T0 + 10.1)  # done's result recorded; then the node dies
    world.listeners.remove(before.on_change)

    after_executor = RecordingExecutor()
    after = scheduler(world, after_executor)
    await tick(after, world, T0 + 12)
    started, lost = world.commands(c.NodeRunsLost)  # each scheduler's start declares
    assert (started.keep, lost.node_id, lost.keep) == ([], 1, [])
    assert world.executions("lost") == [(unsent, T0 + 10, "lost")]
    await tick(after, world, T0 + 12.6)  # the next look adopts it
    (adopted,) = world.commands(c.ExecutionsRedispatched)
    assert adopted.executions == [[unsent, T0 + 10]]
    assert [f.execution_id for f in after_executor.submitted] == [f"{unsent}-{T0 + 10}"]
    await tick(after, world, T0 + 20)
    await tick(after, world, T0 + 21)
    assert after_executor.sent_pairs() == [
        (unsent, T0 + 10),
        (done, T0 + 20),
        (unsent, T0 + 20),
    ]
    assert after.stats.redispatched == 1


@run_async
async def test_a_reset_does_not_declare_lost_what_is_still_being_sent(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 10)
    assert world.executor.sent_pairs() == [(job, T0 + 10)]
    s.on_change("reset", None)  # e.g. a snapshot was loaded: everything is re-read
    await tick(s, world, T0 + 11)
    (declared,) = world.commands(c.NodeRunsLost)[1:]  # the first: the scheduler's start
    assert declared.keep == [[job, T0 + 10]]
    assert world.executions() == [(job, T0 + 10, "dispatched")]


@run_async
async def test_an_ambiguous_fire_that_committed_is_sent_once(world: World) -> None:
    await world.project()
    a, b = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    log = AmbiguousLog(world.log)
    s = scheduler(world, log=log)
    await tick(s, world, T0 + 1)
    log.ambiguous = 1
    await tick(s, world, T0 + 10)
    assert world.executor.submitted == []  # no verdict: nothing sent
    assert world.executions() == [(a, T0 + 10, "dispatched"), (b, T0 + 10, "dispatched")]
    assert s.stats.proposals_failed == 1
    await tick(s, world, T0 + 10.2)  # full reload: the committed fires are declared lost
    assert len(world.commands(c.NodeRunsLost)) == 2  # at the start, and after the reload
    assert world.executions() == [(a, T0 + 10, "lost"), (b, T0 + 10, "lost")]
    await tick(s, world, T0 + 10.8)  # ... and adopted, once
    await tick(s, world, T0 + 11.4)
    await tick(s, world, T0 + 20)
    assert world.executor.sent_pairs() == [
        (a, T0 + 10),
        (b, T0 + 10),
        (a, T0 + 20),
        (b, T0 + 20),
    ]
    assert len(world.commands(c.SlotsFired)) == 2


@run_async
async def test_an_ambiguous_fire_that_did_not_commit_fires_again_once(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 1)
    world.log.cut_off()
    await tick(s, world, T0 + 10)
    world.log.cut_off(False)
    for at in (T0 + 10.2, T0 + 10.8, T0 + 11.4):
        await tick(s, world, at)
    assert world.executions("lost") == []
    assert world.executor.sent_pairs() == [(job, T0 + 10)]
    assert pairs_sent_twice(world.executor) == []


@run_async
async def test_a_full_destination_parks_its_jobs_heads_until_it_has_room(world: World) -> None:
    """Fires for a destination whose backlog is full are recorded refused
    without holding or re-reading the job's payload; with room again, the
    head is read once more and the job's fires are sent."""
    from scheduler0.daemon.scheduling.owned import Parked

    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    s = scheduler(world)
    url = "http://receiver.invalid/cb"
    world.executor.full.add(url)
    await tick(s, world, T0 + 10.5)
    assert world.executor.sent_pairs() == [(job, T0 + 10)]  # submitted, and refused
    parked = s._owned.payloads[job]
    assert isinstance(parked, Parked) and parked.callback_url == url and parked.size > 0
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 20.5)
    assert [(f.job_id, f.slot, f.payload) for f in world.executor.refused] == [(job, T0 + 20, b"")]
    assert world.executor.sent_pairs() == [(job, T0 + 10)]  # nothing more submitted
    world.executor.full.clear()
    await tick(s, world, T0 + 30.5)
    assert world.executor.sent_pairs() == [(job, T0 + 10), (job, T0 + 30)]
    head = s._owned.payloads[job]
    assert not isinstance(head, Parked)
    assert isinstance(world.executor.submitted[-1].payload, tuple)


@run_async
async def test_parked_jobs_come_back_as_their_destination_has_room(world: World) -> None:
    from scheduler0.daemon.scheduling.owned import Parked

    await world.project()
    jobs = await world.jobs("@every 10s", "@every 10s", "@every 10s")
    await world.assign_all()
    s = scheduler(world)
    url = "http://receiver.invalid/cb"
    world.executor.full.add(url)
    await tick(s, world, T0 + 10.5)  # all three refused, and parked
    sizes = [s._owned.payloads[j] for j in jobs]
    assert all(isinstance(p, Parked) for p in sizes)
    world.executor.full.clear()
    head = sizes[0]
    assert isinstance(head, Parked)
    world.executor.room[url] = 2 * head.size + 1  # room for two of them
    await tick(s, world, T0 + 20.5)
    assert sorted(p for p in world.executor.sent_pairs() if p[1] == T0 + 20) == [
        (jobs[0], T0 + 20),
        (jobs[1], T0 + 20),
    ]
    assert [f.job_id for f in world.executor.refused] == [jobs[2]]
