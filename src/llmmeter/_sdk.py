"""The few openai SDK classes llmmeter must recognise, loaded only once openai is imported.

Kept apart so ``import llmmeter`` never imports openai: :func:`load` runs from the
post-import hook, when the application has imported openai itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("llmmeter")


@dataclass(frozen=True, slots=True)
class SdkTypes:
    """Classes of the installed openai SDK (1.x, 2.x or 3.x)."""

    stream: type[Any]
    async_stream: type[Any]
    legacy_response: type[Any]
    """``with_raw_response`` results: body already read (unless streaming), sync ``parse()``."""
    api_response: type[Any]
    """``with_streaming_response`` results (sync): body not read until the user reads it."""
    async_api_response: type[Any]
    status_error: type[Any]
    api_error: type[Any]
    """``APIError``: every error about a request the SDK sent, the server's answers included."""
    connection_error: type[Any]
    """``APIConnectionError`` (and its ``APITimeoutError``): no answer; the SDK's own text."""
    streams: tuple[type[Any], ...] = ()
    """``stream`` and ``async_stream``, for one ``isinstance``."""
    raw_responses: tuple[type[Any], ...] = ()
    """The three raw-response classes, for one ``isinstance``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", (self.stream, self.async_stream))
        object.__setattr__(
            self,
            "raw_responses",
            (self.legacy_response, self.api_response, self.async_api_response),
        )

    def is_raw(self, result: Any) -> bool:
        """``result`` is a raw response (``with_raw_response`` / ``with_streaming_response``),
        whose ``parse()`` gives the SDK's usual result (a stream, for a streamed request)."""
        return isinstance(result, self.raw_responses)


def load() -> SdkTypes:
    """Import the SDK classes (openai is already imported when this runs)."""
    import openai
    from openai import _legacy_response, _response

    _settle_httpx2()

    return SdkTypes(
        stream=openai.Stream,
        async_stream=openai.AsyncStream,
        legacy_response=_legacy_response.LegacyAPIResponse,
        api_response=_response.APIResponse,
        async_api_response=_response.AsyncAPIResponse,
        status_error=openai.APIStatusError,
        api_error=openai.APIError,
        connection_error=openai.APIConnectionError,
    )


def given(value: Any) -> bool:
    """False for None and the SDK's ``NOT_GIVEN``/``omit`` sentinels (falsy, own types)."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def status_code(exc: BaseException, sdk: SdkTypes) -> int | None:
    """The HTTP status of an SDK error, or None for anything else."""
    if isinstance(exc, sdk.status_error):
        code = getattr(exc, "status_code", None)
        return code if isinstance(code, int) else None
    return None


def rejects_stream_options(exc: BaseException, sdk: SdkTypes) -> bool:
    """A 400 that names ``stream_options``: the server does not support usage in streams."""
    if status_code(exc, sdk) != 400:
        return False
    body = getattr(exc, "body", None)
    param = body.get("param") if isinstance(body, dict) else None
    return param == "stream_options" or "stream_options" in str(getattr(exc, "message", ""))


def _settle_httpx2() -> None:
    """Import httpx2 now if the SDK peeks at it: later, a first call would import it under
    other threads' calls.

    openai 2.x looks ``httpx2`` up in ``sys.modules`` on every response without importing it,
    and the price data (genai-prices, loaded at the first priced call) imports httpx2. A module
    is in ``sys.modules`` before its import finishes, so while the first call's thread imports
    it, the SDK hands the other threads a half-built module: 38 of 64 threads' first calls
    failed with AttributeError. Here, at ``instrument()`` or at the application's import of
    openai, no call is in flight yet; it costs ~9 ms, and only with such an SDK (openai 1.x
    never peeks, 3.x imports httpx2 itself).
    """
    if "httpx2" in sys.modules or "openai._httpx2" not in sys.modules:
        return
    try:
        if importlib.util.find_spec("httpx2") is not None:
            importlib.import_module("httpx2")
    except Exception:  # a broken httpx2 is the SDK's to report, at its own import
        logger.debug("llmmeter: could not import httpx2 ahead of the first call", exc_info=True)
