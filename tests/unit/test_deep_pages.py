"""Deep pages of ``GET /jobs`` as ``Queries.jobs`` reads them: every page is
the same slice of the whole list in every order (read from either end), its
``total`` comes exact from ``project_job_counts`` through creates, deletes
and failed commands, on every replica and after a snapshot, and the queries
walk indexes: a project's page skips its offset in an index alone (in id
order, from the block of ids ``job_blocks`` places it in), and one job's
executions are found through the ``(job_id, slot)`` index."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler0.daemon.serve import bind_http
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state import schema
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.daemon.state.queries import ORDERS, JobSearch, Order, Queries, order_by

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def job(project_id: int, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "spec": "@every 1m",
        "timezone": "UTC",
        "data": None,
        "callback_url": f"http://127.0.0.1:1/cb/{n}",
        "execution_type": "http",
        "anchor": int(NOW),
        **extra,
    }


def apply(machine: StateMachine, command: c.Command) -> dict[str, Any]:
    return machine.apply(c.encode(command))


def counts(db: sqlite3.Connection) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The kept counts, and the jobs counted afresh; first checks that the
    kept blocks are those counted afresh too."""
    assert blocks(db)[0] == blocks(db)[1], "job_blocks"
    kept = db.execute("SELECT project_id, jobs FROM project_job_counts ORDER BY 1").fetchall()
    fresh = db.execute(
        "SELECT project_id, COUNT(*) FROM jobs GROUP BY project_id ORDER BY 1"
    ).fetchall()
    return [tuple(r) for r in kept], [tuple(r) for r in fresh]


def blocks(db: sqlite3.Connection) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The kept ``job_blocks``, and the same counted afresh from ``jobs``."""
    kept = db.execute("SELECT project_id, block, jobs FROM job_blocks ORDER BY 1, 2").fetchall()
    fresh = db.execute(
        f"SELECT project_id, id >> {schema.JOB_BLOCK_BITS}, COUNT(*) FROM jobs"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    return [tuple(r) for r in kept], [tuple(r) for r in fresh]


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[StateMachine, Queries]]:
    """Three projects, 240 jobs in batches: names repeated across projects,
    missing on some (NULL sorts first), updated at a handful of instants (ties
    broken by id), and every 7th deleted (gaps in the ids)."""
    machine = StateMachine(tmp_path / "state.db")
    for name in ("p", "q", "r"):
        apply(machine, c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))
    n = 0
    for batch in range(8):
        jobs = []
        for _ in range(30):
            n += 1
            named = {} if n % 5 == 0 else {"name": f"job-{(n * 37) % 101:03d}"}
            jobs.append(job(n % 3 + 1, n, **named))
        assert "ok" in apply(machine, c.JobsCreated(now=NOW + batch, jobs=jobs))
    for job_id in range(1, n + 1, 4):
        changes = {"spec": "@every 2m"}
        apply(machine, c.JobUpdated(now=NOW + 100 + job_id % 6, job_id=job_id, changes=changes))
    for job_id in range(7, n + 1, 7):
        assert "ok" in apply(machine, c.JobDeleted(now=NOW + 200, job_id=job_id))
    reader = Queries(tmp_path / "state.db")
    yield machine, reader
    reader.db.close()
    machine.close()


def explain_queries(queries: Queries, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on (until ``monkeypatch`` undoes it), each query ``Queries``
    runs is explained first: the plans, in order, land in the list returned."""
    plans: list[str] = []
    real = queries.db

    class Explaining:
        def execute(self, sql: str, args: Any = ()) -> Any:
            explained = real.execute(f"EXPLAIN QUERY PLAN {sql}", args)
            plans.append(" | ".join(row[3] for row in explained))
            return real.execute(sql, args)

    monkeypatch.setattr(Queries, "db", property(lambda self: Explaining()))
    monkeypatch.setattr(Queries, "db_as_is", property(lambda self: Explaining()))
    return plans


def whole(queries: Queries, where: str, args: list[Any], order: Order) -> list[int]:
    """The whole list in one plain query: the reference every page is cut from."""
    sql = f"SELECT id FROM jobs {where} {order_by('jobs', order)}"
    return [row[0] for row in queries.db.execute(sql, args)]


