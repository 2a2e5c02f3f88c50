"""Callback outcomes batched into one ``ResultsRecorded`` at a time."""

from __future__ import annotations

import pytest

from scheduler0.daemon.executor.http import Fire
from scheduler0.daemon.scheduling.proposals import Proposer
from scheduler0.daemon.scheduling.results import ResultsBatcher
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.schema import execution_id
from tests.unit.harness import T0, World, run_async, settle

pytestmark = pytest.mark.unit

SLOT = T0 + 10


def fires(*pairs: tuple[int, int]) -> list[Fire]:
    return [
        Fire(execution_id(j, s), j, s, "http://receiver.invalid/cb", "s", b"") for j, s in pairs
    ]


async def dispatched(
    world: World, count: int, stats: SchedulerStats | None = None
) -> tuple[ResultsBatcher, list[int]]:
    """``count`` jobs whose slot SLOT is dispatched (and marked sent), and a
    batcher for their results."""
    await world.project()
    ids = await world.jobs(*["@every 10s"] * count)
    await world.assign_all()
    await world.propose(c.SlotsFired(now=SLOT, node_id=1, epoch=1, fires=[[j, SLOT] for j in ids]))
    batcher = ResultsBatcher(
        node_id=1,
        executor=world.executor,
        proposer=Proposer(world.log),
        stats=stats or SchedulerStats(),
        clock=world.clock,
    )
    batcher.sent.update((j, SLOT) for j in ids)
    return batcher, ids


def groups(world: World) -> list[list[list[object]]]:
    return [cmd.groups for cmd in world.commands(c.ResultsRecorded)]


@run_async
async def test_outcomes_are_grouped_into_one_command(world: World) -> None:
    batcher, ids = await dispatched(world, 5)
    batcher.sent.add((99, SLOT))  # sent by this node, no result yet
    ex = world.executor
    ex.finish(fires(*[(j, SLOT) for j in ids[:2]]))
    ex.finish(fires((ids[2], SLOT)), "failed", 500, attempts=3, latency_ms=7, error="HTTP 500")
    ex.finish(fires((ids[3], SLOT)), latency_ms=9)
    ex.finish(fires((ids[4], SLOT)))
    world.clock.now = SLOT + 1
    batcher.flush()
    assert batcher.in_flight
    await settle()
    assert groups(world) == [
        [
            [SLOT, "success", 200, 1, 5, None, [ids[0], ids[1], ids[4]]],
            [SLOT, "failed", 500, 3, 7, "HTTP 500", [ids[2]]],
            [SLOT, "success", 200, 1, 9, None, [ids[3]]],
        ]
    ]
    assert world.commands(c.ResultsRecorded)[0].now == SLOT + 1
    states = [state for _, _, state in world.executions()]
    assert states == ["success", "success", "failed", "success", "success"]
    assert batcher.sent == {(99, SLOT)}
    assert not batcher.in_flight


@run_async
async def test_one_command_in_flight_at_a_time(world: World) -> None:
    stats = SchedulerStats()
    batcher, ids = await dispatched(world, 3, stats)
    world.executor.finish(fires((ids[0], SLOT)))
    batcher.flush()
    world.executor.finish(fires((ids[1], SLOT), (ids[2], SLOT)), latency_ms=6)
    batcher.flush()  # the first is still in flight: these wait
    assert stats.results_backlog == 2
    await settle()
    assert len(groups(world)) == 1
    batcher.flush()
    await settle()
    assert groups(world)[1] == [[SLOT, "success", 200, 1, 6, None, [ids[1], ids[2]]]]
    batcher.flush()
    await settle()
    assert len(groups(world)) == 2  # nothing left to propose
    assert stats.results_backlog == 0


@run_async
async def test_a_not_committed_batch_is_proposed_again_ahead_of_newer_ones(world: World) -> None:
    batcher, ids = await dispatched(world, 4)
    world.log.cut_off()
    world.executor.finish(fires((ids[0], SLOT), (ids[1], SLOT)))
    world.executor.finish(fires((ids[2], SLOT)), "failed", None, error="timeout")
    batcher.flush()
    await settle()
    assert groups(world) == []  # nothing committed
    assert not batcher.in_flight
    assert batcher.sent == {(j, SLOT) for j in ids}  # still unrecorded
    world.log.cut_off(False)
    world.executor.finish(fires((ids[3], SLOT)), "failed", None, error="timeout")
    batcher.flush()
    await settle()
    assert groups(world) == [
        [
            [SLOT, "success", 200, 1, 5, None, [ids[0], ids[1]]],
            [SLOT, "failed", None, 1, 5, "timeout", [ids[2], ids[3]]],
        ]
    ]
    assert [state for _, _, state in world.executions()] == ["success"] * 2 + ["failed"] * 2
    assert batcher.sent == set()


@run_async
async def test_newer_outcomes_follow_the_retried_ones(world: World) -> None:
    batcher, ids = await dispatched(world, 2)
    world.log.cut_off()
    world.executor.finish(fires((ids[0], SLOT)), latency_ms=1)
    batcher.flush()
    world.executor.finish(fires((ids[1], SLOT)), latency_ms=2)
    batcher.flush()  # held: one in flight
    await settle()  # the first comes back NotCommitted
    world.log.cut_off(False)
    batcher.flush()
    await settle()
    assert groups(world) == [
        [
            [SLOT, "success", 200, 1, 1, None, [ids[0]]],
            [SLOT, "success", 200, 1, 2, None, [ids[1]]],
        ]
    ]
