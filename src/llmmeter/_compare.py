"""Comparators: does one model's answer agree with another's (or with the right answer)?

``llmmeter evaluate`` (offline, a dataset) and shadow evaluation (live, sampled calls) both
judge a candidate answer against an original one with the same comparators, so a verdict
reached offline means the same thing as the agreement measured in production.

Answers are read into an :class:`Answer` (text and tool calls) from any result of the ``openai``
SDK (1.x to 3.x pydantic models) or its JSON body: Chat Completions, Responses and legacy
Completions. A comparator is a function ``(original, candidate) -> score in [0, 1]``;
:func:`compare` runs one and never lets it fail the caller. A comparator that raises, or returns
anything but a number in [0, 1], gives an *error* (the pair cannot be judged), never agreement:
evidence for switching models must not come from a bug.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._usage import read_field, read_list
from .exceptions import ConfigError

BUILTIN: Final = ("exact", "json", "tool", "label")
"""Comparator names a policy file or the command line may give."""

ToolKind = Literal["function", "custom"]
Judge = Callable[["Answer", "Answer"], "float | bool"]
"""A comparator in code: ``(original, candidate) -> float in [0, 1]`` (a bool counts as 0 or 1)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of an answer: its name and arguments as the model wrote them."""

    name: str
    arguments: str
    """JSON text for function tools; free text for custom tools (Responses, Chat)."""
    kind: ToolKind = "function"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a model answered, in a shape every API and SDK version reduces to.

    ``text`` is None when the answer has no text at all (a tool call), which is not the
    same as an empty text. ``raw`` keeps the object the answer was read from, for comparators
    in code that need more (logprobs, refusals); it takes no part in equality.
    """

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of judging one pair: a score in [0, 1], or why it could not be judged."""

    score: float | None
    error: str | None = None
    comparator_failed: bool = False
    """The error is the comparator's (it raised, or returned no score), not the answers'."""

    @property
    def judged(self) -> bool:
        return self.error is None


class Unjudgeable(Exception):
    """Raised by a comparator when the *original* answer cannot serve as a reference."""


class ComparatorProblem(ValueError):
    """A comparator specification that cannot work; ``key`` is the setting at fault."""

    def __init__(self, key: Literal["compare", "label"], message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Comparator:
    """A named, validated comparator, ready for :func:`compare`."""

    name: str
    judge: Judge = field(repr=False)
    label: re.Pattern[str] | None = None


# --- reading answers ---------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _arguments(value: Any) -> str:
    """Arguments as text: the API sends a JSON string; a dict (hand-written) is dumped."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True) if value is not None else ""


def _chat_tool_calls(message: Any) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    for call in read_list(read_field(message, "tool_calls")):
        custom = read_field(call, "custom")
        if custom is not None:
            calls.append(
                ToolCall(
                    str(read_field(custom, "name") or ""),
                    _arguments(read_field(custom, "input")),
                    "custom",
                )
            )
            continue
        function = read_field(call, "function")
        calls.append(
            ToolCall(
                str(read_field(function, "name") or ""),
                _arguments(read_field(function, "arguments")),
            )
        )
    legacy = read_field(message, "function_call")
    if legacy is not None and not calls:
        calls.append(
            ToolCall(
                str(read_field(legacy, "name") or ""), _arguments(read_field(legacy, "arguments"))
            )
        )
    return tuple(calls)


def _responses_answer(output: list[Any], raw: Any) -> Answer:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in output:
        kind = read_field(item, "type")
        if kind == "message":
            for part in read_list(read_field(item, "content")):
                if read_field(part, "type") == "output_text" and isinstance(
                    read_field(part, "text"), str
                ):
                    texts.append(read_field(part, "text"))
        elif kind == "function_call":
            calls.append(
                ToolCall(
                    str(read_field(item, "name") or ""), _arguments(read_field(item, "arguments"))
                )
            )
        elif kind == "custom_tool_call":
            calls.append(
                ToolCall(
                    str(read_field(item, "name") or ""),
                    _arguments(read_field(item, "input")),
                    "custom",
                )
            )
    # Like the SDK's ``output_text``: every output_text part, joined.
    return Answer("".join(texts) if texts else None, tuple(calls), raw)


