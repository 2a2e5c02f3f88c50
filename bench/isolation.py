"""Bench: containment: a hung receiver and heavy requests must not hurt anyone else.

Scenario A (hung receiver), one node:

* ``--healthy-jobs`` (200) jobs ``@every 1s`` call the lean receiver
  (``bench/lean_receiver.py``); after ``--warmup`` s the node's RSS is read
  (``/proc/<pid>/status`` VmRSS): "RSS at start";
* then ``--hung-jobs`` (2,000) jobs ``@every 1s`` with ``--hung-data-kb`` (20)
  KB of ``data`` each call ``bench/hung_receiver.py`` (accepts, reads, never
  answers), created in batches under the request body cap, and run for
  ``--hung-seconds`` (60) s. Reported: the healthy receiver's deliveries and
  lateness (receive time - slot; the slot is the tail of the execution id) for
  the slots of that window, RSS at start, peak RSS during it, growth;
* then every hung job is paused (``POST /jobs/{id}/pause``, a few at a time)
  and RSS is followed for ``--recover-seconds`` (60) s: RSS at the end of that
  window minus RSS at start, and when it was first back within 50 MB.

RSS is sampled every 0.25 s by a thread of this script. If it exceeds
``--rss-cap-mb`` (4,096) the node is killed at once and the scenario reports
that it was capped (no pause/recovery figures then).

Scenario B (heavy requests), one node:

* ``--every-jobs`` (200) jobs ``@every 1s`` call the lean receiver throughout;
* ``--heavy-jobs`` (10,000) jobs in one other project, a mix of plain specs
  (``m h * * *``, ``m h * * 1-5``, ``m h 1,15 * *``) and nth-weekday specs
  (``m h 29 2 mon#5``), ``--nth-fraction`` (0.5) of them nth-weekday, spread
  over ``--zones`` (7) IANA zones, every (spec, zone) pair distinct; created
  in POSTs of ``--create-batch`` (1,000, what the CLI and the seed client send;
  the API takes up to MaxJobsPerRequest = 10,000);
* a separate process polls ``GET /healthcheck`` every ``--health-interval``
  (20 ms) throughout and records each answer's latency; percentiles are over
  what a client asking every 20 ms would see (a poll stalled for L s also
  stands for the L/0.02 polls it held up: the coordinated-omission correction;
  the raw polls' figures are in the JSON too);
* then the largest page of that project (``GET /jobs?project_id=&limit=``, the
  documented maximum 10,000; a larger limit is tried once and must be refused)
  is listed ``--list-repeats`` (5) times. Reported: create seconds, healthcheck
  p50/p99/max during the create and during the listings, listing seconds
  (median), fire lateness of the ``@every 1s`` jobs throughout.

A slot that was never delivered counts as late by (end of observation - slot),
a lower bound: the lateness percentiles then carry ``>=``.

``--checkout DIR`` runs the nodes from another checkout's venv
(``DIR/.venv/bin/scheduler0``), e.g. the code before the containment work; the
script itself, its helpers and the receivers stay this checkout's. Status
fields that older code lacks are reported ``n/a``.

    python -m bench.isolation --scenario a|b|all --out bench/results/isolation.json \\
        --label after [--checkout /work/wt-before]

Everything is bounded (request timeouts, phase deadlines, the RSS cap) and every
process it starts is stopped. The machine's cores are shared by the node, the
receivers, this script and whatever else runs on it; the load average at the
start and end is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench, tests

from bench import _common as common
from tests.support import nodes as support
from tests.support.nodes import NodeProcess, create_credential, wait_until
from tests.support.ports import free_port

MB = 2**20
BENCH_DIR = Path(__file__).resolve().parent
ZONES = (
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Africa/Lagos",
    "America/Los_Angeles",
    "Asia/Kathmandu",
    "Pacific/Auckland",
)
STATUS_KEYS = (
    "queue_depth",
    "in_flight",
    "fire_lag_p99_seconds",
    "delivery_lag_p50_seconds",
    "delivery_lag_p99_seconds",
    "callback_backlog_bytes",
    "worst_destinations",
    "fired",
    "rejected",
    "results_backlog",
    "jobs_owned",
    "rss_bytes",
    "over_memory",
)


# -- the node's code ------------------------------------------------------------


def use_checkout(checkout: Path | None) -> dict[str, Any]:
    """Point the node helpers at ``checkout``'s scheduler0 (default: this
    interpreter's), and say which code that is."""
    if checkout is not None:
        exe = checkout.resolve() / ".venv" / "bin" / "scheduler0"
        if not exe.exists():
            raise SystemExit(f"{exe} does not exist: make {checkout}'s venv first")
        command = [str(exe)]
        support.scheduler0_command = lambda: list(command)
    command = support.scheduler0_command()
    exe_path = Path(command[0])
    root = checkout.resolve() if checkout is not None else exe_path.parent.parent.parent

    def git(*words: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["git", *words], cwd=root, capture_output=True, text=True, timeout=5
            )
            return out.stdout.strip() or "unknown"
        return "unknown"

    return {
        "command": command,
        "checkout": str(root),
        "git_head": git("rev-parse", "--short", "HEAD"),
        # the last commit that changed the node's code (bench commits do not)
        "node_code_commit": git("log", "-1", "--format=%h", "--", "scheduler0", "pyproject.toml"),
    }


