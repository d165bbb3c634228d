"""The policy hook: what a policy sees (:class:`CallView`), what it returns (:class:`Route`).

A policy runs on every routable call (chat, responses, legacy completions), before the
request goes out, so everything here is built for a hot path: the view is a handful of
slots filled from values the call already computed, and everything costlier (the prompt
text, the token estimate, tool and image detection) is computed on first access only.

The rule-file policy lives in ``_rules.py``; the call-side handling of a decision (rewrite
the model, record it, fall back) lives in ``_routing.py`` and ``_call.py``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

from ._sdk import given
from ._usage import CHAT, COMPLETIONS, RESPONSES

PROMPT_WINDOW: Final = 8192
"""Characters of prompt text a policy sees: all of a short prompt; the first and last
``PROMPT_WINDOW // 2`` characters of a longer one (instructions tend to sit at the start and
the question at the end). Bounds the cost of regular expressions on huge prompts."""

CHARS_PER_TOKEN: Final = 4
"""The input-token estimate's rule of thumb (OpenAI's own for English text)."""
_TOKENS_PER_MESSAGE: Final = 4
_TOKENS_PER_IMAGE: Final = 85  # a low-detail image; high detail costs more

ROUTABLE_ENDPOINTS: Final = frozenset({CHAT, RESPONSES, COMPLETIONS})
"""Endpoints a policy may route. Embeddings, images and audio are never routed: another
model there changes what the answer *is* (a vector space, an image), not how good it is."""

_API_NAMES: Final = {CHAT: "chat_completions", RESPONSES: "responses", COMPLETIONS: "completions"}
_STICKY_FIELDS: Final = ("prompt_cache_key", "safety_identifier", "user")
_IMAGE_PARTS: Final = frozenset({"image_url", "input_image"})
_TEXT_PARTS: Final = frozenset({"text", "input_text", "output_text"})
# The only characters outside ASCII that ``re`` matches case-insensitively against an ASCII
# character while ``str.lower()`` maps them elsewhere: dotless i and long s (U+0130, dotted
# capital I, lowers to two characters and is caught by the length check in ``_fold``). Found
# by trying every code point against every ASCII character (the Kelvin sign lowers to "k").
_UNFOLDABLE: Final = ("\u0131", "\u017f")

Accept = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Route:
    """A policy's decision: send this call to ``model`` (or, with ``shadow``, only say so).

    Attributes:
        model: the model to send instead of the requested one.
        rule: a short, bounded name of the rule that decided (a metric label).
        shadow: record what would have happened and what it would have saved, but send the
            request exactly as written.
        fallback: when the routed call fails, re-send it once with the original model.
        evaluate: once the call has returned (a stream: ended normally), send the same
            request to the other model of the pair in the background and compare the two
            answers (shadow: the routed-to model; else the original). See docs/policy.md.
    """

    model: str
    rule: str
    shadow: bool = False
    fallback: bool = True
    evaluate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(f"Route.model: expected a non-empty str; got {self.model!r}")
        if not isinstance(self.rule, str) or not self.rule:
            raise TypeError(f"Route.rule: expected a non-empty str; got {self.rule!r}")
        for name in ("shadow", "fallback", "evaluate"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"Route.{name}: expected True or False; got {value!r}")


@runtime_checkable
class Policy(Protocol):
    """Anything with ``decide(call) -> Route | None`` can route calls.

    ``decide`` runs on every chat, responses and completions call before it is sent, on the
    caller's thread: keep it to microseconds and never block. It must not mutate the request.
    A policy that raises, or returns something other than a :class:`Route` or ``None``,
    leaves the call exactly as written (logged once).

    Optional attributes a policy may have, read once by ``instrument()``:

    - ``accept(response) -> bool``: called with the result of a routed, non-streaming call;
      ``False`` re-sends the call with the original model (the answer was not good enough).
    - ``deployments: Mapping[str, str]``: model name to Azure deployment name, so that calls
      on ``AzureOpenAI`` clients can be routed (see docs/policy.md).
    """

    def decide(self, call: CallView) -> Route | None:
        """Return where ``call`` should go, or ``None`` to leave it alone."""
        ...


class CallView:
    """A read-only view of one request, for :meth:`Policy.decide`.

    Attributes:
        operation: ``"chat"`` or ``"text_completion"`` (GenAI operation name).
        api: ``"chat_completions"``, ``"responses"`` or ``"completions"``.
        model: the model the application asked for (for Azure: the model its deployment
            serves, per the policy's ``deployments``).
        task: the innermost ``llmmeter.task`` label, or ``None``.
        attribution: the ``llmmeter.attribute`` labels in force, key to value (``{"tenant":
            "acme"}``); empty outside any block.
        key: the stickiness key: the ``llmmeter.task(..., key=...)`` key, else the request's
            ``prompt_cache_key``, ``safety_identifier`` or ``user``, else ``None``.
        stream: whether the application asked for a stream.
    """

    __slots__ = (
        "_folded",
        "_images",
        "_kwargs",
        "_lowered",
        "_prompt",
        "_text_list",
        "_tokens",
        "_tools",
        "api",
        "attribution",
        "endpoint",
        "key",
        "model",
        "operation",
        "stream",
        "task",
    )

    def __init__(
        self,
        *,
        endpoint: str,
        operation: str,
        model: str,
        kwargs: Mapping[str, Any],
        task: str | None = None,
        key: str | None = None,
        attribution: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.attribution: Mapping[str, str] = attribution if attribution is not None else {}
        self.api = _API_NAMES.get(endpoint, endpoint)
        self.operation = operation
        self.model = model
        self.task = task
        self._kwargs = kwargs
        self.key = key if key is not None else _request_key(kwargs)
        self.stream = kwargs.get("stream") is True
        self._prompt: str | None = None
        self._text_list: list[str] | None = None
        self._tokens: int | None = None
        self._tools: bool | None = None
        self._images: bool | None = None
        self._folded = False
        self._lowered: str | None = None

    def __repr__(self) -> str:
        return f"CallView(api={self.api!r}, model={self.model!r}, task={self.task!r})"

    @property
    def request(self) -> Mapping[str, Any]:
        """The call's keyword arguments, read-only (do not mutate what they contain)."""
        return MappingProxyType(dict(self._kwargs))

    @property
    def tools(self) -> bool:
        """The request offers tools (or functions) to the model."""
        if self._tools is None:
            kwargs = self._kwargs
            self._tools = bool(given(kwargs.get("tools")) and kwargs.get("tools")) or bool(
                given(kwargs.get("functions")) and kwargs.get("functions")
            )
        return self._tools

    @property
    def images(self) -> bool:
        """The request contains image input."""
        if self._images is None:
            self._images = _has_images(self.endpoint, self._kwargs)
        return self._images

    @property
    def response_format(self) -> bool:
        """The request asks for structured output (``response_format``, ``text.format``,
        or a ``parse()`` schema)."""
        kwargs = self._kwargs
        if self.endpoint == RESPONSES:
            text = kwargs.get("text")
            fmt = text.get("format") if isinstance(text, Mapping) else None
            return (isinstance(fmt, Mapping) and fmt.get("type") != "text") or given(
                kwargs.get("text_format")
            )
        fmt = kwargs.get("response_format")
        if isinstance(fmt, Mapping):
            return fmt.get("type") != "text"
        return given(fmt)

    @property
    def max_output_tokens(self) -> int | None:
        """The request's cap on output tokens, if it sets one."""
        kwargs = self._kwargs
        for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
            value = kwargs.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    @property
    def input_tokens(self) -> int:
        """A cheap estimate of the input tokens: characters / 4, plus per-message and
        per-image overheads. Good to about 20% for English text; not a tokenizer."""
        if self._tokens is None:
            self._tokens = _estimate_tokens(self.endpoint, self._kwargs, self._all_texts())
        return self._tokens

    @property
    def prompt(self) -> str:
        """The request's text (system, user, assistant and tool messages, instructions),
        joined by newlines and bounded to :data:`PROMPT_WINDOW` characters."""
        if self._prompt is None:
            self._prompt = _window("\n".join(self._all_texts()))
        return self._prompt

    def _all_texts(self) -> list[str]:
        """The request's texts, extracted once for both :attr:`prompt` and the estimate."""
        if self._text_list is None:
            self._text_list = _texts(self.endpoint, self._kwargs)
        return self._text_list

    @property
    def _lower_prompt(self) -> str | None:
        """:attr:`prompt` lower-cased character for character (same length, same positions),
        for the rules' literal pre-checks; ``None`` when ``str.lower`` and ``re``'s
        case-insensitive matching could disagree about this text."""
        if not self._folded:
            self._lowered = _fold(self.prompt)
            self._folded = True
        return self._lowered


# --- sticky sampling -------------------------------------------------------------------


def stable_fraction(rule: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for ``rule``: the same everywhere, forever.

    The first 8 bytes of SHA-256 over ``rule``, a 0x1f separator and ``key`` (UTF-8), read as
    a big-endian unsigned integer and divided by 2**64. Any language can reproduce it, so every
    process of a fleet puts a conversation on the same side of a canary with no shared state.
    """
    digest = hashlib.sha256(f"{rule}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 18446744073709551616.0


def sampled(rule: str, fraction: float, key: str | None) -> bool:
    """Whether a call with stickiness ``key`` falls inside ``rule``'s ``fraction``."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    if key is None:
        return random.random() < fraction  # no key: each call on its own
    return stable_fraction(rule, key) < fraction


# --- reading the request ---------------------------------------------------------------


def _request_key(kwargs: Mapping[str, Any]) -> str | None:
    """The first stickiness field set, as it goes on the wire (``extra_body`` wins over the
    argument of the same name, as the SDK merges them)."""
    extra = kwargs.get("extra_body")
    for name in _STICKY_FIELDS:
        if isinstance(extra, Mapping):
            value = extra.get(name)
            if isinstance(value, str) and value:
                return value
        value = kwargs.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _window(text: str) -> str:
    if len(text) <= PROMPT_WINDOW:
        return text
    half = PROMPT_WINDOW // 2
    return f"{text[:half]}\n{text[-half:]}"


def _fold(text: str) -> str | None:
    """``text.lower()`` if, wherever ``re`` matches an ASCII character case-insensitively
    in ``text``, the lowered text has that character, lower-cased, at the same position;
    else ``None``."""
    lowered = text.lower()
    if text.isascii():
        return lowered
    if len(lowered) != len(text) or any(ch in text for ch in _UNFOLDABLE):
        return None
    return lowered


def _content_texts(content: Any, out: list[str]) -> None:
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, (list, tuple)):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") in _TEXT_PARTS:
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)


