"""Bench: what an idle node or cluster costs, in CPU, per thread.

Starts ``--nodes`` real nodes (fresh temp dir), waits for a leader and
``--settle`` seconds more, then reads each node's CPU, and each of its
main thread's and other threads' (from ``/proc/<pid>/task/*``), over ``--seconds``. No job
exists, so what it reports is the floor every figure of CPU per fire carries:
at F fires a second, an idle cluster at P % of a core adds P * 10,000 / F µs
to each fire.

    python bench/idle_cpu.py [--nodes 3] [--seconds 30] [--settle 15] [--name idle_cpu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common as common

from tests.support.nodes import Cluster


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s main thread (its event loop) and of its other
    threads (raft, snapshots, workers: Python does not name them for /proc)."""
    out = {"event loop": 0.0, "other threads": 0.0}
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "event loop" if task.name == str(pid) else "other threads"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--name", default="idle_cpu")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="s0-idle-"))
    cluster = Cluster(workdir, args.nodes)
    try:
        cluster.start()
        cluster.wait_leader()
        time.sleep(args.settle)  # a window of time is what is measured
        pids = {n.node_id: n.proc.pid for n in cluster.nodes if n.proc is not None}
        before = {node: thread_cpu(pid) for node, pid in pids.items()}
        started = time.monotonic()
        time.sleep(args.seconds)
        after = {node: thread_cpu(pid) for node, pid in pids.items()}
        elapsed = time.monotonic() - started
    finally:
        cluster.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    per_node: dict[str, dict[str, float]] = {}
    for node, threads in after.items():
        used = {
            name: 100 * (seconds - before[node].get(name, 0.0)) / elapsed
            for name, seconds in threads.items()
        }
        per_node[str(node)] = {"total": sum(used.values()), **{k: v for k, v in used.items() if v}}
    total = sum(node["total"] for node in per_node.values())
    rows = [
        [
            node,
            round(usage["total"], 2),
            ", ".join(f"{k} {v:.2f}" for k, v in usage.items() if k != "total"),
        ]
        for node, usage in per_node.items()
    ]
    print(common.table(["node", "% of a core", "by thread (%)"], rows))
    print(
        f"idle {args.nodes} node(s): {total:.2f} % of a core in all,"
        f" {total * 1e4 / 10_000:.1f} µs a fire at 10,000 fires/s"
    )
    path = common.write_result(
        args.name,
        {
            "bench": "idle_cpu",
            "command": "python bench/idle_cpu.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "seconds": elapsed,
            "percent_of_a_core": per_node,
            "total_percent_of_a_core": total,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
