"""Every script in examples/ runs, as a newcomer would run it, and shows what it promises.

Each example runs in a subprocess with a clean environment (PATH plus what the case needs):
with no ``OPENAI_BASE_URL`` it starts the built-in fake server itself; with one, it talks to
this session's fake server, whose request log shows what went on the wire. The zero-code
example runs under the ``opentelemetry-instrument`` launcher, and the collector example
exports to a small OTLP/HTTP receiver here that decodes what it gets.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmmeter.testing import DEFAULT_REPLY, FakeOpenAI

from .test_bootstrap import Collector, _attributes, collector  # noqa: F401  (OTLP receiver)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py"))
LAUNCHER = Path(sys.executable).parent / "opentelemetry-instrument"
# The console exporter's JSON, without anything that would try the network.
CONSOLE = {
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def run_example(
    script: str, env: dict[str, str] | None = None, *, launcher: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(EXAMPLES / script)]
    if launcher:
        command.insert(0, str(LAUNCHER))
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=EXAMPLES.parent,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr}"
    return done


def console_spans(stdout: str) -> list[dict[str, Any]]:
    """The span objects the console exporter printed, among the script's own lines."""
    decoder = json.JSONDecoder()
    spans = []
    for match in re.finditer(r"^\{$", stdout, re.MULTILINE):
        span, _ = decoder.raw_decode(stdout, match.start())
        spans.append(span)
    return spans


