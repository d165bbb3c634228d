"""`llmmeter report`: the demo's table from spans as the Collector's file exporter writes them.

The input is made the way a user gets it: real instrumented calls to the fake server, their
finished spans encoded by the SDK's own OTLP encoder, then written as JSON lines either as
protobuf's JSON printer writes them (base64 ids, enum names) or as the collector's file
exporter does (hex ids, enums as numbers). Expected numbers come from the spans' own
attributes, never from the code under test.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
from google.protobuf.json_format import MessageToDict, MessageToJson
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import llmmeter
from llmmeter._cli import main
from llmmeter._cli.summary import GROUPINGS, SpanRecord, render_table, summarize
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry

GEN_AI_OPERATION = "gen_ai.operation.name"
POLICY = llmmeter.RulePolicy(
    rules=[
        {"name": "classify-to-mini", "from": "gpt-4o", "to": "gpt-4o-mini", "tasks": ["classify"]},
        {
            "name": "summaries-to-mini",
            "from": "gpt-4o",
            "to": "gpt-4o-mini",
            "tasks": ["summarize"],
            "mode": "shadow",
        },
    ]
)
TICKETS = [
    "My order #4411 arrived with a cracked screen. I want a replacement, not a refund.",
    "How do I change the email address on my account? The settings page only shows my name.",
    "Your app logged me out three times today and now says my password is wrong.",
    "Is the blue model back in stock? I have been waiting since March.",
    "I was charged twice for the same subscription this month, please fix it.",
    "Great service last week, the courier was early and very polite. Thanks!",
]
DOCUMENTS = [
    "Meeting notes, 12 May: the team agreed to move the release to June 3 because the payment "
    "provider's sandbox was down for two days. QA needs one more week on the refund flow. "
    "Marketing will hold the announcement until the release is confirmed.",
    "Incident report: between 09:12 and 09:47 UTC the search service returned empty results "
    "for 8% of queries after an index rebuild ran with a stale mapping. The rebuild was rolled "
    "back and a check now compares mappings before a swap.",
    "Customer thread: the customer asked twice for an invoice with their VAT number, got a "
    "generic reply both times, and escalated. Finance has since issued the invoice.",
]
QUESTIONS = [
    "A customer asks whether they can return a laptop after 35 days if it was a gift. What "
    "should I tell them under our 30-day policy with the holiday extension?",
    "Draft a short apology for a delayed shipment that offers free express shipping next time.",
    "Explain to a customer why their refund shows as pending for up to five business days.",
    "Write a reply for a customer who wants to cancel but is inside the 12-month contract.",
]
CLASSIFY = "Classify the ticket as one of: order, account, billing, stock, praise. Label only."
PRODUCTS = ["Waterproof hiking boots, leather, size 42", "USB-C charger, 65 W, two ports"]


@dataclass(frozen=True)
class Workload:
    """The finished spans of a realistic run in two services, and the metrics they made."""

    spans: list[ReadableSpan]
    metrics: list[Any]
    """Metrics export requests (protobuf messages), for files that mix signals."""

    @property
    def llm_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans if GEN_AI_OPERATION in (span.attributes or {})]


def _telemetry(service: str) -> Telemetry:
    resource = Resource.create({"service.name": service})
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    return Telemetry(exporter, reader, tracer_provider, meter_provider)


def _support_bot(fake: FakeOpenAI, client: openai.OpenAI, tel: Telemetry) -> None:
    """An HTTP service: a request handler's span wraps each classification it asks for."""
    tracer = tel.tracer_provider.get_tracer("support-bot.http")
    for ticket in TICKETS:
        with (
            tracer.start_as_current_span("POST /tickets", kind=SpanKind.SERVER),
            llmmeter.task("classify"),
        ):
            client.chat.completions.create(
                model="gpt-4o",
                messages=[
                    {"role": "system", "content": CLASSIFY},
                    {"role": "user", "content": ticket},
                ],
                max_tokens=5,
            )
    for document in DOCUMENTS:
        with llmmeter.task("summarize"):
            client.responses.create(
                model="gpt-4o",
                instructions="Summarize in two sentences for a busy manager.",
                input=document,
            )
    for question in QUESTIONS:
        with llmmeter.task("answer"):
            stream = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": question}], stream=True
            )
            for _ in stream:
                pass
    # One call fails: its span counts as a call and an error, with no tokens.
    fake.fail_next(500, model="gpt-4o")
    with llmmeter.task("answer"), pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTIONS[0]}]
        )


def _indexer(fake: FakeOpenAI, client: openai.OpenAI, tel: Telemetry) -> None:
    with llmmeter.task("embed"):
        for text in [*TICKETS[:2], *DOCUMENTS[:1]]:
            client.embeddings.create(model="text-embedding-3-small", input=text)
    with llmmeter.task("tagging"):
        for product in PRODUCTS:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"Three comma-separated tags: {product}"}],
            )


