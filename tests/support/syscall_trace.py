"""Node processes run under strace, and what their traces show about flushes.

``TracedNode`` runs ``scheduler0 start`` under ``strace -f`` writing one trace
file (epoch timestamps to the microsecond, only the syscalls named in
``TRACED``, filtered in the kernel with ``--seccomp-bpf`` so the node is not
slowed on the others). ``parse_trace`` turns the file into ``Syscall`` records
(a call that another thread interrupted, ``<unfinished ...>`` then
``<... resumed>``, becomes one record with its start and end times), and
``JournalMaps`` tells which ``msync`` calls flushed the raft journal: msync
takes an address, so the journal's mappings are followed from the ``openat``
of ``raft.journal`` through ``mmap`` and ``mremap``.

The helpers ``leader_flush`` and ``follower_flush`` find, for one write, the
syscalls that prove (or disprove) that a flush of the journal came between
the entry's arrival and its acknowledgement; tests assert on them and
``bench/durability_trace.py`` prints them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.nodes import NodeProcess, scheduler0_command, wait_until

TRACED = "openat,mmap,mremap,msync,fsync,fdatasync,sendto,sendmsg,recvfrom,write,connect,accept4"


def strace_unavailable() -> str | None:
    """Why nodes cannot be traced here, or None."""
    strace = shutil.which("strace")
    if strace is None:
        return "strace is not installed"
    probe = subprocess.run(
        [strace, "-f", "-o", os.devnull, "-e", "trace=msync", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()}"
    return None


@dataclass
class TracedNode(NodeProcess):
    """A node process under ``strace -f``; its trace is ``workdir/strace.txt``.

    ``proc`` is strace; the node is strace's child (``tracee_pid``). Stopping
    signals the node and waits for strace to exit after it: killing strace
    alone would detach from the node and leave it running."""

    string_limit: int = 65536
    """Whole buffers (hex, ``-xx``): a follower's reads are split into raft's
    frames to tell which reply answers the entry."""

    @property
    def trace_path(self) -> Path:
        return self.workdir / "strace.txt"

    def start(self, wait: bool = True) -> NodeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "node.log", "ab")  # noqa: SIM115 - lives with the process
        strace = shutil.which("strace") or "strace"
        self.proc = subprocess.Popen(
            [
                strace,
                "-f",
                "--seccomp-bpf",
                "-ttt",
                "-xx",
                "-s",
                str(self.string_limit),
                "-e",
                f"trace={TRACED}",
                "-o",
                str(self.trace_path),
                *scheduler0_command(),
                "start",
            ],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait:
            self.wait_ready(60.0)
        return self

    def tracee_pid(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None

    def _signal_node(self, signum: int, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pid = self.tracee_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        """kill -9 the node (no clean shutdown: pysyncobj's own flush at close
        never runs), then wait for strace to write the rest and exit."""
        self._signal_node(signal.SIGKILL, 20.0)

    def terminate(self, timeout: float = 15.0) -> int:
        self._signal_node(signal.SIGTERM, timeout)
        assert self.proc is not None
        return self.proc.returncode

    def wait_traced(self, timeout: float = 10.0) -> None:
        """Wait until the tracee runs (strace has started it)."""
        wait_until(self.tracee_pid, timeout, what="the traced node process")


# --- the trace ---------------------------------------------------------------------

_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*?)(?: <unfinished \.\.\.>)?$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\w+)(?:\s.*)?$")
_HEX_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


@dataclass
class Syscall:
    pid: int
    """Thread id (strace -f names threads by their own id)."""
    name: str
    start: float
    end: float
    args: str
    result: str | None
    line: str
    """The trace line(s) as strace wrote them, for showing."""

    @property
    def fd(self) -> int | None:
        head = self.args.split(",", 1)[0].strip()
        return int(head) if head.isdigit() else None

    @property
    def returned(self) -> int:
        try:
            return int(self.result or "", 0)
        except ValueError:
            return -1

    @property
    def data(self) -> bytes:
        """The first string argument (a buffer, a path), decoded from ``-xx`` hex."""
        match = _HEX_STRING.search(self.args)
        return bytes.fromhex(match[1].replace("\\x", "")) if match else b""

    def buffer_starts(self, text: str) -> bool:
        return self.data.startswith(text.encode())


def parse_trace(path: Path) -> list[Syscall]:
    """The syscalls of ``path`` in the order they started."""
    calls: list[Syscall] = []
    pending: dict[tuple[int, str], Syscall] = {}
    for raw in path.read_text(errors="replace").splitlines():
        match = _LINE.match(raw)
        if match is None:
            continue
        pid, when, rest = int(match[1]), float(match[2]), match[3]
        resumed = _RESUMED.match(rest)
        if resumed is not None:
            call = pending.pop((pid, resumed[1]), None)
            if call is None:
                continue
            call.args += resumed[2]
            call.end = when
            result = _RESULT.search(resumed[2])
            call.result = result[1] if result else None
            call.line += "\n" + raw
            continue
        opened = _CALL.match(rest)
        if opened is None:
            continue
        call = Syscall(pid, opened[1], when, when, opened[2], None, raw)
        if rest.endswith("<unfinished ...>"):
            pending[(pid, call.name)] = call
        else:
            result = _RESULT.search(rest)
            call.result = result[1] if result else None
        calls.append(call)
    return calls


@dataclass
class JournalMaps:
    """Which address ranges map ``raft.journal``, followed through the trace."""

    ranges: list[tuple[int, int]] = field(default_factory=list)
    _fds: dict[int, str] = field(default_factory=dict)

    def follow(self, call: Syscall) -> None:
        args = [a.strip() for a in call.args.split(",")]
        if call.name == "openat" and call.returned >= 0:
            self._fds[call.returned] = call.data.decode(errors="replace")
        elif call.name == "mmap" and len(args) >= 5 and call.result not in (None, "-1"):
            fd = int(args[4]) if args[4].lstrip("-").isdigit() else -1
            if self._fds.get(fd, "").endswith("raft.journal"):
                self.ranges.append((int(call.result or "0", 16), int(args[1])))
        elif call.name == "mremap" and len(args) >= 3 and call.result not in (None, "-1"):
            old = int(args[0], 16)
            for i, (start, _) in enumerate(self.ranges):
                if start == old:
                    self.ranges[i] = (int(call.result or "0", 16), int(args[2]))

    def is_journal_flush(self, call: Syscall) -> bool:
        if call.name != "msync" or call.returned != 0:
            return False
        address = int(call.args.split(",", 1)[0], 16)
        return any(start <= address < start + size for start, size in self.ranges)


def journal_flushes(calls: list[Syscall]) -> list[Syscall]:
    """Every msync of the raft journal in ``calls`` (a whole trace, in order)."""
    maps = JournalMaps()
    flushes = []
    for call in calls:
        maps.follow(call)
        if maps.is_journal_flush(call):
            flushes.append(call)
    return flushes


# --- one write: its arrival, its flushes, its acknowledgements ----------------------


@dataclass
class WriteTrace:
    """One HTTP write as the leader's trace shows it."""

    request: Syscall
    """The recvfrom that read the request."""
    answer: Syscall
    """The send of the HTTP answer."""
    replicated: list[Syscall]
    """The leader's sends of the entry to its followers (big raft sends)."""
    flushes: list[Syscall]
    """Journal msyncs that ended after the entry was sent and before the answer."""
    acks: list[Syscall]
    """What the leader read from its followers' links between sending the entry
    and answering (their replies)."""


