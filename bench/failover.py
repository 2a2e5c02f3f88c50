"""Bench: kill -9 the leader, then a worker, of a 3-node cluster under load.

A 3-node cluster (fresh temp dir) fires ``--jobs`` jobs ``@every 1s`` into
``bench/lean_receiver.py``. Once every slot is delivered in full ("steady"),
the bench kills -9 the LEADER ``--kills`` times, then a WORKER (alternating
between the two non-leaders) ``--kills`` times. After each kill it keeps the
victim down until a full slot (every job) has been delivered for a slot after
the kill (at least ``--down-min`` s, at most ``--down-max`` s), restarts it,
waits until it is ready and the cluster is steady again (a leader with quorum,
buckets 512/512 over the two workers, two consecutive slots delivered in
full), then settles ``--settle`` s.

Per kill, from the kill instant:

* ``leader_s``: until a survivor's ``GET /healthcheck`` says ``role == leader``
  and ``has_quorum`` (polled every 20 ms);
* ``write_s``: until a survivor answers 201 to ``POST /projects`` (unique name,
  client credential);
* ``first_fire_s``: until the receiver got the first delivery whose slot
  (``<job>-<slot>``) is after the kill instant;
* ``victim_first_fire_s`` / ``resumed_s``: the same for the jobs the victim
  fired last (worker kills; from the ``node_id`` of the execution rows), and
  until EVERY affected job (the victim's jobs; all jobs for a leader kill) had
  a delivery of a slot after the kill;
* ``missed``: execution rows in state ``missed`` with a slot in the cycle.

Over the whole run: missed slots (``GET /executions?state=missed``, paged,
``consistency=strong``, collected after every cycle since rows are pruned to
100 per job), duplicated slots (two execution rows for one ``(job, slot)``,
from every execution row collected cycle by cycle; must be 0), holes (a slot
between a job's first and last row with no row at all), undelivered slots
(never received) and duplicated deliveries (one ``execution_id`` received
twice), each attributed to the kill it followed.

For ``bench/plot.py``: ``series`` (per slot second of the whole run,
``[s since series_origin, deliveries, p50, p99, max]`` of first deliveries;
``series_origin`` = the first delivered slot) and ``series_kills`` (each
kill's kind, victim and kill/restart/steady instants on the same axis).

    python bench/failover.py [--jobs 1000] [--kills 7] [--keep]

The machine's cores are shared by the 3 nodes, the receiver and this script.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import _common as common
import httpx
import orjson

from tests.support.nodes import Cluster, NodeProcess, create_credential

BENCH_DIR = Path(__file__).resolve().parent
ENV: dict[str, str] = {}


# -- receiver --------------------------------------------------------------------------------


def split_id(execution_id: str) -> tuple[int, int]:
    job, _, slot = execution_id.rpartition("-")
    return int(job), int(slot)


class Tail:
    """Incremental reader of the lean receiver's file (2xx items only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.rest = b""
        self.deliveries: list[tuple[float, str]] = []
        self.per_slot: Counter[int] = Counter()  # unique ids per slot
        self.seen: set[str] = set()

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.pos)
            chunk = f.read()
        self.pos += len(chunk)
        data = self.rest + chunk
        lines = data.split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            if not line:
                continue
            t, status, ids = orjson.loads(line)
            if not 200 <= status < 300:
                continue
            for eid in ids:
                if eid is None:
                    continue
                self.deliveries.append((t, eid))
                if eid not in self.seen:
                    self.seen.add(eid)
                    self.per_slot[split_id(eid)[1]] += 1

    def full_slot_after(self, instant: float, jobs: int) -> int | None:
        """The first slot after ``instant`` delivered for every job."""
        for slot in sorted(s for s in self.per_slot if s > instant):
            if self.per_slot[slot] >= jobs:
                return slot
        return None

    def steady(self, jobs: int, since: float) -> bool:
        """Two consecutive slots after ``since`` delivered in full."""
        full = sorted(s for s, n in self.per_slot.items() if s > since and n >= jobs)
        return any(b == a + 1 for a, b in itertools.pairwise(full))


