"""``llmmeter demo``: what llmmeter does, in one command, with no API key and no servers.

It starts the built-in fake OpenAI server on loopback, instruments the SDK with a bundled
routing policy (classification, tagging and short summaries to gpt-4o-mini; math and code
stay on gpt-4o), runs about fifty realistic calls (sync, async and streaming; Chat
Completions, Responses and embeddings), and prints what the spans say: calls, tokens, cost,
latency, routed calls and savings by model and by task, and a day of such traffic priced
with and without the policy. ``--shadow`` runs the policy in shadow mode (a what-if);
``--real`` sends the same calls to the real API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Final

from . import progress
from .common import UsageError, exit_codes
from .summary import (
    GROUPINGS,
    SpanRecord,
    counted,
    render_projection,
    render_table,
    summarize,
)

DEMO_POLICY: Final = """\
# The demo's routing policy (print it with: llmmeter demo --print-policy).
mode = "enforce"
fallback = "on-error"

[[rules]]
name = "classify-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
tasks = ["classify", "tagging"]

[[rules]]
name = "short-summaries-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
tasks = ["summarize"]
max_input_tokens = 600

# Math and code stay on gpt-4o: no rule names those tasks.
"""

REVIEWS: Final = (
    "The hiking boots arrived two days early and fit perfectly out of the box.",
    "Zipper broke on the first trip. Customer service never answered my email.",
    "It's a tent. It keeps the rain out. Nothing more to say.",
    "Absolutely love this jacket, warm without being bulky, and the hood is great.",
    "The stove works but the igniter failed after a week of use.",
    "Returned it: the sleeping bag was much smaller than the photos suggested.",
    "Great value for the price, would buy again for my kids.",
    "Shipping took three weeks and the box was crushed, though the pack was fine.",
    "Best headlamp I have owned; the battery lasts the whole weekend.",
    "Meh. The colour is nice but the fabric feels cheap.",
    "Perfect for day hikes, lightweight and the hip belt is comfortable.",
    "Arrived with a missing pole, had to wait a week for a replacement.",
)
TICKETS: Final = (
    "I was charged twice for order 1182, please refund one of the payments.",
    "Where is my parcel? Tracking has not updated since Monday.",
    "How do I return a tent I bought as a gift?",
    "I can't log in to my account after resetting the password.",
    "The app crashes when I open my order history on Android.",
    "Can I change the delivery address for an order that has already shipped?",
    "The discount code from your newsletter does not work at checkout.",
    "I'd like to exchange my boots for a larger size.",
    "Why was my card declined when the bank says everything is fine?",
    "Please delete my account and all my data.",
)
_PARAGRAPH: Final = (
    "Northwind Outfitters' quarterly review shows online orders up eighteen percent, driven "
    "by the new lightweight tent line and a spring campaign aimed at first-time campers. "
    "Returns fell after the size guide was redesigned, but shipping complaints rose where the "
    "regional carrier changed. The team proposes a loyalty programme, a repair service for "
    "packs and boots, and moving customer support hours later in the evening. "
)
ARTICLES: Final = tuple(_PARAGRAPH * n for n in (1, 1, 2, 1, 2, 1, 1, 8, 9, 10))
"""Seven short documents (summarised on gpt-4o-mini) and three long ones (stay on gpt-4o)."""
MATH: Final = (
    "A train leaves at 9:40 and arrives at 13:05. How long is the journey in minutes?",
    "Solve for x: 3x + 7 = 2x - 5.",
    "What is the probability of two sixes in a row with a fair die?",
    "A tent costs $240 after a 20% discount. What was the original price?",
    "Integrate x * e^x from 0 to 1.",
    "How many ways can 5 hikers stand in a line?",
    "Is 221 a prime number? Show the factorisation if not.",
    "A pack weighs 11 kg plus 0.8 kg of water per day. What does it weigh on day 4?",
)
CODE: Final = (
    "Write a Python function that parses ISO 8601 durations like PT1H30M.",
    "Refactor this loop into a list comprehension: for x in xs: if x > 0: out.append(x*2)",
    "Write a SQL query for the ten customers with the most returns last year.",
    "Explain and fix: TypeError: 'NoneType' object is not subscriptable in my parser.",
    "Write a bash one-liner that counts unique IPs in an nginx access log.",
    "Add type hints to: def merge(a, b): return {**a, **b}",
    "Write a pytest test for a function that rounds prices to the nearest 5 cents.",
    "Convert this callback-based Node.js code to async/await.",
)
REPLIES: Final = {
    "classify": "positive",
    "tagging": "shipping, returns",
    "summarize": (
        "Online orders grew eighteen percent on the new tent line and a spring campaign. The "
        "team proposes a loyalty programme, repairs and later support hours."
    ),
    "math": (
        "First convert both times to minutes after midnight: 9:40 is 580 and 13:05 is 785. "
        "Subtract to get the difference: 785 minus 580 is 205. Check the result by adding 205 "
        "minutes to 9:40, which gives 13:05. The journey therefore takes 205 minutes, that is "
        "3 hours and 25 minutes."
    ),
    "code": (
        "Here is a small parser using a regular expression:\n\n"
        "import re\n\n"
        "_DURATION = re.compile(r'^PT(?:(\\d+)H)?(?:(\\d+)M)?(?:(\\d+)S)?$')\n\n"
        "def parse_duration(text: str) -> int:\n"
        "    match = _DURATION.match(text)\n"
        "    if not match:\n"
        "        raise ValueError(f'not an ISO 8601 duration: {text!r}')\n"
        "    hours, minutes, seconds = (int(g or 0) for g in match.groups())\n"
        "    return hours * 3600 + minutes * 60 + seconds\n\n"
        "It returns seconds and raises ValueError on anything it does not understand."
    ),
    "search": "",
}
LATENCY: Final = {"gpt-4o": 0.12, "gpt-4o-mini": 0.05, "text-embedding-3-small": 0.02}
"""Seconds before a fake answer (streams: before the first chunk), per model, so latency
columns show the difference a smaller model makes."""
CHUNK_DELAY: Final = 0.004


@contextmanager
def _fake_server() -> Iterator[Any]:
    from llmmeter.testing import FakeOpenAI

    with FakeOpenAI() as server:
        for model, seconds in LATENCY.items():
            server.set_latency(
                model=model, response=seconds, first_chunk=seconds, per_chunk=CHUNK_DELAY
            )
        yield server


def _messages(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _workload(
    client: Any, async_client: Callable[[], Any], reply: Callable[[str], None], step: Any
) -> None:
    """About fifty calls: sync, async and streamed; Chat Completions, Responses, embeddings."""
    import llmmeter

    reply("classify")
    with llmmeter.task("classify"):
        for review in REVIEWS:
            client.chat.completions.create(
                model="gpt-4o",
                messages=_messages(
                    "Classify the sentiment of the review as positive, negative or neutral. "
                    "Answer with one word.",
                    review,
                ),
            )
            step()

    reply("tagging")

    async def tag_all() -> None:
        async def tag(ticket: str) -> None:  # one event loop per asyncio.run, one client
            with llmmeter.task("tagging"):
                await aclient.responses.create(
                    model="gpt-4o",
                    instructions="Tag the support ticket with up to three of: billing, "
                    "shipping, returns, account, bug, privacy. Answer with the tags only.",
                    input=ticket,
                )
            step()

        async with async_client() as aclient:
            await asyncio.gather(*(tag(ticket) for ticket in TICKETS))

    asyncio.run(tag_all())

    reply("summarize")
    with llmmeter.task("summarize"):
        for article in ARTICLES:
            stream = client.chat.completions.create(
                model="gpt-4o",
                messages=_messages("Summarise the document in two sentences.", article),
                stream=True,
            )
            for _ in stream:
                pass
            step()

    reply("math")
    with llmmeter.task("math"):
        for problem in MATH:
            client.chat.completions.create(
                model="gpt-4o",
                messages=_messages("Solve the problem step by step.", problem),
            )
            step()

    reply("code")

    async def code_all() -> None:
        async def code(task: str) -> None:
            with llmmeter.task("code"):
                stream = await aclient.chat.completions.create(
                    model="gpt-4o",
                    messages=_messages("You are a senior software engineer.", task),
                    stream=True,
                )
                async for _ in stream:
                    pass
            step()

        async with async_client() as aclient:
            await asyncio.gather(*(code(task) for task in CODE))

    asyncio.run(code_all())

    with llmmeter.task("search"):
        client.embeddings.create(model="text-embedding-3-small", input=list(REVIEWS))
        step()
        client.embeddings.create(model="text-embedding-3-small", input=list(TICKETS))
        step()


CALLS: Final = len(REVIEWS) + len(TICKETS) + len(ARTICLES) + len(MATH) + len(CODE) + 2


def _providers(memory: Any) -> tuple[Any, Any, bool]:
    """Spans to memory for the table; with OTEL_EXPORTER_OTLP_ENDPOINT set, also to the
    collector the standard variables describe (metrics too, unless OTEL_METRICS_EXPORTER
    says otherwise)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from llmmeter._bootstrap import resolve_providers

        os.environ.setdefault("OTEL_SERVICE_NAME", "llmmeter-demo")
        tracer_provider, meter_provider, _ = resolve_providers(None, None)
        if isinstance(tracer_provider, TracerProvider):
            tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
            return tracer_provider, meter_provider, True
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    return tracer_provider, MeterProvider(), False


