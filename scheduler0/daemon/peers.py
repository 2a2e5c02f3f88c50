"""Asking the other members what they see: ``GET /peer/status`` over HTTP.

Used by ``GET /cluster`` (every member's status), by a removal (has the
leaving member applied its ``MemberLeft`` yet?) and by a node that has lost its
leader (was it removed while it was not listening?).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from scheduler0.config import Settings
from scheduler0.tls import client_context


async def peer_status(
    client: httpx.AsyncClient, member: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """``member``'s own status, or ``reachable: False`` with the error; never raises."""
    started = time.monotonic()
    try:
        response = await client.get(
            f"{member['address']}/api/v1/peer/status",
            auth=(settings.auth_username or "", settings.auth_password or ""),
            headers={"x-peer": "peer"},
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        data["reachable"] = True
    except Exception as exc:
        data = {"node_id": member["node_id"], "reachable": False, "error": str(exc)[:200]}
    data["address"] = member["address"]
    data["raft_address"] = member["raft_address"]
    data["response_ms"] = int((time.monotonic() - started) * 1000)
    return data


def peer_client(settings: Settings, timeout: float) -> httpx.AsyncClient:
    """A client for peer calls: https members verified against TLSCAFile."""
    return httpx.AsyncClient(timeout=timeout, verify=client_context(settings.tls_ca_file))


def drops_me(status: dict[str, Any], node_id: int) -> bool:
    """Whether a peer's ``status`` proves that ``node_id`` was removed.

    Proof needs a peer that is reachable, follows a leader, lists itself among
    the members, and lists ``node_id`` among the departed (a ``MemberLeft`` for
    it was applied and no operator added it back since). A brand-new node not
    added yet is not departed; a peer that is alone or older proves nothing."""
    if not status.get("reachable"):
        return False
    members, departed = status.get("member_ids"), status.get("departed_member_ids")
    if not isinstance(members, list) or not isinstance(departed, list):
        return False
    if status.get("node_id") not in members or not (status.get("raft") or {}).get("leader"):
        return False
    return node_id in departed and node_id not in members


async def removal_witness(settings: Settings, members: list[dict[str, Any]]) -> int | None:
    """The node id of a member whose status proves this node was removed (see
    ``drops_me``), or None. The members are this node's own list, else its
    configured replicas; each is asked once, concurrently, bounded by
    PeerAuthRequestTimeoutMs."""
    if not members:
        members = [
            {
                "node_id": r.node_id,
                "address": str(r.address).rstrip("/"),
                "raft_address": r.raft_address,
            }
            for r in settings.replicas
        ]
    others = [m for m in members if m["node_id"] != settings.node_id]
    if not others:
        return None
    async with peer_client(settings, settings.peer_auth_request_timeout_ms / 1000) as client:
        answers = await asyncio.gather(*(peer_status(client, m, settings) for m in others))
    for answer in answers:
        if drops_me(answer, settings.node_id):
            return int(answer["node_id"])
    return None
