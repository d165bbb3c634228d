"""``llmmeter report FILE...``: the demo's table, from spans a collector wrote to a file.

The OpenTelemetry Collector's ``file`` exporter writes OTLP JSON: one
``ExportTraceServiceRequest`` per line. Each span becomes a :class:`SpanRecord` exactly as
``llmmeter demo`` makes one from an in-memory span (attributes, duration, error status, the
resource's ``service.name``), so both commands print the same numbers for the same spans.

The reader takes what the collector writes and what protobuf's own JSON printer writes:
lowerCamelCase or proto field names, 64-bit integers as strings or numbers, trace and span
ids in hex (the collector) or base64 (protobuf), enums as numbers or names. A span sent twice
(same trace and span id, in either encoding) counts once. A line that is not OTLP JSON trace
data is counted and skipped; a file with no such line at all is an error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import io
import json
import math
import re
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import IO, Any, Final, cast

from .common import Writer, _UsageError
from .summary import GROUPINGS, SpanRecord, render_csv, render_json, render_table, summarize

FORMATS: Final = ("table", "csv", "json")
STDIN: Final = "-"
STATUS_CODE_ERROR: Final = 2
_STATUS_ERROR_NAMES: Final = ("STATUS_CODE_ERROR", "2")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_TRACE_ID_BYTES: Final = 16
_SPAN_ID_BYTES: Final = 8
_OTHER_SIGNALS: Final = {
    "resourceMetrics": "metrics",
    "resourceLogs": "logs",
    "resourceProfiles": "profiles",
}
_INTEGER = re.compile(r"[+-]?\d+")
_SPECIAL_DOUBLES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _Malformed(Exception):
    """One line (export request) that is not OTLP JSON trace data; the message says why."""


class _OtherSignal(_Malformed):
    """OTLP JSON of another signal: one file exporter can take metrics and logs pipelines too."""


# --- OTLP JSON -----------------------------------------------------------------------------


@cache
def _proto_name(json_name: str) -> str:
    """``startTimeUnixNano`` -> ``start_time_unix_nano``: protobuf's JSON parsers take both."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", json_name).lower()


def _get(obj: Mapping[str, Any], name: str) -> Any:
    value = obj.get(name)
    return obj.get(_proto_name(name)) if value is None else value


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is {_kind(value)}, not an object")
    return cast(Mapping[str, Any], value)


