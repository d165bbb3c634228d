"""The call side of a routing policy, resolved once at ``instrument()``.

A policy is anything with ``decide(call) -> Route | None``, plus optional ``accept``,
``deployments``, ``comparators`` and ``evaluation_budget_usd``. :class:`Router` reads those
once, when ``instrument()`` builds it, and gives every call the same few methods: what to
route (:meth:`Router.route`, which also turns the policy's answer into the values that go on
the wire), whether a routed answer is accepted, how a rule's evaluations are judged and what
evaluation may spend. It is the one place of the call core that knows the rule-file policy
(:class:`~llmmeter._rules.RulePolicy`): its spend guard's poller, its reloadable deployments
and comparators, and that its own failures are llmmeter's bugs (strict mode re-raises them)
where a policy in code failing is the user's (logged once, never raised).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._attribution import current_attribution
from ._guard import Guard
from ._policy import CallView, Route
from ._targets import Target
from ._task import current_key, current_task

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter

    from ._compare import Comparator
    from ._config import Settings
    from ._rules import Budget
    from ._spend import SpendMonitor


@dataclasses.dataclass(frozen=True, slots=True)
class Routing:
    """A policy's decision as applied to one call."""

    route: Route
    original: str
    """The model value the user wrote (what goes on the wire without llmmeter)."""
    sent: str
    """The model value routing puts on the wire instead (an Azure deployment name there)."""
    asked: str
    """The model name the policy saw and the original is priced as."""


@dataclasses.dataclass(frozen=True, slots=True)
class AgreementTarget:
    """One evaluating rule's agreement target, for the ``agreement_target`` gauge."""

    rule: str
    target: float
    mode: str


