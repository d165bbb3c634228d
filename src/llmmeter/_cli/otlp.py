"""Reading OTLP JSON files: what the OpenTelemetry Collector's ``file`` exporter writes.

Two commands read such files: ``report`` takes spans from them, ``policy status`` metric
points (``status_sources``). Both get the same leniency from here: what the collector writes
and what protobuf's own JSON printer writes (lowerCamelCase or proto field names, 64-bit
integers as strings or numbers, repeated fields omitted when empty); one export request per
line, or a pretty-printed file read whole; gzip read, zstd refused with what to do instead;
``-`` for stdin. What is not OTLP JSON is a :class:`Malformed` that says why, which each
reader counts or reports in its own terms.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from typing import IO, Any, Final, cast

from .common import UsageError

STDIN: Final = "-"
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_INTEGER = re.compile(r"[+-]?\d+")
_SPECIAL_DOUBLES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class Malformed(Exception):
    """One line (export request) that is not the OTLP JSON a reader wants; the message says why."""


# --- OTLP JSON -----------------------------------------------------------------------------


@cache
def _proto_name(json_name: str) -> str:
    """``startTimeUnixNano`` -> ``start_time_unix_nano``: protobuf's JSON parsers take both."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", json_name).lower()


def get(obj: Mapping[str, Any], name: str) -> Any:
    """Field ``name`` (lowerCamelCase) of ``obj``, or the same field under its proto name."""
    value = obj.get(name)
    return obj.get(_proto_name(name)) if value is None else value


def as_object(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` as a JSON object; :class:`Malformed` saying ``what`` it should have been."""
    if not isinstance(value, dict):
        raise Malformed(f"{what} is {kind(value)}, not an object")
    return cast(Mapping[str, Any], value)


def repeated(obj: Mapping[str, Any], name: str) -> list[Any]:
    """A repeated field: absent (protobuf omits empty ones) reads as empty."""
    value = get(obj, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{name} is {kind(value)}, not a list")
    return value


def kind(value: Any) -> str:
    """What a JSON value is, for messages: ``null``, ``a number``, ``a list``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def integer(value: Any, what: str) -> int:
    """A 64-bit integer field: protobuf JSON writes a string of digits, a number is accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise Malformed(f"{what} is not an integer: {value!r}")


def _double(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        if value in _SPECIAL_DOUBLES:
            return _SPECIAL_DOUBLES[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise Malformed(f"{what} is not a number: {value!r}")


def _any_value(value: Any, key: str) -> Any:
    """An ``AnyValue`` as Python: str, int, float, bool, tuple, dict; None when empty."""
    if value is None:
        return None
    obj = as_object(value, f"the value of attribute {key!r}")
    if (text := get(obj, "stringValue")) is not None:
        if not isinstance(text, str):
            raise Malformed(f"stringValue of attribute {key!r} is {kind(text)}")
        return text
    if (number := get(obj, "intValue")) is not None:
        return integer(number, f"intValue of attribute {key!r}")
    if (number := get(obj, "doubleValue")) is not None:
        return _double(number, f"doubleValue of attribute {key!r}")
    if (flag := get(obj, "boolValue")) is not None:
        if not isinstance(flag, bool):
            raise Malformed(f"boolValue of attribute {key!r} is {kind(flag)}")
        return flag
    if (array := get(obj, "arrayValue")) is not None:
        items = repeated(as_object(array, f"arrayValue of attribute {key!r}"), "values")
        return tuple(_any_value(item, key) for item in items)
    if (kvlist := get(obj, "kvlistValue")) is not None:
        return attributes(
            repeated(as_object(kvlist, f"kvlistValue of attribute {key!r}"), "values")
        )
    # bytesValue (base64) or a kind this reader does not know: nothing the table reads.
    return get(obj, "bytesValue")


def attributes(items: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        attribute = as_object(item, "an attribute")
        key = attribute.get("key")
        if not isinstance(key, str):
            raise Malformed(f"an attribute has no key: {json.dumps(attribute)[:60]}")
        found[key] = _any_value(get(attribute, "value"), key)
    return found


# --- reading files -------------------------------------------------------------------------


def open_input(path: str) -> tuple[str, io.BufferedReader]:
    """(label for messages, binary stream); the caller closes it (but never stdin)."""
    if path == STDIN:
        stdin: Any = sys.stdin.buffer  # peek() needs a BufferedReader: wrap anything else
        buffered = stdin if isinstance(stdin, io.BufferedReader) else io.BufferedReader(stdin)
        return "<stdin>", buffered
    try:
        return path, open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def decoded(label: str, stream: io.BufferedReader, head: bytes) -> IO[bytes]:
    """``stream`` gunzipped when it is gzip; compressed data we cannot read is an error."""
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    if head.startswith(_ZSTD_MAGIC):  # the file exporter's native zstd: a plain zstd stream
        raise UsageError(
            f"{label}: zstd-compressed (the file exporter's compression: zstd), which llmmeter "
            f"does not read; decompress it first: zstd -dc {label} | llmmeter report -"
        )
    if head[4:8] == _ZSTD_MAGIC:  # older collectors: a length, then a zstd frame, per request
        raise UsageError(
            f"{label}: zstd-compressed in length-prefixed frames (the file exporter's "
            "compression: zstd in older collectors), which llmmeter does not read; export "
            "without compression"
        )
    return stream


def documents(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or a :class:`Malformed` saying why not) per export request.

    One request per line is what the collector writes; blank lines are passed over. A file
    whose first line is a lone ``{`` is pretty-printed instead (the OTLP examples, ``jq .``
    of a collector's file): it is read whole, as one or more JSON documents.
    """
    for number, raw in enumerate(stream, 1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            yield number, Malformed("not UTF-8 text")
            continue
        if not text.strip():
            continue
        if number == 1 and text.strip() == "{":
            yield from _pretty(text, stream)
            return
        try:
            yield number, json.loads(text.rstrip())
        except json.JSONDecodeError as exc:
            yield number, _invalid_json(exc)


def _invalid_json(exc: json.JSONDecodeError) -> Malformed:
    # json's messages that end in "at" expect a position: "Unterminated string starting at".
    return Malformed(f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}")


def _pretty(first: str, stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    try:
        text = first + stream.read().decode("utf-8")
    except UnicodeDecodeError:
        yield 1, Malformed("not UTF-8 text")
        return
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        line = text.count("\n", 0, position) + 1
        try:
            document, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            yield exc.lineno, _invalid_json(exc)
            return
        yield line, document


def looks_like_proto(head: bytes) -> bool:
    """The file exporter's ``format: proto``: a 4-byte big-endian length, then field 1."""
    return len(head) >= 5 and head[0] < 0x20 and head[4] == 0x0A
