"""Shared fixtures: a real fake-OpenAI server, in-memory telemetry, a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter
from llmmeter.testing import FakeOpenAI

LOAD_TIMEOUT = 300.0
"""Client timeout, in seconds, for the tests that load the machine on purpose (hundreds of
concurrent calls): they check what is answered, never how fast. The SDK's default connect
timeout (5 s) trips when a loaded machine's event loop or threads fall behind."""


@pytest.fixture(autouse=True)
def alone_when_marked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under pytest-xdist (``make test``), a test marked ``alone`` runs while no other test
    runs on any worker: it loads the machine on purpose, or needs it quiet. Every other test
    shares a file lock; an ``alone`` test takes it exclusively. It first takes a turnstile
    lock that every test passes through, so a stream of shared holders on the other worker
    cannot starve it. Without xdist, tests run one at a time anyway."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    import fcntl

    alone = request.node.get_closest_marker("alone") is not None
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker
    with (
        open(shared / "alone.turnstile", "a") as turnstile,
        open(shared / "alone.lock", "a") as room,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLMMETER_*/OTEL_* variable (nor COLUMNS, the width tables fit) from the machine
    leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("LLMMETER_", "OTEL_")) or name == "COLUMNS":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def global_providers() -> Iterator[None]:
    """Global providers without exporters, so no test's instrument() builds OTLP exporters."""
    from opentelemetry import metrics, trace

    tracer_provider = TracerProvider()
    meter_provider = MeterProvider()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    yield
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def server(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The session's fake server with its log and scripted behaviour cleared for this test."""
    fake.reset()
    yield fake
    fake.reset()


@dataclass
class Telemetry:
    """In-memory spans and metrics of one instrumented test."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def instrument(self, **kwargs: Any) -> None:
        """llmmeter.instrument() into this telemetry (strict unless told otherwise).

        Streams ask for usage on every server (``inject_stream_usage=True``): the fake server
        honours ``stream_options`` as OpenAI's API does, but by default llmmeter only asks on
        OpenAI's own hosts. Tests of that default pass ``inject_stream_usage=None``."""
        kwargs.setdefault("strict", True)
        kwargs.setdefault("inject_stream_usage", True)
        llmmeter.instrument(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        """The only finished span (fails if there is not exactly one)."""
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, name: str) -> list[Any]:
        """Data points of one metric, across scopes."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric(self, name: str) -> Any:
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        return metric
        raise AssertionError(f"no metric {name}")


def make_telemetry() -> Telemetry:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return Telemetry(exporter, reader, tracer_provider, MeterProvider(metric_readers=[reader]))


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """llmmeter instrumented (strict: internal errors fail the test) into in-memory telemetry."""
    tel = make_telemetry()
    tel.instrument()
    yield tel
    llmmeter.uninstrument()
    tel.meter_provider.shutdown()
    tel.tracer_provider.shutdown()


@pytest.fixture
def openai_module() -> Any:
    return pytest.importorskip("openai")


@pytest.fixture
def client(server: FakeOpenAI, openai_module: Any) -> Iterator[Any]:
    with openai_module.OpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(server: FakeOpenAI, openai_module: Any) -> Any:
    c = openai_module.AsyncOpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0)
    yield c
    await c.close()


# --- hypothesis: a bounded, reproducible budget by default; LLMMETER_FUZZ=long digs deeper ---
# (read here, at collection: the clean_environ fixture removes LLMMETER_* from each test)
from hypothesis import HealthCheck, settings  # noqa: E402

_FUZZ_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "llmmeter-ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_FUZZ_HEALTH,
)
settings.register_profile(  # a fresh random seed per run; a failure prints how to replay it
    "llmmeter-long",
    max_examples=20_000,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_FUZZ_HEALTH,
)
_FUZZ_PROFILES = {"": "llmmeter-ci", "ci": "llmmeter-ci", "long": "llmmeter-long"}
if os.environ.get("LLMMETER_FUZZ", "") not in _FUZZ_PROFILES:
    raise pytest.UsageError(
        f"LLMMETER_FUZZ: expected one of ci, long (or unset); got {os.environ['LLMMETER_FUZZ']!r}"
    )
settings.load_profile(_FUZZ_PROFILES[os.environ.get("LLMMETER_FUZZ", "")])
