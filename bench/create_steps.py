"""Bench: where a created job's CPU goes, step by step, in one process.

Creating a batch runs these steps (the real functions, on a real SQLite file,
no raft, no HTTP): on the node the POST reaches, ``parse`` (the body's JSON),
``validate`` (``validate_jobs``), ``rows`` (``_job_rows``: each job's first
run), ``encode`` (the ``JobsCreated`` entry) and ``answer`` (the 201's JSON,
``views.created_jobs`` and its encoding); on every replica ``decode`` and
``apply``; on the job's owner only ``sched_rows`` (its scheduling row from
the applied command, ``CreatedJobs.scheduling_rows``) and ``sched_add``
(``OwnedJobs._add``). ``sched_read`` is the read it replaced, the one a job
changed since still takes (``jobs_for_scheduling``): the rows must be equal.
Each is timed per batch of 1,000 jobs of ``bench/scale.py``'s mix (the same
bodies its POSTs send) and reported as the median microseconds per job over
the ``--jobs`` / 1,000 batches.

``apply_without_ordering_indexes`` repeats the applies on a second state whose
four indexes that order job pages by name and by update time
(``jobs_by_name_all``, ``jobs_by_updated``, ``jobs_by_project_name``,
``jobs_by_project_updated``) are dropped: what those four cost each replica.

``cluster_estimate_us``: what the steps add up to on 3 nodes, the node POSTed
to plus two replicas plus one owner. ``create_jobs.py --nodes 3`` measures the
nodes' real CPU per job to set against it; the difference is what no step here
holds (HTTP, raft transport and journal, thread hand-offs, snapshots).

    python bench/create_steps.py [--jobs 100000] [--name create_steps]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import _common as common
import orjson
from scale import batch_body

ORDERING_INDEXES = (
    "jobs_by_name_all",
    "jobs_by_updated",
    "jobs_by_project_name",
    "jobs_by_project_updated",
)
STEPS = (
    "parse",
    "validate",
    "rows",
    "encode",
    "decode",
    "apply",
    "sched_read",
    "sched_rows",
    "sched_add",
    "answer",
    "apply_without_ordering_indexes",
)


def measure(jobs: int) -> dict[str, float]:
    from scheduler0.daemon.api import jobs as api_jobs
    from scheduler0.daemon.api import views
    from scheduler0.daemon.executor.destinations import DestinationPolicy
    from scheduler0.daemon.scheduling.owned import OwnedJobs
    from scheduler0.daemon.state import commands as c
    from scheduler0.daemon.state.apply import CreatedJobs
    from scheduler0.daemon.state.machine import StateMachine
    from scheduler0.daemon.state.queries import Queries

    workdir = Path(tempfile.mkdtemp(prefix="s0-steps-"))
    machines = []
    try:
        for name in ("state.db", "lean.db"):
            machine = StateMachine(workdir / name)
            machines.append(machine)
            machine.apply(
                c.encode(c.ProjectCreated(now=1.0, name="p", description="", signing_secret="s"))
            )
            machine.apply(c.encode(c.AssignmentChanged(now=1.0, epoch=1, owners=[1] * 1024)))
        machine, lean = machines
        for index in ORDERING_INDEXES:
            lean._conn.execute(f"DROP INDEX {index}")
        queries = Queries(workdir / "state.db")
        owned = OwnedJobs(node_id=1, machine=machine, queries=queries, fire_ahead=2.0)
        checks = api_jobs.JobChecks(DestinationPolicy(), 64 * 1024)
        every_bucket = list(range(1024))
        times: dict[str, list[float]] = {step: [] for step in STEPS}

        @contextmanager
        def clock(step: str) -> Iterator[None]:
            started = time.perf_counter()
            yield
            times[step].append(time.perf_counter() - started)

        for first in range(0, jobs, 1000):
            body = batch_body(1, first, 1000, "http://127.0.0.1:9/cb")
            with clock("parse"):
                items = orjson.loads(body)
            with clock("validate"):
                valid = api_jobs.validate_jobs(items, queries, checks)
            now = time.time()
            with clock("rows"):
                rows = api_jobs._job_rows(valid, int(now))
            with clock("encode"):
                entry = c.encode(c.JobsCreated(now=now, jobs=rows, created_by="bench"))
            with clock("decode"):
                c.decode(entry)
            with clock("apply"):
                result = machine.apply(entry)
            with clock("apply_without_ordering_indexes"):
                lean.apply(entry)
            ids = list(range(result["ok"]["ids"][0], result["ok"]["ids"][1] + 1))
            with clock("sched_read"):
                read = list(queries.jobs_for_scheduling(ids, every_bucket))
            with clock("sched_rows"):
                made = CreatedJobs(ids[0], rows).scheduling_rows(lambda job_id: True)
            assert made == read
            with clock("sched_add"):
                owned._add(made)
            with clock("answer"):
                orjson.dumps(
                    {"success": True, "data": views.created_jobs(ids[0], rows, now, "bench")}
                )
        return {step: statistics.median(times[step]) * 1e6 / 1000 for step in STEPS}
    finally:
        for machine in machines:
            machine.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--name", default="create_steps")
    args = parser.parse_args(argv)
    us = measure(args.jobs)
    leader = sum(us[s] for s in ("parse", "validate", "rows", "encode", "apply", "answer"))
    replica = us["decode"] + us["apply"]
    owner = us["sched_rows"] + us["sched_add"]
    estimate = leader + 2 * replica + owner
    print(common.table(["step", "µs per job"], [[s, us[s]] for s in STEPS]))
    print(
        f"node POSTed to {leader:.1f} µs, each other replica {replica:.1f} µs, owner"
        f" {owner:.1f} µs: on 3 nodes {estimate:.1f} µs per job; the four ordering indexes"
        f" {us['apply'] - us['apply_without_ordering_indexes']:.1f} µs of each apply"
    )
    path = common.write_result(
        args.name,
        {
            "bench": "create_steps",
            "command": "python bench/create_steps.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "us_per_job": us,
            "leader_us": leader,
            "replica_us": replica,
            "owner_us": owner,
            "cluster_estimate_us": estimate,
            "ordering_indexes_us": us["apply"] - us["apply_without_ordering_indexes"],
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
