"""One scheduler0 node: raft + state machine + scheduler + executor + HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request

from scheduler0 import __version__
from scheduler0.config import Settings
from scheduler0.daemon.cluster import Coordinator
from scheduler0.daemon.executor.http import Executor
from scheduler0.daemon.raft import RaftNode, RaftOptions, raft_password
from scheduler0.daemon.scheduling.scheduler import Scheduler
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import remove_database
from scheduler0.errors import NoQuorum

log = logging.getLogger("scheduler0")

MEMORY_SOFT_LIMIT = 0.7
"""Above this share of MaxMemory the node stops taking new jobs."""


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = data_dir / "state.db"
        # The database is a function of snapshot + journal: rebuild it, so that
        # the journal replay pysyncobj does at start never applies a command twice.
        remove_database(self.db_path)
        self.machine = StateMachine(self.db_path, on_change=self._on_change)
        self.queries = Queries(self.db_path)
        assert settings.secret_key is not None
        partners = [
            r.raft_address for r in settings.replicas if r.raft_address != settings.raft_address
        ]
        self.raft = RaftNode(
            RaftOptions(
                self_address=settings.raft_address,
                partner_addresses=partners,
                data_dir=data_dir,
                password=raft_password(settings.secret_key),
                apply_timeout=settings.raft_apply_timeout,
                snapshot_min_entries=settings.raft_snapshot_threshold,
                snapshot_min_time=settings.raft_snapshot_interval,
                connection_timeout=max(settings.raft_transport_timeout, 1.0) * 3.5,
            ),
            self.machine,
        )
        self.executor = Executor(
            max_workers=settings.max_workers,
            max_queue=settings.max_queue,
            timeout=settings.job_execution_timeout,
            retry_max=settings.job_execution_retry_max,
            retry_delay=settings.job_execution_retry_delay,
            payload_max_bytes=int(settings.http_executor_payload_max_size_mb * 2**20),
            node_id=settings.node_id,
        )
        self.scheduler = Scheduler(
            node_id=settings.node_id,
            raft=self.raft,
            machine=self.machine,
            queries=self.queries,
            executor=self.executor,
            misfire_grace=settings.misfire_grace_seconds,
        )
        self.coordinator = Coordinator(self)
        self._tasks: list[asyncio.Task[None]] = []

    def _on_change(self, kind: str, detail: Any) -> None:
        scheduler = getattr(self, "scheduler", None)
        if scheduler is not None:
            scheduler.on_change(kind, detail)

    # -- life cycle ------------------------------------------------------------------------

    def start_raft(self) -> None:
        self.raft.start()
        self.raft.wait_bound()

    async def start_background(self) -> None:
        await self.executor.start()
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self.coordinator.run(), name="coordinator"),
        ]

    async def stop_background(self) -> None:
        self.scheduler.stop()
        self.coordinator.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.executor.stop(drain_timeout=2.0)

    def close(self) -> None:
        self.raft.stop()
        self.machine.close()

    # -- used by the API -------------------------------------------------------------------

    async def propose(self, command: c.Command) -> Any:
        if isinstance(command, c.JobsCreated) and self.over_memory():
            raise NoQuorum(
                f"node {self.settings.node_id} is above {int(MEMORY_SOFT_LIMIT * 100)}% of"
                f" MaxMemory ({self.settings.max_memory} MB) and takes no new jobs"
            )
        return await self.raft.propose(command)

    async def change_membership(self, action: str, raft_address: str) -> None:
        """Add or remove a raft member, one at a time; 503 if not committed in time."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, int]] = loop.create_future()

        def settle(outcome: tuple[Any, int]) -> None:
            if not future.done():
                future.set_result(outcome)

        def done(outcome: tuple[Any, int]) -> None:
            loop.call_soon_threadsafe(settle, outcome)

        change = self.raft.add_member if action == "add" else self.raft.remove_member
        change(raft_address, done)
        try:
            _, fail = await asyncio.wait_for(future, self.settings.raft_apply_timeout * 5)
        except TimeoutError:
            raise NoQuorum(f"the membership change ({action} {raft_address}) timed out") from None
        if fail != 0:
            raise NoQuorum(f"the membership change ({action} {raft_address}) failed ({fail})")

    async def read_barrier(self, request: Request) -> None:
        if request.query_params.get("consistency") == "strong":
            await self.raft.barrier()

    def over_memory(self) -> bool:
        limit = self.settings.max_memory * 2**20 * MEMORY_SOFT_LIMIT
        return rss_bytes() > limit

    def health(self) -> dict[str, Any]:
        raft = self.raft.status()
        healthy = bool(raft.get("ready")) and bool(raft.get("has_quorum"))
        return {
            "status": "ok" if healthy and not self.over_memory() else "degraded",
            "node_id": self.settings.node_id,
            "version": __version__,
            "role": raft.get("state"),
            "ready": raft.get("ready", False),
            "has_quorum": raft.get("has_quorum", False),
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }

    def local_status(self) -> dict[str, Any]:
        scheduler = self.scheduler
        stats = scheduler.stats
        return {
            "node_id": self.settings.node_id,
            "address": self.settings.http_base_url,
            "raft_address": self.settings.raft_address,
            "raft": self.raft.status(),
            "epoch": self.machine.epoch,
            "buckets_owned": scheduler.owned_buckets,
            "jobs_owned": scheduler.owned_jobs,
            "queue_depth": self.executor.queue_depth + scheduler.due_backlog,
            "in_flight": self.executor.in_flight,
            "fire_lag_p99_seconds": round(scheduler.lag_p99(), 3),
            "fired": stats.fired,
            "rejected": stats.rejected,
            "redispatched": stats.redispatched,
            "results_backlog": stats.results_backlog,
            "rss_bytes": rss_bytes(),
            "over_memory": self.over_memory(),
            "counts": self.queries.counts(),
        }

    def status(self) -> dict[str, Any]:
        local = self.local_status()
        owners = self.machine.owners
        buckets: dict[str, int] = {}
        for owner in owners:
            buckets[str(owner)] = buckets.get(str(owner), 0) + 1
        return {
            "node": local,
            "leader": local["raft"].get("leader"),
            "term": local["raft"].get("term"),
            "epoch": self.machine.epoch,
            "buckets_per_node": buckets,
            "members": self.queries.members(),
        }


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level={"WARN": logging.WARNING}.get(level.upper(), getattr(logging, level.upper())),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_node(settings: Settings) -> int:
    """Run a node until SIGINT/SIGTERM; returns the process exit code."""
    import uvicorn

    configure_logging(settings.log_level)
    node = Node(settings)
    try:
        node.start_raft()
    except Exception as exc:
        log.error("%s", exc)
        node.machine.close()
        return 1
    app = __import__("scheduler0.daemon.api.app", fromlist=["create_app"]).create_app(node)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    log.info(
        "node %s serving http://%s:%s (raft %s, data %s)",
        settings.node_id,
        settings.host,
        settings.port,
        settings.raft_address,
        settings.data_dir,
    )
    # uvicorn re-raises the signal after its graceful shutdown; make SIGTERM
    # end up here like Ctrl-C so the raft log is closed cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
    return 0 if server.started else 1
