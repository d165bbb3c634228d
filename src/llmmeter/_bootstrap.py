"""OpenTelemetry SDK providers for the one-liner, built from the standard ``OTEL_*`` variables.

Instrumentation never builds providers: this module does, and only when the application gave
none and configured no global ones. It never installs them as the globals: the process's
telemetry is the application's, and OpenTelemetry lets the globals be set once, so an
application, Logfire or a distro that configures OpenTelemetry after ``llmmeter.instrument()``
must still be able to. What llmmeter builds is its :class:`Fallback`, used for llmmeter's own
spans and metrics until the application configures providers of its own; from then on
llmmeter records to those (``Fallback.check``, at each call), and the fallback is shut down.

What it builds never blocks or breaks the application: spans leave through a
``BatchSpanProcessor`` (a bounded queue, a background thread) and metrics through a periodic
reader, both with the exporters' timeouts (``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default).
The SDK shuts both providers down at interpreter exit, which flushes what is pending, within
those timeouts; when an endpoint is already failing by then, what is still queued for it is
dropped (and said so) instead of each batch waiting out its own timeout. An exporter that
fails is reported once per outage by llmmeter, with the reason and, when it recovers, what
was dropped; the exporters' own repeated error lines are kept out of the application's log.
The SDK's batch and export settings (``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_*``) are checked
first, so a bad one is a :class:`~llmmeter.ConfigError` naming it, not the SDK's bare
``ValueError`` half-way through.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.trace import TracerProvider

from ._scrub import scrub, scrub_record
from .exceptions import ConfigError

logger = logging.getLogger("llmmeter")

DEFAULT_EXIT_TIMEOUT: Final = 2.0
"""Seconds exports at interpreter exit may take in all, by default (``LLMMETER_EXIT_TIMEOUT``)."""
_EXIT_POLL: Final = 0.1
"""Seconds between looks at the exit deadline while an export is in flight."""

_TRACE_EXPORTERS: Final = ("otlp", "console", "none")
_METRIC_EXPORTERS: Final = ("otlp", "prometheus", "console", "none")
_PROTOCOLS: Final = frozenset({"grpc", "http/protobuf"})
_EXPORTER_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
)
"""Where the OTLP exporters log each failed export; llmmeter reports the failure itself."""
_TRANSPORT_LOGGERS: Final = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)
"""Where the exporters' HTTP client logs requests, with the endpoint's path and query."""
_EXPORTING = threading.local()
"""``active`` on the threads that run llmmeter's own exports (:meth:`_Report.export`)."""


def _exporting() -> bool:
    return bool(getattr(_EXPORTING, "active", False))


