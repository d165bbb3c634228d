"""Settings for one instrumentation, resolved once at ``instrument()``.

Precedence is argument, then environment variable, then default. Every environment variable
llmmeter reads is declared here with its values and default; invalid values raise
:class:`~llmmeter.ConfigError` at ``instrument()`` time, never mid-request.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ._attribution import DEFAULT_LIMIT as DEFAULT_ATTRIBUTION_LIMIT
from ._attribution import key_problem
from ._bootstrap import DEFAULT_EXIT_TIMEOUT
from ._content import Redactor
from ._evaluation import DEFAULT_CONCURRENCY, DEFAULT_QUEUE_SIZE
from ._evaluation import DEFAULT_TIMEOUT as DEFAULT_EVALUATION_TIMEOUT
from ._semconv import SEMCONV_LATEST
from .exceptions import ConfigError

if TYPE_CHECKING:
    from ._prometheus import PrometheusURL

logger = logging.getLogger("llmmeter")

# The spend guard's defaults live here, with the settings that override them: the poller
# (``_spend``, ``_prometheus``) is imported only by a process whose policy has a spend guard.
DEFAULT_SPEND_QUERY: Final = "sum(increase(llmmeter_cost_usd_total[24h]))"
"""The fleet's spend in USD over the last 24 hours, every service and model together."""
DEFAULT_SPEND_POLL_INTERVAL: Final = 30.0
DEFAULT_SPEND_TIMEOUT: Final = 5.0

OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: Final = (
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
)
"""Record prompts and completions; shared by every GenAI instrumentation in the process, so
llmmeter takes every value the GenAI utilities define and does what each means:
``SPAN_ONLY`` (or ``true``, ``1``, ``yes``, ``on``) on spans; ``EVENT_ONLY`` as a
``gen_ai.client.inference.operation.details`` event (the OpenTelemetry logs API); ``SPAN_AND_EVENT``
both; ``NO_CONTENT`` (or ``false``, ``0``, ``no``, ``off``) neither. Any other value is logged
once and records nothing: another instrumentation may know it. Default: ``NO_CONTENT``."""

OTEL_SEMCONV_STABILITY_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
"""A comma-separated list, shared with every OpenTelemetry instrumentation in the process; of
its values llmmeter reads one, ``gen_ai_latest_experimental``: the newest GenAI metric names
(``gen_ai.client.inference.*``, ``gen_ai.client.embeddings.*``), the span's
``gen_ai.usage.cache_write.input_tokens`` and the proposed cost histogram instead of the names
of the default set (docs/telemetry.md). Other values are another instrumentation's and
ignored. Read once, at ``instrument()``. Default: the default set."""

LLMMETER_CONTENT_MAX_LENGTH: Final = "LLMMETER_CONTENT_MAX_LENGTH"
"""Longest content attribute, in characters, when content capture is on; longer JSON is cut and
ends with ``...[truncated]``. A positive integer. Default: ``16384``."""

LLMMETER_INJECT_STREAM_USAGE: Final = "LLMMETER_INJECT_STREAM_USAGE"
"""Ask streaming chat/completions requests for usage (``stream_options.include_usage``) when the
user did not, and hide the extra chunk. ``auto``: only where the server is OpenAI's or Azure
OpenAI's own API, which sends that chunk only when asked (elsewhere the request goes as written
and usage is taken when the server reports it unasked); ``true`` (``always``): on every server;
``false`` (``never``). Default: ``auto``."""

LLMMETER_EXIT_TIMEOUT: Final = "LLMMETER_EXIT_TIMEOUT"
"""Seconds that exporting what is still queued may hold the interpreter's exit, in all, when
llmmeter built the providers itself (nothing configured): an unreachable or hanging collector
then adds at most this to exit; a reachable one answers well within it. A number, 0 or more.
Default: ``2``."""

