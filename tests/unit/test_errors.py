"""Errors are recorded on the span; the user's exception is the same object, unchanged."""

from __future__ import annotations

import socket
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry
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
    """Compare with a bare SDK call: same type, same message, and llmmeter re-raises it as is
    (content capture on: the span records the server's message whole)."""
    import llmmeter
    from tests.conftest import make_telemetry

    server.fail_next(429)
    with openai_module.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c:
        with pytest.raises(openai_module.RateLimitError) as bare:
            c.chat.completions.create(**CHAT)
        tel = make_telemetry()
        tel.instrument(capture_content=True)
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


# --- what an error may say on a span ---------------------------------------------------------

PROMPT = "Summarise the quokka-4417 merger memo"
WITHHELD = "[message withheld: content capture is off]"


@pytest.fixture
def with_content() -> Iterator[Telemetry]:
    """Instrumented with content capture on spans (strict)."""
    import llmmeter

    tel = make_telemetry()
    tel.instrument(capture_content=True)
    yield tel
    llmmeter.uninstrument()


def _texts(span: Any) -> tuple[str, str, str]:
    """The recorded message, stacktrace and status description of a failed call's span."""
    (event,) = span.events
    attrs = event.attributes
    return attrs["exception.message"], attrs["exception.stacktrace"], span.status.description


