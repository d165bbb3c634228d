"""The one-liner's own providers, built from OTEL_* only: what reaches a collector, what
happens when the collector is down, slow or refusing, and the Prometheus endpoint.

Each case runs a real app in a subprocess (providers are process-global) against the fake
OpenAI server, exporting OTLP/HTTP to a small collector in this test that decodes what it
receives with the OTLP protobuf definitions.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmmeter.testing import FakeOpenAI
from tests.local_http import QuietHTTPServer

APP = """
import logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(levelname)s %(name)s %(message)s")
import llmmeter, openai
if os.environ.get("MARK_EXPORTS"):  # each span export attempt and the exit, in stdout's order
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    export = OTLPSpanExporter.export
    def marked(self, spans):
        sys.stdout.write("EXPORT\\n"); sys.stdout.flush()
        return export(self, spans)
    OTLPSpanExporter.export = marked
llmmeter.instrument()
if os.environ.get("MARK_EXPORTS"):  # registered after llmmeter's: runs before its exit work
    import atexit
    atexit.register(lambda: (sys.stdout.write("EXITING\\n"), sys.stdout.flush()))
client = openai.OpenAI(base_url=os.environ["FAKE_BASE_URL"], api_key="sk-test", max_retries=0)
for _ in range(int(os.environ.get("CALLS", "1"))):
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    if os.environ.get("PAUSE"):
        import time; time.sleep(float(os.environ["PAUSE"]))
print("CALLS-DONE", flush=True)
"""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Collector:
    """An OTLP/HTTP receiver: records requests; answers 200, or ``status`` for the next
    ``failures`` requests, or waits ``hang`` seconds first (cut short when the test ends, so
    a collector that "never answers" costs no time after its test)."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    failures: int = 0
    status: int = 503
    hang: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received on a traces path."""
        out = []
        for request in self.received:
            if request.path.endswith("traces"):
                message = ExportTraceServiceRequest.FromString(request.body)
                for resource_spans in message.resource_spans:
                    resource = _attributes(resource_spans.resource.attributes)
                    for scope in resource_spans.scope_spans:
                        out.extend((resource, span) for span in scope.spans)
        return out

    def metric_names(self) -> set[str]:
        names = set()
        for request in self.received:
            if request.path.endswith("metrics"):
                message = ExportMetricsServiceRequest.FromString(request.body)
                for resource_metrics in message.resource_metrics:
                    for scope in resource_metrics.scope_metrics:
                        names.update(metric.name for metric in scope.metrics)
        return names


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        out[pair.key] = getattr(value, kind) if kind else None
    return out


@pytest.fixture
def collector() -> Iterator[Collector]:
    state = Collector()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with state.lock:
                failing = state.failures > 0
                if failing:
                    state.failures -= 1
                else:
                    state.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
            if state.hang:
                state.released.wait(state.hang)
            if failing:
                self.send_response(state.status)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            reply = (
                ExportTraceServiceResponse()
                if "trace" in self.path
                else ExportMetricsServiceResponse()
            ).SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.released.set()
    server.shutdown()
    server.server_close()


def _app_env(fake: FakeOpenAI, env: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FAKE_BASE_URL": fake.base_url,
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",  # only the flush at exit exports metrics
        **env,
    }


def _run(
    fake: FakeOpenAI, env: dict[str, str], timeout: float = 60, app: str = APP
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(app)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_app_env(fake, env),
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_short_script_loses_nothing_spans_and_metrics_are_flushed_at_exit(
    fake: FakeOpenAI, collector: Collector
) -> None:
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_SERVICE_NAME": "billing-bot",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=llm",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
        },
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (resource, span), *_ = collector.spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == span.SPAN_KIND_CLIENT
    assert resource["service.name"] == "billing-bot"
    assert resource["deployment.environment"] == "test"
    assert resource["team"] == "llm"
    assert resource["service.instance.id"]  # processes of one service never share series
    assert all(r.headers.get("x-tenant") == "acme" for r in collector.received)
    attrs = _attributes(span.attributes)
    assert attrs["gen_ai.usage.cost.amount"] > 0
    assert {"llmmeter.cost.usd", "gen_ai.client.operation.duration"} <= collector.metric_names()


def test_per_signal_endpoints_are_used_as_given(fake: FakeOpenAI, collector: Collector) -> None:
    base = f"http://127.0.0.1:{collector.port}"
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{base}/custom/traces",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{base}/custom/metrics",
        },
    )
    assert done.returncode == 0, done.stderr
    assert {r.path for r in collector.received} == {"/custom/traces", "/custom/metrics"}


def test_a_collector_that_is_down_never_breaks_the_app_and_is_reported_once(
    fake: FakeOpenAI,
) -> None:
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_METRIC_EXPORT_INTERVAL": "100",
            "CALLS": "8",
            "PAUSE": "0.1",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "CALLS-DONE" in done.stdout
    lines = done.stderr.splitlines()
    assert len([x for x in lines if "exporting spans to" in x and "failed" in x]) == 1, lines
    assert len([x for x in lines if "exporting metrics to" in x and "failed" in x]) == 1, lines
    assert not [x for x in lines if "opentelemetry" in x.split(" ")[1]], lines
    assert all(x.startswith("WARNING llmmeter ") for x in lines), lines


def test_a_refusing_collector_is_reported_once_and_its_recovery_with_what_was_dropped(
    fake: FakeOpenAI, collector: Collector
) -> None:
    """The first two exports are refused. How many spans each batch holds depends on how
    fast the machine runs the batch thread (one per call when idle, more under load), so
    the check is that every span is either received or counted as dropped, never both."""
    collector.failures = 2
    collector.status = 400  # not retried by the exporter: each failed batch is dropped
    calls = 8
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "CALLS": str(calls),
            "PAUSE": "0.3",
        },
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    failed = [x for x in lines if "exporting spans to" in x and "failed" in x]
    recovered = [x for x in lines if "works again" in x]
    assert len(failed) == 1 and len(recovered) == 1, lines
    dropped = re.search(r"(\d+) were dropped meanwhile", recovered[0])
    assert dropped, recovered
    received = len(collector.spans())
    assert int(dropped[1]) >= 2  # a span at least in each refused batch
    assert received >= 1
    assert int(dropped[1]) + received == calls


def test_a_hanging_collector_delays_neither_calls_nor_exit_beyond_the_timeout(
    fake: FakeOpenAI, collector: Collector
) -> None:
    """The collector answers after an hour: the app ending at all (within the run's generous
    bound, whatever the machine's load) shows that every export gave up at its timeout."""
    collector.hang = 3600
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "CALLS": "3",
        },
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "CALLS-DONE" in done.stdout


