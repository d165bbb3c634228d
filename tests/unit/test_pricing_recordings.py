"""Every recorded exchange that carries usage, priced through the real instrumentation path.

Each recorded response is replayed verbatim by a local HTTP server to the real SDK, with
llmmeter instrumented; the span's cost must equal what genai-prices' own reference path
computes from the same recorded body (its usage extractor and its ``calc_price``), which
shares no code with ours.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

import llmmeter
from tests.conftest import make_telemetry
from tests.local_http import QuietHTTPServer

RECORDINGS = Path(
    os.environ.get(
        "LLMMETER_RECORDINGS",
        Path(__file__).resolve().parents[2].parent / "shared" / "openai-recordings",
    )
)


def _exchanges() -> list[Any]:
    index = RECORDINGS / "INDEX.json"
    if not index.exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"recorded exchanges missing in CI: {index}")
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no recordings at {index}"))]
    rows = json.loads(index.read_text())
    return [
        pytest.param(row, id=Path(row["file"]).stem)
        for row in rows
        if row["has_usage"] == "yes" and row["status"] == 200
    ]


class _Replay(BaseHTTPRequestHandler):
    """Answers any request with the current exchange's recorded response, byte for byte."""

    protocol_version = "HTTP/1.1"
    response: dict[str, Any] = {}

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        response = type(self).response
        if "sse" in response:
            payload, kind = response["sse"].encode(), "text/event-stream"
        else:
            payload, kind = json.dumps(response["body"]).encode(), "application/json"
        self.send_response(response["status"])
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def replay() -> Iterator[str]:
    server = QuietHTTPServer(("127.0.0.1", 0), _Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def _call(client: Any, endpoint: str, body: dict[str, Any]) -> Any:
    """The SDK method a user would call for this recorded request."""
    rest = dict(body)
    kwargs: dict[str, Any] = {}
    if "model" in rest:  # a stored prompt template may name the model instead
        kwargs["model"] = rest.pop("model")
    for key in ("stream", "stream_options"):
        if key in rest:
            kwargs[key] = rest.pop(key)
    if endpoint == "/v1/chat/completions":
        kwargs["messages"] = rest.pop("messages")
        method = client.chat.completions.create
    elif endpoint == "/v1/responses":
        method = client.responses.create
    elif endpoint == "/v1/embeddings":
        kwargs["input"] = rest.pop("input")
        kwargs["encoding_format"] = rest.pop("encoding_format", "float")
        method = client.embeddings.create
    else:
        kwargs["prompt"] = rest.pop("prompt")
        method = client.completions.create
    result = method(**kwargs, extra_body=rest or None)
    return list(result) if kwargs.get("stream") else result


def _recorded_usage_body(response: dict[str, Any]) -> dict[str, Any]:
    """The recorded ``{"model", "usage", "service_tier"}``, from a body or the last SSE event."""
    if "body" in response:
        return dict(response["body"])
    found: dict[str, Any] = {}
    for line in response["sse"].splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[len("data: ") :])
        holder = event.get("response") if isinstance(event.get("response"), dict) else event
        if holder.get("usage"):
            found = holder
    return found


def _oracle(row: dict[str, Any], exchange: dict[str, Any], now: datetime) -> Decimal | None:
    from genai_prices import calc_price, extract_usage

    body = _recorded_usage_body(exchange["response"])
    flavor = {"/v1/responses": "responses", "/v1/embeddings": "embeddings"}.get(
        row["endpoint"], "chat"
    )
    tier = body.get("service_tier")
    context = {"service_tier": tier} if isinstance(tier, str) else None
    # As llmmeter does: the response's model, then the request's.
    for model in (body.get("model"), exchange["request"]["body"].get("model")):
        if not model:
            continue
        try:
            extracted = extract_usage(
                {**body, "model": model}, provider_id="openai", api_flavor=flavor
            )
            calc = calc_price(
                extracted.usage,
                model,
                provider_id="openai",
                genai_request_timestamp=now,
                price_context=context,
            )
        except LookupError:
            continue
        return calc.total_price
    return None


@pytest.mark.parametrize("row", _exchanges())
def test_recorded_exchange_is_priced_as_the_reference_computes(
    row: dict[str, Any], replay: str, openai_module: Any
) -> None:
    exchange = json.loads((RECORDINGS / row["file"]).read_text())
    _Replay.response = exchange["response"]
    tel = make_telemetry()
    tel.instrument()
    try:
        with openai_module.OpenAI(base_url=replay, api_key="k", max_retries=0) as client:
            _call(client, row["endpoint"], exchange["request"]["body"])
    finally:
        llmmeter.uninstrument()
    attrs = dict(tel.span().attributes or {})
    expected = _oracle(row, exchange, datetime.now(UTC))
    if expected is None:
        assert attrs["llmmeter.price.ref"] == "unknown"
        assert "gen_ai.usage.cost.amount" not in attrs
    else:
        assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(float(expected), rel=1e-9)
        assert attrs["llmmeter.price.ref"].startswith("genai-prices ")
        assert attrs["gen_ai.usage.cost.currency"] == "USD"
