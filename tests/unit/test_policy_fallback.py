"""Fallback: a routed call that fails goes again, once, with the user's own model; the user
gets the good answer and telemetry shows both attempts. Also the ``accept`` escalation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import llmmeter
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry

MSG = [{"role": "user", "content": "Classify the sentiment of: I love it"}]
RULE = {"name": "to-mini", "from": "gpt-4o", "to": "gpt-4o-mini"}


@pytest.fixture
def routed() -> Any:
    made: list[Telemetry] = []

    def instrument(policy: Any) -> Telemetry:
        tel = make_telemetry()
        tel.instrument(policy=policy)
        made.append(tel)
        return tel

    yield instrument
    llmmeter.uninstrument()
    for tel in made:
        tel.meter_provider.shutdown()
        tel.tracer_provider.shutdown()


def _sent(server: FakeOpenAI) -> list[Any]:
    return [(r.body or {}).get("model") for r in server.requests]


def _check_two_attempts(tel: Telemetry, reason: str) -> None:
    first, second = tel.spans()
    a, b = dict(first.attributes or {}), dict(second.attributes or {})
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["llmmeter.policy.action"] == "route"
    assert a["error.type"] == reason
    assert first.status.status_code is StatusCode.ERROR
    assert b["gen_ai.request.model"] == "gpt-4o"
    assert b["llmmeter.policy.action"] == "fallback"
    assert b["llmmeter.policy.rule"] == "to-mini"
    assert b["llmmeter.policy.fallback_reason"] == reason
    assert b["llmmeter.policy.target_model"] == "gpt-4o-mini"
    assert "llmmeter.policy.savings" not in b
    assert second.status.status_code is StatusCode.UNSET
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    assert first.parent == second.parent
    actions = {
        p.attributes["llmmeter.policy.action"]: p.value
        for p in tel.points("llmmeter.policy.decisions")
    }
    assert actions == {"route": 1, "fallback": 1}


@pytest.mark.parametrize(
    ("status", "code"), [(429, None), (500, None), (503, None), (404, "model_not_found")]
)
def test_routed_call_that_fails_is_resent_with_the_original_model(
    routed: Any, client: Any, server: FakeOpenAI, status: int, code: str | None
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.fail_next(status, code=code, model="gpt-4o-mini")
    result = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert result.model.startswith("gpt-4o-2024")
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    _check_two_attempts(tel, str(status))


async def test_async_routed_call_falls_back(routed: Any, aclient: Any, server: FakeOpenAI) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.fail_next(429, model="gpt-4o-mini")
    result = await aclient.chat.completions.create(model="gpt-4o", messages=MSG)
    assert result.model.startswith("gpt-4o-2024")
    _check_two_attempts(tel, "429")


def test_a_target_model_that_does_not_exist_falls_back(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[{**RULE, "to": "gpt-5-nonexistent"}]))
    result = client.responses.create(model="gpt-4o", input="Classify: great")
    assert result.model.startswith("gpt-4o-2024")
    assert _sent(server) == ["gpt-5-nonexistent", "gpt-4o"]
    # The Responses API answers an unknown model with 400 (chat: 404); both fall back.
    assert tel.spans()[1].attributes["llmmeter.policy.fallback_reason"] == "400"


def test_a_timeout_on_the_target_falls_back(
    routed: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    # The target answers after an hour; the fallback answers well within the user's timeout
    # even on a loaded machine (the same timeout applies to both attempts).
    server.set_latency(response=3600.0, model="gpt-4o-mini")
    with openai_module.OpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=3.0
    ) as client:
        result = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert result.model.startswith("gpt-4o-2024")
    first, _ = tel.spans()
    assert first.attributes["error.type"] == "APITimeoutError"


def test_when_the_fallback_fails_too_the_user_gets_that_error(
    routed: Any, client: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.fail_next(500, model="gpt-4o-mini")
    server.fail_next(429, model="gpt-4o")
    with pytest.raises(openai_module.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    # No trace of our first attempt on the user's error (its context is the SDK's own).
    assert not isinstance(caught.value.__context__, openai_module.APIError)
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    assert [s.attributes["error.type"] for s in tel.spans()] == ["500", "429"]


def test_fallback_off_lets_the_routed_error_through(
    routed: Any, client: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE], fallback="off"))
    server.fail_next(503, model="gpt-4o-mini")
    with pytest.raises(openai_module.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o-mini"]
    assert len(tel.spans()) == 1


def test_shadowed_calls_never_fall_back(
    routed: Any, client: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    routed(llmmeter.RulePolicy(rules=[RULE], mode="shadow"))
    server.fail_next(429)
    with pytest.raises(openai_module.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o"]


def test_sdk_retries_happen_before_the_fallback(
    routed: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.fail_next(429, times=3, model="gpt-4o-mini")
    with openai_module.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=2) as c:
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o-mini"] * 3 + ["gpt-4o"]
    first, second = tel.spans()
    assert first.attributes["http.request.resend_count"] == 2
    assert "http.request.resend_count" not in (second.attributes or {})


# --- streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_stream_rejected_at_create_falls_back(
    routed: Any, client: Any, server: FakeOpenAI, endpoint: str
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.fail_next(429, model="gpt-4o-mini")
    if endpoint == "chat":
        stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    else:
        stream = client.responses.create(model="gpt-4o", input="Classify: ok", stream=True)
    chunks = list(stream)
    assert chunks
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    _check_two_attempts(tel, "429")
    assert tel.spans()[1].attributes["gen_ai.usage.output_tokens"] > 0


def test_stream_broken_before_its_first_chunk_continues_on_the_original_model(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    with client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True) as stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == server.reply
    assert {c.model for c in chunks} == {"gpt-4o-2024-08-06"}
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    first, second = tel.spans()
    assert first.attributes["llmmeter.stream.end"] == "error"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["llmmeter.policy.action"] == "fallback"
    assert second.attributes["llmmeter.stream.end"] in ("exhausted", "closed")
    assert second.attributes["gen_ai.usage.output_tokens"] > 0


async def test_async_stream_broken_before_its_first_chunk_continues_on_the_original_model(
    routed: Any, aclient: Any, server: FakeOpenAI
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == server.reply
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    assert [s.attributes["llmmeter.policy.action"] for s in tel.spans()] == ["route", "fallback"]


def test_stream_broken_after_chunks_were_shown_is_not_resent(
    routed: Any, client: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(3, model="gpt-4o-mini")
    stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    seen = []
    # The class differs by SDK major (3.x: APIConnectionError; 1.x/2.x: the transport's).
    with pytest.raises(Exception) as caught:  # noqa: PT011, PT012
        for chunk in stream:
            seen.append(chunk)
    assert seen
    assert not isinstance(caught.value, AssertionError)
    assert _sent(server) == ["gpt-4o-mini"]
    span = tel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["llmmeter.stream.end"] == "error"
    del stream
    gc.collect()


def test_stream_fallback_that_fails_raises_the_fallbacks_error(
    routed: Any, client: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    server.fail_next(503, model="gpt-4o")
    stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    with pytest.raises(openai_module.InternalServerError) as caught:
        next(iter(stream))
    assert not isinstance(caught.value.__context__, openai_module.APIError)
    assert [s.attributes.get("error.type") for s in tel.spans()] == [
        tel.spans()[0].attributes["error.type"],
        "503",
    ]


# --- accept ----------------------------------------------------------------------------


def _long_enough(response: Any) -> bool:
    """Accept only answers of at least 50 words (the fake's reply has 20)."""
    return len(response.choices[0].message.content.split()) >= 50


def test_an_answer_accept_turns_down_is_escalated_to_the_original_model(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE], accept=_long_enough))
    result = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert result.model.startswith("gpt-4o-2024")
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    first, second = tel.spans()
    assert first.attributes["llmmeter.policy.accepted"] is False
    paid = first.attributes["gen_ai.usage.cost.amount"]
    assert paid > 0  # the turned-down answer was paid for...
    assert first.attributes["llmmeter.policy.savings"] == -paid  # ...and saved nothing
    assert tel.points("llmmeter.savings.usd") == []
    assert first.status.status_code is StatusCode.UNSET
    assert second.attributes["llmmeter.policy.fallback_reason"] == "rejected"
    assert [link.context.span_id for link in second.links] == [first.context.span_id]


