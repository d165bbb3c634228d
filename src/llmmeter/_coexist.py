"""Other OpenAI instrumentations in the same process: one span and one set of metrics a call.

``opentelemetry-bootstrap -a install`` and the frameworks put other OpenAI instrumentations
beside llmmeter (contrib's openai-v2, the GenAI SIG's genai-openai, OpenLLMetry, OpenInference,
OpenLIT, Logfire's ``instrument_openai``). Each would record every call again: a second span
nested in llmmeter's and a second ``gen_ai.client.*`` series under the same metric names, so a
dashboard counts each call twice. By default (``LLMMETER_OTHER_INSTRUMENTATIONS=suppress``)
llmmeter keeps its own telemetry and silences the others where they listen, following the
convention that the outermost layer owns an inference's span:

- **It stays the outermost wrapper.** When another instrumentation wrapped a method over
  llmmeter's (it instrumented later), llmmeter wraps it once more on top; its inner wrapper
  passes through, as for any nested call.
- **While the SDK method runs, the context says an inference is recorded:**
  ``suppress_language_model_instrumentation`` (OpenLLMetry's key), the GenAI utilities' typed
  context data when the application has them loaded (genai-openai), and OpenTelemetry's
  ``suppress_instrumentation`` (OpenInference, Logfire and OpenLLMetry's Responses wrappers),
  which turns false once the SDK begins its HTTP attempt (:class:`HttpGate`), so that the
  application's HTTP spans stay.
- **What cannot be silenced is said once**, with the switch that turns it off (openai-v2 and
  OpenLIT read no context key); llmmeter never removes another instrumentation's patch (their
  unwrapping would strip the wrong layer).

``LLMMETER_OTHER_INSTRUMENTATIONS=keep`` leaves the others alone (both record).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace

logger = logging.getLogger("llmmeter")

LM_KEY: Final = "suppress_language_model_instrumentation"
"""OpenLLMetry's (Traceloop's semantic conventions) plain-string context key."""
_SUPPRESS_PLAIN: Final = "suppress_instrumentation"
UTIL_GENAI: Final = "opentelemetry.util.genai.invocation"
"""The GenAI utilities' module with the typed context data; never imported by llmmeter."""


@dataclass(frozen=True, slots=True)
class Other:
    """Another OpenAI instrumentation, as llmmeter recognises its patches."""

    name: str
    """Its package, as the log names it."""
    prefix: str
    """The module its wrappers are defined in starts with this."""
    silenced: bool = field(kw_only=True)
    """llmmeter's context keys make it record nothing."""
    switch: str = field(kw_only=True)
    """How to turn it off."""


_DISABLE: Final = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=openai (under opentelemetry-instrument)"
_OPENLIT_OFF: Final = (
    "openlit.init(disabled_instrumentors=['openai']) or OPENLIT_DISABLED_INSTRUMENTORS=openai"
)
KNOWN: Final = (
    Other(
        "opentelemetry-instrumentation-genai-openai",
        "opentelemetry.instrumentation.genai.openai",
        silenced=True,
        switch=_DISABLE,
    ),
    Other(
        "opentelemetry-instrumentation-openai-v2",
        "opentelemetry.instrumentation.openai_v2",
        silenced=False,
        switch=_DISABLE,
    ),
    Other(
        "opentelemetry-instrumentation-openai (OpenLLMetry)",
        "opentelemetry.instrumentation.openai",
        silenced=True,
        switch=_DISABLE,
    ),
    Other(
        "openinference-instrumentation-openai",
        "openinference.instrumentation.openai",
        silenced=True,
        switch=_DISABLE,
    ),
    Other("openlit", "openlit.", silenced=False, switch=_OPENLIT_OFF),
    Other(
        "logfire (instrument_openai)",
        "logfire.",
        silenced=True,
        switch="not calling logfire.instrument_openai()",
    ),
)
"""Longest prefix first where prefixes nest (genai-openai and openai-v2 before OpenLLMetry)."""
LOGFIRE: Final = KNOWN[5]


def identify(module: str) -> Other | None:
    """The known instrumentation whose wrapper is defined in ``module``."""
    for other in KNOWN:
        if module.startswith(other.prefix):
            return other
    return None


def wrapper_modules(attribute: Any, *, down_to: Any = None) -> Iterator[str]:
    """The modules of the wrapt wrappers stacked on a patched attribute, outermost first,
    stopping at ``down_to`` (llmmeter's own wrapper, say)."""
    seen = 0
    while attribute is not None and attribute is not down_to and seen < 32:
        seen += 1
        wrapper = getattr(attribute, "_self_wrapper", None)
        if wrapper is None:
            return
        module = str(getattr(wrapper, "__module__", None) or type(wrapper).__module__)
        if module == "builtins" or module.startswith("functools"):  # a partial: its function
            module = str(getattr(getattr(wrapper, "func", None), "__module__", "") or module)
        yield module
        attribute = getattr(attribute, "__wrapped__", None)


def others_on(attribute: Any, *, down_to: Any = None) -> list[Other]:
    """The other instrumentations that wrapped ``attribute`` (above ``down_to``)."""
    found: list[Other] = []
    for module in wrapper_modules(attribute, down_to=down_to):
        other = identify(module)
        if other is not None and other not in found:
            found.append(other)
    return found


