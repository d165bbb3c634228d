"""Other providers the fake can answer as: their base URLs, model names and usage shapes.

The OpenAI SDK reaches Groq, DeepSeek, OpenRouter, Ollama and others through ``base_url``;
each answers with OpenAI's shapes plus its own habits in ``usage``. A client made by
:meth:`FakeOpenAI.client_as <llmmeter.testing.FakeOpenAI.client_as>` keeps the provider's
real base URL (so code that looks at it sees the provider) while its transport sends every
request to the fake, which recognises the provider by the request's ``Host`` and answers as
it would. What each sends in ``usage`` is from the providers' own API references:

- Groq: the counts without details, plus ``queue_time``, ``prompt_time``,
  ``completion_time`` and ``total_time`` (seconds); an ``x_groq`` object with the request
  id; a stream that was not asked for usage still ends with it, in ``x_groq.usage``.
- DeepSeek: cache hits as ``prompt_cache_hit_tokens`` and ``prompt_cache_miss_tokens``
  beside the counts; ``reasoning_tokens`` in ``completion_tokens_details`` (reasoner).
- OpenRouter: the counts with both details plus ``cost`` (its credits), ``is_byok`` and
  ``cost_details``; streams always end with the usage chunk.
- xAI: details with ``text_tokens``, ``image_tokens``, ``cached_tokens``, and
  ``num_sources_used``. Perplexity: ``search_context_size`` and a ``cost`` object.
- OpenAI itself (``openai``): the fake's own answers, behind OpenAI's real base URL.
- Mistral, Together, Fireworks, Gemini's OpenAI endpoint, Ollama, LM Studio: the three
  counts only. vLLM: the counts and ``"prompt_tokens_details": null``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from ._sse import DONE, Event, Reply, chunk_event
from ._text import random_id

Usage = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Family:
    """One provider as the fake imitates it."""

    name: str
    base_url: str
    """The provider's real base URL, as its docs give it for the OpenAI SDK."""
    models: tuple[str, ...]
    """Model names it serves (answered under the same name); none: OpenAI's own, answered
    exactly as without a provider (the fake's catalog, OpenAI's shapes)."""
    usage: Callable[[Usage], Usage]
    """OpenAI's usage object, reshaped as this provider sends it."""
    extra: Callable[[Usage], dict[str, Any]] | None = None
    """Top-level fields it adds to a completion, given the usage."""
    stream_usage: str = ""
    """How a stream not asked for usage still reports it: ``"chunk"`` (a usage chunk, as
    when asked), ``"x_groq"`` (in the last chunk's ``x_groq.usage``) or ``""`` (not at all)."""
    fingerprint: str | None = None
    service_tier: str | None = None
    """The ``service_tier`` it reports (Groq: ``on_demand``); none when ``None``."""

    @property
    def netloc(self) -> str:
        """What the ``Host`` header of a request to it says."""
        return urlsplit(self.base_url).netloc.lower()

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path.rstrip("/")


def _counts(usage: Usage) -> Usage:
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
    }


def _details(usage: Usage, name: str, key: str) -> int:
    details = usage.get(name) or {}
    value = details.get(key, 0)
    return value if isinstance(value, int) else 0


def _groq(usage: Usage) -> Usage:
    return {
        "queue_time": 0.012,
        **_counts(usage),
        "prompt_time": 0.004,
        "completion_time": 0.031,
        "total_time": 0.035,
    }


