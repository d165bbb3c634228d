"""``RulePolicy``: routing rules from a TOML file or dicts, validated up front, reloaded live.

The file format is DESIGN section 8 (reference in docs/policy.md). Everything that can be
wrong with a file is found when it is loaded, at ``instrument()``: unknown keys, wrong types,
bad globs and regular expressions, impossible values. Each raises one ``ConfigError`` naming
the file, the key, what was expected and what was found. A file that changes later is
reloaded by a watcher thread (``_watch``), never by a call; if the new version is invalid
the last good one stays in force and the reason is logged.

Deciding is the hot path: rules are compiled once (a rule's ``from`` globs into one regular
expression, its ``prompt`` patterns into one RE2 alternation: ``_patterns.py``), the rules
that can apply to a model name are cached per name, and the checks of a rule run cheapest
first, so a call whose model no rule names costs one dictionary lookup.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any, Final

from ._attribution import MAX_VALUE_LENGTH, key_problem
from ._compare import (
    BUILTIN,
    EXACT,
    Comparator,
    ComparatorProblem,
    Judge,
    build_comparator,
    comparator_from_config,
)
from ._configfile import Signature, file_signature, load_toml
from ._patterns import PatternError, PromptPatterns, compile_prompt
from ._policy import Accept, CallView, Route, sampled
from ._spend import SpendMonitor, SpendSource
from ._watch import Watcher
from .exceptions import ConfigError

logger = logging.getLogger("llmmeter")

MODES: Final = ("enforce", "shadow", "off")
FALLBACKS: Final = ("on-error", "off")
APIS: Final = ("chat_completions", "responses", "completions")
DEFAULT_RELOAD_INTERVAL: Final = 1.0
"""Seconds between checks of a policy file for changes (one ``stat`` per interval, on the
watcher's thread)."""
WATCHER_NAME: Final = "llmmeter-policy-watch"

_TOP_KEYS: Final = ("mode", "fallback", "deployments", "evaluation_budget_usd", "rules")
_RULE_KEYS: Final = (
    "name",
    "from",
    "to",
    "mode",
    "apis",
    "tasks",
    "prompt",
    "min_input_tokens",
    "max_input_tokens",
    "max_output_tokens",
    "allow_tools",
    "allow_images",
    "allow_response_format",
    "sample",
    "evaluate",
    "compare",
    "label",
    "agreement_target",
    "when_spend_over",
)
DEFAULT_AGREEMENT_TARGET: Final = 0.95
"""The agreement with the original model a rule's evaluation must show (the buying guide's
"accuracy stays above 95%"); ``llmmeter policy status`` and the alert compare against it."""
EVALUATE_SALT: Final = "#evaluate"
"""Appended to a rule's name for the evaluation draw, so that which calls are evaluated does
not follow which calls are in ``sample`` ('#' is not allowed in rule names)."""
_BUDGET_KEY: Final = "daily_budget_usd"
_BY_KEY: Final = "by"
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")  # \Z: '$' allows a final \n
_MODEL_NAME = re.compile(r"^[^\s*?\[\]]+\Z")
_MAX_CACHED_MODELS: Final = 4096

# Why a rule does not match a call; the order is the order of the checks.
MODEL: Final = "model"
SPEND: Final = "when_spend_over"
"""The fleet's 24 h spend is not above the rule's budget, or unknown."""
API: Final = "api"
TASK: Final = "task"
TOOLS: Final = "tools"
IMAGES: Final = "images"
RESPONSE_FORMAT: Final = "response_format"
MAX_OUTPUT_TOKENS: Final = "max_output_tokens"
MIN_INPUT_TOKENS: Final = "min_input_tokens"
MAX_INPUT_TOKENS: Final = "max_input_tokens"
PROMPT: Final = "prompt"


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One validated, compiled rule: the conditions a call must meet, and where it goes."""

    name: str
    models: tuple[str, ...]
    """Globs on the requested model (``from`` in the file)."""
    to: str
    mode: str | None = None
    """This rule's own mode; ``None`` follows the policy's."""
    apis: frozenset[str] | None = None
    tasks: frozenset[str] | None = None
    prompt: tuple[str, ...] = ()
    min_input_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    allow_tools: bool = True
    allow_images: bool = True
    allow_response_format: bool = True
    sample: float = 1.0
    evaluate: float = 0.0
    """Fraction of the calls this rule routes or shadows that are evaluated in the background."""
    comparator: Comparator = field(default=EXACT, repr=False)
    """How an evaluation judges the two answers (``compare`` and ``label`` in the file)."""
    agreement_target: float = DEFAULT_AGREEMENT_TARGET
    daily_budget_usd: float | None = None
    """``when_spend_over``: the rule applies only while the fleet's 24 h spend is above this."""
    budget_by: str | None = None
    """``when_spend_over.by``: the budgets are per value of this attribution key."""
    daily_budgets: Mapping[str, float] = field(default_factory=dict)
    """With ``budget_by``: value to its 24 h budget; a call with another value (or none) is
    not guarded, so the rule does not apply to it."""
    _model_re: re.Pattern[str] = field(default=re.compile(""), repr=False)
    _prompt: PromptPatterns | None = field(default=None, repr=False)
    """``prompt`` compiled by RE2 (``None``: the rule has no prompt condition)."""

    def matches_model(self, model: str) -> bool:
        return self._model_re.fullmatch(model) is not None

    def mismatch(self, call: CallView, spend: SpendSource | None = None) -> str | None:
        """The first condition ``call`` fails (one of this module's reason constants), or
        ``None`` when the rule applies. Cheapest checks first; the prompt scan last.

        ``spend`` answers the spend guard from a cached figure (no I/O); without one a guard
        never holds. It comes second: a guarded rule is usually under budget, and then the
        call pays for nothing more.
        """
        if self._model_re.fullmatch(call.model) is None:
            return MODEL
        budget = self.daily_budget_usd
        if budget is not None and (spend is None or not spend.over(budget)):
            return SPEND
        if self.budget_by is not None and (spend is None or not self._spent_by(call, spend)):
            return SPEND
        if self.apis is not None and call.api not in self.apis:
            return API
        if self.tasks is not None and call.task not in self.tasks:
            return TASK
        if not self.allow_tools and call.tools:
            return TOOLS
        if not self.allow_images and call.images:
            return IMAGES
        if not self.allow_response_format and call.response_format:
            return RESPONSE_FORMAT
        if self.max_output_tokens is not None:
            cap = call.max_output_tokens
            if cap is None or cap > self.max_output_tokens:
                return MAX_OUTPUT_TOKENS
        if self.min_input_tokens is not None and call.input_tokens < self.min_input_tokens:
            return MIN_INPUT_TOKENS
        if self.max_input_tokens is not None and call.input_tokens > self.max_input_tokens:
            return MAX_INPUT_TOKENS
        if self._prompt is not None:
            lowered = call._lower_prompt if isinstance(call, CallView) else None
            if not self._prompt.search(call.prompt, lowered):
                return PROMPT
        return None

    def _spent_by(self, call: CallView, spend: SpendSource) -> bool:
        """The call's value of ``budget_by`` has a budget, and has spent more than it."""
        key = self.budget_by
        assert key is not None
        value = call.attribution.get(key)
        budget = self.daily_budgets.get(value) if value is not None else None
        return budget is not None and value is not None and spend.over_by(key, value, budget)


@dataclass(frozen=True, slots=True)
class Budget:
    """One daily budget a rule's spend guard compares with: the fleet's (``by`` is None) or
    one value's of an attribution key; exported as a gauge for the alert rules."""

    rule: str
    usd: float
    by: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class _Compiled:
    """One loaded version of a policy; swapped whole on reload, never changed in place."""

    mode: str
    fallback: bool
    rules: tuple[Rule, ...]
    deployments: Mapping[str, str]
    routes: Mapping[str, Route]
    """Each rule's Route under the effective mode, built once (deciding allocates nothing)."""
    evaluated: Mapping[str, Route] = field(default_factory=dict)
    """The same Route with ``evaluate`` set, for rules that evaluate."""
    evaluation_budget_usd: float | None = None
    by_model: dict[str, tuple[Rule, ...]] = field(default_factory=dict)

    @property
    def guarded(self) -> bool:
        """Some rule has a spend guard, so the fleet's spend must be polled."""
        return any(
            rule.daily_budget_usd is not None or rule.budget_by is not None for rule in self.rules
        )

    @property
    def budget_keys(self) -> tuple[str, ...]:
        """The attribution keys some rule's budgets are per, each once."""
        return tuple(dict.fromkeys(r.budget_by for r in self.rules if r.budget_by is not None))

    def candidates(self, model: str) -> tuple[Rule, ...]:
        found = self.by_model.get(model)
        if found is None:
            found = tuple(rule for rule in self.rules if rule.matches_model(model))
            if len(self.by_model) >= _MAX_CACHED_MODELS:
                self.by_model.clear()
            self.by_model[model] = found
        return found


@dataclass(frozen=True, slots=True)
class Explanation:
    """What :meth:`RulePolicy.explain` found: every rule's verdict and the decision."""

    verdicts: tuple[tuple[Rule, str | None], ...]
    """Each rule with the first condition it fails, or ``None`` if it matches."""
    rule: Rule | None
    """The first matching rule that is not off: the one that decides."""
    route: Route | None
    """The decision (``None`` when no rule applies, or the call fell outside ``sample``)."""
    in_sample: bool | None
    """For a matching rule: whether this call's key falls inside its ``sample`` (``None``
    when the call has no key and the rule samples, so each call is drawn on its own)."""


class RulePolicy:
    """Routing rules: the first rule a call matches decides where it goes.

    Build one from a TOML file with :meth:`load`, from a file-shaped mapping with
    :meth:`from_dict`, or with keyword arguments. The format is in docs/policy.md.

    Args:
        rules: rule tables, as in the file's ``[[rules]]``.
        mode: ``"enforce"`` (route), ``"shadow"`` (only report what routing would do and
            save) or ``"off"``.
        fallback: ``"on-error"`` re-sends a routed call that failed with the original model;
            ``"off"`` lets the error through.
        deployments: model name to Azure deployment name, needed to route ``AzureOpenAI``
            calls (whose ``model`` is a deployment name).
        accept: optional check of a routed non-streaming result; ``False`` re-sends the call
            with the original model.

    Raises:
        ConfigError: anything invalid, naming the key, what was expected and what was found.

    Example::

        policy = llmmeter.RulePolicy(rules=[{
            "name": "classify-to-mini", "from": ["gpt-4o"], "to": "gpt-4o-mini",
            "tasks": ["classify"],
        }])
        llmmeter.instrument(policy=policy)
    """

    def __init__(
        self,
        rules: Sequence[Mapping[str, Any]] = (),
        *,
        mode: str = "enforce",
        fallback: str = "on-error",
        deployments: Mapping[str, str] | None = None,
        accept: Accept | None = None,
    ) -> None:
        data: dict[str, Any] = {"mode": mode, "fallback": fallback, "rules": list(rules)}
        if deployments is not None:
            data["deployments"] = deployments
        self._init("RulePolicy", data, accept=accept)

    def _init(
        self,
        source: str,
        data: Any,
        *,
        path: str | None = None,
        signature: Signature | None = None,
        accept: Accept | None = None,
        override: str | None = None,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        comparators: Mapping[str, Judge | str | Comparator] | None = None,
    ) -> None:
        _check_accept(source, accept)
        self._comparators = check_comparators(source, comparators)
        if override is not None and override not in MODES:
            raise ConfigError(
                f"{source}: mode override: expected one of {', '.join(MODES)}; got {override!r}"
            )
        if (
            isinstance(reload_interval, bool)
            or not isinstance(reload_interval, (int, float))
            or not math.isfinite(reload_interval)
            or reload_interval < 0
        ):
            raise ConfigError(
                f"{source}: reload_interval: expected seconds (a number >= 0); "
                f"got {reload_interval!r}"
            )
        self.source = source
        self.accept = accept
        self._path = path
        self._override = override
        self._interval = float(reload_interval)
        self._data = data if path is None else None
        self._state = _compile(data, source, override, self._comparators)
        self._signature = signature  # the version ``data`` was read from
        self._reload_lock = threading.Lock()
        self._bad_signature: Signature | None = None
        self._watcher = self._new_watcher()
        self._spend: SpendMonitor | None = None
        self._metric_keys: tuple[str, ...] | None = None
        """The attribution keys on metrics, once bound: a budget ``by`` another is refused."""
        self._spend_required = False
        """Bound by ``instrument()``: a version of the file with a spend guard needs
        ``_spend``; outside ``instrument()`` guards load, and never hold."""

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        accept: Accept | None = None,
        mode: str | None = None,
        reload_interval: float = DEFAULT_RELOAD_INTERVAL,
        comparators: Mapping[str, Judge] | None = None,
    ) -> RulePolicy:
        """Read a TOML policy file; it is reloaded when it changes (checked every
        ``reload_interval`` seconds by a background thread, from the first ``decide``, or
        from ``instrument()``).

        Args:
            path: the file (a regular file of at most 1 MiB, or a link to one).
            accept: see the class.
            mode: overrides the file's mode and every rule's, except rules set to ``off``
                (as ``LLMMETER_POLICY_MODE``).
            reload_interval: seconds between checks for a changed file (at least 0.1).
            comparators: rule name to ``judge(original, candidate) -> float in [0, 1]``, for
                rules whose evaluation needs code (a file can only name a built-in
                comparator); each named rule must have ``evaluate``.
        """
        name = os.fspath(path)
        self = cls.__new__(cls)
        data, signature = load_toml(name, "policy file")
        self._init(
            name,
            data,
            path=name,
            signature=signature,
            accept=accept,
            override=mode,
            reload_interval=reload_interval,
            comparators=comparators,
        )
        return self

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        accept: Accept | None = None,
        mode: str | None = None,
        source: str = "policy",
    ) -> RulePolicy:
        """Build from a mapping shaped like the file (``mode``, ``fallback``, ``rules``, ...);
        ``source`` names it in error messages."""
        self = cls.__new__(cls)
        self._init(source, data, accept=accept, override=mode)
        return self

    def with_mode(self, mode: str) -> RulePolicy:
        """A copy whose mode overrides the file's and every rule's (rules set to off stay off)."""
        copy = type(self).__new__(type(self))
        path = self._path
        data, signature = load_toml(path, "policy file") if path is not None else (self._data, None)
        copy._init(
            self.source,
            data,
            path=path,
            signature=signature,
            accept=self.accept,
            override=mode,
            reload_interval=self._interval,
            comparators=self._comparators,
        )
        return copy

    # --- what is in force ----------------------------------------------------------------

    @property
    def mode(self) -> str:
        """The policy-wide mode in force (after any override)."""
        return self._state.mode

    @property
    def fallback(self) -> str:
        return "on-error" if self._state.fallback else "off"

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._state.rules

    @property
    def deployments(self) -> Mapping[str, str]:
        return self._state.deployments

    @property
    def path(self) -> str | None:
        """The file this policy was loaded from (and is reloaded from), if any."""
        return self._path

    @property
    def evaluation_budget_usd(self) -> float | None:
        """US dollars that shadow evaluation may spend per hour (``None``: no cap)."""
        return self._state.evaluation_budget_usd

    def comparator(self, rule: str) -> Comparator:
        """How rule ``rule``'s evaluations judge answers (``exact`` for an unknown name)."""
        for candidate in self._state.rules:
            if candidate.name == rule:
                return candidate.comparator
        return EXACT

    @property
    def spend(self) -> SpendMonitor | None:
        """The poller of the fleet's spend that ``instrument()`` bound, if any."""
        return self._spend

    def daily_budgets(self) -> list[Budget]:
        """Every budget of the guarded rules in force (not off), for the budget gauge."""
        found: list[Budget] = []
        for rule in self._state.rules:
            if self.rule_mode(rule) == "off":
                continue
            if rule.daily_budget_usd is not None:
                found.append(Budget(rule.name, rule.daily_budget_usd))
            for value, usd in rule.daily_budgets.items():
                found.append(Budget(rule.name, usd, rule.budget_by, value))
        return found

    def rule_mode(self, rule: Rule) -> str:
        """The mode in force for ``rule``: the override, else its own, else the policy's."""
        return _effective_mode(rule, self._state.mode, self._override)

    # --- deciding --------------------------------------------------------------------------

    def decide(self, call: CallView) -> Route | None:
        """The first matching rule's route, ``None`` if no rule applies or the call falls
        outside the rule's ``sample``. Rules in mode ``off`` are skipped.

        Never touches the file: a file policy's watcher thread checks it, started here on
        first use (or by ``instrument()``, or again in a forked child)."""
        watcher = self._watcher
        if watcher is not None and watcher.idle:
            watcher.start()
        state = self._state
        spend = self._spend
        for rule in state.candidates(call.model):
            if rule.mismatch(call, spend) is None:
                route = state.routes.get(rule.name)
                if route is None:
                    continue  # this rule is off
                if rule.to == call.model or not sampled(rule.name, rule.sample, call.key):
                    return None
                if rule.evaluate > 0.0 and sampled(
                    rule.name + EVALUATE_SALT, rule.evaluate, call.key
                ):
                    return state.evaluated[rule.name]
                return route
        return None

    def explain(self, call: CallView, spend: SpendSource | None = None) -> Explanation:
        """Every rule's verdict on ``call`` and the decision, for ``llmmeter policy explain``;
        spend guards ask ``spend``, else the bound poller, else do not hold."""
        state = self._state
        spend = spend if spend is not None else self._spend
        verdicts = tuple((rule, rule.mismatch(call, spend)) for rule in state.rules)
        for rule, reason in verdicts:
            if reason is None and rule.name in state.routes:
                route = state.routes[rule.name]
                if rule.to == call.model:
                    return Explanation(verdicts, rule, None, None)
                if rule.sample >= 1.0:
                    return Explanation(verdicts, rule, route, True)
                if rule.sample <= 0.0:
                    return Explanation(verdicts, rule, None, False)
                if call.key is None:
                    return Explanation(verdicts, rule, route, None)
                inside = sampled(rule.name, rule.sample, call.key)
                return Explanation(verdicts, rule, route if inside else None, inside)
        return Explanation(verdicts, None, None, None)

    # --- the spend guard ---------------------------------------------------------------------

    def bind_spend(
        self, monitor: SpendMonitor | None, metric_keys: tuple[str, ...] = ()
    ) -> RulePolicy:
        """The copy ``instrument()`` runs: its guards read ``monitor`` (``None``: no Prometheus
        is configured, and a file with a guard is refused, now and on reload). The caller's
        object is left as it was, so an ``uninstrument()`` leaves nothing behind in it.
        ``metric_keys``: the attribution keys on metrics; a budget by another key is refused
        (Prometheus would have no spend by that key).

        Raises:
            ConfigError: a rule has a guard and ``monitor`` is ``None``, or a budget by a key
                that is not on metrics.
        """
        _check_spend(self._state, self.source, monitor, metric_keys)
        bound = copy.copy(self)
        bound._reload_lock = threading.Lock()
        bound._watcher = bound._new_watcher()  # the caller's object keeps its own, unstarted
        bound._spend = monitor
        bound._metric_keys = metric_keys
        bound._spend_required = True
        return bound

    def sync_spend(self) -> None:
        """Poll while some rule has a guard; not otherwise."""
        monitor = self._spend
        if monitor is not None:
            monitor.watch(self._state.budget_keys)
            if self._state.guarded:
                monitor.start()
            else:
                monitor.stop()

    # --- reloading -------------------------------------------------------------------------

    def _new_watcher(self) -> Watcher | None:
        if self._path is None:
            return None
        return Watcher(self._reload, self._interval, WATCHER_NAME)

    def start_watching(self) -> None:
        """Check the file for changes in the background from now on (``instrument()``)."""
        if self._watcher is not None:
            self._watcher.start()

    def stop_watching(self) -> None:
        """Stop checking the file, for good (``uninstrument()``); waits for nothing."""
        if self._watcher is not None:
            self._watcher.stop()

    def _reload(self) -> None:
        """Swap in the file's new version if it changed and is valid; never raises.

        The watcher's check, on its own thread; tests call it to check now. Calls keep
        deciding with the version in force meanwhile: they never wait for this lock.
        """
        with self._reload_lock:
            path = self._path
            assert path is not None
            try:
                signature = file_signature(path)
            except OSError as exc:
                if self._signature is not None:
                    logger.warning(
                        "llmmeter: policy file %s cannot be read (%s); keeping the last good "
                        "policy",
                        path,
                        exc,
                    )
                    self._signature = None
                return
            if signature in (self._signature, self._bad_signature):
                return
            try:
                data, read = load_toml(path, "policy file")
                state = _compile(data, path, self._override, self._comparators)
                if self._spend_required:
                    _check_spend(state, path, self._spend, self._metric_keys)
            except ConfigError as exc:
                self._bad_signature = signature
                logger.warning(
                    "llmmeter: policy file %s changed but is invalid; keeping the last good "
                    "policy: %s",
                    path,
                    exc,
                )
                return
            except Exception:
                self._bad_signature = signature
                logger.warning(
                    "llmmeter: policy file %s could not be reloaded; keeping the last good policy",
                    path,
                    exc_info=True,
                )
                return
            self._state = state
            self._signature = read  # the version read: a write during the read is a change
            self._bad_signature = None
            logger.info("llmmeter: policy file %s reloaded (%d rules)", path, len(state.rules))
            self.sync_spend()


