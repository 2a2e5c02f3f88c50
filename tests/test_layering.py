"""The layers stay apart: checked in fresh interpreters, not hoped for."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(out.stdout.split())


def test_the_daemon_never_loads_textual() -> None:
    modules = loaded_after("import scheduler0.daemon.serve")
    assert "pysyncobj" in modules  # the import did load the daemon
    assert not any(m == "textual" or m.startswith("textual.") for m in modules)


def test_the_cli_loads_no_daemon_or_raft_until_start() -> None:
    modules = loaded_after("import scheduler0.cli.main")
    assert "typer" in modules
    assert not any(m.startswith("scheduler0.daemon") for m in modules)
    assert "pysyncobj" not in modules


def test_only_the_raft_module_imports_pysyncobj() -> None:
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "scheduler0"
    importers = {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "pysyncobj" in path.read_text()
        and any(
            line.lstrip().startswith(("import pysyncobj", "from pysyncobj"))
            for line in path.read_text().splitlines()
        )
    }
    assert importers == {"daemon/raft.py"}
