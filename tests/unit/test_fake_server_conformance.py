"""Conformance of ``llmmeter.testing.FakeOpenAI`` with recorded real OpenAI exchanges.

Every non-Azure exchange in ``../shared/openai-recordings/exchanges`` (or the folder named
by ``LLMMETER_RECORDINGS``) is one test: its recorded request (method, path, JSON body)
goes to the fake server over real HTTP, and the answer must have the recording's shape.
Where the folder is missing the tests skip, except under ``CI``, where they fail.

How "the same shape" is decided
-------------------------------
Values are compared by JSON type (null, bool, number, string, array, object); numbers
are one type because JSON has one. Walking both documents together:

- **Objects.** Every key of the recording must be in the fake's object and every key of
  the fake's object must be in the recording's, with one tolerance taken from the data:
  the real API added and dropped fields over the years (``service_tier``,
  ``obfuscation``, ``billing``, ``reasoning.generate_summary`` -> ``summary``, ...). So a
  key may be missing on one side when the recordings themselves show objects at that
  path both with and without it. A key the real API never sent there is always an error.
- **Nulls.** A null on one side and a value on the other is accepted only when the
  recordings show both null and that type at that path (``system_fingerprint``, a
  chat message's ``content`` next to tool calls, ``refusal``).
- **Discriminators.** The values of ``object``, ``type``, ``role``, ``finish_reason``,
  ``status`` and ``phase`` must be equal, not just their types.
- **Typed lists** (every element an object with a string ``type``, such as Responses
  ``output``, message ``content``, chat ``tool_calls``): consecutive elements of the same
  type form a run, and the sequences of run types must be equal. How many tool calls or
  searches a model makes in a row is its own choice; whether it makes them is not. Each
  fake element is compared with the recorded element at the same place in its run, or
  the run's last one.
- **Other lists**: both empty or both non-empty (unless the recordings show that path
  both ways); each fake element is compared with the recorded element at the same index,
  or the last one when the fake's list is longer. ``choices`` and embedding ``data`` must
  have equal lengths, and embedding vectors equal dimensions.

Objects are compared at a *path*: keys and list elements (``[type=message]`` for typed
ones) from a root. Objects that are the same thing share a root wherever they appear: a
Responses event's ``response`` is the response body, its ``item`` an ``output`` element,
a chunk's ``usage`` the body's ``usage``. Chat chunks are rooted by whether the request
asked for ``include_usage``, because that decides whether chunks carry ``usage``.

Streams: chat and legacy completions must end with ``[DONE]``; per choice, the sequence
of chunk kinds (role, content, tool calls, finish) with repeats collapsed must be equal,
and so must the stream-level chunks (usage, moderation). Responses streams must have the
same sequence of event types, with repeated ``*.delta`` events counted as one. Each fake
chunk or event is shape-compared with the first recorded one of the same kind.

Beyond shape: status, the reported ``model``, whether a usage object is present,
``cached_tokens``/``reasoning_tokens``/``cache_write_tokens`` > 0 where the recording has
them (cached exchanges send their request once before, to warm the cache), and error
``type``/``code``/``param`` (and the message, when the fake derives the error from the
request) are equal.

Documented tolerances (each names the real-API behaviour it stands for):
``LENGTH_DECIDED_BY_MODEL``, ``MODEL_RENAMED``, ``ANNOTATIONS_ARE_MODEL_CHOICE``,
``COMMENTARY_PREAMBLES`` and ``OPAQUE_DATA`` below. Errors that cannot be derived from a
request are scripted in ``SCRIPTED``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmmeter.testing import FakeOpenAI

Path_ = tuple[str, ...]

RECORDINGS = Path(
    os.environ.get("LLMMETER_RECORDINGS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "openai-recordings"
)
DISCRIMINATORS = frozenset({"object", "type", "role", "finish_reason", "status", "phase"})
API_KEY = "sk-test-conformance"

#: The real model's answer ran past ``max_tokens=100`` (``finish_reason: "length"``);
#: the fake's fixed reply is shorter, so it stops. Hitting a limit depends on how long
#: the model chose to talk, which no fake can know. ``stop`` and ``length`` are accepted.
LENGTH_DECIDED_BY_MODEL = frozenset(
    {
        "chat__prompt-cache-hit-finish-length__gpt-4o__ddtrace.json",
        "chat-stream__cached-tokens-include-usage__gpt-4o__ddtrace.json",
    }
)

#: The API renamed a model in its answers between recordings; the fake reports the newer
#: name (davinci-002 streamed as ``davinci-002`` in 2024, ``davinci:2023-07-21-v2`` in 2026).
MODEL_RENAMED = {
    "completions-stream__no-usage__davinci-002__openllmetry.json": "davinci:2023-07-21-v2"
}

#: Whether an answer cites sources (``annotations``, ``response.output_text.annotation.added``)
#: is the model's choice even when it searched: the recorded gpt-5 web search cited
#: nothing, gpt-4.1's cited three pages. An empty list on either side is accepted.
ANNOTATIONS_ARE_MODEL_CHOICE = frozenset({"annotations"})

#: gpt-5.4+ models may narrate before a tool call with a ``message`` whose ``phase`` is
#: ``"commentary"`` (the recorded request asked them to). Such preambles are the model's
#: prose, not protocol; they are removed from the recording before comparing.
COMMENTARY_PREAMBLES = "commentary"

#: Values that are data owned by someone else, not API shape: only their JSON type is
#: compared. An MCP tool's ``input_schema`` is whatever the remote MCP server publishes.
OPAQUE_DATA = frozenset({"input_schema"})

#: The template stored on the real account for the prompt-template exchange.
PROMPT_TEMPLATE_USER = (
    "Analyze the following content from the user:\n\nText message: {{user_message}}\n"
    "Image reference 1: {{user_image_1}}\nDocument reference: {{user_file}}\n"
    "Image reference 2: {{user_image_2}}\n\nPlease provide a comprehensive analysis."
)


def _script_wrong_key(server: FakeOpenAI, recorded: dict[str, Any]) -> None:
    server.api_key = "sk-a-different-key"


def _script_bad_image(server: FakeOpenAI, recorded: dict[str, Any]) -> None:
    error = recorded["error"]
    server.fail_next(400, message=error["message"], code=error["code"])


def _script_prompt(server: FakeOpenAI, recorded: dict[str, Any]) -> None:
    server.add_prompt(
        "pmpt_69201db75c4c81959c01ea6987ab023c070192cd2843dec0",
        model="o4-mini",
        user=PROMPT_TEMPLATE_USER,
    )


#: Setup for exchanges whose outcome depends on server state, not on the request: a
#: wrong API key (the key is not in the recording), an image the server failed to
#: download, a prompt template stored on the account.
SCRIPTED: dict[str, Callable[[FakeOpenAI, dict[str, Any]], None]] = {
    "chat__error-401-invalid-api-key__gpt-4o__openinference.json": _script_wrong_key,
    "completions-stream__error-401__text-curie-001__ddtrace.json": _script_wrong_key,
    "responses__error-401-invalid-api-key__gpt-4.1__ddtrace.json": _script_wrong_key,
    "chat__error-400-invalid-image-url__gpt-4o-mini__openllmetry.json": _script_bad_image,
    "responses__prompt-template-image-and-pdf__o4-mini__ddtrace.json": _script_prompt,
}


# -- loading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    name: str
    row: dict[str, Any]
    request: dict[str, Any]
    response: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return str(self.row["endpoint"])

    @property
    def include_usage(self) -> bool:
        options = (self.request.get("body") or {}).get("stream_options") or {}
        return bool(options.get("include_usage"))


def _load() -> list[Exchange]:
    rows = json.loads((RECORDINGS / "INDEX.json").read_text())
    exchanges = []
    for row in rows:
        if "azure" in row["tags"]:
            continue
        data = json.loads((RECORDINGS / row["file"]).read_text())
        name = Path(row["file"]).name
        exchanges.append(Exchange(name, row, data["request"], data["response"]))
    return exchanges


EXCHANGES = _load() if RECORDINGS.is_dir() else []


def _params() -> list[Any]:
    if not EXCHANGES:
        return [pytest.param(None, id="recordings-missing")]
    return [
        pytest.param(exchange, id=exchange.name.removesuffix(".json")) for exchange in EXCHANGES
    ]


# -- paths: where a value sits, shared by observation and comparison ----------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_typed_list(value: list[Any]) -> bool:
    return bool(value) and all(
        isinstance(item, dict) and isinstance(item.get("type"), str) for item in value
    )


def _element_path(path: Path_, item: Any) -> Path_:
    if isinstance(item, dict) and isinstance(item.get("type"), str):
        return (*path, f"[type={item['type']}]")
    return (*path, "[]")


def _child_path(root: Path_, path: Path_, key: str, value: Any) -> Path_:
    """The path of ``key`` inside the object at ``path``; shared objects are re-rooted."""
    endpoint = root[0]
    if len(path) == 3 and path[1] == "event":
        if key == "response" and isinstance(value, dict):
            return (endpoint,)
        if key == "item" and isinstance(value, dict):
            return _element_path((endpoint, "output"), value)
        if key == "part" and isinstance(value, dict):
            if "summary_part" in path[2]:
                return _element_path((endpoint, "output", "[type=reasoning]", "summary"), value)
            return _element_path((endpoint, "output", "[type=message]", "content"), value)
    if len(path) == 3 and path[1] == "chunk" and key == "usage" and isinstance(value, dict):
        return (endpoint, "usage")
    return (*path, key)


@dataclass
class Observed:
    """What the real API has been seen to send at each path, over all recordings."""

    objects: Counter[Path_] = field(default_factory=Counter)
    keys: dict[Path_, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    types: dict[Path_, set[str]] = field(default_factory=lambda: defaultdict(set))
    list_sizes: dict[Path_, set[bool]] = field(default_factory=lambda: defaultdict(set))

    def walk(self, root: Path_, path: Path_, value: Any) -> None:
        self.types[path].add(_json_type(value))
        if isinstance(value, dict):
            self.objects[path] += 1
            for key, child in value.items():
                self.keys[path][key] += 1
                self.walk(root, _child_path(root, path, key, child), child)
        elif isinstance(value, list):
            self.list_sizes[path].add(bool(value))
            for item in value:
                self.walk(root, _element_path(path, item), item)

    def optional(self, path: Path_, key: str) -> bool:
        return 0 < self.keys[path][key] < self.objects[path]

    def known(self, path: Path_, key: str) -> bool:
        return self.keys[path][key] > 0


# -- streams ------------------------------------------------------------------------------


def _sse_blocks(text: str) -> list[tuple[str | None, str]]:
    blocks = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        blocks.append((name, "\n".join(data)))
    return blocks


def _chunks(text: str) -> tuple[list[dict[str, Any]], bool]:
    """Chat/Completions chunks and whether the stream ended with ``[DONE]``."""
    blocks = [data for _, data in _sse_blocks(text)]
    done = bool(blocks) and blocks[-1] == "[DONE]"
    return [json.loads(data) for data in blocks if data != "[DONE]"], done


def _chunk_kinds(choice: dict[str, Any]) -> list[str]:
    delta = choice.get("delta") or {}
    kinds = []
    if "role" in delta:
        kinds.append("role")
    for call in delta.get("tool_calls") or ():
        kinds.append("tool_call" if call.get("id") else "tool_call_arguments")
    if delta.get("function_call"):
        named = "name" in delta["function_call"]
        kinds.append("function_call" if named else "function_call_arguments")
    if delta.get("content") or choice.get("text"):
        kinds.append("content")
    if choice.get("finish_reason"):
        kinds.append("finish")
    return kinds or ["empty"]


def _stream_level_kind(chunk: dict[str, Any]) -> str:
    if chunk.get("usage"):
        return "usage"
    if "moderation" in chunk:
        return "moderation"
    return "empty"


def _collapse(items: list[str]) -> list[str]:
    return [item for index, item in enumerate(items) if index == 0 or items[index - 1] != item]


#: How many tool calls a model makes is its choice: all call chunks count as one kind.
_COARSE = {
    "tool_call": "tool_calls",
    "tool_call_arguments": "tool_calls",
    "function_call_arguments": "function_call",
}


def _chunk_structure(chunks: list[dict[str, Any]]) -> tuple[dict[int, list[str]], list[str]]:
    per_choice: dict[int, list[str]] = defaultdict(list)
    stream_level = []
    for chunk in chunks:
        if not chunk.get("choices"):
            stream_level.append(_stream_level_kind(chunk))
        for choice in chunk.get("choices") or ():
            kinds = [_COARSE.get(kind, kind) for kind in _chunk_kinds(choice)]
            per_choice[int(choice.get("index", 0))] += kinds
    return {index: _collapse(kinds) for index, kinds in per_choice.items()}, stream_level


def _chunk_signature(chunk: dict[str, Any]) -> tuple[str, ...]:
    if not chunk.get("choices"):
        return (_stream_level_kind(chunk),)
    return tuple(kind for choice in chunk["choices"] for kind in _chunk_kinds(choice))


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in _sse_blocks(text)]


def _event_types(events: list[dict[str, Any]]) -> list[str]:
    types = [
        str(event["type"])
        for event in events
        if event["type"] != "response.output_text.annotation.added"
    ]
    return [
        kind
        for index, kind in enumerate(types)
        if not (kind.endswith(".delta") and index and types[index - 1] == kind)
    ]


def _event_signature(event: dict[str, Any]) -> tuple[str, str]:
    inner = event.get("item") or event.get("part") or {}
    return str(event["type"]), str(inner.get("type", ""))


# -- observations over all recordings ---------------------------------------------------


def _drop_commentary(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("output"), list):
        output = [item for item in body["output"] if item.get("phase") != COMMENTARY_PREAMBLES]
        return {**body, "output": output}
    return body


def _roots(exchange: Exchange, response: dict[str, Any]) -> Iterator[tuple[Path_, Any]]:
    """The (root path, document) pairs of one answer, for observing and comparing."""
    endpoint = exchange.endpoint
    if "body" in response:
        body = response["body"]
        root: Path_ = ("error",) if response["status"] >= 400 else (endpoint,)
        yield root, _drop_commentary(body)
        return
    if endpoint == "/v1/responses":
        for event in _events(response["sse"]):
            yield (endpoint, "event", str(event["type"])), event
        return
    chunks, _ = _chunks(response["sse"])
    flavour = "include_usage" if exchange.include_usage else "no_usage"
    for chunk in chunks:
        yield (endpoint, "chunk", flavour), chunk


def _observe() -> Observed:
    observed = Observed()
    for exchange in EXCHANGES:
        for root, document in _roots(exchange, exchange.response):
            observed.walk(root, root, document)
    return observed


OBSERVED = _observe()


# -- comparison ---------------------------------------------------------------------------


@dataclass
class Comparison:
    """Walks a recorded and a fake document together and collects every difference."""

    exchange: Exchange
    observed: Observed
    problems: list[str] = field(default_factory=list)

    def fail(self, path: Path_, message: str) -> None:
        self.problems.append(f"{'.'.join(path)}: {message}")

    def compare(self, root: Path_, path: Path_, recorded: Any, fake: Any) -> None:
        recorded_type, fake_type = _json_type(recorded), _json_type(fake)
        if recorded_type != fake_type:
            seen = self.observed.types[path]
            if "null" in (recorded_type, fake_type) and {recorded_type, fake_type} <= seen:
                return
            self.fail(path, f"recorded {recorded_type}, fake sent {fake_type} ({fake!r:.80})")
            return
        if path[-1] in OPAQUE_DATA:
            return
        if isinstance(recorded, dict):
            self._compare_objects(root, path, recorded, fake)
        elif isinstance(recorded, list):
            self._compare_lists(root, path, recorded, fake)

    def _compare_objects(
        self, root: Path_, path: Path_, recorded: dict[str, Any], fake: dict[str, Any]
    ) -> None:
        for key in recorded.keys() - fake.keys():
            if not self.observed.optional(path, key):
                self.fail(path, f"missing key {key!r}")
        for key in fake.keys() - recorded.keys():
            if not self.observed.known(path, key):
                self.fail(path, f"unexpected key {key!r} (the real API never sent it here)")
        for key in recorded.keys() & fake.keys():
            child = _child_path(root, path, key, recorded[key])
            if key in DISCRIMINATORS and isinstance(recorded[key], str):
                self._compare_discriminator(child, key, recorded[key], fake[key])
            self.compare(root, child, recorded[key], fake[key])

    def _compare_discriminator(self, path: Path_, key: str, recorded: str, fake: Any) -> None:
        if recorded == fake:
            return
        if (
            key == "finish_reason"
            and self.exchange.name in LENGTH_DECIDED_BY_MODEL
            and {recorded, fake} == {"stop", "length"}
        ):
            return
        self.fail(path, f"{key} is {fake!r}, recorded {recorded!r}")

    def _compare_lists(
        self, root: Path_, path: Path_, recorded: list[Any], fake: list[Any]
    ) -> None:
        if not recorded or not fake:
            if bool(recorded) != bool(fake) and not self._may_be_empty(path):
                self.fail(path, f"recorded {len(recorded)} items, fake sent {len(fake)}")
            return
        if path[-1] in ("choices", "data") and len(recorded) != len(fake):
            self.fail(path, f"recorded {len(recorded)} items, fake sent {len(fake)}")
        if _is_typed_list(recorded) and _is_typed_list(fake):
            self._compare_runs(root, path, recorded, fake)
            return
        for index, item in enumerate(fake):
            expected = recorded[min(index, len(recorded) - 1)]
            self.compare(root, _element_path(path, expected), expected, item)

    def _may_be_empty(self, path: Path_) -> bool:
        if path[-1] in ANNOTATIONS_ARE_MODEL_CHOICE:
            return True
        return self.observed.list_sizes[path] == {True, False} and not any(
            segment.startswith("[type=") for segment in path[-1:]
        )

    def _compare_runs(
        self, root: Path_, path: Path_, recorded: list[dict[str, Any]], fake: list[dict[str, Any]]
    ) -> None:
        recorded_runs = _runs(recorded)
        fake_runs = _runs(fake)
        recorded_types = [run[0]["type"] for run in recorded_runs]
        fake_types = [run[0]["type"] for run in fake_runs]
        if recorded_types != fake_types:
            self.fail(path, f"item types {fake_types}, recorded {recorded_types}")
            return
        for recorded_run, fake_run in zip(recorded_runs, fake_runs, strict=True):
            for index, item in enumerate(fake_run):
                expected = recorded_run[min(index, len(recorded_run) - 1)]
                self.compare(root, _element_path(path, expected), expected, item)


def _runs(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    runs: list[list[dict[str, Any]]] = []
    for item in items:
        if runs and runs[-1][0]["type"] == item["type"]:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


# -- talking to the fake ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    text: str

    def as_response(self) -> dict[str, Any]:
        if self.content_type.startswith("text/event-stream"):
            return {"status": self.status, "sse": self.text}
        return {"status": self.status, "body": json.loads(self.text)}


def _send(server: FakeOpenAI, request: dict[str, Any]) -> Answer:
    port = int(server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        path = request["path"] + (f"?{request['query']}" if request.get("query") else "")
        payload = None if request.get("body") is None else json.dumps(request["body"])
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        connection.request(request["method"], path, body=payload, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
        return Answer(response.status, response.getheader("content-type") or "", text)
    finally:
        connection.close()


def _find_usage(document: Any) -> dict[str, Any] | None:
    if isinstance(document, dict):
        if isinstance(document.get("usage"), dict):
            return dict(document["usage"])
        for value in document.values():
            found = _find_usage(value)
            if found is not None:
                return found
    elif isinstance(document, list):
        for value in reversed(document):
            found = _find_usage(value)
            if found is not None:
                return found
    return None


def _documents(response: dict[str, Any]) -> list[Any]:
    if "body" in response:
        return [response["body"]]
    return [json.loads(data) for _, data in _sse_blocks(response["sse"]) if data != "[DONE]"]


def _detail(usage: dict[str, Any], name: str) -> int:
    for key in (
        "prompt_tokens_details",
        "input_tokens_details",
        "completion_tokens_details",
        "output_tokens_details",
    ):
        details = usage.get(key) or {}
        if isinstance(details.get(name), int):
            return int(details[name])
    return 0


def _model_of(response: dict[str, Any]) -> str | None:
    for document in _documents(response):
        if isinstance(document, dict):
            if isinstance(document.get("model"), str) and document["model"]:
                return str(document["model"])
            inner = document.get("response")
            if isinstance(inner, dict) and isinstance(inner.get("model"), str):
                return str(inner["model"])
    return None


_KEY_IN_MESSAGE = re.compile(r"Incorrect API key provided: \S+\.")


# -- the test -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=API_KEY) as fake:
        yield fake


@pytest.mark.parametrize("exchange", _params())
def test_fake_answers_like_the_recording(
    recording_server: FakeOpenAI, exchange: Exchange | None
) -> None:
    server = recording_server
    if exchange is None:
        reason = f"recorded exchanges not found at {RECORDINGS} (set LLMMETER_RECORDINGS)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server.reset()
    server.api_key = API_KEY
    recorded = exchange.response
    script = SCRIPTED.get(exchange.name)
    if script is not None:
        script(server, recorded.get("body") or {})
    row = exchange.row
    if (row.get("cached_tokens") or 0) > 0:
        _send(server, exchange.request)

    answer = _send(server, exchange.request)
    assert answer.status == recorded["status"], answer.text[:500]
    fake = answer.as_response()
    assert ("sse" in fake) == ("sse" in recorded), answer.content_type

    comparison = Comparison(exchange, OBSERVED)
    if "sse" in recorded:
        _compare_streams(comparison, exchange, recorded, fake)
    else:
        for (root, recorded_doc), (_, fake_doc) in zip(
            _roots(exchange, recorded), _roots(exchange, fake), strict=True
        ):
            comparison.compare(root, root, recorded_doc, fake_doc)
    assert not comparison.problems, "\n".join(comparison.problems)

    if recorded["status"] >= 400:
        _check_error(exchange, recorded["body"], fake["body"])
        return
    _check_values(exchange, recorded, fake)


def _compare_streams(
    comparison: Comparison,
    exchange: Exchange,
    recorded: dict[str, Any],
    fake: dict[str, Any],
) -> None:
    recorded_pairs = list(_roots(exchange, recorded))
    fake_pairs = list(_roots(exchange, fake))
    if exchange.endpoint == "/v1/responses":
        recorded_events = [document for _, document in recorded_pairs]
        fake_events = [document for _, document in fake_pairs]
        assert _event_types(fake_events) == _event_types(recorded_events)
        by_signature: dict[tuple[str, str], tuple[Path_, Any]] = {}
        for root, event in recorded_pairs:
            by_signature.setdefault(_event_signature(event), (root, event))
        for root, event in fake_pairs:
            if event["type"] == "response.output_text.annotation.added":
                continue
            _, expected = by_signature[_event_signature(event)]
            comparison.compare(root, root, expected, event)
        return
    recorded_chunks, recorded_done = _chunks(recorded["sse"])
    fake_chunks, fake_done = _chunks(fake["sse"])
    assert fake_done == recorded_done, "stream must end with data: [DONE]"
    assert _chunk_structure(fake_chunks) == _chunk_structure(recorded_chunks)
    signatures: dict[tuple[str, ...], dict[str, Any]] = {}
    for chunk in recorded_chunks:
        signatures.setdefault(_chunk_signature(chunk), chunk)
    root = recorded_pairs[0][0]
    for chunk in fake_chunks:
        signature = _chunk_signature(chunk)
        expected = signatures.get(signature) or next(
            (candidate for key, candidate in signatures.items() if set(key) & set(signature)),
            None,
        )
        assert expected is not None, f"no recorded chunk like {signature}"
        comparison.compare(root, root, expected, chunk)


def _check_error(exchange: Exchange, recorded: dict[str, Any], fake: dict[str, Any]) -> None:
    expected, got = recorded["error"], fake["error"]
    for key in ("type", "code", "param"):
        assert got.get(key) == expected.get(key), key
    if exchange.name not in SCRIPTED:
        # Derived from the request: the wording must be the real API's.
        assert got["message"] == expected["message"]
    elif expected.get("code") == "invalid_api_key":
        assert _KEY_IN_MESSAGE.sub("KEY.", got["message"]) == _KEY_IN_MESSAGE.sub(
            "KEY.", expected["message"]
        )


def _check_values(exchange: Exchange, recorded: dict[str, Any], fake: dict[str, Any]) -> None:
    row = exchange.row
    assert _model_of(fake) == MODEL_RENAMED.get(exchange.name, _model_of(recorded))

    fake_usage = next(
        (u for u in map(_find_usage, reversed(_documents(fake))) if u is not None), None
    )
    assert (fake_usage is not None) == (row["has_usage"] == "yes"), fake_usage
    if fake_usage is not None:
        for name in ("cached_tokens", "reasoning_tokens", "cache_write_tokens"):
            if (row.get(name) or 0) > 0:
                assert _detail(fake_usage, name) > 0, f"{name} in {fake_usage}"
    if exchange.endpoint == "/v1/embeddings":
        _check_dimensions(recorded["body"], fake["body"])


def _check_dimensions(recorded: dict[str, Any], fake: dict[str, Any]) -> None:
    def size(embedding: Any) -> int:
        if isinstance(embedding, str):
            return len(base64.b64decode(embedding)) // 4
        return len(embedding)

    assert [size(item["embedding"]) for item in fake["data"]] == [
        size(item["embedding"]) for item in recorded["data"]
    ]
