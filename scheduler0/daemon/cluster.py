"""Leader duties: membership, the bucket assignment, retention.

Only the raft leader acts, and only by proposing commands; every node derives
what it owns from the assignment it has applied (see DESIGN.md, "Who runs what").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from scheduler0.config import Settings
from scheduler0.daemon.replication import ReplicatedLog
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import AssignmentView
from scheduler0.daemon.state.queries import Queries
from scheduler0.errors import Scheduler0Error

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
    # The extra buckets of an uneven split go to the workers holding the most
    # already (then the lowest ids), so that no bucket moves that need not.
    holding = Counter(owner for owner in owners if owner in workers)
    richest = sorted(workers, key=lambda w: (-holding[w], w))
    quota = {w: base + (1 if i < extra else 0) for i, w in enumerate(richest)}
    held: Counter[int] = Counter()
    plan = list(owners)
    free: list[int] = []
    for bucket, owner in enumerate(owners):
        if owner in quota and held[owner] < quota[owner]:
            held[owner] += 1
        else:
            free.append(bucket)
    # Round-robin over the workers still short, so each gets scattered buckets.
    deficit = {w: quota[w] - held[w] for w in workers}
    needy: list[int] = []
    while any(deficit.values()):
        for w in workers:
            if deficit[w]:
                needy.append(w)
                deficit[w] -= 1
    for bucket, worker in zip(free, needy, strict=True):
        plan[bucket] = worker
    return plan


HEARTBEAT_DEADLINE = 1.5
"""Seconds a worker may be unreachable over raft before its buckets move."""

RETURN_AFTER = 1.0
"""Seconds a returning worker must stay connected and caught up to get buckets back."""

CAUGHT_UP_ENTRIES = 200
"""A worker whose replicated log trails the leader's commit index by more is not
given buckets yet (it could not fire on current state)."""


class WorkerHealth:
    """The leader's view of each worker, from raft connectivity and replication."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[bool, float]] = {}
        self._link_since: dict[str, tuple[bool, float]] = {}
        self.last_contact: dict[str, float] = {}

    def observe(self, address: str, up: bool, now: float) -> None:
        state = self._since.get(address)
        if state is None or state[0] != up:
            self._since[address] = (up, now)
        if up:
            self.last_contact[address] = time.time()

    def observe_link(self, address: str, connected: bool, now: float) -> None:
        """Whether raft is connected to ``address`` now (caught up or not)."""
        state = self._link_since.get(address)
        if state is None or state[0] != connected:
            self._link_since[address] = (connected, now)

    def unreachable(self, address: str, now: float) -> bool:
        """Not connected over raft for ``HEARTBEAT_DEADLINE`` seconds of this
        leader's observation. A member still connected is alive, however far
        behind: it will report on what it sent itself."""
        state = self._link_since.get(address)
        if state is None:
            return False
        connected, since = state
        return not connected and now - since >= HEARTBEAT_DEADLINE

    def healthy(self, address: str, now: float, currently_owner: bool) -> bool:
        """An owner keeps its buckets until down past the deadline; a newcomer
        or returning worker gets buckets after staying up for a while."""
        state = self._since.get(address)
        if state is None:
            return False
        up, since = state
        if currently_owner:
            return up or now - since < HEARTBEAT_DEADLINE
        return up and now - since >= RETURN_AFTER

    def forget(self) -> None:
        self._since.clear()
        self._link_since.clear()


class Proposer(Protocol):
    def propose(self, command: c.Command) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class CoordinatorSettings:
    """What the leader's duties need to know of the node's configuration."""

    node_id: int
    address: str
    raft_address: str
    replicas: tuple[tuple[int, str, str], ...]
    """Configured members: (node id, http address, raft address)."""
    retention_rows: int
    retention_seconds: float
    retention_per_job: int
    audit_retention_rows: int | None = None
    audit_retention_seconds: float | None = None
    """The audit log's bounds; None: it is not pruned."""

    @classmethod
    def from_settings(cls, settings: Settings) -> CoordinatorSettings:
        return cls(
            node_id=settings.node_id,
            address=settings.http_base_url,
            raft_address=settings.raft_address,
            replicas=tuple((r.node_id, str(r.address), r.raft_address) for r in settings.replicas),
            retention_rows=settings.execution_retention_rows,
            retention_seconds=settings.execution_retention_seconds,
            retention_per_job=settings.execution_retention_per_job,
            audit_retention_rows=settings.audit_retention_rows,
            audit_retention_seconds=settings.audit_retention_seconds,
        )


