"""Run the original README's Node.js client (``index.js``, verbatim) against a real node.

    python bench/seed_client/run.py [--after-created 150] [--timeout 420]

1. Checks that ``node``/``npm`` exist, that ``node_modules`` is installed here
   (otherwise runs ``npm install --no-audit --no-fund``), and that ports 9091
   (the client's API) and 3000 (the client's callback server) are free; it
   fails clearly when they are not (it never kills anything it did not start).
2. Starts one node with its HTTP port on 9091 in a temp dir and creates a
   credential with the real CLI (``scheduler0 create credential``).
3. Runs ``node index.js`` with API_ENDPOINT=http://127.0.0.1:9091/api/v1,
   API_KEY, API_SECRET; the client creates a project and 100,000 jobs
   ``@every 1m`` (100 POSTs of 1,000) with callback http://localhost:3000/callback,
   and prints ``hits.size, hitCounts, min, max`` after every callback POST.
4. Waits (bounded by ``--timeout``) until the client printed "app listening"
   (all POSTs done), the node counts 100,000 jobs, and every job was hit once;
   then keeps running until ``--after-created`` seconds after the jobs were
   created (default 150: every job fires twice, at +60 s and +120 s).
5. Reports what the client printed last, timings, the node's /status, and
   writes ``bench/results/seed_client.json``. Kills everything in ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from tests.support.nodes import NodeProcess, create_credential, free_port  # noqa: E402

API_PORT = 9091
CLIENT_PORT = 3000
JOBS = 100_000
LINE = re.compile(r"^(\d+) Map\(\d+\) \{(.*)\} (-?\w+) (-?\w+)$")


class SeedClientError(RuntimeError):
    pass


def port_in_use(port: int) -> bool:
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return True
    return False


def holder(port: int) -> str:
    try:
        out = subprocess.run(
            ["ss", "-ltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip()


def check_ports() -> None:
    busy = [p for p in (API_PORT, CLIENT_PORT) if port_in_use(p)]
    if busy:
        raise SeedClientError(
            "ports needed by the seed client are taken; free them first: "
            + "; ".join(f"{p}: {holder(p)}" for p in busy)
        )


def ensure_node_modules(client_dir: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SeedClientError("node/npm not found on PATH")
    if not (client_dir / "node_modules" / "express").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"],
            cwd=client_dir,
            check=True,
            timeout=300,
        )


def parse_line(line: str) -> dict[str, Any] | None:
    """``100000 Map(1) { 1 => 100000 } 1 1`` -> {size, hit_counts, min, max}."""
    m = LINE.match(line.strip())
    if not m:
        return None
    counts: dict[int, int] = {}
    for part in m.group(2).split(","):
        if "=>" in part:
            k, v = part.split("=>")
            counts[int(k.strip())] = int(v.strip())
    return {
        "size": int(m.group(1)),
        "hit_counts": counts,
        "min": int(m.group(3)) if m.group(3).lstrip("-").isdigit() else m.group(3),
        "max": int(m.group(4)) if m.group(4).lstrip("-").isdigit() else m.group(4),
    }


@dataclass
class ClientOutput:
    """The client's stdout, read by a thread, with receive times."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    listening_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pump(self, stream: Any, sink: Any) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode(errors="replace").rstrip("\n")
            now = time.time()
            sink.write(f"{now:.3f} {text}\n")
            sink.flush()
            with self.lock:
                self.lines.append((now, text))
                if text.startswith("app listening") and self.listening_at is None:
                    self.listening_at = now

    def parsed(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            lines = list(self.lines)
        out = []
        for t, text in lines:
            p = parse_line(text)
            if p is not None:
                out.append((t, p))
        return out

    def last(self) -> tuple[float, dict[str, Any]] | None:
        parsed = self.parsed()
        return parsed[-1] if parsed else None


def run_seed_client(
    client_dir: Path,
    workdir: Path,
    *,
    after_created: float = 150.0,
    timeout: float = 420.0,
    stop_when_all_hit_once: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run it all; return the summary (raises SeedClientError on setup failure)."""
    ensure_node_modules(client_dir)
    check_ports()
    workdir.mkdir(parents=True, exist_ok=True)
    node = NodeProcess(workdir / "node", port=API_PORT, raft_port=free_port())
    client: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None
    sink: Any = None
    output = ClientOutput()
    started = time.time()
    status: dict[str, Any] = {}
    timeline: list[dict[str, Any]] = []
    try:
        node.start()
        headers = create_credential(node)
        env = dict(os.environ)
        env.update(
            {
                "API_ENDPOINT": f"http://127.0.0.1:{API_PORT}/api/v1",
                "API_KEY": headers["x-api-key"],
                "API_SECRET": headers["x-secret-key"],
            }
        )
        stderr_log = (workdir / "client.stderr").open("wb")
        client = subprocess.Popen(
            ["node", "index.js"],
            cwd=client_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr_log,
        )
        stderr_log.close()
        client_started = time.time()
        sink = (workdir / "client.stdout").open("w")
        pump = threading.Thread(target=output.pump, args=(client.stdout, sink), daemon=True)
        pump.start()
        deadline = client_started + timeout
        all_hit_once_at: float | None = None
        jobs_counted_at: float | None = None
        last_print = 0.0
        status_failures = 0
        with httpx.Client(base_url=node.api, headers=headers, timeout=10.0) as http:
            while time.time() < deadline:
                if client.poll() is not None:
                    raise SeedClientError(
                        f"node index.js exited with {client.returncode}: "
                        + (workdir / "client.stderr").read_text(errors="replace")[-2000:]
                    )
                if node.proc is not None and node.proc.poll() is not None:
                    raise SeedClientError(f"scheduler0 node exited: {node.log_tail()}")
                asked = time.time()
                try:
                    status = http.get("/status").json()["data"]["node"]
                    status_ok = True
                except (httpx.HTTPError, ValueError, KeyError):
                    status = status or {}  # keep the last answer; flagged stale below
                    status_ok = False
                status_seconds = time.time() - asked
                if not status_ok:
                    status_failures += 1
                now = time.time()
                jobs = status.get("counts", {}).get("jobs", 0)
                if jobs >= JOBS and jobs_counted_at is None:
                    jobs_counted_at = now
                last = output.last()
                if last and last[1]["size"] >= JOBS and all_hit_once_at is None:
                    all_hit_once_at = last[0]
                if now - last_print >= 10:
                    last_print = now
                    entry = {
                        "t": round(now - client_started, 1),
                        "status_ok": status_ok,
                        "status_seconds": round(status_seconds, 3),
                        "jobs": jobs,
                        "fired": status.get("fired"),
                        "executions": status.get("counts", {}).get("executions"),
                        "queue_depth": status.get("queue_depth"),
                        "client_last": last[1] if last else None,
                    }
                    timeline.append(entry)
                    if progress:
                        print(json.dumps(entry), flush=True)
                created = output.listening_at
                if (
                    created is not None
                    and all_hit_once_at is not None
                    and (stop_when_all_hit_once or now >= created + after_created)
                ):
                    break
                time.sleep(1.0)
            else:
                raise SeedClientError(
                    f"timed out after {timeout}s: listening={output.listening_at} "
                    f"jobs={status.get('counts')} last={output.last()}"
                )
            status = http.get("/status").json()["data"]["node"]
        # Let a callback POST that is being printed finish printing.
        time.sleep(1.0)
    finally:
        if client is not None and client.poll() is None:
            client.terminate()
            try:
                client.wait(timeout=5)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait(timeout=5)
        if pump is not None:
            pump.join(timeout=5)
        if sink is not None:
            sink.close()
        if client is not None and client.stdout is not None:
            client.stdout.close()
        node.kill()
    parsed = output.parsed()
    last = parsed[-1] if parsed else None
    log_text = (workdir / "node" / "node.log").read_text(errors="replace")
    problems = [
        line
        for line in log_text.splitlines()
        if " ERROR " in line or " WARNING " in line or "Traceback" in line
    ]
    listening = output.listening_at
    summary = {
        "jobs_expected": JOBS,
        "client_create_seconds": (listening - client_started) if listening else None,
        "first_callback_after_created_seconds": (
            parsed[0][0] - listening if parsed and listening else None
        ),
        "all_hit_once_after_created_seconds": (
            all_hit_once_at - listening if all_hit_once_at and listening else None
        ),
        "ran_after_created_seconds": (time.time() - listening) if listening else None,
        "callback_lines": len(parsed),
        "last_line": last[1] if last else None,
        "last_line_raw": next(
            (text for _, text in reversed(output.lines) if parse_line(text)), None
        ),
        "stdout_other_lines": [t for _, t in output.lines if not parse_line(t)][:5],
        "node_status": {
            k: status.get(k)
            for k in (
                "fired",
                "rejected",
                "queue_depth",
                "in_flight",
                "fire_lag_p99_seconds",
                "results_backlog",
                "counts",
                "rss_bytes",
            )
        },
        "node_log_problems": len(problems),
        "node_log_problem_excerpt": problems[:10],
        "status_poll_failures": status_failures,
        "callback_line_times_after_created": [
            [round(t - listening, 1), p["size"], p["min"], p["max"]] for t, p in parsed
        ]
        if listening
        else [],
        "timeline": timeline,
        "total_seconds": time.time() - started,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--after-created",
        type=float,
        default=150.0,
        help="keep running this long after the client created its jobs",
    )
    parser.add_argument("--timeout", type=float, default=420.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp work dir")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="s0-seed-client-"))
    try:
        summary = run_seed_client(
            HERE, workdir, after_created=args.after_created, timeout=args.timeout
        )
    except SeedClientError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        print(f"work dir kept: {workdir}", file=sys.stderr)
        return 2
    last = summary["last_line"] or {}
    rows = [
        ("client created 100k jobs in (s)", summary["client_create_seconds"]),
        ("first callback after creation (s)", summary["first_callback_after_created_seconds"]),
        ("all 100k hit once after creation (s)", summary["all_hit_once_after_created_seconds"]),
        ("ran after creation (s)", summary["ran_after_created_seconds"]),
        ("callback POSTs printed", summary["callback_lines"]),
        ("hits.size", last.get("size")),
        ("hitCounts", last.get("hit_counts")),
        ("min / max", f"{last.get('min')} / {last.get('max')}"),
        ("last line (raw)", summary["last_line_raw"]),
        (
            "node fired / rejected",
            f"{summary['node_status']['fired']} / {summary['node_status']['rejected']}",
        ),
        ("node counts", summary["node_status"]["counts"]),
        ("node log warnings/errors", summary["node_log_problems"]),
        ("/status polls that failed (10 s timeout)", summary["status_poll_failures"]),
        (
            "callback lines [s after creation, size, min, max]",
            summary["callback_line_times_after_created"],
        ),
    ]
    print()
    for k, v in rows:
        print(f"{k:40s} {v}")
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import _common as common

    path = common.write_result(
        "seed_client",
        {
            "bench": "seed_client",
            "command": "python bench/seed_client/run.py " + " ".join(sys.argv[1:]),
            "params": vars(args),
            **summary,
        },
    )
    print(f"\nwrote {path}")
    if args.keep:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = last.get("size") == JOBS and isinstance(last.get("min"), int) and last["min"] >= 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
