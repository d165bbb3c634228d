"""RulePolicy: strict validation of policy files, rule matching, sticky sampling, live reload.

Everything here runs without a network: a policy only ever sees a ``CallView`` built from
the call's keyword arguments.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from openai import NOT_GIVEN

from llmmeter import _configfile, _rules
from llmmeter._policy import (
    PROMPT_WINDOW,
    CallView,
    Policy,
    Route,
    sampled,
    stable_fraction,
)
from llmmeter._rules import (
    API,
    IMAGES,
    MAX_INPUT_TOKENS,
    MAX_OUTPUT_TOKENS,
    MIN_INPUT_TOKENS,
    MODEL,
    PROMPT,
    RESPONSE_FORMAT,
    TASK,
    TOOLS,
    RulePolicy,
    describe,
)
from llmmeter.exceptions import ConfigError

# --- helpers ----------------------------------------------------------------------------

OPERATIONS = {"chat": "chat", "responses": "chat", "completions": "text_completion"}


def call(
    model: str = "gpt-4o",
    *,
    endpoint: str = "chat",
    task: str | None = None,
    key: str | None = None,
    **kwargs: Any,
) -> CallView:
    """A CallView of one request (a one-message chat unless told otherwise)."""
    if endpoint == "chat":
        kwargs.setdefault("messages", [{"role": "user", "content": "hello"}])
    elif endpoint == "responses":
        kwargs.setdefault("input", "hello")
    else:
        kwargs.setdefault("prompt", "hello")
    return CallView(
        endpoint=endpoint,
        operation=OPERATIONS[endpoint],
        model=model,
        kwargs={"model": model, **kwargs},
        task=task,
        key=key,
    )


def rule(name: str = "classify", **keys: Any) -> dict[str, Any]:
    """A rule table routing gpt-4o to gpt-4o-mini, plus ``keys`` (``from_`` for ``from``)."""
    table: dict[str, Any] = {"name": name, "from": keys.pop("from_", "gpt-4o")}
    table["to"] = keys.pop("to", "gpt-4o-mini")
    table.update(keys)
    return table


def policy(*rules: Mapping[str, Any], **kwargs: Any) -> RulePolicy:
    return RulePolicy(rules=list(rules or [rule()]), **kwargs)


def routed(p: RulePolicy, c: CallView) -> str | None:
    """The model ``p`` sends ``c`` to, or None."""
    route = p.decide(c)
    return None if route is None else route.model


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rewrite(path: Path, text: str) -> None:
    """Replace the file's text and move its mtime on, so that a reload check cannot miss it
    on a filesystem with coarse timestamps."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    later = before + 2_000_000_000
    os.utime(path, ns=(later, later))


def toml_rule(name: str, to: str = "gpt-4o-mini", extra: str = "") -> str:
    return f'[[rules]]\nname = "{name}"\nfrom = "gpt-4o"\nto = "{to}"\n{extra}'


