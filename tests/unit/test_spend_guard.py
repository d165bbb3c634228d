"""The fleet spend guard: ``when_spend_over = { daily_budget_usd = N }``.

Unit level, against a stub of Prometheus's query API served over loopback HTTP: the file's
key is validated with exact messages; ``decide()`` compares only the cached figure; a figure
that is unreachable, wrong or stale makes the condition false, counted and logged once; the
poller follows the policy (started with a guard, stopped on reload without one and on
``uninstrument()``). End to end, against the real ``prometheus`` binary scraping an
instrumented process: the guard switches on when the fleet's spend crosses a tiny budget and
off when the reloaded file raises the budget, and the spans show the route only in between.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import llmmeter
from llmmeter import ConfigError, RulePolicy
from llmmeter._config import resolve_settings
from llmmeter._guard import Guard
from llmmeter._instrumentor import REGISTRY
from llmmeter._metrics import Instruments
from llmmeter._policy import CallView
from llmmeter._prometheus import PollError, PrometheusURL, parse_answer
from llmmeter._rules import SPEND, describe
from llmmeter._spend import DEFAULT_QUERY, FixedSpend, SpendMonitor
from llmmeter._usage import CHAT
from llmmeter.testing import FakeOpenAI
from tests.cli_runner import rows, run_cli
from tests.conftest import Telemetry, make_telemetry
from tests.local_http import QuietHTTPServer
from tests.prometheus import free_port

DEADLINE = 30.0
"""Seconds any polled condition gets (it takes a fraction of a second here)."""

GUARDED = """\
[[rules]]
name = "over-budget-to-mini"
from = "gpt-4o"
to = "gpt-4o-mini"
when_spend_over = {{ daily_budget_usd = {budget} }}
"""

UNGUARDED = """\
[[rules]]
name = "plain"
from = "gpt-4.1"
to = "gpt-4.1-nano"
"""


def wait_until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"after {deadline:g} s: {what}"
        time.sleep(0.02)


def write(path: Path, text: str) -> Path:
    """Write ``text`` so that a reload sees a new file even within one mtime tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))
    return path


