"""The state machine on real SQLite files: determinism, atomicity, snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.apply import HANDLERS, ApplyContext
from scheduler0.daemon.state.machine import ApplyHalted, StateMachine
from scheduler0.daemon.state.schema import BUCKETS

NOW = 1_800_000_000.0


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def ok(machine: StateMachine, command: c.Command) -> Any:
    result = machine.apply(c.encode(command))
    assert "ok" in result, result
    return result["ok"]


def error(machine: StateMachine, command: c.Command) -> dict[str, Any]:
    result = machine.apply(c.encode(command))
    assert "error" in result, result
    err: dict[str, Any] = result["error"]
    return err


def job(project_id: int = 1, spec: str = "@every 1s") -> dict[str, Any]:
    return {
        "project_id": project_id,
        "spec": spec,
        "timezone": "UTC",
        "data": '"x"',
        "callback_url": "http://127.0.0.1:1/cb",
        "execution_type": "http",
        "anchor": int(NOW),
    }


def history(node_id: int = 1) -> list[c.Command]:
    return [
        c.AssignmentChanged(now=NOW, epoch=1, owners=[node_id] * BUCKETS),
        c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"),
        c.JobsCreated(now=NOW, jobs=[job() for _ in range(50)]),
        c.SlotsFired(now=NOW + 1, node_id=node_id, epoch=1, fires=[[1, 1], [2, 1]]),
        c.ResultsRecorded(
            now=NOW + 2, node_id=node_id, results=[[1, 1, "success", 200, 1, 3, None]]
        ),
        c.JobPaused(now=NOW + 3, job_id=3, paused=True),
        c.JobDeleted(now=NOW + 4, job_id=4),
    ]


@pytest.fixture
def machine(tmp_path: Path) -> StateMachine:
    m = StateMachine(tmp_path / "a.db")
    yield m
    m.close()


def test_the_same_log_gives_the_same_database_on_every_node(tmp_path: Path) -> None:
    a, b = StateMachine(tmp_path / "a.db"), StateMachine(tmp_path / "b.db")
    for command in history():
        assert a.apply(c.encode(command)) == b.apply(c.encode(command))
    a.close()
    b.close()
    assert dump(tmp_path / "a.db") == dump(tmp_path / "b.db")


def test_apply_never_raises_on_garbage(machine: StateMachine) -> None:
    for payload in (b"", b"x", b"j{", b"z\x00\x01", c.encode(c.Noop())[:-3]):
        assert "error" in machine.apply(payload)
    assert "ok" in machine.apply(c.encode(c.Noop(now=NOW)))


def test_a_failing_command_changes_nothing(machine: StateMachine, tmp_path: Path) -> None:
    for command in history():
        ok(machine, command)
    before = dump(tmp_path / "a.db")
    err = error(machine, c.JobsCreated(now=NOW, jobs=[job(), job(project_id=99), job()]))
    assert err["code"] == "validation_failed"
    assert err["details"] == [
        {"field": "project_id", "message": "no project with id 99", "index": 1}
    ]
    assert (
        error(machine, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))[
            "code"
        ]
        == "conflict"
    )
    assert error(machine, c.ProjectDeleted(now=NOW, project_id=1))["code"] == "conflict"
    assert error(machine, c.JobDeleted(now=NOW, job_id=4))["code"] == "not_found"
    assert dump(tmp_path / "a.db") == before


def test_an_unexpected_exception_rolls_back_and_is_returned(
    machine: StateMachine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(machine, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))

    def half_then_boom(ctx: ApplyContext, cmd: Any) -> None:
        ctx.db.execute("DELETE FROM projects")
        raise RuntimeError("boom")

    monkeypatch.setitem(HANDLERS, c.Noop, half_then_boom)
    err = error(machine, c.Noop(now=NOW))
    assert "boom" in err["message"]
    monkeypatch.undo()
    rows = sqlite3.connect(tmp_path / "a.db").execute("SELECT name FROM projects").fetchall()
    assert rows == [("p",)]


def test_slots_are_accepted_once_and_only_from_the_owner(machine: StateMachine) -> None:
    for command in history(node_id=1):
        ok(machine, command)
    fired = ok(machine, c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=[[1, 2], [1, 2], [5, 2]]))
    assert fired["accepted"] == [[1, 2], [5, 2]]
    # The same slot again, an older slot, a paused job, a deleted job: refused.
    again = ok(
        machine,
        c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=[[1, 2], [1, 1], [3, 5], [4, 5]]),
    )
    assert again["accepted"] == []
    # Another node fires nothing.
    assert ok(machine, c.SlotsFired(now=NOW, node_id=2, epoch=1, fires=[[6, 9]]))["accepted"] == []
    # After a reassignment node 2 owns everything and node 1 nothing.
    ok(machine, c.AssignmentChanged(now=NOW, epoch=2, owners=[2] * BUCKETS))
    assert ok(machine, c.SlotsFired(now=NOW, node_id=1, epoch=2, fires=[[6, 9]]))["accepted"] == []
    assert ok(machine, c.SlotsFired(now=NOW, node_id=2, epoch=2, fires=[[6, 9]]))["accepted"] == [
        [6, 9]
    ]


def test_missed_slots_are_recorded_and_advance_the_job(
    machine: StateMachine, tmp_path: Path
) -> None:
    for command in history():
        ok(machine, command)
    ok(
        machine,
        c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=[[7, 10]], missed=[[7, [7, 8, 9], 5]]),
    )
    db = sqlite3.connect(tmp_path / "a.db")
    states = db.execute(
        "SELECT slot, state FROM executions WHERE job_id = 7 ORDER BY slot"
    ).fetchall()
    assert states == [(7, "missed"), (8, "missed"), (9, "missed"), (10, "dispatched")]
    assert db.execute("SELECT missed_count, last_fired_slot FROM jobs WHERE id = 7").fetchone() == (
        8,
        10,
    )


def test_caught_up_fires_are_recorded_with_trigger_catchup_and_only_when_accepted(
    machine: StateMachine, tmp_path: Path
) -> None:
    for command in history():
        ok(machine, command)
    ok(machine, c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=[[8, 5]]))
    fired = ok(
        machine,
        c.SlotsFired(
            now=NOW,
            node_id=1,
            epoch=1,
            fires=[[7, 3], [7, 4], [7, 5], [8, 4], [8, 6], [9, 6]],
            # job 8's slot 4 is refused (slot 5 fired before): nothing to mark
            caught_up=[[7, 3], [7, 4], [8, 4]],
        ),
    )
    assert fired["accepted"] == [[7, 3], [7, 4], [7, 5], [8, 6], [9, 6]]
    db = sqlite3.connect(tmp_path / "a.db")
    rows = db.execute(
        "SELECT job_id, slot, trigger FROM executions WHERE job_id IN (7, 8, 9)"
        " ORDER BY job_id, slot"
    ).fetchall()
    assert rows == [
        (7, 3, "catchup"),
        (7, 4, "catchup"),
        (7, 5, None),
        (8, 5, None),
        (8, 6, None),
        (9, 6, None),
    ]


def test_a_slots_fired_entry_without_caught_up_decodes_as_none_caught_up() -> None:
    entry = {"now": NOW, "node_id": 1, "epoch": 1, "fires": [[1, 2]]}
    for version in (3, 4):
        payload = b"j" + orjson.dumps({"v": version, "t": "SlotsFired", "a": entry})
        decoded = c.decode(payload)
        assert isinstance(decoded, c.SlotsFired) and decoded.caught_up == []


def test_a_snapshot_restores_the_same_database(machine: StateMachine, tmp_path: Path) -> None:
    for command in history():
        ok(machine, command)
    snapshot = tmp_path / "snap"
    machine.save_snapshot(str(snapshot), ("raft", [1, 2], {"x": 1}))
    restored = StateMachine(tmp_path / "b.db")
    assert restored.load_snapshot(str(snapshot)) == ("raft", [1, 2], {"x": 1})
    assert restored.epoch == 1 and restored.owners == [1] * BUCKETS
    # The restored copy keeps applying like the original.
    for m in (machine, restored):
        ok(m, c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=[[8, 3]]))
    restored.close()
    assert dump(tmp_path / "a.db") == dump(tmp_path / "b.db")


@pytest.mark.parametrize("form", ["groups", "results"])
def test_grouped_fires_and_results_write_every_row_and_counter(
    machine: StateMachine, tmp_path: Path, form: str
) -> None:
    """Fires across two projects and several slots (one job twice), results
    from POSTs with different outcomes: every (job, slot) row and every job
    counter ends as if written one by one."""
    for command in history():
        ok(machine, command)
    ok(machine, c.ProjectCreated(now=NOW, name="q", description="", signing_secret="t"))
    ok(machine, c.JobsCreated(now=NOW, jobs=[job(project_id=2) for _ in range(3)]))  # 51..53
    fires = [[10, 100], [11, 100], [51, 100], [52, 101], [10, 105], [53, 101]]
    accepted = ok(machine, c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=fires))["accepted"]
    assert accepted == fires
    results = [
        [10, 100, "success", 200, 1, 5, None],
        [11, 100, "success", 200, 1, 5, None],
        [51, 100, "failed", 500, 3, 40, "boom"],
        [52, 101, "success", 204, 1, 7, None],
        [10, 105, "failed", None, 2, 900, "timeout"],
    ]
    if form == "results":  # as journals written before groups existed carry them
        recorded = c.ResultsRecorded(now=NOW + 5, node_id=1, results=results)
    else:
        grouped: dict[tuple[Any, ...], list[int]] = {}
        for job_id, slot, *outcome in results:
            grouped.setdefault((slot, *outcome), []).append(job_id)
        recorded = c.ResultsRecorded(
            now=NOW + 5, node_id=1, groups=[[*key, ids] for key, ids in grouped.items()]
        )
    assert ok(machine, recorded) == {"recorded": 5}
    db = sqlite3.connect(tmp_path / "a.db")
    rows = db.execute(
        "SELECT job_id, slot, project_id, state, status_code, attempts, latency_ms, error"
        " FROM executions WHERE slot >= 100 ORDER BY job_id, slot"
    ).fetchall()
    assert rows == [
        (10, 100, 1, "success", 200, 1, 5, None),
        (10, 105, 1, "failed", None, 2, 900, "timeout"),
        (11, 100, 1, "success", 200, 1, 5, None),
        (51, 100, 2, "failed", 500, 3, 40, "boom"),
        (52, 101, 2, "success", 204, 1, 7, None),
        (53, 101, 2, "dispatched", None, 0, None, None),
    ]
    counters = db.execute(
        "SELECT id, last_fired_slot, fired_count, success_count, failed_count, last_state,"
        " last_status_code FROM jobs WHERE id IN (10, 11, 51, 52, 53) ORDER BY id"
    ).fetchall()
    assert counters == [
        (10, 105, 2, 1, 1, "failed", None),
        (11, 100, 1, 1, 0, "success", 200),
        (51, 100, 1, 0, 1, "failed", 500),
        (52, 101, 1, 1, 0, "success", 204),
        (53, 101, 1, 0, 0, "dispatched", None),
    ]


@pytest.mark.parametrize("projects", [2, 40])
def test_execution_rows_are_inserted_in_the_order_of_the_fires(
    machine: StateMachine, tmp_path: Path, projects: int
) -> None:
    """Row ids are replicated state: whatever the grouping, rows get ids in
    the order the command lists the fires (interleaved projects and slots,
    few runs or many)."""
    for command in history():
        ok(machine, command)
    for n in range(2, projects + 1):
        ok(machine, c.ProjectCreated(now=NOW, name=f"p{n}", description="", signing_secret="s"))
    jobs = [job(project_id=1 + i % projects) for i in range(4 * projects)]
    first = ok(machine, c.JobsCreated(now=NOW, jobs=jobs))["ids"][0]
    ids = list(range(first, first + len(jobs)))
    # Two slots; within each, every project twice, interleaved with the others.
    fires = [[j, 500 + k // (2 * projects)] for k, j in enumerate(reversed(ids))]
    accepted = ok(machine, c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=fires))["accepted"]
    assert accepted == fires
    db = sqlite3.connect(tmp_path / "a.db")
    rows = db.execute(
        "SELECT job_id, slot, project_id FROM executions WHERE slot >= 500 ORDER BY id"
    ).fetchall()
    assert rows == [(j, s, 1 + (j - first) % projects) for j, s in fires]


def test_version_1_results_apply_row_by_row_as_they_always_did(
    machine: StateMachine, tmp_path: Path
) -> None:
    """A version-1 journal entry: the later row for the same execution wins,
    and a repeated row counts twice, exactly as version 1 applied it."""
    for command in history():
        ok(machine, command)
    ok(machine, c.SlotsFired(now=NOW, node_id=1, epoch=1, fires=[[7, 10], [5, 10]]))
    legacy = {
        "v": 1,
        "t": "ResultsRecorded",
        "a": {
            "now": NOW + 1,
            "node_id": 1,
            "results": [
                [7, 10, "success", 200, 1, 5, None],
                [5, 10, "failed", 500, 1, 5, "HTTP 500"],
                [5, 10, "success", 201, 2, 9, None],
                [7, 10, "success", 200, 1, 5, None],
            ],
        },
    }
    assert "ok" in machine.apply(b"j" + orjson.dumps(legacy))
    db = sqlite3.connect(tmp_path / "a.db")
    assert db.execute(
        "SELECT id, success_count, failed_count, last_state, last_status_code FROM jobs"
        " WHERE id IN (5, 7) ORDER BY id"
    ).fetchall() == [(5, 1, 1, "success", 201), (7, 2, 0, "success", 200)]
    assert db.execute(
        "SELECT job_id, state, status_code, attempts FROM executions"
        " WHERE slot = 10 ORDER BY job_id"
    ).fetchall() == [(5, "success", 201, 2), (7, "success", 200, 1)]


def test_commands_of_an_unknown_version_halt_the_replica(machine: StateMachine) -> None:
    """Written by newer code: skipping it would leave this replica behind."""
    future = {"v": c.VERSION + 1, "t": "Noop", "a": {"now": NOW}}
    with pytest.raises(ApplyHalted, match=f"command version {c.VERSION + 1} is not one"):
        machine.apply(b"j" + orjson.dumps(future))
    assert machine.halted is not None
