"""Where callbacks may go: the destination policy.

A callback URL is chosen by any client, and the node POSTs to it from inside
the operator's network, then stores the start of the answer where the client
reads it. Without a policy a client could make the node read the cloud
metadata service, the node's own API or raft port, or anything else the node
reaches. Refused, always:

- URLs with user info (``http://user:pw@host/``: the password would be shown
  to every client that lists the job);
- IP literals in any form but the canonical one (``0x7f000001``,
  ``2130706433``, ``127.1``, ``017700000001``, ``127.0.0.1.``), which
  resolvers read as addresses while they look like names, and IPv4-mapped
  IPv6 literals (``[::ffff:127.0.0.1]``: write the IPv4 address);
- link-local addresses (169.254.0.0/16, fe80::/10), cloud metadata addresses
  (fd00:ec2::254, 100.100.100.200) and names (``metadata.google.internal``);
- unspecified (0.0.0.0, ::), multicast and broadcast addresses;
- the API and raft addresses (host and port) of every cluster member.

Loopback and private ranges stay allowed (a local receiver is the common
case); ``CallbackAllowNetworks`` (only these) and ``CallbackDenyNetworks``
(never these) lock it down further.

The policy is checked twice. When a job is created or changed, on the URL as
written (no DNS: an IP literal is checked in full, a name only against the
refused names and the members' host names). When a fire is sent, on every
address its host resolves to (:class:`DestinationGuard`); the connection is
then made to one of those checked addresses (:class:`PinnedTransport`), so a
name that resolves elsewhere later, or differently between the check and the
connect (DNS rebinding), cannot get past it. Host header and TLS SNI stay the
URL's host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from scheduler0.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port)`` -> the addresses a connection to it may go to."""

METADATA_NAMES = frozenset({"metadata.google.internal"})
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)
BROADCAST = ipaddress.IPv4Address("255.255.255.255")
VERDICT_SECONDS = 10.0
"""How long a destination's checked addresses (or its refusal) are reused."""
VERDICTS_KEPT = 4096

_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


class DestinationRefused(Exception):
    """A callback destination the policy refuses; the message says why."""


@dataclass(frozen=True)
class Member:
    """One API or raft address of a cluster member."""

    host: str
    port: int
    label: str
    """e.g. ``API of node 2 (127.0.0.1:9092)``."""

    def matches_text(self, host: str, port: int) -> bool:
        """The URL's host and port as written are this address (no DNS)."""
        if port != self.port:
            return False
        if host == self.host:
            return True
        ip, mine = _ip_or_none(host), _ip_or_none(self.host)
        if ip is None:
            return host == "localhost" and mine is not None and (mine.is_loopback or _any(mine))
        return mine is not None and (ip == mine or (_any(mine) and ip.is_loopback))


def _any(ip: IPAddress) -> bool:
    return ip.is_unspecified


