"""Per-call overhead of llmmeter, as a ratio against the bare SDK in the same process.

The SDK talks to an in-memory transport (no sockets), so what is measured is the SDK's own
work plus ours. Spans go to an SDK tracer provider with a no-op processor and metrics to an
in-memory reader: the cost of producing telemetry, not of exporting it.

    python benchmarks/overhead.py [--calls N]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

CHAT_BODY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
}


def _stream_body() -> bytes:
    lines = []
    for i, word in enumerate(["Hello", " there", "!"] * 10):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
        }
        if i == 0:
            chunk["choices"][0]["delta"]["role"] = "assistant"  # type: ignore[index]
        lines.append(f"data: {json.dumps(chunk)}\n\n")
    last = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    lines.append(f"data: {json.dumps(last)}\n\n")
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": CHAT_BODY["usage"],
    }
    lines.append(f"data: {json.dumps(usage)}\n\n")
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def _client() -> Any:
    import importlib

    import openai

    # The HTTP library this openai sends through: httpx2 from 3.x on, httpx before (both may
    # be installed side by side).
    major = int(openai.__version__.split(".")[0])
    httpx_mod = importlib.import_module("httpx2" if major >= 3 else "httpx")

    chat = json.dumps(CHAT_BODY).encode()
    stream = _stream_body()

    def handler(request: Any) -> Any:
        body = json.loads(request.content)
        if body.get("stream"):
            return httpx_mod.Response(
                200, content=stream, headers={"content-type": "text/event-stream"}
            )
        return httpx_mod.Response(200, content=chat, headers={"content-type": "application/json"})

    http_client = httpx_mod.Client(transport=httpx_mod.MockTransport(handler))
    return openai.OpenAI(
        api_key="sk-bench", base_url="http://bench.local/v1", http_client=http_client
    )


def _time(fn: Callable[[], Any], calls: int) -> float:
    """Median of 5 rounds, seconds per call."""
    rounds = []
    for _ in range(5):
        gc.collect()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    import llmmeter

    client = _client()
    messages = [{"role": "user", "content": "Say hello"}]

    def plain() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    def streamed() -> Any:
        return list(
            client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        )

    results = {}
    for name, fn in (("chat", plain), ("chat-stream", streamed)):
        fn()
        bare = _time(fn, args.calls)
        llmmeter.instrument(
            tracer_provider=TracerProvider(),
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        )
        fn()
        instrumented = _time(fn, args.calls)
        llmmeter.uninstrument()
        results[name] = {
            "bare_us": round(bare * 1e6, 1),
            "instrumented_us": round(instrumented * 1e6, 1),
            "overhead_us": round((instrumented - bare) * 1e6, 1),
            "ratio": round(instrumented / bare, 3),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
