"""``with_raw_response`` / ``with_streaming_response`` results: telemetry without touching
what the user reads.

We never call ``parse()`` ourselves (it can raise, and it is the user's to call). A raw
response whose body is already read is read from the HTTP body bytes and finished at once;
otherwise a proxy finishes the call when the user parses it (a stream then takes over), when
the response is closed (the SDK's context manager does that), or when it is garbage-collected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import wrapt

from ._usage import parse_json_body, read_response

if TYPE_CHECKING:
    from ._call import Call, StreamEnd
    from ._sdk import SdkTypes


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
        out = self._self_call.on_result(parsed)
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
        _read_body(call, result.http_response)
        call.finish()
        return result
    if isinstance(result, sdk.async_api_response):
        return AsyncRawResponseProxy(result, call)
    return RawResponseProxy(result, call)
