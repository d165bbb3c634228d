"""Soak: 100,000 mixed calls through the real openai SDK with llmmeter on; is memory flat?

    python benchmarks/soak.py [--calls N] [--every K] [--warmup W] [--trace-from T]
                              [--frames F] [--top L] [--json]

The SDK (whatever version is installed) talks to an in-memory ``MockTransport`` that answers
from pre-built bytes, with a fresh id in every response (real ids never repeat, and llmmeter
remembers Responses ids). Each cycle of 20 calls is: sync and async chat; 10 chat streams
(6 read to the end, 3 closed after two chunks by ``close()``, ``with``, and on an async
stream ``close()`` or ``async with`` in turn, and 1 abandoned after one or two chunks,
alternately sync and async: a tenth of the streams); Responses and embeddings, sync and
async; calls under ``llmmeter.task`` (one with a stickiness key); and ``classify`` calls
that a shadow routing policy decides. Four models, with usage objects as the API sends them
(cached and reasoning token details).

Telemetry goes to real SDK pipelines: a ``TracerProvider`` with a ``BatchSpanProcessor``
whose exporter counts the spans and drops them, and a ``MeterProvider`` with an
``InMemoryMetricReader`` collected at every sample. After the warm-up (2,000 calls) memory is
sampled every ``--every`` calls: the async loop is drained, ``gc.collect()`` runs and spans
are flushed, then the current RSS (``/proc/self/statm``; elsewhere the peak, from
``resource``), the memory tracemalloc traces, the live llmmeter per-call objects (calls,
stream and raw-response proxies) and the entries in each of llmmeter's bounded caches are
read. The tracemalloc growth by source line, from the first traced sample to the last, shows
a growing container by the line that fills it.

A number only counts if the telemetry was really produced, so the run also checks that every
call exported exactly one span; every call that got usage has tokens and a cost on its span;
abandoned streams ended as ``abandoned``; the last span has tokens and a cost; the metric
points agree (duration count, cost sum against the spans, policy decisions and savings); and
llmmeter logged no warning. The exit status is 1 when a check fails, never because of a
speed or memory number.

Choices. tracemalloc (1 frame, so statistics group by source line) slows this workload about
fourfold: every allocation is recorded, and the SDK allocates a lot (about 4.5 ms a call
instead of 1.1 ms on the 2-core machine this was written on). Tracing all 100,000 calls takes
about 8 minutes there; so by default RSS is sampled over the whole run and tracemalloc starts
at the half-way sample and traces the second half (about 5 minutes in all). Its traced size
is then exactly the memory allocated since that sample and still alive: 50,000 calls leaking
20 bytes each show as a megabyte, and its top lines name where. Starting late also keeps
tracemalloc's own bookkeeping, which RSS includes, small: only blocks allocated after the
start are recorded. ``--trace-from 0`` traces everything after the warm-up; ``--frames 0``
turns tracemalloc off. The first traced sample's line statistics are taken before its memory
is read, and the soak's own statistics lines are left out of the top lines, so the soak's
bookkeeping never counts as growth.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import inspect
import json
import linecache
import logging
import math
import os
import struct
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

INPUT_TOKENS = "gen_ai.usage.input_tokens"
COST = "gen_ai.usage.cost.amount"
STREAM_END = "llmmeter.stream.end"

MINI, FOUR_O, NANO, EMBED = "gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "text-embedding-3-small"
EMBED_DIMENSIONS = 256

_ID = b"@ID@"  # replaced by a fresh id in every response

# request model -> (response model, prompt tokens, cached prompt tokens, completion tokens)
_CHAT_MODELS: dict[str, tuple[str, int, int, int]] = {
    MINI: ("gpt-4o-mini-2024-07-18", 12, 0, 5),
    FOUR_O: ("gpt-4o-2024-08-06", 1420, 1280, 100),
    NANO: ("gpt-4.1-nano-2025-04-14", 25, 0, 9),
}
_WORDS = ("This", " is", " a", " test.")

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
MESSAGES = [SYSTEM, {"role": "user", "content": "Say this is a test."}]
CLASSIFY = [SYSTEM, {"role": "user", "content": "Classify the sentiment: 'great product'."}]


# --- the fake API: pre-built bytes ------------------------------------------------------


def _chat_usage(model: str) -> dict[str, Any]:
    _, prompt, cached, completion = _CHAT_MODELS[model]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_body(model: str) -> bytes:
    body = {
        "id": "chatcmpl-@ID@",
        "object": "chat.completion",
        "created": 1751568164,
        "model": _CHAT_MODELS[model][0],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "This is a test.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _chat_usage(model),
        "service_tier": "default",
        "system_fingerprint": "fp_07871e2ad8",
    }
    return json.dumps(body).encode()


def _stream_body(model: str, *, include_usage: bool) -> bytes:
    """SSE as the API sends it: ``usage: null`` on every chunk when usage was asked for,
    then a chunk without choices that carries it."""

    def chunk(choices: list[Any], usage: Any = None) -> str:
        data: dict[str, Any] = {
            "id": "chatcmpl-@ID@",
            "object": "chat.completion.chunk",
            "created": 1751568164,
            "model": _CHAT_MODELS[model][0],
            "service_tier": "default",
            "system_fingerprint": "fp_07871e2ad8",
            "choices": choices,
        }
        if include_usage:
            data["usage"] = usage
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

    first = {"role": "assistant", "content": "", "refusal": None}
    events = [chunk([{"index": 0, "delta": first, "logprobs": None, "finish_reason": None}])]
    for word in _WORDS:
        delta = {"content": word}
        events.append(
            chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
        )
    events.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    if include_usage:
        events.append(chunk([], _chat_usage(model)))
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def _responses_body(model: str) -> bytes:
    _, prompt, cached, completion = _CHAT_MODELS[model]
    body = {
        "id": "resp_@ID@",
        "object": "response",
        "created_at": 1776481253,
        "status": "completed",
        "background": False,
        "completed_at": 1776481257,
        "error": None,
        "incomplete_details": None,
        "instructions": "You are a concise assistant.",
        "max_output_tokens": None,
        "model": _CHAT_MODELS[model][0],
        "output": [
            {
                "id": "msg_@ID@",
                "type": "message",
                "status": "completed",
                "content": [
                    {"type": "output_text", "annotations": [], "logprobs": [], "text": "A test."}
                ],
                "role": "assistant",
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
        "user": None,
        "metadata": {},
    }
    return json.dumps(body).encode()


def _embeddings_body(*, base64_encoded: bool) -> bytes:
    vector = [math.sin(i) / 16 for i in range(EMBED_DIMENSIONS)]
    embedding: Any = vector
    if base64_encoded:
        embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
        "model": EMBED,
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    return json.dumps(body).encode()


def _httpx() -> Any:
    import importlib

    import openai

    # The HTTP library this openai sends through: httpx2 from 3.x on, httpx before (both may
    # be installed side by side).
    major = int(openai.__version__.split(".")[0])
    return importlib.import_module("httpx2" if major >= 3 else "httpx")


class FakeAPI:
    """The ``MockTransport`` handler: answers from memory, a fresh id in every response."""

    def __init__(self) -> None:
        self.httpx = _httpx()
        self.requests = 0
        self._chat = {m: _chat_body(m) for m in _CHAT_MODELS}
        self._streams = {
            (m, usage): _stream_body(m, include_usage=usage)
            for m in _CHAT_MODELS
            for usage in (False, True)
        }
        self._responses = {m: _responses_body(m) for m in _CHAT_MODELS}
        self._embeddings = {b64: _embeddings_body(base64_encoded=b64) for b64 in (False, True)}

    def __call__(self, request: Any) -> Any:
        self.requests += 1
        rid = b"%024d" % self.requests
        body = json.loads(request.content)
        path: str = request.url.path
        json_type = "application/json"
        if path.endswith("/chat/completions"):
            model = body["model"]
            if body.get("stream"):
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                content = self._streams[model, usage].replace(_ID, rid)
                return self.httpx.Response(
                    200, content=content, headers={"content-type": "text/event-stream"}
                )
            content = self._chat[model].replace(_ID, rid)
        elif path.endswith("/responses"):
            content = self._responses[body["model"]].replace(_ID, rid)
        elif path.endswith("/embeddings"):
            content = self._embeddings[body.get("encoding_format") == "base64"]
        else:
            return self.httpx.Response(404, json={"error": {"message": f"no route {path}"}})
        return self.httpx.Response(200, content=content, headers={"content-type": json_type})


# --- the calls ---------------------------------------------------------------------------


class Driver:
    """One sync and one async client on the fake API, and the event loop the async calls
    share (reused, as in a long-running async application)."""

    def __init__(self, api: FakeAPI) -> None:
        import openai

        httpx_mod = api.httpx
        options: dict[str, Any] = {
            "api_key": "sk-soak",
            # OpenAI's own host, never reached (the transport is in memory): streams there
            # are asked for usage, as production streams to OpenAI are.
            "base_url": "https://api.openai.com/v1",
            "max_retries": 0,
        }
        # Any: the calls pass plain dicts, as applications do, not the SDK's TypedDicts.
        self.client: Any = openai.OpenAI(
            http_client=httpx_mod.Client(transport=httpx_mod.MockTransport(api)), **options
        )
        self.aclient: Any = openai.AsyncOpenAI(
            http_client=httpx_mod.AsyncClient(transport=httpx_mod.MockTransport(api)), **options
        )
        self.loop = asyncio.new_event_loop()

    def drain(self) -> None:
        """Let the loop run what abandoned async streams scheduled (their ``aclose``)."""
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        self.drain()
        self.loop.run_until_complete(self.aclient.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        self.client.close()

    # Each kind of call: ``(driver, i) -> None``; async ones run on the shared loop.

    def chat(self, i: int) -> None:
        self.client.chat.completions.create(model=MINI, messages=MESSAGES)

    def chat_task(self, i: int) -> None:
        import llmmeter

        with llmmeter.task("summarize"):
            self.client.chat.completions.create(model=FOUR_O, messages=MESSAGES)

    def classify(self, i: int) -> None:
        import llmmeter

        with llmmeter.task("classify"):  # the shadow policy decides these
            self.client.chat.completions.create(model=FOUR_O, messages=CLASSIFY)

    def achat(self, i: int) -> None:
        self.loop.run_until_complete(
            self.aclient.chat.completions.create(model=NANO, messages=MESSAGES)
        )

    def aclassify(self, i: int) -> None:
        import llmmeter

        async def go() -> None:
            with llmmeter.task("classify"):
                await self.aclient.chat.completions.create(model=FOUR_O, messages=CLASSIFY)

        self.loop.run_until_complete(go())

    def stream(self, i: int, model: str = MINI) -> None:
        for _ in self.client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
            pass

    def stream_nano(self, i: int) -> None:
        self.stream(i, NANO)

    def stream_key(self, i: int) -> None:
        import llmmeter

        with llmmeter.task("chat", key=f"conversation-{i % 97}"):
            self.stream(i, FOUR_O)

    def stream_close(self, i: int) -> None:
        stream = self.client.chat.completions.create(model=MINI, messages=MESSAGES, stream=True)
        next(stream)
        next(stream)
        stream.close()

    def stream_with(self, i: int) -> None:
        with self.client.chat.completions.create(
            model=FOUR_O, messages=MESSAGES, stream=True
        ) as stream:
            next(stream)
            next(stream)

    def abandon(self, i: int) -> None:
        """Read one or two chunks and drop the stream: no close, no ``with``."""
        chunks = 1 + (i // len(SCHEDULE)) % 2
        if (i // (2 * len(SCHEDULE))) % 2:
            self.loop.run_until_complete(self._abandon_async(chunks))
            return
        stream = self.client.chat.completions.create(model=MINI, messages=MESSAGES, stream=True)
        for _ in range(chunks):
            next(stream)
        del stream

    async def _abandon_async(self, chunks: int) -> None:
        stream = await self.aclient.chat.completions.create(
            model=NANO, messages=MESSAGES, stream=True
        )
        for _ in range(chunks):
            await stream.__anext__()

    def astream(self, i: int) -> None:
        async def go() -> None:
            stream = await self.aclient.chat.completions.create(
                model=FOUR_O if i % 3 else MINI, messages=MESSAGES, stream=True
            )
            async for _ in stream:
                pass

        self.loop.run_until_complete(go())

    def astream_close(self, i: int) -> None:
        async def go() -> None:
            stream = await self.aclient.chat.completions.create(
                model=MINI, messages=MESSAGES, stream=True
            )
            if (i // len(SCHEDULE)) % 2:
                async with stream:
                    await stream.__anext__()
                    await stream.__anext__()
                return
            await stream.__anext__()
            await stream.__anext__()
            await stream.close()

        self.loop.run_until_complete(go())

    def responses(self, i: int) -> None:
        self.client.responses.create(
            model=MINI, instructions="You are a concise assistant.", input="Say this is a test."
        )

    def aresponses(self, i: int) -> None:
        self.loop.run_until_complete(
            self.aclient.responses.create(model=NANO, input="Say this is a test.")
        )

    def embed(self, i: int) -> None:
        self.client.embeddings.create(
            model=EMBED, input="A sentence to embed.", dimensions=EMBED_DIMENSIONS
        )

    def aembed(self, i: int) -> None:
        self.loop.run_until_complete(
            self.aclient.embeddings.create(
                model=EMBED, input="A sentence to embed.", dimensions=EMBED_DIMENSIONS
            )
        )


SCHEDULE: tuple[str, ...] = (
    "chat",
    "achat",
    "stream",
    "astream",
    "classify",
    "stream_close",
    "responses",
    "stream_with",
    "embed",
    "astream",
    "chat_task",
    "astream_close",
    "aresponses",
    "stream_key",
    "abandon",
    "aembed",
    "astream",
    "chat",
    "stream_nano",
    "aclassify",
)
"""One cycle: 20 calls, 10 of them streams, one stream abandoned."""

CLOSED_EARLY = frozenset({"stream_close", "stream_with", "astream_close"})
WITHOUT_USAGE = CLOSED_EARLY | {"abandon"}
"""Kinds whose span gets no usage: the stream ended before its usage chunk."""
ROUTED = frozenset({"classify", "aclassify"})


# --- telemetry -----------------------------------------------------------------------------


class CountingExporter(SpanExporter):
    """Counts what it is given, keeps the last span, and drops the rest (no memory kept)."""

    def __init__(self) -> None:
        self.spans = 0
        self.priced = 0
        self.abandoned = 0
        self.cost = 0.0
        self.last: ReadableSpan | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            attrs = span.attributes or {}
            cost = attrs.get(COST)
            if attrs.get(INPUT_TOKENS) and isinstance(cost, float) and cost > 0:
                self.priced += 1
                self.cost += cost
            if attrs.get(STREAM_END) == "abandoned":
                self.abandoned += 1
        self.spans += len(spans)
        if spans:
            self.last = spans[-1]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _WarningCounter(logging.Handler):
    """llmmeter's own warnings (internal errors, unpriced models): none are expected."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 3:
            self.first.append(record.getMessage()[:200])


