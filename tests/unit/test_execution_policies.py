"""A job's execution policies as pure functions (a controlled clock, a
controlled random draw) and through the scheduling parts with a recording
executor: ``retry`` and ``timeout_seconds`` (carried on the ``Fire``), and
``overlap`` (decided by the owner, recorded by apply)."""

from __future__ import annotations

import pytest

from scheduler0.daemon.executor.delivery import (
    Delivery,
    backoff_delay,
    job_plan,
    node_plan,
)
from scheduler0.daemon.executor.http import Fire
from scheduler0.daemon.scheduling.overlap import InFlight, overlap_split, skip_reason
from scheduler0.daemon.scheduling.policy import fire_policy_of
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.schema import encode_policy
from tests.unit.harness import T0, RecordingExecutor, World, run_async
from tests.unit.test_firing import setup
from tests.unit.test_scheduler import scheduler, tick

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


# -- overlap: the split, and what is in flight -----------------------------------------------


def test_overlap_split_allow_fires_everything() -> None:
    assert overlap_split("allow", 5, [10, 20, 30]) == ([10, 20, 30], [])


def test_overlap_split_skip_fires_only_when_nothing_runs() -> None:
    assert overlap_split("skip", 0, [10]) == ([10], [])
    assert overlap_split("skip", 1, [10]) == ([], [10])
    assert overlap_split("skip", 0, [10, 20, 30]) == ([10], [20, 30])  # catchup=all


def test_overlap_split_buffer_one_lets_one_wait() -> None:
    assert overlap_split("buffer_one", 0, [10]) == ([10], [])
    assert overlap_split("buffer_one", 1, [10]) == ([10], [])  # it waits
    assert overlap_split("buffer_one", 2, [10]) == ([], [10])  # one waits already
    assert overlap_split("buffer_one", 0, [10, 20, 30]) == ([10, 20], [30])
    assert overlap_split("buffer_one", 1, [10, 20]) == ([10], [20])


def test_skip_reasons_name_the_execution_in_flight() -> None:
    assert skip_reason("skip", 7, [T0]) == f"overlap skip: 7-{T0} is still in flight"
    assert skip_reason("buffer_one", 7, [T0]) == (
        f"overlap buffer_one: 7-{T0} is still running and one execution already waits"
    )


def fire(job_id: int, slot: int) -> Fire:
    return Fire(f"{job_id}-{slot}", job_id, slot, "http://r.invalid/cb", "s", b"{}")


def test_in_flight_holds_a_fire_until_the_running_one_finishes() -> None:
    executor = RecordingExecutor()
    in_flight = InFlight(executor)
    first, second, other = fire(1, T0), fire(1, T0 + 10), fire(2, T0)
    assert in_flight.admit(first) and in_flight.admit(other)
    assert not in_flight.admit(second)
    assert (in_flight.busy(1), in_flight.busy(2), in_flight.busy(3)) == (2, 1, 0)
    executor.finish([other])
    in_flight.finished(executor.drain_results())
    assert executor.submitted == []  # job 1 still runs
    assert (in_flight.busy(1), in_flight.busy(2)) == (2, 0)
    executor.finish([first], state="failed", status_code=500)
    in_flight.finished(executor.drain_results())
    assert executor.submitted == [second]  # released, now the running one
    assert in_flight.in_flight(1) == [T0 + 10] and in_flight.busy(1) == 1
    executor.submitted.clear()
    executor.finish([second])
    in_flight.finished(executor.drain_results())
    assert (in_flight.running, in_flight.held, executor.submitted) == ({}, {}, [])


def test_in_flight_ignores_results_of_jobs_it_does_not_track() -> None:
    executor = RecordingExecutor()
    in_flight = InFlight(executor)
    assert in_flight.admit(fire(1, T0))
    executor.finish([fire(1, T0 + 10), fire(5, T0)])  # not admitted here
    in_flight.finished(executor.drain_results())
    assert in_flight.in_flight(1) == [T0]


# -- overlap: through the scheduler (owner decides, apply records) ----------------------------