# --- loading and validating ------------------------------------------------------------


def _check_accept(source: str, accept: Any) -> None:
    """``accept`` runs on the caller's thread, synchronously, as the SDK call returns."""
    if accept is None:
        return
    if not callable(accept):
        raise ConfigError(f"{source}: accept: expected a callable; got {accept!r}")
    if inspect.iscoroutinefunction(accept) or inspect.iscoroutinefunction(
        getattr(accept, "__call__", None)  # noqa: B004
    ):
        raise ConfigError(
            f"{source}: accept: expected a plain function returning a bool; got the coroutine "
            f"function {accept!r}, which cannot run inside a synchronous check"
        )


def _check_spend(
    state: _Compiled,
    source: str,
    monitor: SpendMonitor | None,
    metric_keys: tuple[str, ...] | None = None,
) -> None:
    for index, rule in enumerate(state.rules):
        by = rule.budget_by
        if by is not None and metric_keys is not None and by not in metric_keys:
            raise ConfigError(
                f"{source}: rules[{index}] ({rule.name}).when_spend_over.by: expected a key "
                f"that goes on metrics, so that Prometheus has the spend by {by}: add {by!r} to "
                "the environment variable LLMMETER_METRIC_ATTRIBUTES (or instrument's "
                f"metric_attributes); got {by!r}, and the keys on metrics are "
                f"{', '.join(metric_keys) or 'none'}"
            )
    if monitor is not None:
        return
    for index, rule in enumerate(state.rules):
        if rule.daily_budget_usd is not None or rule.budget_by is not None:
            raise ConfigError(
                f"{source}: rules[{index}] ({rule.name}).when_spend_over: expected the "
                "environment variable LLMMETER_PROMETHEUS_URL to name the Prometheus that "
                "holds the fleet's llmmeter_cost_usd_total (such as http://prometheus:9090); "
                "got no URL"
            )


