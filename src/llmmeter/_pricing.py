"""Prices: the genai-prices data behind our own layer, user overrides, and the arithmetic.

genai-prices' own ``calc_price`` costs tens of microseconds a call; we resolve a model name
once per provider, cache its rates per (provider, model, service tier, batch, UTC day), and
multiply ourselves, so a priced call adds about a microsecond. The provider is the price
data's id for the one behind the client's base URL (``_providers.py``): Groq's
``llama-3.3-70b-versatile`` is priced at Groq's list price, OpenAI's models at OpenAI's.
Rates are USD per token as floats: a double carries ~15 significant digits, far finer than
any bill (see docs/pricing.md).

The data (genai-prices imports pydantic: 35-200 ms) is imported by neither ``import llmmeter``
nor ``instrument()``: :class:`_DataLoader` loads it once per process, at the first lookup (the
first priced call, or ``llmmeter.price()``).

Arithmetic, as OpenAI bills: ``input_tokens`` includes cached input, cache writes, audio and
image tokens, each charged at its own rate where the data has one and at the input rate
otherwise; ``output_tokens`` includes reasoning (charged as output), audio and image tokens
likewise. Tiered rates are cliffs on the call's input tokens, as in the data.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from ._configfile import load_toml
from ._usage import Usage
from .exceptions import ConfigError

logger = logging.getLogger("llmmeter")

Rate = float | tuple[tuple[int, float], ...]
"""USD per token; or cliff tiers ``((0, base), (threshold, rate), ...)`` on input tokens."""

OVERRIDE_REF: Final = "override"
UNKNOWN_REF: Final = "unknown"
LOCAL_REF: Final = "local"
"""A local server's call that no price covers: not an unknown price, so not counted as one."""
OPENAI: Final = "openai"
"""The price data's id for OpenAI: the provider of every lookup that names none."""

# Our rate fields and the genai-prices price keys they come from (USD per 1M tokens there).
_PRICE_KEYS: Final = {
    "input": "input_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "output": "output_mtok",
    "input_audio": "input_audio_mtok",
    "output_audio": "output_audio_mtok",
    "input_image": "input_image_mtok",
    "output_image": "output_image_mtok",
}
_MAX_NAMES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Rates:
    """What one model costs, resolved for one tier, batch flag and day. USD per token."""

    model: str
    """The model the rates belong to (the data's id, or the override's key)."""
    ref: str
    """Where the rates came from: ``genai-prices <version>`` or ``override``."""
    input: Rate
    output: Rate
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    input_audio: Rate | None = None
    output_audio: Rate | None = None
    input_image: Rate | None = None
    output_image: Rate | None = None

    def per_million(self, name: str) -> float | None:
        """A rate in USD per 1M tokens (the base rate of a tiered one), for display."""
        value: Rate | None = getattr(self, name)
        if value is None:
            return None
        base = value[0][1] if isinstance(value, tuple) else value
        return round(base * 1_000_000, 10)


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of one usage, in USD."""

    input: float
    output: float
    model: str
    ref: str
    currency: str = "USD"

    @property
    def total(self) -> float:
        return self.input + self.output


def _at(rate: Rate | None, fallback: Rate, input_tokens: int) -> float:
    chosen = fallback if rate is None else rate
    if isinstance(chosen, float):
        return chosen
    per_token = chosen[0][1]
    for threshold, value in chosen[1:]:
        if input_tokens > threshold:
            per_token = value
    return per_token


def compute_cost(rates: Rates, usage: Usage) -> Cost:
    """The cost of ``usage`` at ``rates``; parts without their own rate use the parent's.

    Parts with no tokens are skipped rather than priced at zero: adding ``0.0`` is exact, so
    the sum is the same, and most calls have no cached, audio or image tokens.
    """
    n_in = usage.input_tokens or 0
    cached = usage.cache_read_tokens or 0
    written = usage.cache_creation_tokens or 0
    audio_in = usage.input_audio_tokens or 0
    image_in = usage.input_image_tokens or 0
    base = rates.input
    per_token = base if type(base) is float else _at(base, base, n_in)
    input_cost = max(0, n_in - cached - written - audio_in - image_in) * per_token
    if cached:
        input_cost += cached * _at(rates.cached_input, base, n_in)
    if written:
        input_cost += written * _at(rates.cache_write, base, n_in)
    if audio_in:
        input_cost += audio_in * _at(rates.input_audio, base, n_in)
    if image_in:
        input_cost += image_in * _at(rates.input_image, base, n_in)
    n_out = usage.output_tokens or 0
    audio_out = usage.output_audio_tokens or 0
    image_out = usage.output_image_tokens or 0
    out = rates.output
    per_token = out if type(out) is float else _at(out, out, n_in)
    output_cost = max(0, n_out - audio_out - image_out) * per_token
    if audio_out:
        output_cost += audio_out * _at(rates.output_audio, out, n_in)
    if image_out:
        output_cost += image_out * _at(rates.output_image, out, n_in)
    return Cost(input=input_cost, output=output_cost, model=rates.model, ref=rates.ref)


# --- the genai-prices data -------------------------------------------------------------


def _per_token(value: Any) -> Rate | None:
    """A genai-prices price (Decimal per 1M, or TieredPrices) as our per-token rate."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value) / 1_000_000
    base = getattr(value, "base", None)
    tiers = getattr(value, "tiers", None)
    if isinstance(base, Decimal) and isinstance(tiers, list):
        steps = tuple((int(t.start), float(t.price) / 1_000_000) for t in tiers)
        return ((0, float(base) / 1_000_000), *steps)
    return None  # a price kind we do not use (per request, per hour of audio, ...)


