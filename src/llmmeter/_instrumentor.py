"""llmmeter's OpenTelemetry instrumentor: the one registry of applied patches.

Usage::

    import llmmeter
    llmmeter.instrument()            # or: opentelemetry-instrument python app.py

Configuration: arguments of :func:`llmmeter.instrument`, else the environment variables
declared in ``_config.py`` (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``,
``LLMMETER_*``, among them ``LLMMETER_POLICY`` for a routing policy file). Providers are
taken as given or from the OpenTelemetry globals; building them is ``_bootstrap.py``'s job,
never this module's.

Patching is lazy, per module. A post-import hook waits for the application's own ``import
openai``; then each module of :data:`~llmmeter._targets.TARGETS` gets its own hook, which patches
its classes when the SDK first imports it (openai imports its resources on first access, such
as ``client.responses``), before any of their methods can run. So instrumenting imports
neither openai nor the resources the application never uses (``openai.resources.beta`` alone
holds over a thousand pydantic classes). ``uninstrument()`` puts every original method back
(the same objects) and makes wrappers that SDK objects still hold (``with_raw_response``
resolves methods once) pass straight through.

All state lives in :data:`REGISTRY`, which ``llmmeter.instrument()`` drives directly.
``LLMMeterInstrumentor``, the ``BaseInstrumentor`` that ``opentelemetry-instrument`` finds
through the ``opentelemetry_instrumentor`` entry point, is a face over it, built when first
asked for: importing ``BaseInstrumentor`` costs about 12 ms (``packaging``, its semantic
convention helpers) that ``llmmeter.instrument()`` would otherwise spend on every start-up. Its
dependency check is replaced by a check of ``openai.__version__`` once openai is imported.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading
from collections.abc import Callable, Collection
from typing import Any, Final

import wrapt
import wrapt.importer
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import _coexist as coexist
from . import _sdk
from . import _semconv as sc
from ._attribution import MetricAttribution, attribute_name
from ._bootstrap import resolve_providers
from ._config import Settings, resolve_settings
from ._evaluation import Evaluator
from ._guard import Guard
from ._metrics import Instruments
from ._package import INSTRUMENTED, __version__
from ._pricing import PriceTable
from ._process import ChildFlush
from ._record import record_latest_metrics, record_metrics
from ._routing import Router
from ._runtime import Runtime
from ._targets import ATTEMPT_HOOK, STREAM_HELPER_CLOSES, TARGETS
from ._wrappers import (
    RuntimeSource,
    async_helper_close_wrapper,
    async_wrapper,
    attempt_wrapper,
    helper_close_wrapper,
    sync_wrapper,
)

logger = logging.getLogger("llmmeter")

_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
_MAX_RESTACKS: Final = 3
"""Times llmmeter wraps one method again over a later wrapper, before it stops trying."""

Patch = tuple[str, Callable[[RuntimeSource], Any]]
"""``("Class.method", make_wrapper)``: one method to patch and how to build its wrapper."""


def _patches_by_module() -> dict[str, tuple[Patch, ...]]:
    patches: dict[str, list[Patch]] = {}
    for target in TARGETS:
        wrapper = async_wrapper if target.is_async else sync_wrapper
        patches.setdefault(target.module, []).append(
            (target.qualname, functools.partial(wrapper, target))
        )
    module, qualname = ATTEMPT_HOOK
    patches.setdefault(module, []).append((qualname, attempt_wrapper))
    for module, qualname, is_async in STREAM_HELPER_CLOSES:
        close = async_helper_close_wrapper if is_async else helper_close_wrapper
        patches.setdefault(module, []).append((qualname, close))
    return {module: tuple(rows) for module, rows in patches.items()}


_PATCHES: Final = _patches_by_module()
"""Every module with something to patch, and what; each is patched when it is imported."""


SUPPORTED_MAJORS: Final = range(1, 4)
"""openai major versions llmmeter patches: ``_package.INSTRUMENTED`` (``openai >= 1.0, < 4``),
checked without ``packaging``; a test keeps the two in step."""


def _supported(version: str) -> bool:
    major = version.split(".", 1)[0]
    return not major.isdigit() or int(major) in SUPPORTED_MAJORS  # unreadable: try anyway


class Registry:
    """The patches applied to the openai SDK and the runtime they report to (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None
        self._applied: list[tuple[type[Any], str, Any, Any]] = []
        """``(class, method, original, our wrapper)`` for every patch applied."""
        self._waiting: set[str] = set()
        self._unfinished: set[str] = set()
        """Modules whose patching an exception interrupted (Ctrl-C, a job timeout raised from
        a signal handler): finished at the next SDK request, or at their import again."""
        self._failed: set[tuple[type[Any], str]] = set()
        self._restacked: dict[tuple[type[Any], str], int] = {}
        self._reported: set[str] = set()
        """Other instrumentations already named in the log."""
        """Methods whose patching raised: logged once, not tried again."""
        """Modules one of our post-import hooks waits for (wrapt cannot remove a hook)."""
        self._providers: tuple[TracerProvider | None, MeterProvider | None] = (None, None)
        self._child_flush: ChildFlush | None = None
        self._standalone_prices: PriceTable | None = None
        self._router: Router | None = None
        """The live runtime's policy, kept to close its spend poller at ``uninstrument()``."""
        self._evaluator: Evaluator | None = None

    @property
    def instrumented(self) -> bool:
        return self._runtime is not None

    def runtime(self) -> Runtime | None:
        """The live runtime, or None when not instrumented (wrappers then pass through)."""
        return self._runtime

    def price_table(self) -> PriceTable:
        """The live table when instrumented; else one built on first use (for scripts)."""
        runtime = self._runtime
        if runtime is not None:
            return runtime.prices
        table = self._standalone_prices
        if table is None:
            # Built outside the lock: validating an overrides file may load the price data.
            built = PriceTable.load(resolve_settings().prices_path)
            with self._lock:
                table = self._standalone_prices
                if table is None:
                    table = self._standalone_prices = built
        return table

    def instrument(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        logger_provider: Any = None,
        settings: Settings | None = None,
        policy: Any = None,
    ) -> None:
        """Build the runtime and patch the SDK (now if openai is imported, else on import).

        Idempotent: when already instrumented, logs a warning and does nothing.
        """
        if self._runtime is not None:
            logger.warning("llmmeter.instrument() called again; already instrumented, ignoring")
            return
        if settings is None:
            settings = resolve_settings()
        # ConfigError on a bad file. The price data itself loads at the first priced call.
        prices = PriceTable.load(settings.prices_path)
        guard = Guard(strict=settings.strict)
        # ConfigError on a bad policy; builds the spend poller, starts nothing yet.
        router = Router.build(policy, settings, guard)
        # Last, once everything else is valid: the application's providers when it has some,
        # else llmmeter's own fallback from OTEL_* (never installed as the globals).
        tracer_provider, meter_provider, fallback = resolve_providers(
            tracer_provider, meter_provider, exit_timeout=settings.exit_timeout
        )
        tracer = trace.get_tracer("llmmeter", __version__, tracer_provider, schema_url=_SCHEMA_URL)
        meter = metrics.get_meter("llmmeter", __version__, meter_provider, schema_url=_SCHEMA_URL)
        instruments = Instruments.create(meter, latest=settings.latest_semconv)
        if router is not None:
            router.count_spend_errors(instruments.spend_guard_errors)
        with self._lock:
            if self._runtime is not None:  # another thread's instrument() won the race
                logger.warning("llmmeter.instrument() called again; already instrumented, ignoring")
                return
            self._providers = (tracer_provider, meter_provider)
            if self._child_flush is None:
                self._child_flush = ChildFlush(self._flush_targets, exiting=self._exiting)
            self._child_flush.install()
            runtime = self._runtime = Runtime(
                tracer,
                instruments,
                settings,
                guard,
                prices,
                router=router,
                record_metrics=record_latest_metrics
                if instruments.latest is not None
                else record_metrics,
            )
            if settings.metric_attributes:
                runtime.attribution = MetricAttribution(
                    settings.metric_attributes,
                    settings.metric_attribute_limit,
                    instruments,
                    guard,
                )
            if fallback is not None:
                fallback.on_configured = self._on_app_configured
                runtime.fallback = fallback
            if settings.suppress_others:
                runtime.restack = self.restack
            if settings.content_events:
                from opentelemetry._logs import get_logger

                runtime.event_logger = get_logger(
                    "llmmeter", __version__, logger_provider, schema_url=_SCHEMA_URL
                )
            if router is not None:
                runtime.evaluator = self._evaluator = Evaluator(
                    instruments,
                    guard,
                    budget=router.evaluation_budget,
                    comparator=router.comparator,
                    concurrency=settings.evaluation_concurrency,
                    queue_size=settings.evaluation_queue_size,
                    timeout=settings.evaluation_timeout,
                )
                _observe_agreement_targets(meter)
                _observe_budgets(meter)
            self._router = router
            if router is not None:
                router.start()  # polls only while some rule has a spend guard
        # Runs now if openai is already imported, else at the end of the application's import.
        self._when_imported("openai")
        self.restack_all()

    def uninstrument(self) -> None:
        """Put every original method back; wrappers still held somewhere pass through."""
        with self._lock:
            self._runtime = None
            if self._router is not None:
                self._router.close()
                self._router = None
            evaluator, self._evaluator = self._evaluator, None
            for cls, name, original, ours in reversed(self._applied):
                if cls.__dict__.get(name) is not ours:
                    # Another instrumentation wrapped over ours since: putting the original
                    # back would remove its wrapper too. Ours stays inside it, inert.
                    continue
                if original is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, original)
            self._applied.clear()
        if evaluator is not None:
            evaluator.close()  # outside the lock: waits for requests in flight

    def _on_app_configured(self, tracing: bool, metering: bool) -> None:
        """The application set global providers after ``instrument()`` built llmmeter's
        fallback: record to the application's from now on (its pipeline gets llmmeter's
        telemetry, as when it configures OpenTelemetry first)."""
        with self._lock:
            runtime = self._runtime
            if runtime is None:
                return
            tracer_provider, meter_provider = self._providers
            if tracing:
                runtime.tracer = trace.get_tracer("llmmeter", __version__, schema_url=_SCHEMA_URL)
                tracer_provider = None
            if metering:
                meter = metrics.get_meter("llmmeter", __version__, schema_url=_SCHEMA_URL)
                runtime.instruments.rebind(meter)
                if self._router is not None:
                    self._router.count_spend_errors(runtime.instruments.spend_guard_errors)
                    _observe_agreement_targets(meter)
                    _observe_budgets(meter)
                meter_provider = None
            self._providers = (tracer_provider, meter_provider)
            fallback = runtime.fallback
            if fallback is not None and not fallback.active:
                runtime.fallback = None
        signals = " and ".join(n for n, on in (("spans", tracing), ("metrics", metering)) if on)
        logger.info(
            "llmmeter: the application configured OpenTelemetry after llmmeter.instrument(); "
            "llmmeter's %s now go to its providers",
            signals,
        )

    def _exiting(self) -> None:
        """A multiprocessing child ends (no ``atexit`` there): the exit budget starts."""
        runtime = self._runtime
        fallback = runtime.fallback if runtime is not None else None
        if fallback is not None:
            fallback.exiting()

    def _flush_targets(self) -> list[Any]:
        """The providers this instrumentation records to (given, else the globals)."""
        tracer_provider, meter_provider = self._providers
        return [
            tracer_provider or trace.get_tracer_provider(),
            meter_provider or metrics.get_meter_provider(),
        ]

    def _when_imported(self, name: str) -> None:
        """Have :meth:`_on_import` run when module ``name`` is imported (now, if it is).

        One hook per module: a hook an earlier ``instrument()`` left waiting (wrapt keeps it
        until the import) reads the live state when it runs, so none is added next to it.
        """
        with self._lock:
            if name in self._waiting:
                return
            self._waiting.add(name)
        wrapt.register_post_import_hook(functools.partial(self._on_import, name), name)

    def _on_import(self, name: str, module: Any) -> None:
        with self._lock:
            self._waiting.discard(name)
            if self._runtime is None:
                return  # uninstrumented before the import
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            # wrapt runs a hook at once for a module already in sys.modules, even one that
            # another thread is still importing: wait for that import to finish (in the
            # importing thread itself, this returns at once).
            module = importlib.import_module(name)
        try:
            if name == "openai":
                self._on_openai(module)
            else:
                self._patch(name, module)
        except BaseException:
            self._interrupted(name)
            raise

    def _interrupted(self, name: str) -> None:
        """Patching module ``name`` was interrupted. Its import fails with that error and the
        application may well import it again: the hook is re-armed for that (wrapt drops a
        hook once it ran). Should the module stay imported, the next SDK request finishes the
        patching instead (``Runtime.repair``, from the attempt hook every request passes)."""
        with self._lock:
            self._unfinished.add(name)
            runtime = self._runtime
            if runtime is not None:
                runtime.repair = self._finish_patching
        registry = getattr(wrapt.importer, "_post_import_hooks", None)
        lock = getattr(wrapt.importer, "_post_import_hooks_lock", None)
        if isinstance(registry, dict) and lock is not None:
            with lock:  # not register_post_import_hook: the module is still in sys.modules
                registry.setdefault(name, []).append(functools.partial(self._on_import, name))

    def _finish_patching(self) -> None:
        """Patch what an interrupted hook left unpatched, for modules imported by now."""
        with self._lock:
            pending = [n for n in self._unfinished if n in sys.modules]
            # Not imported (any more): its import failed, and the re-armed hook will patch it
            # when the application imports it again.
            self._unfinished.intersection_update(pending)
            runtime = self._runtime
        for name in pending:
            module = sys.modules.get(name)
            if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
                continue  # being imported again: the re-armed hook will see to it
            try:
                if name == "openai":
                    self._on_openai(module)
                else:
                    self._patch(name, module)
            except Exception:
                logger.warning("llmmeter: could not patch %s", name, exc_info=True)
            with self._lock:
                self._unfinished.discard(name)
        with self._lock:
            if runtime is not None and not self._unfinished:
                runtime.repair = None

    def _on_openai(self, openai: Any) -> None:
        """openai is imported: check its version, read its types, hook each target module."""
        version = str(getattr(openai, "__version__", ""))
        if not _supported(version):
            logger.error(
                "llmmeter only instruments %r, but the installed openai is %s, so nothing "
                "can be instrumented.",
                ", ".join(INSTRUMENTED),
                version,
            )
            return
        sdk = _sdk.load()  # may import (never under our lock: an import may run our hooks)
        with self._lock:
            runtime = self._runtime
            if runtime is None:
                return
            runtime.sdk = sdk
        # Modules openai has imported already are patched now; the others as they are imported.
        for name in _PATCHES:
            self._when_imported(name)

    def _patch(self, name: str, module: Any) -> None:
        """Patch what module ``name`` holds; runs before the importer can call any of it.

        The classes are looked up before taking the lock: openai 3.x's resource packages
        import their classes on first access, and that import runs our hooks for the modules
        it brings in (the ``.stream()`` helpers), which take the lock themselves."""
        found = []
        for qualname, make_wrapper in _PATCHES[name]:
            class_name, method = qualname.split(".")
            cls = getattr(module, class_name, None)
            if not isinstance(cls, type) or not hasattr(cls, method):
                logger.debug("llmmeter: %s.%s not in this openai version", name, qualname)
                continue
            found.append((cls, method, make_wrapper))
        # From here on an interrupt (Ctrl-C, a job timeout raised from a signal handler) waits
        # the few microseconds patching takes: a half-patched module would stay so, since the
        # classes live on in a submodule that the application's retry will not import again.
        interrupt: BaseException | None = None
        with self._lock:
            if self._runtime is None:
                return
            for cls, method, make_wrapper in found:
                if (cls, method) in self._failed:
                    continue
                try:
                    self._wrap(cls, method, make_wrapper)
                except Exception:  # the class is not what we expect: say so once, go on
                    self._failed.add((cls, method))
                    logger.warning(
                        "llmmeter: could not patch %s.%s.%s; its calls are not instrumented",
                        name,
                        cls.__name__,
                        method,
                        exc_info=True,
                    )
                except BaseException as exc:
                    if interrupt is None:
                        interrupt = exc
                    self._wrap(cls, method, make_wrapper)
        if interrupt is not None:
            raise interrupt

    def _wrap(self, cls: type[Any], method: str, make_wrapper: Any, *, again: bool = False) -> None:
        """Wrap ``cls.method`` (once per class: a class reached through two module paths is
        patched once), or, ``again``, once more over what is there now."""
        if not again and any(c is cls and m == method for c, m, _, _ in self._applied):
            return
        original = cls.__dict__.get(method)
        wrapper = make_wrapper(self.runtime)
        wrapt.wrap_function_wrapper(cls, method, wrapper)
        installed = cls.__dict__.get(method)
        wrapper.installed_at = (cls, method, installed, make_wrapper)
        self._applied.append((cls, method, original, installed))
        if original is not None and not again:
            self._report_others(coexist.others_on(original))

    def restack(self, wrapper: Any) -> None:
        """Each call, while other instrumentations are told to stand back: if one wrapped
        this method over llmmeter's since, wrap it once more on top, so that llmmeter's span
        is the call's outermost (the one the others defer to). The call that notices may
        carry both spans, once."""
        site = getattr(wrapper, "installed_at", None)
        if site is None:
            return
        cls, method, installed, make_wrapper = site
        if cls.__dict__.get(method) is installed:
            return
        with self._lock:
            current = cls.__dict__.get(method)
            if current is installed or self._runtime is None:
                return
            count = self._restacked.get((cls, method), 0)
            if count >= _MAX_RESTACKS:
                return  # another layer re-wraps itself too: stop rather than pile up
            self._restacked[(cls, method)] = count + 1
            others = coexist.others_on(current, down_to=installed)
            self._wrap(cls, method, make_wrapper, again=True)
        names = ", ".join(o.name for o in others) or "another wrapper"
        logger.info(
            "llmmeter: %s wrapped %s.%s over llmmeter's wrapper; llmmeter wrapped it again on "
            "top, so that each call is recorded once",
            names,
            cls.__qualname__,
            method,
        )
        self._report_others(others)

    def restack_all(self) -> None:
        """Check every patched method (``instrument()``, and after the other instrumentations
        ``opentelemetry-instrument`` loads), and the clients' ``request`` for the
        instrumentations that patch there (OpenInference, Logfire)."""
        with self._lock:
            if self._runtime is None or self._runtime.restack is None:
                return
            latest = {(cls, method): ours for cls, method, _, ours in self._applied}
        for ours in latest.values():
            wrapper = getattr(ours, "_self_wrapper", None)
            if wrapper is not None:
                self.restack(wrapper)
        openai = sys.modules.get("openai")
        if openai is not None:
            self._report_others(coexist.request_level(openai))

    def _report_others(self, others: list[coexist.Other]) -> None:
        """Say once per instrumentation what llmmeter does about it."""
        runtime = self._runtime
        if runtime is None:
            return
        for other in others:
            if other.name in self._reported:
                continue
            self._reported.add(other.name)
            if not runtime.settings.suppress_others:
                logger.info(
                    "llmmeter: %s also instruments openai; both record each call "
                    "(LLMMETER_OTHER_INSTRUMENTATIONS=keep)",
                    other.name,
                )
            elif other.silenced:
                logger.info(
                    "llmmeter: %s also instruments openai; llmmeter records each call and "
                    "tells it to record nothing (LLMMETER_OTHER_INSTRUMENTATIONS=keep keeps both)",
                    other.name,
                )
            else:
                logger.warning(
                    "llmmeter: %s also instruments openai and cannot be told to stand back: "
                    "each call gets its span and gen_ai.client.* metrics too (llmmeter's "
                    "dashboard and rules count only llmmeter's); turn it off with %s",
                    other.name,
                    other.switch,
                )


