"""Quickstart: one line instruments the openai SDK; spans print to the console.

Runs against llmmeter's built-in fake OpenAI server, so it needs no API key:

    python examples/quickstart.py

Against the real API (a fraction of a cent), point the SDK at it:

    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... python examples/quickstart.py

``OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318`` with ``OTEL_TRACES_EXPORTER=otlp`` sends
the spans to a collector instead of the console.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import llmmeter


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


def main() -> None:
    # Spans and metrics to the console; in production leave these unset for OTLP.
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "console")
    os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
    os.environ.setdefault("OTEL_SERVICE_NAME", "llmmeter-quickstart")
    if not os.environ.get("OPENAI_BASE_URL"):
        # The fake server started below sends stream usage only when asked, as OpenAI's API
        # does; llmmeter asks OpenAI's own hosts by default, and other servers when told to.
        os.environ.setdefault("LLMMETER_INJECT_STREAM_USAGE", "always")
    llmmeter.instrument()

    import openai  # imported after instrument() on purpose: order does not matter

    with openai_endpoint():
        client = openai.OpenAI()
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
