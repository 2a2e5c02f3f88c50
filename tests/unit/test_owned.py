"""The owned set and its due-time heap, kept in step with replicated state."""

from __future__ import annotations

import pytest

from scheduler0.daemon.scheduling.owned import OwnedJobs
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import CreatedJobs
from scheduler0.daemon.state.schema import BUCKETS, bucket_of
from tests.unit.harness import T0, World, owners_splitting, run_async

pytestmark = pytest.mark.unit


NEW_JOB = {
    "project_id": 1,
    "spec": "@every 10s",
    "timezone": "UTC",
    "callback_url": "http://receiver.invalid/cb",
    "execution_type": "http",
    "anchor": T0,
}
"""A ``JobsCreated`` item; tests add ``next_run`` (a kept next run) and the rest."""


def owned_set(world: World, fire_ahead: float = 0.0) -> OwnedJobs:
    owned = OwnedJobs(
        node_id=world.node_id,
        machine=world.machine,
        queries=world.queries,
        fire_ahead=fire_ahead,
        clock=world.clock,
    )
    world.listeners.append(owned.on_change)
    return owned


def popped(owned: OwnedJobs, now: float) -> list[tuple[int, int]]:
    """(job, slot) of every due job, marking each pending as the firing part does."""
    out = []
    for job in owned.pop_due(now):
        job.pending = True
        out.append((job.id, job.next_slot))
    return out


@run_async
async def test_it_holds_the_active_jobs_of_the_buckets_it_owns(world: World) -> None:
    await world.project()
    ids = await world.jobs(*["@every 10s"] * 6)
    await world.propose(c.JobPaused(now=T0, job_id=ids[5], paused=True))
    await world.assign(owners_splitting({ids[0]: 2, ids[1]: 2}))
    owned = owned_set(world)
    owned.refresh()
    assert sorted(owned.jobs) == ids[2:5]  # not node 2's, not the paused one
    assert owned.buckets == frozenset(range(BUCKETS)) - {bucket_of(ids[0]), bucket_of(ids[1])}
    assert owned.epoch == 1
    assert {j.next_slot for j in owned.jobs.values()} == {T0 + 10}


@run_async
async def test_due_jobs_pop_earliest_first_once_each(world: World) -> None:
    await world.project()
    every10, every3 = await world.jobs("@every 10s", "@every 3s")
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    assert popped(owned, T0 + 2.9) == []
    assert owned.due_backlog(T0 + 10) == 2
    assert popped(owned, T0 + 10) == [(every3, T0 + 3), (every10, T0 + 10)]
    assert popped(owned, T0 + 10) == []  # popped and pending: not again
    owned.push(owned.jobs[every3], T0 + 6)
    assert popped(owned, T0 + 10) == [(every3, T0 + 6)]


@run_async
async def test_with_fire_ahead_only_jobs_without_policies_pop_before_their_slot(
    world: World,
) -> None:
    """A job with policies is popped when due, not ahead of it and put back
    every tick (thousands due in one second cost every tick for seconds)."""
    await world.project()
    (plain,) = await world.jobs("@every 10s")
    (bounded,) = await world.jobs("@every 10s", policy={"overlap": "skip"})
    await world.assign_all()
    owned = owned_set(world, fire_ahead=2.0)
    owned.refresh()
    assert popped(owned, T0 + 7.9) == []
    assert owned.due_backlog(T0 + 8.1) == 0  # to decide ahead is not a backlog
    assert popped(owned, T0 + 8.1) == [(plain, T0 + 10)]
    assert popped(owned, T0 + 9.9) == []
    assert owned.due_backlog(T0 + 10) == 1
    assert popped(owned, T0 + 10) == [(bounded, T0 + 10)]