def independent_fraction(rule_name: str, key: str) -> float:
    digest = hashlib.sha256(f"{rule_name}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- validation: one ConfigError naming file, key path, expected and found ---------------

FIRST_RULE = toml_rule("first")


def second(fields: Mapping[str, str | None]) -> str:
    """A file with a good rules[0] and a rules[1] "classify" changed by ``fields`` (TOML
    literals; None drops the key)."""
    table: dict[str, str | None] = {"name": '"classify"', "from": '"gpt-4o"', "to": '"gpt-4o-mini"'}
    table.update(fields)
    body = "".join(f"{key} = {value}\n" for key, value in table.items() if value is not None)
    return f"{FIRST_RULE}\n[[rules]]\n{body}"


R1 = "rules[1] (classify)"
NAME = "1-64 characters of letters, digits"
MODEL_NAME = "a model name (no spaces or glob characters)"
TOKENS_0 = "a whole number of tokens >= 0"
TOKENS_1 = "a whole number of tokens >= 1"
BOOL = "true or false"
FRACTION = "a fraction of calls from 0 to 1"
EMPTY_MATCH = "a pattern that does not match every prompt"
MODES = "one of 'enforce', 'shadow', 'off'"

# (file text, key path, start of what was expected, the value found)
WRONG_VALUES: dict[str, tuple[str, str, str, Any]] = {
    "mode-unknown": ('mode = "fast"\n', "mode", MODES, "fast"),
    "mode-not-str": ("mode = 1\n", "mode", MODES, 1),
    "fallback-unknown": ('fallback = "always"\n', "fallback", "one of 'on-error', 'off'", "always"),
    "rules-not-array": ('rules = "all"\n', "rules", "an array of tables ([[rules]])", "all"),
    "rule-not-table": ("rules = [1]\n", "rules[0]", "a table with name, from and to", 1),
    "deployments-not-table": (
        'deployments = ["a"]\n',
        "deployments",
        'a table of model = "deployment name"',
        ["a"],
    ),
    "deployment-not-str": (
        "[deployments]\ngpt-4o = 3\n",
        "deployments.gpt-4o",
        "a non-empty deployment name",
        3,
    ),
    "deployment-blank": (
        '[deployments]\ngpt-4o = " "\n',
        "deployments.gpt-4o",
        "a non-empty deployment name",
        " ",
    ),
    "name-with-space": (second({"name": '"classify me"'}), "rules[1].name", NAME, "classify me"),
    "name-leading-dash": (second({"name": '"-classify"'}), "rules[1].name", NAME, "-classify"),
    "name-too-long": (second({"name": f'"{"a" * 65}"'}), "rules[1].name", NAME, "a" * 65),
    "name-trailing-newline": (
        second({"name": '"classify\\n"'}),
        "rules[1].name",
        NAME,
        "classify\n",
    ),
    "name-empty": (second({"name": '""'}), "rules[1].name", NAME, ""),
    "name-not-str": (second({"name": "3"}), "rules[1].name", NAME, 3),
    "from-not-str": (second({"from": "3"}), f"{R1}.from", "a string or a non-empty array", 3),
    "from-empty-array": (second({"from": "[]"}), f"{R1}.from", "a string or a non-empty", []),
    "from-item-not-str": (
        second({"from": '["gpt-4o", 4]'}),
        f"{R1}.from[1]",
        "a non-empty string",
        4,
    ),
    "from-item-blank": (second({"from": '[" "]'}), f"{R1}.from[0]", "a non-empty string", " "),
    "glob-unclosed-set": (
        second({"from": '"gpt-4o["'}),
        f"{R1}.from[0]",
        "a model glob (an unclosed '[' character set)",
        "gpt-4o[",
    ),
    "glob-with-space": (
        second({"from": '["gpt-4o", "gpt 4o"]'}),
        f"{R1}.from[1]",
        "a model glob (no whitespace)",
        "gpt 4o",
    ),
    "glob-stray-bracket": (
        second({"from": '"gpt-4o]"'}),
        f"{R1}.from[0]",
        "a model glob (a ']' without its '[')",
        "gpt-4o]",
    ),
    "to-star": (second({"to": '"gpt-4o-*"'}), f"{R1}.to", MODEL_NAME, "gpt-4o-*"),
    "to-question-mark": (second({"to": '"gpt-4o-min?"'}), f"{R1}.to", MODEL_NAME, "gpt-4o-min?"),
    "to-set": (second({"to": '"gpt-[4]o"'}), f"{R1}.to", MODEL_NAME, "gpt-[4]o"),
    "to-space": (second({"to": '"gpt 4o"'}), f"{R1}.to", MODEL_NAME, "gpt 4o"),
    "to-trailing-newline": (
        second({"to": '"gpt-4o-mini\\n"'}),
        f"{R1}.to",
        MODEL_NAME,
        "gpt-4o-mini\n",
    ),
    "to-empty": (second({"to": '""'}), f"{R1}.to", MODEL_NAME, ""),
    "to-not-str": (second({"to": "4"}), f"{R1}.to", MODEL_NAME, 4),
    "to-array": (second({"to": '["gpt-4o-mini"]'}), f"{R1}.to", MODEL_NAME, ["gpt-4o-mini"]),
    "rule-mode-unknown": (second({"mode": '"loud"'}), f"{R1}.mode", MODES, "loud"),
    "rule-mode-not-str": (second({"mode": "true"}), f"{R1}.mode", MODES, True),
    "apis-unknown": (
        second({"apis": '["chat"]'}),
        f"{R1}.apis[0]",
        "one of chat_completions, responses, completions",
        "chat",
    ),
    "apis-not-array": (
        second({"apis": "1"}),
        f"{R1}.apis",
        "a string or a non-empty array of API names",
        1,
    ),
    "apis-empty": (second({"apis": "[]"}), f"{R1}.apis", "a string or a non-empty array", []),
    "tasks-item-not-str": (second({"tasks": "[1]"}), f"{R1}.tasks[0]", "a non-empty string", 1),
    "tasks-table": (
        second({"tasks": "{}"}),
        f"{R1}.tasks",
        "a string or a non-empty array of task labels",
        {},
    ),
    "prompt-not-str": (
        second({"prompt": "1"}),
        f"{R1}.prompt",
        "a string or a non-empty array of regular expressions",
        1,
    ),
    "prompt-unclosed-group": (
        second({"prompt": "['(?i)ok', '(unclosed']"}),
        f"{R1}.prompt[1]",
        "a regular expression RE2 can compile (missing ): (unclosed)",
        "(unclosed",
    ),
    "prompt-bad-range": (
        second({"prompt": "'[z-a]'"}),
        f"{R1}.prompt[0]",
        "a regular expression RE2 can compile (invalid character class range: z-a)",
        "[z-a]",
    ),
    # RE2 runs prompt patterns; what it cannot run in linear time is refused with the reason.
    "prompt-backreference": (
        second({"prompt": r"['ok', '(\w)\1']"}),
        f"{R1}.prompt[1]",
        "a regular expression without backreferences (\\1): RE2 has none, because they need "
        "backtracking, whose time can explode",
        "(\\w)\\1",
    ),
    "prompt-lookahead": (
        second({"prompt": "'urgent(?!ly)'"}),
        f"{R1}.prompt[0]",
        "a regular expression without negative lookahead (?!...)",
        "urgent(?!ly)",
    ),
    "prompt-possessive": (
        second({"prompt": "'a++b'"}),
        f"{R1}.prompt[0]",
        "a regular expression without possessive quantifiers (++)",
        "a++b",
    ),
    "prompt-python-end-anchor": (
        second({"prompt": "'done\\Z'"}),
        f"{R1}.prompt[0]",
        "a regular expression RE2 can compile (invalid escape sequence: \\Z; "
        "RE2 writes the end of the text \\z)",
        "done\\Z",
    ),
    "prompt-verbose-flag": (
        second({"prompt": "'(?x) a b'"}),
        f"{R1}.prompt[0]",
        "a regular expression RE2 can compile (invalid perl operator: (?x; RE2's inline flags",
        "(?x) a b",
    ),
    "prompt-ascii-boundary-next-to-non-ascii": (
        second({"prompt": "'(?i)\\bcafé\\b'"}),
        f"{R1}.prompt[0]",
        "\\b and \\B only next to ASCII characters (this one touches 'é')",
        "(?i)\\bcafé\\b",
    ),
    "prompt-too-large": (
        second({"prompt": "'refund.{0,500}urgent'"}),
        f"{R1}.prompt[0]",
        "patterns that compile to at most 3000 RE2 instructions (this one: 45",
        "refund.{0,500}urgent",
    ),
    "prompt-too-wide": (
        second({"prompt": "'a[ab]{0,600}x'"}),
        f"{R1}.prompt[0]",
        "patterns with at most 1000 places a match can be at (this one: 120",
        "a[ab]{0,600}x",
    ),
    "prompt-too-large-together": (
        second({"prompt": "['ok', '\\pL+x', '\\pL+y', '[^\\pL]z', 'no']"}),
        f"{R1}.prompt",
        "patterns that compile to at most 3000 RE2 instructions (these together: 3",
        ["ok", "\\pL+x", "\\pL+y", "[^\\pL]z", "no"],
    ),
    "prompt-matches-empty": (
        second({"prompt": "['classify', 'a*']"}),
        f"{R1}.prompt[1]",
        EMPTY_MATCH,
        "a*",
    ),
    "prompt-only-flags": (second({"prompt": "'(?i)'"}), f"{R1}.prompt[0]", EMPTY_MATCH, "(?i)"),
    "prompt-empty-branch": (second({"prompt": "'x|'"}), f"{R1}.prompt[0]", EMPTY_MATCH, "x|"),
    "min-input-negative": (
        second({"min_input_tokens": "-1"}),
        f"{R1}.min_input_tokens",
        TOKENS_0,
        -1,
    ),
    "min-input-float": (
        second({"min_input_tokens": "1.5"}),
        f"{R1}.min_input_tokens",
        TOKENS_0,
        1.5,
    ),
    "min-input-bool": (
        second({"min_input_tokens": "true"}),
        f"{R1}.min_input_tokens",
        TOKENS_0,
        True,
    ),
    "min-input-str": (
        second({"min_input_tokens": '"100"'}),
        f"{R1}.min_input_tokens",
        TOKENS_0,
        "100",
    ),
    "max-input-zero": (
        second({"max_input_tokens": "0"}),
        f"{R1}.max_input_tokens",
        TOKENS_1,
        0,
    ),
    "max-output-zero": (
        second({"max_output_tokens": "0"}),
        f"{R1}.max_output_tokens",
        TOKENS_1,
        0,
    ),
    "max-output-float": (
        second({"max_output_tokens": "2.0"}),
        f"{R1}.max_output_tokens",
        TOKENS_1,
        2.0,
    ),
    "min-above-max": (
        second({"min_input_tokens": "500", "max_input_tokens": "100"}),
        f"{R1}.min_input_tokens",
        "at most max_input_tokens (100)",
        500,
    ),
    "allow-tools-str": (second({"allow_tools": '"yes"'}), f"{R1}.allow_tools", BOOL, "yes"),
    "allow-images-int": (second({"allow_images": "1"}), f"{R1}.allow_images", BOOL, 1),
    "allow-response-format-int": (
        second({"allow_response_format": "0"}),
        f"{R1}.allow_response_format",
        BOOL,
        0,
    ),
    "sample-above-one": (second({"sample": "1.5"}), f"{R1}.sample", FRACTION, 1.5),
    "sample-negative": (second({"sample": "-0.1"}), f"{R1}.sample", FRACTION, -0.1),
    "sample-nan": (second({"sample": "nan"}), f"{R1}.sample", FRACTION, math.nan),
    "sample-inf": (second({"sample": "inf"}), f"{R1}.sample", FRACTION, math.inf),
    "sample-bool": (second({"sample": "true"}), f"{R1}.sample", FRACTION, True),
    "sample-str": (second({"sample": '"0.5"'}), f"{R1}.sample", FRACTION, "0.5"),
    "to-its-own-from": (
        second({"from": '"gpt-4o-mini"'}),
        f"{R1}.to",
        "a model other than the one in 'from'",
        "gpt-4o-mini",
    ),
}


@pytest.mark.parametrize(
    ("text", "where", "expected", "got"), list(WRONG_VALUES.values()), ids=list(WRONG_VALUES)
)
def test_wrong_value_raises_config_error_naming_file_key_expected_and_found(
    tmp_path: Path, text: str, where: str, expected: str, got: Any
) -> None:
    path = write(tmp_path / "policy.toml", text)
    with pytest.raises(ConfigError) as info:
        RulePolicy.load(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith(f"{path}: {where}: expected {expected}"), message
    assert message.endswith(f"; got {got!r}"), message


# (file text, what the message says after "<path>: ")
OTHER_PROBLEMS: dict[str, tuple[str | bytes, str]] = {
    "unknown-top-level-key": (
        'modes = "shadow"\n',
        "modes: unknown key; expected one of mode, fallback, deployments, "
        "evaluation_budget_usd, rules",
    ),
    "unknown-rule-key": (
        second({"sampel": "0.5"}),
        f"{R1}.sampel: unknown key; expected one of name, from, to, mode, apis, tasks, prompt,",
    ),
    **{
        f"{key}-without-evaluate": (
            second({key: value}),
            f"{R1}.{key}: only applies to a rule that evaluates; add evaluate = <fraction of "
            "its calls>, such as evaluate = 0.05",
        )
        for key, value in {
            "compare": '"label"',
            "label": "'(?i)positive'",
            "agreement_target": "0.9",
        }.items()
    },
    "evaluate-not-a-fraction": (
        second({"evaluate": "1.5"}),
        f"{R1}.evaluate: expected a fraction of the rule's calls from 0 to 1; got 1.5",
    ),
    "unknown-comparator": (
        second({"evaluate": "0.1", "compare": '"fuzzy"'}),
        f"{R1}.compare: expected one of exact, json, tool, label; got 'fuzzy'",
    ),
    "label-comparator-without-regex": (
        second({"evaluate": "0.1", "compare": '"label"'}),
        f"{R1}.label: compare = 'label' needs a label regex; got none",
    ),
    "bad-label-regex": (
        second({"evaluate": "0.1", "compare": '"label"', "label": "'('"}),
        f"{R1}.label: expected a regular expression RE2 can compile (missing ): (); got '('",
    ),
    "agreement-target-not-a-fraction": (
        second({"evaluate": "0.1", "agreement_target": "95"}),
        f"{R1}.agreement_target: expected the share of evaluations that must agree, from 0 to 1; "
        "got 95",
    ),
    "negative-evaluation-budget": (
        "evaluation_budget_usd = -1\n",
        "evaluation_budget_usd: expected US dollars of evaluation per hour (>= 0); got -1",
    ),
    "missing-name": (second({"name": None}), "rules[1]: missing required key 'name'"),
    "missing-from": (second({"from": None}), f"{R1}: missing required key 'from'"),
    "missing-to": (second({"to": None}), f"{R1}: missing required key 'to'"),
    "duplicate-name": (
        second({"name": '"first"'}),
        "rules[1].name: expected a name no other rule has; got 'first' twice",
    ),
    "invalid-toml": ("mode = \n", "not valid TOML: "),
    "toml-duplicate-key": ('[[rules]]\nname = "a"\nname = "b"\n', "not valid TOML: "),
    "not-utf-8": (b'mode = "\xffnforce"\n', "expected a UTF-8 TOML file; 'utf-8' codec"),
}


@pytest.mark.parametrize(("text", "says"), list(OTHER_PROBLEMS.values()), ids=list(OTHER_PROBLEMS))
def test_bad_file_raises_config_error_naming_file_and_problem(
    tmp_path: Path, text: str | bytes, says: str
) -> None:
    path = tmp_path / "policy.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        write(path, text)
    with pytest.raises(ConfigError) as info:
        RulePolicy.load(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{path}: {says}"), str(info.value)


def test_missing_file_raises_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        RulePolicy.load(path)
    assert str(info.value) == f"{path}: cannot read the policy file: No such file or directory"


def test_directory_instead_of_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RulePolicy.load(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: expected the policy file to be a regular file; got a directory"
    )


def test_dict_errors_name_the_given_source() -> None:
    data = {"rules": [rule(sample=2)]}
    with pytest.raises(ConfigError) as info:
        RulePolicy.from_dict(data, source="LLMMETER_POLICY_JSON")
    assert str(info.value) == (
        "LLMMETER_POLICY_JSON: rules[0] (classify).sample: "
        "expected a fraction of calls from 0 to 1; got 2"
    )


def test_constructor_errors_name_rule_policy() -> None:
    with pytest.raises(ConfigError) as info:
        RulePolicy(rules=[{"name": "classify", "from": "gpt-4o"}])
    assert str(info.value) == "RulePolicy: rules[0] (classify): missing required key 'to'"


def test_dict_that_is_not_a_mapping_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^policy: policy: expected a table"):
        RulePolicy.from_dict(["not", "a", "table"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda path: RulePolicy.load(path, mode="loud"), "mode override: expected one of"),
        (lambda path: RulePolicy.load(path).with_mode("loud"), "mode override: expected one of"),
        (lambda path: RulePolicy.load(path, reload_interval="1"), "reload_interval: expected"),
        (lambda path: RulePolicy.load(path, reload_interval=True), "reload_interval: expected"),
        (lambda path: RulePolicy.load(path, accept=3), "accept: expected a callable"),
    ],
    ids=["load-mode", "with-mode", "interval-str", "interval-bool", "accept"],
)
def test_bad_load_argument_raises_config_error_naming_file(
    tmp_path: Path, make: Any, says: str
) -> None:
    path = write(tmp_path / "policy.toml", FIRST_RULE)
    with pytest.raises(ConfigError) as info:
        make(path)
    assert str(info.value).startswith(f"{path}: {says}"), str(info.value)


def test_valid_file_loads_every_key(tmp_path: Path) -> None:
    text = """
mode = "shadow"
fallback = "off"

[deployments]
gpt-4o = "prod-4o"
gpt-4o-mini = "prod-4o-mini"

[[rules]]
name = "classification-to-mini"
from = ["gpt-4o", "gpt-4o-2024-*"]
to = "gpt-4o-mini"
mode = "enforce"
apis = ["chat_completions", "responses"]
tasks = ["classify", "tagging"]
prompt = ['(?i)\\bclassify\\b', '(?i)\\bsentiment\\b']
min_input_tokens = 10
max_input_tokens = 4000
max_output_tokens = 200
allow_tools = true
allow_images = false
allow_response_format = false
sample = 0.25
"""
    loaded = RulePolicy.load(write(tmp_path / "policy.toml", text))
    (only,) = loaded.rules
    assert (loaded.mode, loaded.fallback, dict(loaded.deployments)) == (
        "shadow",
        "off",
        {"gpt-4o": "prod-4o", "gpt-4o-mini": "prod-4o-mini"},
    )
    assert loaded.path == str(tmp_path / "policy.toml")
    assert (only.name, only.models, only.to, only.mode) == (
        "classification-to-mini",
        ("gpt-4o", "gpt-4o-2024-*"),
        "gpt-4o-mini",
        "enforce",
    )
    assert only.apis == {"chat_completions", "responses"}
    assert only.tasks == {"classify", "tagging"}
    assert only.prompt == (r"(?i)\bclassify\b", r"(?i)\bsentiment\b")
    assert (only.min_input_tokens, only.max_input_tokens, only.max_output_tokens) == (10, 4000, 200)
    assert (only.allow_tools, only.allow_images, only.allow_response_format) == (True, False, False)
    assert only.sample == 0.25
    assert loaded.rule_mode(only) == "enforce"


def test_empty_file_is_a_policy_that_routes_nothing(tmp_path: Path) -> None:
    loaded = RulePolicy.load(write(tmp_path / "policy.toml", ""))
    assert (loaded.mode, loaded.fallback, loaded.rules) == ("enforce", "on-error", ())
    assert loaded.decide(call()) is None


def test_single_strings_stand_for_one_element_lists() -> None:
    (only,) = policy(rule(from_="gpt-4o", tasks="classify", apis="responses", prompt="x")).rules
    assert (only.models, only.tasks, only.apis, only.prompt) == (
        ("gpt-4o",),
        {"classify"},
        {"responses"},
        ("x",),
    )


# --- matching: first matching rule wins --------------------------------------------------


def test_first_matching_rule_wins() -> None:
    p = policy(rule("first", to="gpt-4o-mini"), rule("second", to="gpt-4.1-nano"))
    assert p.decide(call()) == Route("gpt-4o-mini", "first")


def test_rule_that_does_not_match_leaves_the_call_to_the_next_rule() -> None:
    p = policy(rule("tagging", tasks=["tag"]), rule("fallthrough", to="gpt-4.1-nano"))
    assert p.decide(call(task="classify")) == Route("gpt-4.1-nano", "fallthrough")
    assert p.decide(call(task="tag")) == Route("gpt-4o-mini", "tagging")


def test_model_no_rule_names_is_left_alone() -> None:
    assert policy().decide(call("gpt-4.1")) is None


def test_rule_in_mode_off_is_skipped() -> None:
    p = policy(rule("paused", mode="off"), rule("live", to="gpt-4.1-nano"))
    assert p.decide(call()) == Route("gpt-4.1-nano", "live")
    assert policy(rule("paused", mode="off")).decide(call()) is None


def test_rule_in_mode_shadow_gives_a_shadow_route() -> None:
    assert policy(rule(mode="shadow")).decide(call()) == Route(
        "gpt-4o-mini", "classify", shadow=True
    )


def test_policy_mode_applies_to_rules_without_their_own() -> None:
    assert policy(mode="shadow").decide(call()) == Route("gpt-4o-mini", "classify", shadow=True)
    assert policy(mode="off").decide(call()) is None


def test_policy_wide_off_is_a_kill_switch_even_for_rules_set_to_enforce() -> None:
    assert policy(rule(mode="enforce"), mode="off").decide(call()) is None


def test_rule_mode_beats_policy_mode() -> None:
    p = policy(rule(mode="enforce"), mode="shadow")
    assert p.decide(call()) == Route("gpt-4o-mini", "classify", shadow=False)
    assert p.mode == "shadow"
    assert p.rule_mode(p.rules[0]) == "enforce"


def test_fallback_off_gives_routes_without_fallback() -> None:
    assert policy(fallback="off").decide(call()) == Route("gpt-4o-mini", "classify", fallback=False)


MODE_FILE = (
    'mode = "enforce"\n'
    + toml_rule("paused", to="gpt-4.1-nano", extra='mode = "off"\ntasks = ["tag"]\n')
    + "\n"
    + toml_rule("shadowed", extra='mode = "shadow"\n')
)
SHADOWED = Route("gpt-4o-mini", "shadowed")
SHADOWED_SHADOW = Route("gpt-4o-mini", "shadowed", shadow=True)


@pytest.mark.parametrize(
    ("override", "tagged", "untagged"),
    [
        (None, SHADOWED_SHADOW, SHADOWED_SHADOW),
        ("shadow", SHADOWED_SHADOW, SHADOWED_SHADOW),
        ("enforce", SHADOWED, SHADOWED),
        ("off", None, None),
    ],
)
def test_mode_override_on_load_beats_file_and_rule_modes_but_not_a_rule_turned_off(
    tmp_path: Path, override: str | None, tagged: Route | None, untagged: Route | None
) -> None:
    """The override applies to every rule except one whose own mode is off: an operator's
    override never revives a rule someone switched off."""
    loaded = RulePolicy.load(write(tmp_path / "policy.toml", MODE_FILE), mode=override)
    assert loaded.mode == (override or "enforce")
    assert loaded.decide(call(task="tag")) == tagged
    assert loaded.decide(call()) == untagged


def test_with_mode_returns_an_overridden_copy(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", MODE_FILE)
    loaded = RulePolicy.load(path, accept=bool)
    shadowed = loaded.with_mode("shadow")
    enforced = policy(rule(mode="shadow")).with_mode("enforce")
    assert loaded.decide(call()) == Route("gpt-4o-mini", "shadowed", shadow=True)
    assert shadowed.decide(call()) == Route("gpt-4o-mini", "shadowed", shadow=True)
    assert loaded.with_mode("enforce").decide(call()) == Route("gpt-4o-mini", "shadowed")
    assert loaded.with_mode("off").decide(call()) is None
    assert enforced.decide(call()) == Route("gpt-4o-mini", "classify")
    assert (shadowed.path, shadowed.accept, shadowed.mode) == (str(path), bool, "shadow")
    assert loaded.mode == "enforce"


@pytest.mark.parametrize(
    ("model", "matches"),
    [
        ("gpt-4o", True),
        ("gpt-4o-2024-08-06", True),
        ("gpt-4o-2024-11-20", True),
        ("gpt-4o-2024", False),
        ("gpt-4o-mini", False),
        ("gpt-4o-mini-2024-07-18", False),
        ("GPT-4o", False),
        ("openai/gpt-4o", False),
    ],
)
def test_from_globs_match_whole_model_names_including_dated_snapshots(
    model: str, matches: bool
) -> None:
    p = policy(rule(from_=["gpt-4o", "gpt-4o-2024-*"], to="gpt-4.1-nano"))
    assert routed(p, call(model)) == ("gpt-4.1-nano" if matches else None)


@pytest.mark.parametrize(
    ("model", "matches"),
    [
        ("o1-mini", True),
        ("o3-mini", True),
        ("o2-mini", False),
        ("gpt-4.1", True),
        ("gpt-4x1", False),
        ("gpt-4.10", False),
    ],
)
def test_from_globs_support_sets_and_question_marks(model: str, matches: bool) -> None:
    p = policy(rule(from_=["o[13]-mini", "gpt-4.?"], to="gpt-4.1-nano"))
    assert routed(p, call(model)) == ("gpt-4.1-nano" if matches else None)


def test_many_distinct_models_keep_matching() -> None:
    """The per-model cache of candidate rules is bounded and refilled, never stale."""
    p = policy(rule(from_="gpt-4o-2024-*"))
    for day in range(5000):
        assert routed(p, call(f"gpt-4o-2024-{day}")) == "gpt-4o-mini"
        assert routed(p, call(f"other-{day}")) is None


@pytest.mark.parametrize(
    ("task", "matches"),
    [("classify", True), ("tagging", True), ("summarize", False), (None, False)],
)
def test_tasks_match_any_listed_label(task: str | None, matches: bool) -> None:
    p = policy(rule(tasks=["classify", "tagging"]))
    assert routed(p, call(task=task)) == ("gpt-4o-mini" if matches else None)


@pytest.mark.parametrize(
    ("endpoint", "matches"), [("chat", False), ("responses", True), ("completions", True)]
)
def test_apis_limit_a_rule_to_the_listed_endpoints(endpoint: str, matches: bool) -> None:
    c = call(endpoint=endpoint)
    assert c.api == {"chat": "chat_completions"}.get(endpoint, endpoint)
    p = policy(rule(apis=["responses", "completions"]))
    assert routed(p, c) == ("gpt-4o-mini" if matches else None)


class Answer:
    """Stands for a pydantic model given to ``parse()``."""


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
IMAGE_URL = "https://example.com/cat.png"

# (flag, endpoint, request keyword arguments, whether the call uses what the flag is about)
FEATURES: dict[str, tuple[str, str, dict[str, Any], bool]] = {
    "chat-tools": ("allow_tools", "chat", {"tools": [TOOL]}, True),
    "chat-functions": ("allow_tools", "chat", {"functions": [TOOL["function"]]}, True),
    "chat-empty-tools": ("allow_tools", "chat", {"tools": []}, False),
    "chat-tools-not-given": ("allow_tools", "chat", {"tools": NOT_GIVEN}, False),
    "responses-tools": ("allow_tools", "responses", {"tools": [{"type": "web_search"}]}, True),
    "no-tools": ("allow_tools", "chat", {}, False),
    "chat-image-url": (
        "allow_images",
        "chat",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                    ],
                }
            ]
        },
        True,
    ),
    "responses-input-image": (
        "allow_images",
        "responses",
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "what is this?"},
                        {"type": "input_image", "image_url": IMAGE_URL},
                    ],
                }
            ]
        },
        True,
    ),
    "responses-text-parts-only": (
        "allow_images",
        "responses",
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]},
        False,
    ),
    "chat-text-only": ("allow_images", "chat", {}, False),
    "chat-json-schema": (
        "allow_response_format",
        "chat",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
        True,
    ),
    "chat-json-object": (
        "allow_response_format",
        "chat",
        {"response_format": {"type": "json_object"}},
        True,
    ),
    "chat-parse-model": ("allow_response_format", "chat", {"response_format": Answer}, True),
    "chat-format-text": (
        "allow_response_format",
        "chat",
        {"response_format": {"type": "text"}},
        False,
    ),
    "chat-format-not-given": (
        "allow_response_format",
        "chat",
        {"response_format": NOT_GIVEN},
        False,
    ),
    "responses-text-format-schema": (
        "allow_response_format",
        "responses",
        {"text": {"format": {"type": "json_schema", "name": "a", "schema": {}}}},
        True,
    ),
    "responses-text-format-text": (
        "allow_response_format",
        "responses",
        {"text": {"format": {"type": "text"}}},
        False,
    ),
    "responses-text-verbosity-only": (
        "allow_response_format",
        "responses",
        {"text": {"verbosity": "low"}},
        False,
    ),
    "responses-parse-model": ("allow_response_format", "responses", {"text_format": Answer}, True),
}


