"""A pytest plugin that runs the openai SDK's own test suite with llmmeter instrumented.

Loaded only by ``tests/sdk_suite/run.py`` for its instrumented runs, as ``-p llmmeter_sdk_suite``
with this folder on ``PYTHONPATH``. It is a top-level module, not ``tests.sdk_suite.plugin``,
because the SDK's suite is itself a package named ``tests`` (its conftest imports
``tests.utils``): importing ours under that name would shadow it.

``llmmeter.instrument()`` runs when pytest loads its initial conftests, before the SDK's
``tests/conftest.py`` imports openai, with in-memory exporters (the suite's calls must not
leave the process). ``LLMMETER_SDK_SUITE_STRICT=1`` instruments with ``strict=True``, so
llmmeter itself re-raises its internal errors inside the test they happen in. Each process
(each xdist worker) writes what it exported to ``LLMMETER_SDK_SUITE_REPORT/<worker>.json``;
each test's span count also lands in the JUnit XML as the property ``llmmeter_spans``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

STRICT_ENV = "LLMMETER_SDK_SUITE_STRICT"
REPORT_ENV = "LLMMETER_SDK_SUITE_REPORT"
_INTERNAL_ERROR = "llmmeter internal error in "


class _State:
    """What this process instrumented with, and what it has counted so far."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.exported = 0
        self.span_names: Counter[str] = Counter()
        self.strict = os.environ.get(STRICT_ENV, "") == "1"
        self.openai_imported_first = "openai" in sys.modules
        self.errors = _ErrorCounter()

    def take_spans(self) -> int:
        """Count and drop the spans finished so far (memory stays flat over 20k tests)."""
        finished = self.spans.get_finished_spans()
        self.spans.clear()
        self.exported += len(finished)
        self.span_names.update(span.name.split(" ", 1)[0] for span in finished)
        return len(finished)


class _ErrorCounter(logging.Handler):
    """Counts the guard's "internal error" reports by site: in a non-strict run, the places
    where llmmeter swallowed a failure of its own."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.sites: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith(_INTERNAL_ERROR) and record.args:
            self.sites[str(record.args[0] if isinstance(record.args, tuple) else "?")] += 1


_state: _State | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Instrument before the SDK's conftest (an initial conftest) imports openai."""
    global _state  # noqa: PLW0603 - one instrumentation per process, as in an application
    import llmmeter

    _state = _State()
    # The logger's level is left alone (the suite's caplog tests see what they would see):
    # this counts each site's first report, a warning; repeats go to debug level unseen.
    logging.getLogger("llmmeter").addHandler(_state.errors)
    llmmeter.instrument(
        tracer_provider=_state.tracer_provider,
        meter_provider=_state.meter_provider,
        strict=_state.strict,
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    """Attribute each test's spans to it (setup, call and teardown included)."""
    if _state is not None:
        _state.take_spans()  # spans of earlier tests that ended late (abandoned streams)
    yield


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _state is not None:
        item.user_properties.append(("llmmeter_spans", _state.take_spans()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write this process's totals for the runner to add up."""
    if _state is None:
        return
    _state.take_spans()
    _state.meter_provider.force_flush()
    points = 0
    metric_names: Counter[str] = Counter()
    data = _state.metrics.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                count = len(metric.data.data_points)
                points += count
                metric_names[metric.name] += count
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    report = {
        "worker": worker,
        "strict": _state.strict,
        "openai_imported_before_instrument": _state.openai_imported_first,
        "spans": _state.exported,
        "span_operations": dict(_state.span_names),
        "metric_points": points,
        "metrics": dict(metric_names),
        "internal_errors": dict(_state.errors.sites),
    }
    path = Path(target)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{worker}.json").write_text(json.dumps(report, indent=2, sort_keys=True))
