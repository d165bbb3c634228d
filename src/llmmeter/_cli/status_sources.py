"""Where ``llmmeter policy status`` reads a fleet's policy counters from.

Each process counts, per rule, its routed and shadowed calls, fallbacks, shadow evaluations
and their agreement. Status needs each counter's increase over a window, summed over every
process: Prometheus computes it with ``increase()``; OTLP JSON metrics files (what a
collector's file exporter writes) are read point by point, cumulative or delta.
"""

from __future__ import annotations

import argparse
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from llmmeter import _semconv as sc
from llmmeter._prometheus import PollError, PrometheusURL, instant_query

from . import inputs, otlp
from .common import UsageError

DEFAULT_WINDOW: Final = "1h"
DEFAULT_TIMEOUT: Final = 10.0
"""Seconds to wait for Prometheus."""

_WINDOW = re.compile(r"^([1-9]\d*)([smhdw])$")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NANOS: Final = 1_000_000_000
_DELTA: Final = ("1", "AGGREGATION_TEMPORALITY_DELTA")

_RULE: Final = sc.LLMMETER_POLICY_RULE
_ACTION: Final = sc.LLMMETER_POLICY_ACTION
_EVALUATION: Final = sc.LLMMETER_EVALUATION

# --- what is counted ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counter:
    """One fleet-wide figure per rule: a counter (OTel and Prometheus names) and a filter."""

    otel: str
    prometheus: str
    match: tuple[tuple[str, str], ...] = ()
    """Attribute (OTel key) = value pairs a series must carry, besides the rule."""


ROUTED: Final = Counter(
    sc.METRIC_POLICY_DECISIONS, "llmmeter_policy_decisions_total", ((_ACTION, "route"),)
)
SHADOWED: Final = Counter(
    sc.METRIC_POLICY_DECISIONS, "llmmeter_policy_decisions_total", ((_ACTION, "shadow"),)
)
FALLBACKS: Final = Counter(
    sc.METRIC_POLICY_DECISIONS, "llmmeter_policy_decisions_total", ((_ACTION, "fallback"),)
)
EVALUATIONS: Final = Counter(sc.METRIC_EVALUATIONS, "llmmeter_evaluations_total")
AGREEMENT: Final = Counter(sc.METRIC_EVALUATION_AGREEMENT, "llmmeter_evaluation_agreement_total")
EVALUATION_ERRORS: Final = Counter(sc.METRIC_EVALUATION_ERRORS, "llmmeter_evaluation_errors_total")
EVALUATION_DROPPED: Final = Counter(
    sc.METRIC_EVALUATION_DROPPED, "llmmeter_evaluation_dropped_total"
)
SAVED: Final = Counter(sc.METRIC_SAVINGS, "llmmeter_savings_usd_total", ((_ACTION, "route"),))
WOULD_SAVE: Final = Counter(sc.METRIC_SAVINGS, "llmmeter_savings_usd_total", ((_ACTION, "shadow"),))
EVALUATION_COST: Final = Counter(
    sc.METRIC_COST, "llmmeter_cost_usd_total", ((_EVALUATION, "true"), (_ACTION, "evaluate"))
)
COUNTERS: Final = (
    ROUTED,
    SHADOWED,
    FALLBACKS,
    EVALUATIONS,
    AGREEMENT,
    EVALUATION_ERRORS,
    EVALUATION_DROPPED,
    SAVED,
    WOULD_SAVE,
    EVALUATION_COST,
)


class Source(Protocol):
    """Where the fleet's counters come from."""

    def increase(self, counter: Counter, rule: str) -> float:
        """How much ``counter`` grew over the window for ``rule``, summed over the fleet."""
        ...

    def describe(self) -> dict[str, Any]:
        """For ``--json``: what was read."""
        ...

    def words(self) -> str:
        """For the heading: what was read."""
        ...


