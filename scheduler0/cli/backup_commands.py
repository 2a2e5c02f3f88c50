"""``scheduler0 backup`` and ``scheduler0 restore``.

``backup`` asks a node (operator auth) for an online copy of the replicated
state at one raft index and writes it, checked, to a file. ``restore`` seeds
the data dir of a NEW node from such a file; it runs without a node and never
imports the daemon (the file format lives in ``scheduler0/backup.py``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scheduler0.backup import (
    BackupFileError,
    BackupHeader,
    RestoreRefused,
    read_header,
    restore_into,
)
from scheduler0.cli.context import (
    ConfigOption,
    JsonOption,
    NodeOption,
    api_errors,
    connect_operator,
)
from scheduler0.cli.output import EXIT_CONFIG, EXIT_FAILED, fail, say
from scheduler0.config import load_settings
from scheduler0.errors import ConfigError

BACKUP_TIMEOUT_SECONDS = 600.0
"""The node copies its whole database before it answers: allow for a large one."""


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _describe(header: BackupHeader) -> str:
    counts = header.counts
    return (
        f"node {header.source_node_id} ({header.source_address}) at raft index"
        f" {header.raft_index}, epoch {header.epoch}, taken {_when(header.created_at)};"
        f" {counts.get('projects', '?')} projects, {counts.get('credentials', '?')}"
        f" credentials, {counts.get('jobs', '?')} jobs, {counts.get('executions', '?')}"
        f" executions; {header.payload_bytes / 1e6:.1f} MB, sha256"
        f" {header.payload_sha256[:16]}..."
    )


def _print_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2))


def backup(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="File to write the backup to.", dir_okay=False),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    as_json: JsonOption = False,
    node: NodeOption = None,
    config: ConfigOption = None,
) -> None:
    """Copy the cluster's state, at one raft index, from a running node into a file.

    Online: the node keeps applying and firing while it copies. The file holds
    every project, credential (hashed with the SecretKey), job (with its last
    fired slot) and execution, and a sha256 of the database; it is checked
    before it is kept. Operator auth (.scheduler0 or SCHEDULER0_AUTH_*).

    Example: scheduler0 backup --out nightly.s0backup --node http://127.0.0.1:9091
    """
    if out.exists() and not force:
        fail(f"{out} exists; pass --force to overwrite it", EXIT_FAILED)
    part = out.with_name(f"{out.name}.part")
    started = time.monotonic()
    try:
        client = connect_operator(node, config, timeout=BACKUP_TIMEOUT_SECONDS)
        with client, api_errors():
            client.download("/backup", part)
        try:
            header, _ = read_header(part)
        except BackupFileError as exc:
            fail(f"the node sent a damaged backup, not kept: {exc.message}", EXIT_FAILED)
        os.replace(part, out)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_FAILED)
    finally:
        part.unlink(missing_ok=True)
    if as_json:
        _print_json({"file": str(out), **header.to_json()})
    say(f"backup written to {out} in {time.monotonic() - started:.1f} s: {_describe(header)}")


def restore(
    file: Annotated[
        Path, typer.Argument(help="A backup file made by `scheduler0 backup`.", dir_okay=False)
    ],
    check: Annotated[
        bool,
        typer.Option("--check", help="Only check the file (version, checksum); write nothing."),
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir of the new node (default: DataDir).")
    ] = None,
    ignore_secret_key: Annotated[
        bool,
        typer.Option(
            "--ignore-secret-key",
            help="Restore although this node's SecretKey is not the backup cluster's"
            " (its client credentials will then all be refused).",
        ),
    ] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Seed a NEW node from a backup file, before its first start.

    Refuses a data dir that already holds raft state. The node must use the
    SecretKey of the cluster the backup comes from. For a cluster, restore the
    same file on every node, then start them. Executions in flight at backup
    time are recorded lost (their new owner re-sends those within
    MisfireGraceSeconds). Exit code 2 if the file is not a backup, of an unknown
    format version, damaged, or if the restore is refused.

    Example: scheduler0 restore nightly.s0backup && scheduler0 start
    """
    try:
        header, _ = read_header(file)
    except BackupFileError as exc:
        fail(exc.message, EXIT_CONFIG)
    if check:
        if as_json:
            _print_json({"file": str(file), **header.to_json()})
        say(f"{file} is a good backup: {_describe(header)}")
        return
    try:
        settings = load_settings(config, {"data_dir": data_dir})
    except ConfigError as exc:
        fail(exc.message, EXIT_CONFIG)
    try:
        summary = restore_into(
            file, settings.data_dir, settings.secret_key, check_key=not ignore_secret_key
        )
    except (BackupFileError, RestoreRefused) as exc:
        fail(exc.message, EXIT_CONFIG)
    except OSError as exc:
        fail(f"cannot write into {settings.data_dir}: {exc.strerror or exc}", EXIT_FAILED)
    if as_json:
        _print_json(
            {
                "snapshot": str(summary.snapshot),
                "counts": summary.counts,
                "marked_lost": summary.marked_lost,
                "backup": header.to_json(),
            }
        )
    say(f"restored into {settings.data_dir}: {_describe(header)}")
    if summary.marked_lost:
        say(
            f"{summary.marked_lost} executions were in flight at backup time: recorded lost"
            " (their new owner re-sends those still within MisfireGraceSeconds)"
        )
    say(
        "Start the node with `scheduler0 start`. For a cluster, restore this same file into"
        " every node's DataDir before starting any of them."
    )