LLMMETER_OTHER_INSTRUMENTATIONS: Final = "LLMMETER_OTHER_INSTRUMENTATIONS"
"""What llmmeter does about other OpenAI instrumentations in the process (openai-v2,
genai-openai, OpenLLMetry, OpenInference, OpenLIT, Logfire): ``suppress`` keeps llmmeter's
span and metrics as the call's one set and tells the others to record nothing where they
listen (the ones that cannot be told are named once in the log, with their off switch);
``keep`` leaves them alone, and both record. Default: ``suppress``."""

LLMMETER_STRICT: Final = "LLMMETER_STRICT"
"""Re-raise llmmeter's own internal errors instead of logging them; for llmmeter's test suite
and for users' CI. Never set it in production. ``true``/``false``. Default: ``false``."""

LLMMETER_PRICES: Final = "LLMMETER_PRICES"
"""Path of a TOML prices file whose rates and aliases win over the bundled data (see
docs/pricing.md), validated at ``instrument()``: an alias that points outside the file's
``[models]`` is checked against the data, which then loads there. Default: none."""

LLMMETER_POLICY: Final = "LLMMETER_POLICY"
"""Path of a TOML routing policy file (see docs/policy.md); the ``policy`` argument of
``instrument()`` wins. Default: none (no routing)."""

LLMMETER_POLICY_MODE: Final = "LLMMETER_POLICY_MODE"
"""``enforce``, ``shadow`` or ``off``: overrides the policy file's mode and every rule's (except
rules whose own mode is ``off``: they stay off), so an operator can switch routing to shadow or
off without editing the file. Default: the file's."""

LLMMETER_PROMETHEUS_URL: Final = "LLMMETER_PROMETHEUS_URL"
"""Base URL of the Prometheus HTTP API that scrapes the fleet's ``llmmeter_cost_usd_total``
(``http://prometheus:9090``), read by the spend guard of rules with ``when_spend_over``; a
policy with such a rule is refused without it. ``user:password@`` in the URL is sent as basic
auth and never logged. Default: none."""

LLMMETER_SPEND_QUERY: Final = "LLMMETER_SPEND_QUERY"
"""The PromQL query whose single number is the fleet's 24 h spend in USD, for a Prometheus
that renames metrics or to select services (``service_name``). An empty result is 0.
Default: ``sum(increase(llmmeter_cost_usd_total[24h]))``."""

LLMMETER_SPEND_POLL_INTERVAL: Final = "LLMMETER_SPEND_POLL_INTERVAL"
"""Seconds between two reads of the fleet's spend; a figure older than three intervals is not
trusted. A positive number. Default: ``30``."""

LLMMETER_SPEND_TIMEOUT: Final = "LLMMETER_SPEND_TIMEOUT"
"""Seconds one read of the fleet's spend may take before it counts as unreachable. A positive
number. Default: ``5``."""

LLMMETER_EVALUATION_CONCURRENCY: Final = "LLMMETER_EVALUATION_CONCURRENCY"
"""Shadow evaluation requests sent at once (one background thread each, started at the first
sampled call). A positive integer. Default: ``2``."""

LLMMETER_EVALUATION_QUEUE_SIZE: Final = "LLMMETER_EVALUATION_QUEUE_SIZE"
"""Sampled calls waiting for evaluation; past it they are dropped and counted. A positive
integer. Default: ``64``."""

LLMMETER_EVALUATION_TIMEOUT: Final = "LLMMETER_EVALUATION_TIMEOUT"
"""Seconds one evaluation request may take (it is never retried). A positive number.
Default: ``60``."""

LLMMETER_METRIC_ATTRIBUTES: Final = "LLMMETER_METRIC_ATTRIBUTES"
"""The ``llmmeter.attribute`` keys that also go on metrics, comma-separated (``tenant,feature``):
each distinct value is a time series, so only bounded keys belong here; the
``metric_attributes`` argument of ``instrument()`` wins. Default: none (spans only)."""

LLMMETER_METRIC_ATTRIBUTES_LIMIT: Final = "LLMMETER_METRIC_ATTRIBUTES_LIMIT"
"""Distinct values one key takes on metrics in one process; later values go on metrics as
``_overflow`` and are counted. A positive integer; the ``metric_attribute_limit`` argument
wins. Default: ``100``."""

