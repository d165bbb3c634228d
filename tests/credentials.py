"""A corpus of credential shapes for the privacy tests, and the texts that carry them.

Each credential is planted everywhere one can enter llmmeter's view (a client's key, a base
URL's userinfo and query, an exporter's endpoint and headers, a server's error, an exception
message), then what llmmeter wrote (spans, OTLP bytes, log records, stderr) is searched for
:func:`leaks`. A key is searched for whole and by the part an API's masked echo keeps (its
last four characters); the values of named parameters (``?token=``) by their value.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True)
class Credential:
    name: str
    value: str
    fragments: tuple[str, ...] = ()
    """Parts that must not appear either (what survives an API's masking)."""


OPENAI_KEY = "sk-proj-Q7vL2mX9pR4tY8wZ1aB3cD5eF6gH0jK2lM4nP6qS8uVxW"
LEGACY_KEY = "sk-Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0KkLlMmNnOoPpQqRr"
OTHER_KEY = "ak-9fXk2LqP7vR3sT8wY1zB4cD6eG0hJ5mN9QRS"
AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJlX3ZhbHVl"
URL_USER = "collector"
URL_PASSWORD = "Xy7-hunter2-pw"
BASIC = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode("ascii")
QUERY = {
    "api-key": "qv-apikey-31415",
    "key": "qv-key-27182",
    "token": "qv-token-16180",
    "sig": "qv-sig-14142",
}
"""Query parameters that carry credentials (Azure's ``api-key``, Google's ``key``, a
collector's ``token``, a signed URL's ``sig``), by name."""
KEYS = (OPENAI_KEY, LEGACY_KEY, OTHER_KEY, AZURE_KEY)
"""The API keys, each given to a client in turn (the API echoes a rejected one, masked)."""

CORPUS = (
    Credential("OpenAI project key", OPENAI_KEY, (OPENAI_KEY[8:20], OPENAI_KEY[-4:])),
    Credential("OpenAI legacy key", LEGACY_KEY, (LEGACY_KEY[3:15], LEGACY_KEY[-4:])),
    Credential("another provider's key", OTHER_KEY, (OTHER_KEY[3:15], OTHER_KEY[-4:])),
    # A hexadecimal tail of four could be part of any id: the key's start is searched instead.
    Credential("Azure key (32 hex)", AZURE_KEY, (AZURE_KEY[:12],)),
    Credential("bearer token", BEARER, (BEARER[-16:],)),
    Credential("basic credentials", BASIC),
    Credential("URL password", URL_PASSWORD),
    *(Credential(f"query parameter {name}", value) for name, value in QUERY.items()),
)

QUERY_STRING = "&".join(f"{name}={value}" for name, value in QUERY.items())
ECHO = (
    f"upstream refused Authorization: Bearer {BEARER} and Authorization: Basic {BASIC}; "
    f"headers api-key: {AZURE_KEY}, x-api-key={OTHER_KEY}; keys {OPENAI_KEY} {LEGACY_KEY} "
    f"{AZURE_KEY} {OTHER_KEY}; callback "
    f"https://{URL_USER}:{URL_PASSWORD}@hooks.example:8443/cb?{QUERY_STRING}"
)
"""A server error (or any exception) quoting every credential of the corpus."""


def leaks(text: str) -> list[str]:
    """The names of the credentials ``text`` shows, whole or in part."""
    return [
        credential.name
        for credential in CORPUS
        if any(part in text for part in (credential.value, *credential.fragments))
    ]


def leaks_in_bytes(data: bytes) -> list[str]:
    """:func:`leaks` over raw bytes (an OTLP request): each credential as UTF-8."""
    return [
        credential.name
        for credential in CORPUS
        if any(part.encode() in data for part in (credential.value, *credential.fragments))
    ]