@pytest.mark.parametrize("column", list(ORDERS["jobs"]))
@pytest.mark.parametrize("descending", [False, True])
def test_every_page_is_its_slice_of_the_whole_list_in_every_order(
    filled: tuple[StateMachine, Queries], column: str, descending: bool
) -> None:
    _, queries = filled
    order = Order(column, descending)
    lists = [
        (2, None, "WHERE project_id = ?", [2]),
        (None, None, "", []),
        (None, frozenset({1, 3}), "WHERE project_id IN (1, 3)", []),
    ]
    for project_id, visible, where, args in lists:
        expected = whole(queries, where, args, order)
        total = len(expected)
        assert total > 60
        for limit in (1, 7, 50, 1000):
            for offset in (0, 1, 13, total // 2, total - limit - 1, total - limit, total - 1):
                if offset < 0:
                    continue
                page = queries.jobs(project_id, limit, offset, visible, None, order)
                got = [row["id"] for row in page.rows]
                assert got == expected[offset : offset + limit], (project_id, limit, offset)
                assert page.total == total
        for offset in (total, total + 5):
            page = queries.jobs(project_id, 10, offset, visible, None, order)
            assert (page.rows, page.total) == ([], total)


def test_pages_in_id_order_across_many_blocks_are_their_slices(tmp_path: Path) -> None:
    """Ids over several ``job_blocks`` blocks, projects interleaved within and
    across blocks, whole blocks and scattered jobs deleted: every page in id
    order (either direction; by a project, by all, by a project among the
    visible) is its slice of the whole list."""
    machine = StateMachine(tmp_path / "state.db")
    for name in ("p", "q", "r"):
        apply(machine, c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))
    block = 1 << schema.JOB_BLOCK_BITS
    n = 0
    for batch in range(12):
        jobs = []
        for i in range(500):
            n += 1
            jobs.append(job(batch % 3 + 1 if batch < 8 else i % 3 + 1, n))
        assert "ok" in apply(machine, c.JobsCreated(now=NOW, jobs=jobs))
    gone = [*range(block, 2 * block), *range(7, n + 1, 7)]  # all of block 1, every 7th
    for job_id in sorted(set(gone)):
        apply(machine, c.JobDeleted(now=NOW, job_id=job_id))
    queries = Queries(tmp_path / "state.db")
    assert blocks(queries.db)[0] == blocks(queries.db)[1]
    lists = [
        (2, None, "WHERE project_id = ?", [2]),
        (None, None, "", []),
        (3, frozenset({1, 3}), "WHERE project_id = ?", [3]),
    ]
    for column, descending in (("id", False), ("id", True), ("created_at", True)):
        order = Order(column, descending)
        for project_id, visible, where, args in lists:
            expected = whole(queries, where, args, order)
            total = len(expected)
            assert len({i >> schema.JOB_BLOCK_BITS for i in expected}) >= 4
            for limit in (1, 100, 1000):
                for offset in [*range(limit + 1, total + 2, 97), total - limit, total - 1]:
                    page = queries.jobs(project_id, limit, offset, visible, None, order)
                    got = [row["id"] for row in page.rows]
                    assert got == expected[offset : offset + limit], (project_id, limit, offset)
                    assert page.total == total
    queries.db.close()
    machine.close()