def read_answer(result: Any) -> Answer:
    """The answer in an SDK result or its JSON body; a str is taken as the answer's text.

    Chat Completions: the first choice's message content and tool calls. Responses: the text
    of every ``output_text`` part, and function and custom tool calls. Legacy Completions: the
    first choice's text.

    Raises:
        ValueError: ``result`` is none of these.
    """
    if isinstance(result, Answer):
        return result
    if isinstance(result, str):
        return Answer(result, (), result)
    output = read_field(result, "output")
    if isinstance(output, list | tuple):
        return _responses_answer(list(output), result)
    choices = read_list(read_field(result, "choices"))
    if choices:
        first = choices[0]
        message = read_field(first, "message")
        if message is not None:
            return Answer(_text(read_field(message, "content")), _chat_tool_calls(message), result)
        text = read_field(first, "text")
        if isinstance(text, str):
            return Answer(text, (), result)
    raise ValueError(
        "expected a Chat Completions, Responses or Completions result with an answer; got "
        + type(result).__name__
    )


def answer_from_messages(messages: list[dict[str, Any]]) -> Answer:
    """The answer in output messages as llmmeter reads them from a stream (GenAI message
    parts, ``_usage.output_messages``): the first message's text and tool calls.

    Raises:
        ValueError: no message was read.
    """
    if not messages:
        raise ValueError("no answer was read from the stream")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in messages[0].get("parts", ()):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("content"), str):
            texts.append(part["content"])
        elif kind == "tool_call":
            calls.append(ToolCall(str(part.get("name") or ""), _arguments(part.get("arguments"))))
    return Answer("".join(texts) if texts else None, tuple(calls), messages)


# --- the built-in comparators ------------------------------------------------------------


