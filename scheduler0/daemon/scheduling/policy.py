"""A job's policies as the scheduler reads them: pure functions of the stored
``policy`` (a JSON object of the fields set; NULL = every default).

The defaults are what a job did before policies existed: overlapping
executions allowed, the node's retry and timeout settings, the latest missed
slot caught up within ``MisfireGraceSeconds``, no bounds, no jitter, no run
limit, no automatic pause.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from scheduler0.daemon.executor.delivery import Delivery
from scheduler0.daemon.scheduling.cron import (
    NEVER,
    BoundedSchedule,
    Schedule,
    parse_schedule,
    resume_slot,
)


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """The policies of one job, defaults filled in (``None``: the node's setting)."""

    overlap: str = "allow"
    retry: dict[str, Any] | None = None
    timeout_seconds: float | None = None
    catchup: str = "latest"
    catchup_window_seconds: float | None = None
    start_at: float | None = None
    end_at: float | None = None
    jitter_seconds: int = 0
    max_runs: int | None = None
    pause_after_failures: int | None = None

    @property
    def bounded(self) -> bool:
        return self.start_at is not None or self.end_at is not None

    def window(self, grace: float) -> float:
        """How late a slot may still fire: the job's window, else the node's grace."""
        return grace if self.catchup_window_seconds is None else self.catchup_window_seconds

    def runs_left(self, fired_count: int) -> int | None:
        """Scheduled runs still allowed (None: no limit)."""
        return None if self.max_runs is None else max(0, self.max_runs - fired_count)


DEFAULT_POLICY = JobPolicy()


@lru_cache(maxsize=4096)
def policy_of(raw: str | None) -> JobPolicy:
    """The stored ``policy`` column (JSON, or NULL) as a ``JobPolicy``. Unknown
    keys are ignored (a newer node may store more)."""
    if raw is None:
        return DEFAULT_POLICY
    given = orjson.loads(raw)
    known = {k: v for k, v in given.items() if k in JobPolicy.__dataclass_fields__}
    if known.get("jitter_seconds") is None:
        known.pop("jitter_seconds", None)
    for name in ("overlap", "catchup"):
        if known.get(name) is None:
            known.pop(name, None)
    return JobPolicy(**known)


@lru_cache(maxsize=8192)
def job_schedule(spec: str, timezone: str, anchor: int, raw_policy: str | None) -> Schedule:
    """The job's grid with its ``start_at``/``end_at`` applied. Raises
    ``ScheduleError`` as ``parse_schedule`` does."""
    schedule = parse_schedule(spec, timezone, anchor)
    policy = policy_of(raw_policy)
    if policy.bounded:
        return BoundedSchedule(schedule, policy.start_at, policy.end_at)
    return schedule


def job_next_run(
    spec: str,
    timezone: str,
    anchor: int,
    raw_policy: str | None,
    not_before: int,
    last_fired: int | None,
    fired_count: int,
) -> int:
    """A job's next slot from its stored fields (``cron.NEVER`` when it has
    none left: completed, or ``@manually``)."""
    schedule = job_schedule(spec, timezone, anchor, raw_policy)
    runs_left = policy_of(raw_policy).runs_left(fired_count)
    return resume_slot(schedule, not_before, last_fired, runs_left)


class TooManySlots(ValueError):
    """A range holding more slots than allowed; ``last`` is the last allowed one."""

    def __init__(self, limit: int, last: int) -> None:
        super().__init__(f"more than {limit} slots")
        self.limit = limit
        self.last = last


def slots_between(schedule: Schedule, start: float, end: float, limit: int) -> list[int]:
    """The slots of ``schedule`` from ``start`` to ``end``, both included,
    ascending (what a backfill fires). Raises ``TooManySlots`` past ``limit``
    slots, without walking the rest of the range."""
    slots: list[int] = []
    slot = schedule.next_after(math.ceil(start) - 1)
    while slot != NEVER and slot <= end:
        if len(slots) == limit:
            raise TooManySlots(limit, slots[-1])
        slots.append(slot)
        slot = schedule.next_after(slot)
    return slots


def jitter_offset(job_id: int, slot: int, jitter_seconds: int) -> int:
    """The seconds after ``slot`` at which the job's callback for it is sent:
    0..``jitter_seconds``, from a hash of (job, slot). A stable hash (not
    Python's ``hash``, which is salted per process), so every node, and every
    restart, computes the same offset for the same slot."""
    if jitter_seconds <= 0:
        return 0
    digest = hashlib.blake2b(f"{job_id}:{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (jitter_seconds + 1)


@dataclass(frozen=True, slots=True)
class FirePolicy:
    """What the owner needs, per fire, of a job's policies: its retry and
    timeout overrides for the executor, and its overlap rule."""

    delivery: Delivery | None
    overlap: str


@lru_cache(maxsize=4096)
def fire_policy_of(raw: str | None) -> FirePolicy | None:
    """The stored ``policy`` as the dispatcher caches it with the job's
    payload head: None for a job without retry, timeout or overlap policies
    (nothing extra per fire). Cached, so jobs with the same stored policy
    share one ``Delivery``, and their fires still batch into one POST."""
    policy = policy_of(raw)
    delivery = delivery_of(policy)
    if delivery is None and policy.overlap == "allow":
        return None
    return FirePolicy(delivery, policy.overlap)


def delivery_of(policy: JobPolicy) -> Delivery | None:
    """The job's ``retry`` and ``timeout_seconds`` as the executor reads them
    (None: the node's settings)."""
    retry = policy.retry or {}
    if not retry and policy.timeout_seconds is None:
        return None
    return Delivery(
        retry_max=retry.get("attempts"),
        initial_seconds=retry.get("initial_seconds"),
        multiplier=retry.get("multiplier"),
        cap_seconds=retry.get("cap_seconds"),
        jitter=retry.get("jitter"),
        timeout_seconds=policy.timeout_seconds,
    )
