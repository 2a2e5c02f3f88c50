"""A lean callback receiver for benches: raw asyncio HTTP/1.1, keep-alive.

    python bench/lean_receiver.py --port P --out FILE

Accepts ``POST`` on any path with a JSON-array body, answers ``200`` with an
empty body, and appends ONE compact JSON line per request to ``--out``::

    [<receive unix time>, <status>, [<execution_id>, ...]]

(the receive time is taken when the request's first bytes arrive). ``GET
/stats`` answers ``{"requests", "items", "bytes"}``. It does nothing else,
so that it costs the shared CPU as little as possible. Unlike
``tests.support.receiver`` it does not verify signatures nor record per-item
headers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from typing import BinaryIO

import orjson

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Stats:
    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.requests = 0
        self.items = 0
        self.bytes = 0


class Conn(asyncio.Protocol):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buf = bytearray()
        self.started: float | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.started is None:
            self.started = time.time()
        self.buf += data
        while self._one_request():
            pass

    def _one_request(self) -> bool:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        method, _, rest = head[0].partition(" ")
        path = rest.partition(" ")[0]
        length = 0
        chunked = False
        for line in head[1:]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "content-length":
                length = int(value)
            elif key == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        start = end + 4
        if chunked:
            body_parts = []
            pos = start
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    return False
                size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
                if len(buf) < line_end + 2 + size + 2:
                    return False
                body_parts.append(bytes(buf[line_end + 2 : line_end + 2 + size]))
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
            body = b"".join(body_parts)
            consumed = pos
        else:
            if len(buf) < start + length:
                return False
            body = bytes(buf[start : start + length])
            consumed = start + length
        received_at = self.started if self.started is not None else time.time()
        del buf[:consumed]
        self.started = time.time() if buf else None
        assert self.transport is not None
        if method == "GET" and path.startswith("/stats"):
            s = self.stats
            payload = orjson.dumps({"requests": s.requests, "items": s.items, "bytes": s.bytes})
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
            return True
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.transport.write(_BAD)
            self.transport.close()
            return False
        items = parsed if isinstance(parsed, list) else [parsed]
        ids = [item.get("execution_id") if isinstance(item, dict) else None for item in items]
        s = self.stats
        s.requests += 1
        s.items += len(items)
        s.bytes += len(body)
        s.sink.write(orjson.dumps([received_at, 200, ids]) + b"\n")
        s.sink.flush()
        self.transport.write(_OK)
        return True


async def serve(port: int, out: Path) -> None:
    with out.open("ab") as sink:
        stats = Stats(sink)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Conn(stats), "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="lean bench callback receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out))


if __name__ == "__main__":
    main()
