"""Metric points carry the trace of the call they came from (exemplars), so a dashboard
panel links from a spike to the span behind it; and they are labelled with the server port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from opentelemetry.sdk.trace import ReadableSpan

import llmmeter
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry
from tests.scenarios import ENDPOINTS, run

# The instruments whose points must link to the call (the cost counter needs a priced model).
LINKED = (
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "llmmeter.cost.usd",
)


@pytest.fixture
def fresh_telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory of instrumented telemetry built after the test has set the environment (the
    SDK reads OTEL_METRICS_EXEMPLAR_FILTER when its meter provider is made)."""
    made: list[Telemetry] = []

    def make() -> Telemetry:
        tel = make_telemetry()
        tel.instrument()
        made.append(tel)
        return tel

    yield make
    llmmeter.uninstrument()
    for tel in made:
        tel.meter_provider.shutdown()
        tel.tracer_provider.shutdown()


def _exemplars(telemetry: Telemetry, *names: str) -> dict[str, list[Any]]:
    """Each metric's exemplars, from one collection (a collection hands exemplars out once)."""
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    for name in names:
        assert points.get(name), f"no points of {name}"
    return {name: [e for p in points[name] for e in p.exemplars] for name in names}


def _llmmeter_span(telemetry: Telemetry) -> ReadableSpan:
    (span,) = [s for s in telemetry.spans() if s.name.startswith("chat ")]
    return span


@pytest.mark.parametrize(("mode", "stream"), [("sync", False), ("async", False), ("sync", True)])
def test_duration_token_and_cost_points_carry_the_calls_trace_and_span_ids(
    fresh_telemetry: Any, server: FakeOpenAI, openai_module: Any, mode: str, stream: bool
) -> None:
    telemetry = fresh_telemetry()
    method, kwargs = ENDPOINTS["chat"]
    run(openai_module, server.base_url, mode, method, {**kwargs, "stream": stream})

    context = _llmmeter_span(telemetry).get_span_context()
    names = (*LINKED, "gen_ai.client.operation.time_to_first_chunk") if stream else LINKED
    for name, exemplars in _exemplars(telemetry, *names).items():
        assert exemplars, name
        assert {(e.trace_id, e.span_id) for e in exemplars} == {
            (context.trace_id, context.span_id)
        }, name


def test_async_stream_points_carry_the_calls_span(
    fresh_telemetry: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    """The stream ends in the application's own flow, long after the call's context was left."""
    telemetry = fresh_telemetry()
    method, kwargs = ENDPOINTS["chat"]
    run(openai_module, server.base_url, "async", method, {**kwargs, "stream": True})

    context = _llmmeter_span(telemetry).get_span_context()
    for name, exemplars in _exemplars(telemetry, *LINKED).items():
        assert {(e.trace_id, e.span_id) for e in exemplars} == {
            (context.trace_id, context.span_id)
        }, name


def test_exemplar_names_the_call_not_the_applications_span_around_it(
    fresh_telemetry: Any, client: Any
) -> None:
    telemetry = fresh_telemetry()
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handle request"):
        method, kwargs = ENDPOINTS["chat"]
        method(client)(**kwargs)

    call = _llmmeter_span(telemetry)
    (exemplar,) = _exemplars(telemetry, "gen_ai.client.operation.duration")[
        "gen_ai.client.operation.duration"
    ]
    assert exemplar.span_id == call.get_span_context().span_id
    assert call.parent is not None and exemplar.span_id != call.parent.span_id


def test_filter_always_off_records_points_without_exemplars(
    fresh_telemetry: Any, monkeypatch: pytest.MonkeyPatch, client: Any
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")
    telemetry = fresh_telemetry()
    method, kwargs = ENDPOINTS["chat"]
    for stream in (False, True):
        result = method(client)(**{**kwargs, "stream": stream})
        if stream:
            list(result)

    assert len(telemetry.spans()) == 2
    assert _exemplars(telemetry, *LINKED) == {name: [] for name in LINKED}
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 2


def test_unsampled_call_records_its_points_without_exemplars(
    monkeypatch: pytest.MonkeyPatch, fresh_telemetry: Any, client: Any
) -> None:
    """A trace the sampler dropped has nothing to link to: the points are counted all the same."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry = fresh_telemetry()
    method, kwargs = ENDPOINTS["chat"]
    method(client)(**kwargs)

    assert telemetry.spans() == []
    assert _exemplars(telemetry, *LINKED) == {name: [] for name in LINKED}


def test_metric_labels_carry_the_server_port_with_the_address(
    telemetry: Telemetry, server: FakeOpenAI, client: Any
) -> None:
    method, kwargs = ENDPOINTS["chat"]
    method(client)(**kwargs)

    url = urlsplit(server.base_url)
    for name in LINKED:
        for point in telemetry.points(name):
            assert point.attributes["server.address"] == url.hostname, name
            assert point.attributes["server.port"] == url.port, name
