"""Bench: the seed README's Node.js example, end to end, on 1 node or a 3-node cluster.

Per run (fresh temp dir): ``--mode single`` (one node) or ``--mode cluster``
(3 nodes, POSTs to the leader), the lean receiver (``bench/lean_receiver.py``)
as the callback target, one credential and one project, then ``--jobs`` jobs
``@every 1m`` America/New_York in sequential POSTs of ``--batch``
(``create_jobs.py``'s ``seed_batch``). It reports creation time and jobs/s,
then lets the jobs fire for ``--minutes`` minutes and reports PER MINUTE
(minute k = slots in ``[first_slot + 60k, first_slot + 60k + 60)``):

* ``expected``: slots on the jobs' grids in that minute (a job created at
  anchor A fires at A+60, A+120, ...; A = the job's ``next_run_at`` - 60);
* ``fired``: distinct execution ids delivered; ``missing``: expected slots with
  no delivery; ``missed_state``: executions in state ``missed``
  (``GET /executions?state=missed&consistency=strong``, paged by offset);
* ``duplicated``: execution ids delivered more than once (``dup_extra``: the
  extra deliveries); ``off_grid``: deliveries of slots not on a job's grid;
* lateness p50/p99/max of the first delivery of each id (receive time - slot,
  slot = the number after the dash in the execution id);
* ``series`` (per run, for ``bench/plot.py``): per slot second of the window,
  ``[s since first_slot, deliveries, p50, p99, max]`` of the first deliveries
  of on-grid execution ids (``_common.lateness_series``);

and each node's peak RSS (VmHWM) at the end. It waits until every expected
slot was delivered or ``--drain`` seconds after the last minute's end.

    python bench/seed_scenario.py [--mode single|cluster] [--jobs 100000]
        [--minutes 3] [--runs 1]

The machine's cores are shared by the node(s), the receiver and this script.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import _common as common
import httpx
import orjson
from _common import start_receiver, stop
from create_jobs import seed_batch
from failover import get_json, split_id

from tests.support.nodes import Cluster, NodeProcess, create_credential

MB = 2**20
PERIOD = 60


class Deliveries:
    """Incremental reader of the lean receiver's file, aggregated per minute."""

    def __init__(self, path: Path, anchors: dict[int, int], first_slot: int, minutes: int) -> None:
        self.path = path
        self.anchors = anchors
        self.first_slot = first_slot
        self.minutes = minutes
        self.pos = 0
        self.rest = b""
        self.seen: set[str] = set()
        self.extra: Counter[str] = Counter()  # id -> deliveries beyond the first
        self.fired = [0] * minutes  # distinct ids per minute
        self.on_grid = [0] * minutes  # distinct on-grid ids per minute
        self.off_grid = [0] * minutes
        self.lateness: list[list[float]] = [[] for _ in range(minutes)]
        self.pairs: list[tuple[int, float]] = []  # (slot, lateness) of on-grid first deliveries
        self.minute_of: dict[str, int] = {}  # duplicated ids only
        self.outside = 0  # deliveries of slots outside the window
        self.non_2xx = 0
        self.requests = 0

    def minute(self, slot: int) -> int | None:
        k = (slot - self.first_slot) // PERIOD
        return k if 0 <= k < self.minutes else None

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.pos)
            chunk = f.read()
        self.pos += len(chunk)
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            if not line:
                continue
            t, status, ids = orjson.loads(line)
            self.requests += 1
            if not 200 <= status < 300:
                self.non_2xx += 1
                continue
            for eid in ids:
                if eid is None:
                    continue
                if eid in self.seen:
                    self.extra[eid] += 1
                    continue
                job, slot = split_id(eid)
                k = self.minute(slot)
                if k is None:
                    self.outside += 1
                    continue
                self.seen.add(eid)
                self.fired[k] += 1
                self.lateness[k].append(t - slot)
                anchor = self.anchors.get(job)
                if anchor is not None and slot >= anchor + PERIOD and (slot - anchor) % PERIOD == 0:
                    self.on_grid[k] += 1
                    self.pairs.append((slot, t - slot))
                else:
                    self.off_grid[k] += 1


def expected_per_minute(anchors: dict[int, int], first_slot: int, minutes: int) -> list[int]:
    by_anchor = Counter(anchors.values())
    out = [0] * minutes
    for k in range(minutes):
        start = first_slot + k * PERIOD
        for anchor, n in by_anchor.items():
            slot = start + (anchor - start) % PERIOD  # the grid point in [start, start+60)
            if slot >= anchor + PERIOD:
                out[k] += n
    return out