class _ExportThreadScrub(logging.Filter):
    """Scrubs what the exporters' HTTP client logs while it sends llmmeter's telemetry (the
    endpoint's query may carry a token), and nothing else: the application's own requests,
    on its own threads, are logged as the application configured."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _exporting():
            scrub_record(record)
        return True


_TRANSPORT_SCRUB: Final = _ExportThreadScrub()


def _exporter_names(env: Mapping[str, str], name: str, allowed: Sequence[str]) -> list[str]:
    raw = env.get(name, "otlp")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()] or ["otlp"]
    for value in names:
        if value not in allowed:
            raise ConfigError(
                f"environment variable {name}: expected a comma-separated list of "
                f"{', '.join(allowed)}; got {raw!r}"
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


class _ExporterLog(logging.Filter):
    """Keeps the OTLP exporters' per-batch error lines of llmmeter's own exports (on the
    threads :meth:`_Report.export` runs them on) out of the application's log; the first line
    since the last report becomes the reason in llmmeter's own report. Exporters the
    application built log as they would without llmmeter."""

    def __init__(self) -> None:
        super().__init__()
        self._first: dict[str, str] = {}
        self._lock = threading.Lock()
        self.reports: list[_Report] = []  # one per exporter built with this log
        self.exit_timeout = DEFAULT_EXIT_TIMEOUT
        """Seconds the exports at exit may take in all (``LLMMETER_EXIT_TIMEOUT``)."""
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self)
        for name in _TRANSPORT_LOGGERS:
            logging.getLogger(name).addFilter(_TRANSPORT_SCRUB)  # once: filters are a set

    def exiting(self) -> None:
        """Registered with ``atexit`` after the providers, so it runs before their flush (and
        called by the child-exit flush): from now on exports share the exit budget."""
        deadline = time.monotonic() + self.exit_timeout
        for report in self.reports:
            if not report.exiting:
                report.exiting = True
                report.deadline = deadline

    def filter(self, record: logging.LogRecord) -> bool:
        if not _exporting():
            return True  # the application's own exporters, on its threads: its log, untouched
        if record.levelno < logging.WARNING:
            scrub_record(record)  # debug lines name the endpoint, userinfo included
            return True
        with self._lock:
            first = record.name not in self._first
        if first:
            scrub_record(record)  # before it is cut short: a cut secret is no longer its shape
            with self._lock:
                self._first.setdefault(record.name, record.getMessage())
        return False

    def take(self, names: Sequence[str]) -> str:
        """The first error line of these loggers since the last call, and forget them."""
        with self._lock:
            found = [self._first.pop(name) for name in names if name in self._first]
        if not found:
            return ""
        first = found[0]
        return first if len(first) <= 300 else first[:299].rstrip() + "…"


class _Report:
    """One exporter's health: the first failure of an outage is logged (with the reason the
    exporter gave), repeats go to debug, and the recovery says how much was dropped."""

    def __init__(self, what: str, where: str, log: _ExporterLog, loggers: Sequence[str]) -> None:
        self.what = what
        self.where = scrub(where)
        """The endpoint as logs show it: no password, token or signature."""
        self.dropped = 0
        self.exiting = False
        self.deadline = math.inf
        """When exiting: the time by which exports give up (shared by every exporter)."""
        self._log = log
        self._loggers = loggers
        self._failing = False
        self._dropped_at_exit = 0
        self._lock = threading.Lock()
        log.reports.append(self)

    def skip_at_exit(self, count: int) -> bool:
        """At interpreter exit, with the endpoint already failing, drop ``count`` items
        without trying: each try would wait up to the export timeout, and a queue of batches
        would hold the exit for minutes. The first skip logs what exit gives up."""
        with self._lock:
            if not (self.exiting and self._failing):
                return False
            first = self._dropped_at_exit == 0
            self._dropped_at_exit += count
            self.dropped += count
        if first:
            logger.warning(
                "llmmeter: exiting while exporting %s to %s fails; what is still queued is "
                "dropped instead of waiting for each export to time out",
                self.what,
                self.where,
            )
        return True

    def export(self, export: Callable[[], Any], count: int, failure: Any) -> Any:
        """Run ``export()`` on a thread of its own and wait for it; once the process is
        exiting, only until the exit deadline. An unreachable or hanging collector must not
        hold the exit for the exporter's timeout and retries (10 s and more per signal by
        default), whether the export began before the exit (the batch thread was already at
        it) or during it. A reachable collector answers well within the deadline, so nothing
        is lost there. Past it, the export is left to finish on its own (a daemon thread),
        and what is still queued is dropped, said once."""
        outcome: list[Any] = []
        finished = threading.Event()

        def run() -> None:
            _EXPORTING.active = True
            try:
                outcome.append(export())
            except Exception as exc:  # an exporter bug must not reach the batch thread
                outcome.append(exc)
            finally:
                finished.set()

        threading.Thread(target=run, name="llmmeter-export", daemon=True).start()
        while not finished.wait(_EXIT_POLL):
            if self.exiting and time.monotonic() >= self.deadline:
                self._gave_up(count)
                return failure
        result = outcome[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _gave_up(self, count: int) -> None:
        with self._lock:
            self._failing = True
            first = self._dropped_at_exit == 0
            self._dropped_at_exit += count
            self.dropped += count
        if first:
            logger.warning(
                "llmmeter: exiting: exporting %s to %s did not finish within the %g s exit "
                "waits; what is still queued is dropped (LLMMETER_EXIT_TIMEOUT sets the wait)",
                self.what,
                self.where,
                self._log.exit_timeout,
            )

    def failed(self, count: int, error: BaseException | None = None) -> None:
        with self._lock:
            first = not self._failing
            self._failing = True
            self.dropped += count
        logged = self._log.take(self._loggers)
        reason = f"{type(error).__name__}: {error}" if error is not None else logged
        if first:
            logger.warning(
                "llmmeter: exporting %s to %s failed (%s); they are dropped while this lasts, "
                "and the application is unaffected (further failures are logged at debug level)",
                self.what,
                self.where,
                reason or "no reason given",
            )
        else:
            logger.debug(
                "llmmeter: exporting %s to %s failed again (%s)", self.what, self.where, reason
            )

    def succeeded(self) -> None:
        with self._lock:
            recovered, dropped = self._failing, self.dropped
            self._failing = False
            self.dropped = 0
        if recovered:
            logger.warning(
                "llmmeter: exporting %s to %s works again; %d were dropped meanwhile",
                self.what,
                self.where,
                dropped,
            )


_SPAN_LOGGERS: Final = tuple(n for n in _EXPORTER_LOGGERS if "metric" not in n)
_METRIC_LOGGERS: Final = tuple(n for n in _EXPORTER_LOGGERS if "trace" not in n)


def _reporting_span_exporter(inner: Any, where: str, log: _ExporterLog) -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    report = _Report("spans", where, log, _SPAN_LOGGERS)

    class ReportingSpanExporter(SpanExporter):
        """The OTLP span exporter, reporting its failures once (see :class:`_Report`)."""

        def export(self, spans: Any) -> SpanExportResult:
            if report.skip_at_exit(len(spans)):
                return SpanExportResult.FAILURE
            try:
                result = report.export(
                    lambda: inner.export(spans), len(spans), SpanExportResult.FAILURE
                )
            except Exception as exc:  # an exporter bug must not reach the batch thread
                report.failed(len(spans), exc)
                return SpanExportResult.FAILURE
            if result is SpanExportResult.SUCCESS:
                report.succeeded()
            else:
                report.failed(len(spans))
            return result  # type: ignore[no-any-return]

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return ReportingSpanExporter()


def _reporting_metric_exporter(inner: Any, where: str, log: _ExporterLog) -> Any:
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    report = _Report("metrics", where, log, _METRIC_LOGGERS)

    class ReportingMetricExporter(MetricExporter):
        """The OTLP metric exporter, reporting its failures once (see :class:`_Report`)."""

        def __init__(self) -> None:
            super().__init__(
                preferred_temporality=inner._preferred_temporality,
                preferred_aggregation=inner._preferred_aggregation,
            )

        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            points = sum(
                len(metric.data.data_points)
                for resource in getattr(metrics_data, "resource_metrics", ())
                for scope in resource.scope_metrics
                for metric in scope.metrics
            )
            if report.skip_at_exit(points):
                return MetricExportResult.FAILURE
            try:
                result = report.export(
                    lambda: inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
                    points,
                    MetricExportResult.FAILURE,
                )
            except Exception as exc:
                report.failed(points, exc)
                return MetricExportResult.FAILURE
            if result is MetricExportResult.SUCCESS:
                report.succeeded()
            else:
                report.failed(points)
            return result  # type: ignore[no-any-return]

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return bool(inner.force_flush(timeout_millis=timeout_millis))

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    return ReportingMetricExporter()


def _endpoint(env: Mapping[str, str], signal: str, grpc: bool) -> str:
    """Where an OTLP exporter sends ``signal``, as the exporter itself resolves it."""
    specific = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if grpc:
        return base or "localhost:4317"
    return f"{(base or 'http://localhost:4318').rstrip('/')}/v1/{signal}"


def _span_exporter(kind: str, env: Mapping[str, str], log: _ExporterLog, meters: Any) -> Any:
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if _protocol(env, "TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        grpc = _with_meter(OTLPSpanExporter, meters)
        return _reporting_span_exporter(grpc, _endpoint(env, "traces", True), log)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    http = _with_meter(HttpSpanExporter, meters)
    return _reporting_span_exporter(http, _endpoint(env, "traces", False), log)


def _metric_reader(kind: str, env: Mapping[str, str], log: _ExporterLog) -> Any:
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if kind == "prometheus":
        return _prometheus_reader(env)
    if kind == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    if _protocol(env, "METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = _reporting_metric_exporter(
            OTLPMetricExporter(), _endpoint(env, "metrics", True), log
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        exporter = _reporting_metric_exporter(
            HttpMetricExporter(), _endpoint(env, "metrics", False), log
        )
    return PeriodicExportingMetricReader(exporter)


def _prometheus_reader(env: Mapping[str, str]) -> Any:
    """A ``/metrics`` endpoint for Prometheus to scrape (the optional ``prometheus`` extra),
    on ``OTEL_EXPORTER_PROMETHEUS_HOST``:``OTEL_EXPORTER_PROMETHEUS_PORT`` (localhost:9464)."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError:
        raise ConfigError(
            "environment variable OTEL_METRICS_EXPORTER: prometheus needs the optional "
            "dependency; install it with: pip install 'llmmeter[prometheus]'"
        ) from None
    host, port = _prometheus_address(env)
    reader = PrometheusMetricReader()
    try:
        start_http_server(port=port, addr=host)
    except OSError as exc:  # a port in use must not stop the application
        logger.warning(
            "llmmeter: cannot serve Prometheus metrics on %s:%d (%s); metrics are recorded "
            "but not served",
            host,
            port,
            exc,
        )
    return reader


