"""How one callback is retried and how long an attempt may take: the node's
settings, or a job's own ``retry`` and ``timeout_seconds`` over them.

A job's overrides travel on its ``Fire`` as a ``Delivery`` (None: the node's
settings, what every job did before policies existed). The executor resolves
it once per chunk into a ``RetryPlan``, the only thing its retry loop reads.
Everything here is a pure function, so the backoff can be tested with a
controlled random draw.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_CAP_SECONDS = 30.0
"""The node's cap on one retry delay (or ``JobExecutionRetryDelay`` if larger)."""
NODE_MULTIPLIER = 2.0
"""The node's backoff: each retry waits twice as long as the previous one."""


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """A job's retry and timeout overrides; a None field keeps the node's
    setting. Instances are shared by every job with the same stored policy
    (``policy.fire_policy_of`` is cached), and compared by identity: fires
    batch into one POST only when they share the same object (or None)."""

    retry_max: int | None = None
    initial_seconds: float | None = None
    multiplier: float | None = None
    cap_seconds: float | None = None
    jitter: float | None = None
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """Everything the executor's retry loop reads for one chunk."""

    retry_max: int
    """Retries after the first attempt."""
    initial_seconds: float
    multiplier: float
    cap_seconds: float
    jitter: float
    """Each delay is shortened by a random fraction of itself, up to this (0..1)."""
    timeout_seconds: float
    """The whole of one attempt (connect, send, answer)."""

    def delay(self, retry_number: int, draw: float) -> float:
        """Seconds before retry ``retry_number`` (1, 2, ...); ``draw`` is a
        uniform random number in [0, 1)."""
        return backoff_delay(
            retry_number,
            initial=self.initial_seconds,
            multiplier=self.multiplier,
            cap=self.cap_seconds,
            jitter=self.jitter,
            draw=draw,
        )


def node_plan(*, retry_max: int, retry_delay: float, timeout: float) -> RetryPlan:
    """The node's settings as a plan: retry ``k`` waits
    ``min(retry_delay * 2**(k-1), max(30, retry_delay))`` seconds, no jitter."""
    delay = max(0.0, retry_delay)
    return RetryPlan(
        retry_max=max(0, retry_max),
        initial_seconds=delay,
        multiplier=NODE_MULTIPLIER,
        cap_seconds=max(BACKOFF_CAP_SECONDS, delay),
        jitter=0.0,
        timeout_seconds=timeout,
    )


def job_plan(node: RetryPlan, job: Delivery | None, timeout_cap: float) -> RetryPlan:
    """``node`` with the job's overrides set over it. The job's timeout is
    clamped to ``timeout_cap`` (``JobExecutionTimeoutMax``): a job cannot hold
    a worker longer than the node allows. A job that sets ``initial_seconds``
    without ``cap_seconds`` keeps the node's rule for the cap,
    ``max(30, initial)``."""
    if job is None:
        return node
    initial = node.initial_seconds if job.initial_seconds is None else job.initial_seconds
    if job.cap_seconds is not None:
        cap = job.cap_seconds
    elif job.initial_seconds is not None:
        cap = max(BACKOFF_CAP_SECONDS, initial)
    else:
        cap = node.cap_seconds
    timeout = node.timeout_seconds if job.timeout_seconds is None else job.timeout_seconds
    return RetryPlan(
        retry_max=node.retry_max if job.retry_max is None else job.retry_max,
        initial_seconds=initial,
        multiplier=node.multiplier if job.multiplier is None else job.multiplier,
        cap_seconds=cap,
        jitter=node.jitter if job.jitter is None else job.jitter,
        timeout_seconds=min(timeout, timeout_cap),
    )


def backoff_delay(
    retry_number: int, *, initial: float, multiplier: float, cap: float, jitter: float, draw: float
) -> float:
    """``min(initial * multiplier**(k-1), cap)``, shortened by ``jitter *
    draw`` of itself. The exponent is clamped so that a large attempt count
    cannot overflow the float; jitter only shortens, so the cap holds."""
    base = min(initial * multiplier ** min(max(retry_number - 1, 0), 64), cap)
    return float(base * (1.0 - jitter * draw))