def _texts(endpoint: str, kwargs: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    if endpoint == CHAT:
        messages = kwargs.get("messages")
        if isinstance(messages, (list, tuple)):
            for message in messages:
                if isinstance(message, Mapping):
                    _content_texts(message.get("content"), out)
    elif endpoint == RESPONSES:
        instructions = kwargs.get("instructions")
        if isinstance(instructions, str):
            out.append(instructions)
        value = kwargs.get("input")
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, Mapping):
                    _content_texts(item.get("content"), out)
                    output = item.get("output")
                    if isinstance(output, str):
                        out.append(output)
    elif endpoint == COMPLETIONS:
        prompt = kwargs.get("prompt")
        if isinstance(prompt, str):
            out.append(prompt)
        elif isinstance(prompt, (list, tuple)):
            out.extend(p for p in prompt if isinstance(p, str))
    return out


def _items(endpoint: str, kwargs: Mapping[str, Any]) -> list[Any]:
    key = "messages" if endpoint == CHAT else "input" if endpoint == RESPONSES else ""
    value = kwargs.get(key) if key else None
    return list(value) if isinstance(value, (list, tuple)) else []


def _has_images(endpoint: str, kwargs: Mapping[str, Any]) -> bool:
    for item in _items(endpoint, kwargs):
        content = item.get("content") if isinstance(item, Mapping) else None
        if isinstance(content, (list, tuple)):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") in _IMAGE_PARTS:
                    return True
    return False


def _estimate_tokens(endpoint: str, kwargs: Mapping[str, Any], texts: list[str]) -> int:
    chars = sum(map(len, texts))
    items = _items(endpoint, kwargs)
    images = 0
    for item in items:
        content = item.get("content") if isinstance(item, Mapping) else None
        if isinstance(content, (list, tuple)):
            images += sum(
                1 for p in content if isinstance(p, Mapping) and p.get("type") in _IMAGE_PARTS
            )
    tokens = -(-chars // CHARS_PER_TOKEN)  # ceiling
    return tokens + _TOKENS_PER_MESSAGE * len(items) + _TOKENS_PER_IMAGE * images
