"""Bench: deep pages of ``GET /jobs`` and one job's executions, through the
HTTP API of one node, at J jobs.

For each J of ``--jobs`` it starts one node in ``<workdir>/<J>`` (a node kept
there from an earlier run restarts on its data: the jobs are created once),
and, the first time, creates through the API one project of J jobs in POSTs
of 1,000 (each named ``job-<hash of i>``, so the name order is not the id
order; ``@every 24h``: none fires during the bench) and the executions:
``K = max(1, J // 20,000)`` jobs of a 6-field every-second cron, created paused, each
backfilled with 9,000 past slots (pending rows that a paused job never sends:
the node stays quiet), and one such job with 5 slots. Then, ``--rounds``
times each, medians in milliseconds:

* ``GET /jobs?project_id=&limit=1000&offset=O&order_by=C&order_by_direction=D``
  for every documented order C (``queries.ORDERS["jobs"]``) and direction D,
  at the last page (O = J - 1,000) and the middle one (O = J/2);
* ``GET /executions?job_id=&limit=100`` in every order of the executions
  list, for the job of 5 runs and for a job of 9,000 (its first page), among
  ``K * 9,000 + 5`` executions in all.

The node is measured after a restart on its data with ``RaftSnapshotInterval``
``--snapshot-interval`` (3,600 s): with the default (15 s) an idle node of
1,000,000 jobs writes a 345 MB snapshot every 15 to 30 s, taking 4-6 s of
CPU and disk each time, and the GETs that overlap one measure that instead
of the read. Each answer's ``total`` and row count are checked. A GET whose first round
took more than 3 s (the old code's sorted pages at 1,000,000 jobs) is
measured once. The figures go into
``bench/results/<--out>.json`` under ``runs[<--label>][J]`` (other labels
already in the file are kept: run it once on the old code with ``--label
before`` and once on the new with ``--label after``).

    python bench/deep_page.py --label after [--jobs 10000 100000 1000000]
        [--rounds 5] [--workdir /tmp/s0-deep-page] [--out deep_page]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import _common as common
import httpx
import orjson

from tests.support.nodes import NodeProcess, create_credential

BATCH = 1000
PAGE = 1000
BACKFILLED = 9000
ROUNDS = 5
SLOW_S = 3.0
JOB_ORDERS = ("id", "name", "project_id", "created_at", "updated_at")
EXECUTION_ORDERS = ("scheduled_at", "id", "created_at")


def job_name(i: int) -> str:
    return "job-" + hashlib.blake2b(str(i).encode(), digest_size=6).hexdigest()


def populate(node: NodeProcess, jobs: int, workdir: Path) -> dict[str, Any]:
    """The project, its jobs and the executions (see the module's docstring).
    Resumable: the jobs, once all created, are noted in ``bench_jobs.json``."""
    credential = create_credential(node)
    headers = {**credential, "content-type": "application/json"}
    made = workdir / "bench_jobs.json"
    with httpx.Client(base_url=node.api, headers=headers, timeout=600.0) as http:
        if made.exists():
            noted = json.loads(made.read_text())
        else:
            noted = create_jobs(http, jobs)
            made.write_text(json.dumps(noted))
        project_id = noted["project_id"]
        runs: dict[str, int] = {}
        now = int(time.time())
        for k in range(max(1, jobs // 20_000) + 1):
            slots = 5 if k == 0 else BACKFILLED
            job = {
                "project_id": project_id,
                "spec": "* * * * * *",
                "timezone": "UTC",
                "callback_url": "http://127.0.0.1:9/cb",
                "status": "inactive",  # created paused: it never fires
            }
            r = post(http, "/jobs", orjson.dumps([job]), f"deep-page-run-{now}-{k}")
            job_id = r.json()["data"][0]["id"]
            backfill: dict[str, float] = {"from": now - 10 - slots + 1, "to": now - 10}
            body = json.dumps(backfill_iso(backfill)).encode()
            post(http, f"/jobs/{job_id}/backfill", body, f"deep-page-backfill-{now}-{k}")
            runs[str(job_id)] = total(http, "/executions", {"job_id": job_id})
        listed = total(http, "/jobs", {"project_id": project_id})
        executions = total(http, "/executions", {})
    return {
        "credential": credential,
        "project_id": project_id,
        "jobs": listed,
        "executions": executions,
        "runs": runs,
        "created_seconds": noted["created_seconds"],
    }


def create_jobs(http: httpx.Client, jobs: int) -> dict[str, Any]:
    started = time.perf_counter()
    r = http.post("/projects", json={"name": "deep", "description": "deep pages"})
    r.raise_for_status()
    project_id = r.json()["data"]["id"]
    for first in range(0, jobs, BATCH):
        body = [
            {
                "project_id": project_id,
                "name": job_name(i),
                "spec": "@every 24h",
                "timezone": "UTC",
                "callback_url": "http://127.0.0.1:9/cb",
            }
            for i in range(first, min(first + BATCH, jobs))
        ]
        post(http, "/jobs", orjson.dumps(body), f"deep-page-{first}")
        if (first // BATCH) % 100 == 99:
            print(f"    {first + BATCH:,} jobs, {time.perf_counter() - started:.0f} s")
    return {"project_id": project_id, "created_seconds": time.perf_counter() - started}


def total(http: httpx.Client, path: str, params: dict[str, Any]) -> int:
    r = http.get(path, params={**params, "limit": 1})
    r.raise_for_status()
    return int(r.json()["data"]["total"])


def post(http: httpx.Client, path: str, body: bytes, key: str) -> httpx.Response:
    """POST, again under the same ``Idempotency-Key`` after a 503 (a write
    refused while a snapshot held the node up may have been applied)."""
    for _ in range(10):
        r = http.post(path, content=body, headers={"idempotency-key": key})
        if r.status_code != 503:
            break
        time.sleep(1)
    r.raise_for_status()
    return r


def backfill_iso(body: dict[str, float]) -> dict[str, str]:
    from datetime import UTC, datetime

    return {k: datetime.fromtimestamp(v, UTC).isoformat() for k, v in body.items()}


def timed(http: httpx.Client, path: str, params: dict[str, Any], rounds: int) -> dict[str, Any]:
    """The median of ``rounds`` GETs; of one only when the first took more
    than ``SLOW_S`` (then ``rounds`` in the figures says 1)."""
    times: list[float] = []
    data: dict[str, Any] = {}
    for _ in range(rounds):
        if times and times[0] > SLOW_S * 1000:
            break
        t0 = time.perf_counter()
        r = http.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text[:300]
        data = r.json()["data"]
    rows = next(v for k, v in data.items() if isinstance(v, list))
    return {
        "median_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
        "total": data["total"],
        "rows": len(rows),
        "first_id": rows[0]["id"] if rows else None,
        "rounds": len(times),
    }


def measure(node: NodeProcess, setup: dict[str, Any], rounds: int) -> dict[str, Any]:
    headers = setup["credential"]
    total = setup["jobs"]
    out: dict[str, Any] = {"jobs": {}, "executions": {}}
    with httpx.Client(base_url=node.api, headers=headers, timeout=120.0) as http:
        timed(http, "/jobs", {"project_id": setup["project_id"], "limit": 10}, 1)  # warm up
        for column in JOB_ORDERS:
            for direction in ("asc", "desc"):
                for where, offset in (("last", total - PAGE), ("middle", total // 2)):
                    params = {
                        "project_id": setup["project_id"],
                        "limit": PAGE,
                        "offset": offset,
                        "order_by": column,
                        "order_by_direction": direction,
                    }
                    got = timed(http, "/jobs", params, rounds)
                    assert got["total"] == total, (got, total)
                    assert got["rows"] == min(PAGE, total - offset), got
                    out["jobs"][f"{where} page by {column} {direction}"] = got
        small, big = sorted(setup["runs"], key=lambda j: setup["runs"][j])[:2]
        for label, job_id in (("5 runs", small), ("9000 runs", big)):
            for column in EXECUTION_ORDERS:
                for direction in ("asc", "desc"):
                    params = {
                        "job_id": job_id,
                        "limit": 100,
                        "order_by": column,
                        "order_by_direction": direction,
                    }
                    got = timed(http, "/executions", params, rounds)
                    assert got["total"] == setup["runs"][job_id], got
                    out["executions"][f"job of {label} by {column} {direction}"] = got
    return out


def settle(node: NodeProcess, setup: dict[str, Any]) -> float:
    """Wait (bounded) until the node's scheduler owns as many jobs on two
    polls 2 s apart and 5 health checks in a row answer within 50 ms: a node
    answers "ready" while its scheduler still loads its jobs, which at
    1,000,000 holds it up for tens of seconds more. The seconds it took."""
    started = time.perf_counter()
    deadline = started + 600
    with httpx.Client(base_url=node.api, headers=setup["credential"], timeout=60.0) as http:

        def owned() -> int:
            return int(http.get("/status").json()["data"]["node"]["jobs_owned"])

        last, in_row = -1, 0
        while time.perf_counter() < deadline and in_row < 5:
            now_owned = owned()
            if now_owned != last:
                last, in_row = now_owned, 0
                time.sleep(2)
                continue
            t0 = time.perf_counter()
            http.get("/healthcheck")
            in_row = in_row + 1 if time.perf_counter() - t0 < 0.05 else 0
            time.sleep(0.2)
    return time.perf_counter() - started


def one(jobs: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir) / str(jobs)
    saved = workdir / "bench_setup.json"
    ports = workdir / "ports.json"  # a node restarts on its data at the same addresses
    if ports.exists():
        node = NodeProcess(workdir, **json.loads(ports.read_text()))
    else:
        node = NodeProcess(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        ports.write_text(json.dumps({"port": node.port, "raft_port": node.raft_port}))
    if not saved.exists():
        try:
            node.start(wait=False)
            node.wait_ready(timeout=600)
            saved.write_text(json.dumps(populate(node, jobs, workdir)))
        finally:
            node.stop()
    setup = json.loads(saved.read_text())
    quiet = {"SCHEDULER0_RAFT_SNAPSHOT_INTERVAL": str(args.snapshot_interval)}
    node.extra_env = quiet if args.snapshot_interval else {}
    try:
        started = time.perf_counter()
        node.start(wait=False)
        node.wait_ready(timeout=600)
        ready = time.perf_counter() - started
        settled = settle(node, setup)
        load = os.getloadavg()
        figures = measure(node, setup, args.rounds)
        return {
            "jobs_listed": setup["jobs"],
            "executions": setup.get("executions", sum(setup["runs"].values())),
            "node_ready_s": round(ready, 1),
            "node_settled_s": round(settled, 1),
            "created_seconds": setup["created_seconds"],
            "snapshot_interval_s": args.snapshot_interval or 60.0,
            "loadavg": {"start": load, "end": os.getloadavg()},
            **figures,
        }
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--workdir", default="/tmp/s0-deep-page")
    parser.add_argument("--label", required=True, help="before, after, ...")
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=3600.0,
        help="RaftSnapshotInterval (s) of the node while it is measured (0: the default, 60):"
        " at 1,000,000 jobs a snapshot takes seconds of CPU and disk every 40 to 60 s",
    )
    parser.add_argument("--out", default="deep_page", help="results file name (no .json)")
    args = parser.parse_args()
    path = common.RESULTS_DIR / f"{args.out}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    runs: dict[str, Any] = previous.get("runs", {})
    for jobs in args.jobs:
        print(f"J = {jobs:,} ({args.label})", flush=True)
        result = one(jobs, args)
        result["machine"] = common.machine_info()
        runs.setdefault(args.label, {})[str(jobs)] = result
        for section in ("jobs", "executions"):
            for name, got in result[section].items():
                print(f"  {name:<44} {got['median_ms']:9.1f} ms (max {got['max_ms']:.1f})")
        common.write_result(args.out, {"settings": {"rounds": args.rounds}, "runs": runs})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