def test_with_content_off_a_server_error_keeps_status_code_type_and_param_not_its_message(
    telemetry: Telemetry, server: FakeOpenAI, client: Any, openai_module: Any
) -> None:
    """Servers quote the prompt in error messages: with content off it must not be exported."""
    server.fail_next(
        400,
        message=f"Your prompt {PROMPT!r} is too long",
        code="context_length_exceeded",
        param="messages",
    )
    with pytest.raises(openai_module.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
    assert "quokka-4417" in str(caught.value)  # the server did quote it
    message, stacktrace, status = _texts(telemetry.span())
    assert message == (
        "HTTP 400, code context_length_exceeded, type invalid_request_error, param messages "
        + WITHHELD
    )
    assert status == message
    kind = type(caught.value)
    assert stacktrace.startswith("Traceback (most recent call last):\n")
    assert stacktrace.endswith(f"{kind.__module__}.{kind.__qualname__}: {message}\n")
    assert "quokka-4417" not in stacktrace
    assert telemetry.span().attributes["error.type"] == "400"


def test_with_content_on_a_server_error_message_is_recorded_whole(
    with_content: Telemetry, server: FakeOpenAI, client: Any, openai_module: Any
) -> None:
    server.fail_next(400, message=f"Your prompt {PROMPT!r} is too long")
    with pytest.raises(openai_module.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
    message, stacktrace, status = _texts(with_content.span())
    assert message == status == str(caught.value)
    assert stacktrace.endswith(f": {caught.value}\n")


def test_connection_errors_keep_their_network_texts_with_content_off(
    telemetry: Telemetry, openai_module: Any
) -> None:
    """Texts the network stack wrote (here the refused connection under the SDK's error)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        openai_module.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0
        ) as c,
        pytest.raises(openai_module.APIConnectionError) as caught,
    ):
        c.chat.completions.create(**CHAT)
    message, stacktrace, _ = _texts(telemetry.span())
    assert message == str(caught.value) == "Connection error."
    cause = caught.value.__cause__
    assert cause is not None
    assert f"{type(cause).__qualname__}: {cause}\n" in stacktrace
    assert "The above exception was the direct cause of the following exception" in stacktrace
    assert WITHHELD not in stacktrace


def test_other_exceptions_texts_are_withheld_with_content_off(
    telemetry: Telemetry, server: FakeOpenAI, openai_module: Any
) -> None:
    """An exception of the application's own HTTP hook, quoting the prompt."""

    def hook(request: Any) -> None:
        raise ValueError(f"refusing to send {PROMPT!r}")

    http_client = openai_module.DefaultHttpxClient(event_hooks={"request": [hook]})
    with (
        openai_module.OpenAI(
            base_url=server.base_url, api_key="k", max_retries=0, http_client=http_client
        ) as c,
        pytest.raises((ValueError, openai_module.APIConnectionError)) as caught,
    ):
        c.chat.completions.create(**CHAT)
    # openai 1.x wraps it in APIConnectionError (its own fixed text); 2.x and 3.x raise it as is.
    hook_error = caught.value if isinstance(caught.value, ValueError) else caught.value.__cause__
    assert isinstance(hook_error, ValueError)
    assert "quokka-4417" in str(hook_error)  # the application sees its own text unchanged
    message, stacktrace, _ = _texts(telemetry.span())
    assert message == (WITHHELD if hook_error is caught.value else str(caught.value))
    assert f"ValueError: {WITHHELD}\n" in stacktrace
    assert "quokka-4417" not in message + stacktrace
    assert ", in hook\n" in stacktrace  # the frames still say where it failed


def _chained_network_error() -> OSError:
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            raise socket.gaierror(-2, "Name or service not known") from None
    except OSError as exc:
        try:
            raise ConnectionRefusedError(111, "Connection refused") from exc
        except OSError as outer:
            outer.__context__ = exc
            return outer


def _stacktrace(error: BaseException, *, content: bool) -> str:
    from opentelemetry.sdk.trace import TracerProvider

    from llmmeter._record import record_error

    span = TracerProvider().get_tracer("test").start_span("call")
    record_error(span, error, None, content=content)
    span.end()
    return str(span.events[0].attributes["exception.stacktrace"])  # type: ignore[attr-defined,index]


def test_a_stacktrace_written_with_content_off_reads_as_python_prints_it() -> None:
    """Network texts are kept, so the traceback is Python's own, chain and all."""
    error = _chained_network_error()
    assert _stacktrace(error, content=False) == "".join(traceback.format_exception(error))


def test_with_content_off_each_chained_text_that_may_quote_content_is_withheld() -> None:
    try:
        try:
            raise ValueError(f"cannot encode {PROMPT!r}")
        except ValueError as exc:
            raise ConnectionAbortedError(103, "Software caused connection abort") from exc
    except OSError as caught:
        error = caught
    expected = "".join(traceback.format_exception(error)).replace(
        f"ValueError: cannot encode {PROMPT!r}\n", f"ValueError: {WITHHELD}\n"
    )
    assert f"ValueError: {WITHHELD}\n" in expected
    assert _stacktrace(error, content=False) == expected
    assert _stacktrace(error, content=True) == "".join(traceback.format_exception(error))


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize("content", [False, True])
def test_an_exception_whose_text_cannot_be_read_is_recorded_all_the_same(content: bool) -> None:
    try:
        try:
            raise Unprintable
        except Unprintable as exc:
            raise ConnectionResetError(104, "Connection reset by peer") from exc
    except OSError as caught:
        error = caught
    stacktrace = _stacktrace(error, content=content)
    assert "Unprintable: <exception str() failed>\n" in stacktrace
    assert stacktrace.endswith("ConnectionResetError: [Errno 104] Connection reset by peer\n")


@pytest.mark.parametrize(
    "key",
    [
        "sk-proj-Q7vL2mX9pR4tY8wZ1aB3cD5eF6gH0jK2lM4nP6qS8uVxW",
        "ak-9fXk2LqP7vR3sT8wY1zB4cD6eG0hJ5mN9QRS",
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    ],
    ids=["openai", "other-provider", "azure"],
)
def test_a_rejected_key_echoed_by_the_api_never_reaches_telemetry(
    with_content: Telemetry, openai_module: Any, key: str
) -> None:
    """Whatever the key's shape, masked in the API's 401 or quoted whole; content on, so the
    message is recorded and only scrubbing keeps the key out."""
    with (
        FakeOpenAI(api_key="sk-the-right-key") as guarded,
        openai_module.OpenAI(base_url=guarded.base_url, api_key=key, max_retries=0) as c,
    ):
        with pytest.raises(openai_module.AuthenticationError) as masked:
            c.chat.completions.create(**CHAT)
        guarded.fail_next(401, message=f"The key {key} is revoked")
        with pytest.raises(openai_module.AuthenticationError):
            c.chat.completions.create(**CHAT)
    assert key[-4:] in str(masked.value)  # the API echoes the key's last characters
    spans = with_content.spans()
    assert len(spans) == 2
    for span in spans:
        message, stacktrace, status = _texts(span)
        for text in (message, stacktrace, status):
            assert key not in text
            assert key[-4:] not in text
            assert key[:8] not in text
        assert "[REDACTED]" in message
