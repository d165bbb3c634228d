"""``benchmarks/bench.py --smoke``: every variant and case runs and produces valid telemetry.

Validity only, never a speed: each variant exported the spans and metric points it promises
for every case (one span per call with tokens and cost on the last, none for ``bare``), the
hand-written floor carries exactly llmmeter's span attributes, the micro benchmarks decided
and priced as expected, ``import llmmeter`` did not import openai, and the tables printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
VARIANTS = ("bare", "floor", "llmmeter", "llmmeter-policy", "llmmeter-policy-match")
CASES = (
    "chat",
    "chat_async",
    "responses",
    "embeddings",
    "stream_10",
    "stream_200",
    "stream_usage",
)


@dataclass
class Smoke:
    returncode: int
    stdout: str
    stderr: str
    results: dict[str, Any]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    results = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return Smoke(done.returncode, done.stdout, done.stderr, results)


def test_the_smoke_run_exits_zero_with_nothing_invalid(smoke: Smoke) -> None:
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-3000:]
    assert smoke.results["failures"] == []
    assert smoke.results["problems"] == []


def test_every_variant_produced_valid_telemetry_for_every_case(smoke: Smoke) -> None:
    raw = smoke.results["raw"]
    assert set(raw) == set(VARIANTS)
    for variant in VARIANTS:
        assert set(raw[variant]) == set(CASES), variant
        for case in CASES:
            (entry,) = raw[variant][case]  # one round
            assert entry["problems"] == [], (variant, case)
            assert entry["calls"] > entry["timed_calls"] > 0, (variant, case)
            spans = 0 if variant == "bare" else entry["calls"]
            assert entry["spans"] == spans, (variant, case)
            if variant == "bare":
                continue
            attributes = entry["last_span"]["attributes"]
            assert attributes["gen_ai.usage.input_tokens"] > 0, (variant, case)
            assert attributes["gen_ai.usage.cost.amount"] > 0, (variant, case)


def test_the_floor_sets_exactly_llmmeters_span_attributes(smoke: Smoke) -> None:
    raw = smoke.results["raw"]
    for case in CASES:
        ours = raw["llmmeter"][case][0]
        floor = raw["floor"][case][0]
        assert set(floor["last_span"]["attributes"]) == set(ours["last_span"]["attributes"]), case
        assert floor["last_span"]["name"] == ours["last_span"]["name"], case
        assert floor["metric_labels"] == ours["metric_labels"], case


def test_the_policy_variants_route_only_when_a_rule_matches(smoke: Smoke) -> None:
    raw = smoke.results["raw"]
    for case in CASES:
        missed = raw["llmmeter-policy"][case][0]["last_span"]["attributes"]
        assert "llmmeter.policy.rule" not in missed, case
        if case != "embeddings":  # never routed
            matched = raw["llmmeter-policy-match"][case][0]["last_span"]["attributes"]
            assert matched["llmmeter.policy.rule"] == "summarise-to-mini", case
            assert matched["gen_ai.request.model"] == "gpt-4o-mini", case


def test_micro_import_and_memory_ran(smoke: Smoke) -> None:
    results = smoke.results
    assert results["micro"]["policy"]
    assert results["micro"]["price"]
    cases = results["imports"]["cases"]
    assert cases["import llmmeter"]["openai_after_import"] is False
    soak = results["soak"]
    if soak["ran"]:
        assert soak["valid"], soak


def test_the_tables_are_printed(smoke: Smoke) -> None:
    for case in CASES:
        assert f"**{case}**:" in smoke.stdout
    for table in ("**per streamed chunk**", "**micro**", "**import**", "**targets**"):
        assert table in smoke.stdout
    assert "- Machine:" in smoke.stdout
    assert "Telemetry valid" in smoke.stdout


def test_readers_benchmark_reads_every_shape() -> None:
    """``benchmarks/readers.py``: each shape is built, read and measured (validity only)."""
    script = BENCH.parent / "readers.py"
    done = subprocess.run(
        [sys.executable, str(script), "--size", "1", "--rounds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert set(results) == {"collector lines", "pretty documents", "junk lines"}
    for result in results.values():
        assert 0.9 < result["mib"] < 1.5  # whole lines: up to one more than asked
        assert result["seconds"] > 0
