"""What the user holds while a call is still going: stream and raw-response proxies.

:func:`deliver` is the one place that decides what the user gets for the SDK's result: a
stream gets a stream proxy, a raw response whose body is not read yet a raw-response proxy,
and anything else is the result itself, with the call finished at once. A proxy finishes its
call later, exactly once, however the user ends it.

Streams. What the user iterates is exactly what the SDK yields. One lifecycle shared by sync
and async: a stream finishes on exhaustion, on error, on ``close()``, on context-manager exit,
or, if the user abandons it, when the proxy is garbage-collected. Only ``__next__`` /
``__anext__``, ``close`` and the context-manager methods differ between the two proxies. The
iterator, async-iterator and context-manager methods are defined explicitly (proxies forward
attributes, not protocol slots), and ``__enter__`` returns the proxy so the user keeps
iterating through it. Every chunk passes through here, so the sync proxy's ``iter()`` is a
generator (as the SDK's own ``Stream.__iter__`` is) running ``__next__``'s loop: resuming it
costs less than calling ``__next__``, each of whose attribute reads goes through wrapt.

A routed stream that fails before any chunk reached the user falls back: the failed stream is
closed, the request is re-sent with the user's own model, and the proxy carries on with the new
stream, so the user iterates one stream that simply worked. The re-send is written once
(:func:`_resend`, a generator that yields each step that may have to be awaited) and driven by
a sync and an async driver. The SDK's ``.stream()`` helpers keep the stream's ``response`` from
the start and close that: the proxy hands them a response whose ``close`` closes the proxy, so
whatever stream it carries by then is closed and the span ends.

Raw responses (``with_raw_response`` / ``with_streaming_response``). We never call ``parse()``
ourselves (it can raise, and it is the user's to call). A raw response whose body is already
read is read from the HTTP body bytes and finished at once; otherwise a proxy finishes the call
when the user parses it (a stream then takes over), when the response is closed (the SDK's
context manager does that), or when it is garbage-collected.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import wrapt

from ._call import Call, StreamEnd
from ._guard import Untraced
from ._usage import parse_json_body, read_response

if TYPE_CHECKING:
    from ._sdk import SdkTypes

Resend = Generator[Any, Any, tuple[Any, Call | None]]
"""A re-send's steps: each yielded value is sent back as is (sync) or awaited first (async);
it returns the new stream and the call that carries it (``None``: sent untraced)."""


def deliver(call: Call, result: Any) -> Any:
    """What the user gets for the SDK's ``result``: a proxy that will finish ``call`` (a
    stream, a raw response not read yet), else ``result`` itself with ``call`` finished.

    A streamed request's result is a stream even when it is not the SDK's own class: another
    instrumentation below llmmeter may hand back a wrapper of its own (a plain class, or an
    object proxy that defines both the sync and the async iterator methods). The proxy then
    still hides the usage chunk llmmeter asked for, and follows the call's own sync or async
    side, never the wrapper's methods."""
    try:  # every call passes here: a bare try costs less than a guard site's with
        sdk = call.runtime.sdk
        if sdk is not None:
            if isinstance(result, sdk.raw_responses):
                return wrap_raw_response(result, call, sdk)
            if isinstance(result, sdk.streams) or _is_stream(call, result):
                return wrap_stream(result, call)
        call.take(result)
    except Exception as exc:
        if not call.runtime.guard.handle("call.result", exc):
            raise
    return result


def _is_stream(call: Call, result: Any) -> bool:
    """A streamed request's result that iterates chunks on the call's side (sync or async)."""
    if call.kwargs.get("stream") is not True:
        return False
    return hasattr(type(result), "__anext__" if call.target.is_async else "__next__")


# --- streams -------------------------------------------------------------------------------


class _StreamProxy(wrapt.BaseObjectProxy[Any]):
    """The lifecycle both proxies share; the SDK stream is ``__wrapped__``."""

    def __init__(self, stream: Any, call: Call) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_shown = False

    def _self_adopt(self, stream: Any, call: Call | None) -> None:
        """Carry on with the fallback's stream (already sent) under the fallback's call
        (``None``: the re-send went out untraced; the ended call stays)."""
        self.__wrapped__ = stream
        if call is not None:
            self._self_call = call

    def _self_end(self, how: StreamEnd, error: BaseException | None = None) -> None:
        self._self_call.end_stream(how, error)

    def __del__(self) -> None:
        call: Call | None = getattr(self, "_self_call", None)
        if call is not None and not call.finished:
            call.end_stream("abandoned")


