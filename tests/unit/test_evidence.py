"""The Wilson score interval behind every verdict on a cheaper model.

Reference values are Newcombe (1998), "Two-sided confidence intervals for the single
proportion", Table I, method 3 (Wilson score, no continuity correction), given there to
four decimals; the fractional case is worked by hand below.
"""

from __future__ import annotations

import math

import pytest

from llmmeter._cli.evidence import Z_95, Proportion, proportion, wilson


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombes_published_intervals(
    successes: int, n: int, low: float, high: float
) -> None:
    got_low, got_high = wilson(successes, n)
    assert round(got_low, 4) == low
    assert round(got_high, 4) == high


def test_wilson_of_fractional_successes_worked_by_hand() -> None:
    """4.5 of 5 (scores summed): p = 0.9, z^2 = 3.84145882069.

    centre = 0.9 + z^2/10 = 1.28414588207
    margin = z * sqrt(0.9 * 0.1 / 5 + z^2 / 100) = z * sqrt(0.05641458821)
           = 1.95996398454 * 0.23751755347 = 0.46552585050
    scale  = 1 + z^2/5 = 1.76829176414
    low    = (1.28414588207 - 0.46552585050) / 1.76829176414 = 0.46294398...
    high   = (1.28414588207 + 0.46552585050) / 1.76829176414 = 0.98947005...
    """
    low, high = wilson(4.5, 5)
    assert low == pytest.approx(0.46294398, abs=1e-8)
    assert high == pytest.approx(0.98947005, abs=1e-8)
    z_squared = Z_95 * Z_95
    assert z_squared == pytest.approx(3.84145882069, abs=1e-11)


def test_all_successes_reach_exactly_one_and_none_exactly_zero() -> None:
    assert wilson(10, 10) == (pytest.approx(0.7224672001), 1.0)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775327999))


def test_no_evidence_is_the_whole_interval() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    assert proportion(0, 0) == Proportion(successes=0, n=0, low=0.0, high=1.0)
    assert proportion(0, 0).point is None


def test_proportion_carries_point_and_bounds() -> None:
    measured = proportion(9, 10)
    assert measured.point == 0.9
    assert (round(measured.low, 4), round(measured.high, 4)) == (0.5958, 0.9821)


def test_more_evidence_narrows_the_interval_around_the_same_proportion() -> None:
    small, large = wilson(19, 20), wilson(1900, 2000)
    assert small[0] < large[0] < 0.95 < large[1] < small[1]


@pytest.mark.parametrize(("successes", "n"), [(-1, 5), (6, 5), (math.nan, 5), (0, -1)])
def test_impossible_counts_are_refused(successes: float, n: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        wilson(successes, n)
