"""``--html FILE`` of ``llmmeter report`` and ``llmmeter demo``: one self-contained page.

For people who decide from a picture: spend over time; spend and calls by model, task,
provider and tenant (where the spans have them); what routing saved and what shadow mode
says it would save; agreement against each rule's target with its lower bound (where
evaluations exist); unpriced calls; and the day of 1,000,000 requests. Every number comes
from the same computations as the text report (:func:`summary.summarize`, the Wilson
interval of :mod:`evidence`), so the page and the table never disagree; shadow evaluation's
own requests are counted apart, never as traffic.

The page fetches nothing: styles are inline, charts are inline SVG (:mod:`charts` says why
matplotlib), there is no script, and a ``Content-Security-Policy`` of ``default-src 'none'``
tells the browser to refuse any fetch should one ever slip in. Every name from a file is
escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Final

from llmmeter._rules import DEFAULT_AGREEMENT_TARGET

from . import charts
from .common import UsageError, format_cost, printable
from .evidence import Proportion, proportion
from .summary import NONE_LABEL, GroupBy, Row, SpanRecord, Summary, summarize

GROUPS: Final[tuple[tuple[GroupBy, str], ...]] = (
    ("model", "model"),
    ("task", "task (llmmeter.task)"),
    ("provider", "provider (gen_ai.provider.name)"),
    ("tenant", "tenant (llmmeter.tenant)"),
)
MOST_BARS: Final = 12
"""Bars in a by-group chart; the rest are added up as one ``other`` bar."""
MOST_ROWS: Final = 200
"""Rows in a by-group table; the rest are one ``other`` row, so that a million tenants make
no million-row page."""
_INTERVALS: Final = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600,
    12 * 3600, 86_400, 7 * 86_400, 30 * 86_400,
)  # fmt: skip
"""Seconds per bar of the spend-over-time chart: the first that needs at most ~48 bars."""
MOST_INTERVALS: Final = 48

CSS: Final = """
:root { color-scheme: light; --ink: #222; --muted: #5c5c5c; --line: #ddd; --card: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 64rem; padding: 1.5rem 1.25rem 3rem; color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; border-top: 1px solid var(--line);
  padding-top: 1rem; }
.subtitle, figcaption, .note { color: var(--muted); }
figcaption { font-size: .9rem; margin-top: .25rem; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr));
  gap: .75rem; margin: 1.25rem 0 .5rem; padding: 0; list-style: none; }
.kpis li { background: var(--card); border-radius: .5rem; padding: .6rem .8rem; }
.kpis .value { display: block; font-size: 1.3rem; font-weight: 600; }
.kpis .name { font-size: .85rem; color: var(--muted); }
figure { margin: 0; }
.chart-svg { width: 100%; height: auto; display: block; }
details { margin: .5rem 0 0; }
summary { cursor: pointer; color: var(--muted); font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem;
  font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding-bottom: .25rem; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid var(--line); text-align: right; }
th:first-child, td:first-child { text-align: left; }
footer { margin-top: 2.5rem; font-size: .85rem; color: var(--muted); }
"""
CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@dataclass(frozen=True, slots=True)
class RuleAgreement:
    """One rule's shadow evaluations in the spans: agreement, its interval, the target."""

    rule: str
    requests: int
    """Evaluation requests, judged or not."""
    agreement: Proportion
    """Over the judged ones (a score in [0, 1] each)."""
    target: float
    cost: float

    @property
    def errors(self) -> int:
        return self.requests - self.agreement.n

    @property
    def met(self) -> bool:
        return self.agreement.n > 0 and self.agreement.low >= self.target


