"""The per-chunk path (issue 9): cheap, allocation-free, and reporting what it always did."""

from __future__ import annotations

import gc
import tracemalloc
from types import SimpleNamespace
from typing import Any

import pytest

from llmmeter._usage import CHAT, RESPONSES, Outcome, read_chunk, read_response, read_usage
from tests.conftest import Telemetry

CHAT_KWARGS = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a story"}]}


def _chunk(
    content: str | None = "hi",
    *,
    id: str = "chatcmpl-1",
    model: str = "gpt-4o-2024-08-06",
    finish: str | None = None,
    fingerprint: str | None = "fp_1",
    tier: str | None = "default",
    usage: dict[str, Any] | None = None,
    choices: bool = True,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1764064800,
        "model": model,
        "service_tier": tier,
        "system_fingerprint": fingerprint,
        "choices": (
            [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
            if choices
            else []
        ),
        "usage": usage,
    }


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}

# Azure opens with its prompt filter results: empty id and model, no choices. The closing
# chunk carries a fingerprint the others did not: the closing chunks are read again.
STREAM = [
    _chunk(id="", model="", fingerprint=None, tier=None, choices=False),
    _chunk(""),
    *(_chunk(word) for word in ("Once", " upon", " a", " time")),
    _chunk(None, finish="stop", fingerprint="fp_2"),
    _chunk(None, choices=False, fingerprint="fp_2", usage=USAGE),
]


def _sdk_chunks(openai_module: Any) -> list[Any]:
    from openai.types.chat import ChatCompletionChunk

    return [ChatCompletionChunk.model_validate(data) for data in STREAM]


