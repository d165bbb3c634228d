"""Comparators shared by `llmmeter evaluate` and shadow evaluation, on real SDK results.

Answers come from the fake OpenAI server through the official SDK (pydantic objects of
whichever openai major is installed), and from the same results as JSON dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from llmmeter._compare import (
    Answer,
    ComparatorProblem,
    Comparison,
    ToolCall,
    build_comparator,
    comparator_from_config,
    compare,
    extract_label,
    read_answer,
)
from llmmeter.exceptions import ConfigError
from llmmeter.testing import FakeOpenAI

openai = pytest.importorskip("openai")

HI = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        },
    },
}
EXACT = build_comparator("exact")
JSON = build_comparator("json")
TOOL = build_comparator("tool")
SENTIMENT = build_comparator("label", r"(?i)\b(positive|negative)\b")


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[Any]:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


def score(comparator: Any, original: Any, candidate: Any) -> float | None:
    result = compare(comparator, original, candidate)
    assert result.error is None, result.error
    return result.score


# --- reading answers ---------------------------------------------------------------------


def test_reads_chat_text_from_the_sdk_object_and_its_json(client: Any, server: FakeOpenAI) -> None:
    server.reply = "Paris is the capital."
    result = client.chat.completions.create(model="gpt-4o", messages=HI)
    expected = Answer("Paris is the capital.")
    assert read_answer(result) == expected
    assert read_answer(result.model_dump()) == expected
    assert read_answer(result).raw is result


def test_reads_chat_tool_calls(client: Any) -> None:
    result = client.chat.completions.create(model="gpt-4o", messages=HI, tools=[WEATHER])
    call = ToolCall("get_weather", '{"city":"example","days":1}')
    assert read_answer(result) == Answer(None, (call,))
    assert read_answer(result.model_dump()) == Answer(None, (call,))


def test_reads_responses_text_and_function_calls(client: Any, server: FakeOpenAI) -> None:
    server.reply = "Bonjour"
    text = client.responses.create(model="gpt-4o", input="Hi")
    assert read_answer(text) == Answer("Bonjour")
    assert read_answer(text.model_dump()) == Answer("Bonjour")
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    called = client.responses.create(model="gpt-4o", input="Hi", tools=[tool])
    assert read_answer(called) == Answer(None, (ToolCall("lookup", "{}"),))


def test_reads_legacy_completion_text(client: Any, server: FakeOpenAI) -> None:
    server.reply = "Once upon"
    result = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Tell")
    assert read_answer(result) == Answer("Once upon")


def test_an_unreadable_result_is_an_error_not_a_score() -> None:
    assert compare(EXACT, {"choices": []}, "x") == Comparison(
        None,
        "unreadable answer: expected a Chat Completions, Responses or Completions result with "
        "an answer; got dict",
    )


# --- built-in comparators ----------------------------------------------------------------


def test_exact_normalises_unicode_case_and_whitespace() -> None:
    assert score(EXACT, "  Stra\u00dfe\n\tﬁne  ", "STRASSE fine") == 1.0
    assert score(EXACT, "positive", "positive.") == 0.0
    assert score(EXACT, "positive", Answer(None, (ToolCall("f", "{}"),))) == 0.0


def test_exact_against_an_original_without_text_cannot_judge() -> None:
    original = Answer(None, (ToolCall("f", "{}"),))
    assert compare(EXACT, original, "x") == Comparison(None, "the original answer has no text")


def test_json_compares_parsed_documents() -> None:
    assert score(JSON, '{"a": 1, "b": [true, null]}', '{"b":[true,null],"a":1.0}') == 1.0
    assert score(JSON, '{"a": 1}', '{"a": true}') == 0.0
    assert score(JSON, '{"a": 1}', '{"a": 1, "b": 2}') == 0.0
    assert score(JSON, '{"a": 1}', "Sure! {a: 1}") == 0.0


def test_json_against_an_original_that_is_not_json_cannot_judge() -> None:
    assert compare(JSON, "Sure!", "{}") == Comparison(None, "the original answer is not JSON")


def test_tool_compares_names_and_parsed_arguments_in_order() -> None:
    a, b = ToolCall("a", '{"x": 1, "y": 2}'), ToolCall("b", "{}")
    assert score(TOOL, Answer(None, (a, b)), Answer(None, (ToolCall("a", '{"y":2,"x":1}'), b))) == 1
    assert score(TOOL, Answer(None, (a, b)), Answer(None, (b, a))) == 0.0
    assert score(TOOL, Answer(None, (a,)), Answer(None, (ToolCall("a", '{"x": 2}'),))) == 0.0
    assert score(TOOL, Answer(None, (a,)), Answer(None, (ToolCall("a", "{oops"),))) == 0.0
    assert score(TOOL, Answer(None, (a,)), Answer("I would call a.")) == 0.0


def test_tool_against_the_same_sdk_answer_agrees(client: Any) -> None:
    first = client.chat.completions.create(model="gpt-4o", messages=HI, tools=[WEATHER])
    second = client.chat.completions.create(model="gpt-4o-mini", messages=HI, tools=[WEATHER])
    assert score(TOOL, first, second.model_dump()) == 1.0


def test_tool_custom_calls_compare_their_input_as_text() -> None:
    shell = ToolCall("shell", "ls -la", "custom")
    assert score(TOOL, Answer(None, (shell,)), Answer(None, (shell,))) == 1.0
    other = ToolCall("shell", "ls", "custom")
    assert score(TOOL, Answer(None, (shell,)), Answer(None, (other,))) == 0.0


def test_tool_against_an_original_without_a_call_cannot_judge() -> None:
    assert compare(TOOL, "text", "text").error == "the original answer calls no tool"
    broken = Answer(None, (ToolCall("a", "{oops"),))
    assert compare(TOOL, broken, broken).error == (
        "the original call of 'a' has arguments that are not JSON"
    )


def test_label_takes_group_one_casefolded() -> None:
    assert score(SENTIMENT, "Sentiment: Positive", "POSITIVE, clearly") == 1.0
    assert score(SENTIMENT, "negative", "positive") == 0.0
    assert score(SENTIMENT, "negative", "I cannot tell") == 0.0


def test_label_without_groups_takes_the_whole_match() -> None:
    stars = build_comparator("label", r"(?i)\d stars?")
    assert score(stars, "I give it 4 Stars", "4 stars") == 1.0
    assert score(stars, "4 stars", "5 stars") == 0.0


def test_label_missing_from_the_original_cannot_judge() -> None:
    assert compare(SENTIMENT, "I cannot tell", "positive") == Comparison(
        None, "no label in the original answer"
    )


# --- comparators in code -----------------------------------------------------------------


def test_a_callable_scores_the_two_answers() -> None:
    def overlap(original: Answer, candidate: Answer) -> float:
        a, b = set((original.text or "").split()), set((candidate.text or "").split())
        return len(a & b) / len(a | b)

    assert score(build_comparator(overlap), "a b c d", "a b") == 0.5
    assert score(build_comparator(lambda _o, _c: True), "a", "b") == 1.0
    assert score(build_comparator(lambda _o, _c: 0), "a", "b") == 0.0


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        (1.5, "the comparator returned 1.5, outside [0, 1]"),
        (-0.1, "the comparator returned -0.1, outside [0, 1]"),
        (math.nan, "the comparator returned nan, outside [0, 1]"),
        ("yes", "the comparator returned str, not a number"),
        (None, "the comparator returned NoneType, not a number"),
    ],
)
def test_a_callable_returning_no_score_is_an_error(returned: object, error: str) -> None:
    judged = compare(build_comparator(lambda _o, _c: returned), "a", "a")
    assert judged == Comparison(None, error, comparator_failed=True)
    assert not judged.judged


def test_a_callable_that_raises_is_an_error_without_its_message() -> None:
    def broken(original: Answer, candidate: Answer) -> float:
        raise KeyError(f"secret prompt text {original.text}")

    assert compare(build_comparator(broken), "a", "a") == Comparison(
        None, "the comparator raised KeyError", comparator_failed=True
    )


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compare_", "label", "message"),
    [
        ("fuzzy", None, "rules[0].compare: expected one of exact, json, tool, label; got 'fuzzy'"),
        (3, None, "rules[0].compare: expected one of exact, json, tool, label; got 3"),
        ("label", None, "rules[0].label: compare = 'label' needs a label regex; got none"),
        (
            "label",
            "(",
            "rules[0].label: expected a regular expression RE2 can compile (missing ): (); got '('",
        ),
        ("label", 7, "rules[0].label: expected a regular expression; got 7"),
        (
            "label",
            "a{99999999999999999999}",
            "rules[0].label: expected counted repetitions up to {1000} (this one: "
            "{99999999999999999999}; RE2 would read a count it cannot hold as literal text)",
        ),
        ("exact", "x", "rules[0].label: a label regex only applies to compare = 'label', not"),
    ],
)
def test_config_errors_name_the_file_and_the_key(
    compare_: object, label: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        comparator_from_config(compare_, label, source="policy.toml", where="rules[0]")
    assert str(caught.value).startswith(f"policy.toml: {message}")


def test_config_accepts_every_builtin_and_a_callable() -> None:
    for name in ("exact", "json", "tool"):
        assert comparator_from_config(name, None, source="f", where="w").name == name
    label = comparator_from_config("label", "(a|b)", source="f", where="w")
    assert label.label is not None and label.label.pattern == "(a|b)"
    deep = "(" * 1000 + "a" + ")" * 1000  # RecursionError in Python's re; RE2 parses it
    assert comparator_from_config("label", deep, source="f", where="w").label is not None

    def mine(original: Answer, candidate: Answer) -> float:
        return 1.0

    assert comparator_from_config(mine, None, source="f", where="w").judge is mine


def test_a_backtracking_label_regex_judges_a_hostile_answer_in_linear_time() -> None:
    """The label regex runs on every judged answer, with the interpreter's lock held: under
    Python's ``re``, ``(a+)+$`` on 'a' * 40 + 'b' would run for hours. Under RE2 it is a
    plain search (this test would not finish on a backtracking engine)."""
    comparator = build_comparator("label", r"(a+)+$")
    hostile = Answer(text="a" * 40 + "b")
    clean = Answer(text="a" * 40)
    assert extract_label(comparator.label, hostile.text) is None
    assert extract_label(comparator.label, clean.text) == "a" * 40


@pytest.mark.parametrize(
    ("label", "why"),
    [
        (r"(yes|no) \1", "backreferences"),
        (r"(?=yes)\w+", "lookahead"),
        (r"\bcafé\b", "only next to ASCII"),
    ],
)
def test_a_label_regex_re2_cannot_run_is_refused_with_the_reason(label: str, why: str) -> None:
    with pytest.raises(ComparatorProblem) as caught:
        build_comparator("label", label)
    assert why in str(caught.value)
