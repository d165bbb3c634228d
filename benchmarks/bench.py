"""What llmmeter costs per call, against the bare SDK and the OpenTelemetry floor: `make bench`.

    python benchmarks/bench.py [--rounds R] [--calls N] [--smoke] [--cases a,b] [--variants x,y]
                               [--json FILE] [--write-docs docs/performance.md]

The SDK is real; the network is not. Every client gets an in-memory transport
(``httpx2.MockTransport`` for openai 3.x, ``httpx.MockTransport`` for 1.x/2.x) that answers
from pre-built bytes: realistic bodies with usage objects, API-like headers and SSE framing.
What is timed is therefore the SDK plus the instrumentation.

Variants (each in its own process, see "Processes" below):

- ``bare``: no instrumentation.
- ``floor``: the OpenTelemetry SDK work llmmeter cannot avoid, done by hand around the bare SDK
  method, with no patching: one CLIENT span made current for the SDK call, carrying the same
  attribute keys llmmeter sets for that case, and the same metric records (duration, token
  usage input and output, cost, time to first chunk for streams). Attribute values that do not
  depend on the response are computed once per case; per call it reads the response (or each
  chunk) and does the OpenTelemetry calls. Streams go through a generator that also asks for
  and hides the usage chunk where llmmeter does. The parent checks that the floor's last span
  and metric labels have exactly llmmeter's keys, so the floor cannot silently drift.
- ``llmmeter``: ``llmmeter.instrument()`` defaults (cost on, content off, no policy).
- ``llmmeter-policy``: the 10-rule policy of ``benchmarks/policy.py`` (globs, tasks, prompt
  regexes, token limits, a canary) in enforce mode; no rule matches the calls, so every glob
  that names the model and every regex over the 2 KB prompt runs.
- ``llmmeter-policy-match``: the same file, with one regex rule that matches the prompt:
  the call is routed (to ``gpt-4o-mini``) and its savings priced.

Cases: ``chat`` (sync Chat Completions), ``chat_async``, ``responses``, ``embeddings`` (one
input, 1536 dimensions, base64 as the SDK asks), ``stream_10`` and ``stream_200`` (chat
streams of 10 and 200 content chunks; the user did not ask for usage, so llmmeter injects
``stream_options.include_usage`` and hides the usage chunk: the common path), and
``stream_usage`` (10 chunks, the user set ``include_usage``). The per-chunk cost is the slope
``(stream_200 - stream_10) / 190``. Chat and Responses requests carry a ~2 KB prompt.
``stream_50`` (50 chunks, usage injected) runs only when named: ``benchmarks/instructions.py``
counts it.

Processes. For each round the parent starts one child per variant (the order rotates each
round, so drift favours nobody), pinned to one core with ``taskset`` where it exists (by
default the core that was idlest just before the child started; ``--cpu N`` fixes it); a child
runs every selected case (the case order rotates with the round too), each with a fresh
client: warm-up, then ``--batches`` timed batches (``perf_counter_ns``, ``gc.collect()``
before each). Per round and case a child reports the best and the median batch (µs per
call). Across rounds the tables show the best batch of all, the median over rounds of each
round's best (*typical*), the median of the round medians, and the overhead against
``bare`` (and as a multiple of the floor's) estimated twice from best batches, since time on
a shared machine only ever adds: from the fastest batch of all rounds (the verdicts use
this), and paired within each round, then the median over rounds (cancels drift; a verdict
this contradicts is marked noisy). A ``micro`` child per round times a routing decision and
price lookups; ``import`` runs fresh interpreters; ``soak`` runs ``benchmarks/soak.py`` for
memory (integration point: ``run_soak``). ``--smoke`` runs a round's children at once (its
numbers are not measurements); ``--from-json`` re-renders a run saved with ``--json``.

Telemetry validity. A number counts only if the telemetry was produced: spans go to a real
``BatchSpanProcessor`` with an exporter that counts and discards them (keeping the last), and
metrics to an SDK ``MeterProvider`` with an ``InMemoryMetricReader``. After each case the
child flushes and checks the variant's promise (spans exported per call, attributes on the
last span, metric points per call, no warnings). The exit status is 1 only when telemetry
was invalid or a child failed; no speed is ever asserted.

Child interface (stable; ``benchmarks/compare.py`` builds on it)::

    python benchmarks/bench.py --child VARIANT --case CASE[,CASE...] --calls N
                               [--warmup W] [--batches B] [--out FILE]

prints (or writes to ``--out``) one JSON object: ``{"variant", "cases": {case: {"calls"
(warm-up included), "timed_calls", "batch_us": [...], "best_us", "median_us", "spans",
"problems": [...], "last_span": {"name", "kind", "attributes"}, "metric_labels": {metric:
[[keys of one point], ...]}, "warnings": {logger: count}, "cpus"}}}``. ``problems`` empty
means the telemetry was valid. It exits non-zero (no JSON) when the variant or a call raised.
Children run with ``PYTHONPATH=src``, ``PYTHONHASHSEED=0``, and ``LLMMETER_*`` and ``OTEL_*``
removed from the environment.

Adding a variant (another instrumentation). A variant is ``setup(tracer_provider,
meter_provider) -> Check``, called in the child before ``openai`` is imported and before any
client exists; the providers are also set as the OpenTelemetry globals. ``Check`` says what
the variant promises (see its fields) and may ``wrap`` the SDK method for by-hand variants.
Name one on the command line as ``module:function`` (the module must be importable in the
child: ``benchmarks/`` is on its path), optionally ``name=module:function`` for the tables
and ``...@/path/to/python`` to run its children in another interpreter (a virtualenv with
that instrumentation installed), e.g.
``--variants bare,floor,llmmeter,openllmetry=compare:setup_openllmetry@.venv-x/bin/python``.
The ``floor`` row of a table is the one every ``x floor`` divides by, and its check compares
it with the ``llmmeter`` row. From Python: ``run_benchmark(Config(variants=[VariantSpec.parse
(spec), ...], cases=[CASES_BY_NAME[name], ...]))`` returns the raw and aggregated results,
and ``render(results, config)`` the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import importlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# --- what the calls send and get -------------------------------------------------------

MODEL = "gpt-4o"
ROUTED_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
EMBED_DIMENSIONS = 1536
BASE_URL = "https://api.openai.com/v1"  # never reached: the transport is in memory
RESPONSE_MODELS = {MODEL: "gpt-4o-2024-08-06", ROUTED_MODEL: "gpt-4o-mini-2024-07-18"}
PROMPT_TOKENS, CACHED_TOKENS, COMPLETION_TOKENS = 463, 0, 58
EMBED_TOKENS = 11
EMBED_INPUT = "Hip-belt buckle cracked on the Ridgeline 45L backpack after two days."
ANSWER = (
    "I'm sorry the buckle cracked so soon. The Ridgeline's hip belt is covered by our lifetime "
    "warranty, so we can send a replacement buckle right away, or replace the pack if you "
    "prefer. Worn boots can't be exchanged, but boots tried on indoors can: Canada qualifies "
    "for free exchanges, and the return label is on us."
)
WORDS = tuple(re.findall(r"\S+\s*", ANSWER))

SPAN_NAME_ATTRIBUTES = "gen_ai.operation.name"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
COST = "gen_ai.usage.cost.amount"
RESPONSE_MODEL = "gen_ai.response.model"
STREAM_END = "llmmeter.stream.end"
POLICY_RULE = "llmmeter.policy.rule"
DURATION_METRIC = "gen_ai.client.operation.duration"
TOKEN_METRIC = "gen_ai.client.token.usage"
TTFC_METRIC = "gen_ai.client.operation.time_to_first_chunk"
COST_METRIC = "llmmeter.cost.usd"

MATCH_RULE = "summarise-to-mini"
MATCH_PATTERN = r"'(?i)\bwhat happens next\b',"
"""Added to ``MATCH_RULE`` for the policy-match variant: the bench prompt ends with it."""


def policy_bench() -> ModuleType:
    """``benchmarks/policy.py``: its 10-rule policy, 2 KB prompt and decision cases."""
    module = sys.modules.get("llmmeter_bench_policy")
    if module is None:
        spec = importlib.util.spec_from_file_location("llmmeter_bench_policy", HERE / "policy.py")
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {HERE / 'policy.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


def _messages() -> list[dict[str, Any]]:
    bench = policy_bench()
    return [{"role": "system", "content": bench.SYSTEM}, {"role": "user", "content": bench.USER}]


# --- cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One kind of call, timed for every variant."""

    name: str
    title: str
    endpoint: str
    """``chat``, ``responses`` or ``embeddings``."""
    is_async: bool = False
    chunks: int = 0
    """Content chunks of a stream; 0 for a call that is not streamed."""
    user_usage: bool = False
    """The user set ``stream_options.include_usage`` (else llmmeter injects it)."""
    weight: int = 1
    """This case times ``calls // weight`` calls (long streams take longer)."""

    @property
    def stream(self) -> bool:
        return self.chunks > 0

    @property
    def model(self) -> str:
        return EMBED_MODEL if self.endpoint == "embeddings" else MODEL

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments the user passes."""
        if self.endpoint == "embeddings":
            return {"model": EMBED_MODEL, "input": EMBED_INPUT}
        if self.endpoint == "responses":
            bench = policy_bench()
            return {
                "model": MODEL,
                "instructions": bench.SYSTEM,
                "input": bench.USER,
                "temperature": 0.2,
                "max_output_tokens": 300,
            }
        kwargs: dict[str, Any] = {
            "model": MODEL,
            "messages": _messages(),
            "temperature": 0.2,
            "max_tokens": 300,
        }
        if self.stream:
            kwargs["stream"] = True
            if self.user_usage:
                kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    def method(self, client: Any) -> Callable[..., Any]:
        """The bound SDK method this case calls."""
        if self.endpoint == "embeddings":
            return client.embeddings.create  # type: ignore[no-any-return]
        if self.endpoint == "responses":
            return client.responses.create  # type: ignore[no-any-return]
        return client.chat.completions.create  # type: ignore[no-any-return]


CASES: tuple[Case, ...] = (
    Case("chat", "chat.completions.create, sync, 2 KB prompt", "chat"),
    Case("chat_async", "chat.completions.create on AsyncOpenAI", "chat", is_async=True),
    Case("responses", "responses.create, sync, 2 KB prompt", "responses"),
    Case("embeddings", "embeddings.create, 1536 dimensions (base64)", "embeddings"),
    Case("stream_10", "chat stream, 10 chunks, usage injected", "chat", chunks=10),
    Case("stream_200", "chat stream, 200 chunks, usage injected", "chat", chunks=200, weight=5),
    Case(
        "stream_usage",
        "chat stream, 10 chunks, user set include_usage",
        "chat",
        chunks=10,
        user_usage=True,
    ),
)
EXTRA_CASES: tuple[Case, ...] = (
    Case("stream_50", "chat stream, 50 chunks, usage injected", "chat", chunks=50, weight=2),
)
"""Cases a run takes only when named (``--cases``); ``benchmarks/instructions.py`` counts
``stream_50``, and its per-chunk slope against ``stream_10``."""
CASES_BY_NAME = {case.name: case for case in (*CASES, *EXTRA_CASES)}
DEFAULT_CASES = tuple(case.name for case in CASES)
NON_STREAMING = ("chat", "chat_async", "responses", "embeddings")
SLOPE_CASES = ("stream_10", "stream_200")


# --- the fake API: pre-built bytes -----------------------------------------------------

_ID = b"@ID@"


def _headers(content_type: str) -> list[tuple[str, str]]:
    """Response headers shaped like the API's (the SDK reads some of them)."""
    return [
        ("date", "Tue, 25 Nov 2025 10:00:00 GMT"),
        ("content-type", content_type),
        ("access-control-expose-headers", "X-Request-ID"),
        ("openai-organization", "bench-org"),
        ("openai-processing-ms", "412"),
        ("openai-project", "proj_bench"),
        ("openai-version", "2020-10-01"),
        ("x-envoy-upstream-service-time", "415"),
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-limit-tokens", "30000000"),
        ("x-ratelimit-remaining-requests", "9999"),
        ("x-ratelimit-remaining-tokens", "29999512"),
        ("x-ratelimit-reset-requests", "6ms"),
        ("x-ratelimit-reset-tokens", "0s"),
        ("x-request-id", "req_0f6a2b8c4d1e4f3a9b7c5d2e1f0a3b4c"),
        ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
        ("cf-cache-status", "DYNAMIC"),
        ("x-content-type-options", "nosniff"),
        ("server", "cloudflare"),
        ("cf-ray", "9a4f1c2b3d5e6f70-AMS"),
        ("alt-svc", 'h3=":443"; ma=86400'),
    ]


