"""End to end with a real trace backend: Arize Phoenix.

An instrumented app runs in its own process, configured through ``OTEL_*`` and ``LLMMETER_*``
variables, as a user would run it; it sets up its own OpenTelemetry tracing *after*
``llmmeter.instrument()``, and llmmeter's spans must join its pipeline. It exports over OTLP
(HTTP/protobuf, then gRPC) to a Phoenix that ``.ci/phoenix.sh`` installed and started, and
exits without flushing: the SDK's exit-time shutdown must deliver every span. (The README's
demo, exported by llmmeter's own providers built from ``OTEL_*``, is the second test.) The
test then reads the spans back through Phoenix's REST API (``GET /v1/projects/{project}/spans``)
and checks what a user would look at there.

What Phoenix keeps of an OTLP span (seen in arize-phoenix 20.26): name, ids and parent id,
times, status, events and the span attributes (returned flattened again, with dotted keys).
It does not keep the OTLP span kind (``CLIENT``) nor any resource attribute: it reads
``openinference.project.name`` from the resource to pick the project and drops the rest,
``service.name`` included. Its ``span_kind`` is the OpenInference kind, which it derives from
our ``gen_ai.operation.name`` (``chat`` -> ``LLM``), and it adds OpenInference copies of the
GenAI attributes (``llm.token_count.prompt`` from ``gen_ai.usage.input_tokens``, ...).

Set ``LLMMETER_TEST_PHOENIX_URL`` (``.ci/phoenix.sh`` prints it) to run; without it the test
is skipped, except in CI (``CI=true``), which always runs Phoenix, where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from llmmeter.testing import FakeOpenAI

# Runs by itself (tests/conftest.py): one real Phoenix on fixed ports, shared by every case.
pytestmark = pytest.mark.alone

# Read at import: the autouse clean_environ fixture removes every LLMMETER_* variable.
PHOENIX_URL = os.environ.get("LLMMETER_TEST_PHOENIX_URL", "").rstrip("/")
PHOENIX_GRPC = os.environ.get("LLMMETER_TEST_PHOENIX_GRPC_ENDPOINT", "")
IN_CI = os.environ.get("CI") == "true"

APP_TIMEOUT = 120.0
"""Seconds the app may take, exit-time export included."""
READ_TIMEOUT = 60.0
"""Seconds to wait for Phoenix to show every span (it ingests asynchronously)."""
PAGE_SIZE = 4
"""Small on purpose: the spans come back over more than one page."""

SERVICE = "llmmeter-e2e-app"
RULE = "gpt4o-to-mini"
POLICY = f"""\
mode = "enforce"

[[rules]]
name = "{RULE}"
from = "gpt-4o"
to = "gpt-4o-mini"
"""

APP = textwrap.dedent(
    """\
    import os

    import openai
    from opentelemetry import trace

    import llmmeter

    llmmeter.instrument()  # the policy comes from the environment

    # The app configures OpenTelemetry after llmmeter.instrument(), as many apps do (so do
    # Logfire and the distros): its pipeline carries its own spans and llmmeter's.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    provider = TracerProvider(resource=Resource.create())  # OTEL_SERVICE_NAME and the rest
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_*
    trace.set_tracer_provider(provider)

    tracer = trace.get_tracer("llmmeter-e2e-app")
    client = openai.OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY: the fake server
    MSG = [{"role": "user", "content": "Classify the sentiment: great, but slow."}]

    with tracer.start_as_current_span("handle-request") as span:
        span.set_attribute("app.run_id", os.environ["APP_RUN_ID"])
        # Phoenix drops resource attributes, so the app reports the service name it got.
        resource = trace.get_tracer_provider().resource
        span.set_attribute("app.service_name", resource.attributes["service.name"])
        # Routed to gpt-4o-mini, which answers 429 (three times: the SDK retries twice),
        # so llmmeter re-sends it with gpt-4o.
        client.chat.completions.create(model="gpt-4o", messages=MSG)
        # Routed to gpt-4o-mini, answered.
        client.chat.completions.create(model="gpt-4o", messages=MSG)
        # Routed and streamed.
        stream = client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        for _chunk in stream:
            pass

    # Not routed (no rule for gpt-4o-mini) and outside any span of the app: a root span.
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    # No flush, no shutdown: the exporters must deliver at interpreter exit.
    """
)


@pytest.fixture(scope="module")
def phoenix() -> str:
    """Phoenix's base URL, once it answers its health check."""
    if not PHOENIX_URL:
        reason = (
            "LLMMETER_TEST_PHOENIX_URL is not set: start Phoenix with `bash .ci/phoenix.sh` "
            "and set the variable it prints to run the Phoenix end-to-end test"
        )
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: CI must run Phoenix)")
        pytest.skip(reason)
    try:
        with urllib.request.urlopen(f"{PHOENIX_URL}/healthz", timeout=5) as response:
            assert response.status == 200
    except (OSError, AssertionError) as exc:
        pytest.fail(f"Phoenix at {PHOENIX_URL} does not answer /healthz: {exc}")
    return PHOENIX_URL