class Router:
    """One policy as every call sees it, built once by :meth:`build`."""

    __slots__ = (
        "_accept",
        "_comparators",
        "_deployments",
        "_force_shadow",
        "_guard",
        "_rules",
        "policy",
        "spend",
    )

    def __init__(
        self,
        policy: Any,
        guard: Guard,
        *,
        force_shadow: bool = False,
        comparators: Mapping[str, Comparator] | None = None,
        spend: SpendMonitor | None = None,
    ) -> None:
        self.policy = policy
        """The policy in force (for a rule policy, ``instrument()``'s own bound copy)."""
        self.spend = spend
        """The poller of the fleet's spend, when rules may have spend guards."""
        from ._rules import RulePolicy  # loaded by build() before any router exists

        self._guard = guard
        self._force_shadow = force_shadow
        self._rules = policy if isinstance(policy, RulePolicy) else None
        accept = getattr(policy, "accept", None)
        self._accept: Callable[[Any], Any] | None = accept if callable(accept) else None
        self._comparators: Mapping[str, Comparator] = comparators or {}
        deployments = None if self._rules is not None else getattr(policy, "deployments", None)
        self._deployments: Mapping[str, str] | None = (
            deployments if isinstance(deployments, Mapping) else None
        )

    @classmethod
    def build(cls, policy: Any, settings: Settings, guard: Guard) -> Router | None:
        """The router for ``instrument(policy=...)`` (else ``LLMMETER_POLICY``), or ``None``
        when there is no policy. Starts nothing (see :meth:`start`) and records nothing until
        :meth:`count_spend_errors` says where.

        Raises:
            ConfigError: a bad policy file or object, or a spend guard with no Prometheus.
        """
        if policy is None and settings.policy_path is None:
            return None
        # The rule-file machinery (rules, comparators, prompt patterns, the spend poller) is
        # imported only by a process with a policy: without one, start-up pays nothing for it.
        from ._rules import RulePolicy, check_comparators, resolve_policy
        from ._spend import SpendMonitor

        policy, force_shadow = resolve_policy(policy, settings.policy_path, settings.policy_mode)
        if policy is None:
            return None
        if not isinstance(policy, RulePolicy):  # a policy in code may name comparators
            comparators = check_comparators("policy", getattr(policy, "comparators", None))
            return cls(policy, guard, force_shadow=force_shadow, comparators=comparators)
        spend = None
        if settings.prometheus is not None:
            spend = SpendMonitor(
                settings.prometheus,
                query=settings.spend_query,
                interval=settings.spend_poll_interval,
                timeout=settings.spend_timeout,
                guard=guard,
            )
        # The caller's object is never touched: instrument() runs a copy bound to the poller.
        # ConfigError: a spend guard and no Prometheus, or a budget by a key not on metrics.
        bound = policy.bind_spend(spend, settings.metric_attributes)
        return cls(bound, guard, force_shadow=force_shadow, spend=spend)

    def count_spend_errors(self, counter: Counter) -> None:
        """Where the spend poller counts the polls that gave no figure."""
        if self.spend is not None:
            self.spend.errors = counter

    def start(self) -> None:
        """Watch a policy file for changes; poll the fleet's spend while some rule has a
        guard (a reload re-decides)."""
        if self._rules is not None:
            self._rules.start_watching()
            self._rules.sync_spend()

    def close(self) -> None:
        """Stop the file watcher and the spend poller (``uninstrument()``)."""
        if self._rules is not None:
            self._rules.stop_watching()
        if self.spend is not None:
            self.spend.close()

    # --- per call ------------------------------------------------------------------------

    @property
    def checks_answers(self) -> bool:
        """The policy has an ``accept`` check of routed answers."""
        return self._accept is not None

    def route(
        self,
        target: Target,
        client: Any,
        kwargs: Mapping[str, Any],
        model: str,
        *,
        azure: bool,
    ) -> Routing | None:
        """Ask the policy about this call and translate its answer into wire values.

        Not consulted when the user pinned the wire model in ``extra_body``. On Azure the
        ``model`` argument is a deployment name: only routable through the policy's
        ``deployments`` map, and never when the client's base URL already names a deployment.
        """
        extra = kwargs.get("extra_body")
        if isinstance(extra, Mapping) and "model" in extra:
            return None
        asked = model
        deployments: Mapping[str, str] | None = None
        if azure:
            deployments = self._rules.deployments if self._rules is not None else self._deployments
            if not deployments or "/deployments/" in str(getattr(client, "base_url", "")):
                return None
            found = next((name for name, dep in deployments.items() if dep == model), None)
            if found is None:
                return None
            asked = found
        attribution = current_attribution.get()
        view = CallView(
            endpoint=target.endpoint,
            operation=target.operation,
            model=asked,
            kwargs=kwargs,
            task=current_task.get(),
            key=current_key.get(),
            attribution=attribution.values if attribution is not None else None,
        )
        route = self.decide(view)
        if route is None or route.model == asked:
            return None
        sent = route.model
        if deployments is not None:
            deployment = deployments.get(route.model)
            if deployment is None:
                self._guard.warn_once(
                    f"policy.deployment:{route.model}",
                    f"llmmeter: rule {route.rule!r} routes to {route.model!r} but the policy's "
                    "deployments name no Azure deployment for it; Azure calls stay as written",
                )
                return None
            sent = deployment
        return Routing(route, model, sent, asked)

    def decide(self, view: CallView) -> Route | None:
        """Ask the policy; anything it raises or returns amiss leaves the call as written."""
        try:
            route = self.policy.decide(view)
        except Exception as exc:
            if self._guard.strict and self._rules is not None:
                raise  # llmmeter's own rule engine failed: its tests must see it
            self._guard.warn_once(
                "policy.decide",
                "llmmeter: the routing policy raised; the call goes out as written",
                exc,
            )
            return None
        if route is None:
            return None
        if not isinstance(route, Route):
            self._guard.warn_once(
                "policy.result",
                f"llmmeter: the routing policy returned {type(route).__name__}, not a Route "
                "or None; the call goes out as written",
            )
            return None
        if self._force_shadow and not route.shadow:
            route = dataclasses.replace(route, shadow=True)
        return route

    def accepts(self, result: Any) -> bool:
        """The policy's ``accept`` check; a check that raises accepts (logged once)."""
        accept = self._accept
        if accept is None:
            return True
        try:
            verdict = accept(result)
        except Exception as exc:
            self._guard.warn_once(
                "policy.accept",
                "llmmeter: the policy's accept check raised; the answer is kept",
                exc,
            )
            return True
        if isinstance(verdict, bool):
            return verdict
        close = getattr(verdict, "close", None)
        if inspect.iscoroutine(verdict) and callable(close):
            close()  # an async check cannot run here; no "never awaited" warning either
        self._guard.warn_once(
            "policy.accept.type",
            f"llmmeter: the policy's accept check returned {type(verdict).__name__}, not a "
            "bool; the answer is kept",
        )
        return True

    # --- shadow evaluation -------------------------------------------------------------------

    def comparator(self, rule: str) -> Comparator:
        """How rule ``rule``'s evaluations are judged (``exact`` unless the policy says)."""
        if self._rules is not None:
            return self._rules.comparator(rule)
        from ._compare import EXACT  # loaded with the policy (check_comparators)

        return self._comparators.get(rule, EXACT)

    def evaluation_budget(self) -> float | None:
        """US dollars per hour that shadow evaluation may spend, per the policy (read at
        each check: a rule file's reload may change it)."""
        budget = getattr(self.policy, "evaluation_budget_usd", None)
        if isinstance(budget, (int, float)) and not isinstance(budget, bool):
            return float(budget)
        return None

    def daily_budgets(self) -> list[Budget]:
        """The budgets of the spend guards in force (rule files only), for the gauge."""
        return self._rules.daily_budgets() if self._rules is not None else []

    def agreement_targets(self) -> list[AgreementTarget]:
        """Each evaluating rule's agreement target and mode in force (rule files only)."""
        rules = self._rules
        if rules is None:
            return []
        return [
            AgreementTarget(rule.name, rule.agreement_target, mode)
            for rule in rules.rules
            if rule.evaluate > 0.0 and (mode := rules.rule_mode(rule)) != "off"
        ]
