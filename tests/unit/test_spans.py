"""Every endpoint, sync and async, plain and streamed: one span with the right attributes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

import llmmeter
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry
from tests.scenarios import ENDPOINTS, run

MODES = ["sync", "async"]
MATRIX = [
    (endpoint, mode, stream)
    for endpoint in ENDPOINTS
    for mode in MODES
    for stream in (False, True)
    if not (endpoint == "embeddings" and stream)
]

OPERATION = {
    "chat": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
API_TYPE = {"chat": "chat_completions", "responses": "responses"}


def _usage_attrs(usage: dict[str, Any]) -> dict[str, Any]:
    """The span's usage attributes for an API usage object, as the conventions define them."""
    if "input_tokens" in usage:
        details_in = usage.get("input_tokens_details") or {}
        details_out = usage.get("output_tokens_details") or {}
        pairs = {
            "gen_ai.usage.input_tokens": usage.get("input_tokens"),
            "gen_ai.usage.output_tokens": usage.get("output_tokens"),
        }
    else:
        details_in = usage.get("prompt_tokens_details") or {}
        details_out = usage.get("completion_tokens_details") or {}
        pairs = {
            "gen_ai.usage.input_tokens": usage.get("prompt_tokens"),
            "gen_ai.usage.output_tokens": usage.get("completion_tokens"),
        }
    pairs["gen_ai.usage.cache_read.input_tokens"] = details_in.get("cached_tokens")
    pairs["gen_ai.usage.cache_creation.input_tokens"] = details_in.get("cache_write_tokens")
    pairs["gen_ai.usage.reasoning.output_tokens"] = details_out.get("reasoning_tokens")
    return {k: v for k, v in pairs.items() if v is not None}


@pytest.mark.parametrize(("endpoint", "mode", "stream"), MATRIX)
def test_call_makes_one_span_with_request_response_and_usage_attributes(
    telemetry: Telemetry,
    server: FakeOpenAI,
    openai_module: Any,
    endpoint: str,
    mode: str,
    stream: bool,
) -> None:
    method, kwargs = ENDPOINTS[endpoint]
    kwargs = {**kwargs, "temperature": 0.5} if endpoint != "embeddings" else dict(kwargs)
    if stream:
        kwargs["stream"] = True
    result = run(openai_module, server.base_url, mode, method, kwargs)

    span = telemetry.span()
    logged = server.requests[-1]
    assert logged.usage is not None
    attrs = dict(span.attributes or {})
    ttfc = attrs.pop("gen_ai.response.time_to_first_chunk", None)
    response_id = attrs.pop("gen_ai.response.id", None)
    response_model = attrs.pop("gen_ai.response.model")
    reasons = attrs.pop("gen_ai.response.finish_reasons", None)
    attrs.pop("openai.response.system_fingerprint", None)

    expected: dict[str, Any] = {
        "gen_ai.operation.name": OPERATION[endpoint],
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": kwargs["model"],
        "server.address": "127.0.0.1",
        "llmmeter.server.local": True,  # the fake server is on loopback
        "server.port": urlsplit(server.base_url).port,
        **_usage_attrs(logged.usage),
    }
    if endpoint in API_TYPE:
        expected["openai.api.type"] = API_TYPE[endpoint]
    if endpoint != "embeddings":
        expected["gen_ai.request.temperature"] = 0.5
    if stream:
        expected["gen_ai.request.stream"] = True
        expected["llmmeter.stream.end"] = "exhausted"
        if endpoint != "responses":
            expected["llmmeter.stream.usage_injected"] = True
    tier = _service_tier_seen_by_user(endpoint, result)
    if tier is not None:
        expected["openai.response.service_tier"] = tier
    cost = llmmeter.price(response_model, logged.usage, service_tier=tier)
    assert cost is not None, f"the fake server's {response_model} has a price"
    expected |= {
        "gen_ai.usage.cost.amount": pytest.approx(cost.total),
        "gen_ai.usage.cost.currency": "USD",
        "gen_ai.usage.cost.source": "local",
        "llmmeter.cost.input": pytest.approx(cost.input),
        "llmmeter.cost.output": pytest.approx(cost.output),
        "llmmeter.price.ref": cost.ref,
    }
    assert attrs == expected
    assert span.name == f"{OPERATION[endpoint]} {kwargs['model']}"
    assert span.kind.name == "CLIENT"
    assert span.status.status_code.name == "UNSET"

    if stream:
        assert isinstance(ttfc, float)
        assert ttfc > 0
        assert result.chunks
    else:
        assert ttfc is None
        assert response_id == getattr(result.value, "id", None)
        assert response_model == result.value.model
    assert reasons == _finish_reasons_seen_by_user(endpoint, result)


