"""The distribution's name, and the official client's lock.

PyPI's ``scheduler0`` is the original project's official Python client. This
server is distributed as ``scheduler0-server``; its import package and its
console script stay ``scheduler0``. The client is pinned, with hashes, in
``requirements/official-client.lock`` for an environment of its own
(``tests/test_official_client.py`` installs it there).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import scheduler0

pytestmark = pytest.mark.contract

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTION = "scheduler0-server"
CLIENT_LOCK = REPO / "requirements" / "official-client.lock"
CLIENT_IN = REPO / "requirements" / "official-client.in"


def _project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as file:
        project: dict[str, object] = tomllib.load(file)["project"]
    return project


def test_the_distribution_is_scheduler0_server_with_the_scheduler0_script() -> None:
    project = _project()
    assert project["name"] == DISTRIBUTION
    assert project["scripts"] == {"scheduler0": "scheduler0.cli.main:main"}


def test_the_installed_scheduler0_package_comes_from_scheduler0_server_alone() -> None:
    """Installed under the new name, and nothing else in this environment provides
    the ``scheduler0`` package (an environment made before the rename still holds
    the old ``scheduler0`` distribution: ``pip uninstall scheduler0``, then
    reinstall)."""
    installed = metadata.distribution(DISTRIBUTION)
    assert installed.version == scheduler0.__version__
    scripts = {e.name: e.value for e in installed.entry_points if e.group == "console_scripts"}
    assert scripts == {"scheduler0": "scheduler0.cli.main:main"}
    assert metadata.packages_distributions()["scheduler0"] == [DISTRIBUTION]


def _pins(lock: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, flags=re.MULTILINE))


def test_the_official_client_lock_pins_the_client_and_hashes_every_package() -> None:
    lock = CLIENT_LOCK.read_text()
    wanted = _pins(CLIENT_IN.read_text())
    pins = _pins(lock)
    assert wanted == {"scheduler0": "1.2.0"}
    assert pins["scheduler0"] == wanted["scheduler0"]
    assert "requests" in pins  # the client's one dependency, and its own below it
    requirements = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock.split("\n", 2)[2].strip())
    assert len(requirements) == len(pins)
    unhashed = [r.split(" ", 1)[0] for r in requirements if "--hash=sha256:" not in r]
    assert not unhashed, f"pinned without a hash: {unhashed}"
