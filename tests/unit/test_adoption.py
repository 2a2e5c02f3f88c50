"""Executions without a sender: declared lost after a restart, adopted within the grace."""

from __future__ import annotations

import pytest

from scheduler0.daemon.scheduling.adoption import (
    ADOPT_EVERY,
    BACKFILL_PER_ROUND,
    Adoption,
    backfill_budget,
)
from scheduler0.daemon.scheduling.dispatch import Dispatcher
from scheduler0.daemon.scheduling.owned import OwnedJobs
from scheduler0.daemon.scheduling.proposals import Proposer
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.schema import manual_slot
from scheduler0.daemon.timefmt import iso
from tests.unit.harness import (
    T0,
    World,
    fire_item,
    owners_splitting,
    run_async,
    settle,
    until,
)

pytestmark = pytest.mark.unit

GRACE = 60.0
NOW = T0 + 1_000


class Parts:
    def __init__(self, world: World, sent: set[tuple[int, int]] | None = None) -> None:
        self.stats = SchedulerStats()
        self.sent = sent if sent is not None else set()
        self.owned = OwnedJobs(
            node_id=1, machine=world.machine, queries=world.queries, clock=world.clock
        )
        world.listeners.append(self.owned.on_change)
        self.owned.refresh()
        self.adoption = Adoption(
            node_id=1,
            queries=world.queries,
            owned=self.owned,
            proposer=Proposer(world.log),
            dispatcher=Dispatcher(
                queries=world.queries,
                executor=world.executor,
                payloads=self.owned.payloads,
                sent=self.sent,
            ),
            sent=self.sent,
            executor=world.executor,
            stats=self.stats,
            misfire_grace=GRACE,
            clock=world.clock,
        )


async def fired(world: World, node: int, *pairs: tuple[int, int]) -> None:
    await world.propose(
        c.SlotsFired(now=T0, node_id=node, epoch=1, fires=[[j, s] for j, s in pairs])
    )


@run_async
async def test_a_restart_declares_its_own_unsent_dispatched_executions_lost(world: World) -> None:
    await world.project()
    a, b, done, theirs, late = await world.jobs(*["@every 10s"] * 5)
    slot = T0 + 10
    await world.assign(owners_splitting({theirs: 2}))
    await fired(world, 1, (a, slot), (b, slot), (done, slot))
    await fired(world, 2, (theirs, slot))
    await world.propose(
        c.ResultsRecorded(now=T0, node_id=1, groups=[[slot, "success", 200, 1, 5, None, [done]]])
    )
    parts = Parts(world, sent={(b, slot)})  # b: sent by this scheduler, result not in yet
    world.clock.now = NOW
    parts.adoption.declare_own_lost()
    assert parts.adoption.must_declare
    # A fire of this node's proposed before its crash, committed after the restart:
    # in the log before the declaration, so declared with it.
    await fired(world, 1, (late, slot))
    parts.adoption.declare(firing=False)
    await settle()
    (lost,) = world.commands(c.NodeRunsLost)
    assert (lost.now, lost.node_id, lost.keep) == (NOW, 1, [[b, slot]])
    assert world.executions() == [
        (a, slot, "lost"),
        (b, slot, "dispatched"),
        (done, slot, "success"),
        (theirs, slot, "dispatched"),
        (late, slot, "lost"),
    ]
    assert parts.stats.lost == 2 and not parts.adoption.must_declare
    parts.adoption.declare(firing=False)  # decided: nothing more to declare
    await settle()
    assert len(world.commands(c.NodeRunsLost)) == 1


@run_async
async def test_the_declaration_waits_for_fires_in_flight_and_is_proposed_again_until_decided(
    world: World,
) -> None:
    await world.project()
    (a,) = await world.jobs("@every 10s")
    await world.assign_all()
    await fired(world, 1, (a, T0 + 10))
    parts = Parts(world)
    world.clock.now = NOW
    parts.adoption.declare_own_lost()
    parts.adoption.declare(firing=True)  # a SlotsFired of its own is in flight
    await settle()
    assert world.commands(c.NodeRunsLost) == []
    world.log.cut_off()  # no quorum: the declaration is not decided
    parts.adoption.declare(firing=False)
    await settle()
    assert parts.adoption.must_declare and world.executions("lost") == []
    world.log.cut_off(False)
    parts.adoption.declare(firing=False)
    await settle()
    assert not parts.adoption.must_declare
    assert world.executions() == [(a, T0 + 10, "lost")]


@run_async
async def test_a_reload_while_a_declaration_is_in_flight_is_declared_again(world: World) -> None:
    """Fires decided after a declaration was proposed, whose outcome a reload
    gave up on, are declared by the next one: the first one's answer does
    not stand for the reload after it."""
    await world.project()
    (a,) = await world.jobs("@every 10s")
    await world.assign_all()
    answer = world.log.hold_answers(c.NodeRunsLost)
    parts = Parts(world)
    world.clock.now = NOW
    parts.adoption.declare_own_lost()
    parts.adoption.declare(firing=False)
    await until(lambda: len(world.commands(c.NodeRunsLost)) == 1)
    (first,) = world.commands(c.NodeRunsLost)
    assert first.keep == [] and world.executions() == []
    await fired(world, 1, (a, T0 + 10))  # after it in the log; its answer was lost
    parts.adoption.declare_own_lost()  # the reload that gave up on it
    answer.set()
    await settle()
    assert parts.adoption.must_declare
    parts.adoption.declare(firing=False)
    await settle()
    assert len(world.commands(c.NodeRunsLost)) == 2
    assert not parts.adoption.must_declare
    assert world.executions() == [(a, T0 + 10, "lost")]


