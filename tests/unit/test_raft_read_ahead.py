"""A raft connection parses what it has read once it holds a whole message
and ``READ_AHEAD`` bytes, instead of reading its socket until it is drained."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
from collections.abc import Iterator

import pytest
from pysyncobj.poller import PollPoller

from scheduler0.daemon.raft import READ_AHEAD, _BoundedConnection
from tests.support.nodes import wait_until

pytestmark = pytest.mark.unit

MESSAGE = 60_000
"""Bytes of one framed message, about a snapshot chunk's."""


@pytest.fixture
def pair() -> Iterator[tuple[_BoundedConnection, socket.socket]]:
    with socket.socket() as server:
        # buffers set before the handshake: the stream can wait in the kernel
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
        server.bind(("127.0.0.1", 0))
        server.listen()
        theirs = socket.socket()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 2**20)
        theirs.connect(server.getsockname())
        ours, _ = server.accept()
    ours.setblocking(False)
    connection = _BoundedConnection(
        poller=PollPoller(), socket=ours, timeout=10.0, recvBufferSize=2**16
    )
    connection.bound(64 * 2**20)
    connection.authenticate()
    yield connection, theirs
    connection.disconnect()
    theirs.close()


def pending(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s receive buffer."""
    value: int = struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0" * 4))[0]
    return value


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    sender.start()
    return sender


def test_a_stream_of_messages_is_read_a_slice_at_a_time(
    pair: tuple[_BoundedConnection, socket.socket],
) -> None:
    """8 MB of messages are sent, over 2 MB wait in the socket: one read
    takes a little over READ_AHEAD (the rest is reported by the next poll),
    not all of it; the whole stream still comes in, a slice a read."""
    connection, theirs = pair
    frame = struct.pack("i", MESSAGE) + bytes(MESSAGE)
    count = 8 * 2**20 // len(frame)
    sender = send_in_background(theirs, frame * count)
    wait_until(lambda: pending(connection._TcpConnection__socket) >= 2 * READ_AHEAD, 10)
    connection._TcpConnection__tryReadBuffer()
    first = len(connection._TcpConnection__readBuffer)
    assert READ_AHEAD <= first < READ_AHEAD + 2**16 + len(frame), first
    total, reads = first, 1
    connection._TcpConnection__readBuffer = b""
    while total < count * len(frame) and reads < 10_000:
        connection._TcpConnection__tryReadBuffer()
        total += len(connection._TcpConnection__readBuffer)
        connection._TcpConnection__readBuffer = b""
        reads += 1
    sender.join(10)
    assert not sender.is_alive()
    assert total == count * len(frame)
    assert reads >= 8


def test_a_message_longer_than_read_ahead_is_read_whole(
    pair: tuple[_BoundedConnection, socket.socket],
) -> None:
    connection, theirs = pair
    size = 3 * READ_AHEAD
    theirs.sendall(struct.pack("i", size) + bytes(size))
    wait_until(lambda: pending(connection._TcpConnection__socket) >= 4 + size, 10)
    connection._TcpConnection__tryReadBuffer()
    assert len(connection._TcpConnection__readBuffer) == 4 + size
