"""``llmmeter policy status`` and ``llmmeter policy promote``: the fleet's evidence per rule.

The processes of a fleet each count, per rule, the calls it routed or shadowed, the fallbacks,
the shadow evaluations and their agreement. ``status`` sums those counters over a window,
fleet-wide (Prometheus, or OTLP JSON metrics files a collector wrote), weighs the agreement
with its Wilson lower bound, and recommends a step for each rule. ``promote`` makes that step
in the policy file: it edits only the ``mode`` and ``sample`` lines of the rules concerned, so
comments and layout survive, checks that the edited file loads and means exactly the intended
change, and (with ``--write``) replaces the file atomically. Running processes pick the new
file up through their usual reload: the file stays the one place a decision lives.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import math
import os
import re
import stat
import tempfile
import tomllib
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from . import _semconv as sc
from ._cli import Writer, _table, _UsageError, format_cost
from ._config import LLMMETER_PROMETHEUS_URL
from ._evidence import Proportion, proportion
from ._guard import Guard
from ._report import (
    STDIN,
    _attributes,
    _decoded,
    _documents,
    _get,
    _integer,
    _list,
    _Malformed,
    _object,
    _open,
)
from ._rules import Rule, RulePolicy
from ._spend import PollError, PrometheusURL, SpendMonitor
from .exceptions import ConfigError

DEFAULT_WINDOW: Final = "1h"
DEFAULT_MIN_EVALUATIONS: Final = 100
DEFAULT_MAX_FALLBACK_RATE: Final = 0.05
DEFAULT_STEPS: Final = (0.05, 0.25, 0.5, 1.0)
"""The ``sample`` a promoted rule goes through: the first is the canary, 1 means every call."""
DEFAULT_TIMEOUT: Final = 10.0

# What a rule should do next: the ``action`` of a recommendation.
PROMOTE: Final = "promote"
DEMOTE: Final = "demote"
KEEP: Final = "keep"
NO_DATA: Final = "no_data"
OFF: Final = "off"

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

    Each query asks for one rule's sum, so the spend guard's client (which takes one number
    and reads an empty answer as 0: no series yet) does the HTTP, the auth and the parsing.
    """

    def __init__(self, url: PrometheusURL, window: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.window = window
        self._client = SpendMonitor(url, timeout=timeout, guard=Guard())

    def increase(self, counter: Counter, rule: str) -> float:
        self._client.query = promql(counter, rule, self.window)
        try:
            return max(0.0, self._client.fetch())
        except PollError as exc:
            raise _UsageError(
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
    document = _object(request, "the export request")
    resources = _get(document, "resourceMetrics")
    if resources is None:
        raise _Malformed("no resourceMetrics")
    for each_resource in _list(document, "resourceMetrics"):
        resource_metrics = _object(each_resource, "resourceMetrics[]")
        resource = _get(resource_metrics, "resource") or {}
        resource_attributes = _attributes(_list(_object(resource, "resource"), "attributes"))
        for scope_metrics in _list(resource_metrics, "scopeMetrics"):
            for each_metric in _list(_object(scope_metrics, "scopeMetrics[]"), "metrics"):
                metric = _object(each_metric, "a metric")
                name = metric.get("name")
                data = _get(metric, "sum")
                if name not in wanted or data is None:
                    continue
                data = _object(data, f"{name}.sum")
                temporality = str(_get(data, "aggregationTemporality"))
                for each_point in _list(data, "dataPoints"):
                    point = _object(each_point, f"a point of {name}")
                    attributes = _attributes(_list(point, "attributes"))
                    key = json.dumps([resource_attributes, attributes], sort_keys=True, default=str)
                    value = _get(point, "asDouble")
                    number = (
                        float(value)
                        if isinstance(value, (int, float)) or (isinstance(value, str) and value)
                        else float(_integer(_get(point, "asInt") or 0, f"asInt of {name}"))
                    )
                    start = _integer(_get(point, "startTimeUnixNano") or 0, "startTimeUnixNano")
                    when = _integer(_get(point, "timeUnixNano") or 0, "timeUnixNano")
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
        label, stream = _open(path)
        metric_lines = 0
        first_problem: tuple[int, _Malformed] | None = None
        try:
            head = stream.peek(8)[:8]
            for number, document in _documents(_decoded(label, stream, head)):
                try:
                    if isinstance(document, _Malformed):
                        raise document
                    points = list(_points(document, wanted))
                except _Malformed as exc:
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
            raise _UsageError(
                f"cannot read {label}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        finally:
            if path != STDIN:
                stream.close()
        if metric_lines == 0 and first_problem is not None:
            number, problem = first_problem
            raise _UsageError(f"{label}: not OTLP JSON metrics data (line {number}: {problem})")

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


# --- the recommendation ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What evidence ``status`` and ``promote`` ask for."""

    min_evaluations: int = DEFAULT_MIN_EVALUATIONS
    max_fallback_rate: float = DEFAULT_MAX_FALLBACK_RATE
    steps: tuple[float, ...] = DEFAULT_STEPS


@dataclass(frozen=True, slots=True)
class Recommendation:
    action: str
    """promote, demote, keep, no_data or off."""
    reason: str
    mode: str | None = None
    """The rule's own ``mode`` after the step (promote and demote only)."""
    sample: float | None = None
    """The rule's ``sample`` after the step; 1 means the key is dropped."""

    @property
    def changes(self) -> bool:
        return self.action in (PROMOTE, DEMOTE)


@dataclass(frozen=True, slots=True)
class RuleStatus:
    """One rule's figures over the window, and what they say."""

    rule: Rule
    mode: str
    """The rule's mode in force as the file says (no ``LLMMETER_POLICY_MODE``)."""
    figures: Mapping[Counter, float]
    agreement: Proportion
    recommendation: Recommendation

    def __getitem__(self, counter: Counter) -> float:
        return self.figures[counter]

    @property
    def calls(self) -> float:
        return self[ROUTED] + self[SHADOWED]

    @property
    def fallback_rate(self) -> float | None:
        """Fallbacks per routed call; ``None`` with no routed call."""
        routed = self[ROUTED]
        return self[FALLBACKS] / routed if routed > 0 else None


def _agreement(evaluations: float, agreement: float) -> Proportion:
    """``increase()`` extrapolates, so counts arrive as floats. The share is taken from the
    two figures as they came, then n is rounded and the summed scores scaled to it: keeping
    the extrapolated score sum over a rounded n would tilt the share (9.36 of 11.45
    evaluations is 82%, but 9.36 of 11 is 85%)."""
    n = max(0, round(evaluations))
    if n == 0:
        return proportion(0.0, 0)
    share = min(agreement / evaluations, 1.0) if agreement > 0 else 0.0  # NaN: none
    return proportion(share * n, n)


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _share(value: float) -> str:
    return f"{value:g}"


def next_step(sample: float, steps: Sequence[float]) -> float:
    """The first step above ``sample`` (1 when there is none)."""
    return next((step for step in steps if step > sample + 1e-9), 1.0)


def recommend(
    mode: str,
    sample: float,
    figures: Mapping[Counter, float],
    *,
    agreement: Proportion,
    target: float,
    evaluate: float,
    thresholds: Thresholds,
) -> Recommendation:
    """The next step for a rule (the rules are documented in docs/cli.md)."""
    if mode == "off":
        return Recommendation(OFF, "the rule is off")
    routed, calls = figures[ROUTED], figures[ROUTED] + figures[SHADOWED]
    n, point, low = agreement.n, agreement.point, agreement.low
    if calls <= 0 and n == 0:
        return Recommendation(NO_DATA, "no calls and no evaluations in the window")
    fallback_rate = figures[FALLBACKS] / routed if routed > 0 else None
    measured = f"agreement {_percent(point or 0.0)} of {_evaluations(n)}"
    bound = f"lower bound {_percent(low)}"
    if mode == "enforce":
        if fallback_rate is not None and fallback_rate > thresholds.max_fallback_rate:
            return Recommendation(
                DEMOTE,
                f"fallback rate {_percent(fallback_rate)} is over "
                f"{_percent(thresholds.max_fallback_rate)}",
                "shadow",
                sample,
            )
        # Below the target: on enough evaluations, or so far below that even the interval's
        # upper end misses it.
        if point is not None and (
            (n >= thresholds.min_evaluations and point < target) or agreement.high < target
        ):
            return Recommendation(
                DEMOTE,
                f"{measured} is under the target {_percent(target)}",
                "shadow",
                sample,
            )
    if n == 0:
        if evaluate <= 0:
            why = "no evaluations: the rule evaluates no calls (set evaluate, such as 0.05)"
        else:
            why = "no evaluations in the window yet"
        return Recommendation(KEEP, _keep(mode, sample) + why)
    if n < thresholds.min_evaluations:
        return Recommendation(
            KEEP,
            f"{_keep(mode, sample)}{_evaluations(n)}, fewer than "
            f"{thresholds.min_evaluations} ({measured}, {bound})",
        )
    if low < target:
        return Recommendation(
            KEEP,
            f"{_keep(mode, sample)}{bound} is under the target {_percent(target)} ({measured})",
        )
    met = f"{bound} >= target {_percent(target)} ({measured})"
    if mode == "shadow":
        canary = sample if sample < 1.0 else thresholds.steps[0]
        return Recommendation(
            PROMOTE, f"{met}: enforce at sample {_share(canary)}", "enforce", canary
        )
    if sample >= 1.0:
        return Recommendation(KEEP, f"enforced on every call; {met}")
    if fallback_rate is None:
        return Recommendation(KEEP, f"{_keep(mode, sample)}no routed calls in the window")
    step = next_step(sample, thresholds.steps)
    fallback = f"fallback rate {_percent(fallback_rate)}"
    return Recommendation(
        PROMOTE,
        f"{met}, {fallback}: raise sample {_share(sample)} -> {_share(step)}",
        "enforce",
        step,
    )


def _evaluations(n: int) -> str:
    return f"{n:,} evaluation{'' if n == 1 else 's'}"


def _keep(mode: str, sample: float) -> str:
    if mode == "shadow":
        return "keep shadowing: "
    return f"keep collecting at sample {_share(sample)}: " if sample < 1.0 else "keep: "


def rule_status(
    policy: RulePolicy, rule: Rule, source: Source, thresholds: Thresholds
) -> RuleStatus:
    figures = {counter: source.increase(counter, rule.name) for counter in COUNTERS}
    agreement = _agreement(figures[EVALUATIONS], figures[AGREEMENT])
    mode = policy.rule_mode(rule)
    return RuleStatus(
        rule=rule,
        mode=mode,
        figures=figures,
        agreement=agreement,
        recommendation=recommend(
            mode,
            rule.sample,
            figures,
            agreement=agreement,
            target=rule.agreement_target,
            evaluate=rule.evaluate,
            thresholds=thresholds,
        ),
    )


# --- editing the file -----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[")
_RULES_HEADER = re.compile(r"^\s*\[\[\s*(rules|\"rules\"|'rules')\s*\]\]\s*(#.*)?$")
_KEY_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<key>[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')[ \t]*=[ \t]*"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[0-9+\-.eE_]+|true|false)(?P<rest>[ \t]*(#.*)?)$"
)
_BLANK_OR_COMMENT = re.compile(r"^\s*(#.*)?$")


class _EditError(Exception):
    """The file cannot be edited line by line with confidence; the message says why."""


def _newline(lines: Sequence[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _rule_regions(lines: Sequence[str]) -> list[tuple[int, int]]:
    """[start, end) line ranges of the keys of each ``[[rules]]`` table, in file order."""
    regions: list[tuple[int, int]] = []
    start: int | None = None
    for index, line in enumerate(lines):
        if _HEADER.match(line):
            if start is not None:
                regions.append((start, index))
                start = None
            if _RULES_HEADER.match(line.rstrip("\r\n")):
                start = index + 1
    if start is not None:
        regions.append((start, len(lines)))
    return regions


def _key_name(raw: str) -> str:
    return raw[1:-1] if raw[:1] in "\"'" else raw


def _set_key(lines: list[str], region: tuple[int, int], key: str, value: str | None) -> int:
    """Set ``key = value`` in the rule's own table (added after its last key), or remove the
    line when ``value`` is ``None``; the rest of each line (a comment) is kept. Returns the
    change in the number of lines."""
    start, end = region
    found = [
        index
        for index in range(start, end)
        if (match := _KEY_LINE.match(lines[index].rstrip("\r\n")))
        and _key_name(match["key"]) == key
    ]
    if len(found) > 1:
        raise _EditError(f"{key} appears {len(found)} times")
    if found:
        index = found[0]
        line = lines[index]
        ending = line[len(line.rstrip("\r\n")) :]
        match = _KEY_LINE.match(line.rstrip("\r\n"))
        assert match is not None
        if value is None:
            del lines[index]
            return -1
        lines[index] = f"{match['indent']}{match['key']} = {value}{match['rest']}{ending}"
        return 0
    if value is None:
        return 0
    last = max(
        (index for index in range(start, end) if not _BLANK_OR_COMMENT.match(lines[index])),
        default=start - 1,
    )
    newline = _newline(lines)
    if last >= 0 and not lines[last].endswith(("\n", "\r")):
        lines[last] += newline
    lines.insert(last + 1, f"{key} = {value}{newline}")
    return 1


def _toml_sample(sample: float) -> str:
    return repr(round(sample, 6))


def edit_policy(text: str, changes: Mapping[int, Recommendation]) -> str:
    """``text`` with the ``mode`` and ``sample`` of rules[index] set as ``changes`` say.

    Raises:
        _EditError: a rule is not written as a ``[[rules]]`` table, or the edited text would
            not mean exactly the intended change.
    """
    lines = text.splitlines(keepends=True)
    regions = _rule_regions(lines)
    before = tomllib.loads(text)
    rules = before.get("rules", [])
    if len(regions) != len(rules):
        raise _EditError(
            "its rules are not all written as [[rules]] tables (inline tables or arrays), "
            "which promote does not edit"
        )
    # Bottom up, so the line numbers of the regions above stay right.
    for index in sorted(changes, reverse=True):
        step = changes[index]
        sample = None if step.sample is None or step.sample >= 1.0 else _toml_sample(step.sample)
        start, end = regions[index]
        end += _set_key(lines, (start, end), "mode", json.dumps(step.mode))
        _set_key(lines, (start, end), "sample", sample)
    edited = "".join(lines)
    expected = json.loads(json.dumps(before))
    for index, step in changes.items():
        table = expected["rules"][index]
        table["mode"] = step.mode
        if step.sample is None or step.sample >= 1.0:
            table.pop("sample", None)
        else:
            table["sample"] = round(step.sample, 6)
    try:
        after = tomllib.loads(edited)
    except tomllib.TOMLDecodeError as exc:
        raise _EditError(f"the edit would not be valid TOML ({exc})") from None
    if json.loads(json.dumps(after)) != expected:
        raise _EditError("the edit would change more than the rules' mode and sample")
    return edited


def write_atomically(path: str, data: bytes, expected: bytes) -> None:
    """Replace ``path`` by ``data`` in one rename, keeping its permission bits.

    The temporary file sits in the same directory (a rename never crosses file systems); a
    symlink is followed, so the link stays and its target changes. ``expected`` is what was
    read: a file that changed meanwhile is left alone.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    mode = stat.S_IMODE(os.stat(target).st_mode)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        with open(target, "rb") as current:
            if current.read() != expected:
                raise _UsageError(f"{path} changed while promote ran; nothing was written")
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --- the commands ---------------------------------------------------------------------------


def _source(args: argparse.Namespace) -> Source:
    if args.otlp:
        return OtlpSource(args.otlp, args.window)
    raw = args.prometheus or os.environ.get(LLMMETER_PROMETHEUS_URL, "").strip()
    if not raw:
        raise _UsageError(
            f"give --prometheus URL or --otlp FILE... (or set {LLMMETER_PROMETHEUS_URL}) "
            f"(see '{args.prog} --help')"
        )
    try:
        url = PrometheusURL.parse(raw)
    except ValueError as exc:
        raise _UsageError(
            f"argument --prometheus: expected the http(s) base URL of Prometheus, such as "
            f"http://prometheus:9090; {exc}"
        ) from None
    return PrometheusSource(url, args.window, args.timeout)


def _thresholds(args: argparse.Namespace) -> Thresholds:
    return Thresholds(
        min_evaluations=args.min_evaluations,
        max_fallback_rate=args.max_fallback_rate,
        steps=args.steps,
    )


def _load(path: str) -> RulePolicy:
    try:
        return RulePolicy.load(path)
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None


def _statuses(args: argparse.Namespace, policy: RulePolicy) -> list[RuleStatus]:
    names = {rule.name for rule in policy.rules}
    unknown = [name for name in args.rule or () if name not in names]
    if unknown:
        raise _UsageError(f"--rule {unknown[0]}: {args.file} has no such rule")
    source = _source(args)
    thresholds = _thresholds(args)
    statuses = [
        rule_status(policy, rule, source, thresholds)
        for rule in policy.rules
        if not args.rule or rule.name in args.rule
    ]
    args.source = source
    return statuses


def _optional(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _status_json(status: RuleStatus) -> dict[str, Any]:
    step = status.recommendation
    agreement = status.agreement
    return {
        "rule": status.rule.name,
        "mode": status.mode,
        "sample": status.rule.sample,
        "evaluate": status.rule.evaluate,
        "agreement_target": status.rule.agreement_target,
        "calls": round(status.calls, 3),
        "routed": round(status[ROUTED], 3),
        "shadowed": round(status[SHADOWED], 3),
        "fallbacks": round(status[FALLBACKS], 3),
        "fallback_rate": _optional(status.fallback_rate),
        "evaluations": agreement.n,
        "agreement": _optional(agreement.point),
        "agreement_low": round(agreement.low, 6),
        "agreement_high": round(agreement.high, 6),
        "evaluation_errors": round(status[EVALUATION_ERRORS], 3),
        "evaluations_dropped": round(status[EVALUATION_DROPPED], 3),
        "evaluation_cost_usd": round(status[EVALUATION_COST], 9),
        "saved_usd": round(status[SAVED], 9),
        "would_save_usd": round(status[WOULD_SAVE], 9),
        "recommendation": {
            "action": step.action,
            "reason": step.reason,
            "mode": step.mode,
            "sample": step.sample,
        },
    }


def _count(value: float) -> str:
    return f"{round(value):,}"


def _usd_or_dash(value: float) -> str:
    return format_cost(value) if value > 0 else "-"


def _status_rows(statuses: Sequence[RuleStatus]) -> list[list[str]]:
    rows = []
    for status in statuses:
        agreement = status.agreement
        rate = status.fallback_rate
        rows.append(
            [
                status.rule.name,
                status.mode,
                "all" if status.rule.sample >= 1.0 else _share(status.rule.sample),
                _count(status.calls),
                f"{agreement.n:,}",
                "-" if agreement.point is None else _percent(agreement.point),
                "-" if agreement.n == 0 else _percent(agreement.low),
                _percent(status.rule.agreement_target),
                "-" if rate is None else _percent(rate),
                _usd_or_dash(status[SAVED]),
                _usd_or_dash(status[WOULD_SAVE]),
                status.recommendation.action.replace("_", " "),
            ]
        )
    return rows


def _heading(args: argparse.Namespace) -> str:
    source: Source = args.source
    return f"Policy {args.file}; {source.words()}, last {args.window}, all processes"


def _notes(statuses: Sequence[RuleStatus]) -> list[str]:
    lines = []
    for status in statuses:
        lines.append(f"{status.rule.name}: {status.recommendation.reason}")
        problems = []
        if status[EVALUATION_ERRORS] > 0:
            problems.append(f"{_count(status[EVALUATION_ERRORS])} evaluation errors")
        if status[EVALUATION_DROPPED] > 0:
            problems.append(f"{_count(status[EVALUATION_DROPPED])} evaluations dropped")
        if status[EVALUATION_COST] > 0:
            problems.append(f"evaluation cost {format_cost(status[EVALUATION_COST])}")
        if problems:
            lines.append(f"  ({'; '.join(problems)})")
    return lines


def _policy_status(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy status``: per rule, the fleet's evidence and the next step."""
    if args.file is None:
        raise _UsageError(f"give a policy FILE or set LLMMETER_POLICY (see '{args.prog} --help')")
    statuses = _statuses(args, _load(args.file))
    to_change = any(status.recommendation.changes for status in statuses)
    if args.json:
        doc = {
            "file": args.file,
            "source": args.source.describe(),
            "window": args.window,
            "window_seconds": window_seconds(args.window),
            "min_evaluations": args.min_evaluations,
            "max_fallback_rate": args.max_fallback_rate,
            "steps": list(args.steps),
            "rules": [_status_json(status) for status in statuses],
        }
        out(json.dumps(doc, indent=2))
        return 1 if to_change else 0
    out(_heading(args))
    if not statuses:
        out("The policy has no rules.")
        return 0
    headers = [
        "rule",
        "mode",
        "sample",
        "calls",
        "evaluations",
        "agreement",
        "lower bound",
        "target",
        "fallbacks",
        "saved",
        "would save",
        "recommendation",
    ]
    for line in _table(headers, _status_rows(statuses)):
        out(line)
    for line in _notes(statuses):
        out(line)
    if to_change:
        out(f"To apply: llmmeter policy promote {args.file} (add --write to write the file)")
    return 1 if to_change else 0


def _read_text(path: str) -> tuple[bytes, str]:
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return raw, raw.decode("utf-8")  # RulePolicy.load has read it as UTF-8 already


def _change_words(status: RuleStatus) -> str:
    step = status.recommendation
    old_sample = "all" if status.rule.sample >= 1.0 else _share(status.rule.sample)
    new_sample = "all" if step.sample is None or step.sample >= 1.0 else _share(step.sample)
    return (
        f"{status.rule.name}: {step.action} {status.mode} (sample {old_sample}) -> "
        f"{step.mode} (sample {new_sample}): {step.reason}"
    )


def _policy_promote(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy promote``: make the recommended steps in the policy file."""
    policy = _load(args.file)
    raw, text = _read_text(args.file)
    statuses = _statuses(args, policy)
    index_of = {rule.name: index for index, rule in enumerate(policy.rules)}
    changes = {
        index_of[status.rule.name]: status.recommendation
        for status in statuses
        if status.recommendation.changes
    }
    try:
        edited = edit_policy(text, changes) if changes else text
    except (_EditError, tomllib.TOMLDecodeError) as exc:
        raise _UsageError(f"cannot edit {args.file} safely: {exc}; edit it by hand") from None
    try:
        RulePolicy.from_dict(tomllib.loads(edited), source=args.file)
    except ConfigError as exc:  # never write a file the processes would refuse
        raise _UsageError(f"the edited policy would be invalid, nothing written: {exc}") from None
    diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            edited.splitlines(keepends=True),
            fromfile=args.file,
            tofile=f"{args.file} (promoted)",
        )
    )
    written = False
    if changes and args.write:
        write_atomically(args.file, edited.encode("utf-8"), raw)
        written = True
    if args.json:
        doc = {
            "file": args.file,
            "source": args.source.describe(),
            "window": args.window,
            "changes": [
                {
                    "rule": status.rule.name,
                    "action": status.recommendation.action,
                    "from": {"mode": status.mode, "sample": status.rule.sample},
                    "to": {
                        "mode": status.recommendation.mode,
                        "sample": status.recommendation.sample,
                    },
                    "reason": status.recommendation.reason,
                }
                for status in statuses
                if status.recommendation.changes
            ],
            "unchanged": [
                {
                    "rule": status.rule.name,
                    "action": status.recommendation.action,
                    "reason": status.recommendation.reason,
                }
                for status in statuses
                if not status.recommendation.changes
            ],
            "diff": diff,
            "written": written,
        }
        out(json.dumps(doc, indent=2))
        return 1 if changes and not written else 0
    out(_heading(args))
    for status in statuses:
        if status.recommendation.changes:
            out(_change_words(status))
        else:
            out(f"{status.rule.name}: unchanged: {status.recommendation.reason}")
    if not changes:
        out("Nothing to change.")
        return 0
    out(diff.rstrip("\n"))
    if written:
        out(f"Wrote {args.file}; running processes load it at their next reload.")
        return 0
    out(f"Nothing was written; add --write to write {args.file}.")
    return 1


# --- the parsers ----------------------------------------------------------------------------


def _parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}")
    return value


def _parse_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1; got {text!r}")
    return value


def _parse_steps(text: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(part) for part in text.split(","))
    except ValueError:
        steps = ()
    if (
        not steps
        or any(not 0.0 < step <= 1.0 for step in steps)
        or list(steps) != sorted(set(steps))
    ):
        raise argparse.ArgumentTypeError(
            f"expected increasing fractions in (0, 1] separated by commas, such as "
            f"0.05,0.25,0.5,1; got {text!r}"
        )
    return steps if steps[-1] == 1.0 else (*steps, 1.0)


def _parse_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected seconds (a number > 0); got {text!r}")
    return value


def _add_evidence_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--prometheus",
        metavar="URL",
        help=(
            "base URL of the Prometheus that scrapes the fleet "
            f"(default: ${LLMMETER_PROMETHEUS_URL})"
        ),
    )
    source.add_argument(
        "--otlp",
        nargs="+",
        metavar="FILE",
        help="OTLP JSON metrics files from the collector's file exporter instead ('-': stdin)",
    )
    parser.add_argument(
        "--window",
        type=parse_window,
        default=DEFAULT_WINDOW,
        help=f"how far back to count, such as 1h, 24h or 7d (default: {DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--rule", action="append", metavar="NAME", help="only this rule (repeatable)"
    )
    parser.add_argument(
        "--min-evaluations",
        type=_parse_count,
        default=DEFAULT_MIN_EVALUATIONS,
        metavar="N",
        help=f"evaluations a rule needs before it is promoted (default: {DEFAULT_MIN_EVALUATIONS})",
    )
    parser.add_argument(
        "--max-fallback-rate",
        type=_parse_rate,
        default=DEFAULT_MAX_FALLBACK_RATE,
        metavar="RATE",
        help=(
            "fallbacks per routed call above which an enforced rule is demoted, and at or "
            f"below which its sample may grow (default: {DEFAULT_MAX_FALLBACK_RATE})"
        ),
    )
    parser.add_argument(
        "--steps",
        type=_parse_steps,
        default=DEFAULT_STEPS,
        metavar="S1,S2,...",
        help="the samples a promoted rule goes through (default: 0.05,0.25,0.5,1)",
    )
    parser.add_argument(
        "--timeout",
        type=_parse_timeout,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds each Prometheus query may take (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


_STATUS_EPILOG = """\
examples:
  llmmeter policy status policy.toml --prometheus http://prometheus:9090
  llmmeter policy status policy.toml --prometheus http://prometheus:9090 --window 24h
  llmmeter policy status policy.toml --otlp metrics.json --window 7d
"""

_PROMOTE_EPILOG = """\
examples:
  llmmeter policy promote policy.toml --prometheus http://prometheus:9090          the diff
  llmmeter policy promote policy.toml --prometheus http://prometheus:9090 --write  write it
"""


def add_status_parsers(subcommands: Any) -> None:
    """``llmmeter policy status`` and ``llmmeter policy promote``."""
    status = subcommands.add_parser(
        "status",
        help="per rule, the fleet's evidence over a window and the recommended next step",
        description=(
            "Per rule of the policy file: calls, evaluations, agreement with its Wilson lower\n"
            "bound, fallback rate and savings, summed over every process (Prometheus, or OTLP\n"
            "JSON metrics files), and a recommendation: keep, promote or demote."
        ),
        epilog=_STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        default=os.environ.get("LLMMETER_POLICY") or None,
        help="the TOML policy file (default: $LLMMETER_POLICY)",
    )
    _add_evidence_options(status)
    status.set_defaults(handler=_policy_status, prog=status.prog)

    promote = subcommands.add_parser(
        "promote",
        help="make the recommended steps in the policy file (shadow -> canary -> enforce)",
        description=(
            "Apply status's recommendations to the policy file: a rule whose agreement\n"
            "meets its target goes from shadow to enforce at a canary sample, then up the\n"
            "steps to every call; one that falls short goes back to shadow. Only the rules'\n"
            "mode and sample lines change. Prints the diff; --write replaces the file\n"
            "atomically, and running processes reload it."
        ),
        epilog=_PROMOTE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    promote.add_argument("file", metavar="FILE", help="the TOML policy file")
    _add_evidence_options(promote)
    promote.add_argument(
        "--write", action="store_true", help="write the file (default: only print the diff)"
    )
    promote.set_defaults(handler=_policy_promote, prog=promote.prog)
