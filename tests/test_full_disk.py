"""A full disk stops one node cleanly, never the cluster and never silently.

A 3-node cluster whose node 2 keeps its data on a 4 MB tmpfs. Jobs with large
payloads are written through node 2 and through another node until node 2's
disk is full. No write may be answered 500; node 2 must stop with one clear
CRITICAL line and exit status 75 (never SIGBUS from the raft journal's mmap);
the other two go on. With room again, node 2 restarts, rebuilds from its
snapshot and journal, and its state digest and job set equal the others'.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.nodes import (
    Client,
    Cluster,
    NodeProcess,
    create_credential,
    operator_headers,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

HALTED_EXIT_CODE = 75
PAYLOAD = "x" * 4000


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def status(node: NodeProcess) -> dict[str, Any]:
    response = httpx.get(
        f"{node.api}/peer/status",
        auth=("operator", "test-password"),
        headers={"x-peer": "peer"},
        timeout=5,
    )
    data: dict[str, Any] = response.json()["data"]
    return data


def job_ids(node: NodeProcess, headers: dict[str, str]) -> list[int]:
    response = httpx.get(f"{node.api}/jobs", params={"limit": 10000}, headers=headers, timeout=30)
    return [job["id"] for job in response.json()["data"]["jobs"]]


def test_a_full_disk_stops_one_node_cleanly_and_it_converges_after_a_restart(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, 3)
    full = cluster.by_id(2)
    full.extra_env["SCHEDULER0_MIN_FREE_DISK_MB"] = "1"
    with small_tmpfs(full.workdir / "data", "4m") as disk:
        try:
            cluster.start()
            leader = cluster.wait_leader()
            headers = create_credential(leader)
            client = Client(leader.api, headers)
            project = client.data("POST", "/projects", 201, json={"name": "disk"})
            client.close()
            batch = [
                {
                    "project_id": project["id"],
                    "spec": "0 0 1 1 *",  # never due during the test: a quiet state
                    "callback_url": "http://127.0.0.1:9/cb",
                    "data": PAYLOAD,
                }
                for _ in range(100)
            ]
            answers: Counter[tuple[int, int]] = Counter()
            other = next(n for n in cluster.nodes if n is not full)

            def filled() -> bool:
                for node in (full, other):
                    if node is full and full.proc is not None and full.proc.poll() is not None:
                        continue
                    try:
                        code = httpx.post(
                            f"{node.api}/jobs", json=batch, headers=headers, timeout=30
                        ).status_code
                    except httpx.TransportError:
                        code = 0  # the node went away mid-request
                    answers[(node.node_id, code)] += 1
                return full.proc is not None and full.proc.poll() is not None

            wait_until(filled, timeout=120, interval=0.0, what="node 2's disk to fill up")
            assert full.proc is not None
            assert full.proc.returncode == HALTED_EXIT_CODE, (full.proc.returncode, answers)
            assert not [key for key in answers if key[1] >= 500 and key[1] != 503], answers
            assert answers[(other.node_id, 201)] > 0, answers
            log = (full.workdir / "node.log").read_text()
            critical = [line for line in log.splitlines() if "CRITICAL" in line]
            assert len(critical) == 1, critical or log[-3000:]  # the cause, once
            assert any(
                "stops applying" in line or "journal cannot grow" in line for line in critical
            ), critical

            # The other two go on taking writes.
            survivors = [n for n in cluster.nodes if n is not full]
            client = Client(survivors[0].api, headers)
            client.data("POST", "/jobs", 201, json=batch[:1])
            client.close()

            # With room again, node 2 rebuilds and converges.
            subprocess.run(["mount", "-o", "remount,size=512m", str(disk)], check=True)
            full.start()

            def converged() -> bool:
                digests = [status(n)["state_digest"] for n in cluster.nodes]
                return all(d == digests[0] for d in digests) and digests[0]["index"] > 0

            wait_until(converged, timeout=60, what="equal state digests on all three nodes")
            sets = [job_ids(n, headers) for n in cluster.nodes]
            assert sets[0] and sets[0] == sets[1] == sets[2]
        finally:
            cluster.kill_all()


def test_on_a_nearly_full_disk_a_backup_is_refused_and_snapshots_back_off(
    tmp_path: Path,
) -> None:
    """One node on a 40 MB tmpfs keeping 15 MB free (MinFreeDiskMb), filled
    with large jobs until the guard refuses writes: its database is then
    larger than the free space. ``GET /backup``, whose copy would not fit,
    is refused 507 naming the reason (it was a 500 and a traceback); the
    raft snapshots that cannot be written are tried again after 1, 2, 4, ...
    seconds, with one traceback (they were tried on every tick: ~27
    tracebacks in a burst, 700 log lines in 40 s)."""
    node = NodeProcess(
        tmp_path / "node",
        extra_env={
            "SCHEDULER0_MIN_FREE_DISK_MB": "15",
            "SCHEDULER0_RAFT_SNAPSHOT_INTERVAL": "1",
            "SCHEDULER0_RAFT_SNAPSHOT_THRESHOLD": "5",
        },
    )
    with small_tmpfs(node.workdir / "data", "40m"):
        try:
            node.start()
            client = Client(node.api, create_credential(node), verify=node.verify)
            project = client.data("POST", "/projects", 201, json={"name": "full"})["id"]
            # Jobs that keep firing (their callbacks refused): the log keeps
            # growing, so snapshots keep being due once the disk is full.
            firing = {
                "project_id": project,
                "spec": "@every 1s",
                "callback_url": "http://127.0.0.1:9/f",
            }
            client.data("POST", "/jobs", 201, json=[firing] * 20)
            batch = [
                {
                    "project_id": project,
                    "spec": "0 0 1 1 *",
                    "callback_url": "http://127.0.0.1:9/a",
                    "data": "x" * 60_000,
                }
                for _ in range(10)
            ]
            statuses: Counter[int] = Counter()
            while statuses[503] < 3 and statuses[201] < 200:
                statuses[client.call("POST", "/jobs", json=batch).status_code] += 1
            assert statuses[503] == 3, statuses  # the disk guard
            backup = httpx.get(
                f"{node.api}/backup", headers=operator_headers(), timeout=60, verify=node.verify
            )
            assert backup.status_code == 507, backup.text[:300]
            assert backup.json()["error"]["code"] == "insufficient_storage"
            assert "MinFreeDiskMb" in backup.json()["error"]["message"]
            log = node.workdir / "node.log"
            wait_until(
                lambda: "cannot write the raft snapshot" in log.read_text(errors="replace"),
                60,
                what="a snapshot that cannot be written",
            )
            first = log.read_text(errors="replace").count("cannot write the raft snapshot")
            time.sleep(10)  # how often they are tried is what is measured
            text = log.read_text(errors="replace")
            client.close()
        finally:
            node.stop()
    failures = text.count("cannot write the raft snapshot") - first
    assert failures <= 5, f"{failures} snapshot failures in the 10 s after the first"
    assert text.count("Traceback") == 1, text[-3000:]
    assert node.proc is not None and node.proc.returncode == 0
