"""Shadow evaluation: is the other model of a rule's pair as good, on real traffic?

A rule with ``evaluate = 0.05`` marks that fraction of the calls it routes or shadows (a
:class:`~llmmeter._policy.Route` with ``evaluate``). When such a call has returned (a stream:
ended normally), :meth:`Evaluator.submit` queues it; the user's thread does nothing more than
a ``put_nowait``. Worker threads then send the same request to the other model of the pair
(shadow mode: the routed-to model; enforce: the original) on a copy of the user's client with
retries off, never on the user's thread or event loop, and judge the two answers with the
rule's comparator.

The evaluation request goes through the instrumented SDK like any call, so it has its own
span and cost. :data:`current_evaluation` tells the wrappers' ``Call`` that it is one: not
routed, linked to the user's span, labelled ``llmmeter.policy.action = "evaluate"`` and
``llmmeter.evaluation = true``, and judged in :meth:`Evaluation.finish` before its span ends
(the score goes on the span, the counts on the metrics).

Bounded everywhere: the queue (full: the call is dropped and counted), the workers, the
request's timeout, the hourly spend (``evaluation_budget_usd``: evaluation pauses, and says
so once), and the wait at exit (pending evaluations are dropped and counted).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import logging
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from . import _semconv as sc
from ._guard import Guard
from ._metrics import Instruments
from ._targets import RAW_RESPONSE_HEADER
from ._usage import Outcome, output_messages

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext
    from opentelemetry.util.types import AttributeValue

    from ._compare import Comparator, Comparison

logger = logging.getLogger("llmmeter")

DEFAULT_CONCURRENCY: Final = 2
DEFAULT_QUEUE_SIZE: Final = 64
DEFAULT_TIMEOUT: Final = 60.0
"""Seconds an evaluation request may take (the SDK's own default is ten minutes)."""
EXIT_WAIT: Final = 1.0
"""Seconds the interpreter's exit waits for evaluations already being sent."""
BUDGET_WINDOW: Final = 3600.0
"""``evaluation_budget_usd`` is per this many seconds, rolling."""

current_evaluation: ContextVar[Evaluation | None] = ContextVar("llmmeter_evaluation", default=None)
"""The evaluation whose request a worker is sending in this context."""

_DROPPED_KEYS: Final = ("stream", "stream_options", "timeout")


@dataclass(slots=True, eq=False)
class Evaluation:
    """One sampled call to evaluate: what the user got, and what to send to the other model."""

    rule: str
    shadow: bool
    """Shadow mode: the user's answer is the original model's, the evaluation's the
    candidate's. Enforce: the other way round."""
    model: str
    """The other model of the pair, as sent (an Azure deployment name there)."""
    resource: type[Any]
    method: str
    client: Any
    is_async: bool
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    """The user's request as written (``model`` replaced when sent)."""
    result: Any
    """The user's result (a plain, non-streamed call), else ``None``."""
    outcome: Outcome
    """What was read from the user's response (a stream's answer is there)."""
    link: SpanContext
    label: str | None
    evaluator: Evaluator
    comparator: Comparator | None = None
    answer: Any = None
    """The evaluation request's result (a plain result: never streamed)."""
    done: bool = False
    abandoned: bool = False
    cost: float = 0.0

    def request(self, timeout: float) -> dict[str, Any]:
        """The user's request for the other model: unstreamed, parsed (not a raw response),
        with the evaluation's own timeout."""
        kwargs = {k: v for k, v in self.kwargs.items() if k not in _DROPPED_KEYS}
        kwargs["model"] = self.model
        kwargs["timeout"] = timeout
        headers = kwargs.get("extra_headers")
        if isinstance(headers, Mapping):
            kwargs["extra_headers"] = {
                k: v for k, v in headers.items() if str(k).lower() != RAW_RESPONSE_HEADER
            }
        return kwargs

    def finish(
        self,
        attrs: dict[str, AttributeValue],
        cost: float | None,
        error: BaseException | None,
        answer: Any,
    ) -> None:
        """The evaluation request ended with ``answer`` (its result) or ``error``: judge the
        pair and count, before its span ends (the score goes on it)."""
        if self.done:
            return
        self.done = True
        self.answer = answer
        if cost is not None:
            self.cost = cost
        if self.abandoned:
            return
        evaluator = self.evaluator
        comparator = self.comparator
        if comparator is not None:
            attrs[sc.LLMMETER_EVALUATION_COMPARATOR] = comparator.name
        if error is not None or comparator is None:
            evaluator.failed(self.rule, sc.REASON_REQUEST)
            return
        judged = self.judge(comparator)
        if judged.error is not None:
            attrs[sc.LLMMETER_EVALUATION_ERROR] = judged.error
            reason = sc.REASON_COMPARATOR if judged.comparator_failed else sc.REASON_UNREADABLE
            evaluator.failed(self.rule, reason)
            return
        assert judged.score is not None
        attrs[sc.LLMMETER_EVALUATION_SCORE] = judged.score
        evaluator.judged(self.rule, judged.score)

    def judge(self, comparator: Comparator) -> Comparison:
        # Loaded by the policy that asked for evaluations (``import llmmeter`` does not pay
        # for the comparators): here only a lookup in ``sys.modules``.
        from ._compare import Comparison, answer_from_messages, compare, read_answer

        try:
            if self.result is not None:
                user = read_answer(self.result)
            else:
                user = answer_from_messages(output_messages(self.outcome))
        except Exception as exc:
            return Comparison(None, f"unreadable answer: {exc}")
        if self.shadow:
            return compare(comparator, user, self.answer)
        return compare(comparator, self.answer, user)


@dataclass(slots=True)
class _Spend:
    """Evaluation spend over the last :data:`BUDGET_WINDOW` seconds."""

    entries: deque[tuple[float, float]] = field(default_factory=deque)
    total: float = 0.0

    def add(self, usd: float, now: float) -> None:
        if usd > 0:
            self.entries.append((now, usd))
            self.total += usd

    def current(self, now: float) -> float:
        entries = self.entries
        while entries and entries[0][0] <= now - BUDGET_WINDOW:
            self.total -= entries.popleft()[1]
        if not entries:
            self.total = 0.0  # no float residue once the window is empty
        return self.total


class Evaluator:
    """The background workers of shadow evaluation (started at the first sampled call)."""

    def __init__(
        self,
        instruments: Instruments,
        guard: Guard,
        *,
        budget: Callable[[], float | None],
        comparator: Callable[[str], Comparator],
        concurrency: int = DEFAULT_CONCURRENCY,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._instruments = instruments
        self._guard = guard
        self._budget = budget
        self._comparator = comparator
        self._concurrency = concurrency
        self._queue_size = queue_size
        self._timeout = timeout
        self._lock = threading.Lock()
        self._spend_lock = threading.Lock()
        self._queue: queue.Queue[Evaluation | None] = queue.Queue(queue_size)
        self._threads: list[threading.Thread] = []
        self._running: set[Evaluation] = set()
        self._spend = _Spend()
        self._paused = False
        self._closed = False
        self._exit_hook = False

    # --- the user's side: as cheap as a put --------------------------------------------

    def submit(self, job: Evaluation) -> None:
        """Queue ``job``; a full queue, a spent budget or a closed evaluator drops it."""
        if self._closed:
            self._drop(job.rule, sc.REASON_SHUTDOWN)
            return
        if self._paused and self._over_budget():
            self._drop(job.rule, sc.REASON_BUDGET)
            return
        if not self._threads:
            self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._drop(job.rule, sc.REASON_QUEUE_FULL)

    # --- counting --------------------------------------------------------------------------

    def judged(self, rule: str, score: float) -> None:
        labels = {sc.LLMMETER_POLICY_RULE: rule}
        self._instruments.evaluations.add(1, labels)
        self._instruments.agreement.add(score, labels)

    def failed(self, rule: str, reason: str) -> None:
        self._instruments.evaluation_errors.add(
            1, {sc.LLMMETER_POLICY_RULE: rule, sc.LLMMETER_EVALUATION_REASON: reason}
        )

    def _drop(self, rule: str, reason: str) -> None:
        self._instruments.evaluation_dropped.add(
            1, {sc.LLMMETER_POLICY_RULE: rule, sc.LLMMETER_EVALUATION_REASON: reason}
        )

    # --- the budget ------------------------------------------------------------------------

    def _over_budget(self) -> bool:
        """Whether the last hour's evaluation spend reached the budget; logs the change."""
        budget = self._budget()
        with self._spend_lock:
            spent = self._spend.current(monotonic())
            over = budget is not None and spent >= budget
            changed = over != self._paused
            self._paused = over
        if changed and over:
            logger.warning(
                "llmmeter: shadow evaluation paused: $%.4g spent on it in the last hour reaches "
                "evaluation_budget_usd = %g; sampled calls are dropped (counted as "
                "llmmeter.evaluation.dropped, reason budget) until the hour's spend falls "
                "under the budget",
                spent,
                budget,
            )
        elif changed:
            logger.info(
                "llmmeter: shadow evaluation resumed: the last hour's spend is under budget"
            )
        return over

    def _spent(self, usd: float) -> None:
        with self._spend_lock:
            self._spend.add(usd, monotonic())

    # --- the workers -----------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._threads or self._closed:
                return
            for number in range(self._concurrency):
                thread = threading.Thread(
                    target=self._work, name=f"llmmeter-evaluator-{number}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
            if not self._exit_hook:
                self._exit_hook = True
                atexit.register(_close_at_exit, weakref.ref(self))
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_reset_in_child(weakref.ref(self)))

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                if job is not None:
                    self._drop(job.rule, sc.REASON_SHUTDOWN)
                return
            with self._lock:
                self._running.add(job)
            try:
                self._run(job)
            except Exception as exc:  # never kill the worker
                self._guard.handle("evaluation.run", exc)
            finally:
                with self._lock:
                    self._running.discard(job)

    def _run(self, job: Evaluation) -> None:
        if self._over_budget():
            self._drop(job.rule, sc.REASON_BUDGET)
            return
        job.comparator = self._comparator(job.rule)
        token = current_evaluation.set(job)
        try:
            if job.is_async:
                asyncio.run(self._send_async(job))
            else:
                self._send(job)
        except Exception:
            pass  # the evaluation call recorded it (below, if it never got that far)
        finally:
            current_evaluation.reset(token)
            if not job.done:  # no instrumented call ran (uninstrumented meanwhile?)
                job.done = True
                if not job.abandoned:
                    self.failed(job.rule, sc.REASON_REQUEST)
            self._spent(job.cost)

    def _send(self, job: Evaluation) -> None:
        client = job.client.copy(max_retries=0)  # shares the user's connection pool
        method = getattr(job.resource(client), job.method)
        method(*job.args, **job.request(self._timeout))

    async def _send_async(self, job: Evaluation) -> None:
        # The user's connection pool belongs to the user's event loop: this loop gets its own.
        http = _async_http_client()
        client = job.client.copy(max_retries=0, http_client=http)
        try:
            method = getattr(job.resource(client), job.method)
            await method(*job.args, **job.request(self._timeout))
        finally:
            await http.aclose()

    # --- stopping --------------------------------------------------------------------------

    def close(self, wait: float = EXIT_WAIT) -> None:
        """Stop: queued evaluations are dropped, those being sent get ``wait`` seconds."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        dropped = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._drop(job.rule, sc.REASON_SHUTDOWN)
                dropped += 1
        for _ in threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        deadline = monotonic() + wait
        for thread in threads:
            thread.join(max(0.0, deadline - monotonic()))
        with self._lock:
            running = list(self._running)
        for job in running:
            if not job.done and not job.abandoned:
                job.abandoned = True
                self._drop(job.rule, sc.REASON_SHUTDOWN)
                dropped += 1
        if dropped:
            logger.warning(
                "llmmeter: %d shadow evaluation(s) still pending were dropped at exit "
                "(counted as llmmeter.evaluation.dropped, reason shutdown)",
                dropped,
            )

    def _after_fork(self) -> None:
        """A forked child has none of the parent's threads: start afresh on first use."""
        self._lock = threading.Lock()
        self._spend_lock = threading.Lock()
        self._queue = queue.Queue(self._queue_size)
        self._threads = []
        self._running = set()


def _close_at_exit(ref: weakref.ref[Evaluator]) -> None:
    evaluator = ref()
    if evaluator is not None:
        evaluator.close()


def _reset_in_child(ref: weakref.ref[Evaluator]) -> Callable[[], None]:
    def reset() -> None:
        evaluator = ref()
        if evaluator is not None:
            evaluator._after_fork()

    return reset


def _async_http_client() -> Any:
    """A new async HTTP client with the SDK's defaults (openai >= 1.17 names them)."""
    import openai

    factory = getattr(openai, "DefaultAsyncHttpxClient", None)
    if factory is not None:
        return factory()
    httpx = importlib.import_module("httpx")  # the SDK's own dependency
    return httpx.AsyncClient(follow_redirects=True)
