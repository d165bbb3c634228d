"""Async streaming: concurrent streams with AsyncOpenAI, each its own span.

Four Chat Completions streams and one Responses stream run at once under
``asyncio.gather``. Each stream is a span that ends when the stream does, with its exact
token counts (llmmeter asks the server for stream usage and hides the extra chunk from
you) and its time to first chunk. The script prints each stream's text, then a line per
span read back from memory.

No API key needed: it starts llmmeter's built-in fake OpenAI server, slowed down to
stream like a real model (gpt-4o starts a little later than gpt-4o-mini)::

    python examples/async_streaming.py

Against the real API (a few cents at most)::

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \\
        python examples/async_streaming.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter

# (task label, model, prompt) of the chat streams.
CHATS = [
    ("translate", "gpt-4o-mini", "Translate 'good morning' into Spanish, French and German."),
    ("summarize", "gpt-4o-mini", "Summarize the plot of Hamlet in two sentences."),
    ("brainstorm", "gpt-4o-mini", "Give three names for a bakery that only sells bread."),
    ("explain", "gpt-4o", "Explain in three sentences why the sky is blue."),
]
RESPONSES = ("haiku", "gpt-4o-mini", "Write a haiku about the sea.")


@contextlib.contextmanager
def openai_endpoint() -> Iterator[None]:
    """``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` when set; else a fake server started here.

    The SDK reads both variables itself, so the code below is production code:
    ``openai.AsyncOpenAI()``. ``llmmeter.testing`` is only needed for the fake server.
    """
    if os.environ.get("OPENAI_BASE_URL"):
        yield
        return
    from llmmeter.testing import FakeOpenAI

    with FakeOpenAI() as server:
        # Stream like a model would: a pause before the first token, then a steady pace.
        server.set_latency(first_chunk=0.15, per_chunk=0.01)
        server.set_latency(first_chunk=0.3, per_chunk=0.015, model="gpt-4o")
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ["OPENAI_API_KEY"] = "sk-fake"  # any key works; a real one stays home
        yield


async def chat_stream(client: Any, task: str, model: str, prompt: str) -> tuple[str, str]:
    with llmmeter.task(task):  # the label follows the call into its span and metrics
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], stream=True
        )
        parts = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    return task, "".join(parts)


async def responses_stream(client: Any, task: str, model: str, prompt: str) -> tuple[str, str]:
    with llmmeter.task(task):
        stream = await client.responses.create(model=model, input=prompt, stream=True)
        parts = []
        async for event in stream:
            if event.type == "response.output_text.delta":
                parts.append(event.delta)
    return task, "".join(parts)


async def run_streams() -> float:
    """Run every stream at once; print each text; return the wall time in seconds."""
    import openai

    async with openai.AsyncOpenAI() as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(chat_stream(client, *chat) for chat in CHATS),
            responses_stream(client, *RESPONSES),
        )
        elapsed = time.perf_counter() - started
    for task, text in results:
        print(f"[{task}] {text}")
    return elapsed


def report(exporter: InMemorySpanExporter, elapsed: float) -> None:
    spans = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
    print()
    row = "{:<11} {:<20} {:>10} {:>9} {:>7} {:>7} {:>10}"
    print(row.format("task", "span", "1st chunk", "duration", "input", "output", "cost"))
    busy = 0.0
    for span in spans:
        attrs = span.attributes or {}
        duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
        busy += duration
        ttft = attrs.get("gen_ai.response.time_to_first_chunk")
        print(
            row.format(
                str(attrs.get("llmmeter.task")),
                span.name,
                "-" if ttft is None else f"{ttft:.3f} s",
                f"{duration:.3f} s",
                str(attrs.get("gen_ai.usage.input_tokens")),
                str(attrs.get("gen_ai.usage.output_tokens")),
                f"${attrs.get('gen_ai.usage.cost.amount', 0.0):.6f}",
            )
        )
    print()
    print(
        f"{len(spans)} streams in {elapsed:.2f} s; one after another they would take {busy:.2f} s."
    )


def main() -> None:
    # Spans into memory so this script can read them; metrics are kept but not exported.
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    if not os.environ.get("OPENAI_BASE_URL"):
        # The fake server started below sends stream usage only when asked, as OpenAI's API
        # does; llmmeter asks OpenAI's own hosts by default, and other servers when told to.
        os.environ.setdefault("LLMMETER_INJECT_STREAM_USAGE", "always")
    llmmeter.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider())
    with openai_endpoint():
        elapsed = asyncio.run(run_streams())
    report(exporter, elapsed)


if __name__ == "__main__":
    main()
