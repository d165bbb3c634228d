"""Another instrumentation in the same process: whatever it wraps around the SDK, the user's
calls behave as without llmmeter, and llmmeter's telemetry stays whole.

The stand-ins here wrap ``Completions.create`` the way other OpenAI instrumentations do
(measured in the coexistence survey): one hands back its own plain stream class, another an
object proxy of the SDK stream that defines both the sync and the async iterator protocols.
They are applied before llmmeter instruments, so llmmeter's wrapper is the outer one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import wrapt

import llmmeter
from llmmeter.testing import FakeOpenAI
from tests.conftest import make_telemetry

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tell me a story"}]}


class PlainStream:
    """A stream wrapper that is neither the SDK's class nor a proxy of it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._stream)

    def close(self) -> None:
        self._stream.close()


class BothWaysProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """An object proxy of the SDK stream with both iterator protocols, as some have."""

    def __iter__(self) -> Any:
        return iter(self.__wrapped__)

    def __next__(self) -> Any:
        return next(self.__wrapped__)

    def __aiter__(self) -> Any:
        return self.__wrapped__.__aiter__()

    async def __anext__(self) -> Any:
        return await self.__wrapped__.__anext__()


def _chunks(stream: Any) -> list[Any]:
    return [(len(c.choices), [ch.delta.content for ch in c.choices], c.usage) for c in stream]


@pytest.fixture
def completions(openai_module: Any) -> Iterator[type[Any]]:
    from openai.resources.chat.completions import Completions

    original = Completions.__dict__["create"]
    yield Completions
    llmmeter.uninstrument()
    Completions.create = original


@pytest.mark.parametrize("wrapper", [PlainStream, BothWaysProxy], ids=["plain", "both-ways"])
def test_a_stream_wrapped_by_another_instrumentation_below_stays_the_users_stream(
    server: FakeOpenAI, openai_module: Any, completions: type[Any], wrapper: type[Any]
) -> None:
    """The user iterates exactly the other's stream as without llmmeter (no usage chunk that
    llmmeter asked for, no async proxy for a sync call) and llmmeter's span has the tokens."""

    def other(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        return wrapper(result) if kwargs.get("stream") else result

    wrapt.wrap_function_wrapper(completions, "create", other)

    def client() -> Any:
        return openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)

    with client() as bare:
        expected = _chunks(bare.chat.completions.create(**CHAT, stream=True))
    tel = make_telemetry()
    tel.instrument()  # asks every server for stream usage (the conftest default)
    with client() as instrumented:
        seen = _chunks(instrumented.chat.completions.create(**CHAT, stream=True))
    assert seen == expected
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}
    attrs = tel.span().attributes or {}
    assert attrs["llmmeter.stream.end"] == "exhausted"
    assert attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0