PROMETHEUS_APP = (
    APP
    + """
import urllib.request
port = os.environ["OTEL_EXPORTER_PROMETHEUS_PORT"]
print(urllib.request.urlopen(f"http://localhost:{port}/metrics").read().decode())
"""
)


def test_prometheus_exporter_serves_the_metrics_for_scraping(fake: FakeOpenAI) -> None:
    done = _run(
        fake,
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(_free_port()),
            "OTEL_SERVICE_NAME": "scraped-app",
        },
        app=PROMETHEUS_APP,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "target_info{" in text and 'service_name="scraped-app"' in text
    assert "llmmeter_cost_usd_total{" in text
    assert "gen_ai_client_operation_duration_seconds_bucket{" in text
    assert 'gen_ai_request_model="gpt-4o-mini"' in text


def test_prometheus_port_in_use_is_logged_and_the_app_goes_on(fake: FakeOpenAI) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _run(
            fake,
            {
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "prometheus",
                "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
                "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
            },
        )
    assert done.returncode == 0, done.stderr
    assert "CALLS-DONE" in done.stdout
    assert "cannot serve Prometheus metrics" in done.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": "http"},
            "OTEL_EXPORTER_PROMETHEUS_PORT: expected a port number",
        ),
        ({"OTEL_METRICS_EXPORTER": "statsd"}, "OTEL_METRICS_EXPORTER: expected"),
        ({"OTEL_TRACES_EXPORTER": "prometheus"}, "OTEL_TRACES_EXPORTER: expected"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
    ],
)
def test_bad_otel_variables_fail_at_instrument_and_install_nothing(
    fake: FakeOpenAI, env: dict[str, str], says: str
) -> None:
    app = """
    import llmmeter
    from opentelemetry import metrics, trace
    try:
        llmmeter.instrument()
    except llmmeter.ConfigError as exc:
        print("CONFIG-ERROR", exc)
    print("TRACER", type(trace.get_tracer_provider()).__name__)
    print("METER", type(metrics.get_meter_provider()).__name__)
    """
    done = _run(fake, env, app=app)
    assert done.returncode == 0, done.stderr
    assert says in done.stdout
    assert "TRACER ProxyTracerProvider" in done.stdout
    assert "METER _ProxyMeterProvider" in done.stdout


