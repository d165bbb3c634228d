"""Prompts and completions on spans: only when the user opted in, redacted, bounded.

Content capture is off by default (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
When on, the request's messages and the answer become GenAI ``gen_ai.input.messages`` /
``gen_ai.output.messages`` JSON: text is copied, images, audio and files are only named; the
user's ``redact`` hook runs on every content string first (a failing hook drops the text, never
leaks it), and the JSON is cut to ``content_max_length`` characters.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from ._usage import CHAT, COMPLETIONS, RESPONSES

logger = logging.getLogger("llmmeter")


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, (list, tuple)):
        for item in content:
            if not isinstance(item, Mapping):
                continue
            kind = item.get("type")
            if kind in ("text", "input_text", "output_text"):
                parts.append({"type": "text", "content": item.get("text")})
            elif isinstance(kind, str):
                # Images, audio and files are never copied into telemetry, only named.
                parts.append({"type": kind})
    return parts


def input_messages(endpoint: str, kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's prompt as GenAI ``gen_ai.input.messages``."""
    messages: list[dict[str, Any]] = []
    if endpoint == CHAT:
        for message in kwargs.get("messages") or ():
            if not isinstance(message, Mapping):
                continue
            out: dict[str, Any] = {
                "role": message.get("role"),
                "parts": _text_parts(message.get("content")),
            }
            for call in message.get("tool_calls") or ():
                if isinstance(call, Mapping):
                    function = call.get("function") or {}
                    out["parts"].append(
                        {
                            "type": "tool_call",
                            "id": call.get("id"),
                            "name": function.get("name"),
                            "arguments": function.get("arguments"),
                        }
                    )
            if message.get("role") == "tool":
                out["parts"] = [
                    {
                        "type": "tool_call_response",
                        "id": message.get("tool_call_id"),
                        "response": message.get("content"),
                    }
                ]
            messages.append(out)
    elif endpoint == RESPONSES:
        value = kwargs.get("input")
        if isinstance(value, str):
            messages.append({"role": "user", "parts": _text_parts(value)})
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, Mapping) and "role" in item:
                    messages.append(
                        {"role": item.get("role"), "parts": _text_parts(item.get("content"))}
                    )
                elif isinstance(item, Mapping) and item.get("type") == "function_call_output":
                    messages.append(
                        {
                            "role": "tool",
                            "parts": [
                                {
                                    "type": "tool_call_response",
                                    "id": item.get("call_id"),
                                    "response": item.get("output"),
                                }
                            ],
                        }
                    )
    elif endpoint == COMPLETIONS:
        prompt = kwargs.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if isinstance(prompts, (list, tuple)):
            messages.extend(
                {"role": "user", "parts": _text_parts(p)} for p in prompts if isinstance(p, str)
            )
    return messages


def system_instructions(endpoint: str, kwargs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Responses ``instructions`` as GenAI ``gen_ai.system_instructions``."""
    if endpoint == RESPONSES and isinstance(kwargs.get("instructions"), str):
        return _text_parts(kwargs["instructions"])
    return []


def truncated_json(value: Any, limit: int) -> str:
    """Serialise content for an attribute, cut to ``limit`` characters (documented)."""
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    if len(text) <= limit:
        return text
    marker = "...[truncated]"
    return text[: max(0, limit - len(marker))] + marker


REDACTION_FAILED: Final = "[redaction failed]"
"""What a content string becomes when the user's ``redact`` hook raises or returns a non-str."""

_CONTENT_KEYS: Final = frozenset({"content", "arguments", "response"})


class Redactor:
    """The user's ``redact(text) -> str`` hook, made safe: it never raises into a call.

    A hook that raises (or returns something other than a str) drops that text: the result is
    :data:`REDACTION_FAILED`, never the raw text. The first failure is logged (the exception
    type only: its message may quote the text), once per ``instrument()``.
    """

    __slots__ = ("_failed", "_hook", "_lock")

    def __init__(self, hook: Callable[[str], str]) -> None:
        self._hook = hook
        self._failed = False
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        try:
            result = self._hook(text)
        except Exception as exc:  # the user's hook must not break the call
            self._report(type(exc).__name__)
            return REDACTION_FAILED
        if not isinstance(result, str):
            self._report(f"returned {type(result).__name__}, not str")
            return REDACTION_FAILED
        return result

    def _report(self, why: str) -> None:
        with self._lock:
            if self._failed:
                return
            self._failed = True
        logger.warning(
            "llmmeter: the redact hook failed (%s); content it could not redact is recorded "
            "as %r (logged once)",
            why,
            REDACTION_FAILED,
        )


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v, redact) for v in value]
    # Anything else would be serialised with str(): redact that text instead.
    return redact(str(value))


def _redacted_item(item: Any, redact: Callable[[str], str]) -> Any:
    if not isinstance(item, Mapping):
        return _redacted(item, redact)
    return {
        k: _redacted(v, redact)
        if k in _CONTENT_KEYS
        else [_redacted_item(p, redact) for p in v]
        if k == "parts" and isinstance(v, list)
        else v
        for k, v in item.items()
    }


def redacted(items: list[dict[str, Any]], redact: Callable[[str], str]) -> list[dict[str, Any]]:
    """Copies of GenAI messages (or parts) with ``redact`` applied to every content string.

    Content is a part's ``content`` (text, refusals), a tool call's ``arguments`` and a tool
    response's ``response``, at any depth; roles, types, ids and tool names are left as is.
    """
    return [_redacted_item(item, redact) for item in items]


def content_json(
    messages: list[dict[str, Any]], limit: int, redact: Callable[[str], str] | None
) -> str:
    """A content attribute: ``redact`` applied first (when given), then cut to ``limit``."""
    if redact is not None:
        messages = redacted(messages, redact)
    return truncated_json(messages, limit)
