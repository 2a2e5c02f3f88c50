"""Bench: a second of many fires due at once, on a real 3-node cluster.

The scale mix puts ~9,000 slots on one second of every five minutes (cron
rows at the same second), and at 1,000,000 jobs that second was delivered
1.4-2.4 s late in one lump while the others were 0.2 s late: it sets the p99.
This bench isolates it: ``--fill`` idle jobs (``@every 60m``) with
``--bunch`` cron jobs (``S * * * * *``, UTC, one second S of every minute)
spread evenly among their ids, as the mix's are (each on its own page of
the jobs table), all firing into one real receiver.

For each of the next ``--bunches`` bunch seconds it reports the lateness of
its slots (receive time - slot: min, p50, p99, max; one lump has p50 = max),
how many arrived, and each node's time applying the ``SlotsFired`` and
``ResultsRecorded`` commands meanwhile (from ``/metrics``), then writes
everything to ``bench/results/<--name>.json``.

    python bench/bunch.py [--fill 300000] [--bunch 9000] [--bunches 2] [--name bunch]
                          [--fire-ahead S]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import httpx
import orjson
from failover import Tail, split_id

from tests.support.nodes import Cluster, create_credential, operator_headers, wait_until

APPLY = re.compile(
    r'scheduler0_apply_duration_seconds_(sum|count)\{[^}]*command="(\w+)"[^}]*\} ([0-9.e+-]+)'
)
WATCHED = ("SlotsFired", "ResultsRecorded")


def apply_totals(cluster: Cluster) -> dict[tuple[int, str, str], float]:
    """(node, command, sum|count) of the apply-duration histogram of every node."""
    totals: dict[tuple[int, str, str], float] = {}
    for node in cluster.nodes:
        text = httpx.get(f"{node.url}/api/v1/metrics", headers=operator_headers(), timeout=10).text
        for kind, command, value in APPLY.findall(text):
            totals[(node.node_id, command, kind)] = float(value)
    return totals


def create(http: httpx.Client, project_id: int, url: str, args: argparse.Namespace) -> int:
    """The jobs, 1,000 a POST; returns the bunch's second of the minute."""
    total = args.fill + args.bunch
    step = total // args.bunch
    second = int((time.time() + total / 5000 + 30) % 60)  # well after the creation
    idle = {"spec": "@every 60m", "timezone": "UTC", "project_id": project_id, "data": "{}"}
    bunched = dict(idle, spec=f"{second} * * * * *")
    items = [
        dict(bunched if i % step == 0 and i // step < args.bunch else idle, callback_url=url)
        for i in range(total)
    ]
    for first in range(0, total, 1000):
        r = http.post("/jobs", content=orjson.dumps(items[first : first + 1000]))
        r.raise_for_status()
    return second


def until(moment: float) -> None:
    """Return at wall-clock ``moment`` (within 0.1 s; at most 2 minutes away)."""
    wait_until(lambda: time.time() >= moment, 120, interval=0.1, what=f"{moment:.0f}")


def one_bunch(cluster: Cluster, tail: Tail, due: int, expected: int) -> dict[str, Any]:
    """Lateness of the slot ``due`` and each node's apply time around it."""
    until(due - 3)
    before = apply_totals(cluster)

    def delivered() -> bool:
        tail.poll()
        return bool(tail.per_slot[due] >= expected)

    with contextlib.suppress(TimeoutError):  # fewer arrived: reported
        wait_until(delivered, 60, interval=0.25, what="the bunch delivered")
    until(max(time.time(), due + 8))
    after = apply_totals(cluster)
    late = sorted(t - due for t, eid in tail.deliveries if split_id(eid)[1] == due)
    applies = {
        f"node{node}_{command}_ms": round(
            (after.get((node, command, "sum"), 0) - before.get((node, command, "sum"), 0)) * 1000
        )
        for node, command, kind in after
        if kind == "sum" and command in WATCHED
    }
    return {
        "slot": due,
        "arrived": len(late),
        "lateness_min_s": late[0] if late else None,
        "lateness_p50_s": common.percentile(late, 50) if late else None,
        "lateness_p99_s": common.percentile(late, 99) if late else None,
        "lateness_max_s": late[-1] if late else None,
        **applies,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="s0-bunch-"))
    cluster = Cluster(workdir, 3, extra_env=common.fire_ahead_env(args.fire_ahead))
    receiver = None
    result: dict[str, Any] = {"fill": args.fill, "bunch": args.bunch, "bunches": []}
    try:
        receiver, receiver_url, out = common.start_receiver(workdir)
        tail = Tail(out)
        cluster.start(timeout=120)
        leader = cluster.wait_leader()
        headers = {**create_credential(leader), "content-type": "application/json"}
        with httpx.Client(base_url=leader.api, headers=headers, timeout=600) as http:
            r = http.post("/projects", json={"name": "bunch", "description": "bunch"})
            r.raise_for_status()
            started = time.time()
            second = create(http, r.json()["data"]["id"], f"{receiver_url}/cb", args)
            result["create_seconds"] = time.time() - started
        now = time.time()
        slot = math.floor(now / 60) * 60 + second
        while slot < now + 5:
            slot += 60
        for k in range(args.bunches):
            row = one_bunch(cluster, tail, slot + 60 * k, args.bunch)
            result["bunches"].append(row)
            print(
                f"  bunch {k + 1}: {row['arrived']:,} arrived, late p50 "
                f"{row['lateness_p50_s']} p99 {row['lateness_p99_s']} s; applies "
                f"{ {key: v for key, v in row.items() if key.endswith('_ms')} }",
                flush=True,
            )
    finally:
        for node in cluster.nodes:
            node.kill()
        common.stop(receiver)
        result.update(common.node_log_problems(cluster.nodes))
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, default=300_000, help="idle jobs (@every 60m)")
    parser.add_argument("--bunch", type=int, default=9_000, help="jobs due in the same second")
    parser.add_argument("--bunches", type=int, default=2, help="bunch seconds measured")
    parser.add_argument("--name", default="bunch", help="result name")
    common.add_fire_ahead(parser)
    args = parser.parse_args(argv)
    print(f"{args.bunch:,} jobs due at once among {args.fill:,} idle, 3 nodes ...", flush=True)
    result = measure(args)
    path = common.write_result(
        args.name,
        {
            "bench": "bunch",
            "command": "python bench/bunch.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "loadavg": os.getloadavg(),
            **result,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
