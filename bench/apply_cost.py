"""Bench: CPU cost of applying created jobs, fires and their results, per node.

Every node of a cluster applies every command, so this cost is paid once per
node for each created job and each fire. On a fresh state machine (real
SQLite file, no raft) it creates ``--jobs`` jobs, 1,000 a ``JobsCreated``
(reported: their median milliseconds and microseconds per job), then applies
``--rounds`` pairs of one ``SlotsFired`` of
``--fires`` fires and one ``ResultsRecorded`` of their results (one POST's
outcome), and reports the median milliseconds of each and microseconds per
fire. ``--repo DIR`` runs the same measurement against another checkout (for
before/after: ``git worktree add /tmp/old <commit>``); each checkout gets the
commands its own nodes propose (``ResultsRecorded.groups`` where it exists,
one row per fire before; ``SlotsFired.following`` where it exists).
``--spread``: each round fires the same ``--fires`` jobs drawn at random
from all of them (as the jobs due in one second of a large table lie on as
many of its pages), not ``--fires`` consecutive ids; ``--fresh`` with it
draws other jobs each round (as each second fires others), so no round
finds its pages in SQLite's cache from the round before.

``--held N``: the node's way since fires are held in memory
(``state/fire_buffer.py``): the machine holds fires and results and writes
them every ``N`` rounds (the flush's time counted in the rounds it ends).
``--late K`` with it: each round's results are applied ``K`` rounds after
its fires (as a node decides a fire ``FireAheadSeconds`` before its slot and
its result comes after it), and the writes are the flushes that are due
(``flush_due``, as the log's tick calls it), not a read's; the results
still outstanding at the end are applied and written, and counted.

    python bench/apply_cost.py [--jobs 100000] [--fires 10000] [--rounds 7] [--spread [--fresh]]
        [--held N [--late K]] [--repo DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import _common as common


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from scheduler0.daemon.state import commands as c
    from scheduler0.daemon.state.machine import StateMachine

    workdir = Path(tempfile.mkdtemp(prefix="s0-apply-"))
    held = {"fire_buffer_seconds": 3600.0} if args.held else {}
    machine = StateMachine(workdir / "state.db", **held)
    try:

        def apply(command: Any) -> Any:
            encoded = c.encode(command)
            started = time.perf_counter()
            result = machine.apply(encoded)
            elapsed = time.perf_counter() - started
            assert "ok" in result, result
            return result["ok"], elapsed

        apply(c.ProjectCreated(now=1.0, name="p", description="", signing_secret="s"))
        job = {
            "project_id": 1,
            "spec": "@every 1m",
            "timezone": "America/New_York",
            "data": '{"jobId":1}',
            "callback_url": "http://127.0.0.1:9/callback",
            "execution_type": "http",
            "anchor": 1_795_000_000,
        }
        created: list[float] = []
        for _ in range(args.jobs // 1000):
            created.append(apply(c.JobsCreated(now=1.0, jobs=[job] * 1000))[1])
        apply(c.AssignmentChanged(now=1.0, epoch=1, owners=[1] * 1024))
        fired: list[float] = []
        recorded: list[float] = []
        grouped = "groups" in {f.name for f in fields(c.ResultsRecorded)}
        keeps_next = "following" in {f.name for f in fields(c.SlotsFired)}
        blocks = max(1, args.jobs // args.fires)
        late: list[Any] = []
        """Results not applied yet (``--late``)."""

        def flush() -> float:
            started = time.perf_counter()
            if args.late:
                wait, machine.fire_buffer_seconds = machine.fire_buffer_seconds, 1e-9
                machine.flush_due()
                machine.fire_buffer_seconds = wait
            else:
                machine.settle()
            return time.perf_counter() - started

        draw = random.Random(7)
        spread = sorted(draw.sample(range(1, args.jobs + 1), args.fires))
        for r in range(args.rounds):
            slot = 1_795_000_060 + 60 * r
            first = 1 + (r % blocks) * args.fires
            if args.spread and args.fresh and r > 0:
                spread = sorted(draw.sample(range(1, args.jobs + 1), args.fires))
            ids = spread if args.spread else range(first, first + args.fires)
            fires = [[j, slot] for j in ids]
            if keeps_next:  # what nodes propose since each job's next run is kept
                tick = c.SlotsFired(
                    now=slot + 0.1,
                    node_id=1,
                    epoch=1,
                    fires=fires,
                    following=[[slot + 60, list(ids)]],
                )
            else:
                tick = c.SlotsFired(now=slot + 0.1, node_id=1, epoch=1, fires=fires)
            accepted, seconds = apply(tick)
            assert len(accepted["accepted"]) == args.fires
            fired.append(seconds)
            if grouped:  # what nodes propose since ResultsRecorded has groups
                recorded_command = c.ResultsRecorded(
                    now=slot + 0.5,
                    node_id=1,
                    groups=[[slot, "success", 200, 1, 12, None, list(ids)]],
                )
            else:
                results = [[j, slot, "success", 200, 1, 12, None] for j in ids]
                recorded_command = c.ResultsRecorded(now=slot + 0.5, node_id=1, results=results)
            late.append(recorded_command)
            seconds = 0.0
            if len(late) > args.late:
                seconds = apply(late.pop(0))[1]
            if args.held and (r + 1) % args.held == 0:
                seconds += flush()
            recorded.append(seconds)
        if late:  # the results still outstanding, and a read's write of all
            recorded[-1] += sum(apply(command)[1] for command in late)
            started = time.perf_counter()
            machine.settle()
            recorded[-1] += time.perf_counter() - started
        if args.held:  # every round's share of the flushes, not the median round's
            per_round = (sum(fired) + sum(recorded)) / len(fired)
            return {
                "jobs_created_ms": statistics.median(created) * 1000,
                "us_per_created_job": sum(created) * 1e6 / (len(created) * 1000),
                "slots_fired_ms": statistics.mean(fired) * 1000,
                "results_recorded_ms": statistics.mean(recorded) * 1000,
                "us_per_fire": per_round * 1e6 / args.fires,
            }
        return {
            "jobs_created_ms": statistics.median(created) * 1000,
            "us_per_created_job": sum(created) * 1e6 / (len(created) * 1000),
            "slots_fired_ms": statistics.median(fired) * 1000,
            "results_recorded_ms": statistics.median(recorded) * 1000,
            "us_per_fire": (statistics.median(fired) + statistics.median(recorded))
            * 1e6
            / args.fires,
        }
    finally:
        machine.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--fires", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--spread", action="store_true", help="the same random jobs each round")
    parser.add_argument("--fresh", action="store_true", help="with --spread: others each round")
    parser.add_argument("--held", type=int, default=0, help="hold fires, write every N rounds")
    parser.add_argument("--late", type=int, default=0, help="results K rounds after their fires")
    parser.add_argument("--repo", type=Path, default=None, help="measure this checkout instead")
    parser.add_argument("--name", default=None, help="result name (apply_cost)")
    args = parser.parse_args(argv)
    source = common.use_checkout(args.repo)
    result = measure(args)
    print(
        common.table(
            [
                "checkout",
                "jobs",
                "JobsCreated ms (1,000)",
                "µs per job",
                "fires",
                "SlotsFired ms",
                "ResultsRecorded ms",
                "µs per fire",
            ],
            [
                [
                    source,
                    args.jobs,
                    result["jobs_created_ms"],
                    result["us_per_created_job"],
                    args.fires,
                    result["slots_fired_ms"],
                    result["results_recorded_ms"],
                    result["us_per_fire"],
                ]
            ],
        )
    )
    common.save_checkout_result("apply_cost", args, source, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