def _chat_usage() -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def chat_body(response_model: str) -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-@ID@",
            "object": "chat.completion",
            "created": 1764064800,
            "model": response_model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": ANSWER,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _chat_usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_07871e2ad8",
        }
    )


def stream_body(response_model: str, chunks: int, *, include_usage: bool) -> bytes:
    """SSE as the API sends it: a role chunk, ``chunks`` content chunks, a finish chunk, then
    (when usage was asked for) ``usage: null`` on every chunk and a last chunk carrying it."""

    def event(choices: list[Any], usage: Any = None) -> bytes:
        data: dict[str, Any] = {
            "id": "chatcmpl-@ID@",
            "object": "chat.completion.chunk",
            "created": 1764064800,
            "model": response_model,
            "service_tier": "default",
            "system_fingerprint": "fp_07871e2ad8",
            "choices": choices,
        }
        if include_usage:
            data["usage"] = usage
        return b"data: " + _dumps(data) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [event(choice({"role": "assistant", "content": "", "refusal": None}))]
    words = itertools.cycle(WORDS)
    events.extend(event(choice({"content": next(words)})) for _ in range(chunks))
    events.append(event(choice({}, "stop")))
    if include_usage:
        events.append(event([], _chat_usage()))
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def responses_body(response_model: str) -> bytes:
    bench = policy_bench()
    return _dumps(
        {
            "id": "resp_@ID@",
            "object": "response",
            "created_at": 1764064800,
            "status": "completed",
            "background": False,
            "completed_at": 1764064801,
            "error": None,
            "incomplete_details": None,
            "instructions": bench.SYSTEM,
            "max_output_tokens": 300,
            "model": response_model,
            "output": [
                {
                    "id": "msg_@ID@",
                    "type": "message",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "annotations": [], "logprobs": [], "text": ANSWER}
                    ],
                    "role": "assistant",
                }
            ],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "prompt_cache_key": None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default",
            "store": True,
            "temperature": 0.2,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": {
                "input_tokens": PROMPT_TOKENS,
                "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
                "output_tokens": COMPLETION_TOKENS,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            },
            "user": None,
            "metadata": {},
        }
    )


def embeddings_body() -> bytes:
    floats = [((i * 7919) % 2000 - 1000) / 25000.0 for i in range(EMBED_DIMENSIONS)]
    vector = base64.b64encode(struct.pack(f"<{EMBED_DIMENSIONS}f", *floats)).decode()
    return _dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": EMBED_MODEL,
            "usage": {"prompt_tokens": EMBED_TOKENS, "total_tokens": EMBED_TOKENS},
        }
    )


def http_name() -> str:
    """``httpx2`` for openai 3.x, ``httpx`` for 1.x and 2.x (without importing openai)."""
    try:
        major = int(importlib.metadata.version("openai").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        major = 3
    return "httpx2" if major >= 3 else "httpx"


def http_module() -> ModuleType:
    return importlib.import_module(http_name())


def make_client(case: Case) -> Any:
    """A real openai client whose transport answers ``case``'s requests from memory."""
    import openai

    http = http_module()
    json_headers = _headers("application/json")
    sse_headers = _headers("text/event-stream; charset=utf-8")
    if case.endpoint == "embeddings":
        bodies = {EMBED_MODEL: embeddings_body()}
    elif case.endpoint == "responses":
        bodies = {m: responses_body(r) for m, r in RESPONSE_MODELS.items()}
    elif case.stream:
        bodies = {
            m: stream_body(r, case.chunks, include_usage=False) for m, r in RESPONSE_MODELS.items()
        }
        with_usage = {
            m: stream_body(r, case.chunks, include_usage=True) for m, r in RESPONSE_MODELS.items()
        }
    else:
        bodies = {m: chat_body(r) for m, r in RESPONSE_MODELS.items()}
    if not case.stream:
        with_usage = bodies
    headers = sse_headers if case.stream else json_headers
    routed = ROUTED_MODEL.encode()
    counter = itertools.count(1)

    def handler(request: Any) -> Any:
        content = request.content
        model = ROUTED_MODEL if routed in content else case.model
        table = with_usage if case.stream and b"include_usage" in content else bodies
        body = table[model].replace(_ID, b"%010d" % next(counter))
        return http.Response(200, headers=headers, content=body)

    transport = http.MockTransport(handler)
    if case.is_async:
        return openai.AsyncOpenAI(
            api_key="sk-bench", base_url=BASE_URL, http_client=http.AsyncClient(transport=transport)
        )
    return openai.OpenAI(
        api_key="sk-bench", base_url=BASE_URL, http_client=http.Client(transport=transport)
    )


# --- telemetry: real SDK pipelines, checked after every case ---------------------------


@dataclass
class Evidence:
    """What one case produced, read after the timed calls (and a flush)."""

    calls: int
    """Calls made in the case, warm-up included."""
    spans: int
    """Spans exported during the case."""
    last_span: dict[str, Any] | None
    """``{"name", "kind", "attributes"}`` of the last exported span."""
    metric_counts: dict[str, float]
    """Per metric: data points recorded during the case (histograms) or the sum added."""
    metric_labels: dict[str, list[list[str]]]
    """Per metric: the sorted attribute keys of each point the case recorded to."""
    warnings: dict[str, int]
    """Log records at WARNING or above during the case, by logger name."""


@dataclass(frozen=True)
class Check:
    """What a variant promises per call; the harness checks it after each case.

    ``setup(tracer_provider, meter_provider)`` returns one. All fields have defaults, so a
    variant states only what it produces.
    """

    spans_per_call: int = 1
    """Spans exported per call (0 for a variant that must produce none)."""
    span_attributes: Callable[[Case], Collection[str]] = lambda case: ()
    """Attribute keys that must be on the last span of the case."""
    metrics: Callable[[Case], Mapping[str, int | None]] = lambda case: {}
    """Metric name -> histogram points per call, or None for a counter that must grow."""
    loggers: tuple[str, ...] = ()
    """A WARNING from one of these loggers (or their children) makes the case invalid."""
    wrap: Callable[[Case, Callable[..., Any]], Callable[..., Any]] | None = None
    """For by-hand variants: given the case and the bound SDK method, return a callable with
    the same contract (the result; for streams, something to iterate to the end)."""
    extra: Callable[[Case, Evidence], list[str]] | None = None
    """Further problems to report, variant-specific."""

    def problems(self, case: Case, evidence: Evidence) -> list[str]:
        found = []
        expected = self.spans_per_call * evidence.calls
        if evidence.spans != expected:
            found.append(f"exported {evidence.spans} spans for {evidence.calls} calls")
        if self.span_attributes(case):
            attrs = evidence.last_span["attributes"] if evidence.last_span else {}
            missing = [k for k in self.span_attributes(case) if k not in attrs]
            if missing:
                found.append(f"last span lacks {', '.join(missing)}")
        for name, per_call in self.metrics(case).items():
            got = evidence.metric_counts.get(name, 0)
            if per_call is None and not got > 0:
                found.append(f"{name}: nothing added")
            elif per_call is not None and got != per_call * evidence.calls:
                found.append(f"{name}: {got:g} points for {evidence.calls} calls")
        for logger, count in evidence.warnings.items():
            if any(logger == n or logger.startswith(n + ".") for n in self.loggers):
                found.append(f"{count} warning(s) from {logger}")
        if self.extra is not None:
            found.extend(self.extra(case, evidence))
        return found


Setup = Callable[[Any, Any], Check]


class CountingExporter:
    """A span exporter that counts and discards, keeping the last span."""

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        if spans:
            self.last = spans[-1]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.name] = self.counts.get(record.name, 0) + 1


