"""Bench: create 100,000 jobs on one real node or a 3-node cluster, like the seed Node.js client.

One node, or with ``--nodes 3`` a real 3-node cluster POSTed to through its
leader (fresh temp dir per run), one credential through the real CLI, one
project, then ``--posts`` POST /api/v1/jobs of ``--batch`` jobs each
(``@every 1m``, America/New_York, seed-shaped items), sequentially, as the seed
client does. Reports, per run and as the median over ``--runs``: total seconds,
jobs/s, p50/p99/max per POST; the nodes' CPU seconds during the POSTs (summed),
the highest peak RSS (VmHWM) of a node right after the last POST, and how long
until the schedulers owned every job (``/status`` ``jobs_owned``, summed over
the nodes) with VmHWM then.

    python bench/create_jobs.py [--nodes 1|3] [--runs 3] [--posts 100] [--batch 1000]
        [--flush-before-ack on|off]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import httpx
import orjson

from tests.support.nodes import Cluster, NodeProcess, create_credential, free_port, wait_until


def seed_batch(project_id: int, batch: int, first: int, callback_url: str) -> bytes:
    return orjson.dumps(
        [
            {
                "spec": "@every 1m",
                "project_id": project_id,
                "execution_type": "http",
                "data": orjson.dumps({"jobId": first + j}).decode(),
                "timezone": "America/New_York",
                "callback_url": callback_url,
            }
            for j in range(batch)
        ]
    )


def one_run(
    index: int,
    posts: int,
    batch: int,
    keep: bool,
    size: int = 1,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"s0-create-{size}x{index}-"))
    cluster = Cluster(workdir, size, extra_env=env) if size > 1 else None
    nodes = cluster.nodes if cluster is not None else [NodeProcess(workdir, extra_env=env or {})]
    try:
        if cluster is not None:
            cluster.start()
            node = cluster.wait_leader()
        else:
            node = nodes[0].start()
        pids = [n.proc.pid for n in nodes if n.proc is not None]
        headers = create_credential(node)
        headers["content-type"] = "application/json"
        with httpx.Client(base_url=node.api, headers=headers, timeout=120.0) as http:
            response = http.post("/projects", json={"name": "bench", "description": "create"})
            response.raise_for_status()
            project_id = response.json()["data"]["id"]
            # Nothing listens here; the jobs' first slot is 60 s after creation,
            # after the measurement ends.
            callback = f"http://127.0.0.1:{free_port()}/callback"
            bodies = [seed_batch(project_id, batch, i * batch, callback) for i in range(posts)]
            rss_before = max(common.proc_status(pid).get("VmRSS", 0) for pid in pids)
            cpu_before = sum(common.cpu_seconds(pid) for pid in pids)
            latencies: list[float] = []
            failures = 0
            started = time.perf_counter()
            for body in bodies:
                t0 = time.perf_counter()
                response = http.post("/jobs", content=body)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 201:
                    failures += 1
                    print(f"  POST failed {response.status_code}: {response.text[:200]}")
            total = time.perf_counter() - started
            cpu_used = sum(common.cpu_seconds(pid) for pid in pids) - cpu_before
            rss_after = peak_status(pids)
            expected = posts * batch

            def jobs_owned() -> int:
                return sum(
                    httpx.get(f"{n.api}/status", headers=headers, timeout=10.0).json()["data"][
                        "node"
                    ]["jobs_owned"]
                    for n in nodes
                )

            def owned() -> int | None:
                count = jobs_owned()
                return count if count >= expected else None

            t_owned = time.perf_counter()
            try:
                wait_until(owned, 120, interval=0.2, what="scheduler owns every job")
                owned_after = time.perf_counter() - t_owned
            except TimeoutError:
                owned_after = None
            status = http.get("/status").json()["data"]["node"]
            rss_owned = peak_status(pids)
        return {
            "run": index,
            "nodes": size,
            "jobs": posts * batch,
            "posts": posts,
            "batch": batch,
            "failures": failures,
            "total_seconds": total,
            "jobs_per_second": posts * batch / total,
            "post_p50_seconds": common.percentile(latencies, 50),
            "post_p99_seconds": common.percentile(latencies, 99),
            "post_max_seconds": max(latencies),
            "node_cpu_seconds_during_posts": cpu_used,
            "rss_before_bytes": rss_before,
            "vmhwm_after_create_bytes": rss_after.get("VmHWM", 0),
            "vmrss_after_create_bytes": rss_after.get("VmRSS", 0),
            "seconds_until_scheduler_owned_all": owned_after,
            "vmhwm_after_owned_bytes": rss_owned.get("VmHWM", 0),
            "jobs_owned": jobs_owned(),
            "counts": status["counts"],
        }
    finally:
        for n in nodes:
            n.kill()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"  kept {workdir}")


def peak_status(pids: list[int]) -> dict[str, int]:
    """The highest VmHWM and VmRSS over the nodes."""
    statuses = [common.proc_status(pid) for pid in pids]
    return {k: max(s.get(k, 0) for s in statuses) for k in ("VmHWM", "VmRSS")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1, help="1 = one node; 3 = a cluster")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep node work dirs")
    parser.add_argument("--name", default=None, help="result name (create_jobs[_3n])")
    parser.add_argument(
        "--flush-before-ack",
        choices=("on", "off"),
        default=None,
        help="the nodes' FlushBeforeAck (default: the nodes' default, on)",
    )
    args = parser.parse_args(argv)
    env = common.flush_env(args.flush_before_ack)
    if args.name is None:
        args.name = "create_jobs" if args.nodes == 1 else f"create_jobs_{args.nodes}n"

    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} ...", flush=True)
        runs.append(one_run(i + 1, args.posts, args.batch, args.keep, args.nodes, env))
    mb = 2**20
    rows = [
        [
            r["run"],
            r["jobs"],
            r["total_seconds"],
            r["jobs_per_second"],
            r["post_p50_seconds"] * 1000,
            r["post_p99_seconds"] * 1000,
            r["post_max_seconds"] * 1000,
            r["node_cpu_seconds_during_posts"],
            r["vmhwm_after_create_bytes"] / mb,
            r["seconds_until_scheduler_owned_all"],
            r["vmhwm_after_owned_bytes"] / mb,
            r["failures"],
        ]
        for r in runs
    ]
    keys = [
        "total_seconds",
        "jobs_per_second",
        "post_p50_seconds",
        "post_p99_seconds",
        "post_max_seconds",
        "node_cpu_seconds_during_posts",
        "vmhwm_after_create_bytes",
        "seconds_until_scheduler_owned_all",
        "vmhwm_after_owned_bytes",
    ]
    med = {k: common.median([r[k] for r in runs if r[k] is not None]) for k in keys}
    rows.append(
        [
            "median",
            runs[0]["jobs"],
            med["total_seconds"],
            med["jobs_per_second"],
            med["post_p50_seconds"] * 1000,
            med["post_p99_seconds"] * 1000,
            med["post_max_seconds"] * 1000,
            med["node_cpu_seconds_during_posts"],
            med["vmhwm_after_create_bytes"] / mb,
            med["seconds_until_scheduler_owned_all"],
            med["vmhwm_after_owned_bytes"] / mb,
            sum(r["failures"] for r in runs),
        ]
    )
    headers = [
        "run",
        "jobs",
        "total s",
        "jobs/s",
        "p50 ms/POST",
        "p99 ms/POST",
        "max ms",
        "node cpu s",
        "VmHWM MiB",
        "owned-all s",
        "VmHWM@owned MiB",
        "fail",
    ]
    print()
    print(common.table(headers, rows))
    path = common.write_result(
        args.name,
        {
            "bench": "create_jobs",
            "command": "python bench/create_jobs.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "median": med,
            "runs": runs,
        },
    )
    print(f"\nwrote {path}")
    return 0 if all(r["failures"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