@run_async
async def test_a_job_is_resumed_after_its_last_fired_slot(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    await world.propose(c.SlotsFired(now=T0, node_id=1, epoch=1, fires=[[job, T0 + 30]]))
    owned = owned_set(world)
    owned.refresh()
    assert popped(owned, T0 + 100) == [(job, T0 + 40)]


@run_async
async def test_a_changed_job_is_reread_and_its_old_heap_entry_is_stale(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    owned.payloads[job] = (b"head", "url", "secret", None, "POST")
    await world.propose(c.JobUpdated(now=T0, job_id=job, changes={"spec": "@every 30s"}))
    owned.refresh()
    assert job not in owned.payloads
    assert popped(owned, T0 + 10) == []  # the 10 s entry is stale
    assert popped(owned, T0 + 30) == [(job, T0 + 30)]
    await world.propose(c.JobDeleted(now=T0, job_id=job))
    owned.refresh()
    assert owned.jobs == {}
    assert popped(owned, T0 + 1_000) == []


@run_async
async def test_the_due_backlog_counts_live_jobs_only(world: World) -> None:
    """A paused or changed job's old heap entry stays until popped: the
    backlog (the queue depth of the metrics and the health check) leaves it
    out, so a node whose jobs are all paused reports 0 at any instant."""
    await world.project()
    paused, changed, kept = await world.jobs("@every 10s", "@every 10s", "@every 10s")
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    assert owned.due_backlog(T0 + 10) == 3
    await world.propose(c.JobPaused(now=T0, job_id=paused, paused=True))
    await world.propose(c.JobUpdated(now=T0, job_id=changed, changes={"spec": "@every 30s"}))
    owned.refresh()
    assert owned.due_backlog(T0 + 10) == 1  # the kept job; two stale entries are not work
    assert owned.due_backlog(T0 + 30) == 2
    assert popped(owned, T0 + 30) == [(kept, T0 + 10), (changed, T0 + 30)]
    assert owned.due_backlog(T0 + 30) == 0  # popped and pending


@run_async
async def test_a_bucket_move_drops_its_jobs(world: World) -> None:
    await world.project()
    ids = await world.jobs(*["@every 10s"] * 4)
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    for job_id in ids:
        owned.payloads[job_id] = (b"head", "url", "secret", None, "POST")
    await world.assign(owners_splitting({ids[1]: 2, ids[3]: 2}))
    owned.refresh()
    assert sorted(owned.jobs) == [ids[0], ids[2]]
    assert sorted(owned.payloads) == [ids[0], ids[2]]
    assert owned.epoch == 2
    assert popped(owned, T0 + 10) == [(ids[0], T0 + 10), (ids[2], T0 + 10)]
    # and back: the regained bucket's jobs are loaded again
    await world.assign_all()
    owned.refresh()
    assert sorted(owned.jobs) == ids
    assert popped(owned, T0 + 10) == [(ids[1], T0 + 10), (ids[3], T0 + 10)]


@run_async
async def test_on_reload_runs_after_a_full_reload_only(world: World) -> None:
    await world.project()
    ids = await world.jobs("@every 10s", "@every 10s")
    await world.assign_all()
    owned = owned_set(world)
    reloads: list[int] = []

    def count() -> None:
        reloads.append(len(owned.jobs))

    owned.refresh(on_reload=count)
    assert reloads == [2]  # the first refresh is a full reload, jobs already loaded
    await world.assign(owners_splitting({ids[0]: 2}))
    owned.refresh(on_reload=count)
    owned.invalidate([ids[1]])
    owned.refresh(on_reload=count)
    assert reloads == [2]
    owned.invalidate([ids[1]], reload_all=True)
    owned.refresh(on_reload=count)
    assert reloads == [2, 1]
    owned.on_change("reset", None)
    owned.refresh(on_reload=count)
    assert reloads == [2, 1, 1]


@run_async
async def test_a_job_with_an_invalid_schedule_is_skipped(world: World) -> None:
    await world.project()
    good, bad = await world.jobs("@every 10s", "@every 10s")
    await world.propose(c.JobUpdated(now=T0, job_id=bad, changes={"spec": "not a spec"}))
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    assert list(owned.jobs) == [good]


@run_async
async def test_jobs_for_scheduling_reads_every_chunk_by_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler's read comes in chunks of JSON: every job of the buckets
    (or of the ids) once, by id, with its stored values."""
    from scheduler0.daemon.state import queries as q

    monkeypatch.setattr(q, "SCHEDULING_CHUNK", 5)
    await world.project()
    ids = await world.jobs(*["@every 10s"] * 12, policy={"max_runs": 3})
    every = list(range(BUCKETS))
    rows = list(world.queries.jobs_for_scheduling(None, every))
    assert [r["id"] for r in rows] == ids
    stored = world.queries.job(ids[3])
    assert {k: stored[k] for k in rows[3]} == rows[3]
    assert set(rows[3]) >= {"spec", "timezone", "anchor", "policy", "next_run", "fired_count"}
    some = [ids[0], ids[6], ids[11]]
    assert [r["id"] for r in world.queries.jobs_for_scheduling(some, every)] == some
    mine = [bucket_of(ids[1]), bucket_of(ids[7])]
    found = [r["id"] for r in world.queries.jobs_for_scheduling(None, mine)]
    assert found == sorted(i for i in ids if bucket_of(i) in mine)
    assert list(world.queries.jobs_for_scheduling([10_000], every)) == []


async def held_elsewhere(
    world: World, monkeypatch: pytest.MonkeyPatch, jobs: int, *, per_refresh: int
) -> tuple[OwnedJobs, list[int]]:
    """``jobs`` jobs ``@every 10s``, every bucket node 2's, and node 1's owned
    set refreshed once (holding none), loading ``per_refresh`` jobs a refresh
    of the buckets it gains."""
    from scheduler0.daemon.scheduling import owned as owned_module

    monkeypatch.setattr(owned_module, "GAIN_PER_REFRESH", per_refresh)
    await world.project()
    ids = await world.jobs(*["@every 10s"] * jobs)
    await world.assign_all(node_id=2)
    owned = owned_set(world)
    owned.refresh()
    return owned, ids


@run_async
async def test_gained_buckets_load_a_step_per_refresh(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned, ids = await held_elsewhere(world, monkeypatch, 10, per_refresh=3)
    assert owned.jobs == {} and not owned.gaining
    await world.assign_all()
    sizes = []
    for _ in range(6):
        owned.refresh()
        sizes.append(len(owned.jobs))
    assert sizes == [3, 6, 9, 10, 10, 10]
    assert not owned.gaining
    assert popped(owned, T0 + 10) == [(job, T0 + 10) for job in ids]
    # A full reload (a snapshot loaded) goes by the same steps, from nothing.
    owned.on_change("reset", None)
    sizes = []
    for _ in range(4):
        owned.refresh()
        sizes.append(len(owned.jobs))
    assert sizes == [3, 6, 9, 10]


@run_async
async def test_a_gain_loads_the_jobs_due_soonest_first_and_each_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs a refresh: a past-due job and one with no kept next run
    (both due now), then the next due in 10 s, come before the jobs of lower
    id due in an hour; every job is loaded once (its object kept, not
    reloaded by the id-order pass); a paused job not at all."""
    from scheduler0.daemon.scheduling import owned as owned_module

    monkeypatch.setattr(owned_module, "GAIN_PER_REFRESH", 2)
    await world.project()
    item = NEW_JOB
    hourly = {**item, "spec": "@every 1h", "next_run": T0 + 3600}
    created = await world.propose(
        c.JobsCreated(
            now=T0,
            jobs=[
                *[hourly] * 4,
                {**item, "next_run": T0 + 10},
                {**item, "next_run": T0 - 50},
                {**item, "next_run": None},  # unknown: due now at the latest
                {**item, "next_run": T0 + 10, "paused": True},
            ],
        )
    )
    *later, soon, overdue, unknown, _paused = range(created["ids"][0], created["ids"][1] + 1)
    await world.assign_all(node_id=2)
    owned = owned_set(world)
    owned.refresh()
    await world.assign_all()
    loads = []
    for _ in range(5):
        owned.refresh()
        loads.append(sorted(owned.jobs))
    assert loads[0] == sorted([unknown, overdue])
    assert loads[1] == sorted([unknown, overdue, soon, later[0]])
    assert loads[-1] == sorted([*later, soon, overdue, unknown]) and not owned.gaining
    first = owned.jobs[soon]
    owned.refresh()
    assert owned.jobs[soon] is first
    due = [(overdue, T0 - 50), (soon, T0 + 10), (unknown, T0 + 10)]
    assert sorted(popped(owned, T0 + 10)) == sorted(due)


@run_async
async def test_a_bucket_regained_while_loading_keeps_its_new_read_over_rows_read_before(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gain has read a job's row ahead (a chunk of 10, 2 loaded a
    refresh); its bucket goes away, the job changes (a refresh sees it), the
    bucket comes back. The new gain's read loads first (the job has no kept
    next run now): the row read before must not be loaded over it."""
    from scheduler0.daemon.scheduling import owned as owned_module
    from scheduler0.daemon.state import queries as q

    monkeypatch.setattr(owned_module, "GAIN_PER_REFRESH", 2)
    monkeypatch.setattr(q, "SCHEDULING_CHUNK", 10)
    await world.project()
    hourly = {**NEW_JOB, "spec": "@every 1h", "next_run": T0 + 3600}
    created = await world.propose(c.JobsCreated(now=T0, jobs=[hourly] * 10))
    ids = list(range(created["ids"][0], created["ids"][1] + 1))
    job = ids[7]
    await world.assign_all(node_id=2)
    owned = owned_set(world)
    owned.refresh()
    await world.assign_all()
    owned.refresh()  # all 10 rows read, ids[0:2] loaded
    await world.assign(owners_splitting({job: 2}))
    owned.refresh()  # the job's bucket lost
    await world.propose(c.JobUpdated(now=T0, job_id=job, changes={"spec": "@every 30s"}))
    owned.refresh()  # the change seen while the bucket is away
    await world.assign_all()
    for _ in range(6):
        owned.refresh()
    assert not owned.gaining and sorted(owned.jobs) == ids
    assert owned.jobs[job].next_slot == T0 + 30


@run_async
async def test_a_job_changed_while_its_bucket_loads_is_never_loaded_stale(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gain reads rows ahead (a chunk of 5) of what it loads (2 a refresh):
    jobs deleted, paused or changed after their chunk was read are loaded as
    they are now, or not at all; a bucket moved away meanwhile loads nothing."""
    from scheduler0.daemon.state import queries as q

    monkeypatch.setattr(q, "SCHEDULING_CHUNK", 5)
    owned, ids = await held_elsewhere(world, monkeypatch, 8, per_refresh=2)
    await world.assign_all()
    owned.refresh()
    assert sorted(owned.jobs) == ids[:2]  # ids[2:5] read, not loaded yet
    await world.propose(c.JobDeleted(now=T0, job_id=ids[2]))
    await world.propose(c.JobPaused(now=T0, job_id=ids[3], paused=True))
    await world.propose(c.JobUpdated(now=T0, job_id=ids[4], changes={"spec": "@every 30s"}))
    await world.assign(owners_splitting({ids[6]: 2}))
    for _ in range(5):
        owned.refresh()
    assert not owned.gaining
    assert sorted(owned.jobs) == [ids[0], ids[1], ids[4], ids[5], ids[7]]
    assert owned.jobs[ids[4]].next_slot == T0 + 30
    slots = {ids[0]: T0 + 10, ids[1]: T0 + 10, ids[4]: T0 + 30, ids[5]: T0 + 10, ids[7]: T0 + 10}
    assert sorted(popped(owned, T0 + 30)) == sorted(slots.items())


@run_async
async def test_new_jobs_come_from_their_command_as_state_would_give_them(world: World) -> None:
    """``CreatedJobs.scheduling_rows`` is a stand-in for reading the rows
    back: for every kind of new job it gives what ``jobs_for_scheduling``
    reads right after the insert."""
    heard: list[CreatedJobs] = []
    world.listeners.append(
        lambda kind, detail: heard.append(detail) if kind == "jobs_created" else None
    )
    await world.project()
    item = {**NEW_JOB, "data": '{"n": 1}'}
    items = [
        {**item, "next_run": T0 + 10},
        {**item, "spec": "0 */5 * * * *", "timezone": "Asia/Kathmandu", "next_run": None},
        {**item, "policy": {"max_runs": 3, "jitter_seconds": 4}, "next_run": T0 + 10},
        {**item, "paused": True, "name": "a", "labels": {"k": "v"}},
        dict(item),  # an entry older than version 3: no next run kept
    ]
    await world.propose(c.JobsCreated(now=T0, jobs=items))
    (created,) = heard
    every = created.scheduling_rows(lambda job_id: True)
    ids = list(created.ids())
    assert every == list(world.queries.jobs_for_scheduling(ids, list(range(BUCKETS))))
    assert [row["id"] for row in created.scheduling_rows(lambda job_id: job_id % 2 == 0)] == [
        job_id for job_id in ids if job_id % 2 == 0
    ]


@run_async
async def test_a_new_job_changed_before_the_refresh_is_loaded_as_it_is_now(world: World) -> None:
    await world.project()
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    kept, changed, deleted, paused = await world.jobs(*["@every 10s"] * 4)
    await world.propose(c.JobUpdated(now=T0, job_id=changed, changes={"spec": "@every 30s"}))
    await world.propose(c.JobDeleted(now=T0, job_id=deleted))
    await world.propose(c.JobPaused(now=T0, job_id=paused, paused=True))
    owned.refresh()
    assert sorted(owned.jobs) == [kept, changed]
    assert sorted(popped(owned, T0 + 30)) == [(kept, T0 + 10), (changed, T0 + 30)]


@run_async
async def test_new_jobs_of_other_nodes_buckets_are_not_loaded(world: World) -> None:
    await world.project()
    first = await world.jobs("@every 10s")
    await world.assign(owners_splitting({first[0] + 1: 2, first[0] + 3: 2}))
    owned = owned_set(world)
    owned.refresh()
    ids = await world.jobs(*["@every 10s"] * 4)
    owned.refresh()
    assert sorted(owned.jobs) == [first[0], ids[1], ids[3]]


@run_async
async def test_new_jobs_past_the_held_limit_are_read_back_from_state(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler0.daemon.scheduling import owned as owned_module

    monkeypatch.setattr(owned_module, "MAX_CREATED_HELD", 3)
    await world.project()
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    held = await world.jobs(*["@every 10s"] * 2)
    read_back = await world.jobs(*["@every 20s"] * 2)  # 2 + 2 > 3: marked changed
    assert len(owned._created) == 1 and owned._dirty == set(read_back)
    owned.refresh()
    assert sorted(owned.jobs) == held + read_back
    assert not owned._created and owned._created_held == 0


async def loading(
    world: World, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> tuple[OwnedJobs, list[int]]:
    """An owned set gaining every bucket, 2 jobs a refresh, of ``jobs`` jobs:
    the first step loaded, the gain still going."""
    owned, old = await held_elsewhere(world, monkeypatch, jobs, per_refresh=2)
    await world.assign_all()
    owned.refresh()
    assert len(owned.jobs) == 2 and owned.gaining
    return owned, old


@run_async
async def test_new_jobs_while_a_bucket_loads_are_loaded_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned, old = await loading(world, monkeypatch, 5)
    new = await world.jobs(*["@every 10s"] * 3)
    first_loaded: dict[int, int] = {}  # each job's version when it first appeared
    for _ in range(5):
        owned.refresh()
        for job_id, job in owned.jobs.items():
            first_loaded.setdefault(job_id, job.version)
    assert not owned.gaining
    assert sorted(owned.jobs) == old + new
    assert {j: job.version for j, job in owned.jobs.items()} == first_loaded  # loaded once
    assert sorted(popped(owned, T0 + 10)) == [(job, T0 + 10) for job in old + new]


async def _created_then_fired_by_node_2(world: World, owned: OwnedJobs) -> int:
    """A job created while node 2 owns its bucket, fired there once."""
    (job,) = await world.jobs("@every 10s")
    fired = await world.propose(
        c.SlotsFired(
            now=T0 + 10, node_id=2, epoch=2, fires=[[job, T0 + 10]], following=[[T0 + 20, [job]]]
        )
    )
    assert fired["accepted"] == [[job, T0 + 10]]
    return job


@run_async
async def test_a_new_job_fired_elsewhere_before_its_bucket_came_back_is_read_from_state(
    world: World,
) -> None:
    """Between two refreshes the bucket goes to node 2, which fires the new
    job, and comes back: the command's row (never fired) is out of date."""
    await world.project()
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    await world.assign(owners_splitting({1: 2}))  # the next job's bucket
    job = await _created_then_fired_by_node_2(world, owned)
    assert job == 1
    await world.assign_all()
    owned.refresh()
    assert (owned.jobs[job].last_fired, owned.jobs[job].next_slot) == (T0 + 10, T0 + 20)


@run_async
async def test_a_new_job_of_a_bucket_gained_since_is_read_from_state(world: World) -> None:
    await world.project()
    await world.assign(owners_splitting({1: 2}))  # the next job's bucket
    owned = owned_set(world)
    owned.refresh()
    job = await _created_then_fired_by_node_2(world, owned)
    await world.assign_all()
    for _ in range(3):
        owned.refresh()
    assert (owned.jobs[job].last_fired, owned.jobs[job].next_slot) == (T0 + 10, T0 + 20)


@run_async
async def test_nothing_is_held_while_a_full_reload_is_pending(world: World) -> None:
    await world.project()
    await world.assign_all()
    owned = owned_set(world)  # not refreshed yet: its first refresh reloads everything
    ids = await world.jobs(*["@every 10s"] * 3)
    assert owned._created == [] and owned._dirty == set()
    owned.refresh()
    assert sorted(owned.jobs) == ids


@run_async
async def test_new_jobs_past_the_held_bytes_are_read_back_from_state(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler0.daemon.scheduling import owned as owned_module

    monkeypatch.setattr(owned_module, "MAX_CREATED_HELD_BYTES", 20)  # data '{"n": i}': 8 bytes
    await world.project()
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    held = await world.jobs(*["@every 10s"] * 2)  # 16 bytes
    read_back = await world.jobs("@every 20s")  # 16 + 8 > 20
    assert [list(batch.ids()) for batch in owned._created] == [held]
    assert owned._dirty == set(read_back)
    owned.refresh()
    assert sorted(owned.jobs) == held + read_back


@run_async
async def test_a_new_job_of_a_bucket_lost_and_regained_while_loading_is_loaded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned, old = await loading(world, monkeypatch, 6)
    (new,) = await world.jobs("@every 10s")
    owned.refresh()  # loaded from its command; the gain will skip its row
    assert new in owned.jobs and owned.gaining
    await world.assign(owners_splitting({new: 2}))
    owned.refresh()
    assert new not in owned.jobs
    await world.assign_all()
    for _ in range(6):
        owned.refresh()
    assert not owned.gaining
    assert sorted(owned.jobs) == [*old, new]


@run_async
async def test_a_new_job_of_a_bucket_gained_while_loading_is_loaded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned, old = await held_elsewhere(world, monkeypatch, 6, per_refresh=2)
    await world.assign(owners_splitting({7: 2}))  # all but the next job's bucket
    (new,) = await world.jobs("@every 10s")  # assignment pending: marked dirty
    assert new == 7
    owned.refresh()  # the gain starts; 7, marked changed, is not this node's yet
    assert owned.gaining and new in owned._gain_skip
    await world.assign_all()  # its bucket is gained, chained after the first gain
    for _ in range(8):
        owned.refresh()
    assert not owned.gaining
    assert sorted(owned.jobs) == [*old, new]


@run_async
async def test_a_new_job_read_from_state_before_its_announcement_is_kept_as_read(
    world: World,
) -> None:
    """A read of state (a gain's chunk) can see a job between its commit and
    the announcement of its creation; the job may have fired since."""
    await world.project()
    await world.assign_all()
    owned = owned_set(world)
    owned.refresh()
    world.listeners.remove(owned.on_change)
    (job,) = await world.jobs("@every 10s")  # committed, not yet announced
    world.listeners.append(owned.on_change)
    owned.invalidate([job])
    owned.refresh()
    await world.propose(
        c.SlotsFired(
            now=T0 + 10, node_id=1, epoch=1, fires=[[job, T0 + 10]], following=[[T0 + 20, [job]]]
        )
    )
    owned.push(owned.jobs[job], T0 + 20)  # as the firing part does once accepted
    owned.jobs[job].last_fired = T0 + 10
    (created,) = world.commands(c.JobsCreated)
    owned.on_change("jobs_created", CreatedJobs(job, created.jobs))  # the late announcement
    owned.refresh()
    assert (owned.jobs[job].last_fired, owned.jobs[job].next_slot) == (T0 + 10, T0 + 20)