@dataclass
class Snapshot:
    spans: int
    points: dict[tuple[str, tuple[Any, ...]], float]
    warnings: dict[str, int]


@dataclass
class Pipeline:
    """The SDK providers a child records to, and what reads them back."""

    tracer_provider: Any
    meter_provider: Any
    exporter: CountingExporter
    reader: Any
    warnings: WarningCounter

    @classmethod
    def build(cls) -> Pipeline:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": "llmmeter-bench"})
        exporter = CountingExporter()
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[arg-type]
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        counter = WarningCounter()
        logging.getLogger().addHandler(counter)
        return cls(tracer_provider, meter_provider, exporter, reader, counter)

    def metric_points(self) -> dict[tuple[str, tuple[Any, ...]], float]:
        """Per metric and label set: the histogram's count, or the counter's sum."""
        points: dict[tuple[str, tuple[Any, ...]], float] = {}
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data is not None else ():
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        count = getattr(point, "count", None)
                        key = (metric.name, tuple(sorted((point.attributes or {}).items())))
                        points[key] = points.get(key, 0.0) + (
                            count if count is not None else point.value
                        )
        return points

    def snapshot(self) -> Snapshot:
        self.tracer_provider.force_flush()
        return Snapshot(self.exporter.count, self.metric_points(), dict(self.warnings.counts))

    def evidence(self, calls: int, before: Snapshot) -> Evidence:
        after = self.snapshot()
        counts: dict[str, float] = {}
        labels: dict[str, set[tuple[str, ...]]] = {}
        for (name, attributes), value in after.points.items():
            added = value - before.points.get((name, attributes), 0.0)
            if added:  # only the points this case recorded to
                counts[name] = counts.get(name, 0.0) + added
                labels.setdefault(name, set()).add(tuple(k for k, _ in attributes))
        last = self.exporter.last
        last_span = None
        if last is not None:
            last_span = {
                "name": last.name,
                "kind": last.kind.name,
                "attributes": {k: _jsonable(v) for k, v in (last.attributes or {}).items()},
            }
        warnings0 = before.warnings
        return Evidence(
            calls=calls,
            spans=after.spans - before.spans,
            last_span=last_span,
            metric_counts=counts,
            metric_labels={k: [list(keys) for keys in sorted(v)] for k, v in labels.items()},
            warnings={
                k: v - warnings0.get(k, 0)
                for k, v in after.warnings.items()
                if v > warnings0.get(k, 0)
            },
        )


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --- variants --------------------------------------------------------------------------


def llmmeter_span_attributes(case: Case) -> tuple[str, ...]:
    keys = [INPUT_TOKENS, COST, RESPONSE_MODEL]
    if case.endpoint != "embeddings":
        keys.append(OUTPUT_TOKENS)
    if case.stream:
        keys.append(STREAM_END)
    return tuple(keys)


def llmmeter_metrics(case: Case) -> dict[str, int | None]:
    expected: dict[str, int | None] = {
        DURATION_METRIC: 1,
        TOKEN_METRIC: 1 if case.endpoint == "embeddings" else 2,
        COST_METRIC: None,
    }
    if case.stream:
        expected[TTFC_METRIC] = 1
    return expected


def setup_bare(tracer_provider: Any, meter_provider: Any) -> Check:
    """No instrumentation: the SDK alone (it must export no span)."""
    return Check(spans_per_call=0)


def setup_llmmeter(tracer_provider: Any, meter_provider: Any, policy: str | None = None) -> Check:
    """``llmmeter.instrument()`` with its defaults: cost on, content off, no policy."""
    import llmmeter

    llmmeter.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, policy=policy
    )
    return Check(
        span_attributes=llmmeter_span_attributes, metrics=llmmeter_metrics, loggers=("llmmeter",)
    )


def policy_toml(*, match: bool) -> str:
    """``benchmarks/policy.py``'s 10 rules; with ``match``, one regex rule matches the prompt."""
    toml: str = policy_bench().POLICY_TOML
    if match:
        anchor = f'name = "{MATCH_RULE}"'
        head, found, tail = toml.partition(anchor)
        if not found or "prompt = [\n" not in tail:
            raise SystemExit(f"benchmarks/policy.py: no rule {MATCH_RULE!r} with prompt patterns")
        tail = tail.replace("prompt = [\n", f"prompt = [\n  {MATCH_PATTERN}\n", 1)
        toml = head + found + tail
    return toml


def _policy_file(*, match: bool) -> str:
    directory = Path(tempfile.mkdtemp(prefix="llmmeter-bench-"))
    path = directory / "policy.toml"
    path.write_text(policy_toml(match=match), encoding="utf-8")
    return str(path)


def setup_llmmeter_policy(tracer_provider: Any, meter_provider: Any) -> Check:
    """llmmeter with the 10-rule policy file, enforce mode: no rule matches these calls."""
    check = setup_llmmeter(tracer_provider, meter_provider, policy=_policy_file(match=False))

    def no_route(case: Case, evidence: Evidence) -> list[str]:
        attrs = evidence.last_span["attributes"] if evidence.last_span else {}
        return [f"routed by {attrs[POLICY_RULE]}"] if POLICY_RULE in attrs else []

    return Check(
        span_attributes=check.span_attributes,
        metrics=check.metrics,
        loggers=check.loggers,
        extra=no_route,
    )


def setup_llmmeter_policy_match(tracer_provider: Any, meter_provider: Any) -> Check:
    """The same policy with one regex rule matching the prompt: chat calls are routed."""
    check = setup_llmmeter(tracer_provider, meter_provider, policy=_policy_file(match=True))

    def keys(case: Case) -> tuple[str, ...]:
        base = tuple(check.span_attributes(case))
        return (*base, POLICY_RULE) if case.endpoint != "embeddings" else base

    return Check(span_attributes=keys, metrics=check.metrics, loggers=check.loggers)


# The floor: what llmmeter's telemetry costs in OpenTelemetry alone, written by hand. The
# attribute names mirror llmmeter's (`src/llmmeter/_semconv.py`); the parent compares the
# floor's last span and metric labels with llmmeter's, so a drift shows as invalid.

_FLOOR_PRICES = {  # USD per token: input, cached input, output (what a price table holds)
    "gpt-4o-2024-08-06": (2.5e-6, 1.25e-6, 10e-6),
    "gpt-4o-mini-2024-07-18": (0.15e-6, 0.075e-6, 0.6e-6),
    EMBED_MODEL: (0.02e-6, 0.02e-6, 0.0),
}
_PRICE_REF = f"genai-prices {importlib.metadata.version('genai-prices')}"


Tokens = tuple[int, int | None, int | None, int | None]
"""Input, output, cached input and reasoning tokens, as the response reports them."""