def _service_tier_seen_by_user(endpoint: str, result: Any) -> str | None:
    if not result.chunks:
        return getattr(result.value, "service_tier", None)
    if endpoint == "responses":
        return getattr(result.chunks[-1].response, "service_tier", None)
    tiers = [getattr(chunk, "service_tier", None) for chunk in result.chunks]
    return next((t for t in reversed(tiers) if t is not None), None)


def _finish_reasons_seen_by_user(endpoint: str, result: Any) -> tuple[str, ...] | None:
    """What the user could read off the response or chunks, as the span should report it."""
    if endpoint == "embeddings":
        return None
    if endpoint == "responses":
        final = result.chunks[-1].response if result.chunks else result.value
        return ("length",) if final.status == "incomplete" else ("stop",)
    choices = (
        [c for chunk in result.chunks for c in chunk.choices]
        if result.chunks
        else result.value.choices
    )
    by_index = {c.index: c.finish_reason for c in choices if c.finish_reason}
    return tuple(by_index[i] for i in sorted(by_index))


@pytest.mark.parametrize(("endpoint", "mode", "stream"), MATRIX)
def test_call_records_duration_and_token_metrics(
    telemetry: Telemetry,
    server: FakeOpenAI,
    openai_module: Any,
    endpoint: str,
    mode: str,
    stream: bool,
) -> None:
    method, kwargs = ENDPOINTS[endpoint]
    kwargs = {**kwargs, "stream": True} if stream else kwargs
    run(openai_module, server.base_url, mode, method, kwargs)
    span = telemetry.span()
    attrs = span.attributes or {}

    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": OPERATION[endpoint],
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": kwargs["model"],
        "gen_ai.response.model": attrs["gen_ai.response.model"],
        "server.address": "127.0.0.1",
        "server.port": urlsplit(server.base_url).port,
    }
    assert telemetry.metric("gen_ai.client.operation.duration").unit == "s"
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert tokens["input"].sum == attrs["gen_ai.usage.input_tokens"]
    if endpoint == "embeddings":
        assert set(tokens) == {"input"}
    else:
        assert tokens["output"].sum == attrs["gen_ai.usage.output_tokens"]
    assert list(tokens["input"].explicit_bounds) == [float(4**i) for i in range(14)]
    assert list(duration.explicit_bounds) == pytest.approx([0.01 * 2**i for i in range(14)])
    ttfc = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert len(ttfc) == (1 if stream else 0)


def test_streamed_chunks_are_exactly_what_the_bare_sdk_yields(
    server: FakeOpenAI, openai_module: Any
) -> None:
    """The usage chunk llmmeter asks for never reaches the user."""
    method, kwargs = ENDPOINTS["chat"]
    kwargs = {**kwargs, "stream": True}
    bare = run(openai_module, server.base_url, "sync", method, kwargs)
    import llmmeter
    from tests.conftest import make_telemetry

    tel = make_telemetry()
    tel.instrument()
    try:
        seen = run(openai_module, server.base_url, "sync", method, kwargs)
    finally:
        llmmeter.uninstrument()
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}
    assert "stream_options" not in server.requests[-2].body

    def shape(chunks: list[Any]) -> list[Any]:
        return [(len(c.choices), c.usage, [ch.delta.content for ch in c.choices]) for c in chunks]

    assert shape(seen.chunks or []) == shape(bare.chunks or [])
    assert tel.span().attributes["gen_ai.usage.output_tokens"] > 0


@pytest.mark.parametrize("mode", MODES)
def test_user_who_asked_for_stream_usage_sees_the_usage_chunk(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any, mode: str
) -> None:
    method, kwargs = ENDPOINTS["chat"]
    kwargs = {**kwargs, "stream": True, "stream_options": {"include_usage": True}}
    result = run(openai_module, server.base_url, mode, method, kwargs)
    assert result.chunks
    last = result.chunks[-1]
    assert last.choices == [] and last.usage is not None
    attrs = telemetry.span().attributes or {}
    assert "llmmeter.stream.usage_injected" not in attrs
    assert attrs["gen_ai.usage.output_tokens"] == last.usage.completion_tokens


def test_stream_helper_is_counted_once(
    telemetry: Telemetry, client: Any, server: FakeOpenAI
) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        final = stream.get_final_completion()
    span = telemetry.span()
    assert span.attributes["gen_ai.usage.output_tokens"] > 0
    assert final.choices[0].message.content
    assert len(server.requests) == 1


def test_chat_parse_makes_one_span_with_json_output_type(telemetry: Telemetry, client: Any) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Answer(pydantic.BaseModel):
        greeting: str

    result = client.chat.completions.parse(
        model="gpt-4o-2024-08-06",
        messages=[{"role": "user", "content": "Say hello"}],
        response_format=Answer,
    )
    assert isinstance(result.choices[0].message.parsed, Answer)
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.output.type"] == "json"
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens


