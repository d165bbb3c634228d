"""POST /v1/chat/completions: JSON and streamed answers shaped like the recordings.

The answer is a text reply, a tool call or a JSON document, decided from the request:

- a tool call when the request has ``tools`` (or legacy ``functions``), ``tool_choice``
  is not ``"none"`` and the last message is not a tool result; the forced tool, else
  the first one, is called with arguments made from its JSON schema;
- a JSON document for ``response_format`` ``json_schema`` (an example of the schema) or
  ``json_object``;
- otherwise the server's reply text, cut to ``max_completion_tokens``/``max_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import _errors
from ._request import EFFORT_TOKENS, Context, check_temperature, output_limit
from ._sse import DONE, Event, Reply, chunk_event
from ._text import (
    Prompt,
    chunk_string,
    compact,
    example_for_schema,
    obfuscation,
    random_id,
    split_tokens,
    stable_digest,
)

_FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "sexual",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm/intent",
    "self-harm/instructions",
    "self-harm",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


@dataclass(slots=True)
class ToolCall:
    """A call the fake model decided to make: ``kind`` is function, custom or legacy."""

    kind: str
    name: str
    arguments: str
    call_id: str = field(default_factory=lambda: random_id("call_", 24))


@dataclass(slots=True)
class Answer:
    """What every choice says: text (possibly cut), a refusal, or tool calls."""

    pieces: list[str]
    finish_reason: str
    calls: list[ToolCall]
    reasoning_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def chat_completion(ctx: Context) -> Reply:
    body = ctx.body
    messages = _validate(ctx)
    prompt = _prompt(body, messages)
    cached, written = ctx.cache_usage(prompt)
    answer = _answer(ctx, messages)
    n = _choice_count(body)
    completion = n * (len(answer.pieces) + _call_tokens(answer)) + answer.reasoning_tokens
    usage = _usage(ctx, prompt, completion, answer.reasoning_tokens, cached=cached, written=written)
    if ctx.streaming:
        return _stream(ctx, answer, n, usage)
    choices = [_choice(ctx, answer, index) for index in range(n)]
    result: dict[str, Any] = {
        "id": random_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model.snapshot,
        "choices": choices,
        "usage": usage,
        **_tier_and_fingerprint(ctx),
    }
    if isinstance(body.get("moderation"), dict):
        result["moderation"] = _moderation(body["moderation"])
    if ctx.azure:
        result["prompt_filter_results"] = _prompt_filter_results()
    return Reply(body=result, usage=usage)


def _validate(ctx: Context) -> list[dict[str, Any]]:
    body = ctx.body
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _errors.missing_parameter("messages")
    if ctx.model.kind != "chat":
        raise _errors.invalid_request(
            "This is not a chat model and thus not supported in the v1/chat/completions "
            "endpoint. Did you mean to use v1/completions?",
            param="model",
            status=404,
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _errors.missing_parameter(f"messages[{index}].role")
        if not ctx.model.system_role and message["role"] in ("system", "developer"):
            raise _errors.unsupported_value(
                f"messages[{index}].role",
                f"'messages[{index}].role' does not support '{message['role']}' with this model.",
            )
    if "web_search_options" in body and not ctx.model.search:
        raise _errors.invalid_request(
            "Web search options not supported with this model.", param="web_search_options"
        )
    if ctx.model.reasoning:
        if body.get("max_tokens") is not None:
            raise _errors.unsupported_parameter(
                "max_tokens",
                "'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
            )
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            raise _errors.unsupported_value(
                "temperature",
                f"'temperature' does not support {temperature} with this model. "
                "Only the default (1) value is supported.",
            )
    check_temperature(body)
    if body.get("stream_options") is not None and not ctx.streaming:
        raise _errors.invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    _choice_count(body)
    return messages


def _choice_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    error = _errors.out_of_range("n", n, 1, 128)
    if error is not None:
        raise error
    return int(n)


def _prompt(body: dict[str, Any], messages: list[dict[str, Any]]) -> Prompt:
    prompt = Prompt()
    for key in ("tools", "functions"):
        if body.get(key):
            prompt.add_json(body[key])
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        prompt.add_json(response_format.get("json_schema"))
    for message in messages:
        prompt.add(f"<|{message['role']}|>", 3)
        prompt.add_content(message)
    return prompt


def _answer(ctx: Context, messages: list[dict[str, Any]]) -> Answer:
    body = ctx.body
    effort = ctx.reasoning_effort(body.get("reasoning_effort"))
    reasoning = EFFORT_TOKENS[effort]
    limit = output_limit(body, "max_completion_tokens", "max_tokens")
    if limit is None:
        limit = ctx.model.default_max_tokens
    if limit is not None and limit <= reasoning:
        # The whole budget went to reasoning: the real API returns empty content.
        return Answer([], "length", [], limit)
    calls = _tool_calls(body, messages)
    if calls:
        finish = "function_call" if calls[0].kind == "legacy" else "tool_calls"
        return Answer([], finish, calls, reasoning)
    pieces = split_tokens(_reply_text(ctx))
    if limit is not None and len(pieces) > limit - reasoning:
        return Answer(pieces[: limit - reasoning], "length", [], reasoning)
    return Answer(pieces, "stop", [], reasoning)


def _reply_text(ctx: Context) -> str:
    response_format = ctx.body.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema", {})
            return compact(example_for_schema(schema))
        if response_format.get("type") == "json_object":
            return compact({"message": ctx.reply})
    return ctx.reply


def _tool_calls(body: dict[str, Any], messages: list[dict[str, Any]]) -> list[ToolCall]:
    last_role = messages[-1].get("role")
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if isinstance(tools, list) and tools and choice != "none" and last_role != "tool":
        tool = _chosen_tool(tools, choice)
        if tool is None:
            return []
        if tool.get("type") == "custom":
            custom = tool.get("custom") or {}
            return [ToolCall("custom", str(custom.get("name", "")), "example")]
        function = tool.get("function") or {}
        arguments = compact(example_for_schema(function.get("parameters") or {}))
        return [ToolCall("function", str(function.get("name", "")), arguments)]
    functions = body.get("functions")
    forced = body.get("function_call")
    if isinstance(functions, list) and functions and forced != "none" and last_role != "function":
        name = forced.get("name") if isinstance(forced, dict) else None
        function = next((f for f in functions if f.get("name") == name), functions[0])
        arguments = compact(example_for_schema(function.get("parameters") or {}))
        return [ToolCall("legacy", str(function.get("name", "")), arguments)]
    return []


def _chosen_tool(tools: list[Any], choice: Any) -> dict[str, Any] | None:
    """The tool named by ``tool_choice``, else the first function or custom tool."""
    wanted: str | None = None
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "allowed_tools":
            allowed = (choice.get("allowed_tools") or {}).get("tools") or []
            if allowed:
                first = allowed[0]
                wanted = (first.get(first.get("type"), {}) or {}).get("name")
        elif isinstance(kind, str):
            wanted = (choice.get(kind) or {}).get("name")
    candidates = [
        t for t in tools if isinstance(t, dict) and t.get("type") in ("function", "custom")
    ]
    for tool in candidates:
        if wanted is None or (tool.get(tool["type"]) or {}).get("name") == wanted:
            return tool
    return candidates[0] if candidates else None


def _call_tokens(answer: Answer) -> int:
    return sum(len(split_tokens(call.arguments)) + 1 for call in answer.calls)


def _usage(
    ctx: Context,
    prompt: Prompt,
    completion: int,
    reasoning: int,
    *,
    cached: int,
    written: int | None,
) -> dict[str, Any]:
    prompt_details: dict[str, Any] = {"cached_tokens": cached, "audio_tokens": 0}
    completion_details: dict[str, Any] = {
        "reasoning_tokens": reasoning,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }
    if written is not None:
        prompt_details["cache_write_tokens"] = written
    if ctx.model.audio:
        # Audio models break usage down by modality (recorded).
        audio = _audio_tokens(ctx.body.get("messages"))
        prompt_details.update(audio_tokens=audio, text_tokens=prompt.total - audio, image_tokens=0)
        completion_details["text_tokens"] = completion - reasoning
    return {
        "prompt_tokens": prompt.total,
        "completion_tokens": completion,
        "total_tokens": prompt.total + completion,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": completion_details,
    }


def _audio_tokens(messages: Any) -> int:
    count = 0
    for message in messages or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(
                1
                for part in content
                if isinstance(part, dict) and part.get("type") == "input_audio"
            )
    return count * 85


def _tier_and_fingerprint(ctx: Context) -> dict[str, Any]:
    if ctx.model.search:
        # Search models report no service tier and an empty fingerprint (recorded).
        return {"system_fingerprint": ""}
    tier = ctx.body.get("service_tier")
    fingerprint = f"fp_{stable_digest(ctx.model.snapshot)}" if ctx.model.fingerprint else None
    return {
        "service_tier": tier if isinstance(tier, str) and tier != "auto" else "default",
        "system_fingerprint": fingerprint,
    }


def _message(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if answer.calls else answer.text,
    }
    if answer.calls and answer.calls[0].kind == "legacy":
        call = answer.calls[0]
        message["function_call"] = {"name": call.name, "arguments": call.arguments}
    elif answer.calls:
        message["tool_calls"] = [_tool_call(call) for call in answer.calls]
    message["refusal"] = None
    message["annotations"] = []
    return message


def _tool_call(call: ToolCall) -> dict[str, Any]:
    if call.kind == "custom":
        return {
            "id": call.call_id,
            "type": "custom",
            "custom": {"name": call.name, "input": call.arguments},
        }
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _choice(ctx: Context, answer: Answer, index: int) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "message": _message(answer)}
    if ctx.model.chat_logprobs_key:
        choice["logprobs"] = _logprobs(ctx, answer.pieces)
    choice["finish_reason"] = answer.finish_reason
    if ctx.azure:
        choice["content_filter_results"] = _content_filter_results()
    return choice


def _logprobs(ctx: Context, pieces: list[str]) -> dict[str, Any] | None:
    if not ctx.flag("logprobs"):
        return None
    return {"content": [_token_logprob(ctx, piece) for piece in pieces], "refusal": None}


def _token_logprob(ctx: Context, piece: str) -> dict[str, Any]:
    top = ctx.body.get("top_logprobs")
    count = top if isinstance(top, int) and not isinstance(top, bool) else 0
    alternatives = [
        {"token": piece if rank == 0 else f"{piece}{rank}", "logprob": -2.5 * rank}
        for rank in range(count)
    ]
    for alternative in alternatives:
        alternative["bytes"] = list(str(alternative["token"]).encode())
    return {
        "token": piece,
        "logprob": 0.0,
        "bytes": list(piece.encode()),
        "top_logprobs": alternatives,
    }


def _stream(ctx: Context, answer: Answer, n: int, usage: dict[str, Any]) -> Reply:
    include_usage = ctx.stream_usage
    base: dict[str, Any] = {
        "id": random_id("chatcmpl-", 29),
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.model.snapshot,
        **_tier_and_fingerprint(ctx),
    }
    with_obfuscation = ctx.stream_option("include_obfuscation", True) and not ctx.azure

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> Event:
        data = {**base, "choices": choices}
        if include_usage:
            data["usage"] = None
        data.update(extra)
        if with_obfuscation:
            data["obfuscation"] = obfuscation(compact(data))
        return chunk_event(data)

    events: list[Event] = []
    if ctx.azure:
        events.append(
            chunk_event(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": _prompt_filter_results(),
                }
            )
        )
    per_choice = [_deltas(answer) for _ in range(n)]
    for step in range(max(len(deltas) for deltas in per_choice)):
        for index, deltas in enumerate(per_choice):
            if step < len(deltas):
                delta, finish = deltas[step]
                events.append(chunk([_chunk_choice(ctx, index, delta, finish)]))
    if include_usage:
        events.append(chunk([], usage=usage))
    if isinstance(ctx.body.get("moderation"), dict):
        events.append(chunk([], moderation=_moderation(ctx.body["moderation"])))
    events.append(DONE)
    return Reply(events=events, usage=usage if include_usage else None)


def _deltas(answer: Answer) -> list[tuple[dict[str, Any], str | None]]:
    """The ``(delta, finish_reason)`` of each chunk one choice streams, as recorded."""
    if not answer.calls:
        deltas: list[tuple[dict[str, Any], str | None]] = [
            ({"role": "assistant", "content": "", "refusal": None}, None)
        ]
        deltas += [({"content": piece}, None) for piece in answer.pieces]
        return [*deltas, ({}, answer.finish_reason)]
    deltas = [({"role": "assistant", "content": None}, None)]
    for index, call in enumerate(answer.calls):
        if call.kind == "legacy":
            deltas.append(({"function_call": {"name": call.name, "arguments": ""}}, None))
            deltas += [
                ({"function_call": {"arguments": part}}, None)
                for part in chunk_string(call.arguments)
            ]
            continue
        field_name = "input" if call.kind == "custom" else "arguments"
        head = {
            "index": index,
            "id": call.call_id,
            "type": call.kind,
            call.kind: {"name": call.name, field_name: ""},
        }
        deltas.append(({"tool_calls": [head]}, None))
        deltas += [
            ({"tool_calls": [{"index": index, call.kind: {field_name: part}}]}, None)
            for part in chunk_string(call.arguments)
        ]
    return [*deltas, ({}, answer.finish_reason)]


def _chunk_choice(
    ctx: Context, index: int, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "delta": delta}
    if ctx.model.chat_logprobs_key:
        content = delta.get("content")
        choice["logprobs"] = _logprobs(ctx, [content]) if content else None
    choice["finish_reason"] = finish
    if ctx.azure:
        choice["content_filter_results"] = _content_filter_results() if delta.get("content") else {}
    return choice


def _content_filter_results() -> dict[str, Any]:
    return {name: {"filtered": False, "severity": "safe"} for name in _FILTER_CATEGORIES}


def _prompt_filter_results() -> list[dict[str, Any]]:
    results = _content_filter_results()
    results["jailbreak"] = {"filtered": False, "detected": False}
    return [{"prompt_index": 0, "content_filter_results": results}]


def _moderation(options: dict[str, Any]) -> dict[str, Any]:
    """The ``moderation`` object a request with ``moderation`` gets (recorded shape)."""
    model = options.get("model")
    if not isinstance(model, str):
        model = "omni-moderation-latest"

    def results() -> dict[str, Any]:
        return {
            "type": "moderation_results",
            "model": model,
            "results": [
                {
                    "type": "moderation_result",
                    "model": model,
                    "flagged": False,
                    "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
                    "category_scores": dict.fromkeys(_MODERATION_CATEGORIES, 1e-06),
                    "category_applied_input_types": {
                        name: ["text"] for name in _MODERATION_CATEGORIES
                    },
                }
            ],
        }

    return {"input": results(), "output": results()}
