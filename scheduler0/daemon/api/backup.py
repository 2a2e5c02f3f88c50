"""``GET /backup`` (operator): an online copy of the replicated state at one raft
index, as a backup container (``scheduler0/backup.py``), streamed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from scheduler0.backup import encode_prefix, iter_container
from scheduler0.daemon.api.http import services


async def download(request: Request) -> Response:
    svc = services(request)
    header, payload = await svc.backups.take()
    name = f"scheduler0-node{header.source_node_id}-index{header.raft_index}.s0backup"
    return StreamingResponse(
        iter_container(header, payload, remove=True),
        media_type="application/octet-stream",
        headers={
            "content-length": str(len(encode_prefix(header)) + header.payload_bytes),
            "content-disposition": f'attachment; filename="{name}"',
            "x-scheduler0-raft-index": str(header.raft_index),
        },
    )