def _observe_agreement_targets(meter: metrics.Meter) -> None:
    """``llmmeter.policy.agreement_target``: each evaluating rule's target and mode, read at
    each export, so that an alert can compare a rule's agreement with its own target.

    The callback reads the live runtime: a second ``instrument()`` on the same meter gets the
    first gauge back from the SDK (with the first callback), which then still reports."""
    from opentelemetry.metrics import CallbackOptions, Observation

    def observe(options: CallbackOptions) -> list[Observation]:
        runtime = REGISTRY.runtime()
        router = runtime.router if runtime is not None else None
        if router is None:
            return []
        return [
            Observation(
                found.target,
                {sc.LLMMETER_POLICY_RULE: found.rule, sc.LLMMETER_POLICY_MODE: found.mode},
            )
            for found in router.agreement_targets()
        ]

    meter.create_observable_gauge(
        sc.METRIC_AGREEMENT_TARGET,
        callbacks=[observe],
        unit="1",
        description="The agreement a rule's shadow evaluation must show, by rule and mode",
    )


def _observe_budgets(meter: metrics.Meter) -> None:
    """``llmmeter.policy.daily_budget.usd``: each spend guard's budget in force, by rule and,
    for budgets per value of an attribution key, by that key's attribute, read at each
    export: the alert rules divide the 24 h spend by it to warn at 80 % and 90 %."""
    from opentelemetry.metrics import CallbackOptions, Observation

    def observe(options: CallbackOptions) -> list[Observation]:
        runtime = REGISTRY.runtime()
        router = runtime.router if runtime is not None else None
        if router is None:
            return []
        found = []
        for budget in router.daily_budgets():
            attrs = {sc.LLMMETER_POLICY_RULE: budget.rule}
            if budget.by is not None and budget.value is not None:
                name = attribute_name(budget.by)
                attrs[sc.LLMMETER_BUDGET_BY] = name
                attrs[name] = budget.value
            found.append(Observation(budget.usd, attrs))
        return found

    meter.create_observable_gauge(
        sc.METRIC_POLICY_DAILY_BUDGET,
        callbacks=[observe],
        unit="{USD}",
        description="The daily budget of a rule's spend guard, by rule (and attribution value)",
    )


