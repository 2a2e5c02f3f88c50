"""The callback destination policy as written (create and update) and after
resolution (send time, through a resolver stub), and what a terminal is shown."""

from __future__ import annotations

import asyncio

import pytest

from scheduler0.config import Replica, Settings
from scheduler0.daemon.executor.destinations import (
    DestinationGuard,
    DestinationPolicy,
    DestinationRefused,
    policy_for,
)
from scheduler0.daemon.executor.http import EXCERPT_CHARS, excerpt
from scheduler0.errors import ValidationFailed
from scheduler0.models import ProjectIn, ProjectPatch, parse_one
from scheduler0.terminal import printable

SETTINGS = Settings(
    host="127.0.0.1",
    port=9091,
    raft_address="127.0.0.1:7071",
    replicas=(
        Replica(address="http://127.0.0.1:9091", raft_address="127.0.0.1:7071", node_id=1),
        Replica(address="http://node2.internal:9092", raft_address="10.0.0.2:7072", node_id=2),
    ),
)
MEMBER_ROWS = [
    {"node_id": 3, "address": "http://10.0.0.3:9093", "raft_address": "10.0.0.3:7073"},
]
POLICY = policy_for(SETTINGS, MEMBER_ROWS)

REFUSED_AS_WRITTEN = {
    "http://169.254.169.254/latest/meta-data/": "link-local address 169.254.169.254",
    "http://[fe80::1]/": "link-local address fe80::1",
    "http://[fd00:ec2::254]/": "cloud metadata address fd00:ec2::254",
    "http://metadata.google.internal/computeMetadata/v1/": "cloud metadata host",
    "http://0.0.0.0:3000/": "unspecified address 0.0.0.0",
    "http://[::]:3000/": "unspecified address ::",
    "http://0x7f000001/": "non-canonical IP address '0x7f000001'",
    "http://2130706433/": "non-canonical IP address '2130706433'",
    "http://127.1/": "non-canonical IP address '127.1'",
    "http://017700000001/": "non-canonical IP address '017700000001'",
    "http://127.0.0.1./": "non-canonical IP address '127.0.0.1.'",
    "http://0177.0.0.1/": "non-canonical IP address '0177.0.0.1'",
    "http://[::ffff:127.0.0.1]/": "IPv4-mapped address ::ffff:127.0.0.1",
    "http://user:pw@127.0.0.1:3000/": "user info",
    "http://127.0.0.1:9091/api/v1/credentials": "the API of node 1 (127.0.0.1:9091)",
    "http://localhost:9091/": "the API of node 1 (127.0.0.1:9091)",
    "http://127.0.0.1:7071/": "the raft port of node 1 (127.0.0.1:7071)",
    "http://node2.internal:9092/": "the API of node 2 (node2.internal:9092)",
    "http://10.0.0.2:7072/": "the raft port of node 2 (10.0.0.2:7072)",
    "http://10.0.0.3:9093/": "the API of node 3 (10.0.0.3:9093)",
    "http://224.0.0.1/": "multicast or broadcast address 224.0.0.1",
}


@pytest.mark.parametrize("url", list(REFUSED_AS_WRITTEN))
def test_each_refused_form_is_refused_as_written(url: str) -> None:
    refusal = POLICY.check_url(url)
    assert refusal is not None and REFUSED_AS_WRITTEN[url] in refusal, refusal


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3000/callback",  # the local receiver of the README
        "http://localhost:3000/cb",
        "http://10.1.2.3/hook",
        "http://192.168.1.10:8080/",
        "http://[::1]:3000/",
        "https://hooks.example.com/x",
        "http://127.0.0.1:9092/",  # a member's port, on another host than the member's
        "http://1.2.3.4.example/",
    ],
)
def test_loopback_private_and_public_destinations_stay_allowed(url: str) -> None:
    assert POLICY.check_url(url) is None


def test_deny_and_allow_networks_lock_it_down() -> None:
    strict = policy_for(
        SETTINGS.model_copy(
            update={
                "callback_allow_networks": ("10.1.0.0/16",),
                "callback_deny_networks": ("10.1.9.0/24",),
            }
        ),
        [],
    )
    assert strict.check_url("http://10.1.2.3/") is None
    assert "is not in CallbackAllowNetworks" in (strict.check_url("http://127.0.0.1:3000/") or "")
    assert "in CallbackDenyNetworks (10.1.9.0/24)" in (strict.check_url("http://10.1.9.9/") or "")
    # A name is judged when it is resolved: at send time.
    assert strict.check_url("http://hooks.internal/") is None


def stub_resolver(table: dict[str, list[str]], calls: list[str]) -> object:
    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


