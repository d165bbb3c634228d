"""Reading a command's input within a stated bound, with progress on long reads.

Every data file a command reads goes through here: the OTLP JSON of ``report`` and
``policy status``, the JSONL dataset of ``evaluate`` and the prompt file of ``policy explain``
(the policy file itself is read as ``instrument()`` reads it: ``_configfile``). A line (or a
document read whole) is read no further than its bound plus one byte, so a gzip bomb with
no newline, ``/dev/zero`` or a runaway pipe costs at most that much memory before it is one
error naming the file and the line. Any input that opens is read this way, regular file,
FIFO or device alike: the bound, not the kind of file, is what keeps memory in check.

A read that goes on for more than a few seconds says how far it has got on stderr (module
``progress``), so a large file never looks like a hang; a short read prints nothing.
"""

from __future__ import annotations

import io
import os
import stat
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, Final, TextIO

from . import progress
from .common import UsageError

MIB: Final = 1 << 20
MAX_LINE: Final = 64 * MIB
"""Bytes of one line at most: an export request the collector wrote, a dataset's request.

Parsing a line takes several times its size (OTLP JSON about ten times), so this bound
keeps a command well under 1 GiB; a collector's batch of 8,192 llmmeter spans is some 6 MiB.
"""
MAX_DOCUMENT: Final = MAX_LINE
"""Bytes of a pretty-printed OTLP file at most: it is read whole, like one long line."""
MAX_FILE: Final = 16 * MIB
"""Bytes of a prompt file at most: it is read whole, and far smaller."""
MAX_DEPTH: Final = 100
"""Levels a dataset's request may nest: deeper ones would only reach the SDK's recursion."""


def size_words(count: float) -> str:
    """``512 bytes``, ``3.2 MiB``, ``1.5 GiB``: a size for people."""
    if count < 1024:
        return f"{int(count)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            break
    return f"{count:.1f} {unit}".replace(".0 ", " ")


def too_long(label: str, number: int, limit: int) -> UsageError:
    """A line past its bound: the one error that names the file, the line and the bound."""
    return UsageError(
        f"{label}, line {number}: longer than {size_words(limit)}, the most llmmeter reads "
        "as one line; nothing of it was used"
    )


def too_big(label: str, number: int) -> UsageError:
    """A line within its bound whose parsed form still did not fit in memory."""
    return UsageError(
        f"{label}, line {number}: not enough memory to parse it; give llmmeter more memory "
        "or split the file"
    )


class Progress:
    """How far a long read has got, on stderr (see ``progress``): lines, bytes, and the
    share of the file when its size is known.

    ``source`` is the file as opened (compressed, if it is): its position against its size
    gives the share read. ``clock`` and ``tty`` are there for tests, which never wait.
    """

    def __init__(
        self,
        command: str,
        label: str,
        source: IO[bytes] | None = None,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self._prefix = f"llmmeter {command}: {label}: "
        self._status = progress.Status(stream=stream, clock=clock, tty=tty)
        self._source = source
        self._total = _regular_size(source)

    def update(self, lines: int, read: int) -> None:
        """``lines`` read so far, ``read`` bytes of them (after decompression)."""
        self._status.update(lambda: self._text(lines, read))

    def _text(self, lines: int, read: int) -> str:
        text = f"{self._prefix}{lines:,} line{'' if lines == 1 else 's'}, {size_words(read)}"
        position = _position(self._source)
        if self._total and position is not None:
            text += f" ({min(100, position * 100 // self._total)}% of the file)"
        return text

    def finish(self) -> None:
        """End a line left open on a terminal, so what follows starts on its own line."""
        self._status.finish()


def _regular_size(source: IO[bytes] | None) -> int | None:
    try:
        info = os.fstat(source.fileno()) if source is not None else None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if info is not None and stat.S_ISREG(info.st_mode) else None


def _position(source: IO[bytes] | None) -> int | None:
    try:
        return source.tell() if source is not None and source.seekable() else None
    except (OSError, ValueError):
        return None


def lines(
    label: str,
    stream: IO[bytes],
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[int, bytes]]:
    """(line number, line with its newline) of ``stream``, each at most ``limit`` bytes
    (default :data:`MAX_LINE`).

    Raises:
        UsageError: a line is longer than ``limit``, with the file and the line number.
    """
    limit = MAX_LINE if limit is None else limit
    read = 0
    number = 0
    try:
        while line := stream.readline(limit + 1):
            number += 1
            if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\n")):
                raise too_long(label, number, limit)
            read += len(line)
            if progress is not None:
                progress.update(number, read)
            yield number, line
    finally:
        if progress is not None:
            progress.finish()


def read_rest(label: str, stream: IO[bytes], start: bytes, *, limit: int | None = None) -> bytes:
    """``start`` and the rest of ``stream``, read whole, at most ``limit`` bytes in all
    (default :data:`MAX_DOCUMENT`).

    Raises:
        UsageError: more than ``limit`` bytes, naming the file.
    """
    limit = MAX_DOCUMENT if limit is None else limit
    rest = stream.read(limit + 1 - len(start)) if len(start) <= limit else b""
    data = start + rest
    if len(data) > limit:
        raise UsageError(
            f"{label}: a document longer than {size_words(limit)}, the most llmmeter reads "
            "as one; write one JSON document a line (jq -c . FILE)"
        )
    return data


def read_file(path: str, what: str, *, limit: int | None = None) -> bytes:
    """The bytes of a file read whole, at most ``limit`` of them; ``what`` names it in
    messages (``the policy file``, ``--prompt-file``).

    Raises:
        UsageError: the file cannot be read, or is longer than ``limit`` (default
            :data:`MAX_FILE`).
    """
    limit = MAX_FILE if limit is None else limit
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise UsageError(
            f"{what} {path}: longer than {size_words(limit)}, the most llmmeter reads of it"
        )
    return data


def nesting(value: Any) -> int:
    """How many levels of arrays and objects ``value`` (parsed JSON) nests; no recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest
