"""``llmmeter.testing.FakeOpenAI`` driven by the official openai SDK over real HTTP.

Each scenario runs with the sync and the async client (the ``api`` fixture). Token
numbers follow the documented rule: text counts ceil(chars / 4), each message 3, the
prompt 3 more; the default reply is 22 tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmmeter.testing import DEFAULT_REPLY, FakeOpenAI, RecordedRequest
from tests.conftest import LOAD_TIMEOUT

openai = pytest.importorskip("openai")

HELLO = [{"role": "user", "content": "Hi"}]
#: 3 (priming) + 3 (message) + 1 ("Hi")
HELLO_TOKENS = 7
REPLY_TOKENS = 22
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
LONG_PROMPT = [
    {"role": "system", "content": "You are terse. " * 400},
    {"role": "user", "content": "Summarize."},
]


@pytest.fixture(scope="module")
def running() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_server(running: FakeOpenAI) -> Iterator[FakeOpenAI]:
    running.reset()
    yield running
    running.reset()


class Api:
    """One scenario, written once, run with the sync or the async SDK client."""

    def __init__(self, client: Any, is_async: bool) -> None:
        self.client = client
        self.is_async = is_async

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        target = self.client
        for name in method.split("."):
            target = getattr(target, name)
        result = target(*args, **kwargs)
        return await result if self.is_async else result

    async def stream(self, method: str, /, **kwargs: Any) -> list[Any]:
        stream = await self.call(method, stream=True, **kwargs)
        if self.is_async:
            return [item async for item in stream]
        return list(stream)


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, fake_server: FakeOpenAI) -> AsyncIterator[Api]:
    if request.param == "sync":
        with openai.OpenAI(base_url=fake_server.base_url, api_key="sk-test", max_retries=0) as c:
            yield Api(c, is_async=False)
        return
    client = openai.AsyncOpenAI(base_url=fake_server.base_url, api_key="sk-test", max_retries=0)
    yield Api(client, is_async=True)
    await client.close()


@pytest.fixture
def client(fake_server: FakeOpenAI) -> Iterator[Any]:
    with openai.OpenAI(base_url=fake_server.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


# -- package --------------------------------------------------------------------------------


# -- chat completions -----------------------------------------------------------------------


async def test_chat_reports_snapshot_usage_and_service_tier(api: Api) -> None:
    reply = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert reply.model == "gpt-4o-2024-08-06"
    assert reply.object == "chat.completion"
    assert reply.service_tier == "default"
    assert reply.choices[0].message.content == DEFAULT_REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == HELLO_TOKENS
    assert reply.usage.completion_tokens == REPLY_TOKENS
    assert reply.usage.total_tokens == HELLO_TOKENS + REPLY_TOKENS
    assert reply.usage.prompt_tokens_details.cached_tokens == 0
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0


async def test_chat_echoes_requested_service_tier(api: Api) -> None:
    reply = await api.call(
        "chat.completions.create", model="gpt-5", messages=HELLO, service_tier="priority"
    )
    assert reply.service_tier == "priority"


async def test_chat_stream_with_include_usage_nulls_usage_until_the_last_chunk(api: Api) -> None:
    chunks = await api.stream(
        "chat.completions.create",
        model="gpt-4o-mini",
        messages=HELLO,
        stream_options={"include_usage": True},
    )
    *content, last = chunks
    assert all(chunk.usage is None for chunk in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == DEFAULT_REPLY
    assert content[-1].choices[0].finish_reason == "stop"
    assert last.choices == []
    assert last.usage.prompt_tokens == HELLO_TOKENS
    assert last.usage.completion_tokens == REPLY_TOKENS


async def test_chat_stream_without_include_usage_sends_no_usage(
    api: Api, fake_server: FakeOpenAI
) -> None:
    chunks = await api.stream("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert all(chunk.choices for chunk in chunks)
    assert all("usage" not in chunk.model_dump(exclude_unset=True) for chunk in chunks)
    assert fake_server.requests[-1].usage is None


async def test_chat_n_choices_stream_interleaved(api: Api) -> None:
    chunks = await api.stream(
        "chat.completions.create",
        model="gpt-4o-mini",
        messages=HELLO,
        n=2,
        stream_options={"include_usage": True},
    )
    texts = {0: "", 1: ""}
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: DEFAULT_REPLY, 1: DEFAULT_REPLY}
    assert chunks[-1].usage.completion_tokens == 2 * REPLY_TOKENS


async def test_chat_max_tokens_cuts_the_reply(api: Api) -> None:
    reply = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "This is a test reply"
    assert reply.usage.completion_tokens == 5


async def test_chat_calls_the_first_tool_with_schema_arguments(api: Api) -> None:
    reply = await api.call(
        "chat.completions.create", model="gpt-4o", messages=HELLO, tools=[WEATHER_TOOL]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example", "days": 1}
    assert call.id.startswith("call_")


async def test_chat_stream_tool_call_arguments_reassemble(api: Api) -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {}}}
    chunks = await api.stream(
        "chat.completions.create",
        model="gpt-4o",
        messages=HELLO,
        tools=[other, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert calls[0][0].function.name == "get_weather"
    arguments = "".join(call[0].function.arguments or "" for call in calls)
    assert json.loads(arguments) == {"city": "example", "days": 1}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_chat_answers_in_text_after_a_tool_result(api: Api) -> None:
    messages = [
        *HELLO,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    reply = await api.call(
        "chat.completions.create", model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
    )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content == DEFAULT_REPLY


async def test_chat_tool_choice_none_answers_in_text(api: Api) -> None:
    reply = await api.call(
        "chat.completions.create",
        model="gpt-4o",
        messages=HELLO,
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert reply.choices[0].message.tool_calls is None


async def test_chat_legacy_functions_get_a_function_call(api: Api) -> None:
    reply = await api.call(
        "chat.completions.create",
        model="gpt-4",
        messages=HELLO,
        functions=[WEATHER_TOOL["function"]],
    )
    assert reply.choices[0].finish_reason == "function_call"
    assert reply.choices[0].message.function_call.name == "get_weather"


def test_chat_parse_with_json_schema_returns_a_valid_document(client: Any) -> None:
    from pydantic import BaseModel

    class Step(BaseModel):
        explanation: str
        output: int

    class Solution(BaseModel):
        steps: list[Step]
        final_answer: str

    completion = client.chat.completions.parse(
        model="gpt-4o", messages=HELLO, response_format=Solution
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == Solution(steps=[Step(explanation="example", output=1)], final_answer="example")


async def test_reasoning_models_spend_reasoning_tokens_by_effort(api: Api) -> None:
    default = await api.call("chat.completions.create", model="o3-mini", messages=HELLO)
    low = await api.call(
        "chat.completions.create", model="gpt-5", messages=HELLO, reasoning_effort="low"
    )
    none = await api.call("chat.completions.create", model="gpt-5.1", messages=HELLO)
    assert default.usage.completion_tokens_details.reasoning_tokens == 64
    assert default.usage.completion_tokens == 64 + REPLY_TOKENS
    assert low.usage.completion_tokens_details.reasoning_tokens == 32
    assert none.usage.completion_tokens_details.reasoning_tokens == 0


async def test_reasoning_budget_smaller_than_thinking_leaves_empty_content(api: Api) -> None:
    reply = await api.call(
        "chat.completions.create", model="gpt-5", messages=HELLO, max_completion_tokens=20
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == ""
    assert reply.usage.completion_tokens == 20


async def test_reasoning_model_rejects_max_tokens_like_the_real_api(api: Api) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await api.call("chat.completions.create", model="o3", messages=HELLO, max_tokens=10)
    assert info.value.code == "unsupported_parameter"
    assert info.value.param == "max_tokens"


async def test_repeated_long_prompt_reports_cached_tokens(api: Api) -> None:
    first = await api.call("chat.completions.create", model="gpt-4o", messages=LONG_PROMPT)
    second = await api.call("chat.completions.create", model="gpt-4o", messages=LONG_PROMPT)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024
    assert cached % 128 == 0
    assert cached <= second.usage.prompt_tokens


async def test_short_prompts_are_never_cached(api: Api) -> None:
    for _ in range(2):
        reply = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert reply.usage.prompt_tokens_details.cached_tokens == 0


async def test_explicit_prompt_cache_writes_then_reads(api: Api) -> None:
    kwargs = {
        "model": "gpt-5",
        "messages": HELLO,
        "extra_body": {"prompt_cache_options": {"mode": "explicit"}},
        "prompt_cache_key": "k",
    }
    written = await api.call("chat.completions.create", **kwargs)
    read = await api.call("chat.completions.create", **kwargs)
    details = written.usage.prompt_tokens_details
    assert (details.cache_write_tokens, details.cached_tokens) == (HELLO_TOKENS, 0)
    details = read.usage.prompt_tokens_details
    assert (details.cache_write_tokens, details.cached_tokens) == (0, HELLO_TOKENS)


async def test_unknown_model_is_404_until_added(api: Api, fake_server: FakeOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await api.call("chat.completions.create", model="my-finetune", messages=HELLO)
    assert info.value.code == "model_not_found"
    assert info.value.body["message"] == (
        "The model `my-finetune` does not exist or you do not have access to it."
    )
    fake_server.add_model("my-finetune", snapshot="my-finetune-2026-01-01")
    reply = await api.call("chat.completions.create", model="my-finetune", messages=HELLO)
    assert reply.model == "my-finetune-2026-01-01"


async def test_same_request_gets_the_same_body_except_ids(api: Api) -> None:
    def stable(reply: Any) -> Any:
        return reply.model_dump(exclude={"id", "created"})

    first = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    second = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert stable(first) == stable(second)
    assert first.id != second.id


# -- responses --------------------------------------------------------------------------------


async def test_responses_text(api: Api) -> None:
    response = await api.call("responses.create", model="gpt-4.1", input="Hi")
    assert response.status == "completed"
    assert response.model == "gpt-4.1-2025-04-14"
    assert response.output_text == DEFAULT_REPLY
    assert response.usage.input_tokens == HELLO_TOKENS
    assert response.usage.output_tokens == REPLY_TOKENS
    assert response.usage.input_tokens_details.cached_tokens == 0


async def test_responses_stream_event_sequence(api: Api) -> None:
    events = await api.stream("responses.create", model="gpt-4o-mini", input="Hi")
    types = [event.type for event in events]
    deltas = types.count("response.output_text.delta")
    assert deltas == REPLY_TOKENS
    assert [t for t in types if t != "response.output_text.delta"] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[-1].response.usage.output_tokens == REPLY_TOKENS


async def test_responses_reasoning_items_and_summary_stream(api: Api) -> None:
    events = await api.stream(
        "responses.create", model="o4-mini", input="Hi", reasoning={"summary": "auto"}
    )
    types = [event.type for event in events]
    assert "response.reasoning_summary_text.delta" in types
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.usage.output_tokens_details.reasoning_tokens == 64


async def test_responses_function_call_then_text_after_output(api: Api) -> None:
    tool = {"type": "function", **WEATHER_TOOL["function"]}
    first = await api.call("responses.create", model="gpt-4o", input="Hi", tools=[tool])
    (call,) = first.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "example", "days": 1}
    follow_up = await api.call(
        "responses.create",
        model="gpt-4o",
        tools=[tool],
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert follow_up.output_text == DEFAULT_REPLY
    assert follow_up.usage.input_tokens > first.usage.total_tokens


async def test_responses_builtin_tools_emit_their_items(api: Api) -> None:
    response = await api.call(
        "responses.create",
        model="gpt-5",
        input="What is new?",
        tools=[{"type": "web_search"}],
        include=["web_search_call.action.sources"],
    )
    assert [item.type for item in response.output] == [
        "reasoning",
        "web_search_call",
        "reasoning",
        "message",
    ]
    annotation = response.output[-1].content[0].annotations[0]
    assert annotation.type == "url_citation"
    assert response.usage.input_tokens_details.cached_tokens >= 1024


async def test_responses_background_is_queued_then_retrieved_complete(api: Api) -> None:
    queued = await api.call("responses.create", model="gpt-4o", input="Hi", background=True)
    assert queued.status == "queued"
    assert queued.usage is None
    done = await api.call("responses.retrieve", queued.id)
    assert done.status == "completed"
    assert done.usage.output_tokens == REPLY_TOKENS


async def test_responses_small_max_output_tokens_is_incomplete(api: Api) -> None:
    events = await api.stream("responses.create", model="gpt-4o", input="Hi", max_output_tokens=16)
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.usage.output_tokens == 16


async def test_responses_retrieve_unknown_is_404(api: Api) -> None:
    with pytest.raises(openai.NotFoundError):
        await api.call("responses.retrieve", "resp_missing")


async def test_responses_prompt_template_supplies_model_and_instructions(
    api: Api, fake_server: FakeOpenAI
) -> None:
    fake_server.add_prompt("pmpt_1", model="o4-mini", user="Say {{word}}.")
    response = await api.call(
        "responses.create", prompt={"id": "pmpt_1", "variables": {"word": "hello"}}
    )
    assert response.model == "o4-mini-2025-04-16"
    assert response.instructions[1].content[0].text == "Say hello."


async def test_responses_unknown_model_is_400_naming_model(api: Api) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await api.call("responses.create", model="no-such-model", input="Hi")
    assert (info.value.code, info.value.param) == ("model_not_found", "model")


# -- embeddings and legacy completions ------------------------------------------------------


async def test_embeddings_float_base64_dimensions_and_batches(api: Api) -> None:
    floats = await api.call(
        "embeddings.create",
        model="text-embedding-3-small",
        input=["Hi", "there"],
        encoding_format="float",
    )
    assert [len(item.embedding) for item in floats.data] == [1536, 1536]
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == 1 + 2  # "Hi", "there"
    encoded = await api.call(
        "embeddings.create", model="text-embedding-3-small", input="Hi", encoding_format="base64"
    )
    raw = base64.b64decode(encoded.data[0].embedding)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats.data[0].embedding
    short = await api.call(
        "embeddings.create", model="text-embedding-3-large", input="Hi", dimensions=256
    )
    assert len(short.data[0].embedding) == 256
    tokens = await api.call(
        "embeddings.create", model="text-embedding-ada-002", input=[[1, 2, 3], [4, 5]]
    )
    assert tokens.model == "text-embedding-ada-002-v2"
    assert tokens.usage.prompt_tokens == 5


async def test_embeddings_reject_dimensions_on_ada(api: Api) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await api.call(
            "embeddings.create", model="text-embedding-ada-002", input="Hi", dimensions=8
        )
    assert info.value.param == "dimensions"


async def test_legacy_completions_default_to_16_tokens_and_stream_usage(api: Api) -> None:
    reply = await api.call("completions.create", model="davinci-002", prompt="Hi")
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 16
    chunks = await api.stream(
        "completions.create",
        model="gpt-3.5-turbo-instruct",
        prompt="Hi",
        max_tokens=100,
        stream_options={"include_usage": True},
    )
    assert "".join(c.choices[0].text for c in chunks[:-1]) == DEFAULT_REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == REPLY_TOKENS


async def test_models_list_and_retrieve(api: Api) -> None:
    page = await api.call("models.list")
    names = [model.id async for model in page] if api.is_async else [m.id for m in page]
    assert {"gpt-4o", "text-embedding-3-small", "o3", "gpt-image-1", "whisper-1"} <= set(names)
    model = await api.call("models.retrieve", "gpt-4o")
    assert model.id == "gpt-4o"


# -- images and audio -------------------------------------------------------------------------

#: A valid 1x1 PNG, as a test would upload it.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
#: One second of 16 kHz 16-bit mono audio by the fake's rule: 10 audio tokens.
ONE_SECOND_WAV = ("speech.wav", b"RIFF" + b"\x00" * 31996, "audio/wav")
#: "A lighthouse at dawn" is 20 characters: 5 text tokens.
LIGHTHOUSE = "A lighthouse at dawn"


def _can_stream_images() -> bool:
    import inspect

    generate = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9").images.generate
    return "stream" in inspect.signature(generate).parameters


async def test_gpt_image_generation_reports_token_usage_and_settings(api: Api) -> None:
    result = await api.call("images.generate", model="gpt-image-1", prompt=LIGHTHOUSE)
    assert len(result.data) == 1
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\x89PNG\r\n\x1a\n")
    assert (result.data[0].url, result.data[0].revised_prompt) == (None, None)
    # Defaults are answered resolved, as the real API does.
    assert (result.background, result.output_format, result.quality, result.size) == (
        "opaque",
        "png",
        "high",
        "1024x1024",
    )
    usage = result.usage
    assert usage.input_tokens == 5
    assert usage.input_tokens_details.text_tokens == 5
    assert usage.input_tokens_details.image_tokens == 0
    assert usage.output_tokens == 4160
    assert usage.total_tokens == 4165
    for quality, tokens in (("low", 272), ("medium", 1056), ("high", 4160)):
        result = await api.call(
            "images.generate", model="gpt-image-1-mini", prompt=LIGHTHOUSE, quality=quality
        )
        assert (result.quality, result.usage.output_tokens) == (quality, tokens)
    result = await api.call(
        "images.generate",
        model="gpt-image-1",
        prompt=LIGHTHOUSE,
        n=2,
        size="1024x1536",
        quality="medium",
        background="transparent",
        output_format="webp",
    )
    assert len(result.data) == 2
    assert (result.background, result.output_format, result.size) == (
        "transparent",
        "webp",
        "1024x1536",
    )
    assert result.usage.output_tokens == 2 * 1584


async def test_dall_e_generation_has_urls_revised_prompt_and_no_usage(
    api: Api, fake_server: FakeOpenAI
) -> None:
    import urllib.request

    result = await api.call("images.generate", model="dall-e-3", prompt=LIGHTHOUSE)
    assert result.usage is None
    assert result.quality is None
    image = result.data[0]
    assert image.revised_prompt == LIGHTHOUSE
    assert image.b64_json is None
    # The URL is served by the fake itself, like a signed blob URL: no key needed.
    with urllib.request.urlopen(image.url) as download:  # noqa: ASYNC210
        assert download.headers["content-type"] == "image/png"
        assert download.read().startswith(b"\x89PNG")
    result = await api.call(
        "images.generate",
        model="dall-e-2",
        prompt=LIGHTHOUSE,
        n=3,
        size="256x256",
        response_format="b64_json",
    )
    assert [(i.url, i.revised_prompt) for i in result.data] == [(None, None)] * 3
    assert all(base64.b64decode(i.b64_json).startswith(b"\x89PNG") for i in result.data)
    with pytest.raises(openai.BadRequestError) as info:
        await api.call("images.generate", model="dall-e-3", prompt=LIGHTHOUSE, n=2)
    assert info.value.param == "n"
    generations = [r for r in fake_server.requests if r.method == "POST"]
    assert [r.usage for r in generations] == [None, None, None]


async def test_image_generation_rejects_what_the_real_api_rejects(api: Api) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await api.call(
            "images.generate", model="gpt-image-1", prompt="x", response_format="b64_json"
        )
    assert (info.value.param, info.value.code) == ("response_format", "unknown_parameter")
    with pytest.raises(openai.BadRequestError) as info:
        await api.call("images.generate", model="gpt-image-1", prompt="x", size="999x999")
    assert (info.value.param, info.value.code) == ("size", "invalid_value")
    with pytest.raises(openai.BadRequestError) as info:
        await api.call("images.generate", model="gpt-4o", prompt="x")
    assert info.value.param == "model"
    with pytest.raises(openai.NotFoundError) as not_found:
        await api.call("images.generate", model="no-such-image-model", prompt="x")
    assert not_found.value.code == "model_not_found"


async def test_image_generation_stream_sends_partials_then_completed_with_usage(
    api: Api, fake_server: FakeOpenAI
) -> None:
    if not _can_stream_images():
        pytest.skip(f"openai {openai.__version__} cannot stream image generation")
    events = await api.stream(
        "images.generate",
        model="gpt-image-1",
        prompt=LIGHTHOUSE,
        partial_images=2,
        size="1536x1024",
        quality="low",
    )
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    completed = events[-1]
    assert (completed.size, completed.quality, completed.background) == (
        "1536x1024",
        "low",
        "opaque",
    )
    assert base64.b64decode(completed.b64_json).startswith(b"\x89PNG")
    assert completed.usage.input_tokens == 5
    assert completed.usage.output_tokens == 400
    assert fake_server.requests[-1].usage == completed.usage.model_dump()
    events = await api.stream(
        "images.edit", model="gpt-image-1", image=("in.png", PNG, "image/png"), prompt="Boat"
    )
    assert [event.type for event in events] == ["image_edit.completed"]
    assert events[0].usage.input_tokens_details.image_tokens == 85


async def test_image_edit_counts_each_uploaded_image(api: Api, fake_server: FakeOpenAI) -> None:
    result = await api.call(
        "images.edit",
        model="gpt-image-1",
        image=("in.png", PNG, "image/png"),
        prompt="Add a boat",  # 10 characters: 3 tokens
    )
    assert result.usage.input_tokens_details.text_tokens == 3
    assert result.usage.input_tokens_details.image_tokens == 85
    assert result.usage.input_tokens == 88
    assert result.usage.output_tokens == 4160
    two = await api.call(
        "images.edit",
        model="gpt-image-1",
        image=[("a.png", PNG, "image/png"), ("b.jpg", PNG, "image/jpeg")],
        mask=("mask.png", PNG, "image/png"),
        prompt="Add a boat",
        quality="low",
    )
    assert two.usage.input_tokens_details.image_tokens == 170
    assert two.usage.output_tokens == 272
    # An upload without a type is refused with the real wording.
    with pytest.raises(openai.BadRequestError) as info:
        await api.call("images.edit", model="gpt-image-1", image=PNG, prompt="x")
    assert "unsupported mimetype ('application/octet-stream')" in info.value.message
    # dall-e-2 edits answer like dall-e-2 generations.
    legacy = await api.call(
        "images.edit", model="dall-e-2", image=("in.png", PNG, "image/png"), prompt="x"
    )
    assert legacy.usage is None
    assert legacy.data[0].url
    first = fake_server.requests[0]
    assert first.body == {"model": "gpt-image-1", "prompt": "Add a boat"}
    assert first.usage == result.usage.model_dump(exclude_none=True)
    assert fake_server.requests[1].body == {
        "model": "gpt-image-1",
        "prompt": "Add a boat",
        "quality": "low",
    }
    assert "IHDR" not in repr(fake_server.requests)


async def test_gpt_4o_transcription_reports_audio_and_text_tokens(
    api: Api, fake_server: FakeOpenAI
) -> None:
    result = await api.call(
        "audio.transcriptions.create",
        model="gpt-4o-transcribe",
        file=ONE_SECOND_WAV,
        prompt="Names: Ada",  # 10 characters: 3 tokens
    )
    assert result.text == DEFAULT_REPLY
    usage = result.usage
    assert usage.type == "tokens"
    assert usage.input_token_details.audio_tokens == 10
    assert usage.input_token_details.text_tokens == 3
    assert usage.input_tokens == 13
    assert usage.output_tokens == REPLY_TOKENS
    assert usage.total_tokens == 13 + REPLY_TOKENS
    record = fake_server.requests[-1]
    assert record.body == {"model": "gpt-4o-transcribe", "prompt": "Names: Ada"}
    assert record.usage == usage.model_dump(exclude_none=True)
    assert record.headers["content-type"].startswith("multipart/form-data; boundary=")
    with_logprobs = await api.call(
        "audio.transcriptions.create",
        model="gpt-4o-mini-transcribe",
        file=ONE_SECOND_WAV,
        include=["logprobs"],
    )
    assert "".join(lp.token for lp in with_logprobs.logprobs) == DEFAULT_REPLY
    assert fake_server.requests[-1].body == {
        "model": "gpt-4o-mini-transcribe",
        "include": ["logprobs"],
    }


async def test_text_transcription_is_a_plain_string(api: Api, fake_server: FakeOpenAI) -> None:
    text = await api.call(
        "audio.transcriptions.create",
        model="gpt-4o-transcribe",
        file=ONE_SECOND_WAV,
        response_format="text",
    )
    assert isinstance(text, str)
    assert text == DEFAULT_REPLY + "\n"
    record = fake_server.requests[-1]
    assert (record.response_status, record.usage) == (200, None)


async def test_whisper_reports_seconds_and_verbose_json(api: Api) -> None:
    two_seconds = ("speech.mp3", b"\x00" * 64000)
    result = await api.call("audio.transcriptions.create", model="whisper-1", file=two_seconds)
    assert result.text == DEFAULT_REPLY
    assert (result.usage.type, result.usage.seconds) == ("duration", 2)
    verbose = await api.call(
        "audio.transcriptions.create",
        model="whisper-1",
        file=two_seconds,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="fr",
    )
    assert (verbose.language, verbose.duration, verbose.text) == ("french", 2.0, DEFAULT_REPLY)
    assert verbose.segments[0].end == 2.0
    assert verbose.words[0].word == "This"
    assert verbose.words[-1].end == 2.0
    assert verbose.usage.seconds == 2
    srt = await api.call(
        "audio.transcriptions.create", model="whisper-1", file=two_seconds, response_format="srt"
    )
    assert srt.startswith("1\n00:00:00,000 --> 00:00:02,000\n")


async def test_transcription_stream_sends_deltas_then_done_with_usage(
    api: Api, fake_server: FakeOpenAI
) -> None:
    events = await api.stream(
        "audio.transcriptions.create", model="gpt-4o-mini-transcribe", file=ONE_SECOND_WAV
    )
    deltas, done = events[:-1], events[-1]
    assert {event.type for event in deltas} == {"transcript.text.delta"}
    assert len(deltas) == REPLY_TOKENS
    assert "".join(event.delta for event in deltas) == DEFAULT_REPLY
    assert done.type == "transcript.text.done"
    assert done.text == DEFAULT_REPLY
    assert (done.usage.input_tokens, done.usage.output_tokens) == (10, REPLY_TOKENS)
    assert fake_server.requests[-1].usage == done.usage.model_dump(exclude_none=True)


async def test_transcription_rejects_what_the_real_api_rejects(api: Api) -> None:
    import io

    with pytest.raises(openai.BadRequestError) as info:
        # A nameless buffer is uploaded as "upload", which has no audio extension.
        await api.call(
            "audio.transcriptions.create", model="whisper-1", file=io.BytesIO(b"\x00" * 100)
        )
    assert "Invalid file format. Supported formats: ['flac'" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        await api.call(
            "audio.transcriptions.create",
            model="gpt-4o-transcribe",
            file=ONE_SECOND_WAV,
            response_format="verbose_json",
        )
    assert info.value.param == "response_format"
    with pytest.raises(openai.NotFoundError):
        await api.call("audio.transcriptions.create", model="whisper-9", file=ONE_SECOND_WAV)


def test_media_endpoints_need_their_body_kind(fake_server: FakeOpenAI) -> None:
    import http.client

    port = int(fake_server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port)
    try:
        connection.request(
            "POST",
            "/v1/audio/transcriptions",
            body='{"model": "whisper-1"}',
            headers={"content-type": "application/json"},
        )
        as_json = connection.getresponse()
        json_body = json.loads(as_json.read())
        connection.request(
            "POST",
            "/v1/images/edits",
            body=b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nx',
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        truncated = connection.getresponse()
        truncated.read()
    finally:
        connection.close()
    assert as_json.status == 400
    assert json_body["error"]["message"].startswith(
        "Invalid Content-Type header (application/json), expected multipart/form-data."
    )
    assert truncated.status == 400
    assert fake_server.requests[-1].body is None


# -- errors, retries, latency ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
        (409, "ConflictError"),
        (422, "UnprocessableEntityError"),
        (429, "RateLimitError"),
        (500, "InternalServerError"),
        (502, "InternalServerError"),
        (503, "InternalServerError"),
    ],
)
async def test_scripted_status_raises_the_sdk_exception(
    api: Api, fake_server: FakeOpenAI, status: int, exception: str
) -> None:
    fake_server.fail_next(status)
    with pytest.raises(getattr(openai, exception)) as info:
        await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    error = info.value
    assert error.status_code == status
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.response.headers.get("retry-after") == ("0" if status in (429, 503) else None)
    reply = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert reply.choices


async def test_scripted_error_overrides(api: Api, fake_server: FakeOpenAI) -> None:
    fake_server.fail_next(429, code="insufficient_quota")
    with pytest.raises(openai.RateLimitError) as info:
        await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert info.value.type == "insufficient_quota"
    fake_server.fail_next(400, message="nope", code="custom", param="messages")
    with pytest.raises(openai.BadRequestError) as info:
        await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert info.value.body == {
        "message": "nope",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "custom",
    }


async def test_sdk_retries_succeed_after_scripted_failures(fake_server: FakeOpenAI) -> None:
    fake_server.fail_next(500, times=2, retry_after=0.001)
    async with openai.AsyncOpenAI(
        base_url=fake_server.base_url, api_key="sk-test", max_retries=2
    ) as client:
        reply = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert reply.choices[0].message.content == DEFAULT_REPLY
    log = fake_server.requests
    assert [r.response_status for r in log] == [500, 500, 200]
    assert [r.headers.get("x-stainless-retry-count") for r in log] == ["0", "1", "2"]


def test_wrong_api_key_gets_the_real_401(fake_server: FakeOpenAI) -> None:
    fake_server.api_key = "sk-right-key-123456"
    with (
        openai.OpenAI(base_url=fake_server.base_url, api_key="sk-wrong-key-999999") as client,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong-key-999999" not in info.value.message
    assert re.search(r"Incorrect API key provided: sk-\*+9999\.", info.value.message)


async def test_first_chunk_latency_delays_the_stream(api: Api, fake_server: FakeOpenAI) -> None:
    fake_server.set_latency(first_chunk=0.3)
    started = time.monotonic()
    stream = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO, stream=True)
    first = await anext(aiter(stream)) if api.is_async else next(iter(stream))
    assert time.monotonic() - started >= 0.3
    assert first.choices[0].delta.role == "assistant"
    await stream.close() if api.is_async else stream.close()


def test_response_and_per_chunk_latency(client: Any, fake_server: FakeOpenAI) -> None:
    fake_server.set_latency(response=0.2, per_chunk=0.01)
    started = time.monotonic()
    client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    # 1 role chunk + 22 content chunks + finish chunk + [DONE], all but the first delayed
    assert time.monotonic() - started >= 0.01 * (REPLY_TOKENS + 2)


def test_negative_latency_is_rejected(fake_server: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="per_chunk"):
        fake_server.set_latency(per_chunk=-1)


async def test_reject_stream_options_names_the_parameter(api: Api, fake_server: FakeOpenAI) -> None:
    fake_server.reject_stream_options = True
    with pytest.raises(openai.BadRequestError) as info:
        await api.stream(
            "chat.completions.create",
            model="gpt-4o",
            messages=HELLO,
            stream_options={"include_usage": True},
        )
    assert info.value.param == "stream_options"
    assert "stream_options" in info.value.message
    chunks = await api.stream("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert chunks


async def test_stream_options_without_stream_is_rejected(api: Api) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await api.call(
            "chat.completions.create",
            model="gpt-4o",
            messages=HELLO,
            stream_options={"include_usage": True},
        )
    assert info.value.param == "stream_options"


async def test_broken_stream_raises_while_iterating(api: Api, fake_server: FakeOpenAI) -> None:
    fake_server.break_stream_after(3)
    stream = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO, stream=True)
    received: list[Any] = []

    async def drain() -> None:
        if api.is_async:
            async for chunk in stream:
                received.append(chunk)
        else:
            received.extend(chunk for chunk in stream)

    # openai 3.x raises APIConnectionError; 1.x/2.x let the transport's error through.
    with pytest.raises(Exception) as info:  # noqa: PT011
        await drain()
    assert type(info.value).__name__ in {"APIConnectionError", "RemoteProtocolError"}
    assert len(received) == 3
    assert await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)


# -- model-scoped scripts ---------------------------------------------------------------------

CHEAP = "gpt-4o-mini"


async def test_model_scoped_failure_hits_only_that_model(api: Api, fake_server: FakeOpenAI) -> None:
    fake_server.fail_next(503, model=CHEAP)
    other = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    again = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert other.choices[0].message.content == again.choices[0].message.content == DEFAULT_REPLY
    with pytest.raises(openai.InternalServerError) as info:
        await api.call("chat.completions.create", model=CHEAP, messages=HELLO)
    assert info.value.status_code == 503
    # The routing story: the cheap model failed, the original model answers the retry.
    retried = await api.call("chat.completions.create", model="gpt-4o", messages=HELLO)
    cheap = await api.call("chat.completions.create", model=CHEAP, messages=HELLO)
    assert (retried.model, cheap.model) == ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18")
    log = [(r.body["model"], r.response_status) for r in fake_server.requests if r.body]
    assert log == [
        ("gpt-4o", 200),
        ("gpt-4o", 200),
        (CHEAP, 503),
        ("gpt-4o", 200),
        (CHEAP, 200),
    ]


def test_requests_take_the_oldest_failure_that_applies(
    client: Any, fake_server: FakeOpenAI
) -> None:
    fake_server.fail_next(429, times=2, model=CHEAP)
    fake_server.fail_next(500)
    fake_server.fail_next(400, model=CHEAP)

    def status(model: str) -> int:
        try:
            client.chat.completions.create(model=model, messages=HELLO)
        except openai.APIStatusError as error:
            return int(error.status_code)
        return 200

    # gpt-4o skips the two scoped 429s and takes the unscoped 500; CHEAP takes its own
    # failures in the order they were queued.
    assert [status(m) for m in ("gpt-4o", "gpt-4o", CHEAP, CHEAP, CHEAP, CHEAP)] == [
        500,
        200,
        429,
        429,
        400,
        200,
    ]
    fake_server.fail_next(500)
    fake_server.fail_next(429, model=CHEAP)
    assert [status(CHEAP), status(CHEAP), status(CHEAP)] == [500, 429, 200]


def test_model_scoped_failure_matches_the_azure_deployment(fake_server: FakeOpenAI) -> None:
    import http.client

    fake_server.fail_next(429, model="cheap-deployment", times=2)
    with openai.AzureOpenAI(
        azure_endpoint=fake_server.url, api_key="k", api_version="2024-10-21", max_retries=0
    ) as azure:
        assert azure.chat.completions.create(model="gpt-4o", messages=HELLO).choices
        with pytest.raises(openai.RateLimitError):
            azure.chat.completions.create(model="cheap-deployment", messages=HELLO)
    # Without a body model, the deployment in the URL is the requested model.
    port = int(fake_server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port)
    try:
        connection.request(
            "POST",
            "/openai/deployments/cheap-deployment/chat/completions?api-version=2024-10-21",
            body=json.dumps({"messages": HELLO}),
            headers={"content-type": "application/json", "api-key": "k"},
        )
        answer = connection.getresponse()
        answer.read()
    finally:
        connection.close()
    assert answer.status == 429
    assert [r.response_status for r in fake_server.requests] == [200, 429, 429]


async def test_model_scoped_stream_break_cuts_only_that_model(
    api: Api, fake_server: FakeOpenAI
) -> None:
    fake_server.break_stream_after(2, model=CHEAP)
    whole = await api.stream("chat.completions.create", model="gpt-4o", messages=HELLO)
    assert whole[-1].choices[0].finish_reason == "stop"
    with pytest.raises(Exception) as info:  # noqa: PT011
        await api.stream("chat.completions.create", model=CHEAP, messages=HELLO)
    assert type(info.value).__name__ in {"APIConnectionError", "RemoteProtocolError"}
    cheap = await api.stream("chat.completions.create", model=CHEAP, messages=HELLO)
    assert cheap[-1].choices[0].finish_reason == "stop"


def test_model_scoped_latency_times_out_only_that_model(fake_server: FakeOpenAI) -> None:
    """CHEAP answers after an hour: a short timeout trips on it, while the other model answers
    on the same client within a timeout that no loaded machine reaches and CHEAP would."""
    fake_server.set_latency(response=3600.0, model=CHEAP)
    with openai.OpenAI(
        base_url=fake_server.base_url, api_key="sk-test", max_retries=0, timeout=LOAD_TIMEOUT
    ) as client:
        reply = client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert reply.choices[0].message.content == DEFAULT_REPLY
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.with_options(timeout=0.5).chat.completions.create(model=CHEAP, messages=HELLO)
        assert time.monotonic() - started >= 0.5
        assert client.chat.completions.create(model="gpt-4o", messages=HELLO).choices


async def test_model_scoped_latency_overrides_the_global_one(
    api: Api, fake_server: FakeOpenAI
) -> None:
    """The global first chunk comes after an hour: a model with delays of its own, and every
    model after reset(), stream within a timeout no loaded machine reaches; the others time
    out."""
    fake_server.set_latency(first_chunk=3600.0)
    fake_server.set_latency(per_chunk=0.0, model=CHEAP)  # CHEAP: no delay at all
    patient = {"messages": HELLO, "timeout": LOAD_TIMEOUT}
    await api.stream("chat.completions.create", model=CHEAP, **patient)
    with pytest.raises(Exception) as info:  # noqa: PT011
        await api.stream("chat.completions.create", model="gpt-4o", messages=HELLO, timeout=0.5)
    # openai 3.x raises APITimeoutError; 1.x and 2.x let the transport's ReadTimeout through.
    assert "Timeout" in type(info.value).__name__
    fake_server.reset()
    await api.stream("chat.completions.create", model="gpt-4o", **patient)


def test_scripts_reject_an_empty_model_name(fake_server: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="model must be a non-empty model name"):
        fake_server.fail_next(500, model="")
    with pytest.raises(ValueError, match="model must be a non-empty model name"):
        fake_server.break_stream_after(1, model="")
    with pytest.raises(ValueError, match="model must be a non-empty model name"):
        fake_server.set_latency(response=1, model="")
    with pytest.raises(ValueError, match="response must be >= 0"):
        fake_server.set_latency(response=-1, model=CHEAP)


# -- azure ------------------------------------------------------------------------------------


def test_azure_client_uses_deployment_paths(fake_server: FakeOpenAI) -> None:
    fake_server.add_deployment("prod-chat", "gpt-4.1-mini")
    with openai.AzureOpenAI(
        azure_endpoint=fake_server.url, api_key="azure-key", api_version="2024-10-21"
    ) as azure:
        chat = azure.chat.completions.create(model="prod-chat", messages=HELLO)
        embedded = azure.embeddings.create(model="text-embedding-3-large", input="Hi")
        legacy = azure.completions.create(model="gpt-35-turbo-instruct", prompt="Hi")
        response = azure.responses.create(model="gpt-4o", input="Hi")
    assert chat.model == "gpt-4.1-mini-2025-04-14"
    assert chat.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert len(embedded.data[0].embedding) == 3072
    assert legacy.choices[0].text
    assert response.output_text == DEFAULT_REPLY
    paths = [(r.path, r.query) for r in fake_server.requests]
    assert paths == [
        ("/openai/deployments/prod-chat/chat/completions", "api-version=2024-10-21"),
        ("/openai/deployments/text-embedding-3-large/embeddings", "api-version=2024-10-21"),
        ("/openai/deployments/gpt-35-turbo-instruct/completions", "api-version=2024-10-21"),
        ("/openai/responses", "api-version=2024-10-21"),
    ]


def test_azure_deployments_serve_images_and_transcriptions(fake_server: FakeOpenAI) -> None:
    fake_server.add_deployment("painter", "dall-e-3")
    with openai.AzureOpenAI(
        azure_endpoint=fake_server.url, api_key="azure-key", api_version="2025-04-01-preview"
    ) as azure:
        painted = azure.images.generate(model="painter", prompt=LIGHTHOUSE)
        drawn = azure.images.generate(model="gpt-image-1", prompt=LIGHTHOUSE, quality="low")
        heard = azure.audio.transcriptions.create(model="gpt-4o-transcribe", file=ONE_SECOND_WAV)
        # A deployment name that is no model serves gpt-image-1 / whisper-1.
        unnamed = azure.images.generate(model="my-images", prompt=LIGHTHOUSE)
        listened = azure.audio.transcriptions.create(model="my-stt", file=ONE_SECOND_WAV)
    assert (painted.usage, painted.data[0].revised_prompt) == (None, LIGHTHOUSE)
    assert drawn.usage.output_tokens == 272
    assert heard.usage.input_token_details.audio_tokens == 10
    assert unnamed.usage.output_tokens == 4160
    assert listened.usage.type == "duration"
    assert [r.path for r in fake_server.requests] == [
        "/openai/deployments/painter/images/generations",
        "/openai/deployments/gpt-image-1/images/generations",
        "/openai/deployments/gpt-4o-transcribe/audio/transcriptions",
        "/openai/deployments/my-images/images/generations",
        "/openai/deployments/my-stt/audio/transcriptions",
    ]


def test_azure_stream_starts_with_prompt_filter_chunk(fake_server: FakeOpenAI) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=fake_server.url,
        api_key="azure-key",
        api_version="2024-10-21",
        azure_deployment="any-name",
    ) as azure:
        chunks = list(azure.chat.completions.create(model="x", messages=HELLO, stream=True))
    assert chunks[0].choices == []
    assert chunks[1].model == "gpt-4o-2024-08-06"


def test_azure_v1_base_path_serves_responses(fake_server: FakeOpenAI) -> None:
    with openai.OpenAI(base_url=f"{fake_server.url}/openai/v1", api_key="azure-key") as c:
        response = c.responses.create(model="gpt-5.5", input="Hi")
    assert response.status == "completed"
    assert fake_server.requests[-1].path == "/openai/v1/responses"


def test_azure_errors_have_azure_bodies(fake_server: FakeOpenAI) -> None:
    fake_server.api_key = "right"
    with (
        openai.AzureOpenAI(
            azure_endpoint=fake_server.url, api_key="wrong", api_version="2024-10-21"
        ) as azure,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        azure.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert info.value.code == "401"
    fake_server.api_key = None
    fake_server.fail_next(404)
    with (
        openai.AzureOpenAI(
            azure_endpoint=fake_server.url, api_key="k", api_version="2024-10-21"
        ) as azure,
        pytest.raises(openai.NotFoundError) as not_found,
    ):
        azure.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert not_found.value.code == "DeploymentNotFound"


# -- request log ------------------------------------------------------------------------------


def test_request_log_redacts_credentials(fake_server: FakeOpenAI) -> None:
    secret = "sk-proj-secret-value-0123456789"
    with openai.OpenAI(base_url=fake_server.base_url, api_key=secret) as client:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    with openai.AzureOpenAI(
        azure_endpoint=fake_server.url, api_key=secret, api_version="2024-10-21"
    ) as azure:
        azure.chat.completions.create(model="gpt-4o", messages=HELLO)
    openai_call, azure_call = fake_server.requests
    assert openai_call.headers["authorization"] == "REDACTED"
    assert azure_call.headers["api-key"] == "REDACTED"
    assert secret not in repr(fake_server.requests)


def test_request_log_records_body_status_and_usage(client: Any, fake_server: FakeOpenAI) -> None:
    client.chat.completions.create(model="gpt-4o", messages=HELLO, temperature=0.5)
    list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO)
    plain, streamed, failed = fake_server.requests
    assert isinstance(plain, RecordedRequest)
    assert (plain.method, plain.path, plain.query) == ("POST", "/v1/chat/completions", "")
    assert plain.body == {"model": "gpt-4o", "messages": HELLO, "temperature": 0.5}
    assert plain.response_status == 200
    assert plain.usage is not None
    assert plain.usage["prompt_tokens"] == HELLO_TOKENS
    assert streamed.usage is None
    assert (failed.response_status, failed.usage) == (404, None)


def test_reset_forgets_log_scripts_and_additions(client: Any, fake_server: FakeOpenAI) -> None:
    fake_server.add_model("extra")
    fake_server.fail_next(500, times=3)
    fake_server.fail_next(500, model="gpt-4o")
    fake_server.break_stream_after(0, model="gpt-4o")
    fake_server.set_latency(response=5)
    fake_server.set_latency(first_chunk=5, model="gpt-4o")
    fake_server.reject_stream_options = True
    fake_server.reply = "changed"
    fake_server.reset()
    assert fake_server.requests == []
    reply = client.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    assert "".join(c.choices[0].delta.content or "" for c in reply if c.choices) == DEFAULT_REPLY
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="extra", messages=HELLO)


def test_reply_text_is_configurable(client: Any, fake_server: FakeOpenAI) -> None:
    fake_server.reply = "Short answer."
    reply = client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert reply.choices[0].message.content == "Short answer."
    assert reply.usage.completion_tokens == 3


def test_invalid_json_and_unknown_routes_get_openai_errors(fake_server: FakeOpenAI) -> None:
    import http.client

    port = int(fake_server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port)
    try:
        connection.request("POST", "/v1/chat/completions", body="{not json")
        bad = connection.getresponse()
        bad_body = json.loads(bad.read())
        connection.request("POST", "/v1/nope", body="{}")
        missing = connection.getresponse()
        missing_body = json.loads(missing.read())
    finally:
        connection.close()
    assert bad.status == 400
    assert bad_body["error"]["message"].startswith("We could not parse the JSON body")
    assert missing.status == 404
    assert missing_body["error"]["message"] == "Invalid URL (POST /v1/nope)"


# -- lifecycle and load -----------------------------------------------------------------------


def test_start_twice_fails_and_stop_is_idempotent() -> None:
    server = FakeOpenAI().start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
    finally:
        server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_stop_closes_idle_and_busy_connections_promptly() -> None:
    """A stream whose chunks come an hour apart: stop() returns (within a bound no loaded
    machine reaches) because it closes the busy connection instead of waiting for it."""
    server = FakeOpenAI().start()
    server.set_latency(per_chunk=3600.0)
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=HELLO)  # leaves a keep-alive
    stream = client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    next(iter(stream))
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            list(stream)
        except Exception as error:  # the server went away mid-stream
            errors.append(error)

    reader = threading.Thread(target=drain)
    reader.start()
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(timeout=LOAD_TIMEOUT)
    assert not stopper.is_alive()
    reader.join(timeout=LOAD_TIMEOUT)
    stream.close()
    client.close()
    assert not reader.is_alive()


@pytest.mark.alone  # 500 concurrent calls load the machine (tests/conftest.py)
async def test_serves_500_concurrent_requests(fake_server: FakeOpenAI) -> None:
    fake_server.set_latency(response=0.2)
    async with openai.AsyncOpenAI(
        base_url=fake_server.base_url, api_key="k", max_retries=0, timeout=LOAD_TIMEOUT
    ) as client:
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
                for _ in range(500)
            )
        )
    assert len(replies) == 500
    assert {reply.choices[0].message.content for reply in replies} == {DEFAULT_REPLY}
    assert len(fake_server.requests) == 500


# -- docs -----------------------------------------------------------------------------------


DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def test_docstring_example_runs() -> None:
    import doctest

    import llmmeter.testing._server

    result = doctest.testmod(llmmeter.testing._server)
    assert (result.attempted, result.failed) == (5, 0)  # FakeOpenAI, client_as


def test_docs_examples_run() -> None:
    """Every ```python block in docs/testing.md runs as written."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOCS), "exec"), {"__name__": "docs_example"})
