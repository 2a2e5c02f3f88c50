"""A real HTTP callback receiver, for tests and benches.

Run it as its own process::

    python -m tests.support.receiver --port 8099 --out /tmp/calls.jsonl \\
        [--status 200] [--fail-first N] [--delay SECONDS] [--secret S] \\
        [--requests-out /tmp/requests.jsonl]

It listens on 127.0.0.1, accepts ``POST`` (and the other methods an executor
may call with: ``GET``, ``PUT``, ``PATCH``, ``DELETE``) on any path, parses
the JSON array body, and appends one JSON line per item to ``--out`` (flushed
before it answers)::

    {"t": <receive unix time>, "method": "POST", "path": "/cb", "chunk": "1/2", "batch": "<hex>",
     "webhook_id": "<hex>-1", "status": <status answered>, "execution_id": ...,
     "id": ..., "slot": ..., "verified": <bool, only with --secret>,
     "verified_standard": <bool, only with --secret>}

``verified`` checks ``x-scheduler0-signature`` (``scheduler0.signing.verify``);
``verified_standard`` checks the Standard Webhooks headers with the official
``standardwebhooks`` package, keyed with the secret's UTF-8 bytes.

With ``--requests-out`` it also appends one JSON line per request, headers and
raw body (base64) included, for tests that verify or tamper with them::

    {"t": ..., "method": "POST", "path": "/cb", "status": 200, "headers": {...},
     "body_b64": "<base64 of the raw body>"}

Items of requests answered with an error are recorded too (``status`` tells
them apart), so tests can count attempts. ``--fail-first N`` answers 500 to the
first N POSTs; ``--status`` is the answer otherwise; ``--delay`` waits that long
before answering (after recording). ``GET /stats`` returns
``{"requests", "items", "concurrency", "max_concurrency"}``.

In tests, :func:`run_receiver` starts it as a subprocess on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import orjson
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scheduler0 import signing
from tests.support.nodes import wait_until
from tests.support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_ITEM_FIELDS = ("execution_id", "id", "slot")


@dataclass
class ReceiverOptions:
    out: Path
    status: int = 200
    fail_first: int = 0
    delay: float = 0.0
    secret: str | None = None
    requests_out: Path | None = None


class _Recorder:
    """Request handlers plus the counters behind ``/stats``."""

    def __init__(
        self, options: ReceiverOptions, sink: BinaryIO, requests_sink: BinaryIO | None = None
    ) -> None:
        self.options = options
        self.sink = sink
        self.requests_sink = requests_sink
        self.requests = 0
        self.items = 0
        self.concurrency = 0
        self.max_concurrency = 0

    async def stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "requests": self.requests,
                "items": self.items,
                "concurrency": self.concurrency,
                "max_concurrency": self.max_concurrency,
            }
        )

    async def callback(self, request: Request) -> Response:
        self.concurrency += 1
        self.max_concurrency = max(self.max_concurrency, self.concurrency)
        try:
            return await self._handle(request)
        finally:
            self.concurrency -= 1

    async def _handle(self, request: Request) -> Response:
        received_at = time.time()
        body = await request.body()
        self.requests += 1
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        items = parsed if isinstance(parsed, list) else [parsed]
        failing = self.requests <= self.options.fail_first
        status = 500 if failing else self.options.status
        common: dict[str, Any] = {
            "t": received_at,
            "method": request.method,
            "path": request.url.path,
            "chunk": request.headers.get("x-payload-chunk-id"),
            "batch": request.headers.get("x-scheduler0-batch-id"),
            "node": request.headers.get("x-scheduler0-node"),
            "webhook_id": request.headers.get("webhook-id"),
            "status": status,
        }
        if self.options.secret is not None:
            common["verified"] = signing.verify(
                self.options.secret, body, request.headers, int(time.time())
            )
            common["verified_standard"] = _verified_standard(
                self.options.secret, body, dict(request.headers)
            )
        if self.requests_sink is not None:
            self._write_request(common, dict(request.headers), body)
        self._write(common, items)
        if self.options.delay > 0:
            await asyncio.sleep(self.options.delay)
        return Response(status_code=status)

    def _write_request(self, common: dict[str, Any], headers: dict[str, str], body: bytes) -> None:
        assert self.requests_sink is not None
        record = {
            "t": common["t"],
            "method": common["method"],
            "path": common["path"],
            "status": common["status"],
            "headers": headers,
            "body_b64": base64.b64encode(body).decode(),
        }
        self.requests_sink.write(orjson.dumps(record) + b"\n")
        self.requests_sink.flush()

    def _write(self, common: dict[str, Any], items: list[Any]) -> None:
        lines = []
        for item in items:
            record = dict(common)
            if isinstance(item, dict):
                record.update({key: item[key] for key in _ITEM_FIELDS if key in item})
            lines.append(orjson.dumps(record))
        self.items += len(items)
        self.sink.write(b"\n".join(lines) + b"\n")
        self.sink.flush()


def _verified_standard(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret.encode()).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError):  # ValueError: a malformed signature
        return False
    return True


def create_app(
    options: ReceiverOptions, sink: BinaryIO, requests_sink: BinaryIO | None = None
) -> Starlette:
    recorder = _Recorder(options, sink, requests_sink)
    return Starlette(
        routes=[
            Route("/stats", recorder.stats, methods=["GET"]),
            Route(
                "/{path:path}", recorder.callback, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
            ),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="scheduler0 test callback receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--requests-out", type=Path, default=None)
    args = parser.parse_args(argv)
    options = ReceiverOptions(
        args.out, args.status, args.fail_first, args.delay, args.secret, args.requests_out
    )
    with contextlib.ExitStack() as files:
        sink = files.enter_context(args.out.open("ab"))
        requests_sink = (
            files.enter_context(args.requests_out.open("ab")) if args.requests_out else None
        )
        config = uvicorn.Config(
            create_app(options, sink, requests_sink),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        uvicorn.Server(config).run()


# -- in-test helper -----------------------------------------------------------


class RunningReceiver:
    """Handle on a receiver subprocess: where it listens and what it recorded."""

    def __init__(self, port: int, out: Path, requests_out: Path | None = None) -> None:
        self.port = port
        self.out = out
        self.requests_out = requests_out
        self.url = f"http://127.0.0.1:{port}"

    def records(self) -> list[dict[str, Any]]:
        """Every item recorded so far, in arrival order.

        The receiver may be appending while this reads: a last line without its
        newline is still being written and is left for the next call.
        """
        if not self.out.exists():
            return []
        data = self.out.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        return [orjson.loads(line) for line in complete.splitlines() if line]

    def requests(self) -> list[tuple[dict[str, Any], dict[str, str], bytes]]:
        """Every request recorded so far (``keep_requests=True``), in arrival order,
        as ``(record, headers, raw body)``. As in :meth:`records`, a last line
        still being written is left for the next call."""
        if self.requests_out is None or not self.requests_out.exists():
            return []
        data = self.requests_out.read_bytes()
        lines = data[: data.rfind(b"\n") + 1].splitlines()
        records = [orjson.loads(line) for line in lines if line]
        return [(r, r["headers"], base64.b64decode(r["body_b64"])) for r in records]

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/stats", timeout=5)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@contextlib.contextmanager
def run_receiver(
    tmp_path: Path, *, ready_timeout: float = 20.0, keep_requests: bool = False, **opts: Any
) -> Iterator[RunningReceiver]:
    """Start a receiver subprocess on a free port; stop it on exit.

    ``opts`` map to flags: ``status=500`` -> ``--status 500``,
    ``fail_first=2`` -> ``--fail-first 2``, ``delay``, ``secret``.
    ``keep_requests`` records every request's headers and raw body
    (:meth:`RunningReceiver.requests`).
    """
    flags = [
        item
        for key, value in opts.items()
        if value is not None
        for item in (f"--{key.replace('_', '-')}", str(value))
    ]
    for _ in range(3):  # a free port can be taken before the child binds it
        port = free_port()
        out = tmp_path / f"receiver-{port}.jsonl"
        requests_out = tmp_path / f"receiver-{port}.requests.jsonl" if keep_requests else None
        log_path = tmp_path / f"receiver-{port}.log"
        command = [sys.executable, "-m", "tests.support.receiver", "--port", str(port)]
        command += ["--out", str(out), *flags]
        if requests_out is not None:
            command += ["--requests-out", str(requests_out)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=log)
        try:
            receiver = RunningReceiver(port, out, requests_out)
            if _wait_ready(process, receiver, ready_timeout):
                yield receiver
                return
        finally:
            _stop(process)
    raise RuntimeError(f"receiver did not start: {log_path.read_text()}")


def _wait_ready(process: subprocess.Popen[bytes], receiver: RunningReceiver, limit: float) -> bool:
    """Wait until ``/stats`` answers (True) or the process exits (False)."""

    def answered_or_exited() -> str:
        if process.poll() is not None:
            return "exited"
        receiver.stats()  # raises a "not up yet" error until it listens
        return "answered"

    outcome = wait_until(answered_or_exited, limit, what=f"receiver on port {receiver.port}")
    return bool(outcome == "answered")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


if __name__ == "__main__":
    main()
