"""The numbers behind the console's sparklines, over the last minutes.

Per node, from each ``GET /cluster`` the console makes (about once a second):
fires per second (the change of the node's ``fired`` counter over the time
between two views) and its delivery lateness p99 (slot to completed callback,
as the node reports it). For a job, the lateness of its recent finished runs:
from the slot to when the result was recorded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from scheduler0.console import format as fmt
from scheduler0.console.source import ClusterView, Execution

SAMPLES = 300
"""Points kept per series: five minutes at one view a second."""


@dataclass
class NodeSeries:
    fires_per_second: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    delivery_p99: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    last_count: tuple[float, int] | None = None
    """(when, fired) of the previous view, for the next rate."""


class ClusterHistory:
    def __init__(self) -> None:
        self.nodes: dict[int, NodeSeries] = {}

    def add(self, view: ClusterView, now: float) -> None:
        """One view's points. An unreachable member adds none; a counter that went
        back (the node restarted) starts its rate again."""
        for member in view.members:
            if not member.reachable:
                continue
            series = self.nodes.setdefault(member.node_id, NodeSeries())
            if member.delivery_lag_p99_seconds is not None:
                series.delivery_p99.append(member.delivery_lag_p99_seconds)
            if member.fired is None:
                continue
            previous = series.last_count
            series.last_count = (now, member.fired)
            if previous is None:
                continue
            elapsed, fired = now - previous[0], member.fired - previous[1]
            if elapsed > 0 and fired >= 0:
                series.fires_per_second.append(fired / elapsed)

    def series(self, node_id: int) -> NodeSeries:
        return self.nodes.get(node_id) or NodeSeries()

    def clear(self) -> None:
        self.nodes.clear()


FINISHED = ("success", "failed")


def lateness(executions: Sequence[Execution]) -> list[float]:
    """Seconds from slot to recorded result of the finished runs, oldest first
    (``executions`` come newest first)."""
    points: list[float] = []
    for execution in reversed(executions):
        if execution.state not in FINISHED:
            continue
        slot = fmt.parse_time(execution.scheduled_at)
        done = fmt.parse_time(execution.updated_at)
        if slot is not None and done is not None:
            points.append(max(0.0, (done - slot).total_seconds()))
    return points
