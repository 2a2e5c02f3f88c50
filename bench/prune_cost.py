"""Bench: CPU cost of one ``ExecutionsPruned`` on a replica holding many execution rows.

Every node applies the leader's retention command every ``PRUNE_EVERY``
seconds, for ``PRUNE_JOBS_PER_ROUND`` jobs. On a fresh state machine (real
SQLite file, no raft) it creates ``--jobs`` jobs, then fires and settles
``--fires`` of them a round (alternating halves, as two workers do) for
``--rounds`` rounds, so each job holds ``rounds * fires / jobs`` rows. It then
applies one ``ExecutionsPruned`` of the first 5,000 jobs ``--repeat`` times,
each rolled back, for each ``--per-job`` (a limit above every job's row count:
the common case, nothing to drop per job; one below it: every job drops some),
with the global cap and the age rule off, and reports the median
milliseconds; then the global cap alone at ``--caps`` (shares of the rows
held), applied as older entries do (the oldest rows first) and as the leader
proposes it (``fair``: shared among projects). ``--repo DIR`` measures
another checkout (before/after: ``git worktree add /tmp/old <commit>``).

    python bench/prune_cost.py [--jobs 10000] [--fires 5000] [--rounds 100]
        [--per-job 100,40] [--caps 1.1,0.9] [--repeat 7] [--repo DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

PRUNED_JOBS = 5000


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scheduler0.daemon.state import commands as c
    from scheduler0.daemon.state.handlers.firing import executions_pruned
    from scheduler0.daemon.state.machine import StateMachine

    workdir = Path(tempfile.mkdtemp(prefix="s0-prune-"))
    machine = StateMachine(workdir / "state.db")
    try:

        def apply(command: Any) -> Any:
            result = machine.apply(c.encode(command))
            assert "ok" in result, result
            return result["ok"]

        common.seed_replica(apply, args.jobs)
        halves = max(1, args.jobs // args.fires)
        for r in range(args.rounds):
            slot = 1_795_000_060 + 60 * r
            first = 1 + (r % halves) * args.fires
            ids = list(range(first, first + args.fires))
            apply(
                c.SlotsFired(
                    now=slot + 0.1,
                    node_id=1,
                    epoch=1,
                    fires=[[j, slot] for j in ids],
                    following=[[slot + 60, ids]],
                )
            )
            apply(
                c.ResultsRecorded(
                    now=slot + 0.5, node_id=1, groups=[[slot, "success", 200, 1, 12, None, ids]]
                )
            )
        db = machine._conn
        (rows,) = db.execute("SELECT COUNT(*) FROM executions").fetchone()

        def timed(prune: Any) -> dict[str, Any]:
            """Median ms of ``prune`` applied ``--repeat`` times, each rolled back."""
            times: list[float] = []
            deleted = 0
            for _ in range(args.repeat):
                db.execute("SAVEPOINT measured")
                started = time.perf_counter()
                deleted = executions_pruned(_context(machine), prune)["deleted"]
                times.append(time.perf_counter() - started)
                db.execute("ROLLBACK TO measured")
                db.execute("RELEASE measured")
            return {"median_ms": statistics.median(times) * 1000, "deleted": deleted}

        out: dict[str, Any] = {"execution_rows": rows, "ms_by_per_job": {}}
        for per_job in args.per_job:
            prune = c.ExecutionsPruned(
                now=2e9,
                keep_rows=10**9,
                before=0.0,
                per_job=per_job,
                job_id_from=1,
                job_id_to=PRUNED_JOBS,
            )
            out["ms_by_per_job"][str(per_job)] = timed(prune)
        # The global cap alone (per-job and age rules off), as every older entry
        # applies it and as the leader proposes it now (``fair``: shared among
        # projects, a GROUP BY scan when over the cap).
        out["ms_by_cap"] = {}
        cases = [(share, fair, 1) for share in args.caps for fair in (None, True)]
        cases += [(share, True, 2) for share in args.caps]
        for share, fair, tenants in cases:
            if tenants == 2 and db.execute("SELECT COUNT(*) FROM projects").fetchone()[0] == 1:
                # A second project with a job: the fair cap now counts by project.
                apply(c.ProjectCreated(now=2e9, name="q", description="", signing_secret="s"))
                job = {"project_id": 2, "spec": "@every 1m", "timezone": "UTC", "anchor": 0}
                job.update(callback_url="http://127.0.0.1:9/cb", execution_type="http")
                apply(c.JobsCreated(now=2e9, jobs=[job]))
            prune = c.ExecutionsPruned(
                now=2e9,
                keep_rows=int(rows * share),
                before=0.0,
                per_job=10**9,
                job_id_from=0,
                job_id_to=-1,
                fair=fair,
            )
            how = f"fair, {tenants} project(s) with jobs" if fair else "oldest first"
            out["ms_by_cap"][f"{share} of the rows, {how}"] = timed(prune)
        return out
    finally:
        machine.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _context(machine: Any) -> Any:
    from scheduler0.daemon.state.apply import ApplyContext

    return ApplyContext(machine._conn, machine.assignment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--fires", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--per-job", type=lambda s: [int(x) for x in s.split(",")], default=[100, 40]
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--caps",
        type=lambda text: [float(v) for v in text.split(",")],
        default=[1.1, 0.9],
        help="global caps to measure, as shares of the rows held (1.1: under it)",
    )
    parser.add_argument("--repo", type=Path, default=None, help="measure this checkout instead")
    parser.add_argument("--name", default=None, help="result name (prune_cost)")
    args = parser.parse_args(argv)
    source = common.use_checkout(args.repo)
    result = measure(args)
    rows = result["execution_rows"]
    print(
        common.table(
            ["checkout", "execution rows", "per_job", "rows dropped", "ms per prune (median)"],
            [
                [source, rows, int(per_job), m["deleted"], m["median_ms"]]
                for per_job, m in result["ms_by_per_job"].items()
            ],
        )
    )
    print(
        common.table(
            ["global cap", "rows dropped", "ms per prune (median)"],
            [[cap, m["deleted"], m["median_ms"]] for cap, m in result["ms_by_cap"].items()],
        )
    )
    common.save_checkout_result("prune_cost", args, source, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