def _deepseek(usage: Usage) -> Usage:
    hit = _details(usage, "prompt_tokens_details", "cached_tokens")
    shaped = {
        **_counts(usage),
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_miss_tokens": usage["prompt_tokens"] - hit,
    }
    reasoning = _details(usage, "completion_tokens_details", "reasoning_tokens")
    if reasoning:
        shaped["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return shaped


def _openrouter(usage: Usage) -> Usage:
    return {
        **_counts(usage),
        "cost": round(usage["total_tokens"] * 0.0000006, 12),
        "is_byok": False,
        "prompt_tokens_details": {
            "cached_tokens": _details(usage, "prompt_tokens_details", "cached_tokens"),
            "audio_tokens": 0,
        },
        "cost_details": {"upstream_inference_cost": None},
        "completion_tokens_details": {
            "reasoning_tokens": _details(usage, "completion_tokens_details", "reasoning_tokens")
        },
    }


def _xai(usage: Usage) -> Usage:
    cached = _details(usage, "prompt_tokens_details", "cached_tokens")
    return {
        **_counts(usage),
        "prompt_tokens_details": {
            "text_tokens": usage["prompt_tokens"],
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": cached,
        },
        "completion_tokens_details": {
            "reasoning_tokens": _details(usage, "completion_tokens_details", "reasoning_tokens"),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "num_sources_used": 0,
    }


def _perplexity(usage: Usage) -> Usage:
    return {
        **_counts(usage),
        "search_context_size": "low",
        "cost": {
            "input_tokens_cost": 0.0,
            "output_tokens_cost": 0.0,
            "request_cost": 0.005,
            "total_cost": 0.005,
        },
    }


def _vllm(usage: Usage) -> Usage:
    return {**_counts(usage), "prompt_tokens_details": None}


FAMILIES: Final = {
    family.name: family
    for family in (
        Family("openai", "https://api.openai.com/v1", (), dict),
        Family(
            "groq",
            "https://api.groq.com/openai/v1",
            ("llama-3.3-70b-versatile", "llama-3.1-8b-instant", "openai/gpt-oss-120b"),
            _groq,
            extra=lambda _: {"x_groq": {"id": random_id("req_", 26)}},
            stream_usage="x_groq",
            fingerprint="fp_3f39b6ea8c",
            service_tier="on_demand",
        ),
        Family(
            "deepseek",
            "https://api.deepseek.com",
            ("deepseek-chat", "deepseek-reasoner"),
            _deepseek,
            fingerprint="fp_3a5770e1b4_prod0820_fp8_kvcache",
        ),
        Family(
            "openrouter",
            "https://openrouter.ai/api/v1",
            ("openai/gpt-4o-mini", "meta-llama/llama-3.3-70b-instruct"),
            _openrouter,
            extra=lambda _: {"provider": "OpenAI"},
            stream_usage="chunk",
        ),
        Family(
            "together",
            "https://api.together.xyz/v1",
            ("meta-llama/Llama-3.3-70B-Instruct-Turbo",),
            _counts,
        ),
        Family(
            "fireworks",
            "https://api.fireworks.ai/inference/v1",
            ("accounts/fireworks/models/llama-v3p1-8b-instruct",),
            _counts,
        ),
        Family("mistral", "https://api.mistral.ai/v1", ("mistral-small-latest",), _counts),
        Family("xai", "https://api.x.ai/v1", ("grok-3-mini", "grok-4"), _xai),
        Family(
            "perplexity",
            "https://api.perplexity.ai",
            ("sonar", "sonar-pro"),
            _perplexity,
            extra=lambda _: {"citations": [], "search_results": []},
        ),
        Family(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            ("gemini-2.0-flash", "gemini-2.5-flash"),
            _counts,
        ),
        Family(
            "ollama",
            "http://localhost:11434/v1",
            ("llama3.2", "qwen2.5:7b"),
            _counts,
            fingerprint="fp_ollama",
        ),
        Family(
            "lmstudio",
            "http://localhost:1234/v1",
            ("qwen2.5-7b-instruct",),
            _counts,
        ),
        Family(
            "vllm",
            "http://10.0.0.5:8000/v1",
            ("meta-llama/Llama-3.1-8B-Instruct",),
            _vllm,
            stream_usage="chunk",
        ),
    )
}
"""Every provider the fake answers as, by name."""

PROVIDERS: Final = MappingProxyType({name: family.base_url for name, family in FAMILIES.items()})
"""Provider name -> the base URL a client made by ``client_as`` keeps."""


def family_at(host: str | None, path: str) -> Family | None:
    """The family a request to ``host`` and ``path`` is addressed to (its ``Host`` header)."""
    if not host:
        return None
    host = host.lower()
    for family in FAMILIES.values():
        if family.netloc == host and path.startswith(family.base_path + "/"):
            return family
    return None


def dress(family: Family, reply: Reply, asked_usage: bool) -> Reply:
    """An OpenAI-shaped completion or chunk stream, as ``family`` sends it. The stream was
    built with its usage chunk (see :func:`forces_usage`); ``asked_usage``: the request
    asked for it."""
    if reply.events is None:
        body = reply.body
        if isinstance(body, dict) and isinstance(body.get("usage"), dict):
            body = _dressed(family, body)
            shaped = family.usage(body["usage"])
            body["usage"] = shaped
            if family.extra is not None:
                body.update(family.extra(shaped))
            reply.body, reply.usage = body, shaped
        return reply
    chunks = [_parse(event) for event in reply.events]
    usage: Usage | None = None
    for chunk in chunks:
        if chunk is not None and isinstance(chunk.get("usage"), dict):
            usage = family.usage(chunk["usage"])
    events: list[Event] = []
    keep_chunk = asked_usage or family.stream_usage == "chunk"
    for parsed in chunks:
        if parsed is None:
            continue
        chunk = _dressed(family, parsed)
        if isinstance(chunk.get("usage"), dict):
            if not keep_chunk:
                continue  # the usage chunk: this provider would not send it
            chunk["usage"] = usage
        elif "usage" in chunk and not keep_chunk:
            del chunk["usage"]  # OpenAI's "usage": null on every chunk of such a stream
        events.append(chunk_event(chunk))
    if family.stream_usage == "x_groq" and usage is not None and events:
        last = _parse(events[-1]) or {}
        last["x_groq"] = {"id": random_id("req_", 26), "usage": usage}
        events[-1] = chunk_event(last)
    events.append(DONE)
    reply.events = events
    reply.usage = usage if keep_chunk or family.stream_usage == "x_groq" else None
    return reply


def forces_usage(family: Family) -> bool:
    """Its streams report usage unasked (a chunk, or Groq's ``x_groq``)."""
    return bool(family.stream_usage)


def _dressed(family: Family, data: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's own top-level habits swapped for the provider's."""
    data = {k: v for k, v in data.items() if k not in ("obfuscation", "service_tier")}
    if family.service_tier is not None:
        data["service_tier"] = family.service_tier
    if "system_fingerprint" in data or family.fingerprint is not None:
        data["system_fingerprint"] = family.fingerprint
    return data


def _parse(event: Event) -> dict[str, Any] | None:
    if event is DONE or event.data == DONE.data:
        return None
    data = json.loads(event.data)
    return data if isinstance(data, dict) else None