def test_uninstrument_leaves_a_wrapper_another_instrumentation_put_over_ours(
    server: FakeOpenAI, openai_module: Any, completions: type[Any]
) -> None:
    """Putting the original method back would remove the other's wrapper as well: ours stays
    underneath it, inert, and the other keeps working."""
    seen: list[str] = []

    def other(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        seen.append(kwargs["model"])
        return wrapped(*args, **kwargs)

    tel = make_telemetry()
    tel.instrument()
    wrapt.wrap_function_wrapper(completions, "create", other)  # after us: outer
    llmmeter.uninstrument()
    with openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        client.chat.completions.create(**CHAT)
    assert seen == ["gpt-4o-mini"]  # the other's wrapper is still in place
    assert tel.spans() == []  # and ours passes straight through


def test_a_call_where_the_application_suppressed_instrumentation_records_nothing(
    telemetry: Any, client: Any
) -> None:
    """OpenTelemetry's suppress_instrumentation (an exporter's own calls, Logfire's blocks):
    the call goes out as written and llmmeter records no span and no metric point."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        reply = client.chat.completions.create(**CHAT)
    assert reply.choices[0].message.content
    assert telemetry.spans() == []
    assert telemetry.points("gen_ai.client.operation.duration") == []
    client.chat.completions.create(**CHAT)  # and outside it, as usual
    assert len(telemetry.spans()) == 1


def test_a_method_that_cannot_be_patched_is_logged_once_and_the_rest_are_patched(
    telemetry: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import types

    from llmmeter import _instrumentor

    class Embeddings:
        def create(self) -> str:
            return "sync"

    class AsyncEmbeddings:
        async def create(self) -> str:
            return "async"

    module = types.SimpleNamespace(Embeddings=Embeddings, AsyncEmbeddings=AsyncEmbeddings)
    real = _instrumentor.wrapt.wrap_function_wrapper

    def failing(target: Any, name: str, wrapper: Any) -> Any:
        if target is Embeddings:
            raise TypeError("not a method we know")
        return real(target, name, wrapper)

    monkeypatch.setattr(_instrumentor.wrapt, "wrap_function_wrapper", failing)
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        for _ in range(2):
            _instrumentor.REGISTRY._patch("openai.resources.embeddings", module)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "llmmeter: could not patch openai.resources.embeddings.Embeddings.create; its calls "
        "are not instrumented"
    ]
    assert "create" in Embeddings.__dict__ and not hasattr(Embeddings.create, "__wrapped__")
    assert hasattr(AsyncEmbeddings.__dict__["create"], "__wrapped__")  # the other one: patched


# --- another OpenAI instrumentation beside llmmeter ----------------------------------------


def _stand_in(module: str, seen: list[str], *, listens: bool) -> Any:
    """A wrapper as another OpenAI instrumentation defines one (in ``module``): it records
    the call unless, ``listens``, the context says an outer layer records it."""
    from opentelemetry import context

    def other(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not (
            listens
            and (
                context.get_value("suppress_language_model_instrumentation")
                or context.get_value(context._SUPPRESS_INSTRUMENTATION_KEY)
            )
        ):
            seen.append("recorded")
        return wrapped(*args, **kwargs)

    other.__module__ = module
    return other


def test_an_instrumentation_wrapped_over_llmmeter_later_ends_up_inside_it_and_silent(
    server: FakeOpenAI, openai_module: Any, completions: type[Any], caplog: Any
) -> None:
    """llmmeter first, the other after (its wrapper outermost): the call that notices wraps
    llmmeter's again on top; from the next call on, one llmmeter span and the other, which
    honours suppress_language_model_instrumentation, records nothing."""
    import logging

    seen: list[str] = []
    tel = make_telemetry()
    tel.instrument()
    wrapt.wrap_function_wrapper(
        completions,
        "create",
        _stand_in("opentelemetry.instrumentation.openai.v1.x", seen, listens=True),
    )
    with (
        caplog.at_level(logging.INFO, logger="llmmeter"),
        openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        client.chat.completions.create(**CHAT)  # noticed here: both record, once
        assert seen == ["recorded"]
        for _ in range(3):
            client.chat.completions.create(**CHAT)
    assert seen == ["recorded"]
    assert len(tel.spans()) == 4
    (point,) = tel.points("gen_ai.client.operation.duration")
    assert point.count == 4
    said = [r.getMessage() for r in caplog.records if "OpenLLMetry" in r.getMessage()]
    assert any("wrapped it again on top" in m for m in said)
    assert any("tells it to record nothing" in m for m in said)


def test_an_instrumentation_that_cannot_be_silenced_is_named_once_with_its_off_switch(
    server: FakeOpenAI, openai_module: Any, completions: type[Any], caplog: Any
) -> None:
    import logging

    seen: list[str] = []
    wrapt.wrap_function_wrapper(
        completions,
        "create",
        _stand_in("openlit.instrumentation.openai.openai", seen, listens=False),
    )
    tel = make_telemetry()
    with caplog.at_level(logging.INFO, logger="llmmeter"):
        tel.instrument()
        with openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c:
            for _ in range(2):
                c.chat.completions.create(**CHAT)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "openlit also instruments openai and cannot be told to stand back" in warnings[0]
    assert "OPENLIT_DISABLED_INSTRUMENTORS=openai" in warnings[0]
    assert seen == ["recorded", "recorded"] and len(tel.spans()) == 2


def test_a_request_level_instrumentation_is_silenced_and_http_instrumentation_is_not(
    server: FakeOpenAI, openai_module: Any, telemetry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenInference and Logfire wrap the clients' request(), below llmmeter: told to record
    nothing by suppress_instrumentation, whose value in llmmeter's context turns false once
    the SDK begins its HTTP attempt (an HTTP instrumentation, here an event hook, still sees
    it enabled)."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    seen: list[str] = []
    request_level = _stand_in("openinference.instrumentation.openai._request", seen, listens=True)
    wrapt.wrap_function_wrapper(openai_module.OpenAI, "request", request_level)
    http: list[tuple[bool, bool]] = []

    def on_request(request: Any) -> None:
        current = trace.get_current_span().get_span_context()
        http.append((is_instrumentation_enabled(), current.is_valid))

    try:
        http_client = openai_module.DefaultHttpxClient(event_hooks={"request": [on_request]})
    except (AttributeError, TypeError):
        http_client = openai_module.DefaultHttpx2Client(event_hooks={"request": [on_request]})
    try:
        with openai_module.OpenAI(
            base_url=server.base_url, api_key="k", max_retries=0, http_client=http_client
        ) as client:
            client.chat.completions.create(**CHAT)
    finally:
        del openai_module.OpenAI.request  # the stand-in's patch, undone
    assert seen == []
    assert http == [(True, True)]  # instrumentation on, and llmmeter's span is the parent
    assert len(telemetry.spans()) == 1


def test_with_keep_both_record(
    server: FakeOpenAI,
    openai_module: Any,
    completions: type[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    tel = make_telemetry()
    monkeypatch.setenv("LLMMETER_OTHER_INSTRUMENTATIONS", "keep")
    tel.instrument()
    wrapt.wrap_function_wrapper(
        completions,
        "create",
        _stand_in("opentelemetry.instrumentation.genai.openai", seen, listens=True),
    )
    with openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        for _ in range(2):
            client.chat.completions.create(**CHAT)
    assert seen == ["recorded", "recorded"]
    assert len(tel.spans()) == 2


def test_an_instrumentation_that_detaches_its_context_late_leaves_nothing_of_ours_behind(
    server: FakeOpenAI, openai_module: Any, completions: type[Any]
) -> None:
    """openai-v2 attaches its span's context when a stream call starts and detaches it when
    the stream ends, after llmmeter's call left: the detach restores the context llmmeter
    attached. That context says nothing any more: later calls are recorded (not suppressed)
    and later spans are not children of the ended call."""
    from opentelemetry import context, trace

    def late(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        token = context.attach(context.set_value("other.span", "x"))
        stream = wrapped(*args, **kwargs)

        def chunks() -> Iterator[Any]:
            try:
                yield from stream
            finally:
                context.detach(token)  # out of order: after llmmeter's leave()

        return PlainStream(chunks())

    wrapt.wrap_function_wrapper(completions, "create", late)
    tel = make_telemetry()
    tel.instrument()
    tracer = tel.tracer_provider.get_tracer("app")
    with (
        tracer.start_as_current_span("handler") as handler,
        openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        outer = context.get_current()
        list(client.chat.completions.create(**CHAT, stream=True))
        assert context.get_current() == outer  # the application's context, as it was
        assert trace.get_current_span().get_span_context() == handler.get_span_context()
        with tracer.start_as_current_span("after") as after:
            assert after.parent is not None
            assert after.parent.span_id == handler.get_span_context().span_id
        client.chat.completions.create(**CHAT)  # recorded: nothing suppressed any more
    names = [s.name for s in tel.spans() if s.name.startswith("chat")]
    assert names == ["chat gpt-4o-mini", "chat gpt-4o-mini"]
