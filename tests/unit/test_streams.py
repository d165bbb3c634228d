"""A stream's span ends exactly once, whichever of its ways the stream ends."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from opentelemetry import trace

from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a story"}]}


def _only_span_end(telemetry: Telemetry) -> str:
    return telemetry.span().attributes["llmmeter.stream.end"]


def test_early_break_then_close_ends_span_once(telemetry: Telemetry, client: Any) -> None:
    stream = client.chat.completions.create(**CHAT, stream=True)
    for _ in stream:
        break
    assert telemetry.spans() == []
    stream.close()
    stream.close()
    assert _only_span_end(telemetry) == "closed"


def test_context_exit_ends_span_and_enter_returns_the_proxy(
    telemetry: Telemetry, client: Any
) -> None:
    created = client.chat.completions.create(**CHAT, stream=True)
    with created as stream:
        assert stream is created
        next(stream)
    assert _only_span_end(telemetry) == "closed"


def test_abandoned_stream_ends_span_when_garbage_collected(
    telemetry: Telemetry, client: Any
) -> None:
    stream = client.chat.completions.create(**CHAT, stream=True)
    next(stream)
    del stream
    gc.collect()
    assert _only_span_end(telemetry) == "abandoned"


def test_exhausted_stream_ends_span_on_the_last_chunk(telemetry: Telemetry, client: Any) -> None:
    stream = client.chat.completions.create(**CHAT, stream=True)
    chunks = list(stream)
    assert chunks
    assert _only_span_end(telemetry) == "exhausted"
    stream.close()
    assert len(telemetry.spans()) == 1


def test_stream_span_is_not_current_while_the_user_holds_the_stream(
    telemetry: Telemetry, client: Any
) -> None:
    before = trace.get_current_span()
    stream = client.chat.completions.create(**CHAT, stream=True)
    assert trace.get_current_span() is before
    for _ in stream:
        assert trace.get_current_span() is before
    assert telemetry.span().attributes["llmmeter.stream.end"] == "exhausted"


def test_error_in_the_middle_of_a_stream_ends_span_as_error(
    telemetry: Telemetry, client: Any, server: FakeOpenAI
) -> None:
    server.break_stream_after(2)
    stream = client.chat.completions.create(**CHAT, stream=True)
    # The class differs by SDK major (3.x: APIConnectionError; 1.x/2.x: the transport's).
    with pytest.raises(Exception) as info:  # noqa: PT011
        for _ in stream:
            pass
    span = telemetry.span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["llmmeter.stream.end"] == "error"
    assert span.attributes["error.type"] == type(info.value).__qualname__


async def test_async_early_break_then_awaited_close_ends_span(
    telemetry: Telemetry, aclient: Any
) -> None:
    stream = await aclient.chat.completions.create(**CHAT, stream=True)
    async for _ in stream:
        break
    await stream.close()
    assert _only_span_end(telemetry) == "closed"


async def test_async_context_exit_ends_span_and_returns_the_proxy(
    telemetry: Telemetry, aclient: Any
) -> None:
    created = await aclient.chat.completions.create(**CHAT, stream=True)
    async with created as stream:
        assert stream is created
        await stream.__anext__()
    assert _only_span_end(telemetry) == "closed"


async def test_async_abandoned_stream_ends_span_when_garbage_collected(
    telemetry: Telemetry, aclient: Any
) -> None:
    stream = await aclient.chat.completions.create(**CHAT, stream=True)
    await stream.__anext__()
    await stream.close()  # the SDK's own resources; the span ended already
    assert _only_span_end(telemetry) == "closed"
    stream2 = await aclient.chat.completions.create(**CHAT, stream=True)
    await stream2.__anext__()
    response = stream2.response
    del stream2
    gc.collect()
    await response.aclose()
    ends = sorted(s.attributes["llmmeter.stream.end"] for s in telemetry.spans())
    assert ends == ["abandoned", "closed"]


async def test_async_exhausted_stream_records_time_to_first_chunk(
    telemetry: Telemetry, aclient: Any, server: FakeOpenAI
) -> None:
    server.set_latency(first_chunk=0.2)
    stream = await aclient.chat.completions.create(**CHAT, stream=True)
    chunks = [c async for c in stream]
    assert chunks
    ttfc = telemetry.span().attributes["gen_ai.response.time_to_first_chunk"]
    assert ttfc >= 0.2
    (point,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.sum == pytest.approx(ttfc)


def test_server_rejecting_stream_options_gets_the_request_as_written(
    telemetry: Telemetry, client: Any, server: FakeOpenAI
) -> None:
    """Injection never causes a failure: retried once without it, endpoint remembered."""
    server.reject_stream_options = True
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert chunks
    statuses = [r.response_status for r in server.requests]
    assert statuses == [400, 200]
    assert "stream_options" not in server.requests[1].body
    first = telemetry.span()
    assert first.status.status_code.name == "UNSET"
    assert first.attributes["llmmeter.stream.usage_injected"] is False
    assert [e.name for e in first.events] == ["llmmeter.stream_options_rejected"]

    list(client.chat.completions.create(**CHAT, stream=True))
    assert [r.response_status for r in server.requests] == [400, 200, 200]
    assert "stream_options" not in server.requests[2].body


def test_stream_usage_injection_can_be_turned_off(
    server: FakeOpenAI, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmmeter
    from tests.conftest import make_telemetry

    monkeypatch.setenv("LLMMETER_INJECT_STREAM_USAGE", "false")
    tel = make_telemetry()
    tel.instrument()
    try:
        list(client.chat.completions.create(**CHAT, stream=True))
    finally:
        llmmeter.uninstrument()
    assert "stream_options" not in server.requests[-1].body
    attrs = tel.span().attributes or {}
    assert "gen_ai.usage.output_tokens" not in attrs
    assert "llmmeter.stream.usage_injected" not in attrs


def test_legacy_completions_stream_gets_exact_usage(
    telemetry: Telemetry, client: Any, server: FakeOpenAI
) -> None:
    chunks = list(
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True)
    )
    assert all(c.choices for c in chunks)
    usage = server.requests[-1].usage
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]


async def test_async_proxy_has_aclose_exactly_when_the_sdk_stream_has_it(
    telemetry: Telemetry, aclient: Any
) -> None:
    stream = await aclient.chat.completions.create(**CHAT, stream=True)
    sdk_has = hasattr(stream.__wrapped__, "aclose")  # openai 3.x only
    assert hasattr(stream, "aclose") == sdk_has
    # Code such as this must see the SDK's own shape.
    closer = getattr(stream, "aclose", None) or stream.close
    await closer()
    assert _only_span_end(telemetry) == "closed"


def test_stream_response_close_through_the_proxy_ends_the_span(
    telemetry: Telemetry, client: Any
) -> None:
    """The `.stream()` helpers keep `stream.response` and close that."""
    stream = client.chat.completions.create(**CHAT, stream=True)
    next(stream)
    stream.response.close()
    assert stream.__wrapped__.response.is_closed
    assert _only_span_end(telemetry) == "closed"


def test_stream_helper_left_early_ends_the_span_as_closed(
    telemetry: Telemetry, client: Any
) -> None:
    with client.chat.completions.stream(**CHAT) as stream:
        next(iter(stream))
    assert _only_span_end(telemetry) == "closed"