@pytest.mark.parametrize(
    ("flag", "endpoint", "kwargs", "uses"), list(FEATURES.values()), ids=list(FEATURES)
)
def test_allow_flags_false_skip_calls_using_the_feature(
    flag: str, endpoint: str, kwargs: dict[str, Any], uses: bool
) -> None:
    c = call(endpoint=endpoint, **kwargs)
    assert getattr(c, flag.removeprefix("allow_")) is uses
    assert routed(policy(rule(**{flag: False})), c) == (None if uses else "gpt-4o-mini")
    assert routed(policy(rule(**{flag: True})), c) == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "matches"),
    [
        ("chat", {}, False),
        ("chat", {"max_tokens": NOT_GIVEN}, False),
        ("chat", {"max_tokens": 500}, True),
        ("chat", {"max_completion_tokens": 100}, True),
        ("chat", {"max_completion_tokens": 501}, False),
        ("chat", {"max_tokens": True}, False),
        ("responses", {"max_output_tokens": 300}, True),
        ("responses", {"max_output_tokens": 4096}, False),
        ("completions", {"max_tokens": 16}, True),
    ],
)
def test_max_output_tokens_needs_a_cap_at_most_the_limit(
    endpoint: str, kwargs: dict[str, Any], matches: bool
) -> None:
    p = policy(rule(max_output_tokens=500))
    assert routed(p, call(endpoint=endpoint, **kwargs)) == ("gpt-4o-mini" if matches else None)


