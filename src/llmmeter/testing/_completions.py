"""POST /v1/completions, the legacy text endpoint (davinci-002, gpt-3.5-turbo-instruct).

Like the real endpoint it defaults ``max_tokens`` to 16, so an unbounded request ends
with ``finish_reason: "length"``; streams put the finish reason on the last text chunk.
"""

from __future__ import annotations

from typing import Any

from . import _errors
from ._request import Context, check_temperature, output_limit
from ._sse import DONE, Event, Reply, chunk_event
from ._text import Prompt, random_id, split_tokens


def completion(ctx: Context) -> Reply:
    body = ctx.body
    if ctx.model.kind != "completion":
        raise _errors.invalid_request(
            "This is a chat model and not supported in the v1/completions endpoint. "
            "Did you mean to use v1/chat/completions?",
            param="model",
            status=404,
        )
    prompts = _prompts(body.get("prompt"))
    check_temperature(body)
    if body.get("stream_options") is not None and not ctx.streaming:
        raise _errors.invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    n = body["n"] if isinstance(body.get("n"), int) and body["n"] > 0 else 1
    limit = output_limit(body, "max_tokens") or ctx.model.default_max_tokens or 16
    pieces = split_tokens(ctx.reply)
    finish = "length" if len(pieces) > limit else "stop"
    pieces = pieces[:limit]
    prompt_tokens = sum(_prompt_tokens(prompt) for prompt in prompts)
    completion_tokens = len(pieces) * n * len(prompts)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    choices = []
    for index in range(n * len(prompts)):
        prompt = prompts[index // n]
        echoed = prompt if body.get("echo") is True and isinstance(prompt, str) else ""
        choices.append((index, echoed, pieces))
    completion_id = random_id("cmpl-", 29)
    if ctx.streaming:
        return _stream(ctx, completion_id, choices, finish, usage)
    return Reply(
        body={
            "id": completion_id,
            "object": "text_completion",
            "created": ctx.created,
            "model": ctx.model.snapshot,
            "choices": [
                {
                    "text": echoed + "".join(text),
                    "index": index,
                    "logprobs": _logprobs(body, text),
                    "finish_reason": finish,
                }
                for index, echoed, text in choices
            ],
            "usage": usage,
        },
        usage=usage,
    )


def _prompts(prompt: Any) -> list[Any]:
    """One entry per prompt: a string, or a list of token ids."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, int) for item in prompt):
            return [prompt]
        if all(isinstance(item, str | list) for item in prompt):
            return list(prompt)
    raise _errors.missing_parameter("prompt")


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, list):
        return len(prompt)
    counted = Prompt(tokens=0)
    counted.add_text(str(prompt))
    return counted.total


def _logprobs(body: dict[str, Any], pieces: list[str]) -> dict[str, Any] | None:
    top = body.get("logprobs")
    if not isinstance(top, int) or isinstance(top, bool):
        return None
    offsets, position = [], 0
    for piece in pieces:
        offsets.append(position)
        position += len(piece)
    return {
        "tokens": pieces,
        "token_logprobs": [0.0] * len(pieces),
        "top_logprobs": [{piece: 0.0} for piece in pieces] if top else None,
        "text_offset": offsets,
    }


def _stream(
    ctx: Context,
    completion_id: str,
    choices: list[tuple[int, str, list[str]]],
    finish: str,
    usage: dict[str, Any],
) -> Reply:
    include_usage = ctx.stream_usage

    def chunk(parts: list[dict[str, Any]], **extra: Any) -> Event:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "text_completion",
            "created": ctx.created,
            "choices": parts,
            "model": ctx.model.snapshot,
        }
        if include_usage:
            data["usage"] = None
        data.update(extra)
        return chunk_event(data)

    events: list[Event] = []
    for index, echoed, pieces in choices:
        texts = [echoed + pieces[0], *pieces[1:]] if pieces else [echoed]
        for position, text in enumerate(texts):
            last = position == len(texts) - 1
            events.append(
                chunk(
                    [
                        {
                            "text": text,
                            "index": index,
                            "logprobs": None,
                            "finish_reason": finish if last else None,
                        }
                    ]
                )
            )
    if include_usage:
        events.append(chunk([], usage=usage))
    events.append(DONE)
    return Reply(events=events, usage=usage if include_usage else None)
