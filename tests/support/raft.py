"""A real pysyncobj raft member on 127.0.0.1 for the tests that run raft in
process: its journal and snapshot under ``data``, applying to ``machine``."""

from __future__ import annotations

from pathlib import Path

from scheduler0.daemon.raft import RaftLog, RaftOptions
from scheduler0.daemon.replication import ReplicatedStateMachine


def start_raft(
    data: Path,
    address: str,
    partners: list[str],
    machine: ReplicatedStateMachine,
    *,
    password: str,
    snapshot_min_entries: int,
    snapshot_min_time: float,
    apply_timeout: float = 5.0,
) -> RaftLog:
    """Start a member (``RaftLog.start``); the caller stops it."""
    log = RaftLog(
        RaftOptions(
            self_address=address,
            partner_addresses=partners,
            data_dir=data,
            password=password,
            apply_timeout=apply_timeout,
            snapshot_min_entries=snapshot_min_entries,
            snapshot_min_time=snapshot_min_time,
        ),
        machine,
    )
    log.start()
    return log
