"""One application with another OpenAI instrumentation beside llmmeter, run in that one's venv.

    build/coexist/NAME/bin/python tests/coexist/scenario.py NAME ORDER

``tests/integration/test_other_instrumentations.py`` runs it; the fake OpenAI server is the
test's, at ``$LLMMETER_TEST_BASE_URL``. ORDER:

- ``other-only``: the other instrumentation alone (what the user sees without llmmeter);
- ``llmmeter-first`` / ``other-first``: both, instrumented in that order by the script;
- ``auto``: run under ``opentelemetry-instrument``, which instrumented both already, in the
  order it found their entry points (the script only configures OpenTelemetry).

OpenTelemetry is configured before any call (Logfire through ``logfire.configure``) with an
in-memory span exporter and metric reader. The script makes a fixed sequence of calls, then
(with llmmeter) calls ``llmmeter.uninstrument()`` and makes two more. After each call it
notes the spans that ended and the metric points recorded during it, by instrumentation
scope, the wrapper stack on the SDK method, and what the user got (every chunk of a stream).
The last line of stdout is ``SCENARIO-RESULT {json}``.

With ``--httpx``, ``opentelemetry-instrumentation-httpx`` instruments the SDK's HTTP client
too (openai 2.x sends through httpx, 3.x through httpx2). Each span names the scopes of its
ancestors.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

OTHER, ORDER = sys.argv[1], sys.argv[2]
HTTPX = "--httpx" in sys.argv
BASE_URL = os.environ["LLMMETER_TEST_BASE_URL"]
WITH_LLMMETER = ORDER != "other-only"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
VOLATILE = frozenset({"id", "created", "created_at", "completed_at", "obfuscation"})
"""Fields the fake server makes anew for each request: left out of what the user got."""

# No message content anywhere (each library's own switch), read when each instruments.
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "NO_CONTENT")
os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "false")

exporter = InMemorySpanExporter()
reader = InMemoryMetricReader()


def configure_opentelemetry() -> None:
    """The application's OpenTelemetry, before its first call (and, in ``auto``, after
    ``opentelemetry-instrument`` instrumented everything with the global proxies)."""
    if OTHER == "logfire":
        import logfire

        logfire.configure(
            send_to_logfire=False,
            console=False,
            additional_span_processors=[SimpleSpanProcessor(exporter)],
            metrics=logfire.MetricsOptions(additional_readers=[reader]),
        )
        return
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    if OTHER == "openlit":
        from opentelemetry import _logs
        from opentelemetry.sdk._logs import LoggerProvider

        _logs.set_logger_provider(LoggerProvider())


def instrument_other() -> None:
    if OTHER == "genai-openai":
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif OTHER == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif OTHER == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif OTHER == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif OTHER == "logfire":
        import logfire

        logfire.instrument_openai()
    elif OTHER == "openlit":
        import openlit
        from openlit._instrumentors import MODULE_NAME_MAP

        # A price file of its own: openlit would otherwise download one.
        prices = os.path.join(tempfile.mkdtemp(), "prices.json")
        with open(prices, "w", encoding="utf-8") as file:
            json.dump({"chat": {}, "embeddings": {}, "images": {}, "audio": {}}, file)
        openlit.init(
            pricing_json=prices,
            disabled_instrumentors=[name for name in MODULE_NAME_MAP if name != "openai"],
            disable_events=True,
            collect_gpu_stats=False,
            collect_system_metrics=False,
        )
    else:
        raise SystemExit(f"unknown instrumentation {OTHER!r}")


def instrument_llmmeter() -> None:
    import llmmeter

    llmmeter.instrument()


def instrument_http(openai: Any) -> None:
    """The SDK's HTTP client: httpx on openai 2.x, httpx2 on 3.x."""
    from opentelemetry.instrumentation import httpx as httpx_instrumentation

    if openai.__version__.startswith("2."):
        httpx_instrumentation.HTTPXClientInstrumentor().instrument()
    else:
        httpx_instrumentation.HTTPX2ClientInstrumentor().instrument()


# --- what each call left behind ------------------------------------------------------------


def metric_points() -> dict[tuple[str, str, str], float]:
    """Every metric data point now: (scope, metric, attributes) -> its count or value."""
    found: dict[tuple[str, str, str], float] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    attrs = json.dumps(sorted(dict(point.attributes or {}).items()), default=str)
                    value = getattr(point, "count", None)
                    if value is None:
                        value = getattr(point, "value", 0)
                    found[(scope_metrics.scope.name, metric.name, attrs)] = float(value)
    return found


def stack(method: Any) -> list[str]:
    """The modules of the wrappers stacked on an SDK method, outermost first."""
    modules = []
    for _ in range(16):
        wrapper = getattr(method, "_self_wrapper", None)
        if wrapper is None:
            break
        module = getattr(wrapper, "__module__", None) or type(wrapper).__module__
        if module in (None, "builtins", "functools"):
            module = getattr(getattr(wrapper, "func", None), "__module__", None)
        if module is None or module == "functools":  # a partial of a partial, or a class
            module = type(wrapper).__module__
        modules.append(str(module))
        method = getattr(method, "__wrapped__", None)
    return modules


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The scopes of the span's ancestors, nearest first."""
    found = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        ancestor = by_id[parent.span_id]
        found.append(ancestor.instrumentation_scope.name if ancestor.instrumentation_scope else "")
        parent = ancestor.parent
    return found