class _Data:
    """The bundled genai-prices snapshot, by provider (importing it takes 35-200 ms)."""

    available = True

    def __init__(self) -> None:
        import genai_prices
        from genai_prices import data_snapshot

        self.version = f"genai-prices {genai_prices.__version__}"
        snapshot = data_snapshot.get_snapshot()
        self._providers = snapshot.providers
        self._by_id = {p.id: p for p in snapshot.providers}

    def find(self, name: str, provider: str = OPENAI) -> Any | None:
        """The data's model for ``name`` in ``provider``'s own list (and the lists it falls
        back to, as the data says: Azure's to OpenAI's), or None."""
        listed = self._by_id.get(provider)
        if listed is None:
            return None
        return listed.find_model(name.lower(), all_providers=self._providers)

    def model_ids(self, provider: str = OPENAI) -> list[str]:
        listed = self._by_id.get(provider)
        return sorted(m.id for m in listed.models) if listed is not None else []

    def provider_ids(self) -> list[str]:
        return sorted(self._by_id)

    def rates(self, model: Any, tier: str | None, batch: bool, when: datetime) -> Rates | None:
        context: dict[str, str] = {}
        if tier is not None:
            context["service_tier"] = tier
        if batch:
            context["processing"] = "batch"
        prices = model.get_prices(when, context or None)
        values = {name: _per_token(getattr(prices, key, None)) for name, key in _PRICE_KEYS.items()}
        if values["input"] is None and values["output"] is None:
            return None  # priced per hour or per request only: not tokens
        return Rates(
            model=model.id,
            ref=self.version,
            input=values.pop("input") or 0.0,
            output=values.pop("output") or 0.0,
            **values,
        )


class _NoData(_Data):
    """Stands in for data that failed to load: only overrides price anything."""

    available = False

    def __init__(self) -> None:
        self.version = "genai-prices unavailable"

    def find(self, name: str, provider: str = OPENAI) -> Any | None:
        return None

    def model_ids(self, provider: str = OPENAI) -> list[str]:
        return []

    def provider_ids(self) -> list[str]:
        return []

    def rates(self, model: Any, tier: str | None, batch: bool, when: datetime) -> Rates | None:
        return None


