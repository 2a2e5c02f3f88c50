"""A hung callback receiver for benches: accepts connections and never answers.

    python bench/hung_receiver.py --port P --stats FILE [--no-read]

It listens on 127.0.0.1 and accepts every connection. By default it reads
and discards what the client sends (so the request bodies leave the sender's
socket buffers, as with a server that is stuck after reading the request);
with ``--no-read`` it never reads either (the sender's writes stall once the
kernel buffers are full). It never writes a byte and never closes a
connection itself. Every second, and when stopped (SIGTERM/SIGINT), it
rewrites ``--stats`` with ``{"connections", "open", "bytes", "requests"}``
(``requests`` counts the ``POST`` request lines seen in what it read).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path


class Stats:
    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.bytes = 0
        self.requests = 0

    def dump(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "connections": self.connections,
                    "open": self.open,
                    "bytes": self.bytes,
                    "requests": self.requests,
                }
            )
        )
        tmp.replace(path)


class Hung(asyncio.Protocol):
    def __init__(self, stats: Stats, read: bool) -> None:
        self.stats = stats
        self.read = read
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.stats.connections += 1
        self.stats.open += 1
        if not self.read and isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        chunk = self.tail + data
        self.stats.requests += chunk.count(b"POST /")
        self.tail = data[-5:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1


async def serve(port: int, stats_path: Path, read: bool) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Hung(stats, read), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        while not stop.is_set():
            stats.dump(stats_path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    stats.dump(stats_path)


def main() -> None:
    parser = argparse.ArgumentParser(description="hung bench callback receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--no-read", action="store_true", help="never read from a connection")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.stats, not args.no_read))


if __name__ == "__main__":
    main()