def test_responses_parse_and_stream_helper_make_one_span_each(
    telemetry: Telemetry, client: Any
) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Answer(pydantic.BaseModel):
        greeting: str

    parsed = client.responses.parse(model="gpt-4o-mini", input="Say hello", text_format=Answer)
    assert isinstance(parsed.output_parsed, Answer)
    with client.responses.stream(model="gpt-4o-mini", input="Say hello") as stream:
        final = stream.get_final_response()
    spans = telemetry.spans()
    assert len(spans) == 2
    assert spans[0].attributes["gen_ai.output.type"] == "json"
    assert spans[1].attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens


def test_background_response_is_counted_once_across_create_and_retrieve(
    telemetry: Telemetry, client: Any
) -> None:
    queued = client.responses.create(model="gpt-4o", input="Say hello", background=True)
    assert queued.status == "queued"
    done = client.responses.retrieve(queued.id)
    again = client.responses.retrieve(queued.id)
    assert done.usage is not None and again.usage is not None
    create_span, retrieve_span, again_span = telemetry.spans()
    assert "gen_ai.usage.input_tokens" not in (create_span.attributes or {})
    assert retrieve_span.attributes["gen_ai.usage.input_tokens"] == done.usage.input_tokens
    assert retrieve_span.attributes["gen_ai.response.id"] == queued.id
    assert retrieve_span.name == "chat"
    assert "gen_ai.usage.input_tokens" not in (again_span.attributes or {})
    assert again_span.attributes["llmmeter.usage.already_counted"] is True
    tokens = [
        p
        for p in telemetry.points("gen_ai.client.token.usage")
        if p.attributes["gen_ai.token.type"] == "input"
    ]
    assert sum(p.sum for p in tokens) == done.usage.input_tokens


def test_beta_responses_class_is_instrumented_when_the_sdk_has_it(
    telemetry: Telemetry, client: Any
) -> None:
    beta = getattr(client.beta, "responses", None)
    if beta is None or not hasattr(beta, "create"):
        pytest.skip("this openai version has no beta responses resource")
    beta.create(model="gpt-4o-mini", input="Say hello")
    assert telemetry.span().attributes["openai.api.type"] == "responses"


def test_azure_client_reports_azure_provider_and_deployment(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    with openai_module.AzureOpenAI(
        azure_endpoint=server.url, api_key="azure-key", api_version="2024-10-21", max_retries=0
    ) as azure:
        result = azure.chat.completions.create(
            model="my-deployment", messages=[{"role": "user", "content": "Say hello"}]
        )
    attrs = telemetry.span().attributes or {}
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"
    assert attrs["gen_ai.request.model"] == "my-deployment"
    assert attrs["gen_ai.response.model"] == result.model
    assert server.requests[-1].path.startswith("/openai/deployments/my-deployment/")


def test_extra_body_model_is_the_request_model(
    telemetry: Telemetry, client: Any, server: FakeOpenAI
) -> None:
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Say hello"}],
        extra_body={"model": "gpt-4o-mini"},
    )
    assert server.requests[-1].body["model"] == "gpt-4o-mini"
    assert telemetry.span().attributes["gen_ai.request.model"] == "gpt-4o-mini"


def test_task_label_lands_on_span_and_metrics(telemetry: Telemetry, client: Any) -> None:
    import llmmeter

    with llmmeter.task("classify"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
        )
    assert telemetry.span().attributes["llmmeter.task"] == "classify"
    (point,) = telemetry.points("gen_ai.client.operation.duration")
    assert point.attributes["llmmeter.task"] == "classify"


def test_cached_input_tokens_are_counted_apart_and_never_added_to_input(
    telemetry: Telemetry, client: Any, server: FakeOpenAI
) -> None:
    long_prompt = "Describe the return policy for hiking boots in detail. " * 120  # ~1.6k tokens
    messages = [{"role": "user", "content": long_prompt}]
    for _ in range(2):  # the second request reads the prefix the first one cached
        client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, extra_body={"prompt_cache_key": "policy-faq"}
        )
    second = telemetry.spans()[-1].attributes or {}
    cached = second["gen_ai.usage.cache_read.input_tokens"]
    assert cached >= 1024
    (point,) = telemetry.points("llmmeter.usage.cache.input_tokens")
    assert point.value == cached
    assert point.attributes["llmmeter.cache.operation"] == "read"
    assert point.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert telemetry.metric("llmmeter.usage.cache.input_tokens").unit == "{token}"
    inputs = [
        p
        for p in telemetry.points("gen_ai.client.token.usage")
        if p.attributes["gen_ai.token.type"] == "input"
    ]
    assert sum(p.sum for p in inputs) == sum(
        (s.attributes or {})["gen_ai.usage.input_tokens"] for s in telemetry.spans()
    )
