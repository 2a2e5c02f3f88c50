"""Fires held in memory leave the database the commands applied one by one leave.

Two state machines apply the same random stream of commands: one writes each
command as it is applied, the other holds fires and results
(``fire_buffer_seconds``) and writes them when the test flushes, at random
points, or when another command comes. Every outcome and, after a final
flush, every row of ``jobs``, ``executions`` and ``meta`` must be the same.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.fire_buffer import FireBuffer
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.schema import BUCKETS

JOBS = 40
START = 1_795_000_000


def _job(i: int, draw: random.Random) -> dict[str, Any]:
    job: dict[str, Any] = {
        "project_id": 1 + i % 2,
        "spec": "@every 1s",
        "timezone": "UTC",
        "data": f'{{"n":{i}}}',
        "callback_url": "http://127.0.0.1:9/callback",
        "execution_type": "http",
        "anchor": START,
        "next_run": START + 1,
    }
    kind = draw.random()
    if kind < 0.1:
        job["policy"] = {"max_runs": draw.randint(1, 6)}
    elif kind < 0.2:
        job["policy"] = {"pause_after_failures": draw.randint(1, 3)}
    return job


def _stream(seed: int) -> list[c.Command]:
    draw = random.Random(seed)
    owners = [1 if b % 3 else 2 for b in range(BUCKETS)]
    commands: list[c.Command] = [
        c.ProjectCreated(now=1.0, name="a", description="", signing_secret="s"),
        c.ProjectCreated(now=1.0, name="b", description="", signing_secret="s"),
        c.JobsCreated(now=1.0, jobs=[_job(i, draw) for i in range(JOBS)]),
        c.AssignmentChanged(now=1.0, epoch=1, owners=owners),
    ]
    slot = START
    fired: list[tuple[int, int]] = []
    for _ in range(400):
        now = slot + draw.random()
        roll = draw.random()
        if roll < 0.45:
            slot += draw.choice((1, 1, 1, 2))
            ids = draw.sample(range(1, JOBS + 3), draw.randint(1, 12))  # 41, 42: no such job
            fires = [[j, slot] for j in ids]
            if draw.random() < 0.15:  # an old slot, or the same fire twice
                fires.append([draw.choice(ids), slot - draw.randint(0, 3)])
            if draw.random() < 0.2:  # a slot past another of the same job in one tick
                fires.append([ids[0], slot + 1])
            fired.extend((j, s) for j, s in fires)
            extra: dict[str, Any] = {}
            if draw.random() < 0.1:
                extra["missed"] = [[ids[0], [slot - 1], 0]]
            if draw.random() < 0.05:
                extra["caught_up"] = [fires[0]]
            if draw.random() < 0.05:
                extra["skipped"] = [[ids[-1], [slot], "overlap"]]
            if draw.random() < 0.2:
                extra["revisions"] = [[ids[0], 1]]
            commands.append(
                c.SlotsFired(
                    now=now,
                    node_id=draw.choice((1, 1, 1, 2)),
                    epoch=1,
                    fires=fires,
                    following=[[slot + 1, ids]],
                    **extra,
                )
            )
        elif roll < 0.85 and fired:
            groups = []
            for _ in range(draw.randint(1, 3)):
                picked = [draw.choice(fired) for _ in range(draw.randint(1, 6))]
                at = draw.choice(picked)[1]
                ids = [j for j, s in picked if s == at] + draw.sample(range(1, JOBS + 3), 1)
                state = draw.choice(("success", "success", "failed", "timeout", "skipped"))
                code = 200 if state == "success" else draw.choice((500, None))
                groups.append(
                    [at, state, code, draw.randint(1, 3), draw.randint(1, 900), None, ids]
                )
            commands.append(c.ResultsRecorded(now=now, node_id=1, groups=groups))
        elif roll < 0.9:
            job_id = draw.randint(1, JOBS)
            commands.append(c.JobPaused(now=now, job_id=job_id, paused=draw.random() < 0.5))
        elif roll < 0.93:  # the slot a fire may take next: the fire's row is there already
            commands.append(c.JobTriggered(now=now, job_id=draw.randint(1, 12), slot=slot + 1))
        elif roll < 0.96:
            commands.append(c.NodeRunsLost(now=now, node_id=2))
        elif roll < 0.98 and fired:
            commands.append(c.ExecutionsLost(now=now, executions=[list(draw.choice(fired))]))
        elif roll < 0.985:  # its rows go, perhaps the newest: ids go on from the sequence
            commands.append(c.JobDeleted(now=now, job_id=draw.choice(fired)[0] if fired else 1))
        else:
            commands.append(
                c.ExecutionsPruned(
                    now=now,
                    keep_rows=10_000,
                    before=0.0,
                    per_job=draw.randint(2, 8),
                    job_id_from=1,
                    job_id_to=JOBS,
                )
            )
    return commands


def _plain_setup() -> list[c.Command]:
    """Two projects, ``JOBS`` jobs without policies, every bucket node 1's."""
    plain = [{**_job(i, random.Random(0)), "policy": None} for i in range(JOBS)]
    return [
        c.ProjectCreated(now=1.0, name="a", description="", signing_secret="s"),
        c.ProjectCreated(now=1.0, name="b", description="", signing_secret="s"),
        c.JobsCreated(now=1.0, jobs=plain),
        c.AssignmentChanged(now=1.0, epoch=1, owners=[1] * BUCKETS),
    ]


