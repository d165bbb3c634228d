"""Quickstart: one line instruments the openai SDK; spans print to the console.

Runs against llmmeter's built-in fake OpenAI server, so it needs no API key:

    python examples/quickstart.py

Against the real API, drop the fake server and the ``base_url``; set ``OPENAI_API_KEY`` and
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_TRACES_EXPORTER=console``) instead.
"""

from __future__ import annotations

import os

import llmmeter
from llmmeter.testing import FakeOpenAI


def main() -> None:
    # Spans and metrics to the console; in production leave these unset for OTLP.
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "console")
    os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
    os.environ.setdefault("OTEL_SERVICE_NAME", "llmmeter-quickstart")
    llmmeter.instrument()

    import openai  # imported after instrument() on purpose: order does not matter

    with FakeOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-fake")
        with llmmeter.task("greet"):
            reply = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Say hello in French"}]
            )
        print("chat:", reply.choices[0].message.content)

        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Count to five"}],
            stream=True,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        print("stream:", text)

        response = client.responses.create(model="gpt-4o-mini", input="Name a colour")
        print("responses:", response.output_text)

        vectors = client.embeddings.create(model="text-embedding-3-small", input="hello")
        print("embeddings:", len(vectors.data[0].embedding), "dimensions")

    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush()


if __name__ == "__main__":
    main()