def test_the_fake_collector_decodes_what_it_receives(collector: Collector) -> None:
    """Keeps the tests above honest: the collector fixture really parses OTLP."""
    message = ExportTraceServiceRequest()
    span = message.resource_spans.add().scope_spans.add().spans.add()
    span.name = "probe"
    request = urllib.request.Request(
        f"http://127.0.0.1:{collector.port}/v1/traces",
        data=message.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert [s.name for _, s in collector.spans()] == ["probe"]


def test_dropped_spans_are_counted_by_the_sdks_own_metrics_when_enabled(
    fake: FakeOpenAI, collector: Collector
) -> None:
    """With OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, the OTel SDK counts exported and
    failed spans by error.type; llmmeter's providers carry those metrics with its own."""
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{_free_port()}/v1/traces",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{collector.port}/v1/metrics",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": "true",
            "CALLS": "3",
        },
    )
    assert done.returncode == 0, done.stderr
    failed = 0
    for request in collector.received:
        message = ExportMetricsServiceRequest.FromString(request.body)
        for resource_metrics in message.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "otel.sdk.exporter.span.exported":
                        for point in metric.sum.data_points:
                            if _attributes(point.attributes).get("error.type"):
                                failed += point.as_int
    if "otel.sdk.exporter.span.exported" not in collector.metric_names():
        pytest.skip("this opentelemetry-sdk has no exporter self-metrics")
    assert failed == 3


def test_exit_gives_up_on_a_collector_that_already_failed_instead_of_waiting_per_batch(
    fake: FakeOpenAI, collector: Collector
) -> None:
    """1600 spans (three full batches and a rest) and a collector that never answers: at exit,
    with the collector already failing, at most one export is tried and what is still queued
    is dropped with one warning, instead of each batch waiting out its own timeout (which
    made exit take minutes with the default 10 s).

    How many batches the batch thread exports before exit depends on the machine's speed,
    so the app itself marks each export attempt and the start of its exit on stdout, in the
    order they happen; the collector's count could lag behind under load."""
    collector.hang = 3600
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        # The exporters' own 1 s timeout ends each export, not the exit budget, however
        # slowly a loaded machine runs the exit.
        "LLMMETER_EXIT_TIMEOUT": "60",
        "MARK_EXPORTS": "1",
        "CALLS": "1600",
    }
    done = _run(fake, env, timeout=180)
    assert done.returncode == 0, done.stderr
    marks = [x for x in done.stdout.splitlines() if x in {"EXPORT", "CALLS-DONE", "EXITING"}]
    assert "CALLS-DONE" in marks and "EXITING" in marks, marks
    lines = done.stderr.splitlines()
    assert len([x for x in lines if "exporting spans to" in x and "failed" in x]) == 1, lines
    # Something was still queued at exit (1600 is no multiple of 512) and was dropped.
    assert len([x for x in lines if "exiting while exporting spans" in x]) == 1, lines
    # At exit, one export at most: without the give-up every batch still queued is tried.
    assert marks[marks.index("EXITING") :].count("EXPORT") <= 1, marks


