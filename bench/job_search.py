"""Bench: one filtered page of ``GET /jobs`` at 100,000 jobs (the query alone),
and the last page of the list in each order (``orderBy``).

On a fresh state machine (real SQLite file, no raft) with ``--jobs`` jobs in
``--projects`` projects, each named, with two labels (``team`` one of 20
values, ``shard`` one of 1,000) and one callback URL in 100 holding a rare
word, it reads a 100-row page (rows and total, as ``GET /jobs`` does) for
each kind of filter and reports the median milliseconds of ``--rounds``.

    python bench/job_search.py [--jobs 100000] [--projects 10] [--rounds 9] [--out NAME]

It prints the figures and writes them to ``bench/results/<NAME>.json``
(default ``job_search``).
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


def measure(args: argparse.Namespace) -> dict[str, float]:
    from scheduler0.daemon.state import commands as c
    from scheduler0.daemon.state.machine import StateMachine
    from scheduler0.daemon.state.queries import ORDERS, JobSearch, Order, Queries

    workdir = Path(tempfile.mkdtemp(prefix="s0-search-"))
    try:
        machine = StateMachine(workdir / "state.db")
        for p in range(args.projects):
            machine.apply(
                c.encode(
                    c.ProjectCreated(now=1.0, name=f"p{p}", description="", signing_secret="s")
                )
            )

        def job(n: int) -> dict[str, Any]:
            rare = "invoices" if n % 100 == 0 else "hook"
            return {
                "project_id": n % args.projects + 1,
                "spec": "@every 1m",
                "timezone": "UTC",
                "data": None,
                "callback_url": f"http://127.0.0.1:9/{rare}/{n}",
                "execution_type": "http",
                "anchor": 1_795_000_000,
                "name": f"job-{n}",
                "labels": {"team": f"t{n % 20}", "shard": f"s{n % 1000}"},
            }

        for start in range(0, args.jobs, 1000):
            batch = [job(n) for n in range(start, min(start + 1000, args.jobs))]
            result = machine.apply(c.encode(c.JobsCreated(now=1.0, jobs=batch)))
            assert "ok" in result, result
        queries = Queries(workdir / "state.db")
        cases = {
            "no filter": JobSearch(),
            "name": JobSearch(name=f"job-{args.jobs // 2}"),
            "label team (5% match)": JobSearch(labels=(("team", "t7"),)),
            "labels team+shard": JobSearch(labels=(("team", "t7"), ("shard", "s7"))),
            "q (1% match)": JobSearch(q="INVOICES"),
            "q + label": JobSearch(q="invoices", labels=(("team", "t0"),)),
        }
        out = {}
        for name, search in cases.items():
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                page = queries.jobs(None, 100, 0, None, search)
                times.append(time.perf_counter() - started)
            out[f"{name} (total {page.total})"] = statistics.median(times) * 1000
        deepest = max(0, args.jobs - 100)
        for column in ORDERS["jobs"]:
            for descending in (False, True):
                order = Order(column, descending)
                times = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    queries.jobs(None, 100, deepest, None, None, order)
                    times.append(time.perf_counter() - started)
                direction = "desc" if descending else "asc"
                out[f"last page by {column} {direction}"] = statistics.median(times) * 1000
        queries.db.close()
        machine.close()
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", default="job_search", help="results file name (no .json)")
    args = parser.parse_args()
    figures = measure(args)
    for name, ms in figures.items():
        print(f"{name:<40} {ms:8.2f} ms")
    settings = {"jobs": args.jobs, "projects": args.projects, "rounds": args.rounds}
    path = common.write_result(args.out, {"settings": settings, "median_ms": figures})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