def iso_to_unix(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def missed_executions(node: NodeProcess, headers: dict[str, str]) -> list[int]:
    """Slots of every execution in state ``missed``, paged by offset to an empty page."""
    slots: list[int] = []
    while True:
        page = get_json(
            node,
            "/executions",
            headers,
            state="missed",
            consistency="strong",
            limit=1000,
            offset=len(slots),
        )
        items = page["executions"]
        if not items:
            return slots
        slots.extend(int(e["slot"]) for e in items)


def one_run(index: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"s0-seed-{args.mode}-{index}-"))
    receiver: subprocess.Popen[bytes] | None = None
    cluster = Cluster(workdir, 3) if args.mode == "cluster" else None
    nodes = cluster.nodes if cluster is not None else [NodeProcess(workdir / "node1")]
    result: dict[str, Any] = {"run": index, "mode": args.mode}
    try:
        receiver, receiver_url, out = start_receiver(workdir)
        if cluster is not None:
            cluster.start()
            target = cluster.wait_leader()
        else:
            target = nodes[0].start()
        result["post_to_node"] = target.node_id
        credential = create_credential(target)
        headers = {**credential, "content-type": "application/json"}
        anchors: dict[int, int] = {}
        failures = 0
        post_seconds: list[float] = []
        with httpx.Client(base_url=target.api, headers=headers, timeout=300.0) as http:
            r = http.post("/projects", json={"name": "seed", "description": "seed scenario"})
            r.raise_for_status()
            project_id = r.json()["data"]["id"]
            callback = f"{receiver_url}/callback"
            posts = (args.jobs + args.batch - 1) // args.batch
            t0 = time.time()
            for i in range(posts):
                n = min(args.batch, args.jobs - i * args.batch)
                body = seed_batch(project_id, n, i * args.batch, callback)
                p0 = time.perf_counter()
                r = http.post("/jobs", content=body)
                post_seconds.append(time.perf_counter() - p0)
                if r.status_code != 201:
                    failures += 1
                    print(f"    POST failed {r.status_code}: {r.text[:200]}")
                    continue
                for job in r.json()["data"]:
                    anchors[job["id"]] = iso_to_unix(job["next_run_at"]) - PERIOD
            create_seconds = time.time() - t0
        result.update(
            {
                "jobs": len(anchors),
                "create_failures": failures,
                "create_seconds": create_seconds,
                "jobs_per_second": len(anchors) / create_seconds if create_seconds else 0.0,
                "post_p50_s": common.percentile(post_seconds, 50),
                "post_p99_s": common.percentile(post_seconds, 99),
                "post_max_s": max(post_seconds, default=0.0),
            }
        )
        if not anchors:
            raise RuntimeError("no job was created")
        first_slot = min(anchors.values()) + PERIOD
        window_end = first_slot + PERIOD * args.minutes
        expected = expected_per_minute(anchors, first_slot, args.minutes)
        print(
            f"  created {len(anchors):,} jobs in {create_seconds:.1f}s "
            f"({result['jobs_per_second']:,.0f} jobs/s); firing until "
            f"{window_end - time.time():.0f}s from now (+ drain) ...",
            flush=True,
        )
        deliveries = Deliveries(out, anchors, first_slot, args.minutes)
        deadline = window_end + args.drain
        while time.time() < deadline:
            time.sleep(1.0)
            deliveries.poll()
            for node in nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"node {node.node_id} exited: {node.log_tail(15)}")
            if time.time() >= window_end and sum(deliveries.on_grid) >= sum(expected):
                break
        deliveries.poll()
        result["drain_seconds_after_window"] = max(0.0, time.time() - window_end)
        result["vmhwm"] = {
            n.node_id: common.proc_status(n.proc.pid).get("VmHWM", 0)
            for n in nodes
            if n.proc is not None
        }
        result["vmrss"] = {
            n.node_id: common.proc_status(n.proc.pid).get("VmRSS", 0)
            for n in nodes
            if n.proc is not None
        }
        reader = cluster.wait_leader() if cluster is not None else target
        missed_slots = missed_executions(reader, credential)
        missed = [0] * args.minutes
        for slot in missed_slots:
            k = deliveries.minute(slot)
            if k is not None:
                missed[k] += 1
        dup_ids: list[int] = [0] * args.minutes
        dup_extra: list[int] = [0] * args.minutes
        for eid, extra in deliveries.extra.items():
            k = deliveries.minute(split_id(eid)[1])
            if k is not None:
                dup_ids[k] += 1
                dup_extra[k] += extra
        per_minute = []
        for k in range(args.minutes):
            late = deliveries.lateness[k]
            per_minute.append(
                {
                    "minute": k,
                    "slot_start": first_slot + k * PERIOD,
                    "expected": expected[k],
                    "fired": deliveries.fired[k],
                    "missing": expected[k] - deliveries.on_grid[k],
                    "missed_state": missed[k],
                    "duplicated": dup_ids[k],
                    "dup_extra": dup_extra[k],
                    "off_grid": deliveries.off_grid[k],
                    "lateness_p50_s": common.percentile(late, 50),
                    "lateness_p99_s": common.percentile(late, 99),
                    "lateness_max_s": max(late, default=0.0),
                }
            )
        all_late = [x for m in deliveries.lateness for x in m]
        result.update(
            {
                "first_slot": first_slot,
                "minutes": args.minutes,
                "per_minute": per_minute,
                "expected_total": sum(expected),
                "fired_total": sum(deliveries.fired),
                "missing_total": sum(m["missing"] for m in per_minute),
                "missed_state_in_window": sum(missed),
                "missed_state_total": len(missed_slots),
                "duplicated_total": sum(dup_ids),
                "dup_extra_total": sum(dup_extra),
                "off_grid_total": sum(deliveries.off_grid),
                "deliveries_outside_window": deliveries.outside,
                "receiver_requests": deliveries.requests,
                "receiver_non_2xx": deliveries.non_2xx,
                "lateness_p50_s": common.percentile(all_late, 50),
                "lateness_p99_s": common.percentile(all_late, 99),
                "lateness_max_s": max(all_late, default=0.0),
                # [s since first_slot, deliveries, p50, p99, max] per slot second
                "series": common.lateness_series(deliveries.pairs, origin=first_slot),
            }
        )
    finally:
        for node in nodes:
            node.kill()
        stop(receiver)
        result.update(common.node_log_problems(nodes))
        if args.keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def print_run(r: dict[str, Any]) -> None:
    rows: list[list[Any]] = [
        [
            m["minute"],
            m["expected"],
            m["fired"],
            m["missing"],
            m["missed_state"],
            m["duplicated"],
            m["off_grid"],
            m["lateness_p50_s"],
            m["lateness_p99_s"],
            m["lateness_max_s"],
        ]
        for m in r["per_minute"]
    ]
    rows.append(
        [
            "all",
            r["expected_total"],
            r["fired_total"],
            r["missing_total"],
            r["missed_state_in_window"],
            r["duplicated_total"],
            r["off_grid_total"],
            r["lateness_p50_s"],
            r["lateness_p99_s"],
            r["lateness_max_s"],
        ]
    )
    headers = [
        "minute",
        "expected",
        "fired",
        "missing",
        "missed(state)",
        "duplicated",
        "off-grid",
        "late p50 s",
        "late p99 s",
        "late max s",
    ]
    print()
    print(f"run {r['run']} ({r['mode']}, {r['jobs']:,} jobs):")
    print(common.table(headers, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=("single", "cluster"), default="cluster")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--drain", type=float, default=30.0, help="wait at most this long after the last minute"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dirs")
    parser.add_argument("--name", default=None, help="result name (seed_scenario_<mode>)")
    args = parser.parse_args(argv)
    if args.minutes < 1 or args.jobs < 1 or args.batch < 1:
        parser.error("--minutes, --jobs and --batch must be >= 1")

    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} ({args.mode}) ...", flush=True)
        r = one_run(i + 1, args)
        runs.append(r)
        print_run(r)

    rows = [
        [
            r["run"],
            r["jobs"],
            r["create_seconds"],
            r["jobs_per_second"],
            r["fired_total"],
            r["missing_total"],
            r["missed_state_total"],
            r["duplicated_total"],
            r["lateness_p99_s"],
            " / ".join(f"{v / MB:.0f}" for v in r["vmhwm"].values()),
        ]
        for r in runs
    ]
    keys = [
        "create_seconds",
        "jobs_per_second",
        "lateness_p50_s",
        "lateness_p99_s",
        "lateness_max_s",
    ]
    med: dict[str, Any] = {k: common.median([r[k] for r in runs]) for k in keys}
    med["vmhwm_max_node_mib"] = common.median([max(r["vmhwm"].values()) / MB for r in runs])
    if len(runs) > 1:
        rows.append(
            [
                "median",
                "",
                med["create_seconds"],
                med["jobs_per_second"],
                "",
                "",
                "",
                "",
                med["lateness_p99_s"],
                f"max {med['vmhwm_max_node_mib']:.0f}",
            ]
        )
    headers = [
        "run",
        "jobs",
        "create s",
        "jobs/s",
        "fired",
        "missing",
        "missed(state)",
        "duplicated",
        "late p99 s",
        "VmHWM MiB per node",
    ]
    print()
    print(common.table(headers, rows))
    size = 3 if args.mode == "cluster" else 1
    note = (
        f"{common.machine_info()['cpus']} cores shared by {size} node(s), the lean receiver"
        " and the bench process"
    )
    print(note)
    path = common.write_result(
        args.name or f"seed_scenario_{args.mode}",
        {
            "bench": "seed_scenario",
            "command": "python bench/seed_scenario.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "cores_note": note,
            "median": med,
            "runs": runs,
        },
    )
    print(f"wrote {path}")
    return 0 if all(r["create_failures"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
