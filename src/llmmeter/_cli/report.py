"""``llmmeter report FILE...``: the demo's table, from spans a collector wrote to a file.

The OpenTelemetry Collector's ``file`` exporter writes OTLP JSON: one
``ExportTraceServiceRequest`` per line. Each span becomes a :class:`SpanRecord` exactly as
``llmmeter demo`` makes one from an in-memory span (attributes, duration, error status, the
resource's ``service.name``), so both commands print the same numbers for the same spans.

The reader (``otlp``, which ``policy status`` shares) takes what the collector writes and
what protobuf's own JSON printer writes: lowerCamelCase or proto field names, 64-bit integers
as strings or numbers, trace and span ids in hex (the collector) or base64 (protobuf), enums
as numbers or names. A span sent twice (same trace and span id, in either encoding) counts
once. A line that is not OTLP JSON trace data is counted and skipped; a file with no such
line at all is an error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import sys
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from llmmeter._rules import RulePolicy
from llmmeter.exceptions import ConfigError

from . import inputs, otlp
from .common import UsageError, Writer, exit_codes, printable
from .summary import (
    GROUPINGS,
    Row,
    SpanRecord,
    counted,
    render_csv,
    render_json,
    render_table,
    summarize,
)

FORMATS: Final = ("table", "csv", "json")
STATUS_CODE_ERROR: Final = 2
_STATUS_ERROR_NAMES: Final = ("STATUS_CODE_ERROR", "2")
_TRACE_ID_BYTES: Final = 16
_SPAN_ID_BYTES: Final = 8
_OTHER_SIGNALS: Final = {
    "resourceMetrics": "metrics",
    "resourceLogs": "logs",
    "resourceProfiles": "profiles",
}


class _OtherSignal(otlp.Malformed):
    """OTLP JSON of another signal: one file exporter can take metrics and logs pipelines too."""


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
    span = otlp.as_object(value, "a span")
    start = otlp.integer(otlp.get(span, "startTimeUnixNano") or 0, "startTimeUnixNano")
    end = otlp.integer(otlp.get(span, "endTimeUnixNano") or 0, "endTimeUnixNano")
    if end < start:
        raise otlp.Malformed("a span ends before it starts")
    status = otlp.get(span, "status")
    code = otlp.get(otlp.as_object(status, "status"), "code") if status is not None else None
    error = code == STATUS_CODE_ERROR or (isinstance(code, str) and code in _STATUS_ERROR_NAMES)
    attrs = otlp.attributes(otlp.repeated(span, "attributes"))
    trace_id = _id(otlp.get(span, "traceId"), _TRACE_ID_BYTES)
    span_id = _id(otlp.get(span, "spanId"), _SPAN_ID_BYTES)
    record = SpanRecord.from_attributes(
        attrs,
        duration=(end - start) / 1e9,
        error=error,
        service=service,
        start=start / 1e9 if start else None,
    )
    key = (trace_id, span_id) if trace_id is not None and span_id is not None else None
    return _Span(record, key, start, end)


def _spans(request: Any) -> list[_Span]:
    """Every span of one ``ExportTraceServiceRequest``; raises :class:`otlp.Malformed`."""
    if not isinstance(request, dict):
        raise otlp.Malformed(f"{otlp.kind(request)}, not an export request object")
    if otlp.get(request, "resourceSpans") is None:
        for name, signal in _OTHER_SIGNALS.items():
            if otlp.get(request, name) is not None:
                raise _OtherSignal(signal)
        keys = ", ".join(printable(key) for key in list(request)[:3]) or "none"
        raise otlp.Malformed(f"no resourceSpans (keys: {keys})")
    found: list[_Span] = []
    for entry in otlp.repeated(request, "resourceSpans"):
        resource_spans = otlp.as_object(entry, "a resourceSpans entry")
        resource = otlp.get(resource_spans, "resource")
        resource_attrs = (
            otlp.attributes(otlp.repeated(otlp.as_object(resource, "resource"), "attributes"))
            if resource is not None
            else {}
        )
        service = resource_attrs.get("service.name")
        service = service if isinstance(service, str) and service else None
        for scope_entry in otlp.repeated(resource_spans, "scopeSpans"):
            scope_spans = otlp.as_object(scope_entry, "a scopeSpans entry")
            found.extend(_span(span, service) for span in otlp.repeated(scope_spans, "spans"))
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


def _read(path: str, reading: _Reading) -> None:
    """Add one FILE's spans to ``reading``; a file with no trace data at all is an error."""
    label, stream = otlp.open_input(path)
    lines = trace_lines = 0
    first_problem: tuple[int, otlp.Malformed] | None = None
    try:
        head = stream.peek(8)[:8]
        progress = inputs.Progress("report", label, stream)
        decoded = otlp.decoded(label, stream, head)
        for number, document in otlp.documents(label, decoded, progress):
            lines += 1
            try:
                if isinstance(document, otlp.Malformed):
                    raise document
                spans = otlp.shallow(_spans, document)
            except otlp.Malformed as exc:
                first_problem = first_problem or (number, exc)
                # Metrics or logs sharing the file are valid data for another table: not skipped.
                if not isinstance(exc, _OtherSignal):
                    reading.skipped += 1
                    reading.first_skip = reading.first_skip or f"{label}:{number}: {exc}"
                continue
            trace_lines += 1
            reading.add(spans)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or broken gzip data
        raise UsageError(f"cannot read {label}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        if path != otlp.STDIN:
            stream.close()
    reading.lines += lines
    if trace_lines or first_problem is None:
        return
    number, problem = first_problem
    if isinstance(problem, _OtherSignal):
        why = f"line {number} holds OTLP {problem}; put the file exporter in a traces pipeline"
    elif otlp.looks_like_proto(head):
        why = "binary, like the file exporter's format: proto; use format: json"
    else:
        why = f"line {number}: {problem}"
    raise UsageError(f"{label}: not OTLP JSON trace data ({why})")


# --- the command ---------------------------------------------------------------------------


def _when(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def _heading(files: list[str], reading: _Reading, total: Row) -> str:
    source = files[0] if len(files) == 1 else f"{len(files)} files"
    if source == otlp.STDIN:
        source = "stdin"
    text = f"{source}: {counted(total)}"
    if reading.start is not None and reading.end is not None:
        start, end = _when(reading.start), _when(reading.end)
        end_format = "%H:%M:%S" if start.date() == end.date() else "%Y-%m-%d %H:%M:%S"
        text += f", {start:%Y-%m-%d %H:%M:%S} to {end.strftime(end_format)} UTC"
    return text


def _report(args: argparse.Namespace, out: Writer) -> int:
    """``llmmeter report``: read every FILE, then print one table over all of them."""
    files: list[str] = args.files
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json and --format {args.format} cannot be combined")
    output = "json" if args.json else args.format or "table"
    if files.count(otlp.STDIN) > 1:
        raise UsageError("'-' (stdin) can be given once")
    if args.policy is not None and args.html is None:
        raise UsageError("--policy needs --html (it gives the page's agreement targets)")
    targets: dict[str, float] = {}
    if args.html is not None:
        from .charts import load

        load()  # a missing extra, or a bad policy file, is said before a long read, not after
        targets = _targets(args.policy)
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
        where = "stdin" if files == [otlp.STDIN] else ", ".join(files)
        if reading.spans:
            note(
                "note",
                f"no llmmeter spans in {where}: none of the {reading.spans} spans read has "
                "gen_ai.operation.name",
            )
        else:
            note("note", f"no spans in {where}")
    summary = summarize(reading.records, by=args.by)
    if args.html is not None:
        _write_html(args.html, reading.records, _heading(files, reading, summary.total), targets)
    if output == "csv":
        out(render_csv(summary).rstrip("\n"))
    elif output == "json":
        out(render_json(summary))
    elif reading.records:
        out(_heading(files, reading, summary.total))
        out("")
        for line in render_table(summary):
            out(line)
    return 0


def _targets(path: str | None) -> dict[str, float]:
    """``--policy FILE``: each rule's ``agreement_target``, which the page holds it to."""
    if path is None:
        return {}
    try:
        policy = RulePolicy.load(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return {rule.name: rule.agreement_target for rule in policy.rules}


def _write_html(
    path: str, records: list[SpanRecord], source: str, targets: dict[str, float]
) -> None:
    """``--html FILE``: the page, its subtitle the table's first line."""
    from . import html_report  # matplotlib, an optional extra, only when asked for

    size = html_report.write(path, html_report.build(records, source=source, targets=targets))
    print(f"llmmeter: wrote {path} ({size:,} bytes)", file=sys.stderr)


_REPORT_EPILOG = """\
examples:
  llmmeter report spans.json                     by model
  llmmeter report spans.json --by task           by llmmeter.task
  llmmeter report spans-*.json.gz --format csv   several files, gzipped, as CSV
  llmmeter report spans.json --json              one JSON document
  zcat spans.json.gz | llmmeter report - --by service
  llmmeter report spans.json --html report.html  also a page with charts (llmmeter[report])

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
        epilog=_REPORT_EPILOG
        + "\n"
        + exit_codes((0, "the table was printed (also when the files hold no llmmeter span)")),
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
        "--format", choices=FORMATS, default=None, help="output format (default: table)"
    )
    report.add_argument(
        "--json", action="store_true", help="machine-readable output: the same as --format json"
    )
    report.add_argument(
        "--html",
        metavar="PAGE",
        help="also write one self-contained HTML page with charts to PAGE "
        "(needs: pip install 'llmmeter[report]')",
    )
    report.add_argument(
        "--policy",
        metavar="POLICY",
        help="with --html: the policy file whose agreement_target each rule is held to "
        "(default: 0.95)",
    )
    report.set_defaults(handler=_report, prog=report.prog)