def _prometheus_address(env: Mapping[str, str]) -> tuple[str, int]:
    host = env.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
    raw = env.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(
            f"environment variable OTEL_EXPORTER_PROMETHEUS_PORT: expected a port number "
            f"from 0 to 65535; got {raw!r}"
        )
    return host, port


def tracing_configured() -> bool:
    """The application (or a distro) set the global tracer provider."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def metrics_configured() -> bool:
    """The application (or a distro) set the global meter provider."""
    return not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


class Fallback:
    """The providers llmmeter built because the application had none: never the globals.

    :meth:`check` runs at each call while there is a fallback: once the application has set a
    global provider, ``on_configured(tracing, metering)`` moves llmmeter onto it (the
    registry's job) and the fallback of that signal is shut down in the background (its
    last export must not hold the application's call)."""

    __slots__ = ("_lock", "_log", "meter_provider", "on_configured", "tracer_provider")

    def __init__(self, tracer_provider: Any, meter_provider: Any, log: _ExporterLog) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.on_configured: Any = None
        self._log = log
        self._lock = threading.Lock()

    def exiting(self) -> None:
        """The process is ending (a multiprocessing child, which skips ``atexit``): from now
        on the exports share the exit budget, as at interpreter exit."""
        self._log.exiting()

    def check(self) -> None:
        tracing = self.tracer_provider is not None and tracing_configured()
        metering = self.meter_provider is not None and metrics_configured()
        if not (tracing or metering):
            return
        with self._lock:
            retired = []
            if tracing and self.tracer_provider is not None:
                retired.append(self.tracer_provider)
                self.tracer_provider = None
            else:
                tracing = False
            if metering and self.meter_provider is not None:
                retired.append(self.meter_provider)
                self.meter_provider = None
            else:
                metering = False
        if not retired:
            return  # another thread moved over first
        if self.on_configured is not None:
            self.on_configured(tracing, metering)
        threading.Thread(
            target=_shut_down, args=(retired,), name="llmmeter-fallback-shutdown", daemon=True
        ).start()

    @property
    def active(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None


def _shut_down(providers: Sequence[Any]) -> None:
    for provider in providers:
        try:
            provider.shutdown()
        except Exception:  # pragma: no cover - the SDK logs its own failures
            logger.debug("llmmeter: shutting the fallback provider down failed", exc_info=True)


# The SDK's batch and export settings that it turns into a bare ValueError (or a logged
# traceback) when they are bad: (variable, what it must be, its default).
_POSITIVE_INTEGERS: Final = (
    ("OTEL_BSP_SCHEDULE_DELAY", "a positive number of milliseconds", 5000),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "a positive integer", 2048),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "a positive integer", 512),
)
_NON_NEGATIVE_INTEGERS: Final = (
    ("OTEL_BSP_EXPORT_TIMEOUT", "a number of milliseconds, 0 or more", 30000),
)
_POSITIVE_NUMBERS: Final = (
    ("OTEL_METRIC_EXPORT_INTERVAL", "a positive number of milliseconds", 60000.0),
)
_NON_NEGATIVE_NUMBERS: Final = (
    ("OTEL_METRIC_EXPORT_TIMEOUT", "a number of milliseconds, 0 or more", 30000.0),
)


