"""The console's small units of state: following the log, which member to read
from next, how stale a panel is, and the series behind its sparklines."""

from __future__ import annotations

import pytest

from scheduler0.console.failover import Failover, Freshness
from scheduler0.console.follow import FollowState
from scheduler0.console.history import ClusterHistory, lateness
from scheduler0.console.http_source import Credentials, HttpSource
from scheduler0.console.source import ClusterView, Execution, Member
from scheduler0.errors import BadRequest


def test_following_stops_when_the_operator_leaves_the_top_and_counts_newer_rows() -> None:
    follow = FollowState()
    follow.observe(at_top=True, shown_ids=[10, 9, 8])
    follow.landed([11, 10, 9])
    assert (follow.following, follow.banner()) == (True, "")
    follow.observe(at_top=False, shown_ids=[11, 10, 9])
    follow.landed([13, 12, 11, 10])
    assert follow.banner() == "2 newer rows — press End"
    follow.landed([14, 13, 12])  # every row of the page is newer: maybe more
    assert follow.banner() == "3+ newer rows — press End"
    follow.resume()
    assert (follow.following, follow.banner()) == (True, "")


def test_back_at_the_top_the_log_follows_again() -> None:
    follow = FollowState()
    follow.observe(at_top=False, shown_ids=[5])
    follow.landed([6, 5])
    assert follow.banner() == "1 newer row — press End"
    follow.observe(at_top=True, shown_ids=[6, 5])
    assert follow.following and follow.banner() == ""


def view(*addresses: str) -> ClusterView:
    members = tuple(Member(n, a, "follower", True) for n, a in enumerate(addresses, 1))
    return ClusterView(1, 1, 1, True, 1, members=members)


def test_failover_tries_the_other_members_in_turn() -> None:
    failover = Failover()
    assert failover.candidate("http://a") is None  # nothing known yet
    failover.learn(view("http://a", "http://b/", "http://c"))
    assert failover.candidate("http://a/") == "http://b/"
    assert failover.candidate("http://b") == "http://c"
    assert failover.candidate("http://c") == "http://a"
    assert failover.candidate("http://elsewhere") is None  # not of this cluster
    failover.learn(view("http://a"))
    assert failover.candidate("http://a") is None  # a single node: keep retrying it


def test_rows_are_stale_once_a_refresh_was_missed() -> None:
    fresh = Freshness()
    fresh.landed("jobs", 100.0)
    assert fresh.stale_age("jobs", 101.9, 1.0) is None
    assert fresh.stale_age("jobs", 102.5, 1.0) == pytest.approx(2.5)
    assert fresh.stale_age("jobs", 500.0, None) is None  # no periodic refresh
    assert fresh.stale_age("log", 500.0, 1.0) is None  # nothing shown yet


def test_fires_per_second_from_the_counter_and_nothing_from_an_unreachable_node() -> None:
    history = ClusterHistory()
    for now, fired, up in ((0.0, 10, True), (2.0, 16, True), (3.0, 16, False), (4.0, 4, True)):
        member = Member(1, "http://a", "leader", up, fired=fired, delivery_lag_p99_seconds=0.5)
        history.add(ClusterView(1, 1, 1, True, 1, members=(member,)), now)
    series = history.series(1)
    assert list(series.fires_per_second) == [3.0]  # 6 in 2 s; the restart's drop is skipped
    assert list(series.delivery_p99) == [0.5, 0.5, 0.5]
    assert list(history.series(2).fires_per_second) == []


def test_a_jobs_lateness_is_slot_to_result_of_its_finished_runs_oldest_first() -> None:
    day = "2026-01-01T00:00:"
    runs = [
        Execution(3, "1-3", 1, f"{day}20Z", "dispatched"),
        Execution(2, "1-2", 1, f"{day}10Z", "failed", updated_at=f"{day}14Z"),
        Execution(1, "1-1", 1, f"{day}00Z", "success", updated_at=f"{day}01Z"),
    ]
    assert lateness(runs) == [1.0, 4.0]


def test_a_switch_to_something_that_is_not_a_url_is_refused_and_changes_nothing() -> None:
    source = HttpSource("http://127.0.0.1:9091", Credentials(username="u", password="p"))
    try:
        with pytest.raises(BadRequest, match="not a node URL"):
            source.switch("http://[::1")
        assert source.url == "http://127.0.0.1:9091"
    finally:
        source.close()
