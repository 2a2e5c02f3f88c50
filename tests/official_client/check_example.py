"""Check a Python example against the official client's real API, without a node.

Runs in the client's own environment (like ``driver.py``): reads Python source
on stdin (the README's worked example) and checks, statically, that every name
it imports from ``scheduler0`` exists, that every ``Client`` method it calls
(on a variable made by one of the client's factories) exists and takes the
keyword arguments given, and that every request body is built with fields its
dataclass has, its required ones included. Prints a JSON list of the problems
found (empty: none).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import sys
from typing import Any

import scheduler0

FACTORIES = {"Client", "NewClient", "NewAPIClient", "NewAPIClientWithAccount", "NewBasicAuthClient"}


def imported(tree: ast.Module) -> tuple[dict[str, Any], list[str]]:
    names: dict[str, Any] = {}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scheduler0"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
                else:
                    problems.append(f"{node.module} has no {alias.name}")
    return names, problems


def clients(tree: ast.Module) -> set[str]:
    """Variables assigned from one of the client's factories."""
    made = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id in FACTORIES
        ):
            made |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return made


def keyword_problems(what: str, call: ast.Call, accepted: set[str]) -> list[str]:
    given = {k.arg for k in call.keywords if k.arg is not None}
    return [f"{what}: no parameter {name!r}" for name in sorted(given - accepted)]


def missing_fields(
    what: str, call: ast.Call, fields: tuple[dataclasses.Field[Any], ...]
) -> list[str]:
    """Required fields (no default) given neither by position nor by keyword."""
    given = {k.arg for k in call.keywords} | {f.name for f in fields[: len(call.args)]}
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return [f"{what}: required field {name!r} not given" for name in required if name not in given]


def check(source: str) -> list[str]:
    tree = ast.parse(source)
    names, problems = imported(tree)
    made = clients(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in names:
            target = names[func.id]
            if dataclasses.is_dataclass(target):
                fields = dataclasses.fields(target)
                problems += keyword_problems(func.id, node, {f.name for f in fields})
                problems += missing_fields(func.id, node, fields)
            elif callable(target):
                params = set(inspect.signature(target).parameters)
                problems += keyword_problems(func.id, node, params)
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in made
        ):
            method = getattr(scheduler0.Client, func.attr, None)
            if method is None:
                problems.append(f"Client has no method {func.attr!r}")
            else:
                params = set(inspect.signature(method).parameters)
                problems += keyword_problems(f"Client.{func.attr}", node, params)
    if not made:
        problems.append("the example makes no client")
    return problems


if __name__ == "__main__":
    print(json.dumps(check(sys.stdin.read())))
