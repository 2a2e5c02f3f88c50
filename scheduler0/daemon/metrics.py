"""Prometheus metrics of one node (prometheus-client), served at ``GET /metrics``.

Names follow Prometheus conventions: the ``scheduler0_`` prefix, base units
(seconds, bytes), ``_total`` for counters. Labels are bounded: a status class,
a raft state, a command type; never a job, project or URL.

Two kinds of sources. Events on hot paths (a callback's outcome, a fire's
lateness, an apply) are counted where they happen, as cheaply as possible: the
per-fire lateness goes into a plain bucket array, not a locked histogram. Levels
(queue depth, raft indexes, job counts, the guards) are read when scraped, from
``Readings`` the node provides.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Seconds from a slot to its callback's completion."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds of one callback attempt."""


PROPOSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0)
"""Seconds from proposing a command to its outcome on the proposing node."""


def status_class(status_code: int | None, error: str | None) -> str:
    """``2xx``..``5xx`` for an answer; ``timeout`` or ``error`` for none."""
    if status_code is not None:
        return f"{status_code // 100}xx"
    return "timeout" if error and error.startswith("timeout") else "error"


class _Buckets:
    """A histogram without a lock per observation: the event loop's thread
    observes, a scrape reads (a torn read is off by one fire at most)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        counts, bounds = self.counts, self.bounds
        total = 0.0
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
            total += value
        self.total += total

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


@dataclass
class Readings:
    """What a scrape reads from the node, each a cheap call."""

    scheduler: Callable[[], dict[str, int]]
    """fired, rejected, redispatched, missed, lost (totals of this node)."""
    executor: Callable[[], dict[str, int]]
    """queue_depth, in_flight."""
    raft: Callable[[], dict[str, Any]]
    """The log's status."""
    counts: Callable[[], dict[str, int]]
    """projects, jobs, executions."""
    guards: Callable[[], dict[str, Any]]
    """over_memory (bool), rss_bytes, disk_free_bytes."""
    leader_changes: Callable[[], int]


class Metrics:
    """Every metric of one node, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.callbacks = Counter(
            "scheduler0_callbacks_total",
            "Callback deliveries (fires) by how their last attempt ended.",
            ["outcome"],
            registry=self.registry,
        )
        self.callback_latency = Histogram(
            "scheduler0_callback_latency_seconds",
            "Duration of one callback POST attempt.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.apply_duration = Histogram(
            "scheduler0_apply_duration_seconds",
            "Time to apply one replicated command to the local database, by command type.",
            ["command"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.propose_duration = Histogram(
            "scheduler0_propose_duration_seconds",
            "Time from this node proposing a command to its outcome here, by command type"
            " and outcome: ok (committed and applied on this node), refused (committed;"
            " the state machine refused it, e.g. a conflict), not_committed (no quorum or"
            " leader in time: it may still be applied later) or failed (this node's own"
            " fault, or the proposer stopped waiting).",
            ["command", "outcome"],
            buckets=PROPOSE_BUCKETS,
            registry=self.registry,
        )
        self.snapshot_duration = Histogram(
            "scheduler0_snapshot_duration_seconds",
            "Time to write one raft snapshot (a backup of the database), beside apply.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.snapshot_pin = Histogram(
            "scheduler0_snapshot_pin_seconds",
            "Time apply was held to start one raft snapshot (the rest is written"
            " beside apply, in scheduler0_snapshot_duration_seconds).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self._lateness = _Buckets(LATENESS_BUCKETS)
        self._snapshot_bytes = 0
        self._readings: Readings | None = None
        self.registry.register(_Levels(self))

    # -- events ---------------------------------------------------------------------------

    def delivered(self, lateness: Iterable[float]) -> None:
        """Seconds from slot to completed callback of fires whose callback succeeded."""
        self._lateness.observe_many(lateness)

    def proposed(self, command: str, outcome: str, seconds: float) -> None:
        """One proposal of this node decided (``raft.ProposalObserver``)."""
        self.propose_duration.labels(command, outcome).observe(seconds)

    def snapshot_written(self, seconds: float, size: int, pinned: float = 0.0) -> None:
        self.snapshot_duration.observe(seconds)
        self.snapshot_pin.observe(pinned)
        self._snapshot_bytes = size

    def read_from(self, readings: Readings) -> None:
        self._readings = readings

    def exposition(self) -> bytes:
        text: bytes = generate_latest(self.registry)
        return text


class _Levels(Collector):  # type: ignore[misc]
    """Levels and node-side totals, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        metrics = self._metrics
        yield metrics._lateness.family(
            "scheduler0_delivery_lateness_seconds",
            "From a fire's scheduled slot to the end of its successful callback.",
        )
        snapshot = GaugeMetricFamily(
            "scheduler0_snapshot_size_bytes", "Size of the last raft snapshot written."
        )
        snapshot.add_metric([], metrics._snapshot_bytes)
        yield snapshot
        readings = metrics._readings
        if readings is None:
            return
        yield from _scheduler_families(readings.scheduler())
        yield from _executor_families(readings.executor())
        yield from _raft_families(readings.raft(), readings.leader_changes())
        counts = readings.counts()
        for name, documentation in (
            ("jobs", "Jobs in the replicated state."),
            ("projects", "Projects in the replicated state."),
            ("executions", "Execution rows kept (after retention)."),
        ):
            gauge = GaugeMetricFamily(f"scheduler0_{name}", documentation)
            gauge.add_metric([], counts.get(name, 0))
            yield gauge
        yield from _guard_families(readings.guards())


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _scheduler_families(stats: dict[str, int]) -> Iterable[Metric]:
    fires = CounterMetricFamily(
        "scheduler0_fires",
        "Fires this node proposed, by what became of them: accepted (called back),"
        " rejected (stale), missed (recorded missed), skipped (by an overlap policy),"
        " lost (declared lost by this node),"
        " redispatched (lost or run-now executions this node took over),"
        " cancelled (accepted ahead of its slot, not sent: its job was paused or deleted"
        " before the slot).",
        labels=["result"],
    )
    for result in (
        "accepted",
        "rejected",
        "missed",
        "skipped",
        "lost",
        "redispatched",
        "cancelled",
    ):
        fires.add_metric([result], stats.get(result, 0))
    yield fires


