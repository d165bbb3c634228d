"""Spend guards with a budget per value of an attribution key (``when_spend_over.by``), and
the budget gauge the alert rules divide by."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

import llmmeter
from llmmeter import CallView, ConfigError, RulePolicy
from llmmeter._instrumentor import REGISTRY
from llmmeter._prometheus import PollError, parse_vector
from llmmeter._rules import describe
from llmmeter._spend import FixedSpend, SpendMonitor, by_query
from llmmeter._usage import CHAT
from tests.conftest import Telemetry, make_telemetry
from tests.unit.test_spend_guard import StubPrometheus, monitor_for, prometheus  # noqa: F401

TEAM_RULE = """\
[[rules]]
name = "team-over-budget"
from = "gpt-4o"
to = "gpt-4o-mini"
when_spend_over = {{ by = "team", daily_budget_usd = {{ search = {search}, support = 20 }} }}
"""


def team_policy(search: float = 50) -> RulePolicy:
    return RulePolicy.from_dict(
        {
            "rules": [
                {
                    "name": "team-over-budget",
                    "from": "gpt-4o",
                    "to": "gpt-4o-mini",
                    "when_spend_over": {
                        "by": "team",
                        "daily_budget_usd": {"search": search, "support": 20},
                    },
                }
            ]
        }
    )


def call(team: str | None, model: str = "gpt-4o") -> CallView:
    kwargs = {"model": model, "messages": [{"role": "user", "content": "Summarise."}]}
    return CallView(
        endpoint=CHAT,
        operation="chat",
        model=model,
        kwargs=kwargs,
        attribution={"team": team} if team is not None else None,
    )


def by_team(spent: dict[str, float]) -> dict[str, Any]:
    """A ``sum by (llmmeter_attribution_team)`` answer."""
    result = [
        {"metric": {"llmmeter_attribution_team": team}, "value": [1.7e9, str(usd)]}
        for team, usd in spent.items()
    ]
    result.append({"metric": {}, "value": [1.7e9, "999"]})  # calls outside any block
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class ByQueryPrometheus(StubPrometheus):
    """Answers the fleet query with one number and the by-team query with ``team_spend``."""

    def __init__(self) -> None:
        super().__init__()
        self.team_spend: dict[str, float] = {}
        self.fleet = 0.0

    def respond(self, query: str) -> bytes:
        if query.startswith("sum by"):
            return json.dumps(by_team(self.team_spend)).encode()
        sample = {"metric": {}, "value": [1.7e9, str(self.fleet)]}
        doc = {"status": "success", "data": {"resultType": "vector", "result": [sample]}}
        return json.dumps(doc).encode()


@pytest.fixture
def by_prometheus() -> Iterator[ByQueryPrometheus]:
    stub = ByQueryPrometheus()
    original = stub.server.RequestHandlerClass.do_GET  # type: ignore[attr-defined]

    def do_get(handler: Any) -> None:
        query = parse_qs(handler.path.partition("?")[2]).get("query", [""])[0]
        stub.body = stub.respond(query)
        original(handler)

    stub.server.RequestHandlerClass.do_GET = do_get  # type: ignore[attr-defined]
    yield stub
    stub.close()


# --- the file ----------------------------------------------------------------------------


def test_a_budget_per_value_loads_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TEAM_RULE.format(search=50))
    (rule,) = RulePolicy.load(path).rules
    assert rule.budget_by == "team"
    assert dict(rule.daily_budgets) == {"search": 50.0, "support": 20.0}
    assert rule.daily_budget_usd is None


W = "rules[0] (r).when_spend_over"
TABLE = f"{W}.daily_budget_usd: expected with by, a table"
DOLLARS = f"{W}.daily_budget_usd.a: expected a positive"


@pytest.mark.parametrize(
    ("guard", "says"),
    [
        ({"by": "Team", "daily_budget_usd": {"a": 1}}, f"{W}.by: expected an attribution key"),
        (
            {"by": "team", "daily_budget_usd": 50},
            TABLE,
        ),
        (
            {"by": "team", "daily_budget_usd": {}},
            TABLE,
        ),
        (
            {"by": "team", "daily_budget_usd": {"a": 0}},
            DOLLARS,
        ),
        (
            {"by": "team", "daily_budget_usd": {"a": "9"}},
            DOLLARS,
        ),
        ({"by": "team"}, f"{W}: missing required key 'daily_budget_usd'"),
    ],
)
def test_bad_budget_per_value_is_a_config_error_naming_the_key(
    guard: dict[str, Any], says: str
) -> None:
    rule = {"name": "r", "from": "gpt-4o", "to": "gpt-4o-mini", "when_spend_over": guard}
    with pytest.raises(ConfigError, match=re.escape(says)):
        RulePolicy.from_dict({"rules": [rule]})


def test_instrument_refuses_a_budget_by_a_key_not_on_metrics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLMMETER_PROMETHEUS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LLMMETER_METRIC_ATTRIBUTES", "tenant")
    path = tmp_path / "policy.toml"
    path.write_text(TEAM_RULE.format(search=50))
    with pytest.raises(ConfigError) as info:
        llmmeter.instrument(policy=path)
    message = str(info.value)
    assert "rules[0] (team-over-budget).when_spend_over.by" in message
    assert "LLMMETER_METRIC_ATTRIBUTES" in message and "keys on metrics are tenant" in message
    assert not REGISTRY.instrumented


# --- deciding -------------------------------------------------------------------------------


def test_only_the_team_over_its_own_budget_is_routed() -> None:
    spend = FixedSpend(10_000.0, by={("team", "search"): 60.0, ("team", "support"): 5.0})
    policy = team_policy(search=50)
    assert policy.explain(call("search"), spend).route is not None  # 60 > 50
    assert policy.explain(call("support"), spend).route is None  # 5 < 20
    assert policy.explain(call("billing"), spend).route is None  # no budget for billing
    assert policy.explain(call(None), spend).route is None  # no team at all
    (verdict,) = policy.explain(call("billing"), spend).verdicts
    assert describe(verdict[0], str(verdict[1]), call("billing")) == (
        "team 'billing' has no budget in when_spend_over"
    )


def test_the_poller_reads_spend_by_the_key_and_decide_compares_each_value(
    by_prometheus: ByQueryPrometheus,
) -> None:
    monitor = monitor_for(by_prometheus.url)
    policy = team_policy(search=50).bind_spend(monitor, ("team",))
    monitor.watch(("team",))  # what sync_spend tells it (polled by hand here, no thread)
    assert policy.decide(call("search")) is None  # never polled: unknown
    by_prometheus.team_spend = {"search": 51.0, "support": 19.0}
    monitor.poll()
    assert policy.decide(call("search")) is not None
    assert policy.decide(call("support")) is None
    queries = [q["query"][0] for _, q, _ in by_prometheus.requests]
    assert by_query("team") in queries
    assert by_query("team") == (
        "sum by (llmmeter_attribution_team) (increase(llmmeter_cost_usd_total[24h]))"
    )
    by_prometheus.team_spend = {"support": 21.0}  # search has no series now: spent 0
    monitor.poll()
    assert policy.decide(call("search")) is None
    assert policy.decide(call("support")) is not None


def test_a_vector_answer_reads_by_label_and_leaves_out_unlabelled_series() -> None:
    body = json.dumps(by_team({"search": 1.5})).encode()
    assert parse_vector(body, "llmmeter_attribution_team") == {"search": 1.5}
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}
    with pytest.raises(PollError, match="expected a vector"):
        parse_vector(json.dumps(scalar).encode(), "x")


def test_a_monitor_without_keys_polls_only_the_fleet(by_prometheus: ByQueryPrometheus) -> None:
    monitor: SpendMonitor = monitor_for(by_prometheus.url)
    monitor.poll()
    assert [q["query"][0] for _, q, _ in by_prometheus.requests] == [monitor.query]
    assert not monitor.over_by("team", "search", 0.0)


# --- the gauge ------------------------------------------------------------------------------


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    telemetry = make_telemetry()
    yield telemetry
    llmmeter.uninstrument()
    telemetry.meter_provider.shutdown()
    telemetry.tracer_provider.shutdown()


def test_budget_gauge_exports_each_budget_for_the_alert_rules(
    tel: Telemetry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLMMETER_PROMETHEUS_URL", "http://127.0.0.1:9")
    path = tmp_path / "policy.toml"
    path.write_text(
        TEAM_RULE.format(search=50) + '\n[[rules]]\nname = "fleet"\nfrom = "o3"\nto = "o4-mini"\n'
        "when_spend_over = { daily_budget_usd = 500 }\n"
        '\n[[rules]]\nname = "plain"\nfrom = "gpt-4.1"\nto = "gpt-4.1-mini"\n'
    )
    tel.instrument(policy=path, metric_attributes=["team"])
    points = tel.points("llmmeter.policy.daily_budget.usd")
    assert sorted(((dict(p.attributes), p.value) for p in points), key=repr) == sorted(
        [
            ({"llmmeter.policy.rule": "fleet"}, 500.0),
            (
                {
                    "llmmeter.policy.rule": "team-over-budget",
                    "llmmeter.budget.by": "llmmeter.attribution.team",
                    "llmmeter.attribution.team": "search",
                },
                50.0,
            ),
            (
                {
                    "llmmeter.policy.rule": "team-over-budget",
                    "llmmeter.budget.by": "llmmeter.attribution.team",
                    "llmmeter.attribution.team": "support",
                },
                20.0,
            ),
        ],
        key=repr,
    )