def parse_window(text: str) -> str:
    """``30m``, ``1h``, ``24h``, ``7d``, ``2w``: a PromQL range of whole units."""
    if not _WINDOW.match(text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30m, 1h, 24h or 7d (a whole number and one of "
            f"s, m, h, d, w); got {text!r}"
        )
    return text.strip()


def window_seconds(window: str) -> int:
    match = _WINDOW.match(window)
    assert match is not None  # parse_window checked it
    return int(match[1]) * _SECONDS[match[2]]


# --- Prometheus -----------------------------------------------------------------------------


def _label(key: str) -> str:
    """An OTel attribute key as the Prometheus exporters write the label."""
    return re.sub(r"[^A-Za-z0-9_]", "_", key)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def promql(counter: Counter, rule: str, window: str) -> str:
    """``sum(increase(name{rule="...", ...}[window]))``: one rule, every process."""
    pairs = ((_RULE, rule), *counter.match)
    selector = ", ".join(f"{_label(key)}={_quoted(value)}" for key, value in pairs)
    return f"sum(increase({counter.prometheus}{{{selector}}}[{window}]))"


class PrometheusSource:
    """The fleet's counters through the Prometheus HTTP API, one number per query.

    Each query asks for one rule's sum, so the instant query the spend guard polls with
    (which takes one number and reads an empty answer as 0: no series yet) does the HTTP, the
    auth and the parsing.
    """

    def __init__(self, url: PrometheusURL, window: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.window = window
        self.timeout = timeout

    def increase(self, counter: Counter, rule: str) -> float:
        query = promql(counter, rule, self.window)
        try:
            return max(0.0, instant_query(self.url, query, self.timeout))
        except PollError as exc:
            raise UsageError(
                f"cannot read the fleet's counters from Prometheus at {self.url.shown}: {exc}"
            ) from None

    def describe(self) -> dict[str, Any]:
        return {"kind": "prometheus", "url": self.url.shown}

    def words(self) -> str:
        return f"Prometheus {self.url.shown}"


# --- OTLP JSON metrics files ----------------------------------------------------------------


@dataclass(slots=True)
class _Series:
    """One counter series (resource + attributes) from a file: its points, oldest first."""

    attributes: dict[str, Any]
    delta: bool
    points: list[tuple[int, int, float]] = field(default_factory=list)
    """(start time, time, value) in Unix nanoseconds."""


def _points(
    request: Any, wanted: set[str]
) -> Iterable[tuple[str, str, dict[str, Any], bool, int, int, float]]:
    """(metric, series key, attributes, delta?, start, time, value) of each wanted sum point."""
    document = otlp.as_object(request, "the export request")
    resources = otlp.get(document, "resourceMetrics")
    if resources is None:
        raise otlp.Malformed("no resourceMetrics")
    for each_resource in otlp.repeated(document, "resourceMetrics"):
        resource_metrics = otlp.as_object(each_resource, "resourceMetrics[]")
        resource = otlp.get(resource_metrics, "resource") or {}
        resource_attributes = otlp.attributes(
            otlp.repeated(otlp.as_object(resource, "resource"), "attributes")
        )
        for scope_metrics in otlp.repeated(resource_metrics, "scopeMetrics"):
            for each_metric in otlp.repeated(
                otlp.as_object(scope_metrics, "scopeMetrics[]"), "metrics"
            ):
                metric = otlp.as_object(each_metric, "a metric")
                name = metric.get("name")
                data = otlp.get(metric, "sum")
                if name not in wanted or data is None:
                    continue
                data = otlp.as_object(data, f"{name}.sum")
                temporality = str(otlp.get(data, "aggregationTemporality"))
                for each_point in otlp.repeated(data, "dataPoints"):
                    point = otlp.as_object(each_point, f"a point of {name}")
                    attributes = otlp.attributes(otlp.repeated(point, "attributes"))
                    key = json.dumps([resource_attributes, attributes], sort_keys=True, default=str)
                    value = otlp.get(point, "asDouble")
                    number = (
                        float(value)
                        if isinstance(value, (int, float)) or (isinstance(value, str) and value)
                        else float(otlp.integer(otlp.get(point, "asInt") or 0, f"asInt of {name}"))
                    )
                    start = otlp.integer(
                        otlp.get(point, "startTimeUnixNano") or 0, "startTimeUnixNano"
                    )
                    when = otlp.integer(otlp.get(point, "timeUnixNano") or 0, "timeUnixNano")
                    yield name, key, attributes, temporality in _DELTA, start, when, number


class OtlpSource:
    """The fleet's counters from OTLP JSON metrics files (the collector's file exporter).

    The window ends at the newest point in the files, not now: old files read the same
    whenever they are read. For each series (resource and attributes) of a cumulative counter:
    the last value in the window minus the last value at or before the window's start; a
    series that started inside the window (its start time) counts from 0; one that started
    before and has no point before the window counts from its first point in it, which can
    undercount. A restart (a new start time) begins a new series. Delta points in the window
    are added up.
    """

    def __init__(self, paths: Sequence[str], window: str) -> None:
        self.paths = list(paths)
        self.window = window
        self._series: dict[str, dict[str, _Series]] = defaultdict(dict)
        self.end: int | None = None
        wanted = {counter.otel for counter in COUNTERS}
        for path in self.paths:
            self._read(path, wanted)
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...], str], float] = {}

    def _read(self, path: str, wanted: set[str]) -> None:
        label, stream = otlp.open_input(path)
        metric_lines = 0
        first_problem: tuple[int, otlp.Malformed] | None = None
        try:
            head = stream.peek(8)[:8]
            progress = inputs.Progress("policy", label, stream)
            decoded = otlp.decoded(label, stream, head)
            for number, document in otlp.documents(label, decoded, progress):
                try:
                    if isinstance(document, otlp.Malformed):
                        raise document
                    points = otlp.shallow(lambda request: list(_points(request, wanted)), document)
                except otlp.Malformed as exc:
                    first_problem = first_problem or (number, exc)
                    continue
                metric_lines += 1
                for name, key, attributes, delta, start, when, value in points:
                    series = self._series[name].get(f"{key}\x1f{start}")
                    if series is None:
                        series = self._series[name][f"{key}\x1f{start}"] = _Series(
                            attributes, delta
                        )
                    series.points.append((start, when, value))
                    self.end = when if self.end is None else max(self.end, when)
        except (OSError, EOFError, zlib.error) as exc:
            raise UsageError(
                f"cannot read {label}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        finally:
            if path != otlp.STDIN:
                stream.close()
        if metric_lines == 0 and first_problem is not None:
            number, problem = first_problem
            raise UsageError(f"{label}: not OTLP JSON metrics data (line {number}: {problem})")

    def increase(self, counter: Counter, rule: str) -> float:
        if self.end is None:
            return 0.0
        start_of_window = self.end - window_seconds(self.window) * _NANOS
        total = 0.0
        wanted = {_RULE: rule, **dict(counter.match)}
        for series in self._series.get(counter.otel, {}).values():
            if any(_text(series.attributes.get(key)) != value for key, value in wanted.items()):
                continue
            total += _growth(series, start_of_window, self.end)
        return total

    def describe(self) -> dict[str, Any]:
        return {"kind": "otlp", "paths": self.paths, "end_unix_nano": self.end}

    def words(self) -> str:
        return f"OTLP files {', '.join(self.paths)}"


def _text(value: Any) -> str | None:
    """An attribute value as a Prometheus label shows it: ``True`` is ``true``."""
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _growth(series: _Series, start: int, end: int) -> float:
    points = sorted(series.points, key=lambda point: point[1])
    inside = [value for _, when, value in points if start < when <= end]
    if not inside:
        return 0.0
    if series.delta:
        return sum(inside)
    before = [value for _, when, value in points if when <= start]
    if before:
        base = before[-1]
    elif points[0][0] >= start:  # the counter started inside the window: from 0
        base = 0.0
    else:
        base = inside[0]
    return max(0.0, inside[-1] - base)
