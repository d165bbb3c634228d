"""Watching a configuration file from a daemon thread, never from the application's calls.

A policy file is reloaded when it changes. Checking it takes a ``stat``, and reading a new
version takes a read and a parse: on a slow or hung mount either can take any time, so none
of it may run on a thread that is making a request. A :class:`Watcher` runs its owner's
check every ``interval`` seconds on a thread of its own; calls only read what the last check
swapped in.

- The thread holds its owner by weak reference: a policy nobody uses any more is collected,
  and its thread ends at once (a finalizer wakes it).
- ``stop()`` ends it for good (``uninstrument()``); a check in progress finishes on its own.
  Nothing ever joins the thread, so neither ``uninstrument()`` nor the interpreter's exit
  waits for a file.
- A forked child has none of its parent's threads: each watcher that was running is marked
  idle there, and its owner starts it again at first use.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Final

logger = logging.getLogger("llmmeter")

MIN_INTERVAL: Final = 0.1
"""The shortest time between two checks: a smaller interval (0 included) is raised to it."""

_running: weakref.WeakSet[Watcher] = weakref.WeakSet()
"""Watchers started in this process, for the fork hook."""


class Watcher:
    """Calls ``check`` every ``interval`` seconds on a daemon thread named ``name``, while the
    object ``check`` is a method of lives. :meth:`start` may be called any number of times."""

    def __init__(self, check: Callable[[], object], interval: float, name: str) -> None:
        self._check = weakref.WeakMethod(check)
        self.interval = max(float(interval), MIN_INTERVAL)
        self.name = name
        self.idle = True
        """Not running in this process and startable: the owner's hot path reads only this."""
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread unless it runs already or :meth:`stop` was called."""
        with self._lock:
            if self._closed or self._stop is not None:
                return
            check = self._check()
            if check is None:
                return
            stop = threading.Event()
            thread = threading.Thread(
                target=_watch, args=(self._check, stop, self.interval), name=self.name, daemon=True
            )
            try:
                thread.start()
            except RuntimeError as exc:  # no threads left, or the interpreter is shutting down
                self.idle = False  # not on every call: the next try is in a forked child
                logger.warning(
                    "llmmeter: cannot start %s (%s); the file is not watched for changes",
                    self.name,
                    exc,
                )
                return
            self._stop, self._thread = stop, thread
            self.idle = False
            weakref.finalize(check.__self__, stop.set)  # type: ignore[attr-defined]
            _running.add(self)

    def stop(self) -> None:
        """End the thread for good, without waiting for a check in progress."""
        with self._lock:
            self._closed = True
            self.idle = False
            if self._stop is not None:
                self._stop.set()

    def _forked(self) -> None:
        """In a forked child: the thread is gone; the owner's next use starts another."""
        self._lock = threading.Lock()  # another thread of the parent may have held it
        self._stop = None
        self._thread = None
        self.idle = not self._closed


def _watch(
    check_ref: weakref.WeakMethod[Callable[[], object]], stop: threading.Event, interval: float
) -> None:
    failed = False
    while not stop.wait(interval):
        check = check_ref()
        if check is None:
            return  # the owner is gone
        try:
            check()
        except Exception:  # the check logs its own failures: this is a bug, logged once
            if not failed:
                logger.warning("llmmeter: checking a watched file failed", exc_info=True)
            failed = True
        del check  # never hold the owner while waiting


def _after_fork_in_child() -> None:
    for watcher in list(_running):
        watcher._forked()
    _running.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