def call(model: str = "gpt-4o") -> CallView:
    messages = [{"role": "user", "content": "Summarise the quarter."}]
    return CallView(
        endpoint=CHAT, operation="chat", model=model, kwargs={"model": model, "messages": messages}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- a stub of Prometheus's query API ---------------------------------------------------


class StubPrometheus:
    """Answers ``/api/v1/query`` with whatever the test set; records every request."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        self.set_value(0.0)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                stub.requests.append(
                    (parts.path, parse_qs(parts.query), self.headers.get("Authorization"))
                )
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(stub.body)))
                self.end_headers()
                self.wfile.write(stub.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, doc: Any, status: int = 200) -> None:
        self.status, self.body = status, json.dumps(doc).encode()

    def set_value(self, usd: float | str) -> None:
        sample = {"metric": {}, "value": [1_700_000_000.0, str(usd)]}
        self.answer({"status": "success", "data": {"resultType": "vector", "result": [sample]}})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus() -> Iterator[StubPrometheus]:
    stub = StubPrometheus()
    yield stub
    stub.close()


def monitor_for(
    url: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    interval: float = 10.0,
    errors: Any = None,
    query: str = DEFAULT_QUERY,
) -> SpendMonitor:
    return SpendMonitor(
        PrometheusURL.parse(url),
        query=query,
        interval=interval,
        timeout=5.0,
        guard=Guard(strict=True),
        errors=errors,
        clock=clock,
    )


def guarded_rule(budget: float, name: str = "over-budget-to-mini") -> dict[str, Any]:
    """gpt-4o to gpt-4o-mini while the fleet's spend is over ``budget``."""
    return {
        "name": name,
        "from": "gpt-4o",
        "to": "gpt-4o-mini",
        "when_spend_over": {"daily_budget_usd": budget},
    }


def guarded_policy(monitor: SpendMonitor, budget: float = 500) -> RulePolicy:
    return RulePolicy(rules=[guarded_rule(budget)]).bind_spend(monitor)


# --- the file ---------------------------------------------------------------------------

R0 = "rules[0] (over-budget-to-mini).when_spend_over"
DOLLARS = f"{R0}.daily_budget_usd: expected a positive number of US dollars"

BAD_GUARDS = {
    "not-a-table": (
        "500",
        f"{R0}: expected a table {{ daily_budget_usd = <US dollars> }}; got 500",
    ),
    "unknown-key": (
        "{ daily_budget = 500 }",
        f"{R0}.daily_budget: unknown key; expected daily_budget_usd or by",
    ),
    "missing-budget": ("{}", f"{R0}: missing required key 'daily_budget_usd'"),
    "zero": ("{ daily_budget_usd = 0 }", f"{DOLLARS}; got 0"),
    "negative": ("{ daily_budget_usd = -5.0 }", f"{DOLLARS}; got -5.0"),
    "string": ('{ daily_budget_usd = "500" }', f"{DOLLARS}; got '500'"),
    "bool": ("{ daily_budget_usd = true }", f"{DOLLARS}; got True"),
    "infinite": ("{ daily_budget_usd = inf }", f"{DOLLARS}; got inf"),
    "nan": ("{ daily_budget_usd = nan }", f"{DOLLARS}; got nan"),
}


@pytest.mark.parametrize(("value", "says"), list(BAD_GUARDS.values()), ids=list(BAD_GUARDS))
def test_bad_guard_is_a_config_error_naming_file_rule_key_and_expectation(
    tmp_path: Path, value: str, says: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[[rules]]\nname = "over-budget-to-mini"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n'
        f"when_spend_over = {value}\n"
    )
    with pytest.raises(ConfigError) as info:
        RulePolicy.load(path)
    assert str(info.value) == f"{path}: {says}"


def test_guard_loads_as_a_budget_in_dollars(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GUARDED.format(budget=500))
    (rule,) = RulePolicy.load(path).rules
    assert rule.daily_budget_usd == 500.0
    assert isinstance(rule.daily_budget_usd, float)


def test_instrument_refuses_a_guard_without_a_prometheus_url(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(UNGUARDED + "\n" + GUARDED.format(budget=500))
    with pytest.raises(ConfigError) as info:
        llmmeter.instrument(policy=path)
    assert str(info.value) == (
        f"{path}: rules[1] (over-budget-to-mini).when_spend_over: expected the environment "
        "variable LLMMETER_PROMETHEUS_URL to name the Prometheus that holds the fleet's "
        "llmmeter_cost_usd_total (such as http://prometheus:9090); got no URL"
    )
    assert not REGISTRY.instrumented


def test_a_guard_outside_instrument_loads_and_never_holds(tmp_path: Path) -> None:
    """``policy check`` and scripts load guarded files; with no figure the rule is skipped."""
    policy = RulePolicy(rules=[guarded_rule(1, "g")])
    assert policy.spend is None
    assert policy.decide(call()) is None
    assert policy.explain(call()).verdicts[0][1] == SPEND


# --- settings -----------------------------------------------------------------------------


def test_settings_read_the_url_query_interval_and_timeout() -> None:
    settings = resolve_settings(
        environ={
            "LLMMETER_PROMETHEUS_URL": "https://ops:s3cr%40t@prom.example:9443/prom/",
            "LLMMETER_SPEND_QUERY": 'sum(increase(llmmeter_cost_usd_total{job="api"}[24h]))',
            "LLMMETER_SPEND_POLL_INTERVAL": "2.5",
            "LLMMETER_SPEND_TIMEOUT": "1",
        }
    )
    assert settings.prometheus == PrometheusURL(
        base="https://prom.example:9443/prom",
        shown="https://ops:***@prom.example:9443/prom",
        authorization="Basic b3BzOnMzY3JAdA==",  # ops:s3cr@t
    )
    assert settings.spend_query == 'sum(increase(llmmeter_cost_usd_total{job="api"}[24h]))'
    assert (settings.spend_poll_interval, settings.spend_timeout) == (2.5, 1.0)
    assert "s3cr" not in repr(settings)
    defaults = resolve_settings(environ={})
    assert defaults.prometheus is None
    assert (defaults.spend_query, defaults.spend_poll_interval, defaults.spend_timeout) == (
        "sum(increase(llmmeter_cost_usd_total[24h]))",
        30.0,
        5.0,
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        (
            "LLMMETER_PROMETHEUS_URL",
            "ftp://ops:hunter2@prom:9090",
            "expected the http(s) base URL of Prometheus, such as http://prometheus:9090; "
            "got 'ftp://ops:***@prom:9090'",
        ),
        (
            "LLMMETER_PROMETHEUS_URL",
            "http://ops:hunter2@prom:90a90",
            "expected the http(s) base URL of Prometheus, such as http://prometheus:9090; "
            "got 'http://ops:***@prom:90a90', which is not a URL",
        ),
        (
            "LLMMETER_PROMETHEUS_URL",
            "http://prom:9090/?token=1",
            "expected the http(s) base URL of Prometheus, such as http://prometheus:9090; "
            "got 'http://prom:9090/?token=[REDACTED]', with a query or fragment",
        ),
        ("LLMMETER_SPEND_POLL_INTERVAL", "0", "expected a positive number of seconds; got '0'"),
        ("LLMMETER_SPEND_TIMEOUT", "soon", "expected a positive number of seconds; got 'soon'"),
    ],
)
def test_bad_setting_is_a_config_error_that_never_shows_a_password(
    name: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(environ={name: value})
    assert str(info.value) == f"environment variable {name}: {says}"
    assert "hunter2" not in str(info.value)


# --- the figure ---------------------------------------------------------------------------


def vector(*values: str) -> bytes:
    result = [{"metric": {"job": str(n)}, "value": [1.0, v]} for n, v in enumerate(values)]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


def test_answer_is_the_one_number_and_no_series_is_zero() -> None:
    assert parse_answer(vector("12.5")) == 12.5
    assert parse_answer(vector()) == 0.0
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}
    assert parse_answer(json.dumps(scalar).encode()) == 3.0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>", "the answer is not JSON"),
        (vector("1", "2"), "expected one number; the query gave 2 series (wrap it in sum())"),
        (vector("NaN"), "expected a finite number of USD; got nan"),
        (
            json.dumps({"status": "error", "error": "parse error at char 4"}).encode(),
            "the query failed: parse error at char 4",
        ),
        (
            json.dumps({"status": "success", "data": {"resultType": "matrix"}}).encode(),
            "expected a vector or scalar; got 'matrix'",
        ),
    ],
)
def test_an_answer_that_is_not_one_number_is_a_bad_response(body: bytes, says: str) -> None:
    with pytest.raises(PollError) as info:
        parse_answer(body)
    assert (info.value.reason, str(info.value)) == ("bad_response", says)


