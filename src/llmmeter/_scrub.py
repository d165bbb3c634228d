"""Keeping credentials out of what llmmeter writes: one scrubber for every text that came from
configuration, URLs, headers or a server.

llmmeter writes texts it did not compose: an exception's message and traceback, an
exporter's reason for a failed export, a collector's or Prometheus's URL from a variable, a
server's error. Any of them may hold a credential: the key the API echoes (masked) in a 401,
a password in a URL's userinfo, a signed query (``?sig=``), an ``Authorization`` header quoted
back. :func:`scrub` replaces every credential shape in :func:`shapes` wherever it sits in a
text; :func:`scrub_record` does it to a log record (message, arguments, traceback); and the
filter on the ``llmmeter`` logger, attached when this module is imported, does it to every
record llmmeter logs. It runs on error paths, warnings and at configuration, never on a
successful call's path.

Shapes, not values: llmmeter never holds the application's API key (the SDK sends it), and a
server may echo a key that is not the client's, so the scrubber recognises what credentials
look like. A rare harmless token of the same look (a long mixed-case id) is lost with them.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

REDACTED: Final = "[REDACTED]"
"""What a credential is replaced with (a URL's password becomes ``***``: ``user:***@host``)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """One kind of credential: how it looks in text, and what replaces it."""

    name: str
    pattern: re.Pattern[str]
    replace: str | Callable[[re.Match[str]], str]
    gate: re.Pattern[str] | None = None
    """Found in the lower-cased text wherever ``pattern`` can match: a quick search (a
    literal) that spares the full one on most texts, such as a traceback of an error."""


def _userinfo(match: re.Match[str]) -> str:
    # With a password, the part before it is a user name, kept; alone, it may be a token.
    user, colon, _ = match["userinfo"].partition(":")
    return f"://{user}:***@" if colon else "://***@"


_NAMED: Final = (
    r"(?:[\w-]*?[-_](?:key|token|secret|signature|sig|credentials?|auth)"  # x-api-key, x-amz-...
    r"|api[-_]?key|apikey|password|passwd|pwd|authorization|credentials?)"
)
"""Names that always hold a credential: a value after ``=`` or ``:`` is one."""
_BARE: Final = r"(?:key|token|secret|signature|sig|auth)"
"""Names that hold one as a parameter (``?key=``) or a quoted field (``"token": ...``), but
are words too (``no API key: set OPENAI_API_KEY``): only ``=`` or a quoted name count."""


def _named(match: re.Match[str]) -> str:
    name, sep = match["name"], match["sep"]
    if name is None:
        name, sep = match["bare"], match["bare_sep"]
    return f"{name}{sep}{REDACTED}"


_VALUE_END: Final = r"\s&\"',;#()\[\]{}<>"


@functools.cache
def shapes() -> tuple[Shape, ...]:
    """Every credential shape llmmeter removes, in the order they apply; compiled at the
    first scrub (an error or a warning), not at ``import llmmeter``."""
    return (
        Shape(
            "URL userinfo (http://user:password@host, https://token@host)",
            re.compile(r"://(?P<userinfo>[^\s/?#]*)@"),
            _userinfo,
            gate=re.compile(r"://[^\s/?#]*@"),
        ),
        Shape(
            "userinfo without a scheme (user:password@host, as gRPC endpoints are written)",
            re.compile(r"(?<![\w/:@.%*~-])(?P<user>[\w.%~-]+):[^\s/@]{1,256}@(?=[\w\[])"),
            r"\g<user>:***@",
            gate=re.compile("@"),
        ),
        Shape(
            "a named credential (api-key=, ?token=, &sig=, 'password': ..., x-api-key: ...)",
            re.compile(
                rf"(?i)(?<![\w-])(?:(?P<name>{_NAMED})(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
                rf"|(?P<bare>{_BARE})(?P<bare_sep>=\s*[\"']?|[\"']\s*:\s*[\"']?))"
                rf"(?:(?:bearer|basic)\s+)?[^{_VALUE_END}]+"
            ),
            _named,
            gate=re.compile(
                r"(?:key|token|secret|signature|sig|credentials?|authorization|auth|password"
                r"|passwd|pwd)[\"']?\s*[:=]"
            ),
        ),
        Shape(
            "bearer token (Authorization: Bearer ...)",
            re.compile(r"(?i)\b(?P<scheme>bearer)\s+[\w.~+/=-]+"),
            rf"\g<scheme> {REDACTED}",
            gate=re.compile(r"bearer\s"),
        ),
        Shape(
            "basic credentials (Authorization: Basic base64)",
            re.compile(r"(?i)\b(?P<scheme>basic)\s+(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{6,}=*"),
            rf"\g<scheme> {REDACTED}",
            gate=re.compile(r"basic\s"),
        ),
        Shape(
            "a masked key, as APIs echo them (ak-************9QRS, sk-proj-****abcd)",
            re.compile(r"(?<![\w*-])(?=[\w*-]*[A-Za-z0-9])[\w-]*\*{4,}[\w*-]*"),
            REDACTED,
            gate=re.compile(r"\*\*\*\*"),
        ),
        Shape(
            "an OpenAI-style secret key (sk-..., sk-proj-..., sk_live_...)",
            re.compile(r"\bsk[-_][\w*-]{4,}"),
            REDACTED,
            gate=re.compile(r"sk[-_]"),
        ),
        Shape(
            "a hexadecimal key of 32 digits or more (Azure OpenAI keys)",
            re.compile(r"[0-9a-fA-F]{32,}"),
            lambda match: REDACTED if _alone(match) else match[0],
        ),
        Shape(
            "a random-looking token: 20+ letters and digits, with two or more each of capitals, "
            "small letters and digits (keys of other providers, session tokens)",
            re.compile(r"[\w-]{20,}"),  # always a whole run of word characters
            lambda match: REDACTED if _random(match[0]) else match[0],
        ),
    )


def _alone(match: re.Match[str]) -> bool:
    """The match is a word of its own, not part of a longer one (``req_<hex>`` is an id)."""
    text, start, end = match.string, match.start(), match.end()
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or before in "_-" or after.isalnum() or after in "_-")


