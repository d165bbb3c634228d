"""The three functions of llmmeter's public API: instrument, uninstrument, price.

Kept out of ``llmmeter/__init__.py``, which only re-exports, so that ``dir(llmmeter)`` is the
public API and nothing else. Each defers its imports: ``import llmmeter`` stays cheap and
never imports openai or the OpenTelemetry SDK.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._policy import Policy
from ._pricing import Cost

if TYPE_CHECKING:  # `import llmmeter` stays cheap: instrument() imports what it needs
    from opentelemetry._logs import LoggerProvider
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    policy: str | os.PathLike[str] | Policy | None = None,
    prices: str | os.PathLike[str] | None = None,
    capture_content: bool | str | None = None,
    redact: Callable[[str], str] | None = None,
    inject_stream_usage: bool | str | None = None,
    strict: bool | None = None,
    metric_attributes: Sequence[str] | str | None = None,
    metric_attribute_limit: int | None = None,
) -> None:
    """Make every call made through the ``openai`` SDK emit a GenAI span and metrics.

    Idempotent (a second call logs a warning and does nothing), and safe before or after
    ``import openai``: it never imports openai itself, and each SDK module is patched when
    openai first imports it. The price data loads at the first priced call. All configuration
    is validated here.

    Args:
        tracer_provider: where spans go. Default: the global provider if the application
            configured one, else an SDK provider exporting per the ``OTEL_*`` variables.
        meter_provider: where metrics go; same defaults as ``tracer_provider``.
        logger_provider: where content events go when content is captured as events
            (``EVENT_ONLY``, ``SPAN_AND_EVENT``). Default: the global logger provider (the
            application's; llmmeter builds none).
        policy: route calls to other models: a TOML policy file (reloaded when it changes),
            a :class:`~llmmeter.RulePolicy`, or any object with ``decide(call) -> Route |
            None`` (env ``LLMMETER_POLICY`` for a file; ``LLMMETER_POLICY_MODE`` overrides
            the mode; format in docs/policy.md). Rules with ``when_spend_over`` read the
            fleet's spend from the Prometheus at ``LLMMETER_PROMETHEUS_URL``, polled on a
            daemon thread.
        prices: a TOML prices file whose rates and aliases win over the bundled price data
            (env ``LLMMETER_PRICES``; format in docs/pricing.md).
        capture_content: record prompts and completions: ``True`` (or ``"SPAN_ONLY"``) on
            spans, ``"EVENT_ONLY"`` as ``gen_ai.client.inference.operation.details`` events,
            ``"SPAN_AND_EVENT"`` both (off by default; env
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
        redact: ``redact(text) -> str``, applied to every captured content string (message
            texts, system instructions, completions, tool call arguments and responses)
            before truncation; only used when content is captured. A hook that raises (or
            returns a non-str) drops that text for ``"[redaction failed]"``, logs a warning
            once, and leaves the call alone.
        inject_stream_usage: ask chat and completions streams for exact token usage and hide
            the extra chunk. ``"auto"`` (default): only on OpenAI's and Azure OpenAI's own
            API, which send that chunk only when asked; ``True`` (``"always"``): on every
            server; ``False`` (``"never"``). Env ``LLMMETER_INJECT_STREAM_USAGE``; see
            docs/streams.md.
        strict: re-raise llmmeter's internal errors instead of logging them (tests and CI
            only; env ``LLMMETER_STRICT``).
        metric_attributes: the :func:`~llmmeter.attribute` keys that also go on metrics,
            such as ``["tenant", "feature"]`` (env ``LLMMETER_METRIC_ATTRIBUTES``, comma
            separated). Default: none; spans carry every key regardless.
        metric_attribute_limit: distinct values each of those keys takes on metrics per
            process; later ones go on metrics as ``_overflow``, counted (env
            ``LLMMETER_METRIC_ATTRIBUTES_LIMIT``; default 100).

    Raises:
        ConfigError: a bad argument or environment variable, naming it, what was expected
            and what was found.

    Example::

        import llmmeter, openai
        llmmeter.instrument()
        openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[...])
    """
    from ._config import resolve_settings
    from ._instrumentor import REGISTRY

    settings = resolve_settings(
        capture_content=capture_content,
        redact=redact,
        inject_stream_usage=inject_stream_usage,
        strict=strict,
        prices=prices,
        metric_attributes=metric_attributes,
        metric_attribute_limit=metric_attribute_limit,
    )
    REGISTRY.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        settings=settings,
        policy=policy,
    )


def price(
    model: str,
    usage: Any,
    *,
    service_tier: str | None = None,
    batch: bool = False,
    at: datetime | None = None,
    provider: str = "openai",
) -> Cost | None:
    """The USD cost of ``usage`` on ``model``, computed as spans compute it.

    Args:
        model: a model name (dated snapshots, aliases and override names work).
        usage: an openai usage object, a dict of its fields, or a ``Usage``.
        service_tier: ``flex``, ``priority``, ... where the data prices tiers.
        batch: price at Batch API rates where the data has them.
        at: when the call happened (prices change over time); default now.
        provider: whose list price: a ``gen_ai.provider.name`` (``groq``, ``x_ai``,
            ``gcp.gemini``, ...) or a price-data provider id (``together``, ``google``).

    Returns:
        A :class:`Cost` (``.input``, ``.output``, ``.total`` in USD, ``.ref``), or ``None`` when
        no price is known for the model: llmmeter never prices an unknown model at $0.

    Example::

        >>> llmmeter.price("gpt-4o-mini", {"prompt_tokens": 1000, "completion_tokens": 500}).total
        0.00045
        >>> llmmeter.price(
        ...     "llama-3.3-70b-versatile", {"prompt_tokens": 1000, "completion_tokens": 500},
        ...     provider="groq",
        ... ).total
        0.000985
    """
    from ._instrumentor import REGISTRY
    from ._pricing import usage_from
    from ._providers import provider_named

    known = provider_named(provider)
    table = REGISTRY.price_table()
    if known is None and provider not in table.provider_ids():
        raise ValueError(
            "llmmeter.price: expected a provider name (groq, deepseek, x_ai, gcp.gemini, ...) "
            f"or a provider id of the price data; got {provider!r}"
        )
    when = at.timestamp() if at is not None else None
    return table.price(
        usage_from(usage),
        (model,),
        provider=known.prices if known is not None else provider,
        service_tier=service_tier,
        batch=batch,
        when=when,
    )


def uninstrument() -> None:
    """Undo :func:`instrument`: original SDK methods are restored, wrappers go inert."""
    from ._instrumentor import REGISTRY

    REGISTRY.uninstrument()
