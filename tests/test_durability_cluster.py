"""Acknowledged means on disk, in a real 3-node cluster traced with strace.

For one write through the leader, with FlushBeforeAck on: the leader msyncs
its raft journal after it sent the entry to its followers and before it sends
the HTTP answer, and each follower msyncs its journal after the entry arrived
and before it replies to the leader; the reply of at least one follower comes
before the answer (it is what let the leader commit).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.syscall_trace import strace_unavailable, trace_one_write

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def test_leader_and_followers_flush_the_entry_before_acknowledging_it(tmp_path: Path) -> None:
    reason = strace_unavailable()
    if reason is not None:
        pytest.skip(reason)
    traced = trace_one_write(tmp_path, 3, flush_before_ack=True)
    write = traced.leader
    assert len({c.fd for c in write.replicated}) == 2, "the entry was not seen going to both"
    assert write.flushes, "the leader answered without an msync of its journal after the entry"
    assert len(traced.followers) == 2
    for node_id, follower in traced.followers.items():
        assert follower is not None, f"node {node_id}: the entry's arrival is not in its trace"
        assert follower.reply is not None, f"node {node_id}: no reply to the leader"
        assert follower.flushes, f"node {node_id} replied before an msync of its journal"
        assert all(follower.received.end < f.end < follower.reply.start for f in follower.flushes)
    assert min(f.reply.start for f in traced.followers.values() if f and f.reply) < (
        write.answer.start
    )