def guard_with(
    table: dict[str, list[str]], policy: DestinationPolicy = POLICY
) -> tuple[DestinationGuard, list[str], list[float]]:
    calls: list[str] = []
    now = [1000.0]
    guard = DestinationGuard(
        lambda: policy,
        resolver=stub_resolver(table, calls),  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    return guard, calls, now


def test_a_name_resolving_to_a_refused_address_is_refused_at_send_time() -> None:
    guard, _, _ = guard_with({"innocent.example": ["93.184.216.34", "169.254.169.254"]})
    with pytest.raises(DestinationRefused) as refused:
        asyncio.run(guard.check("http://innocent.example/hook"))
    assert str(refused.value) == (
        "link-local address 169.254.169.254 (innocent.example resolves to 169.254.169.254)"
    )


def test_a_name_resolving_to_a_members_address_is_refused() -> None:
    guard, _, _ = guard_with(
        {"sneaky.example": ["10.0.0.2"], "node2.internal": ["10.0.0.2"]},
    )
    with pytest.raises(DestinationRefused, match="the API of node 2"):
        asyncio.run(guard.check("http://sneaky.example:9092/"))


def test_ipv4_mapped_answers_are_judged_as_their_ipv4_address() -> None:
    guard, _, _ = guard_with({"mapped.example": ["::ffff:169.254.169.254"]})
    with pytest.raises(DestinationRefused, match=r"link-local address 169\.254\.169\.254"):
        asyncio.run(guard.check("http://mapped.example/"))


def test_verdicts_are_cached_per_host_and_port_for_a_short_time() -> None:
    guard, calls, now = guard_with({"hooks.example": ["93.184.216.34"]})

    async def twice() -> list[list[str]]:
        return [await guard.check("http://hooks.example/a") for _ in range(2)]

    assert asyncio.run(twice()) == [["93.184.216.34"], ["93.184.216.34"]]
    assert calls == ["hooks.example"]
    now[0] += 11
    asyncio.run(guard.check("http://hooks.example/b"))
    assert calls == ["hooks.example", "hooks.example"]


def test_an_ip_literal_needs_no_resolution() -> None:
    guard, calls, _ = guard_with({})
    assert asyncio.run(guard.check("http://127.0.0.1:3000/")) == ["127.0.0.1"]
    assert calls == []


def test_the_error_excerpt_is_short_and_free_of_control_characters() -> None:
    body = b"INTERNAL_SECRET=hunter2;\x1b[2J\x00\r\n db_password=" + b"x" * 500 + "\u202e".encode()
    shown = excerpt(body)
    assert len(shown) <= EXCERPT_CHARS
    assert shown.startswith("INTERNAL_SECRET=hunter2; [2J db_password=x")
    assert all(ch.isprintable() for ch in shown)


def test_printable_escapes_controls_and_bidi_and_keeps_the_rest() -> None:
    assert printable("evil\x1b[2J\x1b]2;owned\x07") == "evil\\x1b[2J\\x1b]2;owned\\x07"
    assert printable("a\u202eb\u2066c\x85d\x00") == "a\\u202eb\\u2066c\\x85d\\x00"
    assert printable("line\nnext", keep_newlines=True) == "line\nnext"
    assert printable("line\nnext") == "line\\x0anext"
    assert printable("café ☕ 東京") == "café ☕ 東京"


@pytest.mark.parametrize(
    "bad", ["evil\x1b[2J", "nul\x00", "rtl\u202eexe.txt", "bell\x07", "c1\x9b"]
)
@pytest.mark.parametrize("field", ["name", "description"])
def test_project_names_and_descriptions_refuse_control_characters(bad: str, field: str) -> None:
    for model, body in (
        (ProjectIn, {"name": "ok", field: bad}),
        (ProjectPatch, {field: bad}),
    ):
        with pytest.raises(ValidationFailed) as caught:
            parse_one(model, body)
        [detail] = caught.value.details
        assert detail.field == field
        assert "control or bidirectional" in detail.message


def test_a_description_may_span_lines() -> None:
    assert parse_one(ProjectIn, {"name": "ok", "description": "a\n\tb"}).description == "a\n\tb"


def test_network_settings_take_lists_and_comma_separated_text() -> None:
    settings = Settings.model_validate(
        {"CallbackDenyNetworks": "127.0.0.0/8, ::1/128", "CallbackAllowNetworks": ["10.0.0.0/8"]}
    )
    assert settings.callback_deny_networks == ("127.0.0.0/8", "::1/128")
    assert settings.callback_allow_networks == ("10.0.0.0/8",)
    with pytest.raises(ValueError, match="host bits set"):
        Settings.model_validate({"CallbackDenyNetworks": ["10.0.0.1/8"]})
