"""What a call writes: span attributes and metric points, from values the call has read.

Pure functions over plain values (an :class:`~llmmeter._usage.Outcome`, a
:class:`~llmmeter._usage.Usage`, a :class:`~llmmeter._pricing.Cost`), so ``_call.py`` keeps
only the lifecycle: when a call opens, re-sends and ends, not how each attribute is spelled.
Names come from ``_semconv.py``; metric labels are bounded values only (ids, prompts and
error texts go on spans, never on metrics).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import Span, Status, StatusCode

from . import _semconv as sc
from ._content import content_json, input_messages, system_instructions
from ._pricing import LOCAL_REF, UNKNOWN_REF, Cost, PriceTable
from ._providers import OPENAI, Provider
from ._scrub import scrub
from ._sdk import SdkTypes, status_code
from ._usage import Outcome, Usage, output_messages

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    from ._config import Settings
    from ._metrics import Instruments
    from ._runtime import MetricLabels

_ERROR_MESSAGE_LIMIT: Final = 1024
WITHHELD: Final = "message withheld: content capture is off"
"""Stands for an error text that may quote the request or the answer (see :func:`error_text`)."""
_TRANSPORT_PACKAGES: Final = frozenset({"httpx", "httpcore", "httpx2", "httpcore2"})
_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"


def error_type(error: BaseException, sdk: SdkTypes | None) -> str:
    """``error.type``: the HTTP status for API errors, else the exception's qualname."""
    code = status_code(error, sdk) if sdk is not None else None
    return str(code) if code is not None else type(error).__qualname__


def record_error(span: Span, error: BaseException, sdk: SdkTypes | None, *, content: bool) -> None:
    """The exception event and the span's error status: texts as :func:`error_text` allows
    (``content``: content capture on spans is on), every one scrubbed of credentials."""
    message = scrub(error_text(error, sdk, content=content))[:_ERROR_MESSAGE_LIMIT]
    # The traceback ends with the message too: it is written by the same rule, then scrubbed.
    if content:
        stacktrace = "".join(traceback.format_exception(error))
    else:
        stacktrace = _stacktrace(error, lambda exc: error_text(exc, sdk, content=False))
    span.record_exception(
        error, attributes={"exception.message": message, "exception.stacktrace": scrub(stacktrace)}
    )
    span.set_status(Status(StatusCode.ERROR, message))


def error_text(error: BaseException, sdk: SdkTypes | None, *, content: bool) -> str:
    """What an exception may say on a span. Servers quote prompts and answers in their error
    messages, and so do other exceptions (a validation error quotes the answer it refused), so
    with content capture off only texts written by the network stack are kept (a connection
    refused, a timeout); for an error the server answered, its status and the error's
    ``code``, ``type`` and ``param``; for anything else, that a message was withheld."""
    try:
        text = str(error)
    except Exception:  # as Python's own traceback says of such an exception
        return "<exception str() failed>"
    if content or not text or _from_the_network(error, sdk):
        return text
    parts = []
    if sdk is not None and isinstance(error, sdk.api_error):
        status = status_code(error, sdk)
        if status is not None:
            parts.append(f"HTTP {status}")
        for name in ("code", "type", "param"):
            value = getattr(error, name, None)
            if isinstance(value, str) and value:
                parts.append(f"{name} {value[:64]}")
    return f"{', '.join(parts)} [{WITHHELD}]" if parts else f"[{WITHHELD}]"


def _from_the_network(error: BaseException, sdk: SdkTypes | None) -> bool:
    """The text was written by the client's network stack, which never quotes content."""
    if isinstance(error, OSError):  # refused, reset, DNS, TLS, timeouts
        return True
    if sdk is not None and isinstance(error, sdk.connection_error):
        return True
    return str(type(error).__module__).partition(".")[0] in _TRANSPORT_PACKAGES


def _stacktrace(error: BaseException, describe: Callable[[BaseException], str]) -> str:
    """The traceback as Python prints it (chained exceptions included), each exception's
    message given by ``describe``: the frames say where it failed, never what was sent."""
    chain: list[tuple[BaseException, str]] = []  # each with how it led to the one before
    seen: set[int] = set()
    exc: BaseException | None = error
    link = ""
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append((exc, link))
        if exc.__cause__ is not None:
            exc, link = exc.__cause__, _CAUSE
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc, link = exc.__context__, _CONTEXT
        else:
            exc = None
    lines: list[str] = []
    for exc, link in reversed(chain):
        if exc.__traceback__ is not None:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_tb(exc.__traceback__))
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        text = describe(exc)
        lines.append(f"{name}: {text}\n" if text else f"{name}\n")
        lines.append(link)
    return "".join(lines)


