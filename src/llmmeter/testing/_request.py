"""The parsed request every endpoint builder receives, and rules they share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from . import _errors
from ._cache import PromptCache
from ._catalog import ModelInfo
from ._text import Prompt

#: Reasoning tokens a reasoning model spends at each effort (a fixed, documented table).
EFFORT_TOKENS = {"none": 0, "minimal": 8, "low": 32, "medium": 64, "high": 192, "xhigh": 384}


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A stored Responses prompt (``prompt={"id": ...}``): its model and message templates."""

    model: str
    developer: str = ""
    user: str = ""


@dataclass(slots=True)
class Context:
    """One request as the builders see it: body, resolved model and server state."""

    body: dict[str, Any]
    model: ModelInfo
    reply: str
    cache: PromptCache
    azure: bool = False
    force_usage: bool = False
    """Streams carry the usage chunk even when the request did not ask for it."""
    created: int = field(default_factory=lambda: int(time.time()))

    def flag(self, name: str) -> bool:
        return self.body.get(name) is True

    @property
    def streaming(self) -> bool:
        return self.flag("stream")

    @property
    def stream_usage(self) -> bool:
        """A stream ends with the usage chunk: asked for, or forced by the server."""
        return self.force_usage or self.stream_option("include_usage", False)

    def stream_option(self, name: str, default: bool) -> bool:
        options = self.body.get("stream_options")
        if isinstance(options, dict) and isinstance(options.get(name), bool):
            return bool(options[name])
        return default

    def reasoning_effort(self, requested: Any) -> str:
        if not self.model.reasoning:
            return "none"
        if isinstance(requested, str) and requested in EFFORT_TOKENS:
            return requested
        return self.model.default_effort

    def cache_usage(self, prompt: Prompt) -> tuple[int, int | None]:
        """``(cached_tokens, cache_write_tokens or None when caching is automatic)``."""
        key = self.body.get("prompt_cache_key")
        scope = f"{self.model.snapshot}\x00{key if isinstance(key, str) else ''}"
        options = self.body.get("prompt_cache_options")
        if isinstance(options, dict) and options.get("mode") == "explicit":
            return self.cache.explicit(scope, prompt)
        return self.cache.automatic(scope, prompt), None


def check_temperature(body: dict[str, Any]) -> None:
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        error = _errors.out_of_range(name, body.get(name), low, high)
        if error is not None:
            raise error


def output_limit(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            error = _errors.out_of_range(name, value, 1, 1 << 31)
            if error is not None:
                raise error
            return value
    return None


def field_bool(body: dict[str, Any], name: str) -> bool:
    """A boolean from a JSON body (``true``) or a form (``"true"``)."""
    value = body.get(name)
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def field_int(body: dict[str, Any], name: str, default: int) -> int:
    """An integer from a JSON body or a form (sent as its decimal string)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _errors.invalid_request(
        f"Invalid type for '{name}': expected an integer, but got {_json_type(value)} instead.",
        param=name,
        code="invalid_type",
    )


def field_str(body: dict[str, Any], name: str, default: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else default


def field_list(body: dict[str, Any], name: str) -> list[str]:
    """A list of strings (JSON array or repeated ``name[]`` form fields)."""
    value = body.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"