def test_decide_routes_only_while_the_cached_figure_is_over_the_budget(
    prometheus: StubPrometheus,
) -> None:
    monitor = monitor_for(prometheus.url)
    policy = guarded_policy(monitor, budget=500)
    assert policy.decide(call()) is None  # never polled: unknown
    for usd, routed in (("600", True), ("500", False), ("499.99", False), ("500.01", True)):
        prometheus.set_value(usd)
        monitor.poll()
        route = policy.decide(call())
        assert (route is not None) == routed, usd
        if route is not None:
            assert (route.model, route.rule) == ("gpt-4o-mini", "over-budget-to-mini")
    assert policy.decide(call("gpt-4.1")) is None  # the guard never widens `from`


def test_deciding_never_touches_the_network(prometheus: StubPrometheus) -> None:
    monitor = monitor_for(prometheus.url)
    policy = guarded_policy(monitor, budget=1)
    prometheus.set_value("5")
    monitor.poll()
    asked = len(prometheus.requests)
    for _ in range(200):
        assert policy.decide(call()) is not None
    assert len(prometheus.requests) == asked == 1


def test_the_query_is_sent_as_configured_with_basic_auth(prometheus: StubPrometheus) -> None:
    url = prometheus.url.replace("http://", "http://ops:pa%3Ass@")
    query = 'sum(increase(llmmeter_cost_usd_total{service_name="api"}[24h]))'
    monitor_for(url, query=query).poll()
    ((path, params, authorization),) = prometheus.requests
    assert (path, params) == ("/api/v1/query", {"query": [query]})
    assert authorization == "Basic b3BzOnBhOnNz"  # ops:pa:ss