def _check_sdk_settings(env: Mapping[str, str], *, traces: bool, metrics_: bool) -> None:
    """Refuse what the SDK would raise on (or log a traceback for) while building providers."""

    def number(name: str, expected: str, default: float, *, whole: bool, low: float) -> float:
        raw = env.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = float(int(raw.strip())) if whole else float(raw.strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= low):
            raise ConfigError(f"environment variable {name}: expected {expected}; got {raw!r}")
        return value

    if traces:
        queue = 0.0
        for name, expected, default in _POSITIVE_INTEGERS:
            value = number(name, expected, default, whole=True, low=1)
            if name == "OTEL_BSP_MAX_QUEUE_SIZE":
                queue = value
            elif name == "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" and value > queue:
                raw = env.get(name)
                raise ConfigError(
                    f"environment variable {name}: expected at most OTEL_BSP_MAX_QUEUE_SIZE "
                    f"({int(queue)}); got {raw!r}"
                )
        for name, expected, default in _NON_NEGATIVE_INTEGERS:
            number(name, expected, default, whole=True, low=0)
    if metrics_:
        for name, expected, fdefault in _POSITIVE_NUMBERS:
            if number(name, expected, fdefault, whole=False, low=0) <= 0:
                raise ConfigError(
                    f"environment variable {name}: expected {expected}; got {env.get(name)!r}"
                )
        for name, expected, fdefault in _NON_NEGATIVE_NUMBERS:
            number(name, expected, fdefault, whole=False, low=0)


