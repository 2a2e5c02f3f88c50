"""Bench: sustained fire rate of one real node (or a 3-node cluster) into one real receiver.

For each step J of ``--jobs`` (fresh node(s) and receiver per step): create J jobs
``@every 1s`` whose callback is the receiver, let them run ``--duration``
seconds, wait ``--drain`` seconds more, then read what the receiver recorded.

Steady state = the slots from ``--warmup`` s after the last job was created to
1 s before the end of the run. For those slots it reports: delivered fires/s
(unique execution ids per second of slots), lateness = receive time - slot
(p50/p99/max), missed slots (J x slots expected vs delivered, counting a slot
delivered after the drain as missed), and duplicates by execution_id over the
whole run (must be 0). It also reports CPU% of the node and of the receiver
over the window (the machine has ``os.cpu_count()`` cores shared by all), and a
per-second lateness series (``series``) for the plots.

``--nodes 3`` runs a real 3-node cluster on this machine (the leader fires
nothing, the two workers fire; every node applies every command), POSTs to
the leader, and sums the nodes' CPU.

"Sustained fires/s" = the delivered rate of the highest step with p99 lateness
<= 1 s, no duplicates and missed slots <= 0.1 %.

    python bench/fire_rate.py [--nodes 1|3] [--jobs 1000,2000,5000,10000,20000] [--duration 20]
        [--receiver lean|starlette] [--warmup 5] [--drain 5] [--flush-before-ack on|off]
        [--policies off|on|compare] [--node-env KEY=VALUE ...]

``--policies on`` gives every job every policy (``POLICIES``: values that
change nothing a run of this length fires, so the figures compare like with
like: the policy path of the scheduler and apply against the plain one);
``--policies compare`` runs each step with plain jobs, then with policies, and
reports the ratio of their delivered fires/s and node CPU.

``--receiver lean`` (default) is ``bench/lean_receiver.py`` (raw asyncio);
``starlette`` is ``tests.support.receiver`` (uvicorn + Starlette, one JSON line
per item).
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as common
import httpx
import orjson

from tests.support.nodes import Cluster, NodeProcess, create_credential

BENCH_DIR = Path(__file__).resolve().parent


def read_deliveries(kind: str, out: Path) -> list[tuple[float, str]]:
    """(receive time, execution_id) for every item answered 2xx."""
    deliveries: list[tuple[float, str]] = []
    if not out.exists():
        return deliveries
    for line in out.read_bytes().splitlines():
        if not line:
            continue
        record = orjson.loads(line)
        if kind == "lean":
            t, status, ids = record
            if 200 <= status < 300:
                deliveries.extend((t, eid) for eid in ids)
        elif 200 <= record.get("status", 200) < 300:
            deliveries.append((record["t"], record["execution_id"]))
    return deliveries


def policies(now: float) -> dict[str, Any]:
    """Every job policy, at values under which every slot of the run still
    fires once (``jitter_seconds`` 0: an ``@every 1s`` job allows no more)."""
    return {
        "overlap": "buffer_one",
        "retry": {"attempts": 3, "initial_seconds": 1, "multiplier": 2, "cap_seconds": 10},
        "timeout_seconds": 30,
        "catchup": "all",
        "catchup_window_seconds": 60,
        "start_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
        "end_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 86400)),
        "jitter_seconds": 0,
        "max_runs": 10**9,
        "pause_after_failures": 1000,
    }


def one_step(jobs: int, args: argparse.Namespace, with_policies: bool = False) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"s0-fire-{args.nodes}x{jobs}-"))
    env = common.flush_env(getattr(args, "flush_before_ack", None))
    env.update(common.fire_ahead_env(getattr(args, "fire_ahead", None)))
    env.update(dict(item.split("=", 1) for item in getattr(args, "node_env", None) or []))
    cluster = Cluster(workdir, args.nodes, extra_env=env) if args.nodes > 1 else None
    nodes = cluster.nodes if cluster is not None else [NodeProcess(workdir / "node", extra_env=env)]
    receiver: subprocess.Popen[bytes] | None = None
    try:
        receiver, receiver_url, out = common.start_receiver(workdir, args.receiver)
        if cluster is not None:
            cluster.start()
            target = cluster.wait_leader()
        else:
            target = nodes[0].start()
        headers = create_credential(target)
        http = httpx.Client(base_url=target.api, headers=headers, timeout=120.0)
        response = http.post("/projects", json={"name": "bench", "description": "fire rate"})
        response.raise_for_status()
        project_id = response.json()["data"]["id"]
        callback = f"{receiver_url}/cb"
        extra = policies(time.time()) if with_policies else {}
        created = 0
        create_started = time.time()
        while created < jobs:
            n = min(args.post_batch, jobs - created)
            body = orjson.dumps(
                [
                    {
                        "spec": "@every 1s",
                        "project_id": project_id,
                        "timezone": "America/New_York",
                        "data": {"n": created + i},
                        "callback_url": callback,
                        **extra,
                    }
                    for i in range(n)
                ]
            )
            r = http.post("/jobs", content=body, headers={"content-type": "application/json"})
            if r.status_code != 201:
                raise RuntimeError(f"job creation failed: {r.status_code} {r.text[:300]}")
            created += n
        created_at = time.time()
        end_at = created_at + args.duration
        window_first = math.ceil(created_at + args.warmup)
        window_last = math.floor(end_at) - 1
        if window_last < window_first:
            raise SystemExit("--duration must exceed --warmup by at least 2 s")
        # CPU of the node(s) and the receiver over the window (window_first .. window_last+1)
        time.sleep(max(0.0, window_first - time.time()))
        pids = {n.node_id: n.proc.pid for n in nodes if n.proc is not None}
        rpid = receiver.pid

        def cpu() -> tuple[dict[int, float], float, float]:
            per_node = {i: common.cpu_seconds(pid) for i, pid in pids.items()}
            return per_node, common.cpu_seconds(rpid), time.time()

        cpu0 = cpu()
        time.sleep(max(0.0, window_last + 1 - time.time()))
        cpu1 = cpu()
        status_end = node_statuses(nodes, headers)
        time.sleep(max(0.0, end_at - time.time()) + args.drain)
        status_drained = node_statuses(nodes, headers)
        rss = {i: common.proc_status(pid).get("VmHWM", 0) for i, pid in pids.items()}
        leader = cluster.leader() if cluster is not None else target
        http.close()
    finally:
        for node in nodes:
            node.kill()
        common.stop(receiver)
    problems = common.node_log_problems(nodes)
    deliveries = read_deliveries(args.receiver, out)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"  kept {workdir}")

    counts = Counter(eid for _, eid in deliveries)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    first_seen: dict[str, float] = {}
    for t, eid in deliveries:
        if eid not in first_seen or t < first_seen[eid]:
            first_seen[eid] = t
    lateness: list[float] = []
    per_slot: Counter[int] = Counter()
    pairs: list[tuple[int, float]] = []
    for eid, t in first_seen.items():
        slot = int(eid.rsplit("-", 1)[1])
        pairs.append((slot, t - slot))
        if window_first <= slot <= window_last:
            lateness.append(t - slot)
            per_slot[slot] += 1
    slots = window_last - window_first + 1
    expected = jobs * slots
    delivered = sum(per_slot.values())
    received_in_window = sum(1 for t, _ in deliveries if window_first <= t < window_last + 1)
    wall = cpu1[2] - cpu0[2]
    node_cpu = {i: 100 * (cpu1[0][i] - cpu0[0][i]) / wall for i in cpu0[0]}
    result = {
        "nodes": args.nodes,
        "jobs": jobs,
        "policies": with_policies,
        "window_slots": slots,
        "expected": expected,
        "delivered": delivered,
        "missed": expected - delivered,
        "missed_fraction": (expected - delivered) / expected,
        "duplicates": duplicates,
        "delivered_fires_per_second": delivered / slots,
        "received_items_per_second": received_in_window / slots,
        "lateness_p50_seconds": common.percentile(lateness, 50),
        "lateness_p99_seconds": common.percentile(lateness, 99),
        "lateness_max_seconds": max(lateness) if lateness else None,
        "node_cpu_percent": sum(node_cpu.values()),
        "node_cpu_percent_per_node": node_cpu,
        "receiver_cpu_percent": 100 * (cpu1[1] - cpu0[1]) / wall,
        "node_vmhwm_bytes": max(rss.values(), default=0),
        "node_vmhwm_bytes_per_node": rss,
        "leader_at_end": leader.node_id if leader is not None else None,
        "status_at_end": status_end,
        "status_after_drain": status_drained,
        "create_seconds": created_at - create_started,
        "series": common.lateness_series(pairs, origin=window_first),
        **problems,
    }
    result["ok"] = (
        result["lateness_p99_seconds"] <= 1.0
        and duplicates == 0
        and result["missed_fraction"] <= 0.001
        and delivered > 0
    )
    return result


STATUS_KEYS = (
    "fired",
    "rejected",
    "queue_depth",
    "in_flight",
    "fire_lag_p99_seconds",
    "results_backlog",
    "jobs_owned",
)


def node_statuses(nodes: list[NodeProcess], headers: dict[str, str]) -> dict[int, Any]:
    """The scheduler figures of each node's ``/status`` (None if it did not answer)."""
    out: dict[int, Any] = {}
    for node in nodes:
        try:
            r = httpx.get(f"{node.api}/status", headers=headers, timeout=10.0)
            status = r.json()["data"]["node"]
            out[node.node_id] = {k: status.get(k) for k in STATUS_KEYS}
        except (httpx.HTTPError, ValueError, KeyError):
            out[node.node_id] = None
    return out