def normalize(text: str) -> str:
    """Text as ``exact`` compares it: Unicode NFKC, casefolded, whitespace collapsed, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _reference_text(original: Answer) -> str:
    if original.text is None:
        raise Unjudgeable("the original answer has no text")
    return original.text


def _exact(original: Answer, candidate: Answer) -> float:
    reference = normalize(_reference_text(original))
    return float(candidate.text is not None and normalize(candidate.text) == reference)


_NOT_JSON: Final = object()


def _parse_json(text: str | None) -> Any:
    if text is None:
        return _NOT_JSON
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested beyond the parser's depth
        return _NOT_JSON


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0`` as JSON has one number type, but ``true != 1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _json(original: Answer, candidate: Answer) -> float:
    reference = _parse_json(_reference_text(original))
    if reference is _NOT_JSON:
        raise Unjudgeable("the original answer is not JSON")
    answer = _parse_json(candidate.text)
    return float(answer is not _NOT_JSON and same_json(reference, answer))


def _same_call(reference: ToolCall, call: ToolCall) -> bool:
    if reference.name != call.name:
        return False
    if reference.kind == "custom":
        return call.kind == "custom" and reference.arguments == call.arguments
    expected = _parse_json(reference.arguments)
    if expected is _NOT_JSON:
        raise Unjudgeable(
            f"the original call of {reference.name!r} has arguments that are not JSON"
        )
    given = _parse_json(call.arguments)
    return given is not _NOT_JSON and same_json(expected, given)


def _tool(original: Answer, candidate: Answer) -> float:
    if not original.tool_calls:
        raise Unjudgeable("the original answer calls no tool")
    if len(candidate.tool_calls) != len(original.tool_calls):
        return 0.0
    # Every reference call is checked, so an unjudgeable one is reported even after a mismatch.
    same = [
        _same_call(ref, call)
        for ref, call in zip(original.tool_calls, candidate.tool_calls, strict=True)
    ]
    return float(all(same))


def extract_label(pattern: re.Pattern[str], text: str | None) -> str | None:
    """The label ``pattern`` finds in ``text``: group 1 if it has groups, else the match."""
    if text is None:
        return None
    found = pattern.search(text)
    if found is None:
        return None
    label = found.group(1) if pattern.groups else found.group(0)
    return label.strip().casefold() if label is not None else None


def _label_judge(pattern: re.Pattern[str]) -> Judge:
    def judge(original: Answer, candidate: Answer) -> float:
        reference = extract_label(pattern, original.text)
        if reference is None:
            raise Unjudgeable("no label in the original answer")
        return float(extract_label(pattern, candidate.text) == reference)

    return judge


# --- building and running comparators ----------------------------------------------------


def build_comparator(compare: str | Judge, label: str | None = None) -> Comparator:
    """A comparator by built-in name (``label`` needs ``label``, a regex) or from a callable.

    Raises:
        ComparatorProblem: an unknown name, ``label`` without a regex or with a bad one, or a
            regex given to a comparator other than ``label``.
    """
    if callable(compare):
        if label is not None:
            raise ComparatorProblem("label", "a label regex only applies to compare = 'label'")
        name = getattr(compare, "__qualname__", None) or type(compare).__name__
        return Comparator(name=str(name), judge=compare)
    if compare not in BUILTIN:
        raise ComparatorProblem("compare", f"expected one of {', '.join(BUILTIN)}; got {compare!r}")
    if compare != "label":
        if label is not None:
            raise ComparatorProblem(
                "label", f"a label regex only applies to compare = 'label', not {compare!r}"
            )
        judges: dict[str, Judge] = {"exact": _exact, "json": _json, "tool": _tool}
        return Comparator(name=compare, judge=judges[compare])
    if label is None:
        raise ComparatorProblem("label", "compare = 'label' needs a label regex; got none")
    if not isinstance(label, str) or not label:
        raise ComparatorProblem("label", f"expected a regular expression; got {label!r}")
    try:
        pattern = re.compile(label)
    except (re.error, OverflowError) as exc:  # OverflowError: a repeat count such as a{10**20}
        raise ComparatorProblem(
            "label", f"expected a regular expression; got {label!r} ({exc})"
        ) from None
    except RecursionError:  # groups nested deeper than the parser's stack
        raise ComparatorProblem(
            "label", f"expected a regular expression; got {label!r} (nested too deeply)"
        ) from None
    return Comparator(name="label", judge=_label_judge(pattern), label=pattern)


def comparator_from_config(
    compare: object, label: object, *, source: str, where: str
) -> Comparator:
    """:func:`build_comparator` for configuration: a bad spec is a ConfigError naming the key.

    ``source`` names the file (or argument) and ``where`` the table, e.g. ``rules[0]``; the
    message reads ``policy.toml: rules[0].label: expected a regular expression; got '('``.
    """
    if not (isinstance(compare, str) or callable(compare)):
        raise ConfigError(
            f"{source}: {where}.compare: expected one of {', '.join(BUILTIN)}; got {compare!r}"
        )
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"{source}: {where}.label: expected a regular expression; got {label!r}")
    try:
        return build_comparator(compare, label)
    except ComparatorProblem as exc:
        raise ConfigError(f"{source}: {where}.{exc.key}: {exc}") from None


def _bad_score(value: object) -> str | None:
    """Why ``value`` is not a score, or None when it is one."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | float):
        return f"the comparator returned {type(value).__name__}, not a number"
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        return f"the comparator returned {value!r}, outside [0, 1]"
    return None


def compare(comparator: Comparator, original: Any, candidate: Any) -> Comparison:
    """Judge ``candidate`` against ``original`` (SDK results, JSON bodies, strings or Answers).

    Never raises: an answer that cannot be read, a comparator that raises or returns anything
    but a number in [0, 1] give a :class:`Comparison` with ``error`` set and no score.
    """
    try:
        reference = read_answer(original)
        answer = read_answer(candidate)
    except Exception as exc:
        return Comparison(None, f"unreadable answer: {exc}")
    try:
        value: object = comparator.judge(reference, answer)
    except Unjudgeable as exc:
        return Comparison(None, str(exc))
    except Exception as exc:
        # The type only: an exception's message may quote the answers, which stay private.
        return Comparison(None, f"the comparator raised {type(exc).__name__}", True)
    problem = _bad_score(value)
    if problem is not None:
        return Comparison(None, problem, True)
    assert isinstance(value, int | float)
    return Comparison(float(value))


EXACT: Final = build_comparator("exact")
"""The comparator a rule uses when it names none."""
