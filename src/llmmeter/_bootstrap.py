"""OpenTelemetry SDK providers for the one-liner, built from the standard ``OTEL_*`` variables.

Instrumentation never builds providers: this module does, and only when the application
gave none and configured no global ones. It then installs them as the globals, so the rest
of the application's telemetry (and span parents) flows to the same place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .exceptions import ConfigError

_EXPORTERS: Final = frozenset({"otlp", "console", "none"})
_PROTOCOLS: Final = frozenset({"grpc", "http/protobuf"})


def _exporter_names(env: Mapping[str, str], name: str) -> list[str]:
    raw = env.get(name, "otlp")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()] or ["otlp"]
    for value in names:
        if value not in _EXPORTERS:
            raise ConfigError(
                f"environment variable {name}: expected a comma-separated list of "
                f"otlp, console, none; got {raw!r}"
            )
    return [n for n in names if n != "none"]


def _protocol(env: Mapping[str, str], signal: str) -> str:
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    key = name if name in env else "OTEL_EXPORTER_OTLP_PROTOCOL"
    raw = env.get(key, "http/protobuf")
    if raw.strip().lower() not in _PROTOCOLS:
        raise ConfigError(
            f"environment variable {key}: expected grpc or http/protobuf; got {raw!r}"
        )
    return raw.strip().lower()


def _span_exporter(kind: str, env: Mapping[str, str]) -> Any:
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if _protocol(env, "TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()


def _metric_exporter(kind: str, env: Mapping[str, str]) -> Any:
    if kind == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if _protocol(env, "METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter()


def _tracing_configured() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _metrics_configured() -> bool:
    from opentelemetry.metrics import _internal

    return not isinstance(metrics.get_meter_provider(), _internal._ProxyMeterProvider)


def resolve_providers(
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    environ: Mapping[str, str] | None = None,
) -> tuple[TracerProvider | None, MeterProvider | None]:
    """Given providers win; then configured globals (None = use them); else build and install."""
    env = os.environ if environ is None else environ
    if tracer_provider is None and not _tracing_configured():
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        kinds = _exporter_names(env, "OTEL_TRACES_EXPORTER")
        exporters = [_span_exporter(kind, env) for kind in kinds]
        sdk_tracer_provider = SdkTracerProvider(resource=Resource.create())
        for exporter in exporters:
            sdk_tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(sdk_tracer_provider)
        tracer_provider = sdk_tracer_provider
    if meter_provider is None and not _metrics_configured():
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        kinds = _exporter_names(env, "OTEL_METRICS_EXPORTER")
        readers = [PeriodicExportingMetricReader(_metric_exporter(kind, env)) for kind in kinds]
        sdk_meter_provider = SdkMeterProvider(resource=Resource.create(), metric_readers=readers)
        metrics.set_meter_provider(sdk_meter_provider)
        meter_provider = sdk_meter_provider
    return tracer_provider, meter_provider
