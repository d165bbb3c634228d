"""Per-call state: from the request to the span and metrics, whatever way the call ends.

A :class:`Call` is opened by a wrapper (under the guard), sees the user's call run (outside
the guard), and is finished exactly once: by the result, by the error, or — for streams and
raw responses — by the proxy that carries the result to the user. Provider-specific reading
lives in ``_targets.py`` and ``_usage.py``; this module only orchestrates.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from . import _semconv as sc
from ._compare import EXACT, Comparator
from ._config import Settings
from ._evaluation import Evaluation, Evaluator, current_evaluation
from ._guard import UNTRACED, Guard, Untraced
from ._metrics import Instruments
from ._policy import ROUTABLE_ENDPOINTS, CallView, Route
from ._pricing import UNKNOWN_REF, Cost, PriceTable
from ._raw import wrap_raw_response
from ._rules import RulePolicy
from ._sdk import SdkTypes, rejects_stream_options, status_code
from ._streams import wrap_stream
from ._targets import (
    Target,
    asks_stream_options,
    content_json,
    input_messages,
    request_attributes,
    system_instructions,
    wire_model,
)
from ._task import current_key, current_task
from ._usage import (
    CHAT,
    COMPLETIONS,
    RESPONSES,
    Outcome,
    Usage,
    is_usage_only_chunk,
    output_messages,
    read_chunk,
    read_response,
)

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

StreamEnd = Literal["exhausted", "closed", "abandoned", "error"]

current_call: ContextVar[Call | None] = ContextVar("llmmeter_call", default=None)
"""The call whose SDK method is running in this context (not while the user holds a stream)."""

_MAX_REMEMBERED: Final = 10_000
_MAX_CLIENT_KINDS: Final = 64
"""Client classes remembered as Azure or not: a handful in a program, but ``unittest.mock``
makes a class per mock, and remembering each would keep them all alive."""
_MAX_SERVERS: Final = 64
"""Base URL objects remembered with their host and port (one per client, usually a few)."""
_MAX_SHAPES: Final = 512
"""Request shapes (method, model, server, task) whose constant attributes are remembered;
past the cap the cache starts over (task labels are the user's, so could be many)."""
_RAW_RESPONSE_HEADER: Final = "x-stainless-raw-response"
_SECRET = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{4,}|Bearer\s+[A-Za-z0-9._\-]+)")


def scrub(text: str) -> str:
    """Remove API keys and bearer tokens (the API echoes masked keys in 401 messages)."""
    return _SECRET.sub("[REDACTED]", text)


