"""Keep full garbage collections short while the node's long-lived objects grow.

CPython's cycle collector walks every object it tracks on a full (generation
2) collection, holding the GIL throughout: the event loop (ticks, callbacks,
health checks), the raft thread and every request wait. A node's long-lived
objects grow with its jobs: an ``OwnedJob`` and a heap entry per owned job,
the cached schedules. At 10,000 jobs a node tracked ~140,000 objects and a
full collection, triggered by whatever allocated last (a page of 10,000 jobs,
a batch of 1,000), took 30-100 ms on a busy 2-core machine; at 1,000,000 jobs
it walks millions.

The remedy is :func:`gc.freeze`: the objects that survived a full collection
move to the permanent generation, which later collections do not walk. They
are still freed by reference counting when the last reference goes (a job
deleted, a bucket moved away); only a *cycle* among them that becomes garbage
is never collected. So the node freezes only after a full collection that took
longer than ``FREEZE_AFTER_SECONDS``: that takes at least ~100,000 new
long-lived objects since the last freeze, which bounds how often it happens
(a node that stops growing stops freezing) and so how much cyclic garbage can
be kept: what was alive at those moments and later died in a cycle.

The youngest generation is collected after ``YOUNG_THRESHOLD`` net new
tracked objects, not CPython's 700. A node works in batches: a tick's 5,000
fires are decoded into 5,000 lists, become 5,000 ``Fire`` objects held until
their slot, their results; most live for a batch or two seconds, then go by
reference counting. At 700 a collection came in the middle of nearly every
batch, walked the batch's live objects and moved them to older generations,
whose collections walked them again: at 10,000 fires a second on 3 nodes a
worker spent ~2 % of a core collecting (1.37 s in 70 s: 0.38 s young, 0.55 s
middle, 0.44 s full; measured with ``gc.callbacks``), half of that at 20,000
(1.28 s in 140 s). Cyclic garbage waits longer: ~5 MB more peak memory at
that rate; 50,000 cut the time to a tenth but added ~65 MB.

:func:`configure` installs it, once, at start. ``gc.freeze`` only splices the
collector's lists (constant time), so it is done inside the callback;
``Pacer.report`` logs the freezes from the event loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

FREEZE_AFTER_SECONDS = 0.02
"""A full collection that took longer freezes the objects that survived it."""

YOUNG_THRESHOLD = 20_000
"""Net new tracked objects between two collections of the youngest generation
(CPython's default: 700); the older generations' thresholds stay."""


class Pacer:
    def __init__(self, freeze_after: float) -> None:
        self.freeze_after = freeze_after
        self.started = 0.0
        self.freezes = 0
        self.longest = 0.0
        """The longest full collection seen, seconds."""
        self.last = (0.0, 0)
        """The last freeze: how long its collection took, objects frozen in all."""

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        self.longest = max(self.longest, took)
        if took > self.freeze_after:
            gc.freeze()  # no logging here: a callback runs inside any allocation
            self.freezes += 1
            self.last = (took, gc.get_freeze_count())

    async def report(self, period: float = 5.0) -> None:
        """Log each freeze (from the event loop, not from inside a collection)."""
        logged = 0
        while True:
            await asyncio.sleep(period)
            if self.freezes != logged:
                took, frozen = self.last
                log.info(
                    "a full garbage collection took %.0f ms: its survivors are frozen"
                    " (%d objects not walked again; %d freeze(s) so far)",
                    took * 1000,
                    frozen,
                    self.freezes,
                )
                logged = self.freezes


_installed: Pacer | None = None


def configure(freeze_after: float = FREEZE_AFTER_SECONDS) -> Pacer:
    """Install the pacing (see the module's docstring); idempotent."""
    global _installed
    if _installed is None:
        _installed = Pacer(freeze_after)
        gc.callbacks.append(_installed)
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return _installed


def installed() -> Pacer | None:
    """The pacing if this process runs a node (``configure`` was called)."""
    return _installed