def policy_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step run both ways (``--policies compare``): with policies / plain."""
    plain = {r["jobs"]: r for r in results if not r["policies"]}
    out = []
    for r in results:
        base = plain.get(r["jobs"])
        if not r["policies"] or base is None:
            continue
        out.append(
            {
                "jobs": r["jobs"],
                "delivered_ratio": r["delivered_fires_per_second"]
                / max(base["delivered_fires_per_second"], 1e-9),
                "node_cpu_ratio": r["node_cpu_percent"] / max(base["node_cpu_percent"], 1e-9),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1000,2000,5000,10000,20000")
    parser.add_argument(
        "--nodes", type=int, default=1, help="1 = one node; 3 = a cluster (POSTs to the leader)"
    )
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--receiver", choices=("lean", "starlette"), default="lean")
    parser.add_argument("--post-batch", type=int, default=5000)
    parser.add_argument(
        "--stop-after-failures",
        type=int,
        default=2,
        help="skip higher steps after this many failed steps",
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--node-env",
        action="append",
        metavar="KEY=VALUE",
        help="a setting for every node's environment (repeatable),"
        " e.g. SCHEDULER0_RAFT_SNAPSHOT_INTERVAL=60",
    )
    parser.add_argument("--name", default=None, help="result name (fire_rate or fire_rate_3n)")
    common.add_fire_ahead(parser)
    parser.add_argument(
        "--flush-before-ack",
        choices=("on", "off"),
        default=None,
        help="the nodes' FlushBeforeAck (default: the nodes' default, on)",
    )
    parser.add_argument(
        "--policies",
        choices=("off", "on", "compare"),
        default="off",
        help="jobs with every policy (on), or each step plain then with policies (compare)",
    )
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "fire_rate" if args.nodes == 1 else f"fire_rate_{args.nodes}n"
        if args.policies != "off":
            args.name += f"_policies_{args.policies}"
    kinds = {"off": [False], "on": [True], "compare": [False, True]}[args.policies]
    steps = [int(s) for s in args.jobs.split(",") if s.strip()]

    results = []
    failures = 0
    for jobs in steps:
        if failures >= args.stop_after_failures:
            print(f"step {jobs}: skipped after {failures} failed steps")
            continue
        for with_policies in kinds:
            what = "with every policy" if with_policies else "plain"
            print(
                f"step {jobs} jobs @every 1s ({what}) on {args.nodes} node(s)"
                f" for {args.duration:g}s ...",
                flush=True,
            )
            r = one_step(jobs, args, with_policies)
            results.append(r)
            failures += 0 if r["ok"] else 1
            print(
                f"  delivered {r['delivered_fires_per_second']:.0f}/s p99 late "
                f"{r['lateness_p99_seconds']:.3f}s missed {r['missed']} dup {r['duplicates']} "
                f"node cpu {r['node_cpu_percent']:.0f}% "
                f"receiver cpu {r['receiver_cpu_percent']:.0f}%",
                flush=True,
            )
    rows = [
        [
            r["jobs"],
            "yes" if r["policies"] else "no",
            r["delivered_fires_per_second"],
            r["lateness_p50_seconds"],
            r["lateness_p99_seconds"],
            r["lateness_max_seconds"],
            r["missed"],
            f"{100 * r['missed_fraction']:.2f}%",
            r["duplicates"],
            f"{r['node_cpu_percent']:.0f}%",
            f"{r['receiver_cpu_percent']:.0f}%",
            r["node_vmhwm_bytes"] / 2**20,
            "yes" if r["ok"] else "NO",
        ]
        for r in results
    ]
    headers = [
        "jobs",
        "policies",
        "fires/s",
        "late p50 s",
        "late p99 s",
        "late max s",
        "missed",
        "missed%",
        "dups",
        "node cpu",
        "recv cpu",
        "VmHWM MiB",
        "ok",
    ]
    print()
    print(common.table(headers, rows))
    good = [r for r in results if r["ok"]]
    sustained = max((r["delivered_fires_per_second"] for r in good), default=0.0)
    best = max(good, key=lambda r: r["jobs"]) if good else None
    print(
        f"\nsustained fires/s (p99 lateness <= 1 s, 0 dups, missed <= 0.1%): {sustained:,.0f}"
        + (f" at {best['jobs']} jobs" if best else "")
        + f"; {common.machine_info()['cpus']} cores shared by {args.nodes} node(s) and the"
        + f" {args.receiver} receiver"
    )
    ratios = policy_ratios(results)
    for ratio in ratios:
        print(
            f"{ratio['jobs']} jobs, with policies / plain: delivered fires/s"
            f" {ratio['delivered_ratio']:.3f}, node cpu {ratio['node_cpu_ratio']:.3f}"
        )
    path = common.write_result(
        args.name,
        {
            "bench": "fire_rate",
            "command": "python bench/fire_rate.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "sustained_fires_per_second": sustained,
            "sustained_at_jobs": best["jobs"] if best else None,
            "steps": results,
            "policy_ratios": ratios,
        },
    )
    print(f"wrote {path}")
    return 0 if all(r["duplicates"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