def test_names_order_with_the_unnamed_first_ascending_and_last_descending(
    filled: tuple[StateMachine, Queries],
) -> None:
    """Checked against a sort made here, not by SQLite."""
    _, queries = filled
    rows = queries.db.execute("SELECT id, name FROM jobs WHERE project_id = 1").fetchall()
    ascending = [r[0] for r in sorted(rows, key=lambda r: (r[1] is not None, r[1] or "", r[0]))]
    total = len(rows)
    for offset in (0, total // 2 - 3, total - 5):
        page = queries.jobs(1, 5, offset, None, None, Order("name", False))
        assert [r["id"] for r in page.rows] == ascending[offset : offset + 5]
        page = queries.jobs(1, 5, offset, None, None, Order("name", True))
        assert [r["id"] for r in page.rows] == ascending[::-1][offset : offset + 5]


def test_a_searched_list_pages_from_either_end_with_its_counted_total(
    filled: tuple[StateMachine, Queries],
) -> None:
    _, queries = filled
    search = JobSearch(q="cb/1")  # /cb/1, /cb/10-19, /cb/100-199 that are left
    expected = whole(queries, "WHERE callback_url LIKE ?", ["%cb/1%"], Order("updated_at", True))
    for offset in (0, 3, len(expected) - 4):
        page = queries.jobs(None, 4, offset, None, search, Order("updated_at", True))
        assert page.total == len(expected)
        assert [r["id"] for r in page.rows] == expected[offset : offset + 4]


def test_the_kept_counts_stay_exact_through_every_change_of_the_jobs(tmp_path: Path) -> None:
    machine = StateMachine(tmp_path / "state.db")
    reader = Queries(tmp_path / "state.db")
    db = reader.db

    def check(expected: list[tuple[int, int]]) -> None:
        kept, fresh = counts(db)
        assert kept == fresh == expected
        for project_id, n in expected:
            assert reader.jobs(project_id, 1, 0).total == n
        assert reader.jobs(None, 1, 0).total == sum(n for _, n in expected)
        assert reader.counts()["jobs"] == sum(n for _, n in expected)

    for name in ("p", "q"):
        apply(machine, c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))
    check([])
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(1, 1)]))
    check([(1, 1)])
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(1 + n % 2, n) for n in range(2, 12)]))
    check([(1, 6), (2, 5)])
    # A batch refused whole (an unknown project, a taken name) counts nothing.
    assert "error" in apply(machine, c.JobsCreated(now=NOW, jobs=[job(1, 20), job(9, 21)]))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(2, 22, name="x")]))
    taken = [job(1, 23), job(2, 24, name="x")]
    assert "error" in apply(machine, c.JobsCreated(now=NOW, jobs=taken))
    check([(1, 6), (2, 6)])
    assert "error" in apply(machine, c.JobDeleted(now=NOW, job_id=999))
    for job_id in (3, 5, 7, 9, 11):  # project 2's first five
        assert "ok" in apply(machine, c.JobDeleted(now=NOW, job_id=job_id))
    check([(1, 6), (2, 1)])
    assert "error" in apply(machine, c.ProjectDeleted(now=NOW, project_id=2))  # a job left
    apply(machine, c.JobDeleted(now=NOW, job_id=12))  # the named one
    assert "ok" in apply(machine, c.ProjectDeleted(now=NOW, project_id=2))
    check([(1, 6)])
    assert reader.jobs(2, 10, 0).total == 0
    reader.db.close()
    machine.close()


def test_every_replica_and_a_snapshot_hold_the_same_counts(tmp_path: Path) -> None:
    log = [c.ProjectCreated(now=NOW, name=n, description="", signing_secret="s") for n in "pq"]
    log += [c.JobsCreated(now=NOW, jobs=[job(1 + n % 2, n) for n in range(40)])]
    log += [c.JobDeleted(now=NOW, job_id=i) for i in (1, 3, 5, 2)]
    first, second = StateMachine(tmp_path / "a.db"), StateMachine(tmp_path / "b.db")
    for command in log:
        apply(first, command)
        apply(second, command)
    second.save_snapshot(str(tmp_path / "snap.db"), "raft")
    second.close()
    restored = StateMachine(tmp_path / "c.db")
    restored.load_snapshot(str(tmp_path / "snap.db"))
    more = c.JobsCreated(now=NOW, jobs=[job(2, 50)])
    apply(first, more)
    apply(restored, more)
    assert counts(first._conn) == counts(restored._conn)
    assert counts(first._conn)[0] == [(1, 17), (2, 20)]
    assert first.digest() == restored.digest()
    first.close()
    restored.close()


def test_a_database_of_an_older_node_gets_its_counts_made_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    machine = StateMachine(path)
    for name in ("p", "q"):
        apply(machine, c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(1 + n % 3 // 2, n) for n in range(9)]))
    machine._conn.executescript(  # as a node without the tables wrote it
        "DROP TRIGGER project_job_counts_delete;"
        " DROP TRIGGER project_job_counts_move; DROP TABLE project_job_counts;"
        " DROP TRIGGER job_blocks_delete;"
        " DROP TRIGGER job_blocks_move; DROP TABLE job_blocks;"
    )
    machine.close()
    conn = schema.connect(path, writer=True)  # what loading its snapshot does
    assert counts(conn) == ([(1, 6), (2, 3)], [(1, 6), (2, 3)])
    schema.add_missing_columns(conn)  # idempotent: counted once
    assert counts(conn)[0] == [(1, 6), (2, 3)]
    conn.close()
    machine = StateMachine(path)
    apply(machine, c.JobDeleted(now=NOW, job_id=1))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(2, 20)]))
    assert counts(machine._conn) == ([(1, 5), (2, 4)], [(1, 5), (2, 4)])
    machine.close()


