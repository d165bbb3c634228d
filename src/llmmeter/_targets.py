"""The table of OpenAI SDK methods llmmeter patches, and how to read their requests.

Adding an endpoint means adding rows to :data:`TARGETS`. Module paths name the package that
exports the resource class (``openai.resources.chat.completions``), which works for every
openai layout from 1.x to 3.x. Each module is patched when the SDK first imports it (openai
imports its resources on first use), so a row costs nothing until the application uses that
endpoint, and a module the installed SDK lacks is simply never seen. A row whose class or
method a given SDK version lacks is skipped, logged at debug level.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import _semconv as sc
from ._usage import AUDIO, CHAT, COMPLETIONS, EMBEDDINGS, IMAGES, RESPONSES, Endpoint

AttributeValue = str | bool | int | float | list[str]

logger = logging.getLogger("llmmeter")


@dataclass(frozen=True, slots=True)
class Target:
    """One patched SDK method."""

    module: str
    qualname: str
    operation: str
    endpoint: Endpoint
    is_async: bool
    retrieve: bool = False
    """True for ``Responses.retrieve``: keyed by response id, counted once per id."""

    @property
    def api_type(self) -> str | None:
        return _API_TYPES.get(self.endpoint)


_EMBED: Final = "embeddings"
_TEXT: Final = "text_completion"
_GENERATE: Final = "generate_content"
_API_TYPES: Final = {CHAT: "chat_completions", RESPONSES: "responses"}

_SYNC_ASYNC: Final = {
    "completions": ("Completions", "AsyncCompletions"),
    "responses": ("Responses", "AsyncResponses"),
    "embeddings": ("Embeddings", "AsyncEmbeddings"),
    "images": ("Images", "AsyncImages"),
    "transcriptions": ("Transcriptions", "AsyncTranscriptions"),
}

# fmt: off
_ROWS: Final[tuple[tuple[str, str, str, str, Endpoint], ...]] = (
    # module                                  classes           method      operation, endpoint
    # Chat Completions. `.stream()` calls `create(stream=True)`, so it is deliberately absent.
    ("openai.resources.chat.completions",      "completions",    "create",   "chat", CHAT),
    ("openai.resources.chat.completions",      "completions",    "parse",    "chat", CHAT),
    # Early openai 1.x kept parse under beta (later versions alias client.beta.chat to chat).
    ("openai.resources.beta.chat.completions", "completions",    "parse",    "chat", CHAT),
    # Responses: `.stream()` goes through `create`/`retrieve`; `parse` posts directly.
    ("openai.resources.responses",             "responses",      "create",   "chat", RESPONSES),
    ("openai.resources.responses",             "responses",      "parse",    "chat", RESPONSES),
    ("openai.resources.responses",             "responses",      "retrieve", "chat", RESPONSES),
    ("openai.resources.beta.responses",        "responses",      "create",   "chat", RESPONSES),
    ("openai.resources.beta.responses",        "responses",      "retrieve", "chat", RESPONSES),
    ("openai.resources.embeddings",            "embeddings",     "create",   _EMBED, EMBEDDINGS),
    ("openai.resources.completions",           "completions",    "create",   _TEXT, COMPLETIONS),
    # Other endpoints whose responses carry token usage.
    ("openai.resources.images",                "images",         "generate", _GENERATE, IMAGES),
    ("openai.resources.images",                "images",         "edit",     _GENERATE, IMAGES),
    ("openai.resources.audio.transcriptions",  "transcriptions", "create",   _GENERATE, AUDIO),
)
# fmt: on

TARGETS: Final[tuple[Target, ...]] = tuple(
    Target(
        module=module,
        qualname=f"{cls}.{method}",
        operation=operation,
        endpoint=endpoint,
        is_async=cls.startswith("Async"),
        retrieve=method == "retrieve",
    )
    for module, classes, method, operation, endpoint in _ROWS
    for cls in _SYNC_ASYNC[classes]
)
"""Every patched method, sync and async twins, from the rows above."""

ATTEMPT_HOOK: Final = ("openai._base_client", "BaseClient._build_request")
"""Called once per HTTP attempt inside the SDK's retry loop: how we count its retries."""


# --- reading a request -----------------------------------------------------------------


def given(value: Any) -> bool:
    """False for None and the SDK's ``NOT_GIVEN``/``omit`` sentinels (falsy, own types)."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def wire_model(kwargs: Mapping[str, Any]) -> str | None:
    """The model that goes on the wire: ``extra_body["model"]`` overrides ``model``."""
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        model = extra.get("model")
        if isinstance(model, str):
            return model
    model = kwargs.get("model")
    return model if isinstance(model, str) else None


def asks_stream_options(kwargs: Mapping[str, Any]) -> bool:
    """The user set ``stream_options`` (directly or through ``extra_body``)."""
    extra = kwargs.get("extra_body")
    return given(kwargs.get("stream_options")) or (
        isinstance(extra, Mapping) and given(extra.get("stream_options"))
    )


_NUMERIC: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
)
_MAX_TOKENS_KEYS: Final = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def request_attributes(endpoint: str, kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Semconv request attributes from the call's keyword arguments (no content)."""
    attrs: dict[str, AttributeValue] = {}
    for key, name in _NUMERIC:
        value = kwargs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[name] = value
    for key in _MAX_TOKENS_KEYS:
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = value
            break
    seed = kwargs.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        attrs[sc.GEN_AI_REQUEST_SEED] = seed
    n = kwargs.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    if kwargs.get("stream") is True:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    tier = kwargs.get("service_tier")
    if isinstance(tier, str):
        attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = tier
    if endpoint == EMBEDDINGS:
        fmt = kwargs.get("encoding_format")
        if isinstance(fmt, str):
            attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [fmt]
        dims = kwargs.get("dimensions")
        if isinstance(dims, int) and not isinstance(dims, bool):
            attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dims
    output_type = _output_type(endpoint, kwargs)
    if output_type is not None:
        attrs[sc.GEN_AI_OUTPUT_TYPE] = output_type
    conversation = kwargs.get("conversation")
    if isinstance(conversation, str):
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation
    elif isinstance(conversation, Mapping) and isinstance(conversation.get("id"), str):
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation["id"]
    return attrs


def _output_type(endpoint: str, kwargs: Mapping[str, Any]) -> str | None:
    if endpoint == CHAT:
        fmt = kwargs.get("response_format")
        if isinstance(fmt, Mapping):
            kind = fmt.get("type")
        elif isinstance(fmt, type):  # parse(response_format=PydanticModel)
            kind = "json_schema"
        else:
            kind = None
    elif endpoint == RESPONSES:
        text = kwargs.get("text")
        fmt = text.get("format") if isinstance(text, Mapping) else None
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        if kind is None and isinstance(kwargs.get("text_format"), type):
            kind = "json_schema"
    else:
        return None
    if kind in ("json_schema", "json_object"):
        return "json"
    if kind == "text":
        return "text"
    return None


# --- content (only when the user opted in) ---------------------------------------------


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
