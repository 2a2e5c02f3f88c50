"""Bench: how every cost grows with the job count J, on one node and on three.

For each J of ``--jobs`` and each size of ``--nodes`` (a fresh temp dir, the
lean receiver ``bench/lean_receiver.py`` as every job's callback), it creates
J jobs of a mix that fires about J/600 times a second, then measures, in this
order, and writes ``bench/results/scale_<nodes>n_<J><--tag>.json``:

**The mix** (job i takes row ``i % 40`` of ``MIX``): 20 rows ``@every P`` with
P from 1 to 60 minutes, 20 rows of 6-field cron (seconds first):
``S M/step * * * *`` (step 5-30 min) or ``S M * * * *`` (hourly), in one of
``TIMEZONES`` (Kathmandu is +5:45, Kolkata +5:30, Adelaide +10:30: their
minute grids differ from UTC's). The mean rate is 0.1006 fires per job per
minute, J/597 fires/s. The cron second S and minute M come from i, so cron
fires spread over the minute as ``@every`` fires spread over their creation:
a 5-field cron fires at second 0, and at J = 1,000,000 half the jobs in one
second per minute is a burst test (``fire_rate.py``, ``seed_scenario.py``),
not this one. They do not spread evenly: rows whose S and M coincide put
J/120 cron slots (8,334 at J = 1,000,000) on one second of every five
minutes, against a mean of J/2,215 a second, so a 120 s window holds such a
second or two, and the window's p99 lateness is how late that bunch goes out.
``distinct_schedules`` in the JSON counts the (spec, timezone) pairs.

* **create**: J jobs in sequential POSTs of ``--batch`` (1,000) to the leader;
  ``create_seconds`` is the sum of the POSTs' round trips (the bodies are built
  before each POST's clock starts), jobs/s, p50/max per POST, the nodes'
  CPU-seconds; then ``owned_s``, until the nodes' ``/status`` ``jobs_owned``
  sum to J.
* **memory**: per node VmHWM and VmRSS (``/proc/<pid>/status``) once the
  schedulers own every job; ``peak_vmrss`` per node sampled every 0.5 s over
  the whole case. A node above ``--rss-limit-mb`` (4,000) aborts the case: all
  its processes are killed, and the JSON says ``aborted``.
* **steady window** of ``--window-seconds`` (120) starting ``--warmup`` (60)
  s after the last POST (at least 2 s after ``owned_s``). An ``@every P`` job
  first fires P after its creation, so the window sees the cron jobs, the
  ``@every`` jobs of short periods and none of an hour: ``due_per_s`` is the
  rate it saw (about J/770 at 10k and 100k, more when the creation itself
  took minutes), ``mix_rate_fires_per_s`` the
  steady rate an hour on (J/597). the expected slots are every (job, slot) of the jobs' grids in
  ``[w0, w1)`` (``@every``: anchor + k*P, the anchor being ``next_run_at`` - P
  from the create answer; cron: the slots computed here with ``zoneinfo``, not
  with the node's code). Waits until each is delivered or ``--drain`` s after
  w1. ``lateness`` = first receipt - slot over the delivered expected slots
  (p50/p99/max); ``missed`` = expected slots never delivered; ``duplicated``
  = expected slots delivered more than once; ``off_grid`` = deliveries of a
  slot in the window that is on no job's grid. ``cpu_us_per_fire`` = the
  nodes' summed CPU-seconds during ``[w0, w1)`` / the deliveries received in
  it.
* **snapshots and writes during the window**: a thread POSTs a project to the
  leader every 0.2 s and records each answer's latency; another polls every
  node's ``/healthcheck`` role every 0.5 s (a leader change is an election);
  ``/status`` ``term`` before and after. Each node's log line ``snapshot
  written: X MB in Y s`` (the raft thread's snapshot, taken every
  ``RaftSnapshotInterval`` (60 s; 15 s before) or ``RaftSnapshotThreshold`` entries)
  gives the snapshot's size, duration and end instant; per snapshot: the
  writes whose request overlapped ``[end - Y, end]``, their max latency, and
  whether a role change (or a health check unanswered in 0.5 s, role null)
  was seen between its start and 2 s after its end.
* **sizes** (after the window) per node: ``state.db`` (+ its ``-wal``),
  ``raft.journal`` and ``raft.snapshot`` (bytes on disk).
* **reads**: ``GET /jobs?project_id=&limit=1000&offset=J-1000`` (the last
  page) and ``GET /executions?job_id=...&limit=100`` (jobs that fired), each
  ``--read-repeats`` (7) times on the node POSTed to; median and max latency.
* **leader kill** (3 nodes): kill -9 the leader; ``write_s`` until a survivor
  answers 201 to a POST (``failover.KillProbe``); ``first_fire_s`` until the
  first delivery of a slot after the kill (``first_due_s``: when the first
  such slot fell due; at a few fires/s the gap matters); ``resumed_s`` until
  every expected slot in ``(kill, kill + span]`` was delivered (span: 10 s,
  or the first multiple of 10 s up to 60 that holds a due slot; bounded:
  span + 60 s), with the worst lateness among them.
* **cold restart**: kill -9 all nodes (the leader-kill victim is still down),
  start them all; from the restart instant: ``ready_s`` per node,
  ``first_fire_s`` (any delivery), ``first_on_grid_fire_s`` (a slot at or
  after the restart), and ``on_grid_s`` = "every job back on its grid": the
  earliest expected slot s (from the restart) such that every expected slot in
  ``[s, restart + --restart-window)`` was delivered within ``--on-time`` (1 s)
  of its slot; only jobs with a slot in that window can show it, which bounds
  the measure for any J. None if no such s falls before the last 10 s of the
  window. Also lateness after ``on_grid_s``, and the slots that fell due
  while the nodes were down (delivered late / not).

Every wait is bounded; everything started is killed in ``finally`` (also on
Ctrl-C). The machine's 2 cores are shared by the nodes, the receiver, this
script and other people's work: ``loadavg`` is recorded at each phase.

    python bench/scale.py [--jobs 10000 100000] [--nodes 1 3] [--window-seconds 120]
        [--restart-window 120] [--rss-limit-mb 4000] [--keep]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import _common as common
import httpx
import orjson
from failover import KillProbe, Tail, split_id
from seed_scenario import iso_to_unix

from tests.support.nodes import Cluster, NodeProcess, create_credential, wait_until

MB = 2**20
TIMEZONES = [
    "UTC",
    "America/New_York",
    "Europe/Paris",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "America/Sao_Paulo",
    "Asia/Tokyo",
]
EVERY_MINUTES = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 45, 60, 60, 60, 60, 60, 60, 60, 60]
CRON_STEPS = [5, 10, 15, 20, 30, 60, 60, 60, 15, 15, 15, 15, 10, 15, 20, 30, 60, 60, 60, 60]
MIX = [("every", p) for p in EVERY_MINUTES] + [("cron", s) for s in CRON_STEPS]
RATE_PER_JOB_MINUTE = sum(1 / p for _, p in MIX) / len(MIX)


class Aborted(RuntimeError):
    pass


# -- the mix and its grids -------------------------------------------------------------------


def mix_item(i: int) -> tuple[str, str, dict[str, Any]]:
    """Job i's (spec, timezone, grid): grid is {"every": seconds} or
    {"sec": S, "minutes": [...], "tz": name} (the local minutes it fires in)."""
    kind, value = MIX[i % len(MIX)]
    tz = TIMEZONES[(i // len(MIX)) % len(TIMEZONES)]
    if kind == "every":
        return f"@every {value}m", tz, {"every": value * 60}
    sec = (i * 7) % 60
    if value == 60:
        minute = (i // 3) % 60
        return f"{sec} {minute} * * * *", tz, {"sec": sec, "minutes": [minute], "tz": tz}
    first = (i // 3) % value
    minutes = list(range(first, 60, value))
    return f"{sec} {first}/{value} * * * *", tz, {"sec": sec, "minutes": minutes, "tz": tz}


def batch_body(project_id: int, first: int, n: int, callback: str) -> bytes:
    items = []
    for i in range(first, first + n):
        spec, tz, _ = mix_item(i)
        items.append(
            {
                "spec": spec,
                "timezone": tz,
                "project_id": project_id,
                "execution_type": "http",
                "data": orjson.dumps({"n": i}).decode(),
                "callback_url": callback,
            }
        )
    return orjson.dumps(items)


class Grids:
    """Every created job's grid, to list the (job, slot) pairs due in a span."""

    def __init__(self) -> None:
        self.every: list[tuple[int, int, int]] = []  # (job, anchor, period)
        self.cron: dict[tuple[int, tuple[int, ...], str], list[int]] = defaultdict(list)
        self.specs: set[tuple[str, str]] = set()

    def add(self, job: dict[str, Any], index: int) -> None:
        spec, tz, grid = mix_item(index)
        self.specs.add((spec, tz))
        if "every" in grid:
            period = grid["every"]
            self.every.append((job["id"], iso_to_unix(job["next_run_at"]) - period, period))
        else:
            key = (grid["sec"], tuple(grid["minutes"]), grid["tz"])
            self.cron[key].append(job["id"])

    def due(self, start: float, end: float) -> dict[tuple[int, int], None]:
        """(job, slot) with start <= slot < end (an ordered set)."""
        out: dict[tuple[int, int], None] = {}
        lo, hi = math.ceil(start), math.ceil(end)
        for job, anchor, period in self.every:
            k = max(1, -(-(lo - anchor) // period))
            slot = anchor + k * period
            while slot < hi:
                out[(job, slot)] = None
                slot += period
        zones: dict[str, ZoneInfo] = {}
        for (sec, minutes, tz), jobs in self.cron.items():
            zone = zones.setdefault(tz, ZoneInfo(tz))
            t = lo + (sec - lo) % 60
            while t < hi:
                local = datetime.fromtimestamp(t, zone)
                assert local.second == sec, (tz, t)
                if local.minute in minutes:
                    for job in jobs:
                        out[(job, t)] = None
                t += 60
        return out


# -- watching the nodes ----------------------------------------------------------------------


class Watch:
    """Background sampling: VmRSS of every live node (and the abort above the
    limit), role per node, and a write every 0.2 s while ``writing`` is set."""

    def __init__(self, nodes: list[NodeProcess], limit_bytes: int) -> None:
        self.nodes = nodes
        self.limit = limit_bytes
        self.peak_rss: dict[int, int] = defaultdict(int)
        self.tripped: str | None = None
        self.roles: list[tuple[float, int, str | None]] = []  # changes only
        self._last_role: dict[int, str | None] = {}
        self.writes: list[tuple[float, float, int]] = []  # (start, latency, status)
        self.write_target: NodeProcess | None = None
        self.credential: dict[str, str] = {}
        self.writing = threading.Event()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._memory, daemon=True),
            threading.Thread(target=self._role, daemon=True),
            threading.Thread(target=self._write, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def check(self) -> None:
        if self.tripped is not None:
            raise Aborted(self.tripped)

    def _memory(self) -> None:
        while not self.stop.wait(0.5):
            for node in self.nodes:
                if node.proc is None or node.proc.poll() is not None:
                    continue
                rss = common.proc_status(node.proc.pid).get("VmRSS", 0)
                self.peak_rss[node.node_id] = max(self.peak_rss[node.node_id], rss)
                if rss > self.limit and self.tripped is None:
                    self.tripped = (
                        f"node {node.node_id} RSS {rss / MB:.0f} MiB > {self.limit / MB:.0f} MiB"
                    )
                    print(f"  ABORT: {self.tripped}; killing the nodes", flush=True)
                    for n in self.nodes:
                        n.kill()

    def _role(self) -> None:
        with httpx.Client(timeout=0.5) as http:
            while not self.stop.wait(0.5):
                for node in self.nodes:
                    try:
                        role = http.get(f"{node.api}/healthcheck").json()["data"].get("role")
                    except Exception:
                        role = None
                    if self._last_role.get(node.node_id, "?") != role:
                        self._last_role[node.node_id] = role
                        self.roles.append((time.time(), node.node_id, role))

    def _write(self) -> None:
        n = 0
        while not self.stop.is_set():
            if not self.writing.wait(0.2) or self.write_target is None:
                continue
            n += 1
            t0 = time.time()
            try:
                r = httpx.post(
                    f"{self.write_target.api}/projects",
                    headers=self.credential,
                    json={"name": f"probe-{int(t0)}-{n}", "description": "w"},
                    timeout=15.0,
                )
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            latency = time.time() - t0
            self.writes.append((t0, latency, status))
            self.stop.wait(max(0.0, 0.2 - latency))

    def close(self) -> None:
        self.stop.set()
        self.writing.set()
        for t in self.threads:
            t.join(timeout=5)


def snapshot_lines(node: NodeProcess, since: float, until: float) -> list[dict[str, Any]]:
    """The node log's ``snapshot written`` lines whose instant is in [since, until]."""
    path = node.workdir / "node.log"
    out = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        if "snapshot written:" not in line:
            continue
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            words = line.split("snapshot written:")[1].split()
            size_mb, seconds = float(words[0]), float(words[3])
            # "(index N; apply held Z ms to pin it)": the raft thread's part
            held = line.split("apply held")[1].split()[0] if "apply held" in line else None
            pin_ms = float(held) if held is not None else None
        except (ValueError, IndexError):
            continue
        if since <= stamp <= until:
            out.append(
                {
                    "node": node.node_id,
                    "end": stamp,
                    "mb": size_mb,
                    "seconds": seconds,
                    "pin_ms": pin_ms,
                }
            )
    return out


def file_sizes(node: NodeProcess) -> dict[str, int]:
    data = node.workdir / "data"

    def size(name: str) -> int:
        p = data / name
        return p.stat().st_size if p.exists() else 0

    return {
        "db_bytes": size("state.db") + size("state.db-wal"),
        "journal_bytes": size("raft.journal"),
        "snapshot_bytes": size("raft.snapshot"),
    }


def status_of(node: NodeProcess, headers: dict[str, str]) -> dict[str, Any]:
    r = httpx.get(f"{node.api}/status", headers=headers, timeout=30.0)
    r.raise_for_status()
    data: dict[str, Any] = r.json()["data"]
    return data


def term_of(node: NodeProcess, headers: dict[str, str]) -> int | None:
    """The node's raft term; None when its ``/status`` does not answer in 30 s
    (a node busy with a snapshot or an election must not end the case)."""
    try:
        return int(status_of(node, headers)["term"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


def pids(nodes: list[NodeProcess]) -> list[int]:
    return [n.proc.pid for n in nodes if n.proc is not None and n.proc.poll() is None]


def cpu_of(nodes: list[NodeProcess]) -> float:
    return sum(common.cpu_seconds(pid) for pid in pids(nodes))


def timed_get(url: str, headers: dict[str, str], params: dict[str, Any], repeats: int) -> Any:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = httpx.get(url, headers=headers, params=params, timeout=120.0)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    return {
        "median_ms": common.median(times) * 1000,
        "max_ms": max(times) * 1000,
        "runs_ms": [round(t * 1000, 2) for t in times],
        "items": len(next(iter(v for v in r.json()["data"].values() if isinstance(v, list)))),
    }


# -- analysis helpers ------------------------------------------------------------------------


def receipts(tail: Tail) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for t, eid in tail.deliveries:
        out[eid].append(t)
    return out


def grade(
    expected: dict[tuple[int, int], None], got: dict[str, list[float]], start: float, end: float
) -> dict[str, Any]:
    """Lateness, missed, duplicated and off-grid over the slots in [start, end)."""
    late: list[float] = []
    missed = duplicated = 0
    for job, slot in expected:
        times = got.get(f"{job}-{slot}")
        if not times:
            missed += 1
            continue
        late.append(min(times) - slot)
        duplicated += len(times) > 1
    off_grid = 0
    for eid in got:
        job, slot = split_id(eid)
        if start <= slot < end and (job, slot) not in expected:
            off_grid += 1
    return {
        "expected": len(expected),
        "delivered": len(late),
        "missed": missed,
        "duplicated": duplicated,
        "off_grid": off_grid,
        "lateness_p50_s": common.percentile(late, 50),
        "lateness_p99_s": common.percentile(late, 99),
        "lateness_max_s": max(late, default=0.0),
    }


def on_grid_from(
    expected: dict[tuple[int, int], None],
    got: dict[str, list[float]],
    t0: float,
    end: float,
    on_time: float,
) -> float | None:
    """The smallest slot second s (seconds from t0) such that every expected slot
    in [s, end) was delivered within ``on_time`` of its slot."""
    bad_seconds = [
        slot
        for job, slot in expected
        if not got.get(f"{job}-{slot}") or min(got[f"{job}-{slot}"]) - slot > on_time
    ]
    last_bad = max(bad_seconds, default=None)
    s = min((slot for _, slot in expected if last_bad is None or slot > last_bad), default=None)
    return None if s is None or s > end - 10 else s - t0


def wait_delivered(
    tail: Tail, expected: dict[tuple[int, int], None], deadline: float, watch: Watch
) -> None:
    ids = {f"{j}-{s}" for j, s in expected}
    while time.time() < deadline:
        watch.check()
        tail.poll()
        if ids <= tail.seen:
            return
        time.sleep(0.25)


# -- one case --------------------------------------------------------------------------------


def one_case(size: int, jobs: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"s0-scale-{size}n-{jobs}-"))
    env = common.fire_ahead_env(args.fire_ahead)
    cluster = Cluster(workdir, size, extra_env=env) if size > 1 else None
    nodes = (
        cluster.nodes if cluster is not None else [NodeProcess(workdir / "node1", extra_env=env)]
    )
    receiver = None
    watch = Watch(nodes, args.rss_limit_mb * 10**6)
    result: dict[str, Any] = {
        "nodes": size,
        "jobs": jobs,
        "mix_rate_fires_per_s": jobs * RATE_PER_JOB_MINUTE / 60,
        "loadavg": {"start": os.getloadavg()},
        "aborted": None,
    }
    try:
        receiver, receiver_url, out = common.start_receiver(workdir)
        tail = Tail(out)
        if cluster is not None:
            cluster.start(timeout=120)
            target = cluster.wait_leader()
        else:
            target = nodes[0].start()
        credential = create_credential(target)
        headers = {**credential, "content-type": "application/json"}
        watch.credential = credential
        watch.write_target = target
        create(target, headers, jobs, args, nodes, watch, result, receiver_url)
        measure_window(target, credential, nodes, tail, watch, args, result)
        reads(target, credential, result, args)
        if cluster is not None:
            leader_kill(cluster, credential, tail, watch, result)
        cold_restart(cluster, nodes, credential, tail, watch, args, result)
        got = receipts(tail)
        result["duplicate_deliveries_whole_run"] = sum(len(v) - 1 for v in got.values())
    except Aborted as exc:
        result["aborted"] = str(exc)
    except KeyboardInterrupt:
        result["aborted"] = "interrupted (Ctrl-C or the run's time limit)"
    except Exception as exc:
        if watch.tripped is not None:
            result["aborted"] = f"{watch.tripped} ({exc!r})"
        else:  # report it and go on with the next case
            result["error"] = traceback.format_exc()
            print(f"  ERROR: {exc!r}", flush=True)
    finally:
        watch.close()
        for node in nodes:
            node.kill()
        common.stop(receiver)
        result["peak_vmrss"] = dict(watch.peak_rss)
        result["loadavg"]["end"] = os.getloadavg()
        result.update(common.node_log_problems(nodes))
        if args.keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def create(
    target: NodeProcess,
    headers: dict[str, str],
    jobs: int,
    args: argparse.Namespace,
    nodes: list[NodeProcess],
    watch: Watch,
    result: dict[str, Any],
    receiver_url: str,
) -> None:
    grids = Grids()
    result["_grids"] = grids
    latencies: list[float] = []
    failures = 0
    with httpx.Client(base_url=target.api, headers=headers, timeout=600.0) as http:
        r = http.post("/projects", json={"name": "scale", "description": "scale"})
        r.raise_for_status()
        project_id = r.json()["data"]["id"]
        result["project_id"] = project_id
        callback = f"{receiver_url}/cb"
        cpu0 = cpu_of(nodes)
        wall0 = time.time()
        for first in range(0, jobs, args.batch):
            watch.check()
            n = min(args.batch, jobs - first)
            body = batch_body(project_id, first, n, callback)
            t0 = time.perf_counter()
            r = http.post("/jobs", content=body)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 201:
                failures += 1
                print(f"    POST failed {r.status_code}: {r.text[:200]}", flush=True)
                continue
            for k, job in enumerate(r.json()["data"]):
                grids.add(job, first + k)
            if (first // args.batch) % 100 == 99:
                print(f"    {first + n:,} jobs, {sum(latencies):.1f} s", flush=True)
        wall = time.time() - wall0
        result["created_at"] = time.time()
        cpu = cpu_of(nodes) - cpu0
    created = sum(latencies)
    result["create"] = {
        "create_seconds": created,
        "wall_seconds_with_body_building": wall,
        "jobs_per_second": jobs / created,
        "posts": len(latencies),
        "failures": failures,
        "post_p50_s": common.percentile(latencies, 50),
        "post_p99_s": common.percentile(latencies, 99),
        "post_max_s": max(latencies),
        "first_10_posts_s": common.median(latencies[:10]),
        "last_10_posts_s": common.median(latencies[-10:]),
        "node_cpu_seconds": cpu,
    }
    result["distinct_schedules"] = len(grids.specs)
    print(f"  created {jobs:,} in {created:.1f} s ({jobs / created:,.0f} jobs/s)", flush=True)

    t_owned = time.time()

    def owned() -> bool:
        watch.check()
        return sum(status_of(n, headers)["node"]["jobs_owned"] for n in nodes) >= jobs

    try:
        wait_until(owned, 120 + jobs / 2000, interval=0.5, what="schedulers own every job")
        result["owned_s"] = time.time() - t_owned
    except TimeoutError:
        result["owned_s"] = None
    mem = {n.node_id: common.proc_status(n.proc.pid) for n in nodes if n.proc is not None}
    result["vmhwm_after_create"] = {k: v.get("VmHWM", 0) for k, v in mem.items()}
    result["vmrss_after_create"] = {k: v.get("VmRSS", 0) for k, v in mem.items()}
    result["loadavg"]["after_create"] = os.getloadavg()


def measure_window(
    target: NodeProcess,
    credential: dict[str, str],
    nodes: list[NodeProcess],
    tail: Tail,
    watch: Watch,
    args: argparse.Namespace,
    result: dict[str, Any],
) -> None:
    grids: Grids = result["_grids"]
    terms0 = {n.node_id: term_of(n, credential) for n in nodes}
    w0 = math.ceil(max(time.time() + 2, result["created_at"] + args.warmup))
    w1 = w0 + args.window_seconds
    expected = grids.due(w0, w1)
    print(
        f"  window {args.window_seconds:.0f} s: {len(expected):,} slots due"
        f" ({len(expected) / args.window_seconds:,.0f}/s)",
        flush=True,
    )
    time.sleep(max(0.0, w0 - time.time()))
    cpu0 = cpu_of(nodes)
    roles_from = len(watch.roles)
    watch.writing.set()
    writes_from = len(watch.writes)
    while time.time() < w1:
        watch.check()
        tail.poll()
        time.sleep(0.5)
    cpu = cpu_of(nodes) - cpu0
    result["loadavg"]["window_end"] = os.getloadavg()
    wait_delivered(tail, expected, w1 + args.drain, watch)
    watch.writing.clear()
    tail.poll()
    got = receipts(tail)
    window = grade(expected, got, w0, w1)
    window["start_after_create_s"] = w0 - result["created_at"]
    window["due_per_s"] = len(expected) / args.window_seconds
    received = sum(1 for t, _ in tail.deliveries if w0 <= t < w1)
    window["received_in_window"] = received
    window["received_per_s"] = received / args.window_seconds
    window["node_cpu_seconds"] = cpu
    window["node_cpu_share"] = cpu / args.window_seconds
    window["cpu_us_per_fire"] = cpu / received * 1e6 if received else None
    terms1 = {n.node_id: term_of(n, credential) for n in nodes}
    window["term_before"] = terms0
    window["term_after"] = terms1
    roles = watch.roles[roles_from:]
    window["role_changes"] = [(round(t - w0, 2), n, r) for t, n, r in roles]
    writes = [w for w in watch.writes[writes_from:] if w[0] < w1 + args.drain]
    window["writes"] = len(writes)
    window["writes_failed"] = sum(1 for w in writes if w[2] != 201)
    window["write_latency_p50_s"] = common.percentile([w[1] for w in writes], 50)
    window["write_latency_max_s"] = max((w[1] for w in writes), default=None)
    snaps = []
    for node in nodes:
        for s in snapshot_lines(node, w0, w1 + args.drain):
            start = s["end"] - s["seconds"]
            during = [w for w in writes if w[0] < s["end"] and w[0] + w[1] > start]
            s["at_s"] = round(start - w0, 2)
            s["writes_during"] = len(during)
            s["max_write_latency_s"] = max((w[1] for w in during), default=None)
            s["role_change_near"] = any(start <= t <= s["end"] + 2 for t, _, _ in roles)
            snaps.append(s)
    window["snapshots"] = snaps
    secs = [s["seconds"] for s in snaps]
    window["snapshot_seconds_median"] = common.median(secs) if secs else None
    window["snapshot_seconds_max"] = max(secs, default=None)
    window["snapshot_mb_max"] = max((s["mb"] for s in snaps), default=None)
    window["snapshot_pin_ms_max"] = max(
        (s["pin_ms"] for s in snaps if s["pin_ms"] is not None), default=None
    )
    window["max_write_latency_during_snapshot_s"] = max(
        (s["max_write_latency_s"] for s in snaps if s["max_write_latency_s"] is not None),
        default=None,
    )
    window["elections"] = any(
        (terms0[k] or 0) < (terms1.get(k) or 0) for k in terms0 if terms0[k] is not None
    ) or any(r == "candidate" for _, _, r in roles)
    result["window"] = window
    result["sizes"] = {n.node_id: file_sizes(n) for n in nodes}
    print(
        f"  window: delivered {window['delivered']:,}/{window['expected']:,} missed"
        f" {window['missed']} dup {window['duplicated']} p99 {window['lateness_p99_s']:.3f} s,"
        f" {window['cpu_us_per_fire'] or 0:.0f} us/fire, snapshots {len(snaps)}"
        f" (max {window['snapshot_seconds_max']} s, apply held max"
        f" {window['snapshot_pin_ms_max']} ms)",
        flush=True,
    )


def reads(
    target: NodeProcess,
    credential: dict[str, str],
    result: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    jobs = result["jobs"]
    page = timed_get(
        f"{target.api}/jobs",
        credential,
        {"project_id": result["project_id"], "limit": 1000, "offset": max(0, jobs - 1000)},
        args.read_repeats,
    )
    grids: Grids = result["_grids"]
    fired = [job for job, _, period in grids.every if period == 60]
    runs = []
    for job in fired[: args.read_repeats]:
        runs.append(
            timed_get(f"{target.api}/executions", credential, {"job_id": job, "limit": 100}, 1)
        )
    times = [r["runs_ms"][0] for r in runs]
    result["reads"] = {
        "deep_job_page": page,
        "executions_by_job": {
            "median_ms": common.median(times),
            "max_ms": max(times, default=None),
            "runs_ms": times,
            "items": [r["items"] for r in runs],
        },
    }
    print(
        f"  reads: last job page {page['median_ms']:.1f} ms,"
        f" executions by job {common.median(times):.1f} ms",
        flush=True,
    )


def leader_kill(
    cluster: Cluster, credential: dict[str, str], tail: Tail, watch: Watch, result: dict[str, Any]
) -> None:
    grids: Grids = result["_grids"]
    leader = cluster.wait_leader()
    survivors = [n for n in cluster.nodes if n is not leader]
    t_kill = time.time()
    leader.kill()
    watch.write_target = survivors[0]
    probe = KillProbe(survivors, credential, f"scale-kill-{int(t_kill)}", t_kill)
    span = 10
    expected = grids.due(t_kill, t_kill + span)
    while not expected and span < 60:  # the mix's cron seconds bunch: find due slots
        span += 10
        expected = grids.due(t_kill, t_kill + span)
    ids = {f"{j}-{s}" for j, s in expected}
    try:
        while time.time() < t_kill + span + 60:
            watch.check()
            tail.poll()
            if probe.done() and ids <= tail.seen:
                break
            time.sleep(0.25)
    finally:
        probe.close()
    tail.poll()
    got = receipts(tail)
    firsts = sorted(
        t for eid, ts in got.items() for t in ts if split_id(eid)[1] > t_kill and t > t_kill
    )
    done = [min(got[f"{j}-{s}"]) for j, s in expected if got.get(f"{j}-{s}")]
    late = [min(got[f"{j}-{s}"]) - s for j, s in expected if got.get(f"{j}-{s}")]
    result["leader_kill"] = {
        "victim": leader.node_id,
        "new_leader": probe.leader_id,
        "leader_s": None if probe.leader_at is None else probe.leader_at - t_kill,
        "write_s": None if probe.write_at is None else probe.write_at - t_kill,
        "first_fire_s": firsts[0] - t_kill if firsts else None,
        "resumed_s": max(done) - t_kill if len(done) == len(expected) and done else None,
        "span_s": span,
        "slots_due_in_span": len(expected),
        "first_due_s": min((s for _, s in expected), default=t_kill) - t_kill,
        "lateness_max_of_those_s": max(late, default=None),
        "delivered_of_those": len(done),
    }
    lk = result["leader_kill"]
    print(
        f"  leader kill: write {lk['write_s']} s, first fire {lk['first_fire_s']} s,"
        f" resumed {lk['resumed_s']} s",
        flush=True,
    )


def cold_restart(
    cluster: Cluster | None,
    nodes: list[NodeProcess],
    credential: dict[str, str],
    tail: Tail,
    watch: Watch,
    args: argparse.Namespace,
    result: dict[str, Any],
) -> None:
    grids: Grids = result["_grids"]
    before = {n.node_id: common.proc_status(n.proc.pid) for n in nodes if n.proc is not None}
    t_kill = time.time()
    for node in nodes:
        node.kill()
    tail.poll()
    seen_before = len(tail.deliveries)
    t_restart = time.time()
    for node in nodes:
        node.start(wait=False)
    end = t_restart + args.restart_window
    expected = grids.due(t_restart, end)
    down = grids.due(t_kill - 1, t_restart)
    ready: dict[int, float] = {}
    watch.write_target = None
    with httpx.Client(timeout=0.5) as http:
        while time.time() < end + args.drain:
            watch.check()
            for node in nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"node {node.node_id} exited: {node.log_tail(15)}")
                if node.node_id in ready:
                    continue
                try:
                    if http.get(f"{node.api}/healthcheck").json()["data"].get("ready"):
                        ready[node.node_id] = time.time() - t_restart
                except Exception:
                    pass
            tail.poll()
            if time.time() > end and {f"{j}-{s}" for j, s in expected} <= tail.seen:
                break
            time.sleep(0.25)
    tail.poll()
    after = tail.deliveries[seen_before:]
    got = receipts(tail)
    first_any = min((t for t, _ in after), default=None)
    first_grid = min((t for t, eid in after if split_id(eid)[1] >= t_restart), default=None)
    on_grid = on_grid_from(expected, got, t_restart, end, args.on_time)
    steady: dict[tuple[int, int], None] = {}
    if on_grid is not None:
        steady = {k: None for k in expected if k[1] >= t_restart + on_grid}
    down_got = sum(1 for j, s in down if got.get(f"{j}-{s}"))
    mem = {n.node_id: common.proc_status(n.proc.pid) for n in nodes if n.proc is not None}
    result["cold_restart"] = {
        "down_s": t_restart - t_kill,
        "ready_s": ready,
        "all_ready_s": max(ready.values()) if len(ready) == len(nodes) else None,
        "first_fire_s": None if first_any is None else first_any - t_restart,
        "first_on_grid_fire_s": None if first_grid is None else first_grid - t_restart,
        "on_grid_s": on_grid,
        "window_s": args.restart_window,
        "window": grade(expected, got, t_restart, end),
        "after_on_grid": grade(steady, got, t_restart + (on_grid or 0), end) if steady else None,
        "slots_due_while_down": len(down),
        "of_those_delivered": down_got,
        "vmhwm_before": {k: v.get("VmHWM", 0) for k, v in before.items()},
        "vmhwm_after": {k: v.get("VmHWM", 0) for k, v in mem.items()},
        "vmrss_after": {k: v.get("VmRSS", 0) for k, v in mem.items()},
    }
    cr = result["cold_restart"]
    print(
        f"  cold restart: all ready {cr['all_ready_s']} s, first fire {cr['first_fire_s']} s,"
        f" on grid {cr['on_grid_s']} s",
        flush=True,
    )


# -- report ----------------------------------------------------------------------------------


def row(r: dict[str, Any]) -> list[Any]:
    w = r.get("window", {})
    c = r.get("create", {})
    cr = r.get("cold_restart", {})
    lk = r.get("leader_kill", {})
    rd = r.get("reads", {})
    sizes = r.get("sizes", {})

    def mx(d: dict[Any, int] | None, scale: float = MB) -> Any:
        return max(d.values()) / scale if d else "-"

    return [
        f"{r['nodes']}n",
        r["jobs"],
        c.get("create_seconds", "-"),
        c.get("jobs_per_second", "-"),
        mx(r.get("vmhwm_after_create")),
        mx(r.get("vmrss_after_create")),
        mx({k: v["db_bytes"] for k, v in sizes.items()}),
        mx({k: v["journal_bytes"] for k, v in sizes.items()}),
        mx({k: v["snapshot_bytes"] for k, v in sizes.items()}),
        w.get("snapshot_seconds_max", "-"),
        w.get("max_write_latency_during_snapshot_s", "-"),
        {True: "yes", False: "no"}.get(w.get("elections"), "-"),
        cr.get("first_fire_s", "-"),
        cr.get("on_grid_s", "-"),
        lk.get("write_s", "-"),
        lk.get("resumed_s", "-"),
        rd.get("deep_job_page", {}).get("median_ms", "-"),
        rd.get("executions_by_job", {}).get("median_ms", "-"),
        w.get("lateness_p50_s", "-"),
        w.get("lateness_p99_s", "-"),
        w.get("missed", "-"),
        w.get("duplicated", "-"),
        w.get("cpu_us_per_fire", "-"),
        r.get("aborted") or "",
    ]


HEADERS = [
    "nodes",
    "J",
    "create s",
    "jobs/s",
    "HWM MiB",
    "RSS MiB",
    "db MiB",
    "journal MiB",
    "snap MiB",
    "snap s",
    "write max in snap s",
    "election",
    "restart 1st fire s",
    "on grid s",
    "kill write s",
    "kill resumed s",
    "page ms",
    "exec ms",
    "p50 s",
    "p99 s",
    "missed",
    "dup",
    "us/fire",
    "aborted",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 3], choices=(1, 3))
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window-seconds", type=float, default=120.0)
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="window starts >= this long after creation"
    )
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--restart-window", type=float, default=120.0)
    parser.add_argument("--on-time", type=float, default=1.0)
    parser.add_argument("--read-repeats", type=int, default=7)
    parser.add_argument("--rss-limit-mb", type=int, default=4000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--tag", default="", help="appended to each result's name: scale_<nodes>n_<J><tag>.json"
    )
    common.add_fire_ahead(parser)
    args = parser.parse_args(argv)

    results = []
    for jobs in args.jobs:
        for size in args.nodes:
            print(f"{size} node(s), {jobs:,} jobs ...", flush=True)
            r = one_case(size, jobs, args)
            r.pop("_grids", None)
            results.append(r)
            path = common.write_result(
                f"scale_{size}n_{jobs}{args.tag}",
                {
                    "bench": "scale",
                    "command": "python bench/scale.py " + " ".join(sys.argv[1:]),
                    "params": vars(args),
                    "cores_note": (
                        f"{os.cpu_count()} cores shared by the node(s), the lean receiver, this"
                        " script and other engineers' work (loadavg per phase)"
                    ),
                    **r,
                },
            )
            print(f"  wrote {path}", flush=True)
    print()
    print(common.table(HEADERS, [row(r) for r in results]))
    return 0 if all(r["aborted"] is None and "error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
