"""A real 3-node cluster on 127.0.0.1: who fires, failover, exactly-once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.audit import all_executions, audit, summary
from tests.support.nodes import (
    Client,
    Cluster,
    NodeProcess,
    create_credential,
    operator_headers,
    running_cluster,
    scheduler0_command,
    wait_until,
)
from tests.support.receiver import run_receiver

ENV = {"SCHEDULER0_EXECUTION_RETENTION_PER_JOB": "1000"}


def setup_jobs(node: NodeProcess, url: str, count: int) -> tuple[dict[str, str], set[int]]:
    credential = create_credential(node)
    client = Client(node.api, credential)
    project = client.data("POST", "/projects", 201, json={"name": "cluster"})
    jobs = client.data(
        "POST",
        "/jobs",
        201,
        json=[{"spec": "@every 1s", "project_id": project["id"], "callback_url": f"{url}/cb"}]
        * count,
    )
    client.close()
    return credential, {job["id"] for job in jobs}


def deliveries_after(receiver: Any, start: float) -> int:
    return sum(1 for r in receiver.records() if r["t"] > start)


def wait_fires(receiver: Any, count: int, timeout: float = 30) -> None:
    start = time.time()
    wait_until(
        lambda: deliveries_after(receiver, start) >= count,
        timeout,
        interval=0.2,
        what=f"{count} deliveries",
    )


def remove_member(via: NodeProcess, node: NodeProcess) -> None:
    """``DELETE /cluster/members/{id}`` of ``node`` through ``via`` (200), and
    ``node`` stopping by itself, as a removed node does."""
    response = httpx.delete(
        f"{via.api}/cluster/members/{node.node_id}", headers=operator_headers(), timeout=30
    )
    assert response.status_code == 200, response.text
    wait_until(
        lambda: node.proc is not None and node.proc.poll() is not None,
        timeout=20,
        what=f"the removed node {node.node_id} to stop by itself",
    )


def first_write_ok(nodes: list[NodeProcess], credential: dict[str, str], name: str) -> float:
    """Seconds until some live node accepts a write."""
    start = time.monotonic()

    def write() -> bool:
        for node in nodes:
            try:
                r = httpx.post(
                    f"{node.api}/projects", json={"name": name}, headers=credential, timeout=2.5
                )
            except httpx.HTTPError:
                continue
            if r.status_code == 201:
                return True
        return False

    wait_until(write, timeout=20, interval=0.05, what="an accepted write")
    return time.monotonic() - start


def test_the_leader_fires_nothing_and_each_slot_is_delivered_once(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver, running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        leader = cl.wait_leader()
        credential, ids = setup_jobs(leader, receiver.url, 300)
        wait_fires(receiver, 300 * 8)
        status = cl.status()
        follower = next(n for n in cl.nodes if n is not leader)
        printed = subprocess.run(
            [*scheduler0_command(), "cluster", "status", "--json", "--node", follower.url],
            env=follower.env(),
            cwd=follower.workdir,
            capture_output=True,
            timeout=30,
            check=True,
        )
        client = Client(leader.api, credential)
        executions = all_executions(client)
        client.close()
        records = receiver.records()

    assert status["leader_node_id"] == leader.node_id
    # Any node answers cluster status, the same as the leader does.
    via_follower = json.loads(printed.stdout)
    assert via_follower["leader_node_id"] == leader.node_id
    assert [m["node_id"] for m in via_follower["members"]] == [1, 2, 3]
    assert all(m["reachable"] for m in via_follower["members"])
    assert via_follower["buckets_per_node"] == status["buckets_per_node"]
    assert {m["node_id"]: m["role"] for m in via_follower["members"]}[leader.node_id] == "leader"
    workers = {str(n.node_id) for n in cl.nodes} - {str(leader.node_id)}
    assert set(status["buckets_per_node"]) == workers
    assert sorted(status["buckets_per_node"].values()) == [512, 512]
    result = audit(records, executions, ids)
    print(summary(result))
    assert set(result["senders"]) == workers  # both workers send; the leader never
    assert result["duplicate_deliveries"] == 0
    assert result["holes"] == 0
    assert result["states"].get("missed", 0) == 0
    assert result["lost"] == 0  # nothing died


KILL_ENV = {**ENV, "SCHEDULER0_RAFT_ELECTION_TIMEOUT": "0.5"}
"""A follower waits 0.5-1 s for a leader here, not the default 1-2 s: the
median write after a kill then has room under the 2 s bound below instead of
sitting at it (CI saw 2.04 s with the default). The default's failover time
is measured by ``bench/failover.py`` and ``bench/scale.py``."""


def test_killing_the_leader_repeatedly_loses_and_doubles_nothing(tmp_path: Path) -> None:
    kills = 5
    write_times = []
    crashes: dict[str, list[float]] = defaultdict(list)
    with (
        run_receiver(tmp_path) as receiver,
        running_cluster(tmp_path, 3, extra_env=KILL_ENV) as cl,
    ):
        credential, ids = setup_jobs(cl.wait_leader(), receiver.url, 300)
        wait_fires(receiver, 600)
        for round_ in range(kills):
            leader = cl.wait_leader()
            leader.kill()
            crashes[str(leader.node_id)].append(time.time())
            others = [n for n in cl.nodes if n is not leader]
            write_times.append(first_write_ok(others, credential, f"after-kill-{round_}"))
            wait_fires(receiver, 600)
            leader.start(wait=False)
            leader.wait_ready()
            wait_fires(receiver, 300)
        client = Client(cl.wait_leader().api, credential)
        executions = all_executions(client)
        client.close()
        records = receiver.records()

    result = audit(records, executions, ids, crashes=crashes)
    print(summary(result))
    print("write after leader kill (s):", write_times)
    # For a failure message: what each killed leader sent in the 2 s before a kill.
    sent_by_leaders = {
        node: sum(1 for r in records if r["node"] == node and any(0 < at - r["t"] < 2 for at in ts))
        for node, ts in crashes.items()
    }
    assert sorted(write_times)[kills // 2] < 2.0, write_times  # median
    assert result["holes"] == 0, result
    # With more than one node the leader fires nothing, so a leader dies with no
    # run in flight: no slot may be sent twice, and none may be left lost.
    assert result["duplicate_deliveries"] == 0, (result, sent_by_leaders)
    assert result["lost"] == 0, (result, sent_by_leaders)


def test_a_killed_worker_hands_over_its_buckets_and_gets_them_back(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver, running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        leader = cl.wait_leader()
        credential, ids = setup_jobs(leader, receiver.url, 300)
        wait_fires(receiver, 600)
        worker = next(n for n in cl.nodes if n is not leader)
        other = next(n for n in cl.nodes if n is not leader and n is not worker)
        worker.kill()
        crashes = {str(worker.node_id): [time.time()]}
        killed_at = time.monotonic()
        # The worker's runs in flight at its death: fired (committed) but no result
        # committed yet. Read before anything is taken over (the leader moves the
        # buckets 1.5 s after losing the worker, and only then can the other
        # worker adopt rows and re-stamp them with its own node id).
        client = Client(leader.api, credential)
        unsettled = [
            e for state in ("dispatched", "lost") for e in all_executions(client, state=state)
        ]
        in_flight = {e["execution_id"] for e in unsettled if e["node_id"] == worker.node_id}
        assert str(worker.node_id) in cl.status(leader)["buckets_per_node"], (
            "the buckets moved before the worker's runs in flight were read"
        )
        wait_until(
            lambda: cl.status(leader)["buckets_per_node"] == {str(other.node_id): 1024},
            timeout=10,
            what="buckets moved to the surviving worker",
        )
        moved_after = time.monotonic() - killed_at
        # Its jobs keep firing from the other worker.
        start = time.time()
        wait_fires(receiver, 900)
        assert all(
            r["node"] == str(other.node_id) for r in receiver.records() if r["t"] > start + 1
        )
        worker.start()
        wait_until(
            lambda: sorted(cl.status(leader)["buckets_per_node"].values()) == [512, 512],
            timeout=15,
            what="buckets back on the returned worker",
        )
        start = time.time()
        wait_fires(receiver, 900)
        executions = all_executions(client)
        client.close()
        records = receiver.records()

    assert moved_after < 5.0
    senders = {r["node"] for r in records if r["t"] > start + 1}
    assert senders == {str(worker.node_id), str(other.node_id)}
    result = audit(records, executions, ids, crashes=crashes)
    redelivered = result["redelivered"]
    print(summary(result), f"in flight at the kill: {len(in_flight)}")
    assert result["holes"] == 0, result
    # Every run the worker had in flight was taken over and completed; none is left lost.
    assert result["lost"] == 0, result
    rows = {f"{e['job_id']}-{e['slot']}": e for e in executions}
    assert all(rows[i]["state"] == "success" for i in in_flight), Counter(
        rows[i]["state"] for i in in_flight
    )
    # Re-delivered: only runs the worker had sent but whose result it had not
    # committed when it died; each re-sent once, by the worker that took over
    # (which re-stamped the row with its node id when it adopted it).
    assert redelivered <= in_flight, sorted(redelivered - in_flight)[:10]
    sent_by: dict[str, list[str]] = defaultdict(list)
    for record in records:
        sent_by[record["execution_id"]].append(record["node"])
    for execution_id in redelivered:
        senders_of = sent_by[execution_id]
        assert senders_of == [str(worker.node_id), str(other.node_id)], (execution_id, senders_of)
        assert rows[execution_id]["node_id"] == other.node_id, rows[execution_id]
    assert result["duplicate_deliveries"] == len(redelivered), result
    # A run the worker sent that was not re-sent had its result committed after
    # all (its proposal reached the leader before the kill): still the worker's.
    for execution_id in in_flight - redelivered:
        if str(worker.node_id) in sent_by[execution_id]:
            assert rows[execution_id]["node_id"] == worker.node_id, rows[execution_id]


def test_all_nodes_killed_and_restarted_continue_on_grid(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver, running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        credential, ids = setup_jobs(cl.wait_leader(), receiver.url, 300)
        acknowledged = set(ids)
        wait_fires(receiver, 600)
        crashes: dict[str, list[float]] = {}
        for node in cl.nodes:
            node.kill()
            crashes[str(node.node_id)] = [time.time()]
        for node in cl.nodes:
            node.start(wait=False)
        # The election is timed from the moment all three answer again, not from
        # the spawn: starting three interpreters is not the election, and takes
        # its own time on a busy machine.
        for node in cl.nodes:
            wait_until(node.health, timeout=30, what=f"node {node.node_id} answering")
        restarted = time.monotonic()
        cl.wait_leader(timeout=20)
        leader_after = time.monotonic() - restarted
        wait_fires(receiver, 900)
        client = Client(cl.wait_leader().api, credential)
        listed = client.data("GET", "/jobs", params={"limit": 1000, "consistency": "strong"})
        executions = all_executions(client)
        client.close()
        records = receiver.records()

    assert leader_after < 10.0
    assert {job["id"] for job in listed["jobs"]} == acknowledged
    # Re-deliveries only of runs cut short by the crash (checked by audit).
    result = audit(records, executions, ids, crashes=crashes)
    print(summary(result))
    assert result["holes"] == 0, result
    # Restarted within the misfire grace: every run left in flight is taken over.
    assert result["lost"] == 0, result


def test_adding_then_removing_a_node_rebalances_without_loss(tmp_path: Path) -> None:
    with run_receiver(tmp_path) as receiver, running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        leader = cl.wait_leader()
        credential, ids = setup_jobs(leader, receiver.url, 300)
        wait_fires(receiver, 600)
        fourth = _new_member(cl, tmp_path / "node4", node_id=4)
        response = httpx.post(
            f"{leader.api}/cluster/members",
            headers=operator_headers(),
            json={"node_id": 4, "address": fourth.url, "raft_address": fourth.raft_address},
            timeout=20,
        )
        assert response.status_code == 201, response.text
        fourth.start()
        wait_until(
            lambda: sorted(cl.status(leader)["buckets_per_node"].values()) == [341, 341, 342],
            timeout=20,
            what="buckets spread over three workers",
        )
        start = time.time()
        wait_fires(receiver, 900)
        assert str(fourth.node_id) in {r["node"] for r in receiver.records() if r["t"] > start}
        # Remove one of the original workers.
        leaving = next(n for n in cl.nodes if n is not leader)
        response = httpx.delete(
            f"{leader.api}/cluster/members/{leaving.node_id}",
            headers=operator_headers(),
            timeout=20,
        )
        assert response.status_code == 200, response.text
        wait_until(
            lambda: sorted(cl.status(leader)["buckets_per_node"].values()) == [512, 512],
            timeout=20,
            what="buckets spread over the two remaining workers",
        )
        # The removed node says so and stops by itself (it would otherwise campaign).
        wait_until(
            lambda: leaving.proc is not None and leaving.proc.poll() is not None,
            timeout=20,
            what="the removed node to stop by itself",
        )
        assert (
            "was removed from the cluster; stopping" in (leaving.workdir / "node.log").read_text()
        )
        leaving.kill()
        crashes = {str(leaving.node_id): [time.time()]}
        wait_fires(receiver, 900)
        client = Client(leader.api, credential)
        executions = all_executions(client)
        client.close()
        records = receiver.records()
        fourth.kill()

    result = audit(records, executions, ids, crashes=crashes)
    print(summary(result))
    assert result["holes"] == 0, result
    assert result["duplicate_deliveries"] == 0, result
    # The leaving node was killed only once it had handed its buckets over.
    assert result["lost"] == 0, result


def test_a_node_removed_while_down_stops_by_itself_when_it_comes_back(tmp_path: Path) -> None:
    """It never applied its MemberLeft (raft stopped sending it the log while it was
    down): once leaderless it asks the others, learns it was removed, and stops
    instead of campaigning. The cluster it left goes on taking writes."""
    with running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        leader = cl.wait_leader()
        credential = create_credential(leader)
        leaving = next(n for n in cl.nodes if n is not leader)
        leaving.kill()
        response = httpx.delete(
            f"{leader.api}/cluster/members/{leaving.node_id}",
            headers=operator_headers(),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        leaving.start(wait=False)
        wait_until(
            lambda: leaving.proc is not None and leaving.proc.poll() is not None,
            timeout=40,
            what="the node removed while down to stop by itself",
        )
        log_text = (leaving.workdir / "node.log").read_text()
        assert "was removed from the cluster; stopping (member" in log_text, leaving.log_tail()
        assert leaving.proc is not None and leaving.proc.returncode == 0, leaving.log_tail()
        client = Client(leader.api, credential)
        client.data("POST", "/projects", 201, json={"name": "after-removal"})
        client.close()


def _new_member(cl: Cluster, workdir: Path, node_id: int) -> NodeProcess:
    node = NodeProcess(workdir, node_id=node_id, extra_env=dict(ENV))
    node.replicas = [
        *cl.replicas,
        {"Address": node.url, "RaftAddress": node.raft_address, "NodeId": node_id},
    ]
    cl.nodes.append(node)
    return node


def test_a_failing_apply_does_not_stop_the_cluster(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        leader = cl.wait_leader()
        credential = create_credential(leader)
        for node in cl.nodes:
            client = Client(node.api, credential)
            client.data("POST", "/projects", 201, json={"name": f"p{node.node_id}"})
            # Refused inside apply, on every node's replica: a conflict, not a wedge.
            assert client.call("POST", "/projects", json={"name": "p1"}).status_code == 409
            client.close()
        views = []
        for node in cl.nodes:
            client = Client(node.api, credential)
            views.append(client.data("GET", "/projects", params={"consistency": "strong"}))
            client.close()
        # Peer and operator routes refuse client keys.
        client = Client(leader.api, credential)
        assert client.call("GET", "/peer/status").status_code == 403
        assert client.call("POST", "/cluster/members", json={}).status_code == 403
        assert client.call("DELETE", "/cluster/members/2").status_code == 403
        client.close()
    assert all(view == views[0] for view in views)
    assert views[0]["total"] == 3


def test_a_write_to_a_cut_off_node_answers_503_in_time(tmp_path: Path) -> None:
    env = {**ENV, "SCHEDULER0_RAFT_APPLY_TIMEOUT": "2"}
    with running_cluster(tmp_path, 3, extra_env=env) as cl:
        leader = cl.wait_leader()
        credential = create_credential(leader)
        lonely = cl.nodes[0]
        others = [n for n in cl.nodes if n is not lonely]
        for node in others:  # freeze them: the lonely node can reach no one
            assert node.proc is not None
            node.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = httpx.post(
                f"{lonely.api}/projects", json={"name": "cut-off"}, headers=credential, timeout=10
            )
            took = time.monotonic() - started
        finally:
            for node in others:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGCONT)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "no_quorum"
        assert took < 2.0 + 1.0
        # Healed: writes work again.
        assert first_write_ok(cl.nodes, credential, "healed") < 10


def test_a_replica_down_when_the_cluster_forms_joins_when_it_comes_up(tmp_path: Path) -> None:
    cl = Cluster(tmp_path, 3, extra_env=ENV)
    late = cl.nodes[2]
    try:
        with run_receiver(tmp_path) as receiver:
            for node in cl.nodes[:2]:
                node.start(wait=False)
            for node in cl.nodes[:2]:
                node.wait_ready()
            leader = cl.wait_leader()
            credential, ids = setup_jobs(leader, receiver.url, 100)
            wait_fires(receiver, 300)  # two nodes: the non-leader fires everything
            late.start()
            wait_until(
                lambda: cl.status(leader)["buckets_per_node"].get(str(late.node_id), 0) > 0,
                timeout=20,
                what="buckets for the late replica",
            )
            start = time.time()
            wait_fires(receiver, 300)
            senders = {r["node"] for r in receiver.records() if r["t"] > start + 1}
            members = [m["node_id"] for m in cl.status(late)["members"]]
            client = Client(leader.api, credential)
            executions = all_executions(client)
            client.close()
            records = receiver.records()
    finally:
        cl.kill_all()
    assert members == [1, 2, 3]
    assert str(late.node_id) in senders
    result = audit(records, executions, ids)
    print(summary(result))
    assert result["holes"] == 0, result
    assert result["duplicate_deliveries"] == 0, result
    assert result["lost"] == 0, result  # nothing died


def test_a_removed_worker_leaves_no_run_unsent_and_none_sent_twice(tmp_path: Path) -> None:
    """A worker removed while its jobs fire every second has decided its next
    runs ahead (``FireAheadSeconds``) and stops without sending them: once it
    has left, the leader declares them lost and their new owner sends them.
    The runs it did send have their results recorded as it stops, before raft
    lets it go, so none is sent again. No run stays ``dispatched``, no job
    has a hole in its grid, no execution is delivered twice."""
    with run_receiver(tmp_path) as receiver, running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        leader = cl.wait_leader()
        credential, ids = setup_jobs(leader, receiver.url, 200)
        wait_fires(receiver, 400)
        leaving = next(n for n in cl.nodes if n is not leader)
        remove_member(leader, leaving)
        client = Client(leader.api, credential)

        def unsent() -> list[dict[str, Any]]:
            return [
                e
                for e in all_executions(client)
                if e["state"] == "dispatched" and e["node_id"] == leaving.node_id
            ]

        wait_until(lambda: not unsent(), 20, what="the removed node's runs declared lost")
        wait_fires(receiver, 400)
        executions = all_executions(client)
        client.close()
        records = receiver.records()

    result = audit(records, executions, ids)
    print(summary(result))
    assert result["holes"] == 0, result
    assert result["states"].get("lost", 0) == 0, result  # each lost run was sent again
    assert result["duplicate_deliveries"] == 0, result


@pytest.mark.parametrize("via", ["the leader", "a follower"])
def test_removing_the_leader_hands_its_leadership_over_and_takes_it_out_of_raft(
    tmp_path: Path, via: str
) -> None:
    """raft's leader cannot remove itself: it hands the leadership to a
    caught-up follower first, which takes it out of the configuration. The
    two nodes left are each other's only raft partner (a quorum of 2 of 2,
    not of 3 with a ghost), the removed node stops by itself, and writes go on.
    Asked of a follower, the removal is passed to the leader (a follower's
    raft removal of the leader was refused and left the same ghost)."""
    with running_cluster(tmp_path, 3, extra_env=ENV) as cl:
        leader = cl.wait_leader()
        wait_until(
            lambda: len(cl.status(leader)["members"]) == 3, 20, what="three registered members"
        )
        asked = leader if via == "the leader" else next(n for n in cl.nodes if n is not leader)
        remove_member(asked, leader)
        rest = [n for n in cl.nodes if n is not leader]
        new_leader = cl.wait_leader()
        assert new_leader in rest

        def partners(node: NodeProcess) -> set[str]:
            answer = httpx.get(
                f"{node.api}/peer/status",
                headers=operator_headers(),
                timeout=10,
                verify=node.verify,
            )
            answer.raise_for_status()
            return set(answer.json()["data"]["raft"]["partners_connected"])

        for node in rest:
            (other,) = (n for n in rest if n is not node)
            assert partners(node) == {other.raft_address}
        members = cl.status(new_leader)["members"]
        assert sorted(m["node_id"] for m in members) == sorted(n.node_id for n in rest)
        client = Client(new_leader.api, create_credential(new_leader))
        client.data("POST", "/projects", 201, json={"name": "after the leader left"})
        client.close()