OLDER_INSERT_TRIGGERS = f"""
CREATE TRIGGER project_job_counts_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO project_job_counts (project_id, jobs) VALUES (NEW.project_id, 1)
        ON CONFLICT (project_id) DO UPDATE SET jobs = jobs + 1;
END;
CREATE TRIGGER job_blocks_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_blocks (project_id, block, jobs)
        VALUES (NEW.project_id, NEW.id >> {schema.JOB_BLOCK_BITS}, 1)
        ON CONFLICT (project_id, block) DO UPDATE SET jobs = jobs + 1;
END;
CREATE INDEX jobs_by_bucket ON jobs(bucket);
"""
"""What a node that counted created jobs by a trigger per row had besides."""


def test_a_database_of_a_node_that_counted_by_triggers_counts_each_new_job_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    machine = StateMachine(path)
    for name in ("p", "q"):
        apply(machine, c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(1 + n % 3 // 2, n) for n in range(9)]))
    machine._conn.executescript(OLDER_INSERT_TRIGGERS)
    machine.close()
    machine = StateMachine(path)  # what loading its snapshot does
    kept = {row[0] for row in machine._conn.execute("SELECT name FROM sqlite_master")} & {
        "project_job_counts_insert",
        "job_blocks_insert",
        "jobs_by_bucket",
    }
    assert kept == set()
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(2, 20 + n) for n in range(3)]))
    assert counts(machine._conn) == ([(1, 6), (2, 6)], [(1, 6), (2, 6)])
    machine.close()


def test_the_counts_of_a_batch_are_those_of_counting_its_rows(tmp_path: Path) -> None:
    """A batch spanning blocks and projects adds to each what counting the
    rows of ``jobs`` finds (``JobsCreated`` counts once per project and block)."""
    machine = StateMachine(tmp_path / "state.db")
    for name in ("p", "q", "r"):
        apply(machine, c.ProjectCreated(now=NOW, name=name, description="", signing_secret="s"))
    size = 2**schema.JOB_BLOCK_BITS
    for batch in range(3):
        apply(
            machine,
            c.JobsCreated(now=NOW, jobs=[job(1 + (n * 7 + batch) % 3, n) for n in range(size + 5)]),
        )
    kept, fresh = counts(machine._conn)  # checks the blocks too
    assert kept == fresh
    assert sum(n for _, n in kept) == 3 * (size + 5)
    assert len(blocks(machine._conn)[0]) > 3
    machine.close()


def plan(queries: Queries, sql: str, args: list[Any]) -> str:
    return " | ".join(row[3] for row in queries.db.execute(f"EXPLAIN QUERY PLAN {sql}", args))


@pytest.mark.parametrize("column", list(ORDERS["jobs"]))
def test_a_projects_page_skips_its_offset_in_a_covering_index(
    filled: tuple[StateMachine, Queries], column: str
) -> None:
    """The ids query of ``Queries.jobs`` reads no row of the table, and sorts
    nothing, in both directions; its total reads one row of the counts."""
    _, queries = filled
    for descending in (False, True):
        order = order_by("jobs", Order(column, descending))
        sql = f"SELECT id FROM jobs WHERE project_id = ? {order} LIMIT ? OFFSET ?"
        found = plan(queries, sql, [1, 10, 5])
        assert "USING COVERING INDEX" in found, found
        assert "TEMP B-TREE" not in found, found
    found = plan(
        queries, "SELECT COALESCE(SUM(jobs), 0) FROM project_job_counts WHERE project_id = ?", [1]
    )
    assert "SEARCH project_job_counts USING INTEGER PRIMARY KEY" in found, found


def test_a_page_in_id_order_starts_its_walk_from_its_block(
    filled: tuple[StateMachine, Queries],
) -> None:
    """The blocks of a project are read in order from the primary key, and the
    walk from a block's first id reads the project's index alone; nothing is
    sorted."""
    _, queries = filled
    for direction, bound in (("ASC", ">="), ("DESC", "<")):
        found = plan(
            queries,
            "SELECT block, SUM(jobs) FROM job_blocks WHERE project_id = ?"
            f" GROUP BY block ORDER BY block {direction}",
            [1],
        )
        assert "SEARCH job_blocks USING PRIMARY KEY (project_id=?)" in found, found
        assert "TEMP B-TREE" not in found, found
        found = plan(
            queries,
            f"SELECT id FROM jobs WHERE project_id = ? AND id {bound} ?"
            f" ORDER BY id {direction} LIMIT ? OFFSET ?",
            [1, 1024, 10, 5],
        )
        assert "USING COVERING INDEX" in found, found
        assert "TEMP B-TREE" not in found, found