def leader_write(
    calls: list[Syscall], request_line: str, answer_status: str, entry_bytes: int
) -> WriteTrace:
    """Find the write whose request starts with ``request_line`` in a leader's trace.

    The entry is appended to the journal before it is sent to the followers,
    so a flush of it ends after the first send of ``entry_bytes`` or more."""
    request = next(c for c in calls if c.name == "recvfrom" and c.buffer_starts(request_line))
    answer = next(
        c
        for c in calls
        if c.start > request.end
        and c.name in ("sendto", "sendmsg", "write")
        and c.buffer_starts(f"HTTP/1.1 {answer_status}")
    )
    replicated = [
        c
        for c in calls
        if request.end < c.start < answer.start
        and c.name in ("sendto", "sendmsg")
        and c.returned >= entry_bytes
    ]
    after = replicated[0].end if replicated else request.end
    flushes = [f for f in journal_flushes(calls) if after < f.end < answer.start]
    links = {c.fd for c in replicated}
    acks = [
        c
        for c in calls
        if c.name == "recvfrom"
        and c.fd in links
        and c.returned > 0
        and after < c.start < answer.start
    ]
    return WriteTrace(request, answer, replicated, flushes, acks)


KEEPALIVE_MAX = 328
"""Raft frames (4-byte length included) up to this size are not append_entries
(which get a reply each): measured, the keepalive is 296 bytes and a heartbeat
append_entries 360 (more as its numbers grow)."""


