"""The fleet spend guard against a real Prometheus scraping an instrumented process."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llmmeter._spend import DEFAULT_QUERY
from llmmeter.testing import FakeOpenAI
from tests.prometheus import (
    PrometheusAPI,
    app_env,
    find_binary,
    free_port,
    scrape_config,
    start_prometheus,
    stop,
    tail,
)
from tests.unit.test_spend_guard import DEADLINE, GUARDED, write

# Runs by itself (tests/conftest.py): a real Prometheus scraping every second, with deadlines.
pytestmark = pytest.mark.alone

# --- end to end: a real Prometheus scraping an instrumented process ----------------------

APP = '''\
"""Makes one gpt-4o call per line on stdin and prints the span's routing attributes."""

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
llmmeter.instrument(tracer_provider=provider)  # metrics, policy, guard: from the environment
client = openai.OpenAI(max_retries=0)
for _ in sys.stdin:
    spans.clear()
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Summarise the quarter."}]
    )
    (span,) = spans.get_finished_spans()
    keep = ("gen_ai.request.model", "llmmeter.policy.")
    print(json.dumps({k: v for k, v in span.attributes.items() if k.startswith(keep)}), flush=True)
'''

TINY_BUDGET = 0.000001
"""Far below one call's cost: crossed as soon as Prometheus sees any spend."""


class App:
    """The instrumented process: ``call()`` makes one call and returns its span's attributes."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.process = process
        self.log = log
        self.lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        self.reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self.reader.start()

    def _read(self, stdout: Any) -> None:
        for line in stdout:
            self.lines.put(line)

    def call(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("call\n")
        self.process.stdin.flush()
        try:
            return json.loads(self.lines.get(timeout=DEADLINE))  # type: ignore[no-any-return]
        except queue.Empty:
            raise AssertionError(f"the app did not answer:\n{tail(self.log)}") from None


def routed(attributes: dict[str, Any]) -> bool:
    return attributes.get("llmmeter.policy.rule") == "over-budget-to-mini"


def test_guard_follows_the_fleet_spend_in_a_real_prometheus(tmp_path: Path) -> None:
    binary = find_binary("prometheus")
    metrics_port, web_port = free_port(), free_port()
    policy = write(tmp_path / "policy.toml", GUARDED.format(budget=TINY_BUDGET))
    (tmp_path / "app.py").write_text(APP)
    config = scrape_config(tmp_path / "prometheus.yml", "spend-guard", metrics_port)
    env = app_env()
    app_log, prometheus_log = tmp_path / "app.log", tmp_path / "prometheus.log"
    api = PrometheusAPI(f"http://127.0.0.1:{web_port}")
    with (
        FakeOpenAI() as fake,
        app_log.open("w") as app_err,
        prometheus_log.open("w") as prometheus_out,
    ):
        env.update(
            OTEL_METRICS_EXPORTER="prometheus",
            OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
            OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
            OTEL_SERVICE_NAME="spend-guard-e2e",
            LLMMETER_POLICY=str(policy),
            LLMMETER_PROMETHEUS_URL=api.base,
            LLMMETER_SPEND_POLL_INTERVAL="0.5",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-test-key",
        )
        server = start_prometheus(binary, config, tmp_path / "data", web_port, prometheus_out)
        process = subprocess.Popen(
            [sys.executable, str(tmp_path / "app.py")],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=app_err,
            text=True,
        )
        app = App(process, app_log)
        try:
            # Nothing spent yet (or no answer yet): the rule does not apply.
            before = [app.call()]
            assert not routed(before[0]), before
            assert before[0]["gen_ai.request.model"] == "gpt-4o"

            # Priced calls raise the fleet's spend past the tiny budget: the guard switches on.
            end = time.monotonic() + 60
            while not routed(attributes := app.call()):
                before.append(attributes)
                assert process.poll() is None, tail(app_log)
                assert server.poll() is None, tail(prometheus_log)
                assert time.monotonic() < end, "the guard never switched on\n" + tail(app_log)
                time.sleep(0.2)
            assert attributes == {
                "gen_ai.request.model": "gpt-4o-mini",
                "llmmeter.policy.rule": "over-budget-to-mini",
                "llmmeter.policy.action": "route",
                "llmmeter.policy.original_model": "gpt-4o",
                "llmmeter.policy.target_model": "gpt-4o-mini",
                "llmmeter.policy.savings": attributes["llmmeter.policy.savings"],
            }
            assert not any(routed(each) for each in before)
            (spend,) = api.series(DEFAULT_QUERY)
            assert float(spend["value"][1]) > TINY_BUDGET

            # The reloaded file's budget is far above the spend: the guard switches off.
            write(policy, GUARDED.format(budget=1000))
            end = time.monotonic() + 60
            while routed(app.call()):
                assert time.monotonic() < end, "the guard never switched off\n" + tail(app_log)
                time.sleep(0.2)
            after = [app.call() for _ in range(3)]
            assert not any(routed(each) for each in after), after
            assert {each["gen_ai.request.model"] for each in after} == {"gpt-4o"}
        finally:
            stop(process, server)
            app.reader.join(timeout=15)  # EOF: the app exited
            assert process.stdout is not None
            process.stdout.close()
    assert process.returncode == 0, tail(app_log)
