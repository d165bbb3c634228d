"""``llmmeter policy status`` and ``promote`` against a real Prometheus that scrapes an
instrumented process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmmeter._policy import stable_fraction
from llmmeter.testing import FakeOpenAI
from tests.cli_runner import run_cli
from tests.prometheus import (
    PrometheusAPI,
    app_env,
    find_binary,
    free_port,
    scrape_config,
    stop,
    tail,
)
from tests.prometheus import start_prometheus as start_real_prometheus

# Runs by itself (tests/conftest.py): a real Prometheus scraping every second, with deadlines.
pytestmark = pytest.mark.alone

# --- end to end: a real Prometheus scraping an instrumented process ----------------------

# Every call the rule shadows is evaluated in the background (evaluate = 1.0): the same
# request goes to gpt-4o-mini and the two answers' labels are compared.
APP = '''\
"""Each line of stdin is the prompt of one classify call (task key from argv); prints the
call's model and policy attributes."""

import json
import sys

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmmeter

spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
llmmeter.instrument(tracer_provider=provider)  # metrics and policy: from the environment
client = openai.OpenAI(max_retries=0)
for line in sys.stdin:
    spans.clear()
    with llmmeter.task("classify", key=sys.argv[1]):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": line.strip()}]
        )
    # Evaluation requests end on the workers' threads, into the same exporter: skip theirs.
    (span,) = [s for s in spans.get_finished_spans() if not s.attributes.get("llmmeter.evaluation")]
    keep = ("gen_ai.request.model", "llmmeter.policy.")
    print(json.dumps({k: v for k, v in span.attributes.items() if k.startswith(keep)}), flush=True)