def floor_request(case: Case) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The span name, the span's start attributes and the metric labels llmmeter sets for
    ``case`` (they depend only on the request: computed once per case)."""
    operation = "embeddings" if case.endpoint == "embeddings" else "chat"
    labels: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "openai",
        "server.address": "api.openai.com",
        "gen_ai.request.model": case.model,
        "server.port": 443,
    }
    start = dict(labels)
    if case.endpoint != "embeddings":
        start["openai.api.type"] = "chat_completions" if case.endpoint == "chat" else "responses"
    if case.endpoint != "embeddings":
        start["gen_ai.request.temperature"] = 0.2
        start["gen_ai.request.max_tokens"] = 300
    if case.stream:
        start["gen_ai.request.stream"] = True
        if not case.user_usage:
            start["llmmeter.stream.usage_injected"] = True
    return f"{operation} {case.model}", start, labels


def read_chat(result: Any) -> tuple[dict[str, Any], Tokens]:
    usage = result.usage
    attrs = {
        "gen_ai.response.id": result.id,
        "gen_ai.response.model": result.model,
        "gen_ai.response.finish_reasons": [c.finish_reason for c in result.choices],
        "openai.response.service_tier": result.service_tier,
        "openai.response.system_fingerprint": result.system_fingerprint,
    }
    return attrs, (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.prompt_tokens_details.cached_tokens,
        usage.completion_tokens_details.reasoning_tokens,
    )


def read_responses(result: Any) -> tuple[dict[str, Any], Tokens]:
    usage = result.usage
    attrs = {
        "gen_ai.response.id": result.id,
        "gen_ai.response.model": result.model,
        "gen_ai.response.finish_reasons": ["stop" if result.status == "completed" else "error"],
        "openai.response.service_tier": result.service_tier,
    }
    return attrs, (
        usage.input_tokens,
        usage.output_tokens,
        usage.input_tokens_details.cached_tokens,
        usage.output_tokens_details.reasoning_tokens,
    )


def read_embeddings(result: Any) -> tuple[dict[str, Any], Tokens]:
    return {"gen_ai.response.model": result.model}, (result.usage.prompt_tokens, None, None, None)


READERS = {"chat": read_chat, "responses": read_responses, "embeddings": read_embeddings}


class Floor:
    """One CLIENT span and the same metric records as llmmeter, by hand, without patching."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind

        self._attach, self._detach = context.attach, context.detach
        self._in_context = trace.set_span_in_context
        self._empty = context.Context()
        self._client = SpanKind.CLIENT
        self.tracer = tracer_provider.get_tracer("llmmeter-bench-floor")
        meter = meter_provider.get_meter("llmmeter-bench-floor")
        seconds = [round(0.01 * 2**i, 2) for i in range(14)]
        self.duration = meter.create_histogram(
            DURATION_METRIC, unit="s", explicit_bucket_boundaries_advisory=seconds
        )
        self.tokens = meter.create_histogram(
            TOKEN_METRIC,
            unit="{token}",
            explicit_bucket_boundaries_advisory=[float(4**i) for i in range(14)],
        )
        self.ttfc = meter.create_histogram(
            TTFC_METRIC, unit="s", explicit_bucket_boundaries_advisory=seconds
        )
        self.cost = meter.create_counter(COST_METRIC, unit="{USD}")

    def wrap(self, case: Case, create: Callable[..., Any]) -> Callable[..., Any]:
        """``create`` with a span made current while it runs, and the telemetry recorded."""
        name, start, labels = floor_request(case)
        tracer, kind, attach, detach = self.tracer, self._client, self._attach, self._detach
        in_context, clock, read = self._in_context, time.perf_counter, READERS[case.endpoint]
        hide = case.stream and not case.user_usage
        extra = {"stream_options": {"include_usage": True}} if hide else {}

        if case.stream:

            def stream_create(**kwargs: Any) -> Any:
                started = clock()
                span = tracer.start_span(name, kind=kind, attributes=start)
                token = attach(in_context(span))
                try:
                    stream = create(**kwargs, **extra)
                finally:
                    detach(token)
                return self._iterate(stream, span, labels, started, hide=hide)

            return stream_create

        if case.is_async:

            async def async_create(**kwargs: Any) -> Any:
                started = clock()
                span = tracer.start_span(name, kind=kind, attributes=start)
                token = attach(in_context(span))
                try:
                    result = await create(**kwargs)
                finally:
                    detach(token)
                self._end(span, labels, started, *read(result))
                return result

            return async_create

        def sync_create(**kwargs: Any) -> Any:
            started = clock()
            span = tracer.start_span(name, kind=kind, attributes=start)
            token = attach(in_context(span))
            try:
                result = create(**kwargs)
            finally:
                detach(token)
            self._end(span, labels, started, *read(result))
            return result

        return sync_create

    def _iterate(
        self, stream: Any, span: Any, labels: dict[str, Any], started: float, *, hide: bool
    ) -> Any:
        first = usage = last = finish = None
        for chunk in stream:
            last = chunk
            choices = chunk.choices
            if choices:
                choice = choices[0]
                if first is None and choice.delta.content:
                    first = time.perf_counter()
                if choice.finish_reason is not None:
                    finish = choice.finish_reason
            elif chunk.usage is not None:
                usage = chunk.usage
                if hide:
                    continue
            yield chunk
        attrs: dict[str, Any] = {"llmmeter.stream.end": "exhausted"}
        if last is not None:
            attrs["gen_ai.response.id"] = last.id
            attrs["gen_ai.response.model"] = last.model
            attrs["openai.response.service_tier"] = last.service_tier
            attrs["openai.response.system_fingerprint"] = last.system_fingerprint
        if finish is not None:
            attrs["gen_ai.response.finish_reasons"] = [finish]
        ttfc = None if first is None else first - started
        if ttfc is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = ttfc
        tokens = None
        if usage is not None:
            tokens = (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.prompt_tokens_details.cached_tokens,
                usage.completion_tokens_details.reasoning_tokens,
            )
        self._end(span, labels, started, attrs, tokens, ttfc=ttfc)

    def _end(
        self,
        span: Any,
        labels: dict[str, Any],
        started: float,
        attrs: dict[str, Any],
        tokens: Tokens | None,
        *,
        ttfc: float | None = None,
    ) -> None:
        duration = time.perf_counter() - started
        model = attrs.get("gen_ai.response.model")
        if model:
            labels = {**labels, "gen_ai.response.model": model}
        cost = None
        if tokens is not None:
            input_tokens, output_tokens, cached, reasoning = tokens
            attrs["gen_ai.usage.input_tokens"] = input_tokens
            if output_tokens is not None:
                attrs["gen_ai.usage.output_tokens"] = output_tokens
            if cached is not None:
                attrs["gen_ai.usage.cache_read.input_tokens"] = cached
            if reasoning is not None:
                attrs["gen_ai.usage.reasoning.output_tokens"] = reasoning
            rates = _FLOOR_PRICES.get(model or "")
            if rates is not None:
                cost_in = (input_tokens - (cached or 0)) * rates[0] + (cached or 0) * rates[1]
                cost_out = (output_tokens or 0) * rates[2]
                cost = cost_in + cost_out
                attrs["gen_ai.usage.cost.amount"] = cost
                attrs["gen_ai.usage.cost.currency"] = "USD"
                attrs["gen_ai.usage.cost.source"] = "local"
                attrs["llmmeter.cost.input"] = cost_in
                attrs["llmmeter.cost.output"] = cost_out
            attrs["llmmeter.price.ref"] = _PRICE_REF
        span.set_attributes(attrs)
        span.end()
        # In the span's context, so that the SDK's exemplars link each point to its call.
        context = self._in_context(span, self._empty)
        self.duration.record(duration, labels, context)
        if ttfc is not None:
            self.ttfc.record(ttfc, labels, context)
        if tokens is not None:
            self.tokens.record(tokens[0], {**labels, "gen_ai.token.type": "input"}, context)
            if tokens[1] is not None:
                self.tokens.record(tokens[1], {**labels, "gen_ai.token.type": "output"}, context)
        if cost is not None:
            self.cost.add(cost, labels, context)


def setup_floor(tracer_provider: Any, meter_provider: Any) -> Check:
    """By hand: the OpenTelemetry work llmmeter cannot avoid, no SDK patching."""
    floor = Floor(tracer_provider, meter_provider)
    return Check(
        span_attributes=llmmeter_span_attributes, metrics=llmmeter_metrics, wrap=floor.wrap
    )


VARIANTS: dict[str, Setup] = {
    "bare": setup_bare,
    "floor": setup_floor,
    "llmmeter": setup_llmmeter,
    "llmmeter-policy": setup_llmmeter_policy,
    "llmmeter-policy-match": setup_llmmeter_policy_match,
}
"""Built-in variants by name; others are named ``module:function`` (see the docstring)."""
DEFAULT_VARIANTS = tuple(VARIANTS)
LLMMETER_VARIANTS = ("llmmeter", "llmmeter-policy", "llmmeter-policy-match")


def resolve_variant(target: str) -> Setup:
    """A built-in variant's setup, or the function a ``module:function`` target names."""
    if target in VARIANTS:
        return VARIANTS[target]
    module_name, colon, function = target.partition(":")
    if not colon:
        known = ", ".join(VARIANTS)
        raise SystemExit(f"unknown variant {target!r}: one of {known}, or module:function")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    setup: Setup = getattr(importlib.import_module(module_name), function)
    return setup


@dataclass(frozen=True)
class VariantSpec:
    """``name=module:function@python``: a variant as the parent runs it."""

    name: str
    target: str
    python: str | None = None

    @classmethod
    def parse(cls, text: str) -> VariantSpec:
        text = text.strip()
        rest, at, python = text.partition("@")
        name, eq, target = rest.partition("=")
        if not eq:
            name, target = rest, rest
        return cls(name, target, python if at else None)


# --- the child: one variant, the selected cases ----------------------------------------


@dataclass
class Timing:
    calls: int
    batch_us: list[float] = field(default_factory=list)


def _time_sync(fn: Callable[[], Any], warmup: int, per_batch: int, batches: int) -> Timing:
    for _ in range(warmup):
        fn()
    timing = Timing(warmup + per_batch * batches)
    clock = time.perf_counter_ns
    for _ in range(batches):
        gc.collect()
        start = clock()
        for _ in range(per_batch):
            fn()
        timing.batch_us.append((clock() - start) / per_batch / 1000)
    return timing


async def _time_async(fn: Callable[[], Any], warmup: int, per_batch: int, batches: int) -> Timing:
    for _ in range(warmup):
        await fn()
    timing = Timing(warmup + per_batch * batches)
    clock = time.perf_counter_ns
    for _ in range(batches):
        gc.collect()
        start = clock()
        for _ in range(per_batch):
            await fn()
        timing.batch_us.append((clock() - start) / per_batch / 1000)
    return timing


def call_of(case: Case, create: Callable[..., Any]) -> Callable[[], Any]:
    kwargs = case.kwargs()
    if case.is_async:
        if case.stream:

            async def async_stream() -> None:
                async for _ in await create(**kwargs):
                    pass

            return async_stream

        async def async_call() -> Any:
            return await create(**kwargs)

        return async_call
    if case.stream:

        def sync_stream() -> None:
            for _ in create(**kwargs):
                pass

        return sync_stream
    return lambda: create(**kwargs)


@dataclass(frozen=True)
class CaseCall:
    """One case's call on a fresh client, as the variant set up in this child makes it."""

    case: Case
    call: Callable[[], Any]
    """No arguments; a coroutine function for an async case; reads a stream to its end."""
    pipeline: Pipeline
    check: Check


def case_calls(target: str, cases: Sequence[Case]) -> Iterator[CaseCall]:
    """Set the variant up, then each case's call (a by-hand variant's wrap applied); closes
    each client after its case, and the providers after the last."""
    pipeline = Pipeline.build()
    check = resolve_variant(target)(pipeline.tracer_provider, pipeline.meter_provider)
    for case in cases:
        client = make_client(case)
        create = case.method(client)
        if check.wrap is not None:
            create = check.wrap(case, create)
        yield CaseCall(case, call_of(case, create), pipeline, check)
        close = getattr(client, "close", None)
        if close is not None and not case.is_async:
            close()
    pipeline.tracer_provider.shutdown()
    pipeline.meter_provider.shutdown()