CONFIGURES_LATER = """
import logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(levelname)s %(name)s %(message)s")
import llmmeter, openai
llmmeter.instrument()  # nothing configured yet: llmmeter starts on its own providers

# Then the application (or Logfire, or a distro) configures OpenTelemetry, as it may.
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(tracer_provider)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

client = openai.OpenAI(base_url=os.environ["FAKE_BASE_URL"], api_key="sk-test", max_retries=0)
with trace.get_tracer("app").start_as_current_span("handler"):
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
by_name = {s.name: s for s in spans.get_finished_spans()}
print("SPANS", sorted(by_name))
print("PARENT-OK", by_name["chat gpt-4o-mini"].parent.span_id == by_name["handler"].context.span_id)
names = {m.name for rm in reader.get_metrics_data().resource_metrics
         for sm in rm.scope_metrics for m in sm.metrics}
print("METRICS", "gen_ai.client.operation.duration" in names, "llmmeter.cost.usd" in names)
"""


def test_an_app_that_configures_opentelemetry_after_instrument_keeps_and_gets_everything(
    fake: FakeOpenAI, collector: Collector
) -> None:
    """llmmeter never sets the global providers: the app's own configuration, later, still
    takes (no "Overriding of current TracerProvider is not allowed"), its pipeline gets its
    own spans and llmmeter's (nested under them) and llmmeter's metrics, and the collector
    llmmeter would have used on its own gets nothing."""
    done = _run(
        fake,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}"},
        app=CONFIGURES_LATER,
    )
    assert done.returncode == 0, done.stderr
    assert "Overriding" not in done.stderr
    assert "SPANS ['chat gpt-4o-mini', 'handler']" in done.stdout
    assert "PARENT-OK True" in done.stdout
    assert "METRICS True True" in done.stdout
    assert collector.received == []


def test_exit_waits_for_an_unanswering_collector_no_longer_than_the_exit_budget(
    fake: FakeOpenAI, collector: Collector
) -> None:
    """A new user's first run with a collector that never answers: exports at exit give up
    when the exit budget (LLMMETER_EXIT_TIMEOUT) is spent, said once per signal, instead of
    the exporters' own timeouts and retries (10 s and more per signal by default)."""
    collector.hang = 3600
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "LLMMETER_EXIT_TIMEOUT": "1",
            "CALLS": "3",
        },
        timeout=180,  # the lines below tell the budget from the exporters' own timeouts
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for signal in ("spans", "metrics"):
        gave_up = [x for x in lines if f"exiting: exporting {signal} to" in x]
        assert len(gave_up) == 1, lines
        assert "LLMMETER_EXIT_TIMEOUT" in gave_up[0]
    assert "CALLS-DONE" in done.stdout


def test_a_bad_exit_budget_is_a_config_error_naming_it(fake: FakeOpenAI) -> None:
    app = """
    import llmmeter
    try:
        llmmeter.instrument()
    except llmmeter.ConfigError as exc:
        print("CONFIG-ERROR", exc)
    """
    done = _run(fake, {"LLMMETER_EXIT_TIMEOUT": "-2"}, app=app)
    assert "CONFIG-ERROR environment variable LLMMETER_EXIT_TIMEOUT: expected a number of " in (
        done.stdout
    )


APP_WITH_ITS_OWN_EXPORTER = """
import logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(levelname)s %(name)s %(message)s")
import llmmeter
llmmeter.instrument()  # nothing configured: llmmeter's own exporters, its log filters
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
own = TracerProvider()
own.add_span_processor(SimpleSpanProcessor(
    OTLPSpanExporter(endpoint=os.environ["APP_ENDPOINT"], timeout=1)
))
with own.get_tracer("app").start_as_current_span("checkout"):
    pass
print("APP-DONE", flush=True)
"""


def test_the_applications_own_exporter_still_logs_its_failures_beside_llmmeters(
    fake: FakeOpenAI,
) -> None:
    """llmmeter keeps the exporters' per-batch error lines of *its own* exports out of the
    log; an exporter the application built, failing on the application's thread, logs as it
    would without llmmeter."""
    done = _run(
        fake,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "APP_ENDPOINT": f"http://127.0.0.1:{_free_port()}/v1/traces",
        },
        app=APP_WITH_ITS_OWN_EXPORTER,
    )
    assert done.returncode == 0, done.stderr
    assert "APP-DONE" in done.stdout
    # A retry warning, or (exporter versions that do not retry a timeout) the final error.
    levels = ("WARNING opentelemetry.exporter", "ERROR opentelemetry.exporter")
    own = [x for x in done.stderr.splitlines() if x.startswith(levels)]
    assert own, done.stderr
