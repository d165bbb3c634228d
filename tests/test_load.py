"""Load: many threads and many asyncio tasks at once, every span present once, under the right
parent, with the right tokens, and the cost counter equal to the sum of the span costs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from llmmeter.testing import FakeOpenAI

from .conftest import Telemetry

THREADS = 64
CALLS_PER_THREAD = 200
TASKS = 1000


def _prompt(caller: int, call: int) -> str:
    # Every call's prompt length is its own, so its token count identifies it.
    return "word " * (1 + caller + call % 7)


def _check(telemetry: Telemetry, expected: dict[str, tuple[str, int]]) -> None:
    """``expected``: response id -> (name of the parent span, prompt tokens)."""
    spans = telemetry.spans()
    parents = {s.context.span_id: s.name for s in spans if not s.name.startswith("chat ")}
    calls = [s for s in spans if s.name.startswith("chat ")]
    assert len(calls) == len(expected)
    seen: set[str] = set()
    total_cost = 0.0
    for span in calls:
        attrs = span.attributes or {}
        response_id = attrs["gen_ai.response.id"]
        assert response_id not in seen  # every call once
        seen.add(response_id)
        parent_name, tokens = expected[response_id]
        assert span.parent is not None
        assert parents[span.parent.span_id] == parent_name
        assert attrs["gen_ai.usage.input_tokens"] == tokens
        total_cost += attrs["gen_ai.usage.cost.amount"]
    (point,) = telemetry.points("llmmeter.cost.usd")
    assert point.value == pytest.approx(total_cost, rel=1e-9)


def test_64_threads_of_200_calls_each_every_span_once_under_its_parent(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("load")
    expected: dict[str, tuple[str, int]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    # One kept-alive connection per thread: the SDK's default pool keeps 20, so 44 threads
    # would open and close a connection per call (thousands of sockets in TIME_WAIT, and now
    # and then a refused connect), which is not what this test is about.
    limits = type(openai_module.DEFAULT_CONNECTION_LIMITS)  # httpx's (httpx2's in openai 3.x)
    pool = limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    client = openai_module.OpenAI(
        base_url=server.base_url,
        api_key="k",
        max_retries=0,
        http_client=openai_module.DefaultHttpxClient(limits=pool, timeout=60),
    )
    barrier = threading.Barrier(THREADS)

    def caller(i: int) -> None:
        try:
            barrier.wait()
            for n in range(CALLS_PER_THREAD):
                name = f"thread-{i}-call-{n}"
                with tracer.start_as_current_span(name):
                    result = client.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": _prompt(i, n)}],
                    )
                with lock:
                    expected[result.id] = (name, result.usage.prompt_tokens)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert not errors, errors[:3]
    assert len(expected) == THREADS * CALLS_PER_THREAD
    _check(telemetry, expected)


async def test_1000_concurrent_asyncio_calls_every_span_once_under_its_parent(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("load")
    client = openai_module.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    expected: dict[str, tuple[str, int]] = {}

    async def caller(i: int) -> None:
        name = f"task-{i}"
        with tracer.start_as_current_span(name):
            await asyncio.sleep(0)
            result = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": _prompt(i, 0)}]
            )
        expected[result.id] = (name, result.usage.prompt_tokens)

    try:
        await asyncio.gather(*(caller(i) for i in range(TASKS)))
    finally:
        await client.close()
    assert len(expected) == TASKS
    _check(telemetry, expected)
