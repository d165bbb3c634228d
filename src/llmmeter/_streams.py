"""Stream proxies: what the user iterates is exactly what the SDK yields, and the span ends once.

One lifecycle shared by sync and async: a stream finishes on exhaustion, on error, on
``close()``, on context-manager exit, or — if the user abandons it — when the proxy is
garbage-collected. Only ``__next__``/``__anext__``, ``close`` and the context-manager methods
differ between the two proxies. The iterator, async-iterator and context-manager methods are
defined explicitly (proxies forward attributes, not protocol slots), and ``__enter__`` returns
the proxy so the user keeps iterating through it.

Every chunk passes through here, so the sync proxy's ``iter()`` is a generator (as the SDK's own
``Stream.__iter__`` is) running ``__next__``'s loop: resuming it costs less than calling
``__next__``, each of whose attribute reads goes through wrapt. ``next()`` keeps ``__next__``.

A routed stream that fails before any chunk reached the user falls back: the failed stream is
closed, the request is re-sent with the user's own model, and the proxy carries on with the new
stream, so the user iterates one stream that simply worked. The SDK's ``.stream()`` helpers
keep the stream's ``response`` from the start and close that: the proxy hands them a response
whose ``close`` closes the proxy, so whatever stream it carries by then is closed and the span
ends.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import wrapt

from ._guard import Untraced

if TYPE_CHECKING:
    from ._call import Call, StreamEnd


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
            self._self_fall_back(stream, call, failure)
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
            self._self_fall_back(stream, call, failure)

    def _self_fall_back(self, failed: Any, call: Call, failure: BaseException) -> None:
        with call.runtime.guard.site("stream.fallback"):
            failed.close()
        again = call.reopen_stream(failure)
        invoke = call.invoke
        assert invoke is not None
        if isinstance(again, Untraced):  # our re-send failed to set up: send it bare
            stream = invoke(**call.original_kwargs)
            self._self_adopt(stream.parse() if call.is_raw(stream) else stream, None)
            return
        again.enter()
        try:
            while True:
                try:
                    stream = invoke(**again.kwargs)
                    break
                except Exception as exc:
                    if not again.retry_without_injection(exc):
                        raise
            if again.is_raw(stream):  # the user parsed a raw response into this stream
                stream = stream.parse()
        except BaseException as exc:
            again.leave()
            again.on_error(exc)
            raise
        again.leave()
        self._self_adopt(stream, again)

    @property
    def response(self) -> Any:
        return _Response(self.__wrapped__.response, self)

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
            await self._self_fall_back(stream, call, failure)

    async def _self_fall_back(self, failed: Any, call: Call, failure: BaseException) -> None:
        with call.runtime.guard.site("stream.fallback"):
            await failed.close()
        again = call.reopen_stream(failure)
        invoke = call.invoke
        assert invoke is not None
        if isinstance(again, Untraced):  # our re-send failed to set up: send it bare
            stream = await invoke(**call.original_kwargs)
            if call.is_raw(stream):
                stream = stream.parse()
                if inspect.isawaitable(stream):
                    stream = await stream
            self._self_adopt(stream, None)
            return
        again.enter()
        try:
            while True:
                try:
                    stream = await invoke(**again.kwargs)
                    break
                except Exception as exc:
                    if not again.retry_without_injection(exc):
                        raise
            if again.is_raw(stream):  # the user parsed a raw response into this stream
                stream = stream.parse()
                if inspect.isawaitable(stream):
                    stream = await stream
        except BaseException as exc:  # cancellation too: the re-send's span ends, context reset
            again.leave()
            again.on_error(exc)
            raise
        again.leave()
        self._self_adopt(stream, again)

    @property
    def response(self) -> Any:
        return _AsyncResponse(self.__wrapped__.response, self)

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


class _Response(wrapt.BaseObjectProxy[Any]):
    """A sync stream's HTTP response as the ``.stream()`` helpers keep it: ``close()`` closes
    the proxy (the stream it carries now, after a fallback too) and ends the span. It holds
    the proxy weakly: keeping the response never keeps an abandoned stream alive."""

    def __init__(self, response: Any, proxy: StreamProxy) -> None:
        super().__init__(response)
        self._self_proxy = weakref.ref(proxy)

    def close(self) -> None:
        proxy = self._self_proxy()
        if proxy is None:
            self.__wrapped__.close()
        else:
            proxy.close()


class _AsyncResponse(wrapt.BaseObjectProxy[Any]):
    """An async stream's HTTP response: ``aclose()`` closes the proxy and ends the span."""

    def __init__(self, response: Any, proxy: AsyncStreamProxy) -> None:
        super().__init__(response)
        self._self_proxy = weakref.ref(proxy)

    async def aclose(self) -> None:
        proxy = self._self_proxy()
        if proxy is None:
            await self.__wrapped__.aclose()
        else:
            await proxy.close()


def wrap_stream(stream: Any, call: Call) -> Any:
    """The proxy for an SDK stream: async when the stream is async-iterable."""
    if hasattr(type(stream), "__anext__"):
        return AsyncStreamProxy(stream, call)
    return StreamProxy(stream, call)