POLICY_MODES: Final = ("enforce", "shadow", "off")
INJECT_AUTO: Final = "auto"
INJECT_ALWAYS: Final = "always"
INJECT_NEVER: Final = "never"
INJECT_MODES: Final = (INJECT_AUTO, INJECT_ALWAYS, INJECT_NEVER)
OTHERS_MODES: Final = ("suppress", "keep")

DEFAULT_CONTENT_MAX_LENGTH: Final = 16384

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
CONTENT_MODES: Final = {
    **dict.fromkeys(_TRUE, (True, False)),
    **dict.fromkeys(_FALSE, (False, False)),
    "span_only": (True, False),
    "event_only": (False, True),
    "span_and_event": (True, True),
    "no_content": (False, False),
}
"""``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (lower-cased) to (on spans, as
events)."""
_WARNED: set[str] = set()
"""Unknown values of that variable already logged (once per process)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What one ``instrument()`` call decided; immutable for the life of the instrumentation."""

    capture_content: bool = False
    """Prompts and completions on spans."""
    content_events: bool = False
    """Prompts and completions as ``gen_ai.client.inference.operation.details`` events."""

    @property
    def content_wanted(self) -> bool:
        """Prompts and completions are recorded somewhere (on spans, as events or both)."""
        return self.capture_content or self.content_events

    content_max_length: int = DEFAULT_CONTENT_MAX_LENGTH
    inject_stream_usage: str = INJECT_AUTO
    """``auto``, ``always`` or ``never`` (see :data:`LLMMETER_INJECT_STREAM_USAGE`)."""
    strict: bool = False
    prices_path: str | None = None
    policy_path: str | None = None
    """From ``LLMMETER_POLICY``; a ``policy`` argument to ``instrument()`` wins over it."""
    policy_mode: str | None = None
    redact: Callable[[str], str] | None = None
    """The user's ``redact`` hook, wrapped so that it never raises (see ``_content.Redactor``);
    applied to captured content before truncation."""
    prometheus: PrometheusURL | None = field(default=None, repr=False)
    """From ``LLMMETER_PROMETHEUS_URL``: where the spend guard reads the fleet's spend."""
    spend_query: str = DEFAULT_SPEND_QUERY
    spend_poll_interval: float = DEFAULT_SPEND_POLL_INTERVAL
    spend_timeout: float = DEFAULT_SPEND_TIMEOUT
    evaluation_concurrency: int = DEFAULT_CONCURRENCY
    evaluation_queue_size: int = DEFAULT_QUEUE_SIZE
    evaluation_timeout: float = DEFAULT_EVALUATION_TIMEOUT
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT
    suppress_others: bool = True
    """``LLMMETER_OTHER_INSTRUMENTATIONS=suppress``."""
    latest_semconv: bool = False
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` lists ``gen_ai_latest_experimental``."""
    metric_attributes: tuple[str, ...] = ()
    """The attribution keys that go on metrics (``LLMMETER_METRIC_ATTRIBUTES``)."""
    metric_attribute_limit: int = DEFAULT_ATTRIBUTION_LIMIT


def _env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"environment variable {name}: expected one of true, false, 1, 0, yes, no; got {raw!r}"
    )


def _content_modes(environ: Mapping[str, str], arg: bool | str | None) -> tuple[bool, bool]:
    """(on spans, as events): the argument (a bool, or a GenAI utility value), else the shared
    environment variable, whose unknown values are logged once and record nothing."""
    if arg is not None:
        if isinstance(arg, bool):
            return arg, False
        modes = CONTENT_MODES.get(arg.strip().lower()) if isinstance(arg, str) else None
        if modes is None:
            raise ConfigError(
                "argument capture_content: expected True, False, 'SPAN_ONLY', 'EVENT_ONLY', "
                f"'SPAN_AND_EVENT' or 'NO_CONTENT'; got {arg!r}"
            )
        return modes
    raw = environ.get(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)
    if raw is None:
        return False, False
    modes = CONTENT_MODES.get(raw.strip().lower())
    if modes is None:
        if raw in _WARNED:
            return False, False
        _WARNED.add(raw)
        logger.warning(
            "llmmeter: environment variable %s: %r is none of NO_CONTENT, SPAN_ONLY, "
            "EVENT_ONLY, SPAN_AND_EVENT, true or false; llmmeter records no content",
            OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
            raw,
        )
        return False, False
    return modes


def _inject_mode(environ: Mapping[str, str], arg: bool | str | None) -> str:
    """The stream-usage injection mode: the argument (``True``/``False`` or a mode name), else
    the environment variable, else ``auto``."""
    if arg is not None:
        if arg is True:
            return INJECT_ALWAYS
        if arg is False:
            return INJECT_NEVER
        if isinstance(arg, str) and arg.strip().lower() in INJECT_MODES:
            return arg.strip().lower()
        raise ConfigError(
            "argument inject_stream_usage: expected True, False, 'auto', 'always', 'never' or "
            f"None; got {arg!r}"
        )
    raw = environ.get(LLMMETER_INJECT_STREAM_USAGE)
    if raw is None or not raw.strip():
        return INJECT_AUTO
    value = raw.strip().lower()
    if value in INJECT_MODES:
        return value
    if value in _TRUE:
        return INJECT_ALWAYS
    if value in _FALSE:
        return INJECT_NEVER
    raise ConfigError(
        f"environment variable {LLMMETER_INJECT_STREAM_USAGE}: expected auto, always (or true), "
        f"never (or false); got {raw!r}"
    )


def _env_choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first is the default), case-insensitive."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return choices[0]
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(
            f"environment variable {name}: expected one of {', '.join(choices)}; got {raw!r}"
        )
    return value


def _env_positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"environment variable {name}: expected a positive integer; got {raw!r}")
    return value


def _env_seconds(
    environ: Mapping[str, str], name: str, default: float, *, zero: bool = False
) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not ((value >= 0 if zero else value > 0) and math.isfinite(value)):
        what = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        raise ConfigError(f"environment variable {name}: expected {what}; got {raw!r}")
    return value


def _env_prometheus(environ: Mapping[str, str]) -> PrometheusURL | None:
    raw = environ.get(LLMMETER_PROMETHEUS_URL)
    if raw is None or not raw.strip():
        return None
    from ._prometheus import PrometheusURL  # only a process that polls Prometheus loads it

    try:
        return PrometheusURL.parse(raw)
    except ValueError as exc:  # its text shows the URL with the password masked
        raise ConfigError(
            f"environment variable {LLMMETER_PROMETHEUS_URL}: expected the http(s) base URL "
            f"of Prometheus, such as http://prometheus:9090; {exc}"
        ) from None


def _metric_attributes(environ: Mapping[str, str], arg: object) -> tuple[str, ...]:
    """The attribution keys allowed on metrics: the argument (a sequence of keys, or a
    comma-separated str), else the environment variable; each checked, none twice."""
    if arg is not None:
        where = "argument metric_attributes"
        if isinstance(arg, str):
            raw_keys: list[object] = [part.strip() for part in arg.split(",") if part.strip()]
        elif isinstance(arg, (list, tuple, set, frozenset)):
            raw_keys = list(arg)
        else:
            raise ConfigError(
                f"{where}: expected a list of attribution keys such as ['tenant', 'feature']; "
                f"got {arg!r}"
            )
    else:
        where = f"environment variable {LLMMETER_METRIC_ATTRIBUTES}"
        raw = environ.get(LLMMETER_METRIC_ATTRIBUTES, "")
        raw_keys = [part.strip() for part in raw.split(",") if part.strip()]
    keys: list[str] = []
    for key in raw_keys:
        problem = key_problem(key)
        if problem is not None:
            raise ConfigError(f"{where}: expected {problem}; got {key!r}")
        assert isinstance(key, str)
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _metric_attribute_limit(environ: Mapping[str, str], arg: object) -> int:
    if arg is None:
        return _env_positive_int(
            environ, LLMMETER_METRIC_ATTRIBUTES_LIMIT, DEFAULT_ATTRIBUTION_LIMIT
        )
    if isinstance(arg, bool) or not isinstance(arg, int) or arg <= 0:
        raise ConfigError(
            f"argument metric_attribute_limit: expected a positive integer (distinct values "
            f"per key on metrics); got {arg!r}"
        )
    return arg


def resolve_settings(
    *,
    metric_attributes: object = None,
    metric_attribute_limit: object = None,
    capture_content: bool | str | None = None,
    inject_stream_usage: bool | str | None = None,
    strict: bool | None = None,
    prices: str | os.PathLike[str] | None = None,
    redact: Callable[[str], str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Combine arguments and environment into :class:`Settings`, validating both."""
    env = os.environ if environ is None else environ
    policy_mode = env.get(LLMMETER_POLICY_MODE, "").strip().lower() or None
    if policy_mode is not None and policy_mode not in POLICY_MODES:
        raise ConfigError(
            f"environment variable {LLMMETER_POLICY_MODE}: expected one of "
            f"{', '.join(POLICY_MODES)}; got {env[LLMMETER_POLICY_MODE]!r}"
        )
    if strict is not None and not isinstance(strict, bool):
        raise ConfigError(f"argument strict: expected a bool or None; got {strict!r}")
    if prices is not None and not isinstance(prices, (str, os.PathLike)):
        raise ConfigError(f"argument prices: expected a path to a TOML file; got {prices!r}")
    if redact is not None and not callable(redact):
        raise ConfigError(
            f"argument redact: expected a callable redact(text: str) -> str or None; got {redact!r}"
        )
    prices_path = os.fspath(prices) if prices is not None else env.get(LLMMETER_PRICES) or None
    on_spans, as_events = _content_modes(env, capture_content)
    return Settings(
        prices_path=prices_path,
        policy_path=env.get(LLMMETER_POLICY) or None,
        policy_mode=policy_mode,
        capture_content=on_spans,
        content_events=as_events,
        content_max_length=_env_positive_int(
            env, LLMMETER_CONTENT_MAX_LENGTH, DEFAULT_CONTENT_MAX_LENGTH
        ),
        inject_stream_usage=_inject_mode(env, inject_stream_usage),
        strict=strict if strict is not None else _env_bool(env, LLMMETER_STRICT, False),
        redact=Redactor(redact) if redact is not None else None,
        prometheus=_env_prometheus(env),
        spend_query=env.get(LLMMETER_SPEND_QUERY, "").strip() or DEFAULT_SPEND_QUERY,
        spend_poll_interval=_env_seconds(
            env, LLMMETER_SPEND_POLL_INTERVAL, DEFAULT_SPEND_POLL_INTERVAL
        ),
        spend_timeout=_env_seconds(env, LLMMETER_SPEND_TIMEOUT, DEFAULT_SPEND_TIMEOUT),
        evaluation_concurrency=_env_positive_int(
            env, LLMMETER_EVALUATION_CONCURRENCY, DEFAULT_CONCURRENCY
        ),
        evaluation_queue_size=_env_positive_int(
            env, LLMMETER_EVALUATION_QUEUE_SIZE, DEFAULT_QUEUE_SIZE
        ),
        evaluation_timeout=_env_seconds(
            env, LLMMETER_EVALUATION_TIMEOUT, DEFAULT_EVALUATION_TIMEOUT
        ),
        exit_timeout=_env_seconds(env, LLMMETER_EXIT_TIMEOUT, DEFAULT_EXIT_TIMEOUT, zero=True),
        suppress_others=_env_choice(env, LLMMETER_OTHER_INSTRUMENTATIONS, OTHERS_MODES)
        == "suppress",
        latest_semconv=_opts_in_latest(env),
        metric_attributes=_metric_attributes(env, metric_attributes),
        metric_attribute_limit=_metric_attribute_limit(env, metric_attribute_limit),
    )


def _opts_in_latest(environ: Mapping[str, str]) -> bool:
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` lists the newest GenAI conventions (its other values,
    such as ``http``, belong to other instrumentations)."""
    raw = environ.get(OTEL_SEMCONV_STABILITY_OPT_IN, "")
    return SEMCONV_LATEST in {value.strip().lower() for value in raw.split(",")}
