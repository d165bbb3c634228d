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
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import IO, Any, Final, TypeVar, cast

from . import inputs
from .common import UsageError

STDIN: Final = "-"
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_INTEGER = re.compile(r"[+-]?\d+")
_SPECIAL_DOUBLES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_INT64_MIN: Final = -(1 << 63)
_UINT64_END: Final = 1 << 64
GIVE_UP: Final = 1000
"""Lines that are not JSON, from the first on, after which a file is read no further."""
TOO_LONG_NUMBER: Final = (
    f"invalid JSON: a number of more than {sys.get_int_max_str_digits()} digits"
)
TOO_DEEP: Final = "nested too deeply"
"""Why a document that exhausts Python's recursion is not read (``[[[[...`` 50,000 deep)."""


T = TypeVar("T")


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
    """A 64-bit integer field: protobuf JSON writes a string of digits, a number is accepted.

    Anything out of the 64-bit range (int64 or uint64) is no OTLP value: refused before it
    reaches a date or a float that would overflow.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        # More digits than any 64-bit value has: not converted (int() of a huge string is slow).
        number = int(value) if len(value) <= 21 else _UINT64_END
    if number is not None and _INT64_MIN <= number < _UINT64_END:
        return number
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:40] + "..."
    if number is None:
        raise Malformed(f"{what} is not an integer: {shown}")
    raise Malformed(f"{what} is out of the 64-bit range: {shown}")


def _double(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            raise Malformed(f"{what} is out of range") from None
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


def shallow(read: Callable[[Any], T], document: Any) -> T:
    """``read(document)``, with a document nested past Python's stack (attribute values in
    values, thousands deep) a :class:`Malformed` like any other, not a RecursionError."""
    try:
        return read(document)
    except RecursionError:
        raise Malformed(TOO_DEEP) from None


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


def documents(
    label: str, stream: IO[bytes], progress: inputs.Progress | None = None
) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or a :class:`Malformed` saying why not) per export request.

    One request per line is what the collector writes; blank lines are passed over. A file
    whose first line is a lone ``{`` is pretty-printed instead (the OTLP examples, ``jq .``
    of a collector's file): it is read whole, as one or more JSON documents. Lines and
    documents are bounded (``inputs``); a file whose first :data:`GIVE_UP` lines are all
    not JSON (random bytes, ``/dev/urandom``) is read no further.

    Raises:
        UsageError: a line or document past its bound, or one too big to parse in memory.
    """
    seen_json = False
    for number, raw in inputs.lines(label, stream, progress=progress):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            yield number, Malformed("not UTF-8 text")
            if not seen_json and number >= GIVE_UP:
                return
            continue
        if not text.strip():
            continue
        if number == 1 and text.strip() == "{":
            yield from _pretty(label, raw, stream, progress)
            return
        document = _parse(label, number, text)
        seen_json = seen_json or not isinstance(document, Malformed)
        yield number, document
        if not seen_json and number >= GIVE_UP:
            return


def _parse(label: str, number: int, text: str) -> Any:
    """One line's JSON, or a :class:`Malformed` saying why it is none."""
    try:
        return json.loads(text)  # the newline too: a stripped copy would hold the line twice
    except json.JSONDecodeError as exc:
        why = exc
    except RecursionError:
        return Malformed(TOO_DEEP)
    except ValueError:  # an integer of more digits than int() converts
        return Malformed(TOO_LONG_NUMBER)
    except MemoryError:
        raise inputs.too_big(label, number) from None
    try:  # again without the newline, for the message: "Unterminated string", at its column
        json.loads(text.rstrip())
    except json.JSONDecodeError as exc:
        why = exc
    return _invalid_json(why)


def _invalid_json(exc: json.JSONDecodeError) -> Malformed:
    # json's messages that end in "at" expect a position: "Unterminated string starting at".
    return Malformed(f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}")


def _pretty(
    label: str, first: bytes, stream: IO[bytes], progress: inputs.Progress | None
) -> Iterator[tuple[int, Any]]:
    try:
        text = inputs.read_rest(label, stream, first).decode("utf-8-sig")
    except UnicodeDecodeError:
        yield 1, Malformed("not UTF-8 text")
        return
    decoder = json.JSONDecoder()
    position = 0
    line = 1
    while True:
        start = position
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        line += text.count("\n", start, position)  # from the last document on: no rescans
        start = position
        try:
            document, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            yield exc.lineno, _invalid_json(exc)
            return
        except RecursionError:
            yield line, Malformed(TOO_DEEP)
            return
        except ValueError:
            yield line, Malformed(TOO_LONG_NUMBER)
            return
        except MemoryError:
            raise inputs.too_big(label, line) from None
        yield line, document
        line += text.count("\n", start, position)
        if progress is not None:
            progress.update(line, position)


def looks_like_proto(head: bytes) -> bool:
    """The file exporter's ``format: proto``: a 4-byte big-endian length, then field 1."""
    return len(head) >= 5 and head[0] < 0x20 and head[4] == 0x0A