def run_child(
    target: str, cases: Sequence[Case], calls: int, warmup: int, batches: int
) -> dict[str, Any]:
    """Set the variant up, time each case, check its telemetry: the child's JSON report."""
    report: dict[str, Any] = {"variant": target, "cases": {}}
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    for each in case_calls(target, cases):
        case, fn, pipeline, check = each.case, each.call, each.pipeline, each.check
        per_batch = max(1, calls // case.weight // batches)
        case_warmup = max(1, warmup // case.weight)
        before = pipeline.snapshot()
        if case.is_async:
            timing = asyncio.run(_time_async(fn, case_warmup, per_batch, batches))
        else:
            timing = _time_sync(fn, case_warmup, per_batch, batches)
        evidence = pipeline.evidence(timing.calls, before)
        report["cases"][case.name] = {
            "calls": timing.calls,
            "timed_calls": per_batch * batches,
            "batch_us": [round(us, 3) for us in timing.batch_us],
            "best_us": round(min(timing.batch_us), 3),
            "median_us": round(statistics.median(timing.batch_us), 3),
            "spans": evidence.spans,
            "problems": check.problems(case, evidence),
            "last_span": evidence.last_span,
            "metric_labels": evidence.metric_labels,
            "warnings": evidence.warnings,
            "cpus": cpus,
        }
    return report


# --- micro benchmarks: a routing decision, a price lookup ------------------------------

PRICE_CASES: tuple[tuple[str, tuple[str | None, ...], bool], ...] = (
    ("known model (gpt-4o-mini)", ("gpt-4o-mini",), True),
    ("dated snapshot (gpt-4o-2024-08-06, then gpt-4o)", ("gpt-4o-2024-08-06", "gpt-4o"), True),
    ("unknown model", ("acme-llm-7b-chat", None), False),
)
POLICY_NO_MATCH = "no rule names the model"
POLICY_NO_MATCH_SCAN = "globs match, nothing else (regex scans)"
POLICY_GLOB_MATCH = "glob + task match (first rule)"
POLICY_REGEX_MATCH = "prompt regex match"


def _micro_timings(fn: Callable[[], Any], calls: int, batches: int) -> list[float]:
    fn()
    out = []
    clock = time.perf_counter_ns
    for _ in range(batches):
        gc.collect()
        start = clock()
        for _ in range(calls):
            fn()
        out.append((clock() - start) / calls / 1000)
    return out


def run_micro(calls: int, batches: int) -> dict[str, Any]:
    """Routing decisions (``benchmarks/policy.py``'s cases) and price lookups, µs each."""
    import llmmeter
    from llmmeter._policy import CallView
    from llmmeter._pricing import PriceTable
    from llmmeter._rules import RulePolicy
    from llmmeter._task import current_key, current_task
    from llmmeter._usage import Usage

    bench = policy_bench()
    results: dict[str, Any] = {"policy": {}, "price": {}, "problems": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.toml"
        path.write_text(bench.POLICY_TOML, encoding="utf-8")
        policy = RulePolicy.load(path)
        if len(policy.rules) != 10:
            results["problems"].append(f"policy has {len(policy.rules)} rules, not 10")
        for case in bench.CASES:
            endpoint, model, kwargs = case.endpoint, case.model, case.kwargs

            def decide(endpoint: str = endpoint, model: str = model, kwargs: Any = kwargs) -> Any:
                return policy.decide(
                    CallView(
                        endpoint=endpoint,
                        operation="chat",
                        model=model,
                        kwargs=kwargs,
                        task=current_task.get(),
                        key=current_key.get(),
                    )
                )

            labelled = (
                llmmeter.task(case.task, key=case.key) if case.task else contextlib.nullcontext()
            )
            with labelled:
                view = CallView(
                    endpoint=endpoint,
                    operation="chat",
                    model=model,
                    kwargs=kwargs,
                    task=current_task.get(),
                    key=current_key.get(),
                )
                explained = policy.explain(view)
                rule = explained.rule.name if explained.rule is not None else None
                if rule != case.rule:
                    results["problems"].append(f"{case.name}: {rule!r} decided, not {case.rule!r}")
                timings = _micro_timings(decide, calls, batches)
            results["policy"][case.name] = _summary(timings)

    table = PriceTable.load()
    usage = Usage(input_tokens=1200, cache_read_tokens=1024, output_tokens=350, reasoning_tokens=64)
    for name, models, priced in PRICE_CASES:

        def lookup(models: tuple[str | None, ...] = models) -> Any:
            return table.price(usage, models, service_tier="default")

        cost = lookup()
        if (cost is not None) != priced or (cost is not None and not cost.total > 0):
            results["problems"].append(f"price {name}: got {cost!r}")
        results["price"][name] = _summary(_micro_timings(lookup, calls, batches))
    return results


def _summary(batch_us: Sequence[float]) -> dict[str, Any]:
    return {
        "best_us": round(min(batch_us), 3),
        "median_us": round(statistics.median(batch_us), 3),
        "batch_us": [round(us, 3) for us in batch_us],
    }


# --- the parent: schedule, run, aggregate ----------------------------------------------


def _cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (idle, total) jiffies from ``/proc/stat``."""
    times = {}
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(v) for v in fields[:8]]
                times[int(name[3:])] = (values[3] + values[4], sum(values))
    return times


def idlest_cpu(allowed: Collection[int]) -> int:
    """The CPU that was idle the most over the last 0.2 s (the highest, on a tie)."""
    before = _cpu_times()
    time.sleep(0.2)
    after = _cpu_times()

    def idle(cpu: int) -> float:
        if cpu not in before or cpu not in after:
            return 0.0
        total = after[cpu][1] - before[cpu][1]
        return (after[cpu][0] - before[cpu][0]) / total if total else 1.0

    return max(sorted(allowed), key=idle)


class Pinning:
    """``taskset -c CPU`` in front of every child, where taskset exists.

    A fixed ``--cpu`` pins every child there; by default each child goes to the CPU that was
    the idlest just before it started (shared machines: other work may hold a core).
    """

    def __init__(self, cpu: int | None) -> None:
        self.taskset = shutil.which("taskset")
        self.cpu = cpu
        try:
            self.allowed: set[int] = os.sched_getaffinity(0)
        except AttributeError:  # not Linux
            self.allowed = set()

    @property
    def enabled(self) -> bool:
        return bool(self.taskset and self.allowed) and (self.cpu is None or self.cpu >= 0)

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned"
        if self.cpu is not None:
            return f"each child pinned to CPU {self.cpu} (taskset)"
        return "each child pinned (taskset) to the CPU idlest when it started"

    def prefix(self) -> list[str]:
        if not self.enabled or self.taskset is None:
            return []
        cpu = self.cpu if self.cpu is not None else idlest_cpu(self.allowed)
        return [self.taskset, "-c", str(cpu)]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMMETER_", "OTEL_"))}
    env["PYTHONHASHSEED"] = "0"
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class ChildResult:
    ok: bool
    data: dict[str, Any]
    seconds: float
    error: str = ""


def run_process(command: list[str], timeout: float) -> ChildResult:
    """Run a child that writes JSON to the ``--out`` file at the end of ``command``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [*command, "--out", str(out)],
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ChildResult(False, {}, timeout, f"timed out after {timeout:.0f} s")
        seconds = time.perf_counter() - started
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return ChildResult(False, {}, seconds, f"exit {proc.returncode}: {tail}")
        return ChildResult(True, json.loads(out.read_text(encoding="utf-8")), seconds)


@dataclass
class Config:
    variants: list[VariantSpec]
    cases: list[Case]
    rounds: int = 5
    calls: int = 500
    warmup: int = 100
    batches: int = 10
    micro_calls: int = 5000
    micro_batches: int = 5
    import_repeats: int = 7
    soak_calls: int = 10_000
    soak_every: int = 2500
    soak_warmup: int = 2000
    cpu: int | None = None
    smoke: bool = False
    parallel: bool = False
    """Run a round's children at once (smoke runs: validity only, no timing counts)."""
    micro: bool = True
    imports: bool = True


def _rotate(items: Sequence[Any], by: int) -> list[Any]:
    if not items:
        return []
    by %= len(items)
    return [*items[by:], *items[:by]]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_jobs(
    jobs: Sequence[tuple[str, list[str]]], pinning: Pinning, *, parallel: bool
) -> list[tuple[str, ChildResult]]:
    """One after the other, each pinned; or (``--smoke``: no timing counts) all at once."""
    if not parallel:
        return [(name, run_process([*pinning.prefix(), *command], 1800)) for name, command in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        futures = [(name, pool.submit(run_process, command, 1800)) for name, command in jobs]
        return [(name, future.result()) for name, future in futures]


def run_benchmark(config: Config) -> dict[str, Any]:
    """Every round, import timing and the soak; the raw results and their aggregation."""
    pinning = Pinning(config.cpu)
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {v.name: {} for v in config.variants}
    failures: list[str] = []
    micro_rounds: list[dict[str, Any]] = []
    started = time.perf_counter()
    load_before = _loadavg()
    script = str(Path(__file__).resolve())
    for index in range(config.rounds):
        cases = ",".join(c.name for c in _rotate(config.cases, index))
        sizes = ["--calls", str(config.calls), "--warmup", str(config.warmup)]
        sizes += ["--batches", str(config.batches), "--case", cases]
        jobs: list[tuple[str, list[str]]] = [
            (spec.name, [spec.python or sys.executable, script, "--child", spec.target, *sizes])
            for spec in _rotate(config.variants, index)
        ]
        if config.micro:
            jobs.append(("micro", [sys.executable, script, "--child", "micro"]))
            jobs[-1][1].extend(["--calls", str(config.micro_calls)])
            jobs[-1][1].extend(["--batches", str(config.micro_batches)])
        for name, result in _run_jobs(jobs, pinning, parallel=config.parallel):
            _progress(
                f"round {index + 1}/{config.rounds}  {name:<24} "
                f"{'ok' if result.ok else 'FAILED'}  {result.seconds:5.1f} s"
            )
            if not result.ok:
                failures.append(f"round {index + 1}, {name}: {result.error}")
            elif name == "micro":
                micro_rounds.append(result.data)
            else:
                for case, entry in result.data["cases"].items():
                    raw[name].setdefault(case, []).append({"round": index + 1, **entry})
    imports = measure_imports(config.import_repeats, pinning) if config.imports else None
    if imports is not None:
        failures.extend(imports.pop("failures", []))
    soak = run_soak(config, pinning)
    load_after = _loadavg()
    results = {
        "meta": environment(pinning, config, load_before, load_after),
        "raw": raw,
        "micro_rounds": micro_rounds,
        "imports": imports,
        "soak": soak,
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return summarise(config, results)


def summarise(config: Config, results: dict[str, Any]) -> dict[str, Any]:
    """Aggregate the raw results, check validity, read the targets (in place)."""
    raw, micro_rounds = results["raw"], results["micro_rounds"]
    results["aggregate"] = aggregate(config, raw)
    results["micro"] = aggregate_micro(micro_rounds)
    results["problems"] = telemetry_problems(config, raw, micro_rounds, results["soak"])
    results["targets"] = targets(results)
    return results


def load_results(path: Path) -> tuple[Config, dict[str, Any]]:
    """A run saved with ``--json``, summarised again (``--from-json``: re-render, no run)."""
    results = json.loads(path.read_text(encoding="utf-8"))
    meta = results["meta"]
    names = [c for c in CASES_BY_NAME if any(c in cases for cases in results["raw"].values())]
    config = Config(
        variants=[VariantSpec(name, name) for name in results["raw"]],
        cases=[CASES_BY_NAME[name] for name in names],
        rounds=meta["rounds"],
        calls=meta["calls"],
        warmup=meta["warmup"],
        batches=meta["batches"],
        import_repeats=meta.get("import_repeats", 0),
        smoke=meta["smoke"],
    )
    return config, summarise(config, results)


def _spread(values: Sequence[float]) -> float:
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle * 100 if middle else 0.0


def _paired(ours: Mapping[int, float], theirs: Mapping[int, float] | None) -> float | None:
    """Median over rounds of ``ours - theirs``, taken within each round."""
    if theirs is None:
        return None
    deltas = [value - theirs[k] for k, value in ours.items() if k in theirs]
    return statistics.median(deltas) if deltas else None


def aggregate(
    config: Config, raw: Mapping[str, Mapping[str, list[dict[str, Any]]]]
) -> dict[str, Any]:
    """Per case and variant: best, median, overhead against bare and as a multiple of floor.

    Two estimates of the overhead, both from best batches (time on a shared machine only ever
    adds): the primary one from the fastest batch of all rounds (``variant best - bare
    best``), and a paired one, the median over rounds of the same difference within each
    round (drift between rounds cancels, but a round that was disturbed throughout counts).
    The slope per streamed chunk is computed both ways.
    """
    out: dict[str, Any] = {}
    bests: dict[str, dict[str, dict[int, float]]] = {}
    for spec in config.variants:
        bests[spec.name] = {
            case: {r["round"]: r["best_us"] for r in entries}
            for case, entries in raw.get(spec.name, {}).items()
        }
    for case in config.cases:
        rows: dict[str, Any] = {}
        bare = bests.get("bare", {}).get(case.name)
        for spec in config.variants:
            rounds = raw.get(spec.name, {}).get(case.name, [])
            if not rounds:
                continue
            mine = bests[spec.name][case.name]
            row: dict[str, Any] = {
                "rounds": len(rounds),
                "best_us": min(mine.values()),
                "median_us": statistics.median(r["median_us"] for r in rounds),
                "typical_best_us": statistics.median(mine.values()),
                "spread_pct": _spread(list(mine.values())),
            }
            if spec.name != "bare" and bare:
                row["over_bare_us"] = row["best_us"] - min(bare.values())
                row["paired_over_bare_us"] = _paired(mine, bare)
            rows[spec.name] = row
        floor = rows.get("floor", {})
        for name, row in rows.items():
            for key, ratio in (
                ("over_bare_us", "x_floor"),
                ("paired_over_bare_us", "paired_x_floor"),
            ):
                over, floor_over = row.get(key), floor.get(key)
                if (
                    name != "bare"
                    and over is not None
                    and floor_over is not None
                    and floor_over > 0
                ):
                    row[ratio] = over / floor_over
        out[case.name] = rows
    slopes: dict[str, Any] = {}
    for spec in config.variants:
        short = bests[spec.name].get("stream_10", {})
        long = bests[spec.name].get("stream_200", {})
        per_round = {k: (long[k] - short[k]) / 190 for k in long if k in short}
        if per_round:
            slopes[spec.name] = {
                "per_chunk_us": (min(long.values()) - min(short.values())) / 190,
                "paired_per_chunk_us": statistics.median(per_round.values()),
                "rounds": per_round,
            }
    bare_slope = slopes.get("bare")
    for name, slope in slopes.items():
        if name != "bare" and bare_slope is not None:
            slope["over_bare_us"] = slope["per_chunk_us"] - bare_slope["per_chunk_us"]
            slope["paired_over_bare_us"] = _paired(slope["rounds"], bare_slope["rounds"])
    out["per_chunk"] = slopes
    return out


def aggregate_micro(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per decision or lookup: the best batch, and the median over rounds of each best."""
    out: dict[str, Any] = {"policy": {}, "price": {}}
    for group in ("policy", "price"):
        names = list(rounds[0][group]) if rounds else []
        for name in names:
            entries = [r[group][name] for r in rounds if name in r[group]]
            out[group][name] = {
                "best_us": min(e["best_us"] for e in entries),
                "typical_best_us": statistics.median(e["best_us"] for e in entries),
                "median_us": statistics.median(e["median_us"] for e in entries),
            }
    return out


def telemetry_problems(
    config: Config,
    raw: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    micro_rounds: Sequence[Mapping[str, Any]],
    soak: Mapping[str, Any] | None,
) -> list[str]:
    """Every reason a number does not count: invalid telemetry, or a floor that drifted."""
    problems: list[str] = []
    for spec in config.variants:
        for case in config.cases:
            entries = raw.get(spec.name, {}).get(case.name, [])
            for entry in entries:
                problems.extend(
                    f"{spec.name} / {case.name} / round {entry['round']}: {p}"
                    for p in entry["problems"]
                )
    for case in config.cases:  # the floor must do llmmeter's work: same keys
        ours = raw.get("llmmeter", {}).get(case.name)
        floor = raw.get("floor", {}).get(case.name)
        if not ours or not floor:
            continue
        rounds = {entry["round"]: entry for entry in floor}
        a = next((e for e in reversed(ours) if e["round"] in rounds), ours[-1])
        b = rounds.get(a["round"], floor[-1])
        span_a = a["last_span"] or {"name": None, "kind": None, "attributes": {}}
        span_b = b["last_span"] or {"name": None, "kind": None, "attributes": {}}
        missing = sorted(set(span_a["attributes"]) - set(span_b["attributes"]))
        extra = sorted(set(span_b["attributes"]) - set(span_a["attributes"]))
        if missing or extra or (span_a["name"], span_a["kind"]) != (span_b["name"], span_b["kind"]):
            problems.append(
                f"floor / {case.name}: span differs from llmmeter's "
                f"(missing {missing}, extra {extra}, name/kind {span_b['name']!r}/{span_b['kind']} "
                f"vs {span_a['name']!r}/{span_a['kind']})"
            )
        for metric, labels in a["metric_labels"].items():
            if metric in b["metric_labels"] and b["metric_labels"][metric] != labels:
                problems.append(f"floor / {case.name}: {metric} labels differ from llmmeter's")
        recorded = {m for m, labels in a["metric_labels"].items() if labels}
        unrecorded = sorted(recorded - {m for m, labels in b["metric_labels"].items() if labels})
        if unrecorded:
            problems.append(f"floor / {case.name}: records no {', '.join(unrecorded)}")
    for index, micro in enumerate(micro_rounds, 1):
        problems.extend(f"micro / round {index}: {p}" for p in micro.get("problems", []))
    if soak is not None and soak.get("ran") and not soak.get("valid"):
        problems.append(f"soak: telemetry invalid ({soak.get('failed_checks')})")
    return problems


# --- import time -----------------------------------------------------------------------

_IMPORT_CODE = """
import json, sys, time
clock = time.perf_counter
out = {{}}
if {providers}:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    tracer_provider, meter_provider = TracerProvider(), MeterProvider()
if {openai_first}:
    import openai
t = clock()
if {llmmeter}:
    import llmmeter
    out["openai_after_import"] = "openai" in sys.modules
    if {instrument}:
        llmmeter.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        out["openai_after_instrument"] = "openai" in sys.modules
elif not {openai_first}:
    import openai
out["ms"] = (clock() - t) * 1000
if {llmmeter} and not {openai_first}:
    t = clock()
    import openai
    out["openai_ms"] = (clock() - t) * 1000
print(json.dumps(out))
"""


def _import_code(*, llmmeter: bool, instrument: bool, openai_first: bool) -> str:
    return _IMPORT_CODE.format(
        providers=instrument, openai_first=openai_first, llmmeter=llmmeter, instrument=instrument
    )


IMPORT_ONLY = "import llmmeter"
INSTRUMENT_FIRST = "import llmmeter + instrument(), then the app imports openai"
OPENAI_FIRST = "import llmmeter + instrument() after import openai (patches at once)"
OPENAI_ALONE = "import openai, no llmmeter"
IMPORT_CASES = (
    (IMPORT_ONLY, _import_code(llmmeter=True, instrument=False, openai_first=False)),
    (INSTRUMENT_FIRST, _import_code(llmmeter=True, instrument=True, openai_first=False)),
    (OPENAI_FIRST, _import_code(llmmeter=True, instrument=True, openai_first=True)),
    (OPENAI_ALONE, _import_code(llmmeter=False, instrument=False, openai_first=False)),
)


def measure_imports(repeats: int, pinning: Pinning) -> dict[str, Any]:
    """Fresh interpreters, in-process milliseconds (best and median of ``repeats``), and
    whether ``import llmmeter`` / ``instrument()`` imported openai."""
    out: dict[str, Any] = {"cases": {}, "failures": []}
    for name, code in IMPORT_CASES:
        lines: list[dict[str, Any]] = []
        for _ in range(repeats):
            proc = subprocess.run(
                [*pinning.prefix(), sys.executable, "-c", code],
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if proc.returncode != 0:
                out["failures"].append(f"import / {name}: {proc.stderr.strip()[-500:]}")
                break
            lines.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if not lines:
            continue
        entry: dict[str, Any] = {
            "best_ms": min(line["ms"] for line in lines),
            "median_ms": statistics.median(line["ms"] for line in lines),
        }
        if "openai_ms" in lines[0]:
            entry["openai_best_ms"] = min(line["openai_ms"] for line in lines)
            entry["openai_median_ms"] = statistics.median(line["openai_ms"] for line in lines)
        for key in ("openai_after_import", "openai_after_instrument"):
            if key in lines[0]:
                entry[key] = any(line[key] for line in lines)
        out["cases"][name] = entry
        _progress(f"import  {name}: {entry['best_ms']:.1f} ms")
    cases = out["cases"]
    if INSTRUMENT_FIRST in cases and OPENAI_ALONE in cases:
        # Instrumented first, the patching happens inside the app's own `import openai`.
        first, alone = cases[INSTRUMENT_FIRST], cases[OPENAI_ALONE]
        first["deferred_patch_ms"] = first["openai_best_ms"] - alone["best_ms"]
    return out


# --- memory: benchmarks/soak.py --------------------------------------------------------


def run_soak(config: Config, pinning: Pinning) -> dict[str, Any] | None:
    """Integration point: ``benchmarks/soak.py --calls N --every K --warmup W --frames 0
    --json`` prints a JSON report (``samples`` with ``rss_mib``/``live``, ``checks``,
    ``valid``). Missing or changed, it is reported, never guessed at."""
    if config.soak_calls <= 0:
        return None
    script = HERE / "soak.py"
    if not script.exists():
        return {"ran": False, "note": "benchmarks/soak.py not found: memory not measured"}
    command = [*pinning.prefix(), sys.executable, str(script), "--calls", str(config.soak_calls)]
    command += ["--every", str(config.soak_every), "--warmup", str(config.soak_warmup)]
    command += ["--frames", "0", "--json"]
    started = time.perf_counter()
    proc = subprocess.run(
        command, env=child_env(), capture_output=True, text=True, timeout=3600, check=False
    )
    seconds = time.perf_counter() - started
    _progress(f"soak    {config.soak_calls} calls: exit {proc.returncode}  {seconds:5.1f} s")
    try:
        report = json.loads(proc.stdout)
        samples = report["samples"]
        first, last = samples[0], samples[-1]
        checks = report.get("checks", [])
        return {
            "ran": True,
            "calls": last["calls"] - first["calls"],
            "warmup": report.get("warmup"),
            "rss_first_mib": first["rss_mib"],
            "rss_last_mib": last["rss_mib"],
            "rss_growth_mib": round(last["rss_mib"] - first["rss_mib"], 2),
            "live_first": first.get("live"),
            "live_last": last.get("live"),
            "caches_last": last.get("caches"),
            "valid": bool(report.get("valid")) and proc.returncode == 0,
            "failed_checks": [c["name"] for c in checks if not c.get("ok")],
            "seconds": round(seconds, 1),
        }
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or [""])[-1][:300]
        if proc.returncode != 0:
            note = f"benchmarks/soak.py exited {proc.returncode} without a report: {last}"
        else:
            note = f"benchmarks/soak.py's output was not the expected JSON ({exc!r})"
        return {"ran": False, "note": note}


# --- machine, targets, tables ----------------------------------------------------------


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(
    pinning: Pinning, config: Config, load_before: str, load_after: str
) -> dict[str, Any]:
    pinned = pinning.describe()
    http = http_name()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "pinned": pinned,
        "load_before": load_before,
        "load_after": load_after,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "openai": _version("openai"),
        "http": f"{http} {_version(http)}",
        "opentelemetry-sdk": _version("opentelemetry-sdk"),
        "llmmeter": _version("llmmeter"),
        "rounds": config.rounds,
        "calls": config.calls,
        "batches": config.batches,
        "warmup": config.warmup,
        "import_repeats": config.import_repeats,
        "smoke": config.smoke,
    }


@dataclass
class Target:
    name: str
    measured: str
    limit: str
    met: bool | None
    second_opinion: bool | None = None
    """The verdict of the paired estimate, where there is one (noise shows as disagreement)."""


def targets(results: Mapping[str, Any]) -> list[Target]:
    """The issue's targets, read from this run (None: not measured)."""
    agg, micro, imports = results["aggregate"], results["micro"], results["imports"]
    out = []
    for name in NON_STREAMING:
        row = agg.get(name, {}).get("llmmeter", {})
        ratio = row.get("x_floor")
        if ratio is None:
            continue
        floor = agg[name]["floor"]["over_bare_us"]
        paired = row.get("paired_x_floor")
        # A negative overhead means the baseline was slowed by something else: no verdict.
        usable = floor > 0 and row["over_bare_us"] >= 0
        out.append(
            Target(
                f"non-streaming overhead, `{name}`: multiple of the floor",
                f"{ratio:.2f}x (+{row['over_bare_us']:.0f} µs vs floor +{floor:.0f} µs); "
                f"paired by round: {_fmt(paired, 2, 'x')}",
                "≤ 1.3x",
                ratio <= 1.3 if usable else None,
                None if paired is None or not usable else paired <= 1.3,
            )
        )
    chunk = agg.get("per_chunk", {}).get("llmmeter", {})
    slope = chunk.get("over_bare_us")
    if slope is not None:
        paired = chunk.get("paired_over_bare_us")
        out.append(
            Target(
                "per streamed chunk, over bare",
                f"{slope:.2f} µs; paired by round: {_fmt(paired, 2, ' µs')}",
                "≤ 1 µs",
                slope <= 1.0 if slope >= 0 else None,
                None if paired is None or slope < 0 else paired <= 1.0,
            )
        )
    policy = micro.get("policy", {})
    for label, name, limit in (
        ("policy decision, no match (no rule names the model)", POLICY_NO_MATCH, 5.0),
        ("policy decision, no match after regex scans", POLICY_NO_MATCH_SCAN, 5.0),
        ("policy decision, glob + task match", POLICY_GLOB_MATCH, 5.0),
        ("policy decision, regex match", POLICY_REGEX_MATCH, 20.0),
    ):
        if name in policy:
            us = policy[name]["best_us"]
            out.append(Target(label, f"{us:.2f} µs", f"≤ {limit:g} µs", us <= limit))
    for name, entry in micro.get("price", {}).items():
        us = entry["best_us"]
        out.append(Target(f"price lookup, {name}", f"{us:.2f} µs", "≤ 2 µs", us <= 2.0))
    if imports:
        cases = imports["cases"]
        first, after = cases.get(INSTRUMENT_FIRST), cases.get(OPENAI_FIRST)
        if first is not None and "deferred_patch_ms" in first:
            deferred = first["deferred_patch_ms"]
            total = first["best_ms"] + max(0.0, deferred)
            # Below zero: `import openai` was no slower than without llmmeter (noise).
            added = (
                f"{deferred:.1f} ms added to `import openai`"
                if deferred > 0
                else "nothing measurable added to `import openai`"
            )
            out.append(
                Target(
                    "`import llmmeter` + `instrument()`, then `import openai`",
                    f"{total:.1f} ms ({first['best_ms']:.1f} ms; {added})",
                    "≤ 50 ms",
                    total <= 50.0,
                )
            )
        if after is not None:
            out.append(
                Target(
                    "`import llmmeter` + `instrument()` after `import openai`",
                    f"{after['best_ms']:.1f} ms",
                    "≤ 50 ms",
                    after["best_ms"] <= 50.0,
                )
            )
        imported = [
            name
            for name in (IMPORT_ONLY, INSTRUMENT_FIRST)
            if cases.get(name, {}).get("openai_after_import")
            or cases.get(name, {}).get("openai_after_instrument")
        ]
        if IMPORT_ONLY in cases:
            out.append(
                Target(
                    "`import llmmeter` (and `instrument()`) import openai",
                    "yes: " + "; ".join(imported) if imported else "no",
                    "never",
                    not imported,
                )
            )
    return out


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+,.1f}"


def render(results: Mapping[str, Any], config: Config) -> str:
    meta = results["meta"]
    lines = [
        f"- Machine: {meta['cpu']}, {meta['cores']} cores, {meta['pinned']}; "
        f"load average {meta['load_before']} before, {meta['load_after']} after",
        f"- Versions: Python {meta['python']}, openai {meta['openai']} ({meta['http']}), "
        f"opentelemetry-sdk {meta['opentelemetry-sdk']}, llmmeter {meta['llmmeter']}",
        f"- Run: {meta['date']}, {meta['rounds']} round(s) x {meta['calls']} calls per case "
        f"(stream_200: a fifth), {meta['batches']} batches, {meta['warmup']} warm-up calls"
        f"{'; SMOKE: numbers are not measurements' if meta['smoke'] else ''}",
        "",
        "µs per call. *best*: the fastest batch of any round; *typical*: the median over rounds "
        "of each round's fastest batch; *median*: the median of the round medians (what a busy "
        "machine adds shows here); *+bare*: best - bare's best; *x floor*: that overhead over "
        "the floor's; *paired*: the same two, taken within each round and then the median over "
        "rounds (cancels drift, but counts a round disturbed throughout); *spread*: the range "
        "of the round bests, as a share of *typical*. Targets are judged on *+bare* and *x "
        "floor*; a verdict the paired estimate contradicts is marked as noisy.",
    ]
    agg = results["aggregate"]
    for case in config.cases:
        rows = agg.get(case.name, {})
        if not rows:
            continue
        lines += [
            "",
            f"**{case.name}**: {case.title}",
            "",
            "| variant | best | typical | median | +bare | x floor | +bare paired "
            "| x floor paired | spread |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in rows.items():
            lines.append(
                f"| {name} | {_fmt(row['best_us'])} | {_fmt(row['typical_best_us'])} "
                f"| {_fmt(row['median_us'])} | {_signed(row.get('over_bare_us'))} "
                f"| {_fmt(row.get('x_floor'), 2, 'x')} "
                f"| {_signed(row.get('paired_over_bare_us'))} "
                f"| {_fmt(row.get('paired_x_floor'), 2, 'x')} | {_fmt(row['spread_pct'], 0, '%')} |"
            )
    slopes = agg.get("per_chunk", {})
    if slopes:
        lines += [
            "",
            "**per streamed chunk**: (stream_200 - stream_10) / 190, µs",
            "",
            "| variant | per chunk | +bare | per chunk paired | +bare paired |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, slope in slopes.items():
            lines.append(
                f"| {name} | {_fmt(slope['per_chunk_us'], 2)} | "
                f"{_fmt(slope.get('over_bare_us'), 2)} | "
                f"{_fmt(slope['paired_per_chunk_us'], 2)} | "
                f"{_fmt(slope.get('paired_over_bare_us'), 2)} |"
            )
    micro = results["micro"]
    if micro.get("policy") or micro.get("price"):
        lines += [
            "",
            "**micro**: one routing decision (10 rules, 2 KB prompt; `benchmarks/policy.py`'s "
            "cases) and one price lookup, µs (targets judged on *best*)",
            "",
            "| what | best | typical | median |",
            "| --- | ---: | ---: | ---: |",
        ]
        for group in ("policy", "price"):
            for name, entry in micro.get(group, {}).items():
                lines.append(
                    f"| {group}: {name} | {_fmt(entry['best_us'], 2)} | "
                    f"{_fmt(entry['typical_best_us'], 2)} | {_fmt(entry['median_us'], 2)} |"
                )
    imports = results["imports"]
    if imports and imports["cases"]:
        lines += [
            "",
            "**import**: fresh interpreters, time inside the process, ms (best of "
            f"{meta['import_repeats']})",
            "",
            "| what | best | median | then `import openai` | openai imported by llmmeter |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for name, entry in imports["cases"].items():
            imported = entry.get("openai_after_import") or entry.get("openai_after_instrument")
            shown = "-" if imported is None or name == OPENAI_FIRST else "yes" if imported else "no"
            then = _fmt(entry.get("openai_best_ms"))
            if "deferred_patch_ms" in entry:
                then += f" ({entry['deferred_patch_ms']:+.1f} vs alone)"
            lines.append(
                f"| {name} | {_fmt(entry['best_ms'])} | {_fmt(entry['median_ms'])} | {then} | "
                f"{shown} |"
            )
    soak = results["soak"]
    if soak is not None:
        lines += ["", "**memory** (`benchmarks/soak.py`, RSS without tracemalloc):", ""]
        if soak.get("ran"):
            lines.append(
                f"{soak['calls']:,} mixed calls after a {soak['warmup']:,}-call warm-up: RSS "
                f"{soak['rss_first_mib']:.1f} -> {soak['rss_last_mib']:.1f} MiB "
                f"({soak['rss_growth_mib']:+.2f} MiB); live llmmeter per-call objects "
                f"{soak['live_first']} -> {soak['live_last']}; telemetry "
                f"{'valid' if soak['valid'] else 'INVALID'}."
            )
        else:
            lines.append(f"**not measured**: {soak['note']}")
    lines += [
        "",
        "**targets**",
        "",
        "| target | measured | limit | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for target in results["targets"]:
        if target.met is None:
            verdict = "**no verdict** (an overhead came out negative: the machine was busy)"
        else:
            verdict = "met" if target.met else "**not met**"
        if target.second_opinion is not None and target.second_opinion != target.met:
            verdict += " (noisy: the paired estimate says otherwise)"
        lines.append(f"| {target.name} | {target.measured} | {target.limit} | {verdict} |")
    lines.append("")
    problems, failures = results["problems"], results["failures"]
    if failures:
        lines.append("Failed children:")
        lines.extend(f"- {f}" for f in failures)
    if problems:
        lines.append("TELEMETRY INVALID:")
        lines.extend(f"- {p}" for p in problems)
    if not failures and not problems:
        lines.append(
            "Telemetry valid: every variant and case exported the spans and metric points it "
            "promised, and the floor's span and labels matched llmmeter's."
        )
    return "\n".join(lines)


MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"


def write_docs(
    path: Path, report: str, command: str, marks: tuple[str, str] = (MARK_START, MARK_END)
) -> None:
    """Replace what stands between ``marks`` in ``path`` with ``report`` and its command."""
    mark_start, mark_end = marks
    text = path.read_text(encoding="utf-8")
    start, end = text.find(mark_start), text.find(mark_end)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {mark_start} ... {mark_end} section")
    body = f"{mark_start}\n\nRecorded with `{command}`.\n\n{report}\n\n"
    path.write_text(text[:start] + body + text[end:], encoding="utf-8")


# --- command line ----------------------------------------------------------------------


def pick_names(
    text: str | None, known: Sequence[str], what: str, default: Sequence[str] | None = None
) -> list[str]:
    if not text:
        return list(known if default is None else default)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def child_main(args: argparse.Namespace) -> int:
    if args.child == "micro":
        data = run_micro(args.calls, args.batches)
    else:
        cases = [
            CASES_BY_NAME[n]
            for n in pick_names(args.case, list(CASES_BY_NAME), "case", DEFAULT_CASES)
        ]
        data = run_child(args.child, cases, args.calls, args.warmup, args.batches)
    text = json.dumps(data, indent=1)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="See the module docstring for the method and the child interface.",
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 5; smoke 1)")
    parser.add_argument("--calls", type=int, help="timed calls per case per round (default 500)")
    parser.add_argument("--warmup", type=int, help="warm-up calls per case (default 100)")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per case")
    parser.add_argument("--smoke", action="store_true", help="a few hundred calls, 1 round")
    parser.add_argument("--cases", help=f"comma-separated, of {','.join(CASES_BY_NAME)}")
    parser.add_argument(
        "--variants",
        help=f"comma-separated: {','.join(VARIANTS)}, or [name=]module:function[@python]",
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the micro benchmarks")
    parser.add_argument("--no-import", action="store_true", help="skip the import timing")
    parser.add_argument("--soak-calls", type=int, help="soak calls (default 10000; 0: skip)")
    parser.add_argument(
        "--cpu",
        type=int,
        help="pin every child to this CPU (default: the idlest at each start; -1: do not pin)",
    )
    parser.add_argument("--json", metavar="FILE", help="write every result as JSON")
    parser.add_argument("--write-docs", metavar="FILE", help="replace the bench section of FILE")
    parser.add_argument(
        "--from-json", metavar="FILE", help="no run: show (or --write-docs) a saved --json run"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.calls is None:
            args.calls = 1000
        if args.warmup is None:
            args.warmup = 200
        return child_main(args)

    variants = [VariantSpec.parse(v) for v in (args.variants or ",".join(VARIANTS)).split(",")]
    cases = [
        CASES_BY_NAME[n] for n in pick_names(args.cases, list(CASES_BY_NAME), "case", DEFAULT_CASES)
    ]
    smoke = args.smoke
    config = Config(
        variants=variants,
        cases=cases,
        rounds=args.rounds or (1 if smoke else 5),
        calls=args.calls or (60 if smoke else 500),
        warmup=args.warmup if args.warmup is not None else (5 if smoke else 100),
        batches=args.batches if not smoke else min(args.batches, 2),
        micro_calls=300 if smoke else 5000,
        micro_batches=2 if smoke else 5,
        import_repeats=1 if smoke else 7,
        soak_calls=args.soak_calls if args.soak_calls is not None else (100 if smoke else 10_000),
        soak_every=50 if smoke else 2500,
        soak_warmup=20 if smoke else 2000,
        cpu=args.cpu,
        smoke=smoke,
        parallel=smoke,
        micro=not args.no_micro,
        imports=not args.no_import,
    )
    if args.from_json:
        config, results = load_results(Path(args.from_json))
    else:
        results = run_benchmark(config)
    report = render(results, config)
    print(report)
    if args.json:
        payload = {**results, "targets": [t.__dict__ for t in results["targets"]]}
        Path(args.json).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    if args.write_docs:
        shown, skip = [], False
        for arg in argv if argv is not None else sys.argv[1:]:  # the options that shape the run
            if skip or arg.startswith(("--json=", "--from-json=")):
                skip = False
                continue
            skip = arg in ("--json", "--from-json")
            if not skip:
                shown.append(arg)
        command = " ".join(["python benchmarks/bench.py", *shown])
        write_docs(Path(args.write_docs), report, command)
    return 1 if results["problems"] or results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
