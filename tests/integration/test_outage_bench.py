"""``benchmarks/outage.py`` in a smoke run: every variant completes and its checks hold.

Correctness only (the benchmark itself reports the speed, as a ratio in one run): every call
answered and nothing raised, the healthy receiver got every span, each failing endpoint was
reported once per signal although several batches failed, and every child exited.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Runs by itself (tests/conftest.py): the benchmark's exporters run on 1 s timeouts.
pytestmark = pytest.mark.alone

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "outage.py"
FAILING = ("refused", "hanging", "erroring-503", "erroring-400")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    # 1600 spans per child, exported every 50 ms: a failing endpoint fails several times
    # for spans and for metrics (every 100 ms) while the calls run. (What is still queued
    # at exit is dropped without trying once the endpoint has failed.)
    done = subprocess.run(
        [
            *(sys.executable, str(BENCH), "--calls", "1500", "--warmup", "100"),
            *("--rounds", "1", "--export-timeout", "1", "--metric-interval", "100"),
            *("--schedule-delay", "50", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_every_variant_completes_with_every_call_answered(report: dict[str, Any]) -> None:
    variants = report["variants"]
    assert set(variants) == {"bare", "none", "healthy", *FAILING}
    for name, variant in variants.items():
        assert variant["completed"] == 1, (name, variant)
        assert variant["returncodes"] == [0], (name, variant)
        assert variant["calls"] == 1600, (name, variant)
        assert variant["answered"] == 1600, (name, variant)
        assert variant["errors"] == 0, (name, variant["error_samples"])
        assert variant["exit_s"][0] is not None, name  # the child exited after its last call
        assert variant["median_us"] > 0, name


def test_the_healthy_receiver_gets_every_span_and_nothing_is_logged(
    report: dict[str, Any],
) -> None:
    healthy = report["variants"]["healthy"]
    assert healthy["spans_received"] == 1600
    assert healthy["receiver_requests"].get("/v1/metrics", 0) >= 1
    assert healthy["outage_lines"] == {"spans": [0], "metrics": [0]}
    assert healthy["exporter_records"] == {}
    assert healthy["other_stderr"] == []


@pytest.mark.parametrize("name", FAILING)
def test_a_failing_endpoint_is_logged_once_per_signal_not_once_per_batch(
    report: dict[str, Any], name: str
) -> None:
    variant = report["variants"][name]
    assert variant["outage_lines"] == {"spans": [1], "metrics": [1]}, variant["other_stderr"]
    records = variant["exporter_records"]
    # Several batches failed, or were dropped at exit once the endpoint had failed (said in
    # one more line); either way one outage warning per signal.
    for signal in ("spans", "metrics"):
        gave_up = any(
            f"exiting while exporting {signal}" in line for line in variant["other_stderr"]
        )
        assert records[f"{signal}_failed_exports"] + gave_up >= 2, records
    assert variant["recovery_lines"] == 0
    assert not [line for line in variant["other_stderr"] if "Traceback" in line]


def test_the_baselines_export_nothing_and_log_nothing(report: dict[str, Any]) -> None:
    for name in ("bare", "none"):
        variant = report["variants"][name]
        assert variant["exporter_records"] == {}, name
        assert variant["other_stderr"] == [], name
