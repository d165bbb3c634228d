"""The table of OpenAI SDK methods llmmeter patches, and how to read their requests' attributes.

Adding an endpoint means adding rows to :data:`TARGETS`. Module paths name the package that
exports the resource class (``openai.resources.chat.completions``), which works for every
openai layout from 1.x to 3.x. Each module is patched when the SDK first imports it (openai
imports its resources on first use), so a row costs nothing until the application uses that
endpoint, and a module the installed SDK lacks is simply never seen. A row whose class or
method a given SDK version lacks is skipped, logged at debug level.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import _semconv as sc
from ._sdk import given
from ._usage import AUDIO, CHAT, COMPLETIONS, EMBEDDINGS, IMAGES, RESPONSES, Endpoint

AttributeValue = str | bool | int | float | list[str]


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """One patched SDK method. Each exists once (:data:`TARGETS`), so it compares and hashes
    by identity: it keys caches on every call, and a dataclass's field hash is Python code."""

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

STREAM_HELPER_CLOSES: Final = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream.close", False),
    ("openai.lib.streaming.chat._completions", "AsyncChatCompletionStream.close", True),
    ("openai.lib.streaming.responses._responses", "ResponseStream.close", False),
    ("openai.lib.streaming.responses._responses", "AsyncResponseStream.close", True),
)
"""``(module, "Class.close", is_async)``: the ``.stream()`` helpers' ``close``, which closes
the HTTP response the helper kept from the start rather than the stream it reads; hooked so
that the stream (whichever one it carries after a fallback) closes with it and its span ends."""


# --- reading a request -----------------------------------------------------------------


def wire_model(kwargs: Mapping[str, Any]) -> str | None:
    """The model that goes on the wire: ``extra_body["model"]`` overrides ``model``."""
    extra = kwargs.get("extra_body")
    if extra is not None and isinstance(extra, Mapping):  # None first: Mapping is an ABC
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


OPENAI_HOST: Final = "api.openai.com"
AZURE_OPENAI_HOST_SUFFIXES: Final = (".openai.azure.com", ".cognitiveservices.azure.com")


def reports_usage_only_when_asked(host: str | None, *, azure: bool) -> bool:
    """The server is OpenAI's or Azure OpenAI's own API, whose streams carry the usage chunk
    only when the request asks for it (``stream_options.include_usage``): asking for it and
    hiding that chunk again shows the user exactly what they would see without llmmeter.

    Any other server may send it unasked (vLLM with forced usage, LiteLLM's
    ``always_include_stream_usage``, a mock replaying recorded streams); hiding it there would
    take a chunk from the user, so llmmeter asks there only when told to."""
    if azure:
        return True
    if not host:
        return False
    host = host.lower()
    return host == OPENAI_HOST or host.endswith(AZURE_OPENAI_HOST_SUFFIXES)


RAW_RESPONSE_HEADER: Final = "x-stainless-raw-response"
"""Set by ``with_raw_response`` / ``with_streaming_response`` on the request they send."""


def is_raw_request(kwargs: Mapping[str, Any]) -> bool:
    """The call comes through ``with_raw_response`` or ``with_streaming_response``."""
    headers = kwargs.get("extra_headers")
    if not headers:
        return False
    return any(str(k).lower() == RAW_RESPONSE_HEADER for k in headers)


_NUMERIC: Final = (
    ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", sc.GEN_AI_REQUEST_TOP_P),
    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
)
_MAX_TOKENS_KEYS: Final = ("max_completion_tokens", "max_tokens", "max_output_tokens")


_NUMERIC_NAMES: Final = dict(_NUMERIC)
_OUTPUT_KEYS: Final = frozenset({"response_format", "text", "text_format"})
_REQUEST_KEYS: Final = frozenset(
    {
        *(key for key, _ in _NUMERIC),
        *_MAX_TOKENS_KEYS,
        "seed",
        "n",
        "stop",
        "stream",
        "service_tier",
        "encoding_format",
        "dimensions",
        *_OUTPUT_KEYS,
        "conversation",
    }
)
"""Every keyword argument :func:`request_attributes` reads: most calls pass none of them
beyond ``model`` and the input, and then it costs one set intersection."""


def request_attributes(endpoint: str, kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    """Add the semconv request attributes of the call's keyword arguments (no content)."""
    present = _REQUEST_KEYS.intersection(kwargs)
    if not present:
        return
    for key in present.intersection(_NUMERIC_NAMES):
        value = kwargs[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[_NUMERIC_NAMES[key]] = value
    if not present.isdisjoint(_MAX_TOKENS_KEYS):
        for key in _MAX_TOKENS_KEYS:
            value = kwargs.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = value
                break
    if "seed" in present:
        seed = kwargs["seed"]
        if isinstance(seed, int) and not isinstance(seed, bool):
            attrs[sc.GEN_AI_REQUEST_SEED] = seed
    if "n" in present:
        n = kwargs["n"]
        if isinstance(n, int) and not isinstance(n, bool) and n != 1:
            attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    if "stop" in present:
        stop = kwargs["stop"]
        if isinstance(stop, str):
            attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
        elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
            attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    if "stream" in present and kwargs["stream"] is True:
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    if "service_tier" in present:
        tier = kwargs["service_tier"]
        if isinstance(tier, str):
            attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = tier
    if endpoint == EMBEDDINGS:
        fmt = kwargs.get("encoding_format")
        if isinstance(fmt, str):
            attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [fmt]
        dims = kwargs.get("dimensions")
        if isinstance(dims, int) and not isinstance(dims, bool):
            attrs[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dims
    if not present.isdisjoint(_OUTPUT_KEYS):
        output_type = _output_type(endpoint, kwargs)
        if output_type is not None:
            attrs[sc.GEN_AI_OUTPUT_TYPE] = output_type
    if "conversation" in present:
        conversation = kwargs["conversation"]
        if isinstance(conversation, str):
            attrs[sc.GEN_AI_CONVERSATION_ID] = conversation
        elif isinstance(conversation, Mapping) and isinstance(conversation.get("id"), str):
            attrs[sc.GEN_AI_CONVERSATION_ID] = conversation["id"]


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
