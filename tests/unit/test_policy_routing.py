"""Routing against the fake server: which model did the server really receive, and does the
span tell the truth about it? Sync, async and streaming; chat, responses and completions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import llmmeter
from llmmeter.testing import FakeOpenAI
from tests.conftest import Telemetry, make_telemetry
from tests.scenarios import run

MSG = [{"role": "user", "content": "Classify the sentiment of: I love it"}]

CLASSIFY_TO_MINI = {
    "name": "classify-to-mini",
    "from": ["gpt-4o", "gpt-4o-2024-*"],
    "to": "gpt-4o-mini",
    "prompt": [r"(?i)\bclassify\b"],
}

CALLS: dict[str, tuple[Any, dict[str, Any], str]] = {
    "chat": (lambda c: c.chat.completions.create, {"model": "gpt-4o", "messages": MSG}, "chat"),
    "responses": (
        lambda c: c.responses.create,
        {"model": "gpt-4o", "input": "Classify the sentiment of: I love it"},
        "chat",
    ),
    "completions": (
        lambda c: c.completions.create,
        {"model": "davinci-002", "prompt": "Classify the sentiment of: I love it"},
        "text_completion",
    ),
}
TARGETS = {"chat": "gpt-4o-mini", "responses": "gpt-4o-mini", "completions": "babbage-002"}


@pytest.fixture
def routed() -> Any:
    """Instrument with a policy given as keyword arguments; uninstrument afterwards."""
    made: list[Telemetry] = []

    def instrument(policy: Any = None, **kwargs: Any) -> Telemetry:
        tel = make_telemetry()
        tel.instrument(policy=policy, **kwargs)
        made.append(tel)
        return tel

    yield instrument
    llmmeter.uninstrument()
    for tel in made:
        tel.meter_provider.shutdown()
        tel.tracer_provider.shutdown()


def _policy(mode: str = "enforce", **extra: Any) -> llmmeter.RulePolicy:
    rules = [
        CLASSIFY_TO_MINI,
        {"name": "legacy-to-babbage", "from": "davinci-002", "to": "babbage-002"},
    ]
    return llmmeter.RulePolicy(rules=rules, mode=mode, **extra)


def _sent_models(server: FakeOpenAI) -> list[Any]:
    return [(r.body or {}).get("model") for r in server.requests]


def _sum(tel: Telemetry, metric: str, **labels: Any) -> float:
    total = 0.0
    for point in tel.points(metric):
        attrs = dict(point.attributes)
        if all(attrs.get(k.replace("__", ".")) == v for k, v in labels.items()):
            total += point.value
    return total


# --- enforce ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("endpoint", sorted(CALLS))
def test_enforce_sends_the_target_model_and_the_span_says_so(
    routed: Any, server: FakeOpenAI, openai_module: Any, endpoint: str, stream: bool, mode: str
) -> None:
    tel = routed(_policy())
    method, kwargs, operation = CALLS[endpoint]
    original, target = kwargs["model"], TARGETS[endpoint]
    result = run(openai_module, server.base_url, mode, method, {**kwargs, "stream": stream})

    assert _sent_models(server) == [target]
    if not stream:
        assert result.value.model.startswith(target)
    span = tel.span()
    attrs = dict(span.attributes or {})
    assert span.name == f"{operation} {target}"
    assert attrs["gen_ai.request.model"] == target
    assert attrs["llmmeter.policy.action"] == "route"
    assert attrs["llmmeter.policy.original_model"] == original
    assert attrs["llmmeter.policy.target_model"] == target
    usage = {
        "input_tokens": attrs["gen_ai.usage.input_tokens"],
        "output_tokens": attrs["gen_ai.usage.output_tokens"],
    }
    at_original = llmmeter.price(original, usage)
    assert at_original is not None
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(
        llmmeter.price(target, usage).total  # type: ignore[union-attr]
    )
    saved = at_original.total - attrs["gen_ai.usage.cost.amount"]
    assert saved > 0
    assert attrs["llmmeter.policy.savings"] == pytest.approx(saved)
    rule = attrs["llmmeter.policy.rule"]
    assert _sum(tel, "llmmeter.savings.usd", llmmeter__policy__rule=rule) == pytest.approx(saved)
    assert (
        _sum(
            tel,
            "llmmeter.policy.decisions",
            llmmeter__policy__rule=rule,
            llmmeter__policy__action="route",
        )
        == 1
    )
    cost_point = tel.points("llmmeter.cost.usd")[0]
    assert cost_point.attributes["llmmeter.policy.rule"] == rule
    assert cost_point.attributes["gen_ai.request.model"] == target


def test_a_call_no_rule_matches_goes_out_untouched(routed: Any, client: Any) -> None:
    tel = routed(_policy())
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Prove Fermat's little theorem"}]
    )
    attrs = dict(tel.span().attributes or {})
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert not any(key.startswith("llmmeter.policy") for key in attrs)
    assert tel.points("llmmeter.policy.decisions") == []


def test_users_extra_body_model_is_never_routed(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(_policy())
    client.chat.completions.create(model="gpt-4o", messages=MSG, extra_body={"model": "gpt-4o"})
    assert _sent_models(server) == ["gpt-4o"]
    assert "llmmeter.policy.rule" not in (tel.span().attributes or {})


def test_embeddings_are_never_routed(routed: Any, client: Any, server: FakeOpenAI) -> None:
    policy = llmmeter.RulePolicy(
        rules=[{"name": "all", "from": "text-embedding-3-large", "to": "text-embedding-3-small"}]
    )
    routed(policy)
    client.embeddings.create(model="text-embedding-3-large", input="hello")
    assert _sent_models(server) == ["text-embedding-3-large"]


def test_the_users_kwargs_are_not_mutated(routed: Any, client: Any) -> None:
    routed(_policy())
    kwargs = {"model": "gpt-4o", "messages": MSG, "stream": True}
    list(client.chat.completions.create(**kwargs))
    assert kwargs == {"model": "gpt-4o", "messages": MSG, "stream": True}


# --- shadow and off --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_shadow_sends_as_written_and_reports_what_routing_would_save(
    routed: Any, server: FakeOpenAI, openai_module: Any, stream: bool, mode: str
) -> None:
    tel = routed(_policy(mode="shadow"))
    method, kwargs, _ = CALLS["chat"]
    run(openai_module, server.base_url, mode, method, {**kwargs, "stream": stream})

    assert _sent_models(server) == ["gpt-4o"]
    attrs = dict(tel.span().attributes or {})
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["llmmeter.policy.action"] == "shadow"
    assert attrs["llmmeter.policy.target_model"] == "gpt-4o-mini"
    usage = {
        "input_tokens": attrs["gen_ai.usage.input_tokens"],
        "output_tokens": attrs["gen_ai.usage.output_tokens"],
    }
    would = llmmeter.price("gpt-4o-mini", usage)
    assert would is not None
    saved = attrs["gen_ai.usage.cost.amount"] - would.total
    assert attrs["llmmeter.policy.savings"] == pytest.approx(saved)
    assert _sum(tel, "llmmeter.savings.usd", llmmeter__policy__action="shadow") == pytest.approx(
        saved
    )


def test_mode_off_in_the_file_routes_nothing(
    routed: Any, client: Any, server: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('mode = "off"\n[[rules]]\nname = "r"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n')
    tel = routed(str(path))
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent_models(server) == ["gpt-4o"]
    assert "llmmeter.policy.rule" not in (tel.span().attributes or {})


@pytest.mark.parametrize(
    ("env_mode", "sent", "action"),
    [
        ("off", "gpt-4o", None),
        ("shadow", "gpt-4o", "shadow"),
        ("enforce", "gpt-4o-mini", "route"),
    ],
)
def test_policy_mode_variable_overrides_the_file(
    routed: Any,
    client: Any,
    server: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env_mode: str,
    sent: str,
    action: str | None,
) -> None:
    path = tmp_path / "policy.toml"
    file_mode = "enforce" if env_mode != "enforce" else "shadow"
    path.write_text(
        f'mode = "{file_mode}"\n[[rules]]\nname = "r"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n'
    )
    monkeypatch.setenv("LLMMETER_POLICY", str(path))
    monkeypatch.setenv("LLMMETER_POLICY_MODE", env_mode)
    tel = routed()
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent_models(server) == [sent]
    assert (tel.span().attributes or {}).get("llmmeter.policy.action") == action


def test_bad_policy_mode_variable_fails_at_instrument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMMETER_POLICY_MODE", "sometimes")
    with pytest.raises(llmmeter.ConfigError, match=r"LLMMETER_POLICY_MODE.*'sometimes'"):
        make_telemetry().instrument()


def test_invalid_policy_file_fails_at_instrument_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[rules]]\nname = "r"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nsample = 2\n')
    with pytest.raises(llmmeter.ConfigError) as caught:
        make_telemetry().instrument(policy=path)
    message = str(caught.value)
    assert str(path) in message and "rules[0] (r).sample" in message and "got 2" in message
    assert llmmeter.price("gpt-4o", {"input_tokens": 1}) is not None  # nothing half-installed


def test_policy_argument_that_is_not_a_policy_is_a_config_error() -> None:
    with pytest.raises(llmmeter.ConfigError, match="argument policy"):
        make_telemetry().instrument(policy=42)


# --- custom policies and misbehaving ones ----------------------------------------------


class ToMini:
    """A hand-written policy: everything about sentiment goes to mini."""

    def __init__(self) -> None:
        self.seen: list[llmmeter.CallView] = []

    def decide(self, call: llmmeter.CallView) -> llmmeter.Route | None:
        self.seen.append(call)
        if "sentiment" in call.prompt:
            return llmmeter.Route("gpt-4o-mini", "custom")
        return None


def test_a_custom_policy_sees_the_call_and_routes_it(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    policy = ToMini()
    tel = routed(policy)
    with llmmeter.task("classify", key="conversation-7"):
        client.chat.completions.create(
            model="gpt-4o", messages=MSG, max_tokens=5, tools=[_TOOL], user="someone"
        )
    assert _sent_models(server) == ["gpt-4o-mini"]
    view = policy.seen[0]
    assert (view.api, view.operation, view.model, view.task) == (
        "chat_completions",
        "chat",
        "gpt-4o",
        "classify",
    )
    assert view.key == "conversation-7"  # the task key beats the request's user field
    assert view.tools and not view.images and view.max_output_tokens == 5
    assert view.input_tokens > 0
    assert view.request["model"] == "gpt-4o"
    with pytest.raises(TypeError):
        view.request["model"] = "x"  # type: ignore[index]
    assert tel.span().attributes["llmmeter.policy.rule"] == "custom"


_TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


class Raising:
    def decide(self, call: llmmeter.CallView) -> llmmeter.Route | None:
        raise RuntimeError("policy bug")


class Junk:
    def decide(self, call: llmmeter.CallView) -> Any:
        return "gpt-4o-mini"


@pytest.mark.parametrize("policy", [Raising(), Junk()], ids=["raises", "returns-junk"])
def test_a_broken_policy_leaves_the_call_as_written_and_logs_once(
    routed: Any,
    client: Any,
    server: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    policy: Any,
) -> None:
    tel = routed(policy)  # strict: even so, the user's policy failing never fails the call
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent_models(server) == ["gpt-4o"] * 3
    assert len(tel.spans()) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "policy" in warnings[0].getMessage()


def test_env_shadow_mode_shadows_a_custom_policy(
    routed: Any, client: Any, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMMETER_POLICY_MODE", "shadow")
    tel = routed(ToMini())
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent_models(server) == ["gpt-4o"]
    assert tel.span().attributes["llmmeter.policy.action"] == "shadow"


# --- Azure -----------------------------------------------------------------------------


def _azure(openai_module: Any, server: FakeOpenAI, **kwargs: Any) -> Any:
    return openai_module.AzureOpenAI(
        azure_endpoint=server.url,
        api_key="azure-key",
        api_version="2024-10-21",
        max_retries=0,
        **kwargs,
    )


def test_azure_deployments_are_not_routed_without_a_mapping(
    routed: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    routed(_policy())
    with _azure(openai_module, server) as azure:
        azure.chat.completions.create(model="prod-4o", messages=MSG)
    assert server.requests[-1].path.startswith("/openai/deployments/prod-4o/")


def test_azure_calls_are_routed_through_the_deployment_mapping(
    routed: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    server.add_deployment("prod-4o", "gpt-4o")
    server.add_deployment("prod-mini", "gpt-4o-mini")
    tel = routed(_policy(deployments={"gpt-4o": "prod-4o", "gpt-4o-mini": "prod-mini"}))
    with _azure(openai_module, server) as azure:
        result = azure.chat.completions.create(model="prod-4o", messages=MSG)
    assert server.requests[-1].path.startswith("/openai/deployments/prod-mini/")
    assert result.model.startswith("gpt-4o-mini")
    attrs = dict(tel.span().attributes or {})
    assert attrs["gen_ai.request.model"] == "prod-mini"
    assert attrs["llmmeter.policy.original_model"] == "prod-4o"
    assert attrs["llmmeter.policy.target_model"] == "prod-mini"
    assert attrs["llmmeter.policy.savings"] > 0


def test_azure_client_bound_to_a_deployment_is_never_routed(
    routed: Any, server: FakeOpenAI, openai_module: Any
) -> None:
    routed(_policy(deployments={"gpt-4o": "prod-4o", "gpt-4o-mini": "prod-mini"}))
    with _azure(openai_module, server, azure_deployment="prod-4o") as azure:
        azure.chat.completions.create(model="gpt-4o", messages=MSG)
    assert server.requests[-1].path.startswith("/openai/deployments/prod-4o/")


# --- tasks, keys and sticky sampling ---------------------------------------------------


def test_sampled_rule_keeps_each_key_on_one_side_across_calls(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    rule = {**CLASSIFY_TO_MINI, "sample": 0.5}
    routed(llmmeter.RulePolicy(rules=[rule]))
    sides: dict[str, set[str]] = {}
    for _ in range(3):
        for n in range(12):
            key = f"conversation-{n}"
            with llmmeter.task("chat", key=key):
                client.chat.completions.create(model="gpt-4o", messages=MSG)
            sides.setdefault(key, set()).add(_sent_models(server)[-1])
    assert all(len(models) == 1 for models in sides.values())
    routed_keys = [k for k, models in sides.items() if models == {"gpt-4o-mini"}]
    expected = [k for k in sides if llmmeter._policy.stable_fraction("classify-to-mini", k) < 0.5]
    assert routed_keys == expected
    assert 0 < len(routed_keys) < 12


def test_request_user_field_is_the_stickiness_key_without_a_task_key(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    routed(llmmeter.RulePolicy(rules=[{**CLASSIFY_TO_MINI, "sample": 0.5}]))
    users = [f"user-{n}" for n in range(10)]
    for user in users:
        client.chat.completions.create(model="gpt-4o", messages=MSG, user=user)
    want = [
        "gpt-4o-mini" if llmmeter._policy.stable_fraction("classify-to-mini", u) < 0.5 else "gpt-4o"
        for u in users
    ]
    assert _sent_models(server) == want


def test_task_rule_routes_only_inside_the_task(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    rule = {"name": "tagging", "from": "gpt-4o", "to": "gpt-4o-mini", "tasks": ["tagging"]}
    routed(llmmeter.RulePolicy(rules=[rule]))

    @llmmeter.task("tagging")
    def tag() -> None:
        client.chat.completions.create(model="gpt-4o", messages=MSG)

    tag()
    client.chat.completions.create(model="gpt-4o", messages=MSG)
    with llmmeter.task("tagging"):
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent_models(server) == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]


async def test_concurrent_async_tasks_route_by_their_own_labels(
    routed: Any, aclient: Any, server: FakeOpenAI
) -> None:
    import asyncio

    rule = {"name": "tagging", "from": "gpt-4o", "to": "gpt-4o-mini", "tasks": ["tagging"]}
    tel = routed(llmmeter.RulePolicy(rules=[rule]))

    async def one(label: str) -> str:
        with llmmeter.task(label):
            await asyncio.sleep(0)
            result = await aclient.chat.completions.create(model="gpt-4o", messages=MSG)
            return str(result.model)

    labels = ["tagging", "math"] * 20
    models = await asyncio.gather(*(one(label) for label in labels))
    for label, model in zip(labels, models, strict=True):
        assert model.startswith("gpt-4o-mini") == (label == "tagging")
    for span in tel.spans():
        attrs = dict(span.attributes or {})
        assert (attrs["llmmeter.task"] == "tagging") == ("llmmeter.policy.rule" in attrs)


# --- reload ----------------------------------------------------------------------------


def test_policy_file_change_is_picked_up_and_a_bad_change_keeps_the_last_good(
    routed: Any,
    client: Any,
    server: FakeOpenAI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import os

    path = tmp_path / "policy.toml"
    path.write_text('[[rules]]\nname = "r"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n')
    from llmmeter._instrumentor import REGISTRY

    def check_the_file() -> None:  # what the running policy's watcher does every interval
        runtime = REGISTRY.runtime()
        assert runtime is not None and runtime.router is not None
        runtime.router.policy._reload()

    routed(llmmeter.RulePolicy.load(path, reload_interval=3600))
    client.chat.completions.create(model="gpt-4o", messages=MSG)

    path.write_text('[[rules]]\nname = "r2"\nfrom = "gpt-4o"\nto = "gpt-4.1-nano"\n')
    os.utime(path, ns=(1, 10**18))
    check_the_file()
    client.chat.completions.create(model="gpt-4o", messages=MSG)

    path.write_text('[[rules]]\nname = "r3"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nsamp = 1\n')
    os.utime(path, ns=(1, 2 * 10**18))
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        check_the_file()
        client.chat.completions.create(model="gpt-4o", messages=MSG)
        check_the_file()
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert _sent_models(server) == ["gpt-4o-mini", "gpt-4.1-nano", "gpt-4.1-nano", "gpt-4.1-nano"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0] and "samp" in warnings[0] and "last good" in warnings[0]


# --- the SDK's other ways in ------------------------------------------------------------


def test_chat_stream_helper_and_parse_are_routed(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(_policy())
    stream_helper = (
        getattr(client.chat.completions, "stream", None) or client.beta.chat.completions.stream
    )
    with stream_helper(model="gpt-4o", messages=MSG) as stream:
        final = stream.get_final_completion()
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    parsed = parse(model="gpt-4o", messages=MSG)
    assert final.model.startswith("gpt-4o-mini") and parsed.model.startswith("gpt-4o-mini")
    assert _sent_models(server) == ["gpt-4o-mini", "gpt-4o-mini"]
    assert [s.attributes["llmmeter.policy.action"] for s in tel.spans()] == ["route", "route"]


def test_responses_stream_helper_falls_back_before_its_first_event(
    routed: Any, client: Any, server: FakeOpenAI
) -> None:
    tel = routed(_policy())
    server.break_stream_after(0, model="gpt-4o-mini")
    with client.responses.stream(model="gpt-4o", input="Classify: fine") as stream:
        final = stream.get_final_response()
    assert final.output_text == server.reply
    assert final.model.startswith("gpt-4o-2024")
    assert _sent_models(server) == ["gpt-4o-mini", "gpt-4o"]
    assert [s.attributes["llmmeter.policy.action"] for s in tel.spans()] == ["route", "fallback"]


def test_raw_responses_are_routed_and_read(routed: Any, client: Any, server: FakeOpenAI) -> None:
    tel = routed(_policy())
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert raw.parse().model.startswith("gpt-4o-mini")
    attrs = dict(tel.span().attributes or {})
    assert attrs["llmmeter.policy.action"] == "route"
    assert attrs["llmmeter.policy.savings"] > 0