REGISTRY: Final = Registry()
"""The one registry of applied patches."""


def after_auto_instrumentation() -> None:
    """``opentelemetry-instrument`` runs this (the ``opentelemetry_post_instrument`` entry
    point) once every instrumentor has run, in whatever order it found them: llmmeter's
    wrappers end up outermost, over any OpenAI instrumentation loaded after it."""
    REGISTRY.restack_all()


@functools.cache
def _instrumentor_class() -> type[Any]:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )

    class LLMMeterInstrumentor(BaseInstrumentor):  # type: ignore[misc]
        """Patches the openai SDK (1.x to 3.x) so every call becomes a GenAI span and metrics.

        The ``opentelemetry-instrument`` face of :data:`REGISTRY`, which holds all the state,
        its "instrumented" flag included: this class and ``llmmeter.instrument()`` agree.
        """

        @property
        def _is_instrumented_by_opentelemetry(self) -> bool:
            return REGISTRY.instrumented

        @_is_instrumented_by_opentelemetry.setter
        def _is_instrumented_by_opentelemetry(self, value: bool) -> None:
            pass  # BaseInstrumentor sets it after _instrument(): the registry already knows

        def instrumentation_dependencies(self) -> Collection[str]:
            return INSTRUMENTED

        def runtime(self) -> Runtime | None:
            return REGISTRY.runtime()

        def price_table(self) -> PriceTable:
            return REGISTRY.price_table()

        def _instrument(self, **kwargs: Any) -> None:
            settings = kwargs.get("settings")
            REGISTRY.instrument(
                tracer_provider=kwargs.get("tracer_provider"),
                meter_provider=kwargs.get("meter_provider"),
                logger_provider=kwargs.get("logger_provider"),
                settings=settings if isinstance(settings, Settings) else None,
                policy=kwargs.get("policy"),
            )

        def _uninstrument(self, **kwargs: Any) -> None:
            REGISTRY.uninstrument()

    LLMMeterInstrumentor.__qualname__ = "LLMMeterInstrumentor"
    return LLMMeterInstrumentor


def __getattr__(name: str) -> Any:
    """``LLMMeterInstrumentor``, built on first use (see the module docstring)."""
    if name == "LLMMeterInstrumentor":
        return _instrumentor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
