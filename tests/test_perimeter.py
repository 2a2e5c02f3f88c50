"""The perimeter of a real node: where callbacks may go, the modes of its
files, what its answers can put on an operator's terminal, bodies that are
not JSON, too large, or never finished, and request heads never finished.

Two nodes: ``node`` with the defaults, started with umask 0o022; ``strict``
with ``CallbackDenyNetworks`` covering loopback, started with umask 0o000.
"""

from __future__ import annotations

import re
import select
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.nodes import (
    Client,
    NodeProcess,
    create_credential,
    operator_headers,
    running_node,
    scheduler0_command,
    wait_until,
)
from tests.support.receiver import RunningReceiver, run_receiver

pytestmark = pytest.mark.integration

FAST_SNAPSHOTS = {
    "SCHEDULER0_RAFT_SNAPSHOT_INTERVAL": "1",
    "SCHEDULER0_RAFT_SNAPSHOT_THRESHOLD": "5",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp("perimeter")
    with running_node(workdir, extra_env=FAST_SNAPSHOTS, umask=0o022) as node:
        yield node


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {**FAST_SNAPSHOTS, "SCHEDULER0_CALLBACK_DENY_NETWORKS": "127.0.0.0/8,::1/128"}
    with running_node(tmp_path_factory.mktemp("strict"), extra_env=env, umask=0) as node:
        yield node


def client_of(node: NodeProcess) -> Client:
    return Client(node.api, create_credential(node))


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> Iterator[Client]:
    c = client_of(node)
    yield c
    c.close()


@pytest.fixture(scope="module")
def project(client: Client) -> int:
    found: int = client.data("POST", "/projects", 201, json={"name": "perimeter"})["id"]
    return found


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningReceiver]:
    with run_receiver(tmp_path_factory.mktemp("receiver")) as receiver:
        yield receiver


def job(project: int, url: str, **extra: Any) -> dict[str, Any]:
    return {"project_id": project, "spec": "@every 1h", "callback_url": url, **extra}


def refused_urls(node: NodeProcess) -> list[str]:
    return [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://0.0.0.0:3000/",
        "http://[::]:3000/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://127.1/",
        "http://017700000001/",
        "http://[::ffff:127.0.0.1]/",
        "http://user:pw@127.0.0.1:3000/",
        f"http://127.0.0.1:{node.port}/api/v1/credentials",
        f"http://localhost:{node.port}/api/v1/credentials",
        f"http://127.0.0.1:{node.raft_port}/",
    ]


def jobs_total(client: Client) -> int:
    total: int = client.data("GET", "/jobs", params={"limit": 1})["total"]
    return total


def test_each_refused_destination_is_refused_at_create_naming_its_index(
    node: NodeProcess, client: Client, project: int, receiver: RunningReceiver
) -> None:
    urls = refused_urls(node)
    allowed = job(project, f"http://127.0.0.1:{receiver.port}/cb")
    before = jobs_total(client)
    response = client.call("POST", "/jobs", json=[allowed, *(job(project, u) for u in urls)])
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert [(d["field"], d["index"]) for d in details] == [
        ("callback_url", i + 1) for i in range(len(urls))
    ]
    assert all(d["message"].startswith("destination refused: ") for d in details)
    assert jobs_total(client) == before  # nothing created


