"""``scheduler0 start`` on a fresh machine: no config, no secrets, no flags."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.nodes import scheduler0_command, wait_until


def _taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_start_with_nothing_runs_a_node_and_stops_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    if _taken(9091) or _taken(7071):
        pytest.skip("the default ports 9091/7071 are in use")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER0_")}
    proc = subprocess.Popen(
        [*scheduler0_command(), "start"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        health = wait_until(
            lambda: httpx.get("http://127.0.0.1:9091/api/v1/healthcheck", timeout=1).json(),
            timeout=30,
            what="the default node on 127.0.0.1:9091",
        )
        wait_until(
            lambda: httpx.get("http://127.0.0.1:9091/api/v1/healthcheck", timeout=1).json()["data"][
                "ready"
            ],
            timeout=30,
            what="ready",
        )
        proc.send_signal(stop_signal)
        code = proc.wait(timeout=20)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert health["success"] is True
    assert code == 0, stderr
    secrets = tmp_path / ".scheduler0"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert (tmp_path / "scheduler0-data" / "raft.journal").exists()
    assert "scheduler0 credentials create" in stderr
    assert "Traceback" not in stderr