# -- API helpers -----------------------------------------------------------------------------


READ_ERRORS: list[dict[str, Any]] = []


def get_json(node: NodeProcess, path: str, headers: dict[str, str], **params: Any) -> Any:
    """GET one API page; a 5xx (e.g. a ``consistency=strong`` barrier that timed
    out) is recorded in ``READ_ERRORS`` and retried up to 5 times."""
    for attempt in range(6):
        r = httpx.get(f"{node.api}{path}", headers=headers, params=params, timeout=60)
        if r.status_code < 500 or attempt == 5:
            r.raise_for_status()
            return r.json()["data"]
        READ_ERRORS.append(
            {
                "at": time.time(),
                "node": node.node_id,
                "path": path,
                "params": {k: v for k, v in params.items() if k != "headers"},
                "status": r.status_code,
                "body": r.text[:300],
            }
        )
        time.sleep(1)
    raise AssertionError("unreachable")


def paged_executions(
    node: NodeProcess, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = get_json(
            node,
            "/executions",
            headers,
            limit=1000,
            offset=len(out),
            consistency="strong",
            **params,
        )
        out.extend(page["executions"])
        if not page["executions"] or len(out) >= page["total"]:
            return out


def live_leader(cluster: Cluster) -> NodeProcess:
    return cluster.wait_leader(timeout=60)


def buckets_balanced(cluster: Cluster, headers: dict[str, str]) -> bool:
    leader = cluster.leader()
    if leader is None:
        return False
    status = get_json(leader, "/status", headers)
    workers = {str(n.node_id) for n in cluster.nodes} - {str(leader.node_id)}
    per_node = status["buckets_per_node"]
    return set(per_node) == workers and sorted(per_node.values()) == [512, 512]


class KillProbe:
    """From the kill instant: time to a leader with quorum and to an accepted write,
    polled on the survivors in two threads."""

    def __init__(
        self, survivors: list[NodeProcess], credential: dict[str, str], name: str, t0: float
    ) -> None:
        self.survivors = survivors
        self.credential = credential
        self.name = name
        self.t0 = t0
        self.leader_at: float | None = None
        self.leader_id: int | None = None
        self.write_at: float | None = None
        self.write_attempts = 0
        self.write_errors: Counter[str] = Counter()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._leader, daemon=True),
            threading.Thread(target=self._write, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _leader(self) -> None:
        with httpx.Client(timeout=0.5) as http:
            while not self.stop.is_set():
                for node in self.survivors:
                    try:
                        data = http.get(f"{node.api}/healthcheck").json()["data"]
                    except Exception:
                        continue
                    if data.get("role") == "leader" and data.get("has_quorum"):
                        self.leader_at = time.time()
                        self.leader_id = node.node_id
                        return
                time.sleep(0.02)

    def _write(self) -> None:
        n = 0
        with httpx.Client(timeout=3.0, headers=self.credential) as http:
            while not self.stop.is_set():
                node = self.survivors[n % len(self.survivors)]
                n += 1
                self.write_attempts += 1
                try:
                    r = http.post(
                        f"{node.api}/projects",
                        json={"name": f"{self.name}-{n}", "description": "w"},
                    )
                except httpx.HTTPError as exc:
                    self.write_errors[type(exc).__name__] += 1
                    time.sleep(0.02)
                    continue
                if r.status_code == 201:
                    self.write_at = time.time()
                    return
                self.write_errors[str(r.status_code)] += 1
                time.sleep(0.02)

    def done(self) -> bool:
        return self.leader_at is not None and self.write_at is not None

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


# -- the run ---------------------------------------------------------------------------------


class Collector:
    """Execution rows, collected window by window before retention prunes them."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.rows: dict[int, dict[str, Any]] = {}
        self.missed: dict[int, dict[str, Any]] = {}
        self.since: float | None = None
        self.windows: list[tuple[float, float, int, float]] = []

    def collect(self, cluster: Cluster, until: float) -> None:
        node = live_leader(cluster)
        started = time.time()
        rows = paged_executions(
            node,
            self.headers,
            **({"since": self.since} if self.since is not None else {}),
            until=until,
        )
        for row in rows:
            self.rows[row["id"]] = row
        for row in paged_executions(node, self.headers, state="missed"):
            self.missed[row["id"]] = row
        self.windows.append((self.since or 0.0, until, len(rows), time.time() - started))
        self.since = until - 20  # overlap: rows of late slots written after the last read


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="s0-failover-"))
    receiver: subprocess.Popen[bytes] | None = None
    cluster = Cluster(workdir, 3, extra_env=dict(ENV))
    kills: list[dict[str, Any]] = []
    aborted: str | None = None
    try:
        receiver, receiver_url, out = common.start_receiver(workdir)
        tail = Tail(out)
        cluster.start()
        leader = cluster.wait_leader()
        credential = create_credential(leader)
        headers = dict(credential)
        with httpx.Client(base_url=leader.api, headers=headers, timeout=120.0) as http:
            r = http.post("/projects", json={"name": "bench", "description": "failover"})
            r.raise_for_status()
            project_id = r.json()["data"]["id"]
            body = orjson.dumps(
                [
                    {
                        "spec": "@every 1s",
                        "project_id": project_id,
                        "timezone": "America/New_York",
                        "data": {"n": i},
                        "callback_url": f"{receiver_url}/cb",
                    }
                    for i in range(args.jobs)
                ]
            )
            r = http.post("/jobs", content=body, headers={"content-type": "application/json"})
            if r.status_code != 201:
                raise RuntimeError(f"job creation failed: {r.status_code} {r.text[:300]}")
            job_ids = {j["id"] for j in r.json()["data"]}
        created_at = time.time()
        collector = Collector(headers)
        print(f"{args.jobs} jobs created; waiting for steady firing ...", flush=True)
        wait_steady(cluster, tail, headers, args, created_at)
        time.sleep(args.settle)

        plan = [("leader", i) for i in range(args.kills)] + [
            ("worker", i) for i in range(args.kills)
        ]
        for kind, i in plan:
            try:
                kills.append(one_kill(cluster, tail, collector, credential, kind, i, args))
            except Aborted as exc:
                print(f"ABORTED: {exc}", flush=True)
                aborted = str(exc)
                break
            k = kills[-1]
            print(
                f"  {kind} kill {i + 1}: node {k['victim']} -> leader {fmt(k['leader_s'])}s "
                f"write {fmt(k['write_s'])}s full slot {fmt(k['full_slot_s'])}s "
                f"back up {fmt(k['restart_ready_s'])}s steady {fmt(k['steady_s'])}s",
                flush=True,
            )
        time.sleep(args.drain)
        collector.collect(cluster, until=time.time() - 2)
        end_at = time.time()
        tail.poll()
        statuses = {}
        for node in cluster.nodes:
            try:
                st = get_json(node, "/status", headers)["node"]
                statuses[node.node_id] = {
                    k: st[k]
                    for k in ("fired", "rejected", "redispatched", "queue_depth", "counts")
                    if k in st
                }
                statuses[node.node_id]["vmhwm_bytes"] = common.proc_status(
                    node.proc.pid  # type: ignore[union-attr]
                ).get("VmHWM", 0)
            except Exception as exc:  # report, do not fail the bench
                statuses[node.node_id] = {"error": repr(exc)}
    finally:
        cluster.kill_all()
        common.stop(receiver)

    logs = {}
    for node in cluster.nodes:
        text = (node.workdir / "node.log").read_text(errors="replace")
        problems = [
            line
            for line in text.splitlines()
            if " ERROR " in line or " WARNING " in line or "Traceback" in line
        ]
        logs[node.node_id] = {"problems": len(problems), "excerpt": problems[:15]}
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)

    result = analyse(tail, collector, kills, job_ids, created_at, end_at, statuses, logs, args)
    result["aborted"] = aborted
    return result


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def wait_steady(
    cluster: Cluster, tail: Tail, headers: dict[str, str], args: argparse.Namespace, since: float
) -> float | None:
    """Seconds until a leader with quorum, balanced buckets and two full slots."""
    t0 = time.time()
    deadline = t0 + args.steady_timeout
    balanced = False
    while time.time() < deadline:
        tail.poll()
        if not balanced:
            try:
                balanced = buckets_balanced(cluster, headers)
            except Exception:
                balanced = False
            if balanced:
                since = max(since, time.time())
        if balanced and tail.steady(args.jobs, since):
            return time.time() - t0
        time.sleep(0.1)
    return None


def raft_term(node: NodeProcess, headers: dict[str, str]) -> int | None:
    try:
        return int(get_json(node, "/status", headers)["term"])
    except Exception:
        return None


class Aborted(RuntimeError):
    pass


def restart(node: NodeProcess, attempts: int = 3) -> tuple[float | None, int]:
    """Start ``node`` again; retry if the process exits at start (e.g. another
    engineer's half-saved edit breaking the CLI import). Seconds until ready."""
    t0 = time.time()
    for attempt in range(1, attempts + 1):
        node.start(wait=False)
        try:
            node.wait_ready(timeout=120)
            return time.time() - t0, attempt
        except (TimeoutError, RuntimeError) as exc:
            print(f"    node {node.node_id} start attempt {attempt} failed: {str(exc)[-600:]}")
            node.kill()
            time.sleep(5)
    return None, attempts


def one_kill(
    cluster: Cluster,
    tail: Tail,
    collector: Collector,
    credential: dict[str, str],
    kind: str,
    index: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    leader = live_leader(cluster)
    if kind == "leader":
        victim = leader
    else:
        workers = sorted((n for n in cluster.nodes if n is not leader), key=lambda n: n.node_id)
        victim = workers[index % len(workers)]
    survivors = [n for n in cluster.nodes if n is not victim]
    survivors.sort(key=lambda n: n is not leader)  # the live leader first, if it survives
    term_before = raft_term(leader, credential)
    load_at_kill = os.getloadavg()[0]
    t_kill = time.time()
    victim.kill()
    probe = KillProbe(survivors, credential, f"{kind}-kill-{index}-{int(t_kill)}", t_kill)
    full_slot = None
    full_slot_at: float | None = None
    try:
        deadline = t_kill + args.down_max
        while time.time() < deadline:
            tail.poll()
            if full_slot is None:
                full_slot = tail.full_slot_after(t_kill, args.jobs)
                full_slot_at = time.time()
            if probe.done() and full_slot is not None and time.time() - t_kill >= args.down_min:
                break
            time.sleep(0.05)
    finally:
        probe.close()
    t_restart = time.time()
    ready_s, start_attempts = restart(victim)
    if ready_s is None:
        raise Aborted(f"node {victim.node_id} did not come back after {kind} kill {index + 1}")
    steady_s = wait_steady(cluster, tail, collector.headers, args, t_restart)
    t_steady = time.time()
    term_after = raft_term(live_leader(cluster), credential)
    collector.collect(cluster, until=time.time() - 2)
    time.sleep(args.settle)
    return {
        "kind": kind,
        "index": index,
        "loadavg_1m_at_kill": load_at_kill,
        "term_before": term_before,
        "term_at_steady": term_after,
        "victim": victim.node_id,
        "leader_before": leader.node_id,
        "leader_after": probe.leader_id,
        "t_kill": t_kill,
        "t_restart": t_restart,
        "t_steady": t_steady,
        "leader_s": None if probe.leader_at is None else probe.leader_at - t_kill,
        "write_s": None if probe.write_at is None else probe.write_at - t_kill,
        "write_attempts": probe.write_attempts,
        "write_errors": dict(probe.write_errors),
        "full_slot_after_kill": full_slot,
        "full_slot_s": None if full_slot_at is None else full_slot_at - t_kill,
        "down_s": t_restart - t_kill,
        "restart_ready_s": ready_s,
        "start_attempts": start_attempts,
        "steady_s": None if steady_s is None else t_steady - t_restart,
    }


# -- analysis --------------------------------------------------------------------------------


def analyse(
    tail: Tail,
    collector: Collector,
    kills: list[dict[str, Any]],
    job_ids: set[int],
    created_at: float,
    end_at: float,
    statuses: dict[int, Any],
    logs: dict[int, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    deliveries = sorted(tail.deliveries)
    first_seen: dict[str, float] = {}
    receipts: dict[str, list[float]] = defaultdict(list)
    for t, eid in deliveries:
        receipts[eid].append(t)
        first_seen.setdefault(eid, t)
    by_slot_first: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for eid, t in first_seen.items():
        job, slot = split_id(eid)
        by_slot_first[slot].append((t, job))

    rows = list(collector.rows.values())
    owner: dict[tuple[int, int], int | None] = {
        (r["job_id"], r["slot"]): r["node_id"] for r in rows
    }
    row_count = Counter((r["job_id"], r["slot"]) for r in rows)
    # one fire record per (job, slot): distinct row ids for one key
    duplicated_slots = sum(n - 1 for n in row_count.values() if n > 1)
    states = Counter(r["state"] for r in rows)
    slots_by_job: dict[int, set[int]] = defaultdict(set)
    for job, slot in row_count:
        slots_by_job[job].add(slot)
    holes: list[tuple[int, int]] = []
    for job in job_ids:
        slots = slots_by_job.get(job)
        if not slots:
            continue
        holes.extend((job, s) for s in range(min(slots), max(slots) + 1) if s not in slots)

    # Undelivered slots: per job, between its first and last delivered slot.
    delivered_by_job: dict[int, set[int]] = defaultdict(set)
    for eid in first_seen:
        job, slot = split_id(eid)
        delivered_by_job[job].add(slot)
    undelivered: list[tuple[int, int]] = []
    for job, slots in delivered_by_job.items():
        undelivered.extend((job, s) for s in range(min(slots), max(slots) + 1) if s not in slots)

    missed_rows = list(collector.missed.values())

    def cycle_of(instant: float) -> int | None:
        """Index of the last kill at or before ``instant`` (None: before any kill)."""
        found = None
        for i, k in enumerate(kills):
            if k["t_kill"] <= instant:
                found = i
        return found

    # Duplicated deliveries, attributed to the kill between first and second receipt.
    duplicates: list[dict[str, Any]] = []
    for eid, ts in receipts.items():
        if len(ts) < 2:
            continue
        job, slot = split_id(eid)
        for later in ts[1:]:
            between = [k for k in kills if ts[0] - 1 <= k["t_kill"] <= later]
            duplicates.append(
                {
                    "execution_id": eid,
                    "first": ts[0],
                    "again": later,
                    "fired_by": owner.get((job, slot)),
                    "kill": (
                        f"{between[-1]['kind']} {between[-1]['index'] + 1}" if between else None
                    ),
                    "after_worker_crash": any(k["kind"] == "worker" for k in between),
                }
            )
    dup_per_kill: Counter[str] = Counter(d["kill"] or "none" for d in duplicates)

    for i, k in enumerate(kills):
        t_kill = k["t_kill"]
        last_slot_before = math.floor(t_kill)
        if k["kind"] == "worker":
            # the victim's jobs: those whose last slot before the kill it fired
            affected = set()
            for job in job_ids:
                for s in range(last_slot_before, last_slot_before - 5, -1):
                    if (job, s) in owner:
                        if owner[(job, s)] == k["victim"]:
                            affected.add(job)
                        break
        else:
            affected = set(job_ids)
        firsts = sorted(
            (t, job) for slot, items in by_slot_first.items() if slot > t_kill for t, job in items
        )
        k["first_fire_s"] = firsts[0][0] - t_kill if firsts else None
        full = k["full_slot_after_kill"]
        k["full_slot_s"] = None if full is None else max(t for t, _ in by_slot_first[full]) - t_kill
        victim_first = next((t for t, job in firsts if job in affected), None)
        k["affected_jobs"] = len(affected)
        k["victim_first_fire_s"] = (
            None if victim_first is None or k["kind"] != "worker" else victim_first - t_kill
        )
        resumed: dict[int, float] = {}
        for t, job in firsts:
            if job in affected and job not in resumed:
                resumed[job] = t
        k["resumed_s"] = (
            max(resumed.values()) - t_kill if affected and len(resumed) == len(affected) else None
        )
        k["not_resumed"] = len(affected) - len(resumed)
        window_end = kills[i + 1]["t_kill"] if i + 1 < len(kills) else end_at
        mine = [r for r in missed_rows if t_kill - 1 <= r["slot"] < window_end]
        k["missed"] = len(mine)
        ready_at = (
            k["t_restart"] + k["restart_ready_s"] if k["restart_ready_s"] is not None else end_at
        )
        phases: Counter[str] = Counter()
        detail: Counter[str] = Counter()
        for r in mine:
            if r["slot"] < k["t_restart"]:
                phase = "victim_down"
            elif r["slot"] < ready_at:
                phase = "victim_restarting"
            elif r["slot"] < k["t_steady"]:
                phase = "victim_ready_until_steady"
            else:
                phase = "steady"
            phases[phase] += 1
            detail[f"slot=kill+{r['slot'] - t_kill:.1f}s node={r['node_id']} {phase}"] += 1
        k["missed_by_phase"] = dict(phases)
        k["missed_detail"] = dict(detail)
        k["extra_elections"] = (
            None
            if k["term_before"] is None or k["term_at_steady"] is None
            else k["term_at_steady"] - k["term_before"] - (1 if k["kind"] == "leader" else 0)
        )
        k["undelivered"] = sum(1 for _, s in undelivered if t_kill - 1 <= s < window_end)
        k["holes"] = sum(1 for _, s in holes if t_kill - 1 <= s < window_end)
        k["duplicate_deliveries"] = dup_per_kill.get(f"{k['kind']} {k['index'] + 1}", 0)

    def med(kind: str, key: str) -> float | None:
        vals = [k[key] for k in kills if k["kind"] == kind and k[key] is not None]
        return common.median(vals) if vals else None

    keys = [
        "leader_s",
        "write_s",
        "first_fire_s",
        "victim_first_fire_s",
        "resumed_s",
        "full_slot_s",
        "restart_ready_s",
        "steady_s",
        "missed",
        "undelivered",
        "duplicate_deliveries",
    ]
    medians = {kind: {key: med(kind, key) for key in keys} for kind in ("leader", "worker")}
    maxima = {
        kind: {
            key: max(
                (k[key] for k in kills if k["kind"] == kind and k[key] is not None), default=None
            )
            for key in keys
        }
        for kind in ("leader", "worker")
    }
    unexplained = [d for d in duplicates if not d["after_worker_crash"]]
    missed_pre = sum(1 for r in missed_rows if kills and r["slot"] < kills[0]["t_kill"] - 1)
    # Lateness over the whole run for bench/plot.py: first delivery of every id, per slot
    # second, from the first delivered slot; the kills on the same time axis.
    pairs: list[tuple[int, float]] = []
    for eid, t in first_seen.items():
        slot = split_id(eid)[1]
        pairs.append((slot, t - slot))
    origin = min((slot for slot, _ in pairs), default=math.floor(created_at))
    series_kills = [
        {
            "kind": k["kind"],
            "index": k["index"],
            "victim": k["victim"],
            "t": round(k["t_kill"] - origin, 3),
            "restart_t": round(k["t_restart"] - origin, 3),
            "steady_t": round(k["t_steady"] - origin, 3),
        }
        for k in kills
    ]
    return {
        "bench": "failover",
        "command": "python bench/failover.py " + " ".join(sys.argv[1:]),
        "params": vars(args),
        "cores_note": (
            f"{common.machine_info()['cpus']} cores shared by 3 nodes, the lean receiver"
            " and the bench process"
        ),
        "medians": medians,
        "maxima": maxima,
        "totals": {
            "deliveries": len(deliveries),
            "unique_execution_ids": len(first_seen),
            "execution_rows_collected": len(rows),
            "execution_row_states": dict(states),
            "missed_rows": len(missed_rows),
            "missed_rows_before_first_kill": missed_pre,
            "duplicated_slots": duplicated_slots,
            "holes": len(holes),
            "undelivered_slots": len(undelivered),
            "duplicate_deliveries": len(duplicates),
            "duplicate_deliveries_not_after_worker_crash": len(unexplained),
            "run_seconds": end_at - created_at,
        },
        "duplicate_deliveries_per_kill": dict(dup_per_kill),
        "duplicate_delivery_examples": duplicates[:20],
        "missed_examples": sorted(missed_rows, key=lambda r: r["slot"])[:10],
        "hole_examples": holes[:10],
        "collect_windows": collector.windows,
        "read_errors": READ_ERRORS,
        "kills": kills,
        "series_origin": origin,
        "series": common.lateness_series(pairs, origin=origin),
        "series_kills": series_kills,
        "node_status_at_end": statuses,
        "node_log_problems": logs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=7)
    parser.add_argument("--down-min", type=float, default=3.0)
    parser.add_argument("--down-max", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--steady-timeout", type=float, default=60.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--name", default="failover")
    args = parser.parse_args(argv)

    result = run(args)
    rows = []
    for k in result["kills"]:
        rows.append(
            [
                f"{k['kind']} {k['index'] + 1}",
                k["victim"],
                k["leader_after"] or "-",
                k["leader_s"],
                k["write_s"],
                k["first_fire_s"],
                k["victim_first_fire_s"] if k["kind"] == "worker" else "-",
                k["resumed_s"],
                k["restart_ready_s"],
                k["steady_s"],
                k["missed"],
                k["undelivered"],
                k["duplicate_deliveries"],
                k["extra_elections"],
            ]
        )
    for kind in ("leader", "worker"):
        m = result["medians"][kind]
        rows.append(
            [
                f"median {kind}",
                "",
                "",
                m["leader_s"],
                m["write_s"],
                m["first_fire_s"],
                m["victim_first_fire_s"] if kind == "worker" else "-",
                m["resumed_s"],
                m["restart_ready_s"],
                m["steady_s"],
                m["missed"],
                m["undelivered"],
                m["duplicate_deliveries"],
                "",
            ]
        )
    rows = [["-" if v is None else v for v in row] for row in rows]
    headers = [
        "kill",
        "victim",
        "new ldr",
        "leader s",
        "write s",
        "1st fire s",
        "victim fire s",
        "resumed s",
        "ready s",
        "steady s",
        "missed",
        "undeliv",
        "dup deliv",
        "extra elections",
    ]
    print()
    print(common.table(headers, rows))
    t = result["totals"]
    print(
        f"\nwhole run ({t['run_seconds']:.0f} s, {t['unique_execution_ids']:,} fires): "
        f"missed rows {t['missed_rows']:,} "
        f"(before first kill {t['missed_rows_before_first_kill']}), "
        f"duplicated slots {t['duplicated_slots']}, holes {t['holes']}, "
        f"undelivered {t['undelivered_slots']:,}, duplicated deliveries "
        f"{t['duplicate_deliveries']:,} (not after a worker crash: "
        f"{t['duplicate_deliveries_not_after_worker_crash']})"
    )
    for k in result["kills"]:
        if k["missed"]:
            print(f"missed after {k['kind']} kill {k['index'] + 1}: {k['missed_detail']}")
    print(result["cores_note"])
    if result["read_errors"]:
        print(f"{len(result['read_errors'])} API reads answered 5xx (retried), e.g.:")
        for e in result["read_errors"][:3]:
            print(f"    node {e['node']} {e['path']} {e['status']}: {e['body'][:160]}")
    if result.get("aborted"):
        print(f"ABORTED: {result['aborted']}")
    for node_id, info in result["node_log_problems"].items():
        if info["problems"]:
            print(f"node {node_id}: {info['problems']} log problems, e.g.")
            for line in info["excerpt"][:5]:
                print(f"    {line[:200]}")
    path = common.write_result(args.name, result)
    print(f"wrote {path}")
    return 0 if t["duplicated_slots"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
