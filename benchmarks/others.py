"""The OpenAI instrumentations a user would pick instead of llmmeter, as ``bench.py`` variants.

Each ``setup_*`` function has the variant interface of ``benchmarks/bench.py``: it is called
in a child before ``openai`` is imported, instruments the SDK with the tracer and meter
providers it is given, and returns the ``Check`` that says what the library promises per
call. ``benchmarks/compare.py`` runs them, each in its own virtualenv, next to ``bare`` and
``llmmeter`` in that same virtualenv::

    python benchmarks/bench.py --variants bare,llmmeter,openllmetry=others:setup_openllmetry@PY

Like for like: message content capture is switched off in every library (each has its own
switch, set explicitly here even where off is the default), no library gets an exporter or
provider of its own, and each check asks for what the library records on its own without
help: a span per call, its token counts on the last span (under its own attribute names),
its own metric points where it records metrics, no warning from its loggers, and no prompt
or answer text anywhere on the span.

The harness removes ``OTEL_*`` variables from the child's environment, so the switches that
are environment variables are set here, before the library is imported.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench import ANSWER, EMBED_INPUT, Case, Check, Evidence, policy_bench

Metrics = Callable[[Case], Mapping[str, int | None]]

GENAI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GENAI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GENAI_DURATION = "gen_ai.client.operation.duration"
GENAI_TOKEN_USAGE = "gen_ai.client.token.usage"
GENAI_TTFC = "gen_ai.client.operation.time_to_first_chunk"
OPENLLMETRY_TTFT = "gen_ai.server.time_to_first_token"
OPENINFERENCE_PROMPT_TOKENS = "llm.token_count.prompt"
OPENINFERENCE_COMPLETION_TOKENS = "llm.token_count.completion"
OPENLIT_COST = "gen_ai.usage.cost"

OPENLIT_PRICES: dict[str, Any] = {
    # openlit's pricing-file format: USD per 1,000 tokens, looked up by the requested model.
    "chat": {
        "gpt-4o": {"promptPrice": 0.0025, "completionPrice": 0.01},
        "gpt-4o-2024-08-06": {"promptPrice": 0.0025, "completionPrice": 0.01},
        "gpt-4o-mini": {"promptPrice": 0.00015, "completionPrice": 0.0006},
        "gpt-4o-mini-2024-07-18": {"promptPrice": 0.00015, "completionPrice": 0.0006},
    },
    "embeddings": {"text-embedding-3-small": 0.00002},
    "images": {},
    "audio": {},
}


def _has_usage(case: Case) -> bool:
    """Whether the API sends usage for ``case`` when nobody injects ``include_usage``.

    Only llmmeter asks for usage on a stream the user did not ask it for; the others see no
    usage chunk there and (by design, with no tokenizer) record no tokens for those streams.
    """
    return not case.stream or case.user_usage


def _token_keys(input_key: str, output_key: str) -> Callable[[Case], tuple[str, ...]]:
    def keys(case: Case) -> tuple[str, ...]:
        if not _has_usage(case):
            return ()
        if case.endpoint == "embeddings":
            return (input_key,)
        return (input_key, output_key)

    return keys


def _content_samples() -> tuple[str, ...]:
    """Fragments of every prompt and answer the bench sends and receives."""
    bench = policy_bench()
    texts = (bench.SYSTEM, bench.USER, ANSWER, EMBED_INPUT)
    # The first and last 40 characters of each: long enough to be unmistakable, short enough
    # to be found in a copy cut down by a length limit or in the first words of a stream.
    return tuple(text[:40] for text in texts) + tuple(text[-40:] for text in texts)


def _no_content(case: Case, evidence: Evidence) -> list[str]:
    """Content capture is off: no prompt or answer text in any attribute of the last span."""
    attrs = evidence.last_span["attributes"] if evidence.last_span else {}
    samples = _content_samples()
    leaked = []
    for key, value in attrs.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and any(s in v for s in samples) for v in values):
            leaked.append(key)
    if not leaked:
        return []
    return [f"content on the span despite capture off: {', '.join(sorted(leaked))}"]


def _check(
    span_attributes: Callable[[Case], tuple[str, ...]],
    metrics: Metrics,
    loggers: tuple[str, ...],
) -> Check:
    return Check(
        spans_per_call=1,
        span_attributes=span_attributes,
        metrics=metrics,
        loggers=loggers,
        extra=_no_content,
    )


def _genai_metrics(*, ttfc: bool = True, tokens: Callable[[Case], bool] = _has_usage) -> Metrics:
    """The GenAI metrics: a duration per call, a token-usage point per token type the call
    reported, and (with ``ttfc``) a time to first chunk per stream."""

    def metrics(case: Case) -> dict[str, int | None]:
        expected: dict[str, int | None] = {GENAI_DURATION: 1}
        if tokens(case):
            expected[GENAI_TOKEN_USAGE] = 1 if case.endpoint == "embeddings" else 2
        if ttfc and case.stream:
            expected[GENAI_TTFC] = 1
        return expected

    return metrics


# --- OpenTelemetry's own --------------------------------------------------------------


def setup_genai_openai(tracer_provider: Any, meter_provider: Any) -> Check:
    """``opentelemetry-instrumentation-genai-openai``: the OpenTelemetry project's current one.

    Content: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (``no_content``, the
    default, or ``span_only``/``event_only``/``span_and_event``), read by
    ``opentelemetry-util-genai`` when the instrumentor starts.
    """
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "no_content"
    os.environ["OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"] = "false"
    from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return _check(
        _token_keys(GENAI_INPUT_TOKENS, GENAI_OUTPUT_TOKENS),
        _genai_metrics(),
        ("opentelemetry.instrumentation.genai", "opentelemetry.util.genai"),
    )


def setup_openai_v2(tracer_provider: Any, meter_provider: Any) -> Check:
    """``opentelemetry-instrumentation-openai-v2``: the older OpenTelemetry one.

    It instruments Chat Completions and embeddings only (no Responses API). Content: the same
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (with ``opentelemetry-util-genai``
    1.1b0 it is always on the newer conventions, where ``no_content`` is off; its older path
    took ``true``/``false``).
    """
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "no_content"
    os.environ["OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"] = "false"
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return _check(
        _token_keys(GENAI_INPUT_TOKENS, GENAI_OUTPUT_TOKENS),
        _genai_metrics(ttfc=False),
        ("opentelemetry.instrumentation.openai_v2", "opentelemetry.util.genai"),
    )


# --- OpenLLMetry (Traceloop) -----------------------------------------------------------


def setup_openllmetry(tracer_provider: Any, meter_provider: Any) -> Check:
    """``opentelemetry-instrumentation-openai``: OpenLLMetry's, by Traceloop.

    Content: ``TRACELOOP_TRACE_CONTENT=false`` (default ``true``: prompts and completions go
    on the span). Metrics stay on (``TRACELOOP_METRICS_ENABLED``, default ``true``).
    """
    os.environ["TRACELOOP_TRACE_CONTENT"] = "false"
    os.environ["TRACELOOP_METRICS_ENABLED"] = "true"
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    genai = _genai_metrics(ttfc=False)

    def metrics(case: Case) -> Mapping[str, int | None]:
        if case.endpoint == "responses":
            return {}  # its Responses wrapper records no metric
        expected = dict(genai(case))
        if case.stream:
            expected[OPENLLMETRY_TTFT] = 1
        return expected

    return _check(
        _token_keys(GENAI_INPUT_TOKENS, GENAI_OUTPUT_TOKENS),
        metrics,
        ("opentelemetry.instrumentation.openai",),
    )


# --- OpenInference (Arize) -------------------------------------------------------------


def setup_openinference(tracer_provider: Any, meter_provider: Any) -> Check:
    """``openinference-instrumentation-openai``: Arize's, the format Phoenix reads.

    Traces only (it records no metrics), so ``meter_provider`` is unused. Content:
    ``TraceConfig(hide_inputs=True, hide_outputs=True)``, the same as
    ``OPENINFERENCE_HIDE_INPUTS=true`` and ``OPENINFERENCE_HIDE_OUTPUTS=true`` (default: all
    shown); it then records ``input.value``/``output.value`` as ``__REDACTED__`` and drops the
    message attributes. Those two do not cover embeddings: the input text and the vector stay
    on the span unless ``hide_embeddings_text`` and ``hide_embeddings_vectors`` are set too
    (``OPENINFERENCE_HIDE_EMBEDDINGS_TEXT``/``_VECTORS``).
    """
    hidden = ("INPUTS", "OUTPUTS", "EMBEDDINGS_TEXT", "EMBEDDINGS_VECTORS")
    for what in hidden:
        os.environ[f"OPENINFERENCE_HIDE_{what}"] = "true"
    from openinference.instrumentation import TraceConfig
    from openinference.instrumentation.openai import OpenAIInstrumentor

    config = TraceConfig(
        hide_inputs=True,
        hide_outputs=True,
        hide_embeddings_text=True,
        hide_embeddings_vectors=True,
    )
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, config=config)
    return _check(
        _token_keys(OPENINFERENCE_PROMPT_TOKENS, OPENINFERENCE_COMPLETION_TOKENS),
        lambda case: {},
        ("openinference",),
    )


# --- openlit ---------------------------------------------------------------------------


def _openlit_pricing_file() -> str:
    """A local pricing file, so that ``openlit.init`` never downloads its price list."""
    directory = Path(tempfile.mkdtemp(prefix="llmmeter-bench-openlit-"))
    path = directory / "pricing.json"
    path.write_text(json.dumps(OPENLIT_PRICES), encoding="utf-8")
    return str(path)


def setup_openlit(tracer_provider: Any, meter_provider: Any) -> Check:
    """``openlit``: its OpenAI instrumentation alone, on the providers the harness built.

    ``openlit.init`` builds no provider when the OpenTelemetry globals already hold SDK ones
    (the harness sets the tracer and meter providers as globals; an SDK logger provider with
    no processor is set here, else it adds a console exporter for its events). It is given a
    local ``pricing_json`` (else it downloads prices at start-up), every instrumentor but
    ``openai`` disabled (it would otherwise also patch httpx, requests and a dozen
    frameworks), no GPU or system metrics, and ``disable_events=True``: its
    ``gen_ai.client.inference.operation.details`` log events are not part of what the others
    record. Content: ``capture_message_content=False`` (default ``True``; also
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false``).
    """
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs import LoggerProvider

    if trace.get_tracer_provider() is not tracer_provider:
        trace.set_tracer_provider(tracer_provider)
    if metrics.get_meter_provider() is not meter_provider:
        metrics.set_meter_provider(meter_provider)
    _logs.set_logger_provider(LoggerProvider())

    import openlit
    from openlit._instrumentors import MODULE_NAME_MAP

    openlit.init(
        capture_message_content=False,
        pricing_json=_openlit_pricing_file(),
        disabled_instrumentors=[name for name in MODULE_NAME_MAP if name != "openai"],
        disable_events=True,
        collect_gpu_stats=False,
        collect_system_metrics=False,
    )
    if trace.get_tracer_provider() is not tracer_provider:
        raise RuntimeError("openlit.init replaced the tracer provider it was given")
    if metrics.get_meter_provider() is not meter_provider:
        raise RuntimeError("openlit.init replaced the meter provider it was given")

    def keys(case: Case) -> tuple[str, ...]:
        # Where a stream carries no usage, openlit estimates tokens (characters / 2) and
        # prices the estimate: the keys are there in every case.
        tokens = (GENAI_INPUT_TOKENS, OPENLIT_COST)
        return tokens if case.endpoint == "embeddings" else (*tokens, GENAI_OUTPUT_TOKENS)

    genai = _genai_metrics(tokens=lambda case: True)

    def points(case: Case) -> Mapping[str, int | None]:
        return {**genai(case), OPENLIT_COST: 1}

    return _check(keys, points, ("openlit",))