async def test_async_accept_escalates(routed: Any, aclient: Any, server: FakeOpenAI) -> None:
    routed(llmmeter.RulePolicy(rules=[RULE], accept=_long_enough))
    result = await aclient.chat.completions.create(model="gpt-4o", messages=MSG)
    assert result.model.startswith("gpt-4o-2024")
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]


def test_an_accepted_answer_is_kept(routed: Any, client: Any, server: FakeOpenAI) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE], accept=lambda r: True))
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o-mini"]
    assert "llmmeter.policy.accepted" not in (tel.span().attributes or {})


def test_accept_that_raises_keeps_the_answer_and_logs_once(
    routed: Any, client: Any, server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(response: Any) -> bool:
        raise KeyError("oops")

    routed(llmmeter.RulePolicy(rules=[RULE], accept=broken))
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o-mini"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_accept_never_resends_when_fallback_is_off(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE], fallback="off", accept=_long_enough))
    result = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert result.model.startswith("gpt-4o-mini")
    assert _sent(server) == ["gpt-4o-mini"]
    assert "llmmeter.policy.accepted" not in (tel.span().attributes or {})


def test_fallback_decisions_say_why(routed: Any, client: Any, server: FakeOpenAI) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE], accept=_long_enough))
    server.fail_next(429, model="gpt-4o-mini")
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    reasons = {
        p.attributes.get("llmmeter.policy.fallback_reason"): p.value
        for p in tel.points("llmmeter.policy.decisions")
        if p.attributes["llmmeter.policy.action"] == "fallback"
    }
    assert reasons == {"429": 1, "rejected": 1}