def run_demo(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``llmmeter demo``: the workload, then the tables."""
    if args.print_policy:
        out(DEMO_POLICY.rstrip())
        return 0
    if args.html is not None:
        from .charts import load

        load()  # a missing extra is said before the calls, not after
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import llmmeter
    from llmmeter._rules import RulePolicy

    real = bool(args.real)
    if real and not os.environ.get("OPENAI_API_KEY"):
        raise UsageError("--real needs OPENAI_API_KEY (the demo then calls the real API)")
    mode = "shadow" if args.shadow else "enforce"
    policy = RulePolicy.from_dict(tomllib.loads(DEMO_POLICY), mode=mode, source="the demo policy")
    memory = InMemorySpanExporter()
    tracer_provider, meter_provider, exporting = _providers(memory)
    llmmeter.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        policy=policy,
        # The fake server sends stream usage only when asked, as OpenAI's API does; llmmeter
        # asks OpenAI's own hosts by default, and other servers when told to.
        inject_stream_usage=True,
    )
    try:
        import openai

        where = "the real OpenAI API" if real else "llmmeter's built-in fake OpenAI server"
        # With --json, stdout holds the document alone: the introduction goes to stderr.
        _introduce(_stderr if args.json else out, where, mode, real=real, exporting=exporting)
        steps = progress.Steps("demo", "calls", CALLS, progress.Status(delay=0.0))
        with _server_or_none(real) as server:
            base = {} if server is None else {"base_url": server.base_url, "api_key": "sk-demo"}

            def reply(task: str) -> None:
                if server is not None:
                    server.reply = REPLIES[task]

            with openai.OpenAI(max_retries=0, **base) as client:
                _workload(
                    client,
                    lambda: openai.AsyncOpenAI(max_retries=0, **base),
                    reply,
                    steps.step,
                )
            steps.finish(" done")
    finally:
        llmmeter.uninstrument()
        if exporting:
            tracer_provider.force_flush()
            if meter_provider is not None:
                meter_provider.force_flush()
    spans = memory.get_finished_spans()
    if args.json:
        out(json.dumps(_document(args, spans, mode), indent=2))
    else:
        _print_span(spans, out)
        _print_results(args, [_record(span) for span in spans], out)
    if args.html is not None:
        _write_html(args.html, spans, policy, where, mode)
    return 0


def _introduce(
    intro: Callable[[str], None], where: str, mode: str, *, real: bool, exporting: bool
) -> None:
    intro(f"llmmeter demo: {CALLS} calls to {where}, routing policy in {mode} mode")
    if not real:
        intro("  (no API key, nothing leaves this machine; answers are canned, tokens and")
        intro("   prices are real: the same counts and rates your bill would use)")
    if exporting:
        intro("  spans and metrics also go to the collector in OTEL_EXPORTER_OTLP_ENDPOINT")


def _write_html(path: str, spans: Any, policy: Any, where: str, mode: str) -> None:
    from . import html_report  # matplotlib, an optional extra, only when asked for

    records = [record for record in map(_record, spans) if record is not None]
    total = summarize(records).total
    source = f"llmmeter demo: {counted(total)} to {where}, routing policy in {mode} mode"
    targets = {rule.name: rule.agreement_target for rule in policy.rules}
    size = html_report.write(path, html_report.build(records, source=source, targets=targets))
    print(f"llmmeter: wrote {path} ({size:,} bytes)", file=sys.stderr)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _chosen(spans: Any) -> Any:
    """The span to show: a routed call if there is one."""
    from llmmeter._semconv import LLMMETER_POLICY_ACTION

    return next((s for s in spans if (s.attributes or {}).get(LLMMETER_POLICY_ACTION)), None) or (
        spans[0] if spans else None
    )


def _document(args: argparse.Namespace, spans: Any, mode: str) -> dict[str, Any]:
    """``demo --json``: what the text shows, as data (the tables as ``report --json``)."""
    records = [record for record in map(_record, spans) if record is not None]
    chosen = _chosen(spans)
    span = None
    if chosen is not None:
        attributes = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in sorted((chosen.attributes or {}).items())
        }
        span = {"name": chosen.name, "attributes": attributes}
    summaries = [summarize(records, by=by) for by in args.by]
    projection = summaries[-1].as_dict().get("projection") if summaries else None
    total = summarize(records).total  # the same count as the text and the page
    return {
        "calls": total.calls,
        "evaluation_requests": total.evaluations,
        "mode": mode,
        "real": bool(args.real),
        "span": span,
        "tables": [
            {key: value for key, value in summary.as_dict().items() if key != "projection"}
            for summary in summaries
        ],
        "projection": projection,
    }


def _print_span(spans: Any, out: Callable[[str], None]) -> None:
    """One span as a trace backend receives it: a routed call if there is one."""
    chosen = _chosen(spans)
    if chosen is None:
        return
    out("")
    out(f"One of the {len(spans)} spans, as a trace backend receives it: {chosen.name!r}")
    for key, value in sorted((chosen.attributes or {}).items()):
        out(f"  {key} = {trace_value(value)}")


def trace_value(value: Any) -> str:
    """An attribute value as a trace UI shows it: strings quoted, ``true``/``false``, arrays
    as ``["stop"]``, and floats to 10 significant digits in plain decimals, so a cost reads
    ``0.00000825``, not ``8.249999999999999e-06``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = format(Decimal(f"{value:.10g}"), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Sequence):
        return "[" + ", ".join(trace_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _print_results(
    args: argparse.Namespace, found: list[SpanRecord | None], out: Callable[[str], None]
) -> None:
    records = [record for record in found if record is not None]
    summary = None
    for by in args.by:
        summary = summarize(records, by=by)
        out("")
        out(f"By {by}:")
        for line in render_table(summary, projection=False):
            out(line)
    if summary is not None and summary.projection is not None:
        out("")
        for line in render_projection(summary.projection):
            out(line)
    out("")
    if args.shadow:
        out("Shadow mode: every call went out as written; 'saved' shows what enforcing the")
        out("policy would save. Run `llmmeter demo` to route for real.")
    else:
        out("Routed calls went to gpt-4o-mini, priced from the actual tokens at both models;")
        out("math and code stayed on gpt-4o. `llmmeter demo --shadow` shows the what-if, and")
        out("`llmmeter demo --print-policy` the rules. See docs/getting-started.md.")


@contextmanager
def _server_or_none(real: bool) -> Iterator[Any]:
    if real:
        yield None
        return
    with _fake_server() as server:
        yield server


def _record(span: Any) -> SpanRecord | None:
    from opentelemetry.trace import StatusCode

    resource = getattr(span, "resource", None)
    service = resource.attributes.get("service.name") if resource is not None else None
    start, end = span.start_time or 0, span.end_time or 0
    return SpanRecord.from_attributes(
        dict(span.attributes or {}),
        duration=(end - start) / 1e9,
        error=span.status.status_code is StatusCode.ERROR,
        service=service if isinstance(service, str) else None,
        start=start / 1e9,
    )


def add_demo_parser(commands: Any) -> None:
    """``llmmeter demo``."""
    demo = commands.add_parser(
        "demo",
        help="see what llmmeter does: ~50 calls to a built-in fake OpenAI server, cost and savings",
        description=(
            "Run about fifty realistic OpenAI calls (sync, async, streaming; chat,\n"
            "responses, embeddings) against llmmeter's built-in fake server, with a routing\n"
            "policy that sends classification, tagging and short summaries to gpt-4o-mini,\n"
            "then print calls, tokens, cost, latency, routed calls and savings by model and\n"
            "by task, and a day of such traffic with and without the policy. No API key.\n"
            "With OTEL_EXPORTER_OTLP_ENDPOINT set, spans and metrics also go there."
        ),
        epilog=exit_codes((0, "the demo ran")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--shadow", action="store_true", help="run the policy in shadow mode (a what-if)"
    )
    demo.add_argument(
        "--real",
        action="store_true",
        help="call the real OpenAI API (needs OPENAI_API_KEY; costs a few cents)",
    )
    demo.add_argument(
        "--by",
        nargs="+",
        choices=GROUPINGS,
        default=["model", "task"],
        help="tables to print (default: model task)",
    )
    demo.add_argument("--print-policy", action="store_true", help="print the demo's policy file")
    demo.add_argument(
        "--json",
        action="store_true",
        help="one JSON document: the span shown, each table's rows and the projection",
    )
    demo.add_argument(
        "--html",
        metavar="PAGE",
        help="also write one self-contained HTML page with charts to PAGE "
        "(needs: pip install 'llmmeter[report]')",
    )
    demo.set_defaults(handler=run_demo, prog=demo.prog)