@run_async
async def test_lost_and_pending_executions_within_the_grace_are_adopted(world: World) -> None:
    await world.project()
    recent, old, triggered, theirs = await world.jobs(*["@every 10s"] * 4)
    await world.assign(owners_splitting({theirs: 2}))
    recent_slot, old_slot = NOW - 10, NOW - int(GRACE) - 1
    await fired(world, 1, (recent, recent_slot), (old, old_slot))
    await fired(world, 2, (theirs, recent_slot))
    await world.propose(
        c.ExecutionsLost(
            now=T0, executions=[[recent, recent_slot], [old, old_slot], [theirs, recent_slot]]
        )
    )
    await world.propose(c.JobTriggered(now=NOW - 1, job_id=triggered, slot=NOW - 1))
    parts = Parts(world)
    world.clock.now = NOW
    parts.adoption.adopt()
    await settle()
    (adopted,) = world.commands(c.ExecutionsRedispatched)
    assert (adopted.now, adopted.node_id) == (NOW, 1)
    assert adopted.executions == [[recent, recent_slot], [triggered, NOW - 1]]
    assert world.executor.sent_pairs() == [(recent, recent_slot), (triggered, NOW - 1)]
    assert [f.execution_id for f in world.executor.submitted] == [
        f"{recent}-{recent_slot}",
        f"{triggered}-{NOW - 1}",
    ]
    assert isinstance(world.executor.submitted[0].payload, tuple)  # the job's head, its tail
    assert fire_item(world.executor.submitted[0])["last_execution_date"] is None
    assert parts.sent == {(recent, recent_slot), (triggered, NOW - 1)}
    assert parts.stats.redispatched == 2
    assert world.executions() == [
        (recent, recent_slot, "dispatched"),
        (old, old_slot, "lost"),  # too old: stays lost
        (triggered, NOW - 1, "dispatched"),
        (theirs, recent_slot, "lost"),  # not this node's bucket
    ]


@run_async
async def test_adoption_looks_every_half_second_and_sends_each_once(world: World) -> None:
    await world.project()
    first, second = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    parts = Parts(world)
    world.clock.now = NOW
    await world.propose(c.JobTriggered(now=NOW, job_id=first, slot=NOW))
    parts.adoption.adopt()
    await settle()
    await world.propose(c.JobTriggered(now=NOW, job_id=second, slot=NOW))
    world.clock.now = NOW + ADOPT_EVERY - 0.01
    parts.adoption.adopt()  # too soon: not even a look
    await settle()
    assert len(world.commands(c.ExecutionsRedispatched)) == 1
    world.clock.now = NOW + ADOPT_EVERY
    parts.adoption.adopt()
    await settle()
    assert [cmd.executions for cmd in world.commands(c.ExecutionsRedispatched)] == [
        [[first, NOW]],
        [[second, NOW]],  # the first is dispatched now, not asked for again
    ]
    assert world.executor.sent_pairs() == [(first, NOW), (second, NOW)]


