"""The fake server's model catalog: which names exist and how each model behaves.

The real API answers with a dated snapshot (``gpt-4o`` -> ``gpt-4o-2024-08-06``), reasoning
models spend reasoning tokens, and several families differ in small ways that clients trip
over (gpt-5 chat choices carry no ``logprobs`` key, o1-mini refuses ``system`` messages).
The facts below come from the recorded exchanges in ``../shared/openai-recordings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

ModelKind = Literal["chat", "embedding", "completion", "image", "transcription"]

#: Requested name -> the dated snapshot the real API reports in ``model``.
_SNAPSHOTS: dict[str, str] = {
    # chat, older families
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-0125": "gpt-3.5-turbo-0125",
    "gpt-3.5-turbo-1106": "gpt-3.5-turbo-1106",
    "gpt-3.5-turbo-16k": "gpt-3.5-turbo-16k-0613",
    "gpt-35-turbo": "gpt-35-turbo",
    "gpt-4": "gpt-4-0613",
    "gpt-4-0613": "gpt-4-0613",
    "gpt-4-0314": "gpt-4-0314",
    "gpt-4-32k": "gpt-4-32k-0613",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-4-turbo-preview": "gpt-4-0125-preview",
    "gpt-4-0125-preview": "gpt-4-0125-preview",
    "gpt-4-1106-preview": "gpt-4-1106-preview",
    "gpt-4-vision-preview": "gpt-4-1106-vision-preview",
    "gpt-4-1106-vision-preview": "gpt-4-1106-vision-preview",
    # gpt-4o and gpt-4.1
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "chatgpt-4o-latest": "chatgpt-4o-latest",
    "gpt-4o-audio-preview": "gpt-4o-audio-preview-2025-06-03",
    "gpt-4o-mini-audio-preview": "gpt-4o-mini-audio-preview-2024-12-17",
    "gpt-4o-search-preview": "gpt-4o-search-preview-2025-03-11",
    "gpt-4o-mini-search-preview": "gpt-4o-mini-search-preview-2025-03-11",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "gpt-4.5-preview": "gpt-4.5-preview-2025-02-27",
    # o-series
    "o1": "o1-2024-12-17",
    "o1-mini": "o1-mini-2024-09-12",
    "o1-preview": "o1-preview-2024-09-12",
    "o1-pro": "o1-pro-2025-03-19",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o3-pro": "o3-pro-2025-06-10",
    "o3-deep-research": "o3-deep-research-2025-06-26",
    "o4-mini": "o4-mini-2025-04-16",
    "o4-mini-deep-research": "o4-mini-deep-research-2025-06-26",
    # gpt-5 family
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
    "gpt-5-pro": "gpt-5-pro-2025-10-06",
    "gpt-5-codex": "gpt-5-codex",
    "gpt-5-chat-latest": "gpt-5-chat-latest",
    "gpt-5.1": "gpt-5.1-2025-11-13",
    "gpt-5.1-mini": "gpt-5.1-mini",
    "gpt-5.1-codex": "gpt-5.1-codex",
    "gpt-5.1-chat-latest": "gpt-5.1-chat-latest",
    "gpt-5.2": "gpt-5.2-2025-12-11",
    "gpt-5.2-pro": "gpt-5.2-pro-2025-12-11",
    "gpt-5.4": "gpt-5.4-2026-03-05",
    "gpt-5.4-mini": "gpt-5.4-mini-2026-03-17",
    "gpt-5.4-nano": "gpt-5.4-nano",
    "gpt-5.5": "gpt-5.5-2026-04-23",
    "gpt-5.6-sol": "gpt-5.6-sol",
    # embeddings
    "text-embedding-3-small": "text-embedding-3-small",
    "text-embedding-3-large": "text-embedding-3-large",
    "text-embedding-ada-002": "text-embedding-ada-002-v2",
    # legacy completions
    "davinci-002": "davinci:2023-07-21-v2",
    "babbage-002": "babbage-002",
    "gpt-3.5-turbo-instruct": "gpt-3.5-turbo-instruct",
    "gpt-3.5-turbo-instruct-0914": "gpt-3.5-turbo-instruct-0914",
    "gpt-35-turbo-instruct": "gpt-35-turbo-instruct",
    # images (their answers name no model, so each name is its own snapshot)
    "gpt-image-1": "gpt-image-1",
    "gpt-image-1-mini": "gpt-image-1-mini",
    "gpt-image-1.5": "gpt-image-1.5",
    "gpt-image-2": "gpt-image-2",
    "chatgpt-image-latest": "chatgpt-image-latest",
    "dall-e-2": "dall-e-2",
    "dall-e-3": "dall-e-3",
    # speech to text
    "whisper-1": "whisper-1",
    "gpt-4o-transcribe": "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe": "gpt-4o-mini-transcribe",
}

_EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
_COMPLETION_MODELS = frozenset(
    {
        "davinci-002",
        "babbage-002",
        "gpt-3.5-turbo-instruct",
        "gpt-3.5-turbo-instruct-0914",
        "gpt-35-turbo-instruct",
    }
)
_IMAGE_MODELS = frozenset(
    {
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
        "chatgpt-image-latest",
        "dall-e-2",
        "dall-e-3",
    }
)
_TRANSCRIPTION_MODELS = frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"})
_DATED = re.compile(r"^(?P<alias>.+?)-(?P<date>\d{4}-\d{2}-\d{2})$")
_GPT5_MINOR = re.compile(r"^gpt-5\.(\d+)")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """How one model answers; every flag mirrors something seen in a real recording."""

    name: str
    snapshot: str
    kind: ModelKind = "chat"
    #: Reasoning models spend ``reasoning_tokens`` and emit ``reasoning`` output items.
    reasoning: bool = False
    #: Effort used when the request names none ("none" means no reasoning at all).
    default_effort: str = "none"
    #: Chat choices carry ``"logprobs": null`` (gpt-5 and audio models omit the key).
    chat_logprobs_key: bool = True
    #: ``system_fingerprint`` is a string rather than null.
    fingerprint: bool = True
    #: Responses ``message`` items carry a ``phase`` (gpt-5.4 and later).
    phase: bool = False
    #: Accepts ``system``/``developer`` messages (o1-mini and o1-preview do not).
    system_role: bool = True
    #: A ``*-search-preview`` model: accepts ``web_search_options``, has no service tier.
    search: bool = False
    #: An audio model: usage details add ``text_tokens``/``image_tokens``.
    audio: bool = False
    #: Output limit when the request sets none (legacy completions and gpt-4-vision: 16).
    default_max_tokens: int | None = None
    #: Embedding vector length when the request sets no ``dimensions``.
    dimensions: int = 0
    #: Embedding model accepts a ``dimensions`` parameter (text-embedding-3-*).
    custom_dimensions: bool = False
    #: Image and transcription models: usage is reported in tokens (GPT image models,
    #: gpt-4o-*-transcribe); dall-e reports no usage and whisper-1 reports seconds.
    media_tokens: bool = True


def _default_effort(name: str) -> str:
    """Reasoning effort the real API applies when the request sets none."""
    if name.startswith(("gpt-5-pro", "gpt-5.2-pro", "o1-pro", "o3-pro")):
        return "high"
    minor = _GPT5_MINOR.match(name)
    if minor is not None:
        # gpt-5.1 .. gpt-5.4 and gpt-5.6 default to no reasoning; gpt-5.5 reasons.
        return "medium" if int(minor.group(1)) == 5 else "none"
    return "medium"


def _describe(name: str, snapshot: str) -> ModelInfo:
    if name in _EMBEDDING_DIMENSIONS:
        return ModelInfo(
            name,
            snapshot,
            kind="embedding",
            dimensions=_EMBEDDING_DIMENSIONS[name],
            custom_dimensions=name.startswith("text-embedding-3"),
        )
    if name in _COMPLETION_MODELS:
        return ModelInfo(name, snapshot, kind="completion", default_max_tokens=16)
    if name in _IMAGE_MODELS or name in _TRANSCRIPTION_MODELS:
        return ModelInfo(
            name,
            snapshot,
            kind="image" if name in _IMAGE_MODELS else "transcription",
            media_tokens=not name.startswith(("dall-e", "whisper")),
        )
    chat_only = name.endswith("-chat-latest")
    reasoning = not chat_only and name.startswith(("o1", "o3", "o4", "gpt-5"))
    minor = _GPT5_MINOR.match(name)
    audio = "audio-preview" in name
    return ModelInfo(
        name,
        snapshot,
        reasoning=reasoning,
        default_effort=_default_effort(name) if reasoning else "none",
        chat_logprobs_key=not (name.startswith("gpt-5") or audio),
        fingerprint=not name.startswith(("gpt-5", "gpt-4.5", "gpt-3.5", "gpt-35"))
        and name not in ("gpt-4", "gpt-4-0613"),
        phase=minor is not None and int(minor.group(1)) >= 4,
        system_role=name not in ("o1-mini", "o1-preview"),
        search="search-preview" in name,
        audio=audio,
        default_max_tokens=16 if "vision-preview" in name else None,
    )


class Catalog:
    """Known models, plus the ones a test added; lookups accept dated snapshots too."""

    def __init__(self) -> None:
        self._extra: dict[str, ModelInfo] = {}

    def add(
        self,
        name: str,
        *,
        snapshot: str | None = None,
        kind: ModelKind = "chat",
        reasoning: bool = False,
        dimensions: int = 1536,
    ) -> None:
        info = replace(_describe(name, snapshot or name), kind=kind, reasoning=reasoning)
        if reasoning:
            info = replace(info, default_effort="medium")
        if kind == "embedding":
            info = replace(info, dimensions=dimensions, custom_dimensions=True)
        if kind == "completion":
            info = replace(info, default_max_tokens=16)
        self._extra[name] = info

    def clear_added(self) -> None:
        self._extra.clear()

    def lookup(self, name: object) -> ModelInfo | None:
        """The model called ``name``, or None when the real API would answer 404."""
        if not isinstance(name, str):
            return None
        if name in self._extra:
            return self._extra[name]
        if name in _SNAPSHOTS:
            return _describe(name, _SNAPSHOTS[name])
        dated = _DATED.match(name)
        if dated is not None and dated.group("alias") in _SNAPSHOTS:
            # A dated snapshot of a known alias is itself a valid model name.
            return replace(_describe(dated.group("alias"), name), name=name)
        return None

    def names(self) -> list[str]:
        return sorted({*_SNAPSHOTS, *self._extra})
