"""A job's open outcome (``schema.LATEST_OUTCOME``): the result of its latest
fire stays in that execution's row until its last slot moves on.

Two replicas apply the same story of fires, results (late ones too), missed
slots and retention, one with ``SlotsFired.open_outcomes`` and one without
(as every older entry): after every command both answer the same, and the
jobs the API reads (``jobs_shown``) are the rows the closed replica keeps. The
open one does not write a job's row for the result of its latest fire."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.queries import Queries
from scheduler0.daemon.state.schema import BUCKETS, JOBS_SHOWN_COLUMNS

pytestmark = pytest.mark.unit

T0 = 1_800_000_000
JOBS = 5
PAUSING = 5
"""Job 5 has ``pause_after_failures`` 3: its results always go to its row."""


def machine(path: Path) -> StateMachine:
    m = StateMachine(path)
    m.apply(c.encode(c.ProjectCreated(now=T0, name="p", description="", signing_secret="s")))
    m.apply(c.encode(c.AssignmentChanged(now=T0, epoch=1, owners=[1] * BUCKETS)))
    jobs = [
        {
            "project_id": 1,
            "spec": "@every 1m",
            "timezone": "UTC",
            "data": None,
            "callback_url": f"http://127.0.0.1:1/cb/{n}",
            "execution_type": "http",
            "anchor": T0,
            "next_run": T0 + 60,
            **({"policy": {"pause_after_failures": 3}} if n == PAUSING else {}),
        }
        for n in range(1, JOBS + 1)
    ]
    assert "ok" in m.apply(c.encode(c.JobsCreated(now=T0, jobs=jobs)))
    return m


def shown(m: StateMachine, source: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(m.db_path)
    try:
        columns = ", ".join(JOBS_SHOWN_COLUMNS)
        return db.execute(f"SELECT {columns} FROM {source} ORDER BY id").fetchall()
    finally:
        db.close()


def story(seed: int, steps: int) -> list[tuple[str, Any]]:
    """Commands of both kinds of fire: ("fire", kwargs) or ("other", command)."""
    rng = random.Random(seed)
    last = dict.fromkeys(range(1, JOBS + 1), T0)
    in_flight: list[tuple[int, int]] = []
    out: list[tuple[str, Any]] = []
    now = float(T0)
    for _ in range(steps):
        now += 7
        roll = rng.random()
        if roll < 0.4:
            fired = rng.sample(range(1, JOBS + 1), rng.randint(1, JOBS))
            fires, missed = [], []
            for j in fired:
                if rng.random() < 0.15:
                    slots = [last[j] + 60, last[j] + 120]
                    missed.append([j, slots, 0])
                    last[j] += 120
                    continue
                last[j] += 60
                fires.append([j, last[j]])
                in_flight.append((j, last[j]))
            fires.sort(key=lambda f: f[1])
            following = [[last[j] + 60, [j]] for j in fired]
            out.append(
                ("fire", {"now": now, "fires": fires, "missed": missed, "following": following})
            )
        elif roll < 0.85 and in_flight:
            # Results arrive in any order: a late one is for an earlier slot
            # than its job's last.
            picked = [
                in_flight.pop(rng.randrange(len(in_flight)))
                for _ in range(min(len(in_flight), rng.randint(1, 3)))
            ]
            groups = []
            for j, slot in picked:
                state = "success" if rng.random() < 0.6 else "failed"
                code = 200 if state == "success" else 500
                groups.append(
                    [slot, state, code, 1, 5, None if state == "success" else "HTTP 500", [j]]
                )
            out.append(("other", c.ResultsRecorded(now=now, node_id=1, groups=groups)))
        else:
            out.append(
                (
                    "other",
                    c.ExecutionsPruned(
                        now=now,
                        keep_rows=rng.randint(1, 12),
                        before=now - rng.choice([30, 120, 10_000]),
                        per_job=rng.randint(1, 3),
                        job_id_from=1,
                        job_id_to=JOBS,
                    ),
                )
            )
    return out


@pytest.mark.parametrize("seed", range(8))
def test_an_open_outcome_shows_what_a_closed_one_keeps(tmp_path: Path, seed: int) -> None:
    closed, opened = machine(tmp_path / "closed.db"), machine(tmp_path / "open.db")
    try:
        for kind, step in story(seed, 120):
            if kind == "fire":
                a = closed.apply(c.encode(c.SlotsFired(node_id=1, epoch=1, **step)))
                b = opened.apply(
                    c.encode(c.SlotsFired(node_id=1, epoch=1, open_outcomes=True, **step))
                )
            else:
                a, b = closed.apply(c.encode(step)), opened.apply(c.encode(step))
            assert a == b, (kind, step)
            expected = shown(closed, "jobs")
            assert shown(closed, "jobs_shown") == expected  # nothing open there
            assert shown(opened, "jobs_shown") == expected, (kind, step)
        queries = Queries(opened.db_path)
        for n in range(1, JOBS + 1):
            row = queries.job(n)
            assert tuple(row[k] for k in JOBS_SHOWN_COLUMNS) == expected[n - 1]
    finally:
        closed.close()
        opened.close()


def test_the_result_of_a_latest_fire_leaves_the_job_row_unwritten(tmp_path: Path) -> None:
    m = machine(tmp_path / "open.db")
    try:
        slot = T0 + 60
        fire = c.SlotsFired(
            now=slot,
            node_id=1,
            epoch=1,
            fires=[[1, slot]],
            following=[[slot + 60, [1]]],
            open_outcomes=True,
        )
        assert m.apply(c.encode(fire))["ok"]["accepted"] == [[1, slot]]
        before = shown(m, "jobs")[0]
        m.apply(
            c.encode(
                c.ResultsRecorded(
                    now=slot + 1, node_id=1, groups=[[slot, "success", 200, 1, 5, None, [1]]]
                )
            )
        )
        assert shown(m, "jobs")[0] == before, "the result wrote the job's row"
        row = dict(zip(JOBS_SHOWN_COLUMNS, shown(m, "jobs_shown")[0], strict=True))
        assert (row["success_count"], row["last_state"], row["last_status_code"]) == (
            1,
            "success",
            200,
        )
        assert row["last_finished_at"] == slot + 1
        # The next fire folds it into the row.
        nxt = c.SlotsFired(
            now=slot + 60,
            node_id=1,
            epoch=1,
            fires=[[1, slot + 60]],
            following=[[slot + 120, [1]]],
            open_outcomes=True,
        )
        m.apply(c.encode(nxt))
        kept = dict(zip(JOBS_SHOWN_COLUMNS, shown(m, "jobs")[0], strict=True))
        assert (kept["success_count"], kept["last_status_code"], kept["last_state"]) == (
            1,
            200,
            "dispatched",
        )
    finally:
        m.close()
