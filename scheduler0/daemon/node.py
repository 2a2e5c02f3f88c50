"""One scheduler0 node, wired: the replicated log and state machine, the
scheduler, the executor and the leader's duties, and what the API may use.

``Node`` is the composition root. It builds every part with exactly the
collaborators that part needs and hands the API three services (``Writes``,
``NodeStatus`` and the read-only ``Queries``); no part reaches through the node
to another part. It never imports the API (``daemon/serve.py`` joins the two)
and never knows about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler0 import __version__
from scheduler0.backup import BackupHeader, file_sha256, key_check
from scheduler0.config import Settings
from scheduler0.daemon import collector
from scheduler0.daemon.allocator import Trimmer
from scheduler0.daemon.cluster import Coordinator, CoordinatorSettings
from scheduler0.daemon.executor.destinations import DestinationGuard, policy_for
from scheduler0.daemon.executor.http import Executor
from scheduler0.daemon.metrics import Metrics, Readings
from scheduler0.daemon.peers import removal_witness
from scheduler0.daemon.raft import (
    ProposalObserver,
    RaftLog,
    RaftOptions,
    max_message_bytes,
    raft_password,
)
from scheduler0.daemon.replication import ReplicatedLog
from scheduler0.daemon.scheduling.scheduler import Scheduler
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.copy import copy_replica
from scheduler0.daemon.state.machine import FIRE_BUFFER_SECONDS, StateMachine, environment_failure
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import remove_database
from scheduler0.daemon.watch import Watch
from scheduler0.errors import InsufficientStorage, NoQuorum, NotCommitted

log = logging.getLogger(__name__)

BARRIER_PATIENCE = 10.0
"""Seconds a backup retries its barrier (a no-op, so safe to repeat) while the
cluster cannot commit it, e.g. during an election."""

MEMORY_SOFT_LIMIT = 0.7
"""Above this share of MaxMemory the node stops taking new jobs."""


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


PRIVATE_UMASK = 0o077


def private_files(data_dir: Path) -> None:
    """The data directory 0700 and every file in it 0600, whatever the umask:
    the database, its WAL and the raft snapshot and journal hold every
    project's signing secret and the credentials' hashes. Files a node makes
    later are private by the process umask (``PRIVATE_UMASK``, set by
    ``scheduler0 start``); this fixes what an older node or another tool
    (``scheduler0 restore``) left."""
    data_dir.chmod(0o700)
    for path in data_dir.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


@dataclass(frozen=True)
class DiskGuard:
    """``MinFreeDiskMb``: below this much free space on the data directory's file
    system the node refuses new writes, before SQLite or the raft journal run
    out of room (firing and results go on: they are what the space is for)."""

    data_dir: Path
    min_free_mb: int

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.data_dir).free
        except OSError:
            return 0

    def low(self) -> bool:
        return self.min_free_mb > 0 and self.free_bytes() < self.min_free_mb * 2**20


@dataclass(frozen=True)
class MemoryGuard:
    """``MaxMemory``: above ``MEMORY_SOFT_LIMIT`` of it the node takes no new jobs."""

    max_memory_mb: int

    def over(self) -> bool:
        return rss_bytes() > self.max_memory_mb * 2**20 * MEMORY_SOFT_LIMIT


GROWING = (
    c.ProjectCreated,
    c.ProjectUpdated,
    c.CredentialCreated,
    c.JobsCreated,
    c.JobUpdated,
    c.JobTriggered,
    c.JobBackfilled,
)
"""Commands from clients that add state: refused by the disk guard."""


class Writes:
    """The one way anything on this node proposes a command: the API, the
    scheduler's leader duties and membership changes all come through here, so
    admission (the memory guard) is decided in one place."""

    def __init__(
        self,
        log: ReplicatedLog,
        node_id: int,
        memory: MemoryGuard,
        disk: DiskGuard,
        halted: Callable[[], str | None],
    ) -> None:
        self._log = log
        self._node_id = node_id
        self._memory = memory
        self._disk = disk
        self._halted = halted

    async def propose(self, command: c.Command) -> Any:
        """Replicate ``command``; see ``ReplicatedLog.propose`` for what it raises.
        Refused (503, naming the reason) while this replica is halted, and, for
        commands that add state, while the disk or memory guard is on."""
        reason = self._halted()
        if reason is not None:
            raise NoQuorum(f"node {self._node_id} has stopped applying ({reason})")
        if isinstance(command, GROWING) and self._disk.low():
            raise NoQuorum(
                f"node {self._node_id} has {self._disk.free_bytes() // 2**20} MB free on its"
                f" data disk, below MinFreeDiskMb ({self._disk.min_free_mb} MB): writes refused"
            )
        if isinstance(command, c.JobsCreated) and self._memory.over():
            raise NoQuorum(
                f"node {self._node_id} is above {int(MEMORY_SOFT_LIMIT * 100)}% of"
                f" MaxMemory ({self._memory.max_memory_mb} MB) and takes no new jobs"
            )
        return await self._log.propose(command)

    async def barrier(self) -> None:
        """Wait until this node has applied everything committed before now."""
        await self._log.barrier()

    async def add_member(self, raft_address: str) -> None:
        await self._log.add_member(raft_address)

    async def remove_member(self, raft_address: str) -> None:
        await self._log.remove_member(raft_address)

    async def hand_over_leadership(self, timeout: float) -> None:
        await self._log.hand_over_leadership(timeout)

    def leads(self) -> bool:
        return self._log.is_leader()


class Backups:
    """Online backups of this node's replica (``GET /backup``).

    ``take`` commits a barrier (so the copy holds every write committed before
    the request), then copies the replica in a worker thread from a read
    transaction opened with every held fire written (``state/copy.py``): the
    copy is the state at one raft index, and apply waits only while that
    transaction is opened, not for the copy."""

    TMP_GLOB = "backup-*.tmp"

    def __init__(
        self,
        settings: Settings,
        writes: Writes,
        disk: DiskGuard,
        db_path: Path,
        work_dir: Path,
        pinned: Callable[[], sqlite3.Connection],
    ) -> None:
        self._settings = settings
        self._writes = writes
        self._disk = disk
        self._db_path = db_path
        self._pinned = pinned
        self._work_dir = work_dir
        for stale in work_dir.glob(self.TMP_GLOB):  # left by a node stopped mid-backup
            stale.unlink(missing_ok=True)

    async def take(self) -> tuple[BackupHeader, Path]:
        """The backup's header and its payload file (a temporary file the caller
        deletes once sent)."""
        deadline = time.monotonic() + BARRIER_PATIENCE
        while True:
            try:
                await self._writes.barrier()
                break
            except NotCommitted:  # e.g. a leader change discarded it: a no-op, safe to repeat
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)
        self._check_room()
        tmp = self._work_dir / f"backup-{uuid.uuid4().hex}.tmp"
        try:
            copy = await asyncio.to_thread(copy_replica, self._db_path, tmp, self._pinned)
            sha256, size = await asyncio.to_thread(file_sha256, tmp)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if environment_failure(exc):  # the disk filled while copying
                raise InsufficientStorage(
                    f"the backup's copy could not be written in {self._work_dir}: {exc}"
                ) from None
            raise
        settings = self._settings
        assert settings.secret_key is not None
        header = BackupHeader(
            created_at=round(copy.pinned_at, 6),
            source_node_id=settings.node_id,
            source_address=settings.http_base_url,
            raft_index=copy.raft_index,
            epoch=copy.epoch,
            payload_sha256=sha256,
            payload_bytes=size,
            scheduler0_version=__version__,
            secret_key_check=key_check(settings.secret_key),
            counts=copy.counts,
        )
        log.info(
            "backup at raft index %d: %.1f MB copied in %.3f s (apply not blocked)",
            copy.raft_index,
            size / 1e6,
            copy.seconds,
        )
        return header, tmp

    def _check_room(self) -> None:
        """Refuse (507) a backup whose copy would eat into the free space
        ``MinFreeDiskMb`` keeps for the replica: the copy is about as large
        as the database and its WAL."""
        needed = sum(
            path.stat().st_size
            for path in (self._db_path, self._db_path.with_name(self._db_path.name + "-wal"))
            if path.exists()
        )
        free = self._disk.free_bytes()
        reserve = self._disk.min_free_mb * 2**20
        if free - needed < reserve:
            raise InsufficientStorage(
                f"a backup needs about {needed // 2**20} MB in {self._work_dir}, which has"
                f" {free // 2**20} MB free and keeps {reserve // 2**20} MB (MinFreeDiskMb)"
                " for the replica: free some space, or back up another node"
            )


class NodeStatus:
    """What this node says about itself: health, its status, and the cluster as
    it has applied it. Reads only; never proposes."""

    def __init__(
        self,
        settings: Settings,
        log: ReplicatedLog,
        machine: StateMachine,
        queries: Queries,
        scheduler: Scheduler,
        executor: Executor,
        coordinator: Coordinator,
        memory: MemoryGuard,
        disk: DiskGuard,
        halted: Callable[[], str | None],
    ) -> None:
        self._settings = settings
        self._log = log
        self._machine = machine
        self._queries = queries
        self._scheduler = scheduler
        self._executor = executor
        self._coordinator = coordinator
        self._memory = memory
        self._disk = disk
        self._halted = halted
        self.started_at = time.time()

    @property
    def node_id(self) -> int:
        return self._settings.node_id

    @property
    def ready(self) -> bool:
        """The replica is rebuilt and may be served."""
        return self._log.ready

    @property
    def epoch(self) -> int:
        return self._machine.epoch

    def buckets_per_node(self) -> dict[str, int]:
        buckets: dict[str, int] = {}
        for owner in self._machine.owners:
            buckets[str(owner)] = buckets.get(str(owner), 0) + 1
        return buckets

    def last_contact(self, raft_address: str) -> float | None:
        """When the leader last saw ``raft_address`` connected (unix seconds)."""
        return self._coordinator.health.last_contact.get(raft_address)

    def health(self) -> dict[str, Any]:
        raft = self._log.status()
        healthy = bool(raft.get("ready")) and bool(raft.get("has_quorum"))
        halted = self._halted()
        low_disk = self._disk.low()
        ok = healthy and not self._memory.over() and not low_disk
        return {
            "status": "halted" if halted else "ok" if ok else "degraded",
            "halted": halted,
            "low_disk": low_disk,
            "node_id": self._settings.node_id,
            "version": __version__,
            "role": raft.get("state"),
            "ready": raft.get("ready", False),
            "has_quorum": raft.get("has_quorum", False),
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }

    def local_status(self) -> dict[str, Any]:
        scheduler = self._scheduler
        delivery_p50, delivery_p99 = self._executor.lateness()
        stats = scheduler.stats
        settings = self._settings
        return {
            "node_id": settings.node_id,
            "address": settings.http_base_url,
            "raft_address": settings.raft_address,
            "raft": self._log.status(),
            "epoch": self._machine.epoch,
            "buckets_owned": scheduler.owned_buckets,
            "jobs_owned": scheduler.owned_jobs,
            "queue_depth": self._executor.queue_depth + scheduler.due_backlog,
            "in_flight": self._executor.in_flight,
            "fire_lag_p99_seconds": round(scheduler.lag_p99(), 3),
            "delivery_lag_p50_seconds": round(delivery_p50, 3),
            "delivery_lag_p99_seconds": round(delivery_p99, 3),
            "callback_backlog_bytes": self._executor.backlog_bytes,
            "worst_destinations": self._executor.destinations(),
            "fired": stats.fired,
            "rejected": stats.rejected,
            "redispatched": stats.redispatched,
            "results_backlog": stats.results_backlog,
            "rss_bytes": rss_bytes(),
            "over_memory": self._memory.over(),
            "low_disk": self._disk.low(),
            "disk_free_bytes": self._disk.free_bytes(),
            "halted": self._halted(),
            "state_digest": self._machine.digest(),
            "counts": self._queries.counts(),
            "member_ids": sorted(int(m["node_id"]) for m in self._queries.members()),
            "departed_member_ids": self._queries.departed_member_ids(),
        }

    def status(self) -> dict[str, Any]:
        local = self.local_status()
        return {
            "node": local,
            "leader": local["raft"].get("leader"),
            "term": local["raft"].get("term"),
            "epoch": self._machine.epoch,
            "buckets_per_node": self.buckets_per_node(),
            "members": self._queries.members(),
        }


class Node:
    """Owns every part of one node and their life cycle: ``start_log`` (bind and
    replay, on the main thread), ``start_background``/``stop_background`` (the
    scheduler, executor and leader duties, on the event loop), ``close``.

    Must never: apply a command itself (the state machine does, in log order),
    read the replica for the API (``queries`` does), or decide ownership (the
    replicated assignment does).
    """

    def __init__(self, settings: Settings, log: ReplicatedLog | None = None) -> None:
        self.settings = settings
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        private_files(data_dir)
        db_path = data_dir / "state.db"
        # The database is a function of snapshot + journal: rebuild it, so that
        # the journal replay at start never applies a command twice.
        remove_database(db_path)
        self.metrics = Metrics()
        self.machine = StateMachine(
            db_path,
            on_change=self._on_change,
            metrics=self.metrics,
            fire_buffer_seconds=FIRE_BUFFER_SECONDS,
        )
        self.queries = Queries(db_path, settle=self.machine.settle)
        self.log: ReplicatedLog = log or _raft_log(
            settings, data_dir, self.machine, self.metrics.proposed
        )
        memory = MemoryGuard(settings.max_memory)
        disk = DiskGuard(data_dir, settings.min_free_disk_mb)
        self.writes = Writes(self.log, settings.node_id, memory, disk, halted=self.halted)
        self.backups = Backups(
            settings, self.writes, disk, db_path, data_dir, self.machine.pinned_reader
        )
        self.executor = Executor(
            max_workers=settings.max_workers,
            max_queue=settings.max_queue,
            timeout=settings.job_execution_timeout,
            timeout_max=settings.job_execution_timeout_max,
            retry_max=settings.job_execution_retry_max,
            retry_delay=settings.job_execution_retry_delay,
            payload_max_bytes=int(settings.http_executor_payload_max_size_mb * 2**20),
            node_id=settings.node_id,
            metrics=self.metrics,
            destination_share=settings.callback_destination_share,
            destination_max_bytes=settings.callback_queue_max_mb * 2**20,
            guard=DestinationGuard(lambda: policy_for(settings, self.queries.members())),
        )
        self.scheduler = Scheduler(
            node_id=settings.node_id,
            log=self.log,
            machine=self.machine,
            queries=self.queries,
            executor=self.executor,
            misfire_grace=settings.misfire_grace_seconds,
            fire_ahead=settings.fire_ahead_seconds,
        )
        self.coordinator = Coordinator(
            CoordinatorSettings.from_settings(settings),
            log=self.log,
            writes=self.writes,
            assignment=self.machine,
            queries=self.queries,
        )
        self.status = NodeStatus(
            settings,
            self.log,
            self.machine,
            self.queries,
            self.scheduler,
            self.executor,
            self.coordinator,
            memory,
            disk,
            self.halted,
        )
        self.watch = Watch(
            node_id=settings.node_id,
            raft=self.log.status,
            buckets=lambda: (self.scheduler.owned_buckets, self.machine.epoch),
            members=self.queries.members,
            departed=self.queries.departed_member_ids,
            over_memory=memory.over,
            halted=self.halted,
            low_disk=disk.low,
            removal_witness=lambda: removal_witness(settings, self.queries.members()),
        )
        self.metrics.read_from(
            Readings(
                scheduler=self._scheduler_totals,
                executor=lambda: {
                    "queue_depth": self.executor.queue_depth + self.scheduler.due_backlog,
                    "in_flight": self.executor.in_flight,
                },
                raft=self.log.status,
                counts=self.queries.counts,
                guards=lambda: {
                    "over_memory": memory.over(),
                    "rss_bytes": rss_bytes(),
                    "disk_free_bytes": disk.free_bytes(),
                    "low_disk": disk.low(),
                },
                leader_changes=lambda: self.watch.leader_changes,
            )
        )
        self.trimmer = Trimmer()
        self._tasks: list[asyncio.Task[None]] = []

    def halted(self) -> str | None:
        """Why this node stopped applying or journaling, or None."""
        return self.machine.halted or self.log.failure

    def _scheduler_totals(self) -> dict[str, int]:
        stats = self.scheduler.stats
        return {
            "accepted": stats.fired,
            "rejected": stats.rejected,
            "missed": stats.missed,
            "skipped": stats.skipped,
            "lost": stats.lost + self.coordinator.lost_declared,
            "redispatched": stats.redispatched,
            "cancelled": stats.cancelled,
        }

    def _on_change(self, kind: str, detail: Any) -> None:
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            scheduler.on_change(kind, detail)

    # -- life cycle ------------------------------------------------------------------------

    def start_log(self) -> None:
        self.log.start()

    async def start_background(self) -> None:
        await self.executor.start()
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self.coordinator.run(), name="coordinator"),
            asyncio.create_task(self.watch.run(), name="watch"),
            asyncio.create_task(self.trimmer.run(), name="trimmer"),
        ]
        pacer = collector.installed()  # by ``run_node``, not where a test runs a node
        if pacer is not None:
            self._tasks.append(asyncio.create_task(pacer.report(), name="collector"))

    async def stop_background(self) -> None:
        self.scheduler.stop()
        self.coordinator.stop()
        self.watch.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.executor.stop(drain_timeout=2.0)
        if not await self.scheduler.record_last_results(timeout=2.0):
            log.info("stopping with results not recorded: their runs will be sent again")
        if not await self.scheduler.declare_unsent_lost(timeout=2.0):
            log.info("stopping without handing over the runs not sent: the leader will")

    def close(self) -> None:
        self.log.stop()
        self.machine.close()


def _raft_log(
    settings: Settings, data_dir: Path, machine: StateMachine, on_proposed: ProposalObserver
) -> RaftLog:
    assert settings.secret_key is not None
    partners = [
        r.raft_address for r in settings.replicas if r.raft_address != settings.raft_address
    ]
    return RaftLog(
        RaftOptions(
            self_address=settings.raft_address,
            partner_addresses=partners,
            data_dir=data_dir,
            password=raft_password(settings.secret_key),
            apply_timeout=settings.raft_apply_timeout,
            snapshot_min_entries=settings.raft_snapshot_threshold,
            snapshot_min_time=settings.raft_snapshot_interval,
            connection_timeout=max(settings.raft_transport_timeout, 1.0) * 3.5,
            raft_min_timeout=settings.raft_election_timeout,
            raft_max_timeout=2 * settings.raft_election_timeout,
            leader_fallback_timeout=max(3.0, 3 * settings.raft_election_timeout),
            flush_before_ack=settings.flush_before_ack,
            max_message_bytes=max_message_bytes(settings.max_request_body_mb),
        ),
        machine,
        on_proposed,
    )
