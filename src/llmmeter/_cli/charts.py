"""The HTML report's charts: matplotlib figures written as inline SVG.

Why matplotlib as SVG, weighed against Plotly and Vega-Lite with their runtimes inlined
(measured on the demo's page, late 2026):

- Size: the page is tens of kilobytes. Plotly's bundle alone is 4.8 MB per page (plotly
  7.1), Vega + Vega-Lite + vega-embed 0.9 MB (vl-convert 1.9, which also spends ~2 s
  bundling them on every run).
- Offline and robust: the page has no script at all. Nothing has to run for a chart to
  show, so it opens from a file, a mail attachment or a locked-down viewer, prints, and a
  ``Content-Security-Policy`` of ``default-src 'none'`` can forbid every fetch.
- Accessibility: each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>``
  that says what it shows, its text is real text (``svg.fonttype = none``), and the page
  gives the numbers behind every chart as a table. Vega has good ARIA of its own; Plotly's
  SVG has little.
- Interactivity is what we give up: no hover or zoom (the tables give exact numbers).
- Look: a colour-blind-safe palette (Okabe and Ito), few lines, labels on the bars.
- Install: matplotlib brings numpy and pillow (~80 MB); it is an optional extra
  (``pip install 'llmmeter[report]'``), imported only when ``--html`` is given.

Only this module imports matplotlib, through :func:`load`, which names the extra when it is
missing. Charts use ``matplotlib.figure.Figure`` directly, never pyplot: no global state, no
GUI backend.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Final

from .common import UsageError, format_cost, printable

EXTRA: Final = "report"
INSTALL_HINT: Final = f"pip install 'llmmeter[{EXTRA}]'"

# Okabe and Ito's palette: told apart with every common kind of colour blindness.
BLUE: Final = "#0072B2"
ORANGE: Final = "#E69F00"
GREEN: Final = "#009E73"
VERMILION: Final = "#D55E00"
SKY: Final = "#56B4E9"
GREY: Final = "#6b6b6b"
INK: Final = "#222222"

WIDTH: Final = 10.0
"""Inches (at 72 points each: about the page's 64rem, so text shows near its size); the
SVG scales to the page's width."""
BAR_HEIGHT: Final = 0.3
"""Inches per bar in a horizontal bar chart."""
LABEL_CHARS: Final = 34
_ID = re.compile(r'(<[^<>]*?\s)id="([^"]+)"')
"""An ``id`` attribute inside a tag (never text that happens to read ``id="..."``)."""
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_REFERENCE = re.compile(r'(url\(#|href="#)([^)"]+)')


def load() -> Any:
    """matplotlib, or a :class:`UsageError` that says how to install it."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (fails early if broken)
    except ImportError as exc:
        raise UsageError(
            f"--html needs matplotlib, which is not installed ({exc}): {INSTALL_HINT}"
        ) from None
    return matplotlib


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: the inline SVG and what it says in words."""

    id: str
    title: str
    description: str
    svg: str


def label(text: str) -> str:
    """A name from a file as a chart label: shortened, and never read as mathtext (``$``)."""
    text = printable(text)
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return text.replace("\\", "\\\\").replace("$", r"\$")


def money(value: float) -> str:
    return format_cost(value) if value else "$0"


def _style() -> dict[str, Any]:
    return {
        "svg.fonttype": "none",  # text stays text: selectable, read by screen readers
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
        "font.size": 10,
        "axes.edgecolor": "#bbbbbb",
        "axes.labelcolor": INK,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "grid.color": "#e6e6e6",
        "xtick.color": INK,
        "ytick.color": INK,
        "text.color": INK,
        "legend.frameon": False,
    }


def _render(
    chart_id: str, title: str, description: str, draw: Callable[[Any], None], height: float
) -> Chart:
    """Draw a figure with ``draw(figure)`` and write it as accessible, page-unique SVG."""
    matplotlib = load()
    from matplotlib.figure import Figure

    # The salt makes the SVG's generated ids the same from run to run, and the same chart
    # always draws the same bytes.
    with matplotlib.rc_context({**_style(), "svg.hashsalt": chart_id}), warnings.catch_warnings():
        # A name in a script DejaVu Sans lacks (CJK, say) is measured without its glyphs; the
        # browser draws the text with its own fonts all the same.
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        figure = Figure(figsize=(WIDTH, height), layout="constrained")
        draw(figure)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return Chart(
        chart_id, title, description, _inline(buffer.getvalue(), chart_id, title, description)
    )


def _inline(svg: str, chart_id: str, title: str, description: str) -> str:
    """A standalone SVG file as an element of the page: no XML prolog or metadata, ids
    prefixed with the chart's (several charts share one document), a title and description
    for assistive technology, and a size that follows the page's width."""
    start = svg.index("<svg")
    svg = _METADATA.sub("", svg[start:])  # RDF naming matplotlib: nothing a reader needs
    svg = _ID.sub(lambda m: f'{m[1]}id="{chart_id}-{m[2]}"', svg)
    svg = _REFERENCE.sub(lambda m: f"{m[1]}{chart_id}-{m[2]}", svg)
    head_end = svg.index(">")
    head = svg[:head_end]
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    head += (
        f' role="img" aria-labelledby="{chart_id}-title {chart_id}-desc"'
        ' preserveAspectRatio="xMidYMid meet" class="chart-svg"'
    )
    accessible = (
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>'
    )
    return head + ">" + accessible + svg[head_end + 1 :]


def _tick(value: float) -> str:
    """Money on an axis: ``$1,000``, ``$0.01``, ``$0``."""
    text = money(value)
    return text[:-3] if text.endswith(".00") else text


def _money_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _pos: _tick(value)))


