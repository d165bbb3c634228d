"""Reading a configuration file (the policy, the prices): regular files only, bounded, TOML.

A configuration path is the user's, and whatever sits at it is read inside their process:
a named pipe would block ``instrument()`` until some writer comes, ``/dev/zero`` would fill
memory, a device may act on being opened (a tape rewinds). So the path is ``stat``-ed and
anything but a regular file (or a link to one: Kubernetes mounts ConfigMaps that way) is
refused before it is opened; the file is then opened non-blocking and its descriptor checked
again (the path may have changed in between); and at most :data:`MAX_CONFIG_BYTES` are read.
Every failure is a :class:`ConfigError` naming the file and what was expected.

The text is parsed with ``tomllib`` (data only: nothing in it is evaluated), whose own
failures all become a ``ConfigError`` too: syntax, nesting deep enough to exhaust the stack,
and integers too long to convert (which ``tomllib`` lets out as a bare ``ValueError``, and
which, written in hex, would parse and then break any error message that shows them).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tomllib
from typing import Any, Final

from .exceptions import ConfigError

MAX_CONFIG_BYTES: Final = 1 << 20
"""The largest configuration file read: 1 MiB. A policy or prices file is a few kilobytes; a
bound makes the memory parsing takes a bounded multiple of it (docs/reliability.md)."""

Signature = tuple[int, int, int]
"""A file version: ``(st_mtime_ns, st_size, st_ino)``; a change of any means a new version."""

_OPEN_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the check must not block open()
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_READ_SIZE: Final = 1 << 16
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def file_signature(path: str) -> Signature:
    """The version of the file at ``path`` now (one ``stat``); ``OSError`` if there is none."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_config(path: str, what: str) -> tuple[bytes, Signature]:
    """The bytes of the regular file at ``path`` and the version they are (taken from the open
    file before reading it, so a write that lands during the read shows as a later change).

    ``what`` names the file in messages ("policy file").

    Raises:
        ConfigError: the path cannot be read, is not a regular file, or is larger than
            :data:`MAX_CONFIG_BYTES`.
    """
    try:
        _check_kind(path, what, os.stat(path))  # before opening: opening a device can act
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except ConfigError:
        raise
    except ValueError as exc:  # a NUL character in the path
        raise ConfigError(f"{path!r}: cannot read the {what}: {exc}") from None
    try:
        st = os.fstat(descriptor)
        _check_kind(path, what, st)  # what was opened: the path may point elsewhere by now
        if st.st_size > MAX_CONFIG_BYTES:
            raise _too_large(path, what, f"{st.st_size:,} bytes")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(descriptor, min(_READ_SIZE, MAX_CONFIG_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_CONFIG_BYTES:  # grew since fstat, or a size the kernel does not know
                raise _too_large(path, what, "more")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    finally:
        os.close(descriptor)
    return b"".join(chunks), (st.st_mtime_ns, st.st_size, st.st_ino)


def load_toml(path: str, what: str) -> tuple[dict[str, Any], Signature]:
    """The TOML document in the file at ``path`` (read by :func:`read_config`) and its version.

    Raises:
        ConfigError: as :func:`read_config`; or the file is not UTF-8, not TOML, nested too
            deeply to parse, or holds an integer longer than Python converts.
    """
    raw, version = read_config(path, what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: expected a UTF-8 TOML file; {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValueError:  # int(): a decimal integer over the interpreter's digit limit
        raise ConfigError(
            f"{path}: not valid TOML: an integer of more than {_digit_limit()} digits"
        ) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    _check_integers(path, data)
    return data, version


def _check_kind(path: str, what: str, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        kind = "a directory"
    elif stat.S_ISFIFO(mode):
        kind = "a named pipe (FIFO)"
    elif stat.S_ISCHR(mode):
        kind = "a character device"
    elif stat.S_ISBLK(mode):
        kind = "a block device"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = f"a file of type {stat.S_IFMT(mode):#o}"
    raise ConfigError(f"{path}: expected the {what} to be a regular file; got {kind}")


def _too_large(path: str, what: str, got: str) -> ConfigError:
    return ConfigError(
        f"{path}: expected a {what} of at most 1 MiB ({MAX_CONFIG_BYTES:,} bytes); got {got}"
    )


def _digit_limit() -> int:
    get = getattr(sys, "get_int_max_str_digits", None)
    return int(get()) if get is not None else 0


def _check_integers(path: str, data: dict[str, Any]) -> None:
    """Refuse integers too long to convert to text (only hex, octal and binary ones parse):
    every message that quotes a value would raise ``ValueError`` on them instead."""
    limit = _digit_limit()
    if limit <= 0:
        return  # the interpreter converts integers of any length
    bound = 10**limit
    stack: list[tuple[str, Any]] = [("", data)]  # iterative: the nesting tomllib allowed
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((_join(where, key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= bound:
            raise ConfigError(
                f"{path}: {where}: expected a number of at most {limit} digits; "
                f"got an integer of {value.bit_length()} bits"
            )


def _join(where: str, key: str) -> str:
    name = key if _BARE_KEY.match(key) else json.dumps(key)
    return f"{where}.{name}" if where else name
