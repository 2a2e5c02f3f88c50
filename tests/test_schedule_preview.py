"""GET /api/v1/schedules/preview and ``scheduler0 schedule preview`` against one
real node: the next runs of a spec (the DST and day rules included), or exactly
the error that creating a job with that spec and timezone gets."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tests.support.nodes import (
    Client,
    NodeProcess,
    operator_headers,
    scheduler0_command,
)

CALLBACK = "http://127.0.0.1:9/callback"  # never called: no job is created


def preview(client: Client, **params: Any) -> Any:
    return client.data("GET", "/schedules/preview", params=params)


def refusal(client: Client, method: str, path: str, **kwargs: Any) -> list[tuple[str, str]]:
    response = client.call(method, path, **kwargs)
    assert response.status_code == 422, response.text
    return [(d["field"], d["message"]) for d in response.json()["error"]["details"]]


def test_the_next_runs_in_a_timezone_across_a_dst_change(client: Client) -> None:
    got = preview(
        client,
        spec="0 9 * * 1-5",
        timezone="Europe/Paris",
        count=3,
        after="2024-03-28T12:00:00Z",
    )
    assert got["spec"] == "0 9 * * 1-5" and got["timezone"] == "Europe/Paris"
    assert got["after"] == "2024-03-28T12:00:00Z"
    assert got["runs"] == [
        {"at": "2024-03-29T08:00:00Z", "local": "2024-03-29T09:00:00+01:00", "unix": 1711699200},
        {"at": "2024-04-01T07:00:00Z", "local": "2024-04-01T09:00:00+02:00", "unix": 1711954800},
        {"at": "2024-04-02T07:00:00Z", "local": "2024-04-02T09:00:00+02:00", "unix": 1712041200},
    ]


def test_count_defaults_to_five_and_after_to_now(client: Client) -> None:
    before = time.time()
    got = preview(client, spec="* * * * * *")
    asked = time.time()
    unix = [run["unix"] for run in got["runs"]]
    assert unix == list(range(unix[0], unix[0] + 5))  # every second, five of them
    assert int(before) < unix[0] <= int(asked) + 1  # from the node's now (same clock)
    assert len(preview(client, spec="@hourly", count=100)["runs"]) == 100


def test_the_fall_back_rule_in_the_preview(client: Client) -> None:
    after = 1730563200  # 2024-11-02T16:00:00Z, unix seconds
    fixed = preview(client, spec="30 1 * * *", timezone="America/New_York", count=2, after=after)
    assert [run["local"] for run in fixed["runs"]] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
    ]
    hourly = preview(
        client,
        spec="30 * * * *",
        timezone="America/New_York",
        count=3,
        after="2024-11-03T04:45:00Z",
    )
    assert [run["local"] for run in hourly["runs"]] == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:30:00-05:00",
        "2024-11-03T02:30:00-05:00",
    ]


def test_the_day_rule_in_the_preview(client: Client) -> None:
    got = preview(client, spec="0 0 0 */5 Apr,Aug,Oct Mon", count=1, after="2012-07-09T23:35:00Z")
    assert [run["at"] for run in got["runs"]] == ["2012-08-06T00:00:00Z"]


def test_every_is_anchored_at_after(client: Client) -> None:
    got = preview(client, spec="@every 90s", count=3, after=1_700_000_000.7)
    assert got["after"] == "2023-11-14T22:13:20Z"
    assert [run["unix"] for run in got["runs"]] == [1_700_000_090, 1_700_000_180, 1_700_000_270]


@pytest.mark.parametrize(
    ("spec", "timezone"),
    [
        ("*/60 * * * *", "UTC"),
        ("0 */24 * * *", "Europe/Paris"),
        ("*/60 * * * * *", "UTC"),
        ("61 * * * *", "UTC"),
        ("0 0 30 2 *", "UTC"),
        ("every minute", "UTC"),
        ("@every 500ms", "UTC"),
        ("@fortnightly", "UTC"),
        ("H * * * *", "UTC"),
        ("* * * * *", "Mars/Olympus"),
        ("61 * * * *", "Mars/Olympus"),
        ("* * * * *", "x" * 65),
        ("* " * 200, "UTC"),
    ],
)
def test_an_invalid_schedule_gets_exactly_the_error_of_creating_a_job(
    client: Client, spec: str, timezone: str
) -> None:
    project = client.data("POST", "/projects", 201, json={"name": f"p-{spec}-{timezone}"[:60]})
    job = {
        "project_id": project["id"],
        "spec": spec,
        "timezone": timezone,
        "callback_url": CALLBACK,
    }
    created = refusal(client, "POST", "/jobs", json=job)
    previewed = refusal(
        client, "GET", "/schedules/preview", params={"spec": spec, "timezone": timezone}
    )
    assert previewed == created
    assert created[0][0] in ("spec", "timezone")
    assert client.data("GET", f"/jobs?project_id={project['id']}")["total"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "spec"),
        ({"timezone": "UTC"}, "spec"),
        ({"spec": "@daily", "count": "0"}, "count"),
        ({"spec": "@daily", "count": "101"}, "count"),
        ({"spec": "@daily", "count": "five"}, "count"),
        ({"spec": "@daily", "after": "yesterday"}, "after"),
        ({"spec": "@daily", "after": "-1"}, "after"),
        ({"spec": "@daily", "after": "1e12"}, "after"),
        ({"spec": "@daily", "after": "nan"}, "after"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_parameters_are_named(client: Client, params: dict[str, str], field: str) -> None:
    named = refusal(client, "GET", "/schedules/preview", params=params)
    assert named[0][0] == field, named


def test_the_last_runs_of_the_calendar_stop_the_list(client: Client) -> None:
    got = preview(client, spec="0 0 1 1 *", count=5, after="9997-06-01T00:00:00Z")
    assert [run["at"] for run in got["runs"]] == ["9998-01-01T00:00:00Z", "9999-01-01T00:00:00Z"]


def test_a_credential_is_needed(node: NodeProcess, client: Client) -> None:
    anonymous = Client(node.api, {})
    try:
        assert (
            anonymous.call("GET", "/schedules/preview", params={"spec": "@daily"}).status_code
            == 401
        )
    finally:
        anonymous.close()
    operator = Client(node.api, operator_headers())
    try:
        assert len(preview(operator, spec="@daily")["runs"]) == 5
    finally:
        operator.close()


# -- the CLI -------------------------------------------------------------------------------------


def run_cli(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**node.env(), "COLUMNS": "200"}
    return subprocess.run(
        [*scheduler0_command(), "schedule", "preview", *args, "--node", node.url],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_preview_prints_the_runs(node: NodeProcess) -> None:
    args = ("0 9 * * 1-5", "--timezone", "Europe/Paris", "-n", "10")
    out = run_cli(node, *args, "--after", "2024-03-28T12:00:00Z", "--json")
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)["runs"]
    assert len(runs) == 10
    assert runs[0]["local"] == "2024-03-29T09:00:00+01:00"
    assert runs[9]["local"] == "2024-04-11T09:00:00+02:00"
    table = run_cli(node, *args, "--after", "2024-03-28T12:00:00Z")
    assert table.returncode == 0, table.stderr
    assert "2024-03-29T09:00:00+01:00" in table.stdout and "2024-04-01T07:00:00Z" in table.stdout


def test_cli_preview_of_an_invalid_spec_exits_1_with_the_reason(node: NodeProcess) -> None:
    out = run_cli(node, "*/60 * * * *")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "minute step /60 is larger than the field's range" in out.stderr
    assert out.stdout == ""
    assert run_cli(node, "@daily", "-n", "101").returncode == 2
