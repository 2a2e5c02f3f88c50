"""Each job's next run is kept in state, so a read computes nothing per row.

Every command that moves a job's next run carries it, computed once by its
proposer: a creation (the first slot), a tick (each advanced job's slot after
it), a change of schedule and a resume (each with a new revision). A tick
proposed from an older revision of a job (it raced a change of schedule) has
its fire accepted as before, but its next run, on the old grid, is not kept:
the job's next run is then unknown until its next fire, and only such a row is
computed on reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.api import views
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.timefmt import iso
from tests.unit.harness import T0, World, run_async
from tests.unit.test_firing import setup

pytestmark = pytest.mark.unit


def kept(world: World, job_id: int) -> tuple[int | None, int]:
    row = world.queries.job(job_id)
    return row["next_run"], row["revision"]


@run_async
async def test_a_tick_keeps_each_advanced_jobs_next_run(world: World) -> None:
    parts, ids = await setup(world, "@every 10s", "@every 20s", "*/30 * * * * *")
    await parts.tick(T0 + 10.2)
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == [[ids[0], T0 + 10]]
    assert kept(world, ids[0]) == (T0 + 20, 0)
    # Not advanced by this tick: not touched (the harness made them without one).
    assert kept(world, ids[1]) == (None, 0)
    await parts.tick(T0 + 30.1)
    assert [kept(world, j)[0] for j in ids] == [T0 + 40, T0 + 40, T0 + 60]


@run_async
async def test_a_tick_with_missed_slots_keeps_the_slot_after_now(world: World) -> None:
    parts, ids = await setup(world, "@every 10s")
    await parts.tick(T0 + 200.5)  # 20 slots due: the latest fires, the others are missed
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == [[ids[0], T0 + 200]] and fired.missed[0][0] == ids[0]
    assert kept(world, ids[0]) == (T0 + 210, 0)


@run_async
async def test_a_tick_from_before_a_change_of_schedule_keeps_no_next_run(world: World) -> None:
    parts, ids = await setup(world, "@every 10s")
    job = ids[0]
    world.clock.now = T0 + 10.2
    parts.owned.refresh()  # the scheduler has loaded revision 0 ...
    change = {"spec": "@every 60s", "anchor": T0 + 10, "not_before": T0 + 10, "next_run": T0 + 70}
    await world.propose(c.JobUpdated(now=T0 + 10.1, job_id=job, changes=change))
    assert kept(world, job) == (T0 + 70, 1)
    parts.firing.fire_due()  # ... and fires from it: slot T0+10, next T0+20 on the old grid
    await parts.tick(T0 + 10.3)
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == [[job, T0 + 10]] and fired.following == [[T0 + 20, [job]]]
    assert fired.revisions == []
    assert world.executions() == [(job, T0 + 10, "dispatched")]  # the fire is accepted
    assert kept(world, job) == (None, 1)  # its old-grid next run is not
    # Unknown, so a read computes it from the new schedule.
    assert views.job_out(world.queries.job(job))["next_run_at"] == iso(T0 + 70)
    # The scheduler reloaded the job: it fires on the new grid, and keeps it again.
    await parts.tick(T0 + 20.1)
    await parts.tick(T0 + 70.1)
    last = world.commands(c.SlotsFired)[-1]
    assert last.fires == [[job, T0 + 70]] and last.revisions == [[job, 1]]
    assert kept(world, job) == (T0 + 130, 1)


@run_async
async def test_a_resume_keeps_its_next_run_and_a_pause_keeps_the_old(world: World) -> None:
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.propose(c.JobPaused(now=T0 + 1, job_id=job, paused=True, next_run=None))
    assert kept(world, job) == (None, 0)
    await world.propose(c.JobPaused(now=T0 + 95.5, job_id=job, paused=False, next_run=T0 + 100))
    assert kept(world, job) == (T0 + 100, 1)
    row = world.queries.job(job)
    assert (row["paused"], row["not_before"]) == (0, T0 + 95)


@run_async
async def test_an_older_change_of_schedule_forgets_the_next_run(world: World) -> None:
    """A ``JobUpdated`` written before version 3 carries no next run: the kept
    one would be on the old grid, so it is cleared (and no new revision)."""
    await world.project()
    (job,) = await world.jobs("@every 10s")
    await world.propose(c.JobPaused(now=T0 + 5, job_id=job, paused=False, next_run=T0 + 10))
    await world.propose(c.JobUpdated(now=T0 + 6, job_id=job, changes={"spec": "@every 1m"}))
    assert kept(world, job) == (None, 1)
    await world.propose(c.JobUpdated(now=T0 + 7, job_id=job, changes={"data": '"x"'}))
    assert kept(world, job) == (None, 1)


def test_a_read_computes_no_schedule_for_a_kept_next_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_schedules(*args: Any) -> None:
        raise AssertionError("a schedule was computed on a read")

    monkeypatch.setattr(views, "_schedule", no_schedules)
    row = views.new_job_row(
        7,
        {
            "project_id": 1,
            "spec": "0 4 29 2 mon#5",
            "timezone": "Asia/Tokyo",
            "data": None,
            "callback_url": "http://receiver.invalid/cb",
            "execution_type": "http",
            "anchor": T0,
            "next_run": T0 + 86_400,
        },
        T0,
    )
    assert views.job_out(row)["next_run_at"] == iso(T0 + 86_400)


def test_a_snapshot_from_before_the_kept_next_run_loads_with_it(tmp_path: Path) -> None:
    old = StateMachine(tmp_path / "old.db")
    old.apply(c.encode(c.ProjectCreated(now=T0, name="p", description="", signing_secret="s")))
    job = {
        "project_id": 1,
        "spec": "@every 10s",
        "timezone": "UTC",
        "data": None,
        "callback_url": "http://receiver.invalid/cb",
        "execution_type": "http",
        "anchor": T0,
    }
    old.apply(c.encode(c.JobsCreated(now=T0, jobs=[job])))
    for column in ("revision", "next_run"):  # as a node of command version 2 had it
        old._conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    old.save_snapshot(str(tmp_path / "old.snap"), "raft-data")
    old.close()
    new = StateMachine(tmp_path / "new.db")
    assert new.load_snapshot(str(tmp_path / "old.snap")) == "raft-data"
    fired = c.SlotsFired(now=T0 + 10.1, node_id=1, epoch=0, fires=[], following=[[T0 + 20, [1]]])
    new.apply(c.encode(fired))
    row = new._conn.execute("SELECT next_run, revision FROM jobs WHERE id = 1").fetchone()
    new.close()
    assert row == (None, 0)