class _DataLoader:
    """The bundled data, loaded once per process, by the first lookup that needs it.

    Not in a background thread, although that would hide the import: a module being imported
    is in ``sys.modules`` before it is complete, and code that peeks there instead of importing
    then sees it half-built (openai 2.x looks ``httpx2`` up that way when building a client or
    a request, and genai-prices imports ``httpx2``: calls failed with AttributeError while
    such a thread ran). Concurrent first lookups wait for one load under the lock. Loading
    never raises into a call or into ``instrument()``: when it fails, nothing is priced from
    the data (overrides still are) and one warning says so.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: _Data | None = None

    def get(self) -> _Data:
        """The data, loaded on first use."""
        data = self._data
        if data is not None:
            return data
        with self._lock:
            data = self._data
            if data is None:
                try:
                    data = _Data()
                except Exception:  # a broken install must not break calls or instrument()
                    logger.warning(
                        "llmmeter: cannot load the genai-prices data; calls are priced only "
                        "from a prices file (LLMMETER_PRICES)",
                        exc_info=True,
                    )
                    data = _NoData()
                self._data = data
            return data


_LOADER: Final = _DataLoader()


def _known_to_data(name: str) -> bool:
    """An alias target the data prices; any name when the data is unavailable (warned)."""
    data = _LOADER.get()
    return not data.available or data.find(name) is not None


# --- user overrides --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overrides:
    """Rates and aliases from the user's TOML file; they win over the data."""

    path: str
    models: tuple[tuple[str, Rates], ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()

    def rates_for(self, name: str) -> Rates | None:
        for pattern, rates in self.models:
            if name == pattern or ("*" in pattern and fnmatch.fnmatchcase(name, pattern)):
                return rates
        return None

    def alias_for(self, name: str) -> str | None:
        for pattern, target in self.aliases:
            if name == pattern or ("*" in pattern and fnmatch.fnmatchcase(name, pattern)):
                return target
        return None


_RATE_NAMES: Final = tuple(_PRICE_KEYS)
_UNSEEN: Final = object()
MAX_RATE: Final = 1_000_000
"""USD per 1M tokens an override may set at most ($1 a token): thousands of times any real
price, and far enough from float's limits that no cost of a real call overflows."""
_KEY = re.compile(r"^[A-Za-z0-9_.:/*@\-]+$")


def load_overrides(path: str | Path, *, known_model: Any = None) -> Overrides:
    """Read and validate an overrides file; :class:`ConfigError` names file, key, expected, got.

    Format (rates in USD per 1M tokens)::

        [models."gpt-4o"]
        input = 2.5
        cached_input = 1.25
        output = 10.0

        [models."ft:gpt-4o-mini:acme:*"]     # globs with * match model names
        input = 0.3
        output = 1.2

        [aliases]
        "prod-gpt4o" = "gpt-4o"                # Azure deployment -> model
    """
    where = str(path)
    data, _ = load_toml(where, "prices file")  # a regular file of at most 1 MiB
    for key in data:
        if key not in ("models", "aliases"):
            raise ConfigError(
                f"{where}: key {key!r}: expected only [models] and [aliases] tables; got {key!r}"
            )
    models_table = data.get("models", {})
    if not isinstance(models_table, dict):
        raise ConfigError(f"{where}: key 'models': expected a table; got {models_table!r}")
    models: list[tuple[str, Rates]] = []
    for name, table in models_table.items():
        models.append((name, _parse_rates(where, name, table)))
    aliases_table = data.get("aliases", {})
    if not isinstance(aliases_table, dict):
        raise ConfigError(f"{where}: key 'aliases': expected a table; got {aliases_table!r}")
    priced = {name for name, _ in models}
    aliases: list[tuple[str, str]] = []
    for name, target in aliases_table.items():
        key = f"aliases.{name!r}"
        if not _KEY.match(name):
            raise ConfigError(f"{where}: key {key}: expected a model or deployment name")
        if not isinstance(target, str) or not target:
            raise ConfigError(f"{where}: key {key}: expected a model name string; got {target!r}")
        if target not in priced and (known_model is None or not known_model(target)):
            raise ConfigError(
                f"{where}: key {key}: expected a model with a price (in [models] or in the "
                f"price data); got {target!r}, which has none"
            )
        aliases.append((name, target))
    return Overrides(path=where, models=tuple(models), aliases=tuple(aliases))


def _parse_rates(where: str, name: str, table: Any) -> Rates:
    key = f"models.{name!r}"
    if not _KEY.match(name):
        raise ConfigError(f"{where}: key {key}: expected a model name (letters, digits, -_.:/*@)")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: key {key}: expected a table of rates; got {table!r}")
    values: dict[str, float] = {}
    for field_name, value in table.items():
        if field_name not in _RATE_NAMES:
            raise ConfigError(
                f"{where}: key {key}.{field_name}: expected one of {', '.join(_RATE_NAMES)}; "
                f"got {field_name!r}"
            )
        rate = math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                rate = float(value)
            except OverflowError:  # an integer beyond any float
                rate = math.inf
        if not 0 <= rate <= MAX_RATE:  # NaN fails too
            raise ConfigError(
                f"{where}: key {key}.{field_name}: expected a non-negative number up to "
                f"{MAX_RATE:,} (USD per 1M tokens); got {value!r}"
            )
        values[field_name] = rate / 1_000_000
    for required in ("input", "output"):
        if required not in values:
            raise ConfigError(
                f"{where}: key {key}: expected an {required!r} rate (USD per 1M tokens); got none"
            )
    return Rates(model=name, ref=OVERRIDE_REF, **values)


# --- the table the instrumentation asks ------------------------------------------------


class PriceTable:
    """Resolves a model name once per provider and caches its rates per (provider, model,
    tier, batch, UTC day). Overrides apply whatever the provider."""

    @classmethod
    def load(cls, overrides_path: str | None = None) -> PriceTable:
        """The bundled data plus a validated overrides file (ConfigError if it is invalid).

        The data loads at the first lookup; validating an overrides file loads it now only
        when an alias points outside the file's ``[models]``.
        """
        table = cls()
        if overrides_path is not None:
            table.overrides = load_overrides(overrides_path, known_model=_known_to_data)
        return table

    def __init__(self, overrides: Overrides | None = None) -> None:
        self.overrides = overrides
        self._models: dict[tuple[str, str], tuple[Any, Rates | None] | None] = {}
        self._rates: dict[tuple[str, str, str | None, bool, int], Rates | None] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def _data(self) -> _Data:
        return _LOADER.get()

    @property
    def data_ref(self) -> str:
        return self._data.version

    def knows(self, name: str, provider: str = OPENAI) -> bool:
        return self._resolve(name, provider) is not None

    def model_ids(self, provider: str = OPENAI) -> list[str]:
        return self._data.model_ids(provider)

    def provider_ids(self) -> list[str]:
        """The price data's provider ids."""
        return self._data.provider_ids()

    def _resolve(self, name: str, provider: str = OPENAI) -> tuple[Any, Rates | None] | None:
        """(data model or None, override rates or None), or None when nothing prices it."""
        try:
            return self._models[provider, name]
        except KeyError:
            pass
        found: tuple[Any, Rates | None] | None = None
        overrides = self.overrides
        if overrides is not None:
            rates = overrides.rates_for(name)
            if rates is not None:
                found = (None, rates)
            else:
                target = overrides.alias_for(name)
                if target is not None:
                    found = self._resolve(target, provider)
        if found is None:
            model = self._data.find(name, provider)
            if model is not None:
                found = (model, None)
        if len(self._models) < _MAX_NAMES:
            self._models[provider, name] = found
        return found

    def rates(
        self,
        name: str,
        *,
        provider: str = OPENAI,
        service_tier: str | None = None,
        batch: bool = False,
        when: float | None = None,
    ) -> Rates | None:
        """Rates for ``name`` at ``provider`` (the price data's id) at epoch seconds ``when``
        (default now), or None if unpriced."""
        day = int((time.time() if when is None else when) // 86400)
        key = (provider, name, service_tier, batch, day)
        try:
            return self._rates[key]
        except KeyError:
            pass
        resolved = self._resolve(name, provider)
        rates: Rates | None = None
        if resolved is not None:
            model, override = resolved
            if override is not None:
                rates = override
            else:
                moment = datetime.fromtimestamp(day * 86400 + 43200, tz=UTC)
                rates = self._data.rates(model, service_tier, batch, moment)
        if len(self._rates) >= _MAX_NAMES:
            # Keys carry the day, so old entries go stale: start over rather than stop caching.
            self._rates.clear()
        self._rates[key] = rates
        return rates

    def price(
        self,
        usage: Usage,
        models: tuple[str | None, ...],
        *,
        provider: str = OPENAI,
        service_tier: str | None = None,
        batch: bool = False,
        when: float | None = None,
    ) -> Cost | None:
        """Price by the first model that has rates (response model, then request model) at
        ``provider``'s list price (the price data's id)."""
        if when is None:
            when = time.time()  # once per call, whichever model ends up priced
        day = int(when // 86400)
        known = self._rates
        for name in models:
            if name:
                # rates()' own cache, without the call (one get: another thread may clear it)
                rates: object = known.get((provider, name, service_tier, batch, day), _UNSEEN)
                if rates is _UNSEEN:
                    rates = self.rates(
                        name, provider=provider, service_tier=service_tier, batch=batch, when=when
                    )
                if isinstance(rates, Rates):
                    return compute_cost(rates, usage)
        return None

    def warn_unpriced(self, name: str, provider: str = OPENAI) -> None:
        """One warning per unpriced model name and provider (bounded); none when the data
        failed to load."""
        if not self._data.available:
            return  # the loader has said once that nothing is priced from the data
        key = name if provider == OPENAI else f"{provider}/{name}"
        with self._lock:
            if key in self._warned or len(self._warned) >= _MAX_NAMES:
                return
            self._warned.add(key)
        logger.warning(
            "llmmeter: no price for model %r%s; its calls carry no cost (llmmeter.price.ref="
            "'unknown'). Add it to a prices file (LLMMETER_PRICES) to price it.",
            name,
            "" if provider == OPENAI else f" at provider {provider!r}",
        )


def usage_from(value: Any) -> Usage:
    """Accept our Usage, an SDK usage object, or a dict of usage fields."""
    from ._usage import read_usage

    if isinstance(value, Usage):
        return value
    if isinstance(value, Mapping) and not any(
        k in value for k in ("input_tokens", "prompt_tokens")
    ):
        raise TypeError(
            "llmmeter.price: expected usage with input_tokens or prompt_tokens; got "
            f"{dict(value)!r}"
        )
    usage = read_usage(dict(value) if isinstance(value, Mapping) else value)
    if usage is None:
        raise TypeError(f"llmmeter.price: expected a usage object; got {value!r}")
    return usage
