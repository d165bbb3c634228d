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

A rule with ``when_spend_over = { by = "team", daily_budget_usd = { search = 50 } }`` applies
to a call only while that call's team has spent more than its budget: the poller also reads
each such key's spend by value (:func:`by_query`, one query per key, same poll), which needs
the key on metrics (``LLMMETER_METRIC_ATTRIBUTES``). A value with no series has spent 0.

The query itself is :func:`llmmeter._prometheus.instant_query`, which ``llmmeter policy status``
asks too: only the standard library (``urllib``), imported on the poller's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Final, Protocol

from . import _semconv as sc
from ._attribution import metric_label
from ._config import DEFAULT_SPEND_POLL_INTERVAL, DEFAULT_SPEND_QUERY, DEFAULT_SPEND_TIMEOUT
from ._prometheus import PollError, PrometheusURL, instant_query, vector_query

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter

    from ._guard import Guard

logger = logging.getLogger("llmmeter")

DEFAULT_QUERY: Final = DEFAULT_SPEND_QUERY
DEFAULT_POLL_INTERVAL: Final = DEFAULT_SPEND_POLL_INTERVAL
DEFAULT_TIMEOUT: Final = DEFAULT_SPEND_TIMEOUT
STALE_POLLS: Final = 3
"""A figure older than this many poll intervals is not trusted: the condition is false. One
or two failed polls in a row keep the last good figure."""

STALE: Final = "stale"
"""The one reason of ``llmmeter.spend_guard.reason`` that is the poller's own; the others
are why a query gave no number (``_prometheus``)."""


def by_query(key: str) -> str:
    """The 24 h spend in USD by value of attribution key ``key`` (its metric label)."""
    return f"sum by ({metric_label(key)}) (increase(llmmeter_cost_usd_total[24h]))"


class SpendSource(Protocol):
    """What a spend guard asks: is the fleet's 24 h spend over this budget? Is the 24 h spend
    of the calls whose attribution ``key`` is ``value`` over it?"""

    def over(self, budget: float) -> bool: ...

    def over_by(self, key: str, value: str, budget: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class FixedSpend:
    """A known figure, or ``None`` for unknown (then no guard applies): ``policy explain``.
    ``by`` gives known figures per (key, value); any other is unknown."""

    usd: float | None
    by: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def over(self, budget: float) -> bool:
        return self.usd is not None and self.usd > budget

    def over_by(self, key: str, value: str, budget: float) -> bool:
        usd = self.by.get((key, value))
        return usd is not None and usd > budget


@dataclass(frozen=True, slots=True)
class Reading:
    """One figure Prometheus gave, and when (``monotonic()``) it was read; with the figures
    by value of each watched attribution key, read in the same poll."""

    usd: float
    at: float
    by: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


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
        self.errors = errors
        """Counts polls that gave no figure the guard trusts (re-pointed when the application
        configures its own meter provider after ``instrument()``)."""
        self._clock = clock
        self._reading: Reading | None = None
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failing = False
        self._stale = False
        self.keys: tuple[str, ...] = ()
        """The attribution keys whose spend by value is read too (rules with ``by``)."""

    def watch(self, keys: tuple[str, ...]) -> None:
        """Read the spend by value of these attribution keys from the next poll on."""
        self.keys = keys

    # --- the hot path --------------------------------------------------------------------

    def over(self, budget: float) -> bool:
        """Whether the last trusted figure is above ``budget``; False when there is none."""
        reading = self._reading
        return (
            reading is not None
            and reading.usd > budget
            and self._clock() - reading.at <= self.stale_after
        )

    def over_by(self, key: str, value: str, budget: float) -> bool:
        """Whether the calls attributed ``key=value`` spent more than ``budget`` by the last
        trusted figures; False when there are none, or the key is not read yet."""
        reading = self._reading
        if reading is None or self._clock() - reading.at > self.stale_after:
            return False
        spent = reading.by.get(key)
        return spent is not None and spent.get(value, 0.0) > budget

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
            by = {key: self.fetch_by(key) for key in self.keys}
        except PollError as exc:
            if stop is None or not stop.is_set():
                self._failed(exc)
            return
        if stop is not None and stop.is_set():
            return
        self._reading = Reading(usd, self._clock(), by)
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
        if self.errors is not None:
            self.errors.add(1, {sc.LLMMETER_SPEND_GUARD_REASON: reason})

    def fetch(self) -> float:
        """The query's value in USD from Prometheus; :class:`PollError` if there is none."""
        return instant_query(self.url, self.query, self.timeout)

    def fetch_by(self, key: str) -> dict[str, float]:
        """The 24 h spend in USD by value of attribution ``key``; :class:`PollError` if none."""
        return vector_query(self.url, by_query(key), metric_label(key), self.timeout)
