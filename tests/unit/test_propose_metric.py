"""``scheduler0_propose_duration_seconds``: a proposal that cannot commit is
counted with its outcome (``ok`` and ``refused`` are counted on a real node in
``tests/test_observability.py``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from scheduler0.daemon.metrics import Metrics
from scheduler0.daemon.raft import RaftLog, RaftOptions
from scheduler0.daemon.state import commands as c
from scheduler0.daemon.state.machine import StateMachine
from scheduler0.errors import NotCommitted

COUNT = "scheduler0_propose_duration_seconds_count"


def test_a_proposal_to_a_stopped_member_is_counted_not_committed(tmp_path: Path) -> None:
    metrics = Metrics()
    machine = StateMachine(tmp_path / "state.db", metrics=metrics)
    options = RaftOptions(
        self_address="127.0.0.1:1",
        partner_addresses=[],
        data_dir=tmp_path / "raft",
        password="p",
        apply_timeout=1.0,
        snapshot_min_entries=100,
        snapshot_min_time=60.0,
    )
    log = RaftLog(options, machine, metrics.proposed)  # never started
    try:
        with pytest.raises(NotCommitted, match="stopped"):
            asyncio.run(log.propose(c.Noop(now=time.time())))
        labels = {"command": "Noop", "outcome": "not_committed"}
        assert metrics.registry.get_sample_value(COUNT, labels) == 1
        assert metrics.registry.get_sample_value(COUNT, {**labels, "outcome": "ok"}) is None
    finally:
        machine.close()
