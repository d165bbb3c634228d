"""To a collector: spans and metrics over OTLP/HTTP, configured by the standard variables.

``llmmeter.instrument()`` with no providers of your own builds them from the ``OTEL_*``
variables: here ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://localhost:4318``) and
``OTEL_SERVICE_NAME`` (default ``llmmeter-examples``). The calls are labelled with
``llmmeter.task`` and routed by ``routing_policy.toml``, so the cost, savings and policy
panels of the dashboard have something to show.

Start the operations kit in ``collector-config/`` (OpenTelemetry Collector, Jaeger,
Prometheus and Grafana with the llmmeter dashboard; see collector-config/README.md and
docs/operations.md), then run the example. No API key needed: it starts llmmeter's
built-in fake OpenAI server::

    docker compose -f collector-config/compose.yaml up -d
    python examples/to_collector.py

Traces are then in Jaeger (http://localhost:16686, service ``llmmeter-examples``) and
metrics in Prometheus (http://localhost:9090, e.g. ``llmmeter_cost_usd_total``) and
Grafana (http://localhost:3000). Any OTLP/HTTP endpoint works, for example Phoenix
(``OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:6006 OTEL_METRICS_EXPORTER=none``; it
takes traces only). With no collector listening, the calls still succeed: llmmeter logs
one warning per signal, and the script exits once the exports give up (after
``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default, per signal). Against the real API, add ``OPENAI_BASE_URL=https://api.openai.com/v1
OPENAI_API_KEY=sk-...``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import llmmeter

POLICY = Path(__file__).with_name("routing_policy.toml")

# (task label, model, prompt)
CALLS = [
    ("classify", "gpt-4o", "Classify the sentiment: 'Fast delivery, but the box was damaged.'"),
    ("tagging", "gpt-4o", "Suggest three tags for a recipe of lemon risotto."),
    ("math", "gpt-4o", "What is 15% of 2,340?"),
    ("summarize", "gpt-4o", "Summarize: the meeting moved to Friday at 10 in room B."),
    ("chat", "gpt-4o-mini", "Say hello in Italian."),
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
        for task, model, prompt in CALLS:
            with llmmeter.task(task):
                reply = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": prompt}]
                )
            print(f"{task:<10} asked for {model:<12} answered by {reply.model}")


def main() -> None:
    # The standard variables; set here only as defaults, so the environment still wins.
    os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
    os.environ.setdefault("OTEL_SERVICE_NAME", "llmmeter-examples")
    llmmeter.instrument(policy=POLICY)  # providers and OTLP exporters built from OTEL_*
    with openai_endpoint():
        run_calls()

    # A short script loses nothing without this (the SDK flushes at exit); flushing here
    # makes the export happen before the line below prints.
    from opentelemetry import metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush()
    endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    service = os.environ["OTEL_SERVICE_NAME"]
    print(
        f"Spans and metrics of {len(CALLS)} calls exported to {endpoint} (service {service});"
        " a failed export is logged as a warning above."
    )


if __name__ == "__main__":
    main()
