"""``llmmeter policy promote``'s edit of a policy file, line by line.

Only the ``mode`` and ``sample`` lines of the rules concerned change, so comments and layout
survive; the edited text must load and mean exactly the intended change, and the file is
replaced atomically (a temporary file and ``os.replace``, its mode kept), and only if it
still holds what was read, checked under a lock: of two promotes at once, one writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from typing import IO, Final

from .common import UsageError
from .recommend import Recommendation

_HEADER = re.compile(r"^\s*\[")
_RULES_HEADER = re.compile(r"^\s*\[\[\s*(rules|\"rules\"|'rules')\s*\]\]\s*(#.*)?$")
_KEY_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<key>[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')[ \t]*=[ \t]*"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[0-9+\-.eE_]+|true|false)(?P<rest>[ \t]*(#.*)?)$"
)
_BLANK_OR_COMMENT = re.compile(r"^\s*(#.*)?$")


class EditError(Exception):
    """The file cannot be edited line by line with confidence; the message says why."""


def _newline(lines: Sequence[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _rule_regions(lines: Sequence[str]) -> list[tuple[int, int]]:
    """[start, end) line ranges of the keys of each ``[[rules]]`` table, in file order."""
    regions: list[tuple[int, int]] = []
    start: int | None = None
    for index, line in enumerate(lines):
        if _HEADER.match(line):
            if start is not None:
                regions.append((start, index))
                start = None
            if _RULES_HEADER.match(line.rstrip("\r\n")):
                start = index + 1
    if start is not None:
        regions.append((start, len(lines)))
    return regions


def _key_name(raw: str) -> str:
    return raw[1:-1] if raw[:1] in "\"'" else raw


def _set_key(lines: list[str], region: tuple[int, int], key: str, value: str | None) -> int:
    """Set ``key = value`` in the rule's own table (added after its last key), or remove the
    line when ``value`` is ``None``; the rest of each line (a comment) is kept. Returns the
    change in the number of lines."""
    start, end = region
    found = [
        index
        for index in range(start, end)
        if (match := _KEY_LINE.match(lines[index].rstrip("\r\n")))
        and _key_name(match["key"]) == key
    ]
    if len(found) > 1:
        raise EditError(f"{key} appears {len(found)} times")
    if found:
        index = found[0]
        line = lines[index]
        ending = line[len(line.rstrip("\r\n")) :]
        match = _KEY_LINE.match(line.rstrip("\r\n"))
        assert match is not None
        if value is None:
            del lines[index]
            return -1
        lines[index] = f"{match['indent']}{match['key']} = {value}{match['rest']}{ending}"
        return 0
    if value is None:
        return 0
    last = max(
        (index for index in range(start, end) if not _BLANK_OR_COMMENT.match(lines[index])),
        default=start - 1,
    )
    newline = _newline(lines)
    if last >= 0 and not lines[last].endswith(("\n", "\r")):
        lines[last] += newline
    lines.insert(last + 1, f"{key} = {value}{newline}")
    return 1


def _toml_sample(sample: float) -> str:
    return repr(round(sample, 6))


def edit_policy(text: str, changes: Mapping[int, Recommendation]) -> str:
    """``text`` with the ``mode`` and ``sample`` of rules[index] set as ``changes`` say.

    Raises:
        EditError: a rule is not written as a ``[[rules]]`` table, or the edited text would
            not mean exactly the intended change.
    """
    lines = text.splitlines(keepends=True)
    regions = _rule_regions(lines)
    before = tomllib.loads(text)
    rules = before.get("rules", [])
    if len(regions) != len(rules):
        raise EditError(
            "its rules are not all written as [[rules]] tables (inline tables or arrays), "
            "which promote does not edit"
        )
    # Bottom up, so the line numbers of the regions above stay right.
    for index in sorted(changes, reverse=True):
        step = changes[index]
        sample = None if step.sample is None or step.sample >= 1.0 else _toml_sample(step.sample)
        start, end = regions[index]
        end += _set_key(lines, (start, end), "mode", json.dumps(step.mode))
        _set_key(lines, (start, end), "sample", sample)
    edited = "".join(lines)
    expected = json.loads(json.dumps(before))
    for index, step in changes.items():
        table = expected["rules"][index]
        table["mode"] = step.mode
        if step.sample is None or step.sample >= 1.0:
            table.pop("sample", None)
        else:
            table["sample"] = round(step.sample, 6)
    try:
        after = tomllib.loads(edited)
    except tomllib.TOMLDecodeError as exc:
        raise EditError(f"the edit would not be valid TOML ({exc})") from None
    if json.loads(json.dumps(after)) != expected:
        raise EditError("the edit would change more than the rules' mode and sample")
    return edited


def write_atomically(path: str, data: bytes, expected: bytes) -> None:
    """Replace ``path`` by ``data`` in one rename, keeping its permission bits, unless it no
    longer holds ``expected`` (what was read): a compare-and-swap.

    The temporary file sits in the same directory (a rename never crosses file systems); a
    symlink is followed, so the link stays and its target changes. The compare and the
    rename happen under an exclusive lock on the file (``flock``), so of two promotes at
    once one writes and the other finds the file changed and writes nothing; an editor that
    takes no lock is still caught by the compare unless it saves within that instant.

    Raises:
        UsageError: the file changed since it was read, or another process holds its lock
            for longer than :data:`LOCK_WAIT`; nothing was written.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    mode = stat.S_IMODE(os.stat(target).st_mode)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        with open(target, "rb") as current:
            _lock(current, path)
            # The lock is on what we opened; a rename since then put another file there.
            if not os.path.samestat(os.fstat(current.fileno()), os.stat(target)):
                raise changed(path)
            if current.read(len(expected) + 1) != expected:
                raise changed(path)
            os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


LOCK_WAIT: Final = 10.0
"""Seconds to wait for another process's lock on the policy file before giving up."""
_LOCK_POLL: Final = 0.05


def changed(path: str) -> UsageError:
    """The error of a promote whose file changed under it: the loser of a race."""
    return UsageError(
        f"{path} changed while promote ran (another promote or an edit); nothing was "
        "written: run promote again"
    )


def _lock(file: IO[bytes], path: str) -> None:
    """An exclusive lock on ``file``, released when it closes; waits up to :data:`LOCK_WAIT`.

    Without ``fcntl`` (Windows) there is no lock: the compare alone guards the write.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - POSIX has it
        return
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise UsageError(
                    f"{path} is locked by another process (another promote --write?); "
                    "nothing was written"
                ) from None
            time.sleep(_LOCK_POLL)
