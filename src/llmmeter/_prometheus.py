"""One PromQL instant query over HTTP: the one number a Prometheus answers.

Two parts of llmmeter read a fleet's figures from the Prometheus that scrapes it: the spend
guard's poller (``_spend``), for the fleet's 24 h spend, and ``llmmeter policy status``, for
each rule's counters. Both ask for one number (a ``sum(...)``), so the request, the
credentials and the reading of the answer live here once, with the bounded reasons a query
can give no number (the spend guard counts them as ``llmmeter.spend_guard.reason``). An empty
answer (no series yet) is 0.

Only the standard library talks to Prometheus (``urllib``), imported at the first query, with
OpenTelemetry instrumentation suppressed: these requests are llmmeter's, not the application's.
"""

from __future__ import annotations

import base64
import json
import math
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Final

from ._scrub import scrub

_MAX_BODY: Final = 1 << 20
"""Bytes read from Prometheus at most: a one-number answer is a few hundred."""
_CHUNK: Final = 64 << 10
_MAX_SHOWN: Final = 200
"""Characters of a Prometheus error message quoted in our log."""

# Why a query gave no number: values of ``llmmeter.spend_guard.reason`` (bounded).
UNREACHABLE: Final = "unreachable"
HTTP_ERROR: Final = "http_error"
BAD_RESPONSE: Final = "bad_response"


@dataclass(frozen=True, slots=True)
class PrometheusURL:
    """Where the Prometheus HTTP API is; credentials kept apart so no log can show them."""

    base: str
    """Scheme, host, port and path prefix, without credentials or a trailing slash."""
    shown: str
    """``base`` with ``user:***@`` when there are credentials: the form logs and errors use."""
    authorization: str | None = field(default=None, repr=False)
    """The ``Authorization`` header for ``user:password@`` in the configured URL."""

    @classmethod
    def parse(cls, raw: str) -> PrometheusURL:
        """Split ``raw``; ``ValueError`` (whose text never holds the password) if unusable."""
        try:
            parts = urllib.parse.urlsplit(raw.strip())
            host = parts.hostname
            port = parts.port  # ValueError for a port that is not a number in range
        except ValueError:
            raise ValueError(f"got {scrub(raw)!r}, which is not a URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"got {scrub(raw)!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"got {scrub(raw)!r}, with a query or fragment")
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        base = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
        authorization = None
        shown = base
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            authorization = f"Basic {token}"
            shown = f"{parts.scheme}://{parts.username or ''}:***@{base.split('://', 1)[1]}"
        return cls(base=base, shown=shown, authorization=authorization)


class PollError(Exception):
    """A poll (one query) that gave no figure; ``reason`` is a bounded metric label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def instant_query(url: PrometheusURL, query: str, timeout: float) -> float:
    """``query``'s one number from Prometheus at ``url``; :class:`PollError` if there is none."""
    return parse_answer(_query(url, query, timeout))


def vector_query(url: PrometheusURL, query: str, label: str, timeout: float) -> dict[str, float]:
    """``query``'s numbers by the value of ``label`` (a ``sum by (label)`` query): the spend of
    each tenant or team; :class:`PollError` if the answer is not such a vector."""
    return parse_vector(_query(url, query, timeout), label)


def _query(url: PrometheusURL, query: str, timeout: float) -> bytes:
    """The body of Prometheus's answer to the instant query ``query``."""
    import http.client
    import urllib.error
    import urllib.request

    from opentelemetry.instrumentation.utils import suppress_instrumentation

    address = f"{url.base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    request = urllib.request.Request(address, headers={"Accept": "application/json"})
    if url.authorization is not None:
        request.add_unredirected_header("Authorization", url.authorization)
    try:
        # llmmeter's own traffic, not the application's: an HTTP instrumentation the app
        # installed (urllib's) would otherwise make every poll a root trace.
        with (
            suppress_instrumentation(),
            urllib.request.urlopen(request, timeout=timeout) as response,
        ):
            return _read_body(response, timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            detail = _prometheus_error(exc.read(_MAX_BODY))
        raise PollError(HTTP_ERROR, f"HTTP {exc.code}{detail}") from None
    except (OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout, TLS
        raise PollError(UNREACHABLE, _reason(exc)) from None


def _read_body(response: Any, timeout: float) -> bytes:
    """The answer's body: at most :data:`_MAX_BODY` bytes, within ``timeout`` in all (the
    socket's own timeout is per read: a server that trickles would otherwise never end)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_BODY:
            raise PollError(BAD_RESPONSE, f"the answer is larger than {_MAX_BODY >> 20} MiB")
        if time.monotonic() > deadline:
            raise PollError(UNREACHABLE, f"the answer took longer than {timeout:g} s")
    return b"".join(chunks)


def _result(body: bytes) -> tuple[Any, Any]:
    """The ``resultType`` and ``result`` of a successful ``/api/v1/query`` answer."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested past the stack
        raise PollError(BAD_RESPONSE, "the answer is not JSON") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise PollError(BAD_RESPONSE, f"the query failed{_prometheus_error(body)}")
    data = doc.get("data")
    if not isinstance(data, dict):
        return None, None
    return data.get("resultType"), data.get("result")


def parse_vector(body: bytes, label: str) -> dict[str, float]:
    """The numbers of a ``/api/v1/query`` vector answer by the value of ``label``; a series
    without the label (calls outside any block) is left out, and no series is no spend."""
    kind, result = _result(body)
    if kind != "vector" or not isinstance(result, list):
        raise PollError(BAD_RESPONSE, f"expected a vector; got {kind!r}")
    found: dict[str, float] = {}
    for series in result:
        labels = series.get("metric") if isinstance(series, dict) else None
        value = labels.get(label) if isinstance(labels, dict) else None
        if not isinstance(value, str) or not value:
            continue
        found[value] = _usd(series.get("value"))
    return found


def parse_answer(body: bytes) -> float:
    """The one number in a ``/api/v1/query`` answer; an empty vector is 0."""
    kind, result = _result(body)
    if kind == "scalar":
        value = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return 0.0  # no cost series yet: nothing was spent
        if len(result) > 1:
            raise PollError(
                BAD_RESPONSE,
                f"expected one number; the query gave {len(result)} series (wrap it in sum())",
            )
        value = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        raise PollError(BAD_RESPONSE, f"expected a vector or scalar; got {kind!r}")
    return _usd(value)


def _usd(value: Any) -> float:
    """The number of a ``[time, "value"]`` pair, finite."""
    try:
        usd = float(value[1])
    except (TypeError, ValueError, IndexError, KeyError):
        shown = repr(value)[:_MAX_SHOWN]
        raise PollError(BAD_RESPONSE, f"expected [time, value]; got {shown}") from None
    if not math.isfinite(usd):
        raise PollError(BAD_RESPONSE, f"expected a finite number of USD; got {usd}")
    return usd


def _prometheus_error(body: bytes) -> str:
    """``: <Prometheus's error message>`` when the body carries one, shortened."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return f": {str(error)[:_MAX_SHOWN]}" if error else ""


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    return str(reason if reason is not None else exc) or type(exc).__name__
