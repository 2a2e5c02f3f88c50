"""Bench: what FlushBeforeAck costs, on and off interleaved in one sitting.

Each round runs, for each cluster size of ``--nodes``, both settings (the
order alternates between rounds, so a slow spell of the machine hits both):

* ``bench/create_jobs.py``'s run: ``--posts`` sequential POSTs of ``--batch``
  jobs (one raft entry per POST);
* the same with ``--small-posts`` POSTs of one job each: a write's latency is
  then mostly raft's, flush included;
* ``bench/fire_rate.py``'s step: ``--fire-jobs`` jobs ``@every 1s`` for
  ``--duration`` s (fires are batched per scheduler tick, so one entry per
  tick and node).

Reports per case the medians over the rounds, on and off, and on/off ratios;
writes ``bench/results/durability_cost.json``.

    python bench/durability_cost.py [--rounds 3] [--nodes 1,3] [--posts 100] [--batch 1000]
        [--small-posts 300] [--fire-jobs 10000] [--duration 15]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import _common as common
import create_jobs
import fire_rate

MODES = ("on", "off")


def fire_args(args: argparse.Namespace, nodes: int, mode: str) -> argparse.Namespace:
    return argparse.Namespace(
        nodes=nodes,
        duration=args.duration,
        warmup=5.0,
        drain=5.0,
        receiver="lean",
        post_batch=5000,
        keep=False,
        flush_before_ack=mode,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", default="1,3")
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--small-posts", type=int, default=300)
    parser.add_argument("--fire-jobs", type=int, default=10000)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",") if n.strip()]

    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        order = MODES if round_ % 2 == 0 else tuple(reversed(MODES))
        for nodes in sizes:
            for mode in order:
                env = common.flush_env(mode)
                tag = f"round {round_ + 1}, {nodes} node(s), FlushBeforeAck {mode}"
                print(f"{tag}: create {args.posts} x {args.batch} ...", flush=True)
                big = create_jobs.one_run(round_ + 1, args.posts, args.batch, False, nodes, env)
                print(f"{tag}: create {args.small_posts} x 1 ...", flush=True)
                small = create_jobs.one_run(round_ + 1, args.small_posts, 1, False, nodes, env)
                print(f"{tag}: fire {args.fire_jobs}/s for {args.duration:g} s ...", flush=True)
                fire = fire_rate.one_step(args.fire_jobs, fire_args(args, nodes, mode))
                fire.pop("series", None)
                runs.append(
                    {"round": round_ + 1, "nodes": nodes, "mode": mode, "create": big,
                     "create_small": small, "fire": fire}
                )  # fmt: skip
                print(
                    f"  create {big['total_seconds']:.2f} s (p50 "
                    f"{big['post_p50_seconds'] * 1000:.1f} ms); one-job POST p50 "
                    f"{small['post_p50_seconds'] * 1000:.2f} ms p99 "
                    f"{small['post_p99_seconds'] * 1000:.2f} ms; fires "
                    f"{fire['delivered_fires_per_second']:.0f}/s p99 late "
                    f"{fire['lateness_p99_seconds']:.3f} s node cpu "
                    f"{fire['node_cpu_percent']:.0f}%",
                    flush=True,
                )

    metrics = {
        "create_total_seconds": ("create", "total_seconds"),
        "create_post_p50_ms": ("create", "post_p50_seconds"),
        "create_node_cpu_seconds": ("create", "node_cpu_seconds_during_posts"),
        "one_job_post_p50_ms": ("create_small", "post_p50_seconds"),
        "one_job_post_p99_ms": ("create_small", "post_p99_seconds"),
        "fire_delivered_per_second": ("fire", "delivered_fires_per_second"),
        "fire_lateness_p50_s": ("fire", "lateness_p50_seconds"),
        "fire_lateness_p99_s": ("fire", "lateness_p99_seconds"),
        "fire_node_cpu_percent": ("fire", "node_cpu_percent"),
        "fire_missed": ("fire", "missed"),
        "fire_duplicates": ("fire", "duplicates"),
    }
    scale = {"create_post_p50_ms": 1000.0, "one_job_post_p50_ms": 1000.0,
             "one_job_post_p99_ms": 1000.0}  # fmt: skip
    summary: dict[str, Any] = {}
    rows = []
    for nodes in sizes:
        for name, (part, key) in metrics.items():
            values = {
                mode: [
                    r[part][key] * scale.get(name, 1.0)
                    for r in runs
                    if r["nodes"] == nodes and r["mode"] == mode and r[part][key] is not None
                ]
                for mode in MODES
            }
            on, off = common.median(values["on"]), common.median(values["off"])
            ratio = on / off if off else None
            summary[f"{nodes}n.{name}"] = {"on": on, "off": off, "on_off_ratio": ratio,
                                           "runs": values}  # fmt: skip
            rows.append([nodes, name, on, off, "-" if ratio is None else f"{ratio:.2f}"])
    print()
    print(common.table(["nodes", "metric (median)", "on", "off", "on/off"], rows))
    path = common.write_result(
        "durability_cost",
        {
            "bench": "durability_cost",
            "command": "python bench/durability_cost.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "summary": summary,
            "runs": runs,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
