"""No prompt pattern a policy file can hold makes a call hang (issue 18).

Python's backtracking ``re`` took exponential time on ``(a+)+$`` against ``'a' * 28 + 'b'``,
so the user's call never returned. Prompt patterns now run under RE2, whose time is linear in
the text. Each pattern of an adversarial corpus (nested quantifiers, overlapping
alternations, the classic ReDoS shapes, and the backtracking-only features that make them
worse) must either be refused when the policy loads, with a ``ConfigError`` naming the file,
the rule and the pattern, or be compiled by RE2. The accepted ones then decide calls whose
prompts are built to be worst cases, up to 1 MB, and answer as RE2 does. No timing is
asserted here: ``benchmarks/policy.py`` measures these cases.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import re2
import wrapt

import llmmeter
from llmmeter._patterns import PromptPatterns
from llmmeter._policy import PROMPT_WINDOW, CallView
from llmmeter._rules import RulePolicy
from tests.conftest import make_telemetry

ADVERSARIAL = [
    # nested quantifiers
    r"(a+)+$",
    r"(a*)*b",
    r"(a+)*c",
    r"^(a+)+$",
    r"(x+x+)+y",
    r"(\w+\s?)+$",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(.*a){12}",
    r"(?:(?:a*)*)*z",
    # overlapping alternations
    r"(a|a)+$",
    r"(a|aa)+$",
    r"(a|a?)+b",
    r"(?:\w|\d)+!",
    r"(?:a|b|ab)*c",
    r"(\d+|\d+\.\d+)+x",
    # polynomial backtracking
    r".*.*.*=",
    r"\s*\s*\s*x",
    r"(?:.{0,20}){20}x",
    r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
    # backtracking-only features that make matching explode
    r"(a+)\1+$",
    r"(?=(a+))+b",
    r"((?!x)a)+$",
    r"(?<=a)(a+)+$",
    r"(?>a+)+b",
    r"a++b",
    r"(a)?(?(1)a+|b)+$",
]

PROMPTS = {
    "issue": "a" * 28 + "b",
    "a-then-b": "a" * 1_000_000 + "b",
    "spaces": " " * 1_000_000,
    "alternating": "ab" * 500_000,
    "digits-dots": "1." * 500_000,
    "word-chars": ("abc_123 " * 125_000),
    "no-terminator": "a" * 999_999 + "!",
}


def _policy_file(tmp_path: Path, pattern: str) -> Path:
    path = tmp_path / "policy.toml"
    quoted = pattern.replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(
        f'[[rules]]\nname = "adversarial"\nfrom = "gpt-4o"\nto = "gpt-4o-mini"\n'
        f'prompt = ["{quoted}"]\n',
        encoding="utf-8",
    )
    return path


def _compiled(policy: RulePolicy) -> PromptPatterns:
    compiled = policy.rules[0]._prompt
    assert compiled is not None
    assert compiled.regexes
    assert all(isinstance(regex, re2._Regexp) for regex in compiled.regexes)
    return compiled


def _accepted(tmp_path: Path) -> list[tuple[str, RulePolicy]]:
    out = []
    for index, pattern in enumerate(ADVERSARIAL):
        folder = tmp_path / str(index)
        folder.mkdir()
        try:
            out.append((pattern, RulePolicy.load(_policy_file(folder, pattern))))
        except llmmeter.ConfigError:
            continue
    return out


@pytest.mark.parametrize("pattern", ADVERSARIAL)
def test_adversarial_pattern_is_refused_naming_file_rule_and_pattern_or_runs_under_re2(
    tmp_path: Path, pattern: str
) -> None:
    path = _policy_file(tmp_path, pattern)
    try:
        policy = RulePolicy.load(path)
    except llmmeter.ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: rules[0] (adversarial).prompt")
        assert repr(pattern) in message
        assert "\n" not in message
        return
    _compiled(policy)


def test_the_corpus_has_both_outcomes(tmp_path: Path) -> None:
    """A corpus that RE2 refused whole, or accepted whole, would test only one branch."""
    accepted = {pattern for pattern, _ in _accepted(tmp_path)}
    assert r"(a+)+$" in accepted  # the issue's pattern: fine under a linear-time engine
    assert r"(a+)\1+$" not in accepted
    assert 15 <= len(accepted) < len(ADVERSARIAL)


@pytest.mark.parametrize("prompt", list(PROMPTS), ids=list(PROMPTS))
def test_accepted_adversarial_patterns_decide_worst_case_prompts_as_re2_answers(
    tmp_path: Path, prompt: str
) -> None:
    text = PROMPTS[prompt]
    for pattern, policy in _accepted(tmp_path):
        _compiled(policy)  # RE2 before anything runs: backtracking could take forever
        view = CallView(
            endpoint="chat",
            operation="chat",
            model="gpt-4o",
            kwargs={"messages": [{"role": "user", "content": text}]},
        )
        assert len(view.prompt) <= PROMPT_WINDOW + 1
        expected = re2.search(pattern, view.prompt.encode()) is not None
        route = policy.decide(view)
        assert (route is not None) is expected, (pattern, prompt)


def test_the_issues_pattern_decides_the_issues_prompt() -> None:
    policy = RulePolicy(
        rules=[{"name": "r", "from": "gpt-4o", "to": "gpt-4o-mini", "prompt": [r"(a+)+$"]}]
    )
    _compiled(policy)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "a" * 28 + "b"}]
    view = CallView(
        endpoint="chat", operation="chat", model="gpt-4o", kwargs={"messages": messages}
    )
    assert policy.decide(view) is None
    messages[0]["content"] = "a" * 28
    view = CallView(
        endpoint="chat", operation="chat", model="gpt-4o", kwargs={"messages": messages}
    )
    route = policy.decide(view)
    assert route is not None and route.model == "gpt-4o-mini"


@pytest.mark.parametrize(
    "pattern",
    [r"a{99999999999999999999}", r"ab{1,99999999999999999999}", "x{" + "9" * 5000 + "}"],
)
def test_a_count_re2_cannot_hold_is_refused_not_read_as_literal_text(pattern: str) -> None:
    """RE2 reads ``a{N}`` with a count too large to parse as the text ``a{N}``; the user
    meant a repetition (Python's ``re`` reads one), so the pattern is refused, not changed."""
    rule = {"name": "r", "from": "gpt-4o", "to": "gpt-4o-mini", "prompt": [pattern]}
    with pytest.raises(llmmeter.ConfigError, match=r"counted repetitions up to \{1000\}"):
        RulePolicy(rules=[rule])


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"[x{99999999999999999999}]", "quote: {"),
        (r"\{99999999999999999999}", "{99999999999999999999}"),
        (r"a\{99999999999999999999}", "a{99999999999999999999}"),
        (r"\Qb{99999999999999999999}\E", "b{99999999999999999999}"),
    ],
)
def test_a_large_count_in_a_class_escaped_or_quoted_is_text_and_loads(
    pattern: str, text: str
) -> None:
    rule = {"name": "r", "from": "gpt-4o", "to": "gpt-4o-mini", "prompt": [pattern]}
    policy = RulePolicy(rules=[rule])
    messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    view = CallView(
        endpoint="chat", operation="chat", model="gpt-4o", kwargs={"messages": messages}
    )
    assert policy.decide(view) is not None