def _executor_families(stats: dict[str, int]) -> Iterable[Metric]:
    yield _gauge(
        "scheduler0_queue_depth", "Fires waiting for a callback worker.", stats["queue_depth"]
    )
    yield _gauge(
        "scheduler0_in_flight",
        "Fires being posted or waiting between attempts.",
        stats["in_flight"],
    )


def _raft_families(raft: dict[str, Any], leader_changes: int) -> Iterable[Metric]:
    role = GaugeMetricFamily(
        "scheduler0_raft_role", "1 for this node's current raft role.", labels=["role"]
    )
    for name in ("leader", "follower", "candidate"):
        role.add_metric([name], 1 if raft.get("state") == name else 0)
    yield role
    yield _gauge("scheduler0_raft_term", "Current raft term.", raft.get("term") or 0)
    yield _gauge(
        "scheduler0_raft_commit_index",
        "Highest log index known committed.",
        raft.get("commit_index") or 0,
    )
    yield _gauge(
        "scheduler0_raft_applied_index",
        "Highest log index applied here.",
        raft.get("applied_index") or 0,
    )
    yield _gauge(
        "scheduler0_raft_has_quorum",
        "1 if this node sees a quorum.",
        1 if raft.get("has_quorum") else 0,
    )
    yield _counter(
        "scheduler0_raft_leader_changes",
        "Times this node saw the leader change since it started.",
        leader_changes,
    )


def _guard_families(guards: dict[str, Any]) -> Iterable[Metric]:
    yield _gauge(
        "scheduler0_memory_guard_active",
        "1 while the node refuses new jobs for being above its MaxMemory share.",
        1 if guards.get("over_memory") else 0,
    )
    yield _gauge(
        "scheduler0_disk_guard_active",
        "1 while the node refuses writes for lack of free disk space (MinFreeDiskMb).",
        1 if guards.get("low_disk") else 0,
    )
    yield _gauge("scheduler0_resident_memory_bytes", "Resident memory.", guards["rss_bytes"])
    yield _gauge(
        "scheduler0_disk_free_bytes",
        "Free bytes on the data directory's file system.",
        guards["disk_free_bytes"],
    )
