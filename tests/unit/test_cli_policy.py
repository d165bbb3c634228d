"""The `llmmeter policy` commands: check a policy file, explain a decision and its cost."""

from __future__ import annotations

import io
import json
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmmeter._cli import inputs, main
from llmmeter._cli.common import format_cost
from llmmeter._policy import CallView, stable_fraction
from llmmeter._pricing import Cost, PriceTable
from llmmeter._usage import Usage
from tests.cli_runner import rows, run_cli, without_data_version

DATE = ["--date", "2026-11-01"]  # prices change over time; pin the day
WHEN = datetime(2026, 11, 1, tzinfo=UTC).timestamp()

POLICY = r"""
mode = "enforce"
fallback = "on-error"

[deployments]
"gpt-4o" = "prod-4o"

[[rules]]
name = "classify-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
tasks = ["classify", "tagging"]
prompt = ['(?i)\bclassify\b', '(?i)\bsentiment\b']
max_input_tokens = 4000
allow_images = false

[[rules]]
name = "support-canary"
from = ["gpt-4o"]
to = "gpt-4.1-mini"
tasks = ["support"]
sample = 0.25
mode = "shadow"

[[rules]]
name = "long-reports"
from = ["gpt-4.1"]
to = "gpt-4.1-mini"
apis = ["responses"]
min_input_tokens = 20
max_output_tokens = 1000
allow_tools = false
allow_response_format = false

[[rules]]
name = "acme-to-mini"
from = ["acme-*"]
to = "gpt-4o-mini"
"""

CLASSIFY = "Classify the sentiment of this review: great phone, awful battery."


def verdicts(out: str) -> dict[str, str]:
    """Rule name -> verdict, from explain's table of rules (# rule to mode verdict)."""
    return {row[0]: row[3] for key, row in rows(out).items() if key.isdigit()}


def line(out: str, prefix: str) -> str:
    found = [text for text in out.splitlines() if text.startswith(prefix)]
    assert len(found) == 1, out
    return found[0]


def chat_call(model: str, prompt: str, **kwargs: Any) -> CallView:
    """The view the instrumentation builds for a one-message chat call."""
    messages = [{"role": "user", "content": prompt}]
    return CallView(
        endpoint="chat", operation="chat", model=model, kwargs={"messages": messages}, **kwargs
    )


def price(model: str, input_tokens: int, output_tokens: int = 256) -> Cost:
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    cost = PriceTable.load(None).price(usage, (model,), when=WHEN)
    assert cost is not None
    return cost


@pytest.fixture
def policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return str(path)


# --- check ---------------------------------------------------------------------------


