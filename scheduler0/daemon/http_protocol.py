"""The HTTP connection protocol: uvicorn's h11 protocol with a deadline for
each request's head.

uvicorn closes a kept-alive connection that stays idle between requests
(``timeout_keep_alive``), but nothing closes one that never completes a
request head: a connection opened and left silent, or one that sends a
header byte every few seconds (slow loris), is held, with its socket and
buffers, for as long as its peer likes. Thousands of them use up the node's
file descriptors and memory without ever reaching the API's limits, which
apply to requests. Here every request's head (request line and headers)
must arrive within ``HEAD_TIMEOUT_SECONDS`` of the connection being opened or
of the answer before it on the same connection; otherwise the connection is
closed, with a ``408`` if part of a head had come.

Imported by ``serve`` only when it starts a server (uvicorn is not loaded by
the other commands).
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT_SECONDS = 10.0
"""How long a request's head may take to arrive."""

TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
    b"content-length: 41\r\nconnection: close\r\n\r\n"
    b"the request head took too long to arrive\n"
)


class HeadTimeoutProtocol(H11Protocol):
    """``H11Protocol`` that closes a connection whose next request head does
    not arrive within ``head_timeout`` seconds."""

    head_timeout = HEAD_TIMEOUT_SECONDS

    _head_timer: asyncio.TimerHandle | None = None
    _waiting_for: object = None
    """The request cycle current when the timer was armed: the head has come
    once the protocol holds another."""
    _partial = False
    """Bytes of the awaited head have arrived."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(None)

    def data_received(self, data: bytes) -> None:
        # Bytes that come while an answered request's body is still arriving
        # (an early answer: 401, 413, ...) are progress, not a head's first.
        draining = self._head_timer is not None and self.conn.their_state is h11.SEND_BODY
        if self._head_timer is not None and not draining:
            self._partial = True
        super().data_received(data)
        if self._head_timer is None:
            return
        if self.cycle is not self._waiting_for:
            self._disarm()  # the head came
        elif draining:
            self._arm(self._waiting_for)  # 10 s more for the rest of that body

    def on_response_complete(self) -> None:
        answered = self.cycle
        # Picks up a pipelined request whose head is already here.
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(answered)
            if self.cycle is not answered:
                self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, waiting_for: object) -> None:
        """Give the head of the request after ``waiting_for`` (a request
        cycle; None: the connection's first) ``head_timeout`` seconds."""
        self._disarm()
        self._waiting_for = waiting_for
        self._partial = False
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.cycle is not self._waiting_for:
            return
        log.debug(
            "closing a connection from %s: no request head in %.0f s",
            self.client,
            self.head_timeout,
        )
        if self._partial:
            self.transport.write(TIMED_OUT)
        self.transport.close()
