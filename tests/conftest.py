"""Test tiers: every test is exactly one of unit, contract, integration, cluster.

* ``unit``: one process, nothing real outside it: pure functions and in-process
  objects (the state machine on SQLite files, the console on a fake source).
* ``contract``: an interface checked from outside (the CLI surface, the import
  layering, the callback wire format) with local helpers only: fresh
  interpreters, a fake node on a socket, the receiver process. No node.
* ``integration``: real scheduler0 node processes (one at a time), or a real
  raft log restarted in this process.
* ``cluster``: real clusters of three or more node processes.

``slow`` is an alias kept for old habits: every ``integration`` and ``cluster``
test (the ones with real nodes) is ``slow``, and nothing else is.

A module gets its tier from :data:`MODULE_TIERS` (below), or from its own
``pytestmark`` (new modules may declare one, e.g. ``pytestmark =
pytest.mark.unit``); modules under ``tests/unit/`` are ``unit``. A test with no
tier, or with two, stops the run at collection: no test goes untiered.

In one ``pytest`` run the fast tiers go first: unit, contract, integration,
cluster (collection order within a tier).

The suite runs on pytest-xdist workers (``addopts`` in pyproject.toml: ``-n 3
--dist loadgroup --no-loadscope-reorder``). The tests of a module that use one
of its module-scoped fixtures (the nodes it shares) are one ``xdist_group``, so
they stay on one worker and start those nodes once; every other test goes to
whichever worker is free. The work is handed out in collection order, so the
fast tiers still go first. The modules in :data:`FIXED_PORT_MODULES` are one
group: they listen on fixed ports and must never run at the same time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nodes import Client, NodeProcess, create_credential, running_node

TIERS = ("unit", "contract", "integration", "cluster")
SLOW_TIERS = frozenset({"integration", "cluster"})

TESTS = Path(__file__).resolve().parent

MODULE_TIERS: dict[str, str] = {
    # unit: in one process
    "test_callback_item.py": "unit",
    "test_config.py": "unit",
    "test_console_snapshots.py": "unit",
    "test_cron.py": "unit",
    "test_signing.py": "unit",
    "test_state_machine.py": "unit",
    "test_support_helpers.py": "unit",
    # contract: interfaces seen from outside, no node
    "test_cli_init.py": "contract",
    "test_console_command.py": "contract",
    "test_executor.py": "contract",
    "test_layering.py": "contract",
    # integration: real node processes, or a real raft log restarted
    "test_api_crud.py": "integration",
    "test_api_inputs.py": "integration",
    "test_cli_commands.py": "integration",
    "test_console_pilot.py": "integration",
    "test_node_e2e.py": "integration",
    "test_raft_restart.py": "integration",
    "test_raft_snapshot_transfer.py": "integration",
    "test_schedule_preview.py": "integration",
    "test_seed_client.py": "integration",
    "test_start_default.py": "integration",
    # cluster: three or more node processes
    "test_cluster.py": "cluster",
    # every module of a directory
    "unit/": "unit",
}
"""Tier by module path relative to ``tests/`` (a key ending in ``/``: every module
below that directory). A module's own ``pytestmark`` tier must agree with it."""


FIXED_PORT_MODULES = frozenset({"test_start_default.py", "test_seed_client.py"})
"""Modules whose nodes listen on fixed ports (the default 9091/7071; the seed
client's 9091 and 3000): one xdist group, so one worker runs them one after
the other (each skips when its ports are taken, which would hide it)."""

FIXED_PORT_GROUP = "fixed-ports"


def _relative(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return None


SHARED_SCOPES = frozenset({"module", "class", "package"})
"""Fixture scopes whose value the tests of one module share (a session-scoped
fixture is one per worker either way)."""


def xdist_group_of(path: Path, shares_module_fixture: bool = True) -> str | None:
    """The xdist group of a test in module ``path``: the fixed-ports group; else
    its module if it uses a fixture the module's tests share; else none (any
    worker)."""
    relative = _relative(path) or str(path)
    if relative in FIXED_PORT_MODULES:
        return FIXED_PORT_GROUP
    return relative if shares_module_fixture else None


def shares_module_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` uses a fixture of the suite's own (not a plugin's, such as
    anyio's module-scoped ``anyio_backend``) that is shared across a module."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return True  # not a plain test function: keep it with its module
    for name in info.names_closure:
        for fixturedef in info.name2fixturedefs.get(name, ()):
            if fixturedef.scope in SHARED_SCOPES and _relative(
                Path(fixturedef.func.__code__.co_filename)
            ):
                return True
    return False


def _table_tier(path: Path) -> str | None:
    relative = _relative(path)
    if relative is None:
        return None
    if relative in MODULE_TIERS:
        return MODULE_TIERS[relative]
    for key, tier in MODULE_TIERS.items():
        if key.endswith("/") and relative.startswith(key):
            return tier
    return None


def tier_of(item: pytest.Item) -> str:
    """The one tier of ``item``; raises ``pytest.UsageError`` if it has none or two."""
    marked = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
    table = _table_tier(item.path)
    if len(marked) > 1:
        raise pytest.UsageError(f"{item.nodeid}: more than one tier marker: {marked}")
    if marked and table is not None and marked[0] != table:
        raise pytest.UsageError(
            f"{item.nodeid}: marked {marked[0]!r} but tests/conftest.py MODULE_TIERS says {table!r}"
        )
    tier = marked[0] if marked else table
    if tier is None:
        raise pytest.UsageError(
            f"{item.nodeid}: no test tier. Add its module to MODULE_TIERS in "
            f"tests/conftest.py or give the module a pytestmark, one of {', '.join(TIERS)}"
        )
    return tier


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every item with its tier (and ``slow``) and its xdist group, then
    order the items by tier.

    ``tryfirst``: the markers must be on the items before ``-m`` deselects by them
    and before xdist reads the groups.
    """
    tiers: dict[str, str] = {}
    untiered: list[str] = []
    for item in items:
        try:
            tier = tier_of(item)
        except pytest.UsageError as exc:
            untiered.append(str(exc))
            continue
        tiers[item.nodeid] = tier
        item.add_marker(getattr(pytest.mark, tier))
        group = xdist_group_of(item.path, shares_module_fixture(item))
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
        slow = item.get_closest_marker("slow") is not None
        if tier in SLOW_TIERS and not slow:
            item.add_marker(pytest.mark.slow)
        elif slow and tier not in SLOW_TIERS:
            untiered.append(f"{item.nodeid}: marked slow but its tier is {tier!r}")
    if untiered:
        shown = "\n  ".join(untiered[:20])
        more = f"\n  ... and {len(untiered) - 20} more" if len(untiered) > 20 else ""
        raise pytest.UsageError(f"tests without exactly one tier:\n  {shown}{more}")
    items.sort(key=lambda item: TIERS.index(tiers[item.nodeid]))  # stable within a tier


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One plain node shared by a test module's tests (a module that needs a node
    with other settings defines its own ``node``)."""
    with running_node(tmp_path_factory.mktemp("node")) as node:
        yield node


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> Iterator[Client]:
    """A client credential of every scope on the module's node."""
    c = Client(node.api, create_credential(node))
    yield c
    c.close()