def test_input_token_estimate_counts_characters_messages_and_images() -> None:
    c = call(
        messages=[
            {"role": "system", "content": "s" * 40},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "u" * 41},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                ],
            },
        ]
    )
    # ceil(81 / 4) = 21 for the text, 4 per message, 85 per image
    assert c.input_tokens == 21 + 2 * 4 + 85


@pytest.mark.parametrize(
    ("limits", "matches"),
    [
        ({"min_input_tokens": 104}, True),
        ({"min_input_tokens": 105}, False),
        ({"max_input_tokens": 104}, True),
        ({"max_input_tokens": 103}, False),
        ({"min_input_tokens": 104, "max_input_tokens": 104}, True),
        ({"min_input_tokens": 0}, True),
    ],
)
def test_input_token_bounds_are_inclusive_on_the_estimate(
    limits: dict[str, int], matches: bool
) -> None:
    c = call(messages=[{"role": "user", "content": "x" * 400}])
    assert c.input_tokens == 104
    assert routed(policy(rule(**limits)), c) == ("gpt-4o-mini" if matches else None)


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("Please CLASSIFY this review", True),
        ("what is the sentiment here?", True),
        ("classification please", False),
        ("summarize this", False),
    ],
)
def test_prompt_patterns_match_when_any_matches(text: str, matches: bool) -> None:
    p = policy(rule(prompt=[r"(?i)\bclassify\b", r"(?i)\bsentiment\b"]))
    c = call(messages=[{"role": "user", "content": text}])
    assert routed(p, c) == ("gpt-4o-mini" if matches else None)