def _bar_labels(axes: Any, bars: Any, texts: Sequence[str]) -> None:
    axes.bar_label(bars, labels=[label(text) for text in texts], padding=3, fontsize=9)


def _legend(figure: Any) -> None:
    """The legend above the plot, where it never covers a mark."""
    figure.legend(loc="outside upper left", ncols=4, fontsize=9)


def _headroom(axes: Any, values: Sequence[float]) -> None:
    """Room right of the longest bar for its label."""
    top = max(values, default=0.0)
    axes.set_xlim(0, top * 1.3 if top > 0 else 1)


def spend_over_time(
    chart_id: str,
    *,
    starts: Sequence[datetime],
    width_seconds: float,
    traffic: Sequence[float],
    evaluation: Sequence[float],
    description: str,
) -> Chart:
    """Stacked bars: the traffic's spend per interval, and evaluation's on top."""

    def draw(figure: Any) -> None:
        import matplotlib.dates

        mdates: Any = matplotlib.dates  # untyped

        axes = figure.add_subplot()
        width = width_seconds / 86_400  # matplotlib's dates are in days
        axes.bar(starts, traffic, width=width, align="edge", color=BLUE, label="traffic")
        if any(evaluation):
            axes.bar(
                starts,
                evaluation,
                width=width,
                align="edge",
                bottom=traffic,
                color=ORANGE,
                label="shadow evaluation",
            )
            _legend(figure)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        _money_axis(axes.yaxis)
        axes.set_ylabel("spend per interval (USD)")
        axes.grid(axis="x", visible=False)

    return _render(chart_id, "Spend over time", description, draw, 2.8)


def spend_and_calls(
    chart_id: str,
    *,
    title: str,
    names: Sequence[str],
    costs: Sequence[float],
    calls: Sequence[int],
    description: str,
) -> Chart:
    """Two panels of horizontal bars sharing the names: spend, and calls."""

    def draw(figure: Any) -> None:
        left, right = figure.subplots(1, 2, sharey=True, width_ratios=[3, 2])
        positions = list(range(len(names)))
        bars = left.barh(positions, costs, color=BLUE, height=0.6)
        _bar_labels(left, bars, [money(cost) for cost in costs])
        _headroom(left, costs)
        left.set_yticks(positions, [label(name) for name in names])
        left.invert_yaxis()
        _money_axis(left.xaxis)
        left.set_title("spend", loc="left", fontsize=10)
        bars = right.barh(positions, calls, color=SKY, height=0.6)
        _bar_labels(right, bars, [f"{count:,}" for count in calls])
        _headroom(right, [float(count) for count in calls])
        right.set_title("calls", loc="left", fontsize=10)
        for axes in (left, right):
            axes.grid(axis="y", visible=False)
            axes.tick_params(axis="x", labelsize=8)

    return _render(chart_id, title, description, draw, 0.9 + BAR_HEIGHT * len(names))


