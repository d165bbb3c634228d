"""A pytest plugin that deselects the SDK's tests that need what its sdist does not ship.

Loaded by ``tests/sdk_suite/run.py`` in every run, plain and instrumented alike, so that all
runs select the same tests; it never imports llmmeter. Whole folders are left out with
``--ignore`` by the runner; this plugin handles what a path cannot name exactly: the tests of
a folder that call the SDK's mock server (those that mock HTTP themselves, with the suite's
``respx`` fixture, run), tests whose code uses a given global name (``external``,
inline-snapshot's recorded files), and single test ids with all their parameters
(``--deselect`` matches by prefix, so ``test_a`` would also drop ``test_ab``).

The rules come as JSON from the file named by ``LLMMETER_SDK_SUITE_DESELECT``: a list of
``{"kind": "server" | "uses" | "id", "target": ..., "reason": ...}``. The ids each rule
dropped go to ``<that file>.<worker>.out.json``, for the runner's summary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

RULES_ENV = "LLMMETER_SDK_SUITE_DESELECT"


def _names(code: CodeType) -> set[str]:
    """Global names a function's code uses, nested functions and lambdas included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names(const)
    return names


def _matches(item: pytest.Item, rule: dict[str, Any]) -> bool:
    if rule["kind"] == "id":
        return bool(item.nodeid.split("[", 1)[0] == rule["target"])
    if rule["kind"] == "server":
        under = item.nodeid.startswith(rule["target"])
        fixtures = getattr(item, "fixturenames", ())
        return under and not any(name.startswith("respx") for name in fixtures)
    if rule["kind"] == "uses":
        function = getattr(item, "function", None)
        code = getattr(function, "__code__", None)
        return isinstance(code, CodeType) and rule["target"] in _names(code)
    raise ValueError(f"unknown deselection rule kind {rule['kind']!r}")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = os.environ.get(RULES_ENV)
    if not path:
        return
    rules: list[dict[str, Any]] = json.loads(Path(path).read_text())
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    by_rule: dict[str, list[str]] = {rule["target"]: [] for rule in rules}
    for item in items:
        rule = next((rule for rule in rules if _matches(item, rule)), None)
        if rule is None:
            kept.append(item)
        else:
            dropped.append(item)
            by_rule[rule["target"]].append(item.nodeid)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(f"{path}.{worker}.out.json").write_text(json.dumps(by_rule, indent=1))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
