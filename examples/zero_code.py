"""Zero-code: an ordinary openai app, instrumented by ``opentelemetry-instrument``.

This script does not import llmmeter. The ``opentelemetry-instrument`` launcher (from
``opentelemetry-instrumentation``, installed with llmmeter) finds llmmeter through its
``opentelemetry_instrumentor`` entry point and instruments the openai SDK before the
script runs; the ``OTEL_*`` variables say where spans and metrics go. No API key needed:
it starts llmmeter's built-in fake OpenAI server (see ``openai_endpoint`` below)::

    OTEL_SERVICE_NAME=zero-code-example LLMMETER_INJECT_STREAM_USAGE=always \\
    OTEL_TRACES_EXPORTER=console OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \\
        opentelemetry-instrument python examples/zero_code.py

(``LLMMETER_INJECT_STREAM_USAGE=always``: the fake server sends stream usage only when asked,
as OpenAI's API does; llmmeter asks OpenAI's own hosts by default, other servers when told.)

The spans print as JSON at exit. To send them to a collector instead, drop the three
``*_EXPORTER`` variables and set ``OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318``. To
route calls without touching the code, add ``LLMMETER_POLICY=policy.toml`` (rules keyed on
``tasks`` never match here: labelling calls needs ``llmmeter.task``, so an import). Against
the real API, add ``OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-...``.

Run as plain ``python examples/zero_code.py`` it works the same, without telemetry.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import openai

TICKET = "My order #4411 arrived with a cracked screen. I'd like a replacement, not a refund."


@contextlib.contextmanager
def openai_endpoint() -> Iterator[None]:
    """``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` when set; else a fake server started here.

    The SDK reads both variables itself, so ``openai.OpenAI()`` below is exactly what a
    production app writes. The fake server lives in ``llmmeter.testing``: importing it is
    the one mention of llmmeter in this file, it is only there so the example runs without
    an API key, and it instruments nothing (the launcher does that).
    """
    if os.environ.get("OPENAI_BASE_URL"):
        yield
        return
    from llmmeter.testing import FakeOpenAI

    with FakeOpenAI() as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ["OPENAI_API_KEY"] = "sk-fake"  # any key works; a real one stays home
        yield


def handle_ticket(client: openai.OpenAI) -> None:
    """A support bot: triage a ticket, stream a reply, then file a one-line summary."""
    triage = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Answer with one word: shipping, damage or billing."},
            {"role": "user", "content": TICKET},
        ],
    )
    print("triage:", triage.choices[0].message.content)

    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"Write a short, kind reply to: {TICKET}"}],
        stream=True,
    )
    reply = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    print("reply:", reply)

    summary = client.responses.create(model="gpt-4o-mini", input=f"Summarize: {TICKET}")
    print("summary:", summary.output_text)


def main() -> None:
    with openai_endpoint(), openai.OpenAI() as client:
        handle_ticket(client)
    if "opentelemetry.instrumentation.auto_instrumentation" not in sys.modules:
        # This ran as plain `python`, not under the launcher: nothing was instrumented.
        print(
            "no telemetry: run it under opentelemetry-instrument (see the docstring)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
