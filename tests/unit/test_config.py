"""Configuration is validated at instrument() time, with messages naming key, expected, got."""

from __future__ import annotations

import pytest

import llmmeter
from llmmeter import ConfigError
from llmmeter._bootstrap import resolve_providers
from llmmeter._config import Settings, resolve_settings


def test_defaults_are_private_and_inject_stream_usage_only_where_it_changes_nothing() -> None:
    assert resolve_settings(environ={}) == Settings(
        capture_content=False, content_max_length=16384, inject_stream_usage="auto", strict=False
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", "auto"),
        ("Always", "always"),
        ("true", "always"),
        ("1", "always"),
        ("never", "never"),
        ("false", "never"),
        ("0", "never"),
        ("", "auto"),
    ],
)
def test_stream_usage_injection_mode_from_environment(value: str, expected: str) -> None:
    env = {"LLMMETER_INJECT_STREAM_USAGE": value}
    assert resolve_settings(environ=env).inject_stream_usage == expected


@pytest.mark.parametrize(
    ("arg", "expected"), [(True, "always"), (False, "never"), ("auto", "auto"), ("never", "never")]
)
def test_stream_usage_injection_argument_beats_environment(arg: bool | str, expected: str) -> None:
    env = {"LLMMETER_INJECT_STREAM_USAGE": "always"}
    assert resolve_settings(inject_stream_usage=arg, environ=env).inject_stream_usage == expected


def test_a_bad_stream_usage_injection_argument_names_it() -> None:
    with pytest.raises(ConfigError, match="argument inject_stream_usage: expected True, False"):
        resolve_settings(inject_stream_usage="sometimes", environ={})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("SPAN_ONLY", True), ("false", False), ("NO_CONTENT", False)],
)
def test_capture_content_from_environment(value: str, expected: bool) -> None:
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}
    assert resolve_settings(environ=env).capture_content is expected


def test_argument_beats_environment() -> None:
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    assert resolve_settings(capture_content=False, environ=env).capture_content is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLMMETER_STRICT": "maybe"}, "LLMMETER_STRICT: expected one of true, false"),
        ({"LLMMETER_CONTENT_MAX_LENGTH": "-3"}, "LLMMETER_CONTENT_MAX_LENGTH: expected a positive"),
        ({"LLMMETER_INJECT_STREAM_USAGE": "sometimes"}, "got 'sometimes'"),
        (
            {"LLMMETER_OTHER_INSTRUMENTATIONS": "fight"},
            "LLMMETER_OTHER_INSTRUMENTATIONS: expected one of suppress, keep; got 'fight'",
        ),
    ],
)
def test_bad_environment_value_raises_config_error_naming_it(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_settings(environ=env)


def test_bad_environment_fails_instrument_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_CONTENT_MAX_LENGTH", "many")
    with pytest.raises(ConfigError, match="LLMMETER_CONTENT_MAX_LENGTH"):
        llmmeter.instrument()
    from llmmeter._instrumentor import LLMMeterInstrumentor

    assert not LLMMeterInstrumentor().is_instrumented_by_opentelemetry


@pytest.mark.parametrize(
    ("value", "spans", "events"),
    [
        ("SPAN_ONLY", True, False),
        ("EVENT_ONLY", False, True),
        ("SPAN_AND_EVENT", True, True),
        ("NO_CONTENT", False, False),
        ("true", True, False),
        ("False", False, False),
    ],
)
def test_every_genai_content_capture_value_does_what_it_means(
    value: str, spans: bool, events: bool
) -> None:
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}
    settings = resolve_settings(environ=env)
    assert (settings.capture_content, settings.content_events) == (spans, events)


def test_an_unknown_shared_content_capture_value_is_logged_once_and_records_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The variable is every GenAI instrumentation's: a value only another one knows must
    not stop the application."""
    import logging

    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_LOGS_SOMEDAY"}
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        for _ in range(2):
            settings = resolve_settings(environ=env)
    assert (settings.capture_content, settings.content_events) == (False, False)
    warned = [r.getMessage() for r in caplog.records if "SPAN_AND_LOGS_SOMEDAY" in r.getMessage()]
    assert len(warned) == 1
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in warned[0]


def test_bad_argument_type_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="argument capture_content: expected True, False"):
        llmmeter.instrument(capture_content="perhaps")
    with pytest.raises(ConfigError, match="argument strict: expected a bool"):
        llmmeter.instrument(strict="yes")  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER: expected"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL: expected"),
        # The SDK's own batch settings: a bare ValueError (or a logged traceback) otherwise.
        ({"OTEL_BSP_SCHEDULE_DELAY": "-1"}, "OTEL_BSP_SCHEDULE_DELAY: expected a positive"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY: expected a positive"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE: expected a positive"),
        (
            {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5000"},
            r"OTEL_BSP_MAX_EXPORT_BATCH_SIZE: expected at most OTEL_BSP_MAX_QUEUE_SIZE \(2048\)",
        ),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "-5"}, "OTEL_BSP_EXPORT_TIMEOUT: expected a number"),
    ],
)
def test_bad_exporter_settings_raise_config_error(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import trace

    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    with pytest.raises(ConfigError, match=message):
        resolve_providers(None, object(), environ=env)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_METRIC_EXPORT_INTERVAL": "-1"}, "OTEL_METRIC_EXPORT_INTERVAL: expected a positive"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "0"}, "OTEL_METRIC_EXPORT_INTERVAL: expected a positive"),
        ({"OTEL_METRIC_EXPORT_TIMEOUT": "-1"}, "OTEL_METRIC_EXPORT_TIMEOUT: expected a number"),
    ],
)
def test_bad_metric_export_settings_raise_config_error(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import metrics

    from llmmeter import _bootstrap

    monkeypatch.setattr(metrics, "get_meter_provider", _bootstrap._ProxyMeterProvider)
    with pytest.raises(ConfigError, match=message):
        resolve_providers(object(), None, environ=env)  # type: ignore[arg-type]


def test_given_providers_are_used_as_is() -> None:
    tracer_provider, meter_provider = object(), object()
    assert resolve_providers(tracer_provider, meter_provider, environ={}) == (  # type: ignore[arg-type]
        tracer_provider,
        meter_provider,
        None,
    )