def test_check_shows_settings_and_rules_in_order(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    code, out, err = run_cli(capsys, "policy", "check", policy)
    assert (code, err) == (0, "")
    assert out.splitlines()[:4] == [
        f"{policy}: valid, 4 rules (the first rule a call matches decides)",
        "mode: enforce",
        "fallback: on-error (a failed routed call is re-sent once to the requested model)",
        "deployments: gpt-4o -> prod-4o",
    ]
    table = rows(out)
    assert table["#"] == ["rule", "from", "to", "mode", "sample", "conditions"]
    assert [table[str(n)][0] for n in range(1, 5)] == [
        "classify-to-mini",
        "support-canary",
        "long-reports",
        "acme-to-mini",
    ]
    assert table["1"][1:] == [
        "gpt-4o, gpt-4o-2024-*",
        "gpt-4o-mini",
        "enforce",
        "all",
        r"tasks classify, tagging; prompt /(?i)\bclassify\b/ or /(?i)\bsentiment\b/; "
        "input <= 4,000 tokens; no images",
    ]
    assert table["2"][3:] == ["shadow*", "25%", "tasks support"]
    assert table["3"][5] == (
        "apis responses; input >= 20 tokens; output cap <= 1,000 tokens; no tools; "
        "no structured output"
    )
    assert table["4"][3:] == ["enforce", "all", "any call"]
    assert out.splitlines()[-1] == "* the rule's own mode, not the policy's"


def test_check_json_structure(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    code, out, _ = run_cli(capsys, "policy", "check", policy, "--json")
    assert code == 0
    doc = json.loads(out)
    assert {k: v for k, v in doc.items() if k != "rules"} == {
        "file": policy,
        "valid": True,
        "mode": "enforce",
        "file_mode": "enforce",
        "mode_override": None,
        "fallback": "on-error",
        "deployments": {"gpt-4o": "prod-4o"},
        "routes_nothing": False,
    }
    assert [rule["name"] for rule in doc["rules"]] == [
        "classify-to-mini",
        "support-canary",
        "long-reports",
        "acme-to-mini",
    ]
    assert doc["rules"][0] == {
        "name": "classify-to-mini",
        "from": ["gpt-4o", "gpt-4o-2024-*"],
        "to": "gpt-4o-mini",
        "mode": "enforce",
        "own_mode": None,
        "apis": None,
        "tasks": ["classify", "tagging"],
        "prompt": [r"(?i)\bclassify\b", r"(?i)\bsentiment\b"],
        "min_input_tokens": None,
        "max_input_tokens": 4000,
        "max_output_tokens": None,
        "allow_tools": True,
        "allow_images": False,
        "allow_response_format": True,
        "sample": 1.0,
        "evaluate": 0.0,
        "compare": "exact",
        "agreement_target": 0.95,
    }
    assert (doc["rules"][1]["mode"], doc["rules"][1]["own_mode"]) == ("shadow", "shadow")
    assert doc["rules"][1]["sample"] == 0.25
    assert doc["rules"][2]["apis"] == ["responses"]


def test_check_mode_override_applies_to_every_rule(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    code, out, _ = run_cli(capsys, "policy", "check", policy, "--mode", "off")
    assert code == 0
    assert line(out, "mode: ") == "mode: off (--mode off; the file says enforce)"
    assert {table[3] for key, table in rows(out).items() if key.isdigit()} == {"off"}
    assert out.splitlines()[-1] == "note: every rule is off, so this policy routes nothing"
    code, out, _ = run_cli(capsys, "policy", "check", policy, "--mode", "shadow", "--json")
    doc = json.loads(out)
    assert (doc["mode"], doc["file_mode"], doc["mode_override"]) == ("shadow", "enforce", "shadow")
    assert {rule["mode"] for rule in doc["rules"]} == {"shadow"}


def test_check_shows_the_mode_in_force_for_each_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A policy-wide off turns off rules with their own mode; a rule set to off stays off."""
    path = tmp_path / "modes.toml"
    path.write_text(
        'mode = "off"\n'
        '[[rules]]\nname = "own"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nmode = "enforce"\n'
        '[[rules]]\nname = "paused"\nfrom = "gpt-4.1"\nto = "gpt-4.1-mini"\nmode = "off"\n'
    )
    _, out, _ = run_cli(capsys, "policy", "check", str(path))
    assert [(row[0], row[3]) for key, row in rows(out).items() if key.isdigit()] == [
        ("own", "off"),
        ("paused", "off"),
    ]
    assert out.splitlines()[-1] == "note: every rule is off, so this policy routes nothing"
    _, out, _ = run_cli(capsys, "policy", "check", str(path), "--mode", "shadow")
    assert [(row[0], row[3]) for key, row in rows(out).items() if key.isdigit()] == [
        ("own", "shadow"),
        ("paused", "off*"),
    ]
    assert out.splitlines()[-1] == "* the rule's own mode, not the policy's"
    _, out, _ = run_cli(capsys, "policy", "check", str(path), "--mode", "shadow", "--json")
    modes = [(rule["mode"], rule["own_mode"]) for rule in json.loads(out)["rules"]]
    assert modes == [("shadow", "enforce"), ("off", "off")]


def test_check_ignores_the_policy_mode_variable(
    capsys: pytest.CaptureFixture[str], policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command shows the file as written; only --mode shows an override."""
    monkeypatch.setenv("LLMMETER_POLICY_MODE", "off")
    _, out, _ = run_cli(capsys, "policy", "check", policy)
    assert line(out, "mode: ") == "mode: enforce"


def test_check_file_without_rules_routes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "empty.toml"
    path.write_text('mode = "shadow"\nfallback = "off"\n')
    code, out, err = run_cli(capsys, "policy", "check", str(path))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{path}: valid, 0 rules",
        "mode: shadow",
        "fallback: off (a routed call that fails raises its error)",
        "deployments: none",
        "note: no rules, so this policy routes nothing",
    ]
    _, out, _ = run_cli(capsys, "policy", "check", str(path), "--json")
    assert json.loads(out)["rules"] == []
    assert json.loads(out)["routes_nothing"] is True


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (
            '[[rules]]\nname = "a"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nsampel = 0.5\n',
            "rules[0] (a).sampel: unknown key",
        ),
        (
            '[[rules]]\nname = "a"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nsample = 2\n',
            "rules[0] (a).sample: expected a fraction of calls from 0 to 1; got 2",
        ),
        (
            '[[rules]]\nname = "a"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nprompt = ["("]\n',
            "rules[0] (a).prompt[0]: expected a regular expression",
        ),
        (  # patterns RE2 cannot run in linear time: which one, and why
            '[[rules]]\nname = "a"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n'
            "prompt = ['ok', '(a+)\\1']\n",
            "rules[0] (a).prompt[1]: expected a regular expression without backreferences "
            "(\\1): RE2 has none, because they need backtracking",
        ),
        (
            '[[rules]]\nname = "a"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n'
            "prompt = '(?<!un)happy'\n",
            "rules[0] (a).prompt[0]: expected a regular expression without negative lookbehind",
        ),
        ('mode = "loud"\n', "mode: expected one of 'enforce', 'shadow', 'off'; got 'loud'"),
        ("mode = \n", "not valid TOML"),
    ],
)
def test_check_invalid_file_is_one_line_naming_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, named: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    for command in ("check", "explain"):
        extra = ["--model", "gpt-4o", "--prompt", "hi"] if command == "explain" else []
        code, out, err = run_cli(capsys, "policy", command, str(path), *extra)
        assert (code, out) == (2, "")
        assert err.count("\n") == 1
        assert err.startswith(f"llmmeter: error: {path}: {named}")


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "policy", "check", str(tmp_path / "nope.toml"))
    assert code == 2
    assert err == (
        f"llmmeter: error: {tmp_path / 'nope.toml'}: cannot read the policy file: "
        "No such file or directory\n"
    )