def test_instrument_refuses_an_unsupported_pattern_before_installing_anything(
    tmp_path: Path,
) -> None:
    openai = pytest.importorskip("openai")
    path = _policy_file(tmp_path, r"(a+)\1+$")
    with pytest.raises(llmmeter.ConfigError) as caught:
        make_telemetry().instrument(policy=path)
    message = str(caught.value)
    assert message.startswith(f"{path}: rules[0] (adversarial).prompt[0]: expected ")
    assert "backreferences" in message and repr(r"(a+)\1+$") in message
    create = openai.resources.chat.completions.Completions.create
    assert not isinstance(create, wrapt.ObjectProxy)  # the SDK was not patched


def test_without_re2_a_prompt_pattern_fails_at_load_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A platform where google-re2 did not install: rules without patterns still load."""
    monkeypatch.setitem(sys.modules, "re2", None)  # import re2 now raises ImportError
    base = {"name": "r", "from": "gpt-4o", "to": "gpt-4o-mini"}
    assert RulePolicy(rules=[base]).rules[0].name == "r"
    with pytest.raises(llmmeter.ConfigError) as caught:
        RulePolicy(rules=[{**base, "prompt": ["(?i)classify"]}])
    message = str(caught.value)
    assert "rules[0] (r).prompt[0]" in message and "install google-re2" in message