def request_level(openai: Any) -> list[Other]:
    """Instrumentations that patch the clients' ``request`` rather than resource methods
    (OpenInference, Logfire): always below llmmeter, silenced by the context."""
    found: list[Other] = []
    for client in (getattr(openai, "OpenAI", None), getattr(openai, "AsyncOpenAI", None)):
        attrs = getattr(client, "__dict__", {})
        if "_is_instrumented_by_logfire" in attrs:
            found.append(LOGFIRE)
        request = attrs.get("request")
        if request is not None:
            found.extend(o for o in others_on(request) if o not in found)
    return list(dict.fromkeys(found))


class Window:
    """A call's SDK window, open while the SDK method runs: what llmmeter puts in the context
    in place of ``True``. Another instrumentation may attach a context of its own inside the
    window and detach it after the window closed (openai-v2 does, at a stream's end); that
    detach restores llmmeter's context, which then says nothing any more: the window is
    closed, so its flags are false and its span is the one that was current before."""

    __slots__ = ("entered", "http", "open", "outer")

    def __init__(self) -> None:
        self.open = True
        self.http = False
        """The SDK has begun an HTTP attempt: the generic flags (:class:`HttpGate`) are off."""
        self.outer: Any = None
        """The context current before the call entered (the application's)."""
        self.entered: Any = None
        """The context the call attached."""

    def __bool__(self) -> bool:
        return self.open

    def give_back(self) -> None:
        """Called as a stream ends in the application's flow: if another instrumentation's
        late detach has just put the call's context back (see above), the application's own
        is current again, as it would be without llmmeter."""
        if self.entered is not None and otel_context.get_current() is self.entered:
            otel_context.attach(self.outer)  # never detached: it restores the outer value


class HttpGate:
    """The value of OpenTelemetry's generic ``suppress_instrumentation`` keys in a call's
    context: true while the window is open and the SDK has not begun its HTTP attempt. The
    other OpenAI instrumentations read it on entry and stand back; the HTTP instrumentation
    reads it as the request goes out and records as usual, its spans nested under
    llmmeter's. One flag flipped per call, where a context with the keys off would be built
    and attached at every attempt."""

    __slots__ = ("_window",)

    def __init__(self, window: Window) -> None:
        self._window = window

    def __bool__(self) -> bool:
        window = self._window
        return window.open and not window.http


class WindowSpan(trace.Span):
    """llmmeter's span as the current span while the call's window is open; afterwards the
    span that was current before it (see :class:`Window`), so that nothing started from a
    context restored late becomes a child of a call that has ended."""

    __slots__ = ("_outer", "_span", "_window")

    def __init__(self, span: trace.Span, outer: trace.Span, window: Window) -> None:
        self._span = span
        self._outer = outer
        self._window = window

    def _target(self) -> trace.Span:
        return self._span if self._window.open else self._outer

    def get_span_context(self) -> trace.SpanContext:
        return self._target().get_span_context()

    def is_recording(self) -> bool:
        return self._target().is_recording()

    def end(self, end_time: int | None = None) -> None:
        self._target().end(end_time)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self._target().set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self._target().set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self._target().add_event(name, attributes, timestamp)

    def update_name(self, name: str) -> None:
        self._target().update_name(name)

    def set_status(self, status: Any, description: str | None = None) -> None:
        self._target().set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self._target().record_exception(exception, attributes, timestamp, escaped)


def entering(
    span: trace.Span,
    window: Window,
    current: otel_context.Context,
    *,
    suppress: bool,
    embeddings: bool,
    fetch: bool,
) -> Any:
    """The context a call attaches while its SDK method runs over ``current`` (the context
    current now): its span current (through the window), and, ``suppress``, the flags that
    tell other instrumentations it is recorded."""
    window.outer = current
    context = trace.set_span_in_context(
        WindowSpan(span, trace.get_current_span(current), window), current
    )
    if suppress:
        context = suppressing(context, window, embeddings=embeddings, fetch=fetch)
    window.entered = context
    return context


def suppressing(
    context: otel_context.Context, window: Window, *, embeddings: bool, fetch: bool
) -> Any:
    """``context`` saying that llmmeter records this inference (see the module docstring):
    ``window`` as the language-model flag, its :class:`HttpGate` as the generic ones."""
    gate = HttpGate(window)
    values: dict[str, Any] = {
        LM_KEY: window,
        _SUPPRESS_KEY: gate,
        _SUPPRESS_PLAIN: gate,
    }
    genai = sys.modules.get(UTIL_GENAI)
    if genai is not None:
        data = _genai_data(genai, embeddings=embeddings, fetch=fetch)
        if data is not None:
            values[data[0]] = data[1]
    return otel_context.Context({**context, **values})


def _genai_data(genai: Any, *, embeddings: bool, fetch: bool) -> tuple[str, Any] | None:
    """The GenAI utilities' context data for this kind of call: an instrumentation built on
    them that finds it records nothing (it publishes into it instead)."""
    key, cls = (
        ("CLIENT_EMBEDDING_CONTEXT_KEY", "EmbeddingData")
        if embeddings
        else ("CLIENT_FETCH_RESPONSE_CONTEXT_KEY", "FetchResponseData")
        if fetch
        else ("CLIENT_INFERENCE_CONTEXT_KEY", "InferenceData")
    )
    name, make = getattr(genai, key, None), getattr(genai, cls, None)
    if not isinstance(name, str) or not callable(make):
        return None
    try:
        return name, make()
    except Exception:  # a changed signature: the keys are not what we know
        logger.debug("llmmeter: cannot build the GenAI utilities' %s", cls, exc_info=True)
        return None


_SUPPRESS_KEY: Final = otel_context._SUPPRESS_INSTRUMENTATION_KEY