'''

E2E_POLICY = """\
# The fleet's routing: promote edits only the mode and sample lines below.
mode = "shadow"

[[rules]]
name = "classify-to-mini"  # shadowed until the evidence is in
from = "gpt-4o"
to = "gpt-4o-mini"
tasks = ["classify"]
evaluate = 1.0             # every shadowed call is also sent to gpt-4o-mini
compare = "label"
label = '(?i)\\b(positive|negative)\\b'
agreement_target = 0.7
"""
AGREED = "Classify: great, but slow."
"""Both models answer positive."""
DISPUTED = "Classify: great, but I want a refund."
"""gpt-4o answers positive, gpt-4o-mini negative."""
RULE = 'llmmeter_policy_rule="classify-to-mini"'
DEADLINE = 60.0


def _canary_key() -> str:
    """A task key inside the rule's 5% canary, so the promoted rule routes its calls."""
    return next(
        key
        for key in (f"user-{n}" for n in range(10_000))
        if stable_fraction("classify-to-mini", key) < 0.05
    )


def test_status_and_promote_on_shadow_evaluations_in_a_real_prometheus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process evaluates its shadowed calls; status reads the agreement Prometheus scraped
    from it, promote writes the canary, and the process reloads it."""
    binary = find_binary("prometheus")
    metrics_port, web_port = free_port(), free_port()
    policy = tmp_path / "policy.toml"
    policy.write_text(E2E_POLICY)
    (tmp_path / "app.py").write_text(APP)
    config = scrape_config(tmp_path / "prometheus.yml", "policy-status", metrics_port)
    monkeypatch.chdir(tmp_path)
    api = PrometheusAPI(f"http://127.0.0.1:{web_port}")
    env = app_env()
    app_log, prometheus_log = tmp_path / "app.log", tmp_path / "prometheus.log"
    with (
        FakeOpenAI() as fake,
        app_log.open("w") as app_err,
        prometheus_log.open("w") as prometheus_out,
    ):
        fake.answer("gpt-4o-mini", "Negative.", prompt=r"\brefund\b")
        fake.answer("gpt-4o*", "The sentiment is positive.")
        env.update(
            OTEL_METRICS_EXPORTER="prometheus",
            OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
            OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
            OTEL_SERVICE_NAME="policy-status-e2e",
            OTEL_TRACES_EXPORTER="none",
            LLMMETER_POLICY=str(policy),
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-test-key",
        )
        server = start_real_prometheus(binary, config, tmp_path / "data", web_port, prometheus_out)
        process = subprocess.Popen(
            [sys.executable, str(tmp_path / "app.py"), _canary_key()],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=app_err,
            text=True,
        )

        def call(prompt: str) -> dict[str, Any]:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(prompt + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            assert line, tail(app_log)
            return json.loads(line)  # type: ignore[no-any-return]

        def scraped(expr: str) -> float:
            """The value Prometheus has for ``expr`` now (no series: -1)."""
            result = api.series(expr) if api.ready() else []
            return float(result[0]["value"][1]) if result else -1.0

        def wait_for(expr: str, value: float) -> None:
            """Until Prometheus has scraped ``expr`` at ``value`` (the evaluations run on the
            process's workers after each call returns)."""
            end = time.monotonic() + DEADLINE
            while (found := scraped(expr)) < value:
                assert process.poll() is None, tail(app_log)
                assert server.poll() is None, tail(prometheus_log)
                assert time.monotonic() < end, f"{expr}: {found}\n{tail(prometheus_log)}"
                time.sleep(0.3)
            assert found == value, expr

        def evaluated(evaluations: int, agreed: int) -> None:
            """The process's counters, as scraped: exactly so many judged, so many agreeing."""
            wait_for(f"sum(llmmeter_evaluations_total{{{RULE}}})", evaluations)
            wait_for(f"sum(llmmeter_evaluation_agreement_total{{{RULE}}})", agreed)

        status = [
            "policy",
            "status",
            "policy.toml",
            "--prometheus",
            api.base,
            "--window",
            "5m",
            "--min-evaluations",
            "40",
        ]
        try:
            first = call(AGREED)
            assert first["llmmeter.policy.action"] == "shadow", first
            assert first["gen_ai.request.model"] == "gpt-4o"
            # One evaluation scraped before the rest: increase() counts from that first
            # sample, so it sees exactly the evaluations that follow.
            evaluated(1, 1)

            # Too few evaluations: keep shadowing.
            for prompt in [AGREED] * 4 + [DISPUTED] + [AGREED] * 4 + [DISPUTED]:
                call(prompt)
            evaluated(11, 9)
            code, out, err = run_cli(capsys, *status, "--json")
            assert (code, err) == (0, ""), out
            (rule,) = json.loads(out)["rules"]
            # increase() extrapolates past the first and last samples (by up to 1.5 scrape
            # intervals over a few seconds of samples here): never fewer than the 10
            # evaluations. Towards the start it stretches each counter by at most its first
            # value over its increase (1/10 and 1/8), so the share is 80% to 0.8 * 1.125 / 1.1
            # = 81.8%, as long as status does not round one figure and not the other.
            assert 10 <= rule["evaluations"] < 40, rule
            assert rule["agreement"] == pytest.approx(8 / 10, abs=0.05), rule
            assert (rule["evaluate"], rule["agreement_target"]) == (1.0, 0.7)
            assert (rule["evaluation_errors"], rule["evaluations_dropped"]) == (0, 0), rule
            assert rule["evaluation_cost_usd"] > 0 and rule["would_save_usd"] > 0, rule
            assert rule["mode"] == "shadow" and rule["shadowed"] >= 10, rule
            assert rule["recommendation"]["action"] == "keep", rule
            assert "fewer than 40" in rule["recommendation"]["reason"], rule

            # Enough evaluations: 44 of 50 agree (88%), a lower bound over the 70% target.
            for prompt in ([AGREED] * 9 + [DISPUTED]) * 4:
                call(prompt)
            evaluated(51, 45)
            code, out, err = run_cli(capsys, *status, "--json")
            assert (code, err) == (1, ""), out
            (rule,) = json.loads(out)["rules"]
            assert rule["evaluations"] >= 50, rule
            assert rule["agreement"] == pytest.approx(44 / 50, abs=0.02), rule
            assert 0.7 <= rule["agreement_low"] < rule["agreement"], rule
            assert (rule["evaluation_errors"], rule["evaluations_dropped"]) == (0, 0), rule
            assert rule["recommendation"] == {
                "action": "promote",
                "reason": rule["recommendation"]["reason"],
                "mode": "enforce",
                "sample": 0.05,
            }
            assert rule["recommendation"]["reason"].endswith("enforce at sample 0.05")

            code, out, err = run_cli(
                capsys,
                "policy",
                "promote",
                "policy.toml",
                "--prometheus",
                api.base,
                "--window",
                "5m",
                "--min-evaluations",
                "40",
                "--write",
            )
            assert (code, err) == (0, ""), out
            assert policy.read_text() == E2E_POLICY.replace(
                "agreement_target = 0.7\n",
                'agreement_target = 0.7\nmode = "enforce"\nsample = 0.05\n',
            )

            # The running process reloads the file: its key is inside the canary, so routed.
            end = time.monotonic() + DEADLINE
            while (attributes := call(AGREED)).get("llmmeter.policy.action") != "route":
                assert time.monotonic() < end, attributes
                time.sleep(0.3)
            assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        finally:
            stop(process, server)
            assert process.stdout is not None
            process.stdout.close()
    assert process.returncode == 0, tail(app_log)
    assert "Traceback" not in app_log.read_text(), tail(app_log)
