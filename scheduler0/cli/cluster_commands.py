"""``scheduler0 cluster status|members|add|remove``: operator views and changes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from scheduler0.cli.context import (
    EPILOG,
    ConfigOption,
    JsonOption,
    NodeOption,
    YesOption,
    call,
    confirm,
    connect_operator,
    print_json,
    print_table,
)
from scheduler0.cli.output import json_wanted, say

cluster_app = typer.Typer(
    help="See and change the cluster: status, members, add, remove.",
    epilog=EPILOG,
    no_args_is_help=True,
)


def _ago(timestamp: float | None) -> str:
    import time

    return "-" if timestamp is None else f"{max(0.0, time.time() - timestamp):.1f}s ago"


@cluster_app.command("status")
def status(
    node: NodeOption = None, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """Members, leader, term, epoch, buckets, queue depth and fire lag of every node.

    Example: scheduler0 cluster status --node http://127.0.0.1:9091 --json
    """
    with connect_operator(node, config) as client:
        data = call(client, "GET", "/cluster")
    if json_wanted(as_json):
        print_json(data)
        return
    say(
        f"leader node {data['leader_node_id']} · term {data['term']} · epoch {data['epoch']}"
        f" · quorum {'yes' if data['has_quorum'] else 'NO'}"
        f" · commit {data['commit_index']} applied {data['applied_index']}"
    )
    rows = [
        {
            **m,
            "health": "up" if m.get("reachable") else "UNREACHABLE",
            "contact": "self" if m["node_id"] == data["node_id"] else _ago(m.get("last_contact")),
            "lag": _seconds(m.get("fire_lag_p99_seconds")),
            "delivery": _seconds(m.get("delivery_lag_p99_seconds")),
            "digest": _digest(m),
        }
        for m in data["members"]
    ]
    print_table(rows, STATUS_COLUMNS)
    differs = [
        str(m["node_id"]) for m in data["members"] if m.get("digest_matches_leader") is False
    ]
    if differs:
        say(
            f"[red]node(s) {', '.join(differs)}: state digest DIFFERS from the leader's"
            " at the same index (the replicas have diverged)[/]"
        )


STATUS_COLUMNS = (
    ("node", "node_id"),
    ("address", "address"),
    ("role", "role"),
    ("health", "health"),
    ("last contact", "contact"),
    ("buckets", "buckets_owned"),
    ("jobs", "jobs_owned"),
    ("queue", "queue_depth"),
    ("in flight", "in_flight"),
    ("lag p99", "lag"),
    ("delivery p99", "delivery"),
    ("digest", "digest"),
)
MEMBER_COLUMNS = (
    ("node", "node_id"),
    ("address", "address"),
    ("raft address", "raft_address"),
    ("role", "role"),
    ("reachable", "reachable"),
)


def _seconds(value: Any) -> str | None:
    return f"{value:.2f}s" if isinstance(value, int | float) else None


def _digest(member: dict[str, Any]) -> str:
    """The member's state digest against the leader's: same, DIFFERS, or - (not comparable)."""
    match = member.get("digest_matches_leader")
    state = member.get("state_digest") or {}
    index = state.get("index", "?")
    if match is None:
        return f"- @{index}"
    return f"same @{index}" if match else f"DIFFERS @{index}"


@cluster_app.command("members")
def members(
    node: NodeOption = None, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """The members: node id, HTTP address, raft address.

    Example: scheduler0 cluster members --json
    """
    with connect_operator(node, config) as client:
        data = call(client, "GET", "/cluster")
    rows = [
        {k: m.get(k) for k in ("node_id", "address", "raft_address", "role", "reachable")}
        for m in data["members"]
    ]
    if json_wanted(as_json):
        print_json(rows)
        return
    print_table(rows, MEMBER_COLUMNS)


@cluster_app.command("add")
def add(
    node_id: Annotated[int, typer.Option("--node-id", help="Id of the new node.")],
    address: Annotated[str, typer.Option("--address", help="Its HTTP base URL.")],
    raft_address: Annotated[str, typer.Option("--raft-address", help="Its raft host:port.")],
    node: NodeOption = None,
    config: ConfigOption = None,
) -> None:
    """Add a node to the running cluster (one at a time), then start it.

    Start the new node with Replicas listing every member and itself.

    Example: scheduler0 cluster add --node-id 4 --address http://127.0.0.1:9094
    --raft-address 127.0.0.1:7074
    """
    body = {"node_id": node_id, "address": address, "raft_address": raft_address}
    with connect_operator(node, config) as client:
        call(client, "POST", "/cluster/members", body)
    say(f"node {node_id} added; start it with its Replicas listing every member")


@cluster_app.command("remove")
def remove(
    node_id: Annotated[int, typer.Argument(help="Id of the node to remove.")],
    yes: YesOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
) -> None:
    """Remove a node from the cluster; its buckets move to the others.

    Example: scheduler0 cluster remove 4 --yes
    """
    if not yes:
        confirm(f"Remove node {node_id} from the cluster?")
    with connect_operator(node, config) as client:
        call(client, "DELETE", f"/cluster/members/{node_id}")
    say(f"node {node_id} removed")
