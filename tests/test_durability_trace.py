"""Acknowledged means on disk, seen from outside one real node process.

Under strace: with FlushBeforeAck on, the node's raft journal is msynced after
a write arrives and before its HTTP answer is sent; with it off, the journal is
never msynced. And a node whose snapshot was damaged while it was down stops
with one clear line naming the file and exit status 75, instead of starting
without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.nodes import Client, NodeProcess, create_credential, wait_until
from tests.support.syscall_trace import strace_unavailable, trace_one_write

pytestmark = [pytest.mark.slow, pytest.mark.integration]

HALTED_EXIT_CODE = 75


@pytest.fixture(scope="module")
def strace_ok() -> None:
    reason = strace_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.usefixtures("strace_ok")
def test_one_node_flushes_its_journal_before_it_answers_a_write(tmp_path: Path) -> None:
    traced = trace_one_write(tmp_path, 1, flush_before_ack=True)
    write = traced.leader
    assert write.flushes, "no msync of the raft journal between the request and its answer"
    assert all(write.request.end < f.end < write.answer.start for f in write.flushes)


@pytest.mark.usefixtures("strace_ok")
def test_with_flush_before_ack_off_the_journal_is_never_msynced(tmp_path: Path) -> None:
    traced = trace_one_write(tmp_path, 1, flush_before_ack=False)
    assert traced.leader.answer.start > traced.leader.request.end  # the write was traced
    assert traced.flushes_per_node == {1: 0}


def test_a_node_whose_snapshot_is_damaged_stops_with_a_clear_message(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", extra_env={"SCHEDULER0_RAFT_SNAPSHOT_INTERVAL": "1"})
    snapshot = tmp_path / "node" / "data" / "raft.snapshot"
    try:
        node.start()
        client = Client(node.api, create_credential(node))
        try:
            for i in range(5):
                client.data("POST", "/projects", expect=201, json={"name": f"p{i}"})

            def snapshot_written() -> bool:
                return snapshot.exists() and "snapshot written" in node.log_tail(200)

            wait_until(snapshot_written, 30, what="a raft snapshot")
        finally:
            client.close()
        node.kill()
        with open(snapshot, "r+b") as f:  # one byte, in the middle of the database
            f.seek(os.path.getsize(snapshot) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        (tmp_path / "node" / "node.log").write_text("")
        node.start(wait=False)
        assert node.proc is not None
        code = node.proc.wait(timeout=60)
        log = node.log_tail(200)
        assert code == HALTED_EXIT_CODE, log
        critical = [line for line in log.splitlines() if "CRITICAL" in line]
        assert any(
            f"raft snapshot {snapshot}" in line and "cannot be loaded" in line for line in critical
        ), log
    finally:
        node.kill()
