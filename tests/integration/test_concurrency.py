"""Threads and asyncio tasks: each call gets its own span, under its own parent, with its tokens."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from opentelemetry import trace

from llmmeter.testing import FakeOpenAI
from tests.conftest import LOAD_TIMEOUT, Telemetry

# Runs by itself (tests/conftest.py): hundreds of concurrent calls load the machine.
pytestmark = pytest.mark.alone


def _prompt(i: int) -> str:
    # Prompt lengths differ per caller, so each caller's token count is its own.
    return "word " * (i + 1)


def _check(telemetry: Telemetry, n: int, results: dict[int, Any]) -> None:
    spans = telemetry.spans()
    by_name = {s.name: s for s in spans}
    llm_spans = [s for s in spans if s.name.startswith("chat ")]
    assert len(llm_spans) == n
    for i in range(n):
        parent = by_name[f"caller-{i}"]
        (child,) = [s for s in llm_spans if s.parent and s.parent.span_id == parent.context.span_id]
        assert child.context.trace_id == parent.context.trace_id
        usage = results[i].usage
        assert child.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert child.attributes["gen_ai.response.id"] == results[i].id


def test_64_threads_each_get_their_own_span_under_their_own_parent(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    results: dict[int, Any] = {}
    errors: list[BaseException] = []
    client = openai_module.OpenAI(
        base_url=server.base_url, api_key="k", max_retries=0, timeout=LOAD_TIMEOUT
    )
    barrier = threading.Barrier(64)

    def caller(i: int) -> None:
        try:
            barrier.wait()
            with tracer.start_as_current_span(f"caller-{i}"):
                results[i] = client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": _prompt(i)}]
                )
                assert trace.get_current_span().name == f"caller-{i}"  # type: ignore[attr-defined]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert not errors
    _check(telemetry, 64, results)


async def test_500_concurrent_tasks_each_get_their_own_span_under_their_own_parent(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    client = openai_module.AsyncOpenAI(
        base_url=server.base_url, api_key="k", max_retries=0, timeout=LOAD_TIMEOUT
    )
    results: dict[int, Any] = {}

    async def caller(i: int) -> None:
        with tracer.start_as_current_span(f"caller-{i}"):
            if i % 2:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": _prompt(i)}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                chunks = [c async for c in stream]
                results[i] = chunks[-1]
            else:
                results[i] = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": _prompt(i)}]
                )
            assert trace.get_current_span().name == f"caller-{i}"  # type: ignore[attr-defined]

    try:
        await asyncio.gather(*(caller(i) for i in range(500)))
    finally:
        await client.close()
    _check(telemetry, 500, results)
