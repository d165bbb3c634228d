"""llmmeter: every OpenAI SDK call becomes an OpenTelemetry span and metrics, in one line.

Example::

    import llmmeter
    llmmeter.instrument()
"""

from __future__ import annotations

import logging

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ._package import __version__
from ._task import task
from .exceptions import ConfigError

__all__ = ["ConfigError", "__version__", "instrument", "task", "uninstrument"]

logger = logging.getLogger("llmmeter")


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool | None = None,
    inject_stream_usage: bool | None = None,
    strict: bool | None = None,
) -> None:
    """Make every call made through the ``openai`` SDK emit a GenAI span and metrics.

    Idempotent (a second call logs a warning and does nothing), and safe before or after
    ``import openai``: it never imports openai itself. All configuration is validated here.

    Args:
        tracer_provider: where spans go. Default: the global provider if the application
            configured one, else an SDK provider exporting per the ``OTEL_*`` variables.
        meter_provider: where metrics go; same defaults as ``tracer_provider``.
        capture_content: record prompts and completions (off by default; env
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
        inject_stream_usage: ask streams for exact token usage and hide the extra chunk
            (on by default; env ``LLMMETER_INJECT_STREAM_USAGE``).
        strict: re-raise llmmeter's internal errors instead of logging them (tests and CI
            only; env ``LLMMETER_STRICT``).

    Raises:
        ConfigError: a bad argument or environment variable, naming it, what was expected
            and what was found.

    Example::

        import llmmeter, openai
        llmmeter.instrument()
        openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[...])
    """
    from ._config import resolve_settings
    from ._instrumentor import LLMMeterInstrumentor

    settings = resolve_settings(
        capture_content=capture_content, inject_stream_usage=inject_stream_usage, strict=strict
    )
    instrumentor = LLMMeterInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        logger.warning("llmmeter.instrument() called again; already instrumented, ignoring")
        return
    instrumentor.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, settings=settings
    )


def uninstrument() -> None:
    """Undo :func:`instrument`: original SDK methods are restored, wrappers go inert."""
    from ._instrumentor import LLMMeterInstrumentor

    instrumentor = LLMMeterInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