def test_each_refused_destination_is_refused_at_update(
    node: NodeProcess, client: Client, project: int, receiver: RunningReceiver
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/cb"
    created = client.data("POST", "/jobs", 201, json=job(project, url))
    for refused in refused_urls(node):
        response = client.call("PUT", f"/jobs/{created['id']}", json={"callback_url": refused})
        assert response.status_code == 422, (refused, response.text)
        [detail] = response.json()["error"]["details"]
        assert detail["field"] == "callback_url"
    assert client.data("GET", f"/jobs/{created['id']}")["callback_url"] == url


def test_a_local_receiver_and_private_addresses_stay_allowed(
    client: Client, project: int, receiver: RunningReceiver
) -> None:
    created = client.data(
        "POST",
        "/jobs",
        201,
        json=[
            job(project, f"http://127.0.0.1:{receiver.port}/callback"),
            job(project, "http://10.20.30.40:8080/hook"),
            job(project, "http://[::1]:3000/"),
        ],
    )
    assert len(created) == 3


def test_a_denied_network_is_refused_at_create_and_again_when_a_name_resolves_into_it(
    strict: NodeProcess, receiver: RunningReceiver
) -> None:
    client = client_of(strict)
    try:
        project = client.data("POST", "/projects", 201, json={"name": "strict"})["id"]
        response = client.call("POST", "/jobs", json=job(project, "http://127.0.0.1:3000/"))
        assert response.status_code == 422, response.text
        assert "CallbackDenyNetworks (127.0.0.0/8)" in response.json()["error"]["message"]
        # A name is accepted as written and judged once resolved, when sent.
        url = f"http://localhost:{receiver.port}/cb"
        created = client.data("POST", "/jobs", 201, json=job(project, url))
        client.data("POST", f"/jobs/{created['id']}/run", 202)

        def finished() -> dict[str, Any] | None:
            rows = client.data("GET", f"/jobs/{created['id']}/executions")["executions"]
            done = [r for r in rows if r["state"] in ("success", "failed")]
            return done[0] if done else None

        row = wait_until(finished, 30.0, what="the run-now execution finished")
        assert row["state"] == "failed" and row["attempts"] == 1, row
        assert row["error"].startswith("destination refused: "), row
        assert "CallbackDenyNetworks" in row["error"] and "localhost resolves to" in row["error"]
        assert receiver.records() == []  # nothing reached it
    finally:
        client.close()


def assert_private(node: NodeProcess) -> None:
    data_dir = node.workdir / "data"
    names = {"state.db", "state.db-wal", "raft.journal", "raft.snapshot"}

    def all_there() -> bool:
        return names <= {p.name for p in data_dir.iterdir()}

    wait_until(all_there, 30.0, what=f"{sorted(names)} in {data_dir}")
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    modes = {
        str(p.relative_to(data_dir)): stat.S_IMODE(p.stat().st_mode)
        for p in data_dir.rglob("*")
        if p.exists()
    }
    assert names <= modes.keys()
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}


@pytest.mark.parametrize("which", ["umask 022", "umask 000"])
def test_the_data_dir_is_0700_and_every_file_in_it_0600(
    which: str, node: NodeProcess, strict: NodeProcess
) -> None:
    target = node if which == "umask 022" else strict
    c = client_of(target)
    try:
        for i in range(8):  # enough entries for a snapshot
            c.data("POST", "/projects", 201, json={"name": f"modes-{which}-{i}"})
    finally:
        c.close()
    assert_private(target)


