"""What the scheduler counts. One ``SchedulerStats`` is shared by the parts of
a ``Scheduler``; each part writes only its own fields (named below)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SchedulerStats:
    fired: int = 0
    """Fires the state machine accepted (firing)."""
    missed: int = 0
    """Slots recorded missed by accepted ``SlotsFired`` proposals (firing)."""
    skipped: int = 0
    """Slots an overlap policy skipped, in committed ``SlotsFired`` proposals (firing)."""
    cancelled: int = 0
    """Fires decided ahead of their slot and not sent: their job was paused or
    deleted before it (dispatch)."""
    lost: int = 0
    """This node's own dispatched executions it declared lost after a restart (adoption)."""
    lag_seconds: float = 0.0
    rejected: int = 0
    """Fires proposed but not accepted: another owner, or an older slot (firing)."""
    last_tick_at: float = 0.0
    """Clock at the start of the last tick (scheduler)."""
    results_backlog: int = 0
    """Callback outcomes not yet proposed (results)."""
    proposals_failed: int = 0
    """``SlotsFired`` proposals with no verdict: ambiguous (firing)."""
    redispatched: int = 0
    """Lost or pending executions taken over and re-sent (adoption)."""
    recent_lag: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    """``now - slot`` of the latest fires proposed (firing)."""
