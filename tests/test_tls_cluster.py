"""TLS in a real three-node cluster: every member's status is gathered over
https, verified against TLSCAFile (see tests/test_tls.py for one node)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import NodeProcess, running_cluster, scheduler0_command, wait_until
from tests.support.tls import TlsFiles, make_tls_files

pytestmark = pytest.mark.cluster  # (and so "slow")


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


def cli(node: NodeProcess, *args: str) -> Any:
    return subprocess.run(
        [*scheduler0_command(), *args, "--node", node.url],
        cwd=node.workdir,
        env=node.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_peer_status_over_tls_in_a_three_node_cluster(tmp_path: Path, tls: TlsFiles) -> None:
    with running_cluster(tmp_path, 3, extra_env=tls.node_env(), ca_file=tls.ca_cert) as cl:
        leader = cl.wait_leader()

        def every_member_reachable() -> dict[str, Any] | None:
            status = cl.status(leader)
            members = status["members"]
            if len(members) == 3 and all(m["reachable"] for m in members):
                return status
            return None

        status = wait_until(every_member_reachable, 30, interval=0.5, what="3 reachable members")
        follower = next(n for n in cl.nodes if n is not leader)
        printed = cli(follower, "cluster", "status", "--json")
    assert printed.returncode == 0, printed.stderr
    via_follower = json.loads(printed.stdout)
    for view in (status, via_follower):
        assert [m["node_id"] for m in view["members"]] == [1, 2, 3]
        assert all(m["reachable"] for m in view["members"]), view["members"]
        assert all(m["address"].startswith("https://") for m in view["members"])
    assert via_follower["leader_node_id"] == leader.node_id