@pytest.mark.parametrize("column", list(ORDERS["executions"]))
def test_one_jobs_executions_are_found_through_the_job_id_index(
    filled: tuple[StateMachine, Queries], column: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the order and the other filters (a state, a trigger, a time
    range, a project), ``?job_id=`` searches the ``UNIQUE (job_id, slot)``
    index, then sorts that job's rows: never a walk of every execution (in a
    state, or of a trigger) through another index."""
    _, queries = filled
    filters: list[dict[str, Any]] = [
        {},
        {"state": "failed"},
        {"trigger": "manual"},
        {"trigger": "schedule"},
        {"since": 1.0, "until": 2.0},
        {"project_id": 1, "state": "success", "trigger": "backfill"},
    ]
    plans = explain_queries(queries, monkeypatch)
    for given in filters:
        for descending in (False, True):
            plans.clear()
            queries.executions(job_id=1, order=Order(column, descending), **given)
            assert len(plans) == 2, plans  # the total and the page
            for found in plans:
                assert "INDEX sqlite_autoindex_executions_1 (job_id=?)" in found, (given, found)
                assert "SCAN" not in found, found


def test_executions_not_succeeded_are_found_through_their_index_and_success_is_counted_whole(
    tmp_path: Path,
) -> None:
    """The state index holds only the executions not ``success``: a fire's
    entry leaves it when its result succeeds and stays when it fails. Every
    state reads the same rows as a plain scan; each state but ``success`` is
    found through the index, ``Queries.unsettled`` too."""
    machine = StateMachine(tmp_path / "state.db")
    apply(machine, c.ProjectCreated(now=NOW, name="p", description="", signing_secret="s"))
    apply(machine, c.JobsCreated(now=NOW, jobs=[job(1, n) for n in range(1, 13)]))
    apply(machine, c.AssignmentChanged(now=NOW, epoch=1, owners=[1] * schema.BUCKETS))
    ids = list(range(1, 13))
    slot = int(NOW) + 60
    fired = apply(
        machine, c.SlotsFired(now=NOW + 60, node_id=1, epoch=1, fires=[[j, slot] for j in ids])
    )
    assert len(fired["ok"]["accepted"]) == 12
    groups = [
        [slot, "success", 200, 1, 5, None, ids[:6]],
        [slot, "failed", 500, 3, 5, "HTTP 500", ids[6:9]],
    ]  # 10 to 12 stay dispatched; 12 is then lost
    apply(machine, c.ResultsRecorded(now=NOW + 61, node_id=1, groups=groups))
    apply(machine, c.ExecutionsLost(now=NOW + 62, executions=[[12, slot]]))
    queries = Queries(tmp_path / "state.db")
    try:
        indexed = queries.db.execute(
            "SELECT state, COUNT(*) FROM executions INDEXED BY executions_not_succeeded"
            f" WHERE {schema.NOT_SUCCEEDED} GROUP BY state ORDER BY state"
        ).fetchall()
        assert [tuple(row) for row in indexed] == [("dispatched", 2), ("failed", 3), ("lost", 1)]
        for state, expected in (("success", 6), ("failed", 3), ("dispatched", 2), ("lost", 1)):
            page = queries.executions(state=state, limit=100)
            assert page.total == expected, state
            assert sorted(row["job_id"] for row in page.rows) == sorted(
                row[0]
                for row in queries.db.execute(
                    "SELECT job_id FROM executions NOT INDEXED WHERE state = ?", (state,)
                )
            )
        assert [row["job_id"] for row in queries.unsettled("dispatched", 1)] == [10, 11]
        assert [row["job_id"] for row in queries.unsettled("lost")] == [12]
        with pytest.MonkeyPatch.context() as patch:
            plans = explain_queries(queries, patch)
            queries.executions(state="failed", project_id=1)
            queries.unsettled("lost")
            queries.unsettled("dispatched", 1, backfill=False)
        assert len(plans) == 4, plans  # the total and the page, then two reads
        for plan in plans:
            assert "USING INDEX executions_not_succeeded" in plan or (
                "USING COVERING INDEX executions_not_succeeded" in plan
            ), plan
    finally:
        queries.db.close()
        machine.close()


def test_the_api_socket_turns_nagle_off_on_its_connections() -> None:
    """asyncio sets ``TCP_NODELAY`` on an accepted connection only when the
    listening socket says it is TCP; without it, an answer written in two
    parts waits for the client's delayed ACK."""
    listening = bind_http("127.0.0.1", 0)
    port = listening.getsockname()[1]
    accepted: list[int] = []

    async def main() -> None:
        seen = asyncio.Event()

        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
            seen.set()

        server = await asyncio.start_server(on_connection, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await seen.wait()
            writer.close()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert accepted and accepted[0] != 0
