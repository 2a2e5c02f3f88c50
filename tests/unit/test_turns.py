"""Large creates take turns: at most N at once, one per caller, callers in turn."""

from __future__ import annotations

import asyncio

import pytest

from scheduler0.daemon.api.turns import Turns
from scheduler0.errors import TooManyRequests
from tests.unit.harness import run_async

pytestmark = pytest.mark.unit


class Log:
    """Which key held a turn, in the order the turns were granted."""

    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self.order: list[str] = []
        self.most_at_once = 0
        self.release: dict[str, asyncio.Event] = {}

    async def hold(self, key: str, name: str) -> None:
        async with self.turns.take(key):
            self.order.append(name)
            self.most_at_once = max(self.most_at_once, self.turns.holders)
            event = self.release.setdefault(name, asyncio.Event())
            await event.wait()


async def started(log: Log, *requests: tuple[str, str]) -> list[asyncio.Task[None]]:
    tasks = []
    for key, name in requests:
        tasks.append(asyncio.create_task(log.hold(key, name)))
        await asyncio.sleep(0)  # each arrives after the one before
    await asyncio.sleep(0)
    return tasks


async def finish(log: Log, name: str) -> None:
    log.release.setdefault(name, asyncio.Event()).set()
    for _ in range(3):
        await asyncio.sleep(0)


@run_async
async def test_one_caller_holds_one_turn_and_another_caller_goes_beside_it() -> None:
    log = Log(Turns(at_once=2, waiting_per_key=4))
    tasks = await started(log, ("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"))
    assert log.order == ["a1", "b1"]  # a's second waits; b does not wait behind it
    await finish(log, "a1")
    assert log.order == ["a1", "b1", "a2"]
    for name in ("b1", "a2", "a3"):
        await finish(log, name)
    await asyncio.gather(*tasks)
    assert log.order == ["a1", "b1", "a2", "a3"]
    assert log.most_at_once == 2


@run_async
async def test_waiting_callers_take_turns_in_round_robin() -> None:
    log = Log(Turns(at_once=1, waiting_per_key=4))
    tasks = await started(
        log, ("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("b", "b2"), ("c", "c1")
    )
    for name in ("a1", "a2", "b1", "c1", "a3", "b2"):
        await finish(log, name)
    await asyncio.gather(*tasks)
    # a waited first, so a2 goes first; then b and c before a's third, and so on
    assert log.order == ["a1", "a2", "b1", "c1", "a3", "b2"]
    assert log.most_at_once == 1


@run_async
async def test_a_caller_with_a_full_waiting_room_is_refused_at_once() -> None:
    turns = Turns(at_once=1, waiting_per_key=2)
    log = Log(turns)
    tasks = await started(log, ("a", "a1"), ("a", "a2"), ("a", "a3"))
    assert turns.waiting("a") == 2
    with pytest.raises(TooManyRequests, match="2 large creates of this caller"):
        turns.check("a")
    with pytest.raises(TooManyRequests):
        async with turns.take("a"):
            pass
    turns.check("b")  # another caller is not refused
    for name in ("a1", "a2", "a3"):
        await finish(log, name)
    await asyncio.gather(*tasks)


@run_async
async def test_a_waiter_that_gives_up_leaves_no_turn_taken() -> None:
    turns = Turns(at_once=1, waiting_per_key=4)
    log = Log(turns)
    tasks = await started(log, ("a", "a1"), ("b", "b1"), ("c", "c1"))
    tasks[1].cancel()  # b gives up while waiting
    await asyncio.sleep(0)
    assert turns.waiting("b") == 0
    await finish(log, "a1")
    assert log.order == ["a1", "c1"]
    await finish(log, "c1")
    await asyncio.gather(tasks[0], tasks[2])
    assert turns.holders == 0
    async with turns.take("b"):  # and b may ask again
        assert turns.holders == 1


@run_async
async def test_a_turn_is_passed_on_whatever_ends_the_block() -> None:
    turns = Turns(at_once=1, waiting_per_key=4)
    with pytest.raises(ValueError):
        async with turns.take("a"):
            raise ValueError
    assert turns.holders == 0
    log = Log(turns)
    tasks = await started(log, ("a", "a1"), ("b", "b1"))
    tasks[0].cancel()  # cancelled while holding its turn
    await asyncio.gather(tasks[0], return_exceptions=True)
    for _ in range(3):
        await asyncio.sleep(0)
    assert log.order == ["a1", "b1"]  # b got the turn a gave up
    await finish(log, "b1")
    await tasks[1]
    assert turns.holders == 0


@run_async
async def test_a_waiter_cancelled_as_its_turn_comes_passes_it_on() -> None:
    turns = Turns(at_once=1, waiting_per_key=4)
    log = Log(turns)
    tasks = await started(log, ("a", "a1"), ("b", "b1"), ("c", "c1"))
    log.release.setdefault("a1", asyncio.Event()).set()
    await asyncio.sleep(0)  # a leaves its block and grants b its turn ...
    assert turns.holders == 1 and log.order == ["a1"]
    tasks[1].cancel()  # ... and b is cancelled before it runs
    await asyncio.gather(tasks[1], return_exceptions=True)
    for _ in range(3):
        await asyncio.sleep(0)
    assert log.order == ["a1", "c1"]  # b never ran; its turn went to c
    await finish(log, "c1")
    await asyncio.gather(tasks[0], tasks[2])
    assert turns.holders == 0


@run_async
async def test_a_caller_holds_at_most_its_share_and_callers_take_the_rest_in_turn() -> None:
    log = Log(Turns(at_once=3, waiting_per_key=8, per_key=2, what="requests"))
    tasks = await started(
        log, ("a", "a1"), ("a", "a2"), ("a", "a3"), ("a", "a4"), ("b", "b1"), ("c", "c1")
    )
    assert log.order == ["a1", "a2", "b1"]  # a's third waits at its share; b goes beside
    await finish(log, "b1")
    assert log.order == ["a1", "a2", "b1", "c1"]  # c, not a, which holds its share
    await finish(log, "a1")
    assert log.order == ["a1", "a2", "b1", "c1", "a3"]
    for name in ("a2", "c1", "a3", "a4"):
        await finish(log, name)
    await asyncio.gather(*tasks)
    assert log.order == ["a1", "a2", "b1", "c1", "a3", "a4"]
    assert log.most_at_once == 3
    assert log.turns.holders == 0


@run_async
async def test_requests_past_a_callers_waiting_room_are_refused_by_name() -> None:
    turns = Turns(at_once=1, waiting_per_key=1, per_key=1, what="requests")
    log = Log(turns)
    tasks = await started(log, ("a", "a1"), ("a", "a2"))
    with pytest.raises(TooManyRequests, match="1 requests of this caller"):
        turns.check("a")
    for name in ("a1", "a2"):
        await finish(log, name)
    await asyncio.gather(*tasks)