class StreamProxy(_StreamProxy):
    """Stands in for ``openai.Stream``."""

    def __iter__(self) -> Iterator[Any]:
        # A generator, as the SDK's own ``Stream.__iter__`` is: resuming one costs far less
        # than a call to the proxy's ``__next__``, whose every attribute goes through wrapt.
        return self._self_iterate()

    def _self_iterate(self) -> Iterator[Any]:
        """``__next__``'s loop for ``for``: per chunk, the SDK's ``__next__``, the call's
        ``on_chunk`` and a local flag. The generator holds the proxy, so a loop left early
        drops both and the span ends as abandoned, as after ``next()``."""
        shown = self._self_shown
        while True:
            stream = self.__wrapped__
            call = self._self_call
            next_chunk = stream.__next__
            on_chunk = call.on_chunk
            while True:
                try:
                    chunk = next_chunk()
                except StopIteration:
                    self._self_end("exhausted")
                    return
                except BaseException as exc:
                    if self._self_shown or not call.stream_falls_back(exc):
                        self._self_end("error", exc)
                        raise
                    failure = exc
                    break
                if on_chunk(chunk):
                    if not shown:
                        shown = self._self_shown = True
                    yield chunk
            # Outside the except block: the re-send's own error carries no context of ours.
            # Only before anything was shown: this generator never resumes a stale stream.
            self._self_adopt(*_run(_resend(call, stream, failure)))
            # The suspended frame must not keep the error: its traceback holds this frame,
            # and that cycle outlived gc.collect() in tests (with the proxy and both calls).
            del failure

    def __next__(self) -> Any:
        while True:
            stream = self.__wrapped__
            call = self._self_call
            try:
                chunk = stream.__next__()
            except StopIteration:
                self._self_end("exhausted")
                raise
            except BaseException as exc:
                if self._self_shown or not call.stream_falls_back(exc):
                    self._self_end("error", exc)
                    raise
                failure = exc
            else:
                if call.on_chunk(chunk):
                    self._self_shown = True
                    return chunk
                continue
            # Outside the except block: the re-send's own error carries no context of ours.
            self._self_adopt(*_run(_resend(call, stream, failure)))

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_end("closed")

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end("closed")


class AsyncStreamProxy(_StreamProxy):
    """Stands in for ``openai.AsyncStream``; ``close()`` stays a coroutine, as in the SDK."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        while True:
            stream = self.__wrapped__
            call = self._self_call
            try:
                chunk = await stream.__anext__()
            except StopAsyncIteration:
                self._self_end("exhausted")
                raise
            except BaseException as exc:
                if self._self_shown or not call.stream_falls_back(exc):
                    self._self_end("error", exc)
                    raise
                failure = exc
            else:
                if call.on_chunk(chunk):
                    self._self_shown = True
                    return chunk
                continue
            self._self_adopt(*await _run_async(_resend(call, stream, failure)))

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_end("closed")

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end("closed")

    @property
    def aclose(self) -> Callable[[], Awaitable[None]]:
        """openai 3.x's alias of ``close()``; absent where the SDK stream has none (1.x, 2.x),
        so ``getattr(stream, "aclose", None)`` answers as without llmmeter."""
        if not hasattr(self.__wrapped__, "aclose"):
            raise AttributeError(f"{type(self.__wrapped__).__name__!r} has no attribute 'aclose'")
        return self._self_aclose

    async def _self_aclose(self) -> None:
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_end("closed")


def close_with_helper(helper: Any) -> Any:
    """The stream proxy a ``.stream()`` helper reads, if llmmeter made it: to close when the
    helper closes. The helper closes the HTTP response it kept from the start, which is the
    SDK's own object (``stream.response`` is never replaced), so the proxy is closed too: its
    span ends, and after a fallback, the stream it carries now is closed as well."""
    stream = getattr(helper, "_raw_stream", None)
    return stream if isinstance(stream, _StreamProxy) else None


def wrap_stream(stream: Any, call: Call) -> Any:
    """The proxy for a stream: async for the SDK's async methods. Decided by the method, not
    by the stream: another instrumentation's wrapper may define both iterator protocols."""
    if call.target.is_async:
        return AsyncStreamProxy(stream, call)
    return StreamProxy(stream, call)


# --- a routed stream's re-send, written once -------------------------------------------------


