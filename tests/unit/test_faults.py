"""Faults from the server side: malformed bodies, cut streams, cancellation.

For each malformed answer, the user must observe exactly what the bare SDK gives (result or
exception), llmmeter must not fail (the telemetry runs in strict mode, so any internal error
of ours would surface), and no token count is invented: tokens are either the ones in the
body, taken as they are, or absent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import llmmeter
from llmmeter.testing import FakeOpenAI
from tests.conftest import make_telemetry
from tests.local_http import QuietHTTPServer

MSG = [{"role": "user", "content": "Say hello"}]


def _completion(usage: Any = "absent", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello"},
                "finish_reason": "stop",
            }
        ],
        **extra,
    }
    if usage != "absent":
        body["usage"] = usage
    return body


BODIES: dict[str, tuple[bytes, str]] = {
    "usage-missing": (json.dumps(_completion()).encode(), "application/json"),
    "usage-null": (json.dumps(_completion(None)).encode(), "application/json"),
    "negative-tokens": (
        json.dumps(
            _completion({"prompt_tokens": -5, "completion_tokens": 3, "total_tokens": -2})
        ).encode(),
        "application/json",
    ),
    "string-tokens": (
        json.dumps(
            _completion({"prompt_tokens": "12", "completion_tokens": "x", "total_tokens": None})
        ).encode(),
        "application/json",
    ),
    "float-and-bool-tokens": (
        json.dumps(
            _completion({"prompt_tokens": 1.5, "completion_tokens": True, "total_tokens": 3})
        ).encode(),
        "application/json",
    ),
    "unknown-fields": (
        json.dumps(
            _completion(
                {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9, "new": {"a": 1}},
                brand_new_field=[1, 2, 3],
            )
        ).encode(),
        "application/json",
    ),
    "truncated-json": (json.dumps(_completion())[:80].encode(), "application/json"),
    "not-json": (b"<html>502 Bad Gateway</html>", "text/html"),
    "json-array": (b"[1, 2, 3]", "application/json"),
}


class _Scripted(BaseHTTPRequestHandler):
    body: bytes = b""
    content_type = "application/json"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", type(self).content_type)
        self.send_header("content-length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)


@pytest.fixture
def scripted() -> Iterator[type[_Scripted]]:
    handler = type("Handler", (_Scripted,), {})
    server = QuietHTTPServer(("127.0.0.1", 0), handler)
    handler.port = server.server_address[1]  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()


def _observe(openai_module: Any, port: int) -> tuple[str, Any]:
    """What the user sees: the parsed result's fields, or the exception's type and text."""
    with openai_module.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0
    ) as client:
        try:
            result = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        except Exception as exc:
            return "raised", (type(exc), str(exc))
        dumped = result.model_dump(warnings=False) if hasattr(result, "model_dump") else result
        return "returned", (type(result), json.dumps(dumped, sort_keys=True, default=str))


@pytest.mark.parametrize("case", sorted(BODIES))
def test_malformed_answer_is_seen_exactly_as_without_llmmeter_and_no_token_is_invented(
    scripted: type[_Scripted], openai_module: Any, case: str
) -> None:
    body, content_type = BODIES[case]
    scripted.body, scripted.content_type = body, content_type
    port = scripted.port  # type: ignore[attr-defined]
    bare = _observe(openai_module, port)
    tel = make_telemetry()
    tel.instrument()  # strict: an internal error of ours would raise here
    try:
        seen = _observe(openai_module, port)
    finally:
        llmmeter.uninstrument()
    assert seen == bare
    (span,) = tel.spans()
    attrs = dict(span.attributes or {})
    text = body.decode(errors="replace")
    for name in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        if name in attrs:
            value = attrs[name]
            assert isinstance(value, int) and not isinstance(value, bool) and value >= 0
            assert f": {value}," in text or f": {value}}}" in text, (name, value)
    if "gen_ai.usage.input_tokens" not in attrs:
        assert "gen_ai.usage.cost.amount" not in attrs
    if bare[0] == "raised":
        assert span.status.status_code is StatusCode.ERROR


async def test_async_stream_cut_by_the_server_raises_the_sdks_error_and_fails_the_span(
    server: FakeOpenAI, openai_module: Any
) -> None:
    tel = make_telemetry()
    tel.instrument()
    try:
        server.break_stream_after(2)
        client = openai_module.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-test", max_retries=0
        )
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True
        )
        seen = []
        with pytest.raises(Exception) as caught:  # noqa: PT011, PT012 (the SDK's own type)
            async for chunk in stream:
                seen.append(chunk)
        await client.close()
    finally:
        llmmeter.uninstrument()
    assert seen
    assert type(caught.value).__module__.split(".")[0] in ("openai", "httpx", "httpx2", "httpcore")
    (span,) = tel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["llmmeter.stream.end"] == "error"


async def test_cancelling_a_task_mid_stream_ends_the_span(
    server: FakeOpenAI, openai_module: Any
) -> None:
    tel = make_telemetry()
    tel.instrument()
    server.set_latency(first_chunk=0.01, per_chunk=0.2)
    started = asyncio.Event()
    client = openai_module.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)

    async def consume() -> None:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True
        )
        async for _ in stream:
            started.set()

    try:
        task = asyncio.ensure_future(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await client.close()
        llmmeter.uninstrument()
    (span,) = tel.spans()
    assert span.attributes["llmmeter.stream.end"] == "error"
    assert span.attributes["error.type"] == "CancelledError"
