"""One call's lifecycle: from the request to the span and metrics, whatever way it ends.

A :class:`Call` is opened by a wrapper (under the guard), sees the user's call run (outside
the guard), and is finished exactly once: by the result, by the error, or, for streams and
raw responses, by the proxy that carries the result to the user (``_proxies.py``, which
imports this module; this one never imports it). A routed call that fails, or whose answer
the policy's ``accept`` turns down, opens its re-send with the user's own model here.

What the policy decides is ``_routing.py``'s; what each attribute and metric point is,
``_record.py``'s; reading requests and responses, ``_targets.py`` and ``_usage.py``'s; the
per-``instrument()`` state and caches, ``_runtime.py``'s. This module only orchestrates.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind

from . import _semconv as sc
from ._attribution import current_attribution
from ._coexist import Window, entering
from ._config import INJECT_ALWAYS, INJECT_AUTO
from ._evaluation import Evaluation, current_evaluation
from ._guard import UNTRACED, Untraced
from ._policy import ROUTABLE_ENDPOINTS
from ._record import (
    capture_input,
    capture_output,
    content_event,
    error_type,
    price,
    record_error,
    response_attributes,
    usage_attributes,
)
from ._routing import Routing
from ._runtime import MetricLabels
from ._sdk import rejects_stream_options, status_code
from ._targets import Target, asks_stream_options, is_raw_request, request_attributes, wire_model
from ._task import current_task
from ._usage import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    Outcome,
    Usage,
    is_usage_only_chunk,
    read_chunk,
    read_response,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.util.types import AttributeValue

    from ._attribution import Attribution
    from ._pricing import Cost
    from ._runtime import Runtime, Shape

StreamEnd = Literal["exhausted", "closed", "abandoned", "error"]

_NO_CONTEXT: Final = otel_context.Context()
"""What a call's metric context is built on: its span alone (metrics read nothing else)."""

current_call: ContextVar[Call | None] = ContextVar("llmmeter_call", default=None)
"""The call whose SDK method is running in this context (not while the user holds a stream)."""