def _ip_or_none(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def members_of(
    own: Sequence[tuple[int, str, str]], rows: Iterable[dict[str, Any]]
) -> tuple[Member, ...]:
    """Every API and raft address of ``own`` ((node id, API URL, raft host:port):
    this node and its configured replicas) and of the members table's ``rows``."""
    found: dict[tuple[str, int], Member] = {}
    listed = [*own, *((r["node_id"], r["address"], r["raft_address"]) for r in rows)]
    for node_id, address, raft_address in listed:
        parts = urlsplit(address)
        api_port = parts.port or (443 if parts.scheme == "https" else 80)
        raft_host, _, raft_port = raft_address.rpartition(":")
        for host, port, kind in (
            (parts.hostname or "", api_port, "API"),
            (raft_host.strip("[]").lower(), int(raft_port), "raft port"),
        ):
            label = f"the {kind} of node {node_id} ({host}:{port})"
            found.setdefault((host, port), Member(host, port, label))
    return tuple(found.values())


@dataclass(frozen=True)
class DestinationPolicy:
    """What a callback may reach (see the module's docstring)."""

    members: tuple[Member, ...] = ()
    allow: tuple[IPNetwork, ...] = ()
    """Empty: every address the fixed rules leave."""
    deny: tuple[IPNetwork, ...] = ()

    def check_url(self, url: str) -> str | None:
        """Why ``url`` is refused as written, or None (names are checked again,
        resolved, when sent)."""
        parts = urlsplit(url)
        if "@" in parts.netloc:
            return "user info (user:password@) is not allowed in a callback URL"
        host = parts.hostname or ""
        port = _port(parts.scheme, parts.port)
        if parts.netloc.rpartition("@")[2].startswith("["):
            ip = _ip_or_none(host)
            if ip is None:
                return f"{host} is not an IPv6 address"
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                return f"IPv4-mapped address {host}: write the IPv4 address ({ip.ipv4_mapped})"
            return self.check_address(ip, port)
        if _non_canonical_ipv4(host):
            return f"non-canonical IP address {host!r}: write it as a dotted quad (a.b.c.d)"
        if host.rstrip(".") in METADATA_NAMES:
            return f"cloud metadata host {host}"
        ip = _ip_or_none(host)
        if ip is not None:
            return self.check_address(ip, port)
        for member in self.members:
            if member.matches_text(host, port):
                return member.label
        return None

    def check_address(self, ip: IPAddress, port: int) -> str | None:
        """Why a connection to ``ip``:``port`` is refused, or None."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        reason = _fixed_refusal(ip)
        if reason is not None:
            return reason
        for member in self.members:
            if member.matches_text(str(ip), port):
                return member.label
        denied = next((net for net in self.deny if ip in net), None)
        if denied is not None:
            return f"{ip} is in CallbackDenyNetworks ({denied})"
        if self.allow and not any(ip in net for net in self.allow):
            return f"{ip} is not in CallbackAllowNetworks"
        return None


def _fixed_refusal(ip: IPAddress) -> str | None:
    if ip in METADATA_ADDRESSES:
        return f"cloud metadata address {ip}"
    if ip.is_link_local:
        return f"link-local address {ip}"
    if ip.is_unspecified:
        return f"unspecified address {ip}"
    if ip.is_multicast or ip == BROADCAST:
        return f"multicast or broadcast address {ip}"
    return None


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else 443 if scheme == "https" else 80


def _non_canonical_ipv4(host: str) -> bool:
    """``host`` is read as an IPv4 address by resolvers (inet_aton) or by URL
    parsers (a numeric last label), but is not a canonical dotted quad."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:  # a trailing dot
        labels = labels[:-1]
        if all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
            return True
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


def policy_for(settings: Settings, rows: Iterable[dict[str, Any]]) -> DestinationPolicy:
    """The policy of a node with ``settings``, for the members table's ``rows``."""
    own = [(settings.node_id, settings.http_base_url, settings.raft_address)]
    own += [(r.node_id, r.address, r.raft_address) for r in settings.replicas]
    return DestinationPolicy(
        members=members_of(own, rows),
        allow=tuple(ipaddress.ip_network(n) for n in settings.callback_allow_networks),
        deny=tuple(ipaddress.ip_network(n) for n in settings.callback_deny_networks),
    )


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` as the system resolves them (getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DestinationGuard:
    """The send-time check: resolve a destination, check every address it
    resolves to, and keep the verdict for ``VERDICT_SECONDS`` per (host, port)
    so the hot path costs a dict lookup. An IP literal needs no DNS."""

    def __init__(
        self,
        policy: Callable[[], DestinationPolicy],
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._clock = clock
        self._verdicts: dict[tuple[str, int], tuple[float, list[str] | str]] = {}
        self._current: tuple[float, DestinationPolicy] | None = None

    async def check(self, url: str) -> list[str]:
        """The checked addresses ``url`` may be sent to; raises DestinationRefused."""
        parts = urlsplit(url)
        refusal = self.policy().check_url(url)
        if refusal is not None:
            raise DestinationRefused(refusal)
        return await self.addresses(parts.hostname or "", _port(parts.scheme, parts.port))

    async def addresses(self, host: str, port: int) -> list[str]:
        """``host``'s addresses, every one allowed; raises DestinationRefused."""
        now = self._clock()
        key = (host, port)
        found = self._verdicts.get(key)
        if found is None or found[0] <= now:
            verdict = await self._judge(host, port)
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[key] = found = (now + VERDICT_SECONDS, verdict)
        if isinstance(found[1], str):
            raise DestinationRefused(found[1])
        return found[1]

    def policy(self) -> DestinationPolicy:
        """The policy, rebuilt (for the current membership) at most every ``VERDICT_SECONDS``."""
        now = self._clock()
        if self._current is None or self._current[0] <= now:
            self._current = (now + VERDICT_SECONDS, self._policy())
        return self._current[1]

    async def _judge(self, host: str, port: int) -> list[str] | str:
        ip = _ip_or_none(host)
        addresses = [host] if ip is not None else await self._resolver(host, port)
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        policy = self.policy()
        members = await self._members_at(policy, port)
        for address in addresses:
            checked = ipaddress.ip_address(address.split("%")[0])
            reason = policy.check_address(checked, port) or members.get(checked)
            if reason is not None:
                shown = "" if ip is not None else f" ({host} resolves to {address})"
                return reason + shown
        return addresses

    async def _members_at(self, policy: DestinationPolicy, port: int) -> dict[IPAddress, str]:
        """The addresses of the members listed by name (not IP) on ``port``."""
        found: dict[IPAddress, str] = {}
        for member in policy.members:
            if member.port == port and _ip_or_none(member.host) is None:
                try:
                    addresses = await self._resolver(member.host, port)
                except OSError:  # a member whose name does not resolve is reached by no one
                    continue
                for address in addresses:
                    found[ipaddress.ip_address(address.split("%")[0])] = member.label
        return found


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the guard checked for the URL's host."""

    def __init__(self, guard: DestinationGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.addresses(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("callbacks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (so its error mapping and streaming stay), with a
    connection pool whose connections go only to checked addresses. No proxy:
    a proxy would resolve the name itself, out of the policy's reach."""

    def __init__(self, guard: DestinationGuard, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(guard),
        )