@run_async
async def test_overlap_skip_records_the_slots_due_while_one_is_in_flight(world: World) -> None:
    await world.project()
    [plain] = await world.jobs("@every 10s")
    [job] = await world.jobs("@every 10s", policy={"overlap": "skip"})
    await world.assign_all()
    s = scheduler(world)
    executor = world.executor
    await tick(s, world, T0 + 10.1)
    await tick(s, world, T0 + 20.1)
    await tick(s, world, T0 + 30.1)
    sent = executor.sent_pairs()
    assert sent == [(plain, T0 + 10), (job, T0 + 10), (plain, T0 + 20), (plain, T0 + 30)]
    reason = f"overlap skip: {job}-{T0 + 10} is still in flight"
    assert [cmd.skipped for cmd in world.commands(c.SlotsFired)] == [
        [],
        [[job, [T0 + 20], reason]],
        [[job, [T0 + 30], reason]],
    ]
    assert world.executions() == [
        (plain, T0 + 10, "dispatched"),
        (plain, T0 + 20, "dispatched"),
        (plain, T0 + 30, "dispatched"),
        (job, T0 + 10, "dispatched"),
        (job, T0 + 20, "skipped"),
        (job, T0 + 30, "skipped"),
    ]
    errors = world.queries.db.execute(
        "SELECT error FROM executions WHERE job_id = ? AND state = 'skipped'", (job,)
    ).fetchall()
    assert [row[0] for row in errors] == [reason, reason]
    assert s.stats.skipped == 2
    # The running one finishes: the next slot fires again.
    executor.finish([f for f in executor.submitted if f.job_id == job])
    await tick(s, world, T0 + 35)
    await tick(s, world, T0 + 40.1)
    assert executor.sent_pairs()[-2:] == [(plain, T0 + 40), (job, T0 + 40)]
    assert world.commands(c.SlotsFired)[-1].skipped == []
    row = world.queries.db.execute(
        "SELECT last_fired_slot, fired_count, last_state FROM jobs WHERE id = ?", (job,)
    ).fetchone()
    assert tuple(row) == (T0 + 40, 2, "dispatched")  # a skipped slot is not a run


@run_async
async def test_overlap_buffer_one_holds_one_slot_and_skips_the_rest(world: World) -> None:
    await world.project()
    [job] = await world.jobs("@every 10s", policy={"overlap": "buffer_one"})
    await world.assign_all()
    s = scheduler(world)
    executor = world.executor
    await tick(s, world, T0 + 10.1)
    await tick(s, world, T0 + 20.1)  # accepted, held: T0 + 10 still runs
    await tick(s, world, T0 + 30.1)  # skipped: T0 + 20 already waits
    assert executor.sent_pairs() == [(job, T0 + 10)]
    assert world.executions() == [
        (job, T0 + 10, "dispatched"),
        (job, T0 + 20, "dispatched"),
        (job, T0 + 30, "skipped"),
    ]
    [[_, [slot], reason]] = world.commands(c.SlotsFired)[-1].skipped
    assert (slot, reason) == (
        T0 + 30,
        f"overlap buffer_one: {job}-{T0 + 10} is still running and one execution already waits",
    )
    executor.finish(executor.submitted)
    await tick(s, world, T0 + 31)  # the running one ends: the waiting one is sent
    assert executor.sent_pairs() == [(job, T0 + 10), (job, T0 + 20)]
    held = executor.submitted[1]
    assert held.execution_id == f"{job}-{T0 + 20}"
    await tick(s, world, T0 + 40.1)  # T0 + 20 runs, nothing waits: T0 + 40 may wait
    assert world.executions()[-1] == (job, T0 + 40, "dispatched")
    assert executor.sent_pairs() == [(job, T0 + 10), (job, T0 + 20)]


@run_async
async def test_overlap_skip_with_catchup_all_skips_the_whole_backlog(world: World) -> None:
    await world.project()
    policy = {"overlap": "skip", "catchup": "all", "catchup_window_seconds": 300.0}
    [job] = await world.jobs("@every 10s", policy=policy)
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 10.1)
    await tick(s, world, T0 + 40.1)  # three slots due, T0 + 10 still in flight
    assert world.executor.sent_pairs() == [(job, T0 + 10)]
    assert [entry[:2] for entry in world.commands(c.SlotsFired)[-1].skipped] == [
        [job, [T0 + 20, T0 + 30, T0 + 40]]
    ]
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 45)
    world.executor.submitted.clear()
    await tick(s, world, T0 + 70.1)  # nothing in flight: the oldest fires, the others wait on it
    assert world.executor.sent_pairs() == [(job, T0 + 50)]
    assert world.commands(c.SlotsFired)[-1].skipped == [
        [job, [T0 + 60, T0 + 70], f"overlap skip: {job}-{T0 + 50} is still in flight"]
    ]


@run_async
async def test_a_skipped_slot_does_not_use_up_max_runs(world: World) -> None:
    await world.project()
    [job] = await world.jobs("@every 10s", policy={"overlap": "skip", "max_runs": 2})
    await world.assign_all()
    s = scheduler(world)
    await tick(s, world, T0 + 10.1)
    await tick(s, world, T0 + 20.1)  # the last run allowed would be this one: skipped
    world.executor.finish(world.executor.submitted)
    await tick(s, world, T0 + 25)
    await tick(s, world, T0 + 30.1)
    assert world.executor.sent_pairs() == [(job, T0 + 10), (job, T0 + 30)]
    assert world.executions() == [
        (job, T0 + 10, "success"),
        (job, T0 + 20, "skipped"),
        (job, T0 + 30, "dispatched"),
    ]
    row = world.queries.db.execute(
        "SELECT fired_count, next_run FROM jobs WHERE id = ?", (job,)
    ).fetchone()
    assert tuple(row) == (2, 2**62)  # its two runs done: completed
