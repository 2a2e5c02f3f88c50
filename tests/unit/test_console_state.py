"""The console's small units of state: following the log, which member to read
from next, how stale a panel is, and the series behind its sparklines."""

from __future__ import annotations

import pytest

from scheduler0.console.failover import Failover, Freshness
from scheduler0.console.follow import FollowState
from scheduler0.console.history import ClusterHistory, lateness
from scheduler0.console.http_source import Credentials, HttpSource
from scheduler0.console.job_summary import run_time
from scheduler0.console.sorting import EXECUTION_SORT_KEYS, JOB_SORT_KEYS, SortOrder
from scheduler0.console.source import ClusterView, Execution, Job, JobPage, Member
from scheduler0.console.widgets import ExecutionTable, JobsTable
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


# -- paging and sorting ------------------------------------------------------------


def test_a_job_page_says_which_jobs_of_how_many_and_where_the_last_page_starts() -> None:
    jobs = tuple(Job(id=n, project_id=1, spec="@hourly") for n in range(501, 1001))
    page = JobPage(jobs, total=20005, offset=500, limit=500)
    assert page.span == "jobs 501-1000 of 20005"
    assert page.last_page_offset == 20000
    assert JobPage((), 0).span == "no jobs"
    assert JobPage((), 7, offset=500, limit=500).span == "no jobs of 7"
    one_page = JobPage(jobs[:3], total=3)  # a source that does not page: all on one
    assert (one_page.size, one_page.last_page_offset) == (3, 0)


def test_a_header_click_sorts_then_reverses_then_returns_to_the_nodes_order() -> None:
    order = SortOrder().clicked("spec")
    assert order == SortOrder("spec")
    assert order.clicked("spec") == SortOrder("spec", descending=True)
    assert order.clicked("spec").clicked("spec") == SortOrder()
    assert order.clicked("id") == SortOrder("id")
    assert order.describe({"spec": "spec"}) == "sorted by spec ↑ within this page"
    assert SortOrder().describe({}) == ""


def test_s_steps_through_the_columns_and_back_to_the_nodes_order() -> None:
    columns = ["id", "name"]
    order = SortOrder()
    seen = []
    for _ in range(3):
        order = order.next_column(columns)
        seen.append(order.column)
    assert seen == ["id", "name", None]
    assert SortOrder("name").reversed() == SortOrder("name", descending=True)
    assert SortOrder().reversed() == SortOrder()


def test_sorting_orders_jobs_by_value_with_blanks_last_and_ties_in_the_nodes_order() -> None:
    jobs = [
        Job(id=1, project_id=1, spec="b", name=None),
        Job(id=2, project_id=1, spec="a", name="zeta"),
        Job(id=3, project_id=1, spec="a", name="Alpha"),
    ]
    by_name = SortOrder("name").apply(jobs, JOB_SORT_KEYS)
    assert [j.id for j in by_name] == [3, 2, 1]
    by_spec = SortOrder("spec").apply(jobs, JOB_SORT_KEYS)
    assert [j.id for j in by_spec] == [2, 3, 1]
    assert [j.id for j in SortOrder("id", descending=True).apply(jobs, JOB_SORT_KEYS)] == [3, 2, 1]
    assert [j.id for j in SortOrder().apply(jobs, JOB_SORT_KEYS)] == [1, 2, 3]


def test_every_sort_key_takes_its_tables_records_even_with_blank_fields() -> None:
    job = Job(id=1, project_id=1, spec="@hourly")
    run = Execution(
        id=1, execution_id="1-1", job_id=1, scheduled_at="2026-01-01T00:00:00Z", state="x"
    )
    assert set(JOB_SORT_KEYS) == {key for _, key in JobsTable.COLUMNS}
    assert set(EXECUTION_SORT_KEYS) == {key for _, key in ExecutionTable.COLUMNS}
    for key in JOB_SORT_KEYS.values():
        key(job)
    for key in EXECUTION_SORT_KEYS.values():
        key(run)


def test_a_previewed_run_is_shown_short_with_its_offset() -> None:
    assert run_time("2026-03-30T09:00:00+02:00") == "03-30 09:00:00 +02:00"
    assert run_time("not a time") == "not a time"
