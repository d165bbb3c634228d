"""What a policy rule should do next, from the fleet's evidence.

A rule moves shadow -> enforce canary -> larger samples while the agreement's Wilson lower
bound clears its target and few routed calls fall back; it goes back to shadow when the
evidence turns. Going back sends every call to the model it asked for, so the bar to
demote is low.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from llmmeter._rules import Rule, RulePolicy

from .evidence import Proportion, proportion
from .status_sources import (
    AGREEMENT,
    COUNTERS,
    EVALUATIONS,
    FALLBACKS,
    ROUTED,
    SHADOWED,
    Counter,
    Source,
)

DEFAULT_MIN_EVALUATIONS: Final = 100
DEFAULT_MAX_FALLBACK_RATE: Final = 0.05
DEFAULT_STEPS: Final = (0.05, 0.25, 0.5, 1.0)
"""The ``sample`` a promoted rule goes through: the first is the canary, 1 means every call."""

# What a rule should do next: the ``action`` of a recommendation.
PROMOTE: Final = "promote"
DEMOTE: Final = "demote"
KEEP: Final = "keep"
NO_DATA: Final = "no_data"
OFF: Final = "off"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What evidence ``status`` and ``promote`` ask for."""

    min_evaluations: int = DEFAULT_MIN_EVALUATIONS
    max_fallback_rate: float = DEFAULT_MAX_FALLBACK_RATE
    steps: tuple[float, ...] = DEFAULT_STEPS


@dataclass(frozen=True, slots=True)
class Recommendation:
    action: str
    """promote, demote, keep, no_data or off."""
    reason: str
    mode: str | None = None
    """The rule's own ``mode`` after the step (promote and demote only)."""
    sample: float | None = None
    """The rule's ``sample`` after the step; 1 means the key is dropped."""

    @property
    def changes(self) -> bool:
        return self.action in (PROMOTE, DEMOTE)


@dataclass(frozen=True, slots=True)
class RuleStatus:
    """One rule's figures over the window, and what they say."""

    rule: Rule
    mode: str
    """The rule's mode in force as the file says (no ``LLMMETER_POLICY_MODE``)."""
    figures: Mapping[Counter, float]
    agreement: Proportion
    recommendation: Recommendation

    def __getitem__(self, counter: Counter) -> float:
        return self.figures[counter]

    @property
    def calls(self) -> float:
        return self[ROUTED] + self[SHADOWED]

    @property
    def fallback_rate(self) -> float | None:
        """Fallbacks per routed call; ``None`` with no routed call."""
        routed = self[ROUTED]
        return self[FALLBACKS] / routed if routed > 0 else None


def _agreement(evaluations: float, agreement: float) -> Proportion:
    """``increase()`` extrapolates, so counts arrive as floats. The share is taken from the
    two figures as they came, then n is rounded and the summed scores scaled to it: keeping
    the extrapolated score sum over a rounded n would tilt the share (9.36 of 11.45
    evaluations is 82%, but 9.36 of 11 is 85%)."""
    n = max(0, round(evaluations))
    if n == 0:
        return proportion(0.0, 0)
    share = min(agreement / evaluations, 1.0) if agreement > 0 else 0.0  # NaN: none
    return proportion(share * n, n)


def percent(share: float) -> str:
    """A share as the text shows it: 0.8825 -> 88.2%."""
    return f"{share * 100:.1f}%"


def sample_text(value: float) -> str:
    """A sample as the text shows it: 0.05, 1."""
    return f"{value:g}"


def next_step(sample: float, steps: Sequence[float]) -> float:
    """The first step above ``sample`` (1 when there is none)."""
    return next((step for step in steps if step > sample + 1e-9), 1.0)


def recommend(
    mode: str,
    sample: float,
    figures: Mapping[Counter, float],
    *,
    agreement: Proportion,
    target: float,
    evaluate: float,
    thresholds: Thresholds,
) -> Recommendation:
    """The next step for a rule (the rules are documented in docs/cli.md)."""
    if mode == "off":
        return Recommendation(OFF, "the rule is off")
    routed, calls = figures[ROUTED], figures[ROUTED] + figures[SHADOWED]
    n, point, low = agreement.n, agreement.point, agreement.low
    if calls <= 0 and n == 0:
        return Recommendation(NO_DATA, "no calls and no evaluations in the window")
    fallback_rate = figures[FALLBACKS] / routed if routed > 0 else None
    measured = f"agreement {percent(point or 0.0)} of {_evaluations(n)}"
    bound = f"lower bound {percent(low)}"
    if mode == "enforce":
        if fallback_rate is not None and fallback_rate > thresholds.max_fallback_rate:
            return Recommendation(
                DEMOTE,
                f"fallback rate {percent(fallback_rate)} is over "
                f"{percent(thresholds.max_fallback_rate)}",
                "shadow",
                sample,
            )
        # Below the target: on enough evaluations, or so far below that even the interval's
        # upper end misses it.
        if point is not None and (
            (n >= thresholds.min_evaluations and point < target) or agreement.high < target
        ):
            return Recommendation(
                DEMOTE,
                f"{measured} is under the target {percent(target)}",
                "shadow",
                sample,
            )
    if n == 0:
        if evaluate <= 0:
            why = "no evaluations: the rule evaluates no calls (set evaluate, such as 0.05)"
        else:
            why = "no evaluations in the window yet"
        return Recommendation(KEEP, _keep(mode, sample) + why)
    if n < thresholds.min_evaluations:
        return Recommendation(
            KEEP,
            f"{_keep(mode, sample)}{_evaluations(n)}, fewer than "
            f"{thresholds.min_evaluations} ({measured}, {bound})",
        )
    if low < target:
        return Recommendation(
            KEEP,
            f"{_keep(mode, sample)}{bound} is under the target {percent(target)} ({measured})",
        )
    met = f"{bound} >= target {percent(target)} ({measured})"
    if mode == "shadow":
        canary = sample if sample < 1.0 else thresholds.steps[0]
        return Recommendation(
            PROMOTE, f"{met}: enforce at sample {sample_text(canary)}", "enforce", canary
        )
    if sample >= 1.0:
        return Recommendation(KEEP, f"enforced on every call; {met}")
    if fallback_rate is None:
        return Recommendation(KEEP, f"{_keep(mode, sample)}no routed calls in the window")
    step = next_step(sample, thresholds.steps)
    fallback = f"fallback rate {percent(fallback_rate)}"
    return Recommendation(
        PROMOTE,
        f"{met}, {fallback}: raise sample {sample_text(sample)} -> {sample_text(step)}",
        "enforce",
        step,
    )


def _evaluations(n: int) -> str:
    return f"{n:,} evaluation{'' if n == 1 else 's'}"


def _keep(mode: str, sample: float) -> str:
    if mode == "shadow":
        return "keep shadowing: "
    return f"keep collecting at sample {sample_text(sample)}: " if sample < 1.0 else "keep: "


def rule_status(
    policy: RulePolicy, rule: Rule, source: Source, thresholds: Thresholds
) -> RuleStatus:
    figures = {counter: source.increase(counter, rule.name) for counter in COUNTERS}
    agreement = _agreement(figures[EVALUATIONS], figures[AGREEMENT])
    mode = policy.rule_mode(rule)
    return RuleStatus(
        rule=rule,
        mode=mode,
        figures=figures,
        agreement=agreement,
        recommendation=recommend(
            mode,
            rule.sample,
            figures,
            agreement=agreement,
            target=rule.agreement_target,
            evaluate=rule.evaluate,
            thresholds=thresholds,
        ),
    )
