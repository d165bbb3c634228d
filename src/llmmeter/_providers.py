"""Which provider a client talks to, from the host of its base URL.

The OpenAI SDK reaches many providers through ``base_url``; each is named with the GenAI
semantic conventions' well-known ``gen_ai.provider.name`` where there is one (``groq``,
``deepseek``, ``x_ai``, ``gcp.gemini``, ...) and priced from that provider's own list in the
price data. The conventions ask for the value "based on the instrumentation's best
knowledge": a host we do not recognise stays ``openai``, the API the client speaks, with
``server.address`` naming the real server (docs/telemetry.md "Providers").

Local and self-hosted servers (loopback, private and link-local addresses, ``localhost``,
``*.local``, ``*.internal``, single-label names such as a compose service ``ollama``) are
marked ``local``: nobody publishes a list price for them. Resolved once per client base URL
(see ``Runtime.server_of``), never per call.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from . import _semconv as sc


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider as telemetry names it and as the price data lists it."""

    name: str
    """``gen_ai.provider.name``."""
    prices: str
    """The genai-prices provider id whose list prices apply."""
    local: bool = False
    """A local or self-hosted server: no list price (see docs/pricing.md "Local servers")."""


OPENAI: Final = Provider(sc.PROVIDER_OPENAI, "openai")
AZURE: Final = Provider(sc.PROVIDER_AZURE, "azure")
LOCAL: Final = Provider(sc.PROVIDER_OPENAI, "openai", local=True)
"""Spoken to with OpenAI's API; priced only for OpenAI's own models (a gateway or a mock in
front of OpenAI), or from a prices file."""

# (domain, provider): the host is the domain or a subdomain of it. The names not in the
# conventions' list (OpenRouter, Together AI, Fireworks AI, Cerebras) are custom values in
# the conventions' own style, as they allow ("otherwise, a custom value MAY be used").
_DOMAINS: Final = (
    ("api.openai.com", OPENAI),
    ("openai.azure.com", AZURE),
    ("cognitiveservices.azure.com", AZURE),
    ("api.groq.com", Provider("groq", "groq")),
    ("openrouter.ai", Provider("openrouter", "openrouter")),
    ("api.deepseek.com", Provider("deepseek", "deepseek")),
    ("api.together.xyz", Provider("together_ai", "together")),
    ("api.together.ai", Provider("together_ai", "together")),
    ("api.fireworks.ai", Provider("fireworks_ai", "fireworks")),
    ("api.mistral.ai", Provider("mistral_ai", "mistral")),
    ("api.x.ai", Provider("x_ai", "x-ai")),
    ("api.perplexity.ai", Provider("perplexity", "perplexity")),
    ("generativelanguage.googleapis.com", Provider("gcp.gemini", "google")),
    ("aiplatform.googleapis.com", Provider("gcp.vertex_ai", "google")),
    ("api.moonshot.ai", Provider("moonshot_ai", "moonshotai")),
    ("api.moonshot.cn", Provider("moonshot_ai", "moonshotai")),
    ("api.cerebras.ai", Provider("cerebras", "cerebras")),
)
_LOCAL_SUFFIXES: Final = (".localhost", ".local", ".internal", ".lan", ".home.arpa")

KNOWN: Final = (OPENAI, AZURE, *(provider for _, provider in _DOMAINS[3:]))
"""Every provider recognised by host, once each (for ``llmmeter prices --provider``)."""


def provider_of(host: str | None, *, azure: bool = False) -> Provider:
    """The provider behind ``host``; ``azure``: the client is the SDK's Azure client."""
    if azure:
        return AZURE
    if not host:
        return OPENAI
    host = host.lower().rstrip(".")
    for domain, provider in _DOMAINS:
        if host == domain or host.endswith(("." + domain, "-" + domain)):
            return provider
    return LOCAL if is_local(host) else OPENAI


def is_local(host: str) -> bool:
    """A loopback, private, link-local or unspecified address, or a local network name."""
    host = host.lower().rstrip(".").strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    return (
        address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified
    )


def provider_named(name: str) -> Provider | None:
    """A provider by its ``gen_ai.provider.name`` or its price-data id (``groq``, ``x_ai``,
    ``x-ai``, ``gcp.gemini``, ``google``); ``None`` when neither names one we know."""
    wanted = name.strip().lower()
    for provider in KNOWN:
        if wanted in (provider.name, provider.prices):
            return provider
    return None