def _fail(source: str, where: str, expected: str, got: Any) -> ConfigError:
    return ConfigError(f"{source}: {where}: expected {expected}; got {got!r}")


def _effective_mode(rule: Rule, mode: str, override: str | None) -> str:
    """A rule set to off stays off; else the override, else a policy-wide off (the kill
    switch), else the rule's own mode, else the policy's."""
    if rule.mode == "off":
        return "off"
    if override is not None:
        return override
    if mode == "off":
        return "off"
    return rule.mode or mode


def check_comparators(source: str, comparators: Any) -> dict[str, Comparator]:
    if comparators is None:
        return {}
    if not isinstance(comparators, Mapping):
        raise _fail(source, "comparators", "a mapping of rule name to comparator", comparators)
    built = {}
    for name, judge in comparators.items():
        if isinstance(judge, Comparator):
            built[str(name)] = judge
            continue
        if not callable(judge) and judge not in BUILTIN:
            raise _fail(
                source,
                f"comparators[{name!r}]",
                f"a callable (original, candidate) -> float or one of {', '.join(BUILTIN)}",
                judge,
            )
        try:
            built[str(name)] = build_comparator(judge)
        except ComparatorProblem as exc:  # "label" by name: it needs a regex
            raise ConfigError(f"{source}: comparators[{name!r}]: {exc}") from None
    return built


