"""Routing with a policy file: easy calls go to gpt-4o-mini, the code still asks for gpt-4o.

The rules are in ``routing_policy.toml`` next to this script: classification and tagging
are sent to gpt-4o-mini, math stays on gpt-4o (no rule matches it), and a shadow rule
only reports what sending summaries to gpt-4o-mini would save. Every call below asks for
gpt-4o and is labelled with ``llmmeter.task``; the script then reads the spans back and
prints which model answered each call and what routing saved.

No API key needed: it starts llmmeter's built-in fake OpenAI server::

    python examples/routing_policy.py

Against the real API (a few cents at most)::

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \\
        python examples/routing_policy.py

In your own application it is one line, ``llmmeter.instrument(policy="policy.toml")`` (or
``LLMMETER_POLICY=policy.toml``); the spans go to your exporters instead of memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter

POLICY = Path(__file__).with_name("routing_policy.toml")

REVIEW = "Great battery life, but the screen scratches far too easily."
ARTICLE = (
    "The city council approved the new cycling plan on Tuesday. It adds 40 km of protected "
    "lanes over three years, funded by parking fees, and closes two central streets to cars "
    "on Sundays. Shop owners asked for a review after the first year."
)

# (task label, API, prompt): every call asks for gpt-4o.
CALLS = [
    ("classify", "chat", f"Classify the sentiment as positive, negative or mixed: {REVIEW}"),
    ("classify", "chat", "Is this e-mail spam? Answer yes or no: 'You won a free cruise!'"),
    ("tagging", "responses", f"Suggest three short tags for this article: {ARTICLE}"),
    ("math", "chat", "A train leaves at 9:40 and arrives at 13:05. How long is the trip?"),
    ("summarize", "chat", f"Summarize in one sentence: {ARTICLE}"),
]


@contextlib.contextmanager
def openai_endpoint() -> Iterator[None]:
    """``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` when set; else a fake server started here.

    The SDK reads both variables itself, so the code below is production code:
    ``openai.OpenAI()``. ``llmmeter.testing`` is only needed for the fake server.
    """
    if os.environ.get("OPENAI_BASE_URL"):
        yield
        return
    from llmmeter.testing import FakeOpenAI

    with FakeOpenAI() as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ["OPENAI_API_KEY"] = "sk-fake"  # any key works; a real one stays home
        yield


def run_calls() -> None:
    import openai

    with openai.OpenAI() as client:
        for task, api, prompt in CALLS:
            with llmmeter.task(task):
                if api == "chat":
                    client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": prompt}]
                    )
                else:
                    client.responses.create(model="gpt-4o", input=prompt)


def dollars(value: Any) -> str:
    return "-" if value is None else f"${value:.6f}"


def report(exporter: InMemorySpanExporter) -> None:
    """One line per span, then the totals: everything here is read from span attributes."""
    spans = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
    row = "{:<10} {:<10} {:<24} {:<23} {:<7} {:>10} {:>10}"
    print(row.format("task", "asked for", "answered by", "rule", "action", "cost", "saved"))
    routed = 0
    routed_cost = routed_saved = shadow_saved = 0.0
    for span in spans:
        attrs = span.attributes or {}
        action = attrs.get("llmmeter.policy.action")
        cost = float(attrs.get("gen_ai.usage.cost.amount", 0.0))
        saved = attrs.get("llmmeter.policy.savings")
        asked = attrs.get("llmmeter.policy.original_model", attrs.get("gen_ai.request.model"))
        print(
            row.format(
                str(attrs.get("llmmeter.task")),
                str(asked),
                str(attrs.get("gen_ai.response.model")),
                str(attrs.get("llmmeter.policy.rule", "-")),
                str(action or "-"),
                dollars(cost),
                dollars(saved),
            )
        )
        if action == "route" and saved is not None:
            routed += 1
            routed_cost += cost
            routed_saved += float(saved)
        elif action == "shadow" and saved is not None:
            shadow_saved += float(saved)
    share = routed_saved / (routed_cost + routed_saved) if routed_saved else 0.0
    print()
    print(
        f"Routing saved {dollars(routed_saved)} on {routed} calls: {share:.0%} of what they"
        " would have cost on gpt-4o."
    )
    print(f"The shadow rule would save {dollars(shadow_saved)} more if it were enforced.")


def main() -> None:
    # Spans into memory so this script can read them; metrics are kept but not exported.
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    llmmeter.instrument(
        policy=POLICY, tracer_provider=tracer_provider, meter_provider=MeterProvider()
    )
    with openai_endpoint():
        run_calls()
    report(exporter)


if __name__ == "__main__":
    main()
