"""Real scheduler0 node processes for tests and benchmarks.

``NodeProcess`` runs ``scheduler0 start`` in its own directory on 127.0.0.1,
waits for it by polling the health check (bounded), and always stops it.
``Cluster`` forms N of them sharing one set of secrets.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port

SECRETS = {
    "SCHEDULER0_SECRET_KEY": "0" * 64,
    "SCHEDULER0_AUTH_USERNAME": "operator",
    "SCHEDULER0_AUTH_PASSWORD": "test-password",
}


def scheduler0_command() -> list[str]:
    """The installed ``scheduler0`` console script, as a user runs it."""
    script = Path(sys.executable).parent / "scheduler0"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "scheduler0.cli.main"]


NOT_UP_YET: tuple[type[BaseException], ...] = (
    httpx.TransportError,
    httpx.HTTPStatusError,
    OSError,
)
"""The errors :func:`wait_until` retries: something is not up (yet, or again).

* ``httpx.TransportError``: nothing listens on the port yet, the connection was
  reset by a node being killed, or a request timed out on a busy node;
* ``httpx.HTTPStatusError``: a node answered, but with an error status (e.g.
  ``503`` while it has no quorum); callers turn that into an exception with
  ``raise_for_status()`` rather than index into an error body;
* ``OSError`` (which includes ``ConnectionError``): a socket, a pipe or a file
  such as a receiver's output that is not there yet.

Deliberately NOT retried: ``AssertionError`` (a condition that checks something
and finds it wrong has failed; retrying would turn the failure into a timeout
that hides the message), ``KeyError``/``ValueError``/``TypeError`` (a body of
an unexpected shape is a bug in the node or in the test, not a slow start), and
anything else unexpected (``RuntimeError`` from a node process that exited).
These propagate at once, from the first call that raises them.
"""


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that.

    Bounded: raises ``TimeoutError`` after ``timeout`` seconds, naming ``what``
    and the last "not up yet" error seen. Only the errors of :data:`NOT_UP_YET`
    count as "not yet" and are retried; every other exception, assertion errors
    first of all, propagates at once. ``interval`` is the polling period, not a
    synchronisation sleep: the condition decides when the wait is over.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except NOT_UP_YET as exc:
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error is not None else "")
            )
        time.sleep(interval)


def operator_headers() -> dict[str, str]:
    token = base64.b64encode(
        f"{SECRETS['SCHEDULER0_AUTH_USERNAME']}:{SECRETS['SCHEDULER0_AUTH_PASSWORD']}".encode()
    ).decode()
    return {"authorization": f"Basic {token}", "x-peer": "cmd"}


@dataclass
class NodeProcess:
    workdir: Path
    node_id: int = 1
    port: int = field(default_factory=free_port)
    raft_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    replicas: list[dict[str, Any]] | None = None
    proc: subprocess.Popen[bytes] | None = None
    umask: int = -1
    """The node process's umask (-1: this process's)."""
    ca_file: Path | None = None
    """Set for a node serving https (its ``extra_env`` holds the TLS settings):
    its URLs are https and the test's own requests verify against this CA."""

    @property
    def scheme(self) -> str:
        return "http" if self.ca_file is None else "https"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """``verify=`` for httpx requests to this node."""
        return True if self.ca_file is None else ssl.create_default_context(cafile=self.ca_file)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def raft_address(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER0_")}
        env.update(SECRETS)
        env.update(
            {
                "SCHEDULER0_NODE_ID": str(self.node_id),
                "SCHEDULER0_PORT": str(self.port),
                "SCHEDULER0_HOST": "127.0.0.1",
                "SCHEDULER0_RAFT_ADDRESS": self.raft_address,
                "SCHEDULER0_DATA_DIR": str(self.workdir / "data"),
                "SCHEDULER0_LOG_LEVEL": "INFO",
            }
        )
        if self.replicas is not None:
            import json

            env["SCHEDULER0_REPLICAS"] = json.dumps(self.replicas)
        env.update(self.extra_env)
        return env

    def start(self, wait: bool = True) -> NodeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "node.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [*scheduler0_command(), "start"],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            umask=self.umask,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/healthcheck", timeout=1.0, verify=self.verify)
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log_tail()}")
            return bool(self.health().get("ready"))

        wait_until(ready, timeout, what=f"node {self.node_id} ready")

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "node.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9: no clean shutdown of anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()


class Client:
    """A thin test client speaking the envelope."""

    def __init__(
        self, base: str, headers: dict[str, str], verify: ssl.SSLContext | bool = True
    ) -> None:
        self.http = httpx.Client(base_url=base, headers=headers, timeout=30.0, verify=verify)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def data(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == expect, (response.status_code, response.text[:500])
        body = response.json()
        assert body["success"] is True
        return body["data"]

    def close(self) -> None:
        self.http.close()


def create_credential(node: NodeProcess) -> dict[str, str]:
    """Through the real CLI, as an operator would."""
    out = subprocess.run(
        [*scheduler0_command(), "create", "credential", "--json", "--node", node.url],
        cwd=node.workdir,
        env=node.env(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    import json

    data: dict[str, str] = json.loads(out.stdout)
    return {"x-api-key": data["api_key"], "x-secret-key": data["api_secret"]}


@contextlib.contextmanager
def running_node(workdir: Path, **kwargs: Any) -> Iterator[NodeProcess]:
    node = NodeProcess(workdir, **kwargs)
    try:
        node.start()
        yield node
    finally:
        node.kill()


class Cluster:
    """N real node processes forming one raft cluster on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        size: int,
        extra_env: dict[str, str] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.root = root
        ports = [(free_port(), free_port()) for _ in range(size)]
        scheme = "http" if ca_file is None else "https"
        self.replicas = [
            {
                "Address": f"{scheme}://127.0.0.1:{p}",
                "RaftAddress": f"127.0.0.1:{r}",
                "NodeId": i + 1,
            }
            for i, (p, r) in enumerate(ports)
        ]
        self.nodes = [
            NodeProcess(
                root / f"node{i + 1}",
                node_id=i + 1,
                port=p,
                raft_port=r,
                replicas=self.replicas,
                extra_env=dict(extra_env or {}),
                ca_file=ca_file,
            )
            for i, (p, r) in enumerate(ports)
        ]

    def start(self, timeout: float = 60.0) -> Cluster:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready(timeout)
        self.wait_leader(timeout)
        return self

    def by_id(self, node_id: int) -> NodeProcess:
        return next(n for n in self.nodes if n.node_id == node_id)

    def alive(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def leader(self) -> NodeProcess | None:
        for node in self.alive():
            try:
                health = node.health()
            except NOT_UP_YET:  # killed, stopped or still starting: not the leader
                continue
            if health.get("role") == "leader" and health.get("has_quorum"):
                return node
        return None

    def wait_leader(self, timeout: float = 30.0) -> NodeProcess:
        leader: NodeProcess = wait_until(self.leader, timeout, what="a leader with quorum")
        return leader

    def status(self, via: NodeProcess | None = None) -> dict[str, Any]:
        node = via or self.wait_leader()
        response = httpx.get(
            f"{node.api}/cluster", headers=operator_headers(), timeout=10, verify=node.verify
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()


@contextlib.contextmanager
def running_cluster(root: Path, size: int, **kwargs: Any) -> Iterator[Cluster]:
    cluster = Cluster(root, size, **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill_all()
