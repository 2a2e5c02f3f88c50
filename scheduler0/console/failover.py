"""Which node the console reads from, and how fresh each panel is.

``Failover`` remembers the members of the last cluster view it was shown, so
that when the connected node stops answering the console can try the others
(one after another, the first one again last), and so that the switch dialog
still lists them after a failed switch. ``Freshness`` remembers when each
panel last got fresh rows, so rows older than one refresh are marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler0.console.source import ClusterView

FAILOVER_AFTER_FAILURES = 2
"""Consecutive "unreachable" refreshes of the cluster before another member is tried."""


def same_node(a: str, b: str) -> bool:
    return a.strip().rstrip("/") == b.strip().rstrip("/")


@dataclass
class Failover:
    last_view: ClusterView | None = None
    """The last cluster view any node answered: the members the console knows."""
    misses: int = 0
    """Consecutive refreshes of the cluster the connected node did not answer."""

    def learn(self, view: ClusterView) -> None:
        self.last_view = view

    def addresses(self) -> list[str]:
        members = self.last_view.members if self.last_view else ()
        return [m.address for m in members if m.address]

    def candidate(self, current: str) -> str | None:
        """The member after ``current`` in the known list (wrapping), or None when
        no other member is known, or when ``current`` is not one of them (a node
        typed in the switch dialog: its cluster's members are not known yet)."""
        known = self.addresses()
        here = next((i for i, a in enumerate(known) if same_node(a, current)), None)
        if here is None:
            return None
        for step in range(1, len(known)):
            address = known[(here + step) % len(known)]
            if not same_node(address, current):
                return address
        return None


@dataclass
class Freshness:
    """When each panel (``nodes``, ``jobs``, ``log``) last got rows."""

    landed_at: dict[str, float] = field(default_factory=dict)

    def landed(self, panel: str, now: float) -> None:
        self.landed_at[panel] = now

    def forget(self) -> None:
        self.landed_at.clear()

    def stale_age(self, panel: str, now: float, period: float | None) -> float | None:
        """The rows' age when they are older than one refresh (``period``
        seconds missed), else None; never stale without a periodic refresh."""
        landed = self.landed_at.get(panel)
        if period is None or landed is None:
            return None
        age = now - landed
        return age if age > 2 * period else None