@run_async
async def test_an_execution_adopted_elsewhere_first_is_not_sent(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    await world.propose(c.JobTriggered(now=NOW, job_id=job, slot=NOW))
    parts = Parts(world)
    world.clock.now = NOW
    parts.adoption.adopt()  # proposed ...
    await world.propose(  # ... but another redispatch of it is applied first
        c.ExecutionsRedispatched(now=NOW, node_id=1, executions=[[job, NOW]])
    )
    await settle()
    assert world.executor.submitted == []
    assert parts.stats.redispatched == 0


@run_async
async def test_a_node_without_buckets_adopts_nothing_and_looks_once_it_has_some(
    world: World,
) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all(node_id=2)
    await world.propose(c.JobTriggered(now=NOW, job_id=job, slot=NOW))
    parts = Parts(world)
    world.clock.now = NOW
    parts.adoption.adopt()
    await settle()
    assert world.commands(c.ExecutionsRedispatched) == []
    await world.assign_all()
    parts.owned.refresh()
    world.clock.now = NOW + 0.1  # no look was spent without buckets: adopt at once
    parts.adoption.adopt()
    await settle()
    assert [cmd.executions for cmd in world.commands(c.ExecutionsRedispatched)] == [[[job, NOW]]]


@run_async
async def test_a_manual_run_is_adopted_and_sent_with_its_own_id_and_second(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    parts = Parts(world)
    await world.propose(c.JobTriggered(now=NOW + 0.4, job_id=job, slot=NOW, manual=True))
    await world.propose(c.JobTriggered(now=NOW + 0.6, job_id=job, slot=NOW, manual=True))
    world.clock.now = NOW + 1
    parts.adoption.adopt()
    await settle()
    keys = [manual_slot(NOW, 0), manual_slot(NOW, 1)]
    assert world.executor.sent_pairs() == [(job, key) for key in keys]
    assert [f.execution_id for f in world.executor.submitted] == [
        f"{job}-{NOW}-m0",
        f"{job}-{NOW}-m1",
    ]
    item = fire_item(world.executor.submitted[0])
    assert (item["execution_id"], item["scheduled_at"]) == (f"{job}-{NOW}-m0", iso(NOW))
    # Past the grace window (by the second in its key) a manual run is not adopted.
    await world.propose(c.JobTriggered(now=NOW + 2, job_id=job, slot=NOW + 2, manual=True))
    world.clock.now = NOW + 2 + GRACE + 1
    parts.adoption.adopt()
    await settle()
    assert len(world.executor.submitted) == 2


async def backfilled(world: World, job: int, count: int) -> list[int]:
    """A backfill of ``count`` slots of ``job`` long before the grace window
    (every 10 s before its start at ``T0``), oldest first."""
    slots = [T0 - 10 * k for k in range(count, 0, -1)]
    await world.propose(c.JobBackfilled(now=NOW, job_id=job, slots=slots))
    return slots


async def adopt_round(world: World, parts: Parts) -> None:
    world.clock.now += ADOPT_EVERY
    parts.adoption.adopt()
    await settle()


def test_a_round_of_backfill_takes_half_the_free_capacity_up_to_its_cap() -> None:
    assert backfill_budget(10_000) == BACKFILL_PER_ROUND
    assert backfill_budget(2 * BACKFILL_PER_ROUND) == BACKFILL_PER_ROUND
    assert backfill_budget(40) == 20
    assert backfill_budget(1) == 0  # a (nearly) full executor: the room is the live fires'
    assert backfill_budget(0) == 0


@run_async
async def test_backfill_is_sent_whatever_its_age_at_a_bounded_pace_oldest_first(
    world: World,
) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    count = 2 * BACKFILL_PER_ROUND + 50
    slots = await backfilled(world, job, count)
    parts = Parts(world)
    world.clock.now = NOW
    sent_per_round = []
    for _ in range(4):
        before = len(world.executor.submitted)
        await adopt_round(world, parts)
        sent_per_round.append(len(world.executor.submitted) - before)
    assert sent_per_round == [BACKFILL_PER_ROUND, BACKFILL_PER_ROUND, 50, 0]
    assert world.executor.sent_pairs() == [(job, slot) for slot in slots]  # each once, in order
    assert world.executor.submitted[0].execution_id == f"{job}-{slots[0]}"
    assert world.executions() == [(job, slot, "dispatched") for slot in slots]


@run_async
async def test_backfill_waits_while_the_executor_is_full_and_for_a_paused_job(
    world: World,
) -> None:
    await world.project()
    running, paused = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    await backfilled(world, running, 30)
    await backfilled(world, paused, 5)
    await world.propose(c.JobPaused(now=NOW, job_id=paused, paused=True))
    parts = Parts(world)
    world.clock.now = NOW
    world.executor.capacity = 1
    await adopt_round(world, parts)
    assert world.executor.submitted == []
    assert world.commands(c.ExecutionsRedispatched) == []
    world.executor.capacity = 20
    await adopt_round(world, parts)
    assert len(world.executor.submitted) == 10  # half the room
    world.executor.capacity = 10_000
    await adopt_round(world, parts)
    assert {j for j, _ in world.executor.sent_pairs()} == {running}
    assert len(world.executor.sent_pairs()) == 30


@run_async
async def test_a_lost_backfill_execution_is_adopted_again_whatever_its_age(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    (slot,) = await backfilled(world, job, 1)
    parts = Parts(world)
    world.clock.now = NOW
    await adopt_round(world, parts)
    await world.propose(c.ExecutionsLost(now=NOW, executions=[[job, slot]]))
    assert NOW - slot > GRACE
    await adopt_round(world, parts)
    assert world.executor.sent_pairs() == [(job, slot), (job, slot)]
    assert world.executions() == [(job, slot, "dispatched")]


@run_async
async def test_a_lost_run_of_a_job_paused_since_is_not_sent_but_a_manual_run_is(
    world: World,
) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    await fired(world, 1, (job, NOW - 10))
    await world.propose(c.JobTriggered(now=NOW - 1, job_id=job, slot=NOW - 1, manual=True))
    await world.propose(c.ExecutionsLost(now=NOW - 5, executions=[[job, NOW - 10]]))
    await world.propose(c.JobPaused(now=NOW - 2, job_id=job, paused=True, next_run=None))
    parts = Parts(world)
    world.clock.now = NOW
    parts.adoption.adopt()
    await settle()
    manual = manual_slot(NOW - 1, 0)
    assert world.executor.sent_pairs() == [(job, manual)]  # asked for: sent, paused or not
    assert (job, NOW - 10, "lost") in world.executions()  # the pause stopped it: not sent
    await adopt_round(world, parts)
    assert world.executor.sent_pairs() == [(job, manual)]