def _compile(
    data: Any,
    source: str,
    override: str | None,
    comparators: Mapping[str, Comparator] | None = None,
) -> _Compiled:
    if not isinstance(data, Mapping):
        raise _fail(source, "policy", "a table (mapping) of settings and [[rules]]", data)
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{source}: {key}: unknown key; expected one of {', '.join(_TOP_KEYS)}"
            )
    mode = _choice(source, "mode", data.get("mode", "enforce"), MODES)
    fallback = _choice(source, "fallback", data.get("fallback", "on-error"), FALLBACKS)
    deployments = _deployments(source, data.get("deployments", {}))
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, (list, tuple)):
        raise _fail(source, "rules", "an array of tables ([[rules]])", raw_rules)
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, table in enumerate(raw_rules):
        rule = _rule(source, index, table)
        if rule.name in seen:
            raise ConfigError(
                f"{source}: rules[{index}].name: expected a name no other rule has; "
                f"got {rule.name!r} twice"
            )
        seen.add(rule.name)
        rules.append(rule)
    for name, comparator in (comparators or {}).items():
        position = next((i for i, rule in enumerate(rules) if rule.name == name), None)
        if position is None or "evaluate" not in raw_rules[position]:
            raise ConfigError(
                f"{source}: comparators[{name!r}]: expected the name of a rule with evaluate; "
                f"the rules are {', '.join(repr(r.name) for r in rules) or 'none'}"
            )
        rules[position] = dataclasses.replace(rules[position], comparator=comparator)
    routes = {}
    evaluated = {}
    for rule in rules:
        effective = _effective_mode(rule, mode, override)
        if effective != "off":
            route = Route(
                rule.to, rule.name, shadow=effective == "shadow", fallback=fallback == "on-error"
            )
            routes[rule.name] = route
            if rule.evaluate > 0.0:
                evaluated[rule.name] = dataclasses.replace(route, evaluate=True)
    return _Compiled(
        mode=override or mode,
        fallback=fallback == "on-error",
        rules=tuple(rules),
        deployments=deployments,
        routes=routes,
        evaluated=evaluated,
        evaluation_budget_usd=_evaluation_budget(source, data.get("evaluation_budget_usd")),
    )


