"""``llmmeter prices``: model prices from a shell, the ones that end up on spans.

It asks the same price layer the instrumentation uses (bundled data plus the user's
overrides file), so the rates and costs it prints are the ones spans carry. Three modes:
rates per 1M tokens for some models, the list of every known model, and what a day of
traffic costs on several models.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from llmmeter._config import resolve_settings
from llmmeter._pricing import Cost, PriceTable, Rate, Rates
from llmmeter._providers import KNOWN, OPENAI, Provider, provider_named, provider_of
from llmmeter._usage import Usage
from llmmeter.exceptions import ConfigError

from . import table
from .common import (
    Query,
    UsageError,
    Writer,
    exit_codes,
    format_cost,
    format_rate,
    parse_date,
    parse_share,
    parse_tokens,
    parse_tokens_or_zero,
)

DAYS_PER_MONTH: Final = 30
# Service tiers the price data distinguishes for OpenAI; any other value would silently get
# standard rates, so the CLI refuses it instead.
SERVICE_TIERS: Final = ("default", "flex", "priority", "fast")

# Rate fields of Rates, with column labels; the first four are always shown.
_BASE_FIELDS: Final = (
    ("input", "input"),
    ("cached_input", "cached input"),
    ("cache_write", "cache write"),
    ("output", "output"),
)
_MEDIA_FIELDS: Final = (
    ("input_audio", "audio in"),
    ("output_audio", "audio out"),
    ("input_image", "image in"),
    ("output_image", "image out"),
)
_RATE_FIELDS: Final = tuple(name for name, _ in (*_BASE_FIELDS, *_MEDIA_FIELDS))


def _per_million(rate: float) -> float:
    return round(rate * 1_000_000, 10)


def _tiers(rates: Rates) -> dict[str, list[list[float]]]:
    """Tiered fields as ``[[above_input_tokens, usd_per_1m], ...]``; empty when flat."""
    tiers: dict[str, list[list[float]]] = {}
    for name in _RATE_FIELDS:
        value: Rate | None = getattr(rates, name)
        if isinstance(value, tuple):
            tiers[name] = [[start, _per_million(rate)] for start, rate in value]
    return tiers


def _first_threshold(rates: Rates) -> int | None:
    """The lowest input-token cliff above which a call pays more, or None for flat rates."""
    starts = [int(tier[0]) for steps in _tiers(rates).values() for tier in steps[1:]]
    return min(starts, default=None)


def _tier_note(thresholds: set[int], what: str) -> str:
    above = " or ".join(f"{t:,}" for t in sorted(thresholds))
    return f"* {what} above {above} input tokens per call (see --json for the tiers)"


# --- the three modes of `prices` ---------------------------------------------------------


def _show_rates(query: Query, models: Sequence[str], as_json: bool, out: Writer) -> int:
    found = [(name, query.rates(name)) for name in models]
    known = [rates for _, rates in found if rates is not None]
    media = [
        (field, label)
        for field, label in _MEDIA_FIELDS
        if any(getattr(rates, field) is not None for rates in known)
    ]
    if as_json:
        entries = [
            {
                "model": name,
                "known": rates is not None,
                "resolved_model": rates.model if rates else None,
                "ref": rates.ref if rates else None,
                "rates_per_1m": (
                    {field: rates.per_million(field) for field in _RATE_FIELDS} if rates else None
                ),
                "tiers_per_1m": _tiers(rates) if rates else None,
            }
            for name, rates in found
        ]
        out(
            json.dumps({**query.header(), "unit": "USD per 1M tokens", "models": entries}, indent=2)
        )
        return 0 if len(known) == len(found) else 1

    fields = [*_BASE_FIELDS, *media]
    headers = ["model", *(label for _, label in fields), "resolved model", "source"]
    rows: list[list[str]] = []
    thresholds: set[int] = set()
    missing_rate = False
    for name, rates in found:
        if rates is None:
            rows.append([name, query.unpriced(name)])
            continue
        tiered = _tiers(rates)
        if (threshold := _first_threshold(rates)) is not None:
            thresholds.add(threshold)
        cells = []
        for field, _ in fields:
            value = rates.per_million(field)
            missing_rate |= value is None
            mark = "*" if field in tiered else ""
            cells.append("-" if value is None else format_rate(value) + mark)
        rows.append([name, *cells, rates.model, rates.ref])
    out(f"USD per 1M tokens, {query.describe()}")
    for line in table.fit(table.columns(*headers, wrap=("model", "resolved model")), rows):
        out(line)
    if missing_rate:
        out("- no separate rate: those tokens are billed at the plain input or output rate")
    if thresholds:
        out(_tier_note(thresholds, "base rate; a higher rate applies"))
    return 0 if len(known) == len(found) else 1


def _list_models(query: Query, as_json: bool, out: Writer) -> int:
    names = set(query.table.model_ids(query.provider.prices))
    overrides = query.table.overrides
    if overrides is not None:
        names.update(name for name, _ in overrides.models if "*" not in name)
    found = [(name, query.rates(name)) for name in sorted(names)]
    if as_json:
        entries = [
            {
                "model": name,
                "input_per_1m": rates.per_million("input") if rates else None,
                "output_per_1m": rates.per_million("output") if rates else None,
                "tiered": bool(_tiers(rates)) if rates else None,
                "ref": rates.ref if rates else None,
            }
            for name, rates in found
        ]
        out(json.dumps({**query.header(), "models": entries}, indent=2))
        return 0

    rows: list[list[str]] = []
    thresholds: set[int] = set()
    for name, rates in found:
        if rates is None:
            rows.append([name, "no per-token price"])
            continue
        tiered = _tiers(rates)
        if (threshold := _first_threshold(rates)) is not None:
            thresholds.add(threshold)
        cells = [
            format_rate(rates.per_million(field) or 0.0) + ("*" if field in tiered else "")
            for field in ("input", "output")
        ]
        note = "override" if rates.ref != query.table.data_ref else ""
        rows.append([name, *cells, note])
    source = query.table.data_ref + (f" + {overrides.path}" if overrides is not None else "")
    out(f"Known models, USD per 1M tokens, {query.describe()} ({source})")
    for line in table.fit(table.columns("model", "input", "output", ""), rows):
        out(line)
    if thresholds:
        out(_tier_note(thresholds, "base rate; a higher rate applies"))
    return 0


def _provider(table: PriceTable, name: str | None, base_url: str | None) -> Provider:
    """Whose list price: ``--provider`` (a known name, or any provider id of the price
    data), ``--base-url`` (as the instrumentation reads a client's), or OpenAI's."""
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Not echoed: a URL may carry credentials (user:password@host, a key in the query).
            raise UsageError("--base-url: expected an http:// or https:// URL with a host")
        return provider_of(parts.hostname)
    if name is None:
        return OPENAI
    known = provider_named(name)
    if known is not None:
        return known
    if name in table.provider_ids():
        return Provider(name, name)
    raise UsageError(
        f"--provider: expected a provider name ({', '.join(p.name for p in KNOWN)}) or a "
        f"provider id of the price data ({', '.join(table.provider_ids())}); got {name!r}"
    )


@dataclass(frozen=True, slots=True)
class _Traffic:
    input_tokens: int
    output_tokens: int
    cached_tokens: int


def _calls(tokens: int, cliff: int) -> list[tuple[int, int]]:
    """``tokens`` as (number of calls, tokens per call), each call at most ``cliff``."""
    full, rest = divmod(tokens, cliff)
    return [(count, size) for count, size in ((full, cliff), (1, rest)) if count and size]


def _daily_cost(query: Query, name: str, traffic: _Traffic) -> tuple[Cost, int] | None:
    """A day of traffic on ``name`` through ``table.price``, and the calls it assumed (or 1).

    Long-context tiers are cliffs on one call's input tokens, so a day's total as one usage
    would always land above them. For a tiered model whose daily input passes the first
    cliff, the day is priced as the fewest calls that stay under it (plain and cached input
    apart, output at its per-call base rate): the same token totals, at the rates typical
    calls pay.
    """
    rates = query.rates(name)
    if rates is None:
        return None
    cliff = _first_threshold(rates)
    if cliff is None or traffic.input_tokens <= cliff:
        calls = 1
        usages = [
            (
                1,
                Usage(
                    input_tokens=traffic.input_tokens,
                    output_tokens=traffic.output_tokens,
                    cache_read_tokens=traffic.cached_tokens,
                ),
            )
        ]
    else:
        plain = _calls(traffic.input_tokens - traffic.cached_tokens, cliff)
        cached = _calls(traffic.cached_tokens, cliff)
        calls = sum(count for count, _ in (*plain, *cached))
        usages = [
            *((count, Usage(input_tokens=size)) for count, size in plain),
            *((count, Usage(input_tokens=size, cache_read_tokens=size)) for count, size in cached),
            (1, Usage(input_tokens=0, output_tokens=traffic.output_tokens)),
        ]
    cost_in = cost_out = 0.0
    for count, usage in usages:
        cost = query.table.price(
            usage,
            (name,),
            provider=query.provider.prices,
            service_tier=query.service_tier,
            batch=query.batch,
            when=query.when,
        )
        if cost is None:  # pragma: no cover - rates() has just priced this model
            return None
        cost_in += cost.input * count
        cost_out += cost.output * count
    return Cost(input=cost_in, output=cost_out, model=rates.model, ref=rates.ref), calls


def _ratio_words(cost: float, base: float) -> str:
    if base <= 0:
        return "n/a (first model costs nothing)"
    if math.isclose(cost, base, rel_tol=1e-9):
        return "same cost"
    if cost <= 0:
        return "free"
    if cost < base:
        return f"{base / cost:,.2f}x cheaper"
    return f"{cost / base:,.2f}x the cost"


def _compare(
    query: Query, models: Sequence[str], traffic: _Traffic, as_json: bool, out: Writer
) -> int:
    found = [(name, _daily_cost(query, name, traffic)) for name in models]
    first = found[0][1]
    base = first[0].total if first is not None else None

    def ratio(cost: Cost) -> float | None:
        return round(cost.total / base, 10) if base else None

    if as_json:
        entries = []
        for name, priced in found:
            entry: dict[str, Any] = {"model": name, "known": priced is not None}
            if priced is None:
                entry |= {"resolved_model": None, "ref": None, "per_day": None, "per_month": None}
                entry |= {"ratio_to_first": None, "calls_per_day_assumed": None}
            else:
                cost, calls = priced
                entry |= {"resolved_model": cost.model, "ref": cost.ref}
                for key, days in (("per_day", 1), ("per_month", DAYS_PER_MONTH)):
                    entry[key] = {
                        "input": round(cost.input * days, 10),
                        "output": round(cost.output * days, 10),
                        "total": round(cost.total * days, 10),
                    }
                entry["ratio_to_first"] = ratio(cost)
                entry["calls_per_day_assumed"] = calls if calls > 1 else None
            entries.append(entry)
        doc = {
            **query.header(),
            "days_per_month": DAYS_PER_MONTH,
            "daily_input_tokens": traffic.input_tokens,
            "daily_cached_input_tokens": traffic.cached_tokens,
            "daily_output_tokens": traffic.output_tokens,
            "models": entries,
        }
        out(json.dumps(doc, indent=2))
        return 0 if all(priced for _, priced in found) else 1

    headers = ["model", "per day", "per month", f"vs {models[0]}", "priced as", "source"]
    rows: list[list[str]] = []
    split: dict[str, int] = {}
    for index, (name, priced) in enumerate(found):
        if priced is None:
            rows.append([name, query.unpriced(name)])
            continue
        cost, calls = priced
        if calls > 1:
            split[name] = calls
        if index == 0:
            versus = "baseline"
        elif base is None:
            versus = "n/a (the first model has no price)"
        else:
            versus = _ratio_words(cost.total, base)
        mark = "*" if calls > 1 else ""
        rows.append(
            [
                name,
                format_cost(cost.total) + mark,
                format_cost(cost.total * DAYS_PER_MONTH) + mark,
                versus,
                cost.model,
                cost.ref,
            ]
        )
    out(
        f"Daily traffic: {traffic.input_tokens:,} input tokens ({traffic.cached_tokens:,} cached), "
        f"{traffic.output_tokens:,} output tokens; {query.describe()}; "
        f"a month is {DAYS_PER_MONTH} days"
    )
    wrap = ("model", headers[3], "priced as", "source")
    for line in table.fit(table.columns(*headers, wrap=wrap), rows):
        out(line)
    for name, calls in split.items():
        out(
            f"* {name} has long-context rates: priced as {calls:,} calls a day, each under "
            "the first cliff"
        )
    return 0 if all(priced for _, priced in found) else 1


_PRICES_EPILOG = """\
examples:
  llmmeter prices gpt-4o gpt-4o-mini          rates per 1M tokens
  llmmeter prices --list                      every known model
  llmmeter prices --compare gpt-4o gpt-4o-mini --daily-input 10M --daily-output 2M
  llmmeter prices --provider groq llama-3.3-70b-versatile     at Groq's list price
  llmmeter prices --base-url https://api.deepseek.com deepseek-chat
"""


def add_prices_parser(commands: Any) -> None:
    """``llmmeter prices``."""
    prices = commands.add_parser(
        "prices",
        help="rates per 1M tokens, the list of known models, or a cost comparison",
        description=(
            "Show rates per 1M tokens for MODELs (or list every known model when none is\n"
            "given), or compare what a day of traffic costs on several models. Prices come\n"
            "from the bundled data plus the overrides file (--prices or LLMMETER_PRICES)."
        ),
        epilog=_PRICES_EPILOG
        + "\n"
        + exit_codes((0, "every MODEL has a price"), (1, "done, but some MODEL has no price")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prices.add_argument("models", nargs="*", metavar="MODEL", help="model names or ids")
    prices.add_argument("--list", action="store_true", help="list every known model id")
    prices.add_argument(
        "--compare",
        action="store_true",
        help="compare the daily and monthly cost of the MODELs (two or more; the first is the "
        "baseline)",
    )
    prices.add_argument(
        "--daily-input",
        type=parse_tokens,
        metavar="TOKENS",
        help="input tokens per day for --compare (e.g. 10M, 2.5M, 300k)",
    )
    prices.add_argument(
        "--daily-output",
        type=parse_tokens_or_zero,
        metavar="TOKENS",
        help="output tokens per day for --compare (default: none)",
    )
    prices.add_argument(
        "--cached-share",
        type=parse_share,
        metavar="SHARE",
        help="fraction of the input tokens that are cached, 0 to 1 (default: 0)",
    )
    whose = prices.add_mutually_exclusive_group()
    whose.add_argument(
        "--provider",
        metavar="NAME",
        help="price at this provider's list price: a gen_ai.provider.name (groq, deepseek, "
        "x_ai, gcp.gemini, ...) or a provider id of the price data (default: openai)",
    )
    whose.add_argument(
        "--base-url",
        metavar="URL",
        help="price as spans of a client with this base_url are priced (its provider, or a "
        "local server)",
    )
    prices.add_argument("--service-tier", choices=SERVICE_TIERS, help="price at this tier")
    prices.add_argument("--batch", action="store_true", help="price as Batch API calls")
    prices.add_argument(
        "--date",
        type=parse_date,
        metavar="YYYY-MM-DD",
        help="price as on this day, UTC (default: today); prices change over time",
    )
    prices.add_argument(
        "--prices",
        metavar="FILE",
        help="TOML overrides file (default: $LLMMETER_PRICES)",
    )
    prices.add_argument("--json", action="store_true", help="machine-readable output")
    prices.set_defaults(handler=_prices, prog=prices.prog)


def _prices(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter prices``: validate the combination of options, then run one of three modes."""
    models: list[str] = args.models
    traffic_options = {
        "--daily-input": args.daily_input,
        "--daily-output": args.daily_output,
        "--cached-share": args.cached_share,
    }
    if args.list and models:
        raise UsageError("--list takes no MODEL; give either --list or model names")
    if args.list and args.compare:
        raise UsageError("--list and --compare cannot be combined")
    if args.compare:
        if len(models) < 2:
            raise UsageError(f"--compare needs at least two models; got {len(models)}")
        if args.daily_input is None:
            raise UsageError("--compare needs --daily-input (input tokens per day, e.g. 10M)")
    else:
        given = [name for name, value in traffic_options.items() if value is not None]
        if given:
            raise UsageError(f"{given[0]} only applies with --compare")
    try:
        settings = resolve_settings(prices=args.prices)
        table = PriceTable.load(settings.prices_path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    day: date = args.date or datetime.now(UTC).date()
    query = Query(
        table=table,
        day=day,
        service_tier=args.service_tier,
        batch=args.batch,
        provider=_provider(table, args.provider, args.base_url),
    )
    if args.compare:
        daily_input: int = args.daily_input
        traffic = _Traffic(
            input_tokens=daily_input,
            output_tokens=args.daily_output or 0,
            cached_tokens=round(daily_input * (args.cached_share or 0.0)),
        )
        return _compare(query, models, traffic, args.json, out)
    if not models:
        return _list_models(query, args.json, out)
    return _show_rates(query, models, args.json, out)