def _resend(call: Call, failed: Any, failure: BaseException) -> Resend:
    """Close the failed stream and send the request again with the user's own model.

    Each step that is a coroutine with an async client (closing the stream, sending, a raw
    response's ``parse()``) is yielded: the sync driver gets its result at once and sends it
    back, the async driver awaits it first and sends back the result or throws the error in.
    """
    with call.runtime.guard.site("stream.fallback"):
        yield failed.close()
    again = call.reopen_stream(failure)
    invoke = call.invoke
    assert invoke is not None
    sdk = call.runtime.sdk
    if isinstance(again, Untraced):  # our re-send failed to set up: send it bare
        stream = yield invoke(**call.original_kwargs)
        if sdk is not None and sdk.is_raw(stream):
            stream = yield stream.parse()
        return stream, None
    again.enter()
    try:
        while True:
            try:
                stream = yield invoke(**again.kwargs)
                break
            except Exception as exc:
                if not again.retry_without_injection(exc):
                    raise
        if sdk is not None and sdk.is_raw(stream):  # the user parsed a raw response into it
            stream = yield stream.parse()
    except BaseException as exc:  # cancellation too: the re-send's span ends, context reset
        again.leave()
        again.on_error(exc)
        raise
    again.leave()
    return stream, again


def _run(steps: Resend) -> tuple[Any, Call | None]:
    """Drive a re-send with a sync client: every step has already run when yielded."""
    value = None
    try:
        while True:
            value = steps.send(value)
    except StopIteration as done:
        result: tuple[Any, Call | None] = done.value
        return result


async def _run_async(steps: Resend) -> tuple[Any, Call | None]:
    """Drive a re-send with an async client: await each step, then hand back its result or
    throw its error in where the step was yielded."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:
                step = steps.send(value)
            else:
                # Thrown outside any except block: the error keeps its own context only. Not
                # kept in this frame, which its traceback holds (a cycle for the collector).
                thrown, error = error, None
                try:
                    step = steps.throw(thrown)
                finally:
                    del thrown
        except StopIteration as done:
            result: tuple[Any, Call | None] = done.value
            return result
        try:
            value = (await step) if inspect.isawaitable(step) else step
        except BaseException as exc:
            error = exc


# --- raw responses --------------------------------------------------------------------------


def _read_body(call: Call, http_response: Any) -> None:
    """Read usage from a body that is already in memory; never forces a read."""
    try:
        content = http_response.content
    except Exception:  # httpx raises ResponseNotRead: the user streamed it, nothing to read
        return
    if isinstance(content, bytes) and content:
        body = parse_json_body(content)
        read_response(call.target.endpoint, body, call.outcome, capture=call.capture)


class _RawProxy(wrapt.BaseObjectProxy[Any]):
    def __init__(self, response: Any, call: Call) -> None:
        super().__init__(response)
        self._self_call = call
        self._self_parsed: tuple[Any, Any] | None = None

    def _self_take(self, parsed: Any) -> Any:
        """Hand the parsed result to the call; the same parse gives the same proxy."""
        if self._self_parsed is not None and self._self_parsed[0] is parsed:
            return self._self_parsed[1]
        out = deliver(self._self_call, parsed)
        self._self_parsed = (parsed, out)
        return out

    def _self_end(self, how: StreamEnd) -> None:
        call = self._self_call
        if call.finished:
            return
        with call.runtime.guard.site("raw.end"):
            if call.kwargs.get("stream") is not True:
                _read_body(call, self.__wrapped__.http_response)
        call.end_stream(how)

    def __del__(self) -> None:
        call: Call | None = getattr(self, "_self_call", None)
        # Once parsed, the parsed result (a stream proxy, or nothing left to do) owns the end:
        # `create(stream=True).parse()` drops this proxy while the stream is still being read.
        if call is not None and not call.finished and self._self_parsed is None:
            self._self_end("abandoned")


class RawResponseProxy(_RawProxy):
    """``LegacyAPIResponse`` of a streamed request, and the sync ``APIResponse``."""

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_take(self.__wrapped__.parse(*args, **kwargs))

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end("closed")


class AsyncRawResponseProxy(_RawProxy):
    """``AsyncAPIResponse``: ``parse()`` and ``close()`` stay coroutines."""

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_take(await self.__wrapped__.parse(*args, **kwargs))

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end("closed")


def wrap_raw_response(result: Any, call: Call, sdk: SdkTypes) -> Any:
    """Finish now if the body is in memory, else return the proxy that will."""
    streamed = call.kwargs.get("stream") is True
    if isinstance(result, sdk.legacy_response) and not streamed:
        with call.runtime.guard.site("raw.read"):  # whatever the body, the span ends
            _read_body(call, result.http_response)
        call.finish()
        return result
    if isinstance(result, sdk.async_api_response):
        return AsyncRawResponseProxy(result, call)
    return RawResponseProxy(result, call)
