"""One ``SlotsFired`` per tick, and only what the state machine accepted is sent."""

from __future__ import annotations

import pytest

from scheduler0.daemon.scheduling import firing
from scheduler0.daemon.scheduling.dispatch import Dispatcher
from scheduler0.daemon.scheduling.firing import Firing
from scheduler0.daemon.scheduling.owned import OwnedJobs
from scheduler0.daemon.scheduling.proposals import Proposer
from scheduler0.daemon.scheduling.stats import SchedulerStats
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.timefmt import iso
from tests.unit.harness import T0, World, fire_item, owners_splitting, run_async, settle

pytestmark = pytest.mark.unit

GRACE = 60.0


class Parts:
    """Firing with the real owned set, dispatcher and proposer around it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.stats = SchedulerStats()
        self.sent: set[tuple[int, int]] = set()
        self.owned = OwnedJobs(
            node_id=world.node_id, machine=world.machine, queries=world.queries, clock=world.clock
        )
        world.listeners.append(self.owned.on_change)
        self.reloads = 0
        self.firing = Firing(
            node_id=world.node_id,
            owned=self.owned,
            executor=world.executor,
            proposer=Proposer(world.log),
            dispatcher=Dispatcher(
                queries=world.queries,
                executor=world.executor,
                payloads=self.owned.payloads,
                sent=self.sent,
            ),
            stats=self.stats,
            misfire_grace=GRACE,
            clock=world.clock,
            queries=world.queries,
        )

    def _reloaded(self) -> None:
        self.reloads += 1

    async def tick(self, at: float) -> None:
        self.world.clock.now = at
        self.owned.refresh(on_reload=self._reloaded)
        self.firing.fire_due()
        await settle()


async def setup(world: World, *specs: str) -> tuple[Parts, list[int]]:
    await world.project()
    ids = await world.jobs(*specs)
    await world.assign_all()
    return Parts(world), ids


@run_async
async def test_due_jobs_fire_once_per_slot(world: World) -> None:
    parts, ids = await setup(world, "@every 10s", "@every 10s", "@every 20s")
    await parts.tick(T0 + 5)
    assert world.commands(c.SlotsFired) == []
    await parts.tick(T0 + 10.25)
    await parts.tick(T0 + 10.5)  # same slot again: nothing to propose
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == [[ids[0], T0 + 10], [ids[1], T0 + 10]]
    assert (fired.now, fired.node_id, fired.epoch, fired.missed) == (T0 + 10.25, 1, 1, [])
    assert world.executor.sent_pairs() == [(ids[0], T0 + 10), (ids[1], T0 + 10)]
    assert parts.sent == {(ids[0], T0 + 10), (ids[1], T0 + 10)}
    assert world.executions("dispatched") == [
        (ids[0], T0 + 10, "dispatched"),
        (ids[1], T0 + 10, "dispatched"),
    ]
    await parts.tick(T0 + 20.1)
    assert len(world.commands(c.SlotsFired)) == 2
    assert world.executor.sent_pairs()[2:] == [
        (ids[0], T0 + 20),
        (ids[1], T0 + 20),
        (ids[2], T0 + 20),
    ]
    assert parts.stats.fired == 5 and parts.stats.rejected == 0
    assert list(parts.stats.recent_lag) == pytest.approx([0.25, 0.25, 0.1, 0.1, 0.1])
    # the callback body: this fire's id and slot, and the job's previous slot
    first, second = (f for f in world.executor.submitted if f.job_id == ids[0])
    assert (second.execution_id, second.slot) == (f"{ids[0]}-{T0 + 20}", T0 + 20)
    assert second.callback_url == "http://receiver.invalid/cb"
    assert second.signing_secret == "secret"
    assert isinstance(second.payload, tuple) and isinstance(first.payload, tuple)
    assert second.payload[0] is first.payload[0]  # the job's cached head, not a copy per fire
    body = fire_item(second)
    assert body["id"] == ids[0] and body["execution_id"] == second.execution_id
    assert body["scheduled_at"] == iso(T0 + 20)
    assert body["last_execution_date"] == iso(T0 + 10)
    assert fire_item(first)["last_execution_date"] is None


@run_async
async def test_one_proposal_is_in_flight_at_a_time(world: World) -> None:
    parts, ids = await setup(world, "@every 10s", "@every 20s")
    world.clock.now = T0 + 10
    parts.owned.refresh()
    parts.firing.fire_due()
    assert parts.firing.in_flight
    world.clock.now = T0 + 20
    parts.firing.fire_due()  # the first is not decided yet
    await settle()
    assert not parts.firing.in_flight
    assert [cmd.fires for cmd in world.commands(c.SlotsFired)] == [[[ids[0], T0 + 10]]]
    parts.firing.fire_due()
    await settle()
    assert [cmd.fires for cmd in world.commands(c.SlotsFired)][1] == [
        [ids[0], T0 + 20],
        [ids[1], T0 + 20],
    ]


@run_async
async def test_no_more_fires_than_the_executor_has_room_for(world: World) -> None:
    parts, ids = await setup(world, *["@every 10s"] * 5)
    world.executor.capacity = 3
    await parts.tick(T0 + 10)
    assert world.executor.sent_pairs() == [(j, T0 + 10) for j in ids[:3]]
    world.executor.capacity = 0
    await parts.tick(T0 + 11)
    assert len(world.commands(c.SlotsFired)) == 1
    world.executor.capacity = 3
    await parts.tick(T0 + 12)
    assert world.executor.sent_pairs()[3:] == [(j, T0 + 10) for j in ids[3:]]


@run_async
async def test_a_stale_proposal_is_not_dispatched(world: World) -> None:
    parts, ids = await setup(world, "@every 10s", "@every 10s")
    world.clock.now = T0 + 10
    parts.owned.refresh()
    parts.firing.fire_due()  # proposed as owner of both buckets ...
    await world.assign(owners_splitting({ids[1]: 2}))  # ... applied after ids[1] moved
    await settle()
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == [[ids[0], T0 + 10], [ids[1], T0 + 10]]
    assert world.executor.sent_pairs() == [(ids[0], T0 + 10)]
    assert world.executions() == [(ids[0], T0 + 10, "dispatched")]
    assert (parts.stats.fired, parts.stats.rejected) == (1, 1)
    await parts.tick(T0 + 20)  # the moved job is gone; the other fires on
    assert list(parts.owned.jobs) == [ids[0]]
    assert world.executor.sent_pairs() == [(ids[0], T0 + 10), (ids[0], T0 + 20)]


@run_async
async def test_a_rejected_slot_is_reread_not_rescheduled(world: World) -> None:
    parts, (job,) = await setup(world, "@every 10s")
    world.clock.now = T0 + 10
    parts.owned.refresh()
    parts.firing.fire_due()
    # another proposal (say, a double tick from a stale copy) fires the slot first
    await world.propose(c.SlotsFired(now=T0, node_id=1, epoch=1, fires=[[job, T0 + 10]]))
    await settle()
    assert world.executor.submitted == []
    assert parts.stats.rejected == 1
    await parts.tick(T0 + 10.5)  # re-read from state: resumes after T0+10
    assert world.executor.submitted == []
    await parts.tick(T0 + 20)
    assert world.executor.sent_pairs() == [(job, T0 + 20)]


@run_async
async def test_misfired_slots_go_in_the_same_command(world: World) -> None:
    parts, (late, ok) = await setup(world, "@every 10s", "@every 60s")
    await parts.tick(T0 + 1)
    await parts.tick(T0 + 60.5)  # late: 6 slots due; ok: its first slot
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == [[late, T0 + 60], [ok, T0 + 60]]
    assert fired.missed == [[late, [T0 + 10, T0 + 20, T0 + 30, T0 + 40, T0 + 50], 0]]
    assert world.executor.sent_pairs() == [(late, T0 + 60), (ok, T0 + 60)]
    assert world.executions("missed") == [(late, T0 + s, "missed") for s in (10, 20, 30, 40, 50)]
    await parts.tick(T0 + 70)
    assert world.executor.sent_pairs()[2:] == [(late, T0 + 70)]


@run_async
async def test_a_catch_up_is_split_into_commands_of_at_most_rows_per_tick(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each late job writes 6 rows (5 missed slots and a fire): a command of
    at most 12 rows takes two of them; the rest stay due and go, each job
    once, in the next commands, each proposed as soon as the one before is
    decided (not a tick later). A ``catchup=all`` backlog of 15 slots fires
    12, then 3."""
    monkeypatch.setattr(firing, "ROWS_PER_TICK", 12)
    parts, ids = await setup(world, *["@every 10s"] * 4)
    backlog = await world.jobs("@every 4s", policy={"catchup": "all"})
    await parts.tick(T0 + 1)
    await parts.tick(T0 + 60.5)
    commands = world.commands(c.SlotsFired)
    assert {cmd.now for cmd in commands} == {T0 + 60.5}
    rows = [
        len(cmd.fires) + sum(len(e[1]) for e in cmd.missed) + sum(len(e[1]) for e in cmd.skipped)
        for cmd in commands
    ]
    assert rows == [12, 12, 12, 3], rows
    assert (
        [sorted({e[0] for e in cmd.fires + cmd.missed}) for cmd in commands]
        == [
            backlog,  # its first slot is the earliest due
            ids[:2],
            ids[2:],
            backlog,
        ]
    )
    sent = world.executor.sent_pairs()
    # catchup=all fires as much of its backlog (15 slots) as a command has room for
    assert sent[:12] + sent[-3:] == [(backlog[0], T0 + s) for s in range(4, 64, 4)]
    assert sent[12:-3] == [(j, T0 + 60) for j in ids]
    assert world.executions("missed") == [
        (j, T0 + s, "missed") for j in ids for s in (10, 20, 30, 40, 50)
    ]


