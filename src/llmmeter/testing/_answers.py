"""Scripted answers: which reply text a model gives to which request.

Tests of model migration need two models that disagree on some prompts. A rule names a
model glob and, optionally, a regex over the request's text; the first rule (in the order
they were added) that matches a request decides its reply text, and a request no rule
matches gets ``FakeOpenAI.reply``. Everything built from the reply text (JSON mode's
``{"message": ...}``, streams, token counts) follows from it unchanged.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AnswerRule:
    """``reply`` for requests to a model matching ``model`` whose text ``prompt`` finds."""

    model: str
    reply: str
    prompt: re.Pattern[str] | None = None

    def matches(self, names: Iterable[str], text: str) -> bool:
        if not any(fnmatch.fnmatchcase(name, self.model) for name in names):
            return False
        return self.prompt is None or self.prompt.search(text) is not None


def make_rule(model: Any, reply: Any, prompt: Any) -> AnswerRule:
    """A validated rule; ``ValueError`` (or ``TypeError``) says what is wrong."""
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty model name or glob, got {model!r}")
    if not isinstance(reply, str):
        raise TypeError(f"reply must be a str, got {type(reply).__name__}")
    if prompt is None or isinstance(prompt, re.Pattern):
        return AnswerRule(model, reply, prompt)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a regex (str or re.Pattern), got {prompt!r}")
    try:
        compiled = re.compile(prompt)
    except re.error as exc:
        raise ValueError(f"prompt must be a valid regex, got {prompt!r}: {exc}") from None
    return AnswerRule(model, reply, compiled)


def _texts(content: Any) -> Iterator[str]:
    """The strings of a message's content: a string, or the ``text`` of each part."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]


def request_text(body: Mapping[str, Any]) -> str:
    """The text a ``prompt`` regex searches, in request order, one line per source.

    Chat ``messages`` contents; Responses ``instructions`` and ``input`` (a string, or each
    item's content); the legacy and media endpoints' ``prompt`` (a string or strings).
    Text parts count, images and files do not.
    """
    texts: list[str] = []
    for message in body.get("messages") or ():
        if isinstance(message, Mapping):
            texts.extend(_texts(message.get("content")))
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        texts.append(instructions)
    items = body.get("input")
    if isinstance(items, str):
        texts.append(items)
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping):
                texts.extend(_texts(item.get("content")))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts.extend(item for item in prompt if isinstance(item, str))
    return "\n".join(texts)


def pick_reply(
    rules: Iterable[AnswerRule], names: Iterable[str], body: Mapping[str, Any]
) -> str | None:
    """The reply of the first rule that matches, or None when none does."""
    candidates = [name for name in names if name]
    text: str | None = None
    for rule in rules:
        if rule.prompt is not None and text is None:
            text = request_text(body)
        if rule.matches(candidates, text or ""):
            return rule.reply
    return None
