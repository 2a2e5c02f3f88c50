"""``scheduler0 start``: build a node, serve its API with uvicorn until SIGINT or
SIGTERM, then close it cleanly. The one module that joins the node and the API."""

from __future__ import annotations

import logging
import signal
import sys

from scheduler0.config import Settings
from scheduler0.daemon.api.app import create_app
from scheduler0.daemon.node import Node

log = logging.getLogger("scheduler0")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level={"WARN": logging.WARNING}.get(level.upper(), getattr(logging, level.upper())),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_node(settings: Settings) -> int:
    """Run a node until SIGINT/SIGTERM; returns the process exit code."""
    import uvicorn

    configure_logging(settings.log_level)
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
        log_level="warning",
        access_log=False,
        lifespan="on",
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
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
    return 0 if server.started else 1
