"""What one ``instrument()`` built, and the bounded caches every call reads.

A :class:`Runtime` holds the tracer, the metric instruments, the settings, the guard, the
price table, the policy's :class:`~llmmeter._routing.Router` and the evaluator; the registry
swaps it in and out as a whole, so a call sees one consistent instrumentation. The caches
keep per-call work to dictionary lookups: a request *shape* (method, model, server, task)
has constant attributes built once, a client's host and port are read once per base URL
object. Every cache is capped: a program may make any number of models, task labels, mock
clients or servers, and none of them may grow memory without bound.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from . import _semconv as sc
from ._providers import Provider, provider_of
from ._targets import Target, reports_usage_only_when_asked

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer
    from opentelemetry.util.types import AttributeValue

    from ._attribution import Attribution, MetricAttribution
    from ._bootstrap import Fallback
    from ._config import Settings
    from ._evaluation import Evaluator
    from ._guard import Guard
    from ._metrics import Instruments
    from ._pricing import PriceTable
    from ._routing import Router
    from ._sdk import SdkTypes

MAX_REMEMBERED: Final = 10_000
"""Responses ids whose usage was counted, and servers that refused ``stream_options``."""
MAX_CLIENT_KINDS: Final = 64
"""Client classes remembered as Azure or not: a handful in a program, but ``unittest.mock``
makes a class per mock, and remembering each would keep them all alive."""
MAX_SERVERS: Final = 64
"""Base URL objects remembered with their host and port (one per client, usually a few)."""
MAX_SHAPES: Final = 512
"""Request shapes (method, model, server, task) whose constant attributes are remembered;
past the cap the cache starts over (task labels are the user's, so could be many)."""
MAX_ATTRIBUTED: Final = 1024
"""Attribution label sets a shape remembers its labelled variant for: keys allowed on metrics
are capped per key, so a handful in practice; past the cap the variant is built per call."""
MAX_RESPONSE_MODELS: Final = 16
"""Response models whose metric labels a shape remembers: a request model is answered by
one or two dated snapshots; past the cap the labels are built per call."""


class Runtime:
    """Everything one ``instrument()`` built; held by the instrumentation registry."""

    __slots__ = (
        "_client_kinds",
        "_counted",
        "_lock",
        "_rejected",
        "_servers",
        "_shapes",
        "attribution",
        "cache_write",
        "evaluator",
        "event_logger",
        "fallback",
        "guard",
        "instruments",
        "prices",
        "record_metrics",
        "repair",
        "restack",
        "router",
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
        router: Router | None = None,
        record_metrics: Callable[..., None],
    ) -> None:
        self.tracer = tracer
        self.router = router
        """The policy, as calls see it; ``None`` without one."""
        self.prices = prices
        self.instruments = instruments
        self.settings = settings
        self.guard = guard
        # The GenAI conventions in force (OTEL_SEMCONV_STABILITY_OPT_IN), chosen once at
        # instrument(): a call pays nothing to ask which.
        self.record_metrics = record_metrics
        """Writes a call's metric points under those names (see ``_record.py``)."""
        latest = settings.latest_semconv and instruments.latest is not None
        self.cache_write = (
            sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS
            if latest
            else sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
        )
        """The span attribute of cache-write tokens."""
        self.sdk: SdkTypes | None = None
        """The SDK's classes, once the application has imported openai."""
        self.evaluator: Evaluator | None = None
        """Shadow evaluation's workers; set by the registry when there is a policy."""
        self.event_logger: Any = None
        """Where content events go (the logs API's logger), when content goes to events."""
        self.restack: Callable[[Any], None] | None = None
        """Set while other OpenAI instrumentations are told to stand back: each call checks
        that llmmeter's wrapper is still the outermost (see ``_coexist.py``)."""
        self.repair: Callable[[], None] | None = None
        """Set while some module's patching was interrupted: finishes it (see the registry)."""
        self.fallback: Fallback | None = None
        """The providers llmmeter built because the application had none, while it has
        none: each call checks whether it has configured its own since."""
        self.attribution: MetricAttribution | None = None
        """The attribution keys allowed on metrics and their values so far, when some are."""
        self._lock = threading.Lock()
        self._rejected: set[str] = set()
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._client_kinds: dict[type[Any], bool] = {}
        self._servers: dict[int, tuple[Any, str | None, int | None]] = {}
        self._shapes: dict[tuple[Any, ...], Shape] = {}

    def rejects_stream_options(self, key: str) -> bool:
        return key in self._rejected

    def remember_rejection(self, key: str) -> None:
        with self._lock:
            if len(self._rejected) < MAX_REMEMBERED:
                self._rejected.add(key)

    def first_count(self, response_id: str) -> bool:
        """True the first time a Responses id's usage is seen (create, then retrieve)."""
        with self._lock:
            if response_id in self._counted:
                self._counted.move_to_end(response_id)
                return False
            self._counted[response_id] = None
            if len(self._counted) > MAX_REMEMBERED:
                self._counted.popitem(last=False)
            return True

    def is_azure(self, client: Any) -> bool:
        kind = type(client)
        known = self._client_kinds.get(kind)
        if known is None:
            known = any(c.__name__ == "BaseAzureClient" for c in kind.__mro__)
            if len(self._client_kinds) < MAX_CLIENT_KINDS:
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
        if len(self._servers) >= MAX_SERVERS:
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
    ) -> Shape:
        """The attributes that depend only on the method, model, server and task: built
        once per combination instead of on every call."""
        address, port = self.server_of(client) if client is not None else (None, None)
        key = (target, model, address, port, label, azure)
        shape = self._shapes.get(key)
        if shape is None:
            shape = Shape.build(target, model, address, port, label, azure=azure)
            if len(self._shapes) >= MAX_SHAPES:
                self._shapes.clear()
            self._shapes[key] = shape
        return shape

    def attributed(self, shape: Shape, attribution: Attribution) -> Shape:
        """``shape`` with the metric labels of ``attribution``'s allowed keys (capped); the
        shape itself when no key it carries goes on metrics."""
        allowed = self.attribution
        if allowed is None:
            return shape
        labels = allowed.labels(attribution)
        return shape.with_labels(labels) if labels else shape


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """A request shape's constant attributes. Shared by every call of that shape, so never
    mutated: a call copies ``common`` into its span attributes and passes ``labels`` (the
    metric labels) to the SDK, which copies what it keeps."""

    common: dict[str, AttributeValue]
    """The bounded attributes that are also metric labels."""
    labels: dict[str, Any]
    """``common`` as metric labels (a separate dict: a call may replace, never mutate it)."""
    static: dict[str, AttributeValue]
    """Span-only constant attributes (API type; the port when there is no address)."""
    name: str
    azure: bool
    provider: Provider
    """Who answers (named and priced by the host of the client's base URL)."""
    address: str | None
    port: int | None
    first_party: bool
    """The server is OpenAI's or Azure OpenAI's own API (see
    :func:`~llmmeter._targets.reports_usage_only_when_asked`)."""
    span_base: dict[str, AttributeValue] = dataclasses.field(default_factory=dict)
    """``common`` and ``static`` together: a call's first span attributes, copied."""
    _answered: dict[str | None, MetricLabels] = dataclasses.field(default_factory=dict)
    _attributed: dict[tuple[tuple[str, str], ...], Shape] = dataclasses.field(default_factory=dict)

    def with_labels(self, labels: tuple[tuple[str, str], ...]) -> Shape:
        """This shape with attribution metric labels (name, value) added: built once per
        label set, so labelled calls keep the cached label sets of unlabelled ones."""
        shape = self._attributed.get(labels)
        if shape is None:
            added = dict(labels)
            shape = dataclasses.replace(
                self,
                common={**self.common, **added},
                labels={**self.labels, **added},
                span_base={**self.span_base, **added},
                _answered={},
                _attributed={},
            )
            if len(self._attributed) < MAX_ATTRIBUTED:
                self._attributed[labels] = shape
        return shape

    def answered_by(self, response_model: str | None) -> MetricLabels:
        """The metric labels of a call of this shape that the response names
        ``response_model``: built once per model (a few per shape), not per call."""
        labels = self._answered.get(response_model)
        if labels is None:
            call = self.labels
            if response_model is not None:
                call = {**call, sc.GEN_AI_RESPONSE_MODEL: response_model}
            labels = MetricLabels.of(call)
            if len(self._answered) < MAX_RESPONSE_MODELS:
                self._answered[response_model] = labels
        return labels

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
    ) -> Shape:
        provider = provider_of(address, azure=azure)
        common = _common_attributes(target, model, address, label, provider)
        static: dict[str, AttributeValue] = {}
        if provider.local:
            static[sc.LLMMETER_SERVER_LOCAL] = True
        api_type = target.api_type
        if api_type is not None:
            static[sc.OPENAI_API_TYPE] = api_type
        if port is not None:
            # A metric label too, where the conventions require it: whenever server.address is.
            (common if sc.SERVER_ADDRESS in common else static)[sc.SERVER_PORT] = port
        name = f"{target.operation} {model}" if model else target.operation
        first_party = reports_usage_only_when_asked(address, azure=azure)
        return cls(
            common,
            dict(common),
            static,
            name,
            azure,
            provider,
            address,
            port,
            first_party,
            span_base={**common, **static},
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MetricLabels:
    """A call's metric labels, and the token histogram's two label sets derived from them.
    Shared by every call with the same labels, so never mutated (the SDK copies them)."""

    call: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]

    @classmethod
    def of(cls, call: dict[str, Any]) -> MetricLabels:
        return cls(
            call,
            {**call, sc.GEN_AI_TOKEN_TYPE: "input"},
            {**call, sc.GEN_AI_TOKEN_TYPE: "output"},
        )


def _common_attributes(
    target: Target, model: str | None, address: str | None, label: str | None, provider: Provider
) -> dict[str, AttributeValue]:
    """The attributes that are also metric labels (bounded values only)."""
    attrs: dict[str, AttributeValue] = {
        sc.GEN_AI_OPERATION_NAME: target.operation,
        sc.GEN_AI_PROVIDER_NAME: provider.name,
    }
    if address:
        attrs[sc.SERVER_ADDRESS] = address
    if model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    if label is not None:
        attrs[sc.LLMMETER_TASK] = label
    return attrs


def _server_of(url: Any) -> tuple[str | None, int | None]:
    host = getattr(url, "host", None)
    port = getattr(url, "port", None)
    if port is None:
        port = {"https": 443, "http": 80}.get(getattr(url, "scheme", ""))
    return (host if isinstance(host, str) and host else None), port