def test_cli_output_carries_no_escape_sequence_from_the_server(
    node: NodeProcess, client: Client, project: int, receiver: RunningReceiver
) -> None:
    hostile = "evil\x1b[2J\x1b]2;owned\x07\u202etxt.exe"
    operator = Client(node.api, operator_headers())
    try:
        operator.data("POST", "/credentials", 201, json={"description": hostile})
    finally:
        operator.close()
    url = f"http://127.0.0.1:{receiver.port}/cb"
    created = client.data("POST", "/jobs", 201, json=job(project, url, data=hostile))
    for args in (["credentials", "list"], ["jobs", "get", str(created["id"])]):
        out = subprocess.run(
            [*scheduler0_command(), *args, "--node", node.url],
            cwd=node.workdir,
            env={**node.env(), "COLUMNS": "400"},  # wide enough that no cell is folded
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert b"\x1b" not in out.stdout + out.stderr
        assert b"\x07" not in out.stdout and "\u202e".encode() not in out.stdout
        assert b"evil\\x1b[2J\\x1b]2;owned\\x07\\u202etxt.exe" in out.stdout, out.stdout


def test_a_project_name_with_control_characters_is_refused_by_name(client: Client) -> None:
    for field, value in (("name", "evil\x1b[2J"), ("name", "nul\x00"), ("name", "a\u202eb")):
        response = client.call("POST", "/projects", json={field: value})
        assert response.status_code == 422, response.text
        [detail] = response.json()["error"]["details"]
        assert detail["field"] == field
    response = client.call("POST", "/projects", json={"name": "ok-desc", "description": "\x1b]"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "description"


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("text/plain", b'{"name": "plain"}'),
        ("application/x-www-form-urlencoded", b"name=form"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nmultipart\r\n--x--\r\n',
        ),
    ],
)
def test_a_body_that_is_not_json_answers_415(
    client: Client, project: int, content_type: str, body: bytes
) -> None:
    for path, payload in (("/projects", body), ("/jobs", body)):
        response = client.call(
            "POST", path, content=payload, headers={"content-type": content_type}
        )
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == "unsupported_media_type"
    names = [p["name"] for p in client.data("GET", "/projects")["projects"]]
    assert not {"plain", "form", "multipart"} & set(names)


def test_job_data_over_the_cap_is_refused_naming_the_field_and_index(
    client: Client, project: int, receiver: RunningReceiver
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/cb"
    limit = 64 * 1024
    fits = "x" * (limit - 2)  # as JSON: the string and its two quotes
    over = "x" * (limit - 1)
    created = client.data("POST", "/jobs", 201, json=job(project, url, data=fits))
    response = client.call("POST", "/jobs", json=[job(project, url), job(project, url, data=over)])
    assert response.status_code == 422, response.text[:300]
    [detail] = response.json()["error"]["details"]
    assert (detail["field"], detail["index"]) == ("data", 1)
    assert f"at most {limit} (MaxJobDataKb)" in detail["message"]
    response = client.call("PUT", f"/jobs/{created['id']}", json={"data": over})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "data"


def aborted_upload(node: NodeProcess, headers: dict[str, str]) -> None:
    """A POST that promises 1 MB, sends 1 KB and hangs up."""
    lines = [
        "POST /api/v1/jobs HTTP/1.1",
        f"host: 127.0.0.1:{node.port}",
        "content-type: application/json",
        "content-length: 1000000",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"[" + b" " * 1000)


def test_an_aborted_upload_is_one_quiet_line_and_no_traceback(node: NodeProcess) -> None:
    credential = create_credential(node)
    log = node.workdir / "node.log"
    before = log.read_text(errors="replace")
    for _ in range(5):
        aborted_upload(node, credential)

    def quiet_lines() -> list[str]:
        added = log.read_text(errors="replace")[len(before) :]
        return [line for line in added.splitlines() if "the client disconnected" in line]

    wait_until(lambda: len(quiet_lines()) >= 5, 30.0, what="5 disconnect lines")
    added = log.read_text(errors="replace")[len(before) :]
    assert len(quiet_lines()) == 5
    assert all(" INFO " in line for line in quiet_lines()), quiet_lines()
    assert "Traceback" not in added and " ERROR " not in added, added


def test_a_request_whose_head_or_body_stops_coming_is_closed(
    node: NodeProcess, client: Client
) -> None:
    """One connection sends nothing; one sends a request line and then a
    header byte every half second (slow loris); one sends a whole head and 10
    of the 1,000 body bytes it promised. Each is answered or closed after 10 s
    without progress: the first closed, the second closed with a 408, the
    third answered 408 ``request_timeout``. The node serves others meanwhile."""
    credential = create_credential(node)
    port = node.port
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    loris = socket.create_connection(("127.0.0.1", port), timeout=5)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened = time.monotonic()
    loris.sendall(f"GET /api/v1/healthcheck HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-a: ".encode())
    head = [
        "POST /api/v1/projects HTTP/1.1",
        f"host: 127.0.0.1:{port}",
        "content-type: application/json",
        "content-length: 1000",
        *(f"{k}: {v}" for k, v in credential.items()),
    ]
    stalled.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"name": "')
    answers = {silent: b"", loris: b"", stalled: b""}
    closed_after: dict[socket.socket, float] = {}
    served = 0
    try:
        while len(closed_after) < 3 and time.monotonic() - opened < 30:
            open_ = [sock for sock in answers if sock not in closed_after]
            readable, _, _ = select.select(open_, [], [], 0.5)
            for sock in readable:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:  # closed with the loris's last bytes unread
                    data = b""
                answers[sock] += data
                if not data:
                    closed_after[sock] = time.monotonic() - opened
            if loris not in closed_after:
                try:
                    loris.sendall(b"a")
                except OSError:
                    closed_after.setdefault(loris, time.monotonic() - opened)
            client.data("GET", "/jobs", params={"limit": 1})
            served += 1
    finally:
        for sock in answers:
            sock.close()
    assert set(closed_after) == set(answers), f"closed by 30 s: {len(closed_after)} of 3"
    assert all(9.0 <= after <= 15.0 for after in closed_after.values()), closed_after
    assert answers[silent] == b""
    # The 408 written to the loris may be lost to the reset its unread bytes cause.
    loris_answer = answers[loris]
    assert loris_answer == b"" or loris_answer.startswith(b"HTTP/1.1 408 "), loris_answer[:80]
    assert answers[stalled].startswith(b"HTTP/1.1 408 "), answers[stalled][:80]
    assert b'"code":"request_timeout"' in answers[stalled], answers[stalled]
    assert served >= 10


def test_a_request_still_coming_is_not_cut_by_the_head_deadline(node: NodeProcess) -> None:
    """Bytes that keep coming are not a stalled head: a request pipelined
    behind another, its body a byte every 2 s for 14 s, is answered; an
    upload refused before its body came (401) may finish sending it, 12 s
    at 128 KB a second, and gets no second answer."""
    credential = create_credential(node)
    port = node.port
    body = b'{"name": "pipelined-behind-a-health-check"}'
    pipelined = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = [
        "POST /api/v1/projects HTTP/1.1",
        f"host: 127.0.0.1:{port}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in credential.items()),
    ]
    pipelined.sendall(
        f"GET /api/v1/healthcheck HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()
        + ("\r\n".join(head) + "\r\n\r\n").encode()
        + body[:1]
    )
    upload_size = 24 * 64 * 1024
    refused = socket.create_connection(("127.0.0.1", port), timeout=5)
    refused.sendall(
        f"POST /api/v1/projects HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {upload_size}\r\n\r\n".encode()
    )
    answers = {pipelined: b"", refused: b""}
    closed: set[socket.socket] = set()
    opened = time.monotonic()
    body_sent, uploaded = 1, 0
    try:
        while time.monotonic() - opened < 16:
            readable, _, _ = select.select([s for s in answers if s not in closed], [], [], 0.1)
            for sock in readable:
                data = sock.recv(65536)
                answers[sock] += data
                if not data:
                    closed.add(sock)
            elapsed = time.monotonic() - opened
            if body_sent < len(body) and elapsed >= 2 * min(body_sent, 7):
                # a byte every 2 s for 14 s, then the rest
                end = body_sent + 1 if body_sent < 7 else len(body)
                pipelined.sendall(body[body_sent:end])
                body_sent = end
            if uploaded < upload_size and elapsed >= uploaded / (128 * 1024):
                refused.sendall(b" " * 65536)
                uploaded += 65536
    finally:
        for sock in answers:
            sock.close()
    assert closed == set(), "the node closed a connection that kept sending"
    assert status_lines(answers[pipelined]) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 201 Created"]
    assert uploaded == upload_size
    assert status_lines(answers[refused]) == [b"HTTP/1.1 401 Unauthorized"]


def status_lines(stream: bytes) -> list[bytes]:
    """The status lines of the answers on one connection (bodies have no CRLF)."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", stream)
