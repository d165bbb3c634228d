"""Reading OpenAI responses, stream chunks and raw HTTP bodies into an :class:`Outcome`.

All knowledge of the shapes the OpenAI API returns lives here, so ``_call.py`` stays
provider-neutral. Readers accept both the SDK's pydantic models and plain dicts (raw HTTP
bodies parsed by us), and tolerate missing fields: older SDKs and other servers omit some.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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

_RESPONSES_FINAL_EVENTS: Final = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)
_RESPONSES_START_EVENTS: Final = frozenset(
    {"response.created", "response.in_progress", "response.queued"}
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call as the API reported them (``None`` = not reported).

    ``input_tokens`` includes cached input and ``output_tokens`` includes reasoning, as the
    OpenAI API counts them and as the GenAI conventions define them.
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


@dataclass(slots=True)
class Outcome:
    """What a call's response told us; filled incrementally by whole responses or chunks."""

    response_id: str | None = None
    response_model: str | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None
    finish_reasons: dict[int, str] = field(default_factory=dict)
    usage: Usage | None = None
    chunks: int = 0
    first_output_at: float | None = None
    # Only filled when content capture is on: index -> accumulated output message.
    output: dict[int, dict[str, Any]] | None = None


def _get(obj: Any, name: str) -> Any:
    # Bodies we parse ourselves are plain dicts; everything else is an SDK model. An exact
    # type check keeps this per-field read cheap (an ABC isinstance is several times slower).
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int | None:
    """A token count as reported, or ``None`` for anything that is not one (a bool, a
    string, a float, a negative number): never coerced, never invented."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _items(value: Any) -> list[Any] | tuple[Any, ...]:
    """A list field (choices, output, content, tool_calls) as a sequence; anything else
    (missing, ``null``, a number or string where a list belongs) as empty."""
    return value if isinstance(value, (list, tuple)) else ()


def read_usage(usage: Any) -> Usage | None:
    """Normalise a Chat/Completions (``prompt_tokens``) or Responses (``input_tokens``) usage."""
    if usage is None:
        return None
    input_tokens = _int(_get(usage, "input_tokens"))
    if input_tokens is not None or _get(usage, "prompt_tokens") is None:
        # Responses, images; transcriptions spell it input_token_details.
        in_details = _get(usage, "input_tokens_details") or _get(usage, "input_token_details")
        out_details = _get(usage, "output_tokens_details")
        output_tokens = _int(_get(usage, "output_tokens"))
    else:
        input_tokens = _int(_get(usage, "prompt_tokens"))
        in_details = _get(usage, "prompt_tokens_details")
        out_details = _get(usage, "completion_tokens_details")
        output_tokens = _int(_get(usage, "completion_tokens"))
    if input_tokens is None and output_tokens is None:
        return None  # nothing usable: no tokens, and never a $0 cost made of nothing
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=_int(_get(in_details, "cached_tokens")) if in_details else None,
        cache_creation_tokens=(
            _int(_get(in_details, "cache_write_tokens")) if in_details else None
        ),
        reasoning_tokens=_int(_get(out_details, "reasoning_tokens")) if out_details else None,
        input_audio_tokens=_int(_get(in_details, "audio_tokens")) if in_details else None,
        input_image_tokens=_int(_get(in_details, "image_tokens")) if in_details else None,
        output_audio_tokens=_int(_get(out_details, "audio_tokens")) if out_details else None,
        output_image_tokens=_int(_get(out_details, "image_tokens")) if out_details else None,
    )


def _read_common(obj: Any, outcome: Outcome) -> None:
    rid = _get(obj, "id")
    if isinstance(rid, str):
        outcome.response_id = rid
    model = _get(obj, "model")
    if isinstance(model, str) and model:
        outcome.response_model = model
    tier = _get(obj, "service_tier")
    if isinstance(tier, str):
        outcome.service_tier = tier
    fingerprint = _get(obj, "system_fingerprint")
    if isinstance(fingerprint, str):
        outcome.system_fingerprint = fingerprint


def read_response(endpoint: str, obj: Any, outcome: Outcome, *, capture: bool) -> None:
    """Read a whole (non-streamed) response object or parsed JSON body."""
    _read_common(obj, outcome)
    outcome.usage = read_usage(_get(obj, "usage")) or outcome.usage
    if endpoint == RESPONSES:
        _read_responses_status(obj, outcome)
        if capture:
            outcome.output = _responses_output_messages(obj)
        return
    choices = _items(_get(obj, "choices"))
    if not choices:
        return
    for position, choice in enumerate(choices):
        index = _read_choice(choice, position, outcome)
        if capture:
            if outcome.output is None:
                outcome.output = {}
            outcome.output[index] = _choice_message(endpoint, choice)


def read_chunk(endpoint: str, chunk: Any, outcome: Outcome, *, capture: bool) -> bool:
    """Read one stream chunk/event; return True when it carries model output."""
    outcome.chunks += 1
    if endpoint == RESPONSES:
        return _read_responses_event(chunk, outcome, capture=capture)
    _read_common(chunk, outcome)
    usage = _get(chunk, "usage")
    if usage is not None:
        outcome.usage = read_usage(usage)
    choices = _items(_get(chunk, "choices"))
    if not choices:
        return False
    for position, choice in enumerate(choices):
        index = _read_choice(choice, position, outcome)
        if capture:
            _accumulate_delta(endpoint, choice, index, outcome)
    return True


def _read_choice(choice: Any, position: int, outcome: Outcome) -> int:
    """Record a choice's finish reason; return its index (its position if it has none)."""
    index = _get(choice, "index")
    index = index if isinstance(index, int) else position
    reason = _get(choice, "finish_reason")
    if isinstance(reason, str):
        outcome.finish_reasons[index] = reason
    return index


