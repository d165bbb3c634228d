"""The ``llmmeter`` command line: model prices, and routing-policy files, from a shell.

``llmmeter prices`` asks the same price layer the instrumentation uses (bundled data plus the
user's overrides file), so the rates and costs it prints are the ones that end up on spans.
``llmmeter policy check`` validates a policy file as ``instrument()`` would, and ``llmmeter
policy explain`` runs the file's rules on a call built the way the instrumentation builds its
view of a request, so its decision is the one a real call would get. Tests call :func:`main`
with an argument list; the console script and ``python -m llmmeter`` call :func:`run`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, NoReturn

from ._config import resolve_settings
from ._package import __version__
from ._policy import CallView, stable_fraction
from ._pricing import Cost, PriceTable, Rate, Rates
from ._rules import APIS, MODES, Explanation, Rule, RulePolicy, describe
from ._usage import CHAT, COMPLETIONS, RESPONSES, Usage
from .exceptions import ConfigError

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

_TOKEN_SUFFIXES: Final = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
_TOKEN_AMOUNT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([kKMB]?)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Writer = Callable[[str], None]


class _UsageError(Exception):
    """A bad command line or configuration; :func:`main` prints it as one line, returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake as one line instead of a usage dump and an exit."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# --- argument types ----------------------------------------------------------------------


def parse_tokens(text: str) -> int:
    """``10M``, ``2.5M``, ``300k``, ``1B`` or ``1_000_000`` as a positive whole token count."""
    match = _TOKEN_AMOUNT.match(text.strip().replace("_", ""))
    amount = Decimal(match[1]) * _TOKEN_SUFFIXES[match[2]] if match else Decimal(0)
    if amount <= 0 or amount != amount.to_integral_value():
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number of tokens such as 300k, 2.5M, 10M or 1B; "
            f"got {text!r}"
        )
    return int(amount)


def _parse_share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = math.nan
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1; got {text!r}")
    return share


def _parse_date(text: str) -> date:
    try:
        if _DATE.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD; got {text!r}")


# --- number formatting -------------------------------------------------------------------


def _usd(value: float, decimals: int) -> str:
    """``$`` with at least ``decimals`` places, more below $1 so 3 significant digits show.

    Rounds half up from 12 significant digits, clear of float noise: $2.475 shows as $2.48, not
    as the $2.47 that 2.4749999999999996 would give.
    """
    if 0 < value < 1:
        decimals = max(decimals, 2 - math.floor(math.log10(value)))
    exact = Decimal(f"{value:.12g}").quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
    whole, _, fraction = f"{exact:,f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def format_rate(per_million: float) -> str:
    """A rate per 1M tokens: ``$2.50``, ``$0.075``, ``$10.00`` (up to 4 decimals)."""
    return _usd(per_million, 4)


def format_cost(usd: float) -> str:
    """A cost: ``$45.00``, ``$1,350.00``; below $1 with enough decimals never to read $0.00."""
    return _usd(usd, 2)


# --- shared plumbing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Query:
    """The price conditions every mode shares: which day, tier and batch flag."""

    table: PriceTable
    day: date
    service_tier: str | None
    batch: bool

    @property
    def when(self) -> float:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC).timestamp()

    def rates(self, name: str) -> Rates | None:
        return self.table.rates(
            name, service_tier=self.service_tier, batch=self.batch, when=self.when
        )

    def describe(self) -> str:
        tier = "standard tier" if self.service_tier is None else f"{self.service_tier} tier"
        return f"{self.day.isoformat()}, {tier}{', batch' if self.batch else ''}"

    def header(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "service_tier": self.service_tier,
            "batch": self.batch,
            "currency": "USD",
        }

    def unpriced(self, name: str) -> str:
        """Why ``name`` has no row of numbers, with the nearest known id as a hint."""
        if self.table.knows(name):
            return "no per-token price known"
        close = difflib.get_close_matches(name, self.table.model_ids(), n=1)
        return "no price known" + (f" (did you mean {close[0]}?)" if close else "")


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


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns; a short row's last cell (a message) widens no column it spans."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row if len(row) == len(headers) else row[:-1]):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def _tier_note(thresholds: set[int], what: str) -> str:
    above = " or ".join(f"{t:,}" for t in sorted(thresholds))
    return f"* {what} above {above} input tokens per call (see --json for the tiers)"


