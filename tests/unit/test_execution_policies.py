"""A job's execution policies as pure functions (a controlled clock, a
controlled random draw) and through the scheduling parts with a recording
executor: ``retry`` and ``timeout_seconds`` (carried on the ``Fire``)."""

from __future__ import annotations

import pytest

from scheduler0.daemon.executor.delivery import (
    Delivery,
    backoff_delay,
    job_plan,
    node_plan,
)
from scheduler0.daemon.scheduling.policy import fire_policy_of
from scheduler0.daemon.state.schema import encode_policy
from tests.unit.harness import T0, World, run_async
from tests.unit.test_firing import setup

pytestmark = pytest.mark.unit

NODE = node_plan(retry_max=3, retry_delay=1.0, timeout=30.0)


# -- retry and timeout: the plan ---------------------------------------------------------


def test_the_node_plan_is_the_executors_old_backoff() -> None:
    """min(delay * 2**(k-1), max(30, delay)), no jitter, for k = 1..8."""
    assert [NODE.delay(k, draw=0.9) for k in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    slow = node_plan(retry_max=1, retry_delay=45.0, timeout=30.0)
    assert [slow.delay(k, draw=0.0) for k in (1, 2, 3)] == [45, 45, 45]


def test_backoff_multiplies_and_caps() -> None:
    delays = [
        backoff_delay(k, initial=0.5, multiplier=3.0, cap=10.0, jitter=0.0, draw=0.7)
        for k in range(1, 6)
    ]
    assert delays == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_jitter_shortens_by_at_most_its_fraction() -> None:
    def delay(draw: float) -> float:
        return backoff_delay(3, initial=1.0, multiplier=2.0, cap=60.0, jitter=0.25, draw=draw)

    assert delay(0.0) == 4.0
    assert delay(0.5) == 3.5
    assert delay(0.999) == pytest.approx(3.001)
    capped = backoff_delay(9, initial=1.0, multiplier=2.0, cap=60.0, jitter=0.5, draw=0.5)
    assert capped == 45.0  # the cap (60) first, then the jitter: never above the cap


def test_huge_attempt_numbers_do_not_overflow() -> None:
    delay = backoff_delay(10_000, initial=86400.0, multiplier=10.0, cap=86400.0, jitter=0, draw=0)
    assert delay == 86400.0


def test_a_job_plan_overrides_only_what_it_sets() -> None:
    assert job_plan(NODE, None, 300.0) is NODE
    plan = job_plan(NODE, Delivery(retry_max=7, multiplier=1.5), 300.0)
    assert (plan.retry_max, plan.initial_seconds, plan.multiplier) == (7, 1.0, 1.5)
    assert (plan.cap_seconds, plan.jitter, plan.timeout_seconds) == (30.0, 0.0, 30.0)


def test_a_job_initial_delay_without_a_cap_keeps_the_nodes_cap_rule() -> None:
    assert job_plan(NODE, Delivery(initial_seconds=50.0), 300.0).cap_seconds == 50.0
    assert job_plan(NODE, Delivery(initial_seconds=2.0), 300.0).cap_seconds == 30.0
    plan = job_plan(NODE, Delivery(initial_seconds=2.0, cap_seconds=3.0), 300.0)
    assert [plan.delay(k, draw=0.0) for k in (1, 2, 3)] == [2.0, 3.0, 3.0]


def test_a_job_timeout_is_clamped_to_the_node_cap() -> None:
    assert job_plan(NODE, Delivery(timeout_seconds=5.0), 300.0).timeout_seconds == 5.0
    assert job_plan(NODE, Delivery(timeout_seconds=120.0), 300.0).timeout_seconds == 120.0
    assert job_plan(NODE, Delivery(timeout_seconds=3600.0), 300.0).timeout_seconds == 300.0


def test_fire_policy_is_none_for_a_plain_job_and_shared_for_equal_policies() -> None:
    assert fire_policy_of(None) is None
    assert fire_policy_of(encode_policy({"catchup": "all", "jitter_seconds": 5})) is None
    raw = encode_policy({"retry": {"attempts": 2, "initial_seconds": 0.5}, "timeout_seconds": 3})
    policy = fire_policy_of(raw)
    assert policy is not None and policy.delivery is not None
    assert (policy.delivery.retry_max, policy.delivery.initial_seconds) == (2, 0.5)
    assert (policy.delivery.multiplier, policy.delivery.timeout_seconds) == (None, 3)
    assert policy.overlap == "allow"
    assert fire_policy_of(str(raw)) is policy  # an equal text: the same object
    only_overlap = fire_policy_of(encode_policy({"overlap": "skip"}))
    assert only_overlap is not None and only_overlap.delivery is None


@run_async
async def test_fires_carry_their_jobs_retry_and_timeout(world: World) -> None:
    parts, plain = await setup(world, "@every 10s")
    [own] = await world.jobs(
        "@every 10s", policy={"retry": {"attempts": 5}, "timeout_seconds": 2.5}
    )
    await parts.tick(T0 + 10.1)
    by_job = {fire.job_id: fire for fire in world.executor.submitted}
    assert by_job[plain[0]].delivery is None
    delivery = by_job[own].delivery
    assert delivery is not None
    assert (delivery.retry_max, delivery.timeout_seconds) == (5, 2.5)
    await parts.tick(T0 + 20.1)  # the cached head carries it on the next fire too
    second = [f for f in world.executor.submitted if f.job_id == own][1]
    assert second.delivery is delivery
