"""Bench: peer comparison (issue 5) -- APScheduler 3.x in-process vs one scheduler0 node.

For each step J of ``--jobs``, in the same run and with the same job count and
period (every 1 s, all jobs on the same whole-second grid):

* **APScheduler 3.x** (the baseline a Python user would pick): a fresh
  ``BackgroundScheduler`` in this process, ``MemoryJobStore``, the default
  executor (``ThreadPoolExecutor(max_workers=10)``, ``--workers``), J jobs with
  ``IntervalTrigger(seconds=1)``, ``misfire_grace_time=1`` (``--misfire-grace``),
  ``coalesce=False``, ``max_instances=1`` (the defaults made explicit), UTC.
  The job is a no-op that returns ``time.time()``; an ``EVENT_JOB_EXECUTED``
  listener records ``retval - scheduled_run_time`` (APScheduler 3 does not hand
  the scheduled time to the job itself, the event carries both).
  ``EVENT_JOB_MISSED`` and ``EVENT_JOB_MAX_INSTANCES`` are counted too.
  The ``apscheduler`` logger is raised to ERROR so misfire warnings do not
  flood stderr.
* **scheduler0**: ``bench/fire_rate.py``'s ``one_step`` (one real node, J jobs
  ``@every 1s``, lean receiver subprocess, real HTTP callbacks).

Both sides use the same steady-state window: slots from ``--warmup`` s after
the last job was created/started to 1 s before the end of the run; missed =
J x slots expected minus fires executed (APScheduler) / delivered (ours) for
those slots, a fire later than ``--drain`` s after the end counting as missed.
Each side also stores ``series`` for ``bench/plot.py``: per slot second of the
whole run, ``[s since the window's first slot, fires, p50, p99, max]`` of the
lateness (``_common.lateness_series``; scheduler0's from fire_rate's one_step).

Not like for like, on purpose: APScheduler's job does nothing (no I/O), while a
scheduler0 fire is a real HTTP callback to another process, after Raft + SQLite
bookkeeping. The ratios are ours/theirs.

    python bench/peers.py [--jobs 1000,5000,10000] [--duration 20] [--warmup 5]
        [--drain 5] [--workers 10] [--misfire-grace 1] [--only both|apscheduler|scheduler0]

Needs ``pip install 'apscheduler<4'`` (not a project dependency); exits 2 without it.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import _common as common

APS_SETTINGS = {
    "scheduler": "BackgroundScheduler",
    "jobstore": "MemoryJobStore",
    "executor": "ThreadPoolExecutor",
    "trigger": "IntervalTrigger(seconds=1), start_date on a whole second (all jobs aligned)",
    "coalesce": False,
    "max_instances": 1,
    "timezone": "UTC",
    "job": "no-op returning time.time(); lateness recorded by an EVENT_JOB_EXECUTED listener",
}


def _noop() -> float:
    return time.time()


def run_apscheduler(jobs: int, args: argparse.Namespace) -> dict[str, Any]:
    from apscheduler.events import (
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
    )
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    executed: list[tuple[str, float, float]] = []  # (job id, scheduled slot, lateness)
    missed_events: list[float] = []  # scheduled slot of each EVENT_JOB_MISSED
    max_instance_events: list[float] = []  # one entry per skipped run time
    recording = [True]

    def listener(event: Any) -> None:
        if not recording[0]:
            return
        if event.code == EVENT_JOB_EXECUTED:
            slot = event.scheduled_run_time.timestamp()
            executed.append((event.job_id, slot, event.retval - slot))
        elif event.code == EVENT_JOB_MISSED:
            missed_events.append(event.scheduled_run_time.timestamp())
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            max_instance_events.extend(t.timestamp() for t in event.scheduled_run_times)

    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=args.workers)},
        job_defaults={
            "coalesce": False,
            "max_instances": 1,
            "misfire_grace_time": args.misfire_grace,
        },
        timezone=UTC,
    )
    scheduler.add_listener(
        listener, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
    )
    grid = datetime.fromtimestamp(math.floor(time.time()), tz=UTC)
    create_started = time.time()
    for i in range(jobs):
        scheduler.add_job(
            _noop, IntervalTrigger(seconds=1, start_date=grid, timezone=UTC), id=f"j{i}"
        )
    scheduler.start()
    created_at = time.time()
    end_at = created_at + args.duration
    window_first = math.ceil(created_at + args.warmup)
    window_last = math.floor(end_at) - 1
    if window_last < window_first:
        raise SystemExit("--duration must exceed --warmup by at least 2 s")
    pid = os.getpid()
    try:
        time.sleep(max(0.0, window_first - time.time()))
        cpu0 = (common.cpu_seconds(pid), time.time())
        time.sleep(max(0.0, window_last + 1 - time.time()))
        cpu1 = (common.cpu_seconds(pid), time.time())
        time.sleep(max(0.0, end_at - time.time()))
        scheduler.pause()
        time.sleep(args.drain)
        recording[0] = False
        rss = common.proc_status(pid)
    finally:
        scheduler.shutdown(wait=False)
    in_window = [e for e in list(executed) if window_first <= e[1] <= window_last]
    lateness = [late for _, _, late in in_window]
    slots = window_last - window_first + 1
    expected = jobs * slots
    delivered = len({(j, s) for j, s, _ in in_window})
    duplicates = len(in_window) - delivered
    missed_ev = sum(1 for s in missed_events if window_first <= s <= window_last)
    max_inst = sum(1 for s in max_instance_events if window_first <= s <= window_last)
    # Lateness per slot second for bench/plot.py, like fire_rate's: every slot run (first
    # execution of each (job, slot)), in seconds from window_first.
    first_run: dict[tuple[str, float], float] = {}
    for job_id, slot, late in list(executed):
        key = (job_id, slot)
        if key not in first_run or late < first_run[key]:
            first_run[key] = late
    pairs = [(round(slot), late) for (_, slot), late in first_run.items()]
    wall = cpu1[1] - cpu0[1]
    result = {
        "jobs": jobs,
        "window_slots": slots,
        "expected": expected,
        "delivered": delivered,
        "missed": expected - delivered,
        "missed_fraction": (expected - delivered) / expected,
        "duplicates": duplicates,
        "missed_events": missed_ev,
        "max_instances_skips": max_inst,
        "delivered_fires_per_second": delivered / slots,
        "lateness_p50_seconds": common.percentile(lateness, 50),
        "lateness_p99_seconds": common.percentile(lateness, 99),
        "lateness_max_seconds": max(lateness) if lateness else None,
        "process_cpu_percent": 100 * (cpu1[0] - cpu0[0]) / wall,
        "vmhwm_bytes": rss.get("VmHWM", 0),
        "create_seconds": created_at - create_started,
        "series": common.lateness_series(pairs, origin=window_first),
    }
    result["ok"] = (
        result["lateness_p99_seconds"] <= 1.0
        and result["missed_fraction"] <= 0.001
        and delivered > 0
    )
    del scheduler
    gc.collect()
    return result


def run_scheduler0(jobs: int, args: argparse.Namespace) -> dict[str, Any]:
    import fire_rate

    ns = argparse.Namespace(
        nodes=1,
        duration=args.duration,
        warmup=args.warmup,
        drain=args.drain,
        receiver="lean",
        post_batch=5000,
        keep=False,
    )
    result: dict[str, Any] = fire_rate.one_step(jobs, ns)
    # fire_rate's one_step adds the same per-second lateness series (origin: its
    # window_first); an older one_step has none.
    result["series"] = result.get("series", [])
    return result


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{ours / theirs:,.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", default="1000,5000,10000")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=10, help="APScheduler thread pool size")
    parser.add_argument("--misfire-grace", type=float, default=1.0)
    parser.add_argument("--only", choices=("both", "apscheduler", "scheduler0"), default="both")
    parser.add_argument("--name", default="peers")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.jobs.split(",") if s.strip()]

    aps_version = None
    if args.only != "scheduler0":
        if importlib.util.find_spec("apscheduler") is None:
            print(
                "apscheduler is not installed: pip install 'apscheduler<4' "
                "(it is deliberately not a project dependency)",
                file=sys.stderr,
            )
            return 2
        import apscheduler

        aps_version = str(apscheduler.__version__)
        if not aps_version.startswith("3."):
            print(f"need APScheduler 3.x, found {aps_version}", file=sys.stderr)
            return 2

    results: list[dict[str, Any]] = []
    for jobs in steps:
        entry: dict[str, Any] = {"jobs": jobs}
        if args.only != "scheduler0":
            print(f"step {jobs}: APScheduler {aps_version} for {args.duration:g}s ...", flush=True)
            a = entry["apscheduler"] = run_apscheduler(jobs, args)
            print(
                f"  executed {a['delivered_fires_per_second']:.0f}/s p99 late "
                f"{a['lateness_p99_seconds']:.3f}s missed {a['missed']} "
                f"(missed events {a['missed_events']}, max-instances skips "
                f"{a['max_instances_skips']}) cpu {a['process_cpu_percent']:.0f}%",
                flush=True,
            )
        if args.only != "apscheduler":
            print(f"step {jobs}: scheduler0 (1 node) for {args.duration:g}s ...", flush=True)
            o = entry["scheduler0"] = run_scheduler0(jobs, args)
            print(
                f"  delivered {o['delivered_fires_per_second']:.0f}/s p99 late "
                f"{o['lateness_p99_seconds']:.3f}s missed {o['missed']} dup {o['duplicates']} "
                f"node cpu {o['node_cpu_percent']:.0f}% "
                f"receiver cpu {o['receiver_cpu_percent']:.0f}%",
                flush=True,
            )
        if "apscheduler" in entry and "scheduler0" in entry:
            a, o = entry["apscheduler"], entry["scheduler0"]
            entry["ratio_fires_per_second"] = (
                o["delivered_fires_per_second"] / a["delivered_fires_per_second"]
                if a["delivered_fires_per_second"]
                else None
            )
            entry["ratio_lateness_p99"] = (
                o["lateness_p99_seconds"] / a["lateness_p99_seconds"]
                if a["lateness_p99_seconds"]
                else None
            )
        results.append(entry)

    empty: dict[str, Any] = {}
    rows = []
    for e in results:
        a, o = e.get("apscheduler", empty), e.get("scheduler0", empty)
        rows.append(
            [
                e["jobs"],
                a.get("delivered_fires_per_second", "-"),
                o.get("delivered_fires_per_second", "-"),
                _ratio(o.get("delivered_fires_per_second"), a.get("delivered_fires_per_second")),
                a.get("lateness_p50_seconds", "-"),
                o.get("lateness_p50_seconds", "-"),
                a.get("lateness_p99_seconds", "-"),
                o.get("lateness_p99_seconds", "-"),
                _ratio(o.get("lateness_p99_seconds"), a.get("lateness_p99_seconds")),
                a.get("lateness_max_seconds", "-"),
                o.get("lateness_max_seconds", "-"),
                a.get("missed", "-"),
                o.get("missed", "-"),
                f"{a['process_cpu_percent']:.0f}%" if a else "-",
                f"{o['node_cpu_percent']:.0f}%" if o else "-",
            ]
        )
    headers = [
        "jobs",
        "APS f/s",
        "s0 f/s",
        "f/s ours/theirs",
        "APS p50 s",
        "s0 p50 s",
        "APS p99 s",
        "s0 p99 s",
        "p99 ours/theirs",
        "APS max s",
        "s0 max s",
        "APS missed",
        "s0 missed",
        "APS cpu",
        "s0 node cpu",
    ]
    print()
    print(common.table(headers, rows))
    print(
        f"\nAPScheduler {aps_version}: {APS_SETTINGS['scheduler']}, "
        f"{APS_SETTINGS['jobstore']}, ThreadPoolExecutor(max_workers={args.workers}), "
        f"misfire_grace_time={args.misfire_grace:g}, coalesce=False, max_instances=1; "
        "its job is an in-process no-op (no I/O).\n"
        "scheduler0: one node, every fire is a real HTTP callback to a lean receiver "
        "subprocess, through Raft + SQLite.\n"
        f"{common.machine_info()['cpus']} cores, shared (by scheduler0's node and receiver; "
        "APScheduler runs alone in this process)."
    )
    path = common.write_result(
        args.name,
        {
            "bench": "peers",
            "command": "python bench/peers.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            "apscheduler_version": aps_version,
            "apscheduler_settings": {
                **APS_SETTINGS,
                "max_workers": args.workers,
                "misfire_grace_time": args.misfire_grace,
            },
            "caveat": (
                "APScheduler's job is an in-process no-op (no HTTP call); scheduler0 delivers "
                "a real HTTP callback per fire through Raft + SQLite. Ratios are ours/theirs."
            ),
            "steps": results,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
