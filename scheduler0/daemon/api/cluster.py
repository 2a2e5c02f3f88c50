"""Cluster routes: status gathered from every member, membership changes.

``GET /cluster`` (any auth) asks each member's ``GET /peer/status`` (peer auth)
concurrently, each bounded by PeerAuthRequestTimeoutMs; a member that does not
answer in time is listed as unreachable, never waited for. An https member is
verified against TLSCAFile (else the system store).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from scheduler0.config import Settings
from scheduler0.daemon import peers
from scheduler0.daemon.api.auth import node_status_for
from scheduler0.daemon.api.http import Services, json_body, off_loop, ok, path_id, services
from scheduler0.daemon.state import commands as c
from scheduler0.errors import FieldError, NotCommitted, NotFound, ValidationFailed


async def cluster_status(svc: Services) -> dict[str, Any]:
    settings = svc.settings
    local = svc.status.local_status()
    members = svc.queries.members()
    timeout = settings.peer_auth_request_timeout_ms / 1000
    async with peers.peer_client(settings, timeout) as client:
        others = await asyncio.gather(
            *(
                peers.peer_status(client, m, settings)
                for m in members
                if m["node_id"] != settings.node_id
            )
        )
    local.update(reachable=True, response_ms=0)
    nodes = sorted([local, *others], key=lambda n: n["node_id"])
    raft = local["raft"]
    leader = raft.get("leader")
    for entry in nodes:
        address = entry["raft_address"]
        entry["role"] = (
            "leader"
            if address == leader or (entry is local and raft.get("state") == "leader")
            else "follower"
        )
        if entry is not local:
            connected = raft.get("partners_connected", {}).get(address)
            entry["raft_connected"] = connected
            contact = svc.status.last_contact(address)
            entry["last_contact"] = None if contact is None else round(contact, 3)
    leading = next((n for n in nodes if n["role"] == "leader"), None)
    for entry in nodes:
        entry["digest_matches_leader"] = digest_matches(
            entry.get("state_digest"), None if leading is None else leading.get("state_digest")
        )
    return {
        "node_id": settings.node_id,
        "leader": leader,
        "leader_node_id": next((n["node_id"] for n in nodes if n["role"] == "leader"), None),
        "term": raft.get("term"),
        "has_quorum": raft.get("has_quorum"),
        "commit_index": raft.get("commit_index"),
        "applied_index": raft.get("applied_index"),
        "epoch": svc.status.epoch,
        "buckets_per_node": svc.status.buckets_per_node(),
        "members": nodes,
    }


def digest_matches(mine: Any, leader: Any) -> bool | None:
    """Whether a member's state digest equals the leader's at one index: the
    latest if both are at the same index, else the last common checkpoint;
    None when they cannot be compared (yet)."""
    if not isinstance(mine, dict) or not isinstance(leader, dict):
        return None
    if mine.get("index") == leader.get("index"):
        return bool(mine.get("digest") == leader.get("digest"))
    if mine.get("checkpoint_index") == leader.get("checkpoint_index"):
        return bool(mine.get("checkpoint_digest") == leader.get("checkpoint_digest"))
    return None


async def status(request: Request) -> Response:
    answer = await cluster_status(services(request))
    answer["members"] = [node_status_for(request, member) for member in answer["members"]]
    return ok(answer)


async def peer_status(request: Request) -> Response:
    return ok(services(request).status.local_status())


async def add_member(request: Request) -> Response:
    svc = services(request)
    body = await json_body(request, 64 * 1024)
    member = _member_fields(body)
    if member["node_id"] in {m["node_id"] for m in svc.queries.members()}:
        raise ValidationFailed(
            f"node_id: node {member['node_id']} is already a member",
            [FieldError("node_id", "already a member")],
        )
    await svc.writes.add_member(member["raft_address"])
    await svc.writes.propose(c.MemberJoined(now=time.time(), **member))
    return ok(member, 201)


async def remove_member(request: Request) -> Response:
    svc = services(request)
    node_id = path_id(request)
    member = next((m for m in svc.queries.members() if m["node_id"] == node_id), None)
    if member is None:
        raise NotFound(f"no member with node id {node_id}")
    leader = svc.status.local_status()["raft"].get("leader")
    if node_id != svc.settings.node_id and member["raft_address"] == leader:
        # Only the leader can hand its own leadership over: it removes itself.
        return await _removed_by_itself(svc, member)
    if node_id == svc.settings.node_id and svc.writes.leads():
        # raft's leader cannot take itself out of the configuration: another
        # node leads first, and this one, now a follower, asks it to.
        await svc.writes.hand_over_leadership(HAND_OVER_SECONDS)
    # MemberLeft first, while the leaving node still receives the log: it sees
    # itself removed, says so and stops (raft alone would leave it campaigning).
    await svc.writes.propose(c.MemberLeft(now=time.time(), node_id=node_id, remember=True))
    if node_id != svc.settings.node_id:
        applied_here = svc.status.local_status()["state_digest"]["index"]
        if await _until_applied(svc.settings, member, applied_here, LEAVE_NOTICE_SECONDS):
            await _until_settled(svc, node_id, SETTLE_SECONDS)
        await svc.writes.remove_member(member["raft_address"])
    else:
        await _remove_self(svc, member["raft_address"])
    return ok({"node_id": node_id, "removed": True})


async def _removed_by_itself(svc: Services, member: dict[str, Any]) -> Response:
    """Send the removal of the leader to the leader (over peer auth) and
    relay its answer."""
    settings = svc.settings
    async with peers.peer_client(settings, HAND_OVER_SECONDS + SETTLE_SECONDS + 10) as client:
        try:
            answer = await client.delete(
                f"{member['address']}/api/v1/cluster/members/{member['node_id']}",
                auth=(settings.auth_username or "", settings.auth_password or ""),
                headers={"x-peer": "peer"},
            )
        except httpx.HTTPError as exc:
            raise NotCommitted(
                f"node {member['node_id']} leads and removes itself, but could not be asked"
                f" ({type(exc).__name__}); retry"
            ) from None
    return Response(answer.content, answer.status_code, media_type="application/json")


async def _until_settled(svc: Services, node_id: int, timeout: float) -> None:
    """Wait (at most ``timeout``) until the leaving node has no run left
    ``dispatched``: it stops on its ``MemberLeft``, records the results of
    the runs it sent and hands the others over (``NodeRunsLost``), which it
    can do only while raft still has it. What is left after ``timeout`` is
    declared lost by the leader once the node is gone (``Coordinator``) and
    sent again: once if never sent, twice if its result was lost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await off_loop(svc.queries.unsettled, "dispatched", node_id):
            return
        await asyncio.sleep(0.1)