@dataclass
class Frame:
    """One raft message as read from a socket: pysyncobj frames each with its length."""

    size: int
    """Bytes, the 4-byte length included."""
    read: Syscall
    """The recvfrom that completed it."""
    batch: int
    """pysyncobj reads a socket until EAGAIN and then handles every whole frame
    in order: frames of one batch are handled one after the other."""
    batch_end: Syscall | None = None
    """The EAGAIN read that ended its batch (handling starts after it)."""


def frames_read(calls: list[Syscall], fd: int) -> list[Frame]:
    """Every whole frame read from ``fd``, in order (a new connection on the
    same descriptor starts a new stream)."""
    frames: list[Frame] = []
    buffer, batch = b"", 0
    open_batch: list[Frame] = []
    for call in calls:
        if call.fd != fd and not (call.name == "accept4" and call.returned == fd):
            continue
        if call.name in ("connect", "accept4"):
            buffer = b""
            continue
        if call.name != "recvfrom":
            continue
        if call.returned <= 0:  # EAGAIN: the batch is over
            for frame in open_batch:
                frame.batch_end = call
            open_batch, batch = [], batch + 1
            continue
        buffer += call.data
        while len(buffer) >= 4:
            (size,) = struct.unpack_from("<i", buffer)
            if size < 0 or size > 1 << 30:  # not a frame boundary: resynchronise
                buffer = b""
                break
            if len(buffer) < 4 + size:
                break
            frame = Frame(4 + size, call, batch)
            frames.append(frame)
            open_batch.append(frame)
            buffer = buffer[4 + size :]
    return frames


@dataclass
class FollowerReply:
    """A follower receiving the entry and replying to the leader."""

    received: Syscall
    """The recvfrom that completed the entry's frame."""
    reply: Syscall | None
    """The send that answers the entry (next_node_idx): after the replies to the
    append_entries handled before it in the same batch."""
    flushes: list[Syscall]
    """Journal msyncs that ended after the entry arrived and before the reply."""


def follower_reply(calls: list[Syscall], since: float, entry_bytes: int) -> FollowerReply | None:
    """In a follower's trace, the first frame of ``entry_bytes`` or more read
    after ``since`` (the leader's request), and the reply to it."""
    fds = {c.fd for c in calls if c.name == "recvfrom" and c.returned >= entry_bytes}
    streams = {fd: frames_read(calls, fd) for fd in fds if fd is not None}
    candidates = [
        (frame.read.end, fd, i)
        for fd, frames in streams.items()
        for i, frame in enumerate(frames)
        if frame.size >= entry_bytes and frame.read.end > since
    ]
    if not candidates:
        return None
    _, fd, index = min(candidates)
    entry = streams[fd][index]
    # Frames handled before the entry in its batch that get a reply of their own.
    before = [f for f in streams[fd][:index] if f.batch == entry.batch and f.size > KEEPALIVE_MAX]
    handled_from = entry.batch_end.end if entry.batch_end is not None else entry.read.end
    sends = [
        c
        for c in calls
        if c.name in ("sendto", "sendmsg") and c.fd == fd and c.start > handled_from
    ]
    reply = sends[len(before)] if len(sends) > len(before) else None
    limit = reply.start if reply is not None else float("inf")
    flushes = [f for f in journal_flushes(calls) if entry.read.end < f.end < limit]
    return FollowerReply(entry.read, reply, flushes)