@pytest.fixture(scope="module")
def workload(fake: FakeOpenAI) -> Workload:
    return make_workload(fake)


def make_workload(fake: FakeOpenAI) -> Workload:
    """Two services, as two processes would send them: a support bot with a routing policy
    (classification enforced, summaries in shadow mode) and an indexer without one."""
    fake.reset()
    # Latency like the real API's (gpt-4o slower than gpt-4o-mini), so p50 means something.
    fake.set_latency(response=0.06, first_chunk=0.06, per_chunk=0.001, model="gpt-4o")
    fake.set_latency(response=0.025, model="gpt-4o-mini")
    fake.set_latency(response=0.01, model="text-embedding-3-small")
    spans: list[ReadableSpan] = []
    metrics: list[Any] = []
    runs: list[tuple[str, llmmeter.RulePolicy | None, Callable[..., None]]] = [
        ("support-bot", POLICY, _support_bot),
        ("indexer", None, _indexer),
    ]
    with pytest.MonkeyPatch.context() as env:
        for name in [name for name in os.environ if name.startswith(("LLMMETER_", "OTEL_"))]:
            env.delenv(name)
        for service, policy, run in runs:
            tel = _telemetry(service)
            tel.instrument(policy=policy)
            try:
                with openai.OpenAI(
                    base_url=fake.base_url, api_key="sk-test", max_retries=0
                ) as client:
                    run(fake, client, tel)
            finally:
                llmmeter.uninstrument()
            spans += tel.spans()
            data = tel.reader.get_metrics_data()
            assert data is not None
            metrics.append(encode_metrics(data))
            tel.meter_provider.shutdown()
            tel.tracer_provider.shutdown()
    fake.reset()
    return Workload(spans, metrics)


# --- writing files as the collector does ----------------------------------------------------


def _hex_ids(value: Any) -> Any:
    """protobuf's JSON (base64 ids) -> the collector's (hex ids), anywhere in a request."""
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: base64.b64decode(item).hex() if key in ID_FIELDS else _hex_ids(item)
        for key, item in value.items()
    }


ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def batches(spans: Sequence[ReadableSpan], size: int = 5) -> list[list[ReadableSpan]]:
    """Spans in export batches, as a batch span processor sends them."""
    return [list(spans[i : i + size]) for i in range(0, len(spans), size)]


def protobuf_lines(spans: Sequence[ReadableSpan]) -> list[str]:
    """One export request per line as protobuf prints it: base64 ids, enum names."""
    return [MessageToJson(encode_spans(batch), indent=None) for batch in batches(spans)]


def collector_lines(spans: Sequence[ReadableSpan]) -> list[str]:
    """One export request per line as the collector's file exporter writes it: lowerCamelCase
    names, 64-bit integers as strings, hex trace and span ids, enums as numbers."""
    return [
        json.dumps(
            _hex_ids(MessageToDict(encode_spans(batch), use_integers_for_enums=True)),
            separators=(",", ":"),
        )
        for batch in batches(spans)
    ]


def metrics_lines(workload: Workload) -> list[str]:
    return [
        json.dumps(MessageToDict(request, use_integers_for_enums=True), separators=(",", ":"))
        for request in workload.metrics
    ]