@pytest.mark.parametrize(
    ("text", "matches"),
    [("CLASSIFY", True), ("classify", True), ("URGENT", True), ("urgent", False), ("X", False)],
)
def test_prompt_patterns_are_combined_keeping_each_patterns_own_flags(
    text: str, matches: bool
) -> None:
    p = policy(rule(prompt=["(?i)classify", "URGENT"]))
    compiled = p.rules[0]._prompt
    assert compiled is not None and len(compiled.regexes) == 1
    c = call(messages=[{"role": "user", "content": text}])
    assert routed(p, c) == ("gpt-4o-mini" if matches else None)


def test_prompt_patterns_with_the_same_group_name_still_match() -> None:
    p = policy(rule(prompt=[r"(?P<w>a)b", r"(?P<w>c)d"]))
    assert routed(p, call(messages=[{"role": "user", "content": "xcd"}])) == "gpt-4o-mini"
    assert routed(p, call(messages=[{"role": "user", "content": "ad"}])) is None


def test_an_unterminated_quote_does_not_swallow_the_patterns_after_it() -> None:
    """RE2's \\Q quotes to the end of its pattern; joined, it would quote the next one too."""
    p = policy(rule(prompt=[r"\Qa+(", "urgent"]))
    assert routed(p, call(messages=[{"role": "user", "content": "urgent"}])) == "gpt-4o-mini"
    assert routed(p, call(messages=[{"role": "user", "content": "1 a+( 2"}])) == "gpt-4o-mini"
    assert routed(p, call(messages=[{"role": "user", "content": "aa("}])) is None


def test_chat_prompt_joins_the_text_of_every_message() -> None:
    c = call(
        messages=[
            {"role": "system", "content": "You classify."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Is this spam?"},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "assistant", "content": "No."},
            {"role": "tool", "tool_call_id": "c1", "content": "result"},
        ]
    )
    assert c.prompt == "You classify.\nIs this spam?\nNo.\nresult"


def test_responses_prompt_is_instructions_then_input_items() -> None:
    c = call(
        endpoint="responses",
        instructions="Be brief.",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Tag this"},
                    {"type": "input_image", "image_url": IMAGE_URL},
                ],
            },
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Done"}]},
        ],
    )
    assert c.prompt == "Be brief.\nTag this\n42\nDone"
    assert call(endpoint="responses", instructions="Be brief.", input="Hi").prompt == (
        "Be brief.\nHi"
    )


def test_completions_prompt_is_the_prompt_string_or_strings() -> None:
    assert call(endpoint="completions", prompt="Say hi").prompt == "Say hi"
    assert call(endpoint="completions", prompt=["one", "two", 3]).prompt == "one\ntwo"