def _choice(source: str, where: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _fail(source, where, f"one of {', '.join(repr(a) for a in allowed)}", value)
    return value


def _deployments(source: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _fail(source, "deployments", 'a table of model = "deployment name"', value)
    out: dict[str, str] = {}
    for model, deployment in value.items():
        if not isinstance(deployment, str) or not deployment.strip():
            raise _fail(source, f"deployments.{model}", "a non-empty deployment name", deployment)
        out[str(model)] = deployment
    return out


def _rule(source: str, index: int, table: Any) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(table, Mapping):
        raise _fail(source, where, "a table with name, from and to", table)
    name = table.get("name")
    if isinstance(name, str) and _RULE_NAME.match(name):
        where = f"rules[{index}] ({name})"
    for key in table:
        if key not in _RULE_KEYS:
            raise ConfigError(
                f"{source}: {where}.{key}: unknown key; expected one of {', '.join(_RULE_KEYS)}"
            )
    for key in ("name", "from", "to"):
        if key not in table:
            raise ConfigError(f"{source}: {where}: missing required key {key!r}")
    if not isinstance(name, str) or not _RULE_NAME.match(name):
        raise _fail(
            source,
            f"{where}.name",
            "1-64 characters of letters, digits, '_', '.', ':' or '-' (it becomes a metric label)",
            name,
        )
    models = _strings(source, f"{where}.from", table["from"], "model globs")
    for position, glob in enumerate(models):
        problem = _glob_problem(glob)
        if problem:
            raise _fail(source, f"{where}.from[{position}]", f"a model glob ({problem})", glob)
    to = table["to"]
    if not isinstance(to, str) or not _MODEL_NAME.match(to):
        raise _fail(source, f"{where}.to", "a model name (no spaces or glob characters)", to)
    if models == [to]:
        raise _fail(source, f"{where}.to", "a model other than the one in 'from'", to)
    mode = table.get("mode")
    if mode is not None:
        _choice(source, f"{where}.mode", mode, MODES)
    apis = None
    if "apis" in table:
        listed = _strings(source, f"{where}.apis", table["apis"], "API names")
        for position, api in enumerate(listed):
            if api not in APIS:
                raise _fail(source, f"{where}.apis[{position}]", f"one of {', '.join(APIS)}", api)
        apis = frozenset(listed)
    tasks = None
    if "tasks" in table:
        tasks = frozenset(_strings(source, f"{where}.tasks", table["tasks"], "task labels"))
    prompt: tuple[str, ...] = ()
    compiled: PromptPatterns | None = None
    if "prompt" in table:
        prompt = tuple(_strings(source, f"{where}.prompt", table["prompt"], "regular expressions"))
        compiled = _patterns(source, f"{where}.prompt", prompt)
    limits = _limits(source, where, table)
    flags = _flags(source, where, table)
    sample = _sample(source, where, table.get("sample", 1.0))
    evaluate, comparator, target = _evaluation(source, where, table)
    budget, budget_by, budgets = (
        _budget(source, where, table["when_spend_over"])
        if "when_spend_over" in table
        else (None, None, {})
    )
    return Rule(
        name=name,
        models=tuple(models),
        to=to,
        mode=mode,
        apis=apis,
        tasks=tasks,
        prompt=prompt,
        min_input_tokens=limits["min_input_tokens"],
        max_input_tokens=limits["max_input_tokens"],
        max_output_tokens=limits["max_output_tokens"],
        allow_tools=flags["allow_tools"],
        allow_images=flags["allow_images"],
        allow_response_format=flags["allow_response_format"],
        sample=sample,
        evaluate=evaluate,
        comparator=comparator,
        agreement_target=target,
        daily_budget_usd=budget,
        budget_by=budget_by,
        daily_budgets=budgets,
        _model_re=re.compile("|".join(f"(?:{translate(glob)})" for glob in models)),
        _prompt=compiled,
    )


def _limits(source: str, where: str, table: Mapping[str, Any]) -> dict[str, int | None]:
    limits: dict[str, int | None] = {}
    for key, low in (("min_input_tokens", 0), ("max_input_tokens", 1), ("max_output_tokens", 1)):
        value = table.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < low
        ):
            raise _fail(source, f"{where}.{key}", f"a whole number of tokens >= {low}", value)
        limits[key] = value
    low_limit, high_limit = limits["min_input_tokens"], limits["max_input_tokens"]
    if low_limit is not None and high_limit is not None and low_limit > high_limit:
        raise ConfigError(
            f"{source}: {where}.min_input_tokens: expected at most max_input_tokens "
            f"({high_limit}) so that some call can match; got {low_limit}"
        )
    return limits


def _flags(source: str, where: str, table: Mapping[str, Any]) -> dict[str, bool]:
    flags: dict[str, bool] = {}
    for key in ("allow_tools", "allow_images", "allow_response_format"):
        value = table.get(key, True)
        if not isinstance(value, bool):
            raise _fail(source, f"{where}.{key}", "true or false", value)
        flags[key] = value
    return flags


def _fraction(source: str, where: str, value: Any, expected: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value <= 1.0  # before isfinite: a huge int overflows a float
        or not math.isfinite(value)
    ):
        raise _fail(source, where, expected, value)
    return float(value)


def _sample(source: str, where: str, sample: Any) -> float:
    return _fraction(source, f"{where}.sample", sample, "a fraction of calls from 0 to 1")


def _evaluation(
    source: str, where: str, table: Mapping[str, Any]
) -> tuple[float, Comparator, float]:
    """``evaluate``, the comparator (``compare``, ``label``) and ``agreement_target``."""
    if "evaluate" not in table:
        for key in ("compare", "label", "agreement_target"):
            if key in table:
                raise ConfigError(
                    f"{source}: {where}.{key}: only applies to a rule that evaluates; add "
                    "evaluate = <fraction of its calls>, such as evaluate = 0.05"
                )
        return 0.0, EXACT, DEFAULT_AGREEMENT_TARGET
    evaluate = _fraction(
        source, f"{where}.evaluate", table["evaluate"], "a fraction of the rule's calls from 0 to 1"
    )
    comparator = comparator_from_config(
        table.get("compare", "exact"), table.get("label"), source=source, where=where
    )
    target = _fraction(
        source,
        f"{where}.agreement_target",
        table.get("agreement_target", DEFAULT_AGREEMENT_TARGET),
        "the share of evaluations that must agree, from 0 to 1",
    )
    return evaluate, comparator, target


def _evaluation_budget(source: str, value: Any) -> float | None:
    if value is None:
        return None
    budget = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            budget = float(value)
        except OverflowError:
            budget = math.inf
    if not (budget >= 0 and math.isfinite(budget)):
        raise _fail(
            source, "evaluation_budget_usd", "US dollars of evaluation per hour (>= 0)", value
        )
    return budget


def _budget(
    source: str, where: str, table: Any
) -> tuple[float | None, str | None, dict[str, float]]:
    """``when_spend_over``: the fleet's budget, or the attribution key and its budget per
    value (``{ by = "team", daily_budget_usd = { search = 50 } }``)."""
    where = f"{where}.when_spend_over"
    if not isinstance(table, Mapping):
        raise _fail(source, where, f"a table {{ {_BUDGET_KEY} = <US dollars> }}", table)
    for key in table:
        if key not in (_BUDGET_KEY, _BY_KEY):
            raise ConfigError(
                f"{source}: {where}.{key}: unknown key; expected {_BUDGET_KEY} or {_BY_KEY}"
            )
    if _BUDGET_KEY not in table:
        raise ConfigError(f"{source}: {where}: missing required key {_BUDGET_KEY!r}")
    value = table[_BUDGET_KEY]
    if _BY_KEY not in table:
        return _dollars(source, f"{where}.{_BUDGET_KEY}", value), None, {}
    by = table[_BY_KEY]
    problem = key_problem(by)
    if problem is not None:
        raise _fail(source, f"{where}.{_BY_KEY}", f"an attribution key: {problem}", by)
    if not isinstance(value, Mapping) or not value:
        raise _fail(
            source,
            f"{where}.{_BUDGET_KEY}",
            f"with by, a table of each {by}'s budget, such as {{ search = 50, support = 20 }}",
            value,
        )
    budgets: dict[str, float] = {}
    for name, usd in value.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_VALUE_LENGTH:
            raise _fail(source, f"{where}.{_BUDGET_KEY}", f"{by} values of 1-256 characters", name)
        budgets[name] = _dollars(source, f"{where}.{_BUDGET_KEY}.{name}", usd)
    return None, by, budgets


def _dollars(source: str, where: str, value: Any) -> float:
    budget = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            budget = float(value)
        except OverflowError:  # an integer too large for a float
            budget = math.inf
    if not (budget > 0 and math.isfinite(budget)):
        raise _fail(source, where, "a positive number of US dollars", value)
    return budget


def _strings(source: str, where: str, value: Any, what: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise _fail(source, where, f"a string or a non-empty array of {what}", value)
    for position, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise _fail(source, f"{where}[{position}]", "a non-empty string", item)
    return list(items)


def _glob_problem(glob: str) -> str | None:
    """Why ``glob`` is not a usable model glob, or ``None``."""
    if any(ch.isspace() for ch in glob):
        return "no whitespace"
    position = 0
    while position < len(glob):
        if glob[position] == "[":
            end = position + 1
            if end < len(glob) and glob[end] == "!":
                end += 1
            if end < len(glob) and glob[end] == "]":
                end += 1  # a leading ']' is a literal member of the set
            end = glob.find("]", end)
            if end < 0:
                return "an unclosed '[' character set"
            position = end
        elif glob[position] == "]":
            return "a ']' without its '['"
        position += 1
    return None


def _patterns(source: str, where: str, patterns: Sequence[str]) -> PromptPatterns:
    """Compile a rule's prompt patterns with RE2 (linear time), naming the bad one."""
    try:
        return compile_prompt(patterns)
    except PatternError as exc:
        if exc.position is None:
            raise _fail(source, where, str(exc), list(patterns)) from None
        raise _fail(source, f"{where}[{exc.position}]", str(exc), patterns[exc.position]) from None


def describe(rule: Rule, reason: str, call: CallView, spend_usd: float | None = None) -> str:
    """A sentence saying why ``rule`` does not apply to ``call`` (for ``policy explain``);
    ``spend_usd`` is the fleet's 24 h spend the guard saw, if known."""
    if reason == MODEL:
        return f"model {call.model!r} matches none of from = {list(rule.models)}"
    if reason == SPEND and rule.budget_by is not None:
        key = rule.budget_by
        value = call.attribution.get(key)
        if value is None:
            return f"the call has no {key} (llmmeter.attribute), and the budgets are per {key}"
        if value not in rule.daily_budgets:
            return f"{key} {value!r} has no budget in when_spend_over"
        budget = f"{key} {value!r}'s daily budget of ${rule.daily_budgets[value]:g}"
        return f"the 24 h spend of {budget} is not known to be exceeded"
    if reason == SPEND:
        budget = f"when_spend_over = {{ {_BUDGET_KEY} = {rule.daily_budget_usd:g} }}"
        if spend_usd is None:
            return (
                f"the fleet's 24 h spend is unknown, so {budget} does not hold (a running "
                "process reads it from Prometheus; --spend sets it here)"
            )
        return f"the fleet's 24 h spend, ${spend_usd:g}, is not over {budget}"
    if reason == API:
        return f"api {call.api!r} is not in apis = {sorted(rule.apis or ())}"
    if reason == TASK:
        task = "no task" if call.task is None else f"task {call.task!r}"
        return f"{task}; the rule needs one of tasks = {sorted(rule.tasks or ())}"
    if reason == TOOLS:
        return "the call offers tools and allow_tools = false"
    if reason == IMAGES:
        return "the call has image input and allow_images = false"
    if reason == RESPONSE_FORMAT:
        return "the call asks for structured output and allow_response_format = false"
    if reason == MAX_OUTPUT_TOKENS:
        cap = call.max_output_tokens
        got = "sets no output cap" if cap is None else f"caps output at {cap} tokens"
        return f"the call {got}; the rule needs a cap <= {rule.max_output_tokens}"
    if reason == MIN_INPUT_TOKENS:
        return f"~{call.input_tokens} input tokens < min_input_tokens = {rule.min_input_tokens}"
    if reason == MAX_INPUT_TOKENS:
        return f"~{call.input_tokens} input tokens > max_input_tokens = {rule.max_input_tokens}"
    if reason == PROMPT:
        return f"the prompt matches none of prompt = {list(rule.prompt)}"
    return reason


def resolve_policy(policy: Any, path: str | None, mode: str | None) -> tuple[Any, bool]:
    """The policy ``instrument()`` runs, and whether every route must be shadowed.

    ``policy`` is the argument (a path, or an object with ``decide``), else ``path`` (from
    ``LLMMETER_POLICY``) is loaded. ``mode`` (``LLMMETER_POLICY_MODE``) overrides a rule
    policy's modes; for another policy ``off`` disables it and ``shadow`` shadows its routes.
    """
    if policy is None and path is None:
        return None, False
    if policy is None or isinstance(policy, (str, os.PathLike)):
        source = policy if policy is not None else path
        assert source is not None
        return RulePolicy.load(os.fspath(source), mode=mode), False
    if isinstance(policy, RulePolicy):
        return (policy.with_mode(mode) if mode is not None else policy), False
    decide = getattr(policy, "decide", None)
    if not callable(decide):
        raise ConfigError(
            "argument policy: expected a path to a TOML policy file or an object with a "
            f"decide(call) method; got {policy!r}"
        )
    _check_accept("argument policy", getattr(policy, "accept", None))
    if mode == "off":
        return None, False
    return policy, mode == "shadow"