def write(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


ENCODINGS: dict[str, Callable[[Sequence[ReadableSpan]], list[str]]] = {
    "collector": collector_lines,
    "protobuf": protobuf_lines,
}


# --- what the spans say, computed here from their attributes ---------------------------------


def _group(span: ReadableSpan, by: str) -> str:
    attrs = span.attributes or {}
    value = {
        "model": attrs.get("gen_ai.request.model"),
        "task": attrs.get("llmmeter.task"),
        "rule": attrs.get("llmmeter.policy.rule"),
        "service": span.resource.attributes.get("service.name"),
    }[by]
    return str(value) if value else "-"


def expected_rows(spans: Sequence[ReadableSpan], by: str) -> dict[str, dict[str, Any]]:
    """Per group (and "total"): sums straight from each span's attributes and status."""
    groups: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        if GEN_AI_OPERATION in (span.attributes or {}):
            groups.setdefault(_group(span, by), []).append(span)
            groups.setdefault("total", []).append(span)
    rows = {}
    for key, members in groups.items():
        attrs = [span.attributes or {} for span in members]
        action = [a.get("llmmeter.policy.action") for a in attrs]
        durations = [((s.end_time or 0) - (s.start_time or 0)) / 1e9 for s in members]

        def total(name: str, attrs: list[Any] = attrs) -> float:
            return sum(float(a.get(name, 0)) for a in attrs)

        def savings(kind: str, attrs: list[Any] = attrs, action: list[Any] = action) -> float:
            return sum(
                float(a.get("llmmeter.policy.savings", 0))
                for a, did in zip(attrs, action, strict=True)
                if did == kind
            )

        rows[key] = {
            "calls": len(members),
            "errors": sum(s.status.status_code is StatusCode.ERROR for s in members),
            "input_tokens": int(total("gen_ai.usage.input_tokens")),
            "output_tokens": int(total("gen_ai.usage.output_tokens")),
            "cost_usd": total("gen_ai.usage.cost.amount"),
            "routed_calls": action.count("route"),
            "saved_usd": savings("route"),
            "shadow_would_save_usd": savings("shadow"),
            "p50_ms": round(statistics.median(durations) * 1000, 1),
        }
    return rows


def run_report(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["report", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> dict[str, Any]:
    code, out, err = run_report(capsys, *argv, "--format", "json")
    assert (code, err) == (0, ""), err
    doc: dict[str, Any] = json.loads(out)
    return doc


def as_rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in [*doc["rows"], doc["total"]]}


def assert_matches(doc: dict[str, Any], spans: Sequence[ReadableSpan], by: str) -> None:
    got = as_rows(doc)
    want = expected_rows(spans, by)
    assert set(got) == set(want)
    for key, row in want.items():
        for name, value in row.items():
            assert got[key][name] == pytest.approx(value, abs=1e-6), (key, name)


# --- the numbers ----------------------------------------------------------------------------


def test_workload_is_realistic(workload: Workload) -> None:
    """The input has what the table is about: routed, shadowed, failed, other spans."""
    actions = [(s.attributes or {}).get("llmmeter.policy.action") for s in workload.llm_spans]
    assert actions.count("route") == len(TICKETS)
    assert actions.count("shadow") == len(DOCUMENTS)
    assert sum(s.status.status_code is StatusCode.ERROR for s in workload.llm_spans) == 1
    assert len(workload.spans) - len(workload.llm_spans) == len(TICKETS)  # the HTTP spans
    assert all(s.parent is not None for s in workload.llm_spans[: len(TICKETS)])


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("by", GROUPINGS)
def test_numbers_are_the_spans_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload, encoding: str, by: str
) -> None:
    path = write(tmp_path / "spans.json", ENCODINGS[encoding](workload.spans))
    doc = report_json(capsys, path, "--by", by)
    assert doc["by"] == by
    assert_matches(doc, workload.spans, by)


def test_groups_hold_what_was_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    path = write(tmp_path / "spans.json", collector_lines(workload.spans))
    calls = {
        by: {
            key: row["calls"] for key, row in as_rows(report_json(capsys, path, "--by", by)).items()
        }
        for by in GROUPINGS
    }
    n_llm = len(workload.llm_spans)
    assert calls["task"] == {
        "classify": len(TICKETS),
        "summarize": len(DOCUMENTS),
        "answer": len(QUESTIONS) + 1,
        "embed": 3,
        "tagging": len(PRODUCTS),
        "total": n_llm,
    }
    assert calls["rule"] == {
        "classify-to-mini": len(TICKETS),
        "summaries-to-mini": len(DOCUMENTS),
        "-": n_llm - len(TICKETS) - len(DOCUMENTS),
        "total": n_llm,
    }
    assert calls["service"] == {"support-bot": n_llm - 5, "indexer": 5, "total": n_llm}
    # Routed calls went out as gpt-4o-mini; the shadowed summaries stayed on gpt-4o.
    assert calls["model"]["gpt-4o-mini"] == len(TICKETS) + len(PRODUCTS)
    assert calls["model"]["gpt-4o"] == len(DOCUMENTS) + len(QUESTIONS) + 1


def test_table_is_the_demo_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    """The text table is render_table over the records demo would make of the same spans."""
    path = write(tmp_path / "spans.json", collector_lines(workload.spans))
    records = [
        SpanRecord.from_attributes(
            dict(span.attributes or {}),
            duration=((span.end_time or 0) - (span.start_time or 0)) / 1e9,
            error=span.status.status_code is StatusCode.ERROR,
            service=str(span.resource.attributes["service.name"]),
        )
        for span in workload.spans
    ]
    for by in GROUPINGS:
        code, out, err = run_report(capsys, path, "--by", by)
        assert (code, err) == (0, "")
        heading, blank, *table = out.splitlines()
        assert blank == ""
        summary = summarize([r for r in records if r is not None], by=by)
        assert table == render_table(summary)
    start = min(span.start_time or 0 for span in workload.llm_spans) // 10**9
    end = max(span.end_time or 0 for span in workload.llm_spans) // 10**9
    first, last = (datetime.fromtimestamp(t, UTC) for t in (start, end))
    assert heading == (
        f"{path}: {len(workload.llm_spans)} calls, {first:%Y-%m-%d %H:%M:%S} to {last:%H:%M:%S} UTC"
    )


def test_table_shows_routing_and_savings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    path = write(tmp_path / "spans.json", collector_lines(workload.spans))
    code, out, _ = run_report(capsys, path, "--by", "rule")
    assert code == 0
    rows = {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if (cells := re.split(r"\s{2,}", line.strip()))
    }
    header = rows["rule"]
    assert header == [
        "calls",
        "errors",
        "tokens in",
        "tokens out",
        "cost",
        "p50",
        "routed",
        "saved",
    ]
    classify = dict(zip(header, rows["classify-to-mini"], strict=True))
    assert classify["routed"] == str(len(TICKETS))
    assert classify["saved"].startswith("$")
    summaries = dict(zip(header, rows["summaries-to-mini"], strict=True))
    assert summaries["routed"] == "0"
    assert summaries["saved"].startswith("shadow $")
    assert "At 1,000,000 requests a day like these:" in out
    assert re.search(r"with the policy +\$[\d,.]+ a day {2}\(saves \$[\d,.]+ a day\)", out)


def test_projection_follows_from_the_spans(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    path = write(tmp_path / "spans.json", protobuf_lines(workload.spans))
    doc = report_json(capsys, path)
    total = expected_rows(workload.spans, "model")["total"]
    per_call_without = (total["cost_usd"] + total["saved_usd"]) / total["calls"]
    per_call_with = (total["cost_usd"] - total["shadow_would_save_usd"]) / total["calls"]
    assert doc["projection"] == {
        "requests_per_day": 1_000_000,
        "cost_per_day_with_policy_usd": pytest.approx(per_call_with * 1e6, abs=0.01),
        "cost_per_day_without_policy_usd": pytest.approx(per_call_without * 1e6, abs=0.01),
        "saved_per_day_usd": pytest.approx((per_call_without - per_call_with) * 1e6, abs=0.02),
        "evaluation_cost_per_day_usd": 0.0,
    }


# --- output formats -------------------------------------------------------------------------


def test_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload) -> None:
    path = write(tmp_path / "spans.json", collector_lines(workload.spans))
    code, out, err = run_report(capsys, path, "--by", "task", "--format", "csv")
    assert (code, err) == (0, "")
    assert "\r" not in out
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == [
        "task",
        "calls",
        "errors",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "unpriced_calls",
        "p50_ms",
        "routed_calls",
        "saved_usd",
        "shadow_would_save_usd",
        "evaluation_requests",
        "evaluation_cost_usd",
    ]
    assert table[-1]["task"] == "total"
    want = expected_rows(workload.spans, "task")
    assert {row["task"] for row in table} == set(want)
    for row in table:
        expected = want[row["task"]]
        assert int(row["calls"]) == expected["calls"]
        assert int(row["input_tokens"]) == expected["input_tokens"]
        assert float(row["cost_usd"]) == pytest.approx(expected["cost_usd"], abs=1e-6)
        assert float(row["p50_ms"]) == expected["p50_ms"]
    costs = [float(row["cost_usd"]) for row in table[:-1]]
    assert costs == sorted(costs, reverse=True)  # most expensive first


def test_json_shape(capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload) -> None:
    path = write(tmp_path / "spans.json", collector_lines(workload.spans))
    doc = report_json(capsys, path, "--by", "service")
    assert list(doc) == ["by", "rows", "total", "projection"]
    assert [row["key"] for row in doc["rows"]] == ["support-bot", "indexer"]
    assert doc["total"]["key"] == "total"
    assert set(doc["total"]) == {
        "key", "calls", "errors", "input_tokens", "output_tokens", "cost_usd", "unpriced_calls",
        "p50_ms", "routed_calls", "saved_usd", "shadow_would_save_usd", "evaluation_requests",
        "evaluation_cost_usd",
    }  # fmt: skip
    assert doc["total"]["unpriced_calls"] == 0


# --- what the reader tolerates --------------------------------------------------------------


def test_hex_and_base64_ids_are_the_same_span(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    """The same spans written by the collector and by protobuf count once."""
    collector = write(tmp_path / "collector.json", collector_lines(workload.spans))
    protobuf = write(tmp_path / "protobuf.json", protobuf_lines(workload.spans))
    assert '"traceId":"' in collector.read_text() and '"kind":3' in collector.read_text()
    assert '"kind": "SPAN_KIND_CLIENT"' in protobuf.read_text()
    code, out, err = run_report(capsys, collector, protobuf, "--format", "json")
    assert code == 0
    assert err == (
        f"llmmeter: note: {len(workload.spans)} duplicate spans counted once "
        "(same trace and span id)\n"
    )
    assert_matches(json.loads(out), workload.spans, "model")


def attribute(key: str, **value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def spans_line(*spans: Any, service: str = "x") -> str:
    """One export request holding ``spans``, written by hand."""
    resource = {"attributes": [attribute("service.name", stringValue=service)]}
    scope_spans = [{"scope": {"name": "llmmeter"}, "spans": list(spans)}]
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": scope_spans}]})


def test_other_shapes_protobuf_accepts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Proto field names, integers as numbers, doubles as strings, status as a number or a
    name, no ids: all read as protobuf's own JSON parser reads them."""

    def span(code: Any, tokens: Any, cost: Any, names: str) -> dict[str, Any]:
        snake = names == "snake"
        name = "string_value" if snake else "stringValue"
        return {
            ("start_time_unix_nano" if snake else "startTimeUnixNano"): 1_700_000_000 * 10**9,
            ("end_time_unix_nano" if snake else "endTimeUnixNano"): "1700000000250000000",
            "attributes": [
                attribute("gen_ai.operation.name", **{name: "chat"}),
                attribute("gen_ai.request.model", stringValue="gpt-4o"),
                attribute("gen_ai.usage.input_tokens", intValue=tokens),
                attribute("gen_ai.usage.cost.amount", doubleValue=cost),
                attribute("gen_ai.request.temperature", doubleValue="NaN"),
                attribute("gen_ai.response.finish_reasons", arrayValue={"values": [{}]}),
                attribute("llmmeter.extra", kvlistValue={"values": [attribute("a", intValue=1)]}),
                attribute("empty"),
            ],
            "status": {"code": code},
        }

    snake = json.loads(spans_line(span(2, 100, 0.5, "snake"), span(0, "-0", "1e-3", "snake")))
    snake["resource_spans"] = snake.pop("resourceSpans")
    snake["resource_spans"][0]["scope_spans"] = snake["resource_spans"][0].pop("scopeSpans")
    lines = [
        json.dumps(snake),
        spans_line(span("STATUS_CODE_ERROR", "50", "0.25", "camel")),
        spans_line(span("STATUS_CODE_OK", 10, 1, "camel")),
    ]
    path = write(tmp_path / "spans.json", lines)
    row = as_rows(report_json(capsys, path, "--by", "service"))["x"]
    assert (row["calls"], row["errors"], row["input_tokens"]) == (4, 2, 160)
    assert (row["cost_usd"], row["p50_ms"]) == (1.751, 250.0)


def test_pretty_printed_documents(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    """`jq .` of a collector's file: documents over many lines, one after another."""
    pretty = [json.dumps(json.loads(line), indent=2) for line in collector_lines(workload.spans)]
    path = tmp_path / "pretty.json"
    path.write_text("\n".join(pretty) + "\n")
    assert_matches(report_json(capsys, path), workload.spans, "model")


def test_metrics_and_logs_in_the_same_file_are_passed_over(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    """One file exporter in traces and metrics pipelines writes both to one file."""
    lines = [*metrics_lines(workload), *collector_lines(workload.spans)]
    lines.insert(2, json.dumps({"resourceLogs": []}))
    path = write(tmp_path / "all.json", lines)
    assert_matches(report_json(capsys, path), workload.spans, "model")


def test_spans_that_are_not_llmmeters_are_passed_over(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    http = [span for span in workload.spans if GEN_AI_OPERATION not in (span.attributes or {})]
    path = write(tmp_path / "http.json", collector_lines(http))
    code, out, err = run_report(capsys, path)
    assert (code, out) == (0, "")
    assert err == (
        f"llmmeter: note: no llmmeter spans in {path}: none of the {len(http)} spans read has "
        "gen_ai.operation.name\n"
    )


# --- malformed input ------------------------------------------------------------------------


def test_malformed_lines_are_counted_not_fatal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    good = collector_lines(workload.spans)
    bad_value = json.loads(good[0])
    bad_value["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][0]["value"] = {
        "intValue": "many"
    }
    truncated = good[1][: len(good[1]) // 2]
    lines = [
        good[0][:-1],  # the first line is fine up to its last brace
        *good[1:3],
        "[]",
        "",
        "   ",
        '{"hello": "world"}',
        json.dumps(bad_value),
        *good[3:],
        truncated,
    ]
    # the first line is broken, and its spans are lost: check against the rest
    counted = [span for batch in batches(workload.spans)[1:] for span in batch]
    path = write(tmp_path / "spans.json", lines)
    code, out, err = run_report(capsys, path, "--format", "json")
    assert code == 0
    non_blank = len(lines) - 2
    assert err == (
        f"llmmeter: warning: 5 of {non_blank} lines skipped: not OTLP JSON (first at "
        f"{path}:1: invalid JSON: Expecting ',' delimiter at column {len(good[0])})\n"
    )
    assert_matches(json.loads(out), counted, "model")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('"resourceSpans"', "a string, not an export request object"),
        ('{"resourceSpans": {}}', "resourceSpans is an object, not a list"),
        ('{"resourceSpans": [[]]}', "a resourceSpans entry is a list, not an object"),
        (spans_line(7), "a span is a number, not an object"),
        (
            spans_line({"startTimeUnixNano": "2", "endTimeUnixNano": "1"}),
            "a span ends before it starts",
        ),
        (spans_line({"startTimeUnixNano": "soon"}), "startTimeUnixNano is not an integer: 'soon'"),
        (spans_line({"attributes": [{"value": {}}]}), 'an attribute has no key: {"value": {}}'),
        (
            spans_line({"attributes": [attribute("a", boolValue="yes")]}),
            "boolValue of attribute 'a' is a string",
        ),
        (
            spans_line({"attributes": [attribute("n", intValue=1.5)]}),
            "intValue of attribute 'n' is not an integer: 1.5",
        ),
        ('{"traces": []}', "no resourceSpans (keys: traces)"),
    ],
)
def test_why_a_line_is_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload, line: str, reason: str
) -> None:
    path = write(tmp_path / "spans.json", [*collector_lines(workload.spans[:1]), line])
    code, _, err = run_report(capsys, path)
    assert code == 0
    assert err == (
        f"llmmeter: warning: 1 of 2 lines skipped: not OTLP JSON (first at {path}:2: {reason})\n"
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
        (
            spans_line({"attributes": [attribute("n", intValue="1" * 5000)]}),
            "intValue of attribute 'n' is out of the 64-bit range: '" + "1" * 39 + "...",
        ),
        (
            '{"resourceSpans": [], "n": ' + "1" * 5000 + "}",
            "invalid JSON: a number of more than 4300 digits",
        ),
        (
            spans_line({"startTimeUnixNano": str(1 << 64)}),
            "startTimeUnixNano is out of the 64-bit range: '18446744073709551616'",
        ),
        ('{"a\\r\\nb\\u001b[2J": 1}', "no resourceSpans (keys: a\\r\\nb\\x1b[2J)"),
    ],
)
def test_lines_that_broke_the_reader_are_skipped_like_any_other(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload, line: str, reason: str
) -> None:
    """Found by fuzzing (test_fuzz_cli_readers.py): each was a traceback or an output line
    split in two; now a skipped line with its reason, on one line."""
    path = write(tmp_path / "spans.json", [*collector_lines(workload.spans[:1]), line])
    code, _, err = run_report(capsys, path)
    assert code == 0
    assert err == (
        f"llmmeter: warning: 1 of 2 lines skipped: not OTLP JSON (first at {path}:2: {reason})\n"
    )


def test_numbers_no_float_holds_count_as_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """NaN or Infinity tokens or cost in a file: the call counts, the number does not."""
    ours = attribute(GEN_AI_OPERATION, stringValue="chat")
    spans = [
        {"attributes": [ours, attribute("gen_ai.usage.input_tokens", doubleValue=value),
                        attribute("gen_ai.usage.cost.amount", doubleValue=value),
                        attribute("gen_ai.usage.output_tokens", intValue="7")]}
        for value in ("NaN", "Infinity", "-Infinity")
    ]  # fmt: skip
    path = write(tmp_path / "spans.json", [spans_line(*spans)])
    total = report_json(capsys, path)["total"]
    assert (total["calls"], total["input_tokens"], total["output_tokens"]) == (3, 0, 21)
    assert (total["cost_usd"], total["unpriced_calls"]) == (0, 3)


def test_names_from_a_file_cannot_steer_the_terminal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ours = attribute(GEN_AI_OPERATION, stringValue="chat")
    model = attribute("gen_ai.request.model", stringValue="gpt\n4o\x1b[2J")
    path = write(tmp_path / "spans.json", [spans_line({"attributes": [ours, model]})])
    code, out, _ = run_report(capsys, path)
    assert code == 0
    assert "\x1b" not in out
    assert any(line.startswith("gpt\\n4o\\x1b[2J ") for line in out.splitlines()), out


def one_error_line(code: int, out: str, err: str) -> str:
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("llmmeter: error: "), err
    return err.removeprefix("llmmeter: error: ").rstrip("\n")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"2026-11-25 09:00:01 INFO started\n2026-11-25 09:00:02 INFO ready\n",
         "line 1: invalid JSON: Extra data at column 5"),
        (b"model,calls\ngpt-4o,3\n", "line 1: invalid JSON: Expecting value at column 1"),
        (b'[{"resourceSpans": []}]\n', "line 1: a list, not an export request object"),
        (b'{"name": "llmmeter", "version": "0.1.0"}\n',
         "line 1: no resourceSpans (keys: name, version)"),
        (b"\xff\xfe{\x00\n", "line 1: not UTF-8 text"),
        (b"\x00\x00\x01\x2c\x0a\xa2\x02\x0a\x9f\x01\n",
         "binary, like the file exporter's format: proto; use format: json"),
        (b'{\n  "resourceSpans": [\n    {"oops"}\n  ]\n}\n',
         "line 3: invalid JSON: Expecting ':' delimiter at column 12"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_otlp_json_is_one_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    message = one_error_line(*run_report(capsys, path))
    assert message == f"{path}: not OTLP JSON trace data ({why})"


def test_a_metrics_file_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    path = write(tmp_path / "metrics.json", metrics_lines(workload))
    message = one_error_line(*run_report(capsys, path))
    assert message == (
        f"{path}: not OTLP JSON trace data (line 1 holds OTLP metrics; put the file exporter "
        "in a traces pipeline)"
    )


def test_one_bad_file_among_good_ones_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    good = write(tmp_path / "spans.json", collector_lines(workload.spans))
    bad = tmp_path / "notes.md"
    bad.write_text("# Notes\n")
    message = one_error_line(*run_report(capsys, good, bad))
    assert message.startswith(f"{bad}: not OTLP JSON trace data (line 1: invalid JSON")


@pytest.mark.parametrize(
    ("name", "why"),
    [("missing.json", "No such file or directory"), (".", "Is a directory")],
)
def test_an_unreadable_file_is_one_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, why: str
) -> None:
    path = tmp_path / name
    code, out, err = run_report(capsys, path)
    assert one_error_line(code, out, err) in (
        f"cannot read {path}: {why}",
        f"cannot read {path}: {why.replace('Is a directory', 'Permission denied')}",
    )


def test_zstd_from_the_collector_is_one_error_with_a_way_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    native = tmp_path / "spans.json.zst"
    native.write_bytes(b"\x28\xb5\x2f\xfd\x04\x58\x00\x00")
    message = one_error_line(*run_report(capsys, native))
    assert message == (
        f"{native}: zstd-compressed (the file exporter's compression: zstd), which llmmeter "
        f"does not read; decompress it first: zstd -dc {native} | llmmeter report -"
    )
    framed = tmp_path / "old.json"
    framed.write_bytes(b"\x00\x00\x00\x20\x28\xb5\x2f\xfd\x04\x58")
    assert "length-prefixed frames" in one_error_line(*run_report(capsys, framed))


# --- gzip, stdin, empty input ---------------------------------------------------------------


def test_gzip(capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload) -> None:
    plain = write(tmp_path / "spans.json", collector_lines(workload.spans))
    packed = tmp_path / "spans.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert report_json(capsys, packed) == report_json(capsys, plain)
    assert_matches(report_json(capsys, packed), workload.spans, "model")


def test_broken_gzip_is_one_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, workload: Workload
) -> None:
    data = gzip.compress("\n".join(collector_lines(workload.spans)).encode())
    path = tmp_path / "spans.json.gz"
    path.write_bytes(data[: len(data) // 2])
    message = one_error_line(*run_report(capsys, path))
    assert message.startswith(f"cannot read {path}: Compressed file ended")


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))


def test_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    workload: Workload,
) -> None:
    data = "".join(f"{line}\n" for line in collector_lines(workload.spans)).encode()
    stdin(monkeypatch, data)
    code, out, err = run_report(capsys, "-", "--by", "task")
    assert (code, err) == (0, "")
    assert out.startswith(f"stdin: {len(workload.llm_spans)} calls, ")
    stdin(monkeypatch, gzip.compress(data))  # `cat spans.json.gz | llmmeter report -`
    assert_matches(report_json(capsys, "-"), workload.spans, "model")
    stdin(monkeypatch, b"not json\n")
    message = one_error_line(*run_report(capsys, "-"))
    assert message == (
        "<stdin>: not OTLP JSON trace data (line 1: invalid JSON: Expecting value at column 1)"
    )
    assert one_error_line(*run_report(capsys, "-", "-")) == "'-' (stdin) can be given once"


