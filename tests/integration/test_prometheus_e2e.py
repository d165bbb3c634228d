"""The operations kit's Prometheus rules and Grafana dashboard, against a real Prometheus.

- ``promtool check rules`` and ``promtool test rules`` pass on
  ``collector-config/prometheus/rules`` and ``collector-config/prometheus/tests``.
- End to end: an instrumented app runs a mixed workload in its own process, configured only
  by ``OTEL_*`` / ``LLMMETER_*`` variables (``OTEL_METRICS_EXPORTER=prometheus`` serves
  ``/metrics``), against the fake OpenAI server: routed calls, fallbacks (429 and 500 from the
  target), a rule in shadow mode, shadow evaluation of every routed and shadowed call, streams
  (one cut mid-way), errors the caller sees, an unpriced model and embeddings. A real
  ``prometheus`` scrapes it every second and evaluates the repository's rule files every
  second. Then, through Prometheus's HTTP API:

  - the cost, token, duration, time-to-first-chunk, policy, savings, unpriced and evaluation
    series exist with the expected labels, every one carries llmmeter's instrumentation scope
    (``otel_scope_name="llmmeter"``, which the dashboard and rules select ``gen_ai_*`` series
    by), and no series has a label outside the documented set;
  - every query of every dashboard panel (Grafana variables substituted: ``$service``,
    ``$model``, ``$task`` and ``$rule`` by ``.*``, then ``$service`` by the app's service name;
    ``$__rate_interval`` by ``1m``) returns at least one series with a number, because a
    panel that is empty for a real user is a bug; every template variable has values;
  - every recording rule returns at least one series, every alert expression evaluates
    without error, and Prometheus reports every rule healthy.

The Prometheus binary comes from the Debian package ``prometheus``. Without it these tests
are skipped, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmmeter.testing import FakeOpenAI
from tests.prometheus import (
    PrometheusAPI,
    app_env,
    find_binary,
    free_port,
    start_prometheus,
    stop,
    tail,
)

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "collector-config"
RULE_FILES = sorted((KIT / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((KIT / "prometheus" / "tests").glob("*.test.yml"))
DASHBOARD = KIT / "grafana" / "dashboards" / "llmmeter.json"

SERVICE = "llmmeter-e2e"
JOB = "llmmeter-e2e"
CONVERGE_SECONDS = 60.0
"""How long the scraped series, rules and panels get to appear (a few seconds here)."""

# What Grafana puts in place of its variables. $service, $model, $task and $rule are
# multi-value variables with "All" = ".*" ($rule also repeats the "Model evaluation" row, one
# rule a copy); Grafana's $__rate_interval is at least 4 scrape intervals.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$model": ".*",
    "$task": ".*",
    "$rule": ".*",
    "$tenant": ".*",
    "$feature": ".*",
}

# Every label llmmeter's metrics may carry in Prometheus (docs/telemetry.md), plus what the
# exporter and Prometheus add. Never ids, users, prompts or keys.
ALLOWED_LABELS = {
    "__name__",
    "job",
    "instance",
    "le",
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gen_ai_token_type",
    "server_address",
    "server_port",
    "gen_ai_token_modality",
    "llmmeter_task",
    "error_type",
    "llmmeter_policy_rule",
    "llmmeter_policy_action",
    "llmmeter_policy_fallback_reason",
    "llmmeter_cache_operation",
    "llmmeter_evaluation",
    "llmmeter_evaluation_reason",
    "llmmeter_policy_mode",
    # attribution: the keys LLMMETER_METRIC_ATTRIBUTES allows, capped; the budget gauge
    "llmmeter_tenant",
    "llmmeter_feature",
    "llmmeter_attribution_team",
    "llmmeter_attribution_key",
    "llmmeter_budget_by",
    "llmmeter_spend_guard_reason",
}

# Every rule but extract-to-nano (whose calls all fall back, and fallbacks are not evaluated)
# evaluates each call: classify-to-mini's answers (enforced) are compared with gpt-4o's,
# summarize-to-mini's (shadow) with gpt-4o-mini's, and chat-to-mini's evaluations go to
# gpt-4.1-mini, which no user call asks for and which always fails (errors, reason request),
# slowly: meanwhile the one evaluation worker's one-slot queue overflows (dropped, reason
# queue_full).
POLICY = """\
mode = "enforce"
fallback = "on-error"

[[rules]]
name = "classify-to-mini"
from = ["gpt-4o"]
to = "gpt-4o-mini"
tasks = ["classify"]
evaluate = 1.0