def response_attributes(outcome: Outcome) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    if outcome.response_id is not None:
        attrs[sc.GEN_AI_RESPONSE_ID] = outcome.response_id
    if outcome.response_model is not None:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = outcome.response_model
    reasons = outcome.finish_reasons
    if reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = (
            list(reasons.values()) if len(reasons) == 1 else [reasons[i] for i in sorted(reasons)]
        )
    if outcome.service_tier is not None:
        attrs[sc.OPENAI_RESPONSE_SERVICE_TIER] = outcome.service_tier
    if outcome.system_fingerprint is not None:
        attrs[sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = outcome.system_fingerprint
    return attrs


def usage_attributes(
    usage: Usage,
    attrs: dict[str, AttributeValue],
    cache_write: str = sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
) -> None:
    """Add the token counts the answer reported to ``attrs``; ``cache_write``: the name of
    the cache writes under the conventions in force."""
    if usage.input_tokens is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
    if usage.output_tokens is not None:
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
    if usage.cache_read_tokens is not None:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
    if usage.cache_creation_tokens is not None:
        attrs[cache_write] = usage.cache_creation_tokens
    if usage.reasoning_tokens is not None:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens


def price(
    prices: PriceTable,
    usage: Usage,
    models: tuple[str | None, str | None],
    service_tier: str | None,
    attrs: dict[str, AttributeValue],
    *,
    provider: Provider = OPENAI,
) -> Cost | None:
    """Price by the first of ``models`` known (response model, then request model) at
    ``provider``'s list price and put the cost on ``attrs``; an unknown model is marked so,
    never priced at $0; a local server's, as local (no list price to miss)."""
    cost = prices.price(usage, models, provider=provider.prices, service_tier=service_tier)
    if cost is None:
        if provider.local:
            attrs[sc.LLMMETER_PRICE_REF] = LOCAL_REF
            return None
        attrs[sc.LLMMETER_PRICE_REF] = UNKNOWN_REF
        name = models[0] or models[1]
        if name:
            prices.warn_unpriced(name, provider.prices)
        return None
    attrs[sc.GEN_AI_USAGE_COST_AMOUNT] = cost.total
    attrs[sc.GEN_AI_USAGE_COST_CURRENCY] = cost.currency
    attrs[sc.GEN_AI_USAGE_COST_SOURCE] = "local"
    attrs[sc.LLMMETER_COST_INPUT] = cost.input
    attrs[sc.LLMMETER_COST_OUTPUT] = cost.output
    attrs[sc.LLMMETER_PRICE_REF] = cost.ref
    return cost


def capture_input(
    endpoint: str, kwargs: dict[str, Any], attrs: dict[str, AttributeValue], settings: Settings
) -> None:
    """The prompt's messages and system instructions (only when content capture is on)."""
    limit, redact = settings.content_max_length, settings.redact
    messages = input_messages(endpoint, kwargs)
    if messages:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = content_json(messages, limit, redact)
    instructions = system_instructions(endpoint, kwargs)
    if instructions:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = content_json(instructions, limit, redact)


def capture_output(outcome: Outcome, attrs: dict[str, AttributeValue], settings: Settings) -> None:
    """The answer's messages (only when content capture is on)."""
    attrs[sc.GEN_AI_OUTPUT_MESSAGES] = content_json(
        output_messages(outcome), settings.content_max_length, settings.redact
    )


def content_event(
    logger: Any,
    span: Span,
    *,
    attrs: Mapping[str, AttributeValue],
    content: dict[str, AttributeValue],
    outcome: Outcome,
    settings: Settings,
) -> None:
    """The ``gen_ai.client.inference.operation.details`` event of a call whose content goes to
    events (``EVENT_ONLY``, ``SPAN_AND_EVENT``), in the call's span context: what identifies
    the call, then its prompt (captured at open) and answer."""
    from opentelemetry import trace
    from opentelemetry._logs import LogRecord

    event: dict[str, AttributeValue] = {
        key: value for key, value in attrs.items() if key in _EVENT_KEYS
    }
    event.update(content)
    if outcome.output:
        capture_output(outcome, event, settings)
    logger.emit(
        LogRecord(
            event_name=sc.EVENT_INFERENCE_DETAILS,
            attributes=event,
            context=trace.set_span_in_context(span),
        )
    )


_EVENT_KEYS: Final = frozenset(
    {
        sc.GEN_AI_OPERATION_NAME,
        sc.GEN_AI_PROVIDER_NAME,
        sc.GEN_AI_REQUEST_MODEL,
        sc.GEN_AI_RESPONSE_MODEL,
        sc.GEN_AI_RESPONSE_ID,
        sc.GEN_AI_RESPONSE_FINISH_REASONS,
        sc.ERROR_TYPE,
    }
)
"""The span attributes an event repeats, so that it reads on its own in a logs backend."""


def record_metrics(
    instruments: Instruments,
    labels: MetricLabels,
    *,
    duration: float,
    ttfc: float | None,
    usage: Usage | None,
    cost: Cost | None,
    context: Context,
    local: bool = False,
) -> None:
    """One call's metric points: duration, time to first chunk, tokens, cache, cost; a call
    without a price counted as unpriced unless it went to a local server (``local``).

    ``context`` holds the call's own span, so that the SDK's exemplar filter (trace-based by
    default) attaches its trace and span ids to each point: a dashboard panel links to the
    call behind a spike. Passing it also spares the SDK reading the current context."""
    metric_attrs = labels.call
    instruments.duration.record(duration, metric_attrs, context)
    if ttfc is not None:
        instruments.time_to_first_chunk.record(ttfc, metric_attrs, context)
    if usage is None:
        return
    if usage.input_tokens is not None:
        instruments.token_usage.record(usage.input_tokens, labels.input, context)
    if usage.output_tokens is not None:
        instruments.token_usage.record(usage.output_tokens, labels.output, context)
    if usage.cache_read_tokens:
        instruments.cache_tokens.add(
            usage.cache_read_tokens, {**metric_attrs, sc.LLMMETER_CACHE_OPERATION: "read"}, context
        )
    if usage.cache_creation_tokens:
        instruments.cache_tokens.add(
            usage.cache_creation_tokens,
            {**metric_attrs, sc.LLMMETER_CACHE_OPERATION: "creation"},
            context,
        )
    if cost is not None:
        instruments.cost.add(cost.total, metric_attrs, context)
    elif usage.input_tokens is not None and not local:
        instruments.unpriced.add(1, metric_attrs, context)


def record_latest_metrics(
    instruments: Instruments,
    labels: MetricLabels,
    *,
    duration: float,
    ttfc: float | None,
    usage: Usage | None,
    cost: Cost | None,
    context: Context,
    local: bool = False,
) -> None:
    """:func:`record_metrics` under the newest GenAI conventions (opted in): embeddings and
    inference durations apart, token usage as counters per kind (by modality, ``unknown``:
    the SDK's totals mix text, image and audio) and as per-call histograms, the cost as a
    histogram beside llmmeter's own counter (which the spend alerts and guard read)."""
    latest = instruments.latest
    assert latest is not None  # chosen at instrument() only when the instruments exist
    metric_attrs = labels.call
    embeddings = metric_attrs.get(sc.GEN_AI_OPERATION_NAME) == EMBEDDINGS_OPERATION
    if embeddings:
        latest.embeddings_duration.record(duration, metric_attrs, context)
    else:
        latest.duration.record(duration, metric_attrs, context)
    if ttfc is not None:
        latest.time_to_first_chunk.record(ttfc, metric_attrs, context)
    if usage is not None and embeddings:
        if usage.input_tokens is not None:
            latest.embeddings_input_tokens.record(usage.input_tokens, metric_attrs, context)
    elif usage is not None:
        counted = {**metric_attrs, sc.GEN_AI_TOKEN_MODALITY: sc.MODALITY_UNKNOWN}
        if usage.input_tokens is not None:
            latest.input_tokens.add(usage.input_tokens, counted, context)
            latest.operation_input_tokens.record(usage.input_tokens, metric_attrs, context)
        if usage.output_tokens is not None:
            latest.output_tokens.add(usage.output_tokens, counted, context)
            latest.operation_output_tokens.record(usage.output_tokens, metric_attrs, context)
        if usage.cache_read_tokens:
            latest.cache_read_tokens.add(usage.cache_read_tokens, counted, context)
        if usage.cache_creation_tokens:
            latest.cache_write_tokens.add(usage.cache_creation_tokens, counted, context)
        if usage.reasoning_tokens:
            latest.reasoning_tokens.add(usage.reasoning_tokens, counted, context)
    if cost is not None:
        instruments.cost.add(cost.total, metric_attrs, context)
        latest.cost.record(cost.total, metric_attrs, context)
    elif usage is not None and usage.input_tokens is not None and not local:
        instruments.unpriced.add(1, metric_attrs, context)


EMBEDDINGS_OPERATION: Final = "embeddings"
