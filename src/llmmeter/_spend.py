"""The fleet spend guard: the fleet's 24 h spend, read from Prometheus in the background.

A rule with ``when_spend_over = { daily_budget_usd = N }`` applies only while the whole
fleet's spend over the last 24 hours is above N. The processes of a fleet share no state of
llmmeter's, but they all export ``llmmeter.cost.usd``, so the figure is one PromQL query
(:data:`DEFAULT_QUERY`) against the Prometheus that scrapes them. A daemon thread polls it;
``RulePolicy.decide`` only compares a cached float, so deciding never waits for the network.

The guard routes only on a figure it trusts. Prometheus unreachable, an HTTP error, an answer
that is not one number, or no good answer for :data:`STALE_POLLS` poll intervals: the
condition is false and the rule does not apply, as if there were no budget to protect. Each
such failure is counted in ``llmmeter.spend_guard.errors`` by reason and logged once. An empty
answer (no cost series yet) is a spend of 0.

Only the standard library talks to Prometheus (``urllib``), imported on the poller's thread.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Final, Protocol

from . import _semconv as sc

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter

    from ._guard import Guard

logger = logging.getLogger("llmmeter")

DEFAULT_QUERY: Final = "sum(increase(llmmeter_cost_usd_total[24h]))"
"""The fleet's spend in USD over the last 24 hours, every service and model together."""
DEFAULT_POLL_INTERVAL: Final = 30.0
DEFAULT_TIMEOUT: Final = 5.0
STALE_POLLS: Final = 3
"""A figure older than this many poll intervals is not trusted: the condition is false. One
or two failed polls in a row keep the last good figure."""
_MAX_BODY: Final = 1 << 20
"""Bytes read from Prometheus at most: a one-number answer is a few hundred."""
_MAX_SHOWN: Final = 200
"""Characters of a Prometheus error message quoted in our log."""

# Why a poll gave no figure: the values of ``llmmeter.spend_guard.reason`` (bounded).
UNREACHABLE: Final = "unreachable"
HTTP_ERROR: Final = "http_error"
BAD_RESPONSE: Final = "bad_response"
STALE: Final = "stale"