[[rules]]
name = "extract-to-nano"
from = ["gpt-4.1"]
to = "gpt-4.1-nano"
tasks = ["extract"]

[[rules]]
name = "summarize-to-mini"
from = ["gpt-4o"]
to = "gpt-4o-mini"
tasks = ["summarize"]
mode = "shadow"
evaluate = 1.0
agreement_target = 0.9

[[rules]]
name = "chat-to-mini"
from = ["gpt-4o"]
to = "gpt-4.1-mini"
tasks = ["chat"]
mode = "shadow"
evaluate = 1.0

# Budgets (the gauge the budget alerts divide by): acme's is crossed by its first call, and
# its calls then go to gpt-4o-mini; globex's never is; the feature's and the fleet's rules
# name models no call asks for, so they only export their budgets.
[[rules]]
name = "tenant-budget"
from = ["gpt-4o"]
to = "gpt-4o-mini"
tasks = ["budgeted"]
when_spend_over = { by = "tenant", daily_budget_usd = { acme = 0.000001, globex = 1000 } }

[[rules]]
name = "feature-budget"
from = ["o3"]
to = "o4-mini"
when_spend_over = { by = "feature", daily_budget_usd = { search = 1000 } }

[[rules]]
name = "fleet-budget"
from = ["o3"]
to = "o4-mini"
when_spend_over = { daily_budget_usd = 1000 }
"""

WORKLOAD = '''\
"""A mixed workload, instrumented by llmmeter.instrument() with no arguments: exporters,
service name and policy all come from the environment. Runs rounds until stdin closes."""

import os
import sys
import threading

import openai

import llmmeter
import llmmeter.testing

llmmeter.instrument()

stop = threading.Event()


def wait_for_eof():
    sys.stdin.read()
    stop.set()


threading.Thread(target=wait_for_eof, daemon=True).start()
client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL, OPENAI_API_KEY
# The same fake server, reached as api.openai.com: a call to a loopback server is a local
# server's, which no list prices and the unpriced alert leaves out (docs/telemetry.md).
hosted = llmmeter.testing.client_as(os.environ["OPENAI_BASE_URL"], "openai")
MESSAGES = [{"role": "user", "content": "Classify the sentiment: great, but slow."}]
# Long enough (over 1024 tokens) for the provider's prompt cache: repeats read it.
FAQ = [{"role": "user", "content": "Summarize our return policy for hiking boots. " * 120}]


def chat(model, stream=False, via=client):
    try:
        reply = via.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
        if stream:
            for _ in reply:
                pass
    except Exception:  # scripted failures and cut streams: the metrics record them
        pass


turn = 0
while not stop.is_set():
    with llmmeter.task("classify"):  # classify-to-mini: gpt-4o is sent as gpt-4o-mini
        chat("gpt-4o")
        chat("gpt-4o", stream=True)
    with llmmeter.task("extract"):  # extract-to-nano: the target fails, gpt-4.1 answers
        chat("gpt-4.1")
    with llmmeter.task("summarize"):  # summarize-to-mini, in shadow mode
        chat("gpt-4o")
        chat("gpt-4o", stream=True)
    with llmmeter.task("chat"):
        chat("acme-llm-1", via=hosted)  # answered, but llmmeter has no price for it
        chat("gpt-4o", stream=True)  # chat-to-mini, in shadow mode: its evaluations fail
    with llmmeter.task("report"):
        chat("gpt-4-turbo")  # always fails with 500
    with llmmeter.task("faq"):  # cached input tokens from the second round on
        client.chat.completions.create(
            model="gpt-4o-mini", messages=FAQ, extra_body={"prompt_cache_key": "faq"}
        )
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    # Attributed calls: tenant and feature on metrics; team too, capped at 2 values, so the
    # third team goes on metrics as _overflow (counted); user on spans only.
    for n, tenant in enumerate(("acme", "globex")):
        with llmmeter.attribute(user=f"u-{n}", tenant=tenant, feature="search", team=f"t{turn}"):
            with llmmeter.task("budgeted"):  # tenant-budget: acme over its budget is routed
                chat("gpt-4o")
    turn = (turn + 1) % 3
    stop.wait(0.2)
'''


# --- the files --------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())  # a collapsed row keeps its panels inside


def _panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title and refId, PromQL) of every query of every panel."""
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", ())
    ]


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _grafana(expr: str, service: str) -> str:
    for name, value in {**GRAFANA_VARIABLES, "$service": service}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_alert_has_annotations_and_promtool_tests_firing_and_not() -> None:
    assert [p.name for p in RULE_FILES] == ["llmmeter-alerts.yml", "llmmeter-recording.yml"]
    assert [p.name for p in RULE_TESTS] == ["llmmeter-alerts.test.yml"]
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    firing: set[str] = set()
    silent: set[str] = set()
    for test in yaml.safe_load(RULE_TESTS[0].read_text())["tests"]:
        for case in test.get("alert_rule_test", ()):
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    assert firing == alerts
    assert silent == alerts
    for rule in _rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule


def test_dashboard_uses_the_prometheus_datasource_and_the_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "llmmeter"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"service", "model", "task", "rule", "tenant", "feature"}
    for variable in variables.values():
        assert variable["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert variable["allValue"] == ".*"
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    queries = dict(_panel_queries(dashboard))
    # Every panel that can be filtered by service joins target_info.
    for title, expr in queries.items():
        if "$service" in expr:
            assert "group_left (service_name) target_info" in expr, title


def test_model_evaluation_row_repeats_per_rule_and_shares_the_alerts_numbers() -> None:
    """Each copy of the row shows one rule, and its agreement panel draws the recorded
    agreement and target that LLMEvaluationAgreementBelowTarget compares, with the lower bound."""
    panels = _dashboard()["panels"]
    (start,) = [i for i, p in enumerate(panels) if p["type"] == "row" and p.get("repeat")]
    assert panels[start]["repeat"] == "rule"
    assert "$rule" in panels[start]["title"]
    end = next((i for i, p in enumerate(panels) if i > start and p["type"] == "row"), len(panels))
    row = panels[start + 1 : end]
    assert [p["title"] for p in row] == [
        "Agreement vs target",
        "Savings and evaluation spend (USD/h)",
        "Evaluations: judged, errors, dropped (per second)",
    ]
    for panel in row:
        for target in panel["targets"]:
            assert 'llmmeter_policy_rule=~"$rule"' in target["expr"], panel["title"]
    agreement = {target["expr"].split("{")[0] for target in row[0]["targets"]}
    assert agreement == {
        "rule:llmmeter_evaluation_agreement:ratio_rate1h",
        "rule:llmmeter_evaluation_agreement:lower_bound1h",
        "rule_mode:llmmeter_policy_agreement_target:max",
    }
    (alert,) = [r for r in _rules() if r.get("alert") == "LLMEvaluationAgreementBelowTarget"]
    assert "rule:llmmeter_evaluation_agreement:ratio_rate1h" in alert["expr"]
    assert "rule_mode:llmmeter_policy_agreement_target:max" in alert["expr"]


# --- promtool ---------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = find_binary("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    promtool = find_binary("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- end to end ---------------------------------------------------------------------------


def _expected_series() -> list[str]:
    """Selectors that must each match a series with a value above 0."""
    common = f'job="{JOB}", gen_ai_operation_name="chat", gen_ai_provider_name="openai", '
    common += 'server_address="127.0.0.1"'
    routed = 'llmmeter_policy_rule="classify-to-mini", llmmeter_policy_action="route"'
    mini = (
        f'{common}, gen_ai_request_model="gpt-4o-mini", '
        f'gen_ai_response_model="gpt-4o-mini-2024-07-18", llmmeter_task="classify", {routed}'
    )
    extract = 'llmmeter_policy_rule="extract-to-nano", llmmeter_task="extract"'
    shadow = 'llmmeter_policy_rule="summarize-to-mini", llmmeter_policy_action="shadow"'
    return [
        f'target_info{{job="{JOB}", service_name="{SERVICE}"}}',
        # cost: a routed call is priced at the model it went to
        f"llmmeter_cost_usd_total{{{mini}}}",
        f'llmmeter_cost_usd_total{{{common}, gen_ai_request_model="gpt-4o", {shadow}}}',
        'llmmeter_cost_usd_total{gen_ai_operation_name="embeddings", '
        'gen_ai_request_model="text-embedding-3-small"}',
        # tokens, by type
        f'gen_ai_client_token_usage_count{{{mini}, gen_ai_token_type="input"}}',
        f'gen_ai_client_token_usage_count{{{mini}, gen_ai_token_type="output"}}',
        # 14 bucket bounds and +Inf (counted: Prometheus versions format `le` differently)
        f'count(gen_ai_client_token_usage_bucket{{{mini}, gen_ai_token_type="input"}}) == 15',
        # duration: successes, errors the caller saw, errors of a routed target
        f'gen_ai_client_operation_duration_seconds_count{{{mini}, error_type=""}}',
        f'count(gen_ai_client_operation_duration_seconds_bucket{{{mini}, error_type=""}}) == 15',
        f"gen_ai_client_operation_duration_seconds_count{{{common}, "
        f'gen_ai_request_model="gpt-4-turbo", llmmeter_task="report", error_type="500"}}',
        f"gen_ai_client_operation_duration_seconds_count{{{extract}, "
        f'gen_ai_request_model="gpt-4.1-nano", llmmeter_policy_action="route", error_type="429"}}',
        f"gen_ai_client_operation_duration_seconds_count{{{extract}, "
        f'gen_ai_request_model="gpt-4.1", llmmeter_policy_action="fallback", error_type=""}}',
        # time to first chunk: streams only
        f"gen_ai_client_operation_time_to_first_chunk_seconds_count{{{mini}}}",
        # policy decisions and savings
        f'llmmeter_policy_decisions_total{{job="{JOB}", {routed}}}',
        'llmmeter_policy_decisions_total{llmmeter_policy_rule="classify-to-mini", '
        'llmmeter_policy_action="fallback", llmmeter_policy_fallback_reason="500"}',
        'llmmeter_policy_decisions_total{llmmeter_policy_rule="extract-to-nano", '
        'llmmeter_policy_action="fallback", llmmeter_policy_fallback_reason="429"}',
        f"llmmeter_policy_decisions_total{{{shadow}}}",
        f"llmmeter_savings_usd_total{{{mini}}}",
        f'llmmeter_savings_usd_total{{gen_ai_request_model="gpt-4o", {shadow}}}',
        # shadow evaluation: judged, scored, failed, dropped, priced apart, and each rule's
        # target with its mode
        'llmmeter_evaluations_total{llmmeter_policy_rule="classify-to-mini"}',
        'llmmeter_evaluation_agreement_total{llmmeter_policy_rule="classify-to-mini"}',
        'llmmeter_evaluations_total{llmmeter_policy_rule="summarize-to-mini"}',
        'llmmeter_evaluation_errors_total{llmmeter_policy_rule="chat-to-mini", '
        'llmmeter_evaluation_reason="request"}',
        'llmmeter_evaluation_dropped_total{llmmeter_evaluation_reason="queue_full"}',
        'llmmeter_policy_agreement_target{llmmeter_policy_rule="classify-to-mini", '
        'llmmeter_policy_mode="enforce"} == 0.95',
        'llmmeter_policy_agreement_target{llmmeter_policy_rule="summarize-to-mini", '
        'llmmeter_policy_mode="shadow"} == 0.9',
        'absent(llmmeter_policy_agreement_target{llmmeter_policy_rule="extract-to-nano"})',
        f'llmmeter_cost_usd_total{{{common}, gen_ai_request_model="gpt-4o", '
        'llmmeter_policy_rule="classify-to-mini", llmmeter_policy_action="evaluate", '
        'llmmeter_evaluation="true"}',
        'llmmeter_policy_decisions_total{llmmeter_policy_rule="classify-to-mini", '
        'llmmeter_policy_action="evaluate"}',
        # the unpriced model: counted, and no cost series
        f'llmmeter_cost_unpriced_total{{job="{JOB}", gen_ai_operation_name="chat", '
        'gen_ai_provider_name="openai", server_address="api.openai.com", server_port="443", '
        'gen_ai_request_model="acme-llm-1", gen_ai_response_model="acme-llm-1", '
        'llmmeter_task="chat"}',
        'absent(llmmeter_cost_usd_total{gen_ai_request_model="acme-llm-1"})',
        # attribution: cost per tenant and feature; the budget per tenant routes acme's calls
        # once Prometheus has its spend, never globex's; the third team overflows the cap
        'llmmeter_cost_usd_total{llmmeter_tenant="acme", llmmeter_feature="search", '
        'llmmeter_policy_rule="tenant-budget", llmmeter_policy_action="route"}',
        'llmmeter_cost_usd_total{llmmeter_tenant="globex", llmmeter_feature="search"}',
        'absent(llmmeter_cost_usd_total{llmmeter_tenant="globex", '
        'llmmeter_policy_rule="tenant-budget"})',
        'llmmeter_cost_usd_total{llmmeter_attribution_team="_overflow"}',
        'llmmeter_attribution_overflow_total{llmmeter_attribution_key="team"}',
        'llmmeter_attribution_cap_reached_total{llmmeter_attribution_key="team"} == 1',
        'llmmeter_policy_daily_budget_usd{llmmeter_policy_rule="tenant-budget", '
        'llmmeter_budget_by="llmmeter.tenant", llmmeter_tenant="globex"} == 1000',
        'llmmeter_policy_daily_budget_usd{llmmeter_policy_rule="fleet-budget"} == 1000',
        'rule:llmmeter_policy_daily_budget:spent_ratio24h{budget="tenant", '
        'llmmeter_tenant="acme"} > 1',
        'absent(llmmeter_cost_usd_total{user_id!=""})',
    ]


LATEST = "gen_ai_latest_experimental"
"""OTEL_SEMCONV_STABILITY_OPT_IN's value for the newest GenAI names (docs/telemetry.md)."""
_NEWEST = (
    (
        re.compile(r'gen_ai_client_token_usage_(\w+)\{(.*), gen_ai_token_type="(input|output)"\}'),
        r"gen_ai_client_inference_operation_\3_tokens_\1{\2}",
    ),
    (re.compile(r"gen_ai_client_token_usage_"), "gen_ai_client_inference_operation_input_tokens_"),
    (re.compile(r"gen_ai_client_operation_duration_"), "gen_ai_client_inference_duration_"),
    (
        re.compile(r"gen_ai_client_operation_time_to_first_chunk_"),
        "gen_ai_client_inference_time_to_first_chunk_",
    ),
    (
        re.compile(r"llmmeter_usage_cache_input_tokens_total"),
        "gen_ai_client_inference_usage_cache_read_input_tokens_total",
    ),
)


def _named(selector: str, names: str) -> str:
    """``selector`` (written with the default names) under the name set ``names``."""
    if names == "default":
        return selector
    for pattern, replacement in _NEWEST:
        selector = pattern.sub(replacement, selector)
    return selector


def _has_number(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def _problems(api: PrometheusAPI, dashboard: dict[str, Any], names: str) -> list[str]:
    """Everything not (yet) as it should be; empty once the whole kit works."""
    problems: list[str] = []

    def check(what: str, expr: str, *, finite: bool = True, positive: bool = False) -> None:
        try:
            result = api.series(expr)
        except AssertionError as error:
            problems.append(f"{what}: error {error}")
            return
        if not result:
            problems.append(f"{what}: no series: {expr}")
        elif finite and not _has_number(result):
            problems.append(f"{what}: only NaN: {expr}")
        elif positive and not any(float(s["value"][1]) > 0 for s in result):
            problems.append(f"{what}: not above 0: {expr}")

    for selector in _expected_series():
        check("series", _named(selector, names), positive=True)
    for service in (".*", SERVICE):
        for title, expr in _panel_queries(dashboard):
            check(f"panel {title!r} (service={service})", _grafana(expr, service))
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"]
        metric, label = query.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
        values = api.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
        if not values.get("data"):
            problems.append(f"variable {variable['name']}: no values for {query}")
    for rule in _rules():
        if "record" in rule:
            check(f"recording rule {rule['record']}", rule["record"])
        else:
            body = api.query(rule["expr"])
            if body["status"] != "success":
                problems.append(f"alert {rule['alert']}: {body.get('error')}")
    groups = api.get("/api/v1/rules")["data"]["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    if len(loaded) != len(_rules()):
        problems.append(f"Prometheus loaded {len(loaded)} rules, the files have {len(_rules())}")
    for rule in loaded:
        if rule["health"] != "ok":
            problems.append(f"rule {rule['name']}: health {rule['health']} {rule.get('lastError')}")
    return problems


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        server.add_model("acme-llm-1")  # llmmeter has no price for it
        server.set_latency(first_chunk=0.005, per_chunk=0.001, response=0.002)
        # The first routed classify call fails: it falls back to gpt-4o (reason 500).
        server.fail_next(500, model="gpt-4o-mini")
        # extract-to-nano's target always answers 429: every call falls back to gpt-4.1.
        server.fail_next(429, times=1000, model="gpt-4.1-nano")
        # A model that always fails: errors the caller sees.
        server.fail_next(500, times=1000, model="gpt-4-turbo")
        # chat-to-mini's evaluations fail, after holding the evaluation worker (see POLICY).
        server.fail_next(500, times=1000, model="gpt-4.1-mini")
        server.set_latency(response=0.5, model="gpt-4.1-mini")
        # The first gpt-4o stream is cut after two events.
        server.break_stream_after(2, model="gpt-4o")
        yield server


@pytest.mark.alone  # scrapes and rule evaluations every second, with deadlines
@pytest.mark.parametrize("names", ["default", "latest"])
def test_prometheus_scrapes_the_workload_and_evaluates_the_whole_kit(
    tmp_path: Path, fake_openai: FakeOpenAI, names: str
) -> None:
    """Under either name set (``OTEL_SEMCONV_STABILITY_OPT_IN``), every panel, variable and
    rule of the kit has data."""
    prometheus = find_binary("prometheus")
    dashboard = _dashboard()
    metrics_port, web_port = free_port(), free_port()
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    workload = tmp_path / "workload.py"
    workload.write_text(WORKLOAD)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(path) for path in RULE_FILES],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    env = app_env()
    env.update(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
        OTEL_TRACES_EXPORTER="none",
        OTEL_SERVICE_NAME=SERVICE,
        LLMMETER_POLICY=str(policy),
        LLMMETER_EVALUATION_CONCURRENCY="1",
        LLMMETER_EVALUATION_QUEUE_SIZE="1",
        LLMMETER_METRIC_ATTRIBUTES="tenant,feature,team",
        LLMMETER_METRIC_ATTRIBUTES_LIMIT="2",
        LLMMETER_PROMETHEUS_URL=f"http://127.0.0.1:{web_port}",
        LLMMETER_SPEND_POLL_INTERVAL="1",
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_API_KEY="sk-test-key",
    )
    if names == "latest":
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = f"http,{LATEST}"
    app_log, prometheus_log = tmp_path / "app.log", tmp_path / "prometheus.log"
    api = PrometheusAPI(f"http://127.0.0.1:{web_port}")
    with app_log.open("w") as app_out, prometheus_log.open("w") as prometheus_out:
        app = subprocess.Popen(
            [sys.executable, str(workload)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=app_out,
            stderr=subprocess.STDOUT,
        )
        server = start_prometheus(prometheus, config, tmp_path / "data", web_port, prometheus_out)
        try:
            problems = ["Prometheus is not ready"]
            deadline = time.monotonic() + CONVERGE_SECONDS
            while problems and time.monotonic() < deadline:
                assert app.poll() is None, f"the workload exited:\n{tail(app_log)}"
                assert server.poll() is None, f"prometheus exited:\n{tail(prometheus_log)}"
                if api.ready():
                    problems = _problems(api, dashboard, names)
                if problems:
                    time.sleep(1)
            assert not problems, (
                f"after {CONVERGE_SECONDS:.0f} s:\n"
                + "\n".join(problems)
                + f"\n--- workload:\n{tail(app_log)}\n--- prometheus:\n{tail(prometheus_log)}"
            )

            # Labels are bounded: nothing outside the documented set.
            every = api.series(f'{{__name__=~"llmmeter_.+|gen_ai_.+", job="{JOB}"}}')
            labels = {name for sample in every for name in sample["metric"]}
            assert labels <= ALLOWED_LABELS, labels - ALLOWED_LABELS
            # Every series names llmmeter's instrumentation scope: the dashboard and the rules
            # tell llmmeter's gen_ai_* series from another instrumentation's by it.
            scopes = {sample["metric"].get("otel_scope_name") for sample in every}
            assert scopes == {"llmmeter"}, scopes
            exported = {sample["metric"]["__name__"] for sample in every}
            assert {
                "llmmeter_cost_usd_total",
                "llmmeter_cost_unpriced_total",
                "llmmeter_policy_decisions_total",
                "llmmeter_savings_usd_total",
                _named("gen_ai_client_operation_duration_seconds_bucket", names),
                _named("gen_ai_client_token_usage_bucket", names),
                _named("gen_ai_client_operation_time_to_first_chunk_seconds_bucket", names),
                _named("llmmeter_usage_cache_input_tokens_total", names),
                "llmmeter_evaluations_total",
                "llmmeter_evaluation_agreement_total",
                "llmmeter_evaluation_errors_total",
                "llmmeter_evaluation_dropped_total",
                "llmmeter_policy_agreement_target",
            } <= exported
            if names == "latest":  # the newest names replace the default ones
                assert not exported & {
                    "gen_ai_client_operation_duration_seconds_bucket",
                    "gen_ai_client_token_usage_bucket",
                    "llmmeter_usage_cache_input_tokens_total",
                }
                assert "gen_ai_client_inference_cost_bucket" in exported
        finally:
            stop(app, server)
    assert app.returncode == 0, tail(app_log)
