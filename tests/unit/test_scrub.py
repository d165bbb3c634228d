"""The one scrubber: every credential shape of the corpus, in every kind of text it arrives in,
and nothing else touched."""

from __future__ import annotations

import io
import json
import logging

import pytest

from llmmeter._scrub import REDACTED, LogScrubber, scrub, scrub_record
from tests.credentials import (
    AZURE_KEY,
    BASIC,
    BEARER,
    ECHO,
    KEYS,
    OTHER_KEY,
    QUERY,
    QUERY_STRING,
    URL_PASSWORD,
    URL_USER,
    leaks,
)


def _mask(key: str) -> str:
    """How the API echoes a rejected key."""
    return f"{key[:3]}{'*' * 12}{key[-4:]}"


CONTEXTS = {
    "a key quoted whole": [f"The key {key} was revoked; use another." for key in KEYS],
    "header lines": [
        f"Authorization: Bearer {BEARER}",
        f"authorization: Basic {BASIC}",
        f"api-key: {AZURE_KEY}",
        *(f"x-api-key: {key}" for key in KEYS),
    ],
    "a JSON body": [
        json.dumps({"error": {"message": f"bad key {key}", "api_key": key}}) for key in KEYS
    ]
    + [json.dumps({"headers": {"Authorization": f"Bearer {BEARER}"}, **QUERY})],
    "a Python repr": [repr({"api-key": AZURE_KEY, "token": QUERY["token"], "sig": QUERY["sig"]})],
    "URLs": [
        f"https://{URL_USER}:{URL_PASSWORD}@collector.example:4318/v1/traces?{QUERY_STRING}",
        f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:4318?{QUERY_STRING}/v1/traces",
        f"https://{URL_PASSWORD}@collector.example/",  # a token as the user name
        f"grpc endpoint {URL_USER}:{URL_PASSWORD}@127.0.0.1:4317 unreachable",
        f"Max retries exceeded with url: /v1/traces?{QUERY_STRING} (Caused by ...)",
    ],
    "a server's echo of everything": [ECHO],
    "text beyond ASCII": [f"Clé API refusée : {OTHER_KEY} — {QUERY_STRING} — {ECHO}"],
}


@pytest.mark.parametrize(
    "text", [t for texts in CONTEXTS.values() for t in texts], ids=lambda t: t[:40]
)
def test_every_credential_shape_is_scrubbed_wherever_it_sits(text: str) -> None:
    assert leaks(text), "the case plants no credential: it would prove nothing"
    scrubbed = scrub(text)
    assert leaks(scrubbed) == []
    assert REDACTED in scrubbed or ":***@" in scrubbed or "***@" in scrubbed
    assert scrub(scrubbed) == scrubbed  # scrubbing twice changes nothing more


@pytest.mark.parametrize("key", KEYS)
def test_a_key_masked_as_the_api_echoes_it_is_scrubbed_with_the_characters_it_shows(
    key: str,
) -> None:
    scrubbed = scrub(f"Incorrect API key provided: {_mask(key)}. You can find your API key")
    assert scrubbed == f"Incorrect API key provided: {REDACTED}. You can find your API key"


def test_a_url_keeps_its_user_host_path_and_other_parameters() -> None:
    url = f"https://{URL_USER}:{URL_PASSWORD}@collector.example:4318/v1/traces?x=1&token=t0k3n"
    assert scrub(url) == (
        f"https://{URL_USER}:***@collector.example:4318/v1/traces?x=1&token={REDACTED}"
    )


KEPT = [
    "gpt-4o-mini-2024-07-18",
    "ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
    "max_tokens=100, max_output_tokens: 200, input_tokens 12",
    "req_0123456789abcdef0123456789abcdef",
    "c0ffee00-1234-4abc-8def-0123456789ab",
    "Basic authentication failed",
    "token limit reached: 5000 tokens",
    "no API key: set OPENAI_API_KEY (any value for a server that needs none)",
    "Invalid key: expected a string; token: expired",
    "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    "Error code: 429 - Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3",
    "jane.doe@example.com",
    "http://ops:***@prometheus.example:9090",
    "http://127.0.0.1:4318/v1/traces",
    '  File "/srv/app/.venv/lib/python3.11/site-packages/openai/_base_client.py", line 1047',
    "raise self._make_status_error_from_response(err.response) from None",
    "llmmeter: exporting spans to http://127.0.0.1:4318/v1/traces failed (HTTP 503)",
    "[Errno 111] Connection refused",
]


@pytest.mark.parametrize("text", KEPT)
def test_text_without_credentials_comes_through_unchanged(text: str) -> None:
    assert scrub(text) == text


def _record(message: str, *args: object, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    return logging.LogRecord("llmmeter", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_log_record_is_scrubbed_message_arguments_and_traceback() -> None:
    try:
        raise RuntimeError(ECHO)
    except RuntimeError as exc:
        error = exc
    record = _record("llmmeter: exporting to %s failed (%s)", ECHO, ECHO, error=error)
    scrub_record(record)
    shown = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert leaks(shown) == []
    assert shown.startswith("WARNING llmmeter: exporting to ")
    assert "Traceback (most recent call last)" in shown  # kept, as text
    assert "RuntimeError: upstream refused" in shown
    assert record.exc_info is None  # no handler can format the raw exception
    assert leaks(record.getMessage()) == []


def test_a_record_without_credentials_is_left_as_it_was() -> None:
    try:
        raise RuntimeError("the price table has no gpt-4o-mini")
    except RuntimeError as exc:
        error = exc
    record = _record("llmmeter internal error in %s", "call.price", error=error)
    exc_info = record.exc_info
    scrub_record(record)
    assert record.msg == "llmmeter internal error in %s"
    assert record.args == ("call.price",)
    assert record.exc_info is exc_info
    assert record.exc_text is None


def test_a_record_whose_arguments_do_not_format_is_scrubbed_without_raising() -> None:
    record = _record("key %s and %s", ECHO)  # one argument short
    scrub_record(record)
    assert leaks(record.getMessage()) == []
    assert "key %s and %s" in record.getMessage()


def test_every_record_of_the_llmmeter_logger_goes_through_the_scrubber() -> None:
    import llmmeter  # noqa: F401  (importing the library attaches it)

    logger = logging.getLogger("llmmeter")
    assert any(isinstance(f, LogScrubber) for f in logger.filters)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(ECHO)
        except ValueError:
            logger.warning("llmmeter: the policy raised on %s", ECHO, exc_info=True)
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "ValueError: upstream refused" in written
    assert leaks(written) == []