# -- helpers ----------------------------------------------------------------------


def start_hung_receiver(workdir: Path, read: bool) -> tuple[subprocess.Popen[bytes], str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stats = workdir / "hung.json"
    command = [sys.executable, str(BENCH_DIR / "hung_receiver.py"), "--port", str(port)]
    command += ["--stats", str(stats)] + ([] if read else ["--no-read"])
    with (workdir / "hung.log").open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log)

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"hung receiver exited: {(workdir / 'hung.log').read_text()}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return stats.exists()

    wait_until(listening, 20, what="hung receiver listening")
    return proc, f"http://127.0.0.1:{port}", stats


def read_json_file(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def lean_deliveries(out: Path) -> list[tuple[float, str]]:
    """(receive time, execution_id) of every item the lean receiver answered 2xx."""
    deliveries: list[tuple[float, str]] = []
    if not out.exists():
        return deliveries
    data = out.read_bytes()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if line:
            t, status, ids = orjson.loads(line)
            if 200 <= status < 300:
                deliveries.extend((t, eid) for eid in ids if isinstance(eid, str))
    return deliveries


def lateness(
    deliveries: list[tuple[float, str]],
    job_ids: set[int],
    first_slot: int,
    last_slot: int,
    horizon: float,
) -> dict[str, Any]:
    """Lateness of the first delivery of each (job, slot) of ``job_ids`` with
    first_slot <= slot <= last_slot (every job fires every second). A slot never
    delivered counts as late by ``horizon - slot`` (a lower bound)."""
    first: dict[tuple[int, int], float] = {}
    copies = 0
    for t, eid in deliveries:
        job_text, _, slot_text = eid.rpartition("-")
        job, slot = int(job_text), int(slot_text)
        if job not in job_ids or not first_slot <= slot <= last_slot:
            continue
        key = (job, slot)
        if key in first:
            copies += 1
            first[key] = min(first[key], t)
        else:
            first[key] = t
    slots = max(0, last_slot - first_slot + 1)
    expected = len(job_ids) * slots
    values = [t - slot for (_, slot), t in first.items()]
    undelivered = [
        horizon - slot
        for slot in range(first_slot, last_slot + 1)
        for job in job_ids
        if (job, slot) not in first
    ]
    padded = values + undelivered
    p99 = common.percentile(padded, 99) if padded else None
    return {
        "first_slot": first_slot,
        "last_slot": last_slot,
        "slots": slots,
        "expected": expected,
        "delivered": len(first),
        "undelivered": len(undelivered),
        "duplicate_deliveries": copies,
        "p50_seconds": common.percentile(padded, 50) if padded else None,
        "p99_seconds": p99,
        "max_seconds": max(padded) if padded else None,
        "delivered_p50_seconds": common.percentile(values, 50) if values else None,
        "delivered_p99_seconds": common.percentile(values, 99) if values else None,
        # an undelivered slot's lateness is a lower bound: so is a percentile it reaches
        "p50_is_lower_bound": _reaches(len(undelivered), len(padded), 50),
        "p99_is_lower_bound": _reaches(len(undelivered), len(padded), 99),
        "max_is_lower_bound": bool(undelivered),
    }


def _reaches(undelivered: int, n: int, q: float) -> bool:
    """Whether the ``q`` percentile (nearest rank) of ``n`` values falls among the
    ``undelivered`` largest ones."""
    if not undelivered or not n:
        return False
    rank = max(0, min(n - 1, round(q / 100.0 * n + 0.5) - 1))
    return undelivered >= n - rank


def get_status(http: httpx.Client, timeout: float = 10.0) -> dict[str, Any] | None:
    """The node's own ``/status`` figures of :data:`STATUS_KEYS` (missing ones None)."""
    try:
        response = http.get("/status", timeout=timeout)
        node = response.json()["data"]["node"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    out = {key: node.get(key) for key in STATUS_KEYS}
    out["t"] = time.time()
    return out


def failed_executions(http: httpx.Client) -> int | None:
    try:
        response = http.get("/executions", params={"state": "failed", "limit": 1}, timeout=60)
        total: int = response.json()["data"]["total"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return total


def create_project(http: httpx.Client, name: str) -> int:
    response = http.post("/projects", json={"name": name, "description": "isolation bench"})
    response.raise_for_status()
    project_id: int = response.json()["data"]["id"]
    return project_id


def post_jobs(http: httpx.Client, body: bytes, want_ids: bool) -> tuple[float, list[int]]:
    """POST one pre-encoded batch; (seconds, created ids if asked)."""
    started = time.perf_counter()
    response = http.post("/jobs", content=body, headers={"content-type": "application/json"})
    took = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"job creation failed: {response.status_code} {response.text[:300]}")
    ids = [job["id"] for job in response.json()["data"]] if want_ids else []
    return took, ids


def batches(items: list[dict[str, Any]], max_jobs: int, max_bytes: int) -> list[bytes]:
    """Encoded POST bodies of at most ``max_jobs`` items and ``max_bytes`` bytes."""
    bodies: list[bytes] = []
    current: list[bytes] = []
    size = 2
    for item in items:
        encoded = orjson.dumps(item)
        if current and (len(current) >= max_jobs or size + len(encoded) + 1 > max_bytes):
            bodies.append(b"[" + b",".join(current) + b"]")
            current, size = [], 2
        current.append(encoded)
        size += len(encoded) + 1
    if current:
        bodies.append(b"[" + b",".join(current) + b"]")
    return bodies


def every_items(
    project_id: int, n: int, callback: str, data: Any = None, spec: str = "@every 1s"
) -> list[dict[str, Any]]:
    return [
        {
            "spec": spec,
            "project_id": project_id,
            "timezone": "UTC",
            "data": data if data is not None else {"n": i},
            "callback_url": callback,
        }
        for i in range(n)
    ]


def heavy_items(
    project_id: int, n: int, nth_fraction: float, zones: tuple[str, ...], callback: str
) -> list[dict[str, Any]]:
    """``n`` jobs, ``nth_fraction`` of them ``m h 29 2 mon#5``, the others plain
    daily/weekday/twice-monthly specs; (spec, zone) distinct while n/2 <= 1,440 x zones."""
    plain = ("{m} {h} * * *", "{m} {h} * * 1-5", "{m} {h} 1,15 * *")
    items: list[dict[str, Any]] = []
    counts = [0, 0]
    for i in range(n):
        nth = math.floor((i + 1) * nth_fraction) > math.floor(i * nth_fraction)
        k = counts[nth]
        counts[nth] += 1
        zone = zones[k % len(zones)]
        slot = k // len(zones)
        minute, hour = slot % 60, (slot // 60) % 24
        spec = f"{minute} {hour} 29 2 mon#5" if nth else plain[k % 3].format(m=minute, h=hour)
        items.append(
            {
                "spec": spec,
                "project_id": project_id,
                "timezone": zone,
                "data": {"n": i},
                "callback_url": callback,
            }
        )
    return items


class RssSampler:
    """VmRSS of one process every ``interval`` s in a thread; kills the process
    (SIGKILL) the first time it is over ``cap`` bytes."""

    def __init__(self, pid: int, cap: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.cap = cap
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.capped_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = common.proc_status(self.pid).get("VmRSS")
            if rss is None:
                return  # gone
            self.samples.append((time.time(), rss))
            if rss > self.cap and self.capped_at is None:
                self.capped_at = time.time()
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGKILL)
                return
            self._stop.wait(self.interval)

    def now(self) -> int:
        return common.proc_status(self.pid).get("VmRSS", 0)

    def between(self, t0: float, t1: float) -> list[tuple[float, int]]:
        return [(t, rss) for t, rss in self.samples if t0 <= t <= t1]


def _poll_health(url: str, interval: float, timeout: float, out: str, stop: Any) -> None:
    """In its own process: GET ``url`` every ``interval`` s until ``stop`` is set;
    writes ``[[start unix time, seconds, ok], ...]`` to ``out``."""
    samples: list[tuple[float, float, bool]] = []
    with httpx.Client(timeout=timeout) as http:
        while not stop.is_set():
            t0 = time.time()
            p0 = time.perf_counter()
            try:
                ok = http.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            took = time.perf_counter() - p0
            samples.append((t0, took, ok))
            if took < interval:
                stop.wait(interval - took)
    Path(out).write_bytes(orjson.dumps(samples))


@contextlib.contextmanager
def health_poller(
    url: str, interval: float, timeout: float, workdir: Path
) -> Iterator[list[tuple[float, float, bool]]]:
    """Polls the health check from another process (so that this script's own
    work does not delay the polls); the yielded list is filled on exit."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    out = workdir / "health.json"
    proc = ctx.Process(target=_poll_health, args=(url, interval, timeout, str(out), stop))
    proc.start()
    samples: list[tuple[float, float, bool]] = []
    try:
        yield samples
    finally:
        stop.set()
        proc.join(timeout + 10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        loaded = read_json_file(out) or []
        samples.extend((float(t), float(s), bool(ok)) for t, s, ok in loaded)


def health_stats(
    samples: list[tuple[float, float, bool]],
    windows: list[tuple[float, float]],
    interval: float,
) -> dict[str, Any]:
    """Health check latency (ms) inside the windows, as a client asking every
    ``interval`` s would see it: a poll that took L > interval stands for the
    polls that could not be sent meanwhile, each waiting until the same answer
    (L - interval, L - 2 x interval, ...; the coordinated-omission correction),
    so one 30 s stall weighs 30 s, not one poll. ``polls_*`` are the raw polls."""

    def inside(t: float) -> bool:
        return any(a <= t <= b for a, b in windows)

    raw = [s for t, s, _ in samples if inside(t)]
    values: list[float] = []
    for t, took, _ in samples:
        waited, at = took, t
        while True:
            if inside(at):
                values.append(waited)
            waited, at = waited - interval, at + interval
            if waited <= interval:
                break
    failed = sum(1 for t, _, ok in samples if not ok and inside(t))
    return {
        "polls": len(raw),
        "failed": failed,
        "p50_ms": 1000 * common.percentile(values, 50) if values else None,
        "p99_ms": 1000 * common.percentile(values, 99) if values else None,
        "max_ms": 1000 * max(values) if values else None,
        "polls_p50_ms": 1000 * common.percentile(raw, 50) if raw else None,
        "polls_p99_ms": 1000 * common.percentile(raw, 99) if raw else None,
        "stalled_seconds": sum(s for s in raw if s > 0.1),
    }


def node_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--node-env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def node_cpu(node: NodeProcess) -> float:
    return common.cpu_seconds(node.proc.pid) if node.proc is not None else 0.0


def log_excerpt(node: NodeProcess) -> dict[str, Any]:
    problems = common.node_log_problems([node])
    excerpt = problems["node_log_excerpt"].get(node.node_id, [])
    return {
        "node_log_problems": problems["node_log_problems"].get(node.node_id, 0),
        "node_log_excerpt": [line[:400] for line in excerpt],
    }


# -- scenario A ----------------------------------------------------------------------


def scenario_a(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="s0-isolation-a-"))
    node = NodeProcess(workdir / "node", extra_env=node_env(args.node_env))
    healthy: subprocess.Popen[bytes] | None = None
    hung: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"scenario": "a"}
    marks: dict[str, float] = {}
    statuses: list[dict[str, Any] | None] = []
    try:
        (workdir / "healthy").mkdir(parents=True)
        healthy, healthy_url, healthy_out = common.start_receiver(workdir / "healthy", "lean")
        hung, hung_url, hung_stats = start_hung_receiver(workdir / "hung", not args.hung_no_read)
        node.start()
        assert node.proc is not None
        http = httpx.Client(
            base_url=node.api, headers=create_credential(node), timeout=args.request_timeout
        )
        with http, RssSampler(node.proc.pid, args.rss_cap_mb * MB) as rss:
            project = create_project(http, "isolation-a")
            healthy_ids: list[int] = []
            for body in batches(
                every_items(project, args.healthy_jobs, f"{healthy_url}/cb"),
                args.max_batch,
                int(args.max_body_mb * MB * 0.9),
            ):
                healthy_ids += post_jobs(http, body, want_ids=True)[1]
            marks["healthy_created"] = time.time()
            hung_bodies = batches(
                every_items(
                    project,
                    args.hung_jobs,
                    f"{hung_url}/cb",
                    data="x" * (args.hung_data_kb * 1000),
                    spec=args.hung_spec,
                ),
                args.max_batch,
                int(args.max_body_mb * MB * 0.9),
            )
            time.sleep(args.warmup)
            statuses.append(get_status(http))
            start_samples = [r for _, r in rss.between(time.time() - 2, time.time())]
            rss_start = int(common.median([float(r) for r in start_samples])) or rss.now()
            cpu0 = node_cpu(node)
            print(f"  A: {len(healthy_ids)} healthy jobs, RSS at start {rss_start / MB:.0f} MB")

            marks["hung_create_start"] = time.time()
            hung_ids: list[int] = []
            post_seconds: list[float] = []
            for body in hung_bodies:
                took, ids = post_jobs(http, body, want_ids=True)
                post_seconds.append(took)
                hung_ids += ids
            marks["hung_created"] = time.time()
            print(
                f"  A: {len(hung_ids)} hung jobs in {len(hung_bodies)} POSTs,"
                f" {marks['hung_created'] - marks['hung_create_start']:.1f} s",
                flush=True,
            )
            deadline = marks["hung_created"] + args.hung_seconds
            next_status = time.time() + args.status_every
            while time.time() < deadline and rss.capped_at is None and node.proc.poll() is None:
                time.sleep(0.25)
                if time.time() >= next_status:
                    statuses.append(get_status(http, timeout=min(10.0, args.status_every)))
                    next_status = time.time() + args.status_every
            marks["hung_end"] = time.time()
            cpu1 = node_cpu(node)
            hung_rss = rss.between(marks["hung_create_start"], marks["hung_end"])
            peak = max((r for _, r in hung_rss), default=0)
            result.update(
                {
                    "rss_start_bytes": rss_start,
                    "rss_peak_bytes": peak,
                    "rss_growth_bytes": peak - rss_start,
                    "capped": rss.capped_at is not None,
                    "capped_after_seconds": (
                        rss.capped_at - marks["hung_created"] if rss.capped_at else None
                    ),
                    "hung_create_seconds": marks["hung_created"] - marks["hung_create_start"],
                    "hung_post_seconds": post_seconds,
                    "node_cpu_percent_hung": 100
                    * (cpu1 - cpu0)
                    / max(1e-9, marks["hung_end"] - marks["hung_create_start"]),
                    "status_before_hung": statuses[0],
                    "status_end_of_hung": statuses[-1] if len(statuses) > 1 else None,
                    "failed_executions_end_of_hung": None,
                }
            )
            print(
                f"  A: hung window over: RSS peak {peak / MB:.0f} MB"
                + (" (CAPPED: node killed)" if rss.capped_at else ""),
                flush=True,
            )
            alive = node.proc.poll() is None
            if alive:
                result["failed_executions_end_of_hung"] = failed_executions(http)
                pause = pause_all(http, hung_ids, args)
                marks["paused"] = time.time()
                result["pause"] = pause
                print(
                    f"  A: paused {pause['paused']}/{len(hung_ids)} in {pause['seconds']:.1f} s",
                    flush=True,
                )
                recover_end = marks["paused"] + args.recover_seconds
                next_status = time.time()
                while time.time() < recover_end and node.proc.poll() is None:
                    if time.time() >= next_status:
                        statuses.append(get_status(http, timeout=min(10.0, args.status_every)))
                        next_status = time.time() + args.status_every
                    time.sleep(0.25)
                marks["recover_end"] = time.time()
                after = rss.between(marks["paused"], marks["recover_end"])
                back = next(
                    (t - marks["paused"] for t, r in after if r <= rss_start + 50 * MB), None
                )
                result.update(
                    {
                        "rss_after_recover_bytes": after[-1][1] if after else rss.now(),
                        "rss_after_recover_minus_start_bytes": (
                            (after[-1][1] if after else rss.now()) - rss_start
                        ),
                        "rss_min_after_pause_bytes": min((r for _, r in after), default=None),
                        "rss_first_back_within_50mb_seconds": back,
                        "recover_seconds": marks["recover_end"] - marks["paused"],
                        "recover_window_seconds": args.recover_seconds,
                        "status_after_recover": statuses[-1],
                    }
                )
                print(
                    f"  A: RSS {args.recover_seconds:g} s after pausing "
                    f"{result['rss_after_recover_bytes'] / MB:.0f} MB",
                    flush=True,
                )
            time.sleep(args.drain)
            horizon = time.time()
            result["rss_series"] = [
                [round(t - marks["hung_create_start"], 2), round(r / MB, 1)] for t, r in rss.samples
            ]
        result["statuses"] = statuses
    finally:
        node.kill()
        common.stop(healthy)
        common.stop(hung)
    deliveries = lean_deliveries(healthy_out)
    healthy_set = set(healthy_ids)

    def window(a: float, b: float) -> dict[str, Any]:
        return lateness(deliveries, healthy_set, math.ceil(a), math.floor(b) - 1, horizon)

    result["healthy_jobs"] = len(healthy_set)
    result["hung_jobs"] = len(hung_ids)
    result["healthy_baseline"] = window(marks["healthy_created"] + 2, marks["hung_create_start"])
    result["healthy_during_hung"] = window(marks["hung_create_start"], marks["hung_end"])
    if "recover_end" in marks:
        result["healthy_after_pause"] = window(marks["paused"], marks["recover_end"])
    result["hung_receiver"] = read_json_file(hung_stats)
    result["marks"] = marks
    result.update(log_excerpt(node))
    if args.keep:
        print(f"  kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def pause_all(http: httpx.Client, job_ids: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """POST /jobs/{id}/pause for every id, ``--pause-concurrency`` at a time,
    none started after ``--pause-timeout`` s."""
    started = time.time()
    deadline = started + args.pause_timeout
    latencies: list[float] = []
    failures: list[str] = []
    skipped = 0
    lock = threading.Lock()

    def pause(job_id: int) -> None:
        nonlocal skipped
        if time.time() > deadline:
            with lock:
                skipped += 1
            return
        t0 = time.perf_counter()
        try:
            response = http.post(f"/jobs/{job_id}/pause")
            ok = response.status_code == 200
            detail = f"{response.status_code} {response.text[:120]}"
        except httpx.HTTPError as exc:
            ok, detail = False, repr(exc)
        with lock:
            latencies.append(time.perf_counter() - t0)
            if not ok:
                failures.append(detail)

    with ThreadPoolExecutor(args.pause_concurrency) as pool:
        list(pool.map(pause, job_ids))
    return {
        "seconds": time.time() - started,
        "paused": len(latencies) - len(failures),
        "failed": len(failures),
        "failures_excerpt": failures[:5],
        "skipped_after_deadline": skipped,
        "post_p50_seconds": common.percentile(latencies, 50) if latencies else None,
        "post_p99_seconds": common.percentile(latencies, 99) if latencies else None,
    }


# -- scenario B ----------------------------------------------------------------------


def scenario_b(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="s0-isolation-b-"))
    node = NodeProcess(workdir / "node", extra_env=node_env(args.node_env))
    receiver: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"scenario": "b"}
    marks: dict[str, float] = {}
    listings: list[dict[str, Any]] = []
    health: list[tuple[float, float, bool]] = []
    try:
        (workdir / "receiver").mkdir(parents=True)
        receiver, receiver_url, out = common.start_receiver(workdir / "receiver", "lean")
        node.start()
        assert node.proc is not None
        http = httpx.Client(
            base_url=node.api, headers=create_credential(node), timeout=args.request_timeout
        )
        with http:
            every_project = create_project(http, "isolation-b-every")
            heavy_project = create_project(http, "isolation-b-heavy")
            every_ids: list[int] = []
            max_bytes = int(args.max_body_mb * MB * 0.9)
            for body in batches(
                every_items(every_project, args.every_jobs, f"{receiver_url}/cb"),
                args.max_batch,
                max_bytes,
            ):
                every_ids += post_jobs(http, body, want_ids=True)[1]
            marks["every_created"] = time.time()
            zones = ZONES[: args.zones]
            bodies = batches(
                heavy_items(
                    heavy_project,
                    args.heavy_jobs,
                    args.nth_fraction,
                    zones,
                    f"{receiver_url}/heavy",
                ),
                min(args.create_batch, args.max_batch),
                max_bytes,
            )
            with health_poller(
                f"{node.api}/healthcheck", args.health_interval, args.request_timeout, workdir
            ) as health:
                time.sleep(args.warmup)
                cpu0 = node_cpu(node)
                marks["create_start"] = time.time()
                posts: list[tuple[float, float]] = []
                for body in bodies:
                    t0 = time.time()
                    post_jobs(http, body, want_ids=False)
                    posts.append((t0, time.time()))
                marks["create_end"] = time.time()
                cpu1 = node_cpu(node)
                print(
                    f"  B: {args.heavy_jobs} jobs in {len(bodies)} POSTs,"
                    f" {marks['create_end'] - marks['create_start']:.2f} s",
                    flush=True,
                )
                time.sleep(args.settle)
                probe = http.get(
                    "/jobs",
                    params={"project_id": heavy_project, "limit": args.max_page + 1},
                )
                result["limit_probe"] = {
                    "limit": args.max_page + 1,
                    "status": probe.status_code,
                    "refused": probe.status_code in (400, 413, 422),
                }
                page = args.max_page
                marks["list_start"] = time.time()
                for _ in range(args.list_repeats):
                    t0 = time.time()
                    p0 = time.perf_counter()
                    response = http.get(
                        "/jobs", params={"project_id": heavy_project, "limit": page}
                    )
                    took = time.perf_counter() - p0
                    t1 = time.time()
                    count = (
                        len(response.json()["data"]["jobs"])
                        if response.status_code == 200
                        else None
                    )
                    listings.append(
                        {
                            "t0": t0,
                            "t1": t1,
                            "seconds": took,
                            "status": response.status_code,
                            "jobs": count,
                            "bytes": len(response.content),
                        }
                    )
                    print(f"  B: listed {count} jobs in {took:.3f} s", flush=True)
                    time.sleep(args.list_gap)
                marks["list_end"] = time.time()
                cpu2 = node_cpu(node)
                status = get_status(http, timeout=30)
                time.sleep(args.tail)
                marks["end"] = time.time()
            time.sleep(args.drain)
            horizon = time.time()
    finally:
        node.kill()
        common.stop(receiver)
    deliveries = lean_deliveries(out)
    ids = set(every_ids)

    def fires(a: float, b: float) -> dict[str, Any]:
        return lateness(deliveries, ids, math.ceil(a), math.floor(b) - 1, horizon)

    list_windows = [(entry["t0"], entry["t1"]) for entry in listings]
    seconds = [entry["seconds"] for entry in listings if entry["status"] == 200]
    result.update(
        {
            "every_jobs": len(ids),
            "heavy_jobs": args.heavy_jobs,
            "zones": list(zones),
            "create_batch": min(args.create_batch, args.max_batch),
            "create_posts": len(bodies),
            "create_seconds": marks["create_end"] - marks["create_start"],
            "create_post_seconds": [b - a for a, b in posts],
            # when each POST started and ended, and every health check over 100 ms,
            # in seconds since the create started: where the stalls fall
            "create_posts_timeline": [
                [round(a - marks["create_start"], 3), round(b - marks["create_start"], 3)]
                for a, b in posts
            ],
            "health_slow": [
                [round(t - marks["create_start"], 3), round(1000 * took, 1)]
                for t, took, _ in health
                if took > 0.1
            ],
            "node_cpu_seconds_create": cpu1 - cpu0,
            "node_cpu_seconds_listing": cpu2 - cpu1,
            "page_limit": page,
            "listings": listings,
            "list_median_seconds": common.median(seconds) if seconds else None,
            "list_min_seconds": min(seconds) if seconds else None,
            "list_max_seconds": max(seconds) if seconds else None,
            "health_baseline": health_stats(
                health, [(marks["every_created"], marks["create_start"])], args.health_interval
            ),
            "health_create": health_stats(
                health, [(marks["create_start"], marks["create_end"])], args.health_interval
            ),
            "health_listing": health_stats(health, list_windows, args.health_interval),
            "fires_throughout": fires(marks["every_created"] + 3, marks["end"]),
            "fires_during_create": fires(marks["create_start"], marks["create_end"] + 1),
            "fires_during_listing": fires(marks["list_start"], marks["list_end"] + 1),
            "status_end": status,
            "marks": marks,
            **log_excerpt(node),
        }
    )
    if args.keep:
        print(f"  kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- report ---------------------------------------------------------------------------


def _late(figures: dict[str, Any] | None, key: str) -> str:
    if not figures or figures.get(key) is None:
        return "n/a"
    undelivered, expected = figures.get("undelivered", 0), figures.get("expected", 0)
    q = {"p50_seconds": 50.0, "p99_seconds": 99.0}.get(key, 100.0)
    if _reaches(undelivered, expected, q):
        # the percentile falls on slots that never arrived: no number to give
        return f"undelivered ({undelivered:,} of {expected:,} slots never arrived)"
    return f"{figures[key]:.3f} s"


def _late_delivered(figures: dict[str, Any] | None) -> str:
    value = (figures or {}).get("delivered_p99_seconds")
    return "n/a" if value is None else f"{value:.3f} s"


def _mb(value: Any) -> str:
    return "n/a" if value is None else f"{value / MB:,.0f} MB"


def _ms(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def rows_a(a: dict[str, Any]) -> list[list[str]]:
    hung = a.get("healthy_during_hung") or {}
    p99 = hung.get("p99_seconds")
    growth = a.get("rss_growth_bytes")
    recovered = a.get("rss_after_recover_minus_start_bytes")
    back = a.get("rss_first_back_within_50mb_seconds")
    capped = " (capped: node killed over the RSS cap)" if a.get("capped") else ""
    return [
        [
            "A healthy deliveries during hung window",
            "all",
            f"{hung.get('delivered', 0):,} / {hung.get('expected', 0):,}",
            _met(bool(hung) and hung.get("undelivered") == 0),
        ],
        ["A healthy lateness p50", "", _late(hung, "p50_seconds"), ""],
        [
            "A healthy lateness p99",
            "<= 1 s",
            _late(hung, "p99_seconds"),
            _met(None if p99 is None else p99 <= 1.0),
        ],
        ["A healthy lateness max", "", _late(hung, "max_seconds"), ""],
        ["A healthy lateness p99 of the delivered", "", _late_delivered(hung), ""],
        ["A RSS at start", "", _mb(a.get("rss_start_bytes")), ""],
        ["A RSS peak during hung window", "", _mb(a.get("rss_peak_bytes")) + capped, ""],
        [
            "A RSS growth",
            "<= 150 MB",
            _mb(growth),
            _met(None if growth is None else growth <= 150 * MB and not a.get("capped")),
        ],
        [
            "A RSS after pausing - start",
            f"<= 50 MB at +{a.get('recover_window_seconds', 60):g} s",
            _mb(recovered) if recovered is not None else "n/a" + capped,
            _met(None if recovered is None else recovered <= 50 * MB),
        ],
        [
            "A first back within 50 MB after pausing",
            f"<= {a.get('recover_window_seconds', 60):g} s",
            "never"
            if back is None and recovered is not None
            else ("n/a" if back is None else f"{back:.1f} s"),
            _met(None if recovered is None else back is not None),
        ],
    ]


def rows_b(b: dict[str, Any]) -> list[list[str]]:
    create = b.get("health_create") or {}
    listing = b.get("health_listing") or {}
    fires = b.get("fires_throughout") or {}
    median = b.get("list_median_seconds")
    p99_fire = fires.get("p99_seconds")
    return [
        [
            "B create the heavy jobs",
            "",
            f"{b['create_seconds']:.2f} s ({b.get('heavy_jobs', 0):,} in"
            f" {b.get('create_posts')} POSTs)"
            if "create_seconds" in b
            else "n/a",
            "",
        ],
        ["B healthcheck p50 during create", "", _ms(create.get("p50_ms")), ""],
        [
            "B healthcheck p99 during create",
            "<= 100 ms",
            _ms(create.get("p99_ms")),
            _met(None if create.get("p99_ms") is None else create["p99_ms"] <= 100),
        ],
        ["B healthcheck max during create", "", _ms(create.get("max_ms")), ""],
        [
            f"B list a page of {b.get('page_limit', 0):,} (median of {len(b.get('listings', []))})",
            "<= 0.3 s",
            "n/a" if median is None else f"{median:.3f} s",
            _met(None if median is None else median <= 0.3),
        ],
        [
            "B healthcheck p99 during listing",
            "<= 100 ms",
            _ms(listing.get("p99_ms")),
            _met(None if listing.get("p99_ms") is None else listing["p99_ms"] <= 100),
        ],
        ["B healthcheck max during listing", "", _ms(listing.get("max_ms")), ""],
        [
            "B fire lateness p99 throughout",
            "<= 1 s",
            _late(fires, "p99_seconds"),
            _met(None if p99_fire is None else p99_fire <= 1.0),
        ],
        [
            "B fires delivered throughout",
            "all",
            f"{fires.get('delivered', 0):,} / {fires.get('expected', 0):,}",
            _met(bool(fires) and fires.get("undelivered") == 0),
        ],
        ["B fire lateness p99 of the delivered", "", _late_delivered(fires), ""],
        *[
            [
                f"B fire lateness p99 during {phase}",
                "<= 1 s",
                _late(b.get(f"fires_during_{phase}"), "p99_seconds"),
                _met(_p99_ok(b.get(f"fires_during_{phase}"))),
            ]
            for phase in ("create", "listing")
        ],
    ]


def _p99_ok(figures: dict[str, Any] | None) -> bool | None:
    value = (figures or {}).get("p99_seconds")
    return None if value is None else value <= 1.0


def table_rows(document: dict[str, Any]) -> list[list[str]]:
    scenarios = document.get("scenarios", {})
    rows: list[list[str]] = []
    if "a" in scenarios:
        rows += rows_a(scenarios["a"])
    if "b" in scenarios:
        rows += rows_b(scenarios["b"])
    return rows


def _code_commit(document: dict[str, Any]) -> str:
    code = document.get("node_code", {})
    return str(code.get("node_code_commit") or code.get("git_head") or "?")


def compare(paths: list[Path]) -> str:
    """A markdown table: figure, target, then each file's measured value (met)."""
    documents = [orjson.loads(path.read_bytes()) for path in paths]
    columns = [
        f"{d.get('label', path.stem)} (`{_code_commit(d)}`)"
        for d, path in zip(documents, paths, strict=True)
    ]
    figures: dict[str, dict[int, list[str]]] = {}
    targets: dict[str, str] = {}
    for n, document in enumerate(documents):
        for figure, target, measured, met in table_rows(document):
            key = figure.split(" (median")[0]
            targets[key] = targets.get(key) or target  # the first file's, if it has one
            figures.setdefault(key, {})[n] = [measured, met]
    lines = [
        "| figure | target | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for key, by_doc in figures.items():
        cells = []
        for n in range(len(documents)):
            measured, met = by_doc.get(n, ["n/a", ""])
            mark = {"yes": " ✓", "NO": " ✗"}.get(met, "")
            cells.append(measured.replace("|", "/") + mark)
        lines.append(f"| {key} | {targets[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scenario", choices=("a", "b", "all"), default="all")
    parser.add_argument("--out", type=Path, default=Path("bench/results/isolation.json"))
    parser.add_argument("--label", default="after")
    parser.add_argument(
        "--checkout", type=Path, default=None, help="run the nodes from DIR/.venv/bin/scheduler0"
    )
    parser.add_argument(
        "--node-env", action="append", default=[], help="KEY=VALUE for the node (repeatable)"
    )
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--status-every", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=10_000, help="the API's MaxJobsPerRequest")
    parser.add_argument("--max-body-mb", type=float, default=16.0, help="MaxRequestBodyMb")
    parser.add_argument("--keep", action="store_true", help="keep the node work dirs")
    # A
    parser.add_argument("--healthy-jobs", type=int, default=200)
    parser.add_argument("--hung-jobs", type=int, default=2000)
    parser.add_argument("--hung-data-kb", type=int, default=20)
    parser.add_argument("--hung-seconds", type=float, default=60.0)
    parser.add_argument(
        "--hung-spec",
        default="@every 1s",
        help="the hung jobs' spec (a control run: '@every 1h', created but not firing)",
    )
    parser.add_argument("--hung-no-read", action="store_true", help="the hung receiver never reads")
    parser.add_argument("--recover-seconds", type=float, default=60.0)
    parser.add_argument("--rss-cap-mb", type=int, default=4096)
    parser.add_argument("--pause-concurrency", type=int, default=8)
    parser.add_argument("--pause-timeout", type=float, default=300.0)
    # B
    parser.add_argument("--every-jobs", type=int, default=200)
    parser.add_argument("--heavy-jobs", type=int, default=10_000)
    parser.add_argument("--nth-fraction", type=float, default=0.5)
    parser.add_argument("--zones", type=int, default=7, choices=range(1, len(ZONES) + 1))
    parser.add_argument("--create-batch", type=int, default=1000)
    parser.add_argument("--max-page", type=int, default=10_000, help="documented max /jobs limit")
    parser.add_argument("--list-repeats", type=int, default=5)
    parser.add_argument("--list-gap", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--tail", type=float, default=3.0)
    parser.add_argument("--health-interval", type=float, default=0.02)
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="print a markdown table of these result files side by side, run nothing",
    )
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(args.compare))
        return 0

    code = use_checkout(args.checkout)
    print(
        f"nodes run {code['command'][0]} ({code['checkout']} at {code['git_head']},"
        f" node code last changed in {code['node_code_commit']})"
    )
    load_start = os.getloadavg()
    scenarios: dict[str, Any] = {}
    if args.scenario in ("a", "all"):
        print("scenario A: hung receiver ...", flush=True)
        scenarios["a"] = scenario_a(args)
    if args.scenario in ("b", "all"):
        print("scenario B: heavy requests ...", flush=True)
        scenarios["b"] = scenario_b(args)
    rows = table_rows({"scenarios": scenarios})
    load_end = os.getloadavg()
    print()
    print(f"isolation, {args.label}: node code {code['node_code_commit']}")
    print(common.table(["figure", "target", "measured", "met"], rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    document = {
        "machine": common.machine_info(),
        "bench": "isolation",
        "label": args.label,
        "command": "python -m bench.isolation " + " ".join(sys.argv[1:]),
        "node_code": code,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "params": params,
        "table": [dict(zip(("figure", "target", "measured", "met"), r, strict=True)) for r in rows],
        "scenarios": scenarios,
    }
    args.out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
