"""The table ``llmmeter demo`` and ``llmmeter report`` print: calls, tokens, cost, latency,
routing and savings, grouped by model, task, rule or service, plus the projection of a day
of traffic with and without the routing policy.

Shadow-evaluation requests (``llmmeter.evaluation``) are counted apart, never as calls: they
are what evaluating a rule costs, not the application's traffic, and counting them as calls
would dilute every per-call figure and the projection.

Both commands reduce spans to :class:`SpanRecord` first (from the SDK's in-memory spans or
from OTLP JSON), so they print the same numbers for the same spans.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from llmmeter import _semconv as sc

from . import table
from .common import printable

GroupBy = Literal["model", "task", "rule", "service", "provider", "tenant"]
GROUPINGS: Final = ("model", "task", "rule", "service")
"""The groupings ``--by`` offers; the HTML page also groups by provider and tenant."""
REQUESTS_PER_DAY: Final = 1_000_000
NONE_LABEL: Final = "-"


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """What the table needs from one llmmeter span (one request attempt)."""

    model: str | None
    task: str | None
    service: str | None
    rule: str | None
    action: str | None
    input_tokens: int
    output_tokens: int
    cost: float | None
    savings: float | None
    duration: float
    error: bool
    start: float | None = None
    """When the call started, in seconds since the epoch."""
    provider: str | None = None
    tenant: str | None = None
    evaluation: bool = False
    """A shadow-evaluation request (``llmmeter.evaluation``): what evaluating a rule cost,
    never a call of the application's traffic."""
    score: float | None = None
    """An evaluation's agreement score in [0, 1]; None when the pair could not be judged."""

    @classmethod
    def from_attributes(
        cls,
        attrs: Mapping[str, Any],
        *,
        duration: float,
        error: bool,
        service: str | None,
        start: float | None = None,
    ) -> SpanRecord | None:
        """A record from a span's attributes; None for spans that are not llmmeter's."""
        if sc.GEN_AI_OPERATION_NAME not in attrs:
            return None

        def text(name: str) -> str | None:
            value = attrs.get(name)
            return value if isinstance(value, str) and value else None

        def number(name: str) -> float | None:
            value = attrs.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None
            value = float(value)
            return value if math.isfinite(value) else None  # "NaN" or "Infinity" in a file

        return cls(
            model=text(sc.GEN_AI_REQUEST_MODEL),
            task=text(sc.LLMMETER_TASK),
            service=service,
            rule=text(sc.LLMMETER_POLICY_RULE),
            action=text(sc.LLMMETER_POLICY_ACTION),
            input_tokens=int(number(sc.GEN_AI_USAGE_INPUT_TOKENS) or 0),
            output_tokens=int(number(sc.GEN_AI_USAGE_OUTPUT_TOKENS) or 0),
            cost=number(sc.GEN_AI_USAGE_COST_AMOUNT),
            savings=number(sc.LLMMETER_POLICY_SAVINGS),
            duration=duration,
            error=error,
            start=start,
            provider=text(sc.GEN_AI_PROVIDER_NAME),
            tenant=text(sc.LLMMETER_TENANT),
            evaluation=attrs.get(sc.LLMMETER_EVALUATION) is True
            or text(sc.LLMMETER_POLICY_ACTION) == sc.ACTION_EVALUATE,
            score=number(sc.LLMMETER_EVALUATION_SCORE),
        )

    def key(self, by: GroupBy) -> str:
        value = {
            "model": self.model,
            "task": self.task,
            "rule": self.rule,
            "service": self.service,
            "provider": self.provider,
            "tenant": self.tenant,
        }[by]
        return value or NONE_LABEL


@dataclass(slots=True)
class Row:
    """One line of the table."""

    key: str
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0
    routed: int = 0
    saved: float = 0.0
    """Savings of calls routing really sent elsewhere (action ``route``)."""
    would_save: float = 0.0
    """Savings shadow mode reports (action ``shadow``)."""
    durations: list[float] = field(default_factory=list)
    evaluations: int = 0
    """Shadow-evaluation requests: counted apart, in none of the fields above."""
    evaluation_cost: float = 0.0

    def add(self, record: SpanRecord) -> None:
        if record.evaluation:
            self.evaluations += 1
            self.evaluation_cost += record.cost or 0.0
            return
        self.calls += 1
        self.errors += record.error
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        if record.cost is not None:
            self.cost += record.cost
        elif record.input_tokens or record.output_tokens:
            self.unpriced += 1
        if record.action == sc.ACTION_ROUTE:
            self.routed += 1
            self.saved += record.savings or 0.0
        elif record.action == sc.ACTION_SHADOW:
            self.would_save += record.savings or 0.0
        self.durations.append(record.duration)

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.durations) * 1000 if self.durations else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "calls": self.calls,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost, 6),
            "unpriced_calls": self.unpriced,
            "p50_ms": round(self.p50_ms, 1),
            "routed_calls": self.routed,
            "saved_usd": round(self.saved, 6),
            "shadow_would_save_usd": round(self.would_save, 6),
            "evaluation_requests": self.evaluations,
            "evaluation_cost_usd": round(self.evaluation_cost, 6),
        }


@dataclass(frozen=True, slots=True)
class Projection:
    """A day of ``requests`` like these, with and without the routing policy."""

    requests: int
    with_policy: float
    without_policy: float
    evaluation: float = 0.0
    """What shadow evaluation would cost a day on top, at the share of calls it evaluated."""

    @property
    def saved(self) -> float:
        return self.without_policy - self.with_policy


