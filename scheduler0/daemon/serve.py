"""``scheduler0 start``: build a node, serve its API with uvicorn until SIGINT or
SIGTERM, then close it cleanly. The one module that joins the node and the API."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

import orjson

from scheduler0.config import Settings
from scheduler0.daemon import allocator, collector
from scheduler0.daemon.api.app import create_app
from scheduler0.daemon.node import PRIVATE_UMASK, Node
from scheduler0.daemon.state.schema import sqlite_too_old
from scheduler0.daemon.timefmt import iso

log = logging.getLogger("scheduler0")

HALTED_EXIT_CODE = 75
"""Exit status of a node that stopped applying because its environment failed
(EX_TEMPFAIL: restart it once the cause is fixed)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO 8601), level, logger, node, message
    (and the traceback, if any), for log pipelines that parse fields."""

    def __init__(self, node_id: int) -> None:
        super().__init__()
        self._node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "node_id": self._node_id,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(level: str, log_format: str = "text", node_id: int = 0) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(node_id))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level={"WARN": logging.WARNING}.get(level.upper(), getattr(logging, level.upper())),
        handlers=[handler],
    )
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # uvicorn's own loggers (errors, the optional access log) go through the same handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


CONFIG_EXIT_CODE = 2
"""Exit status of a node that cannot start as configured (the CLI's "bad usage
or configuration"): its HTTP port is taken or its host is not this machine's."""


def bind_http(host: str, port: int) -> socket.socket:
    """The HTTP API's listening socket, bound before anything says "serving", so
    a taken port is a configuration error at once (``OSError``), not a node that
    logs it serves and then exits. Options as uvicorn sets them itself.

    The protocol is named (``IPPROTO_TCP``, not 0): asyncio turns Nagle's
    algorithm off (``TCP_NODELAY``) only on a connection whose socket says
    TCP, and connections inherit the listening socket's. With it on, an answer
    written in two parts (uvicorn writes the head, then the body) waited for
    the client's delayed ACK: every request took 40 ms more, even a health
    check on an idle node."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


GIL_SWITCH_SECONDS = 0.0005
"""How long a thread holding the GIL runs before another may take it."""


def run_node(settings: Settings) -> int:
    """Run a node until SIGINT/SIGTERM; returns the process exit code."""
    configure_logging(settings.log_level, settings.log_format, settings.node_id)
    # The event loop (ticks, callbacks, small requests) shares the GIL with
    # threads doing CPU work (validation of a large batch, a page of 10,000
    # jobs, apply): at the default 5 ms switch interval every I/O wake-up of
    # the loop can wait that long for its turn, and a health check that needs a
    # few dozen turns waited hundreds of milliseconds (bench/isolation.py).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    # Large buffers in their own mappings, given back when freed (allocator.py).
    allocator.configure()
    # Full garbage collections do not walk the long-lived objects again and again.
    collector.configure()
    os.umask(PRIVATE_UMASK)  # every file and directory the node makes is its own
    too_old = sqlite_too_old()
    if too_old is not None:
        log.error("%s", too_old)
        return CONFIG_EXIT_CODE
    try:
        listening = bind_http(settings.host, settings.port)
    except OSError as exc:
        log.error(
            "cannot listen on %s:%s (Host/Port): %s", settings.host, settings.port, exc.strerror
        )
        return CONFIG_EXIT_CODE
    try:
        return _serve(settings, listening)
    finally:
        listening.close()


def _serve(settings: Settings, listening: socket.socket) -> int:
    """Run the node on the bound ``listening`` socket."""
    import uvicorn

    from scheduler0.daemon.http_protocol import HeadTimeoutProtocol

    node = Node(settings)
    try:
        node.start_log()
    except Exception as exc:
        log.error("%s", exc)
        node.machine.close()
        return 1
    tls = settings.protocol == "https"
    config = uvicorn.Config(
        create_app(node),
        host=settings.host,
        port=settings.port,
        log_level="info" if settings.access_log else "warning",
        access_log=settings.access_log,
        log_config=None,
        lifespan="on",
        # A request head must arrive within 10 s (http_protocol.py).
        http=HeadTimeoutProtocol,
        timeout_graceful_shutdown=5,
        # Config validation made sure both files are there and belong together.
        ssl_certfile=str(settings.tls_cert_file) if tls else None,
        ssl_keyfile=str(settings.tls_key_file) if tls else None,
    )
    server = uvicorn.Server(config)
    log.info(
        "node %s serving %s (raft %s, data %s)",
        settings.node_id,
        settings.http_base_url,
        settings.raft_address,
        settings.data_dir,
    )
    # uvicorn re-raises the signal after its graceful shutdown; make SIGTERM
    # end up here like Ctrl-C so the raft log is closed cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.run(sockets=[listening])
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
    reason = node.halted()
    if reason is not None:
        log.error("node %s stopped: %s", settings.node_id, reason)
        return HALTED_EXIT_CODE
    log.info("node %s stopped", settings.node_id)
    return 0 if server.started else 1