def table(stdout: str, first_column: str) -> list[list[str]]:
    """Rows of the whitespace-separated table whose header starts with ``first_column``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{first_column} "))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def money(text: str) -> float:
    assert text.startswith("$"), text
    return float(text[1:])


# -- every example -------------------------------------------------------------------------


def test_the_examples_are_the_ones_the_docs_promise() -> None:
    assert SCRIPTS == [
        "async_streaming.py",
        "quickstart.py",
        "routing_policy.py",
        "to_collector.py",
        "zero_code.py",
    ]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_example_says_how_to_run_it_and_has_a_main(script: str) -> None:
    source = (EXAMPLES / script).read_text(encoding="utf-8")
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree) or ""
    assert f"python examples/{script}" in docstring
    assert "OPENAI_BASE_URL" in docstring  # how to run it against the real API
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
    assert source.rstrip().endswith('if __name__ == "__main__":\n    main()')


# -- quickstart ----------------------------------------------------------------------------


def test_quickstart_prints_answers_and_console_spans_with_cost() -> None:
    done = run_example("quickstart.py")
    assert f"chat: {DEFAULT_REPLY}" in done.stdout
    assert f"stream: {DEFAULT_REPLY}" in done.stdout
    assert "embeddings: 1536 dimensions" in done.stdout
    spans = console_spans(done.stdout)
    assert [s["name"] for s in spans] == [
        "chat gpt-4o",
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
        "embeddings text-embedding-3-small",
    ]
    greet = spans[0]["attributes"]
    assert greet["llmmeter.task"] == "greet"
    assert greet["gen_ai.usage.cost.amount"] > 0
    assert spans[1]["attributes"]["gen_ai.usage.output_tokens"] == 22  # the stream's, exact
    assert spans[0]["resource"]["attributes"]["service.name"] == "llmmeter-quickstart"


# -- routing with a policy file ------------------------------------------------------------


def test_routing_example_sends_classification_to_mini_keeps_math_and_shadows_summaries() -> None:
    done = run_example("routing_policy.py")
    rows = {(row[0], i): row for i, row in enumerate(table(done.stdout, "task"))}
    assert [task for task, _ in rows] == ["classify", "classify", "tagging", "math", "summarize"]
    for (task, _), row in rows.items():
        _, asked, answered, rule, action, cost, saved = row
        assert asked == "gpt-4o"
        assert money(cost) > 0
        if task in {"classify", "tagging"}:
            assert answered.startswith("gpt-4o-mini-"), row
            assert (rule, action) == ("classification-to-mini", "route")
            assert money(saved) > 10 * money(cost)  # gpt-4o costs ~16x gpt-4o-mini
        elif task == "math":
            assert answered.startswith("gpt-4o-2024-"), row
            assert (rule, action, saved) == ("-", "-", "-")
        else:
            assert answered.startswith("gpt-4o-2024-"), row  # shadow: sent as written
            assert (rule, action) == ("summaries-to-mini", "shadow")
            assert money(saved) > 0
    total = re.search(r"^Routing saved \$([0-9.]+) on 3 calls: (\d+)%", done.stdout, re.MULTILINE)
    assert total, done.stdout
    assert float(total.group(1)) > 0
    assert 90 <= int(total.group(2)) < 100
    assert re.search(r"^The shadow rule would save \$0\.0*[1-9]", done.stdout, re.MULTILINE)


def test_routing_example_uses_the_given_base_url_and_routes_on_the_wire(
    server: FakeOpenAI,
) -> None:
    run_example(
        "routing_policy.py", {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
    )
    sent = [(r.path, r.body["model"]) for r in server.requests if r.body]
    assert sent == [
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/v1/responses", "gpt-4o-mini"),
        ("/v1/chat/completions", "gpt-4o"),
        ("/v1/chat/completions", "gpt-4o"),
    ]


# -- async streaming -----------------------------------------------------------------------


def test_async_example_runs_five_streams_at_once_each_with_ttft_and_tokens() -> None:
    done = run_example("async_streaming.py")
    for task in ["translate", "summarize", "brainstorm", "explain", "haiku"]:
        assert f"[{task}] {DEFAULT_REPLY}" in done.stdout
    rows = table(done.stdout, "task")
    assert len(rows) == 5
    busy = 0.0
    for task, operation, model, ttft, _, duration, _, input_tokens, output, cost in rows:
        assert operation == "chat"
        # The example's fake server waits 0.15 s (gpt-4o: 0.3 s) before the first chunk.
        assert float(ttft) >= (0.3 if model == "gpt-4o" else 0.15), (task, ttft)
        assert float(duration) > float(ttft)
        assert int(input_tokens) > 0
        assert int(output) == 22  # exact: llmmeter asked the streams for usage
        assert money(cost) > 0
        busy += float(duration)
    summary = re.search(r"^5 streams in ([0-9.]+) s; .* take ([0-9.]+) s\.$", done.stdout, re.M)
    assert summary, done.stdout
    assert float(summary.group(1)) < float(summary.group(2))  # concurrent, not one by one
    assert {row[2] for row in rows} == {"gpt-4o", "gpt-4o-mini"}


# -- zero-code -----------------------------------------------------------------------------


def test_zero_code_example_imports_nothing_of_llmmeter_but_the_fake_server() -> None:
    tree = ast.parse((EXAMPLES / "zero_code.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert {name for name in imported if name.startswith("llmmeter")} == {"llmmeter.testing"}


def test_zero_code_example_under_opentelemetry_instrument_prints_genai_spans() -> None:
    done = run_example(
        "zero_code.py",
        {
            **CONSOLE,
            "OTEL_SERVICE_NAME": "zero-code-example",
            "LLMMETER_INJECT_STREAM_USAGE": "always",  # as the docstring's command
        },
        launcher=True,
    )
    assert f"triage: {DEFAULT_REPLY}" in done.stdout
    assert f"summary: {DEFAULT_REPLY}" in done.stdout
    spans = console_spans(done.stdout)
    assert [s["name"] for s in spans] == ["chat gpt-4o-mini", "chat gpt-4o", "chat gpt-4o-mini"]
    for span in spans:
        attrs = span["attributes"]
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] == 22
        assert attrs["gen_ai.usage.cost.amount"] > 0
        assert span["resource"]["attributes"]["service.name"] == "zero-code-example"
    assert spans[1]["attributes"]["gen_ai.request.stream"] is True
    assert spans[2]["attributes"]["openai.api.type"] == "responses"
    assert "no telemetry" not in done.stderr


def test_zero_code_example_talks_to_openai_base_url_when_set(server: FakeOpenAI) -> None:
    done = run_example(
        "zero_code.py",
        {**CONSOLE, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"},
        launcher=True,
    )
    assert [r.path for r in server.requests] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/responses",
    ]
    assert len(console_spans(done.stdout)) == 3


def test_zero_code_example_without_the_launcher_works_and_says_there_is_no_telemetry() -> None:
    done = run_example("zero_code.py")
    assert f"reply: {DEFAULT_REPLY}" in done.stdout
    assert console_spans(done.stdout) == []
    assert "run it under opentelemetry-instrument" in done.stderr


# -- to a collector ------------------------------------------------------------------------


def test_collector_example_exports_spans_and_metrics_over_otlp(
    collector: Collector,  # noqa: F811
) -> None:
    endpoint = f"http://127.0.0.1:{collector.port}"
    done = run_example("to_collector.py", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert f"calls exported to {endpoint} (service llmmeter-examples)" in done.stdout
    assert done.stderr == ""  # no export failure to report
    spans = collector.spans()
    assert len(spans) == 5
    by_task = {}
    for resource, span in spans:
        assert resource["service.name"] == "llmmeter-examples"
        assert resource["service.instance.id"]
        assert span.kind == span.SPAN_KIND_CLIENT
        attrs = _attributes(span.attributes)
        assert attrs["gen_ai.usage.cost.amount"] > 0
        by_task[attrs["llmmeter.task"]] = attrs
    assert by_task.keys() == {"classify", "tagging", "math", "summarize", "chat"}
    assert by_task["classify"]["gen_ai.request.model"] == "gpt-4o-mini"
    assert by_task["classify"]["llmmeter.policy.action"] == "route"
    assert by_task["classify"]["llmmeter.policy.savings"] > 0
    assert by_task["math"]["gen_ai.request.model"] == "gpt-4o"
    assert "llmmeter.policy.action" not in by_task["math"]
    assert by_task["summarize"]["llmmeter.policy.action"] == "shadow"
    assert {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "llmmeter.cost.usd",
        "llmmeter.savings.usd",
        "llmmeter.policy.decisions",
    } <= collector.metric_names()


def test_collector_example_keeps_the_service_name_given_in_the_environment(
    collector: Collector,  # noqa: F811
) -> None:
    run_example(
        "to_collector.py",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_SERVICE_NAME": "support-bot",
            "OTEL_METRICS_EXPORTER": "none",
        },
    )
    assert {resource["service.name"] for resource, _ in collector.spans()} == {"support-bot"}
    assert collector.metric_names() == set()
