"""The one internal-error guard: llmmeter's own failures never reach the application.

Every piece of telemetry, pricing or policy work runs inside ``with guard.site("name"):``. A
failure there is logged once per site with its traceback (repeats go to debug level) and then
swallowed, so the user's call proceeds exactly as it would without llmmeter. The guard never
wraps the user's own call or anything that returns the user's object: that is the wrappers'
job, outside any guard. With ``strict`` on (llmmeter's tests, users' CI) failures re-raise so
bugs cannot hide.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Final

logger = logging.getLogger("llmmeter")

_MAX_WARNED: Final = 1024
"""Names :meth:`Guard.warn_once` remembers. Sites are llmmeter's own code, but a warning may
be named after data (a policy's target model): past the cap, new names log at debug level."""


class Guard:
    """Holds the log-once memory and the strict switch for one instrumentation."""

    __slots__ = ("_lock", "_seen", "_sites", "strict")

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self._seen: set[str] = set()
        self._sites: dict[str, _Site] = {}
        self._lock = threading.Lock()

    def site(self, name: str) -> _Site:
        """The reusable context manager for one place in llmmeter's code."""
        site = self._sites.get(name)
        if site is None:
            site = self._sites.setdefault(name, _Site(self, name))
        return site

    def report(self, name: str, exc: BaseException) -> None:
        """Log an internal failure: first time per site with traceback, then at debug level."""
        with self._lock:
            first = name not in self._seen
            self._seen.add(name)
        exc_info = (type(exc), exc, exc.__traceback__)
        if first:
            logger.warning(
                "llmmeter internal error in %s; the application's call is unaffected "
                "(further errors here are logged at debug level)",
                name,
                exc_info=exc_info,
            )
        else:
            logger.debug("llmmeter internal error in %s", name, exc_info=exc_info)

    def handle(self, name: str, exc: Exception) -> bool:
        """Report an internal failure at ``name``; True when it is swallowed (not strict).
        What every site does, for the few hot places that use a bare ``try`` instead."""
        self.report(name, exc)
        return not self.strict

    def warn_once(self, name: str, message: str, exc: BaseException | None = None) -> None:
        """Log a failure that is not llmmeter's own (the user's policy or ``accept`` hook
        raised): warning the first time per ``name``, debug after; never re-raised, even when
        strict, because the user's code failing must not fail the user's call."""
        with self._lock:
            first = name not in self._seen and len(self._seen) < _MAX_WARNED
            if first:
                self._seen.add(name)
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        if first:
            logger.warning(
                "%s (further occurrences are logged at debug level)", message, exc_info=exc_info
            )
        else:
            logger.debug("%s", message, exc_info=exc_info)


class Untraced:
    """What llmmeter hands back instead of a traced re-send (a fallback) when setting one up
    failed inside llmmeter: the caller re-sends the user's request as written, untraced."""


UNTRACED = Untraced()


class _Site:
    """A stateless, reentrant context manager: safe to share across threads and tasks."""

    __slots__ = ("_guard", "name")

    def __init__(self, guard: Guard, name: str) -> None:
        self._guard = guard
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            return False
        if not isinstance(exc, Exception):
            # KeyboardInterrupt, SystemExit, GeneratorExit, task cancellation: not ours to keep.
            return False
        return self._guard.handle(self.name, exc)