@run_async
async def test_slots_all_past_the_grace_are_only_missed(world: World) -> None:
    parts, (job,) = await setup(world, "@every 2m")
    await parts.tick(T0 + 1)
    await parts.tick(T0 + 360 + GRACE + 1)  # 120, 240, 360 due; even 360 is past the grace
    (fired,) = world.commands(c.SlotsFired)
    assert fired.fires == []
    assert fired.missed == [[job, [T0 + 120, T0 + 240, T0 + 360], 0]]
    assert world.executor.submitted == []
    assert world.queries.job(job)["missed_count"] == 3
    await parts.tick(T0 + 480)
    assert world.executor.sent_pairs() == [(job, T0 + 480)]


@run_async
async def test_an_ambiguous_proposal_reloads_and_never_double_dispatches(world: World) -> None:
    parts, ids = await setup(world, "@every 10s", "@every 10s")
    await parts.tick(T0 + 1)
    assert parts.reloads == 1  # the first refresh
    world.log.cut_off()
    await parts.tick(T0 + 10)
    assert world.executor.submitted == []
    assert parts.stats.proposals_failed == 1 and not parts.firing.in_flight
    assert world.commands(c.SlotsFired) == []  # it never committed
    world.log.cut_off(False)
    await parts.tick(T0 + 10.5)
    assert parts.reloads == 2  # everything re-read from state
    await parts.tick(T0 + 11)
    assert world.executor.sent_pairs() == [(ids[0], T0 + 10), (ids[1], T0 + 10)]
    assert len(world.commands(c.SlotsFired)) == 1
