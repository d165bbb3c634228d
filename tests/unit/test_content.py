"""Prompt and completion content: never recorded unless the user opts in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import llmmeter
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry

PROMPT = "The secret plan is in the blue folder"


@pytest.fixture
def capturing() -> Iterator[Telemetry]:
    tel = make_telemetry()
    tel.instrument(capture_content=True)
    yield tel
    llmmeter.uninstrument()


def test_content_is_not_recorded_by_default(telemetry: Telemetry, client: Any) -> None:
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    span = telemetry.span()
    dumped = repr(span.attributes) + repr([e.attributes for e in span.events])
    assert PROMPT not in dumped
    assert result.choices[0].message.content not in dumped
    assert not any(
        k.startswith(("gen_ai.input", "gen_ai.output.messages")) for k in span.attributes or {}
    )


def test_opted_in_chat_content_follows_genai_message_format(
    capturing: Telemetry, client: Any
) -> None:
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": PROMPT}],
    )
    attrs = capturing.span().attributes or {}
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]},
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": result.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]


def test_opted_in_stream_content_is_accumulated(capturing: Telemetry, client: Any) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    output = json.loads(capturing.span().attributes["gen_ai.output.messages"])
    assert output[0]["parts"] == [{"type": "text", "content": text}]


def test_opted_in_tool_calls_are_recorded(capturing: Telemetry, client: Any) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
    )
    call = result.choices[0].message.tool_calls[0]
    output = json.loads(capturing.span().attributes["gen_ai.output.messages"])
    assert output[0]["parts"] == [
        {
            "type": "tool_call",
            "id": call.id,
            "name": "get_weather",
            "arguments": call.function.arguments,
        }
    ]
    assert output[0]["finish_reason"] == "tool_calls"


def test_opted_in_content_is_truncated_to_the_limit(
    server: FakeOpenAI, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_CONTENT_MAX_LENGTH", "64")
    tel = make_telemetry()
    tel.instrument(capture_content=True)
    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT * 10}]
        )
    finally:
        llmmeter.uninstrument()
    value = tel.span().attributes["gen_ai.input.messages"]
    assert len(value) == 64
    assert value.endswith("...[truncated]")


def test_images_in_prompts_are_named_not_copied(capturing: Telemetry, client: Any) -> None:
    data_url = "data:image/png;base64," + "A" * 500
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }
        ],
    )
    value = capturing.span().attributes["gen_ai.input.messages"]
    assert "AAAA" not in value
    assert json.loads(value)[0]["parts"][1] == {"type": "image_url"}


def test_responses_input_and_instructions_are_recorded_when_opted_in(
    capturing: Telemetry, client: Any
) -> None:
    result = client.responses.create(model="gpt-4o-mini", input=PROMPT, instructions="Be brief")
    attrs = capturing.span().attributes or {}
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert json.loads(attrs["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "Be brief"}
    ]
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output[0]["parts"] == [{"type": "text", "content": result.output_text}]


@pytest.mark.parametrize(
    ("mode", "on_span", "as_event"),
    [("EVENT_ONLY", False, True), ("SPAN_AND_EVENT", True, True), ("SPAN_ONLY", True, False)],
)
def test_content_goes_where_the_genai_capture_mode_says(
    client: Any, monkeypatch: pytest.MonkeyPatch, mode: str, on_span: bool, as_event: bool
) -> None:
    """EVENT_ONLY puts prompt and answer on a gen_ai.client.inference.operation.details event
    (the OpenTelemetry logs API), in the span's context, and not on the span."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", mode)
    events = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(events))
    tel = make_telemetry()
    tel.instrument(logger_provider=logger_provider)
    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
        )
    finally:
        llmmeter.uninstrument()
    span = tel.span()
    attrs = span.attributes or {}
    assert ("gen_ai.input.messages" in attrs) is on_span
    assert ("gen_ai.output.messages" in attrs) is on_span
    records = [r.log_record for r in events.get_finished_logs()]
    if not as_event:
        assert records == []
        return
    (record,) = records
    assert record.event_name == "gen_ai.client.inference.operation.details"
    assert record.span_id == span.context.span_id
    assert record.trace_id == span.context.trace_id
    event = dict(record.attributes or {})
    assert json.loads(event["gen_ai.input.messages"])[0]["parts"][0]["content"] == "Say hello"
    assert json.loads(event["gen_ai.output.messages"])[0]["role"] == "assistant"
    assert event["gen_ai.request.model"] == "gpt-4o-mini"
    assert event["gen_ai.operation.name"] == "chat"
