"""POST/GET/DELETE /v1/responses: the Responses API (its event stream: _responses_stream).

Output items come in the order the recordings show:

1. one ``mcp_list_tools`` item per ``mcp`` tool;
2. a ``reasoning`` item when the model reasons (effort other than ``"none"``);
3. one call item per built-in tool (``web_search``/``web_search_preview``,
   ``file_search``, ``code_interpreter``, ``mcp``), then a second ``reasoning`` item for
   reasoning models, since the real model thinks again after using a tool;
4. a ``function_call``/``custom_tool_call`` when the request has function or custom
   tools, ``tool_choice`` is not ``"none"`` and the last input item is not a tool result;
   otherwise a ``message`` (an ``mcp_approval_request`` when an MCP tool needs approval).

``max_output_tokens`` below the answer's size ends the response ``incomplete``.
``background: true`` answers ``queued`` and completes on the first retrieve.

Built-in tools cost input tokens the way the real service charges them: each enabled
built-in tool adds ``TOOL_INSTRUCTION_TOKENS`` of hidden instructions to the prompt, and
each built-in call makes the model read that whole prompt again plus the tool's result
(``TOOL_RESULT_TOKENS``). The re-read hits the prompt cache, so it is reported as cached
(rounded down to 128, from 1024 tokens on), which is why the real recordings of web search
and code interpreter show large ``cached_tokens`` on a first request.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from copy import deepcopy
from typing import Any
from urllib.parse import urlsplit

from . import _errors
from ._request import EFFORT_TOKENS, Context, PromptTemplate, check_temperature, output_limit
from ._responses_stream import response_events
from ._sse import Reply
from ._text import (
    Prompt,
    compact,
    example_for_schema,
    hex_id,
    random_id,
    split_tokens,
    stable_digest,
)

_BUILTIN_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_2025_08_26",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "mcp",
    }
)
_TOOL_RESULTS = frozenset(
    {"function_call_output", "custom_tool_call_output", "computer_call_output"}
)
_PLACEHOLDER = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")
_SUMMARY_ECHO = {"auto": "detailed", "concise": "concise", "detailed": "detailed"}
EXAMPLE_URL = "https://example.com/"
TOOL_INSTRUCTION_TOKENS = 1024
TOOL_RESULT_TOKENS = 64
_DATA_API_QUERY = re.compile(r"\b(weather|forecast|temperature)\b", re.IGNORECASE)


class ResponseStore:
    """Stored responses for retrieve/delete/cancel; background ones start ``queued``."""

    MAX_STORED = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def put(self, response: dict[str, Any], *, queued: bool) -> None:
        with self._lock:
            self._items[response["id"]] = ("queued" if queued else "done", response)
            while len(self._items) > self.MAX_STORED:
                self._items.popitem(last=False)

    def retrieve(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._items.get(response_id)
            if entry is None:
                return None
            state, response = entry
            if state == "queued":
                # The fake finishes background work the first time someone looks.
                response = {**response, "completed_at": int(time.time())}
                self._items[response_id] = ("done", response)
            return deepcopy(response)

    def usage_of(self, response_id: Any) -> int:
        with self._lock:
            entry = self._items.get(response_id) if isinstance(response_id, str) else None
        usage = entry[1].get("usage") if entry else None
        return int(usage["total_tokens"]) if isinstance(usage, dict) else 0

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._items.pop(response_id, None) is not None

    def cancel(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._items.get(response_id)
            if entry is None:
                return None
            state, response = entry
            if state != "queued":
                raise _errors.invalid_request(
                    "Cannot cancel a response that is not in progress.", param=None
                )
            cancelled = {**response, "status": "cancelled", "output": [], "usage": None}
            cancelled["completed_at"] = None
            self._items[response_id] = ("done", cancelled)
            return deepcopy(cancelled)


def create_response(
    ctx: Context, store: ResponseStore, templates: Mapping[str, PromptTemplate]
) -> Reply:
    body = ctx.body
    _validate(ctx)
    instructions, prompt_echo = _instructions(body, templates)
    prompt = _prompt(body, instructions, store)
    cached, written = ctx.cache_usage(prompt)
    builder = _OutputBuilder(ctx)
    output = builder.build()
    first_pass = prompt.total + TOOL_INSTRUCTION_TOKENS * builder.builtin_tools
    input_tokens = first_pass + (first_pass + TOOL_RESULT_TOKENS) * builder.builtin_calls
    reread = first_pass // 128 * 128 if first_pass >= 1024 else 0
    input_details: dict[str, Any] = {"cached_tokens": cached + reread * builder.builtin_calls}
    if written is not None:
        input_details["cache_write_tokens"] = written
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": input_details,
        "output_tokens": builder.output_tokens,
        "output_tokens_details": {"reasoning_tokens": builder.reasoning_tokens},
        "total_tokens": input_tokens + builder.output_tokens,
    }
    status = "incomplete" if builder.incomplete else "completed"
    response = _response_object(ctx, instructions, prompt_echo)
    response.update(
        status=status,
        completed_at=int(time.time()),
        incomplete_details={"reason": "max_output_tokens"} if builder.incomplete else None,
        output=output,
        usage=usage,
    )
    background = ctx.flag("background")
    if body.get("store") is not False or background:
        store.put(response, queued=background and not ctx.streaming)
    if ctx.streaming:
        return Reply(events=list(response_events(ctx, response)), usage=usage)
    if background:
        queued = {**response, "status": "queued", "completed_at": None, "output": []}
        queued.update(usage=None, service_tier="auto", incomplete_details=None)
        return Reply(body=queued, usage=None)
    return Reply(body=response, usage=usage)


def retrieve_response(store: ResponseStore, response_id: str) -> Reply:
    response = store.retrieve(response_id)
    if response is None:
        raise _errors.invalid_request(f"Response with id '{response_id}' not found.", status=404)
    return Reply(body=response, usage=response.get("usage"))


def delete_response(store: ResponseStore, response_id: str) -> Reply:
    if not store.delete(response_id):
        raise _errors.invalid_request(f"Response with id '{response_id}' not found.", status=404)
    return Reply(body={"id": response_id, "object": "response", "deleted": True})


def cancel_response(store: ResponseStore, response_id: str) -> Reply:
    response = store.cancel(response_id)
    if response is None:
        raise _errors.invalid_request(f"Response with id '{response_id}' not found.", status=404)
    return Reply(body=response)


def _validate(ctx: Context) -> None:
    body = ctx.body
    if ctx.model.kind != "chat":
        raise _errors.invalid_request(
            f"The model '{ctx.model.name}' is not supported with the Responses API.",
            param="model",
        )
    check_temperature(body)
    if ctx.model.reasoning and body.get("temperature") not in (None, 1):
        raise _errors.unsupported_parameter(
            "temperature", "'temperature' is not supported with this model."
        )
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") and not ctx.model.reasoning:
        raise _errors.unsupported_parameter(
            "reasoning.effort", "'reasoning.effort' is not supported with this model."
        )
    if body.get("stream_options") is not None and not ctx.streaming:
        raise _errors.invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    items = body.get("input")
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("type") == "reasoning":
                following = items[index + 1] if index + 1 < len(items) else None
                if not (isinstance(following, dict) and following.get("id")):
                    raise _errors.invalid_request(
                        f"Item '{item.get('id')}' of type 'reasoning' was provided without "
                        "its required following item.",
                        param="input",
                    )
    elif items is None and body.get("prompt") is None and not body.get("previous_response_id"):
        raise _errors.missing_parameter("input")


def _instructions(
    body: dict[str, Any], templates: Mapping[str, PromptTemplate]
) -> tuple[Any, dict[str, Any] | None]:
    """``instructions`` as echoed, expanding a stored prompt template when one is used."""
    reference = body.get("prompt")
    if not isinstance(reference, dict):
        return body.get("instructions"), None
    template = templates.get(str(reference.get("id")))
    if template is None:
        raise _errors.invalid_request(
            f"Prompt with id '{reference.get('id')}' not found.", param="prompt.id", status=404
        )
    variables = {
        name: _normalize_part(value) if isinstance(value, dict) else value
        for name, value in (reference.get("variables") or {}).items()
    }
    messages = [
        {"type": "message", "content": _fill(text, variables), "role": role}
        for role, text in (("developer", template.developer), ("user", template.user))
    ]
    echo = {
        "id": reference.get("id"),
        "variables": variables,
        "version": str(reference.get("version", "1")),
    }
    return messages, echo


def _fill(text: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
    """Template text with ``{{name}}`` filled: text runs merge, images and files split."""
    parts: list[dict[str, Any]] = []
    buffer = ""
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        buffer += text[position : match.start()]
        position = match.end()
        value = variables.get(match.group(1), "")
        if isinstance(value, dict) and value.get("type") not in (None, "input_text"):
            if buffer:
                parts.append({"type": "input_text", "text": buffer})
            parts.append(value)
            buffer = ""
        elif isinstance(value, dict):
            buffer += str(value.get("text", ""))
        else:
            buffer += str(value)
    buffer += text[position:]
    if buffer:
        parts.append({"type": "input_text", "text": buffer})
    return parts


def _normalize_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "input_image":
        return {
            "type": "input_image",
            "detail": part.get("detail", "auto"),
            "file_id": part.get("file_id"),
            "image_url": part.get("image_url"),
        }
    if kind == "input_file":
        normalized = {"type": "input_file", "file_id": part.get("file_id")}
        for key in ("file_url", "file_data", "filename"):
            if key in part:
                normalized[key] = part[key]
        return normalized
    return dict(part)


def _prompt(body: dict[str, Any], instructions: Any, store: ResponseStore) -> Prompt:
    prompt = Prompt()
    if body.get("tools"):
        prompt.add_json(body["tools"])
    text_format = (body.get("text") or {}).get("format")
    if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
        prompt.add_json(text_format.get("schema"))
    previous = store.usage_of(body.get("previous_response_id"))
    if previous:
        prompt.add(f"<|previous {body['previous_response_id']}|>", previous)
    if isinstance(instructions, str):
        prompt.add_message("developer", instructions)
    elif isinstance(instructions, list):
        for message in instructions:
            prompt.add_message(str(message.get("role")), message.get("content"))
    items = body.get("input")
    if isinstance(items, str):
        prompt.add_message("user", items)
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                prompt.add(f"<|{item.get('role') or item.get('type')}|>", 3)
                prompt.add_content(item)
    return prompt


def _last_user_text(body: dict[str, Any]) -> str:
    items = body.get("input")
    if isinstance(items, str):
        return items[:100]
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content[:100]
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    return str(part["text"])[:100]
    return "example query"


class _OutputBuilder:
    """Decides the output items of one response and counts the tokens they cost."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.body = ctx.body
        reasoning = self.body.get("reasoning")
        requested = reasoning.get("effort") if isinstance(reasoning, dict) else None
        self.effort = ctx.reasoning_effort(requested)
        summary = reasoning.get("summary") if isinstance(reasoning, dict) else None
        self.summary = _SUMMARY_ECHO.get(summary) if isinstance(summary, str) else None
        self.include = set(self.body.get("include") or ())
        self.tools = [t for t in self.body.get("tools") or () if isinstance(t, dict)]
        self.limit = output_limit(self.body, "max_output_tokens")
        self.reasoning_tokens = 0
        self.output_tokens = 0
        self.incomplete = False
        self.builtin_tools = sum(1 for t in self.tools if t.get("type") in _BUILTIN_TOOLS)
        self.builtin_calls = 0

    def build(self) -> list[dict[str, Any]]:
        output: list[dict[str, Any]] = []
        output += [self._mcp_list_tools(tool) for tool in self.tools if tool["type"] == "mcp"]
        if self._reason(output):
            return output
        builtin = [tool for tool in self.tools if tool.get("type") in _BUILTIN_TOOLS]
        citations: list[dict[str, Any]] = []
        approval = None
        for tool in builtin:
            item, citation = self._builtin_call(tool)
            output.append(item)
            self.builtin_calls += 1
            if citation is not None:
                citations.append(citation)
            if item["type"] == "mcp_approval_request":
                approval = item
        if approval is not None:
            return output
        if builtin and self._reason(output):
            return output
        call = self._function_call()
        if call is not None:
            output.append(call)
            self._spend(len(split_tokens(str(call.get("arguments", call.get("input"))))) + 1)
            return output
        output.append(self._message(citations))
        return output

    def _spend(self, tokens: int) -> None:
        self.output_tokens += tokens

    def _reason(self, output: list[dict[str, Any]]) -> bool:
        """Add a reasoning item; True when it used up ``max_output_tokens``."""
        tokens = EFFORT_TOKENS[self.effort]
        if not tokens:
            return False
        item: dict[str, Any] = {"id": hex_id("rs_"), "type": "reasoning", "summary": []}
        if self.summary is not None:
            item["summary"] = [{"type": "summary_text", "text": "**Answering** Writing a reply."}]
        if "reasoning.encrypted_content" in self.include:
            item["encrypted_content"] = "gAAAAAB" + stable_digest(item["id"], length=64)
        output.append(item)
        if self.limit is not None and self.output_tokens + tokens >= self.limit:
            tokens = self.limit - self.output_tokens
            self.incomplete = True
        self.reasoning_tokens += tokens
        self._spend(tokens)
        return self.incomplete

    def _mcp_list_tools(self, tool: dict[str, Any]) -> dict[str, Any]:
        names = _allowed_tools(tool) or ["ask_question"]
        return {
            "id": hex_id("mcpl_"),
            "type": "mcp_list_tools",
            "server_label": tool.get("server_label"),
            "tools": [
                {
                    "name": name,
                    "description": f"The {name} tool of {tool.get('server_label')}.",
                    "input_schema": {
                        "type": "object",
                        "properties": {"question": {"type": "string"}},
                        "required": ["question"],
                        "additionalProperties": False,
                    },
                    "annotations": {"read_only": False},
                }
                for name in names
            ],
        }

    def _builtin_call(self, tool: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        query = _last_user_text(self.body)
        kind = str(tool.get("type"))
        if kind.startswith("web_search"):
            action: dict[str, Any] = {"type": "search", "query": query, "queries": [query]}
            if "web_search_call.action.sources" in self.include:
                # Weather-like questions are served by OpenAI's own data API (recorded).
                source = (
                    {"type": "api", "name": "oai-weather"}
                    if _DATA_API_QUERY.search(query)
                    else {"type": "url", "url": EXAMPLE_URL}
                )
                action["sources"] = [source]
            item: dict[str, Any] = {
                "id": hex_id("ws_"),
                "type": "web_search_call",
                "status": "completed",
                "action": action,
            }
            citation = {"type": "url_citation", "title": "Example Domain", "url": EXAMPLE_URL}
            return item, citation
        if kind == "file_search":
            results: list[dict[str, Any]] | None = None
            if "file_search_call.results" in self.include:
                results = [
                    {
                        "file_id": "file-fake0000000000000000",
                        "filename": "example.txt",
                        "score": 0.9,
                        "text": "Example file content.",
                        "attributes": {},
                    }
                ]
            item = {
                "id": hex_id("fs_"),
                "type": "file_search_call",
                "status": "completed",
                "queries": [query],
                "results": results,
            }
            citation = {
                "type": "file_citation",
                "file_id": "file-fake0000000000000000",
                "filename": "example.txt",
            }
            return item, citation
        if kind == "code_interpreter":
            outputs: list[dict[str, Any]] | None = None
            if "code_interpreter_call.outputs" in self.include:
                outputs = [{"type": "logs", "logs": "42"}]
            item = {
                "id": hex_id("ci_"),
                "type": "code_interpreter_call",
                "status": "completed",
                "code": "print(6 * 7)\n",
                "container_id": hex_id("cntr_"),
                "outputs": outputs,
            }
            return item, None
        return self._mcp_call(tool, query), None

    def _mcp_call(self, tool: dict[str, Any], query: str) -> dict[str, Any]:
        name = (_allowed_tools(tool) or ["ask_question"])[0]
        arguments = compact({"question": query})
        if not self._approved(tool):
            return {
                "id": hex_id("mcpr_"),
                "type": "mcp_approval_request",
                "arguments": arguments,
                "name": name,
                "server_label": tool.get("server_label"),
            }
        return {
            "id": hex_id("mcp_"),
            "type": "mcp_call",
            "approval_request_id": None,
            "arguments": arguments,
            "error": None,
            "name": name,
            "output": f"The {name} tool answered.",
            "server_label": tool.get("server_label"),
            "status": "completed",
        }

    def _approved(self, tool: dict[str, Any]) -> bool:
        approval = tool.get("require_approval", "always")
        if approval == "never" or (isinstance(approval, dict) and "never" in approval):
            return True
        items = self.body.get("input")
        return isinstance(items, list) and any(
            isinstance(item, dict) and item.get("type") == "mcp_approval_response" for item in items
        )

    def _function_call(self) -> dict[str, Any] | None:
        choice = self.body.get("tool_choice")
        callable_tools = [t for t in self.tools if t.get("type") in ("function", "custom")]
        items = self.body.get("input")
        last = items[-1] if isinstance(items, list) and items else None
        if not callable_tools or choice == "none":
            return None
        if isinstance(last, dict) and last.get("type") in _TOOL_RESULTS:
            return None
        wanted = choice.get("name") if isinstance(choice, dict) else None
        tool = next((t for t in callable_tools if t.get("name") == wanted), callable_tools[0])
        call_id = random_id("call_", 24)
        if tool["type"] == "custom":
            return {
                "id": hex_id("ctc_"),
                "type": "custom_tool_call",
                "status": "completed",
                "call_id": call_id,
                "input": "example",
                "name": tool.get("name"),
            }
        return {
            "id": hex_id("fc_"),
            "type": "function_call",
            "status": "completed",
            "arguments": compact(example_for_schema(tool.get("parameters") or {})),
            "call_id": call_id,
            "name": tool.get("name"),
        }

    def _message(self, citations: list[dict[str, Any]]) -> dict[str, Any]:
        pieces = split_tokens(self._text())
        status = "completed"
        if self.limit is not None and self.output_tokens + len(pieces) > self.limit:
            pieces = pieces[: max(0, self.limit - self.output_tokens)]
            status = "incomplete"
            self.incomplete = True
        self._spend(len(pieces))
        text = "".join(pieces)
        annotations = [_place(citation, len(text)) for citation in citations]
        logprobs: list[dict[str, Any]] = []
        if "message.output_text.logprobs" in self.include:
            logprobs = [_logprob(piece) for piece in pieces]
        message: dict[str, Any] = {
            "id": hex_id("msg_"),
            "type": "message",
            "status": status,
            "content": [
                {
                    "type": "output_text",
                    "annotations": annotations,
                    "logprobs": logprobs,
                    "text": text,
                }
            ],
            "role": "assistant",
        }
        if self.ctx.model.phase:
            message["phase"] = "final_answer"
        return message

    def _text(self) -> str:
        text_format = (self.body.get("text") or {}).get("format")
        if isinstance(text_format, dict) and text_format.get("type") == "json_schema":
            return compact(example_for_schema(text_format.get("schema") or {}))
        if isinstance(text_format, dict) and text_format.get("type") == "json_object":
            return compact({"message": self.ctx.reply})
        return self.ctx.reply


def _allowed_tools(tool: dict[str, Any]) -> list[str]:
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):
        allowed = allowed.get("tool_names")
    return [str(name) for name in allowed] if isinstance(allowed, list) else []


