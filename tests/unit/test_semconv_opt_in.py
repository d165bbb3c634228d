"""OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: the newest GenAI names, read
once at instrument(); without it (or with only other instrumentations' values) the default
names, as before."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import llmmeter
from llmmeter._config import resolve_settings
from tests.conftest import Telemetry, make_telemetry
from tests.scenarios import ENDPOINTS, run

OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
DEFAULT_NAMES = {
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "llmmeter.cost.usd",
}
CACHED_CHAT = {
    "model": "gpt-5",
    "messages": [{"role": "user", "content": "Say hello"}],
    "prompt_cache_key": "k",
    "extra_body": {"prompt_cache_options": {"mode": "explicit"}},
}


@pytest.fixture
def instrumented(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Instrument with ``OTEL_SEMCONV_STABILITY_OPT_IN`` set to the given value (or unset)."""
    made: list[Telemetry] = []

    def make(value: str | None) -> Telemetry:
        if value is not None:
            monkeypatch.setenv(OPT_IN, value)
        tel = make_telemetry()
        tel.instrument()
        made.append(tel)
        return tel

    yield make
    llmmeter.uninstrument()
    for tel in made:
        tel.meter_provider.shutdown()
        tel.tracer_provider.shutdown()


def _metrics(telemetry: Telemetry) -> dict[str, Any]:
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


@pytest.mark.parametrize("value", [None, "", "http", "http/dup, database"])
def test_default_names_stay_without_the_opt_in(
    instrumented: Any, client: Any, value: str | None
) -> None:
    telemetry = instrumented(value)
    client.chat.completions.create(**CACHED_CHAT)
    client.chat.completions.create(**CACHED_CHAT)

    names = set(_metrics(telemetry))
    assert DEFAULT_NAMES | {"llmmeter.usage.cache.input_tokens"} <= names
    assert not any(name.startswith("gen_ai.client.inference.") for name in names)
    written = telemetry.spans()[0].attributes or {}
    assert written["gen_ai.usage.cache_creation.input_tokens"] > 0
    assert "gen_ai.usage.cache_write.input_tokens" not in written


@pytest.mark.parametrize(
    "value", ["gen_ai_latest_experimental", "http, gen_ai_latest_experimental ,database"]
)
def test_opt_in_switches_chat_metrics_and_span_to_the_newest_names(
    instrumented: Any, client: Any, value: str
) -> None:
    telemetry = instrumented(value)
    client.chat.completions.create(**CACHED_CHAT)  # writes the cache
    client.chat.completions.create(**CACHED_CHAT)  # reads it

    written, read = (s.attributes or {} for s in telemetry.spans())
    assert written["gen_ai.usage.cache_write.input_tokens"] > 0
    assert "gen_ai.usage.cache_creation.input_tokens" not in written
    assert read["gen_ai.usage.cache_read.input_tokens"] > 0

    metrics = _metrics(telemetry)
    assert set(metrics) == {
        "gen_ai.client.inference.duration",
        "gen_ai.client.inference.usage.input_tokens",
        "gen_ai.client.inference.usage.output_tokens",
        "gen_ai.client.inference.usage.cache_read.input_tokens",
        "gen_ai.client.inference.usage.cache_write.input_tokens",
        "gen_ai.client.inference.usage.reasoning.output_tokens",
        "gen_ai.client.inference.operation.input_tokens",
        "gen_ai.client.inference.operation.output_tokens",
        "gen_ai.client.inference.cost",
        "llmmeter.cost.usd",
    }

    def total(name: str) -> int:
        return sum(p.value for p in metrics[name].data.data_points)

    spans = [s.attributes or {} for s in telemetry.spans()]
    assert total("gen_ai.client.inference.usage.input_tokens") == sum(
        a["gen_ai.usage.input_tokens"] for a in spans
    )
    assert total("gen_ai.client.inference.usage.output_tokens") == sum(
        a["gen_ai.usage.output_tokens"] for a in spans
    )
    assert (
        total("gen_ai.client.inference.usage.cache_write.input_tokens")
        == (written["gen_ai.usage.cache_write.input_tokens"])
    )
    assert (
        total("gen_ai.client.inference.usage.cache_read.input_tokens")
        == (read["gen_ai.usage.cache_read.input_tokens"])
    )
    assert total("gen_ai.client.inference.usage.reasoning.output_tokens") == sum(
        a.get("gen_ai.usage.reasoning.output_tokens", 0) for a in spans
    )
    (counted,) = metrics["gen_ai.client.inference.usage.input_tokens"].data.data_points
    assert counted.attributes["gen_ai.token.modality"] == "unknown"
    assert counted.attributes["server.port"] > 0
    assert metrics["gen_ai.client.inference.usage.input_tokens"].unit == "{token}"
    assert metrics["gen_ai.client.inference.usage.input_tokens"].data.is_monotonic

    (per_call,) = metrics["gen_ai.client.inference.operation.input_tokens"].data.data_points
    assert per_call.count == 2
    assert "gen_ai.token.modality" not in per_call.attributes
    (duration,) = metrics["gen_ai.client.inference.duration"].data.data_points
    assert duration.count == 2
    assert metrics["gen_ai.client.inference.duration"].unit == "s"

    (cost,) = metrics["gen_ai.client.inference.cost"].data.data_points
    (counter,) = metrics["llmmeter.cost.usd"].data.data_points
    assert cost.count == 2
    assert cost.sum == pytest.approx(counter.value)
    assert cost.sum == pytest.approx(sum(a["gen_ai.usage.cost.amount"] for a in spans))
    assert metrics["gen_ai.client.inference.cost"].unit == "{USD}"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_opt_in_streams_record_the_inference_time_to_first_chunk(
    instrumented: Any, server: Any, openai_module: Any, mode: str
) -> None:
    telemetry = instrumented("gen_ai_latest_experimental")
    method, kwargs = ENDPOINTS["chat"]
    run(openai_module, server.base_url, mode, method, {**kwargs, "stream": True})

    metrics = _metrics(telemetry)
    assert "gen_ai.client.operation.time_to_first_chunk" not in metrics
    (ttfc,) = metrics["gen_ai.client.inference.time_to_first_chunk"].data.data_points
    assert ttfc.count == 1
    (exemplar,) = ttfc.exemplars
    assert exemplar.span_id == telemetry.span().get_span_context().span_id


