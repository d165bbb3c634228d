"""``FakeOpenAI``: a loopback HTTP server that speaks the OpenAI API for tests.

It runs the standard library's threading HTTP server (HTTP/1.1, keep-alive, chunked
SSE) in a daemon thread, so the official SDK talks to it over real sockets exactly as it
talks to api.openai.com: same retries, same streaming code paths, same exceptions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from . import _errors
from ._answers import AnswerRule, make_rule, pick_reply
from ._audio import transcription, wrong_content_type
from ._cache import PromptCache
from ._catalog import Catalog, ModelInfo, ModelKind
from ._chat import chat_completion
from ._completions import completion
from ._embeddings import embeddings
from ._images import TINY_PNG, image_edit, image_generation
from ._multipart import Form, is_multipart, parse_form
from ._providers import FAMILIES, PROVIDERS, Family, dress, family_at, forces_usage
from ._request import Context, PromptTemplate
from ._responses_api import (
    ResponseStore,
    cancel_response,
    create_response,
    delete_response,
    retrieve_response,
)
from ._sse import Reply
from ._text import DEFAULT_REPLY, random_id

logger = logging.getLogger("llmmeter.testing")

#: Headers that carry credentials; the request log never keeps their values.
REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
REDACTED = "REDACTED"

#: What an Azure deployment with an unmapped, non-model name serves.
AZURE_DEFAULT_MODEL = "gpt-4o"

#: What an Azure deployment with an unmapped, non-model name serves on the media routes.
AZURE_MEDIA_MODELS = {
    "/images/generations": "gpt-image-1",
    "/images/edits": "gpt-image-1",
    "/audio/transcriptions": "whisper-1",
}

#: Where the URLs of dall-e answers point: the fake serves its tiny PNG there, without a
#: key, as a signed blob URL would.
IMAGE_FILES_PATH = "/fake-images"

_POST_ENDPOINTS = frozenset(
    {"/chat/completions", "/completions", "/embeddings", "/responses", *AZURE_MEDIA_MODELS}
)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake server answered, as a test wants to assert on it.

    Attributes:
        method: HTTP method, e.g. ``"POST"``.
        path: URL path as sent, e.g. ``"/v1/chat/completions"``.
        query: raw query string without ``?`` (``""`` when absent).
        headers: request headers with lower-case names; credentials are ``"REDACTED"``.
        body: the parsed JSON object; for ``multipart/form-data`` uploads the form's
            non-file fields (string values, ``name[]`` fields as a list under ``name``),
            never the files; None when the body was empty or could not be parsed.
        response_status: the HTTP status the server answered with.
        usage: the usage object the answer carried (body or stream), else None.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: dict[str, Any] | None
    response_status: int
    usage: dict[str, Any] | None


class _Scoped(Protocol):
    """A queued script: ``model`` None applies to any request, else to that model's."""

    @property
    def model(self) -> str | None: ...


_S = TypeVar("_S", bound=_Scoped)


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    message: str | None
    code: str | None
    error_type: str | None
    param: str | None
    retry_after: float | None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class _Drop:
    events: int
    model: str | None = None


@dataclass(frozen=True, slots=True)
class _Latency:
    first_chunk: float = 0.0
    per_chunk: float = 0.0
    response: float = 0.0


def _take_first(queue: deque[_S], model: str | None) -> _S | None:
    """Remove and return the oldest script that applies to a request for ``model``."""
    for index, item in enumerate(queue):
        if item.model is None or item.model == model:
            del queue[index]
            return item
    return None


def _check_model(model: str | None) -> None:
    if model is not None and (not isinstance(model, str) or not model):
        raise ValueError(f"model must be a non-empty model name or None, got {model!r}")


def _requested_model(body: Mapping[str, Any] | None, deployment: str | None) -> str | None:
    """The model a request asks for: the body's ``model``, else the Azure deployment."""
    name = body.get("model") if body is not None else None
    if isinstance(name, str) and name:
        return name
    return deployment