# --- the three modes of `prices` ---------------------------------------------------------


def _show_rates(query: _Query, models: Sequence[str], as_json: bool, out: Writer) -> int:
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
    for line in _table(headers, rows):
        out(line)
    if missing_rate:
        out("- no separate rate: those tokens are billed at the plain input or output rate")
    if thresholds:
        out(_tier_note(thresholds, "base rate; a higher rate applies"))
    return 0 if len(known) == len(found) else 1


def _list_models(query: _Query, as_json: bool, out: Writer) -> int:
    names = set(query.table.model_ids())
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
    for line in _table(["model", "input", "output", ""], rows):
        out(line)
    if thresholds:
        out(_tier_note(thresholds, "base rate; a higher rate applies"))
    return 0


@dataclass(frozen=True, slots=True)
class _Traffic:
    input_tokens: int
    output_tokens: int
    cached_tokens: int


def _calls(tokens: int, cliff: int) -> list[tuple[int, int]]:
    """``tokens`` as (number of calls, tokens per call), each call at most ``cliff``."""
    full, rest = divmod(tokens, cliff)
    return [(count, size) for count, size in ((full, cliff), (1, rest)) if count and size]


def _daily_cost(query: _Query, name: str, traffic: _Traffic) -> tuple[Cost, int] | None:
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
            usage, (name,), service_tier=query.service_tier, batch=query.batch, when=query.when
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
    query: _Query, models: Sequence[str], traffic: _Traffic, as_json: bool, out: Writer
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
    for line in _table(headers, rows):
        out(line)
    for name, calls in split.items():
        out(
            f"* {name} has long-context rates: priced as {calls:,} calls a day, each under "
            "the first cliff"
        )
    return 0 if all(priced for _, priced in found) else 1


# --- `policy check` and `policy explain` -------------------------------------------------

DEFAULT_OUTPUT_TOKENS: Final = 256
"""Output tokens per call that ``policy explain`` assumes for its cost estimate."""
CALLS_PER_ESTIMATE: Final = 1_000_000
# What `explain` puts in a request for --tools and --images: a stand-in, never sent anywhere.
_IMAGE_URL: Final = "https://example.com/image.png"
_TOOL_NAME: Final = "lookup"


def _load_policy(path: str, mode: str | None) -> tuple[RulePolicy, RulePolicy]:
    """(the policy in force, the policy as the file says): they differ only under --mode.

    ``LLMMETER_POLICY_MODE`` is deliberately not read: the command shows the file, and
    ``--mode`` shows what an override would change.
    """
    try:
        written = RulePolicy.load(path)
        return (written.with_mode(mode) if mode is not None else written), written
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None


def _percent(share: float) -> str:
    return f"{share * 100:g}%"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _conditions(rule: Rule) -> list[str]:
    """A rule's conditions beyond ``from``, in words; only those that differ from the default."""
    parts: list[str] = []
    if rule.apis is not None:
        parts.append("apis " + ", ".join(sorted(rule.apis)))
    if rule.tasks is not None:
        parts.append("tasks " + ", ".join(sorted(rule.tasks)))
    if rule.prompt:
        parts.append("prompt " + " or ".join(f"/{pattern}/" for pattern in rule.prompt))
    low, high = rule.min_input_tokens, rule.max_input_tokens
    if low is not None and high is not None:
        parts.append(f"input {low:,}-{high:,} tokens")
    elif low is not None:
        parts.append(f"input >= {low:,} tokens")
    elif high is not None:
        parts.append(f"input <= {high:,} tokens")
    if rule.max_output_tokens is not None:
        parts.append(f"output cap <= {rule.max_output_tokens:,} tokens")
    if not rule.allow_tools:
        parts.append("no tools")
    if not rule.allow_images:
        parts.append("no images")
    if not rule.allow_response_format:
        parts.append("no structured output")
    return parts