def _metric_points(data: Any) -> dict[str, list[Any]]:
    points: dict[str, list[Any]] = {}
    if data is None:
        return points
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


# --- memory --------------------------------------------------------------------------------


def rss_mib() -> float:
    """The current resident set size (Linux); elsewhere the peak, as ``resource`` gives it."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident = int(statm.read().split()[1])
        return resident * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def live_llmmeter_objects() -> int:
    """Per-call objects alive now: calls, stream and raw-response proxies."""
    from llmmeter._call import Call
    from llmmeter._proxies import (
        AsyncRawResponseProxy,
        AsyncStreamProxy,
        RawResponseProxy,
        StreamProxy,
    )

    kinds = (Call, StreamProxy, AsyncStreamProxy, RawResponseProxy, AsyncRawResponseProxy)
    # type(), not isinstance(): isinstance() asks openai's module-level lazy proxies for their
    # __class__, which imports and builds the module client (memory that is not ours).
    return sum(issubclass(type(o), kinds) for o in gc.get_objects())


def cache_sizes() -> dict[str, int]:
    """Entries in each of llmmeter's long-lived containers (see tests/integration/test_soak.py)."""
    from llmmeter._instrumentor import REGISTRY

    runtime = REGISTRY.runtime()
    if runtime is None:
        return {}
    prices, guard = runtime.prices, runtime.guard
    sizes = {
        "responses_ids": len(runtime._counted),
        "stream_options_rejections": len(runtime._rejected),
        "client_kinds": len(runtime._client_kinds),
        "price_names": len(prices._models),
        "price_rates": len(prices._rates),
        "unpriced_warned": len(prices._warned),
        "guard_seen": len(guard._seen),
        "guard_sites": len(guard._sites),
    }
    policy = runtime.router.policy if runtime.router is not None else None
    state = getattr(policy, "_state", None)
    if state is not None:
        sizes["policy_candidates"] = len(state.by_model)
    return sizes