def _preview(match: re.Match[str]) -> str:
    data = bytes.fromhex(match[1].replace("\\x", ""))
    return '"' + repr(data[:40])[2:-1] + ('"...' if len(data) > 40 else '"')


def excerpt(*calls: Syscall | None, origin: float) -> list[str]:
    """The calls as trace lines, in time order, with times relative to ``origin``
    (ms) and their buffers shortened to their first 40 bytes."""
    shown = sorted({id(c): c for c in calls if c is not None}.values(), key=lambda c: c.start)
    lines: list[str] = []
    for call in shown:
        for raw in call.line.splitlines():
            match = _LINE.match(raw)
            if match is None:
                continue
            text = _HEX_STRING.sub(_preview, match[3])
            lines.append(f"{(float(match[2]) - origin) * 1000:+9.3f} ms  {text}")
    return lines


# --- one write through a traced cluster ---------------------------------------------

ENTRY_BYTES = 2000
"""A raft message at least this big carries the test's write: its project
description is 4,096 random characters (about 3 KB once compressed), while
heartbeats, replies and keepalives are a few hundred bytes."""


@dataclass
class TracedWrite:
    leader: WriteTrace
    followers: dict[int, FollowerReply | None]
    """By node id."""
    flushes_per_node: dict[int, int]
    """Journal msyncs in each node's whole trace."""


def trace_one_write(root: Path, size: int, flush_before_ack: bool) -> TracedWrite:
    """Run ``size`` traced nodes, write one project through the leader, stop them
    all (kill -9: pysyncobj's flush at a clean close never runs) and read their
    traces. Every process started here is stopped here."""
    import secrets

    import httpx

    from tests.support.nodes import Cluster, create_credential

    env = {"SCHEDULER0_FLUSH_BEFORE_ACK": "true" if flush_before_ack else "false"}
    cluster = Cluster(root, size, extra_env=env)
    cluster.nodes = [
        TracedNode(
            n.workdir,
            node_id=n.node_id,
            port=n.port,
            raft_port=n.raft_port,
            extra_env=n.extra_env,
            replicas=n.replicas if size > 1 else None,
        )
        for n in cluster.nodes
    ]
    try:
        cluster.start(timeout=90.0)
        leader = cluster.wait_leader(60.0)
        headers = create_credential(leader)
        description = secrets.token_urlsafe(4096)[:4096]
        response = httpx.post(
            f"{leader.api}/projects",
            json={"name": "traced", "description": description},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 201, (response.status_code, response.text[:300])

        def applied_everywhere() -> bool:
            # A follower applies the entry after the commit, so after its reply:
            # its trace then holds the whole exchange before it is stopped.
            for node in cluster.nodes:
                names = httpx.get(f"{node.api}/projects", headers=headers, timeout=5)
                names.raise_for_status()
                if "traced" not in {p["name"] for p in names.json()["data"]["projects"]}:
                    return False
            return True

        wait_until(applied_everywhere, 30, what="the write applied on every node")
    finally:
        cluster.kill_all()
    traces = {n.node_id: parse_trace(n.workdir / "strace.txt") for n in cluster.nodes}  # type: ignore[attr-defined]
    write = leader_write(traces[leader.node_id], "POST /api/v1/projects", "201", ENTRY_BYTES)
    followers = {
        node_id: follower_reply(calls, write.request.end, ENTRY_BYTES)
        for node_id, calls in traces.items()
        if node_id != leader.node_id
    }
    return TracedWrite(
        leader=write,
        followers=followers,
        flushes_per_node={i: len(journal_flushes(calls)) for i, calls in traces.items()},
    )