LONG = "HEAD " + "x" * 10_000 + " MIDDLE " + "y" * 10_000 + " TAIL"
LONG_CALLS = {
    "chat": {
        "messages": [
            {"role": "system", "content": "HEAD system."},
            {"role": "user", "content": LONG},
        ]
    },
    "responses": {
        "instructions": "HEAD instructions.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": LONG}]}],
    },
    "completions": {"prompt": LONG},
}


@pytest.mark.parametrize("endpoint", list(LONG_CALLS))
def test_prompt_window_keeps_head_and_tail_of_a_long_prompt(endpoint: str) -> None:
    c = call(endpoint=endpoint, **LONG_CALLS[endpoint])
    half = PROMPT_WINDOW // 2
    assert len(c.prompt) == PROMPT_WINDOW + 1
    assert c.prompt.startswith("HEAD ")
    assert c.prompt.endswith(" TAIL")
    assert c.prompt[half] == "\n"
    for pattern, matches in (("HEAD", True), ("TAIL", True), ("MIDDLE", False)):
        assert routed(policy(rule(prompt=pattern)), c) == ("gpt-4o-mini" if matches else None)


def test_prompt_up_to_the_window_is_kept_whole() -> None:
    text = "a" * (PROMPT_WINDOW - 1) + "Z"
    c = call(endpoint="completions", prompt=text)
    assert c.prompt == text
    assert routed(policy(rule(prompt="Z$")), c) == "gpt-4o-mini"


def test_rule_routing_to_the_requested_model_gives_none() -> None:
    p = policy(rule("minis", from_="gpt-4o*"), rule("later", from_="gpt-4o*", to="gpt-4.1-nano"))
    assert p.decide(call("gpt-4o-mini")) is None
    assert p.decide(call("gpt-4o")) == Route("gpt-4o-mini", "minis")
    assert p.explain(call("gpt-4o-mini")).rule is p.rules[0]


def test_checks_stop_at_the_first_failed_condition() -> None:
    """A call that fails a cheap check never pays for the prompt scan."""
    c = call(task="summarize")
    assert policy(rule(tasks="classify", prompt="hello")).decide(c) is None
    assert c._prompt is None


# --- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "user-1"])
def test_sample_zero_never_routes_and_sample_one_always_does(key: str | None) -> None:
    never = policy(rule(sample=0))
    always = policy(rule(sample=1))
    for _ in range(500):
        assert never.decide(call(key=key)) is None
        assert always.decide(call(key=key)) == Route("gpt-4o-mini", "classify")


def test_same_key_always_gets_the_same_decision() -> None:
    p = policy(rule(sample=0.5))
    for number in range(200):
        key = f"conversation-{number}"
        decisions = {routed(p, call(user=key)) for _ in range(20)}
        expected = "gpt-4o-mini" if stable_fraction("classify", key) < 0.5 else None
        assert decisions == {expected}


def test_keys_split_close_to_the_sample_fraction() -> None:
    p = policy(rule(sample=0.25))
    inside = sum(routed(p, call(key=f"user-{n}")) is not None for n in range(10_000))
    assert 0.23 <= inside / 10_000 <= 0.27


def test_sampling_is_independent_per_rule() -> None:
    """Two canaries at the same fraction do not pick the same keys."""
    keys = [f"user-{n}" for n in range(2000)]
    first = {key for key in keys if sampled("canary-a", 0.5, key)}
    second = {key for key in keys if sampled("canary-b", 0.5, key)}
    assert 0.4 <= len(first & second) / len(first) <= 0.6


def test_call_without_key_is_drawn_on_its_own() -> None:
    p = policy(rule(sample=0.5))
    inside = sum(p.decide(call()) is not None for _ in range(4000))
    assert 0.4 <= inside / 4000 <= 0.6


@pytest.mark.parametrize(
    ("key", "kwargs", "expected"),
    [
        ("task-key", {"prompt_cache_key": "p", "user": "u"}, "task-key"),
        (None, {"prompt_cache_key": "p", "safety_identifier": "s", "user": "u"}, "p"),
        (None, {"safety_identifier": "s", "user": "u"}, "s"),
        (None, {"user": "u"}, "u"),
        (None, {"prompt_cache_key": "", "user": "u"}, "u"),
        (None, {"user": NOT_GIVEN}, None),
        (None, {"extra_body": {"prompt_cache_key": "xp", "user": "xu"}}, "xp"),
        (None, {"extra_body": {"safety_identifier": "xs", "user": "xu"}}, "xs"),
        (None, {"extra_body": {"user": "xu"}}, "xu"),
        (None, {"extra_body": None}, None),
        (None, {}, None),
    ],
    ids=[
        "explicit-key",
        "prompt-cache-key",
        "safety-identifier",
        "user",
        "empty-skipped",
        "not-given",
        "extra-body-prompt-cache-key",
        "extra-body-safety-identifier",
        "extra-body-user",
        "extra-body-none",
        "none",
    ],
)
def test_stickiness_key_precedence(
    key: str | None, kwargs: dict[str, Any], expected: str | None
) -> None:
    assert call(key=key, **kwargs).key == expected


def test_sampling_uses_the_stickiness_key() -> None:
    key = next(f"k{n}" for n in range(1000) if stable_fraction("classify", f"k{n}") < 0.1)
    p = policy(rule(sample=0.1))
    for c in (call(key=key), call(user=key), call(extra_body={"prompt_cache_key": key})):
        assert all(p.decide(c) is not None for _ in range(50))
    outside = next(f"k{n}" for n in range(1000) if stable_fraction("classify", f"k{n}") >= 0.1)
    assert all(p.decide(call(user=outside)) is None for _ in range(50))


STABLE_CASES = [("classify", "user-1"), ("classify", "user-2"), ("canary", "conversation-42")]


def test_stable_fraction_is_sha256_of_rule_and_key() -> None:
    for rule_name, key in [*STABLE_CASES, ("r", "ключ"), ("", "")]:
        assert stable_fraction(rule_name, key) == independent_fraction(rule_name, key)
    # pinned forever: every process and language must agree on these
    assert stable_fraction("classify", "user-1") == 0x52D31CD5D6010AFF / 2**64
    assert stable_fraction("canary", "conversation-42") == 0xEA60771B08941949 / 2**64


# --- explain -------------------------------------------------------------------------------


def test_explain_gives_each_rules_first_failed_condition() -> None:
    p = policy(
        rule("model", from_="gpt-4.1"),
        rule("api", apis="responses"),
        rule("task", tasks="classify"),
        rule("tools", allow_tools=False),
        rule("images", allow_images=False),
        rule("format", allow_response_format=False),
        rule("output", max_output_tokens=10),
        rule("min-input", min_input_tokens=1000),
        rule("max-input", max_input_tokens=50, min_input_tokens=10),
        rule("prompt", prompt="nothing like it"),
        rule("paused", mode="off"),
        rule("decider", to="gpt-4.1-nano"),
        rule("after"),
    )
    c = call(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                ],
            }
        ],
        tools=[TOOL],
        response_format={"type": "json_object"},
        max_tokens=20,
    )
    explained = p.explain(c)
    assert [(r.name, reason) for r, reason in explained.verdicts] == [
        ("model", MODEL),
        ("api", API),
        ("task", TASK),
        ("tools", TOOLS),
        ("images", IMAGES),
        ("format", RESPONSE_FORMAT),
        ("output", MAX_OUTPUT_TOKENS),
        ("min-input", MIN_INPUT_TOKENS),
        ("max-input", MAX_INPUT_TOKENS),
        ("prompt", PROMPT),
        ("paused", None),
        ("decider", None),
        ("after", None),
    ]
    assert explained.rule is p.rules[-2]
    assert explained.route == Route("gpt-4.1-nano", "decider") == p.decide(c)
    assert explained.in_sample is True