def dump(obj: Any) -> Any:
    """What the user got, without what the server makes anew for each request."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {
        "type": f"{type(obj).__module__}.{type(obj).__qualname__}",
        "data": strip(obj.model_dump(mode="json")),
    }


class Recorder:
    """Runs each call and notes what it left behind."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._spans_seen = 0
        self._points = metric_points()

    def call(self, label: str, method: tuple[type[Any], str], run: Any) -> None:
        cls, name = method
        before = stack(cls.__dict__.get(name))
        got = run()
        spans = exporter.get_finished_spans()
        new, self._spans_seen = spans[self._spans_seen :], len(spans)
        by_id = {s.context.span_id: s for s in spans if s.context is not None}
        points = metric_points()
        changed: dict[str, dict[str, float]] = {}
        for key, value in points.items():
            delta = value - self._points.get(key, 0.0)
            if delta:
                scope, metric, _ = key
                per_scope = changed.setdefault(scope, {})
                # A histogram's or counter's increase; a gauge that moved counts once.
                per_scope[metric] = per_scope.get(metric, 0) + (delta if delta > 0 else 1)
        self._points = points
        self.calls.append(
            {
                "label": label,
                "method": f"{cls.__name__}.{name}",
                "stack_before": before,
                "stack_after": stack(cls.__dict__.get(name)),
                "spans": [
                    {
                        "name": s.name,
                        "scope": s.instrumentation_scope.name if s.instrumentation_scope else "",
                        "ancestors": ancestors(s, by_id),
                    }
                    for s in new
                ],
                "points": changed,
                "context_after": sorted(str(key) for key in otel_context.get_current()),
                "got": got,
            }
        )


def main() -> None:
    configure_opentelemetry()
    steps = {
        "auto": [],  # opentelemetry-instrument did it
        "other-only": [instrument_other],
        "llmmeter-first": [instrument_llmmeter, instrument_other],
        "other-first": [instrument_other, instrument_llmmeter],
    }[ORDER]
    for step in steps:
        step()
    openai = importlib.import_module("openai")
    if HTTPX:
        instrument_http(openai)

    client = openai.OpenAI(base_url=BASE_URL, api_key="sk-test", max_retries=0)
    chat = (type(client.chat.completions), "create")

    def chat_call() -> Any:
        return dump(client.chat.completions.create(**CHAT))

    def stream_chunks() -> list[Any]:
        stream = client.chat.completions.create(**CHAT, stream=True)
        return [dump(chunk) for chunk in stream]

    def async_chat_call() -> Any:
        async def run() -> Any:
            async with openai.AsyncOpenAI(base_url=BASE_URL, api_key="k", max_retries=0) as ac:
                return dump(await ac.chat.completions.create(**CHAT))

        return asyncio.run(run())

    def async_stream_chunks() -> list[Any]:
        async def run() -> list[Any]:
            async with openai.AsyncOpenAI(base_url=BASE_URL, api_key="k", max_retries=0) as ac:
                stream = await ac.chat.completions.create(**CHAT, stream=True)
                return [dump(chunk) async for chunk in stream]

        return asyncio.run(run())

    def embeddings_call() -> Any:
        return dump(client.embeddings.create(model="text-embedding-3-small", input="hello"))

    def responses_call() -> Any:
        return dump(client.responses.create(model="gpt-4o-mini", input="Say hello"))

    recorder = Recorder()
    started = time.perf_counter()
    for n in (1, 2, 3):
        recorder.call(f"chat-{n}", chat, chat_call)
    async_chat = (openai.resources.chat.completions.AsyncCompletions, "create")
    recorder.call("async-chat", async_chat, async_chat_call)
    recorder.call("async-stream", async_chat, async_stream_chunks)
    recorder.call("stream", chat, stream_chunks)
    recorder.call("embeddings", (type(client.embeddings), "create"), embeddings_call)
    for n in (1, 2):
        recorder.call(f"responses-{n}", (type(client.responses), "create"), responses_call)
    if WITH_LLMMETER:
        import llmmeter

        llmmeter.uninstrument()
        recorder.call("after-uninstrument-chat", chat, chat_call)
        recorder.call("after-uninstrument-stream", chat, stream_chunks)
    elapsed = time.perf_counter() - started
    client.close()

    versions = {}
    for package in ("openai", "opentelemetry-sdk", "httpx", "httpx2"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    result = {
        "other": OTHER,
        "order": ORDER,
        "versions": versions,
        "calls": recorder.calls,
        "seconds": round(elapsed, 3),
    }
    print("SCENARIO-RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
