"""Bench: kill -9 all three nodes of a cluster holding N jobs, restart them all.

Per run (fresh temp dir): a 3-node cluster, the lean receiver
(``bench/lean_receiver.py``), one credential and project, then ``--posts``
POST /jobs of ``--batch`` seed-shaped jobs ``@every 1m`` (``create_jobs.py``'s
``seed_batch``) to the leader. It waits until every job has been delivered
once, records each node's VmHWM/VmRSS, kills -9 all three, starts all three
again and measures, from the restart instant:

* ``leader_s``: until some node's ``/healthcheck`` says leader with quorum;
* ``write_s``: until a ``POST /projects`` (unique name, client credential) is
  answered 201 by some node;
* ``ready_s``: until every node's ``/healthcheck`` says ready;
* ``first_fire_s``: until the receiver got its first delivery after the restart
  (any slot: slots that fell due while the cluster was down fire late, within
  ``MisfireGraceSeconds``); ``first_on_grid_fire_s``: the first delivery of a
  slot at or after the restart instant;
* ``all_fired_again_s``: until every job had a delivery of a slot after the
  kill (bounded by ``--round-timeout``);
* VmHWM per node before the kill and after (when all fired again), missed
  executions, jobs listed after restart, duplicated deliveries;
* for ``bench/plot.py``: ``series``, per slot second,
  ``[s since the kill, deliveries, p50, p99, max]`` of the first delivery of
  every id before the kill and after the restart (``series_origin`` = the kill
  instant), and ``series_marks`` (kill, restart, all ready; s since the kill).

    python bench/restart.py [--runs 3] [--posts 100] [--batch 1000]

The machine's cores are shared by the 3 nodes, the receiver and this script.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as common
import httpx
from _common import start_receiver, stop
from create_jobs import seed_batch
from failover import KillProbe, Tail, get_json, split_id

from tests.support.nodes import Cluster, create_credential

MB = 2**20


def rss_of(cluster: Cluster) -> dict[int, dict[str, int]]:
    return {
        n.node_id: common.proc_status(n.proc.pid)  # type: ignore[union-attr]
        for n in cluster.nodes
        if n.proc is not None and n.proc.poll() is None
    }


def wait_all_fired(tail: Tail, jobs: set[int], after: float, timeout: float) -> float | None:
    """Wall time when every job had a delivery of a slot > ``after`` (None: timeout)."""
    pending = set(jobs)
    pos = 0
    deadline = time.time() + timeout
    while time.time() < deadline:
        tail.poll()
        for _t, eid in tail.deliveries[pos:]:
            job, slot = split_id(eid)
            if slot > after:
                pending.discard(job)
        pos = len(tail.deliveries)
        if not pending:
            return time.time()
        time.sleep(0.25)
    print(f"    {len(pending)} jobs not fired after {timeout:.0f}s")
    return None


def one_run(index: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"s0-restart-{index}-"))
    cluster = Cluster(workdir, 3)
    receiver = None
    result: dict[str, Any] = {"run": index}
    try:
        receiver, receiver_url, out = start_receiver(workdir)
        tail = Tail(out)
        cluster.start()
        leader = cluster.wait_leader()
        credential = create_credential(leader)
        headers = {**credential, "content-type": "application/json"}
        with httpx.Client(base_url=leader.api, headers=headers, timeout=300.0) as http:
            r = http.post("/projects", json={"name": "bench", "description": "restart"})
            r.raise_for_status()
            project_id = r.json()["data"]["id"]
            callback = f"{receiver_url}/callback"
            job_ids: set[int] = set()
            failures = 0
            t0 = time.time()
            for i in range(args.posts):
                r = http.post(
                    "/jobs", content=seed_batch(project_id, args.batch, i * args.batch, callback)
                )
                if r.status_code != 201:
                    failures += 1
                    print(f"    POST failed {r.status_code}: {r.text[:200]}")
                    continue
                job_ids.update(j["id"] for j in r.json()["data"])
            created_at = time.time()
        result["create_seconds"] = created_at - t0
        result["create_failures"] = failures
        result["jobs"] = len(job_ids)
        print(
            f"  created {len(job_ids):,} jobs in {created_at - t0:.1f}s; first round ...",
            flush=True,
        )

        # Let every job fire once.
        fired_once = wait_all_fired(tail, job_ids, 0, 60 + args.round_timeout)
        result["first_round_done_after_create_s"] = (
            None if fired_once is None else fired_once - created_at
        )
        first_late = [t - split_id(eid)[1] for t, eid in tail.deliveries]
        result["prekill_lateness_p50_s"] = common.percentile(first_late, 50)
        result["prekill_lateness_p99_s"] = common.percentile(first_late, 99)
        time.sleep(args.settle)
        # The jobs' slots bunch in the few seconds the creation took, once a
        # minute. Kill ``--kill-lead`` s before the next bunch is due, so that
        # slots fall due while the cluster is down and "first fire" measures
        # the recovery, not the wait for the next minute.
        grid = sorted({split_id(eid)[1] % 60 for _, eid in tail.deliveries})
        now = time.time()
        next_due = min(
            (now - now % 60) + g + k * 60
            for g in grid
            for k in (0, 1, 2)
            if (now - now % 60) + g + k * 60 > now + args.kill_lead + 1
        )
        time.sleep(max(0.0, next_due - args.kill_lead - time.time()))
        result["next_slot_after_kill_s"] = next_due  # made relative below
        before = rss_of(cluster)
        roles_before = {}
        for node in cluster.nodes:
            try:
                roles_before[node.node_id] = node.health().get("role")
            except Exception:
                roles_before[node.node_id] = None

        result["loadavg_1m_before_kill"] = os.getloadavg()[0]
        # kill -9 all, restart all.
        t_kill = time.time()
        cluster.kill_all()
        result["next_slot_after_kill_s"] = next_due - t_kill
        t_restart = time.time()
        for node in cluster.nodes:
            node.start(wait=False)
        probe = KillProbe(cluster.nodes, credential, f"after-restart-{index}", t_restart)
        ready_at: dict[int, float] = {}
        ready_hwm: dict[int, dict[str, int]] = {}
        first_any: float | None = None
        first_grid: float | None = None
        pos = len(tail.deliveries)
        delivered_before_restart = pos
        deadline = t_restart + args.round_timeout
        pending = set(job_ids)
        all_fired_at: float | None = None
        stop_ready = threading.Event()

        def poll_ready() -> None:
            with httpx.Client(timeout=0.5) as h:
                while not stop_ready.is_set() and len(ready_at) < len(cluster.nodes):
                    for node in cluster.nodes:
                        if node.node_id in ready_at:
                            continue
                        try:
                            ok = h.get(f"{node.api}/healthcheck").json()["data"].get("ready")
                        except Exception:
                            continue
                        if ok:
                            ready_at[node.node_id] = time.time()
                            ready_hwm[node.node_id] = common.proc_status(
                                node.proc.pid  # type: ignore[union-attr]
                            )
                    time.sleep(0.05)

        ready_thread = threading.Thread(target=poll_ready, daemon=True)
        ready_thread.start()
        try:
            while time.time() < deadline:
                tail.poll()
                for t, eid in tail.deliveries[pos:]:
                    job, slot = split_id(eid)
                    if first_any is None or t < first_any:
                        first_any = t
                    if slot >= t_restart and (first_grid is None or t < first_grid):
                        first_grid = t
                    if slot > t_kill:
                        pending.discard(job)
                pos = len(tail.deliveries)
                if not pending:
                    all_fired_at = time.time()
                    break
                for node in cluster.nodes:
                    if node.proc is not None and node.proc.poll() is not None:
                        raise RuntimeError(f"node {node.node_id} exited: {node.log_tail(15)}")
                time.sleep(0.1)
            if all_fired_at is None:
                print(f"    {len(pending):,} jobs not fired again within {args.round_timeout:.0f}s")
        finally:
            probe.close()
            stop_ready.set()
            ready_thread.join(timeout=5)
        after = rss_of(cluster)
        leader = cluster.wait_leader(timeout=30)
        # Missed/lost executions and the job count, read after everything committed.
        counts = {}
        for state in ("missed", "lost", "failed", "dispatched"):
            counts[state] = get_json(
                leader, "/executions", credential, state=state, limit=1, consistency="strong"
            )["total"]
        jobs_listed = get_json(leader, "/jobs", credential, limit=1, consistency="strong")["total"]
        tail.poll()
        post = tail.deliveries[delivered_before_restart:]
        late_after = [t - split_id(eid)[1] for t, eid in post]
        ids = Counter(eid for _, eid in tail.deliveries)
        # Lateness before the kill and after the restart for bench/plot.py: first delivery
        # of every id, per slot second, in seconds from the kill (negative before it).
        first_seen: dict[str, float] = {}
        for t, eid in tail.deliveries:
            if eid not in first_seen or t < first_seen[eid]:
                first_seen[eid] = t
        pairs: list[tuple[int, float]] = []
        for eid, t in first_seen.items():
            slot = split_id(eid)[1]
            pairs.append((slot, t - slot))
        marks = [
            {"label": "kill -9 all", "t": 0.0},
            {"label": "restart", "t": round(t_restart - t_kill, 3)},
        ]
        if len(ready_at) == len(cluster.nodes):
            marks.append({"label": "all ready", "t": round(max(ready_at.values()) - t_kill, 3)})
        after_restart = Counter(eid for _, eid in tail.deliveries[delivered_before_restart:])
        result.update(
            {
                "roles_before": roles_before,
                "down_seconds": t_restart - t_kill,
                "leader_s": None if probe.leader_at is None else probe.leader_at - t_restart,
                "leader_node": probe.leader_id,
                "write_s": None if probe.write_at is None else probe.write_at - t_restart,
                "write_attempts": probe.write_attempts,
                "write_errors": dict(probe.write_errors),
                "ready_s": {k: v - t_restart for k, v in sorted(ready_at.items())},
                "all_ready_s": (
                    max(ready_at.values()) - t_restart
                    if len(ready_at) == len(cluster.nodes)
                    else None
                ),
                "first_fire_s": None if first_any is None else first_any - t_restart,
                "first_fire_lateness_s": (
                    None
                    if first_any is None
                    else first_any - min(split_id(e)[1] for t, e in post if t == first_any)
                ),
                "after_restart_lateness_p50_s": common.percentile(late_after, 50),
                "after_restart_lateness_p99_s": common.percentile(late_after, 99),
                "after_restart_lateness_max_s": max(late_after, default=None),
                "first_on_grid_fire_s": None if first_grid is None else first_grid - t_restart,
                "all_fired_again_s": None if all_fired_at is None else all_fired_at - t_restart,
                "jobs_not_fired_again": len(pending),
                "deliveries_after_restart": sum(after_restart.values()),
                "duplicate_deliveries": sum(n - 1 for n in ids.values() if n > 1),
                "executions_by_state_after": counts,
                "jobs_listed_after": jobs_listed,
                "vmhwm_before": {k: v.get("VmHWM", 0) for k, v in before.items()},
                "vmrss_before": {k: v.get("VmRSS", 0) for k, v in before.items()},
                "vmhwm_at_ready": {k: v.get("VmHWM", 0) for k, v in sorted(ready_hwm.items())},
                "vmhwm_after": {k: v.get("VmHWM", 0) for k, v in after.items()},
                "vmrss_after": {k: v.get("VmRSS", 0) for k, v in after.items()},
                "series_origin": t_kill,
                "series": common.lateness_series(pairs, origin=t_kill),
                "series_marks": marks,
            }
        )
    finally:
        cluster.kill_all()
        stop(receiver)
        result.update(common.node_log_problems(cluster.nodes))
        if args.keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--round-timeout", type=float, default=180.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument(
        "--kill-lead", type=float, default=2.0, help="kill this long before slots fall due"
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--name", default="restart")
    args = parser.parse_args(argv)

    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} ...", flush=True)
        r = one_run(i + 1, args)
        runs.append(r)
        print(
            f"  leader {r['leader_s']}s write {r['write_s']}s first fire {r['first_fire_s']}s "
            f"all fired again {r['all_fired_again_s']}s",
            flush=True,
        )

    def peak(r: dict[str, Any], key: str) -> float:
        return max(r[key].values(), default=0) / MB

    keys = [
        "create_seconds",
        "first_round_done_after_create_s",
        "leader_s",
        "write_s",
        "all_ready_s",
        "first_fire_s",
        "first_on_grid_fire_s",
        "all_fired_again_s",
        "after_restart_lateness_p50_s",
        "after_restart_lateness_p99_s",
        "after_restart_lateness_max_s",
    ]
    med: dict[str, Any] = {
        k: common.median([r[k] for r in runs if r.get(k) is not None]) for k in keys
    }
    for key in ("vmhwm_before", "vmhwm_at_ready", "vmhwm_after"):
        med[f"{key}_max_node_mib"] = common.median([peak(r, key) for r in runs])
    rows = []
    for r in runs:
        rows.append(
            [
                r["run"],
                r["jobs"],
                r["create_seconds"],
                r["leader_s"],
                r["write_s"],
                r["all_ready_s"],
                r["first_fire_s"],
                r["first_on_grid_fire_s"],
                r["all_fired_again_s"],
                r["after_restart_lateness_p99_s"],
                " / ".join(f"{v / MB:.0f}" for v in r["vmhwm_before"].values()),
                " / ".join(f"{v / MB:.0f}" for v in r["vmhwm_after"].values()),
                r["executions_by_state_after"]["missed"],
                r["duplicate_deliveries"],
            ]
        )
    rows.append(
        [
            "median",
            "",
            med["create_seconds"],
            med["leader_s"],
            med["write_s"],
            med["all_ready_s"],
            med["first_fire_s"],
            med["first_on_grid_fire_s"],
            med["all_fired_again_s"],
            med["after_restart_lateness_p99_s"],
            f"max {med['vmhwm_before_max_node_mib']:.0f}",
            f"max {med['vmhwm_after_max_node_mib']:.0f}",
            "",
            "",
        ]
    )
    rows = [["-" if v is None else v for v in row] for row in rows]
    headers = [
        "run",
        "jobs",
        "create s",
        "leader s",
        "write s",
        "all ready s",
        "1st fire s",
        "1st on-grid s",
        "all again s",
        "late p99 s",
        "VmHWM before MiB (n1/n2/n3)",
        "VmHWM after MiB",
        "missed",
        "dup deliv",
    ]
    print()
    print(common.table(headers, rows))
    note = (
        f"{common.machine_info()['cpus']} cores shared by 3 nodes, the lean receiver"
        " and the bench process"
    )
    print(note)
    path = common.write_result(
        args.name,
        {
            "bench": "restart",
            "command": "python bench/restart.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "cores_note": note,
            "median": med,
            "runs": runs,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