def _side_by_side(
    tmp_path: Path,
    commands: list[c.Command],
    settle_after: tuple[int, ...] = (),
    keep_after: tuple[int, ...] = (),
) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]:
    """Apply ``commands`` one by one and held (written after the indexes of
    ``settle_after``, by a due flush that keeps a row after those of
    ``keep_after``, and at the end), asserting equal outcomes: both
    databases' rows and ``sqlite_sequence``."""
    now = StateMachine(tmp_path / "now.db")
    held = StateMachine(tmp_path / "held.db", fire_buffer_seconds=3600.0)
    try:
        for index, command in enumerate(commands, 1):
            payload = c.encode(command)
            assert held.apply(payload, index) == now.apply(payload, index), command
            if index in settle_after:
                held.settle()
            if index in keep_after:
                _due(held)
                assert held._buffer.kept, index
        held.settle()
    finally:
        now.close()
        held.close()
    return _with_sequence(tmp_path / "now.db"), _with_sequence(tmp_path / "held.db")


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("jobs", "executions", "meta")
        }
    finally:
        db.close()


def _with_sequence(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    rows = _rows(path)
    db = sqlite3.connect(path)
    try:
        rows["sqlite_sequence"] = db.execute("SELECT * FROM sqlite_sequence ORDER BY 1").fetchall()
    finally:
        db.close()
    return rows


def _random_side_by_side(tmp_path: Path, seed: int, flush: Callable[[StateMachine], None]) -> None:
    """``_stream(seed)`` applied one by one and held, ``flush`` called on the
    holding machine after about one command in ten: equal outcomes, digests
    and rows."""
    now = StateMachine(tmp_path / "now.db")
    held = StateMachine(tmp_path / "held.db", fire_buffer_seconds=3600.0)
    flushes = random.Random(seed + 1000)
    try:
        for index, command in enumerate(_stream(seed), 1):
            payload = c.encode(command)
            assert held.apply(payload, index) == now.apply(payload, index), (index, command)
            if flushes.random() < 0.1:
                flush(held)
        held.settle()
        assert now.digest() == held.digest()
        expected, got = _rows(tmp_path / "now.db"), _rows(tmp_path / "held.db")
        assert len(expected["executions"]) > 50
        for table in expected:
            assert got[table] == expected[table], table
    finally:
        now.close()
        held.close()


@pytest.mark.parametrize("seed", range(40))
def test_held_fires_leave_the_database_the_commands_one_by_one_leave(
    tmp_path: Path, seed: int
) -> None:
    _random_side_by_side(tmp_path, seed, StateMachine.settle)


def _due(held: StateMachine) -> None:
    """The flush of a buffer whose age is due, which keeps the new rows
    without a result (``flush_due``, as the log's tick calls it)."""
    wait = held.fire_buffer_seconds
    held.fire_buffer_seconds = 1e-9
    try:
        held.flush_due()
    finally:
        held.fire_buffer_seconds = wait


@pytest.mark.parametrize("seed", range(40))
def test_flushes_that_keep_rows_without_a_result_leave_the_same_database(
    tmp_path: Path, seed: int
) -> None:
    _random_side_by_side(tmp_path, seed, _due)


def test_a_due_flush_keeps_a_row_until_its_result_with_its_id(tmp_path: Path) -> None:
    """A due flush writes the job's update and the row that has its result;
    the row without one is kept (not in the database yet: the machine says
    it holds something, so a read writes it first); its result then lands on
    it held, and the next flush inserts it with that result and the id it
    would have had. A row kept and no result: a read writes it dispatched."""
    machine = StateMachine(tmp_path / "a.db", fire_buffer_seconds=3600.0)
    db = sqlite3.connect(tmp_path / "a.db")
    try:
        for index, command in enumerate(_stream(0)[:4], 1):
            machine.apply(c.encode(command), index)
        fires = [[1, START + 1], [2, START + 2]]
        machine.apply(c.encode(c.SlotsFired(now=START, node_id=1, epoch=1, fires=fires)), 5)
        done = [[START + 1, "success", 200, 1, 12, None, [1]]]
        machine.apply(c.encode(c.ResultsRecorded(now=START + 1.5, node_id=1, groups=done)), 6)
        _due(machine)
        assert db.execute("SELECT id, job_id, state FROM executions").fetchall() == [
            (1, 1, "success")
        ]
        assert db.execute("SELECT fired_count, last_state FROM jobs WHERE id = 2").fetchone() == (
            1,
            "dispatched",
        )
        assert machine.holding()  # the kept row: a read writes it first
        done = [[START + 2, "failed", 500, 1, 7, "x", [2]]]
        machine.apply(c.encode(c.ResultsRecorded(now=START + 2.5, node_id=1, groups=done)), 7)
        _due(machine)
        assert db.execute("SELECT id, job_id, state FROM executions ORDER BY id").fetchall() == [
            (1, 1, "success"),
            (2, 2, "failed"),
        ]
        assert not machine.holding()
        fires = [[1, START + 3]]
        machine.apply(c.encode(c.SlotsFired(now=START, node_id=1, epoch=1, fires=fires)), 8)
        _due(machine)  # kept, its id the third
        assert db.execute("SELECT COUNT(*) FROM executions").fetchone() == (2,)
        machine.settle()
        assert db.execute(
            "SELECT id, state FROM executions WHERE slot = ?", (START + 3,)
        ).fetchone() == (
            3,
            "dispatched",
        )
    finally:
        db.close()
        machine.close()


def test_a_copy_of_the_replica_after_a_due_flush_holds_the_rows_it_kept(tmp_path: Path) -> None:
    """A backup copies the replica at its ``meta.applied_index``: after a due
    flush kept a row, the file alone lacks it; the copy through
    ``pinned_reader`` has it."""
    from scheduler0.daemon.state.copy import copy_replica

    machine = StateMachine(tmp_path / "a.db", fire_buffer_seconds=3600.0)
    try:
        for index, command in enumerate(_stream(0)[:4], 1):
            machine.apply(c.encode(command), index)
        fires = [[1, START + 1]]
        machine.apply(c.encode(c.SlotsFired(now=START, node_id=1, epoch=1, fires=fires)), 5)
        _due(machine)
        as_is = copy_replica(tmp_path / "a.db", tmp_path / "as_is.db")
        pinned = copy_replica(tmp_path / "a.db", tmp_path / "pinned.db", machine.pinned_reader)
    finally:
        machine.close()
    assert as_is.raft_index == pinned.raft_index == 5
    assert (as_is.counts["executions"], pinned.counts["executions"]) == (0, 1)
    assert pinned.counts["dispatched"] == 1


def test_a_fire_held_and_its_result_are_one_row_written_once(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "a.db", fire_buffer_seconds=3600.0)
    try:
        for index, command in enumerate(_stream(0)[:4], 1):
            machine.apply(c.encode(command), index)
        fire = c.SlotsFired(now=START + 1.1, node_id=1, epoch=1, fires=[[1, START + 1]])
        assert machine.apply(c.encode(fire), 5) == {"ok": {"accepted": [[1, START + 1]]}}
        result = c.ResultsRecorded(
            now=START + 1.5, node_id=1, groups=[[START + 1, "success", 200, 1, 12, None, [1]]]
        )
        machine.apply(c.encode(result), 6)
        db = sqlite3.connect(tmp_path / "a.db")
        assert db.execute("SELECT COUNT(*) FROM executions").fetchone() == (0,)  # held
        machine.settle()
        assert db.execute("SELECT state, status_code FROM executions").fetchall() == [
            ("success", 200)
        ]
        assert db.execute(
            "SELECT fired_count, success_count, last_state FROM jobs WHERE id = 1"
        ).fetchone() == (1, 1, "success")
        assert db.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone() == ("6",)
    finally:
        machine.close()


def test_a_held_fire_of_a_slot_already_taken_is_applied_as_one_by_one(tmp_path: Path) -> None:
    """A run-now row already holds the slot a fire then takes: the insert keeps
    that row and the result updates it. The held write finds the row there,
    rolls back and applies the commands one by one."""
    first = _stream(0)[:4]
    slot = START + 1
    commands = [
        *first,
        c.JobTriggered(now=START + 0.5, job_id=1, slot=slot),
        c.SlotsFired(now=START + 0.9, node_id=1, epoch=1, fires=[[1, slot], [3, slot]]),
        c.ResultsRecorded(
            now=START + 1.5, node_id=1, groups=[[slot, "failed", 500, 2, 7, "x", [1, 3]]]
        ),
        # a result before its fire updates no row; the fire's row stays dispatched
        c.ResultsRecorded(
            now=START + 1.6, node_id=1, groups=[[slot + 1, "success", 200, 1, 5, None, [3]]]
        ),
        c.SlotsFired(now=START + 1.9, node_id=1, epoch=1, fires=[[3, slot + 1]]),
    ]
    # index 7: the replayed write; then the result before its fire
    expected, got = _side_by_side(tmp_path, commands, settle_after=(7,))
    assert [row[4] for row in got["executions"]] == ["failed", "failed", "dispatched"]
    assert got == expected


def test_a_flush_the_disk_refuses_halts_the_replica_and_nothing_is_half_written(
    tmp_path: Path,
) -> None:
    """SQLite refuses the held rows (the database may not grow: SQLITE_FULL,
    as on a full disk): the replica halts as an apply would, with the rows
    neither written nor dropped from the journal's point of view."""
    from scheduler0.daemon.state.machine import ApplyHalted

    machine = StateMachine(tmp_path / "a.db", fire_buffer_seconds=3600.0)
    try:
        for index, command in enumerate(_plain_setup(), 1):
            machine.apply(c.encode(command), index)
        fires = [[j, START + 1] for j in range(1, JOBS + 1)]
        taken = machine.apply(c.encode(c.SlotsFired(now=START, node_id=1, epoch=1, fires=fires)), 5)
        assert len(taken["ok"]["accepted"]) == JOBS
        assert machine.holding()
        (pages,) = machine._conn.execute("PRAGMA page_count").fetchone()
        machine._conn.execute(f"PRAGMA max_page_count = {pages}")
        machine.settle()
        assert machine.halted is not None and "full" in machine.halted
        with pytest.raises(ApplyHalted):
            machine.apply(c.encode(c.Noop(now=START)), 6)
        db = sqlite3.connect(tmp_path / "a.db")
        assert db.execute("SELECT COUNT(*) FROM executions").fetchone() == (0,)
        assert db.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone() == ("4",)
    finally:
        machine.close()


def test_a_read_while_another_thread_writes_the_held_fires_waits_for_them(
    tmp_path: Path,
) -> None:
    """One reader's read writes what is held; a second reader that comes while
    that write runs must not find the buffer empty and read without them."""
    import threading

    from scheduler0.daemon.state.queries import Queries

    machine = StateMachine(tmp_path / "a.db", fire_buffer_seconds=3600.0)
    try:
        for index, command in enumerate(_plain_setup(), 1):
            machine.apply(c.encode(command), index)
        for n in range(1, 11):
            fires = [[j, START + n] for j in range(1, JOBS + 1)]
            machine.apply(c.encode(c.SlotsFired(now=START, node_id=1, epoch=1, fires=fires)), 4 + n)
        writing, go_on = threading.Event(), threading.Event()
        original = FireBuffer.write

        def slow_write(self: FireBuffer, db: sqlite3.Connection, keep: bool = False) -> bool:
            writing.set()
            go_on.wait(10)
            return original(self, db, keep)

        FireBuffer.write = slow_write  # type: ignore[method-assign]
        try:
            first = threading.Thread(target=machine.settle)
            first.start()
            assert writing.wait(10)
            counted: list[int] = []
            second = threading.Thread(
                target=lambda: counted.append(
                    Queries(tmp_path / "a.db", settle=machine.settle)
                    .db.execute("SELECT COUNT(*) FROM executions")
                    .fetchone()[0]
                )
            )
            second.start()
            second.join(0.2)
            assert second.is_alive()  # waiting for the write under way
            go_on.set()
            first.join(10)
            second.join(10)
        finally:
            FireBuffer.write = original  # type: ignore[method-assign]
        assert counted == [10 * JOBS]
    finally:
        machine.close()


@pytest.mark.parametrize(
    "group",
    [
        [START + 1, "failed", None, 1, 9, "boom\x00tail", [1]],  # SQLite's JSON cuts at NUL
        [str(START + 1), "success", 200, 1, 9, None, [1]],  # a slot as text: SQLite's meaning
        [START + 1, None, 200, 1, 9, None, [1]],  # no state: the handler refuses it
    ],
)
def test_a_result_not_of_the_proposers_shape_is_applied_as_one_by_one(
    tmp_path: Path, group: list[Any]
) -> None:
    commands = [
        *_plain_setup(),
        c.SlotsFired(now=START, node_id=1, epoch=1, fires=[[1, START + 1]]),
        c.ResultsRecorded(now=START + 1.5, node_id=1, groups=[group]),
    ]
    expected, got = _side_by_side(tmp_path, commands)
    assert got == expected


def test_what_a_flush_read_of_its_jobs_is_kept_until_another_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a flush the jobs it fired are not read again for the next fires
    (their counters start from zero); a command the buffer does not take
    (here a pause) makes the next fires read them again, and the paused job
    fires nothing, as one by one."""
    from scheduler0.daemon.state import fire_buffer

    reads: list[set[int]] = []
    real = fire_buffer._firing_jobs

    def counted(ctx: Any, cmd: Any, ids: Any = None) -> Any:
        reads.append(set(ids))
        return real(ctx, cmd, ids)

    monkeypatch.setattr(fire_buffer, "_firing_jobs", counted)

    def fired(slot: int) -> c.SlotsFired:
        return c.SlotsFired(
            now=slot - 0.5, node_id=1, epoch=1, fires=[[1, slot], [2, slot]], following=[]
        )

    machine = StateMachine(tmp_path / "held.db", fire_buffer_seconds=3600.0)
    try:
        for index, command in enumerate(_plain_setup(), 1):
            machine.apply(c.encode(command), index)
        machine.apply(c.encode(fired(START + 1)), 5)
        machine.settle()
        assert reads == [{1, 2}]
        carried = machine._buffer.jobs
        assert set(carried) == {1, 2} and carried[1].fired == 0
        machine.apply(c.encode(fired(START + 2)), 6)
        assert reads == [{1, 2}]  # not read again
        machine.apply(c.encode(c.JobPaused(now=START + 2.5, job_id=2, paused=True)), 7)
        outcome = machine.apply(c.encode(fired(START + 3)), 8)
        assert reads == [{1, 2}, {1, 2}]
        assert outcome == {"ok": {"accepted": [[1, START + 3]]}}
    finally:
        machine.close()
    db = sqlite3.connect(tmp_path / "held.db")
    assert db.execute(
        "SELECT fired_count, last_fired_slot FROM jobs WHERE id IN (1, 2) ORDER BY id"
    ).fetchall() == [(3, START + 3), (2, START + 2)]
    db.close()


@pytest.mark.parametrize("flush", [StateMachine.settle, _due], ids=["read", "due"])
def test_a_snapshot_loaded_after_a_flush_is_judged_on_its_own_state(
    tmp_path: Path, flush: Callable[[StateMachine], None]
) -> None:
    """What a flush kept of its jobs (job 1 fired at a slot), and the row a
    due flush kept for its result, are dropped when a snapshot from before
    that fire replaces the state: the same fire is accepted again, as one by
    one, and the kept row is not written into the snapshot's state."""
    raft_data = {"r": 1}
    now = StateMachine(tmp_path / "now.db")
    held = StateMachine(tmp_path / "held.db", fire_buffer_seconds=3600.0)
    try:
        for index, command in enumerate(_plain_setup(), 1):
            payload = c.encode(command)
            held.apply(payload, index)
            now.apply(payload, index)
        held.save_snapshot(str(tmp_path / "before"), raft_data)
        fire = c.encode(c.SlotsFired(now=START, node_id=1, epoch=1, fires=[[1, START + 1]]))
        assert held.apply(fire, 5) == now.apply(fire, 5)
        flush(held)
        assert 1 in held._buffer.jobs  # kept by the flush
        assert bool(held._buffer.kept) == (flush is _due)  # job 1's row, no result yet
        held.load_snapshot(str(tmp_path / "before"))
        now.load_snapshot(str(tmp_path / "before"))
        assert held.apply(fire, 5) == now.apply(fire, 5) == {"ok": {"accepted": [[1, START + 1]]}}
        held.settle()
    finally:
        now.close()
        held.close()
    assert _with_sequence(tmp_path / "now.db") == _with_sequence(tmp_path / "held.db")


@pytest.mark.parametrize("seed", range(12))
def test_flushes_when_the_buffer_is_full_or_a_snapshot_is_pinned_leave_the_same_database(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flushes of ``MAX_HELD_ROWS`` (here 7 rows) and of ``pin_snapshot``
    keep what they read of their jobs as ``settle``'s do."""
    from scheduler0.daemon.state import machine as state_machine

    monkeypatch.setattr(state_machine, "MAX_HELD_ROWS", 7)
    _random_side_by_side(tmp_path, seed, lambda held: held.pin_snapshot({"r": 1}).close())


def test_a_time_that_is_not_a_number_is_applied_as_one_by_one(tmp_path: Path) -> None:
    """A ``now`` of null fails one by one (the rows' ``NOT NULL``): the
    buffer does not take it, so the outcome is that error there too."""
    group = [START + 1, "success", 200, 1, 9, None, [1]]
    commands: list[c.Command] = [
        *_plain_setup(),
        c.SlotsFired(now=START, node_id=1, epoch=1, fires=[[1, START + 1]]),
        c.ResultsRecorded(now=START + 1.5, node_id=1, groups=[group]),
        c.ResultsRecorded(now=None, node_id=1, groups=[group]),  # type: ignore[arg-type]
        c.SlotsFired(now=None, node_id=1, epoch=1, fires=[[2, START + 2]]),  # type: ignore[arg-type]
    ]
    expected, got = _side_by_side(tmp_path, commands, settle_after=(6,))
    assert got == expected


# -- rows kept by due flushes: what every other flush, a replay and a load owe them ------


def _fire(now: float, fires: list[list[int]]) -> c.SlotsFired:
    return c.SlotsFired(now=now, node_id=1, epoch=1, fires=fires)


def _count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (rows,) = db.execute("SELECT COUNT(*) FROM executions").fetchone()
        return int(rows)
    finally:
        db.close()


def _held_machine(tmp_path: Path) -> StateMachine:
    machine = StateMachine(tmp_path / "a.db", fire_buffer_seconds=3600.0)
    for index, command in enumerate(_plain_setup(), 1):
        machine.apply(c.encode(command), index)
    return machine


def test_a_snapshot_or_a_backup_after_a_due_flush_holds_every_row(tmp_path: Path) -> None:
    """Job 1's row is kept by a due flush, job 2's fire is held after it:
    a backup's copy and a snapshot write both (a due flush alone keeps a row,
    a snapshot's or a backup's never)."""
    from scheduler0.daemon.state.copy import copy_replica

    machine = _held_machine(tmp_path)
    try:
        machine.apply(c.encode(_fire(START, [[1, START + 1]])), 5)
        _due(machine)
        machine.apply(c.encode(_fire(START + 1, [[2, START + 2]])), 6)
        copy = copy_replica(tmp_path / "a.db", tmp_path / "copy.db", machine.pinned_reader)
        assert (copy.raft_index, copy.counts["executions"]) == (6, 2)
        machine.apply(c.encode(_fire(START + 2, [[3, START + 3]])), 7)
        machine.save_snapshot(str(tmp_path / "snap"), {"r": 1})
    finally:
        machine.close()
    assert _count(tmp_path / "snap") == 3


def test_close_writes_the_kept_rows_and_the_held_ones(tmp_path: Path) -> None:
    machine = _held_machine(tmp_path)
    machine.apply(c.encode(_fire(START, [[1, START + 1]])), 5)
    _due(machine)
    machine.apply(c.encode(_fire(START + 1, [[2, START + 2]])), 6)
    machine.close()
    assert _count(tmp_path / "a.db") == 2


def test_a_row_is_kept_once_and_rows_kept_alone_are_written_when_due(tmp_path: Path) -> None:
    """The next due flush writes a kept row (dispatched: no result came),
    with nothing else held: the buffer of kept rows has its own age."""
    machine = _held_machine(tmp_path)
    try:
        machine.apply(c.encode(_fire(START, [[1, START + 1]])), 5)
        _due(machine)
        assert _count(tmp_path / "a.db") == 0
        _due(machine)
        assert _count(tmp_path / "a.db") == 1
        assert not machine.holding()
    finally:
        machine.close()


def test_a_replay_writes_the_kept_rows_before_the_held_commands(tmp_path: Path) -> None:
    """The kept row (job 1, id 2) comes before the held commands in the log:
    replayed after them, job 2's fire would take its id and job 1's result
    would update nothing."""
    slot = START + 1
    commands = [
        *_plain_setup(),
        c.JobTriggered(now=START + 0.5, job_id=3, slot=slot + 1),  # row 1
        _fire(START + 0.9, [[1, slot]]),  # 6: kept by a due flush, row 2
        _fire(START + 1.9, [[2, slot + 1], [3, slot + 1]]),  # job 3's slot taken: a replay
        c.ResultsRecorded(
            now=START + 2.5, node_id=1, groups=[[slot, "success", 200, 1, 5, None, [1]]]
        ),
    ]
    expected, got = _side_by_side(tmp_path, commands, keep_after=(6,))
    assert [(row[0], row[1], row[4]) for row in got["executions"]] == [
        (1, 3, "pending"),
        (2, 1, "success"),
        (3, 2, "dispatched"),
    ]
    assert got == expected


def test_a_flush_by_size_keeps_the_rows_without_a_result_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler0.daemon.state import machine as state_machine

    monkeypatch.setattr(state_machine, "MAX_HELD_ROWS", 5)
    machine = _held_machine(tmp_path)
    try:
        machine.apply(c.encode(_fire(START, [[j, START + 1] for j in range(1, 6)])), 5)
        assert _count(tmp_path / "a.db") == 0  # full: flushed, all five kept
        assert machine._buffer.size == 5  # kept rows count toward the bound
        machine.apply(c.encode(_fire(START + 1, [[6, START + 2]])), 6)  # full again
        assert _count(tmp_path / "a.db") == 5
    finally:
        machine.close()


def test_a_backup_while_a_snapshot_loads_sees_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup's ``pinned_reader`` on another thread, while ``load_snapshot``
    is between its copy and closing the snapshot file: it sees the
    snapshot's state with the snapshot's index (the copy and what it names
    are set under one hold of the lock)."""
    import threading

    from scheduler0.daemon.state import machine as state_machine

    leader = StateMachine(tmp_path / "leader.db")
    for index, command in enumerate(_plain_setup(), 1):
        leader.apply(c.encode(command), index)
    leader.apply(c.encode(c.Noop(now=START)), 9)
    leader.save_snapshot(str(tmp_path / "snap"), {"r": 1})
    leader.close()
    follower = StateMachine(tmp_path / "f.db", fire_buffer_seconds=3600.0)
    for index, command in enumerate(_plain_setup()[:2], 1):
        follower.apply(c.encode(command), index)

    closing, go_on = threading.Event(), threading.Event()
    real_connect = sqlite3.connect

    class Snapshot:
        """The snapshot file's connection, which waits when it is closed."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

        def close(self) -> None:
            closing.set()
            go_on.wait(10)
            self._conn.close()

    class Sqlite:
        def __getattr__(self, name: str) -> Any:
            return getattr(sqlite3, name)

        @staticmethod
        def connect(*args: Any, **kwargs: Any) -> Snapshot:
            return Snapshot(real_connect(*args, **kwargs))

    monkeypatch.setattr(state_machine, "sqlite3", Sqlite())
    loader = threading.Thread(target=follower.load_snapshot, args=(str(tmp_path / "snap"),))
    loader.start()
    try:
        assert closing.wait(10)
        reader = follower.pinned_reader()
        try:
            index = reader.execute("SELECT value FROM meta WHERE key = 'applied_index'").fetchone()
            tables = {row[0] for row in reader.execute("SELECT name FROM sqlite_master")}
        finally:
            reader.close()
    finally:
        go_on.set()
        loader.join(10)
        follower.close()
    assert index[0] == "9"
    assert "_raft" not in tables