def _list(obj: Mapping[str, Any], name: str) -> list[Any]:
    """A repeated field: absent (protobuf omits empty ones) reads as empty."""
    value = _get(obj, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(f"{name} is {_kind(value)}, not a list")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _integer(value: Any, what: str) -> int:
    """A 64-bit integer field: protobuf JSON writes a string of digits, a number is accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    raise _Malformed(f"{what} is not an integer: {value!r}")


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
    raise _Malformed(f"{what} is not a number: {value!r}")


def _any_value(value: Any, key: str) -> Any:
    """An ``AnyValue`` as Python: str, int, float, bool, tuple, dict; None when empty."""
    if value is None:
        return None
    obj = _object(value, f"the value of attribute {key!r}")
    if (text := _get(obj, "stringValue")) is not None:
        if not isinstance(text, str):
            raise _Malformed(f"stringValue of attribute {key!r} is {_kind(text)}")
        return text
    if (number := _get(obj, "intValue")) is not None:
        return _integer(number, f"intValue of attribute {key!r}")
    if (number := _get(obj, "doubleValue")) is not None:
        return _double(number, f"doubleValue of attribute {key!r}")
    if (flag := _get(obj, "boolValue")) is not None:
        if not isinstance(flag, bool):
            raise _Malformed(f"boolValue of attribute {key!r} is {_kind(flag)}")
        return flag
    if (array := _get(obj, "arrayValue")) is not None:
        items = _list(_object(array, f"arrayValue of attribute {key!r}"), "values")
        return tuple(_any_value(item, key) for item in items)
    if (kvlist := _get(obj, "kvlistValue")) is not None:
        return _attributes(_list(_object(kvlist, f"kvlistValue of attribute {key!r}"), "values"))
    # bytesValue (base64) or a kind this reader does not know: nothing the table reads.
    return _get(obj, "bytesValue")


def _attributes(items: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        attribute = _object(item, "an attribute")
        key = attribute.get("key")
        if not isinstance(key, str):
            raise _Malformed(f"an attribute has no key: {json.dumps(attribute)[:60]}")
        found[key] = _any_value(_get(attribute, "value"), key)
    return found


def _id(value: Any, size: int) -> str | None:
    """A trace or span id as hex: the collector writes hex, protobuf's JSON base64.

    Anything else (missing, all zeros, a wrong length) is no id: the span still counts, it
    just cannot be recognised as a duplicate.
    """
    if not isinstance(value, str) or not value:
        return None
    raw: bytes | None = None
    if len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw.hex() if len(raw) == size and any(raw) else None


@dataclass(frozen=True, slots=True)
class _Span:
    record: SpanRecord | None
    """None for spans that are not llmmeter's (no ``gen_ai.operation.name``)."""
    key: tuple[str, str] | None
    start: int
    end: int


def _span(value: Any, service: str | None) -> _Span:
    span = _object(value, "a span")
    start = _integer(_get(span, "startTimeUnixNano") or 0, "startTimeUnixNano")
    end = _integer(_get(span, "endTimeUnixNano") or 0, "endTimeUnixNano")
    if end < start:
        raise _Malformed("a span ends before it starts")
    status = _get(span, "status")
    code = _get(_object(status, "status"), "code") if status is not None else None
    error = code == STATUS_CODE_ERROR or (isinstance(code, str) and code in _STATUS_ERROR_NAMES)
    attrs = _attributes(_list(span, "attributes"))
    trace_id = _id(_get(span, "traceId"), _TRACE_ID_BYTES)
    span_id = _id(_get(span, "spanId"), _SPAN_ID_BYTES)
    record = SpanRecord.from_attributes(
        attrs, duration=(end - start) / 1e9, error=error, service=service
    )
    key = (trace_id, span_id) if trace_id is not None and span_id is not None else None
    return _Span(record, key, start, end)


def _spans(request: Any) -> list[_Span]:
    """Every span of one ``ExportTraceServiceRequest``; raises :class:`_Malformed`."""
    if not isinstance(request, dict):
        raise _Malformed(f"{_kind(request)}, not an export request object")
    if _get(request, "resourceSpans") is None:
        for name, signal in _OTHER_SIGNALS.items():
            if _get(request, name) is not None:
                raise _OtherSignal(signal)
        keys = ", ".join(list(request)[:3]) or "none"
        raise _Malformed(f"no resourceSpans (keys: {keys})")
    found: list[_Span] = []
    for entry in _list(request, "resourceSpans"):
        resource_spans = _object(entry, "a resourceSpans entry")
        resource = _get(resource_spans, "resource")
        resource_attrs = (
            _attributes(_list(_object(resource, "resource"), "attributes"))
            if resource is not None
            else {}
        )
        service = resource_attrs.get("service.name")
        service = service if isinstance(service, str) and service else None
        for scope_entry in _list(resource_spans, "scopeSpans"):
            scope_spans = _object(scope_entry, "a scopeSpans entry")
            found.extend(_span(span, service) for span in _list(scope_spans, "spans"))
    return found


# --- reading files -------------------------------------------------------------------------


@dataclass(slots=True)
class _Reading:
    """What has been read so far, over every FILE."""

    lines: int = 0
    """Non-blank lines (export requests) read."""
    skipped: int = 0
    first_skip: str | None = None
    spans: int = 0
    duplicates: int = 0
    records: list[SpanRecord] = field(default_factory=list)
    start: int | None = None
    end: int | None = None
    seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, spans: list[_Span]) -> None:
        for span in spans:
            if span.key is not None:
                if span.key in self.seen:
                    self.duplicates += 1
                    continue
                self.seen.add(span.key)
            self.spans += 1
            if span.record is None:
                continue
            self.records.append(span.record)
            self.start = span.start if self.start is None else min(self.start, span.start)
            self.end = span.end if self.end is None else max(self.end, span.end)


