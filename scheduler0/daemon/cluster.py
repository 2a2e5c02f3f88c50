"""Leader duties: membership, the bucket assignment, retention.

Only the raft leader acts, and only by proposing commands; every node derives
what it owns from the assignment it has applied (ARCHITECTURE.md §3).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from scheduler0.daemon.state import commands as c
from scheduler0.errors import Scheduler0Error

if TYPE_CHECKING:
    from scheduler0.daemon.node import Node

log = logging.getLogger(__name__)

PRUNE_EVERY = 30.0
PRUNE_JOBS_PER_ROUND = 5000


def plan_assignment(owners: list[int], workers: list[int]) -> list[int]:
    """Spread ``BUCKETS`` evenly over ``workers``, moving as few as possible.

    A bucket stays with its owner while that owner is a worker and holds no
    more than its quota; the rest go, in bucket order, to the workers furthest
    below theirs. Deterministic for the same input.
    """
    if not workers:
        return list(owners)
    workers = sorted(set(workers))
    base, extra = divmod(len(owners), len(workers))
    quota = {w: base + (1 if i < extra else 0) for i, w in enumerate(workers)}
    held: Counter[int] = Counter()
    plan = list(owners)
    free: list[int] = []
    for bucket, owner in enumerate(owners):
        if owner in quota and held[owner] < quota[owner]:
            held[owner] += 1
        else:
            free.append(bucket)
    needy = [w for w in workers for _ in range(quota[w] - held[w])]
    for bucket, worker in zip(free, needy, strict=True):
        plan[bucket] = worker
    return plan


class Coordinator:
    def __init__(self, node: Node, period: float = 0.5) -> None:
        self._node = node
        self._period = period
        self._stopping = False
        self._last_prune = time.monotonic()
        self._prune_from = 0

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        while not self._stopping:
            try:
                if self._node.raft.ready and self._node.raft.is_leader():
                    await self.lead_once()
            except Scheduler0Error as exc:
                log.info("leader duty deferred: %s", exc.message)
            except Exception:
                log.exception("leader duty failed")
            await asyncio.sleep(self._period)

    def workers(self) -> list[int]:
        """Nodes that should fire jobs. One node: itself. More: all but the leader."""
        settings = self._node.settings
        members = [m["node_id"] for m in self._node.queries.members()]
        if len(members) <= 1:
            return [settings.node_id]
        return [m for m in members if m != settings.node_id]

    async def lead_once(self) -> None:
        node = self._node
        settings = node.settings
        members = {m["node_id"] for m in node.queries.members()}
        if settings.node_id not in members:
            await node.raft.propose(
                c.MemberJoined(
                    now=time.time(),
                    node_id=settings.node_id,
                    address=settings.http_base_url,
                    raft_address=settings.raft_address,
                )
            )
        machine = node.machine
        plan = plan_assignment(machine.owners, self.workers())
        if plan != machine.owners or machine.epoch == 0:
            await node.raft.propose(
                c.AssignmentChanged(now=time.time(), epoch=machine.epoch + 1, owners=plan)
            )
        if time.monotonic() - self._last_prune >= PRUNE_EVERY:
            await self.prune()

    async def prune(self) -> None:
        node = self._node
        settings = node.settings
        now = time.time()
        top = node.queries.counts()["jobs"] and (
            node.queries.db.execute("SELECT MAX(id) FROM jobs").fetchone()[0] or 0
        )
        start = self._prune_from if self._prune_from <= top else 0
        await node.raft.propose(
            c.ExecutionsPruned(
                now=now,
                keep_rows=settings.execution_retention_rows,
                before=now - settings.execution_retention_seconds,
                per_job=settings.execution_retention_per_job,
                job_id_from=start,
                job_id_to=start + PRUNE_JOBS_PER_ROUND - 1,
            )
        )
        self._prune_from = start + PRUNE_JOBS_PER_ROUND
        self._last_prune = time.monotonic()