def test_explain_with_no_matching_rule_decides_nothing() -> None:
    explained = policy().explain(call("gpt-4.1"))
    assert (explained.rule, explained.route, explained.in_sample) == (None, None, None)


def test_explain_reports_whether_a_keyed_call_is_in_the_sample() -> None:
    p = policy(rule(sample=0.5))
    for n in range(50):
        c = call(key=f"k{n}")
        explained = p.explain(c)
        assert explained.rule is p.rules[0]
        assert explained.route == p.decide(c)
        assert explained.in_sample is (explained.route is not None)


def test_explain_without_key_leaves_the_sample_draw_open() -> None:
    explained = policy(rule(sample=0.5)).explain(call())
    assert (explained.route, explained.in_sample) == (Route("gpt-4o-mini", "classify"), None)


@pytest.mark.parametrize("key", [None, "user-1"])
def test_explain_puts_every_call_outside_a_zero_sample(key: str | None) -> None:
    explained = policy(rule(sample=0)).explain(call(key=key))
    assert (explained.route, explained.in_sample) == (None, False)


def test_describe_says_why_a_rule_does_not_apply() -> None:
    p = policy(rule(tasks=["classify"], max_output_tokens=100, from_=["gpt-4o"]))
    (only,) = p.rules
    assert describe(only, MODEL, call("gpt-4.1")) == (
        "model 'gpt-4.1' matches none of from = ['gpt-4o']"
    )
    assert describe(only, TASK, call()) == "no task; the rule needs one of tasks = ['classify']"
    assert describe(only, MAX_OUTPUT_TOKENS, call()) == (
        "the call sets no output cap; the rule needs a cap <= 100"
    )


# --- live reload --------------------------------------------------------------------------
#
# The watcher thread calls ``_reload()`` every interval; these tests call it themselves, with
# an interval no test outlives, so each check happens exactly where the test says.

QUIET = 3600.0
"""A reload interval long enough that the watcher thread never checks during a test."""


def loaded_quietly(path: Path, **kwargs: Any) -> RulePolicy:
    return RulePolicy.load(path, reload_interval=QUIET, **kwargs)


def test_changed_file_is_used_from_the_next_check(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("old"))
    loaded = loaded_quietly(path)
    assert loaded.decide(call()) == Route("gpt-4o-mini", "old")
    rewrite(path, toml_rule("renamed-rule", to="gpt-4.1-nano"))
    assert loaded.decide(call()) == Route("gpt-4o-mini", "old")  # a call never checks
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4.1-nano", "renamed-rule")
    assert [r.name for r in loaded.rules] == ["renamed-rule"]


def test_reload_keeps_the_mode_override(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("old"))
    loaded = loaded_quietly(path, mode="shadow")
    rewrite(path, 'mode = "enforce"\n' + toml_rule("new", extra='mode = "enforce"\n'))
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4o-mini", "new", shadow=True)


def test_invalid_change_keeps_last_good_rules_and_logs_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("good"))
    loaded = loaded_quietly(path)
    rewrite(path, toml_rule("good", extra="sample = 7\n"))
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        for _ in range(3):
            loaded._reload()
            assert loaded.decide(call()) == Route("gpt-4o-mini", "good")
    (record,) = caplog.records  # logged once, not at every check
    assert record.levelno == logging.WARNING
    assert str(path) in record.getMessage()
    assert "keeping the last good policy" in record.getMessage()
    assert "(good).sample: expected a fraction" in record.getMessage()


def test_invalid_toml_on_reload_keeps_last_good_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("good"))
    loaded = loaded_quietly(path)
    rewrite(path, "[[rules]\nname = ")
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        loaded._reload()
        assert loaded.decide(call()) == Route("gpt-4o-mini", "good")
    assert [r.getMessage() for r in caplog.records if "not valid TOML" in r.getMessage()]


def test_fixed_file_after_an_invalid_one_is_loaded(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("good"))
    loaded = loaded_quietly(path)
    rewrite(path, toml_rule("good", extra="sample = 7\n"))
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4o-mini", "good")
    rewrite(path, toml_rule("fixed", to="gpt-4.1-nano"))
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4.1-nano", "fixed")


def test_deleted_file_keeps_last_good_rules_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("good"))
    loaded = loaded_quietly(path)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        for _ in range(3):
            loaded._reload()
            assert loaded.decide(call()) == Route("gpt-4o-mini", "good")
    (record,) = caplog.records
    assert str(path) in record.getMessage()
    assert "cannot be read" in record.getMessage()
    assert "keeping the last good policy" in record.getMessage()


def test_file_restored_after_deletion_is_loaded(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("good"))
    loaded = loaded_quietly(path)
    path.unlink()
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4o-mini", "good")
    write(path, toml_rule("restored", to="gpt-4.1-nano"))
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4.1-nano", "restored")


def test_file_replaced_by_rename_is_reloaded(tmp_path: Path) -> None:
    """Editors and config tools write a new file and rename it over the old one."""
    path = write(tmp_path / "policy.toml", toml_rule("old"))
    loaded = loaded_quietly(path)
    replacement = write(tmp_path / "policy.toml.tmp", toml_rule("new"))
    os.replace(replacement, path)
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4o-mini", "new")


def test_file_replaced_by_a_fifo_keeps_last_good_rules_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A named pipe swapped in for the file is refused at the check, which returns: it
    would otherwise wait, in open(), for a writer that never comes."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    path = write(tmp_path / "policy.toml", toml_rule("good"))
    loaded = loaded_quietly(path)
    path.unlink()
    os.mkfifo(path)
    with caplog.at_level(logging.WARNING, logger="llmmeter"):
        loaded._reload()
        assert loaded.decide(call()) == Route("gpt-4o-mini", "good")
    (record,) = caplog.records
    assert "keeping the last good policy" in record.getMessage()
    assert "expected the policy file to be a regular file; got a named pipe" in (
        record.getMessage()
    )


def test_write_landing_while_the_file_is_loaded_is_picked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version is taken from the open file before it is read: a write during the read
    is a change at the next check."""
    path = write(tmp_path / "policy.toml", toml_rule("old"))
    read = _configfile.os.read
    rewritten = []

    def read_then_rewrite(descriptor: int, size: int) -> bytes:
        data = read(descriptor, size)
        if not data and not rewritten:  # the whole old version is read
            rewritten.append(True)
            rewrite(path, toml_rule("renamed-rule", to="gpt-4.1-nano"))
        return data

    monkeypatch.setattr(_configfile.os, "read", read_then_rewrite)
    loaded = loaded_quietly(path)
    monkeypatch.undo()
    assert [r.name for r in loaded.rules] == ["old"]
    loaded._reload()
    assert loaded.decide(call()) == Route("gpt-4.1-nano", "renamed-rule")


def test_policy_without_a_file_never_reloads() -> None:
    p = policy()
    assert p.path is None
    assert p.decide(call()) == Route("gpt-4o-mini", "classify")
    assert p._watcher is None  # nothing to watch: no thread


def test_decide_never_touches_the_policy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking the file (a stat) and reading it are the watcher thread's: on a slow or hung
    mount they would stall the application's call."""
    path = write(tmp_path / "policy.toml", toml_rule("old"))
    loaded = RulePolicy.load(path, reload_interval=0)
    rewrite(path, toml_rule("new"))
    touched: list[str] = []

    def watched(name: str, function: Any) -> Any:
        def on_this_thread(target: Any, *args: Any, **kwargs: Any) -> Any:
            if (
                isinstance(target, (str, os.PathLike))
                and os.fspath(target) == str(path)
                and threading.current_thread() is threading.main_thread()
            ):
                touched.append(name)
            return function(target, *args, **kwargs)

        return on_this_thread

    monkeypatch.setattr(os, "stat", watched("os.stat", os.stat))
    monkeypatch.setattr(os, "open", watched("os.open", os.open))
    monkeypatch.setattr("builtins.open", watched("open", open))
    for _ in range(3):
        loaded.decide(call())
    monkeypatch.undo()
    loaded.stop_watching()
    assert touched == []