def _open(path: str) -> tuple[str, io.BufferedReader]:
    """(label for messages, binary stream); the caller closes it (but never stdin)."""
    if path == STDIN:
        stdin: Any = sys.stdin.buffer  # peek() needs a BufferedReader: wrap anything else
        buffered = stdin if isinstance(stdin, io.BufferedReader) else io.BufferedReader(stdin)
        return "<stdin>", buffered
    try:
        return path, open(path, "rb")
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _decoded(label: str, stream: io.BufferedReader, head: bytes) -> IO[bytes]:
    """``stream`` gunzipped when it is gzip; compressed data we cannot read is an error."""
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    if head.startswith(_ZSTD_MAGIC):  # the file exporter's native zstd: a plain zstd stream
        raise _UsageError(
            f"{label}: zstd-compressed (the file exporter's compression: zstd), which llmmeter "
            f"does not read; decompress it first: zstd -dc {label} | llmmeter report -"
        )
    if head[4:8] == _ZSTD_MAGIC:  # older collectors: a length, then a zstd frame, per request
        raise _UsageError(
            f"{label}: zstd-compressed in length-prefixed frames (the file exporter's "
            "compression: zstd in older collectors), which llmmeter does not read; export "
            "without compression"
        )
    return stream


def _documents(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or a :class:`_Malformed` saying why not) per export request.

    One request per line is what the collector writes; blank lines are passed over. A file
    whose first line is a lone ``{`` is pretty-printed instead (the OTLP examples, ``jq .``
    of a collector's file): it is read whole, as one or more JSON documents.
    """
    for number, raw in enumerate(stream, 1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            yield number, _Malformed("not UTF-8 text")
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


def _invalid_json(exc: json.JSONDecodeError) -> _Malformed:
    # json's messages that end in "at" expect a position: "Unterminated string starting at".
    return _Malformed(f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}")


def _pretty(first: str, stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    try:
        text = first + stream.read().decode("utf-8")
    except UnicodeDecodeError:
        yield 1, _Malformed("not UTF-8 text")
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


def _looks_like_proto(head: bytes) -> bool:
    """The file exporter's ``format: proto``: a 4-byte big-endian length, then field 1."""
    return len(head) >= 5 and head[0] < 0x20 and head[4] == 0x0A


def _read(path: str, reading: _Reading) -> None:
    """Add one FILE's spans to ``reading``; a file with no trace data at all is an error."""
    label, stream = _open(path)
    lines = trace_lines = 0
    first_problem: tuple[int, _Malformed] | None = None
    try:
        head = stream.peek(8)[:8]
        for number, document in _documents(_decoded(label, stream, head)):
            lines += 1
            try:
                if isinstance(document, _Malformed):
                    raise document
                spans = _spans(document)
            except _Malformed as exc:
                first_problem = first_problem or (number, exc)
                # Metrics or logs sharing the file are valid data for another table: not skipped.
                if not isinstance(exc, _OtherSignal):
                    reading.skipped += 1
                    reading.first_skip = reading.first_skip or f"{label}:{number}: {exc}"
                continue
            trace_lines += 1
            reading.add(spans)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or broken gzip data
        raise _UsageError(f"cannot read {label}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        if path != STDIN:
            stream.close()
    reading.lines += lines
    if trace_lines or first_problem is None:
        return
    number, problem = first_problem
    if isinstance(problem, _OtherSignal):
        why = f"line {number} holds OTLP {problem}; put the file exporter in a traces pipeline"
    elif _looks_like_proto(head):
        why = "binary, like the file exporter's format: proto; use format: json"
    else:
        why = f"line {number}: {problem}"
    raise _UsageError(f"{label}: not OTLP JSON trace data ({why})")


# --- the command ---------------------------------------------------------------------------


def _when(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def _heading(files: list[str], reading: _Reading) -> str:
    source = files[0] if len(files) == 1 else f"{len(files)} files"
    if source == STDIN:
        source = "stdin"
    calls = len(reading.records)
    text = f"{source}: {calls} call{'' if calls == 1 else 's'}"
    if reading.start is not None and reading.end is not None:
        start, end = _when(reading.start), _when(reading.end)
        end_format = "%H:%M:%S" if start.date() == end.date() else "%Y-%m-%d %H:%M:%S"
        text += f", {start:%Y-%m-%d %H:%M:%S} to {end.strftime(end_format)} UTC"
    return text


def _report(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter report``: read every FILE, then print one table over all of them."""
    files: list[str] = args.files
    if files.count(STDIN) > 1:
        raise _UsageError("'-' (stdin) can be given once")
    reading = _Reading()
    for path in files:
        _read(path, reading)

    def note(kind: str, text: str) -> None:
        print(f"llmmeter: {kind}: {text}", file=sys.stderr)

    if reading.skipped:
        note(
            "warning",
            f"{reading.skipped} of {reading.lines} lines skipped: not OTLP JSON "
            f"(first at {reading.first_skip})",
        )
    if reading.duplicates:
        spans = "span" if reading.duplicates == 1 else "spans"
        same = "same trace and span id"
        note("note", f"{reading.duplicates} duplicate {spans} counted once ({same})")
    if not reading.records:
        where = "stdin" if files == [STDIN] else ", ".join(files)
        if reading.spans:
            note(
                "note",
                f"no llmmeter spans in {where}: none of the {reading.spans} spans read has "
                "gen_ai.operation.name",
            )
        else:
            note("note", f"no spans in {where}")
    summary = summarize(reading.records, by=args.by)
    if args.format == "csv":
        out(render_csv(summary).rstrip("\n"))
    elif args.format == "json":
        out(render_json(summary))
    elif reading.records:
        out(_heading(files, reading))
        out("")
        for line in render_table(summary):
            out(line)
    return 0


_REPORT_EPILOG = """\
examples:
  llmmeter report spans.json                     by model
  llmmeter report spans.json --by task           by llmmeter.task
  llmmeter report spans-*.json.gz --format csv   several files, gzipped, as CSV
  zcat spans.json.gz | llmmeter report - --by service

Get FILE from the OpenTelemetry Collector's file exporter in a traces pipeline:
  exporters:
    file:
      path: ./spans.json
"""


def add_report_parser(commands: Any) -> None:
    """``llmmeter report``."""
    report = commands.add_parser(
        "report",
        help="the demo's table (cost, tokens, routing, savings) from exported spans",
        description=(
            "Read spans the OpenTelemetry Collector's file exporter wrote (OTLP JSON, one\n"
            "export request per line; gzip is read too; '-' is stdin) and print calls,\n"
            "errors, tokens, cost, p50 latency, routed calls and savings by model, task,\n"
            "routing rule or service, with a day of such traffic with and without the\n"
            "policy. Only llmmeter's spans (gen_ai.operation.name) count. Lines that are not\n"
            "OTLP JSON are skipped and counted; a file with no OTLP JSON trace data at all\n"
            "is an error (exit code 2)."
        ),
        epilog=_REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "files", nargs="+", metavar="FILE", help="OTLP JSON trace file ('-': stdin; .gz ok)"
    )
    report.add_argument(
        "--by",
        choices=GROUPINGS,
        default="model",
        help="one row per model, task (llmmeter.task), routing rule or service (service.name); "
        "default: model",
    )
    report.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    report.set_defaults(handler=_report, prog=report.prog)