class Runtime:
    """Everything one ``instrument()`` built; held by the instrumentation registry."""

    __slots__ = (
        "_client_kinds",
        "_counted",
        "_lock",
        "_rejected",
        "_servers",
        "_shapes",
        "accept",
        "comparators",
        "evaluator",
        "force_shadow",
        "guard",
        "instruments",
        "policy",
        "prices",
        "sdk",
        "settings",
        "tracer",
    )

    def __init__(
        self,
        tracer: Tracer,
        instruments: Instruments,
        settings: Settings,
        guard: Guard,
        prices: PriceTable,
        *,
        policy: Any = None,
        force_shadow: bool = False,
    ) -> None:
        self.tracer = tracer
        self.policy = policy
        self.accept: Callable[[Any], bool] | None = (
            getattr(policy, "accept", None) if policy is not None else None
        )
        self.force_shadow = force_shadow
        self.prices = prices
        self.instruments = instruments
        self.settings = settings
        self.guard = guard
        self.sdk: SdkTypes | None = None
        self.evaluator: Evaluator | None = None
        """Shadow evaluation's workers; set by the registry when there is a policy."""
        self.comparators: Mapping[str, Comparator] = {}
        """A policy in code's ``comparators`` (rule name to comparator), validated."""
        self._lock = threading.Lock()
        self._rejected: set[str] = set()
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._client_kinds: dict[type[Any], bool] = {}
        self._servers: dict[int, tuple[Any, str | None, int | None]] = {}
        self._shapes: dict[tuple[Any, ...], _Shape] = {}

    def rejects_stream_options(self, key: str) -> bool:
        return key in self._rejected

    def remember_rejection(self, key: str) -> None:
        with self._lock:
            if len(self._rejected) < _MAX_REMEMBERED:
                self._rejected.add(key)

    def first_count(self, response_id: str) -> bool:
        """True the first time a Responses id's usage is seen (create, then retrieve)."""
        with self._lock:
            if response_id in self._counted:
                self._counted.move_to_end(response_id)
                return False
            self._counted[response_id] = None
            if len(self._counted) > _MAX_REMEMBERED:
                self._counted.popitem(last=False)
            return True

    def decide(self, view: CallView) -> Route | None:
        """Ask the policy; anything it raises or returns amiss leaves the call as written."""
        policy = self.policy
        try:
            route = policy.decide(view)
        except Exception as exc:
            if self.guard.strict and isinstance(policy, RulePolicy):
                raise  # llmmeter's own rule engine failed: its tests must see it
            self.guard.warn_once(
                "policy.decide",
                "llmmeter: the routing policy raised; the call goes out as written",
                exc,
            )
            return None
        if route is None:
            return None
        if not isinstance(route, Route):
            self.guard.warn_once(
                "policy.result",
                f"llmmeter: the routing policy returned {type(route).__name__}, not a Route "
                "or None; the call goes out as written",
            )
            return None
        if self.force_shadow and not route.shadow:
            route = dataclasses.replace(route, shadow=True)
        return route

    def comparator(self, rule: str) -> Comparator:
        """How rule ``rule``'s evaluations are judged (``exact`` unless the policy says)."""
        policy = self.policy
        if isinstance(policy, RulePolicy):
            return policy.comparator(rule)
        return self.comparators.get(rule, EXACT)

    def evaluation_budget(self) -> float | None:
        """US dollars per hour that shadow evaluation may spend, per the policy."""
        budget = getattr(self.policy, "evaluation_budget_usd", None)
        if isinstance(budget, (int, float)) and not isinstance(budget, bool):
            return float(budget)
        return None

    def accepts(self, result: Any) -> bool:
        """The policy's ``accept`` check; a check that raises accepts (logged once)."""
        accept = self.accept
        if accept is None:
            return True
        try:
            verdict = accept(result)
        except Exception as exc:
            self.guard.warn_once(
                "policy.accept",
                "llmmeter: the policy's accept check raised; the answer is kept",
                exc,
            )
            return True
        if isinstance(verdict, bool):
            return verdict
        close = getattr(verdict, "close", None)
        if inspect.iscoroutine(verdict) and callable(close):
            close()  # an async check cannot run here; no "never awaited" warning either
        self.guard.warn_once(
            "policy.accept.type",
            f"llmmeter: the policy's accept check returned {type(verdict).__name__}, not a "
            "bool; the answer is kept",
        )
        return True

    def is_azure(self, client: Any) -> bool:
        kind = type(client)
        known = self._client_kinds.get(kind)
        if known is None:
            known = any(c.__name__ == "BaseAzureClient" for c in kind.__mro__)
            if len(self._client_kinds) < _MAX_CLIENT_KINDS:
                self._client_kinds[kind] = known
        return known

    def server_of(self, client: Any) -> tuple[str | None, int | None]:
        """The client's host and port, read once per base URL object (httpx URLs are
        immutable; a client given a new ``base_url`` holds a new object).

        The SDK's ``base_url`` property returns ``_base_url``; openai 3.x's runs an import
        statement first (about 1 µs a call), so the attribute is read directly when present.
        """
        url = getattr(client, "_base_url", None)
        if url is None:
            url = getattr(client, "base_url", None)
        if url is None:
            return None, None
        known = self._servers.get(id(url))
        if known is not None and known[0] is url:
            return known[1], known[2]
        address, port = _server_of(url)
        if len(self._servers) >= _MAX_SERVERS:
            self._servers.clear()
        self._servers[id(url)] = (url, address, port)
        return address, port

    def shape(
        self,
        target: Target,
        model: str | None,
        client: Any,
        label: str | None,
        *,
        azure: bool,
    ) -> _Shape:
        """The attributes that depend only on the method, model, server and task: built
        once per combination instead of on every call."""
        address, port = self.server_of(client) if client is not None else (None, None)
        key = (target, model, address, port, label, azure)
        shape = self._shapes.get(key)
        if shape is None:
            shape = _Shape.build(target, model, address, port, label, azure=azure)
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            self._shapes[key] = shape
        return shape


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """A request shape's constant attributes. Shared by every call of that shape, so never
    mutated: a call copies ``common`` into its span attributes and passes ``labels`` (the
    metric labels) to the SDK, which copies what it keeps."""

    common: dict[str, AttributeValue]
    """The bounded attributes that are also metric labels."""
    labels: dict[str, Any]
    """``common`` as metric labels (a separate dict: a call may replace, never mutate it)."""
    static: dict[str, AttributeValue]
    """Span-only constant attributes (API type, port)."""
    name: str
    azure: bool
    address: str | None
    port: int | None

    @classmethod
    def build(
        cls,
        target: Target,
        model: str | None,
        address: str | None,
        port: int | None,
        label: str | None,
        *,
        azure: bool,
    ) -> _Shape:
        common = _common_attributes(target, model, address, label, azure=azure)
        static: dict[str, AttributeValue] = {}
        api_type = target.api_type
        if api_type is not None:
            static[sc.OPENAI_API_TYPE] = api_type
        if port is not None:
            static[sc.SERVER_PORT] = port
        name = f"{target.operation} {model}" if model else target.operation
        return cls(common, dict(common), static, name, azure, address, port)