def _random(token: str) -> bool:
    upper = lower = digits = 0
    for char in token:
        if "A" <= char <= "Z":
            upper += 1
        elif "a" <= char <= "z":
            lower += 1
        elif "0" <= char <= "9":
            digits += 1
    return upper >= 2 and lower >= 2 and digits >= 2


def scrub(text: str) -> str:
    """``text`` with every credential of :func:`shapes` replaced."""
    # Gates read the lower-cased text; beyond ASCII, lower-casing and the patterns'
    # case-insensitive matching can disagree, so every shape runs.
    lowered = text.lower() if text.isascii() else None
    for shape in shapes():
        if shape.gate is not None and lowered is not None and not shape.gate.search(lowered):
            continue
        text = shape.pattern.sub(shape.replace, text)
    return text


_UNFORMATTABLE: Final = "(llmmeter: a log message whose arguments did not format) "


def scrub_record(record: logging.LogRecord) -> None:
    """Scrub a log record in place. A record without a credential is left as it is; else its
    message is replaced by the scrubbed text (arguments merged in), and a traceback holding
    one is kept as scrubbed text in ``exc_text``, with ``exc_info`` cleared: a handler that
    formats the exception itself would show it whole."""
    try:
        message = record.getMessage()
        formatted = True
    except Exception:  # a bad format must not take the log call down with it
        message, formatted = _UNFORMATTABLE + str(record.msg), False
    scrubbed = scrub(message)
    if scrubbed != message or not formatted:
        record.msg, record.args = scrubbed, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        clean = scrub(text)
        if clean != text:
            record.exc_text, record.exc_info = clean, None
    elif record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


class LogScrubber(logging.Filter):
    """The filter on the ``llmmeter`` logger: no record llmmeter logs carries a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def _attach(logger: logging.Logger) -> None:
    if not any(isinstance(f, LogScrubber) for f in logger.filters):
        logger.addFilter(LogScrubber())


_attach(logging.getLogger("llmmeter"))