def test_stdin_among_files(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    workload: Workload,
) -> None:
    half = len(workload.spans) // 2
    path = write(tmp_path / "first.json", collector_lines(workload.spans[:half]))
    stdin(monkeypatch, "\n".join(collector_lines(workload.spans[half:])).encode())
    assert_matches(report_json(capsys, path, "-"), workload.spans, "model")


@pytest.mark.parametrize("content", [b"", b"\n\n", b'{"resourceSpans": []}\n'])
def test_empty_input_is_a_note(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "spans.json"
    path.write_bytes(content)
    code, out, err = run_report(capsys, path)
    assert (code, out, err) == (0, "", f"llmmeter: note: no spans in {path}\n")
    code, out, err = run_report(capsys, path, "--format", "json")
    assert (code, err) == (0, f"llmmeter: note: no spans in {path}\n")
    assert json.loads(out)["total"]["calls"] == 0
    code, out, _ = run_report(capsys, path, "--format", "csv")
    assert out.splitlines()[1].startswith("total,0,0,")


# --- the command line -----------------------------------------------------------------------


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_report(capsys, "--help")
    assert (code, err) == (0, "")
    assert out.startswith("usage: llmmeter report [-h] [--by {model,task,rule,service}]")
    assert "exporters:\n    file:\n      path: ./spans.json" in out
    assert main(["--help"]) == 0
    assert "    report    the demo's table" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: FILE (see 'llmmeter report --help')"),
        (
            ["x.json", "--by", "day"],
            "argument --by: invalid choice: 'day' (choose from 'model', 'task', 'rule', "
            "'service') (see 'llmmeter report --help')",
        ),
        (
            ["x.json", "--format", "xml"],
            "argument --format: invalid choice: 'xml' (choose from 'table', 'csv', 'json') "
            "(see 'llmmeter report --help')",
        ),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert one_error_line(*run_report(capsys, *argv)) == message


# --- docs/cli.md ----------------------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def report_section() -> str:
    text = DOCS.read_text()
    start = text.index("## `llmmeter report`")
    return text[start : text.index("\n## ", start + 1)]


def doc_examples() -> list[tuple[str, str]]:
    """(command line, shown output) of each example in the `llmmeter report` section."""
    found = re.findall(r"```text\n\$ llmmeter (report .*?)\n(.*?)```", report_section(), re.S)
    return [(command, shown) for command, shown in found]


def comparable(text: str, command: str) -> list[list[str]]:
    """Output as cells, with what changes from run to run (latency, times, the column of a
    line cut at a fixed length) blanked, and column widths ignored."""
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d to [\d:]+ UTC", "<when> UTC", text)
    text = re.sub(r"at column \d+\)", "at column <n>)", text)
    if "--format csv" in command:
        table = list(csv.reader(io.StringIO(text)))
        p50 = table[0].index("p50_ms")
        return [[*row[:p50], "<p50>", *row[p50 + 1 :]] for row in table]
    return [
        ["<rule>"] if set(line) == {"-"} else ["<ms>" if re.fullmatch(r"\d+ ms", cell) else cell
                                               for cell in re.split(r"\s{2,}", line.strip())]
        for line in text.splitlines()
    ]  # fmt: skip


def test_docs_have_report_examples() -> None:
    commands = [command for command, _ in doc_examples()]
    assert len(commands) >= 5
    assert "report spans.json" in commands


@pytest.mark.parametrize(("command", "shown"), doc_examples(), ids=lambda v: str(v)[:50])
def test_docs_show_real_output(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    workload: Workload,
    command: str,
    shown: str,
) -> None:
    """Each `llmmeter report` example prints what the page says (but for latency and time)."""
    lines = collector_lines(workload.spans)
    write(tmp_path / "spans.json", lines)
    # The collector stopped mid-line, inside a string (wherever the attributes put it).
    value = lines[3].index('"', lines[3].index(":", lines[3].index('"key"', 2900)))
    write(tmp_path / "cut.json", [*lines[:3], lines[3][: value + 2]])
    write(tmp_path / "metrics.json", metrics_lines(workload))
    monkeypatch.chdir(tmp_path)
    main(command.split())
    captured = capsys.readouterr()
    assert comparable(captured.err + captured.out, command) == comparable(shown, command)


def test_docs_collector_config_puts_the_file_exporter_in_a_traces_pipeline() -> None:
    import yaml

    block = re.search(r"```yaml\n(.*?)```", report_section(), re.S)
    assert block is not None
    config = yaml.safe_load(block[1])
    assert config["exporters"]["file"] == {"path": "./spans.json"}
    assert "file" in config["service"]["pipelines"]["traces"]["exporters"]


def test_files_after_options_are_files_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "a.json"
    empty.write_text("")
    missing = tmp_path / "later.json"
    code = main(["report", str(empty), "--by", "task", str(missing)])
    captured = capsys.readouterr()
    assert code == 2  # the file after the option was read as a file, and it is missing
    assert "unrecognized" not in captured.err
    assert "later.json" in captured.err
