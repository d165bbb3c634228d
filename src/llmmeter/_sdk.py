"""The few openai SDK classes llmmeter must recognise, loaded only once openai is imported.

Kept apart so ``import llmmeter`` never imports openai: :func:`load` runs from the
post-import hook, when the application has imported openai itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def load() -> SdkTypes:
    """Import the SDK classes (openai is already imported when this runs)."""
    import openai
    from openai import _legacy_response, _response

    return SdkTypes(
        stream=openai.Stream,
        async_stream=openai.AsyncStream,
        legacy_response=_legacy_response.LegacyAPIResponse,
        api_response=_response.APIResponse,
        async_api_response=_response.AsyncAPIResponse,
        status_error=openai.APIStatusError,
    )


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
