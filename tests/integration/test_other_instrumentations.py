"""The real other OpenAI instrumentations beside llmmeter, each in its own virtualenv.

What docs/reliability.md ("Sharing a process") promises, checked against the packages from
PyPI rather than stand-ins (``tests/unit/test_sharing_a_process.py`` has those): each runs
``tests/coexist/scenario.py`` in ``build/coexist/NAME/`` (``make coexist-venvs``, pinned in
``tests/coexist/requirements/``) against this test's fake server, alone (what the user sees
without llmmeter), with llmmeter instrumented first, with the other first, and, where the other
has an ``opentelemetry_instrumentor`` entry point, under ``opentelemetry-instrument``.

- The user gets exactly what the SDK gives without llmmeter (every chunk of a stream), with
  no exception, and the application's context is its own again after each call.
- Each call has exactly one llmmeter span and one set of llmmeter metrics. An instrumentation
  llmmeter silences records nothing, except on the first call of a method it had wrapped over
  llmmeter's (llmmeter wraps on top at that call, which may carry both spans); one that cannot
  be silenced (openai-v2, OpenLIT) records as it does alone, and llmmeter names it once in a
  WARNING with its off switch.
- ``llmmeter.uninstrument()`` leaves the other recording as it does alone.
- Where the HTTP client is instrumented too (httpx on openai 2.x, httpx2 on 3.x), each call's
  HTTP span stays, under llmmeter's span.

A missing virtualenv skips its tests, except in CI (``CI=true``), which builds them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmmeter.testing import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "build" / "coexist"
SCENARIO = ROOT / "tests" / "coexist" / "scenario.py"
IN_CI = os.environ.get("CI") == "true"
NEUTRAL = frozenset({"llmmeter", "opentelemetry.instrumentation.httpx"})
"""Scopes that are not the other instrumentation's: llmmeter's own and the HTTP client's."""
HTTP_SCOPE = "opentelemetry.instrumentation.httpx"
UNINSTRUMENTED = ("after-uninstrument-chat", "after-uninstrument-stream")
BASELINE_OF = {"after-uninstrument-chat": "chat-1", "after-uninstrument-stream": "stream"}
"""The call of the run without llmmeter that a call after ``uninstrument()`` repeats."""


@dataclass(frozen=True)
class Other:
    name: str
    """Its virtualenv and requirement file (``tests/coexist/requirements/NAME.txt``)."""
    logged_as: str
    """How llmmeter's log names it."""
    silenced: bool
    entry_point: bool
    """It has an ``opentelemetry_instrumentor`` entry point (runs under the launcher too)."""
    switch: str = ""
    """The off switch the WARNING names, for one that cannot be silenced."""
    http: bool = False
    """Its virtualenv instruments the HTTP client too."""
    known_failures: dict[str, str] = field(default_factory=dict)
    """Checks that fail with this instrumentation today (check name -> reason): strict xfail."""


OTHERS = (
    Other("genai-openai", "opentelemetry-instrumentation-genai-openai", True, True),
    Other("openllmetry", "opentelemetry-instrumentation-openai (OpenLLMetry)", True, True),
    Other("openinference", "openinference-instrumentation-openai", True, True, http=True),
    Other("logfire", "logfire (instrument_openai)", True, False, http=True),
    Other(
        "openai-v2",
        "opentelemetry-instrumentation-openai-v2",
        False,
        True,
        switch="OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=openai",
    ),
    Other(
        "openlit",
        "openlit",
        False,
        False,
        switch="OPENLIT_DISABLED_INSTRUMENTORS=openai",
        http=True,
    ),
)


def _orders(other: Other) -> tuple[str, ...]:
    both = ("llmmeter-first", "other-first")
    return (*both, "auto") if other.entry_point else both


def cases(check: str, *, only: Any = None) -> list[Any]:
    """``(other, order)`` for every instrumentation and order, with the known failures of
    ``check`` marked strict xfail."""
    found = []
    for other in OTHERS:
        if only is not None and not only(other):
            continue
        reason = other.known_failures.get(check)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        found.extend(
            pytest.param(other, order, id=f"{other.name}-{order}", marks=marks)
            for order in _orders(other)
        )
    return found


# --- running the scenario ----------------------------------------------------------------


