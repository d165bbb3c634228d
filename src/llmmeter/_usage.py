"""Reading OpenAI responses, stream chunks and raw HTTP bodies into an :class:`Outcome`.

All knowledge of the shapes the OpenAI API returns lives here, so ``_call.py`` stays
provider-neutral. Readers accept both the SDK's pydantic models and plain dicts (raw HTTP
bodies parsed by us), and tolerate missing fields: older SDKs and other servers omit some.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final, Literal

Endpoint = Literal["chat", "responses", "embeddings", "completions", "images", "audio"]

CHAT: Final = "chat"
RESPONSES: Final = "responses"
EMBEDDINGS: Final = "embeddings"
COMPLETIONS: Final = "completions"
IMAGES: Final = "images"
AUDIO: Final = "audio"
"""Images and audio transcriptions: only their ``usage`` (GPT-image and gpt-4o-transcribe
models report tokens; others report none or seconds, which are not tokens)."""

_CHOICE_ENDPOINTS: Final = frozenset({CHAT, COMPLETIONS})
"""Endpoints whose stream chunks carry ``choices``."""
_RESPONSES_FINAL_EVENTS: Final = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)
_RESPONSES_START_EVENTS: Final = frozenset(
    {"response.created", "response.in_progress", "response.queued"}
)
_RESPONSES_OUTPUT_SUFFIXES: Final = (".delta", ".added")
"""Events that carry model output (the first one sets the time to first chunk)."""


@dataclass(slots=True)
class Usage:
    """Token counts of one call as the API reported them (``None`` = not reported).

    ``input_tokens`` includes cached input and ``output_tokens`` includes reasoning, as the
    OpenAI API counts them and as the GenAI conventions define them. Never changed once
    read, but not frozen: a frozen dataclass's ``__init__`` costs five times as much, and one
    is built on every call.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    # Parts of input/output billed at their own rates where the price data has them.
    input_audio_tokens: int | None = None
    input_image_tokens: int | None = None
    output_audio_tokens: int | None = None
    output_image_tokens: int | None = None


@dataclass(slots=True, init=False)
class Outcome:
    """What a call's response told us; filled incrementally by whole responses or chunks.
    Starts empty (one is built per call: its ``__init__`` is written out, without the
    generated one's parameters and default factory)."""

    response_id: str | None
    response_model: str | None
    service_tier: str | None
    system_fingerprint: str | None
    finish_reasons: dict[int, str]
    usage: Usage | None
    chunks: int
    first_output_at: float | None
    # Only filled when content capture is on: index -> accumulated output message.
    output: dict[int, dict[str, Any]] | None
    # The id and model are known: a stream's later chunks (which repeat them) skip reading
    # them, except the closing ones (a finish reason, usage), read in case a value changed.
    identified: bool

    def __init__(self) -> None:
        self.response_id = self.response_model = None
        self.service_tier = self.system_fingerprint = None
        self.finish_reasons = {}
        self.usage = None
        self.chunks = 0
        self.first_output_at = None
        self.output = None
        self.identified = False


