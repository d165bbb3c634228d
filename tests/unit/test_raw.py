"""``with_raw_response`` / ``with_streaming_response``: telemetry without touching the user's
``parse()`` or headers."""

from __future__ import annotations

import gc
from typing import Any

from tests.conftest import Telemetry

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def test_raw_response_keeps_parse_and_headers_and_reads_usage_from_body(
    telemetry: Telemetry, client: Any
) -> None:
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    assert raw.headers["content-type"].startswith("application/json")
    completion = raw.parse()
    assert completion.choices[0].message.content
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attrs["gen_ai.response.id"] == completion.id


def test_raw_streamed_response_parses_to_a_stream_that_still_ends_the_span(
    telemetry: Telemetry, client: Any
) -> None:
    raw = client.chat.completions.with_raw_response.create(**CHAT, stream=True)
    stream = raw.parse()
    assert raw.parse() is stream
    del raw
    gc.collect()
    assert telemetry.spans() == []
    chunks = list(stream)
    assert chunks
    assert telemetry.span().attributes["llmmeter.stream.end"] == "exhausted"


def test_streaming_response_context_parse_records_usage(telemetry: Telemetry, client: Any) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT) as response:
        assert response.headers["content-type"].startswith("application/json")
        completion = response.parse()
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens


def test_streaming_response_read_as_text_is_untouched_and_usage_still_recorded(
    telemetry: Telemetry, client: Any
) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT) as response:
        text = response.text()
    assert '"usage"' in text
    attrs = telemetry.span().attributes or {}
    assert attrs["llmmeter.stream.end"] == "closed"
    assert attrs["gen_ai.usage.input_tokens"] > 0


def test_streaming_response_of_a_stream_iterated_through_parse(
    telemetry: Telemetry, client: Any
) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT, stream=True) as response:
        chunks = list(response.parse())
    assert chunks
    assert telemetry.span().attributes["llmmeter.stream.end"] == "exhausted"


def test_streaming_response_lines_read_by_the_user_end_span_on_exit(
    telemetry: Telemetry, client: Any
) -> None:
    with client.chat.completions.with_streaming_response.create(**CHAT, stream=True) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    # llmmeter never injects stream_options into raw requests: the user reads the bytes.
    assert not any('"choices":[]' in line for line in lines)
    assert telemetry.span().attributes["llmmeter.stream.end"] == "closed"


async def test_async_raw_and_streaming_responses(telemetry: Telemetry, aclient: Any) -> None:
    raw = await aclient.chat.completions.with_raw_response.create(**CHAT)
    completion = raw.parse()
    async with aclient.chat.completions.with_streaming_response.create(**CHAT) as response:
        streamed = await response.parse()
    raw_stream = await aclient.chat.completions.with_raw_response.create(**CHAT, stream=True)
    chunks = [c async for c in raw_stream.parse()]
    assert chunks
    first, second, third = telemetry.spans()
    assert first.attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert second.attributes["gen_ai.usage.input_tokens"] == streamed.usage.prompt_tokens
    assert third.attributes["llmmeter.stream.end"] == "exhausted"


def test_raw_response_objects_made_before_uninstrument_go_inert(
    telemetry: Telemetry, client: Any
) -> None:
    import llmmeter

    raw_api = client.chat.completions.with_raw_response
    raw_api.create(**CHAT)
    assert len(telemetry.spans()) == 1
    llmmeter.uninstrument()
    raw_api.create(**CHAT).parse()
    assert len(telemetry.spans()) == 1
