"""Progress on every long run, on stderr, the same way for every command.

On a terminal, one line rewritten in place (at most every :data:`TTY_EVERY` seconds); on
anything else (a CI log, a file), a new line every :data:`LOG_EVERY` seconds with no escape
code; and nothing at all for a run that ends before its first update is due, so a test or a
script reading a small file sees no noise. It never writes to stdout: ``--json`` output and
piped tables hold their data alone.

:class:`Status` is the line and its timing; :class:`Steps` counts done out of a total
(``evaluate``'s requests, ``policy status``'s queries, the demo's calls). Reads of a file
say how far they have got through ``inputs.Progress``, built on :class:`Status`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Final, TextIO

TTY_EVERY: Final = 1.0
"""Seconds before a terminal sees progress, and between its updates (rewritten in place)."""
LOG_EVERY: Final = 10.0
"""Seconds before stderr that is not a terminal (a CI log) gets a progress line, and between
its lines: a test or a script reading a small file sees nothing."""
BAR: Final = 20
"""Characters of a terminal's bar of done steps."""


class Status:
    """One line of progress on ``stream`` (stderr), shown when due.

    ``clock`` and ``tty`` are there for tests, which never wait; ``delay`` overrides the
    wait before the first update (0: show from the start, for runs known to be long).
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
        delay: float | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self.tty = _isatty(self._stream) if tty is None else tty
        self._every = TTY_EVERY if self.tty else LOG_EVERY
        self._next = clock() + (self._every if delay is None else delay)
        self._shown = False
        self._lock = threading.Lock()

    def update(self, text: Callable[[], str]) -> None:
        """Show ``text()`` if an update is due (``text`` is only built then)."""
        with self._lock:
            now = self._clock()
            if now < self._next:
                return
            self._next = now + self._every
            self._write(text())

    def _write(self, text: str) -> None:
        if self.tty:
            self._stream.write(f"\r{text}\x1b[K")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
        self._shown = True

    def finish(self, last: str | None = None) -> None:
        """Show ``last`` (if given) whatever the time, and end a line left open on a
        terminal, so what follows starts on its own line."""
        with self._lock:
            if last is not None:
                self._write(last)
            if self._shown and self.tty:
                self._stream.write("\n")
                self._stream.flush()
            self._shown = False


class Steps:
    """``done/total noun`` of a run, from any thread: ``llmmeter evaluate: 120/400 requests``,
    with a bar on a terminal."""

    def __init__(self, command: str, noun: str, total: int, status: Status | None = None) -> None:
        self._prefix = f"llmmeter {command}: "
        self._noun = noun
        self.total = total
        self.done = 0
        self._status = status if status is not None else Status()
        self._count = threading.Lock()

    def step(self) -> None:
        with self._count:
            self.done += 1
            done = self.done
        self._status.update(lambda: self._text(done))

    def _text(self, done: int) -> str:
        text = f"{done:,}/{self.total:,} {self._noun}"
        if self._status.tty and self.total:
            filled = BAR * min(done, self.total) // self.total
            text = f"[{'#' * filled}{'.' * (BAR - filled)}] {text}"
        return self._prefix + text

    def finish(self, suffix: str | None = None) -> None:
        """End the line; with ``suffix``, first show the final count followed by it (``done``)
        whether or not progress was shown before."""
        last = None if suffix is None else f"{self._text(self.done)}{suffix}"
        self._status.finish(last)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