class _Attrs:
    """Attribute access behind ``.get``, for objects that are neither dicts nor SDK models."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def get(self, name: str) -> Any:
        return getattr(self._obj, name, None)


_Fields = dict[str, Any] | _Attrs

_OTHER: Final = 0
_MODEL: Final = 1
_NAMESPACE: Final = 2
_ABSENT: Final = object()
_KINDS: dict[type[Any], int] = {}
_MAX_KINDS: Final = 256
"""Classes whose kind is remembered: the SDK's models are a few dozen, but mocks and odd
servers could bring any number, and remembering each would keep them alive."""


def _kind_of(cls: type[Any]) -> int:
    kind = _KINDS.get(cls)
    if kind is not None:
        return kind
    if cls is SimpleNamespace:
        kind = _NAMESPACE
    elif any(
        k.__module__ == "pydantic.main" and "__pydantic_extra__" in vars(k) for k in cls.__mro__
    ):
        kind = _MODEL  # pydantic 2 (pydantic 1 models read fine through getattr)
    else:
        kind = _OTHER
    if len(_KINDS) < _MAX_KINDS:
        _KINDS[cls] = kind
    return kind


def _fields(obj: Any) -> _Fields:
    """The fields of a response object, chunk or part, to read several names from.

    The SDK's pydantic models keep their declared fields in ``__dict__`` and the fields the
    SDK does not know in ``__pydantic_extra__``; ``getattr`` of a name in neither (a Chat usage
    has no ``input_tokens``, an embeddings response no ``id``) goes through pydantic's
    ``__getattr__``, which raises and catches internally: microseconds per miss. Reading the
    two dicts answers a miss as cheaply as a hit. Parsed bodies are dicts already; anything else
    is read through ``getattr``.
    """
    cls = type(obj)
    if cls is dict:
        plain: dict[str, Any] = obj
        return plain
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _kind_of(cls)
    if kind == _MODEL:
        values: dict[str, Any] = obj.__dict__
        extra = getattr(obj, "__pydantic_extra__", None)
        return {**values, **extra} if type(extra) is dict and extra else values
    if kind == _NAMESPACE:
        namespace: dict[str, Any] = obj.__dict__
        return namespace
    return _Attrs(obj)


def read_field(obj: Any, name: str) -> Any:
    """One field of any shape (see :func:`_fields`); ``None`` when it is absent."""
    if type(obj) is dict:
        return obj.get(name)
    if _kind_of(type(obj)) == _MODEL:
        value = obj.__dict__.get(name, _ABSENT)
        if value is _ABSENT:
            extra = getattr(obj, "__pydantic_extra__", None)
            return extra.get(name) if type(extra) is dict else None
        return value
    return getattr(obj, name, None)


def _int(value: Any) -> int | None:
    """A token count as reported, or ``None`` for anything that is not one (a bool, a
    string, a float, a negative number): never coerced, never invented."""
    if value is None:
        return None
    if type(value) is int:  # the common case; bool is not int here
        return value if value >= 0 else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def read_list(value: Any) -> list[Any] | tuple[Any, ...]:
    """A list field (choices, output, content, tool_calls) as a sequence; anything else
    (missing, ``null``, a number or string where a list belongs) as empty."""
    return value if isinstance(value, (list, tuple)) else ()


def read_usage(usage: Any) -> Usage | None:
    """Normalise a Chat/Completions (``prompt_tokens``) or Responses (``input_tokens``) usage."""
    if usage is None:
        return None
    fields = _fields(usage)
    input_tokens = _int(fields.get("input_tokens"))
    if input_tokens is not None or fields.get("prompt_tokens") is None:
        # Responses, images; transcriptions spell it input_token_details.
        in_details = fields.get("input_tokens_details") or fields.get("input_token_details")
        out_details = fields.get("output_tokens_details")
        output_tokens = _int(fields.get("output_tokens"))
    else:
        input_tokens = _int(fields.get("prompt_tokens"))
        in_details = fields.get("prompt_tokens_details")
        out_details = fields.get("completion_tokens_details")
        output_tokens = _int(fields.get("completion_tokens"))
    if input_tokens is None and output_tokens is None:
        return None  # nothing usable: no tokens, and never a $0 cost made of nothing
    cache_read = cache_creation = input_audio = input_image = None
    if in_details:
        details = _fields(in_details)
        cache_read = _int(details.get("cached_tokens"))
        cache_creation = _int(details.get("cache_write_tokens"))
        input_audio = _int(details.get("audio_tokens"))
        input_image = _int(details.get("image_tokens"))
    if cache_read is None and input_tokens is not None:
        # DeepSeek reports its cache hits beside the counts, not in prompt_tokens_details.
        cache_read = _int(fields.get("prompt_cache_hit_tokens"))
    reasoning = output_audio = output_image = None
    if out_details:
        details = _fields(out_details)
        reasoning = _int(details.get("reasoning_tokens"))
        output_audio = _int(details.get("audio_tokens"))
        output_image = _int(details.get("image_tokens"))
    return Usage(
        input_tokens,
        output_tokens,
        cache_read,
        cache_creation,
        reasoning,
        input_audio,
        input_image,
        output_audio,
        output_image,
    )


def _read_common(fields: _Fields, outcome: Outcome) -> None:
    rid = fields.get("id")
    if isinstance(rid, str):
        outcome.response_id = rid
    model = fields.get("model")
    if isinstance(model, str) and model:
        outcome.response_model = model
    tier = fields.get("service_tier")
    if isinstance(tier, str):
        outcome.service_tier = tier
    fingerprint = fields.get("system_fingerprint")
    if isinstance(fingerprint, str):
        outcome.system_fingerprint = fingerprint
    # Azure's first chunk has an empty id and model (its prompt filter results): not yet.
    outcome.identified = bool(outcome.response_id) and outcome.response_model is not None


def read_response(endpoint: str, obj: Any, outcome: Outcome, *, capture: bool) -> None:
    """Read a whole (non-streamed) response object or parsed JSON body."""
    fields = _fields(obj)
    _read_common(fields, outcome)
    outcome.usage = read_usage(fields.get("usage")) or outcome.usage
    if endpoint == RESPONSES:
        _read_responses_status(fields, outcome)
        if capture:
            outcome.output = _responses_output_messages(fields)
        return
    choices = read_list(fields.get("choices"))
    if not choices:
        return
    for position, choice in enumerate(choices):
        index = _read_choice(_fields(choice), position, outcome)
        if capture:
            if outcome.output is None:
                outcome.output = {}
            outcome.output[index] = _choice_message(endpoint, choice)


def read_chunk(endpoint: str, chunk: Any, outcome: Outcome, capture: bool) -> bool:
    """Read one stream chunk/event; return True when it carries model output.

    This runs for every chunk the user reads (``capture`` is positional so that the call
    takes the interpreter's fast path). Once the response is identified, the common chunk —
    an SDK object with one choice that does not finish and no usage — costs three attribute
    reads and allocates nothing. The id, model, service tier and fingerprint, which every
    chunk repeats, are read until the id and model are known and then again only from the
    closing chunks (a finish reason, usage); a choice's index is read only when it finishes.
    """
    outcome.chunks += 1
    if outcome.identified and not capture and endpoint in _CHOICE_ENDPOINTS:
        # Attribute syntax, not getattr(): the cheapest read of a pydantic field there is.
        try:
            choices = chunk.choices
            if (
                chunk.usage is None
                and type(choices) is list
                and len(choices) == 1
                and choices[0].finish_reason is None
            ):
                return True
        except AttributeError:  # a dict, or another shape: the general path below
            pass
    if endpoint == RESPONSES:
        return _read_responses_event(chunk, outcome, capture)
    fields = _fields(chunk)
    choices = fields.get("choices")
    usage = fields.get("usage")
    if usage is not None:
        outcome.usage = read_usage(usage)
    if type(choices) is not list:
        choices = read_list(choices)
    if not choices:
        if usage is not None or not outcome.identified:
            _read_common(fields, outcome)
        return False
    closing = _read_choices(endpoint, choices, outcome, capture=capture)
    if closing or usage is not None or not outcome.identified:
        _read_common(fields, outcome)
    if closing and usage is None:
        _read_groq_usage(fields, outcome)
    return True


def _read_groq_usage(fields: _Fields, outcome: Outcome) -> None:
    """Groq ends a stream that did not ask for usage with it anyway, in the last chunk's
    ``x_groq.usage``: read there, so its streams are counted and priced unasked."""
    extra = fields.get("x_groq")
    if extra is not None:
        usage = read_usage(read_field(extra, "usage"))
        if usage is not None:
            outcome.usage = usage


def _read_choices(
    endpoint: str, choices: list[Any] | tuple[Any, ...], outcome: Outcome, *, capture: bool
) -> bool:
    """Every choice of a chunk; True when one of them carries a finish reason."""
    closing = False
    for position, choice in enumerate(choices):
        fields = _fields(choice)
        index = _read_choice(fields, position, outcome)
        closing = closing or fields.get("finish_reason") is not None
        if capture:
            _accumulate_delta(endpoint, choice, index, outcome)
    return closing


def _read_choice(fields: _Fields, position: int, outcome: Outcome) -> int:
    """Record a choice's finish reason; return its index (its position if it has none)."""
    index = fields.get("index")
    index = index if isinstance(index, int) else position
    reason = fields.get("finish_reason")
    if isinstance(reason, str):
        outcome.finish_reasons[index] = reason
    return index


def is_usage_only_chunk(chunk: Any) -> bool:
    """The extra chunk ``include_usage`` adds: usage set, no choices (Chat and Completions)."""
    fields = _fields(chunk)
    return fields.get("usage") is not None and not fields.get("choices")


def _read_responses_event(event: Any, outcome: Outcome, capture: bool) -> bool:
    try:
        kind = event.type  # the SDK's events (attribute syntax: the cheapest read)
    except AttributeError:
        kind = read_field(event, "type")
    if not isinstance(kind, str):  # also keeps an unhashable value out of the set lookups
        return False
    if kind.endswith(_RESPONSES_OUTPUT_SUFFIXES):  # the many events: text and item deltas
        return True
    if kind in _RESPONSES_START_EVENTS:
        response = read_field(event, "response")
        if response is not None:
            _read_common(_fields(response), outcome)
        return False
    if kind in _RESPONSES_FINAL_EVENTS:
        response = read_field(event, "response")
        if response is not None:
            read_response(RESPONSES, response, outcome, capture=capture)
    return False


def _read_responses_status(fields: _Fields, outcome: Outcome) -> None:
    """Map a Response's status to the Chat-style finish reasons dashboards already know."""
    status = fields.get("status")
    if status == "completed":
        reason = "stop"
        for item in read_list(fields.get("output")):
            if str(read_field(item, "type") or "").endswith("_call"):
                reason = "tool_calls"
                break
    elif status == "incomplete":
        details = fields.get("incomplete_details")
        why = read_field(details, "reason") if details is not None else None
        reason = {"max_output_tokens": "length", "content_filter": "content_filter"}.get(
            str(why), str(why or "incomplete")
        )
    elif status == "failed":
        reason = "error"
    else:
        # queued / in_progress (background responses): not finished yet, no reason.
        return
    outcome.finish_reasons = {0: reason}


# --- content (only when the user opted in) ---------------------------------------------


def _choice_message(endpoint: str, choice: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if endpoint == COMPLETIONS:
        text = read_field(choice, "text")
        if isinstance(text, str):
            parts.append({"type": "text", "content": text})
    else:
        message = read_field(choice, "message")
        content = read_field(message, "content")
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        refusal = read_field(message, "refusal")
        if isinstance(refusal, str):
            parts.append({"type": "refusal", "content": refusal})
        for call in read_list(read_field(message, "tool_calls")):
            function = read_field(call, "function")
            parts.append(
                {
                    "type": "tool_call",
                    "id": read_field(call, "id"),
                    "name": read_field(function, "name"),
                    "arguments": read_field(function, "arguments"),
                }
            )
    message_out: dict[str, Any] = {"role": "assistant", "parts": parts}
    reason = read_field(choice, "finish_reason")
    if isinstance(reason, str):
        message_out["finish_reason"] = reason
    return message_out


def _accumulate_delta(endpoint: str, choice: Any, index: int, outcome: Outcome) -> None:
    if outcome.output is None:
        outcome.output = {}
    message = outcome.output.setdefault(index, {"role": "assistant", "parts": []})
    parts: list[dict[str, Any]] = message["parts"]
    reason = read_field(choice, "finish_reason")
    if isinstance(reason, str):
        message["finish_reason"] = reason
    if endpoint == COMPLETIONS:
        text = read_field(choice, "text")
    else:
        delta = read_field(choice, "delta")
        text = read_field(delta, "content")
        for call in read_list(read_field(delta, "tool_calls")):
            _accumulate_tool_call(parts, call)
    if isinstance(text, str) and text:
        if parts and parts[-1]["type"] == "text":
            parts[-1]["content"] += text
        else:
            parts.append({"type": "text", "content": text})


def _accumulate_tool_call(parts: list[dict[str, Any]], call: Any) -> None:
    position = read_field(call, "index")
    function = read_field(call, "function")
    for part in parts:
        if part["type"] == "tool_call" and part.get("_index") == position:
            break
    else:
        part = {"type": "tool_call", "_index": position, "id": None, "name": None, "arguments": ""}
        parts.append(part)
    if read_field(call, "id"):
        part["id"] = read_field(call, "id")
    if read_field(function, "name"):
        part["name"] = read_field(function, "name")
    arguments = read_field(function, "arguments")
    if isinstance(arguments, str):
        part["arguments"] += arguments


def _responses_output_messages(fields: _Fields) -> dict[int, dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for item in read_list(fields.get("output")):
        kind = read_field(item, "type")
        if kind == "message":
            for content in read_list(read_field(item, "content")):
                ctype = read_field(content, "type")
                if ctype == "output_text":
                    parts.append({"type": "text", "content": read_field(content, "text")})
                elif ctype == "refusal":
                    parts.append({"type": "refusal", "content": read_field(content, "refusal")})
        elif kind == "function_call":
            parts.append(
                {
                    "type": "tool_call",
                    "id": read_field(item, "call_id"),
                    "name": read_field(item, "name"),
                    "arguments": read_field(item, "arguments"),
                }
            )
    return {0: {"role": "assistant", "parts": parts}}


def output_messages(outcome: Outcome) -> list[dict[str, Any]]:
    """The captured output as GenAI ``gen_ai.output.messages`` (index order, clean parts)."""
    if not outcome.output:
        return []
    messages = []
    for index in sorted(outcome.output):
        message = dict(outcome.output[index])
        message["parts"] = [
            {k: v for k, v in part.items() if not k.startswith("_")} for part in message["parts"]
        ]
        reason = outcome.finish_reasons.get(index)
        if reason is not None and "finish_reason" not in message:
            message["finish_reason"] = reason
        messages.append(message)
    return messages


def parse_json_body(content: bytes) -> Any:
    """Parse a raw HTTP body we read ourselves (never through the user's ``parse()``); ``None``
    for a body that is not JSON (a transcription as ``text``, ``srt`` or ``vtt``, an HTML error
    page from a proxy) or is nested too deeply to decode: it has no usage to read."""
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not text
        return None
    except RecursionError:  # arrays or objects nested deeper than the decoder's stack
        return None
