"""llmmeter's OpenTelemetry instrumentor: the one registry of applied patches.

Usage::

    import llmmeter
    llmmeter.instrument()            # or: opentelemetry-instrument python app.py

Configuration: arguments of :func:`llmmeter.instrument`, else the environment variables
declared in ``_config.py`` (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``,
``LLMMETER_*``, among them ``LLMMETER_POLICY`` for a routing policy file). Providers are
taken as given or from the OpenTelemetry globals; building them is ``_bootstrap.py``'s job,
never this module's.

Patching waits for the application's own ``import openai`` (a post-import hook), so
instrumenting never imports openai. ``uninstrument()`` puts every original method back (the
same objects) and makes wrappers that SDK objects still hold (``with_raw_response`` resolves
methods once) pass straight through.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import _sdk
from ._bootstrap import resolve_providers
from ._call import Runtime
from ._config import Settings, resolve_settings
from ._guard import Guard
from ._metrics import Instruments
from ._package import __version__, _instruments
from ._pricing import PriceTable
from ._process import ChildFlush
from ._rules import resolve_policy
from ._targets import ATTEMPT_HOOK, TARGETS
from ._wrappers import async_wrapper, attempt_wrapper, sync_wrapper

logger = logging.getLogger("llmmeter")

_SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"


class LLMMeterInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Patches the openai SDK (1.x to 3.x) so every call becomes a GenAI span and metrics."""

    _runtime: Runtime | None = None
    _applied: list[tuple[type[Any], str, Any]]
    _providers: tuple[TracerProvider | None, MeterProvider | None] = (None, None)
    _child_flush: ChildFlush | None = None
    _lock = threading.Lock()

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def price_table(self) -> PriceTable:
        """The live table when instrumented; else one built on first use (for scripts)."""
        runtime = self._runtime
        if runtime is not None:
            return runtime.prices
        with self._lock:
            table: PriceTable | None = getattr(self, "_standalone_prices", None)
            if table is None:
                from ._config import resolve_settings

                table = PriceTable.load(resolve_settings().prices_path)
                self._standalone_prices = table
            return table

    def runtime(self) -> Runtime | None:
        """The live runtime, or None when not instrumented (wrappers then pass through)."""
        return self._runtime

    def _instrument(self, **kwargs: Any) -> None:
        settings = kwargs.get("settings")
        if not isinstance(settings, Settings):
            settings = resolve_settings()
        # Under `opentelemetry-instrument` without a distro nothing configured the SDK: build
        # providers from OTEL_* as the one-liner does (a no-op when globals are configured).
        tracer_provider, meter_provider = resolve_providers(
            kwargs.get("tracer_provider"), kwargs.get("meter_provider")
        )
        tracer = trace.get_tracer("llmmeter", __version__, tracer_provider, schema_url=_SCHEMA_URL)
        meter = metrics.get_meter("llmmeter", __version__, meter_provider, schema_url=_SCHEMA_URL)
        prices = PriceTable.load(settings.prices_path)  # ConfigError on a bad file
        policy, force_shadow = resolve_policy(
            kwargs.get("policy"), settings.policy_path, settings.policy_mode
        )
        with self._lock:
            if not hasattr(self, "_applied"):
                self._applied = []
            self._providers = (tracer_provider, meter_provider)
            if self._child_flush is None:
                self._child_flush = ChildFlush(self._flush_targets)
            self._child_flush.install()
            self._runtime = Runtime(
                tracer,
                Instruments.create(meter),
                settings,
                Guard(strict=settings.strict),
                prices,
                policy=policy,
                force_shadow=force_shadow,
            )
        # Runs now if openai is already imported, else on the application's own import.
        wrapt.register_post_import_hook(self._patch, "openai")

    def _flush_targets(self) -> list[Any]:
        """The providers this instrumentation records to (given, else the globals)."""
        tracer_provider, meter_provider = self._providers
        return [
            tracer_provider or trace.get_tracer_provider(),
            meter_provider or metrics.get_meter_provider(),
        ]

    def _uninstrument(self, **kwargs: Any) -> None:
        with self._lock:
            self._runtime = None
            for cls, name, original in reversed(self._applied):
                if original is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, original)
            self._applied.clear()

    def _patch(self, module: Any = None) -> None:
        with self._lock:
            runtime = self._runtime
            if runtime is None or self._applied:
                return  # uninstrumented before openai was imported, or patched already
            runtime.sdk = _sdk.load()
            for target in TARGETS:
                wrapper = (async_wrapper if target.is_async else sync_wrapper)(target, self.runtime)
                self._wrap(target.module, target.qualname, wrapper)
            self._wrap(*ATTEMPT_HOOK, attempt_wrapper(self.runtime))

    def _wrap(self, module_name: str, qualname: str, wrapper: Any) -> None:
        class_name, method = qualname.split(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            logger.debug("llmmeter: %s.%s not in this openai version", module_name, class_name)
            return
        if not hasattr(cls, method):
            logger.debug("llmmeter: %s.%s not in this openai version", module_name, qualname)
            return
        if any(c is cls and m == method for c, m, _ in self._applied):
            return  # a class reached through two module paths: patch it once
        original = cls.__dict__.get(method)
        wrapt.wrap_function_wrapper(cls, method, wrapper)
        self._applied.append((cls, method, original))
