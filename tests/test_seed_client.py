"""The original README's Node.js client, run UNCHANGED against a real node.

``bench/seed_client/index.js`` is the README's "Example Usage In Node Server"
code verbatim. This test copies it with its package.json into a temp dir,
installs its dependencies from the npm registry (reusing
``bench/seed_client/node_modules`` when present), starts a node with its API on
port 9091, creates a credential with the CLI and runs ``node index.js``. It
passes once the client created its 100,000 jobs ``@every 1m`` and printed a
callback line with ``hits.size == 100000`` (every job hit at least once), with
no job hit more than the schedule allows.

Slow (about 1.5 to 2.5 minutes). Skipped when node/npm are missing, when the
dependencies cannot be installed, or when port 9091 or 3000 is taken.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIENT_DIR = REPO_ROOT / "bench" / "seed_client"
SEED_EXAMPLE_SHA256 = "bb4e11aad3fea5559067f8be3d83780abd27f94a61adba01cdc5be304ef8faaa"
"""SHA-256 of the original project's README block "Example Usage In Node Server"
(the ```javascript fence, 2,896 bytes), taken when index.js was copied from it."""


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_client_run", CLIENT_DIR / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    target = tmp_path / "client"
    target.mkdir()
    for name in ("index.js", "package.json"):
        shutil.copy2(CLIENT_DIR / name, target / name)
    installed = CLIENT_DIR / "node_modules"
    if (installed / "express").exists():
        (target / "node_modules").symlink_to(installed, target_is_directory=True)
    else:
        try:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund"],
                cwd=target,
                check=True,
                capture_output=True,
                timeout=300,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"npm install failed: {exc}")
    return target


def test_index_js_is_the_readme_example_verbatim() -> None:
    digest = hashlib.sha256((CLIENT_DIR / "index.js").read_bytes()).hexdigest()
    assert digest == SEED_EXAMPLE_SHA256, "index.js is no longer the seed's example byte for byte"


@pytest.mark.timeout(330)
def test_seed_node_client_runs_unchanged(client_dir: Path, tmp_path: Path) -> None:
    run = _runner()
    if any(run.port_in_use(p) for p in (run.API_PORT, run.CLIENT_PORT)):
        pytest.skip("port 9091 or 3000 is taken")
    summary = run.run_seed_client(
        client_dir,
        tmp_path / "work",
        timeout=240.0,
        stop_when_all_hit_once=True,
        progress=False,
    )
    last = summary["last_line"]
    assert last is not None, summary
    # Every one of the 100,000 jobs was called back at least once ...
    assert last["size"] == run.JOBS, summary
    assert last["min"] >= 1, summary
    # ... and, within ~2 minutes of creation, no job more than twice.
    assert last["max"] <= 2, summary
    assert sum(last["hit_counts"].values()) == run.JOBS, summary
    status = summary["node_status"]
    assert status["counts"]["jobs"] == run.JOBS, summary
    assert status["fired"] >= run.JOBS, summary