def _grpc_endpoint(phoenix: str) -> str:
    if PHOENIX_GRPC:
        return PHOENIX_GRPC
    host = urllib.parse.urlsplit(phoenix).hostname
    return f"http://{host}:4317"


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _project_spans(phoenix: str, project: str) -> list[dict[str, Any]]:
    """Every span of the project, page by page; none while the project does not exist yet."""
    spans: list[dict[str, Any]] = []
    cursor: str | None = None
    base = f"{phoenix}/v1/projects/{urllib.parse.quote(project, safe='')}/spans"
    for _ in range(100):
        query = {"limit": str(PAGE_SIZE)}
        if cursor:
            query["cursor"] = cursor
        try:
            page = _get_json(f"{base}?{urllib.parse.urlencode(query)}")
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:  # the project appears with its first span
                return []
            raise
        spans.extend(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return spans
    raise AssertionError(f"more than 100 pages of spans in {project}")


def _wait_for_spans(phoenix: str, project: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + READ_TIMEOUT
    spans = _project_spans(phoenix, project)
    while len(spans) < count and time.monotonic() < deadline:
        time.sleep(0.25)
        spans = _project_spans(phoenix, project)
    assert len(spans) >= count, (
        f"Phoenix shows {len(spans)} of {count} spans in project {project} after "
        f"{READ_TIMEOUT:.0f} s: {sorted(s['name'] for s in spans)}"
    )
    return spans


def _one(spans: list[dict[str, Any]], **attrs: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s["attributes"].get(k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, [(s["name"], s["attributes"]) for s in spans])
    return found[0]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_spans_reach_phoenix(
    phoenix: str, server: FakeOpenAI, tmp_path: Path, protocol: str
) -> None:
    run_id = uuid.uuid4().hex[:12]
    project = f"llmmeter-e2e-{protocol.replace('/', '-')}-{run_id}"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    app = tmp_path / "app.py"
    app.write_text(APP)
    endpoint = phoenix if protocol == "http/protobuf" else _grpc_endpoint(phoenix)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMMETER_"))}
    env |= {
        # The endpoint's base URL: the HTTP exporter adds /v1/traces, where Phoenix takes OTLP.
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",  # Phoenix takes traces only
        "OTEL_SERVICE_NAME": SERVICE,
        # Phoenix puts spans in the project this resource attribute names.
        "OTEL_RESOURCE_ATTRIBUTES": (
            f"openinference.project.name={project},service.instance.id={run_id}"
        ),
        "LLMMETER_POLICY": str(policy),
        # The fake server sends stream usage only when asked, as OpenAI's API does.
        "LLMMETER_INJECT_STREAM_USAGE": "always",
        # An hour: the spans can only reach Phoenix through the flush at exit, not the batch
        # processor's schedule.
        "OTEL_BSP_SCHEDULE_DELAY": "3600000",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "APP_RUN_ID": run_id,
    }
    server.fail_next(429, times=3, model="gpt-4o-mini")

    done = subprocess.run(
        [sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=APP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # An export that failed would be reported once in the app's log (stderr here).
    assert "llmmeter:" not in done.stderr, done.stderr
    assert [r.body["model"] for r in server.requests if r.body] == [
        *["gpt-4o-mini"] * 3,
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-mini",
        "gpt-4o-mini",
    ]
    # The spans below arrived through the exit-time flush (the schedule delay is an hour).

    spans = _wait_for_spans(phoenix, project, 6)
    time.sleep(0.5)  # anything beyond the six would be a duplicate: look once more
    spans = _project_spans(phoenix, project)
    assert sorted(s["name"] for s in spans) == sorted(
        ["handle-request", "chat gpt-4o", *["chat gpt-4o-mini"] * 4]
    )

    # The app's own span, with what the app reports of its resource.
    (parent,) = [s for s in spans if s["name"] == "handle-request"]
    assert parent["parent_id"] is None
    assert parent["span_kind"] == "UNKNOWN"  # Phoenix's kind for a span without gen_ai.*
    assert parent["attributes"]["app.run_id"] == run_id
    assert parent["attributes"]["app.service_name"] == SERVICE
    trace_id = parent["context"]["trace_id"]
    llm_spans = [s for s in spans if s is not parent]

    for span in llm_spans:
        attrs = span["attributes"]
        # OTLP kind CLIENT is not kept by Phoenix; it derives the OpenInference kind LLM
        # from gen_ai.operation.name = chat.
        assert span["span_kind"] == "LLM", span
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["openai.api.type"] == "chat_completions"
        assert span["name"] == f"chat {attrs['gen_ai.request.model']}"
        assert attrs["server.address"] == "127.0.0.1"
        assert attrs["server.port"] == urllib.parse.urlsplit(server.url).port

    # The routed attempt that failed and the re-send: siblings under the app's span.
    attempt = _one(llm_spans, **{"error.type": "429"})
    resend = _one(llm_spans, **{"llmmeter.policy.action": "fallback"})
    for span in (attempt, resend):
        assert span["context"]["trace_id"] == trace_id
        assert span["parent_id"] == parent["context"]["span_id"]
    a, r = attempt["attributes"], resend["attributes"]
    assert attempt["name"] == "chat gpt-4o-mini"
    assert attempt["status_code"] == "ERROR"
    assert [e["name"] for e in attempt["events"]] == ["exception"]
    assert a["llmmeter.policy.action"] == "route"
    assert a["llmmeter.policy.rule"] == RULE
    assert a["llmmeter.policy.original_model"] == "gpt-4o"
    assert a["llmmeter.policy.target_model"] == "gpt-4o-mini"
    assert a["http.request.resend_count"] == 2  # the SDK's own retries come first
    assert "gen_ai.usage.input_tokens" not in a
    assert resend["name"] == "chat gpt-4o"
    assert resend["status_code"] != "ERROR"
    assert r["llmmeter.policy.rule"] == RULE
    assert r["llmmeter.policy.fallback_reason"] == "429"
    assert r["gen_ai.response.model"].startswith("gpt-4o-2024")

    # The routed call that was answered, and the routed stream.
    routed = _one(  # (a stream has gen_ai.request.stream = true; .get() gives None here)
        llm_spans,
        **{"llmmeter.policy.action": "route", "error.type": None, "gen_ai.request.stream": None},
    )
    streamed = _one(llm_spans, **{"gen_ai.request.stream": True})
    for span in (routed, streamed):
        attrs = span["attributes"]
        assert span["name"] == "chat gpt-4o-mini"
        assert span["parent_id"] == parent["context"]["span_id"]
        assert span["context"]["trace_id"] == trace_id
        assert attrs["llmmeter.policy.action"] == "route"
        assert attrs["llmmeter.policy.rule"] == RULE
        assert attrs["llmmeter.policy.original_model"] == "gpt-4o"
        assert attrs["llmmeter.policy.target_model"] == "gpt-4o-mini"
        assert attrs["llmmeter.policy.savings"] > 0
    s = streamed["attributes"]
    assert s["llmmeter.stream.end"] == "exhausted"
    assert s["gen_ai.response.time_to_first_chunk"] >= 0
    assert s["llmmeter.stream.usage_injected"] is True

    # The call outside the app's span: a root span of its own trace, not routed.
    (plain,) = [s for s in llm_spans if "llmmeter.policy.action" not in s["attributes"]]
    assert plain["parent_id"] is None
    assert plain["context"]["trace_id"] != trace_id

    # Tokens and cost on every answered call; Phoenix's OpenInference copies agree.
    for span in (resend, routed, streamed, plain):
        attrs = span["attributes"]
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["llm.token_count.prompt"] == attrs["gen_ai.usage.input_tokens"]
        assert attrs["llm.token_count.completion"] == attrs["gen_ai.usage.output_tokens"]
        assert attrs["gen_ai.usage.cost.amount"] > 0
        assert attrs["gen_ai.usage.cost.currency"] == "USD"
        assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(
            attrs["llmmeter.cost.input"] + attrs["llmmeter.cost.output"]
        )
        assert span["status_code"] != "ERROR"
    # gpt-4o costs more than gpt-4o-mini for the same tokens.
    assert (
        resend["attributes"]["gen_ai.usage.cost.amount"]
        > routed["attributes"]["gen_ai.usage.cost.amount"]
    )


def test_the_readme_demo_shows_up_in_phoenix(phoenix: str) -> None:
    """What the README tells a newcomer: `phoenix serve`, then the demo pointed at it."""
    from llmmeter._cli.demo import CALLS

    project = f"llmmeter-demo-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
        "OTEL_METRICS_EXPORTER": "none",  # Phoenix takes traces only
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "llmmeter", "demo", "--by", "model"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "llmmeter:" not in done.stderr  # no export problem reported
    spans = _wait_for_spans(phoenix, project, CALLS)
    names = {span["name"] for span in spans}
    assert {"chat gpt-4o", "chat gpt-4o-mini", "embeddings text-embedding-3-small"} <= names
    routed = [s for s in spans if s["attributes"].get("llmmeter.policy.action") == "route"]
    assert routed and all(s["attributes"]["llmmeter.policy.savings"] > 0 for s in routed)