@dataclass
class Run:
    other: Other
    order: str
    stderr: str
    result: dict[str, Any]

    @property
    def calls(self) -> list[dict[str, Any]]:
        return list(self.result["calls"])

    def call(self, label: str) -> dict[str, Any]:
        (found,) = [c for c in self.calls if c["label"] == label]
        return found

    def instrumented(self) -> list[dict[str, Any]]:
        """The calls made while llmmeter was instrumented."""
        return [c for c in self.calls if c["label"] not in UNINSTRUMENTED]


_RUNS: dict[tuple[str, str, str], Run] = {}


def _python(other: Other) -> Path:
    home = VENVS / other.name
    python = home / "bin" / "python"
    if not python.exists() or not (home / ".pins.sha256").exists():
        reason = f"{home} is not built (make coexist-venvs, or bash tests/coexist/setup.sh)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must build it")
        pytest.skip(reason)
    return python


def run(other: Other, order: str, fake: FakeOpenAI) -> Run:
    """The scenario's outcome for ``other`` in ``order`` (each run once per session)."""
    key = (other.name, order, fake.base_url)
    if key in _RUNS:
        return _RUNS[key]
    python = _python(other)
    command = [str(python), str(SCENARIO), other.name, order]
    if order == "auto":
        command[:0] = [str(python.parent / "opentelemetry-instrument")]
    elif other.http and order != "other-only":
        command.append("--httpx")
    env = {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LLMMETER_TEST_BASE_URL": fake.base_url,
        # The launcher's exporters: none (the scenario reads telemetry in memory).
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    with tempfile.TemporaryDirectory() as cwd:
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=180,
                env=env,
                cwd=cwd,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{other.name} {order}: the scenario hung (no end after 180 s): {exc}")
    assert done.returncode == 0, f"{other.name} {order} exited {done.returncode}:\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("SCENARIO-RESULT ")]
    assert lines, f"{other.name} {order}: no result\n{done.stdout[-2000:]}\n{done.stderr}"
    found = _RUNS[key] = Run(other, order, done.stderr, json.loads(lines[-1].split(" ", 1)[1]))
    return found


def spans_by_scope(call: dict[str, Any]) -> Counter[str]:
    return Counter(span["scope"] for span in call["spans"])


def others_spans(call: dict[str, Any]) -> Counter[str]:
    return Counter({s: n for s, n in spans_by_scope(call).items() if s not in NEUTRAL})


def others_points(call: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {s: p for s, p in call["points"].items() if s not in NEUTRAL}


def ours_outermost(stack: list[str]) -> bool:
    return bool(stack) and stack[0].startswith("llmmeter.")


def measured(found: Run) -> str:
    """Per call: spans, and metrics with points, by scope (for assertion messages)."""
    rows = []
    for call in found.calls:
        points = {s: len(p) for s, p in call["points"].items()}
        rows.append(f"  {call['label']}: spans {dict(spans_by_scope(call))}, metrics {points}")
    return "\n".join(rows)


# --- the checks --------------------------------------------------------------------------


@pytest.mark.parametrize("other", OTHERS, ids=lambda o: o.name)
def test_the_other_records_alone(other: Other, fake: FakeOpenAI) -> None:
    """The baseline is real: alone, the instrumentation records the chat calls and stream."""
    alone = run(other, "other-only", fake)
    for label in ("chat-1", "stream", "async-chat", "async-stream", "embeddings"):
        assert others_spans(alone.call(label)), f"{other.name} recorded nothing for {label}"
    assert "llmmeter" not in {s for c in alone.calls for s in spans_by_scope(c)}


@pytest.mark.parametrize(("other", "order"), cases("fidelity"))
def test_the_user_gets_what_the_sdk_gives(other: Other, order: str, fake: FakeOpenAI) -> None:
    """Every result and every chunk as without llmmeter; no exception, no internal error."""
    alone = run(other, "other-only", fake)
    both = run(other, order, fake)
    for call in both.calls:
        baseline = alone.call(BASELINE_OF.get(call["label"], call["label"]))
        assert call["got"] == baseline["got"], f"{call['label']}: the user got something else"
    assert len(both.call("stream")["got"]) == len(both.call("async-stream")["got"]) == 24
    assert "Traceback" not in both.stderr
    assert "llmmeter internal error" not in both.stderr, both.stderr


@pytest.mark.parametrize(("other", "order"), cases("context"))
def test_the_context_is_the_applications_after_each_call(
    other: Other, order: str, fake: FakeOpenAI
) -> None:
    """Nothing of a call (its span, the keys that tell the others to stand back) stays
    attached to the application's context once the call, or its stream, is over."""
    both = run(other, order, fake)
    left = {c["label"]: c["context_after"] for c in both.calls if c["context_after"]}
    assert not left, f"context left behind after: {left}"


@pytest.mark.parametrize(("other", "order"), cases("one_span"))
def test_one_llmmeter_span_and_one_set_of_metrics_per_call(
    other: Other, order: str, fake: FakeOpenAI
) -> None:
    both = run(other, order, fake)
    alone = run(other, "other-only", fake)
    duplicated: list[str] = []
    seen_methods: set[str] = set()
    for call in both.instrumented():
        label = call["label"]
        assert spans_by_scope(call)["llmmeter"] == 1, f"{label}:\n{measured(both)}"
        ours = call["points"].get("llmmeter", {})
        assert ours.get("gen_ai.client.operation.duration") == 1, f"{label}: {ours}"
        first_of_method = call["method"] not in seen_methods
        seen_methods.add(call["method"])
        assert ours_outermost(call["stack_after"]), f"{label}: {call['stack_after']}"
        if not other.silenced:
            # Documented: it records as it does alone, beside llmmeter's span.
            expected = alone.call(label)
            assert others_spans(call) == others_spans(expected), f"{label}:\n{measured(both)}"
            assert others_points(call) == others_points(expected), f"{label}:\n{measured(both)}"
            continue
        if others_spans(call) or others_points(call):
            # Allowed once per method: the call that finds the other's wrapper over llmmeter's.
            assert first_of_method and not ours_outermost(call["stack_before"]), (
                f"{label}: {other.name} recorded, with llmmeter outermost "
                f"({call['stack_before']}):\n{measured(both)}"
            )
            duplicated.append(label)
    if order != "llmmeter-first":
        assert not duplicated, f"llmmeter was outermost from the start:\n{measured(both)}"


@pytest.mark.parametrize(("other", "order"), cases("log"))
def test_named_once_in_the_log(other: Other, order: str, fake: FakeOpenAI) -> None:
    """One that cannot be silenced is named once in a WARNING with its off switch; one that
    is silenced gets no warning."""
    both = run(other, order, fake)
    lines = [line for line in both.stderr.splitlines() if line.startswith("llmmeter:")]
    warned = [line for line in lines if "cannot be told to stand back" in line]
    if other.silenced:
        assert not warned, lines
        return
    assert len(warned) == 1, lines
    assert f"llmmeter: {other.logged_as} also instruments openai" in warned[0]
    assert other.switch in warned[0]


@pytest.mark.parametrize(("other", "order"), cases("uninstrument"))
def test_uninstrument_leaves_the_other_working(other: Other, order: str, fake: FakeOpenAI) -> None:
    both = run(other, order, fake)
    alone = run(other, "other-only", fake)
    for label in UNINSTRUMENTED:
        call = both.call(label)
        expected = alone.call(BASELINE_OF[label])
        assert spans_by_scope(call)["llmmeter"] == 0, label
        assert others_spans(call) == others_spans(expected), f"{label}:\n{measured(both)}"
        assert others_points(call) == others_points(expected), f"{label}:\n{measured(both)}"


@pytest.mark.parametrize(("other", "order"), cases("http", only=lambda o: o.http))
def test_http_spans_stay_under_llmmeters_span(other: Other, order: str, fake: FakeOpenAI) -> None:
    """llmmeter tells the others to stand back while the SDK method runs, and hands
    instrumentation back for the HTTP request itself: the request's span stays, in the
    call's trace under llmmeter's span (with openai 2.x's httpx, and openai 3.x's httpx2)."""
    both = run(other, order, fake)
    for call in both.instrumented():
        http = [s for s in call["spans"] if s["scope"] == HTTP_SCOPE]
        assert len(http) == 1, f"{call['label']}:\n{measured(both)}"
        assert "llmmeter" in http[0]["ancestors"], f"{call['label']}: {http[0]}"
