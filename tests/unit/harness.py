"""A controlled world for the scheduling parts: a real ``StateMachine`` on a
tmp SQLite file behind an ``InMemoryLog``, a settable clock and a recording
executor. No sleeps, no real time, no network."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from scheduler0.daemon.executor.http import Fire, FireResult
from scheduler0.daemon.memory_log import InMemoryLog
from scheduler0.daemon.scheduling.scheduler import Scheduler
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import BUCKETS, bucket_of

T0 = 1_800_000_000
"""Anchor of every job: ``@every 10s`` slots are T0 + 10k."""

C = TypeVar("C", bound=c.Command)

MISFIRE_GRACE = 60.0
"""The grace of the schedulers ``scheduler`` composes."""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingExecutor:
    """Exactly what the scheduler calls on its executor: ``free_capacity``,
    ``submit``, ``refusing``, ``refuse`` and ``drain_results``. Records every ``Fire`` submitted and
    hands back the results a test queues with ``finish``."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.submitted: list[Fire] = []
        self.refused: list[Fire] = []
        self.full: set[str] = set()
        """URLs whose destination a test declares full (``refusing``)."""
        self.room: dict[str, int] = {}
        """Bytes a test says a URL's destination has room for (``refusing``)."""
        self.calls = 0
        self._results: list[FireResult] = []

    def free_capacity(self) -> int:
        return self.capacity

    def submit(self, fires: Sequence[Fire]) -> list[Fire]:
        self.calls += 1
        self.submitted.extend(fires)
        return [fire for fire in fires if fire.callback_url in self.full]

    def refusing(self, url: str, size: int) -> bool:
        return url in self.full or size > self.room.get(url, size)

    def refuse(self, fires: Sequence[Fire]) -> None:
        self.refused.extend(fires)

    def drain_results(self) -> list[FireResult]:
        results, self._results = self._results, []
        return results

    def finish(
        self,
        fires: Sequence[Fire],
        state: str = "success",
        status_code: int | None = 200,
        attempts: int = 1,
        latency_ms: int = 5,
        error: str | None = None,
    ) -> None:
        self._results.extend(
            FireResult(
                f.execution_id,
                f.job_id,
                f.slot,
                state,
                status_code,
                attempts,
                latency_ms,
                error,
                0.0,
            )
            for f in fires
        )

    def sent_pairs(self) -> list[tuple[int, int]]:
        return [(f.job_id, f.slot) for f in self.submitted]


class World:
    def __init__(self, tmp_path: Path, node_id: int = 1) -> None:
        self.node_id = node_id
        self.db_path = tmp_path / "state.db"
        self.listeners: list[Callable[[str, Any], None]] = []
        self.machine = StateMachine(self.db_path, on_change=self._notify)
        self.log = InMemoryLog(self.machine, apply_timeout=0.0)
        self.log.start()
        self.queries = Queries(self.db_path)
        self.clock = Clock(T0)
        self.executor = RecordingExecutor()
        self._epoch = 0

    def _notify(self, kind: str, detail: Any) -> None:
        for listener in self.listeners:
            listener(kind, detail)

    def close(self) -> None:
        self.queries.db.close()
        self.machine.close()

    # -- state through commands ------------------------------------------------------------

    async def propose(self, command: c.Command) -> Any:
        return await self.log.propose(command)

    async def project(self, name: str = "p") -> int:
        result = await self.propose(
            c.ProjectCreated(now=T0, name=name, description="", signing_secret="secret")
        )
        return int(result["id"])

    async def jobs(
        self,
        *specs: str,
        project_id: int = 1,
        anchor: int = T0,
        timezone: str = "UTC",
        policy: dict[str, Any] | None = None,
    ) -> list[int]:
        result = await self.propose(
            c.JobsCreated(
                now=anchor,
                jobs=[
                    {
                        "project_id": project_id,
                        "spec": spec,
                        "timezone": timezone,
                        "data": f'{{"n": {i}}}',
                        "callback_url": "http://receiver.invalid/cb",
                        "execution_type": "http",
                        "anchor": anchor,
                        "policy": policy,
                    }
                    for i, spec in enumerate(specs)
                ],
            )
        )
        first, last = result["ids"]
        return list(range(first, last + 1))

    async def assign(self, owners: list[int]) -> None:
        self._epoch += 1
        await self.propose(c.AssignmentChanged(now=T0, epoch=self._epoch, owners=owners))

    async def assign_all(self, node_id: int | None = None) -> None:
        await self.assign([self.node_id if node_id is None else node_id] * BUCKETS)

    # -- reading back --------------------------------------------------------------------------

    def commands(self, kind: type[C]) -> list[C]:
        decoded = (c.decode(payload) for payload in self.log.entries)
        return [command for command in decoded if isinstance(command, kind)]

    def executions(self, state: str | None = None) -> list[tuple[int, int, str]]:
        rows = self.queries.db.execute(
            "SELECT job_id, slot, state FROM executions ORDER BY job_id, slot"
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows if state is None or r[2] == state]


def owners_splitting(jobs: dict[int, int], default: int = 1) -> list[int]:
    """An assignment giving each job's bucket to the node named for it."""
    owners = [default] * BUCKETS
    for job_id, node in jobs.items():
        owners[bucket_of(job_id)] = node
    return owners


async def settle() -> None:
    """Run the loop until every other task (proposals in flight) is done."""
    me = asyncio.current_task()
    for _ in range(1_000):
        if all(task is me or task.done() for task in asyncio.all_tasks()):
            return
        await asyncio.sleep(0)
    raise AssertionError("proposals did not settle")


async def until(condition: Callable[[], bool]) -> None:
    """Run the loop until ``condition`` holds (tasks still in flight may stay)."""
    for _ in range(1_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition did not come to hold")


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def`` test on a fresh event loop (fixtures pass through)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


def fire_item(fire: Fire) -> Any:
    """The job object ``fire`` sends, as the executor puts it in the POST body
    (a ``(head, tail)`` payload is the two pieces of its JSON)."""
    payload = fire.payload
    if isinstance(payload, tuple):
        payload = b"".join(payload)
    return orjson.loads(payload) if isinstance(payload, bytes) else payload


def scheduler(
    world: World,
    executor: RecordingExecutor | None = None,
    log: Any = None,
    *,
    fire_ahead: float = 0.0,
) -> Scheduler:
    """The composed scheduler of node ``world.node_id`` in ``world``, hearing
    its state machine's changes."""
    s = Scheduler(
        node_id=world.node_id,
        log=log or world.log,
        machine=world.machine,
        queries=world.queries,
        executor=executor or world.executor,
        misfire_grace=MISFIRE_GRACE,
        fire_ahead=fire_ahead,
        clock=world.clock,
    )
    world.listeners.append(s.on_change)
    return s


async def tick(s: Scheduler, world: World, at: float) -> None:
    """One tick of ``s`` at ``at``, and every proposal it made decided."""
    world.clock.now = at
    s.tick_once()
    await settle()
