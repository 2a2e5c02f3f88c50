"""Shared helpers for the bench scripts (run them from the repo root:
``python bench/<name>.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a process, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (seconds), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_info() -> dict[str, Any]:
    git = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_head": git,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def flush_env(choice: str | None) -> dict[str, str]:
    """The nodes' environment for ``--flush-before-ack on|off`` (None: their default)."""
    if choice is None:
        return {}
    return {"SCHEDULER0_FLUSH_BEFORE_ACK": "true" if choice == "on" else "false"}


def fire_ahead_env(seconds: float | None) -> dict[str, str]:
    """The nodes' environment for ``--fire-ahead S`` (None: their default, 2 s)."""
    return {} if seconds is None else {"SCHEDULER0_FIRE_AHEAD_SECONDS": str(seconds)}


def add_fire_ahead(parser: Any) -> None:
    parser.add_argument(
        "--fire-ahead",
        type=float,
        default=None,
        help="the nodes' FireAheadSeconds (default: theirs, 2; 0 decides every run at its slot)",
    )


def use_checkout(repo: Path | None) -> str:
    """Import ``scheduler0`` from ``repo`` (another checkout, for before/after:
    ``git worktree add /tmp/old <commit>``) instead of this one, unless None.
    Call before the first import of it; returns the checkout measured."""
    if repo is not None:
        sys.path.insert(0, str(repo.resolve()))
        for module in [m for m in sys.modules if m.startswith("scheduler0")]:
            del sys.modules[module]
    import scheduler0

    return str(Path(scheduler0.__file__).resolve().parents[1])


def seed_replica(
    apply: Any, jobs: int, *, spec: str = "@every 1m", timezone: str = "America/New_York"
) -> None:
    """On a bare state machine (``apply`` takes a command): project 1, ``jobs``
    alike jobs in ``JobsCreated`` of 1,000, and every bucket on node 1."""
    from scheduler0.daemon.state import commands as c

    apply(c.ProjectCreated(now=1.0, name="p", description="", signing_secret="s"))
    job = {
        "project_id": 1,
        "spec": spec,
        "timezone": timezone,
        "data": '{"jobId":1}',
        "callback_url": "http://127.0.0.1:9/callback",
        "execution_type": "http",
        "anchor": 1_795_000_000,
    }
    for _ in range(jobs // 1000):
        apply(c.JobsCreated(now=1.0, jobs=[job] * 1000))
    apply(c.AssignmentChanged(now=1.0, epoch=1, owners=[1] * 1024))


def save_checkout_result(bench: str, args: Any, source: str, result: dict[str, Any]) -> None:
    """Write a ``--repo`` bench's result (``--name``, else ``<bench>`` for this
    checkout and ``<bench>_other`` for another) and say where."""
    name = args.name or (bench if args.repo is None else f"{bench}_other")
    path = write_result(
        name,
        {
            "bench": bench,
            "command": f"python bench/{bench}.py " + " ".join(sys.argv[1:]),
            "params": {k: str(v) for k, v in vars(args).items()},
            "checkout": source,
            **result,
        },
    )
    print(f"wrote {path}")


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_info(), **data}, indent=2) + "\n")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def start_receiver(workdir: Path, kind: str = "lean") -> tuple[subprocess.Popen[bytes], str, Path]:
    """A callback receiver in its own process: the lean one, or the test suite's."""
    from tests.support.nodes import free_port, wait_until

    port = free_port()
    out = workdir / "receiver.jsonl"
    log = (workdir / "receiver.log").open("wb")
    if kind == "lean":
        command = [sys.executable, str(REPO_ROOT / "bench" / "lean_receiver.py")]
    else:
        command = [sys.executable, "-m", "tests.support.receiver"]
    command += ["--port", str(port), "--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited: {(workdir / 'receiver.log').read_text()}")
        return httpx.get(f"{url}/stats", timeout=1).status_code == 200

    wait_until(ready, 20, what="receiver ready")
    return proc, url, out


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def node_log_problems(nodes: Any) -> dict[str, Any]:
    """Count (and quote the first) ERROR/WARNING/Traceback lines of each node's log."""
    problems: dict[int, list[str]] = {}
    for node in nodes:
        path = node.workdir / "node.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        problems[node.node_id] = [
            line
            for line in text.splitlines()
            if " ERROR " in line or " WARNING " in line or "Traceback" in line
        ]
    return {
        "node_log_problems": {k: len(v) for k, v in problems.items()},
        "node_log_excerpt": {k: v[:10] for k, v in problems.items() if v},
    }


def lateness_series(
    pairs: list[tuple[int, float]], origin: float | None = None
) -> list[list[float]]:
    """Lateness over time for plotting: ``pairs`` are (slot, lateness seconds)
    of first deliveries; returns one row per slot second,
    ``[seconds since origin, deliveries, p50, p99, max]`` (origin: first slot)."""
    by_slot: dict[int, list[float]] = {}
    for slot, late in pairs:
        by_slot.setdefault(slot, []).append(late)
    if not by_slot:
        return []
    start = min(by_slot) if origin is None else origin
    return [
        [
            round(slot - start, 3),
            len(values),
            round(percentile(values, 50), 4),
            round(percentile(values, 99), 4),
            round(max(values), 4),
        ]
        for slot, values in sorted(by_slot.items())
    ]
