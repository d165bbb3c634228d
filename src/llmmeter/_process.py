"""Telemetry from multiprocessing children: flushed when the child ends.

``multiprocessing`` ends its fork and forkserver children with ``os._exit``, which skips
``atexit``: the SDK providers' own flush at exit never runs there, so whatever a child's
batch span processor and metric reader still held (up to ``OTEL_BSP_SCHEDULE_DELAY`` of
spans, up to ``OTEL_METRIC_EXPORT_INTERVAL`` of metric updates) would be lost. llmmeter arms
a multiprocessing finalizer in each child process that flushes the providers it records to,
each within :data:`FLUSH_TIMEOUT_MILLIS`.

The finalizer is armed without importing ``multiprocessing`` (it costs milliseconds at
``instrument()``): only when the application has imported it, either before
``instrument()`` or before forking. A child killed by a signal (``Pool.terminate()``, also
what leaving ``with Pool()`` does) runs no finalizer; docs/reliability.md says what to do.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

logger = logging.getLogger("llmmeter")

FLUSH_TIMEOUT_MILLIS: Final = 5_000
"""How long a child's exit waits, per provider, for its telemetry to leave."""

_EXIT_PRIORITY: Final = 10
"""multiprocessing runs finalizers of priority >= 0 at a child's exit, highest first."""


class ChildFlush:
    """Flushes ``providers()`` when a multiprocessing child process ends."""

    def __init__(
        self, providers: Callable[[], Sequence[Any]], exiting: Callable[[], None] | None = None
    ) -> None:
        self._providers = providers
        self._exiting = exiting
        self._finalizer: Any = None
        self._lock = threading.Lock()
        self._installed = False

    def install(self) -> None:
        """Arm for children started from now on; idempotent."""
        if self._installed:
            return
        self._installed = True
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:
                flush = ref()
                if flush is not None:
                    flush._lock = threading.Lock()  # another thread may have held it
                    flush._register(started=False)

            os.register_at_fork(after_in_child=after_in_child)
        self._register(started=True)

    def _register(self, *, started: bool) -> None:
        """Hook into multiprocessing's child start-up, if the application uses it."""
        util = sys.modules.get("multiprocessing.util")
        if util is None:
            return
        try:
            # Runs in each child as it starts, after multiprocessing has dropped the
            # finalizers the child inherited from its parent.
            util.register_after_fork(self, ChildFlush._arm)
            process = sys.modules.get("multiprocessing.process")
            if started and process is not None and process.parent_process() is not None:
                self._arm()  # instrument() called inside a child that has already started
        except Exception as exc:  # never break the application's fork
            logger.debug("llmmeter: cannot arm the child-exit flush (%s)", exc)

    def _arm(self) -> None:
        util = sys.modules.get("multiprocessing.util")
        with self._lock:
            if util is None or (self._finalizer is not None and self._finalizer.still_active()):
                return  # a child starting drops its inherited finalizers: then re-arm
            self._finalizer = util.Finalize(None, self.flush, exitpriority=_EXIT_PRIORITY)

    def flush(self) -> None:
        """Push out what this process's providers hold, each within the timeout (and the
        exit budget, for providers llmmeter built)."""
        if self._exiting is not None:
            try:
                self._exiting()
            except Exception as exc:  # the child is exiting: never turn that into a crash
                logger.debug("llmmeter: starting the exit budget failed (%s)", exc)
        for provider in self._providers():
            force_flush = getattr(provider, "force_flush", None)
            if not callable(force_flush):
                continue
            try:
                force_flush(timeout_millis=FLUSH_TIMEOUT_MILLIS)
            except Exception as exc:  # the child is exiting: never turn that into a crash
                logger.debug("llmmeter: flushing telemetry at process exit failed (%s)", exc)
