"""No credential leaves a real process: every shape of the corpus planted everywhere it can
enter (client keys, a base URL's userinfo, query and headers, the OTLP endpoints' userinfo,
query and headers, server errors quoting all of them), then the OTLP bytes a collector
received and everything the process wrote to stderr are searched for each one.

The app runs in a subprocess with llmmeter's own providers (OTLP/HTTP from ``OTEL_*``), with
llmmeter's, OpenTelemetry's and urllib3's loggers at DEBUG, so that whatever they would print
is printed. The application's own HTTP client (httpx) logs its request URLs as given,
credentials included: that is the application's logging, left at WARNING here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmmeter.testing import FakeOpenAI
from tests.credentials import (
    AZURE_KEY,
    BEARER,
    ECHO,
    KEYS,
    OTHER_KEY,
    QUERY,
    QUERY_STRING,
    URL_PASSWORD,
    URL_USER,
    leaks,
    leaks_in_bytes,
)

from .test_bootstrap import Collector, _attributes, collector  # noqa: F401  (OTLP receiver)

PROMPT = "Summarise the quokka-4417 merger memo"

APP = """
import json, logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(levelname)s %(name)s %(message)s")
for name in ("llmmeter", "opentelemetry", "urllib3"):
    logging.getLogger(name).setLevel(logging.DEBUG)
import llmmeter, openai
llmmeter.instrument()
plant = json.loads(os.environ["PLANT"])
messages = [{"role": "user", "content": plant["prompt"]}]
for key in plant["keys"]:
    with openai.OpenAI(base_url=plant["guarded"], api_key=key, max_retries=0) as wrong:
        try:
            wrong.chat.completions.create(model="gpt-4o-mini", messages=messages)
        except openai.AuthenticationError:
            print("REJECTED", flush=True)
with openai.OpenAI(
    base_url=plant["base_url"], api_key=plant["keys"][0], max_retries=0,
    default_query=plant["query"], default_headers=plant["headers"],
) as client:
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    calls = [
        lambda: client.chat.completions.create(model="gpt-4o", messages=messages),
        lambda: list(client.chat.completions.create(
            model="gpt-4o", messages=messages, stream=True)),
        lambda: client.responses.create(model="gpt-4o", input=plant["prompt"]),
        lambda: client.embeddings.create(model="text-embedding-3-small", input="x"),
    ]
    for call in calls:
        try:
            call()
        except openai.APIStatusError:
            print("FAILED-AS-SCRIPTED", flush=True)
print("CALLS-DONE", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def guarded() -> Iterator[FakeOpenAI]:
    """A server that checks keys: a wrong one is answered 401, echoing it masked."""
    with FakeOpenAI(api_key="sk-the-right-key") as server:
        yield server


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@", 1)


def _run(
    fake: FakeOpenAI, guarded: FakeOpenAI, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The app, with server errors quoting every credential queued for its failing calls."""
    message = f"{ECHO}; prompt {PROMPT!r}"
    for status, model in ((400, "gpt-4o"), (500, "gpt-4o"), (401, "gpt-4o")):
        fake.fail_next(status, message=message, model=model)
    fake.fail_next(429, message=message, model="text-embedding-3-small")
    plant = {
        "prompt": PROMPT,
        "keys": list(KEYS),
        "guarded": guarded.base_url,
        "base_url": _with_credentials(fake.base_url),
        "query": QUERY,
        "headers": {"api-key": AZURE_KEY, "x-api-key": OTHER_KEY},
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(APP)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PLANT": json.dumps(plant),
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{BEARER},api-key={AZURE_KEY}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
            "OTEL_METRIC_EXPORT_INTERVAL": "60000",  # metrics leave at exit only
            **env,
        },
    )


def _exception_messages(received: Collector) -> list[str]:
    messages = []
    for request in received.received:
        if not request.path.startswith("/v1/traces"):
            continue
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in export.resource_spans:
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    for event in span.events:
                        if event.name == "exception":
                            messages.append(_attributes(event.attributes)["exception.message"])
    return messages


@pytest.mark.parametrize("content", [False, True], ids=["content-off", "content-on"])
def test_no_credential_reaches_the_otlp_bytes_or_stderr(
    fake: FakeOpenAI,
    guarded: FakeOpenAI,
    collector: Collector,  # noqa: F811
    content: bool,
) -> None:
    """Spans go to a collector whose URL carries userinfo and a signed query; metrics go to
    an unreachable one, so that its failure (reason: the client's error, naming the URL with
    its query) is reported on stderr."""
    traces = f"http://127.0.0.1:{collector.port}/v1/traces?{QUERY_STRING}"
    metrics = f"http://127.0.0.1:{_free_port()}/v1/metrics?{QUERY_STRING}"
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": _with_credentials(traces),
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": _with_credentials(metrics),
    }
    if content:
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    done = _run(fake, guarded, env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.count("REJECTED") == len(KEYS)
    assert done.stdout.count("FAILED-AS-SCRIPTED") == 4
    assert "CALLS-DONE" in done.stdout
    # Not vacuous: the collector got the spans, with their errors, and stderr has the
    # report of the unreachable collector, naming it.
    messages = _exception_messages(collector)
    assert len(messages) == len(KEYS) + 4
    assert any("upstream refused" in m for m in messages) is content
    assert "exporting metrics to http://collector:***@127.0.0.1:" in done.stderr
    assert "/v1/metrics?api-key=[REDACTED]&key=[REDACTED]" in done.stderr
    for request in collector.received:
        assert leaks_in_bytes(request.body) == [], request.path
    assert leaks(done.stderr) == [], done.stderr


def test_no_credential_of_a_grpc_collector_url_reaches_stderr(
    fake: FakeOpenAI, guarded: FakeOpenAI
) -> None:
    """The gRPC exporter names the endpoint, userinfo included, in its own log lines."""
    endpoint = _with_credentials(f"http://127.0.0.1:{_free_port()}")
    done = _run(
        fake,
        guarded,
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "CALLS-DONE" in done.stdout
    assert "exporting spans to http://collector:***@127.0.0.1:" in done.stderr
    assert leaks(done.stderr) == [], done.stderr
