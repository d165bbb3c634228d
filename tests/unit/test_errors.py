"""Errors are recorded on the span; the user's exception is the same object, unchanged."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry
from tests.scenarios import ENDPOINTS, run

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_http_error_marks_span_and_propagates_the_sdk_exception(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any, status: int, mode: str
) -> None:
    server.fail_next(status)
    method, kwargs = ENDPOINTS["chat"]
    with pytest.raises(openai_module.APIStatusError) as info:
        run(openai_module, server.base_url, mode, method, kwargs)
    assert info.value.status_code == status
    span = telemetry.span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == str(status)
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"].endswith(type(info.value).__name__)
    (point,) = telemetry.points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == str(status)


def test_unknown_model_404_is_recorded(
    telemetry: Telemetry, client: Any, openai_module: Any
) -> None:
    with pytest.raises(openai_module.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=CHAT["messages"])
    assert telemetry.span().attributes["error.type"] == "404"


def test_user_exception_is_the_very_object_the_sdk_raised(
    server: FakeOpenAI, openai_module: Any
) -> None:
    """Compare with a bare SDK call: same type, same message, and llmmeter re-raises it as is."""
    import llmmeter
    from tests.conftest import make_telemetry

    server.fail_next(429)
    with openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c:
        with pytest.raises(openai_module.RateLimitError) as bare:
            c.chat.completions.create(**CHAT)
        tel = make_telemetry()
        tel.instrument()
        try:
            server.fail_next(429)
            with pytest.raises(openai_module.RateLimitError) as seen:
                c.chat.completions.create(**CHAT)
        finally:
            llmmeter.uninstrument()
    assert type(seen.value) is type(bare.value)
    assert str(seen.value) == str(bare.value)
    recorded = tel.span().events[0].attributes["exception.message"]
    assert recorded == str(seen.value)


def test_sdk_retries_make_one_span_with_the_retry_count(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    server.fail_next(500, times=2)
    method, kwargs = ENDPOINTS["chat"]
    result = run(openai_module, server.base_url, "sync", method, kwargs, max_retries=2)
    assert result.value.choices
    span = telemetry.span()
    assert span.status.status_code.name == "UNSET"
    assert span.attributes["http.request.resend_count"] == 2
    assert [r.response_status for r in server.requests] == [500, 500, 200]


async def test_async_sdk_retries_make_one_span_with_the_retry_count(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    server.fail_next(429, times=1)
    client = openai_module.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=1)
    try:
        await client.chat.completions.create(**CHAT)
    finally:
        await client.close()
    assert telemetry.span().attributes["http.request.resend_count"] == 1


def test_connection_refused_is_recorded_as_connection_error(
    telemetry: Telemetry, openai_module: Any
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        openai_module.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0
        ) as c,
        pytest.raises(openai_module.APIConnectionError),
    ):
        c.chat.completions.create(**CHAT)
    span = telemetry.span()
    assert span.attributes["error.type"] == "APIConnectionError"
    assert span.attributes["server.port"] == port


def test_api_key_never_reaches_telemetry(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    """The 401 body echoes the (masked) key; the exported message must not carry it."""
    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    server.fail_next(401, message=f"Incorrect API key provided: {secret}.")
    with (
        openai_module.OpenAI(base_url=server.base_url, api_key=secret, max_retries=0) as c,
        pytest.raises(openai_module.AuthenticationError),
    ):
        c.chat.completions.create(**CHAT)
    span = telemetry.span()
    exported = repr(span.attributes) + repr([e.attributes for e in span.events])
    exported += span.status.description or ""
    assert "sk-proj" not in exported
    assert "[REDACTED]" in exported