def _place(citation: dict[str, Any], length: int) -> dict[str, Any]:
    if citation["type"] == "url_citation":
        return {**citation, "start_index": 0, "end_index": length}
    return {**citation, "index": length}


def _logprob(piece: str) -> dict[str, Any]:
    return {"token": piece, "logprob": 0.0, "bytes": list(piece.encode()), "top_logprobs": []}


def _response_object(ctx: Context, instructions: Any, prompt_echo: Any) -> dict[str, Any]:
    body = ctx.body
    text: dict[str, Any] = body["text"] if isinstance(body.get("text"), dict) else {}
    text_format: dict[str, Any] = (
        text["format"] if isinstance(text.get("format"), dict) else {"type": "text"}
    )
    if text_format.get("type") == "json_schema":
        text_format = {
            "type": "json_schema",
            "description": text_format.get("description"),
            "name": text_format.get("name"),
            "schema": text_format.get("schema"),
            "strict": text_format.get("strict", False),
        }
    reasoning: dict[str, Any] = body["reasoning"] if isinstance(body.get("reasoning"), dict) else {}
    effort = ctx.reasoning_effort(reasoning.get("effort")) if ctx.model.reasoning else None
    summary = reasoning.get("summary")
    tier = body.get("service_tier")
    response: dict[str, Any] = {
        "id": hex_id("resp_"),
        "object": "response",
        "created_at": ctx.created,
        "status": "in_progress",
        "background": ctx.flag("background"),
        "billing": {"payer": "developer"},
        "completed_at": None,
        "error": None,
        "frequency_penalty": _number(body.get("frequency_penalty"), 0.0),
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": ctx.model.snapshot,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "presence_penalty": _number(body.get("presence_penalty"), 0.0),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": body.get("prompt_cache_retention"),
        "reasoning": {
            "effort": effort,
            "summary": _SUMMARY_ECHO.get(summary) if isinstance(summary, str) else None,
        },
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": tier if tier in ("flex", "priority", "scale") else "default",
        "store": body.get("store", True),
        "temperature": _number(body.get("temperature"), 1.0),
        "text": {"format": text_format, "verbosity": text.get("verbosity", "medium")},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [_echo_tool(tool) for tool in body.get("tools") or () if isinstance(tool, dict)],
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": _number(body.get("top_p"), 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }
    if prompt_echo is not None:
        response["prompt"] = prompt_echo
    return response


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool definition as the real API echoes it back, defaults filled in (recorded)."""
    kind = tool.get("type")
    location = {"type": "approximate", "city": None, "country": "US", "region": None}
    location["timezone"] = None
    if kind == "function":
        return {
            "type": "function",
            "description": tool.get("description") or None,
            "name": tool.get("name"),
            "parameters": tool.get("parameters"),
            "strict": tool.get("strict", True),
        }
    if isinstance(kind, str) and kind.startswith("web_search_preview"):
        return {
            "type": kind,
            "search_context_size": tool.get("search_context_size", "medium"),
            "user_location": tool.get("user_location") or location,
        }
    if isinstance(kind, str) and kind.startswith("web_search"):
        return {
            "type": kind,
            "filters": tool.get("filters"),
            "search_context_size": tool.get("search_context_size", "medium"),
            "user_location": tool.get("user_location") or location,
        }
    if kind == "file_search":
        return {
            "type": "file_search",
            "filters": tool.get("filters"),
            "max_num_results": tool.get("max_num_results", 20),
            "ranking_options": tool.get("ranking_options")
            or {"ranker": "auto", "score_threshold": 0.0},
            "vector_store_ids": tool.get("vector_store_ids", []),
        }
    if kind == "mcp":
        # The real API never echoes MCP credentials or the server path.
        echoed = dict(tool)
        if isinstance(echoed.get("headers"), dict):
            echoed["headers"] = dict.fromkeys(echoed["headers"], "<redacted>")
        if isinstance(echoed.get("server_url"), str):
            parts = urlsplit(echoed["server_url"])
            echoed["server_url"] = f"{parts.scheme}://{parts.netloc}/<redacted>"
        return echoed
    return dict(tool)
