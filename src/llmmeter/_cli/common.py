"""What every ``llmmeter`` command shares: output, mistakes, option types, money and tables.

A command writes its lines through a :data:`Writer` and reports a bad command line or
configuration by raising :class:`UsageError`, which the parser root prints as one line (exit
code 2). The option types (token amounts, numbers in a range, dates) and the money formats
live here (tables: ``table``) so that every command reads and shows them the same way; so does
:class:`Query`, the price conditions that ``prices`` and ``policy explain`` both price at.
The command modules import this one; it imports none of them.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Final, NoReturn

from llmmeter._pricing import PriceTable, Rates
from llmmeter._providers import OPENAI, Provider

_TOKEN_SUFFIXES: Final = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
_TOKEN_AMOUNT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([kKMB]?)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_TOKENS: Final = 10**15
"""Tokens an option may give at most: a thousand times a large provider's daily traffic."""
_USD_DIGITS: Final = 800
"""Decimal digits for formatting money: room for any finite float, 1e308 or 5e-324."""

Writer = Callable[[str], None]
Handler = Callable[[argparse.Namespace, Writer], int]
"""What runs a command: its parsed arguments and where its output goes; returns the code."""


class UsageError(Exception):
    """A bad command line or configuration; ``app.main`` prints it as one line, returns 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a mistake as one line instead of a usage dump and an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- argument types ----------------------------------------------------------------------


def parse_tokens(text: str) -> int:
    """``10M``, ``2.5M``, ``300k``, ``1B`` or ``1_000_000`` as a positive whole token count,
    at most :data:`MAX_TOKENS`: beyond that no price or total means anything."""
    return _tokens(text, zero=False)


def parse_tokens_or_zero(text: str) -> int:
    """As :func:`parse_tokens`, and ``0`` too: no output tokens is a real amount of traffic
    (embeddings, a classifier that answers with a logit bias)."""
    return _tokens(text, zero=True)


def _tokens(text: str, *, zero: bool) -> int:
    match = _TOKEN_AMOUNT.match(text.strip().replace("_", ""))
    try:
        amount = Decimal(match[1]) * _TOKEN_SUFFIXES[match[2]] if match else Decimal(-1)
    except ArithmeticError:  # more digits than Decimal's context holds
        amount = Decimal(MAX_TOKENS + 1)
    if amount < (0 if zero else 1) or amount != amount.to_integral_value():
        what = "whole number of tokens, 0 or more," if zero else "positive whole number of tokens"
        raise argparse.ArgumentTypeError(
            f"expected a {what} such as 300k, 2.5M, 10M or 1B; got {text!r}"
        )
    if amount > MAX_TOKENS:
        raise argparse.ArgumentTypeError(f"expected at most 1000000B tokens (10^15); got {text!r}")
    return int(amount)


def parse_number(text: str, expected: str, accept: Callable[[float], bool]) -> float:
    """An option's number, or argparse's error saying what was ``expected``: text that is no
    number is NaN, which ``accept`` must refuse (so write it as a range check)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return value


def parse_share(text: str) -> float:
    return parse_number(text, "a number from 0 to 1", lambda value: 0.0 <= value <= 1.0)


def parse_date(text: str) -> date:
    try:
        if _DATE.match(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD; got {text!r}")


USAGE_CODE: Final = (2, "bad arguments or input: one 'llmmeter: error:' line on stderr")
INTERRUPTED_CODE: Final = (130, "interrupted (Ctrl-C)")


def exit_codes(*codes: tuple[int, str]) -> str:
    """The ``exit codes:`` paragraph that ends every command's ``--help``: each code and what
    it means, then the usage error and Ctrl-C, which every command shares."""
    lines = ["exit codes:"]
    for code, meaning in (*codes, USAGE_CODE, INTERRUPTED_CODE):
        first, *more = meaning.split("\n")
        lines += [f"  {code:<4} {first}", *(f"       {line}" for line in more)]
    return "\n".join(lines) + "\n"


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on (newlines, escapes) written as
    its Python escape: what a file says, shown on one line and as it is."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


# --- number formatting -------------------------------------------------------------------


def _usd(value: float, decimals: int) -> str:
    """``$`` with at least ``decimals`` places, more below $1 so 3 significant digits show.

    Rounds half up from 12 significant digits, clear of float noise: $2.475 shows as $2.48, not
    as the $2.47 that 2.4749999999999996 would give.
    """
    if not math.isfinite(value):
        return "n/a"
    if 0 < value < 1:
        decimals = max(decimals, 2 - math.floor(math.log10(value)))
    with localcontext(prec=_USD_DIGITS):  # the default 28 digits fail past $10^25
        exact = Decimal(f"{value:.12g}").quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
    whole, _, fraction = f"{exact:,f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def format_rate(per_million: float) -> str:
    """A rate per 1M tokens: ``$2.50``, ``$0.075``, ``$10.00`` (up to 4 decimals)."""
    return _usd(per_million, 4)


def plural(count: int, noun: str) -> str:
    """``1 rule``, ``2 rules``: the count with its noun, for the subcommands' summaries."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_cost(usd: float) -> str:
    """A cost: ``$45.00``, ``$1,350.00``; below $1 with enough decimals never to read $0.00."""
    return _usd(usd, 2)


# --- shared plumbing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """The price conditions every mode shares: which day, tier and batch flag, and whose
    list price (OpenAI's unless ``--provider`` or ``--base-url`` says otherwise)."""

    table: PriceTable
    day: date
    service_tier: str | None
    batch: bool
    provider: Provider = OPENAI

    @property
    def when(self) -> float:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC).timestamp()

    def rates(self, name: str) -> Rates | None:
        return self.table.rates(
            name,
            provider=self.provider.prices,
            service_tier=self.service_tier,
            batch=self.batch,
            when=self.when,
        )

    def describe(self) -> str:
        tier = "standard tier" if self.service_tier is None else f"{self.service_tier} tier"
        text = f"{self.day.isoformat()}, {tier}{', batch' if self.batch else ''}"
        return text if self.provider is OPENAI else f"{text}, {self._whose()}"

    def _whose(self) -> str:
        if self.provider.local:
            return "a local server"
        return f"provider {self.provider.name} ({self.provider.prices} in the price data)"

    def header(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "date": self.day.isoformat(),
            "service_tier": self.service_tier,
            "batch": self.batch,
            "currency": "USD",
        }
        if self.provider is not OPENAI:
            header["provider"] = self.provider.name
            header["price_data_provider"] = self.provider.prices
            header["local"] = self.provider.local
        return header

    def unpriced(self, name: str) -> str:
        """Why ``name`` has no row of numbers, with the nearest known id as a hint."""
        provider = self.provider.prices
        if self.table.knows(name, provider):
            return "no per-token price known"
        if self.provider.local:
            return "no list price (a local server: a prices file can give it a rate)"
        close = difflib.get_close_matches(name, self.table.model_ids(provider), n=1)
        return "no price known" + (f" (did you mean {close[0]}?)" if close else "")