# --- explain -------------------------------------------------------------------------


def test_explain_matching_rule_routes_and_prices_the_saving(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    code, out, err = run_cli(
        capsys,
        "policy",
        "explain",
        policy,
        "--model",
        "gpt-4o",
        "--task",
        "classify",
        "--prompt",
        CLASSIFY,
        *DATE,
    )
    assert (code, err) == (0, "")
    tokens = chat_call("gpt-4o", CLASSIFY).input_tokens
    assert line(out, "Call: ") == (
        f"Call: chat_completions, model gpt-4o, task classify, no key, ~{tokens} input tokens "
        "(estimate)"
    )
    assert verdicts(out)["classify-to-mini"] == "matches: this rule decides"
    assert verdicts(out)["long-reports"] == "model 'gpt-4o' matches none of from = ['gpt-4.1']"
    assert line(out, "Decision: ") == (
        "Decision: rule classify-to-mini (the first that matches) routes the call to gpt-4o-mini."
    )
    assert line(out, "Mode: ") == (
        "Mode: enforce: the request goes out to gpt-4o-mini; if it fails it is re-sent once to "
        "gpt-4o."
    )
    requested, target = price("gpt-4o", tokens), price("gpt-4o-mini", tokens)
    table = rows(out)
    assert table["requested"][:3] == [
        "gpt-4o",
        format_cost(requested.total),
        format_cost(requested.total * 1_000_000),
    ]
    assert table["target"][:3] == [
        "gpt-4o-mini",
        format_cost(target.total),
        format_cost(target.total * 1_000_000),
    ]
    saving = requested.total - target.total
    assert saving > 0
    assert line(out, "Saving: ") == (
        f"Saving: {format_cost(saving)} per call, {format_cost(saving * 1_000_000)} per 1M calls."
    )


def test_explain_no_match_gives_each_rules_reason(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    code, out, _ = run_cli(
        capsys,
        "policy",
        "explain",
        policy,
        "--model",
        "gpt-4o",
        "--task",
        "classify",
        "--images",
        "--prompt",
        CLASSIFY,
        *DATE,
    )
    assert code == 0
    assert verdicts(out) == {
        "classify-to-mini": "the call has image input and allow_images = false",
        "support-canary": "task 'classify'; the rule needs one of tasks = ['support']",
        "long-reports": "model 'gpt-4o' matches none of from = ['gpt-4.1']",
        "acme-to-mini": "model 'gpt-4o' matches none of from = ['acme-*']",
    }
    assert line(out, "Decision: ") == "Decision: no rule matches; the call stays on gpt-4o."
    assert "target" not in rows(out)
    assert "Saving" not in out
    assert "Mode: " not in out


@pytest.mark.parametrize(
    ("argv", "rule", "reason"),
    [
        (["--task", "tagging", "--prompt", "Tag this."], "classify-to-mini", "the prompt"),
        (["--prompt", CLASSIFY], "classify-to-mini", "no task; the rule needs one of"),
        (
            ["--task", "classify", "--prompt", "classify " + "x" * 17_000],
            "classify-to-mini",
            "input tokens > max_input_tokens = 4000",
        ),
    ],
)
def test_explain_reasons_for_each_condition(
    capsys: pytest.CaptureFixture[str], policy: str, argv: list[str], rule: str, reason: str
) -> None:
    _, out, _ = run_cli(capsys, "policy", "explain", policy, "--model", "gpt-4o", *argv, *DATE)
    assert reason in verdicts(out)[rule]


def test_explain_responses_call_shape(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    """--api responses puts the prompt in input and --system in instructions."""
    argv = ["policy", "explain", policy, "--model", "gpt-4.1", "--api", "responses", *DATE]
    system, prompt = "Summarise the quarterly report.", "Revenue rose 5%. " * 6
    call = CallView(
        endpoint="responses",
        operation="chat",
        model="gpt-4.1",
        kwargs={"input": prompt, "instructions": system},
    )
    _, out, _ = run_cli(capsys, *argv, "--prompt", prompt, "--system", system, "--json")
    doc = json.loads(out)
    assert doc["call"]["input_tokens"] == call.input_tokens
    # long-reports needs an output cap of at most 1000 tokens
    assert doc["rules"][2]["reason"] == "max_output_tokens"
    assert doc["decision"]["rule"] is None
    _, out, _ = run_cli(
        capsys, *argv, "--prompt", prompt, "--system", system, "--max-output-tokens", "500"
    )
    assert verdicts(out)["long-reports"] == "matches: this rule decides"
    for flag, reason in (
        ("--tools", "the call offers tools and allow_tools = false"),
        ("--response-format", "allow_response_format = false"),
    ):
        _, out, _ = run_cli(
            capsys, *argv, "--prompt", prompt, "--max-output-tokens", "500", flag, "--json"
        )
        assert reason in json.loads(out)["rules"][2]["explanation"]


def test_explain_completions_call_and_its_refused_options(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    argv = ["policy", "explain", policy, "--model", "gpt-4.1", "--api", "completions"]
    code, out, _ = run_cli(capsys, *argv, "--prompt", "x" * 100, "--json", *DATE)
    assert code == 0
    doc = json.loads(out)
    assert doc["call"]["api"] == "completions"
    assert doc["call"]["input_tokens"] == 25
    assert doc["rules"][2]["explanation"] == ("api 'completions' is not in apis = ['responses']")
    for flag in ("--tools", "--images", "--response-format", "--system=be brief"):
        code, out, err = run_cli(capsys, *argv, "--prompt", "x", flag)
        assert (code, out) == (2, "")
        assert err.startswith(f"llmmeter: error: {flag.split('=')[0]} does not apply to --api")


def test_explain_sampled_rule_with_a_key_is_reproducible(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    positions = {f"user-{n}": stable_fraction("support-canary", f"user-{n}") for n in range(50)}
    inside = next(key for key, position in positions.items() if position < 0.25)
    outside = next(key for key, position in positions.items() if position >= 0.25)
    base = ["policy", "explain", policy, "--model", "gpt-4o", "--task", "support", *DATE]
    prompt = ["--prompt", "My order never arrived."]

    first = run_cli(capsys, *base, *prompt, "--key", inside)
    assert run_cli(capsys, *base, *prompt, "--key", inside) == first
    out = first[1]
    assert line(out, "Decision: ") == (
        f"Decision: rule support-canary (the first that matches) would route the call to "
        f"gpt-4.1-mini: key {inside!r} falls inside its 25% canary (position "
        f"{positions[inside]:.4f}, below 0.25); the same key gets the same decision in every "
        "process."
    )
    assert line(out, "Mode: ").startswith("Mode: shadow: the request goes out unchanged to gpt-4o")
    assert line(out, "Saving ").startswith("Saving (shadow mode: reported on spans, not realised)")

    _, out, _ = run_cli(capsys, *base, *prompt, "--key", outside)
    assert line(out, "Decision: ") == (
        f"Decision: rule support-canary (the first that matches) would route 25% of calls to "
        f"gpt-4.1-mini, but key {outside!r} falls outside that canary (position "
        f"{positions[outside]:.4f}, not below 0.25): the call stays on gpt-4o, and the rules "
        "after it are not tried."
    )
    assert line(out, "Saving: ").startswith("Saving: none for this call; a routed call would save")

    for key, routed in ((inside, True), (outside, False)):
        _, out, _ = run_cli(capsys, *base, *prompt, "--key", key, "--json")
        decision = json.loads(out)["decision"]
        assert decision["routed"] is routed
        assert decision["routed_share"] == (1.0 if routed else 0.0)
        assert decision["key_position"] == positions[key]
        assert decision["model_sent"] == "gpt-4o"  # shadow: the request is untouched


def test_explain_sampled_rule_without_a_key_gives_the_share(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    prompt = "My order never arrived."
    argv = ["policy", "explain", policy, "--model", "gpt-4o", "--task", "support"]
    _, out, _ = run_cli(capsys, *argv, "--prompt", prompt, *DATE)
    assert line(out, "Decision: ").startswith(
        "Decision: rule support-canary (the first that matches) would route 25% of such calls "
        "to gpt-4.1-mini and leaves the rest on gpt-4o. Without --key"
    )
    tokens = chat_call("gpt-4o", prompt).input_tokens
    saving = price("gpt-4o", tokens).total - price("gpt-4.1-mini", tokens).total
    assert line(out, "Saving ") == (
        "Saving (shadow mode: reported on spans, not realised): "
        f"{format_cost(saving)} per routed call; with 25% of calls routed, "
        f"{format_cost(saving * 0.25 * 1_000_000)} per 1M calls like this one."
    )
    _, out, _ = run_cli(capsys, *argv, "--prompt", prompt, *DATE, "--json")
    doc = json.loads(out)
    assert doc["decision"] == {
        "rule": "support-canary",
        "target": "gpt-4.1-mini",
        "mode": "shadow",
        "routed": None,
        "model_sent": None,
        "routed_share": 0.25,
        "sample": 0.25,
        "key_position": None,
    }
    assert doc["cost"]["saving_per_1m_calls"] == pytest.approx(saving * 0.25 * 1_000_000)


def test_explain_json(capsys: pytest.CaptureFixture[str], policy: str) -> None:
    code, out, _ = run_cli(
        capsys,
        "policy",
        "explain",
        policy,
        "--model",
        "gpt-4o",
        "--task",
        "classify",
        "--prompt",
        CLASSIFY,
        "--output-tokens",
        "1k",
        "--json",
        *DATE,
    )
    assert code == 0
    doc = json.loads(out)
    tokens = chat_call("gpt-4o", CLASSIFY).input_tokens
    assert doc["call"] == {
        "api": "chat_completions",
        "model": "gpt-4o",
        "task": "classify",
        "key": None,
        "input_tokens": tokens,
        "output_tokens": 1000,
        "tools": False,
        "images": False,
        "response_format": False,
        "max_output_tokens": None,
    }
    assert [(r["name"], r["matches"], r["decides"], r["reason"]) for r in doc["rules"]] == [
        ("classify-to-mini", True, True, None),
        ("support-canary", False, False, "task"),
        ("long-reports", False, False, "model"),
        ("acme-to-mini", False, False, "model"),
    ]
    assert doc["decision"] == {
        "rule": "classify-to-mini",
        "target": "gpt-4o-mini",
        "mode": "enforce",
        "routed": True,
        "model_sent": "gpt-4o-mini",
        "routed_share": 1.0,
        "sample": 1.0,
        "key_position": None,
    }
    requested = price("gpt-4o", tokens, 1000)
    target = price("gpt-4o-mini", tokens, 1000)
    cost = doc["cost"]
    assert (cost["date"], cost["currency"], cost["input_tokens"], cost["output_tokens"]) == (
        "2026-11-01",
        "USD",
        tokens,
        1000,
    )
    for side, expected in (("requested", requested), ("target", target)):
        assert cost[side]["known"] is True
        assert cost[side]["resolved_model"] == expected.model
        assert cost[side]["ref"] == expected.ref
        assert cost[side]["per_call"] == pytest.approx(
            {"input": expected.input, "output": expected.output, "total": expected.total}
        )
        assert cost[side]["per_1m_calls"] == pytest.approx(expected.total * 1_000_000)
    saving = requested.total - target.total
    assert cost["saving_per_routed_call"] == pytest.approx(saving)
    assert cost["saving_per_1m_calls"] == pytest.approx(saving * 1_000_000)


def test_explain_unknown_model_has_no_price_not_zero(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    argv = ["policy", "explain", policy, "--model", "acme-llm", "--prompt", "Hello", *DATE]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert verdicts(out)["acme-to-mini"] == "matches: this rule decides"
    assert rows(out)["requested"] == ["acme-llm", "no price known"]
    assert rows(out)["target"][0] == "gpt-4o-mini"
    assert line(out, "Saving: ") == "Saving: unknown, since acme-llm has no price."
    assert "$0.00 " not in out
    _, out, _ = run_cli(capsys, *argv, "--json")
    cost = json.loads(out)["cost"]
    assert cost["requested"] == {
        "model": "acme-llm",
        "known": False,
        "resolved_model": None,
        "ref": None,
        "per_call": None,
        "per_1m_calls": None,
    }
    assert cost["target"]["known"] is True
    assert (cost["saving_per_routed_call"], cost["saving_per_1m_calls"]) == (None, None)


def test_explain_prices_overrides_price_an_unknown_model(
    capsys: pytest.CaptureFixture[str], policy: str, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."acme-llm"]\ninput = 1.0\noutput = 4.0\n')
    argv = ["policy", "explain", policy, "--model", "acme-llm", "--prompt", "Hello", *DATE]
    _, out, _ = run_cli(capsys, *argv, "--prices", str(prices))
    tokens = chat_call("acme-llm", "Hello").input_tokens
    acme = tokens * 1.0 / 1e6 + 256 * 4.0 / 1e6
    assert rows(out)["requested"][:2] == ["acme-llm", format_cost(acme)]
    saving = acme - price("gpt-4o-mini", tokens).total
    assert line(out, "Saving: ") == (
        f"Saving: {format_cost(saving)} per call, {format_cost(saving * 1_000_000)} per 1M calls."
    )


def test_explain_target_that_costs_more_is_an_extra_cost(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "up.toml"
    path.write_text('[[rules]]\nname = "up"\nfrom = "gpt-4o-mini"\nto = "gpt-4o"\n')
    _, out, _ = run_cli(
        capsys, "policy", "explain", str(path), "--model", "gpt-4o-mini", "--prompt", "hi", *DATE
    )
    tokens = chat_call("gpt-4o-mini", "hi").input_tokens
    extra = price("gpt-4o", tokens).total - price("gpt-4o-mini", tokens).total
    assert line(out, "Extra cost: ") == (
        f"Extra cost: {format_cost(extra)} per call, {format_cost(extra * 1_000_000)} per 1M calls."
    )


def test_explain_rule_that_is_off_is_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "off.toml"
    path.write_text(
        '[[rules]]\nname = "paused"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nmode = "off"\n'
        '[[rules]]\nname = "same"\nfrom = "gpt-4o*"\nto = "gpt-4o"\n'
    )
    argv = ["policy", "explain", str(path), "--model", "gpt-4o", "--prompt", "hi", *DATE]
    _, out, _ = run_cli(capsys, *argv)
    assert verdicts(out) == {
        "paused": "matches, but the rule is off",
        "same": "matches: this rule decides",
    }
    assert line(out, "Decision: ") == (
        "Decision: rule same (the first rule that matches and is not off) routes to gpt-4o, the "
        "model requested: the call stays on it."
    )
    _, out, _ = run_cli(capsys, *argv, "--mode", "off")
    assert line(out, "Decision: ") == (
        "Decision: every rule that matches is off; the call stays on gpt-4o."
    )


def test_explain_rule_with_sample_zero_routes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "zero.toml"
    path.write_text(
        '[[rules]]\nname = "zero"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\nsample = 0\n'
        '[[rules]]\nname = "later"\nfrom = "gpt-4o"\nto = "gpt-4.1-mini"\n'
    )
    argv = ["policy", "explain", str(path), "--model", "gpt-4o", "--prompt", "hi", *DATE]
    for key in ([], ["--key", "user-1"]):
        _, out, _ = run_cli(capsys, *argv, *key)
        assert line(out, "Decision: ") == (
            "Decision: rule zero (the first that matches) has sample = 0, so it routes no "
            "calls: the call stays on gpt-4o, and the rules after it are not tried."
        )
        _, out, _ = run_cli(capsys, *argv, *key, "--json")
        decision = json.loads(out)["decision"]
        assert (decision["routed"], decision["model_sent"]) == (False, "gpt-4o")
        assert (decision["routed_share"], decision["key_position"]) == (0.0, None)


def test_explain_mode_override_turns_a_route_into_shadow(
    capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    argv = ["policy", "explain", policy, "--model", "gpt-4o", "--task", "classify"]
    _, out, _ = run_cli(capsys, *argv, "--prompt", CLASSIFY, "--mode", "shadow", "--json")
    doc = json.loads(out)
    assert (doc["mode"], doc["mode_override"]) == ("shadow", "shadow")
    assert doc["decision"]["mode"] == "shadow"
    assert doc["decision"]["model_sent"] == "gpt-4o"


def test_explain_prompt_file_equals_prompt(
    capsys: pytest.CaptureFixture[str],
    policy: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text(CLASSIFY, encoding="utf-8")
    base = ["policy", "explain", policy, "--model", "gpt-4o", "--task", "classify", *DATE]
    given = run_cli(capsys, *base, "--prompt", CLASSIFY)
    assert run_cli(capsys, *base, "--prompt-file", str(path)) == given
    monkeypatch.setattr("sys.stdin", io.StringIO(CLASSIFY))
    assert run_cli(capsys, *base, "--prompt-file", "-") == given
    assert "matches: this rule decides" in given[1]


@pytest.mark.parametrize("source", ["file", "/dev/zero", "stdin"])
def test_explain_prompt_file_past_the_bound_is_one_error_line(
    capsys: pytest.CaptureFixture[str],
    policy: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    """A prompt file is read whole, so it has a bound: /dev/zero ends at it too."""
    monkeypatch.setattr(inputs, "MAX_FILE", 1024)
    path = tmp_path / "prompt.txt"
    path.write_text("x" * 1025)
    monkeypatch.setattr("sys.stdin", io.StringIO("x" * 1025))
    name = {"file": str(path), "/dev/zero": "/dev/zero", "stdin": "-"}[source]
    base = ["policy", "explain", policy, "--model", "gpt-4o", "--prompt-file", name]
    code, out, err = run_cli(capsys, *base)
    assert (code, out) == (2, "")
    assert err == (
        f"llmmeter: error: --prompt-file {name}: longer than 1 KiB, the most llmmeter reads of it\n"
    )


# --- usage errors and help -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["explain", "{policy}", "--prompt", "hi"],
            "the following arguments are required: --model (see 'llmmeter policy explain --help')",
        ),
        (
            ["explain", "{policy}", "--model", "gpt-4o", "--prompt", "hi", "--prompt-file", "p"],
            "argument --prompt-file: not allowed with argument --prompt",
        ),
        (
            ["explain", "{policy}", "--model", "gpt-4o"],
            "one of the arguments --prompt --prompt-file is required",
        ),
        (
            ["explain", "{policy}", "--model", "gpt-4o", "--prompt-file", "{missing}"],
            "cannot read --prompt-file {missing}: No such file or directory",
        ),
        (
            ["explain", "{policy}", "--model", "gpt-4o", "--prompt", "hi", "--api", "chat"],
            "argument --api: invalid choice: 'chat'",
        ),
        (
            ["explain", "{policy}", "--model", "m", "--prompt", "hi", "--output-tokens", "0"],
            "argument --output-tokens: expected a positive whole number of tokens",
        ),
        (
            ["explain", "{policy}", "--model", "m", "--prompt", "hi", "--bogus"],
            "unrecognized arguments: --bogus (see 'llmmeter policy explain --help')",
        ),
        (
            ["check", "{policy}", "extra.toml"],
            "unrecognized arguments: extra.toml (see 'llmmeter policy check --help')",
        ),
        (["check"], "the following arguments are required: FILE"),
        (["check", "{policy}", "--mode", "loud"], "argument --mode: invalid choice: 'loud'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    policy: str,
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    missing = str(tmp_path / "missing.txt")
    argv = [arg.format(policy=policy, missing=missing) for arg in argv]
    code, out, err = run_cli(capsys, "policy", *argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("llmmeter: error: " + message.format(missing=missing))


def test_explain_invalid_prices_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], policy: str, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."x"]\ninput = "cheap"\n')
    argv = ["policy", "explain", policy, "--model", "gpt-4o", "--prompt", "hi"]
    code, out, err = run_cli(capsys, *argv, "--prices", str(prices))
    assert (code, out) == (2, "")
    assert err.startswith(f"llmmeter: error: {prices}")


@pytest.mark.parametrize(
    ("argv", "shows"),
    [
        (["--help"], "check or explain a\nrouting policy file"),
        (["policy", "--help"], "usage: llmmeter policy [-h] COMMAND"),
        (["policy", "check", "--help"], "--mode {enforce,shadow,off}"),
        (["policy", "explain", "--help"], "(--prompt TEXT | --prompt-file PATH)"),
    ],
)
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], shows: str) -> None:
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert shows in out
    assert "policy" in out


# --- docs/cli.md ---------------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def policy_section() -> str:
    text = DOCS.read_text()
    return text[text.index("## `llmmeter policy`") :]


def doc_examples() -> list[tuple[str, str]]:
    """(command line, shown output) of each example in the `llmmeter policy` section.

    The section fences its examples as ``text``: tests/unit/test_cli.py runs the ``console`` blocks
    with only the prices file in place.
    """
    blocks = re.findall(r"```text\n\$ llmmeter (.*?)\n(.*?)```", policy_section(), flags=re.S)
    return [(command, output) for command, output in blocks]


def test_docs_have_policy_examples() -> None:
    assert len(doc_examples()) >= 8


@pytest.mark.parametrize(("command", "shown"), doc_examples(), ids=lambda v: str(v)[:60])
def test_docs_show_real_output(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: str,
    shown: str,
) -> None:
    """Each `llmmeter policy` example in docs/cli.md prints what the page says."""
    files = re.findall(r"`([\w.-]+\.toml)`[^`]*?:\n\n```toml\n(.*?)```", policy_section(), re.S)
    assert [name for name, _ in files] == ["policy.toml", "broken.toml"]
    for name, content in files:
        (tmp_path / name).write_text(content)
    monkeypatch.chdir(tmp_path)
    main(shlex.split(command))
    captured = capsys.readouterr()
    assert without_data_version(captured.out + captured.err) == without_data_version(shown)