class SpendSource(Protocol):
    """What a spend guard asks: is the fleet's 24 h spend over this budget?"""

    def over(self, budget: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class FixedSpend:
    """A known figure, or ``None`` for unknown (then no guard applies): ``policy explain``."""

    usd: float | None

    def over(self, budget: float) -> bool:
        return self.usd is not None and self.usd > budget


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
            raise ValueError(f"got {redact(raw)!r}, which is not a URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"got {redact(raw)!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"got {redact(raw)!r}, with a query or fragment")
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


def redact(raw: str) -> str:
    """``raw`` with any password in it replaced by ``***``."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return raw
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return raw
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@dataclass(frozen=True, slots=True)
class Reading:
    """One figure Prometheus gave, and when (``monotonic()``) it was read."""

    usd: float
    at: float


class PollError(Exception):
    """A poll that gave no figure; ``reason`` is a bounded metric label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class SpendMonitor:
    """The fleet's 24 h spend, polled from Prometheus on a daemon thread.

    Built by ``instrument()`` when a Prometheus URL is configured and driven by the policy it
    serves: :meth:`start` while some rule has a guard, :meth:`stop` when a reload removes the
    last one, :meth:`close` for good at ``uninstrument()``. :meth:`over` is the hot path's
    only contact with it: two attribute reads, a clock read and a comparison.
    """

    def __init__(
        self,
        url: PrometheusURL,
        *,
        query: str = DEFAULT_QUERY,
        interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        guard: Guard,
        errors: Counter | None = None,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.url = url
        self.query = query
        self.interval = interval
        self.timeout = timeout
        self.stale_after = STALE_POLLS * interval
        self._guard = guard
        self._errors = errors
        self._clock = clock
        self._reading: Reading | None = None
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failing = False
        self._stale = False

    # --- the hot path --------------------------------------------------------------------

    def over(self, budget: float) -> bool:
        """Whether the last trusted figure is above ``budget``; False when there is none."""
        reading = self._reading
        return (
            reading is not None
            and reading.usd > budget
            and self._clock() - reading.at <= self.stale_after
        )

    def current(self) -> float | None:
        """The trusted figure in USD, or ``None`` (never read, or stale)."""
        reading = self._reading
        if reading is None or self._clock() - reading.at > self.stale_after:
            return None
        return reading.usd

    # --- the poller's life -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Poll now and every ``interval`` seconds, on a daemon thread (at most one)."""
        with self._lock:
            if self._closed or self._stop is not None:
                return
            stop = self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="llmmeter-spend-guard", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End the poller without waiting for a request in flight (its answer is dropped),
        and forget the figure: a later :meth:`start` trusts nothing until it polls again."""
        with self._lock:
            if self._stop is not None:
                self._stop.set()
            self._stop = None
            self._thread = None
            self._reading = None

    def close(self) -> None:
        """Stop for good: ``uninstrument()``; a policy reloaded afterwards starts nothing."""
        with self._lock:
            self._closed = True
        self.stop()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._guard.site("spend_guard.poll"):
                self.poll(stop)
            stop.wait(self.interval)

    # --- one poll --------------------------------------------------------------------------

    def poll(self, stop: threading.Event | None = None) -> None:
        """Read the figure once: keep it, or count and log why there is none. A poll that
        ends after ``stop`` was set changes nothing."""
        try:
            usd = self.fetch()
        except PollError as exc:
            if stop is None or not stop.is_set():
                self._failed(exc)
            return
        if stop is not None and stop.is_set():
            return
        self._reading = Reading(usd, self._clock())
        if self._failing:
            logger.info("llmmeter: spend guard: %s answers again", self.url.shown)
        self._failing = self._stale = False

    def _failed(self, exc: PollError) -> None:
        self._failing = True
        self._count(exc.reason)
        self._guard.warn_once(
            f"spend_guard.{exc.reason}",
            f"llmmeter: spend guard: no figure from {self.url.shown} ({exc}); rules with "
            "when_spend_over do not apply while there is none",
        )
        reading = self._reading
        if (
            not self._stale
            and reading is not None
            and self._clock() - reading.at > self.stale_after
        ):
            self._stale = True
            self._count(STALE)
            self._guard.warn_once(
                "spend_guard.stale",
                f"llmmeter: spend guard: the last figure from {self.url.shown} is older "
                f"than {self.stale_after:g} s; rules with when_spend_over do not apply "
                "until Prometheus answers",
            )

    def _count(self, reason: str) -> None:
        if self._errors is not None:
            self._errors.add(1, {sc.LLMMETER_SPEND_GUARD_REASON: reason})

    def fetch(self) -> float:
        """The query's value in USD from Prometheus; :class:`PollError` if there is none."""
        import http.client
        import urllib.error
        import urllib.request

        url = f"{self.url.base}/api/v1/query?{urllib.parse.urlencode({'query': self.query})}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.url.authorization is not None:
            request.add_unredirected_header("Authorization", self.url.authorization)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _prometheus_error(exc.read(_MAX_BODY))
            raise PollError(HTTP_ERROR, f"HTTP {exc.code}{detail}") from None
        except (OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout, TLS
            raise PollError(UNREACHABLE, _reason(exc)) from None
        return parse_answer(body)


def parse_answer(body: bytes) -> float:
    """The one number in a ``/api/v1/query`` answer; an empty vector is 0."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise PollError(BAD_RESPONSE, "the answer is not JSON") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise PollError(BAD_RESPONSE, f"the query failed{_prometheus_error(body)}")
    data = doc.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
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
    try:
        usd = float(value[1])  # type: ignore[index]
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
    except ValueError:
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return f": {str(error)[:_MAX_SHOWN]}" if error else ""


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    return str(reason if reason is not None else exc) or type(exc).__name__
