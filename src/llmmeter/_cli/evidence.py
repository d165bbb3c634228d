"""How sure a measured agreement or accuracy is: the Wilson score interval.

"95% of 20 answers agreed" and "95% of 2,000 agreed" are not the same evidence. Decisions to
switch models compare a target with the *lower* bound of the interval, so a small sample has
to do better than the target to pass. Wilson's interval (unlike the textbook normal one) stays
inside [0, 1] and behaves at 0 or n successes, which is where model comparisons live.

Scores may be fractional (a comparator's agreement in [0, 1], summed), so ``successes`` is a
float; the formula needs only the proportion and n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

Z_95: Final = 1.959963984540054
"""The standard normal quantile for a two-sided 95% interval."""


@dataclass(frozen=True, slots=True)
class Proportion:
    """``successes`` out of ``n`` with its Wilson interval; no evidence (n = 0) is [0, 1]."""

    successes: float
    n: int
    low: float
    high: float

    @property
    def point(self) -> float | None:
        """The observed proportion, or None when nothing was measured."""
        return self.successes / self.n if self.n else None


def wilson(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` for ``successes`` of ``n``; (0, 1) for n = 0.

    Raises:
        ValueError: ``n`` is negative or ``successes`` is not within [0, n].
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= successes <= n:  # also refuses NaN
        raise ValueError(f"successes must be within [0, {n}], got {successes}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    scale = 1 + z2 / n
    low = max(0.0, (centre - margin) / scale)
    high = min(1.0, (centre + margin) / scale)
    # At p = 0 or 1 one bound is exactly 0 or 1, which rounding would miss by a hair.
    return (0.0 if successes == 0 else low), (1.0 if successes == n else high)


def proportion(successes: float, n: int, z: float = Z_95) -> Proportion:
    """``successes`` of ``n`` with its Wilson interval (see :func:`wilson`)."""
    low, high = wilson(successes, n, z)
    return Proportion(successes=successes, n=n, low=low, high=high)
