"""Fault injection: each internal stage raises in turn; the user's call behaves as without us."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import llmmeter
from llmmeter import _call, _pricing, _proxies, _record, _usage
from llmmeter.testing import FakeOpenAI
from tests.conftest import make_telemetry

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


class Boom(Exception):
    """An internal llmmeter failure, injected."""


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise Boom("injected")


# Stages that decide what a stream shows. If one fails, llmmeter cannot hide the usage chunk
# it asked for: the user sees the SDK's own chunks unchanged plus that one extra chunk last,
# exactly as if they had set include_usage themselves (documented in docs/streams.md).
STREAM_SHAPE_STAGES: list[tuple[Any, str]] = [
    (_call, "is_usage_only_chunk"),
    (_proxies, "wrap_stream"),
]


# Every stage of our own work, from opening the call to ending the span.
STAGES: list[tuple[Any, str]] = [
    (_call, "wire_model"),  # request reading, at open
    (_call, "request_attributes"),
    (_call.Call, "enter"),
    (_call, "read_response"),  # response reading
    (_call, "read_chunk"),  # chunk reading
    (_proxies, "wrap_raw_response"),
    (_proxies, "_read_body"),
    (_call, "response_attributes"),  # finishing
    (_call, "usage_attributes"),
    (_call, "rejects_stream_options"),
    (_record, "status_code"),
    (_record, "content_json"),
    (_pricing.PriceTable, "price"),  # pricing
    (_pricing, "compute_cost"),
]


@pytest.fixture
def lenient() -> Iterator[None]:
    """Instrumented in production mode: internal errors are logged, never raised."""
    tel = make_telemetry()
    tel.instrument(strict=False, capture_content=True)
    yield
    llmmeter.uninstrument()


def _scenarios(client: Any, server: FakeOpenAI, openai_module: Any) -> dict[str, Any]:
    """What the user observes for each kind of call, failures and a stream_options refusal too."""

    def chunks_of(stream: Any) -> list[Any]:
        return [(c.id, [ch.delta.content for ch in c.choices], c.usage) for c in stream]

    out: dict[str, Any] = {}
    out["chat"] = client.chat.completions.create(**CHAT).choices[0].message.content
    out["stream"] = chunks_of(client.chat.completions.create(**CHAT, stream=True))
    with client.chat.completions.create(**CHAT, stream=True) as stream:
        out["stream-ctx"] = chunks_of(stream)
    out["raw"] = client.chat.completions.with_raw_response.create(**CHAT).parse().choices[0]
    with client.chat.completions.with_streaming_response.create(**CHAT) as response:
        out["streaming-response"] = response.parse().choices[0]
    out["responses"] = client.responses.create(model="gpt-4o-mini", input="hi").output_text
    out["embeddings"] = len(
        client.embeddings.create(model="text-embedding-3-small", input="x").data
    )
    server.fail_next(500)
    try:
        client.chat.completions.create(**CHAT)
    except openai_module.InternalServerError as exc:
        out["error"] = (type(exc), exc.status_code, str(exc))
    server.reject_stream_options = True
    try:
        out["refused"] = chunks_of(client.chat.completions.create(**CHAT, stream=True))
    finally:
        server.reject_stream_options = False
    return out


def _normalise(value: Any) -> Any:
    """Ids and timestamps differ per request; compare everything else."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return ("<id>", *(_normalise(v) for v in value[1:]))
    if hasattr(value, "model_dump"):
        dumped = value.model_dump()
        dumped.pop("id", None)
        dumped.pop("created", None)
        return dumped
    return value


def _observe(
    server: FakeOpenAI,
    openai_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
) -> tuple[Any, Any, list[str]]:
    """The user's observations without llmmeter, then with llmmeter and one stage failing."""
    calls: list[str] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        raise Boom("injected")

    def client() -> Any:
        # A fresh client per run: the SDK binds `with_raw_response` methods on first access.
        return openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)

    with client() as bare:
        expected = _normalise(_scenarios(bare, server, openai_module))
    tel = make_telemetry()
    tel.instrument(strict=False, capture_content=True)
    try:
        monkeypatch.setattr(owner, name, failing)
        with client() as instrumented:
            seen = _normalise(_scenarios(instrumented, server, openai_module))
    finally:
        llmmeter.uninstrument()
        monkeypatch.undo()
    return expected, seen, calls


@pytest.mark.parametrize(("owner", "name"), STAGES, ids=[f"{o.__name__}.{n}" for o, n in STAGES])
def test_internal_failure_at_each_stage_leaves_the_users_calls_unchanged(
    server: FakeOpenAI,
    openai_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    owner: Any,
    name: str,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="llmmeter"):
        expected, seen, calls = _observe(server, openai_module, monkeypatch, owner, name)
    assert seen == expected
    assert calls, f"the scenarios never reached {name}: the test would prove nothing"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "the first internal error at a site is logged as a warning"
    sites = [r.args[0] for r in warnings if r.args]
    assert len(sites) == len(set(sites)), "each site warns once; repeats go to debug"


@pytest.mark.parametrize(
    ("owner", "name"), STREAM_SHAPE_STAGES, ids=[n for _, n in STREAM_SHAPE_STAGES]
)
def test_failure_deciding_stream_shape_at_most_shows_the_usage_chunk(
    server: FakeOpenAI,
    openai_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
) -> None:
    expected, seen, calls = _observe(server, openai_module, monkeypatch, owner, name)
    assert calls
    for key in expected:
        if key in ("stream", "stream-ctx"):
            *content, extra = seen[key]
            assert content == expected[key]
            assert extra[1] == [] and extra[2] is not None  # no choices, usage set
        else:
            assert seen[key] == expected[key], key


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_user_errors_propagate_as_the_same_object_when_telemetry_fails(
    server: FakeOpenAI,
    openai_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    lenient: None,
    mode: str,
) -> None:
    from tests.scenarios import ENDPOINTS, run

    monkeypatch.setattr(_call.Call, "finish", _boom)
    raised: list[BaseException] = []
    real_post = openai_module.OpenAI.post if mode == "sync" else openai_module.AsyncOpenAI.post

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return real_post(self, *args, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    async def aspy(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await real_post(self, *args, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    owner = openai_module.OpenAI if mode == "sync" else openai_module.AsyncOpenAI
    monkeypatch.setattr(owner, "post", spy if mode == "sync" else aspy)
    server.fail_next(503)
    method, kwargs = ENDPOINTS["chat"]
    with pytest.raises(openai_module.InternalServerError) as info:
        run(openai_module, server.base_url, mode, method, kwargs)
    assert raised and info.value is raised[-1]


def test_strict_mode_reraises_internal_errors(
    server: FakeOpenAI, openai_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tel = make_telemetry()
    tel.instrument()
    try:
        monkeypatch.setattr(_call, "read_response", _boom)
        with (
            openai_module.OpenAI(base_url=server.base_url, api_key="k") as client,
            pytest.raises(Boom),
        ):
            client.chat.completions.create(**CHAT)
    finally:
        llmmeter.uninstrument()


def test_guard_does_not_swallow_keyboard_interrupt() -> None:
    from llmmeter._guard import Guard

    guard = Guard()
    with pytest.raises(KeyboardInterrupt), guard.site("x"):
        raise KeyboardInterrupt


def test_stream_proxy_and_usage_modules_are_the_ones_patched() -> None:
    """Keeps STAGES honest: each name exists where the test patches it."""
    for owner, name in STAGES:
        assert hasattr(owner, name), (owner, name)
    assert _usage.read_chunk is _call.read_chunk
