"""The HTTP API's listening socket (``serve.bind_http``)."""

from __future__ import annotations

import asyncio
import socket

from scheduler0.daemon.serve import bind_http


async def _nodelay_of_accepted(listening: socket.socket) -> int:
    """Serve on ``listening`` with asyncio (as uvicorn does) and return the
    TCP_NODELAY option of the connection it accepts."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Capture(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Capture, sock=listening)
    try:
        port = listening.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_accepted_connections_send_without_waiting_for_acks() -> None:
    """Nagle's algorithm is off on every connection the API accepts: an answer
    written as head then body must not wait for the client's delayed ACK."""
    listening = bind_http("127.0.0.1", 0)
    try:
        assert listening.proto == socket.IPPROTO_TCP
        assert asyncio.run(_nodelay_of_accepted(listening)) != 0
    finally:
        listening.close()
