"""Images and audio transcriptions: spanned like the rest, with tokens where reported."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tests.conftest import Telemetry

AUDIO = ("speech.wav", b"RIFF" + b"\x00" * 4000, "audio/wav")


def test_image_generation_records_token_usage(telemetry: Telemetry, client: Any) -> None:
    result = client.images.generate(model="gpt-image-1", prompt="A lighthouse at dawn")
    span = telemetry.span()
    attrs = dict(span.attributes or {})
    assert span.name == "generate_content gpt-image-1"
    assert attrs["gen_ai.operation.name"] == "generate_content"
    assert attrs["gen_ai.request.model"] == "gpt-image-1"
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": result.usage.input_tokens, "output": result.usage.output_tokens}


def test_image_model_without_usage_gets_a_span_without_tokens(
    telemetry: Telemetry, client: Any
) -> None:
    result = client.images.generate(model="dall-e-3", prompt="A lighthouse at dawn")
    assert result.usage is None
    attrs = telemetry.span().attributes or {}
    assert not any(key.startswith("gen_ai.usage.") for key in attrs)
    assert telemetry.points("gen_ai.client.token.usage") == []


def test_image_edit_records_token_usage(telemetry: Telemetry, client: Any) -> None:
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
        b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
        b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    result = client.images.edit(
        model="gpt-image-1", image=("in.png", png, "image/png"), prompt="Add a boat"
    )
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.input_tokens


def test_streamed_image_generation_records_usage_of_the_completed_event(
    telemetry: Telemetry, client: Any
) -> None:
    if "stream" not in inspect.signature(client.images.generate).parameters:
        pytest.skip("this openai version cannot stream image generation")
    events = list(
        client.images.generate(
            model="gpt-image-1", prompt="A lighthouse", stream=True, partial_images=1
        )
    )
    completed = events[-1]
    attrs = telemetry.span().attributes or {}
    assert attrs["llmmeter.stream.end"] == "exhausted"
    assert attrs["gen_ai.usage.output_tokens"] == completed.usage.output_tokens


def test_transcription_records_audio_token_usage(telemetry: Telemetry, client: Any) -> None:
    result = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO)
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.request.model"] == "gpt-4o-transcribe"
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.output_tokens


def test_plain_text_transcription_is_returned_untouched(telemetry: Telemetry, client: Any) -> None:
    text = client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=AUDIO, response_format="text"
    )
    assert isinstance(text, str)
    assert text
    span = telemetry.span()
    assert span.status.status_code.name == "UNSET"
    assert not any(key.startswith("gen_ai.usage.") for key in span.attributes or {})


def test_whisper_duration_usage_is_not_reported_as_tokens(
    telemetry: Telemetry, client: Any
) -> None:
    result = client.audio.transcriptions.create(model="whisper-1", file=AUDIO)
    assert result.text
    attrs = telemetry.span().attributes or {}
    assert not any(key.startswith("gen_ai.usage.") for key in attrs)


async def test_async_transcription_stream_records_usage(telemetry: Telemetry, aclient: Any) -> None:
    stream = await aclient.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=AUDIO, stream=True
    )
    events = [event async for event in stream]
    done = events[-1]
    attrs = telemetry.span().attributes or {}
    assert attrs["llmmeter.stream.end"] == "exhausted"
    assert attrs["gen_ai.usage.input_tokens"] == done.usage.input_tokens


async def test_async_image_generation(telemetry: Telemetry, aclient: Any) -> None:
    result = await aclient.images.generate(model="gpt-image-1", prompt="A lighthouse")
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.usage.output_tokens"] == result.usage.output_tokens


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_raw_transcription_with_a_body_that_is_not_json_ends_its_span_and_metrics(
    telemetry: Telemetry, client: Any, response_format: str
) -> None:
    """The raw body is read for usage; a text, SRT or VTT body has none, and the call is
    recorded all the same (strict mode: nothing raised inside llmmeter either)."""
    raw = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=AUDIO, response_format=response_format
    )
    assert isinstance(raw.parse(), str)
    span = telemetry.span()
    assert span.status.status_code.name == "UNSET"
    assert not any(key.startswith("gen_ai.usage.") for key in span.attributes or {})
    (point,) = telemetry.points("gen_ai.client.operation.duration")
    assert point.count == 1