class Call:
    """One logical request: one span, one set of metric points."""

    __slots__ = (
        "_call_token",
        "_ctx_token",
        "_window",
        "args",
        "attempts",
        "attribution",
        "base_kwargs",
        "capture",
        "content",
        "evaluation",
        "fallback_of",
        "finished",
        "injected",
        "instance",
        "invoke",
        "kwargs",
        "label",
        "metric_attrs",
        "model",
        "original_kwargs",
        "outcome",
        "parent",
        "result",
        "routing",
        "runtime",
        "shape",
        "span",
        "started",
        "stream_key",
        "target",
        "turned_down",
    )

    def __init__(  # noqa: PLR0915 (straight-line on the hot path: a helper costs a call)
        self,
        runtime: Runtime,
        target: Target,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        fallback_of: Call | None = None,
        reason: str | None = None,
        context: otel_context.Context | None = None,
    ) -> None:
        self.runtime = runtime
        self.target = target
        self.instance = instance
        self.args = args
        self.started = perf_counter()
        self.finished = self.injected = False
        self.attempts = 0
        self.outcome = Outcome()
        self.capture = runtime.settings.content_wanted
        # The prompt, kept for the content event at the end (only when content goes there).
        self.content: dict[str, AttributeValue] | None = None
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
        self._window: Window | None = None
        self._call_token: Token[Call | None] | None = None

        # Where the span hangs and what it is labelled: a fallback re-sent while the user
        # iterates a stream elsewhere still belongs with the call that was routed.
        if fallback_of is None and evaluation is None:  # the common case, inline
            self.parent = context if context is not None else otel_context.get_current()
            self.label = current_task.get()
            attribution = self.attribution = current_attribution.get()
        else:
            self.parent, self.label, attribution = _origin(fallback_of, evaluation, context)
            self.attribution = attribution
        client = getattr(instance, "_client", None)
        azure = client is not None and runtime.is_azure(client)
        model = None if target.retrieve else wire_model(kwargs)
        self.base_kwargs = kwargs
        routing = action = None
        if runtime.router is not None or fallback_of is not None:
            routing, action, model = self._routed(client, model, azure=azure)
        self.routing: Routing | None = routing
        self.kwargs = self.base_kwargs
        # The model asked of the server (after routing): priced as when the answer names none.
        self.model = model

        shape = runtime.shape(target, model, client, self.label, azure=azure)
        if attribution is not None:
            shape = runtime.attributed(shape, attribution)
        self.shape = shape
        # Still the shape's own labels at the end: the shape's label sets serve the metrics.
        self.metric_attrs: dict[str, Any] = shape.labels
        links = None
        if (routing is not None and action is not None) or evaluation is not None:
            attrs, links = self._labelled(shape, routing, action, reason)
        else:
            attrs = dict(shape.span_base)
        if attribution is not None:  # every value, uncapped: spans are per call anyway
            attrs.update(attribution.span)
        request_attributes(target.endpoint, kwargs, attrs)  # span only: ids never go on metrics
        if target.retrieve:
            _response_id(args, kwargs, attrs)

        self.stream_key = ""
        if kwargs.get("stream") is True:
            self._inject_stream_usage(attrs, shape)
        if self.capture:
            self._capture_prompt(kwargs, attrs)

        self.span: Span = runtime.tracer.start_span(
            shape.name, context=self.parent, kind=SpanKind.CLIENT, attributes=attrs, links=links
        )

    def _routed(
        self, client: Any, model: str | None, *, azure: bool
    ) -> tuple[Routing | None, str | None, str | None]:
        """The routing in force, what the call does with it, and the model it then asks
        for; a routed call's keyword arguments name that model."""
        routing = self._decide(client, model, azure=azure)
        action = _action(routing, self.fallback_of)
        if routing is not None and action == sc.ACTION_ROUTE:
            model = routing.sent
            self.base_kwargs = {**self.original_kwargs, "model": model}
        return routing, action, model

    def _labelled(
        self, shape: Shape, routing: Routing | None, action: str | None, reason: str | None
    ) -> tuple[dict[str, AttributeValue], list[Link] | None]:
        """The first span attributes of a routed call or an evaluation request, whose metric
        labels say so too; the link to the call it follows from."""
        runtime = self.runtime
        attrs = dict(shape.common)
        links = None
        if routing is not None and action is not None:
            with runtime.guard.site("policy.record"):
                links = self._record_decision(routing, action, reason, attrs)
        elif self.evaluation is not None:
            with runtime.guard.site("evaluation.record"):
                links = self._record_evaluation(self.evaluation, attrs)
        attrs.update(shape.static)
        return attrs, links

    def _capture_prompt(self, kwargs: dict[str, Any], attrs: dict[str, AttributeValue]) -> None:
        """The prompt, opted in: on the span, and kept for the content event at the end."""
        settings = self.runtime.settings
        endpoint = self.target.endpoint
        if settings.capture_content:
            capture_input(endpoint, kwargs, attrs, settings)
        if settings.content_events:
            self.content = {}
            capture_input(endpoint, kwargs, self.content, settings)

    def _decide(self, client: Any, model: str | None, *, azure: bool) -> Routing | None:
        """The routing in force: the routed call's for its fallback; else the policy's
        answer, for a call it may route (never for an evaluation request)."""
        fallback_of = self.fallback_of
        if fallback_of is not None:
            return fallback_of.routing
        runtime = self.runtime
        router = runtime.router
        target = self.target
        if (
            not model
            or router is None
            or target.endpoint not in ROUTABLE_ENDPOINTS
            or self.evaluation is not None
        ):
            return None
        routing = None
        with runtime.guard.site("policy.route"):
            routing = router.route(target, client, self.original_kwargs, model, azure=azure)
        if routing is not None and routing.route.evaluate:
            self.capture = True  # a stream's answer is needed to judge it
        return routing

    def _record_decision(
        self, routing: Routing, action: str, reason: str | None, attrs: dict[str, AttributeValue]
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

    def _inject_stream_usage(self, attrs: dict[str, AttributeValue], shape: Shape) -> None:
        """Ask a chat or completions stream for the usage the user did not ask for (hidden
        again chunk by chunk): by default only where the server sends that chunk only when
        asked (see docs/streams.md)."""
        endpoint = self.target.endpoint
        if endpoint not in (CHAT, COMPLETIONS):
            return
        self.stream_key = f"{shape.address}:{shape.port}/{endpoint}"
        kwargs = self.original_kwargs
        mode = self.runtime.settings.inject_stream_usage
        if (
            (mode == INJECT_ALWAYS or (mode == INJECT_AUTO and shape.first_party))
            and not asks_stream_options(kwargs)
            and not is_raw_request(kwargs)
            and not self.runtime.rejects_stream_options(self.stream_key)
        ):
            self.kwargs = {**self.base_kwargs, "stream_options": {"include_usage": True}}
            self.injected = True
            attrs[sc.LLMMETER_STREAM_USAGE_INJECTED] = True

    # --- while the SDK method runs -----------------------------------------------------

    def enter(self, outer: otel_context.Context | None = None) -> None:
        """Make our span current for the SDK call, so HTTP-level spans nest under it; and,
        unless told to keep them, tell other OpenAI instrumentations that this call is
        recorded (see ``_coexist.py``). ``outer``: the current context, when the caller has
        just read it."""
        target = self.target
        self._window = window = Window()
        context = entering(
            self.span,
            window,
            outer if outer is not None else otel_context.get_current(),
            suppress=self.runtime.settings.suppress_others,
            embeddings=target.endpoint == EMBEDDINGS,
            fetch=target.retrieve,
        )
        self._ctx_token = otel_context.attach(context)
        self._call_token = current_call.set(self)

    def leave(self) -> None:
        """Undo :meth:`enter`: the span is never left current while the user holds a stream
        (nor after, should another instrumentation restore our context late)."""
        window = self._window
        if window is not None:
            window.open = False
        try:  # every call passes here: a bare try costs less than a guard site's with
            if self._call_token is not None:
                current_call.reset(self._call_token)
                self._call_token = None
            if self._ctx_token is not None:
                otel_context.detach(self._ctx_token)
                self._ctx_token = None
        except Exception as exc:
            if not self.runtime.guard.handle("call.leave", exc):
                raise

    def on_attempt(self) -> None:
        """One HTTP attempt was built inside the SDK (its retries included): past the other
        instrumentations' wrappers, so the HTTP request gets instrumentation back."""
        self.attempts += 1
        window = self._window
        if window is not None:
            window.http = True  # the generic suppression flags read false from now on

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
            call = self._reopen(error_type(exc, self.runtime.sdk))
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

    def reopen_stream(self, exc: BaseException) -> Call | Untraced:
        """The stream's re-send, not entered (see :meth:`stream_falls_back`)."""
        with self.runtime.guard.site("policy.fallback"):
            return self._reopen(error_type(exc, self.runtime.sdk))
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
        router = runtime.router
        if (
            router is None
            or not router.checks_answers
            or self.stream_key
            or not self._may_fall_back()
        ):
            return None
        rejected = False
        with runtime.guard.site("policy.accept"):
            sdk = runtime.sdk
            rejected = (
                sdk is not None
                and not isinstance(result, sdk.streams)
                and not sdk.is_raw(result)
                and not router.accepts(result)
            )
            if rejected:
                self.turned_down = True
                self.span.set_attribute(sc.LLMMETER_POLICY_ACCEPTED, False)
        if not rejected:
            return None
        with runtime.guard.site("call.result"):
            self.take(result)
        with runtime.guard.site("policy.fallback"):
            call = self._reopen(sc.FALLBACK_REJECTED)
            call.enter()
            return call
        return UNTRACED

    # --- how a call ends ---------------------------------------------------------------

    def take(self, result: Any) -> None:
        """The SDK's result, when it is the user's answer itself (not a stream or a raw
        response, which a proxy carries): read it and finish. Callers hold a guard site."""
        read_response(self.target.endpoint, result, self.outcome, capture=self.capture)
        if self.routing is not None or self.evaluation is not None:
            self.result = result
        self.finish()

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
            window = self._window
            if window is not None and how != "abandoned":  # not from the collector's thread
                window.give_back()
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
        attrs = response_attributes(outcome)
        labels: MetricLabels | None = None
        if self.metric_attrs is self.shape.labels:  # the common case: labels built once
            labels = self.shape.answered_by(outcome.response_model)
            metric_attrs = labels.call
        else:
            metric_attrs = self._answered_labels()
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
            usage_attributes(usage, attrs, runtime.cache_write)
        if usage is not None and usage.input_tokens is not None:
            # No input count (a malformed answer): pricing would invent a zero; leave it out.
            cost = self._price(usage, attrs)
            if cost is not None and self.routing is not None and self.fallback_of is None:
                with runtime.guard.site("call.savings"):
                    self._savings(usage, cost, attrs, metric_attrs)
        if runtime.settings.capture_content and outcome.output:
            capture_output(outcome, attrs, runtime.settings)
        if error is not None:
            metric_attrs = self._failed(error, attrs, metric_attrs)
            labels = None
        if self.content is not None and runtime.event_logger is not None:
            with runtime.guard.site("call.content_event"):
                content_event(
                    runtime.event_logger,
                    span,
                    attrs={**self.metric_attrs, **attrs},
                    content=self.content,
                    outcome=outcome,
                    settings=runtime.settings,
                )
        if self.evaluation is not None:
            with runtime.guard.site("evaluation.judge"):
                self.evaluation.finish(
                    attrs, cost.total if cost is not None else None, error, self.result
                )
        span.set_attributes(attrs)
        span.end()

        runtime.record_metrics(
            runtime.instruments,
            labels or MetricLabels.of(metric_attrs),
            duration=duration,
            ttfc=ttfc,
            usage=usage,
            cost=cost,
            local=self.shape.provider.local,
            context=trace.set_span_in_context(span, _NO_CONTEXT),
        )
        if self.routing is not None and self.routing.route.evaluate and error is None:
            with runtime.guard.site("evaluation.submit"):
                self._submit_evaluation(self.routing, ended)

    def _failed(
        self, error: BaseException, attrs: dict[str, AttributeValue], metric_attrs: dict[str, Any]
    ) -> dict[str, Any]:
        """Record the error on the span; the metric labels with its type."""
        runtime = self.runtime
        kind = error_type(error, runtime.sdk)
        attrs[sc.ERROR_TYPE] = kind
        record_error(self.span, error, runtime.sdk, content=runtime.settings.capture_content)
        return {**metric_attrs, sc.ERROR_TYPE: kind}

    def _answered_labels(self) -> dict[str, Any]:
        """The metric labels of a call whose own differ from its shape's (a decision)."""
        model = self.outcome.response_model
        if model is None:
            return self.metric_attrs
        return {**self.metric_attrs, sc.GEN_AI_RESPONSE_MODEL: model}

    def _price(self, usage: Usage, attrs: dict[str, AttributeValue]) -> Cost | None:
        """The call's cost, on ``attrs`` (``None``: unpriced, or pricing failed inside us)."""
        runtime = self.runtime
        outcome = self.outcome
        try:  # every priced call passes here: a bare try costs less than a guard site's with
            models = (outcome.response_model, self.model)
            return price(
                runtime.prices,
                usage,
                models,
                outcome.service_tier,
                attrs,
                provider=self.shape.provider,
            )
        except Exception as exc:
            if not runtime.guard.handle("call.price", exc):
                raise
        return None

    def _submit_evaluation(self, routing: Routing, ended: StreamEnd | None) -> None:
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

    def _savings(
        self, usage: Usage, cost: Cost, attrs: dict[str, AttributeValue], metric_attrs: Any
    ) -> None:
        """What routing saved (or, shadowed, would save): the same tokens at both prices."""
        routing = self.routing
        assert routing is not None
        prices = self.runtime.prices
        tier = self.outcome.service_tier
        provider = self.shape.provider.prices
        if self.turned_down:  # paid for, then replaced by the original model's answer
            attrs[sc.LLMMETER_POLICY_SAVINGS] = -cost.total
            return
        if routing.route.shadow:
            other = prices.price(
                usage, (routing.route.model,), provider=provider, service_tier=tier
            )
            saved = None if other is None else cost.total - other.total
        else:
            other = prices.price(usage, (routing.asked,), provider=provider, service_tier=tier)
            saved = None if other is None else other.total - cost.total
        if saved is None:
            return
        attrs[sc.LLMMETER_POLICY_SAVINGS] = saved
        if saved > 0:
            self.runtime.instruments.savings.add(saved, metric_attrs)


def _response_id(args: tuple[Any, ...], kwargs: Mapping[str, Any], attrs: dict[str, Any]) -> None:
    """A ``responses.retrieve`` call's id, on its span (never on metrics: unbounded)."""
    rid = args[0] if args else kwargs.get("response_id")
    if isinstance(rid, str):
        attrs[sc.GEN_AI_RESPONSE_ID] = rid


def _origin(
    fallback_of: Call | None, evaluation: Evaluation | None, context: otel_context.Context | None
) -> tuple[otel_context.Context, str | None, Attribution | None]:
    """The parent context, task label and attribution of a call: the routed call's for its
    fallback; an evaluation request is a root (linked to the user's call) with the user's task
    label and no attribution (its cost is evaluation's, capped by the evaluation budget)."""
    if fallback_of is not None:
        return fallback_of.parent, fallback_of.label, fallback_of.attribution
    if evaluation is not None:
        return otel_context.Context(), evaluation.label, None
    parent = context if context is not None else otel_context.get_current()
    return parent, current_task.get(), current_attribution.get()


def _action(routing: Routing | None, fallback_of: Call | None) -> str | None:
    if routing is None:
        return None
    if fallback_of is not None:
        return sc.ACTION_FALLBACK
    return sc.ACTION_SHADOW if routing.route.shadow else sc.ACTION_ROUTE


def open_call(
    runtime: Runtime,
    target: Target,
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    context: otel_context.Context | None = None,
) -> Call | None:
    """Start a call's telemetry, or return None if that failed (the user's call goes on).
    ``context``: the current context, when the caller has just read it."""
    try:  # every call passes here: a bare try costs less than a guard site's with
        fallback = runtime.fallback
        if fallback is not None:  # llmmeter's own providers, until the application has some
            fallback.check()
        call = Call(runtime, target, instance, args, kwargs, context=context)
        call.enter(context)
        return call
    except Exception as exc:
        if not runtime.guard.handle("call.open", exc):
            raise
    return None