_Lines = dict[tracemalloc.Traceback, tuple[int, int]]


def _line_stats(frames: int) -> _Lines:
    """Traced memory per source line (per traceback with more than one frame)."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    key = "lineno" if frames == 1 else "traceback"
    return {s.traceback: (s.size, s.count) for s in snapshot.statistics(key)}


def _own_lines() -> range:
    """The lines of :func:`_line_stats`: the first statistics live there, not a leak."""
    lines, start = inspect.getsourcelines(_line_stats)
    return range(start, start + len(lines))


def _where(filename: str) -> str:
    at = filename.rfind("site-packages/")
    if at >= 0:
        return filename[at + len("site-packages/") :]
    for marker in ("/src/", "/benchmarks/"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + 1 :]
    return filename


def top_growth(first: _Lines, last: _Lines, limit: int) -> list[str]:
    """The lines whose traced memory grew most between the two statistics."""
    own = _own_lines()
    diffs = []
    for tb, (size, count) in last.items():
        old_size, old_count = first.get(tb, (0, 0))
        diffs.append((size - old_size, count - old_count, tb))
    for tb, (size, count) in first.items():
        if tb not in last:
            diffs.append((-size, -count, tb))
    diffs.sort(key=lambda d: d[0], reverse=True)
    lines = []
    for size_diff, count_diff, tb in diffs:
        frame = tb[-1]  # the most recent frame: where the memory was allocated
        if frame.filename == __file__ and frame.lineno in own:
            continue
        code = linecache.getline(frame.filename, frame.lineno).strip()[:60]
        lines.append(
            f"{size_diff / 1024:+9.1f} KiB {count_diff:+8d} blocks  "
            f"{_where(frame.filename)}:{frame.lineno}  {code}"
        )
        if len(lines) == limit:
            break
    return lines


# --- the run -------------------------------------------------------------------------------


@dataclass
class Sample:
    calls: int
    """Calls made since the warm-up."""
    seconds: float
    rss_mib: float
    traced_mib: float | None
    spans: int
    """Spans exported so far (warm-up included)."""
    live: int
    """Live llmmeter per-call objects (calls, stream and raw-response proxies)."""
    caches: dict[str, int]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    calls: int
    warmup: int
    every: int
    trace_from: int | None
    """Calls after the warm-up when tracemalloc started (``None``: not used)."""
    frames: int
    seconds: float
    """Wall time from the first sample to the last."""
    samples: list[Sample] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    top: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


class _Soak:
    def __init__(self, strict: bool, policy: bool) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        import llmmeter

        self.api = FakeAPI()
        self.driver = Driver(self.api)
        self.kinds: Counter[str] = Counter()
        self.made = 0
        self.policy = policy
        self.exporter = CountingExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.warnings = _WarningCounter()
        logging.getLogger("llmmeter").addHandler(self.warnings)
        rules = [{"name": "classify-to-mini", "from": [FOUR_O], "to": MINI, "tasks": ["classify"]}]
        try:
            llmmeter.instrument(
                tracer_provider=self.tracer_provider,
                meter_provider=self.meter_provider,
                policy=llmmeter.RulePolicy(rules, mode="shadow") if policy else None,
                strict=strict,
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        import llmmeter

        try:
            self.driver.close()
        finally:
            llmmeter.uninstrument()
            logging.getLogger("llmmeter").removeHandler(self.warnings)
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown()

    def calls(self, count: int, last: bool = False) -> None:
        driver = self.driver
        for n in range(count):
            i = self.made
            kind = SCHEDULE[i % len(SCHEDULE)]
            if last and n == count - 1:
                kind = "chat"  # the run ends on a call whose span has tokens and a cost
            getattr(driver, kind)(i)
            self.kinds[kind] += 1
            self.made += 1

    def settle(self) -> None:
        self.driver.drain()
        gc.collect()
        self.tracer_provider.force_flush()
        self.reader.get_metrics_data()
        gc.collect()

    def sample(self, calls: int, start: float, *, tracing: bool) -> Sample:
        self.settle()
        traced = tracemalloc.get_traced_memory()[0] / 2**20 if tracing else None
        return Sample(
            calls=calls,
            seconds=round(time.perf_counter() - start, 2),
            rss_mib=round(rss_mib(), 2),
            traced_mib=None if traced is None else round(traced, 3),
            spans=self.exporter.spans,
            live=live_llmmeter_objects(),
            caches=cache_sizes(),
        )

    def checks(self) -> list[Check]:
        exp, kinds, made = self.exporter, self.kinds, self.made
        priced = sum(n for k, n in kinds.items() if k not in WITHOUT_USAGE)
        abandoned = kinds["abandon"]
        routed = sum(kinds[k] for k in ROUTED) if self.policy else 0
        points = _metric_points(self.reader.get_metrics_data())
        durations = sum(p.count for p in points.get("gen_ai.client.operation.duration", []))
        metric_cost = sum(p.value for p in points.get("llmmeter.cost.usd", []))
        decisions = sum(p.value for p in points.get("llmmeter.policy.decisions", []))
        savings = sum(p.value for p in points.get("llmmeter.savings.usd", []))
        last = dict(exp.last.attributes or {}) if exp.last is not None else {}
        last_tokens, last_cost = last.get(INPUT_TOKENS), last.get(COST)
        warned = self.warnings
        return [
            Check(
                "spans",
                exp.spans == made > 0,
                f"{exp.spans:,} spans exported for {made:,} calls",
            ),
            Check(
                "priced spans",
                exp.priced == priced,
                f"{exp.priced:,} spans with tokens and cost; {priced:,} calls got usage",
            ),
            Check(
                "abandoned streams",
                exp.abandoned == abandoned,
                f"{exp.abandoned:,} spans ended 'abandoned'; {abandoned:,} streams abandoned",
            ),
            Check(
                "last span",
                isinstance(last_tokens, int)
                and last_tokens > 0
                and isinstance(last_cost, float)
                and last_cost > 0,
                f"{INPUT_TOKENS}={last_tokens}, {COST}={last_cost}",
            ),
            Check("duration points", durations == made, f"{durations:,} durations recorded"),
            Check(
                "cost counter",
                metric_cost > 0 and math.isclose(metric_cost, exp.cost, rel_tol=1e-9),
                f"llmmeter.cost.usd {metric_cost:.6f} vs spans {exp.cost:.6f}",
            ),
            Check(
                "policy decisions",
                decisions == routed and (savings > 0) == (routed > 0),
                f"{decisions:,} shadow decisions for {routed:,} classify calls; "
                f"llmmeter.savings.usd {savings:.6f}",
            ),
            Check(
                "llmmeter warnings",
                warned.count == 0,
                f"{warned.count} logged" + (f": {warned.first}" if warned.first else ""),
            ),
        ]


def run(
    calls: int = 100_000,
    every: int = 10_000,
    *,
    warmup: int = 2_000,
    trace_from: int | None = None,
    frames: int = 1,
    top: int = 10,
    strict: bool = False,
    policy: bool = True,
    on_sample: Callable[[Sample], None] | None = None,
) -> Report:
    """Make ``warmup`` calls, then ``calls`` more, sampling memory every ``every`` calls.

    tracemalloc (``frames`` per trace; 0: off) starts ``trace_from`` calls after the warm-up
    (default: half-way, on a sample) and runs to the end. Already tracing (``python -X
    tracemalloc``): it traces the whole run.
    """
    if calls <= 0 or every <= 0:
        raise ValueError("calls and every must be positive")
    if trace_from is None:
        trace_from = calls // 2 // every * every
    tracing_before = tracemalloc.is_tracing()
    if tracing_before:
        trace_from, frames = 0, tracemalloc.get_traceback_limit()
    marks = sorted({*range(0, calls, every), calls, min(max(trace_from, 0), calls)})
    soak = _Soak(strict, policy)
    report = Report(
        calls=calls,
        warmup=warmup,
        every=every,
        trace_from=trace_from if frames else None,
        frames=frames,
        seconds=0.0,
    )
    first: _Lines = {}
    try:
        soak.calls(warmup)
        soak.settle()
        live_llmmeter_objects()  # once before any sample: see its comment
        start = time.perf_counter()
        done = 0
        for mark in marks:
            soak.calls(mark - done, last=mark == calls)
            done = mark
            if frames and mark == trace_from:
                soak.settle()
                if not tracing_before:
                    tracemalloc.start(frames)
                first = _line_stats(frames)  # before the sample reads memory: see the docstring
            sample = soak.sample(mark, start, tracing=tracemalloc.is_tracing())
            report.samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
        report.seconds = round(time.perf_counter() - start, 2)
        if frames:
            report.top = top_growth(first, _line_stats(frames), top)
        report.kinds = dict(soak.kinds)
        report.checks = soak.checks()
    finally:
        soak.close()
        if tracemalloc.is_tracing() and not tracing_before:
            tracemalloc.stop()
    return report


# --- output --------------------------------------------------------------------------------

_HEADER = (
    f"{'calls':>9} {'seconds':>8} {'RSS MiB':>9} {'traced MiB':>11} {'spans':>9} "
    f"{'live':>5} {'cached':>7}"
)


def format_sample(sample: Sample) -> str:
    traced = "-" if sample.traced_mib is None else f"{sample.traced_mib:.3f}"
    return (
        f"{sample.calls:>9,} {sample.seconds:>8.1f} {sample.rss_mib:>9.2f} {traced:>11} "
        f"{sample.spans:>9,} {sample.live:>5} {sum(sample.caches.values()):>7,}"
    )


def format_summary(report: Report) -> list[str]:
    first, last = report.samples[0], report.samples[-1]
    measured = last.calls - first.calls
    out = [
        "",
        f"growth, first sample to last ({measured:,} calls):",
        f"  RSS                    {last.rss_mib - first.rss_mib:+.2f} MiB",
    ]
    traced = [s for s in report.samples if s.traced_mib is not None]
    if traced and traced[0].traced_mib is not None and last.traced_mib is not None:
        out.append(
            f"  tracemalloc            {last.traced_mib - traced[0].traced_mib:+.3f} MiB "
            f"(traced from {traced[0].calls:,} calls: {last.calls - traced[0].calls:,} calls)"
        )
    out.append(f"  live llmmeter objects  {first.live} -> {last.live}")
    grown = {
        k: (first.caches.get(k), v) for k, v in last.caches.items() if v != first.caches.get(k)
    }
    out.append(f"  llmmeter caches        {last.caches}")
    out.append(f"    changed (first, last): {grown or 'none'}")
    if report.top:
        out.append(
            f"tracemalloc top {len(report.top)} growth by line, first traced sample to last:"
        )
        out.extend(f"  {line}" for line in report.top)
    per_call = report.seconds / measured * 1000 if measured else 0.0
    tracing = f"tracemalloc {report.frames} frame" if report.frames else "no tracemalloc"
    out.append(
        f"wall time: {report.seconds:.1f} s for {measured:,} calls after a {report.warmup:,}-call "
        f"warm-up ({per_call:.2f} ms a call with {tracing} and sampling)"
    )
    out.append("telemetry checks:")
    out.extend(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in report.checks)
    out.append("telemetry valid" if report.valid else "TELEMETRY INVALID")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000, help="calls after the warm-up")
    parser.add_argument("--every", type=int, default=10_000, help="sample every K calls")
    parser.add_argument("--warmup", type=int, default=2_000, help="calls before the first sample")
    parser.add_argument(
        "--trace-from",
        type=int,
        default=None,
        help="calls after the warm-up when tracemalloc starts (default: half-way)",
    )
    parser.add_argument(
        "--frames", type=int, default=1, help="tracemalloc frames per trace (0: off)"
    )
    parser.add_argument("--top", type=int, default=10, help="tracemalloc growth lines shown")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    on_sample = None
    if not args.json:
        print(_HEADER, flush=True)

        def on_sample(sample: Sample) -> None:
            print(format_sample(sample), flush=True)

    report = run(
        args.calls,
        args.every,
        warmup=args.warmup,
        trace_from=args.trace_from,
        frames=args.frames,
        top=args.top,
        on_sample=on_sample,
    )
    if args.json:
        print(json.dumps({**asdict(report), "valid": report.valid}, indent=2))
    else:
        print("\n".join(format_summary(report)))
    return 0 if report.valid else 1


if __name__ == "__main__":
    sys.exit(main())
