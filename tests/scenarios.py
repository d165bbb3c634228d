"""Each call scenario written once, run sync or async, plain or streamed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENDPOINTS: dict[str, tuple[Callable[[Any], Any], dict[str, Any]]] = {
    "chat": (
        lambda c: c.chat.completions.create,
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]},
    ),
    "responses": (lambda c: c.responses.create, {"model": "gpt-4o-mini", "input": "Say hello"}),
    "completions": (
        lambda c: c.completions.create,
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello"},
    ),
    "embeddings": (
        lambda c: c.embeddings.create,
        {"model": "text-embedding-3-small", "input": "hello"},
    ),
}


@dataclass
class Result:
    """What the user got: the response object, or the list of chunks a stream yielded."""

    value: Any
    chunks: list[Any] | None


def run(
    openai: Any,
    base_url: str,
    mode: str,
    method: Callable[[Any], Any],
    kwargs: dict[str, Any],
    *,
    max_retries: int = 0,
) -> Result:
    """Make one call with a fresh sync or async client; drain a stream fully."""
    stream = kwargs.get("stream") is True
    if mode == "sync":
        with openai.OpenAI(base_url=base_url, api_key="sk-test-key", max_retries=max_retries) as c:
            value = method(c)(**kwargs)
            return Result(value, list(value) if stream else None)

    async def go() -> Result:
        c = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test-key", max_retries=max_retries)
        try:
            value = await method(c)(**kwargs)
            return Result(value, [chunk async for chunk in value] if stream else None)
        finally:
            await c.close()

    return asyncio.run(go())