class Coordinator:
    """The leader's duties, run every ``period`` seconds while this node leads:
    record members, keep the bucket assignment balanced over healthy workers,
    declare a dead worker's dispatched executions lost, prune history.

    Acts only by proposing commands through ``writes``; must never change state
    or ownership any other way, and does nothing while not the leader.
    """

    def __init__(
        self,
        settings: CoordinatorSettings,
        *,
        log: ReplicatedLog,
        writes: Proposer,
        assignment: AssignmentView,
        queries: Queries,
        period: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._log = log
        self._writes = writes
        self._assignment = assignment
        self._queries = queries
        self._period = period
        self._clock = clock
        self._stopping = False
        self._last_prune = clock()
        self._prune_from = 0
        self.health = WorkerHealth()
        self._was_leader = False
        self.lost_declared = 0
        """Dispatched executions of dead workers this node declared lost as leader."""
        self._departed_since: dict[int, float] = {}
        """Removed nodes, by when this leader first saw them removed."""
        self._departed_settled: set[int] = set()
        """Removed nodes whose dispatched executions this leader has settled."""
        self._raft_addresses: dict[int, str] = {}
        """Members' raft addresses as last seen (a removed node's is needed after)."""

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        while not self._stopping:
            try:
                leading = self._log.ready and self._log.is_leader()
                if leading and not self._was_leader:
                    self.health.forget()  # views from an earlier term are stale
                    self._departed_since.clear()
                    self._departed_settled.clear()
                self._was_leader = leading
                if leading:
                    await self.lead_once()
            except Scheduler0Error as exc:
                log.info("leader duty deferred: %s", exc.message)
            except Exception:
                log.exception("leader duty failed")
            await asyncio.sleep(self._period)

    def workers(self) -> list[int]:
        """Nodes that should fire jobs. A one-node cluster: itself. Otherwise
        every healthy member but the leader (the seed's promise)."""
        settings = self._settings
        raft = self._log.status()
        connected: dict[str, bool] = raft.get("partners_connected", {})
        if not connected:
            return [settings.node_id]
        commit = raft.get("commit_index") or 0
        match: dict[str, int] = raft.get("partners_match_index", {})
        now = self._clock()
        owners = set(self._assignment.owners)
        out = []
        for member in self._queries.members():
            address = member["raft_address"]
            if member["node_id"] == settings.node_id or address not in connected:
                continue
            up = connected[address] and match.get(address, 0) >= commit - CAUGHT_UP_ENTRIES
            self.health.observe(address, up, now)
            self.health.observe_link(address, connected[address], now)
            if self.health.healthy(address, now, member["node_id"] in owners):
                out.append(member["node_id"])
        return out

    async def register_members(self) -> None:
        """Record this node, and the configured replicas raft knows, as members."""
        settings = self._settings
        known = {m["node_id"] for m in self._queries.members()}
        known.update(self._queries.departed_member_ids())  # removed: never re-registered
        partners = set(self._log.status().get("partners_connected", {}))
        wanted = [(settings.node_id, settings.address, settings.raft_address)]
        wanted += [r for r in settings.replicas if r[2] in partners]
        for node_id, address, raft_address in wanted:
            if node_id not in known:
                await self._writes.propose(
                    c.MemberJoined(
                        now=time.time(),
                        node_id=node_id,
                        address=address,
                        raft_address=raft_address,
                        automatic=True,
                    )
                )

    async def lead_once(self) -> None:
        await self.register_members()
        assignment = self._assignment
        workers = self.workers()
        await self.declare_dead_workers_lost(workers)
        if workers:
            plan = plan_assignment(assignment.owners, workers)
            if plan != assignment.owners or assignment.epoch == 0:
                epoch = assignment.epoch + 1
                moved = sum(1 for a, b in zip(assignment.owners, plan, strict=True) if a != b)
                await self._writes.propose(
                    c.AssignmentChanged(now=time.time(), epoch=epoch, owners=plan)
                )
                log.info(
                    "assignment epoch %d: %d bucket(s) moved; buckets per node %s",
                    epoch,
                    moved,
                    dict(sorted(Counter(plan).items())),
                )
        if self._clock() - self._last_prune >= PRUNE_EVERY:
            await self.prune()

    async def declare_dead_workers_lost(self, workers: list[int]) -> None:
        """A member unreachable past the heartbeat deadline (or no longer a
        raft partner) will not report on the executions it dispatched: record
        them ``lost`` so their new owner re-sends them (same execution id).

        A member that is not a worker but still connected is left alone: it
        is alive (a former leader, a worker that lost its buckets, one too
        far behind), its executor still sends what it holds and records the
        results, and re-sending those would deliver them twice. A member
        that restarts declares its own earlier executions lost."""
        own_id = self._settings.node_id
        if workers == [own_id]:
            return
        connected: dict[str, bool] = self._log.status().get("partners_connected", {})
        now = self._clock()
        for member in self._queries.members():
            node_id = member["node_id"]
            address = self._raft_addresses[node_id] = member["raft_address"]
            if node_id in workers or node_id == own_id:
                continue
            if address in connected and not self.health.unreachable(address, now):
                continue
            await self._declare_lost(node_id, "is down")
        await self._declare_departed_lost(own_id, connected, now)

    async def _declare_departed_lost(
        self, own_id: int, connected: dict[str, bool], now: float
    ) -> None:
        """A removed node hands its unsent runs over as it stops
        (``NodeRunsLost``); one killed first, or stopped too slowly, leaves
        them ``dispatched`` for good unless declared ``lost`` here for their
        new owner to send. Once per removed node and leadership, once it has
        been out of raft's reach for ``HEARTBEAT_DEADLINE`` (a removed node
        still connected is alive and recording what it sent: declaring its
        runs lost then would have them sent twice); a node added back is a
        member again and left alone."""
        departed = set(self._queries.departed_member_ids()) - {own_id}
        for gone in set(self._departed_since) - departed:  # added back since
            del self._departed_since[gone]
            self._departed_settled.discard(gone)
        for node_id in sorted(departed - self._departed_settled):
            address = self._raft_addresses.get(node_id)
            if address is not None and connected.get(address):
                self._departed_since[node_id] = now  # still there, draining
                continue
            if now - self._departed_since.setdefault(node_id, now) < HEARTBEAT_DEADLINE:
                continue
            self._departed_settled.add(node_id)
            await self._declare_lost(node_id, "left the cluster")

    async def _declare_lost(self, node_id: int, why: str) -> None:
        orphans = [[r["job_id"], r["slot"]] for r in self._queries.unsettled("dispatched", node_id)]
        if orphans:
            log.info("node %s %s: %d dispatched executions lost", node_id, why, len(orphans))
            await self._writes.propose(c.ExecutionsLost(now=time.time(), executions=orphans))
            self.lost_declared += len(orphans)

    async def prune(self) -> None:
        settings = self._settings
        now = time.time()
        top = self._queries.max_job_id()
        start = self._prune_from if self._prune_from <= top else 0
        await self._writes.propose(
            c.ExecutionsPruned(
                now=now,
                keep_rows=settings.retention_rows,
                before=now - settings.retention_seconds,
                per_job=settings.retention_per_job,
                job_id_from=start,
                job_id_to=start + PRUNE_JOBS_PER_ROUND - 1,
                audit_keep_rows=settings.audit_retention_rows,
                audit_before=None
                if settings.audit_retention_seconds is None
                else now - settings.audit_retention_seconds,
                fair=True,
            )
        )
        self._prune_from = start + PRUNE_JOBS_PER_ROUND
        self._last_prune = self._clock()