def _namespaces(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _namespaces(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_namespaces(item) for item in value]
    return value


def _read_all(chunks: list[Any]) -> tuple[Outcome, list[bool]]:
    outcome = Outcome()
    shown = [read_chunk(CHAT, chunk, outcome, capture=False) for chunk in chunks]
    return outcome, shown


def test_stream_identity_comes_from_the_first_identified_chunk_and_the_closing_ones(
    openai_module: Any,
) -> None:
    for chunks in (STREAM, _namespaces(STREAM), _sdk_chunks(openai_module)):
        outcome, output = _read_all(chunks)
        assert output == [False, True, True, True, True, True, True, False]
        assert outcome.response_id == "chatcmpl-1"
        assert outcome.response_model == "gpt-4o-2024-08-06"
        assert outcome.service_tier == "default"
        assert outcome.system_fingerprint == "fp_2"
        assert outcome.finish_reasons == {0: "stop"}
        assert outcome.chunks == len(STREAM)
        assert outcome.usage is not None
        assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (12, 5)
        assert (outcome.usage.cache_read_tokens, outcome.usage.reasoning_tokens) == (4, 2)


def test_several_choices_record_each_finish_reason_by_index() -> None:
    outcome = Outcome()
    chunk = _chunk()
    chunk["choices"] = [
        {"index": 1, "delta": {"content": "b"}, "finish_reason": "length"},
        {"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"},
    ]
    assert read_chunk(CHAT, chunk, outcome, capture=False)
    assert outcome.finish_reasons == {0: "stop", 1: "length"}


def _peak_while(read: Any, chunks: list[Any]) -> int:
    """Bytes allocated at the peak of the reads, temporaries included (tracemalloc sees every
    allocation; the measurement's own objects are made before it starts)."""
    for chunk in chunks:  # warm up: caches, the first output's clock reading
        read(chunk)
    each = iter(chunks)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.get_traced_memory()  # the next result reuses this one's freed tuple
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for chunk in each:
            read(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - before


def _allocated_while(read: Any, chunks: list[Any]) -> int:
    """What the reads allocate beyond an empty loop's measurement (not zero on its own)."""
    return _peak_while(read, chunks) - _peak_while(lambda chunk: None, chunks)


def _content_chunks(openai_module: Any) -> list[Any]:
    # 40 chunks, twice (warm-up, then measured): Outcome.chunks stays a cached small int.
    return _sdk_chunks(openai_module)[2:6] * 10


def test_reading_a_content_chunk_allocates_nothing(openai_module: Any) -> None:
    outcome = Outcome()
    for chunk in _sdk_chunks(openai_module)[:2]:
        read_chunk(CHAT, chunk, outcome, capture=False)

    def read(chunk: Any) -> None:
        read_chunk(CHAT, chunk, outcome, capture=False)

    assert _allocated_while(read, _content_chunks(openai_module)) == 0


def test_a_call_takes_a_content_chunk_without_allocating(
    telemetry: Telemetry, client: Any, openai_module: Any
) -> None:
    stream = client.chat.completions.create(**CHAT_KWARGS, stream=True)
    next(stream)
    assert _allocated_while(stream._self_call.on_chunk, _content_chunks(openai_module)) == 0
    stream.close()


def test_the_proxy_adds_no_allocation_per_chunk(
    telemetry: Telemetry, client: Any, openai_module: Any
) -> None:
    """``for`` over the proxy, fed ready chunks: what it costs beyond the SDK's own work."""
    stream = client.chat.completions.create(**CHAT_KWARGS, stream=True)
    next(stream)
    content = _content_chunks(openai_module)
    real = stream.__wrapped__
    stream.__wrapped__ = iter(content * 2)
    step = iter(stream).__next__
    try:
        assert _allocated_while(lambda _: step(), content) == 0
    finally:
        stream.__wrapped__ = real
        stream.close()
    assert telemetry.span().attributes["llmmeter.stream.end"] == "closed"


def test_hidden_usage_chunk_stays_hidden_and_counted(telemetry: Telemetry, client: Any) -> None:
    chunks = list(client.chat.completions.create(**CHAT_KWARGS, stream=True))
    assert chunks and all(chunk.choices for chunk in chunks)
    attrs = telemetry.span().attributes or {}
    assert attrs["llmmeter.stream.usage_injected"] is True
    assert attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0


def test_loop_left_early_ends_the_span_as_abandoned_once_dropped(
    telemetry: Telemetry, client: Any
) -> None:
    for _ in client.chat.completions.create(**CHAT_KWARGS, stream=True):
        break
    gc.collect()
    assert telemetry.span().attributes["llmmeter.stream.end"] == "abandoned"


def test_next_and_for_read_one_stream(telemetry: Telemetry, client: Any) -> None:
    """``iter()`` gives a generator, as the SDK's does; ``next()`` and loops share the stream."""
    whole = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(**CHAT_KWARGS, stream=True)
    ]
    stream = client.chat.completions.create(**CHAT_KWARGS, stream=True)
    first = next(stream)
    rest = []
    for chunk in stream:
        rest.append(chunk)
        if len(rest) == 2:
            break
    rest.extend(stream)
    assert [c.choices[0].delta.content for c in [first, *rest]] == whole
    assert [s.attributes["llmmeter.stream.end"] for s in telemetry.spans()] == [
        "exhausted",
        "exhausted",
    ]


def test_reading_sdk_responses_never_asks_pydantic_for_a_missing_field(
    openai_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name a model lacks (Chat usage has no ``input_tokens``, embeddings no ``id``) is
    answered from the model's own dicts, never by pydantic's ``__getattr__`` (microseconds)."""
    import pydantic
    from openai.types import CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    asked: list[str] = []
    real = pydantic.BaseModel.__getattr__

    def spy(self: Any, name: str) -> Any:
        asked.append(name)
        return real(self, name)

    chat = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hi"},
                }
            ],
            "usage": USAGE,
        }
    )
    embeddings = CreateEmbeddingResponse.model_validate(
        {
            "object": "list",
            "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
    )
    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": "gpt-4o-2024-08-06",
            "status": "completed",
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 10,
                "output_tokens": 3,
                "total_tokens": 13,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )
    monkeypatch.setattr(pydantic.BaseModel, "__getattr__", spy)
    outcomes = {}
    for endpoint, obj in (("chat", chat), ("embeddings", embeddings), (RESPONSES, response)):
        outcome = Outcome()
        read_response(endpoint, obj, outcome, capture=False)
        outcomes[endpoint] = outcome
    assert asked == []
    usages = {
        k: (o.usage.input_tokens, o.usage.output_tokens) for k, o in outcomes.items() if o.usage
    }
    assert usages == {"chat": (12, 5), "embeddings": (3, None), RESPONSES: (10, 3)}
    assert outcomes["chat"].finish_reasons == {0: "stop"}
    assert outcomes[RESPONSES].finish_reasons == {0: "stop"}
    assert outcomes["embeddings"].response_model == "text-embedding-3-small"


def test_fields_the_sdk_does_not_declare_are_still_read(openai_module: Any) -> None:
    """A newer server's field lands in the model's extras (``__pydantic_extra__``)."""
    from openai.types import CompletionUsage

    usage = CompletionUsage.model_validate(
        {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 4, "image_tokens": 7},
            "completion_tokens_details": {"reasoning_tokens": 2, "image_tokens": 1},
        }
    )
    read = read_usage(usage)
    assert read is not None
    assert (read.input_image_tokens, read.output_image_tokens) == (7, 1)
    assert read_usage(_namespaces(usage.model_dump())) == read
