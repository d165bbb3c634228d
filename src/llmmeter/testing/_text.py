"""Deterministic text for the fake server: token counts, replies, ids and example JSON.

Token rule (documented in docs/testing.md, relied on by tests):

- a piece of text counts ``ceil(len(text) / 4)`` tokens;
- every message (chat message, Responses input item, ``instructions``) adds 3 tokens,
  and every prompt adds 3 more for priming the reply;
- a non-text part (image, audio, file) counts 85 tokens;
- tool definitions and a JSON schema count as the text of their compact JSON;
- a prompt counts at least 1 token;
- a reply counts one token per piece that ``split_tokens`` yields (a word with its
  leading space, or one punctuation mark), and that is also how streams are chunked.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: What every model says unless the test sets ``FakeOpenAI.reply``. It is longer than 16
#: tokens so that the legacy default ``max_tokens`` (16) truncates it, as it does for real.
DEFAULT_REPLY = (
    "This is a test reply from the llmmeter fake OpenAI server; "
    "the same request always gets the same words back."
)

NON_TEXT_PART_TOKENS = 85
MESSAGE_TOKENS = 3
PRIMING_TOKENS = 3

_TOKEN = re.compile(r"\s*[\w']+|\s*[^\w\s]|\s+")
_ALPHANUMERIC = string.ascii_letters + string.digits
_TEXT_KEYS = ("text", "content", "output", "arguments", "input", "refusal", "name")
_NON_TEXT_TYPES = frozenset(
    {"image_url", "input_image", "input_audio", "file", "input_file", "image_file"}
)


def count_text(text: str) -> int:
    """Tokens in a piece of prompt text: one per four characters, rounded up."""
    return (len(text) + 3) // 4


def split_tokens(text: str) -> list[str]:
    """Split a reply into the pieces that are counted and streamed one by one."""
    return _TOKEN.findall(text)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def random_id(prefix: str, length: int, alphabet: str = _ALPHANUMERIC) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def hex_id(prefix: str) -> str:
    """An id shaped like the Responses API's: a prefix and 50 hex digits."""
    return prefix + secrets.token_hex(25)


def stable_digest(*parts: str, length: int = 10) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:length]


def obfuscation(payload: str) -> str:
    """Deterministic padding like the real ``obfuscation`` field (it hides chunk sizes)."""
    digest = hashlib.sha256(payload.encode()).digest()
    size = 2 + digest[0] % 14
    return "".join(_ALPHANUMERIC[b % len(_ALPHANUMERIC)] for b in digest[1 : 1 + size])


@dataclass(slots=True)
class Prompt:
    """A request's prompt as the fake server counts and caches it.

    ``segments`` joined are the canonical prompt text that prompt caching compares;
    ``breakpoint_*`` mark the end of the prefix an explicit cache breakpoint names.
    """

    tokens: int = PRIMING_TOKENS
    segments: list[str] = field(default_factory=list)
    breakpoint_tokens: int | None = None
    breakpoint_chars: int | None = None
    _chars: int = 0

    def add(self, segment: str, tokens: int) -> None:
        self.segments.append(segment)
        self._chars += len(segment)
        self.tokens += tokens

    def add_text(self, text: str) -> None:
        self.add(text, count_text(text))

    def mark_breakpoint(self) -> None:
        self.breakpoint_tokens = self.tokens
        self.breakpoint_chars = self._chars

    @property
    def text(self) -> str:
        return "".join(self.segments)

    @property
    def total(self) -> int:
        return max(1, self.tokens)

    def add_message(self, role: str, content: Any) -> None:
        self.add(f"<|{role}|>", MESSAGE_TOKENS)
        self.add_content(content)

    def add_content(self, content: Any) -> None:
        """Count a message's content: a string, a list of parts, or any nested JSON."""
        if content is None:
            return
        if isinstance(content, str):
            self.add_text(content)
            return
        if isinstance(content, list):
            for part in content:
                self.add_content(part)
            return
        if not isinstance(content, dict):
            self.add_text(str(content))
            return
        if content.get("type") in _NON_TEXT_TYPES:
            self.add(compact(content), NON_TEXT_PART_TOKENS)
        else:
            for key in _TEXT_KEYS:
                value = content.get(key)
                if isinstance(value, str):
                    self.add_text(value)
                elif isinstance(value, list | dict):
                    self.add_content(value)
            for call in content.get("tool_calls") or ():
                self.add_content(call.get("function") or call.get("custom") or {})
            summary = content.get("summary")
            if isinstance(summary, list):
                self.add_content(summary)
        if content.get("prompt_cache_breakpoint"):
            self.mark_breakpoint()

    def add_json(self, value: Any) -> None:
        """Count a definition (tools, a JSON schema) as the text of its compact JSON."""
        self.add_text(compact(value))


def example_for_schema(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A deterministic value that satisfies the common subset of JSON Schema.

    Used for tool-call arguments and ``json_schema`` replies: strings are ``"example"``,
    numbers 1, booleans true, arrays hold one item, objects every listed property.
    """
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 8:
        return "example"
    if "$ref" in schema and isinstance(schema["$ref"], str):
        return example_for_schema(_resolve_ref(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return example_for_schema(options[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {name: example_for_schema(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {}), root, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"


def _resolve_ref(root: Any, ref: str) -> Any:
    node = root
    for part in ref.lstrip("#/").split("/"):
        if not part:
            continue
        if not isinstance(node, dict):
            return {}
        node = node.get(part, {})
    return node


def chunk_string(text: str, size: int = 4) -> Iterator[str]:
    """Pieces of a JSON string as the real API streams tool arguments: a few chars each."""
    for start in range(0, len(text), size):
        yield text[start : start + size]