class FakeOpenAI:
    """A fake OpenAI API on 127.0.0.1 for tests that use the official SDK.

    Answers are deterministic: the same request gets the same body, except ids and
    timestamps. See docs/testing.md for the endpoints, the token-count rule and the
    error bodies.

    Args:
        api_key: when set, requests must carry this key (``Authorization: Bearer`` or
            Azure's ``api-key``) or they get the real 401 body; by default any key works.
        reply: the text every model answers with, unless :meth:`answer` says otherwise.
        host: interface to listen on; keep the loopback default in tests.
        port: port to listen on; 0 picks a free one.

    Example:
        >>> import openai
        >>> with FakeOpenAI() as server:
        ...     client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
        ...     reply = client.chat.completions.create(
        ...         model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
        ...     )
        ...     client.close()
        >>> reply.model, reply.usage.prompt_tokens
        ('gpt-4o-2024-08-06', 7)
    """

    providers: Mapping[str, str] = PROVIDERS
    """Each provider :meth:`client_as` answers as, with the base URL its clients keep."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        reply: str = DEFAULT_REPLY,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._initial = (api_key, reply)
        self.api_key = api_key
        self.reply = reply
        #: When true, requests carrying ``stream_options`` get a 400 naming it, like
        #: servers that predate the option.
        self.reject_stream_options = False
        #: When true, chat and completions streams end with the usage chunk even when the
        #: request did not ask for it, like vLLM with forced usage or LiteLLM's
        #: ``always_include_stream_usage``.
        self.always_include_usage = False
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._drops: deque[_Drop] = deque()
        self._latency = _Latency()
        self._model_latency: dict[str, _Latency] = {}
        self._answers: list[AnswerRule] = []
        self._catalog = Catalog()
        self._deployments: dict[str, str] = {}
        self._templates: dict[str, PromptTemplate] = {}
        self._cache = PromptCache()
        self._store = ResponseStore()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind and serve in a daemon thread; returns self for chaining."""
        if self._httpd is not None:
            raise RuntimeError("FakeOpenAI is already running")
        self._stopping.clear()
        httpd = _HTTPServer(self._address, _Handler, self)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeOpenAI:{httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the threads; safe to repeat."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        thread.join()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for worker in connections.values():
            worker.join(timeout=5)
        httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Root URL without ``/v1``, e.g. for ``AzureOpenAI(azure_endpoint=...)``."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAI is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """``url`` + ``/v1``: what ``openai.OpenAI(base_url=...)`` expects."""
        return f"{self.url}/v1"

    # -- other providers ---------------------------------------------------------------

    def client_as(self, provider: str, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client for ``provider`` (a name in :attr:`providers`): its
        ``base_url`` is the provider's real one, its transport sends every request here,
        and the fake answers as that provider would (model names, usage shapes). No
        network is used. ``kwargs`` go to ``openai.OpenAI`` (``api_key`` defaults to a
        dummy key, ``max_retries`` to 0).

        Example:
            >>> with FakeOpenAI() as server:
            ...     client = server.client_as("groq")
            ...     reply = client.chat.completions.create(
            ...         model="llama-3.3-70b-versatile",
            ...         messages=[{"role": "user", "content": "Hi"}],
            ...     )
            ...     client.close()
            >>> str(client.base_url), reply.usage.model_extra["queue_time"]
            ('https://api.groq.com/openai/v1/', 0.012)
        """
        return client_as(self.url, provider, **kwargs)

    def async_client_as(self, provider: str, **kwargs: Any) -> Any:
        """:meth:`client_as` for ``openai.AsyncOpenAI``."""
        return client_as(self.url, provider, asynchronous=True, **kwargs)

    # -- scripting -------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        message: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        model: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and an OpenAI error body.

        Each status gets the real API's wording (429 rate limit, 500 server error, ...);
        ``message``, ``code``, ``error_type`` and ``param`` override it, and
        ``code="insufficient_quota"`` gives the quota flavour of 429. 429 and 503 carry
        ``retry-after: 0``; ``retry_after`` (seconds) sets it on any status, plus
        ``retry-after-ms``, which the SDK prefers.

        With ``model``, only requests for that model (the body's ``model``, else the
        Azure deployment in the URL) use up these failures; requests for other models
        are answered normally and leave them queued. Failures queue in call order and a
        request takes the oldest one that applies to it, scoped or not.
        """
        if status < 400 or status > 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        _check_model(model)
        failure = _Failure(status, message, code, error_type, param, retry_after, model)
        with self._lock:
            self._failures.extend([failure] * times)

    def break_stream_after(self, events: int, *, model: str | None = None) -> None:
        """Cut the next streamed answer after ``events`` events, without its end.

        The connection closes mid-stream, as when a proxy or the network fails; the SDK
        raises while the caller iterates. With ``model``, only a stream for that model
        (as in ``fail_next``) is cut; streams for other models leave the cut queued.
        """
        if events < 0:
            raise ValueError(f"events must be >= 0, got {events}")
        _check_model(model)
        with self._lock:
            self._drops.append(_Drop(events, model))

    def set_latency(
        self,
        *,
        first_chunk: float = 0.0,
        per_chunk: float = 0.0,
        response: float = 0.0,
        model: str | None = None,
    ) -> None:
        """Delay answers, in seconds.

        Each call replaces the delays it sets as a whole: the global ones, or with
        ``model`` those of requests for that model (as in ``fail_next``), which then
        ignore the global ones; so ``set_latency(model=m)`` alone makes ``m`` fast
        under a slow global latency. ``reset()`` clears them all.

        Args:
            first_chunk: wait after a stream's headers, before its first event.
            per_chunk: wait before each later event of a stream.
            response: wait before a non-streamed answer (errors included).
            model: apply to requests for this model only.
        """
        for name, value in (
            ("first_chunk", first_chunk),
            ("per_chunk", per_chunk),
            ("response", response),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value}")
        _check_model(model)
        latency = _Latency(first_chunk, per_chunk, response)
        with self._lock:
            if model is None:
                self._latency = latency
            else:
                self._model_latency[model] = latency

    def answer(
        self, model: str, reply: str, *, prompt: str | re.Pattern[str] | None = None
    ) -> None:
        """Make ``model`` answer ``reply`` instead of ``self.reply``, perhaps only to some prompts.

        ``model`` is a model name or glob (``gpt-4o-mini*``), matched against the model the
        request asked for (the body's ``model``, else the Azure deployment), the model that
        serves it and its dated snapshot. ``prompt`` is a regex searched in the request's
        text: chat message contents, Responses ``instructions`` and ``input``, a completion's
        ``prompt``, one line per source. Rules apply in the order they were added: the first
        that matches a request gives its reply; no match leaves ``self.reply``. So add the
        narrow rules (with ``prompt``) before the broad ones. ``reset()`` removes them all.

        The reply text then goes through the usual rules: streamed one token per chunk,
        wrapped as ``{"message": reply}`` for ``json_object``, counted as output tokens; tool
        calls and ``json_schema`` answers do not use it.
        """
        rule = make_rule(model, reply, prompt)
        with self._lock:
            self._answers.append(rule)

    def add_model(
        self,
        name: str,
        *,
        snapshot: str | None = None,
        kind: ModelKind = "chat",
        reasoning: bool = False,
        dimensions: int = 1536,
    ) -> None:
        """Make ``name`` a known model (answered as ``snapshot``, default ``name``)."""
        with self._lock:
            self._catalog.add(
                name, snapshot=snapshot, kind=kind, reasoning=reasoning, dimensions=dimensions
            )

    def add_deployment(self, name: str, model: str) -> None:
        """Serve Azure deployment ``name`` with ``model``.

        Without this, a deployment named like a known model serves that model and any
        other deployment name serves ``AZURE_DEFAULT_MODEL`` (Azure names are free-form).
        Use ``fail_next(404)`` on an Azure route for ``DeploymentNotFound``.
        """
        with self._lock:
            self._deployments[name] = model

    def add_prompt(
        self, prompt_id: str, *, model: str, developer: str = "", user: str = ""
    ) -> None:
        """Store a Responses prompt template for requests with ``prompt={"id": prompt_id}``.

        ``developer`` and ``user`` are message templates; ``{{name}}`` is replaced by the
        request's variable (text inline, images and files as their own parts).
        """
        with self._lock:
            self._templates[prompt_id] = PromptTemplate(model, developer, user)

    def reset(self) -> None:
        """Forget everything since construction: log, scripts, latency, caches, additions."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._drops.clear()
            self._latency = _Latency()
            self._model_latency.clear()
            self._answers.clear()
            self._catalog.clear_added()
            self._deployments.clear()
            self._templates.clear()
        self.api_key, self.reply = self._initial
        self.reject_stream_options = False
        self.always_include_usage = False
        self._cache.clear()
        self._store.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    # -- used by the handler ---------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_failure(self, model: str | None) -> _Failure | None:
        with self._lock:
            return _take_first(self._failures, model)

    def _next_drop(self, model: str | None) -> int | None:
        with self._lock:
            drop = _take_first(self._drops, model)
        return drop.events if drop is not None else None

    def _current_latency(self, model: str | None) -> _Latency:
        with self._lock:
            if model is not None and model in self._model_latency:
                return self._model_latency[model]
            return self._latency

    def _reply_for(self, body: Mapping[str, Any], model: ModelInfo, deployment: str | None) -> str:
        """The reply text for one request: the first matching :meth:`answer` rule's, or ours."""
        with self._lock:
            rules = tuple(self._answers)
        if not rules:
            return self.reply
        names = (_requested_model(body, deployment) or "", model.name, model.snapshot)
        chosen = pick_reply(rules, names, body)
        return self.reply if chosen is None else chosen

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections[connection] = threading.current_thread()
            else:
                self._connections.pop(connection, None)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _resolve_model(
        self,
        name: Any,
        deployment: str | None,
        azure: bool,
        azure_default: str = AZURE_DEFAULT_MODEL,
    ) -> ModelInfo:
        with self._lock:
            wanted = deployment if deployment is not None else name
            if azure and isinstance(wanted, str) and wanted in self._deployments:
                wanted = self._deployments[wanted]
            info = self._catalog.lookup(wanted)
        if info is None and azure and isinstance(wanted, str):
            info = self._catalog.lookup(azure_default)
        if info is None:
            raise _errors.model_not_found(str(wanted))
        return info

    def _answer(self, method: str, endpoint: str, request: _Parsed) -> Reply:
        """Route one authenticated request to its endpoint builder."""
        parts = endpoint.strip("/").split("/")
        if method == "GET" and endpoint == "/models":
            with self._lock:
                names = self._catalog.names()
            return Reply(body={"object": "list", "data": [_model_entry(n) for n in names]})
        if method == "GET" and len(parts) == 2 and parts[0] == "models":
            with self._lock:
                info = self._catalog.lookup(parts[1])
            if info is None:
                raise _errors.invalid_request(
                    f"The model '{parts[1]}' does not exist",
                    param="model",
                    code="model_not_found",
                    status=404,
                )
            return Reply(body=_model_entry(parts[1]))
        if parts[0] == "responses" and len(parts) in (2, 3):
            if method == "GET" and len(parts) == 2:
                return retrieve_response(self._store, parts[1])
            if method == "DELETE" and len(parts) == 2:
                return delete_response(self._store, parts[1])
            if method == "POST" and parts[2:] == ["cancel"]:
                return cancel_response(self._store, parts[1])
        if method != "POST" or endpoint not in _POST_ENDPOINTS:
            raise _errors.invalid_request(f"Invalid URL ({method} {request.path})", status=404)
        if endpoint in AZURE_MEDIA_MODELS:
            return self._answer_media(endpoint, request)
        body = request.body
        if body is None:
            raise _errors.invalid_json()
        if self.reject_stream_options and "stream_options" in body:
            raise _errors.invalid_request(
                "Unrecognized request argument supplied: stream_options", param="stream_options"
            )
        model_name = body.get("model")
        if endpoint == "/responses" and model_name is None:
            model_name = self._template_model(body)
        if model_name is None and request.deployment is None:
            if endpoint == "/responses":
                raise _errors.missing_parameter("model")
            raise _errors.invalid_request("you must provide a model parameter")
        family = request.family if request.family is not None and request.family.models else None
        try:
            if family is not None:
                model = _family_model(family, model_name)
            else:
                model = self._resolve_model(model_name, request.deployment, request.azure)
        except _errors.APIErrorResponse:
            if endpoint == "/responses":
                raise _errors.responses_model_not_found(str(model_name)) from None
            raise
        reply = self._reply_for(body, model, request.deployment)
        ctx = Context(
            body,
            model,
            reply,
            self._cache,
            azure=request.azure,
            force_usage=self.always_include_usage or (family is not None and forces_usage(family)),
        )
        if endpoint == "/chat/completions":
            if family is not None:
                asked = ctx.stream_option("include_usage", False) or self.always_include_usage
                return dress(family, chat_completion(ctx), asked)
            return chat_completion(ctx)
        if endpoint == "/completions":
            return completion(ctx)
        if endpoint == "/embeddings":
            return embeddings(ctx)
        with self._lock:
            templates = dict(self._templates)
        return create_response(ctx, self._store, templates)

    def _answer_media(self, endpoint: str, request: _Parsed) -> Reply:
        """Images and transcriptions: JSON or multipart/form-data bodies."""
        form = request.form
        if endpoint == "/audio/transcriptions" and form is None:
            raise wrong_content_type(request.content_type)
        body = request.body
        if body is None:
            if is_multipart(request.content_type):
                raise _errors.invalid_request("Could not parse multipart form.")
            raise _errors.invalid_json()
        model_name = body.get("model")
        if model_name is None and request.deployment is None:
            raise _errors.invalid_request("you must provide a model parameter")
        model = self._resolve_model(
            model_name, request.deployment, request.azure, AZURE_MEDIA_MODELS[endpoint]
        )
        reply = self._reply_for(body, model, request.deployment)
        ctx = Context(body, model, reply, self._cache, azure=request.azure)
        files_url = self.url + IMAGE_FILES_PATH
        if endpoint == "/images/generations":
            return image_generation(ctx, files_url)
        if endpoint == "/images/edits":
            return image_edit(ctx, form, files_url)
        assert form is not None
        return transcription(ctx, form)

    def _template_model(self, body: dict[str, Any]) -> str | None:
        reference = body.get("prompt")
        if not isinstance(reference, dict):
            return None
        with self._lock:
            template = self._templates.get(str(reference.get("id")))
        return template.model if template is not None else None

    def _check_key(self, headers: Mapping[str, str], azure: bool) -> None:
        expected = self.api_key
        if expected is None:
            return
        bearer = headers.get("authorization", "")
        given = bearer[7:] if bearer.lower().startswith("bearer ") else headers.get("api-key")
        if given == expected:
            return
        if azure:
            raise _errors.azure_access_denied()
        raise _errors.invalid_api_key(given)


@dataclass(frozen=True, slots=True)
class _Parsed:
    path: str
    deployment: str | None
    azure: bool
    body: dict[str, Any] | None
    content_type: str = ""
    #: The parsed multipart/form-data body (files included), when one was sent.
    form: Form | None = None
    #: The provider the request was sent to (see ``client_as``), when not OpenAI.
    family: Family | None = None


def client_as(url: str, provider: str, *, asynchronous: bool = False, **kwargs: Any) -> Any:
    """An ``openai.OpenAI`` (``asynchronous``: ``AsyncOpenAI``) client for ``provider`` whose
    requests go to the fake server at ``url``, which may run in another process (a workload
    under test that is given only the server's address): the client's ``base_url`` is the
    provider's real one, so llmmeter names and prices its calls as that provider's.
    :meth:`FakeOpenAI.client_as` is this for a server of the same process."""
    import openai

    family = FAMILIES.get(provider)
    if family is None:
        raise ValueError(
            f"FakeOpenAI.client_as: expected one of {', '.join(sorted(FAMILIES))}; got {provider!r}"
        )
    kwargs.setdefault("api_key", "sk-fake-provider-key")
    kwargs.setdefault("max_retries", 0)
    target = urlsplit(url)
    host, port = target.hostname, target.port
    if asynchronous:
        kind: Any = openai.DefaultAsyncHttpxClient
        http = kind(transport=_to_fake(kind, host, port, asynchronous=True))
        return openai.AsyncOpenAI(base_url=family.base_url, http_client=http, **kwargs)
    kind = openai.DefaultHttpxClient
    http = kind(transport=_to_fake(kind, host, port, asynchronous=False))
    return openai.OpenAI(base_url=family.base_url, http_client=http, **kwargs)


def _to_fake(http_client: type, host: str | None, port: int | None, *, asynchronous: bool) -> Any:
    """A transport of the SDK's own HTTP library (httpx, or httpx2 for openai 3.x) that
    sends each request to the fake, keeping its ``Host`` header (the provider's)."""
    import importlib

    base = next(c for c in http_client.__mro__ if c.__name__ in ("Client", "AsyncClient"))
    httpx = importlib.import_module(base.__module__.partition(".")[0])

    def retarget(request: Any) -> None:
        request.url = request.url.copy_with(scheme="http", host=host, port=port)

    if asynchronous:

        class _AsyncToFake(httpx.AsyncBaseTransport):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                self._inner = httpx.AsyncHTTPTransport()

            async def handle_async_request(self, request: Any) -> Any:
                retarget(request)
                return await self._inner.handle_async_request(request)

            async def aclose(self) -> None:
                await self._inner.aclose()

        return _AsyncToFake()

    class _ToFake(httpx.BaseTransport):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._inner = httpx.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            retarget(request)
            return self._inner.handle_request(request)

        def close(self) -> None:
            self._inner.close()

    return _ToFake()


def _family_model(family: Family, name: Any) -> ModelInfo:
    """A model another provider serves, answered under its own name."""
    if name not in family.models:
        raise _errors.model_not_found(str(name))
    reasoning = name == "deepseek-reasoner"
    return ModelInfo(
        name, name, reasoning=reasoning, default_effort="medium" if reasoning else "none"
    )


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "system"}


def _split_path(path: str) -> tuple[str, str | None, bool] | None:
    """``(endpoint, deployment, azure)`` for an OpenAI or Azure OpenAI path."""
    while "//" in path:
        path = path.replace("//", "/")
    path = path.rstrip("/") or "/"
    if path.startswith("/openai/deployments/"):
        deployment, _, rest = path[len("/openai/deployments/") :].partition("/")
        return "/" + rest, deployment, True
    for prefix, azure in (("/openai/v1/", True), ("/openai/", True), ("/v1/", False)):
        if path.startswith(prefix):
            return path[len(prefix) - 1 :], None, azure
    return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: Listen backlog: hundreds of clients may connect at once.
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeOpenAI
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal in tests; anything else is a bug.
        logger.debug("connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Idle keep-alive connections close after this many seconds.
    timeout = 120
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm holds
        # the body until the client's delayed ACK (~40 ms on Linux) on every keep-alive call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def version_string(self) -> str:
        return "FakeOpenAI"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        started = time.monotonic()
        parts = urlsplit(self.path)
        raw = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        content_type = headers.get("content-type", "")
        form: Form | None = None
        if is_multipart(content_type):
            form = parse_form(content_type, raw)
            body = form.fields if form is not None else None
        else:
            body = _parse_json(raw)
        del raw  # uploads are read once and never kept
        family = family_at(headers.get("host"), parts.path)
        path = parts.path
        if family is not None:  # a client made by client_as(): the provider's own path
            path = "/v1" + path[len(family.base_path) :]
        route = _split_path(path)
        model = _requested_model(body, route[1] if route is not None else None)
        try:
            reply = self._reply(
                method,
                parts.path,
                route=route,
                model=model,
                body=body,
                headers=headers,
                form=form,
                family=family,
            )
        except _errors.APIErrorResponse as error:
            reply = Reply(status=error.status, body=error.body, headers=error.headers)
        except Exception as error:
            # A bug in the fake itself: say so in the body instead of posing as OpenAI.
            logger.exception("FakeOpenAI failed on %s %s", method, self.path)
            reply = Reply(
                status=500,
                body=_errors.error_body(
                    f"FakeOpenAI internal error: {type(error).__name__}: {error}", "server_error"
                ),
            )
        fake._record(
            RecordedRequest(
                method=method,
                path=parts.path,
                query=parts.query,
                headers={
                    name: REDACTED if name in REDACTED_HEADERS else value
                    for name, value in headers.items()
                },
                body=body,
                response_status=reply.status,
                usage=reply.usage,
            )
        )
        try:
            self._write(reply, started, model)
        except OSError:
            self.close_connection = True

    def _reply(
        self,
        method: str,
        path: str,
        *,
        route: tuple[str, str | None, bool] | None,
        model: str | None,
        body: dict[str, Any] | None,
        headers: Mapping[str, str],
        form: Form | None,
        family: Family | None = None,
    ) -> Reply:
        fake = self.server.fake
        if method == "GET" and path.startswith(IMAGE_FILES_PATH + "/img-"):
            return Reply(body=TINY_PNG, content_type="image/png")
        if route is None:
            raise _errors.invalid_request(f"Invalid URL ({method} {path})", status=404)
        endpoint, deployment, azure = route
        failure = fake._next_failure(model)
        if failure is not None:
            return _scripted_reply(failure, body, deployment, azure)
        fake._check_key(headers, azure)
        parsed = _Parsed(
            path, deployment, azure, body, headers.get("content-type", ""), form, family
        )
        return fake._answer(method, endpoint, parsed)

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _write(self, reply: Reply, started: float, model: str | None) -> None:
        """Send ``reply`` with the latency and stream cut scripted for ``model``."""
        fake = self.server.fake
        latency = fake._current_latency(model)
        common = {
            "x-request-id": random_id("req_", 32, "0123456789abcdef"),
            "openai-version": "2020-10-01",
            **reply.headers,
        }
        if reply.events is None:
            fake._sleep(latency.response)
            content_type = reply.content_type
            if isinstance(reply.body, bytes):
                payload = reply.body
            elif isinstance(reply.body, str):
                payload = reply.body.encode()
            else:
                payload = json.dumps(reply.body).encode()
                content_type = "application/json"
            self.send_response(reply.status)
            self._headers(
                common,
                {
                    "content-type": content_type,
                    "content-length": str(len(payload)),
                    "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
                },
            )
            self.wfile.write(payload)
            self.wfile.flush()
            return
        drop_after = fake._next_drop(model)
        self.send_response(reply.status)
        self._headers(
            common,
            {
                "content-type": "text/event-stream; charset=utf-8",
                "transfer-encoding": "chunked",
                "cache-control": "no-cache",
                "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
            },
        )
        self.wfile.flush()
        for index, event in enumerate(reply.events):
            fake._sleep(latency.first_chunk if index == 0 else latency.per_chunk)
            if drop_after is not None and index >= drop_after:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _headers(self, *groups: Mapping[str, str]) -> None:
        for group in groups:
            for name, value in group.items():
                self.send_header(name, value)
        self.end_headers()


def _scripted_reply(
    failure: _Failure, body: dict[str, Any] | None, deployment: str | None, azure: bool
) -> Reply:
    model = (body or {}).get("model") or deployment or "gpt-4o"
    headers: dict[str, str] = {}
    overridden = failure.message is not None or failure.code is not None
    if azure and not overridden and failure.status in (401, 404):
        # Azure words these two its own way (recorded).
        error = (
            _errors.azure_access_denied()
            if failure.status == 401
            else _errors.azure_deployment_not_found()
        )
        return Reply(status=error.status, body=error.body)
    retry_after = failure.retry_after
    if retry_after is None and failure.status in (429, 503):
        retry_after = 0.0
    if retry_after is not None:
        headers["retry-after"] = str(int(retry_after))
        if failure.retry_after is not None:
            headers["retry-after-ms"] = str(round(retry_after * 1000))
    return Reply(
        status=failure.status,
        body=_errors.scripted(
            failure.status,
            model=str(model),
            message=failure.message,
            code=failure.code,
            error_type=failure.error_type,
            param=failure.param,
        ),
        headers=headers,
    )


def _parse_json(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