def agreements(
    records: Sequence[SpanRecord], targets: Mapping[str, float], default_target: float
) -> list[RuleAgreement]:
    """Per rule, from the evaluation requests' spans (score = the comparator's agreement);
    their number and cost are :func:`summarize`'s, as in the text report."""
    scores: dict[str, list[float]] = {}
    for record in records:
        if record.evaluation and record.score is not None:
            scores.setdefault(record.key("rule"), []).append(min(max(record.score, 0.0), 1.0))
    found = []
    for row in sorted(summarize(records, by="rule").rows, key=lambda row: row.key):
        if not row.evaluations:
            continue
        judged = scores.get(row.key, [])
        found.append(
            RuleAgreement(
                rule=row.key,
                requests=row.evaluations,
                agreement=proportion(math.fsum(judged), len(judged)),
                target=targets.get(row.key, default_target),
                cost=row.evaluation_cost,
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Timeline:
    starts: list[datetime]
    seconds: int
    traffic: list[float]
    evaluation: list[float]


def timeline(records: Sequence[SpanRecord]) -> Timeline | None:
    """Spend per interval (each call at its start), in at most ~48 intervals of a round
    length; None without two distinct start times."""
    timed = [r for r in records if r.start is not None]
    if not timed:
        return None
    first = min(r.start for r in timed if r.start is not None)
    last = max(r.start for r in timed if r.start is not None)
    span = last - first
    seconds = next((s for s in _INTERVALS if span / s <= MOST_INTERVALS), _INTERVALS[-1])
    origin = math.floor(first / seconds) * seconds
    count = int((last - origin) // seconds) + 1
    traffic = [0.0] * count
    evaluation = [0.0] * count
    for record in timed:
        assert record.start is not None
        index = min(int((record.start - origin) // seconds), count - 1)
        bucket = evaluation if record.evaluation else traffic
        bucket[index] += record.cost or 0.0
    starts = [datetime.fromtimestamp(origin + i * seconds, tz=UTC) for i in range(count)]
    return Timeline(starts, seconds, traffic, evaluation)


# --- the page --------------------------------------------------------------------------------


def _text(value: str) -> str:
    """A name from a file, for HTML: control characters shown as escapes, markup escaped."""
    return escape(printable(value))


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _count(value: int) -> str:
    return f"{value:,}"


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


@dataclass(slots=True)
class _Page:
    parts: list[str] = field(default_factory=list)
    drawn: int = 0

    def add(self, html: str) -> None:
        self.parts.append(html)

    def section(self, anchor: str, heading: str) -> None:
        self.add(f'<section id="{anchor}" aria-labelledby="{anchor}-h">')
        self.add(f'<h2 id="{anchor}-h">{escape(heading)}</h2>')

    def end(self) -> None:
        self.add("</section>")

    def chart(self, chart: charts.Chart, table: str) -> None:
        self.drawn += 1
        self.add(f'<figure class="chart" id="{chart.id}">{chart.svg}')
        self.add(f"<figcaption>{escape(chart.description)}</figcaption></figure>")
        self.add(f"<details><summary>The numbers behind this chart</summary>{table}</details>")


def _table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (
        f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _money(value: float) -> str:
    return format_cost(value) if value else "$0"


def _kpis(summary: Summary) -> str:
    total = summary.total
    items = [
        (_money(total.cost), "spend"),
        (_count(total.calls), "calls"),
        (_count(total.errors), "errors"),
        (_money(total.saved), f"saved by routing ({_count(total.routed)} routed calls)"),
        (_money(total.would_save), "shadow mode would save"),
    ]
    if total.evaluations:
        items.append(
            (_count(total.evaluations), f"evaluation requests ({_money(total.evaluation_cost)})")
        )
    if total.unpriced:
        items.append((_count(total.unpriced), "unpriced calls"))
    if summary.projection is not None:
        items.append(
            (
                _money(summary.projection.with_policy),
                f"a day at {summary.projection.requests:,} requests",
            )
        )
    cards = "".join(
        f'<li><span class="value">{escape(value)}</span>'
        f'<span class="name">{escape(name)}</span></li>'
        for value, name in items
    )
    return f'<ul class="kpis" aria-label="Totals">{cards}</ul>'


def _over_time(page: _Page, records: Sequence[SpanRecord]) -> None:
    line = timeline(records)
    page.section("over-time", "Spend over time")
    if line is None:
        page.add('<p class="note">The spans carry no start times.</p>')
        page.end()
        return
    every = _duration(line.seconds)
    peak = max(range(len(line.starts)), key=lambda i: line.traffic[i] + line.evaluation[i])
    description = (
        f"Spend per {every} from {line.starts[0]:%Y-%m-%d %H:%M:%S} UTC, "
        f"{len(line.starts)} intervals; the most, "
        f"{_money(line.traffic[peak] + line.evaluation[peak])}, "
        f"in the one starting {line.starts[peak]:%Y-%m-%d %H:%M:%S}."
        + (" Shadow evaluation's requests are stacked on top." if any(line.evaluation) else "")
    )
    chart = charts.spend_over_time(
        "chart-over-time",
        starts=line.starts,
        width_seconds=line.seconds,
        traffic=line.traffic,
        evaluation=line.evaluation,
        description=description,
    )
    rows = [
        [f"{start:%Y-%m-%d %H:%M:%S}", _money(cost), _money(evaluation)]
        for start, cost, evaluation in zip(line.starts, line.traffic, line.evaluation, strict=True)
    ]
    table = _table(
        f"Spend per {every} (UTC)", ["interval starts", "traffic", "shadow evaluation"], rows
    )
    page.chart(chart, table)
    page.end()


def _bars(rows: Sequence[Row]) -> tuple[list[str], list[float], list[int]]:
    shown, rest = rows[:MOST_BARS], rows[MOST_BARS:]
    names = [row.key for row in shown]
    costs = [row.cost for row in shown]
    calls = [row.calls for row in shown]
    if rest:
        other = _merged(f"other ({len(rest):,})", rest)
        names.append(other.key)
        costs.append(other.cost)
        calls.append(other.calls)
    return names, costs, calls


def _group_table(summary: Summary, name: str) -> str:
    def cells(row: Row) -> list[str]:
        return [
            _text(row.key),
            _count(row.calls),
            _count(row.errors),
            _count(row.input_tokens),
            _count(row.output_tokens),
            escape(_money(row.cost)),
            _count(row.unpriced),
            _count(row.routed),
            escape(_money(row.saved)),
            escape(_money(row.would_save)),
            _count(row.evaluations),
            escape(_money(row.evaluation_cost)),
        ]

    headers = [name, "calls", "errors", "tokens in", "tokens out", "spend", "unpriced",
               "routed", "saved", "shadow would save", "evaluation requests",
               "evaluation spend"]  # fmt: skip
    shown = list(summary.rows[:MOST_ROWS])
    rest = summary.rows[MOST_ROWS:]
    if rest:
        shown.append(_merged(f"other ({len(rest):,})", rest))
    rows = [cells(row) for row in shown] + [cells(summary.total)]
    return _table(f"Spend and calls by {name}", headers, rows)


def _merged(key: str, rows: Sequence[Row]) -> Row:
    """One row adding up ``rows`` (its latency is not shown)."""
    return Row(
        key,
        calls=sum(r.calls for r in rows),
        errors=sum(r.errors for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost=math.fsum(r.cost for r in rows),
        unpriced=sum(r.unpriced for r in rows),
        routed=sum(r.routed for r in rows),
        saved=math.fsum(r.saved for r in rows),
        would_save=math.fsum(r.would_save for r in rows),
        evaluations=sum(r.evaluations for r in rows),
        evaluation_cost=math.fsum(r.evaluation_cost for r in rows),
    )


def _by_group(page: _Page, records: Sequence[SpanRecord], by: GroupBy, name: str) -> None:
    summary = summarize(records, by=by)
    # The bars are the traffic's; a group of evaluation requests only is in the table alone.
    traffic = [row for row in summary.rows if row.calls]
    if all(row.key == NONE_LABEL for row in traffic):
        return  # no call, or no span has this attribute: nothing to show
    names, costs, calls = _bars(traffic)
    top = traffic[0]
    share = top.cost / summary.total.cost if summary.total.cost else 0.0
    description = (
        f"Spend and calls for {_plural(len(traffic), 'value')} of {name}. The most spent: "
        f"{printable(top.key)}, {_money(top.cost)} ({_percent(share)} of "
        f"{_money(summary.total.cost)}) over {top.calls:,} calls."
    )
    page.section(f"by-{by}", f"Spend and calls by {by}")
    chart = charts.spend_and_calls(
        f"chart-by-{by}",
        title=f"Spend and calls by {by}",
        names=names,
        costs=costs,
        calls=calls,
        description=description,
    )
    page.chart(chart, _group_table(summary, name))
    page.end()


def _routing(page: _Page, records: Sequence[SpanRecord]) -> None:
    summary = summarize(records, by="rule")
    rows = [row for row in summary.rows if row.key != NONE_LABEL and (row.saved or row.would_save)]
    page.section("routing", "What routing saved, and what shadow mode says it would save")
    if not rows:
        page.add('<p class="note">No call was routed or shadowed by a rule in these spans.</p>')
        page.end()
        return
    total = summary.total
    description = (
        f"Over {_plural(len(rows), 'rule')}: routing saved {_money(total.saved)} on "
        f"{_plural(total.routed, 'routed call')}"
        + (
            f"; rules in shadow mode say enforcing them would have saved "
            f"{_money(total.would_save)} more."
            if total.would_save
            else "."
        )
    )
    chart = charts.savings(
        "chart-routing",
        rules=[row.key for row in rows],
        saved=[row.saved for row in rows],
        would_save=[row.would_save for row in rows],
        description=description,
    )
    table = _table(
        "Savings by rule (USD)",
        ["rule", "calls", "routed", "saved", "shadow would save"],
        [
            [
                _text(r.key),
                _count(r.calls),
                _count(r.routed),
                escape(_money(r.saved)),
                escape(_money(r.would_save)),
            ]
            for r in rows
        ],
    )
    page.chart(chart, table)
    page.end()


def _agreement(
    page: _Page, records: Sequence[SpanRecord], targets: Mapping[str, float], default: float
) -> None:
    found = agreements(records, targets, default)
    if not found:
        return
    page.section("agreement", "Agreement against target by rule")
    judged = [a for a in found if a.agreement.n]
    if judged:
        met = sum(a.met for a in judged)
        each = "; ".join(
            f"{printable(a.rule)}: {_percent(a.agreement.point or 0.0)} of "
            f"{_plural(a.agreement.n, 'evaluation')}, lower bound {_percent(a.agreement.low)}, "
            f"target {_percent(a.target)}"
            for a in judged[:MOST_BARS]
        )
        description = (
            f"Shadow evaluation agreement per rule, with its 95% Wilson interval and the "
            f"rule's target: the lower bound clears the target for {met} of "
            f"{_plural(len(judged), 'rule')}. {each}."
        )
        chart = charts.agreement(
            "chart-agreement",
            rules=[a.rule for a in judged],
            points=[a.agreement.point or 0.0 for a in judged],
            lows=[a.agreement.low for a in judged],
            highs=[a.agreement.high for a in judged],
            targets=[a.target for a in judged],
            description=description,
        )
    table = _table(
        "Shadow evaluation by rule",
        [
            "rule",
            "evaluations",
            "agreement",
            "lower bound",
            "target",
            "meets target",
            "not judged",
            "evaluation cost",
        ],
        [
            [
                _text(a.rule),
                _count(a.agreement.n),
                _percent(a.agreement.point) if a.agreement.point is not None else "-",
                _percent(a.agreement.low) if a.agreement.n else "-",
                _percent(a.target),
                "yes" if a.met else "no",
                _count(a.errors),
                escape(_money(a.cost)),
            ]
            for a in found
        ],
    )
    if judged:
        page.chart(chart, table)
    else:
        page.add('<p class="note">No evaluation in these spans could be judged.</p>' + table)
    page.end()


def _unpriced(page: _Page, records: Sequence[SpanRecord]) -> None:
    summary = summarize(records, by="model")
    page.section("unpriced", "Unpriced calls")
    rows = [row for row in summary.rows if row.unpriced]
    if not rows:
        page.add('<p class="note">Every call with tokens had a price.</p>')
        page.end()
        return
    page.add(
        f'<p class="note">{summary.total.unpriced:,} calls had tokens but no price: their '
        "spend is not in the totals. Give their models a price in a prices file "
        "(docs/pricing.md).</p>"
    )
    page.add(
        _table(
            "Unpriced calls by model",
            ["model", "unpriced calls", "tokens in", "tokens out"],
            [
                [_text(r.key), _count(r.unpriced), _count(r.input_tokens), _count(r.output_tokens)]
                for r in rows
            ],
        )
    )
    page.end()


def _projection(page: _Page, summary: Summary) -> None:
    projection = summary.projection
    if projection is None:
        return
    page.section("projection", f"At {projection.requests:,} requests a day")
    saves = projection.saved
    description = (
        f"A day of {projection.requests:,} requests like these: "
        f"{_money(projection.without_policy)} without the routing policy, "
        f"{_money(projection.with_policy)} with it"
        + (f", which saves {_money(saves)} a day" if saves > 0 else "")
        + ". Shadow evaluation's own requests are not counted as traffic"
        + (
            f": at the share of calls they evaluated, they would cost "
            f"{_money(projection.evaluation)} a day on top."
            if projection.evaluation > 0
            else "."
        )
    )
    chart = charts.projection(
        "chart-projection",
        without_policy=projection.without_policy,
        with_policy=projection.with_policy,
        requests=projection.requests,
        description=description,
    )
    table = _table(
        "Cost per day (USD)",
        ["", "per day"],
        [
            ["without the policy", escape(_money(projection.without_policy))],
            ["with the policy", escape(_money(projection.with_policy))],
            ["saved", escape(_money(saves))],
        ]
        + (
            [["shadow evaluation, on top", escape(_money(projection.evaluation))]]
            if projection.evaluation > 0
            else []
        ),
    )
    page.chart(chart, table)
    page.end()


def build(
    records: Sequence[SpanRecord],
    *,
    source: str,
    targets: Mapping[str, float] | None = None,
    default_target: float = DEFAULT_AGREEMENT_TARGET,
    now: datetime | None = None,
) -> str:
    """The whole page for ``records``; ``source`` says where they came from (one line).

    ``targets`` are the rules' ``agreement_target``s (from a policy file); a rule not in it
    is held to ``default_target``."""
    charts.load()  # the missing extra is one clear error, before anything is drawn
    now = now or datetime.now(tz=UTC)
    summary = summarize(records)
    page = _Page()
    title = "llmmeter cost report"
    page.add(
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
    )
    page.add(f"<h1>{escape(title)}</h1>")
    page.add(f'<p class="subtitle">{_text(source)}</p>')
    if not summary.total.calls and not summary.total.evaluations:
        page.add('<p class="note">No llmmeter spans: nothing to show.</p>')
    else:
        page.add(_kpis(summary))
        _over_time(page, records)
        for by, name in GROUPS:
            _by_group(page, records, by, name)
        _routing(page, records)
        _agreement(page, records, targets or {}, default_target)
        _unpriced(page, records)
        _projection(page, summary)
    page.add(
        f"<footer>Made by llmmeter on {now:%Y-%m-%d %H:%M} UTC from the spans' own "
        "attributes. Shadow evaluation's requests are counted apart from the traffic. "
        "This page loads nothing from the network.</footer></main></body></html>\n"
    )
    return "".join(page.parts)


def write(path: str, page: str) -> int:
    """Write ``page`` to ``path``; the bytes written. An unwritable path is a usage error."""
    data = page.encode("utf-8")
    try:
        with open(path, "wb") as file:
            file.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(data)
