"""Bench: show with strace that a node flushes its raft journal before it acknowledges.

Runs a 3-node cluster (``--nodes 1`` for one node), every node under
``strace -f``, writes one project through the leader, stops the nodes and
prints, from the traces, in time order:

* on the leader: the HTTP request arriving, the entry sent to the followers,
  the msync of the journal, the HTTP answer;
* on each follower: the entry arriving from the leader, the msync of its
  journal, its reply to the leader.

With ``--off`` the nodes run with ``FlushBeforeAck: false`` (no msync at all).
Writes ``bench/results/durability_trace[_off].json`` with the excerpts.

    python bench/durability_trace.py [--nodes 3] [--off] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import _common as common

from tests.support.syscall_trace import excerpt, strace_unavailable, trace_one_write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--off", action="store_true", help="FlushBeforeAck: false")
    parser.add_argument("--keep", action="store_true", help="keep the node dirs and traces")
    args = parser.parse_args(argv)
    reason = strace_unavailable()
    if reason is not None:
        print(f"cannot trace: {reason}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="s0-durability-trace-"))
    try:
        traced = trace_one_write(workdir, args.nodes, flush_before_ack=not args.off)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    write = traced.leader
    origin = write.request.start
    result: dict[str, object] = {
        "bench": "durability_trace",
        "command": "python bench/durability_trace.py " + " ".join(sys.argv[1:]),
        "flush_before_ack": not args.off,
        "journal_msyncs_per_node": traced.flushes_per_node,
    }
    leader_lines = excerpt(
        write.request, *write.replicated, *write.flushes, *write.acks, write.answer, origin=origin
    )
    print(f"FlushBeforeAck: {'off' if args.off else 'on'}; times relative to the request\n")
    print(
        "leader: request, entry sent to the followers, journal msync, followers' replies,"
        " HTTP answer"
    )
    print("\n".join("  " + line for line in leader_lines))
    result["leader"] = leader_lines
    result["leader_flush_before_answer"] = bool(write.flushes)
    for node_id, reply in sorted(traced.followers.items()):
        print(f"\nfollower node {node_id}: entry received, journal msync, reply to the leader")
        if reply is None:
            print("  (no entry seen)")
            continue
        lines = excerpt(reply.received, *reply.flushes, reply.reply, origin=origin)
        print("\n".join("  " + line for line in lines))
        result[f"follower_{node_id}"] = lines
        result[f"follower_{node_id}_flush_before_reply"] = bool(reply.flushes)
    print(f"\njournal msyncs per node over the whole run: {traced.flushes_per_node}")
    name = (
        "durability_trace"
        + ("_off" if args.off else "")
        + ("" if args.nodes == 3 else f"_{args.nodes}n")
    )
    path = common.write_result(name, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