@dataclass(frozen=True, slots=True)
class Summary:
    by: GroupBy
    rows: tuple[Row, ...]
    total: Row
    projection: Projection | None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "by": self.by,
            "rows": [row.as_dict() for row in self.rows],
            "total": self.total.as_dict(),
        }
        if self.projection is not None:
            out["projection"] = {
                "requests_per_day": self.projection.requests,
                "cost_per_day_with_policy_usd": round(self.projection.with_policy, 2),
                "cost_per_day_without_policy_usd": round(self.projection.without_policy, 2),
                "saved_per_day_usd": round(self.projection.saved, 2),
                "evaluation_cost_per_day_usd": round(self.projection.evaluation, 2),
            }
        return out


def summarize(
    records: Iterable[SpanRecord], by: GroupBy = "model", requests: int = REQUESTS_PER_DAY
) -> Summary:
    """Group ``records`` by ``by``; rows sorted by cost, most expensive first. Evaluation
    requests are counted in each row's and the total's ``evaluations`` (:meth:`Row.add`),
    never as calls: a group with evaluation requests only has a row of 0 calls."""
    rows: dict[str, Row] = {}
    total = Row("total")
    for record in records:
        key = record.key(by)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(key)
        row.add(record)
        total.add(record)
    ordered = tuple(sorted(rows.values(), key=lambda r: (-r.cost, r.key)))
    projection = None
    if total.calls:
        # Without the policy, routed calls would have cost their savings more; with shadow
        # decisions, enforcing would have cost their would-be savings less.
        per_call_with = (total.cost - total.would_save) / total.calls
        per_call_without = (total.cost + total.saved) / total.calls
        # Shadow-evaluation requests are no traffic: they are priced per real call, apart.
        per_call_evaluation = total.evaluation_cost / total.calls
        projection = Projection(
            requests,
            per_call_with * requests,
            per_call_without * requests,
            per_call_evaluation * requests,
        )
    return Summary(by, ordered, total, projection)


# --- rendering ----------------------------------------------------------------------------


def counted(total: Row) -> str:
    """``32 calls and 20 shadow-evaluation requests``: the traffic, then what evaluating the
    rules sent apart (the report's first line and the HTML page's subtitle say it so)."""
    text = f"{total.calls:,} call{'' if total.calls == 1 else 's'}"
    if total.evaluations:
        requests = "request" if total.evaluations == 1 else "requests"
        text += f" and {total.evaluations:,} shadow-evaluation {requests}"
    return text


def _usd(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) >= 0.01:
        return f"${value:.4f}".rstrip("0")
    small = f"{value:.6f}".rstrip("0")
    return f"${small}" if small not in ("0.", "-0.") else "<$0.000001"


def _tokens(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,}"


_COLUMNS: Final = (
    table.Column("calls", "right"),
    table.Column("errors", "right"),
    table.Column("tokens in", "right"),
    table.Column("tokens out", "right"),
    table.Column("cost", "right", wrap=True),
    table.Column("p50", "right"),
    table.Column("routed", "right"),
    table.Column("saved", "right", wrap=True),
)


def _cells(row: Row) -> list[str]:
    cost = _usd(row.cost) + (f" (+{row.unpriced} unpriced)" if row.unpriced else "")
    saved = _usd(row.saved) if row.routed else NONE_LABEL
    if row.would_save:
        shadow = f"shadow {_usd(row.would_save)}"
        saved = shadow if not row.routed else f"{saved} + {shadow}"
    return [
        printable(row.key),  # a model or task name from a file: never a terminal's escape
        str(row.calls),
        str(row.errors),
        _tokens(row.input_tokens),
        _tokens(row.output_tokens),
        cost,
        f"{row.p50_ms:.0f} ms",
        str(row.routed),
        saved,
    ]


def render_table(
    summary: Summary, *, projection: bool = True, width: int | Literal["auto"] | None = "auto"
) -> list[str]:
    """Aligned text: one line per group, a total line, then (unless told not to) the
    projection; fitted to ``width`` (by default the output's, see ``table.output_width``)."""
    columns = [table.Column(summary.by, wrap=True), *_COLUMNS]
    body = [_cells(row) for row in summary.rows if row.calls]
    fitted = table.output_width() if width == "auto" else width
    out = table.render(columns, body, width=fitted, footer=_cells(summary.total), rules=True)
    if summary.total.evaluations:
        out.append(_evaluation_note(summary.total))
    if projection and summary.projection is not None:
        out += ["", *render_projection(summary.projection)]
    return out


def _evaluation_note(total: Row) -> str:
    requests = "request" if total.evaluations == 1 else "requests"
    return (
        f"Not counted above: {total.evaluations} shadow-evaluation {requests} "
        f"({_usd(total.evaluation_cost)}), what evaluating the rules cost."
    )


def render_projection(projection: Projection) -> list[str]:
    return [
        f"At {projection.requests:,} requests a day like these:",
        f"  without the policy  {_usd(projection.without_policy)} a day",
        f"  with the policy     {_usd(projection.with_policy)} a day"
        + (f"  (saves {_usd(projection.saved)} a day)" if projection.saved > 0 else ""),
    ] + (
        [f"  shadow evaluation   {_usd(projection.evaluation)} a day on top"]
        if projection.evaluation > 0
        else []
    )


def render_csv(summary: Summary) -> str:
    buffer = io.StringIO()
    rows = [row.as_dict() for row in (*summary.rows, summary.total)]
    fieldnames = [summary.by, *list(rows[0])[1:]] if rows else []
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({summary.by: row.pop("key"), **row})
    return buffer.getvalue()


def render_json(summary: Summary) -> str:
    return json.dumps(summary.as_dict(), indent=2)