async def _remove_self(svc: Services, raft_address: str) -> None:
    """Ask the leader to take this node out of raft. The leader drops its
    link to this node as it applies the change, so the answer to the request
    may never come: past ``SELF_REMOVAL_SECONDS`` without one, the removal
    is done if the leader no longer lists this node among its partners."""
    removal = asyncio.ensure_future(svc.writes.remove_member(raft_address))
    try:
        await asyncio.wait_for(asyncio.shield(removal), SELF_REMOVAL_SECONDS)
        return
    except TimeoutError:
        pass
    finally:
        if not removal.done():
            removal.cancel()
    others = [m for m in svc.queries.members() if m["node_id"] != svc.settings.node_id]
    async with peers.peer_client(svc.settings, 1.0) as client:
        answers = await asyncio.gather(
            *(peers.peer_status(client, m, svc.settings) for m in others)
        )
    for answer in answers:
        raft = answer.get("raft") or {}
        leads = answer.get("reachable") and raft.get("state") == "leader"
        if leads and raft_address not in raft.get("partners_connected", {}):
            return
    raise NotCommitted(
        f"the leader did not confirm removing {raft_address} within {SELF_REMOVAL_SECONDS:g} s"
    )


HAND_OVER_SECONDS = 5.0
"""How long removing the leader waits for another node to take over."""

SELF_REMOVAL_SECONDS = 2.0
"""How long a node removing itself waits for the leader's answer before it
asks the leader whether the removal is done."""

SETTLE_SECONDS = 12.0
"""How long a removal waits for the leaving node to settle its runs: its
watch notices its removal (0.5 s), its API drains (up to 5 s), its
executor (2 s), its last results and its hand-over (2 s each)."""

LEAVE_NOTICE_SECONDS = 5.0
"""How long a removal waits for the leaving node to apply its MemberLeft."""


async def _until_applied(
    settings: Settings, member: dict[str, Any], index: int, timeout: float
) -> bool:
    """Wait (at most ``timeout``) until ``member`` has applied ``index`` commands,
    so that it sees its own MemberLeft before raft stops sending it the log. A
    member that is down or slow is not waited for longer: the removal goes on."""
    deadline = time.monotonic() + timeout
    async with peers.peer_client(settings, 1.0) as client:
        while time.monotonic() < deadline:
            status = await peers.peer_status(client, member, settings)
            applied = (status.get("state_digest") or {}).get("index", -1)
            if status.get("reachable") and applied >= index:
                return True
            await asyncio.sleep(0.1)
    return False


def _member_fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed("body: expected a JSON object", [FieldError("body", "object")])
    errors = []
    node_id = body.get("node_id", body.get("nodeId", body.get("NodeId")))
    address = body.get("address", body.get("Address"))
    raft_address = body.get("raft_address", body.get("raftAddress", body.get("RaftAddress")))
    if not isinstance(node_id, int) or isinstance(node_id, bool) or node_id < 1:
        errors.append(FieldError("node_id", "must be an integer >= 1"))
    if not isinstance(address, str) or not address.startswith(("http://", "https://")):
        errors.append(FieldError("address", "must be the node's http(s) base URL"))
    if not isinstance(raft_address, str) or ":" not in raft_address:
        errors.append(FieldError("raft_address", "must be host:port"))
    if errors:
        raise ValidationFailed(f"{errors[0].field}: {errors[0].message}", errors)
    assert isinstance(address, str)
    return {"node_id": node_id, "address": address.rstrip("/"), "raft_address": raft_address}