def test_polls_run_with_the_applications_http_instrumentation_suppressed(
    prometheus: StubPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP instrumentation the app installed (urllib's) asks is_instrumentation_enabled()
    before it records a request: for llmmeter's own polls, the answer is no (else each poll
    is a root trace: ~2,880 a day per process)."""
    import urllib.request

    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    seen: list[bool] = []
    real_open = urllib.request.OpenerDirector.open

    def recording_open(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(is_instrumentation_enabled())
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", recording_open)
    monitor_for(prometheus.url).poll()
    assert seen == [False]
    assert is_instrumentation_enabled()  # only for the poll


def error_points(tel: Telemetry) -> dict[str, int]:
    return {
        point.attributes["llmmeter.spend_guard.reason"]: point.value
        for point in tel.points("llmmeter.spend_guard.errors")
    }


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    telemetry = make_telemetry()
    yield telemetry
    telemetry.meter_provider.shutdown()
    telemetry.tracer_provider.shutdown()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_stale_figure_means_false_counted_and_logged_once(
    prometheus: StubPrometheus, tel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmmeter")
    clock = Clock()
    errors = Instruments.create(tel.meter_provider.get_meter("test")).spend_guard_errors
    monitor = monitor_for(prometheus.url, clock=clock, interval=10.0, errors=errors)
    policy = guarded_policy(monitor, budget=500)
    prometheus.set_value("900")
    monitor.poll()
    prometheus.answer({"status": "error", "error": "overloaded"}, status=503)
    clock.now += 25.0  # two failed polls: the last good figure still holds
    monitor.poll()
    assert policy.decide(call()) is not None
    assert error_points(tel) == {"http_error": 1}
    clock.now += 5.1  # over three intervals old: stale
    assert policy.decide(call()) is None
    assert monitor.current() is None
    monitor.poll()
    monitor.poll()
    assert error_points(tel) == {"http_error": 3, "stale": 1}
    assert warnings_of(caplog) == [
        f"llmmeter: spend guard: no figure from {prometheus.url} (HTTP 503: overloaded); rules "
        "with when_spend_over do not apply while there is none (further occurrences are logged "
        "at debug level)",
        f"llmmeter: spend guard: the last figure from {prometheus.url} is older than 30 s; "
        "rules with when_spend_over do not apply until Prometheus answers (further occurrences "
        "are logged at debug level)",
    ]
    prometheus.set_value("900")
    monitor.poll()  # answers again: trusted again
    assert policy.decide(call()) is not None
    assert f"llmmeter: spend guard: {prometheus.url} answers again" in caplog.messages


def test_unreachable_prometheus_means_false_counted_and_logged_once(
    tel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmmeter")
    errors = Instruments.create(tel.meter_provider.get_meter("test")).spend_guard_errors
    url = f"http://ops:hunter2@127.0.0.1:{free_port()}"  # nothing listens there
    monitor = monitor_for(url, errors=errors)
    policy = guarded_policy(monitor, budget=0.01)
    for _ in range(3):
        monitor.poll()
        assert policy.decide(call()) is None
    assert error_points(tel) == {"unreachable": 3}
    (warning,) = warnings_of(caplog)
    assert warning.startswith("llmmeter: spend guard: no figure from http://ops:***@127.0.0.1:")
    assert "hunter2" not in caplog.text
    assert len([r for r in caplog.records if "no figure from" in r.getMessage()]) == 3


def test_explain_says_why_a_guard_does_not_hold() -> None:
    policy = RulePolicy(rules=[guarded_rule(500, "g")])
    (rule,) = policy.rules
    assert describe(rule, SPEND, call()) == (
        "the fleet's 24 h spend is unknown, so when_spend_over = { daily_budget_usd = 500 } "
        "does not hold (a running process reads it from Prometheus; --spend sets it here)"
    )
    assert describe(rule, SPEND, call(), 320.5) == (
        "the fleet's 24 h spend, $320.5, is not over when_spend_over = { daily_budget_usd = 500 }"
    )
    assert policy.explain(call(), FixedSpend(320.5)).route is None
    route = policy.explain(call(), FixedSpend(620)).route
    assert route is not None and route.model == "gpt-4o-mini"


def test_policy_check_and_explain_show_the_guard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write(tmp_path / "policy.toml", GUARDED.format(budget=500)))
    code, out, _ = run_cli(capsys, "policy", "check", path)
    assert code == 0
    assert rows(out)["1"][-1] == "fleet 24 h spend over $500.00"
    assert out.splitlines()[-1] == (
        "note: LLMMETER_PROMETHEUS_URL is not set here; instrument() refuses a policy with "
        "spend guards without it"
    )
    _, out, _ = run_cli(capsys, "policy", "check", path, "--json")
    assert json.loads(out)["rules"][0]["when_spend_over"] == {"daily_budget_usd": 500.0}

    explain = ["policy", "explain", path, "--model", "gpt-4o", "--prompt", "Summarise."]
    _, out, _ = run_cli(capsys, *explain)
    assert "Fleet 24 h spend: unknown (give --spend)" in out.splitlines()
    assert "Decision: no rule matches; the call stays on gpt-4o." in out.splitlines()
    _, out, _ = run_cli(capsys, *explain, "--spend", "620", "--json")
    doc = json.loads(out)
    assert (doc["fleet_spend_usd"], doc["decision"]["model_sent"]) == (620.0, "gpt-4o-mini")
    _, out, _ = run_cli(capsys, *explain, "--spend", "499", "--json")
    assert json.loads(out)["rules"][0]["explanation"] == (
        "the fleet's 24 h spend, $499, is not over when_spend_over = { daily_budget_usd = 500 }"
    )
    code, _, err = run_cli(capsys, *explain, "--spend", "-1")
    assert code == 2
    assert "argument --spend: expected US dollars (a number >= 0); got '-1'" in err


# --- the poller's life --------------------------------------------------------------------


@pytest.fixture
def guard_env(monkeypatch: pytest.MonkeyPatch, prometheus: StubPrometheus) -> StubPrometheus:
    monkeypatch.setenv("LLMMETER_PROMETHEUS_URL", prometheus.url)
    monkeypatch.setenv("LLMMETER_SPEND_POLL_INTERVAL", "0.05")
    return prometheus


@pytest.fixture
def instrumented(tel: Telemetry) -> Iterator[Telemetry]:
    yield tel
    llmmeter.uninstrument()


def spend_monitor() -> SpendMonitor:
    runtime = REGISTRY.runtime()
    monitor = runtime.router.spend if runtime is not None and runtime.router else None
    assert monitor is not None
    return monitor


def reload_running_policy() -> None:
    """Check the running policy's file now, as its watcher thread does every interval."""
    runtime = REGISTRY.runtime()
    assert runtime is not None and runtime.router is not None
    runtime.router.policy._reload()


def test_poller_runs_with_a_guard_and_stops_on_uninstrument(
    tmp_path: Path, guard_env: StubPrometheus, tel: Telemetry
) -> None:
    path = write(tmp_path / "policy.toml", GUARDED.format(budget=500))
    tel.instrument(policy=path)
    monitor = spend_monitor()
    wait_until(lambda: len(guard_env.requests) >= 3, "the poller polls every interval")
    thread = monitor._thread
    assert thread is not None and thread.daemon and thread.name == "llmmeter-spend-guard"
    llmmeter.uninstrument()
    assert REGISTRY.runtime() is None
    wait_until(lambda: not thread.is_alive(), "the poller ends")
    asked = len(guard_env.requests)
    monitor.start()  # closed: a policy reloaded after uninstrument() starts nothing
    assert not monitor.running
    time.sleep(0.2)  # a few intervals: a live poller would have asked again
    assert len(guard_env.requests) == asked


def test_no_guard_no_poller_until_a_reload_adds_one_and_removes_it(
    tmp_path: Path,
    guard_env: StubPrometheus,
    instrumented: Telemetry,
    server: FakeOpenAI,
    client: Any,
) -> None:
    path = write(tmp_path / "policy.toml", UNGUARDED)
    instrumented.instrument(policy=RulePolicy.load(path, reload_interval=3600))
    monitor = spend_monitor()
    assert not monitor.running and guard_env.requests == []

    guard_env.set_value("900")
    write(path, GUARDED.format(budget=500))
    reload_running_policy()  # what the watcher thread does every interval
    messages = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4o", messages=messages)
    assert monitor.running
    wait_until(lambda: monitor.current() == 900.0, "the first poll")
    client.chat.completions.create(model="gpt-4o", messages=messages)
    second = instrumented.spans()[-1]
    assert (second.attributes or {})["llmmeter.policy.rule"] == "over-budget-to-mini"
    assert (second.attributes or {})["gen_ai.request.model"] == "gpt-4o-mini"

    thread = monitor._thread
    assert thread is not None
    write(path, UNGUARDED)
    reload_running_policy()
    wait_until(lambda: not thread.is_alive(), "the poller ends when no rule has a guard")
    assert monitor.current() is None


def test_reload_adding_a_guard_without_a_url_keeps_the_last_good_policy(
    tmp_path: Path,
    instrumented: Telemetry,
    server: FakeOpenAI,
    client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write(tmp_path / "policy.toml", UNGUARDED)
    instrumented.instrument(policy=RulePolicy.load(path, reload_interval=3600))
    runtime = REGISTRY.runtime()
    assert runtime is not None and runtime.router is not None and runtime.router.spend is None
    write(path, GUARDED.format(budget=500))
    reload_running_policy()
    client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
    assert (instrumented.span().attributes or {})["llmmeter.policy.rule"] == "plain"
    assert (
        f"policy file {path} changed but is invalid; keeping the last good policy: {path}: "
        "rules[0] (over-budget-to-mini).when_spend_over: expected the environment variable "
        "LLMMETER_PROMETHEUS_URL" in caplog.text
    )


def test_the_callers_rule_policy_is_left_unbound(
    guard_env: StubPrometheus, instrumented: Telemetry
) -> None:
    policy = RulePolicy(rules=[guarded_rule(1, "g")])
    instrumented.instrument(policy=policy)
    assert policy.spend is None
    runtime = REGISTRY.runtime()
    assert runtime is not None and runtime.router is not None
    assert runtime.router.policy.spend is spend_monitor()
