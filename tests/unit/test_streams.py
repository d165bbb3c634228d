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
    tel.instrument(inject_stream_usage=None)  # from the environment
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


def test_stream_response_is_the_sdks_own_object(telemetry: Telemetry, client: Any) -> None:
    stream = client.chat.completions.create(**CHAT, stream=True)
    assert stream.response is stream.response
    assert stream.response is stream.__wrapped__.response
    assert type(stream.response) is type(stream.__wrapped__.response)
    stream.close()


async def test_async_stream_response_is_the_sdks_own_object(
    telemetry: Telemetry, aclient: Any
) -> None:
    stream = await aclient.chat.completions.create(**CHAT, stream=True)
    assert stream.response is stream.response is stream.__wrapped__.response
    await stream.close()


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_async_stream_helper_left_early_ends_the_span_as_closed(
    telemetry: Telemetry, aclient: Any, api: str
) -> None:
    if api == "chat":
        helper = aclient.chat.completions.stream(**CHAT)
    else:
        helper = aclient.responses.stream(model="gpt-4o-mini", input="Tell me a story")
    async with helper as stream:
        await stream.__anext__()
        assert stream._raw_stream.response is stream._raw_stream.__wrapped__.response
    assert _only_span_end(telemetry) == "closed"


def test_stream_helper_left_early_ends_the_span_as_closed(
    telemetry: Telemetry, client: Any
) -> None:
    with client.chat.completions.stream(**CHAT) as stream:
        next(iter(stream))
    assert _only_span_end(telemetry) == "closed"


# --- the usage chunk: hidden only where llmmeter alone caused it --------------------------


def _chunks(stream: Any) -> list[Any]:
    """What the user sees of a stream, ids and timestamps aside."""
    return [(len(c.choices), [ch.delta.content for ch in c.choices], c.usage) for c in stream]


@pytest.fixture
def by_default(server: FakeOpenAI) -> Any:
    """llmmeter with its default stream-usage mode, ``auto``."""
    import llmmeter
    from tests.conftest import make_telemetry

    tel = make_telemetry()
    tel.instrument(inject_stream_usage=None)
    yield tel
    llmmeter.uninstrument()


def test_a_usage_chunk_the_server_sends_unasked_reaches_the_user_and_counts(
    server: FakeOpenAI, openai_module: Any, by_default: Telemetry
) -> None:
    """A server that always reports stream usage (vLLM with forced usage, LiteLLM's
    always_include_stream_usage, a mock replaying recorded streams): the user sees the chunk
    the SDK yields without llmmeter, and the span has the exact tokens from it."""
    import llmmeter

    server.always_include_usage = True
    with openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        seen = _chunks(client.chat.completions.create(**CHAT, stream=True))
        with client.chat.completions.stream(**CHAT) as helper:
            final = helper.get_final_completion()
    llmmeter.uninstrument()
    with openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        bare = _chunks(client.chat.completions.create(**CHAT, stream=True))
        with client.chat.completions.stream(**CHAT) as helper:
            bare_final = helper.get_final_completion()
    assert seen == bare
    assert seen[-1][0] == 0 and seen[-1][2] is not None  # the usage-only chunk, shown
    assert final.usage == bare_final.usage and final.usage is not None
    for request in server.requests:
        assert "stream_options" not in request.body  # sent exactly as written
    stream_span, helper_span = by_default.spans()
    attrs = stream_span.attributes or {}
    assert attrs["gen_ai.usage.output_tokens"] == bare[-1][2].completion_tokens
    assert attrs["gen_ai.usage.input_tokens"] == bare[-1][2].prompt_tokens
    assert "llmmeter.stream.usage_injected" not in attrs
    assert (helper_span.attributes or {})["gen_ai.usage.output_tokens"] > 0


def test_a_server_other_than_openais_gets_the_stream_request_as_written_by_default(
    server: FakeOpenAI, client: Any, by_default: Telemetry
) -> None:
    """Usage is asked for by default only on OpenAI's own API: elsewhere the chunk it adds
    might have come unasked, and hiding it would take it from the user."""
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert all(c.choices for c in chunks)
    assert "stream_options" not in server.requests[-1].body
    attrs = by_default.span().attributes or {}
    assert "llmmeter.stream.usage_injected" not in attrs
    assert "gen_ai.usage.output_tokens" not in attrs  # this server reports none unasked


def test_azure_openai_is_asked_for_usage_and_the_extra_chunk_hidden_by_default(
    server: FakeOpenAI, openai_module: Any, by_default: Telemetry
) -> None:
    """Azure OpenAI, like OpenAI's own API, sends the usage chunk only when asked."""
    import llmmeter

    def azure() -> Any:
        return openai_module.AzureOpenAI(
            azure_endpoint=server.url, api_key="k", api_version="2024-10-21", max_retries=0
        )

    with azure() as client:
        seen = _chunks(client.chat.completions.create(**CHAT, stream=True))
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}
    llmmeter.uninstrument()
    with azure() as client:
        assert seen == _chunks(client.chat.completions.create(**CHAT, stream=True))
    attrs = by_default.span().attributes or {}
    assert attrs["llmmeter.stream.usage_injected"] is True
    assert attrs["gen_ai.usage.output_tokens"] > 0


@pytest.mark.parametrize(
    ("host", "azure", "expected"),
    [
        ("api.openai.com", False, True),
        ("API.OpenAI.com", False, True),
        ("my-resource.openai.azure.com", False, True),
        ("my-resource.cognitiveservices.azure.com", False, True),
        ("gateway.example.com", True, True),  # an AzureOpenAI client behind a gateway
        ("127.0.0.1", False, False),
        ("api.openai.com.example.net", False, False),
        ("openrouter.ai", False, False),
        (None, False, False),
    ],
)
def test_only_openais_own_hosts_are_known_to_send_usage_only_when_asked(
    host: str | None, azure: bool, expected: bool
) -> None:
    from llmmeter._targets import reports_usage_only_when_asked

    assert reports_usage_only_when_asked(host, azure=azure) is expected