def savings(
    chart_id: str,
    *,
    rules: Sequence[str],
    saved: Sequence[float],
    would_save: Sequence[float],
    description: str,
) -> Chart:
    """Per rule: what routing saved, and what shadow mode says it would save."""

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        positions = [float(i) for i in range(len(rules))]
        series = [
            (values, colour, name)
            for values, colour, name in (
                (saved, GREEN, "saved (routed)"),
                (would_save, ORANGE, "would save (shadow)"),
            )
            if any(values)  # a kind of saving no rule has gets no bar and no legend entry
        ]
        height = 0.76 / max(len(series), 1)
        for index, (values, colour, name) in enumerate(series):
            offset = (index - (len(series) - 1) / 2) * height
            bars = axes.barh(
                [p + offset for p in positions], values, height=height, color=colour, label=name
            )
            _bar_labels(axes, bars, [money(v) if v else "" for v in values])
        _headroom(axes, [*saved, *would_save])
        axes.set_yticks(positions, [label(rule) for rule in rules])
        axes.invert_yaxis()
        _money_axis(axes.xaxis)
        axes.grid(axis="y", visible=False)
        _legend(figure)

    return _render(
        chart_id, "Routing savings by rule", description, draw, 1.1 + 2 * BAR_HEIGHT * len(rules)
    )


def agreement(
    chart_id: str,
    *,
    rules: Sequence[str],
    points: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    targets: Sequence[float],
    description: str,
) -> Chart:
    """Per rule: measured agreement with its 95% interval, and the rule's target."""

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        positions = list(range(len(rules)))
        below = [p - low for p, low in zip(points, lows, strict=True)]
        above = [high - p for p, high in zip(points, highs, strict=True)]
        met = [low >= target for low, target in zip(lows, targets, strict=True)]
        axes.errorbar(
            points,
            positions,
            xerr=[below, above],
            fmt="none",
            ecolor=GREY,
            capsize=4,
            linewidth=1.5,
            label="95% interval",
        )
        for ok, colour, name in (
            (True, GREEN, "lower bound meets target"),
            (False, VERMILION, "lower bound under target"),
        ):
            chosen = [i for i, m in enumerate(met) if m is ok]
            if chosen:
                axes.scatter(
                    [points[i] for i in chosen],
                    chosen,
                    color=colour,
                    zorder=3,
                    s=40,
                    label=name,
                )
        axes.scatter(targets, positions, marker="|", s=400, color=INK, zorder=4, label="target")
        for position, point in zip(positions, points, strict=True):
            axes.annotate(
                f"{point * 100:.1f}%",
                (point, position),
                xytext=(0, 7),
                textcoords="offset points",
                ha="center",
                fontsize=9,
            )
        for position, low in zip(positions, lows, strict=True):
            axes.annotate(
                f"lower bound {low * 100:.1f}%",
                (low, position),
                xytext=(0, -13),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=GREY,
            )
        axes.set_yticks(positions, [label(rule) for rule in rules])
        axes.set_ylim(len(rules) - 0.4, -0.6)
        low_end = min([*lows, *targets], default=0.0)
        axes.set_xlim(max(0.0, low_end - 0.05), 1.005)
        from matplotlib.ticker import PercentFormatter

        axes.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        axes.grid(axis="y", visible=False)
        _legend(figure)

    return _render(
        chart_id, "Agreement against target by rule", description, draw, 1.2 + 0.55 * len(rules)
    )


def projection(
    chart_id: str, *, without_policy: float, with_policy: float, requests: int, description: str
) -> Chart:
    """Two bars: a day of such traffic without and with the routing policy."""

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        values = [without_policy, with_policy]
        bars = axes.barh([0, 1], values, color=[GREY, GREEN], height=0.55)
        _bar_labels(axes, bars, [f"{money(v)} a day" for v in values])
        _headroom(axes, values)
        axes.set_yticks([0, 1], ["without the policy", "with the policy"])
        axes.invert_yaxis()
        _money_axis(axes.xaxis)
        axes.grid(axis="y", visible=False)
        axes.set_xlabel(f"USD per day at {requests:,} requests a day")

    return _render(chart_id, f"{requests:,} requests a day", description, draw, 1.7)