def is_usage_only_chunk(chunk: Any) -> bool:
    """The extra chunk ``include_usage`` adds: usage set, no choices (Chat and Completions)."""
    return _get(chunk, "usage") is not None and not _get(chunk, "choices")


def _read_responses_event(event: Any, outcome: Outcome, *, capture: bool) -> bool:
    kind = _get(event, "type")
    if not isinstance(kind, str):  # also keeps an unhashable value out of the set lookups
        return False
    if kind in _RESPONSES_START_EVENTS:
        response = _get(event, "response")
        if response is not None:
            _read_common(response, outcome)
        return False
    if kind in _RESPONSES_FINAL_EVENTS:
        response = _get(event, "response")
        if response is not None:
            read_response(RESPONSES, response, outcome, capture=capture)
        return False
    return kind.endswith(".delta") or kind.endswith(".added")


def _read_responses_status(obj: Any, outcome: Outcome) -> None:
    """Map a Response's status to the Chat-style finish reasons dashboards already know."""
    status = _get(obj, "status")
    output = _items(_get(obj, "output"))
    if status == "completed":
        calls = any(str(_get(item, "type") or "").endswith("_call") for item in output)
        reason = "tool_calls" if calls else "stop"
    elif status == "incomplete":
        details = _get(obj, "incomplete_details")
        why = _get(details, "reason") if details is not None else None
        reason = {"max_output_tokens": "length", "content_filter": "content_filter"}.get(
            str(why), str(why or "incomplete")
        )
    elif status == "failed":
        reason = "error"
    elif isinstance(status, str):
        # queued / in_progress (background responses): not finished yet, no reason.
        return
    else:
        return
    outcome.finish_reasons = {0: reason}


# --- content (only when the user opted in) ---------------------------------------------


def _choice_message(endpoint: str, choice: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if endpoint == COMPLETIONS:
        text = _get(choice, "text")
        if isinstance(text, str):
            parts.append({"type": "text", "content": text})
    else:
        message = _get(choice, "message")
        content = _get(message, "content")
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        refusal = _get(message, "refusal")
        if isinstance(refusal, str):
            parts.append({"type": "refusal", "content": refusal})
        for call in _items(_get(message, "tool_calls")):
            function = _get(call, "function")
            parts.append(
                {
                    "type": "tool_call",
                    "id": _get(call, "id"),
                    "name": _get(function, "name"),
                    "arguments": _get(function, "arguments"),
                }
            )
    message_out: dict[str, Any] = {"role": "assistant", "parts": parts}
    reason = _get(choice, "finish_reason")
    if isinstance(reason, str):
        message_out["finish_reason"] = reason
    return message_out


def _accumulate_delta(endpoint: str, choice: Any, index: int, outcome: Outcome) -> None:
    if outcome.output is None:
        outcome.output = {}
    message = outcome.output.setdefault(index, {"role": "assistant", "parts": []})
    parts: list[dict[str, Any]] = message["parts"]
    reason = _get(choice, "finish_reason")
    if isinstance(reason, str):
        message["finish_reason"] = reason
    if endpoint == COMPLETIONS:
        text = _get(choice, "text")
    else:
        delta = _get(choice, "delta")
        text = _get(delta, "content")
        for call in _items(_get(delta, "tool_calls")):
            _accumulate_tool_call(parts, call)
    if isinstance(text, str) and text:
        if parts and parts[-1]["type"] == "text":
            parts[-1]["content"] += text
        else:
            parts.append({"type": "text", "content": text})


def _accumulate_tool_call(parts: list[dict[str, Any]], call: Any) -> None:
    position = _get(call, "index")
    function = _get(call, "function")
    for part in parts:
        if part["type"] == "tool_call" and part.get("_index") == position:
            break
    else:
        part = {"type": "tool_call", "_index": position, "id": None, "name": None, "arguments": ""}
        parts.append(part)
    if _get(call, "id"):
        part["id"] = _get(call, "id")
    if _get(function, "name"):
        part["name"] = _get(function, "name")
    arguments = _get(function, "arguments")
    if isinstance(arguments, str):
        part["arguments"] += arguments


def _responses_output_messages(obj: Any) -> dict[int, dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for item in _items(_get(obj, "output")):
        kind = _get(item, "type")
        if kind == "message":
            for content in _items(_get(item, "content")):
                ctype = _get(content, "type")
                if ctype == "output_text":
                    parts.append({"type": "text", "content": _get(content, "text")})
                elif ctype == "refusal":
                    parts.append({"type": "refusal", "content": _get(content, "refusal")})
        elif kind == "function_call":
            parts.append(
                {
                    "type": "tool_call",
                    "id": _get(item, "call_id"),
                    "name": _get(item, "name"),
                    "arguments": _get(item, "arguments"),
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
    """Parse a raw HTTP body we read ourselves (never through the user's ``parse()``)."""
    return json.loads(content) if content else None