def test_accept_is_not_applied_to_streams(routed: Any, client: Any, server: FakeOpenAI) -> None:
    calls: list[Any] = []
    routed(llmmeter.RulePolicy(rules=[RULE], accept=lambda r: calls.append(r) or False))
    list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert calls == []
    assert _sent(server) == ["gpt-4o-mini"]


def test_accept_on_a_custom_policy(routed: Any, client: Any, server: FakeOpenAI) -> None:
    class Picky:
        def decide(self, call: llmmeter.CallView) -> llmmeter.Route:
            return llmmeter.Route("gpt-4o-mini", "picky")

        def accept(self, response: Any) -> bool:
            return False

    routed(Picky())
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]


# --- where the fallback belongs, and what it closes -------------------------------------


def test_stream_fallback_span_is_a_sibling_of_the_routed_span_wherever_it_is_iterated(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    tracer = tel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler"), llmmeter.task("classify"):
        stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
    list(stream)  # e.g. a web framework iterating the body after the handler returned
    spans = {s.name: s for s in tel.spans()}
    first, second = spans["chat gpt-4o-mini"], spans["chat gpt-4o"]
    assert second.parent is not None and second.parent == first.parent
    assert second.context.trace_id == first.context.trace_id
    assert second.attributes["llmmeter.task"] == first.attributes["llmmeter.task"] == "classify"


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_stream_helper_closed_early_after_a_fallback_closes_the_fallback_stream(
    routed: Any, client: Any, server: FakeOpenAI, api: str
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    if api == "chat":
        helper = client.chat.completions.stream(model="gpt-4o", messages=MSG)
    else:
        helper = client.responses.stream(model="gpt-4o", input="Classify: fine")
    with helper as stream:
        next(iter(stream))  # one event, then the user stops reading
    proxy = stream._raw_stream
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    assert proxy.__wrapped__.response.is_closed  # the stream being read, as without us
    assert [s.attributes.get("llmmeter.stream.end") for s in tel.spans()] == ["error", "closed"]


@pytest.mark.parametrize("how", ["with_raw_response", "with_streaming_response"])
def test_raw_stream_that_breaks_before_its_first_chunk_falls_back(
    routed: Any, client: Any, server: FakeOpenAI, how: str
) -> None:
    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    create = getattr(client.chat.completions, how).create
    if how == "with_raw_response":
        chunks = list(create(model="gpt-4o", messages=MSG, stream=True).parse())
    else:
        with create(model="gpt-4o", messages=MSG, stream=True) as response:
            chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == server.reply
    assert _sent(server) == ["gpt-4o-mini", "gpt-4o"]
    assert [s.attributes["llmmeter.policy.action"] for s in tel.spans()] == ["route", "fallback"]


def test_stream_fallback_retries_without_injected_stream_options(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    """A backend for the original model that refuses stream_options still gets the request
    as the user wrote it (llmmeter's injection never causes an error)."""
    routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    server.fail_next(
        400,
        model="gpt-4o",
        param="stream_options",
        message="Unrecognized request argument supplied: stream_options",
    )
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == server.reply
    assert "stream_options" not in (server.requests[-1].body or {})


async def test_cancelled_while_a_stream_falls_back_leaves_no_context_behind(
    routed: Any, aclient: Any, server: FakeOpenAI, openai_module: Any, monkeypatch: Any
) -> None:
    from opentelemetry import trace

    from llmmeter._call import current_call

    tel = routed(llmmeter.RulePolicy(rules=[RULE]))
    server.break_stream_after(0, model="gpt-4o-mini")
    closing = asyncio.Event()
    real_close = openai_module.AsyncStream.close

    async def slow_close(self: Any) -> None:
        closing.set()
        await asyncio.sleep(5)
        await real_close(self)

    async def consume() -> tuple[Any, Any]:
        stream = await aclient.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        monkeypatch.setattr(openai_module.AsyncStream, "close", slow_close)
        with contextlib.suppress(asyncio.CancelledError):
            async for _ in stream:
                pass
        monkeypatch.setattr(openai_module.AsyncStream, "close", real_close)
        left = (current_call.get(), trace.get_current_span())
        await aclient.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        return left

    task = asyncio.ensure_future(consume())
    await closing.wait()
    task.cancel()
    call, span = await task
    assert call is None
    assert not span.get_span_context().is_valid
    spans = tel.spans()
    assert [s.attributes["llmmeter.stream.end"] for s in spans[:1]] == ["error"]
    assert spans[-1].name == "chat gpt-4o-mini"  # the next call was traced
    assert len(spans) == 2  # cancelled before the re-send was opened: nothing left open


def test_a_rejected_api_key_is_not_resent(
    routed: Any, client: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    routed(llmmeter.RulePolicy(rules=[RULE]))
    server.fail_next(401, model="gpt-4o-mini")
    with pytest.raises(openai_module.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o-mini"]


def test_a_target_the_project_may_not_use_falls_back(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    """403 can be about the model (a project without access to the target): re-sent."""
    routed(llmmeter.RulePolicy(rules=[RULE]))
    server.fail_next(403, model="gpt-4o-mini")
    result = client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert result.model.startswith("gpt-4o-2024")


def test_an_accept_check_that_returns_a_non_bool_keeps_the_answer(
    routed: Any, client: Any, server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    routed(llmmeter.RulePolicy(rules=[RULE], accept=lambda r: "no"))
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent(server) == ["gpt-4o-mini"]
    assert "not a bool" in caplog.records[-1].getMessage()