def test_opt_in_embeddings_have_their_own_duration_and_token_histogram(
    instrumented: Any, client: Any
) -> None:
    telemetry = instrumented("gen_ai_latest_experimental")
    result = client.embeddings.create(model="text-embedding-3-small", input="hello")

    metrics = _metrics(telemetry)
    assert set(metrics) == {
        "gen_ai.client.embeddings.duration",
        "gen_ai.client.embeddings.operation.input_tokens",
        "gen_ai.client.inference.cost",
        "llmmeter.cost.usd",
    }
    (tokens,) = metrics["gen_ai.client.embeddings.operation.input_tokens"].data.data_points
    assert tokens.sum == result.usage.prompt_tokens
    assert tokens.attributes["gen_ai.operation.name"] == "embeddings"


def test_opt_in_failed_call_records_its_duration_with_the_error_type(
    instrumented: Any, client: Any, openai_module: Any
) -> None:
    telemetry = instrumented("gen_ai_latest_experimental")
    with pytest.raises(openai_module.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )

    metrics = _metrics(telemetry)
    assert set(metrics) == {"gen_ai.client.inference.duration"}
    (point,) = metrics["gen_ai.client.inference.duration"].data.data_points
    assert point.attributes["error.type"] == "404"


def test_opt_in_is_read_once_at_instrument(
    instrumented: Any, monkeypatch: pytest.MonkeyPatch, client: Any
) -> None:
    telemetry = instrumented(None)
    monkeypatch.setenv(OPT_IN, "gen_ai_latest_experimental")  # too late for this instrumentation
    client.chat.completions.create(**ENDPOINTS["chat"][1])

    assert set(_metrics(telemetry)) >= DEFAULT_NAMES


@pytest.mark.parametrize(
    ("value", "latest"),
    [
        (None, False),
        ("", False),
        ("http", False),
        ("gen_ai_latest_experimental", True),
        ("GEN_AI_LATEST_EXPERIMENTAL", True),
        ("http/dup,gen_ai_latest_experimental", True),
        ("gen_ai_latest", False),
        (",,", False),
    ],
)
def test_settings_read_the_opt_in_from_the_comma_separated_list(
    value: str | None, latest: bool
) -> None:
    environ = {} if value is None else {OPT_IN: value}
    assert resolve_settings(environ=environ).latest_semconv is latest
