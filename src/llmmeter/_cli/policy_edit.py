"""``llmmeter policy promote``'s edit of a policy file, with tomlkit.

Only the ``mode`` and ``sample`` keys of the rules concerned change, so comments and layout
survive, in ``[[rules]]`` tables and inline tables alike. tomlkit is a dependency of the
command line, imported only here and only when promote edits: ``import llmmeter`` never
loads it. The edited text must load and mean exactly the intended change, and the file is
replaced atomically (a temporary file and ``os.replace``, its mode kept), and only if it
still holds what was read, checked under a lock: of two promotes at once, one writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
import tomllib
from collections.abc import Mapping
from typing import IO, Any, Final

from .common import UsageError
from .recommend import Recommendation


class EditError(Exception):
    """The file cannot be edited with confidence; the message says why."""


def _newline(text: str) -> str:
    """The file's line ending, for the lines the edit adds."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _set_key(table: Any, key: str, value: str | float | None, newline: str) -> None:
    """Set ``key = value`` in a rule's table (a ``[[rules]]`` table or an inline one), or
    remove it when ``value`` is ``None``. An existing key keeps its place and its comment; a
    new one follows the table's last key."""
    import tomlkit
    from tomlkit.items import InlineTable

    if value is None:
        if key in table:
            del table[key]
        return
    if key in table:
        table[key] = value  # tomlkit keeps the line's comment and indent
        return
    item = tomlkit.item(value)
    if isinstance(table, InlineTable):
        table[key] = item
        return
    item.trivia.trail = newline  # tomlkit writes "\n"; a CRLF file stays CRLF
    # tomlkit keeps the blank lines and comments that precede the next table's header in
    # this table's body: the new key goes before them, after this table's last key.
    body = table.value.body
    trailing: list[Any] = []
    while body and body[-1][0] is None:
        trailing.insert(0, body.pop()[1])
    if body and not body[-1][1].trivia.trail.endswith("\n"):
        body[-1][1].trivia.trail += newline  # the file's last line, with no line ending
    table.append(key, item)
    for kept in trailing:
        table.value.append(None, kept)


def edit_policy(text: str, changes: Mapping[int, Recommendation]) -> str:
    """``text`` with the ``mode`` and ``sample`` of rules[index] set as ``changes`` say.

    The file is edited with tomlkit, a style-preserving TOML library: comments, blank lines,
    quoting and the other keys stay as they were, whether the rules are ``[[rules]]`` tables
    or inline tables in a ``rules = [...]`` array.

    Raises:
        EditError: the rules cannot be found as tables, or the edited text would not mean
            exactly the intended change.
    """
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    before = tomllib.loads(text)
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:  # valid for tomllib, not for tomlkit: never guess
        raise EditError(f"tomlkit cannot read it ({exc})") from None
    rules = document.get("rules")
    wanted = before.get("rules", [])
    if not isinstance(rules, list) or len(rules) != len(wanted):
        raise EditError("its rules are not an array of tables")
    newline = _newline(text)
    for index, step in sorted(changes.items()):
        table = rules[index]
        if not isinstance(table, dict):
            raise EditError(f"rule {index + 1} is not a table")
        sample = None if step.sample is None or step.sample >= 1.0 else round(step.sample, 6)
        _set_key(table, "mode", step.mode, newline)
        _set_key(table, "sample", sample, newline)
    edited = document.as_string()
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