def test_a_slow_reload_never_holds_up_a_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the watcher is stuck reading a new version, calls decide with the one in force."""
    path = write(tmp_path / "policy.toml", toml_rule("old"))
    loaded = loaded_quietly(path)
    rewrite(path, toml_rule("new", to="gpt-4.1-nano"))
    entered, release = threading.Event(), threading.Event()
    load = _rules.load_toml

    def slow_load(name: str, what: str) -> Any:
        assert threading.current_thread() is not threading.main_thread(), "read on a call"
        entered.set()
        release.wait()
        return load(name, what)

    monkeypatch.setattr(_rules, "load_toml", slow_load)
    checker = threading.Thread(target=loaded._reload)
    checker.start()
    try:
        assert entered.wait(60), "the check never started"
        assert loaded.decide(call()) == Route("gpt-4o-mini", "old")
    finally:
        release.set()
        checker.join()
    assert loaded.decide(call()) == Route("gpt-4.1-nano", "new")


def test_the_watcher_thread_reloads_a_changed_file_with_no_call(tmp_path: Path) -> None:
    path = write(tmp_path / "policy.toml", toml_rule("old"))
    loaded = RulePolicy.load(path, reload_interval=0)  # the watcher's shortest interval
    loaded.start_watching()
    rewrite(path, toml_rule("new", to="gpt-4.1-nano"))
    wait_for(lambda: [r.name for r in loaded.rules] == ["new"], "the watcher reloads")
    watchers = [t for t in threading.enumerate() if t.name == _rules.WATCHER_NAME]
    assert watchers and all(t.daemon for t in watchers)
    loaded.stop_watching()


def test_first_decide_starts_the_watcher_and_stop_ends_it_for_good(tmp_path: Path) -> None:
    loaded = loaded_quietly(write(tmp_path / "policy.toml", toml_rule("old")))
    watcher = loaded._watcher
    assert watcher is not None and not watcher.running
    loaded.decide(call())
    assert watcher.running
    thread = watcher._thread
    assert thread is not None
    loaded.stop_watching()
    wait_for(lambda: not thread.is_alive(), "the watcher ends")
    loaded.decide(call())
    assert not watcher.running


def test_a_policy_nobody_holds_takes_its_watcher_thread_with_it(tmp_path: Path) -> None:
    loaded = loaded_quietly(write(tmp_path / "policy.toml", toml_rule("old")))
    loaded.decide(call())
    watcher = loaded._watcher
    assert watcher is not None
    thread = watcher._thread
    assert thread is not None and thread.is_alive()
    del loaded, watcher
    gc.collect()
    wait_for(lambda: not thread.is_alive(), "the watcher ends with its policy")


def test_in_a_forked_child_the_next_decide_starts_a_new_watcher(tmp_path: Path) -> None:
    """A child has none of its parent's threads; what the fork hook does, on one watcher."""
    loaded = loaded_quietly(write(tmp_path / "policy.toml", toml_rule("old")))
    loaded.decide(call())
    watcher = loaded._watcher
    assert watcher is not None
    parents = watcher._thread
    watcher._forked()
    assert watcher.idle
    loaded.decide(call())
    assert watcher.running and watcher._thread is not parents
    loaded.stop_watching()


def test_an_instrumented_copy_watches_on_its_own(tmp_path: Path) -> None:
    """``bind_spend`` (what ``instrument()`` runs) gets a watcher of its own: stopping it at
    ``uninstrument()`` leaves the caller's object able to watch."""
    loaded = loaded_quietly(write(tmp_path / "policy.toml", toml_rule("old")))
    bound = loaded.bind_spend(None)
    assert bound._watcher is not loaded._watcher
    bound.start_watching()
    bound.stop_watching()
    loaded.decide(call())
    assert loaded._watcher is not None and loaded._watcher.running
    loaded.stop_watching()


def wait_for(condition: Any, what: str) -> None:
    """Poll ``condition`` (what a background thread will make true); fail after a minute
    rather than hang, never as a claim about speed."""
    end = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.01)


# --- Route, Policy, CallView -------------------------------------------------------------


@pytest.mark.parametrize("model", [1, None, "", b"gpt-4o-mini"])
def test_route_rejects_a_model_that_is_not_a_non_empty_str(model: Any) -> None:
    with pytest.raises(TypeError, match=r"Route.model: expected a non-empty str"):
        Route(model, "rule")


@pytest.mark.parametrize("rule_name", [1, None, ""])
def test_route_rejects_a_rule_that_is_not_a_non_empty_str(rule_name: Any) -> None:
    with pytest.raises(TypeError, match=r"Route.rule: expected a non-empty str"):
        Route("gpt-4o-mini", rule_name)


def test_route_defaults_to_enforce_with_fallback() -> None:
    route = Route("gpt-4o-mini", "classify")
    assert (route.shadow, route.fallback) == (False, True)


def test_rule_policy_and_any_object_with_decide_are_policies() -> None:
    class Always:
        def decide(self, call: CallView) -> Route | None:
            return Route("gpt-4o-mini", "always")

    assert isinstance(policy(), Policy)
    assert isinstance(Always(), Policy)
    assert not isinstance(object(), Policy)


def test_call_view_request_is_read_only() -> None:
    c = call(temperature=0)
    with pytest.raises(TypeError):
        c.request["model"] = "gpt-4o-mini"  # type: ignore[index]
    assert c.request["temperature"] == 0


def test_call_view_reports_stream_only_for_stream_true() -> None:
    assert call(stream=True).stream is True
    assert call(stream=NOT_GIVEN).stream is False
    assert call().stream is False


def test_stickiness_key_is_the_value_that_goes_on_the_wire() -> None:
    """Field order first (prompt_cache_key, safety_identifier, user); within a field
    extra_body wins, as the SDK merges it over the arguments."""
    msgs = [{"role": "user", "content": "hi"}]

    def key(**kwargs: Any) -> str | None:
        return CallView(endpoint="chat", operation="chat", model="gpt-4o", kwargs=kwargs).key

    assert key(messages=msgs, user="u", extra_body={"prompt_cache_key": "c"}) == "c"
    assert key(messages=msgs, user="a", extra_body={"user": "b"}) == "b"
    assert key(messages=msgs, safety_identifier="s", user="u") == "s"


def test_route_flags_must_be_bools() -> None:
    with pytest.raises(TypeError, match="fallback"):
        Route("gpt-4o-mini", "r", fallback="off")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shadow"):
        Route("gpt-4o-mini", "r", shadow="false")  # type: ignore[arg-type]


@pytest.mark.parametrize("interval", [float("nan"), float("inf"), -1])
def test_reload_interval_must_be_finite_and_not_negative(tmp_path: Path, interval: float) -> None:
    path = write(tmp_path / "policy.toml", '[[rules]]\nname = "r"\nfrom = "a"\nto = "b"\n')
    with pytest.raises(ConfigError, match="reload_interval"):
        RulePolicy.load(path, reload_interval=interval)


def test_an_async_accept_check_is_refused_up_front() -> None:
    async def accept(response: Any) -> bool:
        return False

    class Judge:
        async def __call__(self, response: Any) -> bool:
            return False

    for check in (accept, Judge()):
        with pytest.raises(ConfigError, match="coroutine function"):
            RulePolicy(rules=[{"name": "r", "from": "a", "to": "b"}], accept=check)
