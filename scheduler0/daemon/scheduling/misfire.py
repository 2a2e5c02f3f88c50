"""The misfire policy, as pure functions of one job's due slots.

A job's ``catchup`` policy (``catch_up``) chooses among three splits; the
default, ``latest``, is the one described here:

When more than one slot of a job is due at once (after a restart, a takeover
or a stall), the latest due slot fires if it is no older than the misfire
grace; every other due slot is recorded ``missed``. At most ``MISSED_LISTED``
missed slots per job and tick become execution rows (the latest ones); the
rest only add to the job's ``missed_count``.

Both functions read no clock and no state, and run on the hot path, once per
fire. ``following_if_on_time`` answers the common case (exactly one slot due,
within the grace) with one int; only otherwise does the caller need
``due_slots`` and its ``DueSlots``. (A ``DueSlots`` built for every fire costs
~3,000 more CPU instructions per fire, ~9% of the scheduler's work per fire;
the shortcut also skips the empty list and tuple the common case used to build.)
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from scheduler0.daemon.scheduling.cron import NEVER, EverySchedule, Schedule

MISSED_LISTED = 100
"""Missed slots of one job listed one by one (as ``missed`` rows) per tick."""
SCAN_LIMIT = 10_000
"""Cron slots walked one by one at most from the job's next slot; past that the
backlog is not counted, and the walk resumes shortly before now (at most as
many slots again) to find the latest ones."""


class DueSlots(NamedTuple):
    """How a job's due slots split."""

    fire: int | None
    """The slot to fire, or None when even the latest due slot is past the grace."""
    listed: list[int]
    """Missed slots to record one by one: at most ``MISSED_LISTED``, ascending."""
    uncounted: int
    """Further missed slots, only counted."""
    following: int
    """The job's next slot: the first one after ``now``."""


def following_if_on_time(schedule: Schedule, slot: int, now: float, grace: float) -> int | None:
    """If ``slot`` is the only due slot and within the grace (or not due yet:
    a run decided ahead), the job's next slot after it; else None. Whenever it returns ``f``,
    ``due_slots(schedule, slot, now, grace)`` is ``DueSlots(slot, [], 0, f)``."""
    if now - slot > grace:
        return None
    if isinstance(schedule, EverySchedule):
        following = slot + schedule.period
    else:
        following = schedule.next_after(slot)
    return following if following > now else None


def due_slots(schedule: Schedule, slot: int, now: float, grace: float) -> DueSlots:
    """Split the due slots of ``schedule`` from ``slot`` (the job's next slot,
    ``slot <= now``) up to ``now``: the latest fires if ``now - latest <= grace``,
    every earlier one (and the latest, if too old) is missed."""
    if isinstance(schedule, EverySchedule):
        period = schedule.period
        due = int((now - slot) // period) + 1
        latest = slot + (due - 1) * period
        following = latest + period
        first_listed = max(slot, latest - MISSED_LISTED * period)
        listed = list(range(first_listed, latest, period))
        uncounted = due - 1 - len(listed)
    else:
        recent: deque[int] = deque(maxlen=MISSED_LISTED + 1)
        first = slot
        slot, count = _walk(schedule, slot, now, recent)
        if slot <= now:
            # An enormous backlog: the rest up to a stretch before ``now`` goes
            # uncounted, and the walk resumes there, so the latest due slot (to
            # fire within the grace) and the missed ones listed are the latest.
            stretch = 2 * (MISSED_LISTED + 1) * (slot - first) / count
            resume = schedule.next_after(int(now - max(stretch, grace)))
            if resume > slot:
                recent.clear()
                slot = resume
            slot, walked = _walk(schedule, slot, now, recent)
            count += walked
            if slot <= now:  # slots far denser near now than before: resume after now
                slot = schedule.next_after(int(now))
        following = slot
        latest = recent.pop()
        listed = list(recent)
        uncounted = count - 1 - len(listed)
    if now - latest > grace:
        listed.append(latest)
        return DueSlots(
            None,
            listed[-MISSED_LISTED:],
            uncounted + max(0, len(listed) - MISSED_LISTED),
            following,
        )
    return DueSlots(latest, listed, uncounted, following)


def _walk(schedule: Schedule, slot: int, now: float, recent: deque[int]) -> tuple[int, int]:
    """Walk the slots from ``slot`` up to ``now``, at most ``SCAN_LIMIT`` of
    them, into ``recent``; returns the slot it stopped at and how many it took."""
    count = 0
    while slot <= now and count < SCAN_LIMIT:
        recent.append(slot)
        slot = schedule.next_after(slot)
        count += 1
    return slot, count


CATCHUP_FIRES = 100
"""Slots of one job fired per tick by ``catchup=all``; the rest fire in the
next ticks (the job stays due), so a long backlog cannot fill one command."""


class CaughtUp(NamedTuple):
    """How a job's due slots split under its catch-up policy."""

    fires: list[int]
    """The slots to fire, ascending (at most one, except for ``catchup=all``)."""
    listed: list[int]
    """Missed slots to record one by one: at most ``MISSED_LISTED``, ascending."""
    uncounted: int
    """Further missed slots, only counted."""
    following: int
    """The job's next slot (``cron.NEVER`` when it has none left)."""


def catch_up(
    schedule: Schedule,
    slot: int,
    now: float,
    window: float,
    catchup: str,
    runs_left: int | None = None,
    max_fires: int = CATCHUP_FIRES,
) -> CaughtUp:
    """Split the due slots of ``schedule`` from ``slot`` (``<= now``) by a
    job's catch-up policy, ``window`` being how late a slot may fire:

    * ``latest`` (the default): ``due_slots`` (the latest within the window
      fires, every other one is missed);
    * ``all``: every slot within the window fires, oldest first (at most
      ``max_fires`` per call; the job's next slot is then the first one not
      fired, still due), older ones are missed;
    * ``none``: one slot due and within the window fires (it is on time); when
      several are due at once, every one is missed and the job waits for its
      next slot.

    ``runs_left`` (a job's ``max_runs`` less its runs; None: no limit) caps the
    fires; the last run allowed leaves the job with no next slot (``NEVER``).
    """
    if catchup == "all":
        caught = _all_within(schedule, slot, now, window, max_fires)
    else:
        fire, listed, uncounted, following = due_slots(schedule, slot, now, window)
        fires = [] if fire is None else [fire]
        if catchup == "none" and fire is not None and (listed or uncounted):
            listed = [*listed, fire]
            uncounted += max(0, len(listed) - MISSED_LISTED)
            listed = listed[-MISSED_LISTED:]
            fires = []
        caught = CaughtUp(fires, listed, uncounted, following)
    if runs_left is not None and len(caught.fires) >= runs_left:
        return caught._replace(fires=caught.fires[:runs_left], following=NEVER)
    return caught


def _all_within(
    schedule: Schedule, slot: int, now: float, window: float, max_fires: int
) -> CaughtUp:
    """``catchup=all``: the slots older than the window missed (as
    ``due_slots`` lists them), the rest fired in order."""
    too_old = math.ceil(now - window) - 1  # this slot and earlier ones are missed
    listed: list[int] = []
    uncounted = 0
    at = slot
    if slot <= too_old:
        _, listed, uncounted, at = due_slots(schedule, slot, too_old, -1.0)
    fires: list[int] = []
    while at <= now and len(fires) < max_fires:
        fires.append(at)
        at = schedule.next_after(at)
    return CaughtUp(fires, listed, uncounted, at)