def resolve_providers(
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    environ: Mapping[str, str] | None = None,
    *,
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT,
) -> tuple[TracerProvider | None, MeterProvider | None, Fallback | None]:
    """Given providers win; then configured globals (None = use them); else llmmeter's own
    :class:`Fallback`, built from ``OTEL_*`` and never installed as the globals.

    Everything is validated before anything is built, so a bad variable is a ConfigError and
    leaves nothing half-built behind.
    """
    env = os.environ if environ is None else environ
    build_traces = tracer_provider is None and not tracing_configured()
    build_metrics = meter_provider is None and not metrics_configured()
    trace_kinds = _exporter_names(env, "OTEL_TRACES_EXPORTER", _TRACE_EXPORTERS)
    metric_kinds = _exporter_names(env, "OTEL_METRICS_EXPORTER", _METRIC_EXPORTERS)
    if build_traces and "otlp" in trace_kinds:
        _protocol(env, "TRACES")
    if build_metrics and "otlp" in metric_kinds:
        _protocol(env, "METRICS")
    if build_metrics and "prometheus" in metric_kinds:
        _prometheus_address(env)
    _check_sdk_settings(env, traces=build_traces, metrics_=build_metrics)
    if not (build_traces or build_metrics):
        return tracer_provider, meter_provider, None
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if "service.instance.id" not in resource.attributes:
        # Older SDKs set none: processes of one service would then share (and clobber)
        # their counter series once a collector turns them into Prometheus metrics.
        resource = resource.merge(Resource({"service.instance.id": str(uuid.uuid4())}))
    log = _ExporterLog()
    log.exit_timeout = exit_timeout
    fallback_meters = fallback_tracers = None
    if build_metrics:
        # First, so that the span exporter and batch processor built next report their own
        # health (OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED) through this provider.
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

        readers = [_metric_reader(kind, env, log) for kind in metric_kinds]
        fallback_meters = SdkMeterProvider(resource=resource, metric_readers=readers)
        meter_provider = fallback_meters
    if build_traces:
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporters = [_span_exporter(kind, env, log, fallback_meters) for kind in trace_kinds]
        fallback_tracers = SdkTracerProvider(resource=resource)
        for exporter in exporters:
            processor = _with_meter(BatchSpanProcessor, fallback_meters, exporter)
            fallback_tracers.add_span_processor(processor)
        tracer_provider = fallback_tracers
    atexit.register(log.exiting)  # after the providers' own: runs before their flush
    return tracer_provider, meter_provider, Fallback(fallback_tracers, fallback_meters, log)


def _with_meter(factory: Any, meter_provider: Any, *args: Any) -> Any:
    """``factory(*args)``, with llmmeter's fallback meter provider for its own health metrics
    (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``) where this SDK's ``factory`` takes one:
    else they would go to the global meter provider, which is the application's."""
    if meter_provider is not None and "meter_provider" in inspect.signature(factory).parameters:
        return factory(*args, meter_provider=meter_provider)
    return factory(*args)
