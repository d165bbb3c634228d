"""The Responses API's typed event stream for a finished response.

The order and fields follow the recordings: ``response.created`` and
``response.in_progress`` with an empty response, then for each output item its
``output_item.added``, the item's own events (text deltas, reasoning summary parts,
function-call argument deltas, built-in tool progress), ``output_item.done``, and finally
``response.completed`` or ``response.incomplete``. Every event has a ``sequence_number``;
delta events carry ``obfuscation`` unless ``stream_options.include_obfuscation`` is false.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ._request import Context
from ._sse import Event, typed_event
from ._text import chunk_string, compact, obfuscation, split_tokens

_Emit = Callable[..., Event]


def response_events(ctx: Context, response: dict[str, Any]) -> Iterator[Event]:
    """The typed event stream for a finished response, in the recorded order."""
    obfuscate = ctx.stream_option("include_obfuscation", True)
    sequence = 0

    def event(kind: str, **fields: Any) -> Event:
        nonlocal sequence
        data: dict[str, Any] = {"type": kind, "sequence_number": sequence, **fields}
        if obfuscate and "delta" in fields:
            data["obfuscation"] = obfuscation(compact(data))
        sequence += 1
        return typed_event(data)

    opening = {**response, "status": "in_progress", "output": [], "usage": None}
    opening.update(completed_at=None, incomplete_details=None)
    yield event("response.created", response=opening)
    yield event("response.in_progress", response=opening)
    for index, item in enumerate(response["output"]):
        yield from _item_events(event, index, item)
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    yield event(final, response=response)


def _item_events(event: _Emit, index: int, item: dict[str, Any]) -> Iterator[Event]:
    kind = item["type"]
    item_id = item["id"]
    where = {"output_index": index, "item_id": item_id}
    if kind == "message":
        yield event(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "content": []},
        )
        for position, part in enumerate(item["content"]):
            empty = {**part, "text": "", "annotations": [], "logprobs": []}
            yield event("response.content_part.added", **where, content_index=position, part=empty)
            logprobs = iter(part["logprobs"])
            for piece in split_tokens(part["text"]):
                yield event(
                    "response.output_text.delta",
                    **where,
                    content_index=position,
                    delta=piece,
                    logprobs=[next(logprobs)] if part["logprobs"] else [],
                )
            for annotation_index, annotation in enumerate(part["annotations"]):
                yield event(
                    "response.output_text.annotation.added",
                    **where,
                    content_index=position,
                    annotation_index=annotation_index,
                    annotation=annotation,
                )
            yield event(
                "response.output_text.done",
                **where,
                content_index=position,
                text=part["text"],
                logprobs=part["logprobs"],
            )
            yield event("response.content_part.done", **where, content_index=position, part=part)
        yield event("response.output_item.done", output_index=index, item=item)
        return
    if kind == "reasoning":
        yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
        for position, part in enumerate(item["summary"]):
            empty = {**part, "text": ""}
            yield event(
                "response.reasoning_summary_part.added", **where, summary_index=position, part=empty
            )
            for piece in split_tokens(part["text"]):
                yield event(
                    "response.reasoning_summary_text.delta",
                    **where,
                    summary_index=position,
                    delta=piece,
                )
            yield event(
                "response.reasoning_summary_text.done",
                **where,
                summary_index=position,
                text=part["text"],
            )
            yield event(
                "response.reasoning_summary_part.done", **where, summary_index=position, part=part
            )
        yield event("response.output_item.done", output_index=index, item=item)
        return
    yield from _call_events(event, index, item)


def _call_events(event: _Emit, index: int, item: dict[str, Any]) -> Iterator[Event]:
    kind = item["type"]
    where = {"output_index": index, "item_id": item["id"]}
    if kind in ("function_call", "custom_tool_call"):
        field_name = "arguments" if kind == "function_call" else "input"
        prefix = (
            "response.function_call_arguments"
            if kind == "function_call"
            else "response.custom_tool_call_input"
        )
        started = {**item, "status": "in_progress", field_name: ""}
        yield event("response.output_item.added", output_index=index, item=started)
        for part in chunk_string(str(item[field_name])):
            yield event(f"{prefix}.delta", **where, delta=part)
        yield event(f"{prefix}.done", **where, **{field_name: item[field_name]})
        yield event("response.output_item.done", output_index=index, item=item)
        return
    stages = {
        "web_search_call": ("response.web_search_call", ("in_progress", "searching", "completed")),
        "file_search_call": (
            "response.file_search_call",
            ("in_progress", "searching", "completed"),
        ),
        "code_interpreter_call": (
            "response.code_interpreter_call",
            ("in_progress", "interpreting", "completed"),
        ),
        "mcp_call": ("response.mcp_call", ("in_progress", "completed")),
        "mcp_list_tools": ("response.mcp_list_tools", ("in_progress", "completed")),
    }
    added = {"id": item["id"], "type": kind}
    if "status" in item:
        added["status"] = "in_progress"
    if kind not in ("web_search_call",):
        added = {**item, **added}
    yield event("response.output_item.added", output_index=index, item=added)
    prefix, steps = stages.get(kind, ("", ()))
    for step in steps:
        if kind == "code_interpreter_call" and step == "interpreting":
            yield event("response.code_interpreter_call_code.delta", **where, delta=item["code"])
            yield event("response.code_interpreter_call_code.done", **where, code=item["code"])
        if kind == "mcp_call" and step == "completed":
            yield event("response.mcp_call_arguments.delta", **where, delta=item["arguments"])
            yield event("response.mcp_call_arguments.done", **where, arguments=item["arguments"])
        yield event(f"{prefix}.{step}", **where)
    yield event("response.output_item.done", output_index=index, item=item)