def _is_raw_request(kwargs: dict[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    if not headers:
        return False
    return any(str(k).lower() == _RAW_RESPONSE_HEADER for k in headers)


@dataclasses.dataclass(frozen=True, slots=True)
class _Routing:
    """A policy's decision as applied to one call."""

    route: Route
    original: str
    """The model value the user wrote (what goes on the wire without llmmeter)."""
    sent: str
    """The model value routing puts on the wire instead (an Azure deployment name there)."""
    asked: str
    """The model name the policy saw and the original is priced as."""


class Call:
    """One logical request: one span, one set of metric points."""

    __slots__ = (
        "_call_token",
        "_ctx_token",
        "args",
        "attempts",
        "base_kwargs",
        "capture",
        "evaluation",
        "fallback_of",
        "finished",
        "injected",
        "instance",
        "invoke",
        "kwargs",
        "label",
        "metric_attrs",
        "original_kwargs",
        "outcome",
        "parent",
        "result",
        "routing",
        "runtime",
        "span",
        "started",
        "stream_key",
        "target",
        "turned_down",
    )

    def __init__(
        self,
        runtime: Runtime,
        target: Target,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        fallback_of: Call | None = None,
        reason: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.target = target
        self.instance = instance
        self.args = args
        self.started = perf_counter()
        self.finished = False
        self.attempts = 0
        self.injected = False
        self.outcome = Outcome()
        self.capture = runtime.settings.capture_content
        self.original_kwargs = kwargs
        # The user's plain result, kept for shadow evaluation (else None).
        self.result: Any = None
        # This call is an evaluation request, sent by the evaluator's worker.
        evaluation = self.evaluation = current_evaluation.get() if fallback_of is None else None
        # Re-sends the request (`wrapped` bound to the call's args): set on routed calls, for
        # a stream that fails before its first chunk.
        self.invoke: Callable[..., Any] | None = None
        self.fallback_of = fallback_of
        # The accept check turned this routed answer down: it was paid for, then replaced.
        self.turned_down = False
        self._ctx_token: Token[Any] | None = None
        self._call_token: Token[Call | None] | None = None

        # Where the span hangs and what it is labelled: a fallback re-sent while the user
        # iterates a stream elsewhere still belongs with the call that was routed.
        self.parent, self.label = _origin(fallback_of, evaluation)
        endpoint = target.endpoint
        client = getattr(instance, "_client", None)
        azure = client is not None and runtime.is_azure(client)
        model = None if target.retrieve else wire_model(kwargs)
        routing = self._decide(client, model, azure=azure)
        self.routing: _Routing | None = routing
        self.base_kwargs = kwargs
        action = _action(routing, fallback_of)
        if routing is not None and action == sc.ACTION_ROUTE:
            model = routing.sent
            self.base_kwargs = {**kwargs, "model": model}
        self.kwargs = self.base_kwargs

        shape = runtime.shape(target, model, client, self.label, azure=azure)
        attrs = dict(shape.common)
        links = None
        self.metric_attrs: dict[str, Any] = shape.labels
        if routing is not None and action is not None:
            with runtime.guard.site("policy.record"):
                links = self._record_decision(routing, action, reason, attrs)
        elif evaluation is not None:
            with runtime.guard.site("evaluation.record"):
                links = self._record_evaluation(evaluation, attrs)
        attrs.update(shape.static)
        _span_attributes(target, args, kwargs, attrs)

        self.stream_key = ""
        if kwargs.get("stream") is True and endpoint in (CHAT, COMPLETIONS):
            self.stream_key = f"{shape.address}:{shape.port}/{endpoint}"
            self._inject_stream_usage(attrs)
        if runtime.settings.capture_content:
            _capture_input(endpoint, kwargs, attrs, runtime.settings)

        self.span: Span = runtime.tracer.start_span(
            shape.name, context=self.parent, kind=SpanKind.CLIENT, attributes=attrs, links=links
        )

    def _decide(self, client: Any, model: str | None, *, azure: bool) -> _Routing | None:
        """The routing in force: the routed call's for its fallback; else the policy's
        answer, for a call it may route (never for an evaluation request)."""
        fallback_of = self.fallback_of
        if fallback_of is not None:
            return fallback_of.routing
        runtime = self.runtime
        target = self.target
        if (
            not model
            or runtime.policy is None
            or target.endpoint not in ROUTABLE_ENDPOINTS
            or self.evaluation is not None
        ):
            return None
        routing = None
        with runtime.guard.site("policy.route"):
            routing = _route(runtime, target, client, self.original_kwargs, model, azure=azure)
        if routing is not None and routing.route.evaluate:
            self.capture = True  # a stream's answer is needed to judge it
        return routing

    def _record_decision(
        self, routing: _Routing, action: str, reason: str | None, attrs: dict[str, AttributeValue]
    ) -> list[Link] | None:
        """Put the decision on the span and metric labels, count it; the fallback's link."""
        decision: dict[str, AttributeValue] = {
            sc.LLMMETER_POLICY_RULE: routing.route.rule,
            sc.LLMMETER_POLICY_ACTION: action,
        }
        attrs.update(decision)
        self.metric_attrs = dict(attrs)
        if reason is not None:  # bounded: HTTP statuses, exception class names, "rejected"
            decision[sc.LLMMETER_POLICY_FALLBACK_REASON] = reason
        self.runtime.instruments.decisions.add(1, decision)
        attrs[sc.LLMMETER_POLICY_ORIGINAL_MODEL] = routing.original
        attrs[sc.LLMMETER_POLICY_TARGET_MODEL] = routing.sent
        if reason is not None:
            attrs[sc.LLMMETER_POLICY_FALLBACK_REASON] = reason
        previous = self.fallback_of
        return [Link(previous.span.get_span_context())] if previous is not None else None

    def _record_evaluation(
        self, evaluation: Evaluation, attrs: dict[str, AttributeValue]
    ) -> list[Link]:
        """Label an evaluation request (its metrics, its cost included, apart from the
        users'), count it as a decision, and link it to the user's call."""
        decision: dict[str, AttributeValue] = {
            sc.LLMMETER_POLICY_RULE: evaluation.rule,
            sc.LLMMETER_POLICY_ACTION: sc.ACTION_EVALUATE,
        }
        attrs.update(decision)
        attrs[sc.LLMMETER_EVALUATION] = True
        self.metric_attrs = dict(attrs)
        self.runtime.instruments.decisions.add(1, decision)
        return [Link(evaluation.link)]

    def _inject_stream_usage(self, attrs: dict[str, AttributeValue]) -> None:
        """Ask for stream usage the user did not ask for (hidden again chunk by chunk)."""
        kwargs = self.original_kwargs
        if (
            self.runtime.settings.inject_stream_usage
            and not asks_stream_options(kwargs)
            and not _is_raw_request(kwargs)
            and not self.runtime.rejects_stream_options(self.stream_key)
        ):
            self.kwargs = {**self.base_kwargs, "stream_options": {"include_usage": True}}
            self.injected = True
            attrs[sc.LLMMETER_STREAM_USAGE_INJECTED] = True

    # --- while the SDK method runs -----------------------------------------------------

    def enter(self) -> None:
        """Make our span current for the SDK call, so HTTP-level spans nest under it."""
        self._ctx_token = otel_context.attach(trace.set_span_in_context(self.span))
        self._call_token = current_call.set(self)

    def leave(self) -> None:
        """Undo :meth:`enter`: the span is never left current while the user holds a stream."""
        with self.runtime.guard.site("call.leave"):
            if self._call_token is not None:
                current_call.reset(self._call_token)
                self._call_token = None
            if self._ctx_token is not None:
                otel_context.detach(self._ctx_token)
                self._ctx_token = None

    def on_attempt(self) -> None:
        """One HTTP attempt was built inside the SDK (its retries included)."""
        self.attempts += 1

    def retry_without_injection(self, exc: BaseException) -> bool:
        """True when our own ``stream_options`` caused this error and the call must be re-sent.

        Injection must never cause a failure that would not happen without llmmeter: the
        request goes again exactly as the user wrote it, and the endpoint is remembered. If
        our own check fails we cannot tell, so we re-send too: one extra request is better
        than an error we may have caused.
        """
        if not self.injected or not isinstance(exc, Exception):
            return False
        guard = self.runtime.guard
        rejected = True
        with guard.site("call.retry"):
            sdk = self.runtime.sdk
            rejected = sdk is None or rejects_stream_options(exc, sdk)
        if not rejected:
            return False
        self.kwargs = self.base_kwargs
        self.injected = False
        with guard.site("call.retry"):
            self.runtime.remember_rejection(self.stream_key)
            self.span.set_attribute(sc.LLMMETER_STREAM_USAGE_INJECTED, False)
            self.span.add_event("llmmeter.stream_options_rejected")
        return True

    # --- falling back to the original model --------------------------------------------

    def _may_fall_back(self) -> bool:
        routing = self.routing
        return (
            routing is not None
            and not routing.route.shadow
            and routing.route.fallback
            and self.fallback_of is None
        )

    def _reopen(self, reason: str) -> Call:
        """The re-send with the user's own model: a new span, linked to this one, with the
        same parent and task label. Not entered: the caller enters it around the send."""
        call = Call(
            self.runtime,
            self.target,
            self.instance,
            self.args,
            self.original_kwargs,
            fallback_of=self,
            reason=reason,
        )
        call.invoke = self.invoke
        return call

    def fall_back(self, exc: BaseException) -> Call | Untraced | None:
        """The routed request raised: finish this call and return the entered re-send with
        the original model, or None when this call does not fall back (the wrapper then
        hands the error to :meth:`on_error`, which is then a no-op if already finished)."""
        if not self._falls_back_on(exc):
            return None
        self.on_error(exc)
        with self.runtime.guard.site("policy.fallback"):
            call = self._reopen(_error_type(exc, self.runtime.sdk))
            call.enter()
            return call
        return UNTRACED

    def stream_falls_back(self, exc: BaseException) -> bool:
        """A routed stream failed before any chunk reached the user: True ends this call
        (the proxy then closes the stream and sends :meth:`reopen_stream`'s call)."""
        if self.invoke is None or not self._falls_back_on(exc):
            return False
        self.end_stream("error", exc)
        return True

    def is_raw(self, result: Any) -> bool:
        """``result`` is a raw response (``with_raw_response`` / ``with_streaming_response``),
        whose ``parse()`` gives the stream."""
        sdk = self.runtime.sdk
        return sdk is not None and isinstance(
            result, (sdk.legacy_response, sdk.api_response, sdk.async_api_response)
        )

    def reopen_stream(self, exc: BaseException) -> Call | Untraced:
        """The stream's re-send, not entered (see :meth:`stream_falls_back`)."""
        with self.runtime.guard.site("policy.fallback"):
            return self._reopen(_error_type(exc, self.runtime.sdk))
        return UNTRACED

    def _falls_back_on(self, exc: BaseException) -> bool:
        """Any error of the routed request but cancellation and a rejected API key (the
        same key would be rejected for the original model too)."""
        if not isinstance(exc, Exception) or not self._may_fall_back():
            return False
        unauthorized = False
        with self.runtime.guard.site("policy.fallback"):
            sdk = self.runtime.sdk
            unauthorized = sdk is not None and status_code(exc, sdk) == 401
        return not unauthorized

    def escalate(self, result: Any) -> Call | Untraced | None:
        """A routed, non-streaming answer the policy's ``accept`` check turns down: finish
        this call with it and return the entered re-send with the original model. None keeps
        the answer (also when the check raised: that is logged once, and when the route has
        fallback off: then nothing is ever re-sent)."""
        runtime = self.runtime
        if runtime.accept is None or self.stream_key or not self._may_fall_back():
            return None
        rejected = False
        with runtime.guard.site("policy.accept"):
            sdk = runtime.sdk
            rejected = (
                sdk is not None
                and not isinstance(result, (sdk.stream, sdk.async_stream))
                and not self.is_raw(result)
                and not runtime.accepts(result)
            )
            if rejected:
                self.turned_down = True
                self.span.set_attribute(sc.LLMMETER_POLICY_ACCEPTED, False)
        if not rejected:
            return None
        self.on_result(result)
        with runtime.guard.site("policy.fallback"):
            call = self._reopen(sc.FALLBACK_REJECTED)
            call.enter()
            return call
        return UNTRACED

    # --- how a call ends ---------------------------------------------------------------

    def on_result(self, result: Any) -> Any:
        """Take the SDK's result; return what the user gets (the result itself or a proxy)."""
        with self.runtime.guard.site("call.result"):
            sdk = self.runtime.sdk
            if sdk is not None:
                if isinstance(result, (sdk.stream, sdk.async_stream)):
                    return wrap_stream(result, self)
                if isinstance(
                    result, (sdk.legacy_response, sdk.api_response, sdk.async_api_response)
                ):
                    return wrap_raw_response(result, self, sdk)
            read_response(self.target.endpoint, result, self.outcome, capture=self.capture)
            if self.routing is not None or self.evaluation is not None:
                self.result = result
            self.finish()
        return result

    def on_error(self, exc: BaseException) -> None:
        """The SDK raised: record it (the wrapper re-raises the same object)."""
        with self.runtime.guard.site("call.error"):
            self.finish(error=exc)

    def on_chunk(self, chunk: Any) -> bool:
        """Read one stream chunk; False means hide it (the usage chunk only we asked for).

        This runs for every chunk, so it is one ``try`` rather than the guard's ``with``
        blocks; a failure goes to the guard's report all the same (strict re-raises). A chunk
        with output is always shown; for any other the hide decision is taken alone, so a
        failure while reading telemetry never shows the user a chunk they would not have seen
        without llmmeter.
        """
        outcome = self.outcome
        try:
            if read_chunk(self.target.endpoint, chunk, outcome, self.capture):
                if outcome.first_output_at is None:
                    outcome.first_output_at = perf_counter()
                return True
        except Exception as exc:
            if not self.runtime.guard.handle("stream.chunk", exc):
                raise
        if not self.injected:
            return True
        with self.runtime.guard.site("stream.hide"):
            return not is_usage_only_chunk(chunk)
        return True  # the hide decision failed: show it, as if the user had asked for usage

    def end_stream(self, how: StreamEnd, error: BaseException | None = None) -> None:
        """A stream or raw response finished one of its four ways (or raised)."""
        with self.runtime.guard.site("stream.end"):
            if not self.finished:
                self.span.set_attribute(sc.LLMMETER_STREAM_END, how)
                self.finish(error=error, ended=how)

    def finish(self, error: BaseException | None = None, ended: StreamEnd | None = None) -> None:
        """End the span and record metrics, exactly once; queue a sampled call's evaluation."""
        if self.finished:
            return
        self.finished = True
        duration = perf_counter() - self.started
        runtime = self.runtime
        outcome = self.outcome
        span = self.span
        attrs = _response_attributes(outcome)
        metric_attrs = self.metric_attrs
        if outcome.response_model is not None:
            metric_attrs = {**metric_attrs, sc.GEN_AI_RESPONSE_MODEL: outcome.response_model}
        if self.attempts > 1:
            attrs[sc.HTTP_REQUEST_RESEND_COUNT] = self.attempts - 1
        ttfc = None
        if outcome.first_output_at is not None:
            ttfc = outcome.first_output_at - self.started
            attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
        usage = outcome.usage
        if (
            usage is not None
            and self.target.endpoint == RESPONSES
            and outcome.response_id is not None
            and not runtime.first_count(outcome.response_id)
        ):
            attrs[sc.LLMMETER_USAGE_ALREADY_COUNTED] = True
            usage = None
        cost = None
        if usage is not None:
            attrs.update(_usage_attributes(usage))
        if usage is not None and usage.input_tokens is not None:
            # No input count (a malformed answer): pricing would invent a zero; leave it out.
            with runtime.guard.site("call.price"):
                cost = self._price(usage, attrs, metric_attrs)
            if cost is not None and self.routing is not None and self.fallback_of is None:
                with runtime.guard.site("call.savings"):
                    self._savings(usage, cost, attrs, metric_attrs)
        if runtime.settings.capture_content and outcome.output:
            settings = runtime.settings
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = content_json(
                output_messages(outcome), settings.content_max_length, settings.redact
            )
        if error is not None:
            error_type = _error_type(error, runtime.sdk)
            attrs[sc.ERROR_TYPE] = error_type
            metric_attrs = {**metric_attrs, sc.ERROR_TYPE: error_type}
            message = scrub(str(error))[:1024]
            # The traceback ends with the message too: both are scrubbed of keys.
            stacktrace = scrub("".join(traceback.format_exception(error)))
            span.record_exception(
                error,
                attributes={"exception.message": message, "exception.stacktrace": stacktrace},
            )
            span.set_status(Status(StatusCode.ERROR, message))
        if self.evaluation is not None:
            with runtime.guard.site("evaluation.judge"):
                self.evaluation.finish(
                    attrs, cost.total if cost is not None else None, error, self.result
                )
        span.set_attributes(attrs)
        span.end()

        _record_metrics(
            runtime.instruments, metric_attrs, duration=duration, ttfc=ttfc, usage=usage, cost=cost
        )
        if self.routing is not None and self.routing.route.evaluate and error is None:
            with runtime.guard.site("evaluation.submit"):
                self._submit_evaluation(self.routing, ended)

    def _submit_evaluation(self, routing: _Routing, ended: StreamEnd | None) -> None:
        """Hand this call to the evaluator: the same request goes to the other model. Only
        an answer the user got whole counts: a stream that ended normally, no fallback."""
        if ended not in (None, "exhausted") or self.fallback_of is not None or self.turned_down:
            return
        evaluator = self.runtime.evaluator
        client = getattr(self.instance, "_client", None)
        if evaluator is None or client is None:
            return
        shadow = routing.route.shadow
        evaluator.submit(
            Evaluation(
                rule=routing.route.rule,
                shadow=shadow,
                model=routing.sent if shadow else routing.original,
                resource=type(self.instance),
                method=self.target.qualname.rsplit(".", 1)[1],
                client=client,
                is_async=self.target.is_async,
                args=self.args,
                kwargs=self.original_kwargs,
                result=self.result,
                outcome=self.outcome,
                link=self.span.get_span_context(),
                label=self.label,
                evaluator=evaluator,
            )
        )

    def _price(
        self, usage: Usage, attrs: dict[str, AttributeValue], metric_attrs: dict[str, Any]
    ) -> Cost | None:
        """Price by the response model, then the request model; unknown is never $0."""
        outcome = self.outcome
        requested = metric_attrs.get(sc.GEN_AI_REQUEST_MODEL)
        models = (outcome.response_model, requested if isinstance(requested, str) else None)
        cost = self.runtime.prices.price(usage, models, service_tier=outcome.service_tier)
        if cost is None:
            attrs[sc.LLMMETER_PRICE_REF] = UNKNOWN_REF
            name = models[0] or models[1]
            if name:
                self.runtime.prices.warn_unpriced(name)
            return None
        attrs[sc.GEN_AI_USAGE_COST_AMOUNT] = cost.total
        attrs[sc.GEN_AI_USAGE_COST_CURRENCY] = cost.currency
        attrs[sc.GEN_AI_USAGE_COST_SOURCE] = "local"
        attrs[sc.LLMMETER_COST_INPUT] = cost.input
        attrs[sc.LLMMETER_COST_OUTPUT] = cost.output
        attrs[sc.LLMMETER_PRICE_REF] = cost.ref
        return cost

    def _savings(
        self, usage: Usage, cost: Cost, attrs: dict[str, AttributeValue], metric_attrs: Any
    ) -> None:
        """What routing saved (or, shadowed, would save): the same tokens at both prices."""
        routing = self.routing
        assert routing is not None
        prices = self.runtime.prices
        tier = self.outcome.service_tier
        if self.turned_down:  # paid for, then replaced by the original model's answer
            attrs[sc.LLMMETER_POLICY_SAVINGS] = -cost.total
            return
        if routing.route.shadow:
            other = prices.price(usage, (routing.route.model,), service_tier=tier)
            saved = None if other is None else cost.total - other.total
        else:
            other = prices.price(usage, (routing.asked,), service_tier=tier)
            saved = None if other is None else other.total - cost.total
        if saved is None:
            return
        attrs[sc.LLMMETER_POLICY_SAVINGS] = saved
        if saved > 0:
            self.runtime.instruments.savings.add(saved, metric_attrs)


def _error_type(error: BaseException, sdk: SdkTypes | None) -> str:
    """``error.type``: the HTTP status for API errors, else the exception's qualname."""
    code = status_code(error, sdk) if sdk is not None else None
    return str(code) if code is not None else type(error).__qualname__


def _common_attributes(
    target: Target, model: str | None, address: str | None, label: str | None, *, azure: bool
) -> dict[str, AttributeValue]:
    """The attributes that are also metric labels (bounded values only)."""
    attrs: dict[str, AttributeValue] = {
        sc.GEN_AI_OPERATION_NAME: target.operation,
        sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_AZURE if azure else sc.PROVIDER_OPENAI,
    }
    if address:
        attrs[sc.SERVER_ADDRESS] = address
    if model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    if label is not None:
        attrs[sc.LLMMETER_TASK] = label
    return attrs


def _span_attributes(
    target: Target, args: tuple[Any, ...], kwargs: Mapping[str, Any], attrs: dict[str, Any]
) -> None:
    """The span-only request attributes (unbounded values such as ids never go on metrics)."""
    attrs.update(request_attributes(target.endpoint, kwargs))
    if target.retrieve:
        rid = args[0] if args else kwargs.get("response_id")
        if isinstance(rid, str):
            attrs[sc.GEN_AI_RESPONSE_ID] = rid


def _origin(
    fallback_of: Call | None, evaluation: Evaluation | None
) -> tuple[otel_context.Context, str | None]:
    """The parent context and task label of a call: the routed call's for its fallback; an
    evaluation request is a root (linked to the user's call) with the user's task label."""
    if fallback_of is not None:
        return fallback_of.parent, fallback_of.label
    if evaluation is not None:
        return otel_context.Context(), evaluation.label
    return otel_context.get_current(), current_task.get()


def _action(routing: _Routing | None, fallback_of: Call | None) -> str | None:
    if routing is None:
        return None
    if fallback_of is not None:
        return sc.ACTION_FALLBACK
    return sc.ACTION_SHADOW if routing.route.shadow else sc.ACTION_ROUTE


def _route(
    runtime: Runtime,
    target: Target,
    client: Any,
    kwargs: Mapping[str, Any],
    model: str,
    *,
    azure: bool,
) -> _Routing | None:
    """Ask the policy about this call and translate its answer into wire values.

    Not consulted when the user pinned the wire model in ``extra_body``. On Azure the
    ``model`` argument is a deployment name: only routable through the policy's
    ``deployments`` map, and never when the client's base URL already names a deployment.
    """
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping) and "model" in extra:
        return None
    asked = model
    deployments: Mapping[str, str] | None = None
    if azure:
        deployments = getattr(runtime.policy, "deployments", None)
        if not deployments or "/deployments/" in str(getattr(client, "base_url", "")):
            return None
        found = next((name for name, dep in deployments.items() if dep == model), None)
        if found is None:
            return None
        asked = found
    view = CallView(
        endpoint=target.endpoint,
        operation=target.operation,
        model=asked,
        kwargs=kwargs,
        task=current_task.get(),
        key=current_key.get(),
    )
    route = runtime.decide(view)
    if route is None or route.model == asked:
        return None
    sent = route.model
    if deployments is not None:
        deployment = deployments.get(route.model)
        if deployment is None:
            runtime.guard.warn_once(
                f"policy.deployment:{route.model}",
                f"llmmeter: rule {route.rule!r} routes to {route.model!r} but the policy's "
                "deployments name no Azure deployment for it; Azure calls stay as written",
            )
            return None
        sent = deployment
    return _Routing(route, model, sent, asked)


def _record_metrics(
    instruments: Instruments,
    metric_attrs: dict[str, Any],
    *,
    duration: float,
    ttfc: float | None,
    usage: Usage | None,
    cost: Cost | None,
) -> None:
    instruments.duration.record(duration, metric_attrs)
    if ttfc is not None:
        instruments.time_to_first_chunk.record(ttfc, metric_attrs)
    if usage is None:
        return
    if usage.input_tokens is not None:
        instruments.token_usage.record(
            usage.input_tokens, {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: "input"}
        )
    if usage.output_tokens is not None:
        instruments.token_usage.record(
            usage.output_tokens, {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: "output"}
        )
    if usage.cache_read_tokens:
        instruments.cache_tokens.add(
            usage.cache_read_tokens, {**metric_attrs, sc.LLMMETER_CACHE_OPERATION: "read"}
        )
    if usage.cache_creation_tokens:
        instruments.cache_tokens.add(
            usage.cache_creation_tokens, {**metric_attrs, sc.LLMMETER_CACHE_OPERATION: "creation"}
        )
    if cost is not None:
        instruments.cost.add(cost.total, metric_attrs)
    elif usage.input_tokens is not None:
        instruments.unpriced.add(1, metric_attrs)


def _capture_input(
    endpoint: str, kwargs: dict[str, Any], attrs: dict[str, AttributeValue], settings: Settings
) -> None:
    limit, redact = settings.content_max_length, settings.redact
    messages = input_messages(endpoint, kwargs)
    if messages:
        attrs[sc.GEN_AI_INPUT_MESSAGES] = content_json(messages, limit, redact)
    instructions = system_instructions(endpoint, kwargs)
    if instructions:
        attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = content_json(instructions, limit, redact)


def _response_attributes(outcome: Outcome) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    if outcome.response_id is not None:
        attrs[sc.GEN_AI_RESPONSE_ID] = outcome.response_id
    if outcome.response_model is not None:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = outcome.response_model
    if outcome.finish_reasons:
        reasons = outcome.finish_reasons
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [reasons[i] for i in sorted(reasons)]
    if outcome.service_tier is not None:
        attrs[sc.OPENAI_RESPONSE_SERVICE_TIER] = outcome.service_tier
    if outcome.system_fingerprint is not None:
        attrs[sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = outcome.system_fingerprint
    return attrs


def _usage_attributes(usage: Usage) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    for name, value in (
        (sc.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens),
        (sc.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens),
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, usage.cache_read_tokens),
        (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, usage.cache_creation_tokens),
        (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, usage.reasoning_tokens),
    ):
        if value is not None:
            attrs[name] = value
    return attrs


def _server_of(url: Any) -> tuple[str | None, int | None]:
    host = getattr(url, "host", None)
    port = getattr(url, "port", None)
    if port is None:
        port = {"https": 443, "http": 80}.get(getattr(url, "scheme", ""))
    return (host if isinstance(host, str) and host else None), port


def open_call(
    runtime: Runtime,
    target: Target,
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Call | None:
    """Start a call's telemetry, or return None if that failed (the user's call goes on)."""
    with runtime.guard.site("call.open"):
        call = Call(runtime, target, instance, args, kwargs)
        call.enter()
        return call
    return None
