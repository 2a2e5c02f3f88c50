"""Bench: the cost of ``Schedule.next_after``, the schedule maths on the fire path.

For each (spec, timezone) case it walks ``--steps`` consecutive slots from
2024-12-01 (so DST zones cross no transition but pay the zone look-ups) and
reports the best of ``--rounds`` in µs per call. ``--repo`` measures another
checkout (e.g. before a change) with this same script.

    python bench/next_after.py [--steps 20000] [--rounds 5] [--repo ../other-checkout]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _common as common

CASES = (
    ("*/5 * * * *", "UTC"),
    ("0 9 * * 1-5", "UTC"),
    ("*/10 * * * * *", "Europe/Paris"),
    ("30 1 * * *", "America/New_York"),
    ("0 9 * * 1-5", "Australia/Sydney"),
    ("0 0 L * *", "Europe/Paris"),
)
START = 1_733_011_200  # 2024-12-01T00:00:00Z


def measure(spec: str, timezone: str, steps: int, rounds: int) -> float:
    """Best µs per ``next_after`` over ``rounds`` walks of ``steps`` slots."""
    from scheduler0.daemon.scheduling.cron import parse_schedule

    schedule = parse_schedule(spec, timezone)
    schedule.next_after(START)  # parsed and warmed: the zone's year is known
    best = float("inf")
    for _ in range(rounds):
        t = START
        began = time.perf_counter()
        for _ in range(steps):
            t = schedule.next_after(t)
        best = min(best, time.perf_counter() - began)
    return best / steps * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=None, help="measure this checkout instead")
    parser.add_argument("--name", default=None, help="result name (next_after)")
    args = parser.parse_args(argv)
    source = common.use_checkout(args.repo)
    cases: list[dict[str, Any]] = [
        {"spec": spec, "timezone": tz, "us_per_call": measure(spec, tz, args.steps, args.rounds)}
        for spec, tz in CASES
    ]
    print(f"checkout {source}")
    rows = [[case["spec"], case["timezone"], case["us_per_call"]] for case in cases]
    print(common.table(["spec", "timezone", "µs per next_after"], rows))
    name = args.name or ("next_after" if args.repo is None else "next_after_other")
    path = common.write_result(
        name,
        {
            "bench": "next_after",
            "command": "python bench/next_after.py " + " ".join(sys.argv[1:]),
            "params": {k: str(v) for k, v in vars(args).items()},
            "checkout": source,
            "cases": cases,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