def _rule_json(policy: RulePolicy, rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "from": list(rule.models),
        "to": rule.to,
        "mode": policy.rule_mode(rule),
        "own_mode": rule.mode,
        "apis": sorted(rule.apis) if rule.apis is not None else None,
        "tasks": sorted(rule.tasks) if rule.tasks is not None else None,
        "prompt": list(rule.prompt),
        "min_input_tokens": rule.min_input_tokens,
        "max_input_tokens": rule.max_input_tokens,
        "max_output_tokens": rule.max_output_tokens,
        "allow_tools": rule.allow_tools,
        "allow_images": rule.allow_images,
        "allow_response_format": rule.allow_response_format,
        "sample": rule.sample,
    }


def _mode_words(policy: RulePolicy, written: RulePolicy, override: str | None) -> str:
    if override is None:
        return policy.mode
    return f"{policy.mode} (--mode {override}; the file says {written.mode})"


def _policy_check(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy check``: validate a policy file and show what is in force."""
    policy, written = _load_policy(args.file, args.mode)
    rules = policy.rules
    routes_nothing = all(policy.rule_mode(rule) == "off" for rule in rules)
    if args.json:
        doc = {
            "file": args.file,
            "valid": True,
            "mode": policy.mode,
            "file_mode": written.mode,
            "mode_override": args.mode,
            "fallback": policy.fallback,
            "deployments": dict(policy.deployments),
            "routes_nothing": routes_nothing,
            "rules": [_rule_json(policy, rule) for rule in rules],
        }
        out(json.dumps(doc, indent=2))
        return 0

    order = " (the first rule a call matches decides)" if len(rules) > 1 else ""
    out(f"{args.file}: valid, {_plural(len(rules), 'rule')}{order}")
    out(f"mode: {_mode_words(policy, written, args.mode)}")
    if policy.fallback == "on-error":
        out("fallback: on-error (a failed routed call is re-sent once to the requested model)")
    else:
        out("fallback: off (a routed call that fails raises its error)")
    deployments = ", ".join(f"{model} -> {name}" for model, name in policy.deployments.items())
    out(f"deployments: {deployments or 'none'}")
    if not rules:
        out("note: no rules, so this policy routes nothing")
        return 0
    rows: list[list[str]] = []
    own_mode = False
    for index, rule in enumerate(rules, 1):
        in_force = policy.rule_mode(rule)
        # marked: the rule's own mode is in force and differs from the policy-wide one above
        mark = "*" if rule.mode is not None and in_force == rule.mode != policy.mode else ""
        own_mode |= bool(mark)
        sample = "all" if rule.sample >= 1.0 else _percent(rule.sample)
        conditions = "; ".join(_conditions(rule)) or "any call"
        models = ", ".join(rule.models)
        rows.append([str(index), rule.name, models, rule.to, in_force + mark, sample, conditions])
    headers = ["#", "rule", "from", "to", "mode", "sample", "conditions"]
    for line in _table(headers, rows):
        out(line)
    if own_mode:
        out("* the rule's own mode, not the policy's")
    if routes_nothing:
        out("note: every rule is off, so this policy routes nothing")
    return 0


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        text: str = args.prompt
        return text
    path: str = args.prompt_file
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise _UsageError(f"cannot read --prompt-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise _UsageError(f"--prompt-file {path}: expected UTF-8 text") from None


def _build_call(args: argparse.Namespace) -> CallView:
    """The view the instrumentation would build for the call the options describe."""
    api: str = args.api
    features = {
        "--system": args.system is not None,
        "--tools": args.tools,
        "--images": args.images,
        "--response-format": args.response_format,
    }
    if api == "completions":
        given = [flag for flag, on in features.items() if on]
        if given:
            raise _UsageError(
                f"{given[0]} does not apply to --api completions (a legacy completion is one "
                "prompt string)"
            )
    prompt = _read_prompt(args)
    schema = {"type": "object", "properties": {}}
    kwargs: dict[str, Any] = {"model": args.model}
    endpoint, operation = CHAT, "chat"
    if api == "chat_completions":
        user: Any = prompt
        if args.images:
            image = {"type": "image_url", "image_url": {"url": _IMAGE_URL}}
            user = [{"type": "text", "text": prompt}, image]
        system = [{"role": "system", "content": args.system}] if args.system is not None else []
        kwargs["messages"] = [*system, {"role": "user", "content": user}]
        if args.tools:
            function = {"name": _TOOL_NAME, "parameters": schema}
            kwargs["tools"] = [{"type": "function", "function": function}]
        if args.response_format:
            kwargs["response_format"] = {"type": "json_object"}
        cap = "max_completion_tokens"
    elif api == "responses":
        endpoint = RESPONSES
        if args.images:
            parts = [
                {"type": "input_text", "text": prompt},
                {"type": "input_image", "image_url": _IMAGE_URL},
            ]
            kwargs["input"] = [{"role": "user", "content": parts}]
        else:
            kwargs["input"] = prompt
        if args.system is not None:
            kwargs["instructions"] = args.system
        if args.tools:
            kwargs["tools"] = [{"type": "function", "name": _TOOL_NAME, "parameters": schema}]
        if args.response_format:
            kwargs["text"] = {"format": {"type": "json_object"}}
        cap = "max_output_tokens"
    else:
        endpoint, operation = COMPLETIONS, "text_completion"
        kwargs["prompt"] = prompt
        cap = "max_tokens"
    if args.max_output_tokens is not None:
        kwargs[cap] = args.max_output_tokens
    return CallView(
        endpoint=endpoint,
        operation=operation,
        model=args.model,
        kwargs=kwargs,
        task=args.task,
        key=args.key,
    )


def _describe_call(call: CallView) -> str:
    parts = [
        call.api,
        f"model {call.model}",
        "no task" if call.task is None else f"task {call.task}",
        "no key" if call.key is None else f"key {call.key!r}",
        f"~{call.input_tokens:,} input tokens (estimate)",
    ]
    if call.tools:
        parts.append("offers tools")
    if call.images:
        parts.append("image input")
    if call.response_format:
        parts.append("structured output")
    if call.max_output_tokens is not None:
        parts.append(f"output cap {call.max_output_tokens:,} tokens")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What ``explain`` decided, in the terms the output uses."""

    model: str
    """The model the call asks for."""
    rule: Rule | None = None
    """The rule that decides: the first that matches and is not off."""
    mode: str | None = None
    """The deciding rule's mode in force (``enforce`` or ``shadow``)."""
    target: str | None = None
    """Where the deciding rule sends calls, unless that is the requested model."""
    share: float = 0.0
    """The fraction of calls like this one that go to ``target``: 1 or 0 with a key (or no
    sampling), the rule's ``sample`` when each call is drawn on its own."""
    position: float | None = None
    """Where the key falls for a sampled rule (``stable_fraction``), if there is a key."""

    @property
    def routed(self) -> bool | None:
        """Whether this call is routed; ``None`` when it depends on a per-call draw."""
        if self.target is None or self.share <= 0.0:
            return False
        return True if self.share >= 1.0 else None

    @property
    def model_sent(self) -> str | None:
        """The model the request goes out with; ``None`` when a per-call draw decides."""
        routed = self.routed
        if routed is None:
            return None
        return self.target if routed and self.mode == "enforce" else self.model


def _outcome(policy: RulePolicy, found: Explanation, call: CallView) -> _Outcome:
    rule = found.rule
    if rule is None:
        return _Outcome(call.model)
    mode = policy.rule_mode(rule)
    if rule.to == call.model:
        return _Outcome(call.model, rule, mode)
    position = None
    if 0.0 < rule.sample < 1.0 and call.key is not None:
        position = stable_fraction(rule.name, call.key)
    share = 1.0 if found.route is not None else 0.0
    if found.in_sample is None:  # a sampled rule and no key: each call is drawn on its own
        share = rule.sample
    return _Outcome(call.model, rule, mode, rule.to, share, position)


def _decision_words(
    outcome: _Outcome, found: Explanation, call: CallView, fallback: bool
) -> list[str]:
    """The decision in sentences: which rule, why, where the call goes, under which mode."""
    rule, model, target = outcome.rule, call.model, outcome.target
    if rule is None:
        if any(reason is None for _, reason in found.verdicts):
            return [f"Decision: every rule that matches is off; the call stays on {model}."]
        return [f"Decision: no rule matches; the call stays on {model}."]
    skipped = False  # a rule before it matches too, but is off
    for each, reason in found.verdicts:
        if each is rule:
            break
        skipped |= reason is None
    which = "the first rule that matches and is not off" if skipped else "the first that matches"
    first = f"Decision: rule {rule.name} ({which})"
    if target is None:
        return [f"{first} routes to {model}, the model requested: the call stays on it."]
    if rule.sample <= 0.0:
        return [
            f"{first} has sample = 0, so it routes no calls: the call stays on {model}, and "
            "the rules after it are not tried."
        ]
    verb = "routes" if outcome.mode == "enforce" else "would route"
    sample = _percent(rule.sample)
    if rule.sample >= 1.0:
        decision = f"{first} {verb} the call to {target}."
    elif outcome.position is None:
        decision = (
            f"{first} {verb} {sample} of such calls to {target} and leaves the rest on "
            f"{model}. Without --key each call is drawn on its own; give --key to see the "
            "decision for a conversation."
        )
    elif not outcome.routed:
        return [
            f"{first} {verb} {sample} of calls to {target}, but key {call.key!r} falls "
            f"outside that canary (position {outcome.position:.4f}, not below "
            f"{rule.sample:g}): the call stays on {model}, and the rules after it are not "
            "tried."
        ]
    else:
        decision = (
            f"{first} {verb} the call to {target}: key {call.key!r} falls inside its "
            f"{sample} canary (position {outcome.position:.4f}, below {rule.sample:g}); the "
            "same key gets the same decision in every process."
        )
    if outcome.mode == "shadow":
        mode = (
            f"Mode: shadow: the request goes out unchanged to {model}; the span records the "
            "route and what it would save."
        )
    else:
        again = f"; if it fails it is re-sent once to {model}" if fallback else ""
        mode = f"Mode: enforce: the request goes out to {target}{again}."
    return [decision, mode]


def _cost_json(name: str, cost: Cost | None) -> dict[str, Any]:
    if cost is None:
        return {
            "model": name,
            "known": False,
            "resolved_model": None,
            "ref": None,
            "per_call": None,
            "per_1m_calls": None,
        }
    return {
        "model": name,
        "known": True,
        "resolved_model": cost.model,
        "ref": cost.ref,
        "per_call": {
            "input": round(cost.input, 12),
            "output": round(cost.output, 12),
            "total": round(cost.total, 12),
        },
        "per_1m_calls": round(cost.total * CALLS_PER_ESTIMATE, 6),
    }


def _saving_words(outcome: _Outcome, saving: float) -> str:
    """The saving per call and per 1M calls; an "extra cost" when the target costs more."""
    more = saving < 0
    amount = format_cost(abs(saving))
    per_million = format_cost(abs(saving) * CALLS_PER_ESTIMATE)
    label = "Extra cost" if more else "Saving"
    if outcome.mode == "shadow" and outcome.share > 0:
        label += " (shadow mode: reported on spans, not realised)"
    if outcome.share >= 1.0:
        return f"{label}: {amount} per call, {per_million} per 1M calls."
    if outcome.share <= 0.0:
        would = f"cost {amount} more" if more else f"save {amount}"
        return (
            f"{label}: none for this call; a routed call would {would} "
            f"({per_million} per 1M routed calls)."
        )
    expected = format_cost(abs(saving) * outcome.share * CALLS_PER_ESTIMATE)
    return (
        f"{label}: {amount} per routed call; with {_percent(outcome.share)} of calls routed, "
        f"{expected} per 1M calls like this one."
    )


def _verdict(
    policy: RulePolicy, found: Explanation, rule: Rule, reason: str | None, call: CallView
) -> str:
    if reason is not None:
        return describe(rule, reason, call)
    if rule is found.rule:
        return "matches: this rule decides"
    if policy.rule_mode(rule) == "off":
        return "matches, but the rule is off"
    assert found.rule is not None  # a matching rule that is on and does not decide comes later
    return f"matches, but rule {found.rule.name} comes first"


@dataclass(frozen=True, slots=True)
class _Estimate:
    """The cost of one call like the explained one, at the requested model and the target."""

    query: _Query
    usage: Usage
    requested: Cost | None
    target: Cost | None

    @property
    def saving(self) -> float | None:
        """Requested minus target cost per routed call; ``None`` when either has no price."""
        if self.requested is None or self.target is None:
            return None
        return self.requested.total - self.target.total


def _policy_explain(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter policy explain``: every rule's verdict on one call, the decision, its cost."""
    call = _build_call(args)
    policy, written = _load_policy(args.file, args.mode)
    try:
        table = PriceTable.load(resolve_settings(prices=args.prices).prices_path)
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    day: date = args.date or datetime.now(UTC).date()
    query = _Query(table=table, day=day, service_tier=None, batch=False)
    found = policy.explain(call)
    outcome = _outcome(policy, found, call)
    usage = Usage(input_tokens=call.input_tokens, output_tokens=args.output_tokens)
    target = outcome.target
    estimate = _Estimate(
        query=query,
        usage=usage,
        requested=table.price(usage, (call.model,), when=query.when),
        target=table.price(usage, (target,), when=query.when) if target else None,
    )
    verdicts = [
        (rule, reason, _verdict(policy, found, rule, reason, call))
        for rule, reason in found.verdicts
    ]
    if args.json:
        doc = {
            "file": args.file,
            "mode": policy.mode,
            "mode_override": args.mode,
            "call": {
                "api": call.api,
                "model": call.model,
                "task": call.task,
                "key": call.key,
                "input_tokens": call.input_tokens,
                "output_tokens": usage.output_tokens,
                "tools": call.tools,
                "images": call.images,
                "response_format": call.response_format,
                "max_output_tokens": call.max_output_tokens,
            },
            "rules": [
                {
                    "name": rule.name,
                    "to": rule.to,
                    "mode": policy.rule_mode(rule),
                    "matches": reason is None,
                    "decides": rule is found.rule,
                    "reason": reason,
                    "explanation": words,
                }
                for rule, reason, words in verdicts
            ],
            "decision": _decision_json(outcome),
            "cost": _estimate_json(outcome, estimate),
        }
        out(json.dumps(doc, indent=2))
        return 0

    out(f"Policy: {args.file}, mode {_mode_words(policy, written, args.mode)}")
    out(f"Call: {_describe_call(call)}")
    rows = [
        [str(index), rule.name, rule.to, policy.rule_mode(rule), words]
        for index, (rule, _, words) in enumerate(verdicts, 1)
    ]
    if rows:
        for line in _table(["#", "rule", "to", "mode", "verdict"], rows):
            out(line)
    else:
        out("The policy has no rules.")
    for line in _decision_words(outcome, found, call, policy.fallback == "on-error"):
        out(line)
    for line in _estimate_words(outcome, estimate):
        out(line)
    return 0


def _decision_json(outcome: _Outcome) -> dict[str, Any]:
    rule = outcome.rule
    return {
        "rule": rule.name if rule else None,
        "target": outcome.target,
        "mode": outcome.mode,
        "routed": outcome.routed,
        "model_sent": outcome.model_sent,
        "routed_share": outcome.share,
        "sample": rule.sample if rule else None,
        "key_position": outcome.position,
    }


def _estimate_json(outcome: _Outcome, estimate: _Estimate) -> dict[str, Any]:
    saving = estimate.saving
    target = outcome.target
    return {
        **estimate.query.header(),
        "input_tokens": estimate.usage.input_tokens,
        "output_tokens": estimate.usage.output_tokens,
        "requested": _cost_json(outcome.model, estimate.requested),
        "target": _cost_json(target, estimate.target) if target else None,
        "saving_per_routed_call": round(saving, 12) if saving is not None else None,
        "saving_per_1m_calls": (
            round(saving * outcome.share * CALLS_PER_ESTIMATE, 6) if saving is not None else None
        ),
    }


def _estimate_words(outcome: _Outcome, estimate: _Estimate) -> list[str]:
    usage = estimate.usage
    lines = [
        f"Estimated cost per call: ~{usage.input_tokens:,} input and {usage.output_tokens:,} "
        f"output tokens, prices of {estimate.query.day.isoformat()}"
    ]
    rows: list[list[str]] = []
    for role, name, cost in (
        ("requested", outcome.model, estimate.requested),
        ("target", outcome.target, estimate.target),
    ):
        if name is None:
            continue
        if cost is None:
            rows.append([role, name, estimate.query.unpriced(name)])
        else:
            per_million = format_cost(cost.total * CALLS_PER_ESTIMATE)
            rows.append([role, name, format_cost(cost.total), per_million, cost.model, cost.ref])
    lines += _table(["", "model", "per call", "per 1M calls", "priced as", "source"], rows)
    if outcome.target is not None:
        saving = estimate.saving
        if saving is None:
            unpriced = outcome.model if estimate.requested is None else outcome.target
            lines.append(f"Saving: unknown, since {unpriced} has no price.")
        else:
            lines.append(_saving_words(outcome, saving))
    return lines


# --- the parser and the entry points -----------------------------------------------------

_PRICES_EPILOG = """\
examples:
  llmmeter prices gpt-4o gpt-4o-mini          rates per 1M tokens
  llmmeter prices --list                      every known model
  llmmeter prices --compare gpt-4o gpt-4o-mini --daily-input 10M --daily-output 2M
"""


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="llmmeter",
        description=(
            "Look up and compare the model prices llmmeter uses, and check or explain a\n"
            "routing policy file."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llmmeter {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    prices = commands.add_parser(
        "prices",
        help="rates per 1M tokens, the list of known models, or a cost comparison",
        description=(
            "Show rates per 1M tokens for MODELs (or list every known model when none is\n"
            "given), or compare what a day of traffic costs on several models. Prices come\n"
            "from the bundled data plus the overrides file (--prices or LLMMETER_PRICES)."
        ),
        epilog=_PRICES_EPILOG,
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
        type=parse_tokens,
        metavar="TOKENS",
        help="output tokens per day for --compare (default: none)",
    )
    prices.add_argument(
        "--cached-share",
        type=_parse_share,
        metavar="SHARE",
        help="fraction of the input tokens that are cached, 0 to 1 (default: 0)",
    )
    prices.add_argument("--service-tier", choices=SERVICE_TIERS, help="price at this tier")
    prices.add_argument("--batch", action="store_true", help="price as Batch API calls")
    prices.add_argument(
        "--date",
        type=_parse_date,
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
    _add_policy_parsers(commands)
    return parser


_CHECK_EPILOG = """\
examples:
  llmmeter policy check policy.toml
  llmmeter policy check policy.toml --mode shadow     what LLMMETER_POLICY_MODE=shadow changes
"""

_EXPLAIN_EPILOG = """\
examples:
  llmmeter policy explain policy.toml --model gpt-4o --task classify --prompt "Classify: ..."
  llmmeter policy explain policy.toml --model gpt-4o --prompt-file prompt.txt --key user-42
"""


def _add_policy_parsers(commands: Any) -> None:
    """``llmmeter policy check`` and ``llmmeter policy explain``."""
    policy = commands.add_parser(
        "policy",
        help="check a routing policy file, or explain its decision for a call",
        description="Check a routing policy file, or explain what it decides for a call.",
    )
    subcommands = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    mode_help = (
        "override the file's mode and every rule's (a rule set to off stays off), as "
        "LLMMETER_POLICY_MODE does; the variable itself is not read here"
    )
    check = subcommands.add_parser(
        "check",
        help="validate a policy file and show its rules",
        description=(
            "Validate a policy file exactly as instrument() does and show what is in force:\n"
            "mode, fallback, deployments and the rules in order. An invalid file gives one\n"
            "error line naming the key, and exit code 2."
        ),
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the TOML policy file")
    check.add_argument("--mode", choices=MODES, help=mode_help)
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(handler=_policy_check, prog=check.prog)

    explain = subcommands.add_parser(
        "explain",
        help="show which rule decides a call, where it goes and what that saves",
        description=(
            "Build the call the options describe, the way the instrumentation sees a request,\n"
            "run the policy's rules on it and show each rule's verdict, the decision, and the\n"
            "estimated cost per call at the requested model and at the target (prices from\n"
            "the bundled data plus --prices or LLMMETER_PRICES)."
        ),
        epilog=_EXPLAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("file", metavar="FILE", help="the TOML policy file")
    explain.add_argument("--model", required=True, help="the model the call asks for")
    prompt = explain.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="the user prompt")
    prompt.add_argument(
        "--prompt-file", metavar="PATH", help="read the user prompt from a file ('-': stdin)"
    )
    explain.add_argument("--task", help="the llmmeter.task label the call runs under")
    explain.add_argument(
        "--key", help="the stickiness key (llmmeter.task key, prompt_cache_key or user)"
    )
    explain.add_argument(
        "--api", choices=APIS, default="chat_completions", help="default: chat_completions"
    )
    explain.add_argument(
        "--system", metavar="TEXT", help="a system message (instructions for responses)"
    )
    explain.add_argument("--tools", action="store_true", help="the call offers a tool")
    explain.add_argument("--images", action="store_true", help="the call has an image input")
    explain.add_argument(
        "--response-format", action="store_true", help="the call asks for JSON output"
    )
    explain.add_argument(
        "--max-output-tokens",
        type=parse_tokens,
        metavar="N",
        help="the call's cap on output tokens (default: none)",
    )
    explain.add_argument(
        "--output-tokens",
        type=parse_tokens,
        default=DEFAULT_OUTPUT_TOKENS,
        metavar="N",
        help=f"output tokens per call for the cost estimate (default: {DEFAULT_OUTPUT_TOKENS})",
    )
    explain.add_argument("--mode", choices=MODES, help=mode_help)
    explain.add_argument(
        "--date",
        type=_parse_date,
        metavar="YYYY-MM-DD",
        help="price as on this day, UTC (default: today)",
    )
    explain.add_argument(
        "--prices", metavar="FILE", help="TOML price overrides file (default: $LLMMETER_PRICES)"
    )
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(handler=_policy_explain, prog=explain.prog)


def _prices(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter prices``: validate the combination of options, then run one of three modes."""
    models: list[str] = args.models
    traffic_options = {
        "--daily-input": args.daily_input,
        "--daily-output": args.daily_output,
        "--cached-share": args.cached_share,
    }
    if args.list and models:
        raise _UsageError("--list takes no MODEL; give either --list or model names")
    if args.list and args.compare:
        raise _UsageError("--list and --compare cannot be combined")
    if args.compare:
        if len(models) < 2:
            raise _UsageError(f"--compare needs at least two models; got {len(models)}")
        if args.daily_input is None:
            raise _UsageError("--compare needs --daily-input (input tokens per day, e.g. 10M)")
    else:
        given = [name for name, value in traffic_options.items() if value is not None]
        if given:
            raise _UsageError(f"{given[0]} only applies with --compare")
    try:
        settings = resolve_settings(prices=args.prices)
        table = PriceTable.load(settings.prices_path)
    except ConfigError as exc:
        raise _UsageError(str(exc)) from None
    day: date = args.date or datetime.now(UTC).date()
    query = _Query(table=table, day=day, service_tier=args.service_tier, batch=args.batch)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``llmmeter`` command and return its exit code (0 ok, 1 unpriced, 2 usage).

    Mistakes are one ``llmmeter: error:`` line on stderr, never a traceback or usage dump, so
    scripts can show them as they are.
    """
    parser = _build_parser()
    try:
        try:
            args, extras = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help and --version print, then exit through argparse
            return exc.code if isinstance(exc.code, int) else 0
        # argparse stops filling MODEL at the first option; later bare words are models too.
        takes_models = hasattr(args, "models")
        unknown = [arg for arg in extras if arg.startswith("-") or not takes_models]
        if unknown:
            raise _UsageError(
                f"unrecognized arguments: {' '.join(unknown)} (see '{args.prog} --help')"
            )
        if takes_models:
            args.models = [*args.models, *extras]
        code: int = args.handler(args, print)
    except _UsageError as exc:
        message = " ".join(str(exc).split())
        print(f"llmmeter: error: {message}", file=sys.stderr)
        return 2
    return code


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s code."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`llmmeter prices --list | head`): not an error of ours.
        # Point stdout at devnull so the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
