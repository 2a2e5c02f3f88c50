"""Ports for the listeners tests start, chosen where nothing else will take them.

Binding port 0 and releasing it hands out a port from the kernel's *ephemeral*
range, the same range every outgoing connection takes its local port from. A
node's raft peers and the tests' HTTP clients open connections all the time,
so between releasing such a port and the node binding it, a connection can
take it: the node then fails with "cannot bind". Ports below the ephemeral
range are never given to outgoing connections, so handing those out (each one
once per process, checked free when handed out) leaves only other listeners
to race with, and the tests start all of those themselves.

Under pytest-xdist each worker is its own process with its own record of the
ports it handed out, so the range is cut into one disjoint slice per worker
(``PYTEST_XDIST_WORKER`` / ``PYTEST_XDIST_WORKER_COUNT``): a port one worker
hands out, even one a test keeps closed on purpose, is never another worker's.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from pathlib import Path

_LOWEST = 10_000
_FALLBACK_EPHEMERAL_LOW = 32_768


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW
    return low


def _worker_slice(low: int, high: int) -> range:
    """This process's share of ``[low, high)``: all of it outside xdist, else the
    ``gwN`` worker's own slice of it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        index = int(worker.removeprefix("gw"))
        count = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    except (KeyError, ValueError):
        return range(low, high)
    if not 0 <= index < count:
        return range(low, high)
    width = (high - low) // count
    return range(low + index * width, low + (index + 1) * width)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Ports:
    def __init__(self) -> None:
        high = _ephemeral_low()
        span = list(_worker_slice(_LOWEST, high))
        if len(span) < 1_000:  # an unusual range: fall back to the kernel's choice
            self._candidates: itertools.cycle[int] | None = None
        else:
            random.Random(os.getpid()).shuffle(span)  # two test processes rarely overlap
            self._candidates = itertools.cycle(span)
            self._span = len(span)
        self._given: set[int] = set()
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            if self._candidates is None:
                return _kernel_port()
            for _ in range(self._span):
                port = next(self._candidates)
                if port not in self._given and _bindable(port):
                    self._given.add(port)
                    return port
        return _kernel_port()


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PORTS = _Ports()


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and that no outgoing connection will take."""
    return _PORTS.take()
